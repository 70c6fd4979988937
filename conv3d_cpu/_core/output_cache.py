"""The memory results are allocated from: freed blocks kept for reuse (_native/buffers.pyx)."""
from conv3d_cpu._core import validation as v
from conv3d_cpu._native import buffers


def set_output_cache_limit(nbytes):
    """Bound the bytes of freed result arrays that conv3d_cpu keeps for its next results.

    Parameters
    ----------
    nbytes : int
        Non-negative; 0 keeps nothing (every result is a fresh block). The default,
        2**28 (256 MiB), holds the largest outputs of a 3D U-Net at 96^3. Only blocks of
        1 MiB or more are kept, the oldest freed first out; lowering the bound frees what
        is above it now.

    Notes
    -----
    The arrays conv3d_cpu returns (outputs and gradients) take their memory from blocks
    that earlier results of about their size released: their pages are mapped already, so a
    network's layers do not pay page faults on every output. Transformed Winograd weights and
    their snapshots take and release blocks of the same pool. Its blocks come from malloc,
    without numpy's request for huge pages (madvise), which can make a first write wait for
    memory compaction. Kept blocks count in the process's resident memory.
    """
    buffers.set_limit(min(v.nonnegative_int("nbytes", nbytes), 1 << 62))


def get_output_cache_limit():
    """The bound set by ``set_output_cache_limit``, in bytes."""
    return buffers.get_limit()
