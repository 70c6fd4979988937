"""Explicit padding for the non-zero padding modes (zeros padding stays implicit in kernels)."""
import numpy as np

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_AXES = ("depth", "height", "width")


def check_mode_limits(mode, spatial, pads):
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


def pad_input(x, mode, pads):
    """Pad the spatial axes of a 5-D array with PyTorch's meaning of ``mode``."""
    check_mode_limits(mode, x.shape[2:], pads)
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
