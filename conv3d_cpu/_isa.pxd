# Micro-kernel tables (_kernels.c), one per instruction set; _isa.pyx selects one at import.
cdef extern from "_kernels.h" nogil:
    ctypedef Py_ssize_t c3_idx
    ctypedef void (*c3_tile_f32)(const float*, const c3_idx*, c3_idx, const float*,
                                 const c3_idx*, c3_idx, c3_idx, c3_idx, float*,
                                 int) noexcept nogil
    ctypedef void (*c3_tile_f64)(const double*, const c3_idx*, c3_idx, const double*,
                                 const c3_idx*, c3_idx, c3_idx, c3_idx, double*,
                                 int) noexcept nogil
    ctypedef void (*c3_row_f32)(const float*, const c3_idx*, c3_idx, const float*,
                                const c3_idx*, c3_idx, c3_idx, c3_idx, float*, c3_idx,
                                float) noexcept nogil
    ctypedef void (*c3_row_f64)(const double*, const c3_idx*, c3_idx, const double*,
                                const c3_idx*, c3_idx, c3_idx, c3_idx, double*, c3_idx,
                                double) noexcept nogil
    ctypedef struct c3_kernels:
        const char* isa
        int ocb_wide_f32, ocb_narrow_f32, ocb_wide_f64, ocb_narrow_f64
        int nx_wide, nx_narrow
        c3_tile_f32 tile_wide_f32
        c3_tile_f32 tile_narrow_f32
        c3_tile_f64 tile_wide_f64
        c3_tile_f64 tile_narrow_f64
        c3_row_f32 row_f32
        c3_row_f64 row_f64
    const c3_kernels* c3_kernels_for(int isa)
    int c3_cpu_supports(int isa)
    int C3_ROW_STEP_F32, C3_ROW_STEP_F64


cdef const c3_kernels* active_kernels() noexcept nogil
