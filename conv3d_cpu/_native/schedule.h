/* Static scheduling with stealing, for the kernels' parallel loops.
 *
 * The items 0 .. total-1 are split into one contiguous range per thread, as OpenMP's static
 * schedule does, so a thread works on the same part of the input and output in every call
 * and finds it in its own cache. The owner takes its items from the front of its range; a
 * thread that has finished its own takes the others' remaining items from the back, so a
 * core slowed by another process (or a range of costlier items) does not leave the rest
 * idle, and only the end of a range changes hands. Which thread computes an item never
 * changes what it computes, so results stay bitwise reproducible.
 *
 * Works with any team size: ranges of threads that never start are taken by the others. */
#ifndef CONV3D_CPU_SCHEDULE_H
#define CONV3D_CPU_SCHEDULE_H
#include <stddef.h>

/* A range [lo, hi): the owner claims lo++, a thief hi--, under the range's own spin lock
 * (held for a few instructions; contended only while a thief works on the range). One cache
 * line per range: owners update their own without sharing a line. */
typedef struct {
    ptrdiff_t lo, hi;
    char lock;
} __attribute__((aligned(64))) c3_range;

/* C3_MAX_RANGES: ranges a caller keeps (on its stack); larger teams share them. */
#include "constants.h"

/* Where share t of `total` split into n equal shares starts (t = n: total), that is
 * total * t / n without overflow for any total. */
static inline size_t c3_share_start(size_t total, int n, int t) {
    return total / n * t + total % n * t / n;
}

/* Split `total` items into one range per thread (at most C3_MAX_RANGES); returns how many. */
static inline int c3_ranges_init(c3_range *r, int nthreads, ptrdiff_t total) {
    int n = nthreads < 1 ? 1 : nthreads > C3_MAX_RANGES ? C3_MAX_RANGES : nthreads;
    for (int t = 0; t < n; t++) {
        r[t].lo = (ptrdiff_t)c3_share_start((size_t)total, n, t);
        r[t].hi = (ptrdiff_t)c3_share_start((size_t)total, n, t + 1);
        r[t].lock = 0;
    }
    return n;
}

/* Claim one item of range r: from the front (owner) or the back (thief); -1 when empty. */
static inline ptrdiff_t c3_range_take(c3_range *r, int from_back) {
    ptrdiff_t i = -1;
    while (__atomic_test_and_set(&r->lock, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&r->lock, __ATOMIC_RELAXED)) {}
    if (r->lo < r->hi) i = from_back ? --r->hi : r->lo++;
    __atomic_clear(&r->lock, __ATOMIC_RELEASE);
    return i;
}

/* The next item for thread `tid` of a team using `nranges` ranges, or -1 when none is left:
 * its own range first (threads beyond nranges share range tid % nranges), then the others'. */
static inline ptrdiff_t c3_ranges_next(c3_range *r, int nranges, int tid) {
    int own = tid % nranges;
    ptrdiff_t i = c3_range_take(r + own, 0);
    if (i >= 0) return i;
    for (int k = 1; k < nranges; k++) {
        i = c3_range_take(r + (own + k) % nranges, 1);
        if (i >= 0) return i;
    }
    return -1;
}

/* Fresh output memory (numpy maps large arrays anew each call, in 2 MiB huge pages where it
 * can) is zeroed by the OS on the first write to each page, by the writing thread. Kernels
 * whose threads each write a slice of every output channel would all fault on the same
 * pages at once, one thread zeroing while the others wait (docs/performance.md: a 32 MiB
 * output). Instead each
 * thread first writes one byte per 4 KiB of its own contiguous share of the output (`part`
 * of `nparts`), so the zeroing is split evenly; the caller puts a barrier after it, before
 * any real store (and touches in pieces, looking for Ctrl-C between them: zeroing a large
 * output's fresh pages can take long, docs/performance.md). On memory
 * already mapped this costs a few store misses per page. */
#define C3_TOUCH_MIN_BYTES ((size_t)1 << 21)
/* One byte at each page start in [lo, hi) of p, so that every page is touched by the one
 * range that holds its start. */
static inline void c3_touch_pages(void *p, size_t lo, size_t hi) {
    char *base = (char *)p;
    size_t first = (((size_t)(base + lo) + 4095) & ~(size_t)4095) - (size_t)base;
    for (size_t i = first; i < hi; i += 4096) ((volatile char *)base)[i] = 0;
}
/* Whether a call's output is worth touching first, and part `part`'s share of it (on one
 * thread too: touched in steps, the zeroing of fresh pages can be interrupted, where a
 * first store to a tile of every output channel's plane could take a second). */
static inline int c3_touch_share(size_t bytes, int part, int nparts, size_t *lo, size_t *hi) {
    if (bytes < C3_TOUCH_MIN_BYTES) return 0;
    *lo = c3_share_start(bytes, nparts, part);
    *hi = c3_share_start(bytes, nparts, part + 1);
    return 1;
}
#endif
