"""dnszone — a small recursive-looking DNS server on loopback for the
check-dns tests, built on python3-dnslib (Debian) for every packet it reads
or writes.

What it promises:
 - UDP and TCP on the same 127.0.0.1 port, in threads of the test process;
   stop() closes both and joins the threads (bounded waits).
 - Answers as a recursive resolver would: a CNAME is followed inside the
   zone and put in front of the records; a name that does not exist (and
   has no name below it) is NXDOMAIN, one that exists without records of
   the type asked is NODATA.
 - Over UDP an answer longer than 512 bytes is truncated (TC=1, no
   records), whatever EDNS0 the query offers: the client must come back
   over TCP (tcp_queries counts those).
 - A name set to "SERVFAIL" answers SERVFAIL; "DROP" never answers.
 - queries: every (name, type, "udp"/"tcp") asked, in order.

Zone: {name: [(type, value), ...] | "SERVFAIL" | "DROP"}; TXT values are
a str (cut into 255-byte strings) or a list of str (those strings, as
published); MX values "10 mx.example.net"; CNAME, A, AAAA as in a zone.
"""

import select
import socket
import struct
import threading

from dnslib import DNSRecord, RR, QTYPE, RCODE, TXT, A, AAAA, MX, CNAME, DNSLabel

UDP_MAX = 512


def _txt_strings(v):
	if isinstance(v, (list, tuple)):
		return [s.encode() if isinstance(s, str) else s for s in v]
	b = v.encode()
	return [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]


class DNSZoneServer:
	def __init__(self, zone):
		self.zone = {}
		self.set_zone(zone)
		self.queries = []
		self.lock = threading.Lock()
		# one port number for both: the UDP port the kernel picks may be
		# taken for TCP (other tests run beside us), then pick again
		for attempt in range(50):
			self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
			self.udp.bind(("127.0.0.1", 0))
			self.port = self.udp.getsockname()[1]
			self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
			self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
			try:
				self.tcp.bind(("127.0.0.1", self.port))
				break
			except OSError:
				self.tcp.close()
				self.udp.close()
		else:
			raise AssertionError("no port free for both UDP and TCP on 127.0.0.1")
		self.tcp.listen(16)
		self.stopping = False
		self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
		    threading.Thread(target=self._serve_tcp, daemon=True)]
		for t in self.threads:
			t.start()

	@property
	def address(self):
		return "127.0.0.1:%d" % self.port

	def set_zone(self, zone):
		self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}

	def publish(self, name, rtype, value):
		"""Replaces name's records of rtype with value (a list replaces the
		whole set)."""
		name = name.lower().rstrip(".")
		entry = self.zone.get(name)
		if not isinstance(entry, list):
			entry = []
		values = value if isinstance(value, list) and rtype != "TXT" else [value]
		entry = [(t, v) for (t, v) in entry if t != rtype] + [(rtype, v) for v in values]
		self.zone[name] = entry

	def tcp_queries(self):
		with self.lock:
			return [q for q in self.queries if q[2] == "tcp"]

	def stop(self):
		self.stopping = True
		for t in self.threads:
			t.join(3)
		self.udp.close()
		self.tcp.close()

	# --- answering
	def _exists(self, name):
		if name in self.zone:
			return True
		suffix = "." + name
		return any(k.endswith(suffix) for k in self.zone)

	def _rr(self, name, rtype, value):
		rdata = {"A": lambda v: A(v), "AAAA": lambda v: AAAA(v),
		    "CNAME": lambda v: CNAME(v),
		    "MX": lambda v: MX(v.split()[1], int(v.split()[0])),
		    "TXT": lambda v: TXT(_txt_strings(v))}[rtype](value)
		return RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=60)

	def answer(self, data, proto):
		req = DNSRecord.parse(data)
		q = req.q
		name = str(q.qname).lower().rstrip(".")
		qtype = QTYPE[q.qtype]
		with self.lock:
			self.queries.append((name, qtype, proto))
		reply = req.reply()		# QR, RD copied, RA set
		cur = name
		for _ in range(10):
			entry = self.zone.get(cur)
			if entry == "DROP":
				return None
			if entry == "SERVFAIL":
				reply.header.rcode = RCODE.SERVFAIL
				return reply.pack()
			entry = entry or []
			recs = [(t, v) for (t, v) in entry if t == qtype]
			cname = [v for (t, v) in entry if t == "CNAME"]
			if recs:
				for t, v in recs:
					reply.add_answer(self._rr(cur, t, v))
				break
			if cname and qtype != "CNAME":
				reply.add_answer(self._rr(cur, "CNAME", cname[0]))
				cur = cname[0].lower().rstrip(".")
				continue
			if not self._exists(cur):
				reply.header.rcode = RCODE.NXDOMAIN
			break
		packed = reply.pack()
		if proto == "udp" and len(packed) > UDP_MAX:
			packed = reply.truncate().pack()
		return packed

	def _serve_udp(self):
		while not self.stopping:
			r, _, _ = select.select([self.udp], [], [], 0.2)
			if not r:
				continue
			try:
				data, addr = self.udp.recvfrom(4096)
				resp = self.answer(data, "udp")
			except OSError:
				return
			except Exception:
				continue
			if resp is not None:
				self.udp.sendto(resp, addr)

	def _serve_tcp(self):
		while not self.stopping:
			r, _, _ = select.select([self.tcp], [], [], 0.2)
			if not r:
				continue
			try:
				conn, _ = self.tcp.accept()
			except OSError:
				return
			conn.settimeout(2)
			try:
				while True:
					head = conn.recv(2)
					if len(head) < 2:
						break
					(n,) = struct.unpack(">H", head)
					data = b""
					while len(data) < n:
						chunk = conn.recv(n - len(data))
						if not chunk:
							break
						data += chunk
					resp = self.answer(data, "tcp")
					if resp is None:
						break
					conn.sendall(struct.pack(">H", len(resp)) + resp)
			except (OSError, Exception):
				pass
			finally:
				conn.close()


class SilentServer:
	"""A UDP port on loopback that takes queries and never answers (a
	resolver that times out); nothing listens on its TCP port."""

	def __init__(self):
		self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
		self.sock.bind(("127.0.0.1", 0))
		self.port = self.sock.getsockname()[1]

	@property
	def address(self):
		return "127.0.0.1:%d" % self.port

	def stop(self):
		self.sock.close()
