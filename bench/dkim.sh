#!/bin/bash
# dkim.sh — how fast relayd relays mail it signs with DKIM, end to end,
# measured next to Postfix with the OpenDKIM milter in the same run.
#
# A benchmark, not a test: it asserts nothing and is never part of
# `make check`. It prints figures and relayd/Postfix ratios; bench/README.md
# explains what is measured and why.
#
# smtp-source → server → smtp-sink, all on loopback, as in relay.sh; the
# messages are from example.com (smtp-source writes From:, To:, Date:,
# Message-Id: and, with -S, Subject:), and the server signs them:
#   rsa      relayd, domain "example.com" with one dkim block, RSA-2048
#   ed25519  relayd, the same with an Ed25519 key instead
#   postfix  a private Postfix relaying to the same sink, with a private
#            OpenDKIM (Mode s, the same RSA-2048 key) as its milter on a
#            unix socket
#   sink     (BENCH_CEILING=1) smtp-source straight to the sink: the ceiling
# For each session count (1, 20, 100) and each way of submitting (a new
# connection per message, or reused: smtp-source -d), BENCH_MSGS messages
# go through each server in turn, BENCH_REPEAT times. The keys are made at
# run time with `openssl genpkey`. Before the measurements, a few messages go
# through each server to a sink that keeps them, and every one must carry
# exactly one DKIM-Signature that verifies (python3-dkim, with the public key
# as the DNS answer), or the script stops.
#
# A run's time is end to end: from just before smtp-source starts until the
# sink has received the last message. A run counts only if smtp-source exits
# 0, the sink received exactly BENCH_MSGS messages, the server logged
# BENCH_MSGS `status=sent` and its queue is empty at the end; for relayd
# also BENCH_MSGS `dkim=<selector>` (every message signed). Before every
# relayd or Postfix run: a fresh sink, daemons (OpenDKIM too), spool or
# queue, `sync`, drop_caches and a BENCH_PAUSE-second pause.
#
# Needs root, the Debian packages postfix and opendkim (its system service
# stays stopped: this starts its own in the foreground), openssl,
# /usr/bin/python3 with python3-dkim, and a relayd built in _build/benchdkim
# (or RELAYD=path). Loopback only. Everything it starts is stopped by PID;
# its temporary directory goes too.
#
# Usage: bench/dkim.sh
# Environment (defaults): BENCH_PAUSE (62) BENCH_MSGS (20000) BENCH_REPEAT (3)
#   BENCH_SIZE (2048) BENCH_SESSIONS ("1 20 100") BENCH_MODES ("conn reuse")
#   BENCH_SERVERS ("rsa ed25519 postfix") BENCH_CEILING (1)
#   BENCH_UPSTREAM_CONN (20) BENCH_VERIFY (20: messages checked per server
#   before the runs) BENCH_DIR (/var/tmp) BENCH_RELAYD_PORT (12526)
#   BENCH_POSTFIX_PORT (10027) BENCH_SINK_PORT (10028) BENCH_TIMEOUT (900)
#   BENCH_DRAIN (300) BENCH_POSTFIX_MAIN (lines added to main.cf)
#   BENCH_OPENDKIM_CONF (lines added to opendkim.conf) RELAYD
# Quick smoke run: BENCH_PAUSE=0 BENCH_MSGS=2000 BENCH_REPEAT=1 bench/dkim.sh
set -u

top=$(cd "$(dirname "$0")/.." && pwd) || exit 1
prog=dkim.sh
. "$top/bench/common.sh" || exit 1

RELAYD=${RELAYD:-$top/_build/benchdkim/relayd}
PAUSE=${BENCH_PAUSE:-62}
MSGS=${BENCH_MSGS:-20000}
REPEAT=${BENCH_REPEAT:-3}
SIZE=${BENCH_SIZE:-2048}
SESSIONS=${BENCH_SESSIONS:-1 20 100}
MODES=${BENCH_MODES:-conn reuse}
SERVERS=${BENCH_SERVERS:-rsa ed25519 postfix}
CEILING=${BENCH_CEILING:-1}
UCONN=${BENCH_UPSTREAM_CONN:-20}
VERIFY=${BENCH_VERIFY:-20}
BASEDIR=${BENCH_DIR:-/var/tmp}
RPORT=${BENCH_RELAYD_PORT:-12526}
PPORT=${BENCH_POSTFIX_PORT:-10027}
SPORT=${BENCH_SINK_PORT:-10028}
RUN_TIMEOUT=${BENCH_TIMEOUT:-900}
DRAIN=${BENCH_DRAIN:-300}
PFX_EXTRA=${BENCH_POSTFIX_MAIN:-}
ODK_EXTRA=${BENCH_OPENDKIM_CONF:-}
PY=/usr/bin/python3
SENDER=sender@example.com
RCPT=rcpt@example.net
SOURCE_ARGS=(-S "relayd DKIM benchmark")
TARGET=5
SEL_RSA=rsa2048
SEL_ED=ed25519

# ---- preconditions ----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (drop_caches, Postfix's master, OpenDKIM's UserID, smtp-sink -u)"
[ -x "$RELAYD" ] || die "no relayd at $RELAYD: build it (mkdir -p _build/benchdkim && cd _build/benchdkim && ../../configure && make) or set RELAYD"
for t in smtp-source smtp-sink postfix postconf opendkim openssl ss timeout; do
	command -v "$t" >/dev/null || die "$t not found (apt-get install postfix opendkim openssl iproute2 coreutils)"
done
[ -x "$PY" ] || die "$PY not found"
"$PY" -c 'import dkim, nacl' 2>/dev/null || die "$PY cannot import dkim and nacl (apt-get install python3-dkim python3-nacl)"
id opendkim >/dev/null 2>&1 || die "no user opendkim (the Debian package opendkim creates it)"
[ -d "$BASEDIR" ] || die "BENCH_DIR $BASEDIR does not exist"
for p in "$RPORT" "$PPORT" "$SPORT"; do
	listening "$p" && die "something already listens on port $p (set BENCH_RELAYD_PORT / BENCH_POSTFIX_PORT / BENCH_SINK_PORT)"
done
make_workdir relayd-dkim || exit 1
relayd_pid='' master_pid='' sink_pid='' wait_pid='' opendkim_pid=''

stop_opendkim() {
	stop_pid "$opendkim_pid"
	[ -n "$opendkim_pid" ] && wait "$opendkim_pid" 2>/dev/null
	opendkim_pid=''
}
cleanup() {
	stop_pid "$wait_pid"
	stop_pid "$relayd_pid"
	stop_postfix
	stop_opendkim
	stop_pid "$sink_pid"
	relayd_pid='' wait_pid='' sink_pid=''
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- keys -------------------------------------------------------------------------
# Made now, mode 0600 from the start (umask). The DNS answers for the
# verification: RSA's p= is the DER SubjectPublicKeyInfo, Ed25519's the raw
# 32-byte key (RFC 8463), both base64.
keys=$work/keys
mkdir -m 700 "$keys" || exit 1
(umask 077 &&
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/rsa.key" 2>/dev/null &&
    openssl genpkey -algorithm ED25519 -out "$keys/ed25519.key" 2>/dev/null) ||
	die "openssl genpkey failed"
rsa_p=$(openssl pkey -in "$keys/rsa.key" -pubout -outform DER 2>/dev/null | base64 -w0)
ed_p=$(openssl pkey -in "$keys/ed25519.key" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0)
[ -n "$rsa_p" ] && [ -n "$ed_p" ] || die "cannot extract the public keys"

# ---- relayd -------------------------------------------------------------------
# One configuration per key: domain "example.com" with one dkim block.
write_relayd_conf() {	# $1 = file, $2 = selector, $3 = key file, $4 = algorithm
	write_relayd_sink_conf "$1" <<EOF
	dkim {
		selector = "$2"
		key_file = "$3"
		algorithm = "$4"
	}
EOF
}
rconf_rsa=$work/relayd-rsa.conf rconf_ed=$work/relayd-ed25519.conf
write_relayd_conf "$rconf_rsa" "$SEL_RSA" "$keys/rsa.key" rsa-sha256 || exit 1
write_relayd_conf "$rconf_ed" "$SEL_ED" "$keys/ed25519.key" ed25519-sha256 || exit 1
for rconf in "$rconf_rsa" "$rconf_ed"; do
	"$RELAYD" -n -f "$rconf" >/dev/null 2>"$work/check.out" || { cat "$work/check.out"; die "relayd -n rejects $rconf"; }
done

# ---- OpenDKIM ---------------------------------------------------------------------
# Its own instance per run, in the foreground (-f), as user opendkim, with a
# copy of the RSA key it owns, mode 0600 (RequireSafeKeys is off only
# because it also refuses a key below a world-writable directory such as
# /var/tmp; it checks once, at start). Signing only (Mode s; mail
# from 127.0.0.1 is internal by default), relaxed/relaxed, the header
# fields relayd signs (From oversigned). Syslog off: there is no syslog
# daemon here, and it is OpenDKIM's cheapest setting; Postfix logs milter
# trouble as warnings, which each run counts. libmilter gives each milter
# connection (one per smtpd session) its own thread: nothing to tune.
odk=$work/opendkim
mkdir -m 755 "$odk" && chown opendkim:opendkim "$odk" || exit 1
install -m 600 -o opendkim -g opendkim "$keys/rsa.key" "$odk/rsa.key" || exit 1
dsock=$odk/opendkim.sock
dconf=$odk/opendkim.conf
cat >"$dconf" <<EOF || exit 1
# written by bench/dkim.sh
Mode			s
Socket			local:$dsock
UMask			000
UserID			opendkim:opendkim
Background		no
AutoRestart		no
Syslog			no
Domain			example.com
Selector		$SEL_RSA
KeyFile			$odk/rsa.key
RequireSafeKeys		no
SignatureAlgorithm	rsa-sha256
Canonicalization	relaxed/relaxed
SignHeaders		From,To,Cc,Subject,Date,Message-ID,Reply-To,In-Reply-To,References,MIME-Version,Content-Type,Content-Transfer-Encoding,List-Unsubscribe,List-Unsubscribe-Post
OversignHeaders		From
SoftwareHeader		no
EOF
[ -n "$ODK_EXTRA" ] && { printf '%s\n' "$ODK_EXTRA" >>"$dconf" || exit 1; }
opendkim -n -x "$dconf" >"$work/check.out" 2>&1 || { cat "$work/check.out"; die "opendkim -n rejects $dconf"; }

opendkim_ready() { [ -S "$dsock" ] || { kill -0 "$opendkim_pid" 2>/dev/null || return 2; return 1; }; }
start_opendkim() {
	rm -f "$dsock"
	opendkim -f -x "$dconf" </dev/null >"$work/opendkim.log" 2>&1 &
	opendkim_pid=$!
	local n=0 r
	while :; do
		opendkim_ready; r=$?
		[ $r = 0 ] && return 0
		[ $r = 2 ] || [ $n -ge 200 ] && break
		sleep 0.1; n=$((n + 1))
	done
	say "$prog: opendkim did not start:"; tail -n 5 "$work/opendkim.log"; return 1
}
opendkim_cpu() {	# user + system CPU seconds of $opendkim_pid so far
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
	    "/proc/$opendkim_pid/stat" 2>/dev/null
}

# ---- Postfix ------------------------------------------------------------------
# relay.sh's instance (delivery at Postfix's defaults, which are its best
# here: see bench/README.md) plus the milter: smtpd_milters on OpenDKIM's
# socket (smtpd is not chrooted in master.cf, so the path works as is),
# non_smtpd_milters likewise, milter_protocol = 6, milter_default_action =
# accept, the milter timeouts at their defaults.
pfx=$work/postfix
write_postfix_main_cf "$SPORT" <<EOF || exit 1
smtpd_milters = unix:$dsock
non_smtpd_milters = \$smtpd_milters
milter_protocol = 6
milter_default_action = accept
internal_mail_filter_classes =
EOF
write_postfix_master_cf || exit 1
# ---- starting and stopping one server ------------------------------------------
start_server() {	# $1 = rsa|ed25519|postfix|sink; sets port
	case $1 in
	rsa)     port=$RPORT; rconf=$rconf_rsa; start_relayd ;;
	ed25519) port=$RPORT; rconf=$rconf_ed; start_relayd ;;
	postfix) port=$PPORT; start_opendkim && start_postfix ;;
	sink)    port=$SPORT ;;
	esac
}
stop_server() {
	[ -n "$master_pid" ] && stop_postfix
	stop_opendkim
	[ -n "$relayd_pid" ] && stop_relayd
	return 0
}
selector_of() { case $1 in ed25519) say "$SEL_ED" ;; *) say "$SEL_RSA" ;; esac; }

# ---- the check: the sink gets signed mail that verifies -------------------------
# A few messages through each server to a sink that keeps them (-d: one file
# each); every one must carry exactly one DKIM-Signature, with the expected
# a=, d= and s=, that python3-dkim verifies against the public key.
verify_server() {	# $1 = rsa|ed25519|postfix
	local srv=$1 dump=$work/dump/$1 alg=rsa-sha256 out
	[ "$srv" = ed25519 ] && alg=ed25519-sha256
	mkdir -p "$dump" && chown nobody "$dump" || return 1
	start_sink -d "$dump/m." || return 1
	start_server "$srv" || { stop_server; stop_sink; return 1; }
	send conn 2 "$port" "$VERIFY"
	stop_server
	stop_sink
	[ "$src_status" = 0 ] || { say "$prog: check $srv: smtp-source exit status $src_status: $(tail -n 1 "$work/source.out")"; return 1; }
	out=$("$PY" - "$dump" "$VERIFY" "$alg" "$(selector_of "$srv")" "$rsa_p" "$ed_p" "$SEL_RSA" "$SEL_ED" <<'EOF'
import os, re, sys, dkim
d, want, alg, sel, rsa_p, ed_p, sel_rsa, sel_ed = sys.argv[1:9]
txt = {sel_rsa: "v=DKIM1; k=rsa; p=" + rsa_p, sel_ed: "v=DKIM1; k=ed25519; p=" + ed_p}
def dns(name, timeout=5):
	if isinstance(name, bytes):
		name = name.decode()
	s, _, dom = name.partition("._domainkey.")
	return txt[s].encode() if dom.rstrip(".") == "example.com" and s in txt else None
files = sorted(os.listdir(d))
one = ok = good_tags = 0
bad = []
for f in files:
	raw = open(os.path.join(d, f), "rb").read()
	msg = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
	head = msg.split(b"\r\n\r\n", 1)[0]
	sigs = re.findall(rb"(?im)^DKIM-Signature:((?:.*\r\n[ \t].*)*.*)", head)
	if len(sigs) != 1:
		bad.append("%s: %d DKIM-Signature fields" % (f, len(sigs)))
		continue
	one += 1
	tags = dict((k.strip(), v.strip()) for k, _, v in
	    (t.partition(b"=") for t in re.sub(rb"\s+", b"", sigs[0]).split(b";") if t))
	if (tags.get(b"a"), tags.get(b"d"), tags.get(b"s")) == (alg.encode(), b"example.com", sel.encode()):
		good_tags += 1
	else:
		bad.append("%s: a=%s d=%s s=%s" % (f, tags.get(b"a"), tags.get(b"d"), tags.get(b"s")))
	if dkim.verify(msg, dnsfunc=dns):
		ok += 1
	else:
		bad.append("%s: does not verify" % f)
n = len(files)
print("%d messages at the sink, %d with one DKIM-Signature, %d with a=%s d=example.com s=%s, %d verify"
    % (n, one, good_tags, alg, sel, ok))
for b in bad[:5]:
	print("  " + b)
sys.exit(0 if n == int(want) and one == ok == good_tags == n else 1)
EOF
)
	local st=$?
	say "check $srv: $out"
	return $st
}

# ---- one measurement --------------------------------------------------------
results=$work/results.tsv
: >"$results"


# measure SERVER MODE SESSIONS REP: one line on stdout, one row in $results
measure() {
	local server=$1 mode=$2 sess=$3 rep=$4 note='' rate ld odd n c0 c1 busy=-
	local sent=- queued=- got=- sinksess=- signed=- cpu=- odkcpu=- sel
	if [ "$server" = sink ]; then quiesce 0; else quiesce; fi
	ld=$(load1)
	start_sink || note="smtp-sink did not start; "
	[ -z "$note" ] && { start_server "$server" || note="$server did not start; "; }
	if [ -z "$note" ]; then
		c0=$(cpu_snap)
		send "$mode" "$sess" "$port"
		c1=$(cpu_snap)
		busy=$(busy_pct "$c0" "$c1")
		note=$wait_note
		case $server in
		rsa|ed25519)
			# The sink's count can run ahead of relayd reading the
			# last 250s: let it log them before it is stopped.
			until_true 30 relayd_all_sent
			cpu=$(relayd_thread_cpu "$relayd_pid")
			kill -0 "$relayd_pid" 2>/dev/null || note="${note}relayd died during the run; "
			stop_relayd
			sel=$(selector_of "$server")
			sent=$(grep -c 'status=sent' "$work/relayd.log")
			signed=$(grep -c ": from=<[^>]*>, .*, dkim=$sel\$" "$work/relayd.log")
			queued=$(sed -n 's/.*stopped, \([0-9]*\) messages in the queue.*/\1/p' "$work/relayd.log")
			[ "$relayd_status" = 0 ] || note="${note}relayd exit status $relayd_status; "
			[ "$signed" = "$MSGS" ] || note="${note}signed (dkim=$sel) $signed of $MSGS; "
			odd=$(relayd_odd_lines ': to=<[^>]*>, .* status=sent |: [0-9A-Za-z]+: removed$|spool: [0-9]+ records in [0-9]+ commits')
			if [ -n "$odd" ]; then
				n=$(printf '%s\n' "$odd" | wc -l)
				note="$note$n other log lines, first: $(printf '%s\n' "$odd" | head -n 1 | cut -c1-200); "
				printf '%s\n' "$odd" | head -n 20 | sed "s/^/$server $mode s=$sess #$rep: /" >>"$work/odd.log"
			fi
			;;
		postfix)
			until_true 30 postfix_all_sent
			odkcpu=$(opendkim_cpu)
			kill -0 "$opendkim_pid" 2>/dev/null || note="${note}opendkim died during the run; "
			queued=$(postfix_queued)
			sent=$(grep -c 'status=sent' "$pfx/maillog" 2>/dev/null)
			# Left out: qmgr saying one destination fills its active
			# queue (the backlog this measures) and the clock notice
			# of a busy VM. Milter trouble (timeouts, refused
			# connections: mail then goes unsigned) is a warning.
			odd=$(grep -E 'warning|fatal|panic|error|status=(deferred|bounced)|milter' "$pfx/maillog" |
			    grep -Ev 'not owned by postfix|is using up [0-9]+ of [0-9]+ active queue entries|file system clock is [0-9]+ seconds? ahead')
			if [ -n "$odd" ]; then
				note="$note$(printf '%s\n' "$odd" | wc -l) warnings in maillog, first: $(printf '%s\n' "$odd" | head -n 1 | cut -c1-200); "
				printf '%s\n' "$odd" | head -n 20 | sed "s/^/$server $mode s=$sess #$rep: /" >>"$work/odd.log"
			fi
			;;
		sink)
			sent=$MSGS queued=0
			;;
		esac
	fi
	stop_server
	stop_sink
	got=$(sink_count mesg) sinksess=$(sink_count sess)
	[ -n "${src_status:-}" ] && [ "$src_status" != 0 ] &&
		note="smtp-source exit status $src_status: $(tail -n 1 "$work/source.out" | cut -c1-200); $note"
	[ "${got:-x}" = "$MSGS" ] || note="sink received ${got:-?} of $MSGS; $note"
	[ "$sent" = "$MSGS" ] || note="status=sent $sent of $MSGS; $note"
	[ "$queued" = 0 ] || note="$queued left in the queue; $note"
	if [ "${src_status:-1}" = 0 ] && [ "${got:-x}" = "$MSGS" ] && [ "$sent" = "$MSGS" ] &&
	    [ "$queued" = 0 ] && [ -n "${e2e:-}" ] && { [ "$signed" = - ] || [ "$signed" = "$MSGS" ]; }; then
		rate=$(awk -v m="$MSGS" -v e="$e2e" 'BEGIN { printf "%.0f", m / e }')
	else
		rate=FAIL
	fi
	[ "$server" != sink ] && note="sink saw ${sinksess:-?} sessions; $note"
	[ "$odkcpu" != - ] && note="opendkim cpu ${odkcpu}s; $note"
	[ "$cpu" != - ] && note="relayd cpu $(printf '%s' "$cpu" | awk '{ printf "%ss (loop %s, threads %s)", $1, $2, $3 }'); $note"
	printf '%-7s %-5s s=%-3s #%s  e2e %7ss  %6s msg/s  (smtp-source %7ss)  load %-5s busy %3s%%  %s\n' \
	    "$server" "$mode" "$sess" "$rep" "${e2e:--}" "$rate" "${submit:--}" "$ld" "$busy" "${note%; }"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$sess" "$rep" "$rate" \
	    "${e2e:--}" "$busy" "$cpu" "$odkcpu" "$note" >>"$results"
	# Delete now, so the next measurement's pause covers the inode reuse.
	rm -rf "$work/relayd-spool" "$pfx/queue" "$pfx/data" "$pfx/maillog" "$work/relayd.log" \
	    "$work/sink.out" "$work/wait.out"
	unset src_status e2e submit
}

# ---- run ----------------------------------------------------------------------
say "relayd DKIM end-to-end benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
say "relayd: $RELAYD ($("$RELAYD" -V 2>&1 | head -n 1); commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo ?)); upstream max_connections = $UCONN; $(nproc) signing workers (one per CPU)"
say "keys:   RSA-2048 (s=$SEL_RSA) and Ed25519 (s=$SEL_ED), made now with openssl genpkey; c=relaxed/relaxed"
say "peer:   Postfix $(postconf -d -h mail_version 2>/dev/null) as a relay (relayhost = [127.0.0.1]:$SPORT) + $(opendkim -V 2>&1 | head -n 1 | sed 's/^opendkim: //') on a unix socket (same RSA key)${PFX_EXTRA:+; main.cf also: $(printf '%s' "$PFX_EXTRA" | tr '\n' ';')}${ODK_EXTRA:+; opendkim.conf also: $(printf '%s' "$ODK_EXTRA" | tr '\n' ';')}"
say "path:   smtp-source -> server -> smtp-sink (one fresh sink per run), all on loopback"
say "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo) RAM; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "spool/queue filesystem: $(df --output=source,fstype,target "$work" | tail -n 1 | tr -s ' ') ($work)"
say "load: $MSGS messages of $SIZE bytes (+ smtp-source's From/To/Date/Message-Id/Subject) per run; sessions: $SESSIONS; modes: conn = a connection per message, reuse = smtp-source -d"
say "each run: fresh sink, daemons and spool, sync, drop_caches, ${PAUSE}s pause (none before a sink-alone run); repeats: $REPEAT"
say "e2e = from just before smtp-source starts until the sink counts the last message; busy = all CPUs' use meanwhile"
say ""
for server in $SERVERS; do
	[ "$server" = sink ] && continue
	verify_server "$server" || die "$server: the sink did not get $VERIFY signed messages that verify; not measuring"
done
rm -rf "$work/dump"
say ""
say "raw runs:"
for sess in $SESSIONS; do
	for mode in $MODES; do
		for rep in $(seq 1 "$REPEAT"); do
			for server in $SERVERS; do
				measure "$server" "$mode" "$sess" "$rep"
			done
			[ "$CEILING" = 1 ] && measure sink "$mode" "$sess" "$rep"
		done
	done
done
if [ -s "$work/odd.log" ]; then
	say ""
	say "other log lines (relayd's, and Postfix's warnings; first 20 of each run):"
	sed 's/^/  /' "$work/odd.log"
fi

say ""
"$PY" - "$results" "$MSGS" "$SIZE" "$REPEAT" "$UCONN" "$TARGET" <<'EOF'
import sys, statistics
path, msgs, size, repeat, uconn, target = sys.argv[1:7]
target = float(target)
runs = {}
cpus = {}
for line in open(path):
	if not line.strip():
		continue
	server, mode, sess, rep, rate, e2e, busy, cpu, odkcpu, note = line.rstrip("\n").split("\t")
	runs.setdefault((int(sess), mode, server), []).append(rate)
	if cpu not in ("", "-") or odkcpu not in ("", "-"):
		cpus.setdefault((int(sess), mode), []).append((server, rep, rate, e2e, busy, cpu, odkcpu))

def med(v):
	ok = [float(x) for x in v if x != "FAIL"]
	if not ok or len(ok) != len(v):
		return None
	return statistics.median(ok)

def fmt(x):
	return "FAIL" if x is None else "{:,.0f}".format(x)

def ratio(a, b):
	return "%.2f" % (a / b) if a and b else "-"

modes = {"conn": "conn/msg", "reuse": "reused"}
print("messages relayed and signed per second, end to end: %s msgs of %s bytes, median of %s;"
    " relayd upstream max_connections = %s" % (msgs, size, repeat, uconn))
print("%8s  %-9s %11s %15s %15s %9s %9s  %-24s %10s" % ("sessions", "mode", "relayd-rsa",
    "relayd-ed25519", "postfix+odkim", "rsa/pf", "ed/pf", "target rsa >= %gx Postfix" % target,
    "sink alone"))
for sess, mode in sorted({(k[0], k[1]) for k in runs}):
	have = lambda s: (sess, mode, s) in runs
	r = med(runs.get((sess, mode, "rsa"), []))
	e = med(runs.get((sess, mode, "ed25519"), []))
	p = med(runs.get((sess, mode, "postfix"), []))
	c = med(runs.get((sess, mode, "sink"), []))
	tgt = ("met" if r / p >= target else "NOT met") if r and p else "-"
	print("%8d  %-9s %11s %15s %15s %9s %9s  %-24s %10s" % (sess, modes.get(mode, mode),
	    fmt(r) if have("rsa") else "-", fmt(e) if have("ed25519") else "-",
	    fmt(p) if have("postfix") else "-", ratio(r, p), ratio(e, p), tgt,
	    fmt(c) if have("sink") else "-"))
if any(k[2] == "sink" for k in runs):
	print("(sink alone: smtp-source straight to smtp-sink, the loopback ceiling)")
if cpus:
	print()
	print("CPU per run (seconds of user + system): relayd total, its event loop, its other threads in"
	    " start order (the spool committer, then the signing workers); OpenDKIM total; busy = all"
	    " CPUs' use during the run")
	for (sess, mode), v in sorted(cpus.items()):
		for server, rep, rate, e2e, busy, cpu, odkcpu in v:
			if cpu not in ("", "-"):
				tot, loop, rest = cpu.split(" ")
				what = "relayd %6ss  loop %6s  threads %s" % (tot, loop, rest)
			else:
				what = "opendkim %6ss" % odkcpu
			print("%8d  %-9s %-7s #%s  %6s msg/s  busy %3s%%  %s" % (sess, modes.get(mode, mode),
			    server, rep, rate, busy, what))
EOF
say ""
say "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
