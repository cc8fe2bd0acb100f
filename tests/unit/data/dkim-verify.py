#!/usr/bin/python3
"""Verify every DKIM-Signature of a message with python3-dkim (dkimpy), an
implementation independent of libopendkim.  Used by hand to check the golden
signatures in tests/unit/check_dkim.c before freezing them.

usage: /usr/bin/python3 dkim-verify.py MESSAGE SELECTOR=KEYFILE...

Each SELECTOR=KEYFILE publishes the public half of the (test) private key
KEYFILE as the TXT record SELECTOR._domainkey.<any domain>.  Prints one line
per signature; exits 1 unless every signature verifies."""
import base64
import re
import sys

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def txt_record(keyfile):
    with open(keyfile, 'rb') as f:
        pub = serialization.load_pem_private_key(f.read(), None).public_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return b'v=DKIM1; k=ed25519; p=' + base64.b64encode(raw)
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return b'v=DKIM1; k=rsa; p=' + base64.b64encode(der)


def main():
    with open(sys.argv[1], 'rb') as f:
        msg = f.read()
    records = {}
    for arg in sys.argv[2:]:
        sel, keyfile = arg.split('=', 1)
        records[sel.encode()] = txt_record(keyfile)

    def dnsfunc(name, timeout=5):
        m = re.match(rb'([^.]+)\._domainkey\.', name)
        return records.get(m.group(1)) if m else None

    n = len(re.findall(rb'(?im)^DKIM-Signature:', msg))
    ok = n > 0
    for i in range(n):
        d = dkim.DKIM(msg, minkey=1024)
        try:
            res = d.verify(idx=i, dnsfunc=dnsfunc)
            why = ''
        except dkim.DKIMException as e:
            res, why = False, ' (%s)' % e
        print('signature %d: %s%s' % (i, 'pass' if res else 'FAIL', why))
        ok = ok and res
    sys.exit(0 if ok else 1)


main()
