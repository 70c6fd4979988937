"""The weight gradient of conv3d, float32/float64: the correlation of the input with
grad_output, reduced over the batch and the output positions.

    gw[o, c, kd, kh, kw] = sum_n,od,oh,ow gy[n, o, od, oh, ow] x[n, c, od sD + kd dD - pD, ...]

It runs on the direct forward's tile micro-kernel (kernels.h, tile_wide / tile_narrow) with
the roles of its operands exchanged: a tile's vector lanes hold a block of output channels o,
its positions a block of input channels c (a broadcast walks x's channel planes), and its
reduction runs over output rows (the kernel's rows) and the positions ow of each row (the
kernel's taps). grad_output's rows are packed as an item reaches them (``_pack_rows``: the
block's ocb channels contiguous per position, the layout the kernel reads its weights in, in
the thread's scratch); x is read in place: taps in the W padding are left out of a call's
range of ow, rows in the D or H padding are left out of its rows, so no padded copy is made.
Layers with few input channels per group tile the kernel's columns instead (``kw_tiles``),
over input rows gathered with their W padding.

Work item: one group's range of output-channel blocks and range of input-channel blocks over
one chunk of the N * oD output planes (``_item_of``); it keeps the sums of all its taps in
the thread's scratch and walks the chunk's rows once, rb at a time: each block of rows of
grad_output is packed once and serves every input-channel block and tap from cache (rows of
x copied first where their channel planes would collide in L1: ``copy_rows``). The ranges
follow the thread count; what a sum adds, and in which order, does not. The bias gradient's
sums are taken from the packed rows on the way (or alone, in the same order: ``grad_bias``).
Determinism: every kernel call sums at most C3_SUM_TERMS products (rows x positions)
from zero, added to the tap's sum in row order; each chunk's sums go to a partial of its own,
and the partials are added in chunk order (``grad_weight``). Chunks are fixed by the shapes
(``_plan``), not by the thread count, so the bits are the same for any thread count.
"""
import numpy as np

from conv3d_cpu._native import buffers

from cython cimport floating
from libc.math cimport NAN
from libc.string cimport memcpy, memset

from conv3d_cpu._native.constants cimport C3_SUM_TERMS
from conv3d_cpu._native.geometry cimport c3_geom, geom_of
from conv3d_cpu._native.isa cimport (c3_idx, c3_kernels, c3_tiling, layer_kernels,
                                     odd_lines, tile_kernel, tiling_of)
from conv3d_cpu._native.launch cimport c3_launch, c3_thread, launch, stopped
from conv3d_cpu._native.openmp cimport c3_share_start, effective_threads

cdef enum:
    # Work items a call aims at (the reduction is split into chunks until there are this
    # many), independent of the thread count so that the chunks, and the bits, are too.
    TARGET_ITEMS = 64
    # The most bytes the chunks' partial sums may take together (beyond one chunk).
    PARTIAL_BYTES = 1 << 26
    # Elements of the gradient per item of the partials' reduction.
    REDUCE_BLOCK = 4096
    # An item's sums take at most this many bytes (or one block's), and a thread gets at
    # least this many items.
    ACC_BYTES = 1 << 19
    ITEMS_PER_THREAD = 2


# A row whose input plane is in the padding (_copy_spans; an enum is an int).
cdef c3_idx C3_NO_ROW = -(<c3_idx>1 << 62)


ctypedef struct wgrad_plan:
    c3_geom g
    bint f64
    bint check          # report a non-finite grad_output (the caller's NaN semantics)
    double* bias_part   # (nchunk, O): each chunk's sums of grad_output, or NULL
    const void* x
    const void* gy
    void* part          # (nchunk, O, cpg, kD, kH, kW): each chunk's sums (the gradient
                        # itself for one chunk)
    void* gw            # the gradient, where the partials are added (nchunk > 1)
    c3_tiling T
    c3_idx P3           # oD * oH * oW
    c3_idx taps         # kD * kH * kW
    c3_idx ncb          # input-channel blocks per group (tile positions), or cpg
    c3_idx nobr, ncbr   # output- and input-channel blocks per item
    c3_idx nor, ncr     # ranges of nobr / ncbr blocks per group
    c3_idx nchunk       # chunks of the N * oD output planes
    c3_idx rb           # output rows per kernel call
    bint kw_tiles       # tile positions are kernel columns kw, not input channels
    c3_idx Wp           # kw_tiles: the width of a gathered, zero-padded input row
    bint copy_rows      # else: whether the rows of a channel block are copied together,
    c3_idx cs           # cs apart
    # each thread's scratch: the sums (acc elements: nobr x ncbr x taps x nxmax x ocb, or
    # with kw_tiles nobr x ncbr x taps x ocb), a tile, the packed grad_output rows of a block (pk: nobr rb
    # oW ocb) and the copied input rows (kw_tiles: rb rows of Wp; else nxmax channels of cs)
    c3_idx acc, pk, slab
    c3_idx bias_at      # then, 64-byte aligned, nobr ocb doubles: the bias gradient's sums


def grad_weight(x, gy, weight_shape, stride, padding, dilation, Py_ssize_t groups,
                int num_threads, bint check_finite=False, bint with_bias=False):
    """``(gw, gb, non_finite)``: the weight gradient (shape ``weight_shape``) of conv3d(x, w)
    for grad_output ``gy``, with ``with_bias`` the bias gradient (float64 sums of ``gy`` per
    channel, else None), and whether ``check_finite`` found a NaN or an infinity in ``gy``.

    ``x`` (N, C, D, H, W) and ``gy`` (N, O, oD, oH, oW): C-contiguous, one dtype; ``padding``
    the front zero padding per axis (the far side follows from ``gy``'s shape). Taps in the
    padding are skipped: PyTorch multiplies them, so with a non-finite grad_output the caller
    recomputes on an explicitly padded copy (the flag, set only with ``check_finite``).
    """
    if x.dtype == np.float32:
        return _run[float](x, gy, weight_shape, stride, padding, dilation, groups, num_threads,
                           check_finite, with_bias)
    return _run[double](x, gy, weight_shape, stride, padding, dilation, groups, num_threads,
                        check_finite, with_bias)


def grad_bias(gy, x_shape, weight_shape, stride, padding, dilation, Py_ssize_t groups,
              int num_threads):
    """The bias gradient as ``grad_weight(..., with_bias=True)`` computes it, bit for bit,
    without the weight gradient: float64 sums of ``gy`` (C-contiguous) per channel."""
    if gy.dtype == np.float32:
        return _bias_run[float](gy, x_shape, weight_shape, stride, padding, dilation, groups,
                                num_threads)
    return _bias_run[double](gy, x_shape, weight_shape, stride, padding, dilation, groups,
                             num_threads)


cdef _bias_run(const floating[:, :, :, :, ::1] gy, x_shape, weight_shape, stride, padding,
               dilation, Py_ssize_t groups, int num_threads):
    cdef wgrad_plan P
    memset(&P, 0, sizeof(P))
    cdef Py_ssize_t xs[5]
    for i in range(5):
        xs[i] = x_shape[i]
    P.g = geom_of(xs, &gy.shape[0], tuple(weight_shape[2:]), stride, padding, dilation, groups)
    P.f64 = floating is double
    cdef int nt = effective_threads(num_threads)
    _plan(&P, sizeof(floating), nt)
    bias_part = np.empty((P.nchunk, P.g.O), np.float64)
    cdef double[:, ::1] bias_view = bias_part
    P.bias_part = &bias_view[0, 0]
    P.gy = &gy[0, 0, 0, 0, 0]
    cdef c3_launch L
    memset(&L, 0, sizeof(L))
    L.plan, L.n_threads, L.f64 = &P, nt, P.f64
    L.n_items, L.item = P.nchunk * P.g.O, _bias_item
    launch(&L)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.add.reduce(bias_part, axis=0)


cdef int _bias_item(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const wgrad_plan* P = <const wgrad_plan*>plan
    if P.f64:
        _channel_sums(P, item, <const double*>P.gy)
    else:
        _channel_sums(P, item, <const float*>P.gy)
    return 0


cdef void _channel_sums(const wgrad_plan* P, c3_idx item, const floating* gy) noexcept nogil:
    """Item chunk * O + o: channel o's sum over the chunk's rows, in the order of
    _bias_sums (per row block from zero in the dtype, then added in double)."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx o = item % g.O, chunk = item // g.O, planes = g.N * g.oD
    cdef c3_idx r_lo = <c3_idx>c3_share_start(planes, <int>P.nchunk, <int>chunk) * g.oH
    cdef c3_idx r_hi = <c3_idx>c3_share_start(planes, <int>P.nchunk, <int>chunk + 1) * g.oH
    cdef c3_idx rows_per_n = g.oD * g.oH, r0, r, n, j
    cdef const floating* row
    cdef floating run
    cdef double total = 0
    r0 = r_lo
    while r0 < r_hi:
        run = 0
        for r in range(r0, min(r0 + P.rb, r_hi)):
            n = r // rows_per_n
            row = gy + (n * g.O + o) * P.P3 + (r - n * rows_per_n) * g.oW
            for j in range(g.oW):
                run += row[j]
        total += run
        r0 += P.rb
    P.bias_part[chunk * g.O + o] = total


cdef _run(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] gy,
          weight_shape, stride, padding, dilation, Py_ssize_t groups, int num_threads,
          bint check, bint with_bias):
    cdef wgrad_plan P
    memset(&P, 0, sizeof(P))
    P.g = geom_of(&x.shape[0], &gy.shape[0], tuple(weight_shape[2:]), stride, padding,
                  dilation, groups)
    P.f64 = floating is double
    P.check = check
    dtype = np.float64 if P.f64 else np.float32
    cdef int nt = effective_threads(num_threads)
    _plan(&P, np.dtype(dtype).itemsize, nt)
    cdef const c3_geom* g = &P.g
    gw = buffers.empty(tuple(weight_shape), dtype)
    # (Every element of a partial is written by one item: no need to clear them. With one
    # chunk the items write the gradient itself.)
    part = gw if P.nchunk == 1 else buffers.empty((P.nchunk,) + tuple(weight_shape), dtype)
    cdef floating[::1] part_flat = part.reshape(-1)
    P.part = &part_flat[0]
    # (Written by the items of the first input-channel range, every element.)
    bias_part = np.empty((P.nchunk if with_bias else 1, g.O if with_bias else 1), np.float64)
    cdef double[:, ::1] bias_view = bias_part
    P.bias_part = &bias_view[0, 0] if with_bias else NULL
    P.x, P.gy = &x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0]

    cdef c3_launch L
    memset(&L, 0, sizeof(L))
    L.plan, L.n_threads, L.f64 = &P, nt, P.f64
    L.scratch_size = P.bias_at + 2 * P.nobr * P.T.ocb
    L.index_size = 4 * P.rb
    L.n_items, L.item = g.groups * P.nor * P.ncr * P.nchunk, _item
    cdef int flag = launch(&L)
    cdef floating[::1] gw_flat = gw.reshape(-1)
    if P.nchunk > 1:
        P.gw = &gw_flat[0]
        memset(&L, 0, sizeof(L))
        L.plan, L.n_threads, L.f64 = &P, effective_threads(num_threads), P.f64
        L.n_items, L.item = (gw.size + REDUCE_BLOCK - 1) // REDUCE_BLOCK, _reduce
        launch(&L)
    # The chunks' channel sums added in chunk order (inf - inf: NaN, as PyTorch, unwarned).
    gb = None
    if with_bias:
        with np.errstate(invalid="ignore", over="ignore"):
            gb = np.add.reduce(bias_part, axis=0)
    return gw, gb, bool(flag)


cdef void _plan(wgrad_plan* P, c3_idx itemsize, int nt) noexcept nogil:
    cdef const c3_geom* g = &P.g
    P.T = tiling_of(layer_kernels(g.opg, P.f64), P.f64, g.opg)
    P.P3 = g.oD * g.oH * g.oW
    P.taps = g.kD * g.kH * g.kW
    # Few input channels per group (a network's first layer, depthwise layers): the tile's
    # positions are the kernel's columns instead, over input rows gathered with their W
    # padding, one input channel per item.
    P.kw_tiles = min(g.kW, P.T.nxmax) > min(g.cpg, P.T.nxmax)
    P.ncb = g.cpg if P.kw_tiles else (g.cpg + P.T.nxmax - 1) // P.T.nxmax
    P.Wp = (g.oW - 1) * g.sW + (g.kW - 1) * g.dW + 1
    # Rows per call: C3_SUM_TERMS products at most (longer rows are cut into pieces).
    P.rb = max(1, C3_SUM_TERMS // g.oW)
    # The chunks: enough for TARGET_ITEMS items of one output- and input-channel block each,
    # their partials within PARTIAL_BYTES. They fix the order of the sums: never the
    # thread count.
    cdef c3_idx fine = g.groups * P.T.nob * P.ncb
    cdef c3_idx wbytes = g.O * g.cpg * P.taps * itemsize
    P.nchunk = min(max(1, (TARGET_ITEMS + fine - 1) // fine), max(1, g.N * g.oD))
    P.nchunk = max(1, min(P.nchunk, 1 + PARTIAL_BYTES // max(1, wbytes)))
    # An item takes ranges of blocks as large as its sums (ACC_BYTES) and ITEMS_PER_THREAD
    # items per thread (equal items: stealing evens out the rest) allow: each row of grad_output is then packed, and each of x read,
    # once per range instead of once per block. (Which item computes a sum never changes
    # how: the ranges may follow the thread count.)
    cdef c3_idx per_block = P.taps * (P.T.nxmax if not P.kw_tiles else 1) * P.T.ocb * itemsize
    P.nobr, P.ncbr = P.T.nob, P.ncb
    while P.nobr * P.ncbr > 1 and (
            P.nobr * P.ncbr * per_block > ACC_BYTES
            or g.groups * _ranges(P.T.nob, P.nobr) * _ranges(P.ncb, P.ncbr) * P.nchunk
            < ITEMS_PER_THREAD * nt):
        if P.nobr >= P.ncbr:
            P.nobr = (P.nobr + 1) // 2
        else:
            P.ncbr = (P.ncbr + 1) // 2
    P.nor, P.ncr = _ranges(P.T.nob, P.nobr), _ranges(P.ncb, P.ncbr)
    P.acc = P.nobr * P.ncbr * per_block // itemsize
    P.pk = P.nobr * P.rb * g.oW * P.T.ocb
    # Where more than 8 of a tile's channel planes fall on one set of the L1 cache (64 sets
    # of 64 bytes; planes a power of two apart, as in 32^3 volumes, all on one), its
    # broadcasts evict each other: the rows of a channel block are then copied together,
    # channels an odd number of cache lines apart.
    cdef c3_idx a = (g.D * g.H * g.W * itemsize // 64) % 64, b = 64, t
    while b:
        a, b = b, a % b
    P.copy_rows = not P.kw_tiles and min(g.cpg, P.T.nxmax) > 8 * (64 // a)
    # (The spans of rb output rows: at most rb sH + kH dH rows per output plane they touch.)
    P.cs = odd_lines(P.rb * (g.sH + (g.kH - 1) * g.dH + 1) * g.W, itemsize)
    P.slab = P.rb * P.Wp if P.kw_tiles else (P.T.nxmax * P.cs if P.copy_rows else 0)
    # (Thread scratch starts on a cache line: keep the doubles on one too.)
    P.bias_at = odd_lines(P.acc + P.T.nxmax * P.T.ocb + P.pk + P.slab, itemsize)


cdef inline c3_idx _ranges(c3_idx n, c3_idx per) noexcept nogil:
    return (n + per - 1) // per


# ---- hooks (launch.pxd) -------------------------------------------------------------------

cdef int _item(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const wgrad_plan* P = <const wgrad_plan*>plan
    if P.kw_tiles and P.f64:
        return _chunk_sums_kw(P, thread, item, <const double*>P.x, <const double*>P.gy)
    if P.kw_tiles:
        return _chunk_sums_kw(P, thread, item, <const float*>P.x, <const float*>P.gy)
    if P.f64:
        return _chunk_sums(P, thread, item, <const double*>P.x, <const double*>P.gy)
    return _chunk_sums(P, thread, item, <const float*>P.x, <const float*>P.gy)


cdef int _reduce(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const wgrad_plan* P = <const wgrad_plan*>plan
    if P.f64:
        _add_partials(P, item, <const double*>P.part, <double*>P.gw)
    else:
        _add_partials(P, item, <const float*>P.part, <float*>P.gw)
    return 0


cdef void _add_partials(const wgrad_plan* P, c3_idx item, const floating* part,
                        floating* gw) noexcept nogil:
    """Block ``item`` of the gradient: the chunks' partials added in chunk order, in double
    (one rounding for float32)."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx size = g.O * g.cpg * P.taps, e, c
    cdef double s
    for e in range(item * REDUCE_BLOCK, min(size, (item + 1) * REDUCE_BLOCK)):
        s = part[e]
        for c in range(1, P.nchunk):
            s += part[c * size + e]
        gw[e] = _quiet(<floating>s)


cdef int _pack_rows(const wgrad_plan* P, const floating* gy, c3_idx grp, c3_idx ob0,
                    c3_idx nob, c3_idx r0, c3_idx r1, floating* pack,
                    double* bias_sums) noexcept nogil:
    """Output rows r0 .. r1 - 1 (rows of the N * oD * oH in order) of grad_output's blocks
    ob0 .. ob0 + nob - 1 of group grp into ``pack``: block b's row r at
    (b rb + r - r0) oW ocb, its ocb channels contiguous per position; lanes past the group's
    last channel are left as they are (``_item_start`` zeroes them). Their channel sums are
    added to ``bias_sums`` unless it is NULL. Returns nonzero when P.check and one of the
    values is NaN or +-inf."""
    cdef const c3_geom* g = &P.g
    cdef int ocb = P.T.ocb
    cdef c3_idx rows_per_n = g.oD * g.oH, nvalid, b
    cdef c3_idx r, n, r_end, start, count, k, j
    cdef const floating* src
    cdef int bad = 0
    for b in range(nob):
        nvalid = min(<c3_idx>ocb, g.opg - (ob0 + b) * ocb)
        r = r0
        while r < r1:
            # A run of rows of one batch element: consecutive positions of its planes.
            n = r // rows_per_n
            r_end = min(r1, (n + 1) * rows_per_n)
            start, count = (r - n * rows_per_n) * g.oW, (r_end - r) * g.oW
            src = gy + (n * g.O + grp * g.opg + (ob0 + b) * ocb) * P.P3 + start
            P.T.K.transpose_block[P.f64](src, P.P3, pack + (b * P.rb + r - r0) * g.oW * ocb,
                                         ocb, nvalid, count)
            if P.check:
                for k in range(nvalid):
                    for j in range(count):
                        bad |= (src[k * P.P3 + j] - src[k * P.P3 + j]) != 0  # NaN, +-inf
            r = r_end
    if bias_sums != NULL:
        _bias_sums(P, pack, nob, (r1 - r0) * g.oW, bias_sums)
    return bad


cdef inline double* _item_start(const wgrad_plan* P, c3_thread* thread, floating* acc,
                                floating* pack, c3_idx cb0) noexcept nogil:
    """Clear an item's sums and packed rows; return the bias gradient's sums, cleared, when
    the item takes them (those of the first input-channel range do), else NULL."""
    memset(acc, 0, P.acc * sizeof(floating))
    memset(pack, 0, P.pk * sizeof(floating))
    if P.bias_part == NULL or cb0 != 0:
        return NULL
    cdef double* bias_sums = <double*>(<floating*>thread.scratch + P.bias_at)
    memset(bias_sums, 0, P.nobr * P.T.ocb * sizeof(double))
    return bias_sums


cdef inline void _bias_sums(const wgrad_plan* P, const floating* pack, c3_idx nob, c3_idx npos,
                            double* sums) noexcept nogil:
    """Add the packed rows' channel sums (npos positions of nob blocks) to ``sums``: each
    block's positions summed from zero in the dtype (at most C3_SUM_TERMS of them, a row
    block), then added in double."""
    cdef int ocb = P.T.ocb, k
    cdef c3_idx b, j
    cdef floating run[64]  # (a block's lanes: at most 2 vectors of 16 floats)
    for b in range(nob):
        for k in range(ocb):
            run[k] = 0
        for j in range(npos):
            for k in range(ocb):
                run[k] += pack[(b * P.rb * P.g.oW + j) * ocb + k]
        for k in range(ocb):
            sums[b * ocb + k] += run[k]


cdef inline void _bias_store(const wgrad_plan* P, const double* sums, c3_idx grp, c3_idx ob0,
                             c3_idx nob, c3_idx chunk) noexcept nogil:
    cdef int ocb = P.T.ocb
    cdef c3_idx b, k
    for b in range(nob):
        for k in range(min(<c3_idx>ocb, P.g.opg - (ob0 + b) * ocb)):
            P.bias_part[chunk * P.g.O + grp * P.g.opg + (ob0 + b) * ocb + k] = sums[b * ocb + k]


cdef inline void _item_of(const wgrad_plan* P, c3_idx item, c3_idx* grp, c3_idx* ob0,
                          c3_idx* nob, c3_idx* cb0, c3_idx* ncb, c3_idx* chunk, c3_idx* r_lo,
                          c3_idx* r_hi) noexcept nogil:
    """Item ((g nor + orange) ncr + crange) nchunk + chunk: its group, its output-channel
    blocks ob0 .. ob0 + nob - 1, input-channel blocks cb0 .. cb0 + ncb - 1 (channels with
    kw_tiles) and rows r_lo .. r_hi - 1."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx planes = g.N * g.oD, rest = item // P.nchunk
    chunk[0] = item % P.nchunk
    cb0[0] = (rest % P.ncr) * P.ncbr
    ncb[0] = min(P.ncbr, P.ncb - cb0[0])
    rest = rest // P.ncr
    grp[0], ob0[0] = rest // P.nor, (rest % P.nor) * P.nobr
    nob[0] = min(P.nobr, P.T.nob - ob0[0])
    r_lo[0] = <c3_idx>c3_share_start(planes, <int>P.nchunk, <int>chunk[0]) * g.oH
    r_hi[0] = <c3_idx>c3_share_start(planes, <int>P.nchunk, <int>chunk[0] + 1) * g.oH


cdef inline c3_idx _input_rows(const wgrad_plan* P, c3_idx r0, c3_idx r1, c3_idx kd, c3_idx kh,
                               c3_idx* r_off, c3_idx* w_off) noexcept nogil:
    """The rows r0 .. r1 - 1 whose input row for kernel row (kd, kh) lies inside the input:
    the offset of that row in a batch element's first channel (r_off) and of the row in a
    block of the pack (w_off). Returns their number."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx r, p, n, od, oh, d, h, nv = 0
    for r in range(r0, r1):
        p, oh = r // g.oH, r % g.oH
        n, od = p // g.oD, p % g.oD
        d = od * g.sD + kd * g.dD - g.pD
        h = oh * g.sH + kh * g.dH - g.pH
        if 0 <= d < g.D and 0 <= h < g.H:
            r_off[nv] = (n * g.C * g.D + d) * g.H * g.W + h * g.W
            w_off[nv] = (r - r0) * g.oW * P.T.ocb
            nv += 1
    return nv


cdef int _chunk_sums(const wgrad_plan* P, c3_thread* thread, c3_idx item,
                     const floating* x, const floating* gy) noexcept nogil:
    """One item (``_item_of``): the sums of its output-channel blocks and every input
    channel of its group over its chunk of rows, into the chunk's partial. Per block of rb
    rows: grad_output's rows packed once, then per (kd, kh) the rows inside the input, per
    input-channel block, kernel column and output-channel block one kernel call."""
    cdef const c3_geom* g = &P.g
    cdef int ocb = P.T.ocb, nxmax = P.T.nxmax, nx
    cdef c3_idx grp, ob0, nob, cb0, ncb, chunk, r_lo, r_hi
    _item_of(P, item, &grp, &ob0, &nob, &cb0, &ncb, &chunk, &r_lo, &r_hi)
    cdef c3_idx DHW = g.D * g.H * g.W
    cdef floating* acc = <floating*>thread.scratch
    cdef floating* tile = acc + P.acc
    cdef floating* pack = tile + nxmax * ocb
    cdef c3_idx* r_off = thread.index
    cdef c3_idx* w_off = thread.index + P.rb
    cdef c3_idx* s_off = thread.index + 2 * P.rb  # the copied rows' offsets in the slab
    cdef c3_idx* base = thread.index + 3 * P.rb   # per row, its plane's rows in the slab
    cdef floating* slab = pack + P.pk
    cdef bint f64 = floating is double
    cdef c3_idx r0, r1, kd, kh, kw, nv, lo, hi, e0, ne, i, j, tap, cb, c0, b, q
    cdef c3_idx tsize = nxmax * ocb
    cdef const floating* xb
    cdef floating* sums
    cdef int bad = 0
    cdef double* bias_sums = _item_start(P, thread, acc, pack, cb0)
    r0 = r_lo
    while r0 < r_hi:
        if stopped(thread):
            return bad
        r1 = min(r0 + P.rb, r_hi)
        bad |= _pack_rows(P, gy, grp, ob0, nob, r0, r1, pack, bias_sums)
        for kd in range(g.kD):
            for q in range(g.kH * ncb):
                # (kh, cb), kh inner where rows are copied: one copy of the rows of a
                # (kd, cb) serves every kh.
                if P.copy_rows:
                    kh, cb = q % g.kH, cb0 + q // g.kH
                else:
                    kh, cb = q // ncb, cb0 + q % ncb
                c0 = <c3_idx>c3_share_start(g.cpg, <int>P.ncb, <int>cb)
                nx = <int>(<c3_idx>c3_share_start(g.cpg, <int>P.ncb, <int>cb + 1) - c0)
                xb = x + (grp * g.cpg + c0) * DHW
                if P.copy_rows:
                    if kh == 0:
                        _copy_spans(P, r0, r1, kd, xb, slab, nx, base)
                    nv = _slab_rows(P, r0, r1, kh, base, s_off, w_off)
                else:
                    nv = _input_rows(P, r0, r1, kd, kh, r_off, w_off)
                if nv == 0:
                    continue
                for kw in range(g.kW):
                    # The positions ow whose column ow sW + kw dW - pW is in the input.
                    lo = max(0, _ceil_div(g.pW - kw * g.dW, g.sW))
                    hi = min(g.oW, _floor_div(g.W - 1 + g.pW - kw * g.dW, g.sW) + 1)
                    tap = (kd * g.kH + kh) * g.kW + kw
                    for b in range(nob):
                        sums = acc + ((b * ncb + cb - cb0) * P.taps + tap) * tsize
                        e0 = lo
                        while e0 < hi:
                            ne = min(hi - e0, C3_SUM_TERMS)
                            tile_kernel(&P.T, f64)(
                                (slab if P.copy_rows else xb) + e0 * g.sW + kw * g.dW
                                - g.pW, s_off if P.copy_rows else r_off, nv,
                                pack + (b * P.rb * g.oW + e0) * ocb, w_off, ne, g.sW,
                                P.cs if P.copy_rows else DHW, tile, nx)
                            for i in range(nx * ocb):
                                sums[i] += tile[i]
                            e0 += ne
        r0 = r1
    # This chunk's partial: (O, cpg, taps), from the sums' (block, c block, tap, c, o) order.
    cdef floating* part = <floating*>P.part + chunk * g.O * g.cpg * P.taps
    cdef floating* dst
    cdef c3_idx k, t, nvalid
    for b in range(nob):
        nvalid = min(<c3_idx>ocb, g.opg - (ob0 + b) * ocb)
        for cb in range(cb0, cb0 + ncb):
            c0 = <c3_idx>c3_share_start(g.cpg, <int>P.ncb, <int>cb)
            nx = <int>(<c3_idx>c3_share_start(g.cpg, <int>P.ncb, <int>cb + 1) - c0)
            dst = part + ((grp * g.opg + (ob0 + b) * ocb) * g.cpg + c0) * P.taps
            sums = acc + (b * ncb + cb - cb0) * P.taps * tsize
            for k in range(nvalid):
                for j in range(nx):
                    for t in range(P.taps):
                        dst[(k * g.cpg + j) * P.taps + t] = _quiet(sums[t * tsize + j * ocb + k])
    if bias_sums != NULL:
        _bias_store(P, bias_sums, grp, ob0, nob, chunk)
    return bad


cdef inline void _copy_spans(const wgrad_plan* P, c3_idx r0, c3_idx r1, c3_idx kd,
                             const floating* xb, floating* slab, int nx,
                             c3_idx* base) noexcept nogil:
    """Copy the input rows that rows r0 .. r1 - 1 read for kernel plane kd, every kh: per
    output plane among them, the span of input rows its rows reach (one copy per channel),
    channel j's rows at j cs in the slab. ``base[r - r0]``: where row h = 0 of row r's input
    plane would be in the slab (C3_NO_ROW when that plane is in the padding)."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx r = r0, r_end, p, n, od, d, h0, h1, at = 0, DHW = g.D * g.H * g.W, i
    cdef int j
    while r < r1:
        p = r // g.oH
        r_end = min(r1, (p + 1) * g.oH)
        n, od = p // g.oD, p % g.oD
        d = od * g.sD + kd * g.dD - g.pD
        h0 = max(0, (r - p * g.oH) * g.sH - g.pH)
        h1 = min(g.H - 1, (r_end - 1 - p * g.oH) * g.sH + (g.kH - 1) * g.dH - g.pH)
        if 0 <= d < g.D and h0 <= h1:
            for j in range(nx):
                memcpy(slab + j * P.cs + at * g.W, xb + j * DHW + (n * g.C * g.D + d) * g.H * g.W
                       + h0 * g.W, (h1 - h0 + 1) * g.W * sizeof(floating))
            for i in range(r - r0, r_end - r0):
                base[i] = (at - h0) * g.W
            at += h1 - h0 + 1
        else:
            for i in range(r - r0, r_end - r0):
                base[i] = C3_NO_ROW
        r = r_end


cdef inline c3_idx _slab_rows(const wgrad_plan* P, c3_idx r0, c3_idx r1, c3_idx kh,
                              const c3_idx* base, c3_idx* s_off, c3_idx* w_off) noexcept nogil:
    """As _input_rows for the rows copied by _copy_spans: offsets in the slab."""
    cdef const c3_geom* g = &P.g
    cdef c3_idx r, h, nv = 0
    for r in range(r0, r1):
        h = (r % g.oH) * g.sH + kh * g.dH - g.pH
        if base[r - r0] != C3_NO_ROW and 0 <= h < g.H:
            s_off[nv] = base[r - r0] + h * g.W
            w_off[nv] = (r - r0) * g.oW * P.T.ocb
            nv += 1
    return nv


cdef int _chunk_sums_kw(const wgrad_plan* P, c3_thread* thread, c3_idx item,
                        const floating* x, const floating* gy) noexcept nogil:
    """One item (``_item_of``) with kw_tiles: as ``_chunk_sums``, but per input channel the
    rows inside the input are gathered into the thread's scratch with their W padding
    (zeros), and a tile holds up to nxmax kernel columns."""
    cdef const c3_geom* g = &P.g
    cdef int ocb = P.T.ocb, nxmax = P.T.nxmax, nk
    cdef c3_idx grp, ob0, nob, cb0, ncb, chunk, r_lo, r_hi
    _item_of(P, item, &grp, &ob0, &nob, &cb0, &ncb, &chunk, &r_lo, &r_hi)
    cdef c3_idx DHW = g.D * g.H * g.W, Wp = P.Wp
    cdef floating* acc = <floating*>thread.scratch
    cdef floating* tile = acc + P.acc
    cdef floating* pack = tile + nxmax * ocb
    cdef floating* slab = pack + P.pk
    cdef c3_idx* r_off = thread.index
    cdef c3_idx* w_off = thread.index + P.rb
    cdef c3_idx* s_off = thread.index + 2 * P.rb  # the gathered rows' offsets in the slab
    cdef bint f64 = floating is double
    # A gathered row: pW zeros (fewer if the row is shorter), the input's columns that fit,
    # zeros up to Wp.
    cdef c3_idx front = min(g.pW, Wp), ncopy = max(0, min(g.W, Wp - g.pW))
    cdef c3_idx r0, r1, kd, kh, kw0, nv, e0, ne, i, c, b, base
    cdef const floating* xc
    cdef floating* row
    cdef floating* sums
    cdef int bad = 0
    cdef double* bias_sums = _item_start(P, thread, acc, pack, cb0)
    for i in range(P.rb):
        s_off[i] = i * Wp
    r0 = r_lo
    while r0 < r_hi:
        if stopped(thread):
            return bad
        r1 = min(r0 + P.rb, r_hi)
        bad |= _pack_rows(P, gy, grp, ob0, nob, r0, r1, pack, bias_sums)
        for kd in range(g.kD):
            for kh in range(g.kH):
                nv = _input_rows(P, r0, r1, kd, kh, r_off, w_off)
                if nv == 0:
                    continue
                base = (kd * g.kH + kh) * g.kW
                for c in range(cb0, cb0 + ncb):
                    xc = x + (grp * g.cpg + c) * DHW
                    for i in range(nv):
                        row = slab + i * Wp
                        memset(row, 0, front * sizeof(floating))
                        memcpy(row + front, xc + r_off[i], ncopy * sizeof(floating))
                        memset(row + front + ncopy, 0, (Wp - front - ncopy) * sizeof(floating))
                    kw0 = 0
                    while kw0 < g.kW:
                        nk = <int>min(<c3_idx>nxmax, g.kW - kw0)
                        for b in range(nob):
                            sums = acc + ((b * ncb + c - cb0) * P.taps + base + kw0) * ocb
                            e0 = 0
                            while e0 < g.oW:
                                ne = min(g.oW - e0, C3_SUM_TERMS)
                                tile_kernel(&P.T, f64)(
                                    slab + e0 * g.sW + kw0 * g.dW, s_off, nv,
                                    pack + (b * P.rb * g.oW + e0) * ocb, w_off, ne, g.sW,
                                    g.dW, tile, nk)
                                for i in range(nk * ocb):
                                    sums[i] += tile[i]
                                e0 += ne
                        kw0 += nk
        r0 = r1
    cdef floating* part = <floating*>P.part + chunk * g.O * g.cpg * P.taps
    cdef c3_idx k, t, nvalid
    for b in range(nob):
        nvalid = min(<c3_idx>ocb, g.opg - (ob0 + b) * ocb)
        for c in range(cb0, cb0 + ncb):
            for k in range(nvalid):
                for t in range(P.taps):
                    part[((grp * g.opg + (ob0 + b) * ocb + k) * g.cpg + c) * P.taps + t] = \
                        _quiet(acc[((b * ncb + c - cb0) * P.taps + t) * ocb + k])
    if bias_sums != NULL:
        _bias_store(P, bias_sums, grp, ob0, nob, chunk)
    return bad


cdef inline floating _quiet(floating v) noexcept nogil:
    """v, a NaN as numpy's one quiet NaN (as the direct kernels store theirs: kernels.h,
    quiet_nan): which tile-kernel variant sums an element follows the items' ranges, cut by
    the thread count, and which of several NaN operands an instruction passes on differs
    between variants."""
    return v if v == v else <floating>NAN


cdef inline c3_idx _floor_div(c3_idx a, c3_idx b) noexcept nogil:
    return a // b if a >= 0 else -((-a + b - 1) // b)


cdef inline c3_idx _ceil_div(c3_idx a, c3_idx b) noexcept nogil:
    return -_floor_div(-a, b)
