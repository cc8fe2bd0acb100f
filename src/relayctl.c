/*
 * relayctl — the admin tool's main: global options, then one command.
 *
 * A thin dispatcher: each command reads its arguments, does its work
 * through a library module (keygen for dkim-keygen, dnscheck for
 * check-dns) and returns an exit status; only main() exits.  Exit
 * statuses: 0 done, 1 failed (the configuration, the key file, a check
 * that FAILs, ...), 64 usage error (EX_USAGE), 69 relayd is not running
 * (EX_UNAVAILABLE).
 *
 * queue, flush and remove talk to the running daemon over its control
 * socket (ctlclient.c); when relayd is not running they say so and exit
 * 69.  check-dns needs no daemon: it reads the configuration and asks DNS
 * (dnscheck.c, resolve.c); it exits 1 when a check FAILs.
 */
#include "acconfig.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "config.h"
#include "ctlclient.h"
#include "dnscheck.h"
#include "keygen.h"
#include "resolve.h"
#include "router.h"
#include "sendmail_opts.h"
#include "submit.h"
#include "util.h"

#define EXIT_FAIL		1
#define EXIT_USAGE		64	/* sysexits.h EX_USAGE */
#define TEST_WAIT_SEC		330	/* an upstream's slowest reply (300 s) and more */

static const char usage_text[] =
    "usage: relayctl [-f FILE] queue [--json]\n"
    "       relayctl [-f FILE] flush [ID...]\n"
    "       relayctl [-f FILE] remove ID...\n"
    "       relayctl [-f FILE] test --from ADDRESS --to ADDRESS\n"
    "       relayctl [-f FILE] dkim-keygen DOMAIN SELECTOR [--algorithm rsa|ed25519]\n"
    "                [--bits N] [--force]\n"
    "       relayctl [-f FILE] check-dns [--resolver IP[:PORT]] [--json] [DOMAIN...]\n"
    "       relayctl -V\n";

static int
usage(void)
{
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

/* ---- dkim-keygen ---------------------------------------------------- */

struct keygen_args {
	const char	*domain;
	const char	*selector;
	const char	*algorithm;	/* NULL: the configuration's */
	int		 bits;		/* 0: not given */
	bool		 force;
};

/* The value of "--name VALUE" or "--name=VALUE" at argv[*i], or NULL. */
static const char *
keygen_optarg(int argc, char **argv, int *i, const char *name, bool *matched)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	*matched = false;
	if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
		return NULL;
	*matched = true;
	if (a[n] == '=')
		return a + n + 1;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static int
keygen_parse_args(int argc, char **argv, struct keygen_args *ka)
{
	const char *pos[2], *v;
	int npos = 0;
	bool opts = true, m;
	char *end;
	long l;

	memset(ka, 0, sizeof(*ka));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (opts && strcmp(a, "--") == 0) {
			opts = false;
		} else if (opts && strcmp(a, "--force") == 0) {
			ka->force = true;
		} else if (opts && ((v = keygen_optarg(argc, argv, &i, "--algorithm", &m)) != NULL || m)) {
			if (v == NULL || (strcmp(v, "rsa") != 0 && strcmp(v, "ed25519") != 0)) {
				fprintf(stderr, "relayctl dkim-keygen: --algorithm takes rsa or ed25519\n");
				return -1;
			}
			ka->algorithm = v;
		} else if (opts && ((v = keygen_optarg(argc, argv, &i, "--bits", &m)) != NULL || m)) {
			errno = 0;
			l = v != NULL ? strtol(v, &end, 10) : 0;
			if (v == NULL || *v == '\0' || *end != '\0' || errno != 0 ||
			    l < KEYGEN_RSA_MIN_BITS || l > KEYGEN_RSA_MAX_BITS) {
				fprintf(stderr, "relayctl dkim-keygen: --bits takes a number from "
				    "%d to %d (default %d)\n", KEYGEN_RSA_MIN_BITS,
				    KEYGEN_RSA_MAX_BITS, KEYGEN_RSA_DEFAULT_BITS);
				return -1;
			}
			ka->bits = (int)l;
		} else if (opts && a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "relayctl dkim-keygen: unknown option %s\n", a);
			return -1;
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			fprintf(stderr, "relayctl dkim-keygen: unexpected argument %s\n", a);
			return -1;
		}
	}
	if (npos != 2) {
		fprintf(stderr, "relayctl dkim-keygen: DOMAIN and SELECTOR are required\n");
		return -1;
	}
	ka->domain = pos[0];
	ka->selector = pos[1];
	if (ka->bits != 0 && ka->algorithm != NULL && strcmp(ka->algorithm, "ed25519") == 0) {
		fprintf(stderr, "relayctl dkim-keygen: --bits is for RSA keys only "
		    "(Ed25519 keys have a fixed size)\n");
		return -1;
	}
	return 0;
}

/* The domain section named exactly name (DNS names: any case), or NULL. */
static const struct cfg_domain *
keygen_find_domain(const struct config *cfg, const char *name)
{
	char *want = xstrdup(name);
	size_t n = strlen(want);
	const struct cfg_domain *d = NULL;

	if (n > 1 && want[n - 1] == '.')
		want[n - 1] = '\0';
	ascii_lower(want);
	for (size_t i = 0; i < cfg->ndomains && d == NULL; i++)
		if (strcmp(cfg->domains[i].name, want) == 0)
			d = &cfg->domains[i];
	free(want);
	return d;
}

static const struct cfg_dkim *
keygen_find_selector(const struct cfg_domain *d, const char *selector)
{
	for (size_t i = 0; i < d->ndkim; i++)
		if (d->dkim[i].selector != NULL &&
		    ascii_strcasecmp(d->dkim[i].selector, selector) == 0)
			return &d->dkim[i];
	return NULL;
}

/* A key relayd reads as its `user` after a reload should belong to it. */
static void
keygen_owner(const struct config *cfg, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (geteuid() != 0 || cfg->user == NULL)
		return;
	if ((pw = getpwnam(cfg->user)) == NULL) {
		fprintf(stderr, "relayctl dkim-keygen: warning: user \"%s\" of %s does not "
		    "exist; the key stays owned by root\n", cfg->user, cfg->path);
		return;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
}

static int
keygen_print(const struct cfg_domain *d, const char *selector, const char *value)
{
	char *owner, *record;
	const char *dom = d->name;
	size_t n;

	/*
	 * "*.example.org" signs as d=example.org; "*" signs as each From:
	 * domain, so its record goes under each of them: a relative name.
	 */
	if (strcmp(dom, "*") == 0)
		owner = xasprintf("%s._domainkey", selector);
	else
		owner = xasprintf("%s._domainkey.%s.", selector,
		    strncmp(dom, "*.", 2) == 0 ? dom + 2 : dom);
	if ((record = keygen_txt_record(owner, value)) == NULL) {
		fprintf(stderr, "relayctl dkim-keygen: cannot format the record\n");
		free(owner);
		return -1;
	}
	printf("; DKIM key record to publish (zone file form, strings of at most %d bytes):\n",
	    KEYGEN_TXT_MAX);
	fputs(record, stdout);
	if (strcmp(dom, "*") == 0)
		printf("; publish it in the zone of every domain that sends through "
		    "domain \"*\"\n");
	/* Web forms want the name without the root's final dot. */
	n = strlen(owner);
	printf("\n; the same value on one line, for DNS providers' web forms "
	    "(name %.*s, type TXT):\n%s\n", (int)(owner[n - 1] == '.' ? n - 1 : n), owner, value);
	free(record);
	free(owner);
	return fflush(stdout) == 0 ? 0 : -1;
}

static int
cmd_dkim_keygen(const char *path, int argc, char **argv)
{
	struct keygen_args ka;
	struct config *cfg;
	const struct cfg_domain *d;
	const struct cfg_dkim *k;
	enum keygen_alg alg;
	const char *cfgalg;
	EVP_PKEY *key = NULL;
	char err[1024], *value = NULL;
	uid_t uid;
	gid_t gid;
	int bits, rc = EXIT_FAIL;

	if (keygen_parse_args(argc, argv, &ka) == -1)
		return usage();
	/* The key itself need not exist yet: creating it is the point. */
	if ((cfg = config_load_opts(path, stderr, CONFIG_NO_KEYFILE_CHECK)) == NULL)
		return EXIT_FAIL;

	if ((d = keygen_find_domain(cfg, ka.domain)) == NULL) {
		fprintf(stderr, "relayctl dkim-keygen: %s has no domain \"%s\" section; add one:\n"
		    "domain \"%s\" {\n\tupstream = \"...\"\n\tdkim {\n\t\tselector = \"%s\"\n"
		    "\t\tkey_file = \"%s/relayd/dkim/%s.%s.key\"\n"
		    "\t\talgorithm = \"rsa-sha256\"\n\t}\n}\n",
		    path, ka.domain, ka.domain, ka.selector, SYSCONFDIR, ka.domain, ka.selector);
		goto out;
	}
	if ((k = keygen_find_selector(d, ka.selector)) == NULL) {
		fprintf(stderr, "relayctl dkim-keygen: %s:%d: domain \"%s\" has no dkim block "
		    "with selector \"%s\"; add one to it:\n\tdkim {\n\t\tselector = \"%s\"\n"
		    "\t\tkey_file = \"%s/relayd/dkim/%s.%s.key\"\n"
		    "\t\talgorithm = \"rsa-sha256\"\n\t}\n",
		    path, d->line, d->name, ka.selector, ka.selector, SYSCONFDIR, d->name,
		    ka.selector);
		goto out;
	}

	alg = k->algorithm == CFG_DKIM_ED25519_SHA256 ? KEYGEN_ED25519 : KEYGEN_RSA;
	cfgalg = alg == KEYGEN_ED25519 ? "ed25519-sha256" : "rsa-sha256";
	if (ka.algorithm != NULL &&
	    (strcmp(ka.algorithm, "ed25519") == 0) != (alg == KEYGEN_ED25519)) {
		fprintf(stderr, "relayctl dkim-keygen: %s:%d: selector \"%s\" of domain \"%s\" "
		    "has algorithm = \"%s\", but --algorithm %s was asked for; change one "
		    "or the other\n", path, k->line, k->selector, d->name, cfgalg, ka.algorithm);
		goto out;
	}
	if (alg == KEYGEN_ED25519 && ka.bits != 0) {
		fprintf(stderr, "relayctl dkim-keygen: %s:%d: selector \"%s\" is ed25519-sha256: "
		    "--bits is for RSA keys only\n", path, k->line, k->selector);
		goto out;
	}
	bits = alg == KEYGEN_RSA ? (ka.bits != 0 ? ka.bits : KEYGEN_RSA_DEFAULT_BITS) : 0;

	/* Fail before a long RSA generation when the file cannot be written. */
	if (keygen_check_path(k->key_file, ka.force, err, sizeof(err)) == -1) {
		fprintf(stderr, "relayctl dkim-keygen: %s\n", err);
		goto out;
	}
	keygen_owner(cfg, &uid, &gid);
	if ((key = keygen_generate(alg, bits, err, sizeof(err))) == NULL ||
	    (value = keygen_dkim_value(key, err, sizeof(err))) == NULL ||
	    keygen_write_key(key, k->key_file, ka.force, uid, gid, err, sizeof(err)) == -1) {
		fprintf(stderr, "relayctl dkim-keygen: %s\n", err);
		goto out;
	}
	if (alg == KEYGEN_RSA)
		fprintf(stderr, "relayctl dkim-keygen: wrote a %d-bit RSA key to %s (mode 0600)\n",
		    bits, k->key_file);
	else
		fprintf(stderr, "relayctl dkim-keygen: wrote an Ed25519 key to %s (mode 0600)\n",
		    k->key_file);
	if (bits == KEYGEN_RSA_MIN_BITS)
		fprintf(stderr, "relayctl dkim-keygen: note: 1024-bit RSA is weak; "
		    "RFC 8301 asks for 2048 where possible\n");
	if (keygen_print(d, k->selector, value) == -1) {
		fprintf(stderr, "relayctl dkim-keygen: cannot write to stdout: %s\n",
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(value);
	EVP_PKEY_free(key);
	config_free(cfg);
	return rc;
}

/* ---- commands for the running daemon ------------------------------------ */

/* The control socket's path, from the configuration. */
static char *
control_path(const char *path)
{
	struct config *cfg = config_load_opts(path, stderr,
	    CONFIG_NO_KEYFILE_CHECK | CONFIG_NO_SECRETS);
	char *sock;

	if (cfg == NULL)
		return NULL;
	sock = xstrdup(cfg->control);
	config_free(cfg);
	return sock;
}

static int
cmd_daemon(const char *path, int argc, char **argv)
{
	bool json = false;
	char *sock;
	int rc, first = 1;

	if (strcmp(argv[0], "queue") == 0) {
		for (int i = 1; i < argc; i++) {
			if (strcmp(argv[i], "--json") == 0)
				json = true;
			else
				return usage();
		}
	} else if (strcmp(argv[0], "remove") == 0 && argc < 2) {
		return usage();
	}
	for (int i = first; i < argc && strcmp(argv[0], "queue") != 0; i++)
		if (argv[i][0] == '-')
			return usage();
	if ((sock = control_path(path)) == NULL)
		return EXIT_FAIL;
	if (strcmp(argv[0], "queue") == 0)
		rc = ctl_queue(sock, json, stdout);
	else if (strcmp(argv[0], "flush") == 0)
		rc = ctl_flush(sock, argc - 1, argv + 1, stdout);
	else
		rc = ctl_remove(sock, argc - 1, argv + 1, stdout);
	free(sock);
	return rc;
}

/*
 * test --from A --to B: a test message submitted like any application's,
 * then the outcome of its first delivery attempt, as the upstream answered
 * it.  Exit 0 only if it was sent.
 */
static int
cmd_test(const char *path, int argc, char **argv)
{
	const char *from = NULL, *to = NULL;
	struct config *cfg;
	struct sendmail_rcpts rcpts;
	struct sendmail_msg msg;
	struct submit_job job;
	char *sender = NULL, qid[64] = "", err[256], date[64];
	int rc = EXIT_FAIL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
			from = argv[++i];
		else if (strncmp(argv[i], "--from=", 7) == 0)
			from = argv[i] + 7;
		else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
			to = argv[++i];
		else if (strncmp(argv[i], "--to=", 5) == 0)
			to = argv[i] + 5;
		else
			return usage();
	}
	if (from == NULL || to == NULL)
		return usage();
	if (from[0] == '\0' || strcmp(from, "<>") == 0) {
		/* a <> message is routed by its From: domain, and the test
		 * message's From: is the sender: there would be none */
		fprintf(stderr, "relayctl test: --from needs an address (the null sender cannot "
		    "be tested: it is routed by a From: domain the test has none of)\n");
		return EXIT_USAGE;
	}
	cfg = config_load_opts(path, stderr, CONFIG_NO_KEYFILE_CHECK | CONFIG_NO_SECRETS);
	if (cfg == NULL)
		return EXIT_FAIL;
	sendmail_rcpts_init(&rcpts);
	memset(&msg, 0, sizeof(msg));
	if (sendmail_sender(from, cfg->hostname, &sender, err, sizeof(err)) == -1) {
		fprintf(stderr, "relayctl test: --from %s: %s\n", from, err);
		goto out;
	}
	if (sendmail_parse_addrlist(to, strlen(to), cfg->hostname, &rcpts, err,
	    sizeof(err)) == -1 || rcpts.n != 1) {
		fprintf(stderr, "relayctl test: --to %s: %s\n", to, rcpts.n > 1 ?
		    "one address, please" : rcpts.n ? err : "no address");
		rc = EXIT_USAGE;
		goto out;
	}
	rfc5322_date(now_us() / 1000000, date, sizeof(date));
	char *text = xasprintf("From: <%s>\r\nTo: <%s>\r\nSubject: relayd test message\r\n"
	    "\r\n"
	    "This is a test message from relayctl test on %s, %s.\r\n"
	    "If it arrived, relayd relays mail for %s as configured.\r\n",
	    sender, rcpts.v[0], cfg->hostname, date, sender[0] ? sender : "<>");
	if (sendmail_msg_build(text, strlen(text), sender, NULL, cfg->hostname, NULL, &msg, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "relayctl test: %s\n", err);
		free(text);
		goto out;
	}
	free(text);
	memset(&job, 0, sizeof(job));
	job.prog = "relayctl test";
	job.helo = cfg->hostname;
	job.sender = sender;
	job.rcpts = &rcpts;
	job.msg = &msg;
	job.qid = qid;
	job.qidlen = sizeof(qid);
	if ((rc = submit_message(&cfg->listen[0].hp, &job)) != 0)
		goto out;
	if (qid[0] == '\0') {
		fprintf(stderr, "relayctl test: the relay accepted the message but named no queue id\n");
		rc = EXIT_FAIL;
		goto out;
	}
	printf("%s: queued, waiting for the upstream's answer\n", qid);
	fflush(stdout);
	rc = ctl_wait(cfg->control, qid, TEST_WAIT_SEC, stdout);
out:
	free(sender);
	sendmail_msg_free(&msg);
	sendmail_rcpts_free(&rcpts);
	config_free(cfg);
	return rc;
}

/* ---- check-dns ---------------------------------------------------------- */

struct checkdns_args {
	const char	*resolver;	/* NULL: the system's */
	bool		 json;
	char		**domains;	/* lower case, no final dot */
	size_t		 ndomains;
};

static int
checkdns_parse_args(int argc, char **argv, struct checkdns_args *ca)
{
	const char *v;
	bool opts = true, m;

	memset(ca, 0, sizeof(*ca));
	ca->domains = xcalloc((size_t)argc, sizeof(char *));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (opts && strcmp(a, "--") == 0) {
			opts = false;
		} else if (opts && strcmp(a, "--json") == 0) {
			ca->json = true;
		} else if (opts && ((v = keygen_optarg(argc, argv, &i, "--resolver", &m)) != NULL ||
		    m)) {
			if (v == NULL || *v == '\0') {
				fprintf(stderr, "relayctl check-dns: --resolver takes IP[:PORT]\n");
				return -1;
			}
			ca->resolver = v;
		} else if (opts && a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "relayctl check-dns: unknown option %s\n", a);
			return -1;
		} else {
			char *d = xstrdup(a);
			size_t n = strlen(d);

			if (n > 1 && d[n - 1] == '.')
				d[n - 1] = '\0';
			ascii_lower(d);
			ca->domains[ca->ndomains++] = d;
		}
	}
	return 0;
}

static void
checkdns_args_free(struct checkdns_args *ca)
{
	for (size_t i = 0; i < ca->ndomains; i++)
		free(ca->domains[i]);
	free(ca->domains);
}

/*
 * The domains to check and the section each belongs to: those named, or
 * every section with a plain name (a pattern names no domain to look up).
 */
static size_t
checkdns_targets(const struct config *cfg, const struct checkdns_args *ca,
    const char ***names, const struct cfg_domain ***secs, int *rc)
{
	size_t n = 0, cap = ca->ndomains + cfg->ndomains;

	*names = xcalloc(cap + 1, sizeof(**names));
	*secs = xcalloc(cap + 1, sizeof(**secs));
	for (size_t i = 0; i < ca->ndomains; i++) {
		const struct cfg_domain *d = router_lookup(cfg, ca->domains[i]);

		if (d == NULL || strchr(ca->domains[i], '.') == NULL) {
			fprintf(stderr, "relayctl check-dns: %s is not a sender domain of %s (no "
			    "domain section routes it)\n", ca->domains[i], cfg->path);
			*rc = EXIT_FAIL;
			continue;
		}
		(*names)[n] = ca->domains[i];
		(*secs)[n++] = d;
	}
	for (size_t i = 0; ca->ndomains == 0 && i < cfg->ndomains; i++) {
		const struct cfg_domain *d = &cfg->domains[i];

		if (strchr(d->name, '*') != NULL) {
			fprintf(stderr, "relayctl check-dns: domain \"%s\" (%s:%d) is a pattern: "
			    "name the domains it sends for to check them, e.g. relayctl check-dns "
			    "%s\n", d->name, cfg->path, d->line, strcmp(d->name, "*") == 0 ?
			    "example.com" : d->name + 2);
			continue;
		}
		(*names)[n] = d->name;
		(*secs)[n++] = d;
	}
	return n;
}

static int
cmd_check_dns(const char *path, int argc, char **argv)
{
	struct checkdns_args ca;
	struct config *cfg = NULL;
	struct resolver *res = NULL;
	struct domain_checks *out = NULL;
	const char **names = NULL;
	const struct cfg_domain **secs = NULL;
	struct dns_source dns;
	char err[512];
	size_t n = 0;
	int rc = 0;

	if (checkdns_parse_args(argc, argv, &ca) == -1) {
		checkdns_args_free(&ca);
		return usage();
	}
	/* The keys are read to compare them, not required: a missing one is a FAIL. */
	cfg = config_load_opts(path, stderr, CONFIG_NO_KEYFILE_CHECK | CONFIG_NO_SECRETS);
	if (cfg == NULL) {
		rc = EXIT_FAIL;
		goto out;
	}
	if ((res = resolver_new(ca.resolver, err, sizeof(err))) == NULL) {
		fprintf(stderr, "relayctl check-dns: %s\n", err);
		rc = ca.resolver != NULL ? EXIT_USAGE : EXIT_FAIL;
		goto out;
	}
	n = checkdns_targets(cfg, &ca, &names, &secs, &rc);
	if (n == 0) {
		if (rc == 0)
			fprintf(stderr, "relayctl check-dns: %s names no sender domain to check\n",
			    path);
		rc = EXIT_FAIL;
		goto out;
	}
	dns = resolver_source(res);
	out = xcalloc(n, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		dnscheck_domain(secs[i], names[i], &dns, &out[i]);
		if (!ca.json) {
			struct buf b;

			/* domain by domain: a slow resolver still shows progress */
			buf_init(&b);
			dnscheck_format_text(&out[i], 1, &b);
			if (b.len > 0)
				fwrite(b.p, 1, b.len, stdout);
			fflush(stdout);
			buf_free(&b);
		}
	}
	if (ca.json) {
		char *j = dnscheck_format_json(out, n);

		printf("%s\n", j);
		free(j);
	}
	if (dnscheck_any_failed(out, n))
		rc = EXIT_FAIL;
	if (fflush(stdout) != 0) {
		fprintf(stderr, "relayctl check-dns: cannot write to stdout: %s\n", strerror(errno));
		rc = EXIT_FAIL;
	}
out:
	for (size_t i = 0; out != NULL && i < n; i++)
		dnscheck_free(&out[i]);
	free(out);
	free(names);
	free(secs);
	resolver_free(res);
	config_free(cfg);
	checkdns_args_free(&ca);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	int ch;

	/* "+": options after the command belong to it. */
	while ((ch = getopt(argc, argv, "+f:hV")) != -1) {
		switch (ch) {
		case 'f':
			path = optarg;
			break;
		case 'V':
			printf("relayctl %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			return usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		return usage();

	if (strcmp(argv[0], "dkim-keygen") == 0)
		return cmd_dkim_keygen(path, argc, argv);
	if (strcmp(argv[0], "queue") == 0 || strcmp(argv[0], "flush") == 0 ||
	    strcmp(argv[0], "remove") == 0)
		return cmd_daemon(path, argc, argv);
	if (strcmp(argv[0], "test") == 0)
		return cmd_test(path, argc, argv);
	if (strcmp(argv[0], "check-dns") == 0)
		return cmd_check_dns(path, argc, argv);
	fprintf(stderr, "relayctl: unknown command \"%s\"\n", argv[0]);
	return usage();
}
