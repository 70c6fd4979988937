"""Special values: NaN and +-inf in the input, the weights or the bias give NaN/+inf/-inf at
exactly the positions PyTorch's direct convolution (oneDNN off, see torch_conv) gives them,
for 'direct', 'auto' (which recomputes directly when a Winograd result is not all finite) and
the module with every padding mode. PyTorch multiplies every tap, padding included, so a
non-finite weight makes its output channel non-finite everywhere (0 * NaN = 0 * inf = NaN), and
an infinite input next to a zero weight gives NaN.

An explicit Winograd algorithm mixes the inputs of a tile, so NaN/inf spread to whole tiles
(documented in conv3d); there the test checks only that nothing non-finite is lost.
Subnormal values are computed, not flushed to zero.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import conv3d_cpu
from conv3d_cpu import Conv3d, conv3d
from hardening import budget
from reference import check_conv

DTYPES = [np.float32, np.float64]
SPECIALS = [np.nan, np.inf, -np.inf]


def pattern(y):
    y = np.asarray(y)
    return np.isnan(y), np.isposinf(y), np.isneginf(y)


def assert_same_pattern(actual, expected, what=""):
    for name, a, e in zip(("NaN", "+inf", "-inf"), pattern(actual), pattern(expected)):
        if not np.array_equal(a, e):
            diff = np.argwhere(a != e)
            raise AssertionError(f"{what}: {name} positions differ at {len(diff)} places, "
                                 f"first {tuple(diff[0])}: ours {a[tuple(diff[0])]}")


def assert_finite_close(actual, expected, dtype):
    both = np.isfinite(actual) & np.isfinite(expected)
    if not both.any():
        return
    scale = max(1.0, float(np.abs(expected[both]).max()))
    tol = (1e-4 if dtype == np.float32 else 1e-10) * scale
    assert np.abs(actual[both].astype(np.float64) - expected[both]).max() <= tol


def inject(rng, a, count, values=SPECIALS):
    """Put ``count`` special values at random positions of ``a`` (in place)."""
    flat = a.reshape(-1)
    for i in rng.choice(flat.size, size=min(count, flat.size), replace=False):
        flat[i] = rng.choice(values)
    return a


def make(rng, xshape, wshape, dtype, where, count=2, values=SPECIALS):
    x = rng.standard_normal(xshape).astype(dtype)
    w = (rng.standard_normal(wshape) * 0.3).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    if "x" in where:
        inject(rng, x, count, values)
    if "w" in where:
        inject(rng, w, count, values)
    if "b" in where:
        inject(rng, b, 1, values)
    return x, w, b


# ------------------------------------------------------------------ against our 'direct'

LAYERS = [
    # (x shape, w shape, kwargs)
    ((2, 4, 6, 7, 8), (6, 4, 3, 3, 3), dict(padding=1)),
    ((1, 16, 8, 8, 8), (16, 16, 3, 3, 3), dict(padding=1)),       # 'auto' may pick Winograd
    ((1, 6, 5, 6, 7), (6, 1, 3, 3, 3), dict(padding=(2, 0, 1), groups=6)),
    ((2, 4, 7, 7, 7), (8, 2, 2, 3, 1), dict(stride=(2, 1, 3), dilation=(1, 2, 1), groups=2,
                                            padding=2)),
    ((1, 3, 5, 5, 5), (20, 3, 1, 1, 1), dict(padding=1)),
    ((1, 3, 5, 5, 5), (20, 3, 1, 1, 1), dict()),                   # pointwise
    ((4, 6, 7, 8), (5, 4, 3, 3, 3), dict(padding="same")),         # unbatched
]


def layer_case(layer, where, dtype):
    """Inputs of LAYERS[layer] with special values injected ``where``, and its kwargs."""
    xshape, wshape, kwargs = LAYERS[layer]
    if kwargs.get("padding") == "same" and xshape[0] != wshape[1]:
        xshape = (wshape[1],) + xshape[1:]
    rng = np.random.default_rng(layer * 10 + len(where))
    return make(rng, xshape, wshape, dtype, where) + (kwargs,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "w", "b", "xw", "xwb"])
@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_auto_and_module_match_direct_positions(layer, where, dtype):
    x, w, b, kwargs = layer_case(layer, where, dtype)
    direct = conv3d(x, w, b, algorithm="direct", **kwargs)
    # (with a stride, an injected value may sit where no output looks)
    assert "stride" in kwargs or not np.isfinite(direct).all()
    assert_same_pattern(conv3d(x, w, b, algorithm="auto", **kwargs), direct, "auto")
    m = Conv3d(x.shape[-4], w.shape[0], w.shape[2:], dtype=dtype, rng=0, **kwargs)
    m.weight, m.bias = w, b
    assert_same_pattern(m(x), direct, "module")


def test_auto_falls_back_when_winograd_is_chosen(monkeypatch):
    # Make sure the fallback itself is exercised: count Winograd runs on a layer 'auto' gives
    # to Winograd, with a NaN in the input, an inf in the weights, both, or none.
    calls = []
    real = conv3d_cpu._native.winograd.winograd
    monkeypatch.setattr(conv3d_cpu._native.winograd, "winograd",
                        lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(0)
    for where in ("", "x", "w", "xw", "b"):
        x, w, b = make(rng, (1, 16, 12, 12, 12), (16, 16, 3, 3, 3), np.float32, where)
        calls.clear()
        y = conv3d(x, w, b, padding=1, algorithm="auto")
        direct = conv3d(x, w, b, padding=1, algorithm="direct")
        assert_same_pattern(y, direct, f"auto ({where or 'finite'})")
        if where in ("", "x", "b"):  # (non-finite weights: the padding is made explicit)
            assert calls, "'auto' did not use Winograd on this layer; pick a bigger one"
        if where == "":
            assert np.isfinite(y).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["winograd", "winograd_f2", "winograd_f4"])
@pytest.mark.parametrize("where", ["x", "w", "b", "xw"])
def test_explicit_winograd_keeps_every_non_finite_output(where, algorithm, dtype):
    rng = np.random.default_rng(len(where))
    x, w, b = make(rng, (2, 8, 9, 10, 11), (8, 8, 3, 3, 3), dtype, where)
    direct = conv3d(x, w, b, padding=1, algorithm="direct")
    y = conv3d(x, w, b, padding=1, algorithm=algorithm)
    lost = ~np.isfinite(direct) & np.isfinite(y)
    assert not lost.any(), f"{int(lost.sum())} non-finite outputs became finite"


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_weight_with_zero_padding_poisons_its_whole_channel(dtype):
    # PyTorch: every output of channel o multiplies w[o, ...] with something (padding zeros
    # included), so one NaN/inf weight makes the whole channel NaN; other channels are finite.
    x = np.ones((1, 2, 4, 4, 4), dtype)
    for value in SPECIALS:
        w = np.ones((3, 2, 3, 3, 3), dtype)
        w[1, 0, 0, 0, 0] = value
        for kwargs in (dict(padding=1), dict(padding=(1, 0, 0)), dict(padding=(0, 1, 0)),
                       dict(padding=(0, 0, 1)), dict(padding="same")):
            for algorithm in ("direct", "auto"):
                y = conv3d(x, w, algorithm=algorithm, **kwargs)
                assert np.isfinite(y[0, [0, 2]]).all()
                assert np.isnan(y[0, 1]).sum() + np.isinf(y[0, 1]).sum() == y[0, 1].size
                # the tap w[1, 0, 0, 0, 0] of output (0, 0, 0) reads the padding: 0 * inf = NaN
                assert np.isnan(y[0, 1, 0, 0, 0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["direct", "auto"])
def test_subnormals_are_not_flushed(algorithm, dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.full((1, 2, 5, 5, 5), 3 * tiny, dtype)
    w = np.ones((4, 2, 3, 3, 3), dtype)
    y = conv3d(x, w, padding=1, algorithm=algorithm)
    check_conv(y, x, w, None, 1, 1)
    assert (y > 0).all() and y.max() == 2 * 27 * 3 * tiny  # exact: sums of subnormals
    # a subnormal weight times a normal input stays subnormal, not zero
    y = conv3d(np.ones((1, 2, 3, 3, 3), dtype), np.full((1, 2, 3, 3, 3), tiny, dtype),
               algorithm=algorithm)
    assert y.item() == 54 * tiny


# -------------------------------------------------------------------------- against torch

# The oracle is PyTorch's own direct convolution (aten slow_conv3d: every tap multiplied, the
# zero padding included), which float64 always uses. Its oneDNN path for float32 skips the
# padded taps for some shapes and not for others (a NaN weight with padding=1 on a 2x4x6x7x8
# input gives 420 NaN outputs with oneDNN, 672 without), so it is switched off here.
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")


def torch_conv(x, w, b, kwargs, padding_mode="zeros"):
    torch = pytest.importorskip("torch")
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        if padding_mode == "zeros":
            return torch.nn.functional.conv3d(
                torch.from_numpy(x), torch.from_numpy(w),
                None if b is None else torch.from_numpy(b), **kwargs).numpy()
        m = torch.nn.Conv3d(w.shape[1] * kwargs.get("groups", 1), w.shape[0], w.shape[2:],
                            padding_mode=padding_mode, bias=b is not None,
                            dtype=torch.float32 if x.dtype == np.float32 else torch.float64,
                            **kwargs)
        m.weight.copy_(torch.from_numpy(w))
        if b is not None:
            m.bias.copy_(torch.from_numpy(b))
        return m(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "w", "b", "xw", "xwb"])
@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_positions_match_torch(layer, where, dtype):
    x, w, b, kwargs = layer_case(layer, where, dtype)
    expected = torch_conv(x, w, b, kwargs)
    for algorithm in ("direct", "auto"):
        y = conv3d(x, w, b, algorithm=algorithm, **kwargs)
        assert_same_pattern(y, expected, algorithm)
        assert_finite_close(y, expected, dtype)


@st.composite
def special_cases(draw):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 9))
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(3))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(3))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(3))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    size = []
    for kk, d, p in zip(k, dilation, padding):
        lo = max(1, d * (kk - 1) + 1 - 2 * p, p + 1)
        size.append(draw(st.integers(lo, lo + 4)))
    return dict(
        x=(draw(st.integers(1, 2)), cg * groups) + tuple(size), w=(og * groups, cg) + k,
        kwargs=dict(stride=stride, dilation=dilation, padding=padding, groups=groups),
        mode=mode, dtype=draw(st.sampled_from(DTYPES)),
        where=draw(st.sampled_from(["x", "w", "b", "xw", "xwb"])),
        count=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2**16)))


@budget(150)
@given(special_cases())
def test_hypothesis_positions_match_torch(case):
    pytest.importorskip("torch")
    rng = np.random.default_rng(case["seed"])
    x, w, b = make(rng, case["x"], case["w"], case["dtype"], case["where"], case["count"])
    expected = torch_conv(x, w, b, case["kwargs"], case["mode"])
    m = Conv3d(case["x"][1], case["w"][0], case["w"][2:], padding_mode=case["mode"],
               dtype=case["dtype"], rng=0, **case["kwargs"])
    m.weight, m.bias = w, b
    results = {"module": m(x)}
    if case["mode"] == "zeros":
        for algorithm in ("direct", "auto"):
            results[algorithm] = conv3d(x, w, b, algorithm=algorithm, **case["kwargs"])
    for name, y in results.items():
        assert_same_pattern(y, expected, name)
        assert_finite_close(y, expected, case["dtype"])
