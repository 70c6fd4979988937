/* omp.h behind #ifdef _OPENMP so the package builds (serially) without OpenMP. */
#ifndef CONV3D_CPU_OPENMP_COMPAT_H
#define CONV3D_CPU_OPENMP_COMPAT_H
#ifdef _OPENMP
#include <omp.h>
#define CONV3D_CPU_HAVE_OPENMP 1
#else
#define CONV3D_CPU_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif
/* Cython's prange ends with `omp for nowait`: a loop whose results the next prange of the
 * same parallel block reads needs this barrier after it (orphaned, so it binds to the
 * enclosing parallel region). */
static inline void conv3d_cpu_barrier(void) {
#ifdef _OPENMP
#pragma omp barrier
#endif
}
#endif
