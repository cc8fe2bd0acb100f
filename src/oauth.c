/*
 * oauth — access tokens for xoauth2 upstreams (see oauth.h).
 *
 * Why libcurl: the token endpoint is HTTPS (redirect-free POST, TLS with
 * verification, chunked or not, HTTP/1.1 or 2), which a maintained client
 * does better than our own code would; its multi interface hands every
 * socket and timer to the caller, so libevent drives it and the event loop
 * never waits (the pattern of libcurl's hiperfifo example).  Its threaded
 * resolver keeps DNS off the loop too.
 *
 * Per upstream (struct oauth_up): the credentials, the token held (with
 * when it expires and when to fetch the next), at most one fetch in
 * flight, and the sessions waiting for it.
 */
#include "acconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "oauth.h"
#include "util.h"

#define CONNECT_SEC	10		/* to reach the token endpoint */
#define TOTAL_SEC	30		/* for the whole exchange */
#define REPLY_MAX	(64u << 10)	/* octets of a reply */
#define REFRESH_MIN	60		/* seconds: refresh at least this long before expiry */
#define FAIL_HOLD_US	1000000		/* a failed fetch's answer serves the
					 * sessions of the same round of attempts
					 * (a line of queued mail starting one
					 * session after another), sparing the
					 * endpoint a request each; a retry, at
					 * least a second later, asks again */
#define HANDOUT_MIN	30		/* seconds a token must have left to go to a session
					 * that has yet to reach AUTH (connect, TLS, EHLO) */

struct oauth_wait {
	struct oauth_wait	*next, **prevp;
	struct oauth_up		*up;
	oauth_cb		 cb;
	void			*arg;
};

struct fetch {
	struct oauth_up		*up;
	CURL			*easy;
	struct curl_slist	*headers;
	char			*form;		/* secret: wiped when done */
	struct buf		 body;		/* the reply: may hold a token */
	bool			 too_big;
	unsigned		 gen;		/* the credentials' generation it asked with */
	char			 errbuf[CURL_ERROR_SIZE];
};

struct oauth_up {
	struct oauth		*o;
	struct oauth_up		*next;
	char			*name;
	struct oauth_creds	 creds;
	char			*ca_file;
	char			*refresh_file;
	unsigned char		 file_md[32];	/* SHA-256 of the refresh token the file
						 * held when last read, or that relayd
						 * last wrote there */
	char			 host[256];	/* the endpoint's, for log lines */
	char			*token;		/* secret; NULL: none held */
	int64_t			 valid_until;	/* unix seconds */
	int64_t			 refresh_at;
	bool			 used;		/* handed out since it was fetched */
	struct fetch		*fetch;		/* in flight, or NULL */
	struct oauth_wait	*waiters;
	struct event		*refresh_ev;
	unsigned		 gen;		/* bumped when the credentials change */
	int64_t			 failed_at;	/* when (µs) the last fetch failed; 0: it did not */
	bool			 stale;		/* not in the configuration any more */
	char			 failed[800];	/* its reason */
};

struct oauth {
	struct event_base	*base;
	CURLM			*multi;
	struct event		*timer;
	struct oauth_up		*ups;
};

static bool fetch_start(struct oauth_up *up, char *error, size_t errlen);

void
oauth_url_host(const char *url, char *out, size_t outlen)
{
	const char *p = strstr(url, "://");
	size_t n;

	p = p ? p + 3 : url;
	n = strcspn(p, "/:?#");
	snprintf(out, outlen, "%.*s", (int)n, p);
}

static int64_t
now_sec(void)
{
	return now_us() / 1000000;
}

/* ---- libcurl on libevent ----------------------------------------------- */

static void check_done(struct oauth *o);

static void
socket_event_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct oauth *o = arg;
	int running = 0;
	int action = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) |
	    ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(o->multi, fd, action, &running);
	check_done(o);
}

static void
timer_event_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct oauth *o = arg;
	int running = 0;

	curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(o);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what libcurl wants. */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct oauth *o = userp;
	struct event *ev = socketp;

	if (what == CURL_POLL_REMOVE) {
		if (ev != NULL) {
			event_free(ev);
			curl_multi_assign(o->multi, s, NULL);
		}
		return 0;
	}
	short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);

	if (ev != NULL) {
		event_del(ev);
		event_assign(ev, o->base, s, kind, socket_event_cb, o);
	} else {
		ev = event_new(o->base, s, kind, socket_event_cb, o);
		curl_multi_assign(o->multi, s, ev);
	}
	event_add(ev, NULL);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: call back in timeout_ms (-1: no timer). */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct oauth *o = userp;

	if (timeout_ms < 0) {
		evtimer_del(o->timer);
	} else {
		struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

		evtimer_add(o->timer, &tv);
	}
	return 0;
}

static size_t
write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct fetch *f = arg;

	if (f->body.len + n > REPLY_MAX) {
		f->too_big = true;
		return 0;	/* libcurl ends the transfer: CURLE_WRITE_ERROR */
	}
	buf_add(&f->body, p, n);
	return n;
}

/* ---- tokens -------------------------------------------------------------- */

static void
token_drop(struct oauth_up *up)
{
	oauth_wipe(up->token);
	up->token = NULL;
	up->valid_until = up->refresh_at = 0;
	if (up->refresh_ev)
		evtimer_del(up->refresh_ev);
}

static void
refresh_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct oauth_up *up = arg;

	char error[800];

	/* fetched again ahead of expiry only if someone used this one; the
	 * old one serves until then, and on if this fails */
	if (up->used && up->fetch == NULL && !up->stale)
		(void)fetch_start(up, error, sizeof(error));
}

/*
 * Writes a rotated refresh token where the configuration reads it: a new
 * file beside it (mode 0600, never through a link), synced, renamed over
 * the old one, the directory synced.  -1 with errno on failure.
 */
static int
refresh_file_write(const char *path, const char *token)
{
	char *tmp = xasprintf("%s.new", path), *dir = xstrdup(path), *slash;
	int fd, dfd, rc = -1, e = 0;

	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	else
		strcpy(dir, ".");
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	if (write_full(fd, token, strlen(token)) < 0 || write_full(fd, "\n", 1) < 0 ||
	    fsync(fd) < 0 || close(fd) < 0) {
		e = errno;
		(void)unlink(tmp);
		errno = e;
		goto out;
	}
	if (rename(tmp, path) < 0)
		goto out;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	e = errno;
	free(tmp);
	free(dir);
	errno = e;
	return rc;
}

/* SHA-256 of a refresh token: what oauth_up.file_md compares. */
static void
token_md(const char *token, unsigned char md[32])
{
	if (EVP_Digest(token, strlen(token), md, NULL, EVP_sha256(), NULL) != 1)
		memset(md, 0, 32);
}

/* A new token from the endpoint's reply. */
static void
token_store(struct oauth_up *up, struct oauth_reply *r)
{
	int64_t now = now_sec(), ahead = r->expires_in / 10;

	if (ahead < REFRESH_MIN)
		ahead = REFRESH_MIN;
	token_drop(up);
	up->token = r->access_token;
	r->access_token = NULL;
	up->valid_until = now + r->expires_in;
	up->refresh_at = up->valid_until - ahead;
	up->used = false;
	if (up->refresh_at > now) {
		struct timeval tv = { (time_t)(up->refresh_at - now), 0 };

		evtimer_add(up->refresh_ev, &tv);
	}
	log_info("upstream %s: token from %s, valid for %llds", up->name, up->host,
	    (long long)r->expires_in);
	if (r->refresh_token != NULL && up->creds.refresh_token != NULL &&
	    strcmp(r->refresh_token, up->creds.refresh_token) != 0) {
		/* rotated: the old one may be void already, so the new one
		 * serves from now on, written down or not */
		oauth_wipe(up->creds.refresh_token);
		up->creds.refresh_token = r->refresh_token;
		r->refresh_token = NULL;
		if (up->refresh_file == NULL)
			return;
		if (refresh_file_write(up->refresh_file, up->creds.refresh_token) < 0)
			log_err("upstream %s: the token endpoint rotated the refresh token, and it "
			    "cannot be written to %s: %s; it is kept in memory, and a restart would "
			    "read the old one", up->name, up->refresh_file, strerror(errno));
		else {
			token_md(up->creds.refresh_token, up->file_md);
			log_info("upstream %s: new refresh token written to %s", up->name,
			    up->refresh_file);
		}
	}
}

/* Hands the fetch's outcome to everyone waiting (who may ask again). */
static void
waiters_call(struct oauth_up *up, const char *error)
{
	struct oauth_wait *list = up->waiters;
	char *token = up->token ? xstrdup(up->token) : NULL;

	up->waiters = NULL;
	if (list != NULL)
		list->prevp = &list;
	while (list != NULL) {
		struct oauth_wait *w = list;

		list = w->next;
		if (list != NULL)
			list->prevp = &list;
		if (token != NULL)
			up->used = true;
		w->cb(w->arg, error ? NULL : token, error);
		free(w);
	}
	oauth_wipe(token);
}

static void
fetch_free(struct fetch *f)
{
	if (f->easy != NULL) {
		curl_multi_remove_handle(f->up->o->multi, f->easy);
		curl_easy_cleanup(f->easy);
	}
	curl_slist_free_all(f->headers);
	oauth_wipe(f->form);
	OPENSSL_cleanse(f->body.p, f->body.len);
	buf_free(&f->body);
	free(f);
}

/*
 * "token from HOST failed: " and libcurl's words, with the system's reason
 * when it has one: libcurl says only "Couldn't connect to server", where
 * an admin needs to know whether it was refused, unreachable or timed out.
 */
static void
curl_failure(struct fetch *f, CURLcode code, char *error, size_t errlen)
{
	const char *what = f->errbuf[0] ? f->errbuf : curl_easy_strerror(code);
	long oserr = 0;

	if (curl_easy_getinfo(f->easy, CURLINFO_OS_ERRNO, &oserr) == CURLE_OK && oserr != 0 &&
	    strstr(what, strerror((int)oserr)) == NULL)
		snprintf(error, errlen, "token from %s failed: %s (%s)", f->up->host, what,
		    strerror((int)oserr));
	else
		snprintf(error, errlen, "token from %s failed: %s", f->up->host, what);
}

static void
fetch_done(struct fetch *f, CURLcode code)
{
	struct oauth_up *up = f->up;
	struct oauth_reply r;
	char error[1024] = "";
	long status = 0;

	up->fetch = NULL;
	if (f->gen != up->gen) {
		/* asked with credentials a reload has replaced: whatever came
		 * back is not for these; ask again for whoever waits */
		fetch_free(f);
		if (up->waiters != NULL && !fetch_start(up, error, sizeof(error)))
			waiters_call(up, error);
		return;
	}
	curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
	if (f->too_big)
		snprintf(error, sizeof(error), "token from %s failed: a reply over %u octets",
		    up->host, REPLY_MAX);
	else if (code != CURLE_OK)
		curl_failure(f, code, error, sizeof(error));
	else if (oauth_parse_reply(status, f->body.p, f->body.len, &r) < 0)
		snprintf(error, sizeof(error), "token from %s failed: %s", up->host, r.error);
	else
		token_store(up, &r);
	if (error[0] == '\0')
		oauth_reply_free(&r);
	fetch_free(f);
	up->failed_at = error[0] != '\0' ? now_us() : 0;
	snprintf(up->failed, sizeof(up->failed), "%s", error);
	if (error[0] != '\0') {
		log_err("upstream %s: %s", up->name, error);
		/* a failed background refresh leaves the old token serving */
		if (up->token != NULL && now_sec() < up->valid_until && up->waiters == NULL)
			return;
	}
	waiters_call(up, error[0] ? error : NULL);
}

static void
check_done(struct oauth *o)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(o->multi, &left)) != NULL) {
		struct fetch *f = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
		if (f != NULL)
			fetch_done(f, msg->data.result);
	}
}

/* Starts fetching a token for up (none may be in flight); false, with
 * the reason logged and in error, if the request cannot even be made. */
static bool
fetch_start(struct oauth_up *up, char *error, size_t errlen)
{
	struct fetch *f = xcalloc(1, sizeof(*f));
	unsigned char rnd[16];
	char jti[33], err[256];

	f->up = up;
	buf_init(&f->body);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
	f->form = oauth_grant_form(&up->creds, now_sec(), jti, err, sizeof(err));
	if (f->form == NULL) {
		snprintf(error, errlen, "token from %s failed: %s", up->host, err);
		fetch_free(f);
		log_err("upstream %s: %s", up->name, error);
		return false;
	}
	up->fetch = f;
	f->gen = up->gen;
	f->easy = curl_easy_init();
	f->headers = curl_slist_append(NULL, "Accept: application/json");
	curl_easy_setopt(f->easy, CURLOPT_URL, up->creds.token_url);
	curl_easy_setopt(f->easy, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(f->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, f->form);
	curl_easy_setopt(f->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(f->form));
	curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers);
	curl_easy_setopt(f->easy, CURLOPT_USERAGENT, "relayd/" PACKAGE_VERSION);
	curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_SEC);
	curl_easy_setopt(f->easy, CURLOPT_TIMEOUT, (long)TOTAL_SEC);
	curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (up->ca_file != NULL)
		curl_easy_setopt(f->easy, CURLOPT_CAINFO, up->ca_file);
	curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->errbuf);
	curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
	if (log_debug_enabled())
		log_debug("upstream %s: fetching a token from %s", up->name, up->host);
	curl_multi_add_handle(up->o->multi, f->easy);
	return true;
}

/* ---- the API ------------------------------------------------------------- */

struct oauth *
oauth_new(struct event_base *base)
{
	struct oauth *o = xcalloc(1, sizeof(*o));

	curl_global_init(CURL_GLOBAL_DEFAULT);
	o->base = base;
	o->multi = curl_multi_init();
	o->timer = evtimer_new(base, timer_event_cb, o);
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETDATA, o);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o);
	return o;
}

static void
up_free(struct oauth_up *up)
{
	while (up->waiters != NULL) {
		struct oauth_wait *w = up->waiters;

		up->waiters = w->next;
		free(w);
	}
	if (up->fetch != NULL)
		fetch_free(up->fetch);
	token_drop(up);
	event_free(up->refresh_ev);
	oauth_creds_free(&up->creds);
	free(up->name);
	free(up->ca_file);
	free(up->refresh_file);
	free(up);
}

void
oauth_free(struct oauth *o)
{
	if (o == NULL)
		return;
	while (o->ups != NULL) {
		struct oauth_up *up = o->ups;

		o->ups = up->next;
		up_free(up);
	}
	curl_multi_cleanup(o->multi);
	event_free(o->timer);
	free(o);
	curl_global_cleanup();
}

static struct oauth_up *
up_find(struct oauth *o, const char *name)
{
	for (struct oauth_up *up = o->ups; up != NULL; up = up->next)
		if (strcmp(up->name, name) == 0)
			return up;
	return NULL;
}

static bool
str_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Would a token fetched with a have been fetched with b too? */
static bool
creds_same(const struct oauth_creds *a, const struct oauth_creds *b)
{
	return a->provider == b->provider && str_same(a->token_url, b->token_url) &&
	    str_same(a->scope, b->scope) && str_same(a->client_id, b->client_id) &&
	    str_same(a->client_secret, b->client_secret) &&
	    str_same(a->x5t_s256, b->x5t_s256) && str_same(a->client_email, b->client_email) &&
	    str_same(a->subject, b->subject) &&
	    ((a->key == NULL && b->key == NULL) ||
	    (a->key != NULL && b->key != NULL && EVP_PKEY_eq(a->key, b->key) == 1));
}

void
oauth_set(struct oauth *o, const char *name, struct oauth_creds *creds, const char *ca_file,
    const char *refresh_file)
{
	struct oauth_up *up = up_find(o, name);

	if (up == NULL) {
		up = xcalloc(1, sizeof(*up));
		up->o = o;
		up->name = xstrdup(name);
		up->refresh_ev = evtimer_new(o->base, refresh_cb, up);
		up->next = o->ups;
		o->ups = up;
	} else if (!creds_same(&up->creds, creds)) {
		token_drop(up);
		up->gen++;
		up->failed_at = 0;
	}
	up->stale = false;
	/*
	 * A refresh token rotated since the file was read stays the newest
	 * (the file may not have taken it), unless the file changed since
	 * relayd last read or wrote it: then the admin put a new one there,
	 * most likely because the old chain was revoked.
	 */
	if (creds->refresh_token != NULL) {
		unsigned char md[32];

		token_md(creds->refresh_token, md);
		if (up->creds.refresh_token != NULL && str_same(up->refresh_file, refresh_file) &&
		    CRYPTO_memcmp(md, up->file_md, sizeof(md)) == 0) {
			oauth_wipe(creds->refresh_token);
			creds->refresh_token = up->creds.refresh_token;
			up->creds.refresh_token = NULL;
		}
		memcpy(up->file_md, md, sizeof(md));
	}
	oauth_creds_free(&up->creds);
	up->creds = *creds;
	memset(creds, 0, sizeof(*creds));
	free(up->ca_file);
	free(up->refresh_file);
	up->ca_file = ca_file ? xstrdup(ca_file) : NULL;
	up->refresh_file = refresh_file ? xstrdup(refresh_file) : NULL;
	oauth_url_host(up->creds.token_url ? up->creds.token_url : "", up->host, sizeof(up->host));
}

void
oauth_retain(struct oauth *o, const char *const *names, size_t n)
{
	for (struct oauth_up *up = o->ups; up != NULL; up = up->next) {
		bool keep = false;

		for (size_t i = 0; i < n && !keep; i++)
			keep = strcmp(up->name, names[i]) == 0;
		if (keep)
			continue;
		/* no token, no secret kept for an upstream that is gone; the
		 * entry itself stays for sessions of the old configuration
		 * still waiting on it */
		up->stale = true;
		token_drop(up);
		oauth_wipe(up->creds.client_secret);
		up->creds.client_secret = NULL;
		oauth_wipe(up->creds.refresh_token);
		up->creds.refresh_token = NULL;
	}
}

struct oauth_wait *
oauth_get(struct oauth *o, const char *name, oauth_cb cb, void *arg)
{
	struct oauth_up *up = up_find(o, name);
	int64_t now = now_sec();

	if (up == NULL) {
		cb(arg, NULL, "no OAuth credentials for this upstream");
		return NULL;
	}
	char error[800];

	/*
	 * A token held goes to a new session only while it has HANDOUT_MIN
	 * seconds left: one in its last seconds would expire before the
	 * session reached AUTH, and the upstream's 535 would be taken for a
	 * permission problem.  Then, as when none is held, the session waits
	 * for the fetch.  (The sessions that waited for a token get it
	 * whatever its lifetime: waiters_call.)
	 */
	if (up->token != NULL && up->valid_until - now >= HANDOUT_MIN) {
		/* past refresh_at: the next one is fetched meanwhile */
		if (now >= up->refresh_at && up->fetch == NULL)
			(void)fetch_start(up, error, sizeof(error));
		char *token = xstrdup(up->token);

		up->used = true;
		cb(arg, token, NULL);
		oauth_wipe(token);
		return NULL;
	}
	if (up->fetch == NULL && up->failed_at != 0 && now_us() - up->failed_at < FAIL_HOLD_US) {
		/* the endpoint just said no: the same answer, without asking */
		cb(arg, NULL, up->failed);
		return NULL;
	}
	if (up->fetch == NULL && !fetch_start(up, error, sizeof(error))) {
		cb(arg, NULL, error);
		return NULL;
	}
	struct oauth_wait *w = xcalloc(1, sizeof(*w));

	w->up = up;
	w->cb = cb;
	w->arg = arg;
	w->next = up->waiters;
	w->prevp = &up->waiters;
	if (up->waiters != NULL)
		up->waiters->prevp = &w->next;
	up->waiters = w;
	return w;
}

void
oauth_cancel(struct oauth_wait *w)
{
	if (w == NULL)
		return;
	*w->prevp = w->next;
	if (w->next != NULL)
		w->next->prevp = w->prevp;
	free(w);
}

void
oauth_reject(struct oauth *o, const char *name, const char *token)
{
	struct oauth_up *up = up_find(o, name);

	if (up != NULL && up->token != NULL && token != NULL && strcmp(up->token, token) == 0) {
		log_info("upstream %s: its token was refused; the next attempt fetches a new one",
		    name);
		token_drop(up);
	}
}
