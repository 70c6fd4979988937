"""The one padded copy the package still makes: zeros made explicit for the NaN recompute.

(Reflect, replicate and circular padding are read inside the kernels, through padding.h.)"""
import numpy as np


def zero_pad(x, pads):
    """A zero-padded copy of a 5-D array: the direct kernel's implicit padding made explicit.

    The direct kernel skips the taps that fall in implicit zero padding, but PyTorch multiplies
    them: 0 * NaN and 0 * inf are NaN. Only non-finite weights can tell the two apart, so only
    then (the kernel reports it) is the layer recomputed on this copy without padding.
    """
    return np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
