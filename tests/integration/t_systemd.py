"""relayd under systemd, as far as it can be checked without systemd running
as PID 1: the unit make generates passes `systemd-analyze verify` and keeps
its exposure score at most 2.0 with only the settings relayd cannot have
left open; its sysusers.d and tmpfiles.d files make the user and the
directories the unit relies on; and relayd keeps the Type=notify protocol
the unit relies on (READY=1 once it listens, RELOADING=1 and READY=1 around
SIGHUP, STOPPING=1, exit 0), started unprivileged as the unit starts it.

systemd-analyze comes with the Debian package systemd (tools/deps.sh)."""

import json
import os
import re
import shutil
import socket
import stat
import time

from harness import SANITIZER_RE, SMTP

# Settings systemd-analyze security may find open, and why they must be:
ALLOWED_OPEN = {
	"PrivateNetwork=",			# relays to the internet
	"IPAddressDeny=",			# ... to upstreams anywhere
	"RestrictAddressFamilies=~AF_(INET|INET6)",	# SMTP and DNS
	"RestrictAddressFamilies=~AF_UNIX",	# syslog, sd_notify, control socket
	"RootDirectory=/RootImage=",		# a chroot would need the CA store, resolv.conf...
	"DeviceAllow=",				# char-rtc:r, implied by ProtectClock=
}
MAX_EXPOSURE = 2.0


def builddir(t):
	return os.path.dirname(t.relayd)


def generated(t, rel):
	p = os.path.join(builddir(t), rel)
	assert os.path.isfile(p), "%s missing: make builds it (in %s)" % (rel, builddir(t))
	with open(p) as f:
		return p, f.read()


def settings(text, key):
	return [m.group(1).strip() for m in re.finditer(r"^%s=(.*)$" % re.escape(key), text, re.M)]


def analyze(t):
	sa = shutil.which("systemd-analyze")
	if sa is None:
		print("systemd-analyze not installed (Debian package systemd); skipped")
	return sa


def unit_copy(t):
	"""A copy of the unit whose ExecStart is this build's relayd (verify
	wants the program to exist; the unit names the installed one)."""
	path, text = generated(t, "systemd/relayd.service")
	exe = settings(text, "ExecStart")
	assert len(exe) == 1, "ExecStart lines: %s" % exe
	assert exe[0].split()[0].endswith("/sbin/relayd") and exe[0].startswith("/"), \
	    "ExecStart=%s: not an absolute sbindir path" % exe[0]
	assert not re.search(r"@[a-z]+@", text), "unsubstituted @...@ in the unit"
	copy = os.path.join(t.dir, "relayd.service")
	with open(copy, "w") as f:
		f.write(text.replace("ExecStart=" + exe[0].split()[0], "ExecStart=" + t.relayd))
	return copy, text


def test_unit_verify(t):
	sa = analyze(t)
	if sa is None:
		return
	copy, text = unit_copy(t)
	rc, out, err = t.run([sa, "verify", "--man=no", copy], timeout=60)
	assert rc == 0 and out + err == "", \
	    "systemd-analyze verify: exit %d, output:\n%s" % (rc, out + err)
	# what the unit promises relayd
	for key, want in (("Type", "notify"), ("User", "relayd"), ("Restart", "on-failure"),
	    ("ExecReload", "kill -HUP $MAINPID"), ("CapabilityBoundingSet", ""),
	    ("ProtectSystem", "strict"), ("RuntimeDirectory", "relayd")):
		assert settings(text, key) == [want], "%s=%s, expected %r" % (key, settings(text, key), want)


def test_unit_security(t):
	sa = analyze(t)
	if sa is None:
		return
	copy, _ = unit_copy(t)
	rc, out, err = t.run([sa, "security", "--offline=true", "--no-pager", copy], timeout=60)
	assert rc == 0, "systemd-analyze security: exit %d: %s" % (rc, out + err)
	m = re.search(r"Overall exposure level for relayd\.service: (\d+\.\d+)", out)
	assert m, "no overall exposure level in:\n%s" % out
	score = float(m.group(1))
	# the settings left open, from the JSON (the table's marks depend on the locale)
	rc, out, err = t.run([sa, "security", "--offline=true", "--json=short", copy], timeout=60)
	assert rc == 0, "systemd-analyze security --json=short: exit %d: %s" % (rc, out + err)
	entries = json.loads(out)
	open_ = [e["name"] for e in entries if e.get("exposure") and float(e["exposure"]) > 0]
	assert len(entries) > 50 and open_, "unexpected JSON (format changed?): %s" % out[:2000]
	unexpected = sorted(set(open_) - ALLOWED_OPEN)
	assert not unexpected, "settings newly open: %s (exposure %.1f)" % (unexpected, score)
	assert score <= MAX_EXPOSURE, "exposure %.1f > %.1f" % (score, MAX_EXPOSURE)
	print("exposure %.1f; open: %s" % (score, ", ".join(open_)))


def test_sysusers_tmpfiles(t):
	"""systemd-sysusers and systemd-tmpfiles, in a scratch root, make the
	user relayd, the spool (0700) the unit makes writable, /run/relayd
	(0750) and /var/lib/relayd (0700, for OAuth refresh tokens), all owned
	by relayd."""
	if shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None:
		print("systemd-sysusers/systemd-tmpfiles not installed; skipped")
		return
	if os.geteuid() != 0:
		print("not root (tmpfiles must chown); skipped")
		return
	sysusers, _ = generated(t, "systemd/sysusers.d/relayd.conf")
	tmpfiles, ttext = generated(t, "systemd/tmpfiles.d/relayd.conf")
	_, unit = generated(t, "systemd/relayd.service")
	root = os.path.join(t.dir, "root")
	os.makedirs(os.path.join(root, "etc"))
	rc, out, err = t.run(["systemd-sysusers", "--root=" + root, sysusers])
	assert rc == 0, "systemd-sysusers: exit %d: %s" % (rc, out + err)
	with open(os.path.join(root, "etc/passwd")) as f:
		pw = [l.split(":") for l in f.read().splitlines() if l.startswith("relayd:")]
	assert len(pw) == 1, "no user relayd made: %s" % out + err
	uid, gid, shell = int(pw[0][2]), int(pw[0][3]), pw[0][6]
	assert 0 < uid < 1000 and shell.endswith("nologin"), "relayd: %s" % pw[0]
	rc, out, err = t.run(["systemd-tmpfiles", "--create", "--root=" + root, tmpfiles])
	assert rc == 0, "systemd-tmpfiles: exit %d: %s" % (rc, out + err)
	dirs = re.findall(r"^d (\S+) (\d+) relayd relayd", ttext, re.M)
	assert len(dirs) == 3, "tmpfiles lines: %s" % dirs
	# the unit may write exactly the spool, the control socket's directory
	# and the refresh tokens' (those two need not exist)
	rw = settings(unit, "ReadWritePaths")
	spool = [d for d, _ in dirs if d.endswith("/spool/relayd")]
	run = [d for d, _ in dirs if not d.endswith("/spool/relayd")]
	assert rw == spool + ["-" + d for d in run], \
	    "tmpfiles makes %s, the unit may write %s" % (dirs, rw)
	for d, mode in dirs:
		st = os.stat(root + d)
		assert stat.S_ISDIR(st.st_mode), "%s is not a directory" % d
		assert (st.st_uid, st.st_gid) == (uid, gid), "%s owned by %d:%d, not relayd" % (
		    d, st.st_uid, st.st_gid)
		assert stat.S_IMODE(st.st_mode) == int(mode, 8), "%s mode %o, expected %s" % (
		    d, stat.S_IMODE(st.st_mode), mode)
	assert {m for d, m in dirs} == {"0700", "0750"}, dirs


def recv_until(sock, want, deadline):
	"""Datagrams received until one equals want (each split in lines);
	returns the lines seen."""
	seen = []
	while time.monotonic() < deadline:
		sock.settimeout(max(0.01, deadline - time.monotonic()))
		try:
			data = sock.recv(4096)
		except socket.timeout:
			break
		lines = data.decode("utf-8", "replace").splitlines()
		seen += lines
		if want in lines:
			return seen
	raise AssertionError("no %s from relayd within the time limit; got %s" % (want, seen))


def test_notify_protocol(t):
	"""As systemd runs it: no -d, NOTIFY_SOCKET set, unprivileged (when the
	test is root: as nobody, with `user` set as in the shipped config and a
	spool the user owns, as tmpfiles makes it)."""
	import pwd
	env = t.env()
	kw = {}
	settings_ = {}
	spool = os.path.join(t.dir, "spool")
	os.mkdir(spool, 0o700)
	if os.geteuid() == 0:
		pw = pwd.getpwnam("nobody")
		os.chmod(t.dir, 0o755)
		os.chown(spool, pw.pw_uid, pw.pw_gid)
		os.chown(t.dir, pw.pw_uid, pw.pw_gid)	# the control socket goes here

		def as_nobody():
			os.setgroups([])
			os.setgid(pw.pw_gid)
			os.setuid(pw.pw_uid)
		kw["preexec_fn"] = as_nobody
		settings_["user"] = "nobody"
	conf = t.config(spool=spool, **settings_)
	ns_path = os.path.join(t.dir, "notify.sock")
	ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	t.conns.append(ns)
	ns.bind(ns_path)
	os.chmod(ns_path, 0o666)
	env["NOTIFY_SOCKET"] = ns_path
	errpath = os.path.join(t.dir, "stderr.log")
	# as nobody: a copy it can reach wherever the build tree is
	relayd = t.reachable_copy(t.relayd) if os.geteuid() == 0 else t.relayd
	with open(errpath, "wb") as errf:
		p = t.spawn([relayd, "-f", conf.path], env=env, stdout=errf, stderr=errf, **kw)

	def stderr():
		with open(errpath, errors="replace") as f:
			return f.read()
	recv_until(ns, "READY=1", time.monotonic() + 20)
	assert p.poll() is None, "relayd exited (%s) or forked: it must stay in the foreground " \
	    "under systemd; stderr: %s" % (p.returncode, stderr())
	c = SMTP("127.0.0.1", conf.port)	# listening once READY=1 is sent
	t.conns.append(c)
	c.greeting()
	c.expect("QUIT", 221)
	c.close()
	if os.geteuid() == 0:
		with open("/proc/%d/status" % p.pid) as f:
			uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
		assert int(uid) == pw.pw_uid, "relayd runs as uid %s" % uid
	p.send_signal(1)	# SIGHUP, as ExecReload sends it
	seen = recv_until(ns, "READY=1", time.monotonic() + 20)
	assert "RELOADING=1" in seen and seen.index("RELOADING=1") < len(seen) - 1, \
	    "around a reload: %s, expected RELOADING=1 then READY=1" % seen
	p.send_signal(15)
	recv_until(ns, "STOPPING=1", time.monotonic() + 20)
	rc = p.wait(timeout=40)
	err = stderr()
	assert rc == 0, "relayd exit %d after SIGTERM; stderr: %s" % (rc, err)
	assert not SANITIZER_RE.search(err), err[:2000]


test_notify_protocol.timeout = 90
