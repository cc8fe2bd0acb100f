/*
 * oauth_grant — token requests and replies (see oauth_grant.h).
 *
 * JSON is built and read with jansson: the claims carry strings from the
 * configuration (a client id with a quote in it must still make valid
 * JSON), and a token endpoint's reply is outside input that a maintained
 * parser reads, never relayd's own code.
 */
#include "acconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "oauth_grant.h"
#include "util.h"

#define TOKEN_MAX	(16u << 10)	/* octets of an access or refresh token */

void
oauth_wipe(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void
oauth_creds_free(struct oauth_creds *c)
{
	free(c->token_url);
	free(c->scope);
	free(c->client_id);
	oauth_wipe(c->client_secret);
	EVP_PKEY_free(c->key);
	free(c->x5t_s256);
	free(c->client_email);
	free(c->audience);
	free(c->key_id);
	free(c->subject);
	oauth_wipe(c->refresh_token);
	memset(c, 0, sizeof(*c));
}

/* A string member, or NULL when absent, not a string, or holding a NUL
 * (which a C string would cut short). */
static const char *
member_str(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return NULL;
	return json_string_value(v);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

void
oauth_creds_copy(struct oauth_creds *dst, const struct oauth_creds *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->provider = src->provider;
	dst->token_url = dup_or_null(src->token_url);
	dst->scope = dup_or_null(src->scope);
	dst->client_id = dup_or_null(src->client_id);
	dst->client_secret = dup_or_null(src->client_secret);
	if (src->key != NULL && EVP_PKEY_up_ref(src->key) == 1)
		dst->key = src->key;
	dst->x5t_s256 = dup_or_null(src->x5t_s256);
	dst->client_email = dup_or_null(src->client_email);
	dst->audience = dup_or_null(src->audience);
	dst->key_id = dup_or_null(src->key_id);
	dst->subject = dup_or_null(src->subject);
	dst->refresh_token = dup_or_null(src->refresh_token);
}

/* A PEM private key from memory, or NULL (OpenSSL's error queue cleared);
 * an encrypted one is refused, never prompted for. */
static EVP_PKEY *
pem_key(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;

	BIO_free(b);
	ERR_clear_error();
	return k;
}

int
oauth_cert_key(const char *cert_pem, size_t certlen, const char *key_pem, size_t keylen,
    EVP_PKEY **key, char **x5t, char *err, size_t errlen, int *which)
{
	BIO *b = BIO_new_mem_buf(cert_pem, (int)certlen);
	X509 *cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	EVP_PKEY *k = NULL;

	BIO_free(b);
	ERR_clear_error();
	*key = NULL;
	*x5t = NULL;
	*which = 0;
	if (cert == NULL) {
		snprintf(err, errlen, "no PEM certificate in it");
		return -1;
	}
	*which = 1;
	if ((k = pem_key(key_pem, keylen)) == NULL) {
		snprintf(err, errlen, "no PEM private key in it (an encrypted key cannot be used)");
	} else if (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "the key is not an RSA key (the JWT is signed PS256)");
	} else if (X509_check_private_key(cert, k) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "the key does not match the certificate");
	} else if ((*x5t = jwt_x5t_s256(cert)) == NULL) {
		*which = 0;
		snprintf(err, errlen, "cannot hash the certificate");
	} else {
		*key = k;
		X509_free(cert);
		return 0;
	}
	EVP_PKEY_free(k);
	X509_free(cert);
	return -1;
}

int
oauth_service_account(const char *json, size_t len, struct oauth_creds *c, char *err,
    size_t errlen)
{
	json_error_t jerr;
	json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *type, *email, *pem, *kid, *uri;
	int rc = -1;

	if (o == NULL || !json_is_object(o)) {
		/* jansson's position, never its text: it may quote the key */
		snprintf(err, errlen, "not a JSON object (line %d, column %d)", jerr.line, jerr.column);
		json_decref(o);
		return -1;
	}
	type = member_str(o, "type");
	email = member_str(o, "client_email");
	pem = member_str(o, "private_key");
	kid = member_str(o, "private_key_id");
	uri = member_str(o, "token_uri");
	if (type == NULL || strcmp(type, "service_account") != 0) {
		snprintf(err, errlen, "\"type\" is not \"service_account\" (is it the key of a "
		    "service account, as the Google Cloud console downloads it?)");
	} else if (email == NULL || strchr(email, '@') == NULL) {
		snprintf(err, errlen, "no \"client_email\" in it");
	} else if (pem == NULL) {
		snprintf(err, errlen, "no \"private_key\" in it");
	} else if ((c->key = pem_key(pem, strlen(pem))) == NULL) {
		snprintf(err, errlen, "its \"private_key\" is not a PEM private key");
	} else if (EVP_PKEY_get_base_id(c->key) != EVP_PKEY_RSA) {
		EVP_PKEY_free(c->key);
		c->key = NULL;
		snprintf(err, errlen, "its \"private_key\" is not an RSA key");
	} else if (uri != NULL && strncmp(uri, "https://", 8) != 0) {
		EVP_PKEY_free(c->key);
		c->key = NULL;
		snprintf(err, errlen, "its \"token_uri\" is not an https URL");
	} else {
		c->client_email = xstrdup(email);
		c->key_id = dup_or_null(kid);
		c->audience = xstrdup(uri ? uri : "https://oauth2.googleapis.com/token");
		if (c->token_url == NULL)
			c->token_url = xstrdup(c->audience);
		rc = 0;
	}
	if (pem != NULL)	/* the key's text: not left in freed memory */
		OPENSSL_cleanse((char *)pem, strlen(pem));
	json_decref(o);
	return rc;
}

/* Appends "&name=value" (or without '&' first), value percent-encoded
 * (RFC 3986 unreserved characters stay, as form encoding allows). */
static void
form_add(struct buf *b, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";

	if (value == NULL)
		return;
	if (b->len > 0)
		buf_add(b, "&", 1);
	buf_addstr(b, name);
	buf_add(b, "=", 1);
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			buf_add(b, p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };

			buf_add(b, e, 3);
		}
	}
}

/* A JSON object as compact text, keys in the order given; caller frees. */
static char *
json_text(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *copy;

	json_decref(o);
	copy = xstrdup(s != NULL ? s : "{}");	/* NULL only without memory */
	free(s);
	return copy;
}

/* The client assertion or the Google grant's JWT. */
static char *
grant_jwt(const struct oauth_creds *c, int64_t now, const char *jti, char *err, size_t errlen)
{
	json_t *h = json_object(), *cl = json_object();

	enum jwt_alg alg = c->provider == OAUTH_MICROSOFT ? JWT_PS256 : JWT_RS256;

	json_object_set_new(h, "alg", json_string(alg == JWT_PS256 ? "PS256" : "RS256"));
	json_object_set_new(h, "typ", json_string("JWT"));
	if (c->provider == OAUTH_MICROSOFT) {
		json_object_set_new(h, "x5t#S256", json_string(c->x5t_s256 ? c->x5t_s256 : ""));
		json_object_set_new(cl, "aud", json_string(c->token_url));
		json_object_set_new(cl, "iss", json_string(c->client_id));
		json_object_set_new(cl, "sub", json_string(c->client_id));
		json_object_set_new(cl, "jti", json_string(jti));
		json_object_set_new(cl, "nbf", json_integer(now));
		json_object_set_new(cl, "iat", json_integer(now));
		json_object_set_new(cl, "exp", json_integer(now + OAUTH_JWT_LIFETIME_MICROSOFT));
	} else {
		if (c->key_id != NULL)
			json_object_set_new(h, "kid", json_string(c->key_id));
		json_object_set_new(cl, "iss", json_string(c->client_email));
		json_object_set_new(cl, "sub", json_string(c->subject));
		json_object_set_new(cl, "scope", json_string(c->scope));
		json_object_set_new(cl, "aud", json_string(c->audience ? c->audience :
		    c->token_url));
		json_object_set_new(cl, "iat", json_integer(now));
		json_object_set_new(cl, "exp", json_integer(now + OAUTH_JWT_LIFETIME_GOOGLE));
	}
	char *hs = json_text(h), *cs = json_text(cl);
	char *jwt = jwt_sign(alg, hs, cs, c->key, err, errlen);

	free(hs);
	free(cs);
	return jwt;
}

char *
oauth_grant_form(const struct oauth_creds *c, int64_t now, const char *jti, char *err,
    size_t errlen)
{
	struct buf b;
	char *jwt = NULL;

	buf_init(&b);
	switch (c->provider) {
	case OAUTH_MICROSOFT:
		form_add(&b, "grant_type", "client_credentials");
		form_add(&b, "client_id", c->client_id);
		if (c->key != NULL) {
			if ((jwt = grant_jwt(c, now, jti, err, errlen)) == NULL)
				goto fail;
			form_add(&b, "client_assertion_type",
			    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
			form_add(&b, "client_assertion", jwt);
		} else {
			form_add(&b, "client_secret", c->client_secret);
		}
		form_add(&b, "scope", c->scope);
		break;
	case OAUTH_GOOGLE:
		if ((jwt = grant_jwt(c, now, jti, err, errlen)) == NULL)
			goto fail;
		form_add(&b, "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
		form_add(&b, "assertion", jwt);
		break;
	case OAUTH_GENERIC:
		if (c->refresh_token != NULL) {
			form_add(&b, "grant_type", "refresh_token");
			form_add(&b, "refresh_token", c->refresh_token);
		} else {
			form_add(&b, "grant_type", "client_credentials");
		}
		form_add(&b, "client_id", c->client_id);
		form_add(&b, "client_secret", c->client_secret);
		form_add(&b, "scope", c->scope);
		break;
	}
	oauth_wipe(jwt);
	buf_add(&b, "", 1);
	return b.p;
fail:
	OPENSSL_cleanse(b.p, b.len);
	buf_free(&b);
	return NULL;
}

/* Copies s into the error text, one line, control characters as spaces. */
static void
error_add(struct oauth_reply *r, const char *s)
{
	size_t have = strlen(r->error);

	for (; s != NULL && *s != '\0' && have + 1 < sizeof(r->error); s++) {
		unsigned char ch = (unsigned char)*s;

		r->error[have++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
	}
	r->error[have] = '\0';
}

/* "<status> <error>: <description>" from an error reply (RFC 6749 5.2). */
static int
reply_error(struct oauth_reply *r, long status, json_t *o, const char *why)
{
	const char *e = o ? member_str(o, "error") : NULL;
	const char *d = o ? member_str(o, "error_description") : NULL;

	snprintf(r->error, sizeof(r->error), "%ld", status);
	if (e != NULL) {
		error_add(r, " ");
		error_add(r, e);
	}
	if (d != NULL) {
		error_add(r, ": ");
		error_add(r, d);
	}
	if (e == NULL && d == NULL && why != NULL) {
		error_add(r, " ");
		error_add(r, why);
	}
	return -1;
}

void
oauth_reply_free(struct oauth_reply *r)
{
	oauth_wipe(r->access_token);
	oauth_wipe(r->refresh_token);
	r->access_token = r->refresh_token = NULL;
}

int
oauth_parse_reply(long status, const char *body, size_t len, struct oauth_reply *out)
{
	json_error_t jerr;
	json_t *o;
	int rc;

	memset(out, 0, sizeof(*out));
	o = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	if (status < 200 || status > 299) {
		rc = reply_error(out, status, o, o ? NULL : "(no JSON error in the reply)");
		json_decref(o);
		return rc;
	}
	if (o == NULL)
		return reply_error(out, status, NULL, "(the reply is not a JSON object)");

	const char *tok = member_str(o, "access_token");
	const char *type = member_str(o, "token_type");
	const char *refresh = member_str(o, "refresh_token");
	json_t *exp = json_object_get(o, "expires_in");

	if (tok == NULL || *tok == '\0' || strlen(tok) > TOKEN_MAX) {
		rc = reply_error(out, status, o, "(no usable access_token in the reply)");
	} else if (type != NULL && ascii_strcasecmp(type, "Bearer") != 0) {
		rc = reply_error(out, status, NULL, "(token_type is not Bearer)");
	} else if (refresh != NULL && strlen(refresh) > TOKEN_MAX) {
		rc = reply_error(out, status, NULL, "(refresh_token too long)");
	} else {
		out->access_token = xstrdup(tok);
		out->refresh_token = refresh != NULL && *refresh != '\0' ? xstrdup(refresh) : NULL;
		out->expires_in = 3600;
		/* a number, or (some servers) a numeric string */
		if (json_is_integer(exp) && json_integer_value(exp) > 0)
			out->expires_in = json_integer_value(exp);
		else if (json_is_string(exp) && atoll(json_string_value(exp)) > 0)
			out->expires_in = atoll(json_string_value(exp));
		if (out->expires_in > 366 * 86400)
			out->expires_in = 366 * 86400;
		rc = 0;
	}
	json_decref(o);
	return rc;
}
