"""Conv3d module behaviour: repr, attributes, init, seeding, state_dict, setters."""
import math

import numpy as np
import pytest

from conv3d_cpu import Conv3d, conv3d
from reference import check_conv

DTYPES = [np.float32, np.float64]


def bound_of(in_channels, groups, kernel):
    return 1.0 / math.sqrt(in_channels // groups * int(np.prod(kernel)))


# ------------------------------------------------------------------ repr

REPR_CASES = [
    # reference doc 2.3 verified examples
    ((16, 33, 3), dict(stride=2), "Conv3d(16, 33, kernel_size=(3, 3, 3), stride=(2, 2, 2))"),
    ((16, 33, (3, 5, 2)), dict(stride=(2, 1, 1), padding=(4, 2, 0)),
     "Conv3d(16, 33, kernel_size=(3, 5, 2), stride=(2, 1, 1), padding=(4, 2, 0))"),
    ((2, 4, 3), dict(padding=1, dilation=2, groups=2, bias=False, padding_mode="reflect"),
     "Conv3d(2, 4, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1), "
     "dilation=(2, 2, 2), groups=2, bias=False, padding_mode=reflect)"),
    ((2, 4, (2, 4, 4)), dict(padding="same", dilation=(3, 1, 2)),
     "Conv3d(2, 4, kernel_size=(2, 4, 4), stride=(1, 1, 1), padding=same, dilation=(3, 1, 2))"),
    ((16, 33, 3), dict(padding="valid"),
     "Conv3d(16, 33, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=valid)"),
    # defaults: stride always shown, everything else hidden
    ((4, 6, 3), {}, "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1))"),
    ((4, 6, 3), dict(stride=1, padding=0, dilation=1, groups=1, bias=True, padding_mode="zeros",
                     device="cpu", dtype=np.float64, rng=0),
     "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1))"),
    ((4, 6, 3), dict(padding=(0, 0, 0), dilation=(1, 1, 1)),
     "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1))"),
    ((4, 6, 3), dict(padding=(0, 0, 1)),
     "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(0, 0, 1))"),
    ((4, 6, 3), dict(dilation=(1, 1, 2)),
     "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), dilation=(1, 1, 2))"),
    ((4, 6, 3), dict(bias=False), "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), bias=False)"),
    ((4, 6, 3), dict(groups=2), "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), groups=2)"),
    ((4, 6, 3), dict(padding_mode="circular"),
     "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding_mode=circular)"),
    ((4, 6, 3), dict(padding=2, padding_mode="replicate"),
     "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(2, 2, 2), "
     "padding_mode=replicate)"),
    ((4, 6, 3), dict(padding="valid", padding_mode="reflect"),
     "Conv3d(4, 6, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=valid, padding_mode=reflect)"),
    ((3, 3, (1, 2, 3)), dict(stride=(3, 2, 1), groups=3, bias=False),
     "Conv3d(3, 3, kernel_size=(1, 2, 3), stride=(3, 2, 1), groups=3, bias=False)"),
]


@pytest.mark.parametrize("args, kwargs, expected", REPR_CASES)
def test_repr(args, kwargs, expected):
    assert repr(Conv3d(*args, **kwargs)) == expected


# ------------------------------------------------------------ attributes

def test_attributes_defaults():
    m = Conv3d(4, 6, 3)
    assert m.in_channels == 4 and m.out_channels == 6
    assert m.kernel_size == (3, 3, 3) and type(m.kernel_size) is tuple
    assert m.stride == (1, 1, 1) and type(m.stride) is tuple
    assert m.padding == (0, 0, 0) and type(m.padding) is tuple
    assert m.dilation == (1, 1, 1) and type(m.dilation) is tuple
    assert m.groups == 1
    assert m.padding_mode == "zeros"
    assert np.dtype(m.dtype) == np.float32
    assert m.weight.shape == (6, 4, 3, 3, 3) and m.weight.dtype == np.float32
    assert m.bias.shape == (6,) and m.bias.dtype == np.float32
    assert isinstance(m.weight, np.ndarray) and isinstance(m.bias, np.ndarray)


def test_attributes_explicit():
    m = Conv3d(4, 8, (2, 3, 4), stride=(1, 2, 3), padding=(0, 1, 2), dilation=(3, 2, 1),
               groups=2, bias=False, padding_mode="circular", dtype=np.float64)
    assert (m.in_channels, m.out_channels, m.groups) == (4, 8, 2)
    assert m.kernel_size == (2, 3, 4)
    assert m.stride == (1, 2, 3)
    assert m.padding == (0, 1, 2)
    assert m.dilation == (3, 2, 1)
    assert m.padding_mode == "circular"
    assert np.dtype(m.dtype) == np.float64
    assert m.weight.shape == (8, 2, 2, 3, 4) and m.weight.dtype == np.float64
    assert m.bias is None
    assert all(type(v) is int for v in m.kernel_size + m.stride + m.padding + m.dilation)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_kept(padding):
    m = Conv3d(2, 2, (2, 3, 4), padding=padding)
    assert m.padding == padding


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.dtype("float32"), np.dtype("float64")])
def test_dtype_forms(dtype):
    m = Conv3d(2, 3, 2, dtype=dtype)
    assert np.dtype(m.dtype) == np.dtype(dtype)
    assert m.weight.dtype == np.dtype(dtype) and m.bias.dtype == np.dtype(dtype)
    y = m(np.ones((1, 2, 3, 3, 3), dtype=dtype))
    assert y.dtype == np.dtype(dtype)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_device_cpu(device):
    m = Conv3d(2, 3, 2, device=device)
    assert m(np.ones((1, 2, 2, 2, 2), np.float32)).shape == (1, 3, 1, 1, 1)


@pytest.mark.parametrize(
    "args, kwargs, wshape",
    [
        ((4, 8, (2, 3, 4)), dict(groups=2), (8, 2, 2, 3, 4)),  # reference doc 2.1
        ((6, 6, 3), dict(groups=6), (6, 1, 3, 3, 3)),
        ((3, 6, 1), dict(groups=3), (6, 1, 1, 1, 1)),
        ((5, 7, (1, 1, 5)), {}, (7, 5, 1, 1, 5)),
    ],
)
def test_parameter_shapes(args, kwargs, wshape):
    m = Conv3d(*args, **kwargs)
    assert m.weight.shape == wshape
    assert m.bias.shape == (wshape[0],)


# ------------------------------------------------------------------ init

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "args, kwargs, fan_in",
    [  # reference doc 2.2 table
        ((16, 33, 3), {}, 432),
        ((4, 8, (2, 3, 4)), dict(groups=2), 48),
        ((6, 6, 3), dict(groups=6), 27),
        ((8, 4, (1, 1, 5)), dict(groups=4), 10),
    ],
)
def test_init_bounds(args, kwargs, fan_in, dtype):
    m = Conv3d(*args, dtype=dtype, rng=0, **kwargs)
    bound = 1.0 / math.sqrt(fan_in)
    assert bound == pytest.approx(bound_of(args[0], kwargs.get("groups", 1), m.kernel_size))
    slack = 1 + 2 * np.finfo(dtype).eps  # the bound itself may round up in float32
    for p in (m.weight, m.bias):
        assert np.all(np.abs(p.astype(np.float64)) <= bound * slack)
        assert np.all(np.isfinite(p))
        if p.size >= 32:  # continuous draws of both signs, not a constant fill
            assert len(np.unique(p)) > p.size // 2
            assert (p > 0).any() and (p < 0).any()
    if m.weight.size > 1000:
        assert np.abs(m.weight).max() > 0.99 * bound


@pytest.mark.parametrize("dtype", DTYPES)
def test_init_weight_moments(dtype):
    # reference doc 2.2: Conv3d(64, 256, 3): fan_in 1728, std ~ bound/sqrt(3)
    m = Conv3d(64, 256, 3, dtype=dtype, rng=2024)
    w = m.weight.astype(np.float64).ravel()
    n = w.size
    bound = 1.0 / math.sqrt(1728)
    assert n == 256 * 64 * 27
    assert abs(w.mean()) < 6 * bound / math.sqrt(3 * n)  # 6 sigma of the sample mean
    # Var(X^2) for U(-b,b) is 4 b^4 / 45; allow 6 sigma on the sample variance
    assert abs(w.var() - bound**2 / 3) < 6 * math.sqrt(4 / 45) * bound**2 / math.sqrt(n)
    assert w.min() < -0.9999 * bound and w.max() > 0.9999 * bound
    assert w.min() >= -bound * (1 + 1e-6) and w.max() <= bound * (1 + 1e-6)
    # uniform, not e.g. clipped normal: each of 20 equal bins holds ~ n/20 (6 sigma)
    counts, _ = np.histogram(w, bins=20, range=(-bound, bound))
    expected = n / 20
    assert np.all(np.abs(counts - expected) < 6 * math.sqrt(expected))


@pytest.mark.parametrize("dtype", DTYPES)
def test_init_bias_moments(dtype):
    # Bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in from the weight (here 2*2*2*2 = 16).
    m = Conv3d(4, 20000, 2, groups=2, dtype=dtype, rng=7)
    b = m.bias.astype(np.float64)
    bound = 0.25
    n = b.size
    assert np.all(np.abs(b) <= bound * (1 + 1e-6))
    assert b.min() < -0.99 * bound and b.max() > 0.99 * bound
    assert abs(b.mean()) < 6 * bound / math.sqrt(3 * n)
    assert abs(b.var() - bound**2 / 3) < 6 * math.sqrt(4 / 45) * bound**2 / math.sqrt(n)


# --------------------------------------------------------------- seeding

@pytest.mark.parametrize("dtype", DTYPES)
def test_same_seed_identical_weights(dtype):
    a = Conv3d(4, 6, (2, 3, 2), groups=2, dtype=dtype, rng=123)
    b = Conv3d(4, 6, (2, 3, 2), groups=2, dtype=dtype, rng=123)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    c = Conv3d(4, 6, (2, 3, 2), groups=2, dtype=dtype, rng=124)
    assert not np.array_equal(a.weight, c.weight)
    assert not np.array_equal(a.bias, c.bias)


def test_int_seed_equals_generator_seed():
    a = Conv3d(3, 5, 3, rng=99)
    b = Conv3d(3, 5, 3, rng=np.random.default_rng(99))
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)


def test_weight_drawn_before_bias():
    with_bias = Conv3d(3, 5, 3, rng=42)
    without_bias = Conv3d(3, 5, 3, bias=False, rng=42)
    np.testing.assert_array_equal(with_bias.weight, without_bias.weight)


def test_generator_is_consumed():
    g = np.random.default_rng(5)
    a = Conv3d(3, 5, 3, rng=g)
    b = Conv3d(3, 5, 3, rng=g)
    assert not np.array_equal(a.weight, b.weight)
    # and the same two-module sequence is reproducible from the same seed
    g2 = np.random.default_rng(5)
    np.testing.assert_array_equal(Conv3d(3, 5, 3, rng=g2).weight, a.weight)
    np.testing.assert_array_equal(Conv3d(3, 5, 3, rng=g2).weight, b.weight)


def test_no_rng_gives_fresh_weights():
    a = Conv3d(3, 5, 3)
    b = Conv3d(3, 5, 3)
    assert not np.array_equal(a.weight, b.weight)


# ------------------------------------------------------ reset_parameters

@pytest.mark.parametrize("rng", [None, "generator"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reset_parameters_redraws(rng, dtype):
    if rng == "generator":
        rng = np.random.default_rng(11)
    m = Conv3d(4, 6, (3, 2, 2), groups=2, dtype=dtype, rng=rng)
    w0, b0 = m.weight.copy(), m.bias.copy()
    ret = m.reset_parameters()
    assert ret is None
    assert m.weight.shape == w0.shape and m.weight.dtype == dtype
    assert m.bias.shape == b0.shape and m.bias.dtype == dtype
    assert not np.array_equal(m.weight, w0)
    assert not np.array_equal(m.bias, b0)
    bound = bound_of(4, 2, (3, 2, 2))
    assert np.all(np.abs(m.weight) <= bound * (1 + 1e-6))
    assert np.all(np.abs(m.bias) <= bound * (1 + 1e-6))


def test_reset_parameters_overwrites_assigned_weights_and_is_reproducible():
    a = Conv3d(2, 3, 2, rng=8)
    b = Conv3d(2, 3, 2, rng=8)
    a.weight = np.zeros((3, 2, 2, 2, 2), np.float32)
    a.bias = np.zeros(3, np.float32)
    a.reset_parameters()
    b.reset_parameters()
    assert np.abs(a.weight).max() > 0 and np.abs(a.bias).max() > 0
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)


def test_reset_parameters_without_bias():
    m = Conv3d(2, 3, 2, bias=False, rng=3)
    m.reset_parameters()
    assert m.bias is None
    assert list(m.state_dict()) == ["weight"]


# ------------------------------------------------------------ state_dict

@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_contents(dtype):
    m = Conv3d(4, 6, 3, groups=2, dtype=dtype, rng=1)
    sd = m.state_dict()
    assert list(sd) == ["weight", "bias"]
    np.testing.assert_array_equal(sd["weight"], m.weight)
    np.testing.assert_array_equal(sd["bias"], m.bias)
    assert sd["weight"].dtype == dtype and sd["bias"].dtype == dtype
    m2 = Conv3d(4, 6, 3, groups=2, bias=False, dtype=dtype)
    assert list(m2.state_dict()) == ["weight"]


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_round_trip(dtype, mode):
    a = Conv3d(3, 4, 3, padding=1, padding_mode=mode, dtype=dtype, rng=1)
    b = Conv3d(3, 4, 3, padding=1, padding_mode=mode, dtype=dtype, rng=2)
    assert not np.array_equal(a.weight, b.weight)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.weight, a.weight)
    np.testing.assert_array_equal(b.bias, a.bias)
    assert b.weight.dtype == dtype and b.bias.dtype == dtype
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5, 6)).astype(dtype)
    np.testing.assert_array_equal(b(x), a(x))


def test_load_state_dict_accepts_array_likes():
    a = Conv3d(2, 3, 2, dtype=np.float64, rng=1)
    b = Conv3d(2, 3, 2, dtype=np.float64, rng=2)
    b.load_state_dict({"weight": a.weight.tolist(), "bias": tuple(a.bias.tolist())})
    assert isinstance(b.weight, np.ndarray) and b.weight.dtype == np.float64
    np.testing.assert_array_equal(b.weight, a.weight)
    np.testing.assert_array_equal(b.bias, a.bias)


def test_load_state_dict_safe_upcasts():
    src = Conv3d(2, 3, 2, dtype=np.float32, rng=1)
    m64 = Conv3d(2, 3, 2, dtype=np.float64, rng=2)
    m64.load_state_dict(src.state_dict())  # float32 -> float64 is a safe cast
    assert m64.weight.dtype == np.float64 and m64.bias.dtype == np.float64
    np.testing.assert_array_equal(m64.weight, src.weight.astype(np.float64))
    np.testing.assert_array_equal(m64.bias, src.bias.astype(np.float64))
    m32 = Conv3d(2, 3, 2, dtype=np.float32, rng=3)
    w16 = np.full((3, 2, 2, 2, 2), 0.5, np.float16)
    m32.load_state_dict({"weight": w16, "bias": np.ones(3, np.float16)})  # float16 -> float32 safe
    assert m32.weight.dtype == np.float32 and np.all(m32.weight == 0.5)


def test_load_state_dict_without_bias_module():
    a = Conv3d(2, 3, 2, bias=False, rng=1)
    b = Conv3d(2, 3, 2, bias=False, rng=2)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.weight, a.weight)
    assert b.bias is None


# --------------------------------------------------------------- setters

@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_and_bias_setters(dtype):
    m = Conv3d(2, 3, (1, 2, 2), dtype=dtype, rng=0)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 1, 2, 2)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    m.weight = w
    m.bias = b
    np.testing.assert_array_equal(m.weight, w)
    np.testing.assert_array_equal(m.bias, b)
    x = rng.standard_normal((1, 2, 3, 3, 3)).astype(dtype)
    check_conv(m(x), x, w, b)
    np.testing.assert_array_equal(m.state_dict()["weight"], w)


# --------------------------------------------------------------- forward

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(stride=2, padding=1),
        dict(padding="same", dilation=(1, 2, 1)),
        dict(padding=(0, 1, 2), groups=2, bias=False),
        dict(padding="valid", stride=(1, 1, 2)),
    ],
)
def test_forward_equals_functional_in_zeros_mode(kwargs, dtype):
    m = Conv3d(4, 6, (2, 3, 3), dtype=dtype, rng=4, **kwargs)
    x = np.random.default_rng(4).standard_normal((2, 4, 5, 6, 7)).astype(dtype)
    y = m(x)
    expected = conv3d(x, m.weight, m.bias, kwargs.get("stride", 1), kwargs.get("padding", 0),
                      kwargs.get("dilation", 1), kwargs.get("groups", 1))
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(m.forward(x), y)
    assert y.dtype == dtype and y.flags.c_contiguous and y.flags.writeable


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_output_c_contiguous_for_fortran_input(dtype):
    m = Conv3d(3, 2, 1, dtype=dtype, rng=0)
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((2, 3, 4, 5, 6)).astype(dtype))
    y = m(x)
    assert y.flags.c_contiguous and y.dtype == dtype and y.shape == (2, 2, 4, 5, 6)
    check_conv(y, x, m.weight, m.bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_assigned_noncontiguous_and_readonly_parameters(dtype):
    rng = np.random.default_rng(12)
    m = Conv3d(3, 4, (2, 3, 2), padding=1, dtype=dtype, rng=12)
    w = np.asfortranarray(rng.standard_normal((4, 3, 2, 3, 2)).astype(dtype))
    w.setflags(write=False)
    b = rng.standard_normal(8).astype(dtype)[::2]
    m.weight = w
    m.bias = b
    x = rng.standard_normal((2, 3, 4, 5, 6)).astype(dtype)
    y = m(x)
    check_conv(y, x, w, b, 1, 1)
    np.testing.assert_array_equal(y, conv3d(x, np.ascontiguousarray(w), np.ascontiguousarray(b),
                                            padding=1))
