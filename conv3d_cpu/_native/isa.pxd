# The micro-kernel tables (kernels/kernels.h), one per instruction set; isa.pyx selects one at
# import. Every kernel takes void * data of the dtype it is indexed by: K.tile_wide[DT] with
# DT = C3_F32 or C3_F64 (``floating is double``).
cdef extern from "kernels/kernels.h" nogil:
    ctypedef Py_ssize_t c3_idx
    enum:
        C3_F32
        C3_F64
        C3_ISA_COUNT
    ctypedef void (*c3_tile_fn)(const void* rows, const c3_idx* r_off, c3_idx n_rows,
                                const void* w, const c3_idx* w_off, c3_idx kW, c3_idx dW,
                                c3_idx sW, void* tile, int nx) noexcept nogil
    ctypedef void (*c3_store_fn)(const void* tile, int ocb, int nx, void* out, c3_idx plane,
                                 const void* bias, int nvalid) noexcept nogil
    ctypedef void (*c3_row_fn)(const void* rows, const c3_idx* r_off, c3_idx n_rows,
                               const void* w, const c3_idx* w_off, c3_idx kW, c3_idx dW,
                               c3_idx sW, void* out, c3_idx oW, const void* bias) noexcept nogil
    ctypedef void (*c3_transpose_fn)(const void* src, c3_idx src_stride, void* dst,
                                     c3_idx dst_stride, c3_idx n_i, c3_idx n_j) noexcept nogil
    ctypedef struct c3_wino_tile:
        int m[3]
        int a[3]
        int mode
        c3_idx lo[3]
        c3_idx hi[3]
    ctypedef int (*c3_wino_in_fn)(const c3_wino_tile* tile, const void* x, c3_idx cstride,
                                  int nc, c3_idx D, c3_idx H, c3_idx W, c3_idx z0, c3_idx y0,
                                  c3_idx x0, void* v, c3_idx v_stride) noexcept nogil
    ctypedef int (*c3_wino_out_fn)(const c3_wino_tile* tile, const void* m_in, c3_idx m_stride,
                                   int nc, const void* bias, void* out, c3_idx ostride,
                                   c3_idx oH, c3_idx oW, int ez, int ey, int ex) noexcept nogil
    ctypedef int (*c3_wino_weights_fn)(const c3_wino_tile* tile, const void* w, c3_idx wstride,
                                       int nvalid, c3_idx cpg, void* u, c3_idx u_stride, int ocb,
                                       void* scratch) noexcept nogil
    ctypedef void (*c3_fma_chains_fn)(c3_idx iters, const void* ab, void* acc) noexcept nogil
    ctypedef struct c3_kernels:
        int isa
        int ocb_wide[2]
        int ocb_narrow[2]
        int nx_wide, nx_narrow
        c3_tile_fn tile_wide[2]
        c3_tile_fn tile_narrow[2]
        c3_store_fn store_tile[2]
        c3_row_fn row[2]
        c3_transpose_fn transpose_block[2]
        c3_wino_in_fn wino_input[2]
        c3_wino_out_fn wino_output[2]
        c3_wino_weights_fn wino_weights[2]
        c3_fma_chains_fn fma_chains[2]
        const c3_kernels* narrow
    const char* c3_isa_name(int isa)
    const c3_kernels* c3_kernels_for(int isa)
    int c3_cpu_supports(int isa)
    int c3_cpu_prefers(int isa)


cdef const c3_kernels* layer_kernels(c3_idx channels, bint f64) noexcept nogil
cdef const c3_kernels* current_kernels() noexcept nogil


ctypedef struct c3_tiling:
    # How the tile micro-kernels cover one group's output channels.
    const c3_kernels* K
    bint wide       # two vectors of output channels per block (tile_wide), else one
    int ocb         # output channels per block
    int nxmax       # most positions per tile-kernel call
    c3_idx nob      # blocks per group (the last one zero padded)


cdef inline c3_tiling tiling_of(const c3_kernels* K, bint f64, c3_idx opg) noexcept nogil:
    """One vector of output channels per block, or two where one would not hold a group's
    ``opg``."""
    cdef c3_tiling T
    T.K = K
    T.wide = opg > K.ocb_narrow[f64]
    T.ocb = K.ocb_wide[f64] if T.wide else K.ocb_narrow[f64]
    T.nxmax = K.nx_wide if T.wide else K.nx_narrow
    T.nob = (opg + T.ocb - 1) // T.ocb
    return T


cdef inline c3_tile_fn tile_kernel(const c3_tiling* T, bint f64) noexcept nogil:
    """The tile micro-kernel of T's blocks (see kernels/kernels.h)."""
    return T.K.tile_wide[f64] if T.wide else T.K.tile_narrow[f64]


cdef inline c3_idx odd_lines(c3_idx n, c3_idx itemsize) noexcept nogil:
    """n elements rounded up to an odd number of 64-byte lines.

    Workspace rows (or blocks) this far apart fall on different cache sets; a power-of-two
    stride would map them onto a few sets, where they evict each other."""
    cdef c3_idx per_line = 64 // itemsize
    return (((n + per_line - 1) // per_line) | 1) * per_line
