/*
 * log — one line per event, to syslog (facility mail, ident "relayd") or,
 * with -d, to stderr.  The delivery line shapes are fixed by interface.md;
 * callers format the message text, this module only routes it.
 *
 * Every line is one line, whatever it quotes (a client's address or header
 * field, an upstream's reply): the emitter escapes every control character
 * of the formatted text (see log_escape()), so callers never have to, and
 * no text from outside can end a line early or forge another one.
 *
 * Never pass a password, token or AUTH payload to these functions.
 */
#ifndef RELAYD_LOG_H
#define RELAYD_LOG_H

#include <stdbool.h>
#include <stddef.h>

void log_init(bool to_stderr, bool debug);
void log_set_debug(bool debug);
bool log_debug_enabled(void);

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Copies the n octets at in to out as text without control characters:
 * CR, LF and TAB become "\r", "\n" and "\t", every other C0 control and
 * DEL become "\xNN" (two lower-case hex digits, "\x01"); everything else,
 * 8-bit octets (UTF-8) included, is copied as it is.  out (outlen > 0) is
 * always NUL-terminated; when it is too small the text is cut before an
 * escape, never inside one.  Returns the length written.
 *
 * A backslash is not escaped.  Escaping only has to keep a line one line:
 * only a real control character could end it early or start a forged one,
 * and those never pass.  Left alone, what admins grep for keeps the form
 * the client gave it (a quoted local part "a\"b"@x, a Windows path in a
 * Subject), as Postfix leaves it too.  The price is that a
 * client's literal backslash-r reads like an escaped CR; a log line is for
 * reading, not for getting the exact bytes back.
 *
 * smtp_server uses the same function on its replies, so a reply quoting a
 * client (a From: domain, say) shows what the log shows.
 */
size_t log_escape(char *out, size_t outlen, const char *in, size_t n);

#endif
