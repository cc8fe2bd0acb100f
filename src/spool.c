/*
 * spool — the durable queue: an append-only log of checksummed records in
 * segment files, made durable by one committer thread in group commits.
 *
 * Why a log and not one file per message: on the spool's filesystem a
 * create + fsync + rename + directory fsync per message tops out near 2,200
 * messages/s, and ext4 keeps deleted inodes out of reuse for about a
 * minute, so a relay that creates and deletes a file per message slows
 * itself down under steady load.  Appending every message accepted during
 * one fdatasync to the current segment turns N syncs into one.
 *
 * On-disk format (little-endian), version 2:
 *   segment file "<seq>.seg", seq 16 hex digits, a sequence of records:
 *   header  u32 magic "RLYR" | u8 type | u8 version (2) | u16 reserved |
 *           u32 payload length | u32 CRC-32C over bytes 4..12 and 16..32
 *           of the header and the payload | 16 bytes seal
 *   The first record, at offset 0, is the segment header (SEG); its seal
 *   is 16 random bytes (getrandom) drawn when the segment is created, and
 *   every record of the segment carries the same seal.
 *   payload by type:
 *     SEG   u64 seq | i64 created_us (offset 0 only)
 *     MSG   u64 qid | i64 arrival_us | u32 flags | u32 nrcpt | str sender |
 *           str route | nrcpt * (str addr | u8 status | u16 attempts |
 *           i64 next | str last_error | str dsn) | u64 textlen |
 *           text (prefix + body)
 *     RCPT  u64 qid | u32 index | u8 status | u16 attempts | i64 next |
 *           str last_error | str dsn
 *     DONE  u64 qid
 *     SIG   u64 qid | text (the DKIM-Signature fields of a message whose
 *           MSG record has SPOOL_F_SIGPEND: they go before its text)
 *   str = u32 length (0xffffffff for NULL) | bytes
 *   Version 1 (relayd before the seal): no SEG record, 16-byte headers
 *   (the same fields without the seal), the same payloads.
 *
 * Why a seal.  A record's payload holds a client's message text, and a
 * spilled body is copied into the segment before its record header is
 * written; a crash in between leaves client bytes where a header should
 * be.  A reader that searched those bytes for the next magic number and
 * trusted any CRC-32C that matched (CRC-32C is no secret) obeyed records a
 * client had hidden in its text: a DONE deleting another message that got
 * its 250, a MSG injecting mail with any envelope.  So:
 *  - Recovery reads strictly in sequence: each position it parses is the
 *    end of a record whose header, seal and CRC it verified, so it never
 *    looks inside a payload.  A crash (kill -9, OOM, power loss) can only
 *    damage what follows the last fdatasync of the newest segment, and
 *    nothing there was acknowledged: that tail is cut off.
 *  - Damage elsewhere is not a crash but a bad block.  To lose only the
 *    records in it, recovery goes on at the next header that carries the
 *    segment's seal.  No client can write one: the seal never leaves the
 *    spool (never logged, never sent; relocation and delivery copy text
 *    only), and offset 0, where recovery learns it, is written and synced
 *    at creation, before any message text is in the file.  Records found
 *    that way are ones relayd wrote; at worst they belong to a batch no
 *    client was told about, which is as harmless as if its sync had ended.
 *  - Version-1 segments (an older relayd's, read once after an upgrade)
 *    have no seal: they are read in sequence only and never searched.  At
 *    the first bad record the newest one is cut off; in an older one the
 *    rest is left unread, and said so, for it cannot be told from text.
 *  - A segment whose SEG record is damaged (though not by a crash: it is
 *    synced before anything follows it) is not read at all but set aside
 *    as "<seq>.seg.damaged"; one of an unknown, newer version makes the
 *    spool unusable rather than be misread.
 * Every damaged or cut-off record is logged with its queue id when its
 * header is readable, and with what it cost (a message lost, one that will
 * be delivered again, an attempt repeated, signatures made again).
 *
 * Recovery reads segments in order: a MSG creates (or, when a message was
 * relocated, replaces) a message, RCPT records update it, SIG gives it its
 * signatures, DONE retires it.  A SIG record can lie in a later segment
 * than its MSG; that is safe because segments go oldest first.
 * Segments are deleted oldest first only, and only when no live message
 * starts in them, so a retiring or state record never outlives the message
 * record it refers to, and never vanishes while that message is live.  On a
 * full disk the segment being written goes as well once nothing in it is
 * live (seg_reclaim), and message records leave a reserve of allocated
 * space for the records that free it (seg_make_room).
 *
 * A spool directory that is renamed, removed or unmounted under relayd
 * stays usable through its descriptor, but a restart would look for the
 * mail at the configured path and not find it: before a batch holding
 * messages, the committer checks that the path still names the directory
 * it has open (spool_dir_gone), and refuses those messages (452 4.3.1)
 * while it does not; and once more after the batch's sync, cutting the
 * batch off if the directory went in between (batch_cut).  Failures of
 * the spool are said once each, with their end, not once per record
 * (spool_note_*).
 *
 * Recovery reads each segment into memory with pread (seg_load), not
 * through a mapping, so that a page the disk cannot give back is an
 * error it can report and read around, not a SIGBUS.
 */
#include "acconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "idmap.h"
#include "log.h"
#include "spool.h"
#include "util.h"

#define REC_MAGIC	0x52594c52u	/* "RLYR" */
#define REC_VERSION	2		/* sealed records; 1: before the seal */
#define REC_HDR_V1	16		/* a version-1 header */
#define REC_HDR_LEN	32		/* a version-2 header: the v1 fields, the seal */
#define SEAL_LEN	16
#define REC_MSG		1
#define REC_RCPT	2
#define REC_DONE	3
#define REC_SIG		4
#define REC_SEG		5		/* the segment header, at offset 0 only */
#define REC_MAX_PAYLOAD	(1ULL << 32)	/* u32 length: > 4 GiB messages cannot exist */

#define SEG_MAX_SIZE	(64ULL << 20)	/* rotate once a segment passes this */
#define SEG_PAGE	4096u		/* what recovery reads at a time after a disk error */
#define BODY_MEM_MAX	(32u << 10)	/* spill bodies beyond this to a temp file */
#define STR_NULL	0xffffffffu
#define SPOOL_COMPACT_MAX 4096		/* live messages worth relocating at once */
#define LAZY_MAX_MS	100		/* a record nobody waits for: durable within this */
#define PREP_CHUNK	(256u << 10)	/* space written ahead at a time, when idle */
#define PREP_AHEAD	(1u << 20)	/* keep this much written ahead of the tail */
#define SEG_RESERVE	(64u << 10)	/* allocated space kept for records that are
					 * not messages (DONE, RCPT, SIG) */
#define SEG_GROW	(1u << 20)	/* allocation step past the preallocation */

/*
 * Tests only: RELAYD_TEST_SPOOL_KILL=POINT[:N] (relayd(8)) makes the
 * committer SIGKILL its own process at POINT while it commits the Nth MSG
 * record since start (default 1), or in the batch that holds it, so that
 * the tests can crash relayd at every write boundary of a message.
 */
enum kill_point {
	KP_NONE = 0,
	KP_START,	/* before any byte of the record */
	KP_BODY,	/* half of a spilled body written */
	KP_HEAD,	/* a spilled body written, its record header not yet */
	KP_WRITTEN,	/* the whole record written */
	KP_SYNC,	/* before the batch's fdatasync */
	KP_SYNCED,	/* after it, before the event loop hears of it */
};
static const char *const kill_point_names[] = {
	"", "start", "body", "head", "written", "sync", "synced",
};

struct spool_body {
	struct spool	*sp;
	struct buf	 mem;
	int		 fd;		/* temp file once spilled (or a segment, for a
					 * relocation), else -1 */
	uint64_t	 base;		/* where the text starts in fd */
	uint64_t	 size;
	int		 err;
};

enum spool_req_kind {
	REQ_MSG,	/* head + prefix + body */
	REQ_REC,	/* head is a whole record (RCPT, DONE) */
	REQ_RECLAIM,	/* delete segments below reclaim_below */
};

struct spool_req {
	struct spool_req	*next;
	enum spool_req_kind	 kind;
	uint64_t		 reclaim_below;
	int64_t			 done_seg;	/* DONE: the retired message's segment, else -1 */
	bool			 waited;	/* someone waits for it: commit now */
	size_t			 loc_skip;	/* REQ_REC: loc is the payload past this */
	struct buf		 head;	/* record header + MSG payload up to the text */
	char			*prefix;
	size_t			 prefixlen;
	struct spool_body	*body;
	spool_done_fn		 done;
	void			*arg;
	int			 error;
	struct spool_loc	 loc;
};

struct spool {
	char			*dir;
	int			 dirfd;
	int			 lockfd;
	struct event_base	*base;
	uint64_t		 maxqid;

	pthread_t		 thread;
	bool			 thread_started;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	struct spool_req	*pend, **pend_tail;	/* guarded by mu */
	size_t			 pend_waited;		/* guarded by mu: requests in pend
							 * that someone waits for */
	struct timespec		 lazy_deadline;		/* guarded by mu: when pend holds
							 * only lazy requests, commit
							 * them by then anyway */
	struct spool_req	*done, **done_tail;	/* guarded by mu */
	bool			 notified;		/* guarded by mu */
	bool			 stop;			/* guarded by mu */
	struct spool_stats	 stats;			/* guarded by mu */
	uint64_t		 pub_seq;		/* guarded by mu: the current
							 * segment (or the next) */
	bool			 full_hint;		/* guarded by mu: a spill file
							 * met ENOSPC */

	int			 notify_rd, notify_wr;
	struct event		*notify_ev;

	/* event-loop-owned: live messages per segment, read descriptors */
	struct segcount {
		uint64_t	seq;
		uint64_t	live;
	}			*segs;		/* ascending seq */
	size_t			 nsegs;
	uint64_t		 reclaimed_below;
	struct segfd {
		uint64_t	seq;
		int		fd;
	}			*rfds;
	size_t			 nrfds;
	size_t			 msgs_inflight;	/* MSG requests not yet handed back */

	/* the committer thread's */
	uint64_t		*files;		/* segment files on disk, ascending */
	size_t			 nfiles;
	int			 segfd;
	uint64_t		 segseq;
	uint64_t		 segoff;
	uint64_t		 seg_head;	/* where its first record goes */
	uint64_t		 seg_alloc;	/* allocated size, 0 if not allocated */
	bool			 nofalloc;	/* the filesystem has no fallocate */
	bool			 seg_full;	/* ENOSPC met since the segment began */
	bool			 full_said;	/* "spool is full" logged, not "room again" */
	time_t			 full_said_at;
	int			 fail_said;	/* errno of a failure logged, not its end */
	int			 gone_said;	/* spool_dir_gone()'s answer logged, not
						 * its end */
	dev_t			 dir_dev;	/* the directory opened */
	ino_t			 dir_ino;
	uint64_t		 seg_ready;	/* written (zeros or records) and synced up to */
	bool			 seg_suspect;	/* a sync failed: start a new segment */
	uint64_t		 seg_max;	/* rotate past this size */
	unsigned char		 seal[SEAL_LEN];	/* the current segment's; secret */
	long			 lazy_max_ms;	/* guarded by mu */

	/* tests only (RELAYD_TEST_SPOOL_KILL), the committer's */
	enum kill_point		 kill_at;
	uint64_t		 kill_msg;	/* at the commit of this MSG record */
	uint64_t		 kill_msgs;	/* MSG records begun so far */
	int			 kill_sig;	/* SIGKILL, or SIGSTOP (once) */
};

/* The test hook: dies (or stops, once) here if the tests asked for it
 * (see kill_point). */
static void
test_kill(struct spool *sp, enum kill_point at)
{
	if (sp->kill_at == at && sp->kill_msgs >= sp->kill_msg) {
		if (sp->kill_sig == SIGSTOP)
			sp->kill_at = KP_NONE;
		raise(sp->kill_sig);
	}
}

/* Reads RELAYD_TEST_SPOOL_KILL, or RELAYD_TEST_SPOOL_STOP (the whole
 * process stops, for a test to act in that moment and SIGCONT it); an
 * unknown point is ignored, loudly. */
static void
test_kill_init(struct spool *sp)
{
	const char *v = getenv("RELAYD_TEST_SPOOL_KILL");

	sp->kill_sig = SIGKILL;
	if (v == NULL || *v == '\0') {
		v = getenv("RELAYD_TEST_SPOOL_STOP");
		sp->kill_sig = SIGSTOP;
	}
	if (v == NULL || *v == '\0')
		return;
	size_t n = strcspn(v, ":");
	for (size_t i = 1; i < sizeof(kill_point_names) / sizeof(*kill_point_names); i++)
		if (strlen(kill_point_names[i]) == n && strncmp(v, kill_point_names[i], n) == 0)
			sp->kill_at = (enum kill_point)i;
	sp->kill_msg = v[n] == ':' ? strtoull(v + n + 1, NULL, 10) : 1;
	if (sp->kill_at == KP_NONE)
		log_warn("RELAYD_TEST_SPOOL_%s=%s: no such point; ignored",
		    sp->kill_sig == SIGKILL ? "KILL" : "STOP", v);
	else
		log_warn("test hook: relayd %s itself at \"%s\" of MSG record %llu",
		    sp->kill_sig == SIGKILL ? "kills" : "stops", kill_point_names[sp->kill_at],
		    (unsigned long long)sp->kill_msg);
}

/* ---- little-endian encoding ------------------------------------------ */

static void
put_u8(struct buf *b, uint8_t v)
{
	buf_add(b, &v, 1);
}

static void
put_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	buf_add(b, x, 2);
}

static void
put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4];

	for (int i = 0; i < 4; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	buf_add(b, x, 4);
}

static void
put_u64(struct buf *b, uint64_t v)
{
	uint8_t x[8];

	for (int i = 0; i < 8; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	buf_add(b, x, 8);
}

static void
put_str(struct buf *b, const char *s)
{
	if (s == NULL) {
		put_u32(b, STR_NULL);
		return;
	}
	size_t n = strlen(s);
	put_u32(b, (uint32_t)n);
	buf_add(b, s, n);
}

static uint32_t
get_u32le(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static void
set_u32le(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A bounds-checked reader over one record payload. */
struct rd {
	const unsigned char	*p;
	size_t			 n;
	bool			 bad;
};

static const unsigned char *
rd_take(struct rd *r, size_t k)
{
	if (r->bad || r->n < k) {
		r->bad = true;
		return NULL;
	}
	const unsigned char *p = r->p;
	r->p += k;
	r->n -= k;
	return p;
}

static uint64_t
rd_uint(struct rd *r, size_t width)
{
	const unsigned char *p = rd_take(r, width);
	uint64_t v = 0;

	if (p == NULL)
		return 0;
	for (size_t i = 0; i < width; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static char *
rd_str(struct rd *r)
{
	uint32_t n = (uint32_t)rd_uint(r, 4);

	if (r->bad || n == STR_NULL)
		return NULL;
	const unsigned char *p = rd_take(r, n);
	if (p == NULL)
		return NULL;
	if (memchr(p, '\0', n) != NULL) {
		r->bad = true;
		return NULL;
	}
	return xstrndup((const char *)p, n);
}

/* ---- envelopes --------------------------------------------------------- */

struct spool_envelope *
spool_envelope_new(void)
{
	return xcalloc(1, sizeof(struct spool_envelope));
}

void
spool_envelope_free(struct spool_envelope *env)
{
	if (env == NULL)
		return;
	for (size_t i = 0; i < env->nrcpt; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].last_error);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->route);
	free(env->sigs);
	free(env);
}

/*
 * A record header with its length, CRC and seal still zero: the committer
 * fills them in (rec_seal), as only it knows the segment, hence the seal,
 * the record will be written to.
 */
static void
put_header(struct buf *b, int type)
{
	static const unsigned char noseal[SEAL_LEN];

	put_u32(b, REC_MAGIC);
	put_u8(b, (uint8_t)type);
	put_u8(b, REC_VERSION);
	put_u16(b, 0);
	put_u32(b, 0);
	put_u32(b, 0);
	buf_add(b, noseal, SEAL_LEN);
}

/* The CRC-32C of a version-2 header's checked fields (type, version,
 * length, seal); the payload follows. */
static uint32_t
header_crc(const unsigned char *h)
{
	return crc32c(crc32c(0, h + 4, 8), h + 16, SEAL_LEN);
}

/* Seals header h for the current segment: the seal and the payload length;
 * returns the CRC so far, for the caller to run over the payload. */
static uint32_t
rec_seal(const struct spool *sp, unsigned char *h, uint32_t payload)
{
	set_u32le(h + 8, payload);
	memcpy(h + 16, sp->seal, SEAL_LEN);
	return header_crc(h);
}

static void
encode_msg_head(struct buf *b, const struct spool_envelope *env, uint64_t qid,
    uint32_t flags, uint64_t textlen)
{
	put_header(b, REC_MSG);
	put_u64(b, qid);
	put_u64(b, (uint64_t)env->arrival);
	put_u32(b, flags);
	put_u32(b, (uint32_t)env->nrcpt);
	put_str(b, env->sender);
	put_str(b, env->route);
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *rc = &env->rcpts[i];

		put_str(b, rc->addr);
		put_u8(b, rc->status);
		put_u16(b, rc->attempts);
		put_u64(b, (uint64_t)rc->next_attempt);
		put_str(b, rc->last_error);
		put_str(b, rc->dsn);
	}
	put_u64(b, textlen);
}

/* Decodes a MSG payload; the text itself stays on disk (loc). */
static struct spool_envelope *
decode_msg(const unsigned char *p, size_t n, uint64_t *qid, uint64_t seg, uint64_t payload_off)
{
	struct rd r = { p, n, false };
	struct spool_envelope *env = spool_envelope_new();

	*qid = rd_uint(&r, 8);
	env->arrival = (int64_t)rd_uint(&r, 8);
	env->flags = (uint32_t)rd_uint(&r, 4);
	uint32_t nrcpt = (uint32_t)rd_uint(&r, 4);
	env->sender = rd_str(&r);
	env->route = rd_str(&r);
	if (r.bad || env->sender == NULL || nrcpt == 0 || nrcpt > r.n)
		goto bad;
	env->rcpts = xcalloc(nrcpt, sizeof(*env->rcpts));
	for (uint32_t i = 0; i < nrcpt && !r.bad; i++) {
		struct spool_rcpt *rc = &env->rcpts[i];

		env->nrcpt = i + 1;
		rc->addr = rd_str(&r);
		rc->status = (uint8_t)rd_uint(&r, 1);
		rc->attempts = (uint16_t)rd_uint(&r, 2);
		rc->next_attempt = (int64_t)rd_uint(&r, 8);
		rc->last_error = rd_str(&r);
		char *dsn = rd_str(&r);
		if (dsn != NULL)
			snprintf(rc->dsn, sizeof(rc->dsn), "%s", dsn);
		free(dsn);
		if (rc->addr == NULL)
			r.bad = true;
	}
	uint64_t textlen = rd_uint(&r, 8);
	if (r.bad || textlen != r.n)
		goto bad;
	qid_encode(*qid, env->id);
	env->loc.seg = seg;
	env->loc.off = payload_off + (n - r.n);
	env->loc.len = textlen;
	return env;
bad:
	spool_envelope_free(env);
	return NULL;
}

/* ---- bodies ------------------------------------------------------------ */

struct spool_body *
spool_body_new(struct spool *sp)
{
	struct spool_body *b = xcalloc(1, sizeof(*b));

	b->sp = sp;
	b->fd = -1;
	buf_init(&b->mem);
	return b;
}

static int
spool_tmpfile(struct spool *sp)
{
	int fd = openat(sp->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	/* Filesystems without O_TMPFILE: a named file unlinked at once. */
	char path[64];
	for (int tries = 0; tries < 100; tries++) {
		snprintf(path, sizeof(path), "tmp.%lx.%d", (unsigned long)random(), tries);
		fd = openat(sp->dirfd, path, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC,
		    0600);
		if (fd >= 0) {
			unlinkat(sp->dirfd, path, 0);
			return fd;
		}
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

static void spool_maybe_reclaim(struct spool *sp, bool force);

/*
 * A spilled body met a full disk: tell the committer (the current segment
 * may hold nothing live, see seg_reclaim) and ask for a reclaim, as no
 * record of the spool itself may have met ENOSPC yet.
 */
static void
spool_spill_full(struct spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	sp->full_hint = true;
	pthread_mutex_unlock(&sp->mu);
	spool_maybe_reclaim(sp, true);
}

int
spool_body_write(struct spool_body *b, const void *p, size_t n)
{
	if (b->err)
		return 0;
	if (b->fd < 0 && b->mem.len + n <= BODY_MEM_MAX) {
		buf_add(&b->mem, p, n);
		b->size += n;
		return 0;
	}
	if (b->fd < 0) {
		b->fd = spool_tmpfile(b->sp);
		if (b->fd < 0 || write_full(b->fd, b->mem.p, b->mem.len) < 0)
			goto fail;
		buf_free(&b->mem);
	}
	if (write_full(b->fd, p, n) < 0)
		goto fail;
	b->size += n;
	return 0;
fail:
	b->err = errno ? errno : EIO;
	buf_free(&b->mem);
	if (b->fd >= 0) {
		close(b->fd);
		b->fd = -1;
	}
	if (b->err == ENOSPC || b->err == EDQUOT)
		spool_spill_full(b->sp);
	errno = b->err;
	return -1;
}

int
spool_body_error(const struct spool_body *b)
{
	return b->err;
}

uint64_t
spool_body_size(const struct spool_body *b)
{
	return b->size;
}

void
spool_body_free(struct spool_body *b)
{
	if (b == NULL)
		return;
	if (b->fd >= 0)
		close(b->fd);
	buf_free(&b->mem);
	free(b);
}

/* ---- the committer thread ---------------------------------------------- */

static void
seg_name(uint64_t seq, char out[32])
{
	snprintf(out, 32, "%016" PRIx64 ".seg", seq);
}

/* Cuts the current segment's unused preallocated tail and closes it. */
static void
seg_finish(struct spool *sp)
{
	if (sp->segfd < 0)
		return;
	if (ftruncate(sp->segfd, (off_t)sp->segoff) < 0 || fdatasync(sp->segfd) < 0)
		log_warn("spool: %s: cannot trim segment %016" PRIx64 ": %s", sp->dir, sp->segseq,
		    strerror(errno));
	close(sp->segfd);
	sp->segfd = -1;
}

/*
 * A segment created while still root (between spool_open and the drop to
 * the relay user) belongs, like every other, to the spool's owner.
 */
static void
seg_own(struct spool *sp, int fd)
{
	struct stat st;

	if (geteuid() == 0 && fstat(sp->dirfd, &st) == 0 && st.st_uid != 0 &&
	    fchown(fd, st.st_uid, st.st_gid) < 0)
		log_warn("spool: %s: cannot hand a new segment to uid %lu: %s", sp->dir,
		    (unsigned long)st.st_uid, strerror(errno));
}

/*
 * Preallocated space makes each group commit's fdatasync cheaper (no block
 * allocation, no size change: 0.17 ms instead of 0.29 ms on the reference
 * machine), and seg_prepare() then makes it cheaper still.  But it is
 * taken from the free space that spilled bodies and other segments need:
 * at most half of what is free, and at least the reserve (seg_make_room).
 * Returns the size allocated, 0 if none (a full disk, or a filesystem
 * without fallocate: appending works the same, only slower).
 */
static uint64_t
seg_preallocate(struct spool *sp, int fd)
{
	struct statvfs vs;

	pthread_mutex_lock(&sp->mu);
	uint64_t n = sp->seg_max;
	pthread_mutex_unlock(&sp->mu);
	if (fstatvfs(fd, &vs) == 0 && n > (uint64_t)vs.f_bavail * vs.f_frsize / 2)
		n = (uint64_t)vs.f_bavail * vs.f_frsize / 2;
	if (n < SEG_RESERVE)
		n = SEG_RESERVE;
	if (fallocate(fd, 0, 0, (off_t)n) == 0)
		return n;
	if (errno == EOPNOTSUPP || errno == ENOSYS)
		sp->nofalloc = true;
	else if (n > SEG_RESERVE && fallocate(fd, 0, 0, SEG_RESERVE) == 0)
		return SEG_RESERVE;
	return 0;
}

/*
 * The segment header: a SEG record at offset 0 (u64 sequence number, i64
 * creation time) under a fresh random seal, which every later record of
 * the segment carries and its CRC covers.
 */
static int
seg_write_header(int fd, uint64_t seq, unsigned char seal[SEAL_LEN])
{
	struct buf b;
	int rc;

	if (getrandom(seal, SEAL_LEN, 0) != SEAL_LEN) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	buf_init(&b);
	put_header(&b, REC_SEG);
	put_u64(&b, seq);
	put_u64(&b, (uint64_t)now_us());
	unsigned char *h = (unsigned char *)b.p;
	set_u32le(h + 8, (uint32_t)(b.len - REC_HDR_LEN));
	memcpy(h + 16, seal, SEAL_LEN);
	set_u32le(h + 12, crc32c(header_crc(h), h + REC_HDR_LEN, b.len - REC_HDR_LEN));
	rc = pwrite_full(fd, b.p, b.len, 0) < 0 ? -1 : (int)b.len;
	buf_free(&b);
	return rc;
}

/*
 * Creates segment seq: its header (the seal) written and synced, and its
 * directory entry durable, before any record goes into it.  Syncing the
 * header at once means offset 0 holds it for good: no message text can
 * ever be there, so the seal recovery trusts is one relayd wrote.
 */
static int
seg_create(struct spool *sp, uint64_t seq)
{
	unsigned char seal[SEAL_LEN];
	char name[32];
	int fd, hlen;

	seg_name(seq, name);
	fd = openat(sp->dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	seg_own(sp, fd);
	uint64_t allocated = seg_preallocate(sp, fd);
	if ((hlen = seg_write_header(fd, seq, seal)) < 0 || fdatasync(fd) < 0 ||
	    fsync(sp->dirfd) < 0) {
		int e = errno;
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		errno = e;
		return -1;
	}
	seg_finish(sp);
	sp->files = xrealloc(sp->files, (sp->nfiles + 1) * sizeof(*sp->files));
	sp->files[sp->nfiles++] = seq;
	pthread_mutex_lock(&sp->mu);
	sp->stats.segments = sp->nfiles;
	pthread_mutex_unlock(&sp->mu);
	sp->segfd = fd;
	sp->segseq = seq;
	sp->segoff = sp->seg_head = (uint64_t)hlen;
	memcpy(sp->seal, seal, SEAL_LEN);
	explicit_bzero(seal, SEAL_LEN);
	sp->seg_alloc = allocated;
	sp->seg_ready = 0;
	sp->seg_suspect = false;
	sp->seg_full = false;
	pthread_mutex_lock(&sp->mu);
	sp->pub_seq = seq;
	pthread_mutex_unlock(&sp->mu);
	return 0;
}

/*
 * A message record may only take space that leaves SEG_RESERVE allocated
 * after it, so that the records that free space or keep state (DONE, RCPT,
 * SIG) still fit once the disk is full: a full spool can then record the
 * deliveries that empty it.  Grows the allocation in steps when needed;
 * returns -1 (ENOSPC) when the filesystem has no room for the record and
 * the reserve.  Without fallocate there is no reserve, only appending.
 */
static int
seg_make_room(struct spool *sp, uint64_t end)
{
	uint64_t want = end + SEG_RESERVE;

	if (sp->nofalloc || want <= sp->seg_alloc)
		return 0;
	if (fallocate(sp->segfd, 0, 0, (off_t)(want + SEG_GROW)) == 0)
		want += SEG_GROW;
	else if (errno == EOPNOTSUPP || errno == ENOSYS) {
		sp->nofalloc = true;
		return 0;
	} else if (fallocate(sp->segfd, 0, 0, (off_t)want) < 0)
		return -1;
	sp->seg_alloc = want;
	return 0;
}

/*
 * The current segment was cut back to `size` after a failed write or sync:
 * its preallocation beyond is gone, so stop preparing it.
 */
static void
seg_cut(struct spool *sp, uint64_t size)
{
	sp->seg_alloc = 0;
	if (sp->seg_ready > size)
		sp->seg_ready = size;
}

/* Where the current segment's written blocks end: records, or zeros ahead. */
static uint64_t
seg_written_end(const struct spool *sp)
{
	return sp->seg_ready > sp->segoff ? sp->seg_ready : sp->segoff;
}

/*
 * Whether the committer, idle, should write ahead in the current segment.
 *
 * Preallocated space is "unwritten" to the filesystem: the first write into
 * each part of it changes the extent tree, so the commit that writes there
 * has its fdatasync carry that metadata too (on ext4 with a journal, a
 * journal commit).  Writing zeros ahead of the tail while nothing waits, and
 * syncing them, turns later commits into plain overwrites of allocated,
 * written blocks: 0.13 instead of 0.17 ms a commit on the reference
 * machine, 0.28 instead of 0.36-0.53 ms on ext4 with a journal.  The
 * zeros are what the preallocated tail already reads as, so recovery sees
 * no difference.  Called with mu held, by the committer.
 */
static bool
seg_want_prepare(const struct spool *sp)
{
	uint64_t from = seg_written_end(sp);
	uint64_t want = sp->segoff + PREP_AHEAD;

	if (sp->segfd < 0 || sp->seg_suspect || sp->seg_alloc == 0 || sp->segoff >= sp->seg_max)
		return false;
	if (want > sp->seg_alloc)
		want = sp->seg_alloc;
	return from < want;
}

/* Writes and syncs one chunk of zeros past the tail (never over a record:
 * records are written only by the committer, and that is us). */
static void
seg_prepare(struct spool *sp)
{
	static char zeros[PREP_CHUNK];	/* .bss, never written */
	uint64_t from = seg_written_end(sp);
	uint64_t n = sp->seg_alloc - from < PREP_CHUNK ? sp->seg_alloc - from : PREP_CHUNK;

	if (pwrite_full(sp->segfd, zeros, (size_t)n, from) < 0 || fdatasync(sp->segfd) < 0) {
		/* Nothing acknowledged is at stake (every record before was
		 * synced on its own), but a failed sync leaves the page cache
		 * unreliable: the next batch goes to a fresh segment. */
		log_warn("spool: cannot write ahead in %s: %s", sp->dir, strerror(errno));
		sp->seg_alloc = 0;
		sp->seg_suspect = true;
		return;
	}
	sp->seg_ready = from + n;
	pthread_mutex_lock(&sp->mu);
	sp->stats.prepared += n;
	pthread_mutex_unlock(&sp->mu);
}

/* Writes one MSG record at sp->segoff; on failure cuts it off again. */
static int
commit_write_msg(struct spool *sp, struct spool_req *r)
{
	struct spool_body *b = r->body;
	uint64_t textlen = r->prefixlen + b->size;
	uint64_t payload = r->head.len - REC_HDR_LEN + textlen;
	unsigned char *h = (unsigned char *)r->head.p;
	uint64_t start = sp->segoff;
	uint32_t crc;

	if (payload >= REC_MAX_PAYLOAD) {
		r->error = EFBIG;
		return -1;
	}
	if (seg_make_room(sp, start + REC_HDR_LEN + payload) < 0) {
		r->error = errno ? errno : ENOSPC;
		return -1;	/* nothing written */
	}
	sp->kill_msgs++;
	test_kill(sp, KP_START);
	crc = rec_seal(sp, h, (uint32_t)payload);
	crc = crc32c(crc, h + REC_HDR_LEN, r->head.len - REC_HDR_LEN);
	crc = crc32c(crc, r->prefix, r->prefixlen);

	if (b->fd < 0) {
		crc = crc32c(crc, b->mem.p, b->mem.len);
		set_u32le(h + 12, crc);
		struct iovec iov[3] = {
			{ r->head.p, r->head.len },
			{ r->prefix, r->prefixlen },
			{ b->mem.p, b->mem.len },
		};
		if (pwritev_full(sp->segfd, iov, 3, start) < 0)
			goto fail;
	} else {
		/* Spilled body: copy it after the prefix while checksumming,
		 * then write the header whose CRC covers it. */
		static __thread char chunk[64 << 10];
		uint64_t off = start + r->head.len;
		uint64_t done = 0;

		if (pwrite_full(sp->segfd, r->prefix, r->prefixlen, off) < 0)
			goto fail;
		off += r->prefixlen;
		while (done < b->size) {
			size_t want = b->size - done < sizeof(chunk) ?
			    (size_t)(b->size - done) : sizeof(chunk);
			ssize_t n = pread(b->fd, chunk, want, (off_t)(b->base + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				if (n == 0)
					errno = EIO;
				goto fail;
			}
			crc = crc32c(crc, chunk, (size_t)n);
			if (pwrite_full(sp->segfd, chunk, (size_t)n, off) < 0)
				goto fail;
			off += (uint64_t)n;
			if (done < b->size / 2 && done + (uint64_t)n >= b->size / 2)
				test_kill(sp, KP_BODY);
			done += (uint64_t)n;
		}
		test_kill(sp, KP_HEAD);
		set_u32le(h + 12, crc);
		if (pwrite_full(sp->segfd, r->head.p, r->head.len, start) < 0)
			goto fail;
	}
	r->loc.seg = sp->segseq;
	r->loc.off = start + r->head.len;
	r->loc.len = textlen;
	sp->segoff = start + REC_HDR_LEN + payload;
	test_kill(sp, KP_WRITTEN);
	return 0;
fail:
	r->error = errno ? errno : EIO;
	if (ftruncate(sp->segfd, (off_t)start) < 0)
		sp->seg_suspect = true;
	seg_cut(sp, start);
	return -1;
}

/* Writes a prebuilt record (RCPT, DONE, SIG) at sp->segoff. */
static int
commit_write_rec(struct spool *sp, struct spool_req *r)
{
	unsigned char *h = (unsigned char *)r->head.p;
	uint32_t crc = rec_seal(sp, h, (uint32_t)(r->head.len - REC_HDR_LEN));

	set_u32le(h + 12, crc32c(crc, h + REC_HDR_LEN, r->head.len - REC_HDR_LEN));
	if (pwrite_full(sp->segfd, r->head.p, r->head.len, sp->segoff) < 0) {
		r->error = errno ? errno : EIO;
		if (ftruncate(sp->segfd, (off_t)sp->segoff) < 0)
			sp->seg_suspect = true;
		seg_cut(sp, sp->segoff);
		return -1;
	}
	r->loc.seg = sp->segseq;
	r->loc.off = sp->segoff + REC_HDR_LEN + r->loc_skip;
	r->loc.len = r->head.len - REC_HDR_LEN - r->loc_skip;
	sp->segoff += r->head.len;
	return 0;
}

/*
 * Deletes segment files below `below`, oldest first, making each deletion
 * durable before the next: a segment that came back after a crash while an
 * older one stayed deleted could revive retired messages without the
 * records that retired them.  The current segment goes too when nothing
 * in it is live (below is past it) and the disk is full: the space of the
 * delivered mail in it would otherwise come back only at the next
 * rotation, which a full disk never reaches.  The next record then starts
 * a new segment.
 */
static void
seg_reclaim(struct spool *sp, uint64_t below)
{
	size_t k = 0;

	if (sp->segfd >= 0 && below > sp->segseq && sp->seg_full) {
		close(sp->segfd);	/* no trim: it is about to go */
		sp->segfd = -1;
		log_info("spool: %s is full and its current segment holds no queued mail: "
		    "removing it", sp->dir);
	}
	uint64_t keep = sp->segfd >= 0 ? sp->segseq : UINT64_MAX;
	while (k < sp->nfiles && sp->files[k] < below && sp->files[k] < keep) {
		char name[32];

		seg_name(sp->files[k], name);
		if ((unlinkat(sp->dirfd, name, 0) < 0 && errno != ENOENT) || fsync(sp->dirfd) < 0) {
			log_warn("spool: cannot remove %s/%s: %s", sp->dir, name, strerror(errno));
			break;
		}
		k++;
	}
	if (k == 0)
		return;
	memmove(sp->files, sp->files + k, (sp->nfiles - k) * sizeof(*sp->files));
	sp->nfiles -= k;
	pthread_mutex_lock(&sp->mu);
	sp->stats.segments = sp->nfiles;
	pthread_mutex_unlock(&sp->mu);
}

/*
 * A message record met ENOSPC (full) or went in (not full).  The admin
 * wants to know when the spool gets full and when it has room again; on a
 * nearly full disk small messages fit and large ones do not, so a spool
 * going full again within a minute is not said again.
 */
static void
spool_note_full(struct spool *sp, bool full, int error)
{
	if (full)
		sp->seg_full = true;
	if (full && !sp->full_said && time(NULL) - sp->full_said_at >= 60) {
		sp->full_said = true;
		sp->full_said_at = time(NULL);
		log_warn("spool: %s is full (%s): new mail gets 452 4.3.1 until delivered mail "
		    "frees space", sp->dir, strerror(error));
	} else if (!full && sp->full_said) {
		sp->full_said = false;
		log_info("spool: %s has room again", sp->dir);
	}
}

/*
 * A failure other than a full disk (EROFS, EACCES, EIO) met by a record:
 * logged once, until a message record goes in again (spool_note_ok).
 */
static void
spool_note_failure(struct spool *sp, const char *what, int error)
{
	if (sp->fail_said == error || sp->gone_said)
		return;
	sp->fail_said = error;
	log_err("spool: %s %s: %s; new mail gets 452 4.3.1 until it can", what, sp->dir,
	    strerror(error));
}

/* A message record went in: the end of whatever failure was said. */
static void
spool_note_ok(struct spool *sp)
{
	spool_note_full(sp, false, 0);
	if (sp->gone_said) {
		log_info("spool: %s is back, the directory relayd opened: taking mail again",
		    sp->dir);
		sp->gone_said = 0;
	}
	if (sp->fail_said) {
		log_info("spool: %s can be written again: taking mail again", sp->dir);
		sp->fail_said = 0;
	}
}

/*
 * Whether the configured path no longer names the directory relayd opened:
 * 0 if it does (or cannot be told: a relay user may not be able to look up
 * the path; that is no reason to refuse mail), 1 if the path is missing or
 * names something else (renamed, replaced, a filesystem unmounted: the
 * directory may come back), 2 if the directory was removed (it cannot).
 */
static int
spool_dir_gone(const struct spool *sp)
{
	struct stat st, here;

	if (fstat(sp->dirfd, &here) == 0 && here.st_nlink == 0)
		return 2;
	if (stat(sp->dir, &st) < 0)
		return errno == ENOENT || errno == ENOTDIR ? 1 : 0;
	return st.st_dev != sp->dir_dev || st.st_ino != sp->dir_ino ? 1 : 0;
}

static void
spool_note_gone(struct spool *sp, int gone)
{
	if (sp->gone_said == gone)
		return;
	sp->gone_said = gone;
	if (gone == 2)
		log_err("spool: %s was removed, and the mail queued in it with it: new mail gets "
		    "452 4.3.1; restart relayd to make a new spool there", sp->dir);
	else
		log_err("spool: %s no longer names the spool directory relayd opened (renamed, "
		    "removed or a filesystem unmounted?): new mail gets 452 4.3.1 until it is back",
		    sp->dir);
}

/* Whether the current segment is to be left for a new one. */
static bool
seg_want_new(const struct spool *sp, uint64_t seg_max)
{
	return sp->segfd < 0 || sp->seg_suspect || (sp->segoff >= seg_max &&
	    sp->segoff > sp->seg_head);
}

/* Fails every request of the batch not failed yet with e, and cuts what
 * it wrote off the segment; the next batch goes to a fresh segment. */
static void
batch_cut(struct spool *sp, struct spool_req *batch, uint64_t batch_start, int e)
{
	for (struct spool_req *r = batch; r; r = r->next)
		if (r->error == 0)
			r->error = e;
	if (ftruncate(sp->segfd, (off_t)batch_start) == 0)
		(void)fdatasync(sp->segfd);
	seg_cut(sp, batch_start);
	sp->segoff = batch_start;
	sp->seg_suspect = true;
}

static void
commit_batch(struct spool *sp, struct spool_req *batch, uint64_t seg_max, bool full)
{
	uint64_t batch_start, reclaim_below = 0;
	size_t written = 0, writes = 0, msgs = 0, msgs_written = 0;
	int gone = 0;

	if (full)
		sp->seg_full = true;
	/* Deletions first: they free what this batch may need.  Deleting the
	 * segment a retired message is in retires it as surely as its DONE
	 * record would (spool_maybe_reclaim says why nothing live goes). */
	for (struct spool_req *r = batch; r; r = r->next) {
		if (r->kind != REQ_RECLAIM)
			writes++;
		else if (r->reclaim_below > reclaim_below)
			reclaim_below = r->reclaim_below;
		msgs += r->kind == REQ_MSG;
	}
	if (reclaim_below > 0)
		seg_reclaim(sp, reclaim_below);
	if (writes == 0)
		return;
	/* A message goes only where a restart will look for it. */
	if (msgs > 0 && (gone = spool_dir_gone(sp)) != 0) {
		spool_note_gone(sp, gone);
		for (struct spool_req *r = batch; r; r = r->next)
			if (r->kind == REQ_MSG)
				r->error = ENOENT;
		if ((writes -= msgs) == 0)
			return;
	}
	if (seg_want_new(sp, seg_max) && seg_create(sp, sp->segseq + 1) < 0) {
		int e = errno;

		if (e == ENOSPC || e == EDQUOT)
			spool_note_full(sp, true, e);
		else
			spool_note_failure(sp, "cannot create a segment in", e);
		for (struct spool_req *r = batch; r; r = r->next)
			if (r->error == 0)
				r->error = e;
		return;
	}
	batch_start = sp->segoff;
	for (struct spool_req *r = batch; r; r = r->next) {
		int rc;

		if (r->kind == REQ_RECLAIM)
			continue;
		if (r->kind == REQ_MSG && (r->body->err || gone)) {
			if (r->error == 0)
				r->error = r->body->err;
			continue;
		}
		rc = r->kind == REQ_MSG ? commit_write_msg(sp, r) : commit_write_rec(sp, r);
		if (rc == 0)
			written++;
		else if (r->error != ENOSPC && r->error != EDQUOT)
			spool_note_failure(sp, "cannot write to", r->error);
		if (r->kind == REQ_MSG && rc == 0)
			msgs_written++;
		else if (r->kind == REQ_MSG && (r->error == ENOSPC || r->error == EDQUOT))
			spool_note_full(sp, true, r->error);
	}
	if (written == 0)
		return;
	test_kill(sp, KP_SYNC);
	if (fdatasync(sp->segfd) < 0) {
		int e = errno;

		/* After a failed sync the page cache may no longer hold what
		 * the disk lacks: cut the batch off. */
		log_err("spool: fdatasync in %s failed: %s", sp->dir, strerror(e));
		batch_cut(sp, batch, batch_start, e);
		return;
	}
	/* Renamed away while the batch was written: its messages are where a
	 * restart will not look.  Cut off, they are refused, and the copy in
	 * the renamed directory cannot come back as a duplicate either. */
	if (msgs_written > 0 && (gone = spool_dir_gone(sp)) != 0) {
		spool_note_gone(sp, gone);
		batch_cut(sp, batch, batch_start, ENOENT);
		return;
	}
	test_kill(sp, KP_SYNCED);
	if (msgs_written > 0)
		spool_note_ok(sp);
	pthread_mutex_lock(&sp->mu);
	sp->stats.commits++;
	sp->stats.records += written;
	pthread_mutex_unlock(&sp->mu);
}

/* Takes every pending request as one batch; mu held. */
static struct spool_req *
batch_take(struct spool *sp, uint64_t *seg_max, bool *full)
{
	struct spool_req *batch = sp->pend;

	*seg_max = sp->seg_max;
	*full = sp->full_hint;
	sp->full_hint = false;
	sp->pend = NULL;
	sp->pend_tail = &sp->pend;
	sp->pend_waited = 0;
	return batch;
}

/* Hands a committed batch back to the event loop; mu held. */
static void
batch_done(struct spool *sp, struct spool_req *batch)
{
	struct spool_req *last = batch;

	while (last->next)
		last = last->next;
	*sp->done_tail = batch;
	sp->done_tail = &last->next;
	if (!sp->notified) {
		sp->notified = true;
		char c = 1;
		(void)!write(sp->notify_wr, &c, 1);
	}
}

static void *
committer_main(void *arg)
{
	struct spool *sp = arg;

	pthread_mutex_lock(&sp->mu);
	for (;;) {
		/* Lazy requests (nobody waits for them) wait for the next
		 * request that someone does wait for, or for their deadline:
		 * under load they ride along with a commit that happens
		 * anyway instead of costing one of their own. */
		bool due = false;

		while (!sp->stop) {
			if (sp->pend != NULL && (sp->pend_waited > 0 || due))
				break;
			if (seg_want_prepare(sp)) {
				/* idle: one chunk, then look again */
				pthread_mutex_unlock(&sp->mu);
				seg_prepare(sp);
				pthread_mutex_lock(&sp->mu);
				continue;
			}
			if (sp->pend == NULL)
				pthread_cond_wait(&sp->cv, &sp->mu);
			else if (pthread_cond_timedwait(&sp->cv, &sp->mu,
			    &sp->lazy_deadline) == ETIMEDOUT)
				due = true;
		}
		if (sp->pend == NULL)	/* only when stopping */
			break;
		uint64_t seg_max;
		bool full;
		struct spool_req *batch = batch_take(sp, &seg_max, &full);
		pthread_mutex_unlock(&sp->mu);

		commit_batch(sp, batch, seg_max, full);

		pthread_mutex_lock(&sp->mu);
		batch_done(sp, batch);
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

static void
req_free(struct spool_req *r)
{
	buf_free(&r->head);
	free(r->prefix);
	if (r->body)
		spool_body_free(r->body);
	free(r);
}

/* ---- event-loop side: live counts, reclaiming, reading ---------------- */

static void
seg_live_add(struct spool *sp, uint64_t seq, int delta)
{
	size_t i;

	for (i = sp->nsegs; i > 0 && sp->segs[i - 1].seq >= seq; i--)
		if (sp->segs[i - 1].seq == seq) {
			sp->segs[i - 1].live += (uint64_t)(int64_t)delta;
			return;
		}
	if (delta < 0)
		return;
	sp->segs = xrealloc(sp->segs, (sp->nsegs + 1) * sizeof(*sp->segs));
	memmove(sp->segs + i + 1, sp->segs + i, (sp->nsegs - i) * sizeof(*sp->segs));
	sp->segs[i].seq = seq;
	sp->segs[i].live = (uint64_t)delta;
	sp->nsegs++;
}

/*
 * Hands r to the committer.  A request without a done callback is lazy:
 * it is written, in order, with the next commit someone waits for, and
 * made durable within LAZY_MAX_MS at the latest.  Losing one to a crash
 * only means redoing what it recorded (a delivery, an attempt), never
 * losing mail: a message's MSG record is always waited for.
 */
static void
spool_enqueue(struct spool *sp, struct spool_req *r)
{
	bool wake = true;

	if (r->kind == REQ_MSG)
		sp->msgs_inflight++;
	pthread_mutex_lock(&sp->mu);
	if (r->waited)
		sp->pend_waited++;
	else if (sp->pend != NULL)
		wake = false;	/* a commit or a deadline is already due */
	else {
		clock_gettime(CLOCK_MONOTONIC, &sp->lazy_deadline);
		sp->lazy_deadline.tv_sec += sp->lazy_max_ms / 1000;
		sp->lazy_deadline.tv_nsec += sp->lazy_max_ms % 1000 * 1000000L;
		sp->lazy_deadline.tv_sec += sp->lazy_deadline.tv_nsec / 1000000000L;
		sp->lazy_deadline.tv_nsec %= 1000000000L;
	}
	*sp->pend_tail = r;
	sp->pend_tail = &r->next;
	if (wake)
		pthread_cond_signal(&sp->cv);
	pthread_mutex_unlock(&sp->mu);
}

/*
 * Once the oldest segments hold no live message, have them deleted; with
 * force, ask anyway (a full disk: the current segment may hold nothing
 * live, see seg_reclaim).
 *
 * The live counts are the event loop's, and a MSG record written but not
 * yet handed back (msgs_inflight) is not counted yet.  Such a record lies
 * in the segment its finished request names, or, still pending, in one no
 * older than the committer's current segment now: the bound stays below
 * both, so a segment holding a message that is about to get its 250 is
 * never deleted.
 */
static void
spool_maybe_reclaim(struct spool *sp, bool force)
{
	size_t k = 0;

	while (k < sp->nsegs && sp->segs[k].live == 0)
		k++;
	if (k == 0 && !force)
		return;
	if (k > 0) {
		memmove(sp->segs, sp->segs + k, (sp->nsegs - k) * sizeof(*sp->segs));
		sp->nsegs -= k;
	}

	uint64_t below = sp->nsegs ? sp->segs[0].seq : UINT64_MAX;
	struct spool_req *r = xcalloc(1, sizeof(*r));

	if (sp->msgs_inflight > 0) {
		pthread_mutex_lock(&sp->mu);
		if (below > sp->pub_seq)
			below = sp->pub_seq;
		for (const struct spool_req *d = sp->done; d != NULL; d = d->next)
			if (d->kind == REQ_MSG && d->error == 0 && d->loc.seg < below)
				below = d->loc.seg;
		pthread_mutex_unlock(&sp->mu);
	}

	/* read descriptors of segments about to go */
	size_t j = 0;
	for (size_t i = 0; i < sp->nrfds; i++) {
		if (sp->rfds[i].seq < below)
			close(sp->rfds[i].fd);
		else
			sp->rfds[j++] = sp->rfds[i];
	}
	sp->nrfds = j;

	r->kind = REQ_RECLAIM;
	r->reclaim_below = below;
	r->done_seg = -1;
	buf_init(&r->head);
	spool_enqueue(sp, r);
}

int
spool_text_fd(struct spool *sp, const struct spool_loc *loc)
{
	char name[32];
	int fd;

	for (size_t i = 0; i < sp->nrfds; i++)
		if (sp->rfds[i].seq == loc->seg)
			return sp->rfds[i].fd;
	seg_name(loc->seg, name);
	fd = openat(sp->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	sp->rfds = xrealloc(sp->rfds, (sp->nrfds + 1) * sizeof(*sp->rfds));
	sp->rfds[sp->nrfds].seq = loc->seg;
	sp->rfds[sp->nrfds].fd = fd;
	sp->nrfds++;
	return fd;
}

/* Event loop side: hand finished commits back to their owners. */
static void
spool_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spool *sp = arg;
	char drain[64];

	while (read(fd, drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&sp->mu);
	struct spool_req *list = sp->done;
	sp->done = NULL;
	sp->done_tail = &sp->done;
	sp->notified = false;
	pthread_mutex_unlock(&sp->mu);

	bool retired = false, full = false;

	while (list) {
		struct spool_req *r = list;

		list = r->next;
		if (r->kind == REQ_MSG)
			sp->msgs_inflight--;
		if (r->error == 0 && r->kind == REQ_MSG)
			seg_live_add(sp, r->loc.seg, +1);
		/* A DONE retires its message even when its record did not make
		 * it to disk (a full one): deleting the message's segment then
		 * retires it as well, and until then a restart only means the
		 * message is delivered again.  A relocation that failed leaves
		 * the old copy live. */
		if (r->done_seg >= 0 && (r->error == 0 || r->kind == REQ_REC)) {
			seg_live_add(sp, (uint64_t)r->done_seg, -1);
			retired = true;
		}
		full |= r->error == ENOSPC || r->error == EDQUOT;
		if (r->done)
			r->done(r->arg, r->error, &r->loc);
		req_free(r);
	}
	if (retired || full)
		spool_maybe_reclaim(sp, full);
}

/* Builds a whole record of the given type around payload p. */
static struct spool_req *
rec_req(int type, const struct buf *p, spool_done_fn done, void *arg)
{
	struct spool_req *r = xcalloc(1, sizeof(*r));

	r->kind = REQ_REC;
	r->done_seg = -1;
	r->done = done;
	r->arg = arg;
	r->waited = done != NULL;
	buf_init(&r->head);
	put_header(&r->head, type);
	buf_add(&r->head, p->p, p->len);
	return r;
}

static uint64_t
env_qid(const struct spool_envelope *env)
{
	uint64_t qid = 0;

	(void)qid_decode(env->id, &qid);
	return qid;
}

void
spool_commit_rcpt(struct spool *sp, const struct spool_envelope *env, size_t idx,
    spool_done_fn done, void *arg)
{
	const struct spool_rcpt *rc = &env->rcpts[idx];
	struct buf p;

	buf_init(&p);
	put_u64(&p, env_qid(env));
	put_u32(&p, (uint32_t)idx);
	put_u8(&p, rc->status);
	put_u16(&p, rc->attempts);
	put_u64(&p, (uint64_t)rc->next_attempt);
	put_str(&p, rc->last_error);
	put_str(&p, rc->dsn);
	spool_enqueue(sp, rec_req(REC_RCPT, &p, done, arg));
	buf_free(&p);
}

void
spool_commit_done(struct spool *sp, const struct spool_envelope *env,
    spool_done_fn done, void *arg)
{
	struct buf p;
	struct spool_req *r;

	buf_init(&p);
	put_u64(&p, env_qid(env));
	r = rec_req(REC_DONE, &p, done, arg);
	r->done_seg = (int64_t)env->loc.seg;
	spool_enqueue(sp, r);
	buf_free(&p);
}

void
spool_commit_sigs(struct spool *sp, const struct spool_envelope *env, const char *sigs,
    size_t len, spool_done_fn done, void *arg)
{
	struct buf p;
	struct spool_req *r;

	buf_init(&p);
	put_u64(&p, env_qid(env));
	buf_add(&p, sigs, len);
	r = rec_req(REC_SIG, &p, done, arg);
	r->waited = false;	/* lazy, but told when durable */
	r->loc_skip = 8;	/* the qid */
	spool_enqueue(sp, r);
	buf_free(&p);
}

int
spool_read_sigs(struct spool *sp, const struct spool_envelope *env, struct buf *out)
{
	if (!(env->flags & SPOOL_F_SIGPEND))
		return 0;
	if (env->sigs != NULL) {
		buf_add(out, env->sigs, env->siglen);
		return 1;
	}
	if (env->sigloc.len == 0)
		return 0;

	int fd = spool_text_fd(sp, &env->sigloc);
	size_t n = (size_t)env->sigloc.len;

	if (fd < 0)
		return -1;
	char *p = xmalloc(n);
	ssize_t k = pread(fd, p, n, (off_t)env->sigloc.off);
	if (k != (ssize_t)n) {
		free(p);
		if (k >= 0)
			errno = EIO;
		return -1;
	}
	buf_add(out, p, n);
	free(p);
	return 1;
}

uint64_t
spool_envelope_size(const struct spool_envelope *env)
{
	uint64_t n = env->loc.len;

	if (env->flags & SPOOL_F_SIGPEND)
		n += env->sigs ? env->siglen : env->sigloc.len;
	return n;
}

static struct spool_req *
msg_req(const struct spool_envelope *env, const char *prefix, size_t prefixlen,
    struct spool_body *body, spool_done_fn done, void *arg)
{
	struct spool_req *r = xcalloc(1, sizeof(*r));

	r->kind = REQ_MSG;
	r->done_seg = -1;
	buf_init(&r->head);
	encode_msg_head(&r->head, env, env_qid(env), env->flags, prefixlen + body->size);
	r->prefix = xstrndup(prefix, prefixlen);
	r->prefixlen = prefixlen;
	r->body = body;
	r->done = done;
	r->arg = arg;
	r->waited = true;
	return r;
}

void
spool_commit_message(struct spool *sp, const struct spool_envelope *env,
    const char *prefix, size_t prefixlen, struct spool_body *body,
    spool_done_fn done, void *arg)
{
	spool_enqueue(sp, msg_req(env, prefix, prefixlen, body, done, arg));
}

/*
 * A segment worth emptying: the oldest one that holds live messages, when
 * live messages also sit at least two segments further on and the old one
 * holds few of them.  Such messages (deferred for hours, say) would keep
 * it, and every newer segment, on disk.  0 if there is none.
 */
uint64_t
spool_compact_candidate(const struct spool *sp)
{
	if (sp->nsegs < 2)
		return 0;
	const struct segcount *old = &sp->segs[0];
	if (sp->segs[sp->nsegs - 1].seq - old->seq < 2 || old->live > SPOOL_COMPACT_MAX)
		return 0;
	return old->seq;
}

void
spool_relocate(struct spool *sp, const struct spool_envelope *env, spool_done_fn done,
    void *arg)
{
	struct spool_body *b = spool_body_new(sp);
	int fd = spool_text_fd(sp, &env->loc);
	struct spool_req *r;
	struct buf sigs;
	uint32_t flags = env->flags;

	/* signatures kept apart join the head of the text again */
	buf_init(&sigs);
	int got = spool_read_sigs(sp, env, &sigs);
	if (got > 0)
		flags &= ~SPOOL_F_SIGPEND;
	else if (got < 0)
		b->err = errno ? errno : EIO;

	/* the text is copied by the committer, straight from its segment */
	b->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	b->base = env->loc.off;
	b->size = env->loc.len;
	if (b->fd < 0 && b->err == 0)
		b->err = errno ? errno : EIO;
	r = xcalloc(1, sizeof(*r));
	r->kind = REQ_MSG;
	r->done_seg = (int64_t)env->loc.seg;	/* the old copy stops counting */
	buf_init(&r->head);
	encode_msg_head(&r->head, env, env_qid(env), flags, sigs.len + env->loc.len);
	r->prefix = xstrndup(sigs.len ? sigs.p : "", sigs.len);
	r->prefixlen = sigs.len;
	r->body = b;
	r->done = done;
	r->arg = arg;
	r->waited = true;
	spool_enqueue(sp, r);
	buf_free(&sigs);
}

void
spool_envelope_moved(struct spool_envelope *env, const struct spool_loc *loc)
{
	env->loc = *loc;
	if ((env->flags & SPOOL_F_SIGPEND) && (env->sigs != NULL || env->sigloc.len > 0)) {
		/* spool_relocate() joined them to the text */
		env->flags &= ~SPOOL_F_SIGPEND;
		free(env->sigs);
		env->sigs = NULL;
		env->siglen = 0;
		memset(&env->sigloc, 0, sizeof(env->sigloc));
	}
}

void
spool_get_stats(const struct spool *sp, struct spool_stats *st)
{
	pthread_mutex_lock((pthread_mutex_t *)&sp->mu);
	*st = sp->stats;
	pthread_mutex_unlock((pthread_mutex_t *)&sp->mu);
}

void
spool_set_segment_max(struct spool *sp, uint64_t bytes)
{
	pthread_mutex_lock(&sp->mu);
	sp->seg_max = bytes;
	pthread_mutex_unlock(&sp->mu);
}

void
spool_set_lazy_max(struct spool *sp, long ms)
{
	pthread_mutex_lock(&sp->mu);
	sp->lazy_max_ms = ms;
	pthread_mutex_unlock(&sp->mu);
}

uint64_t
spool_max_qid(const struct spool *sp)
{
	return sp->maxqid;
}

/* ---- recovery ---------------------------------------------------------- */

/* A damaged record met while reading the spool, reported once every
 * segment is read (what it cost depends on what came after). */
struct damage {
	uint64_t	seq;		/* segment */
	uint64_t	off;		/* where the damage starts */
	uint64_t	bytes;		/* how many bytes are skipped or cut off */
	int		type;		/* the record's type if its header is readable, else 0 */
	uint64_t	qid;		/* its queue id if readable, else 0 */
	bool		cut;		/* cut off: the tail of the newest segment */
	bool		unread;		/* the rest of an old-format segment, not read */
	bool		retired;	/* a later DONE retired this qid */
	bool		disk;		/* in pages the disk could not give back */
	uint64_t	reclen;		/* the length its header gives, or 0 */
};

struct recovery {
	struct idmap	*msgs;		/* qid -> envelope */
	uint64_t	 maxqid;
	struct damage	*dmg;
	size_t		 ndmg;
};

static void
recover_record(struct recovery *rc, int type, const unsigned char *p, size_t n,
    uint64_t seg, uint64_t payload_off)
{
	struct rd r = { p, n, false };
	uint64_t qid;

	switch (type) {
	case REC_MSG: {
		struct spool_envelope *env = decode_msg(p, n, &qid, seg, payload_off);

		if (env == NULL || qid == 0) {
			char id[QID_SIZE];

			qid_encode(qid, id);
			log_err("spool: %016" PRIx64 ".seg offset %" PRIu64
			    ": unreadable MSG record of queue id %s skipped: message %s is lost",
			    seg, payload_off, id, id);
			spool_envelope_free(env);
			return;
		}
		if (qid > rc->maxqid)
			rc->maxqid = qid;
		spool_envelope_free(idmap_put(rc->msgs, qid, env));
		return;
	}
	case REC_RCPT: {
		qid = rd_uint(&r, 8);
		uint32_t idx = (uint32_t)rd_uint(&r, 4);
		uint8_t status = (uint8_t)rd_uint(&r, 1);
		uint16_t attempts = (uint16_t)rd_uint(&r, 2);
		int64_t next = (int64_t)rd_uint(&r, 8);
		char *err = rd_str(&r);
		char *dsn = rd_str(&r);
		struct spool_envelope *env = idmap_get(rc->msgs, qid);

		if (!r.bad && env != NULL && idx < env->nrcpt) {
			struct spool_rcpt *rcpt = &env->rcpts[idx];

			rcpt->status = status;
			rcpt->attempts = attempts;
			rcpt->next_attempt = next;
			free(rcpt->last_error);
			rcpt->last_error = err;
			err = NULL;
			snprintf(rcpt->dsn, sizeof(rcpt->dsn), "%s", dsn ? dsn : "");
		}
		free(err);
		free(dsn);
		return;
	}
	case REC_DONE:
		qid = rd_uint(&r, 8);
		if (r.bad)
			return;
		spool_envelope_free(idmap_del(rc->msgs, qid));
		for (size_t i = 0; i < rc->ndmg; i++)
			if (rc->dmg[i].qid == qid)
				rc->dmg[i].retired = true;
		return;
	case REC_SIG: {
		qid = rd_uint(&r, 8);
		struct spool_envelope *env = r.bad ? NULL : idmap_get(rc->msgs, qid);

		/* (a relocated copy has them in its text: no SIGPEND) */
		if (env != NULL && (env->flags & SPOOL_F_SIGPEND)) {
			env->sigloc.seg = seg;
			env->sigloc.off = payload_off + 8;
			env->sigloc.len = n - 8;
		}
		return;
	}
	default:
		log_warn("spool: %016" PRIx64 ".seg: unknown record type %d skipped", seg, type);
	}
}

/* One segment being read. */
struct segread {
	struct spool		*sp;
	struct recovery		*rc;
	char			 name[32];
	uint64_t		 seq;
	const unsigned char	*map;
	uint64_t		 size;
	uint64_t		 bad_from, bad_to;	/* the pages that could not be read
						 * lie in here (seg_load) */
	int			 version;	/* 1 or 2 */
	unsigned char		 seal[SEAL_LEN];	/* version 2 */
};

static size_t
hdr_len(const struct segread *s)
{
	return s->version == 1 ? REC_HDR_V1 : REC_HDR_LEN;
}

/*
 * Whether a record header of this segment's format starts at off: the
 * magic, the version and, in a sealed segment, its seal: then relayd wrote
 * it, as no client can know the seal.  Its CRC may still fail.
 */
static bool
header_at(const struct segread *s, uint64_t off)
{
	const unsigned char *p = s->map + off;

	if (s->size - off < hdr_len(s) || get_u32le(p) != REC_MAGIC || p[5] != s->version)
		return false;
	return s->version == 1 || memcmp(p + 16, s->seal, SEAL_LEN) == 0;
}

/* The length of the whole, checksummed record at off, or 0. */
static uint64_t
record_at(const struct segread *s, uint64_t off)
{
	const unsigned char *p = s->map + off;
	size_t hl = hdr_len(s);

	if (!header_at(s, off))
		return 0;
	uint64_t len = get_u32le(p + 8);
	if (len > s->size - off - hl)
		return 0;
	uint32_t crc = s->version == 1 ? crc32c(0, p + 4, 8) : header_crc(p);
	if (crc32c(crc, p + hl, (size_t)len) != get_u32le(p + 12))
		return 0;
	return hl + len;
}

/* Where the last non-zero byte before `to` ends (from at least). */
static uint64_t
nonzero_end(const struct segread *s, uint64_t from, uint64_t to)
{
	while (to > from && s->map[to - 1] == 0)
		to--;
	return to;
}

/* The next header of this sealed segment after off, or its size. */
static uint64_t
next_header(const struct segread *s, uint64_t off)
{
	static const unsigned char magic[4] = { 'R', 'L', 'Y', 'R' };

	while (++off < s->size) {
		const unsigned char *nx = memmem(s->map + off, s->size - off, magic, 4);

		if (nx == NULL)
			break;
		off = (uint64_t)(nx - s->map);
		if (header_at(s, off))
			return off;
	}
	return s->size;
}

/* Notes damage from off to end, naming the record there if its header
 * can be read. */
static void
damage_note(struct segread *s, uint64_t off, uint64_t end, bool unread)
{
	struct recovery *rc = s->rc;
	struct damage *d;

	rc->dmg = xrealloc(rc->dmg, (rc->ndmg + 1) * sizeof(*rc->dmg));
	d = &rc->dmg[rc->ndmg++];
	memset(d, 0, sizeof(*d));
	d->seq = s->seq;
	d->off = off;
	d->bytes = nonzero_end(s, off, end) - off;
	d->unread = unread;
	d->disk = off < s->bad_to && end > s->bad_from;
	if (header_at(s, off)) {
		struct rd r = { s->map + off + hdr_len(s), s->size - off - hdr_len(s), false };

		d->type = s->map[off + 4];
		d->reclen = hdr_len(s) + get_u32le(s->map + off + 8);
		d->qid = rd_uint(&r, 8);	/* every type but SEG starts with it */
		if (d->type == REC_SEG || r.bad)
			d->qid = 0;
	}
}

/*
 * Reads the records of a segment from `off` on, strictly in sequence:
 * every position read is the end of a record whose header and CRC were
 * verified, so message text is never read as a record.  At a record that
 * fails, a sealed segment (version 2) goes on at the next header carrying
 * its seal, which only relayd can have written (a bad block in the middle
 * of a segment costs only the records in it); an old-format one stops,
 * since there a header cannot be told from message text.  Returns where
 * the last whole record ends.
 */
static uint64_t
read_records(struct segread *s, uint64_t off)
{
	uint64_t good_end = off;

	while (off < s->size) {
		uint64_t len = record_at(s, off);
		size_t hl = hdr_len(s);

		if (len > 0) {
			const unsigned char *p = s->map + off;

			if (p[4] != REC_SEG)
				recover_record(s->rc, p[4], p + hl, len - hl, s->seq, off + hl);
			off += len;
			good_end = off;
			continue;
		}
		if (nonzero_end(s, off, s->size) == off)
			break;		/* the preallocated tail */
		if (s->version == 1) {
			damage_note(s, off, s->size, true);
			break;
		}
		uint64_t next = next_header(s, off);
		damage_note(s, off, next, false);
		off = next;
	}
	return good_end;
}

enum seg_format { SEGF_OK, SEGF_EMPTY, SEGF_BAD, SEGF_NEWER };

/*
 * Tells the format from the first record: a sealed segment starts with
 * its SEG record (the seal), an old one with any version-1 record.  First
 * is where the records after the segment header start.
 */
static enum seg_format
seg_format(struct segread *s, uint64_t *first)
{
	const unsigned char *p = s->map;

	*first = 0;
	if (s->size >= 6 && get_u32le(p) == REC_MAGIC && p[5] == 1) {
		s->version = 1;
		return SEGF_OK;
	}
	if (s->size >= REC_HDR_LEN && get_u32le(p) == REC_MAGIC && p[5] == 2 && p[4] == REC_SEG) {
		s->version = 2;
		memcpy(s->seal, p + 16, SEAL_LEN);
		if ((*first = record_at(s, 0)) > 0)
			return SEGF_OK;
	}
	if (s->size >= 6 && get_u32le(p) == REC_MAGIC && p[5] > REC_VERSION)
		return SEGF_NEWER;
	/* zeros, or a segment header a crash cut short before anything was
	 * written after it (it is synced before any record) */
	return nonzero_end(s, 0, s->size) <= REC_HDR_LEN + 16 ? SEGF_EMPTY : SEGF_BAD;
}

/*
 * A segment whose first record cannot be read: without its seal, no
 * record in it can be told from message text, so none is read; it is set
 * aside for the admin (renamed), not deleted.
 */
static void
seg_set_aside(struct segread *s, const char *why)
{
	char aside[48];

	snprintf(aside, sizeof(aside), "%s.damaged", s->name);
	if (renameat(s->sp->dirfd, s->name, s->sp->dirfd, aside) < 0 || fsync(s->sp->dirfd) < 0) {
		log_err("spool: %s/%s: its segment header %s, and it cannot be renamed to %s: %s",
		    s->sp->dir, s->name, why, aside, strerror(errno));
		return;
	}
	log_err("spool: %s/%s: its segment header %s: none of its %" PRIu64 " bytes can be read "
	    "safely, and the messages in it are lost; renamed %s (their text can be read with "
	    "less: remove the file when done)", s->sp->dir, s->name, why, s->size, aside);
}

/*
 * The test hook RELAYD_TEST_SPOOL_EIO=SEGMENT:OFFSET (relayd.8): reading
 * the page of that segment (its name's 16 hex digits) holding OFFSET
 * fails with EIO, as a disk's bad sector would.
 */
static bool
test_eio(uint64_t seq, uint64_t off, size_t len)
{
	const char *v = getenv("RELAYD_TEST_SPOOL_EIO");
	char *end;

	if (v == NULL || *v == '\0' || strtoull(v, &end, 16) != seq || *end != ':')
		return false;
	uint64_t bad = strtoull(end + 1, NULL, 10) / SEG_PAGE * SEG_PAGE;

	return bad < off + len && off < bad + SEG_PAGE;
}

/*
 * Reads a whole segment into memory of its own (given back to the system
 * when unmapped).  A read, not a file mapping: a disk error while
 * recovery reads a mapping is a SIGBUS; here it is an error, and the
 * pages the disk cannot give read as zeros (so the records there fail
 * their checks, as any damage), counted in *bad; they lie between
 * s->bad_from (the first) and s->bad_to.
 */
static unsigned char *
seg_load(struct segread *s, int fd, uint64_t *bad, int *bad_errno)
{
	unsigned char *m = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	bool paged = false;

	*bad = 0;
	*bad_errno = 0;
	if (m == MAP_FAILED)
		return NULL;
	for (uint64_t off = 0; off < s->size;) {
		/* after an error, a page at a time up to the next 1 MiB */
		size_t want = paged ? SEG_PAGE - off % SEG_PAGE : (size_t)1 << 20;
		ssize_t n;

		if (want > s->size - off)
			want = (size_t)(s->size - off);
		if (test_eio(s->seq, off, want)) {
			n = -1;
			errno = EIO;
		} else {
			n = pread(fd, m + off, want, (off_t)off);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0) {
			off += (uint64_t)n;
			if (paged && off % ((uint64_t)1 << 20) == 0)
				paged = false;
			continue;
		}
		if (!paged) {
			paged = true;
			continue;
		}
		/* this page cannot be read (or the file ended early) */
		if (*bad == 0) {
			s->bad_from = off;
			*bad_errno = n < 0 ? errno : EIO;
		}
		s->bad_to = off + want;
		memset(m + off, 0, want);
		*bad += want;
		off += want;
	}
	return m;
}

/*
 * Some of a segment cannot be read (a disk error): said, and the segment
 * kept whole under a second name (a hard link, SEGMENT.damaged) that
 * outlives its deletion once the messages read from it are delivered, for
 * the admin to copy off once the disk gives it back, or remove.
 */
static void
seg_note_unreadable(struct segread *s, uint64_t bad, int bad_errno)
{
	char aside[48], kept[160];

	snprintf(aside, sizeof(aside), "%s.damaged", s->name);
	if (linkat(s->sp->dirfd, s->name, s->sp->dirfd, aside, 0) == 0 || errno == EEXIST) {
		(void)fsync(s->sp->dirfd);
		snprintf(kept, sizeof(kept), "a copy is kept as %s (remove it when done)", aside);
	} else {
		snprintf(kept, sizeof(kept), "it cannot be kept as %s: %s", aside, strerror(errno));
	}
	log_err("spool: %s/%s: %" PRIu64 " of its %" PRIu64 " bytes cannot be read, the first at "
	    "offset %" PRIu64 " (%s): the disk may be failing; the records there count as damaged "
	    "(a restart once the disk reads them brings them back), the rest is read; %s",
	    s->sp->dir, s->name, bad, s->size, s->bad_from, strerror(bad_errno), kept);
}

/*
 * Reads one segment (see read_records).  What follows the last whole
 * record: zeros (preallocated) are trimmed; in the newest segment, the
 * rest of a write a crash interrupted, never acknowledged, is cut off; in
 * an older one, damage is left where it is.  Returns 0, 1 if the segment
 * was set aside, -1 if it cannot be read at all or was written by a newer
 * relayd.
 */
static int
recover_segment(struct spool *sp, struct recovery *rc, uint64_t seq, bool last,
    char *err, size_t errlen)
{
	struct segread s = { .sp = sp, .rc = rc, .seq = seq };
	struct stat st;
	int fd;

	seg_name(seq, s.name);
	fd = openat(sp->dirfd, s.name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ELOOP) {
		snprintf(err, errlen, "%s/%s is a symbolic link, not a spool segment: relayd never "
		    "follows links in its spool; remove it", sp->dir, s.name);
		return -1;
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot open %s/%s: %s", sp->dir, s.name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s/%s is not a regular file, not a spool segment: remove it",
		    sp->dir, s.name);
		close(fd);
		return -1;
	}
	s.size = (uint64_t)st.st_size;
	if (s.size == 0) {
		close(fd);
		return 0;
	}
	uint64_t bad;
	int bad_errno;

	s.map = seg_load(&s, fd, &bad, &bad_errno);
	if (s.map == NULL) {
		snprintf(err, errlen, "cannot read %s/%s (%" PRIu64 " bytes) into memory: %s",
		    sp->dir, s.name, s.size, strerror(errno));
		close(fd);
		return -1;
	}
	uint64_t first, good_end = 0;
	int status = 0;
	char why[128] = "is damaged";
	enum seg_format fmt = seg_format(&s, &first);

	/* its header unread: without its seal no record can be trusted */
	if (bad > 0 && (fmt == SEGF_BAD || fmt == SEGF_EMPTY)) {
		fmt = SEGF_BAD;
		snprintf(why, sizeof(why), "cannot be read (%s)", strerror(bad_errno));
	} else if (bad > 0) {
		seg_note_unreadable(&s, bad, bad_errno);
	}
	switch (fmt) {
	case SEGF_OK:
		good_end = read_records(&s, first);
		break;
	case SEGF_EMPTY:
		break;
	case SEGF_NEWER:
		snprintf(err, errlen, "%s/%s was written by a newer relayd (record format %d; this "
		    "one reads 1 and %d): run that version, or move the segment away", sp->dir,
		    s.name, s.map[5], REC_VERSION);
		status = -1;
		break;
	case SEGF_BAD:
		seg_set_aside(&s, why);
		munmap((void *)s.map, s.size);
		close(fd);
		return 1;
	}
	bool rest_zeros = nonzero_end(&s, good_end, s.size) == good_end;
	munmap((void *)s.map, s.size);
	/* nothing unread is cut off: the zeros may be a bad sector's */
	if (status == 0 && bad == 0 && good_end < s.size && (rest_zeros || last)) {
		/* the tail: preallocated zeros, or an unfinished write */
		for (size_t i = 0; i < rc->ndmg; i++)
			if (rc->dmg[i].seq == seq && rc->dmg[i].off >= good_end) {
				rc->dmg[i].cut = true;
				rc->dmg[i].unread = false;
			}
		if (ftruncate(fd, (off_t)good_end) < 0 || (!rest_zeros && fsync(fd) < 0))
			log_err("spool: %s/%s: cannot cut off what follows offset %" PRIu64 ": %s",
			    sp->dir, s.name, good_end, strerror(errno));
	}
	close(fd);
	return status;
}

/* What a damaged record cost, in words an admin can act on. */
static void
damage_describe(const struct damage *d, bool live, struct buf *b)
{
	char id[QID_SIZE];

	qid_encode(d->qid, id);
	switch (d->qid ? d->type : 0) {
	case REC_MSG:
		if (live)
			buf_printf(b, "a copy of message %s; it stays queued from another copy", id);
		else if (d->retired)
			buf_printf(b, "the MSG record of %s, retired later: nothing lost", id);
		else if (d->cut)
			buf_printf(b, "the MSG record of %s, never acknowledged", id);
		else
			buf_printf(b, "the MSG record of %s: message %s is lost%s; its client= and "
			    "from= log lines say who sent it", id, id, d->disk ? " unless a restart "
			    "reads it once the disk gives the page back" : "");
		return;
	case REC_DONE:
		if (live)
			buf_printf(b, "the DONE record of %s: it will be delivered again (relayctl "
			    "remove %s if it must not)", id, id);
		else
			buf_printf(b, "the DONE record of %s: nothing lost", id);
		return;
	case REC_RCPT:
		buf_printf(b, "a recipient's state of %s: %s", id, live ?
		    "a delivery attempt may be repeated" : "nothing lost");
		return;
	case REC_SIG:
		buf_printf(b, "the signatures of %s: %s", id, live ?
		    "it will be signed again before it is sent" : "nothing lost");
		return;
	case 0:
		buf_printf(b, "%s%s", d->cut ? "no record header there: a message whose header "
		    "was not written yet, never acknowledged" : "no record header readable there: "
		    "what they held is unknown", d->disk ? " until a restart reads them once the "
		    "disk gives the page back" : "");
		return;
	default:
		buf_printf(b, "a record of unknown type %d", d->type);
	}
}

/* Logs every damaged record met, one line each: where, what, what it cost. */
static void
damage_report(const struct spool *sp, const struct recovery *rc)
{
	for (size_t i = 0; i < rc->ndmg; i++) {
		const struct damage *d = &rc->dmg[i];
		bool live = d->qid != 0 && idmap_get(rc->msgs, d->qid) != NULL;
		char name[32];
		struct buf what;

		seg_name(d->seq, name);
		buf_init(&what);
		damage_describe(d, live, &what);
		/* a record named, but the damage runs on past its end: the
		 * headers of the records after it are gone with it */
		if (d->type != 0 && !d->cut && !d->unread && d->reclen > 0 && d->reclen < d->bytes)
			buf_printf(&what, "; and after it %" PRIu64 " bytes whose record headers cannot "
			    "be read: what they held is unknown%s", d->bytes - d->reclen, d->disk ?
			    " until a restart reads them once the disk gives the page back" : "");
		if (d->unread)
			log_err("spool: %s/%s: offset %" PRIu64 ": a damaged record (%s); the %" PRIu64
			    " bytes from there on are not read: in a segment of the old format "
			    "(version 1) message text cannot be told from records, so the messages "
			    "recorded there are lost", sp->dir, name, d->off, what.p, d->bytes);
		else if (d->cut)
			log_warn("spool: %s/%s: offset %" PRIu64 ": %" PRIu64 " bytes of an "
			    "unfinished write cut off (%s)", sp->dir, name, d->off, d->bytes, what.p);
		else
			log_err("spool: %s/%s: offset %" PRIu64 ": %" PRIu64 " damaged bytes skipped "
			    "(%s)", sp->dir, name, d->off, d->bytes, what.p);
		buf_free(&what);
	}
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
cmp_env(const void *a, const void *b)
{
	const struct spool_envelope *x = *(struct spool_envelope *const *)a;
	const struct spool_envelope *y = *(struct spool_envelope *const *)b;

	return strcmp(x->id, y->id);
}

struct collect {
	struct spool_envelope	**v;
	size_t			  n;
};

static void
collect_env(void *arg, uint64_t key, void *val)
{
	struct collect *c = arg;

	c->v[c->n++] = val;
}

/* Lists segment sequence numbers, sorted; removes stray temporary files. */
static int
list_segments(struct spool *sp, uint64_t **out, size_t *nout, char *err, size_t errlen)
{
	int fd = dup(sp->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	uint64_t *v = NULL;
	size_t n = 0, cap = 0;

	if (d == NULL) {
		snprintf(err, errlen, "cannot read %s: %s", sp->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		size_t len = strlen(nm);

		if (strncmp(nm, "tmp.", 4) == 0) {
			unlinkat(sp->dirfd, nm, 0);
			continue;
		}
		if (len != 20 || strcmp(nm + 16, ".seg") != 0 ||
		    strspn(nm, "0123456789abcdef") != 16)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[n++] = strtoull(nm, NULL, 16);
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_u64);
	*out = v;
	*nout = n;
	return 0;
}

static void
free_env_entry(void *arg, uint64_t key, void *val)
{
	spool_envelope_free(val);
}

static int
spool_recover(struct spool *sp, spool_load_fn load, void *load_arg, char *err, size_t errlen)
{
	struct recovery rc = { idmap_new(), 0, NULL, 0 };
	uint64_t *segs = NULL;
	size_t nsegs = 0, kept = 0;

	if (list_segments(sp, &segs, &nsegs, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < nsegs; i++) {
		int r = recover_segment(sp, &rc, segs[i], i + 1 == nsegs, err, errlen);

		if (r < 0)
			goto fail;
		if (r == 0)
			segs[kept++] = segs[i];
	}
	sp->segseq = nsegs ? segs[nsegs - 1] : 0;	/* the next one is new */
	nsegs = kept;
	damage_report(sp, &rc);

	/* Delete the oldest segments that no live message starts in. */
	size_t nmsg = idmap_count(rc.msgs);
	struct collect c = { xcalloc(nmsg ? nmsg : 1, sizeof(*c.v)), 0 };
	uint64_t oldest_live = UINT64_MAX;

	idmap_foreach(rc.msgs, collect_env, &c);
	for (size_t i = 0; i < c.n; i++)
		if (c.v[i]->loc.seg < oldest_live)
			oldest_live = c.v[i]->loc.seg;
	size_t first = 0;
	for (; first < nsegs && segs[first] < oldest_live; first++) {
		char name[32];

		seg_name(segs[first], name);
		if (unlinkat(sp->dirfd, name, 0) < 0 || fsync(sp->dirfd) < 0) {
			log_warn("spool: cannot remove %s/%s: %s", sp->dir, name, strerror(errno));
			break;
		}
	}
	sp->nfiles = nsegs - first;
	sp->files = xcalloc(sp->nfiles ? sp->nfiles : 1, sizeof(*sp->files));
	if (sp->nfiles > 0)
		memcpy(sp->files, segs + first, sp->nfiles * sizeof(*sp->files));
	for (size_t i = 0; i < c.n; i++)
		seg_live_add(sp, c.v[i]->loc.seg, +1);
	sp->maxqid = rc.maxqid;

	qsort(c.v, c.n, sizeof(*c.v), cmp_env);
	for (size_t i = 0; i < c.n; i++)
		load(load_arg, c.v[i]);
	free(c.v);
	idmap_free(rc.msgs);
	free(rc.dmg);
	free(segs);
	return 0;
fail:
	idmap_foreach(rc.msgs, free_env_entry, NULL);
	idmap_free(rc.msgs);
	free(rc.dmg);
	free(segs);
	return -1;
}

int
spool_recover_dir(const char *dir, spool_load_fn load, void *load_arg, char *err,
    size_t errlen)
{
	struct spool sp;
	int rc;

	memset(&sp, 0, sizeof(sp));
	sp.dir = (char *)dir;
	if ((sp.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot open spool %s: %s", dir, strerror(errno));
		return -1;
	}
	rc = spool_recover(&sp, load, load_arg, err, errlen);
	free(sp.files);
	free(sp.segs);
	close(sp.dirfd);
	return rc;
}

/* ---- open / close ------------------------------------------------------ */

/* Files of relayd's own in the spool: segments, set-aside ones, the lock. */
static bool
spool_file(const char *nm)
{
	size_t len = strlen(nm);

	if (strcmp(nm, "lock") == 0)
		return true;
	return len >= 20 && strspn(nm, "0123456789abcdef") == 16 &&
	    (strcmp(nm + 16, ".seg") == 0 || strcmp(nm + 16, ".seg.damaged") == 0);
}

int
spool_chown(struct spool *sp, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	int fd = dup(sp->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int rc = 0;

	if (d == NULL || fchown(sp->dirfd, uid, gid) < 0) {
		snprintf(err, errlen, "cannot hand spool %s to the relay user: %s", sp->dir,
		    strerror(errno));
		if (d != NULL)
			closedir(d);
		else if (fd >= 0)
			close(fd);
		return -1;
	}
	rewinddir(d);
	while (rc == 0 && (de = readdir(d)) != NULL) {
		/* by name, but never through a link; other files are not ours */
		if (spool_file(de->d_name) && fchownat(sp->dirfd, de->d_name, uid, gid,
		    AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "cannot hand %s/%s to the relay user: %s", sp->dir,
			    de->d_name, strerror(errno));
			rc = -1;
		}
	}
	closedir(d);
	return rc;
}

/* "name" of a user, or "uid N" when it has none. */
static void
user_name(uid_t uid, char *out, size_t n)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(out, n, "%s", pw->pw_name);
	else
		snprintf(out, n, "uid %lu", (unsigned long)uid);
}

/*
 * relayd, root at this point when it drops privileges later, works inside
 * the spool: only root and the relay user may be able to change what is
 * in it (plant a link or swap a segment for relayd to write through).
 */
static int
spool_check_dir(struct spool *sp, uid_t owner, char *err, size_t errlen)
{
	struct stat st;
	char who[64], relay[64];

	if (fstat(sp->dirfd, &st) < 0) {
		snprintf(err, errlen, "cannot stat spool %s: %s", sp->dir, strerror(errno));
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != owner && st.st_uid != geteuid()) {
		user_name(st.st_uid, who, sizeof(who));
		user_name(owner, relay, sizeof(relay));
		snprintf(err, errlen, "spool %s belongs to %s, not to root%s%s, so that user could "
		    "change queued mail: chown %s %s", sp->dir, who, owner ? " or to the relay "
		    "user " : "", owner ? relay : "", relay, sp->dir);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "spool %s may be written by its group or others (mode %04o), "
		    "who could change queued mail: chmod 0700 %s", sp->dir,
		    (unsigned)(st.st_mode & 07777), sp->dir);
		return -1;
	}
	return 0;
}

/* Opens (creating it) and locks spool/lock, never through a link. */
static int
spool_lock(struct spool *sp, char *err, size_t errlen)
{
	struct stat st;

	sp->lockfd = openat(sp->dirfd, "lock", O_CREAT | O_RDWR | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC, 0600);
	if (sp->lockfd < 0 && errno == ELOOP) {
		snprintf(err, errlen, "%s/lock is a symbolic link: relayd never follows links in "
		    "its spool; remove it", sp->dir);
		return -1;
	}
	if (sp->lockfd < 0) {
		snprintf(err, errlen, "cannot create %s/lock: %s", sp->dir, strerror(errno));
		return -1;
	}
	if (fstat(sp->lockfd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s/lock is not a regular file: remove it", sp->dir);
		return -1;
	}
	if (flock(sp->lockfd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, errno == EWOULDBLOCK ?
		    "spool %s is in use by another relayd" : "cannot lock spool %s: %s",
		    sp->dir, strerror(errno));
		return -1;
	}
	return 0;
}

struct spool *
spool_open(const char *dir, uid_t owner, struct event_base *base, spool_load_fn load,
    void *load_arg, char *err, size_t errlen)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));
	pthread_condattr_t ca;
	int pfd[2];

	sp->dir = xstrdup(dir);
	sp->base = base;
	sp->dirfd = sp->lockfd = sp->segfd = sp->notify_rd = sp->notify_wr = -1;
	pthread_mutex_init(&sp->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->cv, &ca);
	pthread_condattr_destroy(&ca);
	sp->pend_tail = &sp->pend;
	sp->done_tail = &sp->done;
	sp->seg_max = SEG_MAX_SIZE;
	sp->lazy_max_ms = LAZY_MAX_MS;
	test_kill_init(sp);

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create spool %s: %s", dir, strerror(errno));
		goto fail;
	}
	/* From here on everything is opened relative to this descriptor,
	 * never by path again, and never through a symbolic link. */
	sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0) {
		snprintf(err, errlen, "cannot open spool %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (spool_check_dir(sp, owner, err, errlen) < 0 || spool_lock(sp, err, errlen) < 0)
		goto fail;
	/* what spool_dir_gone() compares the configured path with */
	struct stat st;
	if (fstat(sp->dirfd, &st) < 0) {
		snprintf(err, errlen, "cannot stat spool %s: %s", dir, strerror(errno));
		goto fail;
	}
	sp->dir_dev = st.st_dev;
	sp->dir_ino = st.st_ino;
	if (spool_recover(sp, load, load_arg, err, errlen) < 0)
		goto fail;
	/* Always start a fresh segment: never append after a possibly torn
	 * tail.  A full disk is no reason to refuse the mail already queued:
	 * the committer makes the segment once there is room, and until then
	 * new mail gets 452 4.3.1. */
	sp->pub_seq = sp->segseq;
	if (seg_create(sp, sp->segseq + 1) < 0) {
		if (errno != ENOSPC && errno != EDQUOT) {
			snprintf(err, errlen, "cannot create a segment in %s: %s", dir,
			    strerror(errno));
			goto fail;
		}
		spool_note_full(sp, true, errno);
	}
	if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	sp->notify_rd = pfd[0];
	sp->notify_wr = pfd[1];
	sp->notify_ev = event_new(base, sp->notify_rd, EV_READ | EV_PERSIST, spool_notify_cb, sp);
	event_add(sp->notify_ev, NULL);
	if (pthread_create(&sp->thread, NULL, committer_main, sp) != 0) {
		snprintf(err, errlen, "cannot start the committer thread");
		goto fail;
	}
	sp->thread_started = true;
	return sp;
fail:
	spool_close(sp);
	return NULL;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->thread_started) {
		pthread_mutex_lock(&sp->mu);
		sp->stop = true;
		pthread_cond_signal(&sp->cv);
		pthread_mutex_unlock(&sp->mu);
		pthread_join(sp->thread, NULL);
	}
	/* Commits finished but not yet handed back are dropped: their owners
	 * are gone by now (see spool.h). */
	for (struct spool_req *r = sp->done, *nx; r; r = nx) {
		nx = r->next;
		req_free(r);
	}
	if (sp->notify_ev)
		event_free(sp->notify_ev);
	if (sp->notify_rd >= 0)
		close(sp->notify_rd);
	if (sp->notify_wr >= 0)
		close(sp->notify_wr);
	seg_finish(sp);
	for (size_t i = 0; i < sp->nrfds; i++)
		close(sp->rfds[i].fd);
	free(sp->rfds);
	free(sp->segs);
	free(sp->files);
	if (sp->lockfd >= 0)
		close(sp->lockfd);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->cv);
	free(sp->dir);
	free(sp);
}
