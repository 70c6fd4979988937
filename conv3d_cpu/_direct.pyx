# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Direct 3D convolution (cross-correlation), float32/float64, OpenMP over work items.

Inputs are validated, C-contiguous arrays (the Python layer guarantees it); zero padding is
implicit: taps that fall outside the input are skipped, no padded copy is made.

Work split: one work item is one output depth-plane of one (batch, output channel) pair, so
N = 1 layers with few channels still feed every thread. Each output element is computed by
exactly one thread in a fixed order, so results are bitwise identical for any thread count.
"""
from cython cimport floating
from cython.parallel cimport prange

from conv3d_cpu._openmp_helpers cimport effective_threads


cdef inline Py_ssize_t _first_valid(Py_ssize_t offset, Py_ssize_t step) noexcept nogil:
    """Smallest output index i >= 0 with i * step + offset >= 0."""
    if offset >= 0:
        return 0
    return (-offset + step - 1) // step


cdef inline Py_ssize_t _end_valid(Py_ssize_t offset, Py_ssize_t step, Py_ssize_t size,
                                  Py_ssize_t n_out) noexcept nogil:
    """One past the largest output index i < n_out with i * step + offset < size."""
    cdef Py_ssize_t last = size - 1 - offset
    if last < 0:
        return 0
    last = last // step + 1
    return last if last < n_out else n_out


cdef void _plane(const floating* x, const floating* w, floating bias, floating* out,
                 Py_ssize_t cpg, Py_ssize_t D, Py_ssize_t H, Py_ssize_t W,
                 Py_ssize_t kD, Py_ssize_t kH, Py_ssize_t kW,
                 Py_ssize_t oH, Py_ssize_t oW, Py_ssize_t z,
                 Py_ssize_t sD, Py_ssize_t sH, Py_ssize_t sW,
                 Py_ssize_t pD, Py_ssize_t pH, Py_ssize_t pW,
                 Py_ssize_t dD, Py_ssize_t dH, Py_ssize_t dW) noexcept nogil:
    """out[y, x] for one output depth z: x points at the group's first input channel."""
    cdef Py_ssize_t c, a, b, e, y, i, iz, iy, x0, x1, off
    cdef const floating* xrow
    cdef floating* orow
    cdef floating wv
    for i in range(oH * oW):
        out[i] = bias
    for c in range(cpg):
        for a in range(kD):
            iz = z * sD + a * dD - pD
            if iz < 0 or iz >= D:
                continue
            for b in range(kH):
                for y in range(oH):
                    iy = y * sH + b * dH - pH
                    if iy < 0 or iy >= H:
                        continue
                    xrow = x + ((c * D + iz) * H + iy) * W
                    orow = out + y * oW
                    for e in range(kW):
                        wv = w[((c * kD + a) * kH + b) * kW + e]
                        off = e * dW - pW
                        x0 = _first_valid(off, sW)
                        x1 = _end_valid(off, sW, W, oW)
                        if sW == 1:
                            for i in range(x0, x1):
                                orow[i] += wv * xrow[i + off]
                        else:
                            for i in range(x0, x1):
                                orow[i] += wv * xrow[i * sW + off]


def direct(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
           const floating[::1] bias, floating[:, :, :, :, ::1] out,
           stride, padding, dilation, Py_ssize_t groups, int num_threads):
    """Write conv3d(x, w) + bias into ``out`` (N, O, oD, oH, oW).

    ``padding`` is the front padding per axis; the far side is implied by ``out``'s shape.
    ``num_threads`` <= 0 means the OpenMP default, read now.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t O = w.shape[0], cpg = w.shape[1]
    cdef Py_ssize_t kD = w.shape[2], kH = w.shape[3], kW = w.shape[4]
    cdef Py_ssize_t oD = out.shape[2], oH = out.shape[3], oW = out.shape[4]
    cdef Py_ssize_t sD = stride[0], sH = stride[1], sW = stride[2]
    cdef Py_ssize_t pD = padding[0], pH = padding[1], pW = padding[2]
    cdef Py_ssize_t dD = dilation[0], dH = dilation[1], dW = dilation[2]
    cdef Py_ssize_t opg = O // groups
    cdef Py_ssize_t n_items = N * O * oD
    cdef Py_ssize_t item, n, o, z
    cdef int nt = effective_threads(num_threads)
    if n_items == 0:
        return
    with nogil:
        for item in prange(n_items, num_threads=nt, schedule="static"):
            z = item % oD
            o = (item // oD) % O
            n = item // (oD * O)
            _plane(&x[n, (o // opg) * cpg, 0, 0, 0], &w[o, 0, 0, 0, 0], bias[o],
                   &out[n, o, z, 0, 0], cpg, D, H, W, kD, kH, kW, oH, oW, z,
                   sD, sH, sW, pD, pH, pW, dD, dH, dW)
