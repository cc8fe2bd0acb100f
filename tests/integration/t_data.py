"""DATA: dot-stuffing, and the SMTP smuggling cases.  Only <CR><LF>.<CR><LF>
ends a message; bare LF and bare CR are stored as CRLF.  The checks read the
message text from the spool's *.seg files (plain bytes there)."""

import re

from harness import queued_id


def stored_text(t, d, begin, end):
	"""The spooled bytes from marker begin to marker end (inclusive)."""
	spool = t.spool_bytes(d.conf)
	i = spool.find(begin)
	assert i >= 0, "marker %r not found in the spool" % begin
	j = spool.find(end, i)
	assert j >= 0, "marker %r not found after %r in the spool" % (end, begin)
	return spool[i:j + len(end)]


def bare_line_ends(b):
	"""Positions of LF not preceded by CR and CR not followed by LF."""
	return [m.start() for m in re.finditer(rb"(?<!\r)\n|\r(?!\n)", b)]


def open_data(d, sender="a@example.com"):
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<%s>" % sender, 250, "2.1.0")
	c.expect("RCPT TO:<b@example.net>", 250, "2.1.5")
	c.expect("DATA", 354)
	return c


def test_dot_stuffing(t):
	d = t.daemon()
	c = open_data(d)
	c.send(b"Subject: BEGIN-dots\r\n\r\n..one leading dot\r\n...two leading dots\r\n"
	    b". dot space\r\nx.\r\n.\r\n", what="dot-stuffed message")
	queued_id(c, c.read_reply())
	text = stored_text(t, d, b"BEGIN-dots", b"x.\r\n")
	assert b"\r\n.one leading dot\r\n..two leading dots\r\n dot space\r\nx.\r\n" in text, \
	    "dot-stuffing not removed exactly once: %r" % text


def test_bare_lf_dot_does_not_end_message(t):
	"""'\\n.\\n' is not the end of DATA: what follows it, even a whole
	smuggled SMTP transaction, is message text."""
	d = t.daemon()
	c = open_data(d, "outer@example.com")
	smuggled = (b"line A\n.\nMAIL FROM:<smuggled@example.com>\r\nRCPT TO:<victim@example.net>\r\n"
	    b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\n")
	c.send(b"Subject: BEGIN-barelf\r\n\r\n" + smuggled + b"line B\r\nmore text END-barelf\r\n",
	    what="message with \\n.\\n inside")
	# nothing may answer before the real end
	try:
		early = c.read_reply(timeout=1.5)
	except AssertionError:
		early = None
	assert early is None, "server replied before <CRLF>.<CRLF>: %s" % early
	c.send(b".\r\n", what="<CRLF>.<CRLF>")
	qid = queued_id(c, c.read_reply())
	c.expect("NOOP", 250, "2.0.0")	# exactly one reply for the whole message
	text = stored_text(t, d, b"BEGIN-barelf", b"END-barelf")
	assert not bare_line_ends(text), "bare CR/LF stored at offsets %s: %r" % (bare_line_ends(text), text)
	assert re.search(rb"line A\r\n\.?\r\nMAIL FROM:<smuggled@example\.com>\r\n", text), \
	    "smuggled lines not kept as text: %r" % text
	assert re.search(rb"evil\r\n\.?\r\nline B\r\nmore text END", text), "lines lost: %r" % text
	d.wait_log(r"%s: from=<outer@example\.com>, size=\d+, nrcpt=1" % qid)
	assert d.count_log(r"from=<smuggled@example\.com>") == 0, "smuggled message was queued"
	assert d.count_log(r": from=<") == 1, "expected exactly one queued message:\n" + d.log()


def test_crlf_dot_lf_does_not_end_message(t):
	"""'\\r\\n.\\n' (a common smuggling variant) is content, not the end."""
	d = t.daemon()
	c = open_data(d)
	c.send(b"Subject: BEGIN-crlfdotlf\r\n\r\nfirst\r\n.\nsecond\r\n.\rthird END-crlfdotlf\r\n",
	    what="message with \\r\\n.\\n and \\r\\n.\\r inside")
	try:
		early = c.read_reply(timeout=1.5)
	except AssertionError:
		early = None
	assert early is None, "server replied before <CRLF>.<CRLF>: %s" % early
	c.send(b".\r\n", what="<CRLF>.<CRLF>")
	queued_id(c, c.read_reply())
	text = stored_text(t, d, b"BEGIN-crlfdotlf", b"END-crlfdotlf")
	assert not bare_line_ends(text), "bare CR/LF stored: %r" % text
	assert re.search(rb"first\r\n\.?\r\nsecond\r\n\.?\r\nthird", text), "lines lost: %r" % text


def test_bare_cr(t):
	d = t.daemon()
	c = open_data(d)
	c.send(b"Subject: BEGIN-barecr\r\n\r\nline1\rline2\r\nx\r.\ry\r\n\rEND-barecr\r\n.\r\n",
	    what="message with bare CRs")
	queued_id(c, c.read_reply())
	text = stored_text(t, d, b"BEGIN-barecr", b"END-barecr")
	assert not bare_line_ends(text), "bare CR/LF stored at %s: %r" % (bare_line_ends(text), text)
	assert b"\r\n\r\nline1\r\nline2\r\nx\r\n" in text, "bare CR not turned into CRLF: %r" % text


def test_bare_lf_message(t):
	"""A client that ends every line with LF (and the final dot with
	CRLF) gets its lines stored with CRLF."""
	d = t.daemon()
	c = open_data(d)
	c.send(b"Subject: BEGIN-lf\n\nl1\nl2\n\nl4 END-lf\r\n.\r\n", what="LF-only message")
	queued_id(c, c.read_reply())
	text = stored_text(t, d, b"BEGIN-lf", b"END-lf")
	assert text == b"BEGIN-lf\r\n\r\nl1\r\nl2\r\n\r\nl4 END-lf", "stored %r" % text


def test_empty_message_and_final_crlf(t):
	"""An empty message is legal; the CRLF before the dot belongs to the text."""
	d = t.daemon()
	c = open_data(d)
	c.send(b".\r\n", what="empty message")
	qid = queued_id(c, c.read_reply())
	d.wait_log(r"%s: from=<a@example\.com>, size=\d+, nrcpt=1" % qid)
	c.expect("MAIL FROM:<a@example.com>", 250)
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	c.send(b"Subject: BEGIN-final\r\n\r\nno newline at the end END-final\r\n.\r\n")
	queued_id(c, c.read_reply())
	spool = t.spool_bytes(d.conf)
	i = spool.find(b"END-final")
	assert spool[i:i + 11] == b"END-final\r\n", "final CRLF not kept: %r" % spool[i:i + 11]


def test_long_body_lines_and_binary(t):
	"""A 1 MB message with long lines and every octet value (but NUL)."""
	d = t.daemon()
	c = open_data(d)
	octets = bytes(b for b in range(1, 256) if b not in (10, 13))
	body = b"Subject: BEGIN-bin\r\n\r\n" + (octets * 4 + b"\r\n") * 1000 + b"END-bin\r\n"
	c.send(body + b".\r\n", what="1 MB message")
	qid = queued_id(c, c.read_reply(timeout=30))
	m = d.wait_log(r"%s: from=<a@example\.com>, size=(\d+)" % qid)
	assert int(m.group(1)) >= len(body), "size=%s < %d sent" % (m.group(1), len(body))
	text = stored_text(t, d, b"BEGIN-bin", b"END-bin")
	assert octets in text, "8-bit octets altered in the spool"
