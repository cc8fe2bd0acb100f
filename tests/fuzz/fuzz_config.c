/*
 * fuzz_config — relayd.conf (config.c): config_load() on a file holding
 * the input, kept in memory (a memfd, read through /proc/self/fd), so a
 * run costs no disk.  What it names (keys, secrets, CA files) is looked
 * up for real: a path the fuzzer writes that exists on the machine is
 * opened and read as relayd would, which is what an admin's typo does.
 *
 * The host name: a file without `hostname` makes relayd take the
 * machine's, through the resolver when it has no dot; the target runs in
 * a UTS namespace of its own named "fuzz.example.org" when it can (as
 * root), so that no run waits for DNS.
 *
 * Properties:
 *  - a refused file gets at least one problem line, every line is
 *    "FILE:LINE: message" (or "FILE: message") with LINE within the file,
 *    in line order;
 *  - a loaded snapshot keeps the promises its readers rely on: at least
 *    one listen address, absolute spool and control paths, limits within
 *    their ranges, a sane retry schedule everywhere, every domain's
 *    upstream one of the upstreams, lower-case domain names, a valid bcc;
 *    its warnings are "FILE:LINE: warning: ..." lines.
 */
#include "acconfig.h"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "fuzz.h"

static int memfd = -1;
static char path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char name[] = "fuzz.example.org";

	(void)argc, (void)argv;
	if (unshare(CLONE_NEWUTS) == 0)
		(void)sethostname(name, sizeof(name) - 1);
	memfd = memfd_create("relayd-fuzz.conf", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return 0;
}

/* "PATH:LINE: ..." or "PATH: ..."; returns LINE (0 without one). */
static long
msg_line(const char *l, size_t n)
{
	size_t pl = strlen(path);
	long line = 0;

	FUZZ_CHECK(n > pl + 2 && memcmp(l, path, pl) == 0 && l[pl] == ':',
	    "message \"%.*s\" does not start with the file name", (int)n, l);
	l += pl + 1;
	n -= pl + 1;
	if (l[0] == ' ')
		return 0;
	size_t i = 0;
	while (i < n && l[i] >= '0' && l[i] <= '9')
		line = line * 10 + (l[i++] - '0');
	FUZZ_CHECK(i > 0 && i < 8 && i + 1 < n && l[i] == ':' && l[i + 1] == ' ',
	    "message \"%.*s\" is not FILE:LINE: text", (int)n, l);
	return line;
}

static void
check_messages(const char *out, size_t len, long nlines)
{
	long prev = 0;

	FUZZ_CHECK(len > 0, "a refused file without a message");
	for (const char *l = out, *end = out + len; l < end; ) {
		const char *nl = memchr(l, '\n', (size_t)(end - l));

		FUZZ_CHECK(nl != NULL, "the messages do not end with a newline");
		long line = msg_line(l, (size_t)(nl - l));

		FUZZ_CHECK(line <= nlines, "a message for line %ld of a %ld-line file", line, nlines);
		FUZZ_CHECK(line >= prev, "line %ld reported after line %ld", line, prev);
		prev = line;
		l = nl + 1;
	}
}

static bool
is_lower(const char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			return false;
	return true;
}

static void
check_retry(const struct cfg_retry *r)
{
	FUZZ_CHECK(r->attempts >= 1 && r->delay >= 0 && r->max_delay >= r->delay &&
	    r->backoff >= 1.0, "retry %d %d %g %d", r->attempts, r->delay, r->backoff,
	    r->max_delay);
}

static void
check_config(const struct config *cfg, long nlines)
{
	FUZZ_CHECK(cfg->hostname != NULL && cfg->hostname[0] != '\0', "no host name");
	FUZZ_CHECK(strpbrk(cfg->hostname, " \t\r\n") == NULL, "host name \"%s\"", cfg->hostname);
	FUZZ_CHECK(cfg->nlisten >= 1, "nothing to listen on");
	FUZZ_CHECK(cfg->spool[0] == '/' && cfg->control[0] == '/', "relative paths");
	FUZZ_CHECK(cfg->max_message_size >= 1 && cfg->max_recipients >= 1 &&
	    cfg->max_clients >= 1 && cfg->timeout >= 1, "a limit below 1");
	check_retry(&cfg->retry);
	for (size_t i = 0; i < cfg->nupstreams; i++) {
		const struct cfg_upstream *u = &cfg->upstreams[i];

		FUZZ_CHECK(u->name != NULL && u->host != NULL && u->port != 0,
		    "upstream %zu incomplete", i);
		FUZZ_CHECK(u->max_connections >= 1 && u->timeout >= 1 && u->rate >= 0,
		    "upstream %s: limits", u->name);
		FUZZ_CHECK((u->auth == CFG_AUTH_XOAUTH2) == (u->oauth2 != NULL),
		    "upstream %s: oauth2 section and auth disagree", u->name);
		check_retry(&u->retry);
	}
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const struct cfg_domain *d = &cfg->domains[i];

		FUZZ_CHECK(d->name != NULL && is_lower(d->name), "domain name");
		FUZZ_CHECK(d->upstream >= cfg->upstreams &&
		    d->upstream < cfg->upstreams + cfg->nupstreams,
		    "domain %s: no upstream of this configuration", d->name);
		FUZZ_CHECK(d->bcc == NULL || addr_check_mailbox(d->bcc, false) == ADDR_OK,
		    "domain %s: bcc \"%s\"", d->name, d->bcc);
		for (size_t j = 0; j < d->ndkim; j++)
			FUZZ_CHECK(d->dkim[j].selector != NULL && d->dkim[j].key_file != NULL,
			    "domain %s: dkim block %zu incomplete", d->name, j);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(cfg->domains[j].name, d->name) != 0, "domain %s twice",
			    d->name);
	}
	for (size_t i = 0; i < cfg->nwarnings; i++) {
		const char *w = cfg->warnings[i];
		long line = msg_line(w, strlen(w));

		FUZZ_CHECK(line <= nlines && strstr(w, ": warning: ") != NULL, "warning \"%s\"", w);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *out = NULL;
	size_t outlen = 0;
	long nlines = 1;
	FILE *err;
	struct config *cfg;

	if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	for (size_t i = 0; i < size; i++)
		nlines += data[i] == '\n';
	if ((err = open_memstream(&out, &outlen)) == NULL)
		abort();
	cfg = config_load(path, err);
	fclose(err);
	if (cfg == NULL) {
		check_messages(out, outlen, nlines);
	} else {
		FUZZ_CHECK(outlen == 0, "a loaded file printed \"%s\"", out);
		check_config(cfg, nlines);
		config_free(cfg);
	}
	free(out);
	return 0;
}
