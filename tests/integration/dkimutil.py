"""
dkimutil — tools for the DKIM signing tests (t_dkim.py).

What it is for: those tests need signing keys made at test time, relayd
configurations whose domain sections carry one or more dkim blocks (which
relayutil's section writer cannot express: it has one value per key), an
SMTP submission through Python's smtplib that reports the final reply
instead of raising, and an independent verifier (python3-dkim, fed the
public keys from a dictionary instead of DNS).

What it promises:
 - Keys are written with the openssl CLI into the test's directory, mode
   0600; nothing outside it is touched.  Every subprocess is bounded.
 - verify_all() checks every DKIM-Signature field of a message, one call
   of python3-dkim per signature, and says why one failed.
 - It only uses the harness's Ctx and relayutil's helpers; it changes
   neither.
"""

import logging
import os
import re
import smtplib
import subprocess
import time
import base64

import dkim

from harness import cfg_value

# the header fields the contract says are signed when present (lower case)
SIGNABLE = ["from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding",
    "list-unsubscribe", "list-unsubscribe-post"]

# ---------------------------------------------------------------------------
# keys

class Key:
	def __init__(self, selector, path, algorithm, txt):
		self.selector = selector
		self.path = path
		self.algorithm = algorithm	# "rsa-sha256" | "ed25519-sha256"
		self.txt = txt			# the DNS TXT record (bytes)

	def block(self):
		return {"selector": self.selector, "key_file": self.path, "algorithm": self.algorithm}


def _run(argv, timeout=60):
	r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
	if r.returncode != 0:
		raise AssertionError("%s failed (%d): %s" % (" ".join(argv), r.returncode,
		    r.stderr.decode("utf-8", "replace")))
	return r.stdout


def make_key(t, selector, algorithm="rsa-sha256", domain="example.com"):
	"""A private key file (PEM PKCS#8, as `openssl genpkey` writes it,
	mode 0600) in t.dir/keys/ and the TXT record that publishes it."""
	d = os.path.join(t.dir, "keys")
	os.makedirs(d, exist_ok=True)
	path = os.path.join(d, "%s.%s.key" % (domain, selector))
	if algorithm == "rsa-sha256":
		_run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
		    "-out", path])
	elif algorithm == "ed25519-sha256":
		_run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path])
	else:
		raise ValueError(algorithm)
	os.chmod(path, 0o600)
	with open(path, "rb") as f:
		pem = f.read()
	assert pem.startswith(b"-----BEGIN PRIVATE KEY-----"), "not PKCS#8: %r" % pem[:40]
	der = _run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"])
	if algorithm == "rsa-sha256":
		txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
	else:
		assert len(der) == 44, "Ed25519 SubjectPublicKeyInfo of %d bytes" % len(der)
		txt = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:])
	return Key(selector, path, algorithm, txt)


# ---------------------------------------------------------------------------
# configuration

def dkim_config(t, up, domains, retry=(3, 1), **top):
	"""Writes a relayd.conf (listen/spool/control as the harness makes them)
	with one upstream "up" pointing at up, and domain sections
	domains = {name: {"dkim": [Key, ...], "bcc": "...", ...}}; every
	section's upstream is "up".  Global retry: (attempts, seconds apart)."""
	lines = ["retry {", "\tattempts = %d" % retry[0], "\tdelay = %d" % retry[1], "\tbackoff = 1.0",
	    "\tmax_delay = 60", "}"]
	lines.append('upstream "up" {')
	for k, v in up.conf().items():
		lines.append("\t%s = %s" % (k, cfg_value(v)))
	lines.append("}")
	for name, s in domains.items():
		lines.append('domain "%s" {' % name)
		lines.append('\tupstream = "up"')
		for k, v in s.items():
			if k == "dkim":
				for key in v:
					lines.append("\tdkim {")
					for k2, v2 in key.block().items():
						lines.append("\t\t%s = %s" % (k2, cfg_value(v2)))
					lines.append("\t}")
			else:
				lines.append("\t%s = %s" % (k, cfg_value(v)))
		lines.append("}")
	return t.config(upstream=False, domains=(), extra="\n".join(lines) + "\n", **top)


# ---------------------------------------------------------------------------
# submission

QUEUED_RE = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Za-z]+)$")


class Sent:
	def __init__(self, code, text):
		self.code = code
		self.text = text
		m = QUEUED_RE.match(text) if code == 250 else None
		self.qid = m.group(1) if m else None

	def __repr__(self):
		return "%d %s" % (self.code, self.text)


def send(d, sender, rcpts, msg, mail_options=(), timeout=30):
	"""Submits msg (bytes, CRLF lines, not dot-stuffed: smtplib stuffs it)
	with smtplib; returns Sent (the reply to the end of DATA, or to
	whichever command failed first)."""
	s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test.example", timeout=timeout)
	try:
		s.ehlo()
		code, resp = s.mail(sender, list(mail_options))
		if code != 250:
			return Sent(code, resp.decode("utf-8", "replace"))
		for r in rcpts:
			code, resp = s.rcpt(r)
			if code not in (250, 251):
				return Sent(code, resp.decode("utf-8", "replace"))
		try:
			code, resp = s.data(msg)
		except smtplib.SMTPDataError as e:
			return Sent(e.smtp_code, e.smtp_error.decode("utf-8", "replace"))
		out = Sent(code, resp.decode("utf-8", "replace"))
		s.quit()
		return out
	finally:
		s.close()


def send_ok(d, sender, rcpts, msg, mail_options=()):
	r = send(d, sender, rcpts, msg, mail_options)
	assert r.qid, "expected '250 2.0.0 Ok: queued as <ID>', got %r" % r
	return r.qid


def message(headers, body=b"Hello.\r\n"):
	"""headers: list of (name, value) (value str or bytes; may contain
	folding) or raw bytes lines; returns the message bytes."""
	out = b""
	for h in headers:
		if isinstance(h, bytes):
			out += h if h.endswith(b"\r\n") else h + b"\r\n"
			continue
		name, value = h
		if isinstance(value, str):
			value = value.encode("utf-8")
		out += name.encode() + b": " + value + b"\r\n"
	return out + b"\r\n" + body


def wait_upstream(up, marker, n=1, timeout=20):
	"""The upstream's accepted messages whose text contains marker (bytes)."""
	return up.wait_messages(n, timeout=timeout, pred=lambda m: marker in m["data"])


def wait_from_line(d, qid, timeout=10):
	"""Waits for qid's from= line; returns (sender, size, nrcpt, dkim)."""
	m = d.wait_log(r"%s: from=<([^>]*)>, size=(\d+), nrcpt=(\d+), dkim=([A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*)(?:, |\s*$)"
	    % qid, timeout=timeout)
	return m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)


# ---------------------------------------------------------------------------
# reading and verifying

def split_message(data):
	i = data.find(b"\r\n\r\n")
	if i < 0:
		return data, b""
	return data[:i + 2], data[i + 4:]


def header_fields(data):
	"""[(name, raw field bytes with folding and final CRLF)] in order."""
	head, _ = split_message(data)
	fields = []
	for line in head.split(b"\r\n")[:-1]:
		if line[:1] in (b" ", b"\t") and fields:
			fields[-1][1] += line + b"\r\n"
		else:
			fields.append([line.split(b":", 1)[0].decode("latin-1"), line + b"\r\n"])
	return [(n, v) for n, v in fields]


def field_values(data, name):
	"""Unfolded values of the fields called name (case-insensitive), str."""
	out = []
	for n, raw in header_fields(data):
		if n.lower() == name.lower():
			v = raw.split(b":", 1)[1].replace(b"\r\n", b"")
			out.append(v.decode("utf-8", "replace").strip())
	return out


def sig_tags(data):
	"""The tags of each DKIM-Signature field, top to bottom: a list of
	dicts (tag -> value with whitespace removed)."""
	out = []
	for v in field_values(data, "DKIM-Signature"):
		tags = {}
		for part in v.split(";"):
			if not part.strip():
				continue
			k, _, val = part.partition("=")
			tags[k.strip()] = re.sub(r"\s+", "", val)
		out.append(tags)
	return out


class _Collect(logging.Handler):
	def __init__(self):
		super().__init__(logging.DEBUG)
		self.lines = []

	def emit(self, record):
		self.lines.append(record.getMessage())


def verify_all(data, keys, domain="example.com"):
	"""Verifies every DKIM-Signature of data with python3-dkim, the public
	keys coming from keys (a list of Key) published under domain.
	Returns a list of (ok, selector, why), one per signature, top first."""
	zone = {("%s._domainkey.%s" % (k.selector, domain)).encode(): k.txt for k in keys}
	lookups = []

	def dnsfunc(name, timeout=5):
		if isinstance(name, str):
			name = name.encode()
		name = name.rstrip(b".").lower()
		lookups.append(name)
		return zone.get(name)

	results = []
	for i, tags in enumerate(sig_tags(data)):
		lg = logging.getLogger("dkimutil.verify.%d.%f" % (i, time.monotonic()))
		lg.propagate = False
		h = _Collect()
		lg.addHandler(h)
		lg.setLevel(logging.DEBUG)
		try:
			ok = bool(dkim.DKIM(data, logger=lg).verify(idx=i, dnsfunc=dnsfunc))
			why = "; ".join(l for l in h.lines if not l.startswith("sig:"))[-400:]
		except dkim.DKIMException as e:
			ok = False
			why = "%s: %s" % (type(e).__name__, e)
		results.append((ok, tags.get("s"), why))
	return results


def assert_verifies(data, keys, want_selectors, domain="example.com", what="message"):
	"""All signatures verify and their selectors, top to bottom, are
	want_selectors."""
	res = verify_all(data, keys, domain)
	sels = [s for _, s, _ in res]
	assert sels == list(want_selectors), "%s: expected DKIM-Signature selectors %s, got %s; header:\n%s" % (
	    what, list(want_selectors), sels, split_message(data)[0].decode("utf-8", "replace")[:3000])
	bad = [(s, why) for ok, s, why in res if not ok]
	assert not bad, "%s: signature(s) did not verify: %s\nheader:\n%s" % (what, bad,
	    split_message(data)[0].decode("utf-8", "replace")[:3000])
	return res


def assert_fails(data, keys, domain="example.com", what="altered message"):
	"""Every signature of data fails to verify (there is at least one)."""
	res = verify_all(data, keys, domain)
	assert res, "%s: no DKIM-Signature at all" % what
	good = [s for ok, s, _ in res if ok]
	assert not good, "%s: signature(s) %s still verify" % (what, good)


def alter_body(data):
	"""data with one body byte changed (a letter or digit; an empty body
	gets one letter added)."""
	head, body = split_message(data)
	m = re.search(rb"[A-Za-z0-9]", body)
	if m is None:
		nb = b"x\r\n" + body
	else:
		i = m.start()
		c = body[i:i + 1]
		nb = body[:i] + (b"Q" if c != b"Q" else b"R") + body[i + 1:]
	out = head + b"\r\n" + nb
	assert out != data
	return out


def alter_header(data, name):
	"""data with one character of the first name: field's value changed."""
	head, body = split_message(data)
	m = re.search(rb"(?im)^" + re.escape(name.encode()) + rb":[ \t]*[^A-Za-z0-9\r]*([A-Za-z0-9])", head)
	assert m, "no %s: field to alter" % name
	i = m.start(1)
	c = head[i:i + 1]
	head = head[:i] + (b"Q" if c != b"Q" else b"R") + head[i + 1:]
	return head + b"\r\n" + body
