"""DKIM signing (issue 4): relayd signs what it accepts with the keys of the
domain section of the From: header's domain, one signature per dkim block
(rsa-sha256, ed25519-sha256), relaxed/relaxed, t= and never l=, From
oversigned; adds a missing Date:/Message-ID: before signing; refuses a
message with no From: or several (550 5.6.0); logs dkim=<selectors>|none;
queues the message signed; adds the domain's bcc recipient.  What the
upstream receives is checked with an independent verifier (python3-dkim),
and altering one byte of it must make that verifier fail."""

import base64
import email.utils
import hashlib
import os
import re
import subprocess
import time

from relayutil import start_upstream, wait_delivery, deliveries
from dkimutil import (SIGNABLE, make_key, dkim_config, send, send_ok, message, wait_upstream,
    wait_from_line, split_message, header_fields, field_values, sig_tags, verify_all, assert_verifies,
    assert_fails, alter_body, alter_header)

SENDER = "sender@example.com"
RCPT = "rcpt@example.net"
UTF8_EXT = "PIPELINING,8BITMIME,ENHANCEDSTATUSCODES,SMTPUTF8"


def keys_both(t):
	return make_key(t, "s1", "rsa-sha256"), make_key(t, "s2", "ed25519-sha256")


def relay(t, domains, ext=UTF8_EXT, up=None):
	"""Starts an upstream (unless given) and relayd with these domain
	sections; returns (daemon, upstream)."""
	if up is None:
		up = start_upstream(t, ext=ext)
	d = t.start(dkim_config(t, up, domains))
	return d, up


def std_msg(case, subject="DKIM test", body=b"Hello, signed world.\r\n", sender=SENDER,
    extra=(), date=True, msgid=True):
	hs = [("From", "Test Sender <%s>" % sender), ("To", "<%s>" % RCPT), ("Subject", subject)]
	if date:
		hs.append(("Date", email.utils.formatdate()))
	if msgid:
		hs.append(("Message-ID", "<%s.%d@example.com>" % (case, time.time_ns())))
	hs.append(("X-Case", case))
	hs += list(extra)
	return message(hs, body)


def one_delivered(t, d, up, case, msg, mail_options=(), sender=SENDER, rcpts=(RCPT,)):
	"""Submits msg (which carries "X-Case: case"), waits for it to be sent;
	returns (qid, the upstream's copy)."""
	qid = send_ok(d, sender, list(rcpts), msg, mail_options)
	wait_delivery(d, qid, rcpts[0], "sent")
	m = wait_upstream(up, b"X-Case: " + case.encode() + b"\r\n")[0]
	return qid, m["data"]


def h_list(tags):
	return [x.strip().lower() for x in tags["h"].split(":") if x.strip()]


def check_common_tags(tags, algorithm, selector, what):
	want = {"v": "1", "a": algorithm, "c": "relaxed/relaxed", "d": "example.com", "s": selector}
	for k, v in want.items():
		assert tags.get(k) == v, "%s: expected %s=%s, got %r in %r" % (what, k, v, tags.get(k), tags)
	assert "l" not in tags, "%s: l= present: %r" % (what, tags)
	for k in ("bh", "b", "h", "t"):
		assert tags.get(k), "%s: no %s= in %r" % (what, k, tags)


# ---------------------------------------------------------------------------

def test_rsa_only(t):
	k1 = make_key(t, "s1", "rsa-sha256")
	d, up = relay(t, {"example.com": {"dkim": [k1]}})
	qid, data = one_delivered(t, d, up, "rsa", std_msg("rsa"))
	_, _, _, dk = wait_from_line(d, qid)
	assert dk == "s1", "from= line: expected dkim=s1, got dkim=%s" % dk
	tags = sig_tags(data)
	assert len(tags) == 1, "expected 1 DKIM-Signature, got %d" % len(tags)
	check_common_tags(tags[0], "rsa-sha256", "s1", "rsa signature")
	assert_verifies(data, [k1], ["s1"])
	assert_fails(alter_body(data), [k1], what="body altered by one byte")
	assert_fails(alter_header(data, "Subject"), [k1], what="Subject altered by one byte")


def test_ed25519_only(t):
	k2 = make_key(t, "s2", "ed25519-sha256")
	d, up = relay(t, {"example.com": {"dkim": [k2]}})
	qid, data = one_delivered(t, d, up, "ed", std_msg("ed"))
	_, _, _, dk = wait_from_line(d, qid)
	assert dk == "s2", "from= line: expected dkim=s2, got dkim=%s" % dk
	tags = sig_tags(data)
	assert len(tags) == 1, "expected 1 DKIM-Signature, got %d" % len(tags)
	check_common_tags(tags[0], "ed25519-sha256", "s2", "ed25519 signature")
	assert_verifies(data, [k2], ["s2"])
	assert_fails(alter_body(data), [k2], what="body altered by one byte")
	assert_fails(alter_header(data, "From"), [k2], what="From altered by one byte")


def test_both_keys(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}})
	qid, data = one_delivered(t, d, up, "both", std_msg("both"))
	print(split_message(data)[0].decode("utf-8", "replace"))	# shown by run -v
	_, _, nrcpt, dk = wait_from_line(d, qid)
	assert dk == "s1,s2", "from= line: expected dkim=s1,s2, got dkim=%s" % dk
	assert nrcpt == 1, "from= line: expected nrcpt=1, got %d" % nrcpt
	tags = sig_tags(data)
	assert [x.get("s") for x in tags] == ["s1", "s2"], "selectors top to bottom: %r" % (
	    [x.get("s") for x in tags])
	check_common_tags(tags[0], "rsa-sha256", "s1", "first signature")
	check_common_tags(tags[1], "ed25519-sha256", "s2", "second signature")
	assert tags[0]["bh"] == tags[1]["bh"], "same body, same hash: bh=%s vs %s" % (
	    tags[0]["bh"], tags[1]["bh"])
	assert_verifies(data, [k1, k2], ["s1", "s2"])
	assert_fails(alter_body(data), [k1, k2], what="body altered by one byte")
	assert_fails(alter_header(data, "To"), [k1, k2], what="To altered by one byte")
	# the signatures are in the header block, before the signed fields'
	# block ends, and each line of them fits SMTP's limit
	head, _ = split_message(data)
	for line in head.split(b"\r\n"):
		assert len(line) <= 998, "header line of %d octets" % len(line)


def test_8bit_body_and_utf8_headers(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}})
	body = ("Blåbærsyltetøy på brødskiva.\r\nGrüße, ça va? ✓ 日本語\r\n").encode("utf-8") + \
	    b"latin-1 bytes: \xe6\xf8\xe5 \xc6\xd8\xc5\r\n"
	extra = [("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=utf-8"),
	    ("Content-Transfer-Encoding", "8bit")]
	# raw UTF-8 in Subject and in From's display name (SMTPUTF8)
	m1 = message([("From", "Jørgen Ødegård <%s>" % SENDER), ("To", "Åse <%s>" % RCPT),
	    ("Subject", "Rå UTF-8: blåbær ✓ — ümlaut"), ("Date", email.utils.formatdate()),
	    ("Message-ID", "<utf8raw.%d@example.com>" % time.time_ns()), ("X-Case", "utf8raw")] + extra,
	    body)
	qid1, data1 = one_delivered(t, d, up, "utf8raw", m1, ["BODY=8BITMIME", "SMTPUTF8"])
	assert split_message(data1)[1] == body, "8-bit body changed on the way: %r" % split_message(data1)[1]
	assert "Rå UTF-8: blåbær ✓ — ümlaut" in field_values(data1, "Subject"), \
	    "raw UTF-8 Subject changed: %r" % field_values(data1, "Subject")
	assert_verifies(data1, [k1, k2], ["s1", "s2"], what="raw UTF-8 headers, 8-bit body")
	assert_fails(alter_body(data1), [k1, k2], what="8-bit body altered")
	# RFC 2047 encoded words, 8-bit body, no SMTPUTF8
	m2 = message([("From", "=?utf-8?q?J=C3=B8rgen_=C3=98deg=C3=A5rd?= <%s>" % SENDER),
	    ("To", "<%s>" % RCPT), ("Subject", "=?utf-8?b?%s?=" % base64.b64encode(
	    "Kodet emne: blåbær ✓".encode()).decode()), ("Date", email.utils.formatdate()),
	    ("Message-ID", "<rfc2047.%d@example.com>" % time.time_ns()), ("X-Case", "rfc2047")] + extra,
	    body)
	qid2, data2 = one_delivered(t, d, up, "rfc2047", m2, ["BODY=8BITMIME"])
	assert_verifies(data2, [k1, k2], ["s1", "s2"], what="RFC 2047 headers, 8-bit body")
	assert_fails(alter_header(data2, "Subject"), [k1, k2], what="encoded Subject altered")


def test_long_folded_headers(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}})
	words = ["word%04d" % i for i in range(334)]		# 334 * 9 - 1 = 3005 chars
	subject = " ".join(words)
	assert len(subject) >= 3000
	lines, cur = [], ""
	for w in words:
		if cur and len(cur) + 1 + len(w) > 70:
			lines.append(cur)
			cur = w
		else:
			cur = (cur + " " + w) if cur else w
	lines.append(cur)
	folded_subject = "\r\n ".join(lines)
	refs = "\r\n\t".join("<ref%02d.%08x@example.org>" % (i, i * 7919) for i in range(50))
	msg = std_msg("folded", subject=folded_subject, extra=[("References", refs),
	    ("In-Reply-To", "<ref49.%08x@example.org>" % (49 * 7919))])
	qid, data = one_delivered(t, d, up, "folded", msg)
	subj_raw = [raw for n, raw in header_fields(data) if n.lower() == "subject"]
	assert subj_raw == [b"Subject: " + folded_subject.encode() + b"\r\n"], \
	    "folded Subject changed on the way: %r" % (subj_raw[0][:300] if subj_raw else None)
	refs_got = field_values(data, "References")
	assert len(refs_got) == 1 and len(refs_got[0].split()) == 50, "References: %r" % refs_got
	for tags in sig_tags(data):
		h = h_list(tags)
		for name in ("subject", "references", "in-reply-to"):
			assert name in h, "%s= signature: %s not in h=%s" % (tags.get("s"), name, tags["h"])
	assert_verifies(data, [k1, k2], ["s1", "s2"], what="3000-char folded Subject, 50 References")
	assert_fails(alter_header(data, "References"), [k1, k2], what="References altered")
	# unfold differently: same relaxed canonical form, still verifies
	refolded = data.replace(folded_subject.encode(), folded_subject.replace("\r\n ", "\r\n\t\t").encode())
	assert refolded != data
	assert_verifies(refolded, [k1, k2], ["s1", "s2"], what="Subject refolded (relaxed)")


def test_body_shapes(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}})
	shapes = [
	    ("empty", b"", b""),
	    ("oneline", b"Just one line.\r\n", b"Just one line.\r\n"),
	    # smtplib ends the text with CRLF before the dot
	    ("unterminated", b"No line end here", b"No line end here\r\n"),
	    # smtplib dot-stuffs these; the upstream (and the signature) see them unstuffed
	    ("dots", b".hidden\r\n..two dots\r\n.\r\n. dot space\r\nend\r\n",
	        b".hidden\r\n..two dots\r\n.\r\n. dot space\r\nend\r\n"),
	    ("trailing", b"text\r\n\r\n\r\n\r\n", b"text\r\n\r\n\r\n\r\n"),
	    ("plain", b"text\r\n", b"text\r\n"),
	    ("spaces", b"trailing spaces   \r\n\tleading tab  and  double  spaces\t\r\n \r\nx\r\n",
	        b"trailing spaces   \r\n\tleading tab  and  double  spaces\t\r\n \r\nx\r\n"),
	    ("longlast", b"first line\r\n" + b"L" * 900 + b"\r\n", b"first line\r\n" + b"L" * 900 + b"\r\n"),
	    ("longlast-noeol", b"first line\r\n" + b"M" * 900, b"first line\r\n" + b"M" * 900 + b"\r\n"),
	]
	got = {}
	for case, body, want in shapes:
		qid, data = one_delivered(t, d, up, case, std_msg(case, body=body))
		assert split_message(data)[1] == want, "%s: body changed on the way: sent %r, upstream got %r" % (
		    case, body[:80], split_message(data)[1][:80])
		assert_verifies(data, [k1, k2], ["s1", "s2"], what="body shape %s" % case)
		assert_fails(alter_body(data), [k1, k2], what="body shape %s altered" % case)
		got[case] = sig_tags(data)
	# relaxed body canonicalisation: an empty body hashes as nothing,
	# trailing empty lines are not part of the hash
	empty = base64.b64encode(hashlib.sha256(b"").digest()).decode()
	for tags in got["empty"]:
		assert tags["bh"] == empty, "empty body: %s bh=%s, expected %s" % (tags["s"], tags["bh"], empty)
	for a, b in zip(got["trailing"], got["plain"]):
		assert a["bh"] == b["bh"], "%s: bh of 'text' + 3 empty lines (%s) differs from 'text' (%s)" % (
		    a["s"], a["bh"], b["bh"])


def test_signature_tags(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}})
	full = [("Cc", "Carbon <cc@example.net>"), ("Reply-To", "<reply@example.com>"),
	    ("In-Reply-To", "<parent@example.org>"), ("References", "<root@example.org> <parent@example.org>"),
	    ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=us-ascii"),
	    ("Content-Transfer-Encoding", "7bit"),
	    ("List-Unsubscribe", "<https://example.com/unsub?id=1>, <mailto:unsub@example.com>"),
	    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
	    # present but not on the list: never signed
	    ("Sender", "<other@example.com>"), ("X-Mailer", "t_dkim"), ("Comments", "not signed"),
	    ("Keywords", "dkim, test")]
	t0 = time.time()
	_, data = one_delivered(t, d, up, "full", std_msg("full", extra=full))
	t1 = time.time()
	_, small = one_delivered(t, d, up, "small", std_msg("small"))
	want_full = sorted(SIGNABLE + ["from"])
	want_small = sorted(["from", "from", "to", "subject", "date", "message-id"])
	for what, msg, want in (("all listed fields present", data, want_full),
	    ("From/To/Subject/Date/Message-ID only", small, want_small)):
		for tags in sig_tags(msg):
			h = sorted(h_list(tags))
			assert h == want, "%s, %s: expected h= (any order) %s, got %s" % (what, tags.get("s"),
			    ":".join(want), tags["h"])
			assert h_list(tags).count("from") == 2, "%s: From not oversigned: h=%s" % (what, tags["h"])
			assert "l" not in tags, "%s: l= present: %s" % (what, tags["l"])
			assert re.fullmatch(r"\d+", tags.get("t", "")), "%s: t=%r" % (what, tags.get("t"))
			ts = int(tags["t"])
			assert t0 - 5 <= ts <= t1 + 5, "%s: t=%d, expected within [%d, %d]" % (what, ts,
			    t0 - 5, t1 + 5)
			if "x" in tags:
				assert int(tags["x"]) > ts, "x=%s not after t=%s" % (tags["x"], tags["t"])
			for k in ("b", "bh"):
				base64.b64decode(tags[k], validate=True)
		assert_verifies(msg, [k1, k2], ["s1", "s2"], what=what)
	# an added From: makes it fail (that is what oversigning is for)
	head, body = split_message(data)
	extra_from = head + b"From: <evil@example.net>\r\n\r\n" + body
	assert_fails(extra_from, [k1, k2], what="second From: added after signing")


def test_date_and_message_id_added(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}})
	for case, date, msgid in (("neither", False, False), ("nodate", False, True),
	    ("nomsgid", True, False), ("both", True, True)):
		sent = std_msg(case, date=date, msgid=msgid)
		before = time.time()
		_, data = one_delivered(t, d, up, case, sent)
		dates = field_values(data, "Date")
		ids = field_values(data, "Message-ID")
		assert len(dates) == 1, "%s: expected one Date:, got %r" % (case, dates)
		assert len(ids) == 1, "%s: expected one Message-ID:, got %r" % (case, ids)
		if date:
			assert dates == field_values(sent, "Date"), "%s: Date changed: %r -> %r" % (
			    case, field_values(sent, "Date"), dates)
		else:
			dt = email.utils.parsedate_to_datetime(dates[0])
			assert dt.tzinfo is not None and abs(dt.timestamp() - before) < 120, \
			    "%s: added Date: %r is not now" % (case, dates[0])
		if msgid:
			assert ids == field_values(sent, "Message-ID"), "%s: Message-ID changed: %r -> %r" % (
			    case, field_values(sent, "Message-ID"), ids)
		else:
			assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", ids[0]), "%s: added Message-ID %r" % (case, ids[0])
		for tags in sig_tags(data):
			h = h_list(tags)
			assert "date" in h and "message-id" in h, "%s: %s h=%s lacks date or message-id" % (
			    case, tags.get("s"), tags["h"])
		assert_verifies(data, [k1, k2], ["s1", "s2"], what=case)
		if not msgid:
			assert_fails(alter_header(data, "Message-ID"), [k1, k2], what="%s: added Message-ID altered" % case)
		if not date:
			assert_fails(alter_header(data, "Date"), [k1, k2], what="%s: added Date altered" % case)


def test_from_missing_or_repeated_rejected(t):
	k1 = make_key(t, "s1", "rsa-sha256")
	d, up = relay(t, {"example.com": {"dkim": [k1]}})
	now = email.utils.formatdate()
	cases = {
	    "nofrom": message([("To", "<%s>" % RCPT), ("Subject", "no from"), ("Date", now),
	        ("Message-ID", "<nofrom@example.com>"), ("X-Case", "nofrom")]),
	    "twofrom": message([("From", "<%s>" % SENDER), ("From", "<second@example.com>"),
	        ("To", "<%s>" % RCPT), ("Subject", "two from"), ("Date", now),
	        ("Message-ID", "<twofrom@example.com>"), ("X-Case", "twofrom")]),
	    "twofrom-case": message([("From", "<%s>" % SENDER), ("To", "<%s>" % RCPT),
	        ("from", "<second@example.com>"), ("Subject", "two from, other case"), ("Date", now),
	        ("Message-ID", "<twofromcase@example.com>"), ("X-Case", "twofrom-case")]),
	}
	for case, msg in cases.items():
		r = send(d, SENDER, [RCPT], msg)
		assert r.code == 550 and r.text.startswith("5.6.0"), \
		    "%s: expected 550 5.6.0 at the end of DATA, got %r" % (case, r)
	# a good message afterwards goes through; none of the refused ones did
	_, data = one_delivered(t, d, up, "good", std_msg("good"))
	assert_verifies(data, [k1], ["s1"])
	time.sleep(0.3)
	cases_seen = [re.search(rb"X-Case: (\S+)", m["data"]).group(1).decode() for m in up.messages()]
	assert cases_seen == ["good"], "upstream received %r, expected only the good one" % cases_seen


def test_unsigned_domain_and_log_lines(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}, "other.example": {}})
	qid, data = one_delivered(t, d, up, "nokeys", std_msg("nokeys", sender="post@other.example"),
	    sender="post@other.example")
	sender, _, _, dk = wait_from_line(d, qid)
	assert sender == "post@other.example" and dk == "none", \
	    "from= line: expected from=<post@other.example> ... dkim=none, got from=<%s> dkim=%s" % (sender, dk)
	assert field_values(data, "DKIM-Signature") == [], "unsigned domain's mail carries DKIM-Signature: %r" % (
	    field_values(data, "DKIM-Signature"))
	qid2, data2 = one_delivered(t, d, up, "keys", std_msg("keys"))
	sender, _, _, dk = wait_from_line(d, qid2)
	assert sender == SENDER and dk == "s1,s2", "from= line: expected dkim=s1,s2, got from=<%s> dkim=%s" % (
	    sender, dk)
	assert_verifies(data2, [k1, k2], ["s1", "s2"])


def test_keys_follow_from_header_domain(t):
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}, "other.example": {}})
	# envelope from a domain without keys, From: of the domain with keys: signed
	qid, data = one_delivered(t, d, up, "from-keys", std_msg("from-keys"), sender="app@other.example")
	_, _, _, dk = wait_from_line(d, qid)
	assert dk == "s1,s2", "envelope other.example, From: example.com: expected dkim=s1,s2, got %s" % dk
	for tags in sig_tags(data):
		assert tags.get("d") == "example.com", "d=%r, expected example.com" % tags.get("d")
	assert_verifies(data, [k1, k2], ["s1", "s2"], what="signed by From: domain")
	# envelope from the domain with keys, From: of a domain without: unsigned
	qid2, data2 = one_delivered(t, d, up, "from-nokeys",
	    std_msg("from-nokeys", sender="post@other.example"), sender=SENDER)
	_, _, _, dk = wait_from_line(d, qid2)
	assert dk == "none", "envelope example.com, From: other.example: expected dkim=none, got %s" % dk
	assert field_values(data2, "DKIM-Signature") == [], "From: other.example signed: %r" % (
	    field_values(data2, "DKIM-Signature"))


def test_bcc(t):
	k1 = make_key(t, "s1", "rsa-sha256")
	arch = "archive@example.com"
	d, up = relay(t, {"example.com": {"dkim": [k1], "bcc": arch}, "other.example": {}})
	qid = send_ok(d, SENDER, [RCPT], std_msg("bcc1"))
	wait_delivery(d, qid, RCPT, "sent")
	wait_delivery(d, qid, arch, "sent")
	_, _, nrcpt, dk = wait_from_line(d, qid)
	print("bcc: from= line nrcpt=%d" % nrcpt)
	ms = wait_upstream(up, b"X-Case: bcc1\r\n")
	time.sleep(0.3)
	ms = [m for m in up.messages() if b"X-Case: bcc1\r\n" in m["data"]]
	rcpts = sorted(r for m in ms for r in m["rcpt_tos"])
	assert rcpts == sorted([RCPT, arch]), "upstream RCPTs for the message: %r, expected %r" % (
	    rcpts, sorted([RCPT, arch]))
	for m in ms:
		assert_verifies(m["data"], [k1], ["s1"], what="copy to %s" % m["rcpt_tos"])
		assert "archive" not in split_message(m["data"])[0].decode("utf-8", "replace").lower(), \
		    "the bcc address shows in the header: %r" % split_message(m["data"])[0]
	# the envelope sender's domain decides: From: example.com, envelope other.example: no bcc
	qid2 = send_ok(d, "app@other.example", [RCPT], std_msg("bcc2"))
	wait_delivery(d, qid2, RCPT, "sent")
	# envelope example.com, From: other.example: bcc
	qid3 = send_ok(d, SENDER, [RCPT], std_msg("bcc3", sender="post@other.example"))
	wait_delivery(d, qid3, RCPT, "sent")
	wait_delivery(d, qid3, arch, "sent")
	time.sleep(0.5)
	got2 = deliveries(d, qid2, arch)
	assert got2 == [], "envelope other.example got the example.com bcc: %r" % [r["line"] for r in got2]
	r2 = sorted(r for m in up.messages() if b"X-Case: bcc2\r\n" in m["data"] for r in m["rcpt_tos"])
	assert r2 == [RCPT], "envelope other.example: upstream RCPTs %r" % r2


def test_queued_signed(t):
	"""Signed before it is accepted and queued signed: a message deferred by
	one upstream, relayd restarted without any dkim configuration, then
	delivered to another: it still carries the signature made at
	acceptance, and it verifies."""
	k1, k2 = keys_both(t)
	busy = start_upstream(t, name="busy", ext=UTF8_EXT,
	    script=[{"cmd": "MAIL", "reply": "451 4.3.0 Try again later"}])
	# enough attempts that the message is still queued when relayd stops
	d = t.start(dkim_config(t, busy, {"example.com": {"dkim": [k1, k2]}}, retry=(10, 1)))
	qid = send_ok(d, SENDER, [RCPT], std_msg("queued"))
	wait_delivery(d, qid, RCPT, "deferred")
	st = d.stop()
	assert st == 0, "relayd exited with %s on SIGTERM" % st
	up = start_upstream(t, name="up", ext=UTF8_EXT)
	d2 = t.start(dkim_config(t, up, {"example.com": {}}, retry=(10, 1)))
	wait_delivery(d2, qid, RCPT, "sent", timeout=30)
	data = wait_upstream(up, b"X-Case: queued\r\n")[0]["data"]
	assert_verifies(data, [k1, k2], ["s1", "s2"], what="message queued signed, delivered after restart")
	assert_fails(alter_body(data), [k1, k2], what="queued message altered")


def test_retry_sends_signatures_from_the_spool(t):
	"""A message is signed while it is committed; its signatures reach the
	disk in a record of their own after the 250, and memory lets them go
	once that record is durable.  A retry long after (the first attempt
	deferred) sends them from the spool: the message still verifies, with
	the same signatures as the first attempt carried."""
	k1, k2 = keys_both(t)
	up = start_upstream(t, ext=UTF8_EXT, script={"rules": [
	    {"cmd": "EOD", "times": 1, "reply": "451 4.3.0 Try again later"}]})
	d = t.start(dkim_config(t, up, {"example.com": {"dkim": [k1, k2]}}, retry=(3, 2)))
	qid = send_ok(d, SENDER, [RCPT], std_msg("retry"))
	wait_delivery(d, qid, RCPT, "deferred")
	wait_delivery(d, qid, RCPT, "sent", timeout=30)
	msgs = [m for m in up.messages(accepted=None) if b"X-Case: retry\r\n" in m["data"]]
	assert len(msgs) == 2, "expected the refused and the accepted copy, got %d" % len(msgs)
	first, second = msgs[0]["data"], msgs[1]["data"]
	assert first == second, "the retry sent other bytes than the first attempt"
	assert_verifies(second, [k1, k2], ["s1", "s2"], what="retried message")


def test_signatures_lost_in_a_crash_are_made_again(t):
	"""relayd killed (SIGKILL) after the 250 but before the record with the
	signatures was durable (RELAYD_TEST_LAZY_MS stretches that window) has
	the message on disk without them: at the next start it signs it again
	before sending (and says so), and never sends it unsigned."""
	k1, k2 = keys_both(t)
	busy = start_upstream(t, name="busy", ext=UTF8_EXT,
	    script=[{"cmd": "MAIL", "reply": "451 4.3.0 Try again later"}])
	d = t.start(dkim_config(t, busy, {"example.com": {"dkim": [k1, k2]}}, retry=(10, 1)),
	    env={"RELAYD_TEST_LAZY_MS": "600000"})
	qid = send_ok(d, SENDER, [RCPT], std_msg("crash"))
	wait_delivery(d, qid, RCPT, "deferred")
	d.kill9()
	up = start_upstream(t, name="up", ext=UTF8_EXT)
	d2 = t.start(dkim_config(t, up, {"example.com": {"dkim": [k1, k2]}}, retry=(10, 1)))
	wait_delivery(d2, qid, RCPT, "sent", timeout=30)
	d2.wait_log(r"%s: signed again: its signatures had not reached the disk at the last stop"
	    % qid)
	data = wait_upstream(up, b"X-Case: crash\r\n")[0]["data"]
	assert data.count(b"DKIM-Signature:") == 2, "expected two signatures:\n%r" % data[:2000]
	assert_verifies(data, [k1, k2], ["s1", "s2"], what="signed again after a crash")
	assert_fails(alter_body(data), [k1, k2], what="signed again, then altered")


# RSA_sign() and EVP_DigestSign() (Ed25519), as libopendkim calls them,
# failing while a file exists: a real signing failure in the real daemon,
# injected with LD_PRELOAD.
FAULT_SO_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>
static int
failing(void)
{
	const char *f = getenv("RELAYD_TEST_SIGN_FAULT");

	return f != NULL && access(f, F_OK) == 0;
}
typedef int (*rsa_sign_fn)(int, const unsigned char *, unsigned int, unsigned char *,
    unsigned int *, void *);
int
RSA_sign(int type, const unsigned char *m, unsigned int mlen, unsigned char *sig,
    unsigned int *siglen, void *rsa)
{
	rsa_sign_fn real = (rsa_sign_fn)dlsym(RTLD_NEXT, "RSA_sign");

	return failing() ? 0 : real(type, m, mlen, sig, siglen, rsa);
}
typedef int (*digest_sign_fn)(void *, unsigned char *, size_t *, const unsigned char *, size_t);
int
EVP_DigestSign(void *ctx, unsigned char *sig, size_t *siglen, const unsigned char *tbs,
    size_t tbslen)
{
	digest_sign_fn real = (digest_sign_fn)dlsym(RTLD_NEXT, "EVP_DigestSign");

	return failing() ? 0 : real(ctx, sig, siglen, tbs, tbslen);
}
"""


def signing_failure(t, selector, algorithm):
	"""A signing failure answers 451 4.7.0, logs why, queues nothing and
	relays nothing (mail from a domain with keys is never relayed
	unsigned); once signing works again the same message is accepted,
	signed, and verifies."""
	src = os.path.join(t.dir, "signfault.c")
	so = os.path.join(t.dir, "signfault.so")
	with open(src, "w") as f:
		f.write(FAULT_SO_C)
	cc = os.environ.get("CC", "cc").split()
	r = subprocess.run(cc + ["-shared", "-fPIC", "-o", so, src, "-ldl"], stdout=subprocess.PIPE,
	    stderr=subprocess.STDOUT, timeout=60)
	assert r.returncode == 0, "cannot build the fault library: %s" % r.stdout.decode()
	flag = os.path.join(t.dir, "fail-signing")
	open(flag, "w").close()
	k1 = make_key(t, selector, algorithm)
	up = start_upstream(t, ext=UTF8_EXT)
	asan = t.env().get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
	env = {"LD_PRELOAD": so, "RELAYD_TEST_SIGN_FAULT": flag}
	if algorithm == "ed25519-sha256":
		# libopendkim 2.11's dkim_eom() leaks its EVP_MD_CTX when
		# EVP_DigestSign() fails (about 1.3 KB a failure; nothing relayd
		# can reach): full stacks, and that leak alone suppressed.
		sup = os.path.join(t.dir, "lsan.supp")
		with open(sup, "w") as f:
			f.write("leak:dkim_eom\n")
		asan += ":fast_unwind_on_malloc=0"
		env["LSAN_OPTIONS"] = "suppressions=%s:print_suppressions=0" % sup
	env["ASAN_OPTIONS"] = asan
	d = t.start(dkim_config(t, up, {"example.com": {"dkim": [k1]}}), env=env)
	msg = std_msg("signfault")
	for i in range(2):
		r = send(d, SENDER, [RCPT], msg)
		assert r.code == 451 and r.text.startswith("4.7.0"), \
		    "try %d: expected 451 4.7.0 while signing fails, got %r" % (i + 1, r)
	# the same reason both times: the first failure left the shared key
	# intact (libopendkim 2.11 frees parts of it twice unless relayd steps in)
	d.wait_log(r"DKIM signing failed: DKIM signing \(selector %s\): signature generation failed"
	    r".*; not accepted" % selector, count=2)
	assert not re.search(r": from=<", d.log()), "a from= line although nothing was accepted:\n%s" % (
	    d.log_tail())
	relayctl = os.path.join(os.path.dirname(t.relayd), "relayctl")
	st, out, err = t.run([relayctl, "-f", d.conf.path, "queue", "--json"])
	assert st == 0 and out.strip() == "[]", "queue after refused messages: %s %r %r" % (st, out, err)
	time.sleep(0.3)
	assert up.messages() == [], "the upstream received mail while signing failed"
	# the refused messages had reached the disk (the commit runs while
	# signing): they were retired before the 451, so a crash now and a
	# start without the fault bring nothing back
	d.kill9()
	os.unlink(flag)
	d = t.start(dkim_config(t, up, {"example.com": {"dkim": [k1]}}), env=env)
	d.wait_log(r"queue: 0 messages loaded from the spool")
	time.sleep(0.3)
	assert up.messages() == [], "a refused message was relayed after a restart"
	# signing works again: the client's retry goes through, signed
	_, data = one_delivered(t, d, up, "signfault", msg)
	assert_verifies(data, [k1], [selector], what="accepted once signing works again")


def test_rsa_signing_failure_is_451_and_nothing_is_queued(t):
	signing_failure(t, "s1", "rsa-sha256")


def test_ed25519_signing_failure_is_451_and_nothing_is_queued(t):
	signing_failure(t, "s2", "ed25519-sha256")


def folded_list(n, fmt):
	"""A folded address list of n addresses, one per line."""
	return ",\r\n ".join(fmt % i for i in range(n))


def test_big_folded_repeated_headers(t):
	"""Header fields that are big (an unsigned one of 150 KB before the
	signed ones, a signed To: of 45 KB), folded, and repeated (To:, Cc:,
	an unsigned one): the message is signed, the signature names every
	occurrence of a signed field, and an independent verifier accepts it.
	(relayd keeps only the signed fields while the header streams by.)"""
	k1, k2 = keys_both(t)
	d, up = relay(t, {"example.com": {"dkim": [k1, k2]}})
	big = "\r\n ".join(["b" * 70] * (150 * 1024 // 73))
	to = folded_list(1700, "<rcpt%04d@example.net>")
	assert len(to) > 40 * 1024
	msg = message([("X-Big", big), ("From", "Test Sender <%s>" % SENDER), ("To", to),
	    ("X-Rep", "one"), ("Cc", "<c1@example.net>"), ("Subject", "big, folded,\r\n repeated"),
	    ("To", "<%s>" % RCPT), ("X-Rep", "two"), ("Cc", "<c2@example.net>,\r\n\t<c3@example.net>"),
	    ("Date", email.utils.formatdate()), ("Message-ID", "<big.%d@example.com>" % time.time_ns()),
	    ("X-Case", "bigfold")], b"Body after a big header.\r\n")
	qid, data = one_delivered(t, d, up, "bigfold", msg)
	_, _, _, dk = wait_from_line(d, qid)
	assert dk == "s1,s2", "from= line: expected dkim=s1,s2, got %s" % dk
	got = [n for n, _ in header_fields(data)]
	assert got.count("X-Big") == 1 and got.count("To") == 2 and got.count("Cc") == 2, \
	    "header fields on the way: %r" % got[:20]
	for tags in sig_tags(data):
		h = h_list(tags)
		assert h.count("to") == 2 and h.count("cc") == 2, "%s= signature h=%s: To and Cc not both twice" % (
		    tags.get("s"), tags["h"])
		assert "x-big" not in h and "x-rep" not in h, "unsigned fields in h=%s" % tags["h"]
	assert_verifies(data, [k1, k2], ["s1", "s2"], what="150 KB unsigned field, 45 KB To:, repeats")
	assert_fails(alter_header(data, "Cc"), [k1, k2], what="a repeated Cc altered")


def test_signed_fields_over_100k_refused(t):
	"""Signed header fields over 100 KB together: a message to be signed is
	refused 552 5.3.4 and nothing is queued; the same header from a domain
	without keys is passed through as it is."""
	k1 = make_key(t, "s1", "rsa-sha256")
	d, up = relay(t, {"example.com": {"dkim": [k1]}, "other.example": {}})
	to = folded_list(3500, "<rcpt.number.%04d@example.net>")
	assert len(to) > 100 * 1024
	def msg(sender, case):
		return message([("From", "<%s>" % sender), ("To", to), ("Subject", "too much to sign"),
		    ("X-Case", case)])
	r = send(d, SENDER, [RCPT], msg(SENDER, "signed"))
	assert r.code == 552 and r.text.startswith("5.3.4"), \
	    "signed fields over 100 KB: expected 552 5.3.4, got %r" % r
	d.wait_log(r"reject: message from .*: .*over 100 KB.*\(the first over it: To\)")
	qid, data = one_delivered(t, d, up, "unsigned", msg("post@other.example", "unsigned"),
	    sender="post@other.example")
	_, _, _, dk = wait_from_line(d, qid)
	assert dk == "none", "unsigned domain: dkim=%s" % dk
	to_got = field_values(data, "To")
	assert len(to_got) == 1 and len(to_got[0].split(",")) == 3500, "the 100 KB To: changed on the way"
	time.sleep(0.3)
	cases = [re.search(rb"X-Case: (\S+)", m["data"]).group(1).decode() for m in up.messages()]
	assert cases == ["unsigned"], "upstream received %r" % cases
