"""Determinism: for each algorithm ('direct', 'winograd', 'winograd_f2', 'winograd_f4', 'auto')
the same input gives bitwise the same output across repeated calls, thread counts (1 to 5 and
the OpenMP default), memory layouts, batch slicing, warm and cold transform caches, the module
and the functional form, and OMP_NUM_THREADS in a fresh process.
"""
import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conv3d_cpu import Conv3d, conv3d
from conv3d_cpu._native.constants import MAX_RANGES
from hardening import bits, budget, run_python
from isa_helpers import ISAS, isa_selected

ALGORITHMS = ["direct", "winograd", "winograd_f2", "winograd_f4", "auto"]
DTYPES = [np.float32, np.float64]
# More threads than the work-stealing ranges (schedule.h), so several threads share a range.
THREADS = [1, 2, 3, 4, 5, MAX_RANGES + 6, None]

# (input shape, weight shape, kwargs): the kernel paths (blocked wide/narrow, rows for
# depthwise-like layers, pointwise, Winograd with partial edge tiles), groups, padding.
LAYERS = [
    ((2, 16, 9, 10, 11), (24, 16, 3, 3, 3), dict(padding=1)),
    ((1, 8, 8, 8, 8), (8, 8, 3, 3, 3), dict(padding=(0, 1, 2))),
    ((3, 6, 7, 7, 7), (6, 1, 3, 3, 3), dict(padding=1, groups=6)),       # depthwise
    ((2, 8, 6, 7, 5), (12, 4, 3, 3, 3), dict(padding="same", groups=2)),
    ((2, 5, 13, 3, 17), (3, 5, 3, 3, 3), dict(padding="valid")),
    ((1, 32, 6, 6, 6), (40, 32, 3, 3, 3), dict(padding=1)),              # wide channel blocks
    # direct only (Winograd needs 3x3x3, stride 1, dilation 1)
    ((2, 12, 5, 6, 7), (20, 12, 1, 1, 1), dict()),                       # pointwise
    ((1, 4, 9, 9, 9), (8, 4, 2, 3, 2), dict(stride=(2, 1, 3), dilation=(1, 2, 1), padding=2)),
    ((2, 3, 8, 8, 40), (2, 3, 3, 3, 3), dict(stride=(1, 1, 1), padding=(1, 1, 0))),  # rows
    # outputs of 2 MiB and more: the blocked and pointwise paths first touch the output's
    # pages, each thread its own share, before any thread stores a result (schedule.h)
    ((1, 1, 16, 32, 32), (32, 1, 3, 3, 3), dict(padding=1)),
    ((1, 4, 8, 32, 32), (64, 4, 1, 1, 1), dict()),
]


def data(shape, seed, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def run(x, w, b, kwargs, algorithm, **extra):
    return conv3d(x, w, b, algorithm=algorithm, **kwargs, **extra)


def winograd_layer(layer):
    _, wshape, kwargs = LAYERS[layer]
    return wshape[2:] == (3, 3, 3) and kwargs.get("stride", 1) in (1, (1, 1, 1)) \
        and kwargs.get("dilation", 1) in (1, (1, 1, 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer, algorithm", [
    (layer, algorithm) for layer in range(len(LAYERS)) for algorithm in ALGORITHMS
    if winograd_layer(layer) or not algorithm.startswith("winograd")])
def test_bitwise_identical_across_calls_and_thread_counts(layer, algorithm, dtype):
    xshape, wshape, kwargs = LAYERS[layer]
    x, w = data(xshape, layer, dtype), data(wshape, 100 + layer, dtype) * 0.2
    b = data(wshape[:1], 200 + layer, dtype)
    ref = bits(run(x, w, b, kwargs, algorithm, num_threads=1))
    for nt in THREADS:
        for _ in range(2):
            assert bits(run(x, w, b, kwargs, algorithm, num_threads=nt)) == ref, nt
    # other layouts of the same values, a fresh weight array (cold transform cache)
    assert bits(run(np.asfortranarray(x), w.copy(), b.copy(), kwargs, algorithm)) == ref
    assert bits(run(x[:, :, ::-1].copy()[:, :, ::-1], w, b, kwargs, algorithm)) == ref
    # each batch element alone, and unbatched
    full = run(x, w, b, kwargs, algorithm)
    for i in range(x.shape[0]):
        assert bits(run(x[i:i + 1], w, b, kwargs, algorithm)) == bits(full[i:i + 1])
        assert bits(run(x[i], w, b, kwargs, algorithm)) == bits(full[i])


# Wide (20 output channels) and narrow (6) channel blocks; 3 * 3 * 3 * 3 = 81 F4 tiles and
# 3 * 5 * 5 * 6 = 450 F2 tiles, so blocks of tiles (and the micro-kernel calls within them)
# change size with the thread count and the batch.
ISA_LAYERS = [((3, 8, 9, 10, 11), (20, 8, 3, 3, 3)), ((3, 5, 9, 10, 11), (6, 5, 3, 3, 3))]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["direct", "winograd_f2", "winograd_f4"])
@pytest.mark.parametrize("layer", range(len(ISA_LAYERS)))
def test_bits_independent_of_blocking_under_every_isa(layer, algorithm, dtype, isa):
    # An output's bits must not depend on how many positions share its micro-kernel call:
    # built by GCC 13, with multiply-add fusion left to the compiler, they did (the unrolled
    # widths were fused differently), and only on the thread counts and batch sizes that
    # pick such widths. Every compiled ISA, since each is its own code.
    xshape, wshape = ISA_LAYERS[layer]
    x, w = data(xshape, 7, dtype), data(wshape, 8, dtype) * 0.2
    b = data(wshape[:1], 9, dtype)
    with isa_selected(isa):
        ref = run(x, w, b, dict(padding=1), algorithm, num_threads=1)
        for nt in (2, 3, 4, 5, 7):
            assert bits(run(x, w, b, dict(padding=1), algorithm, num_threads=nt)) == bits(ref), nt
        for i in range(x.shape[0]):
            assert bits(run(x[i:i + 1], w, b, dict(padding=1), algorithm)) == bits(ref[i:i + 1])
        assert bits(run(x[1:], w, b, dict(padding=1), algorithm)) == bits(ref[1:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_module_bitwise_identical_and_equal_to_functional(padding_mode, algorithm, dtype):
    m = Conv3d(8, 16, 3, padding=1, padding_mode=padding_mode, dtype=dtype, rng=0,
               algorithm=algorithm)
    x = data((2, 8, 7, 8, 9), 1, dtype)
    y = bits(m(x))
    for _ in range(3):
        assert bits(m(x)) == y
    if padding_mode == "zeros":
        assert bits(conv3d(x, m.weight, m.bias, padding=1, algorithm=algorithm)) == y
    # weights reassigned with the same values: same bits (the cache is checked by value)
    m.weight = m.weight.copy()
    assert bits(m(x)) == y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["direct", "auto", "winograd_f2", "winograd_f4"])
def test_special_values_are_deterministic(algorithm, dtype):
    # NaN/Inf in input and weights (explicit zero padding path, 'auto' fallback): same bits,
    # NaN payloads and signs included, for any thread count.
    x = data((2, 8, 8, 8, 8), 3, dtype)
    w = data((8, 8, 3, 3, 3), 4, dtype) * 0.2
    x[0, 1, 2, 3, 4], x[1, 5, 0, 0, 7] = np.nan, -np.inf
    w[3, 2, 0, 1, 2] = np.inf
    ref = bits(conv3d(x, w, None, padding=1, algorithm=algorithm, num_threads=1))
    for nt in THREADS:
        assert bits(conv3d(x, w, None, padding=1, algorithm=algorithm, num_threads=nt)) == ref


@st.composite
def layers(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 6)), draw(st.integers(1, 12))
    k = draw(st.sampled_from([(3, 3, 3), (3, 3, 3), (1, 1, 1), (2, 3, 1)]))
    pad = draw(st.integers(0, 2))
    size = tuple(draw(st.integers(max(1, kk - 2 * pad), 11)) for kk in k)
    return dict(x=(draw(st.integers(1, 3)), cg * groups) + size, w=(og * groups, cg) + k,
                padding=pad, groups=groups, dtype=draw(st.sampled_from(DTYPES)),
                algorithm=draw(st.sampled_from(ALGORITHMS)), seed=draw(st.integers(0, 999)))


@budget(60)
@given(layers())
def test_hypothesis_thread_counts(cfg):
    x, w = data(cfg["x"], cfg["seed"], cfg["dtype"]), data(cfg["w"], cfg["seed"] + 1, cfg["dtype"])
    kwargs = dict(padding=cfg["padding"], groups=cfg["groups"])
    if cfg["algorithm"].startswith("winograd") and cfg["w"][2:] != (3, 3, 3):
        return
    ref = bits(conv3d(x, w, None, algorithm=cfg["algorithm"], num_threads=1, **kwargs))
    for nt in (2, 3, 7):
        assert bits(conv3d(x, w, None, algorithm=cfg["algorithm"], num_threads=nt,
                           **kwargs)) == ref


def test_omp_num_threads_in_fresh_processes():
    # The default thread count comes from OMP_NUM_THREADS, read per call: fresh processes
    # with 1, 2 and 3 threads produce the same bytes for every algorithm.
    code = """
    import hashlib, json
    import numpy as np
    from conv3d_cpu import conv3d
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 9, 10, 11)).astype(np.float32)
    w = (rng.standard_normal((24, 16, 3, 3, 3)) * 0.2).astype(np.float32)
    out = {a: hashlib.sha256(conv3d(x, w, padding=1, algorithm=a).tobytes()).hexdigest()
           for a in ("direct", "winograd", "winograd_f2", "winograd_f4", "auto")}
    print(json.dumps(out))
    """
    digests = []
    for n in ("1", "2", "3"):
        proc = run_python(code, env={"OMP_NUM_THREADS": n})
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1] == digests[2]
    # and equal to this process's results
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 9, 10, 11)).astype(np.float32)
    w = (rng.standard_normal((24, 16, 3, 3, 3)) * 0.2).astype(np.float32)
    here = {a: hashlib.sha256(conv3d(x, w, padding=1, algorithm=a).tobytes()).hexdigest()
            for a in digests[0]}
    assert here == digests[0]


def test_teams_smaller_than_requested_still_compute_every_item():
    # OpenMP may start fewer threads than num_threads asks for (OMP_THREAD_LIMIT here, or
    # OMP_DYNAMIC, or nested regions). Work items are split into one range per requested
    # thread (schedule.h); the ranges of threads that never start must be taken by the
    # others. Same bytes as a 1-thread run, for every kernel path.
    code = """
    import hashlib, json
    import numpy as np
    from conv3d_cpu import conv3d
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 9, 10, 11)).astype(np.float32)
    cases = {
        "blocked": ((24, 16, 3, 3, 3), dict(padding=1, algorithm="direct")),
        "pointwise": ((24, 16, 1, 1, 1), dict(algorithm="direct")),
        "rows": ((16, 1, 3, 3, 3), dict(padding=1, groups=16, algorithm="direct")),
        "winograd": ((24, 16, 3, 3, 3), dict(padding=1, algorithm="winograd_f4")),
    }
    out = {}
    for name, (wshape, kw) in cases.items():
        w = (rng.standard_normal(wshape) * 0.2).astype(np.float32)
        out[name] = [hashlib.sha256(conv3d(x, w, num_threads=nt, **kw).tobytes()).hexdigest()
                     for nt in (1, 8)]
    print(json.dumps(out))
    """
    proc = run_python(code, env={"OMP_THREAD_LIMIT": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, (one, eight) in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        assert one == eight, name


def _with_specials(a, rng):
    """``a`` with about 1 in 20 elements NaN (either sign) or an infinity."""
    flat = a.reshape(-1)
    at = rng.integers(0, flat.size, max(1, flat.size // 20))
    flat[at] = rng.choice(np.array([np.nan, -np.nan, np.inf, -np.inf], a.dtype), at.size)
    return a


# Layers where the NaNs' signs differed between thread counts (found by fuzzing): which of
# several NaN operands an instruction passes on follows its registers, and which kernel
# variant computes an output follows the cut of the work, itself cut by the thread count.
NAN_LAYERS = [
    ((1, 1, 5, 5, 7), (1, 1, 3, 3, 3), dict(), "winograd_f2", np.float32),
    ((1, 5, 11, 5, 3), (8, 5, 2, 2, 2), dict(), "direct", np.float64),
    ((2, 16, 9, 10, 11), (24, 16, 3, 3, 3), dict(padding=1), "winograd_f4", np.float32),
    ((1, 12, 8, 9, 7), (20, 12, 3, 3, 3), dict(stride=2, padding=1), "direct", np.float32),
]


@pytest.mark.parametrize("xshape, wshape, kwargs, algorithm, dtype", NAN_LAYERS)
def test_nan_bits_same_for_any_thread_count(xshape, wshape, kwargs, algorithm, dtype):
    from conv3d_cpu import conv3d_backward
    rng = np.random.default_rng(sum(xshape))
    x = _with_specials(rng.standard_normal(xshape).astype(dtype), rng)
    w = _with_specials(rng.standard_normal(wshape).astype(dtype), rng)
    y1 = conv3d(x, w, algorithm=algorithm, num_threads=1, **kwargs)
    assert np.isnan(y1).any()
    gy = _with_specials(rng.standard_normal(y1.shape).astype(dtype), rng)
    g1 = conv3d_backward(gy, x, w, num_threads=1, **kwargs)
    for t in (2, 3, 4, 5):
        assert bits(conv3d(x, w, algorithm=algorithm, num_threads=t, **kwargs)) == bits(y1), t
        for a, b in zip(conv3d_backward(gy, x, w, num_threads=t, **kwargs), g1):
            assert bits(a) == bits(b), t
