"""``conv3d``: PyTorch's ``torch.nn.functional.conv3d`` on numpy arrays."""
from conv3d_cpu._core import validation as v
from conv3d_cpu._core.forward import convolve, result_shape


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
        direct convolution. Winograd needs a 3x3x3, (1,3,3), (3,1,1) or 5x5x5 kernel, stride
        1 and dilation 1 along the kernel's axes larger than 1 (else ValueError); 'winograd'
        picks the tile size, 'winograd_f2' / 'winograd_f4' force F(2, 3) / F(4, 3) along those
        axes (F(2^3, 3^3) / F(4^3, 3^3) for 3x3x3; 5x5x5 has F(2^3, 5^3) only, through
        'winograd_f2' or 'winograd'). An explicit Winograd algorithm mixes the inputs of each
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
    weight, groups = v.weight_and_groups(weight, groups)
    bias = v.bias_arg(bias, weight)
    stride = v.triple("stride", stride, 1, allow_single=True)
    dilation = v.triple("dilation", dilation, 1, allow_single=True)
    padding = v.padding_arg(padding, allow_single=True)
    v.check_same_stride(padding, stride)
    v.algorithm_arg(algorithm)
    v.algorithm_fits(algorithm, weight.shape[2:], stride, dilation)
    num_threads = v.num_threads_arg(num_threads)

    x = v.float_array("input", input)
    v.same_dtype("input", x, weight.dtype)
    x, unbatched = v.input_5d(x, weight.shape[1] * groups)
    pads = v.padding_pairs(padding, weight.shape[2:], dilation)
    shape = result_shape(x, weight, stride, pads, dilation, groups, unbatched)
    out5 = v.out_arg(out, shape, x.dtype, x, weight, bias)
    y = convolve(x, weight, bias, stride, pads, dilation, groups, algorithm, num_threads,
                 out=out5)
    return out if out is not None else (y[0] if unbatched else y)
