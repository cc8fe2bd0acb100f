/*
 * check_sendmail — relayd-sendmail's pure logic: the command lines that
 * applications really use (PHP's mail(), Debian's cron, scripts), address
 * lists from headers for -t, the message as read from stdin (LF, CRLF, the
 * lone dot), the header fixes (Bcc: removal, From: added), dot-stuffing,
 * the exit statuses, and the configuration read without secrets.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "sendmail_opts.h"
#include "suites.h"

#define HOST "host.example"

/* ---- command line ----------------------------------------------------- */

/* Parses a NULL-terminated list of words after the program name. */
static int
parse(struct sendmail_opts *o, char *err, ...)
{
	static char *argv[32];	/* o->args points into it after return */
	int argc = 0;
	va_list ap;
	char *w;

	argv[argc++] = (char *)"/usr/sbin/sendmail";
	va_start(ap, err);
	while ((w = va_arg(ap, char *)) != NULL && argc < 31)
		argv[argc++] = w;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return sendmail_parse_args(argc, argv, o, err, 256);
}

START_TEST(test_opts_php)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-t", "-i", NULL), 0);
	ck_assert(o.extract);
	ck_assert(o.ignore_dots);
	ck_assert(!o.verbose);
	ck_assert_ptr_null(o.sender);
	ck_assert_ptr_null(o.fullname);
	ck_assert_ptr_null(o.config);
	ck_assert_uint_eq(o.nargs, 0);
}
END_TEST

START_TEST(test_opts_oi_t)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-oi", "-t", NULL), 0);
	ck_assert(o.extract && o.ignore_dots);
	ck_assert_int_eq(parse(&o, err, "-ti", NULL), 0);
	ck_assert(o.extract && o.ignore_dots);
	ck_assert_int_eq(parse(&o, err, "-t", NULL), 0);
	ck_assert(o.extract && !o.ignore_dots);
}
END_TEST

START_TEST(test_opts_sender)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-f", "app@example.com", "r@example.net", NULL), 0);
	ck_assert_str_eq(o.sender, "app@example.com");
	ck_assert_uint_eq(o.nargs, 1);
	ck_assert_str_eq(o.args[0], "r@example.net");

	ck_assert_int_eq(parse(&o, err, "-fapp@example.com", "r@example.net", NULL), 0);
	ck_assert_str_eq(o.sender, "app@example.com");
	ck_assert_uint_eq(o.nargs, 1);

	ck_assert_int_eq(parse(&o, err, "-r", "bounce@example.com", NULL), 0);
	ck_assert_str_eq(o.sender, "bounce@example.com");

	ck_assert_int_eq(parse(&o, err, "-f", "", "r@x.org", NULL), 0);
	ck_assert_str_eq(o.sender, "");
	ck_assert_uint_eq(o.nargs, 1);

	/* flags then a value-taking option in one word: its value is the next */
	ck_assert_int_eq(parse(&o, err, "-tif", "s@example.com", "r@example.net", NULL), 0);
	ck_assert(o.extract && o.ignore_dots);
	ck_assert_str_eq(o.sender, "s@example.com");
	ck_assert_uint_eq(o.nargs, 1);
	ck_assert_str_eq(o.args[0], "r@example.net");
}
END_TEST

START_TEST(test_opts_fullname_config)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-F", "John Doe", "-C", "/etc/other.conf",
	    "-v", "r@x.org", NULL), 0);
	ck_assert_str_eq(o.fullname, "John Doe");
	ck_assert_str_eq(o.config, "/etc/other.conf");
	ck_assert(o.verbose);
	ck_assert_uint_eq(o.nargs, 1);

	ck_assert_int_eq(parse(&o, err, "-FJane", "-C/tmp/r.conf", "r@x.org", NULL), 0);
	ck_assert_str_eq(o.fullname, "Jane");
	ck_assert_str_eq(o.config, "/tmp/r.conf");
}
END_TEST

/* What Debian's cron runs: /usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem root */
START_TEST(test_opts_cron)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-FCronDaemon", "-i", "-B8BITMIME", "-oem",
	    "root", NULL), 0);
	ck_assert_str_eq(o.fullname, "CronDaemon");
	ck_assert(o.ignore_dots);
	ck_assert(!o.extract);
	ck_assert_uint_eq(o.nargs, 1);
	ck_assert_str_eq(o.args[0], "root");
}
END_TEST

START_TEST(test_opts_ignored)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-oem", "-odb", "-oQ/var/spool", "-om", "-o7",
	    "-bm", "-N", "never", "-R", "hdrs", "-V", "envid1", "-h", "5", "-L", "lab",
	    "-O", "DeliveryMode=b", "-X", "/tmp/log", "-U", "-m", "-n", "-G", "-B", "7BIT",
	    "r@x.org", NULL), 0);
	ck_assert(!o.ignore_dots);
	ck_assert(!o.extract);
	ck_assert_ptr_null(o.sender);
	ck_assert_uint_eq(o.nargs, 1);
	ck_assert_str_eq(o.args[0], "r@x.org");
}
END_TEST

START_TEST(test_opts_recipients_end_options)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-t", "--", "-odd@x.org", "b@x.org", NULL), 0);
	ck_assert(o.extract);
	ck_assert_uint_eq(o.nargs, 2);
	ck_assert_str_eq(o.args[0], "-odd@x.org");
	ck_assert_str_eq(o.args[1], "b@x.org");

	/* options end at the first recipient */
	ck_assert_int_eq(parse(&o, err, "a@x.org", "-t", NULL), 0);
	ck_assert(!o.extract);
	ck_assert_uint_eq(o.nargs, 2);
	ck_assert_str_eq(o.args[1], "-t");
}
END_TEST

START_TEST(test_opts_errors)
{
	struct sendmail_opts o;
	char err[256];

	ck_assert_int_eq(parse(&o, err, "-f", NULL), -1);
	ck_assert_str_eq(err, "option -f needs a value");
	ck_assert_int_eq(parse(&o, err, "-t", "-F", NULL), -1);
	ck_assert_str_eq(err, "option -F needs a value");
	ck_assert_int_eq(parse(&o, err, "-Z", NULL), -1);
	ck_assert_str_eq(err, "unknown option -Z");
	ck_assert_int_eq(parse(&o, err, "-tZ", NULL), -1);
	ck_assert_str_eq(err, "unknown option -Z");
	ck_assert_int_eq(parse(&o, err, "-bs", NULL), -1);
	ck_assert_msg(strstr(err, "-bs") != NULL, "%s", err);
	ck_assert_int_eq(parse(&o, err, "-bp", NULL), -1);
	ck_assert_msg(strstr(err, "relayctl queue") != NULL, "%s", err);
	ck_assert_int_eq(parse(&o, err, "-q", NULL), -1);
	ck_assert_int_eq(parse(&o, err, "-bi", NULL), -1);
}
END_TEST

/* ---- address lists --------------------------------------------------- */

/* Parses s; returns the addresses joined by '|', or "ERR: reason". */
static char *
addrs(const char *s)
{
	struct sendmail_rcpts r;
	struct buf out;
	char err[256];
	int rc;

	sendmail_rcpts_init(&r);
	buf_init(&out);
	rc = sendmail_parse_addrlist(s, strlen(s), HOST, &r, err, sizeof(err));
	if (rc == -1) {
		buf_printf(&out, "ERR: %s", err);
	} else {
		ck_assert_int_ge(rc, (int)r.n);	/* duplicates are read, not added */
		for (size_t i = 0; i < r.n; i++)
			buf_printf(&out, "%s%s", i > 0 ? "|" : "", r.v[i]);
		if (out.len == 0)
			buf_addstr(&out, "");
	}
	sendmail_rcpts_free(&r);
	return out.p != NULL ? out.p : xstrdup("");
}

#define ADDRS_EQ(in, want) do {						\
	char *got_ = addrs(in);						\
	ck_assert_msg(strcmp(got_, (want)) == 0,			\
	    "addrlist %s: got \"%s\", want \"%s\"", #in, got_, (want));	\
	free(got_);							\
} while (0)

#define ADDRS_ERR(in, reason) do {					\
	char *got_ = addrs(in);						\
	ck_assert_msg(strncmp(got_, "ERR: ", 5) == 0 &&			\
	    strstr(got_, (reason)) != NULL,				\
	    "addrlist %s: got \"%s\", want an error with \"%s\"",	\
	    #in, got_, (reason));					\
	free(got_);							\
} while (0)

START_TEST(test_addr_plain_lists)
{
	ADDRS_EQ("a@x.com", "a@x.com");
	ADDRS_EQ(" a@x.com , b@y.org ", "a@x.com|b@y.org");
	ADDRS_EQ("<a@x.com>", "a@x.com");
	ADDRS_EQ("a@x.com,, ,b@x.com,", "a@x.com|b@x.com");
	ADDRS_EQ("a@x.com; b@x.com", "a@x.com|b@x.com");
	ADDRS_EQ("", "");
	ADDRS_EQ("   ", "");
	/* duplicates (ASCII case aside) are sent once */
	ADDRS_EQ("A@x.com, a@x.com, Ann <a@X.com>", "A@x.com");
}
END_TEST

START_TEST(test_addr_display_names)
{
	ADDRS_EQ("\"Doe, John\" <john@x.com>, Ann <ann@y.org>", "john@x.com|ann@y.org");
	ADDRS_EQ("Mary Smith <mary@x.net>", "mary@x.net");
	ADDRS_EQ("\"<not@this.one>, really\" <real@x.net>", "real@x.net");
	ADDRS_EQ("=?UTF-8?B?SsO4cmFu?= <joran@x.no>", "joran@x.no");
	ADDRS_EQ("Jøran Ås <jøran@eksempel.no>", "jøran@eksempel.no");
	ADDRS_EQ("\"quote \\\" inside, yes\" <q@x.org>, r@x.org", "q@x.org|r@x.org");
	/* an address used as the display name */
	ADDRS_EQ("john@x.com <john@x.com>", "john@x.com");
}
END_TEST

START_TEST(test_addr_comments)
{
	ADDRS_EQ("a@x.com (Alice, the (real) one), b@x.com", "a@x.com|b@x.com");
	ADDRS_EQ("(lead) <a@x.com> (trail)", "a@x.com");
	ADDRS_EQ("<a(inner)@x.com>", "a@x.com");
	ADDRS_ERR("a@x.com (unclosed", "unbalanced '('");
}
END_TEST

START_TEST(test_addr_groups)
{
	ADDRS_EQ("undisclosed-recipients:;", "");
	ADDRS_EQ("undisclosed-recipients: ;", "");
	ADDRS_EQ("team: a@x.com, \"B, b\" <b@x.com>; c@x.com", "a@x.com|b@x.com|c@x.com");
	ADDRS_EQ("Friends: ;, d@x.com", "d@x.com");
	ADDRS_EQ("\"A group, quoted\": a@x.com;", "a@x.com");
}
END_TEST

START_TEST(test_addr_folded)
{
	ADDRS_EQ(" a@x.com,\r\n\tb@x.com (Bee)\r\n , \"Long\r\n Name\" <c@x.com>",
	    "a@x.com|b@x.com|c@x.com");
	ADDRS_EQ("team:\r\n a@x.com,\r\n b@x.com\r\n ;", "a@x.com|b@x.com");
	ADDRS_EQ("a@x.com,\nb@x.com", "a@x.com|b@x.com");
}
END_TEST

START_TEST(test_addr_forms)
{
	/* unqualified: the host name, as Postfix's myorigin */
	ADDRS_EQ("root", "root@" HOST);
	ADDRS_EQ("root, www-data", "root@" HOST "|www-data@" HOST);
	ADDRS_EQ("Cron <root>", "root@" HOST);
	/* obsolete source route and spaces */
	ADDRS_EQ("<@r1.example,@r2.example:u@x.com>", "u@x.com");
	ADDRS_EQ("a . b @ x.com", "a.b@x.com");
	ADDRS_EQ("\"john doe\"@x.com", "\"john doe\"@x.com");
	ADDRS_EQ("u@[192.0.2.1]", "u@[192.0.2.1]");
}
END_TEST

START_TEST(test_addr_errors)
{
	ADDRS_ERR("John Doe", "\"John Doe\" is not an address");
	ADDRS_ERR("<a@x.com", "unbalanced '<'");
	ADDRS_ERR("a@x.com>", "unbalanced '>'");
	ADDRS_ERR("a@@x.com", "malformed address <a@@x.com>");
	ADDRS_ERR("post.bleken.no@", "malformed address");
	ADDRS_ERR("<a@x.com> <b@x.com>", "two <addresses>");
	ADDRS_ERR("<a@x.com> trailing", "text after <a@x.com>");
	ADDRS_ERR("\"unclosed@x.com", "unbalanced '\"'");
	ADDRS_ERR("a:b:c@x.com", "unexpected ':'");
}
END_TEST

START_TEST(test_sender)
{
	char err[256], *s;

	ck_assert_int_eq(sendmail_sender("", HOST, &s, err, sizeof(err)), 0);
	ck_assert_str_eq(s, "");
	free(s);
	ck_assert_int_eq(sendmail_sender("<>", HOST, &s, err, sizeof(err)), 0);
	ck_assert_str_eq(s, "");
	free(s);
	ck_assert_int_eq(sendmail_sender("<a@x.com>", HOST, &s, err, sizeof(err)), 0);
	ck_assert_str_eq(s, "a@x.com");
	free(s);
	ck_assert_int_eq(sendmail_sender("www-data", HOST, &s, err, sizeof(err)), 0);
	ck_assert_str_eq(s, "www-data@" HOST);
	free(s);
	ck_assert_int_eq(sendmail_sender("Web App <app@x.com>", HOST, &s, err, sizeof(err)), 0);
	ck_assert_str_eq(s, "app@x.com");
	free(s);
	ck_assert_int_eq(sendmail_sender("a@x.com, b@x.com", HOST, &s, err, sizeof(err)), -1);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, "not one address") != NULL, "%s", err);
	ck_assert_int_eq(sendmail_sender("bad@@x.com", HOST, &s, err, sizeof(err)), -1);
	ck_assert_ptr_null(s);
}
END_TEST

/* ---- input ------------------------------------------------------------- */

struct fed {
	char	*text;
	size_t	 consumed;
	bool	 done;
};

/* Feeds in whole, or in chunks of step bytes, then finishes. */
static struct fed
feed(const char *in, bool ignore_dots, size_t step)
{
	struct sendmail_input si;
	struct fed f;
	size_t n = strlen(in), pos = 0;

	sendmail_input_init(&si, ignore_dots);
	f.consumed = 0;
	while (pos < n && !si.done) {
		size_t k = step == 0 || n - pos < step ? n - pos : step;
		size_t c = sendmail_input_feed(&si, in + pos, k);

		ck_assert_uint_le(c, k);
		if (c < k)
			ck_assert(si.done);
		f.consumed += c;
		pos += k;
	}
	sendmail_input_finish(&si);
	f.done = si.done;
	f.text = xstrndup(si.text.p != NULL ? si.text.p : "", si.text.len);
	sendmail_input_free(&si);
	return f;
}

#define INPUT_EQ(in, dots, want, wantdone) do {				\
	for (size_t step_ = 0; step_ <= 3; step_++) {			\
		struct fed f_ = feed((in), (dots), step_);		\
		ck_assert_msg(strcmp(f_.text, (want)) == 0,		\
		    "input %s (step %zu): got \"%s\"", #in, step_, f_.text); \
		ck_assert_int_eq(f_.done, (wantdone));			\
		free(f_.text);						\
	}								\
} while (0)

START_TEST(test_input_line_ends)
{
	INPUT_EQ("a\nb\n", false, "a\r\nb\r\n", false);
	INPUT_EQ("a\r\nb\r\n", false, "a\r\nb\r\n", false);
	INPUT_EQ("a\nb", false, "a\r\nb\r\n", false);
	INPUT_EQ("a\r\nb\r", false, "a\r\nb\r\n", false);
	INPUT_EQ("\n\n", false, "\r\n\r\n", false);
	INPUT_EQ("", false, "", false);
	/*
	 * A CR alone ends a line, as relayd reads it: left in, relayd's
	 * DATA decoder took it for a line end after the dots were stuffed
	 * and the Bcc: fields removed (fuzz_sendmail: "..dots\r.dots" reached
	 * relayd as ".dots" and "dots").  The lone-dot rule stays the LF
	 * line's.
	 */
	INPUT_EQ("a\rb\n", false, "a\r\nb\r\n", false);
	INPUT_EQ("a\r\rb\r\r\n", false, "a\r\n\r\nb\r\n\r\n", false);
	INPUT_EQ("a\r.\r\nb\n", false, "a\r\n.\r\nb\r\n", false);
}
END_TEST

START_TEST(test_input_lone_dot)
{
	INPUT_EQ("a\n.\nb\n", false, "a\r\n", true);
	INPUT_EQ("a\r\n.\r\nb\r\n", false, "a\r\n", true);
	INPUT_EQ("a\n.", false, "a\r\n", true);	/* at EOF too */
	INPUT_EQ(".\n", false, "", true);
	INPUT_EQ("a\n..\n. \n.x\n", false, "a\r\n..\r\n. \r\n.x\r\n", false);
	/* with -i a dot is text */
	INPUT_EQ("a\n.\nb\n", true, "a\r\n.\r\nb\r\n", false);
	INPUT_EQ(".", true, ".\r\n", false);

	/* the input after the dot is not consumed */
	struct fed f = feed("a\n.\nleft over\n", false, 0);
	ck_assert_uint_eq(f.consumed, 4);
	free(f.text);
}
END_TEST

/* ---- building the message ------------------------------------------- */

struct built {
	int	 rc;
	char	*text;
	char	*rcpts;		/* joined by '|' */
	char	 err[256];
	size_t	 hdrlen;
	bool	 eightbit, hdr_eightbit;
};

static struct built
build(const char *in, const char *sender, const char *fullname, bool extract)
{
	struct sendmail_rcpts r;
	struct sendmail_msg m;
	struct built b;
	struct buf j;

	memset(&b, 0, sizeof(b));
	sendmail_rcpts_init(&r);
	buf_init(&j);
	b.rc = sendmail_msg_build(in, strlen(in), sender, fullname, HOST,
	    extract ? &r : NULL, &m, b.err, sizeof(b.err));
	if (b.rc == 0) {
		b.text = xstrndup(m.text.p, m.text.len);
		b.hdrlen = m.hdrlen;
		b.eightbit = m.eightbit;
		b.hdr_eightbit = m.hdr_eightbit;
		sendmail_msg_free(&m);
		/* the header section ends with the empty line, at hdrlen */
		ck_assert_uint_ge(b.hdrlen, 2);
		ck_assert_msg(memcmp(b.text + b.hdrlen - 2, "\r\n", 2) == 0 &&
		    (b.hdrlen == 2 || memcmp(b.text + b.hdrlen - 4, "\r\n\r\n", 4) == 0),
		    "no empty line at hdrlen %zu in %s", b.hdrlen, b.text);
	}
	for (size_t i = 0; i < r.n; i++)
		buf_printf(&j, "%s%s", i > 0 ? "|" : "", r.v[i]);
	b.rcpts = xstrdup(j.p != NULL ? j.p : "");
	buf_free(&j);
	sendmail_rcpts_free(&r);
	return b;
}

static void
built_free(struct built *b)
{
	free(b->text);
	free(b->rcpts);
}

START_TEST(test_msg_php_mail)
{
	/* what PHP's mail() pipes: no From:, Date: or Message-ID: */
	struct built b = build("To: a@x.com\r\nSubject: Order 17\r\n"
	    "Content-Type: text/plain; charset=UTF-8\r\n\r\nThanks.\r\n",
	    "www-data@" HOST, NULL, true);

	ck_assert_int_eq(b.rc, 0);
	ck_assert_str_eq(b.rcpts, "a@x.com");
	ck_assert_str_eq(b.text, "To: a@x.com\r\nSubject: Order 17\r\n"
	    "Content-Type: text/plain; charset=UTF-8\r\n"
	    "From: <www-data@" HOST ">\r\n\r\nThanks.\r\n");
	ck_assert(!b.eightbit);
	built_free(&b);
}
END_TEST

START_TEST(test_msg_bcc_removed)
{
	struct built b = build("To: a@x.com\r\nBcc: b@y.org,\r\n c@z.net\r\n"
	    "Cc: \"D, d\" <d@x.com>\r\nSubject: s\r\n\r\nbody\r\nBcc: in the body\r\n",
	    "s@x.com", NULL, true);

	ck_assert_int_eq(b.rc, 0);
	ck_assert_str_eq(b.rcpts, "a@x.com|b@y.org|c@z.net|d@x.com");
	ck_assert_str_eq(b.text, "To: a@x.com\r\nCc: \"D, d\" <d@x.com>\r\nSubject: s\r\n"
	    "From: <s@x.com>\r\n\r\nbody\r\nBcc: in the body\r\n");
	built_free(&b);

	/* also without -t: a Bcc: left in would show the blind copies */
	b = build("To: a@x.com\r\nBCC: b@y.org\r\nFrom: s@x.com\r\n\r\nx\r\n",
	    "s@x.com", NULL, false);
	ck_assert_int_eq(b.rc, 0);
	ck_assert_str_eq(b.rcpts, "");
	ck_assert_str_eq(b.text, "To: a@x.com\r\nFrom: s@x.com\r\n\r\nx\r\n");
	built_free(&b);
}
END_TEST

START_TEST(test_msg_header_names)
{
	/* case-insensitive names, and only To/Cc/Bcc give recipients */
	struct built b = build("TO: a@x.com\r\ncc : b@x.com\r\nReply-To: no@x.com\r\n"
	    "X-To: no2@x.com\r\nFrom: me@x.com\r\nSender: no3@x.com\r\n\r\n",
	    "me@x.com", NULL, true);

	ck_assert_int_eq(b.rc, 0);
	ck_assert_str_eq(b.rcpts, "a@x.com|b@x.com");
	built_free(&b);

	/* a resent message goes to its Resent- recipients only */
	b = build("To: old@x.com\r\nResent-To: new@x.com\r\nResent-Bcc: hidden@x.com\r\n"
	    "From: a@x.com\r\n\r\nbody\r\n", "a@x.com", NULL, true);
	ck_assert_int_eq(b.rc, 0);
	ck_assert_str_eq(b.rcpts, "new@x.com|hidden@x.com");
	ck_assert_ptr_null(strstr(b.text, "hidden"));
	built_free(&b);

	b = build("To: undisclosed-recipients:;\r\nFrom: a@x.com\r\n\r\n", "a@x.com",
	    NULL, true);
	ck_assert_int_eq(b.rc, 0);
	ck_assert_str_eq(b.rcpts, "");
	built_free(&b);
}
END_TEST

START_TEST(test_msg_bad_header_address)
{
	struct built b = build("To: a@x.com\r\nCc: John Doe\r\n\r\n", "s@x.com", NULL, true);

	ck_assert_int_eq(b.rc, -1);
	ck_assert_msg(strstr(b.err, "Cc: header: \"John Doe\" is not an address") != NULL,
	    "%s", b.err);
	built_free(&b);

	/* without -t the header's addresses are not read */
	b = build("To: a@x.com\r\nCc: John Doe\r\n\r\n", "s@x.com", NULL, false);
	ck_assert_int_eq(b.rc, 0);
	built_free(&b);
}
END_TEST

START_TEST(test_msg_from_added)
{
	struct built b = build("Subject: x\r\n\r\nb\r\n", "s@x.com", "John Doe", false);

	ck_assert_str_eq(b.text, "Subject: x\r\nFrom: John Doe <s@x.com>\r\n\r\nb\r\n");
	built_free(&b);

	b = build("Subject: x\r\n\r\nb\r\n", "s@x.com", "Doe, John \"JD\"", false);
	ck_assert_str_eq(b.text,
	    "Subject: x\r\nFrom: \"Doe, John \\\"JD\\\"\" <s@x.com>\r\n\r\nb\r\n");
	built_free(&b);

	/* not ASCII: an RFC 2047 encoded-word ("Jøran" in UTF-8) */
	b = build("Subject: x\r\n\r\nb\r\n", "s@x.com", "J\xc3\xb8ran", false);
	ck_assert_str_eq(b.text, "Subject: x\r\nFrom: =?UTF-8?B?SsO4cmFu?= <s@x.com>\r\n\r\nb\r\n");
	ck_assert(!b.hdr_eightbit);
	built_free(&b);

	/* no header injection through -F */
	b = build("Subject: x\r\n\r\nb\r\n", "s@x.com", "Eve\r\nBcc: x@y.org", false);
	ck_assert_str_eq(b.text,
	    "Subject: x\r\nFrom: \"Eve  Bcc: x@y.org\" <s@x.com>\r\n\r\nb\r\n");
	built_free(&b);

	/* a From: in the message wins; -F is then unused */
	b = build("from: Real <r@x.com>\r\n\r\nb\r\n", "s@x.com", "John", false);
	ck_assert_str_eq(b.text, "from: Real <r@x.com>\r\n\r\nb\r\n");
	built_free(&b);

	/* the null sender gets no From: */
	b = build("Subject: x\r\n\r\nb\r\n", "", "John", false);
	ck_assert_str_eq(b.text, "Subject: x\r\n\r\nb\r\n");
	built_free(&b);
}
END_TEST

START_TEST(test_msg_long_name_encoded)
{
	/* 40 two-byte characters: split into words at character boundaries */
	char name[81];
	struct built b;

	for (int i = 0; i < 40; i++)
		memcpy(name + 2 * i, "\xc3\xa6", 2);
	name[80] = '\0';
	b = build("", "s@x.com", name, false);
	/* 44 + 36 octets: 45 would cut the 23rd character in two */
	ck_assert_str_eq(b.text, "From: "
	    "=?UTF-8?B?w6bDpsOmw6bDpsOmw6bDpsOmw6bDpsOmw6bDpsOmw6bDpsOmw6bDpsOmw6Y=?=\r\n"
	    " =?UTF-8?B?w6bDpsOmw6bDpsOmw6bDpsOmw6bDpsOmw6bDpsOmw6bDpsOm?= <s@x.com>\r\n\r\n");
	built_free(&b);
}
END_TEST

START_TEST(test_msg_header_shapes)
{
	/* no header at all: the body starts at once */
	struct built b = build("hello world\r\nline 2\r\n", "s@x.com", NULL, false);

	ck_assert_str_eq(b.text, "From: <s@x.com>\r\n\r\nhello world\r\nline 2\r\n");
	built_free(&b);

	/* a header that ends without its empty line */
	b = build("Subject: x\r\nnot a field\r\n", "s@x.com", NULL, false);
	ck_assert_str_eq(b.text, "Subject: x\r\nFrom: <s@x.com>\r\n\r\nnot a field\r\n");
	built_free(&b);
	b = build("Subject: x\r\n", "s@x.com", NULL, false);
	ck_assert_str_eq(b.text, "Subject: x\r\nFrom: <s@x.com>\r\n\r\n");
	built_free(&b);

	/* a first line that looks folded is body */
	b = build(" indented\r\n", "s@x.com", NULL, false);
	ck_assert_str_eq(b.text, "From: <s@x.com>\r\n\r\n indented\r\n");
	built_free(&b);

	/* an mbox "From " line is dropped */
	b = build("From someone@x.com Mon Nov 23 10:00:00 2026\r\nTo: a@x.com\r\n\r\nb\r\n",
	    "s@x.com", NULL, true);
	ck_assert_str_eq(b.rcpts, "a@x.com");
	ck_assert_str_eq(b.text, "To: a@x.com\r\nFrom: <s@x.com>\r\n\r\nb\r\n");
	built_free(&b);

	/* empty input */
	b = build("", "s@x.com", NULL, false);
	ck_assert_str_eq(b.text, "From: <s@x.com>\r\n\r\n");
	built_free(&b);

	/* folded fields are kept whole */
	b = build("Subject: a\r\n b\r\n\tc\r\nFrom: f@x.com\r\n\r\n", "s@x.com", NULL, false);
	ck_assert_str_eq(b.text, "Subject: a\r\n b\r\n\tc\r\nFrom: f@x.com\r\n\r\n");
	built_free(&b);
}
END_TEST

START_TEST(test_msg_eightbit)
{
	struct built b = build("From: a@x.com\r\n\r\nbl\xc3\xa5" "b\xc3\xa6r\r\n", "a@x.com", NULL, false);

	ck_assert(b.eightbit);
	ck_assert(!b.hdr_eightbit);
	built_free(&b);
	b = build("From: a@x.com\r\nSubject: bl\xc3\xa5\r\n\r\nascii\r\n", "a@x.com", NULL, false);
	ck_assert(b.eightbit);
	ck_assert(b.hdr_eightbit);
	built_free(&b);
	b = build("From: a@x.com\r\n\r\nascii\r\n", "a@x.com", NULL, false);
	ck_assert(!b.eightbit);
	ck_assert(!b.hdr_eightbit);
	built_free(&b);
}
END_TEST

/* ---- dot-stuffing ------------------------------------------------------ */

static char *
stuffed(const char *in)
{
	struct buf b;

	buf_init(&b);
	sendmail_dot_stuff(in, strlen(in), &b);
	return b.p;
}

START_TEST(test_dot_stuff)
{
	char *s = stuffed(".a\r\nb\r\n..\r\n.\r\nmid . dot\r\n");

	ck_assert_str_eq(s, "..a\r\nb\r\n...\r\n..\r\nmid . dot\r\n.\r\n");
	free(s);
	s = stuffed("");
	ck_assert_str_eq(s, ".\r\n");
	free(s);
	s = stuffed("no end");
	ck_assert_str_eq(s, "no end\r\n.\r\n");
	free(s);
}
END_TEST

/* The text read with -i keeps its "." lines; on the wire they are stuffed. */
START_TEST(test_dot_round_trip)
{
	struct fed f = feed("Subject: d\n\n.\n..\nend\n", true, 0);
	char *s = stuffed(f.text);

	ck_assert_str_eq(s, "Subject: d\r\n\r\n..\r\n...\r\nend\r\n.\r\n");
	free(s);
	free(f.text);
}
END_TEST

/* What relayd receives of a text with CRs alone: the dots and Bcc: fields
 * as meant. */
START_TEST(test_input_bare_cr_reaches_relayd_whole)
{
	struct fed f = feed("Subject: s\rBcc: hidden@example.org\nTo: a@x.com\n\n"
	    "..dots\r.dots\n", true, 0);
	struct built b = build(f.text, "s@x.com", NULL, false);
	char *s = stuffed(b.text);

	ck_assert_int_eq(b.rc, 0);
	ck_assert_str_eq(s, "Subject: s\r\nTo: a@x.com\r\nFrom: <s@x.com>\r\n\r\n"
	    "...dots\r\n..dots\r\n.\r\n");
	free(s);
	built_free(&b);
	free(f.text);
}
END_TEST

/* ---- exit statuses ------------------------------------------------- */

START_TEST(test_exit_status)
{
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_RCPT, 550, "5.1.1"), EX_NOUSER);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_RCPT, 501, "5.1.3"), EX_NOUSER);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_RCPT, 452, "4.5.3"), EX_TEMPFAIL);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_MAIL, 550, "5.7.1"), EX_NOPERM);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_MAIL, 552, "5.3.4"), EX_DATAERR);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_MAIL, 501, NULL), EX_DATAERR);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_MAIL, 451, "4.3.0"), EX_TEMPFAIL);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_EOD, 554, "5.6.0"), EX_DATAERR);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_EOD, 451, "4.3.0"), EX_TEMPFAIL);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_EOD, 421, "4.4.2"), EX_TEMPFAIL);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_GREETING, 554, "5.7.1"), EX_UNAVAILABLE);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_GREETING, 421, "4.7.0"), EX_TEMPFAIL);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_DATA, 554, "5.5.1"), EX_UNAVAILABLE);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_EHLO, 250, NULL), EX_PROTOCOL);
	ck_assert_int_eq(sendmail_exit_status(SENDMAIL_DATA, 600, NULL), EX_PROTOCOL);
}
END_TEST

/* ---- the configuration without secrets ----------------------------- */

START_TEST(test_config_no_secrets)
{
	char dir[] = "/tmp/check_sendmail.XXXXXX";
	char conf[256], secret[256], text[1024];
	struct config *cfg;
	FILE *devnull = fopen("/dev/null", "w");
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_ptr_nonnull(devnull);
	snprintf(conf, sizeof(conf), "%s/relayd.conf", dir);
	snprintf(secret, sizeof(secret), "%s/up.secret", dir);
	/* a secret file the checks refuse (readable by others): as good as
	 * unreadable for this test, which may well run as root */
	fd = open(secret, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, "pw\n", 3), 3);
	ck_assert_int_eq(fchmod(fd, 0644), 0);
	close(fd);
	snprintf(text, sizeof(text),
	    "hostname = \"relay.example.com\"\nlisten = { \"127.0.0.1:2600\" }\n"
	    "upstream \"up\" {\n host = \"smtp.example.net\"\n username = \"u\"\n"
	    " password_file = \"%s\"\n}\n"
	    "domain \"example.com\" {\n upstream = \"up\"\n"
	    " dkim {\n  selector = \"s1\"\n  key_file = \"%s/missing.key\"\n }\n}\n",
	    secret, dir);
	fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);

	/* relayd itself refuses it */
	ck_assert_ptr_null(config_load_opts(conf, devnull, CONFIG_NO_KEYFILE_CHECK));
	/* relayd-sendmail's flags read it, without the password */
	cfg = config_load_opts(conf, devnull, CONFIG_NO_KEYFILE_CHECK | CONFIG_NO_SECRETS);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_str_eq(cfg->hostname, "relay.example.com");
	ck_assert_uint_eq(cfg->nlisten, 1);
	ck_assert_str_eq(cfg->listen[0].hp.host, "127.0.0.1");
	ck_assert_uint_eq(cfg->listen[0].hp.port, 2600);
	ck_assert_uint_eq(cfg->nupstreams, 1);
	ck_assert_ptr_null(cfg->upstreams[0].password);
	ck_assert_str_eq(cfg->upstreams[0].password_file, secret);
	config_free(cfg);

	/* a password file that does not exist at all */
	unlink(secret);
	cfg = config_load_opts(conf, devnull, CONFIG_NO_KEYFILE_CHECK | CONFIG_NO_SECRETS);
	ck_assert_ptr_nonnull(cfg);
	config_free(cfg);

	fclose(devnull);
	unlink(conf);
	rmdir(dir);
}
END_TEST

Suite *
sendmail_suite(void)
{
	Suite *s = suite_create("sendmail");
	TCase *tc = tcase_create("opts");

	tcase_add_test(tc, test_opts_php);
	tcase_add_test(tc, test_opts_oi_t);
	tcase_add_test(tc, test_opts_sender);
	tcase_add_test(tc, test_opts_fullname_config);
	tcase_add_test(tc, test_opts_cron);
	tcase_add_test(tc, test_opts_ignored);
	tcase_add_test(tc, test_opts_recipients_end_options);
	tcase_add_test(tc, test_opts_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("addresses");
	tcase_add_test(tc, test_addr_plain_lists);
	tcase_add_test(tc, test_addr_display_names);
	tcase_add_test(tc, test_addr_comments);
	tcase_add_test(tc, test_addr_groups);
	tcase_add_test(tc, test_addr_folded);
	tcase_add_test(tc, test_addr_forms);
	tcase_add_test(tc, test_addr_errors);
	tcase_add_test(tc, test_sender);
	suite_add_tcase(s, tc);

	tc = tcase_create("message");
	tcase_add_test(tc, test_input_line_ends);
	tcase_add_test(tc, test_input_lone_dot);
	tcase_add_test(tc, test_msg_php_mail);
	tcase_add_test(tc, test_msg_bcc_removed);
	tcase_add_test(tc, test_msg_header_names);
	tcase_add_test(tc, test_msg_bad_header_address);
	tcase_add_test(tc, test_msg_from_added);
	tcase_add_test(tc, test_msg_long_name_encoded);
	tcase_add_test(tc, test_msg_header_shapes);
	tcase_add_test(tc, test_msg_eightbit);
	tcase_add_test(tc, test_dot_stuff);
	tcase_add_test(tc, test_dot_round_trip);
	tcase_add_test(tc, test_input_bare_cr_reaches_relayd_whole);
	tcase_add_test(tc, test_exit_status);
	tcase_add_test(tc, test_config_no_secrets);
	suite_add_tcase(s, tc);
	return s;
}
