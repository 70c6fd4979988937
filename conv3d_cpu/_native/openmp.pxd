# OpenMP queries that also compile without OpenMP (see openmp_compat.h).
cdef extern from "openmp_compat.h" nogil:
    int CONV3D_CPU_HAVE_OPENMP
    int omp_get_max_threads()
    int omp_get_thread_num()
    int omp_get_num_threads()
    void conv3d_cpu_barrier()


# The team size a region may ask for without risking the process (see team.h), and the
# record of the team that ran.
cdef extern from "team.h" nogil:
    int c3_team_size(int want)
    void c3_team_ran(int n)


cdef inline int effective_threads(int requested) noexcept nogil:
    """Thread count for one call: `requested` if positive, else the OpenMP default.

    Read per call so OMP_NUM_THREADS and threadpoolctl limits apply; we never call
    omp_set_num_threads.
    """
    if not CONV3D_CPU_HAVE_OPENMP:
        return 1
    if requested > 0:
        return requested
    return omp_get_max_threads()


cdef inline bint any_thread_flag(const int* flags, Py_ssize_t stride,
                                 int nthreads) noexcept nogil:
    """Whether a thread set its flag in a ``thread_flags`` buffer."""
    cdef int t
    for t in range(nthreads):
        if flags[t * stride]:
            return True
    return False


# Static scheduling with stealing (see schedule.h); C3_MAX_RANGES is in constants.pxd.
cdef extern from "schedule.h" nogil:
    ctypedef struct c3_range:
        pass
    size_t c3_share_start(size_t total, int n, int t)
    int c3_ranges_init(c3_range* r, int nthreads, Py_ssize_t total)
    Py_ssize_t c3_ranges_next(c3_range* r, int nranges, int tid)
    void c3_touch_pages(void* p, size_t lo, size_t hi)
    int c3_touch_share(size_t bytes, int part, int nparts, size_t* lo, size_t* hi)
