"""One transposed-convolution call (``conv_transpose3d``, ``ConvTranspose3d``) from validated
arguments, on the convolution's engines.

The transposed convolution of x with weight w (C, O / groups, k) is the input gradient of the
convolution with that weight (O_conv = C), whose input has the transposed convolution's
output shape: the forward is ``backward.grad_input`` with the bias as each phase's fill.
Its own gradients are the convolution's forward and weight gradient, grad_output in the role
of the convolution's input: grad_input = conv3d(grad_output, w), grad_weight = the weight
gradient of conv3d(grad_output, w) for grad_output x, grad_bias = the sum of grad_output.
"""
import math

import numpy as np

from conv3d_cpu._core import algorithms, backward
from conv3d_cpu._core.forward import convolve
from conv3d_cpu._core.weight_cache import UNCACHED
from conv3d_cpu._native import layout


def output_shape(x, weight, groups, spatial, unbatched):
    """The output's shape for a 5-D input ``x`` and output ``spatial`` sizes."""
    return (() if unbatched else (x.shape[0],)) + (weight.shape[1] * groups,) + tuple(spatial)


def forward(x, weight, bias, stride, padding, dilation, groups, spatial, algorithm,
            num_threads, plans=None, cache=UNCACHED):
    """The transposed convolution of the 5-D ``x`` to an output of ``spatial`` sizes (their
    output_padding implied). ``plans`` (a module's weight_cache.PlanCache) and ``cache`` (its
    TransformCache) keep the phases' weights and their Winograd transforms between calls."""
    shape = output_shape(x, weight, groups, spatial, False)
    pads = tuple((p, p) for p in padding)  # (grad_input reads the front padding only)
    plan = None
    if plans is not None:
        plan = plans.get((x.shape, shape), (weight, bias), lambda w, b: backward.phase_plan(
            w, shape, x.shape, stride, pads, dilation, groups, b), num_threads)
    return backward.grad_input(x, weight, shape, stride, pads, dilation, groups, algorithm,
                               num_threads, bias=bias, plan=plan, cache=cache)


def gradients(gy, x, weight, stride, padding, dilation, groups, mask, algorithm,
              num_threads):
    """(grad_input, grad_weight, grad_bias) of the transposed convolution of the 5-D ``x``
    for a 5-D ``gy`` (its output's shape fixes the output_padding); None where ``mask`` is
    False."""
    num_threads = algorithms.threads_for(num_threads, x.size * math.prod(weight.shape[1:]))
    gy = layout.contiguous(gy, num_threads)
    # The convolution of gy that gives x's shape: padding (p, p - output_padding), a negative
    # far side a crop (the positions cut off are reached by no input).
    crop, pads = [slice(None), slice(None)], []
    for axis, p in enumerate(padding):
        n, m = gy.shape[2 + axis], x.shape[2 + axis]
        extent = dilation[axis] * (weight.shape[2 + axis] - 1) + 1
        hi = (m - 1) * stride[axis] + extent - p - n  # the far padding giving m outputs
        crop.append(slice(0, n + min(0, hi)))
        pads.append((p, max(0, hi)))
    pads = tuple(pads)
    g = gy[tuple(crop)]
    gi = gw = gb = None
    if mask[0]:
        gi = convolve(g, weight, None, stride, pads, dilation, groups, algorithm, num_threads)
    if mask[1]:
        gw, _ = backward.grad_weight(g, x, weight.shape, stride, pads, dilation, groups,
                                     num_threads)
    if mask[2]:
        gb = gy.sum(axis=(0, 2, 3, 4), dtype=np.float64).astype(gy.dtype)
    return gi, gw, gb
