/*
 * fuzz_oauth — what an OAuth 2.0 token endpoint answers, and a Google
 * service account's JSON key (oauth_grant.c: oauth_parse_reply,
 * oauth_service_account).  Both are outside JSON read with jansson; what
 * is fuzzed is relayd's reading of what jansson makes of it.
 *
 * Input: one octet picks the HTTP status; the rest is the body, read as
 * a token reply and as a service-account key.  Properties:
 *  - a reply yields a token only with a 2xx, and then one that is the
 *    reply's access_token exactly: no NUL in it (which would cut it
 *    short), not empty, at most 16 KiB; a refresh token likewise;
 *    expires_in positive and at most a year;
 *  - a failure says why in one line of the status and the endpoint's
 *    words, and never quotes the tokens the reply held;
 *  - a service-account key accepted has an RSA key, an e-mail address and
 *    an https audience; a refused one is never quoted in the reason.
 */
#include "acconfig.h"

#include <jansson.h>

#include "fuzz.h"
#include "oauth_grant.h"

/* The reply's member as jansson holds it (NUL included), or NULL. */
static const char *
member(json_t *o, const char *name, size_t *len)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_string(v))
		return NULL;
	*len = json_string_length(v);
	return json_string_value(v);
}

/* What relayd says, at this status, of replies that fail for each of its
 * own reasons (no JSON, no access_token, token_type, refresh_token), one
 * after the other: a secret that is one of these words ("token_type",
 * "access_token") is no leak when it shows. */
static void
own_words(long status, char *own, size_t ownlen)
{
	static char long_refresh[16500];
	const char *bodies[] = { "x", "{}", "{\"access_token\":\"a\",\"token_type\":\"x\"}",
		long_refresh };
	size_t have = 0;

	if (long_refresh[0] == '\0') {
		size_t n = (size_t)snprintf(long_refresh, sizeof(long_refresh),
		    "{\"access_token\":\"a\",\"refresh_token\":\"");

		memset(long_refresh + n, 'r', 16400);
		snprintf(long_refresh + n + 16400, sizeof(long_refresh) - n - 16400, "\"}");
	}
	own[0] = '\0';
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct oauth_reply r;

		(void)oauth_parse_reply(status, bodies[i], strlen(bodies[i]), &r);
		have += (size_t)snprintf(own + have, ownlen - have, "%s\n", r.error);
		oauth_reply_free(&r);
		if (have >= ownlen)
			break;
	}
}

/* A secret of at least 8 octets must not show in text, unless the reply
 * itself put it in its error words (o: the reply, or NULL), or relayd's
 * own words at this status hold it (status < 0: none; a refresh token
 * "access_token" shows in "no usable access_token"). */
static void
not_quoted(const char *text, const char *secret, size_t len, json_t *o, long status,
    const char *what)
{
	static const char *const words[] = { "error", "error_description" };
	char own[4 * sizeof(((struct oauth_reply *)0)->error)];

	if (secret == NULL || len < 8 || memchr(secret, '\0', len) != NULL ||
	    memmem(text, strlen(text), secret, len) == NULL)
		return;
	for (size_t i = 0; o != NULL && i < 2; i++) {
		size_t wl;
		const char *w = member(o, words[i], &wl);

		if (w != NULL && memmem(w, wl, secret, len) != NULL)
			return;
	}
	if (status >= 0) {
		own_words(status, own, sizeof(own));
		if (memmem(own, strlen(own), secret, len) != NULL)
			return;
	}
	FUZZ_CHECK(0, "%s quoted in \"%s\"", what, text);
}

static void
fuzz_reply(long status, const char *body, size_t len)
{
	struct oauth_reply r;
	json_error_t jerr;
	json_t *o = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
	const char *tok = NULL, *ref = NULL;
	size_t toklen = 0, reflen = 0;

	if (json_is_object(o)) {
		tok = member(o, "access_token", &toklen);
		ref = member(o, "refresh_token", &reflen);
	}
	if (oauth_parse_reply(status, body, len, &r) == 0) {
		FUZZ_CHECK(status >= 200 && status <= 299, "a token from a %ld reply", status);
		FUZZ_CHECK(r.access_token != NULL && r.access_token[0] != '\0' &&
		    strlen(r.access_token) <= 16384, "an unusable access token accepted");
		FUZZ_CHECK(tok != NULL && strlen(r.access_token) == toklen &&
		    memcmp(r.access_token, tok, toklen) == 0,
		    "the token is not the reply's access_token (%zu octets, the reply's %zu)",
		    strlen(r.access_token), toklen);
		if (r.refresh_token != NULL)
			FUZZ_CHECK(ref != NULL && strlen(r.refresh_token) == reflen &&
			    reflen <= 16384, "the refresh token is not the reply's");
		FUZZ_CHECK(r.expires_in > 0 && r.expires_in <= 366 * 86400, "expires_in %lld",
		    (long long)r.expires_in);
		FUZZ_CHECK(r.error[0] == '\0', "an error with a token");
	} else {
		FUZZ_CHECK(r.access_token == NULL && r.refresh_token == NULL,
		    "a failure left a token");
		FUZZ_CHECK(r.error[0] != '\0' && memchr(r.error, '\0', sizeof(r.error)) != NULL,
		    "a failure without a reason");
		FUZZ_CHECK(strpbrk(r.error, "\r\n") == NULL, "a reason of more than one line: %s",
		    r.error);
		not_quoted(r.error, tok, toklen, o, status, "the access token");
		not_quoted(r.error, ref, reflen, o, status, "the refresh token");
	}
	oauth_reply_free(&r);
	json_decref(o);
}

static void
fuzz_service_account(const char *body, size_t len)
{
	struct oauth_creds c;
	char err[512];
	json_error_t jerr;
	json_t *o = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
	const char *pem = NULL;
	size_t pemlen = 0;

	if (json_is_object(o))
		pem = member(o, "private_key", &pemlen);
	memset(&c, 0, sizeof(c));
	err[0] = '\0';
	if (oauth_service_account(body, len, &c, err, sizeof(err)) == 0) {
		FUZZ_CHECK(c.key != NULL && EVP_PKEY_get_base_id(c.key) == EVP_PKEY_RSA,
		    "no RSA key");
		FUZZ_CHECK(c.client_email != NULL && strchr(c.client_email, '@') != NULL,
		    "no client_email");
		FUZZ_CHECK(c.audience != NULL && strncmp(c.audience, "https://", 8) == 0 &&
		    c.token_url != NULL, "no https audience");
	} else {
		FUZZ_CHECK(err[0] != '\0' && c.key == NULL, "a refusal without a reason");
		/* the key's lines are long: any 16 octets of it would do */
		if (pem != NULL && pemlen >= 64)
			not_quoted(err, pem + pemlen / 2, 16, NULL, -1, "the private key");
	}
	oauth_creds_free(&c);
	json_decref(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 201, 299, 400, 401, 500, 0, 302 };
	struct fuzz_in in = { data, size };
	long status = statuses[fuzz_byte(&in) % 8];
	char *body = fuzz_dup(in.p, in.n, false);

	fuzz_reply(status, body, in.n);
	fuzz_service_account(body, in.n);
	free(body);
	return 0;
}
