"""Each micro-kernel of the selected table, callable on numpy arrays: for their contract
tests (tests/kernels/test_microkernels.py), one per kernel of C3_MICROKERNELS.

Not a public API and not fast: every call checks that the kernel stays inside the arrays it is
given (the contracts in kernels/kernels.h say how far each reads and writes), then calls it
once. The dtype of the data arrays (float32 or float64) picks the table entry. Select the
instruction set first with ``conv3d_cpu._native.isa.use_isa``.
"""
import numpy as np

from conv3d_cpu._native.isa cimport (C3_F64, c3_idx, c3_kernels, c3_wino_tile,
                                     current_kernels)


cdef inline void* _data(a) except NULL:
    if not a.flags.c_contiguous or not a.flags.writeable or a.size == 0:
        raise ValueError("arrays must be C-contiguous, writeable and non-empty")
    return <void*><size_t>a.__array_interface__["data"][0]


def _typed(dtype, *arrays):
    """Whether the arrays are float64 (all of ``dtype``, float32 or float64)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64) or any(a.dtype != dtype for a in arrays):
        raise TypeError("data arrays must all be float32 or all float64")
    return dtype == np.float64


def _check_reach(name, array, highest):
    if highest >= array.size:
        raise ValueError(f"{name}: the kernel would touch element {highest}, the array has "
                         f"{array.size}")


def table():
    """The selected table's name and blocking: dict(isa, ocb_wide, ocb_narrow, nx_wide,
    nx_narrow), the block widths as (float32, float64)."""
    from conv3d_cpu._native.isa import ISA_NAMES

    cdef const c3_kernels* K = current_kernels()
    return dict(isa=ISA_NAMES[K.isa], ocb_wide=(K.ocb_wide[0], K.ocb_wide[1]),
                ocb_narrow=(K.ocb_narrow[0], K.ocb_narrow[1]), nx_wide=K.nx_wide,
                nx_narrow=K.nx_narrow)


def tile(bint wide, rows, r_off, w, w_off, c3_idx kW, c3_idx dW, c3_idx sW, int nx):
    """tile_wide / tile_narrow: the [nx][ocb] tile (kernels.h: c3_tile_fn)."""
    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(rows.dtype, rows, w)
    cdef int ocb = K.ocb_wide[f64] if wide else K.ocb_narrow[f64]
    r_off, w_off = np.ascontiguousarray(r_off, np.intp), np.ascontiguousarray(w_off, np.intp)
    if r_off.shape != w_off.shape or r_off.ndim != 1 or r_off.size == 0:
        raise ValueError("r_off and w_off must be 1-D, of one length > 0")
    if not 1 <= nx <= (K.nx_wide if wide else K.nx_narrow):
        raise ValueError(f"nx must be 1 .. the table's positions per call, got {nx}")
    _check_reach("rows", rows, r_off.max() + (nx - 1) * sW + (kW - 1) * dW)
    _check_reach("w", w, w_off.max() + kW * ocb - 1)
    out = np.zeros(nx * ocb, rows.dtype)
    (K.tile_wide[f64] if wide else K.tile_narrow[f64])(
        _data(rows), <c3_idx*>_data(r_off), r_off.size, _data(w), <c3_idx*>_data(w_off), kW,
        dW, sW, _data(out), nx)
    return out.reshape(nx, ocb)


def store_tile(tile, int ocb, int nx, out, c3_idx plane, bias, int nvalid):
    """store_tile: writes the tile's first nvalid channels into ``out`` (kernels.h:
    c3_store_fn)."""
    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(tile.dtype, tile, out, bias)
    if ocb % K.ocb_narrow[f64] or not 0 < nvalid <= ocb or nx < 1:
        raise ValueError("ocb must be a multiple of the vector, 0 < nvalid <= ocb, nx >= 1")
    _check_reach("tile", tile, nx * ocb - 1)
    _check_reach("out", out, (nvalid - 1) * plane + nx - 1)
    _check_reach("bias", bias, nvalid - 1)
    K.store_tile[f64](_data(tile), ocb, nx, _data(out), plane, _data(bias), nvalid)


def row(rows, r_off, w, w_off, c3_idx kW, c3_idx dW, c3_idx sW, c3_idx oW, bias):
    """row: one output row of oW (kernels.h: c3_row_fn); ``rows`` must be padded for the
    whole vectors read past the row end."""
    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(rows.dtype, rows, w)
    from conv3d_cpu._native.constants import ROW_UNROLL

    r_off, w_off = np.ascontiguousarray(r_off, np.intp), np.ascontiguousarray(w_off, np.intp)
    if r_off.shape != w_off.shape or r_off.ndim != 1 or r_off.size == 0 or oW < 1:
        raise ValueError("r_off and w_off must be 1-D, of one length > 0; oW >= 1")
    step = ROW_UNROLL * K.ocb_narrow[f64]
    reach = (sW * (-(-oW // step) * step) - 1 if sW <= 2 else (oW - 1) * sW) + (kW - 1) * dW
    _check_reach("rows", rows, r_off.max() + reach)
    _check_reach("w", w, w_off.max() + kW - 1)
    out = np.zeros(oW, rows.dtype)
    b = np.array([bias], rows.dtype)
    K.row[f64](_data(rows), <c3_idx*>_data(r_off), r_off.size, _data(w), <c3_idx*>_data(w_off),
               kW, dW, sW, _data(out), oW, _data(b))
    return out


cdef c3_wino_tile _tile_of(m, a) except *:
    cdef c3_wino_tile t
    t.m = m
    t.a = a
    t.mode = 0
    return t


def wino_input(m, a, x, c3_idx cstride, int nc, c3_idx D, c3_idx H, c3_idx W, c3_idx z0,
               c3_idx y0, c3_idx x0, c3_idx v_stride, int mode=0, lo=(0, 0, 0), hi=(0, 0, 0)):
    """wino_input for the tile (m, a) with padding of mode ``mode`` (its code) and extents
    ``lo``, ``hi`` per axis: V as an (A, v_stride) array and the kernel's return value (0, or
    -1 for a tile not compiled)."""
    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(x.dtype, x)
    cdef c3_wino_tile t = _tile_of(m, a)
    t.mode = mode
    t.lo = lo
    t.hi = hi
    limit = {1: lambda n: n - 1, 3: lambda n: n}.get(mode)  # reflect, circular (replicate: any)
    if any(p < 0 or limit is not None and p > limit(n)
           for p, n in zip(tuple(lo) + tuple(hi), (D, H, W) * 2)):
        raise ValueError("padding past what the mode allows (reflect: < size, circular: <= "
                         "size)")
    if not 1 <= nc <= K.ocb_narrow[f64] or v_stride < nc:
        raise ValueError("1 <= nc <= lanes and v_stride >= nc")
    _check_reach("x", x, (nc - 1) * cstride + D * H * W - 1)
    A = a[0] * a[1] * a[2]
    v = np.zeros(A * v_stride, x.dtype)
    rc = K.wino_input[f64](&t, _data(x), cstride, nc, D, H, W, z0, y0, x0, _data(v), v_stride)
    return v.reshape(A, v_stride), rc


def wino_output(m, a, m_in, c3_idx m_stride, int nc, bias, out, c3_idx ostride, c3_idx oH,
                c3_idx oW, int ez, int ey, int ex):
    """wino_output for the tile (m, a) into ``out``; returns the kernel's value (1: a NaN or
    an infinity in the tile, 0, or -1 for a tile not compiled)."""
    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(m_in.dtype, m_in, out, bias)
    cdef c3_wino_tile t = _tile_of(m, a)
    lanes = K.ocb_narrow[f64]
    if not 1 <= nc <= lanes or not (0 < ez <= m[0] and 0 < ey <= m[1] and 0 < ex <= m[2]):
        raise ValueError("1 <= nc <= lanes and 0 < (ez, ey, ex) <= m")
    _check_reach("m_in", m_in, (a[0] * a[1] * a[2] - 1) * m_stride + lanes - 1)
    _check_reach("bias", bias, nc - 1)
    _check_reach("out", out, (nc - 1) * ostride + ((ez - 1) * oH + ey - 1) * oW + ex - 1)
    return K.wino_output[f64](&t, _data(m_in), m_stride, nc, _data(bias), _data(out), ostride,
                              oH, oW, ez, ey, ex)


def wino_weights(m, a, w, c3_idx wstride, int nvalid, c3_idx cpg, c3_idx u_stride, int ocb):
    """wino_weights for the tile (m, a): U as an (A, u_stride) array and the kernel's return
    value (0, or -1 for a tile not compiled); ``w`` holds the block's kernels (kernels.h)."""
    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(w.dtype, w)
    cdef c3_wino_tile t = _tile_of(m, a)
    k = [ad - md + 1 for md, ad in zip(m, a)]
    A = a[0] * a[1] * a[2]
    if not 0 < nvalid <= ocb or u_stride < cpg * ocb or min(k) < 1:
        raise ValueError("0 < nvalid <= ocb, u_stride >= cpg * ocb, a >= m")
    _check_reach("w", w, (nvalid - 1) * wstride + cpg * k[0] * k[1] * k[2] - 1)
    u = np.zeros(A * u_stride, w.dtype)
    from conv3d_cpu._native.constants import WINOGRAD_WEIGHT_CHANNELS

    scratch = np.zeros((k[0] * k[1] * k[2] + a[0] * k[1] * k[2]
                        + WINOGRAD_WEIGHT_CHANNELS * a[0] * a[1] * k[2]) * ocb + 8, np.float64)
    skip = (-scratch.__array_interface__["data"][0]) % 64 // 8  # (aligned for any vector)
    rc = K.wino_weights[f64](&t, _data(w), wstride, nvalid, cpg, _data(u), u_stride, ocb,
                             _data(scratch[skip:]))
    return u.reshape(A, u_stride), rc


def transpose_block(src, c3_idx src_stride, c3_idx dst_stride, c3_idx n_i, c3_idx n_j):
    """transpose_block (kernels.h: c3_transpose_fn) into a new zeroed array of
    n_j * dst_stride elements."""
    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(src.dtype, src)
    if n_i < 1 or n_j < 1 or src_stride < n_j or dst_stride < n_i:
        raise ValueError("n_i, n_j >= 1, src_stride >= n_j, dst_stride >= n_i")
    _check_reach("src", src, (n_i - 1) * src_stride + n_j - 1)
    dst = np.zeros(n_j * dst_stride, src.dtype)
    K.transpose_block[f64](_data(src), src_stride, _data(dst), dst_stride, n_i, n_j)
    return dst


def fma_chains(acc, ab, c3_idx iters):
    """fma_chains (kernels.h: c3_fma_chains_fn) on a copy of ``acc`` (FMA_CHAINS vectors of
    the narrow block's lanes) with ``ab`` = (a, b): the copy after ``iters`` rounds."""
    from conv3d_cpu._native.constants import FMA_CHAINS

    cdef const c3_kernels* K = current_kernels()
    cdef bint f64 = _typed(acc.dtype, acc, ab)
    if ab.size != 2 or acc.size != FMA_CHAINS * K.ocb_narrow[f64] or iters < 0:
        raise ValueError("ab: 2 elements; acc: FMA_CHAINS vectors of the narrow block; "
                         "iters >= 0")
    out = acc.copy()
    K.fma_chains[f64](iters, _data(ab), _data(out))
    return out
