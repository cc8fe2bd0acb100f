#!/usr/bin/python3
"""sink_wait.py — wait until smtp-sink has received N messages, and say when.

smtp-sink -c writes its running counters to its stdout after every message
and session ("\rsess=S quit=Q mesg=M"); bench/relay.sh sends that to a file.
This reads the end of the file every --interval seconds (an fstat and a
64-byte pread: next to nothing, so the measurement is not disturbed) and
prints, as soon as mesg >= --count, the wall-clock time it saw it:

    reached=<epoch seconds> mesg=<count>

or, if --timeout seconds pass first, `timeout mesg=<last count seen>` and
exit status 1. It prints `ready` first, once the file is open, so the caller
can start its clock after. The caller stops it by PID if it must.
"""

import argparse
import os
import re
import sys
import time

MESG = re.compile(rb"mesg=(\d+)\s*$")


def last_count(fd):
	size = os.fstat(fd).st_size
	if size == 0:
		return 0
	tail = os.pread(fd, 64, max(0, size - 64))
	# Each record ends with "\r"; a record still being written is not one.
	recs = tail.split(b"\r")
	recs = [r for r in recs[:-1] if r]
	for r in reversed(recs):
		m = MESG.search(r)
		if m:
			return int(m.group(1))
	return 0


def main():
	ap = argparse.ArgumentParser()
	ap.add_argument("--file", required=True)
	ap.add_argument("--count", type=int, required=True)
	ap.add_argument("--timeout", type=float, default=900)
	ap.add_argument("--interval", type=float, default=0.002)
	a = ap.parse_args()

	deadline = time.monotonic() + a.timeout
	while True:
		try:
			fd = os.open(a.file, os.O_RDONLY)
			break
		except FileNotFoundError:
			if time.monotonic() > deadline:
				print("timeout mesg=0", flush=True)
				return 1
			time.sleep(0.01)
	print("ready", flush=True)
	n = 0
	while True:
		n = last_count(fd)
		if n >= a.count:
			print("reached=%.6f mesg=%d" % (time.time(), n), flush=True)
			return 0
		if time.monotonic() > deadline:
			print("timeout mesg=%d" % n, flush=True)
			return 1
		time.sleep(a.interval)


if __name__ == "__main__":
	sys.exit(main())
