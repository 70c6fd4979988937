"""An input in other strides (channels-last, a transposed or sliced view) copied into the
C-contiguous (N, C, D, H, W) layout the kernels read, on all threads.

numpy copies such a view one element at a time in the source's order, on one thread: a
channels-last 1 x 32 x 128^3 float32 input took longer to copy than to convolve. Here a work
item is one (n, z, y): its (C, W) block is copied row by row where W is contiguous, by the
transpose_block micro-kernel where C is (channels-last: vector transposes, whole cache lines
read and written), else as 16 x 16 tiles read along the source's faster axis.

``interleave_phases`` is the other copy between layouts: the stride phases of a transposed
convolution (grad_input), computed apart, written into one array, each element once, a work
item per output plane.
"""
import numpy as np

from conv3d_cpu._native import buffers

from cython cimport floating
from libc.string cimport memcpy, memset

from conv3d_cpu._native.isa cimport c3_idx, c3_kernels, current_kernels
from conv3d_cpu._native.launch cimport c3_launch, c3_thread, launch
from conv3d_cpu._native.openmp cimport effective_threads

# Tile edge of the (C, W) transpose.
cdef enum:
    TILE = 16


ctypedef struct copy_plan:
    bint f64
    const c3_kernels* K
    const char* src        # element (0, 0, 0, 0, 0)
    void* dst
    c3_idx N, C, D, H, W
    c3_idx s[5]            # the source's strides, in elements (any sign)


def contiguous(x, int num_threads=0):
    """A C-contiguous copy of the 5-D float32/float64 array ``x`` (``x`` itself when it is
    C-contiguous already), made on ``num_threads`` threads (<= 0: the OpenMP default)."""
    if x.flags.c_contiguous:
        return x
    itemsize = x.dtype.itemsize
    if x.size == 0 or any(st % itemsize for st in x.strides):
        return np.ascontiguousarray(x)
    out = buffers.empty(x.shape, x.dtype)
    cdef copy_plan P
    memset(&P, 0, sizeof(P))
    P.f64 = x.dtype == np.float64
    P.K = current_kernels()
    P.src = <const char*><size_t>x.__array_interface__["data"][0]
    P.dst = <void*><size_t>out.__array_interface__["data"][0]
    P.N, P.C, P.D, P.H, P.W = x.shape
    P.s = [st // itemsize for st in x.strides]
    cdef c3_launch L
    memset(&L, 0, sizeof(L))
    L.plan, L.f64 = &P, P.f64
    L.n_items, L.item = P.N * P.D * P.H, _copy_item
    # (no more threads than items; each writes a share of the fresh output's pages first)
    L.n_threads = <int>min(<c3_idx>effective_threads(num_threads), L.n_items)
    L.touch, L.touch_bytes = P.dst, out.nbytes
    launch(&L)
    return out


cdef int _copy_item(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const copy_plan* P = <const copy_plan*>plan
    if P.f64:
        _copy_rows(P, item, <double*>P.dst)
    else:
        _copy_rows(P, item, <float*>P.dst)
    return 0


cdef void _copy_rows(const copy_plan* P, c3_idx item, floating* dst) noexcept nogil:
    """out[n, :, z, y, :] = x[n, :, z, y, :] for item = (n * D + z) * H + y."""
    cdef c3_idx y = item % P.H, z = item // P.H % P.D, n = item // (P.H * P.D)
    cdef c3_idx C = P.C, W = P.W, sC = P.s[1], sW = P.s[4], plane = P.D * P.H * W
    cdef const floating* src = <const floating*>P.src + n * P.s[0] + z * P.s[2] + y * P.s[3]
    cdef floating* out = dst + ((n * C * P.D + z) * P.H + y) * W
    cdef c3_idx c, w, c0, w0, c1, w1
    cdef bint along_c = (sC if sC >= 0 else -sC) < (sW if sW >= 0 else -sW)
    if sW == 1:
        for c in range(C):
            memcpy(out + c * plane, src + c * sC, W * sizeof(floating))
        return
    if sC == 1:
        P.K.transpose_block[P.f64](src, sW, out, plane, W, C)
        return
    c0 = 0
    while c0 < C:
        c1 = min(c0 + TILE, C)
        w0 = 0
        while w0 < W:
            w1 = min(w0 + TILE, W)
            if along_c:  # the source's faster axis: reads along C, writes along W
                for w in range(w0, w1):
                    for c in range(c0, c1):
                        out[c * plane + w] = src[c * sC + w * sW]
            else:
                for c in range(c0, c1):
                    for w in range(w0, w1):
                        out[c * plane + w] = src[c * sC + w * sW]
            w0 = w1
        c0 = c1


ctypedef struct phase_plan:
    bint f64
    void* dst              # the (N, C, D, H, W) output: (H, W) planes C-contiguous
    c3_idx oN, oC, oD      # its other strides, in elements
    const char* src        # the phases' buffer
    const c3_idx* at       # per phase: (offset, sN, sC, sD, sH) in elements; offset -1: none
    const char* fill       # per channel: the value of positions no phase computed
    c3_idx N, C, D, H, W
    c3_idx sd, sh, sw      # phases per axis (the stride)


def interleave_phases(buffer, out, stride, at, fill, int num_threads=0):
    """out[n, c, z, y, x] = phase (z % sd, y % sh, x % sw)'s element
    [n, c, z // sd, y // sh, x // sw], each element of ``out`` written once, on all threads.

    ``buffer`` holds the phases (W contiguous in each); ``at`` has a row per phase, in C order
    of (z % sd, y % sh, x % sw): the element offset of its element (0, 0, 0, 0, 0) in
    ``buffer`` and its N, C, D and H strides in elements, or offset -1 for a phase that gets
    ``fill[c]`` (one value per channel, ``out``'s dtype). ``out``'s (H, W) planes are
    C-contiguous (a slab of a C-contiguous array)."""
    at = np.ascontiguousarray(at, dtype=np.intp)
    fill = np.ascontiguousarray(fill, dtype=out.dtype)
    cdef phase_plan P
    memset(&P, 0, sizeof(P))
    P.f64 = out.dtype == np.float64
    P.dst = <void*><size_t>out.__array_interface__["data"][0]
    P.src = <const char*><size_t>buffer.__array_interface__["data"][0]
    P.at = <const c3_idx*><size_t>at.__array_interface__["data"][0]
    P.fill = <const char*><size_t>fill.__array_interface__["data"][0]
    P.N, P.C, P.D, P.H, P.W = out.shape
    if out.strides[4] != out.itemsize or out.strides[3] != P.W * out.itemsize:
        raise ValueError("interleave_phases: out's (H, W) planes must be C-contiguous")
    P.oN, P.oC, P.oD = [st // out.itemsize for st in out.strides[:3]]
    P.sd, P.sh, P.sw = stride
    cdef c3_launch L
    memset(&L, 0, sizeof(L))
    L.plan, L.f64 = &P, P.f64
    L.n_items, L.item = P.N * P.C * P.D, _phase_item
    L.n_threads = <int>min(<c3_idx>effective_threads(num_threads), L.n_items)
    launch(&L)
    return out


cdef int _phase_item(const void* plan, c3_thread* thread, c3_idx item) noexcept nogil:
    cdef const phase_plan* P = <const phase_plan*>plan
    if P.f64:
        _phase_plane(P, item, <double*>P.dst, <const double*>P.src, <const double*>P.fill)
    else:
        _phase_plane(P, item, <float*>P.dst, <const float*>P.src, <const float*>P.fill)
    return 0


cdef void _phase_plane(const phase_plan* P, c3_idx item, floating* dst, const floating* src,
                       const floating* fill) noexcept nogil:
    """The output plane (n, c, z) for item = (n * C + c) * D + z, row by row."""
    cdef c3_idx z = item % P.D, c = item // P.D % P.C, n = item // (P.D * P.C)
    cdef c3_idx W = P.W, sw = P.sw, y, x, j, px, p
    cdef floating* out = dst + n * P.oN + c * P.oC + z * P.oD
    cdef const c3_idx* a
    cdef const floating* row
    cdef const floating* row2
    cdef floating value = fill[c]
    for y in range(P.H):
        p = ((z % P.sd) * P.sh + y % P.sh) * sw
        for px in range(sw):
            a = P.at + (p + px) * 5
            if a[0] < 0:
                x = px
                while x < W:
                    out[x] = value
                    x += sw
                continue
            row = src + a[0] + n * a[1] + c * a[2] + (z // P.sd) * a[3] + (y // P.sh) * a[4]
            if sw == 1:
                memcpy(out, row, W * sizeof(floating))
            elif sw == 2 and px == 0 and (P.at + (p + 1) * 5)[0] >= 0:
                # both phases of a row in one pass (the common upsampler)
                a = P.at + (p + 1) * 5
                row2 = src + a[0] + n * a[1] + c * a[2] + (z // P.sd) * a[3] + (y // P.sh) * a[4]
                for j in range(W // 2):
                    out[2 * j] = row[j]
                    out[2 * j + 1] = row2[j]
                if W % 2:
                    out[W - 1] = row[W // 2]
                break
            else:
                x, j = px, 0
                while x < W:
                    out[x] = row[j]
                    x += sw
                    j += 1
        out += W
