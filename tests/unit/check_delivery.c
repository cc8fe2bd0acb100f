/*
 * check_delivery — reply classification at every stage, with and without
 * enhanced codes (and with a mismatched or malformed one), the reason
 * wording and its cleaning and bound, local failures, the retry schedule
 * and the last-attempt rule.
 */
#include <stdio.h>
#include <string.h>

#include "delivery.h"
#include "suites.h"

#define RELAY "mx.example.net[192.0.2.7]:25"

struct cls_case {
	enum dlv_stage	 st;
	int		 code;
	const char	*enh;
	const char	*text;
	enum dlv_fate	 fate;
	const char	*dsn;
	bool		 config_problem;
	const char	*reason;	/* NULL: not checked here */
};

static const struct cls_case cls_cases[] = {
	/* 2xx: sent at any stage, reason the reply itself. */
	{ DLV_STAGE_DOT, 250, "2.0.0", "250 2.0.0 Ok: queued as 4FzX", DLV_SENT, "2.0.0", false,
	  "250 2.0.0 Ok: queued as 4FzX" },
	{ DLV_STAGE_DOT, 250, NULL, "250 Ok", DLV_SENT, "2.0.0", false, "250 Ok" },
	{ DLV_STAGE_RCPT, 251, "2.1.5", "251 2.1.5 forwarded", DLV_SENT, "2.1.5", false, NULL },
	{ DLV_STAGE_MAIL, 250, "2.1.0", "250 2.1.0 Sender ok", DLV_SENT, "2.1.0", false, NULL },

	/* 5xx to the transaction: bounced. */
	{ DLV_STAGE_MAIL, 553, "5.1.8", "553 5.1.8 sender rejected", DLV_BOUNCE, "5.1.8", false,
	  RELAY " said: 553 5.1.8 sender rejected (in reply to MAIL FROM command)" },
	{ DLV_STAGE_RCPT, 550, "5.1.1", "550 5.1.1 <bob@example.org>: user unknown", DLV_BOUNCE,
	  "5.1.1", false,
	  RELAY " said: 550 5.1.1 <bob@example.org>: user unknown (in reply to RCPT TO command)" },
	{ DLV_STAGE_RCPT, 550, NULL, "550 no such user", DLV_BOUNCE, "5.0.0", false,
	  RELAY " said: 550 no such user (in reply to RCPT TO command)" },
	{ DLV_STAGE_DATA, 554, "5.5.1", "554 5.5.1 no valid recipients", DLV_BOUNCE, "5.5.1", false,
	  RELAY " said: 554 5.5.1 no valid recipients (in reply to DATA command)" },
	{ DLV_STAGE_DOT, 552, "5.3.4", "552 5.3.4 message too big", DLV_BOUNCE, "5.3.4", false,
	  RELAY " said: 552 5.3.4 message too big (in reply to end of DATA command)" },
	{ DLV_STAGE_DOT, 554, NULL, "554 rejected", DLV_BOUNCE, "5.0.0", false, NULL },

	/* 4xx to the transaction: deferred. */
	{ DLV_STAGE_MAIL, 451, "4.3.0", "451 4.3.0 try later", DLV_DEFER, "4.3.0", false,
	  RELAY " said: 451 4.3.0 try later (in reply to MAIL FROM command)" },
	{ DLV_STAGE_RCPT, 450, "4.2.1", "450 4.2.1 mailbox busy", DLV_DEFER, "4.2.1", false, NULL },
	{ DLV_STAGE_RCPT, 452, NULL, "452 too many recipients", DLV_DEFER, "4.0.0", false, NULL },
	{ DLV_STAGE_DATA, 451, NULL, "451 local error", DLV_DEFER, "4.0.0", false,
	  RELAY " said: 451 local error (in reply to DATA command)" },
	{ DLV_STAGE_DOT, 452, "4.3.1", "452 4.3.1 disk full", DLV_DEFER, "4.3.1", false,
	  RELAY " said: 452 4.3.1 disk full (in reply to end of DATA command)" },

	/* Class mismatch: the basic code wins, subject.detail kept. */
	{ DLV_STAGE_RCPT, 550, "4.1.1", "550 4.1.1 odd", DLV_BOUNCE, "5.1.1", false, NULL },
	{ DLV_STAGE_RCPT, 450, "5.7.1", "450 5.7.1 odd", DLV_DEFER, "4.7.1", false, NULL },
	{ DLV_STAGE_DOT, 250, "5.0.0", "250 5.0.0 odd", DLV_SENT, "2.0.0", false, NULL },
	/* Malformed enhanced codes are ignored. */
	{ DLV_STAGE_RCPT, 550, "5.1", "550 x", DLV_BOUNCE, "5.0.0", false, NULL },
	{ DLV_STAGE_RCPT, 550, "5.1.1.1", "550 x", DLV_BOUNCE, "5.0.0", false, NULL },
	{ DLV_STAGE_RCPT, 550, "3.1.1", "550 x", DLV_BOUNCE, "5.0.0", false, NULL },
	{ DLV_STAGE_RCPT, 550, "5.1234.1", "550 x", DLV_BOUNCE, "5.0.0", false, NULL },
	{ DLV_STAGE_RCPT, 550, "", "550 x", DLV_BOUNCE, "5.0.0", false, NULL },
	{ DLV_STAGE_RCPT, 550, "5.a.1", "550 x", DLV_BOUNCE, "5.0.0", false, NULL },
	{ DLV_STAGE_RCPT, 550, "5.123.456", "550 x", DLV_BOUNCE, "5.123.456", false, NULL },

	/* 421 at any stage: deferred, its dsn kept. */
	{ DLV_STAGE_GREETING, 421, "4.3.2", "421 4.3.2 shutting down", DLV_DEFER, "4.3.2", false,
	  RELAY " refused to talk to us: 421 4.3.2 shutting down" },
	{ DLV_STAGE_EHLO, 421, NULL, "421 closing", DLV_DEFER, "4.0.0", false,
	  RELAY " said: 421 closing (in reply to EHLO command)" },
	{ DLV_STAGE_MAIL, 421, "4.7.0", "421 4.7.0 too fast", DLV_DEFER, "4.7.0", false, NULL },
	{ DLV_STAGE_RCPT, 421, NULL, "421 bye", DLV_DEFER, "4.0.0", false, NULL },
	{ DLV_STAGE_DATA, 421, "4.4.2", "421 4.4.2 timeout", DLV_DEFER, "4.4.2", false, NULL },
	{ DLV_STAGE_DOT, 421, "4.3.2", "421 4.3.2 going down", DLV_DEFER, "4.3.2", false,
	  RELAY " said: 421 4.3.2 going down (in reply to end of DATA command)" },
	{ DLV_STAGE_STARTTLS, 421, NULL, "421 no", DLV_DEFER, "4.0.0", false, NULL },

	/* Greeting, EHLO, STARTTLS: deferred even for 5xx, class made 4. */
	{ DLV_STAGE_GREETING, 554, "5.7.1", "554 5.7.1 go away", DLV_DEFER, "4.7.1", false,
	  RELAY " refused to talk to us: 554 5.7.1 go away" },
	{ DLV_STAGE_GREETING, 554, NULL, "554 no", DLV_DEFER, "4.0.0", false, NULL },
	{ DLV_STAGE_GREETING, 450, NULL, "450 busy", DLV_DEFER, "4.0.0", false, NULL },
	{ DLV_STAGE_EHLO, 550, "5.5.2", "550 5.5.2 bad hostname", DLV_DEFER, "4.5.2", false,
	  RELAY " said: 550 5.5.2 bad hostname (in reply to EHLO command)" },
	{ DLV_STAGE_EHLO, 501, NULL, "501 syntax", DLV_DEFER, "4.0.0", false, NULL },
	{ DLV_STAGE_EHLO, 451, NULL, "451 later", DLV_DEFER, "4.0.0", false, NULL },
	{ DLV_STAGE_STARTTLS, 454, "4.7.0", "454 4.7.0 TLS not available", DLV_DEFER, "4.7.0",
	  false, RELAY " said: 454 4.7.0 TLS not available (in reply to STARTTLS command)" },
	{ DLV_STAGE_STARTTLS, 502, "5.5.1", "502 5.5.1 not implemented", DLV_DEFER, "4.5.1", true,
	  NULL },
	{ DLV_STAGE_STARTTLS, 554, NULL, "554 no TLS", DLV_DEFER, "4.0.0", true, NULL },

	/* AUTH: always deferred 4.7.x and flagged. */
	{ DLV_STAGE_AUTH, 535, "5.7.8", "535 5.7.8 Authentication credentials invalid", DLV_DEFER,
	  "4.7.8", true, "authentication failed: 535 5.7.8 Authentication credentials invalid" },
	{ DLV_STAGE_AUTH, 535, NULL, "535 bad", DLV_DEFER, "4.7.0", true,
	  "authentication failed: 535 bad" },
	{ DLV_STAGE_AUTH, 454, "4.7.0", "454 4.7.0 temporary auth failure", DLV_DEFER, "4.7.0",
	  true, NULL },
	{ DLV_STAGE_AUTH, 534, "5.7.9", "534 5.7.9 mechanism too weak", DLV_DEFER, "4.7.9", true,
	  NULL },
	{ DLV_STAGE_AUTH, 504, "5.5.4", "504 5.5.4 unrecognized mechanism", DLV_DEFER, "4.7.0",
	  true, NULL },
	{ DLV_STAGE_AUTH, 421, "4.3.2", "421 4.3.2 bye", DLV_DEFER, "4.7.0", true, NULL },
	{ DLV_STAGE_AUTH, 235, "2.7.0", "235 2.7.0 Authentication successful", DLV_SENT, "2.7.0",
	  false, "235 2.7.0 Authentication successful" },

	/* Codes this dialogue cannot contain: a protocol error, deferred. */
	{ DLV_STAGE_DATA, 354, NULL, "354 go ahead", DLV_DEFER, "4.5.0", false,
	  RELAY " said: 354 go ahead (in reply to DATA command)" },
	{ DLV_STAGE_RCPT, 0, NULL, "garbage", DLV_DEFER, "4.5.0", false, NULL },
	{ DLV_STAGE_RCPT, 699, NULL, "699 x", DLV_DEFER, "4.5.0", false, NULL },
	{ DLV_STAGE_MAIL, 199, NULL, "199 x", DLV_DEFER, "4.5.0", false, NULL },
};

START_TEST(test_classify)
{
	const struct cls_case *c = &cls_cases[_i];
	struct dlv_status st;

	memset(&st, 0x5a, sizeof(st));		/* every field must be written */
	dlv_classify_reply(c->st, c->code, c->enh, c->text, RELAY, &st);
	ck_assert_msg(st.fate == c->fate, "case %d (%d %s): fate %d, want %d", _i, c->code,
	    c->text, st.fate, c->fate);
	ck_assert_str_eq(st.dsn, c->dsn);
	ck_assert_msg(st.config_problem == c->config_problem, "case %d: config_problem %d",
	    _i, st.config_problem);
	if (c->reason != NULL)
		ck_assert_str_eq(st.reason, c->reason);
	else
		ck_assert_ptr_nonnull(strstr(st.reason, c->text));
}
END_TEST

/* A 5xx to a pre-transaction stage never bounces; to a transaction one,
 * always; whatever the enhanced code. */
START_TEST(test_every_stage_5xx)
{
	static const struct {
		enum dlv_stage	st;
		enum dlv_fate	fate;
	} stages[] = {
		{ DLV_STAGE_GREETING, DLV_DEFER },
		{ DLV_STAGE_EHLO, DLV_DEFER },
		{ DLV_STAGE_HELO, DLV_DEFER },
		{ DLV_STAGE_STARTTLS, DLV_DEFER },
		{ DLV_STAGE_AUTH, DLV_DEFER },
		{ DLV_STAGE_RSET, DLV_DEFER },
		{ DLV_STAGE_MAIL, DLV_BOUNCE },
		{ DLV_STAGE_RCPT, DLV_BOUNCE },
		{ DLV_STAGE_DATA, DLV_BOUNCE },
		{ DLV_STAGE_DOT, DLV_BOUNCE },
	};
	struct dlv_status st;

	for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++) {
		dlv_classify_reply(stages[i].st, 550, "5.2.2", "550 5.2.2 full", RELAY, &st);
		ck_assert_msg(st.fate == stages[i].fate, "stage %d: fate %d", stages[i].st,
		    st.fate);
		ck_assert_str_eq(st.dsn, stages[i].fate == DLV_BOUNCE ? "5.2.2" :
		    stages[i].st == DLV_STAGE_AUTH ? "4.7.0" : "4.2.2");
		/* and a 4xx always defers, a 2xx sends (but in reply to DATA) */
		dlv_classify_reply(stages[i].st, 452, NULL, "452 x", RELAY, &st);
		ck_assert_int_eq(st.fate, DLV_DEFER);
		ck_assert_int_eq(st.dsn[0], '4');
		dlv_classify_reply(stages[i].st, 220, NULL, "220 ok", RELAY, &st);
		ck_assert_int_eq(st.fate, stages[i].st == DLV_STAGE_DATA ? DLV_DEFER : DLV_SENT);
		ck_assert_str_eq(st.dsn, stages[i].st == DLV_STAGE_DATA ? "4.5.0" : "2.0.0");
	}
}
END_TEST

START_TEST(test_stage_command)
{
	ck_assert_str_eq(dlv_fate_name(DLV_SENT), "sent");
	ck_assert_str_eq(dlv_fate_name(DLV_DEFER), "deferred");
	ck_assert_str_eq(dlv_fate_name(DLV_BOUNCE), "bounced");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_MAIL), "MAIL FROM");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_RCPT), "RCPT TO");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_DATA), "DATA");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_DOT), "end of DATA");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_EHLO), "EHLO");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_STARTTLS), "STARTTLS");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_AUTH), "AUTH");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_RSET), "RSET");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_HELO), "HELO");
	ck_assert_str_eq(dlv_stage_command(DLV_STAGE_GREETING), "");
	ck_assert_str_eq(dlv_stage_command((enum dlv_stage)99), "");
}
END_TEST

START_TEST(test_reason_clean)
{
	struct dlv_status st;

	/* A multi-line reply the caller forgot to join, with a stray control. */
	dlv_classify_reply(DLV_STAGE_RCPT, 550, "5.1.1", "550-5.1.1 first\r\n550 5.1.1 sec\tond\x01",
	    RELAY, &st);
	ck_assert_str_eq(st.reason, RELAY " said: 550-5.1.1 first  550 5.1.1 sec ond  "
	    "(in reply to RCPT TO command)");
	for (const char *p = st.reason; *p != '\0'; p++)
		ck_assert_int_ge((unsigned char)*p, 0x20);
	dlv_classify_reply(DLV_STAGE_DOT, 250, NULL, "250 ok\r\n", RELAY, &st);
	ck_assert_str_eq(st.reason, "250 ok  ");
	/* 8-bit text is left alone (UTF-8 replies are legitimate). */
	dlv_classify_reply(DLV_STAGE_DOT, 250, NULL, "250 d\xc3\xa9j\xc3\xa0", RELAY, &st);
	ck_assert_str_eq(st.reason, "250 d\xc3\xa9j\xc3\xa0");
	/* Missing text or relay. */
	dlv_classify_reply(DLV_STAGE_RCPT, 550, NULL, NULL, NULL, &st);
	ck_assert_str_eq(st.reason, "the upstream said:  (in reply to RCPT TO command)");
	ck_assert_int_eq(st.fate, DLV_BOUNCE);
}
END_TEST

START_TEST(test_reason_truncated)
{
	char text[3 * DLV_REASON_MAX];
	struct dlv_status st;

	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	memcpy(text, "550 ", 4);
	dlv_classify_reply(DLV_STAGE_RCPT, 550, NULL, text, RELAY, &st);
	ck_assert_uint_eq(strlen(st.reason), DLV_REASON_MAX - 1);
	ck_assert_int_eq(strncmp(st.reason, RELAY " said: 550 xxx", strlen(RELAY) + 14), 0);
	ck_assert_int_eq(st.reason[DLV_REASON_MAX - 2], 'x');
	ck_assert_int_eq(st.fate, DLV_BOUNCE);

	dlv_classify_reply(DLV_STAGE_DOT, 250, NULL, text, RELAY, &st);
	ck_assert_uint_eq(strlen(st.reason), DLV_REASON_MAX - 1);
	ck_assert_int_eq(strncmp(st.reason, text, DLV_REASON_MAX - 1), 0);

	dlv_classify_reply(DLV_STAGE_AUTH, 535, NULL, text, RELAY, &st);
	ck_assert_uint_eq(strlen(st.reason), DLV_REASON_MAX - 1);

	dlv_trouble(DLV_T_CONNECT, text, &st);
	ck_assert_uint_eq(strlen(st.reason), DLV_REASON_MAX - 1);

	/* Exactly DLV_REASON_MAX - 1 octets fits whole. */
	text[DLV_REASON_MAX - 1] = '\0';
	dlv_classify_reply(DLV_STAGE_DOT, 250, NULL, text, RELAY, &st);
	ck_assert_str_eq(st.reason, text);
}
END_TEST

START_TEST(test_trouble)
{
	/* every kind of trouble, and what it means: one table, in delivery.c */
	static const struct {
		enum dlv_trouble what;
		enum dlv_fate	 fate;
		const char	*dsn;
		bool		 config;
	} want[] = {
		{ DLV_T_DNS, DLV_DEFER, "4.4.3", false },
		{ DLV_T_CONNECT, DLV_DEFER, "4.4.1", false },
		{ DLV_T_TLS, DLV_DEFER, "4.7.5", false },
		{ DLV_T_NO_STARTTLS, DLV_DEFER, "4.7.4", true },
		{ DLV_T_NO_AUTH, DLV_DEFER, "4.7.0", true },
		{ DLV_T_TIMEOUT, DLV_DEFER, "4.4.2", false },
		{ DLV_T_LOST, DLV_DEFER, "4.4.2", false },
		{ DLV_T_PROTOCOL, DLV_DEFER, "4.5.0", false },
		{ DLV_T_TOO_BIG, DLV_BOUNCE, "5.3.4", false },
		{ DLV_T_NEEDS_SMTPUTF8, DLV_BOUNCE, "5.6.7", false },
		{ DLV_T_SPOOL, DLV_DEFER, "4.3.0", false },
		{ DLV_T_UNROUTABLE, DLV_DEFER, "4.3.5", true },
		{ DLV_T_UNSIGNED, DLV_DEFER, "4.7.0", true },
		{ DLV_T_TOKEN, DLV_DEFER, "4.7.0", true },
	};
	struct dlv_status st;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		memset(&st, 0x5a, sizeof(st));
		dlv_trouble(want[i].what, "why", &st);
		ck_assert_int_eq(st.fate, want[i].fate);
		ck_assert_str_eq(st.dsn, want[i].dsn);
		ck_assert_int_eq(st.config_problem, want[i].config);
		ck_assert_str_eq(st.reason, "why");
	}
	dlv_trouble(DLV_T_CONNECT, "connect to mx.example.net[192.0.2.7]:25: Connection refused",
	    &st);
	ck_assert_str_eq(st.reason, "connect to mx.example.net[192.0.2.7]:25: Connection refused");
	/* reasons are one line */
	dlv_trouble(DLV_T_NEEDS_SMTPUTF8, "SMTPUTF8 is required,\r\nbut was not offered", &st);
	ck_assert_str_eq(st.reason, "SMTPUTF8 is required,  but was not offered");
	dlv_trouble(DLV_T_LOST, NULL, &st);
	ck_assert_str_eq(st.reason, "");
	/* an unknown kind is a protocol error, never read past the table */
	dlv_trouble((enum dlv_trouble)1000, "x", &st);
	ck_assert_str_eq(st.dsn, "4.5.0");
}
END_TEST

START_TEST(test_explain)
{
	struct dlv_status st;

	dlv_classify_reply(DLV_STAGE_AUTH, 535, "5.7.139", "535 5.7.139 Authentication "
	    "unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", RELAY, &st);
	dlv_explain(&st, DLV_STAGE_AUTH, 535, "5.7.139", true);
	ck_assert(st.auth_refused && st.config_problem);
	ck_assert_ptr_nonnull(strstr(st.reason, "(hint: SMTP AUTH is disabled for this tenant or "
	    "mailbox"));
	ck_assert_ptr_nonnull(strstr(st.reason, "Set-CASMailbox"));

	dlv_classify_reply(DLV_STAGE_AUTH, 535, "5.7.3", "535 5.7.3 Authentication unsuccessful",
	    RELAY, &st);
	dlv_explain(&st, DLV_STAGE_AUTH, 535, "5.7.3", true);
	ck_assert_ptr_nonnull(strstr(st.reason, "SMTP.SendAsApp"));
	ck_assert_ptr_nonnull(strstr(st.reason, "New-ServicePrincipal"));
	ck_assert_ptr_nonnull(strstr(st.reason, "Add-MailboxPermission"));
	dlv_classify_reply(DLV_STAGE_AUTH, 535, "5.7.3", "535 5.7.3 Authentication unsuccessful",
	    RELAY, &st);
	dlv_explain(&st, DLV_STAGE_AUTH, 535, "5.7.3", false);
	ck_assert_ptr_nonnull(strstr(st.reason, "(hint: wrong username or password"));

	dlv_classify_reply(DLV_STAGE_AUTH, 550, "5.7.30", "550 5.7.30 Basic authentication is not "
	    "supported for Client Submission", RELAY, &st);
	dlv_explain(&st, DLV_STAGE_AUTH, 550, "5.7.30", false);
	ck_assert_ptr_nonnull(strstr(st.reason, "use auth = \"xoauth2\""));
	ck_assert_int_eq(st.fate, DLV_DEFER);

	/* SendAsDenied: the admin's to fix, deferred, never bounced */
	dlv_classify_reply(DLV_STAGE_DOT, 554, "5.2.252", "554 5.2.252 SendAsDenied; "
	    "relay@example.com not allowed to send as boss@example.com", RELAY, &st);
	ck_assert_int_eq(st.fate, DLV_BOUNCE);
	dlv_explain(&st, DLV_STAGE_DOT, 554, "5.2.252", true);
	ck_assert_int_eq(st.fate, DLV_DEFER);
	ck_assert(st.config_problem);
	ck_assert_str_eq(st.dsn, "4.2.252");
	ck_assert_ptr_nonnull(strstr(st.reason, "(hint: SendAsDenied"));

	/* nothing known: nothing added */
	dlv_classify_reply(DLV_STAGE_RCPT, 550, "5.1.1", "550 5.1.1 unknown", RELAY, &st);
	dlv_explain(&st, DLV_STAGE_RCPT, 550, "5.1.1", true);
	ck_assert_ptr_null(strstr(st.reason, "hint"));
	ck_assert(!st.auth_refused);
	dlv_explain(&st, DLV_STAGE_RCPT, 550, NULL, true);
	ck_assert_ptr_null(strstr(st.reason, "hint"));
}
END_TEST

START_TEST(test_2xx_to_data)
{
	struct dlv_status st;

	/* only 354 lets the text go: a 2xx to DATA delivers nothing */
	dlv_classify_reply(DLV_STAGE_DATA, 250, "2.0.0", "250 2.0.0 Ok", RELAY, &st);
	ck_assert_int_eq(st.fate, DLV_DEFER);
	ck_assert_str_eq(st.dsn, "4.5.0");
	ck_assert_str_eq(st.reason, RELAY " said: 250 2.0.0 Ok (in reply to DATA command)");
	/* while a 2xx to the end of the text is a delivery */
	dlv_classify_reply(DLV_STAGE_DOT, 250, "2.0.0", "250 2.0.0 Ok", RELAY, &st);
	ck_assert_int_eq(st.fate, DLV_SENT);
	/* and the new stages are named */
	dlv_classify_reply(DLV_STAGE_RSET, 421, NULL, "421 bye", RELAY, &st);
	ck_assert_str_eq(st.reason, RELAY " said: 421 bye (in reply to RSET command)");
	dlv_classify_reply(DLV_STAGE_HELO, 550, NULL, "550 no", RELAY, &st);
	ck_assert_int_eq(st.fate, DLV_DEFER);
	ck_assert_str_eq(st.reason, RELAY " said: 550 no (in reply to HELO command)");
}
END_TEST

START_TEST(test_retry_schedule)
{
	struct cfg_retry r = { .attempts = 5, .delay = 60, .backoff = 2.0, .max_delay = 3600 };
	static const int64_t want[] = { 0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600 };

	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(dlv_retry_delay(&r, i) == want[i], "attempt %u: %lld, want %lld", i,
		    (long long)dlv_retry_delay(&r, i), (long long)want[i]);
	/* No overflow, no long loop, whatever the count. */
	ck_assert_int_eq(dlv_retry_delay(&r, 64), 3600);
	ck_assert_int_eq(dlv_retry_delay(&r, 1100), 3600);
	ck_assert_int_eq(dlv_retry_delay(&r, 4000000000u), 3600);
	ck_assert_int_eq(dlv_retry_delay(&r, (unsigned)-1), 3600);
}
END_TEST

START_TEST(test_retry_cap_and_backoff)
{
	struct cfg_retry one = { .attempts = 10, .delay = 300, .backoff = 1.0, .max_delay = 3600 };
	struct cfg_retry frac = { .attempts = 10, .delay = 100, .backoff = 1.5, .max_delay = 400 };
	struct cfg_retry huge = { .attempts = 10, .delay = 60, .backoff = 1000.0,
	    .max_delay = 2000000000 };
	struct cfg_retry flat = { .attempts = 3, .delay = 600, .backoff = 3.0, .max_delay = 600 };

	/* backoff 1.0: constant. */
	ck_assert_int_eq(dlv_retry_delay(&one, 1), 300);
	ck_assert_int_eq(dlv_retry_delay(&one, 2), 300);
	ck_assert_int_eq(dlv_retry_delay(&one, 9), 300);
	ck_assert_int_eq(dlv_retry_delay(&one, 4000000000u), 300);
	/* Fractional backoff: 100, 150, 225, 337.5 -> 338, cap 400. */
	ck_assert_int_eq(dlv_retry_delay(&frac, 1), 100);
	ck_assert_int_eq(dlv_retry_delay(&frac, 2), 150);
	ck_assert_int_eq(dlv_retry_delay(&frac, 3), 225);
	ck_assert_int_eq(dlv_retry_delay(&frac, 4), 338);
	ck_assert_int_eq(dlv_retry_delay(&frac, 5), 400);
	ck_assert_int_eq(dlv_retry_delay(&frac, 50), 400);
	/* Large products stay exact up to the cap and never pass it. */
	ck_assert_int_eq(dlv_retry_delay(&huge, 3), 60000000);
	ck_assert_int_eq(dlv_retry_delay(&huge, 4), 2000000000);
	ck_assert_int_eq(dlv_retry_delay(&huge, 300), 2000000000);
	/* max_delay == delay: flat from the start. */
	ck_assert_int_eq(dlv_retry_delay(&flat, 1), 600);
	ck_assert_int_eq(dlv_retry_delay(&flat, 2), 600);
}
END_TEST

START_TEST(test_final)
{
	struct cfg_retry r = { .attempts = 5, .delay = 60, .backoff = 2.0, .max_delay = 3600 };
	struct cfg_retry once = { .attempts = 1, .delay = 60, .backoff = 2.0, .max_delay = 3600 };
	struct dlv_status st;
	char reason[DLV_REASON_MAX];

	/* Before the last attempt: left alone. */
	for (unsigned k = 1; k < 5; k++) {
		dlv_classify_reply(DLV_STAGE_RCPT, 450, "4.2.1", "450 4.2.1 busy", RELAY, &st);
		ck_assert(!dlv_final(&r, k, &st));
		ck_assert_int_eq(st.fate, DLV_DEFER);
	}
	/* At exactly the last: bounced, dsn and reason unchanged. */
	dlv_classify_reply(DLV_STAGE_RCPT, 450, "4.2.1", "450 4.2.1 busy", RELAY, &st);
	memcpy(reason, st.reason, sizeof(reason));
	ck_assert(dlv_final(&r, 5, &st));
	ck_assert_int_eq(st.fate, DLV_BOUNCE);
	ck_assert_str_eq(st.dsn, "4.2.1");
	ck_assert_str_eq(st.reason, reason);
	/* Past it too (a schedule shortened by a reload). */
	dlv_trouble(DLV_T_CONNECT, "connection refused", &st);
	ck_assert(dlv_final(&r, 7, &st));
	ck_assert_int_eq(st.fate, DLV_BOUNCE);
	ck_assert_str_eq(st.dsn, "4.4.1");
	ck_assert_str_eq(st.reason, "connection refused");
	/* A single allowed attempt. */
	dlv_trouble(DLV_T_TIMEOUT, "timeout", &st);
	ck_assert(dlv_final(&once, 1, &st));
	ck_assert_int_eq(st.fate, DLV_BOUNCE);
	/* Only deferrals are turned. */
	dlv_classify_reply(DLV_STAGE_DOT, 250, NULL, "250 ok", RELAY, &st);
	ck_assert(!dlv_final(&r, 5, &st));
	ck_assert_int_eq(st.fate, DLV_SENT);
	dlv_classify_reply(DLV_STAGE_RCPT, 550, NULL, "550 no", RELAY, &st);
	ck_assert(!dlv_final(&r, 5, &st));
	ck_assert_int_eq(st.fate, DLV_BOUNCE);
	ck_assert_str_eq(st.dsn, "5.0.0");
	/* A configuration problem is never bounced: not at the last attempt,
	 * not after it (the admin fixes it, the mail goes) */
	dlv_classify_reply(DLV_STAGE_AUTH, 535, "5.7.8", "535 5.7.8 bad", RELAY, &st);
	ck_assert(!dlv_final(&r, 5, &st));
	ck_assert(!dlv_final(&r, 50, &st));
	ck_assert_int_eq(st.fate, DLV_DEFER);
	ck_assert_str_eq(st.dsn, "4.7.8");
	dlv_trouble(DLV_T_TOKEN, "token from login.microsoftonline.com failed: 401", &st);
	ck_assert(!dlv_final(&once, 1, &st));
	dlv_trouble(DLV_T_UNROUTABLE, "no domain section", &st);
	ck_assert(!dlv_final(&once, 1, &st));
}
END_TEST

Suite *
delivery_suite(void)
{
	Suite *s = suite_create("delivery");
	TCase *tc = tcase_create("classify");

	tcase_add_loop_test(tc, test_classify, 0, sizeof(cls_cases) / sizeof(cls_cases[0]));
	tcase_add_test(tc, test_every_stage_5xx);
	tcase_add_test(tc, test_stage_command);
	tcase_add_test(tc, test_reason_clean);
	tcase_add_test(tc, test_reason_truncated);
	tcase_add_test(tc, test_trouble);
	tcase_add_test(tc, test_2xx_to_data);
	tcase_add_test(tc, test_explain);
	suite_add_tcase(s, tc);

	tc = tcase_create("retry");
	tcase_add_test(tc, test_retry_schedule);
	tcase_add_test(tc, test_retry_cap_and_backoff);
	tcase_add_test(tc, test_final);
	suite_add_tcase(s, tc);
	return s;
}
