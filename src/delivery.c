/*
 * delivery — the one place that decides what an upstream's reply means for
 * a recipient (sent, deferred, bounced), with the status code and the reason
 * that go to the log and the DSN, and the retry arithmetic.  Pure: no I/O,
 * no clock, no allocation.
 *
 * Promises, beyond delivery.h:
 *  - Precedence: a 2xx is sent, except in reply to DATA, where only 354
 *    continues and a 2xx is a protocol error (deferred 4.5.0: the server
 *    and relayd disagree about where the dialogue is); then AUTH (any 4xx/5xx is a
 *    configuration problem, 4.7.x, even a 421: the failure is reported
 *    where the admin must look); then 421 and any 4xx defer; then a 5xx
 *    bounces only when it answers MAIL, RCPT, DATA or the end of data, and
 *    defers everywhere else (greeting, EHLO, STARTTLS: not the message's
 *    fault) with the class turned to 4.  A code outside 2xx/4xx/5xx (a
 *    3xx where 2xx was due, garbage) is a protocol error: deferred 4.5.0.
 *  - A STARTTLS refused with 5xx is also flagged config_problem: the
 *    upstream will not do the TLS it is configured for.
 *  - The enhanced code is used when it is well formed (class.subject.detail,
 *    1-3 digits each); its class is replaced by the reply code's class when
 *    they disagree ("550 4.1.1" gives 5.1.1), as RFC 3463 makes the basic
 *    code authoritative.  Without one: <class>.0.0.
 *  - reason wording (for admins reading logs):
 *      2xx:       the reply itself
 *      AUTH:      "authentication failed: <reply>"
 *      greeting:  "<relay> refused to talk to us: <reply>"
 *      others:    "<relay> said: <reply> (in reply to <COMMAND> command)"
 *    (dlv_stage_command() names the command).  Control characters become
 *    spaces, since reason ends up in single-line log entries and DSN fields;
 *    it is cut to DLV_REASON_MAX - 1 octets.
 */
#include <stdio.h>
#include <string.h>

#include "delivery.h"

/* Accumulates reason text into a fixed buffer, silently truncating. */
struct reason_w {
	char	*p;
	size_t	 len;
	size_t	 cap;	/* including the NUL */
};

static void
reason_add(struct reason_w *w, const char *s)
{
	size_t n;

	if (s == NULL)
		return;
	n = strlen(s);
	if (n > w->cap - 1 - w->len)
		n = w->cap - 1 - w->len;
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}

/* CR, LF and other control octets would break a log line: spaces instead. */
static void
reason_clean(char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			*s = ' ';
	}
}

/* Copies a dsn given by a caller into out->dsn, bounded. */
static void
dsn_set(struct dlv_status *out, const char *dsn)
{
	snprintf(out->dsn, sizeof(out->dsn), "%s", dsn == NULL ? "" : dsn);
}

/* Reads 1 to 3 digits at *s; -1 if there are none or more than three. */
static int
dsn_number(const char **s)
{
	int v = 0, n = 0;

	while (**s >= '0' && **s <= '9') {
		if (++n > 3)
			return -1;
		v = v * 10 + (**s - '0');
		(*s)++;
	}
	return n == 0 ? -1 : v;
}

/*
 * Parses "c.s.d" (RFC 3463: class 2, 4 or 5; subject and detail of 1-3
 * digits), nothing after it.  Returns false when enh is absent or
 * malformed, which callers treat alike.
 */
static bool
dsn_parse(const char *enh, int *cls, int *subject, int *detail)
{
	const char *s = enh;

	if (s == NULL)
		return false;
	if ((*cls = dsn_number(&s)) < 0 || *s++ != '.')
		return false;
	if ((*subject = dsn_number(&s)) < 0 || *s++ != '.')
		return false;
	if ((*detail = dsn_number(&s)) < 0 || *s != '\0')
		return false;
	return *cls == 2 || *cls == 4 || *cls == 5;
}

/* Writes "c.s.d"; the parts are at most three digits (dsn_parse), which
 * the modulo tells the compiler too, so it can see the result fits. */
static void
dsn_write(struct dlv_status *out, int cls, int subject, int detail)
{
	snprintf(out->dsn, sizeof(out->dsn), "%u.%u.%u", (unsigned)cls % 10u,
	    (unsigned)subject % 1000u, (unsigned)detail % 1000u);
}

const char *
dlv_fate_name(enum dlv_fate fate)
{
	switch (fate) {
	case DLV_SENT:
		return "sent";
	case DLV_DEFER:
		return "deferred";
	case DLV_BOUNCE:
		return "bounced";
	}
	return "?";
}

const char *
dlv_stage_command(enum dlv_stage st)
{
	switch (st) {
	case DLV_STAGE_EHLO:
		return "EHLO";
	case DLV_STAGE_HELO:
		return "HELO";
	case DLV_STAGE_STARTTLS:
		return "STARTTLS";
	case DLV_STAGE_AUTH:
		return "AUTH";
	case DLV_STAGE_RSET:
		return "RSET";
	case DLV_STAGE_MAIL:
		return "MAIL FROM";
	case DLV_STAGE_RCPT:
		return "RCPT TO";
	case DLV_STAGE_DATA:
		return "DATA";
	case DLV_STAGE_DOT:
		return "end of DATA";
	case DLV_STAGE_GREETING:
		break;
	}
	return "";
}

/* The stages where a 5xx is about this message or recipient. */
static bool
stage_is_transaction(enum dlv_stage st)
{
	return st == DLV_STAGE_MAIL || st == DLV_STAGE_RCPT ||
	    st == DLV_STAGE_DATA || st == DLV_STAGE_DOT;
}

void
dlv_classify_reply(enum dlv_stage st, int code, const char *enh, const char *text,
    const char *relay, struct dlv_status *out)
{
	struct reason_w w = { out->reason, 0, sizeof(out->reason) };
	int cls = code / 100, ecls, subject, detail;
	bool have_enh;

	memset(out, 0, sizeof(*out));
	if (text == NULL)
		text = "";
	if (relay == NULL || *relay == '\0')
		relay = "the upstream";
	have_enh = dsn_parse(enh, &ecls, &subject, &detail);
	if (!have_enh)
		subject = detail = 0;

	if (code >= 200 && code <= 299 && st != DLV_STAGE_DATA) {
		out->fate = DLV_SENT;
		dsn_write(out, 2, subject, detail);
		reason_add(&w, text);
		reason_clean(out->reason);
		return;
	}

	if (st == DLV_STAGE_AUTH && (cls == 4 || cls == 5)) {
		out->fate = DLV_DEFER;
		out->config_problem = true;
		out->auth_refused = true;
		dsn_write(out, 4, 7, subject == 7 ? detail : 0);
		reason_add(&w, "authentication failed: ");
		reason_add(&w, text);
		reason_clean(out->reason);
		return;
	}

	if (cls == 5 && stage_is_transaction(st)) {
		out->fate = DLV_BOUNCE;
		dsn_write(out, 5, subject, detail);
	} else if (cls == 4 || cls == 5) {
		/* 4xx anywhere, 421 anywhere, 5xx before the transaction. */
		out->fate = DLV_DEFER;
		out->config_problem = cls == 5 && st == DLV_STAGE_STARTTLS;
		dsn_write(out, 4, subject, detail);
	} else {
		/* Not a code this dialogue can contain: a protocol error. */
		out->fate = DLV_DEFER;
		dsn_set(out, "4.5.0");
	}

	reason_add(&w, relay);
	if (st == DLV_STAGE_GREETING) {
		reason_add(&w, " refused to talk to us: ");
		reason_add(&w, text);
	} else {
		reason_add(&w, " said: ");
		reason_add(&w, text);
		if (*dlv_stage_command(st) != '\0') {
			reason_add(&w, " (in reply to ");
			reason_add(&w, dlv_stage_command(st));
			reason_add(&w, " command)");
		}
	}
	reason_clean(out->reason);
}

void
dlv_explain(struct dlv_status *st, enum dlv_stage stage, int code, const char *enh,
    bool xoauth2)
{
	const char *hint = NULL;
	bool e = enh != NULL;

	if (stage == DLV_STAGE_AUTH && e && strcmp(enh, "5.7.139") == 0)
		hint = "SMTP AUTH is disabled for this tenant or mailbox: enable it for the mailbox "
		    "(Set-CASMailbox -SmtpClientAuthenticationDisabled $false)";
	else if (stage == DLV_STAGE_AUTH && e && strcmp(enh, "5.7.3") == 0 && xoauth2)
		hint = "the token was not accepted for this mailbox: the app needs the "
		    "SMTP.SendAsApp permission with admin consent, its service principal "
		    "registered in Exchange (New-ServicePrincipal with the Enterprise "
		    "application's object id) and permission on the mailbox "
		    "(Add-MailboxPermission), and username must be that mailbox";
	else if (stage == DLV_STAGE_AUTH && e && strcmp(enh, "5.7.3") == 0)
		hint = "wrong username or password, or SMTP AUTH is not allowed for this mailbox";
	else if (stage == DLV_STAGE_AUTH && e && strcmp(enh, "5.7.30") == 0 && !xoauth2)
		hint = "basic authentication is off for this tenant: use auth = \"xoauth2\"";
	else if (code == 554 && e && strcmp(enh, "5.2.252") == 0) {
		hint = "SendAsDenied: the mailbox relayd signs in as may not send as this "
		    "sender: send from the mailbox's own address, or give it Send As "
		    "permission for the sender";
		/* the admin's to fix, like an authentication failure */
		st->fate = DLV_DEFER;
		st->config_problem = true;
		dsn_set(st, "4.2.252");
	}
	if (hint != NULL) {
		struct reason_w w = { st->reason, strlen(st->reason), sizeof(st->reason) };

		reason_add(&w, " (hint: ");
		reason_add(&w, hint);
		reason_add(&w, ")");
	}
}

/* What each trouble means; indexed by enum dlv_trouble. */
static const struct trouble {
	enum dlv_fate	fate;
	const char	*dsn;
	bool		config_problem;
} troubles[] = {
	[DLV_T_DNS]		= { DLV_DEFER, "4.4.3", false },
	[DLV_T_CONNECT]		= { DLV_DEFER, "4.4.1", false },
	[DLV_T_TLS]		= { DLV_DEFER, "4.7.5", false },
	[DLV_T_NO_STARTTLS]	= { DLV_DEFER, "4.7.4", true },
	[DLV_T_NO_AUTH]		= { DLV_DEFER, "4.7.0", true },
	[DLV_T_TIMEOUT]		= { DLV_DEFER, "4.4.2", false },
	[DLV_T_LOST]		= { DLV_DEFER, "4.4.2", false },
	[DLV_T_PROTOCOL]	= { DLV_DEFER, "4.5.0", false },
	[DLV_T_TOO_BIG]		= { DLV_BOUNCE, "5.3.4", false },
	[DLV_T_NEEDS_SMTPUTF8]	= { DLV_BOUNCE, "5.6.7", false },
	[DLV_T_SPOOL]		= { DLV_DEFER, "4.3.0", false },
	[DLV_T_UNROUTABLE]	= { DLV_DEFER, "4.3.5", true },
	[DLV_T_UNSIGNED]	= { DLV_DEFER, "4.7.0", true },
	[DLV_T_TOKEN]		= { DLV_DEFER, "4.7.0", true },
};

void
dlv_trouble(enum dlv_trouble what, const char *reason, struct dlv_status *out)
{
	struct reason_w w = { out->reason, 0, sizeof(out->reason) };
	const struct trouble *t = &troubles[DLV_T_PROTOCOL];

	if ((size_t)what < sizeof(troubles) / sizeof(troubles[0]))
		t = &troubles[what];
	memset(out, 0, sizeof(*out));
	out->fate = t->fate;
	out->config_problem = t->config_problem;
	dsn_set(out, t->dsn);
	reason_add(&w, reason);
	reason_clean(out->reason);
}

int64_t
dlv_retry_delay(const struct cfg_retry *r, unsigned attempts_made)
{
	double d = r->delay, cap = r->max_delay;

	if (attempts_made == 0)
		return 0;
	/*
	 * Multiplied out in double (relayd does not link libm), stopping at
	 * the cap: a huge attempts_made neither overflows nor loops long,
	 * since with backoff > 1 the cap is reached in a few dozen steps and
	 * with backoff <= 1 the delay never grows.  Products of small
	 * integers are exact, so 60 * 2^4 is 960, not 959.999.
	 */
	if (r->backoff > 1.0) {
		for (unsigned i = 1; i < attempts_made && d < cap; i++)
			d *= r->backoff;
	}
	if (!(d <= cap))	/* also catches NaN */
		d = cap;
	if (d < 0)
		d = 0;
	return (int64_t)(d + 0.5);
}

bool
dlv_final(const struct cfg_retry *r, unsigned attempts_made, struct dlv_status *st)
{
	if (st->fate != DLV_DEFER)
		return false;
	/* The relay's own set-up is wrong (credentials, a token, a domain
	 * no section routes): the message is fine and goes once the admin
	 * fixes it, so it is never returned to its sender. */
	if (st->config_problem)
		return false;
	if (r->attempts > 0 && attempts_made < (unsigned)r->attempts)
		return false;
	st->fate = DLV_BOUNCE;
	return true;
}
