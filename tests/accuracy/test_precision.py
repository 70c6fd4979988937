"""The float32 precision switch (conv3d_cpu/_core/precision.py) and what 'auto' does under it.

Documented contract (README "Precision", precision.py): ``set_float32_precision('high' |
'highest')`` sets a process-wide value ('high' by default); ``float32_precision(value)``
overrides it for the current thread / async context, restored on exit (also on an exception),
nestable; ``get_float32_precision()`` is the value in effect. Under 'highest', float32
``algorithm='auto'`` chooses only direct convolution and Winograd F(2^3, 3^3) (never F(4^3, 3^3),
never Winograd for 5x5x5), whose results stay within PyTorch's float32 tolerance
(``torch.testing.assert_close``: rtol 1.3e-6, atol 1e-5) of a float64 reference. Explicit
algorithms and float64 are not affected.
"""
import asyncio
import sys
import threading

import numpy as np
import pytest

import conv3d_cpu
from conv3d_cpu import Conv3d, conv3d, float32_precision, get_float32_precision
from conv3d_cpu import set_float32_precision
from conv3d_cpu._core import algorithms, cost_rates, precision
from conv3d_cpu._native.constants import winograd_tile

RTOL, ATOL = 1.3e-6, 1e-5  # torch.testing.assert_close's float32 defaults


@pytest.fixture(autouse=True)
def _restore_global_precision():
    before = precision._global
    yield
    set_float32_precision(before)


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def test_exported():
    for name in ("set_float32_precision", "get_float32_precision", "float32_precision"):
        assert name in conv3d_cpu.__all__
        assert getattr(conv3d_cpu, name) is getattr(precision, name)


def test_default_is_high():
    assert precision.DEFAULT == "high"
    assert get_float32_precision() == "high"


def test_set_and_get():
    set_float32_precision("highest")
    assert get_float32_precision() == "highest"
    set_float32_precision("high")
    assert get_float32_precision() == "high"


def test_show_config_reports_the_precision_in_effect(capsys):
    assert conv3d_cpu.show_config(mode="dicts")["float32_precision"] == "high"
    with float32_precision("highest"):
        assert conv3d_cpu.show_config(mode="dicts")["float32_precision"] == "highest"
        conv3d_cpu.show_config()
    assert "float32 precision: highest" in capsys.readouterr().out


def test_context_manager_restores_on_exit():
    with float32_precision("highest") as value:
        assert value == "highest"
        assert get_float32_precision() == "highest"
    assert get_float32_precision() == "high"


def test_context_manager_restores_on_exception():
    with pytest.raises(KeyError):
        with float32_precision("highest"):
            raise KeyError("boom")
    assert get_float32_precision() == "high"


def test_context_managers_nest():
    with float32_precision("highest"):
        with float32_precision("high"):
            assert get_float32_precision() == "high"
            with float32_precision("highest"):
                assert get_float32_precision() == "highest"
            assert get_float32_precision() == "high"
        assert get_float32_precision() == "highest"
    assert get_float32_precision() == "high"


def test_context_manager_overrides_the_global_value_and_leaves_it_alone():
    set_float32_precision("highest")
    with float32_precision("high"):
        assert get_float32_precision() == "high"
        set_float32_precision("highest")  # the override still wins inside the block
        assert get_float32_precision() == "high"
    assert get_float32_precision() == "highest"


def test_context_manager_is_per_thread():
    # Two threads at once, one inside float32_precision('highest'), one not: each sees its own.
    set_float32_precision("high")
    barrier = threading.Barrier(2, timeout=10)
    seen = {}

    def inside():
        with float32_precision("highest"):
            barrier.wait()  # both threads are now running, this one inside its block
            seen["inside"] = get_float32_precision()
            barrier.wait()
        seen["inside, after"] = get_float32_precision()

    def outside():
        barrier.wait()
        seen["outside"] = get_float32_precision()
        barrier.wait()

    threads = [threading.Thread(target=inside), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    with float32_precision("highest"):  # the main thread's override reaches neither
        for t in threads:
            t.join(10)
    assert seen == {"inside": "highest", "outside": "high", "inside, after": "high"}
    assert get_float32_precision() == "high"


def test_set_float32_precision_is_seen_by_other_threads():
    seen = []
    set_float32_precision("highest")
    t = threading.Thread(target=lambda: seen.append(get_float32_precision()))
    t.start()
    t.join(10)
    assert seen == ["highest"]


@pytest.mark.skipif(getattr(sys.flags, "thread_inherit_context", 0),
                    reason="threads inherit the caller's context on this Python")
def test_a_thread_started_inside_the_block_does_not_inherit_it():
    seen = []
    with float32_precision("highest"):
        t = threading.Thread(target=lambda: seen.append(get_float32_precision()))
        t.start()
        t.join(10)
    assert seen == ["high"]


def test_context_manager_is_per_async_task():
    async def task(value, started, other_started):
        with float32_precision(value):
            started.set()
            await other_started.wait()  # the other task runs, and sets its own, meanwhile
            return get_float32_precision()

    async def main():
        a, b = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(task("highest", a, b), task("high", b, a))

    assert asyncio.run(main()) == ["highest", "high"]
    assert get_float32_precision() == "high"


@pytest.mark.parametrize("value", ["medium", "HIGH", "Highest", "", " high", None, 1, b"high",
                                   ["high"]])
def test_invalid_values_raise_naming_the_argument(value):
    match = r"precision must be one of 'highest', 'high', got "
    with pytest.raises(ValueError, match=match):
        set_float32_precision(value)
    assert get_float32_precision() == "high"
    with pytest.raises(ValueError, match=match):
        float32_precision(value)  # raised by the call, before any block is entered
    assert get_float32_precision() == "high"


# ---------------------------------------------------------------------------------------------
# What 'auto' chooses
# ---------------------------------------------------------------------------------------------

KERNELS = [(3, 3, 3), (1, 3, 3), (3, 1, 1), (5, 5, 5)]

# The choices below are those of these rates (the 2026-11 constants) for every kernel table:
# what 'high' and 'highest' pick on a layer must not move with a recalibration of the cost
# model for the machine running the tests (bench/calibrate.py).
# float64 at half float32's rates; the 1-D tiles' rates are the 3-D ones scaled by the points,
# (m + 2) / (m + 2)^3, as the constants priced them.
PINNED_RATES = {"float32": dict(direct=95e9, gemm=90e9, transform_in={2: 32e-9, 4: 150e-9},
                                transform_out={2: 24e-9, 4: 90e-9},
                                transform_in_1d={2: 2e-9, 4: 150e-9 / 36},
                                transform_out_1d={2: 1.5e-9, 4: 2.5e-9}),
                "float64": dict(direct=47e9, gemm=45e9, transform_in={2: 64e-9, 4: 300e-9},
                                transform_out={2: 48e-9, 4: 180e-9},
                                transform_in_1d={2: 4e-9, 4: 300e-9 / 36},
                                transform_out_1d={2: 3e-9, 4: 5e-9})}


@pytest.fixture(autouse=True)
def pinned_rates(monkeypatch):
    monkeypatch.setattr(cost_rates, "RATES", {key: PINNED_RATES[key[1]]
                                              for key in cost_rates.RATES})
    algorithms.choose.cache_clear()
    yield
    algorithms.choose.cache_clear()


def choose(algorithm, c, o, kernel, size, precision_, n=1):
    sp = (size,) * 3
    return algorithms.choose(algorithm, (n, c) + sp, (o, c) + kernel, (1, 1, 1), (1, 1, 1), 1,
                             sp, precision_)


def test_highest_auto_never_picks_f4_or_winograd_for_5x5x5():
    picked = set()
    for kernel in KERNELS:
        for c in (1, 4, 16, 32, 64, 128, 256, 512):
            for size in (4, 6, 8, 12, 16, 32, 64):
                for n in (1, 8):
                    high = choose("auto", c, c, kernel, size, "high", n)
                    highest = choose("auto", c, c, kernel, size, "highest", n)
                    picked.add((kernel, high and max(high)))
                    if kernel == (5, 5, 5):
                        assert highest is None, (kernel, c, size)
                    else:
                        assert highest in (None, winograd_tile(2, kernel)), (kernel, c, size)
                    if high is None or (max(high) == 2 and kernel != (5, 5, 5)):
                        # what 'high' picks is allowed under 'highest' too: kept
                        assert highest == high, (kernel, c, size)
    # the grid does hold layers where 'high' picks what 'highest' forbids
    for kernel in KERNELS[:3]:
        assert (kernel, 4) in picked
    assert ((5, 5, 5), 2) in picked


def test_precision_defaults_to_high_in_choose():
    for kernel in KERNELS:
        sp = (32,) * 3
        args = ("auto", (1, 64) + sp, (64, 64) + kernel, (1, 1, 1), (1, 1, 1), 1, sp)
        assert algorithms.choose(*args) == algorithms.choose(*args, "high")


@pytest.mark.parametrize("kernel", KERNELS)
def test_explicit_algorithms_are_honoured_under_highest(kernel):
    tiles = {"direct": None, "winograd_f2": winograd_tile(2, kernel)}
    if kernel != (5, 5, 5):
        tiles["winograd_f4"] = winograd_tile(4, kernel)
    for algorithm, tile in tiles.items():
        assert choose(algorithm, 64, 64, kernel, 32, "highest") == tile
    assert (choose("winograd", 64, 64, kernel, 32, "highest")
            == choose("winograd", 64, 64, kernel, 32, "high"))


# Layers where 'high' picks F(4^3) (or F(2^3, 5^3)) and 'highest' direct or F(2^3):
# (input channels, output channels, kernel, size, padding, what 'highest' picks).
SWITCHED = [
    (8, 8, (3, 3, 3), 8, 1, "direct"),
    (32, 32, (3, 3, 3), 12, 1, "winograd_f2"),
    (16, 16, (1, 3, 3), 8, (0, 1, 1), "direct"),
    (64, 64, (1, 3, 3), 8, (0, 1, 1), "winograd_f2"),
    (128, 128, (3, 1, 1), 8, (1, 0, 0), "winograd_f2"),
    (16, 16, (5, 5, 5), 8, 2, "direct"),
]
TILE_OF = {"direct": None, "winograd_f2": 2, "winograd_f4": 4}


def layer(c, o, kernel, size, seed=0, dtype=np.float32):
    """x ~ N(0, 1); weight and bias drawn as PyTorch's default init (Conv3d's rng)."""
    m = Conv3d(c, o, kernel, rng=seed, dtype=dtype)
    x = np.random.default_rng(seed).standard_normal((1, c) + (size,) * 3).astype(dtype)
    return x, m.weight, m.bias


@pytest.mark.parametrize("c, o, kernel, size, padding, expected", SWITCHED)
def test_choices_on_the_switched_layers(c, o, kernel, size, padding, expected):
    high = choose("auto", c, o, kernel, size, "high")
    assert max(high) == (2 if kernel == (5, 5, 5) else 4)
    highest = choose("auto", c, o, kernel, size, "highest")
    assert highest == (None if expected == "direct" else winograd_tile(2, kernel))


@pytest.mark.parametrize("c, o, kernel, size, padding, expected", SWITCHED)
def test_highest_auto_is_bitwise_the_accurate_algorithm(c, o, kernel, size, padding, expected):
    x, w, b = layer(c, o, kernel, size)
    fast = "winograd_f2" if kernel == (5, 5, 5) else "winograd_f4"
    y_high = conv3d(x, w, b, padding=padding)
    np.testing.assert_array_equal(y_high, conv3d(x, w, b, padding=padding, algorithm=fast))
    with float32_precision("highest"):
        y = conv3d(x, w, b, padding=padding)
        # explicit algorithms are still taken as asked
        np.testing.assert_array_equal(conv3d(x, w, b, padding=padding, algorithm=fast), y_high)
    np.testing.assert_array_equal(y, conv3d(x, w, b, padding=padding, algorithm=expected))
    assert not np.array_equal(y, y_high)  # (the fast algorithm's rounding differs)
    # the module reads the precision in effect at each call, too
    m = Conv3d(c, o, kernel, padding=padding)
    m.load_state_dict({"weight": w, "bias": b})
    np.testing.assert_array_equal(m(x), y_high)
    set_float32_precision("highest")
    np.testing.assert_array_equal(m(x), y)
    np.testing.assert_array_equal(conv3d(x, w, b, padding=padding), y)


def test_threads_under_different_precisions_compute_at_once():
    c, o, kernel, size, padding, expected = SWITCHED[1]
    x, w, b = layer(c, o, kernel, size)
    want = {"high": conv3d(x, w, b, padding=padding, algorithm="winograd_f4"),
            "highest": conv3d(x, w, b, padding=padding, algorithm=expected)}
    barrier = threading.Barrier(2, timeout=10)
    got = {}

    def run(value):
        with float32_precision(value):
            barrier.wait()
            got[value] = [conv3d(x, w, b, padding=padding, num_threads=1) for _ in range(5)]

    threads = [threading.Thread(target=run, args=(v,)) for v in want]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for value, ys in got.items():
        for y in ys:
            np.testing.assert_array_equal(y, want[value])
    assert set(got) == set(want)


@pytest.mark.parametrize("c, o, kernel, size, padding, expected", SWITCHED[:2] + SWITCHED[-1:])
def test_float64_is_not_affected(c, o, kernel, size, padding, expected):
    x, w, b = layer(c, o, kernel, size, dtype=np.float64)
    y = conv3d(x, w, b, padding=padding)
    with float32_precision("highest"):
        np.testing.assert_array_equal(conv3d(x, w, b, padding=padding), y)
    fast = "winograd_f2" if kernel == (5, 5, 5) else "winograd_f4"
    np.testing.assert_array_equal(y, conv3d(x, w, b, padding=padding, algorithm=fast))


# ---------------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------------

# Under 'highest', float32 'auto' against a float64 reference, PyTorch's tolerance; the
# switched layers (where 'high' picks F4 or F(2, 5)) and larger ones.
ACCURATE = [(c, o, k, s, p) for c, o, k, s, p, _ in SWITCHED] + [
    (256, 256, (3, 3, 3), 12, 1),   # 'high': F4, 'highest': F2
    (512, 512, (3, 3, 3), 8, 1),    # F2 in both
    (256, 256, (1, 3, 3), 8, (0, 1, 1)),
    (128, 128, (5, 5, 5), 6, 2),    # 'high': F(2, 5), 'highest': direct
]


def reference(x, w, b, padding):
    """Float64 direct convolution of the same values (an independent float64 computation;
    tests/accuracy/test_reference.py checks it against tests/reference.py)."""
    f64 = [a.astype(np.float64) for a in (x, w, b)]
    return conv3d(*f64, padding=padding, algorithm="direct")


@pytest.mark.parametrize("c, o, kernel, size, padding", ACCURATE)
def test_highest_meets_pytorchs_float32_tolerance(c, o, kernel, size, padding):
    x, w, b = layer(c, o, kernel, size, seed=c + size)
    with float32_precision("highest"):
        y = conv3d(x, w, b, padding=padding)
    np.testing.assert_allclose(y, reference(x, w, b, padding), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("c, o, kernel, size, padding", ACCURATE[:2] + ACCURATE[-3:])
def test_highest_passes_torch_assert_close(c, o, kernel, size, padding):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x, w, b = layer(c, o, kernel, size, seed=c + size)
    with float32_precision("highest"):
        y = conv3d(x, w, b, padding=padding)
    f64 = [torch.from_numpy(a.astype(np.float64)) for a in (x, w, b)]
    expected = F.conv3d(*f64, padding=padding).float()  # PyTorch's float64 as the reference
    torch.testing.assert_close(torch.from_numpy(y), expected)


# Under 'high' (and with explicit F4 / F(2, 5)): the project's Winograd bound, 1e-4 x max|y|.
@pytest.mark.parametrize("c, o, kernel, size, padding", ACCURATE)
def test_high_keeps_winograd_within_1e_4_of_max_y(c, o, kernel, size, padding):
    x, w, b = layer(c, o, kernel, size, seed=c + size)
    expected = reference(x, w, b, padding)
    fast = "winograd_f2" if kernel == (5, 5, 5) else "winograd_f4"
    for algorithm in ("auto", fast):
        y = conv3d(x, w, b, padding=padding, algorithm=algorithm)
        assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max(), algorithm


# Direct convolution sums its products in runs of SUM_TERMS: at large fan-ins its float32
# error stays within PyTorch's tolerance (one run of 512 x 27 products reached 1.01x of it,
# 256 x 125 1.3x).
@pytest.mark.parametrize("c, kernel, size, padding", [
    (512, (3, 3, 3), 8, 1),
    (256, (5, 5, 5), 8, 2),
    (1024, (1, 1, 1), 8, 0),  # pointwise path
])
def test_direct_long_sums_within_torch_tolerance(c, kernel, size, padding):
    x, w, b = layer(c, 32, kernel, size)
    y = conv3d(x, w, b, padding=padding, algorithm="direct")
    np.testing.assert_allclose(y, reference(x, w, b, padding), rtol=1.3e-6, atol=1e-5)


def test_direct_long_sums_few_output_channels():
    # fewer output channels than a vector: the row kernel's path, 512 x 27 products
    x, w, b = layer(512, 3, (3, 3, 3), 8)
    y = conv3d(x, w, b, padding=1, algorithm="direct")
    np.testing.assert_allclose(y, reference(x, w, b, 1), rtol=1.3e-6, atol=1e-5)


def test_high_takes_f4_only_up_to_its_fan_in_cap():
    from conv3d_cpu._core.algorithms import F4_MAX_FAN_IN, choose
    for c in (128, 256, 320, 512):
        m = choose("auto", (1, c, 32, 32, 32), (c, c, 3, 3, 3), (1, 1, 1), (1, 1, 1), 1,
                   (32, 32, 32), "high")
        assert (m == (4, 4, 4)) == (c * 27 <= F4_MAX_FAN_IN), (c, m)
    # an explicit F4 is honoured
    assert choose("winograd_f4", (1, 512, 32, 32, 32), (512, 512, 3, 3, 3), (1, 1, 1),
                  (1, 1, 1), 1, (32, 32, 32), "high") == (4, 4, 4)


def test_2x2x2_tiles_under_each_precision():
    # F(3, 2) is accurate ('highest' may pick it); F(5, 2) is not, and under 'high' only up to
    # its fan-in cap.
    from conv3d_cpu._core.algorithms import MAX_FAN_IN
    kernel, picked = (2, 2, 2), set()
    for c in (1, 4, 16, 64, 128, 256, 512):
        for size in (4, 8, 16, 32, 64):
            high = choose("auto", c, c, kernel, size, "high")
            highest = choose("auto", c, c, kernel, size, "highest")
            picked.add(high and max(high))
            assert highest in (None, (3, 3, 3)), (c, size, highest)
            if high == (5, 5, 5):
                assert c * 8 <= MAX_FAN_IN[5], (c, size)
            else:
                assert highest == high, (c, size)
    assert 5 in picked and 3 in picked


def test_2x2x2_highest_within_torch_tolerance():
    x, w, b = layer(256, 64, (2, 2, 2), 10)
    with float32_precision("highest"):
        y = conv3d(x, w, b, padding=1, algorithm="auto")
    assert choose("auto", 256, 64, (2, 2, 2), 11, "highest") == (3, 3, 3)
    np.testing.assert_allclose(y, reference(x, w, b, 1), rtol=1.3e-6, atol=1e-5)
