"""Crash test under load (issue 14): relayd is killed with SIGKILL at random
moments while many clients send and an upstream takes, defers and refuses
mail; it is restarted each time.  At the end every message that got its
250 must have reached the upstream at least once (or, for a recipient the
upstream refused for good, its DSN must have), byte for byte as it was
sent and with a DKIM signature that verifies; duplicates are counted and
reported, never an error (a kill between the upstream's 250 and relayd
writing the recipient off must repeat the delivery).

The upstream defers every 4th RCPT and every 5th end of DATA (retry delay
1 s), refuses recipients named bounce-* (DSNs), and is slow to answer
every 7th end of DATA, so that kills land in every queue state: messages
being received, signed and committed (clients waiting for their 250),
delivered (upstream sessions open), waiting for a retry, and DSNs queued.
Before each kill `relayctl queue --json` and the test's own bookkeeping
say which of those states were populated; the totals are printed.

Sizes: RELAYD_CRASH_KILLS (default 30) kills, no more than
RELAYD_CRASH_SECONDS (default 45) of killing, RELAYD_CRASH_CLIENTS
(default 20) clients, each sending a message every RELAYD_CRASH_PACE
(default 0.1) s.  A long soak, e.g. RELAYD_CRASH_KILLS=400
RELAYD_CRASH_SECONDS=600 RELAYD_CRASH_PACE=0.3 RELAYD_TEST_TIMEOUT=1200
(README, Testing)."""

import base64
import hashlib
import json
import logging
import os
import random
import re
import threading
import time

from harness import SMTP, tcp_sockets, dot_stuff, queued_id
from relayutil import start_upstream
import dkim

from dkimutil import make_key, dkim_config

KILLS = int(os.environ.get("RELAYD_CRASH_KILLS", "30"))
SECONDS = float(os.environ.get("RELAYD_CRASH_SECONDS", "45"))
CLIENTS = int(os.environ.get("RELAYD_CRASH_CLIENTS", "20"))
PACE = float(os.environ.get("RELAYD_CRASH_PACE", "0.1"))	# s between one client's messages
MARK_RE = re.compile(rb"\r\nSubject: (CL\d+-\d+)\r\n")
ANY_MARK_RE = re.compile(rb"CL\d+-\d+")
LOG = logging.getLogger("t_relay_crash.dkim")
LOG.propagate = False
LOG.addHandler(logging.NullHandler())


def compose(marker):
	"""The recipient and text (unstuffed, CRLF) of message marker: mostly
	1-3 KB, one in ten 33-80 KB (its body spills to a file), some lines
	starting with a dot; every 13th to a recipient the upstream refuses."""
	rnd = random.Random(marker)
	n = int(marker.split("-")[1])
	rcpt = ("bounce-%s@example.net" % marker) if n % 13 == 5 else "r%d@example.net" % (n % 7)
	size = rnd.randint(33000, 80000) if rnd.random() < 0.1 else rnd.randint(1000, 3000)
	head = ("From: Crash Test <sender@example.com>\r\nTo: <%s>\r\nSubject: %s\r\n"
	    "Date: Sun, 6 Dec 2026 12:00:00 +0000\r\nMessage-ID: <%s@crash.test>\r\n\r\n" % (
	    rcpt, marker, marker)).encode()
	lines = []
	total = len(head)
	while total < size:
		w = rnd.randint(0, 76)
		line = (b"." if rnd.random() < 0.05 else b"") + \
		    bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(w))
		lines.append(line + b"\r\n")
		total += len(line) + 2
	return rcpt, head + b"".join(lines)


class Clients:
	"""CLIENTS threads submitting messages to whichever relayd is up; each
	message has a marker of its own, never sent twice."""

	def __init__(self, port):
		self.port = port
		self.lock = threading.Lock()
		self.sent = {}		# marker -> (len, sha256 of the text, bounce?): its
					# final dot was sent
		self.acked = {}		# the same, of those that got their 250
		self.unknown = set()	# final dot sent, no reply: may or may not arrive
		self.cut = set()	# begun, cut off before their final dot: must
					# never arrive
		self.refused = 0	# a reply other than 250 (none expected)
		self.after_dot = 0	# clients waiting for the reply to the final dot
		self.in_data = 0	# clients between DATA and that reply
		self.stopping = threading.Event()
		self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True)
		    for k in range(CLIENTS)]
		for th in self.threads:
			th.start()

	def send(self, c, marker, began):
		rcpt, text = compose(marker)
		c.expect("MAIL FROM:<sender@example.com>", 250)
		began[0] = True
		c.expect("RCPT TO:<%s>" % rcpt, 250)
		c.expect("DATA", 354)
		fp = (len(text), hashlib.sha256(text).digest(), rcpt.startswith("bounce-"))
		with self.lock:
			self.in_data += 1
		try:
			c.send(dot_stuff(text))
			with self.lock:
				self.after_dot += 1
				self.sent[marker] = fp
			try:
				c.send(b".\r\n")
				r = c.read_reply(timeout=30)
			finally:
				with self.lock:
					self.after_dot -= 1
		finally:
			with self.lock:
				self.in_data -= 1
		if r.code != 250:
			with self.lock:
				self.refused += 1
			raise AssertionError("%s: %s" % (marker, r))
		queued_id(c, r)
		with self.lock:
			self.acked[marker] = fp

	def run(self, k):
		rnd = random.Random(k)
		c = None
		i = 0
		while not self.stopping.is_set():
			marker = "CL%02d-%05d" % (k, i)
			i += 1
			began = [False]
			try:
				if c is None:
					c = SMTP("127.0.0.1", self.port, timeout=10)
					c.hello()
				self.send(c, marker, began)
				if rnd.random() < 0.3:
					c.expect("QUIT", 221)
					c.close()
					c = None
			except (AssertionError, OSError):
				with self.lock:
					if marker in self.sent and marker not in self.acked:
						self.unknown.add(marker)
					elif began[0] and marker not in self.sent:
						self.cut.add(marker)
				if c is not None:
					c.close()
				c = None
				self.stopping.wait(0.05)
			self.stopping.wait(PACE)
		if c is not None:
			c.close()

	def stop(self):
		self.stopping.set()
		for th in self.threads:
			th.join(60)


class Arrivals:
	"""What the upstream received, read from its record as it grows (so
	that a long soak need not read it all again), each copy checked
	against what was sent (byte for byte, and its DKIM signature) as soon
	as the test knows what that was."""

	def __init__(self, up, key, clients):
		self.up = up
		self.key = key
		self.clients = clients
		self.off = 0
		self.copies = {}	# marker -> accepted copies (relayd's mail)
		self.dsns = {}		# marker -> DSNs naming it
		self.pending = []	# (marker, text) not checked yet
		self.corrupted = []
		self.badsig = []
		self.lock = threading.Lock()
		self.stopping = threading.Event()
		self.th = threading.Thread(target=self.follow, daemon=True)
		self.th.start()

	def follow(self):
		"""Keeps up with the record meanwhile, so that the kills keep their
		pace and nothing piles up."""
		while not self.stopping.wait(0.5):
			self.read()

	def stop(self):
		self.stopping.set()
		self.th.join(120)

	def read(self):
		with self.lock:
			self._read()

	def _read(self):
		with open(self.up.record, "rb") as f:
			f.seek(self.off)
			data = f.read()
		end = data.rfind(b"\n") + 1
		self.off += end
		for line in data[:end].splitlines():
			if b'"ev": "message"' not in line:
				continue
			e = json.loads(line)
			if not e.get("accepted"):
				continue
			body = base64.b64decode(e["data_b64"])
			if e["mail_from"] == "":
				for m in set(ANY_MARK_RE.findall(body)):
					m = m.decode()
					self.dsns[m] = self.dsns.get(m, 0) + 1
				continue
			mm = MARK_RE.search(body)
			if mm:
				m = mm.group(1).decode()
				self.copies[m] = self.copies.get(m, 0) + 1
				self.pending.append((m, body))
		self.check()

	def check(self):
		with self.clients.lock:
			sent = dict(self.clients.sent)
		left = []
		for m, body in self.pending:
			if m not in sent:
				left.append((m, body))
				continue
			n, sha, _ = sent[m]
			if len(body) < n or hashlib.sha256(body[-n:]).digest() != sha:
				self.corrupted.append(m)
			if not self.signed(body):
				self.badsig.append(m)
		self.pending = left

	def signed(self, body):
		"""Whether body's DKIM signature verifies (python3-dkim, the key
		from memory; one logger for all, as a soak checks many)."""
		name = ("%s._domainkey.example.com" % self.key.selector).encode()

		def dnsfunc(q, timeout=5):
			return self.key.txt if q.rstrip(b".").lower() == name else None
		try:
			return bool(dkim.verify(body, logger=LOG, dnsfunc=dnsfunc))
		except dkim.DKIMException:
			return False

	def missing(self, acked):
		return sorted(m for m, (_, _, bounce) in acked.items()
		    if (self.dsns.get(m, 0) if bounce else self.copies.get(m, 0)) == 0)


def queue_states(t, conf):
	"""relayctl queue --json of the running relayd: (queued, waiting for a
	retry, DSNs queued), or None if it did not answer."""
	relayctl = os.path.join(os.path.dirname(t.relayd), "relayctl")
	try:
		rc, out, err = t.run([relayctl, "-f", conf.path, "queue", "--json"], timeout=5)
		q = json.loads(out) if rc == 0 else None
	except (AssertionError, ValueError, OSError):
		q = None
	if q is None:
		return None
	retry = sum(1 for m in q if any(r["attempts"] > 0 for r in m["recipients"]))
	dsn = sum(1 for m in q if m["sender"] == "")
	return len(q), retry, dsn


def test_kill9_while_relaying(t):
	key = make_key(t, "crash")
	up = start_upstream(t, script=[
	    {"cmd": "RCPT", "match": "bounce-", "reply": "550 5.1.1 No such user"},
	    {"cmd": "RCPT", "every": 4, "reply": "450 4.2.0 Try again later"},
	    {"cmd": "EOD", "every": 5, "reply": "451 4.3.0 Try again later"},
	    {"cmd": "EOD", "every": 7, "delay": 0.3}])
	conf = dkim_config(t, up, {"example.com": {"dkim": [key]}}, retry=(1000, 1))
	with open(conf.path) as f:
		text = f.read()
	with open(conf.path, "w") as f:
		f.write(text.replace('upstream "up" {', 'upstream "up" {\n\tmax_connections = 8', 1))
	d = t.start(conf)
	clients = Clients(conf.port)
	arrivals = Arrivals(up, key, clients)
	rnd = random.Random()
	kills = 0
	landed = {"receiving": 0, "signing/committing": 0, "delivering": 0, "retry waiting": 0,
	    "DSN queued": 0}
	t0 = time.monotonic()
	try:
		while kills < KILLS and time.monotonic() - t0 < SECONDS:
			time.sleep(rnd.uniform(0.3, 1.5))
			st = queue_states(t, conf)
			with clients.lock:
				receiving, committing = clients.in_data, clients.after_dot
			delivering = sum(1 for _ in tcp_sockets(up.port, "01"))
			d.kill9()
			kills += 1
			landed["receiving"] += receiving > 0
			landed["signing/committing"] += committing > 0
			landed["delivering"] += delivering > 0
			if st is not None:
				landed["retry waiting"] += st[1] > 0
				landed["DSN queued"] += st[2] > 0
			d = t.start(conf)
	finally:
		clients.stop()
		arrivals.stop()
	killing = time.monotonic() - t0
	acked = dict(clients.acked)
	assert clients.refused == 0, "%d submissions refused with a reply other than 250" % (
	    clients.refused)
	assert len(acked) > 100, "only %d messages acknowledged" % len(acked)

	deadline = time.monotonic() + 120
	while True:
		arrivals.read()
		missing = arrivals.missing(acked)
		if not missing or time.monotonic() > deadline or not d.alive():
			break
		time.sleep(1)
	time.sleep(2)		# anything still under way
	arrivals.read()
	missing = arrivals.missing(acked)
	corrupted = arrivals.corrupted
	partial = sorted(m for m in clients.cut if m in arrivals.copies or m in arrivals.dsns)
	dups = sum(n - 1 for n in arrivals.copies.values() if n > 1)
	dsn_dups = sum(n - 1 for n in arrivals.dsns.values() if n > 1)
	bounced = sum(1 for v in acked.values() if v[2])
	print("crash test: %d kills in %.0f s, %d clients; %d messages acknowledged (%d to refused "
	    "recipients, answered by DSN); %d cut off after their final dot, before the reply "
	    "(%d of them arrived), %d before it (none may arrive: %d did); lost: %d; duplicates: "
	    "%d messages (%d extra copies), %d DSNs duplicated; corrupted: %d; DKIM failures: %d" % (
	    kills, killing, CLIENTS, len(acked), bounced, len(clients.unknown),
	    sum(1 for m in clients.unknown if m in arrivals.copies or m in arrivals.dsns),
	    len(clients.cut), len(partial), len(missing),
	    sum(1 for n in arrivals.copies.values() if n > 1), dups, dsn_dups, len(corrupted),
	    len(arrivals.badsig)))
	print("kills that landed with: " + ", ".join("%s %d" % kv for kv in landed.items()))
	assert not missing, "%d acknowledged messages never arrived after %d kills, e.g. %s" % (
	    len(missing), kills, missing[:10])
	assert not partial, "%d messages cut off before their final dot arrived, e.g. %s" % (
	    len(partial), partial[:5])
	assert not corrupted, "%d messages arrived other than they were sent, e.g. %s" % (
	    len(corrupted), corrupted[:5])
	assert not arrivals.badsig, "%d messages arrived with a DKIM signature that fails, e.g. %s" % (
	    len(arrivals.badsig), arrivals.badsig[:5])
	assert d.alive(), "the last relayd died"


test_kill9_while_relaying.timeout = 300
test_kill9_while_relaying.serial = True
