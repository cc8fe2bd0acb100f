"""relayctl queue, flush, remove and test against the running daemon, over
its control socket: what each command prints and its exit status, checked
against what relayd logged and what the upstream (upstream.py) received.
Also: every command with relayd stopped, and who may use the socket (root
or the relay user's group; mode 0660)."""

import datetime
import json
import os
import pwd
import grp
import re
import stat
import subprocess
import time

from harness import SANITIZER_RE, QID_RE
from relayutil import (start_upstream, make_ca, relay_config, simple_relay, submit,
    wait_delivery, deliveries, write_secret)

# A retry schedule under which nothing is retried during a test: any
# second attempt seen can only come from relayctl flush.
SLOW_RETRY = {"attempts": 5, "delay": 3600, "backoff": 1.0, "max_delay": 3600}
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NOT_RUNNING = "relayctl: relayd is not running"


def relayctl(t):
	p = os.path.join(os.path.dirname(t.relayd), "relayctl")
	assert os.access(p, os.X_OK), "no relayctl next to relayd (%s)" % p
	return p


def ctl(t, conf, *args, user=None, group=None, timeout=60):
	"""Runs relayctl -f conf args (as user, with supplementary group, via
	runuser); returns (status, stdout, stderr).  A sanitizer report or a
	death by signal fails the test."""
	argv = [relayctl(t), "-f", conf.path] + list(args)
	if user is not None:
		# a copy that user can reach wherever the build tree is
		argv[0] = t.reachable_copy(argv[0])
		argv = ["runuser", "-u", user] + (["-G", group] if group else []) + ["--"] + argv
	rc, out, err = t.run(argv, timeout=timeout)
	print("$ relayctl %s -> %d\n%s%s" % (" ".join(args), rc, out,
	    "".join("stderr: " + l + "\n" for l in err.splitlines())))
	m = SANITIZER_RE.search(err)
	assert not m, "sanitizer report from relayctl %s: %s" % (args[0], err[m.start():m.start() + 1500])
	assert rc >= 0 and rc < 128, "relayctl %s died (status %d): %r" % (args[0], rc, err)
	return rc, out, err


def rfc3339(s, what):
	assert isinstance(s, str) and RFC3339_RE.match(s), "%s: %r is not RFC 3339 UTC (...Z)" % (what, s)
	return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
	    tzinfo=datetime.timezone.utc).timestamp()


def queue_json(t, conf):
	"""relayctl queue --json, checked against the schema of interface.md;
	returns {id: message} with arrival and next_attempt as unix seconds
	(next_attempt None when null)."""
	rc, out, err = ctl(t, conf, "queue", "--json")
	assert rc == 0, "queue --json: exit %d: %s" % (rc, err)
	assert err == "", "queue --json wrote to stderr: %r" % err
	try:
		doc = json.loads(out)
	except ValueError as e:
		raise AssertionError("queue --json: not JSON (%s):\n%s" % (e, out))
	assert isinstance(doc, list), "queue --json: not an array: %r" % out
	msgs = {}
	for m in doc:
		assert isinstance(m, dict), "queue --json: element not an object: %r" % m
		keys = {"id", "arrival", "size", "sender", "recipients"}
		assert set(m) == keys, "message keys %s, expected %s" % (sorted(m), sorted(keys))
		assert isinstance(m["id"], str) and re.match("^" + QID_RE + "$", m["id"]), \
		    "id %r" % m["id"]
		m["arrival"] = rfc3339(m["arrival"], m["id"] + " arrival")
		assert type(m["size"]) is int and m["size"] > 0, "%s size %r" % (m["id"], m["size"])
		assert isinstance(m["sender"], str), "%s sender %r" % (m["id"], m["sender"])
		assert isinstance(m["recipients"], list), "%s recipients %r" % (m["id"], m["recipients"])
		for r in m["recipients"]:
			rkeys = {"address", "attempts", "next_attempt", "last_error"}
			assert isinstance(r, dict) and set(r) == rkeys, \
			    "%s recipient keys %s, expected %s" % (m["id"], sorted(r), sorted(rkeys))
			assert isinstance(r["address"], str) and "@" in r["address"], "address %r" % r["address"]
			assert type(r["attempts"]) is int and r["attempts"] >= 0, "attempts %r" % r["attempts"]
			if r["next_attempt"] is not None:
				r["next_attempt"] = rfc3339(r["next_attempt"], m["id"] + " next_attempt")
			assert r["last_error"] is None or (isinstance(r["last_error"], str) and
			    r["last_error"]), "last_error %r" % r["last_error"]
		assert m["id"] not in msgs, "%s listed twice" % m["id"]
		msgs[m["id"]] = m
	return msgs


def queue_table(t, conf):
	"""relayctl queue (the table) parsed: {id: {"age", "size", "sender",
	"active", "rcpts": {address: {"attempts", "next", "error"}}}}, and
	the text."""
	rc, out, err = ctl(t, conf, "queue")
	assert rc == 0, "queue: exit %d: %s" % (rc, err)
	if out == "Mail queue is empty\n":
		return {}, out
	lines = out.splitlines()
	assert re.match(r"^ID\s+Age\s+Size\s+Sender", lines[0]), "table header: %r" % lines[0]
	msgs = {}
	cur = rc_ = None
	for l in lines[1:-1]:
		m = re.match(r"^(" + QID_RE + r")\s+(\S+)\s+(\d+)  <([^>]*)>(  \(being delivered\))?$", l)
		if m:
			cur = msgs[m.group(1)] = {"age": m.group(2), "size": int(m.group(3)),
			    "sender": m.group(4), "active": bool(m.group(5)), "rcpts": {}}
			continue
		m = re.match(r"^ +<([^>]*)>  attempts (\d+), next (now|in \S+)$", l)
		if m and cur is not None:
			rc_ = cur["rcpts"][m.group(1)] = {"attempts": int(m.group(2)), "next": m.group(3),
			    "error": None}
			continue
		m = re.match(r"^ +last error: (.*)$", l)
		if m and rc_ is not None:
			rc_["error"] = m.group(1)
			continue
		raise AssertionError("queue: unexpected line %r in:\n%s" % (l, out))
	n = len(msgs)
	m = re.match(r"^-- (\d+) messages?, (\d+) bytes$", lines[-1])
	assert m and int(m.group(1)) == n, "queue: last line %r (%d messages listed)" % (lines[-1], n)
	assert int(m.group(2)) == sum(x["size"] for x in msgs.values()), \
	    "queue: total %s bytes, sizes listed add up to %d" % (m.group(2),
	    sum(x["size"] for x in msgs.values()))
	return msgs, out


def seconds(s):
	"""'in 59m58s' / '1h00m' -> seconds (lower bound for the coarse forms)."""
	s = s.replace("in ", "")
	total = 0
	for n, u in re.findall(r"(\d+)([dhms])", s):
		total += int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u]
	return total


def assert_empty(t, conf):
	msgs, out = queue_table(t, conf)
	assert out == "Mail queue is empty\n", "queue: expected 'Mail queue is empty', got:\n%s" % out
	js = queue_json(t, conf)
	assert js == {}, "queue --json: expected [], got %s" % list(js)


# ---------------------------------------------------------------------------
# queue

def test_queue_empty(t):
	d, up = simple_relay(t)
	rc, out, err = ctl(t, d.conf, "queue")
	assert (rc, out, err) == (0, "Mail queue is empty\n", ""), \
	    "queue on an empty queue: %d %r %r" % (rc, out, err)
	rc, out, err = ctl(t, d.conf, "queue", "--json")
	assert rc == 0 and err == "", "queue --json: exit %d: %r" % (rc, err)
	assert json.loads(out) == [] and out.strip() == "[]", "queue --json: %r, expected []" % out


def check_deferred(t, d, qid, sender, rcpt, t0, t1, error_re):
	"""The table and the JSON of one message deferred once with SLOW_RETRY."""
	tab, text = queue_table(t, d.conf)
	assert set(tab) == {qid}, "queue lists %s, expected only %s:\n%s" % (sorted(tab), qid, text)
	m = tab[qid]
	assert m["sender"] == sender, "queue: sender <%s>, expected <%s>" % (m["sender"], sender)
	assert not m["active"], "queue: %s shown as being delivered:\n%s" % (qid, text)
	assert list(m["rcpts"]) == [rcpt], "queue: recipients %s, expected [%s]" % (list(m["rcpts"]), rcpt)
	r = m["rcpts"][rcpt]
	assert r["attempts"] == 1, "queue: attempts %d, expected 1:\n%s" % (r["attempts"], text)
	assert r["next"].startswith("in ") and 3300 <= seconds(r["next"]) <= 3600, \
	    "queue: next %r, expected in about an hour:\n%s" % (r["next"], text)
	assert r["error"] and re.search(error_re, r["error"]), \
	    "queue: last error %r does not match /%s/" % (r["error"], error_re)

	js = queue_json(t, d.conf)
	assert set(js) == {qid}, "queue --json lists %s, expected only %s" % (sorted(js), qid)
	j = js[qid]
	assert j["sender"] == sender, "json sender %r" % j["sender"]
	assert j["size"] == m["size"], "json size %d, table %d" % (j["size"], m["size"])
	assert int(t0) - 1 <= j["arrival"] <= t1 + 1, "json arrival %s not within the submission (%s..%s)" % (
	    j["arrival"], t0, t1)
	assert [x["address"] for x in j["recipients"]] == [rcpt], "json recipients %r" % j["recipients"]
	jr = j["recipients"][0]
	assert jr["attempts"] == 1, "json attempts %r, expected 1" % jr["attempts"]
	now = time.time()
	assert jr["next_attempt"] is not None and 3300 <= jr["next_attempt"] - now <= 3605, \
	    "json next_attempt %r is not about an hour ahead of now (%d)" % (jr["next_attempt"], now)
	assert jr["last_error"] and re.search(error_re, jr["last_error"]), \
	    "json last_error %r does not match /%s/" % (jr["last_error"], error_re)
	return m, j


def test_queue_deferred_450(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "reply": "450 4.2.1 Mailbox busy, try later"}])
	d, _ = simple_relay(t, up=up, retry=SLOW_RETRY)
	body = "Deferred once.\r\n" * 20
	t0 = time.time()
	qid = submit(d, sender="alice@example.com", rcpts=("bob@example.net",), body=body)
	t1 = time.time()
	wait_delivery(d, qid, "bob@example.net", "deferred")
	m, j = check_deferred(t, d, qid, "alice@example.com", "bob@example.net", t0, t1,
	    r"4\.2\.1.*Mailbox busy, try later")
	assert len(body) < j["size"] < len(body) + 4096, "size %d for a %d-byte body" % (j["size"], len(body))


def test_queue_deferred_unreachable(t):
	port = t.free_port()
	conf = relay_config(t, {"down": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "down"}, retry=SLOW_RETRY)
	d = t.start(conf)
	t0 = time.time()
	qid = submit(d, sender="carol@example.com", rcpts=("dave@example.net",))
	t1 = time.time()
	wait_delivery(d, qid, "dave@example.net", "deferred")
	check_deferred(t, d, qid, "carol@example.com", "dave@example.net", t0, t1,
	    r"connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: Connection refused" % port)


def test_queue_lists_pending_recipients_only(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "later@", "reply": "450 4.2.2 Over quota"}])
	d, _ = simple_relay(t, up=up, retry=SLOW_RETRY)
	qid = submit(d, sender="alice@example.com", rcpts=("now@example.net", "later@example.net"))
	wait_delivery(d, qid, "now@example.net", "sent")
	wait_delivery(d, qid, "later@example.net", "deferred")
	got = up.wait_messages(1)
	assert got[0]["rcpt_tos"] == ["now@example.net"], "upstream got %s" % got[0]["rcpt_tos"]
	tab, text = queue_table(t, d.conf)
	assert set(tab) == {qid} and list(tab[qid]["rcpts"]) == ["later@example.net"], \
	    "queue should list only later@example.net for %s:\n%s" % (qid, text)
	assert "now@example.net" not in text, "the sent recipient is listed:\n%s" % text
	js = queue_json(t, d.conf)
	assert [r["address"] for r in js[qid]["recipients"]] == ["later@example.net"], \
	    "json recipients %r" % js[qid]["recipients"]
	assert re.search(r"Over quota", js[qid]["recipients"][0]["last_error"]), js[qid]


def test_queue_being_delivered(t):
	"""While an attempt is in progress: the table says so, next_attempt is
	null, and remove refuses (the message is not lost half-sent)."""
	up = start_upstream(t, script=[{"cmd": "MAIL", "delay": 6}])
	d, _ = simple_relay(t, up=up, retry=SLOW_RETRY)
	qid = submit(d, sender="alice@example.com", rcpts=("bob@example.net",))
	up.wait(lambda u: u.cmds("MAIL"), "MAIL FROM", timeout=10)
	tab, text = queue_table(t, d.conf)
	assert tab[qid]["active"], "queue does not show %s as being delivered:\n%s" % (qid, text)
	js = queue_json(t, d.conf)
	r = js[qid]["recipients"][0]
	assert r["next_attempt"] is None and r["attempts"] == 0, \
	    "json during the attempt: %r (expected next_attempt null, attempts 0)" % r
	rc, out, err = ctl(t, d.conf, "remove", qid)
	assert rc == 1 and "being delivered right now; try again" in err and out == "", \
	    "remove during delivery: exit %d, out %r, err %r" % (rc, out, err)
	wait_delivery(d, qid, "bob@example.net", "sent", timeout=20)
	assert len(up.wait_messages(1)) == 1
	assert d.count_log(r"%s: removed by relayctl" % qid) == 0, "removed although refused:\n%s" % d.log_tail()
	assert_empty(t, d.conf)


# ---------------------------------------------------------------------------
# flush

def test_flush_all_retries_now(t):
	"""Refused twice with 450, then accepted; with retries an hour apart,
	only flush can explain the second and third attempts, and the attempt
	count goes on (2/5, 3/5), it is not reset."""
	up = start_upstream(t, script=[{"cmd": "RCPT", "reply": "450 4.7.1 Greylisted", "times": 2}])
	d, _ = simple_relay(t, up=up, retry=SLOW_RETRY)
	qid = submit(d, sender="alice@example.com", rcpts=("bob@example.net",))
	r = wait_delivery(d, qid, "bob@example.net", "deferred")
	assert (r["attempt"], r["attempts"]) == (1, 5), r["line"]
	assert not up.quiet_for(1.5, ev="connect"), "relayd retried on its own within 1.5 s"
	assert len(deliveries(d, qid)) == 1

	rc, out, err = ctl(t, d.conf, "flush")
	assert (rc, out, err) == (0, "1 message scheduled for delivery now\n", ""), \
	    "flush: %d %r %r" % (rc, out, err)
	r = wait_delivery(d, qid, "bob@example.net", "deferred", count=2)
	assert (r["attempt"], r["attempts"]) == (2, 5), "after flush: %s" % r["line"]
	js = queue_json(t, d.conf)
	assert js[qid]["recipients"][0]["attempts"] == 2, "json attempts after flush: %r" % js[qid]
	assert js[qid]["recipients"][0]["next_attempt"] - time.time() > 3300, js[qid]

	rc, out, err = ctl(t, d.conf, "flush")
	assert (rc, out) == (0, "1 message scheduled for delivery now\n"), "flush: %d %r %r" % (rc, out, err)
	r = wait_delivery(d, qid, "bob@example.net", "sent")
	assert (r["attempt"], r["attempts"]) == (3, 5), "after the second flush: %s" % r["line"]
	assert len(up.wait_messages(1)) == 1
	assert_empty(t, d.conf)
	rc, out, err = ctl(t, d.conf, "flush")
	assert (rc, out) == (0, "0 messages scheduled for delivery now\n"), \
	    "flush of an empty queue: %d %r %r" % (rc, out, err)


def test_flush_one_id(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "reply": "450 4.3.0 Not now", "times": 2}])
	d, _ = simple_relay(t, up=up, retry=SLOW_RETRY)
	q1 = submit(d, sender="alice@example.com", rcpts=("one@example.net",))
	wait_delivery(d, q1, "one@example.net", "deferred")
	q2 = submit(d, sender="alice@example.com", rcpts=("two@example.net",))
	wait_delivery(d, q2, "two@example.net", "deferred")
	rc, out, err = ctl(t, d.conf, "flush", q2)
	assert (rc, out, err) == (0, "1 message scheduled for delivery now\n", ""), \
	    "flush %s: %d %r %r" % (q2, rc, out, err)
	r = wait_delivery(d, q2, "two@example.net", "sent")
	assert r["attempt"] == 2, r["line"]
	time.sleep(1.5)
	assert len(deliveries(d, q1)) == 1, "%s was retried too:\n%s" % (q1,
	    "\n".join(x["line"] for x in deliveries(d, q1)))
	got = up.messages()
	assert [m["rcpt_tos"] for m in got] == [["two@example.net"]], "upstream got %s" % got
	js = queue_json(t, d.conf)
	assert set(js) == {q1} and js[q1]["recipients"][0]["attempts"] == 1, "json: %r" % js


def test_flush_unknown_id(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "reply": "450 4.3.0 Not now", "times": 1}])
	d, _ = simple_relay(t, up=up, retry=SLOW_RETRY)
	rc, out, err = ctl(t, d.conf, "flush", "NoSuchId123")
	assert rc == 1, "flush of an unknown id: exit %d" % rc
	assert "relayctl flush: NoSuchId123: unknown queue id\n" in err, "stderr %r" % err
	# a known and an unknown id: the known one is flushed, the status still says 1
	qid = submit(d, sender="alice@example.com", rcpts=("bob@example.net",))
	wait_delivery(d, qid, "bob@example.net", "deferred")
	rc, out, err = ctl(t, d.conf, "flush", "NoSuchId123", qid)
	assert rc == 1 and "NoSuchId123: unknown queue id" in err, "exit %d, stderr %r" % (rc, err)
	assert out == "1 message scheduled for delivery now\n", "stdout %r" % out
	wait_delivery(d, qid, "bob@example.net", "sent")


# ---------------------------------------------------------------------------
# remove

def test_remove(t):
	"""A removed message is gone for good: logged, off the queue and the
	spool, not delivered when the upstream comes back and the queue is
	flushed, and still gone after a restart."""
	port = t.free_port()
	conf = relay_config(t, {"up": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "up"}, retry=SLOW_RETRY)
	d = t.start(conf)
	gone = submit(d, sender="alice@example.com", rcpts=("gone@example.net",))
	kept = submit(d, sender="alice@example.com", rcpts=("kept@example.net",))
	wait_delivery(d, gone, "gone@example.net", "deferred")
	wait_delivery(d, kept, "kept@example.net", "deferred")

	rc, out, err = ctl(t, conf, "remove", gone)
	assert (rc, out, err) == (0, "%s: removed\n" % gone, ""), "remove: %d %r %r" % (rc, out, err)
	d.wait_log(r"^.*%s: removed by relayctl$" % gone)
	tab, text = queue_table(t, conf)
	assert set(tab) == {kept}, "queue after remove:\n%s" % text
	assert set(queue_json(t, conf)) == {kept}

	rc, out, err = ctl(t, conf, "remove", gone)
	assert rc == 1 and "%s: unknown queue id" % gone in err and out == "", \
	    "second remove: exit %d, %r %r" % (rc, out, err)

	up = start_upstream(t, port=port)
	rc, out, err = ctl(t, conf, "flush")
	assert (rc, out) == (0, "1 message scheduled for delivery now\n"), "flush: %d %r %r" % (rc, out, err)
	wait_delivery(d, kept, "kept@example.net", "sent")
	time.sleep(1)
	got = [m["rcpt_tos"] for m in up.messages(accepted=None)]
	assert got == [["kept@example.net"]], "upstream got %s (the removed one must not go)" % got
	assert deliveries(d, gone, status="sent") == []

	assert d.stop() == 0
	d2 = t.start(conf)
	m = d2.wait_log(r"queue: (\d+) messages? loaded from the spool")
	assert m.group(1) == "0", m.group(0)
	assert_empty(t, conf)
	rc, out, err = ctl(t, conf, "flush", gone)
	assert rc == 1 and "unknown queue id" in err, "flush of a removed id after restart: %d %r" % (rc, err)
	time.sleep(1)
	got = [m["rcpt_tos"] for m in up.messages(accepted=None)]
	assert got == [["kept@example.net"]], "after the restart the upstream got %s" % got


def test_remove_unknown_id(t):
	d, up = simple_relay(t)
	rc, out, err = ctl(t, d.conf, "remove", "NoSuchId123")
	assert rc == 1 and out == "", "remove of an unknown id: exit %d, stdout %r" % (rc, out)
	assert "NoSuchId123: unknown queue id" in err, "stderr %r" % err
	rc, out, err = ctl(t, d.conf, "remove")
	assert rc == 64 and "usage:" in err, "remove without ids: exit %d %r" % (rc, err)
	assert d.count_log(r"removed by relayctl") == 0, d.log_tail()


# ---------------------------------------------------------------------------
# test

TEST_LINE1 = r"^(%s): queued, waiting for the upstream's answer$" % QID_RE


def parse_test_output(out):
	lines = out.splitlines()
	assert len(lines) == 2, "relayctl test printed %d lines, expected 2:\n%s" % (len(lines), out)
	m = re.match(TEST_LINE1, lines[0])
	assert m, "first line %r" % lines[0]
	qid = m.group(1)
	m = re.match(r"^%s: to=<([^>]*)>, dsn=(\d\.\d{1,3}\.\d{1,3}), status=(sent|deferred|bounced) "
	    r"\((.*)\)$" % qid, lines[1])
	assert m, "second line %r (id %s)" % (lines[1], qid)
	return qid, m.group(1), m.group(2), m.group(3), m.group(4)


def test_test_sent(t):
	d, up = simple_relay(t)
	rc, out, err = ctl(t, d.conf, "test", "--from", "postmaster@example.com",
	    "--to", "admin@example.net")
	assert rc == 0, "relayctl test: exit %d: %r %r" % (rc, out, err)
	qid, to, dsn, status, reason = parse_test_output(out)
	assert (to, status) == ("admin@example.net", "sent") and dsn.startswith("2."), out
	assert "queued as UP00001" in reason, "the upstream's reply is not shown: %r" % reason
	r = wait_delivery(d, qid, "admin@example.net", "sent")
	assert r["dsn"] == dsn, "log dsn %s, relayctl %s" % (r["dsn"], dsn)
	got = up.wait_messages(1)
	assert got[0]["mail_from"] == "postmaster@example.com" and got[0]["rcpt_tos"] == ["admin@example.net"], \
	    "upstream envelope: %s %s" % (got[0]["mail_from"], got[0]["rcpt_tos"])
	data = got[0]["data"].decode("utf-8", "replace")
	assert re.search(r"^Subject: relayd test message\r$", data, re.M), "no test Subject in:\n%s" % data
	d.wait_log(r"%s: from=<postmaster@example\.com>" % qid)


def test_test_bounced(t):
	up = start_upstream(t, script=[{"cmd": "RCPT", "match": "nobody@", "reply":
	    "550 5.1.1 No such user here"}])
	d, _ = simple_relay(t, up=up, bounces=False)
	rc, out, err = ctl(t, d.conf, "test", "--from", "postmaster@example.com",
	    "--to", "nobody@example.net")
	assert rc == 1, "relayctl test against a 550: exit %d (expected 1): %r %r" % (rc, out, err)
	qid, to, dsn, status, reason = parse_test_output(out)
	assert (to, status, dsn) == ("nobody@example.net", "bounced", "5.1.1"), out
	assert "No such user here" in reason, "reason %r" % reason
	wait_delivery(d, qid, "nobody@example.net", "bounced")
	assert up.messages() == [], "the upstream accepted something"


def test_test_deferred_unreachable(t):
	port = t.free_port()
	conf = relay_config(t, {"up": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "up"}, retry=SLOW_RETRY)
	d = t.start(conf)
	rc, out, err = ctl(t, conf, "test", "--from", "postmaster@example.com", "--to", "x@example.net")
	assert rc == 1, "relayctl test, upstream unreachable: exit %d: %r %r" % (rc, out, err)
	qid, to, dsn, status, reason = parse_test_output(out)
	assert status == "deferred" and dsn.startswith("4."), out
	assert "connect to 127.0.0.1[127.0.0.1]:%d: Connection refused" % port in reason, reason
	r = wait_delivery(d, qid, "x@example.net", "deferred")
	assert (r["dsn"], r["reason"]) == (dsn, reason), "relayctl said %s (%s), the log %s (%s)" % (
	    dsn, reason, r["dsn"], r["reason"])
	js = queue_json(t, conf)
	assert qid in js and js[qid]["recipients"][0]["attempts"] == 1, "the test message is not queued: %r" % js


def test_test_refused_by_relay(t):
	"""Submission refused (sender domain not configured, 550 5.7.1): the
	sysexits code relayd-sendmail uses, 77, and no queue id."""
	d, up = simple_relay(t)
	rc, out, err = ctl(t, d.conf, "test", "--from", "x@unconfigured.example", "--to", "y@example.net")
	assert rc == 77, "refused sender: exit %d (expected 77): %r %r" % (rc, out, err)
	assert "5.7.1" in err and out == "", "stdout %r stderr %r" % (out, err)
	rc, out, err = ctl(t, d.conf, "test", "--from", "x@example.com")
	assert rc == 64 and "usage:" in err, "test without --to: exit %d" % rc


# ---------------------------------------------------------------------------
# relayd not running

DAEMON_CMDS = (("queue",), ("queue", "--json"), ("flush",), ("flush", "AbCdEf12345"),
    ("remove", "AbCdEf12345"))


def check_not_running(t, conf, why):
	for cmd in DAEMON_CMDS:
		rc, out, err = ctl(t, conf, *cmd)
		assert rc == 69, "%s: relayctl %s: exit %d (expected 69): %r" % (why, " ".join(cmd), rc, err)
		assert err.startswith(NOT_RUNNING) and out == "", \
		    "%s: relayctl %s: stdout %r stderr %r" % (why, " ".join(cmd), out, err)
	rc, out, err = ctl(t, conf, "test", "--from", "a@example.com", "--to", "b@example.net")
	assert rc == 75, "%s: relayctl test: exit %d (expected 75): %r" % (why, rc, err)
	assert "cannot connect to the relay" in err, "%s: relayctl test: stderr %r" % (why, err)


def _wait_socket(sock, timeout=10):
	"""relayd opens its control socket just after its listeners, which
	t.start() waits for: wait (bounded) for the socket too."""
	deadline = time.monotonic() + timeout
	while not (os.path.exists(sock) and stat.S_ISSOCK(os.lstat(sock).st_mode)):
		assert time.monotonic() < deadline, "no control socket at %s after %gs" % (sock,
		    timeout)
		time.sleep(0.05)


def test_not_running(t):
	conf = t.config()
	check_not_running(t, conf, "never started")
	d = t.start(conf)
	sock = os.path.join(t.dir, "control.sock")
	_wait_socket(sock)
	assert d.stop() == 0
	assert not os.path.exists(sock), "control socket left behind after a clean stop"
	check_not_running(t, conf, "stopped")
	d = t.start(conf)
	_wait_socket(sock)
	d.kill9()
	assert os.path.exists(sock), "kill -9 should leave a stale socket (the case tested next)"
	check_not_running(t, conf, "killed, stale socket")
	d = t.start(conf)	# replaces the stale socket
	rc, out, err = ctl(t, conf, "queue")
	assert (rc, out) == (0, "Mail queue is empty\n"), "after restart: %d %r %r" % (rc, out, err)


# ---------------------------------------------------------------------------
# who may talk to the daemon

def test_socket_permissions(t):
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	import shutil
	if shutil.which("useradd") is None or shutil.which("runuser") is None:
		print("no useradd/runuser; skipped")
		return
	try:
		nobody = pwd.getpwnam("nobody")
	except KeyError:
		print("no user nobody; skipped")
		return
	name = "rctl%d" % os.getpid()
	r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
	    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
	    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
	assert r.returncode == 0, "useradd %s: %s" % (name, r.stdout.decode())
	try:
		socket_permissions(t, name, nobody)
	finally:
		# userdel refuses while a process runs as the user: relayd first
		for d in t.daemons:
			d.stop()
		r = subprocess.run(["userdel", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
		    timeout=30)
		try:
			grp.getgrnam(name)
			subprocess.run(["groupdel", name], stdout=subprocess.DEVNULL,
			    stderr=subprocess.DEVNULL, timeout=30)
		except KeyError:
			pass
	assert r.returncode == 0, "userdel %s: %s" % (name, r.stdout.decode())


def socket_permissions(t, name, nobody):
	pw = pwd.getpwnam(name)
	assert nobody.pw_gid != pw.pw_gid and name not in grp.getgrgid(nobody.pw_gid).gr_mem
	os.chmod(t.dir, 0o755)
	# a secret only root can read: relayctl must not need it
	secret = write_secret(t, "up.secret", "Pa55-only-root", mode=0o600)
	certs = make_ca(t)
	up = start_upstream(t, tls="starttls", certs=certs, auth="PLAIN", password="Pa55-only-root",
	    auth_required=True)
	conf = relay_config(t, {"up": up.conf(auth="plain", username="relayuser",
	    password_file=secret, tls_ca_file=certs.ca)}, {"example.com": "up"}, retry=SLOW_RETRY,
	    user=name)
	d = t.start(conf)
	sock = os.path.join(t.dir, "control.sock")
	st = os.lstat(sock)
	assert stat.S_ISSOCK(st.st_mode), "%s is not a socket" % sock
	assert stat.S_IMODE(st.st_mode) == 0o660, "control socket mode %o, expected 660" % stat.S_IMODE(st.st_mode)
	assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), \
	    "control socket owned by %d:%d, expected %s (%d:%d)" % (st.st_uid, st.st_gid, name,
	    pw.pw_uid, pw.pw_gid)

	# another unprivileged user: a clear refusal, no crash
	for cmd in (("queue",), ("flush",), ("remove", "AbCdEf12345")):
		rc, out, err = ctl(t, conf, *cmd, user="nobody")
		assert rc == 1, "relayctl %s as nobody: exit %d (expected 1): %r" % (cmd[0], rc, err)
		assert out == "" and "Permission denied" in err and "relay user's group" in err, \
		    "relayctl %s as nobody: stdout %r stderr %r" % (cmd[0], out, err)
		assert "is not running" not in err, "the daemon runs; stderr says otherwise: %r" % err

	qid = submit(d, sender="alice@example.com", rcpts=("bob@example.net",))
	wait_delivery(d, qid, "bob@example.net", "sent")
	up.stop()
	qid = submit(d, sender="alice@example.com", rcpts=("bob@example.net",))
	wait_delivery(d, qid, "bob@example.net", "deferred")

	# the relay user, and another user given the relay group
	for user, group in ((name, None), ("nobody", name)):
		who = user + (" in group " + group if group else "")
		rc, out, err = ctl(t, conf, "queue", user=user, group=group)
		assert rc == 0 and err == "", "relayctl queue as %s: exit %d: %r" % (who, rc, err)
		assert re.search(r"^%s\s" % qid, out, re.M), "queue as %s does not list %s:\n%s" % (who, qid, out)
		rc, out, err = ctl(t, conf, "queue", "--json", user=user, group=group)
		assert rc == 0 and [m["id"] for m in json.loads(out)] == [qid], \
		    "queue --json as %s: exit %d %r %r" % (who, rc, out, err)
	rc, out, err = ctl(t, conf, "remove", qid, user="nobody", group=name)
	assert (rc, out) == (0, "%s: removed\n" % qid), "remove as a group member: %d %r %r" % (rc, out, err)
	d.wait_log(r"%s: removed by relayctl" % qid)


test_socket_permissions.timeout = 90



def test_remove_survives_kill9(t):
	"""The removal is on disk when relayctl hears "removed": a kill -9
	right after it does not bring the message back."""
	port = t.free_port()
	conf = relay_config(t, {"up": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "up"}, retry=SLOW_RETRY)
	d = t.start(conf)
	qids = [submit(d, sender="alice@example.com", rcpts=("r%d@example.net" % i,)) for i in range(3)]
	for i, q in enumerate(qids):
		wait_delivery(d, q, "r%d@example.net" % i, "deferred")
	rc, out, err = ctl(t, conf, "remove", *qids[:2])
	assert (rc, out) == (0, "".join("%s: removed\n" % q for q in qids[:2])), \
	    "remove: %d %r %r" % (rc, out, err)
	d.kill9()
	d2 = t.start(conf)
	m = d2.wait_log(r"queue: (\d+) messages? loaded from the spool")
	assert m.group(1) == "1", "after kill -9: %s (expected only %s left)" % (m.group(0), qids[2])
	js = queue_json(t, conf)
	assert set(js) == {qids[2]}, "after kill -9 the queue holds %s, expected only %s" % (sorted(js), qids[2])


# ---------------------------------------------------------------------------
# the control socket's creation: nothing another user can swap is followed

def victim_file(t):
	"""A root file that relayd must never change: (path, its stat)."""
	v = os.path.join(t.dir, "victim")
	with open(v, "w") as f:
		f.write("root's own file\n")
	os.chmod(v, 0o644)
	return v, os.stat(v)


def assert_untouched(path, st0):
	st = os.lstat(path)
	got = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
	want = (st0.st_uid, st0.st_gid, stat.S_IMODE(st0.st_mode))
	assert got == want, "%s changed: owner %d:%d mode %o, was %d:%d mode %o" % ((path,) + got + want)


def start_refused(t, conf, regex):
	"""relayd must exit 2 at start with a log line matching regex."""
	d = t.start(conf, wait=False)
	rc = d.wait_exit(15)
	d.expected_exit = True
	assert rc == 2, "relayd: exit %s (expected 2); log:\n%s" % (rc, d.log_tail())
	assert re.search(regex, d.log()), "no /%s/ in the log:\n%s" % (regex, d.log_tail())


def test_control_dir_others_may_write(t):
	"""A control directory that group or others may write to, or that
	another user owns, is refused with a clear error: whoever can write
	there could swap the socket for a link while relayd sets it up."""
	ctl_dir = os.path.join(t.dir, "run")
	os.mkdir(ctl_dir)
	conf = t.config(control=os.path.join(ctl_dir, "control.sock"))
	for mode in (0o777, 0o1777, 0o770):
		os.chmod(ctl_dir, mode)
		start_refused(t, conf, r"control socket directory %s is writable by others "
		    r"\(mode %04o\)" % (re.escape(ctl_dir), mode))
		assert os.listdir(ctl_dir) == [], "left in %s: %s" % (ctl_dir, os.listdir(ctl_dir))
	if os.geteuid() == 0:
		os.chmod(ctl_dir, 0o755)
		pw = pwd.getpwnam("nobody")
		os.chown(ctl_dir, pw.pw_uid, pw.pw_gid)
		start_refused(t, conf, r"control socket directory %s belongs to nobody \(uid %d\)" %
		    (re.escape(ctl_dir), pw.pw_uid))
		assert os.listdir(ctl_dir) == []


def test_control_symlink_at_start_not_followed(t):
	"""A symlink where the socket goes is neither followed nor replaced."""
	victim, st0 = victim_file(t)
	conf = t.config()
	sock = os.path.join(t.dir, "control.sock")
	os.symlink(victim, sock)
	start_refused(t, conf, r"%s exists and is not a socket" % re.escape(sock))
	assert os.path.islink(sock) and os.readlink(sock) == victim
	assert_untouched(victim, st0)


def test_control_socket_swapped_while_set_up(t):
	"""Started as root with `user`, relayd hands the socket to that user.
	The relay user owns the control directory (as tmpfiles.d makes
	/run/relayd), so it could swap the fresh socket for a symlink to any
	file before its owner and mode are set.  strace holds relayd for 1.5 s
	right after each bind(); the test swaps the socket in that moment: the
	file the symlink points to must stay as it was."""
	import shutil
	from harness import descendants
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	if shutil.which("strace") is None:
		print("no strace; skipped")
		return
	pw = pwd.getpwnam("nobody")
	os.chmod(t.dir, 0o755)
	ctl_dir = os.path.join(t.dir, "run")
	os.mkdir(ctl_dir, 0o755)
	os.chown(ctl_dir, pw.pw_uid, pw.pw_gid)
	sock = os.path.join(ctl_dir, "control.sock")
	victim, st0 = victim_file(t)
	conf = t.config(control=sock, user="nobody")
	logpath = os.path.join(t.dir, "relayd.strace.log")
	with open(logpath, "wb") as logf:
		p = t.spawn(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=bind",
		    "-e", "inject=bind:delay_exit=1500000", t.relayd, "-d", "-f", conf.path],
		    stdout=logf, stderr=subprocess.STDOUT)

	def log():
		with open(logpath, errors="replace") as f:
			return f.read()
	try:
		swapped = False
		deadline = time.monotonic() + 20
		while not swapped and time.monotonic() < deadline and p.poll() is None:
			try:
				if stat.S_ISSOCK(os.lstat(sock).st_mode):
					os.symlink(victim, sock + ".new")
					os.rename(sock + ".new", sock)
					swapped = True
			except FileNotFoundError:
				time.sleep(0.001)
		assert swapped, "the control socket never appeared; log:\n%s" % log()
		while "running as user nobody" not in log() and p.poll() is None and \
		    time.monotonic() < deadline:
			time.sleep(0.05)
		assert "running as user nobody" in log(), "relayd did not start; log:\n%s" % log()
		assert_untouched(victim, st0)
		assert not SANITIZER_RE.search(log()), log()
	finally:
		for pid, _ in descendants(p.pid):
			try:
				os.kill(pid, 15)
			except ProcessLookupError:
				pass
		p.wait(30)


test_control_socket_swapped_while_set_up.timeout = 90
