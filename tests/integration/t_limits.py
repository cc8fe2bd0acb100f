"""Limits on clients: idle timeout, max_clients, the allow list, and memory
that stays bounded whatever a client sends.

Hostile clients (issue 14): 10,000 connections at once (max_clients and
the descriptor limit answered 421 4.7.0), clients dripping a byte a
second (the timeout closes them), pipelined garbage at line rate, a 1 GB
line, a message one octet over max_message_size in one write, 100,000
RCPTs.  In each, relayd's VmHWM (/proc/PID/status) must stay within
HWM_SLACK_KB of what it was before the load, and a well-behaved client
(Bystander) keeps getting its mail through meanwhile.  Each prints the
peak.  RELAYD_TEST_CONNECTIONS sets the number of connections (default
10,000)."""

import os
import random
import resource
import select
import signal
import socket
import threading
import time

from harness import tcp_sockets, SMTP


MB = 1024 * 1024
# VmHWM may grow by less than 64 MB under any one load.  Why that bound:
# what a session may hold is bounded whatever its client does (64 KB read
# ahead, 16 KB of unread replies, a 2 KB command line, 100 KB of header
# fields to sign, a message body over 32 KB goes to a file), so a few
# hundred busy sessions or a thousand idle ones stay well below it, and a
# daemon that buffered what a client sends (a 1 GB line, 200 MB of
# commands) would be far above it.
HWM_SLACK_KB = 64 * 1024


class Bystander:
	"""A well-behaved client beside a hostile load: on a session opened
	before the load (max_clients may be full by then) it submits a message
	every `every` seconds until finish(), which asserts that each got its
	250 and returns a summary."""

	def __init__(self, d, every=0.2):
		self.c = d.connect(timeout=30)
		self.c.hello()
		self.every = every
		self.ids = []
		self.waits = []
		self.error = None
		self.stopping = threading.Event()
		self.th = threading.Thread(target=self.run, daemon=True)
		self.th.start()

	def run(self):
		i = 0
		while not self.stopping.is_set():
			t0 = time.monotonic()
			try:
				self.ids.append(self.c.send_message("good@example.com", ["b@example.net"],
				    b"Subject: bystander %d\r\n\r\nwell behaved\r\n" % i))
			except (AssertionError, OSError) as e:
				self.error = "message %d: %s" % (i, e)
				return
			self.waits.append(time.monotonic() - t0)
			i += 1
			self.stopping.wait(self.every)

	def finish(self):
		self.stopping.set()
		self.th.join(60)
		assert not self.th.is_alive(), "the well-behaved client is stuck"
		assert self.error is None, "the well-behaved client failed: %s" % self.error
		assert self.ids, "the well-behaved client got no message through"
		return "well-behaved client: %d messages queued, slowest in %.2f s" % (len(self.ids),
		    max(self.waits))


def raise_own_nofile(need):
	"""This test process may open need descriptors (root may raise the
	hard limit)."""
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	if soft < need:
		resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))


def test_idle_timeout(t):
	d = t.daemon(timeout=2)
	c = d.connect()
	c.greeting()
	t0 = time.monotonic()
	r = c.read_reply(timeout=15)
	waited = time.monotonic() - t0
	c.check(r, 421, "4.4.2")
	assert 1.0 <= waited <= 10, "421 came after %.1fs with timeout = 2" % waited
	assert c.wait_closed(5), "connection not closed after the 421"


def test_idle_timeout_inside_data(t):
	"""A client that stops in the middle of a message is timed out too,
	and the partial message is not queued."""
	d = t.daemon(timeout=2)
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<partial@example.com>", 250)
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	c.send(b"Subject: never finished\r\n\r\nhalf a mess")
	c.expect_reply(421, "4.4.2", timeout=15)
	assert c.wait_closed(5), "connection not closed after the 421"
	assert d.count_log(r"from=<partial@example\.com>") == 0, "partial message queued"


def test_activity_resets_timeout(t):
	"""A client that keeps talking (NOOP every second) is not timed out."""
	d = t.daemon(timeout=2)
	c = d.connect()
	c.hello()
	for _ in range(5):
		time.sleep(1)
		c.expect("NOOP", 250, "2.0.0")


def test_max_clients(t):
	d = t.daemon(max_clients=3)
	conns = []
	for i in range(3):
		c = d.connect()
		c.greeting(220)
		conns.append(c)
	extra = d.connect()
	extra.expect_reply(421, "4.7.0")
	assert extra.wait_closed(5), "the connection over max_clients was not closed"
	# the three are still served
	for c in conns:
		c.expect("NOOP", 250, "2.0.0")
	conns[0].expect("QUIT", 221)
	assert conns[0].wait_closed(5)
	# a slot is free again (allow the daemon a moment to notice)
	deadline = time.monotonic() + 5
	while True:
		c = d.connect()
		r = c.read_reply()
		if r.code == 220:
			break
		assert time.monotonic() < deadline, "after one client left, a new one still gets %s" % r
		c.close()
		time.sleep(0.1)
	c.ehlo()
	c.expect("NOOP", 250, "2.0.0")


def test_allow_list_rejects(t):
	d = t.daemon(allow=["10.0.0.0/8"])
	c = d.connect()
	c.expect_reply(554, "5.7.1")
	# nothing more is served on that connection
	try:
		r = c.cmd("EHLO client.test.example", timeout=5)
	except (AssertionError, OSError):
		r = None
	assert r is None or r.code >= 500, "a client not allowed got %s to EHLO" % r



def test_disallowed_client_frees_its_slot(t):
	"""A client outside allow gets its 554 5.7.1 and the connection is
	closed at once: staying connected, it holds no max_clients slot, and
	an allowed client is served (issue 11, item 10d)."""
	d = t.daemon(max_clients=1, allow=["127.0.0.1/32"], timeout=60)
	bad = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	t.conns.append(bad)
	bad.bind(("127.0.0.2", 0))
	bad.settimeout(5)
	bad.connect(("127.0.0.1", d.port))
	t0 = time.monotonic()
	data = b""
	try:
		while True:
			chunk = bad.recv(4096)
			if not chunk:
				break
			data += chunk
	except socket.timeout:
		raise AssertionError("a client not allowed was not disconnected within 5 s of its "
		    "554 (got %r)" % data)
	waited = time.monotonic() - t0
	assert data.startswith(b"554 5.7.1 ") and data.endswith(b"\r\n") and data.count(b"\r\n") == 1, \
	    "a client not allowed got %r" % data
	d.wait_log(r"reject: connect from \S+\[127\.0\.0\.2\]:\d+: client not in allow list")
	# the refused client keeps its end open; an allowed one is served
	c = d.connect()
	c.greeting(220)
	c.ehlo()
	c.send_message("a@example.com", ["b@example.net"], b"Subject: served\r\n\r\nx\r\n")
	print("EOF %.3f s after connecting" % waited)


def has_ipv6_loopback():
	try:
		s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
		s.bind(("::1", 0))
		s.close()
		return True
	except OSError:
		return False


def test_allow_list_ipv6(t):
	if not has_ipv6_loopback():
		print("no ::1 on this machine; IPv6 part skipped")
		return
	port4 = t.free_port()
	port6 = t.free_port(socket.AF_INET6, "::1")
	d = t.daemon(port=port4, listen=["127.0.0.1:%d" % port4, "[::1]:%d" % port6], allow=["127.0.0.0/8"])
	c = d.connect("::1", port6, socket.AF_INET6)
	c.expect_reply(554, "5.7.1")
	c = d.connect("127.0.0.1", port4)
	c.greeting()
	d.stop()
	d2 = t.daemon(port=port4, listen=["127.0.0.1:%d" % port4, "[::1]:%d" % port6],
	    allow=["10.0.0.0/8", "::1/128"])
	c = d2.connect("::1", port6, socket.AF_INET6)
	c.greeting()
	c.ehlo()
	qid = c.send_message("six@example.com", ["b@example.net"], b"Subject: v6\r\n\r\nx\r\n")
	d2.wait_log(r"%s: client=\S*\[::1\]:%d" % (qid, c.local_port))
	c = d2.connect("127.0.0.1", port4)
	c.expect_reply(554, "5.7.1")


def send_flood(c, chunk, total, limit_s, stall_s=None):
	"""Sends chunk repeatedly up to total octets without waiting for
	replies (they are read and kept, so that only the daemon's own
	buffering is tested).  Stops early if the daemon closes, or after
	limit_s, or (stall_s) if the daemon stopped reading for that long.
	Returns (octets sent, how it ended)."""
	sock = c.sock
	sock.setblocking(False)
	sent = 0
	view = memoryview(chunk)
	off = 0
	t0 = last_progress = time.monotonic()
	try:
		while sent < total:
			now = time.monotonic()
			if now - t0 > limit_s:
				return sent, "time limit"
			if stall_s and now - last_progress > stall_s:
				return sent, "stalled"
			r, w, _ = select.select([sock], [sock], [], 0.5)
			if r:
				try:
					b = sock.recv(1 << 20)
				except ConnectionResetError:
					b = b""
				except BlockingIOError:
					b = None
				if b == b"":
					return sent, "closed"
				if b:
					c.buf += b
					if len(c.buf) > 64 * MB:
						c.buf = c.buf[-MB:]
			if w:
				n = min(len(chunk) - off, total - sent)
				try:
					k = sock.send(view[off:off + n])
				except BlockingIOError:
					k = 0
				except (BrokenPipeError, ConnectionResetError):
					return sent, "closed"
				if k:
					sent += k
					off = (off + k) % len(chunk)
					last_progress = time.monotonic()
		return sent, "done"
	finally:
		sock.setblocking(True)
		sock.settimeout(10)


def test_memory_one_gigabyte_line(t):
	d = t.daemon()
	c = d.connect()
	c.hello()
	c.expect("NOOP", 250, "2.0.0")
	good = Bystander(d)
	base = d.vm_hwm()
	c.last = "a 1 GB line without LF"
	sent, how = send_flood(c, b"x" * MB, 1024 * MB, limit_s=60)
	if how != "closed":
		try:
			c.send(b"\r\n", what="a 1 GB line, then CRLF")
		except (BrokenPipeError, ConnectionResetError):
			how = "closed"
	grew = d.vm_hwm() - base
	# the reply must say why, whether or not the daemon hung up
	r = c.read_reply(timeout=20)
	c.check(r, 500, "5.5.2")
	assert grew < HWM_SLACK_KB, "VmHWM grew by %d MB while receiving a %d MB line" % (grew // 1024, sent // MB)
	assert d.alive(), "relayd died"
	if how != "closed" and not c.eof:
		try:
			ok = c.cmd("NOOP", timeout=10)
		except (AssertionError, OSError):
			ok = None
		assert ok is None or (ok.code, ok.enh) == (250, "2.0.0"), "NOOP after the long line: %s" % ok
	c2 = d.connect()
	c2.hello()
	c2.send_message("a@example.com", ["b@example.net"], b"Subject: after the flood\r\n\r\nx\r\n")
	print("sent %d MB (%s), VmHWM grew %d kB" % (sent // MB, how, grew))
	print("1 GB line: VmHWM peak %d kB (%d kB before); %s" % (d.vm_hwm(), base, good.finish()))


test_memory_one_gigabyte_line.timeout = 150
test_memory_one_gigabyte_line.serial = True


def test_memory_pipelined_noops(t):
	"""200 MB of NOOPs while never reading the replies: the daemon must
	stop reading instead of buffering replies without bound."""
	d = t.daemon()
	c = d.connect()
	c.hello()
	base = d.vm_hwm()
	c.last = "200 MB of pipelined NOOPs"
	noop = b"NOOP\r\n" * 100000
	total = 200 * MB - (200 * MB) % len(b"NOOP\r\n")
	# phase 1: do not read at all; the kernel buffers fill, then the
	# daemon must stop reading (or hang up on us)
	sock = c.sock
	sock.setblocking(False)
	sent = 0
	off = 0
	last = t0 = time.monotonic()
	how = "done"
	while sent < total:
		if time.monotonic() - t0 > 60:
			how = "time limit"
			break
		if time.monotonic() - last > 3:
			how = "stalled"
			break
		_, w, _ = select.select([], [sock], [], 0.2)
		if not w:
			continue
		try:
			k = sock.send(noop[off:off + min(len(noop) - off, total - sent)])
		except BlockingIOError:
			continue
		except (BrokenPipeError, ConnectionResetError):
			how = "closed"
			break
		sent += k
		off = (off + k) % len(noop)
		last = time.monotonic()
	sock.setblocking(True)
	grew1 = d.vm_hwm() - base
	assert d.alive(), "relayd died"
	assert grew1 < HWM_SLACK_KB, "VmHWM grew by %d MB after %d MB of unread NOOPs (%s)" % (
	    grew1 // 1024, sent // MB, how)
	# phase 2: read and send the rest at once; every reply must be 250
	replies = 0
	bad = None
	if how != "closed":
		stop = threading.Event()
		done = [sent]

		def writer():
			s_off = off
			try:
				while done[0] < total and not stop.is_set():
					k = sock.send(noop[s_off:s_off + min(len(noop) - s_off, total - done[0])])
					done[0] += k
					s_off = (s_off + k) % len(noop)
			except OSError:
				pass
		wt = threading.Thread(target=writer, daemon=True)
		wt.start()
		sock.settimeout(5)
		rest = b""
		deadline = time.monotonic() + 60
		try:
			while time.monotonic() < deadline:
				b = sock.recv(1 << 20)
				if not b:
					break
				data = rest + b
				cut = data.rfind(b"\n") + 1
				block, rest = data[:cut], data[cut:]
				lines = block.count(b"\n")
				if bad is None and block.count(b"250 2.0.0") != lines:
					# a daemon may hang up on a junk flood with 421; anything else is wrong
					odd = [l for l in block.split(b"\r\n")[:-1] if not l.startswith(b"250 2.0.0")]
					if odd and not odd[0].startswith(b"421 4."):
						bad = odd[0]
				replies += lines
				if replies * 6 >= total:
					break
		except (socket.timeout, OSError):
			pass
		stop.set()
		wt.join(10)
	grew = d.vm_hwm() - base
	print("phase 1: %d MB sent (%s), VmHWM +%d kB; phase 2: %d replies; VmHWM +%d kB" %
	    (sent // MB, how, grew1, replies, grew))
	assert bad is None, "a pipelined NOOP got %r" % bad
	assert how == "closed" or replies > 0, "no replies at all to pipelined NOOPs"
	assert grew < HWM_SLACK_KB, "VmHWM grew by %d MB" % (grew // 1024)
	assert d.alive(), "relayd died"
	c2 = d.connect()
	c2.hello()
	c2.expect("NOOP", 250, "2.0.0")


test_memory_pipelined_noops.timeout = 180
test_memory_pipelined_noops.serial = True


def test_memory_big_message(t):
	"""A 100 MB message (max_message_size allows it) goes to disk, not to
	memory."""
	d = t.daemon(max_message_size=200 * MB)
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<big@example.com> SIZE=%d" % (100 * MB), 250, "2.1.0")
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	base = d.vm_hwm()
	c.send(b"Subject: big\r\n\r\n")
	line = b"y" * 998 + b"\r\n"
	total = 100 * MB - (100 * MB) % len(line)	# whole lines only, so that ".\r\n" ends it
	sent, how = send_flood(c, line * 1024, total, limit_s=90)
	assert how == "done", "sending the body ended: %s after %d MB" % (how, sent // MB)
	c.send(b".\r\n", what="end of a 100 MB message")
	r = c.read_reply(timeout=60)
	c.check(r, 250, "2.0.0")
	grew = d.vm_hwm() - base
	assert grew < HWM_SLACK_KB, "VmHWM grew by %d MB for a 100 MB message" % (grew // 1024)


test_memory_big_message.timeout = 180
test_memory_big_message.serial = True


# ---------------------------------------------------------------------------
# memory per session in DATA (issue 11, item 9)

NSESSIONS = 100


def server_rx_queues(port):
	"""Octets each established connection to port has received that its
	owner (relayd) has not read yet (rx_queue in /proc/net/tcp)."""
	return [int(fl[4].split(":")[1], 16) for fl in tcp_sockets(port, "01")]


def wait_all_read(d, n, timeout=30):
	"""Waits until relayd has read everything its n client connections sent."""
	deadline = time.monotonic() + timeout
	while True:
		q = server_rx_queues(d.port)
		if len(q) >= n and not any(q):
			return
		assert time.monotonic() < deadline, \
		    "relayd did not read what %d sessions sent within %gs: %d connections, %d octets unread" % (
		    n, timeout, len(q), sum(q))
		time.sleep(0.05)


def filler_fields(total, name="X-Filler"):
	"""Unsigned header fields, 78-octet lines, about total octets."""
	out = []
	n = 0
	i = 0
	while n < total:
		f = ("%s-%d: " % (name, i)).encode()
		f += b"f" * (76 - len(f)) + b"\r\n"
		out.append(f)
		n += len(f)
		i += 1
	return b"".join(out)


def open_in_data(d, header):
	"""A session that sent MAIL, RCPT, DATA and header (no empty line, no
	end of data), and stays there."""
	c = d.connect(timeout=30)
	c.hello()
	c.expect("MAIL FROM:<mem@example.com>", 250, "2.1.0")
	c.expect("RCPT TO:<b@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	c.send(header, what="a header of %d octets" % len(header))
	return c


def growth_per_session(t, header, what):
	"""Opens NSESSIONS sessions that each stay in DATA after sending header;
	returns relayd's growth per session in kB: (VmRSS, VmHWM)."""
	# Under ASan, freed blocks wait in a quarantine (8 MB here, 80 kB a
	# session) before reuse: that is the sanitizer's memory, not relayd's.
	asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1") + ":quarantine_size_mb=0"
	d = t.start(t.config(max_clients=NSESSIONS + 10, timeout=120), env={"ASAN_OPTIONS": asan})
	# warm up: whatever the first sessions allocate once for all
	warm = [open_in_data(d, header) for _ in range(5)]
	wait_all_read(d, 5)
	for c in warm:
		c.close()
	deadline = time.monotonic() + 10
	while server_rx_queues(d.port) and time.monotonic() < deadline:
		time.sleep(0.05)
	time.sleep(0.3)
	rss0, hwm0 = d.status_kb("VmRSS"), d.vm_hwm()
	conns = [open_in_data(d, header) for _ in range(NSESSIONS)]
	wait_all_read(d, NSESSIONS)
	time.sleep(0.3)
	rss1, hwm1 = d.status_kb("VmRSS"), d.vm_hwm()
	assert d.alive(), "relayd died"
	# still in DATA: each session is answered once its message ends
	conns[0].send(b"\r\nbody\r\n.\r\n", what="end of the first message")
	conns[0].expect_reply(250, "2.0.0", timeout=30)
	# VmHWM counted from the resident size before: start-up peaks count too
	per_rss = (rss1 - rss0) / NSESSIONS
	per_hwm = (max(hwm1, rss1) - max(hwm0, rss0)) / NSESSIONS
	print("%s: %d sessions in DATA, header %d octets: VmRSS %d -> %d kB (%.1f kB per session), "
	    "VmHWM %d -> %d kB (%.1f kB per session)" % (what, NSESSIONS, len(header), rss0, rss1,
	    per_rss, hwm0, hwm1, per_hwm))
	for c in conns:
		c.close()
	return per_rss, per_hwm


def test_memory_sessions_in_data_8k_header(t):
	"""100 sessions in DATA, each with an 8 KB header (signed fields and
	others): relayd grows by less than 64 KB per session."""
	to = ",\r\n ".join("<rcpt%03d@example.net>" % i for i in range(100))
	header = (b"From: Mem Test <mem@example.com>\r\nTo: " + to.encode() + b"\r\n"
	    b"Subject: memory per session\r\nDate: Mon, 1 Dec 2026 10:00:00 +0000\r\n"
	    b"Message-ID: <mem.8k@example.com>\r\n")
	header += filler_fields(8192 - len(header))
	assert 8000 <= len(header) <= 8300, len(header)
	per_rss, per_hwm = growth_per_session(t, header, "8 KB header")
	assert per_rss < 64 and per_hwm < 64, \
	    "relayd grew by %.1f kB (VmRSS) / %.1f kB (VmHWM) per session in DATA with an 8 KB header; " \
	    "the bound is 64 kB" % (per_rss, per_hwm)


test_memory_sessions_in_data_8k_header.timeout = 120


def test_memory_sessions_in_data_256k_unsigned(t):
	"""100 sessions in DATA, each with 256 KB of header fields that are not
	signed (many short ones, then one folded field of 104 KB, over the
	100 KB a signed field may have): relayd grows by less than 128 KB per
	session."""
	big = b"X-Big: " + b"\r\n ".join([b"b" * 70] * (104 * 1024 // 73)) + b"\r\n"
	header = b"From: Mem Test <mem@example.com>\r\nTo: <b@example.net>\r\nSubject: big\r\n"
	header += filler_fields(256 * 1024 - len(header) - len(big), "X-A") + big
	assert 256 * 1024 <= len(header) <= 257 * 1024, len(header)
	per_rss, per_hwm = growth_per_session(t, header, "256 KB unsigned header")
	assert per_rss < 128 and per_hwm < 128, \
	    "relayd grew by %.1f kB (VmRSS) / %.1f kB (VmHWM) per session in DATA with 256 KB of " \
	    "unsigned header fields; the bound is 128 kB" % (per_rss, per_hwm)


test_memory_sessions_in_data_256k_unsigned.timeout = 180


# ---------------------------------------------------------------------------
# hostile clients (issue 14, item 4)

def open_many(port, n, parallel=500, answer_wait=15, deadline_s=120):
	"""Opens n connections to 127.0.0.1:port, at most `parallel` of them
	connecting or waiting for their first reply line at a time (so that
	the listen queue never overflows), and sorts them by that line.
	Returns (open sockets greeted with 220, counts): counts has
	greeted, refused (421 4.7.0, then closed), other (any other reply:
	listed in "others"), unanswered (nothing within answer_wait s),
	failed (connect error)."""
	counts = {"greeted": 0, "refused": 0, "other": 0, "unanswered": 0, "failed": 0,
	    "others": []}
	kept = []
	pending = {}		# fd -> [sock, buf, since]
	poller = select.poll()
	started = 0
	deadline = time.monotonic() + deadline_s
	while (started < n or pending) and time.monotonic() < deadline:
		while started < n and len(pending) < parallel:
			s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
			s.setblocking(False)
			try:
				s.connect(("127.0.0.1", port))
			except BlockingIOError:
				pass
			except OSError:
				counts["failed"] += 1
				s.close()
				started += 1
				continue
			pending[s.fileno()] = [s, b"", time.monotonic()]
			poller.register(s.fileno(), select.POLLIN)
			started += 1
		now = time.monotonic()
		for fd, (s, buf, since) in list(pending.items()):
			if now - since > answer_wait:
				counts["unanswered"] += 1
				poller.unregister(fd)
				del pending[fd]
				s.close()
		for fd, ev in poller.poll(200):
			ent = pending.get(fd)
			if ent is None:
				continue
			s = ent[0]
			try:
				chunk = s.recv(512)
			except BlockingIOError:
				continue
			except OSError:
				chunk = b""
			ent[1] += chunk
			line = ent[1]
			if b"\r\n" not in line and chunk:
				continue
			poller.unregister(fd)
			del pending[fd]
			if line.startswith(b"220 "):
				counts["greeted"] += 1
				kept.append(s)
				continue
			if line.startswith(b"421 4.7.0 ") and line.endswith(b"\r\n"):
				counts["refused"] += 1
			elif not line:
				counts["failed"] += 1
			else:
				counts["other"] += 1
				if len(counts["others"]) < 5:
					counts["others"].append(line[:100])
			s.close()
	for s, _, _ in pending.values():
		counts["unanswered"] += 1
		s.close()
	return kept, counts


NCONN = int(os.environ.get("RELAYD_TEST_CONNECTIONS", "10000"))


def served_again(d, when, wait=10):
	"""A new client is greeted (within wait s: relayd notices closed
	sessions a moment later) and its message is queued."""
	deadline = time.monotonic() + wait
	while True:
		c = d.connect()
		r = c.read_reply()
		if r.code == 220:
			break
		c.close()
		assert time.monotonic() < deadline, "a new client still gets %s %s" % (r, when)
		time.sleep(0.1)
	c.ehlo()
	c.send_message("after@example.com", ["b@example.net"], b"Subject: after\r\n\r\nx\r\n")


def flood(t, d, n, what):
	"""n connections at once against d, with a well-behaved client beside;
	checks that each got 220 or 421 4.7.0 and that relayd's memory stayed
	within the bound; returns the counts."""
	good = Bystander(d)
	base = d.vm_hwm()
	t0 = time.monotonic()
	kept, counts = open_many(d.port, n)
	took = time.monotonic() - t0
	hwm = d.vm_hwm()
	assert d.alive(), "relayd died under %d connections" % n
	summary = good.finish()
	# the greeted ones are sessions: they still work
	probe = kept[:3]
	for s in probe:
		s.setblocking(True)
		s.settimeout(10)
		s.sendall(b"NOOP\r\n")
		r = s.recv(512)
		assert r.startswith(b"250 2.0.0"), "a greeted session answered NOOP with %r" % r
	for s in kept:
		s.close()
	print("%s: %d connections in %.1f s: %d greeted, %d refused with 421 4.7.0, %d other, "
	    "%d unanswered, %d failed; VmHWM %d kB (+%d kB); %s" % (what, n, took, counts["greeted"],
	    counts["refused"], counts["other"], counts["unanswered"], counts["failed"], hwm,
	    hwm - base, summary))
	assert counts["other"] == 0, "%d connections got another reply, e.g. %s" % (counts["other"],
	    counts["others"])
	assert counts["unanswered"] == 0, "%d connections got no reply within 15 s" % (
	    counts["unanswered"])
	assert counts["failed"] == 0, "%d connections failed" % counts["failed"]
	assert hwm - base < HWM_SLACK_KB, "VmHWM grew by %d kB under %d connections" % (
	    hwm - base, n)
	return counts


def test_listen_backlog_takes_a_burst(t):
	"""relayd listens with a backlog of 1024: while it is busy (stopped
	for a moment here, as a slow moment of the event loop would hold it),
	1000 clients connecting at once all complete the TCP handshake, and
	each is greeted once relayd goes on.  A SYN the kernel drops for a
	full accept queue is retried only 1, 3, 7 s later."""
	raise_own_nofile(3000)
	d = t.daemon(max_clients=2000)
	n = 1000
	socks = []
	os.kill(d.pid, signal.SIGSTOP)
	try:
		poller = select.poll()
		for i in range(n):
			s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
			s.setblocking(False)
			try:
				s.connect(("127.0.0.1", d.port))
			except BlockingIOError:
				pass
			socks.append(s)
			poller.register(s.fileno(), select.POLLOUT)
		connected = set()
		deadline = time.monotonic() + 0.7
		while time.monotonic() < deadline and len(connected) < n:
			for fd, ev in poller.poll(100):
				poller.unregister(fd)
				connected.add(fd)
		established = sum(1 for s in socks if s.fileno() in connected and
		    s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
	finally:
		os.kill(d.pid, signal.SIGCONT)
	greeted = 0
	t0 = time.monotonic()
	poller = select.poll()
	left = {s.fileno(): s for s in socks}
	for fd in left:
		poller.register(fd, select.POLLIN)
	while left and time.monotonic() - t0 < 20:
		for fd, ev in poller.poll(200):
			s = left.pop(fd)
			poller.unregister(fd)
			try:
				greeted += s.recv(512).startswith(b"220 ")
			except OSError:
				pass
	for s in socks:
		s.close()
	print("%d of %d connections established while relayd was stopped; %d greeted, the last "
	    "%.1f s after it went on" % (established, n, greeted, time.monotonic() - t0))
	assert established == n, "only %d of %d connections got through the TCP handshake " \
	    "while relayd was busy for 0.7 s: the listen backlog is smaller than asked" % (
	    established, n)
	assert greeted == n, "%d of %d greeted" % (greeted, n)
test_listen_backlog_takes_a_burst.serial = True


def test_ten_thousand_connections_max_clients(t):
	"""10,000 connections at once, max_clients = 1000: 999 are greeted
	(the well-behaved client holds a slot), the others get 421 4.7.0 and
	are closed; relayd's memory stays bounded; the bystander's mail goes
	through; once they are gone new clients are served."""
	raise_own_nofile(NCONN + 1000)
	d = t.daemon(max_clients=1000)
	counts = flood(t, d, NCONN, "max_clients = 1000")
	assert counts["greeted"] == min(999, NCONN), "%d greeted with max_clients = 1000 and " \
	    "one session already open" % counts["greeted"]
	served_again(d, "after the connections closed")


test_ten_thousand_connections_max_clients.timeout = 180
test_ten_thousand_connections_max_clients.serial = True


def test_descriptor_limit_answered_421(t):
	"""relayd's descriptor limit (1024, set with prlimit) is lower than
	max_clients (20,000): the clients it keeps no descriptor for are
	answered 421 4.7.0 as those over max_clients are, not left waiting
	unanswered, and relayd keeps descriptors for its own work (the
	bystander's mail is queued, then a message whose body goes to a
	file).  Then, with the limit cut below what relayd has open (accept
	fails with EMFILE), new clients still get their 421 4.7.0."""
	raise_own_nofile(NCONN + 1000)
	d = t.daemon(max_clients=20000)
	resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (1024, 1024))
	counts = flood(t, d, min(NCONN, 3000), "descriptor limit 1024")
	# clients may have (1024 - 64) / 2 descriptors, less those relayd has open
	assert counts["refused"] > 0 and counts["greeted"] > 400, counts
	c = d.connect()
	c.hello()
	c.send_message("big@example.com", ["b@example.net"],
	    b"Subject: spilled\r\n\r\n" + (b"s" * 78 + b"\r\n") * 1000)
	c.close()
	# no descriptor left at all: accept(2) itself fails
	held, counts = open_many(d.port, 200)
	assert counts["greeted"] == 200, counts
	resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (150, 1024))
	try:
		kept, counts = open_many(d.port, 300, answer_wait=10)
		for s in kept:
			s.close()
		print("limit 150 with %d descriptors open: %d refused with 421 4.7.0, %d greeted, "
		    "%d unanswered, %d other" % (len(held) + 20, counts["refused"], counts["greeted"],
		    counts["unanswered"], counts["other"]))
		# a descriptor freed below the new limit (a closed connection) may
		# still take a client: fd_room allows it; every other one is
		# answered with the spare descriptor
		assert (counts["unanswered"], counts["other"]) == (0, 0), counts
		assert counts["refused"] >= 290, counts
		assert d.alive(), "relayd died out of descriptors"
	finally:
		resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (1024, 1024))
	for s in held:
		s.close()
	d.wait_log(r"accept: Too many open files")
	served_again(d, "once descriptors were back")


test_descriptor_limit_answered_421.timeout = 120
test_descriptor_limit_answered_421.serial = True


def read_until(s, mark, what):
	buf = b""
	while mark not in buf:
		r = s.recv(4096)
		assert r, "connection closed waiting for %r (%s): %r" % (mark, what, buf[-200:])
		buf += r
	return buf


def test_descriptor_room_for_spilled_bodies(t):
	"""Each client relayd greets under its descriptor limit (1024) may
	hold a second descriptor, the file its message spills to past 32 KiB:
	with every greeted client in the middle of a 40 KB message at once,
	every message is queued (250), and so is a well-behaved client's big
	message (before: clients were let have three quarters of the limit,
	and their spill files then ran relayd out of descriptors)."""
	raise_own_nofile(5000)
	d = t.daemon(max_clients=20000)
	resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (1024, 1024))
	good = d.connect(timeout=30)
	good.hello()
	kept, counts = open_many(d.port, 1500)
	assert counts["greeted"] > 400 and counts["refused"] > 0, counts
	assert (counts["unanswered"], counts["other"], counts["failed"]) == (0, 0, 0), counts
	text = b"Subject: spilled\r\n\r\n" + (b"s" * 78 + b"\r\n") * 500
	for s in kept:
		s.setblocking(True)
		s.settimeout(30)
		s.sendall(b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	for s in kept:
		read_until(s, b"\r\n354 ", "DATA")
		s.sendall(text)
	qid = good.send_message("good@example.com", ["b@example.net"], text)
	replies = {}
	for s in kept:
		s.sendall(b".\r\n")
	for s in kept:
		r = read_until(s, b"\r\n", "end of DATA")[:9].decode(errors="replace")
		replies[r] = replies.get(r, 0) + 1
		s.close()
	print("descriptor limit 1024: %d clients greeted (%d refused 421 4.7.0), each with a "
	    "40 KB message spilled to a file at once: %s; the well-behaved client's: %s" % (
	    counts["greeted"], counts["refused"], replies, qid))
	assert replies == {"250 2.0.0": counts["greeted"]}, \
	    "replies to the end of DATA: %s (expected 250 2.0.0 for all %d)" % (replies,
	    counts["greeted"])
	assert d.alive(), "relayd died"


test_descriptor_room_for_spilled_bodies.timeout = 120
test_descriptor_room_for_spilled_bodies.serial = True


def test_slow_drip_clients_timed_out(t):
	"""40 clients that send a byte a second, half of them in the middle of
	a command, half inside DATA: none of them is ever silent for the
	timeout (3 s here), yet each gets 421 4.4.2 and is closed within twice
	the timeout, memory flat, while a well-behaved client is served."""
	d = t.daemon(timeout=3, max_clients=100)
	good = Bystander(d)
	base = d.vm_hwm()
	drips = []
	for i in range(40):
		c = d.connect()
		c.hello()
		if i % 2:
			c.expect("MAIL FROM:<drip@example.com>", 250)
			c.expect("RCPT TO:<b@example.net>", 250)
			c.expect("DATA", 354)
			text = b"Subject: drip\r\n\r\n" + b"d" * 100
		else:
			text = b"NOOP" + b" " * 200 + b"\r\n"
		c.sock.setblocking(False)
		drips.append([c, text, 0, time.monotonic(), None])
	t0 = time.monotonic()
	while time.monotonic() - t0 < 15 and any(x[4] is None for x in drips):
		for x in drips:
			c, text, pos = x[0], x[1], x[2]
			if x[4] is not None:
				continue
			try:
				b = c.sock.recv(4096)
				if b:
					c.buf += b
				else:
					x[4] = time.monotonic()
					continue
			except BlockingIOError:
				pass
			except OSError:
				x[4] = time.monotonic()
				continue
			try:
				c.sock.send(text[pos % len(text):pos % len(text) + 1])
				x[2] += 1
			except OSError:
				x[4] = time.monotonic()
		time.sleep(1)
	hwm = d.vm_hwm()
	summary = good.finish()
	late = [x for x in drips if x[4] is None]
	assert not late, "%d of 40 clients dripping a byte a second still connected after 15 s " \
	    "(timeout = 3)" % len(late)
	worst = max(x[4] - x[3] for x in drips)
	for x in drips:
		assert x[0].buf.endswith(b"\r\n") and b"421 4.4.2 " in x[0].buf, \
		    "a dripping client was closed with %r" % x[0].buf[-200:]
	print("40 clients at a byte a second: all closed with 421 4.4.2, the last %.1f s after "
	    "its last command; VmHWM %d kB (+%d kB); %s" % (worst, hwm, hwm - base, summary))
	assert worst <= 8, "a dripping client stayed %.1f s (timeout = 3)" % worst
	assert hwm - base < HWM_SLACK_KB


test_slow_drip_clients_timed_out.timeout = 60
test_slow_drip_clients_timed_out.serial = True


GARBAGE = [b"\x00\x01\x02\xff\xfe garbage", b"MAIL FROM:<<<>>>", b"RCPT TO:<@@@>",
    b"\x1b[31mHELLO", b"DATA DATA DATA", b"AUTH PLAIN AAAA", b"BDAT 1000000",
    b"." * 100, b"", b"xyzzy " * 50, b"STARTTLS", b"\xc3\x28\xa0\xa1"]


def test_pipelined_garbage_at_line_rate(t):
	"""Eight clients each pipeline garbage lines as fast as the socket
	takes them, reconnecting when relayd hangs up, for 6 s: every one is
	answered with errors and 421 4.7.0 after 20 (Postfix's hard error
	limit), relayd's memory stays flat, a well-behaved client is served."""
	d = t.daemon(max_clients=100)
	good = Bystander(d)
	base = d.vm_hwm()
	stats = {"sessions": 0, "closed_421": 0, "octets": 0, "bad": []}
	lock = threading.Lock()
	rnd = random.Random(14)
	block = b"".join(rnd.choice(GARBAGE) + rnd.choice([b"\r\n", b"\n", b"\r\n"])
	    for _ in range(20000))

	def hammer():
		end = time.monotonic() + 6
		while time.monotonic() < end:
			c = SMTP("127.0.0.1", d.port, timeout=10)
			try:
				c.greeting()
				c.sock.setblocking(False)
				off = sent = 0
				got = b""
				while time.monotonic() < end + 5:
					r, w, _ = select.select([c.sock], [c.sock], [], 0.5)
					if r:
						try:
							b = c.sock.recv(65536)
						except ConnectionResetError:
							# relayd closed with our garbage unread:
							# the kernel answers that with a reset
							b = b""
						if not b:
							break
						got += b
					if w and off < len(block):
						try:
							k = c.sock.send(block[off:off + 65536])
							off += k
							sent += k
						except BlockingIOError:
							pass
						except OSError:
							off = len(block)	# relayd hung up
				with lock:
					stats["sessions"] += 1
					stats["octets"] += sent
					last = got.rstrip(b"\r\n").split(b"\r\n")[-1]
					if last.startswith(b"421 4.7.0"):
						stats["closed_421"] += 1
					elif len(stats["bad"]) < 3:
						stats["bad"].append(got[-200:])
			except (AssertionError, OSError) as e:
				with lock:
					stats["bad"].append(str(e))
			finally:
				c.close()

	ths = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
	for th in ths:
		th.start()
	for th in ths:
		th.join(40)
	hwm = d.vm_hwm()
	summary = good.finish()
	print("pipelined garbage: %d sessions, %d kB sent, %d ended with 421 4.7.0; VmHWM %d kB "
	    "(+%d kB); %s" % (stats["sessions"], stats["octets"] // 1024, stats["closed_421"], hwm,
	    hwm - base, summary))
	assert not stats["bad"], "sessions that did not end with 421 4.7.0: %s" % stats["bad"]
	assert stats["sessions"] >= 8
	assert d.alive()
	assert hwm - base < HWM_SLACK_KB


test_pipelined_garbage_at_line_rate.timeout = 60
test_pipelined_garbage_at_line_rate.serial = True


def test_message_one_octet_over_max_in_one_write(t):
	"""max_message_size = 32 MB: a message of exactly that size, sent in
	one write with its final dot, is queued; one octet more gets 552
	5.3.4 and nothing is queued; memory stays flat (bodies go to disk)."""
	limit = 32 * MB
	d = t.daemon(max_message_size=limit)
	good = Bystander(d)
	base = d.vm_hwm()
	c = d.connect(timeout=60)
	c.hello()
	results = []
	for extra in (0, 1):
		head = b"Subject: size %d\r\n\r\n" % (limit + extra)
		line = b"m" * 996 + b"\r\n"	# under the 998-octet line limit: no break inserted
		body = line * ((limit + extra - len(head)) // len(line))
		rest = limit + extra - len(head) - len(body)
		text = head + body + (b"r" * (rest - 2) + b"\r\n" if rest >= 2 else b"r" * rest)
		assert len(text) == limit + extra, len(text)
		c.expect("MAIL FROM:<size@example.com>", 250)
		c.expect("RCPT TO:<b@example.net>", 250)
		c.expect("DATA", 354)
		c.send(text + (b"" if text.endswith(b"\r\n") else b"\r\n") + b".\r\n",
		    what="a message of max_message_size%s octets in one write" % (" + 1" if extra else ""))
		results.append(c.read_reply(timeout=60))
	hwm = d.vm_hwm()
	summary = good.finish()
	ok, over = results
	print("max_message_size: %s; + 1: %s; VmHWM %d kB (+%d kB); %s" % (ok, over, hwm, hwm - base,
	    summary))
	c.check(ok, 250, "2.0.0")
	c.check(over, 552, "5.3.4")
	assert d.count_log(r"from=<size@example\.com>") == 1, "the message over the limit was queued"
	assert hwm - base < HWM_SLACK_KB


test_message_one_octet_over_max_in_one_write.timeout = 120


def test_hundred_thousand_rcpts(t):
	"""100,000 RCPTs pipelined in one transaction: the first max_recipients
	(100) get 250 2.1.5, every other one 452 4.5.3; the message is then
	queued with 100 recipients; memory flat, a well-behaved client
	served meanwhile."""
	d = t.daemon()
	good = Bystander(d)
	base = d.vm_hwm()
	c = d.connect(timeout=30)
	c.hello()
	c.expect("MAIL FROM:<many@example.com>", 250)
	n = 100000
	cmds = b"".join(b"RCPT TO:<r%06d@example.net>\r\n" % i for i in range(n))
	err = []

	def writer():
		try:
			c.sock.sendall(cmds)
		except OSError as e:
			err.append(e)
	wt = threading.Thread(target=writer, daemon=True)
	t0 = time.monotonic()
	wt.start()
	replies = b""
	deadline = time.monotonic() + 60
	while replies.count(b"\r\n") < n and time.monotonic() < deadline:
		r, _, _ = select.select([c.sock], [], [], 1)
		if r:
			b = c.sock.recv(1 << 20)
			if not b:
				break
			replies += b
	wt.join(10)
	took = time.monotonic() - t0
	lines = replies.split(b"\r\n")[:-1]
	ok = sum(1 for l in lines if l.startswith(b"250 2.1.5"))
	full = sum(1 for l in lines if l.startswith(b"452 4.5.3"))
	assert not err, "sending the RCPTs failed: %s" % err
	assert len(lines) == n, "%d replies to %d RCPTs within 60 s" % (len(lines), n)
	assert (ok, full) == (100, n - 100), "%d accepted, %d refused 452 4.5.3, others: %s" % (
	    ok, full, [l for l in lines if not l.startswith((b"250 2.1.5", b"452 4.5.3"))][:3])
	c.expect("DATA", 354)
	c.send(b"Subject: many\r\n\r\nhello\r\n.\r\n")
	c.expect_reply(250, "2.0.0", timeout=30)
	d.wait_log(r"from=<many@example\.com>, size=\d+, nrcpt=100,")
	hwm = d.vm_hwm()
	summary = good.finish()
	print("100,000 RCPTs answered in %.1f s (100 accepted); VmHWM %d kB (+%d kB); %s" % (took, hwm,
	    hwm - base, summary))
	assert hwm - base < HWM_SLACK_KB


test_hundred_thousand_rcpts.timeout = 120
test_hundred_thousand_rcpts.serial = True
