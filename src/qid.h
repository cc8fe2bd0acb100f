/*
 * qid — queue ids.
 *
 * An id is a 64-bit value (microseconds since the epoch, bumped to stay
 * strictly increasing) written as QID_LEN base-62 digits in the alphabet
 * 0-9A-Za-z.  Fixed width and ASCII order of that alphabet make string order
 * equal arrival order.  qid_init() is given the largest id found in the
 * spool, so ids stay unique across restarts even if the clock steps back.
 */
#ifndef RELAYD_QID_H
#define RELAYD_QID_H

#include <stdbool.h>
#include <stdint.h>

#define QID_LEN 11
#define QID_SIZE (QID_LEN + 1)

void qid_init(uint64_t floor);		/* next ids will be > floor */
uint64_t qid_next(char out[QID_SIZE]);	/* writes the id, returns its value */
void qid_encode(uint64_t v, char out[QID_SIZE]);
bool qid_decode(const char *s, uint64_t *v);	/* false unless exactly QID_LEN valid digits */

#endif
