"""conv3d_cpu's large arrays (results, transformed weights, weight snapshots, packed
weights), from a pool of large blocks numpy has freed (buffer_pool.h).

A network's layers return arrays of a few sizes over and over; each fresh one of tens of
MiB costs the operating system's page faults on its first write, often more than computing
it. ``empty`` allocates through a numpy memory handler (NEP 49) that keeps freed blocks of
1 MiB and more, up to a byte limit, and hands them out again. Only the arrays made here use
it: numpy's other allocations are untouched.

The handler takes its blocks from malloc, so they also escape numpy's madvise(MADV_HUGEPAGE)
of arrays >= 4 MiB: where the kernel's THP defrag setting is 'madvise' (a common default),
that makes each first touch wait for memory compaction (docs/performance.md).
"""
import numpy as np

from cpython.pycapsule cimport PyCapsule_New

cdef extern from "buffer_pool.h":
    ctypedef struct PyDataMem_Handler:
        pass
    ctypedef struct c3_pool:
        size_t limit, kept, hits, misses
        int n
    c3_pool c3_the_pool
    PyDataMem_Handler c3_pool_handler
    int c3_pool_init(size_t limit) except -1
    void c3_pool_set_limit(size_t limit) noexcept
    object PyDataMem_SetHandler(object handler)

# Bytes of freed blocks kept by default: a 3D U-Net's largest outputs at 96^3 are 56 MiB
# (output_cache.set_output_cache_limit documents it).
DEFAULT_LIMIT = 256 << 20

c3_pool_init(DEFAULT_LIMIT)
_HANDLER = PyCapsule_New(&c3_pool_handler, "mem_handler", NULL)


def empty(shape, dtype):
    """``np.empty(shape, dtype)``, its memory from the pool (from malloc, and freed to it,
    when the limit is 0)."""
    # The handler is a context variable: this thread's (or task's) allocations only.
    old = PyDataMem_SetHandler(_HANDLER)
    try:
        return np.empty(shape, dtype)
    finally:
        PyDataMem_SetHandler(old)


def copy(a):
    """A C-contiguous copy of ``a`` in memory from ``empty``."""
    out = empty(a.shape, a.dtype)
    np.copyto(out, a, casting="no")
    return out


def set_limit(size_t nbytes):
    """Keep at most ``nbytes`` of freed blocks (the oldest beyond it are freed now)."""
    c3_pool_set_limit(nbytes)


def get_limit():
    return c3_the_pool.limit


def stats():
    """dict(kept_bytes, kept_blocks, hits, misses): the pool now, and how many requests of
    1 MiB or more it served from kept blocks (hits) or by malloc (misses)."""
    return dict(kept_bytes=c3_the_pool.kept, kept_blocks=c3_the_pool.n,
                hits=c3_the_pool.hits, misses=c3_the_pool.misses)
