"""Contract of ``conv3d_cpu._native.layout.interleave_phases(buffer, out, stride, at, fill,
num_threads)``: the scatter of grad_input's (and so the transposed convolution's) phases.

out[n, c, z, y, x] is element [n, c, z // sd, y // sh, x // sw] of phase
(z % sd, y % sh, x % sw), whose row in ``at`` (C order of the phases) holds its offset in
``buffer`` and its N, C, D, H strides in elements (W contiguous), or offset -1 for a phase
that gets ``fill[c]``. Checked against a numpy loop over the output positions, with phases
stored in random layouts (any order of N, C, D, slack between rows, planes and blocks, the
slack filled with values that must not be read), ``out`` a depth slab of a C-contiguous
array (nothing outside the slab written), both dtypes and several thread counts.
"""
import itertools

import numpy as np
import pytest

from conv3d_cpu._native.layout import interleave_phases
from hardening import bits

DTYPES = [np.float32, np.float64]
STRIDES = list(itertools.product((1, 2, 3), repeat=3))
THREADS = [1, 2, 3, 5, 0]
SENTINEL = -1234.5


def phase_counts(shape, stride, phase):
    """Elements of one phase per axis: ceil((n - p) / s), 0 for a phase past the axis."""
    return tuple(max(0, -(-(n - p) // s)) for n, s, p in zip(shape, stride, phase))


def build(rng, N, C, spatial, stride, dtype, missing):
    """(buffer, at, fill): every phase in its own random layout inside one flat buffer;
    ``missing`` is the probability that a phase is marked -1."""
    blocks, at = [], []
    offset = int(rng.integers(0, 4))  # slack before the first block
    for phase in itertools.product(*(range(s) for s in stride)):
        cz, cy, cx = phase_counts(spatial, stride, phase)
        if rng.random() < missing:
            at.append((-1, 0, 0, 0, 0))
            continue
        if 0 in (cz, cy, cx):  # a phase no output position reads (axis shorter than stride)
            at.append((0, 0, 0, 0, 0))
            continue
        s_h = cx + int(rng.integers(0, 3))              # row stride, W contiguous
        plane = s_h * (cy + int(rng.integers(0, 2)))    # the (y, x) plane, maybe with slack
        strides, size = {}, plane
        for axis in rng.permutation(["N", "C", "D"]):   # outer axes in a random order
            strides[axis] = size
            size *= {"N": N, "C": C, "D": cz}[axis] + int(rng.integers(0, 2))
        at.append((offset, strides["N"], strides["C"], strides["D"], s_h))
        blocks.append(size)
        offset += size + int(rng.integers(0, 3))
    # random values everywhere: slack read by mistake shows up as a wrong element
    buffer = rng.standard_normal(offset + 2).astype(dtype)
    fill = rng.standard_normal(C).astype(dtype)
    return buffer, np.array(at, dtype=np.intp), fill


def expected(buffer, at, fill, shape, stride):
    """The contract, position by position (vectorized over n and c only)."""
    N, C, D, H, W = shape
    sd, sh, sw = stride
    out = np.empty(shape, buffer.dtype)
    n = np.arange(N)[:, None]
    c = np.arange(C)[None, :]
    for z, y, x in itertools.product(range(D), range(H), range(W)):
        row = at[((z % sd) * sh + y % sh) * sw + x % sw]
        if row[0] < 0:
            out[:, :, z, y, x] = fill[None, :]
        else:
            idx = row[0] + n * row[1] + c * row[2] + (z // sd) * row[3] + (y // sh) * row[4] \
                + x // sw
            out[:, :, z, y, x] = buffer[idx]
    return out


def slab(shape, dtype, rng):
    """A depth slab view of a bigger C-contiguous array, and that array (sentinel-filled)."""
    N, C, D, H, W = shape
    z0 = int(rng.integers(0, 3))
    big = np.full((N, C, z0 + D + int(rng.integers(0, 3)), H, W), SENTINEL, dtype)
    return big, big[:, :, z0:z0 + D], z0


def run_and_check(buffer, at, fill, shape, stride, dtype, rng, threads=THREADS):
    want = expected(buffer, at, fill, shape, stride)
    buffer0 = buffer.copy()
    results = []
    for t in threads:
        big, out, z0 = slab(shape, dtype, rng)
        outside = np.ones(big.shape, bool)
        outside[:, :, z0:z0 + shape[2]] = False
        got = interleave_phases(buffer, out, stride, at, fill, t)
        assert got is out
        np.testing.assert_array_equal(out, want, err_msg=f"{t} threads, stride {stride}")
        assert (big[outside] == SENTINEL).all(), "wrote outside the slab"
        results.append(bits(out))
    assert len(set(results)) == 1
    np.testing.assert_array_equal(buffer, buffer0)  # the phases are only read


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", STRIDES, ids=lambda s: "s%d%d%d" % s)
def test_random_phases(stride, dtype):
    rng = np.random.default_rng(sum(a * b for a, b in zip(stride, (9, 3, 1))) + 100 * (
        dtype == np.float64))
    for trial in range(2):
        N, C = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        # sizes from the stride up (grad_input's phases: min(stride, size) per axis), odd and
        # even, a few of them shorter than the stride in the second trial
        lo = 1 if trial else 0
        spatial = tuple(int(rng.integers(max(1, s - lo), s + 6)) for s in stride)
        buffer, at, fill = build(rng, N, C, spatial, stride, dtype, missing=0.3)
        run_and_check(buffer, at, fill, (N, C) + spatial, stride, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2), (1, 2, 2), (3, 3, 3), (2, 1, 3)])
@pytest.mark.parametrize("width", [1, 2, 5, 8, 17])
def test_every_phase_present(width, stride, dtype):
    """No fill: every position copied (stride 1: whole rows; width 2: pairs of phases)."""
    rng = np.random.default_rng(width + 7 * sum(stride))
    spatial = (max(stride[0], 3), max(stride[1], 4), width)
    buffer, at, fill = build(rng, 2, 3, spatial, stride, dtype, missing=0.0)
    assert (at[:, 0] >= 0).all()
    run_and_check(buffer, at, fill, (2, 3) + spatial, stride, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2), (1, 3, 2)])
def test_every_phase_filled(stride, dtype):
    rng = np.random.default_rng(3)
    buffer, at, fill = build(rng, 2, 4, (4, 5, 6), stride, dtype, missing=1.0)
    assert (at[:, 0] == -1).all()
    run_and_check(buffer, at, fill, (2, 4, 4, 5, 6), stride, dtype, rng)
    big, out, _ = slab((2, 4, 4, 5, 6), dtype, rng)
    interleave_phases(buffer, out, stride, at, fill, 2)
    assert (out == fill.reshape(1, 4, 1, 1, 1)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("present", [(True, False), (False, True)])
def test_width_stride_two_with_one_phase(present, dtype):
    """Stride 2 along W with one of the two phases filled (the pair path must not apply)."""
    rng = np.random.default_rng(int(present[0]))
    stride = (1, 2, 2)
    for width in (1, 2, 3, 6, 7):
        spatial = (2, 3, width)
        buffer, at, fill = build(rng, 1, 2, spatial, stride, dtype, missing=0.0)
        for p in range(len(at)):
            if not present[p % 2]:
                at[p] = (-1, 0, 0, 0, 0)
        run_and_check(buffer, at, fill, (1, 2) + spatial, stride, dtype, rng, threads=[1, 3])


def test_many_items_many_threads():
    """More (n, c, z) planes than threads and the other way round."""
    rng = np.random.default_rng(11)
    for shape, stride in [((3, 5, 9, 6, 11), (2, 3, 2)), ((1, 1, 2, 5, 9), (2, 1, 3))]:
        buffer, at, fill = build(rng, shape[0], shape[1], shape[2:], stride, np.float32, 0.2)
        run_and_check(buffer, at, fill, shape, stride, np.float32, rng, threads=[1, 4, 7, 16])


def test_out_planes_must_be_c_contiguous():
    rng = np.random.default_rng(0)
    stride = (2, 2, 2)
    buffer, at, fill = build(rng, 1, 2, (4, 4, 4), stride, np.float64, 0.0)
    wide = np.zeros((1, 2, 4, 4, 8))
    with pytest.raises(ValueError, match="planes must be C-contiguous"):
        interleave_phases(buffer, wide[..., ::2], stride, at, fill, 1)
    swapped = np.zeros((1, 2, 4, 4, 4)).swapaxes(3, 4)
    with pytest.raises(ValueError, match="planes must be C-contiguous"):
        interleave_phases(buffer, swapped, stride, at, fill, 1)
    # an (N, C, D) that is not contiguous is fine: channels sliced out of a bigger array
    big = np.full((1, 4, 4, 4, 4), SENTINEL)
    out = big[:, ::2]
    interleave_phases(buffer, out, stride, at, fill, 2)
    np.testing.assert_array_equal(out, expected(buffer, at, fill, out.shape, stride))
    assert (big[:, 1::2] == SENTINEL).all()
