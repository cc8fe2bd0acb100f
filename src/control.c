/*
 * control — answers relayctl on the control socket (protocol in control.h).
 *
 * A request is read with a bound (REQUEST_MAX), answered from the queue's
 * state on the event loop, and the connection closes once the answer has
 * left; only "wait" keeps a connection open, until the message's attempt
 * ends or the client goes away.  Permission is the socket file's: mode 0660,
 * so root and members of the relay user's group.
 */
#include "acconfig.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "control.h"
#include "log.h"
#include "util.h"

#define REQUEST_MAX	4096
#define CONN_TIMEOUT	30	/* seconds to send a request */

struct control {
	struct event_base	*base;
	struct queue		*q;
	struct evconnlistener	*lev;
	char			*path;
	struct cconn		*conns;		/* open connections */
};

struct cconn {
	struct control		*ctl;
	struct cconn		*prev, *next;
	struct bufferevent	*bev;
	struct queue_watch	*watch;
	int			 removing;	/* removals not yet durable */
	bool			 closing;
};

static void
cconn_free(struct cconn *cc)
{
	if (cc->watch)
		queue_unwatch(cc->ctl->q, cc->watch);
	if (cc->prev)
		cc->prev->next = cc->next;
	else
		cc->ctl->conns = cc->next;
	if (cc->next)
		cc->next->prev = cc->prev;
	bufferevent_setcb(cc->bev, NULL, NULL, NULL, NULL);
	bufferevent_free(cc->bev);
	free(cc);
}

/* Appends a field with TAB and line ends made spaces. */
static void
put_field(struct evbuffer *out, const char *s)
{
	for (; s && *s; s++) {
		char c = (*s == '\t' || *s == '\r' || *s == '\n') ? ' ' : *s;

		evbuffer_add(out, &c, 1);
	}
}

static void
cconn_write_cb(struct bufferevent *bev, void *arg)
{
	struct cconn *cc = arg;

	if (cc->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		cconn_free(cc);
}

static void
cconn_finish(struct cconn *cc)
{
	evbuffer_add(bufferevent_get_output(cc->bev), ".\n", 2);
	cc->closing = true;
	bufferevent_disable(cc->bev, EV_READ);
	bufferevent_enable(cc->bev, EV_WRITE);
}

static void
list_cb(void *arg, const struct spool_envelope *env, bool active, int64_t due)
{
	struct evbuffer *out = arg;
	static const char *const st[] = { "pending", "sent", "bounced" };

	evbuffer_add_printf(out, "M\t%s\t%lld\t%llu\t", env->id, (long long)env->arrival,
	    (unsigned long long)spool_envelope_size(env));
	put_field(out, env->sender);
	evbuffer_add_printf(out, "\t%d\t%lld\n", active ? 1 : 0, (long long)due);
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];

		evbuffer_add(out, "R\t", 2);
		put_field(out, r->addr);
		evbuffer_add_printf(out, "\t%s\t%u\t%lld\t", st[r->status < 3 ? r->status : 0],
		    r->attempts, (long long)r->next_attempt);
		put_field(out, r->dsn);
		evbuffer_add(out, "\t", 1);
		put_field(out, r->last_error);
		evbuffer_add(out, "\n", 1);
	}
}

static void
wait_cb(void *arg, const struct queue_outcome *o)
{
	struct cconn *cc = arg;
	struct evbuffer *out = bufferevent_get_output(cc->bev);

	cc->watch = NULL;
	if (o == NULL) {
		evbuffer_add_printf(out, "error\tunknown queue id\n");
	} else {
		for (size_t i = 0; i < o->n; i++) {
			evbuffer_add(out, "O\t", 2);
			put_field(out, o->r[i].addr);
			evbuffer_add(out, "\t", 1);
			put_field(out, o->r[i].status);
			evbuffer_add(out, "\t", 1);
			put_field(out, o->r[i].dsn);
			evbuffer_add(out, "\t", 1);
			put_field(out, o->r[i].reason);
			evbuffer_add(out, "\n", 1);
		}
	}
	cconn_finish(cc);
}

/* A removal is durable; the last one releases the answer. */
static void
removed_cb(void *arg, int error, const struct spool_loc *loc)
{
	struct cconn *cc = arg;

	if (error != 0)
		evbuffer_add_printf(bufferevent_get_output(cc->bev),
		    "error\tthe spool could not record a removal: %s\n", strerror(error));
	if (--cc->removing == 0)
		cconn_finish(cc);
}

static void
cconn_request(struct cconn *cc, char *line)
{
	struct evbuffer *out = bufferevent_get_output(cc->bev);
	char *save = NULL;
	char *cmd = strtok_r(line, " \t", &save);

	if (cmd == NULL) {
		evbuffer_add_printf(out, "error\tempty request\n");
	} else if (strcmp(cmd, "queue") == 0) {
		queue_list(cc->ctl->q, list_cb, out);
	} else if (strcmp(cmd, "flush") == 0) {
		char *id = strtok_r(NULL, " \t", &save);
		int n = 0;

		if (id == NULL)
			n = queue_flush(cc->ctl->q, NULL);
		for (; id; id = strtok_r(NULL, " \t", &save)) {
			int k = queue_flush(cc->ctl->q, id);

			if (k < 0) {
				evbuffer_add(out, "error\t", 6);
				put_field(out, id);
				evbuffer_add_printf(out, ": unknown queue id\n");
			} else {
				n += k;
			}
		}
		evbuffer_add_printf(out, "ok\t%d\n", n);
	} else if (strcmp(cmd, "remove") == 0) {
		char *id = strtok_r(NULL, " \t", &save);

		if (id == NULL)
			evbuffer_add_printf(out, "error\tremove needs queue ids\n");
		for (; id; id = strtok_r(NULL, " \t", &save)) {
			int rc = queue_remove(cc->ctl->q, id, removed_cb, cc);

			if (rc == 0)
				cc->removing++;
			evbuffer_add(out, rc == 0 ? "removed\t" : "error\t", rc == 0 ? 8 : 6);
			put_field(out, id);
			evbuffer_add_printf(out, "%s\n", rc == 0 ? "" : rc == -1 ?
			    ": unknown queue id" : ": being delivered right now; try again in a moment");
		}
		if (cc->removing > 0) {
			/* the answer leaves once every removal is on disk */
			bufferevent_disable(cc->bev, EV_WRITE);
			bufferevent_set_timeouts(cc->bev, NULL, NULL);
			return;
		}
	} else if (strcmp(cmd, "wait") == 0) {
		char *id = strtok_r(NULL, " \t", &save);

		if (id == NULL) {
			evbuffer_add_printf(out, "error\twait needs a queue id\n");
		} else {
			/* answered by wait_cb, now or after the attempt */
			bufferevent_set_timeouts(cc->bev, NULL, NULL);
			cc->watch = queue_watch(cc->ctl->q, id, wait_cb, cc);
			return;
		}
	} else {
		evbuffer_add_printf(out, "error\tunknown request\n");
	}
	cconn_finish(cc);
}

static void
cconn_read_cb(struct bufferevent *bev, void *arg)
{
	struct cconn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t eol_len;
	struct evbuffer_ptr eol;

	if (cc->closing || cc->watch)
		return;
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) > REQUEST_MAX) {
			evbuffer_add_printf(bufferevent_get_output(bev), "error\trequest too long\n");
			cconn_finish(cc);
		}
		return;
	}
	if ((size_t)eol.pos > REQUEST_MAX) {
		evbuffer_add_printf(bufferevent_get_output(bev), "error\trequest too long\n");
		cconn_finish(cc);
		return;
	}
	char line[REQUEST_MAX + 3];

	evbuffer_remove(in, line, (size_t)eol.pos + eol_len);
	line[eol.pos] = '\0';
	cconn_request(cc, line);
}

static void
cconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cconn *cc = arg;

	/* the client went away (or never sent a request in time); removals
	 * still on their way to disk hold it until they are there */
	if (cc->removing > 0) {
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		cc->closing = true;
		return;
	}
	cconn_free(cc);
}

static void
control_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct control *ctl = arg;
	struct cconn *cc = xcalloc(1, sizeof(*cc));
	struct timeval tv = { CONN_TIMEOUT, 0 };

	cc->ctl = ctl;
	cc->next = ctl->conns;
	if (cc->next)
		cc->next->prev = cc;
	ctl->conns = cc;
	cc->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cc->bev, cconn_read_cb, cconn_write_cb, cconn_event_cb, cc);
	bufferevent_set_timeouts(cc->bev, &tv, &tv);
	bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
}

/* Is something listening on the socket at path? */
static bool
socket_alive(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

struct control *
control_open(struct event_base *base, const struct config *cfg, struct queue *q,
    char *err, size_t errlen)
{
	struct control *ctl;
	struct sockaddr_un sa;
	struct stat st;
	char *dir;
	int fd;

	if (strlen(cfg->control) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path %s is too long", cfg->control);
		return NULL;
	}
	dir = xstrdup(cfg->control);
	*strrchr(dir, '/') = '\0';
	if (dir[0] != '\0' && mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s for the control socket: %s", dir,
		    strerror(errno));
		free(dir);
		return NULL;
	}
	free(dir);
	if (lstat(cfg->control, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", cfg->control);
			return NULL;
		}
		if (socket_alive(cfg->control)) {
			snprintf(err, errlen, "control socket %s is in use by another relayd",
			    cfg->control);
			return NULL;
		}
		(void)unlink(cfg->control);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return NULL;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg->control);
	/* no window in which others could connect before the chmod */
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(cfg->control, 0660) < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "control socket %s: %s", cfg->control, strerror(errno));
		close(fd);
		return NULL;
	}
	if (geteuid() == 0 && cfg->user) {
		struct passwd *pw = getpwnam(cfg->user);

		if (pw == NULL || chown(cfg->control, pw->pw_uid, pw->pw_gid) < 0) {
			snprintf(err, errlen, "cannot hand control socket %s to %s: %s", cfg->control,
			    cfg->user, pw ? strerror(errno) : "no such user");
			close(fd);
			unlink(cfg->control);
			return NULL;
		}
	}
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->base = base;
	ctl->q = q;
	ctl->path = xstrdup(cfg->control);
	ctl->lev = evconnlistener_new(base, control_accept_cb, ctl, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (ctl->lev == NULL) {
		snprintf(err, errlen, "control socket %s: cannot listen", cfg->control);
		close(fd);
		unlink(cfg->control);
		free(ctl->path);
		free(ctl);
		return NULL;
	}
	return ctl;
}

void
control_free(struct control *c)
{
	if (c == NULL)
		return;
	while (c->conns)
		cconn_free(c->conns);
	evconnlistener_free(c->lev);
	(void)unlink(c->path);
	free(c->path);
	free(c);
}
