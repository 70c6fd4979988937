"""Transformed Winograd weights, kept between calls and recomputed when the weights change."""
import collections
import threading

import numpy as np

from conv3d_cpu._native import winograd


class TransformCache:
    """Transformed Winograd weights, recomputed whenever the weights' values change.

    An entry keeps a copy of the weights it was computed from; a lookup compares values
    (O(weights), far cheaper than the transform), so assignment, load_state_dict,
    reset_parameters and in-place edits can never serve a stale transform. At most
    ``capacity`` entries, the least recently used evicted first.
    """

    def __init__(self, capacity):
        self._capacity = capacity
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, weight, groups, m, num_threads=0):
        """U for C-contiguous ``weight`` with ``groups`` and the per-axis tile ``m`` (computed,
        when it must be, on ``num_threads`` threads; 0: the OpenMP default)."""
        # The packing depends on the active ISA's channel block (conv3d_cpu._native.isa).
        block = winograd.channel_block(weight.dtype, weight.shape[1], weight.shape[0] // groups)
        key = (weight.__array_interface__["data"][0], weight.shape, weight.dtype.str, groups, m,
               block)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and np.array_equal(entry[0], weight):
                self._entries.move_to_end(key)
                return entry[1]
        # Transform a snapshot: a weight written meanwhile (another thread) must not be cached
        # under the old values' transform.
        snapshot = weight.copy()
        transformed = winograd.transform_weights(snapshot, groups, m, num_threads)
        with self._lock:
            self._entries[key] = (snapshot, transformed)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return transformed


# The functional API's cache, shared by all calls of conv3d; a Conv3d module has its own.
functional_cache = TransformCache(capacity=8)
