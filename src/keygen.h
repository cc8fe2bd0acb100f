/*
 * keygen — DKIM key pairs for `relayctl dkim-keygen`: make a key, store the
 * private half safely, and say what to publish in DNS.
 *
 * Everything here is a plain function of its arguments (no configuration,
 * no printing), so the unit tests call it directly.  Errors are returned
 * as -1 or NULL with a message a person can act on in err.
 */
#ifndef RELAYD_KEYGEN_H
#define RELAYD_KEYGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>

enum keygen_alg { KEYGEN_RSA = 0, KEYGEN_ED25519 };

#define KEYGEN_RSA_MIN_BITS	1024
#define KEYGEN_RSA_MAX_BITS	4096
#define KEYGEN_RSA_DEFAULT_BITS	2048
#define KEYGEN_TXT_MAX		255	/* bytes in one DNS character-string */

/*
 * A new private key: RSA of bits bits (KEYGEN_RSA_MIN_BITS ..
 * KEYGEN_RSA_MAX_BITS, public exponent 65537), or Ed25519 (bits must be 0).
 * Free it with EVP_PKEY_free().  NULL with a reason in err on failure.
 */
EVP_PKEY *keygen_generate(enum keygen_alg alg, int bits, char *err, size_t errlen);

/*
 * Checks, before any work, that path could be written: its directory
 * exists (it is never created: the admin chooses its owner and mode) and,
 * unless force, path does not exist.  0, or -1 with a reason in err.
 */
int keygen_check_path(const char *path, bool force, char *err, size_t errlen);

/*
 * Stores key at path as PKCS#8 PEM, mode 0600 whatever the umask, owned by
 * uid:gid when those are not (uid_t)-1 / (gid_t)-1.  The key is written to
 * a new temporary file in path's directory, fsynced, then put in place in
 * one step and the directory fsynced: path never holds a partial key.
 * Without force an existing path is never replaced (checked atomically, at
 * the moment the key is put in place).  0, or -1 with a reason in err, and
 * then path is as it was and no temporary file is left.
 */
int keygen_write_key(EVP_PKEY *key, const char *path, bool force, uid_t uid, gid_t gid,
    char *err, size_t errlen);

/*
 * The DKIM key record's value for key's public half (RFC 6376 3.6.1):
 * "v=DKIM1; k=rsa; p=<base64 of the DER SubjectPublicKeyInfo>" or, for
 * Ed25519 (RFC 8463), "v=DKIM1; k=ed25519; p=<base64 of the 32-byte
 * public key>".  The caller frees it.  NULL with a reason in err.
 */
char *keygen_dkim_value(EVP_PKEY *key, char *err, size_t errlen);

/*
 * The TXT record for value in zone-file form:
 *	OWNER IN TXT ( "first 255 bytes"
 *		"next 255 bytes" )
 * value cut into character-strings of at most KEYGEN_TXT_MAX bytes, which
 * DNS joins back into value.  value must be printable ASCII without '"'
 * or '\' (a DKIM key record always is); NULL otherwise.  The caller frees
 * the result, which ends with a newline.
 */
char *keygen_txt_record(const char *owner, const char *value);

#endif
