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
import itertools
import math

import numpy as np

from conv3d_cpu._core import algorithms
from conv3d_cpu._core.forward import convolve
from conv3d_cpu._core.padding import zero_pad
from conv3d_cpu._core.weight_cache import UNCACHED
from conv3d_cpu._native import grad_weight as _grad_weight
from conv3d_cpu._native import buffers, layout, openmp

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


def phase_plan(weight, x_shape, gy_shape, stride, pads, dilation, groups, bias=None):
    """How grad_input computes: the phases along each axis and the convolutions computing
    them, their weights derived from ``weight`` (and ``bias``). A caller may keep it for the
    same weights, bias, shapes and geometry (a transposed convolution module's)."""
    axes = [_phases(x_shape[2 + a], weight.shape[2 + a], stride[a], pads[a][0], dilation[a],
                    gy_shape[2 + a]) for a in range(3)]
    return axes, _sub_convolutions(weight, groups, axes, bias)


def grad_input(gy, weight, x_shape, stride, pads, dilation, groups, algorithm, num_threads,
               bias=None, plan=None, cache=UNCACHED):
    """The gradient with respect to an input of shape ``x_shape``, plus ``bias`` per channel
    when given (a transposed convolution's): stride-1 convolutions of ``gy`` computing its
    phases, interleaved into place (module docstring). ``plan``: ``phase_plan``'s for these
    arguments, kept by the caller; ``cache``: where the plan's convolutions find their
    Winograd weights (weights kept with the plan: a cache that keeps them)."""
    gx = buffers.empty(x_shape, gy.dtype)
    fill = np.zeros(x_shape[1], gy.dtype) if bias is None else bias
    if gx.size == 0:
        return gx
    if gy.size == 0:
        gx[...] = fill.reshape(-1, 1, 1, 1)
        return gx
    num_threads = _threads(num_threads, gy, weight.shape)
    axes, subs = plan or phase_plan(weight, x_shape, gy.shape, stride, pads, dilation, groups,
                                    bias)
    ones = (1, 1, 1)
    N, C, D, H, W = x_shape
    if len(subs) == 1 and len(subs[0].phases) == 1 == len(axes[0]) * len(axes[1]) * len(axes[2]):
        # stride 1 (or an input no longer than the stride): one convolution is the gradient
        sub = subs[0]
        crop, sub_pads = _windows(sub, 0, D, gy.shape[2:])
        if crop is not None:
            return convolve(gy[crop], sub.weight, bias, ones, sub_pads, sub.dilation, groups,
                            algorithm, num_threads, cache=cache, out=gx,
                            pad_products=False)
    sd = len(axes[0])
    dz = D
    if len(subs) == 1 and subs[0].weight.shape[2:] == ones:
        # One 1x1x1 convolution for all phases: a slab of gx's depth at a time, into a buffer
        # reused (cache-warm, its pages mapped once) rather than one the size of gx. (Not
        # for larger kernels, whose slabs would read overlapping rows of grad_output and
        # transform Winograd weights again, nor for several convolutions, whose calls' fixed
        # costs outweigh it.)
        threads = num_threads or openmp.default_num_threads()
        slab = min(_SLAB_BYTES_PER_THREAD * threads, _SLAB_MAX)
        dz = max(1, slab // (N * C * H * W * gy.itemsize * sd))
        dz *= sd
    slabs = [(z0, min(D, z0 + dz)) for z0 in range(0, D, dz)]
    buffer = buffers.empty(max(sum(sub.slab_size(z0, z1, sd, N, C) for sub in subs)
                              for z0, z1 in slabs), gy.dtype)
    n_phases = math.prod(len(a) for a in axes)
    for z0, z1 in slabs:
        at = [(-1, 0, 0, 0, 0)] * n_phases  # no tap reaches the phases left so
        offset = 0
        for sub in subs:
            rows = sub.rows(z0, z1, sd)
            if rows is None:
                continue
            r0, r1 = rows
            K = len(sub.phases)
            shape = (N, C * K, r1 - r0) + sub.counts[1:]
            target = buffer[offset:offset + math.prod(shape)].reshape(shape)
            crop, sub_pads = _windows(sub, r0, r1, gy.shape[2:])
            if crop is None:  # the slab reads no grad_output
                target.reshape((N, C, K, -1))[...] = fill.reshape(-1, 1, 1)
            else:
                convolve(gy[crop], sub.weight, sub.bias, ones, sub_pads, sub.dilation, groups,
                         algorithm, num_threads, cache=cache, out=target,
                         pad_products=False)
            plane = math.prod(shape[2:])
            cy, cx = shape[3:]
            for j, (p, pz, count, (hz, hy, hx)) in enumerate(sub.phases):
                if z0 // sd < min(count, -(-(z1 - pz) // sd)):
                    first = z0 // sd + hz - r0
                    at[p] = (offset + j * plane + (first * cy + hy) * cx + hx, C * K * plane,
                             K * plane, cy * cx, cx)
            offset += target.size
        layout.interleave_phases(buffer, gx[:, :, z0:z1], tuple(len(a) for a in axes), at,
                                 fill, num_threads)
    return gx


# Bytes of gx, per thread and at most in all, whose phases one pass computes before
# interleaving them (see grad_input: kernel 2 stride 2 layers on a 2-core Xeon ran fastest at
# 4-8 MiB a thread).
_SLAB_BYTES_PER_THREAD = 8 << 20
_SLAB_MAX = 64 << 20
# Phases share a convolution when their outputs, shifted into one, add at most this much.
_MERGE_WASTE = 1.5


class _Sub:
    """One stride-1 convolution of grad_output, with taps ``taps`` at ``dilation`` per axis,
    grad_output padded by ``fronts`` before its first output (negative: cropped), of extent
    ``counts``. Its output channel c K + j holds channel c of ``phases[j]`` = (p, pz, count,
    shift): gx's phase p (depth phase pz, ``count`` depths), whose output (q, r, s) is the
    convolution's (q, r, s) + shift."""

    def __init__(self, weight, bias, taps, dilation, fronts, counts, phases):
        self.weight, self.bias, self.taps, self.dilation = weight, bias, taps, dilation
        self.fronts, self.counts, self.phases = fronts, counts, phases

    def rows(self, z0, z1, sd):
        """The convolution's depths [r0, r1) that gx's depths [z0, z1) (z0 a multiple of sd)
        read, or None."""
        ranges = [(z0 // sd + hz, min(count, -(-(z1 - pz) // sd)) + hz)
                  for _, pz, count, (hz, _, _) in self.phases]
        ranges = [r for r in ranges if r[0] < r[1]]
        if not ranges:
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def slab_size(self, z0, z1, sd, N, C):
        rows = self.rows(z0, z1, sd)
        return 0 if rows is None else (N * C * len(self.phases) * (rows[1] - rows[0])
                                       * math.prod(self.counts[1:]))


def _sub_convolutions(weight, groups, axes, bias):
    """The convolutions computing the phases of ``axes``: phases with as many taps along each
    axis share one, with a channel per (input channel, phase) (all of them for a kernel 2
    stride 2 or kernel 4 stride 2 padding 1 layer), unless shifting their outputs into one
    wastes more than _MERGE_WASTE."""
    O, cpg = weight.shape[:2]
    opg = O // groups
    C = cpg * groups
    kernel = weight.shape[2:]
    # swapped[(g, c, o), tap] = weight[g opg + o, c, tap]: the transposed convolution's
    # weights, unflipped (copied with the taps innermost: numpy copies a view whose innermost
    # axis is a kernel axis of 1 to 3 elements slowly).
    swapped = np.ascontiguousarray(weight.reshape(groups, opg, cpg, -1).transpose(0, 2, 1, 3))
    swapped = swapped.reshape(groups * cpg * opg, -1)
    families = {}
    for p, phase in enumerate(itertools.product(*axes)):
        if all(a[2] is not None for a in phase):
            families.setdefault(tuple(len(a[2][0]) for a in phase), []).append((p, phase))
    subs = []
    for members in families.values():
        groups_of = [members]
        fronts = [max(ph[a][2][2] for _, ph in members) for a in range(3)]
        counts = [max(fronts[a] - ph[a][2][2] + ph[a][1] for _, ph in members)
                  for a in range(3)]
        used = sum(math.prod(ph[a][1] for a in range(3)) for _, ph in members)
        if len(members) > 1 and len(members) * math.prod(counts) > _MERGE_WASTE * used:
            groups_of = [[m] for m in members]
        for group in groups_of:
            fronts = [max(ph[a][2][2] for _, ph in group) for a in range(3)]
            counts = tuple(max(fronts[a] - ph[a][2][2] + ph[a][1] for _, ph in group)
                           for a in range(3))
            ws = []
            for _, phase in group:
                flat = np.ravel_multi_index(np.ix_(*[a[2][0] for a in phase]), kernel)
                ws.append(swapped.take(flat.reshape(-1), axis=1).reshape(
                    (C, opg) + tuple(len(a[2][0]) for a in phase)))
            w = ws[0] if len(ws) == 1 else np.stack(ws, axis=1).reshape(
                (C * len(ws),) + ws[0].shape[1:])
            b = None if bias is None else np.repeat(bias, len(group))
            phase0 = group[0][1]
            phases = [(p, ph[0][0], ph[0][1],
                       tuple(fronts[a] - ph[a][2][2] for a in range(3))) for p, ph in group]
            subs.append(_Sub(w, b, [a[2][0] for a in phase0],
                             tuple(a[2][1] for a in phase0), tuple(fronts), counts, phases))
    return subs


def _windows(sub, r0, r1, gy_spatial):
    """The crop of grad_output and its padding ((lo, hi) per axis) from which ``sub``
    computes its output depths [r0, r1) and all its heights and widths; (None, None) when
    the crop is empty."""
    crop, pads = [slice(None), slice(None)], []
    for (a0, a1), taps, d, front, n in zip(((r0, r1),) + tuple((0, c) for c in sub.counts[1:]),
                                           sub.taps, sub.dilation, sub.fronts, gy_spatial):
        lo, hi = a0 - front, a1 - 1 + (len(taps) - 1) * d - front  # grad_output rows read
        if hi < 0 or lo >= n:
            return None, None
        crop.append(slice(max(0, lo), min(n, hi + 1)))
        pads.append((max(0, -lo), max(0, hi + 1 - n)))
    return tuple(crop), tuple(pads)


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
