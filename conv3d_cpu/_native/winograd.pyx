"""Winograd convolution, the engine behind the 'winograd*' algorithms: the kernel shapes of
constants.WINOGRAD_SHAPES (3x3x3, (1,3,3), (3,1,1), 5x5x5, 2x2x2), stride 1, dilation 1.

Per axis F(m, r) with alpha = m + r - 1 points for a kernel of r along it (r = 3: m = 2, F2,
alpha 4, or m = 4, F4, alpha 6; r = 5: m = 2, alpha 6; r = 2: m = 3 or 5, alpha 4 or 6) and
the identity where the kernel is 1 (m = 1, alpha 1): F(m^3, 3^3) for 3x3x3 kernels,
F(1 x m^2, 1 x 3^2) for (1,3,3) ones, F(m x 1^2, 3 x 1^2) for (3,1,1) ones, F(2^3, 5^3) for
5x5x5 ones, F(3^3, 2^3) or F(5^3, 2^3) for 2x2x2 ones. ``m`` is the per-axis tuple
(mz, my, mx); A = az * ay * ax transformed positions per tile. Any groups and
zero padding (implicit: tile reads outside the input are zero). Stages, per block of TB output
tiles of one group:

1. input transform  V[xi][t][c] = (B^T d_{t,c} B)[xi]           (vector code over channels)
2. element-wise     M[xi][t][o] = sum_c V[xi][t][c] * U[xi][c][o]  (one GEMM per xi, with the
                    register-tiled micro-kernel the direct algorithm uses)
3. output transform y_{t,o} = A^T M[.][t][o] A + bias               (partial edge tiles cut)

U (the transformed weights) is computed by ``transform_weights`` in float64 and cached by the
caller. Work items are (group, tile block) pairs, run by ``launch`` (launch.pyx); each thread
owns one V and one M block, so the workspace is threads * A * TB * (C/groups + O/groups
rounded up to the channel block) elements, whatever the volume; TB (<= 16) is lowered where
needed to keep that within the size of input + output plus WORKSPACE_SLACK elements. Layers
with large U run the whole-call schedule instead (``whole_schedule``; the stages one after
the other over all tiles, with V and M shared by the threads): see _whole_in. Each output is
computed by one thread in an order fixed by the shapes, and a tile's GEMM sums do not depend
on the schedule, so results are bitwise identical for any thread count and either schedule.
"""
import functools
import math

import numpy as np

from conv3d_cpu._native import buffers

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcmp, memset

from conv3d_cpu._native.constants import (MIN_TILE_BLOCK, WINOGRAD_INPUT_TILES,
                                          WINOGRAD_OUTPUT_TILES, WORKSPACE_SLACK,
                                          winograd_points)
from conv3d_cpu._native.constants cimport C3_WINOGRAD_WEIGHT_CHANNELS
from conv3d_cpu._native.geometry cimport c3_geom, geom_of
from conv3d_cpu._native.isa cimport (c3_idx, c3_kernels, c3_tiling, c3_wino_tile,
                                     layer_kernels, odd_lines, tile_kernel, tiling_of)
from conv3d_cpu._native.launch cimport c3_launch, c3_thread, launch
from conv3d_cpu._native.openmp cimport c3_team_ran, c3_team_size, effective_threads

cdef inline const c3_kernels* _kernels(c3_idx cpg, c3_idx opg, bint f64) noexcept nogil:
    # A vector's lanes hold input channels in the transforms, output channels in the GEMM.
    return layer_kernels(min(cpg, opg), f64)


def channel_block(dtype, cpg, opg):
    """(ocb, wide) of the GEMM micro-kernel for this dtype and channels per group."""
    cdef bint f64 = np.dtype(dtype) == np.float64
    cdef c3_tiling T = tiling_of(_kernels(cpg, opg, f64), f64, opg)
    return T.ocb, T.wide


# The whole-call schedule for transformed weights of at least this many bytes: smaller ones
# stay in the last-level cache between tile blocks, which then beat it (measured on a 32 MiB
# L3 by bench/winograd_schedule.py: docs/performance.md).
WHOLE_MIN_U = 16 << 20

# Bytes below which same_bytes compares on one thread (waking a team costs more).
_COMPARE_ALONE = 1 << 19


def same_bytes(a, b, int num_threads=0):
    """Whether C-contiguous arrays ``a`` and ``b`` of one shape and dtype hold the same bytes
    (the transformed-weight cache's staleness check: NaNs and signed zeros compare as bits).
    One pass over both, without temporaries, split over ``num_threads`` threads (<= 0: the
    OpenMP default) when large."""
    cdef const unsigned char[::1] x = a.reshape(-1).view(np.uint8)
    cdef const unsigned char[::1] y = b.reshape(-1).view(np.uint8)
    cdef Py_ssize_t n = x.shape[0], chunk, i
    if n != y.shape[0]:
        return False
    if n == 0:
        return True
    cdef int nt = effective_threads(num_threads), same
    if n < _COMPARE_ALONE or nt == 1:
        with nogil:
            same = memcmp(&x[0], &y[0], n) == 0
        return bool(same)
    cdef int[::1] differ = np.zeros(nt, np.intc)
    nt = c3_team_size(nt)  # after the allocation (team.h)
    chunk = (n + nt - 1) // nt
    for i in prange(nt, nogil=True, num_threads=nt, schedule="static"):
        if i * chunk < n:
            differ[i] = memcmp(&x[i * chunk], &y[i * chunk], min(chunk, n - i * chunk)) != 0
    c3_team_ran(nt)
    return not any(differ)


ctypedef struct weights_plan:
    # One call of the weight transform: what the item hook reads.
    const c3_kernels* K
    bint f64
    c3_wino_tile tile
    c3_idx opg, cpg, taps, nob
    int ocb, a3
    const void* w
    void* u


def transform_weights(w, Py_ssize_t groups, m, int num_threads=0):
    """U = G g G^T along the three axes, packed as (groups, A, blocks, C/groups, ocb), for
    C-contiguous weights ``w`` (O, C/groups, kD, kH, kW).

    ``m`` is the per-axis tile (see the module docstring). Computed in double and rounded once
    to ``w``'s dtype (kernels/winograd_tmpl.h: wino_weights), one block of ``channel_block``
    output channels per work item, those past a group's last zero. ``num_threads`` <= 0 means
    the OpenMP default.
    """
    if w.dtype == np.float32:
        return _transform[float](w.reshape(-1), w.shape, groups, m, num_threads)
    return _transform[double](w.reshape(-1), w.shape, groups, m, num_threads)


cdef _transform(const floating[::1] w, shape, Py_ssize_t groups, m, int num_threads):
    kernel = tuple(shape[2:])
    a = winograd_points(m, kernel)
    cdef weights_plan P
    memset(&P, 0, sizeof(P))
    P.f64 = floating is double
    P.cpg, P.opg = shape[1], shape[0] // groups
    P.taps = kernel[0] * kernel[1] * kernel[2]
    P.tile.m = m
    P.tile.a = a
    P.a3 = a[0] * a[1] * a[2]
    P.K = _kernels(P.cpg, P.opg, P.f64)
    cdef c3_tiling T = tiling_of(P.K, P.f64, P.opg)
    P.ocb, P.nob = T.ocb, T.nob
    out = buffers.empty(groups * P.a3 * P.nob * P.cpg * P.ocb,
                        np.float64 if P.f64 else np.float32)
    cdef floating[::1] packed = out
    P.w, P.u = &w[0], &packed[0]
    cdef c3_launch L
    memset(&L, 0, sizeof(L))
    # (No more threads than blocks: each one would only start, idle and end.)
    L.plan, L.f64 = &P, True  # (a double scratch, whatever the weights' dtype)
    L.n_threads = <int>min(<c3_idx>effective_threads(num_threads), groups * P.nob)
    L.scratch_size = (P.taps + a[0] * kernel[1] * kernel[2]
                      + C3_WINOGRAD_WEIGHT_CHANNELS * a[0] * a[1] * kernel[2]) * P.ocb
    L.n_items, L.item = groups * P.nob, _weights_item
    # Fresh pages of a large U are faulted in by all threads, each its share (schedule.h).
    L.touch, L.touch_bytes = P.u, out.nbytes
    if launch(&L):
        raise ValueError(f"no Winograd weight transform is compiled for tile {tuple(m)} of "
                         f"kernel {kernel}")
    return out


cdef int _weights_item(const void* plan, c3_thread* thread, c3_idx blk) noexcept nogil:
    """Block ``blk`` = g * nob + ob: ocb output channels of group g, all input channels."""
    cdef const weights_plan* P = <const weights_plan*>plan
    cdef c3_idx grp = blk // P.nob, ob = blk % P.nob
    cdef int nvalid = <int>min(<c3_idx>P.ocb, P.opg - ob * P.ocb)
    cdef c3_idx isize = sizeof(double) if P.f64 else sizeof(float)
    cdef const char* w = <const char*>P.w + (grp * P.opg + ob * P.ocb) * P.cpg * P.taps * isize
    cdef char* u = <char*>P.u + (grp * P.a3 * P.nob + ob) * P.cpg * P.ocb * isize
    return P.K.wino_weights[P.f64](&P.tile, w, P.cpg * P.taps, nvalid, P.cpg, u,
                                   P.nob * P.cpg * P.ocb, P.ocb, thread.scratch) != 0


ctypedef struct wino_plan:
    # One call of the Winograd engine: what the item hook reads.
    c3_geom g
    bint f64
    const c3_kernels* K
    c3_tiling T         # the GEMM's micro-kernel and output-channel blocks
    c3_wino_tile tile   # outputs and transformed points per axis
    int a3              # transformed points per tile (A)
    c3_idx tb           # tiles per block (the whole schedule: all tiles, one block per group)
    c3_idx axis_tiles[3]  # tiles along D, H, W of each sample
    c3_idx ntiles, nblocks
    c3_idx vstride, mstride, vsize
    bint whole          # the whole-call schedule: V and M of every tile, shared by the threads
    c3_idx tchunk       # (whole) tiles per transform item; nblocks counts them per group
    void* vall          # (whole) V, then M, of all groups
    void* mall
    const c3_idx* offs  # the GEMM's row offsets (c), then its weight offsets (c * ocb)
    const void* x
    const void* U
    const void* bias
    void* out


def winograd(const floating[:, :, :, :, ::1] x, const floating[::1] U,
             const floating[::1] bias, floating[:, :, :, :, ::1] out, padding, m, kernel,
             Py_ssize_t groups, int num_threads, int padding_mode=0, schedule=None):
    """Write the convolution of ``x`` into ``out`` using U = transform_weights(w, groups, m).

    ``m`` is the per-axis tile (mz, my, mx) for the kernel size ``kernel`` (kD, kH, kW): 2 or 4
    where the kernel is 3, 2 where it is 5, 1 where it is 1.
    ``padding`` is the front padding per axis, in the mode ``padding_mode`` (its code in
    constants.PADDING_MODES; 0 zeros); ``num_threads`` <= 0 means the OpenMP default.
    ``schedule``: 'blocks' (tile blocks, every stage in one item), 'whole' (each stage over
    all tiles) or None (whole_schedule decides); both give the same bits. Returns True when
    every output is finite (checked as it is stored).
    """
    cdef wino_plan P
    cdef int nt = effective_threads(num_threads)
    _plan(&P, &x.shape[0], &out.shape[0], x.size + out.size, sizeof(floating), padding, m,
          kernel, groups, nt, padding_mode, schedule)
    cdef const c3_geom* g = &P.g
    if U.shape[0] != g.groups * P.a3 * P.T.nob * g.cpg * P.T.ocb:
        raise ValueError("transformed weights do not match this layer")
    cdef const c3_idx[::1] offs = _gemm_offsets(g.cpg, P.T.ocb)
    P.offs = &offs[0]
    P.x, P.U, P.bias, P.out = &x[0, 0, 0, 0, 0], &U[0], &bias[0], &out[0, 0, 0, 0, 0]
    cdef c3_launch L
    memset(&L, 0, sizeof(L))
    L.plan, L.n_threads, L.f64 = &P, nt, P.f64
    # Fresh output pages first touched in shares (launch): an item writes every output
    # channel of its tiles, so its first stores would fault pages of all the channel planes.
    L.touch, L.touch_bytes = P.out, out.size * sizeof(floating)
    if not P.whole:
        L.scratch_size = P.vsize + P.a3 * P.mstride
        L.n_items, L.item = g.groups * P.nblocks, _item
        return not launch(&L)
    cdef floating[::1] vm = buffers.empty(g.groups * (P.vsize + P.a3 * P.mstride),
                                          np.float64 if P.f64 else np.float32)
    P.vall, P.mall = &vm[0], &vm[g.groups * P.vsize]
    L.n_blocks, L.block = g.groups * P.nblocks, _whole_in
    L.n_items, L.item = g.groups * P.a3 * P.T.nob, _whole_gemm
    launch(&L)  # (its stages report nothing)
    L.n_blocks, L.block = 0, NULL
    L.n_items, L.item = g.groups * P.nblocks, _whole_out
    L.touch = NULL
    return not launch(&L)


cdef int _plan(wino_plan* P, const Py_ssize_t* x_shape, const Py_ssize_t* out_shape,
               c3_idx io_elems, c3_idx itemsize, padding, m, kernel, Py_ssize_t groups, int nt,
               int padding_mode, schedule) except -1:
    """A call's plan (``winograd``'s arguments; io_elems: input + output elements): geometry,
    tiling, tiles, the schedule and its block sizes and strides."""
    a = winograd_points(m, kernel)
    if a not in WINOGRAD_INPUT_TILES or tuple(m) + a not in WINOGRAD_OUTPUT_TILES:
        raise ValueError(f"no Winograd transform is compiled for tile {tuple(m)} of kernel "
                         f"{tuple(kernel)} (constants.WINOGRAD_SHAPES)")
    memset(P, 0, sizeof(wino_plan))
    P.g = geom_of(x_shape, out_shape, kernel, (1, 1, 1), padding, (1, 1, 1), groups)
    P.f64 = itemsize == sizeof(double)
    cdef const c3_geom* g = &P.g
    P.K = _kernels(g.cpg, g.opg, P.f64)
    P.T = tiling_of(P.K, P.f64, g.opg)
    P.tile.m = m
    P.tile.a = a
    P.tile.mode = padding_mode
    # The padding's extent per axis (read by modes other than zeros): lo in front, hi after.
    P.tile.lo = [g.pD, g.pH, g.pW]
    P.tile.hi = [o + k - 1 - n - p for o, k, n, p in
                 zip((g.oD, g.oH, g.oW), kernel, (g.D, g.H, g.W), (g.pD, g.pH, g.pW))]
    P.a3 = P.tile.a[0] * P.tile.a[1] * P.tile.a[2]
    P.axis_tiles = [-(-o // mm) for o, mm in zip((g.oD, g.oH, g.oW), m)]
    P.ntiles = g.N * P.axis_tiles[0] * P.axis_tiles[1] * P.axis_tiles[2]
    # Workspace bound: nt * a3 * tb * (cpg + nob * ocb) elements stays within the size of
    # input + output (plus WORKSPACE_SLACK); tiny volumes with many channels get smaller blocks.
    cdef c3_idx budget = io_elems + WORKSPACE_SLACK
    cdef c3_idx per_tile = nt * P.a3 * (g.cpg + P.T.nob * P.T.ocb)
    cdef c3_idx tb = _balanced_block(P.ntiles, g.groups, nt, max(
        1, min(max(MIN_TILE_BLOCK, P.T.nxmax), budget // per_tile)))
    if schedule is None:
        P.whole = whole_schedule(P.ntiles, tb, P.a3, g.cpg, P.T.nob * P.T.ocb, g.groups,
                                 itemsize, nt, io_elems * itemsize)
    elif schedule in ("blocks", "whole"):
        P.whole = schedule == "whole"
    else:
        raise ValueError(f"schedule must be 'blocks', 'whole' or None, got {schedule!r}")
    # (whole: blocks of tb tiles for the transforms, V and M laid out as one block of all)
    P.nblocks, P.tchunk = (P.ntiles + tb - 1) // tb, tb
    P.tb = P.ntiles if P.whole else tb
    P.vstride = odd_lines(P.tb * g.cpg, itemsize)
    P.mstride = odd_lines(P.tb * P.T.nob * P.T.ocb, itemsize)
    P.vsize = P.a3 * P.vstride
    return 0


def planned_schedule(x_shape, out_shape, m, kernel, Py_ssize_t groups, int num_threads,
                     itemsize=4):
    """'whole' or 'blocks': the schedule ``winograd`` runs for these shapes (of input and
    output), tile, kernel, groups and threads when its ``schedule`` is None."""
    cdef Py_ssize_t xs[5]
    cdef Py_ssize_t ys[5]
    xs, ys = list(x_shape), list(out_shape)
    cdef wino_plan P
    _plan(&P, xs, ys, math.prod(x_shape) + math.prod(out_shape), itemsize,
          [k // 2 for k in kernel], m, kernel, groups, effective_threads(num_threads), 0, None)
    return "whole" if P.whole else "blocks"


def whole_schedule(ntiles, tb, a3, cpg, opg_padded, groups, itemsize, nt, io_bytes):
    """Whether to run the whole-call schedule: for transformed weights U of WHOLE_MIN_U bytes
    or more, which tile blocks read once per block (from memory once U is past the
    last-level cache's share), unless one thread would run one block anyway; and while V and
    M (a3 * ntiles * (cpg + opg) elements per group) take at most twice the larger of U and
    the input + output (``io_bytes``). bench/winograd_schedule.py measures both."""
    u = a3 * cpg * opg_padded * groups * itemsize
    vm = a3 * ntiles * (cpg + opg_padded) * groups * itemsize
    items = groups * -(-ntiles // tb)
    return u >= WHOLE_MIN_U and items * nt > 1 and vm <= 2 * max(u, io_bytes)


cdef int _item(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const wino_plan* P = <const wino_plan*>plan
    cdef c3_idx grp = item // P.nblocks, t0 = item % P.nblocks * P.tb
    cdef c3_idx ntb = min(P.tb, P.ntiles - t0)
    if P.f64:
        return _block(P, <double*>thread.scratch, t0, ntb, grp)
    return _block(P, <float*>thread.scratch, t0, ntb, grp)


cdef int _block(const wino_plan* P, floating* vbuf, c3_idx t0, c3_idx ntb,
                c3_idx grp) noexcept nogil:
    """All three stages for tiles t0 .. t0 + ntb - 1 (ntb <= tb, the block size) of group grp,
    in this thread's V and M blocks (``vbuf``, M after it).

    Returns nonzero when an output of these tiles is NaN or +-inf."""
    cdef floating* mbuf = vbuf + P.vsize
    cdef c3_idx xi, ob
    _transform_in(P, vbuf, t0, ntb, grp)
    for xi in range(P.a3):
        for ob in range(P.T.nob):
            _gemm(P, vbuf + xi * P.vstride, mbuf + xi * P.mstride + ob * P.tb * P.T.ocb, xi, ob,
                  ntb, grp)
    return _transform_out(P, mbuf, t0, ntb, grp)


# The whole-call schedule (``wino_plan.whole``): the input transform of every tile into one V
# (launch's blocks), then one item per (group, position, output-channel block), each a GEMM
# over all tiles that reads its block of U once, then the output transform (a second launch).
# The tile-block schedule reads all of U for every block of tiles: on a deep layer (U of tens
# of MiB, a few hundred tiles) that streams U from memory ntiles / tb times.
cdef int _whole_in(const void* plan, c3_idx blk) noexcept nogil:
    cdef const wino_plan* P = <const wino_plan*>plan
    cdef c3_idx grp = blk // P.nblocks, t0 = blk % P.nblocks * P.tchunk
    cdef c3_idx ntb = min(P.tchunk, P.ntiles - t0)
    if P.f64:
        _transform_in(P, <double*>P.vall + grp * P.vsize + t0 * P.g.cpg, t0, ntb, grp)
    else:
        _transform_in(P, <float*>P.vall + grp * P.vsize + t0 * P.g.cpg, t0, ntb, grp)
    return 0


cdef int _whole_gemm(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const wino_plan* P = <const wino_plan*>plan
    cdef c3_idx per_group = P.a3 * P.T.nob
    cdef c3_idx grp = item // per_group, xi = item % per_group // P.T.nob, ob = item % P.T.nob
    cdef c3_idx v = grp * P.vsize + xi * P.vstride
    cdef c3_idx m = grp * P.a3 * P.mstride + xi * P.mstride + ob * P.tb * P.T.ocb
    if P.f64:
        _gemm(P, <double*>P.vall + v, <double*>P.mall + m, xi, ob, P.ntiles, grp)
    else:
        _gemm(P, <float*>P.vall + v, <float*>P.mall + m, xi, ob, P.ntiles, grp)
    return 0


cdef int _whole_out(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const wino_plan* P = <const wino_plan*>plan
    cdef c3_idx grp = item // P.nblocks, t0 = item % P.nblocks * P.tchunk
    cdef c3_idx ntb = min(P.tchunk, P.ntiles - t0), m = grp * P.a3 * P.mstride + t0 * P.T.ocb
    if P.f64:
        return _transform_out(P, <double*>P.mall + m, t0, ntb, grp)
    return _transform_out(P, <float*>P.mall + m, t0, ntb, grp)


cdef void _transform_in(const wino_plan* P, floating* vb, c3_idx t0, c3_idx ntb,
                        c3_idx grp) noexcept nogil:
    """Stage 1 for tiles t0 .. t0 + ntb - 1 of group grp: V[xi][t][c] at vb + xi * vstride +
    (t - t0) * cpg + c (vstride: odd_lines, so that a tile's A rows, a power-of-two stride
    apart, do not share a few cache sets)."""
    cdef const c3_geom* g = &P.g
    cdef bint f64 = floating is double
    cdef int lanes = P.K.ocb_narrow[f64]
    cdef c3_idx cpg = g.cpg, dhw = g.D * g.H * g.W
    cdef c3_idx t, n, tz, ty, tx, c0
    cdef int nc
    cdef const floating* xg
    for t in range(ntb):
        n = _tile_origin(P, t0 + t, &tz, &ty, &tx)
        xg = <const floating*>P.x + (n * g.C + grp * cpg) * dhw
        c0 = 0
        while c0 < cpg:
            nc = <int>min(lanes, cpg - c0)
            P.K.wino_input[f64](&P.tile, xg + c0 * dhw, dhw, nc, g.D, g.H, g.W, tz - g.pD,
                                ty - g.pH, tx - g.pW, vb + t * cpg + c0, P.vstride)
            c0 += nc


cdef void _gemm(const wino_plan* P, const floating* v, floating* mb, c3_idx xi, c3_idx ob,
                c3_idx ntb, c3_idx grp) noexcept nogil:
    """Stage 2 for one transformed position xi and output-channel block ob of ntb tiles:
    M[t][o] (at mb + t * ocb + o) = sum_c V[t][c] (at v + t * cpg + c) * U[xi][c][o], in equal
    chunks of at most nxmax tiles (a tile's sums do not depend on its chunk)."""
    cdef const c3_tiling* T = &P.T
    cdef c3_idx cpg = P.g.cpg, ocb = T.ocb, j0 = 0, k
    cdef c3_idx nchunks = (ntb + T.nxmax - 1) // T.nxmax
    cdef const floating* u = <const floating*>P.U + ((grp * P.a3 + xi) * T.nob + ob) * cpg * ocb
    cdef int nx
    for k in range(nchunks):
        nx = <int>(ntb // nchunks + (k < ntb % nchunks))
        tile_kernel(T, floating is double)(v + j0 * cpg, P.offs, cpg, u, P.offs + cpg, 1, 1,
                                           cpg, mb + j0 * ocb, nx)
        j0 += nx


cdef int _transform_out(const wino_plan* P, const floating* mb, c3_idx t0, c3_idx ntb,
                        c3_idx grp) noexcept nogil:
    """Stage 3 for tiles t0 .. t0 + ntb - 1 of group grp, from M[xi][ob][t][o] at mb + xi *
    mstride + (ob * tb + t - t0) * ocb + o, `lanes` output channels at a time; nonzero when
    an output is NaN or +-inf."""
    cdef const c3_geom* g = &P.g
    cdef bint f64 = floating is double
    cdef int lanes = P.K.ocb_narrow[f64], ocb = P.T.ocb, nonfinite = 0, nc
    cdef int mz = P.tile.m[0], my = P.tile.m[1], mx = P.tile.m[2]
    cdef c3_idx opg = g.opg, plane = g.oD * g.oH * g.oW
    cdef c3_idx t, n, tz, ty, tx, ob, c, o
    for t in range(ntb):
        n = _tile_origin(P, t0 + t, &tz, &ty, &tx)
        for ob in range(P.T.nob):
            c = 0
            while c < min(ocb, opg - ob * ocb):
                nc = <int>min(lanes, opg - ob * ocb - c)
                o = grp * opg + ob * ocb + c
                nonfinite |= P.K.wino_output[f64](
                    &P.tile, mb + (ob * P.tb + t) * ocb + c, P.mstride, nc,
                    <const floating*>P.bias + o,
                    <floating*>P.out + ((n * g.O + o) * g.oD + tz) * g.oH * g.oW + ty * g.oW + tx,
                    plane, g.oH, g.oW, <int>min(mz, g.oD - tz), <int>min(my, g.oH - ty),
                    <int>min(mx, g.oW - tx))
                c += nc
    return nonfinite


cdef inline c3_idx _tile_origin(const wino_plan* P, c3_idx tile, c3_idx* z, c3_idx* y,
                                c3_idx* x) noexcept nogil:
    """Batch index of ``tile`` (tiles run over n, then z, y, x); its first output in z, y, x."""
    cdef c3_idx ntz = P.axis_tiles[0], nty = P.axis_tiles[1], ntx = P.axis_tiles[2]
    z[0] = (tile // (nty * ntx)) % ntz * P.tile.m[0]
    y[0] = (tile // ntx) % nty * P.tile.m[1]
    x[0] = tile % ntx * P.tile.m[2]
    return tile // (ntz * nty * ntx)


@functools.lru_cache(maxsize=64)
def _gemm_offsets(cpg, ocb):
    """The GEMM micro-kernel's row offsets (c) then weight offsets (c * ocb) over a block's
    cpg input channels; cached (read-only): building them costs a noticeable part of a small
    call."""
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
