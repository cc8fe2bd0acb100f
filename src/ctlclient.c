/*
 * ctlclient — relayctl's requests to the running daemon and the printing
 * of the answers.  Blocking I/O with timeouts: relayctl is a short-lived
 * command, not an event loop.
 */
#include "acconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctlclient.h"
#include "util.h"

#define ANSWER_MAX	(64u << 20)	/* a queue listing of a few hundred thousand mails */

/* Sends one request; reads the answer up to its "." line into ans.
 * Returns an exit status; prints why on stderr when not 0. */
static int
ctl_request(const char *sock, const char *req, int timeout_sec, struct buf *ans)
{
	struct sockaddr_un sa;
	struct timeval tv = { timeout_sec, 0 };
	int fd;

	buf_init(ans);
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "relayctl: control socket path %s is too long\n", sock);
		return CTL_EXIT_FAIL;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		if (e == ENOENT || e == ECONNREFUSED)
			fprintf(stderr, "relayctl: relayd is not running (no daemon answers on %s: "
			    "%s)\n", sock, strerror(e));
		else if (e == EACCES)
			fprintf(stderr, "relayctl: cannot reach relayd at %s: %s (run as root or as a "
			    "member of the relay user's group)\n", sock, strerror(e));
		else
			fprintf(stderr, "relayctl: cannot reach relayd at %s: %s\n", sock, strerror(e));
		if (fd >= 0)
			close(fd);
		return e == EACCES ? CTL_EXIT_FAIL : CTL_EXIT_UNAVAILABLE;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (write_full(fd, req, strlen(req)) < 0 || write_full(fd, "\n", 1) < 0) {
		fprintf(stderr, "relayctl: cannot send to relayd at %s: %s\n", sock, strerror(errno));
		close(fd);
		return CTL_EXIT_UNAVAILABLE;
	}
	for (;;) {
		char chunk[8192];
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			fprintf(stderr, "relayctl: no answer from relayd within %d s\n", timeout_sec);
			close(fd);
			return CTL_EXIT_TEMPFAIL;
		}
		if (n <= 0)
			break;
		buf_add(ans, chunk, (size_t)n);
		if (ans->len > ANSWER_MAX)
			break;
		if ((ans->len == 2 && memcmp(ans->p, ".\n", 2) == 0) ||
		    (ans->len >= 3 && memcmp(ans->p + ans->len - 3, "\n.\n", 3) == 0))
			break;
	}
	close(fd);
	if (!((ans->len == 2 && memcmp(ans->p, ".\n", 2) == 0) ||
	    (ans->len >= 3 && memcmp(ans->p + ans->len - 3, "\n.\n", 3) == 0))) {
		fprintf(stderr, "relayctl: relayd closed the connection before answering in full\n");
		return CTL_EXIT_TEMPFAIL;
	}
	return CTL_EXIT_OK;
}

/* Splits line into TAB-separated fields (in place); returns how many. */
static int
ctl_fields(char *line, char **f, int max)
{
	int n = 0;

	while (n < max) {
		f[n++] = line;
		char *t = strchr(line, '\t');
		if (t == NULL)
			break;
		*t = '\0';
		line = t + 1;
	}
	return n;
}

void
ctl_rfc3339(int64_t unix_sec, char *out, size_t outlen)
{
	time_t t = (time_t)unix_sec;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
ctl_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (*p < 0x20) {
				fprintf(out, "\\u%04x", *p);
			} else if (*p < 0x80) {
				fputc(*p, out);
			} else {
				/* UTF-8 passes as it is; other octets (an
				 * upstream's reply may hold any) as the text
				 * \xHH, as check-dns writes them */
				uint32_t cp;
				size_t l = utf8_char(p, strnlen((const char *)p, 4), &cp);

				if (l == 0)
					fprintf(out, "\\\\x%02x", *p);
				else
					fwrite(p, 1, l, out);
				p += l > 0 ? l - 1 : 0;
			}
		}
	}
	fputc('"', out);
}

/* ---- queue ------------------------------------------------------------ */

struct qrcpt {
	char	*addr, *status, *dsn, *err;
	long	 attempts;
	int64_t	 next;
};

struct qmsg {
	char		*id, *sender;
	int64_t		 arrival_us;
	unsigned long long size;
	bool		 active;
	int64_t		 due;
	struct qrcpt	*r;
	size_t		 nr;
};

static int
qmsg_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qmsg *)a)->id, ((const struct qmsg *)b)->id);
}

static void
fmt_age(int64_t sec, char *out, size_t outlen)
{
	if (sec < 0)
		sec = 0;
	if (sec < 60)
		snprintf(out, outlen, "%llds", (long long)sec);
	else if (sec < 3600)
		snprintf(out, outlen, "%lldm%02llds", (long long)sec / 60, (long long)sec % 60);
	else if (sec < 86400)
		snprintf(out, outlen, "%lldh%02lldm", (long long)sec / 3600,
		    (long long)(sec % 3600) / 60);
	else
		snprintf(out, outlen, "%lldd%02lldh", (long long)sec / 86400,
		    (long long)(sec % 86400) / 3600);
}

int
ctl_queue_print(char *ans, bool json, int64_t now, FILE *out)
{
	struct qmsg *m = NULL;
	size_t n = 0;
	int rc = CTL_EXIT_OK;

	for (char *line = ans, *nl; line && *line; line = nl) {
		char *f[8];
		int nf;

		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		nf = ctl_fields(line, f, 8);
		if (nf == 7 && strcmp(f[0], "M") == 0) {
			m = xrealloc(m, (n + 1) * sizeof(*m));
			memset(&m[n], 0, sizeof(*m));
			m[n].id = f[1];
			m[n].arrival_us = strtoll(f[2], NULL, 10);
			m[n].size = strtoull(f[3], NULL, 10);
			m[n].sender = f[4];
			m[n].active = f[5][0] == '1';
			m[n].due = strtoll(f[6], NULL, 10);
			n++;
		} else if (nf == 7 && strcmp(f[0], "R") == 0 && n > 0) {
			struct qmsg *q = &m[n - 1];

			q->r = xrealloc(q->r, (q->nr + 1) * sizeof(*q->r));
			q->r[q->nr].addr = f[1];
			q->r[q->nr].status = f[2];
			q->r[q->nr].attempts = strtol(f[3], NULL, 10);
			q->r[q->nr].next = strtoll(f[4], NULL, 10);
			q->r[q->nr].dsn = f[5];
			q->r[q->nr].err = f[6];
			q->nr++;
		} else if (nf >= 2 && strcmp(f[0], "error") == 0) {
			fprintf(stderr, "relayctl queue: %s\n", f[1]);
			rc = CTL_EXIT_FAIL;
		}
	}
	if (n > 0)
		qsort(m, n, sizeof(*m), qmsg_cmp);

	char t[64];

	if (json) {
		fputs("[", out);
		for (size_t i = 0; i < n; i++) {
			fputs(i ? ",\n " : "\n ", out);
			fputs("{\"id\": ", out);
			ctl_json_string(out, m[i].id);
			ctl_rfc3339(m[i].arrival_us / 1000000, t, sizeof(t));
			fputs(", \"arrival\": ", out);
			ctl_json_string(out, t);
			fprintf(out, ", \"size\": %llu, \"sender\": ", m[i].size);
			ctl_json_string(out, m[i].sender);
			fputs(", \"recipients\": [", out);
			size_t k = 0;
			for (size_t j = 0; j < m[i].nr; j++) {
				const struct qrcpt *r = &m[i].r[j];

				if (strcmp(r->status, "pending") != 0)
					continue;	/* delivered or bounced already */
				fputs(k++ ? ", {\"address\": " : "{\"address\": ", out);
				ctl_json_string(out, r->addr);
				fprintf(out, ", \"attempts\": %ld, \"next_attempt\": ", r->attempts);
				if (m[i].active) {
					fputs("null", out);	/* being attempted right now */
				} else {
					ctl_rfc3339(r->next > now ? r->next : now, t, sizeof(t));
					ctl_json_string(out, t);
				}
				fputs(", \"last_error\": ", out);
				if (r->err[0])
					ctl_json_string(out, r->err);
				else
					fputs("null", out);
				fputs("}", out);
			}
			fputs("]}", out);
		}
		fputs(n ? "\n]\n" : "]\n", out);
	} else if (n == 0) {
		fputs("Mail queue is empty\n", out);
	} else {
		uint64_t total = 0;

		fprintf(out, "%-12s %-8s %9s  %s\n", "ID", "Age", "Size", "Sender / recipients");
		for (size_t i = 0; i < n; i++) {
			char age[32];

			fmt_age(now - m[i].arrival_us / 1000000, age, sizeof(age));
			fprintf(out, "%-12s %-8s %9llu  <%s>%s\n", m[i].id, age, m[i].size, m[i].sender,
			    m[i].active ? "  (being delivered)" : "");
			total += m[i].size;
			for (size_t j = 0; j < m[i].nr; j++) {
				const struct qrcpt *r = &m[i].r[j];
				char when[48];

				if (strcmp(r->status, "pending") != 0)
					continue;
				if (m[i].active || r->next <= now)
					snprintf(when, sizeof(when), "now");
				else {
					char in[32];

					fmt_age(r->next - now, in, sizeof(in));
					snprintf(when, sizeof(when), "in %s", in);
				}
				fprintf(out, "%33s<%s>  attempts %ld, next %s\n", "", r->addr, r->attempts,
				    when);
				if (r->err[0])
					fprintf(out, "%35slast error: %s%s%s\n", "", r->dsn,
					    r->dsn[0] ? " " : "", r->err);
			}
		}
		fprintf(out, "-- %zu message%s, %llu bytes\n", n, n == 1 ? "" : "s",
		    (unsigned long long)total);
	}
	for (size_t i = 0; i < n; i++)
		free(m[i].r);
	free(m);
	return rc;
}

int
ctl_queue(const char *sock, bool json, FILE *out)
{
	struct buf ans;
	int rc = ctl_request(sock, "queue", 30, &ans);

	if (rc == 0)
		rc = ctl_queue_print(ans.p, json, (int64_t)time(NULL), out);
	buf_free(&ans);
	return rc;
}

/* ---- flush, remove, wait ---------------------------------------------- */

static char *
join_request(const char *cmd, int nids, char **ids)
{
	struct buf b;

	buf_init(&b);
	buf_addstr(&b, cmd);
	for (int i = 0; i < nids; i++) {
		/* ids go on one line: no separators or line ends inside */
		if (strpbrk(ids[i], " \t\r\n") != NULL || ids[i][0] == '\0') {
			buf_free(&b);
			return NULL;
		}
		buf_printf(&b, " %s", ids[i]);
	}
	return b.p ? b.p : xstrdup(cmd);
}

/* Sends req (freed here) and prints the answer with print(what, answer, out). */
static int
ctl_ask(const char *sock, char *req, int timeout_sec, int (*print)(const char *, char *, FILE *),
    const char *what, FILE *out)
{
	struct buf ans;
	int rc = ctl_request(sock, req, timeout_sec, &ans);

	free(req);
	if (rc == 0)
		rc = print(what, ans.p, out);
	buf_free(&ans);
	return rc;
}

static int
ctl_simple(const char *sock, const char *cmd, int nids, char **ids, FILE *out)
{
	char *req = join_request(cmd, nids, ids);

	if (req == NULL) {
		fprintf(stderr, "relayctl %s: a queue id has no spaces\n", cmd);
		return CTL_EXIT_FAIL;
	}
	return ctl_ask(sock, req, 30, ctl_simple_print, cmd, out);
}

int
ctl_simple_print(const char *cmd, char *ans, FILE *out)
{
	int rc = CTL_EXIT_OK;

	for (char *line = ans, *nl; line && *line; line = nl) {
		char *f[3];
		int nf;

		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		nf = ctl_fields(line, f, 3);
		if (strcmp(f[0], "error") == 0 && nf >= 2) {
			fprintf(stderr, "relayctl %s: %s\n", cmd, f[1]);
			rc = CTL_EXIT_FAIL;
		} else if (strcmp(f[0], "ok") == 0 && nf >= 2) {
			long k = strtol(f[1], NULL, 10);

			fprintf(out, "%ld message%s scheduled for delivery now\n", k, k == 1 ? "" : "s");
		} else if (strcmp(f[0], "removed") == 0 && nf >= 2) {
			fprintf(out, "%s: removed\n", f[1]);
		}
	}
	return rc;
}

int
ctl_flush(const char *sock, int nids, char **ids, FILE *out)
{
	return ctl_simple(sock, "flush", nids, ids, out);
}

int
ctl_remove(const char *sock, int nids, char **ids, FILE *out)
{
	return ctl_simple(sock, "remove", nids, ids, out);
}

int
ctl_wait(const char *sock, const char *id, int timeout_sec, FILE *out)
{
	char *req = join_request("wait", 1, (char **)&id);

	if (req == NULL)
		return CTL_EXIT_FAIL;
	return ctl_ask(sock, req, timeout_sec, ctl_wait_print, id, out);
}

int
ctl_wait_print(const char *id, char *ans, FILE *out)
{
	int rc = CTL_EXIT_OK, nsent = 0, nother = 0;

	for (char *line = ans, *nl; line && *line; line = nl) {
		char *f[5];
		int nf;

		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		nf = ctl_fields(line, f, 5);
		if (strcmp(f[0], "error") == 0 && nf >= 2) {
			fprintf(stderr, "relayctl: %s: %s\n", id, f[1]);
			rc = CTL_EXIT_FAIL;
		} else if (strcmp(f[0], "O") == 0 && nf == 5) {
			fprintf(out, "%s: to=<%s>, dsn=%s, status=%s (%s)\n", id, f[1], f[3], f[2], f[4]);
			if (strcmp(f[2], "sent") == 0)
				nsent++;
			else
				nother++;
		}
	}
	if (rc == 0 && (nother > 0 || nsent == 0))
		rc = CTL_EXIT_FAIL;
	return rc;
}
