"""
relayutil — tools for relayd's relaying tests (t_relay_*.py).

What it is for: the tests of the relaying half need upstream SMTP servers
(upstream.py, run as separate processes), a test CA made at test time,
relayd configurations with upstream and domain sections, a DNS server on
loopback, and readers for relayd's delivery log lines and for DSNs.

What it promises:
 - Everything it starts is started through the harness's Ctx (so it is
   recorded by PID and stopped by PID), binds only loopback addresses, and
   every wait is bounded.
 - It does not change harness.py's behaviour; it only uses its Ctx.
"""

import base64
import email
import email.policy
import json
import os
import random
import re
import socket
import struct
import subprocess
import threading
import time

from harness import cfg_value

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
UPSTREAM_PY = os.path.join(HERE, "upstream.py")

# ---------------------------------------------------------------------------
# test CA

class Certs:
	"""Files of a test CA made with the openssl CLI: ca (cert), and for
	each server name a (cert, key) pair."""

	def __init__(self, d):
		self.dir = d
		self.ca = os.path.join(d, "ca.pem")
		self.ca_key = os.path.join(d, "ca.key")

	def pair(self, name):
		return (os.path.join(self.dir, name + ".pem"), os.path.join(self.dir, name + ".key"))


def _openssl(args, cwd):
	r = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE,
	    stderr=subprocess.STDOUT, timeout=60)
	if r.returncode != 0:
		raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stdout.decode()))


def make_ca(t, names=(("localhost", "DNS:localhost,IP:127.0.0.1"),
    ("wrong.example", "DNS:wrong.example"))):
	"""Makes a CA and one server certificate per (name, subjectAltName) in
	t.dir/ca/.  Keys are EC P-256 (fast).  Returns Certs."""
	d = os.path.join(t.dir, "ca")
	os.makedirs(d, exist_ok=True)
	c = Certs(d)
	ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
	_openssl(["req", "-x509"] + ec + ["-keyout", c.ca_key, "-out", c.ca, "-days", "2",
	    "-subj", "/CN=relayd test CA %d" % os.getpid(),
	    "-addext", "basicConstraints=critical,CA:TRUE",
	    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
	for name, san in names:
		cert, key = c.pair(name)
		csr = os.path.join(d, name + ".csr")
		ext = os.path.join(d, name + ".ext")
		with open(ext, "w") as f:
			f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
			    "keyUsage=critical,digitalSignature,keyEncipherment\n"
			    "extendedKeyUsage=serverAuth\n" % san)
		_openssl(["req"] + ec + ["-keyout", key, "-out", csr, "-subj", "/CN=" + name], d)
		_openssl(["x509", "-req", "-in", csr, "-CA", c.ca, "-CAkey", c.ca_key,
		    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext], d)
	return c


# ---------------------------------------------------------------------------
# upstream servers

def read_jsonl(path):
	"""The objects of a JSON-lines file another process writes: whole
	lines only (a last line being written is left for later)."""
	out = []
	try:
		with open(path) as f:
			for line in f:
				if not line.endswith("\n"):
					break		# being written
				out.append(json.loads(line))
	except FileNotFoundError:
		pass
	return out


class Helper:
	"""A helper process started through the harness (upstream.py, the token
	endpoint of oauthutil.py): what it printed, and stopping it by PID."""

	def __init__(self, t, proc, port, logpath):
		self.t = t
		self.proc = proc
		self.pid = proc.pid
		self.port = port
		self.logpath = logpath

	def output(self):
		try:
			with open(self.logpath, "rb") as f:
				return f.read().decode("utf-8", "replace")[-3000:]
		except OSError:
			return ""

	def stop(self):
		if self.proc.poll() is None:
			self.proc.terminate()
			try:
				self.proc.wait(10)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait(5)


class Upstream(Helper):
	"""A running upstream.py and what it recorded."""

	def __init__(self, t, name, proc, record, port, tls, logpath):
		super().__init__(t, proc, port, logpath)
		self.name = name
		self.record = record
		self.tls = tls

	def events(self, ev=None):
		return [e for e in read_jsonl(self.record) if ev is None or e["ev"] == ev]

	def messages(self, accepted=True):
		"""Messages received (accepted ones by default), each with "data" (bytes)."""
		out = []
		for e in self.events("message"):
			if accepted is not None and e.get("accepted") != accepted:
				continue
			e["data"] = base64.b64decode(e["data_b64"])
			out.append(e)
		return out

	def cmds(self, cmd=None, conn=None):
		return [e for e in self.events("cmd") if (cmd is None or e["cmd"] == cmd) and
		    (conn is None or e["conn"] == conn)]

	def conns(self):
		"""conn id -> its events in order."""
		out = {}
		for e in self.events():
			if "conn" in e and e["conn"] is not None:
				out.setdefault(e["conn"], []).append(e)
		return out

	def max_open(self):
		"""Most connections open at once, from connect/disconnect events."""
		n = best = 0
		for e in self.events():
			if e["ev"] == "connect":
				n += 1
				best = max(best, n)
			elif e["ev"] == "disconnect":
				n -= 1
		return best

	def wait(self, pred, what, timeout=20):
		"""Waits until pred(self) is truthy; returns its value."""
		deadline = time.monotonic() + timeout
		while True:
			v = pred(self)
			if v:
				return v
			if time.monotonic() > deadline:
				raise AssertionError("upstream %s: %s not seen within %gs; it saw:\n%s" %
				    (self.name, what, timeout, self.summary()))
			if self.proc.poll() is not None:
				raise AssertionError("upstream %s exited (%s); its output:\n%s" %
				    (self.name, self.proc.returncode, self.output()))
			time.sleep(0.05)

	def wait_messages(self, n=1, timeout=20, pred=None):
		"""Waits for n accepted messages (matching pred); returns them."""
		def got(u):
			ms = [m for m in u.messages() if pred is None or pred(m)]
			return ms if len(ms) >= n else None
		return self.wait(got, "%d accepted message(s)" % n, timeout)

	def quiet_for(self, seconds, ev="cmd"):
		"""Sleeps seconds and returns the events of kind ev seen meanwhile."""
		before = len(self.events(ev))
		time.sleep(seconds)
		return self.events(ev)[before:]

	def summary(self, n=40):
		lines = []
		for e in self.events()[-n:]:
			if e["ev"] == "cmd":
				lines.append("  #%s %s %s%s" % (e["conn"], e["cmd"], e.get("arg") or "",
				    " (TLS)" if e.get("tls") else ""))
			elif e["ev"] == "reply":
				lines.append("  #%s   -> %s" % (e["conn"], e["line"]))
			elif e["ev"] == "message":
				lines.append("  #%s message from=<%s> to=%s %d bytes accepted=%s" % (e["conn"],
				    e["mail_from"], e["rcpt_tos"], e["size"], e.get("accepted")))
			else:
				lines.append("  #%s %s %s" % (e.get("conn"), e["ev"],
				    {k: v for k, v in e.items() if k not in ("ev", "t", "conn")}))
		return "\n".join(lines) or "  (nothing)"

	def conf(self, **kw):
		"""Settings of an upstream section that points at this server."""
		s = {"host": "127.0.0.1", "port": self.port,
		    "tls": {"none": "none", "starttls": "starttls", "implicit": "tls"}[self.tls]}
		s.update(kw)
		return s


def start_upstream(t, name="up", tls="none", certs=None, cert_name="localhost",
    auth=None, user="relayuser", password="s3cret-Pa55", auth_require_tls=False,
    auth_required=False, ext="PIPELINING,8BITMIME,ENHANCEDSTATUSCODES", script=None,
    host="127.0.0.1", port=0, tls_max_version=None, no_advertise_starttls=False, tokens=None):
	"""Starts upstream.py; returns an Upstream once it listens.
	tokens: with auth="XOAUTH2", the token endpoint's tokens.json
	(oauthutil.Endpoint.tokens_path): the tokens AUTH XOAUTH2 accepts.
	script: a list of rules (see upstream.py) or a dict {"rules": [...]}.
	ext: a comma-separated string or a list of EHLO extensions."""
	d = os.path.join(t.dir, "upstream-" + name)
	k = 1
	while os.path.exists(d):	# a second server of that name in one test
		k += 1
		d = os.path.join(t.dir, "upstream-%s-%d" % (name, k))
	os.makedirs(d)
	record = os.path.join(d, "record.jsonl")
	ready = os.path.join(d, "ready.json")
	logpath = os.path.join(d, "output.log")
	if isinstance(ext, (list, tuple)):
		ext = ",".join(ext)
	argv = [PYTHON, UPSTREAM_PY, "--host", host, "--port", str(port), "--record", record,
	    "--ready-file", ready, "--tls", tls, "--ext", ext, "--hostname", name + ".upstream.test"]
	if tls != "none":
		cert, key = certs.pair(cert_name)
		argv += ["--cert", cert, "--key", key]
	if tls_max_version:
		argv += ["--tls-max-version", tls_max_version]
	if no_advertise_starttls:
		argv.append("--no-advertise-starttls")
	if auth:
		argv += ["--auth", auth, "--user", user, "--password", password]
	if tokens:
		argv += ["--tokens", tokens]
	if auth_require_tls:
		argv.append("--auth-require-tls")
	if auth_required:
		argv.append("--auth-required")
	if os.environ.get("RELAYD_UPSTREAM_TRACE"):
		argv.append("--trace")
	if script is not None:
		if isinstance(script, list):
			script = {"rules": script}
		sp = os.path.join(d, "script.json")
		with open(sp, "w") as f:
			json.dump(script, f)
		argv += ["--script", "@" + sp]
	logf = open(logpath, "wb")
	env = dict(os.environ)
	env["PYTHONDONTWRITEBYTECODE"] = "1"
	proc = t.spawn(argv, stdout=logf, stderr=subprocess.STDOUT, env=env)
	logf.close()
	deadline = time.monotonic() + 15
	while not os.path.exists(ready):
		if proc.poll() is not None:
			with open(logpath, "rb") as f:
				raise AssertionError("upstream %s exited with %s before listening:\n%s" %
				    (name, proc.returncode, f.read().decode("utf-8", "replace")[-2000:]))
		if time.monotonic() > deadline:
			raise AssertionError("upstream %s not ready within 15s" % name)
		time.sleep(0.03)
	with open(ready) as f:
		info = json.load(f)
	return Upstream(t, name, proc, record, info["port"], tls, logpath)


def free_port_unused(t):
	"""A loopback port nothing listens on (for connection refused)."""
	return t.free_port()


# ---------------------------------------------------------------------------
# relayd configuration

def write_secret(t, name, secret, mode=0o600):
	path = os.path.join(t.dir, name)
	fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
	with os.fdopen(fd, "w") as f:
		f.write(secret + "\n")
	os.chmod(path, mode)
	return path


def _section(kind, title, settings, indent="\t"):
	lines = ['%s "%s" {' % (kind, title)]
	for k, v in settings.items():
		if v is None:
			continue
		if isinstance(v, dict):
			lines.append("%s%s {" % (indent, k))
			for k2, v2 in v.items():
				lines.append("%s\t%s = %s" % (indent, k2, cfg_value(v2)))
			lines.append(indent + "}")
		else:
			lines.append("%s%s = %s" % (indent, k, cfg_value(v)))
	lines.append("}")
	return lines


def relay_config(t, upstreams, domains, retry=None, **top):
	"""Writes a relayd.conf through t.config (so listen/spool/control are the
	harness's) with these sections.
	upstreams: {name: {key: value}} (see Upstream.conf; a dict value is a
	subsection such as retry); domains: {domain: upstream name} or
	{domain: {key: value}}; retry: the global retry section; top: other
	top-level keys.  Default global retry: 3 attempts, 1 s apart."""
	if retry is None:
		retry = {"attempts": 3, "delay": 1, "backoff": 1.0, "max_delay": 60}
	lines = []
	if retry:
		lines.append("retry {")
		for k, v in retry.items():
			lines.append("\t%s = %s" % (k, cfg_value(v)))
		lines.append("}")
	for name, s in upstreams.items():
		lines += _section("upstream", name, s)
	for dom, v in domains.items():
		lines += _section("domain", dom, {"upstream": v} if isinstance(v, str) else v)
	return t.config(upstream=False, domains=(), extra="\n".join(lines) + "\n", **top)


def simple_relay(t, up=None, upconf=None, domains=("example.com",), retry=None, args=(), **top):
	"""One upstream "up" (started here unless given), the given sender
	domains routed to it, relayd started.  Returns (daemon, upstream)."""
	if up is None:
		up = start_upstream(t)
	conf = relay_config(t, {"up": up.conf(**(upconf or {}))}, {d: "up" for d in domains},
	    retry=retry, **top)
	d = t.start(conf, args=args)
	return d, up


def submit(d, sender="sender@example.com", rcpts=("rcpt@example.net",), body=None,
    subject="relay test", extra_headers="", mail_opts=""):
	"""Sends one message to relayd; returns its queue id."""
	if body is None:
		body = "This is a test.\r\n"
	if isinstance(body, str):
		body = body.encode()
	msg = ("From: <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s.%d@test>\r\n%s\r\n" % (
	    sender or "nobody@example.com", ", ".join("<%s>" % r for r in rcpts), subject,
	    "".join(random.choice("abcdefghij") for _ in range(12)), os.getpid(),
	    extra_headers)).encode("utf-8") + body
	c = d.connect()
	try:
		c.hello()
		if mail_opts:
			c.expect("MAIL FROM:<%s> %s" % (sender, mail_opts), 250)
			for r in rcpts:
				c.expect("RCPT TO:<%s>" % r, 250)
			c.expect("DATA", 354)
			from harness import dot_stuff, queued_id
			c.send(dot_stuff(msg) + b".\r\n")
			qid = queued_id(c, c.read_reply(timeout=30))
		else:
			qid = c.send_message(sender, list(rcpts), msg)
		c.expect("QUIT", 221)
	finally:
		c.close()
	return qid


# ---------------------------------------------------------------------------
# relayd's delivery log lines

DELIVERY_RE = re.compile(
    r"(?P<id>[0-9A-Za-z]+): to=<(?P<to>[^>]*)>, (?P<fields>.*?)"
    r"status=(?P<status>sent|deferred|bounced) \((?P<reason>.*)\)"
    r"(?P<tail>(?:, [a-z_]+=[^,()]*)*)\s*$", re.M)
FIELD_RE = re.compile(r"([a-z_]+)=([^,]*)(?:, |$)")


def parse_delivery(line):
	"""One delivery log line -> dict (id, to, relay, attempt, attempts,
	delay, dsn, status, reason, next, line), or None."""
	m = DELIVERY_RE.search(line)
	if not m:
		return None
	r = {"id": m.group("id"), "to": m.group("to"), "status": m.group("status"),
	    "reason": m.group("reason"), "line": m.group(0)}
	for k, v in FIELD_RE.findall(m.group("fields") + m.group("tail").lstrip(", ")):
		r[k] = v.strip()
	if "attempt" in r:
		k, _, n = r["attempt"].partition("/")
		r["attempt"], r["attempts"] = int(k), int(n) if n else None
	if "next" in r:
		r["next"] = int(r["next"].rstrip("s"))
	if "delay" in r:
		r["delay"] = float(r["delay"])
	return r


def deliveries(d, qid=None, to=None, status=None):
	out = []
	for line in d.log().splitlines():
		r = parse_delivery(line)
		if r is None:
			continue
		if (qid is None or r["id"] == qid) and (to is None or r["to"] == to) and \
		    (status is None or r["status"] == status):
			out.append(r)
	return out


def wait_delivery(d, qid, to=None, status=None, count=1, timeout=20):
	"""Waits for the count-th delivery line of qid (to, status); returns it
	parsed.  Fails at once, with what was seen, if the recipient reached a
	final status other than the one awaited."""
	deadline = time.monotonic() + timeout
	while True:
		ds = deliveries(d, qid, to)
		want = [r for r in ds if status is None or r["status"] == status]
		if len(want) >= count:
			print("log: " + want[count - 1]["line"])	# shown by run -v
			return want[count - 1]
		final = [r for r in ds if r["status"] in ("sent", "bounced") and r["status"] != status]
		if status is not None and final:
			raise AssertionError("%s to=<%s>: expected status=%s%s, got:\n%s" % (qid, to,
			    status, " (x%d)" % count if count > 1 else "",
			    "\n".join(r["line"] for r in ds)))
		if time.monotonic() > deadline or not d.alive():
			raise AssertionError("%s to=<%s> status=%s (x%d) not logged within %gs; "
			    "lines for it:\n%s\nlog tail:\n%s" % (qid, to, status, count, timeout,
			    "\n".join(r["line"] for r in ds) or "(none)", d.log_tail()))
		time.sleep(0.05)


def expect_fields(r, **want):
	"""Asserts fields of a parsed delivery line; values may be compiled
	regexes or callables."""
	for k, v in want.items():
		got = r.get(k)
		if hasattr(v, "search"):
			ok = got is not None and v.search(str(got)) is not None
		elif callable(v):
			ok = v(got)
		else:
			ok = got == v
		if not ok:
			raise AssertionError("%s: expected %s=%r, got %r in:\n%s" % (r["id"], k,
			    getattr(v, "pattern", v), got, r["line"]))


# ---------------------------------------------------------------------------
# DSNs

def parse_dsn(data):
	"""A DSN (bytes) -> dict: msg (email.message.Message), report_type,
	parts (content types), text (the human part), per_message (dict,
	lower-case keys), recipients (list of dicts), headers (the returned
	header block, text)."""
	msg = email.message_from_bytes(data, policy=email.policy.compat32)
	out = {"msg": msg, "content_type": msg.get_content_type(),
	    "report_type": msg.get_param("report-type"), "parts": [], "text": "",
	    "per_message": {}, "recipients": [], "headers": None}
	if not msg.is_multipart():
		return out
	parts = msg.get_payload()
	out["parts"] = [p.get_content_type() for p in parts]
	for p in parts:
		ct = p.get_content_type()
		if ct == "text/plain" and not out["text"]:
			out["text"] = (p.get_payload(decode=True) or b"").decode("utf-8", "replace")
		elif ct in ("message/delivery-status", "message/global-delivery-status"):
			blocks = _status_blocks(p)
			if blocks:
				out["per_message"] = blocks[0]
				out["recipients"] = blocks[1:]
		elif ct in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers",
		    "message/rfc822"):
			pl = p.get_payload()
			if isinstance(pl, list):
				out["headers"] = "".join(str(x) for x in pl)
			else:
				out["headers"] = (p.get_payload(decode=True) or b"").decode("utf-8", "replace")
	return out


def _status_blocks(part):
	"""The field groups of a delivery-status part, as dicts."""
	pl = part.get_payload()
	if isinstance(pl, list):
		return [{k.lower(): " ".join(v.split()) for k, v in m.items()} for m in pl]
	text = pl if isinstance(pl, str) else ""
	blocks = []
	for chunk in re.split(r"\r?\n\r?\n", text.strip()):
		m = email.message_from_string(chunk + "\n\n")
		blocks.append({k.lower(): " ".join(v.split()) for k, v in m.items()})
	return blocks


def dsn_messages(up):
	"""The upstream's accepted messages with a null sender."""
	return [m for m in up.messages() if m["mail_from"] == ""]


# ---------------------------------------------------------------------------
# DNS on loopback

class DNSServer:
	"""A tiny authoritative UDP DNS responder on 127.x.y.z:53 (a port
	relayd's resolver can be told about with a plain resolv.conf), in a
	thread of the test process.
	zone: {name: {"A": [...], "AAAA": [...]}} or {name: "NXDOMAIN" |
	"SERVFAIL" | "DROP"}; names not in the zone get NXDOMAIN (default
	can be changed)."""

	RCODES = {"NOERROR": 0, "SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}

	def __init__(self, zone, default="NXDOMAIN"):
		self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
		self.default = default
		self.queries = []
		self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
		for _ in range(20):
			self.ip = "127.53.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
			try:
				self.sock.bind((self.ip, 53))
				self.port = 53
				break
			except OSError:
				continue
		else:
			self.ip = "127.0.0.1"
			self.sock.bind((self.ip, 0))
			self.port = self.sock.getsockname()[1]
		self.sock.settimeout(0.2)
		self.stopping = False
		self.thread = threading.Thread(target=self.run, daemon=True)
		self.thread.start()

	def resolv_conf(self, t, name="resolv.conf"):
		path = os.path.join(t.dir, name)
		ns = self.ip if self.port == 53 else "%s:%d" % (self.ip, self.port)
		with open(path, "w") as f:
			f.write("nameserver %s\noptions timeout:1 attempts:1\n" % ns)
		return path

	def use(self, t):
		"""Writes the resolv.conf and points relayd at it (environment of
		processes started after this)."""
		os.environ["RELAYD_RESOLV_CONF"] = self.resolv_conf(t)

	def stop(self):
		self.stopping = True
		self.thread.join(2)
		self.sock.close()

	def run(self):
		while not self.stopping:
			try:
				pkt, addr = self.sock.recvfrom(4096)
			except socket.timeout:
				continue
			except OSError:
				return
			try:
				resp = self.answer(pkt)
			except Exception:
				continue
			if resp is not None:
				self.sock.sendto(resp, addr)

	def answer(self, pkt):
		qid, flags, qd = struct.unpack(">HHH", pkt[:6])
		pos = 12
		labels = []
		while pkt[pos]:
			n = pkt[pos]
			labels.append(pkt[pos + 1:pos + 1 + n].decode("ascii", "replace"))
			pos += 1 + n
		pos += 1
		qtype, qclass = struct.unpack(">HH", pkt[pos:pos + 4])
		question = pkt[12:pos + 4]
		name = ".".join(labels).lower()
		tname = {1: "A", 28: "AAAA", 15: "MX", 16: "TXT"}.get(qtype, str(qtype))
		self.queries.append((name, tname))
		entry = self.zone.get(name, self.default)
		rrs = []
		rcode = 0
		if isinstance(entry, str):
			if entry == "DROP":
				return None
			rcode = self.RCODES[entry]
		else:
			for v in entry.get(tname, []):
				if tname == "A":
					rdata = socket.inet_pton(socket.AF_INET, v)
				elif tname == "AAAA":
					rdata = socket.inet_pton(socket.AF_INET6, v)
				else:
					continue
				rrs.append(struct.pack(">HHHIH", 0xC00C, qtype, 1, 30, len(rdata)) + rdata)
		rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
		return struct.pack(">HHHHHH", qid, rflags, 1, len(rrs), 0, 0) + question + b"".join(rrs)


# ---------------------------------------------------------------------------
# small things

def header_block(data):
	"""The header block of a message (bytes, up to the empty line)."""
	i = data.find(b"\r\n\r\n")
	return data if i < 0 else data[:i + 2]


def bare_line_ends(data):
	"""Number of LF not preceded by CR plus CR not followed by LF."""
	return len(re.findall(rb"(?<!\r)\n", data)) + len(re.findall(rb"\r(?!\n)", data))


def mail_params(mail_cmd_arg):
	"""'FROM:<a@b> SIZE=10 BODY=8BITMIME' -> {"SIZE": "10", "BODY": "8BITMIME"}."""
	rest = mail_cmd_arg.split(">", 1)[1] if ">" in mail_cmd_arg else ""
	out = {}
	for p in rest.split():
		k, _, v = p.partition("=")
		out[k.upper()] = v
	return out
