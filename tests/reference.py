"""Independent float64 NumPy reference for PyTorch's Conv3d / F.conv3d.

This module deliberately does NOT import conv3d_cpu.  It is written for
obviousness, not speed:

* ``pad_input`` applies PyTorch's padding modes with ``numpy.pad``
  ('zeros' -> 'constant', 'reflect' -> 'reflect', 'replicate' -> 'edge',
  'circular' -> 'wrap'); see reference doc section 1.5.
* ``same_padding`` is PyTorch's 'same' split (reference doc 1.4):
  total = d*(k-1), left = total//2, right = total-left (extra on the far side).
* ``conv3d_ref`` is cross-correlation (reference doc 3.1) computed as a sum over
  kernel taps of strided slices of the zero-padded input.

A small tolerance helper, ``assert_conv_close``, lives at the bottom.  It uses
the standard worst-case floating-point bound for a dot product,
|fl(sum) - sum| <= gamma_n * sum|w*x| with gamma_n = n*u/(1-n*u), which holds
for *any* summation order (blocked, pairwise, multithreaded, FMA), so it cannot
be flaky, yet it is orders of magnitude below the error of any indexing bug.
"""
import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def triple(v):
    """int -> (v, v, v); 1-sequence -> broadcast; 3-sequence -> tuple of ints."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return (int(v[0]),) * 3
        if len(v) != 3:
            raise ValueError(f"expected 1 or 3 values, got {v!r}")
        return tuple(int(i) for i in v)
    return (int(v),) * 3


def same_padding(kernel_size, dilation=1):
    """PyTorch 'same' padding as ((lo, hi) for D, H, W); extra element on the high side."""
    pads = []
    for k, d in zip(triple(kernel_size), triple(dilation)):
        total = d * (k - 1)
        left = total // 2
        pads.append((left, total - left))
    return tuple(pads)


def padding_lo_hi(padding, kernel_size, dilation=1):
    """Normalise a Conv3d/F.conv3d padding spec into ((lo, hi), (lo, hi), (lo, hi))."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * 3
        if padding == "same":
            return same_padding(kernel_size, dilation)
        raise ValueError(f"bad padding string {padding!r}")
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 3
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    return tuple((p, p) for p in triple(padding))


def reversed_padding_repeated_twice(pads):
    """((Dlo,Dhi),(Hlo,Hhi),(Wlo,Whi)) -> [Wlo, Whi, Hlo, Hhi, Dlo, Dhi] (F.pad order)."""
    (dl, dh), (hl, hh), (wl, wh) = pads
    return [wl, wh, hl, hh, dl, dh]


def pad_input(x, pads, mode="zeros"):
    """Pad the last three axes of x by pads=((lo,hi),)*3 using a PyTorch padding mode."""
    x = np.asarray(x)
    width = [(0, 0)] * (x.ndim - 3) + [tuple(int(v) for v in p) for p in pads]
    if mode == "zeros":
        return np.pad(x, width, mode="constant", constant_values=0)
    return np.pad(x, width, mode=_NP_PAD_MODE[mode])


def output_size(in_size, kernel_size, stride=1, pads=((0, 0),) * 3, dilation=1):
    """floor((X + lo + hi - d*(k-1) - 1) / s) + 1 per spatial dim."""
    return tuple(
        (n + lo + hi - d * (k - 1) - 1) // s + 1
        for n, k, s, (lo, hi), d in zip(
            in_size, triple(kernel_size), triple(stride), pads, triple(dilation)
        )
    )


def conv3d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Float64 reference of F.conv3d with zero padding (possibly asymmetric).

    x: (N, C, D, H, W) or unbatched (C, D, H, W); w: (O, C/groups, kD, kH, kW);
    b: (O,) or None; padding: anything ``padding_lo_hi`` accepts (int, 1-/3-tuple,
    'valid', 'same', or ((lo,hi),)*3).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 4
    if unbatched:
        x = x[None]
    assert x.ndim == 5 and w.ndim == 5
    s = triple(stride)
    d = triple(dilation)
    k = w.shape[2:]
    pads = padding_lo_hi(padding, k, d)
    xp = pad_input(x, pads, "zeros")
    n_batch, c_in = xp.shape[:2]
    c_out, c_per_group = w.shape[:2]
    assert c_in == c_per_group * groups, (c_in, c_per_group, groups)
    assert c_out % groups == 0
    o_per_group = c_out // groups
    osz = output_size(x.shape[2:], k, s, pads, d)
    assert all(o >= 1 for o in osz), osz
    y = np.zeros((n_batch, c_out) + osz, dtype=np.float64)
    for g in range(groups):
        xg = xp[:, g * c_per_group:(g + 1) * c_per_group]
        wg = w[g * o_per_group:(g + 1) * o_per_group]
        for a in range(k[0]):
            for bb in range(k[1]):
                for e in range(k[2]):
                    z0, y0, x0 = a * d[0], bb * d[1], e * d[2]
                    patch = xg[
                        :,
                        :,
                        z0:z0 + s[0] * (osz[0] - 1) + 1:s[0],
                        y0:y0 + s[1] * (osz[1] - 1) + 1:s[1],
                        x0:x0 + s[2] * (osz[2] - 1) + 1:s[2],
                    ]
                    assert patch.shape[2:] == osz
                    y[:, g * o_per_group:(g + 1) * o_per_group] += np.einsum(
                        "ncdhw,oc->nodhw", patch, wg[:, :, a, bb, e]
                    )
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None, None]
    return y[0] if unbatched else y


def conv3d_module_ref(
    x, weight, bias, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"
):
    """Reference of nn.Conv3d.forward: pad with padding_mode, then a padding-free conv."""
    pads = padding_lo_hi(padding, np.shape(weight)[2:], dilation)
    xp = pad_input(np.asarray(x, dtype=np.float64), pads, padding_mode)
    return conv3d_ref(xp, weight, bias, stride, 0, dilation, groups)


# --------------------------------------------------------------------------
# Tolerance helper
# --------------------------------------------------------------------------

def _gamma(n, dtype):
    u = np.finfo(dtype).eps / 2.0
    return n * u / (1.0 - n * u)


def assert_conv_close(actual, expected, abs_bound, fan_in, dtype):
    """|actual - expected| <= (gamma_n(dtype) + gamma_n(float64)) * abs_bound elementwise.

    ``expected`` is the float64 reference, ``abs_bound`` the same reference
    evaluated on |x|, |w|, |b| (sum of absolute products), n = fan_in + 3 covers the
    fan_in products, fan_in additions, the bias and the final rounding.  Both the
    implementation (in ``dtype``) and the reference (in float64) are covered.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    n = int(fan_in) + 3
    tol = (_gamma(n, dtype) + _gamma(n, np.float64)) * np.asarray(abs_bound) + np.finfo(dtype).tiny
    assert_within(actual, expected, tol)


def assert_within(actual, expected, tol, what=""):
    """AssertionError, naming the first offender, unless |actual - expected| <= tol
    everywhere (a NaN where expected is finite fails too); ``what`` prefixes the message."""
    err = np.abs(actual.astype(np.float64) - expected)
    bad = ~(err <= tol)  # also catches NaN
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise AssertionError(
            f"{what}{int(bad.sum())} of {bad.size} elements outside the rounding bound; "
            f"first at {idx}: actual={actual[idx]!r} expected={expected[idx]!r} "
            f"err={err[idx]:.3e} tol={tol[idx]:.3e}; max err={np.nanmax(err):.3e}"
        )


def check_conv(
    actual, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
    padding_mode="zeros", dtype=None,
):
    """Compare ``actual`` with the float64 reference of a (module) conv of x, weight, bias.

    ``dtype`` is the precision the implementation computed in (defaults to actual.dtype).
    """
    actual = np.asarray(actual)
    dtype = actual.dtype if dtype is None else np.dtype(dtype)
    weight = np.asarray(weight)
    args = (stride, padding, dilation, groups, padding_mode)
    expected = conv3d_module_ref(x, weight, bias, *args)
    abs_bias = None if bias is None else np.abs(np.asarray(bias, dtype=np.float64))
    bound = conv3d_module_ref(
        np.abs(np.asarray(x, dtype=np.float64)), np.abs(weight.astype(np.float64)), abs_bias, *args
    )
    fan_in = int(np.prod(weight.shape[1:]))
    assert_conv_close(actual, expected, bound, fan_in, dtype)
    return expected


# The padding modes on W = [0, 1, 2] (reference doc 1.5): (mode, pad, padded row). Checked
# against both this reference and the package.
PADDING_SEMANTICS = [
    ("zeros", 1, [0, 0, 1, 2, 0]),
    ("reflect", 1, [1, 0, 1, 2, 1]),
    ("replicate", 1, [0, 0, 1, 2, 2]),
    ("circular", 1, [2, 0, 1, 2, 0]),
    ("circular", 3, [0, 1, 2, 0, 1, 2, 0, 1, 2]),
    ("reflect", 2, [2, 1, 0, 1, 2, 1, 0]),
    ("replicate", 4, [0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2]),
]
