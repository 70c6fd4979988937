"""Transformed Winograd weights (and a transposed convolution's phase plan), kept between calls
and recomputed when the weights change."""
import collections
import threading

from conv3d_cpu._core import validation as v
from conv3d_cpu._native import buffers, winograd

# The functional API's cache holds at most this many bytes of transforms and weight snapshots
# by default: the transforms of every 3x3x3 layer of a 5-level 3D U-Net up to 256 channels fit.
DEFAULT_FUNCTIONAL_LIMIT = 1 << 30


class TransformCache:
    """Transformed Winograd weights, recomputed whenever the weights' values change.

    An entry keeps a copy of the weights it was computed from; a lookup compares the weights'
    bytes with it (``winograd.same_bytes``: one pass over both, far cheaper than the
    transform), so assignment, load_state_dict, reset_parameters and in-place edits can never
    serve a stale transform. Bounded by entries (``max_entries``) and by the bytes of its
    transforms and snapshots (``max_bytes``), the least recently used evicted first; None:
    no bound of that kind.
    """

    def __init__(self, max_entries=None, max_bytes=None):
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self):
        """Bytes held now (transforms and snapshots)."""
        return self._bytes

    def set_max_bytes(self, max_bytes):
        with self._lock:
            self._max_bytes = max_bytes
            self._evict()

    def get(self, weight, groups, m, num_threads=0):
        """U for C-contiguous ``weight`` with ``groups`` and the per-axis tile ``m`` (computed,
        when it must be, on ``num_threads`` threads; 0: the OpenMP default)."""
        # The packing depends on the active ISA's channel block (conv3d_cpu._native.isa).
        block = winograd.channel_block(weight.dtype, weight.shape[1], weight.shape[0] // groups)
        key = (weight.__array_interface__["data"][0], weight.shape, weight.dtype.str, groups, m,
               block)
        with self._lock:
            entry = self._entries.get(key)
        # (Compared outside the lock: entries never change, and other callers need not wait.)
        if entry is not None and winograd.same_bytes(entry[0], weight, num_threads):
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
            return entry[1]
        if entry is not None:
            # Stale (the weights changed in place, as in training): drop it first, so that its
            # blocks go back to the buffer pool (unless a caller still holds them) and the
            # new snapshot and transform reuse them: one transform in memory, not two.
            with self._lock:
                self._pop(key)
            entry = None
        # Transform a snapshot: a weight written meanwhile (another thread) must not be cached
        # under the old values' transform.
        snapshot = buffers.copy(weight)
        transformed = winograd.transform_weights(snapshot, groups, m, num_threads)
        size = snapshot.nbytes + transformed.nbytes
        with self._lock:
            self._pop(key)  # (another thread's, computed meanwhile)
            if self._max_bytes is None or size <= self._max_bytes:
                self._entries[key] = (snapshot, transformed)
                self._bytes += size
                self._evict()
        return transformed

    def _pop(self, key):
        """Under the lock: forget the entry for ``key``, if any."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[0].nbytes + old[1].nbytes

    def _evict(self):
        while self._entries and (
                (self._max_entries is not None and len(self._entries) > self._max_entries)
                or (self._max_bytes is not None and self._bytes > self._max_bytes)):
            snapshot, transformed = self._entries.popitem(last=False)[1]
            self._bytes -= snapshot.nbytes + transformed.nbytes


class PlanCache:
    """One value derived from arrays (a transposed convolution module's phase plan, derived
    from its weight and bias) for one key (the shapes), served again only while the arrays
    hold the bytes it was derived from (compared as TransformCache does). The value is derived
    from copies, so a write to the arrays meanwhile can never be cached under the old bytes."""

    def __init__(self):
        self._entry = None  # (key, snapshots, value), replaced whole

    def get(self, key, arrays, make, num_threads=0):
        """``make(*copies of arrays)`` (None stays None), or the value kept for ``key`` and
        arrays of the same bytes."""
        entry = self._entry
        if entry is not None and entry[0] == key and all(
                (a is None) == (c is None) and (a is None or (
                    a.shape == c.shape and a.dtype == c.dtype
                    and winograd.same_bytes(c, a, num_threads)))
                for a, c in zip(arrays, entry[1])):
            return entry[2]
        copies = tuple(None if a is None else buffers.copy(a) for a in arrays)
        value = make(*copies)
        self._entry = (key, copies, value)
        return value


class _Uncached:
    """No cache: for weights made anew by every call (the flipped weights of an input
    gradient), which a snapshot and a lookup would only cost."""

    def get(self, weight, groups, m, num_threads=0):
        return winograd.transform_weights(weight, groups, m, num_threads)


UNCACHED = _Uncached()

# The functional API's cache, shared by all calls of conv3d; a Conv3d module has its own.
functional_cache = TransformCache(max_bytes=DEFAULT_FUNCTIONAL_LIMIT)


def set_weight_cache_limit(nbytes):
    """Bound the bytes that ``conv3d`` keeps of transformed Winograd weights (and the weight
    snapshots they are checked against) between calls.

    Parameters
    ----------
    nbytes : int
        Non-negative; 0 keeps nothing (every Winograd call transforms its weights). The
        default, 2**30 (1 GiB), holds the transforms of a 3D U-Net's layers. Least recently
        used transforms go first. ``Conv3d`` modules keep their own transforms, outside this
        bound.
    """
    functional_cache.set_max_bytes(v.nonnegative_int("nbytes", nbytes))


def get_weight_cache_limit():
    """The bound set by ``set_weight_cache_limit``, in bytes."""
    return functional_cache._max_bytes
