#!/usr/bin/env python
"""Calibrate the cost model behind algorithm='auto' (conv3d_cpu/_core/algorithms.py) for this CPU.

For every instruction set this CPU runs and both dtypes, times direct, Winograd F(2^3, 3^3) and
F(4^3, 3^3) on a spread of 3x3x3 layers with one thread (the thread's CPU time, robust to
other processes), and fits per kernel table and dtype, by least squares on relative errors
with non-negative terms,

    direct:   t - weights' repacking = 2 N O P (C/g) 27 / direct   (P: positions computed)
    Winograd: t - U read = gemm_flops / gemm + tiles (C transform_in[m] + O transform_out[m])

A measurement counts for the table that ran it: under avx512_zmm, layers with fewer channels
per group than its vector run avx512's kernels (isa.layer_isa). ``--write`` stores the rates,
with this CPU's name, in conv3d_cpu/_core/cost_rates.py (rebuild nothing: it is Python); the
tables this CPU does not run keep the rates and machine they had.
``--check`` then times every layer of the bench suite with each algorithm it can use at
``--threads`` under the default ISA, and reports what 'auto' picks against the fastest.

    python bench/calibrate.py --write --check     # ~1-2 minutes on 2 cores
"""
import argparse
import datetime
import functools
import itertools
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from layers import SUITE  # noqa: E402

from conv3d_cpu import conv3d  # noqa: E402
from conv3d_cpu._core import algorithms, cost_rates  # noqa: E402
from conv3d_cpu._core.forward import choose_tile  # noqa: E402
from conv3d_cpu._native import isa  # noqa: E402

RATES_FILE = os.path.join(os.path.dirname(cost_rates.__file__), "cost_rates.py")
DTYPES = ("float32", "float64")
TILES = (2, 4)
# (N, C, O, groups, spatial) 3x3x3, stride 1, padding 1: the suite's eligible layers plus a
# spread of channel counts and sizes, so that the fit separates GEMM from transform costs.
LAYERS = [
    (1, 32, 32, 1, (32, 32, 32)), (1, 64, 128, 1, (8, 28, 28)), (8, 16, 32, 1, (16, 16, 16)),
    (1, 64, 64, 8, (16, 16, 16)), (1, 16, 16, 1, (32, 32, 32)), (1, 8, 8, 1, (24, 24, 24)),
    (1, 128, 128, 1, (12, 12, 12)), (1, 4, 16, 1, (24, 24, 24)), (1, 48, 24, 1, (16, 20, 24)),
    (2, 24, 48, 3, (12, 12, 12)), (1, 1, 32, 1, (32, 32, 32)), (1, 96, 96, 96, (16, 28, 28)),
    (1, 256, 256, 1, (6, 6, 6)), (1, 128, 64, 16, (12, 16, 16)), (1, 16, 64, 1, (16, 24, 24)),
    (1, 64, 16, 1, (16, 24, 24)), (1, 32, 32, 2, (24, 24, 24)),
]
# (3, 1, 1) layers (the temporal half of R(2+1)D), padding (1, 0, 0): their 1-D transforms get
# rates of their own (3-D rates scaled by the points misprice them).
LAYERS_1D = [
    (1, 144, 64, 1, (8, 28, 28)), (1, 64, 144, 1, (16, 28, 28)), (1, 32, 32, 1, (16, 32, 32)),
    (1, 128, 128, 1, (8, 14, 14)), (1, 256, 256, 1, (4, 7, 7)), (1, 16, 64, 1, (16, 24, 24)),
    (1, 64, 16, 1, (16, 24, 24)), (1, 460, 256, 1, (4, 14, 14)),
]
KERNEL_3D, KERNEL_1D = (3, 3, 3), (3, 1, 1)


def cpu_name():
    """'model name (family F model M)' from /proc/cpuinfo, else the platform's name."""
    import platform
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    return name


def cpu_time(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return float(np.median(times))


def interleaved_times(fns, rounds, burst=3):
    """{name: median wall seconds} of ``fns`` ({name: fn}), each timed ``burst`` times per
    round in a fresh random order each round (drift of the machine hits all alike), after one
    untimed call each."""
    order = list(fns)
    times = {name: [] for name in order}
    for fn in fns.values():
        fn()
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            fns[name]()  # settle
            for _ in range(burst):
                t = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) for name, v in times.items()}


def measure(reps):
    """{(table, dtype): [(layer, algorithm, seconds)]} over every ISA this CPU runs."""
    rng = np.random.default_rng(0)
    samples = {}
    default = isa.current_isa()
    try:
        for name, dtype in itertools.product(isa.available_isas(), DTYPES):
            isa.use_isa(name)
            f64 = dtype == "float64"
            for kernel, (n, c, o, g, sp) in itertools.chain(
                    ((KERNEL_3D, layer) for layer in LAYERS),
                    ((KERNEL_1D, layer) for layer in LAYERS_1D)):
                padding = tuple(k // 2 for k in kernel)
                x = rng.standard_normal((n, c) + sp).astype(dtype)
                w = rng.standard_normal((o, c // g) + kernel).astype(dtype)
                row = algorithms.flat_row_width(sp, kernel, (1, 1, 1), (1, 1, 1),
                                                isa.direct_tile_positions(o // g, f64))
                line = []
                for alg in ("direct",) + tuple(f"winograd_f{m}" for m in TILES):
                    table = isa.layer_isa(o // g if alg == "direct" else min(c // g, o // g), f64)
                    if (table, dtype) in samples and table != name:
                        continue  # (measured under that ISA itself)
                    t = cpu_time(lambda: conv3d(x, w, padding=padding, groups=g,
                                                algorithm=alg, num_threads=1), reps)
                    samples.setdefault((table, dtype), []).append(
                        ((n, c, o, g, sp), alg, t, row, kernel))
                    line.append(f"{alg} {t * 1e3:.2f} ms ({table})")
                print(f"  {name} {dtype} {kernel} {(n, c, o, g, sp)}: " + "  ".join(line),
                      flush=True)
    finally:
        isa.use_isa(default)
    return samples


def _nnls(a, b):
    """min ||a x - b|| over x >= 0 for a few columns: the best of the least-squares fits on
    every subset of columns whose solution is non-negative."""
    best, best_x = math.inf, np.zeros(a.shape[1])
    for k in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), k):
            x, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.any(x < 0):
                continue
            r = float(np.sum((a[:, cols] @ x - b) ** 2))
            if r < best:
                best, best_x = r, np.zeros(a.shape[1])
                best_x[list(cols)] = x
    return best_x


def _winograd_terms(layer, m, kernel, itemsize):
    """(tiles, the GEMM's FLOPs, seconds reading U) of F(m) on ``layer`` with ``kernel``."""
    n, c, o, g, sp = layer
    tiles, positions = algorithms.winograd_work(m, n, sp, kernel)
    return (tiles, 2.0 * tiles * positions * (c // g) * o,
            itemsize * positions * (c // g) * o / algorithms._U_BANDWIDTH)


def fit(rows, dtype):
    """The rates of one table and dtype from its [(layer, algorithm, seconds, direct's row
    width, kernel)]."""
    itemsize = 8 if dtype == "float64" else 4
    direct = [algorithms.direct_flops(n, c, o, g, sp, KERNEL_3D, row)
              / max(t - algorithms.direct_weight_seconds(c, o, g, KERNEL_3D, itemsize), t / 10)
              for (n, c, o, g, sp), alg, t, row, kernel in rows
              if alg == "direct" and kernel == KERNEL_3D]
    rates = dict(direct=float(np.median(direct)), gemm=None, transform_in={}, transform_out={},
                 transform_in_1d={}, transform_out_1d={})
    gemm_rates = []
    for m in TILES:
        a, b = [], []
        for layer, alg, t, _, kernel in rows:
            n, c, o, g, sp = layer
            if (alg != f"winograd_f{m}" or kernel != KERNEL_3D or c // g < 8
                    or o // g < 8):
                continue  # fit where Winograd is a candidate; per-call overheads rule elsewhere
            tiles, gemm_flops, u_read = _winograd_terms(layer, m, kernel, itemsize)
            # relative errors: each row divided by its time
            a.append(np.array([gemm_flops, tiles * c, tiles * o]) / t)
            b.append((t - u_read) / t)
        if len(a) < 3:
            raise SystemExit(f"too few layers to fit F({m}) for {dtype}: {len(a)}")
        inv_gemm, t_in, t_out = _nnls(np.array(a), np.array(b))
        if inv_gemm > 0:
            gemm_rates.append(1.0 / inv_gemm)
        rates["transform_in"][m], rates["transform_out"][m] = float(t_in), float(t_out)
    # One GEMM rate for both tiles (the same micro-kernel): the slower fit, so that no tile
    # is favoured by a fit that put its transforms' time into the GEMM.
    rates["gemm"] = float(min(gemm_rates)) if gemm_rates else rates["direct"]
    # 1-D tiles: t - GEMM - U read = tiles (C transform_in_1d[m] + O transform_out_1d[m]),
    # with the GEMM priced at the rate just fitted.
    for m in TILES:
        a, b = [], []
        for layer, alg, t, _, kernel in rows:
            if alg != f"winograd_f{m}" or kernel != KERNEL_1D:
                continue
            tiles, gemm_flops, u_read = _winograd_terms(layer, m, kernel, itemsize)
            rest = t - gemm_flops / rates["gemm"] - u_read
            a.append(np.array([tiles * layer[1], tiles * layer[2]]) / t)
            b.append(rest / t)
        if len(a) < 2:
            raise SystemExit(f"too few (3, 1, 1) layers to fit F({m}) for {dtype}: {len(a)}")
        t_in, t_out = _nnls(np.array(a), np.array(b))
        rates["transform_in_1d"][m], rates["transform_out_1d"][m] = float(t_in), float(t_out)
    return rates


def fit_all(samples):
    return {key: fit(rows, key[1]) for key, rows in sorted(samples.items())}


RATES_TEMPLATE = '''"""The cost model's sustained rates per kernel table and dtype (algorithms.estimate_seconds).

Written by ``python bench/calibrate.py --write`` from one-thread timings of 3x3x3 layers;
rerun it to calibrate for another CPU (docs/performance.md, "the cost model").
"""
# (kernel table, dtype) -> the machine its rates below were measured on: a table is measured
# on the CPUs that run it (avx2 on an AVX2-only CPU gives other rates than on an AVX-512 one).
CALIBRATED_ON = {{
{sources}}}

# (kernel table, dtype) -> direct FLOP/s, the Winograd GEMM's FLOP/s, and seconds per (tile,
# input channel) of the input transform and per (tile, output channel) of the output transform
# for the F(2, 3) and F(4, 3) tile shapes (keys 2 and 4): of 3-D tiles (scaled by the points
# for 2-D ones) and, ``_1d``, of the (3, 1, 1) kernels' 1-D tiles.
RATES = {{
{entries}}}
'''


def _g(v):
    return f"{v:.3g}"


def write(rates, where):
    """cost_rates.py with ``rates`` measured on ``where``; the stored rates of the tables and
    dtypes not in ``rates`` (ISAs this CPU does not run) are kept with their machines."""
    sources = dict(cost_rates.CALIBRATED_ON)
    sources.update((key, where) for key in rates)
    rates = {**cost_rates.RATES, **rates}
    entries = []
    for (table, dtype), r in sorted(rates.items()):
        def terms(key):
            return ", ".join(f"{m}: {_g(v)}" for m, v in sorted(r[key].items()))
        entries.append(f'    ("{table}", "{dtype}"): dict(\n'
                       f"        direct={_g(r['direct'])}, gemm={_g(r['gemm'])},\n"
                       f"        transform_in={{{terms('transform_in')}}}, "
                       f"transform_out={{{terms('transform_out')}}},\n"
                       f"        transform_in_1d={{{terms('transform_in_1d')}}}, "
                       f"transform_out_1d={{{terms('transform_out_1d')}}}),\n")
    with open(RATES_FILE, "w") as f:
        f.write(RATES_TEMPLATE.format(
            sources="".join(f'    ("{t}", "{d}"): "{sources[t, d]}",\n' for t, d in sorted(rates)),
            entries="".join(entries)))


def install(rates):
    """Use ``rates`` in this process (cost_rates.RATES in place; choose's cache cleared)."""
    cost_rates.RATES.update(rates)
    algorithms.choose.cache_clear()


def check(threads, reps):
    """Every suite layer under the default ISA at ``threads``: 'auto''s pick against the
    fastest algorithm; returns the ratios auto / fastest."""
    names = {None: "direct"}
    ratios = []
    print(f"\n'auto' on the bench suite, {isa.current_isa()}, {threads} threads (ms, medians of "
          f"{reps} interleaved rounds of 3 calls):")
    for layer in SUITE:
        x, w, b = layer.make_inputs(0)
        kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                  groups=layer.groups, num_threads=threads)
        fns = {}
        for alg in ("direct", "winograd_f2", "winograd_f4"):
            try:
                conv3d(x, w, b, algorithm=alg, **kw)
            except ValueError:
                continue
            fns[alg] = functools.partial(conv3d, x, w, b, algorithm=alg, **kw)
        times = interleaved_times(fns, reps)
        out = conv3d(x, w, b, algorithm="direct", **kw)
        tile = choose_tile("auto", x.shape, w.shape, layer.stride, layer.dilation, layer.groups,
                           out.shape[2:], x.dtype)
        chosen = names.get(tile) or f"winograd_f{2 if max(tile) <= 3 else 4}"
        if chosen not in times:  # (F(3, 2) / F(5, 2): named by their point counts)
            chosen = "winograd_f2" if "winograd_f2" in times else "direct"
        best = min(times, key=times.get)
        ratios.append(times[chosen] / times[best])
        print(f"  {layer.name:14s} auto={chosen:12s} {times[chosen] * 1e3:8.3f}   fastest="
              f"{best:12s} {times[best] * 1e3:8.3f}   ratio {ratios[-1]:.2f}", flush=True)
    within = sum(r <= 1.10 for r in ratios)
    print(f"within 10% of the fastest on {within} of {len(ratios)} layers; "
          f"worst {max(ratios):.2f}")
    return ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed calls per measurement")
    ap.add_argument("--write", action="store_true", help="store the rates in cost_rates.py")
    ap.add_argument("--check", action="store_true",
                    help="check 'auto' on the bench suite with the fitted rates")
    ap.add_argument("--check-only", action="store_true",
                    help="check 'auto' with the stored rates; fit nothing")
    ap.add_argument("--threads", type=int, default=2, help="threads of the check")
    args = ap.parse_args()
    if not args.check_only:
        print(f"measuring on {cpu_name()} (one thread, CPU time, median of {args.reps}):")
        rates = fit_all(measure(args.reps))
        for key, r in rates.items():
            print(f"{key}: {r}")
        install(rates)
        if args.write:
            where = f"{cpu_name()}, {datetime.date.today().isoformat()}"
            write(rates, where)
            print(f"wrote {RATES_FILE} ({where})")
    else:
        print("stored rates, measured on:")
        for (table, dtype), where in sorted(cost_rates.CALIBRATED_ON.items()):
            print(f"  {table:11s} {dtype}: {where}")
    if args.check or args.check_only:
        check(args.threads, args.reps)


if __name__ == "__main__":
    main()
