"""bench/calibrate.py's fit and the rates file it writes (conv3d_cpu/_core/cost_rates.py)."""
import importlib.util
import math
import os
import runpy
import sys

import pytest

from conv3d_cpu._core import algorithms, cost_rates
from conv3d_cpu._native import isa
from conv3d_cpu._native.constants import winograd_points, winograd_tile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def calibrate():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        spec = importlib.util.spec_from_file_location(
            "calibrate", os.path.join(ROOT, "bench", "calibrate.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.join(ROOT, "bench"))
    return module


TRUE = dict(direct=120e9, gemm=200e9, transform_in={2: 40e-9, 4: 150e-9},
            transform_out={2: 12e-9, 4: 70e-9}, transform_in_1d={2: 6e-9, 4: 9e-9},
            transform_out_1d={2: 4e-9, 4: 7e-9})


def synthetic_rows(calibrate, dtype):
    """Times that the model with TRUE's rates predicts for the calibration layers."""
    itemsize = 8 if dtype == "float64" else 4
    rows = []
    for n, c, o, g, sp in calibrate.LAYERS:
        # rows shorter than two tiles of 12 are computed at the padded width (+2)
        row = sp[2] + 2 if sp[2] < 24 else None
        width = sp[2] + 2 if row else sp[2]
        flops = 2.0 * n * o * sp[0] * sp[1] * width * (c // g) * 27
        repack = 2.0 * itemsize * o * (c // g) * 27 / algorithms._U_BANDWIDTH
        rows.append(((n, c, o, g, sp), "direct", flops / TRUE["direct"] + repack, row,
                     (3, 3, 3)))
    for kernel, layers, suffix in [((3, 3, 3), calibrate.LAYERS, ""),
                                   ((3, 1, 1), calibrate.LAYERS_1D, "_1d")]:
        for n, c, o, g, sp in layers:
            for m in calibrate.TILES:
                ms = winograd_tile(m, kernel)
                tiles = n * math.prod(-(-s // md) for s, md in zip(sp, ms))
                a = math.prod(winograd_points(ms, kernel))
                t = (2.0 * tiles * a * (c // g) * o / TRUE["gemm"]
                     + itemsize * a * (c // g) * o / algorithms._U_BANDWIDTH
                     + tiles * (c * TRUE["transform_in" + suffix][m]
                                + o * TRUE["transform_out" + suffix][m]))
                rows.append(((n, c, o, g, sp), f"winograd_f{m}", t, None, kernel))
    return rows


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_recovers_the_rates_that_made_the_times(calibrate, dtype):
    got = calibrate.fit(synthetic_rows(calibrate, dtype), dtype)
    assert got["direct"] == pytest.approx(TRUE["direct"], rel=1e-9)
    assert got["gemm"] == pytest.approx(TRUE["gemm"], rel=1e-6)
    for key in ("transform_in", "transform_out", "transform_in_1d", "transform_out_1d"):
        for m in calibrate.TILES:
            assert got[key][m] == pytest.approx(TRUE[key][m], rel=1e-6), (key, m)


def test_fit_keeps_every_term_non_negative(calibrate):
    rows = synthetic_rows(calibrate, "float32")
    # an output transform that costs nothing, measured with noise below it
    rows = [(layer, alg, t * (0.97 if i % 2 else 1.0), row, kernel)
            for i, (layer, alg, t, row, kernel) in enumerate(rows)]
    got = calibrate.fit(rows, "float32")
    assert all(v >= 0 for key in ("transform_in", "transform_out", "transform_in_1d",
                                  "transform_out_1d")
               for v in got[key].values())
    assert got["gemm"] > 0


def test_written_rates_read_back(calibrate, tmp_path, monkeypatch):
    path = tmp_path / "cost_rates.py"
    monkeypatch.setattr(calibrate, "RATES_FILE", str(path))
    rates = {("avx2", "float32"): TRUE, ("baseline", "float64"): dict(TRUE, direct=1.5e10)}
    calibrate.write(rates, "a CPU (family 1 model 2), 2026-01-01")
    ns = runpy.run_path(str(path))
    for key in rates:
        assert ns["CALIBRATED_ON"][key] == "a CPU (family 1 model 2), 2026-01-01"
    # the tables this CPU did not measure keep their rates and where they came from
    assert set(ns["RATES"]) == set(cost_rates.RATES)
    for key in set(cost_rates.RATES) - set(rates):
        assert ns["RATES"][key] == cost_rates.RATES[key]
        assert ns["CALIBRATED_ON"][key] == cost_rates.CALIBRATED_ON[key]
    assert ns["RATES"][("baseline", "float64")]["direct"] == 1.5e10
    assert ns["RATES"][("avx2", "float32")]["transform_out"] == TRUE["transform_out"]


def test_the_package_prices_every_table_and_dtype():
    # 'auto' looks up the rates of whichever table runs a layer: every compiled ISA is there
    assert set(cost_rates.RATES) == {(name, dtype) for name in isa.ISA_NAMES
                                     for dtype in ("float32", "float64")}
    assert set(cost_rates.CALIBRATED_ON) == set(cost_rates.RATES)
    for rates in cost_rates.RATES.values():
        assert rates["direct"] > 0 and rates["gemm"] > 0
        assert set(rates["transform_in"]) == set(rates["transform_out"]) == {2, 4}
        assert set(rates["transform_in_1d"]) == set(rates["transform_out_1d"]) == {2, 4}
