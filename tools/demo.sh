#!/bin/bash
# demo.sh — see relayd take, queue and relay a message, on a clean Debian 12.
#
# Installs what is missing (tools/deps.sh), builds out of tree in
# _build/demo, writes a throw-away configuration in a temporary directory
# (listen 127.0.0.1:2525, spool there, one upstream, sender domain
# example.com with a fresh DKIM key, a local capture server as upstream),
# starts `relayd -d` with its log shown live, sends one message with swaks,
# and points at the 250 reply, the log lines it caused (client=, from=,
# to=... status=sent) and the message as the capture server received it.
# Exit status 1 if any of these is missing. Then relayd keeps running until
# Ctrl-C; without a terminal on stdin (CI) it is stopped right after the
# result is shown.
# Everything it starts is stopped by PID; the temporary directory goes too.
#
# Usage: tools/demo.sh   (as root on a fresh Debian 12; later runs need no root)
# Environment: RELAYD_DEMO_PORT (2525), RELAYD_DEMO_UPSTREAM_PORT (2526)
set -u

top=$(cd "$(dirname "$0")/.." && pwd) || exit 1
PORT=${RELAYD_DEMO_PORT:-2525}
UPORT=${RELAYD_DEMO_UPSTREAM_PORT:-2526}
BUILD=$top/_build/demo
FROM=demo@example.com
TO=someone@example.net

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() { say "demo: $*" >&2; exit 1; }
listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# ---- build ---------------------------------------------------------------
step "dependencies"
"$top/tools/deps.sh" || exit 1

step "build (out of tree, in _build/demo)"
cd "$top" || exit 1
mkdir -p "$BUILD" || exit 1
autoreconf -fi >"$BUILD/autoreconf.out" 2>&1 ||
	{ cat "$BUILD/autoreconf.out"; die "autoreconf failed"; }
if [ ! -f "$BUILD/Makefile" ]; then
	(cd "$BUILD" && ../../configure --disable-werror) >"$BUILD/configure.out" 2>&1 ||
		{ tail -n 30 "$BUILD/configure.out"; die "configure failed (log: $BUILD/configure.out)"; }
fi
(cd "$BUILD" && make -j"$(nproc)") >"$BUILD/build.out" 2>&1 ||
	{ tail -n 30 "$BUILD/build.out"; die "build failed (log: $BUILD/build.out)"; }
RELAYD=$BUILD/relayd
say "built $RELAYD ($("$RELAYD" -V 2>&1 | head -n 1))"

# ---- a throw-away configuration ----------------------------------------------
listening "$PORT" && die "something already listens on port $PORT (set RELAYD_DEMO_PORT)"
listening "$UPORT" && die "something already listens on port $UPORT (set RELAYD_DEMO_UPSTREAM_PORT)"

tmp=$(mktemp -d /tmp/relayd-demo.XXXXXX) || exit 1
chmod 700 "$tmp"
relayd_pid='' capture_pid='' tail_pid=''

stop_all() {
	local pid n
	for pid in $relayd_pid $capture_pid; do
		kill -TERM "$pid" 2>/dev/null || continue
		n=0
		while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
		kill -KILL "$pid" 2>/dev/null
	done
	# tail follows relayd's PID and ends with it; this is for the odd case.
	[ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
	relayd_pid='' capture_pid='' tail_pid=''
}
cleanup() {
	stop_all
	rm -rf "$tmp"
}
trap cleanup EXIT

step "configuration ($tmp/relayd.conf)"
mkdir -m 700 "$tmp/spool"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/example.com.demo.key" 2>/dev/null &&
	chmod 600 "$tmp/example.com.demo.key"

write_config() {	# $1 = with-dkim|without-dkim
	{
		cat <<-EOF
		# relayd demo configuration, made by tools/demo.sh
		hostname = "relay.demo.test"
		listen   = { "127.0.0.1:$PORT" }
		spool    = "$tmp/spool"
		control  = "$tmp/control.sock"
		allow    = { "127.0.0.0/8" }

		# A local capture server stands in for a real provider.
		upstream "capture" {
		  host = "127.0.0.1"
		  port = $UPORT
		  tls  = "none"
		  auth = "none"
		}

		domain "example.com" {
		  upstream = "capture"
		EOF
		if [ "$1" = with-dkim ]; then
			cat <<-EOF
			  dkim {
			    selector  = "demo"
			    key_file  = "$tmp/example.com.demo.key"
			    algorithm = "rsa-sha256"
			  }
			EOF
		fi
		say "}"
	} >"$tmp/relayd.conf"
}
write_config with-dkim
if ! "$RELAYD" -n -f "$tmp/relayd.conf" >"$tmp/check.out" 2>&1; then
	# A relayd without DKIM signing yet rejects the dkim block; show the rest.
	write_config without-dkim
	"$RELAYD" -n -f "$tmp/relayd.conf" >"$tmp/check.out" 2>&1 ||
		{ cat "$tmp/check.out"; die "relayd -n rejects the demo configuration"; }
	say "(this relayd rejected the dkim block, so the demo runs without signing:)"
	sed 's/^/    /' "$tmp/check.out"
fi
sed 's/^/    /' "$tmp/relayd.conf"

# ---- the capture upstream --------------------------------------------------
# It stands in for the provider: it accepts everything and prints what it
# receives to $tmp/capture.log.
PYTHONUNBUFFERED=1 /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$UPORT" \
	-c aiosmtpd.handlers.Debugging >"$tmp/capture.log" 2>&1 &
capture_pid=$!

# ---- relayd ----------------------------------------------------------------
step "relayd -d -f $tmp/relayd.conf   (its log, live, prefixed 'relayd|')"
"$RELAYD" -d -f "$tmp/relayd.conf" </dev/null 2>"$tmp/relayd.log" &
relayd_pid=$!
tail -n +1 -F --pid="$relayd_pid" "$tmp/relayd.log" 2>/dev/null | sed -u 's/^/  relayd| /' &
tail_pid=$!

n=0
until listening "$PORT"; do
	if ! kill -0 "$relayd_pid" 2>/dev/null; then
		wait "$relayd_pid"; rc=$?
		relayd_pid=
		sleep 0.3
		die "relayd exited (status $rc) before it listened on 127.0.0.1:$PORT"
	fi
	[ $n -ge 100 ] && die "relayd does not listen on 127.0.0.1:$PORT after 10 s"
	sleep 0.1; n=$((n + 1))
done
n=0
until listening "$UPORT" || [ $n -ge 50 ]; do sleep 0.1; n=$((n + 1)); done

# ---- one message -------------------------------------------------------------
step "swaks --server 127.0.0.1:$PORT --from $FROM --to $TO"
swaks --server "127.0.0.1:$PORT" --from "$FROM" --to "$TO" \
	--header "Subject: relayd demo" \
	--body "Hello from tools/demo.sh: this message went through relayd." \
	>"$tmp/swaks.out" 2>&1
swaks_rc=$?
sed 's/^/    /' "$tmp/swaks.out"
sleep 0.3	# let the log lines reach the terminal before the summary

step "result"
reply=$(grep -E '^ *<- +250 [0-9.]+ .*queued as [0-9A-Za-z]+' "$tmp/swaks.out" | tail -n 1)
if [ $swaks_rc -ne 0 ] || [ -z "$reply" ]; then
	say "no '250 ... queued as ID' reply (swaks exit $swaks_rc); relayd's log:"
	sed 's/^/    /' "$tmp/relayd.log"
	exit 1
fi
id=${reply##*queued as }
id=${id%%[!0-9A-Za-z]*}
reply=${reply#*<-}
say "reply to the end of DATA:  ${reply#"${reply%%[! ]*}"}"
say "queue id:                  $id"
# relayd relays to the capture upstream at once: wait (bounded) for the
# "to=<...>, relay=capture[127.0.0.1]:$UPORT, ..., status=sent" line.
n=0
until grep -qE "$id: to=<$TO>.*status=" "$tmp/relayd.log" || [ $n -ge 100 ]; do
	sleep 0.1; n=$((n + 1))
done
say "log lines for $id:"
grep -E "(^|[^0-9A-Za-z])$id: " "$tmp/relayd.log" | sed 's/^/    /'
ok=1
grep -qE "$id: client=" "$tmp/relayd.log" || { say "MISSING: $id: client=..."; ok=0; }
grep -qE "$id: from=<$FROM>" "$tmp/relayd.log" || { say "MISSING: $id: from=<$FROM>, ..."; ok=0; }
if grep -qE "$id: to=<$TO>.*status=sent" "$tmp/relayd.log"; then
	say "what the capture upstream (127.0.0.1:$UPORT) received:"
	sed 's/^/    /' "$tmp/capture.log"
else
	say "MISSING: $id: to=<$TO>, ..., status=sent within 10 s; the capture upstream's log:"
	sed 's/^/    /' "$tmp/capture.log"
	ok=0
fi
[ $ok = 1 ] || exit 1

# ---- keep running, or stop ------------------------------------------------
if [ -t 0 ]; then
	step "relayd is running on 127.0.0.1:$PORT (pid $relayd_pid); Ctrl-C stops it"
	say "try: swaks --server 127.0.0.1:$PORT --from you@example.com --to friend@example.net"
	# First Ctrl-C: graceful stop (SIGTERM); a second one: SIGKILL.
	sig=TERM
	trap 'say ""; say "stopping relayd (SIG$sig)"; kill -$sig "$relayd_pid" 2>/dev/null; sig=KILL' INT TERM
	while :; do
		wait "$relayd_pid"; rc=$?	# returns early when a trapped signal comes
		kill -0 "$relayd_pid" 2>/dev/null || break
	done
	relayd_pid=
	sleep 0.3	# relayd's last log lines, through tail, before ours
	say "relayd stopped (exit status $rc)"
	exit 0
fi
step "no terminal on stdin: stopping relayd (pid $relayd_pid) with SIGTERM"
kill -TERM "$relayd_pid"
n=0
while kill -0 "$relayd_pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
if kill -0 "$relayd_pid" 2>/dev/null; then
	say "relayd did not stop within 10 s of SIGTERM"
	exit 1
fi
wait "$relayd_pid"; rc=$?
relayd_pid=
sleep 0.2
say "relayd stopped (exit status $rc)"
# A clean stop on SIGTERM is exit status 0 (relayd(8)); anything else is a bug.
[ $rc -eq 0 ]
