"""The cost model behind 'auto' (conv3d_cpu/_core/algorithms.py)."""
import itertools

import numpy as np
import pytest

from conv3d_cpu._core import algorithms, cost_rates
from conv3d_cpu._core.forward import choose_tile
from conv3d_cpu._native import isa

# Every kernel table and dtype the stored calibration prices: its rates must give these
# choices too.
RATES = sorted(cost_rates.RATES)

LAYERS = [  # (C, O, spatial)
    (512, 512, (2, 7, 7)), (320, 320, (3, 3, 3)), (256, 256, (6, 6, 6)), (128, 128, (8, 28, 28)),
    (32, 32, (96, 96, 96)), (1, 32, (64, 64, 64)), (64, 64, (16, 16, 16)),
]


def choose(rates, c, o, sp, n=1):
    isa, dtype = rates
    return algorithms.choose("auto", (n, c) + sp, (o, c, 3, 3, 3), (1, 1, 1), (1, 1, 1), 1, sp,
                             kernels=(isa, isa), dtype=dtype)


@pytest.mark.parametrize("rates", RATES)
@pytest.mark.parametrize("layer", LAYERS)
def test_choice_does_not_depend_on_the_batch(layer, rates):
    # so that m(x)[1:] == m(x[1:]) bitwise, as in PyTorch
    c, o, sp = layer
    choices = {choose(rates, c, o, sp, n) for n in (1, 2, 3, 8, 64)}
    assert len(choices) == 1, choices


@pytest.mark.parametrize("rates", RATES)
def test_few_tiles_with_many_channels_avoid_the_largest_transform(rates):
    # U of F(4^3) for 512 -> 512 is 216 MiB, read on every call for 4 tiles: F(2^3) or direct.
    assert choose(rates, 512, 512, (2, 7, 7)) != (4, 4, 4)
    # (320 -> 320 at 3^3: direct 2.9 ms, F(2^3) 3.4 at 2 threads; 3.1 and 2.6 at one)
    assert choose(rates, 320, 320, (3, 3, 3)) in (None, (2, 2, 2))
    # while large volumes keep F(4^3)
    assert choose(rates, 32, 32, (96, 96, 96)) == (4, 4, 4)


@pytest.mark.skipif("avx512_zmm" not in isa.available_isas(), reason="no AVX-512 here")
def test_a_layer_is_priced_by_the_tables_that_run_it(monkeypatch):
    # Under avx512_zmm, groups narrower than its vector (16 float, 8 double lanes) run
    # avx512's kernels; the direct engine by output channels per group, Winograd by the
    # fewer of input and output channels.
    seen = []
    monkeypatch.setattr(algorithms, "choose", lambda *a, **k: seen.append(k["kernels"]))
    before = isa.current_isa()
    isa.use_isa("avx512_zmm")
    try:
        for shape in [(32, 32), (64, 8), (16, 4), (8, 16)]:
            choose_tile("auto", (1, shape[1]) + (8,) * 3, shape + (3, 3, 3), (1, 1, 1),
                        (1, 1, 1), 1, (8, 8, 8), np.float32)
        choose_tile("auto", (1, 8, 8, 8, 8), (8, 8, 3, 3, 3), (1, 1, 1), (1, 1, 1), 1,
                    (8, 8, 8), np.float64)
    finally:
        isa.use_isa(before)
    zmm, ymm = "avx512_zmm", "avx512"
    assert seen == [(zmm, zmm), (zmm, ymm), (zmm, ymm), (ymm, ymm), (zmm, zmm)]



def test_costs_grow_with_the_work():
    for m, (a, b) in itertools.product((None, 2, 4), [((8, 8, 8), (16, 16, 16))]):
        small = algorithms.estimate_seconds(m, 1, 32, 32, 1, a, (3, 3, 3))
        large = algorithms.estimate_seconds(m, 1, 32, 32, 1, b, (3, 3, 3))
        assert 0 < small < large


def test_direct_prices_the_positions_it_computes_and_its_weights():
    # a 256 -> 256 5x5x5 layer at 4^3 (V-Net's bottom): rows of 4 computed 8 wide, and 32 MiB
    # of weights repacked per call; F(2^3, 5^3) was 2.3x faster (docs/performance.md)
    kernel, sp = (5, 5, 5), (4, 4, 4)
    row = algorithms.flat_row_width(sp, kernel, (1, 1, 1), (1, 1, 1), tile_positions=12)
    assert row == 8
    assert algorithms.flat_row_width((4, 4, 32), kernel, (1, 1, 1), (1, 1, 1), 12) is None
    assert algorithms.flat_row_width(sp, kernel, (1, 2, 2), (1, 1, 1), 12) is None
    plain = algorithms.direct_flops(1, 256, 256, 1, sp, kernel)
    assert algorithms.direct_flops(1, 256, 256, 1, sp, kernel, row) == 2 * plain
    t = algorithms.estimate_seconds(None, 1, 256, 256, 1, sp, kernel, row_width=row)
    repack = algorithms.direct_weight_seconds(256, 256, 1, kernel, 4)
    assert repack == pytest.approx(2 * 4 * 256 * 256 * 125 / algorithms._U_BANDWIDTH)
    assert t == pytest.approx(2 * plain / cost_rates.RATES[algorithms.DEFAULT_RATES]["direct"]
                              + repack)
