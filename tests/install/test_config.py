"""show_config(), instruction-set selection (CONV3D_CPU_ISA), OpenMP threads and the GIL.

* show_config() prints / returns the version, the ISA chosen and those available, the OpenMP
  runtime and thread count, and the compiler and flags recorded at build time.
* CONV3D_CPU_ISA is honoured at import (checked in fresh interpreters), an invalid value fails
  the import with a clear ValueError, and the same layers give the same results, up to float
  rounding, under every ISA this CPU supports.
* The default thread count is omp_get_max_threads() read per call: OMP_NUM_THREADS and
  threadpoolctl limits apply, and threadpoolctl sees our OpenMP runtime.
* Kernels release the GIL: convolutions in several Python threads run at the same time.
"""
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import conv3d_cpu
from conv3d_cpu import conv3d, show_config
from conv3d_cpu._native import isa as _isa, openmp as _openmp
from isa_helpers import HAS_ISA_SWITCH, ISAS, isa_selected
from reference import assert_conv_close, check_conv, conv3d_ref

OPENMP = _openmp.openmp_enabled()
needs_openmp = pytest.mark.skipif(
    not OPENMP, reason="built without OpenMP (CONV3D_CPU_OPENMP=0 or a compiler without it)")
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(conv3d_cpu.__file__)))


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter that imports this same conv3d_cpu build."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CONV3D_CPU_ISA", "OMP_NUM_THREADS")}
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_ROOT, environ.get("PYTHONPATH")) if p)
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, cwd=PACKAGE_ROOT, timeout=300)


def check_ran(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


IMPORTS_THIS_BUILD = (
    "import os, conv3d_cpu; "
    f"assert os.path.dirname(os.path.dirname(conv3d_cpu.__file__)) == {PACKAGE_ROOT!r}, "
    "conv3d_cpu.__file__; "
)

# ---------------------------------------------------------------------------------------------
# show_config
# ---------------------------------------------------------------------------------------------


def test_show_config_is_exported():
    assert "show_config" in conv3d_cpu.__all__
    assert conv3d_cpu.show_config is show_config


def test_show_config_dict():
    cfg = show_config(mode="dicts")
    assert cfg["version"] == conv3d_cpu.__version__
    isa = cfg["isa"]
    assert isa["selected"] == _isa.current_isa()
    assert isa["available"] == list(_isa.available_isas())
    assert isa["compiled"] == list(_isa.compiled_isas())
    assert "baseline" in isa["available"]
    assert set(isa["available"]) <= set(isa["compiled"]) <= set(_isa.ISA_NAMES)
    omp = cfg["openmp"]
    assert omp["enabled"] is OPENMP
    assert omp["num_threads"] == _openmp.default_num_threads() >= 1
    if not OPENMP:
        assert omp["library"] is None and omp["runtime"] is None
    build = cfg["build"]
    assert build is not None, "no conv3d_cpu/_native/build_info.py: setup.py should write it"
    assert build["openmp"] is OPENMP
    assert build["compiler"]
    assert build["native"] == ("-march=native" in build["all_compile_args"])
    if build["compiler_type"] != "msvc":
        # -O3, but make sanitize builds at -O1 (setup.py's CONV3D_CPU_OPTIMIZE)
        args = build["all_compile_args"]
        levels = [a for a in args if re.fullmatch(r"-O[0-3sg]", a)]
        assert levels[-1:] == ["-O1" if "-fsanitize=address,undefined" in args else "-O3"], args
        assert ("-fopenmp" in build["all_compile_args"]) is OPENMP
    assert cfg["runtime"]["numpy"] == np.__version__


def test_show_config_prints(capsys):
    assert show_config() is None
    out = capsys.readouterr().out
    cfg = show_config(mode="dicts")
    assert f"conv3d_cpu {conv3d_cpu.__version__}" in out
    assert f"selected: {cfg['isa']['selected']}" in out
    assert f"available: {', '.join(cfg['isa']['available'])}" in out
    assert "OpenMP:" in out and "Build:" in out
    assert ("enabled: yes" if OPENMP else "enabled: no") in out
    assert (cfg["build"]["compiler_version"] or cfg["build"]["compiler"]) in out
    assert " ".join(cfg["build"]["all_compile_args"]) in out


def test_show_config_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts'"):
        show_config(mode="yaml")


@needs_openmp
def test_openmp_runtime_is_found():
    omp = show_config(mode="dicts")["openmp"]
    assert omp["library"] and os.path.isfile(omp["library"]), omp
    assert omp["runtime"] in ("GNU libgomp", "LLVM libomp", "Intel libiomp", "MSVC vcomp"), omp


# ---------------------------------------------------------------------------------------------
# Instruction sets
# ---------------------------------------------------------------------------------------------

needs_isa_switch = pytest.mark.skipif(not HAS_ISA_SWITCH, reason="no per-ISA dispatch")


def _cpu_vendor_family():
    """(vendor_id, cpu family) from /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if "vendor_id" not in fields or "cpu family" not in fields:
        return None
    return fields["vendor_id"], int(fields["cpu family"])


@needs_isa_switch
def test_default_isa_is_the_best_for_this_cpu():
    out = check_ran(run_python(IMPORTS_THIS_BUILD + "from conv3d_cpu._native import isa as _isa; "
                               "print(_isa.current_isa())"))
    expected = ISAS[-1]
    if expected == "avx512_zmm":
        # 512-bit vectors by default where the FMA units are 512 bits wide: Intel, and AMD
        # from Zen 5 (family 26); Zen 4 (family 25) splits them in two
        cpu = _cpu_vendor_family()
        if cpu is None:
            pytest.skip("CPU vendor unknown (no /proc/cpuinfo)")
        vendor, family = cpu
        if not (vendor == "GenuineIntel" or (vendor == "AuthenticAMD" and family >= 26)):
            expected = "avx512"
    assert out == expected


@needs_isa_switch
@pytest.mark.skipif("avx512_zmm" not in ISAS, reason="this CPU has no AVX-512")
@pytest.mark.parametrize("algorithm", ["direct", "winograd_f4"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_512_bit_kernels_leave_narrow_layers_to_256_bit_ones(dtype, algorithm):
    # Fewer channels per group than 16 float (8 double) lanes: avx512_zmm computes with
    # avx512's kernels (bitwise the same); wider layers are computed correctly either way.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16, 6, 7, 9)).astype(dtype)
    narrow = rng.standard_normal((16, 2, 3, 3, 3)).astype(dtype)     # groups=8: 2 -> 2
    wide = rng.standard_normal((40, 16, 3, 3, 3)).astype(dtype)
    ys = {}
    for isa in ("avx512", "avx512_zmm"):
        with isa_selected(isa):
            ys[isa] = (conv3d(x, narrow, groups=8, padding=1, algorithm=algorithm),
                       conv3d(x, wide, padding=1, algorithm=algorithm))
    assert ys["avx512"][0].tobytes() == ys["avx512_zmm"][0].tobytes()
    np.testing.assert_allclose(ys["avx512_zmm"][1], ys["avx512"][1],
                               rtol=1e-4 if dtype == np.float32 else 1e-11,
                               atol=1e-3 if dtype == np.float32 else 1e-11)


@needs_isa_switch
@pytest.mark.parametrize("isa", ISAS)
def test_isa_env_is_honoured(isa):
    code = IMPORTS_THIS_BUILD + (
        "from conv3d_cpu._native import isa as _isa; cfg = conv3d_cpu.show_config(mode='dicts'); "
        "print(_isa.current_isa(), cfg['isa']['selected'], cfg['isa']['CONV3D_CPU_ISA'])")
    assert check_ran(run_python(code, CONV3D_CPU_ISA=isa)).split() == [isa] * 3


@needs_isa_switch
@pytest.mark.parametrize("value", ["sse9", "AVX2", "avx-512", "native"])
def test_invalid_isa_env_fails_import_clearly(value):
    proc = run_python("import conv3d_cpu", CONV3D_CPU_ISA=value)
    assert proc.returncode != 0
    assert "ValueError: CONV3D_CPU_ISA must be one of baseline, avx2, avx512, avx512_zmm, got " \
        f"{value!r}" in proc.stderr, proc.stderr


@needs_isa_switch
@pytest.mark.parametrize("isa", [n for n in _isa.ISA_NAMES if n not in ISAS] or
                         [pytest.param(None, marks=pytest.mark.skip(
                             reason="this CPU supports every ISA of this build"))])
def test_unsupported_isa_env_fails_import_clearly(isa):
    proc = run_python("import conv3d_cpu", CONV3D_CPU_ISA=isa)
    assert proc.returncode != 0
    assert (f"ISA {isa!r} is not supported by this CPU" in proc.stderr
            or f"ISA {isa!r} was not compiled into this build" in proc.stderr), proc.stderr


# Representative layers: (x shape, out channels, kernel, stride, padding, dilation, groups).
LAYERS = {
    "unet-3x3x3": ((1, 8, 10, 10, 10), 8, 3, 1, 1, 1, 1),
    "down-stride2": ((2, 3, 9, 11, 13), 16, 3, 2, 1, 1, 1),
    "depthwise": ((1, 16, 6, 6, 6), 16, 3, 1, 1, 1, 16),
    "grouped-dilated": ((1, 6, 5, 7, 9), 10, (1, 3, 5), 1, (0, 2, 2), (1, 2, 1), 2),
    "pointwise": ((2, 12, 4, 4, 4), 24, 1, 1, 0, 1, 1),
    "c3d-first": ((1, 3, 4, 14, 14), 17, 3, 1, 1, 1, 1),
    "k2-stride2": ((1, 4, 8, 12, 7), 33, 2, 2, 0, 1, 1),
}
# Winograd's rounding error scales with the tile's magnitudes (see accuracy/test_winograd.py): bound it
# by K * gamma_n * max(sum|w*x|), K the transform amplification.
WINOGRAD_K = {"winograd_f2": 4.0, "winograd_f4": 64.0}


def _layer(name, dtype):
    xshape, cout, k, stride, padding, dilation, groups = LAYERS[name]
    k = (k,) * 3 if isinstance(k, int) else k
    rng = np.random.default_rng(sum(xshape) * cout)
    x = rng.standard_normal(xshape).astype(dtype)
    fan_in = xshape[1] // groups * int(np.prod(k))
    w = (rng.uniform(-1, 1, (cout, xshape[1] // groups) + k) / np.sqrt(fan_in)).astype(dtype)
    b = rng.uniform(-1, 1, cout).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _winograd_eligible(w, kw):
    return w.shape[2:] == (3, 3, 3) and kw["stride"] == 1 and kw["dilation"] == 1


def _layer_algorithms():
    for name in sorted(LAYERS):
        xshape, _, k, stride, _, dilation, _ = LAYERS[name]
        eligible = k == 3 and stride == 1 and dilation == 1
        for algorithm in ["direct", "auto"] + (["winograd_f2", "winograd_f4"] if eligible else []):
            yield name, algorithm


@needs_isa_switch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, algorithm", list(_layer_algorithms()))
def test_isas_agree(name, algorithm, dtype):
    """The same layer under every supported ISA: each result within float rounding of the
    float64 reference, so any two ISAs agree within twice that bound."""
    x, w, b, kw = _layer(name, dtype)
    assert _winograd_eligible(w, kw) or not algorithm.startswith("winograd")
    results = {}
    for isa in ISAS:
        with isa_selected(isa):
            results[isa] = conv3d(x, w, b, algorithm=algorithm, **kw)
            # and the result does not depend on the thread count under any ISA
            np.testing.assert_array_equal(
                conv3d(x, w, b, algorithm=algorithm, num_threads=1, **kw), results[isa])
    args = (kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    expected = conv3d_ref(x, w, b, *args)
    bound = conv3d_ref(np.abs(x), np.abs(w), np.abs(b), *args)
    n = int(np.prod(w.shape[1:])) + 3
    u = np.finfo(dtype).eps / 2
    gamma = n * u / (1 - n * u)
    winograd = algorithm.startswith("winograd") or (
        algorithm == "auto" and _winograd_eligible(w, kw))
    if winograd:
        tol = WINOGRAD_K.get(algorithm, max(WINOGRAD_K.values())) * gamma * bound.max()
    else:
        tol = 2 * gamma * bound + np.finfo(dtype).tiny
    base = results["baseline"]
    for isa, y in results.items():
        assert y.shape == expected.shape and y.dtype == dtype
        if not winograd:
            check_conv(y, x, w, b, *args)
        diff = np.abs(y.astype(np.float64) - base)
        assert np.all(diff <= tol), (
            f"{isa} vs baseline: max diff {diff.max():.3e} over the rounding bound")


@needs_isa_switch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isas_agree_with_torch(dtype):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _layer("unet-3x3x3", dtype)
    expected = torch.nn.functional.conv3d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **kw).numpy()
    args = (kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    bound = conv3d_ref(np.abs(x), np.abs(w), np.abs(b), *args)
    fan_in = int(np.prod(w.shape[1:]))
    for isa in ISAS:
        with isa_selected(isa):
            y = conv3d(x, w, b, algorithm="direct", **kw)
        # both PyTorch and we are within gamma_n(dtype) of the exact result
        assert_conv_close(y, expected.astype(np.float64), 2 * bound, fan_in, dtype)


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "3"])
def test_omp_num_threads_sets_the_default(value):
    code = IMPORTS_THIS_BUILD + (
        "from conv3d_cpu._native import openmp as h; import numpy as np; "
        "x = np.ones((1, 2, 4, 4, 4), np.float32); w = np.ones((3, 2, 3, 3, 3), np.float32); "
        "y = conv3d_cpu.conv3d(x, w, padding=1); assert y[0, 0, 1, 1, 1] == 54; "
        "print(h.default_num_threads(), conv3d_cpu.show_config(mode='dicts')"
        "['openmp']['num_threads'])")
    out = check_ran(run_python(code, OMP_NUM_THREADS=value)).split()
    expected = value if OPENMP else "1"
    assert out == [expected, expected]


@needs_openmp
def test_threadpoolctl_lists_our_openmp_runtime():
    pytest.importorskip("threadpoolctl")
    code = IMPORTS_THIS_BUILD + (
        "import threadpoolctl; "
        "lib = conv3d_cpu.show_config(mode='dicts')['openmp']['library']; "
        "info = [i for i in threadpoolctl.threadpool_info() if i['user_api'] == 'openmp']; "
        "print(lib); print('\\n'.join(os.path.realpath(i['filepath']) for i in info))")
    ours, *listed = check_ran(run_python(code)).splitlines()
    assert ours != "None"
    assert ours in listed, f"threadpoolctl lists {listed}, our OpenMP runtime is {ours}"


@needs_openmp
def test_threadpool_limits_apply_per_call():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = _openmp.default_num_threads()
    target = 1 if before != 1 else 2
    with threadpoolctl.threadpool_limits(limits=target, user_api="openmp"):
        assert _openmp.default_num_threads() == target
        assert show_config(mode="dicts")["openmp"]["num_threads"] == target
    assert _openmp.default_num_threads() == before


def _long_and_short_calls(x_long, w, x_short, w_short, y_short):
    """Run one long call in a thread and short calls in another until it ends.

    Returns (seconds the long call took, times at which short calls finished during it)."""
    start = threading.Barrier(2)
    done = threading.Event()
    span, finished, errors = {}, [], []

    def long_call():
        try:
            start.wait()
            span["start"] = time.perf_counter()
            conv3d(x_long, w, padding=1, algorithm="direct", num_threads=1)
            span["end"] = time.perf_counter()
        except BaseException as e:  # reported in the main thread
            errors.append(e)
        finally:
            done.set()

    def short_calls():
        try:
            start.wait()
            while not done.is_set():
                y = conv3d(x_short, w_short, padding=1, num_threads=1)
                finished.append(time.perf_counter())
                if not np.array_equal(y, y_short):
                    raise AssertionError("concurrent short call gave another result")
        except BaseException as e:
            errors.append(e)
            done.set()

    threads = [threading.Thread(target=f) for f in (long_call, short_calls)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors
    t0, t1 = span["start"], span["end"]
    return t1 - t0, [t - t0 for t in finished if t0 < t < t1]


def test_kernels_release_the_gil():
    """While one Python thread runs a long convolution, another keeps finishing short ones.

    If a kernel held the GIL, the second thread could not finish anything for the whole
    duration of the long call. The check is on the longest stretch without progress, not on
    speed-up, so it holds on a loaded machine or a single free core (the OS still time-slices
    the two threads every few milliseconds); a busy machine gets up to three tries, which a
    kernel holding the GIL would fail every time.
    """
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((16, 16, 3, 3, 3)) / 20).astype(np.float32)
    x1 = rng.standard_normal((1, 16, 20, 20, 20)).astype(np.float32)
    per_sample = []
    for _ in range(3):
        t = time.perf_counter()
        conv3d(x1, w, padding=1, algorithm="direct", num_threads=1)
        per_sample.append(time.perf_counter() - t)
    n = int(min(max(np.ceil(0.5 / max(min(per_sample), 1e-4)), 1), 2000))  # ~0.5 s, 1 thread
    x_short = rng.standard_normal((1, 2, 6, 6, 6)).astype(np.float32)
    w_short = rng.standard_normal((4, 2, 3, 3, 3)).astype(np.float32)
    y_short = conv3d(x_short, w_short, padding=1, num_threads=1)
    report = []
    for _ in range(3):
        took, during = _long_and_short_calls(np.repeat(x1, n, axis=0), w, x_short, w_short,
                                             y_short)
        gap = float(np.diff([0.0, *during, took]).max())
        if len(during) >= 3 and gap < 0.5 * took:
            return
        report.append(f"long call {took:.3f} s, {len(during)} short calls meanwhile, "
                      f"longest gap {gap:.3f} s")
        if took < 0.3:
            n *= 2
    pytest.fail("the GIL looks held during a convolution: " + "; ".join(report))
