/* How many threads a parallel region may ask for without risking the process.
 *
 * libgomp starts a team's threads with pthread_create and, when that fails (an address-space
 * limit: each thread maps its stack; a thread or process limit), prints "Thread creation
 * failed" and exits the process: nothing the caller can catch. Threads it has started stay in
 * the calling thread's pool and serve its next regions, so only a team larger than the pool
 * creates threads. Before such a region, c3_team_size starts the missing threads itself (same
 * stack size as libgomp's), keeps them all alive at once, then lets them exit: as many as
 * started, libgomp can start too (glibc hands their stacks on from its cache), and the region
 * asks for no more. Results do not depend on the team size, so a smaller team only runs
 * slower.
 *
 * The pool is libgomp's, per calling thread: a region of n > 1 threads leaves n - 1 threads in
 * it (a smaller team ends the surplus ones), a region of 1 leaves it as it was. c3_team_ran
 * records that; another library running regions on the same libgomp from the same thread can
 * make the record too high, and then the probe is skipped for a team that needs new threads
 * (as before this check). */
#ifndef CONV3D_CPU_TEAM_H
#define CONV3D_CPU_TEAM_H
#include <stdlib.h>

#ifdef _OPENMP
#include <ctype.h>
#include <pthread.h>

/* The team the calling thread's pool can run without starting a thread (pool + itself). */
static __thread int c3_pool_team = 1;

/* libgomp's thread stack size: OMP_STACKSIZE (GOMP_STACKSIZE wins) as libgomp reads it (a
 * number, in KiB unless a B, K, M or G suffix follows), or 0 for the pthread default. */
static inline size_t c3_omp_stacksize(void) {
    const char *names[2] = {"GOMP_STACKSIZE", "OMP_STACKSIZE"};
    for (int i = 0; i < 2; i++) {
        const char *s = getenv(names[i]);
        if (s == NULL) continue;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s) continue;
        while (isspace((unsigned char)*end)) end++;
        unsigned long long unit = 1024;
        switch (tolower((unsigned char)*end)) {
        case 'b': unit = 1; break;
        case 'k': unit = 1024; break;
        case 'm': unit = 1024ULL << 10; break;
        case 'g': unit = 1024ULL << 20; break;
        }
        return (size_t)(v * unit);
    }
    return 0;
}

static void *c3_probe_thread(void *gate) {
    pthread_mutex_lock((pthread_mutex_t *)gate);
    pthread_mutex_unlock((pthread_mutex_t *)gate);
    return NULL;
}

/* The team size to ask for: `want`, or fewer when fewer threads can be started now (at least
 * the pool's team, which needs none). */
static inline int c3_team_size(int want) {
    int have = c3_pool_team;
    if (want <= have) return want;
    int extra = want - have, made = 0;
    pthread_t *ids = (pthread_t *)malloc((size_t)extra * sizeof *ids);
    if (ids == NULL) return have;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) {
        free(ids);
        return have;
    }
    size_t stack = c3_omp_stacksize();
    if (stack) pthread_attr_setstacksize(&attr, stack);
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&gate);
    while (made < extra && pthread_create(&ids[made], &attr, c3_probe_thread, &gate) == 0) made++;
    pthread_mutex_unlock(&gate);
    for (int i = 0; i < made; i++) pthread_join(ids[i], NULL);
    pthread_attr_destroy(&attr);
    free(ids);
    return have + made;
}

/* After a region ran with a team of n threads on the calling thread. */
static inline void c3_team_ran(int n) {
    if (n > 1) c3_pool_team = n;
}
#else
static inline int c3_team_size(int want) { (void)want; return 1; }
static inline void c3_team_ran(int n) { (void)n; }
#endif
#endif
