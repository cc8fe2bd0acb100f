"""Relaying when things go wrong: scripted 421/450/550 replies per command
defer or bounce the recipients they concern, with the upstream's reply as
the reason; a connection dropped mid-DATA and a stalled server (timeout)
defer; connection refused and DNS failures defer with reasons an admin
can act on; every A/AAAA address is tried; partial recipient
acceptance."""

import re
import time

from relayutil import (start_upstream, simple_relay, relay_config, submit, wait_delivery,
    deliveries, expect_fields, parse_dsn, DNSServer)

RCPT = "rcpt@example.net"


def defer_once_then_sent(t, rule, reason=None, dsn=r"^4\.\d+\.\d+$", upconf=None):
	"""The upstream applies rule once; relayd must defer (attempt 1/3,
	next=1s) and then deliver exactly once at attempt 2."""
	rule = dict(rule, times=1)
	up = start_upstream(t, script=[rule])
	d, _ = simple_relay(t, up, upconf=upconf)
	qid = submit(d, subject="MARK-once")
	x = wait_delivery(d, qid, RCPT, "deferred", timeout=30)
	expect_fields(x, attempt=1, attempts=3, dsn=re.compile(dsn), next=1)
	if reason:
		expect_fields(x, reason=re.compile(reason))
	y = wait_delivery(d, qid, RCPT, "sent", timeout=30)
	expect_fields(y, attempt=2, dsn="2.0.0")
	up.wait_messages(1)
	time.sleep(0.5)
	ms = [m for m in up.messages() if b"MARK-once" in m["data"]]
	assert len(ms) == 1, "expected the message once at the upstream, got %d:\n%s" % (
	    len(ms), up.summary())
	return d, up, qid, x


def test_421_greeting_defers(t):
	defer_once_then_sent(t, {"cmd": "CONNECT", "reply": "421 4.3.2 Service busy"},
	    reason=r"421 4\.3\.2 Service busy")


def test_421_ehlo_defers(t):
	defer_once_then_sent(t, {"cmd": "EHLO", "reply": "421 4.7.0 Go away"},
	    reason=r"421 4\.7\.0 Go away")


def test_421_mail_defers(t):
	defer_once_then_sent(t, {"cmd": "MAIL", "reply": "421 4.4.5 Too busy"},
	    reason=r"421 4\.4\.5 Too busy")


def test_421_rcpt_defers(t):
	defer_once_then_sent(t, {"cmd": "RCPT", "reply": "421 4.4.5 Too busy"},
	    reason=r"421 4\.4\.5 Too busy")


def test_421_data_defers(t):
	defer_once_then_sent(t, {"cmd": "DATA", "reply": "421 4.4.5 Too busy"},
	    reason=r"421 4\.4\.5 Too busy")


def test_421_end_of_data_defers(t):
	defer_once_then_sent(t, {"cmd": "EOD", "reply": "421 4.3.0 Queue trouble"},
	    reason=r"421 4\.3\.0 Queue trouble")


def test_450_mail_defers(t):
	defer_once_then_sent(t, {"cmd": "MAIL", "reply": "450 4.3.0 Try later"},
	    reason=r"450 4\.3\.0 Try later", dsn=r"^4\.3\.0$")


def test_450_rcpt_defers(t):
	defer_once_then_sent(t, {"cmd": "RCPT", "reply": "450 4.2.1 Mailbox busy"},
	    reason=r"450 4\.2\.1 Mailbox busy", dsn=r"^4\.2\.1$")


def test_451_end_of_data_defers(t):
	defer_once_then_sent(t, {"cmd": "EOD", "reply": "451 4.3.0 Local problem"},
	    reason=r"451 4\.3\.0 Local problem", dsn=r"^4\.3\.0$")


def test_drop_mid_data_defers(t):
	defer_once_then_sent(t, {"cmd": "DATA", "action": "drop_mid_data", "lines": 2})


def test_stall_timeout_defers(t):
	"""A server that never answers MAIL: deferred after the upstream's
	timeout (3 s here), not hung."""
	up = start_upstream(t, script=[{"cmd": "MAIL", "action": "stall", "times": 1}])
	d, _ = simple_relay(t, up, upconf={"timeout": 3})
	qid = submit(d, subject="MARK-stall")
	stall = up.wait(lambda u: u.events("stall"), "the stall")[0]
	x = wait_delivery(d, qid, RCPT, "deferred", timeout=20)
	waited = time.time() - stall["t"]
	assert 2.5 <= waited <= 9, "deferred %.1fs after the server stalled (timeout = 3)" % waited
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."), reason=re.compile(r"(?i)tim(ed )?e?\s?out"))
	y = wait_delivery(d, qid, RCPT, "sent", timeout=20)
	expect_fields(y, attempt=2)


test_stall_timeout_defers.timeout = 60


def test_no_reply_to_final_dot_retried(t):
	"""An upstream that takes the whole text and never answers the final
	dot (twice): each attempt times out (2 s here) and is deferred, the
	third is answered.  The upstream may have kept the copies it never
	confirmed; that is the duplicate RFC 1047 describes and no SMTP client
	can avoid.  relayd must cause no more: one copy per timeout, plus the
	one confirmed, and nothing after."""
	up = start_upstream(t, script=[{"cmd": "EOD", "action": "stall", "times": 2}])
	d, _ = simple_relay(t, up, upconf={"timeout": 2},
	    retry={"attempts": 5, "delay": 1, "backoff": 1.0, "max_delay": 60})
	qid = submit(d, subject="MARK-dot")
	y = wait_delivery(d, qid, RCPT, "sent", timeout=40)
	expect_fields(y, attempt=3)
	timeouts = deliveries(d, qid, RCPT, "deferred")
	assert len(timeouts) == 2, "\n".join(r["line"] for r in timeouts)
	for x in timeouts:
		expect_fields(x, dsn=re.compile(r"^4\."), reason=re.compile(r"(?i)timed out"))
	up.quiet_for(3)
	copies = [m for m in up.messages(accepted=None) if b"MARK-dot" in m["data"]]
	confirmed = [m for m in copies if m.get("accepted")]
	print("%d timeouts; the upstream received %d copies, %d confirmed: %d duplicates forced "
	    "by the protocol" % (len(timeouts), len(copies), len(confirmed), len(copies) - 1))
	assert len(confirmed) == 1, "%d confirmed copies" % len(confirmed)
	assert len(copies) == len(timeouts) + 1, \
	    "%d copies for %d timeouts: more duplicates than the protocol forces" % (
	    len(copies), len(timeouts))


test_no_reply_to_final_dot_retried.timeout = 60


def test_stall_at_greeting_defers(t):
	up = start_upstream(t, script=[{"cmd": "CONNECT", "action": "stall", "times": 1}])
	d, _ = simple_relay(t, up, upconf={"timeout": 2})
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred", timeout=20)
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."), reason=re.compile(r"(?i)tim(ed )?e?\s?out"))
	wait_delivery(d, qid, RCPT, "sent", timeout=20)


def test_550_rcpt_partial_acceptance(t):
	"""One recipient refused for good, one accepted: delivered once to the
	one, bounced (and only it) for the other, never retried."""
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
	d, _ = simple_relay(t, up)
	qid = submit(d, rcpts=["good@example.net", "bad@example.net"], subject="MARK-partial")
	g = wait_delivery(d, qid, "good@example.net", "sent")
	b = wait_delivery(d, qid, "bad@example.net", "bounced")
	expect_fields(g, attempt=1)
	expect_fields(b, attempt=1, dsn="5.1.1", reason=re.compile(r"550 5\.1\.1 No such user"))
	ms = [m for m in up.wait_messages(1, pred=lambda m: b"MARK-partial" in m["data"])]
	assert ms[0]["rcpt_tos"] == ["good@example.net"], ms[0]["rcpt_tos"]
	dsn = up.wait_messages(1, pred=lambda m: m["mail_from"] == "")[0]
	rep = parse_dsn(dsn["data"])
	fr = [r.get("final-recipient", "") for r in rep["recipients"]]
	assert len(fr) == 1 and "bad@example.net" in fr[0], "DSN recipients: %s" % fr
	later = up.quiet_for(2.5)
	again = [e for e in later if e["cmd"] == "RCPT" and "example.net" in e["arg"]]
	assert not again, "a finished recipient was tried again: %s" % again
	assert len(deliveries(d, qid)) == 2, "lines for %s:\n%s" % (qid, "\n".join(
	    r["line"] for r in deliveries(d, qid)))


def test_450_rcpt_partial_then_rest(t):
	"""One recipient accepted, one deferred: the next attempt offers only
	the deferred one."""
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "later@", "times": 1,
	    "reply": "450 4.2.0 Greylisted"}])
	d, _ = simple_relay(t, up)
	qid = submit(d, rcpts=["now@example.net", "later@example.net"], subject="MARK-450p")
	wait_delivery(d, qid, "now@example.net", "sent")
	x = wait_delivery(d, qid, "later@example.net", "deferred")
	expect_fields(x, attempt=1, dsn="4.2.0", reason=re.compile(r"450 4\.2\.0 Greylisted"))
	y = wait_delivery(d, qid, "later@example.net", "sent")
	expect_fields(y, attempt=2)
	ms = up.wait_messages(2, pred=lambda m: b"MARK-450p" in m["data"])
	assert [m["rcpt_tos"] for m in ms] == [["now@example.net"], ["later@example.net"]], \
	    "transactions' recipients: %s" % [m["rcpt_tos"] for m in ms]
	assert not [r for r in deliveries(d, qid, "now@example.net") if r["attempt"] != 1]


def test_550_mail_bounces_all(t):
	up = start_upstream(t, script=[{"cmd": "MAIL", "match": "sender@", "reply": "550 5.7.1 Sender rejected"}])
	d, _ = simple_relay(t, up)
	qid = submit(d, rcpts=["r1@example.net", "r2@example.net"])
	for r in ("r1@example.net", "r2@example.net"):
		x = wait_delivery(d, qid, r, "bounced")
		expect_fields(x, attempt=1, dsn="5.7.1", reason=re.compile(r"550 5\.7\.1 Sender rejected"))


def test_554_data_bounces(t):
	up = start_upstream(t, script=[{"cmd": "DATA", "mail_from": "sender@example.com",
	    "reply": "554 5.5.0 No valid recipients"}])
	d, _ = simple_relay(t, up)
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "bounced")
	expect_fields(x, attempt=1, dsn="5.5.0", reason=re.compile(r"554 5\.5\.0 No valid recipients"))


def test_550_end_of_data_bounces_with_dsn(t):
	up = start_upstream(t, script=[{"cmd": "EOD", "match": "MARK-spam", "mail_from": "sender@example.com",
	    "reply": "550 5.7.1 Looks like spam"}])
	d, _ = simple_relay(t, up)
	qid = submit(d, subject="MARK-spam")
	x = wait_delivery(d, qid, RCPT, "bounced")
	expect_fields(x, attempt=1, dsn="5.7.1", reason=re.compile(r"550 5\.7\.1 Looks like spam"))
	dsn = up.wait_messages(1, pred=lambda m: m["mail_from"] == "")[0]
	rep = parse_dsn(dsn["data"])
	r = rep["recipients"][0] if rep["recipients"] else {}
	assert "550 5.7.1 Looks like spam" in r.get("diagnostic-code", ""), "DSN recipient block: %s" % r
	# the upstream's own reply, typed smtp (RFC 3464 2.3.6), not relayd's log wording
	assert re.match(r"smtp;\s*550 5\.7\.1 Looks like spam$", r.get("diagnostic-code", "")), \
	    "Diagnostic-Code: %r" % r.get("diagnostic-code")


def test_connection_refused_defers_then_bounces(t):
	port = t.free_port()
	conf = relay_config(t, {"up": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "up"})
	d = t.start(conf)
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."), next=1,
	    reason=re.compile(r"connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: Connection refused" % port))
	y = wait_delivery(d, qid, RCPT, "bounced", timeout=30)
	expect_fields(y, attempt=3, attempts=3, dsn=re.compile(r"^4\."))
	assert len(deliveries(d, qid, RCPT, "deferred")) == 2, "\n".join(
	    r["line"] for r in deliveries(d, qid))


def dns_test(t, zone, host="smtp.example.test", upconf=None):
	dns = DNSServer(zone)
	dns.use(t)
	up = start_upstream(t)
	conf = relay_config(t, {"up": up.conf(host=host, **(upconf or {}))}, {"example.com": "up"})
	d = t.start(conf)
	return d, up, dns


def test_dns_nxdomain_defers(t):
	d, up, dns = dns_test(t, {"smtp.example.test": "NXDOMAIN"})
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."),
	    reason=re.compile(r"DNS lookup of smtp\.example\.test\b.*failed|DNS lookup of smtp\.example\.test failed"))
	assert ("smtp.example.test", "A") in dns.queries or ("smtp.example.test", "AAAA") in dns.queries, \
	    "relayd did not ask the resolver of RELAYD_RESOLV_CONF: %s" % dns.queries


def test_dns_servfail_defers(t):
	d, up, dns = dns_test(t, {"smtp.example.test": "SERVFAIL"})
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred", timeout=30)
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."),
	    reason=re.compile(r"DNS lookup of smtp\.example\.test\b"))


def test_every_address_tried(t):
	"""The name has addresses where nothing listens before the one that
	works: relayd tries each in turn and delivers on the first attempt."""
	d, up, dns = dns_test(t, {"smtp.example.test": {"A": ["127.0.0.2", "127.0.0.3", "127.0.0.1"],
	    "AAAA": ["::1"]}})
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "sent")
	expect_fields(x, attempt=1, relay=re.compile(r"^up\[(smtp\.example\.test|127\.0\.0\.1)\]:%d$" % up.port))
	assert len(up.messages()) == 1
