"""The upstream dialogue against unusual and hostile servers (issue 11):
reply lines at and past the length limit, a 2xx to DATA, EHLO replies
with a bare SIZE before STARTTLS or AUTH, the stage named in a 421's
reason, SIZE= after RSET on a session without PIPELINING, and a DSN to a
sender with a UTF-8 address (it needs SMTPUTF8 as any message to such an
address does), and replies that never end (issue 14): an endless
multi-line reply, a reply dripping an octet at a time without a line end,
and one dripping whole continuation lines, each bounded by the reply
limits or the upstream's timeout, with relayd's memory flat.  Each case
is what a review found and confirmed against a running relayd; under the
ASan+UBSan build the harness fails a test whose daemon logged a
sanitizer report."""

import re
import time

from relayutil import (start_upstream, simple_relay, submit, wait_delivery, deliveries,
    expect_fields, make_ca, relay_config, mail_params, DNSServer)
from dkimutil import make_key, dkim_config, send_ok, message

RCPT = "rcpt@example.net"


def deferred_then_sent(t, rule, reason=None, upconf=None, **upkw):
	"""The upstream applies rule once: the first attempt must defer (with
	reason), the second deliver; relayd must stay alive throughout."""
	up = start_upstream(t, script=[dict(rule, times=1)], **upkw)
	d, _ = simple_relay(t, up, upconf=upconf)
	qid = submit(d, subject="MARK-dialogue")
	x = wait_delivery(d, qid, RCPT, "deferred", timeout=30)
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\.\d+\.\d+$"))
	if reason:
		expect_fields(x, reason=re.compile(reason))
	y = wait_delivery(d, qid, RCPT, "sent", timeout=30)
	expect_fields(y, attempt=2)
	assert d.alive(), "relayd died:\n" + d.log_tail()
	ms = [m for m in up.wait_messages(1) if b"MARK-dialogue" in m["data"]]
	assert len(ms) == 1, "expected the message once, got %d:\n%s" % (len(ms), up.summary())
	return d, up, qid, x


# ---- reply lines of every length ------------------------------------------

def test_reply_line_of_4096_octets(t):
	"""A reply line of exactly 4096 octets (the limit) is read whole; it
	used to be copied with its CRLF into a 4097-octet stack buffer."""
	text = "451 4.3.0 " + "x" * 4086
	assert len(text) == 4096
	deferred_then_sent(t, {"cmd": "MAIL", "reply": text}, reason=r"451 4\.3\.0 x{100}")


def test_reply_line_of_4095_octets(t):
	deferred_then_sent(t, {"cmd": "MAIL", "reply": "451 4.3.0 " + "y" * 4085},
	    reason=r"451 4\.3\.0 y{100}")


def test_reply_line_over_the_limit_defers(t):
	"""4097 octets, and a megabyte: the attempt fails as a protocol
	error (deferred, 4.5.0), relayd neither crashes nor buffers it all
	(VmHWM grows by less than 8 MB)."""
	for n in (4097, 1 << 20):
		up = start_upstream(t, script=[{"cmd": "MAIL", "reply": "451 4.3.0 " + "z" * (n - 10),
		    "times": 1}])
		d, _ = simple_relay(t, up)
		base = d.vm_hwm()
		qid = submit(d, subject="MARK-long")
		x = wait_delivery(d, qid, RCPT, "deferred", timeout=30)
		expect_fields(x, dsn="4.5.0", reason=re.compile(r"reply line longer than 4096"))
		wait_delivery(d, qid, RCPT, "sent", timeout=30)
		assert d.alive(), d.log_tail()
		grew = d.vm_hwm() - base
		print("a reply line of %d octets: VmHWM %d kB, +%d kB" % (n, d.vm_hwm(), grew))
		assert grew < 8 * 1024, "VmHWM grew by %d kB for a %d-octet reply line" % (grew, n)
		d.stop()
		up.stop()


# ---- a 2xx to DATA is not a delivery ---------------------------------------

def test_2xx_to_data_is_not_delivery(t):
	"""Only 354 lets the text go: a 250 to DATA fails the attempt
	(deferred, nothing counted as sent), and the retry delivers it."""
	d, up, qid, x = deferred_then_sent(t, {"cmd": "DATA", "reply": "250 2.0.0 Ok"},
	    reason=r"250 2\.0\.0 Ok.*in reply to DATA command")
	first = [r for r in deliveries(d, qid) if r["attempt"] == 1]
	assert [r["status"] for r in first] == ["deferred"], first


def test_2xx_to_data_without_pipelining(t):
	deferred_then_sent(t, {"cmd": "DATA", "reply": "250 2.0.0 Ok"},
	    reason=r"in reply to DATA command", ext="8BITMIME,ENHANCEDSTATUSCODES")


def test_3xx_other_than_354_to_data_defers(t):
	deferred_then_sent(t, {"cmd": "DATA", "reply": "334 what"},
	    reason=r"334 what.*in reply to DATA command")


# ---- EHLO replies read line by line -----------------------------------------

def test_bare_size_before_starttls(t):
	"""RFC 1870 allows SIZE without a number (Postfix sends it with
	message_size_limit = 0); the keyword after it must still count."""
	certs = make_ca(t)
	dns = DNSServer({"localhost": {"A": ["127.0.0.1"]}})
	dns.use(t)
	up = start_upstream(t, tls="starttls", certs=certs, ext="PIPELINING,SIZE")
	conf = relay_config(t, {"up": up.conf(host="localhost", tls_ca_file=certs.ca)},
	    {"example.com": "up"})
	d = t.start(conf)
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	assert m["tls"], "went in plain text"
	assert "SIZE" in mail_params(up.cmds("MAIL")[0]["arg"]), up.cmds("MAIL")


def test_bare_size_before_auth(t):
	certs = make_ca(t)
	dns = DNSServer({"localhost": {"A": ["127.0.0.1"]}})
	dns.use(t)
	up = start_upstream(t, tls="implicit", certs=certs, ext="SIZE", auth="PLAIN",
	    auth_required=True)
	s = up.conf(host="localhost", tls_ca_file=certs.ca, auth="plain", username="relayuser",
	    password="s3cret-Pa55")
	d = t.start(relay_config(t, {"up": s}, {"example.com": "up"}))
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	assert [e["ok"] for e in up.events("auth")] == [True], up.events("auth")


# ---- the stage a 421 answered -----------------------------------------------

def test_421_names_the_command_it_answered(t):
	for cmd, stage in (("EHLO", "EHLO"), ("RCPT", "RCPT TO"), ("DATA", "DATA"),
	    ("EOD", "end of DATA"), ("MAIL", "MAIL FROM")):
		d, up, _, _ = deferred_then_sent(t, {"cmd": cmd, "reply": "421 4.4.5 Too busy"},
		    reason=r"421 4\.4\.5 Too busy \(in reply to %s command\)" % re.escape(stage))
		d.stop()
		up.stop()


def test_421_without_pipelining_names_rcpt(t):
	deferred_then_sent(t, {"cmd": "RCPT", "reply": "421 4.4.5 Too busy"},
	    reason=r"in reply to RCPT TO command", ext="8BITMIME,ENHANCEDSTATUSCODES")


# ---- SIZE= is the size sent, on every message of a session -----------------

def test_size_param_after_rset_same_session(t):
	"""Signed messages carry their DKIM-Signature fields apart from the
	text; SIZE= must count them on the first message of a session and on
	the next ones (after RSET, on a session without PIPELINING) alike.
	One session: the upstream greets late, so all three are queued by
	then, and max_connections = 1."""
	key = make_key(t, "s1")
	up = start_upstream(t, ext="SIZE 10000000,8BITMIME,ENHANCEDSTATUSCODES",
	    script=[{"cmd": "CONNECT", "delay": 1.5, "times": 1}])
	conf = dkim_config(t, up, {"example.com": {"dkim": [key]}})
	with open(conf.path) as f:
		text = f.read()
	with open(conf.path, "w") as f:
		f.write(text.replace('upstream "up" {', 'upstream "up" {\n\tmax_connections = 1', 1))
	d = t.start(conf)
	qids = []
	for i in range(3):
		msg = message([("From", "<sender@example.com>"), ("To", "<%s>" % RCPT),
		    ("Subject", "size %d" % i)], b"Body %d.\r\n" % i)
		qids.append(send_ok(d, "sender@example.com", [RCPT], msg))
	for q in qids:
		wait_delivery(d, q, RCPT, "sent")
	ms = up.wait_messages(3)
	assert len({m["conn"] for m in ms}) == 1, "not one session: %s" % [m["conn"] for m in ms]
	assert len(up.cmds("RSET")) >= 2, "no RSET between messages"
	for m, c in zip(ms, up.cmds("MAIL")):
		declared = int(mail_params(c["arg"])["SIZE"])
		assert declared == m["size"], "SIZE=%d declared, %d octets sent" % (declared, m["size"])


# ---- a DSN to an SMTPUTF8 sender --------------------------------------------

def test_dsn_to_smtputf8_sender_uses_smtputf8(t):
	ext = "PIPELINING,8BITMIME,SMTPUTF8,ENHANCEDSTATUSCODES"
	up = start_upstream(t, ext=ext, script=[{"cmd": "RCPT", "match": "bad@",
	    "reply": "550 5.1.1 No such user"}])
	d, _ = simple_relay(t, up)
	sender = "j\u00f6rg@example.com"
	qid = submit(d, sender=sender, rcpts=["bad@example.net"], mail_opts="SMTPUTF8 BODY=8BITMIME")
	wait_delivery(d, qid, "bad@example.net", "bounced")
	dsn = up.wait(lambda u: [m for m in u.messages() if m["mail_from"] == ""], "the DSN")[0]
	assert dsn["rcpt_tos"] == [sender], dsn["rcpt_tos"]
	opts = [o.upper() for o in dsn["mail_options"]]
	assert "SMTPUTF8" in opts, "DSN to %r sent without SMTPUTF8: %s" % (sender, opts)


# ---- replies that never end (issue 14) -------------------------------------

MB = 1024 * 1024


def test_endless_multiline_reply_defers(t):
	"""An upstream that answers with "250-" lines forever, at line rate,
	to EHLO and then to the end of DATA: relayd gives up at the reply
	limit (256 lines or 64 KB), defers, retries, and its memory stays
	flat (VmHWM grows by less than 8 MB)."""
	for cmd in ("EHLO", "EOD"):
		up = start_upstream(t, script=[{"cmd": cmd, "action": "endless", "times": 1}])
		d, _ = simple_relay(t, up)
		base = d.vm_hwm()
		qid = submit(d, subject="MARK-dialogue")
		x = wait_delivery(d, qid, RCPT, "deferred", timeout=30)
		expect_fields(x, attempt=1, dsn="4.5.0",
		    reason=re.compile(r"a reply of more than 256 lines or 65536 octets"))
		wait_delivery(d, qid, RCPT, "sent", timeout=30)
		grew = d.vm_hwm() - base
		flood = up.wait(lambda u: u.events("endless"), "the end of the endless reply")[0]
		print("%s: endless reply cut after %d lines (%d octets) sent; VmHWM %d kB, +%d kB" % (
		    cmd, flood["pieces"], flood["octets"], d.vm_hwm(), grew))
		assert grew < 8 * 1024, "VmHWM grew by %d kB during an endless reply" % grew
		assert d.alive(), d.log_tail()
		d.stop()
		up.stop()


test_endless_multiline_reply_defers.timeout = 90


def test_dripping_reply_times_out(t):
	"""A reply that never ends, dripping: an octet every 0.3 s without a
	line end (to MAIL), and a "250-" continuation line every 0.3 s (to
	the end of DATA).  Each octet keeps the connection busy, but the
	upstream's timeout (3 s here) bounds the whole reply: the attempt is
	deferred within it and retried, and the message arrives once."""
	for rule in ({"cmd": "MAIL", "action": "drip", "interval": 0.3},
	    {"cmd": "EOD", "action": "drip", "interval": 0.3, "lines": True}):
		up = start_upstream(t, script=[dict(rule, times=1)])
		d, _ = simple_relay(t, up, upconf={"timeout": 3})
		qid = submit(d, subject="MARK-dialogue")
		started = up.wait(lambda u: [e for e in u.events("cmd") if e["cmd"] == rule["cmd"]] or
		    u.events("message"), "the %s" % rule["cmd"])[0]["t"]
		x = wait_delivery(d, qid, RCPT, "deferred", timeout=20)
		waited = time.time() - started
		expect_fields(x, attempt=1, dsn=re.compile(r"^4\."),
		    reason=re.compile(r"(?i)timed out"))
		assert waited <= 9, "deferred %.1f s after the drip began (timeout = 3)" % waited
		wait_delivery(d, qid, RCPT, "sent", timeout=20)
		drip = up.wait(lambda u: u.events("drip"), "the end of the drip")[0]
		print("%s: drip of %d pieces cut %.1f s after it began: %s" % (rule["cmd"],
		    drip["pieces"], waited, x["reason"]))
		ms = [m for m in up.messages() if b"MARK-dialogue" in m["data"]]
		assert len(ms) == 1, "the message arrived %d times" % len(ms)
		d.stop()
		up.stop()


test_dripping_reply_times_out.timeout = 90
