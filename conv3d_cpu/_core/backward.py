"""One backward call: the gradients of conv3d from validated arguments, on the forward's
engines.

- grad_input is a transposed convolution of grad_output. Along an axis of stride s the input
  positions i0, i0 + s, i0 + 2s, ... (phase i0) are reached by the taps t with
  (i0 + lo - t d) divisible by s, so each phase is a stride-1 convolution of grad_output with
  those taps, flipped, at dilation d / gcd(d, s), and input and output channels swapped. One
  such convolution per phase (s_D s_H s_W of them; one for stride 1, written in place), each
  computed by the forward's engines (``forward.convolve``: direct, or Winograd where the
  cost model, charging the transform of weights new to each call, prefers it), its result
  copied into its phase of grad_input: every element written once, no zero-stuffed copy of
  grad_output. Taps in the padding are left out of the sum (PyTorch's grad_input never
  multiplies the padding).
- grad_weight: the correlation of the input with grad_output (_native/grad_weight.pyx).
  PyTorch multiplies the taps in zero padding (0 * inf is NaN), the engine skips them: when
  grad_output holds a NaN or an infinity, it runs again on a zero-padded copy of the input.
- grad_bias: the sum of grad_output over N, D, H, W, accumulated in float64.

Padding modes other than zeros (a module's) differentiate the convolution of the padded input
and fold the padded input's gradient back onto the input (``fold_padding``: the adjoint of the
padding).
"""
import math

import numpy as np

from conv3d_cpu._core import algorithms
from conv3d_cpu._core.forward import convolve
from conv3d_cpu._core.padding import zero_pad
from conv3d_cpu._core.weight_cache import UNCACHED
from conv3d_cpu._native import grad_weight as _grad_weight
from conv3d_cpu._native import layout

# numpy.pad's names for PyTorch's padding modes.
_NUMPY_PAD = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def gradients(gy, x, weight, stride, pads, dilation, groups, mask, algorithm, num_threads,
              padding_mode="zeros"):
    """(grad_input, grad_weight, grad_bias), None where ``mask`` is False, of conv3d(x, weight)
    padded by ``pads`` ((lo, hi) per axis) in ``padding_mode``, for grad_output ``gy``.

    5-D arrays of one dtype with consistent shapes (checked by the caller); ``num_threads`` 0
    for the OpenMP default."""
    if padding_mode != "zeros" and (mask[0] or mask[1]):
        xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode=_NUMPY_PAD[padding_mode])
        gi, gw, gb = gradients(gy, xp, weight, stride, ((0, 0),) * 3, dilation, groups, mask,
                               algorithm, num_threads)
        return (fold_padding(gi, pads, padding_mode) if mask[0] else None), gw, gb
    gi = gw = gb = None
    # (One layout for every gradient: numpy's summation order follows the memory order.)
    gy = layout.contiguous(gy, _threads(num_threads, gy, weight.shape))
    if mask[0]:
        gi = grad_input(gy, weight, x.shape, stride, pads, dilation, groups, algorithm,
                        num_threads)
    if mask[1]:
        gw, gb = grad_weight(x, gy, weight.shape, stride, pads, dilation, groups, num_threads,
                             mask[2])
    if mask[2] and gb is None:
        # The same sums as the weight gradient's pass makes on the way (bit for bit).
        gb = (np.zeros(gy.shape[1]) if gy.size == 0 else _grad_weight.grad_bias(
            gy, x.shape, weight.shape, stride, tuple(lo for lo, _ in pads), dilation, groups,
            _threads(num_threads, gy, weight.shape)))
    if mask[2]:
        gb = gb.astype(gy.dtype, copy=False)
    return gi, gw, gb


def _threads(num_threads, gy, weight_shape):
    """The thread count for a gradient of as many multiply-adds as the forward."""
    return algorithms.threads_for(num_threads, gy.size * math.prod(weight_shape[1:]))


def _phases(n, k, s, lo, d, gy_n):
    """The phases of one axis of length n (kernel k, stride s, front padding lo, dilation d,
    grad_output length gy_n): per i0 < s, (i0, count, taps) with taps None when no tap
    reaches them, else (taps in decreasing order, their dilation, front and back padding of
    grad_output, negative for a crop)."""
    g = math.gcd(d, s)
    phases = []
    for i0 in range(min(s, n)):
        count = -(-(n - i0) // s)
        taps = [t for t in range(k - 1, -1, -1) if (i0 + lo - t * d) % s == 0]
        if not taps:
            phases.append((i0, count, None))
            continue
        front = (taps[0] * d - i0 - lo) // s
        back = count + d // g * (len(taps) - 1) - gy_n - front
        phases.append((i0, count, (taps, d // g, front, back)))
    return phases


def grad_input(gy, weight, x_shape, stride, pads, dilation, groups, algorithm, num_threads):
    """The gradient with respect to an input of shape ``x_shape``: one stride-1 convolution
    of ``gy`` per phase (module docstring)."""
    gx = np.empty(x_shape, gy.dtype)
    if gx.size == 0:
        return gx
    if gy.size == 0:
        gx.fill(0)
        return gx
    num_threads = _threads(num_threads, gy, weight.shape)
    O, cpg = weight.shape[:2]
    opg = O // groups
    # swapped[g cpg + c, o] = weight[g opg + o, c]: the transposed convolution's weights,
    # unflipped, as (C opg, kernel volume) rows (copied with the taps innermost: numpy copies
    # a view whose innermost axis is a kernel axis of 1 to 3 elements slowly).
    kernel = weight.shape[2:]
    swapped = np.ascontiguousarray(weight.reshape(groups, opg, cpg, -1).transpose(0, 2, 1, 3))
    swapped = swapped.reshape(-1, math.prod(kernel))
    axes = [_phases(x_shape[2 + a], weight.shape[2 + a], stride[a], pads[a][0], dilation[a],
                    gy.shape[2 + a]) for a in range(3)]
    whole = tuple(stride) == (1, 1, 1)
    buffer = None
    for pz in axes[0]:
        for py in axes[1]:
            for px in axes[2]:
                phase = (pz, py, px)
                where = (slice(None), slice(None)) + tuple(
                    slice(p[0], None, s) for p, s in zip(phase, stride))
                if any(p[2] is None for p in phase):
                    gx[where] = 0  # no tap reaches these positions
                    continue
                taps = [p[2][0] for p in phase]
                flat = np.ravel_multi_index(np.ix_(*taps), kernel).reshape(-1)
                w = swapped.take(flat, axis=1).reshape(
                    (x_shape[1], opg) + tuple(len(t) for t in taps))
                crop = [slice(None), slice(None)]
                sub_pads = []
                for (_, _, (_, _, front, back)), n in zip(phase, gy.shape[2:]):
                    crop.append(slice(max(0, -front), n - max(0, -back)))
                    sub_pads.append((max(0, front), max(0, back)))
                shape = x_shape[:2] + tuple(p[1] for p in phase)
                if whole:
                    target = gx
                else:
                    if buffer is None:
                        buffer = np.empty(math.prod(x_shape[:2]) * math.prod(
                            max(p[1] for p in a) for a in axes), gy.dtype)
                    target = buffer[:math.prod(shape)].reshape(shape)
                convolve(gy[tuple(crop)], w, None, (1, 1, 1), tuple(sub_pads),
                         tuple(p[2][1] for p in phase), groups, algorithm, num_threads,
                         cache=UNCACHED, out=target, pad_products=False)
                if not whole:
                    gx[where] = target
    return gx


def grad_weight(x, gy, weight_shape, stride, pads, dilation, groups, num_threads,
                with_bias=False):
    """The gradient with respect to a weight of shape ``weight_shape``, and with
    ``with_bias`` the bias gradient's float64 sums (read from grad_output on the way; else,
    or for an empty grad_output, None)."""
    if x.size == 0 or gy.size == 0:
        return np.zeros(weight_shape, x.dtype), None
    num_threads = _threads(num_threads, gy, weight_shape)
    x = layout.contiguous(x, num_threads)
    gy = layout.contiguous(gy, num_threads)
    padded = any(lo or hi for lo, hi in pads)
    front = tuple(lo for lo, _ in pads)
    gw, gb, non_finite = _grad_weight.grad_weight(x, gy, weight_shape, stride, front,
                                                  dilation, groups, num_threads, padded,
                                                  with_bias)
    if non_finite:
        # PyTorch's 0 * inf in the padding: the zeros made explicit.
        gw = _grad_weight.grad_weight(zero_pad(x, pads), gy, weight_shape, stride, (0, 0, 0),
                                      dilation, groups, num_threads)[0]
    return gw, gb


def fold_padding(g, pads, mode):
    """The adjoint of padding by ``pads`` in ``mode`` (reflect, replicate, circular): each
    padded position's gradient added onto the input position it copies, in a fixed order."""
    for axis, (lo, hi) in zip(range(2, 5), pads):
        n = g.shape[axis] - lo - hi
        core = np.take(g, np.arange(lo, lo + n), axis=axis)  # a copy

        def at(i):
            return (slice(None),) * axis + (i,)

        for t in list(range(-lo, 0)) + list(range(n, n + hi)):
            core[at(_source(t, n, mode))] += g[at(t + lo)]
        g = core
    return g


def _source(t, n, mode):
    """The input position that padded position t (negative: before the input) copies."""
    if mode == "reflect":
        return -t if t < 0 else 2 * (n - 1) - t
    if mode == "replicate":
        return min(max(t, 0), n - 1)
    return t % n  # circular
