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
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
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
	int			 dfd;		/* the socket's directory */
	dev_t			 dev;		/* the socket file, to remove only it */
	ino_t			 ino;
	struct cconn		*conns;		/* open connections */
};

static void
control_unlink(struct control *c)
{
	const char *base = strrchr(c->path, '/') + 1;
	struct stat st;

	if (fstatat(c->dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == c->dev &&
	    st.st_ino == c->ino)
		(void)unlinkat(c->dfd, base, 0);
}

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

int
control_parse_request(char *line, struct control_request *r)
{
	static const struct { const char *name; enum control_cmd cmd; } cmds[] = {
		{ "queue", CONTROL_QUEUE }, { "flush", CONTROL_FLUSH },
		{ "remove", CONTROL_REMOVE }, { "wait", CONTROL_WAIT },
	};
	char *save = NULL, *word = strtok_r(line, " \t", &save);

	memset(r, 0, sizeof(*r));
	if (word == NULL)
		return -1;
	r->cmd = CONTROL_UNKNOWN;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(word, cmds[i].name) == 0)
			r->cmd = cmds[i].cmd;
	while ((word = strtok_r(NULL, " \t", &save)) != NULL) {
		r->ids = xrealloc(r->ids, (r->nids + 1) * sizeof(*r->ids));
		r->ids[r->nids++] = word;
	}
	return 0;
}

void
control_request_free(struct control_request *r)
{
	free(r->ids);
	memset(r, 0, sizeof(*r));
}

/* Acts on a request; false if the answer is not complete yet (it is
 * finished later, by a callback). */
static bool
cconn_proceed(struct cconn *cc, const struct control_request *r)
{
	struct evbuffer *out = bufferevent_get_output(cc->bev);

	switch (r->cmd) {
	case CONTROL_QUEUE:
		queue_list(cc->ctl->q, list_cb, out);
		break;
	case CONTROL_FLUSH: {
		int n = r->nids == 0 ? queue_flush(cc->ctl->q, NULL) : 0;

		for (size_t i = 0; i < r->nids; i++) {
			int k = queue_flush(cc->ctl->q, r->ids[i]);

			if (k < 0) {
				evbuffer_add(out, "error\t", 6);
				put_field(out, r->ids[i]);
				evbuffer_add_printf(out, ": unknown queue id\n");
			} else {
				n += k;
			}
		}
		evbuffer_add_printf(out, "ok\t%d\n", n);
		break;
	}
	case CONTROL_REMOVE:
		if (r->nids == 0)
			evbuffer_add_printf(out, "error\tremove needs queue ids\n");
		for (size_t i = 0; i < r->nids; i++) {
			const char *id = r->ids[i];
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
			return false;
		}
		break;
	case CONTROL_WAIT:
		if (r->nids == 0) {
			evbuffer_add_printf(out, "error\twait needs a queue id\n");
			break;
		}
		/* answered by wait_cb, now or after the attempt */
		bufferevent_set_timeouts(cc->bev, NULL, NULL);
		cc->watch = queue_watch(cc->ctl->q, r->ids[0], wait_cb, cc);
		return false;
	case CONTROL_UNKNOWN:
		evbuffer_add_printf(out, "error\tunknown request\n");
		break;
	}
	return true;
}

static void
cconn_request(struct cconn *cc, char *line)
{
	struct control_request r;
	bool done = true;

	if (control_parse_request(line, &r) < 0)
		evbuffer_add_printf(bufferevent_get_output(cc->bev), "error\tempty request\n");
	else
		done = cconn_proceed(cc, &r);
	control_request_free(&r);
	if (done)
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

/*
 * Setting the socket up.  A socket file's owner and mode can only be set
 * through its name (fchown and fchmod on the descriptor do not reach the
 * file), and whoever may write to its directory could swap that name for a
 * link to another file between bind() and those calls, which root would
 * then hand to the relay user.  So:
 *  - the directory must belong to root, to us or to the relay user
 *    (tmpfiles.d makes /run/relayd the relay user's) and be writable by its
 *    owner only;
 *  - the socket is bound in a fresh directory of our own inside it (mode
 *    0700: nobody else may even look in), given its mode and owner there,
 *    relative to that directory's descriptor and without following links,
 *    and only then renamed into place: the name appears complete and
 *    listening, and a stale socket is replaced in the same step.
 */
struct control_setup {
	const char	*path;		/* cfg->control */
	char		*dir;		/* its directory */
	const char	*base;		/* its last component */
	int		 dfd;		/* dir */
	char		 tmpname[32];	/* the private directory, in dir */
	int		 tfd;		/* that directory; -1 if none */
	uid_t		 uid;		/* the socket's owner and group */
	gid_t		 gid;
	bool		 chown;
};

/* Opens the socket's directory (made if missing) and checks who may write there. */
static int
setup_dir(struct control_setup *cs, char *err, size_t errlen)
{
	struct passwd *pw;
	struct stat st;

	if (mkdir(cs->dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s for the control socket: %s",
		    cs->dir, strerror(errno));
		return -1;
	}
	cs->dfd = open(cs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cs->dfd < 0 || fstat(cs->dfd, &st) < 0) {
		snprintf(err, errlen, "control socket directory %s: %s", cs->dir,
		    strerror(errno));
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid() && !(cs->chown && st.st_uid == cs->uid)) {
		pw = getpwuid(st.st_uid);
		snprintf(err, errlen, "control socket directory %s belongs to %s "
		    "(uid %lu): it must belong to root or to the user relayd runs as",
		    cs->dir, pw != NULL ? pw->pw_name : "an unknown user",
		    (unsigned long)st.st_uid);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "control socket directory %s is writable by "
		    "others (mode %04o): they could replace the socket; chmod go-w it",
		    cs->dir, (unsigned int)(st.st_mode & 07777));
		return -1;
	}
	/* what is there now: a stale socket may go, anything else stays */
	if (fstatat(cs->dfd, cs->base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", cs->path);
			return -1;
		}
		if (socket_alive(cs->path)) {
			snprintf(err, errlen, "control socket %s is in use by another relayd",
			    cs->path);
			return -1;
		}
	}
	return 0;
}

/* Makes the private directory, ".relayd-" and random letters, mode 0700. */
static int
setup_tmpdir(struct control_setup *cs, char *err, size_t errlen)
{
	static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	struct stat st;

	for (int tries = 0; tries < 100; tries++) {
		unsigned char r[10];

		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			snprintf(err, errlen, "control socket: no random bytes: %s",
			    strerror(errno));
			return -1;
		}
		memcpy(cs->tmpname, ".relayd-", 8);
		for (size_t i = 0; i < sizeof(r); i++)
			cs->tmpname[8 + i] = digits[r[i] % (sizeof(digits) - 1)];
		cs->tmpname[8 + sizeof(r)] = '\0';
		if (mkdirat(cs->dfd, cs->tmpname, 0700) == 0)
			break;
		if (errno != EEXIST) {
			snprintf(err, errlen, "control socket: cannot create %s/%s: %s",
			    cs->dir, cs->tmpname, strerror(errno));
			cs->tmpname[0] = '\0';		/* not ours to remove */
			return -1;
		}
		cs->tmpname[0] = '\0';
	}
	if (cs->tmpname[0] == '\0') {
		snprintf(err, errlen, "control socket: cannot create a directory in %s",
		    cs->dir);
		return -1;
	}
	cs->tfd = openat(cs->dfd, cs->tmpname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* ours, as made: the owner of dir could have swapped the name meanwhile */
	if (cs->tfd < 0 || fstat(cs->tfd, &st) < 0 || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0) {
		snprintf(err, errlen, "control socket: %s/%s is not the directory "
		    "relayd just made", cs->dir, cs->tmpname);
		return -1;
	}
	return 0;
}

/* Binds fd as "s" in the private directory, mode 0660, owned as it must be. */
static int
setup_bind(struct control_setup *cs, int fd, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	int n;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s/s", cs->dir, cs->tmpname);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/s", cs->tfd);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "control socket %s: %s", cs->path, strerror(errno));
		return -1;
	}
	if (fstatat(cs->tfd, "s", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "control socket %s: the socket is not where it "
		    "was bound", cs->path);
		return -1;
	}
	if (fchmodat(cs->tfd, "s", 0660, 0) < 0) {
		snprintf(err, errlen, "control socket %s: %s", cs->path, strerror(errno));
		return -1;
	}
	if (cs->chown && fchownat(cs->tfd, "s", cs->uid, cs->gid, AT_SYMLINK_NOFOLLOW) < 0) {
		snprintf(err, errlen, "cannot hand control socket %s to the relay user: "
		    "%s", cs->path, strerror(errno));
		return -1;
	}
	if (listen(fd, 16) < 0) {
		snprintf(err, errlen, "control socket %s: %s", cs->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Whatever setup leaves behind, but the directory descriptor on success. */
static void
setup_end(struct control_setup *cs, bool ok)
{
	if (cs->tfd >= 0) {
		(void)unlinkat(cs->tfd, "s", 0);
		close(cs->tfd);
	}
	if (cs->tmpname[0] != '\0')
		(void)unlinkat(cs->dfd, cs->tmpname, AT_REMOVEDIR);
	if (!ok && cs->dfd >= 0)
		close(cs->dfd);
	free(cs->dir);
}

/* The listening socket at cs->path, or -1 with the reason in err. */
static int
setup_socket(struct control_setup *cs, struct stat *st, char *err, size_t errlen)
{
	int fd = -1;

	if (setup_dir(cs, err, errlen) < 0 || setup_tmpdir(cs, err, errlen) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	if (setup_bind(cs, fd, err, errlen) < 0 || fstatat(cs->tfd, "s", st,
	    AT_SYMLINK_NOFOLLOW) < 0) {
		close(fd);
		return -1;
	}
	if (renameat(cs->tfd, "s", cs->dfd, cs->base) < 0) {
		snprintf(err, errlen, "control socket %s: %s", cs->path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct control *
control_open(struct event_base *base, const struct config *cfg, struct queue *q,
    char *err, size_t errlen)
{
	struct control_setup cs;
	struct control *ctl;
	struct stat st;
	int fd;

	memset(&cs, 0, sizeof(cs));
	cs.path = cfg->control;
	cs.dfd = cs.tfd = -1;
	if (strlen(cfg->control) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "control socket path %s is too long", cfg->control);
		return NULL;
	}
	cs.base = strrchr(cfg->control, '/') + 1;
	cs.dir = cs.base - 1 == cfg->control ? xstrdup("/") :
	    xstrndup(cfg->control, (size_t)(cs.base - 1 - cfg->control));
	if (*cs.base == '\0') {
		snprintf(err, errlen, "control socket %s: a path ending in \"/\" names no socket",
		    cfg->control);
		free(cs.dir);
		return NULL;
	}
	if (geteuid() == 0 && cfg->user) {
		struct passwd *pw = getpwnam(cfg->user);

		if (pw == NULL) {
			snprintf(err, errlen, "cannot hand control socket %s to %s: no such user",
			    cfg->control, cfg->user);
			free(cs.dir);
			return NULL;
		}
		cs.uid = pw->pw_uid;
		cs.gid = pw->pw_gid;
		cs.chown = true;
	}
	fd = setup_socket(&cs, &st, err, errlen);
	setup_end(&cs, fd >= 0);
	if (fd < 0)
		return NULL;
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->base = base;
	ctl->q = q;
	ctl->path = xstrdup(cfg->control);
	ctl->dfd = cs.dfd;
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	ctl->lev = evconnlistener_new(base, control_accept_cb, ctl, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (ctl->lev == NULL) {
		snprintf(err, errlen, "control socket %s: cannot listen", cfg->control);
		close(fd);
		control_unlink(ctl);
		close(ctl->dfd);
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
	control_unlink(c);
	close(c->dfd);
	free(c->path);
	free(c);
}
