/* Ctrl-C during a call: the calling thread looks for a pending signal every
 * C3_INTERRUPT_POLL_MS while the team computes, and every thread stops at its next work step
 * once one was found.
 *
 * Python runs signal handlers (SIGINT's raises KeyboardInterrupt) in the main thread, between
 * bytecodes: a thread inside a kernel, without the GIL, never gets there. When the main
 * thread is the caller, it is thread 0 of its OpenMP team; it takes the GIL for a moment and
 * calls PyErr_CheckSignals,
 * which runs the handlers; when one raises, the exception stays set for the caller to return,
 * and c3_stop.stop tells the team to take no further work. Between polls a check costs one
 * clock read (thread 0) or one load (the others). */
#ifndef CONV3D_CPU_INTERRUPT_H
#define CONV3D_CPU_INTERRUPT_H
#include <Python.h>
#include <sched.h>
#include <time.h>

#include "constants.h"

typedef struct {
    int stop;              /* set once: a handler raised (read by every thread) */
    int poll;              /* thread 0 polls: the call came from Python's main thread */
    int ready;             /* threads done with the set-up (blocks, touching the output) */
    int done;              /* threads that have taken their last item */
    long long next_poll;   /* thread 0's next poll, CLOCK_MONOTONIC nanoseconds */
} c3_stop;

static inline long long c3_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* `poll`: whether the caller is Python's main thread, the only one that runs signal
 * handlers. Another thread never takes the GIL here: PyErr_CheckSignals would do nothing
 * for it, and while the interpreter shuts down, taking the GIL ends the thread
 * (pthread_exit) in the middle of the OpenMP region. */
static inline void c3_stop_init(c3_stop *s, int poll) {
    s->stop = 0;
    s->poll = poll;
    s->ready = 0;
    s->done = 0;
    s->next_poll = c3_now_ns() + C3_INTERRUPT_POLL_MS * 1000000LL;
}

/* 1 when the team is to stop. `tid`: the OpenMP thread number of the caller (0 polls). */
static inline int c3_stopped(c3_stop *s, int tid) {
    if (__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) return 1;
    if (tid != 0 || !s->poll) return 0;
    long long now = c3_now_ns();
    if (now < s->next_poll) return 0;
    s->next_poll = now + C3_INTERRUPT_POLL_MS * 1000000LL;
    PyGILState_STATE gil = PyGILState_Ensure();
    int raised = PyErr_CheckSignals() != 0;
    PyGILState_Release(gil);
    if (raised) __atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
    return raised;
}
/* Called by each of the `team` threads at a point they all reach (*count starts at 0): thread
 * 0 waits there for the others, polling, and so does not sit in an OpenMP barrier or at the
 * region's end while a slowed thread finishes a long step, holding a Ctrl-C back. (It
 * yields the CPU while it waits, which libgomp's spinning barrier does not.) */
static inline void c3_arrive(c3_stop *s, int *count, int tid, int team) {
    __atomic_add_fetch(count, 1, __ATOMIC_ACQ_REL);
    if (tid != 0 || !s->poll) return;
    while (__atomic_load_n(count, __ATOMIC_ACQUIRE) < team && !c3_stopped(s, 0))
        sched_yield();
}
/* The set-up is done (before the barrier that precedes the items) / no item is left. */
static inline void c3_team_ready(c3_stop *s, int tid, int team) {
    c3_arrive(s, &s->ready, tid, team);
}
static inline void c3_team_done(c3_stop *s, int tid, int team) {
    c3_arrive(s, &s->done, tid, team);
}
#endif
