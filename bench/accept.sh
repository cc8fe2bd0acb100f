#!/bin/bash
# accept.sh — how fast relayd accepts mail, and how much memory it uses,
# measured next to Postfix's smtpd in the same run.
#
# A benchmark, not a test: it asserts nothing and is never part of
# `make check`. It prints figures and relayd/Postfix ratios; bench/README.md
# explains what is measured and why.
#
# For each session count (1, 20, 100) and each way of using connections (a
# new connection per message, smtp-source's default; or connections reused,
# smtp-source -d), it sends BENCH_MSGS messages of BENCH_SIZE bytes with
# Postfix's smtp-source, BENCH_REPEAT times, alternately to relayd and to a
# private Postfix instance whose smtpd puts all mail on hold (so Postfix does
# no delivery work while it is measured). Before every measurement: a fresh
# daemon with a fresh spool or queue directory, `sync`, drop_caches and a
# BENCH_PAUSE-second pause, because this ext4 (no journal) keeps deleted
# inodes out of reuse for about a minute and would make a run pay for the
# deletions of the one before. relayd's peak RSS (VmHWM) is read after each
# run, and once more with BENCH_IDLE idle connections open (idle_conns.py).
#
# Needs root (drop_caches, Postfix), smtp-source and postfix (Debian package
# postfix; its system instance stays stopped), /usr/bin/python3, and a
# relayd built in _build/bench (or RELAYD=path). Loopback only. Everything
# it starts is stopped by PID; its temporary directory goes too.
#
# Usage: bench/accept.sh
# Environment (defaults): BENCH_PAUSE (62) BENCH_MSGS (20000) BENCH_REPEAT (3)
#   BENCH_SIZE (2048) BENCH_SESSIONS ("1 20 100") BENCH_MODES ("conn reuse")
#   BENCH_IDLE (10000; 0 skips the idle test) BENCH_DIR (/var/tmp: on the
#   filesystem of /var) BENCH_RELAYD_PORT (12525) BENCH_POSTFIX_PORT (10025)
#   BENCH_TIMEOUT (900: bound on one smtp-source run, seconds) RELAYD
# Quick smoke run: BENCH_PAUSE=0 BENCH_MSGS=2000 BENCH_REPEAT=1 bench/accept.sh
set -u

top=$(cd "$(dirname "$0")/.." && pwd) || exit 1
RELAYD=${RELAYD:-$top/_build/bench/relayd}
PAUSE=${BENCH_PAUSE:-62}
MSGS=${BENCH_MSGS:-20000}
REPEAT=${BENCH_REPEAT:-3}
SIZE=${BENCH_SIZE:-2048}
SESSIONS=${BENCH_SESSIONS:-1 20 100}
MODES=${BENCH_MODES:-conn reuse}
IDLE=${BENCH_IDLE:-10000}
BASEDIR=${BENCH_DIR:-/var/tmp}
RPORT=${BENCH_RELAYD_PORT:-12525}
PPORT=${BENCH_POSTFIX_PORT:-10025}
RUN_TIMEOUT=${BENCH_TIMEOUT:-900}
PY=/usr/bin/python3
SENDER=sender@example.com
RCPT=rcpt@example.net

prog=accept.sh
. "$top/bench/common.sh" || exit 1

# ---- preconditions ----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (drop_caches, and Postfix's master needs it)"
[ -x "$RELAYD" ] || die "no relayd at $RELAYD: build it (mkdir -p _build/bench && cd _build/bench && ../../configure && make) or set RELAYD"
for t in smtp-source postfix postconf ss timeout; do
	command -v "$t" >/dev/null || die "$t not found (apt-get install postfix iproute2 coreutils)"
done
[ -x "$PY" ] || die "$PY not found"
[ -d "$BASEDIR" ] || die "BENCH_DIR $BASEDIR does not exist"
for p in "$RPORT" "$PPORT"; do
	listening "$p" && die "something already listens on port $p (set BENCH_RELAYD_PORT / BENCH_POSTFIX_PORT)"
done
make_workdir relayd-bench || exit 1
relayd_pid='' master_pid='' idle_pid=''

cleanup() {
	stop_pid "$idle_pid"
	stop_pid "$relayd_pid"
	stop_postfix
	relayd_pid='' idle_pid=''
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- relayd -----------------------------------------------------------------
rconf=$work/relayd.conf
cat >"$rconf" <<EOF || exit 1
# written by bench/accept.sh
hostname = "bench.example.com"
listen = { "127.0.0.1:$RPORT" }
spool = "$work/relayd-spool"
control = "$work/relayd-control.sock"
max_clients = 11000
timeout = 600
upstream "nowhere" {
	host = "127.0.0.1"
	port = 9
	tls = "none"
	auth = "none"
	# relayd relays now: one attempt a minute at most (each is refused),
	# so that a run measures accepting, not failed deliveries.
	rate = 1
}
domain "example.com" {
	upstream = "nowhere"
}
EOF
"$RELAYD" -n -f "$rconf" >/dev/null 2>"$work/check.out" || { cat "$work/check.out"; die "relayd -n rejects $rconf"; }

# ---- Postfix ----------------------------------------------------------------
# A private instance: its own configuration, queue and data directories in
# $work, smtpd on 127.0.0.1:$PPORT only, no chroot, log to a file through
# postlogd (as relayd logs to a file). Every client is put on hold at RCPT,
# so cleanup files the message in the hold queue and the queue manager never
# sees it. in_flow_delay = 0: with nothing delivered, the queue manager
# hands out no flow-control tokens, and smtpd would sleep 1 s per message.
pfx=$work/postfix
write_postfix_main_cf 9 <<EOF || exit 1
smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject
in_flow_delay = 0s
EOF
write_postfix_master_cf || exit 1

# ---- one measurement --------------------------------------------------------
results=$work/results.tsv
: >"$results"

# smtp_source MODE SESSIONS PORT: runs it, sets elapsed and src_status
smtp_source() {
	local d='' t0 t1
	[ "$1" = reuse ] && d=-d
	t0=$(now)
	timeout "$RUN_TIMEOUT" smtp-source $d -s "$2" -m "$MSGS" -l "$SIZE" \
	    -f "$SENDER" -t "$RCPT" "127.0.0.1:$3" >"$work/source.out" 2>&1
	src_status=$?
	t1=$(now)
	elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

# measure SERVER MODE SESSIONS REP: one line on stdout, one row in $results
measure() {
	local server=$1 mode=$2 sess=$3 rep=$4 hwm=- queued=0 note='' rate ld odd n
	quiesce
	ld=$(load1)
	if [ "$server" = relayd ]; then
		start_relayd || { note="relayd did not start"; stop_relayd; }
		if [ -n "$relayd_pid" ]; then
			smtp_source "$mode" "$sess" "$RPORT"
			hwm=$(proc_kb "$relayd_pid" VmHWM)
			kill -0 "$relayd_pid" 2>/dev/null || note="relayd died during the run; "
			stop_relayd
			queued=$(sed -n 's/.*stopped, \([0-9]*\) messages in the queue.*/\1/p' "$work/relayd.log")
			commits=$(sed -n 's/.*spool: \([0-9]* records in [0-9]* commits\).*/\1/p' "$work/relayd.log")
			[ -n "$commits" ] && note="${note}spool: $commits"
			[ "$relayd_status" = 0 ] || note="$note; relayd exit status $relayd_status"
			odd=$(relayd_odd_lines)
			if [ -n "$odd" ]; then
				n=$(printf '%s\n' "$odd" | wc -l)
				note="$note; $n other log lines, first: $(printf '%s\n' "$odd" | head -n 1 | cut -c1-200)"
			fi
		fi
	else
		start_postfix || note="Postfix did not start"
		if [ -n "$master_pid" ] && [ -z "$note" ]; then
			smtp_source "$mode" "$sess" "$PPORT"
			queued=$(queue_count hold)
			n=$(($(queue_count incoming) + $(queue_count active) + $(queue_count deferred)))
			[ "$n" -gt 0 ] && note="$n messages not on hold; "
			odd=$(grep -E 'warning|fatal|panic|error' "$pfx/maillog" | grep -v 'not owned by postfix')
			if [ -n "$odd" ]; then
				note="$note$(printf '%s\n' "$odd" | wc -l) warnings in maillog, first: $(printf '%s\n' "$odd" | head -n 1 | cut -c1-200)"
			fi
		fi
		stop_postfix
	fi
	[ -n "${src_status:-}" ] && [ "$src_status" != 0 ] &&
		note="smtp-source exit status $src_status: $(tail -n 1 "$work/source.out" | cut -c1-200); $note"
	[ "${queued:-0}" = "$MSGS" ] || note="queued ${queued:-?} of $MSGS; $note"
	if [ "${src_status:-1}" = 0 ] && [ "${queued:-0}" = "$MSGS" ]; then
		rate=$(awk -v m="$MSGS" -v e="$elapsed" 'BEGIN { printf "%.0f", m / e }')
	else
		rate=FAIL
	fi
	printf '%-7s %-5s s=%-3s #%s  %6ss  %7s msg/s  VmHWM %6s kB  load %s  %s\n' \
	    "$server" "$mode" "$sess" "$rep" "${elapsed:--}" "$rate" "$hwm" "$ld" "$note"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$sess" "$rep" "$rate" \
	    "${elapsed:--}" "$hwm" "$note" >>"$results"
	# Delete now, so the next measurement's pause covers the inode reuse.
	rm -rf "$work/relayd-spool" "$pfx/queue" "$pfx/data" "$pfx/maillog" "$work/relayd.log"
	unset src_status elapsed
}

# ---- idle connections ---------------------------------------------------------
idle_test() {
	local out
	quiesce
	start_relayd || return 1
	"$PY" "$top/bench/idle_conns.py" --port "$RPORT" --count "$IDLE" --pid "$relayd_pid" \
	    >"$work/idle.out" 2>&1 &
	idle_pid=$!
	timeout 300 tail --pid="$idle_pid" -f /dev/null 2>/dev/null
	kill -0 "$idle_pid" 2>/dev/null && { say "accept.sh: idle_conns.py still running after 300 s"; stop_pid "$idle_pid"; }
	wait "$idle_pid"
	idle_status=$?
	idle_pid=''
	idle_hwm_after=$(proc_kb "$relayd_pid" VmHWM)
	kill -0 "$relayd_pid" 2>/dev/null || say "accept.sh: relayd died during the idle test"
	stop_relayd
	out=$(cat "$work/idle.out")
	say "$out" | sed 's/^/  /'
	say "  relayd VmHWM after the connections closed: $idle_hwm_after kB; idle_conns.py exit status $idle_status; relayd exit status $relayd_status"
	relayd_odd_lines | head -n 5 | sed 's/^/  relayd log: /'
	idle_greeted=$(sed -n 's/^greeted=//p' "$work/idle.out")
	idle_rss=$(sed -n 's/^vmrss_kb=//p' "$work/idle.out")
	idle_hwm=$idle_hwm_after
	rm -rf "$work/relayd-spool" "$work/relayd.log"
}

# ---- run ----------------------------------------------------------------------
say "relayd accept benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
say "relayd: $RELAYD ($("$RELAYD" -V 2>&1 | head -n 1); commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo ?))"
say "peer:   Postfix $(postconf -d -h mail_version 2>/dev/null) smtpd, mail put on hold; client: smtp-source"
say "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo) RAM; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "spool/queue filesystem: $(df --output=source,fstype,target "$work" | tail -n 1 | tr -s ' ') ($work)"
say "load: $MSGS messages of $SIZE bytes per run; sessions: $SESSIONS; modes: conn = a connection per message, reuse = smtp-source -d"
say "each run: fresh daemon and spool, sync, drop_caches, ${PAUSE}s pause; repeats: $REPEAT"
say ""
say "raw runs:"
for sess in $SESSIONS; do
	for mode in $MODES; do
		for rep in $(seq 1 "$REPEAT"); do
			measure relayd "$mode" "$sess" "$rep"
			measure postfix "$mode" "$sess" "$rep"
		done
	done
done

idle_greeted='' idle_rss='' idle_hwm=''
if [ "$IDLE" -gt 0 ]; then
	say ""
	say "idle connections: $IDLE, each reads its 220 and stays silent:"
	idle_test || say "accept.sh: idle test failed"
fi

say ""
"$PY" - "$results" "$MSGS" "$SIZE" "$REPEAT" "$IDLE" "${idle_greeted:-}" "${idle_rss:-}" "${idle_hwm:-}" <<'EOF'
import re, sys, statistics
path, msgs, size, repeat, idle, greeted, idle_rss, idle_hwm = sys.argv[1:9]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
runs = {}
hwm = {}
commits = {}
for server, mode, sess, rep, rate, elapsed, h, note in rows:
	m = re.search(r"spool: (\d+) records in (\d+) commits", note)
	if server == "relayd" and m:
		commits.setdefault((int(sess), mode), []).append((int(m.group(1)), int(m.group(2))))
	runs.setdefault((int(sess), mode, server), []).append(rate)
	if server == "relayd" and h not in ("-", ""):
		hwm.setdefault((int(sess), mode), []).append(int(h))

def med(v):
	ok = [float(x) for x in v if x != "FAIL"]
	if not ok or len(ok) != len(v):
		return None
	return statistics.median(ok)

def fmt(x):
	return "FAIL" if x is None else "{:,.0f}".format(x)

modes = {"conn": "conn/msg", "reuse": "reused"}
print("accepted messages per second: %s msgs of %s bytes, median of %s" % (msgs, size, repeat))
print("%8s  %-9s %13s %14s %9s" % ("sessions", "mode", "relayd msg/s", "postfix msg/s", "ratio"))
for sess, mode in sorted({(k[0], k[1]) for k in runs}, key=lambda k: (k[0], k[1])):
	r = med(runs.get((sess, mode, "relayd"), []))
	p = med(runs.get((sess, mode, "postfix"), []))
	ratio = "%.2f" % (r / p) if r and p else "-"
	print("%8d  %-9s %13s %14s %9s" % (sess, modes.get(mode, mode), fmt(r), fmt(p), ratio))
print()
print("relayd group commit (its log at stop: \"spool: N records in M commits\"), per run:")
for (sess, mode), v in sorted(commits.items()):
	print("%8d  %-9s %s" % (sess, modes.get(mode, mode), "; ".join(
	    "%d in %d (%.1f per commit)" % (n, c, n / c if c else 0) for n, c in v)))
print()
for mode in ("conn", "reuse"):
	r = med(runs.get((20, mode, "relayd"), []))
	if (20, mode, "relayd") in runs:
		print("target >= 5,000 msg/s at 20 sessions (%s): %s msg/s -> %s" %
		    (modes[mode], fmt(r), "met" if r and r >= 5000 else "NOT met"))
for mode in ("conn", "reuse"):
	v = hwm.get((100, mode))
	if v:
		print("target RSS < 20 MB at 100 sessions (%s): peak VmHWM %.1f MB (runs: %s kB) -> %s" %
		    (modes[mode], max(v) / 1024, ", ".join(map(str, v)), "met" if max(v) < 20 * 1024 else "NOT met"))
if int(idle) > 0:
	if idle_hwm:
		print("target RSS < 100 MB at %s idle connections: VmHWM %.1f MB, VmRSS with all open %.1f MB, greeted %s/%s -> %s" %
		    (idle, int(idle_hwm) / 1024, int(idle_rss or 0) / 1024, greeted or 0, idle,
		    "met" if int(idle_hwm) < 100 * 1024 and greeted == idle else "NOT met"))
	else:
		print("idle test: no figures (failed)")
EOF
say ""
say "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
