"""The one parallel loop every engine runs in (scikit-learn's shape: the base owns the OpenMP
region, the engines fill in hooks).

An engine (direct.pyx, winograd.pyx) describes a call as a ``c3_launch``: its plan, the
per-thread scratch it needs, and hooks for a thread's start, for set-up shared by the threads
(packing weight blocks) and for one work item. ``launch`` allocates the scratch, each thread on
its own cache lines, and runs the items from static ranges with stealing (schedule.h): a
thread works on the same part of the input and output in every call and finds it in its own
cache, and a thread slowed by another process still gets help. Which thread runs an item never
changes what the item computes, so results do not depend on the thread count.

Two things a kernel cannot do for itself are done here: the team is cut to the threads that
can be started (team.h: libgomp exits the process when it cannot start one), and a pending
signal stops the call (interrupt.h: the calling thread polls; every thread stops at its next
item, long items at their next step; the signal handler's exception, KeyboardInterrupt for
Ctrl-C, is raised once every thread has left).
"""
import threading

import numpy as np

from cython.parallel cimport parallel, prange, threadid
from cpython.pythread cimport PyThread_get_thread_ident
from libc.string cimport memset

from conv3d_cpu._native.constants cimport C3_MAX_RANGES
from conv3d_cpu._native.openmp import thread_buffers, thread_flags
from conv3d_cpu._native.openmp cimport (any_thread_flag, c3_range, c3_ranges_init,
                                        c3_ranges_next, c3_team_ran, c3_team_size,
                                        c3_touch_pages, c3_touch_share, conv3d_cpu_barrier,
                                        omp_get_num_threads)


# Python's main thread, the one that runs signal handlers (interrupt.h).
cdef unsigned long _MAIN_THREAD = threading.main_thread().ident


cdef inline c3_thread _thread_of(int tid, char* scratch, c3_idx scratch_stride, c3_idx* index,
                                 c3_idx index_stride, c3_stop* stop) noexcept nogil:
    cdef c3_thread t
    t.tid = tid
    t.stop = stop
    t.scratch = scratch + tid * scratch_stride
    t.index = index + tid * index_stride
    return t


# Bytes of fresh output a thread touches between two looks for Ctrl-C (one huge page).
cdef size_t _TOUCH_STEP = 1 << 21


cdef inline void _touch(const c3_launch* L, c3_thread* thread, int nt) noexcept nogil:
    """The thread's share of L.touch's pages (schedule.h), in steps, stopping on Ctrl-C."""
    cdef size_t lo = 0, hi = 0
    if not c3_touch_share(L.touch_bytes, thread.tid, nt, &lo, &hi):
        return
    while lo < hi and not stopped(thread):
        c3_touch_pages(L.touch, lo, min(hi, lo + _TOUCH_STEP))
        lo += _TOUCH_STEP


cdef int launch(const c3_launch* L) except -1:
    """Run L on L.n_threads OpenMP threads (fewer when fewer can be started); return 1 when a
    hook reported a flag, else 0; raise what a signal handler raised meanwhile."""
    cdef int nt = L.n_threads
    cdef float[::1] scratch32
    cdef double[::1] scratch64
    cdef char* scratch
    cdef c3_idx scratch_stride, scratch_bytes
    # (At least one element each: a region's first element is always addressable.)
    if L.f64:
        scratch64, scratch_stride = thread_buffers(nt, max(1, L.scratch_size), np.float64)
        scratch, scratch_bytes = <char*>&scratch64[0], scratch_stride * sizeof(double)
    else:
        scratch32, scratch_stride = thread_buffers(nt, max(1, L.scratch_size), np.float32)
        scratch, scratch_bytes = <char*>&scratch32[0], scratch_stride * sizeof(float)
    cdef c3_idx[::1] index
    cdef c3_idx index_stride
    index, index_stride = thread_buffers(nt, max(1, L.index_size), np.intp)
    # One flag per thread, each on its own line.
    cdef int[::1] flags
    cdef c3_idx flag_stride
    flags, flag_stride = thread_flags(nt)
    cdef bint barrier = L.n_blocks > 0 or L.touch != NULL
    cdef size_t clear = L.scratch_size * (sizeof(double) if L.f64 else sizeof(float))
    # (Initialized: Cython makes a parallel block's variables firstprivate.)
    cdef c3_thread thread
    cdef c3_idx item = 0, blk = 0
    cdef int tid = 0, flag = 0, n_ranges
    cdef c3_range ranges[C3_MAX_RANGES]
    cdef c3_stop stop
    cdef int team[1]
    # Last, after every allocation of the call: the threads' stacks need what is left.
    nt = c3_team_size(nt)
    team[0] = 1
    n_ranges = c3_ranges_init(ranges, nt, L.n_items)
    c3_stop_init(&stop, PyThread_get_thread_ident() == _MAIN_THREAD)
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        if tid == 0:
            team[0] = omp_get_num_threads()
        thread = _thread_of(tid, scratch, scratch_bytes, &index[0], index_stride, &stop)
        flag = 0
        if L.clear_scratch:
            memset(thread.scratch, 0, clear)
        if L.thread_start != NULL:
            flag = L.thread_start(L.plan, &thread)
        for blk in prange(L.n_blocks, schedule="static"):
            if not stopped(&thread):
                flags[tid * flag_stride] |= L.block(L.plan, blk)
        if L.touch != NULL:
            _touch(L, &thread, nt)
        if barrier:
            c3_team_ready(&stop, tid, omp_get_num_threads())
            conv3d_cpu_barrier()  # every block done (and page touched) before any item
        item = -1 if stopped(&thread) else c3_ranges_next(ranges, n_ranges, tid)
        while item >= 0:
            flag = flag | L.item(L.plan, &thread, item)
            item = -1 if stopped(&thread) else c3_ranges_next(ranges, n_ranges, tid)
        flags[tid * flag_stride] |= flag
        c3_team_done(&stop, tid, omp_get_num_threads())
    c3_team_ran(team[0])
    if stop.stop:
        return -1  # the exception PyErr_CheckSignals left set
    return any_thread_flag(&flags[0], flag_stride, nt)
