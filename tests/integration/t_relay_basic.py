"""Relaying, the plain path: relayd delivers to a real SMTP server
(upstream.py on aiosmtpd) and logs it in the interface's shape; the
message arrives intact (dot-stuffing, CRLF); ESMTP extensions are used
when offered and only then (PIPELINING, SIZE=, BODY=8BITMIME, SMTPUTF8);
SIZE and SMTPUTF8 limits bounce at once; EHLO falls back to HELO;
routing by sender domain, catch-all; connection reuse with RSET, idle
QUIT."""

import re
import time

from harness import HOSTNAME, dot_stuff, queued_id
from relayutil import (start_upstream, simple_relay, relay_config, submit, wait_delivery,
    deliveries, expect_fields, mail_params, bare_line_ends, parse_dsn, dsn_messages)

RCPT = "rcpt@example.net"


def relay_re(up):
	return re.compile(r"^up\[(127\.0\.0\.1|localhost)\]:%d$" % up.port)


def test_sent_line_and_envelope(t):
	d, up = simple_relay(t)
	qid = submit(d, "sender@example.com", ["r1@example.net", "r2@example.net"],
	    subject="MARK-subject", body="Hello upstream.\r\nMARK-body\r\n")
	for r in ("r1@example.net", "r2@example.net"):
		x = wait_delivery(d, qid, r, "sent")
		expect_fields(x, relay=relay_re(up), attempt=1, attempts=3, dsn="2.0.0",
		    reason=re.compile(r"^250 2\.0\.0 Ok: queued as UP\d{5}$"),
		    delay=lambda v: v is not None and 0 <= v < 30)
		keys = re.findall(r"(?:^|, )([a-z]+)=", x["line"].split(": ", 1)[1])
		order = [k for k in keys if k in ("to", "relay", "attempt", "delay", "dsn", "status")]
		assert order == ["to", "relay", "attempt", "delay", "dsn", "status"], \
		    "fields out of the interface's order in %r" % x["line"]
	ms = up.wait_messages(1)
	time.sleep(0.5)
	ms = up.messages()
	assert len(ms) == 1, "expected one transaction for both recipients, upstream got %d:\n%s" % (
	    len(ms), up.summary())
	m = ms[0]
	assert m["mail_from"] == "sender@example.com", "MAIL FROM %r" % m["mail_from"]
	assert sorted(m["rcpt_tos"]) == ["r1@example.net", "r2@example.net"], m["rcpt_tos"]
	assert b"Subject: MARK-subject\r\n" in m["data"], "subject missing: %r" % m["data"][:500]
	assert m["data"].endswith(b"Hello upstream.\r\nMARK-body\r\n"), "body: %r" % m["data"][-200:]
	ehlo = up.cmds("EHLO")
	assert ehlo and ehlo[0]["arg"] == HOSTNAME, "EHLO %r, expected %s" % (
	    ehlo and ehlo[0]["arg"], HOSTNAME)
	rc = len(up.cmds("RCPT"))
	assert rc == 2, "expected one RCPT per recipient (2), got %d" % rc


def test_dot_stuffing_and_crlf(t):
	d, up = simple_relay(t)
	body = (b".\r\n..\r\n.leading dot\r\n..two dots\r\nmiddle . dot\r\nend dot.\r\n"
	    b"bare LF here\nthen CRLF\r\n" + b"x" * 990 + b"\r\n.\r\n")
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<sender@example.com>", 250)
	c.expect("RCPT TO:<%s>" % RCPT, 250)
	c.expect("DATA", 354)
	c.send(b"Subject: dots\r\n\r\n" + dot_stuff(body) + b".\r\n")
	qid = queued_id(c, c.read_reply(timeout=30))
	c.close()
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	want = body.replace(b"bare LF here\n", b"bare LF here\r\n")
	assert m["data"].endswith(b"\r\n\r\n" + want), "text changed on the way; upstream got tail %r" % (
	    m["data"][-300:])
	assert bare_line_ends(m["data"]) == 0, "bare CR/LF reached the upstream: %r" % m["data"]


def test_large_message(t):
	d, up = simple_relay(t)
	line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
	body = b"".join(b"%06d " % i + line for i in range(40000))	# ~3 MB
	qid = submit(d, body=body)
	wait_delivery(d, qid, RCPT, "sent", timeout=60)
	m = up.wait_messages(1)[0]
	assert m["data"].endswith(body), "3 MB body changed: upstream got %d bytes" % len(m["data"])


test_large_message.timeout = 90


def test_pipelining_when_offered(t):
	up = start_upstream(t, ext="PIPELINING,8BITMIME,ENHANCEDSTATUSCODES")
	d, _ = simple_relay(t, up)
	qid = submit(d, rcpts=["a@example.net", "b@example.net", "c@example.net"])
	for r in ("a@example.net", "b@example.net", "c@example.net"):
		wait_delivery(d, qid, r, "sent")
	cmds = [(e["cmd"], e["pipelined"]) for e in up.cmds() if e["cmd"] in ("MAIL", "RCPT", "DATA")]
	assert any(p for c, p in cmds if c in ("MAIL", "RCPT")), \
	    "upstream offers PIPELINING but relayd waited for each reply: %s" % cmds


def test_no_pipelining_when_not_offered(t):
	up = start_upstream(t, ext="8BITMIME,ENHANCEDSTATUSCODES")
	d, _ = simple_relay(t, up)
	qid = submit(d, rcpts=["a@example.net", "b@example.net", "c@example.net"])
	for r in ("a@example.net", "b@example.net", "c@example.net"):
		wait_delivery(d, qid, r, "sent")
	piped = [(e["cmd"], e["arg"]) for e in up.cmds() if e["pipelined"]]
	assert not piped, "relayd pipelined to an upstream without PIPELINING: %s" % piped


def test_size_param_when_offered(t):
	up = start_upstream(t, ext="PIPELINING,SIZE 10000000,8BITMIME")
	d, _ = simple_relay(t, up)
	qid = submit(d, body=b"y" * 70 + b"\r\n" * 1 + (b"z" * 78 + b"\r\n") * 500)
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	mails = up.cmds("MAIL")
	p = mail_params(mails[0]["arg"])
	assert "SIZE" in p, "no SIZE= on MAIL to an upstream offering SIZE: %r" % mails[0]["arg"]
	size, n = int(p["SIZE"]), len(m["data"])
	assert abs(size - n) <= n * 0.05 + 512, "SIZE=%d but the message is %d bytes" % (size, n)


def test_no_size_param_when_not_offered(t):
	up = start_upstream(t, ext="PIPELINING,8BITMIME")
	d, _ = simple_relay(t, up)
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	mails = up.cmds("MAIL")
	assert "SIZE" not in mail_params(mails[0]["arg"]), "SIZE= sent without SIZE offered: %r" % (
	    mails[0]["arg"])


def test_too_large_for_upstream_bounces_5_3_4(t):
	up = start_upstream(t, ext="PIPELINING,SIZE 6000,8BITMIME,ENHANCEDSTATUSCODES")
	d, _ = simple_relay(t, up)
	qid = submit(d, subject="MARK-too-big", body=(b"w" * 78 + b"\r\n") * 300)	# 24 kB
	x = wait_delivery(d, qid, RCPT, "bounced")
	expect_fields(x, dsn="5.3.4", attempt=1)
	# the message itself never went: no MAIL from its sender
	mails = [e["arg"] for e in up.cmds("MAIL") if "sender@example.com" in e["arg"]]
	assert not mails, "the oversized message was offered anyway: %s" % mails
	dsn = up.wait_messages(1, pred=lambda m: m["mail_from"] == "")[0]
	rep = parse_dsn(dsn["data"])
	assert rep["recipients"] and rep["recipients"][0].get("status") == "5.3.4", \
	    "DSN status: %s" % rep["recipients"]


def test_8bit_body_with_body_8bitmime(t):
	d, up = simple_relay(t)
	body = "Grüße aus Tromsø — 8-bit text.\r\n".encode("utf-8")
	qid = submit(d, body=body, mail_opts="BODY=8BITMIME",
	    extra_headers="MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n")
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	assert m["data"].endswith(body), "8-bit body changed: %r" % m["data"][-80:]
	p = mail_params(up.cmds("MAIL")[0]["arg"])
	assert p.get("BODY") == "8BITMIME", "MAIL for an 8-bit message: %r" % up.cmds("MAIL")[0]["arg"]


def test_smtputf8_to_upstream_with_it(t):
	up = start_upstream(t, ext="PIPELINING,8BITMIME,SMTPUTF8,ENHANCEDSTATUSCODES")
	d, _ = simple_relay(t, up)
	rcpt = "dörte@example.net"
	qid = submit(d, rcpts=[rcpt], mail_opts="SMTPUTF8 BODY=8BITMIME")
	wait_delivery(d, qid, rcpt, "sent")
	m = up.wait_messages(1)[0]
	assert m["rcpt_tos"] == [rcpt], "recipient at the upstream: %r" % m["rcpt_tos"]
	assert "SMTPUTF8" in mail_params(up.cmds("MAIL")[0]["arg"]), "no SMTPUTF8 on MAIL: %r" % (
	    up.cmds("MAIL")[0]["arg"])


def test_smtputf8_never_downgraded_bounces_5_6_7(t):
	up = start_upstream(t, ext="PIPELINING,8BITMIME,ENHANCEDSTATUSCODES")
	d, _ = simple_relay(t, up)
	rcpt = "dörte@example.net"
	qid = submit(d, rcpts=[rcpt], mail_opts="SMTPUTF8 BODY=8BITMIME")
	x = wait_delivery(d, qid, rcpt, "bounced")
	expect_fields(x, dsn="5.6.7", attempt=1)
	bad = [e["arg"] for e in up.cmds("RCPT") if "example.net" in e["arg"]]
	assert not bad, "the SMTPUTF8 recipient was offered to an upstream without SMTPUTF8: %s" % bad
	dsns = up.wait_messages(1, pred=lambda m: m["mail_from"] == "")
	assert dsns[0]["rcpt_tos"] == ["sender@example.com"], dsns[0]["rcpt_tos"]


def test_helo_fallback(t):
	up = start_upstream(t, script=[{"cmd": "EHLO", "reply": "502 5.5.1 EHLO not implemented"}])
	d, _ = simple_relay(t, up)
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	cmds = [e["cmd"] for e in up.cmds()]
	assert "HELO" in cmds and cmds.index("HELO") > cmds.index("EHLO"), "commands: %s" % cmds
	mail = up.cmds("MAIL")[0]["arg"]
	assert mail_params(mail) == {}, "ESMTP parameters after HELO: %r" % mail


def test_two_domains_two_upstreams_and_catch_all(t):
	a = start_upstream(t, "a")
	b = start_upstream(t, "b")
	c = start_upstream(t, "c")
	conf = relay_config(t, {"upa": a.conf(), "upb": b.conf(), "upc": c.conf()},
	    {"a.example": "upa", "b.example": "upb", "*": "upc"})
	d = t.start(conf)
	qa = submit(d, "x@a.example", ["r@example.net"], subject="MARK-A")
	qb = submit(d, "y@b.example", ["r@example.net"], subject="MARK-B")
	qc = submit(d, "z@other.example", ["r@example.net"], subject="MARK-C")
	for q, up, name in ((qa, a, "upa"), (qb, b, "upb"), (qc, c, "upc")):
		x = wait_delivery(d, q, "r@example.net", "sent")
		expect_fields(x, relay=re.compile(r"^%s\[127\.0\.0\.1\]:%d$" % (name, up.port)))
	time.sleep(0.3)
	for up, mark in ((a, b"MARK-A"), (b, b"MARK-B"), (c, b"MARK-C")):
		ms = up.messages()
		assert len(ms) == 1 and b"Subject: " + mark in ms[0]["data"], \
		    "upstream %s got %s" % (up.name, [m["data"][:200] for m in ms])


def test_connection_reuse_rset_and_idle_quit(t):
	up = start_upstream(t)
	d, _ = simple_relay(t, up, upconf={"max_connections": 1})
	c = d.connect()
	c.hello()
	qids = [c.send_message("sender@example.com", ["rcpt%d@example.net" % i],
	    b"Subject: reuse %d\r\n\r\nbody\r\n" % i) for i in range(4)]
	c.close()
	for i, q in enumerate(qids):
		wait_delivery(d, q, "rcpt%d@example.net" % i, "sent")
	t_last = max(m["t"] for m in up.messages())
	conns = up.conns()
	mails = {cid: sum(1 for e in evs if e["ev"] == "cmd" and e["cmd"] == "MAIL")
	    for cid, evs in conns.items()}
	assert max(mails.values()) >= 2, "no session carried two messages (MAILs per connection: %s)" % (
	    mails)
	assert up.max_open() == 1, "max_connections = 1 but %d sessions at once" % up.max_open()
	for cid, evs in conns.items():
		cmds = [e["cmd"] for e in evs if e["ev"] == "cmd"]
		done = False
		rset = False
		for x in cmds:
			if x == "DATA":
				done, rset = True, False
			elif x == "RSET":
				rset = True
			elif x == "MAIL" and done:
				assert rset, "connection %d: next MAIL without RSET in between: %s" % (cid, cmds)
	# idle sessions are closed after a short time, with QUIT
	up.wait(lambda u: all(any(e["ev"] == "disconnect" for e in evs) for evs in u.conns().values()),
	    "every idle session closed", timeout=25)
	for cid, evs in up.conns().items():
		cmds = [e["cmd"] for e in evs if e["ev"] == "cmd"]
		assert cmds and cmds[-1] == "QUIT", "connection %d ended without QUIT: %s" % (cid, cmds)
	last_close = max(e["t"] for e in up.events("disconnect"))
	print("sessions: %d for 4 messages; idle session closed %.1fs after the last message" % (
	    len(conns), last_close - t_last))


test_connection_reuse_rset_and_idle_quit.timeout = 60
