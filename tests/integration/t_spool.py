"""Durability: a 250 means the message survives kill -9; a full disk gets
452 4.3.1 and the daemon carries on; a clean stop exits 0 and keeps the queue."""

import os
import signal

from harness import queued_id

LOADED_RE = r"queue: (\d+) messages? loaded from the spool"


def test_kill9_right_after_250(t):
	conf = t.config()
	d = t.start(conf)
	d.wait_log(LOADED_RE)
	c = d.connect()
	c.hello()
	c.expect("MAIL FROM:<durable@example.com>", 250)
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	c.send(b"Subject: survives kill -9\r\n\r\nMARK-durable-body\r\n.\r\n")
	qid = queued_id(c, c.read_reply())
	d.kill9()	# at once: no chance to flush anything after the 250
	c.close()
	assert b"MARK-durable-body" in t.spool_bytes(conf), "body not in the spool after kill -9"
	d2 = t.start(conf)
	m = d2.wait_log(LOADED_RE)
	assert m.group(0) == "queue: 1 messages loaded from the spool", \
	    "after kill -9 with one message queued: %r" % m.group(0)
	# ids stay unique across the restart
	c = d2.connect()
	c.hello()
	qid2 = c.send_message("again@example.com", ["b@example.net"], b"Subject: 2\r\n\r\nx\r\n")
	assert qid2 != qid and qid2 > qid, "id after restart %s, before %s" % (qid2, qid)


def test_kill9_many_then_restart(t):
	"""Several sessions, kill -9, restart: every acknowledged message is there."""
	conf = t.config()
	d = t.start(conf)
	conns = [d.connect() for _ in range(4)]
	for c in conns:
		c.hello()
	ids = []
	for i in range(5):
		for k, c in enumerate(conns):
			ids.append(c.send_message("s%d@example.com" % k, ["r@example.net"],
			    b"Subject: m\r\n\r\nMARK-many-%d-%d\r\n" % (i, k)))
	d.kill9()
	spool = t.spool_bytes(conf)
	missing = [(i, k) for i in range(5) for k in range(4) if b"MARK-many-%d-%d\r\n" % (i, k) not in spool]
	assert not missing, "acknowledged bodies missing from the spool: %s" % missing
	d2 = t.start(conf)
	m = d2.wait_log(LOADED_RE)
	assert int(m.group(1)) == 20, "%s after 20 acknowledged messages" % m.group(0)


def test_sigterm_clean_stop_keeps_queue(t):
	conf = t.config()
	d = t.start(conf)
	d.wait_log(r"queue: 0 messages? loaded from the spool")
	c = d.connect()
	c.hello()
	c.send_message("a@example.com", ["b@example.net"], b"Subject: 1\r\n\r\nx\r\n")
	c.send_message("a@example.com", ["b@example.net"], b"Subject: 2\r\n\r\nx\r\n")
	c.expect("QUIT", 221)
	c.close()
	rc = d.stop(timeout=15)
	assert rc == 0, "relayd exited with %s on SIGTERM (expected 0)" % rc
	d2 = t.start(conf)
	m = d2.wait_log(LOADED_RE)
	assert int(m.group(1)) == 2, "%r after a clean stop with 2 queued" % m.group(0)
	d2.proc.send_signal(signal.SIGINT)
	rc = d2.wait_exit(15)
	d2.expected_exit = True
	assert rc == 0, "relayd exited with %s on SIGINT (expected 0)" % rc


def test_spool_locked(t):
	"""Only one relayd per spool: a second one on the same spool (other
	port) refuses to start, with status 2."""
	conf = t.config()
	d = t.start(conf)
	conf2 = t.config(spool=conf.spool)
	d2 = t.start(conf2, wait=False)
	rc = d2.wait_exit(10)
	d2.expected_exit = True
	assert rc == 2, "second relayd on a locked spool: status %s (expected 2); log:\n%s" % (rc, d2.log_tail())
	assert d.alive()


def statvfs_free(path):
	st = os.statvfs(path)
	return st.f_bavail * st.f_frsize


def test_spool_full(t):
	spooldir = os.path.join(t.dir, "spool")
	t.mount_tmpfs(spooldir, "4m")
	conf = t.config(spool=spooldir)
	d = t.start(conf)
	c = d.connect()
	c.hello()
	q1 = c.send_message("before@example.com", ["b@example.net"], b"Subject: before\r\n\r\nMARK-before\r\n")
	# leave about 300 kB free, then send a 1 MB message
	filler = os.path.join(spooldir, "filler")
	free = statvfs_free(spooldir)
	with open(filler, "wb") as f:
		f.write(b"\0" * max(0, free - 300 * 1024))
	line = b"z" * 78 + b"\r\n"
	c.expect("MAIL FROM:<toobig@example.com>", 250)
	c.expect("RCPT TO:<b@example.net>", 250)
	c.expect("DATA", 354)
	c.send(b"Subject: does not fit\r\n\r\n" + line * 13000 + b".\r\n", what="1 MB message, 300 kB free")
	c.expect_reply(452, "4.3.1", timeout=30)
	m = d.wait_log(r"(?i).*(no space left on device|ENOSPC|spool (is )?full).*")
	print("logged: " + m.group(0))
	assert d.alive(), "relayd died on a full spool"
	# the session and the daemon carry on
	c.expect("NOOP", 250, "2.0.0")
	c.expect("RCPT TO:<b@example.net>", 503, "5.5.1")
	c2 = d.connect()
	c2.hello()
	os.unlink(filler)
	q3 = c2.send_message("after@example.com", ["b@example.net"],
	    b"Subject: after\r\n\r\n" + line * 13000 + b"MARK-after\r\n")
	assert q3 != q1, "duplicate id %s" % q3
	assert d.count_log(r"from=<toobig@example\.com>") == 0, "the message that did not fit was logged as queued"
	c.close()
	c2.close()
	rc = d.stop(timeout=15)
	assert rc == 0, "relayd exited with %s on SIGTERM" % rc
	d2 = t.start(conf)
	m = d2.wait_log(LOADED_RE)
	assert int(m.group(1)) == 2, "%r: expected the 2 acknowledged messages" % m.group(0)


test_spool_full.timeout = 90


def test_spool_full_at_mail_from(t):
	"""With the spool already full when the transaction starts, the client
	hears 452 4.3.1 (at MAIL, RCPT, DATA or the end of DATA), not 250."""
	spooldir = os.path.join(t.dir, "spool")
	t.mount_tmpfs(spooldir, "2m")
	conf = t.config(spool=spooldir)
	d = t.start(conf)
	filler = os.path.join(spooldir, "filler")
	with open(filler, "wb") as f:
		try:
			f.write(b"\0" * (4 * 1024 * 1024))
		except OSError:
			pass
	c = d.connect()
	c.hello()
	steps = [("MAIL FROM:<a@example.com>", 250), ("RCPT TO:<b@example.net>", 250), ("DATA", 354)]
	got = None
	for line, ok in steps:
		r = c.cmd(line)
		if r.code != ok:
			got = r
			break
	if got is None:
		c.send(b"Subject: full\r\n\r\n" + b"q" * 70000 + b"\r\n.\r\n", what="70 kB message on a full spool")
		got = c.read_reply(timeout=30)
	step = c.last
	assert (got.code, got.enh) == (452, "4.3.1"), "on a full spool, sent %s: expected 452 4.3.1, got %s" % (
	    step, got)
	assert d.alive()
	os.unlink(filler)
	c.expect("RSET", 250)
	m = d.wait_log(r"(?i).*(no space left on device|ENOSPC|spool (is )?full).*")
	print("reply %s to %s; logged: %s" % (got, step, m.group(0)))
	c.send_message("a@example.com", ["b@example.net"], b"Subject: ok now\r\n\r\nx\r\n")


def test_sigterm_lets_transaction_finish(t):
	"""SIGTERM: a session in the middle of DATA may finish its message (and
	hears 250), an idle session is told 421, then relayd exits 0 and the
	message is in the queue at the next start."""
	conf = t.config()
	d = t.start(conf)
	busy = d.connect()
	busy.hello()
	idle = d.connect()
	idle.hello()
	busy.expect("MAIL FROM:<late@example.com>", 250)
	busy.expect("RCPT TO:<b@example.net>", 250)
	busy.expect("DATA", 354)
	busy.send(b"Subject: finished after SIGTERM\r\n\r\nfirst half\r\n")
	d.proc.send_signal(signal.SIGTERM)
	idle.expect_reply(421, timeout=10)
	assert idle.wait_closed(5), "idle session not closed after 421"
	busy.send(b"second half MARK-late\r\n.\r\n")
	qid = queued_id(busy, busy.read_reply(timeout=10))
	rc = d.wait_exit(15)
	d.expected_exit = True
	assert rc == 0, "exit status %s after SIGTERM (expected 0)" % rc
	d2 = t.start(conf)
	m = d2.wait_log(LOADED_RE)
	assert m.group(1) == "1", "%r: the message finished during shutdown (%s) is not queued" % (m.group(0), qid)
