"""Clear errors for argument forms that used to leak numpy's messages or be misread.

Issue 15 (items 4 and 6): 0-d arrays as sizes, sets and other unordered iterables, sizes
whose arrays cannot exist, ``rng``, dtype hints that claimed a loss of precision where none
is, non-native byte order (accepted, converted losslessly; ``out`` excepted) and numpy masked
arrays (refused: their mask would be ignored). Every error is asserted by type and by a
message naming the argument; every accepted form gives the result of the plain form.
"""
import os

import numpy as np
import pytest

from conv3d_cpu import Conv3d, conv3d
from hardening import HAVE_PROC, UNDER_ASAN, bits, guarded

SIZES = ["kernel_size", "stride", "dilation", "padding"]
MINIMUM = {"kernel_size": 3, "stride": 2, "dilation": 1, "padding": 1}
SWAPPED32 = np.dtype(np.float32).newbyteorder("S")  # '>f4' on a little-endian machine
SWAPPED64 = np.dtype(np.float64).newbyteorder("S")


def data(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def module(**kwargs):
    args = dict(in_channels=2, out_channels=3, kernel_size=3, rng=0)
    args.update(kwargs)
    return Conv3d(**args)


X = data((2, 2, 7, 6, 5))


def same_module(a, b):
    """Two modules with the same configuration and weights compute the same bits."""
    for name in ("kernel_size", "stride", "padding", "dilation", "dtype"):
        assert getattr(a, name) == getattr(b, name), name
    assert bits(a.weight) == bits(b.weight) and bits(a.bias) == bits(b.bias)
    assert bits(a(X.astype(a.dtype))) == bits(b(X.astype(b.dtype)))


# ------------------------------------------------------------ (a) 0-d arrays as sizes

@pytest.mark.parametrize("int_type", [np.int8, np.int64, np.uint16, np.uint64, np.intp])
@pytest.mark.parametrize("name", SIZES)
def test_0d_integer_array_is_an_int(name, int_type):
    value = MINIMUM[name]
    same_module(module(**{name: np.array(value, int_type)}), module(**{name: value}))


@pytest.mark.parametrize("name", ["stride", "dilation", "padding"])
def test_0d_integer_array_functional(name):
    w = data((3, 2, 3, 3, 3), 1)
    value = MINIMUM[name]
    expected = conv3d(X, w, **{name: value})
    assert bits(conv3d(X, w, **{name: np.array(value)})) == bits(expected)
    assert bits(conv3d(X, w, **{name: np.array([value])})) == bits(expected)  # 1 item


@pytest.mark.parametrize("value", [np.array(2.0), np.array(True), np.array(1 + 0j),
                                   np.array("2"), np.array(np.float32(2))])
@pytest.mark.parametrize("name", SIZES)
def test_0d_non_integer_array_is_a_type_error(name, value):
    with pytest.raises(TypeError, match=f"{name} must be .*0-d {value.dtype} array"):
        module(**{name: value})
    if name != "kernel_size":
        with pytest.raises(TypeError, match=name):
            conv3d(X, data((3, 2, 3, 3, 3)), **{name: value})


def test_0d_integer_array_as_channels_and_groups():
    same_module(Conv3d(np.array(2), np.array(4), 3, groups=np.array(2), rng=0),
                Conv3d(2, 4, 3, groups=2, rng=0))
    with pytest.raises(TypeError, match="in_channels"):
        Conv3d(np.array(2.0), 3, 3)


# ------------------------------------------------ (b) unordered and one-pass iterables

UNORDERED = {
    "set": lambda: {3, 1, 2},
    "frozenset": lambda: frozenset({1, 2, 3}),
    "frozenset of 1": lambda: frozenset({2}),
    "dict": lambda: {1: 1, 2: 2, 3: 3},
    "dict keys": lambda: {1: 0, 2: 0, 3: 0}.keys(),
    "dict values": lambda: {"d": 1, "h": 2, "w": 3}.values(),
    "dict items": lambda: {1: 1}.items(),
    "generator": lambda: (i for i in (1, 2, 3)),
    "iterator": lambda: iter([1, 2, 3]),
}


@pytest.mark.parametrize("kind", UNORDERED)
@pytest.mark.parametrize("name", SIZES)
def test_unordered_iterable_is_a_type_error(name, kind):
    with pytest.raises(TypeError, match=f"{name} must be .*an int or a sequence of 3 ints.*, got "
                                        f"{type(UNORDERED[kind]()).__name__}"):
        module(**{name: UNORDERED[kind]()})


@pytest.mark.parametrize("kind", UNORDERED)
@pytest.mark.parametrize("name", ["stride", "dilation", "padding"])
def test_unordered_iterable_functional(name, kind):
    # allow_single: a frozenset of one item was read as that item on every axis
    with pytest.raises(TypeError, match=f"{name} must be"):
        conv3d(X, data((3, 2, 3, 3, 3)), **{name: UNORDERED[kind]()})


def test_set_is_not_reordered():
    # {3, 1, 2} iterates as 1, 2, 3: it used to become stride (1, 2, 3)
    with pytest.raises(TypeError, match=r"stride .*got set \{1, 2, 3\}"):
        Conv3d(2, 3, 1, stride={3, 1, 2})


ORDERED = {
    "tuple": lambda v: v,
    "list": list,
    "int64 array": lambda v: np.array(v, np.int64),
    "int32 array": lambda v: np.array(v, np.int32),
    "uint8 array": lambda v: np.array(v, np.uint8),
    "object array": lambda v: np.array(v, object),
    "numpy ints": lambda v: tuple(np.int16(i) for i in v),
    "0-d arrays": lambda v: [np.array(i) for i in v],
}


@pytest.mark.parametrize("kind", ORDERED)
@pytest.mark.parametrize("name, value", [("kernel_size", (3, 2, 1)), ("stride", (1, 2, 3)),
                                         ("dilation", (2, 1, 1)), ("padding", (0, 1, 2))])
def test_ordered_forms_are_accepted(name, value, kind):
    same_module(module(**{name: ORDERED[kind](value)}), module(**{name: value}))


def test_range_is_accepted():
    same_module(module(stride=range(1, 4), padding=range(3)),
                module(stride=(1, 2, 3), padding=(0, 1, 2)))


@pytest.mark.parametrize("kind", ORDERED)
def test_ordered_forms_functional(kind):
    w = data((3, 2, 3, 2, 1), 1)
    kwargs = dict(stride=(1, 2, 1), padding=(2, 0, 1), dilation=(1, 1, 2))
    expected = conv3d(X, w, **kwargs)
    given = {k: ORDERED[kind](v) for k, v in kwargs.items()}
    assert bits(conv3d(X, w, **given)) == bits(expected)


@pytest.mark.parametrize("value, error", [
    (np.array([[1, 2, 3]]), TypeError),        # a 2-d array
    (np.zeros((3, 1), np.int64), TypeError),
    (np.array([1.0, 2.0, 3.0]), TypeError),    # a float array
    (np.array([True, True, True]), TypeError),
    ((1, (1, 2), 1), TypeError),               # nested
    (b"\x01\x02\x03", TypeError),              # bytes are not a sequence of sizes
    (bytearray(b"\x01\x02\x03"), TypeError),
    (memoryview(b"\x01\x02\x03"), TypeError),
    ("123", TypeError),
    ([1, 2], ValueError),
    (np.array([1, 2, 3, 4]), ValueError),
    (range(10**15), ValueError),               # its length is checked before it is walked
    ((), ValueError),
])
@pytest.mark.parametrize("name", SIZES)
def test_other_wrong_forms(name, value, error):
    if name == "padding" and isinstance(value, str):
        error = ValueError  # a string is read as a padding mode: 'valid' or 'same'
    with pytest.raises(error, match=f"{name} must be"):
        module(**{name: value})


def test_padding_message_lists_strings():
    with pytest.raises(TypeError, match="padding must be 'valid', 'same', an int or a sequence"):
        Conv3d(2, 3, 3, padding={0})
    # a str subclass is still a padding string (and stored as a plain str)
    assert Conv3d(2, 3, 3, padding=np.str_("same")).padding == "same"
    assert type(Conv3d(2, 3, 3, padding=np.str_("same")).padding) is str


# ------------------------------------------- (c) sizes whose arrays cannot exist; rng

@pytest.mark.parametrize("args, kwargs, name", [
    ((), dict(in_channels=2**63, out_channels=3, kernel_size=3), "in_channels"),
    ((2**40, 2**40, 1), {}, "out_channels"),
    ((2, 3, 2**30), {}, "kernel_size"),
    ((2, 3, (1, 1, 2**62)), {}, "kernel_size"),
    ((2**62, 2**62, 1), dict(groups=2**61), "in_channels"),
])
def test_weight_that_cannot_exist_is_a_value_error(args, kwargs, name):
    with pytest.raises(ValueError, match=f"{name}.*weight of shape .*elements"):
        Conv3d(*args, **kwargs)


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc for the address-space limit")
@pytest.mark.skipif(UNDER_ASAN and "max_allocation_size_mb" not in
                    os.environ.get("ASAN_OPTIONS", ""),
                    reason="under ASan without max_allocation_size_mb, big allocations succeed")
def test_weight_that_does_not_fit_names_the_weight():
    # 2**31 float32 weights (8 GiB) under 2 GiB of address-space headroom
    with guarded():
        with pytest.raises(MemoryError, match=r"weight of shape \(32768, 65536, 1, 1, 1\).*"
                                              r"8589934592 bytes"):
            Conv3d(2**16, 2**15, 1, rng=0)


@pytest.mark.parametrize("padding", [2**21, (2**21, 2**21, 2**21), (2**40, 2**40, 0)])
def test_padding_too_large_for_the_output(padding):
    x = np.ones((1, 2, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="padding .* too large"):
        Conv3d(2, 3, 3, padding=padding, rng=0)(x)
    with pytest.raises(ValueError, match="padding .* too large"):
        conv3d(x, np.ones((3, 2, 3, 3, 3), np.float32), padding=padding)


@pytest.mark.parametrize("kwargs", [dict(padding=2**62), dict(padding=(0, 0, 2**63 - 1)),
                                    dict(padding="same", dilation=(2**62, 1, 1))])
def test_padded_input_overflow_is_a_value_error(kwargs):
    x = np.ones((1, 2, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="padding too large"):
        Conv3d(2, 3, 3, rng=0, **kwargs)(x)
    with pytest.raises(ValueError, match="padding too large"):
        conv3d(x, np.ones((3, 2, 3, 3, 3), np.float32), **kwargs)


RNG_FORMS = {
    "0-d array": (np.array(7), 7),
    "numpy int": (np.uint32(7), 7),
    "big int": (2**200, 2**200),
    "list": ([1, 2], [1, 2]),
    "int array": (np.array([1, 2]), [1, 2]),
    "tuple": ((1, 2), [1, 2]),
    "SeedSequence": (np.random.SeedSequence(7), 7),
    "BitGenerator": (np.random.PCG64(7), 7),
    "nested (numpy accepts it)": ([[1, 2]], [[1, 2]]),
}


@pytest.mark.parametrize("form", RNG_FORMS)
def test_rng_forms_accepted(form):
    given, plain = RNG_FORMS[form]
    same_module(module(rng=given), module(rng=plain))


def test_rng_generator_is_shared_and_none_is_fresh():
    g = np.random.default_rng(3)
    same_module(module(rng=g), module(rng=3))
    # the caller's generator was used (advanced), not a copy of it
    assert g.bit_generator.state != np.random.default_rng(3).bit_generator.state
    a, b = module(rng=None), module(rng=None)
    assert not np.array_equal(a.weight, b.weight)


@pytest.mark.parametrize("rng, error", [
    (-1, ValueError), (np.int64(-5), ValueError), (np.array(-1), ValueError),
    ([1, -2], ValueError), (np.array([3, -1]), ValueError),
    (1.5, TypeError), (np.float64(2.0), TypeError), (np.array(2.0), TypeError),
    ("seed", TypeError), (b"seed", TypeError), (True, TypeError), (np.bool_(False), TypeError),
    ({1, 2}, TypeError), ({"a": 1}, TypeError), (object(), TypeError), (1 + 2j, TypeError),
    ([1.5, 2], TypeError), (np.array([1.0, 2.0]), TypeError),
])
def test_rng_errors_name_rng(rng, error):
    with pytest.raises(error, match="rng must be None, a non-negative int"):
        module(rng=rng)


# ------------------------------------------------------- (d) dtype hints, byte order

def test_float16_input_hint_is_lossless_cast():
    hint = r"got float16 \(float16 is not supported: cast to float32 \(lossless\)"
    w = data((3, 2, 3, 3, 3))
    with pytest.raises(TypeError, match="input must have dtype float32 or float64, " + hint) \
            as info:
        module()(X.astype(np.float16))
    assert "loss of precision" not in str(info.value)
    with pytest.raises(TypeError, match="weight must have dtype float32 or float64, " + hint):
        conv3d(X, w.astype(np.float16))


def test_float16_input_message_names_the_argument():
    with pytest.raises(TypeError, match="input must have dtype"):
        module()(X.astype(np.float16))
    with pytest.raises(TypeError, match="weight must have dtype"):
        conv3d(X, data((3, 2, 3, 3, 3)).astype(np.float16))
    with pytest.raises(TypeError, match="bias must have dtype"):
        conv3d(X, data((3, 2, 3, 3, 3)), np.zeros(3, np.float16))


def test_float16_module_dtype_hint():
    with pytest.raises(TypeError, match=r"dtype must be numpy.float32 or numpy.float64, got "
                                        r"float16 \(.*use numpy.float32") as info:
        Conv3d(2, 3, 3, dtype=np.float16)
    assert "loss of precision" not in str(info.value) and "cast it first" not in str(info.value)


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")
def test_longdouble_hint_says_it_rounds():
    with pytest.raises(TypeError, match=r"input must have dtype .*\.astype\(np\.float64\), "
                                        r"which rounds"):
        module()(X.astype(np.longdouble))
    with pytest.raises(TypeError, match="dtype must be .*use numpy.float64"):
        Conv3d(2, 3, 3, dtype=np.longdouble)


def test_lossy_parameter_hints():
    m = module()
    with pytest.raises(TypeError, match="weight has dtype float64, expected float32.*loses "
                                        "precision"):
        m.weight = m.weight.astype(np.float64)
    with pytest.raises(TypeError, match="weight has dtype float64.*loses precision"):
        m.load_state_dict({"weight": m.weight.astype(np.float64), "bias": m.bias})
    with pytest.raises(TypeError, match=r"bias has dtype float16.*\(lossless\)") as info:
        m.bias = m.bias.astype(np.float16)  # the setter makes no cast, even a lossless one
    assert "loses precision" not in str(info.value)


@pytest.mark.parametrize("dtype, swapped", [(np.float32, SWAPPED32), (np.float64, SWAPPED64)])
def test_non_native_byte_order_is_accepted_everywhere(dtype, swapped):
    x, w, b = X.astype(dtype), data((3, 2, 3, 3, 3), 1, dtype), data((3,), 2, dtype)
    xs, ws, bs = x.astype(swapped), w.astype(swapped), b.astype(swapped)
    expected = conv3d(x, w, b, padding=1)
    # functional: any operand in either byte order; the result is native
    for args in [(xs, w, b), (x, ws, b), (x, w, bs), (xs, ws, bs)]:
        y = conv3d(*args, padding=1)
        assert y.dtype == dtype and y.dtype.isnative and bits(y) == bits(expected)
    # module: input, setters, load_state_dict; parameters stored native
    m = Conv3d(2, 3, 3, padding=1, dtype=dtype, rng=0)
    m.weight, m.bias = ws, bs
    assert m.weight.dtype.isnative and m.bias.dtype.isnative
    assert bits(m(x)) == bits(expected) and bits(m(xs)) == bits(expected)
    m2 = Conv3d(2, 3, 3, padding=1, dtype=dtype, rng=1)
    m2.load_state_dict({"weight": ws, "bias": bs})
    assert m2.weight.dtype == dtype and m2.weight.dtype.isnative
    assert bits(m2(xs)) == bits(expected)
    assert bits(m2(xs[0])) == bits(expected[0])  # unbatched


@pytest.mark.parametrize("dtype, swapped", [(np.float32, SWAPPED32), (np.float64, SWAPPED64)])
def test_non_native_module_dtype_is_the_native_one(dtype, swapped):
    m = Conv3d(2, 3, 3, dtype=swapped, rng=0)
    assert m.dtype == dtype and m.dtype.isnative and m.weight.dtype.isnative
    same_module(m, Conv3d(2, 3, 3, dtype=dtype, rng=0))


def test_non_native_out_is_a_clear_error():
    m = module()
    y = m(X)
    with pytest.raises(TypeError, match="out .* native byte order"):
        m(X, out=np.empty(y.shape, SWAPPED32))
    with pytest.raises(TypeError, match="out .* native byte order"):
        conv3d(X, m.weight, m.bias, out=np.empty(y.shape, SWAPPED32))


def test_lossy_non_native_state_dict_still_refused():
    m = module()
    with pytest.raises(TypeError, match="weight has dtype float64.*loses precision"):
        m.load_state_dict({"weight": m.weight.astype(SWAPPED64), "bias": m.bias})


# ---------------------------------------------------------------- (e) masked arrays

def masked(a):
    return np.ma.array(a, mask=np.zeros(a.shape, bool))


def test_masked_arrays_are_refused_with_their_name():
    m = module()
    w, b = m.weight.copy(), m.bias.copy()
    fragment = "is a numpy masked array: masked arrays are not supported"
    with pytest.raises(TypeError, match=rf"input {fragment}.*input\.filled\(0\)"):
        m(masked(X))
    with pytest.raises(TypeError, match=f"input {fragment}"):
        conv3d(masked(X), w, b)
    with pytest.raises(TypeError, match=f"weight {fragment}"):
        conv3d(X, masked(w), b)
    with pytest.raises(TypeError, match=f"bias {fragment}"):
        conv3d(X, w, masked(b))
    with pytest.raises(TypeError, match=f"weight {fragment}"):
        m.weight = masked(w)
    with pytest.raises(TypeError, match=f"bias {fragment}"):
        m.bias = masked(b)
    with pytest.raises(TypeError, match=f"weight {fragment}"):
        m.load_state_dict({"weight": masked(w), "bias": b})
    with pytest.raises(TypeError, match=f"bias {fragment}"):
        m.load_state_dict({"weight": w, "bias": masked(b)})
    with pytest.raises(TypeError, match="out must be a plain numpy.ndarray"):
        m(X, out=np.ma.empty(m(X).shape, np.float32))
    with pytest.raises(TypeError, match=f"input {fragment}"):
        m(np.ma.masked)
    # nothing was stored
    assert bits(m.weight) == bits(w) and bits(m.bias) == bits(b)
    # the filled array is accepted, with the plain array's result
    assert bits(m(masked(X).filled(0))) == bits(m(X))
