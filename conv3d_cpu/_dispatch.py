"""Choose an algorithm for a validated convolution and run it."""
import numpy as np

from conv3d_cpu import _direct
from conv3d_cpu._validation import output_shape

ALGORITHMS = ("auto", "direct")


def check_algorithm(algorithm):
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}"
        )
    return algorithm


def convolve(x, weight, bias, stride, pads, dilation, groups, algorithm, num_threads):
    """Convolve a validated 5-D input with zero padding ``pads`` ((lo, hi) per axis).

    ``weight`` and ``bias`` (or None) have ``x``'s dtype and consistent shapes; ``num_threads``
    is 0 for the OpenMP default. Returns a new C-contiguous (N, O, oD, oH, oW) array.
    """
    spatial = output_shape(x.shape[2:], weight.shape[2:], stride, pads, dilation)
    out = np.empty((x.shape[0], weight.shape[0]) + spatial, dtype=x.dtype)
    if out.size == 0:
        return out
    if bias is None:
        bias = np.zeros(weight.shape[0], dtype=x.dtype)
    # 'auto' has one candidate until Winograd lands.
    _direct.direct(
        np.ascontiguousarray(x),
        np.ascontiguousarray(weight),
        np.ascontiguousarray(bias),
        out,
        stride,
        tuple(lo for lo, _ in pads),
        dilation,
        groups,
        num_threads,
    )
    return out
