/*
 * jwt — RS256 JSON Web Tokens (see jwt.h).
 *
 * Why by hand and not a JWT library: a JWT here is two base64url'd JSON
 * texts and one signature made with OpenSSL's EVP_DigestSign, which
 * relayd links anyway; Debian 12's JWT libraries (libjwt) add a
 * dependency for a dozen lines, and relayd only ever makes tokens, it
 * never parses one from outside.
 */
#include "acconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "util.h"

char *
jwt_b64url(const unsigned char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = xmalloc(4 * ((n + 2) / 3) + 1), *o = out;
	size_t i = 0;

	for (; i + 3 <= n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];

		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = tab[v >> 6 & 63];
		*o++ = tab[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)p[i] << 16;

		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;

		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = tab[v >> 6 & 63];
	}
	*o = '\0';
	return out;
}

static void
openssl_reason(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "unknown error";

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, buf);
}

char *
jwt_sign(enum jwt_alg alg, const char *header_json, const char *claims_json, EVP_PKEY *key,
    char *err, size_t errlen)
{
	char *h = NULL, *c = NULL, *input = NULL, *sig64 = NULL, *out = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;

	if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "%s needs an RSA key", alg == JWT_PS256 ? "PS256" : "RS256");
		return NULL;
	}
	h = jwt_b64url((const unsigned char *)header_json, strlen(header_json));
	c = jwt_b64url((const unsigned char *)claims_json, strlen(claims_json));
	input = xasprintf("%s.%s", h, c);
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1 ||
	    (alg == JWT_PS256 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)) ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, strlen(input)) != 1) {
		openssl_reason(err, errlen, "cannot sign the JWT");
		goto done;
	}
	sig = xmalloc(siglen);
	if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1) {
		openssl_reason(err, errlen, "cannot sign the JWT");
		goto done;
	}
	sig64 = jwt_b64url(sig, siglen);
	out = xasprintf("%s.%s", input, sig64);
done:
	EVP_MD_CTX_free(md);
	free(h);
	free(c);
	free(input);
	free(sig);
	free(sig64);
	return out;
}

char *
jwt_x5t_s256(X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &mdlen) != 1) {
		ERR_clear_error();
		return NULL;
	}
	return jwt_b64url(md, mdlen);
}
