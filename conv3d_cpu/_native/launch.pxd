from conv3d_cpu._native.isa cimport c3_idx


# A pending signal (Ctrl-C) seen during a call: see interrupt.h.
cdef extern from "interrupt.h" nogil:
    ctypedef struct c3_stop:
        int stop
    void c3_stop_init(c3_stop* s, int poll)
    int c3_stopped(c3_stop* s, int tid)
    void c3_team_ready(c3_stop* s, int tid, int team)
    void c3_team_done(c3_stop* s, int tid, int team)


ctypedef struct c3_thread:
    # What a hook knows of the thread that runs it.
    int tid
    void* scratch    # its elements of the call's dtype (laid out by the engine)
    c3_idx* index    # its index scratch
    c3_stop* stop    # the call's stop flag (stopped())


# Hooks return a flag: nonzero reports a condition (a non-finite weight seen, ...).
ctypedef int (*c3_thread_hook)(const void* plan, c3_thread* thread) noexcept nogil
ctypedef int (*c3_block_hook)(const void* plan, c3_idx block) noexcept nogil
ctypedef int (*c3_item_hook)(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil


ctypedef struct c3_launch:
    # One parallel call of an engine: its plan (passed to every hook), what each thread
    # needs, and the hooks that fill in the work. The order on every thread: clear its scratch,
    # thread_start, a share of the blocks, a share of the touched output, (a barrier when
    # there were blocks or a touch), then work items until none is left.
    const void* plan
    int n_threads
    bint f64                     # dtype of the scratch: float64, else float32
    c3_idx scratch_size          # elements per thread
    bint clear_scratch           # zero it before anything else
    c3_idx index_size            # index (c3_idx) elements per thread
    c3_thread_hook thread_start  # or NULL
    c3_idx n_blocks              # set-up shared by the threads (e.g. packing weight blocks),
    c3_block_hook block          # done before any work item; 0 / NULL for none
    void* touch                  # an output whose fresh pages each thread first touches in
    size_t touch_bytes           # equal shares (schedule.h: c3_touch_share), or NULL
    c3_idx n_items
    c3_item_hook item


cdef int launch(const c3_launch* L) except -1


cdef inline bint stopped(c3_thread* thread) noexcept nogil:
    """Whether the call is to stop (Ctrl-C): an item that runs long checks it between its
    steps and returns early; launch then raises the signal handler's exception."""
    return c3_stopped(thread.stop, thread.tid)
