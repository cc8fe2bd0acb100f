"""Recovery after a crash at every write boundary of the spool's committer:
what comes back is exactly the mail that was acknowledged (and the message
being written, once all of it was written), never a record forged inside a
client's message text.

relayd is killed by its own test hook (RELAYD_TEST_SPOOL_KILL, relayd(8))
while it commits a message whose text carries spool records a client could
forge: a DONE retiring an acknowledged message and a MSG injecting mail
with an envelope of the client's choosing, in the old record format with a
correct CRC-32C, and in the sealed format with seals the client had to
guess.  After a restart relayctl queue --json must list the acknowledged
message and nothing forged."""

import json
import os
import random
import re
import struct
import time

from harness import SANITIZER_RE

LOADED_RE = r"queue: (\d+) messages? loaded from the spool"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FORGED_SENDER = "forged@example.com"


def _crc_table():
	tab = []
	for i in range(256):
		c = i
		for _ in range(8):
			c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
		tab.append(c)
	return tab


CRC_TABLE = _crc_table()


def crc32c(data, crc=0):
	crc ^= 0xffffffff
	for b in data:
		crc = CRC_TABLE[(crc ^ b) & 0xff] ^ (crc >> 8)
	return crc ^ 0xffffffff


def qid_value(qid):
	v = 0
	for ch in qid:
		v = v * 62 + ALPHABET.index(ch)
	return v


def pstr(s):
	if s is None:
		return struct.pack("<I", 0xffffffff)
	b = s.encode()
	return struct.pack("<I", len(b)) + b


def msg_payload(qid, arrival, sender, rcpt, text):
	p = struct.pack("<QqII", qid, arrival, 0, 1) + pstr(sender) + pstr(None)
	p += pstr(rcpt) + struct.pack("<BHq", 0, 0, 0) + pstr(None) + pstr("")
	return p + struct.pack("<Q", len(text)) + text


def record_v1(rtype, payload):
	"""A record as relayd wrote them before the sealed format (version 1)."""
	head = struct.pack("<BBHI", rtype, 1, 0, len(payload))
	return b"RLYR" + head + struct.pack("<I", crc32c(payload, crc32c(head))) + payload


def record_v2(rtype, payload, seal):
	"""A record in the sealed layout (version 2) with a seal the client
	guessed: magic, type, version, reserved, length, CRC, seal."""
	head = struct.pack("<BBHI", rtype, 2, 0, len(payload))
	crc = crc32c(payload, crc32c(seal, crc32c(head)))
	return b"RLYR" + head + struct.pack("<I", crc) + seal + payload


def clean(rec):
	"""Binary that survives DATA unchanged: CR and LF only as CRLF pairs
	(bare ones are normalised), no line that starts with a dot or is longer
	than 998 octets."""
	lines = rec.split(b"\r\n")
	return all(b"\r" not in l and b"\n" not in l and len(l) < 900 for l in lines) and \
	    not any(l.startswith(b".") for l in lines[1:])


def forged_done_v1(victim_qid):
	"""A DONE of the victim in the old layout, or None if its bytes hold
	a CR or LF (it has nothing that could be tweaked)."""
	rec = record_v1(3, struct.pack("<Q", qid_value(victim_qid)))
	return rec if clean(rec) else None


def clock_forgeable(margin):
	"""Whether queue ids from now to `margin` seconds on (the microsecond
	clock) can be written in DATA: no CR or LF among their fixed bytes."""
	for dt in (0, margin):
		b = struct.pack("<Q", int((time.time() + dt) * 1e6))
		if b"\r" in b[3:] or b"\n" in b[3:]:
			return False
	return True


def wait_forgeable():
	"""The third byte of a queue id turns every 16.8 s: when it is a CR or
	LF, a DONE for the ids of that window cannot pass through DATA intact;
	wait for the next window."""
	deadline = time.monotonic() + 20
	while not clock_forgeable(5) and time.monotonic() < deadline:
		time.sleep(0.5)


def forged_records(victim_qid, rnd):
	"""Records a client could hide in its text: DONE of the victim and a
	MSG from FORGED_SENDER, in the old layout and in the sealed one with a
	zero seal and random ones; fields and seals are varied until no record
	holds a CR or LF."""
	v = qid_value(victim_qid) if victim_qid is not None else 1 << 50
	out = []
	if victim_qid is not None:
		out.append(forged_done_v1(victim_qid))
	for zero in (True, False):
		for tries in range(1000):
			seal = bytes(16) if zero and tries == 0 else bytes(rnd.getrandbits(8) for _ in range(16))
			if victim_qid is None:
				break
			rec = record_v2(3, struct.pack("<Q", v), seal)
			if clean(rec):
				out.append(rec)
				break
	makers = [record_v1, lambda ty, p: record_v2(ty, p, bytes(16)),
	    lambda ty, p: record_v2(ty, p, bytes(rnd.getrandbits(8) for _ in range(16)))]
	for make in makers:
		for tries in range(10000):
			q = (1 << 50) + rnd.getrandbits(48)
			rec = make(1, msg_payload(q, rnd.getrandbits(40), FORGED_SENDER, "rcpt@example.net",
			    b"Subject: injected\r\n\r\nMARK-injected\r\n"))
			if clean(rec):
				out.append(rec)
				break
	return out


def queue_json(t, conf):
	relayctl = os.path.join(os.path.dirname(t.relayd), "relayctl")
	rc, out, err = t.run([relayctl, "-f", conf.path, "queue", "--json"], timeout=30)
	assert rc == 0, "relayctl queue --json: exit %d: %s" % (rc, err)
	assert not SANITIZER_RE.search(err), err[:2000]
	return json.loads(out)


VICTIMS = 8
POINTS = ("start", "body", "head", "written", "sync", "synced")
COMPLETE = ("written", "sync", "synced")	# the torn message is whole on disk


def crash_at(t, point, rnd):
	"""One round: acknowledged victim, then a large message with forged
	records, killed at `point` of its commit; returns what came back."""
	spool = os.path.join(t.dir, "spool-" + point)
	conf = t.config(spool=spool)
	wait_forgeable()
	d = t.start(conf, env={"RELAYD_TEST_SPOOL_KILL": point + ":%d" % (VICTIMS + 1)})
	c = d.connect()
	c.hello()
	# acknowledged victims; the forged DONE retires the first one whose
	# record DATA leaves intact
	victims = [c.send_message("victim@example.com", ["v@example.net"],
	    b"Subject: acknowledged %d\r\n\r\nMARK-victim\r\n" % i) for i in range(VICTIMS)]
	target = next((v for v in victims if forged_done_v1(v) is not None), None)
	if target is None:
		# a CR or LF in the fourth to sixth byte: for minutes, no DONE can pass
		print("no victim id of this hour can be forged in DATA: MSG records only")
	recs = forged_records(target, rnd)
	assert len(recs) == (6 if target else 3), "could not build the forged records"
	# the forged records early in the text, then enough for the body to be
	# spilled to a file (> 32 KiB) and written in several chunks
	body = b"Subject: carries forged records\r\n\r\n"
	for r in recs:
		body += b"X" + r + b"\r\n"
	body += (b"y" * 78 + b"\r\n") * 1600
	c.expect("MAIL FROM:<torn@example.com>", 250)
	c.expect("RCPT TO:<t@example.net>", 250)
	c.expect("DATA", 354)
	c.send(body + b".\r\n", what="a 130 kB message carrying forged records")
	try:
		r = c.read_reply(timeout=20)
		raise AssertionError("at %s: relayd answered %s instead of dying" % (point, r))
	except AssertionError as e:
		if "instead of dying" in str(e):
			raise
	rc = d.wait_exit(10)
	d.expected_exit = True
	assert rc == -9, "at %s: relayd ended with %s, not by its SIGKILL hook" % (point, rc)
	c.close()
	spooled = t.spool_bytes(conf)
	assert recs[0] in spooled or point in ("start",), \
	    "at %s: the forged records are not in the spool: nothing was tested" % point
	d2 = t.start(conf)
	d2.wait_log(LOADED_RE)
	q = queue_json(t, conf)
	d2.stop()
	return victims, target, q, d2.log()


def test_forged_records_never_obeyed_at_any_write_boundary(t):
	rnd = random.Random(11)
	problems = []
	for point in POINTS:
		victims, target, q, log = crash_at(t, point, rnd)
		senders = sorted(m["sender"] for m in q)
		want = sorted(["victim@example.com"] * VICTIMS + (["torn@example.com"]
		    if point in COMPLETE else []))
		ids = set(m["id"] for m in q)
		print("killed at %-8s recovered %d messages: %s" % (point, len(q), sorted(set(senders))))
		if target is not None and target not in ids:
			problems.append("at %s: the acknowledged message %s was deleted" % (point, target))
		if FORGED_SENDER in senders:
			problems.append("at %s: a forged MSG record was obeyed (from=<%s> queued)" % (
			    point, FORGED_SENDER))
		if senders != want:
			problems.append("at %s: recovered %d messages from %s, expected %d" % (
			    point, len(senders), sorted(set(senders)), len(want)))
		# what was cut off is said, with the queue id when its header was written
		cut = re.findall(r"bytes of an unfinished write cut off \((.*)\)$", log, re.M)
		if point in ("body", "head") and not cut:
			problems.append("at %s: recovery did not say what it cut off" % point)
		if cut:
			print("    cut off: " + "; ".join(cut))
	assert not problems, "; ".join(problems)


test_forged_records_never_obeyed_at_any_write_boundary.timeout = 180
