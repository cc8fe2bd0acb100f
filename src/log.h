/*
 * log — one line per event, to syslog (facility mail, ident "relayd") or,
 * with -d, to stderr.  The delivery line shapes are fixed by interface.md;
 * callers format the message text, this module only routes it.
 *
 * Never pass a password, token or AUTH payload to these functions.
 */
#ifndef RELAYD_LOG_H
#define RELAYD_LOG_H

#include <stdbool.h>

void log_init(bool to_stderr, bool debug);
void log_set_debug(bool debug);
bool log_debug_enabled(void);

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
