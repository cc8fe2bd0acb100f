/*
 * queue — scheduling and per-recipient bookkeeping of delivery (see
 * queue.h for what it promises).
 *
 * Data: every live message is a struct qmsg (its envelope, owned) in an id
 * map.  A message that is not being delivered sits in a min-heap by due
 * time; when due it joins its upstream's FIFO line; a line is served while
 * a session and a rate slot are free.  One timer serves the heap, one per
 * upstream serves the rate.
 */
#include "acconfig.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "bounce.h"
#include "delivery.h"
#include "idmap.h"
#include "log.h"
#include "oauth.h"
#include "qid.h"
#include "queue.h"
#include "resign.h"
#include "router.h"
#include "smtp_client.h"
#include "util.h"

#define SESSION_IDLE_SEC	5	/* keep an idle upstream session this long */
#define OUTCOMES_KEPT		512	/* recent attempt outcomes, for relayctl test */
#define COMPACT_EVERY_SEC	30	/* how often to look for a segment to empty */
#define DSN_HEADERS_MAX		(64u << 10)

/*
 * Where a message is; each state says which structure holds it, so that
 * no operation takes it out of one it is not in:
 *   WAITING  in the heap (not due yet)
 *   HELD     due, but its relocation is under way: in no heap and no
 *            line until the new copy is durable (relocated() moves it on)
 *   READY    in its upstream's line
 *   ACTIVE   being delivered
 *   DSN      its DSN is on its way to the spool
 */
enum qm_state { QM_WAITING, QM_HELD, QM_READY, QM_ACTIVE, QM_DSN };

struct upstate;

struct qmsg {
	struct queue		*q;
	struct spool_envelope	*env;
	enum qm_state		 st;
	int64_t			 due;		/* unix seconds */
	size_t			 heap_i;	/* valid while QM_WAITING */
	struct qmsg		*line_next;	/* in an upstream's line */
	/* the attempt in progress */
	struct upstate		*ups;
	const char		**rcpts;	/* addresses attempted */
	size_t			*ridx;		/* their indexes in env->rcpts */
	size_t			 nr;
	struct smtp_client_msg	 cm;
	struct buf		 head;		/* cm.head: its signature fields */
	char			*token;		/* cm.token: an xoauth2 access token (secret) */
	bool			 dropped;	/* retired while a DSN commit was pending */
	bool			 relocating;	/* spool_relocate() under way */
};

struct upclient {
	struct smtp_client	*c;
	struct oauth_wait	*tokwait;	/* waiting for a token for busy */
	bool			 started;	/* smtp_client_deliver() was called */
	struct upstate		*ups;
	struct qmsg		*busy;		/* message in progress, or NULL */
	struct upclient		*next;
};

struct qgen;

struct upstate {
	struct queue			*q;
	struct qgen			*gen;
	const struct cfg_upstream	*cfg;
	SSL_CTX				*ssl;
	struct upclient			*clients;
	int				 nclients;
	struct qmsg			*line, **line_tail;
	int64_t				 next_send_us;	/* rate: earliest next start */
	struct event			*rate_ev;
};

/*
 * The upstreams of one configuration snapshot.  A reload makes a new
 * generation; the old one lives on until its last session has ended, so
 * deliveries in progress finish with the settings they started with.
 */
struct qgen {
	struct config		*cfg;		/* a reference */
	struct upstate		*ups;		/* parallel to cfg->upstreams */
	size_t			 nups;
	size_t			 nclients;	/* sessions of all its upstreams */
	struct qgen		*next;		/* retired generations */
};

struct queue_watch {
	struct queue_watch	*next;
	char			 id[QID_SIZE];
	void			(*fn)(void *, const struct queue_outcome *);
	void			*arg;
};

struct queue {
	struct event_base	*base;
	struct queue_watch	*watches;
	struct queue_outcome	 outcomes[OUTCOMES_KEPT];	/* a ring */
	size_t			 outcome_next;
	struct config		*cfg;		/* the current generation's */
	struct spool		*spool;
	struct pendlink		*sigstores;	/* SIG records on their way */
	struct pendlink		*dsn_commits;	/* DSNs on their way to the spool */
	struct idmap		*msgs;		/* qid value -> struct qmsg */
	struct qmsg		**heap;
	size_t			 nheap, heapcap;
	struct event		*timer;
	struct event		*compact_ev;
	struct qgen		*gen;		/* current */
	struct qgen		*old;		/* retired, still with sessions */
	struct smtp_client_env	 cenv;
	struct oauth		*oauth;		/* tokens of xoauth2 upstreams */
	bool			 started, stopping;
	size_t			 active;
};

static void queue_dispatch(struct upstate *u);
static void compact_cb(evutil_socket_t fd, short what, void *arg);
static void msg_schedule(struct qmsg *m);

/* ---- heap -------------------------------------------------------------- */

static void
heap_swap(struct queue *q, size_t a, size_t b)
{
	struct qmsg *t = q->heap[a];

	q->heap[a] = q->heap[b];
	q->heap[b] = t;
	q->heap[a]->heap_i = a;
	q->heap[b]->heap_i = b;
}

static void
heap_up(struct queue *q, size_t i)
{
	while (i > 0 && q->heap[(i - 1) / 2]->due > q->heap[i]->due) {
		heap_swap(q, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
heap_down(struct queue *q, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < q->nheap && q->heap[l]->due < q->heap[m]->due)
			m = l;
		if (r < q->nheap && q->heap[r]->due < q->heap[m]->due)
			m = r;
		if (m == i)
			return;
		heap_swap(q, i, m);
		i = m;
	}
}

static void
heap_push(struct queue *q, struct qmsg *m)
{
	if (q->nheap == q->heapcap) {
		q->heapcap = q->heapcap ? q->heapcap * 2 : 64;
		q->heap = xrealloc(q->heap, q->heapcap * sizeof(*q->heap));
	}
	m->heap_i = q->nheap;
	q->heap[q->nheap++] = m;
	heap_up(q, m->heap_i);
}

static void
heap_remove(struct queue *q, struct qmsg *m)
{
	size_t i = m->heap_i;

	q->nheap--;
	if (i != q->nheap) {
		q->heap[i] = q->heap[q->nheap];
		q->heap[i]->heap_i = i;
		heap_down(q, i);
		heap_up(q, i);
	}
}

/* ---- timers ------------------------------------------------------------ */

static void
timer_arm(struct queue *q)
{
	if (!q->started || q->stopping || q->nheap == 0)
		return;
	int64_t now = now_us();
	int64_t due = q->heap[0]->due;
	int64_t due_us = due > INT64_MAX / 1000000 ? INT64_MAX : due * 1000000;
	int64_t wait = due_us > now ? due_us - now : 0;
	struct timeval tv = { (time_t)(wait / 1000000), (suseconds_t)(wait % 1000000) };

	evtimer_add(q->timer, &tv);
}

static struct upstate *
msg_upstream(struct queue *q, const struct qmsg *m, const char **why_domain)
{
	const struct spool_envelope *env = m->env;
	const char *dom = env->route ? env->route :
	    env->sender[0] ? addr_domain(env->sender) : "";
	const struct cfg_domain *d = router_lookup(q->cfg, dom);

	*why_domain = dom;
	if (d == NULL)
		return NULL;
	for (size_t i = 0; i < q->gen->nups; i++)
		if (q->gen->ups[i].cfg == d->upstream)
			return &q->gen->ups[i];
	return NULL;
}

static void deliver_result(void *arg, struct smtp_client *c, const struct dlv_status *res,
    size_t n);
static void attempt_finish(struct qmsg *m, const struct dlv_status *res, const char *relay);

/* Due: move to the upstream's line (or settle it if it cannot be routed). */
static void
msg_make_ready(struct qmsg *m)
{
	struct queue *q = m->q;
	const char *dom;

	if (m->relocating) {
		/* nothing may be recorded for it before its new copy is
		 * durable: held, out of the heap, until relocated() */
		m->st = QM_HELD;
		return;
	}
	struct upstate *u = msg_upstream(q, m, &dom);

	if (u == NULL) {
		/* The configuration changed since the message came in. */
		struct dlv_status st;
		char relay[64];

		snprintf(relay, sizeof(relay), "none");
		char why[DLV_REASON_MAX];

		snprintf(why, sizeof(why),
		    "sender domain %s matches no domain section of the configuration",
		    dom[0] ? dom : "<>");
		dlv_trouble(DLV_T_UNROUTABLE, why, &st);
		log_err("%s: cannot route: %s", m->env->id, st.reason);
		m->ups = NULL;
		attempt_finish(m, &st, relay);
		return;
	}
	m->st = QM_READY;
	m->ups = u;
	m->line_next = NULL;
	*u->line_tail = m;
	u->line_tail = &m->line_next;
	queue_dispatch(u);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	int64_t now = now_us() / 1000000;

	while (q->nheap > 0 && q->heap[0]->due <= now && !q->stopping) {
		struct qmsg *m = q->heap[0];

		heap_remove(q, m);
		msg_make_ready(m);
	}
	timer_arm(q);
}

static void
rate_cb(evutil_socket_t fd, short what, void *arg)
{
	queue_dispatch(arg);
}

/* ---- sessions ---------------------------------------------------------- */

static void gen_free(struct qgen *g);

/* Forgets a session (the generation stays). */
static void
upclient_unlink(struct upclient *uc)
{
	struct upstate *u = uc->ups;
	struct upclient **pp;

	for (pp = &u->clients; *pp; pp = &(*pp)->next)
		if (*pp == uc) {
			*pp = uc->next;
			break;
		}
	u->nclients--;
	u->gen->nclients--;
	free(uc);
}

/* Forgets a session; a retired generation goes with its last one. */
static void
upclient_drop(struct upclient *uc)
{
	struct qgen *g = uc->ups->gen;
	struct queue *q = uc->ups->q;

	upclient_unlink(uc);
	if (g != q->gen && g->nclients == 0) {
		struct qgen **gp;

		for (gp = &q->old; *gp; gp = &(*gp)->next)
			if (*gp == g) {
				*gp = g->next;
				break;
			}
		gen_free(g);
	}
}

static void
client_closed(void *arg, struct smtp_client *c)
{
	struct upclient *uc = arg;
	struct upstate *u = uc->ups;
	bool current = u->gen == u->q->gen;

	upclient_drop(uc);
	if (current)
		queue_dispatch(u);
}

static struct qmsg *msg_find(const struct queue *q, const char *id);

/*
 * The contexts of spool callbacks still to come are listed in the queue, so
 * that none is left behind at exit: the spool drops callbacks then.  A
 * context starts with its link.
 */
struct pendlink {
	struct pendlink	*next, *prev;
};

static void
pend_add(struct pendlink **head, struct pendlink *l)
{
	l->prev = NULL;
	l->next = *head;
	if (l->next)
		l->next->prev = l;
	*head = l;
}

static void
pend_del(struct pendlink **head, struct pendlink *l)
{
	if (l->prev)
		l->prev->next = l->next;
	else
		*head = l->next;
	if (l->next)
		l->next->prev = l->prev;
}

/* Where a SIG record's durability is reported. */
struct sigstore {
	struct pendlink	 link;
	struct queue	*q;
	char		 id[QID_SIZE];
};

static void
sigs_stored(void *arg, int error, const struct spool_loc *loc)
{
	struct sigstore *ss = arg;
	struct queue *q = ss->q;
	struct qmsg *m = msg_find(q, ss->id);

	pend_del(&q->sigstores, &ss->link);
	/* on disk now: memory need not hold them any longer (on a failed
	 * write they stay in memory, and a crash means signing again) */
	if (error == 0 && m != NULL && (m->env->flags & SPOOL_F_SIGPEND) && m->env->sigs) {
		m->env->sigloc = *loc;
		free(m->env->sigs);
		m->env->sigs = NULL;
		m->env->siglen = 0;
	}
	free(ss);
}

/* Writes env->sigs, kept apart from the text (SPOOL_F_SIGPEND), to the spool. */
static void
sigs_store(struct queue *q, const struct spool_envelope *env)
{
	struct sigstore *ss = xcalloc(1, sizeof(*ss));

	ss->q = q;
	memcpy(ss->id, env->id, QID_SIZE);
	pend_add(&q->sigstores, &ss->link);
	spool_commit_sigs(q->spool, env, env->sigs, env->siglen, sigs_stored, ss);
}

/*
 * The signature fields of a message signed while it was committed
 * (SPOOL_F_SIGPEND) into m->head: from memory or their SIG record, or,
 * when a crash came before that record was durable, made again now from
 * the text (rare: synchronously, on the loop).
 */
static int
msg_signatures(struct queue *q, struct qmsg *m, int fd, char *why, size_t whylen)
{
	struct spool_envelope *env = m->env;
	int got = spool_read_sigs(q->spool, env, &m->head);

	if (got > 0)
		return 0;
	if (got < 0) {
		snprintf(why, whylen, "cannot read its DKIM signatures from the spool: %s",
		    strerror(errno));
		return -1;
	}
	char err[384];

	got = resign_text(q->cfg, fd, env->loc.off, env->loc.len, env->id, &m->head, err,
	    sizeof(err));
	if (got < 0) {
		snprintf(why, whylen, "DKIM signing failed: %s", err);
		return -1;
	}
	if (got == 0) {
		/* its From: domain has no keys any more */
		log_warn("%s: signatures lost at the last stop, and its From: domain has no DKIM "
		    "keys in the configuration now: sent unsigned", env->id);
		env->flags &= ~SPOOL_F_SIGPEND;
		return 0;
	}
	log_info("%s: signed again: its signatures had not reached the disk at the last stop",
	    env->id);
	env->sigs = xstrndup(m->head.p, m->head.len);
	env->siglen = m->head.len;
	sigs_store(q, env);
	return 0;
}

/*
 * The token for the session that is to deliver uc->busy: deliver, or, when
 * it could not be had, defer every recipient with the endpoint's words
 * (a configuration problem: 4.7.0, never bounced).
 */
static void
token_ready(void *arg, const char *token, const char *error)
{
	struct upclient *uc = arg;
	struct qmsg *m = uc->busy;

	uc->tokwait = NULL;
	if (token != NULL) {
		m->token = xstrdup(token);
		m->cm.token = m->token;
		uc->started = true;
		smtp_client_deliver(uc->c, &m->cm, deliver_result, uc);
		return;
	}
	struct dlv_status *res = xcalloc(m->nr, sizeof(*res));

	for (size_t i = 0; i < m->nr; i++)
		dlv_trouble(DLV_T_TOKEN, error, &res[i]);
	deliver_result(uc, uc->c, res, m->nr);
	free(res);
}

/* m goes back to the heap as it was before msg_start: no attempt made. */
static void
msg_put_back(struct qmsg *m)
{
	buf_free(&m->head);
	m->cm.head = NULL;
	m->cm.headlen = 0;
	free(m->rcpts);
	free(m->ridx);
	m->rcpts = NULL;
	m->ridx = NULL;
	m->nr = 0;
	msg_schedule(m);
}

/*
 * Stopping: a session still waiting for its token has not reached the
 * upstream, so it has nothing to finish.  Its message goes back to the
 * queue as it was (no attempt made, nothing logged) and the session ends;
 * otherwise a slow or dead token endpoint would hold the stop for as long
 * as the fetch may take.  Sessions are only unlinked: the caller frees a
 * retired generation that this empties.
 */
static void
token_waits_abandon(struct upstate *u)
{
	struct upclient *uc, *next;

	for (uc = u->clients; uc != NULL; uc = next) {
		struct qmsg *m = uc->busy;
		struct smtp_client *c = uc->c;

		next = uc->next;
		if (uc->tokwait == NULL)
			continue;
		oauth_cancel(uc->tokwait);
		uc->tokwait = NULL;
		uc->busy = NULL;
		u->q->active--;
		msg_put_back(m);
		upclient_unlink(uc);
		smtp_client_abort(c);
	}
}

/* Starts delivering m over uc. */
static void
msg_start(struct upclient *uc, struct qmsg *m)
{
	struct queue *q = m->q;
	struct spool_envelope *env = m->env;
	size_t n = 0;
	int64_t now = now_us() / 1000000;

	m->rcpts = xcalloc(env->nrcpt, sizeof(*m->rcpts));
	m->ridx = xcalloc(env->nrcpt, sizeof(*m->ridx));
	for (size_t i = 0; i < env->nrcpt; i++) {
		if (env->rcpts[i].status != SPOOL_RCPT_PENDING || env->rcpts[i].next_attempt > now)
			continue;
		m->rcpts[n] = env->rcpts[i].addr;
		m->ridx[n++] = i;
	}
	m->nr = n;
	if (n == 0) {
		/* nothing due after all (state changed while it waited) */
		msg_put_back(m);
		queue_dispatch(uc->ups);
		return;
	}
	m->st = QM_ACTIVE;
	uc->busy = m;
	q->active++;

	memset(&m->cm, 0, sizeof(m->cm));
	m->cm.id = env->id;
	m->cm.sender = env->sender;
	m->cm.rcpts = m->rcpts;
	m->cm.nrcpt = n;
	m->cm.fd = spool_text_fd(q->spool, &env->loc);
	m->cm.off = env->loc.off;
	m->cm.len = env->loc.len;
	m->cm.eightbit = (env->flags & SPOOL_F_8BIT) != 0;
	m->cm.smtputf8 = (env->flags & SPOOL_F_SMTPUTF8) != 0;
	buf_free(&m->head);
	if (m->cm.fd >= 0 && (env->flags & SPOOL_F_SIGPEND)) {
		char why[512];

		if (msg_signatures(q, m, m->cm.fd, why, sizeof(why)) < 0) {
			struct dlv_status *res = xcalloc(n, sizeof(*res));

			for (size_t i = 0; i < n; i++)
				dlv_trouble(DLV_T_UNSIGNED, why, &res[i]);
			log_err("%s: not sent: %s (mail from a domain with keys is never relayed "
			    "unsigned)", env->id, why);
			deliver_result(uc, uc->c, res, n);
			free(res);
			return;
		}
		m->cm.head = m->head.p;
		m->cm.headlen = m->head.len;
	}
	if (m->cm.fd < 0) {
		struct dlv_status *res = xcalloc(n, sizeof(*res));

		for (size_t i = 0; i < n; i++)
			dlv_trouble(DLV_T_SPOOL, "cannot open the message in the spool", &res[i]);
		log_err("%s: cannot open its spool segment: %s", env->id, strerror(errno));
		deliver_result(uc, uc->c, res, n);
		free(res);
		return;
	}
	if (uc->ups->cfg->auth == CFG_AUTH_XOAUTH2 && !smtp_client_idle(uc->c)) {
		/* A new session authenticates: with a token, maybe fetched now.
		 * oauth_get() may call token_ready() before it returns (a token
		 * held, a refusal just made), and that may free uc: only a
		 * handle for a later call says uc is still there. */
		struct oauth_wait *w = oauth_get(q->oauth, uc->ups->cfg->name, token_ready, uc);

		if (w != NULL)
			uc->tokwait = w;
		return;
	}
	uc->started = true;
	smtp_client_deliver(uc->c, &m->cm, deliver_result, uc);
}

/* Serves an upstream's line while sessions and rate slots are free. */
static void
queue_dispatch(struct upstate *u)
{
	struct queue *q = u->q;

	while (u->line && !q->stopping) {
		struct upclient *uc;

		if (u->cfg->rate > 0) {
			int64_t now = now_us();

			if (now < u->next_send_us) {
				int64_t w = u->next_send_us - now;
				struct timeval tv = { (time_t)(w / 1000000), (suseconds_t)(w % 1000000) };

				evtimer_add(u->rate_ev, &tv);
				return;
			}
		}
		for (uc = u->clients; uc; uc = uc->next)
			if (uc->busy == NULL && smtp_client_idle(uc->c))
				break;
		if (uc == NULL) {
			if (u->nclients >= u->cfg->max_connections)
				return;	/* a session will free up */
			uc = xcalloc(1, sizeof(*uc));
			uc->ups = u;
			uc->c = smtp_client_new(&q->cenv, u->cfg, u->ssl, client_closed, uc);
			uc->next = u->clients;
			u->clients = uc;
			u->nclients++;
			u->gen->nclients++;
		}
		struct qmsg *m = u->line;

		u->line = m->line_next;
		if (u->line == NULL)
			u->line_tail = &u->line;
		m->line_next = NULL;
		if (u->cfg->rate > 0) {
			int64_t now = now_us();
			int64_t gap = 60000000LL / u->cfg->rate;

			u->next_send_us = (u->next_send_us > now ? u->next_send_us : now) + gap;
		}
		msg_start(uc, m);
	}
}

/* ---- outcomes ---------------------------------------------------------- */

static void
msg_free(struct qmsg *m)
{
	free(m->rcpts);
	free(m->ridx);
	buf_free(&m->head);
	oauth_wipe(m->token);
	spool_envelope_free(m->env);
	free(m);
}

static void
msg_retire_how(struct qmsg *m, const char *how, spool_done_fn done, void *arg)
{
	struct queue *q = m->q;
	uint64_t v = 0;

	(void)qid_decode(m->env->id, &v);
	spool_commit_done(q->spool, m->env, done, arg);
	idmap_del(q->msgs, v);
	log_info("%s: removed%s", m->env->id, how);
	msg_free(m);
}

/* Every recipient is final: the message leaves the queue. */
static void
msg_retire(struct qmsg *m)
{
	msg_retire_how(m, "", NULL, NULL);
}

/* Writes each attempted recipient's state; retires or reschedules. */
static void
msg_commit_states(struct qmsg *m)
{
	struct queue *q = m->q;
	bool pending = false;

	for (size_t i = 0; i < m->env->nrcpt; i++)
		pending |= m->env->rcpts[i].status == SPOOL_RCPT_PENDING;
	/* A message that is done needs only its DONE record: recipient states
	 * matter for what is still to be tried.  (Crash safety is the same:
	 * until DONE is durable the message comes back as it was.) */
	if (pending)
		for (size_t k = 0; k < m->nr; k++)
			spool_commit_rcpt(q->spool, m->env, m->ridx[k], NULL, NULL);
	free(m->rcpts);
	free(m->ridx);
	m->rcpts = NULL;
	m->ridx = NULL;
	m->nr = 0;
	if (!pending) {
		msg_retire(m);
		return;
	}
	msg_schedule(m);
}

static void
dsn_committed(void *arg, int error, const struct spool_loc *loc)
{
	struct qmsg *m = arg;

	if (error != 0)
		log_err("%s: cannot queue the delivery status notification: %s; the "
		    "recipients' failure stays in the log only", m->env->id, strerror(error));
	msg_commit_states(m);
}

/* Reads the original's header block for the DSN. */
static void
read_headers(struct queue *q, const struct spool_envelope *env, struct buf *out)
{
	int fd = spool_text_fd(q->spool, &env->loc);
	size_t want = env->loc.len < DSN_HEADERS_MAX ? (size_t)env->loc.len : DSN_HEADERS_MAX;
	char *p;
	ssize_t n;

	if (fd < 0 || want == 0)
		return;
	/* signatures kept apart come first, as they were sent */
	(void)spool_read_sigs(q->spool, env, out);
	p = xmalloc(want + 1);
	n = pread(fd, p, want, (off_t)env->loc.off);
	if (n > 0) {
		p[n] = '\0';
		char *end = strstr(p, "\r\n\r\n");
		size_t len = end ? (size_t)(end - p) + 2 : (size_t)n;

		if (end == NULL) {
			/* cut at the last complete line */
			while (len > 0 && p[len - 1] != '\n')
				len--;
		}
		buf_add(out, p, len);
	}
	free(p);
}

static void dsn_envelope_committed(void *arg, int error, const struct spool_loc *loc);

/* A DSN on its way to the spool (a pendlink context). */
struct dsn_commit {
	struct pendlink		 link;
	struct qmsg		*m;
	struct spool_envelope	*env;
};

/*
 * The upstream's own reply inside a reason ("host[ip]:port said: 550 5.1.1
 * ... (in reply to RCPT TO command)"), for the DSN's Diagnostic-Code; the
 * whole reason when it holds none (relayd's own words).
 */
static const char *
reason_reply(const char *reason, char *out, size_t outlen)
{
	const char *p = strstr(reason, " said: ");
	const char *e;

	if (p == NULL)
		return reason;
	p += 7;
	e = strstr(p, " (in reply to ");
	snprintf(out, outlen, "%.*s", (int)(e ? (size_t)(e - p) : strlen(p)), p);
	return out;
}

/* Queues a DSN for the recipients that just failed for good. */
static bool
msg_send_dsn(struct qmsg *m, const struct dlv_status *res, const char *relay)
{
	struct queue *q = m->q;
	struct spool_envelope *env = m->env;
	struct bounce_rcpt *br = xcalloc(m->nr, sizeof(*br));
	char (*diag)[DLV_REASON_MAX] = xcalloc(m->nr ? m->nr : 1, sizeof(*diag));
	size_t nb = 0;
	int64_t now = now_us() / 1000000;

	for (size_t k = 0; k < m->nr; k++) {
		if (res[k].fate != DLV_BOUNCE)
			continue;
		struct spool_rcpt *r = &env->rcpts[m->ridx[k]];

		br[nb].addr = r->addr;
		br[nb].dsn = r->dsn;
		br[nb].diagnostic = r->last_error ?
		    reason_reply(r->last_error, diag[nb], sizeof(diag[nb])) : "";
		br[nb].remote_mta = m->ups ? m->ups->cfg->host : NULL;
		br[nb].last_attempt = now;
		br[nb].attempts = r->attempts;
		nb++;
	}
	if (nb == 0 || env->sender[0] == '\0' || !q->cfg->bounces) {
		free(br);
		free(diag);
		return false;
	}

	struct spool_envelope *dsn = spool_envelope_new();
	struct buf headers, text;

	buf_init(&headers);
	buf_init(&text);
	read_headers(q, env, &headers);
	qid_next(dsn->id);
	dsn->arrival = now_us();
	dsn->sender = xstrdup("");
	dsn->route = xstrdup(addr_domain(env->sender));
	dsn->nrcpt = 1;
	dsn->rcpts = xcalloc(1, sizeof(*dsn->rcpts));
	dsn->rcpts[0].addr = xstrdup(env->sender);

	struct bounce_msg bm = {
		.hostname = q->cfg->hostname,
		.qid = env->id,
		.arrival = env->arrival / 1000000,
		.sender = env->sender,
		.rcpts = br,
		.nrcpt = nb,
		.headers = headers.p,
		.headerslen = headers.len,
		.now = now,
		.new_qid = dsn->id,
	};
	bounce_compose(&bm, &text);
	for (size_t i = 0; i < text.len; i++)
		if ((unsigned char)text.p[i] >= 0x80) {
			dsn->flags |= SPOOL_F_8BIT;
			break;
		}
	/* A sender with a UTF-8 address (RFC 6531) is reached with SMTPUTF8
	 * only, never downgraded, like the recipient of any other message.
	 * An ASCII sender gets its DSN without, UTF-8 parts and all (8BITMIME):
	 * the upstream that refused an SMTPUTF8 message may still carry it. */
	if (addr_check_mailbox(env->sender, false) == ADDR_NEEDS_UTF8)
		dsn->flags |= SPOOL_F_SMTPUTF8 | SPOOL_F_8BIT;

	struct spool_body *b = spool_body_new(q->spool);
	(void)spool_body_write(b, text.p, text.len);
	struct dsn_commit *dc = xcalloc(1, sizeof(*dc));
	dc->m = m;
	dc->env = dsn;
	pend_add(&q->dsn_commits, &dc->link);
	log_info("%s: sender non-delivery notification: %s", env->id, dsn->id);
	m->st = QM_DSN;
	spool_commit_message(q->spool, dsn, "", 0, b, dsn_envelope_committed, dc);
	buf_free(&headers);
	buf_free(&text);
	free(br);
	free(diag);
	(void)relay;
	return true;
}

static void
dsn_envelope_committed(void *arg, int error, const struct spool_loc *loc)
{
	struct dsn_commit *dc = arg;
	struct queue *q = dc->m->q;

	pend_del(&q->dsn_commits, &dc->link);
	if (error == 0) {
		dc->env->loc = *loc;
		log_info("%s: from=<>, size=%llu, nrcpt=1, dkim=none", dc->env->id,
		    (unsigned long long)loc->len);
		queue_add(q, dc->env);
	} else {
		spool_envelope_free(dc->env);
	}
	dsn_committed(dc->m, error, loc);
	free(dc);
}

static void
outcome_clear(struct queue_outcome *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->r[i].addr);
		free(o->r[i].status);
		free(o->r[i].reason);
	}
	free(o->r);
	memset(o, 0, sizeof(*o));
}

/* Keeps the attempt's outcome and tells whoever waits for it. */
static void
outcome_record(struct queue *q, const struct qmsg *m, const struct dlv_status *res)
{
	struct queue_outcome *o = &q->outcomes[q->outcome_next];

	q->outcome_next = (q->outcome_next + 1) % OUTCOMES_KEPT;
	outcome_clear(o);
	memcpy(o->id, m->env->id, QID_SIZE);
	o->n = m->nr;
	o->r = xcalloc(m->nr ? m->nr : 1, sizeof(*o->r));
	for (size_t k = 0; k < m->nr; k++) {
		o->r[k].addr = xstrdup(m->env->rcpts[m->ridx[k]].addr);
		o->r[k].status = xstrdup(dlv_fate_name(res[k].fate));
		snprintf(o->r[k].dsn, sizeof(o->r[k].dsn), "%s", res[k].dsn);
		o->r[k].reason = xstrdup(res[k].reason);
	}
	for (struct queue_watch **wp = &q->watches; *wp;) {
		struct queue_watch *w = *wp;

		if (strcmp(w->id, o->id) != 0) {
			wp = &w->next;
			continue;
		}
		*wp = w->next;
		w->fn(w->arg, o);
		free(w);
	}
}

/*
 * The delivery line, the one every admin greps (interface.md, "Logs"),
 * formatted here and nowhere else, in Postfix's shape:
 *   ID: to=<rcpt>, relay=up[host]:port, attempt=k/n, delay=s, dsn=x.y.z,
 *       status=sent|deferred|bounced (reason)[, next=Ns]
 * A configuration problem (authentication, TLS the upstream refuses, a
 * domain no section matches) is logged as an error, so that it stands out.
 */
static void
log_delivery(const char *id, const struct spool_rcpt *r, const char *relay,
    const struct cfg_retry *retry, double delay, const struct dlv_status *st, int64_t next)
{
	char tail[32] = "";

	if (st->fate == DLV_DEFER)
		snprintf(tail, sizeof(tail), ", next=%llds", (long long)next);
	(st->config_problem && st->fate != DLV_SENT ? log_err : log_info)(
	    "%s: to=<%s>, relay=%s, attempt=%u/%d, delay=%.2f, dsn=%s, status=%s (%s)%s", id,
	    r->addr, relay, r->attempts, retry->attempts, delay, st->dsn, dlv_fate_name(st->fate),
	    st->reason, tail);
}

/* Applies one attempt's outcome to the recipients attempted. */
static void
attempt_finish(struct qmsg *m, const struct dlv_status *res_in, const char *relay)
{
	struct queue *q = m->q;
	struct spool_envelope *env = m->env;
	const struct cfg_retry *retry = m->ups ? &m->ups->cfg->retry : &q->cfg->retry;
	int64_t now_s = now_us() / 1000000;
	double delay = (double)(now_us() - env->arrival) / 1e6;
	bool single = m->ups == NULL;	/* unroutable: one status for all due */
	struct dlv_status *res = xcalloc(m->nr ? m->nr : 1, sizeof(*res));

	/* the attempt's copy of the signatures: not kept while it waits */
	buf_free(&m->head);
	m->cm.head = NULL;
	m->cm.headlen = 0;

	if (single) {
		/* pick the recipients that were due */
		m->rcpts = xcalloc(env->nrcpt, sizeof(*m->rcpts));
		m->ridx = xcalloc(env->nrcpt, sizeof(*m->ridx));
		m->nr = 0;
		for (size_t i = 0; i < env->nrcpt; i++)
			if (env->rcpts[i].status == SPOOL_RCPT_PENDING &&
			    env->rcpts[i].next_attempt <= now_s) {
				m->rcpts[m->nr] = env->rcpts[i].addr;
				m->ridx[m->nr++] = i;
			}
		free(res);
		res = xcalloc(m->nr ? m->nr : 1, sizeof(*res));
		for (size_t k = 0; k < m->nr; k++)
			res[k] = res_in[0];
	} else {
		memcpy(res, res_in, m->nr * sizeof(*res));
	}

	for (size_t k = 0; k < m->nr; k++) {
		struct spool_rcpt *r = &env->rcpts[m->ridx[k]];
		struct dlv_status *st = &res[k];

		if (r->attempts < UINT16_MAX)
			r->attempts++;
		(void)dlv_final(retry, r->attempts, st);
		free(r->last_error);
		r->last_error = st->fate == DLV_SENT ? NULL : xstrdup(st->reason);
		snprintf(r->dsn, sizeof(r->dsn), "%s", st->dsn);
		int64_t wait = 0;

		switch (st->fate) {
		case DLV_SENT:
			r->status = SPOOL_RCPT_SENT;
			r->next_attempt = 0;
			break;
		case DLV_DEFER:
			wait = dlv_retry_delay(retry, r->attempts);
			/* due times are whole seconds: round up, so the wait is
			 * never shorter than the schedule says */
			r->next_attempt = (now_us() + 999999) / 1000000 + wait;
			break;
		case DLV_BOUNCE:
			r->status = SPOOL_RCPT_BOUNCED;
			r->next_attempt = 0;
			break;
		}
		log_delivery(env->id, r, relay, retry, delay, st, wait);
	}
	outcome_record(q, m, res);
	if (!msg_send_dsn(m, res, relay))
		msg_commit_states(m);
	free(res);
}

static void
deliver_result(void *arg, struct smtp_client *c, const struct dlv_status *res, size_t n)
{
	struct upclient *uc = arg;
	struct qmsg *m = uc->busy;
	struct upstate *u = uc->ups;
	struct queue *q = u->q;

	uc->busy = NULL;
	q->active--;
	if (m->token != NULL) {
		/* a token the upstream refused is not offered again */
		for (size_t i = 0; i < n; i++)
			if (res[i].auth_refused) {
				oauth_reject(q->oauth, u->cfg->name, m->token);
				break;
			}
		oauth_wipe(m->token);
		m->token = NULL;
		m->cm.token = NULL;
	}
	attempt_finish(m, res, smtp_client_relay(c));
	if (!uc->started) {
		/*
		 * The attempt ended before its session began (no token, the
		 * message unreadable): that session never connected and never
		 * will, neither idle nor busy.  Its slot goes back, or
		 * max_connections such failures would leave the upstream with
		 * no session to serve its line, for good.  The line is served
		 * again from the event loop, not from here: this may run inside
		 * msg_start, and a line of messages that all fail at once must
		 * not recurse through it.
		 */
		bool current = u->gen == q->gen;

		upclient_drop(uc);
		smtp_client_abort(c);
		if (current && !q->stopping) {
			struct timeval now = { 0, 0 };

			evtimer_add(u->rate_ev, &now);	/* rate_cb: queue_dispatch */
		}
		return;
	}
	if ((q->stopping || u->gen != q->gen) && smtp_client_idle(c)) {
		/* stopping, or a session of a replaced configuration: no new
		 * work for it, end it now */
		upclient_drop(uc);
		smtp_client_quit(c);
		return;
	}
	if (u->gen == q->gen)
		queue_dispatch(u);
}

/* ---- adding and scheduling -------------------------------------------- */

static void
msg_schedule(struct qmsg *m)
{
	struct queue *q = m->q;
	int64_t due = INT64_MAX;

	for (size_t i = 0; i < m->env->nrcpt; i++) {
		const struct spool_rcpt *r = &m->env->rcpts[i];

		if (r->status == SPOOL_RCPT_PENDING && r->next_attempt < due)
			due = r->next_attempt;
	}
	m->due = due;
	m->st = QM_WAITING;
	heap_push(q, m);
	if (q->heap[0] == m)
		timer_arm(q);
}

void
queue_add(struct queue *q, struct spool_envelope *env)
{
	struct qmsg *m;
	uint64_t v;
	bool pending = false;

	if (!qid_decode(env->id, &v) || v == 0) {
		spool_envelope_free(env);
		return;
	}
	m = xcalloc(1, sizeof(*m));
	m->q = q;
	m->env = env;
	idmap_put(q->msgs, v, m);
	/* a new message signed while it was committed: its signatures' record */
	if ((env->flags & SPOOL_F_SIGPEND) && env->sigs != NULL && q->spool != NULL)
		sigs_store(q, env);
	for (size_t i = 0; i < env->nrcpt; i++)
		pending |= env->rcpts[i].status == SPOOL_RCPT_PENDING;
	if (!pending && q->spool != NULL) {
		/* every recipient final but not yet retired (crash in between) */
		msg_retire(m);
		return;
	}
	msg_schedule(m);
}

static void
retire_loaded(void *arg, uint64_t key, void *val)
{
	struct qmsg *m = val;
	bool pending = false;

	for (size_t i = 0; i < m->env->nrcpt; i++)
		pending |= m->env->rcpts[i].status == SPOOL_RCPT_PENDING;
	if (!pending)
		*(struct qmsg **)arg = m;
}

static struct qgen *
gen_new(struct queue *q, struct config *cfg, char *err, size_t errlen)
{
	struct qgen *g = xcalloc(1, sizeof(*g));

	g->cfg = config_ref(cfg);
	g->nups = cfg->nupstreams;
	g->ups = xcalloc(g->nups ? g->nups : 1, sizeof(*g->ups));
	for (size_t i = 0; i < g->nups; i++) {
		struct upstate *u = &g->ups[i];

		u->q = q;
		u->gen = g;
		u->cfg = &cfg->upstreams[i];
		u->line_tail = &u->line;
		u->rate_ev = evtimer_new(q->base, rate_cb, u);
	}
	for (size_t i = 0; i < g->nups; i++) {
		struct upstate *u = &g->ups[i];

		if (u->cfg->tls == CFG_TLS_NONE)
			continue;
		u->ssl = smtp_client_ssl_ctx(u->cfg, err, errlen);
		if (u->ssl == NULL) {
			gen_free(g);
			return NULL;
		}
	}
	/* the credentials of xoauth2 upstreams: a token already held stays
	 * if they did not change; those of upstreams gone are dropped */
	const char **names = xcalloc(g->nups + 1, sizeof(*names));
	size_t nnames = 0;

	for (size_t i = 0; i < g->nups; i++) {
		const struct cfg_upstream *c = g->ups[i].cfg;
		struct oauth_creds creds;

		if (c->auth != CFG_AUTH_XOAUTH2 || c->oauth2 == NULL)
			continue;
		oauth_creds_copy(&creds, &c->oauth2->creds);
		oauth_set(q->oauth, c->name, &creds, c->oauth2->ca_file,
		    c->oauth2->refresh_token_file);
		names[nnames++] = c->name;
	}
	oauth_retain(q->oauth, names, nnames);
	free(names);
	return g;
}

static void
gen_free(struct qgen *g)
{
	for (size_t i = 0; i < g->nups; i++) {
		struct upstate *u = &g->ups[i];

		while (u->clients) {
			struct upclient *uc = u->clients;

			u->clients = uc->next;
			oauth_cancel(uc->tokwait);
			smtp_client_abort(uc->c);
			free(uc);
		}
		event_free(u->rate_ev);
		if (u->ssl)
			SSL_CTX_free(u->ssl);
	}
	free(g->ups);
	config_free(g->cfg);
	free(g);
}

/* Ends a generation's idle sessions and puts its waiting mail back. */
static void
gen_retire(struct queue *q, struct qgen *g)
{
	for (size_t i = 0; i < g->nups; i++) {
		struct upstate *u = &g->ups[i];
		struct upclient *uc, *next;

		evtimer_del(u->rate_ev);
		while (u->line) {
			struct qmsg *m = u->line;

			u->line = m->line_next;
			m->line_next = NULL;
			msg_schedule(m);
		}
		u->line_tail = &u->line;
		for (uc = u->clients; uc; uc = next) {
			next = uc->next;
			if (uc->busy == NULL && smtp_client_idle(uc->c)) {
				struct smtp_client *c = uc->c;

				upclient_unlink(uc);	/* the caller frees g if it empties */
				smtp_client_quit(c);
			}
		}
	}
}

struct queue *
queue_new(struct event_base *base, struct evdns_base *dns, struct config *cfg)
{
	struct queue *q = xcalloc(1, sizeof(*q));

	q->base = base;
	q->cfg = cfg;
	q->msgs = idmap_new();
	q->timer = evtimer_new(base, timer_cb, q);
	q->compact_ev = evtimer_new(base, compact_cb, q);
	q->cenv.base = base;
	q->cenv.dns = dns;
	q->cenv.helo = cfg->hostname;
	q->cenv.idle_sec = SESSION_IDLE_SEC;
	q->oauth = oauth_new(base);
	/* upstreams and their TLS contexts come with queue_start() */
	q->gen = xcalloc(1, sizeof(*q->gen));
	q->gen->cfg = config_ref(cfg);
	return q;
}

int
queue_start(struct queue *q, struct spool *sp, char *err, size_t errlen)
{
	struct qgen *g = gen_new(q, q->cfg, err, errlen);

	if (g == NULL)
		return -1;
	gen_free(q->gen);
	q->gen = g;
	q->spool = sp;
	/* loaded messages whose recipients are all final: retire them now */
	for (;;) {
		struct qmsg *m = NULL;

		idmap_foreach(q->msgs, retire_loaded, &m);
		if (m == NULL)
			break;
		if (m->st == QM_WAITING)
			heap_remove(q, m);
		msg_retire(m);
	}
	q->started = true;
	timer_arm(q);
	struct timeval tv = { COMPACT_EVERY_SEC, 0 };
	evtimer_add(q->compact_ev, &tv);
	return 0;
}

int
queue_set_config(struct queue *q, struct config *cfg, char *err, size_t errlen)
{
	struct qgen *g = gen_new(q, cfg, err, errlen);
	struct qgen *old = q->gen;

	if (g == NULL)
		return -1;
	q->gen = g;
	q->cfg = cfg;
	q->cenv.helo = cfg->hostname;
	old->next = q->old;
	q->old = old;
	gen_retire(q, old);
	if (old->nclients == 0) {
		q->old = old->next;
		gen_free(old);
	}
	timer_arm(q);
	return 0;
}

void
queue_stop(struct queue *q)
{
	struct qgen *g = q->gen;

	q->stopping = true;
	evtimer_del(q->timer);
	evtimer_del(q->compact_ev);
	/* Idle sessions say QUIT now, busy ones after their message.  Retired
	 * generations have no idle sessions (gen_retire ended them), but may
	 * have sessions waiting for a token. */
	for (struct qgen **gp = &q->old; *gp != NULL;) {
		struct qgen *old = *gp;

		for (size_t i = 0; i < old->nups; i++)
			token_waits_abandon(&old->ups[i]);
		if (old->nclients == 0) {
			*gp = old->next;
			gen_free(old);
		} else {
			gp = &old->next;
		}
	}
	for (size_t i = 0; i < g->nups; i++) {
		struct upstate *u = &g->ups[i];
		struct upclient *uc, *next;

		token_waits_abandon(u);
		evtimer_del(u->rate_ev);
		for (uc = u->clients; uc; uc = next) {
			next = uc->next;
			if (uc->busy == NULL && smtp_client_idle(uc->c)) {
				struct smtp_client *c = uc->c;

				upclient_drop(uc);
				smtp_client_quit(c);
			}
		}
	}
}

/* ---- for the control socket ------------------------------------------ */

struct list_ctx {
	void	(*fn)(void *, const struct spool_envelope *, bool, int64_t);
	void	 *arg;
};

static void
list_one(void *arg, uint64_t key, void *val)
{
	struct list_ctx *lc = arg;
	const struct qmsg *m = val;

	lc->fn(lc->arg, m->env, m->st == QM_ACTIVE || m->st == QM_DSN,
	    m->st == QM_WAITING ? m->due : now_us() / 1000000);
}

void
queue_list(const struct queue *q,
    void (*fn)(void *, const struct spool_envelope *, bool, int64_t), void *arg)
{
	struct list_ctx lc = { fn, arg };

	idmap_foreach(q->msgs, list_one, &lc);
}

static struct qmsg *
msg_find(const struct queue *q, const char *id)
{
	uint64_t v;

	if (!qid_decode(id, &v) || v == 0)
		return NULL;
	return idmap_get(q->msgs, v);
}

struct collect_ctx {
	struct qmsg	**v;
	size_t		  n;
};

static void
collect_waiting(void *arg, uint64_t key, void *val)
{
	struct collect_ctx *cc = arg;
	struct qmsg *m = val;

	if (m->st == QM_WAITING)
		cc->v[cc->n++] = m;
}

/* Due now; state changes that follow (routing) may retire it. */
static void
msg_flush(struct qmsg *m)
{
	for (size_t i = 0; i < m->env->nrcpt; i++)
		if (m->env->rcpts[i].status == SPOOL_RCPT_PENDING)
			m->env->rcpts[i].next_attempt = 0;
	heap_remove(m->q, m);
	m->due = 0;
	msg_make_ready(m);
}

int
queue_flush(struct queue *q, const char *id)
{
	if (id != NULL) {
		struct qmsg *m = msg_find(q, id);

		if (m == NULL)
			return -1;
		if (m->st != QM_WAITING)
			return 0;	/* already on its way */
		log_info("%s: flushed by relayctl", m->env->id);
		msg_flush(m);
		timer_arm(q);
		return 1;
	}
	/* collect first: flushing may retire messages (a routing failure) */
	struct collect_ctx cc = { xcalloc(idmap_count(q->msgs) + 1, sizeof(*cc.v)), 0 };

	idmap_foreach(q->msgs, collect_waiting, &cc);
	if (cc.n > 0)
		log_info("queue flushed by relayctl: %zu messages", cc.n);
	for (size_t i = 0; i < cc.n; i++)
		msg_flush(cc.v[i]);
	free(cc.v);
	timer_arm(q);
	return (int)cc.n;
}

int
queue_remove(struct queue *q, const char *id, spool_done_fn done, void *arg)
{
	struct qmsg *m = msg_find(q, id);

	if (m == NULL)
		return -1;
	if (m->st == QM_ACTIVE || m->st == QM_DSN || m->relocating)
		return -2;
	if (m->st == QM_WAITING) {
		heap_remove(q, m);
	} else if (m->st == QM_READY && m->ups) {
		struct upstate *u = m->ups;
		struct qmsg **pp;

		for (pp = &u->line; *pp; pp = &(*pp)->line_next)
			if (*pp == m) {
				*pp = m->line_next;
				break;
			}
		u->line_tail = &u->line;
		while (*u->line_tail)
			u->line_tail = &(*u->line_tail)->line_next;
	}
	msg_retire_how(m, " by relayctl", done, arg);
	timer_arm(q);
	return 0;
}

/* ---- relocation: keep long-deferred mail from pinning old segments ---- */

static void
relocated(void *arg, int error, const struct spool_loc *loc)
{
	struct qmsg *m = arg;

	m->relocating = false;
	if (error == 0)
		spool_envelope_moved(m->env, loc);
	else
		log_warn("%s: cannot move it to a newer spool segment: %s", m->env->id,
		    strerror(error));
	if (m->st == QM_HELD)
		msg_make_ready(m);
}

struct compact_ctx {
	uint64_t	  seg;
	struct qmsg	**v;
	size_t		  n;
};

static void
compact_collect(void *arg, uint64_t key, void *val)
{
	struct compact_ctx *cc = arg;
	struct qmsg *m = val;

	if (m->env->loc.seg == cc->seg && m->st == QM_WAITING && !m->relocating)
		cc->v[cc->n++] = m;
}

size_t
queue_compact(struct queue *q)
{
	uint64_t seg = q->spool ? spool_compact_candidate(q->spool) : 0;
	struct compact_ctx cc = { seg, NULL, 0 };

	if (seg == 0 || q->stopping)
		return 0;
	cc.v = xcalloc(idmap_count(q->msgs) + 1, sizeof(*cc.v));
	/* the waiting ones; those in delivery are taken on a later round */
	idmap_foreach(q->msgs, compact_collect, &cc);
	if (cc.n > 0)
		log_info("spool: moving %zu long-queued messages out of segment %016llx", cc.n,
		    (unsigned long long)seg);
	for (size_t i = 0; i < cc.n; i++) {
		cc.v[i]->relocating = true;
		spool_relocate(q->spool, cc.v[i]->env, relocated, cc.v[i]);
	}
	free(cc.v);
	return cc.n;
}

static void
compact_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	struct timeval tv = { COMPACT_EVERY_SEC, 0 };

	(void)queue_compact(q);
	if (!q->stopping)
		evtimer_add(q->compact_ev, &tv);
}

struct queue_watch *
queue_watch(struct queue *q, const char *id, void (*fn)(void *, const struct queue_outcome *),
    void *arg)
{
	/* the newest outcome of an attempt that already ended */
	for (size_t k = 0; k < OUTCOMES_KEPT; k++) {
		size_t i = (q->outcome_next + OUTCOMES_KEPT - 1 - k) % OUTCOMES_KEPT;

		if (q->outcomes[i].id[0] && strcmp(q->outcomes[i].id, id) == 0) {
			fn(arg, &q->outcomes[i]);
			return NULL;
		}
	}
	if (msg_find(q, id) == NULL) {
		fn(arg, NULL);
		return NULL;
	}
	struct queue_watch *w = xcalloc(1, sizeof(*w));

	snprintf(w->id, sizeof(w->id), "%s", id);
	w->fn = fn;
	w->arg = arg;
	w->next = q->watches;
	q->watches = w;
	return w;
}

void
queue_unwatch(struct queue *q, struct queue_watch *w)
{
	for (struct queue_watch **wp = &q->watches; *wp; wp = &(*wp)->next)
		if (*wp == w) {
			*wp = w->next;
			free(w);
			return;
		}
}

size_t
queue_active(const struct queue *q)
{
	return q->active;
}

size_t
queue_count(const struct queue *q)
{
	return idmap_count(q->msgs);
}

static void
free_entry(void *arg, uint64_t key, void *val)
{
	msg_free(val);
}

void
queue_free(struct queue *q)
{
	if (q == NULL)
		return;
	while (q->old) {
		struct qgen *g = q->old;

		q->old = g->next;
		gen_free(g);
	}
	gen_free(q->gen);
	smtp_client_abort_all(&q->cenv);
	oauth_free(q->oauth);
	for (size_t i = 0; i < OUTCOMES_KEPT; i++)
		outcome_clear(&q->outcomes[i]);
	while (q->watches) {
		struct queue_watch *w = q->watches;

		q->watches = w->next;
		free(w);
	}
	while (q->sigstores) {
		struct sigstore *ss = (struct sigstore *)q->sigstores;

		pend_del(&q->sigstores, &ss->link);
		free(ss);
	}
	while (q->dsn_commits) {
		struct dsn_commit *dc = (struct dsn_commit *)q->dsn_commits;

		pend_del(&q->dsn_commits, &dc->link);
		spool_envelope_free(dc->env);
		free(dc);
	}
	idmap_foreach(q->msgs, free_entry, NULL);
	idmap_free(q->msgs);
	free(q->heap);
	event_free(q->timer);
	event_free(q->compact_ev);
	free(q);
}
