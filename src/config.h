/*
 * config — relayd.conf, parsed with libconfuse into an immutable snapshot.
 *
 * config_load() checks everything it can without touching the network:
 * syntax, unknown keys, ranges, CIDRs, host:port forms, references between
 * sections (domain -> upstream), and the files the configuration names
 * (secret files and DKIM keys must exist, be readable, and not be readable
 * by group or others).  Every problem is reported as "FILE:LINE: message",
 * a warning as "FILE:LINE: warning: message",
 * LINE being the line of the setting at fault; all problems are reported,
 * not only the first.  The snapshot is never modified after loading: a
 * reload builds a new one and swaps it in.
 */
#ifndef RELAYD_CONFIG_H
#define RELAYD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "net.h"
#include "oauth_grant.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif
#ifndef RUNSTATEDIR
#define RUNSTATEDIR "/run"
#endif

#define CONFIG_DEFAULT_PATH	SYSCONFDIR "/relayd.conf"
#define CONFIG_DEFAULT_SPOOL	LOCALSTATEDIR "/spool/relayd"
#define CONFIG_DEFAULT_CONTROL	RUNSTATEDIR "/relayd/control.sock"
#define CONFIG_DEFAULT_LISTEN	"127.0.0.1:2525"

struct cfg_retry {
	int	attempts;	/* total attempts, first included; >= 1 */
	int	delay;		/* seconds before the first retry */
	double	backoff;	/* >= 1.0 */
	int	max_delay;	/* seconds, >= delay */
};

enum cfg_tls { CFG_TLS_STARTTLS = 0, CFG_TLS_IMPLICIT, CFG_TLS_NONE };
enum cfg_auth { CFG_AUTH_NONE = 0, CFG_AUTH_PLAIN, CFG_AUTH_LOGIN, CFG_AUTH_XOAUTH2 };
enum cfg_dkim_alg { CFG_DKIM_RSA_SHA256 = 0, CFG_DKIM_ED25519_SHA256 };

struct dkim_keys;

struct cfg_listen {
	char		*spec;		/* as written */
	struct hostport	 hp;
	int		 line;
};

/*
 * An upstream's oauth2 section (auth = "xoauth2"), with every file it
 * names already read: creds is what the token grant needs (secrets and
 * keys: never logged).
 */
struct cfg_oauth2 {
	struct oauth_creds	 creds;
	char			*ca_file;		/* the token endpoint's CA bundle: its
							 * tls_ca_file, else the upstream's;
							 * NULL: the system store */
	char			*refresh_token_file;	/* generic: where a rotated refresh
							 * token goes; NULL if none */
	int			 line;
};

struct cfg_upstream {
	char		*name;
	char		*host;
	uint16_t	 port;		/* default: 587, or 465 with tls = "tls", 25 with "none" */
	enum cfg_tls	 tls;
	bool		 tls_verify;
	char		*tls_ca_file;	/* NULL: system default */
	enum cfg_auth	 auth;
	char		*username;	/* NULL if none */
	char		*password;	/* secret: from password or password_file; never logged */
	char		*password_file;	/* as configured, NULL if inline */
	int		 max_connections;
	int		 rate;		/* messages per minute, 0 = unlimited */
	int		 timeout;	/* seconds to wait for a connection or reply (300) */
	char		*spf;		/* NULL: built-in default for known providers, if any */
	struct cfg_oauth2 *oauth2;	/* auth = "xoauth2" only (NULL with
					 * CONFIG_NO_SECRETS: nothing read) */
	struct cfg_retry retry;		/* effective schedule: the upstream's override or the global one */
	bool		 retry_overridden;
	int		 line;
};

struct cfg_dkim {
	char			*selector;
	char			*key_file;
	enum cfg_dkim_alg	 algorithm;
	int			 line;
};

struct cfg_domain {
	char			*name;		/* "example.com", "*.example.org" or "*"; lower case */
	struct cfg_upstream	*upstream;	/* points into config->upstreams */
	struct cfg_dkim		*dkim;
	size_t			 ndkim;
	char			*bcc;		/* NULL if none */
	int			 line;
};

struct config {
	char			*path;
	char			*hostname;
	struct cfg_listen	*listen;
	size_t			 nlisten;
	char			*spool;
	char			*control;
	char			*user;		/* NULL if not set */
	struct cidr		*allow;
	size_t			 nallow;
	uint64_t		 max_message_size;
	int			 max_recipients;
	int			 max_clients;
	int			 timeout;
	bool			 bounces;
	struct cfg_retry	 retry;
	struct cfg_upstream	*upstreams;
	size_t			 nupstreams;
	struct cfg_domain	*domains;
	size_t			 ndomains;

	char			**warnings;	/* "FILE:LINE: warning: ..." lines of a
						 * usable configuration, for the caller
						 * to print or log */
	size_t			 nwarnings;

	int			 refs;		/* holders; see config_ref() */
	struct dkim_keys	*dkim;		/* keys loaded for this snapshot (dkim.h),
						 * freed with it; NULL until loaded */
};

/*
 * Loads and validates path.  On success returns a new snapshot (free it with
 * config_free) and prints nothing: what deserves a warning but leaves the
 * file usable (tls = "none" with auth) is in cfg->warnings, as
 * "FILE:LINE: warning: message", for the caller to print or log.  On
 * failure returns NULL after printing every problem, warnings included, to
 * errout as "FILE:LINE: message\n" in line order (LINE omitted only when
 * the file itself cannot be opened: "FILE: message").
 */
struct config *config_load(const char *path, FILE *errout);
/*
 * The same with flags: CONFIG_NO_KEYFILE_CHECK skips the check of the DKIM
 * key files (they need not exist yet: relayctl dkim-keygen creates them).
 * CONFIG_NO_SECRETS does not open password_file (password stays NULL), so
 * that a user who may not read it (relayd-sendmail from a cron job) can
 * still read the rest.
 */
#define CONFIG_NO_KEYFILE_CHECK	0x1u
#define CONFIG_NO_SECRETS	0x2u
struct config *config_load_opts(const char *path, FILE *errout, unsigned int flags);
/*
 * A snapshot is shared by whoever started work under it (a client session,
 * a delivery): config_ref() takes a reference, config_free() drops one and
 * frees the snapshot with the last.  Event-loop thread only.
 */
struct config *config_ref(struct config *cfg);
void config_free(struct config *cfg);

#endif
