# The direct kernel's input gather, for every driver that reads input rows the way the direct
# forward does (its blocked and depthwise paths).
#
# A work item computes output rows of one output plane z of one (batch element, group). The
# input planes its taps touch are found (``gather_planes``) and, unless the rows are read in
# place, their rows are copied into the thread's slab, zero padded along W: slab slot s holds
# rows iy0 .. iy0 + hs - 1 of one input plane, hs rows of Wp elements, the input's columns
# from column pW on; rows outside the input stay zero. Taps outside the input in D are
# skipped. With another padding mode than zeros (g.mode) nothing is outside: planes, rows and
# the W padding columns are read where padding.h maps them, so the kernels see the padded
# input without a padded copy of it. The slab keeps R planes per input channel in a ring (``c3_ring``), so an input plane
# shared by the kD output planes that read it is copied once when a thread's items run along z
# (``z_of``). ``tap_rows`` then lists, for one output row, the input rows and the kernel rows
# the micro-kernels multiply.
#
# Functions are inline (this is a .pxd without a module): they run once per work item.
from libc.string cimport memcpy, memset

from cython cimport floating

from conv3d_cpu._native.geometry cimport c3_geom
from conv3d_cpu._native.isa cimport c3_idx
from conv3d_cpu._native.padding cimport C3_PAD_ZEROS, c3_pad_index


ctypedef struct c3_ring:
    # The input planes a thread's slab holds: R positions per input channel.
    c3_idx R
    c3_idx* tags    # (run, plane) held at each position: 2 R
    c3_idx* pos     # per kernel plane a of the current item, its position (kD)
    c3_idx* fill    # per a, whether the plane must be copied (kD)


ctypedef struct c3_slots:
    # The in-range (c, a) input planes of one output plane, in (c, a) order.
    c3_idx n
    c3_idx* w       # its kernel plane, c * kD + a
    c3_idx* x       # its offset in the group's input
    c3_idx* s       # its slab slot, c * R + ring position (when gathered)


ctypedef struct c3_rows:
    # The input rows one output row reads, with their kernel rows (the micro-kernels' r_off,
    # w_off).
    c3_idx n
    c3_idx* r_off
    c3_idx* w_off


ctypedef struct c3_gather_layout:
    # A thread's index scratch for the gather: offsets (in c3_idx) of the rows, the slots and
    # the ring, and its size.
    c3_idx rows, slots, ring, size


cdef inline c3_gather_layout gather_layout(const c3_geom* g, c3_idx R) noexcept nogil:
    cdef c3_gather_layout lay
    cdef c3_idx max_rows = g.cpg * g.kD * g.kH
    lay.rows = 0
    lay.slots = 2 * max_rows
    lay.ring = lay.slots + 3 * g.cpg * g.kD
    lay.size = lay.ring + 2 * R + 2 * g.kD
    return lay


cdef inline void gather_bind(const c3_gather_layout* lay, const c3_geom* g, c3_idx R,
                             c3_idx* index, c3_rows* rows, c3_slots* slots,
                             c3_ring* ring) noexcept nogil:
    """Point rows, slots and ring at a thread's index scratch (layout ``lay``)."""
    cdef c3_idx n = g.cpg * g.kD
    rows.r_off = index + lay.rows
    rows.w_off = rows.r_off + g.cpg * g.kD * g.kH
    slots.w = index + lay.slots
    slots.x = slots.w + n
    slots.s = slots.x + n
    ring.R = R
    ring.tags = index + lay.ring
    ring.pos = ring.tags + 2 * R
    ring.fill = ring.pos + g.kD


cdef inline c3_idx ring_depth(c3_idx kD, c3_idx dD, c3_idx D) noexcept nogil:
    """Input planes the ring keeps per input channel, so that the in-range planes of one
    output plane (dD apart) fall on distinct positions: kD when gcd(kD, dD) = 1, else the
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


cdef inline c3_idx z_step(const c3_geom* g) noexcept nogil:
    """Planes between consecutive output planes of a run (z_of): the dilation, where that
    makes them share kD - 1 input planes (stride 1; a dilation of oD or more leaves every
    residue class one plane: the plain order), else 1."""
    return g.dD if g.kD > 1 and g.sD == 1 and g.dD < g.oD else 1


cdef inline c3_idx z_of(c3_idx q, c3_idx oD, c3_idx step) noexcept nogil:
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


cdef inline void ring_reset(c3_ring* ring) noexcept nogil:
    """Empty: a call's first item copies every plane (the input may have changed)."""
    cdef c3_idx r
    for r in range(2 * ring.R):
        ring.tags[r] = -1


cdef inline void ring_planes(c3_ring* ring, const c3_geom* g, c3_idx run,
                             c3_idx z) noexcept nogil:
    """Ring positions of the in-range input planes of output plane z, for the items of ``run``
    (one batch element, group and row band): ``ring.pos[a]`` and whether the plane must be
    copied, ``ring.fill[a]``, per kernel plane a.

    Items of one run arrive in order of z (or in reverse, when stolen), so the planes shared
    with the previous item are still there; any other order is also correct, only slower.
    Which position holds a plane never changes what is computed: results stay bitwise the
    same."""
    # (Fields read into locals: stores through the c3_idx pointers below could alias them.)
    cdef c3_idx a, iz, r, R = ring.R, kD = g.kD, sD = g.sD, dD = g.dD, pD = g.pD, D = g.D
    cdef int mode = g.mode
    cdef c3_idx* tags = ring.tags
    cdef c3_idx* pos = ring.pos
    cdef c3_idx* fill = ring.fill
    for a in range(kD):
        iz = c3_pad_index(z * sD + a * dD - pD, D, mode)
        if iz >= 0:
            r = iz % R
            if mode != C3_PAD_ZEROS:
                r = _free_position(ring, g, z, a, iz, r)
            fill[a] = tags[2 * r] != run or tags[2 * r + 1] != iz
            tags[2 * r] = run
            tags[2 * r + 1] = iz
            pos[a] = r


cdef inline c3_idx _free_position(const c3_ring* ring, const c3_geom* g, c3_idx z, c3_idx a,
                                  c3_idx iz, c3_idx r) noexcept nogil:
    """The position of plane iz for tap a: where an earlier tap of this item put the same
    plane, else r unless an earlier tap put another plane there, else the first position none
    of them holds. (Zeros padding leaves the in-range planes of one output plane an arithmetic
    progression, which ring_depth keeps apart; a reflected or wrapped plane can land on a
    position a neighbour took.) R >= the distinct planes of an item: a free position exists."""
    cdef c3_idx b, q
    cdef bint taken = False
    for b in range(a):
        if _tap_plane(g, z, b) == iz:
            return ring.pos[b]
    for b in range(a):
        if _tap_plane(g, z, b) >= 0 and ring.pos[b] == r:
            taken = True
    if not taken:
        return r
    for q in range(ring.R):
        taken = False
        for b in range(a):
            if _tap_plane(g, z, b) >= 0 and ring.pos[b] == q:
                taken = True
                break
        if not taken:
            return q
    return r  # (unreachable: see above)


cdef inline c3_idx _tap_plane(const c3_geom* g, c3_idx z, c3_idx a) noexcept nogil:
    """The input plane tap a of output plane z reads, or -1 (zero padding)."""
    return c3_pad_index(z * g.sD + a * g.dD - g.pD, g.D, g.mode)


cdef inline c3_idx gather_planes(const c3_geom* g, c3_ring* ring, c3_slots* slots,
                                 c3_idx run, c3_idx z, const floating* xg, floating* slab,
                                 c3_idx iy0, c3_idx hs, c3_idx Wp, bint copy) noexcept nogil:
    """The slots of output plane z (``xg``: the group's first input channel); with ``copy``,
    each plane's rows iy0 .. iy0 + hs - 1 are in its slab slot, copied only when the ring does
    not hold them already. Zeros padding: rows outside the input and the W padding stay zero
    from the thread's start (the W padding is never written; a row outside the input is
    zeroed when its slot is filled, as a slot may have held an input row for another row
    band); another mode reads them where it maps them. Returns the number of slots."""
    cdef c3_idx c, a, iz, j, iy, n = 0
    cdef c3_idx cpg = g.cpg, kD = g.kD, sD = g.sD, dD = g.dD, pD = g.pD, D = g.D
    cdef c3_idx H = g.H, W = g.W, pW = g.pW, plane = g.H * g.W, R = ring.R
    cdef int mode = g.mode
    # The slot columns any tap reads: [0, extent); those past the input are padding.
    cdef c3_idx extent = min(Wp, (g.oW - 1) * g.sW + (g.kW - 1) * g.dW + 1)
    cdef c3_idx* sw = slots.w
    cdef c3_idx* sx = slots.x
    cdef c3_idx* ss = slots.s
    cdef const c3_idx* pos = ring.pos
    cdef const c3_idx* fill = ring.fill
    cdef floating* dst
    cdef const floating* src
    if copy:
        ring_planes(ring, g, run, z)
    for c in range(cpg):
        for a in range(kD):
            iz = c3_pad_index(z * sD + a * dD - pD, D, mode)
            if iz < 0:
                continue
            sw[n] = c * kD + a
            sx[n] = (c * D + iz) * plane
            if copy:
                ss[n] = c * R + pos[a]
                if fill[a]:
                    for j in range(hs):
                        iy = c3_pad_index(iy0 + j, H, mode)
                        dst = slab + (ss[n] * hs + j) * Wp
                        if iy < 0:
                            # (A row another band of the run read from the input: zero it
                            # for the callers that read padding rows.)
                            memset(dst, 0, extent * sizeof(floating))
                            continue
                        src = xg + sx[n] + iy * W
                        memcpy(dst + pW, src, W * sizeof(floating))
                        if mode != C3_PAD_ZEROS:
                            _pad_columns(dst, src, pW, W, extent, mode)
            n += 1
    slots.n = n
    return n


cdef inline void _pad_columns(floating* dst, const floating* src, c3_idx pW, c3_idx W,
                              c3_idx extent, int mode) noexcept nogil:
    """A slot row's padding columns (front pW, and past the input up to ``extent``) read
    from the input row ``src`` where the padding mode maps them."""
    cdef c3_idx col
    for col in range(pW):
        dst[col] = src[c3_pad_index(col - pW, W, mode)]
    for col in range(pW + W, extent):
        dst[col] = src[c3_pad_index(col - pW, W, mode)]


cdef inline c3_idx tap_rows(const c3_geom* g, const c3_slots* slots, c3_rows* rows,
                            c3_idx iy0, c3_idx j0, c3_idx hs, c3_idx Wp, c3_idx wstride,
                            bint copy, bint skip_padding) noexcept nogil:
    """The input rows of one output row whose first tap reads slot row j0, and their kernel
    rows (``wstride`` elements per (c, a, b) in the weights the micro-kernel reads).

    r_off is relative to the slab (``copy``) or to the group's input (rows in another padding
    mode than zeros read where it maps them). ``skip_padding`` leaves out rows in the zero
    padding along H; without it (gathered rows only) they stay in the sum as rows of zeros.
    Returns the number of rows."""
    cdef c3_idx s, b, j, iy, n = 0, kH = g.kH, dH = g.dH, H = g.H, W = g.W
    cdef int mode = g.mode
    cdef const c3_idx* sw = slots.w
    cdef const c3_idx* sx = slots.x
    cdef const c3_idx* ss = slots.s
    cdef c3_idx* r_off = rows.r_off
    cdef c3_idx* w_off = rows.w_off
    for s in range(slots.n):
        for b in range(kH):
            j = j0 + b * dH
            iy = c3_pad_index(iy0 + j, H, mode)
            if skip_padding and iy < 0:
                continue
            r_off[n] = (ss[s] * hs + j) * Wp if copy else sx[s] + iy * W
            w_off[n] = (sw[s] * kH + b) * wstride
            n += 1
    rows.n = n
    return n
