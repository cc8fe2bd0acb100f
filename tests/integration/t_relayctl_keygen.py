"""relayctl dkim-keygen: the key lands where the configuration says, mode
0600, is not replaced without --force, and the TXT record printed verifies
signatures made with that key by an independent DKIM implementation
(python3-dkim).  Also the command's refusals and exit statuses."""

import base64
import os
import re
import stat

from harness import SANITIZER_RE

import dkim
import dkim.crypto

OWNER = "s1._domainkey.example.com."
# DER prefix of a PKCS#8 Ed25519 private key (RFC 8410): the 32-byte seed follows.
ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")

MESSAGE = (b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: relayctl keygen test\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <keygen-test@example.com>\r\n"
    b"\r\n"
    b"Signed with a key from relayctl dkim-keygen.\r\n")


def relayctl(t):
	p = os.path.join(os.path.dirname(t.relayd), "relayctl")
	assert os.access(p, os.X_OK), "no relayctl next to relayd (%s)" % p
	return p


def keygen_conf(t, algorithm="rsa-sha256", keydir=None, extra_dkim=""):
	keydir = keydir or os.path.join(t.dir, "dkim")
	keyfile = os.path.join(keydir, "example.com.s1.key")
	conf = t.config(domains=(), extra=(
	    'domain "example.com" {\n'
	    '\tupstream = "test"\n'
	    '\tdkim {\n'
	    '\t\tselector = "s1"\n'
	    '\t\tkey_file = "%s"\n'
	    '\t\talgorithm = "%s"\n'
	    '\t}\n%s'
	    '}\n') % (keyfile, algorithm, extra_dkim))
	return conf, keyfile


def run_ctl(t, conf, *args, umask=None):
	argv = [relayctl(t), "-f", conf.path] + list(args)
	if umask is not None:
		# a permissive umask must not make the key readable
		argv = ["/bin/sh", "-c", 'umask %s && exec "$@"' % umask, "sh"] + argv
	rc, out, err = t.run(argv, timeout=60)
	m = SANITIZER_RE.search(err)
	assert not m, "sanitizer report from relayctl: %s" % err[m.start():m.start() + 1500]
	return rc, out, err


def parse_record(out):
	"""(strings of the zone-file record, the one-line value) from stdout."""
	m = re.search(r"^(\S+) IN TXT \( ((?:\"[^\"\n]*\"\s*)+)\)$", out, re.M)
	assert m, "no 'OWNER IN TXT ( \"...\" )' record in relayctl's output:\n%s" % out
	assert m.group(1) == OWNER, "record owner %r, expected %r" % (m.group(1), OWNER)
	strings = re.findall(r"\"([^\"\n]*)\"", m.group(2))
	for s in strings:
		assert len(s.encode()) <= 255, "a TXT string has %d bytes (> 255): %r" % (len(s.encode()), s)
	lines = out.splitlines()
	label = [i for i, l in enumerate(lines) if "on one line" in l]
	assert label and label[0] + 1 < len(lines), "no labelled one-line value in:\n%s" % out
	one = lines[label[0] + 1]
	assert "".join(strings) == one, "the strings joined %r differ from the one-line value %r" % (
	    "".join(strings), one)
	return strings, one


def check_key_file(path):
	st = os.lstat(path)
	assert stat.S_ISREG(st.st_mode), "%s is not a regular file" % path
	assert stat.S_IMODE(st.st_mode) == 0o600, "%s has mode %04o, expected 0600" % (
	    path, stat.S_IMODE(st.st_mode))
	with open(path, "rb") as f:
		pem = f.read()
	assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n"), "not PKCS#8 PEM: %r" % pem[:60]
	leftovers = [n for n in os.listdir(os.path.dirname(path)) if n != os.path.basename(path)]
	assert not leftovers, "left in the key's directory: %s" % leftovers
	return pem


def signing_key(pem, alg):
	"""What python3-dkim takes as privkey: the PEM for RSA, the base64 seed
	for Ed25519."""
	if alg == b"rsa-sha256":
		return pem
	body = b"".join(l for l in pem.splitlines() if not l.startswith(b"-----"))
	der = base64.b64decode(body)
	assert len(der) == 48 and der.startswith(ED25519_PKCS8_PREFIX), \
	    "not a PKCS#8 Ed25519 key: %s" % der.hex()
	return base64.b64encode(der[16:])


def sign_and_verify(pem, alg, record_value):
	"""Signs MESSAGE with pem, verifies it against record_value as the DNS
	answer; returns (verified, names looked up)."""
	sig = dkim.sign(MESSAGE, b"s1", b"example.com", signing_key(pem, alg),
	    signature_algorithm=alg, include_headers=[b"from"])
	asked = []

	def dnsfunc(name, timeout=5):
		asked.append(name)
		return record_value.encode() if name == OWNER.encode() else None

	ok = dkim.verify(sig + MESSAGE, dnsfunc=dnsfunc)
	return ok, asked


def keygen_roundtrip(t, algorithm, cfg_alg):
	conf, keyfile = keygen_conf(t, cfg_alg)
	os.mkdir(os.path.dirname(keyfile), 0o700)
	alg = cfg_alg.encode()

	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com", "s1", "--algorithm", algorithm,
	    umask="000")
	assert rc == 0, "dkim-keygen: exit %s; stderr %r" % (rc, err)
	pem = check_key_file(keyfile)
	strings, value = parse_record(out)
	k = "ed25519" if algorithm == "ed25519" else "rsa"
	assert value.startswith("v=DKIM1; k=%s; p=" % k), "record value %r" % value
	if algorithm == "rsa":
		key = dkim.crypto.parse_pem_private_key(pem)
		assert key["modulus"].bit_length() == 2048, "RSA key of %d bits, default is 2048" % (
		    key["modulus"].bit_length())
		assert len(strings) == 2, "a 2048-bit key's record takes 2 strings, got %d" % len(strings)
	else:
		assert len(base64.b64decode(value.split("p=", 1)[1])) == 32, "p= is not 32 bytes: %r" % value
	ok, asked = sign_and_verify(pem, alg, value)
	assert asked == [OWNER.encode()], "the verifier looked up %r" % asked
	assert ok, "python3-dkim did not verify a %s signature against the printed record" % algorithm

	# the relay itself accepts the new key: relayd -n checks it
	rc, nout, nerr = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 0, "relayd -n after dkim-keygen: exit %s: %r" % (rc, nout + nerr)

	# a second run without --force changes nothing
	before = os.stat(keyfile)
	rc, out2, err2 = run_ctl(t, conf, "dkim-keygen", "example.com", "s1")
	assert rc != 0, "dkim-keygen over an existing key without --force: exit 0"
	assert "--force" in err2 and keyfile in err2, "refusal does not say why: %r" % err2
	with open(keyfile, "rb") as f:
		assert f.read() == pem, "the key file changed although dkim-keygen refused"
	assert os.stat(keyfile).st_ino == before.st_ino, "the key file was replaced"
	assert "IN TXT" not in out2, "a record was printed although nothing was written: %r" % out2

	# with --force: a new key, the old record no longer verifies it
	extra = ["--bits", "3072"] if algorithm == "rsa" else []
	rc, out3, err3 = run_ctl(t, conf, "dkim-keygen", "example.com", "s1", "--force", *extra)
	assert rc == 0, "dkim-keygen --force: exit %s; stderr %r" % (rc, err3)
	pem3 = check_key_file(keyfile)
	assert pem3 != pem, "--force left the old key"
	_, value3 = parse_record(out3)
	assert value3 != value, "--force printed the old record"
	if algorithm == "rsa":
		bits = dkim.crypto.parse_pem_private_key(pem3)["modulus"].bit_length()
		assert bits == 3072, "--bits 3072 made a %d-bit key" % bits
	ok, _ = sign_and_verify(pem3, alg, value3)
	assert ok, "the new key does not verify against its own record"
	ok, _ = sign_and_verify(pem3, alg, value)
	assert not ok, "the new key verified against the OLD record"


def test_keygen_rsa(t):
	keygen_roundtrip(t, "rsa", "rsa-sha256")


def test_keygen_ed25519(t):
	keygen_roundtrip(t, "ed25519", "ed25519-sha256")


def test_keygen_algorithm_from_config(t):
	"""Without --algorithm, the dkim block's algorithm decides."""
	conf, keyfile = keygen_conf(t, "ed25519-sha256")
	os.mkdir(os.path.dirname(keyfile), 0o700)
	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com", "s1")
	assert rc == 0, "dkim-keygen: exit %s; stderr %r" % (rc, err)
	_, value = parse_record(out)
	assert value.startswith("v=DKIM1; k=ed25519; p="), "ed25519-sha256 block got %r" % value
	ok, _ = sign_and_verify(check_key_file(keyfile), b"ed25519-sha256", value)
	assert ok, "signature did not verify"


def test_keygen_refusals(t):
	conf, keyfile = keygen_conf(t, "rsa-sha256")
	keydir = os.path.dirname(keyfile)

	# the directory is not created
	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com", "s1")
	assert rc == 1, "missing key directory: exit %s (expected 1); %r" % (rc, err)
	assert keydir in err and "does not exist" in err, "message: %r" % err
	assert not os.path.exists(keydir), "relayctl created %s" % keydir
	os.mkdir(keydir, 0o700)

	# relayd itself still insists on the key (only dkim-keygen skips that check)
	rc, nout, nerr = t.run([t.relayd, "-n", "-f", conf.path], timeout=20)
	assert rc == 1 and keyfile in nout + nerr, \
	    "relayd -n without the key file: exit %s, %r" % (rc, nout + nerr)

	# no such domain section: names the file and what to add
	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.net", "s1")
	assert rc == 1, "unknown domain: exit %s (expected 1)" % rc
	assert conf.path in err and 'domain "example.net"' in err, "message: %r" % err

	# the domain is found by name, not by pattern
	conf2 = t.config(domains=("*",), extra="")
	rc, out, err = run_ctl(t, conf2, "dkim-keygen", "example.com", "s1")
	assert rc == 1 and 'domain "example.com"' in err, \
	    "example.com matched by the * section: exit %s, %r" % (rc, err)

	# no such selector: names the file, the line of the domain section
	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com", "s2")
	line = conf.line_of('domain "example.com"')
	assert rc == 1, "unknown selector: exit %s (expected 1)" % rc
	assert "%s:%d:" % (conf.path, line) in err and '"s2"' in err, "message: %r" % err

	# --algorithm disagreeing with the configuration
	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com", "s1", "--algorithm", "ed25519")
	assert rc == 1, "--algorithm against the config: exit %s (expected 1)" % rc
	assert "rsa-sha256" in err, "message: %r" % err

	# usage errors: 64
	for args in (["--bits", "512"], ["--bits", "8192"], ["--bits", "x"], ["--algorithm", "dsa"],
	    ["--bogus"], ["extra"]):
		rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com", "s1", *args)
		assert rc == 64, "dkim-keygen %s: exit %s (expected 64); %r" % (args, rc, err)
	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com")
	assert rc == 64, "dkim-keygen without SELECTOR: exit %s" % rc
	assert os.listdir(keydir) == [], "refused commands left %s" % os.listdir(keydir)

	# with everything right it works, and 1024 bits is accepted
	rc, out, err = run_ctl(t, conf, "dkim-keygen", "example.com", "s1", "--bits", "1024")
	assert rc == 0, "--bits 1024: exit %s; %r" % (rc, err)
	bits = dkim.crypto.parse_pem_private_key(check_key_file(keyfile))["modulus"].bit_length()
	assert bits == 1024, "--bits 1024 made %d bits" % bits
	strings, _ = parse_record(out)
	assert len(strings) == 1, "a 1024-bit key's record fits one string, got %d" % len(strings)


def test_other_commands(t):
	conf, _ = keygen_conf(t)
	# the daemon's commands, with no relayd running: said plainly, exit 69
	for cmd in (["queue"], ["queue", "--json"], ["flush"], ["remove", "X"]):
		rc, out, err = run_ctl(t, conf, *cmd)
		assert rc == 69, "relayctl %s: exit %s (expected 69)" % (cmd[0], rc)
		assert err.startswith("relayctl: relayd is not running"), "stderr %r" % err
	# check-dns needs no daemon: t_checkdns tests it
	rc, out, err = run_ctl(t, conf, "frobnicate")
	assert rc == 64 and "unknown command" in err, "unknown command: exit %s, %r" % (rc, err)
	rc, out, err = t.run([relayctl(t), "-V"], timeout=10)
	assert rc == 0 and re.match(r"relayctl \d+\.\d+\.\d+", out), "-V: %s %r" % (rc, out)
