/*
 * check_smtp_parse — unit tests for smtp_parse.c: command splitting, MAIL
 * and RCPT arguments with every parameter case, HELO/EHLO names.  Inputs are
 * copied into heap buffers of exactly their length, without a NUL, as the
 * session hands us lines; a read past the end shows up under ASan.
 */
#include <stdlib.h>
#include <string.h>

#include "smtp_parse.h"
#include "suites.h"

#define R_MAIL_SYNTAX	"501 5.5.4 Syntax: MAIL FROM:<address>"
#define R_RCPT_SYNTAX	"501 5.5.4 Syntax: RCPT TO:<address>"
#define R_HELO_SYNTAX	"501 5.5.4 Syntax: EHLO hostname"
#define R_BAD_SENDER	"501 5.1.3 Bad sender address syntax"
#define R_BAD_RCPT	"501 5.1.3 Bad recipient address syntax"
#define R_NEEDS_UTF8	"553 5.6.7 Address needs SMTPUTF8"
#define R_PARAM_SYNTAX	"501 5.5.4 Bad MAIL parameter syntax"
#define R_PARAM_DUP	"501 5.5.4 Duplicate MAIL parameter"
#define R_PARAM_UNK	"555 5.5.4 Unsupported MAIL parameter"
#define R_RCPT_PARAM	"555 5.5.4 Unsupported RCPT parameter"
#define R_SIZE		"501 5.5.4 Bad SIZE parameter"
#define R_BODY		"501 5.5.4 Unsupported BODY type"
#define R_UTF8_VALUE	"501 5.5.4 SMTPUTF8 takes no value"
#define R_AUTH		"501 5.5.4 Bad AUTH parameter"

static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	ck_assert_ptr_nonnull(p);
	memcpy(p, s, n);
	return p;
}

/* ---- smtp_parse_command ------------------------------------------------ */

struct cmd_case {
	const char	*line;
	enum smtp_cmd	 cmd;
	const char	*verb;
	const char	*arg;
};

static const struct cmd_case cmd_cases[] = {
	{ "DATA", SMTP_CMD_DATA, "DATA", "" },
	{ "data  ", SMTP_CMD_DATA, "data", "" },
	{ "MAIL FROM:<a@b>", SMTP_CMD_MAIL, "MAIL", "FROM:<a@b>" },
	{ "XYZZY foo", SMTP_CMD_UNKNOWN, "XYZZY", "foo" },
	{ "", SMTP_CMD_UNKNOWN, "", "" },
	{ "ehlo   client.example.org  ", SMTP_CMD_EHLO, "ehlo",
	    "client.example.org" },
	{ "HELO x", SMTP_CMD_HELO, "HELO", "x" },
	{ "Rcpt To:<a@b.no>", SMTP_CMD_RCPT, "Rcpt", "To:<a@b.no>" },
	{ "mail from:<> SIZE=10  ", SMTP_CMD_MAIL, "mail", "from:<> SIZE=10" },
	{ "MAIL\tFROM:<a@b>", SMTP_CMD_MAIL, "MAIL", "FROM:<a@b>" },
	{ "RSET", SMTP_CMD_RSET, "RSET", "" },
	{ "noop", SMTP_CMD_NOOP, "noop", "" },
	{ "NoOp hello there", SMTP_CMD_NOOP, "NoOp", "hello there" },
	{ "QUIT", SMTP_CMD_QUIT, "QUIT", "" },
	{ "help", SMTP_CMD_HELP, "help", "" },
	{ "VRFY u", SMTP_CMD_VRFY, "VRFY", "u" },
	{ "EXPN list", SMTP_CMD_EXPN, "EXPN", "list" },
	{ "StartTLS", SMTP_CMD_STARTTLS, "StartTLS", "" },
	{ "AUTH PLAIN AGEAYg==", SMTP_CMD_AUTH, "AUTH", "PLAIN AGEAYg==" },
	{ "BDAT 10 LAST", SMTP_CMD_BDAT, "BDAT", "10 LAST" },
	{ "DATAX", SMTP_CMD_UNKNOWN, "DATAX", "" },
	{ "DAT", SMTP_CMD_UNKNOWN, "DAT", "" },
	{ "MAILFROM:<a@b>", SMTP_CMD_UNKNOWN, "MAILFROM:<a@b>", "" },
	{ " DATA", SMTP_CMD_UNKNOWN, "", "DATA" },
	{ "   ", SMTP_CMD_UNKNOWN, "", "" },
	{ "D\xc3\xa4TA", SMTP_CMD_UNKNOWN, "D\xc3\xa4TA", "" },
};

START_TEST(test_command_table)
{
	const struct cmd_case	*c = &cmd_cases[_i];
	size_t			 n = strlen(c->line);
	char			*line = dup_exact(c->line, n);
	struct smtp_command	 cmd;

	memset(&cmd, 0xa5, sizeof(cmd));
	smtp_parse_command(line, n, &cmd);
	ck_assert_msg(cmd.cmd == c->cmd, "case %d \"%s\": cmd %d, want %d", _i,
	    c->line, cmd.cmd, c->cmd);
	ck_assert_ptr_eq(cmd.verb, line);
	ck_assert_uint_eq(cmd.verblen, strlen(c->verb));
	ck_assert(memcmp(cmd.verb, c->verb, cmd.verblen) == 0);
	ck_assert_uint_eq(cmd.arglen, strlen(c->arg));
	ck_assert_ptr_nonnull(cmd.arg);
	ck_assert(memcmp(cmd.arg, c->arg, cmd.arglen) == 0);
	if (cmd.arglen > 0)	/* the argument points into the line */
		ck_assert(cmd.arg > line && cmd.arg + cmd.arglen <= line + n);
	free(line);
}
END_TEST

/* ---- smtp_parse_mail --------------------------------------------------- */

struct mail_case {
	const char	*arg;
	const char	*reply;		/* NULL: accepted */
	const char	*addr;
	bool		 has_size;
	uint64_t	 size;
	enum smtp_body	 body;
	bool		 smtputf8;
};

#define OK		NULL
#define U7		SMTP_BODY_7BIT
#define U8		SMTP_BODY_8BITMIME
#define UN		SMTP_BODY_UNSPEC
/* a refused MAIL argument: only the reply matters */
#define MBAD(a, r)	{ a, r, "", false, 0, UN, false }

static const struct mail_case mail_cases[] = {
	/* the keyword and the path */
	{ "FROM:<a@b.no>", OK, "a@b.no", false, 0, UN, false },
	{ "from:<a@b.no>", OK, "a@b.no", false, 0, UN, false },
	{ "From:<a@b.no>", OK, "a@b.no", false, 0, UN, false },
	{ "FROM: <a@b.no>", OK, "a@b.no", false, 0, UN, false },
	{ "FROM:<>", OK, "", false, 0, UN, false },
	{ "FROM:<\"john doe\"@example.com>", OK, "\"john doe\"@example.com",
	    false, 0, UN, false },
	{ "FROM:<@a.org,@b.org:u@c.org>", OK, "u@c.org", false, 0, UN, false },
	{ "FROM:<u@[192.0.2.1]>", OK, "u@[192.0.2.1]", false, 0, UN, false },
	MBAD("FROM:  <a@b.no>", R_BAD_SENDER),
	MBAD("FROM:a@b.no", R_BAD_SENDER),
	MBAD("FROM:<a@b.no", R_BAD_SENDER),
	MBAD("FROM:<post@@mab.no>", R_BAD_SENDER),
	MBAD("FROM:<post.bleken.no>", R_BAD_SENDER),
	MBAD("FROM:<a..b@x.no>", R_BAD_SENDER),
	MBAD("FROM:<a@-x.no>", R_BAD_SENDER),
	MBAD("FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "@x.no>", R_BAD_SENDER),	/* 65 octets: too long is 501 5.1.3 too */
	MBAD("FROM:", R_MAIL_SYNTAX),
	MBAD("FROM: ", R_MAIL_SYNTAX),
	MBAD("", R_MAIL_SYNTAX),
	MBAD("FROM", R_MAIL_SYNTAX),
	MBAD("FROM<a@b.no>", R_MAIL_SYNTAX),
	MBAD("FROM :<a@b.no>", R_MAIL_SYNTAX),
	MBAD("TO:<a@b.no>", R_MAIL_SYNTAX),
	MBAD("<a@b.no>", R_MAIL_SYNTAX),
	MBAD("FROM:<a@b.no>SIZE=5", R_MAIL_SYNTAX),
	MBAD("FROM:<a@b.no>>", R_MAIL_SYNTAX),
	/* SIZE */
	{ "FROM:<a@b.no> SIZE=0", OK, "a@b.no", true, 0, UN, false },
	{ "FROM:<a@b.no> SIZE=12345", OK, "a@b.no", true, 12345, UN, false },
	{ "FROM:<a@b.no> size=10", OK, "a@b.no", true, 10, UN, false },
	{ "FROM:<> SIZE=100", OK, "", true, 100, UN, false },
	{ "FROM:<a@b.no> SIZE=18446744073709551615", OK, "a@b.no", true,
	    UINT64_MAX, UN, false },
	MBAD("FROM:<a@b.no> SIZE=18446744073709551616", R_SIZE),
	MBAD("FROM:<a@b.no> SIZE=99999999999999999999999", R_SIZE),
	MBAD("FROM:<a@b.no> SIZE=12a", R_SIZE),
	MBAD("FROM:<a@b.no> SIZE=-1", R_SIZE),
	MBAD("FROM:<a@b.no> SIZE=+1", R_SIZE),
	MBAD("FROM:<a@b.no> SIZE", R_SIZE),
	MBAD("FROM:<a@b.no> SIZE=", R_PARAM_SYNTAX),
	MBAD("FROM:<a@b.no> SIZE=1=2", R_PARAM_SYNTAX),
	MBAD("FROM:<a@b.no> SIZE=1 SIZE=2", R_PARAM_DUP),
	MBAD("FROM:<a@b.no> SIZE=1 size=1", R_PARAM_DUP),
	/* BODY */
	{ "FROM:<a@b.no> BODY=7BIT", OK, "a@b.no", false, 0, U7, false },
	{ "FROM:<a@b.no> BODY=8BITMIME", OK, "a@b.no", false, 0, U8, false },
	{ "FROM:<a@b.no> body=8bitmime", OK, "a@b.no", false, 0, U8, false },
	{ "FROM:<a@b.no> Body=7bit", OK, "a@b.no", false, 0, U7, false },
	MBAD("FROM:<a@b.no> BODY=BINARYMIME", R_BODY),
	MBAD("FROM:<a@b.no> BODY=8BIT", R_BODY),
	MBAD("FROM:<a@b.no> BODY", R_BODY),
	MBAD("FROM:<a@b.no> BODY=7BIT BODY=8BITMIME", R_PARAM_DUP),
	/* SMTPUTF8 */
	{ "FROM:<a@b.no> SMTPUTF8", OK, "a@b.no", false, 0, UN, true },
	{ "FROM:<a@b.no> smtputf8", OK, "a@b.no", false, 0, UN, true },
	MBAD("FROM:<a@b.no> SMTPUTF8=yes", R_UTF8_VALUE),
	MBAD("FROM:<a@b.no> SMTPUTF8 SMTPUTF8", R_PARAM_DUP),
	/* AUTH (RFC 4954 5): accepted, ignored */
	{ "FROM:<a@b.no> AUTH=<>", OK, "a@b.no", false, 0, UN, false },
	{ "FROM:<a@b.no> auth=user+40example.com", OK, "a@b.no", false, 0, UN,
	    false },
	MBAD("FROM:<a@b.no> AUTH", R_AUTH),
	MBAD("FROM:<a@b.no> AUTH=<> AUTH=<>", R_PARAM_DUP),
	/* unknown and malformed parameters */
	MBAD("FROM:<a@b.no> FOO=bar", R_PARAM_UNK),
	MBAD("FROM:<a@b.no> RET=HDRS", R_PARAM_UNK),
	MBAD("FROM:<a@b.no> ENVID=x", R_PARAM_UNK),
	MBAD("FROM:<a@b.no> SIZE=1 XYZ", R_PARAM_UNK),
	MBAD("FROM:<a@b.no> =5", R_PARAM_SYNTAX),
	MBAD("FROM:<a@b.no> -X", R_PARAM_SYNTAX),
	MBAD("FROM:<a@b.no> S_ZE=1", R_PARAM_SYNTAX),
	MBAD("FROM:<a@b.no> FOO=a\x01", R_PARAM_SYNTAX),
	/* all together, extra blanks, trailing blanks */
	{ "FROM:<a@b.no> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=<>", OK, "a@b.no",
	    true, 1000, U8, true },
	{ "fRoM:<a@b.no>  SIZE=5   BODY=7BIT  ", OK, "a@b.no", true, 5, U7,
	    false },
	{ "FROM:<a@b.no> ", OK, "a@b.no", false, 0, UN, false },
	/* UTF-8 addresses need SMTPUTF8, which may come after the address */
	MBAD("FROM:<用户@例子.广告>", R_NEEDS_UTF8),
	{ "FROM:<用户@例子.广告> SMTPUTF8", OK, "用户@例子.广告", false, 0, UN,
	    true },
	{ "FROM:<josé@exämple.com> SMTPUTF8 SIZE=10", OK, "josé@exämple.com",
	    true, 10, UN, true },
	MBAD("FROM:<josé@exämple.com> SIZE=10", R_NEEDS_UTF8),
	MBAD("FROM:<jose@exämple.com> BODY=8BITMIME", R_NEEDS_UTF8),
	MBAD("FROM:<用户@例子.广告> FOO", R_PARAM_UNK),
	MBAD("FROM:<\xc3\x28@x.com> SMTPUTF8", R_BAD_SENDER),
	MBAD("FROM:<\xc3\x28@x.com>", R_BAD_SENDER),
	MBAD("FROM:<\xed\xa0\x80@x.com> SMTPUTF8", R_BAD_SENDER),
};

START_TEST(test_mail_table)
{
	const struct mail_case	*c = &mail_cases[_i];
	size_t			 n = strlen(c->arg);
	char			*arg = dup_exact(c->arg, n);
	struct smtp_mail_args	 m;
	const char		*reply = NULL;
	bool			 ok;

	memset(&m, 0xa5, sizeof(m));
	ok = smtp_parse_mail(arg, n, &m, &reply);
	if (c->reply == NULL) {
		ck_assert_msg(ok, "case %d \"%s\" refused: %s", _i, c->arg,
		    reply ? reply : "(null)");
		ck_assert_str_eq(m.addr, c->addr);
		ck_assert_int_eq(m.has_size, c->has_size);
		ck_assert_uint_eq(m.size, c->size);
		ck_assert_int_eq(m.body, c->body);
		ck_assert_int_eq(m.smtputf8, c->smtputf8);
	} else {
		ck_assert_msg(!ok, "case %d \"%s\" accepted", _i, c->arg);
		ck_assert_ptr_nonnull(reply);
		ck_assert_str_eq(reply, c->reply);
		ck_assert_str_eq(m.addr, "");
	}
	free(arg);
}
END_TEST

/* The session passes the arg it got from smtp_parse_command: check the pair. */
START_TEST(test_mail_from_command_line)
{
	const char		*line = "MAIL FROM:<a@b.no> SIZE=42  ";
	struct smtp_command	 cmd;
	struct smtp_mail_args	 m;
	const char		*reply;

	smtp_parse_command(line, strlen(line), &cmd);
	ck_assert_int_eq(cmd.cmd, SMTP_CMD_MAIL);
	ck_assert(smtp_parse_mail(cmd.arg, cmd.arglen, &m, &reply));
	ck_assert_str_eq(m.addr, "a@b.no");
	ck_assert_uint_eq(m.size, 42);
	/* len is honoured: the same text cut before '>' is refused */
	ck_assert(!smtp_parse_mail("FROM:<a@b.no>", 12, &m, &reply));
	ck_assert_str_eq(reply, R_BAD_SENDER);
}
END_TEST

/* ---- smtp_parse_rcpt --------------------------------------------------- */

struct rcpt_case {
	const char	*arg;
	bool		 smtputf8;
	const char	*reply;
	const char	*addr;
};

#define RBAD(a, u, r)	{ a, u, r, "" }

static const struct rcpt_case rcpt_cases[] = {
	{ "TO:<a@b.no>", false, OK, "a@b.no" },
	{ "to:<a@b.no>", false, OK, "a@b.no" },
	{ "To: <a@b.no>", false, OK, "a@b.no" },
	{ "TO:<a@b.no>   ", false, OK, "a@b.no" },
	{ "TO:<\"a\\\"b\"@x.org>", false, OK, "\"a\\\"b\"@x.org" },
	{ "TO:<u@[IPv6:2001:db8::1]>", false, OK, "u@[IPv6:2001:db8::1]" },
	{ "TO:<@a.org:u@c.org>", false, OK, "u@c.org" },
	{ "TO:<postmaster>", false, OK, "postmaster" },
	{ "TO:<Postmaster>", false, OK, "postmaster" },
	{ "to:<POSTMASTER>", false, OK, "postmaster" },
	{ "TO:<postmaster@b.no>", false, OK, "postmaster@b.no" },
	RBAD("TO:<postmasterx>", false, R_BAD_RCPT),
	RBAD("TO:<postmaster", false, R_BAD_RCPT),
	RBAD("TO:<postmaster> NOTIFY=NEVER", false, R_RCPT_PARAM),
	RBAD("TO:<postmaster>x", false, R_RCPT_SYNTAX),
	RBAD("TO:<>", false, R_BAD_RCPT),
	RBAD("TO:<> ", true, R_BAD_RCPT),
	RBAD("TO:<a@b.no> NOTIFY=NEVER", false, R_RCPT_PARAM),
	RBAD("TO:<a@b.no> ORCPT=rfc822;a@b.no", false, R_RCPT_PARAM),
	RBAD("TO:<a@b.no> SMTPUTF8", true, R_RCPT_PARAM),
	RBAD("TO:<a@b.no>x", false, R_RCPT_SYNTAX),
	RBAD("TO:<a@b.no>>", false, R_RCPT_SYNTAX),
	RBAD("TO:a@b.no", false, R_BAD_RCPT),
	RBAD("TO:  <a@b.no>", false, R_BAD_RCPT),
	RBAD("TO:<post@@mab.no>", false, R_BAD_RCPT),
	RBAD("TO:<post.bleken.no>", false, R_BAD_RCPT),
	RBAD("TO:<a@x..no>", false, R_BAD_RCPT),
	RBAD("TO:", false, R_RCPT_SYNTAX),
	RBAD("", false, R_RCPT_SYNTAX),
	RBAD("T:<a@b.no>", false, R_RCPT_SYNTAX),
	RBAD("FROM:<a@b.no>", false, R_RCPT_SYNTAX),
	RBAD("TO<a@b.no>", false, R_RCPT_SYNTAX),
	RBAD("TO:<用户@例子.广告>", false, R_NEEDS_UTF8),
	{ "TO:<用户@例子.广告>", true, OK, "用户@例子.广告" },
	{ "TO:<josé@exämple.com>", true, OK, "josé@exämple.com" },
	RBAD("TO:<josé@exämple.com>", false, R_NEEDS_UTF8),
	RBAD("TO:<\xc3\x28@x.com>", true, R_BAD_RCPT),
	RBAD("TO:<\xc3\x28@x.com>", false, R_BAD_RCPT),
};

START_TEST(test_rcpt_table)
{
	const struct rcpt_case	*c = &rcpt_cases[_i];
	size_t			 n = strlen(c->arg);
	char			*arg = dup_exact(c->arg, n);
	struct smtp_rcpt_args	 r;
	const char		*reply = NULL;
	bool			 ok;

	memset(&r, 0xa5, sizeof(r));
	ok = smtp_parse_rcpt(arg, n, c->smtputf8, &r, &reply);
	if (c->reply == NULL) {
		ck_assert_msg(ok, "case %d \"%s\" refused: %s", _i, c->arg,
		    reply ? reply : "(null)");
		ck_assert_str_eq(r.addr, c->addr);
	} else {
		ck_assert_msg(!ok, "case %d \"%s\" accepted", _i, c->arg);
		ck_assert_ptr_nonnull(reply);
		ck_assert_str_eq(reply, c->reply);
		ck_assert_str_eq(r.addr, "");
	}
	free(arg);
}
END_TEST

/* ---- smtp_parse_helo --------------------------------------------------- */

struct helo_case {
	const char	*arg;
	bool		 ok;
};

static const struct helo_case helo_cases[] = {
	{ "client.example.org", true },
	{ "localhost", true },
	{ "localhost.localdomain", true },
	{ "WIN_BOX01", true },		/* Windows applications do this */
	{ "my-laptop.local", true },
	{ "-weird-", true },		/* lenient, as Postfix */
	{ "[192.0.2.1]", true },
	{ "[IPv6:::1]", true },
	{ "[IPv6:2001:db8::1]", true },
	{ "[999.1.1.1]", false },
	{ "[192.0.2.1", false },
	{ "192.0.2.1]", false },
	{ "[]", false },
	{ "[::1]", false },
	{ "", false },
	{ "a b", false },
	{ "a\x01" "b", false },
	{ "a\tb", false },
	{ "x\x7f", false },
	{ "\xc3\xa9.example", false },
};

START_TEST(test_helo_table)
{
	const struct helo_case	*c = &helo_cases[_i];
	size_t			 n = strlen(c->arg);
	char			*arg = dup_exact(c->arg, n);
	const char		*reply = NULL;
	bool			 ok;

	ok = smtp_parse_helo(arg, n, &reply);
	ck_assert_msg(ok == c->ok, "case %d \"%s\": got %d", _i, c->arg, ok);
	if (!ok)
		ck_assert_str_eq(reply, R_HELO_SYNTAX);
	free(arg);
}
END_TEST

START_TEST(test_helo_len)
{
	const char *reply;

	/* only len bytes count: "a b" cut to "a" is fine, to "" is not */
	ck_assert(smtp_parse_helo("a b", 1, &reply));
	ck_assert(!smtp_parse_helo("a b", 0, &reply));
	ck_assert_str_eq(reply, R_HELO_SYNTAX);
}
END_TEST

Suite *
smtp_parse_suite(void)
{
	Suite	*s = suite_create("smtp_parse");
	TCase	*tc = tcase_create("smtp_parse");

	tcase_add_loop_test(tc, test_command_table, 0,
	    (int)(sizeof(cmd_cases) / sizeof(cmd_cases[0])));
	tcase_add_loop_test(tc, test_mail_table, 0,
	    (int)(sizeof(mail_cases) / sizeof(mail_cases[0])));
	tcase_add_test(tc, test_mail_from_command_line);
	tcase_add_loop_test(tc, test_rcpt_table, 0,
	    (int)(sizeof(rcpt_cases) / sizeof(rcpt_cases[0])));
	tcase_add_loop_test(tc, test_helo_table, 0,
	    (int)(sizeof(helo_cases) / sizeof(helo_cases[0])));
	tcase_add_test(tc, test_helo_len);
	suite_add_tcase(s, tc);
	return s;
}
