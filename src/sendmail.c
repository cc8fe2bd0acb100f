/*
 * relayd-sendmail — a sendmail-compatible injector for applications that
 * call /usr/sbin/sendmail (PHP's mail(), cron, scripts).
 *
 * It reads the message on stdin, then submits it over SMTP to relayd's
 * first listen address, one blocking connection, every wait bounded.
 * Promises:
 *  - exit 0, silently, only when the relay accepted the message for every
 *    recipient (its "250 ... queued as" means it is on disk there);
 *  - otherwise a line on stderr naming what failed, with the relay's own
 *    reply, and a sysexits.h status: EX_TEMPFAIL (75) when the relay is
 *    unreachable or answers 4xx, EX_NOUSER (67) for a refused recipient,
 *    EX_DATAERR (65) for a refused message, EX_NOPERM (77) for a refused
 *    sender, EX_USAGE (64) for bad options or no recipients, EX_CONFIG (78)
 *    for an unusable configuration (see sendmail_exit_status());
 *  - it needs no privileges: the configuration is read without its secret
 *    files, which a cron job's user may not be able to open.
 */
#include "acconfig.h"

#include <errno.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "sendmail_opts.h"
#include "submit.h"
#include "util.h"

#define PROG			"relayd-sendmail"

static const char usage_text[] =
    "usage: " PROG " [-t] [-i] [-f SENDER] [-F NAME] [-C FILE] [-v] [--] [RECIPIENT...]\n";

/* ---- main -------------------------------------------------------------- */

/* The login name of the real user, as Postfix takes it for the sender. */
static const char *
sm_login_name(void)
{
	struct passwd *pw = getpwuid(getuid());
	const char *s;

	if (pw != NULL && pw->pw_name[0] != '\0')
		return pw->pw_name;
	/* no passwd entry (a container, say): what the environment says */
	if ((s = getenv("LOGNAME")) != NULL && *s != '\0')
		return s;
	if ((s = getenv("USER")) != NULL && *s != '\0')
		return s;
	return NULL;
}

/* Reads stdin into in; returns 0, or an exit status after saying why. */
static int
sm_read_input(struct sendmail_input *in, uint64_t limit)
{
	char chunk[65536];

	while (!in->done) {
		ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, PROG ": reading the message: %s\n", strerror(errno));
			return EX_IOERR;
		}
		if (n == 0)
			break;
		sendmail_input_feed(in, chunk, (size_t)n);
		if (in->text.len + in->line.len > limit) {
			fprintf(stderr, PROG ": the message is larger than the relay accepts "
			    "(max_message_size %llu octets)\n", (unsigned long long)limit);
			return EX_DATAERR;
		}
	}
	sendmail_input_finish(in);
	return 0;
}

int
main(int argc, char **argv)
{
	struct sendmail_opts o;
	struct sendmail_rcpts rcpts;
	struct sendmail_input in;
	struct sendmail_msg msg;
	struct config *cfg = NULL;
	struct submit_job job;
	const char *path;
	char *sender = NULL;
	char err[512];
	uint64_t limit;
	int status = 0;

	sendmail_rcpts_init(&rcpts);
	sendmail_input_init(&in, false);
	memset(&msg, 0, sizeof(msg));
	buf_init(&msg.text);

	if (sendmail_parse_args(argc, argv, &o, err, sizeof(err)) == -1) {
		fprintf(stderr, PROG ": %s\n%s", err, usage_text);
		status = EX_USAGE;
		goto out;
	}
	in.ignore_dots = o.ignore_dots;
	path = o.config != NULL ? o.config : CONFIG_DEFAULT_PATH;
	cfg = config_load_opts(path, stderr, CONFIG_NO_KEYFILE_CHECK | CONFIG_NO_SECRETS);
	if (cfg == NULL) {
		fprintf(stderr, PROG ": cannot use the configuration %s\n", path);
		status = EX_CONFIG;
		goto out;
	}
	if (cfg->nlisten == 0) {
		fprintf(stderr, PROG ": %s has no listen address\n", path);
		status = EX_CONFIG;
		goto out;
	}

	if (o.sender != NULL) {
		if (sendmail_sender(o.sender, cfg->hostname, &sender, err, sizeof(err)) == -1) {
			fprintf(stderr, PROG ": -f %s: %s\n", o.sender, err);
			status = EX_USAGE;
			goto out;
		}
	} else {
		const char *login = sm_login_name();

		if (login == NULL) {
			fprintf(stderr, PROG ": cannot tell who runs this (no passwd entry, "
			    "no LOGNAME); give the sender with -f\n");
			status = EX_OSERR;
			goto out;
		}
		if (sendmail_sender(login, cfg->hostname, &sender, err, sizeof(err)) == -1) {
			fprintf(stderr, PROG ": sender from the login name %s: %s; "
			    "give one with -f\n", login, err);
			status = EX_USAGE;
			goto out;
		}
	}
	for (size_t i = 0; i < o.nargs; i++) {
		if (sendmail_parse_addrlist(o.args[i], strlen(o.args[i]), cfg->hostname,
		    &rcpts, err, sizeof(err)) == -1) {
			fprintf(stderr, PROG ": recipient %s: %s\n", o.args[i], err);
			status = EX_USAGE;
			goto out;
		}
	}
	if (!o.extract && rcpts.n == 0) {
		/* nothing to read the message for */
		fprintf(stderr, PROG ": no recipients given (use -t to take them "
		    "from the header)\n%s", usage_text);
		status = EX_USAGE;
		goto out;
	}

	/* room for LF becoming CRLF: the relay has the last word on size */
	limit = cfg->max_message_size * 2 + (1u << 20);
	if ((status = sm_read_input(&in, limit)) != 0)
		goto out;
	if (sendmail_msg_build(in.text.p, in.text.len, sender, o.fullname, cfg->hostname,
	    o.extract ? &rcpts : NULL, &msg, err, sizeof(err)) == -1) {
		fprintf(stderr, PROG ": %s\n", err);
		status = EX_DATAERR;
		goto out;
	}
	if (rcpts.n == 0) {
		fprintf(stderr, PROG ": no recipient addresses found in the header\n");
		status = EX_USAGE;
		goto out;
	}

	memset(&job, 0, sizeof(job));
	job.prog = PROG;
	job.helo = cfg->hostname;
	job.sender = sender;
	job.rcpts = &rcpts;
	job.msg = &msg;
	job.verbose = o.verbose;
	status = submit_message(&cfg->listen[0].hp, &job);
out:
	free(sender);
	sendmail_msg_free(&msg);
	sendmail_input_free(&in);
	sendmail_rcpts_free(&rcpts);
	config_free(cfg);
	return status;
}
