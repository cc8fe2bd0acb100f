/*
 * workers — a fixed pool of threads fed from one FIFO; finished jobs go
 * back to the event loop through a pipe (the same pattern as the spool's
 * committer), so no libevent locking is needed.
 */
#include "acconfig.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "workers.h"

struct job {
	struct job	*next;
	bool		(*work)(void *);
	void		(*done)(void *);
	void		*arg;
};

struct workers {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	struct job	*todo, **todo_tail;	/* guarded by mu */
	struct job	*fin, **fin_tail;	/* guarded by mu */
	bool		 notified;		/* guarded by mu */
	bool		 stop;			/* guarded by mu */
	pthread_t	*threads;
	int		 nthreads;
	int		 pipe_rd, pipe_wr;
	struct event	*ev;
};

static void *
worker_main(void *arg)
{
	struct workers *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->todo == NULL && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->todo == NULL)
			break;
		struct job *j = w->todo;

		w->todo = j->next;
		if (w->todo == NULL)
			w->todo_tail = &w->todo;
		pthread_mutex_unlock(&w->mu);

		if (!j->work(j->arg)) {
			free(j);
			pthread_mutex_lock(&w->mu);
			continue;
		}

		pthread_mutex_lock(&w->mu);
		j->next = NULL;
		*w->fin_tail = j;
		w->fin_tail = &j->next;
		if (!w->notified) {
			char c = 1;

			w->notified = true;
			(void)!write(w->pipe_wr, &c, 1);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void
workers_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct workers *w = arg;
	char drain[64];
	struct job *list;

	while (read(fd, drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&w->mu);
	list = w->fin;
	w->fin = NULL;
	w->fin_tail = &w->fin;
	w->notified = false;
	pthread_mutex_unlock(&w->mu);
	while (list) {
		struct job *j = list;

		list = j->next;
		j->done(j->arg);
		free(j);
	}
}

struct workers *
workers_new(struct event_base *base, int nthreads)
{
	struct workers *w = xcalloc(1, sizeof(*w));
	int pfd[2];

	if (nthreads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nthreads = n > 0 ? (int)n : 1;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->todo_tail = &w->todo;
	w->fin_tail = &w->fin;
	if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) < 0) {
		log_err("workers: pipe: %m");
		abort();
	}
	w->pipe_rd = pfd[0];
	w->pipe_wr = pfd[1];
	w->ev = event_new(base, w->pipe_rd, EV_READ | EV_PERSIST, workers_notify_cb, w);
	event_add(w->ev, NULL);
	w->threads = xcalloc((size_t)nthreads, sizeof(*w->threads));
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0)
			break;
		w->nthreads++;
	}
	if (w->nthreads == 0) {
		log_err("workers: cannot start any thread");
		abort();
	}
	return w;
}

void
workers_submit(struct workers *w, bool (*work)(void *), void (*done)(void *), void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->mu);
	*w->todo_tail = j;
	w->todo_tail = &j->next;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void
workers_free(struct workers *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	while (w->fin) {
		struct job *j = w->fin;

		w->fin = j->next;
		free(j);
	}
	event_free(w->ev);
	close(w->pipe_rd);
	close(w->pipe_wr);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w->threads);
	free(w);
}
