"""The Winograd engine's two schedules on the layers that decide between them: tile blocks
(every stage in one work item, all of U read per block) and the whole-call schedule (each
stage over all tiles, U read once). Prints ms (medians of 5 rounds of 3 calls, the two
interleaved in a random order: calibrate.interleaved_times), their ratio, what the engine
picks (winograd.planned_schedule) and whether the bits agree.

    python bench/winograd_schedule.py [--threads 1,2]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..")]
from calibrate import interleaved_times  # noqa: E402
from conv3d_cpu._native import winograd as W  # noqa: E402

# (in, out channels, kernel, input spatial, tile m): the deep layers of the bench networks
# (V-Net's 5^3, nnU-Net's 320 and 512 -> 256, R3D-18's and R(2+1)D-18's last stages) and
# layers whose U stays in cache.
LAYERS = [
    (256, 256, (5, 5, 5), (8, 8, 8), (2, 2, 2)),
    (256, 256, (5, 5, 5), (4, 4, 4), (2, 2, 2)),
    (128, 128, (5, 5, 5), (16, 16, 16), (2, 2, 2)),
    (512, 256, (3, 3, 3), (12, 12, 12), (2, 2, 2)),
    (320, 320, (3, 3, 3), (12, 12, 12), (2, 2, 2)),
    (320, 320, (3, 3, 3), (6, 6, 6), (2, 2, 2)),
    (256, 256, (3, 3, 3), (12, 12, 12), (2, 2, 2)),
    (256, 256, (3, 3, 3), (4, 14, 14), (2, 2, 2)),
    (256, 256, (3, 3, 3), (4, 14, 14), (4, 4, 4)),
    (512, 512, (3, 3, 3), (2, 7, 7), (2, 2, 2)),
    (512, 1152, (1, 3, 3), (2, 7, 7), (1, 4, 4)),
    (128, 128, (3, 3, 3), (16, 16, 16), (4, 4, 4)),
    (128, 128, (3, 3, 3), (8, 28, 28), (4, 4, 4)),
    (64, 64, (3, 3, 3), (32, 32, 32), (4, 4, 4)),
    (64, 144, (3, 1, 1), (16, 56, 56), (4, 1, 1)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    for threads in map(int, args.threads.split(",")):
        print(f"threads {threads}")
        print(f"{'layer':40s} {'U MiB':>6s} {'blocks':>8s} {'whole':>8s} {'ratio':>6s} "
              f"{'picks':>7s} same bits")
        for cin, cout, kernel, spatial, m in LAYERS:
            rng = np.random.default_rng(0)
            x = rng.standard_normal((1, cin) + spatial, dtype=np.float32)
            w = rng.standard_normal((cout, cin) + kernel, dtype=np.float32)
            U = W.transform_weights(w, 1, m, threads)
            b = np.zeros(cout, np.float32)
            pad = [k // 2 for k in kernel]
            outs = {s: np.empty((1, cout) + spatial, np.float32) for s in ("blocks", "whole")}
            fns = {s: (lambda s=s: W.winograd(x, U, b, outs[s], pad, m, kernel, 1, threads, 0,
                                              s)) for s in outs}
            t = {s: 1e3 * v for s, v in interleaved_times(fns, rounds=5).items()}
            t_blocks, t_whole = t["blocks"], t["whole"]
            picks = W.planned_schedule(x.shape, outs["whole"].shape, m, kernel, 1, threads)
            same = np.array_equal(outs["blocks"].view(np.uint32), outs["whole"].view(np.uint32))
            name = f"{cin}->{cout} k{'x'.join(map(str, kernel))} @{'x'.join(map(str, spatial))}"
            name += f" F{m[2] if kernel[2] > 1 else m[0]}"
            print(f"{name:40s} {U.nbytes / 2**20:6.1f} {t_blocks:8.2f} {t_whole:8.2f} "
                  f"{t_whole / t_blocks:6.2f} {picks:>7s} {same}",
                  flush=True)


if __name__ == "__main__":
    main()
