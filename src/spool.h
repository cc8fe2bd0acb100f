/*
 * spool — the durable queue on disk.
 *
 * Design (chosen by measurement, see README "Spool design"): an append-only
 * log of checksummed records in segment files ("<seq>.seg", 16 hex digits),
 * written by one committer thread that batches every pending record into
 * one write + fdatasync (group commit).  A message is one MSG record
 * (envelope, header prefix, body); later records change recipient state or
 * retire the message.  No file is created or deleted per message.
 *
 * Promises:
 *  - The done callback reports success only after the record is durably on
 *    disk (data fdatasync'd; a segment's directory entry fsync'd before any
 *    record in it is acknowledged).
 *  - A record is either whole, with a valid CRC32C, or ignored at recovery:
 *    a crash at any instant never yields a half-written message that would
 *    later be sent.  Recovery truncates torn tails ("debris").
 *  - Message text is never read as a record, whatever a client puts in it
 *    and wherever a crash cuts a write: recovery reads records in sequence
 *    and resynchronises only on the segment's secret seal (spool.c).
 *  - On a write or sync failure (ENOSPC, EIO) the records of the batch are
 *    cut off again and each caller is told the errno; nothing is lost that
 *    was acknowledged before.
 *  - A full disk does not wedge the spool: message records leave a reserve
 *    for the records that retire delivered mail, and the space of retired
 *    mail comes back (the current segment's too, on a full disk) without a
 *    restart.  spool_open works on a full disk.
 *  - Only one relayd uses a spool at a time (flock on "lock").
 *
 * Threading: every function here is called on the event-loop thread; the
 * done callbacks run on it too.  The committer thread touches only the
 * segment files and the request lists.
 */
#ifndef RELAYD_SPOOL_H
#define RELAYD_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

#include "qid.h"
#include "util.h"

enum spool_rcpt_status {
	SPOOL_RCPT_PENDING = 0,
	SPOOL_RCPT_SENT,
	SPOOL_RCPT_BOUNCED,
};

#define SPOOL_F_8BIT	 0x1u	/* BODY=8BITMIME, or 8-bit octets seen */
#define SPOOL_F_SMTPUTF8 0x2u	/* SMTPUTF8 given on MAIL */
/*
 * The message was signed while its MSG record was being made durable, so
 * its DKIM-Signature fields are not at the head of its text: they are in a
 * SIG record of their own (sigloc), written lazily after the 250, or, until
 * that is durable, in memory (sigs).  With neither (a crash came between
 * the 250 and the SIG record) the message must be signed again before it
 * is sent: it is never relayed without them.
 */
#define SPOOL_F_SIGPEND	 0x4u

struct spool_rcpt {
	char		*addr;
	uint8_t		 status;	/* enum spool_rcpt_status */
	uint16_t	 attempts;	/* attempts made */
	int64_t		 next_attempt;	/* unix seconds; 0: as soon as possible */
	char		*last_error;	/* reason of the last failure, NULL if none */
	char		 dsn[16];	/* status code of the last attempt, "" if none */
};

/* Where a message's bytes are: MSG record payload offsets in a segment. */
struct spool_loc {
	uint64_t	seg;		/* segment sequence number */
	uint64_t	off;		/* offset of the message text (prefix + body) */
	uint64_t	len;		/* its length in octets */
};

struct spool_envelope {
	char			 id[QID_SIZE];
	int64_t			 arrival;	/* unix microseconds */
	char			*sender;	/* "" for the null sender */
	char			*route;		/* domain that picks the domain section
						 * when it is not the sender's: the
						 * From: domain of a <> message, the
						 * original sender's domain for a DSN;
						 * NULL otherwise */
	uint32_t		 flags;		/* SPOOL_F_* */
	size_t			 nrcpt;
	struct spool_rcpt	*rcpts;
	struct spool_loc	 loc;		/* set once committed / when loaded */
	/* with SPOOL_F_SIGPEND: the signature fields (each ending in CRLF),
	 * sent before the text */
	struct spool_loc	 sigloc;	/* on disk (SIG record); len 0: not */
	char			*sigs;		/* in memory (NULL: not); owned */
	size_t			 siglen;
};

/* Deep free of an envelope allocated by spool_envelope_new or the loader. */
struct spool_envelope *spool_envelope_new(void);
void spool_envelope_free(struct spool_envelope *env);

struct spool;

/*
 * Called at open for each message still queued, in arrival order; the
 * callee owns env.
 */
typedef void (*spool_load_fn)(void *arg, struct spool_envelope *env);

/*
 * Opens (creating it, mode 0700, if missing) the spool directory, takes its
 * lock, recovers every segment, calls load for each queued message, and
 * starts the committer thread.  Returns NULL with a reason in err (for
 * "spool unusable", exit status 2).  The directory must belong to root, to
 * owner (the relay user) or to the caller, and no group or other may write
 * to it; inside it nothing is opened through a symbolic link.
 */
struct spool *spool_open(const char *dir, uid_t owner, struct event_base *base,
    spool_load_fn load, void *load_arg, char *err, size_t errlen);

/*
 * Recovery alone: reads the segments of dir exactly as spool_open does
 * (torn tails cut off, damaged segments set aside, segments no live
 * message starts in deleted) and calls load for each message still
 * queued; no lock, no new segment, no committer thread.  For the fuzz
 * targets (tests/fuzz/fuzz_spool.c), which recover thousands of spools a
 * second.  Returns 0, or -1 with a reason in err.
 */
int spool_recover_dir(const char *dir, spool_load_fn load, void *load_arg, char *err,
    size_t errlen);

/*
 * Hands the spool (the directory, by its descriptor, and relayd's files in
 * it, never through a link) to uid:gid, for a relayd started as root that
 * is about to become the relay user.  Returns -1 with a reason in err.
 */
int spool_chown(struct spool *sp, uid_t uid, gid_t gid, char *err, size_t errlen);
/* Stops the committer after it finished what was submitted; closes files. */
void spool_close(struct spool *sp);

/* Largest queue id value found at open (0 if none), for qid_init(). */
uint64_t spool_max_qid(const struct spool *sp);

/*
 * A message body being received.  Kept in memory up to a small threshold,
 * then spilled to an unlinked temporary file inside the spool (O_TMPFILE),
 * so that memory stays bounded whatever the message size and "spool full"
 * shows up while receiving.
 */
struct spool_body;
struct spool_body *spool_body_new(struct spool *sp);
/* Appends; returns 0, or -1 with errno (ENOSPC, EIO) once, after which
 * later writes are ignored and spool_body_error() reports the errno. */
int spool_body_write(struct spool_body *b, const void *p, size_t n);
int spool_body_error(const struct spool_body *b);
uint64_t spool_body_size(const struct spool_body *b);
void spool_body_free(struct spool_body *b);

/*
 * Called on the event loop when a commit finished: error is 0 (durable) or
 * an errno.  loc says where the message text landed (valid if error == 0).
 */
typedef void (*spool_done_fn)(void *arg, int error, const struct spool_loc *loc);

/*
 * Queues a new message for the next group commit: env (serialised now; the
 * caller keeps ownership), then prefix (header lines the relay adds, e.g.
 * Received: and DKIM-Signature:, each ending in CRLF) followed by body
 * (ownership passes to the spool).  done is called exactly once, later,
 * from the event loop, unless spool_close() comes first (then never: the
 * owner must be gone by then).
 */
void spool_commit_message(struct spool *sp, const struct spool_envelope *env,
    const char *prefix, size_t prefixlen, struct spool_body *body,
    spool_done_fn done, void *arg);

/*
 * Records the signature fields of a SPOOL_F_SIGPEND message (sigs, len
 * octets, each field ending in CRLF) in a SIG record.  Lazy, like a
 * recipient's state: written with the next commit someone waits for, or
 * within 0.1 s; a crash before then only means the message is signed
 * again.  done (required) runs on the loop once the record is durable,
 * with loc saying where the fields are (or with an error).
 */
void spool_commit_sigs(struct spool *sp, const struct spool_envelope *env, const char *sigs,
    size_t len, spool_done_fn done, void *arg);

/*
 * The signature fields of a SPOOL_F_SIGPEND message into out (appended):
 * from memory, else from its SIG record.  Returns 1 if there were some,
 * 0 if there are none yet (the message must be signed again), -1 with
 * errno if the spool cannot be read.
 */
int spool_read_sigs(struct spool *sp, const struct spool_envelope *env, struct buf *out);

/* The length the text will have when sent: the signature fields (if kept
 * apart and known) and the text. */
uint64_t spool_envelope_size(const struct spool_envelope *env);

/*
 * Records recipient idx's state as it now is in env (after an attempt).
 * done may be NULL: the record is then lazy, written with the next commit
 * that someone waits for and durable within 0.1 s at the latest (so that a
 * delivery does not cost a sync of its own; a crash meanwhile only means
 * the attempt is made again).  Recovery applies the last state record of
 * each recipient.
 */
void spool_commit_rcpt(struct spool *sp, const struct spool_envelope *env, size_t idx,
    spool_done_fn done, void *arg);

/*
 * Retires a message (every recipient sent or bounced, its DSN if any
 * already committed).  Once durable, the segments that no longer hold a
 * live message are deleted, oldest first.  done may be NULL (lazy, as for
 * spool_commit_rcpt: a crash before it is durable sends the message again).
 */
void spool_commit_done(struct spool *sp, const struct spool_envelope *env,
    spool_done_fn done, void *arg);

/*
 * A read-only descriptor for the segment holding loc; owned by the spool,
 * valid while the message is live.  Returns -1 with errno on failure.
 */
int spool_text_fd(struct spool *sp, const struct spool_loc *loc);

/*
 * Relocation: the oldest segment holding live messages, if it is worth
 * emptying (see spool.c), else 0.  spool_relocate() writes a message again,
 * with its recipients' state as they are in env, into the current segment,
 * with signature fields kept apart (SPOOL_F_SIGPEND) joined to the head of
 * its text; done reports its new place, and the caller then hands it to
 * spool_envelope_moved() (until then the old place stays valid).  No other record of the message may be committed
 * while its relocation is under way, or recovery could see them in the
 * wrong order.
 */
uint64_t spool_compact_candidate(const struct spool *sp);
void spool_relocate(struct spool *sp, const struct spool_envelope *env, spool_done_fn done,
    void *arg);
void spool_envelope_moved(struct spool_envelope *env, const struct spool_loc *loc);

/* Segment size before rotation (default 64 MiB); for tests and tuning. */
void spool_set_segment_max(struct spool *sp, uint64_t bytes);
/* The bound on a lazy record's wait for a commit (default 100 ms); for tests. */
void spool_set_lazy_max(struct spool *sp, long ms);

/* Statistics for logs and benchmarks. */
struct spool_stats {
	uint64_t	commits;	/* fdatasync calls that made records durable */
	uint64_t	records;	/* records made durable */
	uint64_t	segments;	/* segment files now on disk */
	uint64_t	prepared;	/* bytes written ahead of the tail while idle */
};
void spool_get_stats(const struct spool *sp, struct spool_stats *st);

#endif
