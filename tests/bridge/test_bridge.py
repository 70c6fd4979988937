"""The PyTorch bridge, conv3d_cpu.torch (runs only where torch imports; `make sanitize` hides it).

Oracles: torch.nn.functional / torch.nn's modules (forward and autograd), gradcheck of our
first derivatives in float64 and torch.library.opcheck. Spies on the kernels' entry points
check that our code (not torch's) ran where it should, and with which thread count.
float32 is compared within a float tolerance (our summation order differs from torch's),
float64 tightly (1e-10 relative): only a real bug gets past that.
"""
import copy
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import conv3d_cpu.torch as ct  # noqa: E402

OPS = torch.ops.conv3d_cpu

pytestmark = [
    # torch warns (once per process) that an even 'same' kernel may need a padded copy.
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
    # (torch's own, from opcheck / torch.compile internals)
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


# ----------------------------------------------------------------------------- helpers

def assert_close(ours, theirs, *, wide=False):
    """float32: rtol 1e-5 and atol 1e-5 times the largest magnitude (1e-4 for layers that
    Winograd may compute, ``wide``); float64: rtol 1e-10, atol 1e-12 times it."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    assert ours.device == theirs.device
    scale = max(1.0, theirs.abs().max().item()) if theirs.numel() else 1.0
    if theirs.dtype == torch.float64:
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12 * scale)
    else:
        tol = 1e-4 if wide else 1e-5
        torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol * scale)


def rand(shape, dtype=torch.float64, seed=0, requires_grad=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=dtype) * scale
    return t.requires_grad_(requires_grad)


def weight_scale(wshape):
    """PyTorch's init scale (1 / sqrt(fan_in)), so outputs are O(1)."""
    fan_in = 1
    for s in wshape[1:]:
        fan_in *= s
    return fan_in ** -0.5


def make_conv(xs, ws, bias, dtype=torch.float64, requires_grad=False, seed=0):
    x = rand(xs, dtype, seed, requires_grad)
    w = rand(ws, dtype, seed + 1, requires_grad, weight_scale(ws))
    b = rand(ws[0], dtype, seed + 2, requires_grad) if bias else None
    return x, w, b


def make_transposed(xs, ws, bias, groups, dtype=torch.float64, requires_grad=False, seed=0):
    x = rand(xs, dtype, seed, requires_grad)
    w = rand(ws, dtype, seed + 1, requires_grad, weight_scale(ws))
    b = rand(ws[1] * groups, dtype, seed + 2, requires_grad) if bias else None
    return x, w, b


def grads(out, tensors, seed=5):
    """Gradients of <out, g> (g random) with respect to the tensors that require grad."""
    g = rand(out.shape, out.dtype, seed)
    need = [t for t in tensors if t is not None and t.requires_grad]
    return torch.autograd.grad(out, need, g)


class Spy:
    """Wraps a function (monkeypatched in place), recording the arguments of each call."""

    def __init__(self, monkeypatch, owner, name):
        self.calls = []
        self._fn = getattr(owner, name)
        monkeypatch.setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self._fn(*args, **kwargs)


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_thread(restore_threads):
    torch.set_num_threads(1)


# (id, input shape, weight shape, bias, keyword arguments)
CONV_CASES = [
    ("basic", (1, 2, 4, 4, 4), (3, 2, 3, 3, 3), True, {}),
    ("stride2-pad1", (2, 2, 5, 5, 5), (3, 2, 3, 3, 3), True, dict(stride=2, padding=1)),
    ("per-axis", (1, 2, 5, 6, 7), (2, 2, 2, 3, 2), True, dict(stride=(1, 2, 3), padding=(0, 1, 2))),
    ("same-even", (1, 2, 5, 5, 5), (2, 2, 2, 3, 4), True, dict(padding="same")),
    ("same-even-dilated", (1, 2, 6, 5, 7), (2, 2, 2, 2, 2), False,
     dict(padding="same", dilation=(1, 2, 3))),
    ("valid-even", (1, 2, 5, 4, 5), (3, 2, 2, 2, 3), True, dict(padding="valid")),
    ("dilation2", (1, 2, 7, 7, 7), (2, 2, 3, 3, 3), True, dict(dilation=2, padding=1)),
    ("groups2", (1, 4, 4, 4, 4), (6, 2, 3, 3, 3), True, dict(groups=2, padding=1)),
    ("depthwise", (1, 3, 4, 4, 4), (6, 1, 3, 3, 3), True, dict(groups=3, padding=1)),
    ("unbatched", (2, 5, 5, 5), (3, 2, 3, 3, 3), True, dict(padding=1)),
    ("unbatched-nobias", (2, 4, 5, 4), (3, 2, 2, 3, 2), False, dict(stride=(2, 1, 1))),
    ("no-bias", (2, 2, 4, 4, 4), (3, 2, 3, 3, 3), False, dict(padding=(1, 0, 1))),
    ("1x1x1-strided", (1, 2, 4, 5, 4), (3, 2, 1, 1, 1), True, dict(stride=2)),
    ("stride-over-kernel", (1, 2, 6, 6, 6), (2, 2, 2, 2, 2), True, dict(stride=3)),
    ("kernel-1x3x3", (1, 2, 3, 5, 5), (2, 2, 1, 3, 3), True, dict(padding=(0, 1, 1))),
]

# (id, input shape, weight shape (C, O // groups, k...), bias, keyword arguments)
TRANSPOSED_CASES = [
    ("basic", (1, 2, 3, 3, 3), (2, 3, 3, 3, 3), True, {}),
    ("stride2-outpad", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), True,
     dict(stride=2, padding=1, output_padding=1)),
    ("per-axis", (1, 2, 3, 4, 3), (2, 2, 2, 3, 3), True,
     dict(stride=(1, 2, 3), padding=(0, 1, 1), output_padding=(0, 1, 2))),
    ("dilation-outpad", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), True,
     dict(stride=1, dilation=2, output_padding=1)),
    ("stride-dilation", (1, 2, 2, 3, 2), (2, 2, 3, 2, 2), False,
     dict(stride=2, dilation=(1, 2, 1), padding=(1, 1, 0))),
    ("groups2", (1, 4, 3, 3, 3), (4, 3, 3, 3, 3), True, dict(groups=2, padding=1)),
    ("depthwise", (1, 3, 3, 3, 3), (3, 1, 3, 3, 3), True, dict(groups=3, stride=2)),
    ("unbatched", (2, 3, 3, 3), (2, 3, 3, 3, 3), True, dict(stride=2)),
    ("upsample-nobias", (2, 4, 2, 2, 2), (4, 2, 2, 2, 2), False, dict(stride=2)),
]


def conv_ids(cases):
    return [c[0] for c in cases]


# ----------------------------------------------------------------------------- gradcheck
# On one thread (tiny layers; the 1- vs 2-thread results are compared bit for bit below).
# Fast mode (random projections u^T J v, numerical against analytical) for most cases, the
# full Jacobians for a few.

SLOW_MODE = {"basic", "groups2", "upsample-nobias", "same-even"}


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids(CONV_CASES))
def test_gradcheck_conv3d(case, one_thread):
    name, xs, ws, bias, kw = case
    x, w, b = make_conv(xs, ws, bias, requires_grad=True)
    if bias:
        fn, inputs = (lambda x, w, b: ct.conv3d(x, w, b, **kw)), (x, w, b)
    else:
        fn, inputs = (lambda x, w: ct.conv3d(x, w, None, **kw)), (x, w)
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=name not in SLOW_MODE)


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=conv_ids(TRANSPOSED_CASES))
def test_gradcheck_conv_transpose3d(case, one_thread):
    name, xs, ws, bias, kw = case
    x, w, b = make_transposed(xs, ws, bias, kw.get("groups", 1), requires_grad=True)
    if bias:
        fn, inputs = (lambda x, w, b: ct.conv_transpose3d(x, w, b, **kw)), (x, w, b)
    else:
        fn, inputs = (lambda x, w: ct.conv_transpose3d(x, w, None, **kw)), (x, w)
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=name not in SLOW_MODE)


def test_gradcheck_winograd_layer(monkeypatch, one_thread):
    """A layer large enough for Winograd (checked: its weights are transformed), fast mode.
    gradcheck perturbs its inputs through ``.data``, which bumps no version counter: float64
    weights' transforms are never kept, so it sees every perturbation."""
    spy = Spy(monkeypatch, ct._winograd, "transform_weights")
    x, w, b = make_conv((1, 16, 12, 12, 12), (16, 16, 3, 3, 3), True, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: ct.conv3d(x, w, b, padding=1),
                                    (x, w, b), fast_mode=True)
    assert spy.calls, "the layer did not run Winograd: pick a larger one"


def test_gradcheck_winograd_weight_perturbed_through_data(monkeypatch, one_thread):
    spy = Spy(monkeypatch, ct._winograd, "transform_weights")
    x, w, _ = make_conv((1, 16, 12, 12, 12), (16, 16, 3, 3, 3), False, requires_grad=True)
    u = rand(w.shape, seed=3)
    g = rand((1, 16, 12, 12, 12), seed=4)
    analytical = (torch.autograd.grad(ct.conv3d(x, w, padding=1), w, g)[0] * u).sum()
    assert spy.calls, "the layer did not run Winograd: pick a larger one"
    eps = 1e-6
    with torch.no_grad():
        w.data.add_(eps * u)
        plus = ct.conv3d(x, w, padding=1)
        w.data.sub_(2 * eps * u)
        minus = ct.conv3d(x, w, padding=1)
        w.data.add_(eps * u)
    numerical = ((plus - minus) / (2 * eps) * g).sum()
    torch.testing.assert_close(numerical, analytical, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["input", "weight", "bias"])
def test_gradients_of_one_argument(which):
    """Only one argument requiring grad (the output_mask paths), against torch's autograd."""
    x, w, b = make_conv((2, 4, 5, 5, 5), (6, 2, 3, 3, 3), True)
    t = {"input": x, "weight": w, "bias": b}[which].requires_grad_()
    kw = dict(stride=(1, 2, 1), padding=1, groups=2)
    ours, = grads(ct.conv3d(x, w, b, **kw), [t])
    theirs, = grads(F.conv3d(x, w, b, **kw), [t])
    assert_close(ours, theirs)
    wt = rand((4, 3, 3, 3, 3), seed=9)
    bt = rand(6, seed=10)
    t = {"input": x, "weight": wt, "bias": bt}[which].requires_grad_()
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    ours, = grads(ct.conv_transpose3d(x, wt, bt, **kw), [t])
    theirs, = grads(F.conv_transpose3d(x, wt, bt, **kw), [t])
    assert_close(ours, theirs)


# ----------------------------------------------------------------------------- opcheck

def _conv_op_args(requires_grad):
    x, w, b = make_conv((2, 4, 5, 5, 5), (6, 2, 3, 3, 3), True, requires_grad=requires_grad)
    # stride, (lo, hi) padding per axis (asymmetric), dilation, groups
    return (x, w, b, [1, 2, 1], [1, 1, 0, 1, 2, 0], [1, 1, 2], 2)


def _transposed_op_args(requires_grad, bias=True):
    x, w, b = make_transposed((2, 4, 3, 4, 3), (4, 3, 3, 3, 3), bias, 2,
                              requires_grad=requires_grad)
    # stride, padding, output_padding, groups, dilation
    return (x, w, b, [2, 1, 2], [1, 0, 1], [1, 0, 0], 2, [1, 2, 1])


def test_opcheck_conv3d():
    torch.library.opcheck(OPS.conv3d.default, _conv_op_args(True))
    x, w, _, *rest = _conv_op_args(False)
    torch.library.opcheck(OPS.conv3d.default, (x[0], w, None, *rest))  # unbatched, no bias


def test_opcheck_conv_transpose3d():
    torch.library.opcheck(OPS.conv_transpose3d.default, _transposed_op_args(True))
    x, w, _, *rest = _transposed_op_args(False, bias=False)
    torch.library.opcheck(OPS.conv_transpose3d.default, (x[0], w, None, *rest))


@pytest.mark.parametrize("mask", [[True, True, True], [False, True, False], [True, False, False]])
def test_opcheck_conv3d_backward(mask):
    # Inputs without requires_grad: the op's own gradient (double backward) raises by design.
    x, w, b, *rest = _conv_op_args(False)
    gy = rand(OPS.conv3d(x, w, b, *rest).shape, seed=7)
    torch.library.opcheck(OPS.conv3d_backward.default, (gy, x, w, *rest, mask))


@pytest.mark.parametrize("mask", [[True, True, True], [False, False, True]])
def test_opcheck_conv_transpose3d_backward(mask):
    x, w, b, *rest = _transposed_op_args(False)
    gy = rand(OPS.conv_transpose3d(x, w, b, *rest).shape, seed=7)
    torch.library.opcheck(OPS.conv_transpose3d_backward.default, (gy, x, w, *rest, mask))


def test_backward_ops_dtypes_and_shapes():
    for dtype in (torch.float32, torch.float64):
        x, w, b, *rest = _conv_op_args(False)
        x, w, b = x.to(dtype), w.to(dtype), b.to(dtype)
        gy = rand(OPS.conv3d(x, w, b, *rest).shape, dtype, seed=7)
        gi, gw, gb = OPS.conv3d_backward(gy, x, w, *rest, [True, True, True])
        assert [g.dtype for g in (gi, gw, gb)] == [dtype] * 3
        assert (gi.shape, gw.shape, gb.shape) == (x.shape, w.shape, b.shape)
        torch.testing.assert_close(gb, gy.sum((0, 2, 3, 4)))


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids(CONV_CASES))
def test_fake_shapes_conv3d(case):
    """register_fake's shapes (through the function, under FakeTensorMode) are torch's."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    _, xs, ws, bias, kw = case
    x, w, b = make_conv(xs, ws, bias, dtype=torch.float32)
    expected = F.conv3d(x, w, b, **kw)
    with FakeTensorMode() as mode:
        fake = ct.conv3d(mode.from_tensor(x), mode.from_tensor(w),
                         None if b is None else mode.from_tensor(b), **kw)
    assert fake.shape == expected.shape and fake.dtype == expected.dtype


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=conv_ids(TRANSPOSED_CASES))
def test_fake_shapes_conv_transpose3d(case):
    from torch._subclasses.fake_tensor import FakeTensorMode
    _, xs, ws, bias, kw = case
    x, w, b = make_transposed(xs, ws, bias, kw.get("groups", 1), dtype=torch.float32)
    expected = F.conv_transpose3d(x, w, b, **kw)
    with FakeTensorMode() as mode:
        fake = ct.conv_transpose3d(mode.from_tensor(x), mode.from_tensor(w),
                                   None if b is None else mode.from_tensor(b), **kw)
    assert fake.shape == expected.shape and fake.dtype == expected.dtype


# ----------------------------------------------------------------------------- forward parity

DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids(CONV_CASES))
def test_conv3d_matches_torch(case, dtype):
    _, xs, ws, bias, kw = case
    x, w, b = make_conv(xs, ws, bias, dtype, requires_grad=True)
    ours, theirs = ct.conv3d(x, w, b, **kw), F.conv3d(x, w, b, **kw)
    assert_close(ours, theirs)
    for g1, g2 in zip(grads(ours, (x, w, b)), grads(theirs, (x, w, b))):
        assert_close(g1, g2)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=conv_ids(TRANSPOSED_CASES))
def test_conv_transpose3d_matches_torch(case, dtype):
    _, xs, ws, bias, kw = case
    x, w, b = make_transposed(xs, ws, bias, kw.get("groups", 1), dtype, requires_grad=True)
    ours, theirs = ct.conv_transpose3d(x, w, b, **kw), F.conv_transpose3d(x, w, b, **kw)
    assert_close(ours, theirs)
    for g1, g2 in zip(grads(ours, (x, w, b)), grads(theirs, (x, w, b))):
        assert_close(g1, g2)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_winograd_sized_layers_match_torch(dtype):
    x, w, b = make_conv((2, 16, 8, 8, 8), (16, 16, 3, 3, 3), True, dtype, requires_grad=True)
    ours, theirs = ct.conv3d(x, w, b, padding=1), F.conv3d(x, w, b, padding=1)
    assert_close(ours, theirs, wide=True)
    for g1, g2 in zip(grads(ours, (x, w, b)), grads(theirs, (x, w, b))):
        assert_close(g1, g2, wide=True)
    x, w, b = make_transposed((2, 16, 6, 6, 6), (16, 16, 3, 3, 3), True, 1, dtype)
    assert_close(ct.conv_transpose3d(x, w, b, padding=1), F.conv_transpose3d(x, w, b, padding=1),
                 wide=True)


def test_positional_arguments_in_torch_order():
    """conv_transpose3d's order is torch's (groups before dilation)."""
    x, w, b = make_transposed((1, 4, 3, 3, 3), (4, 2, 3, 3, 3), True, 2)
    ours = ct.conv_transpose3d(x, w, b, 2, 1, 1, 2, 2)
    assert_close(ours, F.conv_transpose3d(x, w, b, 2, 1, 1, 2, 2))
    x, w, b = make_conv((1, 4, 7, 7, 7), (6, 2, 3, 3, 3), True)
    assert_close(ct.conv3d(x, w, b, 2, 1, 2, 2), F.conv3d(x, w, b, 2, 1, 2, 2))


def test_same_padding_with_stride_is_refused():
    x, w, _ = make_conv((2, 4, 7, 7, 7), (6, 4, 3, 3, 3), False, torch.float32)
    with pytest.raises(RuntimeError):
        F.conv3d(x, w, stride=2, padding="same")
    with pytest.raises((RuntimeError, ValueError), match="same"):
        ct.conv3d(x, w, stride=2, padding="same")


def _non_contiguous(t):
    """t's values in a tensor of other strides (a permuted buffer, then a strided slice)."""
    big = torch.zeros((2,) + tuple(reversed(t.shape)), dtype=t.dtype)
    view = big[1].permute(*reversed(range(t.dim())))
    view.copy_(t)
    assert not view.is_contiguous() and torch.equal(view, t)
    return view


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_non_contiguous_inputs(dtype):
    x, w, b = make_conv((2, 4, 6, 7, 5), (6, 2, 3, 2, 3), True, dtype)
    y = ct.conv3d(x, w, b, stride=(2, 1, 1), padding=1, groups=2)
    xn, wn = _non_contiguous(x), _non_contiguous(w)
    bn = torch.stack([b, b], 1)[:, 0]
    assert not bn.is_contiguous()
    # a strided slice (a step in D, an offset in W) holding x's values
    big = torch.zeros((2, 4, 12, 7, 6), dtype=dtype)
    xs = big[:, :, ::2, :, 1:]
    xs.copy_(x)
    assert not xs.is_contiguous() and torch.equal(xs, x)
    for xi, wi, bi in [(xn, wn, bn), (xs, w, b), (xn, w, bn)]:
        assert torch.equal(ct.conv3d(xi, wi, bi, stride=(2, 1, 1), padding=1, groups=2), y)
    ys = ct.conv3d(xs, wn, bn, stride=(2, 1, 1), padding=1, groups=2)
    assert_close(ys, F.conv3d(xs, w, b, stride=(2, 1, 1), padding=1, groups=2))
    # expanded (stride 0) input and gradients through a sum (a stride-0 grad_output)
    xe = rand((2, 4, 1, 1, 1), dtype).expand(2, 4, 6, 7, 5).requires_grad_()
    wr = w.clone().requires_grad_()
    ct.conv3d(xe, wr, b, padding=1, groups=2).sum().backward()
    g_ours = wr.grad
    wr.grad = None
    F.conv3d(xe, wr, b, padding=1, groups=2).sum().backward()
    assert_close(g_ours, wr.grad)
    # transposed
    x, w, b = make_transposed((2, 4, 3, 4, 3), (4, 3, 3, 3, 3), True, 2, dtype)
    y = ct.conv_transpose3d(x, w, b, stride=2, padding=1, groups=2)
    assert torch.equal(ct.conv_transpose3d(_non_contiguous(x), _non_contiguous(w), b,
                                           stride=2, padding=1, groups=2), y)
    assert_close(y, F.conv_transpose3d(x, w, b, stride=2, padding=1, groups=2))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_channels_last_3d(dtype):
    cl = torch.channels_last_3d
    for xs, ws, kw in [((2, 16, 8, 8, 8), (16, 16, 3, 3, 3), dict(padding=1)),
                       ((2, 4, 7, 6, 7), (6, 4, 3, 3, 3), dict(stride=2, padding=(1, 0, 1)))]:
        x, w, b = make_conv(xs, ws, True, dtype, requires_grad=True)
        y = ct.conv3d(x, w, b, **kw)
        gx, gw, gb = grads(y, (x, w, b))
        xc = x.detach().to(memory_format=cl).requires_grad_()
        wc = w.detach().to(memory_format=cl).requires_grad_()
        assert not xc.is_contiguous()
        yc = ct.conv3d(xc, wc, b, **kw)
        assert torch.equal(yc, y)  # the same values, whatever the layout
        for g1, g2 in zip(grads(yc, (xc, wc, b)), (gx, gw, gb)):
            assert torch.equal(g1, g2)
        assert_close(yc, F.conv3d(xc, wc, b, **kw), wide=True)
    # a converted module moved to channels_last_3d, with a transposed layer
    m = nn.Sequential(nn.Conv3d(4, 8, 3, padding=1), nn.ConvTranspose3d(8, 4, 2, stride=2))
    m = m.to(dtype)
    cm = ct.convert(m, inplace=False).to(memory_format=cl)
    x = rand((1, 4, 5, 5, 5), dtype)
    assert_close(cm(x.to(memory_format=cl)), m(x))


def test_empty_batch():
    """N = 0 works forward and backward, as in torch (shapes, dtypes, zero gradients)."""
    for fn, ref, (x, w, b), kw in [
            (ct.conv3d, F.conv3d, make_conv((0, 2, 5, 5, 5), (3, 2, 3, 3, 3), True,
                                            requires_grad=True), dict(padding=1, stride=2)),
            (ct.conv_transpose3d, F.conv_transpose3d,
             make_transposed((0, 2, 3, 3, 3), (2, 3, 3, 3, 3), True, 1, requires_grad=True),
             dict(stride=2, output_padding=1))]:
        ours, theirs = fn(x, w, b, **kw), ref(x, w, b, **kw)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        g_ours = torch.autograd.grad(ours.sum(), (x, w, b))
        g_theirs = torch.autograd.grad(theirs.sum(), (x, w, b))
        for g1, g2 in zip(g_ours, g_theirs):
            assert torch.equal(g1, g2)


# ----------------------------------------------------------------------------- modules

MODULE_ARGS = [
    ((4, 6, 3), {}),
    ((4, 6, (2, 3, 1)), dict(stride=(2, 1, 1), padding=(1, 0, 0), bias=False)),
    ((4, 6, 3), dict(padding="same", dilation=2, groups=2)),
    ((4, 4, 3), dict(padding=1, padding_mode="reflect", groups=4)),
    ((4, 6, 3), dict(padding=(1, 2, 0), padding_mode="circular")),
]
TRANSPOSED_ARGS = [
    ((4, 6, 3), {}),
    ((4, 6, 2), dict(stride=2, bias=False)),
    ((4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)),
    ((4, 6, 3), dict(stride=(1, 2, 2), dilation=(2, 1, 1))),
]


@pytest.mark.parametrize("ours, theirs, args", [
    (ct.Conv3d, nn.Conv3d, a) for a in MODULE_ARGS] + [
    (ct.ConvTranspose3d, nn.ConvTranspose3d, a) for a in TRANSPOSED_ARGS])
def test_module_is_torchs(ours, theirs, args):
    pos, kw = args
    torch.manual_seed(3)
    t = theirs(*pos, **kw).double()
    torch.manual_seed(3)
    o = ours(*pos, **kw).double()
    assert isinstance(o, theirs) and type(o) is ours and issubclass(ours, theirs)
    assert repr(o) == repr(t)
    assert list(o.state_dict()) == list(t.state_dict())
    assert [n for n, _ in o.named_parameters()] == [n for n, _ in t.named_parameters()]
    for (k, a), (_, c) in zip(o.state_dict().items(), t.state_dict().items()):
        assert torch.equal(a, c), k  # same initialisation (same RNG draws)
    x = rand((2, 4, 5, 6, 5), requires_grad=True)
    y_o, y_t = o(x), t(x)
    assert_close(y_o, y_t)
    for g1, g2 in zip(grads(y_o, (x,) + tuple(o.parameters())),
                      grads(y_t, (x,) + tuple(t.parameters()))):
        assert_close(g1, g2)
    assert_close(o(x[0]), t(x[0]))  # unbatched


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_conv3d_padding_modes(mode, dtype):
    torch.manual_seed(0)
    t = nn.Conv3d(3, 4, (3, 2, 3), padding=(1, 2, 1), stride=(1, 2, 1), padding_mode=mode).to(dtype)
    o = ct.convert(t, inplace=False)
    assert type(o) is ct.Conv3d
    x = rand((2, 3, 4, 5, 6), dtype, requires_grad=True)
    y_o, y_t = o(x), t(x)
    assert_close(y_o, y_t)
    for g1, g2 in zip(grads(y_o, (x,) + tuple(o.parameters())),
                      grads(y_t, (x,) + tuple(t.parameters()))):
        assert_close(g1, g2)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_gradcheck(mode, one_thread):
    m = ct.Conv3d(2, 2, 3, padding=(1, 2, 1), padding_mode=mode).double()
    x = rand((1, 2, 3, 4, 3), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: m._conv_forward(x, w, b),
                                    (x, m.weight, m.bias), fast_mode=True)


def test_conv_transpose3d_output_size():
    torch.manual_seed(0)
    t = nn.ConvTranspose3d(4, 3, 3, stride=2, padding=1).double()
    o = ct.convert(t, inplace=False)
    x = rand((1, 4, 6, 6, 6), requires_grad=True)
    for size in [(12, 12, 12), (11, 12, 11), [1, 3, 12, 11, 12], torch.Size([11, 11, 12])]:
        y_o, y_t = o(x, output_size=size), t(x, output_size=size)
        assert y_o.shape[-3:] == tuple(size)[-3:]
        assert_close(y_o, y_t)
        for g1, g2 in zip(grads(y_o, (x, o.weight, o.bias)), grads(y_t, (x, t.weight, t.bias))):
            assert_close(g1, g2)
    assert_close(o(x[0], output_size=(12, 11, 12)), t(x[0], output_size=(12, 11, 12)))
    with pytest.raises(ValueError, match="output size"):
        o(x, output_size=(10, 10, 10))


# ----------------------------------------------------------------------------- convert()

class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(c, c, 3, padding=1), nn.ReLU(),
                                  nn.Sequential(nn.Conv3d(c, c, 1)))
        self.norm = nn.BatchNorm3d(c)

    def forward(self, x):
        return self.norm(self.body(x)) + x


class MyConv(nn.Conv3d):
    """A user subclass: convert() leaves it alone."""


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(2, 4, 3, padding=1)
        self.blocks = nn.ModuleList([Block(4), Block(4)])
        self.heads = nn.ModuleDict({"up": nn.ConvTranspose3d(4, 2, 2, stride=2),
                                    "mine": MyConv(2, 2, 1)})

    def forward(self, x):
        x = self.stem(x)
        for blk in self.blocks:
            x = blk(x)
        return self.heads["mine"](self.heads["up"](x))


def _convs(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]


def test_convert_nested_model():
    torch.manual_seed(0)
    ref = Net().double()
    model = copy.deepcopy(ref)
    params = list(model.parameters())
    assert ct.convert(model) is model
    types = [type(m) for m in _convs(model)]
    assert types == [ct.Conv3d] * 5 + [ct.ConvTranspose3d, MyConv]
    assert type(model.blocks[1].body[2][0]) is ct.Conv3d
    assert all(a is b for a, b in zip(params, model.parameters()))
    x = rand((2, 2, 4, 4, 4))
    assert_close(model(x), ref(x))
    assert type(ct.convert(nn.Conv3d(1, 1, 1))) is ct.Conv3d  # a bare module
    with pytest.raises(TypeError):
        ct.convert(lambda x: x)


def test_convert_leaves_user_subclasses(monkeypatch):
    m = nn.Sequential(MyConv(2, 2, 3), nn.LazyConv3d(2, 1))
    ct.convert(m)
    assert type(m[0]) is MyConv and type(m[1]) is nn.LazyConv3d
    spy = Spy(monkeypatch, ct, "_convolve")
    m(rand((1, 2, 4, 4, 4), torch.float32))
    assert not spy.calls  # torch computed both


def test_convert_shared_module():
    torch.manual_seed(0)
    shared, up = nn.Conv3d(3, 3, 3, padding=1), nn.ConvTranspose3d(3, 3, 1)
    a, b = nn.Sequential(shared, up, nn.ReLU()), nn.Sequential(nn.Tanh(), shared, up)
    root = nn.Sequential(a, b).double()
    ref = copy.deepcopy(root)
    assert ref[0][0] is ref[1][1]  # deepcopy keeps the sharing
    ct.convert(root)
    assert root[0][0] is root[1][1] is shared and root[0][1] is root[1][2] is up
    assert type(shared) is ct.Conv3d and type(up) is ct.ConvTranspose3d
    ct.convert(root)  # converting again changes nothing
    assert type(shared) is ct.Conv3d
    assert len(list(root.parameters())) == 4
    x = rand((1, 3, 4, 4, 4))
    assert_close(root(x), ref(x))


def test_convert_keeps_parameters_for_an_optimizer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(),
                          nn.ConvTranspose3d(4, 2, 2, stride=2)).double()
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # built before convert
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    before = list(model.parameters())
    before0 = model[0].weight.detach().clone()
    ct.convert(model)
    assert all(p is q for p, q in zip(before, model.parameters()))
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    x, target = rand((2, 2, 4, 4, 4)), rand((2, 2, 8, 8, 8), seed=1)
    for _ in range(2):
        for mod, o in [(model, opt), (ref, opt_ref)]:
            o.zero_grad()
            F.mse_loss(mod(x), target).backward()
            o.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert_close(p.detach(), q.detach())
    assert not torch.equal(model[0].weight, before0)  # (the optimizer did move them)


def test_convert_optimizer_updates_converted_weights():
    """The optimizer built before convert moves the converted module's own weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(2, 3, 3)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ct.convert(model)
    w0 = model[0].weight.detach().clone()
    x = rand((1, 2, 4, 4, 4))
    model(x).square().sum().backward()
    expected = w0 - 0.5 * model[0].weight.grad
    opt.step()
    assert not torch.equal(model[0].weight.detach(), w0)
    assert_close(model[0].weight.detach(), expected)


def test_convert_state_dict_round_trip():
    torch.manual_seed(0)
    ref = Net().double()
    model = ct.convert(copy.deepcopy(ref))
    assert list(model.state_dict()) == list(ref.state_dict())
    fresh = Net().double()  # other weights
    fresh.load_state_dict(model.state_dict())
    x = rand((1, 2, 4, 4, 4))
    ref.eval(), model.eval(), fresh.eval()
    assert_close(fresh(x), ref(x))
    other = Net().double().eval()
    model.load_state_dict(other.state_dict())  # into the converted model
    assert_close(model(x), other(x))
    assert type(model.stem) is ct.Conv3d


def test_convert_not_inplace():
    torch.manual_seed(0)
    model = Net().double()
    snapshot = copy.deepcopy(model.state_dict())
    converted = ct.convert(model, inplace=False)
    assert converted is not model
    assert [type(m) for m in _convs(model)] == [nn.Conv3d] * 5 + [nn.ConvTranspose3d, MyConv]
    assert [type(m) for m in _convs(converted)] == \
        [ct.Conv3d] * 5 + [ct.ConvTranspose3d, MyConv]
    assert not any(p is q for p, q in zip(model.parameters(), converted.parameters()))
    with torch.no_grad():
        for p in converted.parameters():
            p.add_(1)
    for k, t in model.state_dict().items():
        assert torch.equal(t, snapshot[k]), k


def test_convert_keeps_hooks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(2, 3, 3, padding=1), nn.ReLU(),
                          nn.ConvTranspose3d(3, 2, 2, stride=2)).double()
    ref = copy.deepcopy(model)
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(("pre", type(m))))
    model[0].register_forward_hook(lambda m, args, out: seen.append(("fwd", out.detach())))
    model[2].register_forward_hook(lambda m, args, out: out * 2)  # replaces the output
    model[2].register_full_backward_hook(lambda m, gi, go: seen.append(("bwd", go[0].shape)))
    ct.convert(model)
    x = rand((1, 2, 3, 3, 3), requires_grad=True)
    y = model(x)
    assert [s[0] for s in seen] == ["pre", "fwd"] and seen[0][1] is ct.Conv3d
    assert_close(seen[1][1], ref[0](x).detach())
    assert_close(y, 2 * ref(x))
    y.sum().backward()
    assert seen[-1] == ("bwd", y.shape)


# ----------------------------------------------------------------------------- training

class TinyUNet(nn.Module):
    """A small 3D U-Net: two encoder convs (16 channels: Winograd-sized), a strided
    down-sampling conv, a ConvTranspose3d up-sampling, a skip concatenation and a 1x1x1 head."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv3d(2, 16, 3, padding=1)
        self.enc2 = nn.Conv3d(16, 16, 3, padding=1)
        self.down = nn.Conv3d(16, 16, 3, stride=2, padding=1)
        self.mid = nn.Conv3d(16, 16, 3, padding=1)
        self.up = nn.ConvTranspose3d(16, 16, 2, stride=2)
        self.dec = nn.Conv3d(32, 8, 3, padding=1)
        self.head = nn.Conv3d(8, 1, 1)

    def forward(self, x):
        e = F.relu(self.enc2(F.relu(self.enc1(x))))
        m = F.relu(self.mid(F.relu(self.down(e))))
        d = F.relu(self.dec(torch.cat([self.up(m), e], 1)))
        return self.head(d)


def test_training_follows_torch():
    torch.manual_seed(0)
    ref = TinyUNet().double()
    model = ct.convert(copy.deepcopy(ref))
    assert type(model.up) is ct.ConvTranspose3d and type(model.enc2) is ct.Conv3d
    x = rand((2, 2, 8, 8, 8), seed=1)
    target = x[:, :1] - 0.5 * x[:, 1:]
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (ref, model)]
    losses = ([], [])
    for _ in range(6):
        for m, opt, record in zip((ref, model), opts, losses):
            opt.zero_grad()
            loss = F.mse_loss(m(x), target)
            loss.backward()
            opt.step()
            record.append(loss.item())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-10, atol=0)
    assert min(losses[0][1:]) < 0.95 * losses[0][0]  # it trained
    init = dict(TinyUNet().double().named_parameters())  # (other values: a sanity check)
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        assert_close(p.detach(), q.detach())
        assert not torch.equal(p, init[name])


# ----------------------------------------------------------------------------- torch.compile

def test_torch_compile_fullgraph(monkeypatch):
    torch.manual_seed(0)
    model = ct.convert(nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(),
                                     nn.ConvTranspose3d(4, 2, 2, stride=2)))
    fwd = Spy(monkeypatch, ct, "_convolve")
    bwd = Spy(monkeypatch, ct._backward, "gradients")
    tfwd = Spy(monkeypatch, ct._transposed, "forward")
    tbwd = Spy(monkeypatch, ct._transposed, "gradients")
    compiled = torch.compile(model, fullgraph=True)
    x = rand((2, 2, 4, 4, 4), torch.float32, requires_grad=True)
    try:
        y = compiled(x)
        assert fwd.calls and tfwd.calls  # our kernels ran inside the compiled graph
        eager = model(x)
        torch.testing.assert_close(y, eager, rtol=1e-6, atol=1e-6)
        g = rand(y.shape, torch.float32, seed=3)
        got = torch.autograd.grad(y, [x] + list(model.parameters()), g)
        assert bwd.calls and tbwd.calls
        want = torch.autograd.grad(eager, [x] + list(model.parameters()), g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        # and the eager model against stock torch
        ref = copy.deepcopy(model)
        for m in ref.modules():
            if type(m) in (ct.Conv3d, ct.ConvTranspose3d):
                m.__class__ = type(m).__mro__[1]
        assert_close(eager, ref(x))
    finally:
        torch._dynamo.reset()


# ----------------------------------------------------------------------------- fallback

def _must_not_run_here(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("conv3d_cpu's kernel ran for an input that should go to torch")
    for owner, name in [(ct, "_convolve"), (ct._transposed, "forward"),
                        (ct._backward, "gradients"), (ct._transposed, "gradients")]:
        monkeypatch.setattr(owner, name, fail)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fallback_low_precision_is_torchs(dtype, monkeypatch):
    x, w, b = make_conv((1, 4, 5, 5, 5), (6, 2, 3, 3, 3), True, dtype, requires_grad=True)
    y = F.conv3d(x, w, b, padding=1, groups=2)
    g_t = grads(y, (x, w, b))
    _must_not_run_here(monkeypatch)
    ours = ct.conv3d(x, w, b, padding=1, groups=2)
    assert ours.dtype == dtype and torch.equal(ours, y)
    for g1, g2 in zip(grads(ours, (x, w, b)), g_t):
        assert torch.equal(g1, g2)
    wt = rand((4, 3, 2, 2, 2), dtype, seed=4)
    assert torch.equal(ct.conv_transpose3d(x, wt, None, stride=2, groups=2),
                       F.conv_transpose3d(x, wt, None, stride=2, groups=2))
    torch.manual_seed(0)
    t = nn.Conv3d(4, 2, 3).to(dtype)
    o = ct.convert(t, inplace=False)
    assert torch.equal(o(x), t(x))


def test_fallback_mixed_dtypes_raise_as_torch(monkeypatch):
    x32, w32, b32 = make_conv((1, 2, 4, 4, 4), (3, 2, 3, 3, 3), True, torch.float32)
    x64, w64, b64 = x32.double(), w32.double(), b32.double()
    _must_not_run_here(monkeypatch)
    for args in [(x32, w64, None), (x64, w32, b32), (x32, w32, b64)]:
        with pytest.raises(RuntimeError) as theirs:
            F.conv3d(*args)
        with pytest.raises(RuntimeError) as ours:
            ct.conv3d(*args)
        assert str(ours.value) == str(theirs.value)
        xt, wt, bt = args[0], args[1][:, :2].transpose(0, 1), args[2]  # weight (2, 3, k...)
        with pytest.raises(RuntimeError) as theirs:
            F.conv_transpose3d(xt, wt, bt)
        with pytest.raises(RuntimeError) as ours:
            ct.conv_transpose3d(xt, wt, bt)
        assert str(ours.value) == str(theirs.value)


def test_fallback_meta_device(monkeypatch):
    x, w, b = (t.to("meta") for t in make_conv((2, 4, 7, 6, 5), (6, 2, 3, 2, 3), True,
                                                torch.float32))
    try:
        expected = F.conv3d(x, w, b, stride=2, padding=1, groups=2)
    except (NotImplementedError, RuntimeError) as e:  # pragma: no cover - torch-version dependent
        pytest.skip(f"torch's conv3d does not support the meta device here: {e}")
    _must_not_run_here(monkeypatch)
    ours = ct.conv3d(x, w, b, stride=2, padding=1, groups=2)
    assert ours.device.type == "meta" and ours.shape == expected.shape
    wt = torch.empty((4, 3, 2, 2, 2), device="meta")
    ours = ct.conv_transpose3d(x, wt, None, stride=2, groups=2)
    assert ours.device.type == "meta"
    assert ours.shape == F.conv_transpose3d(x, wt, None, stride=2, groups=2).shape
    m = ct.Conv3d(4, 6, 3, device="meta")
    assert m(x).shape == nn.Conv3d(4, 6, 3, device="meta")(x).shape


# ----------------------------------------------------------------------------- threads

def _run_all(seed=0):
    """Outputs and gradients of a direct layer, a Winograd-sized layer and a transposed one."""
    out = []
    for xs, ws, kw in [((2, 4, 7, 7, 7), (6, 2, 3, 3, 3), dict(stride=2, padding=1, groups=2)),
                       ((1, 16, 8, 8, 8), (16, 16, 3, 3, 3), dict(padding=1))]:
        x, w, b = make_conv(xs, ws, True, torch.float32, requires_grad=True, seed=seed)
        y = ct.conv3d(x, w, b, **kw)
        out += [y.detach(), *grads(y, (x, w, b))]
    x, w, b = make_transposed((2, 8, 4, 4, 4), (8, 8, 3, 3, 3), True, 1, torch.float32,
                              requires_grad=True, seed=seed)
    y = ct.conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1)
    return out + [y.detach(), *grads(y, (x, w, b))]


def test_threads_bitwise(restore_threads):
    torch.set_num_threads(1)
    one = _run_all()
    torch.set_num_threads(2)
    two = _run_all()
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    assert not torch.equal(one[0], _run_all(seed=11)[0])  # (the comparison can fail)


def _threads_of(spy):
    """The thread count each recorded call got (the kernels' last positional argument)."""
    return [args[-1] for args, _ in spy.calls]


def test_threads_read_per_call(monkeypatch, restore_threads):
    spies = [Spy(monkeypatch, ct, "_convolve"), Spy(monkeypatch, ct._backward, "gradients"),
             Spy(monkeypatch, ct._transposed, "forward"),
             Spy(monkeypatch, ct._transposed, "gradients")]
    # (layers above algorithms.TINY_MACS: smaller ones run on one thread, next test)
    x, w, b = make_conv((1, 8, 12, 12, 12), (3, 8, 3, 3, 3), True, requires_grad=True)
    wt = rand((8, 16, 2, 2, 2), requires_grad=True)
    for n in (1, 2, 1):
        torch.set_num_threads(n)
        grads(ct.conv3d(x, w, b), (x, w, b))
        grads(ct.conv_transpose3d(x, wt, None, stride=2), (x, wt))
    for spy in spies:
        assert _threads_of(spy) == [1, 2, 1], spy.calls
    # and torch.get_num_threads itself is what the bridge asks, on every call
    asked = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: asked.append(1) or 2)
    torch.set_num_threads(1)
    spies[0].calls.clear()
    ct.conv3d(x.detach(), w.detach(), None)
    first = len(asked)
    ct.conv3d(x.detach(), w.detach(), None)
    assert 0 < first < len(asked)
    assert _threads_of(spies[0]) == [2, 2]


def test_tiny_calls_run_on_one_thread(monkeypatch, restore_threads):
    # As conv3d's default: a call under algorithms.TINY_MACS multiply-adds does not wake a team.
    spy = Spy(monkeypatch, ct, "_convolve")
    torch.set_num_threads(2)
    x, w, _ = make_conv((1, 2, 4, 4, 4), (3, 2, 3, 3, 3), False)
    ct.conv3d(x, w)
    assert _threads_of(spy) == [1]


# ----------------------------------------------------------------------------- double backward

def test_double_backward_raises():
    x, w, b = make_conv((1, 2, 4, 4, 4), (3, 2, 3, 3, 3), True, requires_grad=True)
    y = ct.conv3d(x, w, b, padding=1)
    gx, gw = torch.autograd.grad(y.square().sum(), (x, w), create_graph=True)
    # first derivatives are still right with create_graph=True
    ex, ew = torch.autograd.grad(F.conv3d(x, w, b, padding=1).square().sum(), (x, w))
    assert_close(gx.detach(), ex)
    assert_close(gw.detach(), ew)
    with pytest.raises(RuntimeError, match="double backward"):
        (gx.square().sum() + gw.sum()).backward()
    xt, wt = rand((1, 2, 3, 3, 3), requires_grad=True), rand((2, 2, 2, 2, 2), requires_grad=True)
    gx, = torch.autograd.grad(ct.conv_transpose3d(xt, wt, stride=2).square().sum(), xt,
                              create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


# ----------------------------------------------------------------------------- Winograd cache

def _winograd_module(dtype, monkeypatch):
    torch.manual_seed(0)
    ref = nn.Conv3d(16, 16, 3, padding=1).to(dtype)
    spy = Spy(monkeypatch, ct._winograd, "transform_weights")
    return ref, ct.convert(copy.deepcopy(ref)), spy


def test_float64_transforms_are_never_kept(monkeypatch):
    # (gradcheck perturbs float64 inputs through .data, which bumps no version counter)
    ref, m, spy = _winograd_module(torch.float64, monkeypatch)
    x = rand((1, 16, 12, 12, 12), torch.float64)
    with torch.no_grad():
        y0 = m(x)
        assert len(spy.calls) == 1, "the layer did not run Winograd: pick a larger one"
        m.weight.data.mul_(2)
        assert len(spy.calls) == 1
        assert_close(m(x), F.conv3d(x, m.weight, m.bias, padding=1))
        assert len(spy.calls) == 2
        assert not torch.equal(m(x), y0)


def test_winograd_cache_sees_in_place_writes(monkeypatch):
    dtype = torch.float32
    ref, m, spy = _winograd_module(dtype, monkeypatch)
    x = rand((1, 16, 12, 12, 12), dtype)
    with torch.no_grad():
        y0 = m(x)
        assert len(spy.calls) == 1, "the layer did not run Winograd: pick a larger one"
        assert_close(y0, ref(x), wide=True)
        assert torch.equal(m(x), y0) and len(spy.calls) == 1  # cached: not transformed again
        m.weight.mul_(2)
        y1 = m(x)
        assert len(spy.calls) == 2
        assert_close(y1, F.conv3d(x, m.weight, m.bias, padding=1), wide=True)
        assert (y1 - y0).abs().max() > 0.1
        m.weight[0, 0, 1, 1, 1] += 1.0  # one element, through indexing
        assert_close(m(x), F.conv3d(x, m.weight, m.bias, padding=1), wide=True)
        m.weight.copy_(ref.weight)  # back to the old values (a write again)
        assert_close(m(x), ref(x), wide=True)
        # the functional form, a plain tensor
        w = ref.weight.detach().clone()
        y = ct.conv3d(x, w, None, padding=1)
        w.add_(0.5)
        assert_close(ct.conv3d(x, w, None, padding=1), F.conv3d(x, w, None, padding=1),
                     wide=True)
        assert not torch.equal(ct.conv3d(x, w, None, padding=1), y)
        # two weights of one shape, alternately
        w2 = -w
        for _ in range(2):
            assert_close(ct.conv3d(x, w2, None, padding=1), F.conv3d(x, w2, None, padding=1),
                         wide=True)
            assert_close(ct.conv3d(x, w, None, padding=1), F.conv3d(x, w, None, padding=1),
                         wide=True)


def test_winograd_cache_after_optimizer_steps(monkeypatch):
    ref, m, spy = _winograd_module(torch.float64, monkeypatch)
    opts = [torch.optim.SGD(mod.parameters(), lr=0.5) for mod in (ref, m)]
    x = rand((1, 16, 12, 12, 12))
    outs = []
    for _ in range(3):
        ys = []
        for mod, opt in zip((ref, m), opts):
            opt.zero_grad()
            y = mod(x)
            y.square().mean().backward()
            opt.step()
            ys.append(y.detach())
        assert_close(ys[1], ys[0])
        outs.append(ys[1])
    with torch.no_grad():
        assert_close(m(x), ref(x))
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[2])
    assert len(spy.calls) >= 4  # a transform per step


def test_inference_mode_created_weights():
    with torch.inference_mode():
        torch.manual_seed(0)
        ref = nn.Conv3d(16, 16, 3, padding=1)
        m = ct.convert(copy.deepcopy(ref))
        x = torch.randn(1, 16, 12, 12, 12)
        assert_close(m(x), ref(x), wide=True)


def test_inference_mode_call():
    torch.manual_seed(0)
    ref = nn.Conv3d(16, 16, 3, padding=1)
    m = ct.convert(copy.deepcopy(ref))
    x = torch.randn(1, 16, 12, 12, 12)
    with torch.inference_mode():
        y = m(x)
        assert_close(y, ref(x), wide=True)
        with torch.no_grad():
            m.weight.mul_(-1)  # (a normal tensor: its version still counts)
        assert_close(m(x), F.conv3d(x, m.weight, m.bias, padding=1), wide=True)


def test_writes_through_data_need_clear_cache(monkeypatch):
    # The documented rule: a write through .data bumps no version counter, so a float32
    # weight's kept transform is served until clear_cache().
    ref, m, spy = _winograd_module(torch.float32, monkeypatch)
    x = rand((1, 16, 12, 12, 12), torch.float32)
    with torch.no_grad():
        before = m(x)
        assert spy.calls
        m.weight.data.mul_(2)
        assert torch.equal(m(x), before)          # the kept transform (what the docs say)
        ct.clear_cache()
        assert_close(m(x), F.conv3d(x, m.weight, m.bias, padding=1), wide=True)


# ----------------------------------------------------------------------------- imports

def _python(code, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_import_conv3d_cpu_does_not_import_torch(tmp_path):
    r = _python("""
        import sys
        import conv3d_cpu, conv3d_cpu.functional, conv3d_cpu.modules, conv3d_cpu.grad
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
        import conv3d_cpu.torch
        print("torch" in sys.modules)
        """, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "True"], r.stdout


def _fake_torch(tmp_path, body):
    pkg = tmp_path / "fake" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    return {"PYTHONPATH": str(tmp_path / "fake")}


def test_import_bridge_without_torch(tmp_path):
    env = _fake_torch(tmp_path, 'raise ModuleNotFoundError("torch is hidden", name="torch")\n')
    r = _python("""
        import conv3d_cpu  # fine without torch
        try:
            import conv3d_cpu.torch
        except ImportError as e:
            print(type(e).__name__, "|", e)
        else:
            print("imported")
        """, env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ImportError |") and "PyTorch" in r.stdout, r.stdout
    assert "2.4" in r.stdout


def test_import_bridge_with_old_torch(tmp_path):
    env = _fake_torch(tmp_path, '__version__ = "2.3.1+cpu"\n')
    r = _python("""
        try:
            import conv3d_cpu.torch
        except ImportError as e:
            print("ImportError |", e)
        """, env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ImportError |") and "2.4" in r.stdout, r.stdout
    assert "2.3.1" in r.stdout
