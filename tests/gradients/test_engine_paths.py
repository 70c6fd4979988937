"""The paths inside the engines that the small shapes of the other tests do not reach:
grad_weight's rows copied where channel planes collide in L1 (power-of-two volumes, more than
8 input channels), its kernel-column tiles (few input channels), its channel-block ranges
(many channels, ranges that follow the thread count), and the direct forward's flat tiles
(short rows: a grad_input of a deep layer is one). Each against the float64 reference and
bitwise across thread counts."""
import numpy as np
import pytest

import conv3d_cpu
import grad_reference as G
import reference as R

# (N, C, O, spatial, kernel, stride, padding, groups)
WEIGHT_PATHS = [
    (1, 16, 16, (16, 16, 16), (5, 5, 5), 1, 2, 1),     # rows copied (16 planes in one set)
    (2, 16, 16, (8, 8, 8), (3, 3, 3), 1, 1, 1),        # rows copied, 2 planes per block
    (1, 32, 16, (16, 16, 16), (3, 2, 3), 1, 1, 1),     # rows copied, 3 channel blocks
    (1, 24, 8, (8, 8, 8), (3, 3, 3), 2, 1, 1),         # rows copied, stride 2
    (1, 3, 20, (6, 12, 12), (3, 7, 7), (1, 2, 2), (1, 3, 3), 1),  # kernel-column tiles
    (2, 2, 6, (5, 6, 7), (3, 3, 3), 1, 1, 2),          # kernel-column tiles, groups
    (1, 96, 80, (4, 5, 6), (3, 3, 3), 1, 1, 1),        # channel-block ranges
]


@pytest.mark.parametrize("case", WEIGHT_PATHS, ids=[f"w{i}" for i in range(len(WEIGHT_PATHS))])
def test_grad_weight_paths(case):
    n, c, o, spatial, k, s, p, g = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c) + spatial)
    w = rng.standard_normal((o, c // g) + k)
    y = conv3d_cpu.conv3d(x, w, None, s, p, 1, g)
    gy = rng.standard_normal(y.shape)
    pads = R.padding_lo_hi(p, k)
    ref = G.conv3d_backward_ref(gy, x, w, R.triple(s), pads, (1, 1, 1), g)
    results = [conv3d_cpu.conv3d_backward(gy, x, w, s, p, 1, g, num_threads=t)
               for t in (1, 2, 3)]
    for got, want in zip(results[0], ref):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.tobytes() == b.tobytes()


# Forward layers with rows shorter than two tiles (flat tiles), with padding: rows of the
# H padding read as zeros, channel-block ranges, several row bands.
FLAT = [
    ((1, 8, 6, 6, 6), (16, 8, 3, 3, 3), 1),
    ((2, 64, 3, 7, 7), (128, 64, 3, 3, 3), 1),
    ((1, 8, 6, 7, 6), (40, 8, 3, 3, 3), 2),
    ((1, 5, 4, 5, 6), (70, 5, 1, 3, 3), (0, 1, 1)),
    ((1, 6, 3, 9, 20), (33, 6, 3, 3, 3), 1),
]


@pytest.mark.parametrize("case", FLAT, ids=[f"f{i}" for i in range(len(FLAT))])
def test_direct_flat_tiles(case):
    xs, ws, p = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    want = R.conv3d_ref(x, w, None, 1, p)
    ys = [conv3d_cpu.conv3d(x, w, None, 1, p, algorithm="direct", num_threads=t)
          for t in (1, 2, 3, 5)]
    np.testing.assert_allclose(ys[0], want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    for y in ys[1:]:
        assert y.tobytes() == ys[0].tobytes()


def test_size_arguments_name_themselves():
    x = np.zeros((1, 2, 5, 5, 5), np.float32)
    w = np.zeros((3, 2, 3, 3, 3), np.float32)
    gy = np.zeros((1, 3, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"input_size \(1, 2, 5, 5\) has 1 channels"):
        conv3d_cpu.grad.conv3d_input((1, 2, 5, 5), w, gy)
    with pytest.raises(ValueError, match=r"weight_size\[4\] must be a positive int, got 0"):
        conv3d_cpu.grad.conv3d_weight(x, (3, 2, 3, 3, 0), gy)
