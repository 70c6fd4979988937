"""Smoke test of an installed wheel (`make wheel-test` runs it in a fresh virtual environment).

Checks that the package imports from site-packages (not from a source tree), holds every
module of the source tree it was built from (each .py, an extension for each .pyx, the .pxd and
.h files, no C sources), was built with the default flags (OpenMP, no -march=native), calls
the OpenMP runtime that auditwheel bundled into the wheel, and computes correct results under
every ISA this CPU supports, with any thread count. Needs only numpy; exits non-zero on the
first failure.
"""
import glob
import importlib.machinery
import os
import subprocess
import sys
import sysconfig

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import conv3d_cpu
from conv3d_cpu import Conv3d, conv3d
from conv3d_cpu._native import isa as _isa

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conv3d_cpu")


def check_files(pkg):
    """The installed package has what the source tree says it should, and no build inputs."""
    def rel(root, pattern):
        return {os.path.relpath(p, root)
                for p in glob.glob(os.path.join(root, "**", pattern), recursive=True)}

    installed = rel(pkg, "*")
    wanted = set()
    for pattern in ("*.py", "*.pxd", "*.h"):
        wanted |= rel(SOURCE, pattern)
    missing = sorted(wanted - installed)
    assert not missing, f"not in the wheel: {missing}"
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for pyx in rel(SOURCE, "*.pyx"):
        stem = pyx[:-len(".pyx")]
        assert any(stem + suffix in installed for suffix in suffixes), f"no extension: {pyx}"
    extra = sorted(f for f in installed if f.endswith((".c", ".pyx")))
    assert not extra, f"build inputs in the wheel: {extra}"
    assert "_native/build_info.py" in installed
    print(f"  files: {len(installed)} in the package, every module of the source tree")


def reference(x, w, b, padding):
    """float64 F.conv3d (stride 1, dilation 1, groups 1, zero padding)."""
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(padding, padding)] * 3)
    win = sliding_window_view(x, w.shape[2:], axis=(2, 3, 4))
    return np.einsum("ncdhwijk,ocijk->nodhw", win, w.astype(np.float64)) + b[:, None, None, None]


def main():
    pkg = os.path.dirname(os.path.abspath(conv3d_cpu.__file__))
    site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    assert os.path.realpath(os.path.dirname(pkg)) in site, f"not imported from site-packages: {pkg}"
    check_files(pkg)
    conv3d_cpu.show_config()
    cfg = conv3d_cpu.show_config(mode="dicts")

    build = cfg["build"]
    assert build is not None, "the wheel has no _native/build_info.py"
    assert build["openmp"], "the wheel was built without OpenMP"
    assert not build["native"], "the wheel was built with -march=native"
    assert not any(a.startswith(("-march", "-mtune=native")) for a in build["all_compile_args"]), \
        build["all_compile_args"]

    omp = cfg["openmp"]
    assert omp["enabled"]
    lib = omp["library"]
    assert lib and os.path.dirname(lib) == os.path.realpath(pkg + ".libs"), \
        f"OpenMP runtime not the one bundled in the wheel: {lib}"

    isas = cfg["isa"]["available"]
    assert "baseline" in isas, cfg["isa"]
    # the best this CPU runs, but 512-bit vectors only on Intel and on AMD from Zen 5 (cpu
    # family 26), whose FMA units are 512 bits wide (isa.default_isa)
    default = isas[-1]
    if default == "avx512_zmm":
        try:
            with open("/proc/cpuinfo") as f:
                info = f.read()
            family = int(info.split("cpu family")[1].split(":")[1].split()[0])
            wide = "GenuineIntel" in info or ("AuthenticAMD" in info and family >= 26)
        except (OSError, IndexError, ValueError):
            wide = _isa.default_isa() == "avx512_zmm"  # vendor unknown here
        default = "avx512_zmm" if wide else "avx512"
    assert cfg["isa"]["selected"] == (os.environ.get("CONV3D_CPU_ISA") or default), cfg["isa"]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 7, 9)).astype(np.float32)
    w = (rng.standard_normal((11, 5, 3, 3, 3)) / 12).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    expected = reference(x, w, b, 1)
    bound = reference(np.abs(x), np.abs(w), np.abs(b), 1)
    for isa in isas:
        _isa.use_isa(isa)
        for algorithm in ("direct", "auto", "winograd_f2"):
            y1 = conv3d(x, w, b, padding=1, algorithm=algorithm, num_threads=1)
            y2 = conv3d(x, w, b, padding=1, algorithm=algorithm, num_threads=2)
            np.testing.assert_array_equal(y1, y2)  # deterministic for any thread count
            err = np.abs(y1 - expected).max()
            assert err <= 1e-4 * bound.max(), (isa, algorithm, err)
        print(f"  {isa}: direct/auto/winograd_f2 match the float64 reference")
    _isa.use_isa(None)

    m = Conv3d(5, 4, 3, padding="same", padding_mode="reflect", rng=0)
    assert m(x).shape == (2, 4, 6, 7, 9)

    bad = subprocess.run([sys.executable, "-c", "import conv3d_cpu"], capture_output=True,
                         text=True, env={**os.environ, "CONV3D_CPU_ISA": "sse9"})
    assert bad.returncode != 0 and "CONV3D_CPU_ISA must be one of" in bad.stderr, bad.stderr
    print("wheel smoke test: OK")


if __name__ == "__main__":
    main()
