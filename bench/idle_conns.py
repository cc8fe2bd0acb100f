#!/usr/bin/python3
"""idle_conns.py — hold many idle SMTP connections open and report the
server's memory while they are open.

Opens --count TCP connections to --host:--port (at most --parallel
connecting at a time, so the listen queue never overflows), reads each
one's greeting line, then keeps every connection open and silent.  Once all
are open it waits --settle seconds, reads the server's VmRSS and VmHWM from
/proc/--pid/status, checks that the server closed none of the connections,
closes them all and prints one `key=value` line per figure:

  opened=N greeted=N (a "220 " greeting) refused=N (another reply, e.g. 421)
  failed=N (connect or read error, timeout) closed_by_server=N
  open_seconds=S vmrss_kb=K vmhwm_kb=K first_problem=...

Exit status 0 only if every connection got its 220 and stayed open.
Every wait is bounded (--timeout for the whole opening phase).
"""

import argparse
import asyncio
import resource
import sys
import time


def raise_nofile(need):
	"""Raises the soft RLIMIT_NOFILE so `need` sockets fit; the hard
	limit is the ceiling (raising it needs privileges we do not ask for)."""
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	want = need if hard == resource.RLIM_INFINITY else min(need, hard)
	if soft < want:
		resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
	return want >= need


def proc_status(pid):
	"""VmRSS and VmHWM (kB) of pid, or None for each if unreadable."""
	out = {"VmRSS": None, "VmHWM": None}
	try:
		with open("/proc/%d/status" % pid) as f:
			for line in f:
				k, _, v = line.partition(":")
				if k in out:
					out[k] = int(v.split()[0])
	except OSError:
		pass
	return out


async def watch_one(reader, tally):
	"""Returns when the server writes or closes: the connection is then
	no longer idle (an idle-timeout 421, a crash)."""
	try:
		data = await reader.read(1)
	except OSError as e:
		data = repr(e)
	tally["closed_by_server"] += 1
	tally.setdefault("first_problem", "after the greeting: %r" % (data,))


async def open_one(host, port, sem, conns, tally, read_timeout):
	async with sem:
		try:
			reader, writer = await asyncio.wait_for(
			    asyncio.open_connection(host, port), read_timeout)
		except (OSError, asyncio.TimeoutError) as e:
			tally["failed"] += 1
			tally.setdefault("first_problem", "connect: %r" % (e,))
			return
		tally["opened"] += 1
		try:
			line = await asyncio.wait_for(reader.readline(), read_timeout)
		except (OSError, asyncio.TimeoutError) as e:
			tally["failed"] += 1
			tally.setdefault("first_problem", "greeting: %r" % (e,))
			writer.close()
			return
		if line.startswith(b"220 "):
			tally["greeted"] += 1
			watch = asyncio.ensure_future(watch_one(reader, tally))
			conns.append((watch, writer))
		else:
			tally["refused"] += 1
			tally.setdefault("first_problem", "greeting: %r" % (line,))
			writer.close()


async def run(args):
	sem = asyncio.Semaphore(args.parallel)
	conns = []
	tally = {"opened": 0, "greeted": 0, "refused": 0, "failed": 0,
	    "closed_by_server": 0}
	t0 = time.monotonic()
	tasks = [asyncio.ensure_future(open_one(args.host, args.port, sem, conns,
	    tally, args.read_timeout)) for _ in range(args.count)]
	done, pending = await asyncio.wait(tasks, timeout=args.timeout)
	for t in pending:
		t.cancel()
	if pending:
		tally["failed"] += len(pending)
		tally.setdefault("first_problem", "%d not open after %gs" %
		    (len(pending), args.timeout))
		await asyncio.wait(pending, timeout=5)
	tally["open_seconds"] = "%.2f" % (time.monotonic() - t0)

	await asyncio.sleep(args.settle)
	if args.pid:
		st = proc_status(args.pid)
		tally["vmrss_kb"] = st["VmRSS"]
		tally["vmhwm_kb"] = st["VmHWM"]
	for watch, w in conns:
		watch.cancel()
		w.close()
	await asyncio.sleep(0.2)
	return tally


def main():
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument("--host", default="127.0.0.1")
	ap.add_argument("--port", type=int, required=True)
	ap.add_argument("--count", type=int, default=10000)
	ap.add_argument("--parallel", type=int, default=200,
	    help="connections being opened at the same time")
	ap.add_argument("--pid", type=int, default=0, help="server whose memory to read")
	ap.add_argument("--settle", type=float, default=2.0,
	    help="seconds to wait once all are open, before reading memory")
	ap.add_argument("--timeout", type=float, default=180.0,
	    help="bound on the whole opening phase, seconds")
	ap.add_argument("--read-timeout", type=float, default=30.0,
	    help="bound on one connect or greeting, seconds")
	args = ap.parse_args()

	if not raise_nofile(args.count + 64):
		print("idle_conns: RLIMIT_NOFILE hard limit %d is too low for %d connections" %
		    (resource.getrlimit(resource.RLIMIT_NOFILE)[1], args.count), file=sys.stderr)
		return 2
	tally = asyncio.run(run(args))
	for k in ("opened", "greeted", "refused", "failed", "closed_by_server",
	    "open_seconds", "vmrss_kb", "vmhwm_kb", "first_problem"):
		if k in tally:
			print("%s=%s" % (k, tally[k]))
	ok = tally["greeted"] == args.count and tally["closed_by_server"] == 0
	return 0 if ok else 1


if __name__ == "__main__":
	sys.exit(main())
