/* Static scheduling with stealing, for the kernels' parallel loops.
 *
 * The items 0 .. total-1 are split into one contiguous range per thread, as OpenMP's static
 * schedule does, so a thread works on the same part of the input and output in every call
 * and finds it in its own cache. A thread that finishes its range takes the remaining items
 * of the others', one at a time from the front, so a core slowed by another process (or a
 * range of costlier items) does not leave the rest idle. Which thread computes an item never
 * changes what it computes, so results stay bitwise reproducible.
 *
 * Works with any team size: ranges of threads that never start are taken by the others. */
#ifndef CONV3D_CPU_SCHEDULE_H
#define CONV3D_CPU_SCHEDULE_H
#include <stddef.h>

/* One cache line per range: threads bump their own counter without sharing a line. */
typedef struct {
    ptrdiff_t next, end;
} __attribute__((aligned(64))) c3_range;

/* Ranges a caller keeps (on its stack); teams larger than this share them. */
#define C3_MAX_RANGES 64

static inline void c3_ranges_init(c3_range *r, int nranges, ptrdiff_t total) {
    for (int t = 0; t < nranges; t++) {
        r[t].next = total * t / nranges;
        r[t].end = total * (t + 1) / nranges;
    }
}

/* The next item for thread `tid`, or -1 when none is left. */
static inline ptrdiff_t c3_ranges_next(c3_range *r, int nranges, int tid) {
    for (int k = 0; k < nranges; k++) {
        c3_range *own = r + (tid + k) % nranges;
        if (__atomic_load_n(&own->next, __ATOMIC_RELAXED) >= own->end) continue;
        ptrdiff_t i = __atomic_fetch_add(&own->next, 1, __ATOMIC_RELAXED);
        if (i < own->end) return i;
    }
    return -1;
}
#endif
