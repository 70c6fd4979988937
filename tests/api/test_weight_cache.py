"""The transformed-weight cache: bounded by bytes, never stale, configurable."""
import numpy as np
import pytest

import conv3d_cpu
from conv3d_cpu import conv3d
from conv3d_cpu._core import weight_cache
from conv3d_cpu._native import winograd


@pytest.fixture
def counted_transforms(monkeypatch):
    """Counts the weight transforms the functional API computes; an empty cache first."""
    calls = []
    real = winograd.transform_weights

    def counting(w, groups, m, num_threads=0):
        calls.append(w.shape)
        return real(w, groups, m, num_threads)

    monkeypatch.setattr(winograd, "transform_weights", counting)
    limit = conv3d_cpu.get_weight_cache_limit()
    conv3d_cpu.set_weight_cache_limit(0)  # (empties it)
    conv3d_cpu.set_weight_cache_limit(limit)
    yield calls
    conv3d_cpu.set_weight_cache_limit(0)
    conv3d_cpu.set_weight_cache_limit(limit)


def layers(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((8 + i, 6, 3, 3, 3)).astype(np.float32) for i in range(n)]


def test_default_limit_is_documented_value():
    assert conv3d_cpu.get_weight_cache_limit() == weight_cache.DEFAULT_FUNCTIONAL_LIMIT == 2**30


def test_a_network_of_many_winograd_layers_transforms_each_once(counted_transforms):
    # More layers than the old 8-entry cache held: every one is kept under the byte bound.
    x = np.random.default_rng(1).standard_normal((1, 6, 8, 8, 8)).astype(np.float32)
    ws = layers(20)
    first = [conv3d(x, w, padding=1, algorithm="winograd_f4") for w in ws]
    assert len(counted_transforms) == 20
    again = [conv3d(x, w, padding=1, algorithm="winograd_f4") for w in ws]
    assert len(counted_transforms) == 20
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_the_byte_bound_holds_and_evicts_the_least_recently_used(counted_transforms):
    x = np.random.default_rng(2).standard_normal((1, 6, 8, 8, 8)).astype(np.float32)
    ws = layers(6)
    conv3d(x, ws[0], padding=1, algorithm="winograd_f4")
    one = weight_cache.functional_cache.nbytes
    conv3d_cpu.set_weight_cache_limit(int(3.5 * one))  # room for three of these layers
    for w in ws[:3]:
        conv3d(x, w, padding=1, algorithm="winograd_f4")
    assert len(counted_transforms) == 3  # (ws[0] was a hit)
    conv3d(x, ws[0], padding=1, algorithm="winograd_f4")  # used: the newest now
    conv3d(x, ws[3], padding=1, algorithm="winograd_f4")  # evicts ws[1], the oldest
    assert weight_cache.functional_cache.nbytes <= 3.5 * one
    n = len(counted_transforms)
    conv3d(x, ws[0], padding=1, algorithm="winograd_f4")
    assert len(counted_transforms) == n  # still there
    conv3d(x, ws[1], padding=1, algorithm="winograd_f4")
    assert len(counted_transforms) == n + 1  # evicted before


def test_limit_zero_keeps_nothing_and_results_stay_right(counted_transforms):
    conv3d_cpu.set_weight_cache_limit(0)
    x = np.random.default_rng(3).standard_normal((1, 6, 8, 8, 8)).astype(np.float32)
    w = layers(1)[0]
    y0 = conv3d(x, w, padding=1, algorithm="winograd_f2")
    y1 = conv3d(x, w, padding=1, algorithm="winograd_f2")
    assert len(counted_transforms) == 2 and weight_cache.functional_cache.nbytes == 0
    np.testing.assert_array_equal(y0, y1)


def test_in_place_change_after_eviction_and_back(counted_transforms):
    x = np.random.default_rng(4).standard_normal((1, 6, 8, 8, 8)).astype(np.float32)
    w = layers(1)[0]
    y0 = conv3d(x, w, padding=1, algorithm="winograd_f4")
    w[0, 0, 1, 1, 1] += 1.0  # same array, new values: recomputed
    y1 = conv3d(x, w, padding=1, algorithm="winograd_f4")
    assert len(counted_transforms) == 2 and not np.array_equal(y0, y1)
    w[0, 0, 1, 1, 1] -= 1.0
    np.testing.assert_array_equal(conv3d(x, w, padding=1, algorithm="winograd_f4"), y0)


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                          ("1GB", TypeError), (None, TypeError)])
def test_bad_limits(value, error):
    with pytest.raises(error, match="nbytes"):
        conv3d_cpu.set_weight_cache_limit(value)


@pytest.mark.parametrize("n", [0, 1, 17, 1 << 16, (1 << 19) + 5, 3 << 20])
def test_same_bytes(n):
    a = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    for threads in (1, 2, 3):
        assert winograd.same_bytes(a, a.copy(), threads)
        if n:
            for i in {0, n // 2, n - 1}:  # a difference in any chunk
                b = a.copy()
                b[i] = np.nextafter(b[i], np.inf)
                assert not winograd.same_bytes(a, b, threads)
    assert not winograd.same_bytes(a, np.zeros(n + 1, np.float32))


def test_same_bytes_compares_bits():
    nan = np.array([np.nan, 1.0], np.float32)
    assert winograd.same_bytes(nan, nan.copy())          # the same NaN: the same transform
    assert not winograd.same_bytes(np.array([0.0]), np.array([-0.0]))  # the signs differ


def test_a_stale_transform_gives_its_memory_to_the_new_one():
    # Training changes the weights in place every step: the stale U's block goes back to the
    # buffer pool before the new U is allocated, which reuses it (the peak holds one U).
    limit = conv3d_cpu.get_output_cache_limit()
    conv3d_cpu.set_output_cache_limit(0)  # (empties the pool: no block of earlier tests' fits)
    conv3d_cpu.set_output_cache_limit(1 << 28)
    try:
        cache = weight_cache.TransformCache(max_entries=2)
        w = np.random.default_rng(3).standard_normal((64, 64, 3, 3, 3)).astype(np.float32)
        u = cache.get(w, 1, (4, 4, 4))
        assert u.nbytes >= 1 << 20  # (the pool keeps blocks of 1 MiB and more)
        where = u.ctypes.data
        del u
        w[0, 0, 0, 0, 0] += 1.0
        u = cache.get(w, 1, (4, 4, 4))
        assert u.ctypes.data == where
        np.testing.assert_array_equal(u, winograd.transform_weights(w, 1, (4, 4, 4)))
        # a transform still held by a caller is never written: the new one goes elsewhere
        held, kept = u, u.copy()
        w[0, 0, 0, 0, 0] += 1.0
        u = cache.get(w, 1, (4, 4, 4))
        assert u.ctypes.data != held.ctypes.data
        np.testing.assert_array_equal(held, kept)
        np.testing.assert_array_equal(u, winograd.transform_weights(w, 1, (4, 4, 4)))
    finally:
        conv3d_cpu.set_output_cache_limit(limit)
