/* The peak probe (kernels.h: c3_fma_chains_fn), for one dtype of one ISA (dtype_section.h
 * defines T, VT, V, KN, VFMA). C3_FMA_CHAINS accumulators, each its own dependency chain, so
 * the core overlaps as many FMAs as its units and their latency allow; the operands come from
 * memory and the results go back to it, so nothing can be folded or left out. */
#if C3_FMA_CHAINS != 12
#error "the probe below is written out for C3_FMA_CHAINS == 12"
#endif
static void KN(fma_chains)(c3_idx iters, const void *ab_, void *acc_) {
    const T *ab = ab_;
    T *acc = acc_;
    const VT a = BCAST(ab[0]), b = BCAST(ab[1]);
    VT c0 = KN(loadu)(acc), c1 = KN(loadu)(acc + V), c2 = KN(loadu)(acc + 2 * V),
       c3 = KN(loadu)(acc + 3 * V), c4 = KN(loadu)(acc + 4 * V), c5 = KN(loadu)(acc + 5 * V),
       c6 = KN(loadu)(acc + 6 * V), c7 = KN(loadu)(acc + 7 * V), c8 = KN(loadu)(acc + 8 * V),
       c9 = KN(loadu)(acc + 9 * V), c10 = KN(loadu)(acc + 10 * V),
       c11 = KN(loadu)(acc + 11 * V);
    for (c3_idx i = 0; i < iters; i++) {
        c0 = VFMA(c0, a, b);
        c1 = VFMA(c1, a, b);
        c2 = VFMA(c2, a, b);
        c3 = VFMA(c3, a, b);
        c4 = VFMA(c4, a, b);
        c5 = VFMA(c5, a, b);
        c6 = VFMA(c6, a, b);
        c7 = VFMA(c7, a, b);
        c8 = VFMA(c8, a, b);
        c9 = VFMA(c9, a, b);
        c10 = VFMA(c10, a, b);
        c11 = VFMA(c11, a, b);
    }
    KN(storeu)(acc, c0);
    KN(storeu)(acc + V, c1);
    KN(storeu)(acc + 2 * V, c2);
    KN(storeu)(acc + 3 * V, c3);
    KN(storeu)(acc + 4 * V, c4);
    KN(storeu)(acc + 5 * V, c5);
    KN(storeu)(acc + 6 * V, c6);
    KN(storeu)(acc + 7 * V, c7);
    KN(storeu)(acc + 8 * V, c8);
    KN(storeu)(acc + 9 * V, c9);
    KN(storeu)(acc + 10 * V, c10);
    KN(storeu)(acc + 11 * V, c11);
}
