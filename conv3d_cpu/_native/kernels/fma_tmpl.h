/* The peak probe (kernels.h: c3_fma_chains_fn), for one dtype of one ISA (dtype_section.h
 * defines T, VT, V, KN, VFMA). C3_FMA_CHAINS accumulators, each its own dependency chain, so
 * the core overlaps as many FMAs as its units and their latency allow; the operands come from
 * memory and the results go back to it, so nothing can be folded or left out. The chain loops
 * have a constant count: unrolled, the accumulators live in registers (as the tile kernels'
 * acc arrays do). */
static void KN(fma_chains)(c3_idx iters, const void *ab_, void *acc_) {
    const T *ab = ab_;
    T *acc = acc_;
    const VT a = BCAST(ab[0]), b = BCAST(ab[1]);
    VT c[C3_FMA_CHAINS];
    for (int k = 0; k < C3_FMA_CHAINS; k++) c[k] = KN(loadu)(acc + k * V);
    for (c3_idx i = 0; i < iters; i++)
        for (int k = 0; k < C3_FMA_CHAINS; k++) c[k] = VFMA(c[k], a, b);
    for (int k = 0; k < C3_FMA_CHAINS; k++) KN(storeu)(acc + k * V, c[k]);
}
