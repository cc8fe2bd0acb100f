"""swaks (a client nobody here wrote) sends through relayd, with and
without PIPELINING; its transcript is parsed for the server's replies."""

import re
import shutil

from harness import QID_RE


def swaks(t, d, *extra):
	exe = shutil.which("swaks")
	assert exe, "swaks is not installed (Debian package swaks)"
	argv = [exe, "--server", "127.0.0.1", "--port", str(d.port), "--helo", "client.test.example",
	    "--from", "sender@example.com", "--to", "r1@example.net,r2@example.net",
	    "--header", "Subject: swaks test MARK-swaks", "--body", "Body sent by swaks.\nMARK-swaks-body\n",
	    "--timeout", "20"] + list(extra)
	rc, out, err = t.run(argv, timeout=60)
	return rc, out + err


def server_lines(transcript):
	"""swaks prints what the server sent as '<-  ' (or '<** ' for errors)."""
	return [l[4:] for l in transcript.splitlines() if l[:3] in ("<- ", "<**", "<~ ")]


def test_swaks_sends(t):
	d = t.daemon()
	rc, out = swaks(t, d)
	lines = server_lines(out)
	assert rc == 0, "swaks exit %d; transcript:\n%s" % (rc, out)
	assert lines and lines[0].startswith("220 "), "no greeting in swaks transcript:\n%s" % out
	queued = [l for l in lines if re.match(r"^250 2\.0\.0 Ok: queued as %s$" % QID_RE, l)]
	assert len(queued) == 1, "expected one '250 2.0.0 Ok: queued as ID' in:\n%s" % out
	assert any(l.startswith("221 2.0.0") for l in lines), "no 221 2.0.0 after QUIT:\n%s" % out
	qid = queued[0].split()[-1]
	d.wait_log(r"%s: from=<sender@example\.com>, size=\d+, nrcpt=2, dkim=none" % qid)
	spool = t.spool_bytes(d.conf)
	assert b"Body sent by swaks.\r\nMARK-swaks-body\r\n" in spool, "swaks body not in the spool"


def test_swaks_pipelining(t):
	d = t.daemon()
	rc, out = swaks(t, d, "--pipeline")
	assert rc == 0, "swaks --pipeline exit %d; transcript:\n%s" % (rc, out)
	lines = server_lines(out)
	queued = [l for l in lines if re.match(r"^250 2\.0\.0 Ok: queued as %s$" % QID_RE, l)]
	assert len(queued) == 1, "expected one queued reply in:\n%s" % out
	qid = queued[0].split()[-1]
	d.wait_log(r"%s: from=<sender@example\.com>, size=\d+, nrcpt=2" % qid)


def test_swaks_rejected_sender(t):
	d = t.daemon()
	rc, out = swaks(t, d, "--from", "nobody@unconfigured.example.org")
	lines = server_lines(out)
	assert rc != 0, "swaks succeeded with an unconfigured sender domain:\n%s" % out
	assert any(l.startswith("550 5.7.1") for l in lines), "no 550 5.7.1 to MAIL in:\n%s" % out
