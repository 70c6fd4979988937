"""``conv3d``, ``conv_transpose3d`` and their gradients: PyTorch's
``torch.nn.functional.conv3d`` / ``conv_transpose3d`` and ``torch.ops.aten.convolution_backward``
on numpy arrays."""
from conv3d_cpu._core import transposed
from conv3d_cpu._core import validation as v
from conv3d_cpu._core.backward import gradients
from conv3d_cpu._core.forward import convolve, result_shape


def layer_args(weight, groups, stride, padding, dilation, algorithm, num_threads):
    """A layer's arguments checked and normalized, in PyTorch's order: (weight, groups,
    stride, (lo, hi) padding per axis, dilation, num_threads (0: the OpenMP default))."""
    weight, groups = v.weight_and_groups(weight, groups)
    stride = v.triple("stride", stride, 1, allow_single=True)
    dilation = v.triple("dilation", dilation, 1, allow_single=True)
    padding = v.padding_arg(padding, allow_single=True)
    v.check_same_stride(padding, stride)
    v.algorithm_arg(algorithm)
    v.algorithm_fits(algorithm, weight.shape[2:], stride, dilation)
    num_threads = v.num_threads_arg(num_threads)
    return (weight, groups, stride, v.padding_pairs(padding, weight.shape[2:], dilation),
            dilation, num_threads)


def input_arg(input, weight, groups):
    """``input`` as a 5-D float array of the weight's dtype, and whether it was unbatched."""
    x = v.float_array("input", input)
    v.same_dtype("input", x, weight.dtype)
    return v.input_5d(x, weight.shape[1] * groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm="auto", num_threads=None, out=None):
    """3D cross-correlation of ``input`` with ``weight``, as ``torch.nn.functional.conv3d``.

    Parameters
    ----------
    input : array_like, shape (N, C, D, H, W) or (C, D, H, W)
        float32 or float64; any strides or memory order.
    weight : array_like, shape (O, C // groups, kD, kH, kW)
        Same dtype as ``input`` (no implicit cast).
    bias : array_like, shape (O,), optional
        Same dtype as ``input``.
    stride, dilation : int or tuple of 3 ints
        Positive, per (depth, height, width) axis.
    padding : int, tuple of 3 ints, 'valid' or 'same'
        Implicit zero padding. 'same' needs stride 1 and, for an even dilated kernel, puts the
        extra element on the far side, as PyTorch does.
    groups : int
        Divides C and O.
    algorithm : {'auto', 'direct', 'winograd', 'winograd_f2', 'winograd_f4'}
        'auto' chooses per layer by a cost model and gives the same NaN/Inf positions as
        direct convolution. Winograd needs a 3x3x3, (1,3,3), (3,1,1), 5x5x5 or 2x2x2 kernel,
        stride 1 and dilation 1 along the kernel's axes larger than 1 (else ValueError);
        'winograd' picks the tile size, 'winograd_f2' / 'winograd_f4' force F(2, 3) / F(4, 3)
        along those axes (F(2^3, 3^3) / F(4^3, 3^3) for 3x3x3; 5x5x5 has F(2^3, 5^3) only,
        through 'winograd_f2' or 'winograd'; 2x2x2 F(3^3, 2^3) and F(5^3, 2^3), through
        'winograd'). An explicit Winograd algorithm mixes the inputs of each
        tile, so a NaN or Inf in the input spreads to every output of its tile(s).
    num_threads : int, optional
        OpenMP threads for this call, at most ``max(256, os.cpu_count())``; None uses
        ``omp_get_max_threads()`` (``OMP_NUM_THREADS``, threadpoolctl limits).
    out : ndarray, optional
        Where to write the result: C-contiguous, of the output's shape and the input's dtype,
        sharing no memory with the operands (checked before anything is written). Reusing one
        buffer across calls spares a network fresh pages for every layer. A call stopped by
        Ctrl-C (``KeyboardInterrupt``) leaves it partly written.

    Returns
    -------
    ndarray, shape (N, O, oD, oH, oW) or (O, oD, oH, oW)
        ``out``, or a new C-contiguous array of the input's dtype.
    """
    weight, groups, stride, pads, dilation, num_threads = layer_args(
        weight, groups, stride, padding, dilation, algorithm, num_threads)
    bias = v.bias_arg(bias, weight)
    x, unbatched = input_arg(input, weight, groups)
    shape = result_shape(x, weight, stride, pads, dilation, groups, unbatched)
    out5 = v.out_arg(out, shape, x.dtype, x, weight, bias)
    y = convolve(x, weight, bias, stride, pads, dilation, groups, algorithm, num_threads,
                 out=out5)
    return out if out is not None else (y[0] if unbatched else y)


def conv3d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    output_mask=(True, True, True), algorithm="auto", num_threads=None):
    """Gradients of ``conv3d(input, weight, bias, ...)`` for ``grad_output``, as
    ``torch.ops.aten.convolution_backward`` (``transposed=False``).

    Parameters
    ----------
    grad_output : array_like, shape (N, O, oD, oH, oW) or (O, oD, oH, oW)
        The gradient of a loss with respect to the convolution's output: its shape, the
        input's dtype.
    input, weight, stride, padding, dilation, groups
        As in ``conv3d`` (the bias does not enter the gradients).
    output_mask : sequence of 3 bools, keyword-only
        Which of (grad_input, grad_weight, grad_bias) to compute.
    algorithm : {'auto', 'direct', 'winograd', 'winograd_f2', 'winograd_f4'}
        How grad_input is computed (a convolution of ``grad_output``), as in ``conv3d``; the
        weight gradient has one algorithm.
    num_threads : int, optional
        As in ``conv3d``. Results do not depend on it (bitwise).

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : tuple of ndarray or None
        Shapes of ``input``, ``weight`` and (O,); None where ``output_mask`` is False.
        Where ``grad_output`` holds a NaN or an infinity, the NaNs are PyTorch's: the weight
        gradient multiplies the zero padding (0 * inf is NaN), the input gradient does not.
    """
    weight, groups, stride, pads, dilation, num_threads = layer_args(
        weight, groups, stride, padding, dilation, algorithm, num_threads)
    mask = v.output_mask_arg(output_mask)
    x, unbatched = input_arg(input, weight, groups)
    gy = v.float_array("grad_output", grad_output)
    v.same_dtype("grad_output", gy, weight.dtype)
    v.grad_output_arg(gy, result_shape(x, weight, stride, pads, dilation, groups, unbatched))
    gi, gw, gb = gradients(gy[None] if unbatched else gy, x, weight, stride, pads, dilation,
                           groups, mask, algorithm, num_threads)
    return (gi[0] if unbatched and gi is not None else gi), gw, gb


def transposed_args(weight, groups, stride, padding, output_padding, dilation, algorithm,
                    num_threads):
    """A transposed layer's arguments checked and normalized: (weight, groups, stride,
    padding, output_padding, dilation, num_threads (0: the OpenMP default))."""
    weight, groups = v.weight_and_groups(weight, groups, transposed=True)
    stride = v.triple("stride", stride, 1, allow_single=True)
    padding = v.transposed_padding(padding, allow_single=True)
    output_padding = v.triple("output_padding", output_padding, 0, allow_single=True)
    dilation = v.triple("dilation", dilation, 1, allow_single=True)
    v.output_padding_fits(output_padding, stride, dilation)
    v.algorithm_arg(algorithm)
    v.algorithm_fits(algorithm, weight.shape[2:], stride, dilation)
    return (weight, groups, stride, padding, output_padding, dilation,
            v.num_threads_arg(num_threads))


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto", num_threads=None):
    """3D transposed convolution ("deconvolution") of ``input`` with ``weight``, as
    ``torch.nn.functional.conv_transpose3d`` (note its order: groups before dilation).

    Parameters
    ----------
    input : array_like, shape (N, C, D, H, W) or (C, D, H, W)
        float32 or float64; any strides or memory order.
    weight : array_like, shape (C, O // groups, kD, kH, kW)
        Same dtype as ``input``; C divisible by ``groups``.
    bias : array_like, shape (O,), optional
    stride, dilation : int or tuple of 3 ints
        Positive.
    padding : int or tuple of 3 ints
        Non-negative: ``dilation * (kernel_size - 1) - padding`` zeros around the input of
        the equivalent convolution (no 'same' / 'valid', a TypeError).
    output_padding : int or tuple of 3 ints
        Extra size on the far side of each axis, smaller than the stride or the dilation.
    groups : int
    algorithm : {'auto', 'direct', 'winograd', 'winograd_f2', 'winograd_f4'}
        As in ``conv3d``: Winograd needs stride 1, dilation 1 and one of its kernels. This
        call transforms its Winograd weights anew (nothing is cached), so 'auto' and
        'winograd' count that transform when they choose a tile; a ``ConvTranspose3d``
        module keeps its transforms and may choose another tile: the two then agree within
        the float precision in effect, not bitwise.
    num_threads : int, optional
        As in ``conv3d``. Results do not depend on it (bitwise).

    Returns
    -------
    ndarray, shape (N, O, oD, oH, oW) or (O, oD, oH, oW)
        A new C-contiguous array, o = (i - 1) * stride - 2 * padding
        + dilation * (k - 1) + output_padding + 1 per axis.
    """
    weight, groups, stride, padding, output_padding, dilation, num_threads = transposed_args(
        weight, groups, stride, padding, output_padding, dilation, algorithm, num_threads)
    bias = v.bias_arg(bias, weight, weight.shape[1] * groups)
    x, unbatched = _transposed_input(input, weight)
    spatial = v.transposed_output_shape(x.shape[2:], weight.shape[2:], stride, padding,
                                        dilation, output_padding)
    y = transposed.forward(x, weight, bias, stride, padding, dilation, groups, spatial,
                           algorithm, num_threads)
    return y[0] if unbatched else y


def _transposed_input(input, weight):
    x = v.float_array("input", input)
    v.same_dtype("input", x, weight.dtype)
    return v.input_5d(x, weight.shape[0], "weight.shape[0]")


def conv_transpose3d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, *, output_mask=(True, True, True),
                              algorithm="auto", num_threads=None):
    """Gradients of ``conv_transpose3d(input, weight, bias, ...)`` for ``grad_output``, as
    ``torch.ops.aten.convolution_backward`` (``transposed=True``).

    Parameters
    ----------
    grad_output : array_like, shape (N, O, oD, oH, oW) or (O, oD, oH, oW)
        The gradient of a loss with respect to the output: its shape (with the
        output_padding given, or any the forward's ``output_size`` chose), the input's dtype.
    input, weight, stride, padding, output_padding, groups, dilation
        As in ``conv_transpose3d``.
    output_mask : sequence of 3 bools, keyword-only
        Which of (grad_input, grad_weight, grad_bias) to compute.
    algorithm, num_threads
        As in ``conv_transpose3d``; grad_input is a convolution of ``grad_output``.

    Returns
    -------
    (grad_input, grad_weight, grad_bias) : tuple of ndarray or None
        Shapes of ``input``, ``weight`` and (O,); None where ``output_mask`` is False.
    """
    weight, groups, stride, padding, output_padding, dilation, num_threads = transposed_args(
        weight, groups, stride, padding, output_padding, dilation, algorithm, num_threads)
    mask = v.output_mask_arg(output_mask)
    x, unbatched = _transposed_input(input, weight)
    gy = v.float_array("grad_output", grad_output)
    v.same_dtype("grad_output", gy, weight.dtype)
    gy = v.transposed_grad_output(gy, x, weight, groups, stride, padding, dilation,
                                  output_padding, unbatched)
    gi, gw, gb = transposed.gradients(gy, x, weight, stride, padding, dilation, groups, mask,
                                      algorithm, num_threads)
    return (gi[0] if unbatched and gi is not None else gi), gw, gb
