#!/bin/bash
# relay.sh — how fast relayd relays mail end to end, measured next to
# Postfix set up as a relay in the same run.
#
# A benchmark, not a test: it asserts nothing and is never part of
# `make check`. It prints figures and relayd/Postfix ratios; bench/README.md
# explains what is measured and why.
#
# smtp-source → server → smtp-sink, all of Postfix's tools on loopback. For
# each session count (1, 20, 100) and each way of submitting (a new
# connection per message, smtp-source's default; or connections reused,
# smtp-source -d), BENCH_MSGS messages of BENCH_SIZE bytes go, BENCH_REPEAT
# times, alternately through relayd and through a private Postfix instance
# whose relayhost is the same smtp-sink. A run's time is end to end: from
# just before smtp-source starts until the sink has received the last message
# (sink_wait.py watches smtp-sink's -c counters), not until smtp-source is
# done. A run counts only if smtp-source exits 0, the sink received exactly
# BENCH_MSGS messages, the server logged BENCH_MSGS `status=sent` and its
# queue is empty at the end. With BENCH_CEILING=1 each round also sends the
# same load straight to the sink: the loopback ceiling, for scale.
#
# Before every relayd or Postfix measurement: a fresh sink, a fresh daemon
# with a fresh spool or queue directory, `sync`, drop_caches and a
# BENCH_PAUSE-second pause (see accept.sh and bench/README.md: this ext4
# keeps deleted inodes out of reuse for about a minute).
#
# Needs root (drop_caches, Postfix, smtp-sink binds then runs as nobody),
# smtp-source, smtp-sink and postfix (Debian package postfix; its system
# instance stays stopped), /usr/bin/python3, and a relayd built in
# _build/bench (or RELAYD=path). Loopback only. Everything it starts is
# stopped by PID; its temporary directory goes too.
#
# Usage: bench/relay.sh
# Environment (defaults): BENCH_PAUSE (62) BENCH_MSGS (20000) BENCH_REPEAT (3)
#   BENCH_SIZE (2048) BENCH_SESSIONS ("1 20 100") BENCH_MODES ("conn reuse")
#   BENCH_SERVERS ("relayd postfix") BENCH_CEILING (1) BENCH_UPSTREAM_CONN (20:
#   relayd's max_connections to the sink) BENCH_DIR (/var/tmp)
#   BENCH_RELAYD_PORT (12525) BENCH_POSTFIX_PORT (10025) BENCH_SINK_PORT (10026)
#   BENCH_TIMEOUT (900: bound on one smtp-source run, seconds) BENCH_DRAIN (300:
#   bound on the wait for the sink after smtp-source is done) BENCH_POSTFIX_MAIN
#   (lines added to Postfix's main.cf, to try other settings) RELAYD
# Quick smoke run: BENCH_PAUSE=0 BENCH_MSGS=2000 BENCH_REPEAT=1 bench/relay.sh
set -u

top=$(cd "$(dirname "$0")/.." && pwd) || exit 1
prog=relay.sh
. "$top/bench/common.sh" || exit 1

RELAYD=${RELAYD:-$top/_build/bench/relayd}
PAUSE=${BENCH_PAUSE:-62}
MSGS=${BENCH_MSGS:-20000}
REPEAT=${BENCH_REPEAT:-3}
SIZE=${BENCH_SIZE:-2048}
SESSIONS=${BENCH_SESSIONS:-1 20 100}
MODES=${BENCH_MODES:-conn reuse}
SERVERS=${BENCH_SERVERS:-relayd postfix}
CEILING=${BENCH_CEILING:-1}
UCONN=${BENCH_UPSTREAM_CONN:-20}
BASEDIR=${BENCH_DIR:-/var/tmp}
RPORT=${BENCH_RELAYD_PORT:-12525}
PPORT=${BENCH_POSTFIX_PORT:-10025}
SPORT=${BENCH_SINK_PORT:-10026}
RUN_TIMEOUT=${BENCH_TIMEOUT:-900}
DRAIN=${BENCH_DRAIN:-300}
PFX_EXTRA=${BENCH_POSTFIX_MAIN:-}
PY=/usr/bin/python3
SENDER=sender@example.com
RCPT=rcpt@example.net

# ---- preconditions ----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (drop_caches, Postfix's master, smtp-sink -u)"
[ -x "$RELAYD" ] || die "no relayd at $RELAYD: build it (mkdir -p _build/bench && cd _build/bench && ../../configure && make) or set RELAYD"
for t in smtp-source smtp-sink postfix postconf ss timeout; do
	command -v "$t" >/dev/null || die "$t not found (apt-get install postfix iproute2 coreutils)"
done
[ -x "$PY" ] || die "$PY not found"
[ -d "$BASEDIR" ] || die "BENCH_DIR $BASEDIR does not exist"
for p in "$RPORT" "$PPORT" "$SPORT"; do
	listening "$p" && die "something already listens on port $p (set BENCH_RELAYD_PORT / BENCH_POSTFIX_PORT / BENCH_SINK_PORT)"
done
make_workdir relayd-bench || exit 1
relayd_pid='' master_pid='' sink_pid='' wait_pid=''

cleanup() {
	stop_pid "$wait_pid"
	stop_pid "$relayd_pid"
	stop_postfix
	stop_pid "$sink_pid"
	relayd_pid='' wait_pid='' sink_pid=''
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- relayd -------------------------------------------------------------------
rconf=$work/relayd.conf
write_relayd_sink_conf "$rconf" </dev/null || exit 1
"$RELAYD" -n -f "$rconf" >/dev/null 2>"$work/check.out" || { cat "$work/check.out"; die "relayd -n rejects $rconf"; }

relayd_cpu() {	# user + system CPU seconds of $relayd_pid so far
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
	    "/proc/$relayd_pid/stat" 2>/dev/null
}

# ---- Postfix ------------------------------------------------------------------
# A private instance (common.sh) that relays everything it accepts to the
# sink: relayhost = [127.0.0.1]:$SPORT, no DNS (a bracketed address), and
# its delivery settings at Postfix's defaults: qmgr's concurrency towards one
# destination default_destination_concurrency_limit = 20 (slow start from 5),
# smtp_connection_cache_on_demand = yes (sessions reused while the
# destination has a backlog), in_flow_delay = 1s (smtpd waits for the queue
# manager when deliveries fall behind: Postfix's own back-pressure, part of
# what end to end means). Beyond the paths only what 100 sessions from one
# client need: default_process_limit = 200 (100 smtpd + 20 smtp + the rest)
# and no per-client connection limit.
pfx=$work/postfix
write_postfix_main_cf "$SPORT" </dev/null || exit 1
write_postfix_master_cf || exit 1
# ---- one measurement --------------------------------------------------------
results=$work/results.tsv
: >"$results"

# measure SERVER MODE SESSIONS REP: one line on stdout, one row in $results
# SERVER is relayd, postfix, or sink (straight to the sink: the ceiling)
measure() {
	local server=$1 mode=$2 sess=$3 rep=$4 note='' rate ld odd n port
	local sent=- queued=- got=- sinksess=- cpu=- hwm=- commits=''
	if [ "$server" = sink ]; then quiesce 0; else quiesce; fi
	ld=$(load1)
	start_sink || note="smtp-sink did not start; "
	case $server in
	relayd)  port=$RPORT; [ -z "$note" ] && { start_relayd || note="relayd did not start; "; } ;;
	postfix) port=$PPORT; [ -z "$note" ] && { start_postfix || note="Postfix did not start; "; } ;;
	sink)    port=$SPORT ;;
	esac
	if [ -z "$note" ]; then
		send "$mode" "$sess" "$port"
		note=$wait_note
		case $server in
		relayd)
			# The sink's count can run ahead of relayd reading the
			# last 250s: let it log them before it is stopped.
			until_true 30 relayd_all_sent
			cpu=$(relayd_cpu) hwm=$(proc_kb "$relayd_pid" VmHWM)
			kill -0 "$relayd_pid" 2>/dev/null || note="${note}relayd died during the run; "
			stop_relayd
			sent=$(grep -c 'status=sent' "$work/relayd.log")
			queued=$(sed -n 's/.*stopped, \([0-9]*\) messages in the queue.*/\1/p' "$work/relayd.log")
			commits=$(sed -n 's/.*spool: \([0-9]* records in [0-9]* commits\).*/\1/p' "$work/relayd.log")
			[ "$relayd_status" = 0 ] || note="${note}relayd exit status $relayd_status; "
			odd=$(relayd_odd_lines ': to=<[^>]*>, .* status=sent |: [0-9A-Za-z]+: removed$')
			if [ -n "$odd" ]; then
				n=$(printf '%s\n' "$odd" | wc -l)
				note="$note$n other log lines, first: $(printf '%s\n' "$odd" | head -n 1 | cut -c1-200); "
				printf '%s\n' "$odd" | head -n 20 >>"$work/odd.log"
			fi
			;;
		postfix)
			until_true 30 postfix_all_sent
			queued=$(postfix_queued)
			sent=$(grep -c 'status=sent' "$pfx/maillog" 2>/dev/null)
			# Left out: qmgr saying one destination fills its active
			# queue (the 20,000-message backlog this measures) and the
			# clock notice of a busy VM.
			odd=$(grep -E 'warning|fatal|panic|error|status=(deferred|bounced)' "$pfx/maillog" |
			    grep -Ev 'not owned by postfix|is using up [0-9]+ of [0-9]+ active queue entries|file system clock is [0-9]+ seconds? ahead')
			if [ -n "$odd" ]; then
				note="$note$(printf '%s\n' "$odd" | wc -l) warnings in maillog, first: $(printf '%s\n' "$odd" | head -n 1 | cut -c1-200); "
			fi
			;;
		sink)
			sent=$MSGS queued=0
			;;
		esac
	fi
	[ "$server" = postfix ] && stop_postfix
	[ "$server" = relayd ] && [ -n "$relayd_pid" ] && stop_relayd
	stop_sink
	got=$(sink_count mesg) sinksess=$(sink_count sess)
	[ -n "${src_status:-}" ] && [ "$src_status" != 0 ] &&
		note="smtp-source exit status $src_status: $(tail -n 1 "$work/source.out" | cut -c1-200); $note"
	[ "${got:-x}" = "$MSGS" ] || note="sink received ${got:-?} of $MSGS; $note"
	[ "$sent" = "$MSGS" ] || note="status=sent $sent of $MSGS; $note"
	[ "$queued" = 0 ] || note="$queued left in the queue; $note"
	if [ "${src_status:-1}" = 0 ] && [ "${got:-x}" = "$MSGS" ] && [ "$sent" = "$MSGS" ] &&
	    [ "$queued" = 0 ] && [ -n "${e2e:-}" ]; then
		rate=$(awk -v m="$MSGS" -v e="$e2e" 'BEGIN { printf "%.0f", m / e }')
	else
		rate=FAIL
	fi
	[ -n "$commits" ] && note="spool: $commits; $note"
	[ "$server" != sink ] && note="sink saw ${sinksess:-?} sessions; $note"
	[ "$cpu" != - ] && note="cpu ${cpu}s VmHWM ${hwm} kB; $note"
	printf '%-7s %-5s s=%-3s #%s  e2e %7ss  %6s msg/s  (smtp-source %7ss)  load %-5s %s\n' \
	    "$server" "$mode" "$sess" "$rep" "${e2e:--}" "$rate" "${submit:--}" "$ld" "${note%; }"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$sess" "$rep" "$rate" \
	    "${e2e:--}" "${submit:--}" "$note" >>"$results"
	# Delete now, so the next measurement's pause covers the inode reuse.
	rm -rf "$work/relayd-spool" "$pfx/queue" "$pfx/data" "$pfx/maillog" "$work/relayd.log" \
	    "$work/sink.out" "$work/wait.out"
	unset src_status e2e submit
}

# ---- run ----------------------------------------------------------------------
say "relayd end-to-end relay benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
say "relayd: $RELAYD ($("$RELAYD" -V 2>&1 | head -n 1); commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo ?)); upstream max_connections = $UCONN"
say "peer:   Postfix $(postconf -d -h mail_version 2>/dev/null) as a relay (relayhost = [127.0.0.1]:$SPORT), delivery settings at their defaults${PFX_EXTRA:+ except: $(printf '%s' "$PFX_EXTRA" | tr '\n' ';')}"
say "path:   smtp-source -> server -> smtp-sink (one fresh sink per run), all on loopback"
say "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo) RAM; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "spool/queue filesystem: $(df --output=source,fstype,target "$work" | tail -n 1 | tr -s ' ') ($work)"
say "load: $MSGS messages of $SIZE bytes per run; sessions: $SESSIONS; modes: conn = a connection per message, reuse = smtp-source -d"
say "each run: fresh sink, daemon and spool, sync, drop_caches, ${PAUSE}s pause (none before a sink-alone run); repeats: $REPEAT"
say "e2e = from just before smtp-source starts until the sink counts the last message"
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
	say "relayd's other log lines (first 20 of each run):"
	sed 's/^/  /' "$work/odd.log"
fi

say ""
"$PY" - "$results" "$MSGS" "$SIZE" "$REPEAT" "$UCONN" <<'EOF'
import re, sys, statistics
path, msgs, size, repeat, uconn = sys.argv[1:6]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
runs = {}
commits = {}
for server, mode, sess, rep, rate, e2e, submit, note in rows:
	m = re.search(r"spool: (\d+) records in (\d+) commits", note)
	if server == "relayd" and m:
		commits.setdefault((int(sess), mode), []).append((int(m.group(1)), int(m.group(2))))
	runs.setdefault((int(sess), mode, server), []).append(rate)

def med(v):
	ok = [float(x) for x in v if x != "FAIL"]
	if not ok or len(ok) != len(v):
		return None
	return statistics.median(ok)

def fmt(x):
	return "FAIL" if x is None else "{:,.0f}".format(x)

modes = {"conn": "conn/msg", "reuse": "reused"}
print("messages relayed per second, end to end: %s msgs of %s bytes, median of %s;"
    " relayd upstream max_connections = %s" % (msgs, size, repeat, uconn))
print("%8s  %-9s %13s %14s %7s  %-21s %11s %12s" % ("sessions", "mode", "relayd msg/s",
    "postfix msg/s", "ratio", "target >= 4x Postfix", "sink alone", "sink/postfix"))
for sess, mode in sorted({(k[0], k[1]) for k in runs}, key=lambda k: (k[0], k[1])):
	have = lambda s: (sess, mode, s) in runs
	r = med(runs.get((sess, mode, "relayd"), []))
	p = med(runs.get((sess, mode, "postfix"), []))
	c = med(runs.get((sess, mode, "sink"), []))
	ratio = "%.2f" % (r / p) if r and p else "-"
	target = ("met" if r / p >= 4 else "NOT met") if r and p else "-"
	print("%8d  %-9s %13s %14s %7s  %-21s %11s %12s" % (sess, modes.get(mode, mode),
	    fmt(r) if have("relayd") else "-", fmt(p) if have("postfix") else "-", ratio,
	    target, fmt(c) if have("sink") else "-", "%.2f" % (c / p) if c and p else "-"))
if any(k[2] == "sink" for k in runs):
	print("(sink alone: smtp-source straight to smtp-sink, the loopback ceiling; sink/postfix is the"
	    " highest ratio any relay could reach in that row)")
if commits:
	print()
	print("relayd spool group commit (its log at stop: \"spool: N records in M commits\"; a relayed"
	    " message writes its message record and, once sent, its retirement record, which waits for the next commit someone waits for), per run:")
	for (sess, mode), v in sorted(commits.items()):
		print("%8d  %-9s %s" % (sess, modes.get(mode, mode), "; ".join(
		    "%d in %d (%.1f per commit)" % (n, c, n / c if c else 0) for n, c in v)))
EOF
say ""
say "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
