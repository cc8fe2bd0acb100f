"""The queue behind relaying: the retry schedule (delay, backoff, the
per-upstream override), attempts exhausted -> bounce and an RFC 3464 DSN
(null sender, through the sender domain's upstream; never for a null
sender; not with bounces = false); max_connections and rate as the
upstream sees them; attempt state and accepted recipients survive a
restart (SIGTERM or kill -9) and a restart does not hammer the upstream."""

import re
import time

from relayutil import (start_upstream, simple_relay, relay_config, submit, wait_delivery,
    deliveries, expect_fields, parse_dsn, dsn_messages)

RCPT = "rcpt@example.net"


def rcpt_times(up, who):
	return [e["t"] for e in up.cmds("RCPT") if who in e["arg"]]


def test_retry_schedule_with_backoff(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "rcpt@", "reply": "450 4.2.0 Mailbox busy"}])
	d, _ = simple_relay(t, up, retry={"attempts": 4, "delay": 1, "backoff": 2.0, "max_delay": 60})
	qid = submit(d)
	lines = [wait_delivery(d, qid, RCPT, "deferred", count=k, timeout=20) for k in (1, 2, 3)]
	for k, (x, nxt) in enumerate(zip(lines, (1, 2, 4)), 1):
		expect_fields(x, attempt=k, attempts=4, dsn="4.2.0", next=nxt,
		    reason=re.compile(r"450 4\.2\.0 Mailbox busy"))
	b = wait_delivery(d, qid, RCPT, "bounced", timeout=20)
	expect_fields(b, attempt=4, attempts=4, dsn="4.2.0")
	ts = rcpt_times(up, "rcpt@")
	assert len(ts) == 4, "upstream saw %d attempts, expected 4" % len(ts)
	gaps = [b - a for a, b in zip(ts, ts[1:])]
	for g, want in zip(gaps, (1, 2, 4)):
		assert want - 0.3 <= g <= want + 2.0, "gaps between attempts %s, expected about 1, 2, 4 s" % (
		    ["%.2f" % x for x in gaps])


test_retry_schedule_with_backoff.timeout = 60


def test_max_delay_caps_backoff(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "rcpt@", "reply": "451 4.3.0 Later"}])
	d, _ = simple_relay(t, up, retry={"attempts": 4, "delay": 1, "backoff": 3.0, "max_delay": 2})
	qid = submit(d)
	nx = [wait_delivery(d, qid, RCPT, "deferred", count=k, timeout=20)["next"] for k in (1, 2, 3)]
	assert nx == [1, 2, 2], "next= with delay 1, backoff 3, max_delay 2: %s (expected [1, 2, 2])" % nx


def test_attempts_exhausted_bounce_and_dsn(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "rcpt@", "reply": "450 4.2.0 Mailbox busy"}])
	d, _ = simple_relay(t, up)
	qid = submit(d, subject="MARK-exhausted", body="secret body MARK-body\r\n")
	b = wait_delivery(d, qid, RCPT, "bounced", timeout=20)
	expect_fields(b, attempt=3, attempts=3, dsn="4.2.0", reason=re.compile(r"450 4\.2\.0 Mailbox busy"))
	assert len(deliveries(d, qid, RCPT, "deferred")) == 2
	dsn = up.wait_messages(1, pred=lambda m: m["mail_from"] == "")[0]
	assert dsn["rcpt_tos"] == ["sender@example.com"], "DSN to %s" % dsn["rcpt_tos"]
	mail = [e for e in up.cmds("MAIL", conn=dsn["conn"]) if e["arg"].upper().startswith("FROM:<>")]
	assert mail, "DSN not sent with MAIL FROM:<>"
	rep = parse_dsn(dsn["data"])
	assert rep["content_type"] == "multipart/report", rep["content_type"]
	assert (rep["report_type"] or "").lower() == "delivery-status", rep["report_type"]
	assert "message/delivery-status" in rep["parts"], "parts: %s" % rep["parts"]
	assert len(rep["parts"]) == 3, "expected human text, status, original headers: %s" % rep["parts"]
	assert rep["per_message"].get("x-relayd-queue-id") == qid, "per-message fields: %s" % rep["per_message"]
	assert len(rep["recipients"]) == 1, rep["recipients"]
	r = rep["recipients"][0]
	assert RCPT in r.get("final-recipient", ""), r
	assert r.get("action", "").lower() == "failed", r
	assert r.get("status") == "4.2.0", r
	assert "450 4.2.0 Mailbox busy" in r.get("diagnostic-code", ""), r
	assert rep["headers"] and "Subject: MARK-exhausted" in rep["headers"], \
	    "original headers part: %r" % rep["headers"]
	assert "MARK-body" not in (rep["headers"] or ""), "the original body came back in the headers part"
	assert b"From: " in dsn["data"] and re.search(rb"(?im)^Subject: .+", dsn["data"]), "DSN headers"
	time.sleep(1.5)
	assert len(dsn_messages(up)) == 1, "more than one DSN: %d" % len(dsn_messages(up))


test_attempts_exhausted_bounce_and_dsn.timeout = 60


def test_dsn_through_sender_domain_upstream(t):
	a = start_upstream(t, "a", script=[{"cmd": "RCPT", "match": "rcpt@", "reply": "550 5.1.1 Unknown"}])
	b = start_upstream(t, "b")
	conf = relay_config(t, {"upa": a.conf(), "upb": b.conf()}, {"a.example": "upa", "*": "upb"})
	d = t.start(conf)
	qid = submit(d, "someone@a.example")
	wait_delivery(d, qid, RCPT, "bounced")
	dsn = a.wait_messages(1, pred=lambda m: m["mail_from"] == "")[0]
	assert dsn["rcpt_tos"] == ["someone@a.example"], dsn["rcpt_tos"]
	time.sleep(0.5)
	assert not b.messages(), "DSN went through the catch-all's upstream too: %s" % b.summary()


def test_no_dsn_for_null_sender(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "rcpt@", "reply": "550 5.1.1 Unknown"}])
	d, _ = simple_relay(t, up)
	qid = submit(d, sender="")
	b = wait_delivery(d, qid, RCPT, "bounced")
	expect_fields(b, dsn="5.1.1")
	time.sleep(2)
	assert not up.messages(), "something was sent for a bounced null-sender message:\n%s" % up.summary()


def test_no_dsn_with_bounces_false(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "rcpt@", "reply": "550 5.1.1 Unknown"}])
	d, _ = simple_relay(t, up, bounces=False)
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "bounced")
	time.sleep(2)
	assert not up.messages(), "a DSN with bounces = false:\n%s" % up.summary()


def test_dsn_that_fails_is_not_bounced(t):
	"""The DSN itself is refused: it has a null sender, so nothing more is
	sent (no DSN about a DSN, no loop)."""
	up = start_upstream(t, script=[{"cmd": "RCPT", "reply": "550 5.1.1 Unknown"}])
	d, _ = simple_relay(t, up)
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "bounced")
	up.wait(lambda u: [e for e in u.cmds("MAIL") if e["arg"].upper().startswith("FROM:<>")],
	    "the DSN's MAIL FROM:<>")
	time.sleep(2.5)
	n = len([e for e in up.cmds("MAIL") if e["arg"].upper().startswith("FROM:<>")])
	assert n == 1, "%d DSN transactions for one bounce (expected 1)" % n


def test_upstream_retry_override(t):
	rule = [{"cmd": "RCPT", "match": "rcpt@", "reply": "450 4.2.0 Busy"}]
	a = start_upstream(t, "a", script=rule)
	b = start_upstream(t, "b", script=rule)
	conf = relay_config(t, {"upa": a.conf(retry={"attempts": 2, "delay": 2}), "upb": b.conf()},
	    {"a.example": "upa", "b.example": "upb"},
	    retry={"attempts": 5, "delay": 1, "backoff": 1.0, "max_delay": 60})
	d = t.start(conf)
	qa = submit(d, "x@a.example")
	qb = submit(d, "y@b.example")
	x = wait_delivery(d, qa, RCPT, "deferred")
	expect_fields(x, attempt=1, attempts=2, next=2)
	y = wait_delivery(d, qb, RCPT, "deferred")
	expect_fields(y, attempt=1, attempts=5, next=1)
	z = wait_delivery(d, qa, RCPT, "bounced", timeout=20)
	expect_fields(z, attempt=2, attempts=2)
	ts = rcpt_times(a, "rcpt@")
	assert len(ts) == 2 and ts[1] - ts[0] >= 1.7, "override delay 2: attempts at %s" % ts


def test_max_connections(t):
	up = start_upstream(t, script=[{"cmd": "EOD", "delay": 0.6}])
	d, _ = simple_relay(t, up, upconf={"max_connections": 2})
	qids = []
	c = d.connect()
	c.hello()
	for i in range(8):
		qids.append(c.send_message("sender@example.com", ["r%d@example.net" % i],
		    b"Subject: mc %d\r\n\r\nbody\r\n" % i))
	c.close()
	for i, q in enumerate(qids):
		wait_delivery(d, q, "r%d@example.net" % i, "sent", timeout=30)
	n = up.max_open()
	print("upstream saw at most %d connections at once (max_connections = 2)" % n)
	assert 1 <= n <= 2, "max_connections = 2 but the upstream saw %d at once" % n
	assert not deliveries(d, status="deferred"), "waiting for a connection slot was logged as deferred"
	assert len(up.messages()) == 8


test_max_connections.timeout = 60


def test_rate_spreads_messages(t):
	up = start_upstream(t)
	d, _ = simple_relay(t, up, upconf={"rate": 60})
	c = d.connect()
	c.hello()
	qids = [c.send_message("sender@example.com", ["r%d@example.net" % i],
	    b"Subject: rate %d\r\n\r\nbody\r\n" % i) for i in range(4)]
	c.close()
	for i, q in enumerate(qids):
		x = wait_delivery(d, q, "r%d@example.net" % i, "sent", timeout=30)
		expect_fields(x, attempt=1)
	ts = sorted(e["t"] for e in up.cmds("MAIL"))
	gaps = [b - a for a, b in zip(ts, ts[1:])]
	assert len(ts) == 4, "%d MAIL commands for 4 messages" % len(ts)
	assert min(gaps) >= 0.9, "rate = 60/min but MAILs %s s apart" % ["%.2f" % g for g in gaps]
	assert not deliveries(d, status="deferred"), "mail over the rate was logged as deferred"


test_rate_spreads_messages.timeout = 60


def restart_half_retried(t, kill9):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "rcpt@", "times": 2,
	    "reply": "450 4.2.0 Try again"}])
	d, _ = simple_relay(t, up, retry={"attempts": 4, "delay": 2, "backoff": 1.0, "max_delay": 60})
	qid = submit(d, subject="MARK-restart")
	wait_delivery(d, qid, RCPT, "deferred", count=2, timeout=20)
	t_fail2 = rcpt_times(up, "rcpt@")[1]
	time.sleep(0.3)
	if kill9:
		d.kill9()
	else:
		rc = d.stop(timeout=15)
		assert rc == 0, "relayd exited %s on SIGTERM" % rc
	d2 = t.start(d.conf)
	y = wait_delivery(d2, qid, RCPT, "sent", timeout=20)
	expect_fields(y, attempt=3, attempts=4)
	ts = rcpt_times(up, "rcpt@")
	assert len(ts) == 3, "upstream saw %d attempts, expected 3" % len(ts)
	assert ts[2] - t_fail2 >= 1.7, "attempt 3 came %.2fs after attempt 2 (delay 2): the restart " \
	    "hammered the upstream" % (ts[2] - t_fail2)
	ms = [m for m in up.messages() if b"MARK-restart" in m["data"]]
	assert len(ms) == 1, "%d copies delivered" % len(ms)


def test_restart_sigterm_half_retried(t):
	restart_half_retried(t, kill9=False)


def test_restart_kill9_half_retried(t):
	restart_half_retried(t, kill9=True)


def test_restart_does_not_hammer(t):
	"""A message deferred with a long wait is not retried just because
	relayd restarted."""
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "rcpt@", "reply": "450 4.2.0 Try again"}])
	d, _ = simple_relay(t, up, retry={"attempts": 3, "delay": 60, "backoff": 1.0, "max_delay": 60})
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "deferred")
	rc = d.stop(timeout=15)
	assert rc == 0
	d2 = t.start(d.conf)
	later = up.quiet_for(3)
	tries = [e for e in later if e["cmd"] == "RCPT"]
	assert not tries, "restarted relayd retried at once (delay 60): %s" % tries
	assert not deliveries(d2, qid), "lines after restart: %s" % [r["line"] for r in deliveries(d2, qid)]


def test_restart_keeps_accepted_recipients(t):
	"""Recipients the upstream accepted are written off durably: after
	kill -9 and restart only the deferred one is offered again."""
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "later@", "times": 1,
	    "reply": "450 4.2.0 Greylisted"}])
	d, _ = simple_relay(t, up, retry={"attempts": 3, "delay": 2, "backoff": 1.0, "max_delay": 60})
	qid = submit(d, rcpts=["now@example.net", "later@example.net"], subject="MARK-keep")
	wait_delivery(d, qid, "now@example.net", "sent")
	wait_delivery(d, qid, "later@example.net", "deferred")
	time.sleep(0.3)
	d.kill9()
	d2 = t.start(d.conf)
	y = wait_delivery(d2, qid, "later@example.net", "sent", timeout=20)
	expect_fields(y, attempt=2)
	time.sleep(0.5)
	ms = [m for m in up.messages() if b"MARK-keep" in m["data"]]
	got = [m["rcpt_tos"] for m in ms]
	assert got == [["now@example.net"], ["later@example.net"]], \
	    "transactions after restart: %s (now@ must not get a second copy)" % got
