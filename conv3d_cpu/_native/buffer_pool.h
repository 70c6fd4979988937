/* A numpy memory handler (NEP 49) for the arrays conv3d_cpu returns: large blocks freed by
 * numpy are kept, up to a byte limit, and handed out again, so that a network's next output
 * of that size lands on pages already mapped instead of faulting in fresh ones (on Linux a
 * fresh 56 MiB output costs 14k page faults, or a huge-page compaction stall; see
 * docs/performance.md).
 *
 * Each block carries a header with its capacity (numpy's realloc passes no old size), so a
 * kept block serves any request up to its size (best fit, at most twice the request) and
 * realloc knows what to copy. Blocks under C3_POOL_MIN are never kept. The kept list takes
 * the pool's lock: numpy may free an array on any thread. */
#ifndef CONV3D_CPU_BUFFER_POOL_H
#define CONV3D_CPU_BUFFER_POOL_H
#include <Python.h>
#include <pythread.h>
#include <stdlib.h>
#include <string.h>

#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

/* Requests below this many bytes go to malloc and free directly. */
#define C3_POOL_MIN ((size_t)1 << 20)
/* The header before each block's data: 64 bytes keep the data as aligned as malloc's. */
#define C3_POOL_HEADER ((size_t)64)
#define C3_POOL_SLOTS 64

typedef struct {
    PyThread_type_lock lock;
    size_t limit;        /* bytes the pool may keep */
    size_t kept;         /* bytes it keeps now */
    size_t hits, misses; /* requests served from kept blocks / by malloc */
    int n;
    void *slot[C3_POOL_SLOTS]; /* kept blocks (their headers), oldest first */
} c3_pool;

static c3_pool c3_the_pool;

static inline size_t c3_capacity(void *base) { return *(size_t *)base; }

/* A block of at least `size` bytes of data (its header's address), or NULL. */
static void *c3_pool_take(c3_pool *p, size_t size) {
    void *base = NULL;
    PyThread_acquire_lock(p->lock, WAIT_LOCK);
    int best = -1;
    for (int i = 0; i < p->n; i++) {
        size_t cap = c3_capacity(p->slot[i]);
        if (cap >= size && cap / 2 <= size &&
            (best < 0 || cap < c3_capacity(p->slot[best])))
            best = i;
    }
    if (best >= 0) {
        base = p->slot[best];
        p->kept -= c3_capacity(base);
        memmove(&p->slot[best], &p->slot[best + 1], (size_t)(p->n - best - 1) * sizeof(void *));
        p->n--;
        p->hits++;
    } else {
        p->misses++;
    }
    PyThread_release_lock(p->lock);
    return base;
}

/* Under the lock: the oldest kept blocks leave (into drop) until `room` more bytes fit under
 * the limit, and a slot is free for them when room > 0. Returns how many left. */
static int c3_pool_evict(c3_pool *p, size_t room, void **drop) {
    int ndrop = 0;
    while (p->n > 0 && (p->kept + room > p->limit || (room > 0 && p->n == C3_POOL_SLOTS))) {
        drop[ndrop++] = p->slot[0];
        p->kept -= c3_capacity(p->slot[0]);
        memmove(&p->slot[0], &p->slot[1], (size_t)(p->n - 1) * sizeof(void *));
        p->n--;
    }
    return ndrop;
}

/* Keep `base`, or free it when it alone exceeds the limit. */
static void c3_pool_give(c3_pool *p, void *base) {
    size_t cap = c3_capacity(base);
    void *drop[C3_POOL_SLOTS + 1];
    int ndrop = 0;
    PyThread_acquire_lock(p->lock, WAIT_LOCK);
    if (cap > p->limit) {
        drop[ndrop++] = base;
    } else {
        ndrop = c3_pool_evict(p, cap, drop);
        p->slot[p->n++] = base;
        p->kept += cap;
    }
    PyThread_release_lock(p->lock);
    for (int i = 0; i < ndrop; i++) free(drop[i]);
}

static void *c3_pool_malloc(void *ctx, size_t size) {
    c3_pool *p = (c3_pool *)ctx;
    void *base = size >= C3_POOL_MIN ? c3_pool_take(p, size) : NULL;
    if (base == NULL) {
        if (size > (size_t)-1 - C3_POOL_HEADER) return NULL;
        base = malloc(C3_POOL_HEADER + size);
        if (base == NULL) return NULL;
        *(size_t *)base = size;
    }
    return (char *)base + C3_POOL_HEADER;
}

/* (numpy passes the array's byte count; the header knows the block's.) */
static void c3_pool_free(void *ctx, void *ptr, size_t size) {
    (void)size;
    if (ptr == NULL) return;
    void *base = (char *)ptr - C3_POOL_HEADER;
    if (c3_capacity(base) < C3_POOL_MIN)
        free(base);
    else
        c3_pool_give((c3_pool *)ctx, base);
}

static void *c3_pool_calloc(void *ctx, size_t nelem, size_t elsize) {
    if (elsize && nelem > (size_t)-1 / elsize) return NULL;
    size_t size = nelem * elsize;
    void *ptr = c3_pool_malloc(ctx, size);
    if (ptr != NULL) memset(ptr, 0, size);
    return ptr;
}

static void *c3_pool_realloc(void *ctx, void *ptr, size_t new_size) {
    if (ptr == NULL) return c3_pool_malloc(ctx, new_size);
    size_t cap = c3_capacity((char *)ptr - C3_POOL_HEADER);
    if (new_size <= cap && (cap < C3_POOL_MIN || cap / 2 <= new_size)) return ptr;
    void *moved = c3_pool_malloc(ctx, new_size);
    if (moved == NULL) return NULL;
    memcpy(moved, ptr, cap < new_size ? cap : new_size);
    c3_pool_free(ctx, ptr, cap);
    return moved;
}

static PyDataMem_Handler c3_pool_handler = {
    "conv3d_cpu_pool", 1,
    {&c3_the_pool, c3_pool_malloc, c3_pool_calloc, c3_pool_realloc, c3_pool_free}};

/* numpy's C API for this module and the pool's lock; 0, or -1 with an exception set. */
static int c3_pool_init(size_t limit) {
    import_array1(-1);
    c3_the_pool.lock = PyThread_allocate_lock();
    if (c3_the_pool.lock == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c3_the_pool.limit = limit;
    return 0;
}

/* Set the byte limit, freeing the oldest kept blocks beyond it. */
static void c3_pool_set_limit(size_t limit) {
    void *drop[C3_POOL_SLOTS];
    PyThread_acquire_lock(c3_the_pool.lock, WAIT_LOCK);
    c3_the_pool.limit = limit;
    int ndrop = c3_pool_evict(&c3_the_pool, 0, drop);
    PyThread_release_lock(c3_the_pool.lock);
    for (int i = 0; i < ndrop; i++) free(drop[i]);
}

#endif
