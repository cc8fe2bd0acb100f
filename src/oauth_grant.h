/*
 * oauth_grant — the OAuth 2.0 token requests relayd makes and the replies
 * it reads (interface.md, "OAuth 2.0"), as pure functions: the caller
 * gives the clock and the unique JWT id, so a request is reproducible,
 * and no network is touched (oauth.c does the HTTP).
 *
 *  - microsoft: client credentials (RFC 6749 4.4) with client_secret, or
 *    with a client_assertion (RFC 7523 2.2): a JWT signed PS256 with the
 *    certificate's key, header x5t#S256, aud the token URL, iss = sub =
 *    client_id, jti unique, nbf/iat now, exp now + 10 minutes.
 *  - google: JWT bearer grant (RFC 7523 2.1), RS256: iss the service
 *    account's client_email, sub the mailbox, scope, aud the key's
 *    token_uri (also when token_url posts it elsewhere), iat now, exp now
 *    + 1 hour, header kid the key's private_key_id.
 *  - generic: refresh_token grant (RFC 6749 6) when a refresh token is
 *    given, else client credentials.
 *
 * Secrets: the form carries secrets and assertions; a reply carries the
 * token.  Neither is ever logged; callers free them with oauth_wipe().
 */
#ifndef RELAYD_OAUTH_GRANT_H
#define RELAYD_OAUTH_GRANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

enum oauth_provider { OAUTH_MICROSOFT = 0, OAUTH_GOOGLE, OAUTH_GENERIC };

#define OAUTH_SCOPE_MICROSOFT	"https://outlook.office365.com/.default"
#define OAUTH_SCOPE_GOOGLE	"https://mail.google.com/"
#define OAUTH_JWT_LIFETIME_MICROSOFT 600	/* seconds a client assertion is valid */
#define OAUTH_JWT_LIFETIME_GOOGLE 3600	/* Google's maximum */

/* What a grant needs, with every file already read (oauth_creds_load). */
struct oauth_creds {
	enum oauth_provider	 provider;
	char			*token_url;	/* where the grant is posted */
	char			*scope;		/* NULL: none sent (generic only) */
	char			*client_id;	/* NULL: none (google) */
	char			*client_secret;	/* secret; NULL if none */
	EVP_PKEY		*key;		/* microsoft certificate's / google's key */
	char			*x5t_s256;	/* microsoft: the certificate's thumbprint */
	char			*client_email;	/* google: iss */
	char			*audience;	/* google: aud, the key's token_uri */
	char			*key_id;	/* google: kid (NULL: none) */
	char			*subject;	/* google: sub, the mailbox */
	char			*refresh_token;	/* generic: secret; NULL: client credentials */
};

void oauth_creds_free(struct oauth_creds *c);
/* A deep copy (the key's reference counted); free it with oauth_creds_free. */
void oauth_creds_copy(struct oauth_creds *dst, const struct oauth_creds *src);

/*
 * A certificate and its private key, PEM text each (the key PKCS#8 or
 * PKCS#1): the key must be RSA (RS256) and match the certificate.  Sets
 * *key and *x5t (the certificate's x5t#S256).  Returns 0, or -1 with a
 * reason in err and *which = 0 (the certificate) or 1 (the key) at fault.
 */
int oauth_cert_key(const char *cert_pem, size_t certlen, const char *key_pem, size_t keylen,
    EVP_PKEY **key, char **x5t, char *err, size_t errlen, int *which);

/*
 * A Google service account's JSON key (as Google Cloud gives it out):
 * type "service_account", client_email, private_key (PEM, RSA),
 * private_key_id (optional: kid), token_uri (optional).  Sets the fields
 * of c it provides (client_email, key, key_id, and token_url when it is
 * NULL).  Returns 0, or -1 with a reason in err (never quoting the key).
 */
int oauth_service_account(const char *json, size_t len, struct oauth_creds *c, char *err,
    size_t errlen);

/*
 * The request body (application/x-www-form-urlencoded) of c's grant at
 * unix time now; jti: a unique id for a JWT (the caller makes it random).
 * Returns a string the caller wipes with oauth_wipe(), or NULL with a
 * reason in err (signing failed).
 */
char *oauth_grant_form(const struct oauth_creds *c, int64_t now, const char *jti, char *err,
    size_t errlen);

/* The parts of a token endpoint's reply relayd uses. */
struct oauth_reply {
	char		*access_token;	/* secret; NULL on failure */
	int64_t		 expires_in;	/* seconds; 3600 when the reply has none */
	char		*refresh_token;	/* secret; a rotated refresh token, or NULL */
	char		 error[512];	/* on failure: "<status> <error>: <description>",
					 * one line, cut to fit; never a secret */
};

/*
 * Reads a reply: HTTP status and body (JSON, RFC 6749 5.1 and 5.2; any
 * bytes at all are handled).  Returns 0 with access_token set (a 2xx with
 * a string access_token of at most 16 KiB, token_type Bearer or absent),
 * or -1 with error set.  Free with oauth_reply_free().
 */
int oauth_parse_reply(long status, const char *body, size_t len, struct oauth_reply *out);
void oauth_reply_free(struct oauth_reply *r);

/* Zeroes and frees a string that held a secret. */
void oauth_wipe(char *s);

#endif
