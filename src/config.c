/*
 * config — relayd.conf, parsed with libconfuse into an immutable snapshot
 * (struct config, see config.h).
 *
 * Promise: config_load() returns a snapshot only if every setting is valid
 * and every file it names is usable; otherwise it prints every problem it
 * found as "FILE:LINE: message", LINE being the line of the setting at
 * fault, sorted by line, and returns NULL.
 *
 * Line numbers need care, because libconfuse keeps one line counter per
 * section while parsing and nothing per option, and 3.3 miscounts lines that
 * hold comments (a "#" line counts as three).  So:
 *  - comments are blanked out before libconfuse sees the text (newlines are
 *    kept), which makes its counter exact; that pre-pass reads the text by
 *    libconfuse's own lexer rules, so that it never blanks what libconfuse
 *    would read as a value, and it also reports what libconfuse lets pass
 *    in silence (a section or comment open at the end of the file, a "*"
 *    dropped from a value);
 *  - every option has a value-parsing callback that notes (section, option,
 *    index) -> line while the value is read;
 *  - each multi section (upstream, domain, dkim) has a hidden option whose
 *    default value is parsed at the moment the section opens: its callback
 *    notes the section's first line.  Its name starts with '|', which
 *    libconfuse reads as a path separator, so no file can ever set it.
 * Validation then runs over the whole parsed tree and reports each problem
 * at the recorded line.  A syntax error stops libconfuse; whatever was found
 * before it is reported too.
 */
#include "acconfig.h"	/* _GNU_SOURCE for memmem() */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <confuse.h>

#include "addr.h"
#include "config.h"
#include "dkim.h"
#include "log.h"
#include "net.h"
#include "util.h"

#define CONFIG_FILE_MAX		(1024 * 1024)	/* a larger relayd.conf is a mistake */
#define CONFIG_SECRET_MAX	4096		/* bytes in a password_file */
#define CONFIG_SECLINE		"|line"		/* hidden option: a section's first line */

/* Where the value of one option (or list element) was read. */
struct config_line {
	const cfg_t	*sec;
	const char	*name;		/* the section's own copy of the option name */
	unsigned int	 idx;
	int		 line;
	bool		 bad;		/* unparsable, already reported */
};

struct config_msg {
	int	 line;
	size_t	 seq;			/* keeps the order of equal lines */
	bool	 warning;		/* text starts "warning: "; does not
					 * make the file unusable */
	char	*text;
};

/* One config_load() in progress. */
struct config_parse {
	const char		*path;
	char			*text;		/* the file, comments blanked */
	size_t			 textlen;
	struct config_line	*lines;
	size_t			 nlines;
	size_t			 caplines;
	struct config_msg	*msgs;
	size_t			 nmsgs;
	size_t			 capmsgs;
	unsigned int		 flags;		/* CONFIG_* of config_load_opts() */
	bool			 eof_open;	/* the pre-pass found something left
						 * open at the end: libconfuse's own
						 * word on it is redundant */
};

/*
 * libconfuse's callbacks carry no user pointer, so they find the parse in
 * progress here.  Configuration is only ever parsed on the main thread (the
 * lexer itself is not reentrant), one file at a time; the pointer is set
 * and cleared by config_load() alone.
 */
static struct config_parse *config_current;

/* ---- messages ------------------------------------------------------- */

static void config_vmsg(struct config_parse *, int, const char *, va_list)
    __attribute__((format(printf, 3, 0)));

/*
 * Every message is one line: what it quotes of the file (a section title,
 * a value) may hold a newline or a tab, written as \n, \t, \xHH here, in
 * the one place messages are made, as the log emitter writes them.
 */
static void
config_vmsg(struct config_parse *p, int line, const char *fmt, va_list ap)
{
	char *raw = xvasprintf(fmt, ap);
	size_t n = strlen(raw), size = 4 * n + 1;

	if (p->nmsgs == p->capmsgs) {
		p->capmsgs = p->capmsgs ? p->capmsgs * 2 : 16;
		p->msgs = xrealloc(p->msgs, p->capmsgs * sizeof(*p->msgs));
	}
	p->msgs[p->nmsgs].line = line;
	p->msgs[p->nmsgs].seq = p->nmsgs;
	p->msgs[p->nmsgs].warning = false;
	p->msgs[p->nmsgs].text = xmalloc(size);
	log_escape(p->msgs[p->nmsgs].text, size, raw, n);
	p->nmsgs++;
	free(raw);
}

static void config_error(struct config_parse *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static void
config_error(struct config_parse *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_vmsg(p, line, fmt, ap);
	va_end(ap);
}

/* A problem the admin should know of that still leaves the file usable. */
static void config_warn(struct config_parse *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static void
config_warn(struct config_parse *p, int line, const char *fmt, ...)
{
	char *text;
	va_list ap;

	va_start(ap, fmt);
	text = xvasprintf(fmt, ap);
	va_end(ap);
	config_error(p, line, "warning: %s", text);
	p->msgs[p->nmsgs - 1].warning = true;
	free(text);
}


/* Whether an error (not a warning) was reported after the first n messages. */
static bool
config_has_errors_since(const struct config_parse *p, size_t n)
{
	for (size_t i = n; i < p->nmsgs; i++)
		if (!p->msgs[i].warning)
			return true;
	return false;
}

static int
config_msg_cmp(const void *a, const void *b)
{
	const struct config_msg *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* "FILE:LINE: text", or "FILE: text" for a problem of the whole file. */
static char *
config_msg_line(const struct config_parse *p, const struct config_msg *m)
{
	if (m->line > 0)
		return xasprintf("%s:%d: %s", p->path, m->line, m->text);
	return xasprintf("%s: %s", p->path, m->text);
}

static void
config_print_msgs(struct config_parse *p, FILE *errout)
{
	if (errout == NULL)
		return;
	for (size_t i = 0; i < p->nmsgs; i++) {
		char *line = config_msg_line(p, &p->msgs[i]);

		fprintf(errout, "%s\n", line);
		free(line);
	}
	fflush(errout);
}

/* The warnings of a usable file go with its snapshot. */
static void
config_keep_warnings(struct config_parse *p, struct config *cfg)
{
	for (size_t i = 0; i < p->nmsgs; i++) {
		if (!p->msgs[i].warning)
			continue;
		cfg->warnings = xrealloc(cfg->warnings,
		    (cfg->nwarnings + 1) * sizeof(*cfg->warnings));
		cfg->warnings[cfg->nwarnings++] = config_msg_line(p, &p->msgs[i]);
	}
}

/* ---- line bookkeeping ----------------------------------------------- */

static struct config_line *
config_line_find(struct config_parse *p, const cfg_t *sec, const char *name,
    unsigned int idx)
{
	for (size_t i = 0; i < p->nlines; i++) {
		struct config_line *l = &p->lines[i];

		if (l->sec == sec && l->idx == idx && strcmp(l->name, name) == 0)
			return l;
	}
	return NULL;
}

static struct config_line *
config_line_note(struct config_parse *p, const cfg_t *sec, const cfg_opt_t *opt)
{
	/* cfg_setopt() has already added the value this callback parses. */
	unsigned int idx = opt->nvalues > 0 ? opt->nvalues - 1 : 0;
	struct config_line *l = config_line_find(p, sec, opt->name, idx);

	if (l == NULL) {
		if (p->nlines == p->caplines) {
			p->caplines = p->caplines ? p->caplines * 2 : 64;
			p->lines = xrealloc(p->lines, p->caplines * sizeof(*p->lines));
		}
		l = &p->lines[p->nlines++];
		l->sec = sec;
		l->name = opt->name;
		l->idx = idx;
	}
	l->line = sec->line;
	l->bad = false;
	return l;
}

/* The line where sec opened (0 for the root). */
static int
config_secline(struct config_parse *p, const cfg_t *sec)
{
	const struct config_line *l = config_line_find(p, sec, CONFIG_SECLINE, 0);

	return l != NULL ? l->line : 0;
}

/* Line of a value given in the file, or 0 if it was not given. */
static int
config_given(struct config_parse *p, const cfg_t *sec, const char *name,
    unsigned int idx)
{
	const struct config_line *l = config_line_find(p, sec, name, idx);

	return l != NULL ? l->line : 0;
}

/* Line to blame for a value: its own line, else the section's. */
static int
config_line(struct config_parse *p, const cfg_t *sec, const char *name,
    unsigned int idx)
{
	int line = config_given(p, sec, name, idx);

	return line > 0 ? line : config_secline(p, sec);
}

static bool
config_bad(struct config_parse *p, const cfg_t *sec, const char *name)
{
	const struct config_line *l = config_line_find(p, sec, name, 0);

	return l != NULL && l->bad;
}

/* ---- libconfuse callbacks ------------------------------------------- */

/* "upstream NAME: " for values inside a titled section, "" at the top. */
static void
config_where(const cfg_t *sec, char *out, size_t outlen)
{
	if (sec->title != NULL)
		snprintf(out, outlen, "%s %s: ", sec->name, sec->title);
	else if (strcmp(sec->name, "root") != 0)
		snprintf(out, outlen, "%s: ", sec->name);
	else
		out[0] = '\0';
}

/*
 * A value of the wrong type is reported here and parsing goes on, so that
 * later problems are reported too; the value is marked bad so validation
 * does not complain about it a second time.
 */
static void
config_cb_reject(cfg_t *sec, cfg_opt_t *opt, const char *value, const char *what)
{
	struct config_line *l = config_line_note(config_current, sec, opt);
	char where[300];

	l->bad = true;
	config_where(sec, where, sizeof(where));
	config_error(config_current, sec->line, "%s%s = \"%s\" is not %s", where,
	    opt->name, value, what);
}

static int
config_cb_str(cfg_t *sec, cfg_opt_t *opt, const char *value, void *result)
{
	config_line_note(config_current, sec, opt);
	*(const char **)result = value;
	return 0;
}

static int
config_cb_int(cfg_t *sec, cfg_opt_t *opt, const char *value, void *result)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(value, &end, 10);
	if (end == value || *end != '\0' || errno == ERANGE) {
		config_cb_reject(sec, opt, value, "a whole number");
		*(long *)result = 0;
		return 0;
	}
	config_line_note(config_current, sec, opt);
	*(long *)result = n;
	return 0;
}

static int
config_cb_float(cfg_t *sec, cfg_opt_t *opt, const char *value, void *result)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(value, &end);
	if (end == value || *end != '\0' || errno == ERANGE || !isfinite(d)) {
		config_cb_reject(sec, opt, value, "a number");
		*(double *)result = 0;
		return 0;
	}
	config_line_note(config_current, sec, opt);
	*(double *)result = d;
	return 0;
}

static int
config_cb_bool(cfg_t *sec, cfg_opt_t *opt, const char *value, void *result)
{
	int b = cfg_parse_boolean(value);

	if (b == -1) {
		config_cb_reject(sec, opt, value, "true or false");
		*(int *)result = 0;
		return 0;
	}
	config_line_note(config_current, sec, opt);
	*(int *)result = b;
	return 0;
}

/* Runs when a section opens: its line counter is at the opening brace. */
static int
config_cb_secline(cfg_t *sec, cfg_opt_t *opt, const char *value, void *result)
{
	config_line_note(config_current, sec, opt);
	*(long *)result = sec->line;
	return 0;
}

/* A titled section already holding title, searched among sec's options. */
static cfg_t *
config_find_titled(cfg_t *sec, const char *title, const char **kind)
{
	for (cfg_opt_t *opt = sec->opts; opt->name != NULL; opt++) {
		if (opt->type != CFGT_SEC || !(opt->flags & CFGF_TITLE))
			continue;
		for (unsigned int i = 0; i < cfg_opt_size(opt); i++) {
			cfg_t *s = cfg_opt_getnsec(opt, i);

			if (s != NULL && s->title != NULL && strcmp(s->title, title) == 0) {
				*kind = opt->name;
				return s;
			}
		}
	}
	return NULL;
}

/*
 * libconfuse's own messages (syntax errors, unknown keys, duplicate
 * titles), given the file:line prefix it does not add itself when an error
 * function is set.  The two an admin meets most are reworded.
 */
static void config_cb_error(cfg_t *, const char *, va_list)
    __attribute__((format(printf, 2, 0)));

static void
config_cb_error(cfg_t *sec, const char *fmt, va_list ap)
{
	struct config_parse *p = config_current;
	int line = sec != NULL ? sec->line : 0;
	va_list aq;

	if (p == NULL)
		return;
	/* the pre-pass said where the open thing began */
	if (p->eof_open && (strcmp(fmt, "premature end of file") == 0 ||
	    strcmp(fmt, "unterminated string constant") == 0))
		return;
	va_copy(aq, ap);
	if (strcmp(fmt, "no such option '%s'") == 0) {
		const char *name = va_arg(aq, const char *);

		if (sec != NULL && sec->title != NULL)
			config_error(p, line, "unknown key \"%s\" in %s \"%s\"", name,
			    sec->name, sec->title);
		else if (sec != NULL && strcmp(sec->name, "root") != 0)
			config_error(p, line, "unknown key \"%s\" in %s section", name,
			    sec->name);
		else
			config_error(p, line, "unknown key \"%s\"", name);
	} else if (strcmp(fmt, "found duplicate title '%s'") == 0) {
		const char *title = va_arg(aq, const char *);
		const char *kind = "section";
		cfg_t *first = sec != NULL ? config_find_titled(sec, title, &kind) : NULL;

		if (first != NULL)
			config_error(p, line, "%s \"%s\" is defined twice (first at line %d)",
			    kind, title, config_secline(p, first));
		else
			config_error(p, line, "section \"%s\" is defined twice", title);
	} else {
		config_vmsg(p, line, fmt, aq);
	}
	va_end(aq);
}

/* ---- reading the file ----------------------------------------------- */

/*
 * The pre-pass reads the text as libconfuse 3.3's lexer does (its
 * src/lexer.l; flex takes the longest match, the first rule on a tie):
 *  - where a token starts, "#" and "//" begin a comment to the end of the
 *    line and "/" "*" one to the next "*" "/"; inside a token they do not:
 *    an unquoted value is a run of anything but blanks, quotes, "#" and
 *    = { } ( ) + , *, so "pa//ss" is one value and "pa#ss" is "pa" and a
 *    comment;
 *  - "..." takes backslash escapes and ${NAME} references (which may hold
 *    a quote); '...' takes \' and \\; both may span lines;
 *  - ${NAME} where a token starts is a value of its own;
 *  - "*", a "+" not followed by "=", and CR are dropped without a word.
 * It blanks every comment (keeping newlines: libconfuse 3.3 counts a
 * comment's lines wrongly and cannot take one inside a list), and reports
 * what libconfuse would let pass in silence: a section, list, comment or
 * string left open at the end of the file, and a "*" or "+" dropped from
 * a value.  To name an open brace it follows the grammar just enough:
 * NAME [TITLE] "{" opens a section, NAME "=" "{" (or "+=") a list.
 */
#define CONFIG_UNQUOTED_STOP	" #\"'\t\n\r={}()+,*"

enum config_tok { CONFIG_TOK_STR, CONFIG_TOK_PUNCT };

/* Where the grammar is, for naming braces. */
enum config_gram {
	CONFIG_G_NAME,		/* expecting an option or section name */
	CONFIG_G_AFTER_NAME,	/* NAME seen */
	CONFIG_G_VALUE,		/* NAME = seen */
	CONFIG_G_TITLE,		/* NAME TITLE seen */
	CONFIG_G_LIST,		/* inside NAME = { */
	CONFIG_G_ARGS		/* inside NAME ( */
};

struct config_open {
	int	 line;			/* of the "{" */
	bool	 list;
	char	 name[64];
	char	 title[64];		/* "" if none */
};

struct config_scan {
	struct config_parse	*p;
	char			*s;
	size_t			 len;
	size_t			 i;
	int			 line;
	enum config_gram	 gram;
	char			 name[64];	/* the last NAME and TITLE seen */
	char			 title[64];
	struct config_open	*open;
	size_t			 nopen;
	size_t			 capopen;
	bool			 at_eof_open;	/* something was left open */
};

/* The line the text ends on: a final newline does not start another. */
static int
config_scan_last_line(const struct config_scan *sc)
{
	int line = 1;

	for (size_t i = 0; i + 1 < sc->len; i++)
		line += sc->s[i] == '\n';
	return line;
}

static void
config_scan_eof(struct config_scan *sc, const char *what, int opened, const char *missing)
{
	config_error(sc->p, config_scan_last_line(sc),
	    "end of file inside %s (opened on line %d): %s missing", what, opened, missing);
	sc->at_eof_open = true;
}

/* Blanks s[from, to), keeping newlines. */
static void
config_scan_blank(struct config_scan *sc, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		if (sc->s[i] == '\n')
			sc->line++;
		else
			sc->s[i] = ' ';
	}
}

/* Index of the "}" closing a ${NAME} at i ("$" "{"), or 0 if none. */
static size_t
config_scan_envref(const struct config_scan *sc, size_t i)
{
	const char *close;

	if (i + 1 >= sc->len || sc->s[i] != '$' || sc->s[i + 1] != '{')
		return 0;
	close = memchr(sc->s + i + 2, '}', sc->len - i - 2);
	return close != NULL ? (size_t)(close - sc->s) : 0;
}

/* Moves past the quoted string opening at sc->i. */
static void
config_scan_string(struct config_scan *sc)
{
	char quote = sc->s[sc->i];
	int opened = sc->line;
	size_t i = sc->i + 1, close;

	while (i < sc->len && sc->s[i] != quote) {
		if (sc->s[i] == '\\' && i + 1 < sc->len) {
			i++;		/* the escaped character, a newline too */
		} else if (quote == '"' && (close = config_scan_envref(sc, i)) != 0) {
			for (; i < close; i++)
				sc->line += sc->s[i] == '\n';
		}
		sc->line += sc->s[i] == '\n';
		i++;
	}
	if (i >= sc->len) {
		config_scan_eof(sc, "a string", opened, quote == '"' ? "closing \"" : "closing '");
		sc->i = sc->len;
		return;
	}
	sc->i = i + 1;
}

static void
config_scan_copy(char *dst, size_t dstlen, const char *src, size_t len)
{
	snprintf(dst, dstlen, "%.*s", (int)(len < dstlen ? len : dstlen - 1), src);
}

static void
config_scan_push(struct config_scan *sc, bool list)
{
	struct config_open *o;

	if (sc->nopen == sc->capopen) {
		sc->capopen = sc->capopen ? sc->capopen * 2 : 8;
		sc->open = xrealloc(sc->open, sc->capopen * sizeof(*sc->open));
	}
	o = &sc->open[sc->nopen++];
	o->line = sc->line;
	o->list = list;
	snprintf(o->name, sizeof(o->name), "%s", sc->name);
	snprintf(o->title, sizeof(o->title), "%s", list ? "" : sc->title);
}

/*
 * One token for the grammar: a string (its text from..to, quotes and all
 * for a quoted one) or punctuation c.
 */
static void
config_scan_token(struct config_scan *sc, enum config_tok tok, char c, size_t from,
    size_t to)
{
	const char *text = sc->s + from;
	size_t len = to - from;

	if (tok == CONFIG_TOK_STR && len >= 2 && (text[0] == '"' || text[0] == '\'')) {
		text++;
		len -= 2;
	}
	/* A "}" where a name, or what follows one, was expected closes the
	 * section all the same (libconfuse reports the name without a value). */
	if (tok == CONFIG_TOK_PUNCT && c == '}' && (sc->gram == CONFIG_G_AFTER_NAME ||
	    sc->gram == CONFIG_G_TITLE))
		sc->gram = CONFIG_G_NAME;
	switch (sc->gram) {
	case CONFIG_G_NAME:
		if (tok == CONFIG_TOK_STR) {
			/* libconfuse stops at one without a word */
			if (len == 0)
				config_error(sc->p, sc->line, "an empty name (\"\") where a key or a "
				    "section name belongs");
			config_scan_copy(sc->name, sizeof(sc->name), text, len);
			sc->title[0] = '\0';
			sc->gram = CONFIG_G_AFTER_NAME;
		} else if (c == '}' && sc->nopen > 0 && !sc->open[sc->nopen - 1].list) {
			sc->nopen--;
		}
		return;
	case CONFIG_G_AFTER_NAME:
		if (tok == CONFIG_TOK_STR) {
			config_scan_copy(sc->title, sizeof(sc->title), text, len);
			sc->gram = CONFIG_G_TITLE;
		} else if (c == '=' || c == '+') {
			sc->gram = CONFIG_G_VALUE;
		} else if (c == '(') {
			sc->gram = CONFIG_G_ARGS;
		} else {
			if (c == '{')
				config_scan_push(sc, false);
			sc->gram = CONFIG_G_NAME;
		}
		return;
	case CONFIG_G_VALUE:
		if (c == '{' && tok == CONFIG_TOK_PUNCT) {
			config_scan_push(sc, true);
			sc->gram = CONFIG_G_LIST;
		} else {
			sc->gram = CONFIG_G_NAME;
		}
		return;
	case CONFIG_G_TITLE:
		if (tok == CONFIG_TOK_PUNCT && c == '{')
			config_scan_push(sc, false);
		sc->gram = CONFIG_G_NAME;
		return;
	case CONFIG_G_LIST:
		if (tok == CONFIG_TOK_PUNCT && c == '}') {
			sc->nopen--;
			sc->gram = CONFIG_G_NAME;
		}
		return;
	case CONFIG_G_ARGS:
		if (tok == CONFIG_TOK_PUNCT && c == ')')
			sc->gram = CONFIG_G_NAME;
		return;
	}
}

/* Where a token may start: what is at sc->i? */
static void
config_scan_step(struct config_scan *sc)
{
	char c = sc->s[sc->i], next = sc->i + 1 < sc->len ? sc->s[sc->i + 1] : '\0';
	size_t from = sc->i, to;

	if (c == ' ' || c == '\t' || c == '\r') {
		sc->i++;
	} else if (c == '\n') {
		sc->line++;
		sc->i++;
	} else if (c == '#' || (c == '/' && next == '/')) {
		to = from;
		while (to < sc->len && sc->s[to] != '\n')
			to++;
		config_scan_blank(sc, from, to);
		sc->i = to;
	} else if (c == '/' && next == '*') {
		const char *end = memmem(sc->s + from + 2, sc->len - from - 2, "*/", 2);
		int opened = sc->line;

		to = end != NULL ? (size_t)(end - sc->s) + 2 : sc->len;
		config_scan_blank(sc, from, to);
		sc->i = to;
		if (end == NULL)
			config_scan_eof(sc, "a comment", opened, "\"*/\"");
	} else if (c == '+' && next == '=') {
		config_scan_token(sc, CONFIG_TOK_PUNCT, '+', from, from + 2);
		sc->i += 2;
	} else if (c == '*' || c == '+') {
		config_error(sc->p, sc->line, "\"%c\" outside quotes is not part of any value "
		    "(libconfuse drops it); write the value in quotes", c);
		sc->i++;
	} else if (strchr("{}()=,", c) != NULL) {
		config_scan_token(sc, CONFIG_TOK_PUNCT, c, from, from + 1);
		sc->i++;
	} else if (c == '"' || c == '\'') {
		config_scan_string(sc);
		config_scan_token(sc, CONFIG_TOK_STR, 0, from, sc->i);
	} else if ((to = config_scan_envref(sc, from)) != 0) {
		for (size_t i = from; i < to; i++)
			sc->line += sc->s[i] == '\n';
		sc->i = to + 1;
		config_scan_token(sc, CONFIG_TOK_STR, 0, from, sc->i);
	} else {
		to = from + strcspn(sc->s + from, CONFIG_UNQUOTED_STOP);
		sc->i = to;
		config_scan_token(sc, CONFIG_TOK_STR, 0, from, to);
	}
}

/*
 * Blanks the comments of p->text and reports what libconfuse would pass
 * over in silence (see above).  The text holds no NUL byte.
 */
static void
config_prescan(struct config_parse *p)
{
	struct config_scan sc;

	memset(&sc, 0, sizeof(sc));
	sc.p = p;
	sc.s = p->text;
	sc.len = p->textlen;
	sc.line = 1;
	while (sc.i < sc.len)
		config_scan_step(&sc);
	/* innermost first: the order of the missing braces */
	while (sc.nopen > 0) {
		const struct config_open *o = &sc.open[--sc.nopen];
		char what[200];

		if (o->list)
			snprintf(what, sizeof(what), "the list of %s", o->name);
		else if (o->title[0] != '\0')
			snprintf(what, sizeof(what), "%s \"%s\"", o->name, o->title);
		else
			snprintf(what, sizeof(what), "%s", o->name);
		config_scan_eof(&sc, what, o->line, "\"}\"");
	}
	p->eof_open = sc.at_eof_open;
	free(sc.open);
}

static bool
config_read_file(struct config_parse *p)
{
	struct stat st;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		config_error(p, 0, "%s", strerror(errno));
		return false;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		config_error(p, 0, "not a regular file");
		close(fd);
		return false;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		config_error(p, 0, "larger than %d bytes", CONFIG_FILE_MAX);
		close(fd);
		return false;
	}
	/* Whatever is appended while we read is left for the next reload. */
	p->text = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size &&
	    (n = read(fd, p->text + len, (size_t)st.st_size - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			config_error(p, 0, "%s", strerror(errno));
			close(fd);
			return false;
		}
		len += (size_t)n;
	}
	close(fd);
	p->text[len] = '\0';
	p->textlen = len;
	if (memchr(p->text, '\0', len) != NULL) {
		const char *nul = memchr(p->text, '\0', len);
		int line = 1;

		for (const char *c = p->text; c < nul; c++)
			line += *c == '\n';
		config_error(p, line, "NUL byte in the file");
		return false;
	}
	config_prescan(p);
	return true;
}

/* The last line starting with key (comments are already blank), or 0. */
static int
config_find_key_line(struct config_parse *p, const char *key)
{
	size_t klen = strlen(key);
	int line = 1, found = 0;
	const char *s = p->text;

	while (*s != '\0') {
		const char *t = s + strspn(s, " \t\r");

		if (strncmp(t, key, klen) == 0 && strchr(" \t+=", t[klen]) != NULL &&
		    t[klen] != '\0')
			found = line;
		s = strchr(s, '\n');
		if (s == NULL)
			break;
		s++;
		line++;
	}
	return found;
}

/* ---- value checks --------------------------------------------------- */

static bool
config_int(struct config_parse *p, cfg_t *sec, const char *where,
    const char *name, long min, long max, long *out)
{
	long v = cfg_getint(sec, name);

	*out = v;
	if (config_bad(p, sec, name))
		return false;
	if (v < min || v > max) {
		config_error(p, config_line(p, sec, name, 0),
		    "%s%s = %ld is out of range (%ld to %ld)", where, name, v, min, max);
		return false;
	}
	return true;
}

/* Host names and similar tokens: non-empty, printable, no spaces. */
static bool
config_is_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

/* An upstream name: letters, digits, '.', '-', '_'. */
static bool
config_is_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80 ||
		    !(isalnum((unsigned char)*s) || strchr(".-_", *s) != NULL))
			return false;
	return true;
}

/* A DNS label: letters, digits, hyphens, 1..63, no hyphen at either end. */
static bool
config_is_label(const char *s, size_t len)
{
	if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80 ||
		    !(isalnum((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

static bool
config_is_dnsname(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 253)
		return false;
	while (*s != '\0') {
		size_t l = strcspn(s, ".");

		if (!config_is_label(s, l))
			return false;
		s += l;
		if (*s == '.') {
			s++;
			if (*s == '\0')
				return false;
		}
	}
	return true;
}

/*
 * Why s is not a host name (RFC 1035/5321: labels of letters, digits and
 * hyphens, 1 to 63 octets, not starting or ending with a hyphen, 253 octets
 * in all; with underscore, "_" is taken too), or NULL if it is one.  The
 * reason is written to why, to follow the name in a message.
 */
static const char *
config_hostname_problem(const char *s, bool underscore, char *why, size_t whylen)
{
	size_t len = strlen(s);

	if (len == 0)
		return "is empty";
	if (len > 253) {
		snprintf(why, whylen, "is %zu octets long; a host name has at most 253", len);
		return why;
	}
	for (const char *c = s; *c != '\0'; c++) {
		unsigned char u = (unsigned char)*c;

		if (u < 0x80 && (isalnum(u) || u == '-' || u == '.' || (underscore && u == '_')))
			continue;
		if (u >= ' ' && u < 0x7f)
			snprintf(why, whylen, "holds \"%c\": ", u);
		else
			snprintf(why, whylen, "holds \"\\x%02x\": ", u);
		snprintf(why + strlen(why), whylen - strlen(why), "a host name is made of "
		    "letters, digits, hyphens and dots%s", underscore ?
		    " (or an IP address, without brackets)" : "");
		return why;
	}
	for (const char *label = s; ; label++) {
		size_t l = strcspn(label, ".");

		if (l == 0)
			return "has an empty label (a dot at the start or end, or two in a row)";
		if (l > 63) {
			snprintf(why, whylen, "has a label of %zu octets; at most 63", l);
			return why;
		}
		if (label[0] == '-' || label[l - 1] == '-')
			return "has a label that starts or ends with \"-\"";
		label += l;
		if (*label == '\0')
			return NULL;
	}
}

/*
 * Checks a host name setting; reports "WHEREKEY "NAME" PROBLEM", the name
 * cut short when it is long, with control characters escaped.
 */
static bool
config_check_hostname(struct config_parse *p, int line, const char *where,
    const char *key, const char *s, bool upstream)
{
	char why[200], shown[80];
	const char *problem;
	size_t o = 0;

	if (upstream) {
		struct in6_addr a6;
		struct in_addr a4;

		if (inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1)
			return true;
	}
	if ((problem = config_hostname_problem(s, upstream, why, sizeof(why))) == NULL)
		return true;
	for (const char *c = s; *c != '\0' && o + 8 < sizeof(shown); c++) {
		if (o >= 60) {
			o += (size_t)snprintf(shown + o, sizeof(shown) - o, "...");
			break;
		}
		if ((unsigned char)*c < ' ' || (unsigned char)*c == 0x7f)
			o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\x%02x",
			    (unsigned char)*c);
		else
			shown[o++] = *c;
	}
	shown[o] = '\0';
	config_error(p, line, "%s%s \"%s\" %s", where, key, shown, problem);
	return false;
}

/*
 * Normalises a domain section title: "example.com", "*.example.org" or "*",
 * lower case, one trailing dot dropped.  Returns a new string or NULL.
 */
static char *
config_domain_name(const char *title)
{
	char *s = xstrdup(title);
	size_t len = strlen(s);
	const char *rest = s;

	if (len > 1 && s[len - 1] == '.' && s[len - 2] != '*')
		s[--len] = '\0';
	ascii_lower(s);
	if (strcmp(s, "*") == 0)
		return s;
	if (strncmp(s, "*.", 2) == 0)
		rest = s + 2;
	if (!config_is_dnsname(rest)) {
		free(s);
		return NULL;
	}
	return s;
}

/* What a mode gives away, for the message. */
static const char *
config_mode_leak(mode_t mode)
{
	if (mode & 044)
		return "readable";
	if (mode & 022)
		return "writable";
	return "accessible";
}

/*
 * Opens a file that holds a secret (password, private key): it must be a
 * regular file that neither group nor others can access.  Returns the open
 * descriptor, or -1 after reporting why not.
 */
static int
config_open_private(struct config_parse *p, int line, const char *key,
    const char *path)
{
	struct stat st;
	int fd;

	if (path[0] != '/') {
		config_error(p, line, "%s %s: must be an absolute path", key, path);
		return -1;
	}
	/* O_NONBLOCK: a FIFO put there by mistake must not hang the check. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		config_error(p, line, "%s %s: %s", key, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		config_error(p, line, "%s %s: %s", key, path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		config_error(p, line, "%s %s is not a regular file", key, path);
		close(fd);
		return -1;
	}
	if (st.st_mode & 077) {
		config_error(p, line, "%s %s is %s by others (mode %04o); chmod 600 it",
		    key, path, config_mode_leak(st.st_mode),
		    (unsigned int)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The whole of a file named by setting `key` (at most max octets, a NUL
 * added, *len its length): with private, a secret that only its owner may
 * read (config_open_private), else any readable regular file.  NULL after
 * reporting why not.  The caller wipes what it held a secret.
 */
static char *
config_slurp(struct config_parse *p, int line, const char *key, const char *path,
    bool private, size_t max, size_t *len)
{
	char *buf;
	ssize_t n;
	int fd;

	if (private) {
		fd = config_open_private(p, line, key, path);
	} else if (path[0] != '/') {
		config_error(p, line, "%s %s: must be an absolute path", key, path);
		return NULL;
	} else if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1) {
		config_error(p, line, "%s %s: %s", key, path, strerror(errno));
	}
	if (fd == -1)
		return NULL;
	buf = xmalloc(max + 2);
	*len = 0;
	while (*len <= max && (n = read(fd, buf + *len, max + 1 - *len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			config_error(p, line, "%s %s: %s", key, path, strerror(errno));
			goto fail;
		}
		*len += (size_t)n;
	}
	if (*len > max) {
		config_error(p, line, "%s %s is larger than %zu bytes", key, path, max);
		goto fail;
	}
	buf[*len] = '\0';
	close(fd);
	return buf;
fail:
	explicit_bzero(buf, max + 2);
	free(buf);
	close(fd);
	return NULL;
}

/* The secret in path (a password, a client secret, a refresh token), one
 * trailing newline (LF or CRLF) removed. */
static char *
config_read_secret(struct config_parse *p, int line, const char *key, const char *path)
{
	size_t len = 0;
	char *buf = config_slurp(p, line, key, path, true, CONFIG_SECRET_MAX, &len);
	char *secret = NULL;

	if (buf == NULL)
		return NULL;
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len == 0)
		config_error(p, line, "%s %s is empty", key, path);
	else if (memchr(buf, '\0', len) != NULL)
		config_error(p, line, "%s %s contains a NUL byte", key, path);
	else
		secret = xstrndup(buf, len);
	explicit_bzero(buf, len);
	free(buf);
	return secret;
}

/* A file that must merely be there and readable (CA bundle). */
static bool
config_check_readable(struct config_parse *p, int line, const char *key,
    const char *path)
{
	struct stat st;
	int fd;

	if (path[0] != '/') {
		config_error(p, line, "%s %s: must be an absolute path", key, path);
		return false;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1) {
		config_error(p, line, "%s %s: %s", key, path, strerror(errno));
		return false;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		config_error(p, line, "%s %s is not a regular file", key, path);
		close(fd);
		return false;
	}
	close(fd);
	return true;
}

/*
 * The host name when none is configured: gethostname(), made fully
 * qualified through the resolver (normally /etc/hosts) if it has no dot,
 * as Postfix does for myhostname.
 */
static char *
config_default_hostname(void)
{
	char name[NET_HOST_MAX];
	struct addrinfo hints, *res = NULL;

	if (gethostname(name, sizeof(name)) != 0)
		return NULL;
	name[sizeof(name) - 1] = '\0';
	if (name[0] == '\0')
		return NULL;
	if (strchr(name, '.') == NULL) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_CANONNAME;
		hints.ai_socktype = SOCK_STREAM;
		if (getaddrinfo(name, NULL, &hints, &res) == 0) {
			if (res->ai_canonname != NULL && strchr(res->ai_canonname, '.') &&
			    config_is_token(res->ai_canonname))
				snprintf(name, sizeof(name), "%s", res->ai_canonname);
			freeaddrinfo(res);
		}
	}
	return xstrdup(name);
}

/* ---- building the snapshot ------------------------------------------ */

static void
config_build_retry(struct config_parse *p, cfg_t *sec, const char *where,
    const struct cfg_retry *base, struct cfg_retry *out, bool *overridden)
{
	static const char *const keys[] = { "attempts", "delay", "backoff", "max_delay" };
	long v;

	*out = *base;
	if (overridden != NULL) {
		*overridden = false;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (cfg_size(sec, keys[i]) > 0)
				*overridden = true;
	}
	if (cfg_size(sec, "attempts") > 0 &&
	    config_int(p, sec, where, "attempts", 1, 1000, &v))
		out->attempts = (int)v;
	if (cfg_size(sec, "delay") > 0 &&
	    config_int(p, sec, where, "delay", 0, INT_MAX, &v))
		out->delay = (int)v;
	if (cfg_size(sec, "max_delay") > 0 &&
	    config_int(p, sec, where, "max_delay", 0, INT_MAX, &v))
		out->max_delay = (int)v;
	if (cfg_size(sec, "backoff") > 0 && !config_bad(p, sec, "backoff")) {
		double b = cfg_getfloat(sec, "backoff");

		if (b < 1.0)
			config_error(p, config_line(p, sec, "backoff", 0),
			    "%sbackoff = %g must be 1.0 or more", where, b);
		else
			out->backoff = b;
	}
	if (out->max_delay < out->delay &&
	    (cfg_size(sec, "max_delay") > 0 || cfg_size(sec, "delay") > 0)) {
		int line = config_given(p, sec, "max_delay", 0);

		if (line == 0)
			line = config_line(p, sec, "delay", 0);
		config_error(p, line, "%smax_delay (%d) must not be less than delay (%d)",
		    where, out->max_delay, out->delay);
	}
}

#define CONFIG_PEM_MAX	(64u << 10)	/* bytes of a certificate, key or JSON key file */

/* The oauth2 settings each provider takes; what it may not take is an error. */
static const struct {
	const char	*key;
	bool		 microsoft, google, generic;
} config_oauth2_keys[] = {
	{ "tenant",			true,	false,	false },
	{ "client_id",			true,	false,	true },
	{ "client_secret_file",		true,	false,	true },
	{ "client_certificate_file",	true,	false,	false },
	{ "client_key_file",		true,	false,	false },
	{ "service_account_file",	false,	true,	false },
	{ "refresh_token_file",		false,	false,	true },
};

static const char *const config_provider_names[] = { "microsoft", "google", "generic" };

/* microsoft: client_certificate_file + client_key_file into c. */
static void
config_oauth2_certificate(struct config_parse *p, cfg_t *sec, const char *where,
    struct oauth_creds *c)
{
	const char *cf = cfg_getstr(sec, "client_certificate_file");
	const char *kf = cfg_getstr(sec, "client_key_file");
	int cline = config_line(p, sec, "client_certificate_file", 0);
	int kline = config_line(p, sec, "client_key_file", 0);
	size_t cl = 0, kl = 0;
	char *cert, *key, err[256];
	int which = 0;

	if (kf == NULL) {
		config_error(p, cline, "%sclient_certificate_file needs client_key_file", where);
		return;
	}
	if (cf == NULL) {
		config_error(p, kline, "%sclient_key_file needs client_certificate_file", where);
		return;
	}
	cert = config_slurp(p, cline, "client_certificate_file", cf, false, CONFIG_PEM_MAX, &cl);
	key = config_slurp(p, kline, "client_key_file", kf, true, CONFIG_PEM_MAX, &kl);
	if (cert != NULL && key != NULL &&
	    oauth_cert_key(cert, cl, key, kl, &c->key, &c->x5t_s256, err, sizeof(err),
	    &which) < 0)
		config_error(p, which ? kline : cline, "%s%s %s: %s", where,
		    which ? "client_key_file" : "client_certificate_file", which ? kf : cf, err);
	free(cert);
	if (key != NULL)
		explicit_bzero(key, kl);
	free(key);
}

/* google: the service account's JSON key into c. */
static void
config_oauth2_service_account(struct config_parse *p, cfg_t *sec, const char *where,
    int secline, struct oauth_creds *c)
{
	const char *f = cfg_getstr(sec, "service_account_file");
	int line = config_line(p, sec, "service_account_file", 0);
	size_t len = 0;
	char *json, err[256];

	if (f == NULL) {
		config_error(p, secline, "%sprovider google needs "
		    "service_account_file (the JSON key of the service account)", where);
		return;
	}
	if ((json = config_slurp(p, line, "service_account_file", f, true, CONFIG_PEM_MAX,
	    &len)) == NULL)
		return;
	if (oauth_service_account(json, len, c, err, sizeof(err)) < 0)
		config_error(p, line, "%sservice_account_file %s: %s", where, f, err);
	explicit_bzero(json, len);
	free(json);
}

/*
 * The oauth2 section of upstream u (auth = "xoauth2"): every setting
 * checked, every file read, so that -n finds what a fetch would trip on,
 * offline.  authline: where to report a missing section.
 */
static void
config_build_oauth2(struct config_parse *p, cfg_t *sec, struct cfg_upstream *u, int authline)
{
	static const char *const keys[] = { "provider", "tenant", "client_id",
	    "client_secret_file", "client_certificate_file", "client_key_file",
	    "service_account_file", "refresh_token_file", "token_url", "scope", "tls_ca_file" };
	char where[300];
	int secline = 0;
	const char *s;
	struct cfg_oauth2 *o;
	int prov = -1;

	/* A section without a title that is not in the file still exists,
	 * with the parent's line: it is there if one of its keys was given,
	 * and the first of them stands for it in messages. */
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && secline == 0; i++)
		secline = config_given(p, sec, keys[i], 0);

	snprintf(where, sizeof(where), "upstream %s: oauth2: ", u->name);
	if (u->auth != CFG_AUTH_XOAUTH2) {
		if (secline > 0)
			config_error(p, secline, "upstream %s: an oauth2 section is only used with "
			    "auth = \"xoauth2\"", u->name);
		return;
	}
	if (secline == 0) {
		config_error(p, authline, "upstream %s: auth xoauth2 needs an oauth2 { provider = "
		    "... } section", u->name);
		return;
	}
	if ((s = cfg_getstr(sec, "provider")) == NULL) {
		config_error(p, secline, "%sprovider is required (\"microsoft\", \"google\" or "
		    "\"generic\")", where);
		return;
	}
	for (int i = 0; i < 3; i++)
		if (strcmp(s, config_provider_names[i]) == 0)
			prov = i;
	if (prov < 0) {
		config_error(p, config_line(p, sec, "provider", 0), "%sunknown provider \"%s\": "
		    "\"microsoft\", \"google\" or \"generic\"", where, s);
		return;
	}
	for (size_t i = 0; i < sizeof(config_oauth2_keys) / sizeof(config_oauth2_keys[0]); i++) {
		bool ok = prov == 0 ? config_oauth2_keys[i].microsoft :
		    prov == 1 ? config_oauth2_keys[i].google : config_oauth2_keys[i].generic;

		if (!ok && cfg_getstr(sec, config_oauth2_keys[i].key) != NULL)
			config_error(p, config_line(p, sec, config_oauth2_keys[i].key, 0),
			    "%s%s is not used with provider %s", where, config_oauth2_keys[i].key,
			    config_provider_names[prov]);
	}

	o = xcalloc(1, sizeof(*o));
	o->line = secline;
	o->creds.provider = (enum oauth_provider)prov;
	if ((s = cfg_getstr(sec, "token_url")) != NULL) {
		if (strncmp(s, "https://", 8) != 0 || s[8] == '\0' || s[8] == '/')
			config_error(p, config_line(p, sec, "token_url", 0), "%stoken_url \"%s\" "
			    "must be an https:// URL", where, s);
		else
			o->creds.token_url = xstrdup(s);
	}
	if ((s = cfg_getstr(sec, "scope")) != NULL)
		o->creds.scope = xstrdup(s);
	if ((s = cfg_getstr(sec, "client_id")) != NULL)
		o->creds.client_id = xstrdup(s);
	if ((s = cfg_getstr(sec, "tls_ca_file")) != NULL) {
		if (config_check_readable(p, config_line(p, sec, "tls_ca_file", 0), "tls_ca_file", s))
			o->ca_file = xstrdup(s);
	} else if (u->tls_ca_file != NULL) {
		o->ca_file = xstrdup(u->tls_ca_file);
	}
	if (u->username != NULL)
		o->creds.subject = xstrdup(u->username);

	bool secrets = !(p->flags & CONFIG_NO_SECRETS);
	const char *secret_file = cfg_getstr(sec, "client_secret_file");

	switch (o->creds.provider) {
	case OAUTH_MICROSOFT:
		if (o->creds.client_id == NULL)
			config_error(p, secline, "%sprovider microsoft needs client_id (the "
			    "application (client) id of the app registration)", where);
		if ((s = cfg_getstr(sec, "tenant")) == NULL && o->creds.token_url == NULL)
			config_error(p, secline, "%sprovider microsoft needs tenant (the directory "
			    "(tenant) id, or a domain such as contoso.onmicrosoft.com)", where);
		else if (s != NULL && (!config_is_token(s) || strchr(s, '/') != NULL))
			config_error(p, config_line(p, sec, "tenant", 0), "%stenant \"%s\" is not a "
			    "tenant id or domain", where, s);
		else if (o->creds.token_url == NULL)
			o->creds.token_url = xasprintf("https://login.microsoftonline.com/%s/oauth2/"
			    "v2.0/token", s);
		if (o->creds.scope == NULL)
			o->creds.scope = xstrdup(OAUTH_SCOPE_MICROSOFT);
		if (secret_file != NULL && (cfg_getstr(sec, "client_certificate_file") != NULL ||
		    cfg_getstr(sec, "client_key_file") != NULL))
			config_error(p, config_line(p, sec, "client_secret_file", 0), "%sa client "
			    "secret and a certificate are both set; keep one", where);
		else if (secret_file != NULL && secrets)
			o->creds.client_secret = config_read_secret(p, config_line(p, sec,
			    "client_secret_file", 0), "client_secret_file", secret_file);
		else if (secret_file == NULL && cfg_getstr(sec, "client_certificate_file") == NULL &&
		    cfg_getstr(sec, "client_key_file") == NULL)
			config_error(p, secline, "%sprovider microsoft needs client_secret_file, or "
			    "client_certificate_file and client_key_file", where);
		else if (secret_file == NULL && secrets)
			config_oauth2_certificate(p, sec, where, &o->creds);
		break;
	case OAUTH_GOOGLE:
		if (o->creds.scope == NULL)
			o->creds.scope = xstrdup(OAUTH_SCOPE_GOOGLE);
		if (secrets)
			config_oauth2_service_account(p, sec, where, secline, &o->creds);
		break;
	case OAUTH_GENERIC:
		if (o->creds.token_url == NULL && !config_bad(p, sec, "token_url") &&
		    cfg_getstr(sec, "token_url") == NULL)
			config_error(p, secline, "%sprovider generic needs token_url", where);
		if (o->creds.client_id == NULL)
			config_error(p, secline, "%sprovider generic needs client_id", where);
		if (secret_file != NULL && secrets)
			o->creds.client_secret = config_read_secret(p, config_line(p, sec,
			    "client_secret_file", 0), "client_secret_file", secret_file);
		if ((s = cfg_getstr(sec, "refresh_token_file")) != NULL) {
			o->refresh_token_file = xstrdup(s);
			if (secrets)
				o->creds.refresh_token = config_read_secret(p, config_line(p, sec,
				    "refresh_token_file", 0), "refresh_token_file", s);
		}
		break;
	}
	u->oauth2 = o;
}

static void
config_build_upstream(struct config_parse *p, struct config *cfg, cfg_t *sec,
    struct cfg_upstream *u)
{
	char where[300];
	const char *s;
	long v;
	int secline = config_secline(p, sec);

	u->name = xstrdup(sec->title);
	u->line = secline;
	snprintf(where, sizeof(where), "upstream %s: ", u->name);
	/* The name goes into log lines as relay=NAME[host]:port. */
	if (!config_is_name(u->name))
		config_error(p, secline, "upstream \"%s\": a name is made of letters, "
		    "digits, \".\", \"-\" and \"_\"", u->name);

	if ((s = cfg_getstr(sec, "host")) == NULL)
		config_error(p, secline, "%shost is required", where);
	else if (config_check_hostname(p, config_line(p, sec, "host", 0), where, "host", s,
	    true))
		u->host = xstrdup(s);

	s = cfg_getstr(sec, "tls");
	if (strcmp(s, "starttls") == 0)
		u->tls = CFG_TLS_STARTTLS;
	else if (strcmp(s, "tls") == 0)
		u->tls = CFG_TLS_IMPLICIT;
	else if (strcmp(s, "none") == 0)
		u->tls = CFG_TLS_NONE;
	else
		config_error(p, config_line(p, sec, "tls", 0),
		    "%stls must be \"starttls\", \"tls\" or \"none\", not \"%s\"", where, s);

	if (cfg_size(sec, "port") > 0) {
		if (config_int(p, sec, where, "port", 1, 65535, &v))
			u->port = (uint16_t)v;
	} else {
		u->port = u->tls == CFG_TLS_IMPLICIT ? 465 :
		    u->tls == CFG_TLS_NONE ? 25 : 587;
	}

	u->tls_verify = cfg_getbool(sec, "tls_verify");
	if ((s = cfg_getstr(sec, "tls_ca_file")) != NULL &&
	    config_check_readable(p, config_line(p, sec, "tls_ca_file", 0),
	    "tls_ca_file", s))
		u->tls_ca_file = xstrdup(s);

	if ((s = cfg_getstr(sec, "username")) != NULL) {
		if (*s == '\0')
			config_error(p, config_line(p, sec, "username", 0),
			    "%susername is empty", where);
		else
			u->username = xstrdup(s);
	}

	/* Without auth = ..., credentials imply "plain", as msmtp and others do. */
	if ((s = cfg_getstr(sec, "auth")) == NULL)
		u->auth = cfg_getstr(sec, "username") != NULL ? CFG_AUTH_PLAIN : CFG_AUTH_NONE;
	else if (strcmp(s, "plain") == 0)
		u->auth = CFG_AUTH_PLAIN;
	else if (strcmp(s, "login") == 0)
		u->auth = CFG_AUTH_LOGIN;
	else if (strcmp(s, "none") == 0)
		u->auth = CFG_AUTH_NONE;
	else if (strcmp(s, "xoauth2") == 0)
		u->auth = CFG_AUTH_XOAUTH2;
	else
		config_error(p, config_line(p, sec, "auth", 0), "%sauth must be \"plain\", "
		    "\"login\", \"xoauth2\" or \"none\", not \"%s\"", where, s);

	if (cfg_getstr(sec, "password") != NULL && cfg_getstr(sec, "password_file") != NULL) {
		config_error(p, config_line(p, sec, "password_file", 0),
		    "%spassword and password_file are both set; keep one", where);
	} else if ((s = cfg_getstr(sec, "password")) != NULL) {
		if (*s == '\0')
			config_error(p, config_line(p, sec, "password", 0),
			    "%spassword is empty", where);
		else
			u->password = xstrdup(s);
	} else if ((s = cfg_getstr(sec, "password_file")) != NULL) {
		u->password_file = xstrdup(s);
		/* relayd-sendmail, run by any user, needs no password */
		if (!(p->flags & CONFIG_NO_SECRETS))
			u->password = config_read_secret(p,
			    config_line(p, sec, "password_file", 0), "password_file", s);
	}

	if (u->auth == CFG_AUTH_XOAUTH2) {
		int line = config_line(p, sec, "auth", 0);

		if (cfg_getstr(sec, "username") == NULL)
			config_error(p, line, "%sauth xoauth2 needs a username: the mailbox it "
			    "sends as", where);
		if (cfg_getstr(sec, "password") != NULL || cfg_getstr(sec, "password_file") != NULL)
			config_error(p, config_line(p, sec, cfg_getstr(sec, "password") != NULL ?
			    "password" : "password_file", 0), "%sa password is not used with auth "
			    "xoauth2: the oauth2 section says how to get a token", where);
		/* a bearer token in clear is as good as a password to whoever reads it */
		if (u->tls == CFG_TLS_NONE)
			config_warn(p, config_line(p, sec, "tls", 0),
			    "upstream %s sends its OAuth token without TLS", u->name);
	} else if (u->auth != CFG_AUTH_NONE) {
		const char *mech = u->auth == CFG_AUTH_LOGIN ? "login" : "plain";
		int line = config_line(p, sec, "auth", 0);

		if (cfg_getstr(sec, "username") == NULL)
			config_error(p, line, "%sauth %s needs a username", where, mech);
		if (cfg_getstr(sec, "password") == NULL &&
		    cfg_getstr(sec, "password_file") == NULL)
			config_error(p, line, "%sauth %s needs password or password_file",
			    where, mech);
		/*
		 * Some in-house and ISP servers take AUTH only without TLS
		 * (mail.domain.se:2525): the admin chose it by writing tls =
		 * "none", which is never a default, so its line is the one to
		 * show.
		 */
		if (u->tls == CFG_TLS_NONE)
			config_warn(p, config_line(p, sec, "tls", 0),
			    "upstream %s sends its password without TLS", u->name);
	}

	if (config_int(p, sec, where, "max_connections", 1, INT_MAX, &v))
		u->max_connections = (int)v;
	if (config_int(p, sec, where, "rate", 0, INT_MAX, &v))
		u->rate = (int)v;
	if (config_int(p, sec, where, "timeout", 1, 86400, &v))
		u->timeout = (int)v;

	if ((s = cfg_getstr(sec, "spf")) != NULL) {
		if (!config_is_token(s))
			config_error(p, config_line(p, sec, "spf", 0),
			    "%sspf \"%s\" must be one SPF term without spaces "
			    "(e.g. \"include:_spf.example.net\")", where, s);
		else
			u->spf = xstrdup(s);
	}

	config_build_oauth2(p, cfg_getsec(sec, "oauth2"), u, config_line(p, sec, "auth", 0));

	snprintf(where, sizeof(where), "upstream %s: retry: ", u->name);
	config_build_retry(p, cfg_getsec(sec, "retry"), where, &cfg->retry, &u->retry,
	    &u->retry_overridden);
}

static void
config_build_dkim(struct config_parse *p, struct cfg_domain *d, cfg_t *sec,
    struct cfg_dkim *k)
{
	const char *sel = cfg_getstr(sec, "selector");
	const char *s;
	char where[600];
	int fd;

	k->line = config_secline(p, sec);
	if (sel == NULL) {
		config_error(p, k->line, "domain %s: dkim: selector is required", d->name);
		snprintf(where, sizeof(where), "domain %s: dkim: ", d->name);
	} else {
		if (!config_is_dnsname(sel))
			config_error(p, config_line(p, sec, "selector", 0),
			    "domain %s: dkim selector \"%s\" is not a valid selector "
			    "(letters, digits, hyphens, dots)", d->name, sel);
		k->selector = xstrdup(sel);
		snprintf(where, sizeof(where), "domain %s: dkim %s: ", d->name, sel);
	}

	if ((s = cfg_getstr(sec, "key_file")) == NULL) {
		config_error(p, k->line, "%skey_file is required", where);
	} else {
		k->key_file = xstrdup(s);
		/* relayctl dkim-keygen reads the configuration to create it */
		if (!(p->flags & CONFIG_NO_KEYFILE_CHECK)) {
			fd = config_open_private(p, config_line(p, sec, "key_file", 0),
			    "key_file", s);
			if (fd != -1)
				close(fd);
		}
	}

	s = cfg_getstr(sec, "algorithm");
	if (strcmp(s, "rsa-sha256") == 0)
		k->algorithm = CFG_DKIM_RSA_SHA256;
	else if (strcmp(s, "ed25519-sha256") == 0)
		k->algorithm = CFG_DKIM_ED25519_SHA256;
	else
		config_error(p, config_line(p, sec, "algorithm", 0),
		    "%salgorithm must be \"rsa-sha256\" or \"ed25519-sha256\", not \"%s\"",
		    where, s);
}

static void
config_build_domain(struct config_parse *p, struct config *cfg, cfg_t *sec,
    struct cfg_domain *d, size_t index)
{
	int secline = config_secline(p, sec);
	const char *s;

	d->line = secline;
	if ((d->name = config_domain_name(sec->title)) == NULL) {
		config_error(p, secline, "domain \"%s\": not a valid domain name or pattern "
		    "(write \"example.com\", \"*.example.com\" or \"*\")", sec->title);
		d->name = xstrdup(sec->title);
	} else {
		for (size_t i = 0; i < index; i++)
			if (strcmp(cfg->domains[i].name, d->name) == 0)
				config_error(p, secline,
				    "domain %s is defined twice (first at line %d)",
				    d->name, cfg->domains[i].line);
	}

	if ((s = cfg_getstr(sec, "upstream")) == NULL) {
		config_error(p, secline, "domain %s: upstream is required", d->name);
	} else {
		for (size_t i = 0; i < cfg->nupstreams; i++)
			if (strcmp(cfg->upstreams[i].name, s) == 0)
				d->upstream = &cfg->upstreams[i];
		if (d->upstream == NULL)
			config_error(p, config_line(p, sec, "upstream", 0),
			    "domain %s: upstream \"%s\" is not defined", d->name, s);
	}

	d->ndkim = cfg_size(sec, "dkim");
	d->dkim = xcalloc(d->ndkim ? d->ndkim : 1, sizeof(*d->dkim));
	for (size_t i = 0; i < d->ndkim; i++) {
		cfg_t *ks = cfg_getnsec(sec, "dkim", (unsigned int)i);

		config_build_dkim(p, d, ks, &d->dkim[i]);
		for (size_t j = 0; j < i && d->dkim[i].selector != NULL; j++)
			if (d->dkim[j].selector != NULL &&
			    strcmp(d->dkim[j].selector, d->dkim[i].selector) == 0)
				config_error(p, config_line(p, ks, "selector", 0),
				    "domain %s: dkim selector \"%s\" is configured twice "
				    "(first at line %d)", d->name, d->dkim[i].selector,
				    d->dkim[j].line);
	}

	if ((s = cfg_getstr(sec, "bcc")) != NULL) {
		if (addr_check_mailbox(s, false) != ADDR_OK)
			config_error(p, config_line(p, sec, "bcc", 0),
			    "domain %s: bcc \"%s\" is not a valid mail address", d->name, s);
		else
			d->bcc = xstrdup(s);
	}
}

static void
config_build_top(struct config_parse *p, struct config *cfg, cfg_t *root)
{
	const char *s;
	char err[256];
	long v;

	/* It goes into the greeting, EHLO, Message-ID and DSNs (RFC 5321 4.5.3.1.2:
	 * a domain is at most 255 octets; a DSN line at most 998). */
	if ((s = cfg_getstr(root, "hostname")) != NULL) {
		if (config_check_hostname(p, config_line(p, root, "hostname", 0), "",
		    "hostname", s, false))
			cfg->hostname = xstrdup(s);
	} else if ((cfg->hostname = config_default_hostname()) == NULL) {
		config_error(p, 0, "cannot find the host name (%s); set hostname",
		    strerror(errno));
	}

	cfg->nlisten = cfg_size(root, "listen");
	cfg->listen = xcalloc(cfg->nlisten ? cfg->nlisten : 1, sizeof(*cfg->listen));
	if (cfg->nlisten == 0)
		config_error(p, config_find_key_line(p, "listen"),
		    "listen must name at least one address");
	for (size_t i = 0; i < cfg->nlisten; i++) {
		struct cfg_listen *l = &cfg->listen[i];

		s = cfg_getnstr(root, "listen", (unsigned int)i);
		l->spec = xstrdup(s);
		l->line = config_given(p, root, "listen", (unsigned int)i);
		if (net_parse_hostport(s, 0, &l->hp, err, sizeof(err)) != 0)
			config_error(p, l->line, "listen \"%s\": %s", s, err);
	}

	s = cfg_getstr(root, "spool");
	if (s[0] != '/')
		config_error(p, config_line(p, root, "spool", 0),
		    "spool %s: must be an absolute path", s);
	cfg->spool = xstrdup(s);

	s = cfg_getstr(root, "control");
	if (s[0] != '/')
		config_error(p, config_line(p, root, "control", 0),
		    "control %s: must be an absolute path", s);
	else if (strlen(s) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		config_error(p, config_line(p, root, "control", 0),
		    "control %s: too long for a socket path (at most %zu bytes)", s,
		    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	cfg->control = xstrdup(s);

	if ((s = cfg_getstr(root, "user")) != NULL) {
		if (*s == '\0')
			config_error(p, config_line(p, root, "user", 0), "user is empty");
		else if (getpwnam(s) == NULL)
			config_error(p, config_line(p, root, "user", 0),
			    "user \"%s\" does not exist", s);
		cfg->user = xstrdup(s);
	}

	cfg->nallow = cfg_size(root, "allow");
	cfg->allow = xcalloc(cfg->nallow ? cfg->nallow : 1, sizeof(*cfg->allow));
	for (size_t i = 0; i < cfg->nallow; i++) {
		s = cfg_getnstr(root, "allow", (unsigned int)i);
		if (net_parse_cidr(s, &cfg->allow[i], err, sizeof(err)) != 0)
			config_error(p, config_given(p, root, "allow", (unsigned int)i),
			    "allow \"%s\": %s", s, err);
	}

	if (config_int(p, root, "", "max_message_size", 1, 2147483648L, &v))
		cfg->max_message_size = (uint64_t)v;
	if (config_int(p, root, "", "max_recipients", 1, 100000, &v))
		cfg->max_recipients = (int)v;
	if (config_int(p, root, "", "max_clients", 1, 1000000, &v))
		cfg->max_clients = (int)v;
	if (config_int(p, root, "", "timeout", 1, 86400, &v))
		cfg->timeout = (int)v;
	cfg->bounces = cfg_getbool(root, "bounces");

	{
		static const struct cfg_retry builtin = { 5, 60, 2.0, 3600 };

		config_build_retry(p, cfg_getsec(root, "retry"), "retry: ", &builtin,
		    &cfg->retry, NULL);
	}
}

static struct config *
config_build(struct config_parse *p, cfg_t *root)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	cfg->refs = 1;

	cfg->path = xstrdup(p->path);
	config_build_top(p, cfg, root);

	cfg->nupstreams = cfg_size(root, "upstream");
	cfg->upstreams = xcalloc(cfg->nupstreams ? cfg->nupstreams : 1,
	    sizeof(*cfg->upstreams));
	for (size_t i = 0; i < cfg->nupstreams; i++)
		config_build_upstream(p, cfg, cfg_getnsec(root, "upstream", (unsigned int)i),
		    &cfg->upstreams[i]);

	cfg->ndomains = cfg_size(root, "domain");
	cfg->domains = xcalloc(cfg->ndomains ? cfg->ndomains : 1, sizeof(*cfg->domains));
	for (size_t i = 0; i < cfg->ndomains; i++)
		config_build_domain(p, cfg, cfg_getnsec(root, "domain", (unsigned int)i),
		    &cfg->domains[i], i);
	return cfg;
}

/* ---- the option tree ------------------------------------------------ */

#define OPT_STR(n, d)	{ .name = (n), .type = CFGT_STR, .def.string = (d), \
			  .parsecb = config_cb_str }
#define OPT_STR_NODEF(n) { .name = (n), .type = CFGT_STR, .flags = CFGF_NODEFAULT, \
			  .parsecb = config_cb_str }
#define OPT_LIST(n, d)	{ .name = (n), .type = CFGT_STR, .flags = CFGF_LIST, \
			  .def.parsed = (d), .parsecb = config_cb_str }
#define OPT_INT(n, d)	{ .name = (n), .type = CFGT_INT, .def.number = (d), \
			  .parsecb = config_cb_int }
#define OPT_INT_NODEF(n) { .name = (n), .type = CFGT_INT, .flags = CFGF_NODEFAULT, \
			  .parsecb = config_cb_int }
#define OPT_FLOAT(n, d)	{ .name = (n), .type = CFGT_FLOAT, .def.fpnumber = (d), \
			  .parsecb = config_cb_float }
#define OPT_FLOAT_NODEF(n) { .name = (n), .type = CFGT_FLOAT, .flags = CFGF_NODEFAULT, \
			  .parsecb = config_cb_float }
#define OPT_BOOL(n, d)	{ .name = (n), .type = CFGT_BOOL, .def.boolean = (d), \
			  .parsecb = config_cb_bool }
#define OPT_SECLINE	{ .name = CONFIG_SECLINE, .type = CFGT_INT, \
			  .def.parsed = (char *)"0", .parsecb = config_cb_secline }

static struct config *
config_parse_tree(struct config_parse *p)
{
	cfg_opt_t retry_opts[] = {
		OPT_INT("attempts", 5),
		OPT_INT("delay", 60),
		OPT_FLOAT("backoff", 2.0),
		OPT_INT("max_delay", 3600),
		CFG_END()
	};
	/* No defaults here: what is not given comes from the global retry. */
	cfg_opt_t retry_override_opts[] = {
		OPT_INT_NODEF("attempts"),
		OPT_INT_NODEF("delay"),
		OPT_FLOAT_NODEF("backoff"),
		OPT_INT_NODEF("max_delay"),
		CFG_END()
	};
	cfg_opt_t oauth2_opts[] = {
		OPT_STR_NODEF("provider"),
		OPT_STR_NODEF("tenant"),
		OPT_STR_NODEF("client_id"),
		OPT_STR_NODEF("client_secret_file"),
		OPT_STR_NODEF("client_certificate_file"),
		OPT_STR_NODEF("client_key_file"),
		OPT_STR_NODEF("service_account_file"),
		OPT_STR_NODEF("refresh_token_file"),
		OPT_STR_NODEF("token_url"),
		OPT_STR_NODEF("scope"),
		OPT_STR_NODEF("tls_ca_file"),
		CFG_END()
	};
	cfg_opt_t upstream_opts[] = {
		OPT_SECLINE,
		OPT_STR_NODEF("host"),
		OPT_INT_NODEF("port"),
		OPT_STR("tls", "starttls"),
		OPT_BOOL("tls_verify", cfg_true),
		OPT_STR_NODEF("tls_ca_file"),
		OPT_STR_NODEF("auth"),
		OPT_STR_NODEF("username"),
		OPT_STR_NODEF("password"),
		OPT_STR_NODEF("password_file"),
		OPT_INT("max_connections", 4),
		OPT_INT("rate", 0),
		OPT_INT("timeout", 300),
		OPT_STR_NODEF("spf"),
		CFG_SEC("retry", retry_override_opts, CFGF_NONE),
		CFG_SEC("oauth2", oauth2_opts, CFGF_NONE),
		CFG_END()
	};
	cfg_opt_t dkim_opts[] = {
		OPT_SECLINE,
		OPT_STR_NODEF("selector"),
		OPT_STR_NODEF("key_file"),
		OPT_STR("algorithm", "rsa-sha256"),
		CFG_END()
	};
	cfg_opt_t domain_opts[] = {
		OPT_SECLINE,
		OPT_STR_NODEF("upstream"),
		CFG_SEC("dkim", dkim_opts, CFGF_MULTI),
		OPT_STR_NODEF("bcc"),
		CFG_END()
	};
	cfg_opt_t opts[] = {
		OPT_STR_NODEF("hostname"),
		OPT_LIST("listen", (char *)"{\"" CONFIG_DEFAULT_LISTEN "\"}"),
		OPT_STR("spool", CONFIG_DEFAULT_SPOOL),
		OPT_STR("control", CONFIG_DEFAULT_CONTROL),
		OPT_STR_NODEF("user"),
		OPT_LIST("allow", (char *)"{\"127.0.0.0/8\", \"::1/128\"}"),
		OPT_INT("max_message_size", 26214400),
		OPT_INT("max_recipients", 100),
		OPT_INT("max_clients", 1000),
		OPT_INT("timeout", 300),
		OPT_BOOL("bounces", cfg_true),
		CFG_SEC("retry", retry_opts, CFGF_NONE),
		CFG_SEC("upstream", upstream_opts,
		    CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
		CFG_SEC("domain", domain_opts,
		    CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
		CFG_END()
	};
	struct config *cfg = NULL;
	cfg_t *root;
	int rc = CFG_SUCCESS;

	if ((root = cfg_init(opts, CFGF_NONE)) == NULL) {
		config_error(p, 0, "cannot set up the parser: %s", strerror(errno));
		return NULL;
	}
	cfg_set_error_function(root, config_cb_error);
	root->filename = xstrdup(p->path);

	/* fmemopen() refuses an empty buffer; an empty file means all defaults. */
	if (p->textlen > 0) {
		FILE *fp = fmemopen(p->text, p->textlen, "r");

		if (fp == NULL) {
			config_error(p, 0, "%s", strerror(errno));
			rc = CFG_PARSE_ERROR;
		} else {
			rc = cfg_parse_fp(root, fp);
			fclose(fp);
			/* never a refusal without a reason, whatever stopped
			 * libconfuse (the pre-pass may have said it already) */
			if (rc != CFG_SUCCESS && !config_has_errors_since(p, 0))
				config_error(p, root->line > 0 ? root->line : 0,
				    "syntax error (libconfuse stopped here without saying why)");
		}
	}
	/* Type errors do not stop validation: bad values are skipped there. */
	if (rc == CFG_SUCCESS)
		cfg = config_build(p, root);
	cfg_free(root);
	return cfg;
}

struct config *
config_load(const char *path, FILE *errout)
{
	return config_load_opts(path, errout, 0);
}

struct config *
config_load_opts(const char *path, FILE *errout, unsigned int flags)
{
	struct config_parse p;
	struct config *cfg = NULL;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.flags = flags;
	if (config_read_file(&p)) {
		config_current = &p;
		cfg = config_parse_tree(&p);
		config_current = NULL;
	}
	if (p.nmsgs > 0)	/* qsort() takes no NULL, even for none */
		qsort(p.msgs, p.nmsgs, sizeof(*p.msgs), config_msg_cmp);
	if (config_has_errors_since(&p, 0)) {
		config_free(cfg);
		cfg = NULL;
		config_print_msgs(&p, errout);
	} else if (cfg != NULL) {
		config_keep_warnings(&p, cfg);
	}
	for (size_t i = 0; i < p.nmsgs; i++)
		free(p.msgs[i].text);
	free(p.msgs);
	free(p.lines);
	if (p.text != NULL) {
		/* The text may hold an inline password. */
		explicit_bzero(p.text, p.textlen);
		free(p.text);
	}
	return cfg;
}

struct config *
config_ref(struct config *cfg)
{
	cfg->refs++;
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL || --cfg->refs > 0)
		return;
	dkim_keys_free(cfg->dkim);
	free(cfg->path);
	free(cfg->hostname);
	for (size_t i = 0; i < cfg->nlisten; i++)
		free(cfg->listen[i].spec);
	free(cfg->listen);
	free(cfg->spool);
	free(cfg->control);
	free(cfg->user);
	free(cfg->allow);
	for (size_t i = 0; i < cfg->nupstreams; i++) {
		struct cfg_upstream *u = &cfg->upstreams[i];

		free(u->name);
		free(u->host);
		free(u->tls_ca_file);
		free(u->username);
		if (u->password != NULL) {
			explicit_bzero(u->password, strlen(u->password));
			free(u->password);
		}
		free(u->password_file);
		free(u->spf);
		if (u->oauth2 != NULL) {
			oauth_creds_free(&u->oauth2->creds);
			free(u->oauth2->ca_file);
			free(u->oauth2->refresh_token_file);
			free(u->oauth2);
		}
	}
	free(cfg->upstreams);
	for (size_t i = 0; i < cfg->ndomains; i++) {
		struct cfg_domain *d = &cfg->domains[i];

		for (size_t j = 0; j < d->ndkim; j++) {
			free(d->dkim[j].selector);
			free(d->dkim[j].key_file);
		}
		free(d->dkim);
		free(d->name);
		free(d->bcc);
	}
	free(cfg->domains);
	for (size_t i = 0; i < cfg->nwarnings; i++)
		free(cfg->warnings[i]);
	free(cfg->warnings);
	free(cfg);
}
