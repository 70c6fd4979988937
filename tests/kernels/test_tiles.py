"""Kernel edge cases: register-tile remainders and every compiled instruction set.

The direct kernel (forced with algorithm='direct'; Winograd is in accuracy/test_winograd.py,
each micro-kernel alone in test_microkernels.py) tiles output channels by SIMD vectors and
output columns by a fixed number of positions, and it is built once per ISA (chosen at
import).  These tests sweep
channel counts and row lengths around the tile sizes of every ISA, and run under each ISA
this CPU supports, so a CI machine with a different CPU cannot hide a broken variant.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conv3d_cpu import Conv3d, conv3d
from isa_helpers import HAS_ISA_SWITCH, ISAS, current_isa, isa_selected
from reference import check_conv

DTYPES = [np.float32, np.float64]


def test_isa_inventory():
    if not HAS_ISA_SWITCH:
        pytest.skip("this build has no per-ISA dispatch")
    assert "baseline" in ISAS  # the portable variant must always be present
    assert current_isa() in ISAS


# Output channels per group around 1, 2 and 4 vectors of 4/8/16 lanes (f64/f32 x AVX2/AVX-512).
COUT_PER_GROUP = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 48, 49, 64, 65]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cout", COUT_PER_GROUP)
def test_channel_tile_remainders(cout, dtype, isa):
    rng = np.random.default_rng(cout)
    x = rng.standard_normal((2, 3, 3, 4, 23)).astype(dtype)
    w = rng.standard_normal((cout, 3, 2, 2, 3)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    with isa_selected(isa):
        y = conv3d(x, w, b, padding=(1, 0, 1), algorithm="direct")
        y_s = conv3d(x, w, b, stride=(1, 1, 2), padding=(0, 1, 2), dilation=(1, 1, 2),
                     algorithm="direct")
    check_conv(y, x, w, b, 1, (1, 0, 1))
    check_conv(y_s, x, w, b, (1, 1, 2), (0, 1, 2), (1, 1, 2))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 2, 3, 5, 6, 7, 11, 12, 13, 16, 17, 25, 33, 40])
@pytest.mark.parametrize("cout", [2, 16, 33])
@pytest.mark.parametrize("stride_w", [1, 2, 3])
def test_row_length_remainders(stride_w, cout, width, dtype, isa):
    rng = np.random.default_rng(width * 100 + cout)
    x = rng.standard_normal((1, 2, 2, 3, width)).astype(dtype)
    w = rng.standard_normal((cout, 2, 1, 2, 3)).astype(dtype)
    with isa_selected(isa):
        y = conv3d(x, w, None, stride=(1, 1, stride_w), padding=(0, 1, 1), algorithm="direct")
    check_conv(y, x, w, None, (1, 1, stride_w), (0, 1, 1))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "cin, cout, groups",
    [(4, 4, 4), (8, 16, 8), (6, 96, 3), (32, 32, 32), (3, 51, 3), (34, 34, 2)],
)
def test_grouped_tiles(cin, cout, groups, dtype, isa):
    rng = np.random.default_rng(cin * cout)
    x = rng.standard_normal((2, cin, 3, 5, 14)).astype(dtype)
    w = rng.standard_normal((cout, cin // groups, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    with isa_selected(isa):
        y = conv3d(x, w, b, padding=1, groups=groups, algorithm="direct")
        y1 = conv3d(x, w, b, padding=1, groups=groups, num_threads=1, algorithm="direct")
    np.testing.assert_array_equal(y, y1)
    check_conv(y, x, w, b, 1, 1, 1, groups)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_module_under_each_isa(mode, isa):
    rng = np.random.default_rng(7)
    m = Conv3d(4, 20, (2, 3, 4), padding="same", dilation=(1, 2, 1), padding_mode=mode,
               dtype=np.float32, rng=7)
    x = rng.standard_normal((2, 4, 5, 6, 19)).astype(np.float32)
    with isa_selected(isa):
        y = m(np.asfortranarray(x))
        yu = m(x[1])
    check_conv(y, x, m.weight, m.bias, 1, "same", (1, 2, 1), 1, mode)
    np.testing.assert_array_equal(yu, y[1])


@st.composite
def tile_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 4))
    og = draw(st.integers(1, 40))
    k = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5)))
    s = (1, draw(st.integers(1, 2)), draw(st.integers(1, 4)))
    d = (1, draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 1)), draw(st.integers(0, 2)), draw(st.integers(0, 4)))
    size = [max(1, di * (ki - 1) + 1 - 2 * pi) + draw(st.integers(0, extra))
            for ki, di, pi, extra in zip(k, d, p, (1, 3, 40))]
    return dict(
        x=(draw(st.integers(1, 2)), cg * groups) + tuple(size), w=(og * groups, cg) + k,
        stride=s, padding=p, dilation=d, groups=groups, bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=40, deadline=None)
@given(tile_configs())
def test_hypothesis_tiles_every_isa(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dtype = cfg["dtype"]
    x = rng.standard_normal(cfg["x"]).astype(dtype)
    w = rng.standard_normal(cfg["w"]).astype(dtype)
    b = rng.standard_normal(cfg["w"][0]).astype(dtype) if cfg["bias"] else None
    args = (cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    results = []
    for isa in ISAS:
        with isa_selected(isa):
            results.append(conv3d(x, w, b, *args, algorithm="direct"))
    for y in results:
        check_conv(y, x, w, b, *args)


def test_concurrent_calls_from_python_threads():
    # The kernels release the GIL; calls from several Python threads at once must not share
    # scratch buffers or state.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    jobs = []
    for i in range(8):
        dtype = DTYPES[i % 2]
        cin, cout = 2 + i % 3, 5 + 3 * i
        x = rng.standard_normal((2, cin, 4, 6, 9 + i)).astype(dtype)
        w = rng.standard_normal((cout, cin, 3, 2, 3)).astype(dtype)
        b = rng.standard_normal(cout).astype(dtype)
        kw = dict(padding=(1, i % 2, 2), stride=(1, 1, 1 + i % 3), num_threads=1 + i % 2)
        jobs.append((x, w, b, kw))
    sequential = [conv3d(x, w, b, **kw) for x, w, b, kw in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda j: conv3d(j[0], j[1], j[2], **j[3]), jobs * 2))
            for y_seq, y_par in zip(sequential * 2, parallel):
                np.testing.assert_array_equal(y_par, y_seq)


# The direct kernel keeps each thread's gathered input planes in a ring and orders its items
# along output depth (stepping by the dilation when that makes neighbours share planes): depth
# kernels and dilations where the ring depth is kD (gcd(kD, dD) = 1) or the taps' span, strides
# in D, padding in D, W padding (rows copied) or not (read in place), and both paths (blocked;
# rows for fewer output channels per group than a vector). Thread counts that split a run of
# items between threads and leave ranges to steal.
RING_CASES = [
    # (cin, cout, groups, kernel, stride, padding, dilation)
    (4, 16, 1, (3, 3, 3), 1, 1, 1),
    (4, 16, 1, (3, 3, 3), 1, (4, 1, 1), (2, 1, 1)),
    (4, 16, 1, (3, 3, 3), 1, (3, 1, 0), (3, 1, 1)),
    (4, 16, 1, (2, 3, 3), 1, (1, 1, 1), (2, 1, 1)),
    (4, 16, 1, (5, 1, 3), (2, 1, 1), (2, 0, 1), 1),
    (3, 8, 1, (4, 2, 2), (3, 1, 2), (2, 1, 0), (2, 1, 1)),
    (6, 6, 6, (3, 3, 3), 1, (2, 1, 1), (2, 1, 1)),
    (6, 6, 3, (3, 3, 3), (2, 1, 1), 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", RING_CASES)
def test_direct_plane_ring(case, dtype):
    cin, cout, groups, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(len(str(case)))
    x = rng.standard_normal((2, cin, 13, 6, 7)).astype(dtype)
    w = rng.standard_normal((cout, cin // groups) + kernel).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                algorithm="direct")
    ys = [conv3d(x, w, b, num_threads=t, **args) for t in (1, 2, 3, 5)]
    check_conv(ys[0], x, w, b, stride, padding, dilation, groups)
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])
