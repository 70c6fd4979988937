"""One forward call: from validated arguments to the engine that computes it."""
import math

import numpy as np

from conv3d_cpu._core import algorithms
from conv3d_cpu._core.padding import zero_pad
from conv3d_cpu._core.precision import get_float32_precision
from conv3d_cpu._core.validation import check_workspace, output_shape
from conv3d_cpu._core.weight_cache import UNCACHED, functional_cache
from conv3d_cpu._native import buffers, direct, isa, layout, winograd
from conv3d_cpu._native.constants import PADDING_MODES


def result_shape(x, weight, stride, pads, dilation, groups, unbatched):
    """The output's shape: (N, O, oD, oH, oW), or without N for an unbatched input; a
    MemoryError for a layer whose workspace cannot exist, a ValueError when the kernel does not
    fit the padded input."""
    check_workspace(x.shape, weight.shape, pads, groups)
    spatial = output_shape(x.shape[2:], weight.shape[2:], stride, pads, dilation)
    return (() if unbatched else (x.shape[0],)) + (weight.shape[0],) + spatial


def choose_tile(algorithm, x_shape, weight_shape, stride, dilation, groups, spatial, dtype,
                transform=False):
    """algorithms.choose for a call with these shapes and ``dtype``: under the float32
    precision in effect (float64 is not affected), priced with the rates of the kernel tables
    that would run it (direct: by output channels per group; Winograd: by the fewer of input
    and output channels per group)."""
    f64 = np.dtype(dtype) == np.float64
    precision = "high" if f64 else get_float32_precision()
    cpg, opg = weight_shape[1], weight_shape[0] // groups
    kernels = (isa.layer_isa(opg, f64), isa.layer_isa(min(cpg, opg), f64))
    return algorithms.choose(algorithm, tuple(x_shape), tuple(weight_shape), stride, dilation,
                             groups, spatial, precision, transform, kernels=kernels,
                             dtype="float64" if f64 else "float32",
                             tile_positions=isa.direct_tile_positions(opg, f64))


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
    cache = cache or functional_cache
    m = choose_tile(algorithm, x.shape, weight.shape, stride, dilation, groups, spatial,
                    x.dtype, transform=cache is UNCACHED)
    if out is None:
        out = buffers.empty((x.shape[0], weight.shape[0]) + spatial, x.dtype)
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
    if finite or mode or not any(lo or hi for lo, hi in pads):
        return out
    # The direct kernel skips taps in implicit padding in D and H but multiplies the zeros it
    # pads rows with in W; with a NaN or infinite weight 0 * w is NaN: recompute with every
    # padding tap multiplied (PyTorch's forward) or none (its input gradient).
    if pad_products:
        direct.direct(zero_pad(x, pads), weight, bias, out, stride, (0, 0, 0), dilation,
                      groups, num_threads)
    else:
        _taps_in_input(x, weight, bias, stride, front, dilation, groups, num_threads, out)
    return out


def _taps_in_input(x, weight, bias, stride, front, dilation, groups, num_threads, out):
    """``out`` = the convolution's sum over the taps inside the input only (none in the
    padding is multiplied): one 1x1x1 convolution per tap of the input positions it reads,
    added in tap order."""
    out[...] = 0 if bias is None else bias.reshape(-1, 1, 1, 1)
    ones = (1, 1, 1)
    for tap in np.ndindex(*weight.shape[2:]):
        src, dst = [], []
        for t, n, o, s, lo, d in zip(tap, x.shape[2:], out.shape[2:], stride, front, dilation):
            # outputs q whose input q s + t d - lo lies in [0, n)
            q0 = max(0, -(-(lo - t * d) // s))
            q1 = min(o, (n - 1 + lo - t * d) // s + 1)
            src.append(slice(q0 * s + t * d - lo, (q1 - 1) * s + t * d - lo + 1, s))
            dst.append(slice(q0, q1))
        if any(q.stop <= q.start for q in dst):
            continue
        w = np.ascontiguousarray(weight[(Ellipsis,) + tuple(slice(t, t + 1) for t in tap)])
        part = convolve(x[(Ellipsis,) + tuple(src)], w, None, ones, ((0, 0),) * 3, ones,
                        groups, "direct", num_threads)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, as PyTorch
            out[(Ellipsis,) + tuple(dst)] += part
