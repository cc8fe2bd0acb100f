/*
 * oauth — OAuth 2.0 access tokens for upstreams with auth = "xoauth2":
 * fetched from the token endpoint when first needed, kept in memory only,
 * refreshed before they expire, dropped when an upstream refuses one.
 *
 * Promises (interface.md, "OAuth 2.0"):
 *  - One fetch at a time per upstream, whatever the number of sessions
 *    waiting; all of them get its outcome.
 *  - Fetching never blocks the event loop: the HTTPS exchange is libcurl's
 *    multi interface driven by libevent (its resolver runs on a thread of
 *    its own), bounded by a connect and a total timeout; a slow or dead
 *    endpoint delays only the sessions that wait for its token.
 *  - A token is refreshed ahead of expires_in by a tenth of its lifetime,
 *    at least 60 s: fetched again in the background while the old one still
 *    serves, if it was used since it was fetched; a token whose lifetime is
 *    shorter than that still serves the sessions that waited for it.  A
 *    token with less than 30 s left goes to no new session (it could
 *    expire before the session reaches AUTH): that session waits for the
 *    next one.
 *  - The endpoint is HTTPS with its certificate verified (tls_ca_file, else
 *    the system store); its reply is bounded (64 KiB).
 *  - A rotated refresh token (generic provider) replaces the file
 *    atomically (a new file, mode 0600, synced, renamed over the old one),
 *    so that it survives a restart.
 *  - Secrets, assertions and tokens never reach a log, -v included.
 *
 * Event-loop thread only.
 */
#ifndef RELAYD_OAUTH_H
#define RELAYD_OAUTH_H

#include <stdbool.h>

#include <event2/event.h>

#include "oauth_grant.h"

struct oauth;
struct oauth_wait;

/* token: valid until the callback returns (copy it); NULL with error
 * ("token from <host> failed: ...") when the fetch failed. */
typedef void (*oauth_cb)(void *arg, const char *token, const char *error);

struct oauth *oauth_new(struct event_base *base);
/* Cancels fetches in flight (their waiters are not called) and frees. */
void oauth_free(struct oauth *o);

/*
 * The credentials of upstream `name`, at start and at every reload: takes
 * creds over (zeroed in the caller's struct).  A token already held is kept
 * when the credentials did not change, and dropped otherwise.  ca_file:
 * the token endpoint's CA file (NULL: system store); refresh_file: where a
 * rotated refresh token is written (NULL: none).  A refresh token rotated
 * in memory is kept over the file's, unless the file changed since relayd
 * last read or wrote it (the admin put a new one there).
 */
void oauth_set(struct oauth *o, const char *name, struct oauth_creds *creds,
    const char *ca_file, const char *refresh_file);

/* After a reload: the upstreams with auth = "xoauth2" now (names); every
 * other one's token and secrets are dropped. */
void oauth_retain(struct oauth *o, const char *const *names, size_t n);

/*
 * Calls cb with a token for upstream `name`: before returning (and then
 * returns NULL) when one is held and not due for refresh, or when `name`
 * is unknown or its endpoint refused less than a second ago (with the
 * error: the sessions of one round of attempts share one refusal);
 * otherwise once the fetch in flight ends, and returns a handle for
 * oauth_cancel().
 */
struct oauth_wait *oauth_get(struct oauth *o, const char *name, oauth_cb cb, void *arg);
void oauth_cancel(struct oauth_wait *w);

/* The upstream refused `token`: if it is still the one held, it is
 * dropped, and the next oauth_get() fetches a new one. */
void oauth_reject(struct oauth *o, const char *name, const char *token);

/* For tests and logs: the host part of an https URL ("" if none). */
void oauth_url_host(const char *url, char *out, size_t outlen);

#endif
