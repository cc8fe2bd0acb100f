/*
 * dmarc — DMARC records (RFC 7489 6.3, 6.4) and organizational domains
 * for `relayctl check-dns` (see dmarc.h).
 *
 * Promises: a record is a policy record only with "v=DMARC1" as its first
 * tag and a valid p= (6.6.3: otherwise a receiver applies no policy); tag
 * names compare without case, "DMARC1" and the policy values as the
 * grammar writes them (receivers differ on case; the record is read as
 * strictly as the RFC's ABNF).
 */
#include "acconfig.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmarc.h"
#include "util.h"

bool
dmarc_is_record(const char *txt)
{
	const char *p = txt;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != 'v' && *p != 'V')
		return false;
	p++;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p++ != '=')
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncmp(p, "DMARC1", 6) != 0)
		return false;
	/* "v=DMARC1 p=none" (a ';' forgotten) is a record, an invalid one */
	return !isalnum((unsigned char)p[6]);
}

const char *
dmarc_policy_name(enum dmarc_policy p)
{
	return p == DMARC_REJECT ? "reject" : p == DMARC_QUARANTINE ? "quarantine" : "none";
}

static int
policy_of(const char *v, enum dmarc_policy *p)
{
	if (strcmp(v, "none") == 0)
		*p = DMARC_NONE;
	else if (strcmp(v, "quarantine") == 0)
		*p = DMARC_QUARANTINE;
	else if (strcmp(v, "reject") == 0)
		*p = DMARC_REJECT;
	else
		return -1;
	return 0;
}

/* s[0..n) with the blanks around it taken off, as a new string. */
static char *
trimmed(const char *s, size_t n)
{
	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	return xstrndup(s, n);
}

static void note(struct dmarc_record *rec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
note(struct dmarc_record *rec, const char *fmt, ...)
{
	va_list ap;

	if (rec->why[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(rec->why, sizeof(rec->why), fmt, ap);
	va_end(ap);
}

/* One tag=value after v and p; problems only noted (receivers use defaults). */
static void
other_tag(struct dmarc_record *rec, const char *tag, const char *val)
{
	char *end;
	long l;

	if (ascii_strcasecmp(tag, "sp") == 0) {
		if (policy_of(val, &rec->sp) == -1)
			note(rec, "sp=%s is not none, quarantine or reject (ignored)", val);
		else
			rec->has_sp = true;
	} else if (ascii_strcasecmp(tag, "pct") == 0) {
		l = strtol(val, &end, 10);
		if (*val == '\0' || *end != '\0' || l < 0 || l > 100)
			note(rec, "pct=%s is not 0 to 100 (ignored)", val);
		else
			rec->pct = (int)l;
	} else if (ascii_strcasecmp(tag, "adkim") == 0 || ascii_strcasecmp(tag, "aspf") == 0) {
		if (strcmp(val, "r") != 0 && strcmp(val, "s") != 0)
			note(rec, "%s is not r or s (ignored)", tag);
	} else if (ascii_strcasecmp(tag, "rua") == 0) {
		if (ascii_strncasecmp(val, "mailto:", 7) != 0)
			note(rec, "rua=%s is not a mailto: address (no reports)", val);
		else
			snprintf(rec->rua, sizeof(rec->rua), "%s", val);
	}
}

int
dmarc_parse(const char *txt, struct dmarc_record *rec)
{
	const char *p = txt;
	int ntag = 0, rc = 0;
	bool has_p = false;

	memset(rec, 0, sizeof(*rec));
	rec->pct = 100;
	if (!dmarc_is_record(txt)) {
		/* (an empty tag first, "; v=DMARC1", is not passed over either) */
		snprintf(rec->why, sizeof(rec->why), "it must begin with v=DMARC1");
		return -1;
	}
	while (*p != '\0' && rc == 0) {
		const char *semi = strchr(p, ';'), *eq;
		size_t len = semi != NULL ? (size_t)(semi - p) : strlen(p);
		char *tag, *val;

		eq = memchr(p, '=', len);
		if (eq == NULL) {
			char *t = trimmed(p, len);

			if (t[0] != '\0') {
				snprintf(rec->why, sizeof(rec->why), "\"%s\" is not tag=value", t);
				rc = -1;
			}
			free(t);
		} else {
			tag = trimmed(p, (size_t)(eq - p));
			val = trimmed(eq + 1, len - (size_t)(eq - p) - 1);
			ntag++;
			if (ntag == 1 && (ascii_strcasecmp(tag, "v") != 0 ||
			    strcmp(val, "DMARC1") != 0)) {
				snprintf(rec->why, sizeof(rec->why), "it must begin with v=DMARC1; "
				    "(found %s=%s)", tag, val);
				rc = -1;
			} else if (ascii_strcasecmp(tag, "p") == 0) {
				if (policy_of(val, &rec->p) == -1) {
					snprintf(rec->why, sizeof(rec->why), "p=%s is not none, "
					    "quarantine or reject", val);
					rc = -1;
				}
				has_p = true;
			} else if (ntag > 1) {
				other_tag(rec, tag, val);
			}
			free(tag);
			free(val);
		}
		p = semi != NULL ? semi + 1 : p + len;
	}
	if (rc == 0 && !has_p) {
		snprintf(rec->why, sizeof(rec->why), "it has no p= (none, quarantine or reject)");
		rc = -1;
	}
	if (rc == 0 && !rec->has_sp)
		rec->sp = rec->p;
	return rc;
}

/*
 * Second-level labels under which registries hand out names (the common
 * ones of the Public Suffix List's ICANN section): "co.uk" and the like
 * are public suffixes, not organizations.
 */
static const char *const sld_suffixes[] = {
	"co.uk", "org.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "me.uk", "net.uk",
	"com.au", "net.au", "org.au", "edu.au", "gov.au", "id.au",
	"co.nz", "org.nz", "net.nz", "ac.nz", "govt.nz",
	"co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp",
	"co.za", "org.za", "com.br", "net.br", "org.br", "com.cn", "net.cn", "org.cn",
	"com.tr", "co.in", "net.in", "org.in", "co.il", "org.il", "com.mx", "com.ar",
	"co.kr", "or.kr", "com.sg", "com.hk", "com.tw", "co.id", "com.my", "co.th",
	"priv.no", "co.no",
};

void
dmarc_org_domain(const char *domain, char *out, size_t outlen)
{
	char *d = xstrdup(domain);
	size_t n = strlen(d), nlabels = 0;
	const char *start[3] = { NULL, NULL, NULL };	/* the last one, two, three labels */
	const char *org;

	if (n > 0 && d[n - 1] == '.')
		d[--n] = '\0';
	ascii_lower(d);
	for (const char *p = d + n; p > d && nlabels < 3; p--)
		if (p[-1] == '.')
			start[nlabels++] = p;
	if (nlabels < 3)
		start[nlabels] = d;	/* the whole name is the next label set */
	org = start[1] != NULL ? start[1] : d;
	for (size_t i = 0; i < sizeof(sld_suffixes) / sizeof(sld_suffixes[0]); i++)
		if (start[1] != NULL && strcmp(start[1], sld_suffixes[i]) == 0)
			org = start[2] != NULL ? start[2] : d;
	snprintf(out, outlen, "%s", org);
	free(d);
}

bool
dmarc_aligned(const char *a, const char *b)
{
	char oa[256], ob[256];

	dmarc_org_domain(a, oa, sizeof(oa));
	dmarc_org_domain(b, ob, sizeof(ob));
	return strcmp(oa, ob) == 0;
}
