/* One dtype's micro-kernels (T, VT, IDX, V, KN, VFMA, SFMA and maybe VSTOREN defined by
 * isa_section.h): the vector helpers every template may use (BCAST, GATHER, C3_SHUF,
 * KN(loadu), KN(storeu), KN(quiet_nan), KN(load_even), KN(transpose), KN(gather)), then the templates; undefines the
 * macros after. */
#if V == 16
#define BCAST(s) ((VT){(s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)], (p)[4 * (st)], \
                            (p)[5 * (st)], (p)[6 * (st)], (p)[7 * (st)], (p)[8 * (st)],       \
                            (p)[9 * (st)], (p)[10 * (st)], (p)[11 * (st)], (p)[12 * (st)],    \
                            (p)[13 * (st)], (p)[14 * (st)], (p)[15 * (st)]})
#elif V == 8
#define BCAST(s) ((VT){(s), (s), (s), (s), (s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)], (p)[4 * (st)], \
                            (p)[5 * (st)], (p)[6 * (st)], (p)[7 * (st)]})
#elif V == 4
#define BCAST(s) ((VT){(s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)]})
#elif V == 2
#define BCAST(s) ((VT){(s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)]})
#else
#error "unsupported lane count"
#endif
#if defined(__clang__)
#define C3_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define C3_SHUF(a, b, ...) __builtin_shuffle(a, b, (IDX){__VA_ARGS__})
#endif
/* Unaligned vector load and store, an in-register V x V transpose, a strided gather: for
 * every template below. */
static inline VT KN(loadu)(const T *p) { VT v; memcpy(&v, p, sizeof v); return v; }
static inline void KN(storeu)(T *p, VT v) { memcpy(p, &v, sizeof v); }
/* v with every NaN made numpy's one quiet NaN. Which of several NaN operands an instruction
 * passes on (their signs differ) follows its operands' registers, which differ between the
 * variants of a kernel; the variant that computes an output depends on how the work was cut,
 * hence on the thread count: results leave through this, so their bits do not. */
static inline VT KN(quiet_nan)(VT v) {
    IDX nan = (IDX)(v != v);
    return (VT)(((IDX)v & ~nan) | ((IDX)BCAST((T)__builtin_nan("")) & nan));
}
/* p[0], p[2], ..., p[2 V - 2]: the even elements of two consecutive vectors. */
static inline VT KN(load_even)(const T *p) {
    VT lo = KN(loadu)(p), hi = KN(loadu)(p + V);
#if V == 16
    return C3_SHUF(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
#elif V == 8
    return C3_SHUF(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
#elif V == 4
    return C3_SHUF(lo, hi, 0, 2, 4, 6);
#else
    return C3_SHUF(lo, hi, 0, 2);
#endif
}
/* In-place V x V transpose: afterwards r[k][l] is the former r[l][k]. */
static inline __attribute__((always_inline)) void KN(transpose)(VT *r) {
#if V == 16
    /* Swap the off-diagonal h x h blocks for h = 8, 4, 2, 1: row i (bit h clear) keeps its
     * columns with bit h clear and takes row i + h's in the others, and row i + h the rest. */
    VT t[16];
    for (int i = 0; i < 16; i++) if (!(i & 8)) {
        t[i] = C3_SHUF(r[i], r[i + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        t[i + 8] = C3_SHUF(r[i], r[i + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28,
                           29, 30, 31);
    }
    for (int i = 0; i < 16; i++) if (!(i & 4)) {
        r[i] = C3_SHUF(t[i], t[i + 4], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        r[i + 4] = C3_SHUF(t[i], t[i + 4], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29,
                           30, 31);
    }
    for (int i = 0; i < 16; i++) if (!(i & 2)) {
        t[i] = C3_SHUF(r[i], r[i + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        t[i + 2] = C3_SHUF(r[i], r[i + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15,
                           30, 31);
    }
    for (int i = 0; i < 16; i += 2) {
        r[i] = C3_SHUF(t[i], t[i + 1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        r[i + 1] = C3_SHUF(t[i], t[i + 1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29,
                           15, 31);
    }
#elif V == 8
    VT t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = C3_SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = C3_SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int h = 0; h < 2; h++) {
            u[i + 2 * h] = C3_SHUF(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * h + 1] = C3_SHUF(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int k = 0; k < 4; k++) {
        r[k] = C3_SHUF(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[k + 4] = C3_SHUF(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
#elif V == 4
    VT t0 = C3_SHUF(r[0], r[1], 0, 4, 2, 6), t1 = C3_SHUF(r[0], r[1], 1, 5, 3, 7);
    VT t2 = C3_SHUF(r[2], r[3], 0, 4, 2, 6), t3 = C3_SHUF(r[2], r[3], 1, 5, 3, 7);
    r[0] = C3_SHUF(t0, t2, 0, 1, 4, 5);
    r[1] = C3_SHUF(t1, t3, 0, 1, 4, 5);
    r[2] = C3_SHUF(t0, t2, 2, 3, 6, 7);
    r[3] = C3_SHUF(t1, t3, 2, 3, 6, 7);
#else
    VT t0 = C3_SHUF(r[0], r[1], 0, 2);
    r[1] = C3_SHUF(r[0], r[1], 1, 3);
    r[0] = t0;
#endif
}

/* p[0], p[st], ..., one element per lane. */
static inline VT KN(gather)(const T *p, c3_idx st) { return GATHER(p, st); }

#include "direct_tmpl.h"
#include "winograd_tmpl.h"
#include "fma_tmpl.h"
#undef BCAST
#undef GATHER
#undef C3_SHUF
#undef T
#undef VT
#undef IDX
#undef V
#undef KN
#undef VFMA
#undef SFMA
#undef VSTOREN
