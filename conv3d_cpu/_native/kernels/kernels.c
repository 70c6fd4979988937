/* Instantiates the micro-kernels of direct_tmpl.h / winograd_tmpl.h for each instruction set
 * the compiler can target (per-function target attributes, so the rest of the extension stays
 * portable), and tells at run time which of them the CPU can execute. */
#include <string.h>
#if defined(__GNUC__) && !defined(__clang__)
/* Vector helpers are static inline; the ABI note about 32-byte vectors does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#include "kernels.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#endif

/* GCC/clang generic vectors: one source for every ISA (and for non-x86 machines). */
typedef float c3_v4f __attribute__((vector_size(16)));
typedef double c3_v2d __attribute__((vector_size(16)));
typedef int c3_v4i __attribute__((vector_size(16)));
typedef long long c3_v2l __attribute__((vector_size(16)));
typedef float c3_v8f __attribute__((vector_size(32)));
typedef double c3_v4d __attribute__((vector_size(32)));
typedef int c3_v8i __attribute__((vector_size(32)));
typedef long long c3_v4l __attribute__((vector_size(32)));

#define C3_CAT_(a, b) a##b
#define C3_CAT(a, b) C3_CAT_(a, b)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define C3_X86 1
#endif

/* Multiply-adds are written out (C3_FMA_*: a * b + c), and everything is compiled with
 * -ffp-contract=off (setup.py): whether a * b + c is fused must not be the compiler's
 * choice. GCC 13 fused the tile kernel's a * b + c in some of its unrolled widths and not in
 * others, so an output's bits depended on how many positions shared its call, that is on
 * the thread count and the batch size. Fused where the ISA has FMA, two roundings where it
 * has not: either way the same for every call of one ISA. */
#define C3_FMA_PLAIN(a, b, c) ((a) * (b) + (c))

/* Each section below defines C3_ISA (its name in C3_ISAS), NXW, NXN, C3_NARROW_TABLE and
 * optionally C3_STOREN_VF/VD, then includes isa_section.h, which undefines them; the lane
 * counts C3_LF/C3_LD (which name the vector types) and the FMA macros stay defined for
 * sections that share them. Target attributes per section: */
#define C3_STR(x) #x
#if defined(__clang__)
#define C3_TARGET_BEGIN(t)                                                                    \
    _Pragma(C3_STR(clang attribute push(__attribute__((target(t))), apply_to = function)))
#define C3_TARGET_END _Pragma("clang attribute pop")
#else
#define C3_TARGET_BEGIN(t) _Pragma("GCC push_options") _Pragma(C3_STR(GCC target(t)))
#define C3_TARGET_END _Pragma("GCC pop_options")
#endif

/* ---- baseline: the compiler's default target. 16-byte vectors: the 16 SSE2 registers
 * (or NEON's) hold them natively, where 32-byte ones would be split element by element. */
#define C3_LF 4
#define C3_LD 2
#define C3_FMA_VF C3_FMA_PLAIN
#define C3_FMA_VD C3_FMA_PLAIN
#define C3_FMA_F C3_FMA_PLAIN
#define C3_FMA_D C3_FMA_PLAIN
#define C3_ISA baseline
#define NXW 6
#define NXN 12
#define C3_NARROW_TABLE NULL
#include "isa_section.h"
#undef C3_FMA_VF
#undef C3_FMA_VD
#undef C3_FMA_F
#undef C3_FMA_D
#undef C3_LF
#undef C3_LD

#ifdef C3_X86
#define C3_LF 8
#define C3_LD 4
/* Fused multiply-adds for the three x86 sections below (all target FMA). */
#define C3_FMA_VF(a, b, c) ((c3_v8f)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define C3_FMA_VD(a, b, c) ((c3_v4d)_mm256_fmadd_pd((__m256d)(a), (__m256d)(b), (__m256d)(c)))
#define C3_FMA_F(a, b, c) __builtin_fmaf((a), (b), (c))
#define C3_FMA_D(a, b, c) __builtin_fma((a), (b), (c))

/* ---- AVX2 + FMA (x86-64-v3): 16 ymm registers ---- */
C3_TARGET_BEGIN("avx2,fma")
#define C3_ISA avx2
#define NXW 6
#define NXN 12
#define C3_NARROW_TABLE NULL
#include "isa_section.h"
C3_TARGET_END

/* ---- AVX-512 (x86-64-v4): 32 vector registers allow a wider tile ---- */
#define C3_AVX512_TARGET "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"
C3_TARGET_BEGIN(C3_AVX512_TARGET)
#define C3_ISA avx512
#define NXW 12
#define NXN 16
#define C3_NARROW_TABLE NULL
#define C3_STOREN_VF(p, v, n) _mm256_mask_storeu_ps((p), (__mmask8)((1u << (n)) - 1), (__m256)(v))
#define C3_STOREN_VD(p, v, n) _mm256_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1), (__m256d)(v))
#include "isa_section.h"
C3_TARGET_END

/* ---- AVX-512 on 512-bit vectors: twice the lanes per instruction. Cores with two 512-bit
 * FMA units (Intel server cores) do twice the work per cycle; where 512-bit operations are
 * split in two (AMD Zen 4) it saves only instructions, and the wider channel blocks waste
 * lanes on layers with few channels per group. */
typedef float c3_v16f __attribute__((vector_size(64)));
typedef double c3_v8d __attribute__((vector_size(64)));
typedef int c3_v16i __attribute__((vector_size(64)));
typedef long long c3_v8l __attribute__((vector_size(64)));
#undef C3_LF
#undef C3_LD
#undef C3_FMA_VF
#undef C3_FMA_VD
#define C3_LF 16
#define C3_LD 8
#define C3_FMA_VF(a, b, c) ((c3_v16f)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define C3_FMA_VD(a, b, c) ((c3_v8d)_mm512_fmadd_pd((__m512d)(a), (__m512d)(b), (__m512d)(c)))
C3_TARGET_BEGIN(C3_AVX512_TARGET)
#define C3_ISA avx512_zmm
#define NXW 12
#define NXN 16
#define C3_NARROW_TABLE (&c3_table_avx512)
#define C3_STOREN_VF(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1), (__m512)(v))
#define C3_STOREN_VD(p, v, n) _mm512_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1), (__m512d)(v))
#include "isa_section.h"
C3_TARGET_END
#endif /* C3_X86 */

#define C3_ISA_NAME(name) #name,
static const char *const c3_isa_names[C3_ISA_COUNT] = {C3_ISAS(C3_ISA_NAME)};
#undef C3_ISA_NAME

const char *c3_isa_name(int isa) {
    return isa >= 0 && isa < C3_ISA_COUNT ? c3_isa_names[isa] : "";
}

/* The tables compiled here; NULL for an ISA the compiler cannot target. */
static const c3_kernels *const c3_tables[C3_ISA_COUNT] = {
    [C3_ISA_baseline] = &c3_table_baseline,
#ifdef C3_X86
    [C3_ISA_avx2] = &c3_table_avx2,
    [C3_ISA_avx512] = &c3_table_avx512,
    [C3_ISA_avx512_zmm] = &c3_table_avx512_zmm,
#endif
};

const c3_kernels *c3_kernels_for(int isa) {
    return isa >= 0 && isa < C3_ISA_COUNT ? c3_tables[isa] : NULL;
}

int c3_cpu_supports(int isa) {
    switch (isa) {
    case C3_ISA_baseline: return 1;
#ifdef C3_X86
    case C3_ISA_avx2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case C3_ISA_avx512:
    case C3_ISA_avx512_zmm:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    default: return 0;
    }
}

#ifdef C3_X86
/* The x86 family number (CPUID leaf 1, with the extended family of families 0xF). */
static unsigned c3_cpu_family(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    unsigned family = (a >> 8) & 0xf;
    return family == 0xf ? family + ((a >> 20) & 0xff) : family;
}
#endif

int c3_cpu_prefers(int isa) {
#ifdef C3_X86
    /* 512-bit vectors where the cores have full-width 512-bit FMA units: Intel's server
     * cores, and AMD's from Zen 5 (family 0x1A). Zen 4 (family 0x19) splits a 512-bit FMA in
     * two halves: measured no faster there, and slower on small channel blocks
     * (docs/performance.md). */
    if (isa == C3_ISA_avx512_zmm) {
        __builtin_cpu_init();
        return c3_cpu_supports(isa) &&
               (__builtin_cpu_is("intel") || (__builtin_cpu_is("amd") && c3_cpu_family() >= 0x1a));
    }
#endif
    return c3_cpu_supports(isa);
}
