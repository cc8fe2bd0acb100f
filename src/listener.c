/*
 * listener — binds the `listen` addresses and accepts clients.
 *
 * Accepting is done with libevent's evconnlistener, which accepts in a loop
 * until EAGAIN.  When accept fails for lack of descriptors (EMFILE/ENFILE),
 * the clients waiting are still answered 421 4.7.0, as those over
 * max_clients are (smtp_server also refuses clients before the limit is
 * near): a descriptor is kept spare for that moment, given up to accept one
 * client at a time, refuse it and close it, and taken back.  Without it the
 * clients would wait unanswered in the backlog.  Other accept errors pause
 * the listeners for a second instead of spinning.
 *
 * On reload, addresses that stay keep their sockets (no window in which
 * clients are refused), new ones are bound before old ones are closed, and
 * if any new one cannot be bound nothing changes.
 */
#include "acconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>

#include "listener.h"
#include "log.h"
#include "util.h"

#define NOFD_LOG_US	(10 * 1000000)	/* "accept: Too many open files" at most this often */

/* One `listen` entry: the sockets its host name or address gave. */
struct lentry {
	char			 key[NET_HOST_MAX + 8];	/* "host:port" */
	char			*spec;			/* as written */
	struct evconnlistener	**lev;
	size_t			  n;
};

struct listener {
	struct event_base	*base;
	struct lentry		*e;
	size_t			 n;
	struct smtp_server	*srv;
	struct event		*resume;
	int			 spare;		/* /dev/null, given up on EMFILE */
	int64_t			 nofd_said;	/* when EMFILE was last logged (mono_us) */
};

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct listener *l = arg;

	smtp_server_accept(l->srv, fd, sa, (socklen_t)salen);
}

static void
listener_each(struct listener *l, bool enable)
{
	for (size_t i = 0; i < l->n; i++)
		for (size_t k = 0; k < l->e[i].n; k++) {
			if (enable)
				evconnlistener_enable(l->e[i].lev[k]);
			else
				evconnlistener_disable(l->e[i].lev[k]);
		}
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	listener_each(arg, true);
}

/*
 * Out of descriptors: the spare one goes, each waiting client is accepted
 * with it in turn and refused, and it comes back.  Returns false if there
 * was no spare (the caller pauses instead).
 */
static bool
refuse_waiting(struct listener *l, struct evconnlistener *lev)
{
	evutil_socket_t lfd = evconnlistener_get_fd(lev);
	int n = 0;

	if (l->spare < 0)
		l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (l->spare < 0)
		return false;
	close(l->spare);
	for (; n < 1024; n++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			break;
		smtp_server_refuse_busy(l->srv, fd, (struct sockaddr *)&ss);
	}
	l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return n > 0;
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 1, 0 };
	bool nofd = e == EMFILE || e == ENFILE;
	bool refused = nofd && refuse_waiting(l, lev);
	int64_t now = mono_us();

	/* each refused client has its own line; this one at most every 10 s */
	if (!nofd || l->nofd_said == 0 || now - l->nofd_said >= NOFD_LOG_US) {
		log_err("accept: %s%s", strerror(e), !nofd ? "" : refused ? "; clients are "
		    "answered 421 4.7.0 (raise LimitNOFILE or lower max_clients)" : "; accepting "
		    "paused for 1 s (raise LimitNOFILE or lower max_clients)");
		if (nofd)
			l->nofd_said = now;
	}
	if (refused)
		return;
	listener_each(l, false);
	evtimer_add(l->resume, &tv);
}

static void
lentry_free(struct lentry *e)
{
	for (size_t k = 0; k < e->n; k++)
		evconnlistener_free(e->lev[k]);
	free(e->lev);
	free(e->spec);
	e->lev = NULL;
	e->n = 0;
	e->spec = NULL;
}

static int
lentry_open(struct listener *l, struct lentry *e, const struct cfg_listen *spec,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[8];
	int rc;

	memset(e, 0, sizeof(*e));
	snprintf(e->key, sizeof(e->key), "%s:%u", spec->hp.host, spec->hp.port);
	e->spec = xstrdup(spec->spec);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", spec->hp.port);
	rc = getaddrinfo(spec->hp.host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s: %s", spec->spec, gai_strerror(rc));
		goto fail;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;

		if (fd < 0) {
			snprintf(err, errlen, "listen %s: socket: %s", spec->spec, strerror(errno));
			goto fail;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
			snprintf(err, errlen, "bind %s: %s", spec->spec, strerror(errno));
			close(fd);
			goto fail;
		}
		/* backlog 0: listening already (-1 would listen() again, with 128) */
		struct evconnlistener *lev = evconnlistener_new(l->base, accept_cb, l,
		    LEV_OPT_CLOSE_ON_FREE, 0, fd);
		if (lev == NULL) {
			snprintf(err, errlen, "listen %s: cannot create listener", spec->spec);
			close(fd);
			goto fail;
		}
		evconnlistener_set_error_cb(lev, accept_error_cb);
		e->lev = xrealloc(e->lev, (e->n + 1) * sizeof(*e->lev));
		e->lev[e->n++] = lev;
	}
	freeaddrinfo(res);
	return 0;
fail:
	if (res)
		freeaddrinfo(res);
	lentry_free(e);
	return -1;
}

int
listener_reconfigure(struct listener *l, const struct cfg_listen *specs, size_t n,
    char *err, size_t errlen)
{
	struct lentry *ne = xcalloc(n ? n : 1, sizeof(*ne));
	bool *kept = xcalloc(l->n ? l->n : 1, sizeof(*kept));
	size_t i, j;

	for (i = 0; i < n; i++) {
		char key[NET_HOST_MAX + 8];

		snprintf(key, sizeof(key), "%s:%u", specs[i].hp.host, specs[i].hp.port);
		for (j = 0; j < l->n; j++)
			if (!kept[j] && strcmp(l->e[j].key, key) == 0)
				break;
		if (j < l->n) {
			ne[i] = l->e[j];	/* take over the sockets */
			kept[j] = true;
			continue;
		}
		if (lentry_open(l, &ne[i], &specs[i], err, errlen) < 0) {
			/* undo: close what was opened, give back what was taken */
			for (size_t k = 0; k < i; k++) {
				bool taken = false;

				for (j = 0; j < l->n; j++)
					if (kept[j] && ne[k].lev == l->e[j].lev)
						taken = true;
				if (!taken)
					lentry_free(&ne[k]);
			}
			free(ne);
			free(kept);
			return -1;
		}
		log_info("listening on %s", specs[i].spec);
	}
	for (j = 0; j < l->n; j++)
		if (!kept[j]) {
			log_info("no longer listening on %s", l->e[j].spec);
			lentry_free(&l->e[j]);
		}
	free(l->e);
	free(kept);
	l->e = ne;
	l->n = n;
	return 0;
}

struct listener *
listener_open(struct event_base *base, const struct cfg_listen *specs, size_t n,
    struct smtp_server *srv, char *err, size_t errlen)
{
	struct listener *l = xcalloc(1, sizeof(*l));

	l->base = base;
	l->srv = srv;
	l->resume = evtimer_new(base, resume_cb, l);
	l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (listener_reconfigure(l, specs, n, err, errlen) < 0) {
		listener_free(l);
		return NULL;
	}
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		lentry_free(&l->e[i]);
	free(l->e);
	if (l->resume)
		event_free(l->resume);
	if (l->spare >= 0)
		close(l->spare);
	free(l);
}
