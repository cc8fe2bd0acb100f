# common.sh — helpers shared by the bench/ scripts; sourced, never run.
#
# What the scripts share: messages, port and process checks, stopping a
# process by its PID with a bound, the quiet start of every measurement
# (sync, drop_caches, pause), and starting and stopping relayd and a private
# Postfix instance in the script's temporary directory.
#
# The caller sets, before using the daemon helpers:
#   prog    its name, for messages
#   work    its temporary directory
#   PAUSE   seconds of pause in quiesce
#   RELAYD rconf RPORT      relayd's binary, configuration file and port
#   pfx PPORT               Postfix's directory (etc/ holds main.cf and
#                           master.cf) and its smtpd's port
# The helpers set relayd_pid, master_pid and relayd_status. Nothing here
# stops anything on its own: the caller's EXIT trap does, by PID.

say() { printf '%s\n' "$*"; }
die() { say "$prog: $*" >&2; exit 1; }
listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
now() { printf '%s' "$EPOCHREALTIME"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
proc_kb() {	# $1 = pid, $2 = VmHWM|VmRSS
	awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null
}
secs_between() {	# $1, $2 = epoch times: $2 - $1, in seconds, 3 decimals
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

stop_pid() {	# $1 = pid: TERM, wait up to 30 s, then KILL
	local pid=$1 n=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
	if kill -0 "$pid" 2>/dev/null; then
		say "$prog: warning: pid $pid did not stop within 30 s; killed"
		kill -KILL "$pid" 2>/dev/null
	fi
	return 0
}

wait_listening() {	# $1 = port, $2 = pid that must stay alive; up to 20 s
	local n=0
	while ! listening "$1"; do
		kill -0 "$2" 2>/dev/null || return 1
		[ $n -ge 200 ] && return 1
		sleep 0.1; n=$((n + 1))
	done
}

# make_workdir NAME: checks that $BASEDIR is where a spool would live (the
# filesystem of /var; a warning otherwise) and sets work to a fresh
# temporary directory below it, mode 755 (Postfix's and OpenDKIM's
# unprivileged processes must reach their files).
make_workdir() {
	[ "$(stat -c %d "$BASEDIR")" = "$(stat -c %d /var)" ] ||
		say "$prog: warning: $BASEDIR is not on the filesystem of /var; the figures are not comparable"
	work=$(mktemp -d "$BASEDIR/$1.XXXXXX") && chmod 755 "$work"
}

# Before every measurement. This ext4 (no journal) keeps deleted inodes out
# of reuse for about a minute: without the pause a run would pay for the
# deletions of the one before.
quiesce() {	# $1 = pause in seconds (default $PAUSE)
	local p=${1:-$PAUSE}
	sync
	echo 3 >/proc/sys/vm/drop_caches
	[ "$p" -gt 0 ] && sleep "$p"
	return 0
}

# ---- relayd -------------------------------------------------------------------
# write_relayd_sink_conf FILE: relayd on 127.0.0.1:$RPORT relaying to the
# sink (upstream "sink", 127.0.0.1:$SPORT, no TLS, no auth, $UCONN
# connections) for domain "example.com", whose further lines come on stdin.
write_relayd_sink_conf() {
	{
		cat <<EOF
# written by bench/$prog
hostname = "bench.example.com"
listen = { "127.0.0.1:$RPORT" }
spool = "$work/relayd-spool"
control = "$work/relayd-control.sock"
max_clients = 1000
upstream "sink" {
	host = "127.0.0.1"
	port = $SPORT
	tls = "none"
	auth = "none"
	max_connections = $UCONN
}
domain "example.com" {
	upstream = "sink"
EOF
		cat
		printf '}\n'
	} >"$1"
}
start_relayd() {
	rm -rf "$work/relayd-spool" && mkdir -m 700 "$work/relayd-spool" || return 1
	"$RELAYD" -d -f "$rconf" </dev/null >"$work/relayd.log" 2>&1 &
	relayd_pid=$!
	wait_listening "$RPORT" "$relayd_pid" || {
		say "$prog: relayd did not start; its log:"; tail -n 20 "$work/relayd.log"; return 1; }
}
stop_relayd() {	# sets relayd_status
	local pid=$relayd_pid
	relayd_pid='' relayd_status=-
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	timeout 35 tail --pid="$pid" -f /dev/null 2>/dev/null
	kill -0 "$pid" 2>/dev/null && { say "$prog: relayd $pid did not stop; killed"; kill -KILL "$pid"; }
	wait "$pid" 2>/dev/null
	relayd_status=$?
}
# Log lines other than the ones every accepted message and session writes;
# $1, if given, is an extended regular expression for more lines to leave out.
relayd_odd_lines() {
	local more=${1:-}
	grep -Ev ': (connect from|disconnect from) |: [0-9A-Za-z]+: (client|from)=|relayd [^ ]+ starting|queue: [0-9]+ messages loaded|listening on |stopping on SIGTERM|stopped, [0-9]+ messages in the queue' \
	    "$work/relayd.log" | { if [ -n "$more" ]; then grep -Ev -- "$more"; else cat; fi; }
}

# ---- Postfix ------------------------------------------------------------------
# A private instance: its own configuration, queue and data directories in
# $pfx, no chroot, log to a file through postlogd. The caller writes
# $pfx/etc/main.cf; master.cf is the same for every script: smtpd on
# 127.0.0.1:$PPORT and the usual internal services.
write_postfix_master_cf() {
	mkdir -p "$pfx/etc" || return 1
	cat >"$pfx/etc/master.cf" <<EOF
# written by bench/$prog
127.0.0.1:$PPORT inet n - n - - smtpd
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
verify     unix  -  -  n  -     1  verify
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
proxywrite unix  -  -  n  -     1  proxymap
smtp       unix  -  -  n  -     -  smtp
relay      unix  -  -  n  -     -  smtp
showq      unix  n  -  n  -     -  showq
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n - n - 1 postlogd
EOF
}
# write_postfix_main_cf RELAYHOST_PORT: main.cf with what every script's
# instance shares (its own paths, loopback only, no local delivery, no DNS:
# relayhost = [127.0.0.1]:RELAYHOST_PORT; room for 100 sessions from one
# client: default_process_limit = 200 and no per-client connection limit),
# then the caller's own lines from stdin, then $PFX_EXTRA (BENCH_POSTFIX_MAIN,
# to try other settings) if set.
write_postfix_main_cf() {
	mkdir -p "$pfx/etc" || return 1
	{
		cat <<EOF
# written by bench/$prog
compatibility_level = 3.6
myhostname = bench.example.com
mydomain = example.com
myorigin = \$myhostname
mydestination =
relay_domains =
relayhost = [127.0.0.1]:$1
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
queue_directory = $pfx/queue
data_directory = $pfx/data
maillog_file = $pfx/maillog
alias_maps =
alias_database =
biff = no
default_process_limit = 200
smtpd_client_connection_count_limit = 0
EOF
		cat
		if [ -n "${PFX_EXTRA:-}" ]; then printf '%s\n' "$PFX_EXTRA"; fi
	} >"$pfx/etc/main.cf"
}
start_postfix() {
	rm -rf "$pfx/queue" "$pfx/data" "$pfx/maillog" || return 1
	mkdir -m 755 "$pfx/queue" && mkdir -m 700 "$pfx/data" && chown postfix "$pfx/data" || return 1
	# `postfix start` creates the queue's subdirectories, then starts master.
	timeout 60 postfix -c "$pfx/etc" start >"$pfx/start.out" 2>&1 || {
		say "$prog: postfix start failed:"; cat "$pfx/start.out"; tail -n 5 "$pfx/maillog" 2>/dev/null
		master_pid=$(cat "$pfx/queue/pid/master.pid" 2>/dev/null | tr -d ' ')
		return 1; }
	master_pid=$(tr -d ' ' <"$pfx/queue/pid/master.pid")
	[ -n "$master_pid" ] || return 1
	wait_listening "$PPORT" "$master_pid" || { say "$prog: Postfix does not listen on $PPORT"; return 1; }
}
postfix_leftovers() {	# PIDs of processes still working in our temporary directory
	local p c
	for p in /proc/[0-9]*; do
		c=$(readlink "$p/cwd" 2>/dev/null) || continue
		case "$c" in "$work"/*) say "${p#/proc/}" ;; esac
	done
}
stop_postfix() {
	local pid
	[ -n "$master_pid" ] || return 0
	stop_pid "$master_pid"	# the master stops its children itself
	master_pid=''
	sleep 0.2
	for pid in $(postfix_leftovers); do stop_pid "$pid"; done
}
queue_count() {	# files in one Postfix queue
	find "$pfx/queue/$1" -type f 2>/dev/null | wc -l
}
postfix_queued() {	# messages in any of Postfix's queues
	echo $(($(queue_count maildrop) + $(queue_count incoming) + $(queue_count active) +
	    $(queue_count deferred) + $(queue_count hold)))
}
# After an end-to-end run (the caller sets MSGS): every message logged sent.
relayd_all_sent() { [ "$(grep -c 'status=sent' "$work/relayd.log")" -ge "$MSGS" ]; }
postfix_all_sent() {
	[ "$(postfix_queued)" = 0 ] && [ "$(grep -c 'status=sent' "$pfx/maillog" 2>/dev/null)" -ge "$MSGS" ]
}

# ---- the sink and the clock ----------------------------------------------------
# Used by relay.sh and dkim.sh; the caller sets SPORT, PY, top, MSGS, SIZE, SENDER, RCPT,
# RUN_TIMEOUT, DRAIN, and optionally the array SOURCE_ARGS (more smtp-source
# options). The helpers set sink_pid and wait_pid; the caller's EXIT trap
# stops them by PID.
#
# smtp-sink accepts everything and throws it away (or, given -d TEMPLATE,
# writes each message to a file); -c writes its counters to stdout after
# every message and session, which sink_wait.py and sink_count read. A fresh
# one per run, so that its count is the run's.
start_sink() {	# $@ = more smtp-sink options (e.g. -d TEMPLATE)
	rm -f "$work/sink.out"
	smtp-sink -c -u nobody "$@" "127.0.0.1:$SPORT" 1000 </dev/null >"$work/sink.out" 2>"$work/sink.err" &
	sink_pid=$!
	wait_listening "$SPORT" "$sink_pid" || {
		say "$prog: smtp-sink did not start:"; cat "$work/sink.err"; return 1; }
}
sink_count() {	# $1 = sess|mesg: sessions or messages, from the last complete counter record
	tr '\r' '\n' <"$work/sink.out" 2>/dev/null | grep -E '^sess=[0-9]+ quit=[0-9]+ mesg=[0-9]+$' |
	    tail -n 1 | sed -n "s/.*$1=\([0-9]*\).*/\1/p"
}
stop_sink() {
	stop_pid "$sink_pid"
	wait "$sink_pid" 2>/dev/null
	sink_pid=''
}

# until_true SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds
until_true() {
	local n=0 lim=$(($1 * 10))
	shift
	until "$@"; do
		[ $n -ge $lim ] && return 1
		sleep 0.1; n=$((n + 1))
	done
}

# send MODE SESSIONS PORT [COUNT]: smtp-source sends COUNT (default $MSGS)
# messages, a connection per message (MODE conn) or reused (reuse, -d), and
# is timed to the sink's last message; sets e2e (seconds, or empty), submit
# (smtp-source's own seconds), src_status and wait_note
send() {
	local d='' t0 t1 reached n=0 count=${4:-$MSGS}
	[ "$1" = reuse ] && d=-d
	e2e='' submit='' wait_note=''
	: >"$work/wait.out"	# before the child's own redirection: the loop below reads it
	"$PY" "$top/bench/sink_wait.py" --file "$work/sink.out" --count "$count" \
	    --timeout $((RUN_TIMEOUT + DRAIN)) >"$work/wait.out" 2>&1 &
	wait_pid=$!
	until grep -q '^ready' "$work/wait.out"; do
		[ $n -ge 200 ] && { wait_note="sink_wait.py not ready; "; break; }
		sleep 0.05; n=$((n + 1))
	done
	t0=$(now)
	timeout "$RUN_TIMEOUT" smtp-source $d -s "$2" -m "$count" -l "$SIZE" \
	    -f "$SENDER" -t "$RCPT" ${SOURCE_ARGS[@]+"${SOURCE_ARGS[@]}"} "127.0.0.1:$3" \
	    >"$work/source.out" 2>&1
	src_status=$?
	t1=$(now)
	submit=$(secs_between "$t0" "$t1")
	timeout "$DRAIN" tail --pid="$wait_pid" -s 0.05 -f /dev/null 2>/dev/null
	kill -0 "$wait_pid" 2>/dev/null && wait_note="${wait_note}sink still short after ${DRAIN}s; "
	stop_pid "$wait_pid"
	wait "$wait_pid" 2>/dev/null
	wait_pid=''
	reached=$(sed -n 's/^reached=\([0-9.]*\) .*/\1/p' "$work/wait.out")
	[ -n "$reached" ] && e2e=$(secs_between "$t0" "$reached")
	return 0
}

# ---- CPU ----------------------------------------------------------------------
# relayd's CPU seconds (user + system) so far, per thread: "TOTAL LOOP T1/T2/..."
# where LOOP is the main thread (the event loop) and T1... the other threads
# in the order they started (relayd starts the spool's committer first, then
# the signing workers). From /proc/PID/task/*/stat: cheap, read once a run.
relayd_thread_cpu() {	# $1 = pid
	local t
	for t in /proc/"$1"/task/[0-9]*; do
		awk -v tid="${t##*/}" -v hz="$(getconf CLK_TCK)" \
		    '{ sub(/^.*\) /, ""); printf "%s %.2f\n", tid, ($12 + $13) / hz }' "$t/stat" 2>/dev/null
	done | sort -n | awk -v pid="$1" '
		$1 == pid { loop = $2 }
		$1 != pid { rest = rest (rest == "" ? "" : "/") $2 }
		{ total += $2 }
		END { if (NR) printf "%.2f %.2f %s\n", total, loop, (rest == "" ? "-" : rest) }'
}
# The machine's CPU counters: "BUSY TOTAL" in ticks, all CPUs; two snapshots
# give how busy the machine was in between (busy_pct).
cpu_snap() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
busy_pct() {	# $1, $2 = cpu_snap before, after: percent of all CPUs busy
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
		t = y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }'
}
