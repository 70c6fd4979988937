"""Choose an algorithm for a validated convolution and run it.

Algorithms: 'direct' (any layer) and Winograd for 3x3x3, (1,3,3), (3,1,1) and 5x5x5 kernels
with stride 1 and dilation 1: F(m, 3) along each axis where the kernel is 3, F(2, 5) where it is
5 (identity where it is 1); 'winograd_f2' (m = 2), 'winograd_f4' (m = 4; kernels of 3 only),
'winograd' (the tile size the cost model prefers). 'auto' picks by the cost model below and
never lets Winograd change where NaN/Inf appear: if a Winograd result is not all finite, the
layer is recomputed directly.

Cost model (``estimate_seconds``): time = FLOPs / sustained rate per stage, with rates measured
by the benchmark suite (bench/run.py) on an AVX-512 machine, one thread. Direct: 2 N O P (C/g)
kD kH kW FLOPs. Winograd: the element-wise GEMM does 2 N T A (C/g) (O/g) g FLOPs for T tiles of
A transformed positions (A = (m+2)^3 for 3x3x3 kernels, (m+2)^2 for (1,3,3), m+2 for (3,1,1),
6^3 for 5x5x5); the transforms cost per tile and channel, in proportion to A. Ratios, not
absolute rates, decide, so the choice holds on other machines as long as the stages scale
alike.
"""
import collections
import functools
import math
import threading

import numpy as np

from conv3d_cpu._native import direct as _direct, winograd as _winograd
from conv3d_cpu._core.padding import zero_pad
from conv3d_cpu._core.validation import check_workspace, output_shape

ALGORITHMS = ("auto", "direct", "winograd", "winograd_f2", "winograd_f4")
_TILE = {"winograd_f2": 2, "winograd_f4": 4}

# Sustained rates (FLOP/s or transforms/s), one AVX-512 thread, float32; see module docstring.
_DIRECT_FLOPS = 95e9
_GEMM_FLOPS = 90e9
# Seconds per (tile, channel) for the input and per (tile, output channel) for the output
# transform, by tile size.
_TRANSFORM_IN = {2: 32e-9, 4: 150e-9}
_TRANSFORM_OUT = {2: 24e-9, 4: 90e-9}
# Below this many multiply-adds (about 10 microseconds of one core) the default thread count
# is 1: waking an OpenMP team costs more than the work it would share.
_TINY_MACS = 1_000_000


def check_algorithm(algorithm):
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}"
        )
    return algorithm


# Kernel shapes the Winograd transforms are compiled for (_winograd_tmpl.h), and the tile
# sizes m each has.
WINOGRAD_KERNELS = {(3, 3, 3): (2, 4), (1, 3, 3): (2, 4), (3, 1, 1): (2, 4), (5, 5, 5): (2,)}


def winograd_ineligible(kernel_size, stride, dilation):
    """Why Winograd cannot compute this layer, or None when it can."""
    reasons = []
    if tuple(kernel_size) not in WINOGRAD_KERNELS:
        shapes = list(map(str, WINOGRAD_KERNELS))
        reasons.append(f"kernel_size {tuple(kernel_size)} (needs "
                       f"{', '.join(shapes[:-1])} or {shapes[-1]})")
    if tuple(stride) != (1, 1, 1):
        reasons.append(f"stride {tuple(stride)} (needs (1, 1, 1))")
    # Dilation along an axis where the kernel is 1 changes nothing.
    if any(d != 1 and k != 1 for d, k in zip(dilation, kernel_size)):
        reasons.append(f"dilation {tuple(dilation)} (needs 1 where the kernel is larger than 1)")
    return ", ".join(reasons) or None


def tile_shape(m, kernel_size):
    """Per-axis Winograd tile: m where the kernel is larger than 1, 1 where it is 1."""
    return tuple(m if k > 1 else 1 for k in kernel_size)


def estimate_seconds(m, n, in_channels, out_channels, groups, out_spatial, kernel_size):
    """Cost-model time of one float32 call: direct when m is None, else Winograd F(m, r) along
    the kernel's axes of size r > 1."""
    cpg, opg = in_channels // groups, out_channels // groups
    if m is None:
        points = n * math.prod(out_spatial)
        return 2.0 * points * out_channels * cpg * math.prod(kernel_size) / _DIRECT_FLOPS
    ms = tile_shape(m, kernel_size)
    tiles = n * math.prod(-(-s // md) for s, md in zip(out_spatial, ms))
    positions = math.prod(_winograd.alphas(ms, kernel_size))
    gemm = 2.0 * tiles * positions * cpg * opg * groups / _GEMM_FLOPS
    # The transform rates were measured on 3-D tiles; scaled by their share of the positions.
    share = positions / (m + 2) ** 3
    return gemm + share * tiles * (in_channels * _TRANSFORM_IN[m]
                                   + out_channels * _TRANSFORM_OUT[m])


@functools.lru_cache(maxsize=256)
def choose(algorithm, x_shape, weight_shape, stride, dilation, groups, out_spatial):
    """The per-axis Winograd tile (mz, my, mx) to run with, or None for direct.

    (Cached: a network calls each layer with the same shapes, and the model costs ~6 us.)"""
    if algorithm == "direct":
        return None
    kernel = tuple(weight_shape[2:])
    reason = winograd_ineligible(kernel, stride, dilation)
    if algorithm != "auto":
        if reason:
            raise ValueError(f"algorithm={algorithm!r} cannot compute this layer: {reason}")
        if algorithm in _TILE:
            if _TILE[algorithm] not in WINOGRAD_KERNELS[kernel]:
                raise ValueError(
                    f"algorithm={algorithm!r} cannot compute this layer: kernel_size {kernel} "
                    f"has F({', '.join(map(str, WINOGRAD_KERNELS[kernel]))}, "
                    f"{max(kernel)}) only (use 'winograd_f2' or 'winograd')")
            return tile_shape(_TILE[algorithm], kernel)
    elif reason:
        return None
    n, cin, cout = x_shape[0], x_shape[1], weight_shape[0]
    costs = {m: estimate_seconds(m, n, cin, cout, groups, out_spatial, kernel)
             for m in (None,) + WINOGRAD_KERNELS[kernel]}
    if algorithm == "winograd":
        costs.pop(None)
    m = min(costs, key=costs.get)
    return None if m is None else tile_shape(m, kernel)


class TransformCache:
    """Transformed Winograd weights, recomputed whenever the weights' values change.

    An entry keeps a copy of the weights it was computed from; a lookup compares values
    (O(weights), far cheaper than the transform), so assignment, load_state_dict,
    reset_parameters and in-place edits can never serve a stale transform.
    """

    def __init__(self, capacity):
        self._capacity = capacity
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, weight, groups, m):
        # The packing depends on the active ISA's channel block (conv3d_cpu._isa.use_isa).
        block = _winograd.channel_block(weight.dtype, weight.shape[1], weight.shape[0] // groups)
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
        transformed = _winograd.transform_weights(snapshot, groups, m)
        with self._lock:
            self._entries[key] = (snapshot, transformed)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return transformed


_functional_cache = TransformCache(capacity=8)


def convolve(x, weight, bias, stride, pads, dilation, groups, algorithm, num_threads,
             cache=None):
    """Convolve a validated 5-D input with zero padding ``pads`` ((lo, hi) per axis).

    ``weight`` and ``bias`` (or None) have ``x``'s dtype and consistent shapes; ``num_threads``
    is 0 for the OpenMP default; ``cache`` holds transformed Winograd weights (a module's own,
    else a small shared one). Returns a new C-contiguous (N, O, oD, oH, oW) array.
    """
    check_workspace(x.shape, weight.shape, pads, groups)
    spatial = output_shape(x.shape[2:], weight.shape[2:], stride, pads, dilation)
    m = choose(algorithm, x.shape, weight.shape, stride, dilation, groups, spatial)
    out = np.empty((x.shape[0], weight.shape[0]) + spatial, dtype=x.dtype)
    if out.size == 0:
        return out
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight)
    bias = np.zeros(weight.shape[0], x.dtype) if bias is None else np.ascontiguousarray(bias)
    front = tuple(lo for lo, _ in pads)
    if num_threads == 0 and out.size * math.prod(weight.shape[1:]) < _TINY_MACS:
        num_threads = 1
    if m is not None:
        transformed = (cache or _functional_cache).get(weight, groups, m)
        finite = _winograd.winograd(x, transformed, bias, out, front, m, weight.shape[2:], groups,
                                    num_threads)
        # Winograd mixes a tile's inputs, so one NaN/Inf would spread to outputs that direct
        # convolution leaves finite: 'auto' recomputes such results directly.
        if algorithm != "auto" or finite:
            return out
    finite = _direct.direct(x, weight, bias, out, stride, front, dilation, groups, num_threads)
    if not finite and any(lo or hi for lo, hi in pads):
        # The direct kernel skips taps in implicit padding; PyTorch multiplies them, and with
        # a NaN or infinite weight 0 * w is NaN: recompute with the zeros made explicit.
        _direct.direct(zero_pad(x, pads), weight, bias, out, stride, (0, 0, 0), dilation,
                       groups, num_threads)
    return out
