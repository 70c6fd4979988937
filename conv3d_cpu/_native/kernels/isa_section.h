/* Both dtypes' kernels for one instruction set, and its table c3_table_<C3_ISA>. Included by
 * kernels.c with
 *   C3_ISA     its name in C3_ISAS (baseline, avx2, ...), which suffixes every function
 *   C3_LF, C3_LD   lane counts of the float / double vectors, which name their types
 *                  (c3_v<LF>f, c3_v<LD>d, and c3_v<LF>i, c3_v<LD>l for shuffle indices)
 *   NXW, NXN   positions per wide / narrow tile call (bounded by the vector registers)
 *   C3_FMA_VF, C3_FMA_VD, C3_FMA_F, C3_FMA_D   a * b + c on vectors / scalars of float, double
 *   C3_NARROW_TABLE   the table for layers with few channels per group (NULL: this one)
 *   C3_STOREN_VF, C3_STOREN_VD (optional)   store the first n lanes of a vector (masked) */
#define C3_VF C3_CAT(C3_CAT(c3_v, C3_LF), f)
#define C3_VD C3_CAT(C3_CAT(c3_v, C3_LD), d)
#define C3_IF C3_CAT(C3_CAT(c3_v, C3_LF), i)
#define C3_ID C3_CAT(C3_CAT(c3_v, C3_LD), l)
#define T float
#define VT C3_VF
#define IDX C3_IF
#define V C3_LF
#define KN(name) C3_CAT(C3_CAT(C3_CAT(c3_f32_, name), _), C3_ISA)
#define VFMA C3_FMA_VF
#define SFMA C3_FMA_F
#ifdef C3_STOREN_VF
#define VSTOREN C3_STOREN_VF
#endif
#include "dtype_section.h"
#define T double
#define VT C3_VD
#define IDX C3_ID
#define V C3_LD
#define KN(name) C3_CAT(C3_CAT(C3_CAT(c3_f64_, name), _), C3_ISA)
#define VFMA C3_FMA_VD
#define SFMA C3_FMA_D
#ifdef C3_STOREN_VD
#define VSTOREN C3_STOREN_VD
#endif
#include "dtype_section.h"

#define C3_FN(dt, name) C3_CAT(C3_CAT(C3_CAT(C3_CAT(c3_, dt), name), _), C3_ISA)
#define C3_KERNEL_ENTRY(name, type) .name = {C3_FN(f32_, name), C3_FN(f64_, name)},
static const c3_kernels C3_CAT(c3_table_, C3_ISA) = {
    .isa = C3_CAT(C3_ISA_, C3_ISA),
    .ocb_wide = {2 * C3_LF, 2 * C3_LD},
    .ocb_narrow = {C3_LF, C3_LD},
    .nx_wide = NXW,
    .nx_narrow = NXN,
    C3_MICROKERNELS(C3_KERNEL_ENTRY)
    .narrow = C3_NARROW_TABLE,
};
#undef C3_KERNEL_ENTRY
#undef C3_FN
/* The section's parameters (the lane counts and FMA macros may serve the next section). */
#undef C3_VF
#undef C3_VD
#undef C3_IF
#undef C3_ID
#undef C3_ISA
#undef NXW
#undef NXN
#undef C3_NARROW_TABLE
#undef C3_STOREN_VF
#undef C3_STOREN_VD
