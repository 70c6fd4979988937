"""Argument normalization and validation: the one place a parameter is checked.

Every function here raises ``ValueError`` (a bad value) or ``TypeError`` (a bad type) whose
message names the argument, what was expected and what was given (``check_workspace``: a
``MemoryError``). The functional API, the module and the padding modes all check through it.
"""
import collections.abc
import operator
import os
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
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__} {value!r}"
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


def triple(name, value, minimum, allow_single=False):
    """Normalize an int or a sequence of 3 ints (depth, height, width) to a tuple of 3 ints.

    ``allow_single`` also accepts a 1-element sequence (as ``F.conv3d`` does).
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        values = (as_int(name, value),) * 3
    else:
        items = tuple(value)
        if len(items) == 1 and allow_single:
            items = items * 3
        if len(items) != 3:
            raise ValueError(
                f"{name} must be an int or a tuple of 3 ints (depth, height, width), "
                f"got {value!r} of length {len(items)}"
            )
        values = tuple(as_int(name, v) for v in items)
    if any(v < minimum for v in values):
        which = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} values must be {which}, got {values}")
    if any(v > sys.maxsize for v in values):
        # The kernels take sizes as C ssize_t: a bigger value would be an OverflowError there.
        raise ValueError(f"{name} values must be at most {sys.maxsize}, got {values}")
    return values


def padding_arg(value, allow_single=False):
    """Normalize ``padding``: 'valid', 'same', or a tuple of 3 non-negative ints."""
    if isinstance(value, str):
        if value not in PADDING_STRINGS:
            raise ValueError(
                f"padding must be 'valid', 'same', an int or a tuple of 3 ints, got {value!r}"
            )
        return value
    return triple("padding", value, 0, allow_single=allow_single)


def weight_and_groups(weight, groups):
    """``(weight, groups)``: a float array of shape (O, C / groups, kD, kH, kW) with O
    divisible by ``groups``, a positive int (checked in that order, as PyTorch does)."""
    weight = float_array("weight", weight)
    if weight.ndim != 5 or 0 in weight.shape:
        raise ValueError(
            f"weight must be a 5-D array (out_channels, in_channels/groups, kD, kH, kW) with "
            f"positive sizes, got shape {weight.shape}"
        )
    groups = positive_int("groups", groups)
    if weight.shape[0] % groups:
        raise ValueError(
            f"weight.shape[0] (out_channels) must be divisible by groups, got "
            f"{weight.shape[0]} and groups={groups}"
        )
    return weight, groups


def bias_arg(bias, weight):
    """``bias`` (or None) as an array of ``weight``'s dtype and shape (out_channels,)."""
    if bias is None:
        return None
    bias = float_array("bias", bias)
    same_dtype("bias", bias, weight.dtype)
    if bias.shape != (weight.shape[0],):
        raise ValueError(
            f"bias must have shape ({weight.shape[0]},) (out_channels), got {bias.shape}"
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
        raise ValueError(
            f"algorithm={algorithm!r} cannot compute this layer: kernel_size {kernel} "
            f"has F({', '.join(map(str, tiles))}, {max(kernel)}) only (use 'winograd_f2' or "
            f"'winograd')")


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


def _dtype_hint(dt):
    if dt.kind == "f":
        return f" (cast it first, e.g. .astype(np.float32), if the loss of precision is intended)"
    if dt.kind in "iub":
        return " (integer and bool data: cast to np.float32 or np.float64 first)"
    if dt.kind == "c":
        return " (complex convolution is not supported: convolve real and imaginary parts)"
    return ""


def dtype_arg(dtype):
    """The module dtype: float32 (default, ``None``) or float64."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}"
        ) from None
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(
            f"dtype must be numpy.float32 or numpy.float64, got {dt}{_dtype_hint(dt)}"
        )
    return dt


def float_array(name, value):
    """``value`` as an ndarray of float32 or float64, without any cast.

    A view whose data is not aligned to its itemsize (e.g. from ``np.frombuffer`` at an odd
    offset) is copied: the kernels read elements through typed pointers, which C requires to
    be aligned (a misaligned one is undefined behaviour: UBSan reports it).
    """
    arr = np.asarray(value)
    if arr.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {arr.dtype}{_dtype_hint(arr.dtype)}"
        )
    return arr if arr.flags.aligned else arr.copy()


def parameter_arg(name, value, dtype, shape, cast):
    """A module parameter: ``value`` as a C-contiguous array of ``dtype`` and ``shape``.

    ``cast`` allows lossless (safe) casts from other floating dtypes, as loading does;
    otherwise the dtype must match exactly.
    """
    arr = np.asarray(value)
    if arr.dtype != dtype:
        lossless = arr.dtype.kind == "f" and np.can_cast(arr.dtype, dtype, "safe")
        if not (cast and lossless):
            raise TypeError(
                f"{name} has dtype {arr.dtype}, expected {dtype} (the module's dtype); "
                f"no lossy or implicit cast is made"
            )
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if cast or not arr.flags.aligned:  # (the kernels need aligned data)
        return np.array(arr, dtype=dtype, order="C", copy=True)
    return np.ascontiguousarray(arr)


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


def input_5d(x, in_channels):
    """Validate an input's rank and channels; return (5-D view, was_unbatched)."""
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
            f"{in_channels} (weight.shape[1] * groups)"
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
    return tuple(out)


def check_workspace(x_shape, weight_shape, pads, groups):
    """MemoryError for a layer whose direct-kernel workspace cannot exist.

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
    padded_d, padded_h, padded_w = (n + lo + hi for n, (lo, hi) in zip(x_shape[2:], pads))
    per_thread = cpg * kd * kh * padded_h * (padded_w + ROW_OVERREAD)
    if per_thread * MAX_THREADS * 8 > sys.maxsize or padded_d > sys.maxsize // 4:
        raise MemoryError(
            f"this layer cannot be computed: the padded input ({padded_d} x {padded_h} x "
            f"{padded_w}) with (in_channels/groups) * kD * kH = {cpg * kd * kh} needs a "
            f"workspace beyond the address space"
        )
