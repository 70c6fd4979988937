"""Sanity checks of the NumPy reference itself (tests/reference.py)."""
import itertools

import numpy as np
import pytest

from reference import (
    PADDING_SEMANTICS,
    assert_conv_close,
    conv3d_module_ref,
    conv3d_ref,
    output_size,
    pad_input,
    padding_lo_hi,
    reversed_padding_repeated_twice,
    same_padding,
)


def naive_conv3d(x, w, b, stride, pads, dilation, groups):
    """Scalar-loop transcription of reference doc 3.1, with implicit zero padding."""
    n_batch, c_in, D, H, W = x.shape
    c_out, cg, kd, kh, kw = w.shape
    og = c_out // groups
    (sd, sh, sw), (dd, dh, dw) = stride, dilation
    (pdl, pdh), (phl, phh), (pwl, pwh) = pads
    Do = (D + pdl + pdh - dd * (kd - 1) - 1) // sd + 1
    Ho = (H + phl + phh - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pwl + pwh - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n_batch, c_out, Do, Ho, Wo))
    for n, o, z, yy, xx in itertools.product(
        range(n_batch), range(c_out), range(Do), range(Ho), range(Wo)
    ):
        g = o // og
        acc = 0.0 if b is None else float(b[o])
        for c, a, bb, e in itertools.product(range(cg), range(kd), range(kh), range(kw)):
            iz = z * sd + a * dd - pdl
            iy = yy * sh + bb * dh - phl
            ix = xx * sw + e * dw - pwl
            if 0 <= iz < D and 0 <= iy < H and 0 <= ix < W:
                acc += w[o, c, a, bb, e] * x[n, g * cg + c, iz, iy, ix]
        y[n, o, z, yy, xx] = acc
    return y


def test_1x1x1_kernel_is_channel_matmul():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 4, 6))
    w = rng.standard_normal((7, 5, 1, 1, 1))
    b = rng.standard_normal(7)
    expected = np.einsum("oc,ncdhw->nodhw", w[:, :, 0, 0, 0], x) + b[:, None, None, None]
    np.testing.assert_allclose(conv3d_ref(x, w, b), expected, rtol=1e-13, atol=1e-13)


def test_hand_computed_1d_cases():
    # Cross-correlation (kernel not flipped), along W only.
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 1, 4)
    w = np.array([10.0, 1.0]).reshape(1, 1, 1, 1, 2)
    assert conv3d_ref(x, w).ravel().tolist() == [12.0, 23.0, 34.0]
    assert conv3d_ref(x, w, np.array([0.5])).ravel().tolist() == [12.5, 23.5, 34.5]
    assert conv3d_ref(x, w, padding=(0, 0, 1)).ravel().tolist() == [1.0, 12.0, 23.0, 34.0, 40.0]
    assert conv3d_ref(x, w, stride=(1, 1, 2)).ravel().tolist() == [12.0, 34.0]
    assert conv3d_ref(x, w, dilation=(1, 1, 2)).ravel().tolist() == [13.0, 24.0]


def test_hand_computed_3d_ones():
    x = np.ones((1, 1, 3, 3, 3))
    w = np.ones((1, 1, 2, 2, 2))
    y = conv3d_ref(x, w)
    assert y.shape == (1, 1, 2, 2, 2) and np.all(y == 8.0)
    yp = conv3d_ref(x, w, padding=1)[0, 0]
    assert yp.shape == (4, 4, 4)
    assert yp[0, 0, 0] == 1.0 and yp[3, 3, 3] == 1.0  # corners overlap one voxel
    assert yp[0, 1, 1] == 4.0 and yp[1, 1, 0] == 4.0  # faces overlap four
    assert yp[1, 1, 1] == 8.0 and yp[2, 2, 2] == 8.0  # interior overlaps all eight


def test_groups_are_block_diagonal():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 4, 5, 3))
    w = rng.standard_normal((4, 3, 2, 2, 2))
    y = conv3d_ref(x, w, groups=2)
    y0 = conv3d_ref(x[:, :3], w[:2])
    y1 = conv3d_ref(x[:, 3:], w[2:])
    np.testing.assert_allclose(y, np.concatenate([y0, y1], axis=1), rtol=0, atol=0)


def test_unbatched_equals_batched():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 6))
    w = rng.standard_normal((2, 3, 2, 3, 2))
    np.testing.assert_array_equal(conv3d_ref(x, w, padding=1), conv3d_ref(x[None], w, padding=1)[0])


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_reference_matches_scalar_loops(seed):
    rng = np.random.default_rng(100 + seed)
    groups = int(rng.integers(1, 3))
    cg, og = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, 3))
    s = tuple(int(v) for v in rng.integers(1, 3, 3))
    d = tuple(int(v) for v in rng.integers(1, 3, 3))
    pads = tuple((int(lo), int(hi)) for lo, hi in rng.integers(0, 3, (3, 2)))
    size = tuple(
        max(1, di * (ki - 1) + 1 - lo - hi) + int(rng.integers(0, 3))
        for ki, di, (lo, hi) in zip(k, d, pads)
    )
    x = rng.standard_normal((2, cg * groups) + size)
    w = rng.standard_normal((og * groups, cg) + k)
    b = rng.standard_normal(og * groups) if seed % 2 else None
    np.testing.assert_allclose(
        conv3d_ref(x, w, b, s, pads, d, groups),
        naive_conv3d(x, w, b, s, pads, d, groups),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "mode, pad, expected", PADDING_SEMANTICS,
)
def test_pad_semantics(mode, pad, expected):
    x = np.arange(3.0).reshape(1, 1, 1, 1, 3)
    out = pad_input(x, ((0, 0), (0, 0), (pad, pad)), mode)
    assert out.ravel().tolist() == expected


@pytest.mark.parametrize(
    "kernel, dilation, expected",
    [
        # reference doc 1.4 table, in F.pad order [Wl, Wr, Hl, Hr, Dl, Dr]
        ((2, 3, 4), 1, [1, 2, 1, 1, 0, 1]),
        ((2, 3, 4), 2, [3, 3, 2, 2, 1, 1]),
        ((4, 4, 4), 3, [4, 5, 4, 5, 4, 5]),
        ((1, 2, 5), 2, [4, 4, 1, 1, 0, 0]),
    ],
)
def test_same_padding_split(kernel, dilation, expected):
    assert reversed_padding_repeated_twice(same_padding(kernel, dilation)) == expected
    assert padding_lo_hi("same", kernel, dilation) == same_padding(kernel, dilation)


def test_output_size_examples():
    # reference doc 3.2 and 4
    pads = padding_lo_hi((4, 2, 0), (3, 5, 2))
    assert output_size((10, 50, 100), (3, 5, 2), (2, 1, 1), pads) == (8, 50, 99)
    assert output_size((50, 10, 20), 3) == (48, 8, 18)
    assert padding_lo_hi("valid", 3) == ((0, 0),) * 3
    assert padding_lo_hi((1,), 3) == ((1, 1),) * 3


def test_module_ref_same_is_explicit_pad():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 5, 6))
    w = rng.standard_normal((3, 2, 2, 3, 4))
    y = conv3d_module_ref(x, w, None, padding="same", padding_mode="zeros")
    assert y.shape == (1, 3, 4, 5, 6)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 1), (1, 2)))
    np.testing.assert_array_equal(y, conv3d_ref(xp, w))


def test_tolerance_helper_rejects_an_indexing_error_and_accepts_rounding():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 3, 5, 5, 5))
    w = rng.standard_normal((2, 3, 3, 3, 3))
    ref = conv3d_ref(x, w, padding=1)
    bound = conv3d_ref(np.abs(x), np.abs(w), padding=1)
    fan_in = 81
    # float32 rounding of the exact result is well inside the bound
    assert_conv_close(ref.astype(np.float32), ref, bound, fan_in, np.float32)
    # a one-voxel shift (typical off-by-one) is far outside it
    with pytest.raises(AssertionError):
        assert_conv_close(np.roll(ref, 1, axis=-1).astype(np.float32), ref, bound, fan_in, np.float32)
    # so is a single small corrupted element
    bad = ref.astype(np.float32)
    bad[0, 1, 2, 2, 2] += 1e-3
    with pytest.raises(AssertionError):
        assert_conv_close(bad, ref, bound, fan_in, np.float32)


# ---------------------------------------------------------------- torch checks

@pytest.mark.parametrize("seed", range(6))
def test_reference_matches_torch_conv3d(seed):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(200 + seed)
    groups = int(rng.integers(1, 4))
    cg, og = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, 3))
    s = tuple(int(v) for v in rng.integers(1, 3, 3))
    d = tuple(int(v) for v in rng.integers(1, 3, 3))
    p = tuple(int(v) for v in rng.integers(0, 3, 3))
    size = tuple(max(1, di * (ki - 1) + 1 - 2 * pi) + 2 for ki, di, pi in zip(k, d, p))
    x = rng.standard_normal((2, cg * groups) + size)
    w = rng.standard_normal((og * groups, cg) + k)
    b = rng.standard_normal(og * groups)
    expected = F.conv3d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), s, p, d, groups
    ).numpy()
    np.testing.assert_allclose(conv3d_ref(x, w, b, s, p, d, groups), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kernel, dilation", [((3, 3, 3), 1), ((2, 3, 4), 1), ((2, 3, 4), (3, 2, 1))])
def test_reference_module_matches_torch_same_padding(mode, kernel, dilation):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.Conv3d(2, 3, kernel, padding="same", dilation=dilation, padding_mode=mode,
                        dtype=torch.float64)
    assert list(m._reversed_padding_repeated_twice) == reversed_padding_repeated_twice(
        same_padding(kernel, dilation)
    )
    x = np.random.default_rng(5).standard_normal((2, 2, 7, 6, 8))
    with torch.no_grad():
        expected = m(torch.from_numpy(x)).numpy()
    ours = conv3d_module_ref(
        x, m.weight.detach().numpy(), m.bias.detach().numpy(), 1, "same", dilation, 1, mode
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_reference_padding_matches_torch_pad(mode):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).standard_normal((1, 2, 3, 4, 5))
    pads = ((1, 2), (0, 3), (2, 1))  # every pad < size, as reflect requires
    expected = torch.nn.functional.pad(
        torch.from_numpy(x), reversed_padding_repeated_twice(pads), mode=mode
    ).numpy()
    np.testing.assert_array_equal(pad_input(x, pads, mode), expected)
