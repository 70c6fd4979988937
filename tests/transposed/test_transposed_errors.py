"""Errors of ``conv_transpose3d``, ``conv_transpose3d_backward`` and ``ConvTranspose3d``.

Each bad argument is a ValueError (a bad value) or TypeError (a bad type) whose message names
the argument; the module checks what it can at construction (PyTorch checks output_padding
only at forward and accepts a string padding, a 2-tuple kernel and in_channels=0 there:
reference/pytorch-convtranspose3d.md). Where PyTorch has a message of its own (padding_mode,
the output_size range) the text is PyTorch's, compared with it when it imports.
"""
import re

import numpy as np
import pytest

from conv3d_cpu import ConvTranspose3d, conv_transpose3d, conv_transpose3d_backward

F32 = np.float32


def operands(xshape=(1, 2, 3, 3, 3), wshape=(2, 3, 3, 3, 3), dtype=F32):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(xshape).astype(dtype),
            rng.standard_normal(wshape).astype(dtype))


def gy_for(x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    y = conv_transpose3d(x, w, None, stride, padding, output_padding, groups, dilation)
    return np.ones_like(y)


# -------------------------------------------------------------------------- output_padding

@pytest.mark.parametrize("kwargs", [
    dict(stride=2, output_padding=2),
    dict(stride=1, output_padding=1),
    dict(stride=2, dilation=2, output_padding=2),
    dict(stride=(1, 2, 1), dilation=(2, 1, 1), output_padding=(1, 2, 0)),   # height fails
    dict(stride=(2, 2, 3), output_padding=(1, 1, 3)),                       # width fails
])
def test_output_padding_not_below_stride_or_dilation(kwargs):
    with pytest.raises(ValueError, match="output_padding must be smaller than either stride "
                                         "or dilation"):
        ConvTranspose3d(2, 3, 3, **kwargs)
    x, w = operands((1, 2, 4, 4, 4))
    geom = (kwargs.get("stride", 1), 0, kwargs["output_padding"], 1, kwargs.get("dilation", 1))
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose3d(x, w, None, *geom)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose3d_backward(np.zeros((1, 3, 9, 9, 9), F32), x, w, *geom)


def test_output_padding_message_names_the_axis():
    with pytest.raises(ValueError, match=r"height: 2 >= 2 and >= 1") as e:
        ConvTranspose3d(2, 3, 3, stride=(1, 2, 1), dilation=(2, 1, 1), output_padding=(1, 2, 0))
    assert "output_padding=(1, 2, 0)" in str(e.value) and "stride=(1, 2, 1)" in str(e.value)


def test_output_padding_below_dilation_is_accepted():
    # (the rule is "smaller than the stride OR the dilation": these are valid)
    x, w = operands((1, 2, 4, 4, 4))
    # (4 - 1) * 1 - 2 * 1 + 2 * (3 - 1) + 1 + 1 = 7
    assert conv_transpose3d(x, w, None, 1, 1, 1, 1, 2).shape == (1, 3, 7, 7, 7)
    m = ConvTranspose3d(2, 3, 3, stride=(1, 2, 3), dilation=(2, 1, 1),
                        output_padding=(1, 1, 2), rng=0)
    assert m(x).shape == (1, 3, 9, 10, 14)


@pytest.mark.parametrize("op", [-1, (0, -1, 0)])
def test_negative_output_padding(op):
    with pytest.raises(ValueError, match="output_padding values must be non-negative"):
        ConvTranspose3d(2, 3, 3, stride=2, output_padding=op)
    x, w = operands()
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose3d(x, w, None, 2, 0, op)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose3d_backward(gy_for(x, w, 2), x, w, 2, 0, op)


@pytest.mark.parametrize("op", [1.0, "1", None, (1, 1), (1, 1, 1, 1), True])
def test_output_padding_bad_type_or_length(op):
    with pytest.raises((TypeError, ValueError), match="output_padding"):
        ConvTranspose3d(2, 3, 3, stride=2, output_padding=op)
    x, w = operands()
    with pytest.raises((TypeError, ValueError), match="output_padding"):
        conv_transpose3d(x, w, None, 2, 0, op)


# --------------------------------------------------------------------------------- padding

@pytest.mark.parametrize("padding", ["same", "valid", "zeros"])
def test_padding_strings(padding):
    with pytest.raises(TypeError, match="padding of a transposed convolution"):
        ConvTranspose3d(2, 3, 3, padding=padding)
    x, w = operands()
    with pytest.raises(TypeError, match="padding"):
        conv_transpose3d(x, w, None, 1, padding)
    with pytest.raises(TypeError, match="padding"):
        conv_transpose3d_backward(gy_for(x, w), x, w, 1, padding)


@pytest.mark.parametrize("padding", [-1, (0, 0, -2)])
def test_negative_padding(padding):
    with pytest.raises(ValueError, match="padding values must be non-negative"):
        ConvTranspose3d(2, 3, 3, padding=padding)
    x, w = operands()
    with pytest.raises(ValueError, match="padding"):
        conv_transpose3d(x, w, None, 1, padding)


@pytest.mark.parametrize("xshape, kwargs", [
    ((1, 2, 3, 3, 3), dict(padding=3)),                       # -1 per axis
    ((1, 2, 2, 2, 2), dict(padding=(0, 3, 0), stride=1)),     # height only: 4 + 1 - 6 = -1
    ((1, 2, 1, 1, 1), dict(padding=1)),                       # 3 - 2 = 1: fine on D; see below
    ((2, 2, 2, 2), dict(padding=(2, 0, 0))),                  # unbatched, empty depth
])
def test_padding_that_empties_the_output(xshape, kwargs):
    """Always a ValueError naming padding (PyTorch itself sometimes returns an empty tensor
    there, sometimes fails: not compared)."""
    x = np.ones(xshape, F32)
    w = np.ones((2, 3, 3, 3, 3), F32)
    geom = (kwargs.get("stride", 1), kwargs["padding"])
    if xshape == (1, 2, 1, 1, 1):  # (1 - 1) - 2 + 2 + 1 = 1: not empty, a valid layer
        assert conv_transpose3d(x, w, None, *geom).shape == (1, 3, 1, 1, 1)
        geom = (1, 2)                      # now -1
    with pytest.raises(ValueError, match=r"padding \(.*\) is too large.*empty"):
        conv_transpose3d(x, w, None, *geom)
    m = ConvTranspose3d(2, 3, 3, stride=geom[0], padding=geom[1], rng=0)
    with pytest.raises(ValueError, match="padding"):
        m(x)
    with pytest.raises(ValueError, match="padding|grad_output"):
        conv_transpose3d_backward(np.ones(xshape[:-4] + (3, 1, 1, 1), F32), x, w, *geom)
    with pytest.raises(ValueError, match="padding|grad_output"):
        m.backward(x, np.ones(xshape[:-4] + (3, 1, 1, 1), F32))


def test_output_padding_can_save_an_otherwise_empty_output():
    # (0) * 2 - 2 * 1 + (1 - 1) + 1 = -1, + output_padding 1 = 0: still empty
    x = np.ones((1, 1, 1, 1, 1), F32)
    w = np.ones((1, 1, 1, 1, 1), F32)
    with pytest.raises(ValueError, match="padding"):
        conv_transpose3d(x, w, None, 2, 1, 1)
    # with output_size: the range's ends are both below 1
    m = ConvTranspose3d(1, 1, 1, stride=2, padding=1, rng=0)
    with pytest.raises(ValueError, match="output size"):
        m(x, output_size=(1, 1, 1))


# ------------------------------------------------------------------ constructor arguments

@pytest.mark.parametrize("k", [(3, 3), (3, 3, 3, 3), (), [2]])
def test_kernel_size_not_3(k):
    with pytest.raises(ValueError, match="kernel_size"):
        ConvTranspose3d(2, 3, k)


@pytest.mark.parametrize("k", [0, (3, 0, 3), -1])
def test_kernel_size_not_positive(k):
    with pytest.raises(ValueError, match="kernel_size"):
        ConvTranspose3d(2, 3, k)


@pytest.mark.parametrize("name, args", [
    ("in_channels", (0, 3, 3)), ("out_channels", (2, 0, 3)), ("in_channels", (-1, 3, 3)),
])
def test_channels_not_positive(name, args):
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        ConvTranspose3d(*args)


@pytest.mark.parametrize("name, value", [("in_channels", 2.0), ("out_channels", "3"),
                                         ("in_channels", True)])
def test_channels_not_int(name, value):
    args = {"in_channels": 2, "out_channels": 3, name: value}
    with pytest.raises(TypeError, match=name):
        ConvTranspose3d(args["in_channels"], args["out_channels"], 3)


@pytest.mark.parametrize("cin, cout, groups, name", [
    (3, 4, 2, "in_channels"), (4, 3, 2, "out_channels"), (4, 4, 3, "in_channels"),
])
def test_groups_not_dividing(cin, cout, groups, name):
    with pytest.raises(ValueError, match=f"{name} must be divisible by groups"):
        ConvTranspose3d(cin, cout, 3, groups=groups)


@pytest.mark.parametrize("groups", [0, -2])
def test_groups_not_positive(groups):
    with pytest.raises(ValueError, match="groups"):
        ConvTranspose3d(4, 4, 3, groups=groups)
    x, w = operands((1, 4, 3, 3, 3), (4, 1, 3, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        conv_transpose3d(x, w, None, 1, 0, 0, groups)


def test_functional_groups_not_dividing_weight():
    x, w = operands((1, 4, 3, 3, 3), (4, 2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"weight.shape\[0\] \(in_channels\) must be divisible "
                                         r"by groups"):
        conv_transpose3d(x, w, None, 1, 0, 0, 3)
    with pytest.raises(ValueError, match="groups"):
        conv_transpose3d_backward(np.zeros((1, 6, 5, 5, 5), F32), x, w, 1, 0, 0, 3)


TORCH_PADDING_MODE = 'Only "zeros" padding mode is supported for ConvTranspose3d'


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_other_than_zeros(mode):
    with pytest.raises(ValueError, match=re.escape(TORCH_PADDING_MODE)):
        ConvTranspose3d(2, 3, 3, padding_mode=mode)


def test_padding_mode_message_is_torchs():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError) as theirs:
        torch.nn.ConvTranspose3d(2, 3, 3, padding_mode="reflect")
    with pytest.raises(ValueError) as ours:
        ConvTranspose3d(2, 3, 3, padding_mode="reflect")
    assert str(ours.value).startswith(str(theirs.value))


@pytest.mark.parametrize("mode", ["bogus", "", None, 0])
def test_padding_mode_unknown(mode):
    with pytest.raises(ValueError, match="padding_mode"):
        ConvTranspose3d(2, 3, 3, padding_mode=mode)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(stride=0), ValueError, "stride"),
    (dict(stride=(1, 1)), ValueError, "stride"),
    (dict(dilation=0), ValueError, "dilation"),
    (dict(dilation=1.5), TypeError, "dilation"),
    (dict(device="cuda"), ValueError, "device"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(algorithm="fft"), ValueError, "algorithm"),
    (dict(algorithm="winograd", stride=2), ValueError, "algorithm"),
    (dict(algorithm="winograd", dilation=2), ValueError, "algorithm"),
    (dict(rng=-1), ValueError, "rng"),
    (dict(bias=None, rng=1.5), TypeError, "rng"),
])
def test_other_constructor_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        ConvTranspose3d(2, 3, 3, **kwargs)


def test_kernel_not_winograd_shape():
    with pytest.raises(ValueError, match="algorithm='winograd_f2' cannot compute"):
        ConvTranspose3d(2, 3, 2, algorithm="winograd_f2")
    with pytest.raises(ValueError, match="algorithm='winograd_f4'"):
        ConvTranspose3d(2, 3, 5, algorithm="winograd_f4")


# ------------------------------------------------------------------------------ output_size

def size_module():
    m = ConvTranspose3d(2, 3, 3, stride=2, padding=1, rng=0)   # input 5, 6, 7 -> [9,11,13]..
    x = np.zeros((1, 2, 5, 6, 7), F32)
    return m, x


@pytest.mark.parametrize("size", [(10, 12), (10,), (), (1, 1, 10, 12, 14, 1), (3, 10, 12, 14)])
def test_output_size_wrong_length(size):
    m, x = size_module()
    with pytest.raises(ValueError, match=r"output_size must have 3 or 5 elements for a 5-D "
                                         rf"input, got {len(size)}"):
        m(x, output_size=size)


def test_output_size_wrong_length_unbatched():
    m, x = size_module()
    assert m(x[0], output_size=(3, 10, 12, 14)).shape == (3, 10, 12, 14)
    for size in [(1, 3, 10, 12, 14), (10, 12)]:
        with pytest.raises(ValueError, match=rf"output_size must have 3 or 4 elements for a "
                                             rf"4-D input, got {len(size)}"):
            m(x[0], output_size=size)


@pytest.mark.parametrize("size, low, high", [
    ((12, 12, 12), [9, 11, 13], [10, 12, 14]),
    ((8, 11, 13), [9, 11, 13], [10, 12, 14]),
    ((9, 11, 15), [9, 11, 13], [10, 12, 14]),
    ((1, 3, 11, 12, 14), [9, 11, 13], [10, 12, 14]),   # 5 entries: the spatial ones checked
])
def test_output_size_out_of_range(size, low, high):
    m, x = size_module()
    spatial = list(size[-3:])
    with pytest.raises(ValueError, match=re.escape(
            f"requested an output size of {spatial}, but valid sizes range from {low} to "
            f"{high}")):
        m(x, output_size=size)
    with pytest.raises(ValueError, match="output size"):
        m(x[0], output_size=size[-3:])


def test_output_size_message_is_torchs():
    torch = pytest.importorskip("torch")
    m, x = size_module()
    tm = torch.nn.ConvTranspose3d(2, 3, 3, stride=2, padding=1)
    for size in [(12, 12, 12), (8, 11, 13), (10, 12, 15)]:
        with pytest.raises(ValueError) as theirs:
            tm(torch.from_numpy(x), output_size=list(size))
        with pytest.raises(ValueError) as ours:
            m(x, output_size=size)
        assert str(ours.value).split(" (for")[0] == str(theirs.value).split(" (for")[0]


@pytest.mark.parametrize("size, exc", [
    ("abc", TypeError), (10, TypeError), ((10.0, 12, 14), TypeError),
    ((10, None, 14), TypeError),
])
def test_output_size_bad_type(size, exc):
    m, x = size_module()
    with pytest.raises(exc, match="output_size"):
        m(x, output_size=size)


@pytest.mark.parametrize("size", [{10, 12, 14}, {10: 0, 12: 0, 14: 0}, iter((10, 12, 14))])
def test_output_size_unordered_iterable(size):
    # a set, a mapping or an iterator has no (depth, height, width) order: a TypeError, as
    # for every other sequence argument (and in PyTorch)
    m, x = size_module()
    with pytest.raises(TypeError, match="output_size"):
        m(x, output_size=size)


# ------------------------------------------------------------------------ operand checks

def test_input_channels_mismatch():
    x, w = operands((1, 3, 3, 3, 3), (2, 3, 3, 3, 3))
    with pytest.raises(ValueError, match=r"input has 3 channels .* expected in_channels=2 "
                                         r"\(weight.shape\[0\]\)"):
        conv_transpose3d(x, w)
    with pytest.raises(ValueError, match=r"weight.shape\[0\]"):
        conv_transpose3d_backward(np.zeros((1, 3, 5, 5, 5), F32), x, w)
    with pytest.raises(ValueError, match=r"weight.shape\[0\]"):
        conv_transpose3d(x[0], w)                       # unbatched
    m = ConvTranspose3d(2, 3, 3, rng=0)
    with pytest.raises(ValueError, match=r"input has 3 channels .*\(in_channels\)"):
        m(x)
    with pytest.raises(ValueError, match="in_channels"):
        m.backward(x, np.zeros((1, 3, 5, 5, 5), F32))


@pytest.mark.parametrize("xshape", [(3, 3, 3), (1, 1, 2, 3, 3, 3), (1, 2, 0, 3, 3), (2, 3, 0, 3)])
def test_input_rank_or_empty_spatial(xshape):
    x = np.zeros(xshape, F32)
    w = np.zeros((2, 3, 3, 3, 3), F32)
    with pytest.raises(ValueError, match="input"):
        conv_transpose3d(x, w)
    with pytest.raises(ValueError, match="input"):
        ConvTranspose3d(2, 3, 3, rng=0)(x)


@pytest.mark.parametrize("wshape", [(2, 3, 3, 3), (2, 3, 3, 3, 3, 1), (2, 0, 3, 3, 3),
                                    (0, 3, 3, 3, 3)])
def test_weight_shape(wshape):
    x = np.zeros((1, 2, 3, 3, 3), F32)
    with pytest.raises(ValueError, match=r"weight must be a 5-D array \(in_channels, "
                                         r"out_channels/groups"):
        conv_transpose3d(x, np.zeros(wshape, F32))


@pytest.mark.parametrize("bshape", [(2,), (6,), (3, 1), ()])
def test_bias_wrong_shape(bshape):
    x, w = operands()                       # out_channels = 3 (groups 1)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        conv_transpose3d(x, w, np.zeros(bshape, F32))
    # grouped: out_channels = weight.shape[1] * groups = 6, not weight.shape[0] = 2
    xg, wg = operands((1, 2, 3, 3, 3), (2, 3, 3, 3, 3))
    assert conv_transpose3d(xg, wg, np.zeros(6, F32), groups=2).shape == (1, 6, 5, 5, 5)
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        conv_transpose3d(xg, wg, np.zeros(2, F32), groups=2)


def test_module_bias_wrong_shape_or_removal():
    m = ConvTranspose3d(2, 3, 3, rng=0)
    with pytest.raises(ValueError, match="bias has shape"):
        m.bias = np.zeros(2, F32)
    with pytest.raises(ValueError, match="bias"):
        m.bias = None
    nb = ConvTranspose3d(2, 3, 3, bias=False, rng=0)
    with pytest.raises(ValueError, match="bias"):
        nb.bias = np.zeros(3, F32)
    with pytest.raises(ValueError, match="weight has shape"):
        m.weight = np.zeros((3, 2, 3, 3, 3), F32)
    with pytest.raises(ValueError, match="weight has shape"):
        m.load_state_dict({"weight": np.zeros((3, 2, 3, 3, 3), F32), "bias": np.zeros(3, F32)})
    with pytest.raises(ValueError, match="state_dict"):
        m.load_state_dict({"weight": m.weight})


def test_dtype_mismatch():
    x, w = operands()
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    gy = gy_for(x, w)
    for call, name in [
        (lambda: conv_transpose3d(x64, w), "input"),
        (lambda: conv_transpose3d(x, w64), "input"),
        (lambda: conv_transpose3d(x, w, np.zeros(3, np.float64)), "bias"),
        (lambda: conv_transpose3d_backward(gy.astype(np.float64), x, w), "grad_output"),
        (lambda: conv_transpose3d_backward(gy, x64, w), "input"),
        (lambda: conv_transpose3d_backward(gy, x, w64), "input|grad_output"),
        (lambda: ConvTranspose3d(2, 3, 3, rng=0)(x64), "input"),
        (lambda: ConvTranspose3d(2, 3, 3, rng=0).backward(x64, gy), "input"),
        (lambda: ConvTranspose3d(2, 3, 3, rng=0).backward(x, gy.astype(np.float64)),
         "grad_output"),
        (lambda: ConvTranspose3d(2, 3, 3, dtype=np.float64, rng=0)(x), "input"),
    ]:
        with pytest.raises(TypeError, match=name):
            call()


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.complex64, bool])
def test_unsupported_dtypes(dtype):
    x, w = operands()
    with pytest.raises(TypeError, match="input must have dtype float32 or float64"):
        conv_transpose3d(x.astype(dtype), w)
    with pytest.raises(TypeError, match="weight must have dtype"):
        conv_transpose3d(x, w.astype(dtype))


# ----------------------------------------------------------------------------- grad_output

GEOM = (2, 1, 1, 1, 1)   # stride, padding, output_padding, groups, dilation: 3 -> 6 (5..6)


@pytest.mark.parametrize("gshape", [
    (1, 3, 6, 6, 4), (1, 3, 6, 6, 7), (1, 3, 4, 6, 6), (1, 2, 6, 6, 6), (2, 3, 6, 6, 6),
    (3, 6, 6, 6), (1, 3, 6, 6), (1, 1, 3, 6, 6, 6),
])
def test_grad_output_wrong_shape(gshape):
    x, w = operands()
    gy = np.zeros(gshape, F32)
    with pytest.raises(ValueError, match="grad_output") as e:
        conv_transpose3d_backward(gy, x, w, *GEOM)
    assert str(gshape) in str(e.value) and "(1, 3, 6, 6, 6)" in str(e.value), str(e.value)
    m = ConvTranspose3d(2, 3, 3, stride=2, padding=1, output_padding=1, rng=0)
    with pytest.raises(ValueError, match="grad_output"):
        m.backward(x, gy)


def test_grad_output_sizes_an_output_size_gives_are_accepted():
    x, w = operands()
    for spatial in [(5, 5, 5), (5, 6, 5), (6, 6, 6)]:
        res = conv_transpose3d_backward(np.ones((1, 3) + spatial, F32), x, w, *GEOM)
        assert res[0].shape == x.shape
    # one beyond the range (stride 2: 5 or 6) on one axis is not
    with pytest.raises(ValueError, match=r"grad_output.*spatial sizes from \(5, 5, 5\) to "
                                         r"\(6, 6, 6\)"):
        conv_transpose3d_backward(np.ones((1, 3, 6, 7, 6), F32), x, w, *GEOM)


def test_grad_output_wrong_shape_unbatched():
    x, w = operands()
    gy = np.zeros((3, 6, 6, 6), F32)
    assert conv_transpose3d_backward(gy, x[0], w, *GEOM)[0].shape == x[0].shape
    for bad in [gy[:2], gy[:, :, :, :4], gy[None]]:
        with pytest.raises(ValueError, match="grad_output"):
            conv_transpose3d_backward(bad, x[0], w, *GEOM)


def test_grad_output_not_an_array_of_floats():
    x, w = operands()
    with pytest.raises(TypeError, match="grad_output"):
        conv_transpose3d_backward(np.zeros((1, 3, 6, 6, 6), np.int64), x, w, *GEOM)
    with pytest.raises(TypeError, match="grad_output"):
        conv_transpose3d_backward("gy", x, w, *GEOM)


@pytest.mark.parametrize("mask", [(True, True), (True, True, True, True), None, "TTT",
                                  ("yes", True, True), (True, None, False), True, [1, 1, 1]])
def test_output_mask(mask):
    x, w = operands()
    gy = np.zeros((1, 3, 6, 6, 6), F32)
    with pytest.raises(TypeError, match="output_mask"):
        conv_transpose3d_backward(gy, x, w, *GEOM, output_mask=mask)
    m = ConvTranspose3d(2, 3, 3, stride=2, padding=1, output_padding=1, rng=0)
    with pytest.raises(TypeError, match="output_mask"):
        m.backward(x, gy, output_mask=mask)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(algorithm="fft"), ValueError, "algorithm"),
    (dict(algorithm="winograd"), ValueError, "algorithm"),   # stride 2
    (dict(num_threads=0), ValueError, "num_threads"),
    (dict(num_threads=1.0), TypeError, "num_threads"),
    (dict(num_threads=10**6), ValueError, "num_threads"),
])
def test_algorithm_and_threads(kwargs, exc, name):
    x, w = operands()
    with pytest.raises(exc, match=name):
        conv_transpose3d(x, w, None, *GEOM, **kwargs)
    with pytest.raises(exc, match=name):
        conv_transpose3d_backward(np.zeros((1, 3, 6, 6, 6), F32), x, w, *GEOM, **kwargs)


def test_errors_leave_operands_alone_and_are_raised_before_work():
    x, w = operands()
    x0, w0 = x.copy(), w.copy()
    with pytest.raises(ValueError):
        conv_transpose3d(x, w, None, 2, 0, 2)
    with pytest.raises(ValueError):
        conv_transpose3d_backward(np.zeros((1, 3, 2, 2, 2), F32), x, w)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
