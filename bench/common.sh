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
