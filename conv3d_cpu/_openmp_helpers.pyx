"""Python-visible OpenMP facts (for show_config and tests)."""
from conv3d_cpu._openmp_helpers cimport (
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
