/*
 * check_oauth — the OAuth 2.0 pieces that need no network: JWTs against
 * golden bytes made by the openssl command-line tool (an independent
 * signer), the grant forms of each provider with a fixed clock, and the
 * token endpoint's replies, good, refused, malformed and hostile.
 */
#include "acconfig.h"	/* posix_openpt() and the other pty calls */

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdbool.h>

#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "jwt.h"
#include "oauth_grant.h"
#include "suites.h"
#include "util.h"

static EVP_PKEY *
test_key(const char *name)
{
	char path[512];
	FILE *f;
	EVP_PKEY *k;

	snprintf(path, sizeof(path), "%s/%s", TEST_DATADIR, name);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s", path);
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(k);
	return k;
}

START_TEST(test_b64url)
{
	static const struct { const char *in, *out; } v[] = {
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg" }, { "\xfb\xff\xfe", "-__-" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *o = jwt_b64url((const unsigned char *)v[i].in, strlen(v[i].in));

		ck_assert_str_eq(o, v[i].out);
		free(o);
	}
}
END_TEST

/* Made with: printf %s "$IN" | openssl dgst -sha256 -sign dkim-rsa2048.key
 * | base64url, IN being the first two parts. */
static const char GOLDEN[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJyZWxheSIsIm4iOjF9."
    "kzT3ULTFCIE4aDR2aJfmztPz8mKch2Y5eA0WbQ56rlyf33asDXFC44TXpABgl6w67ma6ZZ5Sx05OEfaGvFdxbql"
    "appEf_nHJwel_BHLLxSWIBjpOTjZRDNti3OboDxrDlNDWeAEhkL01wL5eMDzs-5EgsMHt_eqsFSrh10ThHiiRGes"
    "3hBuxypRxI5YUeVIOmlh0pEWJL36z-SotJvf8EU3ODLJAdaYf0NI6uW74N1yVO9r68cmfzhIBxJJwGl-80CRYQME3"
    "dDHKmXZa_Dfil0i-iHgX_Xi6-mY_w8ghAqHlvriyhiFDOIUC57-0zpMLRHbeBHmR7iMsxBO5Tiv4rw";

START_TEST(test_jwt_golden)
{
	EVP_PKEY *k = test_key("dkim-rsa2048.key");
	char err[256];
	char *jwt = jwt_sign(JWT_RS256, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
	    "{\"iss\":\"relay\",\"n\":1}", k, err, sizeof(err));

	ck_assert_msg(jwt != NULL, "%s", err);
	ck_assert_str_eq(jwt, GOLDEN);
	free(jwt);
	EVP_PKEY_free(k);

	/* RS256 only: an Ed25519 key is refused with a reason */
	k = test_key("dkim-ed25519.key");
	ck_assert_ptr_null(jwt_sign(JWT_RS256, "{}", "{}", k, err, sizeof(err)));
	ck_assert_str_eq(err, "RS256 needs an RSA key");
	ck_assert_ptr_null(jwt_sign(JWT_PS256, "{}", "{}", k, err, sizeof(err)));
	ck_assert_str_eq(err, "PS256 needs an RSA key");
	EVP_PKEY_free(k);
}
END_TEST

/* base64url decoding, enough for these tests; *n gets the length. */
static unsigned char *
b64url_decode(const char *s, size_t len, size_t *n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char *out = malloc(len * 3 / 4 + 3);
	unsigned v = 0;
	int bits = 0;

	*n = 0;
	for (size_t i = 0; i < len; i++) {
		const char *p = strchr(tab, s[i]);

		ck_assert_msg(p != NULL && s[i] != '\0', "not base64url: %c", s[i]);
		v = v << 6 | (unsigned)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[(*n)++] = (unsigned char)(v >> bits);
		}
	}
	return out;
}

/* Does jwt's signature verify with key by alg (RFC 7518)? */
static bool
jwt_verifies(const char *jwt, EVP_PKEY *key, enum jwt_alg alg)
{
	const char *dot = strrchr(jwt, '.');
	size_t siglen;
	unsigned char *sig = b64url_decode(dot + 1, strlen(dot + 1), &siglen);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	bool ok = EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key) == 1;

	if (ok && alg == JWT_PS256)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1;
	ok = ok && EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt,
	    (size_t)(dot - jwt)) == 1;
	EVP_MD_CTX_free(md);
	free(sig);
	return ok;
}

START_TEST(test_jwt_ps256)
{
	EVP_PKEY *k = test_key("dkim-rsa2048.key");
	char err[256];
	char *a = jwt_sign(JWT_PS256, "{\"alg\":\"PS256\"}", "{\"n\":1}", k, err, sizeof(err));
	char *b = jwt_sign(JWT_PS256, "{\"alg\":\"PS256\"}", "{\"n\":1}", k, err, sizeof(err));

	ck_assert_msg(a != NULL && b != NULL, "%s", err);
	/* salted: two signatures differ, both verify as PSS, neither as PKCS#1 v1.5 */
	ck_assert_str_ne(a, b);
	ck_assert(jwt_verifies(a, k, JWT_PS256));
	ck_assert(jwt_verifies(b, k, JWT_PS256));
	ck_assert(!jwt_verifies(a, k, JWT_RS256));
	/* and the golden RS256 token verifies as such, not as PSS */
	ck_assert(jwt_verifies(GOLDEN, k, JWT_RS256));
	ck_assert(!jwt_verifies(GOLDEN, k, JWT_PS256));
	free(a);
	free(b);
	EVP_PKEY_free(k);
}
END_TEST

/* The form's value of name, URL-decoded (enough for these tests). */
static char *
form_value(const char *form, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = form; p != NULL; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, name, n) != 0 || p[n] != '=')
			continue;
		const char *v = p + n + 1;
		size_t len = strcspn(v, "&");
		char *out = calloc(1, len + 1), *o = out;

		for (size_t i = 0; i < len; i++) {
			if (v[i] == '%' && i + 2 < len + 1) {
				char hx[3] = { v[i + 1], v[i + 2], 0 };

				*o++ = (char)strtol(hx, NULL, 16);
				i += 2;
			} else {
				*o++ = v[i];
			}
		}
		return out;
	}
	return NULL;
}

/* The JWT's second part must be the base64url of exactly this JSON. */
static void
assert_jwt_part(const char *jwt, int part, const char *json)
{
	char *want = jwt_b64url((const unsigned char *)json, strlen(json));
	const char *p = jwt;

	for (int i = 0; i < part; i++)
		p = strchr(p, '.') + 1;
	ck_assert_msg(strncmp(p, want, strlen(want)) == 0 && (p[strlen(want)] == '.' ||
	    p[strlen(want)] == '\0'), "part %d is not %s", part, json);
	free(want);
}

START_TEST(test_form_microsoft_secret)
{
	struct oauth_creds c = {
		.provider = OAUTH_MICROSOFT,
		.token_url = "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
		.scope = OAUTH_SCOPE_MICROSOFT,
		.client_id = "00000000-aaaa",
		.client_secret = "s3cr&t=+/",
	};
	char err[256];
	char *f = oauth_grant_form(&c, 1700000000, "jti-1", err, sizeof(err));

	ck_assert_str_eq(f, "grant_type=client_credentials&client_id=00000000-aaaa"
	    "&client_secret=s3cr%26t%3D%2B%2F&scope=https%3A%2F%2Foutlook.office365.com%2F.default");
	oauth_wipe(f);
}
END_TEST

START_TEST(test_form_microsoft_certificate)
{
	struct oauth_creds c = {
		.provider = OAUTH_MICROSOFT,
		.token_url = "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
		.scope = OAUTH_SCOPE_MICROSOFT,
		.client_id = "cid",
		.key = test_key("dkim-rsa2048.key"),
		.x5t_s256 = "THUMB",
	};
	char err[256];
	char *f = oauth_grant_form(&c, 1700000000, "jti-1", err, sizeof(err));

	ck_assert_msg(f != NULL, "%s", err);
	char *gt = form_value(f, "grant_type"), *cid = form_value(f, "client_id");
	char *at = form_value(f, "client_assertion_type"), *a = form_value(f, "client_assertion");

	ck_assert_str_eq(gt, "client_credentials");
	ck_assert_str_eq(cid, "cid");
	ck_assert_str_eq(at, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
	ck_assert_ptr_null(form_value(f, "client_secret"));
	assert_jwt_part(a, 0, "{\"alg\":\"PS256\",\"typ\":\"JWT\",\"x5t#S256\":\"THUMB\"}");
	ck_assert(jwt_verifies(a, c.key, JWT_PS256));
	assert_jwt_part(a, 1, "{\"aud\":\"https://login.microsoftonline.com/contoso/oauth2/v2.0/"
	    "token\",\"iss\":\"cid\",\"sub\":\"cid\",\"jti\":\"jti-1\",\"nbf\":1700000000,"
	    "\"iat\":1700000000,\"exp\":1700000600}");
	free(gt);
	free(cid);
	free(at);
	free(a);
	oauth_wipe(f);
	EVP_PKEY_free(c.key);
}
END_TEST

START_TEST(test_form_google)
{
	struct oauth_creds c = {
		.provider = OAUTH_GOOGLE,
		.token_url = "https://127.0.0.1:9443/token",	/* posted here, ... */
		.scope = OAUTH_SCOPE_GOOGLE,
		.key = test_key("dkim-rsa2048.key"),
		.client_email = "relay@proj.iam.gserviceaccount.com",
		.audience = "https://oauth2.googleapis.com/token",	/* ... meant for here */
		.key_id = "kid1",
		.subject = "relay@example.org",
	};
	char err[256];
	char *f = oauth_grant_form(&c, 1700000000, "unused", err, sizeof(err));

	ck_assert_msg(f != NULL, "%s", err);
	char *gt = form_value(f, "grant_type"), *a = form_value(f, "assertion");

	ck_assert_str_eq(gt, "urn:ietf:params:oauth:grant-type:jwt-bearer");
	assert_jwt_part(a, 0, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"kid1\"}");
	ck_assert(jwt_verifies(a, c.key, JWT_RS256));
	assert_jwt_part(a, 1, "{\"iss\":\"relay@proj.iam.gserviceaccount.com\",\"sub\":"
	    "\"relay@example.org\",\"scope\":\"https://mail.google.com/\",\"aud\":"
	    "\"https://oauth2.googleapis.com/token\",\"iat\":1700000000,\"exp\":1700003600}");
	free(gt);
	free(a);
	oauth_wipe(f);
	EVP_PKEY_free(c.key);
}
END_TEST

START_TEST(test_form_generic)
{
	struct oauth_creds c = {
		.provider = OAUTH_GENERIC,
		.token_url = "https://login.example.net/token",
		.client_id = "app",
		.refresh_token = "rt-1",
	};
	char err[256];
	char *f = oauth_grant_form(&c, 0, "x", err, sizeof(err));

	ck_assert_str_eq(f, "grant_type=refresh_token&refresh_token=rt-1&client_id=app");
	oauth_wipe(f);
	c.refresh_token = NULL;
	c.client_secret = "sec";
	c.scope = "smtp send";
	f = oauth_grant_form(&c, 0, "x", err, sizeof(err));
	ck_assert_str_eq(f, "grant_type=client_credentials&client_id=app&client_secret=sec"
	    "&scope=smtp%20send");
	oauth_wipe(f);
}
END_TEST

static int
parse(long status, const char *body, struct oauth_reply *r)
{
	return oauth_parse_reply(status, body, strlen(body), r);
}

START_TEST(test_reply_good)
{
	struct oauth_reply r;

	ck_assert_int_eq(parse(200, "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
	    "\"ext_expires_in\":3599,\"access_token\":\"eyJ0.x.y\"}", &r), 0);
	ck_assert_str_eq(r.access_token, "eyJ0.x.y");
	ck_assert_int_eq(r.expires_in, 3599);
	ck_assert_ptr_null(r.refresh_token);
	oauth_reply_free(&r);

	/* a rotated refresh token; expires_in as a string; token_type in
	 * another case; no expires_in at all */
	ck_assert_int_eq(parse(200, "{\"access_token\":\"a\",\"token_type\":\"bearer\","
	    "\"expires_in\":\"120\",\"refresh_token\":\"rt-2\"}", &r), 0);
	ck_assert_int_eq(r.expires_in, 120);
	ck_assert_str_eq(r.refresh_token, "rt-2");
	oauth_reply_free(&r);
	ck_assert_int_eq(parse(200, "{\"access_token\":\"a\"}", &r), 0);
	ck_assert_int_eq(r.expires_in, 3600);
	oauth_reply_free(&r);
}
END_TEST

START_TEST(test_reply_refused)
{
	struct oauth_reply r;

	ck_assert_int_eq(parse(401, "{\"error\":\"invalid_client\",\"error_description\":"
	    "\"AADSTS7000215: Invalid client secret provided.\\r\\nTrace ID: 1\",\"error_codes\":"
	    "[7000215]}", &r), -1);
	ck_assert_ptr_null(r.access_token);
	ck_assert_str_eq(r.error,
	    "401 invalid_client: AADSTS7000215: Invalid client secret provided.  Trace ID: 1");
	/* no JSON: the status alone, and why */
	ck_assert_int_eq(parse(502, "<html>Bad gateway</html>", &r), -1);
	ck_assert_str_eq(r.error, "502 (no JSON error in the reply)");
	ck_assert_int_eq(parse(400, "{\"error\":\"invalid_grant\"}", &r), -1);
	ck_assert_str_eq(r.error, "400 invalid_grant");
}
END_TEST

START_TEST(test_reply_hostile)
{
	static const char *const bad[] = {
		"", "null", "[]", "\"x\"", "{", "{\"access_token\":1}", "{\"access_token\":\"\"}",
		"{\"access_token\":null}", "{\"access_token\":\"a\",\"token_type\":\"mac\"}",
		"{\"access_token\":\"a\",\"access_token\":\"b\"}",
	};
	struct oauth_reply r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(parse(200, bad[i], &r) == -1, "accepted %s", bad[i]);
		ck_assert_ptr_null(r.access_token);
		ck_assert_str_ne(r.error, "");
	}
	/* a token over 16 KiB, deep nesting, a huge error text, a NUL */
	size_t n = 40000;
	char *big = malloc(n + 64);

	strcpy(big, "{\"access_token\":\"");
	memset(big + 17, 'a', n);
	strcpy(big + 17 + n, "\"}");
	ck_assert_int_eq(parse(200, big, &r), -1);
	memset(big, '[', n);
	big[n] = '\0';
	ck_assert_int_eq(parse(200, big, &r), -1);
	strcpy(big, "{\"error\":\"");
	memset(big + 10, 'e', n);
	strcpy(big + 10 + n, "\"}");
	ck_assert_int_eq(parse(400, big, &r), -1);
	ck_assert_uint_eq(strlen(r.error), sizeof(r.error) - 1);
	free(big);
	ck_assert_int_eq(parse(200, "{\"access_token\":\"a\\u0000b\"}", &r), -1);
	/* expires_in absurd: bounded */
	ck_assert_int_eq(parse(200, "{\"access_token\":\"a\",\"expires_in\":99999999999}", &r), 0);
	ck_assert_int_le(r.expires_in, 366 * 86400);
	oauth_reply_free(&r);
}
END_TEST

/* A fixture file's whole text; caller frees. */
static char *
slurp(const char *name, size_t *len)
{
	char path[512];
	FILE *f;
	char *buf = calloc(1, 65536);

	snprintf(path, sizeof(path), "%s/%s", TEST_DATADIR, name);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s", path);
	*len = fread(buf, 1, 65535, f);
	fclose(f);
	return buf;
}

START_TEST(test_cert_key)
{
	size_t cl, kl, sl, el;
	char *cert = slurp("oauth-app.crt", &cl), *key = slurp("dkim-rsa2048.key", &kl);
	char *small = slurp("dkim-rsa512.key", &sl), *ed = slurp("dkim-ed25519.key", &el);
	char *x5t = NULL, err[256];
	EVP_PKEY *k = NULL;
	int which = -1;

	ck_assert_int_eq(oauth_cert_key(cert, cl, key, kl, &k, &x5t, err, sizeof(err), &which), 0);
	ck_assert_ptr_nonnull(k);
	/* made with: openssl x509 -outform DER | openssl dgst -sha256 -binary | base64url */
	ck_assert_str_eq(x5t, "9QKIA793Go4gM2H2_ONPSCS1pYsiOWI1qf_gWnJ9nN8");
	EVP_PKEY_free(k);
	free(x5t);

	/* another key, another type, no key, no certificate */
	ck_assert_int_eq(oauth_cert_key(cert, cl, small, sl, &k, &x5t, err, sizeof(err), &which), -1);
	ck_assert_str_eq(err, "the key does not match the certificate");
	ck_assert_int_eq(which, 1);
	ck_assert_int_eq(oauth_cert_key(cert, cl, ed, el, &k, &x5t, err, sizeof(err), &which), -1);
	ck_assert_str_eq(err, "the key is not an RSA key (the JWT is signed PS256)");
	ck_assert_int_eq(oauth_cert_key(cert, cl, cert, cl, &k, &x5t, err, sizeof(err), &which), -1);
	ck_assert_int_eq(which, 1);
	ck_assert_int_eq(oauth_cert_key(key, kl, key, kl, &k, &x5t, err, sizeof(err), &which), -1);
	ck_assert_str_eq(err, "no PEM certificate in it");
	ck_assert_int_eq(which, 0);
	ck_assert_ptr_null(k);
	ck_assert_ptr_null(x5t);
	free(cert);
	free(key);
	free(small);
	free(ed);
}
END_TEST

/*
 * An encrypted key is refused at once, never with a passphrase asked for:
 * relayd -n run from a terminal waited at "Enter PEM pass phrase:" (and a
 * reload of relayd -d would have stalled the event loop there).  The key
 * is read in a child whose controlling terminal is a pseudo-terminal, as
 * an admin's shell would be; the parent gives it 3 s, then kills it.
 */
START_TEST(test_cert_key_encrypted_no_prompt)
{
	size_t cl, el;
	char *cert = slurp("oauth-app.crt", &cl), *enc = slurp("dkim-ed25519-encrypted.key", &el);
	int master = posix_openpt(O_RDWR | O_NOCTTY), status = 0;
	pid_t pid;

	ck_assert_int_ge(master, 0);
	ck_assert_int_eq(fcntl(master, F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(grantpt(master), 0);
	ck_assert_int_eq(unlockpt(master), 0);
	char *slave = ptsname(master);
	ck_assert_ptr_nonnull(slave);
	if ((pid = fork()) == 0) {
		char *x5t = NULL, err[256];
		EVP_PKEY *k = NULL;
		int which, fd;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		setsid();
		if ((fd = open(slave, O_RDWR)) < 0 || ioctl(fd, TIOCSCTTY, 0) < 0)
			_exit(3);
		if (oauth_cert_key(cert, cl, enc, el, &k, &x5t, err, sizeof(err), &which) != -1 ||
		    strcmp(err, "no PEM private key in it (an encrypted key cannot be used)") != 0)
			_exit(2);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	for (int i = 0; i < 300 && waitpid(pid, &status, WNOHANG) == 0; i++) {
		char junk[256];

		(void)!read(master, junk, sizeof(junk));	/* what it printed, if anything */
		usleep(10000);
	}
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);	/* still waiting at the prompt */
		waitpid(pid, &status, 0);
	}
	close(master);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "reading an encrypted key: %s %d (it waited for a passphrase?)",
	    WIFEXITED(status) ? "exit" : "signal",
	    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	free(cert);
	free(enc);
}
END_TEST

/* A service-account key file's text with the PEM key in "private_key". */
static char *
sa_json(const char *type, const char *email, const char *pem, const char *uri)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "{\"type\":\"%s\",\"project_id\":\"p\",\"private_key_id\":\"k1\","
	    "\"client_email\":\"%s\",\"private_key\":\"", type, email);
	for (const char *p = pem; *p; p++)
		if (*p == '\n')
			buf_addstr(&b, "\\n");
		else
			buf_add(&b, p, 1);
	buf_addstr(&b, "\"");
	if (uri)
		buf_printf(&b, ",\"token_uri\":\"%s\"", uri);
	buf_addstr(&b, "}");
	buf_add(&b, "", 1);
	return b.p;
}

START_TEST(test_service_account)
{
	size_t kl, el;
	char *key = slurp("dkim-rsa2048.key", &kl), *ed = slurp("dkim-ed25519.key", &el);
	struct oauth_creds c;
	char err[256], *j;

	memset(&c, 0, sizeof(c));
	j = sa_json("service_account", "relay@p.iam.gserviceaccount.com", key, NULL);
	ck_assert_msg(oauth_service_account(j, strlen(j), &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c.client_email, "relay@p.iam.gserviceaccount.com");
	ck_assert_str_eq(c.key_id, "k1");
	ck_assert_str_eq(c.token_url, "https://oauth2.googleapis.com/token");
	ck_assert_ptr_nonnull(c.key);
	oauth_creds_free(&c);
	free(j);

	/* a token_uri of its own, unless the configuration names one */
	j = sa_json("service_account", "a@b", key, "https://oauth2.example/token");
	ck_assert_int_eq(oauth_service_account(j, strlen(j), &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.token_url, "https://oauth2.example/token");
	oauth_creds_free(&c);
	c.token_url = xstrdup("https://127.0.0.1:9/token");
	ck_assert_int_eq(oauth_service_account(j, strlen(j), &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.token_url, "https://127.0.0.1:9/token");
	ck_assert_str_eq(c.audience, "https://oauth2.example/token");	/* aud: the key's */
	oauth_creds_free(&c);
	free(j);

	static const struct { const char *type, *email, *uri; int ed; const char *why; } bad[] = {
		{ "authorized_user", "a@b", NULL, 0, "\"type\" is not" },
		{ "service_account", "nobody", NULL, 0, "no \"client_email\"" },
		{ "service_account", "a@b", NULL, 1, "not an RSA key" },
		{ "service_account", "a@b", "http://x/token", 0, "not an https URL" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = sa_json(bad[i].type, bad[i].email, bad[i].ed ? ed : key, bad[i].uri);
		ck_assert_int_eq(oauth_service_account(j, strlen(j), &c, err, sizeof(err)), -1);
		ck_assert_msg(strstr(err, bad[i].why) != NULL, "%zu: %s", i, err);
		ck_assert_ptr_null(c.key);
		free(j);
	}
	/* not JSON: the position, never the text (it may hold the key) */
	ck_assert_int_eq(oauth_service_account(key, kl, &c, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a JSON object (line 1"));
	ck_assert_ptr_null(strstr(err, "BEGIN"));
	j = "{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":\"junk\"}";
	ck_assert_int_eq(oauth_service_account(j, strlen(j), &c, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "its \"private_key\" is not a PEM private key");
	free(key);
	free(ed);
}
END_TEST

Suite *
oauth_suite(void)
{
	Suite *s = suite_create("oauth");
	TCase *tc = tcase_create("grant");

	tcase_add_test(tc, test_b64url);
	tcase_add_test(tc, test_jwt_golden);
	tcase_add_test(tc, test_jwt_ps256);
	tcase_add_test(tc, test_form_microsoft_secret);
	tcase_add_test(tc, test_form_microsoft_certificate);
	tcase_add_test(tc, test_form_google);
	tcase_add_test(tc, test_form_generic);
	tcase_add_test(tc, test_reply_good);
	tcase_add_test(tc, test_reply_refused);
	tcase_add_test(tc, test_reply_hostile);
	tcase_add_test(tc, test_cert_key);
	tcase_add_test(tc, test_cert_key_encrypted_no_prompt);
	tcase_add_test(tc, test_service_account);
	suite_add_tcase(s, tc);
	return s;
}
