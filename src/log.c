/*
 * log — routes one-line events to syslog (facility mail, ident "relayd")
 * or, in the foreground (-d), to stderr with a timestamp.
 *
 * A line is formatted into a stack buffer and written with one write(2), so
 * lines from the committer thread and the event loop never interleave.
 * Between formatting and writing, every control character of the message
 * is escaped (log_escape()): this is the one place that does it, for
 * every line, whoever wrote the format and whatever its arguments hold.
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

size_t
log_escape(char *out, size_t outlen, const char *in, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (outlen == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		char esc[4];
		size_t k = 0;

		if (c >= 0x20 && c != 0x7f) {
			esc[k++] = (char)c;
		} else {
			esc[k++] = '\\';
			if (c == '\r')
				esc[k++] = 'r';
			else if (c == '\n')
				esc[k++] = 'n';
			else if (c == '\t')
				esc[k++] = 't';
			else {
				esc[k++] = 'x';
				esc[k++] = hex[c >> 4];
				esc[k++] = hex[c & 0xf];
			}
		}
		if (o + k >= outlen)
			break;
		memcpy(out + o, esc, k);
		o += k;
	}
	out[o] = '\0';
	return o;
}

static void __attribute__((format(printf, 2, 0)))
log_emit(int prio, const char *fmt, va_list ap)
{
	char msg[4096];
	char line[4096];
	size_t n = 0;
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);

	if (m < 0)
		m = 0;
	if ((size_t)m >= sizeof(msg))
		m = (int)sizeof(msg) - 1;
	if (!log_stderr) {
		(void)log_escape(line, sizeof(line), msg, (size_t)m);
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
	/* room for the newline */
	n += log_escape(line + n, sizeof(line) - n - 1, msg, (size_t)m);
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
