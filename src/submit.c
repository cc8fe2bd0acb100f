/*
 * submit — submits one message to relayd over SMTP with blocking I/O and
 * bounded waits: relayd-sendmail's and `relayctl test`'s client.  Every
 * failure is reported on stderr as "PROG: what failed: the relay's reply"
 * and mapped to a sysexits.h status (sendmail_exit_status()).
 */
#include "acconfig.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "submit.h"
#include "util.h"

#define SM_TIMEOUT		60	/* seconds for the connection and each reply */
#define SM_EOD_TIMEOUT		300	/* for the reply to the message: relayd signs and
					 * fsyncs before it answers */
#define SM_LINE_MAX		4096	/* octets of one reply line */
#define SM_REPLY_LINES		100	/* lines of one reply */

static const char *submit_prog = "relayd";

static void
sm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sm_warn(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", submit_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

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
		sm_warn("cannot resolve the relay's address %s: %s\n",
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
		sm_warn("cannot connect to the relay at %s: %s\n",
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
			sm_warn("sending to the relay at %s: %s\n", c->peer,
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
				sm_warn("the relay at %s sent a reply line "
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
			sm_warn("the relay at %s closed the connection\n",
			    c->peer);
		else
			sm_warn("reading from the relay at %s: %s\n", c->peer,
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
			sm_warn("the relay at %s sent a malformed reply: %s\n",
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
	sm_warn("the relay at %s refused %s: %s\n", c->peer, what, r->text.p);
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

/* ---- submission -------------------------------------------------------- */

/*
 * Submits the message.  Recipients the relay defers with 452 (too many
 * recipients) after it accepted some go in a further transaction, as RFC
 * 5321 3.3 intends.  Returns 0 if every recipient was accepted and the
 * message with them, else the status of the first failure (each failure
 * is reported on stderr).
 */
int
submit_message(const struct hostport *hp, const struct submit_job *job)
{
	struct sm_conn c;
	struct sm_reply r;
	struct sm_ext ext;
	struct buf data, params;
	size_t next = 0, delivered = 0;
	bool utf8 = has_8bit(job->sender, strlen(job->sender)) || job->msg->hdr_eightbit;
	int status = 0, rc;

	if (job->prog != NULL)
		submit_prog = job->prog;

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
		utf8 = has_8bit(job->rcpts->v[i], strlen(job->rcpts->v[i]));
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
		if (job->qid != NULL && job->qidlen > 0) {
			const char *q = strstr(r.text.p, "queued as ");

			if (q != NULL)
				snprintf(job->qid, job->qidlen, "%.*s", (int)strcspn(q + 10, " \t/"),
				    q + 10);
		}
		delivered += accepted;
	}
	if (!c.closed)
		(void)sm_command(&c, &r, "QUIT");
out:
	if (status != 0 && delivered > 0)
		sm_warn("the relay accepted the message for the other "
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

