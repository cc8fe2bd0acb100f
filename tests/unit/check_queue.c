/*
 * check_queue — the delivery schedule against a real spool and event loop:
 * a message flushed (twice) while its relocation to a newer segment is
 * under way must neither leave the retry heap corrupt nor push another
 * message out of the schedule (issue 11: msg_make_ready took a relocating
 * message out of the heap but left it "waiting", so a second flush took
 * it out again, removing whichever message had taken its place).
 *
 * The upstream is a loopback port nothing listens on: every attempt ends
 * "connection refused", deferred, which is all this needs to see that a
 * message was attempted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config.h"
#include "qid.h"
#include "queue.h"
#include "spool.h"
#include "suites.h"
#include "util.h"

static char dir[PATH_MAX];

static void
setup(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/check_queue.XXXXXX",
	    base != NULL && *base != '\0' ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
teardown(void)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A loopback TCP port nothing listens on. */
static int
closed_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static struct config *
test_config(void)
{
	char path[PATH_MAX + 32], text[2 * PATH_MAX + 512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/relayd.conf", dir);
	snprintf(text, sizeof(text),
	    "hostname = \"relay.test.example\"\n"
	    "spool = \"%s/spool\"\n"
	    "control = \"%s/control.sock\"\n"
	    "retry { attempts = 5  delay = 600  backoff = 1.0  max_delay = 600 }\n"
	    "upstream \"up\" { host = \"127.0.0.1\"  port = %d  tls = \"none\" }\n"
	    "domain \"example.com\" { upstream = \"up\" }\n", dir, dir, closed_port());
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	struct config *cfg = config_load(path, stderr);

	ck_assert_ptr_nonnull(cfg);
	return cfg;
}

struct committed {
	int			error;
	bool			done;
	struct spool_loc	loc;
};

static void
committed_cb(void *arg, int error, const struct spool_loc *loc)
{
	struct committed *c = arg;

	c->error = error;
	c->done = true;
	if (error == 0)
		c->loc = *loc;
}

/* A message from sender@example.com, committed (its own batch, so with a
 * segment size of 1 its own segment) and queued, due at `due`. */
static struct spool_envelope *
add_message(struct event_base *base, struct spool *sp, struct queue *q, const char *tag,
    int64_t due)
{
	struct spool_envelope *env = spool_envelope_new();
	struct spool_body *b = spool_body_new(sp);
	struct committed c = { 0 };
	char text[128];

	qid_next(env->id);
	env->arrival = now_us();
	env->sender = xstrdup("sender@example.com");
	env->nrcpt = 1;
	env->rcpts = xcalloc(1, sizeof(*env->rcpts));
	env->rcpts[0].addr = xstrdup("rcpt@example.net");
	env->rcpts[0].next_attempt = due;
	snprintf(text, sizeof(text), "From: <sender@example.com>\r\nSubject: %s\r\n\r\nHi.\r\n",
	    tag);
	ck_assert_int_eq(spool_body_write(b, text, strlen(text)), 0);
	spool_commit_message(sp, env, "", 0, b, committed_cb, &c);
	while (!c.done)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert_int_eq(c.error, 0);
	env->loc = c.loc;
	queue_add(q, env);	/* the queue owns env now */
	return env;
}

struct seen {
	const char	*id[3];
	unsigned	 attempts[3];
	int64_t		 due[3];
};

static void
list_cb(void *arg, const struct spool_envelope *env, bool active, int64_t due)
{
	struct seen *s = arg;

	for (int i = 0; i < 3; i++)
		if (strcmp(env->id, s->id[i]) == 0) {
			s->attempts[i] = env->rcpts[0].attempts;
			s->due[i] = due;
		}
}

static void
loop_for(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

START_TEST(test_flush_during_relocation)
{
	struct event_base *base = event_base_new();
	struct evdns_base *dns = evdns_base_new(base, 0);
	struct config *cfg = test_config();
	struct queue *q = queue_new(base, dns, cfg);
	char spooldir[PATH_MAX + 16], err[256];

	snprintf(spooldir, sizeof(spooldir), "%s/spool", dir);
	struct spool *sp = spool_open(spooldir, geteuid(), base, NULL, NULL, err, sizeof(err));

	ck_assert_msg(sp != NULL, "spool: %s", err);
	qid_init(0);
	spool_set_segment_max(sp, 1);	/* every commit in a segment of its own */
	ck_assert_int_eq(queue_start(q, sp, err, sizeof(err)), 0);

	/* Three messages due together in 2 s, each in its own segment: A's,
	 * the oldest, is worth emptying (two newer ones hold live mail). */
	int64_t due = now_us() / 1000000 + 2;
	struct seen s;

	memset(&s, 0, sizeof(s));

	s.id[0] = add_message(base, sp, q, "A", due)->id;
	s.id[1] = add_message(base, sp, q, "B", due)->id;
	s.id[2] = add_message(base, sp, q, "C", due)->id;

	/* A starts moving to a newer segment; until the spool says its new
	 * copy is durable (a later turn of the loop), it is "relocating". */
	ck_assert_uint_eq(queue_compact(q), 1);
	/* Flushed, it is held until the move is done; flushed again, it is
	 * already on its way: nothing may take it out of the heap twice. */
	ck_assert_int_eq(queue_flush(q, s.id[0]), 1);
	ck_assert_int_eq(queue_flush(q, s.id[0]), 0);

	/* A goes once its copy is durable; B and C when they are due.  Each
	 * attempt is refused by the closed port: deferred, attempt 1. */
	loop_for(base, 3500);
	queue_list(q, list_cb, &s);
	for (int i = 0; i < 3; i++)
		ck_assert_msg(s.attempts[i] == 1, "message %c: %u attempts, expected 1 (due %lld)",
		    'A' + i, s.attempts[i], (long long)s.due[i]);

	queue_stop(q);
	spool_close(sp);
	queue_free(q);
	config_free(cfg);
	evdns_base_free(dns, 0);
	event_base_free(base);
}
END_TEST

Suite *
queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("relocation");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_flush_during_relocation);
	suite_add_tcase(s, tc);
	return s;
}
