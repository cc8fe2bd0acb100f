/*
 * check_config — relayd.conf loading: every key with its value, the
 * defaults, and each class of error with its exact "FILE:LINE: message".
 * Each test works in its own temporary directory holding the config and the
 * secret/key files it names (mode 0600 or deliberately 0644).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "suites.h"

static char tmpdir[PATH_MAX];
static char confpath[PATH_MAX + 32];

/* Replaces @D@ by the temp dir and @F@ by the config path; caller frees. */
static char *
subst(const char *tmpl)
{
	size_t cap = strlen(tmpl) * 2 + 4 * PATH_MAX, len = 0;
	char *out = malloc(cap);

	ck_assert_ptr_nonnull(out);
	while (*tmpl != '\0') {
		const char *rep = NULL;

		if (strncmp(tmpl, "@D@", 3) == 0)
			rep = tmpdir;
		else if (strncmp(tmpl, "@F@", 3) == 0)
			rep = confpath;
		if (rep != NULL) {
			size_t n = strlen(rep);

			if (len + n + 1 >= cap)
				out = realloc(out, cap = (len + n + 1) * 2);
			memcpy(out + len, rep, n);
			len += n;
			tmpl += 3;
		} else {
			if (len + 2 >= cap)
				out = realloc(out, cap *= 2);
			out[len++] = *tmpl++;
		}
	}
	out[len] = '\0';
	return out;
}

static void
write_file(const char *path, const char *content, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_msg(fd != -1, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void
write_in_dir(const char *name, const char *content, mode_t mode)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	write_file(path, content, strlen(content), mode);
}

static void
setup(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/check_config.XXXXXX",
	    base != NULL && *base != '\0' ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(confpath, sizeof(confpath), "%s/relayd.conf", tmpdir);
	write_in_dir("ok.secret", "s3cret\n", 0600);
	write_in_dir("open.secret", "s3cret\n", 0644);
	write_in_dir("empty.secret", "\n", 0600);
	write_in_dir("ok.key", "-----BEGIN PRIVATE KEY-----\n", 0600);
	write_in_dir("e.key", "-----BEGIN PRIVATE KEY-----\n", 0400);
	write_in_dir("open.key", "-----BEGIN PRIVATE KEY-----\n", 0644);
	write_in_dir("group.key", "-----BEGIN PRIVATE KEY-----\n", 0640);
	write_in_dir("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
teardown(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes the config (after subst) and loads it; *errs gets what was printed. */
static struct config *
load(const char *tmpl, char **errs)
{
	char *text = subst(tmpl);
	size_t errlen = 0;
	FILE *err;
	struct config *cfg;

	write_file(confpath, text, strlen(text), 0644);
	free(text);
	err = open_memstream(errs, &errlen);
	ck_assert_ptr_nonnull(err);
	cfg = config_load(confpath, err);
	fclose(err);
	return cfg;
}

/* Loads tmpl, which must be valid: no output, a snapshot. */
static struct config *
load_ok(const char *tmpl)
{
	char *errs = NULL;
	struct config *cfg = load(tmpl, &errs);

	ck_assert_msg(cfg != NULL, "config rejected:\n%s", errs);
	ck_assert_str_eq(errs, "");
	free(errs);
	return cfg;
}

/* ---- a full configuration ------------------------------------------- */

static const char full_conf[] =
	"hostname = \"relay.example.com\"\n"				/* 1 */
	"listen = { \"127.0.0.1:2525\",\n"				/* 2 */
	"           \"[::1]:2526\" }\n"					/* 3 */
	"spool = \"/var/tmp/relayd-spool\"\n"				/* 4 */
	"control = \"/run/relayd-test/control.sock\"\n"			/* 5 */
	"user = \"root\"\n"						/* 6 */
	"allow = { \"127.0.0.0/8\", \"::1/128\", \"10.1.0.0/16\" }\n"	/* 7 */
	"max_message_size = 1048576\n"					/* 8 */
	"max_recipients = 50\n"						/* 9 */
	"max_clients = 20\n"						/* 10 */
	"timeout = 120\n"						/* 11 */
	"bounces = false\n"						/* 12 */
	"retry {\n"							/* 13 */
	"  attempts = 7\n"						/* 14 */
	"  delay = 30\n"						/* 15 */
	"  backoff = 1.5\n"						/* 16 */
	"  max_delay = 600\n"						/* 17 */
	"}\n"								/* 18 */
	"# the main provider\n"						/* 19 */
	"upstream \"mailgun\" {\n"					/* 20 */
	"  host = \"smtp.eu.mailgun.org\"\n"				/* 21 */
	"  port = 2587\n"						/* 22 */
	"  tls = \"starttls\"\n"					/* 23 */
	"  tls_verify = false\n"					/* 24 */
	"  tls_ca_file = \"@D@/ca.pem\"\n"				/* 25 */
	"  auth = \"login\"\n"						/* 26 */
	"  username = \"postmaster@mg.example.com\"\n"			/* 27 */
	"  password_file = \"@D@/ok.secret\"\n"				/* 28 */
	"  max_connections = 2\n"					/* 29 */
	"  rate = 30\n"							/* 30 */
	"  spf = \"include:mailgun.org\"\n"				/* 31 */
	"  retry { attempts = 2  delay = 5 }\n"				/* 32 */
	"}\n"								/* 33 */
	"upstream \"own\" { host = \"10.0.0.1\"  tls = \"none\" }\n"	/* 34 */
	"upstream \"sendgrid\" {\n"					/* 35 */
	"  host = \"smtp.sendgrid.net\"\n"				/* 36 */
	"  tls = \"tls\"\n"						/* 37 */
	"  username = \"apikey\"\n"					/* 38 */
	"  password = 'SG.abc$x'\n"					/* 39 */
	"}\n"								/* 40 */
	"/* sender domains */\n"					/* 41 */
	"domain \"Example.COM\" {\n"					/* 42 */
	"  upstream = \"mailgun\"\n"					/* 43 */
	"  dkim {\n"							/* 44 */
	"    selector = \"s1\"\n"					/* 45 */
	"    key_file = \"@D@/ok.key\"\n"				/* 46 */
	"  }\n"								/* 47 */
	"  dkim { selector = \"e1\"  key_file = \"@D@/e.key\"  algorithm = \"ed25519-sha256\" }\n" /* 48 */
	"  bcc = \"archive@example.com\"\n"				/* 49 */
	"}\n"								/* 50 */
	"domain \"*.example.org\" { upstream = \"sendgrid\" }\n"	/* 51 */
	"domain \"*\" {\n"						/* 52 */
	"  upstream = \"own\"\n"					/* 53 */
	"}\n";								/* 54 */

START_TEST(test_full)
{
	struct config *cfg = load_ok(full_conf);
	char path[PATH_MAX + 64];

	ck_assert_str_eq(cfg->path, confpath);
	ck_assert_str_eq(cfg->hostname, "relay.example.com");
	ck_assert_uint_eq(cfg->nlisten, 2);
	ck_assert_str_eq(cfg->listen[0].spec, "127.0.0.1:2525");
	ck_assert_str_eq(cfg->listen[0].hp.host, "127.0.0.1");
	ck_assert_uint_eq(cfg->listen[0].hp.port, 2525);
	ck_assert_int_eq(cfg->listen[0].line, 2);
	ck_assert_str_eq(cfg->listen[1].hp.host, "::1");
	ck_assert_uint_eq(cfg->listen[1].hp.port, 2526);
	ck_assert_int_eq(cfg->listen[1].line, 3);
	ck_assert_str_eq(cfg->spool, "/var/tmp/relayd-spool");
	ck_assert_str_eq(cfg->control, "/run/relayd-test/control.sock");
	ck_assert_str_eq(cfg->user, "root");
	ck_assert_uint_eq(cfg->nallow, 3);
	ck_assert_int_eq(cfg->allow[0].family, AF_INET);
	ck_assert_int_eq(cfg->allow[0].prefix, 8);
	ck_assert_int_eq(cfg->allow[1].family, AF_INET6);
	ck_assert_int_eq(cfg->allow[1].prefix, 128);
	ck_assert_int_eq(cfg->allow[2].prefix, 16);
	ck_assert_uint_eq(cfg->allow[2].addr[1], 1);
	ck_assert_uint_eq(cfg->max_message_size, 1048576);
	ck_assert_int_eq(cfg->max_recipients, 50);
	ck_assert_int_eq(cfg->max_clients, 20);
	ck_assert_int_eq(cfg->timeout, 120);
	ck_assert(!cfg->bounces);
	ck_assert_int_eq(cfg->retry.attempts, 7);
	ck_assert_int_eq(cfg->retry.delay, 30);
	ck_assert_double_eq(cfg->retry.backoff, 1.5);
	ck_assert_int_eq(cfg->retry.max_delay, 600);

	ck_assert_uint_eq(cfg->nupstreams, 3);
	const struct cfg_upstream *mg = &cfg->upstreams[0];
	ck_assert_str_eq(mg->name, "mailgun");
	ck_assert_int_eq(mg->line, 20);
	ck_assert_str_eq(mg->host, "smtp.eu.mailgun.org");
	ck_assert_uint_eq(mg->port, 2587);
	ck_assert_int_eq(mg->tls, CFG_TLS_STARTTLS);
	ck_assert(!mg->tls_verify);
	snprintf(path, sizeof(path), "%s/ca.pem", tmpdir);
	ck_assert_str_eq(mg->tls_ca_file, path);
	ck_assert_int_eq(mg->auth, CFG_AUTH_LOGIN);
	ck_assert_str_eq(mg->username, "postmaster@mg.example.com");
	ck_assert_str_eq(mg->password, "s3cret");
	snprintf(path, sizeof(path), "%s/ok.secret", tmpdir);
	ck_assert_str_eq(mg->password_file, path);
	ck_assert_int_eq(mg->max_connections, 2);
	ck_assert_int_eq(mg->rate, 30);
	ck_assert_str_eq(mg->spf, "include:mailgun.org");
	ck_assert(mg->retry_overridden);
	ck_assert_int_eq(mg->retry.attempts, 2);
	ck_assert_int_eq(mg->retry.delay, 5);
	ck_assert_double_eq(mg->retry.backoff, 1.5);	/* from the global retry */
	ck_assert_int_eq(mg->retry.max_delay, 600);	/* from the global retry */

	const struct cfg_upstream *own = &cfg->upstreams[1];
	ck_assert_str_eq(own->name, "own");
	ck_assert_int_eq(own->line, 34);
	ck_assert_int_eq(own->tls, CFG_TLS_NONE);
	ck_assert_uint_eq(own->port, 25);
	ck_assert_int_eq(own->auth, CFG_AUTH_NONE);
	ck_assert(own->tls_verify);
	ck_assert_ptr_null(own->username);
	ck_assert_ptr_null(own->password);
	ck_assert_ptr_null(own->tls_ca_file);
	ck_assert_ptr_null(own->spf);
	ck_assert_int_eq(own->max_connections, 4);
	ck_assert_int_eq(own->rate, 0);
	ck_assert(!own->retry_overridden);
	ck_assert_int_eq(own->retry.attempts, 7);
	ck_assert_int_eq(own->retry.max_delay, 600);

	const struct cfg_upstream *sg = &cfg->upstreams[2];
	ck_assert_int_eq(sg->tls, CFG_TLS_IMPLICIT);
	ck_assert_uint_eq(sg->port, 465);
	ck_assert_int_eq(sg->auth, CFG_AUTH_PLAIN);	/* implied by username */
	ck_assert_str_eq(sg->password, "SG.abc$x");
	ck_assert_ptr_null(sg->password_file);

	ck_assert_uint_eq(cfg->ndomains, 3);
	const struct cfg_domain *d = &cfg->domains[0];
	ck_assert_str_eq(d->name, "example.com");
	ck_assert_int_eq(d->line, 42);
	ck_assert_ptr_eq(d->upstream, mg);
	ck_assert_uint_eq(d->ndkim, 2);
	ck_assert_str_eq(d->dkim[0].selector, "s1");
	snprintf(path, sizeof(path), "%s/ok.key", tmpdir);
	ck_assert_str_eq(d->dkim[0].key_file, path);
	ck_assert_int_eq(d->dkim[0].algorithm, CFG_DKIM_RSA_SHA256);
	ck_assert_int_eq(d->dkim[0].line, 44);
	ck_assert_str_eq(d->dkim[1].selector, "e1");
	ck_assert_int_eq(d->dkim[1].algorithm, CFG_DKIM_ED25519_SHA256);
	ck_assert_int_eq(d->dkim[1].line, 48);
	ck_assert_str_eq(d->bcc, "archive@example.com");
	ck_assert_str_eq(cfg->domains[1].name, "*.example.org");
	ck_assert_ptr_eq(cfg->domains[1].upstream, sg);
	ck_assert_uint_eq(cfg->domains[1].ndkim, 0);
	ck_assert_ptr_null(cfg->domains[1].bcc);
	ck_assert_str_eq(cfg->domains[2].name, "*");
	ck_assert_int_eq(cfg->domains[2].line, 52);
	ck_assert_ptr_eq(cfg->domains[2].upstream, own);
	config_free(cfg);
}
END_TEST

START_TEST(test_defaults)
{
	/* Only comments: every value is the default. */
	struct config *cfg = load_ok("# nothing here\n// nor here\n/* nor\n here */\n");

	ck_assert_ptr_nonnull(cfg->hostname);
	ck_assert(cfg->hostname[0] != '\0');
	ck_assert_ptr_null(strpbrk(cfg->hostname, " \t\r\n"));
	ck_assert_uint_eq(cfg->nlisten, 1);
	ck_assert_str_eq(cfg->listen[0].spec, CONFIG_DEFAULT_LISTEN);
	ck_assert_str_eq(cfg->listen[0].hp.host, "127.0.0.1");
	ck_assert_uint_eq(cfg->listen[0].hp.port, 2525);
	ck_assert_str_eq(cfg->spool, CONFIG_DEFAULT_SPOOL);
	ck_assert_str_eq(cfg->control, CONFIG_DEFAULT_CONTROL);
	ck_assert_ptr_null(cfg->user);
	ck_assert_uint_eq(cfg->nallow, 2);
	ck_assert_int_eq(cfg->allow[0].family, AF_INET);
	ck_assert_int_eq(cfg->allow[0].prefix, 8);
	ck_assert_uint_eq(cfg->allow[0].addr[0], 127);
	ck_assert_int_eq(cfg->allow[1].family, AF_INET6);
	ck_assert_int_eq(cfg->allow[1].prefix, 128);
	ck_assert_uint_eq(cfg->max_message_size, 26214400);
	ck_assert_int_eq(cfg->max_recipients, 100);
	ck_assert_int_eq(cfg->max_clients, 1000);
	ck_assert_int_eq(cfg->timeout, 300);
	ck_assert(cfg->bounces);
	ck_assert_int_eq(cfg->retry.attempts, 5);
	ck_assert_int_eq(cfg->retry.delay, 60);
	ck_assert_double_eq(cfg->retry.backoff, 2.0);
	ck_assert_int_eq(cfg->retry.max_delay, 3600);
	ck_assert_uint_eq(cfg->nupstreams, 0);
	ck_assert_uint_eq(cfg->ndomains, 0);
	config_free(cfg);

	/* An empty file too. */
	cfg = load_ok("");
	ck_assert_int_eq(cfg->timeout, 300);
	config_free(cfg);
}
END_TEST

START_TEST(test_upstream_defaults)
{
	struct config *cfg = load_ok(
	    "upstream \"a\" { host = \"a.example\" }\n"
	    "upstream \"b\" { host = \"b.example\"  tls = \"tls\" }\n"
	    "upstream \"c\" { host = \"c.example\"  tls = \"none\" }\n"
	    "upstream \"d\" { host = \"d.example\"  tls = \"tls\"  port = 2465 }\n");

	ck_assert_uint_eq(cfg->upstreams[0].port, 587);
	ck_assert_int_eq(cfg->upstreams[0].tls, CFG_TLS_STARTTLS);
	ck_assert(cfg->upstreams[0].tls_verify);
	ck_assert_int_eq(cfg->upstreams[0].auth, CFG_AUTH_NONE);
	ck_assert_int_eq(cfg->upstreams[0].max_connections, 4);
	ck_assert_int_eq(cfg->upstreams[0].rate, 0);
	ck_assert_int_eq(cfg->upstreams[0].retry.attempts, 5);
	ck_assert_int_eq(cfg->upstreams[0].retry.delay, 60);
	ck_assert_uint_eq(cfg->upstreams[1].port, 465);
	ck_assert_uint_eq(cfg->upstreams[2].port, 25);
	ck_assert_uint_eq(cfg->upstreams[3].port, 2465);
	config_free(cfg);
}
END_TEST

START_TEST(test_retry_override)
{
	struct config *cfg = load_ok(
	    "retry { attempts = 9  delay = 10  backoff = 3  max_delay = 100 }\n"
	    "upstream \"a\" { host = \"a.example\"  retry { max_delay = 50  backoff = 1 } }\n"
	    "upstream \"b\" { host = \"b.example\" }\n");

	ck_assert(cfg->upstreams[0].retry_overridden);
	ck_assert_int_eq(cfg->upstreams[0].retry.attempts, 9);
	ck_assert_int_eq(cfg->upstreams[0].retry.delay, 10);
	ck_assert_double_eq(cfg->upstreams[0].retry.backoff, 1.0);
	ck_assert_int_eq(cfg->upstreams[0].retry.max_delay, 50);
	ck_assert(!cfg->upstreams[1].retry_overridden);
	ck_assert_double_eq(cfg->upstreams[1].retry.backoff, 3.0);
	ck_assert_int_eq(cfg->upstreams[1].retry.max_delay, 100);
	config_free(cfg);
}
END_TEST

/* libconfuse 3.3 alone rejects comments inside a list (its issue #150). */
START_TEST(test_comments_in_lists)
{
	struct config *cfg = load_ok(
	    "listen = {\n"
	    "  \"127.0.0.1:2525\",   # IPv4\n"
	    "  // \"[::1]:2525\",\n"
	    "  \"[::1]:2526\"  /* IPv6 */\n"
	    "}\n"
	    "allow = { \"10.0.0.0/8\" /* a, \"b\" */ , \"::1\" }  # \"c\"\n"
	    "spool = \"/h#1//2/*3*/\"  control = '/s#p\\'//'\n");

	ck_assert_uint_eq(cfg->nlisten, 2);
	ck_assert_int_eq(cfg->listen[0].line, 2);
	ck_assert_str_eq(cfg->listen[1].spec, "[::1]:2526");
	ck_assert_int_eq(cfg->listen[1].line, 4);
	ck_assert_uint_eq(cfg->nallow, 2);
	ck_assert_int_eq(cfg->allow[1].prefix, 128);
	/* Comment marks inside quotes are not comments. */
	ck_assert_str_eq(cfg->spool, "/h#1//2/*3*/");
	ck_assert_str_eq(cfg->control, "/s#p'//");
	config_free(cfg);
}
END_TEST

/*
 * What libconfuse 3.3's lexer (src/lexer.l) takes for a comment: "#", "//"
 * and "/" "*" where a token starts, never inside a token nor a quoted
 * string; an unquoted value runs until a blank, a quote, "#" or one of
 * = { } ( ) + , *.  relayd blanks comments before libconfuse reads the file
 * (see config.c), so it must draw the same lines: the password and the line
 * of the domain after it are what libconfuse alone makes of each text.
 */
static const struct {
	const char	*line;		/* the password line of an upstream */
	const char	*password;
	int		 dline;		/* line of the domain section after it */
} unquoted[] = {
	{ "password = pa//ss", "pa//ss", 6 },
	{ "password = pa//ss // a comment", "pa//ss", 6 },
	{ "password = pa//ss # a comment", "pa//ss", 6 },
	{ "password = pa//ss /* a comment */", "pa//ss", 6 },
	{ "password = pa//ss/ /* a */ /* b */ // c", "pa//ss/", 6 },
	{ "password = /pa/ss//", "/pa/ss//", 6 },
	{ "password = pa$x//y", "pa$x//y", 6 },
	{ "password = pa//ss\r", "pa//ss", 6 },		/* CRLF */
	{ "password = pa#ss", "pa", 6 },		/* "#" always starts one */
	{ "password = \"pa//ss\" // c", "pa//ss", 6 },
	{ "password = \"p#a//s/*s*/\" # c", "p#a//s/*s*/", 6 },
	{ "password = 'p#a//s/*s*/' /* c */", "p#a//s/*s*/", 6 },
	{ "password = \"p\\\"a//ss\" // c", "p\"a//ss", 6 },
	{ "password = 'p\\'a#ss' # c", "p'a#ss", 6 },
	{ "password = \"p\\\\\" // c", "p\\", 6 },
	{ "password = 'p\\\\' // c", "p\\", 6 },
	{ "/* \"x */ password = pw", "pw", 6 },
	{ "/* 'x */ password = pw /* \" */", "pw", 6 },
	{ "# \"x\n  password = pw", "pw", 7 },
	{ "// 'x\n  password = pw", "pw", 7 },
	{ "/* a\n  b // c # d\n */ password = pw", "pw", 8 },
	{ "/*/ password = x */ password = pw", "pw", 6 },
	{ "password = 'p\nw' // c", "p\nw", 7 },
	{ "password = \"p\\\nw\" // c", "pw", 7 },
	{ "password = \"a${RELAYD_CHECK_PW}//b\" # c", "aenv//b", 6 },
	{ "password = \"a${RELAYD_CHECK_NONE\"x}b\" // c", "ab", 6 },
	{ "password = ${RELAYD_CHECK_PW}//c", "env", 6 },
	{ "password = '${RELAYD_CHECK_PW}//c'", "${RELAYD_CHECK_PW}//c", 6 },
};

START_TEST(test_comment_marks_in_values)
{
	char text[512];
	struct config *cfg;

	setenv("RELAYD_CHECK_PW", "env", 1);
	unsetenv("RELAYD_CHECK_NONE");
	snprintf(text, sizeof(text),
	    "upstream \"u\" {\n"
	    "  host = \"h.example\"\n"
	    "  username = \"me\"\n"
	    "  %s\n"
	    "}\n"
	    "domain \"example.com\" { upstream = \"u\" }\n", unquoted[_i].line);
	cfg = load_ok(text);
	ck_assert_msg(strcmp(cfg->upstreams[0].password, unquoted[_i].password) == 0,
	    "case %d: password \"%s\", libconfuse reads \"%s\"", _i, cfg->upstreams[0].password,
	    unquoted[_i].password);
	ck_assert_int_eq(cfg->domains[0].line, unquoted[_i].dline);
	config_free(cfg);
}
END_TEST

/* Comment marks inside paths and lists, unquoted. */
START_TEST(test_comment_marks_in_paths)
{
	struct config *cfg = load_ok(
	    "spool = /var//spool/relayd//\n"
	    "allow = { 10.0.0.0/8, //a\n"
	    "  ::1/128 /* b */, 192.0.2.0/24# c\n"
	    "}\n"
	    "control = /run//relayd.sock // d\n");

	ck_assert_str_eq(cfg->spool, "/var//spool/relayd//");
	ck_assert_str_eq(cfg->control, "/run//relayd.sock");
	ck_assert_uint_eq(cfg->nallow, 3);
	ck_assert_int_eq(cfg->allow[1].family, AF_INET6);
	ck_assert_int_eq(cfg->allow[2].prefix, 24);
	config_free(cfg);
}
END_TEST

/* ---- tls = "none" with auth: allowed, with a warning ------------------ */

START_TEST(test_tls_none_auth_warns)
{
	char *want;
	struct config *cfg = load_ok(
	    "upstream \"space2u\" {\n"
	    "  host = \"mail.domain.se\"\n"
	    "  port = 2525\n"
	    "  tls = \"none\"\n"
	    "  auth = \"plain\"\n"
	    "  username = \"me\"\n"
	    "  password = \"pw\"\n"
	    "}\n"
	    "upstream \"implied\" {\n"
	    "  host = \"mail.example.net\"\n"
	    "  username = \"me\"\n"
	    "  password_file = \"@D@/ok.secret\"\n"
	    "  tls = \"none\"\n"
	    "}\n"
	    "upstream \"noauth\" { host = \"a.example\"  tls = \"none\" }\n"
	    "upstream \"tls\" { host = \"b.example\"  tls = \"tls\"  username = \"u\"  password = \"p\" }\n");

	/* accepted as written; the password of the second one comes from its file */
	for (size_t i = 0; i < 2; i++)
		ck_assert(cfg->upstreams[i].tls == CFG_TLS_NONE &&
		    cfg->upstreams[i].auth == CFG_AUTH_PLAIN &&
		    cfg->upstreams[i].port == (i == 0 ? 2525 : 25) &&
		    strcmp(cfg->upstreams[i].password, i == 0 ? "pw" : "s3cret") == 0);
	/* one warning per upstream that sends a password in clear, at its tls line */
	ck_assert_uint_eq(cfg->nwarnings, 2);
	want = subst("@F@:4: warning: upstream space2u sends its password without TLS");
	ck_assert_str_eq(cfg->warnings[0], want);
	free(want);
	want = subst("@F@:13: warning: upstream implied sends its password without TLS");
	ck_assert_str_eq(cfg->warnings[1], want);
	free(want);
	config_free(cfg);

	cfg = load_ok("upstream \"u\" { host = \"a.example\"  tls = \"none\"  auth = \"none\" "
	    "username = \"me\"  password = \"pw\" }\n");
	ck_assert_uint_eq(cfg->nwarnings, 0);
	config_free(cfg);
}
END_TEST

/* With errors as well, the warning is printed among them, in line order. */
START_TEST(test_tls_none_auth_warns_among_errors)
{
	char *errs = NULL;
	char *want = subst(
	    "@F@:1: timeout = 0 is out of range (1 to 86400)\n"
	    "@F@:4: warning: upstream u sends its password without TLS\n"
	    "@F@:7: max_clients = 0 is out of range (1 to 1000000)\n");
	struct config *cfg = load(
	    "timeout = 0\n"
	    "upstream \"u\" {\n"
	    "  host = \"a.example\"\n"
	    "  tls = \"none\"\n"
	    "  username = \"me\"  password = \"pw\"\n"
	    "}\n"
	    "max_clients = 0\n", &errs);

	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(errs, want);
	free(errs);
	free(want);
}
END_TEST

/* ---- password files --------------------------------------------------- */

static const struct {
	const char	*content;
	size_t		 len;
	const char	*password;
} secrets[] = {
	{ "pw\n", 3, "pw" },
	{ "pw\r\n", 4, "pw" },
	{ "pw", 2, "pw" },
	{ "pw\n\n", 4, "pw\n" },	/* only one newline is dropped */
	{ " p w \n", 6, " p w " },	/* spaces are part of it */
};

START_TEST(test_password_file_newline)
{
	char path[PATH_MAX + 64];
	struct config *cfg;

	snprintf(path, sizeof(path), "%s/pw.secret", tmpdir);
	write_file(path, secrets[_i].content, secrets[_i].len, 0600);
	cfg = load_ok("upstream \"u\" {\n"
	    "  host = \"h.example\"\n"
	    "  username = \"me\"\n"
	    "  password_file = \"@D@/pw.secret\"\n"
	    "}\n");
	ck_assert_str_eq(cfg->upstreams[0].password, secrets[_i].password);
	config_free(cfg);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

static const struct {
	const char	*conf;
	const char	*errors;	/* exact, after subst */
	bool		 prefix;	/* errors is only the start (text from net.c) */
} bad[] = {
	/* unknown keys */
	{ "hostname = \"a.example\"\nfoo = 1\n",
	  "@F@:2: unknown key \"foo\"\n", false },
	{ "upstream \"u\" {\n  host = \"h\"\n  hots = \"x\"\n}\n",
	  "@F@:3: unknown key \"hots\" in upstream \"u\"\n", false },
	{ "upstream \"u\" { host = \"h\" }\ndomain \"a.example\" {\n upstream = \"u\"\n"
	  " dkim {\n  selector = \"s\"\n  key = \"x\"\n }\n}\n",
	  "@F@:6: unknown key \"key\" in dkim section\n", false },
	/* line numbers stay right after every kind of comment */
	{ "# a\n// b\n/* c\n d */\n\ntimeout = 0 # x\n",
	  "@F@:6: timeout = 0 is out of range (1 to 86400)\n", false },
	{ "spool = \"/a#b\" # c\ntimeout = 0\n",
	  "@F@:2: timeout = 0 is out of range (1 to 86400)\n", false },
	/* duplicates */
	{ "upstream \"u\" {\n  host = \"a\"\n}\n\nupstream \"u\" {\n  host = \"b\"\n}\n",
	  "@F@:5: upstream \"u\" is defined twice (first at line 1)\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"Example.com\" { upstream = \"u\" }\n"
	  "domain \"example.COM\" { upstream = \"u\" }\n",
	  "@F@:3: domain example.com is defined twice (first at line 2)\n", false },
	{ "upstream \"my relay\" {\n  host = \"a\"\n}\n",
	  "@F@:1: upstream \"my relay\": a name is made of letters, digits, \".\", \"-\" and \"_\"\n", false },
	/* references */
	{ "upstream \"u\" {\n  host = \"a\"\n}\ndomain \"example.com\" {\n\n  upstream = \"x\"\n}\n",
	  "@F@:6: domain example.com: upstream \"x\" is not defined\n", false },
	{ "domain \"example.com\" {\n}\n",
	  "@F@:1: domain example.com: upstream is required\n", false },
	/* secrets */
	{ "upstream \"u\" {\n  host = \"a\"\n  username = \"me\"\n"
	  "  password_file = \"@D@/open.secret\"\n}\n",
	  "@F@:4: password_file @D@/open.secret is readable by others (mode 0644); chmod 600 it\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  username = \"me\"\n"
	  "  password_file = \"@D@/missing.secret\"\n}\n",
	  "@F@:4: password_file @D@/missing.secret: No such file or directory\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  username = \"me\"\n"
	  "  password_file = \"@D@/empty.secret\"\n}\n",
	  "@F@:4: password_file @D@/empty.secret is empty\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  username = \"me\"\n"
	  "  password_file = \"@D@\"\n}\n",
	  "@F@:4: password_file @D@ is not a regular file\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  username = \"me\"\n  password = \"x\"\n"
	  "  password_file = \"@D@/ok.secret\"\n}\n",
	  "@F@:5: upstream u: password and password_file are both set; keep one\n", false },
	/* auth and tls */
	{ "upstream \"u\" {\n  host = \"a\"\n  auth = \"xoauth2\"\n}\n",
	  "@F@:3: upstream u: auth xoauth2 needs a username: the mailbox it sends as\n"
	  "@F@:3: upstream u: auth xoauth2 needs an oauth2 { provider = ... } section\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  auth = \"cram-md5\"\n}\n",
	  "@F@:3: upstream u: auth must be \"plain\", \"login\", \"xoauth2\" or \"none\", not "
	  "\"cram-md5\"\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  auth = \"plain\"\n  username = \"me\"\n}\n",
	  "@F@:3: upstream u: auth plain needs password or password_file\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  auth = \"login\"\n  password = \"pw\"\n}\n",
	  "@F@:3: upstream u: auth login needs a username\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  tls = \"ssl\"\n}\n",
	  "@F@:3: upstream u: tls must be \"starttls\", \"tls\" or \"none\", not \"ssl\"\n", false },
	{ "upstream \"u\" {\n  port = 25\n}\n",
	  "@F@:1: upstream u: host is required\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  tls_ca_file = \"@D@/nope.pem\"\n}\n",
	  "@F@:3: tls_ca_file @D@/nope.pem: No such file or directory\n", false },
	/* DKIM */
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    selector = \"s1\"\n    key_file = \"@D@/open.key\"\n  }\n}\n",
	  "@F@:6: key_file @D@/open.key is readable by others (mode 0644); chmod 600 it\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    selector = \"s1\"\n    key_file = \"@D@/group.key\"\n  }\n}\n",
	  "@F@:6: key_file @D@/group.key is readable by others (mode 0640); chmod 600 it\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    selector = \"s1\"\n    key_file = \"@D@/no.key\"\n  }\n}\n",
	  "@F@:6: key_file @D@/no.key: No such file or directory\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    key_file = \"@D@/ok.key\"\n  }\n}\n",
	  "@F@:4: domain example.com: dkim: selector is required\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    selector = \"s1\"\n  }\n}\n",
	  "@F@:4: domain example.com: dkim s1: key_file is required\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim { selector = \"s1\"  key_file = \"@D@/ok.key\" }\n"
	  "  dkim { selector = \"s2\"  key_file = \"@D@/ok.key\" }\n"
	  "  dkim {\n    selector = \"s1\"\n    key_file = \"@D@/e.key\"\n  }\n}\n",
	  "@F@:7: domain example.com: dkim selector \"s1\" is configured twice (first at line 4)\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    selector = \"s1\"\n    key_file = \"@D@/ok.key\"\n"
	  "    algorithm = \"rsa-sha1\"\n  }\n}\n",
	  "@F@:7: domain example.com: dkim s1: algorithm must be \"rsa-sha256\" or "
	  "\"ed25519-sha256\", not \"rsa-sha1\"\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    selector = \"s 1\"\n    key_file = \"@D@/ok.key\"\n  }\n}\n",
	  "@F@:5: domain example.com: dkim selector \"s 1\" is not a valid selector "
	  "(letters, digits, hyphens, dots)\n", false },
	/* bcc */
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  bcc = \"post@@mab.no\"\n}\n",
	  "@F@:4: domain example.com: bcc \"post@@mab.no\" is not a valid mail address\n", false },
	/* domain titles */
	{ "upstream \"u\" { host = \"a\" }\n\ndomain \"*example.org\" { upstream = \"u\" }\n",
	  "@F@:3: domain \"*example.org\": not a valid domain name or pattern "
	  "(write \"example.com\", \"*.example.com\" or \"*\")\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"a.*.b\" { upstream = \"u\" }\n",
	  "@F@:2: domain \"a.*.b\": not a valid domain name or pattern "
	  "(write \"example.com\", \"*.example.com\" or \"*\")\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"\" { upstream = \"u\" }\n",
	  "@F@:2: domain \"\": not a valid domain name or pattern "
	  "(write \"example.com\", \"*.example.com\" or \"*\")\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"exa mple.com\" { upstream = \"u\" }\n",
	  "@F@:2: domain \"exa mple.com\": not a valid domain name or pattern "
	  "(write \"example.com\", \"*.example.com\" or \"*\")\n", false },
	/* ranges */
	{ "max_recipients = 100001\n",
	  "@F@:1: max_recipients = 100001 is out of range (1 to 100000)\n", false },
	{ "\nmax_clients = 0\n",
	  "@F@:2: max_clients = 0 is out of range (1 to 1000000)\n", false },
	{ "max_message_size = 2147483649\n",
	  "@F@:1: max_message_size = 2147483649 is out of range (1 to 2147483648)\n", false },
	{ "timeout = 86401\n",
	  "@F@:1: timeout = 86401 is out of range (1 to 86400)\n", false },
	{ "retry {\n  attempts = 0\n}\n",
	  "@F@:2: retry: attempts = 0 is out of range (1 to 1000)\n", false },
	{ "retry {\n  backoff = 0.5\n}\n",
	  "@F@:2: retry: backoff = 0.5 must be 1.0 or more\n", false },
	{ "retry {\n  delay = 600\n  max_delay = 60\n}\n",
	  "@F@:3: retry: max_delay (60) must not be less than delay (600)\n", false },
	{ "retry {\n  delay = 7200\n}\n",
	  "@F@:2: retry: max_delay (3600) must not be less than delay (7200)\n", false },
	{ "retry {\n  delay = -1\n}\n",
	  "@F@:2: retry: delay = -1 is out of range (0 to 2147483647)\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  retry {\n    delay = 5000\n  }\n}\n",
	  "@F@:4: upstream u: retry: max_delay (3600) must not be less than delay (5000)\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  port = 0\n}\n",
	  "@F@:3: upstream u: port = 0 is out of range (1 to 65535)\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  port = 65536\n}\n",
	  "@F@:3: upstream u: port = 65536 is out of range (1 to 65535)\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  max_connections = 0\n}\n",
	  "@F@:3: upstream u: max_connections = 0 is out of range (1 to 2147483647)\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  rate = -1\n}\n",
	  "@F@:3: upstream u: rate = -1 is out of range (0 to 2147483647)\n", false },
	/* values of the wrong type */
	{ "timeout = abc\n",
	  "@F@:1: timeout = \"abc\" is not a whole number\n", false },
	{ "bounces = maybe\n",
	  "@F@:1: bounces = \"maybe\" is not true or false\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  port = \"smtp\"\n}\n",
	  "@F@:3: upstream u: port = \"smtp\" is not a whole number\n", false },
	{ "retry { backoff = fast }\n",
	  "@F@:1: retry: backoff = \"fast\" is not a number\n", false },
	/* top-level strings */
	{ "hostname = \"relay example\"\n",
	  "@F@:1: hostname \"relay example\" holds \" \": a host name is made of letters, digits, "
	  "hyphens and dots\n", false },
	/* a host name: 253 octets at most, labels of 1 to 63 */
	{ "\nhostname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaae\"\n",
	  "@F@:2: hostname \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is 254 octets long; a host name has at most 253\n", false },
	{ "hostname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example\"\n",
	  "@F@:1: hostname \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" has a label of 64 octets; at most 63\n", false },
	{ "hostname = \"relay_1.example.com\"\n",
	  "@F@:1: hostname \"relay_1.example.com\" holds \"_\": a host name is made of letters, "
	  "digits, hyphens and dots\n", false },
	{ "hostname = \"relay.example.com.\"\n",
	  "@F@:1: hostname \"relay.example.com.\" has an empty label (a dot at the start or "
	  "end, or two in a row)\n", false },
	{ "hostname = \"relay.-example.com\"\n",
	  "@F@:1: hostname \"relay.-example.com\" has a label that starts or ends with \"-\"\n",
	  false },
	{ "hostname = \"relay\\x01.example\"\n",
	  "@F@:1: hostname \"relay\\x01.example\" holds \"\\x01\": a host name is made of "
	  "letters, digits, hyphens and dots\n", false },
	{ "hostname = \"\"\n",
	  "@F@:1: hostname \"\" is empty\n", false },
	/* the same bounds for an upstream's host (underscores allowed: some
	 * internal names have them), or an IP address */
	{ "upstream \"u\" {\n  host = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaae\"\n}\n",
	  "@F@:2: upstream u: host \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is 254 octets long; a host name has at most 253\n",
	  false },
	{ "upstream \"u\" {\n  host = \"smtp..example.com\"\n}\n",
	  "@F@:2: upstream u: host \"smtp..example.com\" has an empty label (a dot at the start "
	  "or end, or two in a row)\n", false },
	{ "upstream \"u\" {\n  host = \"[::1]\"\n}\n",
	  "@F@:2: upstream u: host \"[::1]\" holds \"[\": a host name is made of letters, "
	  "digits, hyphens and dots (or an IP address, without brackets)\n", false },
	/* a section, list, comment or string still open at the end of the file */
	{ "upstream \"u\" {\n  host = \"a\"\n",
	  "@F@:2: end of file inside upstream \"u\" (opened on line 1): \"}\" missing\n", false },
	{ "timeout = 5\nretry {\n  attempts = 2\n\n",
	  "@F@:4: end of file inside retry (opened on line 2): \"}\" missing\n", false },
	{ "upstream \"u\" { host = \"a\" }\ndomain \"example.com\" {\n  upstream = \"u\"\n"
	  "  dkim {\n    selector = \"s\"",
	  "@F@:4: domain example.com: dkim s: key_file is required\n"
	  "@F@:5: end of file inside dkim (opened on line 4): \"}\" missing\n"
	  "@F@:5: end of file inside domain \"example.com\" (opened on line 2): \"}\" missing\n",
	  false },
	{ "listen = { \"127.0.0.1:1\",\n  \"127.0.0.1:2\"\n",
	  "@F@:2: end of file inside the list of listen (opened on line 1): \"}\" missing\n", false },
	{ "timeout = 5\n/* timeout = 0\n\n",
	  "@F@:3: end of file inside a comment (opened on line 2): \"*/\" missing\n", false },
	{ "hostname = \"a.example\"\nuser = \"root\n",
	  "@F@:2: end of file inside a string (opened on line 2): closing \" missing\n", false },
	{ "user = 'root\n\n",
	  "@F@:2: end of file inside a string (opened on line 1): closing ' missing\n", false },
	/* characters libconfuse drops without a word outside quotes */
	{ "upstream \"u\" {\n  host = \"a\"\n  username = \"me\"\n  password = secret*\n}\n",
	  "@F@:4: \"*\" outside quotes is not part of any value (libconfuse drops it); "
	  "write the value in quotes\n", false },
	{ "upstream \"u\" {\n  host = \"a\"\n  username = \"me\"\n  password = pass+\n}\n",
	  "@F@:4: \"+\" outside quotes is not part of any value (libconfuse drops it); "
	  "write the value in quotes\n", false },
	/* line numbers after comments that span lines and values with "//" */
	{ "hostname = \"a.example\" /* x\n y \"\n */ timeout = 0\n",
	  "@F@:3: timeout = 0 is out of range (1 to 86400)\n", false },
	{ "spool = /var//spool # x\n// y\ntimeout = 0\n",
	  "@F@:3: timeout = 0 is out of range (1 to 86400)\n", false },
	{ "spool = \"var/spool\"\n",
	  "@F@:1: spool var/spool: must be an absolute path\n", false },
	{ "user = \"no-such-user-relayd\"\n",
	  "@F@:1: user \"no-such-user-relayd\" does not exist\n", false },
	{ "timeout = 5\nlisten = {\n}\n",
	  "@F@:2: listen must name at least one address\n", false },
	{ "listen = { \"127.0.0.1:25\",\n  \"127.0.0.1\" }\n",
	  "@F@:2: listen \"127.0.0.1\": ", true },
	{ "\nallow = { \"10.0.0.1/8\" }\n",
	  "@F@:2: allow \"10.0.0.1/8\": ", true },
	/* a syntax error, reported by libconfuse with its line */
	{ "timeout = 5\nupstream \"u\"\n  host = \"a\"\n",
	  "@F@:3: ", true },
	/* several problems: all reported, in line order */
	{ "timeout = 0\n"
	  "upstream \"u\" {\n"
	  "  port = 70000\n"
	  "}\n"
	  "domain \"example.com\" {\n"
	  "  upstream = \"nope\"\n"
	  "  dkim { selector = \"s\"  key_file = \"@D@/open.key\" }\n"
	  "}\n"
	  "max_recipients = 0\n",
	  "@F@:1: timeout = 0 is out of range (1 to 86400)\n"
	  "@F@:2: upstream u: host is required\n"
	  "@F@:3: upstream u: port = 70000 is out of range (1 to 65535)\n"
	  "@F@:6: domain example.com: upstream \"nope\" is not defined\n"
	  "@F@:7: key_file @D@/open.key is readable by others (mode 0644); chmod 600 it\n"
	  "@F@:9: max_recipients = 0 is out of range (1 to 100000)\n", false },
	/*
	 * What the file holds is quoted with its control characters escaped:
	 * a message is one line (fuzz_config: a section title holding a
	 * newline split "end of file inside ..." over two lines).
	 */
	{ "upstream \"a\nb\" {\n",
	  "@F@:2: end of file inside upstream \"a\\nb\" (opened on line 2): \"}\" missing\n"
	  "@F@:2: upstream \"a\\nb\": a name is made of letters, digits, \".\", \"-\" and \"_\"\n"
	  "@F@:2: upstream a\\nb: host is required\n", false },
	{ "upstream \"u\tv\" { host = \"h\" }\n",
	  "@F@:1: upstream \"u\\tv\": a name is made of letters, digits, \".\", \"-\" and \"_\"\n",
	  false },
	/*
	 * fuzz_config: an empty quoted name made libconfuse stop without a
	 * word, so relayd -n refused the file and printed nothing; and a key
	 * without "= value" just before a "}" left the pre-pass thinking the
	 * section open, which added a wrong "end of file inside" message.
	 */
	{ "hostname = \"a.example\"\n\"\"\n",
	  "@F@:2: an empty name (\"\") where a key or a section name belongs\n", false },
	{ "upstream \"u\" {\n \"\" = 1\n}\n",
	  "@F@:2: an empty name (\"\") where a key or a section name belongs\n", false },
	{ "upstream \"u\" {\n host\n}\n",
	  "@F@:3: missing equal sign after option 'host'\n", false },
	/* type errors do not stop the rest from being checked */
	{ "timeout = abc\nmax_clients = x\nmax_recipients = 0\n",
	  "@F@:1: timeout = \"abc\" is not a whole number\n"
	  "@F@:2: max_clients = \"x\" is not a whole number\n"
	  "@F@:3: max_recipients = 0 is out of range (1 to 100000)\n", false },
};

START_TEST(test_errors)
{
	char *errs = NULL;
	struct config *cfg = load(bad[_i].conf, &errs);
	char *want = subst(bad[_i].errors);

	ck_assert_msg(cfg == NULL, "case %d accepted", _i);
	if (bad[_i].prefix) {
		ck_assert_msg(strncmp(errs, want, strlen(want)) == 0 &&
		    strlen(errs) > strlen(want) + 1 && strchr(errs, '\n') == errs + strlen(errs) - 1,
		    "case %d: got \"%s\", want one line starting \"%s\"", _i, errs, want);
	} else {
		ck_assert_msg(strcmp(errs, want) == 0, "case %d:\n got: %s\nwant: %s",
		    _i, errs, want);
	}
	free(want);
	free(errs);
}
END_TEST

/* ---- oauth2 sections -------------------------------------------------- */

/* Copies a fixture from the test data into the temp dir with mode. */
static void
copy_fixture(const char *from, const char *to, mode_t mode)
{
	char src[PATH_MAX], buf[65536];
	FILE *f;
	size_t n;

	snprintf(src, sizeof(src), "%s/%s", TEST_DATADIR, from);
	f = fopen(src, "r");
	ck_assert_msg(f != NULL, "%s", src);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	char dst[PATH_MAX + 64];

	snprintf(dst, sizeof(dst), "%s/%s", tmpdir, to);
	write_file(dst, buf, n, mode);
}

/* A service account's JSON key made of the test RSA key. */
static void
write_service_account(const char *name, const char *type, mode_t mode)
{
	char src[PATH_MAX], pem[8192], json[16384];
	FILE *f;
	size_t n, j = 0;

	snprintf(src, sizeof(src), "%s/dkim-rsa2048.key", TEST_DATADIR);
	f = fopen(src, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(pem, 1, sizeof(pem) - 1, f);
	fclose(f);
	j = (size_t)snprintf(json, sizeof(json), "{\"type\": \"%s\", \"client_email\": "
	    "\"relay@p.iam.gserviceaccount.com\", \"private_key_id\": \"k1\", \"private_key\": \"",
	    type);
	for (size_t i = 0; i < n; i++) {
		if (pem[i] == '\n') {
			json[j++] = '\\';
			json[j++] = 'n';
		} else {
			json[j++] = pem[i];
		}
	}
	j += (size_t)snprintf(json + j, sizeof(json) - j, "\"}\n");
	char dst[PATH_MAX + 64];

	snprintf(dst, sizeof(dst), "%s/%s", tmpdir, name);
	write_file(dst, json, j, mode);
}

static void
oauth_fixtures(void)
{
	copy_fixture("oauth-app.crt", "app.crt", 0644);
	copy_fixture("dkim-rsa2048.key", "app.key", 0600);
	copy_fixture("dkim-rsa2048.key", "open-app.key", 0644);
	copy_fixture("dkim-rsa512.key", "other.key", 0600);
	copy_fixture("dkim-ed25519.key", "ed.key", 0600);
	write_service_account("sa.json", "service_account", 0600);
	write_service_account("open-sa.json", "service_account", 0644);
	write_service_account("user.json", "authorized_user", 0600);
	write_in_dir("not.json", "{ \"type\": ", 0600);
	write_in_dir("rt.secret", "refresh-1\n", 0600);
}

#define XO(oauth) "upstream \"o\" {\n  host = \"smtp.office365.com\"\n  auth = \"xoauth2\"\n" \
	"  username = \"relay@example.com\"\n  oauth2 {\n" oauth "  }\n}\n"

START_TEST(test_oauth2_ok)
{
	struct config *cfg;
	const struct cfg_oauth2 *o;

	oauth_fixtures();
	cfg = load_ok(XO("    provider = \"microsoft\"\n    tenant = \"contoso.onmicrosoft.com\"\n"
	    "    client_id = \"cid\"\n    client_secret_file = \"@D@/ok.secret\"\n"));
	o = cfg->upstreams[0].oauth2;
	ck_assert_ptr_nonnull(o);
	ck_assert_int_eq(cfg->upstreams[0].auth, CFG_AUTH_XOAUTH2);
	ck_assert_int_eq(o->creds.provider, OAUTH_MICROSOFT);
	ck_assert_str_eq(o->creds.token_url,
	    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
	ck_assert_str_eq(o->creds.scope, "https://outlook.office365.com/.default");
	ck_assert_str_eq(o->creds.client_secret, "s3cret");
	ck_assert_ptr_null(o->creds.key);
	config_free(cfg);

	cfg = load_ok(XO("    provider = \"microsoft\"\n    tenant = \"t1\"\n    client_id = \"cid\"\n"
	    "    client_certificate_file = \"@D@/app.crt\"\n"
	    "    client_key_file = \"@D@/app.key\"\n    token_url = \"https://127.0.0.1:9443/t\"\n"
	    "    tls_ca_file = \"@D@/ca.pem\"\n"));
	o = cfg->upstreams[0].oauth2;
	ck_assert_ptr_nonnull(o->creds.key);
	ck_assert_str_eq(o->creds.x5t_s256, "9QKIA793Go4gM2H2_ONPSCS1pYsiOWI1qf_gWnJ9nN8");
	ck_assert_str_eq(o->creds.token_url, "https://127.0.0.1:9443/t");
	ck_assert_ptr_nonnull(strstr(o->ca_file, "/ca.pem"));
	config_free(cfg);

	/* a token in clear: warned about like a password */
	cfg = load_ok("upstream \"o\" {\n  host = \"h.example\"\n  tls = \"none\"\n  auth = \"xoauth2\"\n"
	    "  username = \"a@b\"\n  oauth2 { provider = \"generic\"  token_url = \"https://x/t\"  "
	    "client_id = \"c\" }\n}\n");
	ck_assert_uint_eq(cfg->nwarnings, 1);
	char *want = subst("@F@:3: warning: upstream o sends its OAuth token without TLS");

	ck_assert_str_eq(cfg->warnings[0], want);
	free(want);
	config_free(cfg);

	cfg = load_ok(XO("    provider = \"google\"\n    service_account_file = \"@D@/sa.json\"\n"));
	o = cfg->upstreams[0].oauth2;
	ck_assert_str_eq(o->creds.client_email, "relay@p.iam.gserviceaccount.com");
	ck_assert_str_eq(o->creds.subject, "relay@example.com");
	ck_assert_str_eq(o->creds.token_url, "https://oauth2.googleapis.com/token");
	ck_assert_str_eq(o->creds.scope, "https://mail.google.com/");
	config_free(cfg);

	cfg = load_ok(XO("    provider = \"generic\"\n    token_url = \"https://login.example.net/t\"\n"
	    "    client_id = \"app\"\n    refresh_token_file = \"@D@/rt.secret\"\n"
	    "    scope = \"smtp\"\n"));
	o = cfg->upstreams[0].oauth2;
	ck_assert_str_eq(o->creds.refresh_token, "refresh-1");
	ck_assert_ptr_nonnull(strstr(o->refresh_token_file, "/rt.secret"));
	ck_assert_ptr_null(o->creds.client_secret);
	config_free(cfg);
}
END_TEST

static const struct {
	const char	*conf;
	const char	*errors;
} oauth_bad[] = {
	/* 0: no client_id; neither secret nor certificate */
	{ XO("    provider = \"microsoft\"\n    tenant = \"t\"\n"),
	  "@F@:6: upstream o: oauth2: provider microsoft needs client_id (the application "
	  "(client) id of the app registration)\n"
	  "@F@:6: upstream o: oauth2: provider microsoft needs client_secret_file, or "
	  "client_certificate_file and client_key_file\n" },
	/* 1: unknown provider */
	{ XO("    provider = \"yahoo\"\n"),
	  "@F@:6: upstream o: oauth2: unknown provider \"yahoo\": \"microsoft\", \"google\" or "
	  "\"generic\"\n" },
	/* 2: a key that is not the certificate's */
	{ XO("    provider = \"microsoft\"\n    tenant = \"t\"\n    client_id = \"c\"\n"
	  "    client_certificate_file = \"@D@/app.crt\"\n    client_key_file = \"@D@/other.key\"\n"),
	  "@F@:10: upstream o: oauth2: client_key_file @D@/other.key: the key does not match the "
	  "certificate\n" },
	/* 3: an Ed25519 key */
	{ XO("    provider = \"microsoft\"\n    tenant = \"t\"\n    client_id = \"c\"\n"
	  "    client_certificate_file = \"@D@/app.crt\"\n    client_key_file = \"@D@/ed.key\"\n"),
	  "@F@:10: upstream o: oauth2: client_key_file @D@/ed.key: the key is not an RSA key "
	  "(the JWT is signed PS256)\n" },
	/* 4: a key others may read */
	{ XO("    provider = \"microsoft\"\n    tenant = \"t\"\n    client_id = \"c\"\n"
	  "    client_certificate_file = \"@D@/app.crt\"\n"
	  "    client_key_file = \"@D@/open-app.key\"\n"),
	  "@F@:10: client_key_file @D@/open-app.key is readable by others (mode 0644); chmod 600 "
	  "it\n" },
	/* 5: a secret and a certificate */
	{ XO("    provider = \"microsoft\"\n    tenant = \"t\"\n    client_id = \"c\"\n"
	  "    client_secret_file = \"@D@/ok.secret\"\n    client_certificate_file = \"@D@/app.crt\"\n"),
	  "@F@:9: upstream o: oauth2: a client secret and a certificate are both set; keep one\n" },
	/* 6: service account: unparsable, wrong type, readable by others */
	{ XO("    provider = \"google\"\n    service_account_file = \"@D@/not.json\"\n"),
	  "@F@:7: upstream o: oauth2: service_account_file @D@/not.json: not a JSON object "
	  "(line 1, column 10)\n" },
	{ XO("    provider = \"google\"\n    service_account_file = \"@D@/user.json\"\n"),
	  "@F@:7: upstream o: oauth2: service_account_file @D@/user.json: \"type\" is not "
	  "\"service_account\" (is it the key of a service account, as the Google Cloud console "
	  "downloads it?)\n" },
	{ XO("    provider = \"google\"\n    service_account_file = \"@D@/open-sa.json\"\n"),
	  "@F@:7: service_account_file @D@/open-sa.json is readable by others (mode 0644); "
	  "chmod 600 it\n" },
	/* 9: settings another provider takes; a token URL that is not https */
	{ XO("    provider = \"google\"\n    service_account_file = \"@D@/sa.json\"\n"
	  "    client_id = \"c\"\n    token_url = \"http://x/token\"\n"),
	  "@F@:8: upstream o: oauth2: client_id is not used with provider google\n"
	  "@F@:9: upstream o: oauth2: token_url \"http://x/token\" must be an https:// URL\n" },
	/* 10: generic without token_url and client_id; a secret others may read */
	{ XO("    provider = \"generic\"\n    client_secret_file = \"@D@/open.secret\"\n"),
	  "@F@:6: upstream o: oauth2: provider generic needs token_url\n"
	  "@F@:6: upstream o: oauth2: provider generic needs client_id\n"
	  "@F@:7: client_secret_file @D@/open.secret is readable by others (mode 0644); chmod "
	  "600 it\n" },
	/* 11: a password with xoauth2; an oauth2 section without it */
	{ "upstream \"o\" {\n  host = \"h.example\"\n  auth = \"xoauth2\"\n  username = \"a@b\"\n"
	  "  password = \"pw\"\n  oauth2 { provider = \"generic\" token_url = \"https://x/t\" "
	  "client_id = \"c\" }\n}\n"
	  "upstream \"p\" {\n  host = \"h.example\"\n  oauth2 { provider = \"google\" }\n}\n",
	  "@F@:5: upstream o: a password is not used with auth xoauth2: the oauth2 section says "
	  "how to get a token\n"
	  "@F@:10: upstream p: an oauth2 section is only used with auth = \"xoauth2\"\n" },
};

START_TEST(test_oauth2_errors)
{
	char *errs = NULL;
	struct config *cfg;
	char *want = subst(oauth_bad[_i].errors);

	oauth_fixtures();
	cfg = load(oauth_bad[_i].conf, &errs);
	ck_assert_msg(cfg == NULL, "case %d accepted", _i);
	ck_assert_msg(strcmp(errs, want) == 0, "case %d:\n got: %s\nwant: %s", _i, errs, want);
	free(want);
	free(errs);
}
END_TEST

START_TEST(test_missing_file)
{
	char *errs = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&errs, &len);
	char *want = subst("@F@: No such file or directory\n");

	ck_assert_ptr_null(config_load(confpath, err));
	fclose(err);
	ck_assert_str_eq(errs, want);
	free(errs);
	free(want);
}
END_TEST

START_TEST(test_null_errout)
{
	/* A NULL errout is allowed: just the verdict. */
	char *text = subst("timeout = 0\n");

	write_file(confpath, text, strlen(text), 0644);
	free(text);
	ck_assert_ptr_null(config_load(confpath, NULL));
}
END_TEST

/* ---- the shipped examples -------------------------------------------- */

static char *
read_all(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

/* An example in the source tree (rel: "etc/relayd.conf"): under
 * $RELAYD_SRCDIR, else found from __FILE__. */
static char *
read_example(const char *rel)
{
	const char *srcdir = getenv("RELAYD_SRCDIR");
	char path[PATH_MAX];
	char *text;

	if (srcdir != NULL && *srcdir != '\0') {
		snprintf(path, sizeof(path), "%s/%s", srcdir, rel);
	} else {
		const char *me = __FILE__;
		const char *tail = strstr(me, "tests/unit/check_config.c");

		ck_assert_ptr_nonnull(tail);
		snprintf(path, sizeof(path), "%.*s%s", (int)(tail - me), me, rel);
	}
	text = read_all(path);
	ck_assert_msg(text != NULL, "cannot read %s: %s", path, strerror(errno));
	return text;
}

/* Replaces every occurrence of from by to in s (freed); returns a new string. */
static char *
replace_all(char *s, const char *from, const char *to)
{
	size_t flen = strlen(from), tlen = strlen(to), n = 0;
	char *out, *o;

	for (const char *p = s; (p = strstr(p, from)) != NULL; p += flen)
		n++;
	out = o = malloc(strlen(s) + n * (tlen + 1) + 1);
	ck_assert_ptr_nonnull(out);
	for (const char *p = s, *q; ; p = q + flen) {
		if ((q = strstr(p, from)) == NULL) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		memcpy(o, to, tlen);
		o += tlen;
	}
	free(s);
	return out;
}

/*
 * What an example names that a test machine lacks, made in the temp dir
 * (rel: the path below it): a certificate (.crt) and its RSA key (.key),
 * a service account's JSON key (.json), else a secret; private files mode
 * 0600, as relayd requires.
 */
static void
example_file(const char *rel)
{
	size_t n = strlen(rel);

	if (n > 4 && strcmp(rel + n - 4, ".crt") == 0)
		copy_fixture("oauth-app.crt", rel, 0644);
	else if (n > 4 && strcmp(rel + n - 4, ".key") == 0)
		copy_fixture("dkim-rsa2048.key", rel, 0600);
	else if (n > 5 && strcmp(rel + n - 5, ".json") == 0)
		write_service_account(rel, "service_account", 0600);
	else
		write_in_dir(rel, "secret\n", 0600);
}

/* The directories the examples keep files in; the test moves them here. */
static const char *const example_dirs[] = { "/etc/relayd/", "/var/lib/relayd/" };

/*
 * An example as a test machine can load it: the relayd user made root, and
 * every file it names under example_dirs (in quotes: comments name some
 * too) made in the temp dir, which takes their place.
 */
static char *
example_prepared(const char *example)
{
	char *text = read_example(example);
	char dir[PATH_MAX + 8];

	ck_assert_ptr_nonnull(strstr(text, "\nuser = \"relayd\""));
	text = replace_all(text, "\nuser = \"relayd\"", "\nuser = \"root\"");
	for (size_t i = 0; i < sizeof(example_dirs) / sizeof(example_dirs[0]); i++) {
		snprintf(dir, sizeof(dir), "%s/x%zu/", tmpdir, i);
		text = replace_all(text, example_dirs[i], dir);
	}
	snprintf(dir, sizeof(dir), "%s/", tmpdir);
	for (const char *p = text; (p = strstr(p, dir)) != NULL; p += strlen(dir)) {
		const char *name = p + strlen(dir), *end = strchr(name, '"');
		char rel[64], sub[PATH_MAX + 64];

		if (p == text || p[-1] != '"')
			continue;
		ck_assert_ptr_nonnull(end);
		ck_assert_int_lt(end - name, (int)sizeof(rel));
		snprintf(rel, sizeof(rel), "%.*s", (int)(end - name), name);
		for (const char *slash = rel; (slash = strchr(slash, '/')) != NULL; slash++) {
			snprintf(sub, sizeof(sub), "%s/%.*s", tmpdir, (int)(slash - rel), rel);
			mkdir(sub, 0700);
		}
		example_file(rel);
	}
	return text;
}

/* What etc/relayd.conf promises to show. */
static void
example_main(const struct config *cfg)
{
	ck_assert_uint_eq(cfg->nupstreams, 4);
	ck_assert_str_eq(cfg->upstreams[0].host, "smtp.eu.mailgun.org");
	ck_assert_uint_eq(cfg->upstreams[0].port, 587);
	ck_assert_int_eq(cfg->upstreams[0].tls, CFG_TLS_STARTTLS);
	ck_assert_int_eq(cfg->upstreams[0].auth, CFG_AUTH_PLAIN);
	ck_assert_str_eq(cfg->upstreams[0].username, "postmaster@mg.example.com");
	ck_assert_ptr_nonnull(cfg->upstreams[0].password_file);
	ck_assert_str_eq(cfg->upstreams[0].password, "secret");
	ck_assert_str_eq(cfg->upstreams[1].host, "smtp.sendgrid.net");
	ck_assert_uint_eq(cfg->upstreams[1].port, 465);
	ck_assert_int_eq(cfg->upstreams[1].tls, CFG_TLS_IMPLICIT);
	ck_assert_str_eq(cfg->upstreams[1].username, "apikey");
	ck_assert_str_eq(cfg->upstreams[2].host, "smtp.office365.com");
	ck_assert_uint_eq(cfg->upstreams[2].port, 587);
	ck_assert_int_eq(cfg->upstreams[2].auth, CFG_AUTH_XOAUTH2);
	ck_assert_ptr_nonnull(cfg->upstreams[2].oauth2);
	ck_assert_ptr_nonnull(cfg->upstreams[2].oauth2->creds.key);
	ck_assert_str_eq(cfg->upstreams[3].host, "mail.example.com");
	ck_assert(cfg->ndomains >= 4);
	size_t ndkim = 0;
	for (size_t i = 0; i < cfg->ndomains; i++) {
		ck_assert_ptr_nonnull(cfg->domains[i].upstream);
		ndkim += cfg->domains[i].ndkim;
	}
	ck_assert_uint_ge(ndkim, 1);
}

/* The one upstream of an OAuth 2.0 example, checked as far as they share. */
static const struct cfg_oauth2 *
example_oauth(const struct config *cfg, const char *host, enum oauth_provider prov)
{
	const struct cfg_upstream *u = &cfg->upstreams[0];

	ck_assert_uint_eq(cfg->nupstreams, 1);
	ck_assert_str_eq(u->host, host);
	ck_assert_int_eq(u->auth, CFG_AUTH_XOAUTH2);
	ck_assert_ptr_nonnull(u->username);
	ck_assert_ptr_nonnull(u->oauth2);
	ck_assert_int_eq(u->oauth2->creds.provider, prov);
	ck_assert_uint_eq(cfg->ndomains, 1);
	ck_assert_ptr_eq(cfg->domains[0].upstream, u);
	return u->oauth2;
}

static void
example_o365_certificate(const struct config *cfg)
{
	const struct cfg_oauth2 *o = example_oauth(cfg, "smtp.office365.com", OAUTH_MICROSOFT);

	ck_assert_ptr_nonnull(o->creds.key);
	ck_assert_ptr_nonnull(o->creds.x5t_s256);
	ck_assert_ptr_null(o->creds.client_secret);
	ck_assert_str_eq(o->creds.token_url,
	    "https://login.microsoftonline.com/example.onmicrosoft.com/oauth2/v2.0/token");
	ck_assert_str_eq(o->creds.scope, "https://outlook.office365.com/.default");
}

static void
example_o365_secret(const struct config *cfg)
{
	const struct cfg_oauth2 *o = example_oauth(cfg, "smtp.office365.com", OAUTH_MICROSOFT);

	ck_assert_str_eq(o->creds.client_secret, "secret");
	ck_assert_ptr_null(o->creds.key);
}

static void
example_google(const struct config *cfg)
{
	const struct cfg_oauth2 *o = example_oauth(cfg, "smtp.gmail.com", OAUTH_GOOGLE);

	ck_assert_uint_eq(cfg->upstreams[0].port, 465);
	ck_assert_int_eq(cfg->upstreams[0].tls, CFG_TLS_IMPLICIT);
	ck_assert_ptr_nonnull(o->creds.key);
	ck_assert_str_eq(o->creds.subject, cfg->upstreams[0].username);
	ck_assert_str_eq(o->creds.scope, "https://mail.google.com/");
}

static void
example_generic(const struct config *cfg)
{
	const struct cfg_oauth2 *o = example_oauth(cfg, "smtp.example.net", OAUTH_GENERIC);

	ck_assert_str_eq(o->creds.refresh_token, "secret");
	ck_assert_str_eq(o->creds.client_secret, "secret");
	ck_assert_ptr_nonnull(o->refresh_token_file);
	ck_assert_ptr_nonnull(strstr(o->creds.token_url, "https://"));
}

/* Every example shipped in etc/ (Makefile.am: EXTRA_DIST), with what it
 * promises to show. */
static const struct {
	const char	*path;
	void		(*check)(const struct config *);
} examples[] = {
	{ "etc/relayd.conf",				example_main },
	{ "etc/examples/office365-certificate.conf",	example_o365_certificate },
	{ "etc/examples/office365-secret.conf",	example_o365_secret },
	{ "etc/examples/google-workspace.conf",	example_google },
	{ "etc/examples/oauth2-generic.conf",		example_generic },
};

/*
 * Each example must be valid as shipped except for what cannot exist on a
 * test machine: the files it names and the relayd user.
 */
START_TEST(test_example_conf)
{
	char *text = example_prepared(examples[_i].path);
	char *errs = NULL;
	struct config *cfg = load(text, &errs);

	ck_assert_msg(cfg != NULL, "%s rejected:\n%s", examples[_i].path, errs);
	ck_assert_msg(errs[0] == '\0', "%s: %s", examples[_i].path, errs);
	examples[_i].check(cfg);
	config_free(cfg);
	free(errs);
	free(text);
}
END_TEST

/* As shipped, on a machine without those files: only missing-file errors. */
START_TEST(test_example_conf_as_shipped)
{
	char *text = read_example(examples[_i].path);
	char *errs = NULL;
	struct config *cfg;

	text = replace_all(text, "\nuser = \"relayd\"", "\nuser = \"root\"");
	cfg = load(text, &errs);
	if (access("/etc/relayd", F_OK) == 0 || access("/var/lib/relayd", F_OK) == 0) {
		/* An installed relayd: nothing to assert about its files. */
		config_free(cfg);
	} else {
		ck_assert_ptr_null(cfg);
		ck_assert(errs[0] != '\0');
		for (char *line = strtok(errs, "\n"); line != NULL; line = strtok(NULL, "\n"))
			ck_assert_msg((strstr(line, " /etc/relayd/") != NULL ||
			    strstr(line, " /var/lib/relayd/") != NULL) &&
			    strstr(line, ": No such file or directory") != NULL,
			    "%s: unexpected: %s", examples[_i].path, line);
	}
	free(errs);
	free(text);
}
END_TEST

Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("load");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_upstream_defaults);
	tcase_add_test(tc, test_retry_override);
	tcase_add_test(tc, test_comments_in_lists);
	tcase_add_loop_test(tc, test_comment_marks_in_values, 0,
	    (int)(sizeof(unquoted) / sizeof(unquoted[0])));
	tcase_add_test(tc, test_comment_marks_in_paths);
	tcase_add_test(tc, test_tls_none_auth_warns);
	tcase_add_test(tc, test_tls_none_auth_warns_among_errors);
	tcase_add_loop_test(tc, test_password_file_newline, 0,
	    (int)(sizeof(secrets) / sizeof(secrets[0])));
	tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_oauth2_ok);
	tcase_add_loop_test(tc, test_oauth2_errors, 0,
	    (int)(sizeof(oauth_bad) / sizeof(oauth_bad[0])));
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_null_errout);
	tcase_add_loop_test(tc, test_example_conf, 0,
	    (int)(sizeof(examples) / sizeof(examples[0])));
	tcase_add_loop_test(tc, test_example_conf_as_shipped, 0,
	    (int)(sizeof(examples) / sizeof(examples[0])));
	suite_add_tcase(s, tc);
	return s;
}
