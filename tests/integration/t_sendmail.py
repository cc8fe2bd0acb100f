"""relayd-sendmail: the sendmail-compatible injector, run as applications
run it (PHP's "sendmail -t -i", cron's "-FCronDaemon -i -B8BITMIME -oem
root", scripts with recipients as arguments), submitting to the real
relayd, which relays to a recording upstream (upstream.py): what the
upstream received is what the tests check.  Exit statuses and messages on
stderr are checked against relayd's refusals, a stopped relay, and a
scripted SMTP server standing in for the relay (to get replies relayd
itself never gives: 550 to one recipient, 554 to the message, 4xx)."""

import os
import pwd
import re
import stat

from harness import HOSTNAME, SANITIZER_RE
from relayutil import start_upstream, relay_config

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE = 64, 65, 67, 69
EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 75, 77, 78

UTF8_EXT = "PIPELINING,8BITMIME,SMTPUTF8,ENHANCEDSTATUSCODES"


def sendmail_bin(t):
	p = os.path.join(os.path.dirname(t.relayd), "relayd-sendmail")
	assert os.access(p, os.X_OK), "no relayd-sendmail next to relayd (%s)" % p
	return p


def run_sendmail(t, conf, args, message, prefix=()):
	"""Runs relayd-sendmail -C conf ARGS with message on stdin; returns
	(status, stdout, stderr).  Run as another user (prefix), it runs from
	a copy that user can reach, wherever the build tree is."""
	if isinstance(message, str):
		message = message.encode()
	prog = t.reachable_copy(sendmail_bin(t)) if prefix else sendmail_bin(t)
	argv = list(prefix) + [prog, "-C", conf.path] + list(args)
	rc, out, err = t.run(argv, timeout=60, input=message)
	m = SANITIZER_RE.search(err)
	assert not m, "sanitizer report from relayd-sendmail: %s" % err[m.start():m.start() + 1500]
	return rc, out, err


def expect_ok(rc, out, err):
	assert (rc, out, err) == (0, "", ""), \
	    "expected exit 0 and silence (cron mails any output), got %d, stdout %r, stderr %r" % (
	        rc, out, err)


def relay(t, ext="PIPELINING,8BITMIME,ENHANCEDSTATUSCODES", domains=("example.com", HOSTNAME),
    **top):
	"""An upstream and relayd routing the given sender domains to it;
	the host name's domain too, for senders taken from the login name."""
	up = start_upstream(t, ext=ext)
	conf = relay_config(t, {"up": up.conf()}, {d: "up" for d in domains}, **top)
	return t.start(conf), up


def login():
	return pwd.getpwuid(os.getuid()).pw_name


def header(data, name):
	"""Values of the header fields called name (unfolded), from bytes."""
	head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
	head = re.sub(r"\r\n[ \t]", " ", head)
	out = []
	for line in head.split("\r\n"):
		k, sep, v = line.partition(":")
		if sep and k.strip().lower() == name.lower():
			out.append(v.strip())
	return out


def body(data):
	return data.split(b"\r\n\r\n", 1)[1]


def no_bare_line_ends(data):
	return re.search(rb"(?<!\r)\n|\r(?!\n)", data) is None


PHP_MESSAGE = (
    "To: Alice <alice@example.net>, \"Doe, Bob\" <bob@example.net>\n"
    "Subject: Your order 1017\n"
    "X-PHP-Originating-Script: 33:order.php\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=UTF-8\n"
    "\n"
    "Thank you for your order.\n"
    ".\n"
    "..a line with two dots\n"
    "last line\n")


def test_php_mail_t_i(t):
	"""What PHP's mail() does: sendmail -t -i, LF line ends, no From:,
	Date: or Message-ID:; the upstream gets all three, and the lone "."
	line is text."""
	d, up = relay(t)
	rc, out, err = run_sendmail(t, d.conf, ["-t", "-i"], PHP_MESSAGE)
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	me = "%s@%s" % (login(), HOSTNAME)
	assert m["mail_from"] == me, "envelope sender %r, expected %r (login@hostname)" % (
	    m["mail_from"], me)
	assert sorted(m["rcpt_tos"]) == ["alice@example.net", "bob@example.net"], m["rcpt_tos"]
	data = m["data"]
	assert header(data, "From") == ["<%s>" % me], "From: %r" % header(data, "From")
	assert len(header(data, "Date")) == 1, "no Date: added: %r" % data[:600]
	assert re.match(r"^<[^<>@\s]+@[^<>@\s]+>$", (header(data, "Message-ID") or [""])[0]), \
	    "no Message-ID: added: %r" % data[:600]
	assert header(data, "Subject") == ["Your order 1017"], header(data, "Subject")
	assert body(data) == (b"Thank you for your order.\r\n.\r\n..a line with two dots\r\n"
	    b"last line\r\n"), "body changed: %r" % body(data)
	assert no_bare_line_ends(data), "bare LF reached the upstream: %r" % data


def test_recipients_as_arguments(t):
	"""Recipients as arguments (one argument may hold a list), the envelope
	sender from -f; the message's own From: is kept."""
	d, up = relay(t)
	msg = "From: Shop <shop@example.com>\nTo: someone@example.org\nSubject: args\n\nhi\n"
	rc, out, err = run_sendmail(t, d.conf, ["-f", "bounces@example.com", "--",
	    "r1@example.net", "R2 <r2@example.net>, r3@example.net"], msg)
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	assert m["mail_from"] == "bounces@example.com", "MAIL FROM %r" % m["mail_from"]
	assert sorted(m["rcpt_tos"]) == ["r1@example.net", "r2@example.net", "r3@example.net"], \
	    "without -t the To: header gives no recipient: %r" % m["rcpt_tos"]
	assert header(m["data"], "From") == ["Shop <shop@example.com>"], header(m["data"], "From")


def test_sender_f_and_fullname(t):
	"""-fADDR (attached) sets the envelope sender; -F NAME makes the From:
	that the message lacks."""
	d, up = relay(t)
	rc, out, err = run_sendmail(t, d.conf, ["-i", "-fapp@example.com", "-F", "Web Shop",
	    "buyer@example.net"], "Subject: f\n\nbody\n")
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	assert m["mail_from"] == "app@example.com", "MAIL FROM %r" % m["mail_from"]
	assert m["rcpt_tos"] == ["buyer@example.net"], m["rcpt_tos"]
	assert header(m["data"], "From") == ["Web Shop <app@example.com>"], header(m["data"], "From")


def test_t_with_bcc(t):
	"""-t: To:, Cc: and a folded Bcc: give the recipients; the Bcc: field
	does not reach anyone."""
	d, up = relay(t)
	msg = ("From: app@example.com\nTo: to@example.net\nCc: Team: cc1@example.net,\n"
	    "  \"C, Two\" <cc2@example.net>;\nBcc: hidden1@example.net,\n\thidden2@example.net\n"
	    "Subject: bcc\n\ntext\n")
	rc, out, err = run_sendmail(t, d.conf, ["-t", "-oi", "-f", "app@example.com"], msg)
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	assert sorted(m["rcpt_tos"]) == ["cc1@example.net", "cc2@example.net",
	    "hidden1@example.net", "hidden2@example.net", "to@example.net"], m["rcpt_tos"]
	assert b"hidden" not in m["data"] and not header(m["data"], "Bcc"), \
	    "the Bcc: field reached the upstream: %r" % m["data"][:500]
	assert header(m["data"], "To") == ["to@example.net"], header(m["data"], "To")


def test_lone_dot_ends_without_i(t):
	"""Without -i a line with a single "." ends the message, as classic
	sendmail does; with -i it is text (test_php_mail_t_i)."""
	d, up = relay(t)
	msg = "Subject: dot\n\nbefore\n.\nafter the dot\n"
	rc, out, err = run_sendmail(t, d.conf, ["-f", "app@example.com", "r@example.net"], msg)
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	assert body(m["data"]) == b"before\r\n", "body %r: the '.' line did not end it" % body(
	    m["data"])


def test_cron(t):
	"""What Debian's cron runs: -FCronDaemon -i -B8BITMIME -oem root, with
	an 8-bit body; "root" is qualified with the host name."""
	d, up = relay(t)
	msg = ("From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> backup\n"
	    "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
	    "Content-Transfer-Encoding: 8bit\n\nbackup done: 3 filer, 0 feil \u00e6\u00f8\u00e5\n")
	rc, out, err = run_sendmail(t, d.conf, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
	    msg)
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	assert m["rcpt_tos"] == ["root@" + HOSTNAME], m["rcpt_tos"]
	assert m["mail_from"] == "%s@%s" % (login(), HOSTNAME), m["mail_from"]
	assert header(m["data"], "From") == ["root (Cron Daemon)"], header(m["data"], "From")
	assert body(m["data"]) == "backup done: 3 filer, 0 feil \u00e6\u00f8\u00e5\r\n".encode(), \
	    "8-bit body changed: %r" % body(m["data"])


def test_utf8_address(t):
	"""A UTF-8 recipient: relayd-sendmail asks for SMTPUTF8, relayd relays it."""
	d, up = relay(t, ext=UTF8_EXT)
	rc, out, err = run_sendmail(t, d.conf, ["-f", "app@example.com", "j\u00f8ran@example.net"],
	    "Subject: \u00e6\n\nhei\n")
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	assert m["rcpt_tos"] == ["j\u00f8ran@example.net"], m["rcpt_tos"]
	assert header(m["data"], "Subject") == ["\u00e6"], header(m["data"], "Subject")


def test_too_many_recipients_split(t):
	"""relayd answers 452 4.5.3 past max_recipients: the rest go in another
	transaction, and every recipient gets the message."""
	d, up = relay(t, max_recipients=2)
	rcpts = ["r%d@example.net" % i for i in range(5)]
	rc, out, err = run_sendmail(t, d.conf, ["-f", "app@example.com"] + rcpts,
	    "Subject: many\n\nx\n")
	expect_ok(rc, out, err)
	ms = up.wait_messages(3)
	got = sorted(r for m in ms for r in m["rcpt_tos"])
	assert got == rcpts, "recipients delivered: %r" % got
	assert all(len(m["rcpt_tos"]) <= 2 for m in ms), [m["rcpt_tos"] for m in ms]


def test_relay_unreachable(t):
	"""relayd stopped: exit 75 (EX_TEMPFAIL) and the reason on stderr."""
	d, up = relay(t)
	d.stop()
	rc, out, err = run_sendmail(t, d.conf, ["-t", "-i"], PHP_MESSAGE)
	assert rc == EX_TEMPFAIL, "exit %d, expected 75; stderr %r" % (rc, err)
	assert out == ""
	assert re.search(r"cannot connect to the relay at 127\.0\.0\.1:%d: Connection refused" %
	    d.conf.port, err), "stderr %r" % err
	assert up.messages() == []


def test_relay_refuses_sender(t):
	"""A sender domain relayd is not configured for: relayd's 550 5.7.1 on
	stderr, exit 77 (EX_NOPERM), nothing relayed."""
	d, up = relay(t)
	rc, out, err = run_sendmail(t, d.conf, ["-f", "who@unconfigured.example", "r@example.net"],
	    "Subject: x\n\ny\n")
	assert rc == EX_NOPERM, "exit %d, expected 77; stderr %r" % (rc, err)
	assert re.search(r"refused the sender <who@unconfigured\.example>: 550 5\.7\.1 ", err), \
	    "the relay's reply is not on stderr: %r" % err
	assert up.quiet_for(0.5, "message") == [] and up.messages() == []


def test_no_recipients(t):
	"""No recipient: 64 (EX_USAGE), with or without -t; an unknown option
	too.  Nothing is submitted."""
	d, up = relay(t)
	rc, out, err = run_sendmail(t, d.conf, ["-i"], "Subject: x\n\ny\n")
	assert rc == EX_USAGE and "no recipients" in err, (rc, err)
	rc, out, err = run_sendmail(t, d.conf, ["-t", "-i"], "Subject: x\nTo: undisclosed-recipients:;\n\ny\n")
	assert rc == EX_USAGE and "no recipient addresses found in the header" in err, (rc, err)
	rc, out, err = run_sendmail(t, d.conf, ["-Q", "r@example.net"], "Subject: x\n\ny\n")
	assert rc == EX_USAGE and "unknown option -Q" in err, (rc, err)
	rc, out, err = run_sendmail(t, d.conf, ["-t"], "To: John Doe\n\ny\n")
	assert rc == EX_DATAERR and "To: header: \"John Doe\" is not an address" in err, (rc, err)
	assert up.quiet_for(0.5, "message") == [] and up.messages() == []
	assert d.count_log(r"client=") == 0, "something connected to relayd:\n%s" % d.log_tail()


def test_bad_configuration(t):
	"""An unusable -C file: the problem as FILE:LINE, exit 78 (EX_CONFIG)."""
	path = os.path.join(t.dir, "bad.conf")
	with open(path, "w") as f:
		f.write('listen = { "127.0.0.1:2525" }\ntiemout = 5\n')
	conf = type("C", (), {"path": path})
	rc, out, err = run_sendmail(t, conf, ["r@example.net"], "x\n")
	assert rc == EX_CONFIG, (rc, err)
	assert re.search(r"^%s:2: " % re.escape(path), err, re.M), err


def test_secret_files_not_needed(t):
	"""The configuration names a password_file only root may read: a
	non-root user's relayd-sendmail still submits (it reads no secret)."""
	up = start_upstream(t)
	secret = os.path.join(t.dir, "other.secret")
	with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
		f.write("s3cret\n")
	conf = relay_config(t, {"up": up.conf(), "other": {"host": "127.0.0.1", "port": 2,
	    "tls": "starttls", "username": "u", "password_file": secret}},
	    {"example.com": "up", "other.example": "other"})
	d = t.start(conf)
	if os.getuid() == 0:
		# nobody must reach the configuration and the program, not the secret
		os.chmod(t.dir, 0o711)
		os.chmod(conf.path, 0o644)
		prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
	else:
		os.chmod(secret, 0)	# now unreadable for us as well
		prefix = []
	rc, out, err = run_sendmail(t, conf, ["-f", "app@example.com", "r@example.net"],
	    "Subject: s\n\nno secret needed\n", prefix=prefix)
	expect_ok(rc, out, err)
	m = up.wait_messages(1)[0]
	assert m["rcpt_tos"] == ["r@example.net"], m["rcpt_tos"]
	if os.getuid() == 0:
		# the check that made this test meaningful: nobody cannot read it
		st = os.stat(secret)
		assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)


def fake_relay(t, script, ext="PIPELINING,8BITMIME,ENHANCEDSTATUSCODES"):
	"""A scripted SMTP server in the relay's place: a configuration whose
	first listen address is its port (relayd itself is not started)."""
	up = start_upstream(t, name="fake", ext=ext, script=script)
	conf = t.config(port=up.port)
	return conf, up


def test_refused_recipient(t):
	"""550 to one recipient: the other gets the message, exit 67 (EX_NOUSER),
	the reply and the outcome on stderr."""
	conf, up = fake_relay(t, [{"cmd": "RCPT", "match": "nobody@", "reply": "550 5.1.1 No such user"}])
	rc, out, err = run_sendmail(t, conf, ["-f", "a@example.com", "nobody@example.net",
	    "ok@example.net"], "Subject: x\n\ny\n")
	assert rc == EX_NOUSER, "exit %d, expected 67; stderr %r" % (rc, err)
	assert re.search(r"refused the recipient <nobody@example\.net>: 550 5\.1\.1 No such user", err), err
	assert "accepted the message for the other 1 recipient" in err, err
	m = up.wait_messages(1)[0]
	assert m["rcpt_tos"] == ["ok@example.net"], m["rcpt_tos"]


def test_refused_message(t):
	"""5xx to the message: exit 65 (EX_DATAERR); 4xx: 75 (EX_TEMPFAIL)."""
	conf, up = fake_relay(t, [{"cmd": "EOD", "times": 1, "reply": "554 5.6.0 Content refused"},
	    {"cmd": "EOD", "skip": 1, "times": 1, "reply": "451 4.3.0 Try again later"}])
	rc, out, err = run_sendmail(t, conf, ["-f", "a@example.com", "r@example.net"], "x\n")
	assert rc == EX_DATAERR, "exit %d, expected 65; stderr %r" % (rc, err)
	assert "refused the message: 554 5.6.0 Content refused" in err, err
	rc, out, err = run_sendmail(t, conf, ["-f", "a@example.com", "r@example.net"], "x\n")
	assert rc == EX_TEMPFAIL, "exit %d, expected 75; stderr %r" % (rc, err)
	assert "451 4.3.0 Try again later" in err, err
	rc, out, err = run_sendmail(t, conf, ["-f", "a@example.com", "r@example.net"], "x\n")
	expect_ok(rc, out, err)


def test_temporary_refusals(t):
	"""A 421 greeting and a 451 to MAIL: exit 75 (EX_TEMPFAIL)."""
	conf, up = fake_relay(t, [{"cmd": "CONNECT", "times": 1, "reply": "421 4.3.2 Busy"},
	    {"cmd": "MAIL", "times": 1, "reply": "451 4.3.0 Queue full"}])
	rc, out, err = run_sendmail(t, conf, ["-f", "a@example.com", "r@example.net"], "x\n")
	assert rc == EX_TEMPFAIL and "421 4.3.2 Busy" in err, (rc, err)
	rc, out, err = run_sendmail(t, conf, ["-f", "a@example.com", "r@example.net"], "x\n")
	assert rc == EX_TEMPFAIL and "451 4.3.0 Queue full" in err, (rc, err)
	assert up.messages() == []


def test_esmtp_parameters(t):
	"""BODY=8BITMIME for an 8-bit message, SMTPUTF8 for a UTF-8 header,
	SIZE= when offered; none of them when not offered.  -v shows the
	dialogue on stderr."""
	conf, up = fake_relay(t, [], ext="SIZE 1000000,8BITMIME,SMTPUTF8,ENHANCEDSTATUSCODES")
	msg = "Subject: bl\u00e5b\u00e6r\n\n\u00e6\u00f8\u00e5\n".encode()
	rc, out, err = run_sendmail(t, conf, ["-v", "-f", "a@example.com", "r@example.net"], msg)
	assert rc == 0, (rc, err)
	assert ">>> MAIL FROM:<a@example.com>" in err and "<<< 250" in err, err
	arg = up.cmds("MAIL")[-1]["arg"]
	assert "BODY=8BITMIME" in arg and "SMTPUTF8" in arg, arg
	size = int(re.search(r"SIZE=(\d+)", arg).group(1))
	m = up.wait_messages(1)[0]
	assert abs(size - len(m["data"])) <= 64, (size, len(m["data"]))

	conf2, up2 = fake_relay(t, [], ext="ENHANCEDSTATUSCODES")
	rc, out, err = run_sendmail(t, conf2, ["-f", "a@example.com", "r@example.net"],
	    "Subject: plain\n\nascii\n")
	expect_ok(rc, out, err)
	arg = up2.cmds("MAIL")[-1]["arg"]
	assert arg.strip() == "FROM:<a@example.com>", arg
