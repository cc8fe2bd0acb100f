/*
 * resign — signs a queued message again, from its text in the spool (see
 * resign.h for when and why).
 *
 * The text is read in chunks and split by msghdr as smtp_server splits what
 * a client sends, and its header kept the same way (dkim_hdrs: only the
 * fields a signature covers, until the end of the header, since only then
 * is it known whose keys sign), then fed to the signer in their order, and
 * the body follows as it is read.  The text starts with relayd's own
 * Received: field, which the signer never signs (it is not in the list of
 * signed fields), so it makes no difference to the signature.
 */
#include "acconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkim.h"
#include "msghdr.h"
#include "resign.h"
#include "router.h"

#define RESIGN_CHUNK	 (64u << 10)

struct resign {
	const struct config	*cfg;
	const char		*jobid;
	struct dkim_hdrs	 hdrs;
	struct dkim_signer	*signer;
	bool			 nokeys;
	int			 failed;
	char			*err;
	size_t			 errlen;
};

static void rs_fail(struct resign *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
rs_fail(struct resign *r, const char *fmt, ...)
{
	va_list ap;

	if (r->failed)
		return;
	r->failed = 1;
	va_start(ap, fmt);
	vsnprintf(r->err, r->errlen, fmt, ap);
	va_end(ap);
}

static void
rs_field(void *ctx, const char *p, size_t n, unsigned flags)
{
	struct resign *r = ctx;

	dkim_hdrs_add(&r->hdrs, p, n, flags);
}

static void
rs_eoh(void *ctx, const char *p, size_t n)
{
	struct resign *r = ctx;
	const struct cfg_domain *d;
	char err[256];

	(void)p;
	(void)n;
	if (r->failed)
		return;
	if (r->hdrs.nfrom != 1) {
		rs_fail(r, "the message has %s From: field", r->hdrs.nfrom == 0 ? "no" :
		    "more than one");
		return;
	}
	d = router_signing_section(r->cfg, r->hdrs.from_domain);
	if (d == NULL && !r->hdrs.from_lost) {
		r->nokeys = true;
		return;
	}
	if (r->hdrs.overflow) {
		/* smtp_server refuses such a message; this text was not its */
		rs_fail(r, "header fields to sign over %u KB together (the first over it: %s)",
		    DKIM_HDRS_MAX >> 10, r->hdrs.too_long);
		return;
	}
	r->signer = dkim_signer_new(r->cfg->dkim, d, r->hdrs.from_domain, r->jobid, err,
	    sizeof(err));
	if (r->signer == NULL) {
		rs_fail(r, "%s", err);
		return;
	}
	(void)dkim_signer_hdrs(r->signer, &r->hdrs);
	dkim_hdrs_free(&r->hdrs);
}

static void
rs_body(void *ctx, const char *p, size_t n)
{
	struct resign *r = ctx;

	if (r->signer != NULL && !r->failed)
		(void)dkim_signer_body(r->signer, p, n);
}

int
resign_text(const struct config *cfg, int fd, uint64_t off, uint64_t len,
    const char *jobid, struct buf *out, char *err, size_t errlen)
{
	struct resign r = { .cfg = cfg, .jobid = jobid, .err = err, .errlen = errlen };
	struct msghdr_cb cb = { rs_field, rs_eoh, rs_body, &r };
	struct hdrsplit h;
	char *chunk = xmalloc(RESIGN_CHUNK);
	uint64_t done = 0;
	int rc = -1;

	dkim_hdrs_init(&r.hdrs);
	msghdr_init(&h, &cb);
	while (done < len && !r.failed) {
		size_t want = len - done < RESIGN_CHUNK ? (size_t)(len - done) : RESIGN_CHUNK;
		ssize_t k = pread(fd, chunk, want, (off_t)(off + done));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rs_fail(&r, "cannot read the message from the spool: %s",
			    k < 0 ? strerror(errno) : "unexpected end of file");
			break;
		}
		msghdr_feed(&h, chunk, (size_t)k);
		done += (uint64_t)k;
	}
	if (!r.failed)
		msghdr_finish(&h);
	if (r.failed)
		goto out;
	if (r.nokeys) {
		rc = 0;
		goto out;
	}
	if (r.signer == NULL) {
		snprintf(err, errlen, "the message has no header section to sign");
		goto out;
	}
	if (dkim_signer_finish(r.signer, out, err, errlen) == 0)
		rc = 1;
out:
	dkim_signer_free(r.signer);
	msghdr_free(&h);
	dkim_hdrs_free(&r.hdrs);
	free(chunk);
	return rc;
}
