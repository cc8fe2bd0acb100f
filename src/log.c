/*
 * log — routes one-line events to syslog (facility mail, ident "relayd")
 * or, in the foreground (-d), to stderr with a timestamp.
 *
 * A line is formatted into a stack buffer and written with one write(2), so
 * lines from the committer thread and the event loop never interleave.
 */
#include "acconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static bool log_stderr = true;
static bool log_dbg;

void
log_init(bool to_stderr, bool debug)
{
	log_stderr = to_stderr;
	log_dbg = debug;
	if (!to_stderr)
		openlog("relayd", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_debug(bool debug)
{
	log_dbg = debug;
}

bool
log_debug_enabled(void)
{
	return log_dbg;
}

static void __attribute__((format(printf, 2, 0)))
log_emit(int prio, const char *fmt, va_list ap)
{
	char line[4096];
	size_t n = 0;

	if (!log_stderr) {
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(LOG_MAIL | prio, "%s", line);
		return;
	}

	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%06ld relayd[%ld]: ",
	    ts.tv_nsec / 1000, (long)getpid());
	if (prio == LOG_ERR)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "error: ");
	else if (prio == LOG_WARNING)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "warning: ");
	int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (m < 0)
		m = 0;
	n += (size_t)m;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

#define LOG_FN(name, prio, guard)			\
void							\
name(const char *fmt, ...)				\
{							\
	va_list ap;					\
							\
	if (!(guard))					\
		return;					\
	va_start(ap, fmt);				\
	log_emit(prio, fmt, ap);			\
	va_end(ap);					\
}

LOG_FN(log_err, LOG_ERR, true)
LOG_FN(log_warn, LOG_WARNING, true)
LOG_FN(log_info, LOG_INFO, true)
LOG_FN(log_debug, LOG_DEBUG, log_dbg)
