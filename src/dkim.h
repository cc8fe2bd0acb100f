/*
 * dkim — DKIM signing with libopendkim (RFC 6376; Ed25519 per RFC 8463).
 *
 * Keys are loaded once per configuration snapshot (at start and on
 * reload), never per message.  A message is signed while it streams in:
 * header fields and body chunks are fed as they arrive (hashing is cheap
 * and stays on the event loop); dkim_signer_finish() does the private-key
 * operation (about 0.23 ms for RSA-2048 here) and is meant to run on a
 * worker thread.  A signer is used by one thread at a time.
 *
 * Signatures: one per `dkim` block of the domain section (rsa-sha256 or
 * ed25519-sha256), c=relaxed/relaxed, t= set, never l=.  Signed header
 * fields, those present of: From (oversigned: listed once more than it
 * occurs, so none can be added), To, Cc, Subject, Date, Message-ID,
 * Reply-To, In-Reply-To, References, MIME-Version, Content-Type,
 * Content-Transfer-Encoding, List-Unsubscribe, List-Unsubscribe-Post.
 * d= is the domain section's name ("*.example.org" signs as
 * d=example.org; "*" signs as d=<the From: domain>).
 */
#ifndef RELAYD_DKIM_H
#define RELAYD_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "util.h"

struct dkim_keys;

/*
 * Loads every key of every domain section's dkim blocks: the file must be
 * readable, parse as a private key (PEM: PKCS#8 as `openssl genpkey`
 * writes it, or PKCS#1 RSA), and be of the type its `algorithm` names; the
 * library must report DKIM_FEATURE_SHA256 (and DKIM_FEATURE_ED25519 when
 * an Ed25519 key is configured).  Problems are printed to errout as
 * "FILE:LINE: message" (the line of the dkim block); returns NULL then.
 * (config_load() already checked existence and file modes.)
 */
struct dkim_keys *dkim_keys_load(const struct config *cfg, FILE *errout);
void dkim_keys_free(struct dkim_keys *k);

/* Tests only: sign as if the time were t (unix seconds), for golden output. */
void dkim_keys_set_time(struct dkim_keys *k, uint64_t t);

/*
 * ---- the header fields a signature needs ------------------------------
 *
 * Whose keys sign is known only at the end of the header (the From:
 * domain's), so the fields a signature covers must be kept until then;
 * nothing else is.  dkim_hdrs takes a header as msghdr hands it over, in
 * pieces, and keeps exactly the fields of the list above (as libopendkim
 * picks them: by name, case-insensitively, every occurrence), whole and
 * in order; the others pass by unkept, whatever their size.  The kept
 * fields are bounded together by DKIM_HDRS_MAX (Postfix bounds one header
 * field at 100 KB, header_size_limit), so each is too: a field that would
 * go beyond it is not kept (overflow: such a message cannot be signed),
 * later ones that still fit are.  It also notes what the session routes
 * on: the From: fields (counted, kept or not; the first one's domain) and
 * whether a Date: and a Message-ID: came.
 *
 * smtp_server (while receiving) and resign (from the spool) both keep the
 * header this way and feed it with dkim_signer_hdrs(), so they sign alike.
 */
#define DKIM_HDRS_MAX	(100u << 10)

struct dkim_hdrs {
	struct buf	 text;		/* the kept fields, back to back */
	size_t		*len;		/* each one's length */
	size_t		 n, cap;
	bool		 overflow;	/* a field to keep did not fit */
	char		 too_long[32];	/* the name of the first one ("To", cut) */
	unsigned	 nfrom;		/* From: fields seen, kept or not */
	bool		 from_lost;	/* the first From: did not fit (overflow) */
	char		 from_domain[256]; /* of the first From:, "" if none, lost, or
					 * not a single mailbox (msghdr_addr_domain) */
	bool		 has_date, has_msgid;
	/* private: the field arriving now */
	bool		 keeping;
	bool		 cur_first_from;
	size_t		 start;		/* where it starts in text */
	char		 cur[32];	/* its name */
};

void dkim_hdrs_init(struct dkim_hdrs *h);
/* One callback of msghdr's field(): a piece of a field, with its flags. */
void dkim_hdrs_add(struct dkim_hdrs *h, const char *p, size_t n, unsigned flags);
/* True if a header field of this START piece ("Name:") is kept: signed. */
bool dkim_field_signed(const char *name, size_t n);
/* Frees the kept fields; what was noted (From:, Date:, ...) stays readable
 * until dkim_hdrs_init() starts again. */
void dkim_hdrs_free(struct dkim_hdrs *h);

struct dkim_signer;

/*
 * Starts signing a message with the keys of domain section d (NULL if d has
 * no dkim blocks).  from_domain is the From: header's domain (lower case),
 * used as d= for a "*" section.  jobid names the message in the library's
 * messages (the queue id).  On failure returns NULL with a reason in err.
 */
struct dkim_signer *dkim_signer_new(struct dkim_keys *k, const struct cfg_domain *d,
    const char *from_domain, const char *jobid, char *err, size_t errlen);

/* Feeds one header field exactly as msghdr passes it (with its folding and
 * its final CRLF), the end of the header, and body text (CRLF lines, no
 * dot-stuffing).  Return 0, or -1 with the reason kept for _finish(). */
int dkim_signer_header(struct dkim_signer *s, const char *field, size_t n);
int dkim_signer_eoh(struct dkim_signer *s);
/* Feeds every field h kept, in order, then the end of the header. */
int dkim_signer_hdrs(struct dkim_signer *s, const struct dkim_hdrs *h);
int dkim_signer_body(struct dkim_signer *s, const char *p, size_t n);

/*
 * Computes the signatures and appends one "DKIM-Signature: ...\r\n" field
 * per key to out (folded with CRLF + TAB, no line over 998 octets).
 * Thread-safe with respect to other signers.  Returns 0, or -1 with a
 * reason in err (then nothing is appended).
 */
int dkim_signer_finish(struct dkim_signer *s, struct buf *out, char *err, size_t errlen);

/* "s1,s2": the selectors that sign, in order, for the from= log line. */
const char *dkim_signer_selectors(const struct dkim_signer *s);

void dkim_signer_free(struct dkim_signer *s);

/* The d= a domain section signs with (see above); writes into out. */
void dkim_signing_domain(const struct cfg_domain *d, const char *from_domain, char *out,
    size_t outlen);

#endif
