"""OAuth 2.0 upstreams (auth = "xoauth2"), with real parts: relayd fetches
its tokens over HTTPS from a token endpoint on loopback (oauthutil.py) that
checks each grant as Microsoft's and Google's do (form fields, the JWT's
PS256 or RS256 signature, claims and x5t#S256/kid), and relays to an upstream
(upstream.py --auth XOAUTH2) that accepts only a token that endpoint
issued and that has not expired.  Each provider style's first delivery;
many messages on one token; refresh ahead of expiry and short-lived
tokens; refusals by the endpoint (deferred 4.7.x with its AADSTS words,
never bounced) and by the upstream (the token dropped and fetched again);
a rotated refresh token across a restart; 20 sessions on one slow fetch
while another upstream is served at once; the endpoint down; no secret in
a -v log; relayctl test; relayd -n."""

import base64
import os
import pwd
import re
import signal
import stat
import time

from harness import HOSTNAME
from relayutil import (start_upstream, make_ca, relay_config, submit, wait_delivery,
    deliveries, expect_fields, write_secret, DNSServer)
from oauthutil import (start_endpoint, app_certificate, service_account, set_google,
    new_refresh_token,
    aadsts_invalid_secret, SCOPE_MICROSOFT, SCOPE_GOOGLE, ASSERTION_TYPE, JWT_BEARER)

MAILBOX = "relay@example.com"
RCPT = "rcpt@example.net"
TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f"
CLIENT_SECRET = "Qx8Q~tEsT.s3cr3t-VaLuE_0123456789abcdEFGH"
GENERIC_ID = "relayd-generic-client"
GENERIC_SECRET = "generic-client-secret-7e3a91"
REFRESH0 = "rt-initial-0f9e8d7c6b5a4938271605f4e3d2c1b0"
GENERIC_SCOPE = "mail.send offline_access"
RETRY = {"attempts": 5, "delay": 1, "backoff": 1.0, "max_delay": 60}
STYLES = ("microsoft-secret", "microsoft-certificate", "google", "generic")


class World:
	"""One test's token endpoint, XOAUTH2 upstream and relayd."""
	pass


def world(t, styles=("microsoft-secret",), expires_in=3600, rules=(), retry=None, args=(),
    start=True, extra_upstreams=None, extra_domains=None, max_connections=4, rotate=True,
    upconf=None, one_per_session=False, refresh_file=None, top=None):
	"""Makes the test CA, the token endpoint and one XOAUTH2 upstream; one
	relayd upstream per style ("o-<style>", sender domain <style>.example,
	and example.com for the first), started unless start is False.
	one_per_session: the upstream closes the connection after each
	message, so that every message has a session (and an AUTH) of its own
	(relayd keeps an idle session, already authenticated, for a while).
	refresh_file: where generic's refresh token goes; top: top-level
	settings of relayd.conf."""
	w = World()
	w.certs = make_ca(t)
	dns = DNSServer({"localhost": {"A": ["127.0.0.1"]}})
	dns.use(t)
	w.app = app_certificate(t) if "microsoft-certificate" in styles else None
	ms = {"tenant": TENANT, "client_id": CLIENT_ID,
	    "client_secret": CLIENT_SECRET if "microsoft-secret" in styles else None,
	    "cert": w.app.cert if w.app else None}
	w.refresh_file = refresh_file
	generic = {"client_id": GENERIC_ID, "client_secret": GENERIC_SECRET,
	    "refresh_token": REFRESH0, "scope": GENERIC_SCOPE, "rotate": rotate}
	w.ep = start_endpoint(t, w.certs, microsoft=ms, generic=generic, expires_in=expires_in,
	    rules=rules)
	if "google" in styles:
		w.sa = service_account(t, w.ep.url("google"))
		set_google(w.ep, w.sa.path, MAILBOX)
	w.up = start_upstream(t, name="xo", tls="starttls", certs=w.certs, auth="XOAUTH2",
	    user=MAILBOX, tokens=w.ep.tokens_path, auth_require_tls=True,
	    script=[{"cmd": "EOD", "action": "close"}] if one_per_session else None)
	ups, doms = {}, {}
	for i, style in enumerate(styles):
		name = "o-" + style
		ups[name] = w.up.conf(host="localhost", tls_ca_file=w.certs.ca, auth="xoauth2",
		    username=MAILBOX, max_connections=max_connections, oauth2=oauth2_section(t, w, style))
		ups[name].update(upconf or {})
		doms[style + ".example"] = name
		if i == 0:
			doms["example.com"] = name
	ups.update(extra_upstreams or {})
	doms.update(extra_domains or {})
	w.conf = relay_config(t, ups, doms, retry=retry or RETRY, **(top or {}))
	w.d = t.start(w.conf, args=args) if start else None
	return w


def oauth2_section(t, w, style):
	if style == "microsoft-secret":
		return {"provider": "microsoft", "tenant": TENANT, "client_id": CLIENT_ID,
		    "client_secret_file": write_secret(t, "o365.secret", CLIENT_SECRET),
		    "token_url": w.ep.url("microsoft")}
	if style == "microsoft-certificate":
		return {"provider": "microsoft", "tenant": TENANT, "client_id": CLIENT_ID,
		    "client_certificate_file": w.app.cert, "client_key_file": w.app.key,
		    "token_url": w.ep.url("microsoft")}
	if style == "google":
		# no token_url: the grant goes to the key's token_uri
		return {"provider": "google", "service_account_file": w.sa.path}
	if style == "generic":
		if w.refresh_file is None:
			w.refresh_file = write_secret(t, "other.refresh", REFRESH0)
		else:
			with open(w.refresh_file, "w") as f:
				f.write(REFRESH0 + "\n")
			os.chmod(w.refresh_file, 0o600)
		return {"provider": "generic", "token_url": w.ep.url("generic"), "client_id": GENERIC_ID,
		    "client_secret_file": write_secret(t, "generic.secret", GENERIC_SECRET),
		    "refresh_token_file": w.refresh_file, "scope": GENERIC_SCOPE}
	raise ValueError(style)


def sender(style):
	return "app@%s.example" % style


def auths(up, ok=None):
	return [e for e in up.events("auth") if e["mech"] == "XOAUTH2" and (ok is None or e["ok"] == ok)]


def qid_lines(d, qid):
	return [l for l in d.log().splitlines() if re.search(r"\b%s: " % qid, l)]


def check_first_delivery(t, style):
	"""One message through style's upstream: the grant as the provider
	wants it, one token, the message at the upstream, the log lines."""
	w = world(t, (style,))
	qid = submit(w.d, sender=sender(style), subject="MARK-" + style)
	r = wait_delivery(w.d, qid, RCPT, "sent", timeout=20)
	expect_fields(r, relay=re.compile(r"^o-%s\[localhost\]:%d$" % (style, w.up.port)),
	    attempt=1, dsn="2.0.0")
	m = w.up.wait_messages(1)[0]
	assert b"MARK-" + style.encode() in m["data"] and m["mail_from"] == sender(style), m
	assert m["tls"], "the message went without TLS"
	reqs = w.ep.requests()
	assert len(reqs) == 1, "expected one token request:\n%s" % w.ep.summary()
	req = reqs[0]
	assert req["status"] == 200, "the endpoint refused the grant:\n%s" % w.ep.summary()
	a = auths(w.up)
	assert len(a) == 1 and a[0]["ok"] and a[0]["user"] == MAILBOX, a
	assert a[0]["token_sha"] == req["token_sha"], "the upstream saw another token"
	auth_cmds = [e for e in w.up.cmds("AUTH") if e["arg"].startswith("XOAUTH2 ")]
	assert len(auth_cmds) == 1 and auth_cmds[0]["tls"], "AUTH XOAUTH2 not sent inside TLS"
	sasl = base64.b64decode(auth_cmds[0]["arg"].split(" ", 1)[1])
	assert re.fullmatch(rb"user=%s\x01auth=Bearer [!-~]+\x01\x01" % re.escape(MAILBOX.encode()),
	    sasl), "not the SASL XOAUTH2 string: %r" % sasl[:60]
	if style.startswith("microsoft"):
		# an Entra ID token is a JWT of ~2 KB: far over 512 octets
		assert len(auth_cmds[0]["arg"]) > 2000, len(auth_cmds[0]["arg"])
	log = w.d.log()
	tl = re.search(r"^.*upstream o-%s: token from 127\.0\.0\.1, valid for 3600s$" % style, log, re.M)
	assert tl, "no token line in the log:\n%s" % w.d.log_tail()
	print("log: " + tl.group(0))
	lines = qid_lines(w.d, qid)
	assert any(re.search(r"%s: client=" % qid, l) for l in lines), lines
	assert any(re.search(r"%s: from=<%s>" % (qid, re.escape(sender(style))), l) for l in lines), lines
	for l in lines:
		print("log: " + l)
	return w, req


def test_microsoft_secret_first_delivery(t):
	w, req = check_first_delivery(t, "microsoft-secret")
	assert req["path"] == "/%s/oauth2/v2.0/token" % TENANT, req["path"]
	assert req["fields"] == ["client_id", "client_secret", "grant_type", "scope"], req["fields"]
	assert (req["grant_type"], req["client_id"], req["scope"]) == ("client_credentials",
	    CLIENT_ID, SCOPE_MICROSOFT), req
	assert req["content_type"] == "application/x-www-form-urlencoded", req["content_type"]


def test_microsoft_certificate_first_delivery(t):
	w, req = check_first_delivery(t, "microsoft-certificate")
	assert req["fields"] == ["client_assertion", "client_assertion_type", "client_id",
	    "grant_type", "scope"], req["fields"]
	assert req["credential"] == "assertion" and req["grant_type"] == "client_credentials", req
	h, c = req["jwt_header"], req["jwt_claims"]
	# the endpoint verified all of this; here the test says what it saw
	assert h.get("alg") == "PS256" and h.get("x5t#S256") == w.app.x5t, h
	assert c["aud"] == w.ep.url("microsoft") and c["iss"] == c["sub"] == CLIENT_ID, c
	assert 0 < c["exp"] - c["nbf"] <= 600 and abs(c["iat"] - req["t_start"]) < 60, c
	assert re.fullmatch(r"[0-9a-f]{32}", c["jti"]), c["jti"]


def test_google_service_account_first_delivery(t):
	w, req = check_first_delivery(t, "google")
	assert req["path"] == "/google/token" and req["fields"] == ["assertion", "grant_type"], req
	assert req["grant_type"] == JWT_BEARER, req["grant_type"]
	h, c = req["jwt_header"], req["jwt_claims"]
	assert h.get("alg") == "RS256" and h.get("kid") == w.sa.key_id, h
	assert (c["iss"], c["sub"], c["scope"], c["aud"]) == (w.sa.email, MAILBOX, SCOPE_GOOGLE,
	    w.ep.url("google")), c
	assert 0 < c["exp"] - c["iat"] <= 3600, c


def test_generic_refresh_token_first_delivery(t):
	w, req = check_first_delivery(t, "generic")
	assert req["fields"] == ["client_id", "client_secret", "grant_type", "refresh_token",
	    "scope"], req["fields"]
	assert (req["grant_type"], req["client_id"], req["scope"]) == ("refresh_token",
	    GENERIC_ID, GENERIC_SCOPE), req


def test_many_messages_one_token(t):
	"""Twelve messages, over sessions one after the other and side by
	side: one token request, every AUTH with that token.  (The first
	token comes after 0.5 s, so that the first four messages are under
	way at once: three sessions.)"""
	w = world(t, max_connections=3, rules=[{"delay": 0.5, "times": 1}])
	qids = [submit(w.d, subject="MARK-%d" % i) for i in range(4)]
	for q in qids:
		wait_delivery(w.d, q, RCPT, "sent")
	qids += [submit(w.d, subject="MARK-%d" % i) for i in range(4, 12)]
	for q in qids:
		wait_delivery(w.d, q, RCPT, "sent")
	assert len(w.up.wait_messages(12)) == 12
	reqs = w.ep.requests()
	assert len(reqs) == 1, "one token should serve them all; endpoint saw:\n%s" % w.ep.summary()
	a = auths(w.up)
	assert a and all(e["ok"] and e["token_sha"] == reqs[0]["token_sha"] for e in a), a
	assert len(w.up.conns()) >= 3, "%d session(s): the test proves less than it says" % \
	    len(w.up.conns())


def test_refresh_ahead_of_expiry(t):
	"""expires_in 65 s: refreshed a tenth of the lifetime, at least 60 s,
	before it expires, i.e. 5 s after it came, in the background, because
	it was used; the new token, not used, is not fetched again at its own
	refresh time; the next message goes with the new token (a session of
	its own: the upstream closes each after its message, so no idle session
	authenticated with the first token carries it)."""
	w = world(t, expires_in=65, one_per_session=True)
	qid = submit(w.d, subject="MARK-1")
	wait_delivery(w.d, qid, RCPT, "sent")
	first = w.ep.wait_requests(1)[0]
	# the background refresh, with no message in sight
	second = w.ep.wait_requests(2, timeout=10, what="the refresh 5 s after the first")[1]
	ahead = second["t_start"] - first["t_start"]
	assert 4 <= ahead <= 7.5, "refreshed %.1fs after the first token, expected ~5s" % ahead
	assert second["status"] == 200
	assert len(w.up.messages()) == 1, "the refresh was not in the background"
	qid = submit(w.d, subject="MARK-2")
	wait_delivery(w.d, qid, RCPT, "sent")
	a = auths(w.up, ok=True)
	assert [e["token_sha"] for e in a] == [first["token_sha"], second["token_sha"]], \
	    "tokens used %s, issued %s" % ([e["token_sha"][:8] for e in a],
	    [first["token_sha"][:8], second["token_sha"][:8]])
	# the second token's own refresh time passes: it was used, so it is
	# refreshed; a token nobody used since is not
	third = w.ep.wait_requests(3, timeout=10, what="the refresh of the used second token")[2]
	assert 4 <= third["t_start"] - second["t_start"] <= 7.5, w.ep.summary()
	time.sleep(6.5)
	assert len(w.ep.requests()) == 3, "an unused token was refreshed:\n%s" % w.ep.summary()
test_refresh_ahead_of_expiry.timeout = 90


def test_short_lived_token(t):
	"""expires_in 2 s, shorter than the 60 s refresh margin: the token is
	due for refresh the moment it comes, yet it serves the sessions that
	waited for it (no loop of fetches); once expired, the next message
	fetches a new one; no AUTH ever carries an expired token."""
	# the first answer comes after 0.5 s, so that all three wait for it
	w = world(t, expires_in=2, rules=[{"delay": 0.5, "times": 1}], one_per_session=True)
	q1 = [submit(w.d, subject="MARK-a%d" % i) for i in range(3)]
	for q in q1:
		wait_delivery(w.d, q, RCPT, "sent")
	assert len(auths(w.up, ok=True)) == 3, "expected three sessions"
	assert len(w.ep.requests()) == 1, "the sessions that waited were not served by the " \
	    "token they waited for:\n%s" % w.ep.summary()
	time.sleep(3)			# the token has expired; nothing fetched meanwhile
	assert len(w.ep.requests()) == 1, "fetched again with nobody waiting:\n%s" % w.ep.summary()
	q2 = submit(w.d, subject="MARK-b")
	r = wait_delivery(w.d, q2, RCPT, "sent")
	expect_fields(r, attempt=1)
	reqs = w.ep.requests()
	assert len(reqs) == 2, "expected one new fetch:\n%s" % w.ep.summary()
	a = auths(w.up)
	bad = [e for e in a if not e["ok"]]
	assert not bad, "the upstream refused tokens: %s" % bad
	assert a[-1]["token_sha"] == reqs[-1]["token_sha"], "the last message did not use the new token"
	assert not deliveries(w.d, status="deferred"), [x["line"] for x in deliveries(w.d)]


def test_token_near_expiry_not_handed_to_a_new_session(t):
	"""A token in its last seconds is not given to a session that has yet
	to reach AUTH: the upstream answers the greeting after 1.5 s, the token
	lives 3 s; the second message's session starts when the first token has
	about 1.5 s left, and would AUTH with it after its expiry.  It must
	wait for a fresh token instead: no AUTH refused, nothing deferred."""
	w = world(t, expires_in=3, one_per_session=True, start=False)
	w.up.stop()
	w.up = start_upstream(t, name="xo-slow", tls="starttls", certs=w.certs, auth="XOAUTH2",
	    user=MAILBOX, tokens=w.ep.tokens_path, auth_require_tls=True, port=w.up.port,
	    script=[{"cmd": "CONNECT", "delay": 1.5}, {"cmd": "EOD", "action": "close"}])
	w.d = t.start(w.conf)
	q1 = submit(w.d, subject="MARK-1")
	wait_delivery(w.d, q1, RCPT, "sent", timeout=20)
	q2 = submit(w.d, subject="MARK-2")
	r = wait_delivery(w.d, q2, RCPT, None, timeout=20)
	a = auths(w.up)
	assert r["status"] == "sent" and r["attempt"] == 1, "%s\nAUTHs: %s" % (r["line"],
	    [(e["ok"], e["why"]) for e in a])
	assert all(e["ok"] for e in a), [(e["ok"], e["why"]) for e in a]
	reqs = w.ep.requests()
	assert len(reqs) == 2 and a[1]["token_sha"] == reqs[1]["token_sha"], w.ep.summary()


def test_endpoint_refusal_defers(t):
	"""The endpoint refuses the client secret (AADSTS7000215): deferred
	with 4.7.x and the endpoint's own words, loudly, never bounced, no DSN,
	the upstream never contacted; once the endpoint accepts, delivered."""
	w = world(t, rules=[dict(aadsts_invalid_secret(CLIENT_ID), times=2)])
	qid = submit(w.d)
	for k in (1, 2):
		x = wait_delivery(w.d, qid, RCPT, "deferred", count=k, timeout=20)
		expect_fields(x, attempt=k, dsn=re.compile(r"^4\.7\.\d+$"), reason=re.compile(
		    r"^token from 127\.0\.0\.1 failed: 401 invalid_client: AADSTS7000215: Invalid "
		    r"client secret provided\. Ensure the secret"))
	assert not w.up.events("connect"), "the upstream was contacted without a token"
	r = wait_delivery(w.d, qid, RCPT, "sent", timeout=20)
	expect_fields(r, attempt=3)
	log = w.d.log()
	assert re.search(r"upstream o-microsoft-secret: token from 127\.0\.0\.1 failed: 401 "
	    r"invalid_client: AADSTS7000215", log), "the refusal is not logged on its own"
	assert not deliveries(w.d, status="bounced"), "bounced"
	assert [m for m in w.up.messages() if m["mail_from"] == ""] == [], "a DSN was sent"
	assert len(w.ep.requests()) == 3, w.ep.summary()


def test_refusals_do_not_use_up_sessions(t):
	"""max_connections = 2 and the endpoint refuses three fetches: each
	refusal ends an attempt before its session connected; the session's
	slot must come back, or the upstream is stuck for good once refusals
	reach max_connections.  All five messages go once the endpoint
	accepts."""
	w = world(t, rules=[dict(aadsts_invalid_secret(CLIENT_ID), times=3)], max_connections=2)
	qids = [submit(w.d, subject="MARK-%d" % i) for i in range(5)]
	for q in qids:
		r = wait_delivery(w.d, q, RCPT, "sent", timeout=20)
	assert len(w.up.wait_messages(5)) == 5
	assert [x["status"] for x in w.ep.requests()][:3] == [401, 401, 401], w.ep.summary()


def test_one_refusal_serves_a_round(t):
	"""A line of queued mail meets a refusing endpoint: the refusal serves
	the sessions that start right after it (within a second), so the
	endpoint sees one request for the round, not one per message."""
	w = world(t, rules=[aadsts_invalid_secret(CLIENT_ID)], max_connections=1,
	    retry={"attempts": 3, "delay": 30, "backoff": 1.0, "max_delay": 30})
	qids = [submit(w.d, subject="MARK-%d" % i) for i in range(5)]
	for q in qids:
		x = wait_delivery(w.d, q, RCPT, "deferred", timeout=20)
		expect_fields(x, attempt=1, reason=re.compile(r"AADSTS7000215"))
	n = len(w.ep.requests())
	assert n <= 2, "%d token requests for one round of 5 messages:\n%s" % (n, w.ep.summary())


def test_reload_during_a_fetch_asks_again(t):
	"""The client secret is wrong; while the fetch with it is under way the
	admin writes the right one and reloads.  What that fetch brings back
	is for the old credentials: it is dropped, relayd asks again with the
	new ones, and the message goes at its first attempt."""
	w = world(t, rules=[{"delay": 2.0, "times": 1}], start=False)
	write_secret(t, "o365.secret", "wrong-" + CLIENT_SECRET)
	w.d = t.start(w.conf, args=["-v"])
	qid = submit(w.d)
	w.d.wait_log(r"upstream o-microsoft-secret: fetching a token from 127\.0\.0\.1")
	write_secret(t, "o365.secret", CLIENT_SECRET)
	w.d.proc.send_signal(signal.SIGHUP)
	w.d.wait_log(r"configuration reloaded")
	r = wait_delivery(w.d, qid, RCPT, "sent", timeout=20)
	expect_fields(r, attempt=1)
	assert [x["status"] for x in w.ep.wait_requests(2)][:2] == [401, 200], w.ep.summary()


def test_rejected_token_dropped_and_refetched(t):
	"""The upstream refuses a token the endpoint issued (revoked since):
	Exchange's 334 + 535 5.7.3, deferred 4.7.x with the hint, the token
	dropped; the retry fetches a new one and is delivered."""
	w = world(t, one_per_session=True)
	q1 = submit(w.d, subject="MARK-1")
	wait_delivery(w.d, q1, RCPT, "sent")
	first = w.ep.wait_requests(1)[0]
	with open(w.ep.tokens_path + ".revoked", "w") as f:
		f.write('["%s"]' % first["token_sha"])
	q2 = submit(w.d, subject="MARK-2")
	x = wait_delivery(w.d, q2, RCPT, "deferred")
	expect_fields(x, attempt=1, dsn=re.compile(r"^4\.7\.\d+$"),
	    reason=re.compile(r"535 5\.7\.3 Authentication unsuccessful.*hint: the token was not "
	    r"accepted"))
	w.d.wait_log(r"upstream o-microsoft-secret: its token was refused; the next attempt "
	    r"fetches a new one")
	r = wait_delivery(w.d, q2, RCPT, "sent", timeout=20)
	expect_fields(r, attempt=2)
	reqs = w.ep.requests()
	assert len(reqs) == 2 and reqs[1]["status"] == 200, w.ep.summary()
	a = auths(w.up)
	assert [(e["ok"], e["token_sha"]) for e in a] == [(True, first["token_sha"]),
	    (False, first["token_sha"]), (True, reqs[1]["token_sha"])], a
	# the 334 got its empty line, and then the 535 came
	refused = a[1]["conn"]
	replies = [e["line"] for e in w.up.events("reply") if e["conn"] == refused]
	assert "334 (challenge)" in replies and any(l.startswith("535 5.7.3") for l in replies), replies


def test_rotated_refresh_token_survives_restart(t):
	"""generic: the endpoint rotates the refresh token at every use and
	the old one stops working; relayd writes the new one over its file
	(mode 0600, atomically) and a restarted relayd uses it."""
	w = world(t, styles=("generic",))
	q1 = submit(w.d, sender=sender("generic"), subject="MARK-1")
	wait_delivery(w.d, q1, RCPT, "sent")
	w.d.wait_log(r"upstream o-generic: new refresh token written to %s" % re.escape(w.refresh_file))
	rts = [v for k, v in w.ep.secrets() if k == "refresh_token"]
	# [REFRESH0 as received, the rotated one issued]
	assert rts[0] == REFRESH0 and rts[-1] != REFRESH0, "endpoint saw %d refresh tokens" % len(rts)
	with open(w.refresh_file) as f:
		assert f.read() == rts[-1] + "\n", "the file does not hold the rotated token"
	st = os.stat(w.refresh_file)
	assert stat.S_IMODE(st.st_mode) == 0o600, "mode %o" % stat.S_IMODE(st.st_mode)
	left = [n for n in os.listdir(os.path.dirname(w.refresh_file)) if n.startswith("other.refresh")]
	assert left == ["other.refresh"], "left behind: %s" % left
	assert w.d.stop() == 0
	d2 = t.start(w.conf)
	q2 = submit(d2, sender=sender("generic"), subject="MARK-2")
	wait_delivery(d2, q2, RCPT, "sent", timeout=20)
	reqs = w.ep.requests()
	assert [r["status"] for r in reqs] == [200, 200], "after the restart:\n%s" % w.ep.summary()
	rts2 = [v for k, v in w.ep.secrets() if k == "refresh_token"]
	assert rts2[len(rts)] == rts[-1], "the restarted relayd did not send the rotated token"
	with open(w.refresh_file) as f:
		assert f.read() == rts2[-1] + "\n", "the second rotation was not written"


def test_new_refresh_token_taken_at_reload(t):
	"""The admin signs in again (the old refresh token chain is void),
	writes the new refresh token to the file and reloads: the next fetch
	uses it, although relayd holds a rotated one in memory."""
	# tokens of 3 s go to no new session: every message fetches
	w = world(t, styles=("generic",), expires_in=3, one_per_session=True)
	q1 = submit(w.d, sender=sender("generic"), subject="MARK-1")
	wait_delivery(w.d, q1, RCPT, "sent")
	w.d.wait_log(r"new refresh token written")
	fresh = new_refresh_token(w.ep)
	write_secret(t, os.path.basename(w.refresh_file), fresh)
	os.kill(w.d.pid, signal.SIGHUP)
	w.d.wait_log(r"configuration reloaded")
	q2 = submit(w.d, sender=sender("generic"), subject="MARK-2")
	r = wait_delivery(w.d, q2, RCPT, None, timeout=20)
	assert r["status"] == "sent" and r["attempt"] == 1, "after the reload: %s\n%s" % (r["line"],
	    w.ep.summary())
	rts = [v for k, v in w.ep.secrets() if k == "refresh_token"]
	assert fresh in rts, "the endpoint never saw the admin's refresh token"
	with open(w.refresh_file) as f:
		assert f.read() == rts[-1] + "\n" and rts[-1] != fresh, "its rotation was not written"


def test_rotation_as_the_relay_user(t):
	"""relayd started as root with user = "nobody" writes a rotated refresh
	token as nobody: beside the file, so the directory must be writable by
	that user.  A root-owned directory: the rotation cannot be written,
	that is logged, the new token serves from memory, also across a
	reload (the file did not change); once nobody may write there, the
	next rotation is written, mode 0600, owned by nobody."""
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	nobody = pwd.getpwnam("nobody")
	os.chmod(t.dir, 0o755)		# the relay user reaches CA files and secrets
	rtdir = os.path.join(t.dir, "rt")
	os.makedirs(rtdir, 0o755)
	path = os.path.join(rtdir, "other.refresh")
	w = world(t, styles=("generic",), expires_in=3, one_per_session=True, start=False,
	    refresh_file=path, top={"user": "nobody"})
	for f in (path, os.path.join(t.dir, "generic.secret")):
		os.chown(f, nobody.pw_uid, nobody.pw_gid)
	w.d = t.start(w.conf)
	q1 = submit(w.d, sender=sender("generic"), subject="MARK-1")
	wait_delivery(w.d, q1, RCPT, "sent")
	w.d.wait_log(r"error: upstream o-generic: the token endpoint rotated the refresh token, "
	    r"and it cannot be written to %s: Permission denied" % re.escape(path))
	with open(path) as f:
		assert f.read() == REFRESH0 + "\n", "the file changed"
	os.kill(w.d.pid, signal.SIGHUP)
	w.d.wait_log(r"configuration reloaded")
	q2 = submit(w.d, sender=sender("generic"), subject="MARK-2")
	r = wait_delivery(w.d, q2, RCPT, None, timeout=20)
	assert r["status"] == "sent" and r["attempt"] == 1, "%s\n%s" % (r["line"], w.ep.summary())
	os.chown(rtdir, nobody.pw_uid, nobody.pw_gid)
	q3 = submit(w.d, sender=sender("generic"), subject="MARK-3")
	wait_delivery(w.d, q3, RCPT, "sent")
	w.d.wait_log(r"upstream o-generic: new refresh token written to %s" % re.escape(path))
	rts = [v for k, v in w.ep.secrets() if k == "refresh_token"]
	st = os.stat(path)
	with open(path) as f:
		assert f.read() == rts[-1] + "\n", "the file does not hold the newest refresh token"
	assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, nobody.pw_uid), \
	    "mode %o uid %d" % (stat.S_IMODE(st.st_mode), st.st_uid)
	assert [r["status"] for r in w.ep.requests()] == [200, 200, 200], w.ep.summary()


def test_slow_fetch_one_request_other_upstream_not_delayed(t):
	"""The endpoint takes 4 s to answer: 20 messages, each in a session of
	its own, wait on one fetch (exactly one request reaches the endpoint);
	meanwhile a message to a password upstream is delivered at once."""
	plain = start_upstream(t, name="plain", auth="PLAIN", password="pw-plain")
	w = world(t, rules=[{"delay": 4, "times": 1}], max_connections=20,
	    extra_upstreams={"plain": plain.conf(auth="plain", username="relayuser",
	    password_file=write_secret(t, "plain.secret", "pw-plain"))},
	    extra_domains={"example.org": "plain"})
	qids = [submit(w.d, subject="MARK-%d" % i) for i in range(20)]
	t_other = time.time()
	other = submit(w.d, sender="app@example.org", subject="MARK-other")
	r = wait_delivery(w.d, other, RCPT, "sent", timeout=10)
	got = plain.wait_messages(1)[0]
	assert got["t"] - t_other < 1.5, "the other upstream waited %.1fs" % (got["t"] - t_other)
	assert not w.ep.requests(), "the token came before the other message: the test proves nothing"
	for q in qids:
		wait_delivery(w.d, q, RCPT, "sent", timeout=30)
	reqs = w.ep.requests()
	assert len(reqs) == 1, "expected exactly one token request:\n%s" % w.ep.summary()
	assert got["t"] < reqs[0]["t"], "the other message was delivered after the token came"
	a = auths(w.up, ok=True)
	assert len(a) == 20 and {e["token_sha"] for e in a} == {reqs[0]["token_sha"]}, \
	    "%d AUTHs, tokens %s" % (len(a), {e["token_sha"][:8] for e in a})
	assert len(w.up.conns()) == 20, "%d sessions, expected 20 (one per waiting message)" % \
	    len(w.up.conns())
test_slow_fetch_one_request_other_upstream_not_delayed.timeout = 90


def test_stop_while_waiting_for_a_token(t):
	"""SIGTERM while messages wait for a token from an endpoint that takes
	20 s: relayd stops at once (they have not reached the upstream, there
	is nothing to finish), exits 0, and the next start delivers them at
	their first attempt.  A SIGHUP in between leaves the waiting sessions
	with the retired configuration: those go too."""
	w = world(t, rules=[{"delay": 20, "times": 1}])
	qids = [submit(w.d, subject="MARK-%d" % i) for i in range(2)]
	time.sleep(0.3)			# the fetch is under way
	os.kill(w.d.pid, signal.SIGHUP)
	w.d.wait_log(r"configuration reloaded")
	qids.append(submit(w.d, subject="MARK-2"))
	time.sleep(0.3)
	t0 = time.monotonic()
	rc = w.d.stop(timeout=15)
	took = time.monotonic() - t0
	assert rc == 0, "relayd exited with %s" % rc
	assert took < 5, "relayd took %.1fs to stop, waiting for a token" % took
	assert not deliveries(w.d), "an attempt was logged: %s" % [x["line"] for x in deliveries(w.d)]
	w.ep.script([])
	d2 = t.start(w.conf)
	for q in qids:
		r = wait_delivery(d2, q, RCPT, "sent", timeout=20)
		expect_fields(r, attempt=1)


def test_endpoint_down_defers(t):
	"""An endpoint nobody listens on, one whose certificate is not from the
	configured CA, one that answers 500 without JSON, one that closes the
	connection: each deferred 4.7.x with a reason that says so."""
	down = t.free_port()
	w = world(t, rules=[{"path": "/broken500/", "status": 500,
	    "raw": "<html><body>Internal Server Error</body></html>"},
	    {"path": "/dropper/", "action": "drop"}], start=False)
	bad_ca = write_secret(t, "not-the-ca.pem", open(w.certs.pair("wrong.example")[0]).read(), 0o644)
	cases = {
	    "down": ("https://127.0.0.1:%d/t/oauth2/v2.0/token" % down, None,
		r"token from 127\.0\.0\.1 failed: .*127\.0\.0\.1 port %d.*Connection refused" % down),
	    "untrusted": (w.ep.url("microsoft"), bad_ca,
		r"token from 127\.0\.0\.1 failed: .*(SSL certificate problem|certificate verify)"),
	    "http500": (w.ep.base + "/broken500/oauth2/v2.0/token", None,
		r"token from 127\.0\.0\.1 failed: 500 \(no JSON error in the reply\)"),
	    "drop": (w.ep.base + "/dropper/oauth2/v2.0/token", None,
		r"token from 127\.0\.0\.1 failed: .*(Empty reply|reset|closed|SSL_read|recv)"),
	}
	ups, doms = {}, {}
	for name, (url, ca, _) in cases.items():
		o = oauth2_section(t, w, "microsoft-secret")
		o["token_url"] = url
		if ca:
			o["tls_ca_file"] = ca
		ups[name] = w.up.conf(host="localhost", tls_ca_file=w.certs.ca, auth="xoauth2",
		    username=MAILBOX, oauth2=o)
		doms[name + ".example"] = name
	conf = relay_config(t, ups, doms, retry=RETRY)
	d = t.start(conf)
	for name, (url, ca, reason) in cases.items():
		qid = submit(d, sender="app@%s.example" % name, subject="MARK-" + name)
		x = wait_delivery(d, qid, RCPT, "deferred", timeout=40)
		expect_fields(x, attempt=1, dsn=re.compile(r"^4\.7\.\d+$"), reason=re.compile(reason))
	assert not w.up.events("connect"), "an upstream was contacted without a token"
	assert not deliveries(d, status="bounced")
	assert w.ep.events("tls_failed"), "the untrusted case never reached the endpoint"
test_endpoint_down_defers.timeout = 90


def test_reload_keeps_or_drops_the_token(t):
	"""SIGHUP with the same credentials keeps the token held (no fetch);
	a new client secret drops it: the next session fetches with the new
	secret."""
	w = world(t, one_per_session=True)
	q = submit(w.d, subject="MARK-1")
	wait_delivery(w.d, q, RCPT, "sent")
	os.kill(w.d.pid, signal.SIGHUP)
	w.d.wait_log(r"configuration reloaded")
	q = submit(w.d, subject="MARK-2")
	wait_delivery(w.d, q, RCPT, "sent")
	assert len(w.ep.requests()) == 1, "fetched again after a reload that changed nothing:\n%s" % \
	    w.ep.summary()
	w.ep.conf["microsoft"]["client_secret"] = "the-new-secret"
	w.ep.save_conf()
	write_secret(t, "o365.secret", "the-new-secret")
	os.kill(w.d.pid, signal.SIGHUP)
	w.d.wait_log(r"configuration reloaded", count=2)
	q = submit(w.d, subject="MARK-3")
	r = wait_delivery(w.d, q, RCPT, None)
	assert r["status"] == "sent", "%s\n%s" % (r["line"], w.ep.summary())
	reqs = w.ep.requests()
	assert len(reqs) == 2 and reqs[1]["status"] == 200, w.ep.summary()
	assert auths(w.up)[-1]["token_sha"] == reqs[1]["token_sha"]


def test_exchange_refusals_explained(t):
	"""Exchange Online's known refusals get words an admin can act on:
	535 5.7.139 (SMTP AUTH disabled), 554 5.2.252 SendAsDenied (deferred,
	not bounced), and 535 5.7.30 to a password AUTH (use xoauth2)."""
	basic = start_upstream(t, name="basic", auth="PLAIN", script=[{"cmd": "AUTH",
	    "reply": "535 5.7.30 Basic authentication is not supported for Client Submission."}])
	w = world(t, one_per_session=True, start=False, extra_upstreams={"basic": basic.conf(
	    auth="plain", username="relayuser", password_file=write_secret(t, "b.secret", "pw"))},
	    extra_domains={"example.org": "basic"})
	w.up.stop()
	w.up = start_upstream(t, name="xo2", tls="starttls", certs=w.certs, auth="XOAUTH2",
	    user=MAILBOX, tokens=w.ep.tokens_path, auth_require_tls=True, port=w.up.port,
	    script=[{"cmd": "AUTH", "times": 1, "reply": "535 5.7.139 Authentication "
	    "unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit "
	    "https://aka.ms/smtp_auth_disabled for more information."},
	    {"cmd": "EOD", "times": 1, "reply": "554 5.2.252 SendAsDenied; relay@example.com not "
	    "allowed to send as boss@example.com; STOREDRV.Submission.Exception:"
	    "SendAsDeniedException.MapiExceptionSendAsDenied"},
	    {"cmd": "EOD", "action": "close"}])
	w.d = t.start(w.conf)
	q = submit(w.d, sender="boss@example.com", subject="MARK-1")
	x = wait_delivery(w.d, q, RCPT, "deferred")
	expect_fields(x, dsn=re.compile(r"^4\.7\.139$"), reason=re.compile(r"535 5\.7\.139 .*"
	    r"hint: SMTP AUTH is disabled for this tenant or mailbox"))
	x = wait_delivery(w.d, q, RCPT, "deferred", count=2)
	expect_fields(x, attempt=2, dsn="4.2.252", reason=re.compile(r"554 5\.2\.252 SendAsDenied.*"
	    r"hint: SendAsDenied: the mailbox relayd signs in as may not send as this sender"))
	wait_delivery(w.d, q, RCPT, "sent", timeout=20)
	q = submit(w.d, sender="app@example.org", subject="MARK-basic")
	x = wait_delivery(w.d, q, RCPT, "deferred")
	expect_fields(x, dsn=re.compile(r"^4\.7\.30$"), reason=re.compile(r"535 5\.7\.30 Basic "
	    r"authentication is not supported.*hint: basic authentication is off for this tenant: "
	    r"use auth = \"xoauth2\""))
	assert not deliveries(w.d, status="bounced")
	assert not [m for m in w.up.messages() if m["mail_from"] == ""], "a DSN went out"


def test_verbose_log_has_no_secrets(t):
	"""relayd -v through every provider style, an endpoint refusal and an
	upstream refusal: the log has the dialogue but no client secret,
	assertion, refresh token, access token, private key or SASL string."""
	w = world(t, styles=STYLES, args=["-v"], rules=[dict(aadsts_invalid_secret(CLIENT_ID),
	    times=1)], one_per_session=True)
	for style in STYLES:
		q = submit(w.d, sender=sender(style), subject="MARK-" + style)
		wait_delivery(w.d, q, RCPT, "sent", timeout=20)
	# a refused token (revoked) and its replacement
	tok = [r["token_sha"] for r in w.ep.issued()]
	with open(w.ep.tokens_path + ".revoked", "w") as f:
		f.write('["%s"]' % tok[-1])
	last = STYLES[-1]
	q = submit(w.d, sender=sender(last), subject="MARK-again")
	wait_delivery(w.d, q, RCPT, "sent", timeout=20)
	assert auths(w.up, ok=False), "no token was refused: the test shows less than it says"
	assert any(r["status"] == 401 for r in w.ep.requests()), "the endpoint refused nothing"
	log = w.d.log()
	assert re.search(r"AUTH XOAUTH2 \*\*\*", log), "-v shows no AUTH dialogue:\n%s" % w.d.log_tail()
	secrets = list(w.ep.secrets())
	kinds = {k for k, _ in secrets}
	assert kinds >= {"client_secret", "client_assertion", "assertion", "refresh_token",
	    "access_token"}, "the endpoint saw only %s" % kinds
	secrets += [("client secret file", CLIENT_SECRET), ("generic secret", GENERIC_SECRET)]
	for path in (w.app.key, w.sa.path):
		with open(path) as f:
			text = f.read()
		secrets += [("key material", l) for l in re.findall(r"[A-Za-z0-9+/]{64}", text)]
	for e in w.up.cmds("AUTH"):
		if e["arg"].startswith("XOAUTH2 "):
			secrets.append(("SASL string", e["arg"].split(" ", 1)[1]))
	leaks = []
	for kind, value in secrets:
		# the whole value, and any part long enough to matter (a JWT's
		# claims and signature, a token's middle)
		parts = [p for p in value.split(".") if len(p) >= 12] if value.count(".") == 2 \
		    else [value]
		parts += [value[i:i + 24] for i in range(0, max(len(value) - 24, 0), 24)]
		for p in parts:
			if p.startswith("eyJhbGciOiJSUzI1NiIs"):
				continue	# a JWT header names its algorithm, nothing secret
			if p in log:
				leaks.append("%s: %s..." % (kind, p[:12]))
				break
	assert not leaks, "secrets in the -v log: %s" % leaks


def test_relayctl_test_shows_endpoint_error(t):
	"""relayctl test through an xoauth2 upstream whose endpoint refuses:
	prints the endpoint's error, exits 1."""
	from t_relayctl import ctl, parse_test_output
	w = world(t, rules=[aadsts_invalid_secret(CLIENT_ID)],
	    retry={"attempts": 5, "delay": 3600, "backoff": 1.0, "max_delay": 3600})
	rc, out, err = ctl(t, w.conf, "test", "--from", "postmaster@example.com", "--to", RCPT)
	assert rc == 1, "relayctl test: exit %d: %r %r" % (rc, out, err)
	qid, to, dsn, status, reason = parse_test_output(out)
	assert status == "deferred" and re.match(r"^4\.7\.\d+$", dsn), out
	assert re.match(r"^token from 127\.0\.0\.1 failed: 401 invalid_client: AADSTS7000215: "
	    r"Invalid client secret provided", reason), "relayctl printed %r" % reason


def check(t, conf):
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	print("relayd -n: %d\n%s%s" % (rc, out, err))
	return rc, out + err


def test_check_config_oauth2(t):
	"""relayd -n: every provider style is usable (exit 0, nothing said); a
	key that does not match its certificate, a refresh token file others
	may read and a service-account key that is not JSON are each reported
	at their line."""
	w = world(t, styles=STYLES, start=False)
	rc, out = check(t, w.conf)
	assert rc == 0 and out.strip() == "%s: configuration ok" % w.conf.path, \
	    "good oauth2 sections: exit %d:\n%s" % (rc, out)
	other = app_certificate(t, "other")
	os.chmod(w.refresh_file, 0o644)
	with open(w.sa.path, "w") as f:
		f.write('{"type": "service_account", "private_key": "-----BEGIN')
	text = w.conf.text.replace(w.app.key, other.key)
	with open(w.conf.path, "w") as f:
		f.write(text)
	rc, out = check(t, w.conf)
	assert rc == 1, "bad oauth2 sections: exit %d" % rc
	lines = text.split("\n")

	def line_of(needle):
		return next(i for i, l in enumerate(lines, 1) if needle in l)
	want = [
	    (line_of(other.key), r"client_key_file %s: the key does not match the certificate" %
		re.escape(other.key)),
	    (line_of("refresh_token_file"), r"refresh_token_file %s is readable by others" %
		re.escape(w.refresh_file)),
	    (line_of("service_account_file"), r"service_account_file %s: not a JSON object" %
		re.escape(w.sa.path)),
	]
	for line, msg in want:
		assert re.search(r"^%s:%d: (upstream o-[a-z-]+: oauth2: )?%s" % (re.escape(w.conf.path),
		    line, msg), out, re.M), "expected %s:%d: ...%s in:\n%s" % (w.conf.path, line, msg, out)
