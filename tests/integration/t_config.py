"""relayd's command line and configuration checks: -V, -n, and start-up
failures with the exit statuses of interface.md (1: configuration, 2: runtime)."""

import os
import re
import signal
import socket
import subprocess

def expect_problem(t, conf, needle, words=()):
	"""relayd -n must print CONF:LINE: ... for the line containing needle,
	and exit 1."""
	line = conf.line_of(needle)
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	both = out + err
	m = re.search(r"^%s:(\d+): (.+)$" % re.escape(conf.path), both, re.M)
	assert rc == 1, "relayd -n on a config with %r: exit %s (expected 1); output: %r" % (needle, rc, both)
	assert m, "relayd -n: no '%s:LINE: message' in output %r" % (conf.path, both)
	lines = [int(x) for x in re.findall(r"^%s:(\d+): " % re.escape(conf.path), both, re.M)]
	assert line in lines, "problem with %r reported at line(s) %s, it is on line %d: %r" % (
	    needle, lines, line, both)
	for w in words:
		assert w in both, "message does not mention %r: %r" % (w, both)
	return both


def test_version(t):
	rc, out, err = t.run([t.relayd, "-V"], timeout=10)
	assert rc == 0, "relayd -V: exit %s" % rc
	assert re.search(r"\b\d+\.\d+\.\d+\b", out + err), "relayd -V printed %r" % (out + err)


def test_check_good_config(t):
	conf = t.config(allow=["127.0.0.0/8", "::1/128"], max_clients=10, timeout=30,
	    max_recipients=5, max_message_size=100000)
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 0, "relayd -n on a good config: exit %s, output %r" % (rc, out + err)
	assert not os.path.exists(conf.spool) or os.listdir(conf.spool) == [], \
	    "-n must start nothing, but the spool has %s" % os.listdir(conf.spool)


def test_check_undefined_upstream(t):
	conf = t.config(domains=(), extra='domain "example.com" {\n\tupstream = "nosuch"\n}\n')
	expect_problem(t, conf, 'upstream = "nosuch"', ["nosuch"])


def test_start_fails_on_bad_config(t):
	conf = t.config(domains=(), extra='\n\ndomain "example.com" {\n\n\tupstream = "missing"\n}\n')
	d = t.start(conf, wait=False)
	rc = d.wait_exit(15)
	d.expected_exit = True
	assert rc == 1, "relayd -d on a bad config: exit %s (expected 1)" % rc
	line = conf.line_of('upstream = "missing"')
	assert re.search(r"^(.*\s)?%s:%d: " % (re.escape(conf.path), line), d.log(), re.M), \
	    "start-up did not report %s:%d: %r" % (conf.path, line, d.log())


def test_check_syntax_error(t):
	conf = t.config(extra="max_clients = = 3\n")
	expect_problem(t, conf, "max_clients = = 3")


def test_check_unknown_setting(t):
	conf = t.config(extra="\nno_such_setting = 12\n")
	expect_problem(t, conf, "no_such_setting")


def test_check_bad_allow_cidr(t):
	conf = t.config(allow=["127.0.0.0/8", "10.1.2.3/33"])
	expect_problem(t, conf, "10.1.2.3/33")


def test_check_reports_every_problem(t):
	conf = t.config(domains=(), extra='domain "example.com" {\n\tupstream = "nosuch"\n}\n'
	    'domain "example.org" {\n\tupstream = "alsomissing"\n}\n')
	out = expect_problem(t, conf, '"nosuch"')
	line2 = conf.line_of('"alsomissing"')
	assert re.search(r"^%s:%d: " % (re.escape(conf.path), line2), out, re.M), \
	    "second problem (line %d) not reported: %r" % (line2, out)


def test_check_secret_file_readable_by_others(t):
	secret = os.path.join(t.dir, "upstream.secret")
	with open(secret, "w") as f:
		f.write("s3cret-password\n")
	os.chmod(secret, 0o644)
	conf = t.config(upstream=False, extra='upstream "test" {\n\thost = "127.0.0.1"\n\tport = 2\n'
	    '\ttls = "starttls"\n\tauth = "plain"\n\tusername = "u"\n\tpassword_file = "%s"\n}\n' % secret)
	out = expect_problem(t, conf, "password_file")
	assert "s3cret" not in out, "the password was printed: %r" % out
	os.chmod(secret, 0o600)
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 0, "with the secret file 0600: exit %s, %r" % (rc, out + err)


def test_check_dkim_key_readable_by_others(t):
	key = os.path.join(t.dir, "example.com.s1.key")
	r = subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key],
	    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
	assert r.returncode == 0, "openssl genpkey: %r" % r.stdout
	os.chmod(key, 0o644)
	conf = t.config(domains=(), extra='domain "example.com" {\n\tupstream = "test"\n\tdkim {\n'
	    '\t\tselector = "s1"\n\t\tkey_file = "%s"\n\t\talgorithm = "ed25519-sha256"\n\t}\n}\n' % key)
	expect_problem(t, conf, "key_file")
	os.chmod(key, 0o600)
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 0, "with the key file 0600: exit %s, %r" % (rc, out + err)


def test_cannot_bind_exits_2(t):
	s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	s.bind(("127.0.0.1", 0))
	s.listen(1)
	port = s.getsockname()[1]
	try:
		conf = t.config(port=port)
		d = t.start(conf, wait=False)
		rc = d.wait_exit(15)
		d.expected_exit = True
		assert rc == 2, "relayd with its port taken: exit %s (expected 2); log: %r" % (rc, d.log_tail())
		assert str(port) in d.log(), "the log does not say which address failed: %r" % d.log_tail()
	finally:
		s.close()


def test_sighup_reload(t):
	"""SIGHUP re-reads the configuration: new sessions get the new limits,
	the session in progress keeps working."""
	conf = t.config(max_recipients=1)
	d = t.start(conf)
	old = d.connect()
	old.hello()
	conf2 = t.config(name=os.path.basename(conf.path), port=conf.port, max_recipients=3)
	assert conf2.path == conf.path
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"configuration reloaded")
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<a@example.com>", 250)
	for i in range(3):
		c.expect("RCPT TO:<r%d@example.net>" % i, 250, "2.1.5")
	c.expect("RCPT TO:<r3@example.net>", 452, "4.5.3")
	old.expect("NOOP", 250, "2.0.0")


def test_sighup_listeners_added_and_removed(t):
	"""A reload follows the new listen list: an address that stays keeps
	serving (even a session open across the reload), a new one is bound,
	a removed one refuses connections."""
	port_a, port_b = t.free_port(), t.free_port()
	conf = t.config(port=port_a, listen=["127.0.0.1:%d" % port_a])
	d = t.start(conf)
	held = d.connect()
	held.hello()
	conf2 = t.config(name=os.path.basename(conf.path), port=port_a,
	    listen=["127.0.0.1:%d" % port_a, "127.0.0.1:%d" % port_b])
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"listening on 127\.0\.0\.1:%d" % port_b)
	d.wait_log(r"configuration reloaded")
	for port in (port_a, port_b):
		s = socket.create_connection(("127.0.0.1", port), timeout=5)
		greeting = s.recv(512)
		s.close()
		assert greeting.startswith(b"220 "), "port %d after adding: %r" % (port, greeting)
	held.expect("NOOP", 250, "2.0.0")
	# now only the new one
	t.config(name=os.path.basename(conf.path), port=port_b, listen=["127.0.0.1:%d" % port_b])
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"no longer listening on 127\.0\.0\.1:%d" % port_a)
	d.wait_log(r"configuration reloaded", count=2)
	try:
		s = socket.create_connection(("127.0.0.1", port_a), timeout=5)
		s.close()
		raise AssertionError("port %d still accepts connections after its removal" % port_a)
	except ConnectionRefusedError:
		pass
	s = socket.create_connection(("127.0.0.1", port_b), timeout=5)
	assert s.recv(512).startswith(b"220 ")
	s.close()
	held.expect("NOOP", 250, "2.0.0")	# sessions survive their listener


def test_sighup_bad_config_keeps_old(t):
	conf = t.config(max_recipients=2)
	d = t.start(conf)
	bad = t.config(name=os.path.basename(conf.path), port=conf.port, domains=(),
	    extra='domain "example.com" {\n\tupstream = "gone"\n}\n')
	line = bad.line_of('upstream = "gone"')
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"%s:%d: " % (re.escape(conf.path), line))
	d.wait_log(r"keeping the old configuration")
	assert d.alive(), "relayd died on a bad reload"
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<a@example.com>", 250, "2.1.0")
	c.expect("RCPT TO:<r1@example.net>", 250)
	c.expect("RCPT TO:<r2@example.net>", 250)
	c.expect("RCPT TO:<r3@example.net>", 452, "4.5.3")


def test_drops_privileges(t):
	"""Started as root with user set: the daemon runs as that user and
	still receives mail into its spool, also after a restart."""
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	import pwd
	try:
		pw = pwd.getpwnam("nobody")
	except KeyError:
		print("no user nobody; skipped")
		return
	os.chmod(t.dir, 0o755)	# as /var/spool is: the path stays reachable
	conf = t.config(user="nobody")
	d = t.start(conf)
	c = d.connect()
	c.hello()
	with open("/proc/%d/status" % d.pid) as f:
		st = f.read()
	uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", st, re.M).groups()
	gids = re.search(r"^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", st, re.M).groups()
	assert set(uids) == {str(pw.pw_uid)}, "relayd uids %s, expected all %d (nobody)" % (uids, pw.pw_uid)
	assert set(gids) == {str(pw.pw_gid)}, "relayd gids %s, expected all %d" % (gids, pw.pw_gid)
	groups = re.search(r"^Groups:\s*(.*)$", st, re.M).group(1).split()
	assert set(groups) <= {str(pw.pw_gid)}, "supplementary groups kept: %s" % groups
	qid = c.send_message("a@example.com", ["b@example.net"], b"Subject: as nobody\r\n\r\nMARK-nobody\r\n")
	d.wait_log(r"%s: from=<a@example\.com>" % qid)
	c.close()
	assert d.stop() == 0, "relayd (as nobody) did not stop cleanly"
	d2 = t.start(conf)
	m = d2.wait_log(r"queue: (\d+) messages? loaded from the spool")
	assert m.group(1) == "1", m.group(0)
	c = d2.connect()
	c.hello()
	c.send_message("a@example.com", ["b@example.net"], b"Subject: again\r\n\r\nx\r\n")


def test_check_ca_file_that_is_no_certificate(t):
	"""-n builds every upstream's TLS context: a tls_ca_file that exists but
	holds no certificate is reported at the upstream's line, not at the
	first delivery."""
	ca = os.path.join(t.dir, "not-a-ca.pem")
	with open(ca, "w") as f:
		f.write("this is not a certificate\n")
	conf = t.config(upstream=False, extra='upstream "test" {\n\thost = "127.0.0.1"\n\tport = 2\n'
	    '\ttls = "starttls"\n\ttls_ca_file = "%s"\n}\n' % ca)
	expect_problem(t, conf, 'upstream "test"', words=("CA certificates", ca))


def test_root_without_user_refused_unless_foreground(t):
	"""As root without `user`, relayd refuses to start (exit 1, saying
	why); with -d (foreground, as the tests run it) it is allowed."""
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	conf = t.config()
	assert "\nuser" not in conf.text, "the test config sets user"
	rc, out, err = t.run([t.relayd, "-f", conf.path], timeout=20)
	assert rc == 1, "relayd as root without user, not -d: exit %s (expected 1): %r" % (rc, out + err)
	assert "refusing to run as root without `user`" in err, "no reason given: %r" % (out + err)
	assert not os.path.exists(conf.spool) or not any(n.endswith(".seg") for n in os.listdir(conf.spool)), \
	    "the spool was touched before the refusal"
	d = t.start(conf)	# -d: allowed
	c = d.connect()
	c.hello()
	c.close()


def test_unquoted_password_keeps_slashes(t):
	"""An unquoted `password = Pa55//word` is one value for libconfuse, so
	it is for relayd: AUTH PLAIN carries the whole password, and the mail
	goes through (it used to authenticate with "Pa55")."""
	from relayutil import make_ca, start_upstream, wait_delivery, submit
	password = "Pa55//word/x"
	certs = make_ca(t)
	up = start_upstream(t, tls="starttls", certs=certs, auth="PLAIN", password=password,
	    auth_required=True)
	conf = t.config(upstream=False, domains=(), extra=
	    'upstream "up" {\n'
	    '\thost = "127.0.0.1"  port = %d  tls = "starttls"  tls_ca_file = "%s"\n'
	    '\tauth = "plain"  username = "relayuser"\n'
	    '\tpassword = %s  # not part of it\n'
	    '}\n'
	    'domain "example.com" { upstream = "up" }\n' % (up.port, certs.ca, password))
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 0, "relayd -n: exit %s: %r" % (rc, out + err)
	d = t.start(conf)
	qid = submit(d, sender="a@example.com", rcpts=("b@example.net",))
	wait_delivery(d, qid, "b@example.net", "sent")
	auths = up.events("auth")
	assert auths and all(a["ok"] for a in auths), "AUTH as seen by the upstream: %r" % auths


def test_check_unclosed_section(t):
	"""A section left open at the end of the file is an error at the last
	line, naming the section and the line it was opened on (libconfuse
	alone takes the end of the file for its "}")."""
	conf = t.config(upstream=False, domains=(), extra=
	    'upstream "test" {\n\thost = "127.0.0.1"\n\ttls = "none"\n\n')
	opened = conf.line_of('upstream "test" {')
	last = conf.text.count("\n")		# the text ends with a newline
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 1, "relayd -n on an unclosed section: exit %s (expected 1): %r" % (rc, out + err)
	want = '%s:%d: end of file inside upstream "test" (opened on line %d): "}" missing' % (
	    conf.path, last, opened)
	assert want in err.splitlines(), "expected %r in: %r" % (want, out + err)


def test_check_hostname_bounded(t):
	"""hostname is a DNS host name: over 253 octets, or a label over 63, is
	refused at its line (it goes into the greeting and into DSN lines,
	which may not exceed 998 octets)."""
	for name, words in (("relay." + "a" * 1000 + ".example", ["1014 octets long", "at most 253"]),
	    ("r" * 64 + ".example", ["label of 64 octets"]),
	    ("relay_1.example", ['holds "_"'])):
		conf = t.config(hostname=name)
		expect_problem(t, conf, name[-20:], words)
	conf = t.config(hostname=".".join(["a" * 63] * 3) + "." + "b" * 61)	# 253
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 0, "a 253-octet hostname: exit %s: %r" % (rc, out + err)


def test_tls_none_with_auth(t):
	"""In-house and ISP servers (Space2u, mail.domain.se:2525) take AUTH
	without TLS: tls = "none" with auth is allowed, with the warning of
	interface.md from -n (exit 0), at start and at every reload, and the
	mail goes through with AUTH PLAIN over plain TCP."""
	from relayutil import start_upstream, relay_config, write_secret, submit, wait_delivery
	password = "in-house-Pa55"
	up = start_upstream(t, tls="none", auth="PLAIN", password=password, auth_required=True)
	secret = write_secret(t, "inhouse.secret", password)
	conf = relay_config(t, {"inhouse": up.conf(auth="plain", username="relayuser",
	    password_file=secret)}, {"example.com": "inhouse"})
	warning = "%s:%d: warning: upstream inhouse sends its password without TLS" % (
	    conf.path, conf.line_of('tls = "none"'))
	rc, out, err = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 0, "relayd -n with tls = none and auth: exit %s: %r" % (rc, out + err)
	assert err.splitlines() == [warning], "-n stderr %r, expected exactly %r" % (err, warning)
	assert out == "%s: configuration ok\n" % conf.path, out

	d = t.start(conf)
	d.wait_log(re.escape(warning))
	qid = submit(d, sender="a@example.com", rcpts=("b@example.net",))
	wait_delivery(d, qid, "b@example.net", "sent")
	auth = up.cmds("AUTH")
	assert auth and not any(c["tls"] for c in auth), "AUTH as the upstream saw it: %r" % auth
	assert [a["ok"] for a in up.events("auth")] == [True], up.events("auth")
	m = up.wait_messages(1)[0]
	assert m["tls"] is False and m["auth_user"] == "relayuser", (m["tls"], m["auth_user"])
	assert d.count_log(re.escape(warning)) == 1, "the warning at start: %r" % d.log_tail()

	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"configuration reloaded")
	assert d.count_log(re.escape(warning)) == 2, "the warning again at reload: %r" % d.log_tail()
	assert password not in d.log(), "the password reached the log"
