"""Property-based fuzzing of the whole public API with invalid and edge values.

Contract: whatever is passed to ``Conv3d(...)``, ``Conv3d.forward``, ``load_state_dict``, the
``weight`` / ``bias`` setters or ``conv3d(...)``, the call either returns the right answer or
raises ValueError or TypeError (MemoryError for sizes that cannot be allocated); it never
crashes the interpreter, never hangs and never returns a wrong result. A successful call is
checked against the same call made with canonical arguments (plain int tuples, C-contiguous
writable arrays, one thread): the results must be bitwise equal, and for 'direct' with finite
data also within the rounding bound of the float64 reference.

Values drawn: wrong types (None, str, bytes, float, bool, complex, numpy scalars, 0-d and 1-d
arrays, nested tuples, sets, ranges, arbitrary objects), small ints around the valid range
(zero, negative), huge ints (2**31 +- 1, 2**63, 10**30 ...); arrays with 0 to 6 dimensions,
zero-size axes, dtypes float16/32/64, longdouble, ints, bool, complex, object, str, datetime,
non-native byte order, layouts C / Fortran / strided / negative strides / broadcast (stride 0)
/ read-only / unaligned / nested lists, and data with NaN, +-inf, huge and subnormal values.

Budget: CI runs a fixed number of examples per test with the fixed seed of the 'ci' profile
(tests/conftest.py); ``make fuzz-long`` raises CONV3D_CPU_FUZZ_EXAMPLES and uses a random seed.
Each example runs under ``hardening.guarded``: 2 GiB of address-space headroom (so a huge but
"valid" size fails fast with MemoryError) and a hang watchdog.
"""
import math
import operator
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import conv3d_cpu
from conv3d_cpu import Conv3d, conv3d
from hardening import bits, budget, guarded
from reference import check_conv

ALLOWED = (ValueError, TypeError, MemoryError)


# ------------------------------------------------------------------------------- values

HUGE_INTS = [2**31 - 1, 2**31, 2**32 + 1, 2**33, 2**62, 2**63 - 1, 2**63, 2**64, 10**30,
             -(2**31), -(2**63), -(2**63) - 1, -(10**30)]
NUMPY_INT_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64,
                   np.intp]
JUNK = [None, "3", "", "same", "valid", "zeros", b"3", 3.0, 2.5, -1.0, float("nan"),
        float("inf"), True, False, np.bool_(True), np.float32(3.0), np.float16(1.0),
        np.float64(2.0), 3 + 0j, np.complex64(1), object(), [], (), {}, {"a": 1},
        frozenset({2}), np.array(3), np.array(-1), np.array([1, 2, 3]), np.array([[1, 2, 3]]),
        np.array(2.0), np.array([], dtype=np.int64), np.zeros((3, 0)), range(3), range(0),
        slice(1, 3), Ellipsis, Fraction(3, 1), Decimal(3), type, len]

small_ints = st.integers(-2, 5)
numpy_ints = st.builds(lambda t, v: t(v), st.sampled_from(NUMPY_INT_TYPES), st.integers(0, 4))
int_args = st.one_of(small_ints, small_ints, st.sampled_from(HUGE_INTS), numpy_ints,
                     st.sampled_from(JUNK))
triple_args = st.one_of(
    int_args,
    st.tuples(int_args),
    st.tuples(int_args, int_args, int_args),
    st.lists(int_args, max_size=5),
    st.tuples(st.tuples(small_ints, small_ints), small_ints, small_ints),  # nested
    st.tuples(small_ints, small_ints, small_ints).map(np.array),
)
padding_args = st.one_of(triple_args, st.sampled_from(["same", "valid", "SAME", "full", ""]))
thread_args = st.one_of(st.integers(1, 3), st.sampled_from(
    [0, -1, conv3d_cpu._core.validation.MAX_THREADS + 1, 2**31, 2**63, 10**30]), st.sampled_from(JUNK))
algorithm_args = st.one_of(st.sampled_from(
    ["auto", "direct", "winograd", "winograd_f2", "winograd_f4"]), st.sampled_from(
    ["AUTO", "fft", "", "winograd_f3"]), st.sampled_from(JUNK))

FLOAT_DTYPES = [np.float32, np.float64]
OTHER_DTYPES = [np.float16, np.longdouble, np.int32, np.int64, np.uint8, np.bool_,
                np.complex64, np.complex128, object, "U4", "S4", "M8[s]", ">f4", ">f8"]
LAYOUTS = ["C"] * 12 + ["F", "strided", "reversed", "broadcast", "readonly", "unaligned",
                        "list", "scalar"]
FILLS = ["normal", "normal", "special", "zeros"]
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -3e38, 1e-40, 5e-324, 1.0])


def make_data(shape, dtype, fill, seed):
    """A C-contiguous array of ``shape`` and ``dtype`` with the given kind of values."""
    rng = np.random.default_rng(seed)
    base = np.asarray(rng.standard_normal(shape))
    if fill == "special":
        mask = rng.random(shape) < 0.3
        base = np.where(mask, rng.choice(SPECIALS, size=shape), base)
    elif fill == "zeros":
        base = np.zeros(shape)
    dt = np.dtype(dtype)
    with np.errstate(all="ignore"):
        if dt.kind == "M":
            a = np.zeros(shape, dt)
        elif dt.kind in "US":
            a = base.astype(dt)
        elif dt.kind == "c":
            a = (base + 1j * base).astype(dt)
        elif dt.kind == "b":
            a = base > 0
        elif dt.kind in "iu":
            a = np.nan_to_num(base, nan=0, posinf=1, neginf=-1).clip(-100, 100).astype(dt)
        else:
            a = base.astype(dt)
    return np.ascontiguousarray(np.asarray(a, dtype=dt))


def with_layout(a, layout):
    """``a`` (C-contiguous) presented in a memory layout, or as a list / scalar."""
    if layout == "C":
        return a
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        return np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[
            (slice(None, None, -1),) * a.ndim]
    if layout == "broadcast":  # stride 0 along the last axis: one value repeated, read-only
        if a.ndim == 0 or a.shape[-1] == 0:
            return a
        return np.broadcast_to(a[..., :1], a.shape)
    if layout == "readonly":
        a = a.copy()
        a.setflags(write=False)
        return a
    if layout == "unaligned":  # data pointer one byte past an aligned address
        if a.dtype == object or a.size == 0:
            return a
        buf = np.zeros(a.nbytes + 1, np.uint8)
        u = buf[1:].view(a.dtype).reshape(a.shape)
        u[...] = a
        return u
    if layout == "list":
        return a.tolist()
    if layout == "scalar":
        return a.reshape(-1)[0] if a.size else 0.0
    raise AssertionError(layout)


@st.composite
def arrays(draw, shape, dtype):
    """Usually ``shape`` and ``dtype`` (a valid argument); sometimes anything else."""
    kind = draw(st.sampled_from(["as_given"] * 36 + ["dtype", "shape", "both", "junk"]))
    if kind in ("dtype", "both"):
        dtype = draw(st.sampled_from(FLOAT_DTYPES + OTHER_DTYPES))
    if kind in ("shape", "both"):
        ndim = draw(st.sampled_from([0, 1, 3, 4, 4, 5, 5, 5, 6]))
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    if kind == "junk":
        return draw(st.sampled_from(JUNK))
    # a valid shape may still get a zero-size axis
    if kind == "as_given" and shape and draw(st.integers(0, 29)) == 0:
        shape = list(shape)
        shape[draw(st.integers(0, len(shape) - 1))] = 0
        shape = tuple(shape)
    a = make_data(shape, dtype, draw(st.sampled_from(FILLS)), draw(st.integers(0, 2**16)))
    return with_layout(a, draw(st.sampled_from(LAYOUTS)))


def canon_triple(v):
    """A successful call's stride/padding/dilation as the canonical tuple of 3 ints."""
    if isinstance(v, str):
        return v
    if isinstance(v, np.ndarray) and v.ndim == 0:  # a 0-d integer array is an int
        return (operator.index(v[()]),) * 3
    if hasattr(v, "__len__"):
        items = tuple(v)
        return tuple(operator.index(i) for i in (items * 3 if len(items) == 1 else items))
    return (operator.index(v),) * 3


def canon_array(a):
    return None if a is None else np.array(np.asarray(a), order="C", copy=True)


def finite(*arrays):
    return all(a is None or np.isfinite(a).all() for a in arrays)


def cannot_overflow(x, w, b):
    """No output can overflow the dtype (the float64 reference would then be out of range)."""
    if not finite(x, w, b) or x.size == 0:
        return finite(x, w, b)
    worst = float(np.abs(x).max(initial=0.0)) * float(np.abs(w).max()) * w[0].size
    worst += 0.0 if b is None or b.size == 0 else float(np.abs(b).max())
    return worst < np.finfo(w.dtype).max / 2


def check_raises_only_allowed(call):
    """Run ``call`` guarded; return (result, None) or (None, allowed exception)."""
    with guarded():
        try:
            result = call()
        except ALLOWED as e:
            assert str(e), f"{type(e).__name__} without a message"
            event(f"raised {type(e).__name__}")
            return None, e
    event("returned")
    return result, None


# ----------------------------------------------------------------------- conv3d (functional)

def fuzzed_names(draw, names):
    """Which arguments to replace by fuzz values: none in about a third of the cases."""
    count = draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 2, 3, 4]))
    return draw(st.permutations(sorted(names)))[:count]


@st.composite
def conv3d_calls(draw):
    """A small valid F.conv3d call with up to four arguments replaced by fuzz values."""
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    winograd = draw(st.booleans())
    k = (3, 3, 3) if winograd else tuple(draw(st.integers(1, 3)) for _ in range(3))
    stride = 1 if winograd else draw(st.sampled_from([1, (1, 2, 1), 2]))
    dilation = 1 if winograd else draw(st.sampled_from([1, (1, 2, 1)]))
    padding = draw(st.sampled_from([0, 1, (0, 1, 2), "valid"] + (["same"] if stride == 1 else [])))
    algorithm = draw(st.sampled_from(["auto", "direct"] + (
        ["winograd", "winograd_f2", "winograd_f4"] if winograd else [])))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    lead = draw(st.sampled_from([(), (0,), (1,), (2,)]))
    extent = [(kk - 1) * (2 if dilation != 1 else 1) + 1 for kk in k]
    size = tuple(draw(st.integers(e, e + 4)) for e in extent)
    call = dict(
        input=draw(arrays(lead + (cg * groups,) + size, dtype)),
        weight=draw(arrays((og * groups, cg) + k, dtype)),
        bias=draw(st.one_of(st.none(), arrays((og * groups,), dtype))),
        stride=stride, padding=padding, dilation=dilation, groups=groups, algorithm=algorithm,
        num_threads=draw(st.sampled_from([None, 1, 2, 3])),
    )
    fuzz = {"stride": triple_args, "padding": padding_args, "dilation": triple_args,
            "groups": int_args, "algorithm": algorithm_args, "num_threads": thread_args}
    for name in fuzzed_names(draw, fuzz):
        call[name] = draw(fuzz[name])
    return call


def check_conv3d_result(y, call):
    x, w, b = (canon_array(call[k]) for k in ("input", "weight", "bias"))
    assert isinstance(y, np.ndarray) and y.flags.c_contiguous and y.flags.writeable
    # (float32 / float64 in the other byte order are read as the native dtype)
    assert y.dtype.isnative and y.dtype == w.dtype.newbyteorder("=") and y.ndim == x.ndim
    kwargs = dict(stride=canon_triple(call["stride"]), padding=canon_triple(call["padding"]),
                  dilation=canon_triple(call["dilation"]), groups=operator.index(call["groups"]),
                  algorithm=call["algorithm"], num_threads=1)
    expected = conv3d(x, w, b, **kwargs)
    assert bits(y) == bits(expected), "argument form or layout changed the result"
    if call["algorithm"] == "direct" and cannot_overflow(x, w, b):
        check_conv(y, x, w, b, kwargs["stride"], kwargs["padding"], kwargs["dilation"],
                   kwargs["groups"])


@budget(1000)
@given(conv3d_calls())
def test_fuzz_conv3d(call):
    y, _ = check_raises_only_allowed(lambda: conv3d(**call))
    if y is not None:
        check_conv3d_result(y, call)


@st.composite
def garbage_conv3d_calls(draw):
    """Every argument from the fuzz distributions: almost always an error."""
    return dict(
        input=draw(arrays((1, 1, 2, 2, 2), np.float32)),
        weight=draw(arrays((1, 1, 1, 1, 1), np.float32)),
        bias=draw(st.one_of(st.none(), arrays((1,), np.float32))),
        stride=draw(triple_args), padding=draw(padding_args), dilation=draw(triple_args),
        groups=draw(int_args), algorithm=draw(algorithm_args), num_threads=draw(thread_args),
    )


@budget(1000)
@given(garbage_conv3d_calls())
def test_fuzz_conv3d_garbage(call):
    args = [call.pop(k) for k in ("input", "weight", "bias", "stride", "padding", "dilation",
                                  "groups")]
    y, _ = check_raises_only_allowed(lambda: conv3d(*args, **call))
    if y is not None:
        check_conv3d_result(y, dict(zip(("input", "weight", "bias", "stride", "padding",
                                         "dilation", "groups"), args), **call))


# ------------------------------------------------------------------------ Conv3d (module)

@st.composite
def module_args(draw):
    """Conv3d constructor arguments: a small valid layer with up to four replaced."""
    groups = draw(st.integers(1, 2))
    kwargs = dict(
        in_channels=groups * draw(st.integers(1, 3)),
        out_channels=groups * draw(st.integers(1, 3)),
        kernel_size=draw(st.sampled_from([1, 2, 3, (1, 2, 3), (3, 3, 3)])),
        stride=draw(st.sampled_from([1, 2, (1, 1, 2)])),
        padding=draw(st.sampled_from([0, 1, (1, 0, 2), "same", "valid"])),
        dilation=draw(st.sampled_from([1, (2, 1, 1)])),
        groups=groups,
        bias=draw(st.booleans()),
        padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])),
        device=draw(st.sampled_from([None, "cpu"])),
        dtype=draw(st.sampled_from([None, np.float32, np.float64, "float64", "f4"])),
        rng=draw(st.integers(0, 100)),
        algorithm=draw(st.sampled_from(["auto", "direct", "winograd_f2"])),
    )
    fuzz = {
        "in_channels": int_args, "out_channels": int_args, "kernel_size": triple_args,
        "stride": triple_args, "padding": padding_args, "dilation": triple_args,
        "groups": int_args, "bias": st.sampled_from([0, 1, None, "no", np.bool_(False)]),
        "padding_mode": st.one_of(st.sampled_from(["ZEROS", "constant", "wrap", ""]),
                                  st.sampled_from(JUNK)),
        "device": st.one_of(st.sampled_from(["cuda", "cpu:0", "CPU", "meta"]),
                            st.sampled_from(JUNK)),
        "dtype": st.one_of(st.sampled_from(OTHER_DTYPES + ["float", "double", "f2", "foo",
                                                           "f4,f4", "(2,)f4"]),
                           st.sampled_from(JUNK)),
        "rng": st.one_of(st.sampled_from([-1, 2**200, 1.5, "seed", [1, -2], None])),
        "algorithm": algorithm_args,
    }
    for name in fuzzed_names(draw, fuzz):
        kwargs[name] = draw(fuzz[name])
    return kwargs


def module_expected(m, x):
    """Forward of ``m`` on canonical ``x``, recomputed with the public functional API."""
    x = canon_array(x)
    if m.padding_mode == "zeros":
        return conv3d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups,
                      algorithm=m.algorithm, num_threads=1)
    # other modes: compare with the float64 reference after the padding
    return None


@st.composite
def module_sessions(draw):
    kwargs = draw(module_args())
    # inputs shaped for the unfuzzed layer; they may still get fuzzed shapes/dtypes
    cin = kwargs["in_channels"] if isinstance(kwargs["in_channels"], int) else 2
    dtype = np.float64 if any(kwargs["dtype"] is d for d in (np.float64, "float64")) \
        else np.float32
    lead = draw(st.sampled_from([(), (1,), (2,)]))
    size = tuple(draw(st.integers(1, 7)) for _ in range(3))
    x = draw(arrays(lead + (max(1, min(cin, 6)),) + size, dtype))
    return kwargs, x, draw(st.data())


@budget(800)
@given(module_sessions())
def test_fuzz_module(session):
    kwargs, x, data = session
    m, _ = check_raises_only_allowed(lambda: Conv3d(**kwargs))
    if m is None:
        return
    # a constructed module is consistent
    assert all(isinstance(v, tuple) and len(v) == 3 and all(type(i) is int for i in v)
               for v in (m.kernel_size, m.stride, m.dilation))
    assert m.weight.shape == (m.out_channels, m.in_channels // m.groups) + m.kernel_size
    assert m.weight.dtype == m.dtype and np.isfinite(m.weight).all()
    assert (m.bias is None) == (not kwargs["bias"])
    repr(m)

    y, _ = check_raises_only_allowed(lambda: m(x))
    if y is not None:
        assert y.dtype == m.dtype and y.flags.c_contiguous
        expected = module_expected(m, x)
        if expected is not None:
            assert bits(y) == bits(expected)
        elif cannot_overflow(canon_array(x), m.weight, m.bias):
            check_conv(y, canon_array(x), m.weight, m.bias, m.stride, m.padding, m.dilation,
                       m.groups, m.padding_mode)

    # parameters: load_state_dict and the setters, valid or not, never half-update
    w_shape, b_shape = m.weight.shape, (m.out_channels,)
    state = {"weight": data.draw(arrays(w_shape, m.dtype), label="weight"),
             "bias": data.draw(arrays(b_shape, m.dtype), label="bias")}
    if m.bias is None:
        del state["bias"]
    extra = data.draw(st.sampled_from(["none", "drop", "add", "not_a_mapping"]), label="keys")
    if extra == "drop":
        state.pop("weight")
    elif extra == "add":
        state["running_mean"] = np.zeros(3)
    elif extra == "not_a_mapping":
        state = data.draw(st.sampled_from([None, [("weight", 1)], "weight", 3, JUNK[-1]]),
                          label="state")
    before = bits(m.weight), None if m.bias is None else bits(m.bias)
    _, err = check_raises_only_allowed(lambda: m.load_state_dict(state))
    if err is not None:
        assert (bits(m.weight), None if m.bias is None else bits(m.bias)) == before
    else:
        np.testing.assert_array_equal(m.weight, np.asarray(state["weight"], m.dtype))
        assert m.weight.flags.c_contiguous and m.weight.dtype == m.dtype

    before = bits(m.weight)
    new_w = data.draw(arrays(w_shape, m.dtype), label="new weight")
    _, err = check_raises_only_allowed(lambda: setattr(m, "weight", new_w))
    if err is not None:
        assert bits(m.weight) == before
    new_b = data.draw(st.one_of(st.none(), arrays(b_shape, m.dtype)), label="new bias")
    check_raises_only_allowed(lambda: setattr(m, "bias", new_b))

    # whatever happened above, the module still computes what its parameters say
    xv = make_data((1, m.in_channels, 4, 5, 6), m.dtype, "normal", 0)
    y, _ = check_raises_only_allowed(lambda: m(xv))
    if y is not None and m.padding_mode == "zeros":
        assert bits(y) == bits(module_expected(m, xv))


# --------------------------------------------------------------- extreme but cheap sizes

def ones_conv(spatial, cin, k, stride, pads, dilation):
    """conv3d of ones with ones (no bias), exactly, in Python ints: (oD, oH, oW) and values.

    The result is separable: cin times the number of in-range taps along each axis."""
    counts = []
    for n, kk, s, (lo, hi), d in zip(spatial, k, stride, pads, dilation):
        o = (n + lo + hi - d * (kk - 1) - 1) // s + 1
        if o > 64:
            return None  # too big to check element by element (and to allocate, below)
        counts.append([sum(0 <= i * s + a * d - lo < n for a in range(kk)) for i in range(o)])
    return cin * np.einsum("i,j,k->ijk", *(np.array(c, np.float64) for c in counts))


EXTREME_CASES = [
    # huge padding with a stride that keeps the output tiny: the padded rows / planes the
    # direct kernel gathers would exceed the address space (2**32 squared wraps to 0 in
    # 64-bit arithmetic; before the fix this wrote past a zero-size buffer)
    dict(padding=(0, 2**32 - 1, 2**32 - 1), stride=(1, 2**33, 2**33)),
    dict(padding=(0, 2**31, 2**31), stride=(1, 2**32, 2**32)),
    dict(padding=(0, 0, 2**62), stride=(1, 1, 2**63 - 1)),
    dict(padding=(2**62, 2**62, 2**62), stride=2**63 - 1),
    dict(padding=(0, 2**40, 0), stride=(1, 2**41, 1)),
    dict(padding=(0, 2**40, 2**20), stride=(1, 2**41, 2**21)),
    dict(padding=(2**62, 0, 0), stride=(2**63 - 1, 1, 1), dilation=(2**62, 1, 1)),
    dict(padding=(2**61, 0, 0), stride=(2**62, 1, 1), dilation=(2**61, 1, 1)),
    dict(stride=2**63), dict(stride=-(2**63)), dict(dilation=2**63), dict(padding=2**63),
    dict(padding=(0, 0, 2**31)),  # a 2**32-wide output row: 16 GiB
    dict(padding=(2**20, 2**20, 0)),  # 2**42 outputs
    dict(num_threads=10**5), dict(num_threads=2**31), dict(num_threads=2**64),
]


@pytest.mark.parametrize("case", EXTREME_CASES)
@pytest.mark.parametrize("cout", [1, 16])  # the rows path and the blocked path
@pytest.mark.parametrize("algorithm", ["auto", "direct"])
def test_extreme_values_exact_or_error(case, cout, algorithm):
    """Huge values: an allowed error, or (when the output is tiny) the exact answer."""
    cin = 2
    k = (2, 1, 1) if "dilation" in case else (1, 1, 1)  # dilation matters with a kernel > 1
    x = np.ones((1, cin, 1, 1, 1), np.float32)
    w = np.ones((cout, cin) + k, np.float32)
    with guarded():
        try:
            y = conv3d(x, w, None, algorithm=algorithm, **case)
        except ALLOWED:
            return
    as3 = lambda v: v if isinstance(v, tuple) else (v,) * 3  # noqa: E731
    pad = as3(case.get("padding", 0))
    expected = ones_conv((1, 1, 1), cin, k, as3(case.get("stride", 1)),
                         tuple((p, p) for p in pad), as3(case.get("dilation", 1)))
    assert expected is not None, f"an output of shape {y.shape} should not be allocatable"
    np.testing.assert_array_equal(y, np.broadcast_to(expected, y.shape))


@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "circular"])
def test_extreme_module_padding_raises(padding_mode):
    m = Conv3d(1, 1, 1, padding=(0, 2**32 - 1, 2**32 - 1), stride=(1, 2**33, 2**33),
               padding_mode=padding_mode, rng=0)
    with guarded():
        with pytest.raises(ALLOWED):
            m(np.ones((1, 1, 1, 1, 1), np.float32))


def test_huge_broadcast_input_raises():
    # a stride-0 view can claim any size; the output it implies cannot be allocated
    x = np.broadcast_to(np.float32(1), (2**40, 1, 2, 2, 2))
    w = np.ones((1, 1, 1, 1, 1), np.float32)
    with guarded():
        with pytest.raises(MemoryError):
            conv3d(x, w)
        with pytest.raises(ALLOWED):
            Conv3d(1, 1, 1, rng=0)(x)


@pytest.mark.parametrize("cout", [1, 16])
@pytest.mark.parametrize("algorithm", ["auto", "direct"])
@pytest.mark.parametrize("kwargs, expected", [
    # Large (not absurd) padding and stride: most sampled positions fall in the padding and
    # give the bias; the workspace stays small enough to allocate.
    (dict(padding=(0, 0, 2**20), stride=(1, 1, 2**20)), [7, 9, 7]),
    (dict(padding=(0, 2**10, 2**10), stride=(1, 2**10, 2**10)), [7, 7, 7, 7, 9, 7, 7, 7, 7]),
    # the largest values that fit in ssize_t, where they change nothing
    (dict(stride=2**63 - 1), [9]),
    (dict(stride=(2**63 - 1, 1, 2**63 - 1), padding=(0, 1, 0)), [7, 9, 7]),
    (dict(dilation=2**63 - 1), [9]),  # kernel of size 1: dilation is irrelevant
])
def test_huge_but_valid_values_are_exact(kwargs, expected, algorithm, cout):
    x = np.ones((1, 1, 1, 1, 1), np.float32)
    w = np.full((cout, 1, 1, 1, 1), 2, np.float32)
    b = np.full(cout, 7, np.float32)
    with guarded():
        y = conv3d(x, w, b, algorithm=algorithm, **kwargs)
    assert math.prod(y.shape[2:]) == len(expected)
    np.testing.assert_array_equal(y.reshape(cout, -1),
                                  np.tile(np.array(expected, np.float32), (cout, 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", ["input", "weight", "bias"])
def test_unaligned_arrays(which, dtype):
    # A view at an odd byte offset (np.frombuffer, a packed record field...): same bits as an
    # aligned copy, and the kernels never read through a misaligned typed pointer (UBSan
    # checks this in make sanitize).
    rng = np.random.default_rng(0)
    arrays = {"input": rng.standard_normal((2, 16, 6, 7, 8)).astype(dtype),
              "weight": rng.standard_normal((16, 16, 3, 3, 3)).astype(dtype),
              "bias": rng.standard_normal(16).astype(dtype)}
    expected = {a: bits(conv3d(arrays["input"], arrays["weight"], arrays["bias"], padding=1,
                               algorithm=a)) for a in ("direct", "winograd_f4", "auto")}
    arrays[which] = with_layout(arrays[which], "unaligned")
    assert not arrays[which].flags.aligned
    for algorithm, e in expected.items():
        assert bits(conv3d(arrays["input"], arrays["weight"], arrays["bias"], padding=1,
                           algorithm=algorithm)) == e
    m = Conv3d(16, 16, 3, padding=1, dtype=dtype, rng=0)
    m.weight, m.bias = arrays["weight"], arrays["bias"]
    assert m.weight.flags.aligned and m.bias.flags.aligned
    assert bits(m(arrays["input"])) == expected["auto"]
