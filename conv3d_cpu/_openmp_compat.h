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
#endif
#endif
