/*
 * workers — a small pool of threads for CPU-heavy steps (DKIM's
 * private-key operation) so that they neither stall the event loop for
 * other sessions nor leave the machine's other cores idle.
 *
 * work() runs on a pool thread; done() runs afterwards on the event loop,
 * in completion order, if work() returned true.  A work() that hands its
 * result on itself (to the spool, whose own callback comes back to the
 * loop) returns false and saves the loop a wake-up.  Jobs submitted before
 * workers_free() and not yet done are finished; their done() callbacks are
 * not called.
 */
#ifndef RELAYD_WORKERS_H
#define RELAYD_WORKERS_H

#include <stdbool.h>

#include <event2/event.h>

struct workers;

/* nthreads <= 0: one per online CPU. */
struct workers *workers_new(struct event_base *base, int nthreads);
void workers_submit(struct workers *w, bool (*work)(void *arg), void (*done)(void *arg),
    void *arg);
void workers_free(struct workers *w);

#endif
