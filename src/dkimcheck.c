/*
 * dkimcheck — the DKIM part of `relayctl check-dns` (see dnscheck.h): for
 * each selector of a domain section, the key record at
 * <selector>._domainkey.<d=> against the private key relayd signs with.
 *
 * Promises: the record is found the way verifiers find it (TXT, CNAMEs
 * followed, strings joined); it PASSes only if its p= is the public half
 * of the key on disk (compared as keys, not as text: base64 line breaks
 * and padding do not matter) and nothing in it keeps verifiers from using
 * it (v=, k=, h=, s=); the suggestion is what `relayctl dkim-keygen`
 * printed for that key (keygen_dkim_value, keygen_txt_record), at the
 * name the lookup ended on (behind a CNAME: the CNAME's target).
 */
#include "acconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim.h"
#include "dnscheck.h"
#include "keygen.h"
#include "util.h"

#define DKIM_TAGS_MAX	16

struct dkim_tags {
	char	*name[DKIM_TAGS_MAX];
	char	*val[DKIM_TAGS_MAX];
	size_t	 n;
};

static EVP_PKEY *
read_key(const char *path, char *why, size_t whylen)
{
	FILE *f = fopen(path, "re");
	EVP_PKEY *k;

	if (f == NULL) {
		snprintf(why, whylen, "%s", strerror(errno));
		return NULL;
	}
	k = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	ERR_clear_error();
	if (k == NULL)
		snprintf(why, whylen, "not a private key (PEM PKCS#8 or PKCS#1 expected)");
	return k;
}

static void
tags_free(struct dkim_tags *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->name[i]);
		free(t->val[i]);
	}
	t->n = 0;
}

/* s[0..n) without any blank (FWS inside values, RFC 6376 3.2). */
static char *
no_blanks(const char *s, size_t n)
{
	char *o = xmalloc(n + 1), *q = o;

	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			*q++ = s[i];
	*q = '\0';
	return o;
}

/* A tag-list (RFC 6376 3.2).  -1 if a tag has no '='. */
static int
tags_parse(const char *txt, struct dkim_tags *t)
{
	const char *p = txt;

	t->n = 0;
	while (*p != '\0') {
		const char *semi = strchr(p, ';'), *eq;
		size_t len = semi != NULL ? (size_t)(semi - p) : strlen(p);
		char *name;

		eq = memchr(p, '=', len);
		if (eq == NULL) {
			char *rest = no_blanks(p, len);
			int empty = rest[0] == '\0';

			free(rest);
			if (!empty)
				return -1;
		} else if (t->n < DKIM_TAGS_MAX) {
			name = no_blanks(p, (size_t)(eq - p));
			t->name[t->n] = name;
			t->val[t->n++] = no_blanks(eq + 1, len - (size_t)(eq - p) - 1);
		}
		p = semi != NULL ? semi + 1 : p + len;
	}
	return 0;
}

static const char *
tag(const struct dkim_tags *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->name[i], name) == 0)
			return t->val[i];
	return NULL;
}

/* A key record at all: one with a p= tag (RFC 6376 3.6.1: the only one required). */
static bool
is_key_record(const char *txt)
{
	struct dkim_tags t;
	bool yes;

	if (tags_parse(txt, &t) == -1) {
		tags_free(&t);
		return strncmp(txt, "v=DKIM1", 7) == 0;
	}
	yes = tag(&t, "p") != NULL || (t.n > 0 && strcmp(t.name[0], "v") == 0);
	tags_free(&t);
	return yes;
}

/* p= decoded; NULL if it is not base64. */
static unsigned char *
b64_decode(const char *s, int *outlen)
{
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	int n = (int)strlen(s), len = 0, fin = 0;
	unsigned char *out = xmalloc((size_t)n + 4);

	EVP_DecodeInit(ctx);
	if (EVP_DecodeUpdate(ctx, out, &len, (const unsigned char *)s, n) < 0 ||
	    EVP_DecodeFinal(ctx, out + len, &fin) != 1) {
		EVP_ENCODE_CTX_free(ctx);
		free(out);
		return NULL;
	}
	EVP_ENCODE_CTX_free(ctx);
	*outlen = len + fin;
	return out;
}

static const char *
key_kind(const EVP_PKEY *k)
{
	return EVP_PKEY_is_a(k, "ED25519") ? "ed25519" : "rsa";
}

/*
 * Whether p (base64) is key's public half: 1 yes, 0 another key (what it
 * is in other), -1 not a key at all.
 */
static int
same_key(const char *p, const char *k, EVP_PKEY *key, char *other, size_t otherlen)
{
	unsigned char *der, raw[64];
	const unsigned char *q;
	size_t rawlen = sizeof(raw);
	EVP_PKEY *pub;
	int len, rc;

	if ((der = b64_decode(p, &len)) == NULL)
		return -1;
	if (strcmp(k, "ed25519") == 0) {
		rc = len == 32 ? 0 : -1;
		if (rc == 0 && EVP_PKEY_get_raw_public_key(key, raw, &rawlen) && rawlen == 32 &&
		    memcmp(raw, der, 32) == 0)
			rc = 1;
		snprintf(other, otherlen, "another Ed25519 key");
		free(der);
		return rc;
	}
	q = der;
	pub = d2i_PUBKEY(NULL, &q, len);
	free(der);
	ERR_clear_error();
	if (pub == NULL)
		return -1;
	rc = EVP_PKEY_eq(pub, key) == 1 ? 1 : 0;
	snprintf(other, otherlen, "another %s key of %d bits", EVP_PKEY_is_a(pub, "RSA") ?
	    "RSA" : "non-RSA", EVP_PKEY_get_bits(pub));
	EVP_PKEY_free(pub);
	return rc;
}

/*
 * What keeps verifiers from using record (tags t) with key; NULL if
 * nothing.  Sets *warn for t=y.
 */
static const char *
record_problem(const struct dkim_tags *t, EVP_PKEY *key, char *buf, size_t buflen)
{
	const char *v = tag(t, "v"), *k = tag(t, "k"), *h = tag(t, "h"), *s = tag(t, "s");
	const char *p = tag(t, "p");
	char other[64];
	int same;

	if (v != NULL && (strcmp(t->name[0], "v") != 0 || strcmp(v, "DKIM1") != 0))
		return "v= must be first and say DKIM1 (RFC 6376 3.6.1): verifiers ignore the record";
	if (p == NULL)
		return "it has no p= tag";
	if (p[0] == '\0')
		return "p= is empty: the key was revoked (RFC 6376 3.6.1), nothing signed with it "
		    "verifies";
	if (k == NULL)
		k = "rsa";
	if (strcmp(k, "rsa") != 0 && strcmp(k, "ed25519") != 0) {
		snprintf(buf, buflen, "k=%s is not a key type verifiers know (rsa, ed25519)", k);
		return buf;
	}
	if (key != NULL && strcmp(k, key_kind(key)) != 0) {
		snprintf(buf, buflen, "the record says k=%s but the key on disk is %s: "
		    "signatures (a=%s-sha256) do not verify against it", k,
		    strcmp(key_kind(key), "rsa") == 0 ? "RSA" : "Ed25519", key_kind(key));
		return buf;
	}
	if (h != NULL && strstr(h, "sha256") == NULL)
		return "h= does not list sha256, which relayd signs with";
	if (s != NULL && strstr(s, "email") == NULL && strchr(s, '*') == NULL)
		return "s= does not list email (or *)";
	if (key == NULL)
		return NULL;
	same = same_key(p, k, key, other, sizeof(other));
	if (same < 0) {
		snprintf(buf, buflen, "p= is not a %s public key (bad base64, or not the "
		    "SubjectPublicKeyInfo verifiers expect)", k);
		return buf;
	}
	if (same == 0) {
		snprintf(buf, buflen, "p= is %s, not the public half of the key relayd signs with",
		    other);
		return buf;
	}
	return NULL;
}

/* Where the lookup of name went: "NAME" or "NAME (CNAME to TARGET)". */
static char *
lookup_path(const char *name, const struct dns_answer *a)
{
	struct buf b;

	buf_init(&b);
	buf_addstr(&b, name);
	if (a->nchain > 0) {
		buf_addstr(&b, " (CNAME");
		for (size_t i = 0; i < a->nchain; i++)
			buf_printf(&b, " to %s", a->chain[i]);
		buf_addstr(&b, ")");
	}
	return b.p;
}

static void
check_selector(const struct cfg_dkim *k, const char *signdom, const struct dns_source *dns,
    struct domain_checks *out)
{
	char *name = xasprintf("%s._domainkey.%s", k->selector, signdom), *path = NULL;
	char *value = NULL, *sugg = NULL, keywhy[256] = "", buf[256];
	const char *final, *problem = NULL, *rec = NULL;
	const struct dns_answer *a;
	EVP_PKEY *key;
	size_t nkeys = 0;
	struct dkim_tags t = { .n = 0 };

	key = read_key(k->key_file, keywhy, sizeof(keywhy));
	if (key != NULL && (value = keygen_dkim_value(key, buf, sizeof(buf))) == NULL)
		snprintf(keywhy, sizeof(keywhy), "%s", buf);
	a = dns->lookup(dns->ctx, name, DNS_T_TXT);
	final = a->nchain > 0 ? a->chain[a->nchain - 1] : name;
	if (value != NULL)
		sugg = dnscheck_record(final, value);
	path = lookup_path(name, a);
	if (a->status == DNS_ERROR) {
		dnscheck_add(out, "DKIM", CHECK_FAIL, NULL, "%s: lookup of TXT %s failed: %s; "
		    "the key record could not be checked", k->selector, path, a->why);
		goto out;
	}
	for (size_t i = 0; a->status == DNS_ANSWER && i < a->n; i++)
		if (is_key_record(a->rr[i]) && nkeys++ == 0)
			rec = a->rr[i];
	if (value == NULL && nkeys == 0) {
		dnscheck_add(out, "DKIM", CHECK_FAIL, NULL, "%s: no key record at %s, and key_file "
		    "%s cannot be read (%s): run relayctl dkim-keygen %s %s (as root) to make a "
		    "key and print its record", k->selector, path, k->key_file, keywhy, signdom,
		    k->selector);
		goto out;
	}
	if (nkeys == 0) {
		if (a->nchain > 0)
			dnscheck_add(out, "DKIM", CHECK_FAIL, sugg, "%s: %s is a CNAME to %s, which "
			    "%s: publish the key record at %s (or point the CNAME at the name "
			    "that has it)", k->selector, name, final, a->status == DNS_NXDOMAIN ?
			    "does not exist" : "has no DKIM key record", final);
		else
			dnscheck_add(out, "DKIM", CHECK_FAIL, sugg, "%s: no key record at %s%s: "
			    "verifiers cannot check relayd's signatures; publish it", k->selector,
			    name, a->status == DNS_NXDOMAIN ? " (the name does not exist)" : "");
		goto out;
	}
	if (nkeys > 1) {
		dnscheck_add(out, "DKIM", CHECK_FAIL, sugg, "%s: %zu key records at %s: "
		    "verifiers take one of them at random; keep only one", k->selector, nkeys,
		    path);
		goto out;
	}
	if (tags_parse(rec, &t) == -1)
		problem = "it is not a tag=value list (RFC 6376 3.2)";
	else
		problem = record_problem(&t, key, buf, sizeof(buf));
	if (problem != NULL) {
		dnscheck_add(out, "DKIM", CHECK_FAIL, sugg, "%s: the key record at %s: %s%s",
		    k->selector, path, problem, sugg != NULL ? "; publish the record for key_file "
		    "instead" : "");
	} else if (key == NULL) {
		dnscheck_add(out, "DKIM", CHECK_WARN, NULL, "%s: a key record is published at %s, "
		    "but key_file %s cannot be read (%s), so it was not compared with the key "
		    "relayd signs with: run check-dns as root or as relayd's user", k->selector,
		    path, k->key_file, keywhy);
	} else if (tag(&t, "t") != NULL && strchr(tag(&t, "t"), 'y') != NULL) {
		dnscheck_add(out, "DKIM", CHECK_WARN, NULL, "%s: the key record at %s matches "
		    "key_file, but has t=y (testing): verifiers may treat signed mail as unsigned; "
		    "remove t=y", k->selector, path);
	} else {
		dnscheck_add(out, "DKIM", CHECK_PASS, NULL, "%s: the key record at %s matches "
		    "key_file %s (%s%s)", k->selector, path, k->key_file,
		    EVP_PKEY_is_a(key, "RSA") ? "RSA " : "Ed25519",
		    EVP_PKEY_is_a(key, "RSA") ? (snprintf(buf, sizeof(buf), "%d bits",
		    EVP_PKEY_get_bits(key)), buf) : "");
	}
out:
	tags_free(&t);
	EVP_PKEY_free(key);
	free(value);
	free(sugg);
	free(path);
	free(name);
}

void
dkimcheck_domain(const struct cfg_domain *sec, const char *domain,
    const struct dns_source *dns, struct domain_checks *out)
{
	char signdom[256];

	if (sec->ndkim == 0) {
		dnscheck_add(out, "DKIM", CHECK_WARN, NULL, "no selector configured: relayd does "
		    "not sign mail from %s; add a dkim block to domain \"%s\" and run relayctl "
		    "dkim-keygen %s SELECTOR", domain, sec->name, domain);
		return;
	}
	dkim_signing_domain(sec, domain, signdom, sizeof(signdom));
	for (size_t i = 0; i < sec->ndkim; i++)
		check_selector(&sec->dkim[i], signdom, dns, out);
}
