/*
 * check_dkim — DKIM signing: golden signatures (RSA and Ed25519 are
 * deterministic, and the signing time is fixed), the signed-header list,
 * d= per domain section, streaming in any chunking, and key loading
 * errors with their exact "FILE:LINE: message".
 *
 * The keys are test-only fixtures in tests/unit/data (see its README);
 * each test copies them into its own temporary directory with mode 0600,
 * as config_load() requires.
 *
 * How the golden strings were made and checked: this implementation signed
 * golden_hdrs/golden_body at t=1795435200; the message with both
 * DKIM-Signature fields prepended was verified with python3-dkim (dkimpy
 * 1.1.4, independent of libopendkim) by
 *   /usr/bin/python3 tests/unit/data/dkim-verify.py MSG \
 *       rsa1=tests/unit/data/dkim-rsa2048.key ed1=tests/unit/data/dkim-ed25519.key
 * (both pass; the same message with a changed body, a changed Subject or
 * an added From: field fails both), and bh= was recomputed by hand as the
 * SHA-256 of the relaxed body "Hello Bob,\r\n\r\nThis is the golden
 * message.\r\n".  Only then were they pasted here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dkim.h"
#include "msghdr.h"
#include "resign.h"
#include "suites.h"
#include "util.h"

#ifndef TEST_DATADIR
#error "TEST_DATADIR must name tests/unit/data in the source tree"
#endif

#define GOLDEN_TIME	1795435200	/* 2026-11-23 08:00:00 UTC */

static char tmpdir[PATH_MAX];
static char confpath[PATH_MAX + 32];

static const char *const fixtures[] = {
	"dkim-rsa2048.key", "dkim-rsa2048-pkcs1.key", "dkim-ed25519.key",
	"dkim-ed25519-encrypted.key", "dkim-rsa512.key", "dkim-rsa2048.pub",
};

/* ---- the golden message and its signatures ------------------------------ */

static const char *const golden_hdrs[] = {
	"Received: from app.example.com (localhost [127.0.0.1])\r\n"
	"\tby relay.example.com with ESMTP; Mon, 23 Nov 2026 10:00:00 +0000\r\n",
	"From: Alice Example <alice@example.com>\r\n",
	"To: Bob <bob@example.net>\r\n",
	"Subject: A golden message\r\n  with a   folded subject \r\n",
	"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n",
	"Message-ID: <golden.1@example.com>\r\n",
	"X-Mailer: check_dkim 1.0\r\n",
	"MIME-Version: 1.0\r\n",
	"Content-Type: text/plain; charset=utf-8\r\n",
	NULL
};
static const char golden_body[] =
	"Hello Bob,\r\n\r\nThis  is the   golden message. \t\r\n\r\n\r\n";

static const char golden_rsa[] =
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=rsa1;\r\n"
	"\tt=1795435200; bh=7yUiFC5UnCER010Q+6hpb2fGIQKVxbgEikBeKoO0SN0=;\r\n"
	"\th=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:From;\r\n"
	"\tb=gE4TBpEYe9WX92NehBx/7Mfx2eua1Fz29SFcBg/ZBFbTCH+l+QmGMtHe6MRExInKr\r\n"
	"\t RAHZDONYSbW07Z5kSLlGgqlMJidKaQbC5unbndDHR7R14yIHum/qMnI1AEO2JJw5Me\r\n"
	"\t A9FNxp7XbDc0SS4y2pPtEaku/Po71vKVJ15iKvO36QosmGOcM5+uVIlrrKvxWkB9ug\r\n"
	"\t yE9WS05nyq4bBKDABcTDO54/MnjYrXWLZJl+R/wf6v8UAZlQUMuRAbczEEdQ46s1Zo\r\n"
	"\t 1/G7+6irFa+d036bQuq/yt5aA0NJkD12/dZovpfMi2Uo1mYKEDH1iR76G3F5EU3FWh\r\n"
	"\t ZysDTqB6aD77g==\r\n";

static const char golden_ed[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;\r\n"
	"\ts=ed1; t=1795435200;\r\n"
	"\tbh=7yUiFC5UnCER010Q+6hpb2fGIQKVxbgEikBeKoO0SN0=;\r\n"
	"\th=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:From;\r\n"
	"\tb=5F9B8X9tzw2KKlO5O55XCEeQHyO8MRKaAyDE5JtZ3Wv/v57goAW3mi2+nDlnfg/tl\r\n"
	"\t 57T/yfTj9otBzD+N1ArCg==\r\n";

/* The SHA-256 of nothing: the relaxed canonical form of an empty body. */
#define EMPTY_BH	"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

static const char base_conf[] =
	"upstream \"u\" { host = \"10.0.0.1\"  tls = \"none\" }\n"
	"domain \"example.com\" {\n"
	"  upstream = \"u\"\n"
	"  dkim { selector = \"rsa1\"  key_file = \"@D@/dkim-rsa2048.key\" }\n"
	"  dkim {\n"
	"    selector = \"ed1\"\n"
	"    key_file = \"@D@/dkim-ed25519.key\"\n"
	"    algorithm = \"ed25519-sha256\"\n"
	"  }\n"
	"}\n"
	"domain \"*.example.org\" {\n"
	"  upstream = \"u\"\n"
	"  dkim { selector = \"org1\"  key_file = \"@D@/dkim-rsa2048.key\" }\n"
	"}\n"
	"domain \"*\" {\n"
	"  upstream = \"u\"\n"
	"  dkim { selector = \"any1\"  key_file = \"@D@/dkim-ed25519.key\""
	"  algorithm = \"ed25519-sha256\" }\n"
	"}\n"
	"domain \"plain.example\" { upstream = \"u\" }\n";

/* ---- fixtures ------------------------------------------------------------ */

/* Replaces @D@ by the temp dir and @F@ by the config path; caller frees. */
static char *
subst(const char *tmpl)
{
	struct buf b;

	buf_init(&b);
	while (*tmpl != '\0') {
		if (strncmp(tmpl, "@D@", 3) == 0) {
			buf_addstr(&b, tmpdir);
			tmpl += 3;
		} else if (strncmp(tmpl, "@F@", 3) == 0) {
			buf_addstr(&b, confpath);
			tmpl += 3;
		} else {
			buf_add(&b, tmpl++, 1);
		}
	}
	return b.p;
}

static void
write_file(const char *path, const void *content, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_msg(fd != -1, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void
write_in(const char *path, const char *text)
{
	write_file(path, text, strlen(text), 0600);
}

/* Copies tests/unit/data/name to tmpdir/as, mode 0600. */
static void
copy_fixture(const char *name, const char *as)
{
	char src[PATH_MAX + 64], dst[PATH_MAX + 64], data[65536];
	FILE *f;
	size_t n;

	snprintf(src, sizeof(src), "%s/%s", TEST_DATADIR, name);
	snprintf(dst, sizeof(dst), "%s/%s", tmpdir, as);
	f = fopen(src, "rb");
	ck_assert_msg(f != NULL, "%s: %s", src, strerror(errno));
	n = fread(data, 1, sizeof(data), f);
	fclose(f);
	ck_assert_uint_gt(n, 0);
	write_file(dst, data, n, 0600);
}

static void
setup(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/check_dkim.XXXXXX",
	    base != NULL && *base != '\0' ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(confpath, sizeof(confpath), "%s/relayd.conf", tmpdir);
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		copy_fixture(fixtures[i], fixtures[i]);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
teardown(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes and loads a configuration that must be valid. */
static struct config *
conf_load(const char *tmpl)
{
	char *text = subst(tmpl), *errs = NULL;
	size_t errlen = 0;
	struct config *cfg;
	FILE *err;

	write_file(confpath, text, strlen(text), 0644);
	free(text);
	ck_assert_ptr_nonnull(err = open_memstream(&errs, &errlen));
	cfg = config_load(confpath, err);
	fclose(err);
	ck_assert_msg(cfg != NULL, "config rejected:\n%s", errs);
	free(errs);
	return cfg;
}

/* dkim_keys_load(); *errs gets what it printed (caller frees). */
static struct dkim_keys *
keys_load(const struct config *cfg, char **errs)
{
	size_t errlen = 0;
	struct dkim_keys *k;
	FILE *err;

	*errs = NULL;
	ck_assert_ptr_nonnull(err = open_memstream(errs, &errlen));
	k = dkim_keys_load(cfg, err);
	fclose(err);
	return k;
}

/* Keys of a valid configuration, at the golden time. */
static struct dkim_keys *
keys_load_ok(const struct config *cfg)
{
	char *errs;
	struct dkim_keys *k = keys_load(cfg, &errs);

	ck_assert_msg(k != NULL, "keys rejected:\n%s", errs);
	ck_assert_str_eq(errs, "");
	free(errs);
	dkim_keys_set_time(k, GOLDEN_TIME);
	return k;
}

static const struct cfg_domain *
find_domain(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ndomains; i++)
		if (strcmp(cfg->domains[i].name, name) == 0)
			return &cfg->domains[i];
	ck_abort_msg("no domain %s", name);
	return NULL;
}

/*
 * Checks the shape of what dkim_signer_finish() appended: DKIM-Signature
 * fields only, CRLF line ends only, continuation lines starting with a TAB,
 * no line over 998 octets.  Returns the number of fields.
 */
static int
check_fields(const char *p)
{
	int fields = 0;

	ck_assert_msg(*p != '\0', "no output");
	while (*p != '\0') {
		const char *eol = strstr(p, "\r\n");
		size_t len;

		ck_assert_msg(eol != NULL, "line without CRLF: %s", p);
		len = (size_t)(eol - p);
		ck_assert_msg(len <= 998, "line of %zu octets", len);
		ck_assert_msg(memchr(p, '\r', len) == NULL && memchr(p, '\n', len) == NULL,
		    "bare CR or LF in: %.*s", (int)len, p);
		if (strncmp(p, "DKIM-Signature: ", 16) == 0)
			fields++;
		else
			ck_assert_msg(*p == '\t' && fields > 0, "bad line: %.*s", (int)len, p);
		p = eol + 2;
	}
	return fields;
}

/*
 * Signs hdrs + body with the keys of domain d, the body cut in chunks of
 * chunk octets (0: one chunk); returns the fields appended (caller frees).
 */
/* Finishes and frees s; returns the fields it made (the caller frees). */
static char *
finish_str(struct dkim_signer *s)
{
	struct buf out;
	char err[256];

	buf_init(&out);
	buf_addstr(&out, "");
	ck_assert_msg(dkim_signer_finish(s, &out, err, sizeof(err)) == 0,
	    "dkim_signer_finish: %s", err);
	dkim_signer_free(s);
	(void)check_fields(out.p);
	return out.p;
}

static char *
sign_msg(struct dkim_keys *k, const struct cfg_domain *d, const char *from_domain,
    const char *const *hdrs, const char *body, size_t chunk)
{
	struct dkim_signer *s;
	char err[256];
	size_t blen = strlen(body);

	s = dkim_signer_new(k, d, from_domain, "TESTJOB", err, sizeof(err));
	ck_assert_msg(s != NULL, "dkim_signer_new: %s", err);
	for (size_t i = 0; hdrs[i] != NULL; i++)
		ck_assert_int_eq(dkim_signer_header(s, hdrs[i], strlen(hdrs[i])), 0);
	ck_assert_int_eq(dkim_signer_eoh(s), 0);
	if (chunk == 0)
		chunk = blen > 0 ? blen : 1;
	for (size_t off = 0; off < blen; off += chunk)
		ck_assert_int_eq(dkim_signer_body(s, body + off,
		    blen - off < chunk ? blen - off : chunk), 0);
	return finish_str(s);
}

/* A domain section like d, signing with only the given blocks of d, in that order. */
static struct cfg_domain
domain_with(const struct cfg_domain *d, struct cfg_dkim *blocks, size_t n)
{
	struct cfg_domain x = *d;

	x.dkim = blocks;
	x.ndkim = n;
	return x;
}

/*
 * The value of tag name in a DKIM-Signature field, unfolded and without
 * white space (caller frees); NULL if absent.  *tags gets the tag names in
 * order, comma separated (caller frees).
 */
static char *
tag_value(const char *field, const char *name, char **tags)
{
	const char *p = strchr(field, ':');
	struct buf val, names;
	char *ret = NULL;

	ck_assert_ptr_nonnull(p);
	p++;
	buf_init(&names);
	buf_addstr(&names, "");
	while (*p != '\0' && strncmp(p, "\r\nDKIM-Signature:", 17) != 0) {
		struct buf tag;

		buf_init(&tag);
		buf_addstr(&tag, "");
		buf_init(&val);
		buf_addstr(&val, "");
		while (*p != '\0' && *p != '=') {
			if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
				buf_add(&tag, p, 1);
			p++;
		}
		if (*p == '=')
			p++;
		while (*p != '\0' && *p != ';' &&
		    strncmp(p, "\r\nDKIM-Signature:", 17) != 0) {
			if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
				buf_add(&val, p, 1);
			p++;
		}
		if (*p == ';')
			p++;
		if (tag.len > 0) {
			if (names.len > 0)
				buf_addstr(&names, ",");
			buf_addstr(&names, tag.p);
			if (strcmp(tag.p, name) == 0 && ret == NULL)
				ret = xstrdup(val.p);
		}
		buf_free(&tag);
		buf_free(&val);
		while (*p == ' ' || *p == '\t')
			p++;
		if (strcmp(p, "\r\n") == 0)
			break;
	}
	if (tags != NULL)
		*tags = names.p;
	else
		buf_free(&names);
	return ret;
}

/* ---- golden signatures ---------------------------------------------------- */

START_TEST(test_golden_rsa)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	struct cfg_dkim blocks[1] = { d->dkim[0] };
	struct cfg_domain x = domain_with(d, blocks, 1);
	char *out = sign_msg(k, &x, "example.com", golden_hdrs, golden_body, 0);

	ck_assert_str_eq(out, golden_rsa);
	free(out);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

START_TEST(test_golden_ed25519)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	struct cfg_dkim blocks[1] = { d->dkim[1] };
	struct cfg_domain x = domain_with(d, blocks, 1);
	char *out = sign_msg(k, &x, "example.com", golden_hdrs, golden_body, 0);

	ck_assert_str_eq(out, golden_ed);
	free(out);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* The same RSA key written as PKCS#1 ("BEGIN RSA PRIVATE KEY") signs the same. */
START_TEST(test_golden_rsa_pkcs1)
{
	struct config *cfg;
	struct dkim_keys *k;
	const struct cfg_domain *d;
	char *out;

	copy_fixture("dkim-rsa2048-pkcs1.key", "dkim-rsa2048.key");
	cfg = conf_load(base_conf);
	k = keys_load_ok(cfg);
	d = find_domain(cfg, "example.com");
	{
		struct cfg_dkim blocks[1] = { d->dkim[0] };
		struct cfg_domain x = domain_with(d, blocks, 1);

		out = sign_msg(k, &x, "example.com", golden_hdrs, golden_body, 0);
	}
	ck_assert_str_eq(out, golden_rsa);
	free(out);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* Two dkim blocks: two fields, in block order, and "s1,s2" for the log. */
START_TEST(test_both_algorithms)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	struct cfg_dkim rev[2] = { d->dkim[1], d->dkim[0] };
	struct cfg_domain x = domain_with(d, rev, 2);
	struct dkim_signer *s;
	char *out, *expect, err[256];

	out = sign_msg(k, d, "example.com", golden_hdrs, golden_body, 0);
	expect = xasprintf("%s%s", golden_rsa, golden_ed);
	ck_assert_str_eq(out, expect);
	ck_assert_int_eq(check_fields(out), 2);
	free(out);
	free(expect);

	out = sign_msg(k, &x, "example.com", golden_hdrs, golden_body, 0);
	expect = xasprintf("%s%s", golden_ed, golden_rsa);
	ck_assert_str_eq(out, expect);
	free(out);
	free(expect);

	s = dkim_signer_new(k, d, "example.com", "Q1", err, sizeof(err));
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(dkim_signer_selectors(s), "rsa1,ed1");
	dkim_signer_free(s);
	s = dkim_signer_new(k, &x, "example.com", "Q2", err, sizeof(err));
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(dkim_signer_selectors(s), "ed1,rsa1");
	dkim_signer_free(s);

	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* Unsigned fields: many short ones, one folded one of big octets, and one
 * libopendkim itself would refuse (a ';' in its name). */
static void
add_unsigned_fields(struct buf *b, size_t big)
{
	for (int i = 0; i < 100; i++)
		buf_printf(b, "X-Filler-%d: some unsigned text\r\n", i);
	buf_addstr(b, "X-Big: ");
	for (size_t n = 0; n < big; n += 73)
		buf_addstr(b, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n ");
	buf_addstr(b, "end\r\nX;odd: name\r\n");
}

/*
 * resign_text(): the golden message as the spool keeps it (relayd's
 * Received: first, 150 KB of unsigned fields among the others, at an
 * offset in a file, read in chunks), signed again:
 * exactly the fields the streaming signer made (the Received: field is
 * not signed), and the clear answers for a domain without keys now, no
 * From:, and a text the file does not hold.
 */
START_TEST(test_resign_text)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	struct buf text, out;
	char path[PATH_MAX + 16], err[256];
	static const char junk[100] = "segment bytes before the text";

	cfg->dkim = k;		/* freed with cfg */
	buf_init(&text);
	for (size_t i = 0; golden_hdrs[i] != NULL; i++)
		buf_addstr(&text, golden_hdrs[i]);
	/* unsigned fields of any size change nothing, a 150 KB one included */
	add_unsigned_fields(&text, 150 * 1024);
	buf_addstr(&text, "\r\n");
	/* a body over the reader's 64 KiB chunk */
	for (int i = 0; i < 2000; i++)
		buf_addstr(&text, "Forty octets of body text, line after li\r\n");
	buf_addstr(&text, golden_body);
	snprintf(path, sizeof(path), "%s/text", tmpdir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	ck_assert_int_eq(write(fd, text.p, text.len), (ssize_t)text.len);

	const char *body = strstr(text.p, "\r\n\r\n") + 4;
	char *want = sign_msg(k, find_domain(cfg, "example.com"), "example.com", golden_hdrs,
	    body, 0);
	buf_init(&out);
	buf_addstr(&out, "");
	ck_assert_int_eq(resign_text(cfg, fd, sizeof(junk), text.len, "RESIGN1", &out, err,
	    sizeof(err)), 1);
	ck_assert_str_eq(out.p, want);
	ck_assert_int_eq(check_fields(out.p), 2);
	free(want);

	/* a From: domain whose section has no keys: nothing to sign with */
	static const char plain[] = "From: a@plain.example\r\nSubject: x\r\n\r\nbody\r\n";
	ck_assert_int_eq(pwrite(fd, plain, strlen(plain), 0), (ssize_t)strlen(plain));
	buf_reset(&out);
	ck_assert_int_eq(resign_text(cfg, fd, 0, strlen(plain), "RESIGN2", &out, err,
	    sizeof(err)), 0);
	ck_assert_uint_eq(out.len, 0);

	static const char nofrom[] = "Subject: no From here\r\n\r\nbody\r\n";
	ck_assert_int_eq(pwrite(fd, nofrom, strlen(nofrom), 0), (ssize_t)strlen(nofrom));
	ck_assert_int_eq(resign_text(cfg, fd, 0, strlen(nofrom), "RESIGN3", &out, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "the message has no From: field");
	ck_assert_uint_eq(out.len, 0);

	ck_assert_int_eq(resign_text(cfg, fd, sizeof(junk), text.len + 10, "RESIGN4", &out, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "cannot read the message from the spool: unexpected end of file");
	ck_assert_uint_eq(out.len, 0);

	close(fd);
	buf_free(&out);
	buf_free(&text);
	config_free(cfg);
}
END_TEST

/* ---- dkim_hdrs: which fields are kept -------------------------------- */

static void
hdrs_field(void *ctx, const char *p, size_t n, unsigned flags)
{
	dkim_hdrs_add(ctx, p, n, flags);
}

static void
hdrs_ignore(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
}

/* Splits text (a header, or a whole message) into h, in chunks of chunk. */
static void
hdrs_keep(struct dkim_hdrs *h, const char *text, size_t len, size_t chunk)
{
	struct msghdr_cb cb = { hdrs_field, hdrs_ignore, hdrs_ignore, h };
	struct hdrsplit sp;

	dkim_hdrs_init(h);
	msghdr_init(&sp, &cb);
	for (size_t at = 0; at < len; at += chunk)
		msghdr_feed(&sp, text + at, len - at < chunk ? len - at : chunk);
	msghdr_finish(&sp);
	msghdr_free(&sp);
}

/* The kept fields, joined with "|". */
static char *
hdrs_kept(const struct dkim_hdrs *h)
{
	struct buf b;
	const char *f = h->text.p;

	buf_init(&b);
	buf_addstr(&b, "");
	for (size_t i = 0; i < h->n; i++) {
		if (i > 0)
			buf_addstr(&b, "|");
		buf_add(&b, f, h->len[i]);
		f += h->len[i];
	}
	return b.p;
}

/*
 * Exactly the fields of the signed list are kept, whole, in order, found
 * as libopendkim finds them (any case, white space before the colon, every
 * occurrence); the others go by, and the From:, Date: and Message-ID:
 * notes are right, whatever the chunking.
 */
START_TEST(test_hdrs_which)
{
	static const char text[] =
	    "Received: from x\r\n\tby y; Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	    "FROM : Ann <ann@Example.COM>\r\n"
	    "X-Mailer: m\r\n"
	    "to: a@x.org,\r\n b@y.org\r\n"
	    "From-X: not a From\r\n"
	    "Subject: s\r\n"
	    "Reply-To: r@x.org\r\n"
	    "X;odd: n\r\n"
	    "From: other@example.org\r\n"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	    "Message-Id: <m@x>\r\n"
	    "\r\n"
	    "From: body@evil.org\r\n";
	static const char want[] =
	    "FROM : Ann <ann@Example.COM>\r\n|to: a@x.org,\r\n b@y.org\r\n|Subject: s\r\n|"
	    "Reply-To: r@x.org\r\n|From: other@example.org\r\n|"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n|Message-Id: <m@x>\r\n";
	static const size_t chunks[] = { sizeof(text), 1, 2, 7 };

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct dkim_hdrs h;
		char *kept;

		hdrs_keep(&h, text, sizeof(text) - 1, chunks[c]);
		kept = hdrs_kept(&h);
		ck_assert_str_eq(kept, want);
		ck_assert_uint_eq(h.nfrom, 2);
		ck_assert_str_eq(h.from_domain, "example.com");
		ck_assert(!h.has_date);
		ck_assert(h.has_msgid);
		ck_assert(!h.overflow && !h.from_lost);
		free(kept);
		dkim_hdrs_free(&h);
		/* what was noted outlives the fields */
		ck_assert_uint_eq(h.n, 0);
		ck_assert_str_eq(h.from_domain, "example.com");
	}
	ck_assert(dkim_field_signed("Content-Transfer-Encoding:", 26));
	ck_assert(dkim_field_signed("cc \t:", 6));
	ck_assert(!dkim_field_signed("Received:", 9));
	ck_assert(!dkim_field_signed("DKIM-Signature:", 15));
	ck_assert(!dkim_field_signed("Bcc:", 4));
}
END_TEST

/*
 * The bound: signed fields are kept up to DKIM_HDRS_MAX together; one
 * that would go beyond it is dropped (overflow, its name kept for the
 * log), later ones that fit are still kept; a first From: that does not
 * fit is lost.  Unsigned fields of any size take nothing.
 */
START_TEST(test_hdrs_bound)
{
	struct buf t;
	struct dkim_hdrs h;
	char *kept;

	/* 300 KB unsigned, then small signed fields: all kept, no overflow */
	buf_init(&t);
	add_unsigned_fields(&t, 300 * 1024);
	buf_addstr(&t, "From: a@example.com\r\nSubject: s\r\n\r\n");
	hdrs_keep(&h, t.p, t.len, 4096);
	kept = hdrs_kept(&h);
	ck_assert_str_eq(kept, "From: a@example.com\r\n|Subject: s\r\n");
	ck_assert(!h.overflow);
	ck_assert_uint_le(h.text.cap, 256);
	free(kept);
	dkim_hdrs_free(&h);
	buf_free(&t);

	/* a To: of 120 KB: over the bound; the From: and Subject: after it fit */
	buf_init(&t);
	buf_addstr(&t, "Cc: c@x.org\r\nTo: ");
	for (int i = 0; i < 4000; i++)
		buf_addstr(&t, "<rcpt.number.xx@example.net>,\r\n ");
	buf_addstr(&t, "<last@example.net>\r\nFrom: a@example.com\r\nSubject: s\r\n\r\n");
	ck_assert_uint_gt(t.len, DKIM_HDRS_MAX);
	hdrs_keep(&h, t.p, t.len, 1000);
	kept = hdrs_kept(&h);
	ck_assert_str_eq(kept, "Cc: c@x.org\r\n|From: a@example.com\r\n|Subject: s\r\n");
	ck_assert(h.overflow);
	ck_assert_str_eq(h.too_long, "To");
	ck_assert(!h.from_lost);
	ck_assert_str_eq(h.from_domain, "example.com");
	ck_assert_uint_le(h.text.len, DKIM_HDRS_MAX);
	free(kept);
	dkim_hdrs_free(&h);

	/* a big first From: (over the bound by its comments): lost */
	buf_reset(&t);
	buf_addstr(&t, "From: ");
	for (int i = 0; i < 4000; i++)
		buf_addstr(&t, "(a comment to make it long, longer, longest) \r\n ");
	buf_addstr(&t, "a@example.com\r\nFrom: b@example.org\r\n\r\n");
	hdrs_keep(&h, t.p, t.len, 4096);
	ck_assert(h.overflow && h.from_lost);
	ck_assert_uint_eq(h.nfrom, 2);
	ck_assert_str_eq(h.from_domain, "");
	ck_assert_str_eq(h.too_long, "From");
	dkim_hdrs_free(&h);
	buf_free(&t);
}
END_TEST

/*
 * Signing what dkim_hdrs kept gives the golden signatures: the same as
 * signing every field, since the others are not in h= (and unsigned fields
 * libopendkim would refuse, like "X;odd:", no longer stop it).
 */
START_TEST(test_hdrs_sign_golden)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	struct dkim_signer *s;
	struct dkim_hdrs h;
	struct buf text;
	char err[256], *got, *expect = xasprintf("%s%s", golden_rsa, golden_ed);

	buf_init(&text);
	for (size_t i = 0; golden_hdrs[i] != NULL; i++) {
		buf_addstr(&text, golden_hdrs[i]);
		if (i == 3)
			add_unsigned_fields(&text, 120 * 1024);
	}
	buf_addstr(&text, "\r\n");
	hdrs_keep(&h, text.p, text.len, 999);
	s = dkim_signer_new(k, find_domain(cfg, "example.com"), "example.com", "T", err,
	    sizeof(err));
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(dkim_signer_hdrs(s, &h), 0);
	ck_assert_int_eq(dkim_signer_body(s, golden_body, strlen(golden_body)), 0);
	got = finish_str(s);
	ck_assert_str_eq(got, expect);
	free(got);
	free(expect);
	dkim_hdrs_free(&h);
	buf_free(&text);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* finish() appends: what out held before stays in front. */
START_TEST(test_finish_appends)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	struct dkim_signer *s;
	struct buf out;
	char err[256], *expect;

	s = dkim_signer_new(k, d, "example.com", "Q3", err, sizeof(err));
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; golden_hdrs[i] != NULL; i++)
		ck_assert_int_eq(dkim_signer_header(s, golden_hdrs[i], strlen(golden_hdrs[i])), 0);
	ck_assert_int_eq(dkim_signer_eoh(s), 0);
	ck_assert_int_eq(dkim_signer_body(s, golden_body, strlen(golden_body)), 0);
	buf_init(&out);
	buf_addstr(&out, "Return-Path: <x@example.com>\r\n");
	ck_assert_int_eq(dkim_signer_finish(s, &out, err, sizeof(err)), 0);
	expect = xasprintf("Return-Path: <x@example.com>\r\n%s%s", golden_rsa, golden_ed);
	ck_assert_str_eq(out.p, expect);
	free(expect);
	buf_free(&out);
	dkim_signer_free(s);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* ---- what is signed --------------------------------------------------------- */

static const char *const many_hdrs[] = {
	"Return-Path: <bounce@example.com>\r\n",
	"Received: from a (b [127.0.0.1]) by relay; Mon, 23 Nov 2026 10:00:00 +0000\r\n",
	"From: alice@example.com\r\n",
	"Sender: bounce@example.com\r\n",
	"To: bob@example.net\r\n",
	"Cc: carol@example.net,\r\n dave@example.net\r\n",
	"X-To: nobody@example.net\r\n",
	"Fromage: brie\r\n",
	"Reply-To: replies@example.com\r\n",
	"Subject: all the fields\r\n",
	"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n",
	"Message-ID: <fields@example.com>\r\n",
	"In-Reply-To: <x@example.net>\r\n",
	"References: <w@example.net>\r\n\t<x@example.net>\r\n",
	"X-Mailer: check_dkim\r\n",
	"MIME-Version: 1.0\r\n",
	"Content-Type: text/plain; charset=us-ascii\r\n",
	"Content-Transfer-Encoding: 7bit\r\n",
	"List-Id: <list.example.com>\r\n",
	"List-Unsubscribe: <mailto:unsub@example.com>\r\n",
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
	"Content-Disposition: inline\r\n",
	NULL
};

START_TEST(test_signed_headers)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	static const char *const few_hdrs[] = {
		"Received: from a by b; Mon, 23 Nov 2026 10:00:00 +0000\r\n",
		"X-Mailer: check_dkim\r\n",
		"from: alice@example.com\r\n",
		NULL
	};
	char *out, *h, *tags, *v;

	/* Both fields of a two-block signer carry the same list. */
	out = sign_msg(k, d, "example.com", many_hdrs, "hi\r\n", 0);
	ck_assert_int_eq(check_fields(out), 2);
	h = tag_value(out, "h", &tags);
	ck_assert_str_eq(h, "From:To:Cc:Reply-To:Subject:Date:Message-ID:In-Reply-To:"
	    "References:MIME-Version:Content-Type:Content-Transfer-Encoding:"
	    "List-Unsubscribe:List-Unsubscribe-Post:From");
	/* Exactly these tags: no l=, x=, i= or z=. */
	ck_assert_str_eq(tags, "v,a,c,d,s,t,bh,h,b");
	free(tags);
	ck_assert_str_eq(v = tag_value(out, "c", NULL), "relaxed/relaxed");
	free(v);
	ck_assert_str_eq(v = tag_value(out, "t", NULL), "1795435200");
	free(v);
	ck_assert_str_eq(v = tag_value(out, "a", NULL), "rsa-sha256");
	free(v);
	{
		const char *second = strstr(out + 1, "DKIM-Signature:");
		char *h2;

		ck_assert_ptr_nonnull(second);
		h2 = tag_value(second, "h", &tags);
		ck_assert_str_eq(h2, h);
		ck_assert_str_eq(tags, "v,a,c,d,s,t,bh,h,b");
		ck_assert_str_eq(v = tag_value(second, "a", NULL), "ed25519-sha256");
		free(v);
		free(tags);
		free(h2);
	}
	free(h);
	free(out);

	/* Only From present: signed once and oversigned once. */
	out = sign_msg(k, d, "example.com", few_hdrs, "hi\r\n", 0);
	ck_assert_str_eq(h = tag_value(out, "h", NULL), "from:From");
	free(h);
	free(out);

	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* An unset time: t= is the signing time, now.  libopendkim takes it from
 * time(), which Linux serves from a coarse clock that may lag
 * CLOCK_REALTIME by a tick: "before" is read the same way (with now_us()
 * it was once a second ahead of t=, across a second's turn). */
START_TEST(test_timestamp_now)
{
	struct config *cfg = conf_load(base_conf);
	char *errs;
	struct dkim_keys *k = keys_load(cfg, &errs);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	int64_t before = (int64_t)time(NULL), after;
	char *out, *t;

	ck_assert_ptr_nonnull(k);
	free(errs);
	out = sign_msg(k, d, "example.com", golden_hdrs, golden_body, 0);
	after = now_us() / 1000000;
	t = tag_value(out, "t", NULL);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_ge(strtoll(t, NULL, 10), before);
	ck_assert_int_le(strtoll(t, NULL, 10), after);
	free(t);
	free(out);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* ---- d= --------------------------------------------------------------------- */

START_TEST(test_signing_domain)
{
	struct cfg_domain exact = { .name = "example.com" };
	struct cfg_domain sub = { .name = "*.example.org" };
	struct cfg_domain any = { .name = "*" };
	char out[256], small[5];

	dkim_signing_domain(&exact, "other.example.net", out, sizeof(out));
	ck_assert_str_eq(out, "example.com");
	dkim_signing_domain(&sub, "a.b.example.org", out, sizeof(out));
	ck_assert_str_eq(out, "example.org");
	dkim_signing_domain(&any, "from.example.net", out, sizeof(out));
	ck_assert_str_eq(out, "from.example.net");
	dkim_signing_domain(&any, NULL, out, sizeof(out));
	ck_assert_str_eq(out, "");
	dkim_signing_domain(&exact, NULL, small, sizeof(small));
	ck_assert_str_eq(small, "exam");
}
END_TEST

START_TEST(test_signer_domains)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	struct dkim_signer *s;
	char *out, *v, err[256];

	out = sign_msg(k, find_domain(cfg, "*.example.org"), "a.b.example.org",
	    golden_hdrs, golden_body, 0);
	ck_assert_int_eq(check_fields(out), 1);
	ck_assert_str_eq(v = tag_value(out, "d", NULL), "example.org");
	free(v);
	ck_assert_str_eq(v = tag_value(out, "s", NULL), "org1");
	free(v);
	free(out);

	out = sign_msg(k, find_domain(cfg, "*"), "from.example.net", golden_hdrs,
	    golden_body, 0);
	ck_assert_str_eq(v = tag_value(out, "d", NULL), "from.example.net");
	free(v);
	ck_assert_str_eq(v = tag_value(out, "a", NULL), "ed25519-sha256");
	free(v);
	free(out);

	/* "*" without a From: domain cannot sign. */
	strcpy(err, "x");
	ck_assert_ptr_null(dkim_signer_new(k, find_domain(cfg, "*"), NULL, "Q4", err,
	    sizeof(err)));
	ck_assert_str_eq(err, "DKIM: no From: domain to sign as (domain \"*\")");

	/* No dkim blocks: NULL and an empty reason, and so for no section. */
	strcpy(err, "x");
	ck_assert_ptr_null(dkim_signer_new(k, find_domain(cfg, "plain.example"),
	    "plain.example", "Q5", err, sizeof(err)));
	ck_assert_str_eq(err, "");
	strcpy(err, "x");
	ck_assert_ptr_null(dkim_signer_new(k, NULL, "plain.example", "Q6", err, sizeof(err)));
	ck_assert_str_eq(err, "");

	/* A block the keys were not loaded for (another snapshot's). */
	{
		const struct cfg_domain *d = find_domain(cfg, "example.com");
		struct cfg_dkim b = d->dkim[0];
		struct cfg_domain x = domain_with(d, &b, 1);

		b.selector = "other";
		ck_assert_ptr_null(s = dkim_signer_new(k, &x, "example.com", "Q7", err,
		    sizeof(err)));
		ck_assert_str_eq(err, "DKIM: no key loaded for selector other of domain example.com");
	}

	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* A long d= still gives lines of at most 998 octets (check_fields). */
START_TEST(test_long_domain)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	struct buf dom;
	char *out, *v;

	buf_init(&dom);
	for (int i = 0; i < 24; i++)
		buf_addstr(&dom, "abcdefghi.");
	buf_addstr(&dom, "example");		/* 247 octets */
	out = sign_msg(k, find_domain(cfg, "*"), dom.p, golden_hdrs, golden_body, 0);
	ck_assert_int_eq(check_fields(out), 1);
	ck_assert_str_eq(v = tag_value(out, "d", NULL), dom.p);
	free(v);
	free(out);
	buf_free(&dom);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* ---- streaming ------------------------------------------------------------ */

START_TEST(test_body_chunks)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	static const size_t sizes[] = { 1, 2, 3, 5, 7, 11, 13, 4096 };
	char *expect = xasprintf("%s%s", golden_rsa, golden_ed);

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *out = sign_msg(k, d, "example.com", golden_hdrs, golden_body, sizes[i]);

		ck_assert_msg(strcmp(out, expect) == 0, "chunks of %zu differ", sizes[i]);
		free(out);
	}
	free(expect);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

START_TEST(test_empty_body)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	char *empty, *blank, *text, *v;

	empty = sign_msg(k, d, "example.com", golden_hdrs, "", 0);
	ck_assert_int_eq(check_fields(empty), 2);
	ck_assert_str_eq(v = tag_value(empty, "bh", NULL), EMPTY_BH);
	free(v);
	/* Only empty lines: relaxed canonicalization drops them all. */
	blank = sign_msg(k, d, "example.com", golden_hdrs, "\r\n\r\n\r\n", 1);
	ck_assert_str_eq(blank, empty);
	text = sign_msg(k, d, "example.com", golden_hdrs, "x\r\n", 0);
	ck_assert_str_ne(text, empty);
	ck_assert_str_ne(v = tag_value(text, "bh", NULL), EMPTY_BH);
	free(v);
	free(empty);
	free(blank);
	free(text);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* A field with or without its CRLF signs the same: the CRLF is not content. */
START_TEST(test_header_crlf)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	static const char *const lf_hdrs[] = {
		"From: Alice Example <alice@example.com>\n",
		"Subject: bare\n",
		NULL
	};
	static const char *const crlf_hdrs[] = {
		"From: Alice Example <alice@example.com>\r\n",
		"Subject: bare\r\n",
		NULL
	};
	char *a = sign_msg(k, d, "example.com", lf_hdrs, "x\r\n", 0);
	char *b = sign_msg(k, d, "example.com", crlf_hdrs, "x\r\n", 0);

	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* The private-key step on other threads, several signers at once. */
#define NTHREADS 4

struct finish_job {
	struct dkim_signer	*s;
	struct buf		 out;
	int			 rc;
};

static void *
finish_thread(void *arg)
{
	struct finish_job *j = arg;
	char err[256];

	j->rc = dkim_signer_finish(j->s, &j->out, err, sizeof(err));
	return NULL;
}

START_TEST(test_finish_threads)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	struct finish_job jobs[NTHREADS];
	pthread_t th[NTHREADS];
	char err[256], *expect = xasprintf("%s%s", golden_rsa, golden_ed);

	for (int i = 0; i < NTHREADS; i++) {
		jobs[i].s = dkim_signer_new(k, d, "example.com", "QT", err, sizeof(err));
		ck_assert_ptr_nonnull(jobs[i].s);
		for (size_t h = 0; golden_hdrs[h] != NULL; h++)
			ck_assert_int_eq(dkim_signer_header(jobs[i].s, golden_hdrs[h],
			    strlen(golden_hdrs[h])), 0);
		ck_assert_int_eq(dkim_signer_eoh(jobs[i].s), 0);
		ck_assert_int_eq(dkim_signer_body(jobs[i].s, golden_body,
		    strlen(golden_body)), 0);
		buf_init(&jobs[i].out);
		jobs[i].rc = -2;
	}
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, finish_thread, &jobs[i]), 0);
	for (int i = 0; i < NTHREADS; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_int_eq(jobs[i].rc, 0);
		ck_assert_str_eq(jobs[i].out.p, expect);
		buf_free(&jobs[i].out);
		dkim_signer_free(jobs[i].s);
	}
	free(expect);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

/* ---- key loading -------------------------------------------------------------- */

START_TEST(test_keys_good)
{
	struct config *cfg = conf_load(base_conf);
	char *errs;
	struct dkim_keys *k = keys_load(cfg, &errs);

	ck_assert_ptr_nonnull(k);
	ck_assert_str_eq(errs, "");
	free(errs);
	dkim_keys_free(k);
	config_free(cfg);

	/* No dkim block at all is a valid configuration too. */
	cfg = conf_load("upstream \"u\" { host = \"10.0.0.1\" }\n"
	    "domain \"*\" { upstream = \"u\" }\n");
	k = keys_load(cfg, &errs);
	ck_assert_ptr_nonnull(k);
	ck_assert_str_eq(errs, "");
	free(errs);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

START_TEST(test_keys_bad)
{
	static const char conf[] =
	    "upstream \"u\" { host = \"10.0.0.1\" }\n"					/* 1 */
	    "domain \"example.com\" {\n"						/* 2 */
	    "  upstream = \"u\"\n"							/* 3 */
	    "  dkim { selector = \"a\"  key_file = \"@D@/dkim-ed25519.key\" }\n"		/* 4 */
	    "  dkim {\n"								/* 5 */
	    "    selector = \"b\"\n"							/* 6 */
	    "    key_file = \"@D@/dkim-rsa2048.key\"\n"				/* 7 */
	    "    algorithm = \"ed25519-sha256\"\n"					/* 8 */
	    "  }\n"									/* 9 */
	    "  dkim { selector = \"c\"  key_file = \"@D@/garbage.key\" }\n"		/* 10 */
	    "  dkim { selector = \"d\"  key_file = \"@D@/dkim-rsa512.key\" }\n"		/* 11 */
	    "  dkim { selector = \"e\"  key_file = \"@D@/dkim-rsa2048.pub\" }\n"		/* 12 */
	    "  dkim { selector = \"f\"  key_file = \"@D@/empty.key\" }\n"			/* 13 */
	    "  dkim { selector = \"g\"  key_file = \"@D@/dkim-ed25519-encrypted.key\""
	    "  algorithm = \"ed25519-sha256\" }\n"					/* 14 */
	    "  dkim { selector = \"h\"  key_file = \"@D@/dkim-rsa2048.key\" }\n"		/* 15 */
	    "}\n";
	static const char expect[] =
	    "@F@:4: key_file @D@/dkim-ed25519.key: an Ed25519 key, but algorithm is rsa-sha256\n"
	    "@F@:5: key_file @D@/dkim-rsa2048.key: an RSA key, but algorithm is ed25519-sha256\n"
	    "@F@:10: key_file @D@/garbage.key: not a private key (PEM PKCS#8 or PKCS#1 expected)\n"
	    "@F@:11: key_file @D@/dkim-rsa512.key: RSA key of 512 bits is too short "
	    "(at least 1024; 2048 recommended)\n"
	    "@F@:12: key_file @D@/dkim-rsa2048.pub: not a private key (PEM PKCS#8 or PKCS#1 expected)\n"
	    "@F@:13: key_file @D@/empty.key: not a private key (PEM PKCS#8 or PKCS#1 expected)\n"
	    "@F@:14: key_file @D@/dkim-ed25519-encrypted.key: an encrypted private key "
	    "(write it unencrypted: openssl pkey -in FILE -out NEW)\n";
	struct config *cfg;
	char path[PATH_MAX + 64], *errs, *want;

	snprintf(path, sizeof(path), "%s/garbage.key", tmpdir);
	write_in(path, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
	snprintf(path, sizeof(path), "%s/empty.key", tmpdir);
	write_in(path, "");
	cfg = conf_load(conf);
	ck_assert_ptr_null(keys_load(cfg, &errs));
	want = subst(expect);
	ck_assert_str_eq(errs, want);
	free(want);
	free(errs);
	config_free(cfg);
}
END_TEST

/* Each single problem is enough to refuse the keys. */
START_TEST(test_keys_one_bad)
{
	static const char *const files[] = {
		"dkim-rsa512.key", "dkim-ed25519.key", "dkim-rsa2048.pub",
	};
	static const char *const why[] = {
		"RSA key of 512 bits is too short (at least 1024; 2048 recommended)",
		"an Ed25519 key, but algorithm is rsa-sha256",
		"not a private key (PEM PKCS#8 or PKCS#1 expected)",
	};
	int i = _i;
	struct config *cfg;
	char *conf, *errs, *want;

	conf = xasprintf("upstream \"u\" { host = \"10.0.0.1\" }\n"
	    "domain \"example.com\" {\n"
	    "  upstream = \"u\"\n"
	    "  dkim { selector = \"ok\"  key_file = \"@D@/dkim-ed25519.key\""
	    "  algorithm = \"ed25519-sha256\" }\n"
	    "  dkim { selector = \"bad\"  key_file = \"@D@/%s\" }\n"
	    "}\n", files[i]);
	cfg = conf_load(conf);
	free(conf);
	ck_assert_ptr_null(keys_load(cfg, &errs));
	conf = xasprintf("@F@:5: key_file @D@/%s: %s\n", files[i], why[i]);
	want = subst(conf);
	ck_assert_str_eq(errs, want);
	free(want);
	free(conf);
	free(errs);
	config_free(cfg);
}
END_TEST

/* ---- failures while signing ---------------------------------------------------- */

/* A reason kept from the first failure, and nothing appended. */
START_TEST(test_signer_error_kept)
{
	struct config *cfg = conf_load(base_conf);
	struct dkim_keys *k = keys_load_ok(cfg);
	const struct cfg_domain *d = find_domain(cfg, "example.com");
	struct dkim_signer *s;
	struct buf out;
	char err[256];

	s = dkim_signer_new(k, d, "example.com", "Q8", err, sizeof(err));
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(dkim_signer_header(s, "From: a@example.com\r\n", 21), 0);
	/* Not a header field: no colon. */
	ck_assert_int_eq(dkim_signer_header(s, "garbage\r\n", 9), -1);
	ck_assert_int_eq(dkim_signer_eoh(s), -1);
	ck_assert_int_eq(dkim_signer_body(s, "x\r\n", 3), -1);
	buf_init(&out);
	buf_addstr(&out, "keep");
	ck_assert_int_eq(dkim_signer_finish(s, &out, err, sizeof(err)), -1);
	ck_assert_str_eq(out.p, "keep");
	ck_assert_msg(strncmp(err, "DKIM header (selector rsa1): ", 29) == 0, "err: %s", err);
	buf_free(&out);
	dkim_signer_free(s);

	/* An empty field (only its CRLF) never reaches the library's assert. */
	s = dkim_signer_new(k, d, "example.com", "Q10", err, sizeof(err));
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(dkim_signer_header(s, "\r\n", 2), -1);
	buf_init(&out);
	ck_assert_int_eq(dkim_signer_finish(s, &out, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "DKIM header: an empty header field");
	buf_free(&out);
	dkim_signer_free(s);

	/* No From: field: the library refuses at the end of the header. */
	s = dkim_signer_new(k, d, "example.com", "Q9", err, sizeof(err));
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(dkim_signer_header(s, "To: b@example.net\r\n", 19), 0);
	ck_assert_int_eq(dkim_signer_eoh(s), -1);
	buf_init(&out);
	ck_assert_int_eq(dkim_signer_finish(s, &out, err, sizeof(err)), -1);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_str_eq(err, "DKIM end of header (selector rsa1): required header \"from\" not found");
	buf_free(&out);
	dkim_signer_free(s);
	dkim_keys_free(k);
	config_free(cfg);
}
END_TEST

Suite *
dkim_suite(void)
{
	Suite *s = suite_create("dkim");
	TCase *tc;

	tc = tcase_create("golden");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_golden_rsa);
	tcase_add_test(tc, test_golden_ed25519);
	tcase_add_test(tc, test_golden_rsa_pkcs1);
	tcase_add_test(tc, test_both_algorithms);
	tcase_add_test(tc, test_finish_appends);
	tcase_add_test(tc, test_resign_text);
	tcase_add_test(tc, test_hdrs_sign_golden);
	suite_add_tcase(s, tc);

	tc = tcase_create("fields");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_signed_headers);
	tcase_add_test(tc, test_hdrs_which);
	tcase_add_test(tc, test_hdrs_bound);
	tcase_add_test(tc, test_timestamp_now);
	tcase_add_test(tc, test_signing_domain);
	tcase_add_test(tc, test_signer_domains);
	tcase_add_test(tc, test_long_domain);
	suite_add_tcase(s, tc);

	tc = tcase_create("streaming");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_body_chunks);
	tcase_add_test(tc, test_empty_body);
	tcase_add_test(tc, test_header_crlf);
	tcase_add_test(tc, test_finish_threads);
	tcase_add_test(tc, test_signer_error_kept);
	suite_add_tcase(s, tc);

	tc = tcase_create("keys");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_keys_good);
	tcase_add_test(tc, test_keys_bad);
	tcase_add_loop_test(tc, test_keys_one_bad, 0, 3);
	suite_add_tcase(s, tc);

	return s;
}
