/*
 * resign — signs a queued message again, from its text in the spool.
 *
 * smtp_server signs a message while the spool makes it durable, and the
 * signatures follow in a record of their own (SPOOL_F_SIGPEND, spool.h).
 * A crash after the 250 but before that record reached the disk leaves a
 * queued message without them.  Before such a message is sent, this signs
 * it as smtp_server would have: the text's header fields and body through
 * the streaming signer, with the keys of the domain section of its From:
 * domain in the current configuration.  (The one difference: t= is the
 * time of this signing.)
 */
#ifndef RELAYD_RESIGN_H
#define RELAYD_RESIGN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

/*
 * Signs the text of len octets at off in fd (as the spool stores it: CRLF
 * lines, no dot-stuffing), appending one "DKIM-Signature: ...\r\n" field
 * per key of the From: domain's section to out.  jobid names the message
 * in the library's messages.  Returns 1 if it signed, 0 if the From:
 * domain has no keys in cfg (nothing appended: nothing to sign with), -1
 * with a reason in err (unreadable text, no single From:, signed fields
 * over DKIM_HDRS_MAX, signing failed).
 */
int resign_text(const struct config *cfg, int fd, uint64_t off, uint64_t len,
    const char *jobid, struct buf *out, char *err, size_t errlen);

#endif
