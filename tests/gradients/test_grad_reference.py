"""Validation of the float64 gradient reference (tests/grad_reference.py) itself.

No conv3d_cpu here: finite differences (exact for a function linear in each argument, up to
rounding), the adjoint identities <conv(x, w), g> = <x, grad_input> = <w, grad_weight>, the
padding adjoint <pad(x), g> = <x, pad_adjoint(g)>, and PyTorch (when it imports).
"""
import itertools

import numpy as np
import pytest

from grad_reference import (conv3d_backward_ref, module_backward_ref, pad_adjoint,
                            pad_multiplicity, grad_bounds)
from reference import conv3d_module_ref, conv3d_ref, pad_input, padding_lo_hi

MODES = ["zeros", "reflect", "replicate", "circular"]

pytestmark = [
    pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning"),
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
]

# (x shape, w shape, stride, padding, dilation, groups)
CASES = [
    ((1, 1, 3, 3, 3), (1, 1, 2, 2, 2), 1, 0, 1, 1),
    ((2, 2, 4, 3, 5), (3, 2, 3, 2, 1), (1, 2, 1), (1, 0, 2), 1, 1),
    ((1, 4, 5, 4, 4), (4, 1, 3, 3, 3), 2, 1, 1, 4),                 # depthwise, stride 2
    ((2, 4, 5, 6, 4), (6, 2, 2, 1, 3), (2, 1, 3), (2, 1, 0), (1, 2, 1), 2),
    ((1, 2, 4, 5, 6), (2, 2, 2, 3, 4), 1, "same", 1, 1),            # even kernel: far side
    ((1, 2, 7, 5, 6), (3, 2, 2, 2, 2), 1, "same", (2, 1, 2), 1),
    ((1, 3, 3, 4, 5), (2, 3, 3, 3, 3), 3, "valid", 1, 1),
    ((3, 2, 4, 5), (2, 3, 1, 3, 2), 1, (0, 1, 1), 1, 1),           # unbatched
    ((1, 2, 3, 3, 3), (2, 1, 1, 1, 1), 3, 1, 1, 2),                 # stride skips inputs
]


def case_data(i, dtype=np.float64):
    xshape, wshape, *geom = CASES[i]
    rng = np.random.default_rng(100 + i)
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    y = conv3d_ref(x, w, b, *geom)
    g = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, g, geom


def loss(x, w, b, g, geom, mode="zeros"):
    return float(np.sum(conv3d_module_ref(x, w, b, *geom, padding_mode=mode) * g))


def fd_grad(f, a, eps=0.5):
    """Central differences of f at a, element by element (exact for f linear in a)."""
    a = np.array(a, dtype=np.float64)
    out = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        fp = f(a)
        a[idx] = old - eps
        fm = f(a)
        a[idx] = old
        out[idx] = (fp - fm) / (2 * eps)
    return out


@pytest.mark.parametrize("i", range(len(CASES)))
def test_finite_differences(i):
    x, w, b, g, geom = case_data(i)
    stride, padding, dilation, groups = geom
    gi, gw, gb = conv3d_backward_ref(g, x, w, stride,
                                     padding_lo_hi(padding, w.shape[2:], dilation), dilation,
                                     groups)
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == (w.shape[0],)
    np.testing.assert_allclose(gi, fd_grad(lambda a: loss(a, w, b, g, geom), x), atol=1e-9)
    np.testing.assert_allclose(gw, fd_grad(lambda a: loss(x, a, b, g, geom), w), atol=1e-9)
    np.testing.assert_allclose(gb, fd_grad(lambda a: loss(x, w, a, g, geom), b), atol=1e-9)


@pytest.mark.parametrize("mode", MODES[1:])
@pytest.mark.parametrize("i", [1, 3, 4, 7])
def test_finite_differences_padding_modes(i, mode):
    x, w, b, g, geom = case_data(i)
    stride, padding, dilation, groups = geom
    gi, gw, gb = module_backward_ref(g, x, w, stride, padding, dilation, groups, mode)
    np.testing.assert_allclose(gi, fd_grad(lambda a: loss(a, w, b, g, geom, mode), x),
                               atol=1e-9)
    np.testing.assert_allclose(gw, fd_grad(lambda a: loss(x, a, b, g, geom, mode), w),
                               atol=1e-9)
    np.testing.assert_allclose(gb, g.sum(axis=tuple(k for k in range(g.ndim) if k != g.ndim - 4)))


def test_padding_string_and_pairs_agree():
    x, w, b, g, geom = case_data(4)
    pairs = padding_lo_hi("same", w.shape[2:], 1)
    assert pairs == ((0, 1), (1, 1), (1, 2))  # the extra element on the far side, as PyTorch
    a = conv3d_backward_ref(g, x, w, 1, "same")
    c = conv3d_backward_ref(g, x, w, 1, pairs)
    for u, v in zip(a, c):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_adjoint_identities(i):
    x, w, _, g, geom = case_data(i)
    stride, padding, dilation, groups = geom
    gi, gw, gb = conv3d_backward_ref(g, x, w, stride, padding, dilation, groups)
    lhs = np.sum(conv3d_ref(x, w, None, *geom) * g)
    # conv is bilinear: <conv(x, w), g> = <x, d/dx> = <w, d/dw>
    np.testing.assert_allclose(np.sum(x * gi), lhs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sum(w * gw), lhs, rtol=1e-12, atol=1e-12)
    ones = np.ones(w.shape[0])
    np.testing.assert_allclose(np.sum(ones * gb), np.sum(g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads, shape", [
    (((1, 1), (2, 0), (0, 3)), (2, 3, 4)),
    (((2, 2), (1, 1), (3, 3)), (3, 4, 4)),     # reflect: pad < size
    (((0, 0), (4, 2), (1, 0)), (1, 5, 4)),
])
def test_pad_adjoint_identity(pads, shape, mode):
    # (every case is valid for every mode: reflect pad < size, circular pad <= size)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3) + shape)
    xp = pad_input(x, pads, mode)
    g = rng.standard_normal(xp.shape)
    gx = pad_adjoint(g, pads, mode, shape)
    assert gx.shape == x.shape
    np.testing.assert_allclose(np.sum(xp * g), np.sum(x * gx), rtol=1e-12)
    # and element by element: gradient of sum(pad(x) * g) w.r.t. each x element
    e = np.zeros(shape)
    for idx in itertools.islice(np.ndindex(shape), 0, None, 3):
        e[idx] = 1.0
        np.testing.assert_allclose(gx[1, 2][idx], np.sum(pad_input(e, pads, mode) * g[1, 2]))
        e[idx] = 0.0


def test_pad_multiplicity():
    assert pad_multiplicity(((0, 0),) * 3, "circular", (3, 3, 3)) == 1
    # circular pad 3 on size 3: every element appears 3 times per axis
    assert pad_multiplicity(((3, 3), (0, 0), (0, 0)), "circular", (3, 2, 2)) == 3
    assert pad_multiplicity(((0, 0), (0, 0), (4, 0)), "replicate", (1, 1, 2)) == 5


def test_nonfinite_semantics():
    # An inf in grad_output: grad_weight multiplies it by the padding zeros at the taps that
    # reach the padding (NaN there), grad_input drops the padded part (no NaN from padding).
    x = np.ones((1, 1, 1, 1, 3))
    w = np.ones((1, 1, 1, 1, 3))
    g = np.zeros((1, 1, 1, 1, 3))
    g[..., 0] = np.inf                     # output 0 sees xp[0:3] = [0, 1, 1]
    gi, gw, gb = conv3d_backward_ref(g, x, w, 1, ((0, 0), (0, 0), (1, 1)))
    assert np.isnan(gw[0, 0, 0, 0, 0]) and np.isposinf(gw[0, 0, 0, 0, 1:]).all()
    assert np.isposinf(gi[0, 0, 0, 0, :2]).all() and gi[0, 0, 0, 0, 2] == 0
    assert np.isposinf(gb[0])


def test_bounds_cover_the_terms():
    x, w, _, g, geom = case_data(3)
    expected, bounds, counts = grad_bounds(g, x, w, *geom)
    for e, bd in zip(expected, bounds):
        assert (np.abs(e) <= bd * (1 + 1e-12)).all()
    og = w.shape[0] // geom[3]
    assert counts == (og * int(np.prod(w.shape[2:])),) + (g.shape[0] * int(np.prod(g.shape[2:])),) * 2


# ------------------------------------------------------------------------------ torch

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_autograd(torch, g, x, w, b, stride, padding, dilation, groups, mode="zeros"):
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    bt = torch.from_numpy(b).requires_grad_(True)
    with torch.backends.mkldnn.flags(enabled=False):
        if mode == "zeros":
            y = torch.nn.functional.conv3d(xt, wt, bt, stride, padding, dilation, groups)
        else:
            pads = padding_lo_hi(padding, w.shape[2:], dilation)
            flat = [v for p in reversed(pads) for v in p]
            xp = torch.nn.functional.pad(xt, flat, mode=mode)
            y = torch.nn.functional.conv3d(xp, wt, bt, stride, 0, dilation, groups)
        y.backward(torch.from_numpy(g))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("i", range(len(CASES)))
def test_against_torch_autograd(torch, i):
    x, w, b, g, geom = case_data(i)
    ours = conv3d_backward_ref(g, x, w, *geom)
    theirs = torch_autograd(torch, g, x, w, b, *geom)
    for name, u, t in zip(("gi", "gw", "gb"), ours, theirs):
        np.testing.assert_allclose(u, t, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("i", [i for i, c in enumerate(CASES)
                               if not isinstance(c[3], str) and len(c[0]) == 5])
def test_against_torch_convolution_backward(torch, i):
    x, w, b, g, (stride, padding, dilation, groups) = case_data(i)
    triple = lambda v: list(v) if isinstance(v, tuple) else [v] * 3  # noqa: E731
    for mask in itertools.product([False, True], repeat=3):
        theirs = torch.ops.aten.convolution_backward(
            torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w), [w.shape[0]],
            triple(stride), triple(padding), triple(dilation), False, [0, 0, 0], groups,
            list(mask))
        ours = conv3d_backward_ref(g, x, w, stride, padding, dilation, groups)
        for m, u, t in zip(mask, ours, theirs):
            if m:
                np.testing.assert_allclose(u, t.numpy(), rtol=1e-10, atol=1e-12)
            else:
                assert t is None


@pytest.mark.parametrize("mode", MODES[1:])
@pytest.mark.parametrize("i", [1, 2, 3, 7])
def test_padding_modes_against_torch(torch, i, mode):
    x, w, b, g, geom = case_data(i)
    ours = module_backward_ref(g, x, w, *geom, padding_mode=mode)
    theirs = torch_autograd(torch, g, x, w, b, *geom, mode=mode)
    for name, u, t in zip(("gi", "gw", "gb"), ours, theirs):
        np.testing.assert_allclose(u, t, rtol=1e-10, atol=1e-12, err_msg=f"{mode} {name}")


@pytest.mark.parametrize("where", ["g", "x", "w", "gx", "gw"])
@pytest.mark.parametrize("i", [1, 2, 3, 6])
def test_nonfinite_positions_against_torch(torch, i, where):
    # float64 (aten's slow_conv3d path, every tap multiplied, padding zeros included).
    x, w, b, g, geom = case_data(i)
    rng = np.random.default_rng(i)
    for name, a in (("g", g), ("x", x), ("w", w)):
        if name in where:
            flat = a.reshape(-1)
            for j in rng.choice(flat.size, size=min(2, flat.size), replace=False):
                flat[j] = rng.choice([np.nan, np.inf, -np.inf])
    ours = conv3d_backward_ref(g, x, w, *geom)
    theirs = torch_autograd(torch, g, x, w, b, *geom)
    for u, t in zip(ours, theirs):
        torch.testing.assert_close(torch.from_numpy(u), torch.from_numpy(t), equal_nan=True,
                                   rtol=1e-10, atol=1e-12)
