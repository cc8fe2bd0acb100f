"""
harness — runs relayd's integration tests and gives them their tools.

What it is for: every test_* function in tests/integration/t_*.py runs the
real daemon from the build tree against real peers (raw sockets, Python's
smtplib, swaks) and asserts what it observed.

What it promises:
 - Each test runs in its own child process with a fresh temporary directory
   (config, spool, control socket, logs) and a time limit.  Every process a
   test starts is recorded by PID (with its start time, so a reused PID is
   never hit) and stopped by PID, SIGTERM then SIGKILL after a bounded wait,
   even when the test fails, hangs or the child itself is killed.  Every
   tmpfs a test mounts is unmounted.
 - Only loopback addresses are used.
 - Output: one line per test, "PASS name (1.2s)" or "FAIL name: reason",
   then exactly "N passed, N failed"; exit status 0 iff nothing failed.
 - A daemon that dies on its own during a test, or whose log shows a
   sanitizer report, fails that test even if its assertions held.

Usage: harness.py [-v] [-j N] [FILTER]   (FILTER: substring of "t_file.test_name";
       N tests at a time, default $RELAYD_TEST_JOBS or 1; a test whose
       function has .serial = True runs alone, after the others)
The daemon is $RELAYD_BUILDDIR/relayd, or the first executable "relayd"
found walking up from the current directory.  RELAYD_TEST_TIMEOUT=S gives
every test at least S seconds (for long runs, e.g. the crash soak).
"""

import concurrent.futures
import glob
import importlib.util
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TIMEOUT = 60		# seconds per test, unless the test says otherwise
STOP_WAIT = 10			# seconds between SIGTERM and SIGKILL
HOSTNAME = "relay.test.example"
PRINT_LOCK = threading.Lock()

QID_RE = r"[0-9A-Za-z]{11}"
QUEUED_RE = re.compile(r"^2\.0\.0 Ok: queued as (" + QID_RE + r")$")


class TestTimeout(BaseException):
	"""Raised in the child when the runner asks it to stop (SIGTERM)."""


# ---------------------------------------------------------------------------
# process bookkeeping shared by the runner and the child

def proc_starttime(pid):
	"""Start time of pid (field 22 of /proc/PID/stat), or None if gone."""
	try:
		with open("/proc/%d/stat" % pid) as f:
			stat = f.read()
	except OSError:
		return None
	# the command name may contain spaces: split after its closing ')'
	rest = stat[stat.rindex(")") + 2:].split()
	if rest[0] == "Z":
		return None
	return rest[19]


def record_pid(tdir, pid):
	st = proc_starttime(pid)
	with open(os.path.join(tdir, ".pids"), "a") as f:
		f.write("%d %s\n" % (pid, st))


def descendants(pid):
	"""PIDs (with start times) of every live descendant of pid."""
	children = {}
	for name in os.listdir("/proc"):
		if not name.isdigit():
			continue
		try:
			with open("/proc/%s/stat" % name) as f:
				stat = f.read()
		except OSError:
			continue
		ppid = int(stat[stat.rindex(")") + 2:].split()[1])
		children.setdefault(ppid, []).append(int(name))
	out = []
	todo = [pid]
	while todo:
		for c in children.get(todo.pop(), []):
			st = proc_starttime(c)
			if st is not None:
				out.append((c, st))
				todo.append(c)
	return out


def stop_pid(pid, starttime, wait=STOP_WAIT):
	"""SIGTERM, then SIGKILL after wait seconds; only if pid is still the
	process we started (same start time).  Returns True if it had to be
	signalled."""
	if starttime is None or proc_starttime(pid) != starttime:
		return False
	try:
		os.kill(pid, signal.SIGTERM)
	except ProcessLookupError:
		return False
	deadline = time.monotonic() + wait
	while time.monotonic() < deadline:
		if proc_starttime(pid) != starttime:
			return True
		time.sleep(0.05)
	if proc_starttime(pid) == starttime:
		try:
			os.kill(pid, signal.SIGKILL)
		except ProcessLookupError:
			pass
	return True


def cleanup_leftovers(tdir):
	"""Runner side: stop every recorded process still alive, unmount every
	recorded mount.  Used after the child ended, whatever its fate."""
	try:
		with open(os.path.join(tdir, ".pids")) as f:
			entries = [l.split() for l in f if l.strip()]
	except OSError:
		entries = []
	for pid, st in entries:
		pid, st = int(pid), None if st == "None" else st
		if st is None or proc_starttime(pid) != st:
			continue
		# what it started itself goes too (collected first: once the
		# parent is gone they would be re-parented and untraceable)
		kids = descendants(pid)
		stop_pid(pid, st, wait=3)
		for kpid, kst in kids:
			stop_pid(kpid, kst, wait=3)
	try:
		with open(os.path.join(tdir, ".mounts")) as f:
			mounts = [l.strip() for l in f if l.strip()]
	except OSError:
		mounts = []
	for m in reversed(mounts):
		umount(m)


def is_mounted(path):
	path = os.path.realpath(path)
	with open("/proc/self/mounts") as f:
		for line in f:
			fields = line.split()
			if len(fields) > 1 and fields[1] == path:
				return True
	return False


def umount(path):
	for attempt in range(20):
		if not is_mounted(path):
			return
		subprocess.run(["umount", path], stdout=subprocess.DEVNULL,
		    stderr=subprocess.DEVNULL, timeout=10)
		time.sleep(0.1)
	subprocess.run(["umount", "-l", path], stdout=subprocess.DEVNULL,
	    stderr=subprocess.DEVNULL, timeout=10)


def find_relayd():
	bd = os.environ.get("RELAYD_BUILDDIR")
	if bd:
		p = os.path.join(bd, "relayd")
		return p if os.access(p, os.X_OK) else None
	d = os.getcwd()
	while True:
		p = os.path.join(d, "relayd")
		if os.path.isfile(p) and os.access(p, os.X_OK):
			return p
		up = os.path.dirname(d)
		if up == d:
			return None
		d = up


# ---------------------------------------------------------------------------
# SMTP client over a raw socket

class Reply:
	"""One SMTP reply, possibly multi-line."""

	def __init__(self, code, lines, raw):
		self.code = code		# int
		self.lines = lines		# text after "NNN-" / "NNN "
		self.raw = raw			# bytes as received
		m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})(?: |$)", lines[0])
		self.enh = m.group(1) if m else None

	@property
	def text(self):
		return "\n".join(self.lines)

	def __str__(self):
		return repr(" / ".join(self.raw.decode("utf-8", "replace").split("\r\n")[:-1]))

	__repr__ = __str__


class SMTP:
	"""A scripted SMTP client: sends exact bytes, reads replies with a
	bounded wait.  Failures raise AssertionError with what was sent and
	what came back."""

	def __init__(self, host, port, family=socket.AF_INET, timeout=10):
		self.sock = socket.socket(family, socket.SOCK_STREAM)
		self.sock.settimeout(timeout)
		self.sock.connect((host, port))
		self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		self.buf = b""
		self.last = "(connect)"
		self.eof = False

	@property
	def local_port(self):
		return self.sock.getsockname()[1]

	def send(self, data, what=None):
		if isinstance(data, str):
			data = data.encode()
		self.last = what if what is not None else _short(data)
		self.sock.sendall(data)

	def _fill(self, deadline):
		"""Reads more bytes into buf; False on EOF or timeout."""
		while True:
			left = deadline - time.monotonic()
			if left <= 0:
				return False
			r, _, _ = select.select([self.sock], [], [], left)
			if not r:
				return False
			try:
				chunk = self.sock.recv(65536)
			except (ConnectionResetError, BrokenPipeError):
				chunk = b""
			if not chunk:
				self.eof = True
				return False
			self.buf += chunk
			return True

	def read_reply(self, timeout=10):
		deadline = time.monotonic() + timeout
		lines = []
		code = None
		pos = 0
		while True:
			nl = self.buf.find(b"\n", pos)
			if nl < 0:
				if not self._fill(deadline):
					why = "connection closed" if self.eof else \
					    "no complete reply within %gs" % timeout
					raise AssertionError("after %s: %s (partial: %r)" %
					    (self.last, why, self.buf[:200]))
				continue
			line = self.buf[pos:nl + 1]
			pos = nl + 1
			if not line.endswith(b"\r\n"):
				raise AssertionError("after %s: reply line not ended by CRLF: %r" %
				    (self.last, line))
			s = line[:-2].decode("utf-8", "replace")
			m = re.match(r"^(\d{3})([ -]|$)(.*)$", s)
			if not m:
				raise AssertionError("after %s: malformed reply line %r" % (self.last, s))
			if code is not None and int(m.group(1)) != code:
				raise AssertionError("after %s: code changed inside a multi-line reply: %r" %
				    (self.last, self.buf[:pos]))
			code = int(m.group(1))
			lines.append(m.group(3))
			if m.group(2) != "-":
				raw = self.buf[:pos]
				self.buf = self.buf[pos:]
				return Reply(code, lines, raw)

	def cmd(self, line, timeout=10):
		self.send(line + "\r\n", what=repr(_short(line.encode())))
		return self.read_reply(timeout)

	def check(self, reply, code, enh=None, text=None):
		"""Asserts reply has code (and enhanced code, and text regex)."""
		ok = reply.code == code and (enh is None or reply.enh == enh) and \
		    (text is None or re.search(text, reply.text) is not None)
		if not ok:
			want = "%d %s%s" % (code, enh or "", (" /%s/" % text) if text else "")
			raise AssertionError("sent %s: expected %s, got %s" % (self.last, want.strip(), reply))
		return reply

	def expect(self, line, code, enh=None, text=None, timeout=10):
		return self.check(self.cmd(line, timeout), code, enh, text)

	def expect_reply(self, code, enh=None, text=None, timeout=10):
		return self.check(self.read_reply(timeout), code, enh, text)

	def greeting(self, code=220):
		r = self.read_reply()
		self.check(r, code)
		return r

	def ehlo(self, name="client.test.example"):
		r = self.expect("EHLO " + name, 250)
		return r

	def hello(self):
		self.greeting()
		return self.ehlo()

	def send_message(self, sender, rcpts, body, size=None):
		"""A whole transaction, one command at a time; returns the queue id.
		body is the unstuffed message text; it gets dot-stuffed here."""
		opt = " SIZE=%d" % size if size is not None else ""
		self.expect("MAIL FROM:<%s>%s" % (sender, opt), 250, "2.1.0")
		for r in rcpts:
			self.expect("RCPT TO:<%s>" % r, 250, "2.1.5")
		self.expect("DATA", 354)
		self.send(dot_stuff(body) + b".\r\n", what="message text + <CRLF>.<CRLF>")
		return queued_id(self, self.read_reply(timeout=30))

	def wait_closed(self, timeout=10):
		"""True if the server closes the connection within timeout (any bytes
		it sends first are kept in buf)."""
		deadline = time.monotonic() + timeout
		while not self.eof:
			if not self._fill(deadline) and not self.eof:
				return False
		return True

	def close(self):
		try:
			self.sock.close()
		except OSError:
			pass


def _short(b, n=80):
	s = b if len(b) <= n else b[:n] + b"...(%d bytes)" % len(b)
	return s.decode("latin-1")


def dot_stuff(body):
	if isinstance(body, str):
		body = body.encode()
	if body and not body.endswith(b"\r\n"):
		body += b"\r\n"
	out = []
	for line in body.split(b"\r\n")[:-1]:
		out.append((b"." + line) if line.startswith(b".") else line)
	return b"".join(l + b"\r\n" for l in out)


def queued_id(client, reply):
	"""Checks a 250 2.0.0 Ok: queued as ID reply and returns ID."""
	m = QUEUED_RE.match(reply.lines[0]) if reply.code == 250 and len(reply.lines) == 1 else None
	if not m:
		raise AssertionError("sent %s: expected '250 2.0.0 Ok: queued as <ID>', got %s" %
		    (client.last if client else "end of DATA", reply))
	return m.group(1)


# ---------------------------------------------------------------------------
# configurations and daemons

class Conf:
	def __init__(self, path, text, port, spool, listen):
		self.path = path
		self.text = text
		self.port = port
		self.spool = spool
		self.listen = listen

	def line_of(self, needle):
		"""1-based number of the first line containing needle."""
		for i, l in enumerate(self.text.split("\n"), 1):
			if needle in l:
				return i
		raise KeyError(needle)


def cfg_value(v):
	if isinstance(v, bool):
		return "true" if v else "false"
	if isinstance(v, (int, float)):
		return str(v)
	if isinstance(v, (list, tuple)):
		return "{ " + ", ".join(cfg_value(x) for x in v) + " }"
	return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def tcp_sockets(port, state):
	"""The rows of /proc/net/tcp{,6} (split in fields) of the sockets whose
	local port is port, in state (hex, as the kernel writes it: "0A" listen,
	"01" established)."""
	for name in ("/proc/net/tcp", "/proc/net/tcp6"):
		try:
			with open(name) as f:
				next(f)
				for line in f:
					fl = line.split()
					if fl[3] == state and int(fl[1].rsplit(":", 1)[1], 16) == port:
						yield fl
		except OSError:
			pass


def listen_socket_inodes(port):
	"""Inodes of TCP sockets listening on port (any address)."""
	return {fl[9] for fl in tcp_sockets(port, "0A")}


def pid_socket_inodes(pid):
	out = set()
	try:
		for fd in os.listdir("/proc/%d/fd" % pid):
			try:
				t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
			except OSError:
				continue
			if t.startswith("socket:["):
				out.add(t[8:-1])
	except OSError:
		pass
	return out


class Daemon:
	def __init__(self, ctx, conf, proc, logpath):
		self.ctx = ctx
		self.conf = conf
		self.proc = proc
		self.pid = proc.pid
		self.port = conf.port
		self.logpath = logpath
		self.expected_exit = False	# set when the test stops or kills it

	def log(self):
		with open(self.logpath, "rb") as f:
			return f.read().decode("utf-8", "replace")

	def log_tail(self, n=15):
		return "\n".join(self.log().splitlines()[-n:])

	def last_words(self):
		"""One line saying what the log says last: a sanitizer report if
		there is one, else the last line."""
		log = self.log()
		m = SANITIZER_RE.search(log)
		if m:
			i = log.rfind("\n", 0, m.start()) + 1
			j = log.find("\n", m.end())
			return log[i:j if j >= 0 else None].strip()
		lines = log.strip().splitlines()
		return lines[-1] if lines else "(log empty)"

	def wait_log(self, regex, timeout=10, count=1):
		"""Waits until regex (multiline) matched count times in the log;
		returns the last match."""
		deadline = time.monotonic() + timeout
		rx = re.compile(regex, re.M)
		while True:
			ms = list(rx.finditer(self.log()))
			if len(ms) >= count:
				return ms[count - 1]
			if time.monotonic() > deadline:
				raise AssertionError("log line /%s/ (x%d) not seen within %gs (last: %s)\nlog tail:\n%s" %
				    (regex, count, timeout, self.last_words(), self.log_tail()))
			if self.proc.poll() is not None:
				# the daemon is gone: the log will not grow any more
				ms = list(rx.finditer(self.log()))
				if len(ms) >= count:
					return ms[count - 1]
				raise AssertionError("log line /%s/ not seen and relayd exited (%s) (last: %s)\nlog tail:\n%s" %
				    (regex, self.proc.returncode, self.last_words(), self.log_tail()))
			time.sleep(0.05)

	def count_log(self, regex):
		return len(re.findall(regex, self.log(), re.M))

	def alive(self):
		return self.proc.poll() is None

	def status_kb(self, field):
		with open("/proc/%d/status" % self.pid) as f:
			for line in f:
				if line.startswith(field + ":"):
					return int(line.split()[1])
		raise AssertionError("no %s in /proc/%d/status" % (field, self.pid))

	def vm_hwm(self):
		return self.status_kb("VmHWM")

	def wait_listening(self, ports, timeout=10):
		deadline = time.monotonic() + timeout
		while True:
			if self.proc.poll() is not None:
				raise AssertionError("relayd exited with status %s before listening (last: %s)\nlog tail:\n%s" %
				    (self.proc.returncode, self.last_words(), self.log_tail()))
			mine = pid_socket_inodes(self.pid)
			if all(listen_socket_inodes(p) & mine for p in ports):
				return
			if time.monotonic() > deadline:
				raise AssertionError("relayd not listening on %s after %gs (last: %s)\nlog tail:\n%s" %
				    (ports, timeout, self.last_words(), self.log_tail()))
			time.sleep(0.05)

	def wait_exit(self, timeout):
		try:
			return self.proc.wait(timeout)
		except subprocess.TimeoutExpired:
			return None

	def stop(self, timeout=STOP_WAIT):
		"""SIGTERM; SIGKILL if still running after timeout.  Returns the
		exit status (negative: killed by that signal)."""
		self.expected_exit = True
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGTERM)
			if self.wait_exit(timeout) is None:
				self.proc.kill()
				self.proc.wait(5)
		return self.proc.returncode

	def kill9(self):
		self.expected_exit = True
		if self.proc.poll() is None:
			self.proc.kill()
		self.proc.wait(5)

	def connect(self, host="127.0.0.1", port=None, family=socket.AF_INET, timeout=10):
		c = SMTP(host, port or self.port, family, timeout)
		self.ctx.conns.append(c)
		return c


SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|runtime error:|"
    r"WARNING: ThreadSanitizer")


class Ctx:
	"""What a test gets: its temporary directory and helpers that remember
	everything started so that it can all be stopped."""

	def __init__(self, tdir, relayd):
		self.dir = tdir
		self.relayd = relayd
		self.daemons = []
		self.procs = []
		self.conns = []
		self.mounts = []
		self.nconf = 0

	# --- configuration
	def free_port(self, family=socket.AF_INET, host="127.0.0.1"):
		s = socket.socket(family, socket.SOCK_STREAM)
		s.bind((host, 0))
		p = s.getsockname()[1]
		s.close()
		return p

	def config(self, name=None, port=None, listen=None, spool=None, domains=("example.com",),
	    extra="", upstream=True, **settings):
		"""Writes a relayd.conf; settings are top-level keys (lists, ints,
		bools, strings).  Returns a Conf."""
		self.nconf += 1
		name = name or ("relayd.conf" if self.nconf == 1 else "relayd%d.conf" % self.nconf)
		port = port or self.free_port()
		listen = listen or ["127.0.0.1:%d" % port]
		spool = spool or os.path.join(self.dir, "spool")
		lines = ['# written by tests/integration/harness.py',
		    'hostname = "%s"' % HOSTNAME,
		    "listen = %s" % cfg_value(listen),
		    "spool = %s" % cfg_value(spool),
		    "control = %s" % cfg_value(os.path.join(self.dir, "control.sock"))]
		for k, v in settings.items():
			lines.append("%s = %s" % (k, cfg_value(v)))
		if upstream:
			lines += ['upstream "test" {', '\thost = "127.0.0.1"', "\tport = 2",
			    '\ttls = "none"', "}"]
		for d in domains:
			lines += ['domain "%s" {' % d, '\tupstream = "test"', "}"]
		text = "\n".join(lines) + "\n" + extra
		path = os.path.join(self.dir, name)
		with open(path, "w") as f:
			f.write(text)
		return Conf(path, text, port, spool, listen)

	# --- processes
	def env(self):
		env = dict(os.environ)
		# keep sanitizer builds' memory measurable: a small quarantine
		asan = env.get("ASAN_OPTIONS", "detect_leaks=1")
		if "quarantine_size_mb" not in asan:
			# ASan's default 256 MB quarantine would be all we measure
			asan += ":quarantine_size_mb=8"
		env["ASAN_OPTIONS"] = asan
		env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
		return env

	def spawn(self, argv, **kw):
		kw.setdefault("stdin", subprocess.DEVNULL)
		kw.setdefault("env", self.env())
		p = subprocess.Popen(argv, **kw)
		record_pid(self.dir, p.pid)
		self.procs.append(p)
		return p

	def run(self, argv, timeout=30, input=None):
		"""Runs a command to completion (bounded); returns (status, stdout,
		stderr) as text."""
		p = self.spawn(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
		    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
		try:
			out, err = p.communicate(input, timeout=timeout)
		except subprocess.TimeoutExpired:
			p.kill()
			p.communicate(timeout=5)
			raise AssertionError("%s did not finish within %gs" % (" ".join(argv), timeout))
		return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

	def start(self, conf, args=(), wait=True, env=None):
		"""Starts relayd -d -f conf (stderr and stdout to a log file) and
		waits until it listens on every port of conf.listen.  env: extra
		environment variables for the daemon."""
		logpath = os.path.join(self.dir, "relayd.%d.log" % (len(self.daemons) + 1))
		logf = open(logpath, "wb")
		penv = self.env()
		penv.update(env or {})
		proc = self.spawn([self.relayd, "-d", "-f", conf.path] + list(args),
		    stdout=logf, stderr=subprocess.STDOUT, env=penv)
		logf.close()
		d = Daemon(self, conf, proc, logpath)
		self.daemons.append(d)
		if wait:
			ports = sorted({int(l.rsplit(":", 1)[1]) for l in conf.listen})
			d.wait_listening(ports)
		return d

	def daemon(self, **kw):
		"""config(**kw) then start(); returns the Daemon (its .conf too)."""
		return self.start(self.config(**kw))

	# --- programs run as another user
	def reachable_copy(self, path):
		"""A copy of the program at path that any user may run, for tests
		that run relayd or relayctl as nobody or the relay user: the build
		tree may sit where they cannot enter (a 0700 home directory, a
		mktemp -d folder).  The copy goes to DIR/bin (mode 0755) and the
		test directory is opened to passers-by (o+x).  The build makes
		real executables with librelayd.a linked in, not libtool wrapper
		scripts, and they read nothing from the build tree: both are
		checked here, so that a change there fails loudly."""
		with open(path, "rb") as f:
			if f.read(4) != b"\x7fELF":
				raise AssertionError("%s is not an executable (a libtool wrapper?): "
				    "copy what it runs instead" % path)
		build = os.path.dirname(os.path.realpath(path))
		r = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
		    timeout=30)
		for lib in re.findall(r"=> (/\S+)", r.stdout.decode("utf-8", "replace")):
			if os.path.realpath(lib).startswith(build + os.sep):
				raise AssertionError("%s loads %s from the build tree: copy it too" % (path, lib))
		d = os.path.join(self.dir, "bin")
		os.makedirs(d, exist_ok=True)
		os.chmod(d, 0o755)
		os.chmod(self.dir, os.stat(self.dir).st_mode | 0o011)
		dst = os.path.join(d, os.path.basename(path))
		shutil.copy(path, dst)
		os.chmod(dst, 0o755)
		up = d
		while up != "/":
			up = os.path.dirname(up)
			if not os.stat(up).st_mode & stat.S_IXOTH:
				raise AssertionError("other users cannot pass through %s, above the test "
				    "directory: set TMPDIR to a directory they can enter" % up)
		return dst

	# --- files
	def mount_tmpfs(self, path, size):
		os.makedirs(path, exist_ok=True)
		with open(os.path.join(self.dir, ".mounts"), "a") as f:
			f.write(os.path.realpath(path) + "\n")
		self.mounts.append(path)
		r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path],
		    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
		if r.returncode != 0:
			raise AssertionError("cannot mount a tmpfs on %s: %s" % (path, r.stdout.decode()))

	def spool_bytes(self, conf):
		"""All the bytes of every *.seg file in conf's spool."""
		data = b""
		for p in sorted(glob.glob(os.path.join(conf.spool, "**", "*.seg"), recursive=True)):
			with open(p, "rb") as f:
				data += f.read()
		return data

	# --- end of test
	def cleanup(self):
		"""Stops everything; returns a list of problems seen (daemon died
		on its own, sanitizer reports)."""
		problems = []
		for c in self.conns:
			c.close()
		for d in self.daemons:
			if d.proc.poll() is not None and not d.expected_exit:
				problems.append("relayd (pid %d) died during the test with status %s (last: %s)\nlog tail:\n%s" %
				    (d.pid, d.proc.returncode, d.last_words(), d.log_tail()))
			d.stop()
		for p in self.procs:
			if p.poll() is None:
				p.terminate()
				try:
					p.wait(STOP_WAIT)
				except subprocess.TimeoutExpired:
					p.kill()
					p.wait(5)
		for m in reversed(self.mounts):
			umount(m)
		for d in self.daemons:
			m = SANITIZER_RE.search(d.log())
			if m:
				log = d.log()
				i = m.start()
				problems.append("sanitizer report in relayd's log: %s\n%s" % (d.last_words(),
				    log[max(0, i - 200):i + 1500]))
		return problems


# ---------------------------------------------------------------------------
# child: runs one test

def child_main(modpath, func, tdir):
	relayd = os.environ["RELAYD_BIN"]
	sys.path.insert(0, HERE)

	def on_term(signum, frame):
		raise TestTimeout()
	signal.signal(signal.SIGTERM, on_term)

	ctx = Ctx(tdir, relayd)
	result = "PASS"
	details = ""
	try:
		spec = importlib.util.spec_from_file_location(os.path.basename(modpath)[:-3], modpath)
		mod = importlib.util.module_from_spec(spec)
		spec.loader.exec_module(mod)
		getattr(mod, func)(ctx)
	except TestTimeout:
		result = "FAIL: timed out"
		details = traceback.format_exc()
	except AssertionError as e:
		msg = str(e) or "assertion failed"
		result = "FAIL: " + msg
		details = traceback.format_exc()
	except Exception as e:
		result = "FAIL: %s: %s" % (type(e).__name__, e)
		details = traceback.format_exc()
	finally:
		try:
			problems = ctx.cleanup()
		except TestTimeout:
			problems = ["cleanup interrupted"]
		if problems and result == "PASS":
			result = "FAIL: " + problems[0]
		if problems:
			details += "\n".join(problems)
		for d in ctx.daemons:
			details += "\n--- %s (pid %d), last lines:\n%s\n" % (os.path.basename(d.logpath),
			    d.pid, d.log_tail(25))
	with open(os.path.join(tdir, ".result"), "w") as f:
		f.write(result + "\n")
	with open(os.path.join(tdir, ".details"), "w") as f:
		f.write(details)
	return 0 if result == "PASS" else 1


# ---------------------------------------------------------------------------
# runner

def discover():
	tests = []
	for path in sorted(glob.glob(os.path.join(HERE, "t_*.py"))):
		mod = os.path.basename(path)[:-3]
		with open(path) as f:
			src = f.read()
		for m in re.finditer(r"^def (test_\w+)\(", src, re.M):
			t = re.search(r"^%s\.timeout\s*=\s*(\d+)" % m.group(1), src, re.M)
			serial = re.search(r"^%s\.serial\s*=\s*True" % m.group(1), src, re.M) is not None
			limit = int(t.group(1)) if t else DEFAULT_TIMEOUT
			limit = max(limit, int(os.environ.get("RELAYD_TEST_TIMEOUT", "0") or 0))
			tests.append((path, mod, m.group(1), limit, serial))
	return tests


def run_one(relayd, path, mod, func, limit, verbose):
	tdir = tempfile.mkdtemp(prefix="relayd-itest-")
	env = dict(os.environ)
	env["RELAYD_BIN"] = relayd
	env["PYTHONDONTWRITEBYTECODE"] = "1"
	t0 = time.monotonic()
	out = open(os.path.join(tdir, ".child-output"), "wb")
	child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", path, func, tdir],
	    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
	out.close()
	timed_out = False
	try:
		child.wait(limit)
	except subprocess.TimeoutExpired:
		timed_out = True
		child.send_signal(signal.SIGTERM)	# lets the child clean up
		try:
			child.wait(STOP_WAIT + 10)
		except subprocess.TimeoutExpired:
			child.kill()
			child.wait()
	except BaseException:
		child.kill()
		child.wait()
		cleanup_leftovers(tdir)
		raise
	cleanup_leftovers(tdir)
	elapsed = time.monotonic() - t0
	try:
		with open(os.path.join(tdir, ".result")) as f:
			result = f.read().strip()
	except OSError:
		with open(os.path.join(tdir, ".child-output"), "rb") as f:
			tail = f.read().decode("utf-8", "replace").strip().splitlines()[-1:]
		result = "FAIL: test process ended with status %s %s" % (child.returncode, " ".join(tail))
	if timed_out:
		result = "FAIL: timed out after %ds (%s)" % (limit, result)
	name = "%s.%s" % (mod, func)
	lines = []
	if result == "PASS":
		lines.append("PASS %s (%.1fs)" % (name, elapsed))
		if verbose:
			with open(os.path.join(tdir, ".child-output"), "rb") as f:
				for l in f.read().decode("utf-8", "replace").strip().splitlines():
					lines.append("    " + l)
		ok = True
	else:
		reason = result[len("FAIL: "):] if result.startswith("FAIL: ") else result
		first, _, rest = reason.partition("\n")
		lines.append("FAIL %s: %s" % (name, first))
		if verbose:
			try:
				with open(os.path.join(tdir, ".details")) as f:
					details = f.read()
			except OSError:
				details = ""
			with open(os.path.join(tdir, ".child-output"), "rb") as f:
				details += f.read().decode("utf-8", "replace")
			for l in (rest + "\n" + details).strip().splitlines():
				lines.append("    " + l)
		ok = False
	if os.environ.get("RELAYD_KEEP") and not ok:
		lines.append("    kept %s" % tdir)
	else:
		subprocess.run(["rm", "-rf", "--one-file-system", tdir], timeout=60)
	with PRINT_LOCK:	# a test's lines stay together when tests run side by side
		print("\n".join(lines), flush=True)
	return ok


def main(argv):
	if len(argv) >= 5 and argv[1] == "--child":
		return child_main(argv[2], argv[3], argv[4])
	verbose = bool(os.environ.get("RELAYD_TEST_VERBOSE"))
	args = argv[1:]
	jobs = int(os.environ.get("RELAYD_TEST_JOBS") or 1)
	while args and (args[0] == "-v" or args[0].startswith("-j")):
		if args[0] == "-v":
			verbose = True
			args = args[1:]
		elif args[0] != "-j":
			jobs = int(args[0][2:])
			args = args[1:]
		else:
			jobs = int(args[1])
			args = args[2:]
	jobs = max(1, jobs)
	filt = args[0] if args else ""
	relayd = find_relayd()
	if relayd is None:
		print("relayd not found (set RELAYD_BUILDDIR, or run from the build tree)", flush=True)
		print("0 passed, 1 failed")
		return 99
	relayd = os.path.abspath(relayd)
	tests = [x for x in discover() if filt in "%s.%s" % (x[1], x[2])]
	results = []

	def one(x):
		path, mod, func, limit, _ = x
		results.append(run_one(relayd, path, mod, func, limit, verbose))

	# Tests run side by side (each has its own directory, ports and
	# processes); those marked serial (they measure memory or time, or
	# load the machine themselves) run afterwards, alone.
	with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
		for f in [pool.submit(one, x) for x in tests if not x[4]]:
			f.result()
	for x in tests:
		if x[4]:
			one(x)
	npass = sum(1 for r in results if r)
	nfail = len(results) - npass
	print("%d passed, %d failed" % (npass, nfail), flush=True)
	return 0 if nfail == 0 else 1


if __name__ == "__main__":
	sys.exit(main(sys.argv))
