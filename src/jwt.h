/*
 * jwt — JSON Web Tokens signed with RSA (RFC 7515 compact form; RFC 7518
 * "RS256": RSASSA-PKCS1-v1_5 with SHA-256, "PS256": RSASSA-PSS with SHA-256,
 * MGF1 with SHA-256 and a 32-octet salt), as the OAuth 2.0 grants relayd
 * uses need them: Microsoft's client assertion (RFC 7523; PS256, as the
 * Microsoft identity platform's current documentation asks) and Google's
 * service-account JWT bearer grant (RS256, the only one Google takes).
 *
 * Promises: pure apart from OpenSSL (no clock: the caller gives the JSON
 * texts; RS256 output for a key is reproducible byte for byte, PS256 is
 * randomized by its salt); the result and every intermediate that held key material are
 * freed by the caller or cleansed here.  RSA keys only: a key of another
 * type is refused with a reason.
 */
#ifndef RELAYD_JWT_H
#define RELAYD_JWT_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* base64url of n octets, without padding (RFC 4648 section 5); caller frees. */
char *jwt_b64url(const unsigned char *p, size_t n);

enum jwt_alg { JWT_RS256, JWT_PS256 };

/*
 * base64url(header_json) "." base64url(claims_json) "." base64url(signature),
 * the signature made with key by alg (the header must name the same alg).
 * Returns a string the caller frees, or NULL with a reason in err.
 */
char *jwt_sign(enum jwt_alg alg, const char *header_json, const char *claims_json,
    EVP_PKEY *key, char *err, size_t errlen);

/* The "x5t#S256" header value of a certificate: base64url(SHA-256(DER)),
 * RFC 7515 4.1.8; caller frees; NULL if the certificate cannot be encoded. */
char *jwt_x5t_s256(X509 *cert);

#endif
