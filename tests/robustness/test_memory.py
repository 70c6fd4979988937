"""Memory: no growth over thousands of calls, MemoryError (never a crash) when the output or a
workspace cannot be allocated, and 64-bit index arithmetic past 2**31 elements.

Every workspace of the kernels is a numpy allocation made before the GIL is released
(_native/launch.pyx: per-thread scratch; direct.pyx: packed weights, offsets; winograd.pyx:
offsets; transformed weights in _core/weight_cache.py), so a failed allocation is numpy's MemoryError; the C
micro-kernels allocate nothing but fixed-size stack arrays. The tests below hold the package
to that under an address-space limit (RLIMIT_AS, in a subprocess so nothing else is affected).

The tests past 2**31 elements that need ~9 GB of RAM run only with CONV3D_CPU_SLOW_TESTS=1
(``make fuzz-long``); the CI one reads a 2**31-element input that is mostly never touched
(calloc'd pages), so it costs a few MB.
"""
import gc
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conv3d_cpu import Conv3d, conv3d
from conv3d_cpu._native.openmp import openmp_enabled
from hardening import HAVE_PROC, UNDER_ASAN, rss, run_python

SLOW = pytest.mark.skipif(not os.environ.get("CONV3D_CPU_SLOW_TESTS"),
                          reason="needs ~9 GB and minutes; run by make fuzz-long")


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------- leaks

def _rng_data(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _expect_error(fn, *exc):
    def call():
        try:
            fn()
        except exc:
            return
        raise AssertionError("expected an error")
    return call


def leak_scenarios():
    """name -> a callable doing one call; each allocates a fresh output of >= 4 KB."""
    x = _rng_data((1, 4, 8, 8, 8))
    x64 = x.astype(np.float64)
    w16, w1 = _rng_data((16, 4, 3, 3, 3)), _rng_data((1, 4, 3, 3, 3))
    wp = _rng_data((16, 4, 1, 1, 1))
    w8 = _rng_data((8, 4, 3, 3, 3))
    wnan = w8.copy()
    wnan[0, 0, 0, 0, 0] = np.nan
    xnan = x.copy()
    xnan[0, 1, 4, 4, 4] = np.inf
    b16 = _rng_data((16,))
    modules = {mode: Conv3d(4, 8, 3, padding=1, padding_mode=mode, rng=0)
               for mode in ("zeros", "reflect", "replicate", "circular")}
    m = modules["zeros"]
    fresh_weights = [_rng_data((8, 4, 3, 3, 3), seed=s) for s in range(12)]  # > cache capacity
    counter = iter(range(10**9))

    def churn_functional():  # the shared transform cache keeps at most 8 entries
        conv3d(x, fresh_weights[next(counter) % 12], padding=1, algorithm="winograd_f2")

    def churn_module():  # the module's cache keeps at most 2 entries
        m.weight = fresh_weights[next(counter) % 12]
        m(x)

    state = m.state_dict()
    return {
        "direct blocked": lambda: conv3d(x, w16, b16, padding=1, algorithm="direct"),
        "direct rows": lambda: conv3d(x, w1, padding=1, algorithm="direct"),
        "direct pointwise": lambda: conv3d(x, wp, algorithm="direct"),
        "direct float64 strided": lambda: conv3d(x64, w16.astype(np.float64), stride=2),
        "winograd_f2": lambda: conv3d(x, w8, padding=1, algorithm="winograd_f2"),
        "winograd_f4": lambda: conv3d(x, w8, padding=1, algorithm="winograd_f4"),
        "auto with fallback (inf input)": lambda: conv3d(xnan, w8, padding=1, algorithm="auto"),
        "non-finite weights, explicit padding": lambda: conv3d(x, wnan, padding=1),
        "winograd transform cache churn (functional)": churn_functional,
        "winograd transform cache churn (module)": churn_module,
        **{f"module {mode}": (lambda mod=mod: mod(x)) for mode, mod in modules.items()},
        "module unbatched non-contiguous": lambda: m(np.asfortranarray(x[0])),
        "load_state_dict": lambda: m.load_state_dict(state),
        "construct Conv3d": lambda: Conv3d(4, 8, 3, rng=0),
        "error: kernel larger than input": _expect_error(
            lambda: conv3d(x[:, :, :2], w16), ValueError),
        "error: bad algorithm": _expect_error(lambda: conv3d(x, w16, algorithm="x"), ValueError),
        "error: dtype mismatch": _expect_error(lambda: conv3d(x64, w16), TypeError),
        "error: workspace beyond address space": _expect_error(
            lambda: conv3d(x, w1, padding=(0, 2**32, 2**32), stride=(1, 2**33, 2**33)),
            MemoryError),
        "error: output cannot be allocated": _expect_error(
            lambda: conv3d(np.broadcast_to(x, (2**40,) + x.shape[1:]), wp), MemoryError),
        "error: load_state_dict wrong shape": _expect_error(
            lambda: m.load_state_dict({"weight": w16, "bias": state["bias"]}), ValueError),
    }


def measure_growth(fn, calls, warmup=200):
    """(RSS growth in bytes, Python allocated-blocks growth) over ``calls`` calls of fn."""
    for _ in range(warmup):
        fn()
    gc.collect()
    rss0, blocks0 = rss(), sys.getallocatedblocks()
    for _ in range(calls):
        fn()
    gc.collect()
    return rss() - rss0, sys.getallocatedblocks() - blocks0


CALLS = int(os.environ.get("CONV3D_CPU_LEAK_CALLS", "2000"))


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's allocator quarantine makes RSS meaningless")
@pytest.mark.skipif(not HAVE_PROC, reason="reads RSS from /proc")
def test_no_memory_growth_over_thousands_of_calls(record_property):
    # A leak of one output (>= 4 KB) or one workspace per call would add >= 8 MB over 2000
    # calls; a leaked Python object per call would add >= 2000 allocated blocks.
    figures = {}
    for name, fn in leak_scenarios().items():
        figures[name] = measure_growth(fn, CALLS)
    record_property("leak_figures", json.dumps(figures))
    print("\nmemory growth over", CALLS, "calls (RSS bytes, Python blocks):")
    for name, (d_rss, d_blocks) in figures.items():
        print(f"  {name:45s} {d_rss / 2**20:7.2f} MiB  {d_blocks:+6d} blocks")
    bad = {n: f for n, f in figures.items() if f[0] > 2 * 2**20 or f[1] > 200}
    assert not bad, f"memory grows: {bad}"


# ------------------------------------------------------------ MemoryError under RLIMIT_AS

# Each case runs in one subprocess under an address-space limit of (its size at start +
# 1 GiB) and prints the exception it got. Sizes are chosen so that the failing allocation is
# several GiB while everything else stays small.
OOM_CASES = {
    # the output: 1 x 1 x 1 x 1 x 2**31 float32 (8 GiB), from a one-element input
    "output": "conv3d(ones((1, 1, 1, 1, 1)), ones((1, 1, 1, 1, 1)), padding=(0, 0, 2**30))",
    "output (module)": "Conv3d(1, 1, 1, padding=(0, 0, 2**30), rng=0)(ones((1, 1, 1, 1, 1)))",
    # direct, rows path: per-thread padded planes of 2**16 x 2**16 (16 GiB), tiny output
    "direct workspace (planes)": "conv3d(ones((1, 1, 1, 1, 1)), ones((1, 1, 1, 1, 1)), "
                                 "padding=(0, 2**15, 2**15), stride=(1, 2**16, 2**16), "
                                 "algorithm='direct')",
    # direct, blocked path: per-thread padded rows of 2**32 (16 GiB), tiny output
    "direct workspace (rows)": "conv3d(ones((1, 1, 1, 1, 1)), ones((16, 1, 1, 1, 1)), "
                               "padding=(0, 0, 2**31), stride=(1, 1, 2**32), "
                               "algorithm='direct')",
    # explicit padding of the non-zero modes: a (2**15 + 1)^2 plane per channel, 8 GiB
    "replicate padding": "Conv3d(2, 2, 1, padding=(0, 2**14, 2**14), padding_mode="
                         "'replicate', rng=0)(ones((2, 1, 1, 1)))",
    # parameters: 2**31 weights
    "module weights": "Conv3d(2**16, 2**15, 1, rng=0)",
    "module weights (float64, bias)": "Conv3d(2**15, 2**15, (1, 1, 2), dtype=np.float64, rng=0)",
    # Winograd F4 weight transform, 2**20 input channels: U is 216 x 2**20 x one channel block
    # (at least 4 float32 lanes), 3.4 GiB or more: past ASan's 2 GiB allocation limit too
    "winograd weight transform": "conv3d(ones((1, 2**20, 3, 3, 3)), ones((1, 2**20, 3, 3, 3)), "
                                 "algorithm='winograd_f4')",
    # winograd, tile blocks: 2**15 output channels -> at least 64 * 2**15 elements of M per
    # thread, 256 threads (2 GiB; allocated before any thread starts); the transformed
    # weights (64 x 2**15 float32, 8 MiB) fit, and are too few for the whole-call schedule
    # (winograd.WHOLE_MIN_U), which shares its V and M between the threads. Last: its weight
    # transform starts 256 threads, whose stacks then hold most of the address space left.
    "winograd workspace": "conv3d(ones((1, 1, 3, 3, 3)), ones((2**15, 1, 3, 3, 3)), "
                          "algorithm='winograd_f2', num_threads=256)",
}

OOM_SCRIPT = """
import json, os, resource, sys, traceback
import numpy as np
from conv3d_cpu import Conv3d, conv3d
from hardening import UNDER_ASAN, vm_size

def ones(shape):
    return np.ones(shape, np.float32)

if not UNDER_ASAN:
    limit = vm_size() + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = {}
for name, expr in json.loads(sys.argv[1]).items():
    try:
        eval(expr)
        results[name] = "returned"
    except BaseException as e:
        frames = traceback.extract_tb(e.__traceback__)
        results[name] = [type(e).__name__, " > ".join(
            f"{os.path.basename(f.filename)}:{f.name.split('.')[-1]}" for f in frames[1:])]
print(json.dumps(results))
"""


@pytest.mark.skipif(not HAVE_PROC, reason="sizes the RLIMIT_AS from /proc")
def test_memory_error_when_output_or_workspace_cannot_be_allocated():
    if UNDER_ASAN and "max_allocation_size_mb" not in os.environ.get("ASAN_OPTIONS", ""):
        pytest.skip("under ASan without max_allocation_size_mb, big allocations succeed")
    proc = subprocess.run(
        [sys.executable, "-c", OOM_SCRIPT, json.dumps(OOM_CASES)], capture_output=True,
        text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="2",
                 PYTHONPATH=os.pathsep.join([os.path.dirname(__file__)] + sys.path)))
    assert proc.returncode == 0, f"the process died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    raised = {name: r if isinstance(r, str) else r[0] for name, r in results.items()}
    expected = dict.fromkeys(OOM_CASES, "MemoryError")
    if not openmp_enabled():
        # Serial build: num_threads=256 runs on one thread, whose workspace fits.
        expected["winograd workspace"] = "returned"
    assert raised == expected, results
    # and each from the allocation it was meant to exercise
    where = {name: r[1] for name, r in results.items() if not isinstance(r, str)}
    assert where["output"].endswith("forward.py:convolve > buffers.pyx:empty"), where
    scratch = "launch.pyx:launch > openmp.pyx:thread_buffers"  # per-thread workspace
    assert where["direct workspace (planes)"].endswith("direct.pyx:_run > " + scratch), where
    assert where["direct workspace (rows)"].endswith("direct.pyx:_run > " + scratch), where
    if openmp_enabled():
        assert where["winograd workspace"].endswith("winograd.pyx:winograd > " + scratch), where
    assert "winograd.pyx:transform_weights" in where["winograd weight transform"], where
    print(json.dumps(results, indent=1))


# ------------------------------------------------------------ 64-bit index arithmetic

def _sparse_zeros(shape, dtype=np.float32):
    """np.zeros: calloc'd, so pages never touched cost no RAM; skip where it cannot be had."""
    try:
        return np.zeros(shape, dtype)
    except MemoryError:
        pytest.skip(f"cannot reserve {np.prod(shape) * np.dtype(dtype).itemsize / 2**30:.1f} GiB")


@pytest.mark.parametrize("cout", [1, 16])  # rows path (whole planes) and blocked path (rows)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_offsets_past_2_31(cout, dtype):
    # (1, 1, 2049, 1024, 1024): 2**31 + 2**20 elements; the last one is 2**31 + 2**20 - 1
    # elements from the start, and the kernel reads it with a stride that skips all the rest.
    x = _sparse_zeros((1, 1, 2049, 1024, 1024), dtype)
    assert x.size > 2**31
    x[0, 0, -1, -1, -1] = 5
    x[0, 0, -1, 0, 0] = 3
    x[0, 0, 0, -1, 0] = 2
    w = np.full((cout, 1, 1, 1, 1), 2, dtype)
    b = np.arange(cout, dtype=dtype)
    y = conv3d(x, w, b, stride=(2048, 1023, 1023), algorithm="direct")
    expected = np.zeros((2, 2, 2), dtype)
    expected[1, 1, 1], expected[1, 0, 0], expected[0, 1, 0] = 10, 6, 4
    np.testing.assert_array_equal(y[0], expected[None] + b[:, None, None, None])
    # the same through the module (unbatched), with a 2x1x1 kernel reading two planes
    m = Conv3d(1, cout, (2, 1, 1), stride=(2047, 1023, 1023), bias=False, dtype=dtype, rng=0)
    m.weight = np.ones((cout, 1, 2, 1, 1), dtype)
    y = m(x[0])
    assert y.shape == (cout, 2, 2, 2)
    np.testing.assert_array_equal(y[:, 1, 1, 1], 5)   # planes 2047 and 2048
    np.testing.assert_array_equal(y[:, 1, 0, 0], 3)
    np.testing.assert_array_equal(y[:, 0, 1, 0], 2)


def _check_sparse_output(y, corner_value, bias, tol):
    """Output of a 3x3x3 conv (padding 1) of zeros with ``corner_value`` at the last voxel:
    the 2x2x2 outputs next to it hold bias + corner_value, all others the bias (within
    ``tol``: Winograd leaves rounding residue inside the corner tile)."""
    flat = y.reshape(-1)
    chunk = 2**27
    nonzero = 0
    for i in range(0, flat.size, chunk):
        nonzero += np.count_nonzero(np.abs(flat[i:i + chunk] - bias) > tol)
    assert nonzero == 8, nonzero
    np.testing.assert_allclose(y[..., -2:, -2:, -2:], bias + corner_value, rtol=0, atol=tol)


@SLOW
@pytest.mark.parametrize("algorithm, cout", [
    ("direct", 1), ("direct", 8), ("winograd_f2", 1), ("winograd_f4", 1), ("auto", 1)])
def test_output_offsets_past_2_31(algorithm, cout):
    # output of 2**31 + ... elements per batch: 1291^3 (cout 1) or 8 x 646^3 voxels
    side = 1291 if cout == 1 else 646
    need = cout * side**3 * 4  # the output (the input is zeros: calloc'd pages, never written)
    if mem_available() < need + (2 << 30):
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free memory")
    x = _sparse_zeros((1, 1, side, side, side))
    x[0, 0, -1, -1, -1] = 1
    w = np.ones((cout, 1, 3, 3, 3), np.float32)
    y = conv3d(x, w, np.full(cout, 0.5, np.float32), padding=1, algorithm=algorithm)
    assert y.size > 2**31
    for o in range(cout):
        _check_sparse_output(y[0, o], 1.0, 0.5, 0 if algorithm == "direct" else 1e-5)


def test_winograd_tile_origin_beyond_int_range():
    # The same arithmetic as conv3d(x, w, padding=(2**31 + 2, 1, 1), algorithm='winograd_f2')
    # computes for its first tiles, with an output of 4 elements instead of 2**32.
    proc = run_python("""
    import numpy as np
    from conv3d_cpu._native import winograd as _winograd
    x = np.ones((1, 1, 1, 1, 1), np.float32)
    U = _winograd.transform_weights(np.ones((1, 1, 3, 3, 3), np.float32), 1, (2, 2, 2))
    out = np.full((1, 1, 4, 1, 1), np.nan, np.float32)
    _winograd.winograd(x, U, np.zeros(1, np.float32), out, (2**31 + 2, 1, 1), (2, 2, 2),
                       (3, 3, 3), 1, 1)
    print(out.ravel().tolist())
    """)
    assert proc.returncode == 0, f"the process died (rc {proc.returncode})"
    # every output of these tiles lies in the zero padding
    assert proc.stdout.strip().splitlines()[-1] == "[0.0, 0.0, 0.0, 0.0]"
