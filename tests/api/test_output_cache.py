"""Results' memory comes from blocks that freed results left (set_output_cache_limit)."""
import gc
import pickle
import threading

import numpy as np
import pytest

import conv3d_cpu
from conv3d_cpu import conv3d, conv_transpose3d
from conv3d_cpu._native import buffers
from reference import conv3d_ref

# 1 x 16 x 40^3 float32 outputs: 4 MiB, above the 1 MiB a kept block needs.
SHAPE = (1, 4, 40, 40, 40)


@pytest.fixture
def limit():
    """Restores the default bound after the test."""
    before = conv3d_cpu.get_output_cache_limit()
    yield
    conv3d_cpu.set_output_cache_limit(before)


def inputs(seed=0, c=4, o=16, shape=SHAPE):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape[:1] + (c,) + shape[2:], dtype=np.float32)
    w = rng.standard_normal((o, c, 3, 3, 3), dtype=np.float32) / 10
    return x, w


def test_default_bound():
    assert conv3d_cpu.get_output_cache_limit() == buffers.DEFAULT_LIMIT == 2**28


def test_a_freed_result_serves_the_next_one(limit):
    x, w = inputs()
    y = conv3d(x, w, padding=1)
    address, expected = y.ctypes.data, y.copy()
    y[...] = np.nan  # what the block held must never show through
    del y
    gc.collect()
    hits = buffers.stats()["hits"]
    y = conv3d(x, w, padding=1)
    assert y.ctypes.data == address
    assert buffers.stats()["hits"] == hits + 1
    np.testing.assert_array_equal(y, expected)
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.owndata


def test_results_are_right_whatever_block_they_reuse(limit):
    # blocks of other sizes and dtypes, written with garbage, then results of many shapes
    for n in (1, 3, 2):
        junk = [conv3d(*inputs(n, o=o)) for o in (8, 16, 24)]
        for j in junk:
            j[...] = np.inf
        del junk
        for o in (16, 8, 20):
            x, w = inputs(n + o, o=o)
            ref = conv3d_ref(x, w, None, padding=1)
            # (atol: the float32 contract of 'auto', which may pick Winograd F(4^3))
            np.testing.assert_allclose(conv3d(x, w, padding=1), ref, rtol=1e-4,
                                       atol=1e-4 * np.abs(ref).max())
    x = np.random.default_rng(5).standard_normal((1, 16, 20, 20, 20), dtype=np.float32)
    wt = np.random.default_rng(6).standard_normal((16, 8, 2, 2, 2), dtype=np.float32)
    a = conv_transpose3d(x, wt, stride=2)
    a[...] = np.nan
    del a
    b = conv_transpose3d(x, wt, stride=2)
    assert np.isfinite(b).all()


def test_zero_keeps_nothing(limit):
    x, w = inputs()
    conv3d_cpu.set_output_cache_limit(0)
    assert buffers.stats()["kept_bytes"] == 0  # lowering the bound freed what was kept
    y = conv3d(x, w, padding=1)
    del y
    gc.collect()
    assert buffers.stats()["kept_bytes"] == 0


def test_the_bound_holds(limit):
    x, w = inputs()
    conv3d_cpu.set_output_cache_limit(10 << 20)  # two 4 MiB results
    ys = [conv3d(x, w, padding=1) for _ in range(5)]
    del ys
    gc.collect()
    s = buffers.stats()
    assert s["kept_bytes"] <= 10 << 20
    assert s["kept_blocks"] == 2


def test_small_results_are_not_kept(limit):
    conv3d_cpu.set_output_cache_limit(1 << 30)
    conv3d_cpu.set_output_cache_limit(0)
    conv3d_cpu.set_output_cache_limit(1 << 30)
    x, w = inputs(shape=(1, 4, 8, 8, 8))
    y = conv3d(x, w, padding=1)
    del y
    gc.collect()
    assert buffers.stats()["kept_bytes"] == 0


def test_pooled_arrays_behave_as_numpy_arrays(limit):
    x, w = inputs()
    y = conv3d(x, w, padding=1)
    expected = y.copy()
    assert np.array_equal(pickle.loads(pickle.dumps(y)), expected)
    view = y.reshape(-1)
    del y
    assert np.array_equal(view, expected.reshape(-1))  # a view keeps its block alive
    del view
    # resizing in place reallocates through the pool's handler: grow, then shrink below 1 MiB
    flat = conv3d(x, w, padding=1)
    flat.resize(flat.size + 1000, refcheck=False)
    np.testing.assert_array_equal(flat[:expected.size], expected.reshape(-1))
    assert not flat[expected.size:].any()  # numpy zeroes what it grew
    flat.resize(100, refcheck=False)
    np.testing.assert_array_equal(flat, expected.reshape(-1)[:100])


def test_concurrent_results_on_threads(limit):
    x, w = inputs()
    expected = conv3d(x, w, padding=1)
    barrier, bad = threading.Barrier(4, timeout=30), []

    def run():
        barrier.wait()
        for _ in range(10):
            y = conv3d(x, w, padding=1, num_threads=1)
            if not np.array_equal(y, expected):
                bad.append(1)
            y[...] = -1
            del y

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not bad


try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import get_handler_name


def test_numpy_allocations_elsewhere_are_untouched():
    x, w = inputs()
    y = conv3d(x, w, padding=1)
    z = y + 1  # numpy's own allocation
    assert get_handler_name(y) == "conv3d_cpu_pool"
    assert get_handler_name(z) == get_handler_name(np.empty(10))


@pytest.mark.parametrize("bound", [None, 0])
def test_kept_and_temporary_arrays_use_the_pool(bound, limit):
    # numpy's allocator madvises arrays >= 4 MiB for huge pages, which can stall their first
    # write on memory compaction: transforms, snapshots, packed weights, strided inputs'
    # copies and weight gradients come from the pool's malloc instead, even with keeping off.
    if bound is not None:
        conv3d_cpu.set_output_cache_limit(bound)
    x, w = inputs(o=64)
    m = conv3d_cpu.Conv3d(4, 64, 3, padding=1, algorithm="winograd", rng=0)
    m(x)
    (snapshot, u), = m._transforms._entries.values()
    assert get_handler_name(snapshot) == get_handler_name(u) == "conv3d_cpu_pool"
    from conv3d_cpu._native import direct, layout
    packed = direct._Workspace.take(1 << 20, np.float32)
    try:
        owner = packed.array
        while owner.base is not None:  # (a view of the thread's kept buffer)
            owner = owner.base
        assert get_handler_name(owner) == "conv3d_cpu_pool"
    finally:
        packed.give_back()
    strided = np.moveaxis(np.moveaxis(x, 1, -1).copy(), -1, 1)
    assert get_handler_name(layout.contiguous(strided)) == "conv3d_cpu_pool"
    gw = conv3d_cpu.grad.conv3d_weight(x, w.shape, np.ones((1, 64) + SHAPE[2:], np.float32),
                                       padding=1)
    assert get_handler_name(gw) == "conv3d_cpu_pool"


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                          (None, TypeError)])
def test_bad_bounds(value, error, limit):
    with pytest.raises(error, match="nbytes"):
        conv3d_cpu.set_output_cache_limit(value)
