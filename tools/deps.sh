#!/bin/bash
# deps.sh — install everything relayd needs to build and test, on Debian 12.
#
# Promises: idempotent (a second run with everything present touches nothing
# and needs no network), quiet (apt's chatter goes to a log file; one summary
# line on success, the log's tail on failure), and it never leaves a Postfix
# daemon running: we want only Postfix's smtp-source/smtp-sink test tools.
#
# Usage: tools/deps.sh            (as root; a non-root run only checks)
# Environment: RELAYD_DEPS_FORCE=1  run apt-get even when all is installed
#              RELAYD_DEPS_LOG=FILE where to log (default /tmp/relayd-deps.log)
set -u

# One package a line; why each is here.
PACKAGES=(
	build-essential autoconf automake libtool pkg-config	# toolchain, autotools
	libevent-dev libconfuse-dev libopendkim-dev libssl-dev	# libraries relayd links
	libjansson-dev						# JSON: OAuth 2.0 token replies, service-account keys
	libcurl4-openssl-dev					# HTTPS to OAuth 2.0 token endpoints
	libldns-dev						# relayctl check-dns: DNS lookups
	check							# unit tests (Check)
	clang							# second compiler build (clang 14)
	libclang-rt-14-dev					# libFuzzer and the sanitizers' runtime for clang
								# (tests/fuzz; clang does not always bring it)
	openssl							# test keys and test CA made at test time
	python3 python3-aiosmtpd python3-dkim			# integration harness, peer SMTP, DKIM verify
	python3-cryptography					# t_oauth: the token endpoint checks JWT signatures (PS256, RS256)
	python3-dnslib python3-spf python3-dnspython		# t_checkdns: DNS server on loopback, SPF verdicts by pyspf
								# (aimed at it through dnspython: python3-spf may
								# otherwise bring python3-dns instead)
	swaks msmtp postfix					# real SMTP clients; postfix for smtp-source/sink
	groff-base						# groff, to lint the man pages
	procps iproute2 util-linux				# pgrep/ps, ss, setsid/flock in scripts
	strace							# t_relayctl: delays bind() to race the control socket
	systemd							# systemd-analyze verify/security, sysusers, tmpfiles (t_systemd)
)

LOG=${RELAYD_DEPS_LOG:-/tmp/relayd-deps.log}
start=$(date +%s)

pkgs=("${PACKAGES[@]}")	# bash drops the comments inside the list

missing_packages() {
	local p st
	for p in "${pkgs[@]}"; do
		st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)
		[ "${st:0:2}" = ii ] || echo "$p"
	done
}

fail() {
	echo "deps: FAILED: $*" >&2
	if [ -s "$LOG" ]; then
		echo "---- last lines of $LOG ----" >&2
		tail -n 40 "$LOG" >&2
	fi
	exit 1
}

missing=$(missing_packages)
if [ -z "$missing" ] && [ "${RELAYD_DEPS_FORCE:-0}" != 1 ]; then
	echo "deps: all ${#pkgs[@]} packages already installed"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages: ${missing//$'\n'/ }" >&2
	echo "deps: run as root (sudo $0) to install them" >&2
	exit 1
fi

: >"$LOG" || fail "cannot write $LOG"
export DEBIAN_FRONTEND=noninteractive

# Postfix asks how to configure itself; "No configuration" leaves it with no
# main.cf and nothing listening.
echo "postfix postfix/main_mailer_type select No configuration" |
	debconf-set-selections >>"$LOG" 2>&1 || fail "debconf-set-selections"

# Keep maintainer scripts from starting daemons while we install. A policy
# already in place (containers often have one) is left alone.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d &&
		chmod 755 /usr/sbin/policy-rc.d && own_policy=1
fi
cleanup() {
	[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
}
trap cleanup EXIT

echo "== apt-get update" >>"$LOG"
apt-get update >>"$LOG" 2>&1 || fail "apt-get update"
echo "== apt-get install ${pkgs[*]}" >>"$LOG"
apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$LOG" 2>&1 ||
	fail "apt-get install"

# Belt and braces: if we just installed Postfix and something started it
# anyway, stop it and keep it from starting at boot. A Postfix that was
# there before us is the admin's and is left as it is.
if echo "$missing" | grep -qx postfix; then
	if [ -d /run/systemd/system ]; then
		systemctl disable --now postfix >>"$LOG" 2>&1 || true
	fi
	if postfix status >>"$LOG" 2>&1; then
		postfix stop >>"$LOG" 2>&1 || fail "could not stop the postfix daemon"
	fi
fi

still=$(missing_packages)
[ -z "$still" ] || fail "still missing after install: ${still//$'\n'/ }"

n_new=$(echo "$missing" | grep -c . || true)
echo "deps: ${#pkgs[@]} packages present ($n_new newly installed) in $(( $(date +%s) - start ))s; log: $LOG"
