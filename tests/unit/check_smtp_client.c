/*
 * check_smtp_client — the upstream dialogue, run over a socketpair against
 * a scripted peer on the same event loop (no network, no DNS): each
 * script is the dialogue an upstream holds, command by command, and the
 * test reads what the client sent and what it made of each reply.
 *
 * Covered: a whole pipelined delivery; EHLO read line by line (a bare SIZE
 * before STARTTLS or AUTH, keywords in the greeting text); reply lines at
 * and past 4096 octets; a 2xx to DATA; the command a 421 answered, at
 * every step; SIZE= on a reused session after RSET; per-recipient
 * outcomes; a refused MAIL under PIPELINING; AUTH PLAIN and LOGIN.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "delivery.h"
#include "smtp_client.h"
#include "suites.h"
#include "util.h"

/* One exchange: the command the peer expects (a prefix; "" an empty line;
 * NULL for the greeting, "." for the end of the text) and what it answers
 * ("\n" separates lines; NULL: it closes the connection instead). */
struct exch {
	const char	*expect;
	const char	*reply;
};

#define END_MARK "(end)"
#define END { END_MARK, NULL }	/* marks the end of a script */

struct peer {
	struct bufferevent	*bev;
	const struct exch	*script;
	size_t			 next;
	bool			 in_text;
	char			 cmds[64][512];	/* command lines received */
	bool			 piped[64];	/* more input was waiting behind it */
	size_t			 ncmds;
	char			 unexpected[600];
	size_t			 text_octets;
};

struct outcome {
	bool			 done;
	size_t			 n;
	struct dlv_status	 res[4];
	bool			 closed;
};

struct fixture {
	struct event_base	*base;
	struct smtp_client_env	 env;
	struct cfg_upstream	 up;
	struct peer		 peer;
	struct smtp_client	*c;
	struct outcome		 out;
	int			 textfd;
	struct smtp_client_msg	 m;
	const char		*rcpts[4];
};

static void
peer_write(struct peer *p, const char *reply)
{
	struct evbuffer *o = bufferevent_get_output(p->bev);
	const char *s = reply;

	while (*s != '\0') {
		size_t n = strcspn(s, "\n");

		evbuffer_add(o, s, n);
		evbuffer_add(o, "\r\n", 2);
		s += n + (s[n] == '\n');
	}
}

static void
peer_close(struct peer *p)
{
	if (p->bev != NULL) {
		bufferevent_free(p->bev);
		p->bev = NULL;
	}
}

/* Answers the line as the script says; false when the peer has closed. */
static bool
peer_line(struct peer *p, const char *line, bool more_waiting)
{
	const struct exch *e = &p->script[p->next];

	if (p->in_text) {
		if (strcmp(line, ".") != 0) {
			p->text_octets += strlen(line) + 2;
			return true;
		}
		p->in_text = false;
	}
	if (p->ncmds < 64) {
		snprintf(p->cmds[p->ncmds], sizeof(p->cmds[0]), "%s", line);
		p->piped[p->ncmds++] = more_waiting;
	}
	if (e->expect == NULL || strcmp(e->expect, END_MARK) == 0 ||
	    (e->expect[0] == '\0' ? line[0] != '\0' :
	    strncmp(line, e->expect, strlen(e->expect)) != 0)) {
		if (strcmp(line, "QUIT") == 0) {
			peer_write(p, "221 2.0.0 Bye");
			return true;
		}
		snprintf(p->unexpected, sizeof(p->unexpected), "step %zu: got \"%.200s\", expected "
		    "\"%s\"", p->next, line, e->expect ? e->expect : "(end)");
		peer_close(p);
		return false;
	}
	p->next++;
	if (e->reply == NULL) {
		peer_close(p);
		return false;
	}
	peer_write(p, e->reply);
	if (strcmp(e->expect, "DATA") == 0 && strncmp(e->reply, "354", 3) == 0)
		p->in_text = true;
	return true;
}

static void
peer_read_cb(struct bufferevent *bev, void *arg)
{
	struct peer *p = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
		bool ok = peer_line(p, line, evbuffer_get_length(in) > 0);

		free(line);
		if (!ok)
			return;
	}
}

static void
peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	peer_close(arg);
}

/* env->connect: one end for the client, the other for the peer, which
 * greets at once as the script's first step says. */
static evutil_socket_t
connect_pair(void *arg, const struct cfg_upstream *up)
{
	struct fixture *f = arg;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[1]);
	f->peer.bev = bufferevent_socket_new(f->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(f->peer.bev, peer_read_cb, NULL, peer_event_cb, &f->peer);
	bufferevent_enable(f->peer.bev, EV_READ | EV_WRITE);
	ck_assert_ptr_null(f->peer.script[0].expect);
	f->peer.next = 1;
	if (f->peer.script[0].reply != NULL)
		peer_write(&f->peer, f->peer.script[0].reply);
	return sv[0];
}

static void
result_cb(void *arg, struct smtp_client *c, const struct dlv_status *res, size_t n)
{
	struct outcome *o = arg;

	o->done = true;
	o->n = n;
	memcpy(o->res, res, n * sizeof(*res));
}

static void
closed_cb(void *arg, struct smtp_client *c)
{
	struct fixture *f = arg;

	f->out.closed = true;
	f->c = NULL;
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Runs the loop until the result came (and a little longer, for the
 * session to go idle or close), or 5 s passed. */
static void
run(struct fixture *f)
{
	struct event *t = evtimer_new(f->base, timeout_cb, f->base);
	struct timeval five = { 5, 0 };

	evtimer_add(t, &five);
	while (!f->out.done && event_base_loop(f->base, EVLOOP_ONCE) == 0 && evtimer_pending(t, NULL))
		;
	for (int i = 0; i < 5; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
	event_free(t);
	ck_assert_msg(f->out.done, "no result within 5 s; peer: %s", f->peer.unexpected);
}

static const char TEXT[] = "From: <a@example.com>\r\nSubject: t\r\n\r\nHello.\r\n.dot line\r\n";

/* A fixture for one script; rcpts: NULL-terminated, at most 4. */
static void
fixture_init(struct fixture *f, const struct exch *script, enum cfg_tls tls, enum cfg_auth auth)
{
	memset(f, 0, sizeof(*f));
	signal(SIGPIPE, SIG_IGN);	/* as in relayd: a peer gone is an error, not a signal */
	f->base = event_base_new();
	f->env.base = f->base;
	f->env.helo = "relay.test";
	f->env.idle_sec = 5;
	f->env.connect = connect_pair;
	f->env.connect_arg = f;
	f->up.name = "up";
	f->up.host = "peer.test";
	f->up.port = 25;
	f->up.tls = tls;
	f->up.auth = auth;
	f->up.username = "user";
	f->up.password = "pass";
	f->up.timeout = 5;
	f->peer.script = script;
	f->textfd = memfd_create("text", MFD_CLOEXEC);
	ck_assert_int_ge(f->textfd, 0);
	ck_assert_int_eq(write(f->textfd, TEXT, sizeof(TEXT) - 1), (ssize_t)sizeof(TEXT) - 1);
	f->rcpts[0] = "r1@example.net";
	f->m.id = "TESTID";
	f->m.sender = "a@example.com";
	f->m.rcpts = f->rcpts;
	f->m.nrcpt = 1;
	f->m.fd = f->textfd;
	f->m.off = 0;
	f->m.len = sizeof(TEXT) - 1;
	f->c = smtp_client_new(&f->env, &f->up, NULL, closed_cb, f);
}

static void
deliver(struct fixture *f)
{
	memset(&f->out, 0, sizeof(f->out));
	smtp_client_deliver(f->c, &f->m, result_cb, &f->out);
	run(f);
}

static void
fixture_free(struct fixture *f)
{
	if (f->c != NULL)
		smtp_client_abort(f->c);
	smtp_client_abort_all(&f->env);
	peer_close(&f->peer);
	close(f->textfd);
	event_base_free(f->base);
}

/* The index of the first command starting with prefix, or -1. */
static int
cmd_index(const struct peer *p, const char *prefix)
{
	for (size_t i = 0; i < p->ncmds; i++)
		if (strncmp(p->cmds[i], prefix, strlen(prefix)) == 0)
			return (int)i;
	return -1;
}

#define EHLO_PIPE "250-peer.test\n250-PIPELINING\n250-8BITMIME\n250 ENHANCEDSTATUSCODES"

START_TEST(test_pipelined_delivery)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO relay.test", EHLO_PIPE },
		{ "MAIL FROM:<a@example.com>", "250 2.1.0 Ok" },
		{ "RCPT TO:<r1@example.net>", "250 2.1.5 Ok" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 Ok: queued as UP1" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	deliver(&f);
	ck_assert_str_eq(f.peer.unexpected, "");
	ck_assert_int_eq(f.out.res[0].fate, DLV_SENT);
	ck_assert_str_eq(f.out.res[0].dsn, "2.0.0");
	ck_assert_str_eq(f.out.res[0].reason, "250 2.0.0 Ok: queued as UP1");
	/* MAIL, RCPT and DATA went in one go */
	ck_assert(f.peer.piped[cmd_index(&f.peer, "MAIL")]);
	ck_assert(f.peer.piped[cmd_index(&f.peer, "RCPT")]);
	/* the text arrived whole, dot-stuffed (".dot line" went as "..dot line") */
	ck_assert_uint_eq(f.peer.text_octets, sizeof(TEXT) - 1 + 1);
	ck_assert(smtp_client_idle(f.c));
	fixture_free(&f);
}
END_TEST

START_TEST(test_greeting_words_are_not_extensions)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250-peer.test PIPELINING STARTTLS\n250 8BITMIME" },
		{ "MAIL FROM:<a@example.com>", "250 2.1.0 Ok" },
		{ "RCPT TO:", "250 2.1.5 Ok" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 Ok" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_SENT);
	/* no PIPELINING: MAIL waited for its reply */
	ck_assert(!f.peer.piped[cmd_index(&f.peer, "MAIL")]);
	fixture_free(&f);
}
END_TEST

START_TEST(test_bare_size_then_starttls)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250-peer.test\n250-SIZE\n250 STARTTLS" },
		{ "STARTTLS", "454 4.7.0 TLS not available right now" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_STARTTLS, CFG_AUTH_NONE);
	deliver(&f);
	ck_assert_msg(cmd_index(&f.peer, "STARTTLS") >= 0, "STARTTLS not sent: %s",
	    f.out.res[0].reason);
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert_str_eq(f.out.res[0].dsn, "4.7.0");
	ck_assert_ptr_nonnull(strstr(f.out.res[0].reason, "(in reply to STARTTLS command)"));
	ck_assert(f.out.closed);
	fixture_free(&f);
}
END_TEST

START_TEST(test_bare_size_then_auth_plain)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250-peer.test\n250-SIZE\n250 AUTH PLAIN" },
		/* base64("\0user\0pass") */
		{ "AUTH PLAIN AHVzZXIAcGFzcw==", "235 2.7.0 Authenticated" },
		{ "MAIL FROM:<a@example.com> SIZE=", "250 2.1.0 Ok" },
		{ "RCPT TO:", "250 2.1.5 Ok" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 Ok" },
		END,
	};
	struct fixture f;
	char want[64];

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_PLAIN);
	deliver(&f);
	ck_assert_str_eq(f.peer.unexpected, "");
	ck_assert_int_eq(f.out.res[0].fate, DLV_SENT);
	snprintf(want, sizeof(want), "MAIL FROM:<a@example.com> SIZE=%zu", sizeof(TEXT) - 1);
	ck_assert_str_eq(f.peer.cmds[cmd_index(&f.peer, "MAIL")], want);
	fixture_free(&f);
}
END_TEST

START_TEST(test_auth_login)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250-peer.test\n250 AUTH LOGIN PLAIN" },
		{ "AUTH LOGIN", "334 VXNlcm5hbWU6" },
		{ "dXNlcg==", "334 UGFzc3dvcmQ6" },
		{ "cGFzcw==", "535 5.7.8 Authentication credentials invalid" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_LOGIN);
	deliver(&f);
	ck_assert_str_eq(f.peer.unexpected, "");
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert_str_eq(f.out.res[0].dsn, "4.7.8");
	ck_assert(f.out.res[0].config_problem);
	ck_assert_str_eq(f.out.res[0].reason,
	    "authentication failed: 535 5.7.8 Authentication credentials invalid");
	fixture_free(&f);
}
END_TEST

START_TEST(test_auth_xoauth2)
{
	/* base64("user=user\1auth=Bearer tok-1\1\1") */
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250-peer.test\n250 AUTH LOGIN XOAUTH2" },
		{ "AUTH XOAUTH2 dXNlcj11c2VyAWF1dGg9QmVhcmVyIHRvay0xAQE=",
		    "334 eyJzdGF0dXMiOiI0MDEifQ==" },
		{ "", "535 5.7.3 Authentication unsuccessful" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_XOAUTH2);
	f.m.token = "tok-1";
	deliver(&f);
	ck_assert_str_eq(f.peer.unexpected, "");
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert(f.out.res[0].auth_refused);
	ck_assert(f.out.res[0].config_problem);
	ck_assert_str_eq(f.out.res[0].dsn, "4.7.3");
	ck_assert_ptr_nonnull(strstr(f.out.res[0].reason, "SMTP.SendAsApp"));
	fixture_free(&f);
}
END_TEST

START_TEST(test_auth_not_offered)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250-peer.test\n250-AUTH CRAM-MD5\n250 PIPELINING" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_PLAIN);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert(f.out.res[0].config_problem);
	ck_assert_ptr_nonnull(strstr(f.out.res[0].reason,
	    "does not offer AUTH PLAIN (offers: CRAM-MD5)"));
	fixture_free(&f);
}
END_TEST

/* A MAIL reply line of n octets: "451 4.3.0 xxxx..." */
static void
long_line_case(size_t n, const char *dsn, const char *reason_part)
{
	char *line = malloc(n + 1);
	struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250 peer.test" },
		{ "MAIL", line },
		END,
	};
	struct fixture f;

	memset(line, 'x', n);
	memcpy(line, "451 4.3.0 ", 10);
	line[n] = '\0';
	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert_str_eq(f.out.res[0].dsn, dsn);
	ck_assert_msg(strstr(f.out.res[0].reason, reason_part) != NULL, "%zu: %s", n,
	    f.out.res[0].reason);
	fixture_free(&f);
	free(line);
}

START_TEST(test_reply_line_lengths)
{
	/* up to the limit: the reply itself (cut to fit the reason) */
	long_line_case(4095, "4.3.0", "451 4.3.0 xxxx");
	long_line_case(4096, "4.3.0", "451 4.3.0 xxxx");
	/* past it: a protocol error, nothing stored */
	long_line_case(4097, "4.5.0", "reply line longer than 4096 octets");
	long_line_case(100000, "4.5.0", "reply line longer than 4096 octets");
}
END_TEST

START_TEST(test_2xx_to_data)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", EHLO_PIPE },
		{ "MAIL", "250 2.1.0 Ok" },
		{ "RCPT", "250 2.1.5 Ok" },
		{ "DATA", "250 2.0.0 Ok" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert_str_eq(f.out.res[0].dsn, "4.5.0");
	ck_assert_str_eq(f.out.res[0].reason,
	    "peer.test[test]:25 said: 250 2.0.0 Ok (in reply to DATA command)");
	/* no text went, and the session is not used again */
	ck_assert_uint_eq(f.peer.text_octets, 0);
	ck_assert(f.out.closed);
	fixture_free(&f);
}
END_TEST

/* 421 answering each command names that command. */
START_TEST(test_421_names_the_command)
{
	static const struct {
		const char	*at;
		const char	*named;
	} cases[] = {
		{ "EHLO", "EHLO" }, { "MAIL", "MAIL FROM" }, { "RCPT", "RCPT TO" },
		{ "DATA", "DATA" }, { ".", "end of DATA" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct exch s[8] = {
			{ NULL, "220 peer.test ESMTP" },
			{ "EHLO", "250 peer.test" },
			{ "MAIL", "250 2.1.0 Ok" },
			{ "RCPT", "250 2.1.5 Ok" },
			{ "DATA", "354 go" },
			{ ".", "250 2.0.0 Ok" },
			END,
		};
		struct fixture f;
		char want[128];

		for (size_t k = 1; strcmp(s[k].expect, END_MARK) != 0; k++)
			if (strcmp(s[k].expect, cases[i].at) == 0)
				s[k].reply = "421 4.4.5 Too busy";
		fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
		deliver(&f);
		snprintf(want, sizeof(want), "said: 421 4.4.5 Too busy (in reply to %s command)",
		    cases[i].named);
		ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
		ck_assert_msg(strstr(f.out.res[0].reason, want) != NULL, "421 to %s: %s",
		    cases[i].at, f.out.res[0].reason);
		ck_assert(f.out.closed);
		fixture_free(&f);
	}
}
END_TEST

/* A reused session without PIPELINING: RSET, then MAIL with SIZE= that
 * counts the signature fields kept apart, as on the first message; and a
 * 421 to RSET is named as such. */
START_TEST(test_size_after_rset)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "250-peer.test\n250 SIZE 1000000" },
		{ "MAIL", "250 2.1.0 Ok" },
		{ "RCPT", "250 2.1.5 Ok" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 Ok" },
		{ "RSET", "250 2.0.0 Ok" },
		{ "MAIL", "250 2.1.0 Ok" },
		{ "RCPT", "250 2.1.5 Ok" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 Ok" },
		{ "RSET", "421 4.3.2 Shutting down" },
		END,
	};
	static const char head[] = "DKIM-Signature: v=1; a=rsa-sha256; b=abc\r\n";
	struct fixture f;
	char want[64];

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	f.m.head = head;
	f.m.headlen = sizeof(head) - 1;
	snprintf(want, sizeof(want), "MAIL FROM:<a@example.com> SIZE=%zu",
	    sizeof(head) - 1 + sizeof(TEXT) - 1);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_SENT);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_SENT);
	ck_assert_str_eq(f.peer.unexpected, "");
	int first = cmd_index(&f.peer, "MAIL"), rset = cmd_index(&f.peer, "RSET");

	ck_assert_int_gt(rset, first);
	ck_assert_str_eq(f.peer.cmds[first], want);
	ck_assert_str_eq(f.peer.cmds[rset + 1], want);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert_ptr_nonnull(strstr(f.out.res[0].reason, "(in reply to RSET command)"));
	fixture_free(&f);
}
END_TEST

START_TEST(test_recipients_each_their_fate)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", EHLO_PIPE },
		{ "MAIL", "250 2.1.0 Ok" },
		{ "RCPT TO:<r1@", "550 5.1.1 No such user" },
		{ "RCPT TO:<r2@", "250 2.1.5 Ok" },
		{ "RCPT TO:<r3@", "452 4.2.2 Mailbox full" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 Ok" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	f.rcpts[1] = "r2@example.net";
	f.rcpts[2] = "r3@example.net";
	f.m.nrcpt = 3;
	deliver(&f);
	ck_assert_uint_eq(f.out.n, 3);
	ck_assert_int_eq(f.out.res[0].fate, DLV_BOUNCE);
	ck_assert_str_eq(f.out.res[0].dsn, "5.1.1");
	ck_assert_ptr_nonnull(strstr(f.out.res[0].reason, "(in reply to RCPT TO command)"));
	ck_assert_int_eq(f.out.res[1].fate, DLV_SENT);
	ck_assert_int_eq(f.out.res[2].fate, DLV_DEFER);
	ck_assert_str_eq(f.out.res[2].dsn, "4.2.2");
	fixture_free(&f);
}
END_TEST

START_TEST(test_mail_refused_pipelined)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", EHLO_PIPE },
		{ "MAIL", "553 5.1.8 Sender rejected" },
		{ "RCPT", "503 5.5.1 Need MAIL first" },
		{ "DATA", "503 5.5.1 Need RCPT first" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_BOUNCE);
	ck_assert_str_eq(f.out.res[0].dsn, "5.1.8");
	ck_assert_ptr_nonnull(strstr(f.out.res[0].reason,
	    "553 5.1.8 Sender rejected (in reply to MAIL FROM command)"));
	/* the session is still good for the next message */
	ck_assert(smtp_client_idle(f.c));
	fixture_free(&f);
}
END_TEST

START_TEST(test_helo_fallback)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", "502 5.5.2 What?" },
		{ "HELO relay.test", "250 peer.test" },
		{ "MAIL FROM:<a@example.com>", "250 2.1.0 Ok" },
		{ "RCPT", "250 2.1.5 Ok" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 Ok" },
		END,
	};
	struct fixture f;

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	f.m.eightbit = true;	/* no BODY= either: HELO offers nothing */
	deliver(&f);
	ck_assert_str_eq(f.peer.unexpected, "");
	ck_assert_int_eq(f.out.res[0].fate, DLV_SENT);
	ck_assert_str_eq(f.peer.cmds[cmd_index(&f.peer, "MAIL")], "MAIL FROM:<a@example.com>");
	fixture_free(&f);
}
END_TEST

/* A reply while the text is still going out answers nothing relayd sent. */
START_TEST(test_reply_nobody_asked_for)
{
	static const struct exch s[] = {
		{ NULL, "220 peer.test ESMTP" },
		{ "EHLO", EHLO_PIPE },
		{ "MAIL", "250 2.1.0 Ok" },
		{ "RCPT", "250 2.1.5 Ok" },
		{ "DATA", "354 go\n250 2.0.0 too early" },
		END,
	};
	struct fixture f;
	static char big[200 * 1024];

	fixture_init(&f, s, CFG_TLS_NONE, CFG_AUTH_NONE);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = i % 64 == 63 ? '\n' : i % 64 == 62 ? '\r' : 'a';
	ck_assert_int_eq(ftruncate(f.textfd, 0), 0);
	ck_assert_int_eq(pwrite(f.textfd, big, sizeof(big), 0), (ssize_t)sizeof(big));
	f.m.len = sizeof(big);
	deliver(&f);
	ck_assert_int_eq(f.out.res[0].fate, DLV_DEFER);
	ck_assert_str_eq(f.out.res[0].dsn, "4.5.0");
	ck_assert_msg(strstr(f.out.res[0].reason, "sent a reply nobody asked for: 250 2.0.0 too "
	    "early") != NULL, "%s", f.out.res[0].reason);
	fixture_free(&f);
}
END_TEST

Suite *
smtp_client_suite(void)
{
	Suite *s = suite_create("smtp_client");
	TCase *tc = tcase_create("dialogue");

	tcase_add_test(tc, test_pipelined_delivery);
	tcase_add_test(tc, test_greeting_words_are_not_extensions);
	tcase_add_test(tc, test_bare_size_then_starttls);
	tcase_add_test(tc, test_bare_size_then_auth_plain);
	tcase_add_test(tc, test_auth_login);
	tcase_add_test(tc, test_auth_xoauth2);
	tcase_add_test(tc, test_auth_not_offered);
	tcase_add_test(tc, test_reply_line_lengths);
	tcase_add_test(tc, test_2xx_to_data);
	tcase_add_test(tc, test_421_names_the_command);
	tcase_add_test(tc, test_size_after_rset);
	tcase_add_test(tc, test_recipients_each_their_fate);
	tcase_add_test(tc, test_mail_refused_pipelined);
	tcase_add_test(tc, test_helo_fallback);
	tcase_add_test(tc, test_reply_nobody_asked_for);
	suite_add_tcase(s, tc);
	return s;
}
