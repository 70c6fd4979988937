/* The direct convolution's micro-kernels (tile_wide, tile_narrow, row, store_tile) and the
 * layout copy's (transpose_block); contracts in kernels.h, for one dtype and ISA; included by dtype_section.h with
 *   T (scalar), VT (vector of T), V (its lanes), KN(name) (name mangling),
 *   NXW / NXN (positions per wide / narrow tile call).
 * The wide tile holds 2 vectors of output channels, the narrow one 1. Accumulators are small
 * arrays indexed by compile-time constants after unrolling, so they stay in registers.
 * Data pointers arrive as void * (one table signature for both dtypes) and are typed first. */

/* SW is the column stride: the literal 1 in the common case and 2 for strided layers, so
 * broadcasts address memory directly instead of through computed offsets. */
#define C3_TILE_BODY(NV, NX, SW)                                                              \
    do {                                                                                      \
        VT acc[NX][NV];                                                                       \
        _Pragma("GCC unroll 16") for (int j = 0; j < NX; j++)                                \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) acc[j][v] = (VT){0};       \
        for (c3_idx i = 0; i < n_rows; i++) {                                                 \
            const T *r = rows + r_off[i];                                                     \
            const T *wr = w + w_off[i];                                                       \
            for (c3_idx e = 0; e < kW; e++) {                                                 \
                VT wv[NV];                                                                    \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                         \
                    wv[v] = KN(loadu)(wr + (e * NV + v) * V);                                 \
                const T *p = r + e * dW;                                                      \
                _Pragma("GCC unroll 16") for (int j = 0; j < NX; j++) {                      \
                    /* A runtime SW: walk one pointer (NX pointers would spill). */           \
                    VT b = BCAST(*p);                                                         \
                    p += (SW);                                                                \
                    _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                     \
                        acc[j][v] = VFMA(b, wv[v], acc[j][v]);                                \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 16") for (int j = 0; j < NX; j++)                                \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                             \
                KN(storeu)(tile + (j * NV + v) * V, acc[j][v]);                               \
    } while (0)

#define C3_TILE_ARGS                                                                          \
    const void *rows_, const c3_idx *r_off, c3_idx n_rows, const void *w_, const c3_idx *w_off, \
    c3_idx kW, c3_idx dW, c3_idx sW, void *tile_, int nx
#define C3_TILE_TYPED                                                                         \
    const T *rows = rows_, *w = w_;                                                           \
    T *tile = tile_

static void KN(tile_wide)(C3_TILE_ARGS) {
    C3_TILE_TYPED;
    switch (nx) {
#define C3_CASE(n)                                                                            \
    case n:                                                                                   \
        if (sW == 1) C3_TILE_BODY(C3_NV, n, 1);                                               \
        else if (sW == 2) C3_TILE_BODY(C3_NV, n, 2);                                          \
        else C3_TILE_BODY(C3_NV, n, sW);                                                      \
        break;
#define C3_NV 2
    C3_CASE(1) C3_CASE(2) C3_CASE(3) C3_CASE(4) C3_CASE(5) C3_CASE(6)
#if NXW > 6
    C3_CASE(7) C3_CASE(8) C3_CASE(9) C3_CASE(10) C3_CASE(11) C3_CASE(12)
#endif
    default: break;
    }
}

static void KN(tile_narrow)(C3_TILE_ARGS) {
#undef C3_NV
#define C3_NV 1
    C3_TILE_TYPED;
    switch (nx) {
    C3_CASE(1) C3_CASE(2) C3_CASE(3) C3_CASE(4) C3_CASE(5) C3_CASE(6)
    C3_CASE(7) C3_CASE(8) C3_CASE(9) C3_CASE(10) C3_CASE(11) C3_CASE(12)
#if NXN > 12
    C3_CASE(13) C3_CASE(14) C3_CASE(15) C3_CASE(16)
#endif
    default: break;
    }
}
#undef C3_CASE
#undef C3_NV
#undef C3_TILE_BODY
#undef C3_TILE_ARGS
#undef C3_TILE_TYPED

/* Row kernel (few output channels per group): vectorized along the output row. Row i of the
 * sum starts at rows + r_off[i]; with sW == 1 or 2 every row must be readable up to
 * sW ceil(oW / (U V)) U V + (kW - 1) dW elements, U = C3_ROW_UNROLL (the caller pads), so
 * the tail needs no scalar loop: whole vectors are computed and only oW outputs are stored.
 * With sW == 2 a vector of outputs reads two vectors of a row and keeps their even lanes
 * (KN(load_even)); other strides run a scalar loop. */
/* NCH independent accumulator chains (rows i, i + NCH, ... go to chain i % NCH), so that
 * short rows, which hold few vectors, are not bound by the FMA latency of a single chain. */
#define C3_ROW_BODY(NVEC, NCH, SW)                                                            \
    do {                                                                                      \
        VT acc[NCH][NVEC];                                                                    \
        for (int h = 0; h < NCH; h++)                                                         \
            for (int k = 0; k < NVEC; k++) acc[h][k] = h ? (VT){0} : BCAST(bias);             \
        c3_idx i = 0;                                                                         \
        for (; i < n_rows; i += NCH) {                                                        \
            _Pragma("GCC unroll 4") for (int h = 0; h < NCH; h++) {                          \
                if (i + h < n_rows) {                                                         \
                    const T *r = rows + r_off[i + h] + (SW) * x;                              \
                    const T *wr = w + w_off[i + h];                                           \
                    for (c3_idx e = 0; e < kW; e++) {                                         \
                        VT wv = BCAST(wr[e]);                                                 \
                        _Pragma("GCC unroll 4") for (int k = 0; k < NVEC; k++)               \
                            acc[h][k] = VFMA(wv, (SW) == 1                                    \
                                             ? KN(loadu)(r + e * dW + k * V)                  \
                                             : KN(load_even)(r + e * dW + 2 * k * V),         \
                                             acc[h][k]);                                      \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        for (int h = 1; h < NCH; h++)                                                         \
            for (int k = 0; k < NVEC; k++) acc[0][k] += acc[h][k];                            \
        if (left >= NVEC * V) {                                                               \
            for (int k = 0; k < NVEC; k++) KN(storeu)(out + x + k * V, acc[0][k]);            \
        } else {                                                                              \
            T tmp[NVEC * V];                                                                  \
            for (int k = 0; k < NVEC; k++) KN(storeu)(tmp + k * V, acc[0][k]);                \
            memcpy(out + x, tmp, (size_t)left * sizeof(T));                                   \
        }                                                                                     \
    } while (0)

#if C3_ROW_UNROLL != 4
#error "the row kernel below is written out for C3_ROW_UNROLL == 4"
#endif
static void KN(row)(const void *rows_, const c3_idx *r_off, c3_idx n_rows, const void *w_,
                    const c3_idx *w_off, c3_idx kW, c3_idx dW, c3_idx sW, void *out_,
                    c3_idx oW, const void *bias_) {
    const T *rows = rows_, *w = w_;
    T *out = out_;
    const T bias = *(const T *)bias_;
    /* Up to 4 vectors of consecutive outputs; short rows use fewer. */
#define C3_ROW_LOOP(SW)                                                                       \
    for (c3_idx x = 0; x < oW; x += C3_ROW_UNROLL * V) {                                      \
        c3_idx left = oW - x;                                                                 \
        if (left > 3 * V) C3_ROW_BODY(4, 1, SW);                                              \
        else if (left > 2 * V) C3_ROW_BODY(3, 2, SW);                                         \
        else if (left > V) C3_ROW_BODY(2, 2, SW);                                             \
        else C3_ROW_BODY(1, 4, SW);                                                           \
    }
    if (sW == 1) {
        C3_ROW_LOOP(1);
        return;
    }
    if (sW == 2) {
        C3_ROW_LOOP(2);
        return;
    }
#undef C3_ROW_LOOP
    for (c3_idx x = 0; x < oW; x++) {
        T acc = bias;
        for (c3_idx i = 0; i < n_rows; i++) {
            const T *r = rows + r_off[i] + x * sW;
            const T *wr = w + w_off[i];
            for (c3_idx e = 0; e < kW; e++) acc = SFMA(wr[e], r[e * dW], acc);
        }
        out[x] = acc;
    }
}
#undef C3_ROW_BODY

/* out[k * plane + j] = tile[j * ocb + k] + bias[k] for j < nx, k < nvalid: a tile written by
 * the tile kernels, stored as output rows (NaNs as one NaN: quiet_nan). V x V blocks are transposed in registers so each
 * channel's positions are one contiguous store: element stores scattered with a stride of
 * `plane` cost as much as the arithmetic on layers with few input channels. (Done on the
 * tile in L1 rather than in the tile kernels: there, it made GCC keep the accumulators in
 * memory.) ocb is a multiple of V. */
static void KN(store_tile)(const void *tile_, int ocb, int nx, void *out_, c3_idx plane,
                           const void *bias_, int nvalid) {
    const T *tile = tile_, *bias = bias_;
    T *out = out_;
    for (int c0 = 0; c0 < nvalid; c0 += V) {
        int kmax = nvalid - c0 < V ? nvalid - c0 : V;
        for (int j0 = 0; j0 < nx; j0 += V) {
            int cnt = nx - j0 < V ? nx - j0 : V;
            VT r[V];
            for (int l = 0; l < V; l++)
                r[l] = l < cnt ? KN(loadu)(tile + (c3_idx)(j0 + l) * ocb + c0) : (VT){0};
            KN(transpose)(r);
            for (int k = 0; k < kmax; k++) {
                VT y = KN(quiet_nan)(r[k] + BCAST(bias[c0 + k]));
                T *dst = out + (c3_idx)(c0 + k) * plane + j0;
                if (cnt == V) {
                    KN(storeu)(dst, y);
                } else {
#ifdef VSTOREN
                    /* one masked store: 16-lane vectors with 12-position tiles would
                     * otherwise extract 12 lanes one by one */
                    VSTOREN(dst, y, cnt);
#else
                    for (int e = 0; e < cnt; e++) dst[e] = y[e];
#endif
                }
            }
        }
    }
}

/* A block transposed V x V at a time in registers; the partial tiles at its right and bottom
 * edges element by element. Writes go along dst's rows, V of them at once. */
static void KN(transpose_block)(const void *src_, c3_idx src_stride, void *dst_,
                                c3_idx dst_stride, c3_idx n_i, c3_idx n_j) {
    const T *src = src_;
    T *dst = dst_;
    for (c3_idx j0 = 0; j0 < n_j; j0 += V)
        for (c3_idx i0 = 0; i0 < n_i; i0 += V) {
            if (i0 + V <= n_i && j0 + V <= n_j) {
                VT r[V];
                for (int l = 0; l < V; l++) r[l] = KN(loadu)(src + (i0 + l) * src_stride + j0);
                KN(transpose)(r); /* r[k][l] = src[(i0 + l) * src_stride + j0 + k] */
                for (int k = 0; k < V; k++) KN(storeu)(dst + (j0 + k) * dst_stride + i0, r[k]);
            } else {
                c3_idx i1 = i0 + V < n_i ? i0 + V : n_i, j1 = j0 + V < n_j ? j0 + V : n_j;
                for (c3_idx j = j0; j < j1; j++)
                    for (c3_idx i = i0; i < i1; i++) dst[j * dst_stride + i] = src[i * src_stride + j];
            }
        }
}
