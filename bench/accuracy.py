"""Float32 error of each algorithm against a float64 reference, by input channels.

Unit-normal input, weights scaled by 1/sqrt(fan_in) (PyTorch's init scale), 12^3 volume,
16 output channels, padding 1, for each kernel Winograd computes (3x3x3, 1x3x3, 3x1x1,
5x5x5; F4 is n/a for 5x5x5). Prints
max|error| / max|y| per algorithm.

    .venv/bin/python bench/accuracy.py
"""
import numpy as np

from conv3d_cpu import conv3d

ALGORITHMS = ("direct", "winograd_f2", "winograd_f4", "auto")


def main():
    rng = np.random.default_rng(0)
    for k in ((3, 3, 3), (1, 3, 3), (3, 1, 1), (5, 5, 5)):
        print(f"kernel {k}")
        print("C_in  " + "  ".join(f"{a:>11}" for a in ALGORITHMS))
        for c in (8, 16, 32, 64, 128, 256):
            x = rng.standard_normal((1, c, 12, 12, 12))
            w = rng.standard_normal((16, c) + k) / np.sqrt(c * np.prod(k))
            ref = conv3d(x, w, padding=1, algorithm="direct")
            errs = []
            for alg in ALGORITHMS:
                try:
                    y = conv3d(x.astype(np.float32), w.astype(np.float32), padding=1,
                               algorithm=alg)
                except ValueError:  # winograd_f4 on 5x5x5
                    errs.append(float("nan"))
                    continue
                errs.append(np.abs(y - ref).max() / np.abs(ref).max())
            print(f"{c:4d}  " + "  ".join(f"{e:11.2e}" for e in errs))


if __name__ == "__main__":
    main()
