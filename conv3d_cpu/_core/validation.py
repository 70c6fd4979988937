"""Argument normalization and validation: the one place a parameter is checked.

Every function here raises ``ValueError`` (a bad value) or ``TypeError`` (a bad type) whose
message names the argument, what was expected and what was given (``check_workspace`` and
``weight_size``: a ``MemoryError`` for what could exist but not here). The functional API, the
module and the padding modes all check through it. Arrays of float32 / float64 in the other
byte order are converted (losslessly, a copy) to the native one; numpy masked arrays are
refused (their mask would be ignored).
"""
import collections.abc
import math
import operator
import os
import reprlib
import sys

import numpy as np

from conv3d_cpu._core.algorithms import ALGORITHMS, FORCED_TILE, winograd_ineligible
from conv3d_cpu._native.constants import PADDING_MODES, ROW_OVERREAD, WINOGRAD_SHAPES

_AXES = ("depth", "height", "width")
PADDING_STRINGS = ("valid", "same")
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Most OpenMP threads one call may ask for. libgomp reserves per-thread bookkeeping on the
# calling thread's stack and exits the process when it cannot create a thread, so an absurd
# num_threads (tens of thousands) would crash the caller instead of raising.
MAX_THREADS = max(256, os.cpu_count() or 1)


def as_int(name, value):
    """``value`` as a Python int; bools, floats and strings are a TypeError."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]  # a 0-d array is its scalar (an integer one is an int, as in torch)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__} {_short(value)}"
        ) from None


def positive_int(name, value):
    value = as_int(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def nonnegative_int(name, value):
    value = as_int(name, value)
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}")
    return value


_REPR = reprlib.Repr()
_REPR.maxother = _REPR.maxstring = 60
_short = _REPR.repr  # a repr short enough for a message, whatever the value's size


def _describe(value):
    """``value`` for a message: its type and a short repr (an array's dimensions and dtype)."""
    if isinstance(value, np.ndarray):
        return f"{value.ndim}-d {value.dtype} array {_short(value)}"
    return f"{type(value).__name__} {_short(value)}"


# Ordered containers whose items are not ints: read as one value (an error), not item by item.
_NOT_INT_SEQUENCES = (str, bytes, bytearray, memoryview)


def _int_items(name, value, expected, lengths=None):
    """The items of a sequence (or 1-d array) ``value``, each as a Python int; TypeError for
    anything else: a set, a mapping or any other unordered or one-pass iterable (their order
    is not the caller's), or an array of another rank; ValueError for a length not in
    ``lengths`` (checked before the items are read: a huge range is not walked)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError(f"{name} must be {expected}, got {_describe(value)}")
    elif not isinstance(value, collections.abc.Sequence):
        raise TypeError(
            f"{name} must be {expected}, got {_describe(value)} (an unordered or one-pass "
            f"iterable has no (depth, height, width) order: pass a tuple)"
        )
    if lengths is not None and len(value) not in lengths:
        raise ValueError(
            f"{name} must be {expected}, got {_describe(value)} of length {len(value)}"
        )
    items = []
    for i, item in enumerate(value):
        try:
            items.append(as_int(name, item))
        except TypeError:
            raise TypeError(
                f"{name} must be {expected}, got {_describe(value)} whose item {i} is "
                f"{type(item).__name__} {_short(item)}, not an int"
            ) from None
    return tuple(items)


def triple(name, value, minimum, allow_single=False, expected=None):
    """Normalize an int or a sequence of 3 ints (depth, height, width) to a tuple of 3 ints.

    Accepted: an int (a numpy integer or a 0-d integer array too), or a list, tuple, range or
    1-d numpy array of 3 ints; ``allow_single`` also accepts 1 item (as ``F.conv3d`` does).
    Sets, mappings and other unordered iterables are a TypeError, as in torch. ``expected``
    overrides the "an int or a sequence of 3 ints ..." of the messages.
    """
    if expected is None:
        expected = "an int or a sequence of 3 ints (depth, height, width)" + (
            " or of 1 int" if allow_single else "")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        if value.dtype.kind not in "iuO":
            raise TypeError(f"{name} must be {expected}, got {_describe(value)}")
        value = value[()]
    if isinstance(value, _NOT_INT_SEQUENCES) or not isinstance(
            value, (collections.abc.Iterable, np.ndarray)):
        try:
            values = (as_int(name, value),) * 3
        except TypeError:
            raise TypeError(f"{name} must be {expected}, got {_describe(value)}") from None
    else:
        items = _int_items(name, value, expected, (1, 3) if allow_single else (3,))
        values = items * 3 if len(items) == 1 else items
    if any(v < minimum for v in values):
        which = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} values must be {which}, got {values}")
    if any(v > sys.maxsize for v in values):
        # The kernels take sizes as C ssize_t: a bigger value would be an OverflowError there.
        raise ValueError(f"{name} values must be at most {sys.maxsize}, got {values}")
    return values


def padding_arg(value, allow_single=False):
    """Normalize ``padding``: 'valid', 'same', or a tuple of 3 non-negative ints."""
    expected = "'valid', 'same', an int or a sequence of 3 ints (depth, height, width)" + (
        " or of 1 int" if allow_single else "")
    if isinstance(value, str):
        if value not in PADDING_STRINGS:
            raise ValueError(f"padding must be {expected}, got {value!r}")
        return str(value)
    return triple("padding", value, 0, allow_single=allow_single, expected=expected)


def weight_and_groups(weight, groups, transposed=False):
    """``(weight, groups)``: a float array of shape (O, C / groups, kD, kH, kW) (transposed:
    (C, O / groups, kD, kH, kW)) whose first size is divisible by ``groups``, a positive int
    (checked in that order, as PyTorch does)."""
    first, second = ("in_channels", "out_channels") if transposed else (
        "out_channels", "in_channels")
    weight = float_array("weight", weight)
    if weight.ndim != 5 or 0 in weight.shape:
        raise ValueError(
            f"weight must be a 5-D array ({first}, {second}/groups, kD, kH, kW) with "
            f"positive sizes, got shape {weight.shape}"
        )
    groups = positive_int("groups", groups)
    if weight.shape[0] % groups:
        raise ValueError(
            f"weight.shape[0] ({first}) must be divisible by groups, got "
            f"{weight.shape[0]} and groups={groups}"
        )
    return weight, groups


def bias_arg(bias, weight, channels=None):
    """``bias`` (or None) as an array of ``weight``'s dtype and shape (out_channels,):
    ``channels``, by default weight.shape[0]."""
    if bias is None:
        return None
    channels = weight.shape[0] if channels is None else channels
    bias = float_array("bias", bias)
    same_dtype("bias", bias, weight.dtype)
    if bias.shape != (channels,):
        raise ValueError(
            f"bias must have shape ({channels},) (out_channels), got {bias.shape}"
        )
    return bias


def one_of(name, value, choices):
    """``value``, a string among ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return value


def algorithm_arg(algorithm):
    return one_of("algorithm", algorithm, ALGORITHMS)


def algorithm_fits(algorithm, kernel_size, stride, dilation):
    """ValueError when an explicit Winograd ``algorithm`` cannot compute this layer."""
    if algorithm in ("auto", "direct"):
        return
    reason = winograd_ineligible(kernel_size, stride, dilation)
    if reason:
        raise ValueError(f"algorithm={algorithm!r} cannot compute this layer: {reason}")
    kernel = tuple(kernel_size)
    tiles = WINOGRAD_SHAPES[kernel]
    if algorithm in FORCED_TILE and FORCED_TILE[algorithm] not in tiles:
        names = [f"F({m}, {max(kernel)})" for m in tiles]
        usable = [f"{a!r}" for a, m in FORCED_TILE.items() if m in tiles] + ["'winograd'"]
        raise ValueError(
            f"algorithm={algorithm!r} cannot compute this layer: kernel_size {kernel} "
            f"has {' and '.join(names)} only (use {' or '.join(usable)})")


def check_same_stride(padding, stride):
    if padding == "same" and stride != (1, 1, 1):
        raise ValueError(
            f"padding='same' is not supported for strided convolutions, got stride={stride}"
        )


def groups_arg(groups, in_channels, out_channels):
    groups = positive_int("groups", groups)
    if in_channels % groups:
        raise ValueError(
            f"in_channels must be divisible by groups, got in_channels={in_channels}, "
            f"groups={groups}"
        )
    if out_channels % groups:
        raise ValueError(
            f"out_channels must be divisible by groups, got out_channels={out_channels}, "
            f"groups={groups}"
        )
    return groups


def padding_mode_arg(mode):
    return one_of("padding_mode", mode, PADDING_MODES)


def padding_mode_fits(mode, spatial, pads):
    """PyTorch's limits: reflect needs pad < size, circular pad <= size, on every side."""
    # Checked width first, as PyTorch does, so the first reported axis matches its error.
    for axis in (2, 1, 0):
        size, (lo, hi) = spatial[axis], pads[axis]
        if mode == "reflect" and max(lo, hi) >= size:
            raise ValueError(
                f"padding_mode='reflect' needs padding < input size on each axis, got padding "
                f"({lo}, {hi}) on {_AXES[axis]} of size {size}"
            )
        if mode == "circular" and max(lo, hi) > size:
            raise ValueError(
                f"padding_mode='circular' needs padding <= input size on each axis (it cannot "
                f"wrap around more than once), got padding ({lo}, {hi}) on {_AXES[axis]} "
                f"of size {size}"
            )


def device_arg(device):
    if device is None:
        return None
    if isinstance(device, str) and device == "cpu":
        return device
    raise ValueError(f"device must be None or 'cpu' (this package computes on CPU), got {device!r}")


def _dtype_hint(dt, for_dtype_arg=False):
    """What to do instead of passing ``dt`` (unsupported): a cast only where it is the fix,
    with whether it loses precision."""
    if dt.kind == "f" and dt.itemsize < 4:
        if for_dtype_arg:
            return f" ({dt} is not supported: use numpy.float32, which holds every {dt} value)"
        return (f" ({dt} is not supported: cast to float32 (lossless) with "
                f".astype(np.float32))")
    if dt.kind == "f":
        if for_dtype_arg:
            return f" ({dt} is not supported: use numpy.float64, the widest one)"
        return (f" ({dt} is not supported: cast with .astype(np.float64), which rounds to "
                f"float64's precision, if that is intended)")
    if dt.kind in "iub":
        if for_dtype_arg:
            return " (integer and bool parameters are not supported)"
        return " (integer and bool data: cast to np.float32 or np.float64 first)"
    if dt.kind == "c":
        return " (complex convolution is not supported: convolve real and imaginary parts)"
    return ""


def _native(dt):
    """``dt`` in the native byte order (float32 / float64 stored big-endian on a little-endian
    machine hold the same values: reading them is a lossless byte swap)."""
    return dt if dt.isnative else dt.newbyteorder("=")


def dtype_arg(dtype):
    """The module dtype: float32 (default, ``None``) or float64, in the native byte order."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype must be numpy.float32 or numpy.float64, got {_short(dtype)}"
        ) from None
    if _native(dt) not in SUPPORTED_DTYPES:
        raise TypeError(
            f"dtype must be numpy.float32 or numpy.float64, got {dt}"
            f"{_dtype_hint(_native(dt), for_dtype_arg=True)}"
        )
    return _native(dt)


def _is_masked(value):
    ma = sys.modules.get("numpy.ma")  # (none can exist before numpy.ma is imported)
    return ma is not None and isinstance(value, ma.MaskedArray)


def _not_masked(name, value):
    """TypeError for a numpy masked array: np.asarray would drop its mask, silently."""
    if _is_masked(value):
        raise TypeError(
            f"{name} is a numpy masked array: masked arrays are not supported (the mask "
            f"would be ignored): fill or compress first, e.g. {name}.filled(0)"
        )


def aligned(arr):
    """``arr``, or a copy of it when its data is not aligned to its itemsize: the kernels read
    elements through typed pointers, which C requires to be aligned (a misaligned one is
    undefined behaviour: UBSan reports it). Arrays that arrive past validation need it too,
    e.g. a Dask task's operands, deserialized from a network frame at any byte offset."""
    return arr if arr.flags.aligned else arr.copy()


def float_array(name, value):
    """``value`` as an ndarray of float32 or float64, without any cast.

    A view whose data is not aligned to its itemsize (e.g. from ``np.frombuffer`` at an odd
    offset) is copied (:func:`aligned`). Data in the other byte order is copied into the
    native one (the same values); a masked array is a TypeError.
    """
    _not_masked(name, value)
    arr = np.asarray(value)
    if arr.dtype not in SUPPORTED_DTYPES and _native(arr.dtype) in SUPPORTED_DTYPES:
        return arr.astype(_native(arr.dtype))
    if arr.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {arr.dtype}{_dtype_hint(arr.dtype)}"
        )
    return aligned(arr)


def parameter_arg(name, value, dtype, shape, cast):
    """A module parameter: ``value`` as a C-contiguous array of ``dtype`` and ``shape``.

    ``cast`` allows lossless (safe) casts from other floating dtypes, as loading does;
    otherwise the dtype must match exactly (in either byte order: the other one is converted
    to the native one, a copy). A masked array is a TypeError.
    """
    _not_masked(name, value)
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        arr = arr.astype(_native(arr.dtype))
    if arr.dtype != dtype:
        lossless = arr.dtype.kind == "f" and np.can_cast(arr.dtype, dtype, "safe")
        if not (cast and lossless):
            raise TypeError(
                f"{name} has dtype {arr.dtype}, expected {dtype} (the module's dtype)"
                f"{_cast_hint(arr.dtype, dtype)}"
            )
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if cast or not arr.flags.aligned:  # (the kernels need aligned data)
        return np.array(arr, dtype=dtype, order="C", copy=True)
    return np.ascontiguousarray(arr)


def _cast_hint(src, dst):
    """Why ``src`` was refused for a parameter of ``dst`` and the cast that would do."""
    fix = f"value.astype(np.{dst})"
    if src.kind == "f":
        if np.can_cast(src, dst, "safe"):  # refused only because the setter makes no cast
            return (f"; assignment makes no implicit cast: assign {fix} (lossless), or use "
                    f"load_state_dict, which converts losslessly")
        return (f"; {src} to {dst} loses precision, so no cast is made: assign or load "
                f"{fix} if the loss of precision is intended")
    if src.kind in "iub":
        return f"; integer and bool values are not cast implicitly: convert with {fix}"
    if src.kind == "c":
        return "; complex parameters are not supported"
    return ""


def bias_assignment(has_bias, value):
    """A module built with or without a bias keeps it so."""
    if not has_bias or value is None:
        raise ValueError(
            "bias cannot be added to or removed from a Conv3d after construction "
            f"(constructed with bias={has_bias}); build a new module"
        )


def state_dict_arg(state_dict, expected):
    """``state_dict`` as a mapping whose keys are exactly ``expected``."""
    if not isinstance(state_dict, collections.abc.Mapping):
        raise TypeError(
            f"state_dict must be a mapping such as a dict, got {type(state_dict).__name__}"
        )
    given = set(state_dict.keys())
    if given != set(expected):
        missing = ", ".join(sorted(map(repr, set(expected) - given))) or "none"
        unexpected = ", ".join(sorted(map(repr, given - set(expected)))) or "none"
        raise ValueError(
            f"state_dict keys do not match Conv3d's: missing key(s): {missing}; "
            f"unexpected key(s): {unexpected}"
        )
    return state_dict


def same_dtype(name, arr, dtype, other="weight"):
    if arr.dtype != dtype:
        raise TypeError(
            f"{name} dtype {arr.dtype} does not match {other} dtype {dtype}; no implicit cast "
            f"is made (convert one of them with .astype)"
        )


def num_threads_arg(num_threads):
    """0 stands for 'the OpenMP default, read per call'."""
    if num_threads is None:
        return 0
    num_threads = positive_int("num_threads", num_threads)
    if num_threads > MAX_THREADS:
        raise ValueError(f"num_threads must be at most {MAX_THREADS}, got {num_threads}")
    return num_threads


def input_5d(x, in_channels, source="weight.shape[1] * groups"):
    """Validate an input's rank and channels (``source``: where in_channels comes from);
    return (5-D view, was_unbatched)."""
    if x.ndim not in (4, 5):
        raise ValueError(
            f"input must have 4 (C, D, H, W) or 5 (N, C, D, H, W) dimensions, "
            f"got {x.ndim} dimensions with shape {x.shape}"
        )
    unbatched = x.ndim == 4
    if unbatched:
        x = x[None]
    if x.shape[1] != in_channels:
        raise ValueError(
            f"input has {x.shape[1]} channels (shape {x.shape}), expected in_channels="
            f"{in_channels} ({source})"
        )
    if any(s == 0 for s in x.shape[2:]):
        raise ValueError(
            f"input spatial dimensions (D, H, W) must be positive, got shape {x.shape}"
        )
    return x, unbatched


def out_arg(out, shape, dtype, *arrays):
    """``out`` (or None) as a 5-D view of a caller's array to write the result into: an ndarray
    of ``shape`` ((N, O, oD, oH, oW), or without N for an unbatched input) and ``dtype``,
    C-contiguous, writeable, aligned, sharing no memory with ``arrays`` (the operands). Checked
    before anything is written."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray or None, got {type(out).__name__}")
    if type(out) is not np.ndarray and _is_masked(out):
        raise TypeError("out must be a plain numpy.ndarray (e.g. from numpy.empty), got a "
                        "masked array: its mask would be left as it is")
    if out.dtype != dtype and _native(out.dtype) == dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}: out must be in the native "
                        f"byte order (the result is written as is, not byte-swapped), e.g. "
                        f"numpy.empty(shape, np.{dtype})")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype} (the input's); no cast is "
                        f"made")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, expected {tuple(shape)}")
    if not (out.flags.c_contiguous and out.flags.writeable and out.flags.aligned):
        raise ValueError(
            "out must be a C-contiguous, writeable, aligned array (e.g. from numpy.empty), got "
            f"one with flags c_contiguous={out.flags.c_contiguous}, "
            f"writeable={out.flags.writeable}, aligned={out.flags.aligned}")
    if any(a is not None and np.may_share_memory(out, a) for a in arrays):
        raise ValueError("out must not share memory with the input, the weight or the bias")
    return out if out.ndim == 5 else out[None]


def same_padding(kernel_size, dilation):
    """PyTorch's 'same' split per axis: ((lo, hi), ...), the extra element on the far side."""
    pads = []
    for k, d in zip(kernel_size, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def padding_pairs(padding, kernel_size, dilation):
    """(lo, hi) per axis for a normalized ``padding``."""
    if padding == "valid":
        return ((0, 0),) * 3
    if padding == "same":
        return same_padding(kernel_size, dilation)
    return tuple((p, p) for p in padding)


def output_shape(spatial, kernel_size, stride, pads, dilation):
    """Output (D, H, W); ValueError when the kernel does not fit the padded input."""
    out = []
    for axis, (n, k, s, (lo, hi), d) in enumerate(
        zip(spatial, kernel_size, stride, pads, dilation)
    ):
        extent = d * (k - 1) + 1
        padded = n + lo + hi
        if extent > padded:
            raise ValueError(
                f"kernel size {tuple(kernel_size)} (dilated extent "
                f"{tuple(dd * (kk - 1) + 1 for kk, dd in zip(kernel_size, dilation))}) is larger "
                f"than the padded input {tuple(a + p + q for a, (p, q) in zip(spatial, pads))} "
                f"on axis {'DHW'[axis]}"
            )
        out.append((padded - extent) // s + 1)
    # Each output element a float64 at most: past this numpy cannot even describe the array.
    if math.prod(out) * 8 > sys.maxsize:
        gives = (f"gives, with stride {tuple(stride)}, an output of {tuple(out)} = "
                 f"{math.prod(out)} elements per channel, more than a numpy array can hold")
        if any(lo or hi for lo, hi in pads):
            raise ValueError(
                f"padding {tuple(pads)} ((before, after) per axis) is too large: on the "
                f"input's spatial size {tuple(spatial)} it {gives}")
        raise ValueError(f"the input's spatial size {tuple(spatial)} {gives}")
    return tuple(out)


def check_workspace(x_shape, weight_shape, pads, groups):
    """MemoryError for a layer whose direct-kernel workspace cannot exist (a ValueError naming
    padding when the padded input itself is larger than a C ssize_t can count).

    The direct kernel keeps, per thread, the zero-padded input rows of one output row (at most
    (C/groups) * kD * kH rows of the padded width) or the padded planes of one output plane
    ((C/groups) * kD planes of the padded H x W), and sizes them in C ssize_t arithmetic. With
    a huge padding (and a stride that keeps the output small) that product would wrap around
    and the kernel would write past a too-small buffer; here it is computed exactly first.
    The bound used, per thread, is (C/groups) * kD * kH * padded H * (padded W + ROW_OVERREAD)
    elements (the row kernel's rows are padded to whole steps); the padded depth only enters
    index sums, bounded here to a quarter of the ssize_t range.
    """
    cpg = x_shape[1] // groups
    kd, kh = weight_shape[2], weight_shape[3]
    padded_d, padded_h, padded_w = padded = tuple(
        n + lo + hi for n, (lo, hi) in zip(x_shape[2:], pads))
    if max(padded) > sys.maxsize:
        raise ValueError(
            f"padding too large: padding {tuple(pads)} ((before, after) per axis) on the "
            f"input's spatial size {tuple(x_shape[2:])} gives a padded input of {padded}, "
            f"larger than {sys.maxsize} (the largest size the kernels can count) on an axis"
        )
    per_thread = cpg * kd * kh * padded_h * (padded_w + ROW_OVERREAD)
    if per_thread * MAX_THREADS * 8 > sys.maxsize or padded_d > sys.maxsize // 4:
        raise MemoryError(
            f"this layer cannot be computed: the padded input ({padded_d} x {padded_h} x "
            f"{padded_w}) with (in_channels/groups) * kD * kH = {cpg * kd * kh} needs a "
            f"workspace beyond the address space"
        )


def weight_size(shape, dtype):
    """Check that a module's weight of ``shape`` and ``dtype`` can exist, before it is made.

    ValueError (naming in_channels, out_channels and kernel_size) when numpy cannot describe
    it: more than ``sys.maxsize`` bytes, counting the float64 values ``reset_parameters``
    draws; MemoryError naming the weight and its size when it cannot be allocated here (tried
    with one uninitialized block, given back at once, for those of 128 MiB and more).
    """
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    what = (f"the weight of shape {tuple(shape)} (out_channels, in_channels / groups, "
            f"*kernel_size): {count} elements")
    if count * max(8, dtype.itemsize) > sys.maxsize:
        raise ValueError(
            f"in_channels, out_channels and kernel_size too large: {what}, more than a numpy "
            f"array can hold (at most {sys.maxsize} bytes; initialization draws float64)"
        )
    nbytes = count * dtype.itemsize
    if nbytes >= 1 << 27:
        try:
            np.empty(nbytes, np.uint8)
        except MemoryError:
            raise MemoryError(
                f"cannot allocate {what}, {nbytes} bytes ({nbytes / 2**30:.1f} GiB) of "
                f"{dtype}"
            ) from None


_RNG_EXPECTED = ("None, a non-negative int, a sequence of non-negative ints, or a "
                 "numpy.random.SeedSequence, BitGenerator or Generator")


def rng_arg(rng):
    """``rng`` as a ``numpy.random.Generator``, from what ``numpy.random.default_rng`` takes:
    None (fresh entropy), an int >= 0 or a sequence of them (a 0-d integer array is an int),
    a SeedSequence, a BitGenerator, or a Generator (used as is, so shared). Bools are refused,
    as for every int argument here."""
    if rng is None or isinstance(
            rng, (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.ndarray) and rng.ndim == 0:
        rng = rng[()]
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"rng must be {_RNG_EXPECTED}, got bool {rng!r}")
    if isinstance(rng, (float, complex, str, bytes, np.floating, np.complexfloating)):
        raise TypeError(f"rng must be {_RNG_EXPECTED}, got {_describe(rng)}")
    try:
        seed = operator.index(rng)
    except TypeError:
        seed = None
    if seed is not None:
        if seed < 0:
            raise ValueError(f"rng must be {_RNG_EXPECTED}, got the negative int {seed}")
        return np.random.default_rng(seed)
    if isinstance(rng, (collections.abc.Sequence, np.ndarray)) and not isinstance(
            rng, _NOT_INT_SEQUENCES):
        try:
            items = _int_items("rng", rng, _RNG_EXPECTED)
        except TypeError:
            items = ()  # not all ints: numpy decides (nested sequences), or refuses
        if any(i < 0 for i in items):
            raise ValueError(
                f"rng must be {_RNG_EXPECTED}, got {_describe(rng)} with a negative item"
            )
    try:  # anything else numpy accepts (e.g. a legacy RandomState), or numpy's own refusal
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as e:
        raise TypeError(f"rng must be {_RNG_EXPECTED}, got {_describe(rng)} ({e})") from None


def output_mask_arg(mask):
    """``output_mask``: which of (grad_input, grad_weight, grad_bias) to compute, 3 bools."""
    try:
        items = tuple(mask)
    except TypeError:
        items = None
    if items is None or len(items) != 3 or not all(
            isinstance(b, (bool, np.bool_)) for b in items):
        raise TypeError(f"output_mask must be a sequence of 3 bools (grad_input, grad_weight, "
                        f"grad_bias), got {_describe(mask)}")
    return tuple(bool(b) for b in items)


def size_arg(name, value, lengths, positive=False):
    """``value`` (input_size, weight_size) as a tuple of non-negative (``positive``: positive)
    ints of one of ``lengths``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, collections.abc.Iterable):
        raise TypeError(f"{name} must be a sequence of {' or '.join(map(str, lengths))} ints, "
                        f"got {_describe(value)}")
    items = tuple(value)
    if len(items) not in lengths:
        raise ValueError(f"{name} must have {' or '.join(map(str, lengths))} entries, got "
                         f"{len(items)}: {items!r}")
    check = positive_int if positive else nonnegative_int
    return tuple(check(f"{name}[{i}]", s) for i, s in enumerate(items))


def input_size_channels(size, weight, groups):
    """ValueError unless ``input_size`` (N, C, D, H, W) or (C, D, H, W) has the weight's
    in_channels."""
    channels = weight.shape[1] * groups
    if size[-4] != channels:
        raise ValueError(f"input_size {size} has {size[-4]} channels, expected in_channels="
                         f"{channels} (weight.shape[1] * groups)")


def grad_output_arg(gy, expected):
    """ValueError unless grad_output ``gy`` has the forward's output shape ``expected``."""
    if gy.shape != tuple(expected):
        raise ValueError(f"grad_output has shape {gy.shape}, expected {tuple(expected)} (the "
                         f"output shape of the forward convolution)")


# -- transposed convolution --------------------------------------------------------------


def transposed_padding(value, allow_single=False):
    """``padding`` of a transposed convolution: an int or 3 non-negative ints (no string:
    'same' and 'valid' have no meaning there; PyTorch's module accepts them and fails later)."""
    if isinstance(value, str):
        raise TypeError(f"padding of a transposed convolution must be an int or a sequence of "
                        f"3 ints (depth, height, width), got {value!r} ('valid' and 'same' "
                        f"are for conv3d)")
    return triple("padding", value, 0, allow_single=allow_single)


def output_padding_fits(output_padding, stride, dilation):
    """PyTorch's rule: on each axis output_padding is smaller than the stride or the
    dilation."""
    for axis in range(3):
        op, s, d = output_padding[axis], stride[axis], dilation[axis]
        if op >= s and op >= d:
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation on each axis, "
                f"got output_padding={tuple(output_padding)}, stride={tuple(stride)}, "
                f"dilation={tuple(dilation)} ({_AXES[axis]}: {op} >= {s} and >= {d})")


def transposed_min_shape(spatial, kernel_size, stride, padding, dilation):
    """(in - 1) s - 2 p + d (k - 1) + 1 per axis: the output without output_padding."""
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + 1 for n, k, s, p, d in
                 zip(spatial, kernel_size, stride, padding, dilation))


def transposed_output_shape(spatial, kernel_size, stride, padding, dilation, output_padding):
    """A transposed convolution's output (D, H, W); ValueError when it is empty or too large
    for an array."""
    out = tuple(m + op for m, op in zip(
        transposed_min_shape(spatial, kernel_size, stride, padding, dilation), output_padding))
    if any(o < 1 for o in out):
        raise ValueError(
            f"padding {tuple(padding)} is too large: the input's spatial size {tuple(spatial)} "
            f"gives an output of {out}, which is empty (output size per axis: "
            f"(in - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding "
            f"+ 1)")
    if math.prod(out) * 8 > sys.maxsize:
        raise ValueError(f"the input's spatial size {tuple(spatial)} gives an output of {out} = "
                         f"{math.prod(out)} elements per channel, more than a numpy array can "
                         f"hold")
    return out


def output_size_arg(output_size, x_ndim, spatial, kernel_size, stride, padding, dilation):
    """The output_padding that gives a transposed convolution's forward the ``output_size``
    asked for: 3 spatial sizes, or the input's rank's (5, or 4 unbatched) with the leading
    ones; each within [min, min + stride - 1] (PyTorch's range and message)."""
    expected = (f"a sequence of 3 ints (depth, height, width) or of {x_ndim} (the "
                f"{x_ndim}-D input's rank)")
    if isinstance(output_size, (str, bytes)):
        raise TypeError(f"output_size must be None or {expected}, got {_describe(output_size)}")
    items = _int_items("output_size", output_size, expected)
    if len(items) not in (3, x_ndim):
        raise ValueError(f"output_size must have 3 or {x_ndim} elements for a {x_ndim}-D "
                         f"input, got {len(items)}: {items!r}")
    sizes = items[-3:]
    low = transposed_min_shape(spatial, kernel_size, stride, padding, dilation)
    high = tuple(m + s - 1 for m, s in zip(low, stride))
    if any(not lo <= n <= hi for n, lo, hi in zip(sizes, low, high)):
        raise ValueError(
            f"requested an output size of {list(sizes)}, but valid sizes range from "
            f"{list(low)} to {list(high)} (for an input of spatial size {tuple(spatial)})")
    return tuple(n - lo for n, lo in zip(sizes, low))


def transposed_grad_output(gy, x, weight, groups, stride, padding, dilation, output_padding,
                           unbatched):
    """``gy`` as a 5-D grad_output of the transposed convolution of the 5-D ``x``: of the
    forward's output shape for ``output_padding``, or for any output_size the forward
    accepts."""
    low = transposed_min_shape(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    lead = (() if unbatched else (x.shape[0],)) + (weight.shape[1] * groups,)
    spatial = gy.shape[len(lead):]
    usual = tuple(m + op for m, op in zip(low, output_padding))
    if gy.shape[:len(lead)] != lead or len(spatial) != 3 or min(spatial, default=0) < 1 or (
            spatial != usual and not all(m <= n < m + s for n, m, s in zip(spatial, low, stride))):
        if min(usual) < 1:  # the forward's own error: nothing to differentiate
            transposed_output_shape(x.shape[2:], weight.shape[2:], stride, padding, dilation,
                                    output_padding)
        raise ValueError(
            f"grad_output has shape {gy.shape}, expected {lead + usual} (the output shape of "
            f"the forward transposed convolution; with an output_size, spatial sizes from "
            f"{low} to {tuple(m + s - 1 for m, s in zip(low, stride))})")
    return gy[None] if unbatched else gy
