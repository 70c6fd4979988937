"""Direct 3D convolution (cross-correlation), float32/float64, OpenMP over output rows.

Threads take work items from static ranges with stealing (_schedule.h), pack the weights
together first, and keep their scratch on their own cache lines (thread_buffers).

Inputs are validated, C-contiguous arrays (the Python layer guarantees it). Zero padding is
implicit: for each output row (n, z, y), the input rows its taps touch are gathered into a
small per-thread buffer, zero padded along W only; taps outside the input in D or H are
skipped. No padded copy of the input is made. Work items run along output depth and the
buffer keeps input planes in a ring (_ring_planes), so a thread gathers an input plane that kD
neighbouring output planes read once, not kD times.

Two paths, both driving C micro-kernels from _kernels.c (chosen per CPU at import):

- blocked: weights repacked so a block of output channels is contiguous per tap; a tile of
  positions x output channels is accumulated in registers over all input channels and taps.
- rows: for depthwise-like layers (fewer output channels per group than a vector holds), one
  output row at a time, vectorized along W.

Each output element is computed by one thread in an order fixed by the shapes alone, so results
are bitwise identical for any thread count. Extra memory per call: the repacked weights plus,
per thread, (in_channels/groups) * ring_depth(kD, dD, D) planes of gathered rows.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

from conv3d_cpu._native.openmp import thread_buffers, thread_flags
from conv3d_cpu._native.openmp cimport (C3_MAX_RANGES, any_thread_flag, c3_range,
                                         c3_ranges_init, c3_ranges_next, c3_share_start,
                                         c3_touch_share, conv3d_cpu_barrier,
                                         effective_threads)
from conv3d_cpu._native.isa cimport (c3_idx, c3_kernels, channel_block_of, layer_kernels,
                              narrow_block, odd_lines, tile_kernel)


cdef inline c3_idx ring_depth(c3_idx kD, c3_idx dD, c3_idx D) noexcept nogil:
    """Input planes a thread's buffer keeps per input channel, so that the in-range planes of
    one output plane (dD apart) fall on distinct positions: kD when gcd(kD, dD) = 1, else the
    span of the taps, and never more than D (each input plane its own position)."""
    cdef c3_idx a = kD, b = dD
    if kD <= 1 or D <= 1:
        return 1
    while b:
        a, b = b, a % b
    if a == 1:
        return min(kD, D)
    if dD > (D - 1) // (kD - 1):  # the span (kD - 1) * dD + 1 exceeds D
        return D
    return (kD - 1) * dD + 1


cdef inline c3_idx z_step(c3_idx kD, c3_idx sD, c3_idx dD, c3_idx oD) noexcept nogil:
    """Planes between consecutive output planes of a run (_z_of): the dilation, where that
    makes them share kD - 1 input planes (stride 1; a dilation of oD or more leaves every
    residue class one plane: the plain order), else 1."""
    return dD if kD > 1 and sD == 1 and dD < oD else 1


cdef inline c3_idx _z_of(c3_idx q, c3_idx oD, c3_idx step) noexcept nogil:
    """Output plane of the q-th item of a run: the planes z with z % step == 0 ascending, then
    those with 1, and so on."""
    cdef c3_idx r = 0, size
    while r < step - 1:
        size = (oD - r + step - 1) // step
        if q < size:
            break
        q -= size
        r += 1
    return r + q * step


cdef inline void _ring_reset(c3_idx* tags, c3_idx R) noexcept nogil:
    cdef c3_idx r
    for r in range(2 * R):
        tags[r] = -1


cdef inline void _ring_planes(c3_idx* ring, c3_idx R, c3_idx run, c3_idx kD, c3_idx z,
                              c3_idx sD, c3_idx pD, c3_idx dD, c3_idx D) noexcept nogil:
    """Ring positions of the in-range input planes of output plane z, for the items of ``run``
    (one batch element, group and row band).

    ``ring``: the tags, (run, plane) per position (2 R), then, per kernel plane a, the
    position (kD) and whether the plane is not there yet and must be copied (kD), both set
    here. Items of one run arrive in order of z (or in reverse, when stolen), so the planes
    shared with the previous item are still there; any other order is also correct, only
    slower. Which position holds a plane never changes what is computed: results stay
    bitwise the same."""
    cdef c3_idx* pos = ring + 2 * R
    cdef c3_idx* fill = pos + kD
    cdef c3_idx a, iz, r
    for a in range(kD):
        iz = z * sD + a * dD - pD
        if 0 <= iz < D:
            r = iz % R
            fill[a] = ring[2 * r] != run or ring[2 * r + 1] != iz
            ring[2 * r] = run
            ring[2 * r + 1] = iz
            pos[a] = r


cdef inline c3_idx* _slab_ring(c3_idx* offs, c3_idx max_rows, c3_idx cpg,
                               c3_idx kD) noexcept nogil:
    """Where the ring starts in a blocked-path thread's ``offs`` (layout: _slab_rows)."""
    return offs + 2 * max_rows + 3 * cpg * kD


cdef inline c3_idx _chunk_start(c3_idx oD, c3_idx nzc, c3_idx zc) noexcept nogil:
    return <c3_idx>c3_share_start(oD, <int>nzc, <int>zc)


cdef c3_idx _gather_slab(const floating* xg, floating* slab, c3_idx* slot_w, c3_idx* slot_x,
                         c3_idx* slot_s, c3_idx* ring, c3_idx R, c3_idx run, bint copy,
                         c3_idx cpg, c3_idx D, c3_idx H, c3_idx W, c3_idx kD, c3_idx z,
                         c3_idx sD, c3_idx pD, c3_idx dD, c3_idx iy0, c3_idx hs, c3_idx pW,
                         c3_idx Wp) noexcept nogil:
    """Collect input rows iy0 .. iy0 + hs - 1 of every in-range (c, a) plane of output depth z.

    ``xg`` points at the group's first channel. One slot per plane, in (c, a) order:
    slot_w = c * kD + a (its kernel plane), slot_x = offset of the plane in ``xg``. With
    ``copy``, the plane's rows inside the input are in slab slot slot_s = c * R + ring
    position (hs rows of Wp; the W padding columns are zero from allocation and never
    written), copied only when the ring (``ring``, see _ring_planes) does not hold them
    already. Returns the number of slots.
    """
    cdef c3_idx c, a, iz, j, iy, n = 0
    cdef c3_idx* pos = ring + 2 * R
    cdef c3_idx* fill = pos + kD
    if copy:
        _ring_planes(ring, R, run, kD, z, sD, pD, dD, D)
    for c in range(cpg):
        for a in range(kD):
            iz = z * sD + a * dD - pD
            if iz < 0 or iz >= D:
                continue
            slot_w[n] = c * kD + a
            slot_x[n] = (c * D + iz) * H * W
            if copy:
                slot_s[n] = c * R + pos[a]
                if fill[a]:
                    for j in range(hs):
                        iy = iy0 + j
                        if 0 <= iy < H:
                            memcpy(slab + (slot_s[n] * hs + j) * Wp + pW,
                                   xg + slot_x[n] + iy * W, W * sizeof(floating))
            n += 1
    return n


cdef c3_idx _row_list(c3_idx nslots, const c3_idx* slot_w, const c3_idx* slot_x,
                      const c3_idx* slot_s, bint copy, c3_idx H, c3_idx W, c3_idx kH,
                      c3_idx iy0, c3_idx j0, c3_idx dH, c3_idx hs, c3_idx Wp, c3_idx wstride,
                      c3_idx* r_off, c3_idx* w_off) noexcept nogil:
    """The in-range input rows of one output row, whose first tap reads slab row j0.

    r_off is relative to the slab (``copy``) or to the group's input; w_off is the kernel row
    in the packed weights (``wstride`` elements per (c, a, b)). Returns the number of rows."""
    cdef c3_idx s, b, j, iy, n = 0
    for s in range(nslots):
        for b in range(kH):
            j = j0 + b * dH
            iy = iy0 + j
            if iy < 0 or iy >= H:
                continue
            r_off[n] = (slot_s[s] * hs + j) * Wp if copy else slot_x[s] + iy * W
            w_off[n] = (slot_w[s] * kH + b) * wstride
            n += 1
    return n


cdef inline void _row(const c3_kernels* K, const floating* rows, const c3_idx* r_off,
                      c3_idx n_rows, const floating* w, const c3_idx* w_off, c3_idx kW,
                      c3_idx dW, c3_idx sW, floating* out, c3_idx oW,
                      floating bias) noexcept nogil:
    if floating is float:
        K.row_f32(rows, r_off, n_rows, w, w_off, kW, dW, sW, out, oW, bias)
    else:
        K.row_f64(rows, r_off, n_rows, w, w_off, kW, dW, sW, out, oW, bias)


cdef inline void _store_tile(const c3_kernels* K, const floating* tile, int ocb, int nx,
                             floating* out, c3_idx plane, const floating* bias,
                             int nvalid) noexcept nogil:
    """Add bias and write a [nx positions][ocb channels] tile to NCDHW output rows."""
    if floating is float:
        K.store_f32(tile, ocb, nx, out, plane, bias, nvalid)
    else:
        K.store_f64(tile, ocb, nx, out, plane, bias, nvalid)


cdef void _tiles(const c3_kernels* K, bint wide, const floating* rows, const c3_idx* r_off,
                 c3_idx nr, const floating* wg, c3_idx wblock, const c3_idx* w_off, c3_idx kW,
                 c3_idx dW, c3_idx sW, const floating* bias, floating* orow, c3_idx plane,
                 c3_idx opg, int ocb, int nxmax, c3_idx n_pos, floating* tile) noexcept nogil:
    """``n_pos`` consecutive output positions of every channel block of one group.

    Positions are split into equal tiles (not nxmax + remainder): a short tail tile holds
    too few accumulators to keep the FMA units busy."""
    cdef c3_idx nob = (opg + ocb - 1) // ocb
    cdef c3_idx ntiles = (n_pos + nxmax - 1) // nxmax
    cdef c3_idx ob, t, x0
    cdef int nx
    for ob in range(nob):
        x0 = 0
        for t in range(ntiles):
            nx = <int>(n_pos // ntiles + (t < n_pos % ntiles))
            if nr > 0:
                tile_kernel(K, wide, rows + x0 * sW, r_off, nr, wg + ob * wblock, w_off, kW,
                            dW, sW, tile, nx)
            else:  # every tap in the padding: bias only
                memset(tile, 0, nx * ocb * sizeof(floating))
            _store_tile(K, tile, ocb, nx, orow + ob * ocb * plane + x0, plane, bias + ob * ocb,
                        <int>min(ocb, opg - ob * ocb))
            x0 += nx


cdef void _blocked(const floating* x, const floating* w, floating* wp, const floating* bias,
                   floating* out, floating* scratch, c3_idx* offs_all, c3_idx per_thread,
                   c3_idx offs_stride, c3_idx max_rows, c3_idx N, c3_idx C, c3_idx D,
                   c3_idx H, c3_idx W, c3_idx O, c3_idx groups, c3_idx kD, c3_idx kH,
                   c3_idx kW, c3_idx oD, c3_idx oH, c3_idx oW, c3_idx sD, c3_idx sH, c3_idx sW,
                   c3_idx pD, c3_idx pH, c3_idx pW, c3_idx dD, c3_idx dH, c3_idx dW, c3_idx Wp,
                   c3_idx yb, c3_idx R, int ocb, bint wide, int nxmax, int nt, int* flags,
                   c3_idx flag_stride, const c3_kernels* K) noexcept nogil:
    """Work item: ``yb`` output rows of one output plane (n, z) and one group, all its
    channel blocks. The ``nyb * oD`` items of one (n, g) come in ``nzc`` depth chunks (equal
    shares of oD: with as many chunks as threads, each thread writes whole output planes, as
    two threads writing bands of one plane would share a cache line at every band edge), each
    chunk band by band, each band along z (_z_of): a run that a thread's ring serves.

    The input rows they read are gathered once per item into a slab per (c, plane) that
    stays in the thread's ring for the next z, so rows shared by neighbouring output rows and
    planes are copied once. The weights are packed into ``wp``
    and each thread zeroes its own scratch first, on all threads: done serially before the
    call, they cost a sixth of a 2-thread run on small layers with large kernels."""
    cdef c3_idx cpg = C // groups, opg = O // groups
    cdef c3_idx nob = (opg + ocb - 1) // ocb
    cdef c3_idx wblock = cpg * kD * kH * kW * ocb
    cdef c3_idx plane = oD * oH * oW
    cdef c3_idx nyb = (oH + yb - 1) // yb
    cdef c3_idx hs = (yb - 1) * sH + (kH - 1) * dH + 1
    # Rows already as wide as the padded row are read in place: nothing to copy.
    cdef bint copy = Wp != W
    # (Initialized: Cython makes a parallel block's variables firstprivate.)
    cdef c3_idx item = 0, n = 0, z = 0, y0 = 0, g = 0, blk = 0, run = 0, ng = 0, k = 0
    cdef c3_idx zc = 0, z0 = 0, zl = 0
    cdef c3_idx nzc = min(oD, max(1, (nt + N * groups - 1) // (N * groups)))
    cdef c3_idx step = z_step(kD, sD, dD, oD)
    cdef floating* slab = NULL
    cdef c3_idx* offs = NULL
    cdef int tid = 0, nr
    cdef c3_range ranges[C3_MAX_RANGES]
    # Static ranges with stealing (_schedule.h): a thread works on the same input and output
    # planes in every call, which stay in its own cache (with OpenMP's dynamic schedule they
    # move between cores: gathering got 3x slower at 2 threads on a 16^3 grouped layer),
    # and a thread slowed by another process still gets help.
    nr = c3_ranges_init(ranges, nt, N * oD * nyb * groups)
    with parallel(num_threads=nt):
        tid = threadid()
        slab = scratch + tid * per_thread
        offs = offs_all + tid * offs_stride
        # Gathered row slots rely on their W padding columns staying zero; the ring starts
        # empty (the input may have changed since the last call).
        memset(slab, 0, per_thread * sizeof(floating))
        _ring_reset(_slab_ring(offs, max_rows, cpg, kD), R)
        for blk in prange(groups * nob, schedule="static"):
            flags[tid * flag_stride] |= _pack_block(w, wp, blk, nob, opg, cpg * kD * kH * kW,
                                                    ocb)
        c3_touch_share(out, N * O * plane * sizeof(floating), tid, nt)
        conv3d_cpu_barrier()  # every block packed (and page touched) before any item
        item = c3_ranges_next(ranges, nr, tid)
        while item >= 0:
            ng = item // (nyb * oD)
            g = ng % groups
            n = ng // groups
            k = item % (nyb * oD)
            zc = 0
            while _chunk_start(oD, nzc, zc + 1) * nyb <= k:
                zc = zc + 1
            z0 = _chunk_start(oD, nzc, zc)
            zl = _chunk_start(oD, nzc, zc + 1) - z0
            k = k - z0 * nyb
            z = z0 + _z_of(k % zl, zl, step)
            y0 = k // zl * yb
            run = (ng * nzc + zc) * nyb + k // zl
            _slab_rows(K, x + (n * C + g * cpg) * D * H * W, wp + g * nob * wblock, wblock,
                       bias + g * opg, out + (n * O + g * opg) * plane + z * oH * oW,
                       slab, slab + cpg * R * hs * Wp, offs, R, run, copy, cpg, opg, D, H, W,
                       kD, kH, kW, oH, oW, plane, z, y0, min(yb, oH - y0), hs, sD, sH, sW, pD,
                       pH, pW, dD, dH, dW, Wp, ocb, wide, nxmax, max_rows)
            item = c3_ranges_next(ranges, nr, tid)


cdef void _slab_rows(const c3_kernels* K, const floating* xg, const floating* wg,
                     c3_idx wblock, const floating* bias, floating* oplane, floating* slab,
                     floating* tile, c3_idx* offs, c3_idx R, c3_idx run, bint copy,
                     c3_idx cpg, c3_idx opg,
                     c3_idx D, c3_idx H, c3_idx W, c3_idx kD, c3_idx kH, c3_idx kW,
                     c3_idx oH, c3_idx oW, c3_idx plane, c3_idx z, c3_idx y0, c3_idx ny,
                     c3_idx hs, c3_idx sD, c3_idx sH, c3_idx sW, c3_idx pD, c3_idx pH,
                     c3_idx pW, c3_idx dD, c3_idx dH, c3_idx dW, c3_idx Wp, int ocb,
                     bint wide, int nxmax, c3_idx max_rows) noexcept nogil:
    """Output rows y0 .. y0 + ny - 1 of plane z for one group (see _blocked).

    ``offs`` (the thread's): r_off, w_off (max_rows each), slot_w, slot_x, slot_s (cpg * kD
    each), then the ring's tags (2 R) and per-a positions and fill flags (2 kD)."""
    cdef c3_idx* r_off = offs
    cdef c3_idx* w_off = offs + max_rows
    cdef c3_idx* slot_w = offs + 2 * max_rows
    cdef c3_idx* slot_x = slot_w + cpg * kD
    cdef c3_idx* slot_s = slot_x + cpg * kD
    cdef c3_idx iy0 = y0 * sH - pH
    cdef c3_idx nslots, y, nr
    nslots = _gather_slab(xg, slab, slot_w, slot_x, slot_s, _slab_ring(offs, max_rows, cpg, kD),
                          R, run, copy, cpg, D, H, W, kD, z, sD, pD, dD, iy0, hs, pW, Wp)
    for y in range(ny):
        nr = _row_list(nslots, slot_w, slot_x, slot_s, copy, H, W, kH, iy0, y * sH, dH, hs,
                       Wp, kW * ocb, r_off, w_off)
        _tiles(K, wide, slab if copy else xg, r_off, nr, wg, wblock, w_off, kW, dW, sW, bias,
               oplane + (y0 + y) * oW, plane, opg, ocb, nxmax, oW, tile)


cdef void _pointwise(const floating* x, const floating* w, floating* wp,
                     const floating* bias, floating* out, floating* scratch, const c3_idx* offs,
                     c3_idx per_thread, c3_idx N, c3_idx C, c3_idx O, c3_idx groups, c3_idx P,
                     c3_idx chunk, c3_idx ps, int ocb, bint wide, int nxmax, int nt, int* flags,
                     c3_idx flag_stride, const c3_kernels* K) noexcept nogil:
    """1x1x1, stride 1, no padding: input channels are rows of length P = D*H*W.

    Work item: ``chunk`` consecutive positions of one batch element, all groups. Per group
    the item's piece of each input row is copied to the thread's slab, rows ``ps`` apart
    (``offs``: the row offsets c * ps, then the weight offsets c * ocb): read in place, the
    rows lay P elements apart, which for many channels maps them onto a few cache sets (and
    more streams than the prefetchers follow), and every channel block read them again.
    Weights are packed into ``wp`` on all threads first (see _blocked)."""
    cdef c3_idx cpg = C // groups, opg = O // groups
    cdef c3_idx nob = (opg + ocb - 1) // ocb
    cdef c3_idx wblock = cpg * ocb
    cdef c3_idx nchunks = (P + chunk - 1) // chunk
    cdef c3_idx item = 0, n = 0, p0 = 0, g = 0, blk = 0, c = 0, npos = 0
    cdef floating* slab = NULL
    cdef const floating* xg = NULL
    cdef int tid = 0, nr
    cdef c3_range ranges[C3_MAX_RANGES]
    nr = c3_ranges_init(ranges, nt, N * nchunks)
    with parallel(num_threads=nt):
        tid = threadid()
        for blk in prange(groups * nob, schedule="static"):
            flags[tid * flag_stride] |= _pack_block(w, wp, blk, nob, opg, cpg, ocb)
        c3_touch_share(out, N * O * P * sizeof(floating), tid, nt)
        conv3d_cpu_barrier()  # every block packed (and page touched) before any item
        slab = scratch + tid * per_thread + nxmax * ocb
        item = c3_ranges_next(ranges, nr, tid)
        while item >= 0:
            n = item // nchunks
            p0 = (item % nchunks) * chunk
            npos = min(chunk, P - p0)
            for g in range(groups):
                xg = x + (n * C + g * cpg) * P + p0
                for c in range(cpg):
                    memcpy(slab + c * ps, xg + c * P, npos * sizeof(floating))
                _tiles(K, wide, slab, offs, cpg,
                       wp + g * nob * wblock, wblock, offs + cpg, 1, 1, 1, bias + g * opg,
                       out + (n * O + g * opg) * P + p0, P, opg, ocb, nxmax, npos,
                       scratch + tid * per_thread)
            item = c3_ranges_next(ranges, nr, tid)


cdef c3_idx _gather_planes(const floating* x, floating* planes, c3_idx* plane_src,
                          c3_idx* plane_slot, c3_idx* ring, c3_idx R, c3_idx run, c3_idx cpg,
                          c3_idx D, c3_idx H, c3_idx W, c3_idx kD, c3_idx z, c3_idx sD,
                          c3_idx pD, c3_idx dD, c3_idx pH, c3_idx pW, c3_idx Hp,
                          c3_idx Wp) noexcept nogil:
    """The in-range input planes of output plane z, zero padded to Hp x Wp, in (c, a) order.

    ``plane_src[i]`` = c * kD + a of the i-th, ``plane_slot[i]`` = c * R + its ring position
    in ``planes``; a plane is copied only when the ring (``ring``, see _ring_planes) does not
    hold it already. The padding is zero from allocation and never written. Returns the
    number of planes."""
    cdef c3_idx c, a, iz, iy, n = 0
    cdef c3_idx* pos = ring + 2 * R
    cdef c3_idx* fill = pos + kD
    cdef floating* dst
    _ring_planes(ring, R, run, kD, z, sD, pD, dD, D)
    for c in range(cpg):
        for a in range(kD):
            iz = z * sD + a * dD - pD
            if iz < 0 or iz >= D:
                continue
            plane_src[n] = c * kD + a
            plane_slot[n] = c * R + pos[a]
            if fill[a]:
                dst = planes + plane_slot[n] * Hp * Wp
                for iy in range(H):
                    memcpy(dst + (iy + pH) * Wp + pW, x + ((c * D + iz) * H + iy) * W,
                           W * sizeof(floating))
            n += 1
    return n


cdef void _rows(const floating* x, const floating* w, const floating* bias, floating* out,
                floating* scratch, c3_idx* offs_all, c3_idx per_thread, c3_idx offs_stride,
                c3_idx max_rows,
                c3_idx N, c3_idx C, c3_idx D, c3_idx H, c3_idx W, c3_idx O, c3_idx groups,
                c3_idx kD, c3_idx kH, c3_idx kW, c3_idx oD, c3_idx oH, c3_idx oW,
                c3_idx sD, c3_idx sH, c3_idx sW, c3_idx pD, c3_idx pH, c3_idx pW,
                c3_idx dD, c3_idx dH, c3_idx dW, c3_idx Hp, c3_idx Wp, c3_idx R, int nt,
                const c3_kernels* K) noexcept nogil:
    """Work item: output plane z of one group of one batch element (depthwise-like layers);
    items run over z first (_z_of).

    The group's input planes are gathered, padded in H and W, into the thread's ring, where
    the next z finds those it shares, and serve all the group's output channels and rows.
    ``offs`` (the thread's): r_off, w_off (max_rows each), plane_src, plane_slot (cpg * kD
    each), the ring's tags (2 R), per-a positions and fill flags (2 kD)."""
    cdef c3_idx cpg = C // groups, opg = O // groups
    cdef c3_idx item = 0, n = 0, g = 0, z = 0, nplanes = 0
    cdef c3_idx step = z_step(kD, sD, dD, oD)
    cdef floating* planes = NULL
    cdef c3_idx* r_off = NULL
    cdef c3_idx* w_off = NULL
    cdef c3_idx* plane_src = NULL
    cdef c3_idx* plane_slot = NULL
    cdef int tid = 0, nr
    cdef c3_range ranges[C3_MAX_RANGES]
    nr = c3_ranges_init(ranges, nt, N * groups * oD)
    with parallel(num_threads=nt):
        tid = threadid()
        planes = scratch + tid * per_thread
        r_off = offs_all + tid * offs_stride
        w_off = r_off + max_rows
        plane_src = w_off + max_rows
        plane_slot = plane_src + cpg * kD
        # Padding stays zero; the ring starts empty (the input may have changed).
        memset(planes, 0, per_thread * sizeof(floating))
        _ring_reset(plane_slot + cpg * kD, R)
        item = c3_ranges_next(ranges, nr, tid)
        while item >= 0:
            z = _z_of(item % oD, oD, step)
            g = (item // oD) % groups
            n = item // (oD * groups)
            nplanes = _gather_planes(x + (n * C + g * cpg) * D * H * W, planes, plane_src,
                                     plane_slot, plane_slot + cpg * kD, R, item // oD, cpg,
                                     D, H, W, kD, z, sD, pD, dD, pH, pW, Hp, Wp)
            _rows_plane(K, planes, nplanes, plane_slot, plane_src, r_off, w_off,
                        w + g * opg * cpg * kD * kH * kW, bias + g * opg,
                        out + ((n * O + g * opg) * oD + z) * oH * oW, opg, cpg * kD * kH * kW,
                        oD * oH * oW, kH, kW, oH, oW, sH, sW, dH, dW, Hp, Wp)
            item = c3_ranges_next(ranges, nr, tid)


cdef void _rows_plane(const c3_kernels* K, const floating* planes, c3_idx nplanes,
                      const c3_idx* plane_slot, const c3_idx* plane_src, c3_idx* r_off,
                      c3_idx* w_off,
                      const floating* wg, const floating* bias, floating* oplane, c3_idx opg,
                      c3_idx wsize, c3_idx ostride, c3_idx kH, c3_idx kW, c3_idx oH,
                      c3_idx oW, c3_idx sH, c3_idx sW, c3_idx dH, c3_idx dW, c3_idx Hp,
                      c3_idx Wp) noexcept nogil:
    """Every row of one output plane for each of a group's ``opg`` output channels."""
    cdef c3_idx y, i, b, o, nr
    for y in range(oH):
        nr = 0
        for i in range(nplanes):
            for b in range(kH):
                r_off[nr] = (plane_slot[i] * Hp + y * sH + b * dH) * Wp
                w_off[nr] = (plane_src[i] * kH + b) * kW
                nr += 1
        for o in range(opg):
            _row(K, planes, r_off, nr, wg + o * wsize, w_off, kW, dW, sW,
                 oplane + o * ostride + y * oW, oW, bias[o])


def direct(x, w, bias, out, stride, padding, dilation, Py_ssize_t groups, int num_threads):
    """Write conv3d(x, w) + bias into ``out`` (N, O, oD, oH, oW); return whether every
    weight is finite.

    C-contiguous arrays of one dtype (float32 or float64). ``padding`` is the front padding
    per axis; the far side is implied by ``out``'s shape. ``num_threads`` <= 0 means the
    OpenMP default, read now. Taps that fall in the padding are skipped, so with a NaN or an
    infinite weight the result differs from PyTorch's (0 * NaN is NaN): the caller then
    recomputes with the padding made explicit. (Found while the weights are packed, which
    reads them anyway: a separate np.isfinite pass cost 22 us a call on a 64 -> 128 layer.)
    """
    # Explicit dispatch: a fused def function would inspect every argument's buffer first.
    if x.dtype == np.float32:
        return _run[float](x, w, bias, out, stride, padding, dilation, groups, num_threads)
    else:
        return _run[double](x, w, bias, out, stride, padding, dilation, groups, num_threads)


cdef bint _run(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
          const floating[::1] bias, floating[:, :, :, :, ::1] out,
          stride, padding, dilation, Py_ssize_t groups, int num_threads):
    # (a vector's lanes hold output channels)
    cdef const c3_kernels* K = layer_kernels(w.shape[0] // groups, floating is double)
    cdef c3_idx N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef c3_idx O = w.shape[0], cpg = w.shape[1]
    cdef c3_idx kD = w.shape[2], kH = w.shape[3], kW = w.shape[4]
    cdef c3_idx oD = out.shape[2], oH = out.shape[3], oW = out.shape[4]
    cdef c3_idx sD = stride[0], sH = stride[1], sW = stride[2]
    cdef c3_idx pD = padding[0], pH = padding[1], pW = padding[2]
    cdef c3_idx dD = dilation[0], dH = dilation[1], dW = dilation[2]
    cdef c3_idx opg = O // groups
    cdef int nt = effective_threads(num_threads)
    # Padded row width: every tap of every output column lands inside it.
    cdef c3_idx Wp = max(pW + W, (oW - 1) * sW + (kW - 1) * dW + 1)
    cdef c3_idx max_rows = cpg * kD * kH
    cdef c3_idx R = ring_depth(kD, dD, D)
    cdef int ocb = 0, nxmax = 0, ocb_narrow = narrow_block(K, floating is double)
    cdef bint wide = False, use_rows, pointwise
    cdef c3_idx per_thread, yb = 1, chunk = 0, ps = 0
    cdef floating[::1] wp
    dtype = np.float32 if floating is float else np.float64
    use_rows = opg < ocb_narrow
    pointwise = (kD == 1 and kH == 1 and kW == 1 and sD == 1 and sH == 1 and sW == 1
                 and D == oD and H == oH and W == oW)
    if not use_rows:
        ocb = channel_block_of(K, floating is double, opg, &wide)
        nxmax = K.nx_wide if wide else K.nx_narrow
        # Filled by the kernel's threads (_pack_block).
        wp = np.empty(groups * ((opg + ocb - 1) // ocb) * ocb * cpg * kD * kH * kW,
                      dtype=dtype)
    cdef c3_idx Hp = max(pH + H, (oH - 1) * sH + (kH - 1) * dH + 1)
    cdef c3_idx step = 4 * ocb_narrow  # outputs per row-kernel step: 4 vectors of K
    if use_rows:
        # Whole vectors are read past the row end (see the row kernel).
        if sW == 1:
            Wp = max(Wp, (oW + step - 1) // step * step + (kW - 1) * dW)
        per_thread = cpg * R * Hp * Wp
    elif pointwise:
        # Items of up to 16 tiles; no more than a thread's share of the volume, so the
        # threads' slabs together stay about the size of the input.
        chunk = min(16 * nxmax, ((D * H * W + nt - 1) // nt + nxmax - 1) // nxmax * nxmax)
        ps = odd_lines(chunk, sizeof(floating))
        per_thread = nxmax * ocb + cpg * ps
    else:
        yb = _rows_per_item(N * oD * groups, oH, nt, cpg * R * Wp * sizeof(floating), sH,
                            (kH - 1) * dH + 1)
        per_thread = cpg * R * ((yb - 1) * sH + (kH - 1) * dH + 1) * Wp + nxmax * ocb
    # Not zeroed here: each thread clears its own part (planes or slabs) when the kernel
    # starts.
    cdef floating[::1] scratch
    scratch, per_thread = thread_buffers(nt, per_thread, dtype)
    cdef c3_idx[::1] offs
    cdef c3_idx offs_stride = 0
    if use_rows:
        offs, offs_stride = thread_buffers(nt, 3 * max_rows + cpg * kD + 2 * R + 2 * kD,
                                           np.intp)
    elif pointwise:
        offs = np.concatenate([np.arange(cpg, dtype=np.intp) * ps,
                               np.arange(cpg, dtype=np.intp) * ocb])
    else:
        offs, offs_stride = thread_buffers(nt, 2 * max_rows + 3 * cpg * kD + 2 * R + 2 * kD,
                                           np.intp)
    if use_rows:
        with nogil:
            _rows(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0, 0],
                  &scratch[0], &offs[0], per_thread, offs_stride, max_rows, N, C, D, H, W, O,
                  groups, kD, kH, kW, oD, oH, oW, sD, sH, sW, pD, pH, pW, dD, dH, dW, Hp, Wp,
                  R, nt, K)
            return _all_finite(&w[0, 0, 0, 0, 0], w.shape[0] * cpg * kD * kH * kW)
    # One flag per thread, each on its own line: a weight seen non-finite while packing.
    cdef int[::1] flags
    cdef c3_idx flag_stride
    flags, flag_stride = thread_flags(nt)
    if pointwise:
        with nogil:
            _pointwise(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &wp[0], &bias[0],
                       &out[0, 0, 0, 0, 0],
                       &scratch[0], &offs[0], per_thread, N, C, O, groups, D * H * W,
                       chunk, ps, ocb, wide, nxmax, nt, &flags[0], flag_stride, K)
    else:
        with nogil:
            _blocked(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &wp[0], &bias[0],
                     &out[0, 0, 0, 0, 0],
                     &scratch[0], &offs[0], per_thread, offs_stride, max_rows, N, C, D, H, W,
                     O, groups,
                     kD, kH, kW, oD, oH, oW, sD, sH, sW, pD, pH, pW, dD, dH, dW, Wp, yb, R,
                     ocb, wide, nxmax, nt, &flags[0], flag_stride, K)
    return not any_thread_flag(&flags[0], flag_stride, nt)


cdef bint _all_finite(const floating* w, c3_idx n) noexcept nogil:
    cdef c3_idx i
    cdef int bad = 0
    for i in range(n):
        bad |= (w[i] - w[i]) != 0  # NaN for NaN and +-inf (NaN != 0 holds)
    return not bad


cdef c3_idx _rows_per_item(c3_idx planes, c3_idx oH, int nt, c3_idx row_bytes, c3_idx sH,
                           c3_idx extent):
    """Output rows per work item of the blocked path.

    As many as keep >= 8 items per thread (load balance) and the per-thread slab of
    (rows - 1) * sH + extent input rows per (c, a) plane within 256 KiB (L2 share; memory)."""
    cdef c3_idx per_plane = max(1, (8 * nt + planes - 1) // planes)
    cdef c3_idx yb = max(1, (oH + per_plane - 1) // per_plane)
    while yb > 1 and ((yb - 1) * sH + extent) * row_bytes > (1 << 18):
        yb = (yb + 1) // 2
    return yb


cdef int _pack_block(const floating* w, floating* wp, c3_idx blk, c3_idx nob, c3_idx opg,
                     c3_idx k, int ocb) noexcept nogil:
    """Block ``blk`` = g * nob + ob of the packed weights: (O, k) -> (groups, nob, k, ocb),
    the block's ocb output channels contiguous per tap; channels past the group's last (a
    partial block) are zero. Returns nonzero when one of its weights is NaN or +-inf."""
    cdef c3_idx g = blk // nob, ob = blk % nob
    cdef c3_idx nvalid = min(ocb, opg - ob * ocb)
    cdef floating* dst = wp + blk * k * ocb
    cdef const floating* src = w + (g * opg + ob * ocb) * k
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
