#!/usr/bin/python3
"""
upstream — a scriptable upstream SMTP server for relayd's relaying tests.

What it is for: the relay tests start it as a separate process (one per
upstream) and point relayd at it; afterwards they read what it observed.
It is Debian's aiosmtpd (python3-aiosmtpd) with a thin layer on top that
decides, per command and per occurrence, what to answer, and that records
everything.

What it promises:
 - Listens on --host:--port (port 0: any free port) in plain text,
   STARTTLS or implicit TLS, and writes {"port", "pid"} to --ready-file
   (atomically) once it accepts connections.
 - Advertises exactly the EHLO extensions asked for (--ext), plus STARTTLS
   when --tls starttls, plus AUTH when --auth names mechanisms (only after
   TLS with --auth-require-tls).  A MAIL parameter for an extension it did
   not advertise is refused (555), as a strict server would.
 - Replies according to a JSON script (--script, inline JSON or @file):
     {"rules": [ {"cmd": "MAIL", "times": 2, "reply": "450 4.3.0 Try later"},
                 {"cmd": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"},
                 {"cmd": "DATA", "action": "drop_mid_data", "lines": 2},
                 {"cmd": "EOD",  "action": "stall"},
                 {"cmd": "CONNECT", "reply": "421 4.3.2 Busy"} ]}
   cmd: CONNECT (the greeting), EHLO, HELO, STARTTLS, AUTH, MAIL, RCPT,
        DATA (the command), EOD (the end of the message text), RSET, NOOP,
        QUIT, or "*" (any command).
   Filters: "match" (case-insensitive substring of the argument; for EOD,
        of the message text), "mail_from" (the transaction's sender, exactly;
        "" is the null sender).
   Occurrences: each rule counts the commands its filters match, over the
        server's whole life; it applies to occurrences skip+1 .. skip+times
        (defaults 0 and unlimited), and with "every": N only to every Nth
        of those (N, 2N, ...).  The first applicable rule wins.
   Behaviour: "reply" (one or more lines separated by "\n"; a bare text
        without "NNN-" continuation is sent as one line), "action":
        "reply" (default), "stall" (never answer), "drop" (close the
        connection without a word), "drop_mid_data" (DATA only: answer 354,
        read "lines" lines of the text, then close), "close" (close after
        the reply; implied by a 421), "endless" (a multi-line reply that
        never ends: "250-" lines as fast as the client reads them, until it
        hangs up), "drip" (the reply's first octets, "text", default
        "250 ", then one more octet every "interval" seconds (default 0.5),
        never a line end; with "lines": true a whole "250-" line at a time
        instead, never the last one).  "delay": seconds to wait first.
        A STARTTLS rule may carry "inject": text the server writes right
        after its 220, in the same write, before the TLS handshake (the
        plaintext injection of CVE-2011-0411; a client must discard it).
 - Records every event, one JSON object per line, flushed at once, to
   --record: connect, tls (version, cipher, sni), tls_failed, sni, cmd
   (with "pipelined": more client bytes were already waiting), reply,
   auth, message (sender, parameters, recipients, the text base64 encoded
   after dot-unstuffing, accepted or not), disconnect.  Every event carries
   "t" (time.time()) and, where it has one, "conn" (1, 2, ...).
 - A null sender is recorded as "".
 - AUTH XOAUTH2 (with --auth XOAUTH2, and --tokens FILE: the tokens.json
   that oauthutil.py's token endpoint writes) accepts the SASL string
   "user=" --user "\x01auth=Bearer " token "\x01\x01" only with a token
   that endpoint issued (known by its SHA-256), not expired now, for this
   user (a token issued for another mailbox is refused too), and not
   listed in FILE.revoked (a JSON list of SHA-256s a test writes: a token
   revoked after it was issued).  An AUTH line may then be up to 12288
   octets long (RFC 4954), as Exchange's and Gmail's may.  Anything
   else is answered as Exchange Online does: a 334 carrying a base64 JSON
   error, and once the client answers it (an empty line), 535 5.7.3
   Authentication unsuccessful.  The auth event records the user, the
   token's SHA-256, and why it was refused (never the token).
 - SIGTERM or SIGINT: stops at once, exit 0.  Nothing is left behind.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, MISSING, TLSSetupException


AUTH_LINE_MAX = 12288		# RFC 4954, 4: an AUTH command line may be this long


def forever():
	return asyncio.sleep(10 ** 6)


class Recorder:
	def __init__(self, path):
		self.f = open(path, "a", buffering=1)

	def __call__(self, ev, **fields):
		fields["ev"] = ev
		fields["t"] = time.time()
		self.f.write(json.dumps(fields, ensure_ascii=True) + "\n")
		self.f.flush()


class Script:
	"""The rules, with their occurrence counters."""

	def __init__(self, spec):
		self.rules = list(spec.get("rules", []))
		for r in self.rules:
			r["cmd"] = r.get("cmd", "*").upper()
			r["_seen"] = 0

	def pick(self, cmd, arg, mail_from):
		"""Counts this command against every rule whose filters match and
		returns the first rule that applies, or None."""
		chosen = None
		for r in self.rules:
			if r["cmd"] not in ("*", cmd):
				continue
			if "match" in r and r["match"].lower() not in (arg or "").lower():
				continue
			if "mail_from" in r and r["mail_from"] != mail_from:
				continue
			r["_seen"] += 1
			skip = r.get("skip", 0)
			times = r.get("times")
			every = r.get("every", 1)
			if r["_seen"] > skip and (times is None or r["_seen"] <= skip + times) and \
			    (r["_seen"] - skip) % every == 0:
				if chosen is None:
					chosen = r
		return chosen


class Upstream:
	"""What every connection shares: options, script, recorder, counters."""

	def __init__(self, opts):
		self.opts = opts
		self.rec = Recorder(opts.record)
		self.script = Script(load_json(opts.script) if opts.script else {})
		self.nconn = 0
		self.open = 0
		self.nmsg = 0
		self.sni = {}		# id(SSLObject) -> server name the client sent
		self.exts = [e.strip() for e in opts.ext.split(",") if e.strip()] if opts.ext else []
		self.mechs = [] if opts.auth.lower() == "none" else \
		    [m.strip().upper() for m in opts.auth.split(",") if m.strip()]
		self.tls_ctx = None
		if opts.tls != "none":
			ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
			ctx.load_cert_chain(opts.cert, opts.key)
			if opts.tls_max_version:
				ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
				ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
				ctx.maximum_version = getattr(ssl.TLSVersion, opts.tls_max_version)
			ctx.sni_callback = self.on_sni
			self.tls_ctx = ctx

	def on_sni(self, sslobj, server_name, ctx):
		self.sni[id(sslobj)] = server_name
		self.rec("sni", name=server_name)
		return None

	def ext_value(self, name):
		"""The argument of an advertised extension ("SIZE 1000" -> "1000"),
		True if advertised without one, None if not advertised."""
		for e in self.exts:
			k, _, v = e.replace("=", " ").partition(" ")
			if k.upper() == name:
				return v.strip() or True
		return None


class Handler:
	"""aiosmtpd hooks: the normal (unscripted) answers, and recording."""

	def __init__(self, up):
		self.up = up

	async def handle_EHLO(self, server, session, envelope, hostname, responses):
		session.host_name = hostname
		up = self.up
		lines = [responses[0][4:]]
		for e in up.exts:
			k, _, v = e.replace("=", " ").partition(" ")
			lines.append(k.upper() + (" " + v.strip() if v.strip() else ""))
		if up.tls_ctx is not None and up.opts.tls == "starttls" and \
		    not server._tls_protocol and not up.opts.no_advertise_starttls:
			lines.append("STARTTLS")
		if up.mechs and (not up.opts.auth_require_tls or server.tls_active()):
			lines.append("AUTH " + " ".join(up.mechs))
		return ["250-" + l for l in lines[:-1]] + ["250 " + lines[-1]]

	async def handle_MAIL(self, server, session, envelope, address, options):
		up = self.up
		for o in options:
			k, _, v = o.partition("=")
			if k == "BODY" and up.ext_value("8BITMIME") is None:
				return "555 5.5.4 BODY parameter without 8BITMIME"
			if k == "SIZE" and up.ext_value("SIZE") is None:
				return "555 5.5.4 SIZE parameter without SIZE"
		envelope.mail_from = address
		envelope.mail_options.extend(options)
		return "250 2.1.0 Ok"

	async def handle_RCPT(self, server, session, envelope, address, options):
		envelope.rcpt_tos.append(address)
		envelope.rcpt_options.extend(options)
		return "250 2.1.5 Ok"

	async def handle_DATA(self, server, session, envelope):
		up = self.up
		up.nmsg += 1
		content = envelope.original_content or b""
		mail_from = "" if envelope.mail_from in ("<>", None) else envelope.mail_from
		status = "250 2.0.0 Ok: queued as UP%05d" % up.nmsg
		rule = up.script.pick("EOD", content.decode("latin-1"), mail_from)
		fields = dict(conn=server.conn, n=up.nmsg, mail_from=mail_from,
		    mail_options=list(envelope.mail_options), rcpt_tos=list(envelope.rcpt_tos),
		    rcpt_options=list(envelope.rcpt_options), size=len(content),
		    data_b64=base64.b64encode(content).decode(), tls=server.tls_active(),
		    auth_user=server.auth_user)
		if rule is not None:
			if rule.get("delay"):
				await asyncio.sleep(rule["delay"])
			act = rule.get("action", "reply")
			if act in ("stall", "drop", "endless", "drip"):
				up.rec("message", accepted=False, fate=act, **fields)
				await server.do_action(act, rule)
			if "reply" in rule:
				status = rule["reply"]
		up.rec("message", accepted=status.startswith("2"), reply=status, **fields)
		if rule is not None and (rule.get("action") == "close" or status.startswith("421")):
			server.close_after_reply = True
		return status

	async def handle_RSET(self, server, session, envelope):
		return "250 2.0.0 Ok"

	async def handle_NOOP(self, server, session, envelope, arg):
		return "250 2.0.0 Ok"

	async def handle_QUIT(self, server, session, envelope):
		return "221 2.0.0 Bye"


class Unknown(dict):
	"""The command table: unknown commands are recorded too."""

	def __init__(self, table, server):
		super().__init__(table)
		self.server = server

	def get(self, key, default=None):
		m = super().get(key)
		if m is not None:
			return m
		return self.server.wrap(key, None)


class ScriptedSMTP(SMTP):
	def __init__(self, up, **kw):
		self.up = up
		self.conn = None
		self.auth_user = None
		self.close_after_reply = False
		self.greeted = False
		self.bad_greeting = False
		self.inject = None	# STARTTLS "inject": written with the 220
		super().__init__(Handler(up), **kw)
		self._smtp_methods = Unknown({k: self.wrap(k, m) for k, m in self._smtp_methods.items()}, self)
		if "XOAUTH2" in up.mechs:
			self.command_size_limits["AUTH"] = AUTH_LINE_MAX

	def _client_connected_cb(self, reader, writer):
		super()._client_connected_cb(reader, writer)
		if "XOAUTH2" in self.up.mechs:
			# AUTH lines up to RFC 4954's 12288 octets, as Exchange and
			# Gmail take them (an Entra ID token alone is ~2 KB); the
			# limit of message lines stays line_length_limit
			reader._limit = AUTH_LINE_MAX + 2

	def data_received(self, data):
		if self.up.opts.trace:
			self.up.rec("bytes", conn=self.conn, n=len(data), head=data[:80].decode("latin-1"),
			    tail=data[-20:].decode("latin-1"))
		super().data_received(data)

	def tls_active(self):
		return self.transport is not None and \
		    self.transport.get_extra_info("ssl_object") is not None

	# --- connection life

	def connection_made(self, transport):
		starttls_done = self._original_transport is not None
		super().connection_made(transport)
		up = self.up
		if not starttls_done:
			up.nconn += 1
			up.open += 1
			self.conn = up.nconn
			up.rec("connect", conn=self.conn, peer=list(transport.get_extra_info("peername") or ()),
			    open=up.open)
		if transport.get_extra_info("ssl_object") is not None:
			if not starttls_done:
				# implicit TLS: AUTH after TLS is allowed (aiosmtpd only
				# knows about STARTTLS)
				self._tls_protocol = True
			self.record_tls(transport)

	def record_tls(self, transport):
		so = transport.get_extra_info("ssl_object")
		c = so.cipher()
		self.up.rec("tls", conn=self.conn, version=so.version(), cipher=c[0] if c else None,
		    sni=self.up.sni.get(id(so)), starttls=self._original_transport is not None)

	def connection_lost(self, error):
		if self.conn is not None:
			self.up.open -= 1
			self.up.rec("disconnect", conn=self.conn, open=self.up.open,
			    error=str(error) if error else None)
			self.conn = None
		super().connection_lost(error)

	# --- replies

	async def push(self, status):
		if not self.greeted:
			# the first line out is the greeting: scriptable as CONNECT
			self.greeted = True
			rule = self.up.script.pick("CONNECT", "", "")
			if rule is not None:
				if rule.get("delay"):
					await asyncio.sleep(rule["delay"])
				act = rule.get("action", "reply")
				if act in ("stall", "drop", "endless", "drip"):
					await self.do_action(act, rule)
				if "reply" in rule:
					await self.push_lines(rule["reply"])
					if rule["reply"][:1] != "2":
						self.bad_greeting = True
					if rule["reply"].startswith("421") or act == "close":
						await self.do_action("drop")
					return
		if isinstance(status, bytes):
			status = status.decode("utf-8", "replace")
		if self.inject is not None and status.startswith("220 "):
			# one write: the 220 and the plaintext that follows it
			text, self.inject = self.inject, None
			self.up.rec("inject", conn=self.conn, text=text)
			self.up.rec("reply", conn=self.conn, line=status)
			await super().push(status + "\r\n" + text.rstrip("\r\n"))
			return
		if status.startswith("334 "):
			self.up.rec("reply", conn=self.conn, line="334 (challenge)")
		else:
			self.up.rec("reply", conn=self.conn, line=status)
		await super().push(status)

	async def flood(self, act, rule):
		"""A reply that never ends: endless "250-" lines, or a drip (see
		the module's promises).  Returns once the client has hung up."""
		n = 0
		sent = 0
		try:
			if act == "drip" and not rule.get("lines"):
				self._writer.write(rule.get("text", "250 ").encode())
			while self.transport is not None and not self.transport.is_closing():
				if act == "endless":
					chunk = b"".join(b"250-endless reply line %d\r\n" % (n + i)
					    for i in range(64))
					n += 64
				elif rule.get("lines"):
					chunk = b"250-drip line %d\r\n" % n
					n += 1
				else:
					chunk = b"x"
					n += 1
				self._writer.write(chunk)
				sent += len(chunk)
				await self._writer.drain()
				if act == "drip":
					await asyncio.sleep(rule.get("interval", 0.5))
		except (ConnectionError, OSError):
			pass
		finally:
			# also when the connection's end cancels us
			self.up.rec(act, conn=self.conn, pieces=n, octets=sent)

	async def push_lines(self, text):
		for line in text.split("\n"):
			await self.push(line)

	async def do_action(self, act, rule=None):
		"""stall / drop / endless / drip: never returns (the connection's
		end cancels us)."""
		if act in ("endless", "drip"):
			await self.flood(act, rule or {})
			act = "drop"
		if act == "drop":
			self.up.rec("drop", conn=self.conn)
			if self.transport is not None:
				self.transport.abort()
			if self._original_transport is not None:
				self._original_transport.abort()
		else:
			self.up.rec("stall", conn=self.conn)
		await forever()

	# --- commands

	def wrap(self, name, method):
		async def run(arg):
			up = self.up
			pipelined = len(self._reader._buffer) > 0
			up.rec("cmd", conn=self.conn, cmd=name, arg=arg, tls=self.tls_active(),
			    pipelined=pipelined)
			if self.bad_greeting and name != "QUIT":
				return await self.push("503 5.5.1 Bad sequence of commands")
			mail_from = self.envelope.mail_from if self.envelope else None
			mail_from = "" if mail_from == "<>" else mail_from
			rule = up.script.pick(name, arg, mail_from)
			if rule is not None:
				if rule.get("delay"):
					await asyncio.sleep(rule["delay"])
				act = rule.get("action", "reply")
				if act in ("stall", "drop", "endless", "drip"):
					await self.do_action(act, rule)
				if name == "STARTTLS" and "inject" in rule:
					self.inject = rule["inject"]
				if act == "drop_mid_data":
					await self.push("354 End data with <CR><LF>.<CR><LF>")
					for _ in range(rule.get("lines", 1)):
						await self._reader.readuntil(b"\r\n")
					await self.do_action("drop")
				if "reply" in rule:
					await self.push_lines(rule["reply"])
					if rule["reply"].startswith("421") or act == "close":
						await self.do_action("drop")
					return
			if method is None:
				return await self.push('500 5.5.2 Error: command "%s" not recognized' % name)
			if name == "STARTTLS":
				try:
					await method(arg)
				except TLSSetupException as e:
					up.rec("tls_failed", conn=self.conn, error=str(e.__cause__))
					raise
				return
			await method(arg)
			if self.close_after_reply:
				await self.do_action("drop")
		return run

	# --- AUTH: aiosmtpd's own PLAIN/LOGIN, our check, recorded

	def _authenticate(self, mechanism, auth_data):
		login = auth_data.login.decode("utf-8", "replace")
		password = auth_data.password.decode("utf-8", "replace")
		ok = login == self.up.opts.user and password == self.up.opts.password
		self.up.rec("auth", conn=self.conn, mech=mechanism, user=login, ok=ok)
		if ok:
			self.auth_user = login
			return AuthResult(success=True, auth_data=auth_data)
		return AuthResult(success=False, handled=False)

	async def auth_XOAUTH2(self, _, args):
		"""SASL XOAUTH2 as Exchange Online and Gmail take it."""
		if len(args) > 1:
			try:
				blob = base64.b64decode(args[1].encode(), validate=True)
			except Exception:
				await self.push("501 5.5.2 Cannot decode base64")
				return AuthResult(success=False, handled=True)
		else:
			blob = await self.challenge_auth("")
			if blob is MISSING:
				return AuthResult(success=False, handled=True)
		user, tsha, why = self.xoauth2_check(blob)
		self.up.rec("auth", conn=self.conn, mech="XOAUTH2", user=user, token_sha=tsha,
		    ok=why is None, why=why)
		if why is None:
			self.auth_user = user
			return AuthResult(success=True, auth_data=user)
		# Exchange: the error as a 334 challenge, then 535 once answered
		err = json.dumps({"status": "401", "schemes": "bearer",
		    "scope": "https://outlook.office365.com/"}).encode()
		if await self.challenge_auth(err) is MISSING:
			return AuthResult(success=False, handled=True)
		return AuthResult(success=False, handled=False,
		    message="535 5.7.3 Authentication unsuccessful [TEST.upstream.prod.outlook.com]")

	def xoauth2_check(self, blob):
		"""(user, token sha256, None) if blob is a valid XOAUTH2 string with
		a live token for --user, else (user, sha, why refused)."""
		m = re.fullmatch(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)\x01\x01", blob)
		if not m:
			return None, None, "not a SASL XOAUTH2 string: %r" % blob[:40]
		user = m.group(1).decode("utf-8", "replace")
		tsha = hashlib.sha256(m.group(2)).hexdigest()
		try:
			with open(self.up.opts.tokens) as f:
				tokens = json.load(f)
		except (OSError, ValueError, TypeError):
			tokens = {}
		tok = tokens.get(tsha)
		if tok is None:
			return user, tsha, "token not issued by the endpoint"
		if time.time() >= tok["exp"]:
			return user, tsha, "token expired %.3fs ago" % (time.time() - tok["exp"])
		try:
			with open(self.up.opts.tokens + ".revoked") as f:
				revoked = json.load(f)
		except (OSError, ValueError):
			revoked = []
		if tsha in revoked:
			return user, tsha, "token revoked"
		if user != self.up.opts.user:
			return user, tsha, "user=%s is not the mailbox %s" % (user, self.up.opts.user)
		if tok.get("user") not in (None, user):
			return user, tsha, "token issued for %s" % tok["user"]
		return user, tsha, None


def load_json(spec):
	if spec.startswith("@"):
		with open(spec[1:]) as f:
			return json.load(f)
	return json.loads(spec)


def parse_args(argv):
	ap = argparse.ArgumentParser(description="scriptable upstream SMTP server for tests")
	ap.add_argument("--host", default="127.0.0.1")
	ap.add_argument("--port", type=int, default=0)
	ap.add_argument("--record", required=True, help="JSON-lines file of events")
	ap.add_argument("--ready-file", required=True)
	ap.add_argument("--hostname", default="upstream.test.example")
	ap.add_argument("--tls", choices=("none", "starttls", "implicit"), default="none")
	ap.add_argument("--cert")
	ap.add_argument("--key")
	ap.add_argument("--tls-max-version", help="e.g. TLSv1_1 (to test the 1.2 minimum)")
	ap.add_argument("--no-advertise-starttls", action="store_true",
	    help="with --tls starttls: do not list STARTTLS in EHLO")
	ap.add_argument("--auth", default="none", help="PLAIN,LOGIN,XOAUTH2 | none")
	ap.add_argument("--tokens", help="XOAUTH2: the token endpoint's tokens.json")
	ap.add_argument("--user", default="")
	ap.add_argument("--password", default="")
	ap.add_argument("--auth-require-tls", action="store_true")
	ap.add_argument("--auth-required", action="store_true", help="MAIL without AUTH: 530")
	ap.add_argument("--ext", default="PIPELINING,8BITMIME,ENHANCEDSTATUSCODES",
	    help='EHLO extensions, e.g. "PIPELINING,SIZE 1000,SMTPUTF8,8BITMIME"')
	ap.add_argument("--script", help="JSON rules, inline or @file")
	ap.add_argument("--trace", action="store_true", help="record every chunk of bytes received")
	o = ap.parse_args(argv)
	if o.tls != "none" and not (o.cert and o.key):
		ap.error("--tls needs --cert and --key")
	return o


async def serve(opts):
	up = Upstream(opts)
	loop = asyncio.get_running_loop()
	size = up.ext_value("SIZE")
	kw = dict(hostname=opts.hostname, ident="ESMTP upstream", timeout=3600,
	    data_size_limit=int(size) if isinstance(size, str) and size.isdigit() else None,
	    enable_SMTPUTF8=up.ext_value("SMTPUTF8") is not None, decode_data=False,
	    auth_require_tls=opts.auth_require_tls, auth_required=opts.auth_required,
	    auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN", "XOAUTH2") if m not in up.mechs],
	    tls_context=up.tls_ctx if opts.tls == "starttls" else None, loop=loop)
	if opts.auth_required and not opts.auth_require_tls:
		import warnings
		warnings.simplefilter("ignore")
	server = await loop.create_server(lambda: ScriptedSMTP(up, **kw), opts.host, opts.port,
	    ssl=up.tls_ctx if opts.tls == "implicit" else None, reuse_address=True)
	port = server.sockets[0].getsockname()[1]
	up.rec("listening", port=port, pid=os.getpid(), tls=opts.tls)
	tmp = opts.ready_file + ".tmp"
	with open(tmp, "w") as f:
		json.dump({"port": port, "pid": os.getpid()}, f)
	os.rename(tmp, opts.ready_file)
	stop = loop.create_future()
	for s in (signal.SIGTERM, signal.SIGINT):
		loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(True))
	await stop
	server.close()


def main(argv):
	opts = parse_args(argv)
	import logging
	logging.basicConfig(level=logging.CRITICAL)
	asyncio.run(serve(opts))
	return 0


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
