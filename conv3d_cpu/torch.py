"""The PyTorch bridge: conv3d_cpu's convolutions as PyTorch operators, functions and modules.

``import conv3d_cpu`` never imports torch; this module does (torch >= 2.4). It registers

- ``torch.ops.conv3d_cpu.conv3d`` and ``torch.ops.conv3d_cpu.conv_transpose3d`` (with
  ``register_fake`` and ``register_autograd``; their gradients are the operators
  ``torch.ops.conv3d_cpu.conv3d_backward`` and ``conv_transpose3d_backward``, so that
  ``torch.compile`` traces forward and backward without a graph break),

and offers ``conv3d`` / ``conv_transpose3d`` with ``torch.nn.functional``'s signatures,
``Conv3d`` / ``ConvTranspose3d`` (subclasses of torch's modules whose forward runs these
operators) and ``convert(model)``, which turns a model's ``torch.nn.Conv3d`` and
``torch.nn.ConvTranspose3d`` modules into ours.

Rules:

- **What runs here**: CPU tensors of float32 or float64, input and weight (and bias) of one
  dtype. Anything else (another device, bfloat16, float16, mixed dtypes) goes to torch's own
  ``F.conv3d`` / ``F.conv_transpose3d``, unchanged.
- **Threads**: ``torch.get_num_threads()``, read per call: ``torch.set_num_threads`` governs
  both libraries (one thread for calls too small to share, as ``conv3d``'s default does).
- **Autocast**: the operators compute in their inputs' dtype (under ``torch.autocast`` a
  float32 model's convolutions stay float32).
- **No copies**: tensors pass as numpy views (any strides: the kernels copy other layouts on
  all threads); outputs are written into memory from conv3d_cpu's pool of freed blocks
  (``conv3d_cpu.set_output_cache_limit``) and returned as tensors on it (``torch.from_numpy``).
- **Winograd weights**: the transform of a float32 weight is kept between calls for the
  weight's storage, shape and version counter (an optimizer step or any in-place write bumps
  it), never compared by value. A write through ``.data`` does not bump the version: call
  ``clear_cache()`` after one.
- **Double backward**: not supported; asking for it raises a RuntimeError that says so.
"""
import collections
import math
import threading
import weakref

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised by the sanitize build
    raise ImportError("conv3d_cpu.torch needs PyTorch >= 2.4 (pip install 'conv3d_cpu[torch]' "
                      f"or torch itself): {e}") from None

if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 4):
    raise ImportError(f"conv3d_cpu.torch needs PyTorch >= 2.4 (torch.library.register_fake), "
                      f"found {torch.__version__}")

import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from conv3d_cpu._core import algorithms as _algorithms  # noqa: E402
from conv3d_cpu._core import backward as _backward  # noqa: E402
from conv3d_cpu._core import transposed as _transposed  # noqa: E402
from conv3d_cpu._core import validation as v  # noqa: E402
from conv3d_cpu._core.forward import convolve as _convolve, result_shape as _result_shape  # noqa: E402
from conv3d_cpu._native import winograd as _winograd  # noqa: E402
from conv3d_cpu.functional import input_arg as _input_arg  # noqa: E402
from conv3d_cpu.functional import layer_args as _layer_args  # noqa: E402
from conv3d_cpu.functional import transposed_args as _transposed_args  # noqa: E402

__all__ = ["conv3d", "conv_transpose3d", "Conv3d", "ConvTranspose3d", "convert", "clear_cache"]

_DTYPES = (torch.float32, torch.float64)


# -- Winograd weights kept by version ----------------------------------------------------------

class _VersionedTransforms:
    """Transformed Winograd weights kept for a weight tensor while it is the same live tensor
    (a weak reference) at the same version (any write in place, an optimizer step included,
    bumps it) and storage, least recently used first out beyond ``max_bytes``. (A write
    through ``.data`` does not bump the version: it is not seen, as autograd does not see
    it either: ``clear_cache()`` then. Inference tensors, which have no version counter, and
    float64 weights, which gradcheck perturbs through ``.data``, are never kept.)"""

    def __init__(self, max_bytes=1 << 30):
        self._entries = collections.OrderedDict()
        self._bytes, self._max_bytes = 0, max_bytes
        self._lock = threading.Lock()

    def for_tensor(self, t):
        return _TensorCache(self, t)

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _get(self, t, weight, groups, m, num_threads):
        # Never kept: inference tensors (no version counter) and float64 weights (what
        # torch.autograd.gradcheck perturbs, through .data).
        if t.is_inference() or t.dtype == torch.float64:
            return _winograd.transform_weights(weight, groups, m, num_threads)
        block = _winograd.channel_block(weight.dtype, weight.shape[1], weight.shape[0] // groups)
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
               tuple(t.stride()), t.dtype, groups, m, block)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is t and entry[1] == t._version:
                self._entries.move_to_end(key)
                return entry[2]
        u = _winograd.transform_weights(weight, groups, m, num_threads)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2].nbytes
            self._entries[key] = (weakref.ref(t), t._version, u)
            self._bytes += u.nbytes
            while self._entries and self._bytes > self._max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][2].nbytes
        return u


class _TensorCache:
    """The ``cache`` forward.convolve asks for one call's weight (its tensor)."""

    def __init__(self, store, tensor):
        self._store, self._tensor = store, tensor

    def get(self, weight, groups, m, num_threads=0):
        return self._store._get(self._tensor, weight, groups, m, num_threads)


_transforms = _VersionedTransforms()


def clear_cache():
    """Drop the Winograd weight transforms kept between calls. Needed only after writing a
    float32 weight through ``.data`` (``w.data.mul_(2)``, an old-style EMA update), which does
    not bump the tensor's version counter, the only thing the cache watches."""
    _transforms.clear()


def _np(t):
    """A CPU tensor as a numpy view (no copy; any strides)."""
    return None if t is None else t.detach().numpy()


def _threads(input, weight):
    """torch.get_num_threads(), or 1 for a call of fewer multiply-adds than it takes to wake
    a team (algorithms.TINY_MACS, the rule of conv3d's default thread count), estimated as
    the input's elements times the weight's per output channel."""
    macs = input.numel() * math.prod(weight.shape[1:])
    return 1 if macs < _algorithms.TINY_MACS else torch.get_num_threads()


def _pads(padding):
    """6 ints (lo, hi per axis) as ((lo, hi), ...), each non-negative."""
    if len(padding) != 6:
        raise ValueError(f"padding must have 6 entries ((before, after) per axis), got "
                         f"{list(padding)}")
    p = [v.nonnegative_int("padding", q) for q in padding]
    return tuple((p[2 * a], p[2 * a + 1]) for a in range(3))


# -- operators -----------------------------------------------------------------------------

_LIBRARY = torch.library.Library("conv3d_cpu", "DEF")
# (public from torch 2.5)
_infer_schema = getattr(torch.library, "infer_schema", None)
if _infer_schema is None:  # pragma: no cover - torch 2.4
    from torch._library.infer_schema import infer_schema as _infer_schema


class _Operator:
    """``torch.ops.conv3d_cpu.<name>``, defined with ``torch.library.Library`` (schema inferred
    from the function's annotations, CPU kernel) and callable like the function; offers
    ``register_fake`` and ``register_autograd`` as ``torch.library.custom_op``'s operators do.
    (custom_op wraps its kernel in a dynamo-disabling function that imports torch._dynamo on
    the first call, which a converted network's first forward would pay.)"""

    def __init__(self, name, fn):
        _LIBRARY.define(name + _infer_schema(fn, mutates_args=()))
        _LIBRARY.impl(name, fn, "CPU")
        self._name = f"conv3d_cpu::{name}"
        self._op = getattr(torch.ops.conv3d_cpu, name).default

    def __call__(self, *args):
        return self._op(*args)

    def register_fake(self, fn):
        torch.library.register_fake(self._name, fn, lib=_LIBRARY)
        return fn

    def register_autograd(self, backward, setup_context):
        torch.library.register_autograd(self._name, backward, setup_context=setup_context,
                                        lib=_LIBRARY)


def _operator(name):
    return lambda fn: _Operator(name, fn)


# -- conv3d --------------------------------------------------------------------------------

@_operator("conv3d")
def _conv3d_op(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               stride: list[int], padding: list[int], dilation: list[int],
               groups: int) -> torch.Tensor:
    pads = _pads(padding)
    w, groups, stride, _, dilation, threads = _layer_args(
        _np(weight), groups, stride, 0, dilation, "auto", _threads(input, weight))
    b = v.bias_arg(_np(bias), w)
    x, unbatched = _input_arg(_np(input), w, groups)
    # (The result's memory from conv3d_cpu's pool of freed blocks, as the functional API's:
    # a fresh torch.empty of a network's large outputs faulted in its pages on every call.)
    y = _convolve(x, w, b, stride, pads, dilation, groups, "auto", threads,
                  cache=_transforms.for_tensor(weight))
    return torch.from_numpy(y[0] if unbatched else y)


@_conv3d_op.register_fake
def _(input, weight, bias, stride, padding, dilation, groups):
    spatial = [(n + padding[2 * a] + padding[2 * a + 1] - dilation[a] * (weight.shape[2 + a] - 1)
                - 1) // stride[a] + 1 for a, n in enumerate(input.shape[-3:])]
    return input.new_empty(tuple(input.shape[:-4]) + (weight.shape[0],) + tuple(spatial))


@_operator("conv3d_backward")
def _conv3d_backward_op(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                        stride: list[int], padding: list[int], dilation: list[int],
                        groups: int, output_mask: list[bool]
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pads = _pads(padding)
    w, groups, stride, _, dilation, threads = _layer_args(
        _np(weight), groups, stride, 0, dilation, "auto", _threads(input, weight))
    x, unbatched = _input_arg(_np(input), w, groups)
    gy = v.float_array("grad_output", _np(grad_output))
    v.grad_output_arg(gy, _result_shape(x, w, stride, pads, dilation, groups, unbatched))
    gi, gw, gb = _backward.gradients(gy[None] if unbatched else gy, x, w, stride, pads,
                                     dilation, groups, tuple(output_mask), "auto", threads)
    if gi is not None and unbatched:
        gi = gi[0]
    return _tensors(gi, gw, gb, input.dtype)


@_conv3d_backward_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
    return _fake_grads(input, weight, weight.shape[0], output_mask)


def _tensors(gi, gw, gb, dtype):
    """The gradients as tensors (an empty one for each not asked for)."""
    return tuple(torch.empty(0, dtype=dtype) if g is None else torch.from_numpy(g)
                 for g in (gi, gw, gb))


def _fake_grads(input, weight, channels, mask):
    return tuple(t.new_empty(t.shape if m else (0,)) for t, m in
                 zip((input, weight, weight.new_empty(channels)), mask))


def _register_gradient(op, backward_op):
    """``op``'s autograd: ``backward_op(grad, input, weight, *op's other arguments, mask)``,
    the mask asking for what autograd needs (grad_bias only with a bias)."""
    def setup(ctx, inputs, output):
        input, weight, bias = inputs[:3]
        ctx.save_for_backward(input, weight)
        ctx.args = [list(a) if isinstance(a, (list, tuple)) else a for a in inputs[3:]]
        ctx.has_bias = bias is not None

    def gradient(ctx, grad):
        input, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2]]
        gi, gw, gb = backward_op(grad, input, weight, *ctx.args, mask)
        return (gi if mask[0] else None, gw if mask[1] else None,
                gb if mask[2] else None) + (None,) * len(ctx.args)

    op.register_autograd(gradient, setup_context=setup)


_register_gradient(_conv3d_op, _conv3d_backward_op)


# -- conv_transpose3d ------------------------------------------------------------------------

@_operator("conv_transpose3d")
def _conv_transpose3d_op(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         stride: list[int], padding: list[int], output_padding: list[int],
                         groups: int, dilation: list[int]) -> torch.Tensor:
    w, groups, stride, padding, output_padding, dilation, threads = _transposed_args(
        _np(weight), groups, stride, padding, output_padding, dilation, "auto",
        _threads(input, weight))
    b = v.bias_arg(_np(bias), w, w.shape[1] * groups)
    x, unbatched = _transposed_input(input, w)
    spatial = v.transposed_output_shape(x.shape[2:], w.shape[2:], stride, padding, dilation,
                                        output_padding)
    y = _transposed.forward(x, w, b, stride, padding, dilation, groups, spatial, "auto",
                            threads)
    return torch.from_numpy(y[0] if unbatched else y)


def _transposed_input(input, w):
    x = v.float_array("input", _np(input))
    v.same_dtype("input", x, w.dtype)
    return v.input_5d(x, w.shape[0], "weight.shape[0]")


@_conv_transpose3d_op.register_fake
def _(input, weight, bias, stride, padding, output_padding, groups, dilation):
    spatial = [(n - 1) * stride[a] - 2 * padding[a] + dilation[a] * (weight.shape[2 + a] - 1)
               + output_padding[a] + 1 for a, n in enumerate(input.shape[-3:])]
    return input.new_empty(tuple(input.shape[:-4]) + (weight.shape[1] * groups,)
                           + tuple(spatial))


@_operator("conv_transpose3d_backward")
def _conv_transpose3d_backward_op(grad_output: torch.Tensor, input: torch.Tensor,
                                  weight: torch.Tensor, stride: list[int], padding: list[int],
                                  output_padding: list[int], groups: int, dilation: list[int],
                                  output_mask: list[bool]
                                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    w, groups, stride, padding, output_padding, dilation, threads = _transposed_args(
        _np(weight), groups, stride, padding, output_padding, dilation, "auto",
        _threads(input, weight))
    x, unbatched = _transposed_input(input, w)
    gy = v.float_array("grad_output", _np(grad_output))
    v.same_dtype("grad_output", gy, w.dtype)
    gy = v.transposed_grad_output(gy, x, w, groups, stride, padding, dilation, output_padding,
                                  unbatched)
    gi, gw, gb = _transposed.gradients(gy, x, w, stride, padding, dilation, groups,
                                       tuple(output_mask), "auto", threads)
    if gi is not None and unbatched:
        gi = gi[0]
    return _tensors(gi, gw, gb, input.dtype)


@_conv_transpose3d_backward_op.register_fake
def _(grad_output, input, weight, stride, padding, output_padding, groups, dilation,
      output_mask):
    return _fake_grads(input, weight, weight.shape[1] * groups, output_mask)


_register_gradient(_conv_transpose3d_op, _conv_transpose3d_backward_op)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("conv3d_cpu.torch: double backward (the gradient of a gradient) is not "
                       "supported; use torch.nn.functional's convolutions for it")


def _no_setup(ctx, inputs, output):
    pass


_conv3d_backward_op.register_autograd(_no_double_backward, setup_context=_no_setup)
_conv_transpose3d_backward_op.register_autograd(_no_double_backward, setup_context=_no_setup)


# -- functions -------------------------------------------------------------------------------

def _ours(input, weight, bias):
    """Whether conv3d_cpu computes this call (the rule in the module docstring)."""
    tensors = [t for t in (input, weight, bias) if t is not None]
    return (all(t.device.type == "cpu" for t in tensors) and input.dtype in _DTYPES
            and all(t.dtype == input.dtype for t in tensors)
            and not any(t.is_complex() or t.layout != torch.strided for t in tensors))


def _triple(name, value):
    return list(v.triple(name, value, 0, allow_single=True))


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``torch.nn.functional.conv3d`` computed by conv3d_cpu (differentiable).

    CPU float32/float64 tensors of one dtype run our kernels; anything else runs
    ``torch.nn.functional.conv3d``. Threads: ``torch.get_num_threads()``.
    """
    if not _ours(input, weight, bias):
        return F.conv3d(input, weight, bias, stride, padding, dilation, groups)
    dilation3 = _triple("dilation", dilation)
    stride3 = _triple("stride", stride)
    if isinstance(padding, str):
        spec = v.padding_arg(padding)
        v.check_same_stride(spec, tuple(stride3))
        if weight.dim() != 5:
            raise ValueError(f"weight must be a 5-D tensor, got shape {tuple(weight.shape)}")
        pairs = v.padding_pairs(spec, tuple(weight.shape[2:]), dilation3)
    else:
        pairs = tuple((p, p) for p in _triple("padding", padding))
    return _conv3d_op(input, weight, bias, stride3, [p for pair in pairs for p in pair],
                      dilation3, groups)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """``torch.nn.functional.conv_transpose3d`` computed by conv3d_cpu (differentiable; the
    same rule as ``conv3d``)."""
    if not _ours(input, weight, bias):
        return F.conv_transpose3d(input, weight, bias, stride, padding, output_padding, groups,
                                  dilation)
    return _conv_transpose3d_op(input, weight, bias, _triple("stride", stride),
                                _triple("padding", padding),
                                _triple("output_padding", output_padding), groups,
                                _triple("dilation", dilation))


# -- modules -------------------------------------------------------------------------------

class Conv3d(torch.nn.Conv3d):
    """``torch.nn.Conv3d`` whose forward runs conv3d_cpu (same parameters, state_dict, repr;
    padding modes other than zeros pad with ``F.pad``, as torch's module does)."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            return conv3d(F.pad(input, self._reversed_padding_repeated_twice,
                                mode=self.padding_mode), weight, bias, self.stride, 0,
                          self.dilation, self.groups)
        return conv3d(input, weight, bias, self.stride, self.padding, self.dilation,
                      self.groups)


class ConvTranspose3d(torch.nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d`` whose forward runs conv3d_cpu (same parameters,
    state_dict, repr, ``output_size``)."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError('Only "zeros" padding mode is supported for ConvTranspose3d')
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 3, self.dilation)
        return conv_transpose3d(input, self.weight, self.bias, self.stride, self.padding,
                                output_padding, self.groups, self.dilation)


_OURS = {torch.nn.Conv3d: Conv3d, torch.nn.ConvTranspose3d: ConvTranspose3d}


def convert(module, *, inplace=True):
    """Run ``module``'s convolutions on conv3d_cpu: every ``torch.nn.Conv3d`` and
    ``torch.nn.ConvTranspose3d`` in it (of exactly those types; user subclasses are left
    alone) becomes a ``conv3d_cpu.torch.Conv3d`` / ``ConvTranspose3d``.

    The modules are converted in place, by class: each keeps its identity, Parameter objects
    (an optimizer built before still updates them), buffers, hooks and state_dict keys; a
    module shared by several parents is converted once. ``inplace=False`` converts a
    ``copy.deepcopy`` instead. Returns the converted module.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not inplace:
        import copy
        module = copy.deepcopy(module)
    for m in module.modules():  # (each module once, shared ones included)
        ours = _OURS.get(type(m))
        if ours is not None:
            m.__class__ = ours
    return module
