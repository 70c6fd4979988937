#!/usr/bin/env python
"""Fingerprints of conv3d_cpu's outputs, to check that a change leaves every bit as it was.

For every layer of the bench suite and a list of test geometries (strides, dilations, groups,
padding modes, float64, NaN weights), every algorithm that can compute it, every instruction
set this CPU runs and 1, 2 and 3 threads, the SHA-256 of the output bytes. Only the public API
is used, so the same script runs against an old and a new build:

    python bench/fingerprint.py --save old.json            # with the old build importable
    python bench/fingerprint.py --check old.json           # with the new one: lists differences

Each instruction set runs in a subprocess with CONV3D_CPU_ISA set. ``--package-dir DIR`` puts
DIR first on sys.path, to fingerprint a build that lives in another checkout.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from layers import SUITE, Layer  # noqa: E402

ALGORITHMS = ("auto", "direct", "winograd_f2", "winograd_f4", "winograd")
THREADS = (1, 2, 3)

# Geometries the tests exercise beyond the suite: each path of the direct kernel (blocked,
# 1x1x1, depthwise rows), rings with gcd(kD, dD) > 1, strides along D, padding wider than
# the kernel, every Winograd shape, batch > 1 and float64.
TEST_LAYERS = [
    Layer("t_dil_gcd", 6, 10, (11, 9, 10), 3, padding=2, dilation=(2, 1, 1)),
    Layer("t_dil_k4", 5, 12, (14, 8, 9), (4, 3, 2), padding=(3, 1, 0), dilation=(2, 2, 1)),
    Layer("t_stride_d", 4, 20, (13, 10, 11), 3, stride=(2, 1, 3), padding=1),
    Layer("t_k5_d3", 3, 9, (17, 12, 7), (5, 2, 3), padding=(4, 0, 1), dilation=(3, 1, 2)),
    Layer("t_group_rows", 12, 12, (9, 10, 11), 3, padding=1, groups=4),
    Layer("t_dw_stride", 8, 16, (10, 12, 13), 3, stride=2, padding=1, groups=8),
    Layer("t_dw_f64", 6, 6, (7, 9, 20), (3, 3, 5), padding=(1, 1, 2), groups=6,
          dtype="float64"),
    Layer("t_pw_groups", 16, 24, (5, 6, 7), 1, groups=4, n=2),
    Layer("t_pw_odd", 7, 33, (3, 5, 9), 1, n=3),
    Layer("t_pw_stride", 8, 8, (6, 6, 6), 1, stride=2),
    Layer("t_cin1", 1, 17, (12, 13, 14), 3, padding=1),
    Layer("t_wide_pad", 3, 5, (4, 5, 6), 3, padding=(4, 3, 5), stride=(2, 2, 1)),
    Layer("t_w_inplace", 5, 40, (6, 7, 19), (2, 3, 1), padding=(1, 1, 0)),
    Layer("t_batch_f64", 5, 18, (8, 7, 6), 3, padding=1, n=3, dtype="float64"),
    Layer("t_k133", 9, 20, (5, 11, 13), (1, 3, 3), padding=(0, 1, 1), n=2),
    Layer("t_k311", 20, 9, (9, 6, 5), (3, 1, 1), padding=(1, 0, 0)),
    Layer("t_k555", 4, 6, (11, 10, 9), 5, padding=2),
    Layer("t_k555_f64", 3, 5, (9, 8, 7), 5, padding=1, dtype="float64"),
    Layer("t_wino_groups", 16, 32, (10, 9, 11), 3, padding=1, groups=2),
    Layer("t_wino_f64", 7, 13, (9, 10, 11), 3, padding=(0, 1, 2), dtype="float64"),
    Layer("t_nobias", 6, 16, (7, 8, 9), 3, padding=1, bias=False),
    Layer("t_tiny", 2, 3, (3, 3, 3), 3),
]
PADDING_MODES = ("reflect", "replicate", "circular")


def _digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _run_isa():
    """Fingerprints under the ISA this process selected (CONV3D_CPU_ISA)."""
    import conv3d_cpu
    from conv3d_cpu import Conv3d, conv3d

    out = {}
    for layer in SUITE + TEST_LAYERS:
        x, w, b = layer.make_inputs(seed=1)
        for algorithm in ALGORITHMS:
            for t in THREADS:
                try:
                    y = conv3d(x, w, b, algorithm=algorithm, num_threads=t, **layer.conv_kwargs())
                except ValueError:
                    break  # this algorithm cannot compute the layer
                out[f"{layer.name}/{algorithm}/{t}"] = _digest(y)
    # Padding modes go through the module; NaN weights through the padding recompute.
    for layer in TEST_LAYERS[:4]:
        x, w, b = layer.make_inputs(seed=2)
        for mode in PADDING_MODES:
            m = Conv3d(layer.cin, layer.cout, layer.k, stride=layer.stride,
                       padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                       padding_mode=mode, dtype=layer.dtype)
            m.load_state_dict({"weight": w, "bias": b})
            out[f"{layer.name}/{mode}"] = _digest(m(x))
        w = w.copy()
        w.flat[::7] = np.nan
        for t in THREADS:
            y = conv3d(x, w, b, num_threads=t, **layer.conv_kwargs())
            out[f"{layer.name}/nan_weights/{t}"] = _digest(y)
    cfg = conv3d_cpu.show_config(mode="dicts")
    return {"isa": cfg["isa"]["selected"], "package": cfg["package_dir"], "digests": out}


def collect(package_dir=None):
    """{isa: {key: digest}} over every ISA this CPU runs."""
    env = dict(os.environ)
    if package_dir:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_dir, env.get("PYTHONPATH")]))
    probe = ("import json, conv3d_cpu; "
             "print(json.dumps(conv3d_cpu.show_config(mode='dicts')['isa']['available']))")
    isas = json.loads(subprocess.run([sys.executable, "-c", probe], env=env, check=True,
                                     capture_output=True, text=True, cwd=HERE).stdout)
    result = {}
    for isa in isas:
        proc = subprocess.run([sys.executable, __file__, "--worker"], cwd=HERE, check=True,
                              env=dict(env, CONV3D_CPU_ISA=isa), capture_output=True, text=True)
        got = json.loads(proc.stdout)
        assert got["isa"] == isa, (got["isa"], isa)
        result[isa] = got["digests"]
        print(f"{isa}: {len(got['digests'])} outputs from {got['package']}", file=sys.stderr)
    return result


def compare(old, new):
    """Lines describing every difference between two collections; empty when identical."""
    lines = []
    for isa in sorted(set(old) | set(new)):
        a, b = old.get(isa), new.get(isa)
        if a is None or b is None:
            lines.append(f"{isa}: only in {'new' if a is None else 'old'}")
            continue
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                lines.append(f"{isa} {key}: {a.get(key)} -> {b.get(key)}")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save", metavar="JSON")
    p.add_argument("--check", metavar="JSON", help="compare with a saved run; exit 1 on a change")
    p.add_argument("--package-dir", help="import conv3d_cpu from this directory")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_run_isa()))
        return 0
    result = collect(args.package_dir)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
    if args.check:
        with open(args.check) as f:
            diff = compare(json.load(f), result)
        n = sum(len(v) for v in result.values())
        print("\n".join(diff) if diff else f"bitwise identical: {n} outputs "
              f"({', '.join(result)})")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
