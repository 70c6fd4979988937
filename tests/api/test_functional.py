"""Numerical correctness of conv3d_cpu against the float64 NumPy reference.

Every comparison uses ``reference.check_conv``: a rigorous rounding-error bound
(gamma_n * sum|w*x|) valid for any summation order, so it is tight but never flaky.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conv3d_cpu
from conv3d_cpu import Conv3d, conv3d
from reference import (
    PADDING_MODES,
    PADDING_SEMANTICS,
    check_conv,
    output_size,
    padding_lo_hi,
    same_padding,
    triple,
)

DTYPES = [np.float32, np.float64]


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def run_module(
    cin, cout, kernel_size, xshape, *, stride=1, padding=0, dilation=1, groups=1, bias=True,
    padding_mode="zeros", dtype=np.float32, seed=0,
):
    """Build a seeded module, run it on random data, check vs the reference; return (m, x, y)."""
    rng = np.random.default_rng(seed)
    m = Conv3d(cin, cout, kernel_size, stride=stride, padding=padding, dilation=dilation,
               groups=groups, bias=bias, padding_mode=padding_mode, dtype=dtype, rng=seed)
    x = randn(rng, xshape, dtype)
    y = m(x)
    assert isinstance(y, np.ndarray)
    assert y.dtype == np.dtype(dtype)
    assert y.flags.c_contiguous
    check_conv(y, x, m.weight, m.bias, stride, padding, dilation, groups, padding_mode, dtype)
    return m, x, y


def make_layout(x, layout):
    """Return an array equal to x with the requested memory layout (not C-contiguous)."""
    if layout == "C":
        return x
    if layout == "F":
        out = np.asfortranarray(x)
    elif layout == "strided":  # every axis sliced with step 2 out of a bigger buffer
        big = np.zeros(tuple(2 * s + 1 for s in x.shape), dtype=x.dtype)
        view = big[tuple(slice(1, None, 2) for _ in x.shape)]
        view[...] = x
        out = view
    elif layout == "channels_last":  # transposed view, like torch.channels_last_3d
        perm = (0, 2, 3, 4, 1) if x.ndim == 5 else (1, 2, 3, 0)
        inv = np.argsort(perm)
        out = np.ascontiguousarray(x.transpose(perm)).transpose(inv)
    elif layout == "reversed":  # negative strides on all spatial axes
        out = np.ascontiguousarray(x[..., ::-1, ::-1, ::-1])[..., ::-1, ::-1, ::-1]
    elif layout == "readonly":
        out = x.copy()
        out.setflags(write=False)
    else:
        raise AssertionError(layout)
    np.testing.assert_array_equal(out, x)
    return out


LAYOUTS = ["F", "strided", "channels_last", "reversed", "readonly"]


# ----------------------------------------------------------------- basics

def test_exports():
    assert conv3d_cpu.Conv3d is Conv3d
    assert conv3d_cpu.conv3d is conv3d


def test_cross_correlation_not_convolution():
    # Kernel must not be flipped: y[i] = 10*x[i] + 1*x[i+1].
    x = np.arange(1.0, 5.0).reshape(1, 1, 1, 1, 4)
    w = np.array([10.0, 1.0]).reshape(1, 1, 1, 1, 2)
    for dtype in DTYPES:
        y = conv3d(x.astype(dtype), w.astype(dtype))
        assert y.dtype == dtype
        assert y.ravel().tolist() == [12.0, 23.0, 34.0]


@pytest.mark.parametrize(
    "mode, pad, expected", PADDING_SEMANTICS,
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_padding_mode_values_with_identity_kernel(mode, pad, expected, dtype):
    m = Conv3d(1, 1, 1, padding=(0, 0, pad), padding_mode=mode, bias=False, dtype=dtype)
    m.weight = np.ones((1, 1, 1, 1, 1), dtype=dtype)
    y = m(np.arange(3, dtype=dtype).reshape(1, 1, 1, 1, 3))
    assert y.shape == (1, 1, 1, 1, len(expected))
    assert y.ravel().tolist() == expected


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_only_adds_per_channel_constant(dtype):
    m = Conv3d(2, 3, 2, padding=1, dtype=dtype, rng=1)
    x = np.zeros((1, 2, 3, 3, 3), dtype=dtype)
    y = m(x)
    np.testing.assert_array_equal(y, np.broadcast_to(m.bias[None, :, None, None, None], y.shape))


# ------------------------------------------------------- padding modes

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize(
    "kernel_size, padding, stride, dilation",
    [
        (3, 1, 1, 1),
        (3, (0, 1, 2), 1, 1),
        ((2, 3, 4), (1, 2, 3), (2, 1, 2), 1),
        ((3, 2, 3), 2, 1, (2, 1, 1)),
        ((2, 3, 4), "same", 1, 1),
        ((2, 3, 4), "same", 1, (2, 1, 2)),
        ((3, 3, 3), "valid", (1, 2, 1), 1),
        (1, (2, 0, 1), 1, 1),
    ],
)
def test_padding_modes(mode, kernel_size, padding, stride, dilation, dtype):
    xshape = (2, 3, 5, 6, 7)
    m, x, y = run_module(3, 4, kernel_size, xshape, stride=stride, padding=padding,
                         dilation=dilation, padding_mode=mode, dtype=dtype, seed=11)
    pads = padding_lo_hi(padding, triple(kernel_size), dilation)
    assert y.shape == (2, 4) + output_size(xshape[2:], kernel_size, stride, pads, dilation)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_padding_limits_that_are_allowed(mode):
    # reflect: pad 2 on size 3 ok; circular: pad 3 on size 3 ok; replicate: pad 4 on size 3 ok
    pad = {"zeros": 4, "reflect": 2, "replicate": 4, "circular": 3}[mode]
    m, x, y = run_module(2, 2, 1, (1, 2, 3, 3, 3), padding=pad, padding_mode=mode,
                         dtype=np.float64, seed=3)
    assert y.shape == (1, 2) + (3 + 2 * pad,) * 3


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_module_equals_explicit_pad_then_valid_conv(mode):
    # reference doc 1.5: non-zeros modes are F.pad followed by a padding-free conv
    rng = np.random.default_rng(21)
    m = Conv3d(2, 3, (2, 3, 2), stride=(1, 2, 1), padding=(1, 2, 1), padding_mode=mode,
               dtype=np.float64, rng=21)
    x = randn(rng, (2, 2, 4, 5, 6))
    np_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2), (1, 1)), mode=np_mode[mode])
    expected = conv3d(xp, m.weight, m.bias, stride=(1, 2, 1))
    np.testing.assert_allclose(m(x), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------- groups

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "cin, cout, groups, kernel_size, stride, padding",
    [
        (4, 4, 4, 3, 1, 1),               # depthwise
        (3, 6, 3, 3, 1, 1),               # depthwise, multiplier 2
        (4, 12, 4, (1, 3, 2), 2, (0, 1, 1)),  # depthwise, multiplier 3, strided
        (4, 8, 2, 3, 1, 0),
        (6, 4, 2, (2, 3, 2), (2, 1, 1), 1),
        (6, 9, 3, 2, 1, "same"),
        (8, 8, 8, (3, 1, 3), 1, "same"),  # depthwise 'same'
        (4, 2, 2, 1, 1, 0),
    ],
)
@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_groups(cin, cout, groups, kernel_size, stride, padding, dtype, mode):
    run_module(cin, cout, kernel_size, (2, cin, 5, 4, 6), stride=stride, padding=padding,
               groups=groups, padding_mode=mode, dtype=dtype, seed=cin * 10 + cout)


def test_groups_equal_concatenated_per_group_convs():
    # test_Conv3d_groups_nobias / _wbias (reference doc 5.5)
    rng = np.random.default_rng(5)
    x = randn(rng, (2, 4, 6, 6, 6))
    for bias in (False, True):
        m = Conv3d(4, 16, 3, groups=2, bias=bias, dtype=np.float64, rng=5)
        y = m(x)
        b = m.bias if bias else None
        y0 = conv3d(x[:, :2], m.weight[:8], None if b is None else b[:8])
        y1 = conv3d(x[:, 2:], m.weight[8:], None if b is None else b[8:])
        np.testing.assert_allclose(y, np.concatenate([y0, y1], axis=1), rtol=1e-12, atol=1e-12)
        check_conv(y, x, m.weight, b, groups=2)


# ------------------------------------------------- stride and dilation

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [1, 2, 3, (1, 2, 3), (3, 1, 2)])
@pytest.mark.parametrize("dilation", [1, 2, (1, 2, 3)])
def test_stride_dilation(stride, dilation, dtype):
    run_module(2, 3, (2, 3, 2), (2, 2, 7, 8, 9), stride=stride, padding=(1, 0, 2),
               dilation=dilation, dtype=dtype, seed=7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_equal_to_padded_input_gives_size_one(dtype):
    m, x, y = run_module(2, 3, (3, 5, 4), (2, 2, 1, 3, 4), padding=(1, 1, 0), dtype=dtype)
    assert y.shape == (2, 3, 1, 1, 1)


# ------------------------------------------------------- 'same' / 'valid'

@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("kernel_size", [2, 3, 4, (2, 3, 4), (4, 1, 2), (1, 2, 5)])
@pytest.mark.parametrize("dilation", [1, 2, 3, (3, 2, 1)])
def test_same_padding(kernel_size, dilation, mode):
    xshape = (1, 2, 7, 6, 8)
    m, x, y = run_module(2, 3, kernel_size, xshape, padding="same", dilation=dilation,
                         padding_mode=mode, dtype=np.float64, seed=13)
    assert y.shape == (1, 3, 7, 6, 8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_padding_is_asymmetric_on_the_far_side(dtype):
    # Kernel (2,3,4): pads D (0,1), H (1,1), W (1,2) -- the extra element is on the right.
    rng = np.random.default_rng(17)
    x = randn(rng, (1, 2, 5, 6, 7), dtype)
    w = randn(rng, (3, 2, 2, 3, 4), dtype)
    y = conv3d(x, w, padding="same")
    assert same_padding((2, 3, 4)) == ((0, 1), (1, 1), (1, 2))
    xp = np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 1), (1, 2)))
    np.testing.assert_allclose(y, conv3d(xp, w), rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    check_conv(y, x, w, None, 1, "same")
    # the mirrored (wrong) split must give a different answer
    xm = np.pad(x, ((0, 0), (0, 0), (1, 0), (1, 1), (2, 1)))
    assert not np.allclose(y, conv3d(xm, w), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_valid_padding(mode):
    m, x, y = run_module(3, 4, (2, 3, 4), (2, 3, 6, 5, 4), padding="valid", padding_mode=mode,
                         dtype=np.float64)
    assert y.shape == (2, 4, 5, 3, 1)


# ------------------------------------------------------------- unbatched

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_unbatched_is_batched_of_one(mode, dtype):
    rng = np.random.default_rng(23)
    m = Conv3d(3, 4, (2, 3, 2), padding=(1, 1, 2), padding_mode=mode, dtype=dtype, rng=23)
    x = randn(rng, (3, 4, 5, 6), dtype)
    y = m(x)
    assert y.shape == (4, 5, 5, 9)
    assert y.dtype == dtype and y.flags.c_contiguous
    # reference doc 3.2: bit-identical to batched(x[None])[0]
    np.testing.assert_array_equal(y, m(x[None])[0])
    check_conv(y, x, m.weight, m.bias, 1, (1, 1, 2), 1, 1, mode)


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_unbatched(dtype):
    rng = np.random.default_rng(29)
    x = randn(rng, (4, 5, 6, 7), dtype)
    w = randn(rng, (6, 2, 3, 3, 3), dtype)
    b = randn(rng, (6,), dtype)
    y = conv3d(x, w, b, padding=1, groups=2)
    assert y.shape == (6, 5, 6, 7)
    np.testing.assert_array_equal(y, conv3d(x[None], w, b, padding=1, groups=2)[0])
    check_conv(y, x, w, b, 1, 1, 1, 2)


# --------------------------------------------------------------- layouts

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_input_layouts(layout, mode, dtype):
    rng = np.random.default_rng(31)
    m = Conv3d(3, 4, 3, stride=(1, 2, 1), padding=1, padding_mode=mode, dtype=dtype, rng=31)
    x = randn(rng, (2, 3, 5, 6, 7), dtype)
    y_ref = m(x)
    xl = make_layout(x, layout)
    xl_before = xl.copy()
    y = m(xl)
    assert y.dtype == dtype and y.flags.c_contiguous
    check_conv(y, x, m.weight, m.bias, (1, 2, 1), 1, 1, 1, mode)
    # reference doc 3.6: non-contiguous inputs give bit-identical results
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(xl, xl_before)  # input untouched


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unbatched_input_layouts(layout):
    rng = np.random.default_rng(37)
    m = Conv3d(2, 3, 2, padding=(0, 1, 1), padding_mode="replicate", dtype=np.float64, rng=37)
    x = randn(rng, (2, 4, 5, 3))
    y = m(make_layout(x, layout))
    np.testing.assert_array_equal(y, m(x))
    check_conv(y, x, m.weight, m.bias, 1, (0, 1, 1), 1, 1, "replicate")


def test_sliced_batch_and_channel_views():
    rng = np.random.default_rng(41)
    big = randn(rng, (5, 7, 6, 7, 8))
    x = big[1:5:2, 1:7:3, 1:, ::2, 2:7]  # (2, 2, 5, 4, 5), odd offsets and steps
    m = Conv3d(2, 3, 3, padding=1, dtype=np.float64, rng=41)
    y = m(x)
    np.testing.assert_array_equal(y, m(np.ascontiguousarray(x)))
    check_conv(y, x, m.weight, m.bias, 1, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_noncontiguous_weight_and_bias(dtype):
    rng = np.random.default_rng(43)
    x = randn(rng, (2, 3, 5, 5, 5), dtype)
    w = np.asfortranarray(randn(rng, (4, 3, 2, 3, 2), dtype))
    bbig = randn(rng, (8,), dtype)
    b = bbig[::2]
    y = conv3d(x, w, b, padding=1)
    np.testing.assert_array_equal(y, conv3d(x, np.ascontiguousarray(w), np.ascontiguousarray(b),
                                            padding=1))
    check_conv(y, x, w, b, 1, 1)
    wr = w.copy()
    wr.setflags(write=False)
    np.testing.assert_array_equal(conv3d(make_layout(x, "readonly"), wr, b, padding=1), y)


def test_output_is_a_new_array():
    rng = np.random.default_rng(47)
    m = Conv3d(2, 2, 1, bias=False, dtype=np.float64, rng=47)
    m.weight = np.eye(2).reshape(2, 2, 1, 1, 1)
    x = randn(rng, (1, 2, 3, 3, 3))
    y1 = m(x)
    np.testing.assert_array_equal(y1, x)
    assert not np.shares_memory(y1, x)
    y2 = m(x)
    assert not np.shares_memory(y1, y2)
    y1[...] = 0.0
    np.testing.assert_array_equal(y2, x)


# ------------------------------------------------------------ N = 0

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_zero_batch_module(mode, dtype):
    m = Conv3d(3, 4, (2, 3, 4), padding=1, padding_mode=mode, dtype=dtype)
    y = m(np.zeros((0, 3, 3, 4, 5), dtype=dtype))
    assert y.shape == (0, 4, 4, 4, 4)
    assert y.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_batch_functional(dtype):
    w = np.ones((6, 2, 3, 3, 3), dtype=dtype)
    y = conv3d(np.zeros((0, 4, 5, 6, 7), dtype=dtype), w, np.ones(6, dtype=dtype), groups=2,
               stride=(1, 2, 1))
    assert y.shape == (0, 6, 3, 2, 5) and y.dtype == dtype
    y = conv3d(np.zeros((0, 4, 5, 6, 7), dtype=dtype), w, padding="same", groups=2)
    assert y.shape == (0, 6, 5, 6, 7)


def test_zero_batch_shape_of_doc_example():
    # reference doc 3.2: Conv3d(16, 33, (3,5,2), stride=(2,1,1), padding=(4,2,0)) on
    # (20,16,10,50,100) gives (20,33,8,50,99); checked cheaply with N = 0.
    m = Conv3d(16, 33, (3, 5, 2), stride=(2, 1, 1), padding=(4, 2, 0))
    assert m(np.zeros((0, 16, 10, 50, 100), np.float32)).shape == (0, 33, 8, 50, 99)
    # and the values on a smaller batch/channel count with the same spatial geometry
    run_module(2, 3, (3, 5, 2), (1, 2, 10, 12, 14), stride=(2, 1, 1), padding=(4, 2, 0))


# ---------------------------------------------------- precision/dtypes

@pytest.mark.parametrize("dtype", DTYPES)
def test_larger_fan_in(dtype):
    # fan_in = 16*27 = 432, as in reference doc 5.1 (C16->33, k3, p1)
    m, x, y = run_module(16, 8, 3, (1, 16, 6, 7, 8), padding=1, dtype=dtype, seed=53)
    if dtype == np.float32:
        ref = check_conv(y, x, m.weight, m.bias, 1, 1)
        # the default precision ('high'): 'auto' may pick F(4^3), bounded by 1e-4 x max|y|
        assert np.max(np.abs(y - ref)) < 1e-4 * np.max(np.abs(ref))
        # 'highest': PyTorch's own error, measured for this config: 2.1e-6 (reference doc 5.1)
        with conv3d_cpu.float32_precision("highest"):
            y = m(x)
        assert np.max(np.abs(y - ref)) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_extremes_are_not_lost(dtype):
    # Large-magnitude and tiny values must not overflow/flush in the accumulation.
    x = np.full((1, 1, 2, 2, 2), 1e30 if dtype == np.float32 else 1e300, dtype=dtype)
    w = np.full((1, 1, 2, 2, 2), 1e-30 if dtype == np.float32 else 1e-300, dtype=dtype)
    y = conv3d(x, w)
    np.testing.assert_allclose(y, 8.0, rtol=1e-5)
    # NaN/inf propagate like IEEE arithmetic
    x2 = np.ones((1, 1, 3, 3, 3), dtype=dtype)
    x2[0, 0, 0, 0, 0] = np.nan
    y2 = conv3d(x2, np.ones((1, 1, 2, 2, 2), dtype=dtype))
    assert np.isnan(y2[0, 0, 0, 0, 0]) and np.isfinite(y2[0, 0, 1, 1, 1])


# ---------------------------------------- determinism and threads

CONFIGS_FOR_DETERMINISM = [
    dict(cin=3, cout=5, k=3, stride=1, padding=1, dilation=1, groups=1, x=(2, 3, 9, 10, 11)),
    dict(cin=4, cout=8, k=(2, 3, 4), stride=(2, 1, 2), padding=(1, 0, 2), dilation=1, groups=2,
         x=(3, 4, 8, 9, 10)),
    dict(cin=6, cout=6, k=3, stride=1, padding="same", dilation=(1, 2, 1), groups=6,
         x=(2, 6, 7, 8, 9)),
    dict(cin=16, cout=16, k=3, stride=1, padding=1, dilation=1, groups=1, x=(1, 16, 8, 8, 8)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS_FOR_DETERMINISM)
def test_num_threads_bitwise_equal(cfg, dtype):
    rng = np.random.default_rng(59)
    x = randn(rng, cfg["x"], dtype)
    w = randn(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + triple(cfg["k"]), dtype)
    b = randn(rng, (cfg["cout"],), dtype)
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
              groups=cfg["groups"])
    y1 = conv3d(x, w, b, num_threads=1, **kw)
    check_conv(y1, x, w, b, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    for nt in (2, 3, 7, None):
        np.testing.assert_array_equal(conv3d(x, w, b, num_threads=nt, **kw), y1,
                                      err_msg=f"num_threads={nt}")
    # 'auto' may pick Winograd for some of these layers; its accuracy is tested in
    # test_winograd.py, here only that the direct path gives the same bits on any thread count.
    yd = conv3d(x, w, b, algorithm="direct", num_threads=2, **kw)
    check_conv(yd, x, w, b, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    np.testing.assert_array_equal(conv3d(x, w, b, algorithm="direct", num_threads=1, **kw), yd)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_repeated_calls_bitwise_equal(mode):
    rng = np.random.default_rng(61)
    m = Conv3d(4, 6, 3, padding=2, dilation=(1, 2, 1), padding_mode=mode, rng=61)
    x = randn(rng, (2, 4, 6, 7, 8), np.float32)
    y0 = m(x)
    for _ in range(3):
        np.testing.assert_array_equal(m(x), y0)
    np.testing.assert_array_equal(m.forward(x), y0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_batch_slice_consistency(mode, dtype):
    # reference doc 3.6: m(x)[1:] equals m(x[1:]) exactly
    rng = np.random.default_rng(67)
    m = Conv3d(3, 4, (3, 2, 3), stride=(1, 2, 1), padding=1, padding_mode=mode, dtype=dtype, rng=67)
    x = randn(rng, (4, 3, 6, 7, 5), dtype)
    y = m(x)
    np.testing.assert_array_equal(y[1:], m(x[1:]))
    for i in range(4):
        np.testing.assert_array_equal(y[i], m(x[i]))
        np.testing.assert_array_equal(y[i:i + 1], m(x[i:i + 1]))


def test_odd_sizes_many_threads():
    # Sizes that do not divide evenly into thread chunks or tiles.
    run_module(5, 7, (3, 2, 3), (3, 5, 13, 11, 17), stride=(1, 1, 2), padding=(1, 0, 1),
               dtype=np.float32, seed=71)
    rng = np.random.default_rng(71)
    x = randn(rng, (1, 3, 31, 3, 29), np.float32)
    w = randn(rng, (2, 3, 1, 3, 5), np.float32)
    y = conv3d(x, w, padding=(0, 1, 2), num_threads=2)
    check_conv(y, x, w, None, 1, (0, 1, 2))
    np.testing.assert_array_equal(y, conv3d(x, w, padding=(0, 1, 2), num_threads=1))


# ----------------------------------- PyTorch's own test configurations

# reference doc 5.2: common_nn new_module_tests (constructor args, input, output shape)
COMMON_NN_CASES = [
    ("Conv3d", (2, 3, (2, 3, 2)), {}, (1, 2, 4, 5, 4), (1, 3, 3, 3, 3)),
    ("Conv3d_no_bias", (2, 3, (2, 3, 4), 1, 0, 1, 1, False), {}, (1, 2, 3, 4, 5), (1, 3, 2, 2, 2)),
    ("Conv3d_1x1x1_no_bias", (2, 3, (1, 1, 1), 1, 0, 1, 1, False), {}, (1, 2, 3, 4, 5),
     (1, 3, 3, 4, 5)),
    ("Conv3d_stride", (3, 4, 2, 2), {}, (2, 3, 5, 5, 5), (2, 4, 2, 2, 2)),
    ("Conv3d_stride_padding", (3, 4, 2, 2, 1), {}, (2, 3, 5, 5, 5), (2, 4, 3, 3, 3)),
    ("Conv3d_zero_batch", (3, 4, (2, 3, 4)), {}, (0, 3, 3, 4, 5), (0, 4, 2, 2, 2)),
    ("Conv3d_groups", (2, 4), dict(kernel_size=3, groups=2), (1, 2, 4, 5, 4), (1, 4, 2, 3, 2)),
    ("Conv3d_dilated", (3, 4), dict(kernel_size=2, dilation=2), (2, 3, 5, 5, 5), (2, 4, 3, 3, 3)),
    ("Conv3d_dilated_strided", (3, 4), dict(kernel_size=2, dilation=2, stride=2),
     (2, 3, 5, 5, 5), (2, 4, 2, 2, 2)),
    ("Conv3d_pad_valid", (3, 4, (2, 3, 4)), dict(padding="valid"), (2, 3, 6, 5, 4),
     (2, 4, 5, 3, 1)),
    ("Conv3d_pad_same", (3, 4, (2, 3, 4)), dict(padding="same"), (2, 3, 6, 5, 4),
     (2, 4, 6, 5, 4)),
    ("Conv3d_pad_same_dilated", (3, 4, (2, 3, 4)), dict(padding="same", dilation=2),
     (2, 3, 6, 5, 4), (2, 4, 6, 5, 4)),
    ("Conv3d_circular_stride2_pad2", (2, 3, 3, 2, (1, 2, 3), 1, 1, True, "circular"), {},
     (2, 2, 4, 4, 4), (2, 3, 2, 3, 4)),
    ("Conv3d_replicate_stride2_pad2", (2, 3, 3, 2, (1, 2, 3), 1, 1, True, "replicate"), {},
     (2, 2, 4, 4, 4), (2, 3, 2, 3, 4)),
    ("Conv3d_zeros_stride2_pad2", (2, 3, 3, 2, (1, 2, 3), 1, 1, True, "zeros"), {},
     (2, 2, 4, 4, 4), (2, 3, 2, 3, 4)),
    # skipped upstream (issue #27655) but works in torch 2.13 with the same output shape
    ("Conv3d_reflect_stride2_pad2", (2, 3, 3, 2, (1, 2, 3), 1, 1, True, "reflect"), {},
     (2, 2, 4, 4, 4), (2, 3, 2, 3, 4)),
]

_CONV3D_ARGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                "groups", "bias", "padding_mode")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, args, kwargs, xshape, yshape", COMMON_NN_CASES,
                         ids=[c[0] for c in COMMON_NN_CASES])
def test_pytorch_common_nn_cases(name, args, kwargs, xshape, yshape, dtype):
    full = dict(zip(_CONV3D_ARGS, args), **kwargs)
    m = Conv3d(*args, dtype=dtype, rng=len(name), **kwargs)
    x = randn(np.random.default_rng(len(name)), xshape, dtype)
    y = m(x)
    assert y.shape == yshape and y.dtype == dtype
    assert (m.bias is None) == (full.get("bias", True) is False)
    check_conv(y, x, m.weight, m.bias, full.get("stride", 1), full.get("padding", 0),
               full.get("dilation", 1), full.get("groups", 1), full.get("padding_mode", "zeros"))


# reference doc 5.3: ModuleInfo inputs for ConvNd with N=3
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding, batched_out", [(0, (2, 5, 1, 2, 3)), ("same", (2, 5, 3, 4, 5))])
def test_pytorch_module_info_inputs(padding, batched_out, dtype):
    m = Conv3d(4, 5, 3, padding=padding, dtype=dtype, rng=3)
    x = randn(np.random.default_rng(3), (2, 4, 3, 4, 5), dtype)
    y = m(x)
    assert y.shape == batched_out
    check_conv(y, x, m.weight, m.bias, 1, padding)
    yu = m(x[0])
    assert yu.shape == batched_out[1:]
    np.testing.assert_array_equal(yu, m(x[0][None])[0])  # no-batch reference adds a batch dim
    check_conv(yu, x[0], m.weight, m.bias, 1, padding)


# reference doc 5.4: OpInfo samples for nn.functional.conv3d
OPINFO_SAMPLES = [
    ((1, 1, 4, 4, 4), (1, 1, 1, 1, 1), True, dict(padding="same"), (1, 1, 4, 4, 4)),
    ((1, 1, 4, 4, 4), (1, 1, 4, 4, 4), True, dict(stride=(2, 2, 2)), (1, 1, 1, 1, 1)),
    ((1, 1, 5, 5, 5), (1, 1, 3, 3, 3), True, dict(dilation=2), (1, 1, 1, 1, 1)),
    ((1, 1, 1, 1, 10), (1, 1, 1, 1, 4), False, dict(padding="valid"), (1, 1, 1, 1, 7)),
    ((1, 1, 10, 11, 12), (1, 1, 1, 2, 5), False, dict(padding="same"), (1, 1, 10, 11, 12)),
    ((1, 1, 10, 11, 12), (1, 1, 1, 2, 5), False, dict(padding="same", dilation=2),
     (1, 1, 10, 11, 12)),
    ((1, 1, 10, 11, 12), (1, 1, 4, 4, 4), False, dict(padding="same", dilation=3),
     (1, 1, 10, 11, 12)),
    ((3, 9, 3, 1, 9), (3, 3, 3, 1, 9), True, dict(groups=3), (3, 3, 1, 1, 1)),
    ((3, 9, 3, 1, 9), (3, 3, 3, 1, 9), True, dict(groups=3, stride=2), (3, 3, 1, 1, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape, wshape, has_bias, kwargs, yshape", OPINFO_SAMPLES)
def test_pytorch_opinfo_samples(xshape, wshape, has_bias, kwargs, yshape, dtype):
    rng = np.random.default_rng(79)
    x = randn(rng, xshape, dtype)
    w = randn(rng, wshape, dtype)
    b = randn(rng, (wshape[0],), dtype) if has_bias else None
    y = conv3d(x, w, b, **kwargs)
    assert y.shape == yshape and y.dtype == dtype
    args = (kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("dilation", 1),
            kwargs.get("groups", 1))
    check_conv(y, x, w, b, *args)
    # each sample also runs unbatched
    yu = conv3d(x[0], w, b, **kwargs)
    assert yu.shape == yshape[1:]
    check_conv(yu, x[0], w, b, *args)


# reference doc 5.5
def test_pytorch_conv3d_issue_120406():
    for dtype in DTYPES:
        y = conv3d(np.ones((2, 3, 8, 9, 26), dtype), np.ones((3, 1, 1, 1, 17), dtype), groups=3)
        assert y.shape == (2, 3, 8, 9, 10) and y.dtype == dtype
        assert np.all(y == 17.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pytorch_conv3d_same_padding_equivalences(dtype):
    # test_conv3d_same_padding
    rng = np.random.default_rng(83)
    x = randn(rng, (1, 1, 10, 11, 12), dtype)
    w = randn(rng, (1, 1, 1, 2, 5), dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv3d(x, w, padding="same"),
                               conv3d(x, w, padding=(0, 1, 2))[..., :, 1:, :], **tol)
    np.testing.assert_allclose(conv3d(x, w, padding="same", dilation=2),
                               conv3d(x, w, padding=(0, 1, 4), dilation=2), **tol)
    w4 = randn(rng, (1, 1, 4, 4, 4), dtype)
    np.testing.assert_allclose(conv3d(x, w4, padding="same", dilation=3),
                               conv3d(x, w4, padding=5, dilation=3)[..., 1:, 1:, 1:], **tol)


@pytest.mark.parametrize("dilation", [1, (3, 2, 1)])
def test_pytorch_module_same_padding(dilation):
    # test_Conv3d_module_same_padding: module vs functional 'same', kernel (2,3,4)
    rng = np.random.default_rng(89)
    x = randn(rng, (1, 1, 4, 4, 4), np.float64)
    m = Conv3d(1, 2, (2, 3, 4), padding="same", dilation=dilation, dtype=np.float64, rng=89)
    expected = conv3d(x, m.weight, m.bias, padding="same", dilation=dilation)
    np.testing.assert_array_equal(m(x), expected)
    check_conv(m(x), x, m.weight, m.bias, 1, "same", dilation)


def test_pytorch_module_same_padding_circular():
    # test_Conv3d_module_same_padding: circular vs F.pad([1,2,1,1,0,1], 'circular') + valid conv
    rng = np.random.default_rng(97)
    x = randn(rng, (1, 1, 4, 4, 4), np.float64)
    m = Conv3d(1, 2, (2, 3, 4), padding="same", padding_mode="circular", dtype=np.float64, rng=97)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 1), (1, 2)), mode="wrap")
    np.testing.assert_allclose(m(x), conv3d(xp, m.weight, m.bias), rtol=1e-12, atol=1e-12)


def test_pytorch_conv_shapecheck_valid_cases():
    # test_conv_shapecheck: the non-raising halves
    assert Conv3d(1, 1, 3)(np.ones((3, 1, 3, 3, 3), np.float32)).shape == (3, 1, 1, 1, 1)
    assert Conv3d(1, 1, 3, padding=1)(np.ones((3, 1, 2, 2, 2), np.float32)).shape == (3, 1, 2, 2, 2)


def test_functional_doc_example():
    # reference doc 4: (20,16,50,10,20) * (33,16,3,3,3) -> (20,33,48,8,18); values on N=1
    w = randn(np.random.default_rng(101), (33, 16, 3, 3, 3), np.float32)
    assert conv3d(np.zeros((0, 16, 50, 10, 20), np.float32), w).shape == (0, 33, 48, 8, 18)
    x = randn(np.random.default_rng(102), (1, 16, 12, 10, 20), np.float32)
    y = conv3d(x, w)
    assert y.shape == (1, 33, 10, 8, 18)
    check_conv(y, x, w)
    # and 'same' on (2,4,5,6,7) with a 3^3 kernel gives (2,6,5,6,7)
    assert conv3d(np.ones((2, 4, 5, 6, 7), np.float32), np.ones((6, 4, 3, 3, 3), np.float32),
                  padding="same").shape == (2, 6, 5, 6, 7)


@pytest.mark.parametrize("padding", [0, 1, (1,), (1, 2, 0), "valid", "same"])
def test_functional_padding_forms(padding):
    rng = np.random.default_rng(103)
    x = randn(rng, (2, 2, 4, 5, 6))
    w = randn(rng, (3, 2, 3, 2, 3))
    y = conv3d(x, w, None, padding=padding)
    check_conv(y, x, w, None, 1, padding)


# ------------------------------------------------------- hypothesis

@st.composite
def module_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    d = tuple(draw(st.integers(1, 2)) for _ in range(3))
    mode = draw(st.sampled_from(PADDING_MODES))
    pad_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if pad_kind == "same":
        stride = draw(st.sampled_from([1, (1, 1, 1)]))
        padding = "same"
    else:
        stride = draw(st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * 3)))
        padding = {"int": draw(st.integers(0, 2)),
                   "tuple": tuple(draw(st.integers(0, 2)) for _ in range(3)),
                   "valid": "valid"}[pad_kind]
    kernel_size = k[0] if len(set(k)) == 1 and draw(st.booleans()) else k
    dilation = d[0] if len(set(d)) == 1 and draw(st.booleans()) else d
    pads = padding_lo_hi(padding, k, d)
    size = []
    for ki, di, (lo, hi) in zip(k, d, pads):
        need = max(1, di * (ki - 1) + 1 - lo - hi)
        if mode == "reflect":
            need = max(need, max(lo, hi) + 1)
        elif mode == "circular":
            need = max(need, max(lo, hi))
        size.append(draw(st.integers(need, need + 4)))
    n = draw(st.integers(0, 2))
    unbatched = draw(st.booleans()) if n == 1 else False
    xshape = ((cin,) if unbatched else (n, cin)) + tuple(size)
    return dict(
        cin=cin, cout=cout, kernel_size=kernel_size, stride=stride, padding=padding,
        dilation=dilation, groups=groups, bias=draw(st.booleans()), padding_mode=mode,
        dtype=draw(st.sampled_from(DTYPES)), xshape=xshape,
        layout=draw(st.sampled_from(["C"] + LAYOUTS)), seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=60, deadline=None)
@given(module_configs())
def test_hypothesis_module(cfg):
    dtype = cfg["dtype"]
    m = Conv3d(cfg["cin"], cfg["cout"], cfg["kernel_size"], stride=cfg["stride"],
               padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"],
               bias=cfg["bias"], padding_mode=cfg["padding_mode"], dtype=dtype, rng=cfg["seed"])
    x = randn(np.random.default_rng(cfg["seed"]), cfg["xshape"], dtype)
    y = m(make_layout(x, cfg["layout"]))
    assert y.dtype == dtype and y.flags.c_contiguous
    k = triple(cfg["kernel_size"])
    pads = padding_lo_hi(cfg["padding"], k, cfg["dilation"])
    lead = cfg["xshape"][:-4] + (cfg["cout"],)
    assert y.shape == lead + output_size(cfg["xshape"][-3:], k, cfg["stride"], pads,
                                         cfg["dilation"])
    check_conv(y, x, m.weight, m.bias, cfg["stride"], cfg["padding"], cfg["dilation"],
               cfg["groups"], cfg["padding_mode"])


@st.composite
def functional_configs(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 4)) for _ in range(3))
    d = tuple(draw(st.integers(1, 3)) for _ in range(3))
    kind = draw(st.sampled_from(["int", "one", "tuple", "same", "valid"]))
    if kind == "same":
        stride, padding = 1, "same"
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(3))
        padding = {"int": draw(st.integers(0, 3)), "one": (draw(st.integers(0, 3)),),
                   "tuple": tuple(draw(st.integers(0, 3)) for _ in range(3)),
                   "valid": "valid"}[kind]
    pads = padding_lo_hi(padding, k, d)
    size = tuple(
        draw(st.integers(max(1, di * (ki - 1) + 1 - lo - hi), max(1, di * (ki - 1) + 1 - lo - hi) + 5))
        for ki, di, (lo, hi) in zip(k, d, pads)
    )
    return dict(
        x=(draw(st.integers(0, 3)), cg * groups) + size, w=(og * groups, cg) + k,
        bias=draw(st.booleans()), stride=stride, padding=padding, dilation=d, groups=groups,
        dtype=draw(st.sampled_from(DTYPES)), algorithm=draw(st.sampled_from(["auto", "direct"])),
        num_threads=draw(st.sampled_from([None, 1, 2])), seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=60, deadline=None)
@given(functional_configs())
def test_hypothesis_functional(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dtype = cfg["dtype"]
    x = randn(rng, cfg["x"], dtype)
    w = randn(rng, cfg["w"], dtype)
    b = randn(rng, (cfg["w"][0],), dtype) if cfg["bias"] else None
    y = conv3d(x, w, b, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"],
               algorithm=cfg["algorithm"], num_threads=cfg["num_threads"])
    assert y.dtype == dtype and y.flags.c_contiguous
    check_conv(y, x, w, b, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
