"""Inputs in any strides: copied to the kernels' layout on all threads, bits unchanged."""
import numpy as np
import pytest

from conv3d_cpu import Conv3d, conv3d
from conv3d_cpu._native import layout


def views(x):
    """The same values as ``x`` (N, C, D, H, W) in other memory layouts."""
    cl = np.ascontiguousarray(x.transpose(0, 2, 3, 4, 1)).transpose(0, 4, 1, 2, 3)
    yield "channels_last", cl
    yield "fortran", np.asfortranarray(x)
    big = np.zeros(x.shape[:4] + (2 * x.shape[4] + 1,), x.dtype)
    big[..., 1::2] = x
    yield "strided_w", big[..., 1::2]
    rev = np.ascontiguousarray(x[:, ::-1, :, ::-1])
    yield "reversed", rev[:, ::-1, :, ::-1]
    yield "dhwc_of_other", np.ascontiguousarray(x.transpose(2, 3, 4, 0, 1)).transpose(3, 4, 0, 1, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 6), (1, 37, 3, 5, 19), (1, 16, 2, 3, 16),
                                   (3, 1, 1, 1, 1)])
def test_contiguous_copies_every_layout(shape, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    for name, v in views(x):
        for threads in (1, 2, 3):
            y = layout.contiguous(v, threads)
            assert y.flags.c_contiguous and y.dtype == dtype
            np.testing.assert_array_equal(y, x, err_msg=name)
    assert layout.contiguous(x) is x
    empty = np.zeros((0, 2, 3, 4, 5), dtype).transpose(0, 1, 2, 4, 3)
    assert layout.contiguous(empty).shape == (0, 2, 3, 5, 4)


@pytest.mark.parametrize("algorithm", ["direct", "winograd_f2", "auto"])
def test_convolution_of_any_layout_has_the_same_bits(algorithm):
    x = np.random.default_rng(1).standard_normal((2, 8, 6, 7, 9)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((12, 8, 3, 3, 3)).astype(np.float32) * 0.2
    expected = conv3d(x, w, padding=1, algorithm=algorithm)
    m = Conv3d(8, 12, 3, padding=1, algorithm=algorithm, rng=0)
    m.weight = w
    for name, v in views(x):
        np.testing.assert_array_equal(conv3d(v, w, padding=1, algorithm=algorithm), expected,
                                      err_msg=name)
        np.testing.assert_array_equal(m(v), m(x), err_msg=name)
