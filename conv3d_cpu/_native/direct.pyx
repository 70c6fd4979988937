"""Direct 3D convolution (cross-correlation), float32/float64: the engine behind
``algorithm='direct'``.

``direct`` plans a call (``_plan``: the path, the blocking, each thread's scratch layout) and
runs it through ``launch`` (launch.pyx), which owns the parallel loop; this module fills in
its hooks. Inputs are validated, C-contiguous arrays (the Python layer guarantees it). Zero
padding is implicit: no padded copy of the input is made (gather.pxd gathers the rows a work
item reads into the thread's slab, zero padded along W; taps outside the input in D or H are
skipped).

Three paths, all driving C micro-kernels (kernels/, chosen per CPU at import):

- blocked (any layer): weights repacked so a block of output channels is contiguous per tap;
  a tile of positions x output channels is accumulated in registers over all input channels
  and taps. Work item: a band of output rows of one output plane and group.
- pointwise (1x1x1, stride 1, no padding): the same tiles over input channels as rows of
  length D*H*W. Work item: a run of positions of one batch element, all groups.
- depthwise rows (fewer output channels per group than a vector holds): one output row at a
  time, vectorized along W. Work item: one output plane of one group.

Each output element is computed by one thread in an order fixed by the shapes alone, so results
are bitwise identical for any thread count. Extra memory per call: the repacked weights plus,
per thread, the gathered input rows (see ``_plan``).
"""
import threading

import numpy as np

from conv3d_cpu._native import buffers

from cython cimport floating
from libc.string cimport memcpy, memset

from conv3d_cpu._native.constants cimport (C3_ITEMS_PER_THREAD, C3_POINTWISE_TILES,
                                           C3_ROW_OVERREAD, C3_ROW_UNROLL, C3_SLAB_BYTES,
                                           C3_SUM_TERMS)
from conv3d_cpu._native.gather cimport (c3_gather_layout, c3_ring, c3_rows, c3_slots,
                                        gather_bind, gather_layout, gather_planes, ring_depth,
                                        ring_reset, tap_rows, z_of, z_step)
from conv3d_cpu._native.geometry cimport c3_geom, geom_of
from conv3d_cpu._native.isa cimport (c3_idx, c3_kernels, c3_row_fn, c3_tiling, layer_kernels,
                                     odd_lines, tile_kernel, tiling_of)
from conv3d_cpu._native.launch cimport c3_launch, c3_thread, launch, stopped
from conv3d_cpu._native.openmp cimport c3_share_start, effective_threads

# The most bytes of packed weights a thread keeps between calls (_Workspace).
WORKSPACE_KEEP = 1 << 26

# The paths (module docstring), decided once per call by _plan.
cdef enum:
    BLOCKED
    POINTWISE
    DEPTHWISE_ROWS


ctypedef struct direct_plan:
    # One call of the direct engine: what every hook reads.
    c3_geom g
    int path
    bint f64
    const void* x
    const void* w
    void* wp            # packed weights (blocked, pointwise)
    const void* bias
    void* out
    c3_tiling T         # tile kernels and output-channel blocks (blocked, pointwise)
    const c3_kernels* K
    c3_idx wblock       # packed elements per output-channel block
    # the gather (blocked, depthwise rows)
    c3_idx R            # ring depth
    c3_idx zstep        # z_step
    c3_idx Wp, hs       # slab row width; rows per slab slot
    bint copy           # rows gathered (else read in place: no W padding needed)
    bint flat           # blocked: tiles run across an item's rows (see _blocked_rows)
    c3_gather_layout lay
    # blocked: items of yb output rows, nyb bands per plane, planes in nzc depth chunks, the
    # channel blocks in nor ranges of nobr (flat: 1 range otherwise)
    c3_idx yb, nyb, nzc, nor, nobr
    # pointwise: positions per item and slab row stride; the shared row / weight offsets
    c3_idx chunk, ps
    const c3_idx* pw_offs
    # each thread's scratch (elements of the dtype): the slab and the tile
    c3_idx slab, tile, scratch_size
    c3_idx n_items      # work items of the call


def direct(x, w, bias, out, stride, padding, dilation, Py_ssize_t groups, int num_threads,
           int padding_mode=0):
    """Write conv3d(x, w) + bias into ``out`` (N, O, oD, oH, oW); return whether every
    weight is finite.

    C-contiguous arrays of one dtype (float32 or float64). ``padding`` is the front padding
    per axis; the far side is implied by ``out``'s shape; ``padding_mode`` is its mode's code
    (constants.PADDING_MODES: 0 zeros). ``num_threads`` <= 0 means the OpenMP default, read
    now. Taps that fall in zero padding are skipped, so with a NaN or an infinite weight the
    result differs from PyTorch's (0 * NaN is NaN): the caller then recomputes with the
    padding made explicit. (Found while the weights are packed, which reads them anyway,
    rather than in a pass of its own.)
    """
    # Explicit dispatch: a fused def function would inspect every argument's buffer first.
    if x.dtype == np.float32:
        return bool(_run[float](x, w, bias, out, stride, padding, dilation, groups,
                                num_threads, padding_mode))
    return bool(_run[double](x, w, bias, out, stride, padding, dilation, groups, num_threads,
                             padding_mode))


cdef int _run(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
              const floating[::1] bias, floating[:, :, :, :, ::1] out,
              stride, padding, dilation, Py_ssize_t groups, int num_threads,
              int padding_mode) except -1:
    cdef direct_plan P
    memset(&P, 0, sizeof(P))
    P.g = geom_of(&x.shape[0], &out.shape[0], (w.shape[2], w.shape[3], w.shape[4]), stride,
                  padding, dilation, groups, padding_mode)
    P.f64 = floating is double
    cdef int nt = effective_threads(num_threads)
    _plan(&P, nt)
    dtype = np.float64 if P.f64 else np.float32
    cdef floating[::1] wp
    cdef c3_idx[::1] pw_offs
    cdef const c3_geom* g = &P.g
    workspace = None
    if P.path != DEPTHWISE_ROWS:
        workspace = _Workspace.take(g.groups * P.T.nob * P.wblock, dtype)  # filled by _pack
        wp = workspace.array
        P.wp = &wp[0]
    if P.path == POINTWISE:
        pw_offs = np.concatenate([np.arange(g.cpg, dtype=np.intp) * P.ps,
                                  np.arange(g.cpg, dtype=np.intp) * P.T.ocb])
        P.pw_offs = &pw_offs[0]
    P.x, P.w, P.bias, P.out = &x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0, 0]

    cdef c3_launch L
    memset(&L, 0, sizeof(L))
    L.plan, L.n_threads, L.f64, L.scratch_size = &P, nt, P.f64, P.scratch_size
    L.index_size, L.n_items, L.item = P.lay.size, P.n_items, _item
    if P.path != POINTWISE:
        # Gathered rows rely on their padding staying zero; the ring starts empty.
        L.clear_scratch, L.thread_start = True, _ring_start
    if P.path != DEPTHWISE_ROWS:
        L.n_blocks, L.block = g.groups * P.T.nob, _pack
        L.touch, L.touch_bytes = P.out, g.N * g.O * g.oD * g.oH * g.oW * sizeof(floating)
    cdef int flag
    try:
        flag = launch(&L)
    finally:
        if workspace is not None:
            workspace.give_back()
    if P.path == DEPTHWISE_ROWS:
        with nogil:
            return _all_finite(&w[0, 0, 0, 0, 0], g.O * g.cpg * g.kD * g.kH * g.kW)
    return not flag


class _Workspace:
    """The packed weights' buffer, kept by each calling thread between its calls (up to
    WORKSPACE_KEEP bytes): packed into fresh memory, a network's large layers paid the first
    write to every page on every forward, which on a VM costs more than packing (figures in
    docs/performance.md). A call made while this thread's buffer is in use (a signal handler
    convolving during a call) gets a buffer of its own."""

    _local = threading.local()

    def __init__(self, array, kept):
        self.array, self._kept = array, kept

    @classmethod
    def take(cls, n, dtype):
        nbytes = n * np.dtype(dtype).itemsize
        local = cls._local
        if nbytes > WORKSPACE_KEEP or getattr(local, "busy", False):
            return cls(buffers.empty(n, dtype), False)
        raw = getattr(local, "raw", None)
        if raw is None or raw.nbytes < nbytes:
            local.raw = raw = None  # (the old one goes before the new one is allocated)
            local.raw = raw = buffers.empty(nbytes, np.uint8)
        local.busy = True
        return cls(raw[:nbytes].view(dtype), True)

    def give_back(self):
        if self._kept:
            self._local.busy = False


cdef void _plan(direct_plan* P, int nt) noexcept nogil:
    """The path, blocking and per-thread scratch of a call on ``nt`` threads."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx itemsize = sizeof(double) if P.f64 else sizeof(float)
    # (a vector's lanes hold output channels)
    P.K = layer_kernels(g.opg, P.f64)
    cdef int narrow = P.K.ocb_narrow[P.f64]
    if g.opg < narrow:
        P.path = DEPTHWISE_ROWS
    elif (g.kD == 1 and g.kH == 1 and g.kW == 1 and g.sD == 1 and g.sH == 1 and g.sW == 1
          and g.D == g.oD and g.H == g.oH and g.W == g.oW):
        P.path = POINTWISE
    else:
        P.path = BLOCKED
    P.R = ring_depth(g.kD, g.dD, g.D)
    P.zstep = z_step(g)
    # Padded row width: every tap of every output column lands inside it.
    P.Wp = max(g.pW + g.W, (g.oW - 1) * g.sW + (g.kW - 1) * g.dW + 1)
    P.lay = gather_layout(g, P.R)
    cdef c3_idx row_step, Hp, extent = (g.kH - 1) * g.dH + 1
    if P.path == DEPTHWISE_ROWS:
        # Whole input planes, padded in H and W; the row kernel reads whole vectors past the
        # row end (kernels.h: C3_ROW_UNROLL vectors of the table's narrow block at a time, each
        # from sW vectors of the row when sW is 1 or 2).
        row_step = C3_ROW_UNROLL * narrow
        if g.sW <= 2:
            P.Wp = max(P.Wp, g.sW * ((g.oW + row_step - 1) // row_step * row_step)
                       + (g.kW - 1) * g.dW)
        P.hs = max(g.pH + g.H, (g.oH - 1) * g.sH + extent)
        P.copy = True
        P.slab, P.tile = 0, g.cpg * P.R * P.hs * P.Wp
        # (then one output row of partial sums: _chunked_row)
        P.scratch_size = P.tile + g.oW + C3_ROW_OVERREAD
        P.n_items = g.N * g.groups * g.oD
        return
    P.T = tiling_of(P.K, P.f64, g.opg)
    P.wblock = g.cpg * g.kD * g.kH * g.kW * P.T.ocb
    if P.path == POINTWISE:
        # Items of up to C3_POINTWISE_TILES tiles, no more than a thread's share of the
        # volume, so that the threads' slabs together stay about the size of the input.
        P.chunk = min(C3_POINTWISE_TILES * P.T.nxmax,
                      ((g.D * g.H * g.W + nt - 1) // nt + P.T.nxmax - 1)
                      // P.T.nxmax * P.T.nxmax)
        P.ps = odd_lines(P.chunk, itemsize)
        P.lay.size = 0  # (offsets shared by the threads: pw_offs)
        P.tile, P.slab = 0, 2 * P.T.nxmax * P.T.ocb  # (a tile and its partial sums: _tiles)
        P.scratch_size = P.slab + g.cpg * P.ps
        P.n_items = g.N * ((g.D * g.H * g.W + P.chunk - 1) // P.chunk)
        return
    P.copy = P.Wp != g.W
    # Short rows (stride 1 along H and W, gathered): an item's rows are one flat run of
    # positions at the slab's row width, so a tile spans rows and each block of weights
    # serves all of them (per row, a 7-wide row left a 12-position tile half empty and read
    # every weight block again for each row). Such layers (a network's deep ones) have few
    # rows and many channels: items split the channel blocks before the rows.
    P.flat = g.sW == 1 and g.sH == 1 and g.oW < 2 * P.T.nxmax
    P.nor = 1
    if P.flat:
        P.copy = True
        P.nor = min(P.T.nob, max(1, (C3_ITEMS_PER_THREAD * nt + g.N * g.oD * g.groups - 1)
                                 // (g.N * g.oD * g.groups)))
    P.nobr = (P.T.nob + P.nor - 1) // P.nor
    P.nor = (P.T.nob + P.nobr - 1) // P.nobr
    P.yb = _rows_per_item(g, nt, g.cpg * P.R * P.Wp * itemsize, P.nor)
    P.nyb = (g.oH + P.yb - 1) // P.yb
    P.hs = (P.yb - 1) * g.sH + extent
    # As many depth chunks of an (n, g)'s items as threads: each thread then writes whole
    # output planes (two threads writing bands of one plane share a cache line at every
    # band edge).
    P.nzc = min(g.oD, max(1, (nt + g.N * g.groups - 1) // (g.N * g.groups)))
    P.slab, P.tile = 0, g.cpg * P.R * P.hs * P.Wp
    P.scratch_size = P.tile + 2 * P.T.nxmax * P.T.ocb  # (a tile and its partial sums: _tiles)
    P.n_items = g.N * g.oD * P.nyb * g.groups * P.nor


cdef c3_idx _rows_per_item(const c3_geom* g, int nt, c3_idx row_bytes,
                           c3_idx nor) noexcept nogil:
    """Output rows per work item of the blocked path.

    As many as keep C3_ITEMS_PER_THREAD items per thread (load balance) and the per-thread
    slab of (rows - 1) * sH + extent input rows per (c, a) plane within C3_SLAB_BYTES."""
    cdef c3_idx planes = g.N * g.oD * g.groups * nor, extent = (g.kH - 1) * g.dH + 1
    cdef c3_idx per_plane = max(1, (C3_ITEMS_PER_THREAD * nt + planes - 1) // planes)
    cdef c3_idx yb = max(1, (g.oH + per_plane - 1) // per_plane)
    while yb > 1 and ((yb - 1) * g.sH + extent) * row_bytes > C3_SLAB_BYTES:
        yb = (yb + 1) // 2
    return yb


# ---- hooks (launch.pxd) -------------------------------------------------------------------

cdef int _ring_start(const void* plan, c3_thread* thread) noexcept nogil:
    cdef const direct_plan* P = <const direct_plan*>plan
    cdef c3_rows rows
    cdef c3_slots slots
    cdef c3_ring ring
    gather_bind(&P.lay, &P.g, P.R, thread.index, &rows, &slots, &ring)
    ring_reset(&ring)
    return 0


cdef int _pack(const void* plan, c3_idx blk) noexcept nogil:
    cdef const direct_plan* P = <const direct_plan*>plan
    if P.f64:
        return _pack_block(P, blk, <const double*>P.w)
    return _pack_block(P, blk, <const float*>P.w)


cdef int _item(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const direct_plan* P = <const direct_plan*>plan
    if P.f64:
        _path_item(P, thread, item, <const double*>P.x)
    else:
        _path_item(P, thread, item, <const float*>P.x)
    return 0


cdef inline void _path_item(const direct_plan* P, c3_thread* thread, c3_idx item,
                            const floating* x) noexcept nogil:
    if P.path == BLOCKED:
        _blocked_rows(P, thread, item, x)
    elif P.path == POINTWISE:
        _pointwise_positions(P, thread, item, x)
    else:
        _depthwise_plane(P, thread, item, x)


# ---- the paths ----------------------------------------------------------------------------

cdef inline c3_idx _chunk_start(c3_idx oD, c3_idx nzc, c3_idx zc) noexcept nogil:
    return <c3_idx>c3_share_start(oD, <int>nzc, <int>zc)


cdef void _blocked_rows(const direct_plan* P, c3_thread* thread, c3_idx item,
                        const floating* x) noexcept nogil:
    """Work item: ``yb`` output rows of one output plane (n, z) and one group, a range of its
    channel blocks (all but with flat tiles; the ranges of one band are consecutive items,
    served by the same gathered planes). The ``nyb * oD`` items of one (n, g) come in ``nzc`` depth chunks (equal
    shares of oD), each chunk band by band, each band along z (z_of): a run that the thread's
    ring serves, so rows shared by neighbouring output rows and planes are copied once."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx nyb = P.nyb, zl, z0, zc = 0
    cdef c3_idx ob0 = item % P.nor * P.nobr
    cdef c3_idx ob1 = min(P.T.nob, ob0 + P.nobr)
    item = item // P.nor
    cdef c3_idx ng = item // (nyb * g.oD), k = item % (nyb * g.oD)
    cdef c3_idx grp = ng % g.groups, n = ng // g.groups
    while _chunk_start(g.oD, P.nzc, zc + 1) * nyb <= k:
        zc += 1
    z0 = _chunk_start(g.oD, P.nzc, zc)
    zl = _chunk_start(g.oD, P.nzc, zc + 1) - z0
    k -= z0 * nyb
    cdef c3_idx z = z0 + z_of(k % zl, zl, P.zstep)
    cdef c3_idx y0 = k // zl * P.yb, ny = min(P.yb, g.oH - y0)
    cdef c3_idx run = (ng * P.nzc + zc) * nyb + k // zl
    cdef c3_idx plane = g.oD * g.oH * g.oW
    cdef const floating* xg = x + (n * g.C + grp * g.cpg) * g.D * g.H * g.W
    cdef floating* slab = <floating*>thread.scratch + P.slab
    cdef floating* oplane = <floating*>P.out + (n * g.O + grp * g.opg) * plane + z * g.oH * g.oW
    cdef c3_rows rows
    cdef c3_slots slots
    cdef c3_ring ring
    gather_bind(&P.lay, g, P.R, thread.index, &rows, &slots, &ring)
    cdef c3_idx iy0 = y0 * g.sH - g.pH, y
    gather_planes(g, &ring, &slots, run, z, xg, slab, iy0, P.hs, P.Wp, P.copy)
    if P.flat:
        # Output row y's taps read slot rows y + b dH: the rows of row 0, y Wp further on.
        # (Every kernel row is listed, those in the H padding as the zero rows they are.)
        tap_rows(g, &slots, &rows, iy0, 0, P.hs, P.Wp, g.kW * P.T.ocb, True, False)
        _tiles(&P.T, <const floating*>slab, &rows, g.kW, g.dW, 1,
               <const floating*>P.wp + grp * P.T.nob * P.wblock, P.wblock,
               <const floating*>P.bias + grp * g.opg, oplane + y0 * g.oW, plane, g.opg,
               (ny - 1) * P.Wp + g.oW, <floating*>thread.scratch + P.tile, P.Wp, g.oW, ob0, ob1)
        return
    for y in range(ny):
        if stopped(thread):
            return
        tap_rows(g, &slots, &rows, iy0, y * g.sH, P.hs, P.Wp, g.kW * P.T.ocb, P.copy, True)
        _tiles(&P.T, <const floating*>slab if P.copy else xg, &rows, g.kW, g.dW, g.sW,
               <const floating*>P.wp + grp * P.T.nob * P.wblock, P.wblock,
               <const floating*>P.bias + grp * g.opg, oplane + (y0 + y) * g.oW, plane, g.opg,
               g.oW, <floating*>thread.scratch + P.tile, 0, 0, 0, P.T.nob)


cdef void _pointwise_positions(const direct_plan* P, c3_thread* thread, c3_idx item,
                               const floating* x) noexcept nogil:
    """Work item: ``chunk`` consecutive positions of one batch element, all groups.

    Per group the item's piece of each input row is copied to the thread's slab, rows ``ps``
    apart (``pw_offs``: the row offsets c * ps, then the weight offsets c * ocb): read in
    place, the rows lay D*H*W elements apart, which for many channels maps them onto a few
    cache sets (and more streams than the prefetchers follow), and every channel block read
    them again."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx npts = g.D * g.H * g.W
    cdef c3_idx nchunks = (npts + P.chunk - 1) // P.chunk
    cdef c3_idx n = item // nchunks, p0 = (item % nchunks) * P.chunk
    cdef c3_idx npos = min(P.chunk, npts - p0), grp, c
    cdef floating* slab = <floating*>thread.scratch + P.slab
    cdef const floating* xg
    cdef c3_rows rows
    rows.n, rows.r_off, rows.w_off = g.cpg, <c3_idx*>P.pw_offs, <c3_idx*>P.pw_offs + g.cpg
    for grp in range(g.groups):
        if stopped(thread):
            return
        xg = x + (n * g.C + grp * g.cpg) * npts + p0
        for c in range(g.cpg):
            memcpy(slab + c * P.ps, xg + c * npts, npos * sizeof(floating))
        _tiles(&P.T, slab, &rows, 1, 1, 1,
               <const floating*>P.wp + grp * P.T.nob * P.wblock, P.wblock,
               <const floating*>P.bias + grp * g.opg,
               <floating*>P.out + (n * g.O + grp * g.opg) * npts + p0, npts, g.opg, npos,
               <floating*>thread.scratch + P.tile, 0, 0, 0, P.T.nob)


cdef void _depthwise_plane(const direct_plan* P, c3_thread* thread, c3_idx item,
                           const floating* x) noexcept nogil:
    """Work item: output plane z of one group of one batch element; items run over z first
    (z_of). The group's input planes are gathered, padded in H and W, into the thread's ring,
    where the next z finds those it shares, and serve all the group's output channels and
    rows."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx z = z_of(item % g.oD, g.oD, P.zstep)
    cdef c3_idx grp = (item // g.oD) % g.groups, n = item // (g.oD * g.groups)
    cdef c3_idx wsize = g.cpg * g.kD * g.kH * g.kW, plane = g.oD * g.oH * g.oW, y, o
    cdef const floating* wg = <const floating*>P.w + grp * g.opg * wsize
    cdef const floating* bias = <const floating*>P.bias + grp * g.opg
    cdef floating* oplane = <floating*>P.out + ((n * g.O + grp * g.opg) * g.oD + z) * g.oH * g.oW
    cdef floating* planes = <floating*>thread.scratch + P.slab
    cdef c3_rows rows
    cdef c3_slots slots
    cdef c3_ring ring
    gather_bind(&P.lay, g, P.R, thread.index, &rows, &slots, &ring)
    gather_planes(g, &ring, &slots, item // g.oD, z,
                  x + (n * g.C + grp * g.cpg) * g.D * g.H * g.W, planes, -g.pH, P.hs, P.Wp,
                  True)
    cdef c3_row_fn row = P.K.row[P.f64]
    cdef c3_idx kW = g.kW, dW = g.dW, sW = g.sW, oW = g.oW, opg = g.opg
    cdef floating* part = <floating*>thread.scratch + P.tile
    for y in range(g.oH):
        if stopped(thread):
            return
        tap_rows(g, &slots, &rows, -g.pH, y * g.sH, P.hs, P.Wp, kW, True, False)
        for o in range(opg):
            _chunked_row(row, planes, &rows, wg + o * wsize, kW, dW, sW,
                         oplane + o * plane + y * oW, oW, bias + o, part)


cdef inline void _chunked_row(c3_row_fn row, const floating* planes, const c3_rows* rows,
                              const floating* w, c3_idx kW, c3_idx dW, c3_idx sW,
                              floating* orow, c3_idx oW, const floating* bias,
                              floating* part) noexcept nogil:
    """One output row by the row kernel, its rows summed in runs of at most C3_SUM_TERMS
    products (constants.py): the first run with the bias into ``orow``, each next one from
    zero into ``part`` (oW elements and the kernel's overrun), then added."""
    cdef c3_idx per = max(1, C3_SUM_TERMS // kW), r0, x
    cdef floating zero = 0
    row(planes, rows.r_off, min(per, rows.n), w, rows.w_off, kW, dW, sW, orow, oW, bias)
    r0 = per
    while r0 < rows.n:
        row(planes, rows.r_off + r0, min(per, rows.n - r0), w, rows.w_off + r0, kW, dW, sW,
            part, oW, &zero)
        for x in range(oW):
            orow[x] += part[x]
        r0 += per


cdef void _tiles(const c3_tiling* T, const floating* src, const c3_rows* rows, c3_idx kW,
                 c3_idx dW, c3_idx sW, const floating* wg, c3_idx wblock,
                 const floating* bias, floating* orow, c3_idx plane, c3_idx opg, c3_idx n_pos,
                 floating* tile, c3_idx row_width, c3_idx oW, c3_idx ob0,
                 c3_idx ob1) noexcept nogil:
    """``n_pos`` consecutive output positions (``sW`` apart in ``src``) of channel blocks
    ob0 .. ob1 - 1 of one group, from the input rows and kernel rows ``rows``.

    Positions are split into equal tiles (not nxmax + remainder): a short tail tile holds
    too few accumulators to keep the FMA units busy. ``tile``: 2 nxmax ocb elements, a tile
    and the partial sums of its longer runs (the rows are summed in runs of at most
    C3_SUM_TERMS products, constants.py, added in order). ``row_width`` > 0: the positions
    are rows of ``row_width`` positions of which the first ``oW`` are outputs (a flat run
    across output rows; the others are computed and dropped), stored as rows of oW."""
    cdef bint f64 = floating is double
    cdef c3_idx ntiles = (n_pos + T.nxmax - 1) // T.nxmax
    cdef c3_idx ob, t, x0, r0, i
    cdef c3_idx per = max(1, C3_SUM_TERMS // kW)
    cdef floating* part = tile + T.nxmax * T.ocb
    cdef int nx
    for ob in range(ob0, ob1):
        x0 = 0
        for t in range(ntiles):
            nx = <int>(n_pos // ntiles + (t < n_pos % ntiles))
            if rows.n > 0:
                tile_kernel(T, f64)(src + x0 * sW, rows.r_off, min(per, rows.n),
                                    wg + ob * wblock, rows.w_off, kW, dW, sW, tile, nx)
                r0 = per
                while r0 < rows.n:
                    tile_kernel(T, f64)(src + x0 * sW, rows.r_off + r0, min(per, rows.n - r0),
                                        wg + ob * wblock, rows.w_off + r0, kW, dW, sW, part,
                                        nx)
                    for i in range(nx * T.ocb):
                        tile[i] += part[i]
                    r0 += per
            else:  # every tap in the padding: bias only
                memset(tile, 0, nx * T.ocb * sizeof(floating))
            if row_width == 0:
                T.K.store_tile[f64](tile, T.ocb, nx, orow + ob * T.ocb * plane + x0, plane,
                                    bias + ob * T.ocb, <int>min(T.ocb, opg - ob * T.ocb))
            else:
                _store_flat(T, tile, nx, x0, row_width, oW, orow + ob * T.ocb * plane, plane,
                            bias + ob * T.ocb, <int>min(T.ocb, opg - ob * T.ocb), f64)
            x0 += nx


cdef inline void _store_flat(const c3_tiling* T, const floating* tile, int nx, c3_idx x0,
                             c3_idx row_width, c3_idx oW, floating* out, c3_idx plane,
                             const floating* bias, int nvalid, bint f64) noexcept nogil:
    """A tile of flat positions x0 .. x0 + nx - 1 (rows of ``row_width``) stored as the pieces
    of output rows (of oW) it holds."""
    cdef c3_idx f = x0, y, x, cnt
    while f < x0 + nx:
        y, x = f // row_width, f % row_width
        cnt = min(x0 + nx - f, row_width - x)
        if x < oW:
            T.K.store_tile[f64](tile + (f - x0) * T.ocb, T.ocb, <int>min(cnt, oW - x),
                                out + y * oW + x, plane, bias, nvalid)
        f += cnt


cdef bint _all_finite(const floating* w, c3_idx n) noexcept nogil:
    cdef c3_idx i
    cdef int bad = 0
    for i in range(n):
        bad |= (w[i] - w[i]) != 0  # NaN for NaN and +-inf (NaN != 0 holds)
    return not bad


cdef int _pack_block(const direct_plan* P, c3_idx blk, const floating* w) noexcept nogil:
    """Block ``blk`` = g * nob + ob of the packed weights: (O, k) -> (groups, nob, k, ocb),
    the block's ocb output channels contiguous per tap; channels past the group's last (a
    partial block) are zero. Returns nonzero when one of its weights is NaN or +-inf."""
    cdef const c3_geom* g = &P.g
    cdef int ocb = P.T.ocb
    cdef c3_idx k = g.cpg * g.kD * g.kH * g.kW
    cdef c3_idx grp = blk // P.T.nob, ob = blk % P.T.nob
    cdef c3_idx nvalid = min(ocb, g.opg - ob * ocb)
    cdef floating* dst = <floating*>P.wp + blk * k * ocb
    cdef const floating* src = w + (grp * g.opg + ob * ocb) * k
    cdef c3_idx c, i
    cdef floating v
    cdef int bad = 0
    # Tap-major: each output line is written whole, from ocb input rows read in step (one
    # line each, reused over 16 taps); channel-major order rewrote every line ocb times.
    for i in range(k):
        for c in range(nvalid):
            v = src[c * k + i]
            dst[i * ocb + c] = v
            bad |= (v - v) != 0
        for c in range(nvalid, ocb):
            dst[i * ocb + c] = 0
    return bad
