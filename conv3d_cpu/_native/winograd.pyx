"""Winograd convolution for 3x3x3, (1,3,3), (3,1,1) and 5x5x5 kernels, stride 1, dilation 1.

Per axis F(m, r) with alpha = m + r - 1 points for a kernel of r along it (r = 3: m = 2, F2,
alpha 4, or m = 4, F4, alpha 6; r = 5: m = 2, alpha 6) and the identity where the kernel is 1
(m = 1, alpha 1): F(m^3, 3^3) for 3x3x3 kernels, F(1 x m^2, 1 x 3^2) for (1,3,3) ones,
F(m x 1^2, 3 x 1^2) for (3,1,1) ones, F(2^3, 5^3) for 5x5x5 ones. ``m`` is the per-axis tuple
(mz, my, mx); A = az * ay * ax transformed positions per tile. Any groups and
zero padding (implicit: tile reads outside the input are zero). Stages, per block of TB output
tiles of one group:

1. input transform  V[xi][t][c] = (B^T d_{t,c} B)[xi]           (vector code over channels)
2. element-wise     M[xi][t][o] = sum_c V[xi][t][c] * U[xi][c][o]  (one GEMM per xi, with the
                    register-tiled micro-kernel the direct algorithm uses)
3. output transform y_{t,o} = A^T M[.][t][o] A + bias               (partial edge tiles cut)

U (the transformed weights) is computed by ``transform_weights`` in float64 and cached by the
caller. OpenMP threads take (group, tile block) items (static ranges with stealing,
_schedule.h); each thread owns one V and one M block, so the workspace is
threads * A * TB * (C/groups + O/groups rounded up to the channel block) elements, whatever
the volume; TB (<= 16) is lowered where needed to keep that within the size of input + output
plus 2^20 elements. Each output is computed by one thread in an order fixed by the shapes, so
results are bitwise identical for any thread count.
"""
import functools

import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, threadid

from conv3d_cpu._native.isa cimport (c3_idx, c3_kernels, channel_block_of, layer_kernels,
                              odd_lines, tile_kernel)
from conv3d_cpu._native.openmp import thread_buffers, thread_flags
from conv3d_cpu._native.openmp cimport (C3_MAX_RANGES, any_thread_flag, c3_range,
                                         c3_ranges_init, c3_ranges_next, effective_threads)

# Tiles per block: at least 12 (a multiple of the wide micro-kernels' 6 or 12 positions) and
# a whole narrow micro-kernel call (up to 16), keeping V and M in cache.
MIN_TILE_BLOCK = 12
# Workspace allowed beyond input + output (elements): small layers keep full blocks.
WORKSPACE_SLACK = 1 << 20

# G for F(m, r) keyed (m, r): F(2,3) (points 0, +-1, inf), F(4,3) and F(2,5) (0, +-1, +-1/2,
# inf), matching the B^T and A^T in _winograd_tmpl.h: y = A^T [(G g) * (B^T d)]. Row i is
# s_i * (1, p_i, p_i^2, ...) at point p_i (the leading coefficient at inf), s_i compensating
# the integer scaling of B^T's rows. (Written as integer ratios divided in numpy: with
# cdivision on, Cython folds a literal 1 / 6 to C integer division.)
_G = {
    (2, 3): np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.float64) / 2.0,
    (4, 3): np.array([[24, 0, 0], [4, 4, 4], [4, -4, 4], [-32, -16, -8], [-32, 16, -8],
                      [0, 0, 6]], dtype=np.float64) / 24.0,
    (2, 5): np.array([[96, 0, 0, 0, 0], [16, 16, 16, 16, 16], [16, -16, 16, -16, 16],
                      [-128, -64, -32, -16, -8], [-128, 64, -32, 16, -8], [0, 0, 0, 0, 24]],
                     dtype=np.float64) / 96.0,
}


cdef inline const c3_kernels* _kernels(c3_idx cpg, c3_idx opg, bint f64) noexcept nogil:
    # A vector's lanes hold input channels in the transforms, output channels in the GEMM.
    return layer_kernels(min(cpg, opg), f64)


def channel_block(dtype, cpg, opg):
    """(ocb, wide) of the GEMM micro-kernel for this dtype and channels per group."""
    cdef bint f64 = np.dtype(dtype) == np.float64, wide
    cdef int ocb = channel_block_of(_kernels(cpg, opg, f64), f64, opg, &wide)
    return ocb, wide


def alphas(m, kernel):
    """Transformed points per axis of a tile with per-axis outputs m for this kernel size."""
    return tuple(md + k - 1 for md, k in zip(m, kernel))


# Float64 elements of transform temporaries at a time: the first call's memory peak is then
# the packed result plus a few MiB, not several float64 copies of it (C3D: 31 MiB -> ~9).
_TRANSFORM_CHUNK = 1 << 18


def transform_weights(w, groups, m):
    """U = G g G^T along the three axes, packed as (groups, A, blocks, C/groups, ocb).

    ``m`` is the per-axis tile (see the module docstring). Computed in float64 and rounded
    once to ``w``'s dtype, a few channel blocks at a time. Output channels are padded with
    zeros to whole blocks of ``channel_block``.
    """
    kernel = w.shape[2:]
    Gz, Gy, Gx = (_G[md, k] if k > 1 else np.ones((1, 1)) for md, k in zip(m, kernel))
    a3 = int(np.prod(alphas(m, kernel)))
    O, cpg = w.shape[:2]
    opg = O // groups
    ocb, _ = channel_block(w.dtype, cpg, opg)
    nob = -(-opg // ocb)
    # Output channels padded to whole blocks; block b = g * nob + ob.
    blocks = np.zeros((groups, nob * ocb) + w.shape[1:])
    blocks[:, :opg] = w.reshape((groups, opg) + w.shape[1:])
    blocks = blocks.reshape((groups * nob, ocb) + w.shape[1:])
    packed = np.empty((groups, a3, nob, cpg, ocb), dtype=w.dtype)
    step = max(1, _TRANSFORM_CHUNK // (a3 * ocb * cpg))
    for b0 in range(0, groups * nob, step):
        # One axis at a time with einsum's own loops: a BLAS call here would wake OpenBLAS's
        # threads, which spin for a while afterwards and steal cores from our OpenMP team.
        chunk = blocks[b0:b0 + step].reshape((-1,) + w.shape[1:])   # (blocks * ocb, cpg, k)
        u = np.einsum("ia,onabc->ionbc", Gz, chunk, optimize=False)
        u = np.einsum("jb,ionbc->ijonc", Gy, u, optimize=False)
        u = np.einsum("kc,ijonc->ijkon", Gx, u, optimize=False).reshape(a3, -1, ocb, cpg)
        for i in range(u.shape[1]):
            g, ob = divmod(b0 + i, nob)
            packed[g, :, ob] = u[:, i].transpose(0, 2, 1)
    return packed.reshape(-1)


cdef int _block(const c3_kernels* K, const floating* x, const floating* U,
                 const floating* bias, floating* out, floating* vbuf, floating* mbuf,
                 const c3_idx* r_off, const c3_idx* w_off, c3_idx tb, c3_idx vstride,
                 c3_idx mstride, c3_idx t0, c3_idx ntb, c3_idx g,
                 c3_idx C, c3_idx D, c3_idx H, c3_idx W, c3_idx O, c3_idx groups,
                 c3_idx oD, c3_idx oH, c3_idx oW, c3_idx pD, c3_idx pH, c3_idx pW, int mz,
                 int my, int mx, int az, int ay, int ax, int ocb, bint wide,
                 int nxmax) noexcept nogil:
    """All three stages for tiles t0 .. t0 + ntb - 1 (ntb <= tb, the block size) of group g.

    V[xi] starts at vbuf + xi * vstride, M[xi] at mbuf + xi * mstride (odd_lines: A blocks a
    tile writes, a power-of-two stride apart, would share a few cache sets).
    Returns nonzero when an output of these tiles is NaN or +-inf."""
    cdef int nonfinite = 0
    cdef int a3 = az * ay * ax
    cdef int lanes = K.ocb_narrow_f32 if floating is float else K.ocb_narrow_f64
    cdef c3_idx cpg = C // groups, opg = O // groups
    cdef c3_idx nob = (opg + ocb - 1) // ocb
    cdef c3_idx ntz = (oD + mz - 1) // mz, nty = (oH + my - 1) // my, ntx = (oW + mx - 1) // mx
    cdef c3_idx dhw = D * H * W, plane = oD * oH * oW
    cdef c3_idx t, n, tz, ty, tx, c0, xi, ob, j0, k, o, ntiles, c
    cdef int nc, nx
    cdef const floating* xg
    # 1. input transform
    for t in range(ntb):
        n = _tile_origin(t0 + t, mz, my, mx, ntz, nty, ntx, &tz, &ty, &tx)
        xg = x + (n * C + g * cpg) * dhw
        c0 = 0
        while c0 < cpg:
            nc = <int>min(lanes, cpg - c0)
            _wino_input(K, az, ay, ax, xg + c0 * dhw, dhw, nc, D, H, W, tz - pD, ty - pH, tx - pW,
                        vbuf + t * cpg + c0, vstride)
            c0 += nc
    # 2. one GEMM per transformed position, in equal chunks of at most nxmax tiles
    ntiles = (ntb + nxmax - 1) // nxmax
    for xi in range(a3):
        for ob in range(nob):
            j0 = 0
            for k in range(ntiles):
                nx = <int>(ntb // ntiles + (k < ntb % ntiles))
                tile_kernel(K, wide, vbuf + xi * vstride + j0 * cpg, r_off, cpg,
                            U + ((g * a3 + xi) * nob + ob) * cpg * ocb, w_off, 1, 1, cpg,
                            mbuf + xi * mstride + (ob * tb + j0) * ocb, nx)
                j0 += nx
    # 3. output transform, `lanes` output channels at a time
    for t in range(ntb):
        n = _tile_origin(t0 + t, mz, my, mx, ntz, nty, ntx, &tz, &ty, &tx)
        for ob in range(nob):
            c = 0
            while c < min(ocb, opg - ob * ocb):
                nc = <int>min(lanes, opg - ob * ocb - c)
                o = g * opg + ob * ocb + c
                nonfinite |= _wino_output(
                    K, mz, my, mx, az, ay, ax, mbuf + (ob * tb + t) * ocb + c, mstride, nc,
                    bias + o,
                    out + ((n * O + o) * oD + tz) * oH * oW + ty * oW + tx, plane, oH, oW,
                    <int>min(mz, oD - tz), <int>min(my, oH - ty), <int>min(mx, oW - tx))
                c += nc
    return nonfinite


cdef inline c3_idx _tile_origin(c3_idx tile, int mz, int my, int mx, c3_idx ntz, c3_idx nty,
                                c3_idx ntx, c3_idx* z, c3_idx* y, c3_idx* x) noexcept nogil:
    """Batch index of ``tile`` (tiles run over n, then z, y, x); its first output in z, y, x."""
    z[0] = (tile // (nty * ntx)) % ntz * mz
    y[0] = (tile // ntx) % nty * my
    x[0] = tile % ntx * mx
    return tile // (ntz * nty * ntx)


cdef inline void _wino_input(const c3_kernels* K, int az, int ay, int ax, const floating* x,
                             c3_idx cstride, int nc, c3_idx D, c3_idx H, c3_idx W, c3_idx z0,
                             c3_idx y0, c3_idx x0, floating* v, c3_idx v_stride) noexcept nogil:
    if floating is float:
        K.wino_in_f32(az, ay, ax, x, cstride, nc, D, H, W, z0, y0, x0, v, v_stride)
    else:
        K.wino_in_f64(az, ay, ax, x, cstride, nc, D, H, W, z0, y0, x0, v, v_stride)


cdef inline int _wino_output(const c3_kernels* K, int mz, int my, int mx, int az, int ay,
                             int ax, const floating* m_in, c3_idx m_stride, int nc,
                             const floating* bias, floating* out, c3_idx ostride, c3_idx oH,
                             c3_idx oW, int ez, int ey, int ex) noexcept nogil:
    if floating is float:
        return K.wino_out_f32(mz, my, mx, az, ay, ax, m_in, m_stride, nc, bias, out, ostride,
                              oH, oW, ez, ey, ex)
    else:
        return K.wino_out_f64(mz, my, mx, az, ay, ax, m_in, m_stride, nc, bias, out, ostride,
                              oH, oW, ez, ey, ex)


@functools.lru_cache(maxsize=64)
def _gemm_offsets(cpg, ocb):
    """The GEMM micro-kernel's row offsets (c) then weight offsets (c * ocb) over a block's
    cpg input channels; cached (read-only), as building them took ~2 us a call."""
    offs = np.concatenate([np.arange(cpg, dtype=np.intp), np.arange(cpg, dtype=np.intp) * ocb])
    offs.flags.writeable = False
    return offs


cdef c3_idx _balanced_block(c3_idx ntiles, c3_idx groups, int nt, c3_idx tbmax):
    """Tiles per block, at most tbmax and at least 2/3 of it, that minimizes the tiles of
    the busiest thread: ceil(items / nt) * tb with items = groups * ceil(ntiles / tb).

    (C3D's 98 tiles in blocks of 12 make 9 items, 5 + 4 on 2 threads: 90% at best; blocks
    of 10 make 10.)"""
    cdef c3_idx tb, best = tbmax, cost, best_cost = -1
    for tb in range(tbmax, max(1, 2 * tbmax // 3) - 1, -1):
        cost = (groups * ((ntiles + tb - 1) // tb) + nt - 1) // nt * tb
        if best_cost < 0 or cost < best_cost:
            best, best_cost = tb, cost
    return best


def winograd(const floating[:, :, :, :, ::1] x, const floating[::1] U,
             const floating[::1] bias, floating[:, :, :, :, ::1] out, padding, m, kernel,
             Py_ssize_t groups, int num_threads):
    """Write the convolution of ``x`` into ``out`` using U = transform_weights(w, groups, m).

    ``m`` is the per-axis tile (mz, my, mx) for the kernel size ``kernel`` (kD, kH, kW): 2 or 4
    where the kernel is 3, 2 where it is 5, 1 where it is 1.
    ``padding`` is the front zero padding per axis; ``num_threads`` <= 0 means the OpenMP
    default. Returns True when every output is finite (checked as it is stored).
    """
    cdef c3_idx N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef c3_idx O = out.shape[1], oD = out.shape[2], oH = out.shape[3], oW = out.shape[4]
    cdef c3_idx pD = padding[0], pH = padding[1], pW = padding[2]
    cdef c3_idx cpg = C // groups, opg = O // groups
    cdef const c3_kernels* K = _kernels(cpg, opg, floating is double)
    cdef int nt = effective_threads(num_threads)
    cdef int ocb, nxmax
    cdef bint wide
    ocb = channel_block_of(K, floating is double, opg, &wide)
    nxmax = K.nx_wide if wide else K.nx_narrow
    cdef c3_idx nob = (opg + ocb - 1) // ocb
    cdef int mz = m[0], my = m[1], mx = m[2]
    cdef int az, ay, ax
    az, ay, ax = alphas(m, kernel)
    cdef int a3 = az * ay * ax
    cdef c3_idx ntiles = N * ((oD + mz - 1) // mz) * ((oH + my - 1) // my) * ((oW + mx - 1) // mx)
    # Workspace bound: nt * a3 * tb * (cpg + nob * ocb) elements stays within the size of
    # input + output (plus WORKSPACE_SLACK); tiny volumes with many channels get smaller blocks.
    cdef c3_idx budget = x.size + out.size + WORKSPACE_SLACK
    cdef c3_idx tb = _balanced_block(ntiles, groups, nt,
                                     max(1, min(max(MIN_TILE_BLOCK, nxmax),
                                                budget // (nt * a3 * (cpg + nob * ocb)))))
    cdef c3_idx nblocks = (ntiles + tb - 1) // tb
    cdef c3_idx vstride = odd_lines(tb * cpg, sizeof(floating))
    cdef c3_idx mstride = odd_lines(tb * nob * ocb, sizeof(floating))
    cdef c3_idx vsize = a3 * vstride, per_thread = vsize + a3 * mstride
    dtype = np.float32 if floating is float else np.float64
    if U.shape[0] != groups * a3 * nob * cpg * ocb:
        raise ValueError("transformed weights do not match this layer")
    cdef floating[::1] scratch
    scratch, per_thread = thread_buffers(nt, per_thread, dtype)
    # One flag per thread, each on its own line.
    cdef int[::1] flags
    cdef c3_idx flag_stride
    flags, flag_stride = thread_flags(nt)
    cdef const c3_idx[::1] offs = _gemm_offsets(cpg, ocb)
    cdef c3_idx item = 0, blk = 0, g = 0
    cdef floating* vbuf = NULL
    cdef int tid = 0, nr
    cdef c3_range ranges[C3_MAX_RANGES]
    # Static ranges with stealing (_schedule.h): cache affinity across calls, and help for a
    # thread that falls behind.
    nr = c3_ranges_init(ranges, nt, groups * nblocks)
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        vbuf = &scratch[0] + tid * per_thread
        item = c3_ranges_next(ranges, nr, tid)
        while item >= 0:
            g = item // nblocks
            blk = item % nblocks
            flags[tid * flag_stride] |= _block(
                K, &x[0, 0, 0, 0, 0], &U[0], &bias[0], &out[0, 0, 0, 0, 0], vbuf, vbuf + vsize,
                &offs[0], &offs[cpg], tb, vstride, mstride, blk * tb,
                min(tb, ntiles - blk * tb), g, C, D, H, W, O, groups, oD, oH, oW, pD, pH, pW, mz,
                my, mx, az, ay, ax, ocb, wide, nxmax)
            item = c3_ranges_next(ranges, nr, tid)
    return not any_thread_flag(&flags[0], flag_stride, nt)

