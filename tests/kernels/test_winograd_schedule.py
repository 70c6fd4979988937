"""The Winograd engine's two schedules (winograd.pyx): tile blocks, every stage in one work
item, and the whole-call schedule, each stage over all tiles. They must give the same bits
for any thread count; whole_schedule picks the second for large transformed weights."""
import numpy as np
import pytest

from conv3d_cpu import conv3d
from conv3d_cpu._native import winograd as W
from conv3d_cpu._native.constants import PADDING_MODES
from reference import conv3d_ref

# (input shape, out channels, kernel, tile m, groups, padding mode): partial edge tiles,
# batches, groups, every kernel shape and tile, non-zero padding modes.
LAYERS = [
    ((2, 16, 9, 10, 11), 24, (3, 3, 3), (2, 2, 2), 1, "zeros"),
    ((1, 8, 13, 7, 9), 40, (3, 3, 3), (4, 4, 4), 1, "zeros"),
    ((2, 12, 6, 7, 5), 12, (3, 3, 3), (2, 2, 2), 3, "reflect"),
    ((1, 20, 4, 9, 10), 36, (1, 3, 3), (1, 4, 4), 1, "replicate"),
    ((1, 18, 11, 5, 6), 20, (3, 1, 1), (4, 1, 1), 2, "circular"),
    ((1, 6, 7, 8, 9), 10, (5, 5, 5), (2, 2, 2), 1, "zeros"),
    ((2, 8, 7, 6, 5), 8, (2, 2, 2), (3, 3, 3), 1, "zeros"),
]


def run(x, U, b, out_channels, kernel, m, groups, mode, threads, schedule):
    # 'same' padding for odd kernels, 'valid' for the even one
    pad = [k // 2 if k % 2 else 0 for k in kernel]
    spatial = tuple(s + 2 * p - k + 1 for s, p, k in zip(x.shape[2:], pad, kernel))
    out = np.full((x.shape[0], out_channels) + spatial, np.nan, x.dtype)
    finite = W.winograd(x, U, b, out, pad, m, kernel, groups, threads,
                        PADDING_MODES.index(mode), schedule)
    return out, finite, pad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xshape, cout, kernel, m, groups, mode", LAYERS)
def test_schedules_give_the_same_bits(xshape, cout, kernel, m, groups, mode, dtype):
    rng = np.random.default_rng(sum(xshape) + cout)
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal((cout, xshape[1] // groups) + kernel).astype(dtype) / 10
    b = rng.standard_normal(cout).astype(dtype)
    U = W.transform_weights(w, groups, m, 1)
    ref, finite, pad = run(x, U, b, cout, kernel, m, groups, mode, 1, "blocks")
    assert finite
    if mode == "zeros":
        np.testing.assert_allclose(ref, conv3d_ref(x, w, b, padding=tuple(pad), groups=groups),
                                   rtol=1e-3, atol=1e-3 if dtype == np.float32 else 1e-9)
    for threads in (1, 2, 3):
        for schedule in ("blocks", "whole"):
            y, finite, _ = run(x, U, b, cout, kernel, m, groups, mode, threads, schedule)
            assert finite
            np.testing.assert_array_equal(y.view(np.uint8), ref.view(np.uint8),
                                          err_msg=f"{schedule}, {threads} threads")


@pytest.mark.parametrize("schedule", ["blocks", "whole"])
def test_schedules_report_non_finite_outputs(schedule):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 6, 6, 6)).astype(np.float32)
    x[0, 3, 2, 2, 2] = np.nan
    U = W.transform_weights(rng.standard_normal((8, 8, 3, 3, 3)).astype(np.float32), 1,
                            (2, 2, 2), 1)
    y, finite, _ = run(x, U, np.zeros(8, np.float32), 8, (3, 3, 3), (2, 2, 2), 1, "zeros", 2,
                       schedule)
    assert not finite and np.isnan(y).any() and np.isfinite(y).any()


def test_bad_schedule_is_named():
    x = np.zeros((1, 4, 4, 4, 4), np.float32)
    U = W.transform_weights(np.zeros((4, 4, 3, 3, 3), np.float32), 1, (2, 2, 2), 1)
    with pytest.raises(ValueError, match="schedule must be 'blocks', 'whole' or None, got 'x'"):
        W.winograd(x, U, np.zeros(4, np.float32), np.empty_like(x), [1, 1, 1], (2, 2, 2),
                   (3, 3, 3), 1, 1, 0, "x")


MiB = 1 << 20


@pytest.mark.parametrize("ntiles, tb, a3, cpg, opg, groups, threads, io, expected", [
    (216, 12, 64, 512, 256, 1, 2, 5 * MiB, True),    # 32 MiB of U, 18 blocks
    (8, 8, 216, 256, 256, 1, 2, MiB, True),          # one block: the other thread idles
    (8, 8, 216, 256, 256, 1, 1, MiB, False),         # one block on one thread: nothing gained
    (64, 12, 216, 128, 128, 1, 2, MiB, False),       # 13.5 MiB of U: in the last-level cache
    (1728, 12, 64, 256, 256, 1, 2, 28 * MiB, False),  # V and M 216 MiB, U 16 MiB: too large
])
def test_whole_schedule_decides_by_bytes(ntiles, tb, a3, cpg, opg, groups, threads, io,
                                         expected):
    assert W.whole_schedule(ntiles, tb, a3, cpg, opg, groups, 4, threads, io) is expected


def test_a_layer_the_whole_schedule_runs_matches_the_reference():
    # 256 -> 256 F(2^3, 3^3): U is 64 * 256 * 256 float32, 16 MiB (WHOLE_MIN_U)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 256, 5, 6, 7)).astype(np.float32)
    w = (rng.standard_normal((256, 256, 3, 3, 3)) / 40).astype(np.float32)
    assert W.planned_schedule(x.shape, x.shape, (2, 2, 2), (3, 3, 3), 1, 2) == "whole"
    y = conv3d(x, w, padding=1, algorithm="winograd_f2", num_threads=2)
    np.testing.assert_allclose(y, conv3d_ref(x, w, padding=1), rtol=1e-4, atol=2e-4)
