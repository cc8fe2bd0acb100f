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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "qid.h"
#include "queue.h"
#include "smtp_server.h"
#include "spool.h"

#define EXIT_CONFIG	1
#define EXIT_RUNTIME	2
#define STOP_GRACE_SEC	30	/* sessions in progress may finish within this */

struct relayd {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct config		*cfg;
	struct spool		*spool;
	struct queue		*queue;
	struct smtp_server	*srv;
	struct listener		*listener;
	struct event		*sigterm, *sigint, *sighup;
	struct event		*stop_timer;
	int64_t			 stop_deadline;
	bool			 stopping;
};

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
	listener_free(r->listener);
	r->listener = NULL;
	smtp_server_shutdown(r->srv);
	queue_stop(r->queue);
	r->stop_deadline = time(NULL) + STOP_GRACE_SEC;
	stop_check_cb(-1, 0, r);
}

static void
signal_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	/* Reloading (with listener and upstream changes) comes with the
	 * operations issue; until then say so instead of pretending. */
	log_warn("SIGHUP: configuration reload is not implemented yet; restart relayd to apply changes");
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
	r.cfg = config_load(path, stderr);
	if (r.cfg == NULL)
		return EXIT_CONFIG;
	if (check_only) {
		printf("%s: configuration ok\n", path);
		config_free(r.cfg);
		return 0;
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

	r.base = event_base_new();
	if (r.base == NULL) {
		log_err("cannot create the event loop");
		config_free(r.cfg);
		return EXIT_RUNTIME;
	}
	r.dns = dns_new(r.base);
	r.queue = queue_new(r.base, r.dns, r.cfg);
	r.spool = spool_open(r.cfg->spool, r.base, load_cb, r.queue, err, sizeof(err));
	if (r.spool == NULL) {
		log_err("spool unusable: %s", err);
		status = EXIT_RUNTIME;
		goto out;
	}
	qid_init(spool_max_qid(r.spool));
	log_info("queue: %zu messages loaded from the spool", queue_count(r.queue));
	if (queue_start(r.queue, r.spool, err, sizeof(err)) < 0) {
		log_err("%s", err);
		status = EXIT_CONFIG;
		goto out;
	}

	r.srv = smtp_server_new(r.base, r.cfg, r.spool, r.queue);
	r.listener = listener_open(r.base, r.cfg->listen, r.cfg->nlisten, r.srv, err, sizeof(err));
	if (r.listener == NULL) {
		log_err("cannot listen: %s", err);
		status = EXIT_RUNTIME;
		goto out;
	}
	r.sigterm = evsignal_new(r.base, SIGTERM, signal_stop_cb, &r);
	r.sigint = evsignal_new(r.base, SIGINT, signal_stop_cb, &r);
	r.sighup = evsignal_new(r.base, SIGHUP, signal_hup_cb, &r);
	r.stop_timer = evtimer_new(r.base, stop_check_cb, &r);
	event_add(r.sigterm, NULL);
	event_add(r.sigint, NULL);
	event_add(r.sighup, NULL);

	event_base_dispatch(r.base);
	struct spool_stats st;
	spool_get_stats(r.spool, &st);
	log_info("stopped, %zu messages in the queue; spool: %llu records in %llu commits",
	    queue_count(r.queue), (unsigned long long)st.records, (unsigned long long)st.commits);
out:
	listener_free(r.listener);
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
