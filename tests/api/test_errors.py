"""Every error path: exception type and a message fragment naming the argument."""
import numpy as np
import pytest

from conv3d_cpu import Conv3d, conv3d

I = "(?i)"  # fragments are matched case-insensitively


def x5(shape=(1, 2, 4, 4, 4), dtype=np.float32):
    return np.ones(shape, dtype=dtype)


# ---------------------------------------------------------- constructor

@pytest.mark.parametrize("value", [0, -1, -4])
@pytest.mark.parametrize("name", ["in_channels", "out_channels"])
def test_channels_non_positive(name, value):
    kwargs = dict(in_channels=2, out_channels=2, kernel_size=3)
    kwargs[name] = value
    with pytest.raises(ValueError, match=name):
        Conv3d(**kwargs)


@pytest.mark.parametrize("value", [3.0, "3", True, None, [3]])
@pytest.mark.parametrize("name", ["in_channels", "out_channels"])
def test_channels_not_int(name, value):
    kwargs = dict(in_channels=3, out_channels=3, kernel_size=3)
    kwargs[name] = value
    with pytest.raises(TypeError, match=name):
        Conv3d(**kwargs)


@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (3, 0, 3), (1, 1, -2), (0, 0, 0)])
def test_tuple_args_non_positive(name, value):
    kwargs = dict(kernel_size=3)
    kwargs[name] = value
    with pytest.raises(ValueError, match=name):
        Conv3d(2, 2, **kwargs)


@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation"])
@pytest.mark.parametrize("value", [(3, 3), (3, 3, 3, 3), (3,) * 0, (2,) * 6])
def test_tuple_args_wrong_length(name, value):
    kwargs = dict(kernel_size=3)
    kwargs[name] = value
    with pytest.raises(ValueError, match=name):
        Conv3d(2, 2, **kwargs)


@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation"])
@pytest.mark.parametrize("value", [3.0, (3.0, 3, 3), (1, 1, 2.5)])
def test_tuple_args_not_int(name, value):
    kwargs = dict(kernel_size=3)
    kwargs[name] = value
    with pytest.raises(TypeError, match=name):
        Conv3d(2, 2, **kwargs)


@pytest.mark.parametrize("value", [-1, (0, -1, 0), (-2, 1, 1)])
def test_padding_negative(value):
    with pytest.raises(ValueError, match="padding"):
        Conv3d(2, 2, 3, padding=value)


@pytest.mark.parametrize("value", ["SAME", "Valid", "foo", "", "full"])
def test_padding_bad_string(value):
    with pytest.raises(ValueError, match="padding"):
        Conv3d(2, 2, 3, padding=value)


def test_padding_wrong_length():
    with pytest.raises(ValueError, match="padding"):
        Conv3d(2, 2, 3, padding=(1, 1))
    with pytest.raises(ValueError, match="padding"):
        Conv3d(2, 2, 3, padding=(1, 1, 1, 1))


@pytest.mark.parametrize("value", [1.0, (1, 1.5, 1)])
def test_padding_float(value):
    with pytest.raises((TypeError, ValueError), match="padding"):
        Conv3d(2, 2, 3, padding=value)


@pytest.mark.parametrize("stride", [2, (1, 1, 2), (1, 1, 3), (1, 4, 1), (5, 1, 1)])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_same_padding_with_stride(stride, mode):
    # test_Conv3d_module_same_padding: any stride element != 1 is rejected
    with pytest.raises(ValueError, match="same"):
        Conv3d(2, 2, 3, stride=stride, padding="same", padding_mode=mode)


@pytest.mark.parametrize("groups", [0, -1, -2])
def test_groups_non_positive(groups):
    # test_conv_invalid_groups uses groups=-2
    with pytest.raises(ValueError, match="groups"):
        Conv3d(4, 4, 3, groups=groups)


def test_groups_not_int():
    with pytest.raises(TypeError, match="groups"):
        Conv3d(4, 4, 3, groups=2.0)


@pytest.mark.parametrize("cin, cout, groups", [(3, 6, 2), (4, 6, 4), (4, 2, 4), (5, 5, 2)])
def test_groups_not_dividing(cin, cout, groups):
    with pytest.raises(ValueError, match="divisible"):
        Conv3d(cin, cout, 3, groups=groups)


@pytest.mark.parametrize("mode", ["foo", "Zeros", "constant", "edge", "wrap", None, ""])
def test_bad_padding_mode(mode):
    with pytest.raises(ValueError, match="padding_mode"):
        Conv3d(2, 2, 3, padding_mode=mode)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "gpu", "meta", "mps"])
def test_bad_device(device):
    with pytest.raises(ValueError, match="device"):
        Conv3d(2, 2, 3, device=device)


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, np.complex64, np.complex128, np.float16, np.bool_]
)
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match="dtype"):
        Conv3d(2, 2, 3, dtype=dtype)


# -------------------------------------------------------------- forward

@pytest.mark.parametrize("mdtype, xdtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_forward_dtype_mismatch(mdtype, xdtype):
    m = Conv3d(2, 2, 3, dtype=mdtype)
    with pytest.raises(TypeError, match="dtype"):
        m(x5(dtype=xdtype))
    with pytest.raises(TypeError, match="dtype"):
        m(x5((2, 4, 4, 4), dtype=xdtype))


@pytest.mark.parametrize("xdtype", [np.int32, np.int64, np.uint8, np.complex64, np.complex128,
                                    np.float16, np.bool_])
@pytest.mark.parametrize("mdtype", [np.float32, np.float64])
def test_forward_unsupported_input_dtype(mdtype, xdtype):
    m = Conv3d(2, 2, 3, dtype=mdtype)
    with pytest.raises(TypeError):
        m(x5(dtype=xdtype))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape", [(4, 4, 4), (2, 4, 4, 4, 4, 4), (4, 4), (4,)])
def test_forward_wrong_ndim(shape, mode):
    # test_conv_modules_raise_error_on_incorrect_input_size: 3-D and 6-D inputs
    m = Conv3d(2, 2, 1, padding=1, padding_mode=mode)
    with pytest.raises(ValueError, match="input"):
        m(np.ones(shape, np.float32))


@pytest.mark.parametrize("shape", [(1, 3, 4, 4, 4), (3, 4, 4, 4), (1, 1, 4, 4, 4), (2, 8, 4, 4, 4)])
@pytest.mark.parametrize("mode", ["zeros", "replicate"])
def test_forward_channel_mismatch(shape, mode):
    m = Conv3d(4, 6, 3, padding=1, padding_mode=mode)
    with pytest.raises(ValueError, match="channels"):
        m(np.ones(shape, np.float32))


def test_forward_channel_mismatch_groups():
    m = Conv3d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="channels"):
        m(np.ones((1, 2, 4, 4, 4), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_kernel_larger_than_input(dtype):
    # test_invalid_conv3d: effective kernel 5 > 4
    m = Conv3d(1, 1, 3, dilation=2, stride=2, dtype=dtype)
    with pytest.raises(ValueError, match=I + "kernel"):
        m(np.ones((1, 1, 4, 4, 4), dtype))
    # test_conv_shapecheck: 3^3 kernel on 2^3 input
    m = Conv3d(1, 1, 3, dtype=dtype)
    with pytest.raises(ValueError, match=I + "kernel"):
        m(np.ones((3, 1, 2, 2, 2), dtype))
    with pytest.raises(ValueError, match=I + "kernel"):
        m(np.ones((1, 2, 2, 2), dtype))
    # only one axis too small
    m = Conv3d(1, 1, (1, 1, 4), dtype=dtype)
    with pytest.raises(ValueError, match=I + "kernel"):
        m(np.ones((1, 1, 5, 5, 3), dtype))


def test_forward_kernel_check_runs_with_zero_batch():
    # reference doc 3.3: the kernel-size check also runs when N == 0
    with pytest.raises(ValueError, match=I + "kernel"):
        Conv3d(1, 1, 3)(np.ones((0, 1, 2, 2, 2), np.float32))


def test_forward_kernel_larger_than_replicate_padded_input():
    m = Conv3d(1, 1, 5, padding=1, padding_mode="replicate")
    with pytest.raises(ValueError, match=I + "kernel"):
        m(np.ones((1, 1, 2, 2, 2), np.float32))


@pytest.mark.parametrize("shape", [(1, 1, 3, 3, 3), (1, 3, 3, 3)])
def test_forward_reflect_pad_too_large(shape):
    # reference doc 1.5: pad must be strictly less than the size
    m = Conv3d(1, 1, 1, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        m(np.ones(shape, np.float32))


@pytest.mark.parametrize("padding, shape", [
    ((0, 0, 2), (1, 1, 5, 5, 2)),   # pad == size on W
    ((2, 0, 0), (1, 1, 2, 5, 5)),   # pad == size on D
    ((0, 4, 0), (1, 1, 5, 3, 5)),   # pad > size on H
])
def test_forward_reflect_pad_equal_to_size(padding, shape):
    m = Conv3d(1, 1, 1, padding=padding, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        m(np.ones(shape, np.float32))


def test_forward_reflect_same_asymmetric_limit():
    # reference doc 1.5: kernel (2,3,4) 'same' on a 1x2x2 input needs W pad (1, 2) >= 2
    m = Conv3d(1, 1, (2, 3, 4), padding="same", padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        m(np.ones((1, 1, 1, 2, 2), np.float32))


@pytest.mark.parametrize("padding, shape", [
    (4, (1, 1, 3, 3, 3)),
    ((0, 0, 3), (1, 1, 4, 4, 2)),
    ((3, 0, 0), (2, 2, 4, 4)),
])
def test_forward_circular_pad_too_large(padding, shape):
    cin = shape[-4]
    m = Conv3d(cin, 1, 1, padding=padding, padding_mode="circular")
    with pytest.raises(ValueError, match="circular"):
        m(np.ones(shape, np.float32))


# ----------------------------------------------------------- functional

def test_functional_weight_not_5d():
    x = x5((1, 4, 5, 5, 5))
    for w in (np.ones((6, 4, 3, 3), np.float32), np.ones((6, 4, 3, 3, 3, 1), np.float32),
              np.ones((6,), np.float32)):
        with pytest.raises(ValueError, match="weight"):
            conv3d(x, w)
        with pytest.raises(ValueError, match="weight"):
            conv3d(x, w, padding="same")


@pytest.mark.parametrize("bshape", [(5,), (7,), (6, 1), (1, 6), ()])
def test_functional_bias_shape(bshape):
    with pytest.raises(ValueError, match="bias"):
        conv3d(x5((1, 4, 5, 5, 5)), np.ones((6, 4, 3, 3, 3), np.float32), np.ones(bshape, np.float32))


@pytest.mark.parametrize(
    "xd, wd, bd",
    [
        (np.float32, np.float64, None),
        (np.float64, np.float32, None),
        (np.float32, np.float32, np.float64),
        (np.float64, np.float64, np.float32),
        (np.int64, np.float32, np.float32),      # OpInfo: int input + float bias
        (np.float32, np.float32, np.complex64),  # OpInfo: complex bias
        (np.int64, np.int64, None),
        (np.float16, np.float16, None),
        (np.complex128, np.complex128, None),
    ],
)
def test_functional_dtype_errors(xd, wd, bd):
    x = np.ones((1, 2, 4, 4, 4), xd)
    w = np.ones((3, 2, 2, 2, 2), wd)
    b = None if bd is None else np.ones(3, bd)
    with pytest.raises(TypeError):
        conv3d(x, w, b)


def test_functional_groups_errors():
    # OpInfo: groups 3 with weight dim-0 = 2 (with and without 'same')
    x = x5((1, 3, 4, 4, 4))
    w = np.ones((2, 1, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=I + "groups|divisible"):
        conv3d(x, w, groups=3)
    with pytest.raises(ValueError, match=I + "groups|divisible"):
        conv3d(x, w, padding="same", groups=3)
    # weight dim-0 not divisible by groups (6 % 4)
    with pytest.raises(ValueError, match=I + "groups|divisible"):
        conv3d(x5((1, 4, 4, 4, 4)), np.ones((6, 1, 3, 3, 3), np.float32), groups=4)


@pytest.mark.parametrize("groups", [0, -1])
@pytest.mark.parametrize("padding", [0, "same"])
def test_functional_groups_non_positive(groups, padding):
    with pytest.raises(ValueError, match="groups"):
        conv3d(x5((1, 2, 4, 4, 4)), np.ones((2, 2, 3, 3, 3), np.float32), padding=padding,
               groups=groups)


@pytest.mark.parametrize(
    "xc, wshape, groups",
    [(3, (6, 4, 3, 3, 3), 1), (4, (6, 1, 3, 3, 3), 2), (4, (6, 3, 3, 3, 3), 2), (6, (6, 2, 3, 3, 3), 2)],
)
def test_functional_channel_mismatch(xc, wshape, groups):
    with pytest.raises(ValueError, match="channels"):
        conv3d(x5((2, xc, 5, 6, 7)), np.ones(wshape, np.float32), groups=groups)
    with pytest.raises(ValueError, match="channels"):
        conv3d(x5((xc, 5, 6, 7)), np.ones(wshape, np.float32), groups=groups)


@pytest.mark.parametrize("num_threads", [0, -1, -8])
def test_functional_num_threads_non_positive(num_threads):
    with pytest.raises(ValueError, match="num_threads"):
        conv3d(x5(), np.ones((2, 2, 3, 3, 3), np.float32), num_threads=num_threads)


@pytest.mark.parametrize("num_threads", [1.5, "2"])
def test_functional_num_threads_not_int(num_threads):
    with pytest.raises((TypeError, ValueError), match="num_threads"):
        conv3d(x5(), np.ones((2, 2, 3, 3, 3), np.float32), num_threads=num_threads)


@pytest.mark.parametrize("algorithm", ["fft", "gemm", "", "Direct", "im2col", "winograd_f3"])
def test_functional_unknown_algorithm(algorithm):
    with pytest.raises(ValueError, match="algorithm"):
        conv3d(x5(), np.ones((2, 2, 3, 3, 3), np.float32), algorithm=algorithm)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        # OpInfo error inputs (reference doc 5.4)
        (dict(stride=(-1,)), "stride"),
        (dict(padding=(-1,)), "padding"),
        (dict(dilation=(-1,)), "dilation"),
        (dict(stride=0), "stride"),
        (dict(stride=(1, 0, 1)), "stride"),
        (dict(dilation=0), "dilation"),
        (dict(padding=-1), "padding"),
        (dict(padding=(0, 0, -1)), "padding"),
        (dict(padding="same", stride=2), "same"),
        (dict(padding="same", stride=(1, 2, 1)), "same"),
        (dict(padding="foo"), "padding"),
        (dict(padding="SAME"), "padding"),
        (dict(padding=(1, 1)), "padding"),
        (dict(stride=(1, 2)), "stride"),
        (dict(dilation=(1, 1, 1, 1)), "dilation"),
    ],
)
def test_functional_argument_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        conv3d(x5((1, 2, 6, 6, 6)), np.ones((2, 2, 3, 3, 3), np.float32), **kwargs)


def test_functional_stride_and_dilation_floats():
    x, w = x5((1, 2, 6, 6, 6)), np.ones((2, 2, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match="stride"):
        conv3d(x, w, stride=1.0)
    with pytest.raises(TypeError, match="dilation"):
        conv3d(x, w, dilation=(1, 2.0, 1))


def test_functional_kernel_larger_than_input():
    with pytest.raises(ValueError, match=I + "kernel"):
        conv3d(x5((1, 1, 4, 4, 4)), np.ones((1, 1, 3, 3, 3), np.float32), stride=2, dilation=2)
    with pytest.raises(ValueError, match=I + "kernel"):
        conv3d(x5((1, 1, 4, 4, 4)), np.ones((1, 1, 5, 1, 1), np.float32))


@pytest.mark.parametrize("shape", [(4, 4, 4), (1, 1, 1, 4, 4, 4), (4,)])
def test_functional_wrong_input_ndim(shape):
    with pytest.raises(ValueError, match="input"):
        conv3d(np.ones(shape, np.float32), np.ones((1, 1, 1, 1, 1), np.float32))


# ----------------------------------------------------- state_dict errors

def test_load_state_dict_missing_key():
    m = Conv3d(2, 3, 2)
    with pytest.raises(ValueError, match="bias"):
        m.load_state_dict({"weight": m.weight.copy()})
    with pytest.raises(ValueError, match="weight"):
        m.load_state_dict({"bias": m.bias.copy()})


def test_load_state_dict_unexpected_key():
    m = Conv3d(2, 3, 2)
    sd = m.state_dict()
    with pytest.raises(ValueError, match="running_mean"):
        m.load_state_dict({"weight": sd["weight"], "bias": sd["bias"], "running_mean": np.zeros(3)})
    nb = Conv3d(2, 3, 2, bias=False)
    with pytest.raises(ValueError, match="bias"):
        nb.load_state_dict({"weight": nb.weight.copy(), "bias": np.zeros(3, np.float32)})


@pytest.mark.parametrize("key, shape", [
    ("weight", (3, 2, 2, 2)), ("weight", (3, 2, 2, 2, 3)), ("weight", (2, 3, 2, 2, 2)),
    ("bias", (2,)), ("bias", (3, 1)), ("bias", ()),
])
def test_load_state_dict_wrong_shape(key, shape):
    m = Conv3d(2, 3, 2)
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    sd[key] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=key):
        m.load_state_dict(sd)


@pytest.mark.parametrize(
    "mdtype, vdtype",
    [
        (np.float32, np.float64),
        (np.float32, np.int64),
        (np.float32, np.int32),
        (np.float64, np.int64),
        (np.float64, np.int8),
        (np.float32, np.complex64),
        (np.float64, np.complex128),
    ],
)
@pytest.mark.parametrize("key", ["weight", "bias"])
def test_load_state_dict_unsafe_dtype(mdtype, vdtype, key):
    m = Conv3d(2, 3, 2, dtype=mdtype)
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    sd[key] = np.ones(sd[key].shape, vdtype)
    with pytest.raises(TypeError):
        m.load_state_dict(sd)


def test_load_state_dict_python_floats_into_float32_module():
    # nested lists become float64 arrays, which cannot be cast safely to float32
    m = Conv3d(1, 1, 1)
    with pytest.raises(TypeError):
        m.load_state_dict({"weight": [[[[[0.5]]]]], "bias": [0.25]})


# --------------------------------------------------------- setter errors

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_setter_errors(dtype):
    m = Conv3d(2, 4, (1, 2, 3), groups=2, dtype=dtype, rng=0)
    w0 = m.weight.copy()
    other = np.float64 if dtype == np.float32 else np.float32
    for shape in [(4, 2, 1, 2, 3), (4, 1, 1, 2), (4, 1, 3, 2, 1), (1, 4, 1, 2, 3)]:
        with pytest.raises(ValueError, match="weight"):
            m.weight = np.zeros(shape, dtype)
    for bad in [np.zeros((4, 1, 1, 2, 3), other), np.zeros((4, 1, 1, 2, 3), np.int64),
                np.zeros((4, 1, 1, 2, 3), np.complex128)]:
        with pytest.raises(TypeError, match=I + "weight|dtype"):
            m.weight = bad
    np.testing.assert_array_equal(m.weight, w0)  # rejected values were not stored


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_setter_errors(dtype):
    m = Conv3d(2, 4, 1, dtype=dtype, rng=0)
    b0 = m.bias.copy()
    other = np.float64 if dtype == np.float32 else np.float32
    for shape in [(3,), (5,), (4, 1), ()]:
        with pytest.raises(ValueError, match="bias"):
            m.bias = np.zeros(shape, dtype)
    for bad in [np.zeros(4, other), np.zeros(4, np.int32)]:
        with pytest.raises(TypeError, match=I + "bias|dtype"):
            m.bias = bad
    np.testing.assert_array_equal(m.bias, b0)
