/*
 * relayd — the daemon's main: options, start-up order, signals, exit codes.
 *
 * Start-up order matters for durability and for the admin: the
 * configuration is checked completely before anything is opened (exit 1),
 * then the spool is recovered (its queued messages loaded), and only then
 * are the listeners bound (exit 2 if either fails), so no client hears 220
 * from a relay that cannot store mail.
 *
 * Only main() exits.
 */
#include "acconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config.h"
#include "control.h"
#include "dkim.h"
#include "listener.h"
#include "log.h"
#include "qid.h"
#include "queue.h"
#include "smtp_client.h"
#include "smtp_server.h"
#include "spool.h"
#include "workers.h"

#define EXIT_CONFIG	1
#define EXIT_RUNTIME	2
#define STOP_GRACE_SEC	30	/* sessions in progress may finish within this */

struct relayd {
	const char		*path;
	struct event_base	*base;
	struct evdns_base	*dns;
	struct config		*cfg;
	struct spool		*spool;
	struct queue		*queue;
	struct smtp_server	*srv;
	struct workers		*workers;
	struct listener		*listener;
	struct control		*control;
	struct event		*sigterm, *sigint, *sighup;
	struct event		*stop_timer;
	int64_t			 stop_deadline;
	bool			 stopping;
};

static void sd_notify_msg(const char *msg);

/*
 * A configuration snapshot with its DKIM keys loaded: what -n checks, what
 * start-up runs with, and what a reload swaps in.  Problems go to errout as
 * "FILE:LINE: message".
 */
static struct config *
load_config(const char *path, FILE *errout)
{
	struct config *cfg = config_load(path, errout);

	if (cfg == NULL)
		return NULL;
	cfg->dkim = dkim_keys_load(cfg, errout);
	if (cfg->dkim == NULL) {
		config_free(cfg);
		return NULL;
	}
	/* every TLS context the upstreams will need (CA files that parse) */
	bool ok = true;
	for (size_t i = 0; i < cfg->nupstreams; i++) {
		const struct cfg_upstream *up = &cfg->upstreams[i];
		char err[512];
		SSL_CTX *ctx;

		if (up->tls == CFG_TLS_NONE)
			continue;
		if ((ctx = smtp_client_ssl_ctx(up, err, sizeof(err))) == NULL) {
			fprintf(errout, "%s:%d: %s\n", cfg->path, up->line, err);
			ok = false;
		}
		SSL_CTX_free(ctx);
	}
	if (!ok) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void
usage(void)
{
	fprintf(stderr, "usage: relayd [-f FILE] [-d] [-n] [-v] [-V]\n");
	exit(EXIT_CONFIG);
}

static void
load_cb(void *arg, struct spool_envelope *env)
{
	queue_add(arg, env);
}

static void
stop_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relayd *r = arg;
	struct timeval tv = { 0, 100000 };
	size_t n = smtp_server_nsessions(r->srv) + queue_active(r->queue);

	if (n == 0) {
		event_base_loopbreak(r->base);
		return;
	}
	if (time(NULL) >= r->stop_deadline) {
		log_warn("stopping with %zu sessions and deliveries still open after %d s", n,
		    STOP_GRACE_SEC);
		event_base_loopbreak(r->base);
		return;
	}
	evtimer_add(r->stop_timer, &tv);
}

static void
signal_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct relayd *r = arg;

	if (r->stopping)
		return;
	r->stopping = true;
	log_info("stopping on %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	sd_notify_msg("STOPPING=1");
	listener_free(r->listener);
	r->listener = NULL;
	smtp_server_shutdown(r->srv);
	queue_stop(r->queue);
	r->stop_deadline = time(NULL) + STOP_GRACE_SEC;
	stop_check_cb(-1, 0, r);
}

/* systemd's readiness protocol, without linking libsystemd. */
static void
sd_notify_msg(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	size_t len;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';	/* abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}

/* Logs each "FILE:LINE: message" line config_load() wrote. */
static void
log_lines(const char *text)
{
	const char *p = text;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		const char *w = memmem(p, (size_t)n, ": warning: ", 11);

		if (n > 0 && w != NULL)
			log_warn("%.*s", n, p);
		else if (n > 0)
			log_err("%.*s", n, p);
		p = nl ? nl + 1 : NULL;
	}
}

/*
 * The warnings of a configuration about to run ("FILE:LINE: warning: ..."),
 * at start and at every reload, so that they stay in view in the log.
 */
static void
log_config_warnings(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nwarnings; i++)
		log_warn("%s", cfg->warnings[i]);
}

/*
 * SIGHUP: the new configuration is checked in full first; on any problem
 * the old one keeps running.  Listeners follow the new `listen` list,
 * new client sessions and new deliveries use the new snapshot, sessions in
 * progress finish under the one they started with.  The spool, control
 * socket and user are fixed at start: a change there needs a restart.
 */
static void
signal_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct relayd *r = arg;
	char *text = NULL, err[512];
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	struct config *n;

	if (r->stopping || mem == NULL) {
		free(text);
		return;
	}
	sd_notify_msg("RELOADING=1");
	log_info("SIGHUP: reloading %s", r->path);
	n = load_config(r->path, mem);
	fclose(mem);
	if (n == NULL) {
		log_lines(text);
		log_err("keeping the old configuration");
		free(text);
		sd_notify_msg("READY=1");
		return;
	}
	free(text);
	if (strcmp(n->spool, r->cfg->spool) != 0)
		log_warn("spool changed to %s: takes effect at the next restart (still using %s)",
		    n->spool, r->cfg->spool);
	if ((n->user == NULL) != (r->cfg->user == NULL) ||
	    (n->user && strcmp(n->user, r->cfg->user) != 0))
		log_warn("user changed: takes effect at the next restart");
	if (listener_reconfigure(r->listener, n->listen, n->nlisten, err, sizeof(err)) < 0) {
		log_err("%s", err);
		log_err("keeping the old configuration");
		config_free(n);
		sd_notify_msg("READY=1");
		return;
	}
	if (queue_set_config(r->queue, n, err, sizeof(err)) < 0) {
		log_err("%s", err);
		log_err("keeping the old configuration");
		(void)listener_reconfigure(r->listener, r->cfg->listen, r->cfg->nlisten, err,
		    sizeof(err));
		config_free(n);
		sd_notify_msg("READY=1");
		return;
	}
	smtp_server_set_config(r->srv, n);
	config_free(r->cfg);
	r->cfg = n;
	log_config_warnings(n);
	log_info("configuration reloaded");
	sd_notify_msg("READY=1");
}

/*
 * Who may own the spool besides root: the relay user when started as root
 * with `user` set (it owns the spool from the first start on), else the
 * user relayd runs as.
 */
static uid_t
spool_owner(const struct config *cfg)
{
	struct passwd *pw;

	if (geteuid() == 0 && cfg->user != NULL && (pw = getpwnam(cfg->user)) != NULL)
		return pw->pw_uid;
	return geteuid();
}

/*
 * Started as root with `user` set: everything that needs root is done
 * (listeners bound, configuration and secrets read, spool open), so hand
 * the spool to that user (through its open descriptor, never by path: a
 * path can be swapped for a link in between) and become that user for
 * good.
 */
static int
drop_privileges(const struct config *cfg, struct spool *spool, char *err, size_t errlen)
{
	struct passwd *pw;

	if (geteuid() != 0 || cfg->user == NULL)
		return 0;
	pw = getpwnam(cfg->user);
	if (pw == NULL) {
		snprintf(err, errlen, "user %s does not exist", cfg->user);
		return -1;
	}
	if (spool_chown(spool, pw->pw_uid, pw->pw_gid, err, errlen) < 0)
		return -1;
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		snprintf(err, errlen, "cannot become user %s: %s", cfg->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		snprintf(err, errlen, "could regain root after dropping to %s", cfg->user);
		return -1;
	}
	log_info("running as user %s (uid %ld)", cfg->user, (long)pw->pw_uid);
	return 0;
}

/*
 * The resolver for upstream host names: /etc/resolv.conf and /etc/hosts
 * (DNS_OPTIONS_ALL includes the hosts file),
 * or the file named by RELAYD_RESOLV_CONF (tests point it at a DNS server
 * on loopback).  Short timeouts: an unanswered lookup defers the message
 * with "DNS lookup of ... failed" instead of holding a session.
 */
static struct evdns_base *
dns_new(struct event_base *base)
{
	struct evdns_base *dns = evdns_base_new(base, 0);
	const char *conf = getenv("RELAYD_RESOLV_CONF");

	if (conf == NULL || *conf == '\0')
		conf = "/etc/resolv.conf";
	if (evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, conf) != 0)
		log_warn("cannot read %s; using the resolver on 127.0.0.1", conf);
	evdns_base_set_option(dns, "timeout:", "5");
	evdns_base_set_option(dns, "attempts:", "2");
	return dns;
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	/* Every client is a descriptor; max_clients may be large. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int
daemonize(void)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return chdir("/");
}

int
main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	bool foreground = false, check_only = false, verbose = false;
	struct relayd r;
	char err[512];
	int ch, status = 0;

	while ((ch = getopt(argc, argv, "f:dnvV")) != -1) {
		switch (ch) {
		case 'f':
			path = optarg;
			break;
		case 'd':
			foreground = true;
			break;
		case 'n':
			check_only = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'V':
			printf("relayd %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	memset(&r, 0, sizeof(r));
	r.path = path;
	r.cfg = load_config(path, stderr);
	if (r.cfg == NULL)
		return EXIT_CONFIG;
	if (check_only) {
		for (size_t i = 0; i < r.cfg->nwarnings; i++)
			fprintf(stderr, "%s\n", r.cfg->warnings[i]);
		printf("%s: configuration ok\n", path);
		config_free(r.cfg);
		return 0;
	}

	if (geteuid() == 0 && r.cfg->user == NULL && !foreground) {
		fprintf(stderr, "%s: refusing to run as root without `user` (set user = \"relayd\"), "
		    "except in the foreground with -d\n", path);
		config_free(r.cfg);
		return EXIT_CONFIG;
	}

	/* Under systemd (NOTIFY_SOCKET set) stay in the foreground but log to
	 * syslog; otherwise -d means foreground + stderr, and no -d forks. */
	log_init(foreground, verbose);
	if (!foreground && getenv("NOTIFY_SOCKET") == NULL && daemonize() < 0) {
		log_err("cannot run in the background: %s", strerror(errno));
		config_free(r.cfg);
		return EXIT_RUNTIME;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	log_info("relayd %s starting, configuration %s", PACKAGE_VERSION, path);
	log_config_warnings(r.cfg);

	r.base = event_base_new();
	if (r.base == NULL) {
		log_err("cannot create the event loop");
		config_free(r.cfg);
		return EXIT_RUNTIME;
	}
	r.dns = dns_new(r.base);
	r.queue = queue_new(r.base, r.dns, r.cfg);
	r.spool = spool_open(r.cfg->spool, spool_owner(r.cfg), r.base, load_cb, r.queue, err,
	    sizeof(err));
	if (r.spool == NULL) {
		log_err("spool unusable: %s", err);
		status = EXIT_RUNTIME;
		goto out;
	}
	qid_init(spool_max_qid(r.spool));
	/* Tests only: how long a record nobody waits for may wait for a commit
	 * (default 100 ms), stretched to stop relayd with one still in memory. */
	const char *lazy = getenv("RELAYD_TEST_LAZY_MS");
	if (lazy != NULL && *lazy != '\0')
		spool_set_lazy_max(r.spool, strtol(lazy, NULL, 10));
	log_info("queue: %zu messages loaded from the spool", queue_count(r.queue));
	if (queue_start(r.queue, r.spool, err, sizeof(err)) < 0) {
		log_err("%s", err);
		status = EXIT_CONFIG;
		goto out;
	}

	r.workers = workers_new(r.base, 0);
	r.srv = smtp_server_new(r.base, r.cfg, r.spool, r.queue, r.workers);
	/* Everything a client, an admin or a signal may reach is in place
	 * before the listeners open: once relayd is seen listening, relayctl
	 * finds its socket and SIGTERM stops it cleanly (the callbacks run
	 * only from the loop, below). */
	r.sigterm = evsignal_new(r.base, SIGTERM, signal_stop_cb, &r);
	r.sigint = evsignal_new(r.base, SIGINT, signal_stop_cb, &r);
	r.sighup = evsignal_new(r.base, SIGHUP, signal_hup_cb, &r);
	r.stop_timer = evtimer_new(r.base, stop_check_cb, &r);
	event_add(r.sigterm, NULL);
	event_add(r.sigint, NULL);
	event_add(r.sighup, NULL);
	r.control = control_open(r.base, r.cfg, r.queue, err, sizeof(err));
	if (r.control == NULL) {
		log_err("%s", err);
		status = EXIT_RUNTIME;
		goto out;
	}
	r.listener = listener_open(r.base, r.cfg->listen, r.cfg->nlisten, r.srv, err, sizeof(err));
	if (r.listener == NULL) {
		log_err("cannot listen: %s", err);
		status = EXIT_RUNTIME;
		goto out;
	}
	if (drop_privileges(r.cfg, r.spool, err, sizeof(err)) < 0) {
		log_err("%s", err);
		status = EXIT_RUNTIME;
		goto out;
	}
	sd_notify_msg("READY=1");

	event_base_dispatch(r.base);
	struct spool_stats st;
	spool_get_stats(r.spool, &st);
	log_info("stopped, %zu messages in the queue; spool: %llu records in %llu commits",
	    queue_count(r.queue), (unsigned long long)st.records, (unsigned long long)st.commits);
out:
	listener_free(r.listener);
	control_free(r.control);
	workers_free(r.workers);	/* before the sessions its jobs point to */
	smtp_server_free(r.srv);
	queue_free(r.queue);
	spool_close(r.spool);
	if (r.dns)
		evdns_base_free(r.dns, 0);
	if (r.sigterm)
		event_free(r.sigterm);
	if (r.sigint)
		event_free(r.sigint);
	if (r.sighup)
		event_free(r.sighup);
	if (r.stop_timer)
		event_free(r.stop_timer);
	if (r.base)
		event_base_free(r.base);
	config_free(r.cfg);
	return status;
}
