/* Instantiates the micro-kernels of _kernels_tmpl.h for each instruction set the compiler can
 * target (per-function target attributes, so the rest of the extension stays portable), and
 * tells at run time which of them the CPU can execute. */
#include <string.h>
#if defined(__GNUC__) && !defined(__clang__)
/* Vector helpers are static inline; the ABI note about 32-byte vectors does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#include "_kernels.h"

typedef float c3_v8f __attribute__((vector_size(32)));
typedef double c3_v4d __attribute__((vector_size(32)));

/* Two-vector lane shuffles with constant indices (8 x float, 4 x double). */
#if defined(__clang__)
#define C3_SHUF8(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#define C3_SHUF4(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int c3_v8i __attribute__((vector_size(32)));
typedef long long c3_v4l __attribute__((vector_size(32)));
#define C3_SHUF8(a, b, ...) __builtin_shuffle(a, b, (c3_v8i){__VA_ARGS__})
#define C3_SHUF4(a, b, ...) __builtin_shuffle(a, b, (c3_v4l){__VA_ARGS__})
#endif

#define C3_CAT_(a, b) a##b
#define C3_CAT(a, b) C3_CAT_(a, b)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define C3_X86 1
#endif

/* ---- baseline: whatever the compiler targets by default (x86-64: SSE2 halves) ---- */
#define C3_ISA _base
#define NXW 6
#define NXN 12
#define T float
#define VT c3_v8f
#define V 8
#define BCAST(s) ((VT){(s), (s), (s), (s), (s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)], (p)[4 * (st)], \
                            (p)[5 * (st)], (p)[6 * (st)], (p)[7 * (st)]})
#define KN(name) C3_CAT(C3_CAT(c3_f32_, name), C3_ISA)
#include "_kernels_tmpl.h"
#include "_winograd_tmpl.h"
#undef T
#undef VT
#undef V
#undef BCAST
#undef GATHER
#undef KN
#define T double
#define VT c3_v4d
#define V 4
#define BCAST(s) ((VT){(s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)]})
#define KN(name) C3_CAT(C3_CAT(c3_f64_, name), C3_ISA)
#include "_kernels_tmpl.h"
#include "_winograd_tmpl.h"
#undef T
#undef VT
#undef V
#undef BCAST
#undef GATHER
#undef KN
#undef NXW
#undef NXN
#undef C3_ISA

static const c3_kernels c3_table_base = {
    "baseline", 16, 8, 8, 4, 6, 12,
    c3_f32_tile_wide_base, c3_f32_tile_narrow_base, c3_f64_tile_wide_base,
    c3_f64_tile_narrow_base, c3_f32_row_base, c3_f64_row_base,
    c3_f32_wino_input_base, c3_f64_wino_input_base, c3_f32_wino_output_base,
    c3_f64_wino_output_base,
};

#ifdef C3_X86
/* ---- AVX2 + FMA (x86-64-v3) ---- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define C3_ISA _avx2
#define NXW 6
#define NXN 12
#define T float
#define VT c3_v8f
#define V 8
#define BCAST(s) ((VT){(s), (s), (s), (s), (s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)], (p)[4 * (st)], \
                            (p)[5 * (st)], (p)[6 * (st)], (p)[7 * (st)]})
#define KN(name) C3_CAT(C3_CAT(c3_f32_, name), C3_ISA)
#include "_kernels_tmpl.h"
#include "_winograd_tmpl.h"
#undef T
#undef VT
#undef V
#undef BCAST
#undef GATHER
#undef KN
#define T double
#define VT c3_v4d
#define V 4
#define BCAST(s) ((VT){(s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)]})
#define KN(name) C3_CAT(C3_CAT(c3_f64_, name), C3_ISA)
#include "_kernels_tmpl.h"
#include "_winograd_tmpl.h"
#undef T
#undef VT
#undef V
#undef BCAST
#undef GATHER
#undef KN
#undef NXW
#undef NXN
#undef C3_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

static const c3_kernels c3_table_avx2 = {
    "avx2", 16, 8, 8, 4, 6, 12,
    c3_f32_tile_wide_avx2, c3_f32_tile_narrow_avx2, c3_f64_tile_wide_avx2,
    c3_f64_tile_narrow_avx2, c3_f32_row_avx2, c3_f64_row_avx2,
    c3_f32_wino_input_avx2, c3_f64_wino_input_avx2, c3_f32_wino_output_avx2,
    c3_f64_wino_output_avx2,
};

/* ---- AVX-512 (x86-64-v4): 32 vector registers allow a wider tile ---- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#endif
#define C3_ISA _avx512
#define NXW 12
#define NXN 16
#define T float
#define VT c3_v8f
#define V 8
#define BCAST(s) ((VT){(s), (s), (s), (s), (s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)], (p)[4 * (st)], \
                            (p)[5 * (st)], (p)[6 * (st)], (p)[7 * (st)]})
#define KN(name) C3_CAT(C3_CAT(c3_f32_, name), C3_ISA)
#include "_kernels_tmpl.h"
#include "_winograd_tmpl.h"
#undef T
#undef VT
#undef V
#undef BCAST
#undef GATHER
#undef KN
#define T double
#define VT c3_v4d
#define V 4
#define BCAST(s) ((VT){(s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)]})
#define KN(name) C3_CAT(C3_CAT(c3_f64_, name), C3_ISA)
#include "_kernels_tmpl.h"
#include "_winograd_tmpl.h"
#undef T
#undef VT
#undef V
#undef BCAST
#undef GATHER
#undef KN
#undef NXW
#undef NXN
#undef C3_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

static const c3_kernels c3_table_avx512 = {
    "avx512", 16, 8, 8, 4, 12, 16,
    c3_f32_tile_wide_avx512, c3_f32_tile_narrow_avx512, c3_f64_tile_wide_avx512,
    c3_f64_tile_narrow_avx512, c3_f32_row_avx512, c3_f64_row_avx512,
    c3_f32_wino_input_avx512, c3_f64_wino_input_avx512, c3_f32_wino_output_avx512,
    c3_f64_wino_output_avx512,
};
#endif /* C3_X86 */

const c3_kernels *c3_kernels_for(int isa) {
    switch (isa) {
    case C3_ISA_BASELINE: return &c3_table_base;
#ifdef C3_X86
    case C3_ISA_AVX2: return &c3_table_avx2;
    case C3_ISA_AVX512: return &c3_table_avx512;
#endif
    default: return NULL;
    }
}

int c3_cpu_supports(int isa) {
    switch (isa) {
    case C3_ISA_BASELINE: return 1;
#ifdef C3_X86
    case C3_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case C3_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    default: return 0;
    }
}
