"""Conv3d's parameters under concurrency and copies: a forward sees the old or the new
parameters, never one of each (reset_parameters, load_state_dict, setters), and a module
survives copy.deepcopy and pickle with its parameters, seed state and results."""
import copy
import pickle
import threading
import time

import numpy as np
import pytest

from conv3d_cpu import Conv3d


def _sees_mixed_parameters(update, calls=3000, generations=200):
    """Call forward on one thread while another runs ``update(m, g)`` for g = 1, 2, ...,
    each setting weight = g everywhere and bias = -g, until both ``calls`` forwards and
    ``generations`` updates have run (a tiny forward can finish thousands of calls inside
    one GIL switch interval, so a fixed call count alone may overlap no update); return
    (forwards that saw one generation's weight with another's bias, generations). The
    input is one 1 at the centre of a 3^3 volume: the corner output's window (padding 1)
    holds it once, so a consistent pair gives g - g = 0 there, a mixed one a nonzero
    value."""
    m = Conv3d(1, 1, 3, padding=1, rng=0)
    update(m, 0)
    x = np.zeros((1, 1, 3, 3, 3), np.float32)
    x[0, 0, 1, 1, 1] = 1.0
    stop, corners, done = threading.Event(), [], [0]
    deadline = time.monotonic() + 60.0

    def read():
        while ((len(corners) < calls or done[0] < generations)
               and time.monotonic() < deadline):
            corners.append(float(m(x)[0, 0, 0, 0, 0]))
        stop.set()

    t = threading.Thread(target=read)
    t.start()
    while not stop.is_set():
        update(m, done[0] + 1)
        done[0] += 1
    t.join()
    return sum(c != 0.0 for c in corners), done[0]


def _load(m, g):
    m.load_state_dict({"weight": np.full((1, 1, 3, 3, 3), g, np.float32),
                       "bias": np.full(1, -g, np.float32)})


def test_load_state_dict_is_atomic_for_concurrent_forwards():
    mixed, generations = _sees_mixed_parameters(_load)
    assert generations >= 200
    assert mixed == 0


class _Draws:
    """An rng whose g-th pair of draws is weight g, then bias -g (reset_parameters draws the
    weight first)."""

    def __init__(self, g):
        self.g = g

    def uniform(self, low, high, size):
        shape = (size,) if np.isscalar(size) else tuple(size)
        return np.full(shape, -self.g if len(shape) == 1 else self.g, np.float64)


def test_reset_parameters_is_atomic_for_concurrent_forwards():
    def update(m, g):
        m._rng = _Draws(g)
        m.reset_parameters()

    mixed, generations = _sees_mixed_parameters(update)
    assert generations >= 200
    assert mixed == 0


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_module_copies(how):
    m = Conv3d(2, 4, 3, padding=1, padding_mode="reflect", rng=5, algorithm="winograd_f2")
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6, 6)).astype(np.float32)
    y = m(x)  # fills the transform cache, which the copy re-derives
    c = copy.deepcopy(m) if how == "deepcopy" else pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(c(x), y)
    assert repr(c) == repr(m)
    # independent parameters and generator state
    c.reset_parameters()
    m.reset_parameters()
    np.testing.assert_array_equal(c.weight, m.weight)  # same seed state was copied
    c.weight = np.zeros_like(c.weight)
    assert np.any(m.weight != 0)
    c.bias = np.ones(4, np.float32)  # the copy's setters work (its own lock)
    np.testing.assert_array_equal(c(x), np.ones_like(y))
