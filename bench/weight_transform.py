"""The Winograd weight transform (U = G g G^T) on the bench networks' large layers: ms per
transform (medians of 5 rounds of 3 calls: calibrate.interleaved_times), U's size, the rate
at which U is written, and for scale the time to fill an array of U's size (what writing U
alone costs on this machine). The transform runs on every first call and after every weight
update (training), so it counts in a network's cold call and in each training step.

    python bench/weight_transform.py [--threads 1,2] [--dtype float32]
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..")]
from calibrate import interleaved_times  # noqa: E402
from conv3d_cpu._native import buffers  # noqa: E402
from conv3d_cpu._native import winograd as W  # noqa: E402

# (out, in channels, kernel, tile m): U-Net / nnU-Net / V-Net / R3D-18 / R(2+1)D-18 layers
LAYERS = [
    (256, 256, (3, 3, 3), (4, 4, 4)),
    (256, 256, (3, 3, 3), (2, 2, 2)),
    (128, 256, (3, 3, 3), (4, 4, 4)),
    (320, 320, (3, 3, 3), (2, 2, 2)),
    (512, 512, (3, 3, 3), (2, 2, 2)),
    (256, 256, (5, 5, 5), (2, 2, 2)),
    (1152, 512, (1, 3, 3), (1, 4, 4)),
    (144, 64, (3, 1, 1), (4, 1, 1)),
    (64, 64, (3, 3, 3), (4, 4, 4)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    dtype = np.dtype(args.dtype)
    for threads in map(int, args.threads.split(",")):
        print(f"threads {threads}, {dtype}")
        print(f"{'layer':28s} {'U MiB':>6s} {'ms':>7s} {'GB/s':>6s} {'fill ms':>8s}")
        for cout, cin, kernel, m in LAYERS:
            w = np.random.default_rng(0).standard_normal((cout, cin) + kernel).astype(dtype)
            size = W.transform_weights(w, 1, m, threads).size
            fill = buffers.empty(size, dtype)
            t = interleaved_times({"transform": lambda: W.transform_weights(w, 1, m, threads),
                                   "fill": lambda: fill.fill(1)}, rounds=5)
            mib = size * dtype.itemsize / 2**20
            name = f"{cout}<-{cin} k{'x'.join(map(str, kernel))} F{max(m)}"
            print(f"{name:28s} {mib:6.1f} {1e3 * t['transform']:7.2f} "
                  f"{mib * 2**20 / 1e9 / t['transform']:6.1f} {1e3 * t['fill']:8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
