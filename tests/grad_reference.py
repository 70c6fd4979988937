"""Independent float64 NumPy reference for the backward pass (gradients) of Conv3d / F.conv3d.

This module deliberately does NOT import conv3d_cpu.  Like ``reference.conv3d_ref`` it is
written for obviousness, not speed.  The forward pass is

    y[n, g*Og + o, z, r, c] = sum_{ci, a, b, e} w[g*Og + o, ci, a, b, e]
                              * xp[n, g*Cg + ci, z*sD + a*dD, r*sH + b*dH, c*sW + e*dW]

with xp the zero-padded input, so for every kernel tap (a, b, e) the output is a contraction
of a strided slice of xp.  Its adjoints, tap by tap, are

* grad_weight[:, :, a, b, e] = sum over n and output positions of gy * (that slice of xp),
  the padding zeros included (as PyTorch: an inf in grad_output over padding gives 0*inf=NaN);
* grad_input: gy * w[:, :, a, b, e] scattered (added) into that slice of a zero buffer of
  xp's shape, which is then cropped to the input (the padded part is simply dropped, so
  grad_input never multiplies the padding);
* grad_bias = gy summed over n and the output positions.

``pad_adjoint`` is the adjoint of ``reference.pad_input`` (gradient of numpy.pad): every
padded element's gradient is added back onto the input element it was copied from; it
finds those sources by padding an array of indices with the same mode.

``check_grads`` compares an implementation's gradients with this reference using the
worst-case dot-product bound of ``reference.assert_conv_close`` (gamma_n * sum|terms|): the
terms of grad_input are gy*w products (n = O/groups * kD*kH*kW), those of grad_weight gy*x
products (n = N * oD*oH*oW), those of grad_bias the gy themselves (n = N * oD*oH*oW).
"""
import numpy as np

from reference import (_gamma, assert_within, conv3d_ref, output_size,  # noqa: F401
                       pad_input, padding_lo_hi, triple)

__all__ = ["conv3d_backward_ref", "module_backward_ref", "pad_adjoint", "grad_bounds",
           "check_grads", "assert_grad_close", "padding_lo_hi", "conv3d_ref", "output_size",
           "pad_input", "triple"]


def _tap_slices(a, b, e, d, s, osz):
    """Slices of the padded input that kernel tap (a, b, e) meets, one per output position."""
    return tuple(
        slice(t * dd, t * dd + ss * (o - 1) + 1, ss)
        for t, dd, ss, o in zip((a, b, e), d, s, osz)
    )


def conv3d_backward_ref(grad_output, input, weight, stride=1, pads=((0, 0),) * 3, dilation=1,
                        groups=1):
    """(grad_input, grad_weight, grad_bias) of F.conv3d(input, weight, bias) for grad_output.

    grad_output: (N, O, oD, oH, oW) or unbatched (O, oD, oH, oW) with input (C, D, H, W);
    weight: (O, C/groups, kD, kH, kW); pads: ((lo, hi),)*3 (anything ``padding_lo_hi``
    accepts, e.g. an int, 'same' or 'valid', works too).  All results are float64; grad_input
    has input's shape (unbatched if input is), grad_bias shape (O,).
    """
    gy = np.asarray(grad_output, dtype=np.float64)
    x = np.asarray(input, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    unbatched = x.ndim == 4
    if unbatched:
        x, gy = x[None], gy[None]
    assert x.ndim == 5 and w.ndim == 5 and gy.ndim == 5, (x.shape, w.shape, gy.shape)
    s, d = triple(stride), triple(dilation)
    k = w.shape[2:]
    pads = padding_lo_hi(pads, k, d)
    n_batch, c_in = x.shape[:2]
    c_out, cg = w.shape[:2]
    assert c_in == cg * groups and c_out % groups == 0, (c_in, cg, c_out, groups)
    og = c_out // groups
    osz = output_size(x.shape[2:], k, s, pads, d)
    assert gy.shape == (n_batch, c_out) + osz, (gy.shape, (n_batch, c_out) + osz)

    xp = pad_input(x, pads, "zeros")
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf operands: IEEE results
        _accumulate(gy, xp, w, gxp, gw, groups, cg, og, k, d, s, osz)
        gb = gy.sum(axis=(0, 2, 3, 4))
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, x.shape[2:]))
    gi = gxp[(slice(None), slice(None)) + crop]
    return (gi[0] if unbatched else gi), gw, gb


def _accumulate(gy, xp, w, gxp, gw, groups, cg, og, k, d, s, osz):
    """The tap-by-tap adjoints: gw[..., tap] += <gy, slice>, gxp[slice] += gy * w[..., tap]."""
    for g in range(groups):
        ci = slice(g * cg, (g + 1) * cg)
        oi = slice(g * og, (g + 1) * og)
        gyg = gy[:, oi]
        for a in range(k[0]):
            for b in range(k[1]):
                for e in range(k[2]):
                    sl = _tap_slices(a, b, e, d, s, osz)
                    patch = xp[(slice(None), ci) + sl]          # (N, Cg, oD, oH, oW)
                    gw[oi, :, a, b, e] += np.einsum("nodhw,ncdhw->oc", gyg, patch)
                    gxp[(slice(None), ci) + sl] += np.einsum("nodhw,oc->ncdhw", gyg,
                                                             w[oi, :, a, b, e])


def pad_adjoint(grad_padded, pads, mode, in_spatial):
    """Adjoint of ``pad_input(x, pads, mode)``: fold the gradient of the padded array back.

    grad_padded: (..., D + Dlo + Dhi, H + ..., W + ...); in_spatial: (D, H, W).  For 'zeros'
    the padding's gradient is dropped (a crop); for 'reflect', 'replicate' and 'circular' each
    padded element's gradient is added onto the input element it is a copy of.
    """
    g = np.asarray(grad_padded, dtype=np.float64)
    pads = tuple(tuple(int(v) for v in p) for p in pads)
    in_spatial = tuple(int(n) for n in in_spatial)
    assert g.shape[-3:] == tuple(n + lo + hi for n, (lo, hi) in zip(in_spatial, pads)), (
        g.shape, pads, in_spatial)
    lead = g.shape[:-3]
    if mode == "zeros":
        crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, in_spatial))
        return g[(Ellipsis,) + crop].copy()
    size = int(np.prod(in_spatial))
    source = pad_input(np.arange(size).reshape(in_spatial), pads, mode)  # index of the origin
    rows = g.reshape((-1,) + g.shape[-3:]).reshape(-1, source.size)      # (lead, padded)
    folded = np.zeros((size, rows.shape[0]), dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        np.add.at(folded, source.reshape(-1), rows.T)
    return folded.T.reshape(lead + in_spatial)


def pad_multiplicity(pads, mode, in_spatial):
    """Largest number of padded elements that are copies of one input element."""
    ones = np.ones(tuple(n + lo + hi for n, (lo, hi) in zip(in_spatial, pads)))
    return int(round(pad_adjoint(ones, pads, mode, in_spatial).max())) if ones.size else 1


def module_backward_ref(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                        padding_mode="zeros"):
    """Gradients of nn.Conv3d.forward (pad with padding_mode, then a padding-free conv)."""
    x = np.asarray(input, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    pads = padding_lo_hi(padding, w.shape[2:], triple(dilation))
    xp = pad_input(x, pads, padding_mode)
    gxp, gw, gb = conv3d_backward_ref(grad_output, xp, w, stride, 0, dilation, groups)
    gi = pad_adjoint(gxp, pads, padding_mode, x.shape[-3:])
    return gi, gw, gb


# --------------------------------------------------------------------------------------
# Tolerances
# --------------------------------------------------------------------------------------

def grad_bounds(grad_output, input, weight, stride=1, pads=0, dilation=1, groups=1,
                padding_mode="zeros"):
    """Reference gradients, the sums of |terms| behind them and each gradient's term count.

    Returns (expected, bounds, counts), each a (gi, gw, gb) triple; counts are the number of
    rounded products + additions per element (the n of gamma_n, before the +3 margin).
    """
    args = (stride, pads, dilation, groups, padding_mode)
    expected = module_backward_ref(grad_output, input, weight, *args)
    absargs = [np.abs(np.asarray(a, dtype=np.float64)) for a in (grad_output, input, weight)]
    bounds = module_backward_ref(*absargs, *args)
    w = np.asarray(weight)
    gy = np.asarray(grad_output)
    x = np.asarray(input)
    og = w.shape[0] // groups
    kvol = int(np.prod(w.shape[2:]))
    n_out = int(np.prod(gy.shape[-3:])) * (gy.shape[0] if gy.ndim == 5 else 1)
    n_gi = og * kvol
    if padding_mode != "zeros":
        p = padding_lo_hi(pads, w.shape[2:], triple(dilation))
        m = pad_multiplicity(p, padding_mode, x.shape[-3:])
        n_gi = (n_gi + 1) * m
    return expected, bounds, (n_gi, n_out, n_out)


def assert_grad_close(actual, expected, bound, n_terms, dtype, what="", amplification=1.0,
                      tile_max=False):
    """|actual - expected| <= K*(gamma_n(dtype) + gamma_n(f64)) * bound (+tiny), elementwise.

    n = n_terms + 3.  With ``tile_max`` the bound is its maximum (for Winograd, whose error
    scales with a whole tile's magnitudes), times ``amplification``.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype} != {np.dtype(dtype)}"
    if actual.size == 0:
        return
    n = int(n_terms) + 3
    bound = np.asarray(bound, dtype=np.float64)
    if tile_max:
        bound = np.full_like(bound, bound.max())
    tol = amplification * (_gamma(n, dtype) + _gamma(n, np.float64)) * bound \
        + np.finfo(dtype).tiny
    assert_within(actual, expected, tol, f"{what}: ")


def check_grads(results, grad_output, input, weight, stride=1, pads=0, dilation=1, groups=1,
                padding_mode="zeros", output_mask=(True, True, True), dtype=None,
                amplification=(1.0, 1.0, 1.0), tile_max=(False, False, False)):
    """Check (gi, gw, gb) from an implementation against the reference; None where masked.

    Returns the reference triple (float64).
    """
    assert len(results) == 3, results
    dtype = np.dtype(input.dtype if dtype is None else dtype)
    expected, bounds, counts = grad_bounds(grad_output, input, weight, stride, pads, dilation,
                                           groups, padding_mode)
    for i, name in enumerate(("grad_input", "grad_weight", "grad_bias")):
        if not output_mask[i]:
            assert results[i] is None, f"{name} should be None (masked), got {type(results[i])}"
            continue
        assert isinstance(results[i], np.ndarray), f"{name}: {type(results[i])}"
        assert_grad_close(results[i], expected[i], bounds[i], counts[i], dtype, name,
                          amplification[i], tile_max[i])
    return expected
