/*
 * Unit tests for the spool: commit and recovery, torn tails, damaged
 * records, the lock, debris, spilled bodies, segment clean-up, and the
 * checksum and id map it relies on.  Each test works in its own temporary
 * directory and runs the event loop only until its callbacks have come.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fiemap.h>
#include <linux/fs.h>

#include <event2/event.h>

#include "crc32c.h"
#include "idmap.h"
#include "log.h"
#include "qid.h"
#include "spool.h"
#include "suites.h"
#include "util.h"

struct loaded {
	struct spool_envelope	*env[64];
	size_t			 n;
};

static void
load_cb(void *arg, struct spool_envelope *env)
{
	struct loaded *l = arg;

	ck_assert_uint_lt(l->n, 64);
	l->env[l->n++] = env;
}

static void
loaded_free(struct loaded *l)
{
	for (size_t i = 0; i < l->n; i++)
		spool_envelope_free(l->env[i]);
	l->n = 0;
}

struct done {
	int			 calls;
	int			 error;
	struct spool_loc	 loc;
};

static void
done_cb(void *arg, int error, const struct spool_loc *loc)
{
	struct done *d = arg;

	d->calls++;
	d->error = error;
	d->loc = *loc;
}

static char *
mktmpdir(void)
{
	char tmpl[] = "/tmp/relayd-spool-XXXXXX";
	char *d = mkdtemp(tmpl);

	ck_assert_ptr_nonnull(d);
	return xasprintf("%s/spool", d);
}

static void
rm_rf(const char *spooldir)
{
	char *parent = xstrdup(spooldir);

	*strrchr(parent, '/') = '\0';
	char *cmd = xasprintf("rm -rf '%s'", parent);

	(void)!system(cmd);
	free(cmd);
	free(parent);
}

/* Commits one message with these flags and waits (bounded) for its callback. */
static struct done
commit_flags(struct event_base *base, struct spool *sp, uint32_t flags, const char *sender,
    const char *rcpt, const char *prefix, const char *body, size_t bodylen, char id[QID_SIZE])
{
	struct spool_envelope env;
	struct spool_rcpt rc;
	struct done d = { 0, -1, { 0, 0, 0 } };
	struct spool_body *b = spool_body_new(sp);

	memset(&env, 0, sizeof(env));
	memset(&rc, 0, sizeof(rc));
	qid_next(env.id);
	memcpy(id, env.id, QID_SIZE);
	env.arrival = now_us();
	env.flags = flags;
	env.sender = (char *)sender;
	env.nrcpt = 1;
	rc.addr = (char *)rcpt;
	env.rcpts = &rc;
	/* write in pieces, as a session does */
	for (size_t off = 0; off < bodylen; off += 1000)
		ck_assert_int_eq(spool_body_write(b, body + off,
		    bodylen - off < 1000 ? bodylen - off : 1000), 0);
	spool_commit_message(sp, &env, prefix, strlen(prefix), b, done_cb, &d);
	for (int i = 0; i < 500 && d.calls == 0; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	ck_assert_int_eq(d.calls, 1);
	return d;
}

static struct done
commit_one(struct event_base *base, struct spool *sp, const char *sender,
    const char *rcpt, const char *prefix, const char *body, size_t bodylen, char id[QID_SIZE])
{
	return commit_flags(base, sp, 0, sender, rcpt, prefix, body, bodylen, id);
}

static char *
read_text(const char *dir, const struct spool_loc *loc)
{
	char *path = xasprintf("%s/%016llx.seg", dir, (unsigned long long)loc->seg);
	int fd = open(path, O_RDONLY);
	char *p = xmalloc(loc->len + 1);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, p, loc->len, (off_t)loc->off), (ssize_t)loc->len);
	p[loc->len] = '\0';
	close(fd);
	free(path);
	return p;
}

static int
count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".seg") != NULL)
			n++;
	closedir(d);
	return n;
}

/* ---- hand-made records, for damage and forgery ------------------------ */

static void
le(struct buf *b, uint64_t v, int width)
{
	for (int i = 0; i < width; i++) {
		unsigned char c = (unsigned char)(v >> (8 * i));
		buf_add(b, &c, 1);
	}
}

static void
lestr(struct buf *b, const char *s)
{
	if (s == NULL) {
		le(b, 0xffffffffu, 4);
		return;
	}
	le(b, strlen(s), 4);
	buf_addstr(b, s);
}

/* A MSG payload: one pending recipient, then the text. */
static void
msg_payload_n(struct buf *b, uint64_t qid, const char *sender, const char *rcpt,
    const char *text, size_t textlen)
{
	le(b, qid, 8);
	le(b, 1700000000000000ull, 8);
	le(b, 0, 4);
	le(b, 1, 4);
	lestr(b, sender);
	lestr(b, NULL);
	lestr(b, rcpt);
	le(b, 0, 1);
	le(b, 0, 2);
	le(b, 0, 8);
	lestr(b, NULL);
	lestr(b, "");
	le(b, textlen, 8);
	buf_add(b, text, textlen);
}

static void
msg_payload(struct buf *b, uint64_t qid, const char *sender, const char *rcpt, const char *text)
{
	msg_payload_n(b, qid, sender, rcpt, text, strlen(text));
}

/* A record as relayd wrote them before the sealed format (version 1):
 * magic, type, version, reserved, length, CRC-32C over bytes 4..12 and
 * the payload. */
static void
rec_v1(struct buf *out, int type, const struct buf *payload)
{
	size_t h = out->len;

	buf_add(out, "RLYR", 4);
	le(out, (uint64_t)type, 1);
	le(out, 1, 1);
	le(out, 0, 2);
	le(out, payload->len, 4);
	uint32_t crc = crc32c(0, out->p + h + 4, 8);
	crc = crc32c(crc, payload->p, payload->len);
	le(out, crc, 4);
	buf_add(out, payload->p, payload->len);
}

/* A record in the sealed layout (version 2) with the given seal: magic,
 * type, version, reserved, length, CRC-32C over bytes 4..12, the seal and
 * the payload, the seal (16 bytes). */
static void
rec_v2(struct buf *out, int type, const struct buf *payload, const unsigned char seal[16])
{
	size_t h = out->len;

	buf_add(out, "RLYR", 4);
	le(out, (uint64_t)type, 1);
	le(out, 2, 1);
	le(out, 0, 2);
	le(out, payload->len, 4);
	uint32_t crc = crc32c(0, out->p + h + 4, 8);
	crc = crc32c(crc, seal, 16);
	crc = crc32c(crc, payload->p, payload->len);
	le(out, crc, 4);
	buf_add(out, seal, 16);
	buf_add(out, payload->p, payload->len);
}

static uint64_t
qidv(const char *id)
{
	uint64_t v = 0;

	ck_assert(qid_decode(id, &v));
	return v;
}

#define FORGED_QID	0x7a7a7a7a7a7a7aull	/* an id no real message has */

/*
 * What a client could hide in its text: a DONE of `victim` and a MSG from
 * forged@example.com, each in the old layout with a correct CRC and in the
 * sealed layout with guessed seals (zeros, and random bytes), each on a
 * line of its own, then filler up to `size` octets.
 */
static char *
forged_text(uint64_t victim, size_t size, size_t *len)
{
	struct buf t, done, msg;
	unsigned char zero[16] = { 0 }, guess[16];

	for (int i = 0; i < 16; i++)
		guess[i] = (unsigned char)(random() >> 8);
	buf_init(&t);
	buf_init(&done);
	buf_init(&msg);
	le(&done, victim, 8);
	msg_payload(&msg, FORGED_QID, "forged@example.com", "rcpt@example.net",
	    "Subject: injected\r\n\r\nMARK-injected\r\n");
	buf_addstr(&t, "Subject: carries forged records\r\n\r\n");
	for (int k = 0; k < 3; k++) {
		buf_addstr(&t, "X");
		if (k == 0) {
			rec_v1(&t, 3, &done);
			rec_v1(&t, 1, &msg);
		} else {
			rec_v2(&t, 3, &done, k == 1 ? zero : guess);
			rec_v2(&t, 1, &msg, k == 1 ? zero : guess);
		}
		buf_addstr(&t, "\r\n");
	}
	while (t.len < size)
		buf_addstr(&t, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n");
	buf_free(&done);
	buf_free(&msg);
	*len = t.len;
	return t.p;
}

static char *
seg_path(const char *dir, uint64_t seq)
{
	return xasprintf("%s/%016llx.seg", dir, (unsigned long long)seq);
}

static void
file_zero(const char *path, off_t off, size_t n)
{
	int fd = open(path, O_WRONLY);
	char *z = xcalloc(1, n);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, z, n, off), (ssize_t)n);
	close(fd);
	free(z);
}

static char *
file_read(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	char *p = xmalloc((size_t)st.st_size + 1);
	ck_assert_int_eq(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static void
file_write(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
}

/* The end of a test: its directory removed, what it allocated freed. */
static void
test_end(struct event_base *base, char *dir, struct loaded *l)
{
	if (l != NULL)
		loaded_free(l);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}

/* Log lines written to stderr while capturing. */
static int capture_saved = -1;
static char capture_path[64];

static void
capture_start(void)
{
	snprintf(capture_path, sizeof(capture_path), "/tmp/relayd-spool-log-XXXXXX");
	int fd = mkstemp(capture_path);

	ck_assert_int_ge(fd, 0);
	log_init(true, false);	/* other suites may have chosen syslog */
	capture_saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

static char *
capture_end(void)
{
	size_t len;

	dup2(capture_saved, STDERR_FILENO);
	close(capture_saved);
	char *p = file_read(capture_path, &len);
	p[len] = '\0';
	unlink(capture_path);
	(void)!write(STDERR_FILENO, p, len);	/* still shown */
	return p;
}

/* Whether a loaded message has this id / this sender. */
static bool
loaded_has(const struct loaded *l, const char *id, const char *sender)
{
	for (size_t i = 0; i < l->n; i++)
		if ((id == NULL || strcmp(l->env[i]->id, id) == 0) &&
		    (sender == NULL || strcmp(l->env[i]->sender, sender) == 0))
			return true;
	return false;
}

START_TEST(crc32c_known_vectors)
{
	/* RFC 3720 B.4 and the common check value. */
	unsigned char zeros[32] = { 0 }, ones[32];

	memset(ones, 0xff, sizeof(ones));
	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(crc32c(0, zeros, 32), 0x8A9136AAu);
	ck_assert_uint_eq(crc32c(0, ones, 32), 0x62A8AB43u);
	/* continuation equals one shot */
	ck_assert_uint_eq(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}
END_TEST

START_TEST(idmap_put_get_del)
{
	struct idmap *m = idmap_new();
	static int vals[5000];

	for (uint64_t k = 1; k <= 5000; k++)
		ck_assert_ptr_null(idmap_put(m, k * 7919, &vals[k - 1]));
	ck_assert_uint_eq(idmap_count(m), 5000);
	for (uint64_t k = 1; k <= 5000; k += 2)
		ck_assert_ptr_eq(idmap_del(m, k * 7919), &vals[k - 1]);
	ck_assert_uint_eq(idmap_count(m), 2500);
	for (uint64_t k = 1; k <= 5000; k++)
		ck_assert_ptr_eq(idmap_get(m, k * 7919), (k % 2) ? NULL : &vals[k - 1]);
	ck_assert_ptr_null(idmap_del(m, 12345));
	idmap_free(m);
}
END_TEST

START_TEST(commit_and_recover)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256] = "";
	struct loaded l = { { NULL }, 0 };
	char id1[QID_SIZE], id2[QID_SIZE], id3[QID_SIZE];
	size_t bigsz = 300000;
	char *big = xmalloc(bigsz);

	for (size_t i = 0; i < bigsz; i++)
		big[i] = (i % 80 == 79) ? '\n' : (char)('a' + i % 26);

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "open: %s", err);
	ck_assert_uint_eq(l.n, 0);
	struct done d1 = commit_one(base, sp, "a@example.com", "x@example.net",
	    "Received: test\r\n", "Subject: one\r\n\r\nbody one\r\n", 26, id1);
	struct done d2 = commit_one(base, sp, "", "y@example.net", "", big, bigsz, id2);
	struct done d3 = commit_one(base, sp, "c@example.com", "z@example.net", "P: 3\r\n",
	    "", 0, id3);
	ck_assert_int_eq(d1.error, 0);
	ck_assert_int_eq(d2.error, 0);
	ck_assert_int_eq(d3.error, 0);
	ck_assert_uint_eq(d2.loc.len, bigsz);

	char *t = read_text(dir, &d1.loc);
	ck_assert_str_eq(t, "Received: test\r\nSubject: one\r\n\r\nbody one\r\n");
	free(t);
	t = read_text(dir, &d2.loc);
	ck_assert_int_eq(memcmp(t, big, bigsz), 0);	/* the spilled body arrived whole */
	free(t);
	struct spool_stats st;
	spool_get_stats(sp, &st);
	ck_assert_uint_eq(st.records, 3);
	ck_assert_uint_ge(st.commits, 1);
	spool_close(sp);

	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "reopen: %s", err);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.env[0]->id, id1);	/* arrival order */
	ck_assert_str_eq(l.env[1]->id, id2);
	ck_assert_str_eq(l.env[2]->id, id3);
	ck_assert_str_eq(l.env[0]->sender, "a@example.com");
	ck_assert_str_eq(l.env[1]->sender, "");
	ck_assert_uint_eq(l.env[0]->nrcpt, 1);
	ck_assert_str_eq(l.env[0]->rcpts[0].addr, "x@example.net");
	ck_assert_uint_eq(l.env[0]->rcpts[0].status, SPOOL_RCPT_PENDING);
	ck_assert_ptr_null(l.env[0]->rcpts[0].last_error);
	ck_assert_uint_eq(l.env[1]->loc.len, bigsz);
	ck_assert_uint_eq(l.env[0]->loc.off, d1.loc.off);
	uint64_t v;
	ck_assert(qid_decode(id3, &v));
	ck_assert_uint_eq(spool_max_qid(sp), v);
	spool_close(sp);
	loaded_free(&l);
	free(big);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

/* Cuts the last segment holding a record at various points: every cut
 * leaves the earlier message intact and drops the torn one. */
START_TEST(torn_tail_is_cut_off)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id1[QID_SIZE], id2[QID_SIZE];
	const char *cuts[] = { "header", "middle", "last-byte" };

	for (int c = 0; c < 3; c++) {
		struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
		ck_assert_msg(sp != NULL, "%s", err);
		loaded_free(&l);
		struct done d1 = commit_one(base, sp, "a@example.com", "x@example.net", "",
		    "first\r\n", 7, id1);
		struct done d2 = commit_one(base, sp, "b@example.com", "y@example.net", "",
		    "second message\r\n", 16, id2);
		ck_assert_int_eq(d1.error + d2.error, 0);
		ck_assert_uint_eq(d1.loc.seg, d2.loc.seg);
		spool_close(sp);

		char *path = xasprintf("%s/%016llx.seg", dir, (unsigned long long)d2.loc.seg);
		struct stat st;
		ck_assert_int_eq(stat(path, &st), 0);
		off_t end = st.st_size;
		off_t rec2 = (off_t)d1.loc.off + (off_t)d1.loc.len;	/* record 2 starts here */
		off_t cut = c == 0 ? rec2 + 5 : c == 1 ? (rec2 + end) / 2 : end - 1;
		ck_assert_int_eq(truncate(path, cut), 0);

		sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
		ck_assert_msg(sp != NULL, "%s", err);
		/* all earlier rounds' first messages survive, no second one */
		ck_assert_uint_eq(l.n, (size_t)c + 1);
		ck_assert_msg(strcmp(l.env[l.n - 1]->id, id1) == 0, "cut at %s", cuts[c]);
		for (size_t i = 0; i < l.n; i++)
			ck_assert_str_eq(l.env[i]->sender, "a@example.com");
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_int_eq(st.st_size, rec2);	/* debris removed */
		spool_close(sp);
		free(path);
	}
	loaded_free(&l);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

START_TEST(damaged_record_is_skipped_not_the_rest)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id[3][QID_SIZE];
	struct done d[3];

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	for (int i = 0; i < 3; i++) {
		d[i] = commit_one(base, sp, "a@example.com", "x@example.net", "",
		    "some text\r\n", 11, id[i]);
		ck_assert_int_eq(d[i].error, 0);
	}
	spool_close(sp);
	/* flip one byte of the middle message's text: its CRC no longer holds */
	char *path = xasprintf("%s/%016llx.seg", dir, (unsigned long long)d[1].loc.seg);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "X", 1, (off_t)d[1].loc.off + 2), 1);
	close(fd);

	capture_start();
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	char *log = capture_end();
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.env[0]->id, id[0]);
	ck_assert_str_eq(l.env[1]->id, id[2]);
	/* the line says which message was lost */
	char *want = xasprintf("message %s is lost", id[1]);
	ck_assert_msg(strstr(log, want) != NULL, "no \"%s\" in:\n%s", want, log);
	free(want);
	free(log);
	spool_close(sp);
	loaded_free(&l);
	free(path);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

/*
 * A page the disk cannot give back (RELAYD_TEST_SPOOL_EIO) in the middle of
 * many small records: the messages there are not loaded, those before and
 * after it are, nothing is cut off the segment, it is kept as .damaged,
 * and the log says both what the record it could name cost and that the
 * records after it, whose headers were in the page, are unknown.
 */
START_TEST(unreadable_page_read_around)
{
	enum { N = 60 };
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256], text[200], id[N][QID_SIZE], env[64];
	struct loaded l = { { NULL }, 0 };
	struct done d[N];
	struct stat st;

	memset(text, 't', sizeof(text));
	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	for (int i = 0; i < N; i++) {
		d[i] = commit_one(base, sp, "a@example.com", "x@example.net", "", text,
		    sizeof(text), id[i]);
		ck_assert_int_eq(d[i].error, 0);
		ck_assert_uint_eq(d[i].loc.seg, d[0].loc.seg);
	}
	spool_close(sp);
	char *path = xasprintf("%s/%016llx.seg", dir, (unsigned long long)d[0].loc.seg);
	char *kept = xasprintf("%s.damaged", path);
	ck_assert_int_eq(stat(path, &st), 0);
	off_t size = st.st_size;
	uint64_t page = 8192;

	ck_assert_uint_gt(d[N - 1].loc.off, page + 8192);	/* records well past the page */
	snprintf(env, sizeof(env), "%016llx:%llu", (unsigned long long)d[0].loc.seg,
	    (unsigned long long)page + 100);
	setenv("RELAYD_TEST_SPOOL_EIO", env, 1);
	capture_start();
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	char *log = capture_end();
	unsetenv("RELAYD_TEST_SPOOL_EIO");
	ck_assert_msg(sp != NULL, "%s", err);

	size_t lost = 0;
	for (int i = 0; i < N; i++) {
		bool got = false;

		for (size_t k = 0; k < l.n; k++)
			got |= strcmp(l.env[k]->id, id[i]) == 0;
		/* a text in the page cannot be loaded; one a page clear of it is */
		if (d[i].loc.off + d[i].loc.len > page && d[i].loc.off < page + 4096)
			ck_assert_msg(!got, "%s, its text in the unreadable page, loaded", id[i]);
		if (d[i].loc.off + d[i].loc.len + 1024 < page || d[i].loc.off > page + 4096 + 1024)
			ck_assert_msg(got, "%s, clear of the unreadable page, not loaded", id[i]);
		lost += !got;
	}
	ck_assert_uint_ge(lost, 10);	/* 4 KB of 200-byte messages */
	ck_assert_uint_eq(l.n + lost, N);
	ck_assert_msg(strstr(log, "4096 of its") != NULL && strstr(log, "the first at offset "
	    "8192 (Input/output error)") != NULL, "no unreadable-page line in:\n%s", log);
	ck_assert_msg(strstr(log, "is lost unless a restart reads it once the disk gives the page "
	    "back") != NULL, "the record it can name not said lost-until-readable in:\n%s", log);
	ck_assert_msg(strstr(log, "bytes whose record headers cannot be read: what they held is "
	    "unknown until a restart") != NULL, "the records after it not mentioned in:\n%s", log);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, size);	/* nothing cut off */
	ck_assert_int_eq(stat(kept, &st), 0);
	ck_assert_int_eq(st.st_size, size);
	spool_close(sp);
	loaded_free(&l);

	/* the disk reads the page again: every message is back */
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, N);
	spool_close(sp);
	loaded_free(&l);
	free(log);
	free(path);
	free(kept);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

/* Commits a message whose body is `text` from `sender`; returns where. */
static struct done
commit_text(struct event_base *base, struct spool *sp, const char *sender, const char *text,
    size_t len, char id[QID_SIZE])
{
	struct done d = commit_one(base, sp, sender, "r@example.net", "Received: test\r\n", text,
	    len, id);

	ck_assert_int_eq(d.error, 0);
	return d;
}

/*
 * A message whose text carries records a client could forge (a DONE of
 * an acknowledged message, a MSG from forged@example.com; old layout with
 * a correct CRC, sealed layout with guessed seals) is torn the ways a
 * crash tears it: its header and envelope never written (a spilled body is
 * copied before its header: kill -9 in between), only its first 16 bytes
 * lost, its body cut in the middle (power loss), and the first again in a
 * segment that is not the newest.  Recovery brings back exactly the
 * acknowledged messages: nothing forged is obeyed.
 */
START_TEST(forged_records_in_a_torn_message_are_not_obeyed)
{
	static const char *tears[] = { "no header", "16 bytes lost", "body cut", "older segment" };

	for (int tear = 0; tear < 4; tear++) {
		struct event_base *base = event_base_new();
		char *dir = mktmpdir();
		char err[256], ida[QID_SIZE], idb[QID_SIZE], idc[QID_SIZE], idd[QID_SIZE];
		struct loaded l = { { NULL }, 0 };
		size_t len;

		struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
		ck_assert_msg(sp != NULL, "%s", err);
		commit_text(base, sp, "a@example.com", "A\r\n", 3, ida);
		struct done db = commit_text(base, sp, "b@example.com", "B\r\n", 3, idb);
		char *text = forged_text(qidv(ida), 100000, &len);
		struct done dc = commit_text(base, sp, "c@example.com", text, len, idc);
		ck_assert_uint_eq(db.loc.seg, dc.loc.seg);
		if (tear == 3) {
			spool_set_segment_max(sp, 1);
			struct done dd = commit_text(base, sp, "d@example.com", "D\r\n", 3, idd);
			ck_assert_uint_gt(dd.loc.seg, dc.loc.seg);
		}
		spool_close(sp);

		char *path = seg_path(dir, dc.loc.seg);
		off_t start = (off_t)(db.loc.off + db.loc.len);	/* C's record */
		if (tear == 1)
			file_zero(path, start, 16);
		else if (tear == 2)
			ck_assert_int_eq(truncate(path, (off_t)(dc.loc.off + dc.loc.len / 2)), 0);
		else
			file_zero(path, start, (size_t)((off_t)dc.loc.off - start));

		sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
		ck_assert_msg(sp != NULL, "%s", err);
		ck_assert_msg(loaded_has(&l, ida, "a@example.com"),
		    "%s: a forged DONE deleted an acknowledged message", tears[tear]);
		ck_assert_msg(!loaded_has(&l, NULL, "forged@example.com"),
		    "%s: a forged MSG record was obeyed", tears[tear]);
		ck_assert_msg(loaded_has(&l, idb, "b@example.com"), "%s: B lost", tears[tear]);
		ck_assert_msg(!loaded_has(&l, idc, NULL), "%s: the torn message came back", tears[tear]);
		if (tear == 3)
			ck_assert_msg(loaded_has(&l, idd, "d@example.com"), "%s: D lost", tears[tear]);
		ck_assert_uint_eq(l.n, tear == 3 ? 3 : 2);
		spool_close(sp);
		free(path);
		free(text);
		test_end(base, dir, &l);
	}
}
END_TEST

/* A MSG record in the old layout whose header and envelope were never
 * written (zeros), its text present: what a crash left in a version-1
 * spool between copying a spilled body and writing its header. */
static void
torn_v1(struct buf *seg, uint64_t qid, const char *text, size_t len)
{
	struct buf p, r;

	buf_init(&p);
	buf_init(&r);
	msg_payload_n(&p, qid, "torn@example.com", "r@example.net", text, len);
	rec_v1(&r, 1, &p);
	memset(r.p, 0, r.len - len);
	buf_add(seg, r.p, r.len);
	buf_free(&p);
	buf_free(&r);
}

static void
msg_v1(struct buf *seg, const char *id, const char *sender)
{
	struct buf p;

	buf_init(&p);
	msg_payload(&p, qidv(id), sender, "r@example.net", "Subject: old\r\n\r\nold format\r\n");
	rec_v1(seg, 1, &p);
	buf_free(&p);
}

/*
 * Segments of the old format (version 1) left by an older relayd that
 * crashed: torn messages whose text carries forged records with a correct
 * CRC.  They are read sequentially, never by searching for the next
 * record: the torn tail of the newest is cut off, and in an older one
 * whatever follows the damage is left unread (and said so), since in that
 * format message text cannot be told from records.
 */
START_TEST(old_format_segments_are_read_sequentially)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256], ida[QID_SIZE], idb[QID_SIZE], idg[QID_SIZE], idh[QID_SIZE];
	struct loaded l = { { NULL }, 0 };
	struct buf s1, s2;
	size_t len;

	ck_assert_int_eq(mkdir(dir, 0700), 0);
	qid_next(ida);
	qid_next(idb);
	qid_next(idg);
	qid_next(idh);
	buf_init(&s1);
	buf_init(&s2);
	msg_v1(&s1, ida, "a@example.com");
	msg_v1(&s1, idb, "b@example.com");
	/* a recipient's state, as an old relayd recorded it: applied */
	struct buf rp;
	buf_init(&rp);
	le(&rp, qidv(ida), 8);
	le(&rp, 0, 4);
	le(&rp, SPOOL_RCPT_PENDING, 1);
	le(&rp, 2, 2);
	le(&rp, 4242, 8);
	lestr(&rp, "connect to h[127.0.0.1]:25: Connection refused");
	lestr(&rp, "4.4.1");
	rec_v1(&s1, 2, &rp);
	buf_free(&rp);
	char *text = forged_text(qidv(ida), 40000, &len);
	torn_v1(&s1, qidv(ida) + 5, text, len);
	free(text);
	msg_v1(&s1, idg, "g@example.com");	/* after the damage: not read */
	msg_v1(&s2, idh, "h@example.com");
	size_t h_end = s2.len;
	text = forged_text(qidv(idh), 40000, &len);
	torn_v1(&s2, qidv(idh) + 5, text, len);
	free(text);
	char *p1 = seg_path(dir, 1), *p2 = seg_path(dir, 2);
	file_write(p1, s1.p, s1.len);
	file_write(p2, s2.p, s2.len);

	capture_start();
	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	char *log = capture_end();
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_msg(loaded_has(&l, ida, "a@example.com"), "a forged DONE deleted A");
	ck_assert_msg(loaded_has(&l, idh, "h@example.com"), "a forged DONE deleted H");
	ck_assert_msg(!loaded_has(&l, NULL, "forged@example.com"), "a forged MSG was obeyed");
	ck_assert_msg(loaded_has(&l, idb, "b@example.com"), "B lost");
	ck_assert_msg(!loaded_has(&l, NULL, "torn@example.com"), "a torn message came back");
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.env[0]->id, ida);
	ck_assert_uint_eq(l.env[0]->rcpts[0].attempts, 2);
	ck_assert_int_eq(l.env[0]->rcpts[0].next_attempt, 4242);
	ck_assert_str_eq(l.env[0]->rcpts[0].dsn, "4.4.1");
	/* the older segment's unread rest is reported, the newest one cut */
	ck_assert_msg(strstr(log, "0000000000000001.seg") && strstr(log, "not read"), "%s", log);
	struct stat st;
	ck_assert_int_eq(stat(p2, &st), 0);
	ck_assert_int_eq(st.st_size, (off_t)h_end);
	spool_close(sp);
	free(log);
	free(p1);
	free(p2);
	buf_free(&s1);
	buf_free(&s2);
	test_end(base, dir, &l);
}
END_TEST

/* A bad block in the middle of a segment (a record's header zeroed): the
 * records after it are found again (by their segment's seal) and read. */
START_TEST(damaged_header_is_skipped_not_the_rest)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256], id[4][QID_SIZE];
	struct loaded l = { { NULL }, 0 };
	struct done d[4];

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	for (int i = 0; i < 3; i++)
		d[i] = commit_text(base, sp, "a@example.com", "some text\r\n", 11, id[i]);
	spool_set_segment_max(sp, 1);
	d[3] = commit_text(base, sp, "a@example.com", "newer\r\n", 7, id[3]);
	ck_assert_uint_gt(d[3].loc.seg, d[2].loc.seg);
	spool_close(sp);
	char *path = seg_path(dir, d[1].loc.seg);
	file_zero(path, (off_t)(d[0].loc.off + d[0].loc.len), 32);

	capture_start();
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	char *log = capture_end();
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.env[0]->id, id[0]);
	ck_assert_str_eq(l.env[1]->id, id[2]);
	ck_assert_str_eq(l.env[2]->id, id[3]);
	ck_assert_msg(strstr(log, "damaged") != NULL, "%s", log);
	spool_close(sp);
	free(log);
	free(path);
	test_end(base, dir, &l);
}
END_TEST

/*
 * A segment whose header (its seal) is damaged cannot be read safely: it
 * is set aside as NAME.damaged, said so, and the rest of the spool is
 * read.  A segment of a newer format makes the spool unusable, with a
 * reason, rather than being misread.
 */
START_TEST(damaged_segment_header_and_newer_format)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256], ida[QID_SIZE], idb[QID_SIZE];
	struct loaded l = { { NULL }, 0 };

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	struct done da = commit_text(base, sp, "a@example.com", "A\r\n", 3, ida);
	spool_set_segment_max(sp, 1);
	struct done db = commit_text(base, sp, "b@example.com", "B\r\n", 3, idb);
	ck_assert_uint_gt(db.loc.seg, da.loc.seg);
	spool_close(sp);
	char *pa = seg_path(dir, da.loc.seg);
	file_zero(pa, 0, 48);

	capture_start();
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	char *log = capture_end();
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.env[0]->id, idb);
	char *aside = xasprintf("%s.damaged", pa);
	ck_assert_int_eq(access(aside, F_OK), 0);
	ck_assert_msg(strstr(log, ".seg.damaged") && strstr(log, "segment header is damaged"),
	    "%s", log);
	spool_close(sp);
	loaded_free(&l);
	free(log);

	/* a segment written by a newer relayd (format 3) */
	struct buf nb;
	buf_init(&nb);
	buf_add(&nb, "RLYR\x05\x03\0\0\x10\0\0\0\0\0\0\0", 16);
	for (int i = 0; i < 32; i++)
		buf_add(&nb, "z", 1);
	char *pn = seg_path(dir, 9);
	file_write(pn, nb.p, nb.len);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_ptr_null(sp);
	ck_assert_msg(strstr(err, "0000000000000009.seg") && strstr(err, "newer relayd"), "%s", err);
	buf_free(&nb);
	free(pn);
	free(aside);
	free(pa);
	test_end(base, dir, &l);
}
END_TEST

START_TEST(lock_debris_and_empty_segments)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	struct spool *sp2 = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_ptr_null(sp2);
	ck_assert_msg(strstr(err, "in use by another relayd") != NULL, "%s", err);
	spool_close(sp);

	/* debris of a named temporary file left by a crash */
	char *tmp = xasprintf("%s/tmp.deadbeef.0", dir);
	int fd = open(tmp, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	for (int i = 0; i < 3; i++) {
		sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
		ck_assert_msg(sp != NULL, "%s", err);
		spool_close(sp);
	}
	ck_assert_int_eq(access(tmp, F_OK), -1);
	/* segments without live messages do not pile up across restarts */
	ck_assert_int_le(count_segments(dir), 1);
	struct stat st;
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	free(tmp);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

START_TEST(unusable_directory_is_reported)
{
	struct event_base *base = event_base_new();
	char err[256] = "";
	struct loaded l = { { NULL }, 0 };

	struct spool *sp = spool_open("/proc/relayd-no-such/spool", geteuid(), base, load_cb, &l, err,
	    sizeof(err));
	ck_assert_ptr_null(sp);
	ck_assert_msg(strstr(err, "/proc/relayd-no-such/spool") != NULL, "%s", err);
	event_base_free(base);
}
END_TEST

/*
 * relayd works inside its spool as root: a directory others may write to
 * is refused, and a symbolic link planted as a segment or as the lock is
 * never followed (the file it points to is neither truncated nor created).
 */
START_TEST(spool_refuses_open_directories_and_links)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[512];
	struct loaded l = { { NULL }, 0 };

	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(chmod(dir, 0770), 0);
	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_ptr_null(sp);
	ck_assert_msg(strstr(err, dir) && strstr(err, "chmod 0700"), "%s", err);
	ck_assert_int_eq(chmod(dir, 0700), 0);

	char *target = xasprintf("%s.target", dir);
	char *seg = seg_path(dir, 5), *lock = xasprintf("%s/lock", dir);
	file_write(target, "VICTIM\n", 7);
	ck_assert_int_eq(symlink(target, seg), 0);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_ptr_null(sp);
	ck_assert_msg(strstr(err, seg) && strstr(err, "symbolic link"), "%s", err);
	struct stat st;
	ck_assert_int_eq(stat(target, &st), 0);
	ck_assert_int_eq(st.st_size, 7);
	ck_assert_int_eq(unlink(seg), 0);

	ck_assert_int_eq(unlink(lock), 0);	/* made by the first attempt */
	ck_assert_int_eq(unlink(target), 0);
	ck_assert_int_eq(symlink(target, lock), 0);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_ptr_null(sp);
	ck_assert_msg(strstr(err, lock) && strstr(err, "symbolic link"), "%s", err);
	ck_assert_int_eq(access(target, F_OK), -1);
	ck_assert_int_eq(unlink(lock), 0);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	spool_close(sp);
	free(target);
	free(seg);
	free(lock);
	test_end(base, dir, NULL);
}
END_TEST

/* Waits (bounded) until n callbacks have come. */
static void
wait_calls(struct event_base *base, const int *calls, int n)
{
	for (int i = 0; i < 500 && *calls < n; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	ck_assert_int_eq(*calls, n);
}

static void
count_cb(void *arg, int error, const struct spool_loc *loc)
{
	int *calls = arg;

	ck_assert_int_eq(error, 0);
	(*calls)++;
}

START_TEST(state_records_survive_restart)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id[QID_SIZE];
	int calls = 0;

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	struct done d = commit_one(base, sp, "a@example.com", "x@example.net", "", "t\r\n", 3, id);
	ck_assert_int_eq(d.error, 0);
	spool_close(sp);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_uint_eq(l.n, 1);
	struct spool_envelope *env = l.env[0];

	/* two attempts recorded; the last one counts */
	env->rcpts[0].status = SPOOL_RCPT_PENDING;
	env->rcpts[0].attempts = 1;
	env->rcpts[0].next_attempt = 1000;
	env->rcpts[0].last_error = xstrdup("connect to h[127.0.0.1]:25: Connection refused");
	snprintf(env->rcpts[0].dsn, sizeof(env->rcpts[0].dsn), "4.4.1");
	spool_commit_rcpt(sp, env, 0, count_cb, &calls);
	env->rcpts[0].attempts = 2;
	env->rcpts[0].next_attempt = 2000;
	spool_commit_rcpt(sp, env, 0, NULL, NULL);	/* no callback: still durable */
	spool_commit_rcpt(sp, env, 0, count_cb, &calls);
	wait_calls(base, &calls, 2);
	spool_close(sp);
	loaded_free(&l);

	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.env[0]->id, id);
	ck_assert_uint_eq(l.env[0]->rcpts[0].attempts, 2);
	ck_assert_int_eq(l.env[0]->rcpts[0].next_attempt, 2000);
	ck_assert_str_eq(l.env[0]->rcpts[0].dsn, "4.4.1");
	ck_assert_str_eq(l.env[0]->rcpts[0].last_error,
	    "connect to h[127.0.0.1]:25: Connection refused");

	/* retire it: gone after a restart */
	calls = 0;
	spool_commit_done(sp, l.env[0], count_cb, &calls);
	wait_calls(base, &calls, 1);
	spool_close(sp);
	loaded_free(&l);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_uint_eq(l.n, 0);
	spool_close(sp);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

START_TEST(retired_segments_are_reclaimed_oldest_first)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id[4][QID_SIZE];
	struct done d[4];
	int calls = 0;

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	spool_set_segment_max(sp, 1);	/* every commit starts a new segment */
	for (int i = 0; i < 4; i++) {
		d[i] = commit_one(base, sp, "a@example.com", "x@example.net", "", "t\r\n", 3, id[i]);
		ck_assert_int_eq(d[i].error, 0);
		if (i > 0)
			ck_assert_uint_gt(d[i].loc.seg, d[i - 1].loc.seg);
	}
	ck_assert_int_eq(count_segments(dir), 4);

	struct spool_envelope env;
	memset(&env, 0, sizeof(env));
	/* retiring the second keeps everything: the first still pins its segment */
	memcpy(env.id, id[1], QID_SIZE);
	env.loc = d[1].loc;
	spool_commit_done(sp, &env, count_cb, &calls);
	wait_calls(base, &calls, 1);
	ck_assert_int_eq(count_segments(dir), 5);	/* + the DONE's segment */
	/* retiring the first frees the first two */
	memcpy(env.id, id[0], QID_SIZE);
	env.loc = d[0].loc;
	spool_commit_done(sp, &env, count_cb, &calls);
	wait_calls(base, &calls, 2);
	/* the reclaim runs in the committer after the callback: give it a
	 * moment, until its count of segments is updated too */
	struct spool_stats st;
	for (int i = 0; i < 200; i++) {
		spool_get_stats(sp, &st);
		if (count_segments(dir) <= 4 && st.segments == (uint64_t)count_segments(dir))
			break;
		usleep(10000);
	}
	char *seg1 = xasprintf("%s/%016llx.seg", dir, (unsigned long long)d[0].loc.seg);
	char *seg2 = xasprintf("%s/%016llx.seg", dir, (unsigned long long)d[1].loc.seg);
	char *seg3 = xasprintf("%s/%016llx.seg", dir, (unsigned long long)d[2].loc.seg);
	ck_assert_int_eq(access(seg1, F_OK), -1);
	ck_assert_int_eq(access(seg2, F_OK), -1);
	ck_assert_int_eq(access(seg3, F_OK), 0);
	spool_get_stats(sp, &st);
	ck_assert_uint_eq(st.segments, (uint64_t)count_segments(dir));
	/* the text of a live message is still readable */
	int fd = spool_text_fd(sp, &d[3].loc);
	char t[4] = "";
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, t, 3, (off_t)d[3].loc.off), 3);
	ck_assert_int_eq(memcmp(t, "t\r\n", 3), 0);
	spool_close(sp);

	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.env[0]->id, id[2]);
	ck_assert_str_eq(l.env[1]->id, id[3]);
	spool_close(sp);
	loaded_free(&l);
	free(seg1);
	free(seg2);
	free(seg3);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

/* A record nobody waits for rides along with the next commit somebody does
 * wait for; without one, it is made durable after the lazy bound anyway. */
START_TEST(lazy_records_ride_along_or_wait_their_bound)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id[3][QID_SIZE];
	struct spool_stats s0, s1;

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(commit_one(base, sp, "a@example.com", "x@example.net", "",
		    "t\r\n", 3, id[i]).error, 0);

	/* lazy DONE of the first, then a message that is waited for: one
	 * commit holds both (the bound is far off, so nothing else syncs) */
	spool_set_lazy_max(sp, 60000);
	struct spool_envelope env;
	memset(&env, 0, sizeof(env));
	memcpy(env.id, id[0], QID_SIZE);
	spool_get_stats(sp, &s0);
	spool_commit_done(sp, &env, NULL, NULL);
	ck_assert_int_eq(commit_one(base, sp, "a@example.com", "x@example.net", "",
	    "t\r\n", 3, id[2]).error, 0);
	spool_get_stats(sp, &s1);
	ck_assert_uint_eq(s1.commits, s0.commits + 1);
	ck_assert_uint_eq(s1.records, s0.records + 2);

	/* alone, a lazy record still becomes durable, after its bound */
	spool_set_lazy_max(sp, 50);
	memcpy(env.id, id[1], QID_SIZE);
	spool_commit_done(sp, &env, NULL, NULL);
	for (int i = 0; i < 500 && s1.records < s0.records + 3; i++) {
		usleep(10000);
		spool_get_stats(sp, &s1);
	}
	ck_assert_uint_eq(s1.records, s0.records + 3);
	ck_assert_uint_eq(s1.commits, s0.commits + 2);

	/* a lazy record still waiting when the spool closes is written then */
	char id4[QID_SIZE];
	ck_assert_int_eq(commit_one(base, sp, "a@example.com", "x@example.net", "",
	    "t\r\n", 3, id4).error, 0);
	spool_set_lazy_max(sp, 60000);
	memcpy(env.id, id4, QID_SIZE);
	spool_commit_done(sp, &env, NULL, NULL);

	/* what was retired stays retired: only the third message comes back */
	spool_close(sp);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.env[0]->id, id[2]);
	spool_close(sp);
	loaded_free(&l);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

/*
 * Bytes of [0, len) of a file that the filesystem holds as unwritten
 * (preallocated, never written) extents; -1 where FIEMAP is not supported
 * (tmpfs, say).
 */
static long long
unwritten_bytes(const char *path, unsigned long long len)
{
	enum { NEXT = 64 };
	struct fiemap *fm = xcalloc(1, sizeof(*fm) + NEXT * sizeof(struct fiemap_extent));
	int fd = open(path, O_RDONLY);
	long long n = 0;

	ck_assert_int_ge(fd, 0);
	fm->fm_start = 0;
	fm->fm_length = len;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = NEXT;
	if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0)
		n = -1;
	for (unsigned i = 0; n >= 0 && i < fm->fm_mapped_extents; i++) {
		const struct fiemap_extent *e = &fm->fm_extents[i];
		unsigned long long a = e->fe_logical, b = e->fe_logical + e->fe_length;

		if (!(e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) || a >= len)
			continue;
		n += (long long)((b < len ? b : len) - a);
	}
	close(fd);
	free(fm);
	return n;
}

/* Waits (bounded) until the committer has written ahead at least `want`
 * bytes in all; returns what it has. */
static uint64_t
wait_prepared(struct spool *sp, uint64_t want)
{
	struct spool_stats st;

	spool_get_stats(sp, &st);
	for (int i = 0; i < 500 && st.prepared < want; i++) {
		usleep(10000);
		spool_get_stats(sp, &st);
	}
	return st.prepared;
}

/* The idle committer writes ahead of the tail, so that commits overwrite
 * written blocks instead of converting preallocated ones; the records
 * written there, and the zeros after them, read back as before. */
START_TEST(idle_committer_writes_ahead)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id[2][QID_SIZE];
	struct spool_stats st;

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_ge(wait_prepared(sp, 1u << 20), 1u << 20);
	spool_get_stats(sp, &st);
	ck_assert_uint_eq(st.commits, 0);	/* writing ahead is not a commit */
	ck_assert_uint_eq(st.records, 0);

	char *seg = xasprintf("%s/%016llx.seg", dir, 1ULL);
	long long unwritten = unwritten_bytes(seg, 1u << 20);
	if (unwritten >= 0)
		ck_assert_int_eq(unwritten, 0);

	/* a small message, then one of 600 KiB: the write-ahead follows the
	 * tail to stay 1 MiB in front of it */
	struct done d = commit_one(base, sp, "a@example.com", "x@example.net", "P: 1\r\n",
	    "small\r\n", 7, id[0]);
	ck_assert_int_eq(d.error, 0);
	size_t biglen = 600u << 10;
	char *big = xmalloc(biglen);
	for (size_t i = 0; i < biglen; i++)
		big[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
	d = commit_one(base, sp, "b@example.com", "y@example.net", "", big, biglen, id[1]);
	ck_assert_int_eq(d.error, 0);
	uint64_t tail = d.loc.off + d.loc.len;
	ck_assert_uint_ge(wait_prepared(sp, tail + (1u << 20) - 4096), tail + (1u << 20) - 4096);
	unwritten = unwritten_bytes(seg, tail + (1u << 20) - (256u << 10));
	if (unwritten >= 0)
		ck_assert_int_eq(unwritten, 0);
	spool_get_stats(sp, &st);
	ck_assert_uint_eq(st.commits, 2);

	/* nothing written ahead touched the records */
	char *text = read_text(dir, &d.loc);
	ck_assert_int_eq(memcmp(text, big, biglen), 0);
	free(text);
	spool_close(sp);
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.env[0]->id, id[0]);
	ck_assert_str_eq(l.env[1]->id, id[1]);
	ck_assert_uint_eq(l.env[1]->loc.len, biglen);
	spool_close(sp);
	loaded_free(&l);
	free(big);
	free(seg);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

/* A message deferred long enough would pin its segment and all newer ones:
 * relocating it writes it again, with its current state, and the old
 * segments go. */
START_TEST(relocation_frees_old_segments)
{
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id[4][QID_SIZE];
	struct done d[4];
	int calls = 0;

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	spool_set_segment_max(sp, 1);	/* a segment per commit */
	d[0] = commit_one(base, sp, "old@example.com", "x@example.net", "P: 1\r\n",
	    "the long-deferred one\r\n", 23, id[0]);
	for (int i = 1; i < 4; i++)
		d[i] = commit_one(base, sp, "a@example.com", "y@example.net", "", "t\r\n", 3, id[i]);
	ck_assert_uint_eq(spool_compact_candidate(sp), d[0].loc.seg);

	/* the first message's recipient was tried meanwhile: its state travels */
	struct spool_envelope env;
	struct spool_rcpt rc;
	memset(&env, 0, sizeof(env));
	memset(&rc, 0, sizeof(rc));
	memcpy(env.id, id[0], QID_SIZE);
	env.arrival = 1;
	env.sender = "old@example.com";
	env.nrcpt = 1;
	env.rcpts = &rc;
	rc.addr = "x@example.net";
	rc.attempts = 3;
	rc.next_attempt = 4242;
	snprintf(rc.dsn, sizeof(rc.dsn), "4.4.1");
	rc.last_error = "connect to h[127.0.0.1]:25: Connection refused";
	env.loc = d[0].loc;

	struct done rel = { 0, -1, { 0, 0, 0 } };
	spool_relocate(sp, &env, done_cb, &rel);
	wait_calls(base, &rel.calls, 1);
	ck_assert_int_eq(rel.error, 0);
	ck_assert_uint_gt(rel.loc.seg, d[3].loc.seg);
	ck_assert_uint_eq(rel.loc.len, d[0].loc.len);
	char *t = read_text(dir, &rel.loc);
	ck_assert_str_eq(t, "P: 1\r\nthe long-deferred one\r\n");
	free(t);
	/* retire the others: then only the relocated copy's segment is needed */
	for (int i = 1; i < 4; i++) {
		struct spool_envelope e2;

		memset(&e2, 0, sizeof(e2));
		memcpy(e2.id, id[i], QID_SIZE);
		e2.loc = d[i].loc;
		spool_commit_done(sp, &e2, count_cb, &calls);
	}
	wait_calls(base, &calls, 3);
	char *seg0 = xasprintf("%s/%016llx.seg", dir, (unsigned long long)d[0].loc.seg);
	for (int i = 0; i < 200 && access(seg0, F_OK) == 0; i++)
		usleep(10000);
	ck_assert_int_eq(access(seg0, F_OK), -1);	/* the pinned segment is gone */
	spool_close(sp);

	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.env[0]->id, id[0]);
	ck_assert_uint_eq(l.env[0]->loc.seg, rel.loc.seg);
	ck_assert_uint_eq(l.env[0]->rcpts[0].attempts, 3);
	ck_assert_int_eq(l.env[0]->rcpts[0].next_attempt, 4242);
	ck_assert_str_eq(l.env[0]->rcpts[0].dsn, "4.4.1");
	t = read_text(dir, &l.env[0]->loc);
	ck_assert_str_eq(t, "P: 1\r\nthe long-deferred one\r\n");
	free(t);
	spool_close(sp);
	loaded_free(&l);
	free(seg0);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

/*
 * SPOOL_F_SIGPEND: a message committed while it was being signed, its
 * signatures in a SIG record of their own (in a later segment here), or
 * lost to a crash before that record; a relocation joins them to the text.
 */
START_TEST(signatures_kept_apart)
{
	static const char text[] = "From: a@example.com\r\n\r\nbody\r\n";
	static const char sig1[] = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\r\n"
	    "\tb=c2lnbmF0dXJl\r\n";
	static const char sig3[] = "DKIM-Signature: v=1; b=aW4gbWVtb3J5\r\n";
	struct event_base *base = event_base_new();
	char *dir = mktmpdir();
	char err[256];
	struct loaded l = { { NULL }, 0 };
	char id[3][QID_SIZE];
	struct done d[3];
	struct spool_rcpt rc[3];
	struct spool_envelope env[3];
	size_t tl = strlen(text);

	struct spool *sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	spool_set_segment_max(sp, 1);	/* a segment per commit */
	for (int i = 0; i < 3; i++) {
		d[i] = commit_flags(base, sp, SPOOL_F_SIGPEND, "a@example.com", "x@example.net",
		    "Received: by test\r\n", text, tl, id[i]);
		ck_assert_int_eq(d[i].error, 0);
		memset(&env[i], 0, sizeof(env[i]));
		memset(&rc[i], 0, sizeof(rc[i]));
		memcpy(env[i].id, id[i], QID_SIZE);
		env[i].flags = SPOOL_F_SIGPEND;
		env[i].sender = "a@example.com";
		env[i].nrcpt = 1;
		env[i].rcpts = &rc[i];
		rc[i].addr = "x@example.net";
		env[i].loc = d[i].loc;
	}
	/* the first one's signatures: lazy, yet reported once durable */
	struct done ds = { 0, -1, { 0, 0, 0 } };
	spool_commit_sigs(sp, &env[0], sig1, strlen(sig1), done_cb, &ds);
	wait_calls(base, &ds.calls, 1);
	ck_assert_int_eq(ds.error, 0);
	ck_assert_uint_gt(ds.loc.seg, d[0].loc.seg);
	ck_assert_uint_eq(ds.loc.len, strlen(sig1));
	/* the second's never come (a crash); the third's are in memory only */
	spool_close(sp);

	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	spool_set_segment_max(sp, 1);
	ck_assert_uint_eq(l.n, 3);
	struct buf b;
	buf_init(&b);
	ck_assert_str_eq(l.env[0]->id, id[0]);
	ck_assert_uint_ne(l.env[0]->flags & SPOOL_F_SIGPEND, 0);
	ck_assert_uint_eq(l.env[0]->sigloc.seg, ds.loc.seg);
	ck_assert_uint_eq(l.env[0]->sigloc.len, strlen(sig1));
	ck_assert_int_eq(spool_read_sigs(sp, l.env[0], &b), 1);
	ck_assert_str_eq(b.p, sig1);
	ck_assert_uint_eq(spool_envelope_size(l.env[0]), d[0].loc.len + strlen(sig1));
	ck_assert_str_eq(l.env[1]->id, id[1]);
	ck_assert_uint_ne(l.env[1]->flags & SPOOL_F_SIGPEND, 0);
	ck_assert_uint_eq(l.env[1]->sigloc.len, 0);
	buf_reset(&b);
	ck_assert_int_eq(spool_read_sigs(sp, l.env[1], &b), 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(spool_envelope_size(l.env[1]), d[1].loc.len);
	l.env[2]->sigs = xstrdup(sig3);
	l.env[2]->siglen = strlen(sig3);
	ck_assert_uint_eq(spool_envelope_size(l.env[2]), d[2].loc.len + strlen(sig3));

	/* relocation: the signatures, from disk or memory, join the text;
	 * without any the message stays one to sign again */
	struct done rel[3];
	for (int i = 0; i < 3; i++) {
		rel[i] = (struct done){ 0, -1, { 0, 0, 0 } };
		spool_relocate(sp, l.env[i], done_cb, &rel[i]);
	}
	for (int i = 0; i < 3; i++) {
		wait_calls(base, &rel[i].calls, 1);
		ck_assert_int_eq(rel[i].error, 0);
		spool_envelope_moved(l.env[i], &rel[i].loc);
	}
	const char *want[3] = { sig1, "", sig3 };
	for (int i = 0; i < 3; i++) {
		char *t = read_text(dir, &rel[i].loc);
		char *w = xasprintf("%sReceived: by test\r\n%s", want[i], text);

		ck_assert_str_eq(t, w);
		free(t);
		free(w);
	}
	ck_assert_uint_eq(l.env[0]->flags & SPOOL_F_SIGPEND, 0);
	ck_assert_uint_eq(l.env[0]->sigloc.len, 0);
	ck_assert_uint_ne(l.env[1]->flags & SPOOL_F_SIGPEND, 0);
	ck_assert_uint_eq(l.env[2]->flags & SPOOL_F_SIGPEND, 0);
	ck_assert_ptr_null(l.env[2]->sigs);
	spool_close(sp);
	loaded_free(&l);

	/* and so they come back, the SIG record of the old copy ignored */
	sp = spool_open(dir, geteuid(), base, load_cb, &l, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 3);
	for (int i = 0; i < 3; i++) {
		char *t = read_text(dir, &l.env[i]->loc);
		char *w = xasprintf("%sReceived: by test\r\n%s", want[i], text);

		ck_assert_str_eq(t, w);
		ck_assert_uint_eq(l.env[i]->flags & SPOOL_F_SIGPEND,
		    i == 1 ? SPOOL_F_SIGPEND : 0);
		ck_assert_uint_eq(l.env[i]->sigloc.len, 0);
		free(t);
		free(w);
	}
	buf_free(&b);
	spool_close(sp);
	loaded_free(&l);
	rm_rf(dir);
	free(dir);
	event_base_free(base);
}
END_TEST

Suite *
spool_suite(void)
{
	Suite *s = suite_create("spool");
	TCase *tc = tcase_create("core");

	log_init(true, false);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, crc32c_known_vectors);
	tcase_add_test(tc, idmap_put_get_del);
	tcase_add_test(tc, commit_and_recover);
	tcase_add_test(tc, torn_tail_is_cut_off);
	tcase_add_test(tc, damaged_record_is_skipped_not_the_rest);
	tcase_add_test(tc, unreadable_page_read_around);
	tcase_add_test(tc, forged_records_in_a_torn_message_are_not_obeyed);
	tcase_add_test(tc, old_format_segments_are_read_sequentially);
	tcase_add_test(tc, damaged_header_is_skipped_not_the_rest);
	tcase_add_test(tc, damaged_segment_header_and_newer_format);
	tcase_add_test(tc, lock_debris_and_empty_segments);
	tcase_add_test(tc, unusable_directory_is_reported);
	tcase_add_test(tc, spool_refuses_open_directories_and_links);
	tcase_add_test(tc, state_records_survive_restart);
	tcase_add_test(tc, retired_segments_are_reclaimed_oldest_first);
	tcase_add_test(tc, relocation_frees_old_segments);
	tcase_add_test(tc, signatures_kept_apart);
	tcase_add_test(tc, lazy_records_ride_along_or_wait_their_bound);
	tcase_add_test(tc, idle_committer_writes_ahead);
	suite_add_tcase(s, tc);
	return s;
}
