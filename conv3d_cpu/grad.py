"""``conv3d_input`` and ``conv3d_weight``: ``torch.nn.grad.conv3d_input`` / ``conv3d_weight``
on numpy arrays (the two gradients of ``conv3d_backward`` one at a time)."""
import numpy as np

from conv3d_cpu._core import validation as v
from conv3d_cpu.functional import conv3d_backward

__all__ = ["conv3d_input", "conv3d_weight"]


def _operand(size, dtype):
    """An array standing for an operand of which only the shape matters (no memory)."""
    return np.broadcast_to(np.zeros((), dtype), size)


def conv3d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 algorithm="auto", num_threads=None):
    """The gradient of ``conv3d`` with respect to its input, as
    ``torch.nn.grad.conv3d_input``.

    Parameters
    ----------
    input_size : sequence of 5 ints (N, C, D, H, W), or 4 for an unbatched input
        The input's shape: with stride > 1 several input sizes give one output size.
    weight : array_like, shape (O, C // groups, kD, kH, kW)
    grad_output : array_like
        Of the convolution's output shape and the weight's dtype.
    stride, padding, dilation, groups, algorithm, num_threads
        As in ``conv3d``.

    Returns
    -------
    ndarray of shape ``input_size``
    """
    size = v.size_arg("input_size", input_size, (4, 5))
    weight, _ = v.weight_and_groups(weight, groups)
    v.input_size_channels(size, weight, v.positive_int("groups", groups))
    return conv3d_backward(grad_output, _operand(size, weight.dtype), weight, stride,
                           padding, dilation, groups, output_mask=(True, False, False),
                           algorithm=algorithm, num_threads=num_threads)[0]


def conv3d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  algorithm="auto", num_threads=None):
    """The gradient of ``conv3d`` with respect to its weight, as
    ``torch.nn.grad.conv3d_weight``.

    Parameters
    ----------
    input : array_like, shape (N, C, D, H, W) or (C, D, H, W)
    weight_size : sequence of 5 ints (O, C // groups, kD, kH, kW)
    grad_output : array_like
        Of the convolution's output shape and the input's dtype.
    stride, padding, dilation, groups, algorithm, num_threads
        As in ``conv3d``.

    Returns
    -------
    ndarray of shape ``weight_size``
    """
    size = v.size_arg("weight_size", weight_size, (5,), positive=True)
    x = v.float_array("input", input)
    return conv3d_backward(grad_output, x, _operand(size, x.dtype), stride, padding,
                           dilation, groups, output_mask=(False, True, False),
                           algorithm=algorithm, num_threads=num_threads)[1]
