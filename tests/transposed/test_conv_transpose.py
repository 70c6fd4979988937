"""``conv_transpose3d``, ``conv_transpose3d_backward`` and ``ConvTranspose3d``.

Oracles:

* an independent float64 reference written here (it does not import conv3d_cpu): the
  transposed convolution as a scatter over input positions and kernel taps,
  ``out[n, g*opg + o, i*s - p + t*d] += x[n, g*cpg + c, i] * w[g*cpg + c, o, t]`` (plus the
  output_padding on the far side), and its adjoints (grad_input, grad_weight, grad_bias).
  The vectorized form (one strided slice per tap) is itself checked against literal
  element-by-element loops, and the gradients against the forward by the adjoint identities
  <conv_transpose(x, w), gy> = <x, grad_input> = <w, grad_weight>, <1, gy> = sum grad_bias;
* PyTorch (when it imports: ``torch_mod`` skips only those comparisons), oneDNN off:
  ``F.conv_transpose3d``, ``nn.ConvTranspose3d`` (forward with ``output_size``), autograd
  and ``torch.ops.aten.convolution_backward(transposed=True)``.

Tolerances are the worst-case dot-product bounds of tests/reference.py and
tests/grad_reference.py (gamma_n * sum|terms|, valid for any summation order): forward terms
x*w (n = in_channels/groups * kernel volume, + the bias), grad_input terms gy*w
(n = out_channels/groups * kernel volume), grad_weight terms x*gy (n = N * input positions),
grad_bias the gy (n = N * output positions). PyTorch's result and ours are each within one
bound of the exact value, so they are compared within twice it. Winograd mixes a tile: K = 64
times the bound's maximum (tests/accuracy/test_winograd.py).
"""
import copy
import itertools
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conv3d_cpu import ConvTranspose3d, conv_transpose3d, conv_transpose3d_backward
from grad_reference import assert_grad_close
from hardening import bits, budget
from reference import triple

DTYPES = [np.float32, np.float64]
MASKS = list(itertools.product([False, True], repeat=3))
NAMES = ("grad_input", "grad_weight", "grad_bias")
WINOGRAD_K = 64.0

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")


# ================================================================== the float64 reference

def min_spatial(spatial, k, stride, padding, dilation):
    """(in - 1) s - 2 p + d (k - 1) + 1 per axis: the output size without output_padding."""
    return tuple((n - 1) * s - 2 * p + d * (kk - 1) + 1 for n, kk, s, p, d in
                 zip(spatial, k, triple(stride), triple(padding), triple(dilation)))


def out_spatial(spatial, k, stride, padding, output_padding, dilation):
    return tuple(m + op for m, op in zip(min_spatial(spatial, k, stride, padding, dilation),
                                         triple(output_padding)))


def _full_extent(spatial, k, s, p, d, osz):
    """Length per axis of the uncropped scatter target: every position i*s + t*d, and enough
    for the cropped window [p, p + o) (an output_padding can reach past the last tap)."""
    return tuple(max((n - 1) * ss + dd * (kk - 1) + 1, pp + o)
                 for n, kk, ss, pp, dd, o in zip(spatial, k, s, p, d, osz))


def _tap_slices(tap, d, s, spatial):
    """Where tap t puts input positions 0..n-1 in the uncropped target: t*d + i*s."""
    return tuple(slice(t * dd, t * dd + ss * (n - 1) + 1, ss)
                 for t, dd, ss, n in zip(tap, d, s, spatial))


def _prepare(x, w, stride, padding, dilation):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 4
    if unbatched:
        x = x[None]
    assert x.ndim == 5 and w.ndim == 5, (x.shape, w.shape)
    assert x.shape[1] == w.shape[0], (x.shape, w.shape)
    return x, w, unbatched, triple(stride), triple(padding), triple(dilation)


def conv_transpose3d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                         dilation=1, spatial=None):
    """Float64 F.conv_transpose3d; ``spatial`` (an output_size's last 3 entries) replaces
    the output_padding when given."""
    x, w, unbatched, s, p, d = _prepare(x, w, stride, padding, dilation)
    n_batch, c_in = x.shape[:2]
    cpg, opg = c_in // groups, w.shape[1]
    assert cpg * groups == c_in
    k = w.shape[2:]
    osz = tuple(spatial) if spatial is not None else out_spatial(
        x.shape[2:], k, s, p, output_padding, d)
    assert all(o >= 1 for o in osz), osz
    full = np.zeros((n_batch, opg * groups) + _full_extent(x.shape[2:], k, s, p, d, osz))
    for g in range(groups):
        xg = x[:, g * cpg:(g + 1) * cpg]
        for tap in np.ndindex(*k):
            target = (slice(None), slice(g * opg, (g + 1) * opg)) + _tap_slices(
                tap, d, s, x.shape[2:])
            full[target] += np.einsum("ncdhw,co->nodhw", xg,
                                      w[(slice(g * cpg, (g + 1) * cpg), slice(None)) + tap])
    y = full[(Ellipsis,) + tuple(slice(pp, pp + o) for pp, o in zip(p, osz))].copy()
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[:, None, None, None]
    return y[0] if unbatched else y


def conv_transpose3d_backward_ref(gy, x, w, stride=1, padding=0, groups=1, dilation=1):
    """Float64 (grad_input, grad_weight, grad_bias) of conv_transpose3d(x, w, b, ...) for
    ``gy`` (whose spatial size fixes the output_padding): each input position i meets the
    outputs i*s - p + t*d of its taps."""
    x, w, unbatched, s, p, d = _prepare(x, w, stride, padding, dilation)
    gy = np.asarray(gy, dtype=np.float64)
    if unbatched:
        gy = gy[None]
    n_batch, c_in = x.shape[:2]
    cpg, opg = c_in // groups, w.shape[1]
    k = w.shape[2:]
    osz = gy.shape[2:]
    assert gy.shape[:2] == (n_batch, opg * groups), (gy.shape, x.shape, w.shape)
    full = np.zeros(gy.shape[:2] + _full_extent(x.shape[2:], k, s, p, d, osz))
    full[(Ellipsis,) + tuple(slice(pp, pp + o) for pp, o in zip(p, osz))] = gy
    gi = np.zeros_like(x)
    gw = np.zeros_like(w)
    for g in range(groups):
        ci, oi = slice(g * cpg, (g + 1) * cpg), slice(g * opg, (g + 1) * opg)
        for tap in np.ndindex(*k):
            patch = full[(slice(None), oi) + _tap_slices(tap, d, s, x.shape[2:])]
            gi[:, ci] += np.einsum("nodhw,co->ncdhw", patch, w[(ci, slice(None)) + tap])
            gw[(ci, slice(None)) + tap] += np.einsum("ncdhw,nodhw->co", x[:, ci], patch)
    gb = gy.sum(axis=(0, 2, 3, 4))
    return (gi[0] if unbatched else gi), gw, gb


def conv_transpose3d_loops(x, w, b, stride, padding, output_padding, groups, dilation, gy):
    """The literal definition, one element at a time (tiny shapes only): the forward and the
    gradients for ``gy``, all float64 and batched."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    gy = np.asarray(gy, np.float64)
    s, p, op, d = triple(stride), triple(padding), triple(output_padding), triple(dilation)
    n_batch, c_in = x.shape[:2]
    cpg, opg = c_in // groups, w.shape[1]
    osz = tuple((n - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1 for n, kk, ss, pp, dd, oo in
                zip(x.shape[2:], w.shape[2:], s, p, d, op))
    y = np.zeros((n_batch, opg * groups) + osz)
    gi, gw = np.zeros_like(x), np.zeros_like(w)
    for n, c in itertools.product(range(n_batch), range(c_in)):
        g = c // cpg
        for i in np.ndindex(*x.shape[2:]):
            for o in range(opg):
                for t in np.ndindex(*w.shape[2:]):
                    pos = tuple(ii * ss - pp + tt * dd for ii, ss, pp, tt, dd in
                                zip(i, s, p, t, d))
                    if not all(0 <= q < m for q, m in zip(pos, osz)):
                        continue
                    out = (n, g * opg + o) + pos
                    y[out] += x[(n, c) + i] * w[(c, o) + t]
                    gi[(n, c) + i] += gy[out] * w[(c, o) + t]
                    gw[(c, o) + t] += x[(n, c) + i] * gy[out]
    if b is not None:
        y += np.asarray(b, np.float64)[:, None, None, None]
    return y, gi, gw, gy.sum(axis=(0, 2, 3, 4))


# ======================================================================== checking helpers

def check_forward(y, x, w, b, geom, spatial=None, winograd=False, what="forward",
                  expected=None, amplification=1.0):
    """``y`` within the bound of the reference (or of ``expected``, e.g. PyTorch's)."""
    stride, padding, output_padding, groups, dilation = geom
    args = (stride, padding, output_padding, groups, dilation, spatial)
    ref = conv_transpose3d_ref(x, w, b, *args)
    bound = conv_transpose3d_ref(np.abs(np.asarray(x, np.float64)),
                                 np.abs(np.asarray(w, np.float64)),
                                 None if b is None else np.abs(np.asarray(b, np.float64)), *args)
    expected = ref if expected is None else np.asarray(expected, np.float64)
    n_terms = w.shape[0] // groups * math.prod(w.shape[2:]) + 1
    assert_grad_close(y, expected, bound, n_terms, x.dtype, what,
                      amplification=WINOGRAD_K if winograd else amplification,
                      tile_max=winograd)
    return ref


def grad_refs(gy, x, w, geom):
    """(expected, bounds, term counts) for the three gradients."""
    stride, padding, _, groups, dilation = geom
    args = (stride, padding, groups, dilation)
    expected = conv_transpose3d_backward_ref(gy, x, w, *args)
    bounds = conv_transpose3d_backward_ref(*(np.abs(np.asarray(a, np.float64))
                                             for a in (gy, x, w)), *args)
    x5 = x if x.ndim == 5 else x[None]
    gy5 = gy if gy.ndim == 5 else gy[None]
    counts = (w.shape[1] * math.prod(w.shape[2:]), x5.shape[0] * math.prod(x5.shape[2:]),
              gy5.shape[0] * math.prod(gy5.shape[2:]))
    return expected, bounds, counts


def check_grads(res, gy, x, w, geom, mask=(True, True, True), winograd=False, theirs=None,
                what=""):
    """(gi, gw, gb) within the bounds of the reference, or of ``theirs`` (PyTorch's) within
    twice them; None exactly where ``mask`` is False."""
    assert isinstance(res, tuple) and len(res) == 3, res
    expected, bounds, counts = grad_refs(gy, x, w, geom)
    shapes = (x.shape, w.shape, (w.shape[1] * geom[3],))
    for i, name in enumerate(NAMES):
        if not mask[i]:
            assert res[i] is None, f"{what}{name} should be None (masked)"
            continue
        assert isinstance(res[i], np.ndarray) and res[i].shape == shapes[i], (name, res[i])
        exp = expected[i] if theirs is None else np.asarray(theirs[i], np.float64)
        wino = winograd and i == 0
        assert_grad_close(res[i], exp, bounds[i], counts[i], x.dtype, f"{what}{name}",
                          amplification=WINOGRAD_K if wino else (1.0 if theirs is None else 2.0),
                          tile_max=wino)
    return expected


def torch_mod():
    return pytest.importorskip("torch")


def T(a):
    torch = torch_mod()
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def torch_forward(x, w, b, geom):
    torch = torch_mod()
    stride, padding, output_padding, groups, dilation = geom
    with torch.backends.mkldnn.flags(enabled=False):
        return torch.nn.functional.conv_transpose3d(
            T(x), T(w), T(b), triple(stride), triple(padding), triple(output_padding), groups,
            triple(dilation)).numpy()


def torch_autograd(gy, x, w, geom, with_bias=True):
    """PyTorch's (grad_input, grad_weight, grad_bias) by autograd of F.conv_transpose3d."""
    torch = torch_mod()
    stride, padding, output_padding, groups, dilation = geom
    xt = T(x).clone().requires_grad_(True)
    wt = T(w).clone().requires_grad_(True)
    bt = torch.zeros(w.shape[1] * groups, dtype=wt.dtype, requires_grad=True)
    with torch.backends.mkldnn.flags(enabled=False):
        y = torch.nn.functional.conv_transpose3d(
            xt, wt, bt if with_bias else None, triple(stride), triple(padding),
            triple(output_padding), groups, triple(dilation))
        assert tuple(y.shape) == gy.shape, (tuple(y.shape), gy.shape)
        y.backward(T(gy))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy() if with_bias else None


def views(a, kind):
    """The values of ``a`` in another memory layout (a view, not C-contiguous)."""
    if kind == "C":
        return a
    if kind == "channels_last":  # (N, D, H, W, C) storage seen as (N, C, D, H, W)
        lead = a.ndim - 4
        perm = tuple(range(lead)) + tuple(range(lead + 1, a.ndim)) + (lead,)
        return np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))
    if kind == "transposed":     # H and W swapped in memory
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if kind == "reversed":       # negative strides
        return np.ascontiguousarray(a[..., ::-1, :, ::-1])[..., ::-1, :, ::-1]
    if kind == "sliced":         # every other element of a bigger array
        big = np.full(a.shape[:-3] + tuple(2 * n for n in a.shape[-3:]), np.nan, a.dtype)
        big[..., 1::2, ::2, 1::2] = a
        return big[..., 1::2, ::2, 1::2]
    raise ValueError(kind)


# ========================================================================= configurations

# (x shape, w shape, stride, padding, output_padding, groups, dilation): F's order after bias
CONFIGS = [
    ((2, 4, 3, 4, 5), (4, 3, 2, 2, 2), 2, 0, 0, 1, 1),                  # k2 s2 (upsampler)
    ((2, 3, 4, 3, 5), (3, 4, 3, 3, 3), 2, 1, 1, 1, 1),                  # k3 s2 p1 op1
    ((1, 4, 3, 4, 3), (4, 2, 4, 4, 4), 2, 1, 0, 1, 1),                  # k4 s2 p1
    ((2, 3, 5, 6, 4), (3, 5, 3, 3, 3), 1, 1, 0, 1, 1),                  # k3 s1 p1
    ((1, 2, 4, 3, 4), (2, 3, 3, 3, 3), 1, 0, 0, 1, 1),                  # k3 s1 p0 (grows)
    ((1, 2, 3, 4, 2), (2, 2, 2, 3, 1), (3, 2, 1), (1, 0, 0), (2, 1, 0), 1, 1),
    ((1, 2, 4, 4, 4), (2, 3, 3, 3, 3), 1, 1, 1, 1, 2),                  # op < dilation
    ((2, 4, 3, 4, 5), (4, 1, 3, 2, 3), (2, 1, 3), (1, 0, 2), (1, 1, 2), 2, (1, 2, 1)),
    ((2, 4, 4, 3, 3), (4, 3, 3, 3, 3), 2, 1, 1, 2, 1),                  # groups 2
    ((2, 4, 3, 4, 5), (4, 1, 3, 3, 3), 1, 1, 0, 4, 1),                  # depthwise
    ((1, 3, 4, 3, 4), (3, 2, 3, 3, 3), 2, 1, 1, 3, 1),                  # depthwise x2, s2
    ((1, 6, 3, 3, 3), (6, 2, 2, 2, 2), 2, 0, 1, 3, 2),                  # groups 3, dilated
    ((1, 3, 3, 3, 3), (3, 2, 1, 1, 1), 2, 0, 1, 1, 1),                  # 1x1x1 s2 op1
    ((1, 2, 3, 3, 3), (2, 2, 2, 2, 2), 3, 0, 2, 1, 1),                  # gaps: bias only
    ((1, 2, 4, 4, 4), (2, 2, 3, 3, 3), 2, 2, 1, 1, 1),                  # large crop
    ((1, 2, 5, 4, 3), (2, 3, 3, 2, 2), (1, 3, 2), (2, 1, 0), (0, 2, 1), 1, (2, 1, 2)),
    ((3, 4, 3, 5), (3, 2, 3, 3, 3), 2, 1, 1, 1, 1),                     # unbatched
    ((4, 3, 3, 3), (4, 1, 2, 2, 2), 2, 0, 0, 4, 1),                     # unbatched depthwise
    ((0, 3, 3, 3, 3), (3, 2, 3, 3, 3), 2, 1, 1, 1, 1),                  # N = 0
    ((3, 2, 2, 3, 2), (2, 4, 3, 3, 3), 1, 0, 0, 1, 1),                  # N = 3
    ((1, 1, 1, 1, 1), (1, 1, 1, 1, 1), 1, 0, 0, 1, 1),
    ((1, 16, 3, 3, 3), (16, 8, 3, 3, 3), 2, 1, 1, 1, 1),                # fan_in 432
    ((1, 3, 3, 5, 5), (3, 4, 1, 3, 3), 1, (0, 1, 1), 0, 1, 1),          # (1, 3, 3)
    ((1, 2, 3, 3, 3), (2, 2, 5, 5, 5), 1, 2, 0, 1, 1),                  # 5x5x5
    ((1, 2, 6, 3, 3), (2, 3, 3, 1, 1), 1, (1, 0, 0), 0, 1, 1),          # (3, 1, 1)
]
CONFIG_IDS = [f"t{i}" for i in range(len(CONFIGS))]


def is_winograd(i):
    _, wshape, stride, _, _, _, dilation = CONFIGS[i]
    return wshape[2:] in {(3, 3, 3), (1, 3, 3), (3, 1, 1), (5, 5, 5)} and \
        triple(stride) == (1, 1, 1) and triple(dilation) == (1, 1, 1)


WINOGRAD_CONFIGS = [i for i in range(len(CONFIGS)) if is_winograd(i)]


def make(xshape, wshape, geom, dtype, seed, bias=True, spatial=None):
    """x, w (PyTorch's init scale), b, gy of the output's shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xshape).astype(dtype)
    bound = 1 / math.sqrt(math.prod(wshape[1:]))
    w = rng.uniform(-bound, bound, wshape).astype(dtype)
    b = rng.uniform(-bound, bound, wshape[1] * geom[3]).astype(dtype) if bias else None
    stride, padding, output_padding, _, dilation = geom
    osz = spatial or out_spatial(xshape[-3:], wshape[2:], stride, padding, output_padding,
                                 dilation)
    gy = rng.standard_normal(xshape[:-4] + (wshape[1] * geom[3],) + tuple(osz)).astype(dtype)
    return x, w, b, gy


def config_data(i, dtype, bias=True):
    xshape, wshape, *geom = CONFIGS[i]
    geom = tuple(geom)
    x, w, b, gy = make(xshape, wshape, geom, dtype, seed=i, bias=bias)
    return x, w, b, gy, geom


# ================================================================ the reference, checked

# tiny layers for the literal loops: (x shape, w shape, stride, padding, op, groups, dilation)
TINY = [
    ((1, 2, 2, 3, 2), (2, 2, 2, 3, 2), 2, 0, 1, 1, 1),
    ((2, 2, 3, 2, 2), (2, 1, 2, 2, 1), (1, 3, 2), (1, 0, 0), (0, 2, 1), 2, (2, 1, 1)),
    ((1, 3, 2, 2, 3), (3, 2, 3, 1, 2), (2, 1, 1), (1, 0, 1), (1, 0, 0), 3, (1, 1, 2)),
    ((1, 1, 2, 2, 2), (1, 2, 1, 1, 1), 3, 0, 2, 1, 1),                # gaps between inputs
    ((1, 2, 3, 3, 2), (2, 2, 2, 2, 2), 1, 1, 1, 1, 2),                # crop > extent
]


@pytest.mark.parametrize("case", range(len(TINY)))
def test_reference_matches_literal_loops(case):
    xshape, wshape, *geom = TINY[case]
    geom = tuple(geom)
    x, w, b, gy = make(xshape, wshape, geom, np.float64, seed=100 + case)
    y, gi, gw, gb = conv_transpose3d_loops(x, w, b, *geom, gy)
    assert y.shape == gy.shape
    np.testing.assert_allclose(conv_transpose3d_ref(x, w, b, *geom), y, rtol=1e-13,
                               atol=1e-13)
    stride, padding, _, groups, dilation = geom
    for r, e in zip(conv_transpose3d_backward_ref(gy, x, w, stride, padding, groups, dilation),
                    (gi, gw, gb)):
        np.testing.assert_allclose(r, e, rtol=1e-13, atol=1e-13)
    # an unbatched input is the batch's first sample
    np.testing.assert_allclose(conv_transpose3d_ref(x[0], w, b, *geom), y[0], rtol=1e-13,
                               atol=1e-13)


def inner(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def check_adjoint(y, gi, gw, gb, x, w, gy, bound_y, what):
    """<y, gy> = <x, gi> = <w, gw> for a bias-free y, and sum(gb) = sum(gy): the gradients are
    the forward's adjoints (within a float64 rounding margin, far below any indexing error)."""
    scale = inner(bound_y, np.abs(gy)) + 1e-300
    lhs = inner(y, gy)
    for name, value in (("x", inner(x, gi)), ("w", inner(w, gw))):
        assert abs(lhs - value) <= 1e-11 * scale, (what, name, lhs, value, scale)
    assert abs(float(np.sum(gb)) - float(np.sum(gy, dtype=np.float64))) <= \
        1e-11 * (float(np.sum(np.abs(gy))) + 1e-300), what


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=CONFIG_IDS)
def test_adjoint_identities(i):
    """The reference's gradients and ours (float64) are the adjoints of the forward."""
    x, w, _, gy, geom = config_data(i, np.float64)
    stride, padding, output_padding, groups, dilation = geom
    y = conv_transpose3d_ref(x, w, None, *geom)
    bound = conv_transpose3d_ref(np.abs(x), np.abs(w), None, *geom)
    refs = conv_transpose3d_backward_ref(gy, x, w, stride, padding, groups, dilation)
    check_adjoint(y, *refs, x, w, gy, bound, "reference")
    ours_y = conv_transpose3d(x, w, None, *geom)
    ours = conv_transpose3d_backward(gy, x, w, *geom)
    check_adjoint(ours_y, *ours, x, w, gy, bound, "conv3d_cpu")


# ================================================================== functional: forward

@pytest.mark.parametrize("algorithm", ["auto", "direct"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=CONFIG_IDS)
def test_forward_matches_reference(i, dtype, algorithm):
    x, w, b, _, geom = config_data(i, dtype, bias=i % 3 != 2)
    x0, w0 = x.copy(), w.copy()
    y = conv_transpose3d(x, w, b, *geom, algorithm=algorithm)
    assert isinstance(y, np.ndarray) and y.dtype == dtype and y.flags.c_contiguous
    expected_shape = x.shape[:-4] + (w.shape[1] * geom[3],) + out_spatial(
        x.shape[-3:], w.shape[2:], geom[0], geom[1], geom[2], geom[4])
    assert y.shape == expected_shape
    check_forward(y, x, w, b, geom)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=CONFIG_IDS)
def test_forward_matches_torch(i, dtype):
    torch_mod()
    x, w, b, _, geom = config_data(i, dtype, bias=i % 3 != 2)
    theirs = torch_forward(x, w, b, geom)
    ours = conv_transpose3d(x, w, b, *geom)
    assert ours.shape == theirs.shape
    check_forward(ours, x, w, b, geom, expected=theirs, amplification=2.0, what="vs torch")


@pytest.mark.parametrize("algorithm", ["winograd", "winograd_f2", "winograd_f4"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", WINOGRAD_CONFIGS)
def test_forward_winograd(i, dtype, algorithm):
    x, w, b, _, geom = config_data(i, dtype)
    if w.shape[2:] == (5, 5, 5) and algorithm == "winograd_f4":
        with pytest.raises(ValueError, match="algorithm"):
            conv_transpose3d(x, w, b, *geom, algorithm=algorithm)
        return
    y = conv_transpose3d(x, w, b, *geom, algorithm=algorithm)
    check_forward(y, x, w, b, geom, winograd=True)


def test_forward_positional_and_keyword_order():
    """groups comes before dilation (F.conv_transpose3d's order); lists and 1-tuples work."""
    x, w, b, _, geom = config_data(7, np.float64)
    stride, padding, output_padding, groups, dilation = geom
    a = conv_transpose3d(x, w, b, stride, padding, output_padding, groups, dilation)
    kw = conv_transpose3d(input=x, weight=w, bias=b, stride=stride, padding=padding,
                          output_padding=output_padding, groups=groups, dilation=dilation,
                          algorithm="direct", num_threads=2)
    assert bits(a) == bits(kw)
    check_forward(a, x, w, b, geom)
    y = conv_transpose3d(x[:, :, :, :3, :3], w[:, :, :2, :2, :2], b, [2], (1,), [1], groups)
    check_forward(y, x[:, :, :, :3, :3], w[:, :, :2, :2, :2], b, (2, 1, 1, groups, 1))


def test_unbatched_is_the_first_sample_bitwise():
    x, w, b, gy, geom = config_data(1, np.float32)
    y = conv_transpose3d(x, w, b, *geom)
    y0 = conv_transpose3d(x[0], w, b, *geom)
    assert bits(y0) == bits(y[0])
    # and a batch's samples are computed alone (no dependence on the batch)
    assert bits(conv_transpose3d(x[1:], w, b, *geom)) == bits(y[1:])
    full = conv_transpose3d_backward(gy, x, w, *geom)
    one = conv_transpose3d_backward(gy[0], x[0], w, *geom)
    assert bits(one[0]) == bits(full[0][0])
    check_grads(one, gy[0], x[0], w, geom)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    x, w, b, gy, geom = config_data(18, dtype)
    assert x.shape[0] == 0
    y = conv_transpose3d(x, w, b, *geom)
    assert y.shape == (0, 2, 6, 6, 6) and y.dtype == dtype
    gi, gw, gb = conv_transpose3d_backward(gy, x, w, *geom)
    assert gi.shape == x.shape and gi.dtype == dtype
    assert gw.shape == w.shape and not gw.any() and gb.shape == (2,) and not gb.any()
    m = ConvTranspose3d(3, 2, 3, stride=2, padding=1, output_padding=1, dtype=dtype, rng=0)
    assert m(x).shape == (0, 2, 6, 6, 6)
    assert m(x, output_size=(5, 6, 5)).shape == (0, 2, 5, 6, 5)


@pytest.mark.parametrize("kind", ["channels_last", "transposed", "reversed", "sliced"])
@pytest.mark.parametrize("which", ["x", "w", "gy", "all"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_operands(which, kind, dtype):
    x, w, b, gy, geom = config_data(15, dtype)
    xs = views(x, kind) if which in ("x", "all") else x
    ws = views(w, kind) if which in ("w", "all") else w
    gys = views(gy, kind) if which in ("gy", "all") else gy
    bs = np.ascontiguousarray(b[::-1])[::-1] if which == "all" else b
    assert not (xs.flags.c_contiguous and ws.flags.c_contiguous and gys.flags.c_contiguous)
    y = conv_transpose3d(xs, ws, bs, *geom)
    check_forward(y, x, w, b, geom)
    assert bits(y) == bits(conv_transpose3d(x, w, b, *geom))
    res = conv_transpose3d_backward(gys, xs, ws, *geom)
    check_grads(res, gy, x, w, geom)
    for r, c in zip(res, conv_transpose3d_backward(gy, x, w, *geom)):
        assert bits(r) == bits(c)


def test_noncontiguous_unbatched_and_module():
    x, w, b, gy, geom = config_data(16, np.float32)
    y = conv_transpose3d(views(x, "channels_last"), views(w, "reversed"), b, *geom)
    check_forward(y, x, w, b, geom)
    res = conv_transpose3d_backward(views(gy, "sliced"), views(x, "reversed"), w, *geom)
    check_grads(res, gy, x, w, geom)
    m = ConvTranspose3d(3, 2, 3, stride=2, padding=1, output_padding=1, rng=0)
    m.load_state_dict({"weight": w, "bias": b})
    assert bits(m(views(x, "channels_last"))) == bits(conv_transpose3d(x, w, b, *geom))
    for r, c in zip(m.backward(views(x, "sliced"), views(gy, "channels_last")),
                    conv_transpose3d_backward(gy, x, w, *geom)):
        assert bits(r) == bits(c)


# ================================================================= functional: backward

@pytest.mark.parametrize("algorithm", ["auto", "direct"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=CONFIG_IDS)
def test_backward_matches_reference(i, dtype, algorithm):
    x, w, _, gy, geom = config_data(i, dtype)
    operands = [a.copy() for a in (gy, x, w)]
    res = conv_transpose3d_backward(gy, x, w, *geom, algorithm=algorithm)
    for r in res:
        assert r.dtype == dtype
    check_grads(res, gy, x, w, geom)
    for a, a0 in zip((gy, x, w), operands):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("TF"[not b] for b in m))
@pytest.mark.parametrize("i", [1, 7, 9, 16])
def test_backward_output_mask(i, mask):
    x, w, _, gy, geom = config_data(i, np.float32)
    res = conv_transpose3d_backward(gy, x, w, *geom, output_mask=mask)
    check_grads(res, gy, x, w, geom, mask=mask)
    # numpy bools are a mask too; a masked call gives the bits of the full one
    full = conv_transpose3d_backward(gy, x, w, *geom,
                                     output_mask=[np.bool_(True)] * 3)
    for r, f in zip(res, full):
        assert r is None or bits(r) == bits(f)


@pytest.mark.parametrize("i", [i for i in range(len(CONFIGS)) if i % 2 == 0 or i in (7, 9)],
                         ids=lambda i: CONFIG_IDS[i])
def test_backward_matches_torch_autograd_float64_every_mask(i):
    torch = torch_mod()
    x, w, _, gy, geom = config_data(i, np.float64)
    theirs = torch_autograd(gy, x, w, geom)
    for mask in MASKS:
        ours = conv_transpose3d_backward(gy, x, w, *geom, output_mask=mask)
        check_grads(ours, gy, x, w, geom, mask=mask, theirs=theirs, what=f"{mask} vs torch ")
    if x.ndim == 5:  # torch's convolution_backward with transposed=True and each mask
        stride, padding, output_padding, groups, dilation = geom
        for mask in MASKS:
            with torch.backends.mkldnn.flags(enabled=False):
                t = torch.ops.aten.convolution_backward(
                    T(gy), T(x), T(w), [w.shape[1] * groups], list(triple(stride)),
                    list(triple(padding)), list(triple(dilation)), True,
                    list(triple(output_padding)), groups, list(mask))
            t = tuple(None if a is None else a.numpy() for a in t)
            assert all((a is None) == (not k) for a, k in zip(t, mask)), (mask, t)
            ours = conv_transpose3d_backward(gy, x, w, *geom, output_mask=mask)
            check_grads(ours, gy, x, w, geom, mask=mask, theirs=t,
                        what=f"{mask} convolution_backward ")


@pytest.mark.parametrize("i", [0, 1, 2, 3, 8, 10, 15, 21], ids=lambda i: CONFIG_IDS[i])
def test_backward_matches_torch_float32(i):
    torch_mod()
    x, w, _, gy, geom = config_data(i, np.float32)
    theirs = torch_autograd(gy, x, w, geom)
    check_grads(conv_transpose3d_backward(gy, x, w, *geom), gy, x, w, geom, theirs=theirs,
                what="float32 vs torch ")


@pytest.mark.parametrize("algorithm", ["winograd", "winograd_f2", "winograd_f4"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", WINOGRAD_CONFIGS)
def test_backward_winograd(i, dtype, algorithm):
    x, w, _, gy, geom = config_data(i, dtype)
    if w.shape[2:] == (5, 5, 5) and algorithm == "winograd_f4":
        with pytest.raises(ValueError, match="algorithm"):
            conv_transpose3d_backward(gy, x, w, *geom, algorithm=algorithm)
        return
    res = conv_transpose3d_backward(gy, x, w, *geom, algorithm=algorithm)
    check_grads(res, gy, x, w, geom, winograd=True)


# ==================================================================== output_size

# (module args, kwargs, input shape): layers with a stride > 1 on some axis
OUTPUT_SIZE_CASES = [
    ((3, 4, 3), dict(stride=2, padding=1), (2, 3, 3, 4, 2)),
    ((2, 4, (2, 3, 1)), dict(stride=(3, 2, 2), padding=(0, 1, 0), groups=2), (1, 2, 2, 3, 4)),
    ((2, 3, 3), dict(stride=(1, 3, 2), dilation=(2, 1, 2), output_padding=(1, 0, 1)),
     (1, 2, 3, 2, 3)),
    ((4, 4, 4), dict(stride=2, padding=1, groups=4, bias=False), (4, 3, 2, 3)),  # unbatched
]


def output_sizes(case):
    """Every valid output spatial size: [min, min + stride - 1] per axis."""
    args, kwargs, xshape = case
    low = min_spatial(xshape[-3:], triple(args[2]), kwargs.get("stride", 1),
                      kwargs.get("padding", 0), kwargs.get("dilation", 1))
    s = triple(kwargs.get("stride", 1))
    return list(itertools.product(*(range(m, m + ss) for m, ss in zip(low, s))))


def output_size_module(c, dtype):
    args, kwargs, xshape = OUTPUT_SIZE_CASES[c]
    m = ConvTranspose3d(*args, dtype=dtype, rng=c, **kwargs)
    x = np.random.default_rng(c).standard_normal(xshape).astype(dtype)
    geom = (m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    return m, x, geom


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", range(len(OUTPUT_SIZE_CASES)))
def test_output_size_forward_and_backward(c, dtype):
    m, x, geom = output_size_module(c, dtype)
    rng = np.random.default_rng(10 + c)
    lead = x.shape[:-4] + (m.out_channels,)
    sizes = output_sizes(OUTPUT_SIZE_CASES[c])
    assert len(sizes) > 1
    for j, size in enumerate(sizes):
        forms = [size, list(size), lead + size]  # 3 entries, or the input's rank
        y = m(x, output_size=forms[j % 3])
        assert y.shape == lead + size
        check_forward(y, x, m.weight, m.bias, geom, spatial=size, what=f"{size}")
        if j % 3 == 0:  # every form gives the same bits
            for f in forms[1:]:
                assert bits(m.forward(x, f)) == bits(y)
        gy = rng.standard_normal(y.shape).astype(dtype)
        res = m.backward(x, gy)
        has_bias = m.bias is not None
        check_grads(res, gy, x, m.weight, geom, mask=(True, True, has_bias), what=f"{size} ")
        # the functional backward takes the same grad_output (any valid size)
        for r, f in zip(res, conv_transpose3d_backward(gy, x, m.weight, *geom)):
            assert r is None or bits(r) == bits(f)
    usual = m(x).shape[-3:]
    if usual in sizes:  # the size of output_padding, asked for, gives the default's bits
        assert bits(m(x)) == bits(m(x, output_size=usual))
    else:  # an output_padding >= stride (< dilation) is beyond output_size's range, as torch
        with pytest.raises(ValueError, match="requested an output size of"):
            m(x, output_size=usual)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", range(len(OUTPUT_SIZE_CASES)))
def test_output_size_matches_torch(c, dtype):
    torch = torch_mod()
    m, x, geom = output_size_module(c, dtype)
    args, kwargs, _ = OUTPUT_SIZE_CASES[c]
    tm = torch.nn.ConvTranspose3d(*args, dtype=torch.float32 if dtype == np.float32
                                  else torch.float64, **kwargs)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    rng = np.random.default_rng(20 + c)
    lead = x.shape[:-4] + (m.out_channels,)
    for j, size in enumerate(output_sizes(OUTPUT_SIZE_CASES[c])):
        size_arg = list(size) if j % 2 else list(lead + size)
        xt = T(x).clone().requires_grad_(True)
        with torch.backends.mkldnn.flags(enabled=False):
            yt = tm(xt, output_size=size_arg)
            gy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
            yt.backward(T(gy))
        y = m(x, output_size=size_arg)
        check_forward(y, x, m.weight, m.bias, geom, spatial=size,
                      expected=yt.detach().numpy(), amplification=2.0, what=f"{size} vs torch")
        theirs = (xt.grad.numpy(), tm.weight.grad.numpy(),
                  None if tm.bias is None else tm.bias.grad.numpy())
        tm.zero_grad()
        has_bias = m.bias is not None
        check_grads(m.backward(x, gy), gy, x, m.weight, geom, mask=(True, True, has_bias),
                    theirs=theirs, what=f"{size} vs torch ")
    usual = tuple(m(x).shape[-3:])
    if usual not in output_sizes(OUTPUT_SIZE_CASES[c]):  # both refuse it
        with pytest.raises(ValueError, match="requested an output size of"):
            tm(T(x), output_size=list(usual))


# ============================================================================ determinism

DET_LAYERS = [
    # (x shape, w shape, stride, padding, output_padding, groups, dilation)
    ((2, 8, 6, 7, 8), (8, 8, 3, 3, 3), 2, 1, 1, 1, 1),
    ((2, 8, 6, 6, 7), (8, 8, 2, 2, 2), 2, 0, 0, 1, 1),
    ((2, 8, 6, 6, 6), (8, 8, 3, 3, 3), 1, 1, 0, 1, 1),
    ((2, 8, 6, 5, 7), (8, 2, 3, 3, 3), (2, 1, 3), (1, 0, 1), (1, 0, 2), 8, (1, 2, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", range(len(DET_LAYERS)))
def test_bitwise_deterministic_across_threads(layer, dtype):
    xshape, wshape, *geom = DET_LAYERS[layer]
    geom = tuple(geom)
    x, w, b, gy = make(xshape, wshape, geom, dtype, seed=layer)
    algorithms = ["auto", "direct"] + (["winograd"] if layer == 2 else [])
    for algorithm in algorithms:
        y1 = conv_transpose3d(x, w, b, *geom, algorithm=algorithm, num_threads=1)
        g1 = conv_transpose3d_backward(gy, x, w, *geom, algorithm=algorithm, num_threads=1)
        if algorithm == "direct":
            check_forward(y1, x, w, b, geom)
            check_grads(g1, gy, x, w, geom)
        for t in (2, 3, 4, 5):
            assert bits(conv_transpose3d(x, w, b, *geom, algorithm=algorithm,
                                         num_threads=t)) == bits(y1), (algorithm, t)
            g = conv_transpose3d_backward(gy, x, w, *geom, algorithm=algorithm, num_threads=t)
            for name, a, c in zip(NAMES, g, g1):
                assert bits(a) == bits(c), f"{name} ({algorithm}) differs at {t} threads"
    # the module (the OpenMP default thread count) gives the functional's bits
    m = ConvTranspose3d(xshape[1], wshape[1] * geom[3], wshape[2:], *geom[:3], groups=geom[3],
                        dilation=geom[4], dtype=dtype, rng=0)
    m.weight, m.bias = w, b
    assert bits(m(x)) == bits(conv_transpose3d(x, w, b, *geom, num_threads=1))
    for a, c in zip(m.backward(x, gy), conv_transpose3d_backward(gy, x, w, *geom,
                                                                 num_threads=1)):
        assert bits(a) == bits(c)


# ============================================================================ hypothesis

@st.composite
def geometries(draw):
    groups = draw(st.integers(1, 2))
    cpg, opg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(3))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(3))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(3))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = []
    for kk, s, p, d, op in zip(k, stride, padding, dilation, output_padding):
        # the smallest input whose output is not empty
        need = 1 + max(0, -(-(2 * p - d * (kk - 1) - op) // s))
        size.append(draw(st.integers(need, need + 3)))
    n = draw(st.sampled_from([None, 0, 1, 2]))
    xshape = ((n,) if n is not None else ()) + (cpg * groups,) + tuple(size)
    # grad_output of any size an output_size could give (extra < stride), or the usual one
    low = min_spatial(size, k, stride, padding, dilation)
    spatial = draw(st.one_of(st.none(), st.tuples(
        *(st.integers(m, m + s - 1) for m, s in zip(low, stride)))))
    if spatial is not None and any(o < 1 for o in spatial):
        spatial = None
    return dict(xshape=xshape, wshape=(cpg * groups, opg) + k,
                geom=(stride, padding, output_padding, groups, dilation), spatial=spatial,
                dtype=draw(st.sampled_from(DTYPES)), mask=draw(st.sampled_from(MASKS)),
                bias=draw(st.booleans()), algorithm=draw(st.sampled_from(["auto", "direct"])),
                layout=draw(st.sampled_from(["C", "channels_last", "reversed", "sliced"])),
                seed=draw(st.integers(0, 2**16)))


@budget(40)
@given(geometries())
def test_hypothesis_matches_reference(case):
    geom = case["geom"]
    x, w, b, gy = make(case["xshape"], case["wshape"], geom, case["dtype"], case["seed"],
                       bias=case["bias"], spatial=case["spatial"])
    lay = case["layout"]
    y = conv_transpose3d(views(x, lay), w, b, *geom, algorithm=case["algorithm"])
    check_forward(y, x, w, b, geom)
    res = conv_transpose3d_backward(views(gy, lay), views(x, lay), w, *geom,
                                    output_mask=case["mask"], algorithm=case["algorithm"])
    check_grads(res, gy, x, w, geom, mask=case["mask"])


# =================================================================================== module

def fan_in_bound(m):
    return 1.0 / math.sqrt(m.weight.shape[1] * math.prod(m.kernel_size))


# (args, kwargs, input shape)
MODULE_CASES = [
    ((4, 6, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 3, 4, 3)),
    ((4, 6, 2), dict(stride=2), (1, 4, 3, 3, 4)),
    ((4, 4, 4), dict(stride=2, padding=1, groups=2, bias=False), (1, 4, 3, 3, 3)),
    ((3, 6, (3, 2, 3)), dict(stride=(1, 2, 3), padding=(1, 0, 2), output_padding=(1, 1, 2),
                             groups=3, dilation=(2, 1, 1)), (2, 3, 3, 4, 3)),
    ((4, 4, 3), dict(groups=4, padding=1), (4, 5, 4, 3)),                        # unbatched
    ((2, 3, 3), dict(dilation=2, output_padding=1, padding=2), (1, 2, 4, 4, 4)),
    ((5, 2, 3), dict(padding=1, algorithm="winograd"), (1, 5, 4, 5, 6)),
]


def module_data(c, dtype):
    args, kwargs, xshape = MODULE_CASES[c]
    m = ConvTranspose3d(*args, dtype=dtype, rng=c, **kwargs)
    rng = np.random.default_rng(40 + c)
    x = rng.standard_normal(xshape).astype(dtype)
    geom = (m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    gy = rng.standard_normal(m(x).shape).astype(dtype)
    return m, x, gy, geom


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", range(len(MODULE_CASES)))
def test_module_matches_reference(c, dtype):
    m, x, gy, geom = module_data(c, dtype)
    winograd = m.algorithm == "winograd"
    y = m(x)
    assert y.dtype == dtype and y.shape == gy.shape
    check_forward(y, x, m.weight, m.bias, geom, winograd=winograd)
    assert bits(m.forward(x)) == bits(y)
    functional = conv_transpose3d(x, m.weight, m.bias, *geom, algorithm=m.algorithm)
    if winograd:
        # the function prices the weight transform that the module caches: its tile may differ
        check_forward(functional, x, m.weight, m.bias, geom, winograd=True)
    else:
        assert bits(functional) == bits(y)
    has_bias = m.bias is not None
    for mask in MASKS:
        res = m.backward(x, gy, output_mask=mask)
        check_grads(res, gy, x, m.weight, geom, mask=(mask[0], mask[1], mask[2] and has_bias),
                    winograd=winograd)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", range(len(MODULE_CASES)))
def test_module_matches_torch(c, dtype):
    """PyTorch's module with our weights: the same forward and autograd gradients."""
    torch = torch_mod()
    m, x, gy, geom = module_data(c, dtype)
    args, kwargs, _ = MODULE_CASES[c]
    kwargs = {k: v for k, v in kwargs.items() if k != "algorithm"}
    tm = torch.nn.ConvTranspose3d(*args, dtype=torch.float32 if dtype == np.float32
                                  else torch.float64, **kwargs)
    assert tuple(tm.weight.shape) == m.weight.shape
    with torch.no_grad():
        tm.weight.copy_(T(m.weight))
        if tm.bias is not None:
            tm.bias.copy_(T(m.bias))
    xt = T(x).clone().requires_grad_(True)
    with torch.backends.mkldnn.flags(enabled=False):
        yt = tm(xt)
        yt.backward(T(gy))
    winograd = m.algorithm == "winograd"
    check_forward(m(x), x, m.weight, m.bias, geom, expected=yt.detach().numpy(),
                  amplification=2.0, winograd=winograd, what="vs torch")
    theirs = (xt.grad.numpy(), tm.weight.grad.numpy(),
              None if tm.bias is None else tm.bias.grad.numpy())
    check_grads(m.backward(x, gy), gy, x, m.weight, geom,
                mask=(True, True, tm.bias is not None), theirs=theirs, winograd=winograd,
                what="vs torch ")


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_from_torch_module_gives_its_output(dtype):
    torch = torch_mod()
    torch.manual_seed(0)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    for args, kwargs, xshape in MODULE_CASES[:6]:
        tm = torch.nn.ConvTranspose3d(*args, dtype=tdtype, **kwargs)
        m = ConvTranspose3d(*args, dtype=dtype, rng=1, **kwargs)
        m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
        np.testing.assert_array_equal(m.weight, tm.weight.detach().numpy())
        assert set(m.state_dict()) == set(tm.state_dict())
        x = np.random.default_rng(1).standard_normal(xshape).astype(dtype)
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
            theirs = tm(T(x)).numpy()
        geom = (m.stride, m.padding, m.output_padding, m.groups, m.dilation)
        check_forward(m(x), x, m.weight, m.bias, geom, expected=theirs, amplification=2.0,
                      what=f"{args} {kwargs}")


def test_state_dict_round_trip_and_keys():
    m = ConvTranspose3d(4, 6, 3, stride=2, groups=2, rng=0)
    sd = m.state_dict()
    assert set(sd) == {"weight", "bias"}
    assert sd["weight"].shape == (4, 3, 3, 3, 3) and sd["bias"].shape == (6,)
    other = ConvTranspose3d(4, 6, 3, stride=2, groups=2, rng=1)
    assert not np.array_equal(other.weight, m.weight)
    other.load_state_dict({k: v.astype(np.float32) for k, v in sd.items()})
    x = np.random.default_rng(0).standard_normal((1, 4, 3, 3, 3)).astype(np.float32)
    assert bits(other(x)) == bits(m(x))
    nb = ConvTranspose3d(4, 6, 3, bias=False, rng=0)
    assert set(nb.state_dict()) == {"weight"} and nb.bias is None
    with pytest.raises(ValueError, match="state_dict"):
        nb.load_state_dict(sd)
    # float64 module loads float32 weights losslessly
    m64 = ConvTranspose3d(4, 6, 3, stride=2, groups=2, dtype=np.float64, rng=2)
    m64.load_state_dict(sd)
    assert m64.weight.dtype == np.float64 and np.array_equal(m64.weight, sd["weight"])


@pytest.mark.parametrize("args, kwargs", [
    ((8, 4, 3), dict(groups=2)),
    ((2, 12, (2, 3, 4)), dict(stride=2)),
    ((6, 3, 2), dict(groups=3)),
    ((3, 9, 5), dict(groups=3, dilation=2)),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_init_bounds_and_weight_shape(args, kwargs, dtype):
    m = ConvTranspose3d(*args, dtype=dtype, rng=0, **kwargs)
    cin, cout, k = args
    groups = kwargs.get("groups", 1)
    k = triple(k)
    assert m.weight.shape == (cin, cout // groups) + k and m.weight.dtype == dtype
    assert m.bias.shape == (cout,) and m.bias.dtype == dtype
    bound = 1.0 / math.sqrt(cout // groups * math.prod(k))   # weight.shape[1] * prod(k)
    assert math.isclose(fan_in_bound(m), bound)
    for p in (m.weight, m.bias):
        assert np.abs(p).max() <= bound * (1 + 1e-6)
    # the draws fill the range (a bound from in_channels would be visibly off)
    assert np.abs(m.weight).max() > 0.8 * bound
    assert m.weight.std() > 0.45 * bound  # uniform: std = bound / sqrt(3) ~ 0.577 bound
    # reset_parameters redraws from rng, within the bounds
    w0 = m.weight.copy()
    m.reset_parameters()
    assert not np.array_equal(w0, m.weight) and np.abs(m.weight).max() <= bound * (1 + 1e-6)
    # rng=0 is reproducible
    assert np.array_equal(ConvTranspose3d(*args, dtype=dtype, rng=0, **kwargs).weight, w0)


def test_init_bounds_match_torch():
    torch = torch_mod()
    torch.manual_seed(0)
    for args, kwargs in [((8, 2, 3), {}), ((2, 8, 3), {}), ((8, 4, (1, 2, 3)), dict(groups=2))]:
        tm = torch.nn.ConvTranspose3d(*args, **kwargs)
        m = ConvTranspose3d(*args, rng=0, **kwargs)
        assert tuple(tm.weight.shape) == m.weight.shape
        bound = fan_in_bound(m)
        tw = tm.weight.detach().numpy()
        assert np.abs(tw).max() <= bound * (1 + 1e-6) and np.abs(tw).max() > 0.7 * bound
        assert np.abs(tm.bias.detach().numpy()).max() <= bound * (1 + 1e-6)


def test_attributes():
    m = ConvTranspose3d(4, 6, (1, 2, 3), stride=(3, 2, 1), padding=(0, 1, 2),
                        output_padding=(2, 1, 0), groups=2, bias=False, dilation=(1, 2, 3),
                        dtype=np.float64, device="cpu")
    assert (m.in_channels, m.out_channels, m.groups) == (4, 6, 2)
    assert m.kernel_size == (1, 2, 3) and m.stride == (3, 2, 1)
    assert m.padding == (0, 1, 2) and m.output_padding == (2, 1, 0)
    assert m.dilation == (1, 2, 3) and m.padding_mode == "zeros"
    assert np.dtype(m.dtype) == np.float64 and m.algorithm == "auto"
    for t in (m.kernel_size, m.stride, m.padding, m.output_padding, m.dilation):
        assert type(t) is tuple
    d = ConvTranspose3d(2, 2, 3)
    assert np.dtype(d.dtype) == np.float32 and d.weight.dtype == np.float32
    assert d.stride == (1, 1, 1) and d.padding == (0, 0, 0) and d.output_padding == (0, 0, 0)


def test_positional_order_groups_bias_before_dilation():
    # ConvTranspose3d(in, out, k, stride, padding, output_padding, groups, bias, dilation)
    m = ConvTranspose3d(4, 4, 3, 2, 1, 1, 2, False, 2)
    assert m.groups == 2 and m.bias is None and m.dilation == (2, 2, 2)
    assert m.output_padding == (1, 1, 1)


def test_weight_and_bias_setters():
    m, x, gy, geom = module_data(0, np.float32)
    m.weight = (m.weight * -2).astype(np.float32)
    m.bias = np.zeros(6, np.float32)
    check_forward(m(x), x, m.weight, m.bias, geom)
    check_grads(m.backward(x, gy), gy, x, m.weight, geom)
    with pytest.raises(ValueError, match="weight"):
        m.weight = np.zeros((6, 4, 3, 3, 3), np.float32)   # Conv3d's layout, not ours
    with pytest.raises(TypeError, match="weight"):
        m.weight = m.weight.astype(np.float64)


# repr: strings recorded from PyTorch 2.13 (reference/pytorch-convtranspose3d.md) and more
REPR_CASES = [
    ((16, 33, 3), dict(stride=2),
     "ConvTranspose3d(16, 33, kernel_size=(3, 3, 3), stride=(2, 2, 2))"),
    ((16, 33, (3, 5, 2)), dict(stride=(2, 1, 1), padding=(0, 4, 2), dilation=(1, 2, 1),
                               output_padding=(1, 0, 0), bias=False),
     "ConvTranspose3d(16, 33, kernel_size=(3, 5, 2), stride=(2, 1, 1), padding=(0, 4, 2), "
     "dilation=(1, 2, 1), output_padding=(1, 0, 0), bias=False)"),
    ((8, 4, 3), dict(stride=2, dilation=2, output_padding=1, groups=2),
     "ConvTranspose3d(8, 4, kernel_size=(3, 3, 3), stride=(2, 2, 2), dilation=(2, 2, 2), "
     "output_padding=(1, 1, 1), groups=2)"),
    ((4, 6, 3), {}, "ConvTranspose3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1))"),
    ((4, 6, 3), dict(stride=1, padding=0, output_padding=0, groups=1, bias=True, dilation=1,
                     padding_mode="zeros", device="cpu", dtype=np.float64),
     "ConvTranspose3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1))"),
    ((4, 6, 3), dict(padding=(0, 0, 1)),
     "ConvTranspose3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(0, 0, 1))"),
    ((4, 6, 3), dict(output_padding=(0, 1, 0), dilation=(1, 2, 1)),
     "ConvTranspose3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), dilation=(1, 2, 1), "
     "output_padding=(0, 1, 0))"),
    ((6, 6, (1, 2, 3)), dict(stride=(3, 2, 1), groups=6, bias=False),
     "ConvTranspose3d(6, 6, kernel_size=(1, 2, 3), stride=(3, 2, 1), groups=6, bias=False)"),
    ((2, 4, 2), dict(stride=[2, 1, 2], padding=[1, 0, 0], output_padding=[1, 0, 1]),
     "ConvTranspose3d(2, 4, kernel_size=(2, 2, 2), stride=(2, 1, 2), padding=(1, 0, 0), "
     "output_padding=(1, 0, 1))"),
]


@pytest.mark.parametrize("args, kwargs, expected", REPR_CASES)
def test_repr(args, kwargs, expected):
    assert repr(ConvTranspose3d(*args, **kwargs)) == expected


@pytest.mark.parametrize("args, kwargs, expected", REPR_CASES)
def test_repr_matches_torch(args, kwargs, expected):
    torch = torch_mod()
    kwargs = {k: (torch.float64 if k == "dtype" else v) for k, v in kwargs.items()}
    tm = torch.nn.ConvTranspose3d(*args, **kwargs)
    kwargs = {k: (np.float64 if k == "dtype" else v) for k, v in kwargs.items()}
    assert repr(ConvTranspose3d(*args, **kwargs)) == repr(tm) == expected


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_copies(how):
    m, x, gy, geom = module_data(3, np.float64)
    if how == "pickle":
        c = pickle.loads(pickle.dumps(m))
    elif how == "deepcopy":
        c = copy.deepcopy(m)
    else:
        c = copy.copy(m)
    assert type(c) is ConvTranspose3d and repr(c) == repr(m)
    assert c.output_padding == m.output_padding and c.dtype == m.dtype
    assert bits(c(x)) == bits(m(x))
    for a, b in zip(c.backward(x, gy), m.backward(x, gy)):
        assert bits(a) == bits(b)
    # a copy's parameters are its own: assigning or redrawing them leaves the original alone
    w0 = m.weight.copy()
    c.weight = np.zeros_like(c.weight)
    c.reset_parameters()
    assert np.array_equal(m.weight, w0)
    if how != "copy":  # (a shallow copy shares the generator)
        c2 = pickle.loads(pickle.dumps(m)) if how == "pickle" else copy.deepcopy(m)
        c2.reset_parameters()
        m.reset_parameters()
        assert np.array_equal(c2.weight, m.weight)  # the generator's state was copied


# ================================================================ larger layers, NaN / Inf

# Outputs of several MiB: the phases of kernel 2 stride 2 and kernel 4 stride 2 padding 1
# share one convolution computed a depth slab at a time (the slab depth depends on the
# thread count), kernel 3 stride 2 has several.
LARGE = [
    ((1, 4, 16, 48, 48), (4, 8, 2, 2, 2), 2, 0, 0, 1, 1),
    ((1, 4, 14, 40, 40), (4, 8, 4, 4, 4), 2, 1, 0, 1, 1),
    ((1, 4, 12, 32, 40), (4, 6, 3, 3, 3), 2, 1, 1, 2, 1),
]


@pytest.mark.parametrize("layer", range(len(LARGE)))
def test_large_outputs(layer):
    xshape, wshape, *geom = LARGE[layer]
    geom = tuple(geom)
    x, w, b, _ = make(xshape, wshape, geom, np.float32, seed=layer, spatial=(1, 1, 1))
    y1 = conv_transpose3d(x, w, b, *geom, num_threads=1)
    assert y1.nbytes > 4 << 20
    check_forward(y1, x, w, b, geom)
    for t in (2, 3):
        assert bits(conv_transpose3d(x, w, b, *geom, num_threads=t)) == bits(y1)


def test_nonfinite_positions():
    """NaN and +-inf in x, w or b land where the reference (and PyTorch) put them."""
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(5)
    for i in (0, 1, 3, 9, 13):
        for where in ("x", "w", "b"):
            x, w, b, gy, geom = config_data(i, np.float64)
            a = {"x": x, "w": w, "b": b}[where].reshape(-1)
            a[rng.integers(a.size)] = np.inf
            a[rng.integers(a.size)] = np.nan
            with np.errstate(invalid="ignore"):
                expected = conv_transpose3d_ref(x, w, b, *geom)
            theirs = torch_forward(x, w, b, geom) if torch is not None else None
            for algorithm in ("auto", "direct"):
                y = conv_transpose3d(x, w, b, *geom, algorithm=algorithm)
                for test in (np.isnan, np.isposinf, np.isneginf):
                    assert np.array_equal(test(y), test(expected)), (i, where, algorithm, test)
                    if theirs is not None:
                        assert np.array_equal(test(y), test(theirs)), (i, where, test)


# ==================================================================== hypothesis vs torch

@budget(25)
@given(geometries())
def test_hypothesis_matches_torch_float64(case):
    torch_mod()
    geom = case["geom"]
    x, w, b, gy = make(case["xshape"], case["wshape"], geom, np.float64, case["seed"],
                       bias=case["bias"])
    check_forward(conv_transpose3d(x, w, b, *geom), x, w, b, geom,
                  expected=torch_forward(x, w, b, geom), amplification=2.0, what="vs torch")
    theirs = torch_autograd(gy, x, w, geom)
    ours = conv_transpose3d_backward(gy, x, w, *geom, output_mask=case["mask"])
    check_grads(ours, gy, x, w, geom, mask=case["mask"], theirs=theirs, what="vs torch ")


@pytest.mark.parametrize("args, kwargs, xshape", [
    ((8, 6, 4), dict(stride=2, padding=1), (1, 8, 5, 6, 7)),     # 2x2x2 phases (Winograd)
    ((8, 6, 3), dict(padding=1), (1, 8, 6, 6, 6)),               # stride 1
    ((8, 6, 2), dict(stride=2), (2, 8, 4, 5, 3)),                # one 1x1x1 convolution
    ((8, 6, 3), dict(stride=2, padding=1, output_padding=1), (1, 8, 4, 4, 5)),
])
def test_module_keeps_its_plan_only_for_the_same_parameters(args, kwargs, xshape):
    # The module keeps the phases' weights (and their transforms) between calls: every change
    # of the parameters -- in place, assigned, loaded -- and of the input shape is seen.
    m = ConvTranspose3d(*args, **kwargs, rng=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xshape).astype(np.float32)

    def functional(x):
        return conv_transpose3d(x, m.weight, m.bias, m.stride, m.padding, m.output_padding,
                                m.groups, m.dilation)
    assert bits(m(x)) == bits(functional(x))
    assert bits(m(x)) == bits(functional(x))          # served from the kept plan
    m.weight[0, 0, 0, 0, 0] += 1.0                    # in place
    assert bits(m(x)) == bits(functional(x))
    m.bias[1] -= 0.5
    assert bits(m(x)) == bits(functional(x))
    m.weight = m.weight * 2                           # assigned
    assert bits(m(x)) == bits(functional(x))
    m.load_state_dict({"weight": m.weight[::-1].copy(), "bias": m.bias})
    assert bits(m(x)) == bits(functional(x))
    x2 = rng.standard_normal(xshape[:2] + tuple(s + 1 for s in xshape[2:])).astype(np.float32)
    assert bits(m(x2)) == bits(functional(x2))        # another input shape
    assert bits(copy.deepcopy(m)(x)) == bits(m(x))
