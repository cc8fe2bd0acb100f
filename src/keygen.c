/*
 * keygen — DKIM key pairs for `relayctl dkim-keygen`.
 *
 * Promises: a private key reaches its final name only complete, fsynced and
 * with mode 0600 from the first byte it holds (never readable by others,
 * not even for a moment, whatever the umask); an existing key is never
 * replaced without force, even if another process creates it meanwhile;
 * the DNS record printed is exactly the public half of the key written.
 */
#include "acconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keygen.h"
#include "util.h"

static void keygen_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
keygen_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* OpenSSL's reason for the last failure, its queue left empty. */
static void
keygen_err_ssl(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[256];

	if (e == 0)
		snprintf(reason, sizeof(reason), "unknown error");
	else
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	keygen_err(err, errlen, "%s: %s", what, reason);
}

EVP_PKEY *
keygen_generate(enum keygen_alg alg, int bits, char *err, size_t errlen)
{
	EVP_PKEY *key;

	switch (alg) {
	case KEYGEN_RSA:
		if (bits < KEYGEN_RSA_MIN_BITS || bits > KEYGEN_RSA_MAX_BITS) {
			keygen_err(err, errlen, "RSA keys must have %d to %d bits, not %d",
			    KEYGEN_RSA_MIN_BITS, KEYGEN_RSA_MAX_BITS, bits);
			return NULL;
		}
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
		break;
	case KEYGEN_ED25519:
		if (bits != 0) {
			keygen_err(err, errlen, "Ed25519 keys have a fixed size: no bits");
			return NULL;
		}
		key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	default:
		keygen_err(err, errlen, "unknown key algorithm");
		return NULL;
	}
	if (key == NULL)
		keygen_err_ssl(err, errlen, "key generation failed");
	return key;
}

/* The directory part of path ("." for a bare name); the caller frees it. */
static char *
keygen_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	while (slash > path && slash[-1] == '/')
		slash--;
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

int
keygen_check_path(const char *path, bool force, char *err, size_t errlen)
{
	struct stat st;
	char *dir;
	int rc = -1;

	if (*path == '\0' || path[strlen(path) - 1] == '/') {
		keygen_err(err, errlen, "key file \"%s\" is not a file name", path);
		return -1;
	}
	dir = keygen_dirname(path);
	if (stat(dir, &st) == -1) {
		if (errno == ENOENT)
			keygen_err(err, errlen, "directory %s does not exist; create it first "
			    "(e.g. mkdir -m 0700 %s) and let relayd's user own it", dir, dir);
		else
			keygen_err(err, errlen, "directory %s: %s", dir, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		keygen_err(err, errlen, "%s is not a directory", dir);
		goto out;
	}
	if (lstat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			keygen_err(err, errlen, "%s is a directory", path);
		else if (!force)
			keygen_err(err, errlen, "%s exists; to replace it use --force "
			    "(the DNS record of the old key then no longer matches)", path);
		else
			rc = 0;
		goto out;
	}
	if (errno != ENOENT) {
		keygen_err(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(dir);
	return rc;
}

/* The key as PKCS#8 PEM into a new, private temporary file; returns its fd. */
static int
keygen_write_temp(EVP_PKEY *key, char *tmp, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	BIO *bio;
	char *pem;
	long len;
	int fd, rc;

	/* mkostemp uses O_EXCL and mode 0600 (less if the umask says so). */
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		keygen_err(err, errlen, "cannot create a file in the key's directory (%s): %s",
		    tmp, strerror(errno));
		return -1;
	}
	/* Before any byte of the key is in it: exactly 0600, and its owner. */
	if (fchmod(fd, S_IRUSR | S_IWUSR) == -1) {
		keygen_err(err, errlen, "chmod 600 %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) == -1) {
		keygen_err(err, errlen, "chown %s: %s", tmp, strerror(errno));
		goto fail;
	}

	if ((bio = BIO_new(BIO_s_mem())) == NULL) {
		keygen_err_ssl(err, errlen, "BIO_new");
		goto fail;
	}
	/* No cipher: relayd must read it unattended. */
	if (!PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		keygen_err_ssl(err, errlen, "cannot encode the private key");
		BIO_free(bio);
		goto fail;
	}
	len = BIO_get_mem_data(bio, &pem);
	rc = write_full(fd, pem, (size_t)len);
	OPENSSL_cleanse(pem, (size_t)len);
	BIO_free(bio);
	if (rc == -1) {
		keygen_err(err, errlen, "write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (fsync(fd) == -1) {
		keygen_err(err, errlen, "fsync %s: %s", tmp, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	unlink(tmp);
	return -1;
}

/*
 * Gives tmp the name path.  Without force, link() is the atomic "create
 * only if absent"; a file system without hard links gets a checked rename
 * (racy, but only against another admin doing the same at the same time).
 */
static int
keygen_install(const char *tmp, const char *path, bool force, char *err, size_t errlen)
{
	struct stat st;

	if (force) {
		if (rename(tmp, path) == -1) {
			keygen_err(err, errlen, "rename %s to %s: %s", tmp, path, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (link(tmp, path) == 0) {
		unlink(tmp);
		return 0;
	}
	if (errno == EEXIST) {
		keygen_err(err, errlen, "%s exists; to replace it use --force "
		    "(the DNS record of the old key then no longer matches)", path);
		return -1;
	}
	if (errno != EPERM && errno != EOPNOTSUPP && errno != EMLINK) {
		keygen_err(err, errlen, "link %s to %s: %s", tmp, path, strerror(errno));
		return -1;
	}
	if (lstat(path, &st) == 0 || errno != ENOENT) {
		keygen_err(err, errlen, "%s exists; to replace it use --force", path);
		return -1;
	}
	if (rename(tmp, path) == -1) {
		keygen_err(err, errlen, "rename %s to %s: %s", tmp, path, strerror(errno));
		return -1;
	}
	return 0;
}

int
keygen_write_key(EVP_PKEY *key, const char *path, bool force, uid_t uid, gid_t gid,
    char *err, size_t errlen)
{
	char *dir = keygen_dirname(path);
	const char *base = strrchr(path, '/');
	char *tmp;
	int fd, dfd, rc = -1;

	base = base != NULL ? base + 1 : path;
	/* Hidden, in the same directory (rename stays on one file system). */
	tmp = xasprintf("%s/.%s.XXXXXX", dir, base);
	if ((fd = keygen_write_temp(key, tmp, uid, gid, err, errlen)) == -1)
		goto out;
	if (close(fd) == -1) {
		keygen_err(err, errlen, "close %s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (keygen_install(tmp, path, force, err, errlen) == -1) {
		unlink(tmp);
		goto out;
	}
	/* The new name must survive a crash as well as the bytes. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(dfd) == -1) {
		keygen_err(err, errlen, "fsync of directory %s: %s", dir, strerror(errno));
		if (dfd != -1)
			close(dfd);
		goto out;
	}
	close(dfd);
	rc = 0;
out:
	free(tmp);
	free(dir);
	return rc;
}

/* Standard base64 (RFC 4648), no line breaks; the caller frees it. */
static char *
keygen_base64(const unsigned char *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

char *
keygen_dkim_value(EVP_PKEY *key, char *err, size_t errlen)
{
	unsigned char raw[64], *der = NULL;
	size_t rawlen = sizeof(raw);
	char *b64, *value;
	int derlen;

	if (EVP_PKEY_is_a(key, "RSA")) {
		/* p= holds the whole SubjectPublicKeyInfo (RFC 6376 3.6.1). */
		if ((derlen = i2d_PUBKEY(key, &der)) <= 0) {
			keygen_err_ssl(err, errlen, "cannot encode the public key");
			return NULL;
		}
		b64 = keygen_base64(der, (size_t)derlen);
		OPENSSL_free(der);
		value = xasprintf("v=DKIM1; k=rsa; p=%s", b64);
	} else if (EVP_PKEY_is_a(key, "ED25519")) {
		/* RFC 8463 3: the bare 32-byte key, not wrapped in ASN.1. */
		if (!EVP_PKEY_get_raw_public_key(key, raw, &rawlen)) {
			keygen_err_ssl(err, errlen, "cannot get the Ed25519 public key");
			return NULL;
		}
		b64 = keygen_base64(raw, rawlen);
		value = xasprintf("v=DKIM1; k=ed25519; p=%s", b64);
	} else {
		keygen_err(err, errlen, "not an RSA or Ed25519 key");
		return NULL;
	}
	free(b64);
	return value;
}

char *
keygen_txt_record(const char *owner, const char *value)
{
	size_t len = strlen(value), off, n;
	struct buf b;

	for (off = 0; off < len; off++)
		if (value[off] < 0x20 || value[off] > 0x7e || value[off] == '"' ||
		    value[off] == '\\')
			return NULL;
	buf_init(&b);
	buf_printf(&b, "%s IN TXT (", owner);
	off = 0;
	do {
		n = len - off < KEYGEN_TXT_MAX ? len - off : KEYGEN_TXT_MAX;
		buf_printf(&b, "%s\"%.*s\"", off == 0 ? " " : "\n\t", (int)n, value + off);
		off += n;
	} while (off < len);
	buf_addstr(&b, " )\n");
	return b.p;
}
