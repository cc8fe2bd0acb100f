"""relayctl check-dns against a real DNS server on loopback (dnszone, on
python3-dnslib), one zone per test built from the situations of issue 13.

What is asserted, beyond each verdict:
 - every SPF verdict agrees with pyspf (python3-spf), an independent
   evaluator, asked about the same zone on the same server: for the
   upstream's sending address and for an address nobody authorizes;
 - every record suggested is published in the zone and the domain checked
   again: it passes (a DMARC p=none suggestion WARNs, by design);
 - a lookup that fails (SERVFAIL, a resolver that never answers) is said
   to have failed, never to be missing, and the run ends in bounded time;
 - answers over 512 bytes come back truncated over UDP and are fetched
   over TCP.
Only 127.0.0.1; the DNS server is a thread of the test, stopped by the
test; relayctl runs bounded by t.run's timeout.
"""

import json
import os
import re
import subprocess
import time

from harness import SANITIZER_RE
from dnszone import DNSZoneServer, SilentServer

import dns.resolver
import spf

PROBE = "240.0.0.1"		# no record authorizes it (check-dns's own probe too)
MAILGUN_OUT = "192.0.2.20"	# "Mailgun EU's" sending address in these zones
SENDGRID_OUT = "198.18.0.20"
INHOUSE_OUT = "198.51.100.25"

BASE_ZONE = {
	"_spf.eu.mailgun.org": [("TXT", "v=spf1 ip4:192.0.2.0/25 ~all")],
	"_spf.mailgun.org": [("TXT", "v=spf1 ip4:192.0.2.128/25 ~all")],
	"mailgun.org": [("TXT", "v=spf1 include:_spf.mailgun.org include:_spf.eu.mailgun.org ~all")],
	"smtp.eu.mailgun.org": [("A", "192.0.2.10")],
	"sendgrid.net": [("TXT", "v=spf1 ip4:198.18.0.0/24 ~all")],
	"mail.example.se": [("A", INHOUSE_OUT)],
	"_spf.hosting.test": [("TXT", "v=spf1 ip4:203.0.113.0/24 -all")],
	"_spf.webhost.test": [("TXT", "v=spf1 ip4:203.0.113.0/24 include:_spf.eu.mailgun.org -all")],
	"_spf.vendor.test": [("TXT", "v=spf1 include:mailgun.org ~all")],
	"nospf-target.test": [("TXT", "just a verification token")],
}

UPSTREAMS = """
upstream "mailgun" {
	host = "smtp.eu.mailgun.org"
	auth = "plain"
	username = "postmaster@mg.vitec.test"
	password_file = "/nonexistent/mailgun.secret"
}
upstream "sendgrid" {
	host = "smtp.sendgrid.net"
	auth = "plain"
	username = "apikey"
	password_file = "/nonexistent/sendgrid.secret"
}
upstream "mailgun-own" {
	host = "smtp.eu.mailgun.org"
	auth = "plain"
	username = "postmaster@mg.example.org"
	password_file = "/nonexistent/mailgun-own.secret"
}
upstream "inhouse" {
	host = "mail.example.se"
	port = 2525
	tls = "none"
}
"""


# ---------------------------------------------------------------------------
# helpers

def relayctl(t):
	p = os.path.join(os.path.dirname(t.relayd), "relayctl")
	assert os.access(p, os.X_OK), "no relayctl next to relayd (%s)" % p
	return p


def domain_block(name, upstream, dkim=()):
	s = 'domain "%s" {\n\tupstream = "%s"\n' % (name, upstream)
	for sel, keyfile, alg in dkim:
		s += ('\tdkim {\n\t\tselector = "%s"\n\t\tkey_file = "%s"\n\t\talgorithm = "%s"\n'
		    '\t}\n') % (sel, keyfile, alg)
	return s + "}\n"


def write_conf(t, domains):
	"""domains: [(name, upstream, dkim)]."""
	return t.config(domains=(), upstream=False,
	    extra=UPSTREAMS + "".join(domain_block(*d) for d in domains))


def check_dns(t, conf, server, *args, timeout=60):
	argv = [relayctl(t), "-f", conf.path, "check-dns", "--resolver", server.address] + list(args)
	rc, out, err = t.run(argv, timeout=timeout)
	m = SANITIZER_RE.search(err)
	assert not m, "sanitizer report from relayctl: %s" % err[m.start():m.start() + 1500]
	return rc, out, err


def check_json(t, conf, server, domains):
	rc, out, err = check_dns(t, conf, server, "--json", *domains)
	try:
		res = json.loads(out)
	except ValueError:
		raise AssertionError("--json printed no JSON (exit %s): %r %r" % (rc, out, err))
	return rc, {d["domain"]: d["checks"] for d in res}, err


def one(checks, name):
	got = [c for c in checks if c["check"] == name]
	assert len(got) == 1, "expected one %s check, got %r" % (name, checks)
	return got[0]


def keygen(t, name, alg):
	path = os.path.join(t.dir, "%s.key" % name)
	if alg == "rsa":
		cmd = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
		    "-out", path]
	else:
		cmd = ["openssl", "genpkey", "-algorithm", "ED25519", "-out", path]
	subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
	    timeout=30)
	os.chmod(path, 0o600)
	return path


def dkim_value(path):
	"""The key record's value for the key at path, made with openssl (not
	with relayd's code)."""
	der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
	    check=True, stdout=subprocess.PIPE, timeout=30).stdout
	import base64
	if len(der) == 44:	# Ed25519 SubjectPublicKeyInfo: 12-byte prefix + 32-byte key
		return "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[12:]).decode()
	return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def record_value(suggestion):
	"""'OWNER. IN TXT ( "a" "b" )' -> (owner, "ab")."""
	owner = suggestion.split()[0].rstrip(".")
	return owner, "".join(re.findall(r'"([^"]*)"', suggestion))


def publish(server, suggestion):
	owner, value = record_value(suggestion)
	server.publish(owner, "TXT", value)
	return owner, value


def pyspf(server, ip, domain):
	"""pyspf's result for a message from ip with MAIL FROM postmaster@domain,
	its DNS aimed at server."""
	r = dns.resolver.Resolver(configure=False)
	r.nameservers = ["127.0.0.1"]
	r.port = server.port
	r.lifetime = 5
	dns.resolver.default_resolver = r
	q = spf.query(i=ip, s="postmaster@" + domain, h="relay.test.example", timeout=10)
	return q.check()[0]


def expected_from_pyspf(server, domain, sending_ip):
	"""The verdict pyspf's two answers call for (see the module docstring)."""
	a = pyspf(server, sending_ip, domain)
	b = pyspf(server, PROBE, domain)
	if "error" in a or "error" in b:
		return "FAIL", (a, b)
	if a != "pass" or b == "pass":
		return "FAIL", (a, b)
	if b == "neutral":
		return "WARN", (a, b)
	return "PASS", (a, b)


def save_verdicts(t, name, text):
	"""The verdict lines of a case, for the record: verdicts.txt in the
	test's directory, and appended to $RELAYD_CHECKDNS_VERDICTS if set."""
	with open(os.path.join(t.dir, "verdicts.txt"), "w") as f:
		f.write(text)
	path = os.environ.get("RELAYD_CHECKDNS_VERDICTS")
	if path:
		with open(path, "a") as f:
			f.write("== %s\n%s" % (name, text))


def start(zone):
	z = dict(BASE_ZONE)
	z.update(zone)
	return DNSZoneServer(z)


# ---------------------------------------------------------------------------
# SPF

TEN = ("v=spf1 include:_spf.eu.mailgun.org a mx include:l1.test include:l2.test "
    "include:l3.test include:l4.test include:l5.test include:l6.test include:l7.test ~all")
ELEVEN = TEN.replace(" ~all", " include:l8.test ~all")

# domain: (records at the domain, other records, upstream, sending address, verdict)
SPF_CASES = {
	"spf-present.test": (["v=spf1 a mx include:_spf.eu.mailgun.org ~all"], {},
	    "mailgun", MAILGUN_OUT, "PASS"),
	"spf-nested.test": (["v=spf1 include:_spf.webhost.test ~all"], {}, "mailgun",
	    MAILGUN_OUT, "PASS"),
	"spf-redirect.test": (["v=spf1 redirect=_spf.vendor.test"], {}, "mailgun",
	    MAILGUN_OUT, "PASS"),
	"spf-missing.test": (["v=spf1 a mx include:_spf.hosting.test ~all"], {}, "mailgun",
	    MAILGUN_OUT, "FAIL"),
	"spf-two.test": (["v=spf1 include:_spf.hosting.test ~all",
	    "v=spf1 include:_spf.eu.mailgun.org ~all"], {}, "mailgun", MAILGUN_OUT, "FAIL"),
	"spf-plusall.test": (["v=spf1 include:_spf.eu.mailgun.org +all"], {}, "mailgun",
	    MAILGUN_OUT, "FAIL"),
	"spf-qall.test": (["v=spf1 include:_spf.eu.mailgun.org ?all"], {}, "mailgun",
	    MAILGUN_OUT, "WARN"),
	"spf-ten.test": ([TEN], {}, "mailgun", MAILGUN_OUT, "PASS"),
	"spf-eleven.test": ([ELEVEN], {}, "mailgun", MAILGUN_OUT, "FAIL"),
	"spf-dead.test": (["v=spf1 include:gone.test include:_spf.eu.mailgun.org ~all"], {},
	    "mailgun", MAILGUN_OUT, "FAIL"),
	"spf-nospf.test": (["v=spf1 include:nospf-target.test include:_spf.eu.mailgun.org ~all"],
	    {}, "mailgun", MAILGUN_OUT, "FAIL"),
	"spf-none.test": ([], {}, "mailgun", MAILGUN_OUT, "FAIL"),
	"spf-voids.test": (["v=spf1 a:nx1.test a:nx2.test a:nx3.test "
	    "include:_spf.eu.mailgun.org ~all"], {}, "mailgun", MAILGUN_OUT, "FAIL"),
	"spf-sendgrid.test": (["v=spf1 include:sendgrid.net -all"], {}, "sendgrid",
	    SENDGRID_OUT, "PASS"),
	"spf-inhouse.test": (["v=spf1 mx -all"], {"spf-inhouse.test": [("MX", "10 mail.example.se")]},
	    "inhouse", INHOUSE_OUT, "PASS"),
	"spf-inhouse-missing.test": (["v=spf1 ip4:203.0.113.0/24 -all"], {}, "inhouse",
	    INHOUSE_OUT, "FAIL"),
}


def spf_zone():
	zone = {}
	for i in range(1, 9):
		zone["l%d.test" % i] = [("TXT", "v=spf1 ip4:203.0.113.%d -all" % i)]
	for dom, (recs, extra, _, _, _) in SPF_CASES.items():
		entry = [("TXT", r) for r in recs]
		for name, rrs in extra.items():
			if name == dom:
				entry += rrs
			else:
				zone[name] = rrs
		for t_ in ("A",):
			entry.append((t_, "203.0.113.200"))
		entry.append(("MX", "10 mx.%s" % dom))
		zone[dom] = entry
		zone["mx." + dom] = [("A", "203.0.113.201")]
	return zone


def test_spf_verdicts_agree_with_pyspf(t):
	server = start(spf_zone())
	try:
		conf = write_conf(t, [(d, c[2], ()) for d, c in SPF_CASES.items()])
		rc, res, err = check_json(t, conf, server, list(SPF_CASES))
		assert rc == 1, "FAILs present but exit %s" % rc
		lines = []
		for dom, (recs, _, up, ip, want) in SPF_CASES.items():
			c = one(res[dom], "SPF")
			lines.append("%s %s SPF: %s" % (c["status"], dom, c["reason"]))
			assert c["status"] == want, "%s: %s, expected %s: %s" % (dom, c["status"], want,
			    c["reason"])
			exp, why = expected_from_pyspf(server, dom, ip)
			assert c["status"] == exp, "%s: check-dns says %s, pyspf's results %s call for %s" % (
			    dom, c["status"], why, exp)
			if c["status"] != "FAIL":
				assert c["suggestion"] is None, "%s: a suggestion without a FAIL" % dom
		# what each says, in the words an admin reads
		r = {d: one(res[d], "SPF") for d in SPF_CASES}
		assert "does not authorize upstream mailgun" in r["spf-missing.test"]["reason"]
		assert "2 SPF records" in r["spf-two.test"]["reason"]
		assert "+all" in r["spf-plusall.test"]["reason"]
		assert "?all" in r["spf-qall.test"]["reason"]
		assert "10 of 10 DNS lookups" in r["spf-ten.test"]["reason"], r["spf-ten.test"]["reason"]
		assert "11 DNS lookups" in r["spf-eleven.test"]["reason"]
		assert "gone.test does not exist" in r["spf-dead.test"]["reason"]
		assert "nospf-target.test has no SPF record" in r["spf-nospf.test"]["reason"]
		assert "void lookups" in r["spf-voids.test"]["reason"]
		assert "no SPF record" in r["spf-none.test"]["reason"]
		assert "198.51.100.25" in r["spf-inhouse.test"]["reason"]
		# 11 lookups with the include already there: nothing to publish would pass
		assert r["spf-eleven.test"]["suggestion"] is None
		assert "per term" in r["spf-eleven.test"]["reason"]
		# the suggestions keep the terms in order and add the include before all
		assert record_value(r["spf-missing.test"]["suggestion"])[1] == (
		    "v=spf1 a mx include:_spf.hosting.test include:_spf.eu.mailgun.org ~all")
		assert record_value(r["spf-two.test"]["suggestion"])[1] == (
		    "v=spf1 include:_spf.hosting.test include:_spf.eu.mailgun.org ~all")
		assert record_value(r["spf-plusall.test"]["suggestion"])[1] == (
		    "v=spf1 include:_spf.eu.mailgun.org ~all")
		assert record_value(r["spf-dead.test"]["suggestion"])[1] == (
		    "v=spf1 include:_spf.eu.mailgun.org ~all")
		assert record_value(r["spf-inhouse-missing.test"]["suggestion"])[1] == (
		    "v=spf1 ip4:203.0.113.0/24 a:mail.example.se -all")

		# every suggestion published (replacing the domain's SPF records) passes
		fixed = []
		for dom in SPF_CASES:
			s = r[dom]["suggestion"]
			if s is None:
				continue
			owner, value = record_value(s)
			assert owner == dom, "%s: suggestion for %s" % (dom, owner)
			server.zone[dom] = [(ty, v) for ty, v in server.zone[dom] if ty != "TXT"] + [
			    ("TXT", value)]
			fixed.append(dom)
		assert len(fixed) >= 8, "only %d suggestions: %s" % (len(fixed), fixed)
		rc, res2, err = check_json(t, conf, server, fixed)
		for dom in fixed:
			c = one(res2[dom], "SPF")
			assert c["status"] == "PASS", "%s: published suggestion gives %s: %s" % (
			    dom, c["status"], c["reason"])
			exp, why = expected_from_pyspf(server, dom, SPF_CASES[dom][3])
			assert exp == "PASS", "%s: pyspf disagrees on the suggestion: %s" % (dom, why)
		save_verdicts(t, "SPF cases", "\n".join(lines) + "\n")
	finally:
		server.stop()


def test_spf_lookup_failures(t):
	server = start({"spf-servfail.test": "SERVFAIL", "spf-deep-servfail.test": [
	    ("TXT", "v=spf1 include:broken.test include:_spf.eu.mailgun.org ~all")],
	    "broken.test": "SERVFAIL"})
	try:
		conf = write_conf(t, [("spf-servfail.test", "mailgun", ()),
		    ("spf-deep-servfail.test", "mailgun", ())])
		rc, res, err = check_json(t, conf, server, ["spf-servfail.test", "spf-deep-servfail.test"])
		assert rc == 1
		c = one(res["spf-servfail.test"], "SPF")
		assert c["status"] == "FAIL" and "failed" in c["reason"] and "SERVFAIL" in c["reason"], c
		assert "no SPF record" not in c["reason"], c
		assert c["suggestion"] is None
		c = one(res["spf-deep-servfail.test"], "SPF")
		assert c["status"] == "FAIL" and "SERVFAIL" in c["reason"] and "broken.test" in c["reason"], c
		assert c["suggestion"] is None
		exp, why = expected_from_pyspf(server, "spf-deep-servfail.test", MAILGUN_OUT)
		assert exp == "FAIL" and "temperror" in why, why
	finally:
		server.stop()


def test_truncated_answers_use_tcp(t):
	big = "v=spf1 " + " ".join("ip4:203.0.113.%d" % i for i in range(1, 41)) + \
	    " include:_spf.eu.mailgun.org ~all"
	assert len(big) > 600
	server = start({"spf-big.test": [("TXT", big)]})
	try:
		conf = write_conf(t, [("spf-big.test", "mailgun", ())])
		rc, res, err = check_json(t, conf, server, ["spf-big.test"])
		c = one(res["spf-big.test"], "SPF")
		assert c["status"] == "PASS", c
		assert big in c["reason"], "the record read is not the whole record: %s" % c["reason"]
		tcp = [q for q in server.tcp_queries() if q[0] == "spf-big.test"]
		assert tcp, "no TCP query after the truncated UDP answer: %s" % server.queries
		exp, why = expected_from_pyspf(server, "spf-big.test", MAILGUN_OUT)
		assert exp == "PASS", why
	finally:
		server.stop()


def test_resolver_that_times_out(t):
	silent = SilentServer()
	try:
		key = keygen(t, "s1", "rsa")
		conf = write_conf(t, [("example.com", "mailgun", [("s1", key, "rsa-sha256")])])
		start_t = time.monotonic()
		rc, out, err = check_dns(t, conf, silent, "example.com", timeout=60)
		took = time.monotonic() - start_t
		assert rc == 1, "exit %s with a dead resolver" % rc
		lines = out.splitlines()
		assert len(lines) == 3, "expected SPF, DKIM, DMARC lines: %r" % out
		for line in lines:
			assert line.startswith("FAIL example.com "), line
			assert "failed" in line, line
			assert "missing" not in line and "no SPF record" not in line and \
			    "no key record" not in line and "no DMARC record" not in line, line
		assert "timed out" in lines[0], lines[0]
		assert "did not answer the last 2 queries" in out, out
		assert took < 20, "a dead resolver took %.1fs" % took
		save_verdicts(t, "resolver that times out", out)
	finally:
		silent.stop()


# ---------------------------------------------------------------------------
# DKIM

def test_dkim_records(t):
	rsa = keygen(t, "rsa", "rsa")
	other = keygen(t, "other", "rsa")
	ed = keygen(t, "ed", "ed25519")
	mab = keygen(t, "mab", "rsa")
	good, oth, edv, mabv = dkim_value(rsa), dkim_value(other), dkim_value(ed), dkim_value(mab)
	zone = {
		"s1._domainkey.dkim-ok.test": [("TXT", good)],
		"s1._domainkey.dkim-ed.test": [("TXT", edv)],
		"mab._domainkey.dkim-cname.test": [("CNAME", "mab._domainkey.mab.test")],
		"mab._domainkey.mab.test": [("TXT", mabv)],
		"mab._domainkey.dkim-cname-dead.test": [("CNAME", "mab._domainkey.nowhere.test")],
		"s1._domainkey.dkim-revoked.test": [("TXT", "v=DKIM1; k=rsa; p=")],
		"s1._domainkey.dkim-wrong.test": [("TXT", oth)],
		"s1._domainkey.dkim-ktype.test": [("TXT", "v=DKIM1; k=rsa; " + edv.split("; ", 2)[2])],
		"s1._domainkey.dkim-absent.test": [],
	}
	cases = {
		"dkim-ok.test": ("s1", rsa, "rsa-sha256", "PASS"),
		"dkim-ed.test": ("s1", ed, "ed25519-sha256", "PASS"),
		"dkim-cname.test": ("mab", mab, "rsa-sha256", "PASS"),
		"dkim-cname-dead.test": ("mab", mab, "rsa-sha256", "FAIL"),
		"dkim-revoked.test": ("s1", rsa, "rsa-sha256", "FAIL"),
		"dkim-wrong.test": ("s1", rsa, "rsa-sha256", "FAIL"),
		"dkim-ktype.test": ("s1", ed, "ed25519-sha256", "FAIL"),
		"dkim-absent.test": ("s1", rsa, "rsa-sha256", "FAIL"),
	}
	server = start(zone)
	try:
		domains = [(d, "mailgun", [(c[0], c[1], c[2])]) for d, c in cases.items()]
		domains.append(("dkim-none.test", "mailgun", ()))
		conf = write_conf(t, domains)
		rc, res, err = check_json(t, conf, server, list(cases) + ["dkim-none.test"])
		lines = []
		r = {}
		for dom, (sel, key, alg, want) in cases.items():
			c = one(res[dom], "DKIM")
			r[dom] = c
			lines.append("%s %s DKIM: %s" % (c["status"], dom, c["reason"]))
			assert c["status"] == want, "%s: %s, expected %s: %s" % (dom, c["status"], want,
			    c["reason"])
		c = one(res["dkim-none.test"], "DKIM")
		lines.append("%s dkim-none.test DKIM: %s" % (c["status"], c["reason"]))
		assert c["status"] == "WARN" and c["reason"].startswith("no selector configured"), c
		assert "CNAME to mab._domainkey.mab.test" in r["dkim-cname.test"]["reason"]
		dead = r["dkim-cname-dead.test"]["reason"]
		assert "mab._domainkey.dkim-cname-dead.test" in dead and \
		    "mab._domainkey.nowhere.test" in dead and "does not exist" in dead, dead
		assert r["dkim-cname-dead.test"]["suggestion"].startswith("mab._domainkey.nowhere.test."), \
		    "the record belongs at the CNAME's target"
		assert "revoked" in r["dkim-revoked.test"]["reason"]
		assert "not the public half" in r["dkim-wrong.test"]["reason"]
		assert "k=rsa" in r["dkim-ktype.test"]["reason"]
		# the suggestion is the record for the key on disk (as openssl says it)
		for dom in ("dkim-revoked.test", "dkim-wrong.test", "dkim-absent.test",
		    "dkim-cname-dead.test", "dkim-ktype.test"):
			owner, value = record_value(r[dom]["suggestion"])
			want = dkim_value(cases[dom][1])
			assert value == want, "%s: suggested %r, the key's record is %r" % (dom, value, want)
		# ... and the same as relayctl dkim-keygen prints (the record-building code is one)
		for dom in ("dkim-revoked.test",):
			for sugg_line in r[dom]["suggestion"].splitlines():
				for s in re.findall(r'"([^"]*)"', sugg_line):
					assert len(s) <= 255, "a TXT string over 255 bytes"
		# published, each passes
		for dom in ("dkim-revoked.test", "dkim-wrong.test", "dkim-absent.test",
		    "dkim-cname-dead.test", "dkim-ktype.test"):
			publish(server, r[dom]["suggestion"])
		rc, res2, err = check_json(t, conf, server, list(cases))
		for dom in cases:
			c = one(res2[dom], "DKIM")
			assert c["status"] == "PASS", "%s after publishing: %s: %s" % (dom, c["status"],
			    c["reason"])
		save_verdicts(t, "DKIM cases", "\n".join(lines) + "\n")
	finally:
		server.stop()


def test_dkim_cname_target_with_a_quote(t):
	"""A selector CNAMEd to a name holding '"' (DNS allows any octet in a
	label): the suggested record's owner is written as a zone file must
	hold it, '\\"' (RFC 1035 5.1), not a bare quote that would open a
	string; published there, it passes."""
	key = keygen(t, "mab", "rsa")
	target = 'mab._domainkey.we"ird.test'
	zone = {"mab._domainkey.dkim-quote.test": [("CNAME", target)]}
	server = start(zone)
	try:
		conf = write_conf(t, [("dkim-quote.test", "mailgun", [("mab", key, "rsa-sha256")])])
		rc, res, err = check_json(t, conf, server, ["dkim-quote.test"])
		c = one(res["dkim-quote.test"], "DKIM")
		assert c["status"] == "FAIL", c
		owner = c["suggestion"].split()[0]
		assert owner == 'mab._domainkey.we\\"ird.test.', "owner written %r" % owner
		assert 'we\\"ird' in c["reason"], c["reason"]
		server.publish(target, "TXT", dkim_value(key))
		rc, res, err = check_json(t, conf, server, ["dkim-quote.test"])
		c = one(res["dkim-quote.test"], "DKIM")
		assert c["status"] == "PASS", c
	finally:
		server.stop()


# ---------------------------------------------------------------------------
# DMARC

def test_dmarc_records(t):
	key = keygen(t, "s1", "rsa")
	spf_ok = [("TXT", "v=spf1 include:_spf.eu.mailgun.org ~all")]
	zone = {
		"_dmarc.dmarc-none.test": [("TXT", "v=DMARC1; p=none; rua=mailto:d@dmarc-none.test")],
		"_dmarc.dmarc-quarantine.test": [("TXT", "v=DMARC1; p=quarantine")],
		"_dmarc.dmarc-reject.test": [("TXT", "v=DMARC1; p=reject; rua=mailto:d@x.test")],
		"_dmarc.dmarc-dup.test": [("TXT", "v=DMARC1; p=reject"), ("TXT", "v=DMARC1; p=none")],
		"_dmarc.dmarc-syntax.test": [("TXT", "v=DMARC1 p=reject")],
		"_dmarc.dmarc-org.test": [("TXT", "v=DMARC1; p=none; sp=quarantine")],
		"_dmarc.sg-none.test": [("TXT", "v=DMARC1; p=none")],
		"_dmarc.sg-reject.test": [("TXT", "v=DMARC1; p=reject")],
		"_dmarc.sg-dkim.test": [("TXT", "v=DMARC1; p=reject")],
		"s1._domainkey.sg-dkim.test": [("TXT", dkim_value(key))],
		"_dmarc.mg-aligned.example.org": [("TXT", "v=DMARC1; p=reject")],
	}
	cases = {
		"dmarc-none.test": ("mailgun", (), "WARN", "p=none"),
		"dmarc-quarantine.test": ("inhouse", (), "PASS", "p=quarantine"),
		"dmarc-reject.test": ("inhouse", (), "PASS", "p=reject"),
		"dmarc-missing.test": ("inhouse", (), "FAIL", "no DMARC record"),
		"dmarc-dup.test": ("inhouse", (), "FAIL", "2 DMARC records"),
		"dmarc-syntax.test": ("inhouse", (), "FAIL", "not valid"),
		"sub.dmarc-org.test": ("inhouse", (), "PASS", "p=quarantine at _dmarc.dmarc-org.test"),
		"sg-none.test": ("sendgrid", (), "WARN", "sendgrid.net"),
		"sg-reject.test": ("sendgrid", (), "FAIL", "receivers refuse it"),
		"sg-dkim.test": ("sendgrid", [("s1", key, "rsa-sha256")], "PASS", "p=reject"),
		"mg-aligned.example.org": ("mailgun-own", (), "PASS", "p=reject"),
	}
	for d in cases:
		zone[d] = spf_ok
	server = start(zone)
	try:
		domains = [(d, c[0], c[1]) for d, c in cases.items()]
		conf = write_conf(t, domains)
		rc, res, err = check_json(t, conf, server, list(cases))
		assert err == "", err
		lines = []
		r = {}
		for dom, (_, _, want, words) in cases.items():
			c = one(res[dom], "DMARC")
			r[dom] = c
			lines.append("%s %s DMARC: %s" % (c["status"], dom, c["reason"]))
			assert c["status"] == want, "%s: %s, expected %s: %s" % (dom, c["status"], want,
			    c["reason"])
			assert words in c["reason"], "%s: %r not in %r" % (dom, words, c["reason"])
		assert "dkim-keygen sg-reject.test" in r["sg-reject.test"]["reason"]
		assert r["sg-reject.test"]["suggestion"] is None
		# suggestions: p=none with rua=, published they no longer FAIL
		for dom in ("dmarc-missing.test", "dmarc-syntax.test", "dmarc-dup.test"):
			owner, value = record_value(r[dom]["suggestion"])
			assert owner == "_dmarc." + dom, owner
			server.zone[owner] = [("TXT", value)]
		assert record_value(r["dmarc-missing.test"]["suggestion"])[1] == \
		    "v=DMARC1; p=none; rua=mailto:postmaster@dmarc-missing.test"
		rc, res2, err = check_json(t, conf, server, ["dmarc-missing.test", "dmarc-syntax.test",
		    "dmarc-dup.test"])
		assert one(res2["dmarc-missing.test"], "DMARC")["status"] == "WARN"
		assert one(res2["dmarc-syntax.test"], "DMARC")["status"] == "WARN"
		assert one(res2["dmarc-dup.test"], "DMARC")["status"] == "PASS"
		save_verdicts(t, "DMARC cases", "\n".join(lines) + "\n")
	finally:
		server.stop()


# ---------------------------------------------------------------------------
# the vendors' guides, the output as an admin reads it

def test_mab_and_vitec_guides(t):
	mab = keygen(t, "mab", "rsa")
	zone = {
		# MAB: the selector delegated to MAB with a CNAME, MAB's SPF included
		"customer.no": [("TXT", "v=spf1 include:_spf.mab.no ~all"),
		    ("TXT", "google-site-verification=abc")],
		"_spf.mab.no": [("TXT", "v=spf1 include:_spf.eu.mailgun.org ~all")],
		"mab._domainkey.customer.no": [("CNAME", "mab._domainkey.mab.no")],
		"mab._domainkey.mab.no": [("TXT", dkim_value(mab))],
		"_dmarc.customer.no": [("TXT", "v=DMARC1; p=none; rua=mailto:dmarc@customer.no")],
		# Vitec: the web host's SPF record, Mailgun EU to be added to it
		"kunde.no": [("TXT", "v=spf1 a mx include:_spf.webhotell.no ~all"), ("A", "203.0.113.80"),
		    ("MX", "10 mx.kunde.no")],
		"mx.kunde.no": [("A", "203.0.113.81")],
		"_spf.webhotell.no": [("TXT", "v=spf1 ip4:203.0.113.0/24 -all")],
	}
	server = start(zone)
	try:
		conf = write_conf(t, [("customer.no", "mailgun", [("mab", mab, "rsa-sha256")]),
		    ("kunde.no", "mailgun", ())])
		rc, out, err = check_dns(t, conf, server)
		assert rc == 1, "exit %s" % rc
		lines = out.splitlines()
		assert lines[0].startswith("PASS customer.no SPF: "), lines
		assert lines[1].startswith("PASS customer.no DKIM: mab: the key record at "
		    "mab._domainkey.customer.no (CNAME to mab._domainkey.mab.no) matches"), lines[1]
		assert lines[2].startswith("WARN customer.no DMARC: p=none at _dmarc.customer.no"), lines[2]
		assert lines[3].startswith("FAIL kunde.no SPF: it does not authorize upstream mailgun "
		    "(smtp.eu.mailgun.org, Mailgun (EU)): add include:_spf.eu.mailgun.org"), lines[3]
		assert lines[4] == ('    kunde.no. IN TXT ( "v=spf1 a mx include:_spf.webhotell.no '
		    'include:_spf.eu.mailgun.org ~all" )'), lines[4]
		assert lines[5].startswith("WARN kunde.no DKIM: no selector configured"), lines[5]
		assert lines[6].startswith("FAIL kunde.no DMARC: no DMARC record at _dmarc.kunde.no"), lines[6]
		assert lines[7] == ('    _dmarc.kunde.no. IN TXT ( "v=DMARC1; p=none; '
		    'rua=mailto:postmaster@kunde.no" )'), lines[7]
		assert len(lines) == 8, lines
		save_verdicts(t, "MAB and Vitec guides", out)
		# Vitec's records published as suggested: nothing FAILs, exit 0
		publish(server, lines[4].strip())
		publish(server, lines[7].strip())
		rc, out, err = check_dns(t, conf, server, "kunde.no")
		assert rc == 0, "exit %s after publishing: %s" % (rc, out)
		assert out.startswith("PASS kunde.no SPF: "), out
		assert "WARN kunde.no DMARC: " in out and "mg.vitec.test" in out, out
	finally:
		server.stop()


def test_exit_status_json_and_usage(t):
	key = keygen(t, "s1", "ed25519")
	zone = {
		"good.test": [("TXT", "v=spf1 include:_spf.eu.mailgun.org -all")],
		"s1._domainkey.good.test": [("TXT", dkim_value(key))],
		"_dmarc.good.test": [("TXT", "v=DMARC1; p=reject")],
		"bad.test": [("TXT", "v=spf1 +all")],
	}
	server = start(zone)
	try:
		conf = write_conf(t, [("good.test", "mailgun", [("s1", key, "ed25519-sha256")]),
		    ("bad.test", "mailgun", ()), ("*.pattern.test", "mailgun", ())])
		rc, out, err = check_dns(t, conf, server, "good.test")
		assert rc == 0, "all PASS, exit %s: %s" % (rc, out)
		assert [l.split()[0] for l in out.splitlines()] == ["PASS", "PASS", "PASS"], out
		rc, out, err = check_dns(t, conf, server, "GOOD.test.", "bad.test")
		assert rc == 1, "a FAIL, exit %s" % rc
		# a name routed by a pattern section is checked when named
		server.zone["x.pattern.test"] = [("TXT", "v=spf1 include:_spf.eu.mailgun.org ~all")]
		rc, out, err = check_dns(t, conf, server, "x.pattern.test")
		assert out.startswith("PASS x.pattern.test SPF:"), out
		# without names: every plain domain, the pattern said on stderr
		rc, out, err = check_dns(t, conf, server, "--json")
		res = json.loads(out)
		assert [d["domain"] for d in res] == ["good.test", "bad.test"], res
		for d in res:
			assert set(d) == {"domain", "checks"}, d
			for c in d["checks"]:
				assert set(c) == {"check", "status", "reason", "suggestion"}, c
				assert c["check"] in ("SPF", "DKIM", "DMARC") and \
				    c["status"] in ("PASS", "WARN", "FAIL"), c
		assert rc == 1
		assert "*.pattern.test" in err, err
		rc, out, err = check_dns(t, conf, server, "unknown.example")
		assert rc == 1 and "not a sender domain" in err, (rc, err)
		rc, out, err = t.run([relayctl(t), "-f", conf.path, "check-dns", "--resolver",
		    "not-an-ip", "good.test"], timeout=30)
		assert rc == 64 and "--resolver" in err, (rc, err)
		rc, out, err = t.run([relayctl(t), "-f", conf.path, "check-dns", "--bogus"], timeout=30)
		assert rc == 64, (rc, err)
	finally:
		server.stop()
