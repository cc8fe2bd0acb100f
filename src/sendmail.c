/*
 * relayd-sendmail — a sendmail-compatible injector for applications that
 * call /usr/sbin/sendmail (PHP's mail(), cron, scripts).
 *
 * It reads the message on stdin, then submits it over SMTP to relayd's
 * first listen address, one blocking connection, every wait bounded.
 * Promises:
 *  - exit 0, silently, only when the relay accepted the message for every
 *    recipient (its "250 ... queued as" means it is on disk there);
 *  - otherwise a line on stderr naming what failed, with the relay's own
 *    reply, and a sysexits.h status: EX_TEMPFAIL (75) when the relay is
 *    unreachable or answers 4xx, EX_NOUSER (67) for a refused recipient,
 *    EX_DATAERR (65) for a refused message, EX_NOPERM (77) for a refused
 *    sender, EX_USAGE (64) for bad options or no recipients, EX_CONFIG (78)
 *    for an unusable configuration (see sendmail_exit_status());
 *  - it needs no privileges: the configuration is read without its secret
 *    files, which a cron job's user may not be able to open.
 */
#include "acconfig.h"

#include <errno.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "sendmail_opts.h"
#include "util.h"

#define PROG			"relayd-sendmail"
#define SM_TIMEOUT		60	/* seconds for the connection and each reply */
#define SM_EOD_TIMEOUT		300	/* for the reply to the message: relayd signs and
					 * fsyncs before it answers */
#define SM_LINE_MAX		4096	/* octets of one reply line */
#define SM_REPLY_LINES		100	/* lines of one reply */

static const char usage_text[] =
    "usage: " PROG " [-t] [-i] [-f SENDER] [-F NAME] [-C FILE] [-v] [--] [RECIPIENT...]\n";

/* The connection to the relay. */
struct sm_conn {
	int		 fd;
	char		 peer[NET_HOST_MAX + 16];	/* "127.0.0.1:2525" for messages */
	bool		 verbose;
	char		 rbuf[8192];
	size_t		 rpos, rlen;
	bool		 closed;			/* the relay closed or we gave up */
};

struct sm_reply {
	int		 code;			/* 0: none (I/O error, see text) */
	char		 enh[16];		/* "5.7.1", or "" */
	struct buf	 text;			/* the lines, joined by " / " */
	struct buf	 lines;			/* the lines without their codes */
};

/* What the relay's EHLO offered. */
struct sm_ext {
	bool	 eightbitmime;
	bool	 smtputf8;
	bool	 size;
};

/* ---- connection ---------------------------------------------------------- */

static void
sm_set_timeout(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * Connects to host:port, trying each address it resolves to.  A wildcard
 * listen address means "every local address": loopback is the one to use.
 * Returns 0, or -1 with the reason on stderr.
 */
static int
sm_connect(struct sm_conn *c, const struct hostport *hp)
{
	struct addrinfo hints, *res = NULL, *ai;
	const char *host = hp->host;
	char port[8];
	int rc, err = 0;

	if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	snprintf(port, sizeof(port), "%u", (unsigned int)hp->port);
	snprintf(c->peer, sizeof(c->peer), strchr(host, ':') != NULL ? "[%s]:%s" : "%s:%s",
	    host, port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, PROG ": cannot resolve the relay's address %s: %s\n",
		    c->peer, gai_strerror(rc));
		return -1;
	}
	c->fd = -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);

		if (fd == -1) {
			err = errno;
			continue;
		}
		/* on Linux SO_SNDTIMEO bounds connect() too */
		sm_set_timeout(fd, SM_TIMEOUT);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			c->fd = fd;
			break;
		}
		err = errno == EINPROGRESS ? ETIMEDOUT : errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (c->fd == -1) {
		fprintf(stderr, PROG ": cannot connect to the relay at %s: %s\n",
		    c->peer, strerror(err));
		return -1;
	}
	return 0;
}

static int
sm_send(struct sm_conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, PROG ": sending to the relay at %s: %s\n", c->peer,
			    errno == EAGAIN || errno == EWOULDBLOCK ?
			    "timed out" : strerror(errno));
			c->closed = true;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One line of a reply, without CRLF, into line (NUL-terminated).  Returns
 * its length, or -1 (the reason printed) on EOF, timeout or error. */
static ssize_t
sm_read_line(struct sm_conn *c, char *line, size_t cap)
{
	size_t n = 0;

	for (;;) {
		while (c->rpos < c->rlen) {
			char ch = c->rbuf[c->rpos++];

			if (ch == '\n') {
				if (n > 0 && line[n - 1] == '\r')
					n--;
				line[n] = '\0';
				return (ssize_t)n;
			}
			if (n + 1 >= cap) {
				fprintf(stderr, PROG ": the relay at %s sent a reply line "
				    "longer than %zu octets\n", c->peer, cap - 1);
				c->closed = true;
				return -1;
			}
			line[n++] = ch;
		}
		ssize_t r = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);

		if (r > 0) {
			c->rpos = 0;
			c->rlen = (size_t)r;
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		if (r == 0)
			fprintf(stderr, PROG ": the relay at %s closed the connection\n",
			    c->peer);
		else
			fprintf(stderr, PROG ": reading from the relay at %s: %s\n", c->peer,
			    errno == EAGAIN || errno == EWOULDBLOCK ?
			    "no reply in time" : strerror(errno));
		c->closed = true;
		return -1;
	}
}

/*
 * Reads one reply.  Returns its code (2xx..5xx), 0 after an I/O error or
 * timeout (already reported: counts as a temporary failure), or -1 for a
 * reply that is not SMTP (reported; a protocol error).
 */
static int
sm_read_reply(struct sm_conn *c, struct sm_reply *r)
{
	char line[SM_LINE_MAX];
	int nlines = 0;

	r->code = 0;
	r->enh[0] = '\0';
	buf_reset(&r->text);
	buf_reset(&r->lines);
	for (;;) {
		ssize_t n = sm_read_line(c, line, sizeof(line));

		if (n == -1)
			return 0;
		if (c->verbose)
			fprintf(stderr, "<<< %s\n", line);
		if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' || (n > 3 && line[3] != ' ' && line[3] != '-') ||
		    (nlines > 0 && atoi(line) != r->code) || ++nlines > SM_REPLY_LINES) {
			fprintf(stderr, PROG ": the relay at %s sent a malformed reply: %s\n",
			    c->peer, line);
			c->closed = true;
			return -1;
		}
		r->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (r->text.len > 0)
			buf_addstr(&r->text, " / ");
		buf_addstr(&r->text, line);
		buf_printf(&r->lines, "%s\n", n > 4 ? line + 4 : "");
		if (nlines == 1) {
			/* enhanced status code: "x.y.z " after the code */
			const char *e = n > 4 ? line + 4 : "";
			size_t k = strspn(e, "0123456789.");

			if (k >= 5 && k < sizeof(r->enh) && e[0] == line[0] && e[1] == '.' &&
			    (e[k] == ' ' || e[k] == '\0')) {
				memcpy(r->enh, e, k);
				r->enh[k] = '\0';
			}
		}
		if (n == 3 || line[3] == ' ')
			return r->code;
	}
}

/* Sends a command line (CRLF added) and reads the reply; see sm_read_reply. */
static int
sm_command(struct sm_conn *c, struct sm_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
sm_command(struct sm_conn *c, struct sm_reply *r, const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int rc;

	va_start(ap, fmt);
	cmd = xvasprintf(fmt, ap);
	va_end(ap);
	if (c->verbose)
		fprintf(stderr, ">>> %s\n", cmd);
	rc = sm_send(c, cmd, strlen(cmd)) == 0 && sm_send(c, "\r\n", 2) == 0 ?
	    sm_read_reply(c, r) : 0;
	free(cmd);
	return rc;
}

/* The exit status for the reply to a command at stage; prints why. */
static int
sm_failed(struct sm_conn *c, enum sendmail_stage stage, const char *what, int rc,
    const struct sm_reply *r)
{
	if (rc == 0)
		return EX_TEMPFAIL;		/* I/O error, already reported */
	if (rc == -1)
		return EX_PROTOCOL;		/* malformed reply, already reported */
	fprintf(stderr, PROG ": the relay at %s refused %s: %s\n", c->peer, what, r->text.p);
	if (r->code == 421)
		c->closed = true;
	return sendmail_exit_status(stage, r->code, r->enh);
}

static void
sm_parse_ehlo(const struct sm_reply *r, struct sm_ext *ext)
{
	const char *l = r->lines.p;

	memset(ext, 0, sizeof(*ext));
	/* the first line is the greeting text; keywords follow */
	l = strchr(l, '\n') + 1;
	while (*l != '\0') {
		const char *end = strchr(l, '\n');
		size_t n = strcspn(l, " \n");

		if (n == 8 && ascii_strncasecmp(l, "8BITMIME", n) == 0)
			ext->eightbitmime = true;
		else if (n == 8 && ascii_strncasecmp(l, "SMTPUTF8", n) == 0)
			ext->smtputf8 = true;
		else if (n == 4 && ascii_strncasecmp(l, "SIZE", n) == 0)
			ext->size = true;
		l = end + 1;
	}
}

static bool
sm_nonascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* ---- submission -------------------------------------------------------- */

struct sm_job {
	const char			*helo;
	const char			*sender;	/* "" for the null sender */
	const struct sendmail_rcpts	*rcpts;
	const struct sendmail_msg	*msg;
	bool				 verbose;
};

/*
 * Submits the message.  Recipients the relay defers with 452 (too many
 * recipients) after it accepted some go in a further transaction, as RFC
 * 5321 3.3 intends.  Returns 0 if every recipient was accepted and the
 * message with them, else the status of the first failure (each failure
 * is reported on stderr).
 */
static int
sm_submit(const struct hostport *hp, const struct sm_job *job)
{
	struct sm_conn c;
	struct sm_reply r;
	struct sm_ext ext;
	struct buf data, params;
	size_t next = 0, delivered = 0;
	bool utf8 = sm_nonascii(job->sender) || job->msg->hdr_eightbit;
	int status = 0, rc;

	memset(&c, 0, sizeof(c));
	c.verbose = job->verbose;
	if (sm_connect(&c, hp) == -1)
		return EX_TEMPFAIL;
	buf_init(&r.text);
	buf_init(&r.lines);
	buf_init(&data);
	buf_init(&params);

	if ((rc = sm_read_reply(&c, &r)) != 220) {
		status = sm_failed(&c, SENDMAIL_GREETING, "the connection", rc, &r);
		goto out;
	}
	if ((rc = sm_command(&c, &r, "EHLO %s", job->helo)) != 250) {
		if (rc >= 500 && rc <= 599 && r.code != 421)
			rc = sm_command(&c, &r, "HELO %s", job->helo);
		if (rc != 250) {
			status = sm_failed(&c, SENDMAIL_EHLO, "EHLO", rc, &r);
			goto out;
		}
		memset(&ext, 0, sizeof(ext));
	} else {
		sm_parse_ehlo(&r, &ext);
	}

	for (size_t i = 0; i < job->rcpts->n && !utf8; i++)
		utf8 = sm_nonascii(job->rcpts->v[i]);
	sendmail_dot_stuff(job->msg->text.p, job->msg->text.len, &data);
	if (ext.size)
		buf_printf(&params, " SIZE=%zu", job->msg->text.len);
	if (job->msg->eightbit && ext.eightbitmime)
		buf_addstr(&params, " BODY=8BITMIME");
	if (utf8 && ext.smtputf8)
		buf_addstr(&params, " SMTPUTF8");

	while (next < job->rcpts->n && !c.closed) {
		size_t accepted = 0, i;
		char *what;

		rc = sm_command(&c, &r, "MAIL FROM:<%s>%s", job->sender,
		    params.len > 0 ? params.p : "");
		if (rc < 200 || rc > 299) {
			what = xasprintf("the sender <%s>", job->sender);
			status = sm_failed(&c, SENDMAIL_MAIL, what, rc, &r);
			free(what);
			goto out;
		}
		for (i = next; i < job->rcpts->n && !c.closed; i++) {
			const char *to = job->rcpts->v[i];

			rc = sm_command(&c, &r, "RCPT TO:<%s>", to);
			if (rc >= 200 && rc <= 299) {
				accepted++;
				continue;
			}
			if (rc == 452 && accepted > 0)
				break;		/* the rest in the next transaction */
			what = xasprintf("the recipient <%s>", to);
			rc = sm_failed(&c, SENDMAIL_RCPT, what, rc, &r);
			free(what);
			if (status == 0)
				status = rc;
		}
		next = i;
		if (c.closed)
			break;
		if (accepted == 0) {
			(void)sm_command(&c, &r, "RSET");
			continue;
		}
		if ((rc = sm_command(&c, &r, "DATA")) != 354) {
			rc = sm_failed(&c, SENDMAIL_DATA, "DATA", rc, &r);
			if (status == 0)
				status = rc;
			goto out;
		}
		if (c.verbose)
			fprintf(stderr, ">>> (message, %zu octets)\n", data.len);
		if (sm_send(&c, data.p, data.len) == -1) {
			status = EX_TEMPFAIL;
			goto out;
		}
		sm_set_timeout(c.fd, SM_EOD_TIMEOUT);
		rc = sm_read_reply(&c, &r);
		sm_set_timeout(c.fd, SM_TIMEOUT);
		if (rc < 200 || rc > 299) {
			rc = sm_failed(&c, SENDMAIL_EOD, "the message", rc, &r);
			if (status == 0)
				status = rc;
			goto out;
		}
		delivered += accepted;
	}
	if (!c.closed)
		(void)sm_command(&c, &r, "QUIT");
out:
	if (status != 0 && delivered > 0)
		fprintf(stderr, PROG ": the relay accepted the message for the other "
		    "%zu recipient%s\n", delivered, delivered == 1 ? "" : "s");
	if (status == 0 && c.closed)
		status = EX_TEMPFAIL;
	close(c.fd);
	buf_free(&r.text);
	buf_free(&r.lines);
	buf_free(&data);
	buf_free(&params);
	return status;
}

/* ---- main -------------------------------------------------------------- */

/* The login name of the real user, as Postfix takes it for the sender. */
static const char *
sm_login_name(void)
{
	struct passwd *pw = getpwuid(getuid());
	const char *s;

	if (pw != NULL && pw->pw_name[0] != '\0')
		return pw->pw_name;
	/* no passwd entry (a container, say): what the environment says */
	if ((s = getenv("LOGNAME")) != NULL && *s != '\0')
		return s;
	if ((s = getenv("USER")) != NULL && *s != '\0')
		return s;
	return NULL;
}

/* Reads stdin into in; returns 0, or an exit status after saying why. */
static int
sm_read_input(struct sendmail_input *in, uint64_t limit)
{
	char chunk[65536];

	while (!in->done) {
		ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, PROG ": reading the message: %s\n", strerror(errno));
			return EX_IOERR;
		}
		if (n == 0)
			break;
		sendmail_input_feed(in, chunk, (size_t)n);
		if (in->text.len + in->line.len > limit) {
			fprintf(stderr, PROG ": the message is larger than the relay accepts "
			    "(max_message_size %llu octets)\n", (unsigned long long)limit);
			return EX_DATAERR;
		}
	}
	sendmail_input_finish(in);
	return 0;
}

int
main(int argc, char **argv)
{
	struct sendmail_opts o;
	struct sendmail_rcpts rcpts;
	struct sendmail_input in;
	struct sendmail_msg msg;
	struct config *cfg = NULL;
	struct sm_job job;
	const char *path;
	char *sender = NULL;
	char err[512];
	uint64_t limit;
	int status = 0;

	sendmail_rcpts_init(&rcpts);
	sendmail_input_init(&in, false);
	memset(&msg, 0, sizeof(msg));
	buf_init(&msg.text);

	if (sendmail_parse_args(argc, argv, &o, err, sizeof(err)) == -1) {
		fprintf(stderr, PROG ": %s\n%s", err, usage_text);
		status = EX_USAGE;
		goto out;
	}
	in.ignore_dots = o.ignore_dots;
	path = o.config != NULL ? o.config : CONFIG_DEFAULT_PATH;
	cfg = config_load_opts(path, stderr, CONFIG_NO_KEYFILE_CHECK | CONFIG_NO_SECRETS);
	if (cfg == NULL) {
		fprintf(stderr, PROG ": cannot use the configuration %s\n", path);
		status = EX_CONFIG;
		goto out;
	}
	if (cfg->nlisten == 0) {
		fprintf(stderr, PROG ": %s has no listen address\n", path);
		status = EX_CONFIG;
		goto out;
	}

	if (o.sender != NULL) {
		if (sendmail_sender(o.sender, cfg->hostname, &sender, err, sizeof(err)) == -1) {
			fprintf(stderr, PROG ": -f %s: %s\n", o.sender, err);
			status = EX_USAGE;
			goto out;
		}
	} else {
		const char *login = sm_login_name();

		if (login == NULL) {
			fprintf(stderr, PROG ": cannot tell who runs this (no passwd entry, "
			    "no LOGNAME); give the sender with -f\n");
			status = EX_OSERR;
			goto out;
		}
		if (sendmail_sender(login, cfg->hostname, &sender, err, sizeof(err)) == -1) {
			fprintf(stderr, PROG ": sender from the login name %s: %s; "
			    "give one with -f\n", login, err);
			status = EX_USAGE;
			goto out;
		}
	}
	for (size_t i = 0; i < o.nargs; i++) {
		if (sendmail_parse_addrlist(o.args[i], strlen(o.args[i]), cfg->hostname,
		    &rcpts, err, sizeof(err)) == -1) {
			fprintf(stderr, PROG ": recipient %s: %s\n", o.args[i], err);
			status = EX_USAGE;
			goto out;
		}
	}
	if (!o.extract && rcpts.n == 0) {
		/* nothing to read the message for */
		fprintf(stderr, PROG ": no recipients given (use -t to take them "
		    "from the header)\n%s", usage_text);
		status = EX_USAGE;
		goto out;
	}

	/* room for LF becoming CRLF: the relay has the last word on size */
	limit = cfg->max_message_size * 2 + (1u << 20);
	if ((status = sm_read_input(&in, limit)) != 0)
		goto out;
	if (sendmail_msg_build(in.text.p, in.text.len, sender, o.fullname, cfg->hostname,
	    o.extract ? &rcpts : NULL, &msg, err, sizeof(err)) == -1) {
		fprintf(stderr, PROG ": %s\n", err);
		status = EX_DATAERR;
		goto out;
	}
	if (rcpts.n == 0) {
		fprintf(stderr, PROG ": no recipient addresses found in the header\n");
		status = EX_USAGE;
		goto out;
	}

	job.helo = cfg->hostname;
	job.sender = sender;
	job.rcpts = &rcpts;
	job.msg = &msg;
	job.verbose = o.verbose;
	status = sm_submit(&cfg->listen[0].hp, &job);
out:
	free(sender);
	sendmail_msg_free(&msg);
	sendmail_input_free(&in);
	sendmail_rcpts_free(&rcpts);
	config_free(cfg);
	return status;
}
