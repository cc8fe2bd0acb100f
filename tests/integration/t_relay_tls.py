"""Relaying over TLS, with a test CA made at test time: STARTTLS and
implicit TLS with the chain and host name verified (and SNI sent); a
wrong-name or untrusted certificate, a server without STARTTLS, a refused
STARTTLS and a TLS 1.1-only server all defer and nothing goes in plain
text; AUTH PLAIN and LOGIN right and wrong (auth failures defer with
4.7.x, loudly); no password or AUTH payload in the log, even with -v;
plaintext injected after the 220 to STARTTLS is discarded, and a TLS
session dropped in the middle of the message text defers (issue 14);
an upstream that closes an idle TLS session leaves relayd running."""

import base64
import re
import signal
import time

from relayutil import (start_upstream, make_ca, relay_config, submit, wait_delivery,
    deliveries, expect_fields, write_secret, mail_params, DNSServer)

RCPT = "rcpt@example.net"
USER = "relayuser"
PASSWORD = "s3cret-Pa55"


def tls_relay(t, tls="starttls", cert_name="localhost", upconf=None, args=(), **upkw):
	"""A TLS upstream with a certificate from a fresh test CA, relayd
	pointed at it as "localhost" (resolved through a loopback DNS server
	too, in case relayd does not read /etc/hosts).  Returns (d, up, certs)."""
	certs = make_ca(t)
	dns = DNSServer({"localhost": {"A": ["127.0.0.1"]}})
	dns.use(t)
	up = start_upstream(t, tls=tls, certs=certs, cert_name=cert_name, **upkw)
	s = up.conf(host="localhost", tls_ca_file=certs.ca)
	s.update(upconf or {})
	conf = relay_config(t, {"up": s}, {"example.com": "up"})
	d = t.start(conf, args=args)
	return d, up, certs


def no_plaintext_mail(up):
	bad = [e["cmd"] + " " + (e["arg"] or "") for e in up.cmds()
	    if e["cmd"] in ("MAIL", "RCPT", "DATA", "AUTH")]
	assert not bad, "commands sent although TLS failed:\n%s" % "\n".join(bad)


def test_starttls_verified(t):
	d, up, _ = tls_relay(t, "starttls")
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	assert m["tls"], "message went in plain text"
	tls = up.events("tls")
	assert tls and tls[0]["starttls"], "no STARTTLS handshake seen: %s" % tls
	assert tls[0]["version"] in ("TLSv1.2", "TLSv1.3"), tls[0]
	assert tls[0]["sni"] == "localhost", "SNI sent: %r" % tls[0]["sni"]
	cmds = up.cmds(conn=m["conn"])
	names = [e["cmd"] for e in cmds]
	i = names.index("STARTTLS")
	assert "EHLO" in names[i + 1:], "no EHLO after STARTTLS: %s" % names
	plain = [e["cmd"] for e in cmds[:i] if e["cmd"] not in ("EHLO", "HELO")]
	assert not plain, "before STARTTLS: %s" % plain


def test_implicit_tls_verified(t):
	d, up, _ = tls_relay(t, "implicit")
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	tls = up.events("tls")
	assert m["tls"] and tls and not tls[0]["starttls"], "tls events: %s" % tls
	assert tls[0]["sni"] == "localhost", "SNI sent: %r" % tls[0]["sni"]
	assert not up.cmds("STARTTLS"), "STARTTLS inside implicit TLS"


def test_starttls_wrong_name_defers(t):
	d, up, _ = tls_relay(t, "starttls", cert_name="wrong.example")
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."),
	    reason=re.compile(r"(?i)certificate verify failed.*hostname mismatch"))
	no_plaintext_mail(up)


def test_implicit_tls_wrong_name_defers(t):
	d, up, _ = tls_relay(t, "implicit", cert_name="wrong.example")
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."),
	    reason=re.compile(r"(?i)certificate verify failed.*hostname mismatch"))
	no_plaintext_mail(up)


def test_tls_verify_false_accepts_wrong_name(t):
	d, up, _ = tls_relay(t, "starttls", cert_name="wrong.example", upconf={"tls_verify": False})
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	assert up.wait_messages(1)[0]["tls"], "sent without TLS"


def test_untrusted_ca_defers(t):
	"""Without tls_ca_file the test CA is unknown: verify fails."""
	d, up, _ = tls_relay(t, "starttls", upconf={"tls_ca_file": None})
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."),
	    reason=re.compile(r"(?i)certificate verify failed"))
	no_plaintext_mail(up)


def test_no_starttls_offered_never_plain(t):
	up = start_upstream(t, tls="none", auth="PLAIN,LOGIN")
	conf = relay_config(t, {"up": up.conf(tls="starttls", auth="plain", username=USER,
	    password=PASSWORD)}, {"example.com": "up"})
	d = t.start(conf)
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."), reason=re.compile(r"(?i)STARTTLS"))
	no_plaintext_mail(up)


def test_starttls_refused_defers(t):
	d, up, _ = tls_relay(t, "starttls", script=[{"cmd": "STARTTLS", "reply": "454 4.7.0 TLS not available"}])
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."), reason=re.compile(r"454 4\.7\.0 TLS not available"))
	no_plaintext_mail(up)


def test_tls_1_1_server_refused(t):
	d, up, _ = tls_relay(t, "implicit", tls_max_version="TLSv1_1")
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."), reason=re.compile(r"TLS"))
	assert not up.cmds(), "commands went over a TLS 1.1 session: %s" % [e["cmd"] for e in up.cmds()]


def test_starttls_injection_discarded(t):
	"""The server writes, with its 220 to STARTTLS and in the same write,
	a fake EHLO reply announcing SIZE 10 (CVE-2011-0411's plaintext
	injection).  Read as the answer to the EHLO relayd sends inside TLS,
	it would bounce the message at once as too large (dsn 5.3.4), or
	leave the real reply as one nobody asked for.  It must be thrown away:
	the message goes on the first attempt, inside TLS, after a second
	EHLO that the server answered itself."""
	fake = "250-fake.example\r\n250 SIZE 10\r\n"
	d, up, _ = tls_relay(t, "starttls", script=[{"cmd": "STARTTLS", "inject": fake, "times": 1}],
	    ext="PIPELINING,8BITMIME,ENHANCEDSTATUSCODES,SIZE 10000000")
	qid = submit(d, body="MARK-inject " + "y" * 100 + "\r\n")
	x = wait_delivery(d, qid, RCPT, timeout=20)
	assert up.events("inject"), "the upstream did not inject anything: %s" % up.summary()
	expect_fields(x, status="sent", attempt=1)
	m = up.wait_messages(1)[0]
	assert m["tls"], "message went in plain text"
	cmds = [(e["cmd"], e["tls"]) for e in up.cmds(conn=m["conn"])]
	assert cmds[:3] == [("EHLO", False), ("STARTTLS", False), ("EHLO", True)], \
	    "commands: %s" % cmds
	assert "SIZE" in mail_params(up.cmds("MAIL")[0]["arg"]), \
	    "MAIL without SIZE=: the extensions were not those of the EHLO inside TLS: %s" % \
	    up.cmds("MAIL")
	print("injected %r after the 220; delivered: %s" % (fake, x["line"]))


def test_tls_dropped_mid_data_defers(t):
	"""The upstream tears the TLS session down (no close_notify, the TCP
	connection aborted) after two lines of the message text: deferred,
	retried, delivered once."""
	d, up, _ = tls_relay(t, "starttls", script=[{"cmd": "DATA", "action": "drop_mid_data",
	    "lines": 2, "times": 1}])
	qid = submit(d, subject="MARK-tlsdrop", body=("z" * 70 + "\r\n") * 2000)
	x = wait_delivery(d, qid, RCPT, "deferred", timeout=30)
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\."),
	    reason=re.compile(r"(?i)lost connection .* while sending the message text|"
	    r"lost connection"))
	y = wait_delivery(d, qid, RCPT, "sent", timeout=30)
	expect_fields(y, attempt=2)
	ms = [m for m in up.wait_messages(1) if b"MARK-tlsdrop" in m["data"]]
	assert len(ms) == 1 and ms[0]["tls"], "arrived %d times (tls: %s)" % (len(ms),
	    [m["tls"] for m in ms])
	print("deferred: %s" % x["reason"])


def test_upstream_closes_idle_tls_session(t):
	"""A session kept open for the next message is over TLS when the
	upstream goes away: relayd's QUIT finds the connection closed at once.
	relayd survives it and the next message is deferred (before: the
	client was freed inside bufferevent_enable() and then written to,
	an ASan heap-use-after-free; a SIGSEGV in the plain build)."""
	for tls in ("starttls", "implicit"):
		d, up, _ = tls_relay(t, tls)
		qid = submit(d, subject="MARK-idle-" + tls)
		wait_delivery(d, qid, RCPT, "sent")
		up.stop()
		time.sleep(0.3)
		assert d.alive(), "relayd died when the upstream closed its idle %s session" % tls
		qid = submit(d, subject="MARK-after-" + tls)
		x = wait_delivery(d, qid, RCPT, "deferred")
		assert d.alive(), "relayd died after the upstream closed its idle %s session" % tls
		d.stop()
		print("%s: %s" % (tls, x["reason"]))


def auth_relay(t, mech, offer="PLAIN,LOGIN", password=PASSWORD, use_file=False, args=(), script=None):
	pw = {"password_file": write_secret(t, "upstream.secret", password)} if use_file else \
	    {"password": password}
	return tls_relay(t, "starttls", upconf=dict(auth=mech, username=USER, **pw), args=args,
	    auth=offer, user=USER, password=PASSWORD, auth_require_tls=True, auth_required=True,
	    script=script)


def test_auth_plain(t):
	d, up, _ = auth_relay(t, "plain", use_file=True)
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	a = up.events("auth")
	assert [(e["mech"], e["user"], e["ok"]) for e in a] == [("PLAIN", USER, True)], a
	assert m["auth_user"] == USER


def test_auth_login(t):
	d, up, _ = auth_relay(t, "login")
	qid = submit(d)
	wait_delivery(d, qid, RCPT, "sent")
	m = up.wait_messages(1)[0]
	a = up.events("auth")
	assert [(e["mech"], e["user"], e["ok"]) for e in a] == [("LOGIN", USER, True)], a
	assert m["auth_user"] == USER


def auth_fails(t, mech):
	d, up, _ = auth_relay(t, mech, password="wrong-Passw0rd")
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\.7\.\d+$"),
	    reason=re.compile(r"authentication failed: 535 5\.7\.8"))
	assert not up.cmds("MAIL"), "MAIL after a failed AUTH"
	assert "wrong-Passw0rd" not in d.log(), "the password is in the log"
	# "logged loudly": besides the delivery line, a line at error/warning
	# level that says what to fix
	loud = [l for l in d.log().splitlines() if re.search(r"(?i)\b(error|warning|crit)", l) and
	    re.search(r"(?i)auth", l)]
	assert loud, "authentication failure not logged at error/warning level:\n%s" % d.log_tail()
	return d, up


def test_auth_plain_wrong_password_defers(t):
	auth_fails(t, "plain")


def test_auth_login_wrong_password_defers(t):
	auth_fails(t, "login")


def test_auth_535_scripted_defers_then_sent(t):
	d, up, _ = auth_relay(t, "plain", script=[{"cmd": "AUTH", "times": 1,
	    "reply": "535 5.7.3 Authentication unsuccessful"}])
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\.7\.\d+$"),
	    reason=re.compile(r"authentication failed: 535 5\.7\.3 Authentication unsuccessful"))
	y = wait_delivery(d, qid, RCPT, "sent")
	expect_fields(y, attempt=2)


def test_auth_failure_never_bounced(t):
	"""A wrong password is the relay's set-up, not the message's fault: it
	is deferred past the schedule's last attempt, never bounced (no DSN),
	and goes out once the password is fixed and relayd reloaded."""
	secret = write_secret(t, "upstream.secret", "wrong-Passw0rd")
	d, up, _ = tls_relay(t, "starttls", upconf=dict(auth="plain", username=USER,
	    password_file=secret, retry={"attempts": 2, "delay": 1, "max_delay": 1}),
	    auth="PLAIN", user=USER, password=PASSWORD, auth_require_tls=True, auth_required=True)
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred", count=3, timeout=30)
	expect_fields(x, attempt=3, attempts=2, dsn=re.compile(r"^4\.7\.\d+$"))
	assert not deliveries(d, qid, status="bounced"), "bounced:\n%s" % d.log_tail()
	assert not up.messages(), "something was sent (a DSN?):\n%s" % up.summary()
	write_secret(t, "upstream.secret", PASSWORD)
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"configuration reloaded")
	y = wait_delivery(d, qid, RCPT, "sent", timeout=30)
	assert y["attempt"] >= 4, y


test_auth_failure_never_bounced.timeout = 90


def test_auth_mechanism_not_offered_defers(t):
	d, up, _ = auth_relay(t, "plain", offer="LOGIN")
	qid = submit(d)
	x = wait_delivery(d, qid, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\.7\.\d+$"))
	assert not up.cmds("MAIL"), "MAIL without the configured AUTH"
	assert not [e for e in up.cmds("AUTH") if e["arg"].upper().startswith("PLAIN")], "AUTH PLAIN sent anyway"


def test_no_secrets_in_verbose_log(t):
	"""-v logs the dialogue with upstreams but never the password or the
	AUTH payloads (PLAIN's initial response, LOGIN's answers)."""
	secrets = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
	    base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode(),
	    base64.b64encode(("%s\0%s\0%s" % (USER, USER, PASSWORD)).encode()).decode()]
	logs = []
	for mech in ("plain", "login"):
		d, up, _ = auth_relay(t, mech, use_file=(mech == "plain"), args=["-v"])
		qid = submit(d)
		wait_delivery(d, qid, RCPT, "sent")
		time.sleep(0.3)
		log = d.log()
		logs.append(log)
		leaked = [s for s in secrets if s in log]
		assert not leaked, "%s: secret in the -v log: %s" % (mech, leaked)
		assert re.search(r"AUTH", log), "%s: -v shows no AUTH exchange at all:\n%s" % (mech, d.log_tail())
		assert "***" in log, "%s: AUTH arguments not replaced by *** in the -v log" % mech
		if mech == "login":
			u64 = base64.b64encode(USER.encode()).decode()
			assert u64 not in log, "LOGIN's user answer in the -v log"
		d.stop()
		up.stop()
