"""Crash test: relayd is killed with SIGKILL at random moments while 1,000
messages flow through it to an upstream; it is restarted each time.
Every message that got its 250 must reach the upstream at least once.
Duplicates are allowed (a kill between the upstream's 250 and relayd
writing the recipient off) and reported."""

import os
import random
import re
import threading
import time

from relayutil import start_upstream, relay_config

N = int(os.environ.get("RELAYD_CRASH_MESSAGES", "1000"))
SENDERS = 4
MAX_KILLS = 12
PACE = 0.025		# s between messages of one sender: ~6 s of submissions,
			# so that kills land while messages are being accepted too


def test_kill9_while_relaying(t):
	up = start_upstream(t)
	conf = relay_config(t, {"up": up.conf(max_connections=4)}, {"example.com": "up"},
	    retry={"attempts": 50, "delay": 1, "backoff": 1.0, "max_delay": 2})
	state = {"d": t.start(conf)}
	lock = threading.Lock()
	acked = set()		# markers whose 250 we heard
	tried = set()		# markers sent at least once without hearing the answer
	errors = []

	def sender(k):
		todo = list(range(k, N, SENDERS))
		c = None
		deadline = time.monotonic() + 150
		while todo and time.monotonic() < deadline:
			i = todo[0]
			try:
				if c is None:
					with lock:
						d = state["d"]
					c = d.connect(timeout=5)
					c.hello()
				c.send_message("sender@example.com", ["r%d@example.net" % (i % 7)],
				    b"Subject: crash %d\r\n\r\nMARK-crash-%d-\r\n" % (i, i))
				with lock:
					acked.add(i)
				todo.pop(0)
				time.sleep(PACE)
			except (AssertionError, OSError):
				with lock:
					tried.add(i)
				if c is not None:
					c.close()
				c = None
				time.sleep(0.05)
		if c is not None:
			c.close()
		if todo:
			errors.append("sender %d could not submit %d messages in time" % (k, len(todo)))

	threads = [threading.Thread(target=sender, args=(k,)) for k in range(SENDERS)]
	for th in threads:
		th.start()
	def counts():
		c = {}
		for m in up.messages():
			for x in re.findall(rb"MARK-crash-(\d+)-", m["data"]):
				c[int(x)] = c.get(int(x), 0) + 1
		return c

	# kill at random moments while messages are submitted and relayed,
	# up to MAX_KILLS times; then let the last relayd finish
	kills = 0
	rnd = random.Random()
	stop_at = time.monotonic() + 150
	try:
		while kills < MAX_KILLS and time.monotonic() < stop_at:
			time.sleep(rnd.uniform(0.2, 1.2))
			if not any(th.is_alive() for th in threads):
				with lock:
					if acked <= set(counts()):
						break
			with lock:
				state["d"].kill9()
				kills += 1
				state["d"] = t.start(conf)
	finally:
		for th in threads:
			th.join(160)
	assert not errors, "; ".join(errors)
	assert len(acked) == N, "only %d of %d messages acknowledged" % (len(acked), N)

	deadline = time.monotonic() + 120
	while True:
		got = counts()
		missing = sorted(acked - set(got))
		if not missing or time.monotonic() > deadline:
			break
		time.sleep(0.5)
	dups = {i: n for i, n in got.items() if n > 1}
	extra = sum(n - 1 for n in dups.values())
	# a message whose submission was interrupted may have been queued
	# twice by the client's retry: those duplicates are not relayd's
	relay_dups = [i for i in dups if i not in tried]
	print("crash test: %d kills; %d acknowledged; %d arrived; %d missing; "
	    "%d messages duplicated (%d extra copies), %d of them with a clean single submission; "
	    "%d submissions interrupted before their 250" % (kills, len(acked), len(got), len(missing),
	    len(dups), extra, len(relay_dups), len(tried)))
	assert not missing, "%d acknowledged messages never arrived after %d kills, e.g. %s" % (
	    len(missing), kills, missing[:10])


test_kill9_while_relaying.timeout = 300
