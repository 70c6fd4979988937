"""One forward call: from validated arguments to the engine that computes it."""
import math

import numpy as np

from conv3d_cpu._core import algorithms
from conv3d_cpu._core.padding import zero_pad
from conv3d_cpu._core.precision import get_float32_precision
from conv3d_cpu._core.validation import check_workspace, output_shape
from conv3d_cpu._core.weight_cache import UNCACHED, functional_cache
from conv3d_cpu._native import direct, layout, winograd
from conv3d_cpu._native.constants import PADDING_MODES


def result_shape(x, weight, stride, pads, dilation, groups, unbatched):
    """The output's shape: (N, O, oD, oH, oW), or without N for an unbatched input; a
    MemoryError for a layer whose workspace cannot exist, a ValueError when the kernel does not
    fit the padded input."""
    check_workspace(x.shape, weight.shape, pads, groups)
    spatial = output_shape(x.shape[2:], weight.shape[2:], stride, pads, dilation)
    return (() if unbatched else (x.shape[0],)) + (weight.shape[0],) + spatial


def convolve(x, weight, bias, stride, pads, dilation, groups, algorithm, num_threads,
             cache=None, out=None, padding_mode="zeros", pad_products=True):
    """Convolve a validated 5-D input padded by ``pads`` ((lo, hi) per axis) in
    ``padding_mode`` (its limits checked: validation.padding_mode_fits).

    ``weight`` and ``bias`` (or None) have ``x``'s dtype and consistent shapes; ``algorithm``
    is one the layer can use (validation.algorithm_fits), 'auto' choosing under the float32
    precision in effect (precision.py); ``num_threads`` is 0 for the OpenMP default;
    ``cache`` holds transformed Winograd weights (a module's own, else the functional
    API's; ``weight_cache.UNCACHED``: weights new to every call, whose transform 'auto' then
    costs). ``pad_products``: taps in zero padding count as products 0 * w, as in PyTorch's
    forward, where 0 * inf is NaN (False: they are left out of the sum, as in PyTorch's
    input gradient, which this then computes). Writes into ``out`` (a 5-D array checked by validation.out_arg) or a new
    C-contiguous (N, O, oD, oH, oW) array, and returns it.
    """
    spatial = result_shape(x, weight, stride, pads, dilation, groups, False)[2:]
    # The float32 precision in effect for this caller, read once (float64 is not affected).
    precision = get_float32_precision() if x.dtype == np.float32 else "high"
    cache = cache or functional_cache
    m = algorithms.choose(algorithm, x.shape, weight.shape, stride, dilation, groups, spatial,
                          precision, transform=cache is UNCACHED)
    if out is None:
        out = np.empty((x.shape[0], weight.shape[0]) + spatial, dtype=x.dtype)
    if out.size == 0:
        return out
    x = layout.contiguous(x, num_threads)
    weight = np.ascontiguousarray(weight)
    bias = np.zeros(weight.shape[0], x.dtype) if bias is None else np.ascontiguousarray(bias)
    front = tuple(lo for lo, _ in pads)
    num_threads = algorithms.threads_for(num_threads, out.size * math.prod(weight.shape[1:]))
    mode = PADDING_MODES.index(padding_mode)
    if m is not None:
        transformed = cache.get(weight, groups, m, num_threads)
        finite = winograd.winograd(x, transformed, bias, out, front, m, weight.shape[2:], groups,
                                   num_threads, mode)
        # Winograd mixes a tile's inputs, so one NaN/Inf would spread to outputs that direct
        # convolution leaves finite: 'auto' recomputes such results directly.
        if algorithm != "auto" or finite:
            return out
    finite = direct.direct(x, weight, bias, out, stride, front, dilation, groups, num_threads,
                           mode)
    if not finite and pad_products and not mode and any(lo or hi for lo, hi in pads):
        # The direct kernel skips taps in implicit padding; PyTorch multiplies them, and with
        # a NaN or infinite weight 0 * w is NaN: recompute with the zeros made explicit.
        direct.direct(zero_pad(x, pads), weight, bias, out, stride, (0, 0, 0), dilation,
                      groups, num_threads)
    return out
