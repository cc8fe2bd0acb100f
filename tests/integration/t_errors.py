"""Bad input gets the reply interface.md names and changes nothing: each
test checks the exact reply, then that the session still works."""

import os
import re
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


# ---------------------------------------------------------------------------
# client data in replies and log lines (issue 11, item 7): a reply is one
# line whatever the client sent, and so is every log line

def log_lines_from(d, start):
	"""The log's lines after offset start (bytes), as bytes."""
	with open(d.logpath, "rb") as f:
		f.seek(start)
		return f.read().split(b"\n")


def log_size(d):
	return os.path.getsize(d.logpath)


def assert_log_lines_whole(d, start, what):
	"""Every log line written since start is relayd's: it opens with the
	timestamp and "relayd[PID]: ", and holds no control character."""
	for line in log_lines_from(d, start):
		if not line:
			continue
		assert re.match(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} relayd\[\d+\]: ", line), \
		    "%s: a log line that relayd did not start (forged?): %r" % (what, line)
		assert not re.search(rb"[\x00-\x1f\x7f]", line), \
		    "%s: a control character in a log line: %r" % (what, line)


def test_from_domain_literal_with_crlf_null_sender(t):
	"""A folded From: domain literal, with MAIL FROM:<> and no domain "*":
	the 550 is one line, and no second log line is forged."""
	d, c = session(t)
	start = log_size(d)
	c.expect("MAIL FROM:<>", 250, "2.1.0")
	c.expect("RCPT TO:<b@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	c.send(b"From: a@[1.2.3.4\r\n 550 forged]\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
	r = c.expect_reply(550, "5.7.1")
	assert len(r.lines) == 1, "the 550 came in %d lines: %r" % (len(r.lines), r.raw)
	assert b"\r" not in r.raw[:-2] and b"\n" not in r.raw[:-2], "CR or LF inside the reply: %r" % r.raw
	# nothing left over: the next reply is NOOP's
	c.expect("NOOP", 250, "2.0.0")
	d.wait_log(r"reject: null-sender message .*From: domain .*1\.2\.3\.4.*forged.* is not configured")
	assert_log_lines_whole(d, start, "From: a@[1.2.3.4 CRLF 550 forged]")
	assert d.count_log(r"^ ?550 forged") == 0, "forged log line:\n%s" % d.log_tail()


def test_upstream_reply_with_bare_cr_logged_escaped(t):
	"""With -v every reply from an upstream is logged; one with a bare CR
	(the greeting, and the reply to the end of the text, which also goes
	into status=sent (...)) is escaped, never written raw."""
	from relayutil import simple_relay, submit, wait_delivery
	from relayutil import start_upstream
	up = start_upstream(t, script=[
	    {"cmd": "CONNECT", "reply": "220 up.test ESMTP\rforged: greeting"},
	    {"cmd": "EOD", "reply": "250 2.0.0 Ok: kept\r99 forged: line"}])
	d, _ = simple_relay(t, up=up, args=("-v",))
	start = log_size(d)
	qid = submit(d)
	r = wait_delivery(d, qid, "rcpt@example.net", "sent")
	assert "forged: line" in r["reason"] and "\r" not in r["reason"], \
	    "status=sent reason: %r" % r["reason"]
	# the -v lines: the CR shown as \r
	d.wait_log(r"220 up\.test ESMTP\\rforged: greeting")
	d.wait_log(r"250 2\.0\.0 Ok: kept\\r99 forged: line")
	raw = b"\n".join(log_lines_from(d, start))
	assert b"\r" not in raw, "a raw CR in the log: %r" % raw[raw.index(b"\r") - 80:raw.index(b"\r") + 40]
	assert_log_lines_whole(d, start, "upstream replies with a bare CR")


def test_replies_quoting_the_client_are_one_line(t):
	"""Every reply that could quote what the client sent (the sender address
	and its domain in the 550, a HELO name, a command word) is one line,
	even when what was sent holds a bare CR or another control; and every
	log line about it is whole."""
	d, c = session(t)
	start = log_size(d)
	cases = [
	    ('MAIL FROM:<"a\rb"@unconfigured.example.org>', 501, "5.1.3"),
	    ("MAIL FROM:<a@un\rconfigured.example.org>", 501, "5.1.3"),
	    ("MAIL FROM:<a\x01b@unconfigured.example.org>", 501, "5.1.3"),
	    ("EHLO a\rb.example", 501, "5.5.4"),
	    ("FOO\rBAR", 500, "5.5.1"),
	    ("MAIL\r FROM:<a@example.com>", 500, "5.5.1"),
	]
	for line, code, enh in cases:
		r = c.cmd(line)
		c.check(r, code, enh)
		assert len(r.lines) == 1 and r.raw.count(b"\r") == 1, "%r: reply %r" % (line, r.raw)
	r = c.expect("MAIL FROM:<a.b@unconfigured.example.org>", 550, "5.7.1")
	assert r.lines == ["5.7.1 <a.b@unconfigured.example.org>: Sender address rejected: domain "
	    "unconfigured.example.org is not configured on this relay"], "550: %r" % r.raw
	c.expect("NOOP", 250, "2.0.0")
	d.wait_log(r"reject: MAIL from .*from=<a\.b@unconfigured\.example\.org>")
	assert_log_lines_whole(d, start, "commands with control characters")
