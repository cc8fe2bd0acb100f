"""How the client's bytes arrive must not matter: pipelined groups, a whole
session in one write, one byte per write; replies come in command order."""

import re
import time

from harness import queued_id


def read_n(c, n, timeout=15):
	return [c.read_reply(timeout) for _ in range(n)]


def codes(replies):
	return [(r.code, r.enh) for r in replies]


def test_pipelined_mail_rcpt_data(t):
	d = t.daemon()
	c = d.connect()
	c.hello()
	c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<r1@example.net>\r\n"
	    b"RCPT TO:<r2@example.net>\r\nRCPT TO:<r3@example.net>\r\nDATA\r\n",
	    what="MAIL+RCPT x3+DATA in one write")
	got = read_n(c, 5)
	want = [(250, "2.1.0"), (250, "2.1.5"), (250, "2.1.5"), (250, "2.1.5"), (354, None)]
	assert [(r.code, r.enh if w[1] else None) for r, w in zip(got, want)] == want, \
	    "pipelined group: expected %s, got %s" % (want, got)
	c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n")
	qid = queued_id(c, c.read_reply())
	d.wait_log(r"%s: from=<a@example\.com>, size=\d+, nrcpt=3, dkim=none" % qid)


def test_pipelined_errors_keep_order(t):
	"""Failing commands inside a pipelined group answer in place."""
	d = t.daemon()
	c = d.connect()
	c.hello()
	c.send(b"RCPT TO:<x@example.net>\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<bad.example.net>\r\n"
	    b"RCPT TO:<r@example.net>\r\nFOO\r\nNOOP\r\nDATA\r\n", what="mixed group")
	got = codes(read_n(c, 7))
	want = [(503, "5.5.1"), (250, "2.1.0"), (501, "5.1.3"), (250, "2.1.5"), (500, "5.5.1"),
	    (250, "2.0.0"), (354, None)]
	got[6] = (got[6][0], None)
	assert got == want, "expected %s, got %s" % (want, got)


def test_whole_session_in_one_write(t):
	d = t.daemon()
	c = d.connect()
	c.greeting()
	c.send(b"EHLO client.test.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
	    b"DATA\r\nSubject: one write\r\n\r\nall at once\r\n.\r\nQUIT\r\n", what="whole session")
	ehlo, mail, rcpt, data, end, quit = read_n(c, 6)
	assert ehlo.code == 250 and len(ehlo.lines) > 1, "EHLO: %s" % ehlo
	assert (mail.code, mail.enh) == (250, "2.1.0"), "MAIL: %s" % mail
	assert (rcpt.code, rcpt.enh) == (250, "2.1.5"), "RCPT: %s" % rcpt
	assert data.code == 354, "DATA: %s" % data
	qid = queued_id(c, end)
	assert (quit.code, quit.enh) == (221, "2.0.0"), "QUIT: %s" % quit
	assert c.wait_closed(5), "connection not closed after QUIT"
	d.wait_log(r"%s: from=<a@example\.com>, size=\d+, nrcpt=1" % qid)


def test_two_whole_transactions_in_one_write(t):
	d = t.daemon()
	c = d.connect()
	c.hello()
	one = (b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
	    b"Subject: tx\r\n\r\ntransaction\r\n.\r\n")
	c.send(one + one.replace(b"a@", b"c@") + b"NOOP\r\n", what="two transactions + NOOP")
	r = read_n(c, 9)
	q1, q2 = queued_id(c, r[3]), queued_id(c, r[7])
	assert q1 != q2, "same id twice: %s" % q1
	assert (r[8].code, r[8].enh) == (250, "2.0.0"), "NOOP: %s" % r[8]
	d.wait_log(r"%s: from=<a@example\.com>" % q1)
	d.wait_log(r"%s: from=<c@example\.com>" % q2)


def test_one_byte_per_write(t):
	d = t.daemon()
	c = d.connect()
	c.greeting()
	script = [(b"EHLO client.test.example\r\n", 250), (b"MAIL FROM:<slow@example.com>\r\n", 250),
	    (b"RCPT TO:<b@example.net>\r\n", 250), (b"DATA\r\n", 354),
	    (b"Subject: slow\r\n\r\n..dot line\r\nbody\r\n.\r\n", 250), (b"QUIT\r\n", 221)]
	replies = []
	for data, code in script:
		for i in range(len(data)):
			c.send(data[i:i + 1], what=repr(data))
			if i % 8 == 0:
				time.sleep(0.002)	# let the daemon see separate segments
		r = c.read_reply()
		c.check(r, code)
		replies.append(r)
	qid = queued_id(c, replies[4])
	d.wait_log(r"%s: from=<slow@example\.com>, size=\d+, nrcpt=1" % qid)
	assert b"\r\n.dot line\r\nbody\r\n" in t.spool_bytes(d.conf), "dot-unstuffed body not in the spool"


def test_two_transactions_one_connection(t):
	d = t.daemon()
	c = d.connect()
	c.hello()
	q1 = c.send_message("first@example.com", ["b@example.net"], b"Subject: 1\r\n\r\nMARK-first\r\n")
	q2 = c.send_message("second@example.com", ["b@example.net", "c@example.net"],
	    b"Subject: 2\r\n\r\nMARK-second\r\n")
	assert q1 != q2, "both transactions got id %s" % q1
	d.wait_log(r"%s: from=<first@example\.com>, size=\d+, nrcpt=1" % q1)
	d.wait_log(r"%s: from=<second@example\.com>, size=\d+, nrcpt=2" % q2)
	c.expect("QUIT", 221, "2.0.0")


def test_rset_mid_transaction(t):
	d = t.daemon()
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<dropped@example.com>", 250, "2.1.0")
	c.expect("RCPT TO:<r1@example.net>", 250, "2.1.5")
	c.expect("RSET", 250, "2.0.0")
	# the transaction is gone
	c.expect("DATA", 503, "5.5.1")
	c.expect("RCPT TO:<r2@example.net>", 503, "5.5.1")
	# and a new one starts cleanly, without the old recipient
	qid = c.send_message("kept@example.com", ["r3@example.net"], b"Subject: after RSET\r\n\r\nx\r\n")
	d.wait_log(r"%s: from=<kept@example\.com>, size=\d+, nrcpt=1" % qid)
	assert d.count_log(r"from=<dropped@example\.com>") == 0, "the RSET transaction was queued"


def test_rset_during_data_is_content(t):
	"""Inside DATA, 'RSET' is message text, not a command."""
	d = t.daemon()
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<a@example.com>", 250)
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	c.send(b"Subject: x\r\n\r\nRSET\r\nQUIT\r\n.\r\n")
	qid = queued_id(c, c.read_reply())
	assert re.search(rb"\r\n\r\nRSET\r\nQUIT\r\n", t.spool_bytes(d.conf)), "body lost its RSET/QUIT lines"
	c.expect("NOOP", 250, "2.0.0")
	d.wait_log(r"%s: from=<a@example\.com>" % qid)
