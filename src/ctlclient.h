/*
 * ctlclient — relayctl's end of the control socket (protocol in control.h):
 * the queue, flush, remove and wait requests, and the formatting of their
 * answers (the queue table and its JSON form).
 *
 * Every function returns a relayctl exit status: 0 done, 1 the daemon
 * refused (unknown id, ...), 69 relayd is not running (the socket cannot be
 * reached), 75 the answer did not come in time.
 */
#ifndef RELAYD_CTLCLIENT_H
#define RELAYD_CTLCLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_EXIT_OK		0
#define CTL_EXIT_FAIL		1
#define CTL_EXIT_UNAVAILABLE	69	/* sysexits.h EX_UNAVAILABLE */
#define CTL_EXIT_TEMPFAIL	75	/* sysexits.h EX_TEMPFAIL */

int ctl_queue(const char *sock, bool json, FILE *out);
int ctl_flush(const char *sock, int nids, char **ids, FILE *out);
int ctl_remove(const char *sock, int nids, char **ids, FILE *out);

/* Waits (at most timeout_sec) for the outcome of the first delivery
 * attempt of id and prints one line per recipient; returns 0 only if every
 * recipient was sent. */
int ctl_wait(const char *sock, const char *id, int timeout_sec, FILE *out);

/*
 * The answers' readers, pure: each takes an answer as the daemon sent it
 * (a C string, changed in place), prints it to out as the command above
 * does, and returns the same exit status.  now is the time ages and next
 * attempts are told from.  The commands above use them; so do the fuzz
 * targets (tests/fuzz/fuzz_control.c), which feed them any bytes.
 */
int ctl_queue_print(char *ans, bool json, int64_t now, FILE *out);
int ctl_simple_print(const char *cmd, char *ans, FILE *out);
int ctl_wait_print(const char *id, char *ans, FILE *out);

/* Pure helpers, for tests: RFC 3339 UTC time, JSON string escaping. */
void ctl_rfc3339(int64_t unix_sec, char *out, size_t outlen);
void ctl_json_string(FILE *out, const char *s);

#endif
