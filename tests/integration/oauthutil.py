#!/usr/bin/python3
"""
oauthutil — an OAuth 2.0 token endpoint for relayd's xoauth2 tests
(t_oauth.py), and the test-side helpers that make its credentials.

What it is for: relayd fetches access tokens itself (interface.md, "OAuth
2.0").  The tests point its token_url at this endpoint, served over HTTPS on
loopback with a certificate from the test CA (relayutil.make_ca), and point
its upstream at upstream.py --auth XOAUTH2, which accepts only the tokens
this endpoint issued, until they expire.

Run as a program (a separate process, started with start_endpoint() through
the harness's spawn, so that it is recorded and stopped by PID), it serves:
  POST /<tenant>/oauth2/v2.0/token   microsoft: client credentials with a
        client_secret, or a client_assertion (a PS256 JWT, RSASSA-PSS with
        SHA-256 and a 32-octet salt, as Microsoft's current documentation of
        certificate credentials asks with x5t#S256) checked as Entra ID
        checks it: signature against the registered certificate's key,
        header x5t#S256 = the certificate's SHA-256 thumbprint, aud = this
        URL, iss = sub = client_id, jti never seen before, nbf/iat not in the
        future, exp not past and at most 10 minutes after iat/nbf; scope
        https://outlook.office365.com/.default.
  POST /google/token                 google: the JWT bearer grant checked as
        Google checks it: signature against the service account's key,
        header kid = private_key_id, iss = client_email, sub = the mailbox,
        scope https://mail.google.com/, aud = token_uri, iat not in the
        future, exp after now and at most an hour after iat.
  POST /generic/token                generic: the refresh_token grant (with
        rotation: each answer carries a new refresh token and the old one
        stops working) or client credentials.
Refusals are answered the way those services answer: JSON {"error",
"error_description"} with AADSTS codes for Microsoft.

What it promises:
 - Listens only on --host (loopback), TLS 1.2+, and writes {"port", "pid"}
   to the ready file (atomically) once it accepts connections.
 - Records every request, one JSON object per line, flushed at once, to
   record.jsonl: path, grant, the names of the form fields, the non-secret
   fields (client_id, scope), the JWT's header and claims (no signature),
   the status answered, the error, the SHA-256 of the token issued and
   when it expires.  No secret is in that file.  Every value that is a
   secret (client_secret, assertions, refresh tokens, access tokens) is
   written to secrets.jsonl instead, for tests that look for leaks.
 - tokens.json (rewritten atomically at each issue) holds, per SHA-256 of
   an access token it issued: its expiry (unix time), provider and the
   mailbox it was issued for (google); upstream.py --tokens reads it.
 - Scriptable through script.json (re-read at every request; its rules'
   counters restart when its content changes):
     {"expires_in": 3600,
      "rules": [{"path": "oauth2", "skip": 0, "times": 1, "delay": 2.5,
                 "status": 401, "json": {"error": ..., "error_description": ...}},
                {"status": 500, "raw": "Internal Server Error"},
                {"action": "drop"}]}
   A rule applies to the requests whose path contains "path" (default:
   all), occurrences skip+1 .. skip+times; "delay" waits first (other
   requests are served meanwhile); then "status" with "json" or "raw" is
   the answer instead of the normal one, or "action": "drop" closes the
   connection without a word.  A rule with only "delay" delays the normal
   answer.
 - SIGTERM: stops at once, exit 0.

Usage: oauthutil.py --config FILE   (FILE: JSON written by start_endpoint)
"""

import base64
import hashlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from relayutil import Helper, read_jsonl

PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
SCOPE_MICROSOFT = "https://outlook.office365.com/.default"
SCOPE_GOOGLE = "https://mail.google.com/"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SKEW = 300			# seconds of clock skew tolerated, as Entra ID and Google do
MS_ASSERTION_MAX = 600		# a client assertion lives "a few minutes"
GOOGLE_ASSERTION_MAX = 3600	# "Token must be a short-lived token (60 minutes)"


def sha(s):
	return hashlib.sha256(s.encode()).hexdigest()


def b64url_decode(s):
	return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(b):
	return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# ---------------------------------------------------------------------------
# the test side: credentials and the endpoint process

def _write(path, data, mode):
	fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
	with os.fdopen(fd, "wb") as f:
		f.write(data if isinstance(data, bytes) else data.encode())
	os.chmod(path, mode)
	return path


def _rsa_key():
	from cryptography.hazmat.primitives.asymmetric import rsa
	return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pkcs8(key):
	from cryptography.hazmat.primitives import serialization
	return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
	    serialization.NoEncryption())


class AppCert:
	"""A Microsoft app registration's certificate credential: a self-signed
	RSA certificate (the admin uploads it to Entra ID) and its key."""

	def __init__(self, cert, key, x5t):
		self.cert = cert	# PEM file, 0644
		self.key = key		# PEM file (PKCS#8), 0600
		self.x5t = x5t		# base64url SHA-256 of the DER certificate


def app_certificate(t, name="app"):
	from cryptography import x509
	from cryptography.hazmat.primitives import hashes, serialization
	from cryptography.x509.oid import NameOID
	import datetime
	key = _rsa_key()
	subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relayd test app " + name)])
	now = datetime.datetime.now(datetime.timezone.utc)
	cert = x509.CertificateBuilder().subject_name(subj).issuer_name(subj) \
	    .public_key(key.public_key()).serial_number(x509.random_serial_number()) \
	    .not_valid_before(now - datetime.timedelta(days=1)) \
	    .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256())
	d = os.path.join(t.dir, "oauth")
	os.makedirs(d, exist_ok=True)
	cp = _write(os.path.join(d, name + ".crt"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
	kp = _write(os.path.join(d, name + ".key"), _pkcs8(key), 0o600)
	x5t = b64url(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())
	return AppCert(cp, kp, x5t)


class ServiceAccount:
	def __init__(self, path, email, key_id):
		self.path = path	# the JSON key, 0600
		self.email = email
		self.key_id = key_id


def service_account(t, token_uri, email="relay-sender@relayd-test.iam.gserviceaccount.com",
    name="google-sa.json"):
	"""A service account's JSON key in the shape the Google Cloud console
	downloads; token_uri: where its grant goes (this endpoint)."""
	key = _rsa_key()
	kid = secrets.token_hex(20)
	sa = {"type": "service_account", "project_id": "relayd-test", "private_key_id": kid,
	    "private_key": _pkcs8(key).decode(), "client_email": email,
	    "client_id": "1%020d" % secrets.randbelow(10 ** 20),
	    "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
	    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	    "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/" + email,
	    "universe_domain": "googleapis.com"}
	d = os.path.join(t.dir, "oauth")
	os.makedirs(d, exist_ok=True)
	path = _write(os.path.join(d, name), json.dumps(sa, indent=2) + "\n", 0o600)
	return ServiceAccount(path, email, kid)


def aadsts_invalid_secret(client_id):
	"""Entra ID's answer to a wrong client secret (as login.microsoftonline.com
	words it)."""
	return {"status": 401, "json": {"error": "invalid_client",
	    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
	    "secret being sent in the request is the client secret value, not the client "
	    "secret ID, for a secret added to app '%s'. Trace ID: 0d1f6c1e-7a51-4a4b-9c3e-"
	    "1a2b3c4d5e00 Correlation ID: 5f0e6b3a-2c1d-4e5f-8a9b-0c1d2e3f4a5b Timestamp: "
	    "2026-12-01 10:00:00Z" % client_id, "error_codes": [7000215],
	    "timestamp": "2026-12-01 10:00:00Z", "trace_id": "0d1f6c1e-7a51-4a4b-9c3e-1a2b3c4d5e00",
	    "correlation_id": "5f0e6b3a-2c1d-4e5f-8a9b-0c1d2e3f4a5b",
	    "error_uri": "https://login.microsoftonline.com/error?code=7000215"}}


class Endpoint(Helper):
	"""A running token endpoint and what it recorded."""

	def __init__(self, t, d, proc, port, conf):
		super().__init__(t, proc, port, os.path.join(d, "output.log"))
		self.dir = d
		self.conf = conf
		self.base = "https://127.0.0.1:%d" % port
		self.record = os.path.join(d, "record.jsonl")
		self.script_path = os.path.join(d, "script.json")
		self.tokens_path = os.path.join(d, "tokens.json")
		self.secrets_path = os.path.join(d, "secrets.jsonl")

	def url(self, provider):
		if provider == "microsoft":
			return "%s/%s/oauth2/v2.0/token" % (self.base, self.conf["microsoft"]["tenant"])
		return "%s/%s/token" % (self.base, provider)

	def save_conf(self):
		"""Writes self.conf (changed by the test) where the endpoint reads
		it at its next request, atomically."""
		cp = os.path.join(self.dir, "config.json")
		with open(cp + ".tmp", "w") as f:
			json.dump(self.conf, f)
		os.rename(cp + ".tmp", cp)

	def script(self, rules=(), expires_in=None):
		"""Replaces the script (atomically); the endpoint reads it at its
		next request."""
		s = {"rules": list(rules)}
		if expires_in is not None:
			s["expires_in"] = expires_in
		tmp = self.script_path + ".tmp"
		with open(tmp, "w") as f:
			json.dump(s, f)
		os.rename(tmp, self.script_path)

	def requests(self, path=None):
		"""Token requests answered (or dropped), in order."""
		return [e for e in read_jsonl(self.record) if e["ev"] == "request" and
		    (path is None or path in e["path"])]

	def events(self, ev):
		return [e for e in read_jsonl(self.record) if e["ev"] == ev]

	def secrets(self):
		"""Every secret value it received or issued: [(kind, value)]."""
		return [(e["kind"], e["value"]) for e in read_jsonl(self.secrets_path)]

	def issued(self):
		"""Requests that got a token, in order."""
		return [e for e in self.requests() if e.get("token_sha")]

	def wait_requests(self, n, timeout=20, what=None):
		deadline = time.monotonic() + timeout
		while True:
			rs = self.requests()
			if len(rs) >= n:
				return rs
			if time.monotonic() > deadline:
				raise AssertionError("token endpoint: %d request(s)%s not seen within %gs; "
				    "it saw:\n%s" % (n, " (%s)" % what if what else "", timeout, self.summary()))
			if self.proc.poll() is not None:
				raise AssertionError("token endpoint exited (%s): %s" % (self.proc.returncode,
				    self.output()))
			time.sleep(0.05)

	def summary(self):
		lines = []
		for e in read_jsonl(self.record):
			if e["ev"] == "request":
				lines.append("  %s %s grant=%s -> %s %s" % (e["path"], e.get("provider"),
				    e.get("grant_type"), e.get("status"), e.get("error") or
				    "token %s.. expires_in=%s" % (e.get("token_sha", "")[:8], e.get("expires_in"))))
			else:
				lines.append("  %s %s" % (e["ev"], {k: v for k, v in e.items() if k not in ("ev", "t")}))
		return "\n".join(lines) or "  (nothing)"


def start_endpoint(t, certs, cert_name="localhost", microsoft=None, google=None, generic=None,
    expires_in=3600, rules=()):
	"""Starts the token endpoint (HTTPS with certs.pair(cert_name)); returns
	an Endpoint once it listens.  Each provider's dict says what it accepts:
	microsoft: {"tenant", "client_id", "client_secret" or "cert" (a PEM
	path)}; google: {"service_account" (the JSON key's path), "mailbox"};
	generic: {"client_id", "client_secret" (or None), "refresh_token" (or
	None: client credentials), "scope" (or None), "rotate" (bool)}.
	google's service account may be given later (set_google), as its
	token_uri needs the endpoint's port."""
	d = os.path.join(t.dir, "token-endpoint")
	k = 1
	while os.path.exists(d):
		k += 1
		d = os.path.join(t.dir, "token-endpoint-%d" % k)
	os.makedirs(d)
	cert, key = certs.pair(cert_name)
	conf = {"host": "127.0.0.1", "cert": cert, "key": key, "dir": d, "expires_in": expires_in,
	    "microsoft": microsoft or {"tenant": "contoso.onmicrosoft.com", "client_id": None},
	    "google": google, "generic": generic}
	cp = os.path.join(d, "config.json")
	with open(cp, "w") as f:
		json.dump(conf, f)
	ep_script = {"rules": list(rules)}
	with open(os.path.join(d, "script.json"), "w") as f:
		json.dump(ep_script, f)
	logpath = os.path.join(d, "output.log")
	logf = open(logpath, "wb")
	env = dict(os.environ)
	env["PYTHONDONTWRITEBYTECODE"] = "1"
	proc = t.spawn([PYTHON, os.path.abspath(__file__), "--config", cp], stdout=logf,
	    stderr=subprocess.STDOUT, env=env)
	logf.close()
	ready = os.path.join(d, "ready.json")
	deadline = time.monotonic() + 15
	while not os.path.exists(ready):
		if proc.poll() is not None:
			with open(logpath, "rb") as f:
				raise AssertionError("token endpoint exited with %s before listening:\n%s" %
				    (proc.returncode, f.read().decode("utf-8", "replace")[-2000:]))
		if time.monotonic() > deadline:
			raise AssertionError("token endpoint not ready within 15s")
		time.sleep(0.03)
	with open(ready) as f:
		info = json.load(f)
	return Endpoint(t, d, proc, info["port"], conf)


def new_refresh_token(ep):
	"""As when the admin signs in again: the endpoint forgets the refresh
	token chain it had and accepts only the new one returned."""
	g = dict(ep.conf["generic"])
	g["refresh_token"] = "rt-admin-" + secrets.token_urlsafe(30)
	g["epoch"] = g.get("epoch", 0) + 1
	ep.conf["generic"] = g
	ep.save_conf()
	return g["refresh_token"]


def set_google(ep, service_account_path, mailbox):
	"""Tells a running endpoint which service account and mailbox Google's
	grant is for (the endpoint reads its config at every request)."""
	ep.conf["google"] = {"service_account": service_account_path, "mailbox": mailbox}
	ep.save_conf()


# ---------------------------------------------------------------------------
# the endpoint process

class Refused(Exception):
	"""A grant refused: (HTTP status, error, error_description)."""

	def __init__(self, status, error, description):
		super().__init__(description)
		self.status = status
		self.error = error
		self.description = description


def aad(status, error, code, text):
	return Refused(status, error, "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s" % (
	    code, text, secrets.token_hex(4) + "-test", secrets.token_hex(4) + "-test",
	    time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())))


class State:
	"""What every request shares, under one lock."""

	def __init__(self, confpath):
		self.confpath = confpath
		self.lock = threading.Lock()
		self.conf = self.load_conf()
		d = self.conf["dir"]
		self.dir = d
		self.rec = open(os.path.join(d, "record.jsonl"), "a", buffering=1)
		self.sec = open(os.path.join(d, "secrets.jsonl"), "a", buffering=1)
		self.tokens = {}
		self.jtis = set()
		self.script_text = None
		self.rules = []
		self.refresh = None	# generic: the refresh token that works now
		self.epoch = 0		# generic: new_refresh_token() calls seen
		self.nreq = 0

	def load_conf(self):
		with open(self.confpath) as f:
			return json.load(f)

	def record(self, ev, **fields):
		fields["ev"] = ev
		fields["t"] = time.time()
		with self.lock:
			self.rec.write(json.dumps(fields) + "\n")
			self.rec.flush()

	def secret(self, kind, value):
		if value:
			with self.lock:
				self.sec.write(json.dumps({"kind": kind, "value": value}) + "\n")
				self.sec.flush()

	def script(self):
		"""(expires_in, rules) as script.json says now."""
		try:
			with open(os.path.join(self.dir, "script.json")) as f:
				text = f.read()
		except FileNotFoundError:
			text = "{}"
		with self.lock:
			if text != self.script_text:
				self.script_text = text
				s = json.loads(text or "{}")
				self.rules = [dict(r, _seen=0) for r in s.get("rules", [])]
				self.expires_in = s.get("expires_in")
			return self.expires_in or self.conf["expires_in"], self.rules

	def pick(self, path):
		_, rules = self.script()
		chosen = None
		with self.lock:
			for r in rules:
				if r.get("path", "") not in path:
					continue
				r["_seen"] += 1
				skip, times = r.get("skip", 0), r.get("times")
				if r["_seen"] > skip and (times is None or r["_seen"] <= skip + times):
					if chosen is None:
						chosen = r
		return chosen

	def issue(self, provider, user=None, refresh=False):
		"""A new access token (and the reply that carries it)."""
		expires_in, _ = self.script()
		tok = token_like(provider)
		now = time.time()
		with self.lock:
			self.tokens[sha(tok)] = {"exp": now + expires_in, "provider": provider, "user": user,
			    "issued": now}
			tmp = os.path.join(self.dir, "tokens.json.tmp")
			with open(tmp, "w") as f:
				json.dump(self.tokens, f)
			os.rename(tmp, os.path.join(self.dir, "tokens.json"))
		self.secret("access_token", tok)
		reply = {"token_type": "Bearer", "expires_in": expires_in, "access_token": tok}
		if provider == "microsoft":
			reply["ext_expires_in"] = expires_in
		if refresh:
			new = "rt-" + secrets.token_urlsafe(40)
			with self.lock:
				self.refresh = new
			self.secret("refresh_token", new)
			reply["refresh_token"] = new
		return reply, sha(tok), expires_in


def token_like(provider):
	"""A random access token as long as the provider's: Entra ID's are
	JWTs of about 2 KB (the SASL string in AUTH XOAUTH2 is then some
	2.7 KB, far over SMTP's 512-octet command line), Google's about 220
	characters."""
	if provider == "google":
		return "ya29." + secrets.token_urlsafe(160)
	header = b64url(json.dumps({"typ": "JWT", "nonce": secrets.token_urlsafe(32), "alg": "RS256",
	    "x5t": secrets.token_urlsafe(20), "kid": secrets.token_urlsafe(20)}).encode())
	return "%s.%s.%s" % (header, b64url(secrets.token_bytes(1100)), b64url(secrets.token_bytes(256)))


def jwt_check(state, jwt, pubkey, refuse_sig, alg="RS256"):
	"""Splits and verifies a JWT signed alg (RS256 or PS256) against
	pubkey; returns (header, claims).  refuse_sig(text) makes the
	provider's refusal."""
	from cryptography.exceptions import InvalidSignature
	from cryptography.hazmat.primitives import hashes
	from cryptography.hazmat.primitives.asymmetric import padding
	parts = jwt.split(".")
	if len(parts) != 3:
		raise refuse_sig("the JWT does not have three parts")
	try:
		header = json.loads(b64url_decode(parts[0]))
		claims = json.loads(b64url_decode(parts[1]))
		sig = b64url_decode(parts[2])
	except Exception as e:
		raise refuse_sig("the JWT does not decode: %s" % e)
	if not isinstance(header, dict) or not isinstance(claims, dict):
		raise refuse_sig("the JWT's header or claims are not JSON objects")
	if header.get("alg") != alg:
		raise refuse_sig("alg %r is not %s" % (header.get("alg"), alg))
	pad = padding.PKCS1v15() if alg == "RS256" else \
	    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
	try:
		pubkey.verify(sig, (parts[0] + "." + parts[1]).encode(), pad, hashes.SHA256())
	except InvalidSignature:
		raise refuse_sig("the signature does not verify")
	return header, claims


def num(claims, name):
	v = claims.get(name)
	return v if isinstance(v, int) and not isinstance(v, bool) else None


def grant_microsoft(state, url, form, info):
	from cryptography import x509
	conf = state.conf["microsoft"]
	if form.get("grant_type") is None:
		raise aad(400, "invalid_request", 900144, "The request body must contain the "
		    "following parameter: 'grant_type'.")
	if form["grant_type"] != "client_credentials":
		raise aad(400, "unsupported_grant_type", 70003, "The app requested an unsupported "
		    "grant type '%s'." % form["grant_type"])
	if not form.get("client_id"):
		raise aad(400, "invalid_request", 900144, "The request body must contain the "
		    "following parameter: 'client_id'.")
	if form["client_id"] != conf["client_id"]:
		raise aad(400, "unauthorized_client", 700016, "Application with identifier '%s' was "
		    "not found in the directory '%s'." % (form["client_id"], conf["tenant"]))
	if not form.get("scope"):
		raise aad(400, "invalid_request", 900144, "The request body must contain the "
		    "following parameter: 'scope'.")
	if form["scope"] != SCOPE_MICROSOFT:
		raise aad(400, "invalid_scope", 1002012, "The provided value for scope %s is not "
		    "valid. Client credential flows must have a scope value with /.default "
		    "suffixed to the resource identifier." % form["scope"])
	has_secret = "client_secret" in form
	has_assertion = "client_assertion" in form or "client_assertion_type" in form
	if has_secret and has_assertion:
		raise aad(400, "invalid_request", 90015, "The request has both client_secret and "
		    "client_assertion; only one is allowed.")
	if has_secret:
		state.secret("client_secret", form["client_secret"])
		if conf.get("client_secret") is None or form["client_secret"] != conf["client_secret"]:
			raise aad(401, "invalid_client", 7000215, "Invalid client secret provided. "
			    "Ensure the secret being sent in the request is the client secret value, not "
			    "the client secret ID, for a secret added to app '%s'." % conf["client_id"])
		info["credential"] = "secret"
		return
	if not has_assertion:
		raise aad(401, "invalid_client", 7000216, "'client_assertion', 'client_secret' or "
		    "'request' is required for the 'client_credentials' grant type.")
	state.secret("client_assertion", form.get("client_assertion"))
	if form.get("client_assertion_type") != ASSERTION_TYPE:
		raise aad(400, "invalid_request", 700017, "The client assertion type is not valid: "
		    "expected '%s'." % ASSERTION_TYPE)
	if not form.get("client_assertion"):
		raise aad(400, "invalid_request", 900144, "The request body must contain the "
		    "following parameter: 'client_assertion'.")
	if not conf.get("cert"):
		raise aad(401, "invalid_client", 700027, "Client assertion contains an invalid "
		    "signature: no certificate is registered for the app.")
	with open(conf["cert"], "rb") as f:
		cert = x509.load_pem_x509_certificate(f.read())
	from cryptography.hazmat.primitives import serialization
	thumb = b64url(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())
	header, claims = jwt_check(state, form["client_assertion"], cert.public_key(),
	    lambda why: aad(401, "invalid_client", 700027, "Client assertion failed signature "
	    "validation: %s." % why), alg="PS256")
	info["jwt_header"] = header
	info["jwt_claims"] = claims
	info["credential"] = "assertion"
	if header.get("x5t#S256") != thumb:
		raise aad(401, "invalid_client", 700027, "The certificate with identifier used to "
		    "sign the client assertion is not registered on application: x5t#S256 %r is "
		    "not the thumbprint of its certificate (%s)." % (header.get("x5t#S256"), thumb))
	if claims.get("aud") != url:
		raise aad(401, "invalid_client", 700212, "The client assertion's audience claim %r "
		    "does not match the token endpoint %s." % (claims.get("aud"), url))
	if claims.get("iss") != conf["client_id"] or claims.get("sub") != conf["client_id"]:
		raise aad(401, "invalid_client", 700021, "Client assertion application identifier "
		    "doesn't match 'client_id' parameter: iss %r, sub %r." % (claims.get("iss"),
		    claims.get("sub")))
	jti = claims.get("jti")
	if not isinstance(jti, str) or not jti:
		raise aad(401, "invalid_client", 700022, "The client assertion has no jti claim.")
	with state.lock:
		replay = jti in state.jtis
		state.jtis.add(jti)
	if replay:
		raise aad(401, "invalid_client", 700022, "The client assertion's jti %s was "
		    "already used (replay)." % jti)
	now = int(time.time())
	exp, nbf, iat = num(claims, "exp"), num(claims, "nbf"), num(claims, "iat")
	if exp is None:
		raise aad(401, "invalid_client", 700024, "Client assertion has no exp claim.")
	start = nbf if nbf is not None else iat
	if start is None:
		raise aad(401, "invalid_client", 700024, "Client assertion has neither nbf nor iat.")
	if exp <= now - SKEW or start > now + SKEW or (iat is not None and iat > now + SKEW):
		raise aad(401, "invalid_client", 700024, "Client assertion is not within its valid "
		    "time range. Current time: %d, assertion valid from %d to %d." % (now, start, exp))
	if exp - start > MS_ASSERTION_MAX or exp <= start:
		raise aad(401, "invalid_client", 700024, "Client assertion lifetime %ds is not a "
		    "few minutes (at most %ds)." % (exp - start, MS_ASSERTION_MAX))


def google_refusal(status, error, desc):
	return Refused(status, error, desc)


def grant_google(state, url, form, info):
	from cryptography.hazmat.primitives import serialization
	conf = state.conf.get("google")
	if form.get("grant_type") != JWT_BEARER:
		raise google_refusal(400, "unsupported_grant_type", "Invalid grant_type: %s" %
		    (form.get("grant_type") or ""))
	if not form.get("assertion"):
		raise google_refusal(400, "invalid_request", "Missing required parameter: assertion")
	state.secret("assertion", form["assertion"])
	if conf is None:
		raise google_refusal(401, "invalid_client", "The OAuth client was not found.")
	with open(conf["service_account"]) as f:
		sa = json.load(f)
	key = serialization.load_pem_private_key(sa["private_key"].encode(), None)
	header, claims = jwt_check(state, form["assertion"], key.public_key(),
	    lambda why: google_refusal(400, "invalid_grant", "Invalid JWT Signature. (%s)" % why))
	info["jwt_header"] = header
	info["jwt_claims"] = claims
	if header.get("kid") not in (None, sa["private_key_id"]):
		raise google_refusal(400, "invalid_grant", "Invalid JWT Signature. (kid %r is not "
		    "the key's id)" % header.get("kid"))
	if claims.get("iss") != sa["client_email"]:
		raise google_refusal(401, "invalid_client", "The OAuth client was not found. (iss %r)"
		    % claims.get("iss"))
	if claims.get("aud") != sa["token_uri"] or sa["token_uri"] != url:
		raise google_refusal(400, "invalid_grant", "Invalid JWT: Failed audience check. "
		    "(aud %r, token_uri %r, posted to %s)" % (claims.get("aud"), sa["token_uri"], url))
	if claims.get("scope") != SCOPE_GOOGLE:
		raise google_refusal(400, "invalid_scope", "Invalid OAuth scope or ID token "
		    "audience provided. (scope %r)" % claims.get("scope"))
	if claims.get("sub") != conf["mailbox"]:
		raise google_refusal(401, "unauthorized_client", "Client is unauthorized to retrieve "
		    "access tokens using this method, or client not authorized for any of the scopes "
		    "requested. (sub %r)" % claims.get("sub"))
	now = int(time.time())
	iat, exp = num(claims, "iat"), num(claims, "exp")
	if iat is None or exp is None or iat > now + SKEW or exp <= now or \
	    exp - iat > GOOGLE_ASSERTION_MAX or exp <= iat:
		raise google_refusal(400, "invalid_grant", "Invalid JWT: Token must be a short-lived "
		    "token (60 minutes) and in a reasonable timeframe. Check your iat and exp values "
		    "in the JWT claim.")
	info["user"] = claims["sub"]


def grant_generic(state, url, form, info):
	conf = state.conf.get("generic")
	if conf is None:
		raise Refused(404, "invalid_request", "no generic client here")
	gt = form.get("grant_type")
	if form.get("client_id") != conf["client_id"]:
		raise Refused(401, "invalid_client", "Client authentication failed: unknown client_id %r"
		    % form.get("client_id"))
	if conf.get("client_secret") is not None or "client_secret" in form:
		state.secret("client_secret", form.get("client_secret"))
		if form.get("client_secret") != conf.get("client_secret"):
			raise Refused(401, "invalid_client", "Client authentication failed: bad client_secret")
	if (conf.get("scope") or None) != form.get("scope"):
		raise Refused(400, "invalid_scope", "scope %r is not %r" % (form.get("scope"),
		    conf.get("scope")))
	if gt == "refresh_token":
		rt = form.get("refresh_token")
		state.secret("refresh_token", rt)
		with state.lock:
			if state.refresh is None or state.epoch != conf.get("epoch", 0):
				state.refresh = conf.get("refresh_token")
				state.epoch = conf.get("epoch", 0)
			current = state.refresh
		if not rt or rt != current:
			raise Refused(400, "invalid_grant", "The refresh token is invalid, expired or "
			    "revoked (a rotated one stops working once its successor is issued).")
		info["rotate"] = bool(conf.get("rotate"))
		return
	if gt == "client_credentials":
		if conf.get("client_secret") is None:
			raise Refused(401, "invalid_client", "client credentials need a client_secret")
		return
	raise Refused(400, "unsupported_grant_type", "grant_type %r" % gt)


class Handler(BaseHTTPRequestHandler):
	protocol_version = "HTTP/1.1"
	server_version = "relayd-test-token-endpoint/1"

	def setup(self):
		super().setup()
		try:
			self.request.do_handshake()
		except (ssl.SSLError, OSError) as e:
			self.server.state.record("tls_failed", error=str(e))
			raise

	def log_message(self, fmt, *args):
		pass

	def answer(self, status, body, ctype="application/json"):
		data = body if isinstance(body, bytes) else body.encode()
		self.send_response(status)
		self.send_header("Content-Type", ctype)
		self.send_header("Content-Length", str(len(data)))
		self.send_header("Cache-Control", "no-store")
		self.send_header("Connection", "close")
		self.end_headers()
		self.wfile.write(data)
		self.wfile.flush()
		self.close_connection = True

	def do_GET(self):
		self.answer(405, json.dumps({"error": "invalid_request",
		    "error_description": "the token endpoint takes POST"}))

	def do_POST(self):
		state = self.server.state
		t0 = time.time()
		n = int(self.headers.get("Content-Length") or 0)
		raw = self.rfile.read(n).decode("utf-8", "replace") if n > 0 else ""
		url = "https://%s:%d%s" % (self.server.server_address[0], self.server.server_address[1],
		    self.path)
		path = self.path
		form = {}
		dup = False
		for k, v in urllib.parse.parse_qsl(raw, keep_blank_values=True):
			dup = dup or k in form
			form[k] = v
		state.conf = state.load_conf()
		provider = "microsoft" if path.endswith("/oauth2/v2.0/token") else \
		    "google" if path == "/google/token" else \
		    "generic" if path == "/generic/token" else None
		info = {"path": path, "provider": provider, "grant_type": form.get("grant_type"),
		    "fields": sorted(form), "client_id": form.get("client_id"),
		    "scope": form.get("scope"), "content_type": self.headers.get("Content-Type"),
		    "t_start": t0}
		with state.lock:
			state.nreq += 1
			info["n"] = state.nreq
		rule = state.pick(path)
		if rule is not None and rule.get("delay"):
			time.sleep(rule["delay"])
		if rule is not None and rule.get("action") == "drop":
			info["status"] = None
			info["error"] = "dropped (scripted)"
			state.record("request", **info)
			self.close_connection = True
			try:
				self.request.shutdown(2)
			except OSError:
				pass
			return
		if rule is not None and "status" in rule:
			body = rule.get("raw")
			if body is None:
				body = json.dumps(rule.get("json", {}))
				ctype = "application/json; charset=utf-8"
			else:
				ctype = "text/html"
			info["status"] = rule["status"]
			info["error"] = "scripted: %s" % (rule.get("json", {}).get("error") if "json" in rule
			    else body[:60])
			info["scripted"] = True
			state.record("request", **info)
			self.answer(rule["status"], body, ctype)
			return
		try:
			if dup:
				raise Refused(400, "invalid_request", "a parameter is repeated")
			if self.headers.get("Content-Type", "").split(";")[0].strip() != \
			    "application/x-www-form-urlencoded":
				raise Refused(400, "invalid_request", "Content-Type %r is not a form" %
				    self.headers.get("Content-Type"))
			if provider == "microsoft":
				tenant = path.split("/")[1]
				if tenant != state.conf["microsoft"]["tenant"]:
					raise aad(400, "invalid_request", 90002, "Tenant '%s' not found." % tenant)
				grant_microsoft(state, url, form, info)
			elif provider == "google":
				grant_google(state, url, form, info)
			elif provider == "generic":
				grant_generic(state, url, form, info)
			else:
				raise Refused(404, "invalid_request", "no token endpoint at %s" % path)
		except Refused as r:
			info["status"] = r.status
			info["error"] = "%s: %s" % (r.error, r.description)
			state.record("request", **info)
			self.answer(r.status, json.dumps({"error": r.error,
			    "error_description": r.description}))
			return
		reply, tsha, expires_in = state.issue(provider, info.get("user"),
		    refresh=info.get("rotate", False))
		info.update(status=200, token_sha=tsha, expires_in=expires_in,
		    rotated=bool(reply.get("refresh_token")))
		state.record("request", **info)
		self.answer(200, json.dumps(reply))


class Server(ThreadingHTTPServer):
	daemon_threads = True
	allow_reuse_address = True

	def get_request(self):
		sock, addr = self.socket.accept()
		# the handshake runs in the request's thread (Handler.setup), so
		# that a slow client delays nobody else
		return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

	def handle_error(self, request, client_address):
		pass


def serve(confpath):
	state = State(confpath)
	conf = state.conf
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	ctx.minimum_version = ssl.TLSVersion.TLSv1_2
	ctx.load_cert_chain(conf["cert"], conf["key"])
	srv = Server((conf["host"], conf.get("port", 0)), Handler)
	srv.ctx = ctx
	srv.state = state
	port = srv.server_address[1]
	state.record("listening", port=port, pid=os.getpid())
	ready = os.path.join(conf["dir"], "ready.json")
	with open(ready + ".tmp", "w") as f:
		json.dump({"port": port, "pid": os.getpid()}, f)
	os.rename(ready + ".tmp", ready)

	def stop(signum, frame):
		raise SystemExit(0)
	signal.signal(signal.SIGTERM, stop)
	signal.signal(signal.SIGINT, stop)
	try:
		srv.serve_forever(poll_interval=0.1)
	except SystemExit:
		pass
	return 0


def main(argv):
	if len(argv) == 2 and argv[0] == "--config":
		return serve(argv[1])
	print("usage: oauthutil.py --config FILE", file=sys.stderr)
	return 2


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
