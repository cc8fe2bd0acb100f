/*
 * control — the daemon's end of relayctl: a UNIX socket (`control`, mode
 * 0660, owned by the relay user and its group) that answers one request
 * per connection.
 *
 * Protocol (text, one request line, answers as lines, the last one "."):
 *   queue              M<TAB>id<TAB>arrival_us<TAB>size<TAB>sender<TAB>active<TAB>due
 *                      R<TAB>address<TAB>status<TAB>attempts<TAB>next<TAB>dsn<TAB>last_error
 *                      (M then its R lines, for each message)
 *   flush [ID...]      ok<TAB>n, or error<TAB>reason
 *   remove ID...       removed<TAB>id, or error<TAB>id: reason, per id
 *   wait ID            O<TAB>address<TAB>status<TAB>dsn<TAB>reason per recipient of
 *                      the message's first (next) delivery attempt, or error<TAB>reason
 * Fields never contain TAB or line ends (replaced by spaces).  Anything
 * else is answered "error<TAB>unknown request".
 */
#ifndef RELAYD_CONTROL_H
#define RELAYD_CONTROL_H

#include <stddef.h>

#include <event2/event.h>

#include "config.h"
#include "queue.h"

struct control;

/* A request line read: its command and the queue ids after it. */
enum control_cmd { CONTROL_UNKNOWN = 0, CONTROL_QUEUE, CONTROL_FLUSH, CONTROL_REMOVE,
	CONTROL_WAIT };

struct control_request {
	enum control_cmd	 cmd;
	char			**ids;		/* point into the line */
	size_t			 nids;
};

/*
 * Parses a request line (a C string without its line end, cut into words
 * in place: words are separated by spaces and tabs).  Returns -1 for an
 * empty line, else 0 with *r set (free it with control_request_free).
 * Pure: the daemon acts on what it returns; the fuzz targets call it
 * directly (tests/fuzz/fuzz_control.c).
 */
int control_parse_request(char *line, struct control_request *r);
void control_request_free(struct control_request *r);

/* Creates the socket at cfg->control, mode 0660 (its directory too, mode
 * 0755, if missing; a stale socket nobody listens on is replaced).  As root
 * with `user` set, hands the socket to that user and group.  The name
 * appears only once the socket is complete and listening, and nothing in
 * the directory is followed; a directory that group or others may write
 * to, or that belongs to another user than root, relayd or the relay user,
 * is refused.  Returns NULL with a reason in err. */
struct control *control_open(struct event_base *base, const struct config *cfg,
    struct queue *q, char *err, size_t errlen);
/* Closes the socket and removes it. */
void control_free(struct control *c);

#endif
