"""Python-visible OpenMP facts (for show_config and tests), and per-thread buffers."""
import numpy as np

from conv3d_cpu._native.openmp cimport (
    CONV3D_CPU_HAVE_OPENMP, effective_threads, omp_get_max_threads)


def openmp_enabled():
    """True when the extension modules were compiled with OpenMP."""
    return bool(CONV3D_CPU_HAVE_OPENMP)


def default_num_threads():
    """Threads a call with ``num_threads=None`` uses now (``omp_get_max_threads()``)."""
    return effective_threads(0)


def omp_get_max_threads_address():
    """Address of the ``omp_get_max_threads`` this extension was bound to at load time (0
    without OpenMP): show_config() maps it to the runtime library the kernels call."""
    if not CONV3D_CPU_HAVE_OPENMP:
        return 0
    return <size_t><void*>&omp_get_max_threads


# Bytes between the starts of two threads' regions: a multiple of the 64-byte line and of the
# pairs of lines the L2 prefetcher fetches together.
_THREAD_ALIGN = 128


def thread_buffers(nthreads, per_thread, dtype):
    """``(buffer, stride)``: a 1-D array holding ``nthreads`` regions of ``per_thread``
    elements, region t starting at ``buffer[t * stride]``.

    Each region starts on its own 128-byte boundary, so no two threads ever write to one
    cache line (a line shared at a region boundary, written by both threads in every call,
    would move between their caches all the time)."""
    dtype = np.dtype(dtype)
    per_line = _THREAD_ALIGN // dtype.itemsize
    stride = -(-per_thread // per_line) * per_line
    raw = np.empty(nthreads * stride + per_line, dtype)
    skip = (-raw.__array_interface__["data"][0]) % _THREAD_ALIGN // dtype.itemsize
    return raw[skip:skip + nthreads * stride], stride


def thread_flags(nthreads):
    """``(flags, stride)``: one zeroed int per thread, at ``flags[t * stride]``, each on its own
    line, for a kernel's threads to report a condition (read with ``any_thread_flag``)."""
    flags, stride = thread_buffers(nthreads, 1, np.intc)
    flags[:] = 0
    return flags, stride
