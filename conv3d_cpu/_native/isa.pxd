from cython cimport floating

# Micro-kernel tables (_kernels.c), one per instruction set; _isa.pyx selects one at import.
cdef extern from "kernels/kernels.h" nogil:
    ctypedef Py_ssize_t c3_idx
    ctypedef void (*c3_tile_f32)(const float*, const c3_idx*, c3_idx, const float*,
                                 const c3_idx*, c3_idx, c3_idx, c3_idx, float*,
                                 int) noexcept nogil
    ctypedef void (*c3_tile_f64)(const double*, const c3_idx*, c3_idx, const double*,
                                 const c3_idx*, c3_idx, c3_idx, c3_idx, double*,
                                 int) noexcept nogil
    ctypedef void (*c3_store_f32)(const float*, int, int, float*, c3_idx, const float*,
                                  int) noexcept nogil
    ctypedef void (*c3_store_f64)(const double*, int, int, double*, c3_idx, const double*,
                                  int) noexcept nogil
    ctypedef void (*c3_row_f32)(const float*, const c3_idx*, c3_idx, const float*,
                                const c3_idx*, c3_idx, c3_idx, c3_idx, float*, c3_idx,
                                float) noexcept nogil
    ctypedef void (*c3_row_f64)(const double*, const c3_idx*, c3_idx, const double*,
                                const c3_idx*, c3_idx, c3_idx, c3_idx, double*, c3_idx,
                                double) noexcept nogil
    ctypedef void (*c3_wino_in_f32)(int, int, int, const float*, c3_idx, int, c3_idx, c3_idx,
                                    c3_idx, c3_idx, c3_idx, c3_idx, float*,
                                    c3_idx) noexcept nogil
    ctypedef void (*c3_wino_in_f64)(int, int, int, const double*, c3_idx, int, c3_idx, c3_idx,
                                    c3_idx, c3_idx, c3_idx, c3_idx, double*,
                                    c3_idx) noexcept nogil
    ctypedef int (*c3_wino_out_f32)(int, int, int, int, int, int, const float*, c3_idx, int,
                                    const float*, float*, c3_idx, c3_idx, c3_idx, int, int,
                                    int) noexcept nogil
    ctypedef int (*c3_wino_out_f64)(int, int, int, int, int, int, const double*, c3_idx, int,
                                    const double*, double*, c3_idx, c3_idx, c3_idx, int, int,
                                    int) noexcept nogil
    ctypedef struct c3_kernels:
        const char* isa
        int ocb_wide_f32, ocb_narrow_f32, ocb_wide_f64, ocb_narrow_f64
        int nx_wide, nx_narrow
        c3_tile_f32 tile_wide_f32
        c3_tile_f32 tile_narrow_f32
        c3_tile_f64 tile_wide_f64
        c3_tile_f64 tile_narrow_f64
        c3_store_f32 store_f32
        c3_store_f64 store_f64
        c3_row_f32 row_f32
        c3_row_f64 row_f64
        c3_wino_in_f32 wino_in_f32
        c3_wino_in_f64 wino_in_f64
        c3_wino_out_f32 wino_out_f32
        c3_wino_out_f64 wino_out_f64
        const c3_kernels* narrow
    const c3_kernels* c3_kernels_for(int isa)
    int c3_cpu_supports(int isa)
    int c3_cpu_prefers(int isa)


cdef const c3_kernels* layer_kernels(c3_idx channels, bint f64) noexcept nogil


cdef inline int narrow_block(const c3_kernels* K, bint f64) noexcept nogil:
    """Channels in one vector of K's kernels (its narrow block) for this dtype."""
    return K.ocb_narrow_f64 if f64 else K.ocb_narrow_f32


cdef inline int channel_block_of(const c3_kernels* K, bint f64, c3_idx opg,
                                 bint* wide) noexcept nogil:
    """Output channels per tile-kernel block for ``opg`` output channels per group: one
    vector of them, or two (``wide[0]`` set) where one would not hold the group."""
    wide[0] = opg > narrow_block(K, f64)
    if f64:
        return K.ocb_wide_f64 if wide[0] else K.ocb_narrow_f64
    return K.ocb_wide_f32 if wide[0] else K.ocb_narrow_f32


cdef inline void tile_kernel(const c3_kernels* K, bint wide, const floating* rows,
                       const c3_idx* r_off, c3_idx n_rows, const floating* w,
                       const c3_idx* w_off, c3_idx kW, c3_idx dW, c3_idx sW, floating* tile,
                       int nx) noexcept nogil:
    """The wide or narrow tile micro-kernel of K for this dtype (see _kernels.h)."""
    if floating is float:
        (K.tile_wide_f32 if wide else K.tile_narrow_f32)(
            rows, r_off, n_rows, w, w_off, kW, dW, sW, tile, nx)
    else:
        (K.tile_wide_f64 if wide else K.tile_narrow_f64)(
            rows, r_off, n_rows, w, w_off, kW, dW, sW, tile, nx)


cdef inline c3_idx odd_lines(c3_idx n, c3_idx itemsize) noexcept nogil:
    """n elements rounded up to an odd number of 64-byte lines.

    Workspace rows (or blocks) this far apart fall on different cache sets; a power-of-two
    stride would map them onto a few sets, where they evict each other."""
    cdef c3_idx per_line = 64 // itemsize
    return (((n + per_line - 1) // per_line) | 1) * per_line
