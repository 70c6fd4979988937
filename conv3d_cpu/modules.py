"""``Conv3d`` and ``ConvTranspose3d``: the modules, with PyTorch's parameters,
initialization, repr and state_dict."""
import math
import threading

import numpy as np

from conv3d_cpu._core import transposed
from conv3d_cpu._core import validation as v
from conv3d_cpu._core.backward import gradients
from conv3d_cpu._core.forward import convolve, result_shape
from conv3d_cpu._core.weight_cache import PlanCache, TransformCache


def _readonly(name, doc):
    return property(lambda self: getattr(self, "_" + name), doc=doc)


class _Layer:
    """What Conv3d and ConvTranspose3d share: the parameters (weight of ``_weight_shape``,
    bias of ``_out_channels`` when ``_has_bias``), their initialization, state_dict and
    copies."""

    def _init_parameters(self, weight_shape, bias, rng):
        self._weight_shape = weight_shape
        v.weight_size(self._weight_shape, self._dtype)
        self._has_bias = bool(bias)
        self._rng = v.rng_arg(rng)
        # (weight, bias or None) as one attribute, replaced whole: a concurrent forward reads
        # it once and sees the old or the new parameters, never one of each.
        self._params = None
        self._assigning = threading.Lock()  # setters of one parameter keep the other's value
        self.reset_parameters()

    # -- parameters -------------------------------------------------------------------------
    def reset_parameters(self):
        """Redraw weight then bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) using ``rng``
        (fan_in = weight.shape[1] * kD * kH * kW)."""
        fan_in = math.prod(self._weight_shape[1:])
        bound = 1.0 / math.sqrt(fan_in)
        weight = self._rng.uniform(-bound, bound, self._weight_shape).astype(self._dtype)
        bias = None
        if self._has_bias:
            bias = self._rng.uniform(-bound, bound, self._out_channels).astype(self._dtype)
        with self._assigning:
            self._params = (weight, bias)

    @property
    def weight(self):
        """ndarray of ``dtype``: (out_channels, in_channels // groups, kD, kH, kW) for
        Conv3d, (in_channels, out_channels // groups, kD, kH, kW) for ConvTranspose3d."""
        return self._params[0]

    @weight.setter
    def weight(self, value):
        weight = v.parameter_arg("weight", value, self._dtype, self._weight_shape, cast=False)
        with self._assigning:
            self._params = (weight, self._params[1])

    @property
    def bias(self):
        """ndarray (out_channels,) of ``dtype``, or None when built with ``bias=False``."""
        return self._params[1]

    @bias.setter
    def bias(self, value):
        v.bias_assignment(self._has_bias, value)
        bias = v.parameter_arg("bias", value, self._dtype, (self._out_channels,), cast=False)
        with self._assigning:
            self._params = (self._params[0], bias)

    def state_dict(self):
        """``{'weight': ..., 'bias': ...}`` (no 'bias' when built with ``bias=False``)."""
        weight, bias = self._params
        d = {"weight": weight}
        if bias is not None:
            d["bias"] = bias
        return d

    def load_state_dict(self, state_dict):
        """Copy parameters from a mapping such as ``{k: t.numpy() for k, t in sd.items()}``.

        Parameters
        ----------
        state_dict : mapping
            Exactly the keys of ``state_dict()``; values of the parameter's shape and a floating
            dtype that converts to the module's dtype without loss. Both are replaced at once:
            a concurrent ``forward`` sees the old or the new pair.
        """
        v.state_dict_arg(state_dict, self.state_dict())
        weight = v.parameter_arg("weight", state_dict["weight"], self._dtype,
                                 self._weight_shape, cast=True)
        bias = None
        if self._has_bias:
            bias = v.parameter_arg("bias", state_dict["bias"], self._dtype,
                                   (self._out_channels,), cast=True)
        with self._assigning:
            self._params = (weight, bias)

    # -- copies ---------------------------------------------------------------------------
    def __getstate__(self):
        # (copy.deepcopy and pickle: the lock cannot be copied, caches are re-derived)
        state = self.__dict__.copy()
        del state["_assigning"]
        state.pop("_transforms", None)
        state.pop("_plans", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._assigning = threading.Lock()
        self._copied()

    def _copied(self):
        """Re-create what __getstate__ left out (a subclass's caches)."""


class Conv3d(_Layer):
    """3D convolution layer with the behaviour of ``torch.nn.Conv3d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Positive; both divisible by ``groups``.
    kernel_size : int or tuple of 3 ints
        (kD, kH, kW), positive.
    stride, dilation : int or tuple of 3 ints, default 1
        Positive.
    padding : int, tuple of 3 ints, 'valid' or 'same', default 0
        Non-negative. 'same' needs stride 1; an even dilated kernel gets the extra element on
        the far side, as in PyTorch.
    groups : int, default 1
    bias : bool, default True
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        As PyTorch: reflect needs padding < input size, circular padding <= input size.
    device : None or 'cpu'
    dtype : numpy.float32 (default) or numpy.float64
        Of the parameters, inputs and outputs (inputs and parameters in the other byte order
        are converted to the native one).
    rng : None, int, sequence of ints, SeedSequence, BitGenerator or Generator, keyword-only
        Source of the initial weights, passed to ``numpy.random.default_rng`` (ints >= 0; a
        Generator is used as is, so shared); ``reset_parameters`` draws from it again.
        ``Conv3d(..., rng=0)`` gives reproducible weights.
    algorithm : {'auto', 'direct', 'winograd', 'winograd_f2', 'winograd_f4'}, keyword-only
        How ``forward`` computes (default 'auto'), as in ``conv3d``: 'auto' chooses per layer
        by a cost model and gives direct convolution's NaN/Inf positions. Winograd needs a
        3x3x3, (1,3,3), (3,1,1), 5x5x5 or 2x2x2 kernel, stride 1 and dilation 1 along the
        kernel's axes larger than 1 (else ValueError, here); 'winograd' picks the tile size,
        'winograd_f2' / 'winograd_f4' force F(2, 3) / F(4, 3) (5x5x5: F(2, 5) only; 2x2x2:
        'winograd' only). An
        explicit Winograd algorithm spreads a NaN or Inf in the input to every output of its
        tile(s).

    Attributes
    ----------
    weight : ndarray, shape (out_channels, in_channels // groups, kD, kH, kW)
    bias : ndarray, shape (out_channels,), or None

    Notes
    -----
    Initialization follows PyTorch's ``reset_parameters``: weight, then bias, each uniform on
    ±1/sqrt(fan_in) with fan_in = in_channels // groups * kD * kH * kW. The values differ from
    PyTorch's for the same seed (another generator); load PyTorch's weights with
    ``load_state_dict({k: v.numpy() for k, v in torch_module.state_dict().items()})``.

    Examples
    --------
    >>> import numpy as np
    >>> from conv3d_cpu import Conv3d
    >>> m = Conv3d(4, 8, 3, padding=1, rng=0)
    >>> m(np.zeros((2, 4, 5, 6, 7), np.float32)).shape
    (2, 8, 5, 6, 7)
    """

    in_channels = _readonly("in_channels", "Number of input channels.")
    out_channels = _readonly("out_channels", "Number of output channels.")
    kernel_size = _readonly("kernel_size", "(kD, kH, kW).")
    stride = _readonly("stride", "(sD, sH, sW).")
    padding = _readonly("padding", "(pD, pH, pW), 'valid' or 'same'.")
    dilation = _readonly("dilation", "(dD, dH, dW).")
    groups = _readonly("groups", "Number of channel groups.")
    padding_mode = _readonly("padding_mode", "'zeros', 'reflect', 'replicate' or 'circular'.")
    dtype = _readonly("dtype", "numpy dtype of parameters, inputs and outputs.")
    algorithm = _readonly("algorithm", "Algorithm forward uses (see conv3d).")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *,
                 rng=None, algorithm="auto"):
        self._in_channels = v.positive_int("in_channels", in_channels)
        self._out_channels = v.positive_int("out_channels", out_channels)
        self._groups = v.groups_arg(groups, self._in_channels, self._out_channels)
        self._kernel_size = v.triple("kernel_size", kernel_size, 1)
        self._stride = v.triple("stride", stride, 1)
        self._padding = v.padding_arg(padding)
        self._dilation = v.triple("dilation", dilation, 1)
        v.check_same_stride(self._padding, self._stride)
        self._padding_mode = v.padding_mode_arg(padding_mode)
        self._algorithm = v.algorithm_arg(algorithm)
        v.algorithm_fits(self._algorithm, self._kernel_size, self._stride, self._dilation)
        v.device_arg(device)
        self._dtype = v.dtype_arg(dtype)
        self._pads = v.padding_pairs(self._padding, self._kernel_size, self._dilation)
        # Transformed Winograd weights (F2 and F4), checked against the weights on every use.
        self._transforms = TransformCache(max_entries=2)
        self._init_parameters((self._out_channels, self._in_channels // self._groups)
                              + self._kernel_size, bias, rng)

    def _copied(self):
        self._transforms = TransformCache(max_entries=2)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, input, out=None):
        """Convolve ``input`` with the module's parameters.

        Parameters
        ----------
        input : array_like, shape (N, C, D, H, W) or (C, D, H, W)
            Of the module's dtype.
        out : ndarray, optional
            Where to write the result: C-contiguous, of the output's shape and the module's
            dtype, sharing no memory with the input or the parameters (checked before anything
            is written; partly written when Ctrl-C stops the call).

        Returns
        -------
        ndarray
            ``out``, or a new C-contiguous array (without N for an unbatched input).
        """
        x = v.float_array("input", input)
        v.same_dtype("input", x, self._dtype)
        x, unbatched = v.input_5d(x, self._in_channels)
        pads = self._pads
        weight, bias = self._params
        if self._padding_mode != "zeros":
            v.padding_mode_fits(self._padding_mode, x.shape[2:], pads)
        shape = result_shape(x, weight, self._stride, pads, self._dilation, self._groups,
                             unbatched)
        out5 = v.out_arg(out, shape, self._dtype, x, weight, bias)
        y = convolve(x, weight, bias, self._stride, pads, self._dilation, self._groups,
                     self._algorithm, 0, cache=self._transforms, out=out5,
                     padding_mode=self._padding_mode)
        return out if out is not None else (y[0] if unbatched else y)

    __call__ = forward

    def backward(self, input, grad_output, *, output_mask=(True, True, True)):
        """Gradients of a loss for ``grad_output``, its gradient with respect to
        ``forward(input)``: with respect to the input, the weight and the bias.

        The module's padding mode is differentiated too: the gradient of a padded copy is
        folded back onto the input positions it copies (reflect, replicate, circular).

        Parameters
        ----------
        input : array_like, shape (N, C, D, H, W) or (C, D, H, W)
            The input of the forward call, of the module's dtype.
        grad_output : array_like
            Of the forward's output shape and the module's dtype.
        output_mask : sequence of 3 bools, keyword-only
            Which of (grad_input, grad_weight, grad_bias) to compute.

        Returns
        -------
        (grad_input, grad_weight, grad_bias) : tuple of ndarray or None
            Shapes of ``input``, ``weight`` and ``bias``; None where ``output_mask`` is False
            and for grad_bias of a module without bias. Nothing is stored in the module: an
            optimizer step is yours, e.g. ``m.weight = m.weight - lr * grad_weight``.
        """
        mask = v.output_mask_arg(output_mask)
        x = v.float_array("input", input)
        v.same_dtype("input", x, self._dtype)
        x, unbatched = v.input_5d(x, self._in_channels)
        gy = v.float_array("grad_output", grad_output)
        v.same_dtype("grad_output", gy, self._dtype)
        weight, bias = self._params
        pads = self._pads
        if self._padding_mode != "zeros":
            v.padding_mode_fits(self._padding_mode, x.shape[2:], pads)
        v.grad_output_arg(gy, result_shape(x, weight, self._stride, pads, self._dilation,
                                           self._groups, unbatched))
        mask = mask[:2] + (mask[2] and bias is not None,)
        gi, gw, gb = gradients(gy[None] if unbatched else gy, x, weight, self._stride, pads,
                               self._dilation, self._groups, mask, self._algorithm, 0,
                               self._padding_mode)
        return (gi[0] if unbatched and gi is not None else gi), gw, gb

    def __repr__(self):
        s = (f"Conv3d({self._in_channels}, {self._out_channels}, "
             f"kernel_size={self._kernel_size}, stride={self._stride}")
        if self._padding != (0, 0, 0):  # a str ('same', 'valid') is always shown
            s += f", padding={self._padding}"
        if self._dilation != (1, 1, 1):
            s += f", dilation={self._dilation}"
        if self._groups != 1:
            s += f", groups={self._groups}"
        if not self._has_bias:
            s += ", bias=False"
        if self._padding_mode != "zeros":
            s += f", padding_mode={self._padding_mode}"
        return s + ")"


class ConvTranspose3d(_Layer):
    """3D transposed convolution layer with the behaviour of ``torch.nn.ConvTranspose3d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Positive; both divisible by ``groups``.
    kernel_size : int or tuple of 3 ints
        (kD, kH, kW), positive.
    stride : int or tuple of 3 ints, default 1
    padding : int or tuple of 3 ints, default 0
        Non-negative: removes ``padding`` from both ends of each output axis (no string).
    output_padding : int or tuple of 3 ints, default 0
        Added to the far end of each output axis; smaller than the stride or the dilation
        (checked here, PyTorch checks at forward).
    groups : int, default 1
    bias : bool, default True
    dilation : int or tuple of 3 ints, default 1
        (After ``groups`` and ``bias``, PyTorch's order.)
    padding_mode : 'zeros'
        The only mode PyTorch has for transposed convolution.
    device : None or 'cpu'
    dtype : numpy.float32 (default) or numpy.float64
    rng : None, int, sequence of ints, SeedSequence, BitGenerator or Generator, keyword-only
        Source of the initial weights, as in ``Conv3d``.
    algorithm : {'auto', 'direct', 'winograd', 'winograd_f2', 'winograd_f4'}, keyword-only
        As in ``conv_transpose3d``.

    Attributes
    ----------
    weight : ndarray, shape (in_channels, out_channels // groups, kD, kH, kW)
    bias : ndarray, shape (out_channels,), or None

    Notes
    -----
    Initialization follows PyTorch's: weight, then bias, uniform on ±1/sqrt(fan_in) with
    fan_in = out_channels // groups * kD * kH * kW (weight.shape[1] times the kernel). Load
    PyTorch's weights with ``load_state_dict({k: v.numpy() for k, v in
    torch_module.state_dict().items()})``.

    Examples
    --------
    >>> import numpy as np
    >>> from conv3d_cpu import ConvTranspose3d
    >>> up = ConvTranspose3d(8, 4, 2, stride=2, rng=0)
    >>> up(np.zeros((1, 8, 5, 6, 7), np.float32)).shape
    (1, 4, 10, 12, 14)
    """

    in_channels = _readonly("in_channels", "Number of input channels.")
    out_channels = _readonly("out_channels", "Number of output channels.")
    kernel_size = _readonly("kernel_size", "(kD, kH, kW).")
    stride = _readonly("stride", "(sD, sH, sW).")
    padding = _readonly("padding", "(pD, pH, pW).")
    output_padding = _readonly("output_padding", "(opD, opH, opW).")
    dilation = _readonly("dilation", "(dD, dH, dW).")
    groups = _readonly("groups", "Number of channel groups.")
    padding_mode = _readonly("padding_mode", "'zeros'.")
    dtype = _readonly("dtype", "numpy dtype of parameters, inputs and outputs.")
    algorithm = _readonly("algorithm", "Algorithm forward uses (see conv_transpose3d).")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None, *, rng=None, algorithm="auto"):
        self._in_channels = v.positive_int("in_channels", in_channels)
        self._out_channels = v.positive_int("out_channels", out_channels)
        self._groups = v.groups_arg(groups, self._in_channels, self._out_channels)
        self._kernel_size = v.triple("kernel_size", kernel_size, 1)
        self._stride = v.triple("stride", stride, 1)
        self._padding = v.transposed_padding(padding)
        self._output_padding = v.triple("output_padding", output_padding, 0)
        self._dilation = v.triple("dilation", dilation, 1)
        v.output_padding_fits(self._output_padding, self._stride, self._dilation)
        if v.padding_mode_arg(padding_mode) != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for ConvTranspose3d, '
                             f'got padding_mode={padding_mode!r}')
        self._padding_mode = "zeros"
        self._algorithm = v.algorithm_arg(algorithm)
        v.algorithm_fits(self._algorithm, self._kernel_size, self._stride, self._dilation)
        v.device_arg(device)
        self._dtype = v.dtype_arg(dtype)
        self._copied()
        self._init_parameters((self._in_channels, self._out_channels // self._groups)
                              + self._kernel_size, bias, rng)

    def _copied(self):
        # The phases' weights for the last input shape and the parameters' bytes, and their
        # Winograd transforms (one per phase convolution at most).
        self._plans = PlanCache()
        self._transforms = TransformCache(max_entries=8)

    def _input(self, input):
        x = v.float_array("input", input)
        v.same_dtype("input", x, self._dtype)
        return v.input_5d(x, self._in_channels, "in_channels")

    def forward(self, input, output_size=None):
        """Transposed convolution of ``input`` with the module's parameters.

        Parameters
        ----------
        input : array_like, shape (N, C, D, H, W) or (C, D, H, W)
            Of the module's dtype.
        output_size : sequence of 3 ints, or of the input's rank (5, or 4 unbatched), optional
            The output's spatial size, each within [o, o + stride - 1] for o the size without
            output_padding: it replaces ``output_padding`` (stride > 1 maps several sizes to
            one input size).

        Returns
        -------
        ndarray
            A new C-contiguous array (without N for an unbatched input).
        """
        x, unbatched = self._input(input)
        op = self._output_padding
        if output_size is not None:
            op = v.output_size_arg(output_size, 4 if unbatched else 5, x.shape[2:],
                                   self._kernel_size, self._stride, self._padding,
                                   self._dilation)
        spatial = v.transposed_output_shape(x.shape[2:], self._kernel_size, self._stride,
                                            self._padding, self._dilation, op)
        weight, bias = self._params
        y = transposed.forward(x, weight, bias, self._stride, self._padding, self._dilation,
                               self._groups, spatial, self._algorithm, 0, self._plans,
                               self._transforms)
        return y[0] if unbatched else y

    __call__ = forward

    def backward(self, input, grad_output, *, output_mask=(True, True, True)):
        """Gradients of a loss for ``grad_output``, its gradient with respect to
        ``forward(input)`` (with or without ``output_size``): with respect to the input, the
        weight and the bias.

        Parameters
        ----------
        input : array_like, shape (N, C, D, H, W) or (C, D, H, W)
            The input of the forward call, of the module's dtype.
        grad_output : array_like
            Of the forward's output shape and the module's dtype.
        output_mask : sequence of 3 bools, keyword-only
            Which of (grad_input, grad_weight, grad_bias) to compute.

        Returns
        -------
        (grad_input, grad_weight, grad_bias) : tuple of ndarray or None
            Shapes of ``input``, ``weight`` and ``bias``; None where ``output_mask`` is False
            and for grad_bias of a module without bias. Nothing is stored in the module.
        """
        mask = v.output_mask_arg(output_mask)
        x, unbatched = self._input(input)
        gy = v.float_array("grad_output", grad_output)
        v.same_dtype("grad_output", gy, self._dtype)
        weight, bias = self._params
        gy = v.transposed_grad_output(gy, x, weight, self._groups, self._stride,
                                      self._padding, self._dilation, self._output_padding,
                                      unbatched)
        mask = mask[:2] + (mask[2] and bias is not None,)
        gi, gw, gb = transposed.gradients(gy, x, weight, self._stride, self._padding,
                                          self._dilation, self._groups, mask, self._algorithm,
                                          0)
        return (gi[0] if unbatched and gi is not None else gi), gw, gb

    def __repr__(self):
        s = (f"ConvTranspose3d({self._in_channels}, {self._out_channels}, "
             f"kernel_size={self._kernel_size}, stride={self._stride}")
        if self._padding != (0, 0, 0):
            s += f", padding={self._padding}"
        if self._dilation != (1, 1, 1):
            s += f", dilation={self._dilation}"
        if self._output_padding != (0, 0, 0):
            s += f", output_padding={self._output_padding}"
        if self._groups != 1:
            s += f", groups={self._groups}"
        if not self._has_bias:
            s += ", bias=False"
        return s + ")"
