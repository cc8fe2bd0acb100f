/*
 * dkim — DKIM signing with libopendkim (RFC 6376; Ed25519 per RFC 8463).
 *
 * What this file promises (see dkim.h for the contract):
 *  - every key file is read and parsed once per configuration snapshot,
 *    with OpenSSL, so that a bad key, a key of the wrong type or a short
 *    RSA key stops start-up/reload with "FILE:LINE: message" instead of
 *    failing on the first message;
 *  - a signer holds one libopendkim signing handle per `dkim` block and
 *    feeds each the same input, so the signatures come out in block order;
 *  - dkim_signer_finish() appends either every signature or nothing.
 *
 * Facts about the installed libopendkim (2.11.0~beta2, Debian 12) that this
 * code relies on, checked by signing and verifying with python3-dkim:
 *  - dkim_header() wants the field without its final CRLF.  With relaxed
 *    header canonicalization a trailing CRLF happens to give the same
 *    signature, with simple canonicalization it breaks it; we strip it.
 *  - the library takes the key as a NUL-terminated string and parses it
 *    again for every message: PEM_read_bio_PrivateKey() if it starts with
 *    "-----", else d2i_PrivateKey_bio().  With OpenSSL 3 that parse costs
 *    more than the signature itself (measured here: PEM 452 us, DER 338 us,
 *    an RSA-2048 signature 304 us) and takes OpenSSL's global locks, so
 *    the worker threads mostly waited on each other.  So the key is parsed
 *    once, at load, and the library is handed a token ("relayd-key:N")
 *    instead; relayd's own d2i_PrivateKey_bio() (below), which the dynamic
 *    linker binds the library's call to, returns the parsed key for a
 *    token (a new reference) and passes anything else on to OpenSSL's.  A
 *    token is no valid key encoding: were the interposition ever lost,
 *    signing would fail (451 4.7.0), never go on with a wrong key.
 *  - t= is set by default (DKIM_OPTS_FIXEDTIME fixes it for tests); no x=,
 *    and no l= when dkim_sign() gets a length of -1.
 *  - the headers to sign (and to oversign) are options of the DKIM_LIB,
 *    not of a handle, so they are set once, at load.
 *  - the DKIM_LIB may be shared between threads; each DKIM handle is used
 *    by one thread at a time (a signer is, by contract).
 *  - dkim_free() of an Ed25519 handle leaks the private key the library
 *    parsed for it (an EVP_PKEY, about 1.2 KB) and its 64-byte signature
 *    buffer: it releases the insides of its key structure for RSA only
 *    (fixed upstream in OpenDKIM PR #321, after 2.11.0~beta2).  A daemon
 *    cannot leak per message, so each handle gets a memory closure that
 *    catches that structure as dkim_free() releases it and frees what it
 *    still holds; see dkim_mem_free().
 *  - when RSA_sign() fails, dkim_eom() frees the handle's RSA reference and
 *    key BIO without clearing the pointers, and dkim_free() frees them
 *    again; see dkim_repair_failed_rsa().  When EVP_DigestSign() fails
 *    (Ed25519), it leaks its EVP_MD_CTX, about 1.3 KB a failure, which
 *    nothing outside the library can reach.
 *
 * The keys object must outlive every signer made from it: the handles
 * point into its DKIM_LIB and key text.
 */
#include "acconfig.h"	/* _GNU_SOURCE for memmem() */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <opendkim/dkim.h>

#include "dkim.h"
#include "msghdr.h"

/* A key file is a few kilobytes; anything larger is not one. */
#define DKIM_KEY_MAX		(64 * 1024)
#define DKIM_RSA_MIN_BITS	1024
#define DKIM_SIG_PREFIX		"DKIM-Signature: "
#define DKIM_LINE_MAX		998	/* RFC 5322 2.1.1, without the CRLF */

/* The fields we sign when present (dkim.h); From is also oversigned. */
static const char *const dkim_sign_fields[] = {
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
	NULL
};
static const char *const dkim_oversign_fields[] = { "From", NULL };

/* One key file, read and parsed once; the library gets the token. */
struct dkim_key {
	char		*path;
	EVP_PKEY	*pkey;
	char		 token[32];	/* "relayd-key:N", registered while loaded */
	int		 type;		/* EVP_PKEY_RSA or EVP_PKEY_ED25519 */
};

/* One dkim block of one domain section. */
struct dkim_entry {
	char			*domain;	/* the section's name */
	char			*selector;
	enum cfg_dkim_alg	 algorithm;
	size_t			 key;		/* index into keys */
};

struct dkim_keys {
	DKIM_LIB		*lib;
	struct dkim_key		*keys;
	size_t			 nkeys;
	struct dkim_entry	*entries;
	size_t			 nentries;
};

/*
 * libopendkim's private struct dkim_crypto (OpenSSL build), as declared in
 * its dkim-types.h; only read to free what the library forgets (above).
 */
struct dkim_lib_crypto {
	unsigned char	 crypto_pad;
	int		 crypto_keysize;
	size_t		 crypto_inlen;
	size_t		 crypto_outlen;
	EVP_PKEY	*crypto_pkey;
	void		*crypto_key;
	BIO		*crypto_keydata;
	unsigned char	*crypto_in;
	unsigned char	*crypto_out;
};

#define DKIM_ED25519_SIGLEN	64

/* The memory closure of one DKIM handle (see dkim_mem_free()). */
struct dkim_mem {
	bool	  ed25519;	/* an Ed25519 handle */
	bool	  freeing;	/* inside dkim_free() */
	void	**blk;		/* live blocks of the sizes that matter */
	size_t	  nblk;
	size_t	  capblk;
};

struct dkim_signer {
	struct dkim_keys	*keys;
	DKIM			**h;		/* one per dkim block, in block order */
	struct dkim_mem		*mem;		/* the memory closure of each block's handle */
	size_t			 nmem;
	const struct dkim_entry	**ent;		/* the block of each handle */
	size_t			 nh;
	unsigned char		*jobid;		/* lives as long as the handles, which may point to it */
	char			*selectors;	/* "s1,s2" */
	char			*err;		/* first failure, NULL if none */
};

/* ---- the memory closure: the Ed25519 leak, the failed-RSA double free - */

static bool
dkim_mem_untrack(struct dkim_mem *m, const void *p)
{
	for (size_t i = m->nblk; i-- > 0; )
		if (m->blk[i] == p) {
			m->blk[i] = m->blk[--m->nblk];
			return true;
		}
	return false;
}

static void *
dkim_mem_alloc(void *closure, size_t n)
{
	struct dkim_mem *m = closure;
	void *p = malloc(n);

	/*
	 * Remember the blocks that may be the key structure or its signature
	 * buffer; a handle has few blocks of these sizes.
	 */
	if (p != NULL && m != NULL &&
	    (n == sizeof(struct dkim_lib_crypto) || n == DKIM_ED25519_SIGLEN)) {
		if (m->nblk == m->capblk) {
			m->capblk = m->capblk ? m->capblk * 2 : 8;
			m->blk = xrealloc(m->blk, m->capblk * sizeof(*m->blk));
		}
		m->blk[m->nblk++] = p;
	}
	return p;
}

/*
 * While dkim_free() runs on an Ed25519 handle, a block that it releases and
 * that looks in every respect like the handle's key structure (the size of
 * one, an Ed25519 key size, no RSA key, a signature buffer that is a live
 * block of this handle) has its EVP_PKEY and signature buffer freed here.
 * A library that frees them itself sets the pointers to NULL first (its
 * CLOBBER macros do), so this then does nothing; a block that does not
 * match is left alone, at worst leaking as the library would.
 */
static void
dkim_mem_free(void *closure, void *p)
{
	struct dkim_mem *m = closure;
	struct dkim_lib_crypto *c = p;

	if (p != NULL && m != NULL && dkim_mem_untrack(m, p) &&
	    m->ed25519 && m->freeing && c->crypto_keysize == 8 * DKIM_ED25519_SIGLEN &&
	    c->crypto_outlen == DKIM_ED25519_SIGLEN && c->crypto_key == NULL &&
	    c->crypto_pkey != NULL && c->crypto_out != NULL &&
	    dkim_mem_untrack(m, c->crypto_out)) {
		free(c->crypto_out);
		c->crypto_out = NULL;
		EVP_PKEY_free(c->crypto_pkey);
		c->crypto_pkey = NULL;
	}
	free(p);
}

/* ---- parsed keys for the library (see the top of this file) ---------- */

/* Registered tokens and their keys (struct dkim_key is copied around
 * while loading, so the registry keeps its own copy of both). */
struct dkim_reg {
	char		 token[32];
	EVP_PKEY	*pkey;		/* not a reference of its own */
};

static pthread_mutex_t dkim_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dkim_reg *dkim_reg;	/* guarded by dkim_reg_mu */
static size_t dkim_nreg;
static uint64_t dkim_token_seq;

static void
dkim_key_register(struct dkim_key *key)
{
	pthread_mutex_lock(&dkim_reg_mu);
	snprintf(key->token, sizeof(key->token), "relayd-key:%llu",
	    (unsigned long long)++dkim_token_seq);
	dkim_reg = xrealloc(dkim_reg, (dkim_nreg + 1) * sizeof(*dkim_reg));
	memcpy(dkim_reg[dkim_nreg].token, key->token, sizeof(key->token));
	dkim_reg[dkim_nreg].pkey = key->pkey;
	dkim_nreg++;
	pthread_mutex_unlock(&dkim_reg_mu);
}

static void
dkim_key_unregister(struct dkim_key *key)
{
	pthread_mutex_lock(&dkim_reg_mu);
	for (size_t i = 0; i < dkim_nreg; i++)
		if (strcmp(dkim_reg[i].token, key->token) == 0) {
			dkim_reg[i] = dkim_reg[--dkim_nreg];
			break;
		}
	if (dkim_nreg == 0) {
		free(dkim_reg);
		dkim_reg = NULL;
	}
	pthread_mutex_unlock(&dkim_reg_mu);
}

typedef EVP_PKEY *(*d2i_bio_fn)(BIO *, EVP_PKEY **);
static d2i_bio_fn dkim_real_d2i;
static pthread_once_t dkim_real_once = PTHREAD_ONCE_INIT;

static void
dkim_find_real_d2i(void)
{
	dkim_real_d2i = (d2i_bio_fn)dlsym(RTLD_NEXT, "d2i_PrivateKey_bio");
}

/*
 * Interposes OpenSSL's d2i_PrivateKey_bio() for the whole process: a
 * registered token yields its parsed key (one more reference, which the
 * caller frees as it would a freshly parsed key); anything else is
 * OpenSSL's business.
 */
EVP_PKEY *
d2i_PrivateKey_bio(BIO *bp, EVP_PKEY **a)
{
	char *data = NULL;
	long n = bp ? BIO_get_mem_data(bp, &data) : 0;
	EVP_PKEY *pk = NULL;

	if (n > 11 && n < 32 && memcmp(data, "relayd-key:", 11) == 0) {
		pthread_mutex_lock(&dkim_reg_mu);
		for (size_t i = 0; i < dkim_nreg; i++)
			if (strlen(dkim_reg[i].token) == (size_t)n &&
			    memcmp(dkim_reg[i].token, data, (size_t)n) == 0 &&
			    EVP_PKEY_up_ref(dkim_reg[i].pkey)) {
				pk = dkim_reg[i].pkey;
				break;
			}
		pthread_mutex_unlock(&dkim_reg_mu);
		if (pk != NULL) {
			if (a != NULL) {
				EVP_PKEY_free(*a);
				*a = pk;
			}
			return pk;
		}
	}
	pthread_once(&dkim_real_once, dkim_find_real_d2i);
	return dkim_real_d2i ? dkim_real_d2i(bp, a) : NULL;
}

/* ---- the header fields a signature needs (dkim.h) -------------------- */

bool
dkim_field_signed(const char *name, size_t n)
{
	for (size_t i = 0; dkim_sign_fields[i] != NULL; i++)
		if (msghdr_is(name, n, dkim_sign_fields[i]))
			return true;
	return false;
}

void
dkim_hdrs_init(struct dkim_hdrs *h)
{
	memset(h, 0, sizeof(*h));
	buf_init(&h->text);
}

void
dkim_hdrs_free(struct dkim_hdrs *h)
{
	buf_free(&h->text);
	free(h->len);
	h->len = NULL;
	h->n = h->cap = 0;
	h->keeping = false;
}

/* The field kept last is complete. */
static void
dkim_hdrs_kept(struct dkim_hdrs *h)
{
	const char *f = h->text.p + h->start;
	size_t n = h->text.len - h->start;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 16;
		h->len = xrealloc(h->len, h->cap * sizeof(*h->len));
	}
	h->len[h->n++] = n;
	if (h->cur_first_from &&
	    !msghdr_addr_domain(f, n, h->from_domain, sizeof(h->from_domain)))
		h->from_domain[0] = '\0';
}

void
dkim_hdrs_add(struct dkim_hdrs *h, const char *p, size_t n, unsigned flags)
{
	if (flags & MSGHDR_START) {
		h->cur_first_from = msghdr_is(p, n, "From") && h->nfrom++ == 0;
		h->has_date |= msghdr_is(p, n, "Date");
		h->has_msgid |= msghdr_is(p, n, "Message-ID");
		h->keeping = dkim_field_signed(p, n);
		h->start = h->text.len;
		if (h->keeping) {
			/* its name, for the log if it does not fit */
			size_t k = n > 0 ? n - 1 : 0;

			while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
				k--;
			snprintf(h->cur, sizeof(h->cur), "%.*s", (int)k, p);
		}
	}
	if (h->keeping && n > 0) {
		if (h->text.len + n > DKIM_HDRS_MAX) {
			/* this one goes unkept (the ones after it may fit) */
			if (!h->overflow)
				memcpy(h->too_long, h->cur, sizeof(h->too_long));
			h->overflow = true;
			h->keeping = false;
			h->text.len = h->start;
			if (h->cur_first_from)
				h->from_lost = true;
		} else {
			buf_add(&h->text, p, n);
		}
	}
	if ((flags & MSGHDR_END) && h->keeping) {
		dkim_hdrs_kept(h);
		h->keeping = false;
	}
}

/* ---- keys ------------------------------------------------------------ */

static void
dkim_key_clear(struct dkim_key *key)
{
	if (key->pkey != NULL) {
		dkim_key_unregister(key);
		EVP_PKEY_free(key->pkey);
	}
	free(key->path);
	memset(key, 0, sizeof(*key));
}

static const char *
dkim_alg_name(enum cfg_dkim_alg alg)
{
	return alg == CFG_DKIM_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

/* Reads a whole (small) file; returns its bytes NUL-terminated, or NULL. */
static unsigned char *
dkim_read_file(const char *path, size_t *lenp, char *why, size_t whylen)
{
	struct stat st;
	unsigned char *p;
	size_t len = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(why, whylen, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size > DKIM_KEY_MAX) {
		snprintf(why, whylen, "not a regular file of at most %d bytes", DKIM_KEY_MAX);
		close(fd);
		return NULL;
	}
	p = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		r = read(fd, p + len, (size_t)st.st_size - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(why, whylen, "cannot read: %s",
			    r == 0 ? "file shrank while reading" : strerror(errno));
			OPENSSL_cleanse(p, len);
			free(p);
			close(fd);
			return NULL;
		}
		len += (size_t)r;
	}
	close(fd);
	p[len] = '\0';
	*lenp = len;
	return p;
}

/*
 * Parses the file's text as a PEM private key, keeps it and registers its
 * token.  Returns 0, or -1 with the reason in why.
 */
static int
dkim_key_parse(struct dkim_key *key, const unsigned char *text, size_t len,
    char *why, size_t whylen)
{
	EVP_PKEY *pk = NULL;
	BIO *in = NULL;
	int rc = -1;

	if ((in = BIO_new_mem_buf(text, (int)len)) == NULL) {
		snprintf(why, whylen, "out of memory in OpenSSL");
		goto done;
	}
	pk = PEM_read_bio_PrivateKey(in, NULL, no_passphrase, NULL);
	if (pk == NULL) {
		if (memmem(text, len, "ENCRYPTED", 9) != NULL)
			snprintf(why, whylen, "an encrypted private key "
			    "(write it unencrypted: openssl pkey -in FILE -out NEW)");
		else
			snprintf(why, whylen, "not a private key (PEM PKCS#8 or PKCS#1 expected)");
		goto done;
	}
	key->type = EVP_PKEY_get_base_id(pk);
	if (key->type == EVP_PKEY_RSA && EVP_PKEY_get_bits(pk) < DKIM_RSA_MIN_BITS) {
		snprintf(why, whylen, "RSA key of %d bits is too short "
		    "(at least %d; 2048 recommended)", EVP_PKEY_get_bits(pk), DKIM_RSA_MIN_BITS);
		goto done;
	}
	if (key->type != EVP_PKEY_RSA && key->type != EVP_PKEY_ED25519) {
		const char *tn = EVP_PKEY_get0_type_name(pk);

		snprintf(why, whylen, "a key of type %s (RSA or Ed25519 expected)",
		    tn != NULL ? tn : "unknown");
		goto done;
	}
	key->pkey = pk;
	pk = NULL;
	dkim_key_register(key);
	rc = 0;
done:
	/* Leave nothing on this thread's error queue for someone else to find. */
	ERR_clear_error();
	EVP_PKEY_free(pk);
	BIO_free(in);
	return rc;
}

static void
dkim_load_error(const struct config *cfg, FILE *errout, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
dkim_load_error(const struct config *cfg, FILE *errout, int line, const char *fmt, ...)
{
	va_list ap;

	if (errout == NULL)
		return;
	fprintf(errout, "%s:%d: ", cfg->path, line);
	va_start(ap, fmt);
	vfprintf(errout, fmt, ap);
	va_end(ap);
	fputc('\n', errout);
}

/* Reads and parses one key file; returns 0, or -1 (reported). */
static int
dkim_key_load(struct dkim_key *key, const struct config *cfg, const struct cfg_dkim *b,
    FILE *errout)
{
	unsigned char *text;
	size_t len = 0;
	char why[256];
	int rc;

	memset(key, 0, sizeof(*key));
	if ((text = dkim_read_file(b->key_file, &len, why, sizeof(why))) == NULL) {
		dkim_load_error(cfg, errout, b->line, "key_file %s: %s", b->key_file, why);
		return -1;
	}
	rc = dkim_key_parse(key, text, len, why, sizeof(why));
	OPENSSL_cleanse(text, len);
	free(text);
	if (rc == -1) {
		dkim_load_error(cfg, errout, b->line, "key_file %s: %s", b->key_file, why);
		dkim_key_clear(key);
		return -1;
	}
	key->path = xstrdup(b->key_file);
	return 0;
}

/*
 * Returns the index of block b's key, loading the file unless another block
 * named the same one, and checks its type against b's algorithm; -1
 * (reported) if it cannot be used.
 */
static long
dkim_keys_get(struct dkim_keys *k, const struct config *cfg, const struct cfg_dkim *b,
    FILE *errout)
{
	const struct dkim_key *key;
	size_t i;
	int want;

	for (i = 0; i < k->nkeys; i++)
		if (strcmp(k->keys[i].path, b->key_file) == 0)
			break;
	if (i == k->nkeys) {
		struct dkim_key nk;

		if (dkim_key_load(&nk, cfg, b, errout) == -1)
			return -1;
		k->keys = xrealloc(k->keys, (k->nkeys + 1) * sizeof(*k->keys));
		k->keys[k->nkeys++] = nk;
	}
	key = &k->keys[i];
	want = b->algorithm == CFG_DKIM_ED25519_SHA256 ? EVP_PKEY_ED25519 : EVP_PKEY_RSA;
	if (key->type != want) {
		dkim_load_error(cfg, errout, b->line, "key_file %s: %s, but algorithm is %s",
		    b->key_file, key->type == EVP_PKEY_ED25519 ? "an Ed25519 key" : "an RSA key",
		    dkim_alg_name(b->algorithm));
		return -1;
	}
	return (long)i;
}

/* Library-wide options: the fields to sign and to oversign. */
static int
dkim_lib_setup(DKIM_LIB *lib)
{
	/* The library takes non-const pointers but only reads the lists. */
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
	    (void *)(uintptr_t)dkim_sign_fields, sizeof(char **)) != DKIM_STAT_OK)
		return -1;
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
	    (void *)(uintptr_t)dkim_oversign_fields, sizeof(char **)) != DKIM_STAT_OK)
		return -1;
	return 0;
}

struct dkim_keys *
dkim_keys_load(const struct config *cfg, FILE *errout)
{
	struct dkim_keys *k = xcalloc(1, sizeof(*k));
	bool failed = false, any = false, ed = false;
	int firstline = 0, edline = 0;
	long idx;

	if ((k->lib = dkim_init(dkim_mem_alloc, dkim_mem_free)) == NULL || dkim_lib_setup(k->lib) == -1) {
		dkim_load_error(cfg, errout, cfg->ndomains > 0 ? cfg->domains[0].line : 1,
		    "cannot initialize libopendkim");
		dkim_keys_free(k);
		return NULL;
	}
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const struct cfg_domain *d = &cfg->domains[i];

		for (size_t j = 0; j < d->ndkim; j++) {
			const struct cfg_dkim *b = &d->dkim[j];

			if (!any)
				firstline = b->line;
			any = true;
			if (b->algorithm == CFG_DKIM_ED25519_SHA256 && !ed) {
				ed = true;
				edline = b->line;
			}
			if ((idx = dkim_keys_get(k, cfg, b, errout)) == -1) {
				failed = true;
				continue;
			}
			k->entries = xrealloc(k->entries,
			    (k->nentries + 1) * sizeof(*k->entries));
			k->entries[k->nentries].domain = xstrdup(d->name);
			k->entries[k->nentries].selector = xstrdup(b->selector);
			k->entries[k->nentries].algorithm = b->algorithm;
			k->entries[k->nentries].key = (size_t)idx;
			k->nentries++;
		}
	}
	if (any && !dkim_libfeature(k->lib, DKIM_FEATURE_SHA256)) {
		dkim_load_error(cfg, errout, firstline,
		    "the installed libopendkim cannot sign with SHA-256");
		failed = true;
	}
	if (ed && !dkim_libfeature(k->lib, DKIM_FEATURE_ED25519)) {
		dkim_load_error(cfg, errout, edline,
		    "the installed libopendkim cannot sign with Ed25519 (ed25519-sha256)");
		failed = true;
	}
	if (failed) {
		dkim_keys_free(k);
		return NULL;
	}
	return k;
}

void
dkim_keys_free(struct dkim_keys *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->nkeys; i++)
		dkim_key_clear(&k->keys[i]);
	free(k->keys);
	for (size_t i = 0; i < k->nentries; i++) {
		free(k->entries[i].domain);
		free(k->entries[i].selector);
	}
	free(k->entries);
	if (k->lib != NULL)
		dkim_close(k->lib);
	free(k);
}

void
dkim_keys_set_time(struct dkim_keys *k, uint64_t t)
{
	(void)dkim_options(k->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof(t));
}

void
dkim_signing_domain(const struct cfg_domain *d, const char *from_domain, char *out,
    size_t outlen)
{
	const char *name = d->name;

	if (outlen == 0)
		return;
	if (strcmp(name, "*") == 0)
		name = from_domain != NULL ? from_domain : "";
	else if (strncmp(name, "*.", 2) == 0)
		name += 2;
	snprintf(out, outlen, "%s", name);
}

static const struct dkim_entry *
dkim_keys_find(const struct dkim_keys *k, const char *domain, const char *selector)
{
	for (size_t i = 0; i < k->nentries; i++)
		if (strcmp(k->entries[i].domain, domain) == 0 &&
		    strcmp(k->entries[i].selector, selector) == 0)
			return &k->entries[i];
	return NULL;
}

struct dkim_signer *
dkim_signer_new(struct dkim_keys *k, const struct cfg_domain *d, const char *from_domain,
    const char *jobid, char *err, size_t errlen)
{
	struct dkim_signer *s;
	struct buf sel;
	char sdomain[256];
	DKIM_STAT st;

	if (errlen > 0)
		err[0] = '\0';
	/* No dkim blocks is not a failure: NULL with an empty err. */
	if (d == NULL || d->ndkim == 0)
		return NULL;
	dkim_signing_domain(d, from_domain, sdomain, sizeof(sdomain));
	if (sdomain[0] == '\0') {
		snprintf(err, errlen, "DKIM: no From: domain to sign as (domain \"%s\")", d->name);
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->keys = k;
	s->jobid = (unsigned char *)xstrdup(jobid != NULL ? jobid : "");
	s->h = xcalloc(d->ndkim, sizeof(*s->h));
	s->mem = xcalloc(d->ndkim, sizeof(*s->mem));
	s->nmem = d->ndkim;
	s->ent = xcalloc(d->ndkim, sizeof(*s->ent));
	buf_init(&sel);
	for (size_t i = 0; i < d->ndkim; i++) {
		const struct cfg_dkim *b = &d->dkim[i];
		const struct dkim_entry *e = dkim_keys_find(k, d->name, b->selector);

		if (e == NULL) {
			snprintf(err, errlen, "DKIM: no key loaded for selector %s of domain %s",
			    b->selector, d->name);
			goto fail;
		}
		s->mem[i].ed25519 = e->algorithm == CFG_DKIM_ED25519_SHA256;
		s->h[i] = dkim_sign(k->lib, s->jobid, &s->mem[i],
		    (dkim_sigkey_t)k->keys[e->key].token,
		    (const unsigned char *)b->selector, (const unsigned char *)sdomain,
		    DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
		    e->algorithm == CFG_DKIM_ED25519_SHA256 ?
		    DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &st);
		if (s->h[i] == NULL) {
			snprintf(err, errlen, "DKIM: cannot start signing with selector %s: %s",
			    b->selector, dkim_getresultstr(st));
			goto fail;
		}
		s->ent[i] = e;
		s->nh = i + 1;
		if (i > 0)
			buf_addstr(&sel, ",");
		buf_addstr(&sel, b->selector);
	}
	s->selectors = xstrdup(sel.p != NULL ? sel.p : "");
	buf_free(&sel);
	return s;
fail:
	buf_free(&sel);
	dkim_signer_free(s);
	return NULL;
}

/* Keeps the first failure, for dkim_signer_finish(). */
static int
dkim_signer_fail(struct dkim_signer *s, size_t i, const char *what, DKIM_STAT st)
{
	const char *detail = dkim_geterror(s->h[i]);

	if (s->err == NULL)
		s->err = xasprintf("DKIM %s (selector %s): %s", what, s->ent[i]->selector,
		    detail != NULL && *detail != '\0' ? detail : dkim_getresultstr(st));
	return -1;
}

int
dkim_signer_header(struct dkim_signer *s, const char *field, size_t n)
{
	DKIM_STAT st;

	if (s->err != NULL)
		return -1;
	/* The library wants the field without its line end (see above). */
	if (n > 0 && field[n - 1] == '\n')
		n--;
	if (n > 0 && field[n - 1] == '\r')
		n--;
	if (n == 0) {
		/* The library asserts on an empty field; refuse it here. */
		s->err = xstrdup("DKIM header: an empty header field");
		return -1;
	}
	for (size_t i = 0; i < s->nh; i++) {
		/* dkim_header() copies the field and does not write to it. */
		st = dkim_header(s->h[i], (u_char *)(uintptr_t)field, n);
		if (st != DKIM_STAT_OK)
			return dkim_signer_fail(s, i, "header", st);
	}
	return 0;
}

int
dkim_signer_eoh(struct dkim_signer *s)
{
	DKIM_STAT st;

	if (s->err != NULL)
		return -1;
	for (size_t i = 0; i < s->nh; i++)
		if ((st = dkim_eoh(s->h[i])) != DKIM_STAT_OK)
			return dkim_signer_fail(s, i, "end of header", st);
	return 0;
}

int
dkim_signer_hdrs(struct dkim_signer *s, const struct dkim_hdrs *h)
{
	const char *f = h->text.p;

	for (size_t i = 0; i < h->n; i++) {
		if (dkim_signer_header(s, f, h->len[i]) == -1)
			return -1;
		f += h->len[i];
	}
	return dkim_signer_eoh(s);
}

int
dkim_signer_body(struct dkim_signer *s, const char *p, size_t n)
{
	DKIM_STAT st;

	if (s->err != NULL)
		return -1;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < s->nh; i++) {
		/* dkim_body() only reads the chunk. */
		st = dkim_body(s->h[i], (u_char *)(uintptr_t)p, n);
		if (st != DKIM_STAT_OK)
			return dkim_signer_fail(s, i, "body", st);
	}
	return 0;
}

/* CRLF line ends only, and no line over 998 octets. */
static bool
dkim_field_ok(const char *p, size_t n)
{
	size_t linelen = 0;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r') {
			if (i + 1 >= n || p[i + 1] != '\n')
				return false;
			i++;
			linelen = 0;
		} else if (p[i] == '\n' || ++linelen > DKIM_LINE_MAX) {
			return false;
		}
	}
	return linelen == 0;
}

/*
 * After a failed RSA_sign(), libopendkim 2.11.0 frees the handle's RSA
 * reference and key BIO but leaves the pointers set, and dkim_free()
 * frees both again: a double free, and one reference too many dropped
 * from the RSA key that every handle shares (the next message's key then
 * reads as "0 bits").  Before dkim_free(), the key structure of handle i
 * is found among its blocks (the size of one, our key as its EVP_PKEY,
 * the key's size) and the two pointers cleared, as a fixed library does.
 * Only for that library version and that error: elsewhere nothing here
 * runs, at worst leaving a leak rather than a double free.
 */
static void
dkim_repair_failed_rsa(struct dkim_signer *s, size_t i)
{
	const char *e = dkim_geterror(s->h[i]);
	EVP_PKEY *pk = s->keys->keys[s->ent[i]->key].pkey;
	struct dkim_mem *m = &s->mem[i];

	if (m->ed25519 || dkim_libversion() > 0x020b0000 || e == NULL ||
	    strncmp(e, "signature generation failed", 27) != 0)
		return;
	for (size_t k = 0; k < m->nblk; k++) {
		struct dkim_lib_crypto *c = m->blk[k];

		if (c->crypto_pkey == pk && c->crypto_keysize == 8 * EVP_PKEY_get_size(pk) &&
		    c->crypto_outlen == (size_t)EVP_PKEY_get_size(pk)) {
			c->crypto_key = NULL;
			c->crypto_keydata = NULL;
		}
	}
}

int
dkim_signer_finish(struct dkim_signer *s, struct buf *out, char *err, size_t errlen)
{
	struct buf tmp;
	unsigned char *sig;
	size_t siglen, start;
	DKIM_STAT st;

	if (s->err != NULL) {
		snprintf(err, errlen, "%s", s->err);
		return -1;
	}
	buf_init(&tmp);
	for (size_t i = 0; i < s->nh; i++) {
		if ((st = dkim_eom(s->h[i], NULL)) != DKIM_STAT_OK) {
			dkim_signer_fail(s, i, "signing", st);
			dkim_repair_failed_rsa(s, i);
			goto fail;
		}
		st = dkim_getsighdr_d(s->h[i], strlen(DKIM_SIG_PREFIX), &sig, &siglen);
		if (st != DKIM_STAT_OK) {
			dkim_signer_fail(s, i, "signature field", st);
			goto fail;
		}
		start = tmp.len;
		buf_addstr(&tmp, DKIM_SIG_PREFIX);
		buf_add(&tmp, sig, siglen);
		buf_addstr(&tmp, "\r\n");
		if (!dkim_field_ok(tmp.p + start, tmp.len - start)) {
			if (s->err == NULL)
				s->err = xstrdup("DKIM: the library made a DKIM-Signature field "
				    "with a bare CR or LF or a line over 998 octets");
			goto fail;
		}
	}
	buf_add(out, tmp.p, tmp.len);
	buf_free(&tmp);
	return 0;
fail:
	buf_free(&tmp);
	snprintf(err, errlen, "%s", s->err);
	return -1;
}

const char *
dkim_signer_selectors(const struct dkim_signer *s)
{
	return s->selectors;
}

void
dkim_signer_free(struct dkim_signer *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nh; i++) {
		s->mem[i].freeing = true;
		dkim_free(s->h[i]);
	}
	for (size_t i = 0; i < s->nmem; i++)
		free(s->mem[i].blk);
	free(s->mem);
	free(s->h);
	free(s->ent);
	free(s->jobid);
	free(s->selectors);
	free(s->err);
	free(s);
}
