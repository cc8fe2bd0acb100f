/*
 * fakedns — a zone in memory for the check-dns unit tests (see fakedns.h).
 */
#include <stdlib.h>
#include <string.h>

#include "fakedns.h"
#include "util.h"

static bool
name_exists(const struct fake_rr *z, const char *name)
{
	size_t n = strlen(name);

	for (; z->name != NULL; z++) {
		size_t m = strlen(z->name);

		if (ascii_strcasecmp(z->name, name) == 0 ||
		    (m > n && z->name[m - n - 1] == '.' &&
		    ascii_strcasecmp(z->name + m - n, name) == 0))
			return true;
	}
	return false;
}

static void
push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
}

static const struct dns_answer *
fake_lookup(void *ctx, const char *name, enum dns_type type)
{
	struct fakedns *f = ctx;
	struct dns_answer *a = xcalloc(1, sizeof(*a));
	const char *cur = name;
	const char *cname;

	f->lookups++;
	f->answers = xrealloc(f->answers, (f->nanswers + 1) * sizeof(*f->answers));
	f->answers[f->nanswers++] = a;
	for (int hop = 0; hop < DNS_MAX_CNAME; hop++) {
		cname = NULL;
		for (const struct fake_rr *z = f->zone; z->name != NULL; z++) {
			if (ascii_strcasecmp(z->name, cur) != 0)
				continue;
			if (z->type == FAKE_SERVFAIL) {
				a->status = DNS_ERROR;
				strcpy(a->why, "127.0.0.1 answered SERVFAIL");
				return a;
			}
			if (z->type == (int)type)
				push(&a->rr, &a->n, z->value);
			else if (z->type == DNS_T_CNAME)
				cname = z->value;
		}
		if (a->n > 0) {
			a->status = DNS_ANSWER;
			return a;
		}
		if (cname == NULL || type == DNS_T_CNAME)
			break;
		push(&a->chain, &a->nchain, cname);
		cur = a->chain[a->nchain - 1];
	}
	a->status = name_exists(f->zone, cur) ? DNS_NODATA : DNS_NXDOMAIN;
	return a;
}

struct dns_source
fakedns_source(struct fakedns *f, const struct fake_rr *zone)
{
	struct dns_source s = { fake_lookup, f };

	memset(f, 0, sizeof(*f));
	f->zone = zone;
	return s;
}

void
fakedns_free(struct fakedns *f)
{
	for (size_t i = 0; i < f->nanswers; i++) {
		struct dns_answer *a = f->answers[i];

		for (size_t j = 0; j < a->n; j++)
			free(a->rr[j]);
		for (size_t j = 0; j < a->nchain; j++)
			free(a->chain[j]);
		free(a->rr);
		free(a->chain);
		free(a);
	}
	free(f->answers);
	memset(f, 0, sizeof(*f));
}
