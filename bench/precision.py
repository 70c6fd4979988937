"""Which algorithms meet PyTorch's float32 tolerance: the measurements behind float32 precision
'highest' (conv3d_cpu.set_float32_precision; algorithms.ACCURATE_TILES).

For a set of layers (1..512 channels; 3x3x3, 1x3x3, 3x1x1, 5x5x5 and 2x2x2 kernels; 4^3..32^3
volumes, padding 'same', batch 1), with inputs drawn from N(0, 1) and weights and bias drawn
as PyTorch's default init does (U(-1/sqrt(fan_in), 1/sqrt(fan_in))), each algorithm's float32
result is compared with a float64 reference: ``conv3d(..., algorithm='direct')`` on the same
(float32) values in float64, an independent float64 computation. Reported per layer and
algorithm: max|err|, max|err| / max|y|, the worst element's share of the tolerance
(|err| / (atol + rtol |y|), below 1 passes) and whether ``torch.testing.assert_close(y32,
y64.astype(float32))`` with its float32 defaults (rtol 1.3e-6, atol 1e-5) passes (computed
with that criterion in numpy; checked with torch too when it is installed, whose own float32
``F.conv3d`` is then reported as the row 'torch'). Also which tile 'auto' picks under 'high'
and under 'highest'.

    .venv/bin/python bench/precision.py              # the full set, 3 draws per layer (~1 min)
    .venv/bin/python bench/precision.py --seeds 1    # one draw per layer
    .venv/bin/python bench/precision.py --quick      # layers up to 128 channels
"""
import argparse
import sys
import time
from unittest import mock

import numpy as np

from conv3d_cpu import conv3d
from conv3d_cpu._core import algorithms
from conv3d_cpu._native.constants import winograd_tile

RTOL, ATOL = 1.3e-6, 1e-5  # torch.testing.assert_close's float32 defaults

# (kernel, in channels, out channels, spatial size of the cubic input)
LAYERS = [
    ((3, 3, 3), 1, 8, 32), ((3, 3, 3), 3, 16, 32), ((3, 3, 3), 16, 16, 24),
    ((3, 3, 3), 32, 32, 16), ((3, 3, 3), 64, 64, 16), ((3, 3, 3), 128, 128, 12),
    ((3, 3, 3), 256, 256, 8), ((3, 3, 3), 512, 512, 8), ((3, 3, 3), 512, 512, 4),
    ((1, 3, 3), 1, 8, 32), ((1, 3, 3), 32, 32, 16), ((1, 3, 3), 128, 128, 16),
    ((1, 3, 3), 256, 256, 8), ((1, 3, 3), 512, 512, 8),
    ((3, 1, 1), 1, 8, 32), ((3, 1, 1), 32, 32, 16), ((3, 1, 1), 128, 128, 16),
    ((3, 1, 1), 512, 512, 8),
    ((5, 5, 5), 1, 8, 24), ((5, 5, 5), 16, 16, 16), ((5, 5, 5), 64, 64, 12),
    ((5, 5, 5), 128, 128, 8), ((5, 5, 5), 256, 256, 8), ((5, 5, 5), 512, 512, 6),
    ((2, 2, 2), 1, 8, 32), ((2, 2, 2), 16, 16, 24), ((2, 2, 2), 64, 64, 16),
    ((2, 2, 2), 128, 128, 12), ((2, 2, 2), 256, 256, 8), ((2, 2, 2), 512, 512, 8),
]
ALGORITHMS = ("direct", "winograd_f2", "winograd_f4")
# 2x2x2 kernels have F(3, 2) and F(5, 2), which no algorithm name forces: run by tile.
TILE_ALGORITHMS = ("direct", "winograd_f3", "winograd_f5")
TILE_NAMES = {None: "direct", 2: "F2", 4: "F4", 3: "F3", 5: "F5"}


def algorithms_for(kernel):
    if kernel == (2, 2, 2):
        return list(TILE_ALGORITHMS)
    return [a for a in ALGORITHMS if a != "winograd_f4" or kernel != (5, 5, 5)]


def run(a, x, w, b):
    """conv3d(x, w, b, padding='same') by algorithm ``a`` (or 'winograd_f<m>': tile m)."""
    if a in TILE_ALGORITHMS[1:]:
        tile = winograd_tile(int(a[-1]), w.shape[2:])
        with mock.patch.object(algorithms, "choose", lambda *args, **kwargs: tile):
            return conv3d(x, w, b, padding="same", algorithm="winograd")
    return conv3d(x, w, b, padding="same", algorithm=a)


def draw(rng, kernel, cin, cout, size):
    """Float32 x ~ N(0, 1); weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    x = rng.standard_normal((1, cin, size, size, size)).astype(np.float32)
    bound = 1 / np.sqrt(cin * np.prod(kernel))
    w = rng.uniform(-bound, bound, (cout, cin) + kernel).astype(np.float32)
    b = rng.uniform(-bound, bound, cout).astype(np.float32)
    return x, w, b


def measure(y32, y64):
    """(max|err|, max|err| / max|y|, worst |err| / (atol + rtol |y|)) of y32 against y64."""
    err = np.abs(y32.astype(np.float64) - y64)
    expected = y64.astype(np.float32).astype(np.float64)  # what assert_close is given
    share = (np.abs(y32 - expected) / (ATOL + RTOL * np.abs(expected))).max()
    return err.max(), err.max() / np.abs(y64).max(), share


def torch_passes(torch, y32, y64):
    try:
        torch.testing.assert_close(torch.from_numpy(y32), torch.from_numpy(y64.astype(np.float32)))
    except AssertionError:
        return False
    return True


def auto_choice(kernel, cin, cout, size, precision):
    sp = (size,) * 3
    m = algorithms.choose("auto", (1, cin) + sp, (cout, cin) + kernel, (1, 1, 1), (1, 1, 1), 1,
                          sp, precision)
    return TILE_NAMES[None if m is None else max(m)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="draws per layer (worst kept)")
    parser.add_argument("--quick", action="store_true", help="layers up to 128 channels")
    parser.add_argument("--no-torch", action="store_true", help="do not import torch")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            pass
    layers = [layer for layer in LAYERS if not args.quick or layer[1] <= 128]
    print("| layer (kernel, C -> O, size^3) | auto: high / highest | algorithm | max abs err "
          "| max err / max abs y | worst err / tol | assert_close |")
    print("|---|---|---|---:|---:|---:|---|")
    worst = {}  # (kernel, algorithm) -> worst share
    start = time.perf_counter()
    for kernel, cin, cout, size in layers:
        name = f"{'x'.join(map(str, kernel))}, {cin} -> {cout}, {size}^3"
        auto = f"{auto_choice(kernel, cin, cout, size, 'high')} / " \
               f"{auto_choice(kernel, cin, cout, size, 'highest')}"
        names = algorithms_for(kernel)
        names += ["torch"] if torch is not None else []
        results = {a: [0.0, 0.0, 0.0, True] for a in names}
        for seed in range(args.seeds):
            rng = np.random.default_rng([seed, cin, cout, size] + list(kernel))
            x, w, b = draw(rng, kernel, cin, cout, size)
            y64 = conv3d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                         padding="same", algorithm="direct")
            for a in names:
                if a == "torch":
                    with torch.no_grad():
                        y32 = F.conv3d(torch.from_numpy(x), torch.from_numpy(w),
                                       torch.from_numpy(b), padding="same").numpy()
                else:
                    y32 = run(a, x, w, b)
                r = results[a]
                e, rel, share = measure(y32, y64)
                passes = share <= 1.0
                if torch is not None and torch_passes(torch, y32, y64) != passes:
                    # (torch compares in float32: a borderline element may go either way)
                    print(f"note: torch's assert_close says {not passes} ({name}, {a}, "
                          f"worst err / tol {share:.4f})", file=sys.stderr)
                    passes = not passes
                r[0], r[1], r[2] = max(r[0], e), max(r[1], rel), max(r[2], share)
                r[3] = r[3] and passes
        for a in names:
            e, rel, share, passes = results[a]
            key = "x".join(map(str, kernel)), a
            worst[key] = max(worst.get(key, 0.0), share)
            print(f"| {name} | {auto} | {a} | {e:.2e} | {rel:.2e} | {share:.2f} | "
                  f"{'pass' if passes else 'FAIL'} |")
            auto = ""
            sys.stdout.flush()
    print(f"\nworst err / tol over the set (below 1: assert_close passes everywhere); "
          f"{time.perf_counter() - start:.0f} s:")
    for (kernel, a), share in sorted(worst.items()):
        print(f"  {kernel:6} {a:12} {share:.2f}")


if __name__ == "__main__":
    main()
