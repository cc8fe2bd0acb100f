"""The ordinary SMTP dialogue: greeting, EHLO, the simple commands, and a
message through Python's smtplib, with its log lines and spool bytes."""

import re
import smtplib

from harness import HOSTNAME, QID_RE, QUEUED_RE


def test_greeting_and_ehlo_keywords(t):
	d = t.daemon(max_message_size=1000000)
	c = d.connect()
	g = c.greeting()
	assert g.raw == ("220 %s ESMTP relayd\r\n" % HOSTNAME).encode(), "greeting: %s" % g
	r = c.ehlo()
	assert len(r.lines) >= 2, "EHLO reply has no extension lines: %s" % r
	kw = [l.upper() for l in r.lines[1:]]
	for want in ("PIPELINING", "SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"):
		assert want in kw, "EHLO does not advertise %r: %s" % (want, r)
	# HELO works too (and EHLO may be repeated: it resets the session)
	c.expect("HELO client.test.example", 250)
	c.expect("EHLO again.test.example", 250)
	c.expect("QUIT", 221, "2.0.0")
	assert c.wait_closed(5), "connection still open after 221"


def test_simple_commands(t):
	d = t.daemon()
	c = d.connect()
	c.hello()
	c.expect("NOOP", 250, "2.0.0")
	c.expect("RSET", 250, "2.0.0")
	c.expect("VRFY postmaster", 252)
	c.expect("HELP", 214)
	c.expect("noop", 250, "2.0.0")		# commands are case-insensitive
	c.expect("QUIT", 221, "2.0.0")
	assert c.wait_closed(5), "connection still open after 221"


def test_enhanced_codes_on_every_reply(t):
	"""RFC 2034: after ENHANCEDSTATUSCODES every reply line except the
	greeting and the EHLO/HELO replies carries a status code."""
	d = t.daemon(max_recipients=2)
	c = d.connect()
	c.hello()
	script = ["NOOP", "VRFY x", "HELP", "RSET", "BOGUS", "RCPT TO:<a@example.net>", "DATA",
	    "MAIL FROM:<post@@mab.no>", "MAIL FROM:<a@example.com>", "MAIL FROM:<a@example.com>",
	    "RCPT TO:<post.bleken.no>", "RCPT TO:<r1@example.net>", "RCPT TO:<r2@example.net>",
	    "RCPT TO:<r3@example.net>", "RSET", "MAIL FROM:<a@unconfigured.example.org>"]
	bad = []
	for line in script:
		r = c.cmd(line)
		for l in r.lines:
			if not re.match(r"^[245]\.\d{1,3}\.\d{1,3}( |$)", l):
				bad.append("%s -> %s" % (line, r))
				break
		if r.enh and r.enh[0] != str(r.code)[0]:
			bad.append("%s -> class mismatch %s" % (line, r))
	c.expect("DATA", 503)	# not a transaction: nothing to send
	r = c.cmd("QUIT")
	if not r.enh:
		bad.append("QUIT -> %s" % r)
	assert not bad, "replies without a (matching) enhanced status code: " + "; ".join(bad)


def test_smtplib_message_logged_and_spooled(t):
	d = t.daemon()
	body = ("From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
	    "Subject: smtplib test MARK-smtplib-1\r\n\r\nHello Bob.\r\nLine two MARK-body-end\r\n")
	with smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test.example", timeout=10) as s:
		lport = s.sock.getsockname()[1]
		code, msg = s.ehlo()
		assert code == 250, "EHLO: %d %r" % (code, msg)
		assert s.has_extn("pipelining") and s.has_extn("size"), "extensions: %r" % s.esmtp_features
		code, msg = s.mail("alice@example.com")
		assert (code, msg[:5]) == (250, b"2.1.0"), "MAIL: %d %r" % (code, msg)
		for r in ("bob@example.net", "carol@example.net"):
			code, msg = s.rcpt(r)
			assert (code, msg[:5]) == (250, b"2.1.5"), "RCPT %s: %d %r" % (r, code, msg)
		code, msg = s.data(body.encode())
		m = QUEUED_RE.match(msg.decode())
		assert code == 250 and m, "end of DATA: %d %r" % (code, msg)
		qid = m.group(1)
	m = d.wait_log(r"%s: client=(\S*)\[127\.0\.0\.1\]:(\d+)" % qid)
	assert int(m.group(2)) == lport, "client= port %s, ours was %d" % (m.group(2), lport)
	m = d.wait_log(r"%s: from=<alice@example\.com>, size=(\d+), nrcpt=(\d+), dkim=none" % qid)
	size, nrcpt = int(m.group(1)), int(m.group(2))
	assert nrcpt == 2, "nrcpt=%d, sent 2 recipients" % nrcpt
	assert len(body) <= size <= len(body) + 2000, "size=%d for a %d-octet message" % (size, len(body))
	spool = t.spool_bytes(d.conf)
	assert body.encode() in spool, "message text not found verbatim in the spool's *.seg files"


def test_smtplib_sendmail_many(t):
	"""Ten messages over one smtplib connection, each with its own id."""
	d = t.daemon()
	ids = []
	with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
		s.ehlo()
		for i in range(10):
			assert s.mail("sender@example.com")[0] == 250, "MAIL %d" % i
			assert s.rcpt("rcpt%d@example.net" % i)[0] == 250, "RCPT %d" % i
			code, msg = s.data(("Subject: many %d\r\n\r\nbody %d\r\n" % (i, i)).encode())
			m = QUEUED_RE.match(msg.decode())
			assert code == 250 and m, "message %d: %d %r" % (i, code, msg)
			ids.append(m.group(1))
	assert len(set(ids)) == 10, "queue ids not unique: %s" % ids
	assert ids == sorted(ids), "queue ids not in arrival order: %s" % ids
	for i, qid in enumerate(ids):
		d.wait_log(r"%s: from=<sender@example\.com>, size=\d+, nrcpt=1, dkim=none" % qid)


def test_smtputf8_and_8bit(t):
	"""SMTPUTF8 addresses and an 8-bit body are accepted and kept as sent."""
	d = t.daemon()
	body = "From: Bjørn <bjørn@example.com>\r\nSubject: blåbær\r\n\r\nÆØÅ æøå MARK-utf8\r\n".encode()
	with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
		s.ehlo()
		assert s.has_extn("smtputf8") and s.has_extn("8bitmime"), "features %r" % s.esmtp_features
		code, msg = s.mail("bjørn@example.com", ["SMTPUTF8", "BODY=8BITMIME"])
		assert code == 250, "MAIL with SMTPUTF8: %d %r" % (code, msg)
		code, msg = s.rcpt("pål@example.net")
		assert code == 250, "RCPT pål@example.net: %d %r" % (code, msg)
		code, msg = s.data(body)
		m = QUEUED_RE.match(msg.decode())
		assert code == 250 and m, "end of DATA: %d %r" % (code, msg)
	d.wait_log(r"%s: from=<bjørn@example\.com>, size=\d+, nrcpt=1" % m.group(1))
	assert body in t.spool_bytes(d.conf), "8-bit message text not found verbatim in the spool"


def test_null_sender(t):
	"""MAIL FROM:<> is accepted and logged as from=<>."""
	d = t.daemon()
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<>", 250, "2.1.0")
	c.expect("RCPT TO:<postmaster@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	c.send(b"From: MAILER-DAEMON@example.com\r\nSubject: null sender\r\n\r\nbounce\r\n.\r\n")
	qid = c.expect_reply(250, "2.0.0").lines[0].split()[-1]
	assert re.fullmatch(QID_RE, qid), "queue id %r" % qid
	d.wait_log(r"%s: from=<>, size=\d+, nrcpt=1, dkim=none" % qid)


def test_received_header_added(t):
	d = t.daemon()
	c = d.connect()
	c.hello()
	marker = b"Subject: received-header-test MARK-rcvd"
	qid = c.send_message("a@example.com", ["b@example.net"], marker + b"\r\n\r\nhello\r\n")
	spool = t.spool_bytes(d.conf)
	i = spool.find(marker)
	assert i >= 0, "message not found in the spool"
	before = spool[max(0, i - 4096):i]
	j = before.rfind(b"Received: ")
	assert j >= 0, "no Received: header before the message's own headers in the spool: %r" % before[-300:]
	hdr = before[j:]
	# the Received: field is a header line right before ours (possibly with
	# other added fields such as DKIM-Signature between)
	assert hdr.endswith(b"\r\n"), "added header does not end with CRLF right before the message: %r" % hdr
	unfolded = re.sub(rb"\r\n[ \t]+", b" ", hdr).split(b"\r\n")[0].decode("utf-8", "replace")
	assert re.search(r"^Received: from \S+", unfolded), "Received: lacks a from clause: %r" % unfolded
	assert re.search(r"\bby %s\b" % re.escape(HOSTNAME), unfolded), \
	    "Received: lacks 'by %s': %r" % (HOSTNAME, unfolded)
	assert "127.0.0.1" in unfolded, "Received: lacks the client address: %r" % unfolded
	assert re.search(r";\s*\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", unfolded), \
	    "Received: lacks an RFC 5322 date after ';': %r" % unfolded
	assert qid  # the message was queued under this id
