/*
 * fuzz_spool — spool records and segment recovery (spool.c), from
 * segments written here with an encoder of our own (the format of
 * spool.c's opening comment), then torn, corrupted and interleaved with
 * junk as the input says, and recovered into a temporary spool directory
 * on tmpfs (spool_recover_dir: recovery as spool_open does it).
 *
 * Input: one octet of set-up (bit 0: the old format, version 1, without
 * a seal), then operations until the input ends, each an octet and its
 * arguments: a MSG, RCPT, DONE or SIG record (queue ids 1 to 16, fields
 * and text from the input, a record of an unknown type), the start of the
 * next segment, raw octets, and damage done at the end: a flipped octet,
 * a range zeroed, the file cut short, a page the disk cannot give back
 * (EIO, through relayd's test hook).  Properties:
 *  - nothing is recovered whose record check fails: every message loaded
 *    lies in a MSG record at that place whose header is whole, whose
 *    seal is the segment's (version 2) and whose CRC-32C holds, and it is
 *    that record's message (queue id, sender, text);
 *  - with no junk and no damage that still passes the check (and the
 *    seal nowhere but in headers), recovery gives exactly the queue the
 *    records say, as an independent model reads them: a MSG queues a
 *    message (or replaces it), a RCPT sets a recipient's state, a SIG
 *    gives a signed-apart message its signatures, a DONE retires it, and
 *    a damaged record is lost alone (version 2; in version 1 the rest of
 *    its segment is unread, so there damage is only checked for the
 *    first property);
 *  - a segment with an unreadable page is kept whole as SEGMENT.damaged
 *    (the page reads as zeros, which is the damage the model sees).
 */
#include "acconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "fuzz.h"
#include "qid.h"
#include "spool.h"
#include "util.h"

#define MAGIC		0x52594c52u
#define T_MSG		1
#define T_RCPT		2
#define T_DONE		3
#define T_SIG		4
#define T_SEG		5
#define NSEG_MAX	4
#define NQID		16
#define NULLSTR		0xffffffffu

static char dir[64];

static void clear_dir(void);

static void
remove_dir(void)
{
	clear_dir();
	rmdir(dir);
}

/* What a target that crashed left in /dev/shm (its process is gone). */
static void
remove_stale(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;

	while (d != NULL && (de = readdir(d)) != NULL) {
		long pid;

		if (sscanf(de->d_name, "relayd-fuzz-spool.%ld", &pid) == 1 && pid > 0 &&
		    kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
			snprintf(dir, sizeof(dir), "/dev/shm/%s", de->d_name);
			remove_dir();
		}
	}
	if (d != NULL)
		closedir(d);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	remove_stale();
	snprintf(dir, sizeof(dir), "/dev/shm/relayd-fuzz-spool.%ld", (long)getpid());
	atexit(remove_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		/* no /dev/shm: the temporary directory will do */
		snprintf(dir, sizeof(dir), "/tmp/relayd-fuzz-spool.%ld", (long)getpid());
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			perror(dir);
			abort();
		}
	}
	return 0;
}

/* ---- the model: what the records say ------------------------------------ */

struct mrcpt {
	char		*addr, *err;
	char		 dsn[16];
	unsigned	 status, attempts;
	int64_t		 next;
};

struct mmsg {
	bool		 live;
	char		*sender, *route;
	uint32_t	 flags;
	struct mrcpt	 r[3];
	size_t		 nr;
	struct spool_loc loc, sigloc;
};

/* A record written: where, to tell later whether damage touched it. */
struct wrec {
	int		 seg;
	size_t		 off, len;
	int		 type;
	unsigned	 qid;		/* 0: none (SEG, unknown) */
	bool		 valid;		/* its payload is one recovery accepts */
	/* what it does to the model */
	struct mmsg	 msg;		/* T_MSG */
	size_t		 idx;		/* T_RCPT */
	struct mrcpt	 rc;		/* T_RCPT */
	size_t		 siglen;	/* T_SIG */
	bool		 cut;		/* the file was cut short inside it */
};

struct gen {
	bool		 v1;
	unsigned char	 seal[NSEG_MAX][16];
	struct buf	 seg[NSEG_MAX];	/* as written to disk, damage included */
	struct buf	 clean[NSEG_MAX];	/* the same without the damage */
	int		 nseg;
	struct wrec	*w;
	size_t		 nw;
	bool		 junk;		/* raw octets written */
	bool		 damaged;
	/* a page the disk cannot give back (RELAYD_TEST_SPOOL_EIO), chosen
	 * at the end: seg[] holds it as recovery reads it (zeros), the file
	 * what was written (eio_page) */
	int		 eio_seg;	/* -1: none */
	size_t		 eio_off, eio_len;
	unsigned char	 eio_page[4096];
};

static size_t
hdr_len(const struct gen *g)
{
	return g->v1 ? 16 : 32;
}

static void
le(struct buf *b, uint64_t v, int n)
{
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)(v >> (8 * i));

		buf_add(b, &c, 1);
	}
}

static uint64_t
get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A string of the input: a length octet (255: NULL), then its octets. */
static char *
take_str(struct fuzz_in *in, size_t *len, bool *nul)
{
	unsigned n = fuzz_byte(in);
	const uint8_t *p;

	if (n == 255) {
		*len = 0;
		return NULL;
	}
	p = fuzz_bytes(in, n, len);
	if (memchr(p, '\0', *len) != NULL)
		*nul = true;
	return fuzz_dup(p, *len, true);
}

static void
put_str(struct buf *b, const char *s, size_t n)
{
	if (s == NULL) {
		le(b, NULLSTR, 4);
		return;
	}
	le(b, n, 4);
	buf_add(b, s, n);
}

/* Appends a whole record (header, payload) to the current segment. */
static struct wrec *
put_record(struct gen *g, int type, const struct buf *payload)
{
	struct buf *s = &g->seg[g->nseg - 1];
	size_t off = s->len, hl = hdr_len(g);
	unsigned char h[32];
	uint32_t crc;

	memset(h, 0, sizeof(h));
	h[0] = 'R';
	h[1] = 'L';
	h[2] = 'Y';
	h[3] = 'R';
	h[4] = (unsigned char)type;
	h[5] = g->v1 ? 1 : 2;
	for (int i = 0; i < 4; i++)
		h[8 + i] = (unsigned char)(payload->len >> (8 * i));
	if (!g->v1)
		memcpy(h + 16, g->seal[g->nseg - 1], 16);
	crc = crc32c(0, h + 4, 8);
	if (!g->v1)
		crc = crc32c(crc, h + 16, 16);
	crc = crc32c(crc, payload->p, payload->len);
	for (int i = 0; i < 4; i++)
		h[12 + i] = (unsigned char)(crc >> (8 * i));
	buf_add(s, h, hl);
	buf_add(s, payload->p, payload->len);
	buf_add(&g->clean[g->nseg - 1], h, hl);
	buf_add(&g->clean[g->nseg - 1], payload->p, payload->len);
	g->w = xrealloc(g->w, (g->nw + 1) * sizeof(*g->w));
	memset(&g->w[g->nw], 0, sizeof(g->w[g->nw]));
	g->w[g->nw].seg = g->nseg - 1;
	g->w[g->nw].off = off;
	g->w[g->nw].len = hl + payload->len;
	g->w[g->nw].type = type;
	return &g->w[g->nw++];
}

static void
new_segment(struct gen *g)
{
	struct buf p;

	if (g->nseg == NSEG_MAX)
		return;
	buf_init(&g->seg[g->nseg]);
	buf_addstr(&g->seg[g->nseg], "");
	buf_init(&g->clean[g->nseg]);
	buf_addstr(&g->clean[g->nseg], "");
	/* a seal no client text can hold: the tests check none does */
	for (int i = 0; i < 16; i++)
		g->seal[g->nseg][i] = (unsigned char)(0xa5 ^ (i * 37) ^ (g->nseg * 101));
	g->nseg++;
	if (g->v1)
		return;
	buf_init(&p);
	le(&p, (uint64_t)g->nseg, 8);
	le(&p, 1700000000000000ull, 8);
	put_record(g, T_SEG, &p);
	buf_free(&p);
}

static void
gen_msg(struct gen *g, struct fuzz_in *in)
{
	unsigned qid = 1 + fuzz_byte(in) % NQID, nr = 1 + fuzz_byte(in) % 3;
	uint32_t flags = fuzz_byte(in) & 7;
	bool nul = false, ok = true;
	struct buf p;
	struct mmsg m;
	size_t len, slen, rlen, tlen;
	char *text;

	memset(&m, 0, sizeof(m));
	buf_init(&p);
	le(&p, qid, 8);
	le(&p, 1700000000000000ull + qid, 8);
	le(&p, flags, 4);
	le(&p, nr, 4);
	m.sender = take_str(in, &slen, &nul);
	m.route = take_str(in, &rlen, &nul);
	put_str(&p, m.sender, slen);
	put_str(&p, m.route, rlen);
	ok = m.sender != NULL;
	for (unsigned i = 0; i < nr; i++) {
		struct mrcpt *r = &m.r[i];
		size_t el;
		char *dsn;

		r->addr = take_str(in, &len, &nul);
		put_str(&p, r->addr, len);
		ok &= r->addr != NULL;
		r->status = fuzz_byte(in);
		r->attempts = fuzz_byte(in);
		r->next = (int64_t)fuzz_byte(in) << 20;
		le(&p, r->status, 1);
		le(&p, r->attempts, 2);
		le(&p, (uint64_t)r->next, 8);
		r->err = take_str(in, &el, &nul);
		put_str(&p, r->err, el);
		dsn = take_str(in, &len, &nul);
		put_str(&p, dsn, len);
		snprintf(r->dsn, sizeof(r->dsn), "%s", dsn ? dsn : "");
		free(dsn);
	}
	m.nr = nr;
	m.flags = flags;
	bool textnul = false;	/* (the text is octets, not a string: a NUL is fine) */
	text = take_str(in, &tlen, &textnul);
	le(&p, tlen, 8);
	buf_add(&p, text ? text : "", tlen);
	free(text);

	struct wrec *w = put_record(g, T_MSG, &p);
	w->qid = qid;
	w->valid = ok && !nul;
	m.loc.seg = (uint64_t)w->seg + 1;
	m.loc.off = w->off + w->len - tlen;
	m.loc.len = tlen;
	w->msg = m;
	buf_free(&p);
}

static void
gen_rcpt(struct gen *g, struct fuzz_in *in)
{
	struct buf p;
	struct mrcpt r;
	unsigned qid = 1 + fuzz_byte(in) % NQID, idx = fuzz_byte(in) % 4;
	bool nul = false;
	size_t len;
	char *dsn;

	memset(&r, 0, sizeof(r));
	buf_init(&p);
	le(&p, qid, 8);
	le(&p, idx, 4);
	r.status = fuzz_byte(in);
	r.attempts = (unsigned)fuzz_le(in, 2);
	r.next = (int64_t)fuzz_byte(in) << 12;
	le(&p, r.status, 1);
	le(&p, r.attempts, 2);
	le(&p, (uint64_t)r.next, 8);
	r.err = take_str(in, &len, &nul);
	put_str(&p, r.err, len);
	dsn = take_str(in, &len, &nul);
	put_str(&p, dsn, len);
	snprintf(r.dsn, sizeof(r.dsn), "%s", dsn ? dsn : "");
	free(dsn);

	struct wrec *w = put_record(g, T_RCPT, &p);
	w->qid = qid;
	w->idx = idx;
	w->rc = r;
	w->valid = !nul;
	buf_free(&p);
}

static void
gen_simple(struct gen *g, struct fuzz_in *in, int type)
{
	struct buf p;
	unsigned qid = 1 + fuzz_byte(in) % NQID;
	size_t len = 0;
	bool nul = false;
	char *text = type == T_SIG ? take_str(in, &len, &nul) : NULL;

	buf_init(&p);
	if (type == T_DONE || type == T_SIG) {
		le(&p, qid, 8);
	} else {
		unsigned v = fuzz_byte(in);

		le(&p, v, 1 + fuzz_byte(in) % 8);
	}
	buf_add(&p, text ? text : "", len);
	free(text);

	struct wrec *w = put_record(g, type, &p);
	w->qid = type == T_DONE || type == T_SIG ? qid : 0;
	w->siglen = len;
	w->valid = true;
	buf_free(&p);
}

/* Damage to the current segment: flip, zero, cut. */
static void
gen_damage(struct gen *g, struct fuzz_in *in)
{
	struct buf *s = &g->seg[g->nseg - 1];
	unsigned kind = fuzz_byte(in) % 4;
	size_t at = (size_t)fuzz_le(in, 2);

	if (kind == 3) {	/* an unreadable page, placed once all is written */
		g->eio_seg = g->nseg - 1;
		g->eio_off = at;
		return;
	}
	if (s->len == 0)
		return;
	at %= s->len;
	g->damaged = true;
	if (kind == 0) {
		s->p[at] ^= (char)(1 + fuzz_byte(in) % 255);
	} else if (kind == 1) {
		size_t n = 1 + fuzz_byte(in);

		memset(s->p + at, 0, n < s->len - at ? n : s->len - at);
	} else {
		/* both copies: what follows is written after the cut */
		s->len = at;
		g->clean[g->nseg - 1].len = at;
		for (size_t i = 0; i < g->nw; i++)
			if (g->w[i].seg == g->nseg - 1 && g->w[i].off + g->w[i].len > at)
				g->w[i].cut = true;
	}
}

static void
generate(struct gen *g, struct fuzz_in *in)
{
	memset(g, 0, sizeof(*g));
	g->eio_seg = -1;
	g->v1 = fuzz_byte(in) & 1;
	new_segment(g);
	while (in->n > 0) {
		unsigned op = fuzz_byte(in) % 8;

		switch (op) {
		case 0:
		case 1:
			gen_msg(g, in);
			break;
		case 2:
			gen_rcpt(g, in);
			break;
		case 3:
			gen_simple(g, in, T_DONE);
			break;
		case 4:
			gen_simple(g, in, fuzz_byte(in) & 1 ? T_SIG : 6 + fuzz_byte(in) % 250);
			break;
		case 5:
			new_segment(g);
			break;
		case 6: {
			size_t len;
			const uint8_t *p = fuzz_bytes(in, fuzz_byte(in), &len);

			buf_add(&g->seg[g->nseg - 1], p, len);
			buf_add(&g->clean[g->nseg - 1], p, len);
			g->junk = true;
			break;
		}
		case 7:
			gen_damage(g, in);
			break;
		}
	}
	if (g->eio_seg >= 0) {
		struct buf *sg = &g->seg[g->eio_seg];

		if (sg->len == 0) {
			g->eio_seg = -1;
			return;
		}
		g->eio_off = g->eio_off % sg->len / 4096 * 4096;
		g->eio_len = sg->len - g->eio_off < 4096 ? sg->len - g->eio_off : 4096;
		memcpy(g->eio_page, sg->p + g->eio_off, g->eio_len);
		memset(sg->p + g->eio_off, 0, g->eio_len);
		g->damaged = true;
	}
}

static void
mmsg_free(struct mmsg *m)
{
	free(m->sender);
	free(m->route);
	for (size_t i = 0; i < m->nr; i++) {
		free(m->r[i].addr);
		free(m->r[i].err);
	}
}

static void
gen_free(struct gen *g)
{
	for (size_t i = 0; i < g->nw; i++) {
		if (g->w[i].type == T_MSG)
			mmsg_free(&g->w[i].msg);
		if (g->w[i].type == T_RCPT)
			free(g->w[i].rc.err);
	}
	free(g->w);
	for (int i = 0; i < g->nseg; i++) {
		buf_free(&g->seg[i]);
		buf_free(&g->clean[i]);
	}
}

/* ---- the checks ----------------------------------------------------------- */

/* Whether the record w is still the one written (damage left it alone). */
static bool
intact(const struct gen *g, const struct wrec *w)
{
	const struct buf *s = &g->seg[w->seg], *c = &g->clean[w->seg];

	return !w->cut && w->off + w->len <= s->len &&
	    memcmp(s->p + w->off, c->p + w->off, w->len) == 0;
}

/* Whether the octets at h of s[0..n) form a record that passes the check
 * (version 2: with the seal of the segment header at offset 0). */
static bool
record_ok(const unsigned char *s, size_t n, size_t h, int version, size_t *payload,
    size_t *plen)
{
	size_t hl = version == 1 ? 16 : 32;

	if (h + hl > n || get_le(s + h, 4) != MAGIC || s[h + 5] != version)
		return false;
	if (version == 2 && (n < 32 || memcmp(s + h + 16, s + 16, 16) != 0))
		return false;
	uint64_t len = get_le(s + h + 8, 4);
	if (len > n - h - hl)
		return false;
	uint32_t crc = crc32c(0, s + h + 4, 8);
	if (version == 2)
		crc = crc32c(crc, s + h + 16, 16);
	if (crc32c(crc, s + h + hl, (size_t)len) != get_le(s + h + 12, 4))
		return false;
	*payload = h + hl;
	*plen = (size_t)len;
	return true;
}

/* The first property: env lies in a MSG record that passes the check,
 * and is that record's message. */
static void
check_sound(const struct gen *g, const struct spool_envelope *env)
{
	FUZZ_CHECK(env->loc.seg >= 1 && env->loc.seg <= (uint64_t)g->nseg,
	    "message %s in segment %llu, which was not written", env->id,
	    (unsigned long long)env->loc.seg);
	const struct buf *sb = &g->seg[env->loc.seg - 1];
	const unsigned char *s = (const unsigned char *)sb->p;
	size_t n = sb->len;
	int version = n >= 6 ? s[5] : 0;
	bool found = false;

	FUZZ_CHECK(version == 1 || version == 2, "message %s from a segment of version %d",
	    env->id, version);
	for (size_t h = 0; h < env->loc.off && !found; h++) {
		size_t pay, plen, slen;
		char id[QID_SIZE];

		if (!record_ok(s, n, h, version, &pay, &plen) || s[h + 4] != T_MSG ||
		    pay + plen != env->loc.off + env->loc.len || plen < 28)
			continue;
		qid_encode(get_le(s + pay, 8), id);
		slen = (size_t)get_le(s + pay + 24, 4);
		found = strcmp(id, env->id) == 0 && slen == strlen(env->sender) &&
		    pay + 28 + slen <= n && memcmp(s + pay + 28, env->sender, slen) == 0;
	}
	FUZZ_CHECK(found, "message %s (sender <%s>) at segment %llu offset %llu is in no MSG "
	    "record that passes the check", env->id, env->sender,
	    (unsigned long long)env->loc.seg, (unsigned long long)env->loc.off);
}

/*
 * The model's queue: for each queue id, the written MSG record that
 * defines it (or -1), and the SIG record that gives it its signatures;
 * the intact, valid records applied in order, a segment whose header was
 * damaged read not at all.  False if damage left a record that still
 * passes the check: then the model cannot say what it holds.
 */
static bool
model(const struct gen *g, int *msg, int *sig)
{
	bool dead[NSEG_MAX] = { false };

	for (int k = 0; k <= NQID; k++)
		msg[k] = sig[k] = -1;
	for (size_t i = 0; i < g->nw; i++) {
		const struct wrec *w = &g->w[i];
		const struct buf *s = &g->seg[w->seg];
		size_t pay, plen;

		if (dead[w->seg])
			continue;
		if (!intact(g, w)) {
			if (record_ok((const unsigned char *)s->p, s->len, w->off, g->v1 ? 1 : 2,
			    &pay, &plen) || (w->type == T_SEG && s->len >= 6 && s->p[5] == 1))
				return false;
			dead[w->seg] = w->type == T_SEG;
			continue;
		}
		if (!w->valid || w->qid == 0)
			continue;
		switch (w->type) {
		case T_MSG:
			msg[w->qid] = (int)i;
			sig[w->qid] = -1;
			break;
		case T_DONE:
			msg[w->qid] = -1;
			break;
		case T_SIG:
			if (msg[w->qid] >= 0 && (g->w[msg[w->qid]].msg.flags & SPOOL_F_SIGPEND))
				sig[w->qid] = (int)i;
			break;
		}
	}
	return true;
}

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

struct loaded {
	struct spool_envelope	*env[NQID + 1];
	size_t			 n;
};

static void
load_cb(void *arg, struct spool_envelope *env)
{
	struct loaded *l = arg;

	FUZZ_CHECK(l->n <= NQID, "more messages loaded than queue ids written");
	l->env[l->n++] = env;
}

/* Whether segment seg's header was damaged: recovery reads none of it. */
static bool
seg_dead(const struct gen *g, int seg)
{
	for (size_t i = 0; i < g->nw; i++)
		if (g->w[i].seg == seg && g->w[i].type == T_SEG)
			return !intact(g, &g->w[i]);
	return false;
}

/* A recipient's state: the MSG record's, then each later intact, valid
 * RCPT record's for it in a segment recovery reads. */
static void
check_rcpt(const struct gen *g, int start, const struct spool_envelope *e, size_t r)
{
	const struct mrcpt *want = &g->w[start].msg.r[r];
	const struct spool_rcpt *got = &e->rcpts[r];

	for (size_t k = (size_t)start + 1; k < g->nw; k++)
		if (g->w[k].type == T_RCPT && g->w[k].qid == g->w[start].qid && g->w[k].idx == r &&
		    g->w[k].valid && intact(g, &g->w[k]) && !seg_dead(g, g->w[k].seg))
			want = &g->w[k].rc;
	FUZZ_CHECK(strcmp(got->addr, g->w[start].msg.r[r].addr) == 0 &&
	    got->status == (uint8_t)want->status && got->attempts == (uint16_t)want->attempts &&
	    got->next_attempt == want->next && same_str(got->last_error, want->err) &&
	    strcmp(got->dsn, want->dsn) == 0,
	    "message %s recipient %zu: its state is not what its last record says", e->id, r);
}

/* The second property: exactly the queue the records say. */
static void
check_exact(const struct gen *g, const struct loaded *l)
{
	int msg[NQID + 1], sig[NQID + 1];
	size_t want = 0;

	if (!model(g, msg, sig))
		return;
	for (int k = 1; k <= NQID; k++)
		want += msg[k] >= 0;
	FUZZ_CHECK(l->n == want, "%zu messages recovered, the records say %zu", l->n, want);
	for (size_t i = 0; i < l->n; i++) {
		const struct spool_envelope *e = l->env[i];
		uint64_t v = 0;

		FUZZ_CHECK(qid_decode(e->id, &v) && v >= 1 && v <= NQID && msg[v] >= 0,
		    "message %s recovered, but the records retired it or never had it", e->id);
		const struct wrec *w = &g->w[msg[v]];
		const struct mmsg *m = &w->msg;
		FUZZ_CHECK(same_str(e->sender, m->sender) && same_str(e->route, m->route) &&
		    e->flags == m->flags && e->nrcpt == m->nr, "message %s: envelope differs",
		    e->id);
		FUZZ_CHECK(e->loc.seg == m->loc.seg && e->loc.off == m->loc.off &&
		    e->loc.len == m->loc.len, "message %s: text at %llu/%llu+%llu, written at "
		    "%llu/%llu+%llu", e->id, (unsigned long long)e->loc.seg,
		    (unsigned long long)e->loc.off, (unsigned long long)e->loc.len,
		    (unsigned long long)m->loc.seg, (unsigned long long)m->loc.off,
		    (unsigned long long)m->loc.len);
		struct spool_loc sl = { 0, 0, 0 };
		if (sig[v] >= 0) {
			sl.seg = (uint64_t)g->w[sig[v]].seg + 1;
			sl.off = g->w[sig[v]].off + hdr_len(g) + 8;
			sl.len = g->w[sig[v]].siglen;
		}
		FUZZ_CHECK(e->sigloc.seg == sl.seg && e->sigloc.off == sl.off &&
		    e->sigloc.len == sl.len, "message %s: signatures not where written", e->id);
		for (size_t r = 0; r < e->nrcpt; r++)
			check_rcpt(g, msg[v], e, r);
	}
}

/* Whether a seal shows anywhere but in the headers written with it. */
static bool
seal_elsewhere(const struct gen *g)
{
	for (int s = 0; s < g->nseg; s++) {
		const char *p = g->seg[s].p, *end = p + g->seg[s].len;

		for (const char *f = p; f < end && (f = memmem(f, (size_t)(end - f), g->seal[s],
		    16)) != NULL; f++) {
			bool header = false;

			for (size_t i = 0; i < g->nw && !header; i++)
				header = g->w[i].seg == s && p + g->w[i].off + 16 == f;
			if (!header)
				return true;
		}
	}
	return false;
}

static void
clear_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		abort();
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.') {
			char *p = xasprintf("%s/%s", dir, de->d_name);

			unlink(p);
			free(p);
		}
	closedir(d);
}

/* A segment with an unreadable page is never cut: whether set aside (its
 * header unread) or read around the page, it is kept whole, as written,
 * under SEGMENT.damaged. */
static void
check_kept(const struct gen *g)
{
	char *p = xasprintf("%s/%016llx.seg.damaged", dir, (unsigned long long)g->eio_seg + 1);
	struct stat st;

	FUZZ_CHECK(stat(p, &st) == 0 && (size_t)st.st_size == g->seg[g->eio_seg].len,
	    "segment %d with a page unreadable at %zu: %s is %s (%zu octets written)",
	    g->eio_seg + 1, g->eio_off, p, stat(p, &st) == 0 ? "cut" : "missing",
	    g->seg[g->eio_seg].len);
	free(p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct gen g;
	struct loaded l = { { NULL }, 0 };
	char err[512];

	generate(&g, &in);
	clear_dir();
	for (int s = 0; s < g.nseg; s++) {
		char *p = xasprintf("%s/%016llx.seg", dir, (unsigned long long)s + 1);
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || write_full(fd, g.seg[s].p, g.seg[s].len) < 0 || (s == g.eio_seg &&
		    pwrite(fd, g.eio_page, g.eio_len, (off_t)g.eio_off) != (ssize_t)g.eio_len))
			abort();
		close(fd);
		free(p);
	}
	if (g.eio_seg >= 0) {
		char v[64];

		snprintf(v, sizeof(v), "%016llx:%zu", (unsigned long long)g.eio_seg + 1, g.eio_off);
		setenv("RELAYD_TEST_SPOOL_EIO", v, 1);
	} else {
		unsetenv("RELAYD_TEST_SPOOL_EIO");
	}
	int rc = spool_recover_dir(dir, load_cb, &l, err, sizeof(err));

	if (rc == 0 && g.eio_seg >= 0)
		check_kept(&g);
	if (rc != 0) {
		/* the one refusal: a segment whose first record says a newer
		 * format (damage can write that), which relayd must not misread */
		bool newer = false;

		for (int s = 0; s < g.nseg; s++)
			newer |= g.seg[s].len >= 6 && get_le((const unsigned char *)g.seg[s].p, 4) ==
			    MAGIC && (unsigned char)g.seg[s].p[5] > 2;
		FUZZ_CHECK(newer && strstr(err, "newer relayd") != NULL && l.n == 0,
		    "recovery failed: %s", err);
		gen_free(&g);
		return 0;
	}
	for (size_t i = 0; i < l.n; i++)
		check_sound(&g, l.env[i]);

	/* the exact queue, when the damage leaves the model sure of it */
	if (!g.junk && !seal_elsewhere(&g) && (!g.damaged || !g.v1))
		check_exact(&g, &l);
	for (size_t i = 0; i < l.n; i++)
		spool_envelope_free(l.env[i]);
	gen_free(&g);
	return 0;
}
