"""Concurrency: Python threads calling the same module or function at once get exactly the
results of serial calls, and a weight changed between calls is always the one used (Conv3d and
the functional API cache transformed Winograd weights, checked by value).

Every comparison is bitwise: results do not depend on the thread count or on what else runs.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import conv3d_cpu
from conv3d_cpu import Conv3d, conv3d
from hardening import bits

WORKERS = 4
ALGORITHMS = ["auto", "direct", "winograd_f2", "winograd_f4"]


def data(shape, seed, dtype=np.float32, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def parallel(fn, items, workers=WORKERS, rounds=3):
    """fn over items from a thread pool, several rounds with the items in turn shuffled."""
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r in range(rounds):
            order = np.random.default_rng(r).permutation(len(items))
            out = list(pool.map(lambda i: (i, fn(items[i])), order))
            results.append([y for _, y in sorted(out, key=lambda t: t[0])])
    return results


# Layers that take the different kernel paths: blocked, rows (depthwise), pointwise, Winograd.
MODULE_CONFIGS = [
    dict(args=(8, 16, 3), kwargs=dict(padding=1), x=(2, 8, 7, 8, 9)),
    dict(args=(16, 16, 3), kwargs=dict(padding=1), x=(1, 16, 8, 8, 8)),  # auto may pick Winograd
    dict(args=(6, 6, 3), kwargs=dict(padding=1, groups=6), x=(1, 6, 6, 7, 8)),
    dict(args=(8, 24, 1), kwargs=dict(), x=(2, 8, 5, 6, 7)),
    dict(args=(4, 8, (3, 2, 3)), kwargs=dict(padding=(1, 0, 2), stride=(1, 2, 1),
                                              padding_mode="reflect"), x=(1, 4, 6, 6, 6)),
    dict(args=(4, 8, 3), kwargs=dict(padding="same", padding_mode="circular", dtype=np.float64),
         x=(4, 5, 6, 7)),
]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("cfg", MODULE_CONFIGS, ids=lambda c: str(c["args"]))
def test_same_module_from_many_threads(cfg, algorithm):
    kwargs = dict(cfg["kwargs"], algorithm=algorithm, rng=0)
    try:
        m = Conv3d(*cfg["args"], **kwargs)
    except ValueError:  # a Winograd algorithm for a layer it cannot compute
        assert algorithm.startswith("winograd")
        return
    xs = [data(cfg["x"], s, m.dtype) for s in range(8)]
    serial = [bits(m(x)) for x in xs]
    for results in parallel(lambda x: bits(m(x)), xs):
        assert results == serial


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_function_from_many_threads_with_many_weights(algorithm):
    # More distinct weights than the shared transform cache holds (8), all at once: entries
    # are evicted and recomputed under contention; each result must still be its own.
    jobs = []
    for i in range(20):
        dtype = (np.float32, np.float64)[i % 2]
        cin, cout = 2 + i % 3, 3 + 2 * (i % 5)
        x = data((1 + i % 2, cin, 5 + i % 3, 6, 7), i, dtype)
        w = data((cout, cin, 3, 3, 3), 100 + i, dtype, 0.3)
        b = data((cout,), 200 + i, dtype)
        jobs.append((x, w, b, dict(padding=i % 2, algorithm=algorithm,
                                   num_threads=(None, 1, 2)[i % 3])))
    serial = [bits(conv3d(x, w, b, **kw)) for x, w, b, kw in jobs]
    for results in parallel(lambda j: bits(conv3d(j[0], j[1], j[2], **j[3])), jobs, rounds=4):
        assert results == serial


def test_threads_with_different_thread_counts_and_dtypes_at_once():
    m32 = Conv3d(8, 16, 3, padding=1, rng=1)
    m64 = Conv3d(8, 16, 3, padding=1, rng=1, dtype=np.float64)
    x32 = data((2, 8, 9, 9, 9), 0)
    x64 = x32.astype(np.float64)
    w, b = m32.weight, m32.bias
    calls = [
        lambda: m32(x32), lambda: m64(x64),
        lambda: conv3d(x32, w, b, padding=1, num_threads=1),
        lambda: conv3d(x32, w, b, padding=1, num_threads=3),
        lambda: conv3d(x64, w.astype(np.float64), b.astype(np.float64), padding=1,
                       algorithm="winograd_f4", num_threads=2),
        lambda: conv3d(x32, w, b, padding=1, algorithm="direct"),
    ]
    serial = [bits(c()) for c in calls]
    for results in parallel(lambda c: bits(c()), calls * 3, workers=6):
        assert results == serial * 3


# ----------------------------------------------------------- weights changed between calls

def fresh_result(m, x):
    """What ``m(x)`` must return: a new module (empty cache) with m's parameters."""
    twin = Conv3d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                  padding=m.padding, dilation=m.dilation, groups=m.groups,
                  bias=m.bias is not None, padding_mode=m.padding_mode, dtype=m.dtype,
                  algorithm=m.algorithm, rng=0)
    twin.weight = m.weight.copy()
    if m.bias is not None:
        twin.bias = m.bias.copy()
    return bits(twin(x))


@pytest.mark.parametrize("algorithm", ["auto", "winograd_f2", "winograd_f4", "winograd"])
def test_changed_weights_are_always_used_by_concurrent_callers(algorithm):
    m = Conv3d(16, 16, 3, padding=1, rng=3, algorithm=algorithm)
    xs = [data((1, 16, 8, 8, 8), s) for s in range(6)]
    rng = np.random.default_rng(0)
    changes = [
        lambda: setattr(m, "weight", (m.weight * -1.5).astype(m.dtype)),
        lambda: m.load_state_dict({"weight": m.weight[::-1].copy(), "bias": m.bias + 1}),
        lambda: m.reset_parameters(),
        lambda: m.weight.__setitem__((0, 0, 1, 1, 1), 7.0),          # in place, same address
        lambda: m.weight.__iadd__(np.float32(1e-3)),                   # in place, every value
        lambda: setattr(m, "weight", m.weight.copy()),                 # same values, new array
        lambda: m.weight.__setitem__(slice(None), rng.standard_normal(m.weight.shape)),
        lambda: setattr(m, "bias", m.bias * 0),
    ]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for change in changes * 2:
            change()
            expected = [fresh_result(m, x) for x in xs]
            got = list(pool.map(lambda x: bits(m(x)), xs * 3))
            assert got == expected * 3


def test_functional_in_place_weight_change_between_concurrent_rounds():
    x = data((1, 8, 8, 8, 8), 0)
    w = data((8, 8, 3, 3, 3), 1, scale=0.2)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for step in range(6):
            w[step % 8, :, step % 3] += 0.25  # same array, new values
            for algorithm in ("winograd_f2", "winograd_f4", "auto"):
                expected = bits(conv3d(x, w.copy(), padding=1, algorithm=algorithm))
                got = list(pool.map(lambda _: bits(conv3d(x, w, padding=1, algorithm=algorithm)),
                                    range(8)))
                assert got == [expected] * 8


def test_weight_swapped_while_other_threads_compute():
    # A writer swaps the weight array between A and B (attribute assignment is atomic) while
    # readers run forward: every result is exactly A's or B's, never a mix or a stale one.
    m = Conv3d(16, 16, 3, padding=1, bias=False, rng=0)
    wa = m.weight.copy()
    wb = data(m.weight.shape, 9, scale=0.1)
    x = data((1, 16, 8, 8, 8), 1)
    m.weight = wa
    ya = bits(m(x))
    m.weight = wb
    yb = bits(m(x))
    assert ya != yb
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            m.weight = (wa, wb)[i % 2]
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            got = list(pool.map(lambda _: bits(m(x)), range(60)))
    finally:
        stop.set()
        t.join()
    assert all(g in (ya, yb) for g in got)
    # and afterwards the last assigned weight is used
    m.weight = wa
    assert bits(m(x)) == ya


def test_weight_written_during_its_transform_is_not_cached_stale(monkeypatch):
    # Deterministic stand-in for a race: another thread writes the weight in place while a
    # call computes its Winograd transform. That call's own result is the caller's race, but
    # later calls with the new values must use them.
    real = conv3d_cpu._native.winograd.transform_weights
    w = data((8, 8, 3, 3, 3), 2, scale=0.2)
    x = data((1, 8, 8, 8, 8), 3)
    state = {"armed": True}

    def transform_then_concurrent_write(weight, groups, m, num_threads=0):
        u = real(weight, groups, m, num_threads)
        if state["armed"]:
            state["armed"] = False
            w[...] *= -1  # "another thread" writes the weight meanwhile
        return u

    monkeypatch.setattr(conv3d_cpu._native.winograd, "transform_weights", transform_then_concurrent_write)
    conv3d(x, w, padding=1, algorithm="winograd_f2")  # the racing call
    monkeypatch.undo()
    expected = conv3d(x, w.copy(), padding=1, algorithm="winograd_f2")  # new array: no cache hit
    np.testing.assert_array_equal(conv3d(x, w, padding=1, algorithm="winograd_f2"), expected)
