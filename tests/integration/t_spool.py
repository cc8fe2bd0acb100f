"""Durability: a 250 means the message survives kill -9; a full disk gets
452 4.3.1 and the daemon carries on; a clean stop exits 0 and keeps the queue.

A failing spool (issue 14): full, its directory renamed or removed under
a running relayd, made read-only (chmod, for a relay user that is not
root) or turned read-only by its filesystem (ext4's errors=remount-ro on
a loop device): clients get 452 4.3.1 Insufficient system storage, never
a 250 for mail that is not where a restart would find it, relayd says so
in one line and does not crash, and it takes mail again once the spool
is back; what was acknowledged arrives at the upstream byte for byte."""

import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import threading
import time

from harness import queued_id, dot_stuff
from relayutil import relay_config, start_upstream
from harness import umount

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


def _victim(t, name="victim", data=b"VICTIM-CONTENT must stay as it is\n"):
	path = os.path.join(t.dir, name)
	with open(path, "wb") as f:
		f.write(data)
	os.chmod(path, 0o644)
	return path, data


def _start_on(t, conf):
	"""Starts relayd and waits until it exits or has read its spool."""
	d = t.start(conf, wait=False)
	deadline = time.monotonic() + 15
	while d.alive() and not re.search(LOADED_RE, d.log()) and time.monotonic() < deadline:
		time.sleep(0.05)
	return d


def _refused(d, what):
	"""relayd must have refused the spool: exit status 2 and a log line
	saying why; returns that line."""
	rc = d.wait_exit(15)
	d.expected_exit = True
	assert rc == 2, "%s: relayd exit status %s (expected 2, spool unusable); log:\n%s" % (
	    what, rc, d.log_tail())
	m = re.search(r"^.*spool unusable: .*$", d.log(), re.M)
	assert m, "%s: no 'spool unusable' line; log:\n%s" % (what, d.log_tail())
	print("%s: %s" % (what, m.group(0)))
	return m.group(0)


def test_symlink_as_segment_not_followed(t):
	"""A symbolic link planted under a segment's name is not followed (as
	root, following it let recovery truncate any file): the victim stays
	as it was and relayd says which entry is wrong."""
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	victim, data = _victim(t)
	spool = os.path.join(t.dir, "spool")
	os.mkdir(spool, 0o700)
	seg = os.path.join(spool, "0000000000000001.seg")
	os.symlink(victim, seg)
	d = _start_on(t, t.config(spool=spool))
	with open(victim, "rb") as f:
		got = f.read()
	assert got == data, "the file a segment's symlink points to was changed: %d bytes left of %d" % (
	    len(got), len(data))
	line = _refused(d, "symlink as a segment")
	assert seg in line and "symbolic link" in line, "the line does not name %s as a link: %s" % (
	    seg, line)
	assert os.path.islink(seg), "the planted link is gone"


def test_symlink_as_lock_not_followed(t):
	"""A symbolic link planted as spool/lock is not followed: neither an
	existing file nor a missing one (O_CREAT would have created it) is
	touched."""
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	spool = os.path.join(t.dir, "spool")
	os.mkdir(spool, 0o700)
	lock = os.path.join(spool, "lock")
	missing = os.path.join(t.dir, "would-be-created")
	os.symlink(missing, lock)
	d = _start_on(t, t.config(spool=spool))
	assert not os.path.exists(missing), "relayd created the file spool/lock points to"
	line = _refused(d, "lock -> missing file")
	assert lock in line and "symbolic link" in line, line
	os.unlink(lock)
	victim, data = _victim(t)
	os.symlink(victim, lock)
	d = _start_on(t, t.config(spool=spool))
	with open(victim, "rb") as f:
		assert f.read() == data
	st = os.stat(victim)
	assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644), "victim's owner or mode changed"
	_refused(d, "lock -> existing file")


def test_spool_others_may_write_refused(t):
	"""A spool directory that group or others may write to is refused with
	exit status 2 and the fix in the log line."""
	spool = os.path.join(t.dir, "spool")
	os.mkdir(spool)
	for mode in (0o777, 0o770, 0o1777):
		os.chmod(spool, mode)
		line = _refused(_start_on(t, t.config(spool=spool)), "mode %o" % mode)
		assert spool in line and "chmod" in line, line
	os.chmod(spool, 0o700)
	d = t.start(t.config(spool=spool))
	d.wait_log(LOADED_RE)


def _spool_of_nobody(t):
	"""A spool directory (mode 0700) owned by the user nobody: its path, or
	None (after saying why) where that cannot be."""
	import pwd
	pw = {p.pw_name: p for p in pwd.getpwall()}.get("nobody")
	if os.geteuid() != 0 or pw is None:
		print("needs root and the user nobody; skipped")
		return None
	spool = os.path.join(t.dir, "spool")
	os.mkdir(spool, 0o700)
	os.chown(spool, pw.pw_uid, pw.pw_gid)
	return spool


def test_spool_of_another_user_refused(t):
	"""A spool directory owned by a user other than root or the relay user
	is refused, with exit status 2 and the fix in the log line."""
	spool = _spool_of_nobody(t)
	if spool is None:
		return
	line = _refused(_start_on(t, t.config(spool=spool)), "owned by nobody")
	assert spool in line and "nobody" in line and "chown" in line, line
	# owned by the relay user: fine
	os.chmod(t.dir, 0o755)
	d = t.start(t.config(spool=spool, user="nobody"))
	d.wait_log(LOADED_RE)


def _relayctl(t, conf, *args):
	p = os.path.join(os.path.dirname(t.relayd), "relayctl")
	rc, out, err = t.run([p, "-f", conf.path] + list(args), timeout=30)
	assert rc == 0, "relayctl %s: exit %d: %s" % (" ".join(args), rc, err)
	return out


NOROOM = "Insufficient system storage"	# interface.md: 452 4.3.1 Insufficient system storage
SENT = {}	# marker -> the text sent (unstuffed), for byte-for-byte checks


def _try_send(d, marker, size):
	"""One message of about size bytes on a connection of its own: its
	queue id on 250, None on 452 4.3.1 (at whatever step it came)."""
	c = d.connect()
	c.hello()
	body = b"Subject: " + marker.encode() + b"\r\n\r\n" + marker.encode() + b"\r\n"
	fill = bytes(random.choice(b"abcdefghijklmnopqrstuvwxyz.") for _ in range(78)) + b"\r\n"
	body += fill * max(0, (size - len(body)) // 80)
	SENT[marker] = body
	for line, ok in (("MAIL FROM:<filler@example.com>", 250), ("RCPT TO:<r@example.net>", 250),
	    ("DATA", 354)):
		r = c.cmd(line)
		if r.code != ok:
			c.check(r, 452, "4.3.1", "^4\\.3\\.1 %s$" % NOROOM)
			c.close()
			return None
	c.send(dot_stuff(body) + b".\r\n", what="%d-byte message %s" % (len(body), marker))
	r = c.read_reply(timeout=30)
	c.close()
	if r.code == 452:
		c.check(r, 452, "4.3.1", "^4\\.3\\.1 %s$" % NOROOM)
		return None
	return queued_id(c, r)


def _fill(d, tag, acked):
	"""Sends 60 kB messages, then 500-byte ones, each until the spool
	answers 452 4.3.1; adds {marker: id} of those acknowledged to acked."""
	for size in (60000, 500):
		for i in range(300):
			marker = "MARK-%s-%d-%d" % (tag, size, i)
			qid = _try_send(d, marker, size)
			if qid is None:
				break
			acked[marker] = qid
		else:
			raise AssertionError("%d-byte messages never got 452 4.3.1" % size)


def _small_spool_relay(t):
	"""A configuration whose spool is a 2 MB tmpfs and whose upstream is on
	a port nothing listens on yet (start_upstream(t, port=...) later);
	retries only by relayctl flush.  Returns (conf, port)."""
	spooldir = os.path.join(t.dir, "spool")
	t.mount_tmpfs(spooldir, "2m")
	port = t.free_port()
	conf = relay_config(t, {"up": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "up"}, retry={"attempts": 50, "delay": 3600, "backoff": 1.0,
	    "max_delay": 3600}, spool=spooldir)
	return conf, port


def _delivered(up):
	got = set()
	for m in up.messages():
		got.update(x.decode() for x in re.findall(rb"MARK-[\w-]+", m["data"]))
	return got


def _same_bytes(up, markers):
	"""Asserts that each of markers arrived, every copy ending with exactly
	the text that was sent (relayd adds only its Received: field before
	it)."""
	copies = {}
	for m in up.messages():
		x = re.search(rb"^Subject: (MARK-[\w-]+)\r$", m["data"], re.M)
		if x:
			copies.setdefault(x.group(1).decode(), []).append(m["data"])
	for marker in markers:
		got = copies.get(marker)
		assert got, "%s never arrived" % marker
		for data in got:
			assert data.endswith(SENT[marker]), "%s arrived altered: %d octets, sent %d" % (
			    marker, len(data), len(SENT[marker]))


def test_full_spool_takes_mail_again_once_delivered(t):
	"""On a 2 MB tmpfs filled by queued mail: 452 4.3.1 (never a 250 for
	mail not on disk); once the upstream takes the queued mail, new mail
	gets 250 again without a restart; filled again, relayd restarts on the
	full disk and loses nothing."""
	conf, port = _small_spool_relay(t)
	d = t.start(conf)
	acked = {}
	_fill(d, "fill", acked)
	print("full after %d messages (%d bytes free)" % (len(acked), statvfs_free(conf.spool)))
	assert len(acked) >= 10, "the spool took only %d messages" % len(acked)

	up = start_upstream(t, port=port)
	_relayctl(t, conf, "flush")
	up.wait(lambda u: set(acked) <= _delivered(u), "all %d queued messages" % len(acked), timeout=60)
	deadline = time.monotonic() + 20
	while json.loads(_relayctl(t, conf, "queue", "--json")) and time.monotonic() < deadline:
		time.sleep(0.2)
	assert json.loads(_relayctl(t, conf, "queue", "--json")) == [], "queue not empty after delivery"
	# the delivered mail's space serves new mail, without a restart
	deadline = time.monotonic() + 10
	while True:
		qid = _try_send(d, "MARK-after-0", 60000)
		if qid is not None:
			break
		assert time.monotonic() < deadline, "452 4.3.1 still, %d s after the queue emptied " \
		    "(%d bytes free)" % (10, statvfs_free(conf.spool))
		time.sleep(0.5)
	acked["MARK-after-0"] = qid
	up.wait(lambda u: "MARK-after-0" in _delivered(u), "the message sent after delivery")
	print("\n".join(re.findall(r"^.* spool: .*(?:is full|room again|removing it).*$", d.log(),
	    re.M)))
	said = re.findall(r"^.* spool: .*(?:is full \(|room again).*$", d.log(), re.M)
	assert said and "is full" in said[0] and "room again" in said[-1], \
	    "the log does not say when the spool got full and when it had room again"

	missing = set(acked) - _delivered(up)
	assert not missing, "acknowledged but never delivered: %s" % sorted(missing)[:10]
	_same_bytes(up, acked)
	assert d.alive()


test_full_spool_takes_mail_again_once_delivered.timeout = 240


def test_restart_on_a_full_spool_loses_nothing(t):
	"""relayd stopped with its spool full of queued mail starts again (no
	room for a new segment is no reason to refuse), loads every message
	and delivers them; meanwhile new mail gets 452 4.3.1."""
	conf, port = _small_spool_relay(t)
	d = t.start(conf)
	queued = {}
	_fill(d, "fill", queued)
	assert d.stop() == 0
	print("stopped with %d messages queued, %d bytes free" % (len(queued), statvfs_free(conf.spool)))
	for i in range(2):	# and once more, without having delivered anything
		d = t.start(conf)
		m = d.wait_log(LOADED_RE)
		assert int(m.group(1)) == len(queued), "%s after a restart on a full spool holding %d" % (
		    m.group(0), len(queued))
		assert _try_send(d, "MARK-while-full-%d" % i, 60000) is None, "250 on a full spool"
		if i == 0:
			assert d.stop() == 0
	up = start_upstream(t, port=port)
	_relayctl(t, conf, "flush")
	up.wait(lambda u: set(queued) <= _delivered(u), "the %d messages queued before the restart" %
	    len(queued), timeout=60)
	deadline = time.monotonic() + 10
	while _try_send(d, "MARK-after", 60000) is None:
		assert time.monotonic() < deadline, "452 4.3.1 still, 10 s after the queue was delivered"
		time.sleep(0.5)
	up.wait(lambda u: "MARK-after" in _delivered(u), "the message sent after delivery")
	_same_bytes(up, list(queued) + ["MARK-after"])


test_restart_on_a_full_spool_loses_nothing.timeout = 180


# ---------------------------------------------------------------------------
# a spool that vanishes or turns read-only (issue 14, item 3)

GONE_RE = r"spool: .*(no longer names|was removed|gone).*"


def _relay_on(t, spool, **top):
	"""relayd on spool, its upstream on a port nothing listens on yet;
	retries by relayctl flush only.  Returns (conf, d, upstream port)."""
	port = t.free_port()
	conf = relay_config(t, {"up": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "up"}, retry={"attempts": 50, "delay": 3600, "backoff": 1.0,
	    "max_delay": 3600}, spool=spool, **top)
	return conf, t.start(conf), port


def _until_accepted(d, marker, size=2000, wait=10):
	deadline = time.monotonic() + wait
	while True:
		qid = _try_send(d, marker, size)
		if qid is not None:
			return qid
		assert time.monotonic() < deadline, "still 452 4.3.1 %d s after the spool was " \
		    "back" % wait
		time.sleep(0.3)


def _deliver_all(t, conf, port, markers):
	up = start_upstream(t, port=port)
	_relayctl(t, conf, "flush")
	up.wait(lambda u: set(markers) <= _delivered(u), "the %d acknowledged messages" %
	    len(markers), timeout=60)
	_same_bytes(up, markers)
	return up


def test_spool_renamed_under_relayd(t):
	"""The spool directory is renamed away under a running relayd (relayd
	works through its descriptor, so it could go on writing there, but a
	restart would look at the configured path and find none of that
	mail): new mail gets 452 4.3.1, small and spilled alike, and the log
	says why, once; renamed back, mail is taken again without a restart;
	everything acknowledged is delivered byte for byte."""
	spool = os.path.join(t.dir, "spool")
	conf, d, port = _relay_on(t, spool)
	acked = [m for m in ("MARK-before-1", "MARK-before-2") if _try_send(d, m, 2000)]
	assert len(acked) == 2
	os.rename(spool, spool + ".moved")
	for i, size in enumerate((2000, 60000, 2000)):
		qid = _try_send(d, "MARK-gone-%d" % i, size)
		assert qid is None, "250 (%s) for a %d-byte message while the spool directory was " \
		    "renamed away" % (qid, size)
	m = d.wait_log(GONE_RE)
	print("logged: " + m.group(0))
	assert d.count_log(GONE_RE) == 1, "said more than once:\n" + "\n".join(
	    re.findall(r"^.*" + GONE_RE + "$", d.log(), re.M))
	assert d.alive()
	os.rename(spool + ".moved", spool)
	acked.append("MARK-back")
	_until_accepted(d, "MARK-back")
	print("logged: " + d.wait_log(r"spool: \S+ is back.*").group(0))
	_deliver_all(t, conf, port, acked)
	assert d.stop() == 0
	d = t.start(conf)
	d.wait_log(LOADED_RE)


test_spool_renamed_under_relayd.timeout = 90


def _stopped(pid):
	with open("/proc/%d/stat" % pid) as f:
		return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_spool_renamed_while_a_message_is_written(t):
	"""The spool directory is renamed away after relayd looked at it and
	before the message's record is synced (relayd is stopped there by its
	test hook, RELAYD_TEST_SPOOL_STOP): that message lands in the renamed
	directory, where a restart would not look, so it must get 452 4.3.1,
	not 250. Renamed back, the client's retry is queued and delivered once:
	the refused copy was cut off the segment, even across a restart."""
	spool = os.path.join(t.dir, "spool")
	port = t.free_port()
	conf = relay_config(t, {"up": {"host": "127.0.0.1", "port": port, "tls": "none"}},
	    {"example.com": "up"}, retry={"attempts": 50, "delay": 3600, "backoff": 1.0,
	    "max_delay": 3600}, spool=spool)
	d = t.start(conf, env={"RELAYD_TEST_SPOOL_STOP": "sync:2"})
	assert _try_send(d, "MARK-first", 2000)
	got = {}
	sender = threading.Thread(target=lambda: got.update(qid=_try_send(d, "MARK-raced", 2000)))
	sender.start()
	try:
		deadline = time.monotonic() + 20
		while not _stopped(d.pid):
			assert time.monotonic() < deadline, "relayd never stopped at its test hook"
			time.sleep(0.05)
		os.rename(spool, spool + ".moved")
	finally:
		os.kill(d.pid, signal.SIGCONT)
		sender.join(40)
	assert not sender.is_alive(), "no reply to the end of DATA"
	assert got["qid"] is None, "250 (%s) for a message written into the spool directory " \
	    "after it was renamed away" % got["qid"]
	print("logged: " + d.wait_log(GONE_RE).group(0))
	os.rename(spool + ".moved", spool)
	_until_accepted(d, "MARK-raced")
	assert d.stop() == 0
	d = t.start(conf)
	d.wait_log(LOADED_RE)
	up = _deliver_all(t, conf, port, ["MARK-first", "MARK-raced"])
	time.sleep(1)
	copies = [m for m in up.messages() if b"MARK-raced" in m["data"]]
	assert len(copies) == 1, "MARK-raced delivered %d times" % len(copies)


test_spool_renamed_while_a_message_is_written.timeout = 90


def _segment_holding(spool, marker):
	"""(segment file name, offset) of marker's text in the spool."""
	for name in sorted(os.listdir(spool)):
		if name.endswith(".seg"):
			with open(os.path.join(spool, name), "rb") as f:
				at = f.read().find(marker.encode())
			if at >= 0:
				return name, at
	raise AssertionError("%s is in no segment of %s" % (marker, spool))


def test_spool_unreadable_at_recovery(t):
	"""A disk that cannot give back part of a segment when relayd starts
	(EIO, as from a bad sector; made by the test hook
	RELAYD_TEST_SPOOL_EIO, relayd.8): relayd says which bytes of which
	file, counts the message recorded there as damaged and says it is
	lost, recovers and delivers the others byte for byte, cuts nothing off
	the segment and keeps it whole as SEGMENT.damaged. A segment whose
	first page cannot be read is set aside, and relayd starts. Before,
	recovery read segments through a mapping: a disk error there was a
	SIGBUS, and relayd would not start."""
	spool = os.path.join(t.dir, "spool")
	conf, d, port = _relay_on(t, spool)
	for m, size in (("MARK-eio-a", 2000), ("MARK-eio-b", 40000), ("MARK-eio-c", 2000)):
		assert _try_send(d, m, size), m
	assert d.stop() == 0
	seg, at = _segment_holding(spool, "MARK-eio-b")
	bad = at + 20000		# inside B's text, clear of A and C
	size = os.path.getsize(os.path.join(spool, seg))
	d = t.start(conf, env={"RELAYD_TEST_SPOOL_EIO": "%s:%d" % (seg[:16], bad)})
	m = d.wait_log(LOADED_RE)
	assert int(m.group(1)) == 2, "%s, with the page of one message unreadable" % m.group(0)
	said = d.wait_log(r"^.*spool: \S+/%s: (\d+) of its (\d+) bytes cannot be read, the first at "
	    r"offset (\d+) \(Input/output error\).*kept as %s\.damaged.*$" % (seg, seg))
	print("logged: " + said.group(0))
	assert int(said.group(1)) == 4096 and int(said.group(3)) == bad // 4096 * 4096, said.group(0)
	print("logged: " + d.wait_log(r"^.*message \w+ is lost unless a restart reads it once the "
	    r"disk gives the page back.*$").group(0))
	damaged = os.path.join(spool, seg + ".damaged")
	assert os.path.getsize(damaged) == size, "the segment kept is not whole"
	up = _deliver_all(t, conf, port, ["MARK-eio-a", "MARK-eio-c"])
	assert d.alive()
	assert d.stop() == 0
	assert os.path.getsize(damaged) == size

	# the disk gives the page back: so does recovery the message
	d = t.start(conf)
	m = d.wait_log(LOADED_RE)
	assert int(m.group(1)) == 1, "%s, once the page can be read again" % m.group(0)
	_relayctl(t, conf, "flush")
	up.wait(lambda u: "MARK-eio-b" in _delivered(u), "the message read again")
	_same_bytes(up, ["MARK-eio-a", "MARK-eio-b", "MARK-eio-c"])
	assert d.stop() == 0
	os.unlink(damaged)

	# the first page, the segment's header with its seal, unreadable
	spool = os.path.join(t.dir, "spool2")
	conf, d, port = _relay_on(t, spool)
	assert _try_send(d, "MARK-eio-d", 2000)
	assert d.stop() == 0
	seg, at = _segment_holding(spool, "MARK-eio-d")
	d = t.start(conf, env={"RELAYD_TEST_SPOOL_EIO": "%s:0" % seg[:16]})
	m = d.wait_log(LOADED_RE)
	assert int(m.group(1)) == 0, m.group(0)
	print("logged: " + d.wait_log(r"^.*%s: its segment header cannot be read \(Input/output "
	    r"error\).*renamed %s\.damaged.*$" % (seg, seg)).group(0))
	assert sorted(n for n in os.listdir(spool) if n.startswith(seg[:16])) == [
	    seg + ".damaged"], os.listdir(spool)
	assert _try_send(d, "MARK-eio-e", 2000)
	_deliver_all(t, conf, port, ["MARK-eio-e"])


test_spool_unreadable_at_recovery.timeout = 90


def test_spool_removed_under_relayd(t):
	"""The spool directory is removed under a running relayd (rm -rf: the
	mail queued in it is gone with it, and relayd, writing through open
	descriptors, could go on acknowledging mail into deleted files): new
	mail gets 452 4.3.1, the log says what happened and what to do, and
	a directory made again in its place is used once relayd restarts."""
	spool = os.path.join(t.dir, "spool")
	conf, d, port = _relay_on(t, spool)
	assert _try_send(d, "MARK-doomed", 2000)
	shutil.rmtree(spool)
	for i, size in enumerate((2000, 60000)):
		qid = _try_send(d, "MARK-gone-%d" % i, size)
		assert qid is None, "250 (%s) for a %d-byte message after the spool directory was " \
		    "removed" % (qid, size)
	m = d.wait_log(GONE_RE)
	print("logged: " + m.group(0))
	assert d.alive()
	os.mkdir(spool, 0o700)
	assert _try_send(d, "MARK-still-gone", 2000) is None, \
	    "250 into a directory relayd has not opened (nor recovered, nor locked)"
	assert d.stop() == 0
	d = t.start(conf)
	d.wait_log(LOADED_RE)
	_until_accepted(d, "MARK-after-restart")
	_deliver_all(t, conf, port, ["MARK-after-restart"])


test_spool_removed_under_relayd.timeout = 90


def test_spool_made_read_only(t):
	"""relayd runs as the relay user (nobody) and the spool directory is
	made read-only (chmod 0500): a message that needs a file there (a
	body over 32 KB spills to one) gets 452 4.3.1 and a log line naming
	the spool and the error; small mail still goes to the segment relayd
	has open, and is durable; relayd survives, and once the directory is
	writable again large mail is taken again, without a restart."""
	spool = _spool_of_nobody(t)
	if spool is None:
		return
	os.chmod(t.dir, 0o755)
	conf, d, port = _relay_on(t, spool, user="nobody")
	acked = ["MARK-rw"]
	assert _try_send(d, "MARK-rw", 60000)
	os.chmod(spool, 0o500)
	try:
		assert _try_send(d, "MARK-ro-big", 60000) is None, "250 for a spilled body in a " \
		    "read-only spool"
		m = d.wait_log(r"^.*%s.*Permission denied.*$" % re.escape(spool))
		print("logged: " + m.group(0))
		if _try_send(d, "MARK-ro-small", 2000):
			acked.append("MARK-ro-small")
		assert d.alive()
	finally:
		os.chmod(spool, 0o700)
	acked.append("MARK-rw-again")
	_until_accepted(d, "MARK-rw-again", size=60000)
	_deliver_all(t, conf, port, acked)
	print("read-only: a 60 kB message got 452 4.3.1; a 2 kB one %s" % (
	    "was queued in the open segment" if "MARK-ro-small" in acked else "got 452 4.3.1"))


test_spool_made_read_only.timeout = 90


def _loop_ext4(t, path, size_mb=32):
	"""An ext4 filesystem in an image file, mounted on path through a loop
	device with errors=remount-ro (recorded for the harness's clean-up).
	Returns its /sys/fs/ext4 name, or None if this machine cannot."""
	img = os.path.join(t.dir, "spool.img")
	with open(img, "wb") as f:
		f.truncate(size_mb << 20)
	r = subprocess.run(["mkfs.ext4", "-q", "-F", img], stdout=subprocess.PIPE,
	    stderr=subprocess.STDOUT, timeout=60)
	if r.returncode != 0:
		return None
	os.makedirs(path, exist_ok=True)
	with open(os.path.join(t.dir, ".mounts"), "a") as f:
		f.write(os.path.realpath(path) + "\n")
	t.mounts.append(path)
	r = subprocess.run(["mount", "-o", "loop,errors=remount-ro", img, path],
	    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
	if r.returncode != 0:
		print("cannot mount a loop device: %s" % r.stdout.decode().strip())
		return None
	src = subprocess.run(["findmnt", "-n", "-o", "SOURCE", path], stdout=subprocess.PIPE,
	    timeout=10).stdout.decode().strip()
	name = os.path.basename(src)
	if not os.path.exists("/sys/fs/ext4/%s/trigger_fs_error" % name):
		return None
	os.chmod(path, 0o700)
	return name


def test_spool_filesystem_turns_read_only(t):
	"""The spool's filesystem (ext4, errors=remount-ro) hits an error and
	turns read-only under a running relayd, as a failing disk makes it:
	writes fail with EROFS.  New mail gets 452 4.3.1 (never a 250), the
	log says so once, relayd does not crash and still delivers what was
	queued (it can read); stopped, the filesystem checked and mounted
	again, relayd starts and loses nothing acknowledged (a delivery it
	could not record is made again)."""
	if os.geteuid() != 0:
		print("not root; skipped")
		return
	spool = os.path.join(t.dir, "spool")
	name = _loop_ext4(t, spool)
	if name is None:
		print("no ext4 on a loop device here; skipped")
		return
	conf, d, port = _relay_on(t, spool)
	acked = []
	for i, size in enumerate((2000, 60000, 2000)):
		marker = "MARK-before-%d" % i
		assert _try_send(d, marker, size), marker
		acked.append(marker)
	with open("/sys/fs/ext4/%s/trigger_fs_error" % name, "w") as f:
		f.write("1\n")
	results = [_try_send(d, "MARK-ro-%d" % i, size) for i, size in enumerate((2000, 60000, 2000))]
	assert results == [None] * 3, "on a read-only filesystem: %s" % results
	m = d.wait_log(r"spool: .*Read-only file system.*")
	print("logged: " + m.group(0))
	said = re.findall(r"^.*\]: (?:error: |warning: )?spool: .*Read-only file system.*$", d.log(),
	    re.M)
	assert len(said) == 1, "the spool's state said %d times:\n%s" % (len(said), "\n".join(said))
	assert d.alive()
	up = _deliver_all(t, conf, port, acked)
	assert d.stop() == 0, "relayd did not stop cleanly on a read-only spool"
	umount(spool)
	img = os.path.join(t.dir, "spool.img")
	subprocess.run(["e2fsck", "-f", "-y", img], stdout=subprocess.DEVNULL,
	    stderr=subprocess.DEVNULL, timeout=60)
	r = subprocess.run(["mount", "-o", "loop,errors=remount-ro", img, spool],
	    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
	assert r.returncode == 0, r.stdout
	d = t.start(conf)
	m = d.wait_log(LOADED_RE)
	print("after the remount: " + m.group(0))
	qid = _until_accepted(d, "MARK-after")
	acked.append("MARK-after")
	_relayctl(t, conf, "flush")
	up.wait(lambda u: set(acked) <= _delivered(u), "everything acknowledged", timeout=30)
	_same_bytes(up, acked)


test_spool_filesystem_turns_read_only.timeout = 120
