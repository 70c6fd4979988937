"""The backward pass: ``conv3d_backward``, ``conv3d_cpu.grad`` and ``Conv3d.backward``.

Oracles: the independent float64 reference (tests/grad_reference.py, always) with the
worst-case dot-product bound gamma_n * sum|terms| (grad_input: gy*w products, grad_weight:
gy*x products, grad_bias: gy), and PyTorch (when it imports) through
``torch.ops.aten.convolution_backward``, autograd of ``F.conv3d`` / ``nn.Conv3d`` and
``torch.nn.grad.conv3d_input`` / ``conv3d_weight``.  PyTorch's float32 result and ours are
each within gamma_n * sum|terms| of the exact value, so they are compared within twice that.
NaN/Inf positions are compared exactly (NaN, +inf and -inf separately) with PyTorch's direct
path (oneDNN off, as tests/accuracy/test_special_values.py) and with the reference.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

import conv3d_cpu
import conv3d_cpu.grad as cgrad
from conv3d_cpu import Conv3d, conv3d, conv3d_backward
from grad_reference import (assert_grad_close, check_grads, conv3d_backward_ref, grad_bounds,
                            module_backward_ref)
from hardening import bits, budget
from reference import output_size, padding_lo_hi, triple

DTYPES = [np.float32, np.float64]
MODES = ["zeros", "reflect", "replicate", "circular"]
MASKS = list(itertools.product([False, True], repeat=3))
NAMES = ("grad_input", "grad_weight", "grad_bias")
# Winograd mixes a whole tile: error bounded by K * gamma_n * max(sum|terms|) (the forward's
# F(4^3, 3^3) amplification, tests/accuracy/test_winograd.py).
WINOGRAD_K = 64.0

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning"),
]


# ----------------------------------------------------------------------------- helpers

def out_shape(xshape, wshape, stride, padding, dilation):
    pads = padding_lo_hi(padding, wshape[2:], triple(dilation))
    osz = output_size(xshape[-3:], wshape[2:], stride, pads, dilation)
    return xshape[:-4] + (wshape[0],) + osz


def make(xshape, wshape, stride=1, padding=0, dilation=1, dtype=np.float32, seed=0):
    """x, w, gy of unit-ish scale (w at PyTorch's init scale)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xshape).astype(dtype)
    fan_in = int(np.prod(wshape[1:]))
    w = (rng.uniform(-1, 1, wshape) / np.sqrt(fan_in)).astype(dtype)
    gy = rng.standard_normal(out_shape(xshape, wshape, stride, padding, dilation)).astype(dtype)
    return x, w, gy


def layout(a, kind):
    """The same values as ``a`` in another memory layout (a view, not C-contiguous)."""
    if kind == "C":
        return a
    if kind == "transposed":   # channels-last storage seen as (N, C, D, H, W)
        perm = tuple(range(a.ndim - 4)) + tuple(range(a.ndim - 3, a.ndim)) + (a.ndim - 4,)
        inv = np.argsort(perm)
        return np.ascontiguousarray(a.transpose(perm)).transpose(inv)
    if kind == "sliced":       # every other element of a bigger array
        big = np.full(a.shape[:-3] + tuple(2 * n for n in a.shape[-3:]), np.nan, a.dtype)
        big[..., ::2, 1::2, ::2] = a
        return big[..., ::2, 1::2, ::2]
    if kind == "reversed":     # negative strides
        return np.ascontiguousarray(a[..., ::-1, :, ::-1])[..., ::-1, :, ::-1]
    if kind == "fortran":
        return np.asfortranarray(a)
    raise ValueError(kind)


def torch_mod():
    return pytest.importorskip("torch")


def torch_grads(gy, x, w, stride=1, padding=0, dilation=1, groups=1, mask=(True, True, True)):
    """PyTorch's gradients by autograd of F.conv3d (with a bias), None where masked."""
    torch = torch_mod()
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(w)).requires_grad_(True)
    bt = torch.zeros(w.shape[0], dtype=wt.dtype, requires_grad=True)
    with torch.backends.mkldnn.flags(enabled=False):
        y = torch.nn.functional.conv3d(xt, wt, bt, stride, padding, dilation, groups)
        assert tuple(y.shape) == gy.shape, (tuple(y.shape), gy.shape)
        y.backward(torch.from_numpy(np.ascontiguousarray(gy)))
    res = (xt.grad, wt.grad, bt.grad)
    return tuple(r.numpy() if k else None for k, r in zip(mask, res))


def check_vs_torch(ours, theirs, gy, x, w, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", mask=(True, True, True)):
    """Ours within 2 * (gamma_n * sum|terms|) of PyTorch's (each is within one of exact)."""
    _, bounds, counts = grad_bounds(gy, x, w, stride, padding, dilation, groups, padding_mode)
    for i, name in enumerate(NAMES):
        if not mask[i]:
            assert ours[i] is None and theirs[i] is None
            continue
        if theirs[i] is None:
            continue
        assert_grad_close(ours[i], theirs[i].astype(np.float64), bounds[i], counts[i],
                          x.dtype, f"{name} vs torch", amplification=2.0)


def pattern(a):
    a = np.asarray(a)
    return np.isnan(a), np.isposinf(a), np.isneginf(a)


def assert_same_pattern(actual, expected, what):
    for kind, p, q in zip(("NaN", "+inf", "-inf"), pattern(actual), pattern(expected)):
        if not np.array_equal(p, q):
            diff = np.argwhere(p != q)
            i = tuple(diff[0])
            raise AssertionError(
                f"{what}: {kind} positions differ at {len(diff)} of {p.size} places "
                f"(ours {int(p.sum())}, expected {int(q.sum())}); first at {i}: "
                f"ours {np.asarray(actual)[i]!r}, expected {np.asarray(expected)[i]!r}")


# ------------------------------------------------------------- configurations (functional)

# (x shape, w shape, stride, padding, dilation, groups)
CONFIGS = [
    ((2, 3, 5, 6, 7), (4, 3, 3, 3, 3), 1, 1, 1, 1),
    ((2, 3, 7, 6, 5), (4, 3, 3, 3, 3), 2, 1, 1, 1),
    ((1, 2, 8, 7, 9), (3, 2, 3, 3, 3), 3, 0, 1, 1),
    ((2, 3, 6, 7, 8), (4, 3, 3, 2, 3), (1, 2, 3), (1, 0, 2), 1, 1),
    ((1, 4, 5, 6, 7), (6, 4, 1, 1, 1), 1, 0, 1, 1),                      # pointwise
    ((1, 4, 5, 6, 7), (6, 4, 1, 1, 1), 2, 1, 1, 1),                      # 1x1x1 over padding
    ((2, 3, 4, 6, 7), (5, 3, 1, 3, 3), 1, (0, 1, 1), 1, 1),              # 1x3x3
    ((2, 3, 6, 4, 5), (5, 3, 3, 1, 1), (2, 1, 1), (1, 0, 0), 1, 1),      # 3x1x1
    ((1, 2, 7, 7, 7), (3, 2, 5, 5, 5), 1, 2, 1, 1),                      # 5x5x5
    ((1, 2, 8, 7, 6), (3, 2, 5, 5, 5), 2, "valid", 1, 1),
    ((2, 3, 5, 6, 7), (4, 3, 2, 2, 2), 1, "same", 1, 1),                 # even 'same'
    ((1, 2, 6, 7, 8), (3, 2, 2, 3, 4), 1, "same", (2, 1, 2), 1),         # dilated even 'same'
    ((1, 2, 5, 4, 6), (3, 2, 3, 3, 3), 1, "same", 1, 1),
    ((2, 3, 5, 6, 7), (4, 3, 2, 2, 2), 2, 0, 1, 1),                      # 2x2x2 stride 2
    ((1, 3, 7, 8, 9), (4, 3, 3, 3, 3), 1, 2, 2, 1),                      # dilation 2
    ((1, 2, 9, 8, 7), (2, 2, 3, 2, 3), (1, 2, 1), (2, 1, 0), (3, 1, 2), 1),
    ((2, 4, 5, 6, 7), (4, 1, 3, 3, 3), 1, 1, 1, 4),                      # depthwise
    ((2, 4, 7, 6, 5), (8, 1, 3, 3, 3), 2, 1, 1, 4),                      # depthwise x2, s2
    ((1, 4, 6, 6, 6), (8, 1, 3, 3, 3), 1, "same", 1, 4),                 # depthwise x2
    ((1, 6, 5, 5, 6), (9, 2, 3, 3, 3), 1, 1, 1, 3),                      # groups 3
    ((2, 4, 6, 5, 4), (6, 2, 1, 3, 3), (1, 2, 1), "valid", 1, 2),
    ((0, 3, 5, 5, 5), (4, 3, 3, 3, 3), 1, 1, 1, 1),                      # N = 0
    ((3, 5, 6, 7), (4, 3, 3, 3, 3), 1, 1, 1, 1),                         # unbatched
    ((4, 5, 6, 7), (8, 1, 3, 3, 3), 2, 1, 1, 4),                         # unbatched depthwise
    ((3, 2, 5, 6, 7), (4, 2, 3, 3, 3), 1, "valid", 1, 1),                # N = 3
    ((1, 3, 4, 4, 4), (2, 3, 3, 3, 3), 1, 3, 1, 1),                      # taps all in padding
    ((1, 2, 3, 3, 3), (2, 2, 1, 1, 1), 3, 1, 1, 1),                      # inputs never read
    ((1, 1, 1, 1, 1), (1, 1, 1, 1, 1), 1, 0, 1, 1),
    ((1, 16, 6, 6, 6), (8, 16, 3, 3, 3), 1, 1, 1, 1),                    # fan_in 432
    ((2, 8, 5, 6, 4), (24, 8, 3, 3, 3), 1, (1, 0, 1), 1, 1),             # 24 out channels
]
CONFIG_IDS = [f"c{i}" for i in range(len(CONFIGS))]


def config_data(i, dtype):
    xshape, wshape, stride, padding, dilation, groups = CONFIGS[i]
    x, w, gy = make(xshape, wshape, stride, padding, dilation, dtype, seed=i)
    return x, w, gy, (stride, padding, dilation, groups)


def winograd_eligible(i):
    _, wshape, stride, _, dilation, _ = CONFIGS[i]
    return wshape[2:] == (3, 3, 3) and triple(stride) == (1, 1, 1) \
        and triple(dilation) == (1, 1, 1)


@pytest.mark.parametrize("algorithm", ["auto", "direct"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=CONFIG_IDS)
def test_matches_reference(i, dtype, algorithm):
    x, w, gy, geom = config_data(i, dtype)
    x0, w0, gy0 = x.copy(), w.copy(), gy.copy()
    res = conv3d_backward(gy, x, w, *geom, algorithm=algorithm)
    assert isinstance(res, tuple) and len(res) == 3
    gi, gw, gb = res
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == (w.shape[0],)
    assert gi.dtype == gw.dtype == gb.dtype == dtype
    check_grads(res, gy, x, w, *geom)
    for a, a0 in zip((x, w, gy), (x0, w0, gy0)):
        np.testing.assert_array_equal(a, a0)  # the operands are left alone


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=CONFIG_IDS)
def test_matches_torch(i, dtype):
    torch_mod()
    x, w, gy, geom = config_data(i, dtype)
    ours = conv3d_backward(gy, x, w, *geom)
    theirs = torch_grads(gy, x, w, *geom)
    check_vs_torch(ours, theirs, gy, x, w, *geom)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", [i for i, c in enumerate(CONFIGS)
                               if len(c[0]) == 5 and not isinstance(c[3], str)])
def test_matches_torch_convolution_backward_every_mask(i, dtype):
    torch = torch_mod()
    x, w, gy, (stride, padding, dilation, groups) = config_data(i, dtype)
    for mask in MASKS:
        ours = conv3d_backward(gy, x, w, stride, padding, dilation, groups, output_mask=mask)
        with torch.backends.mkldnn.flags(enabled=False):
            theirs = torch.ops.aten.convolution_backward(
                torch.from_numpy(gy), torch.from_numpy(x), torch.from_numpy(w), [w.shape[0]],
                list(triple(stride)), list(triple(padding)), list(triple(dilation)), False,
                [0, 0, 0], groups, list(mask))
        theirs = tuple(None if t is None else t.numpy() for t in theirs)
        check_vs_torch(ours, theirs, gy, x, w, stride, padding, dilation, groups, mask=mask)


@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("TF"[not b] for b in m))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", [0, 3, 17, 22])
def test_output_mask(i, dtype, mask):
    x, w, gy, geom = config_data(i, dtype)
    res = conv3d_backward(gy, x, w, *geom, output_mask=mask)
    assert len(res) == 3
    check_grads(res, gy, x, w, *geom, output_mask=mask)
    # a list of numpy bools is a mask too (and the call is repeatable bit for bit)
    again = conv3d_backward(gy, x, w, *geom, output_mask=[np.bool_(b) for b in mask])
    for r, f in zip(res, again):
        assert (r is None) == (f is None)
        if r is not None:
            assert bits(r) == bits(f)


@pytest.mark.parametrize("kind", ["transposed", "sliced", "reversed", "fortran"])
@pytest.mark.parametrize("which", ["x", "w", "gy", "all"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_operands(which, kind, dtype):
    i = 3
    x, w, gy, geom = config_data(i, dtype)
    xs = layout(x, kind) if which in ("x", "all") else x
    ws = layout(w, kind) if which in ("w", "all") else w
    gys = layout(gy, kind) if which in ("gy", "all") else gy
    assert not (xs.flags.c_contiguous and ws.flags.c_contiguous and gys.flags.c_contiguous)
    res = conv3d_backward(gys, xs, ws, *geom)
    check_grads(res, gy, x, w, *geom)
    # the same bits as from C-contiguous operands
    for r, c in zip(res, conv3d_backward(gy, x, w, *geom)):
        assert bits(r) == bits(c)


def test_noncontiguous_unbatched_and_grouped():
    x, w, gy, geom = config_data(23, np.float32)
    res = conv3d_backward(layout(gy, "sliced"), layout(x, "transposed"), layout(w, "reversed"),
                          *geom)
    check_grads(res, gy, x, w, *geom)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", [i for i in range(len(CONFIGS)) if winograd_eligible(i)])
def test_winograd_grad_input(i, dtype):
    x, w, gy, geom = config_data(i, dtype)
    mask = (True, False, False)
    res = conv3d_backward(gy, x, w, *geom, output_mask=mask, algorithm="winograd")
    check_grads(res, gy, x, w, *geom, output_mask=mask, amplification=(WINOGRAD_K, 1, 1),
                tile_max=(True, False, False))
    if x.ndim == 5:  # (input_size is (N, C, D, H, W), as in torch)
        gi = cgrad.conv3d_input(x.shape, w, gy, *geom, algorithm="winograd")
        check_grads((gi, None, None), gy, x, w, *geom, output_mask=mask,
                    amplification=(WINOGRAD_K, 1, 1), tile_max=(True, False, False))


def test_positional_and_keyword_arguments():
    x, w, gy, (stride, padding, dilation, groups) = config_data(17, np.float64)
    a = conv3d_backward(gy, x, w, stride, padding, dilation, groups)
    b = conv3d_backward(grad_output=gy, input=x, weight=w, stride=stride, padding=padding,
                        dilation=dilation, groups=groups, output_mask=(True, True, True),
                        algorithm="auto", num_threads=2)
    for u, v in zip(a, b):
        assert bits(u) == bits(v)
    # stride/padding/dilation as 3-tuples and lists mean the same
    c = conv3d_backward(gy, x, w, [2, 2, 2], (1, 1, 1), (1, 1, 1), groups)
    for u, v in zip(a, c):
        assert bits(u) == bits(v)


def test_same_padding_is_asymmetric_for_even_kernels():
    # 'same' with kernel 2 puts the extra padding element on the far side: (0, 1), as torch
    x, w, gy = make((1, 2, 4, 5, 6), (3, 2, 2, 2, 2), 1, "same", 1, np.float64, seed=3)
    res = conv3d_backward(gy, x, w, 1, "same")
    expected = conv3d_backward_ref(gy, x, w, 1, ((0, 1),) * 3)
    for r, e in zip(res, expected):
        np.testing.assert_allclose(r, e, rtol=1e-12, atol=1e-12)
    wrong = conv3d_backward_ref(gy, x, w, 1, ((1, 0),) * 3)
    assert not np.allclose(res[0], wrong[0])


def test_dtype_follows_input():
    for dtype in DTYPES:
        x, w, gy, geom = config_data(0, dtype)
        for r in conv3d_backward(gy, x, w, *geom):
            assert isinstance(r, np.ndarray) and r.dtype == dtype


# ------------------------------------------------------------------------ conv3d_cpu.grad

GRAD_CONFIGS = [0, 1, 3, 5, 9, 14, 15, 17, 19, 21, 24, 26]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", GRAD_CONFIGS)
def test_grad_module_matches_reference(i, dtype):
    x, w, gy, geom = config_data(i, dtype)
    gi = cgrad.conv3d_input(x.shape, w, gy, *geom)
    gw = cgrad.conv3d_weight(x, w.shape, gy, *geom)
    check_grads((gi, gw, None), gy, x, w, *geom, output_mask=(True, True, False))
    # a list input_size / weight_size, and the same bits as conv3d_backward
    gi2 = cgrad.conv3d_input(list(x.shape), w, gy, *geom, algorithm="direct", num_threads=1)
    gw2 = cgrad.conv3d_weight(x, list(w.shape), gy, *geom, algorithm="auto", num_threads=1)
    check_grads((gi2, gw2, None), gy, x, w, *geom, output_mask=(True, True, False))
    # torch defines them as convolution_backward with one mask entry: same bits here
    assert bits(conv3d_backward(gy, x, w, *geom, output_mask=(True, False, False))[0]) == bits(gi)
    assert bits(conv3d_backward(gy, x, w, *geom, output_mask=(False, True, False))[1]) == bits(gw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", [i for i in GRAD_CONFIGS if not isinstance(CONFIGS[i][3], str)])
def test_grad_module_matches_torch(i, dtype):
    torch = torch_mod()
    x, w, gy, (stride, padding, dilation, groups) = config_data(i, dtype)
    with torch.backends.mkldnn.flags(enabled=False):
        ti = torch.nn.grad.conv3d_input(x.shape, torch.from_numpy(w), torch.from_numpy(gy),
                                        stride, padding, dilation, groups).numpy()
        tw = torch.nn.grad.conv3d_weight(torch.from_numpy(x), w.shape, torch.from_numpy(gy),
                                         stride, padding, dilation, groups).numpy()
    gi = cgrad.conv3d_input(x.shape, w, gy, stride, padding, dilation, groups)
    gw = cgrad.conv3d_weight(x, w.shape, gy, stride, padding, dilation, groups)
    check_vs_torch((gi, gw, None), (ti, tw, None), gy, x, w, stride, padding, dilation, groups,
                   mask=(True, True, False))


def test_grad_module_same_and_valid_padding():
    for i in (10, 11, 20):
        x, w, gy, geom = config_data(i, np.float32)
        gi = cgrad.conv3d_input(x.shape, w, gy, *geom)
        gw = cgrad.conv3d_weight(x, w.shape, gy, *geom)
        check_grads((gi, gw, None), gy, x, w, *geom, output_mask=(True, True, False))


# ------------------------------------------------------------------------ Conv3d.backward

# (Conv3d args, kwargs, input shape)
MODULE_CASES = [
    ((3, 4, 3), dict(padding=1), (2, 3, 5, 6, 7)),
    ((3, 4, (2, 3, 4)), dict(padding=(1, 2, 3), stride=(2, 1, 2)), (2, 3, 5, 6, 7)),
    ((2, 3, (2, 3, 4)), dict(padding="same"), (2, 2, 6, 5, 4)),
    ((2, 3, 2), dict(padding="same", dilation=2), (1, 2, 5, 6, 5)),
    ((4, 8, 3), dict(padding=2, groups=4, dilation=(1, 2, 1), bias=False), (1, 4, 5, 6, 5)),
    ((4, 4, 3), dict(padding=1, groups=4, stride=2), (2, 4, 5, 5, 6)),
    ((3, 2, 3), dict(padding=1), (3, 4, 5, 6)),                                   # unbatched
    ((1, 2, 3), dict(padding=3), (1, 1, 3, 3, 3)),             # circular pad = size (x3 fold)
    ((2, 2, 1), dict(padding=(2, 0, 1), bias=False), (1, 2, 3, 2, 2)),
    ((2, 3, 3), dict(padding="valid", stride=2), (1, 2, 5, 6, 7)),
]


def module_case_valid(case, mode):
    args, kwargs, xshape = case
    pads = padding_lo_hi(kwargs.get("padding", 0), triple(args[2]),
                         triple(kwargs.get("dilation", 1)))
    if mode == "reflect":
        return all(max(p) < n for p, n in zip(pads, xshape[-3:]))
    if mode == "circular":
        return all(max(p) <= n for p, n in zip(pads, xshape[-3:]))
    return True


MODULE_PARAMS = [(c, mode) for c in range(len(MODULE_CASES)) for mode in MODES
                 if module_case_valid(MODULE_CASES[c], mode)]


def module_data(c, mode, dtype):
    args, kwargs, xshape = MODULE_CASES[c]
    m = Conv3d(*args, padding_mode=mode, dtype=dtype, rng=c, **kwargs)
    rng = np.random.default_rng(50 + c)
    x = rng.standard_normal(xshape).astype(dtype)
    gy = rng.standard_normal(m(x).shape).astype(dtype)
    geom = (m.stride, kwargs.get("padding", 0), m.dilation, m.groups)
    return m, x, gy, geom, kwargs.get("bias", True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c, mode", MODULE_PARAMS)
def test_module_backward_matches_reference(c, mode, dtype):
    m, x, gy, geom, has_bias = module_data(c, mode, dtype)
    res = m.backward(x, gy)
    assert len(res) == 3
    mask = (True, True, has_bias)
    if not has_bias:
        assert res[2] is None
    check_grads(res, gy, x, m.weight, *geom, padding_mode=mode, output_mask=mask)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c, mode", MODULE_PARAMS)
def test_module_backward_matches_torch(c, mode, dtype):
    torch = torch_mod()
    m, x, gy, geom, has_bias = module_data(c, mode, dtype)
    args, kwargs, _ = MODULE_CASES[c]
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tm = torch.nn.Conv3d(*args, padding_mode=mode, dtype=tdtype, **kwargs)
    with torch.no_grad():  # torch's module gets our weights
        tm.weight.copy_(torch.from_numpy(m.weight))
        if has_bias:
            tm.bias.copy_(torch.from_numpy(m.bias))
    xt = torch.from_numpy(x).requires_grad_(True)
    with torch.backends.mkldnn.flags(enabled=False):
        y = tm(xt)
        np.testing.assert_allclose(y.detach().numpy(), m(x), rtol=1e-4, atol=1e-4)
        y.backward(torch.from_numpy(gy))
    theirs = (xt.grad.numpy(), tm.weight.grad.numpy(),
              tm.bias.grad.numpy() if has_bias else None)
    ours = m.backward(x, gy)
    assert (ours[2] is None) == (not has_bias)
    check_vs_torch(ours, theirs, gy, x, m.weight, *geom, padding_mode=mode,
                   mask=(True, True, has_bias))


@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("TF"[not b] for b in m))
def test_module_output_mask(mask):
    m, x, gy, geom, _ = module_data(1, "reflect", np.float64)
    res = m.backward(x, gy, output_mask=mask)
    check_grads(res, gy, x, m.weight, *geom, padding_mode="reflect", output_mask=mask)


def test_module_backward_uses_current_weights():
    m, x, gy, geom, _ = module_data(0, "replicate", np.float32)
    m.weight = (m.weight * -2).astype(np.float32)
    m.bias = np.zeros_like(m.bias)
    res = m.backward(x, gy)
    check_grads(res, gy, x, m.weight, *geom, padding_mode="replicate")


def test_module_backward_noncontiguous():
    m, x, gy, geom, _ = module_data(1, "circular", np.float32)
    res = m.backward(layout(x, "transposed"), layout(gy, "sliced"))
    check_grads(res, gy, x, m.weight, *geom, padding_mode="circular")


def test_module_backward_matches_functional_for_zeros():
    m, x, gy, geom, _ = module_data(3, "zeros", np.float64)
    a = m.backward(x, gy)
    b = conv3d_backward(gy, x, m.weight, *geom)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-13)


def test_sgd_with_module_backward_decreases_the_loss():
    rng = np.random.default_rng(0)
    teacher = Conv3d(2, 3, 3, padding=1, padding_mode="reflect", dtype=np.float64, rng=1)
    m = Conv3d(2, 3, 3, padding=1, padding_mode="reflect", dtype=np.float64, rng=2)
    x = rng.standard_normal((4, 2, 5, 5, 5))
    target = teacher(x)

    def loss(model):
        return 0.5 * float(np.sum((model(x) - target) ** 2)) / x.shape[0]

    losses = [loss(m)]
    lr = 0.002
    for _ in range(25):
        gy = (m(x) - target) / x.shape[0]
        _, gw, gb = m.backward(x, gy)
        m.weight = m.weight - lr * gw
        m.bias = m.bias - lr * gb
        losses.append(loss(m))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0], losses


# --------------------------------------------------------------------------- hypothesis

@st.composite
def geometries(draw):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(3))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(3))
    pkind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if pkind == "same":
        stride = (1, 1, 1)
        padding = "same"
    elif pkind == "valid":
        padding = "valid"
    elif pkind == "int":
        padding = draw(st.integers(0, 2))
    else:
        padding = tuple(draw(st.integers(0, 2)) for _ in range(3))
    pads = padding_lo_hi(padding, k, dilation)
    size = []
    for kk, d, (lo, hi) in zip(k, dilation, pads):
        need = max(1, d * (kk - 1) + 1 - lo - hi)
        size.append(draw(st.integers(need, need + 4)))
    n = draw(st.sampled_from([None, 0, 1, 2]))
    xshape = ((n,) if n is not None else ()) + (cg * groups,) + tuple(size)
    return dict(
        xshape=xshape, wshape=(og * groups, cg) + k, stride=stride, padding=padding,
        dilation=dilation, groups=groups, dtype=draw(st.sampled_from(DTYPES)),
        mask=draw(st.sampled_from(MASKS)), algorithm=draw(st.sampled_from(["auto", "direct"])),
        layout=draw(st.sampled_from(["C", "transposed", "sliced", "reversed"])),
        seed=draw(st.integers(0, 2**16)))


@budget(40)
@given(geometries())
def test_hypothesis_matches_reference(case):
    geom = (case["stride"], case["padding"], case["dilation"], case["groups"])
    x, w, gy = make(case["xshape"], case["wshape"], case["stride"], case["padding"],
                    case["dilation"], case["dtype"], case["seed"])
    res = conv3d_backward(layout(gy, case["layout"]), layout(x, case["layout"]), w, *geom,
                          output_mask=case["mask"], algorithm=case["algorithm"])
    check_grads(res, gy, x, w, *geom, output_mask=case["mask"])


# --------------------------------------------------------------------------- determinism

DET_LAYERS = [
    # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 8, 12, 12, 12), (16, 8, 3, 3, 3), 1, 1, 1, 1),
    ((2, 8, 12, 12, 12), (16, 8, 3, 3, 3), 2, 1, 1, 1),
    ((2, 8, 12, 12, 12), (16, 1, 3, 3, 3), 1, 1, 1, 8),   # depthwise x2
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["auto", "direct"])
@pytest.mark.parametrize("layer", range(len(DET_LAYERS)))
def test_bitwise_deterministic_across_threads(layer, algorithm, dtype):
    xshape, wshape, *geom = DET_LAYERS[layer]
    x, w, gy = make(xshape, wshape, geom[0], geom[1], geom[2], dtype, seed=layer)
    first = conv3d_backward(gy, x, w, *geom, algorithm=algorithm, num_threads=1)
    if layer == 0 and algorithm == "auto" and dtype == np.float32:
        check_grads(first, gy, x, w, *geom)
    for t in (2, 3, 4, 5, 1):
        again = conv3d_backward(gy, x, w, *geom, algorithm=algorithm, num_threads=t)
        for name, a, b in zip(NAMES, first, again):
            assert bits(a) == bits(b), f"{name} differs between 1 and {t} threads"
    if layer != 1:  # grad.conv3d_input / conv3d_weight too
        gi = [cgrad.conv3d_input(x.shape, w, gy, *geom, algorithm=algorithm, num_threads=t)
              for t in (1, 3, 5)]
        gw = [cgrad.conv3d_weight(x, w.shape, gy, *geom, algorithm=algorithm, num_threads=t)
              for t in (1, 4)]
        assert len({bits(g) for g in gi}) == 1 and len({bits(g) for g in gw}) == 1


def test_bitwise_deterministic_winograd_and_module():
    xshape, wshape, *geom = DET_LAYERS[0]
    x, w, gy = make(xshape, wshape, geom[0], geom[1], geom[2], np.float32, seed=9)
    gis = [conv3d_backward(gy, x, w, *geom, output_mask=(True, False, False),
                           algorithm="winograd", num_threads=t)[0] for t in range(1, 6)]
    assert len({bits(g) for g in gis}) == 1
    check_grads((gis[0], None, None), gy, x, w, *geom, output_mask=(True, False, False),
                amplification=(WINOGRAD_K, 1, 1), tile_max=(True, False, False))
    # the module (padding_mode reflect) is deterministic too, repeated calls included
    m = Conv3d(8, 16, 3, padding=1, padding_mode="reflect", rng=0)
    first = m.backward(x, gy)
    for _ in range(2):
        for a, b in zip(first, m.backward(x, gy)):
            assert bits(a) == bits(b)


# -------------------------------------------------------------------------------- errors

def test_error_grad_output_shape():
    x, w, gy, geom = config_data(0, np.float32)
    bad = gy[:, :, :-1]
    with pytest.raises(ValueError, match="grad_output") as e:
        conv3d_backward(bad, x, w, *geom)
    msg = str(e.value)
    assert str(bad.shape) in msg and str(gy.shape) in msg, msg
    with pytest.raises(ValueError, match="grad_output"):
        conv3d_backward(gy[:, :3], x, w, *geom)              # wrong channel count
    with pytest.raises(ValueError, match="grad_output"):
        conv3d_backward(gy[:1], x, w, *geom)                 # wrong batch
    with pytest.raises(ValueError, match="grad_output"):
        conv3d_backward(gy, x, w, 2, 1, 1, 1)               # shape of stride 1, not 2
    with pytest.raises(ValueError, match="grad_output"):
        cgrad.conv3d_input(x.shape, w, bad, *geom)
    with pytest.raises(ValueError, match="grad_output"):
        cgrad.conv3d_weight(x, w.shape, bad, *geom)
    xu, wu, gyu, gu = config_data(22, np.float32)
    with pytest.raises(ValueError, match="grad_output"):
        conv3d_backward(gyu[:, 1:], xu, wu, *gu)             # unbatched


def test_error_dtype_mismatch():
    x, w, gy, geom = config_data(0, np.float32)
    for args in ((gy.astype(np.float64), x, w), (gy, x.astype(np.float64), w),
                 (gy, x, w.astype(np.float64))):
        with pytest.raises(TypeError):
            conv3d_backward(*args, *geom)
    with pytest.raises(TypeError):
        cgrad.conv3d_input(x.shape, w, gy.astype(np.float64), *geom)
    with pytest.raises(TypeError):
        cgrad.conv3d_weight(x.astype(np.float64), w.shape, gy, *geom)
    m = Conv3d(3, 4, 3, padding=1, rng=0)
    with pytest.raises(TypeError):
        m.backward(x, gy.astype(np.float64))
    with pytest.raises(TypeError):
        m.backward(x.astype(np.float64), gy)


def test_error_sizes():
    x, w, gy, geom = config_data(0, np.float32)
    for size in (x.shape[:3], x.shape + (1,), ()):
        with pytest.raises(ValueError, match="input_size"):
            cgrad.conv3d_input(size, w, gy, *geom)
    for size in (w.shape[:4], w.shape + (1,)):
        with pytest.raises(ValueError, match="weight_size"):
            cgrad.conv3d_weight(x, size, gy, *geom)


@pytest.mark.parametrize("mask", [(True, True), (True, True, True, True), None, "TTT",
                                  ("yes", True, True), (True, None, False), True])
def test_error_output_mask(mask):
    x, w, gy, geom = config_data(0, np.float32)
    with pytest.raises((ValueError, TypeError), match="output_mask"):
        conv3d_backward(gy, x, w, *geom, output_mask=mask)
    m = Conv3d(3, 4, 3, padding=1, rng=0)
    with pytest.raises((ValueError, TypeError), match="output_mask"):
        m.backward(x, gy, output_mask=mask)


def test_error_module_grad_output_shape():
    m = Conv3d(3, 4, 3, padding=1, padding_mode="reflect", rng=0)
    x = np.zeros((2, 3, 5, 6, 7), np.float32)
    gy = np.zeros((2, 4, 5, 6, 6), np.float32)
    with pytest.raises(ValueError, match="grad_output") as e:
        m.backward(x, gy)
    assert str(gy.shape) in str(e.value) and str((2, 4, 5, 6, 7)) in str(e.value)


# ---------------------------------------------------------------------------- NaN / Inf

SPECIALS = [np.nan, np.inf, -np.inf]
# (x shape, w shape, stride, padding, dilation, groups), zero padding
NAN_LAYERS = [
    ((2, 4, 6, 7, 8), (6, 4, 3, 3, 3), 1, 1, 1, 1),
    ((1, 6, 5, 6, 7), (6, 1, 3, 3, 3), 1, (2, 0, 1), 1, 6),
    ((2, 4, 7, 7, 7), (8, 2, 2, 3, 1), (2, 1, 3), 2, (1, 2, 1), 2),
    ((1, 3, 5, 5, 5), (5, 3, 1, 1, 1), 1, 1, 1, 1),
    ((1, 8, 8, 8, 8), (8, 8, 3, 3, 3), 1, 1, 1, 1),
]


def inject(rng, a, count):
    flat = a.reshape(-1)
    for j in rng.choice(flat.size, size=min(count, flat.size), replace=False):
        flat[j] = SPECIALS[rng.integers(3)]


def nan_case(layer, where, dtype):
    xshape, wshape, *geom = NAN_LAYERS[layer]
    x, w, gy = make(xshape, wshape, geom[0], geom[1], geom[2], dtype, seed=layer)
    rng = np.random.default_rng(7 * layer + len(where))
    for name, a in (("g", gy), ("x", x), ("w", w)):
        if name in where:
            inject(rng, a, 2)
    return x, w, gy, tuple(geom)


def check_special(res, expected, gy, x, w, geom, what):
    """Same NaN/+inf/-inf positions as ``expected``; finite values within the bound."""
    _, bounds, counts = grad_bounds(gy, x, w, *geom)
    dtype = x.dtype
    for i, name in enumerate(NAMES):
        assert_same_pattern(res[i], expected[i], f"{what} {name}")
        fin = np.isfinite(np.asarray(expected[i], dtype=np.float64))
        assert_grad_close(res[i][fin], np.asarray(expected[i], np.float64)[fin],
                          np.where(np.isfinite(bounds[i]), bounds[i], 0)[fin], counts[i],
                          dtype, f"{what} {name} (finite part)", amplification=2.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["g", "x", "w", "gx", "gw", "gxw"])
@pytest.mark.parametrize("layer", range(len(NAN_LAYERS)))
def test_nonfinite_positions_match_reference(layer, where, dtype):
    x, w, gy, geom = nan_case(layer, where, dtype)
    expected = conv3d_backward_ref(gy, x, w, *geom)
    if "g" in where:  # (an injected x or w may sit where a stride never looks)
        assert not np.isfinite(expected[2]).all()
    for algorithm in ("auto", "direct"):
        res = conv3d_backward(gy, x, w, *geom, algorithm=algorithm)
        check_special(res, expected, gy, x, w, geom, algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["g", "x", "w", "gxw"])
@pytest.mark.parametrize("layer", range(len(NAN_LAYERS)))
def test_nonfinite_positions_match_torch(layer, where, dtype):
    torch = torch_mod()
    x, w, gy, geom = nan_case(layer, where, dtype)
    stride, padding, dilation, groups = geom
    with torch.backends.mkldnn.flags(enabled=False):
        theirs = torch.ops.aten.convolution_backward(
            torch.from_numpy(gy), torch.from_numpy(x), torch.from_numpy(w), [w.shape[0]],
            list(triple(stride)), list(triple(padding)), list(triple(dilation)), False,
            [0, 0, 0], groups, [True, True, True])
    ours = conv3d_backward(gy, x, w, *geom)
    for name, o, t in zip(NAMES, ours, theirs):
        # positions exactly; values loosely (the bound check is in check_special)
        torch.testing.assert_close(torch.from_numpy(o), t, equal_nan=True, rtol=1e-3,
                                   atol=1e-3, msg=lambda m: f"{name}: {m}")
    check_special(ours, tuple(t.numpy() for t in theirs), gy, x, w, geom, "torch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_inf_in_grad_output_over_zero_padding(dtype):
    # PyTorch multiplies the padding zeros in grad_weight: 0 * inf = NaN at the taps that see
    # padding for that output; grad_input drops the padded part, so no NaN comes from there.
    x = np.ones((1, 1, 1, 1, 3), dtype)
    w = np.ones((1, 1, 1, 1, 3), dtype)
    gy = np.zeros((1, 1, 1, 1, 3), dtype)
    gy[..., 0] = np.inf
    for algorithm in ("auto", "direct"):
        gi, gw, gb = conv3d_backward(gy, x, w, 1, (0, 0, 1), algorithm=algorithm)
        assert np.isnan(gw[0, 0, 0, 0, 0]) and np.isposinf(gw[0, 0, 0, 0, 1:]).all(), gw
        assert np.isposinf(gi[0, 0, 0, 0, :2]).all() and gi[0, 0, 0, 0, 2] == 0, gi
        assert np.isposinf(gb[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_weight_spares_inputs_it_never_meets(dtype):
    # stride 3, 1x1x1 kernel: inputs between the strided positions get exactly 0 gradient
    x, w, gy = make((1, 2, 5, 5, 5), (2, 2, 1, 1, 1), 3, 0, 1, dtype)
    w[0, 0] = np.inf
    gi, gw, gb = conv3d_backward(gy, x, w, 3, 0)
    gi_ref, gw_ref, gb_ref = conv3d_backward_ref(gy, x, w, 3, 0)
    assert_same_pattern(gi, gi_ref, "grad_input")
    assert (gi[:, :, 1::3] == 0).all() and np.isinf(gi[0, 0, ::3, ::3, ::3]).all()
    assert np.isfinite(gw).all() and np.isfinite(gb).all()
