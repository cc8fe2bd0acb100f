"""Bad input gets the reply interface.md names and changes nothing: each
test checks the exact reply, then that the session still works."""

import smtplib

from harness import QUEUED_RE


def session(t, **cfg):
	d = t.daemon(**cfg)
	c = d.connect()
	c.hello()
	return d, c


def test_malformed_sender(t):
	d, c = session(t)
	c.expect("MAIL FROM:<post@@mab.no>", 501, "5.1.3")
	c.expect("MAIL FROM:<post.bleken.no>", 501, "5.1.3")
	c.expect("MAIL FROM:<@>", 501)
	# nothing changed: MAIL is still the next step, and works
	c.expect("RCPT TO:<a@example.net>", 503, "5.5.1")
	c.send_message("post@example.com", ["a@example.net"], b"Subject: after bad sender\r\n\r\nx\r\n")


def test_malformed_recipient(t):
	d, c = session(t)
	c.expect("MAIL FROM:<post@example.com>", 250, "2.1.0")
	c.expect("RCPT TO:<post.bleken.no>", 501, "5.1.3")
	c.expect("RCPT TO:<post@@mab.no>", 501, "5.1.3")
	# the bad ones do not count as recipients (Postfix says 554 5.5.1 "no
	# valid recipients" here, 503 5.5.1 is as good)
	r = c.cmd("DATA")
	assert (r.code, r.enh) in ((503, "5.5.1"), (554, "5.5.1")), \
	    "DATA after only rejected RCPTs: expected 503/554 5.5.1, got %s" % r
	c.expect("RCPT TO:<good@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
	r = c.expect_reply(250, "2.0.0")
	qid = r.lines[0].split()[-1]
	d.wait_log(r"%s: from=<post@example\.com>, size=\d+, nrcpt=1, dkim=none" % qid)


def test_unknown_command(t):
	d, c = session(t)
	c.expect("FOOBAR", 500, "5.5.1")
	c.expect("MAILFROM:<a@example.com>", 500, "5.5.1")
	c.expect("NOOP", 250, "2.0.0")


def test_rcpt_before_mail(t):
	d, c = session(t)
	c.expect("RCPT TO:<a@example.net>", 503, "5.5.1")
	c.expect("NOOP", 250, "2.0.0")


def test_data_before_rcpt(t):
	d, c = session(t)
	c.expect("DATA", 503, "5.5.1")
	c.expect("MAIL FROM:<a@example.com>", 250, "2.1.0")
	c.expect("DATA", 503, "5.5.1")
	# the transaction is still open
	c.expect("RCPT TO:<b@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect_reply(250, "2.0.0")


def test_mail_twice(t):
	d, c = session(t)
	c.expect("MAIL FROM:<a@example.com>", 250, "2.1.0")
	c.expect("MAIL FROM:<b@example.com>", 503, "5.5.1")
	c.expect("RCPT TO:<c@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
	qid = c.expect_reply(250, "2.0.0").lines[0].split()[-1]
	# the first sender stands
	d.wait_log(r"%s: from=<a@example\.com>, size=\d+, nrcpt=1" % qid)


def test_mail_before_ehlo(t):
	"""RFC 5321 4.1.4: MAIL without a preceding EHLO/HELO is 503."""
	d = t.daemon()
	c = d.connect()
	c.greeting()
	c.expect("MAIL FROM:<a@example.com>", 503, "5.5.1")


def test_too_many_recipients(t):
	d, c = session(t, max_recipients=3)
	c.expect("MAIL FROM:<a@example.com>", 250, "2.1.0")
	for i in range(3):
		c.expect("RCPT TO:<r%d@example.net>" % i, 250, "2.1.5")
	c.expect("RCPT TO:<r3@example.net>", 452, "4.5.3")
	c.expect("RCPT TO:<r4@example.net>", 452, "4.5.3")
	c.expect("DATA", 354)
	c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
	qid = c.expect_reply(250, "2.0.0").lines[0].split()[-1]
	d.wait_log(r"%s: from=<a@example\.com>, size=\d+, nrcpt=3, dkim=none" % qid)


def test_size_parameter_too_large(t):
	d, c = session(t, max_message_size=10000)
	c.expect("MAIL FROM:<a@example.com> SIZE=10001", 552, "5.3.4")
	r = c.cmd("MAIL FROM:<a@example.com> SIZE=99999999999999999999999")
	assert (r.code, r.enh) in ((552, "5.3.4"), (501, "5.5.4")), \
	    "SIZE= beyond 64 bits: expected 552 5.3.4 (or 501 5.5.4), got %s" % r
	# nothing changed: no transaction is open, a smaller one is fine
	c.expect("RCPT TO:<b@example.net>", 503, "5.5.1")
	c.expect("MAIL FROM:<a@example.com> SIZE=10000", 250, "2.1.0")


def test_message_too_large_then_session_usable(t):
	d, c = session(t, max_message_size=10000)
	c.expect("MAIL FROM:<big@example.com>", 250, "2.1.0")
	c.expect("RCPT TO:<b@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	line = b"x" * 70 + b"\r\n"
	c.send(b"Subject: too big\r\n\r\n" + line * 300 + b".\r\n", what="21 kB message")
	c.expect_reply(552, "5.3.4", timeout=20)
	# the session is usable and in a clean state
	c.expect("RCPT TO:<b@example.net>", 503, "5.5.1")
	c.expect("NOOP", 250, "2.0.0")
	qid = c.send_message("small@example.com", ["b@example.net"], b"Subject: small\r\n\r\nsmall\r\n")
	d.wait_log(r"%s: from=<small@example\.com>" % qid)
	assert d.count_log(r"from=<big@example\.com>") == 0, "the rejected message was logged as queued"


def test_line_too_long(t):
	d, c = session(t)
	c.expect("NOOP " + "x" * 3000, 500, "5.5.2")
	c.expect("NOOP", 250, "2.0.0")
	c.expect("MAIL FROM:<a@example.com> " + "X" * 4000, 500, "5.5.2")
	# the too long MAIL did not open a transaction
	c.expect("RCPT TO:<b@example.net>", 503, "5.5.1")


def test_long_line_under_limit_is_fine(t):
	"""A 1900-octet command is within the 2048-octet limit."""
	d, c = session(t)
	r = c.cmd("NOOP " + "y" * 1895)
	assert r.code == 250, "sent a 1900-octet NOOP: expected 250, got %s" % r


def test_sender_domain_not_configured(t):
	d, c = session(t)
	c.expect("MAIL FROM:<a@unconfigured.example.org>", 550, "5.7.1")
	c.expect("MAIL FROM:<a@sub.example.com>", 550, "5.7.1")
	c.expect("RCPT TO:<b@example.net>", 503, "5.5.1")
	c.expect("MAIL FROM:<a@EXAMPLE.COM>", 250, "2.1.0")


def test_sender_domain_catch_all(t):
	d, c = session(t, domains=("example.com", "*"))
	c.expect("MAIL FROM:<a@unconfigured.example.org>", 250, "2.1.0")


def test_sender_domain_wildcard(t):
	d, c = session(t, domains=("*.example.org",))
	c.expect("MAIL FROM:<a@example.org>", 550, "5.7.1")
	c.expect("MAIL FROM:<a@mail.example.org>", 250, "2.1.0")
	c.expect("RSET", 250, "2.0.0")
	c.expect("MAIL FROM:<a@deep.mail.example.org>", 250, "2.1.0")


def test_smtplib_sees_errors(t):
	"""The same errors through smtplib (a real client's parsing)."""
	d = t.daemon(max_recipients=1)
	with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
		s.ehlo()
		assert s.mail("post@@mab.no")[:1] == (501,), "MAIL post@@mab.no"
		code, msg = s.mail("a@unconfigured.example.org")
		assert (code, msg[:5]) == (550, b"5.7.1"), "unconfigured domain: %d %r" % (code, msg)
		code, msg = s.mail("a@example.com")
		assert code == 250, "MAIL: %d %r" % (code, msg)
		assert s.rcpt("b@example.net")[0] == 250
		code, msg = s.rcpt("c@example.net")
		assert (code, msg[:5]) == (452, b"4.5.3"), "2nd RCPT with max_recipients=1: %d %r" % (code, msg)
		code, msg = s.data(b"Subject: x\r\n\r\nx\r\n")
		assert code == 250 and QUEUED_RE.match(msg.decode()), "DATA: %d %r" % (code, msg)
		code, msg = s.docmd("XYZZY")
		assert (code, msg[:5]) == (500, b"5.5.1"), "XYZZY: %d %r" % (code, msg)
