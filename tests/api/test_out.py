"""``out=``: conv3d and Conv3d.forward write into a caller's array, checked before any write."""
import numpy as np
import pytest

from conv3d_cpu import Conv3d, conv3d
from reference import check_conv

ALGORITHMS = ["auto", "direct", "winograd_f2", "winograd_f4"]


def data(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("batched", [True, False])
def test_functional_writes_into_out(batched, algorithm, dtype):
    x = data((2, 6, 7, 8, 9) if batched else (6, 7, 8, 9), 0, dtype)
    w, b = data((10, 6, 3, 3, 3), 1, dtype) * 0.2, data((10,), 2, dtype)
    expected = conv3d(x, w, b, padding=1, algorithm=algorithm)
    out = np.full(expected.shape, np.nan, dtype)
    for _ in range(2):  # the same buffer again
        got = conv3d(x, w, b, padding=1, algorithm=algorithm, out=out)
        assert got is out
        np.testing.assert_array_equal(out, expected)
    if algorithm == "direct":  # (the others' accuracy: accuracy/test_winograd.py)
        check_conv(out if batched else out[None], x if batched else x[None], w, b, 1, 1)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize("batched", [True, False])
def test_module_writes_into_out(batched, padding_mode):
    m = Conv3d(4, 8, 3, padding=1, padding_mode=padding_mode, rng=0)
    x = data((3, 4, 6, 7, 8) if batched else (4, 6, 7, 8), 3)
    expected = m(x)
    out = np.empty_like(expected)
    assert m(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    assert m.forward(x, out) is out


def test_out_with_the_nan_weight_recompute():
    # NaN weights meeting zero padding: the direct kernel runs twice, both times into out.
    x = data((1, 3, 5, 6, 7), 4)
    w = data((5, 3, 3, 3, 3), 5)
    w[2, 1, 0, 0, 0] = np.nan
    expected = conv3d(x, w, padding=1, algorithm="direct")
    out = np.zeros_like(expected)
    conv3d(x, w, padding=1, algorithm="direct", out=out)
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(out[0, 2]).all() and np.isfinite(out[0, :2]).all()


def test_out_of_an_empty_result():
    x = np.ones((0, 2, 4, 4, 4), np.float32)
    out = np.empty((0, 3, 2, 2, 2), np.float32)
    assert conv3d(x, np.ones((3, 2, 3, 3, 3), np.float32), out=out) is out


def _bad_outs():
    good = np.empty((2, 10, 7, 8, 9), np.float32)
    x = np.zeros((2, 6, 7, 8, 9), np.float32)
    readonly = np.empty_like(good)
    readonly.flags.writeable = False
    return [
        ([0.0], TypeError, "out must be a numpy.ndarray"),
        (np.empty_like(good, dtype=np.float64), TypeError, "out has dtype float64"),
        (np.empty((2, 10, 7, 8, 8), np.float32), ValueError, "out has shape"),
        (np.empty((10, 7, 8, 9), np.float32), ValueError, "out has shape"),
        (np.asfortranarray(good), ValueError, "C-contiguous"),
        (np.empty((2, 10, 7, 8, 18), np.float32)[..., ::2], ValueError, "C-contiguous"),
        (readonly, ValueError, "writeable=False"),
    ], x


@pytest.mark.parametrize("case", range(7))
def test_bad_out_is_refused_before_anything_is_written(case):
    outs, x = _bad_outs()
    out, error, message = outs[case]
    w = data((10, 6, 3, 3, 3), 1)
    m = Conv3d(6, 10, 3, padding=1, rng=0)
    before = None if not isinstance(out, np.ndarray) else out.copy()
    with pytest.raises(error, match=message):
        conv3d(x, w, padding=1, out=out)
    with pytest.raises(error, match=message):
        m(x, out=out)
    if before is not None:
        np.testing.assert_array_equal(out, before)


def test_out_sharing_memory_with_an_operand_is_refused():
    x = np.zeros((1, 4, 6, 6, 6), np.float32)
    w = data((4, 4, 1, 1, 1), 1)
    x[:] = data(x.shape, 2)
    before = x.copy()
    with pytest.raises(ValueError, match="out must not share memory"):
        conv3d(x, w, out=x)  # 1x1x1: the output has the input's shape
    np.testing.assert_array_equal(x, before)
    m = Conv3d(4, 4, 1, rng=0)
    with pytest.raises(ValueError, match="out must not share memory"):
        m(x, out=x)
    big = np.zeros(16 + 4 * 216, np.float32)
    wv = big[:16].reshape(4, 4, 1, 1, 1)
    with pytest.raises(ValueError, match="out must not share memory"):  # overlaps the weight
        conv3d(x, wv, out=big[8:8 + 4 * 216].reshape(1, 4, 6, 6, 6))
    conv3d(x, wv, out=big[16:].reshape(1, 4, 6, 6, 6))  # next to it: fine


def test_other_errors_leave_out_untouched():
    out = np.full((1, 5, 4, 4, 4), 7.0, np.float32)
    with pytest.raises(ValueError):  # bad padding_mode limits, after out is checked
        Conv3d(2, 5, 3, padding=3, padding_mode="reflect", rng=0)(
            np.ones((1, 2, 2, 2, 2), np.float32), out=out)
    with pytest.raises(TypeError):  # input dtype
        conv3d(np.ones((1, 2, 6, 6, 6)), np.ones((5, 2, 3, 3, 3), np.float32), out=out)
    assert (out == 7).all()
