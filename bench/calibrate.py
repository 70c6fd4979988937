"""Calibrate the cost model of conv3d_cpu/_core/algorithms.py ('auto' between direct and Winograd).

Times each algorithm on one thread with the thread's CPU time (robust to other processes on a
shared machine), then fits, by least squares over the layers:

    direct:   t = 2 N O P (C/g) 27 / R_direct
    Winograd: t = gemm_flops / R_gemm + tiles * (C * a_in + O * a_out)   (per tile size m)

and prints the constants with the model's choice next to the measured best for each layer.
Fitted on 3x3x3 layers; for (1,3,3) and (3,1,1) kernels the model scales the transform costs
by the tile's share of the 3-D tile's positions.

    .venv/bin/python bench/calibrate.py [--reps 5]
"""
import argparse
import math
import time

import numpy as np

from conv3d_cpu import conv3d
from conv3d_cpu._core import algorithms

# (N, C, O, groups, spatial) 3x3x3, stride 1, padding 1: the suite's eligible layers plus a
# spread of channel counts so the fit separates GEMM from transform costs.
LAYERS = [
    (1, 32, 32, 1, (32, 32, 32)), (1, 64, 128, 1, (8, 28, 28)), (8, 16, 32, 1, (16, 16, 16)),
    (1, 64, 64, 8, (16, 16, 16)), (1, 16, 16, 1, (32, 32, 32)), (1, 8, 8, 1, (24, 24, 24)),
    (1, 128, 128, 1, (12, 12, 12)), (1, 4, 16, 1, (24, 24, 24)), (1, 48, 24, 1, (16, 20, 24)),
    (2, 24, 48, 3, (12, 12, 12)), (1, 1, 32, 1, (32, 32, 32)), (1, 96, 96, 96, (16, 28, 28)),
]


def cpu_time(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n, c, o, g, sp in LAYERS:
        x = rng.standard_normal((n, c) + sp, dtype=np.float32)
        w = rng.standard_normal((o, c // g, 3, 3, 3), dtype=np.float32)
        t = {}
        for alg in ("direct", "winograd_f2", "winograd_f4"):
            t[alg] = cpu_time(lambda: conv3d(x, w, padding=1, groups=g, algorithm=alg,
                                             num_threads=1), args.reps)
        rows.append(((n, c, o, g, sp), t))
        print(f"measured {(n, c, o, g, sp)}: " +
              "  ".join(f"{k} {v * 1e3:.2f} ms" for k, v in t.items()), flush=True)

    direct_flops = [2.0 * n * o * math.prod(sp) * (c // g) * 27 for (n, c, o, g, sp), _ in rows]
    r_direct = np.median([f / t["direct"] for f, (_, t) in zip(direct_flops, rows)])
    print(f"\n_DIRECT_FLOPS = {r_direct:.3g}")
    for m in (2, 4):
        a, b = [], []
        for (n, c, o, g, sp), t in rows:
            if c // g < 8 or o // g < 8:
                continue  # fit where Winograd is a candidate; per-call overheads rule elsewhere
            tiles = n * math.prod(-(-s // m) for s in sp)
            a.append([2.0 * tiles * (m + 2) ** 3 * (c // g) * (o // g) * g, tiles * c, tiles * o])
            b.append(t[f"winograd_f{m}"])
        (inv_gemm, t_in, t_out), *_ = np.linalg.lstsq(np.array(a), np.array(b), rcond=None)
        print(f"m={m}: _GEMM_FLOPS ~ {1 / inv_gemm:.3g}, _TRANSFORM_IN {t_in:.3g} s, "
              f"_TRANSFORM_OUT {t_out:.3g} s")
    print("\nlayer -> model's choice vs measured best (with the constants in _core/algorithms.py now)")
    hits = 0
    names = {None: "direct", (2, 2, 2): "winograd_f2", (4, 4, 4): "winograd_f4"}
    for (n, c, o, g, sp), t in rows:
        chosen = names[algorithms.choose("auto", (n, c) + sp, (o, c // g, 3, 3, 3), (1, 1, 1),
                                        (1, 1, 1), g, sp)]
        best = min(t, key=t.get)
        hits += chosen == best
        print(f"  {(n, c, o, g, sp)}: auto={chosen} ({t[chosen] * 1e3:.2f} ms), "
              f"best={best} ({t[best] * 1e3:.2f} ms)")
    print(f"model picks the fastest algorithm on {hits} of {len(rows)} layers")


if __name__ == "__main__":
    main()
