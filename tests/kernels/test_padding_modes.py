"""Reflect, replicate and circular padding read inside the kernels (the direct gather, the
Winograd input transform): the same bits as convolving an explicitly padded copy, and no
padded copy is made."""
import numpy as np
import pytest

from conv3d_cpu import Conv3d, conv3d
from conv3d_cpu._core import forward

NP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

# (input, weight, kwargs): the blocked path with and without W padding (rows read in place),
# dilations whose reflected or wrapped planes collide in the ring, strides, 'same' (uneven
# pads), the depthwise rows path, several channel blocks.
CASES = [
    ((2, 5, 9, 8, 10), (7, 5, 3, 3, 3), dict(padding=1)),
    ((1, 4, 10, 9, 7), (6, 4, 3, 3, 1), dict(padding=(2, 1, 0))),          # no W padding
    ((1, 3, 12, 6, 7), (5, 3, 4, 2, 3), dict(padding=(4, 1, 2), dilation=(3, 1, 2))),
    ((1, 3, 10, 7, 8), (4, 3, 3, 3, 3), dict(padding=(2, 2, 2), dilation=(2, 1, 1))),
    ((1, 6, 7, 9, 8), (8, 6, 3, 3, 3), dict(padding=2, stride=(2, 1, 2))),
    ((1, 4, 8, 7, 9), (4, 4, 2, 4, 3), dict(padding="same")),
    ((2, 6, 7, 8, 9), (6, 1, 3, 3, 3), dict(padding=1, groups=6)),           # depthwise rows
    ((1, 4, 6, 7, 20), (4, 2, 3, 3, 5), dict(padding=(1, 2, 4), groups=2)),
    ((1, 3, 5, 6, 7), (40, 3, 3, 3, 3), dict(padding=(3, 2, 1))),          # reflect: pad < size
]


def _pairs(padding, kernel, dilation):
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in total]
    p = (padding,) * 3 if isinstance(padding, int) else padding
    return [(q, q) for q in p]


WINOGRAD_CASES = [
    ((1, 5, 9, 8, 10), (7, 5, 3, 3, 3), dict(padding=1)),
    ((2, 4, 7, 11, 6), (6, 4, 3, 3, 3), dict(padding=(2, 1, 2))),
    ((1, 3, 6, 7, 9), (4, 3, 1, 3, 3), dict(padding=(0, 1, 1))),
    ((1, 3, 9, 5, 6), (4, 3, 3, 1, 1), dict(padding=(1, 0, 0))),
    ((1, 2, 7, 8, 9), (3, 2, 5, 5, 5), dict(padding=2)),
    ((1, 20, 6, 6, 6), (16, 20, 3, 3, 3), dict(padding="same")),  # full vectors of channels
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("case", range(len(CASES) + len(WINOGRAD_CASES)))
def test_modes_match_an_explicitly_padded_input(case, mode, dtype, monkeypatch):
    algorithms = ["direct"]
    if case >= len(CASES):
        algorithms = ["winograd_f2", "winograd_f4", "auto"]
        xs, ws, kw = WINOGRAD_CASES[case - len(CASES)]
        if ws[2:] == (5, 5, 5):
            algorithms.remove("winograd_f4")
    else:
        xs, ws, kw = CASES[case]
    rng = np.random.default_rng(case)
    x = rng.standard_normal(xs).astype(dtype)
    w = (rng.standard_normal(ws) * 0.3).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    stride, dilation = kw.get("stride", 1), kw.get("dilation", 1)
    dil = (dilation,) * 3 if isinstance(dilation, int) else dilation
    pads = _pairs(kw.get("padding", 0), ws[2:], dil)
    padded = np.pad(x, [(0, 0), (0, 0)] + pads, mode=NP_MODE[mode])
    expected = {a: conv3d(padded, w, b, stride=stride, dilation=dilation,
                          groups=kw.get("groups", 1), algorithm=a) for a in algorithms}

    def no_copy(*args, **kwargs):
        raise AssertionError("a padded copy was made")

    monkeypatch.setattr(np, "pad", no_copy)
    for algorithm in algorithms:
        m = Conv3d(xs[1], ws[0], ws[2:], padding_mode=mode, algorithm=algorithm, dtype=dtype,
                   rng=0, **kw)
        m.load_state_dict({"weight": w, "bias": b})
        for threads in (1, 2, 3):
            y = forward.convolve(x, w, b, m.stride, pads, m.dilation, m.groups, algorithm,
                                 threads, padding_mode=mode)
            np.testing.assert_array_equal(y, expected[algorithm], err_msg=algorithm)
        np.testing.assert_array_equal(m(x), expected[algorithm], err_msg=algorithm)
