"""Explicit padding for the non-zero padding modes (zeros padding stays implicit in kernels)."""
import numpy as np

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_input(x, mode, pads):
    """Pad the spatial axes of a 5-D array with PyTorch's meaning of ``mode`` (its limits
    checked by validation.padding_mode_fits)."""
    if not any(lo or hi for lo, hi in pads):
        return x
    return np.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode=_NUMPY_MODE[mode])


def zero_pad(x, pads):
    """A zero-padded copy of a 5-D array: the direct kernel's implicit padding made explicit.

    The direct kernel skips the taps that fall in implicit zero padding, but PyTorch multiplies
    them: 0 * NaN and 0 * inf are NaN. Only non-finite weights can tell the two apart, so only
    then (the kernel reports it) is the layer recomputed on this copy without padding.
    """
    return np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
