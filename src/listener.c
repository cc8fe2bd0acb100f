/*
 * listener — binds the `listen` addresses and accepts clients.
 *
 * Accepting is done with libevent's evconnlistener, which accepts in a loop
 * until EAGAIN; when accept fails for lack of descriptors (EMFILE/ENFILE)
 * the listener pauses for a moment instead of spinning.
 */
#include "acconfig.h"

#include <errno.h>
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

struct listener {
	struct evconnlistener	**lev;
	size_t			  n;
	struct smtp_server	 *srv;
	struct event		 *resume;
};

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct listener *l = arg;

	smtp_server_accept(l->srv, fd, sa, (socklen_t)salen);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	for (size_t i = 0; i < l->n; i++)
		evconnlistener_enable(l->lev[i]);
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 1, 0 };

	log_err("accept: %s%s", strerror(e),
	    (e == EMFILE || e == ENFILE) ? " (raise LimitNOFILE or lower max_clients)" : "");
	for (size_t i = 0; i < l->n; i++)
		evconnlistener_disable(l->lev[i]);
	evtimer_add(l->resume, &tv);
}

static int
listen_one(struct listener *l, struct event_base *base, const struct cfg_listen *spec,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", spec->hp.port);
	rc = getaddrinfo(spec->hp.host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s: %s", spec->spec, gai_strerror(rc));
		return -1;
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
		struct evconnlistener *lev = evconnlistener_new(base, accept_cb, l,
		    LEV_OPT_CLOSE_ON_FREE, -1, fd);
		if (lev == NULL) {
			snprintf(err, errlen, "listen %s: cannot create listener", spec->spec);
			close(fd);
			goto fail;
		}
		evconnlistener_set_error_cb(lev, accept_error_cb);
		l->lev = xrealloc(l->lev, (l->n + 1) * sizeof(*l->lev));
		l->lev[l->n++] = lev;
		log_info("listening on %s", spec->spec);
	}
	freeaddrinfo(res);
	return 0;
fail:
	freeaddrinfo(res);
	return -1;
}

struct listener *
listener_open(struct event_base *base, const struct cfg_listen *specs, size_t n,
    struct smtp_server *srv, char *err, size_t errlen)
{
	struct listener *l = xcalloc(1, sizeof(*l));

	l->srv = srv;
	l->resume = evtimer_new(base, resume_cb, l);
	for (size_t i = 0; i < n; i++) {
		if (listen_one(l, base, &specs[i], err, errlen) < 0) {
			listener_free(l);
			return NULL;
		}
	}
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		evconnlistener_free(l->lev[i]);
	free(l->lev);
	if (l->resume)
		event_free(l->resume);
	free(l);
}
