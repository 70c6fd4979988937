/* Winograd input and output transforms for one dtype and ISA; included by dtype_section.h after
 * direct_tmpl.h (same T, VT, V, BCAST, KN). Each call transforms one tile for up to V
 * channels at once, one channel per vector lane, so the arithmetic is vector code whatever
 * the memory layout.
 *
 * Per axis, F(m, 3) with A = m + 2 points (m = 2: F2, A = 4; m = 4: F4, A = 6) for a kernel
 * of 3 along it, F(2, 5) with A = 6 for a kernel of 5, F(3, 2) (A = 4) or F(5, 2) (A = 6) for a
 * kernel of 2, or the identity (m = 1, A = 1) for a kernel of 1: 3x3x3 kernels use F(m^3, 3^3),
 * (1,3,3) kernels F(1 x m^2, 1 x 3^2), (3,1,1) kernels F(m x 1^2, 3 x 1^2), 5x5x5 kernels
 * F(2^3, 5^3) and 2x2x2 kernels F(3^3, 2^3) or F(5^3, 2^3). The input transform B^T depends
 * only on the points, so F(2, 5) and F(5, 2) share F(4, 3)'s and F(3, 2) F(2, 3)'s; A^T has a
 * row p^i per output i (p the points, the last row ending in the point at infinity).
 *
 * Toom-Cook matrices, y = A^T [(G g) * (B^T d)] (G in winograd_g.h). F2 uses the points
 * 0, +-1, inf; F4 uses 0, +-1, +-1/2, inf, better conditioned than +-2. B^T rows are scaled
 * to small integers, G compensates:
 *   F2: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 -1 0 1],  A^T = [1 1 1 0; 0 1 -1 1]
 *   F4: B^T = [1 0 -5 0 4 0; 0 -1 -1 4 4 0; 0 1 -1 -4 4 0; 0 -1 -2 1 2 0; 0 1 -2 -1 2 0;
 *              0 1 0 -5 0 4],
 *       A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -1/2 0; 0 1 1 1/4 1/4 0; 0 1 -1 1/8 -1/8 1]
 *   F(2, 5): the F4 B^T, A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -1/2 1]
 *   F(3, 2): the F2 B^T, A^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1]
 *   F(5, 2): the F4 B^T, A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -1/2 0; 0 1 1 1/4 1/4 0;
 *              0 1 -1 1/8 -1/8 0; 0 1 1 1/16 1/16 1] */
#include "winograd_g.h"
#include "padding.h"

/* 1-D transforms, written out so no zero coefficient costs an instruction. `s` and `so` are
 * the strides (in vectors) of the 4 or 6 inputs and the outputs. */
static inline __attribute__((always_inline)) void KN(bt)(const int A, const VT *d, int s,
                                                         VT *r, int so) {
    if (A == 1) {
        r[0] = d[0];
    } else if (A == 4) {
        VT d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s];
        r[0] = d0 - d2;
        r[so] = d1 + d2;
        r[2 * so] = d2 - d1;
        r[3 * so] = d3 - d1;
    } else {
        VT d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
        VT four = BCAST((T)4), two = BCAST((T)2), mfive = BCAST((T)-5);
        VT s12 = d1 + d2, t12 = d1 - d2, s34 = d3 + d4, t43 = d4 - d3;
        VT t42 = two * (d4 - d2), t31 = d3 - d1;
        r[0] = VFMA(four, d4, VFMA(mfive, d2, d0));
        r[so] = VFMA(four, s34, -s12);
        r[2 * so] = VFMA(four, t43, t12);
        r[3 * so] = t42 + t31;
        r[4 * so] = t42 - t31;
        r[5 * so] = VFMA(four, d5, VFMA(mfive, d3, d1));
    }
}

static inline __attribute__((always_inline)) void KN(at)(const int A, const int M,
                                                         const VT *m, int s, VT *y, int so) {
    if (A == 1) {
        y[0] = m[0];
    } else if (A == 6 && M == 2) { /* F(2, 5): A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -1/2 1] */
        VT m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
        y[0] = m0 + (m1 + m2) + (m3 + m4);
        y[so] = VFMA(BCAST((T)0.5), m3 - m4, m1 - m2) + m5;
    } else if (A == 4 && M == 3) { /* F(3, 2) */
        VT m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s];
        VT s12 = m1 + m2;
        y[0] = m0 + s12;
        y[so] = m1 - m2;
        y[2 * so] = s12 + m3;
    } else if (A == 6 && M == 5) { /* F(5, 2) */
        VT m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
        VT s12 = m1 + m2, t12 = m1 - m2, s34 = m3 + m4, t34 = m3 - m4;
        y[0] = m0 + s12 + s34;
        y[so] = VFMA(BCAST((T)0.5), t34, t12);
        y[2 * so] = VFMA(BCAST((T)0.25), s34, s12);
        y[3 * so] = VFMA(BCAST((T)0.125), t34, t12);
        y[4 * so] = VFMA(BCAST((T)0.0625), s34, s12) + m5;
    } else if (A == 4) {
        VT m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s];
        y[0] = m0 + m1 + m2;
        y[so] = m1 - m2 + m3;
    } else {
        VT m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
        VT s12 = m1 + m2, t12 = m1 - m2, s34 = m3 + m4, t34 = m3 - m4;
        y[0] = m0 + s12 + s34;
        y[so] = VFMA(BCAST((T)0.5), t34, t12);
        y[2 * so] = VFMA(BCAST((T)0.25), s34, s12);
        y[3 * so] = VFMA(BCAST((T)0.125), t34, t12) + m5;
    }
}

/* v limited to [0, hi]. */
static inline int KN(clamp)(c3_idx v, int hi) { return v < 0 ? 0 : v > hi ? hi : (int)v; }

/* V[xi * v_stride + lane] = (B^T d B)[xi] for the AZ x AY x AX input patch whose first element
 * is at (z0, y0, x0) of channels x, x + cstride, ... (nc <= V of them); outside the input is 0.
 * The pass along W is applied to each patch row as it is loaded, and the passes along H and D
 * one patch column at a time as the result is stored: one trip through a stack array, where
 * three separate passes took three. */
static inline __attribute__((always_inline)) void KN(wino_input_body)(
    const T *x, c3_idx cstride, int nc, c3_idx D, c3_idx H, c3_idx W, c3_idx z0, c3_idx y0,
    c3_idx x0, T *v, c3_idx v_stride, const c3_wino_tile *tile, const int AZ, const int AY,
    const int AX) {
    VT p[C3_WINOGRAD_MAX_ALPHA * C3_WINOGRAD_MAX_ALPHA * C3_WINOGRAD_MAX_ALPHA];
    const int AYX = AY * AX, mode = tile->mode;
    /* The part of the patch read: [a0, a1) x [b0, b1) x [c0, c1); the rest is zero. Clamped
     * to [0, A] in c3_idx first: an origin far outside the input (huge padding) must not wrap
     * when narrowed to int. Zeros padding reads the input only; another mode reads its padding
     * too (its rows and columns where padding.h maps them: C3_ROW, col), and leaves zero what
     * lies past the padding, as convolving a padded copy would. */
    const int pad = mode != C3_PAD_ZEROS;
    const c3_idx lz = pad ? tile->lo[0] : 0, ly = pad ? tile->lo[1] : 0, lx = pad ? tile->lo[2] : 0;
    const c3_idx hz = pad ? tile->hi[0] : 0, hy = pad ? tile->hi[1] : 0, hx = pad ? tile->hi[2] : 0;
    int a0 = KN(clamp)(-z0 - lz, AZ), a1 = KN(clamp)(D + hz - z0, AZ);
    int b0 = KN(clamp)(-y0 - ly, AY), b1 = KN(clamp)(H + hy - y0, AY);
    int c0 = KN(clamp)(-x0 - lx, AX), c1 = KN(clamp)(W + hx - x0, AX);
    /* every column of the patch in the input */
    const int inside = x0 >= 0 && x0 + AX <= W;
#define C3_ROW(a, b)                                                                          \
    (x + (c3_pad_index(z0 + (a), D, mode) * H + c3_pad_index(y0 + (b), H, mode)) * W)
    /* Rows outside the input transform to zero along W (only those: most tiles of a small
     * volume touch an edge, and clearing the whole patch would cost every one of them). */
    if (a0 > 0 || b0 > 0 || a1 < AZ || b1 < AY)
        for (int a = 0; a < AZ; a++)
            for (int b = 0; b < AY; b++)
                if (a < a0 || a >= a1 || b < b0 || b >= b1)
                    for (int c = 0; c < AX; c++) p[(a * AY + b) * AX + c] = (VT){0};
    /* V channels and a row at least NCOLV vectors wide: per patch row, V contiguous loads (one
     * per channel) from a window of the row that holds the patch's in-range columns, and a
     * register transpose, instead of V scalar loads per element. */
    const int NCOLV = (AX + V - 1) / V;
    if (AX > 1 && nc == V && W >= NCOLV * V && (!pad || inside)) {
        c3_idx xs = x0 < 0 ? 0 : (x0 + NCOLV * V > W ? W - NCOLV * V : x0);
        int shift = (int)(x0 - xs); /* patch column c is window column c + shift */
        for (int a = a0; a < a1; a++)
            for (int b = b0; b < b1; b++) {
                const T *src = C3_ROW(a, b) + xs;
                VT win[(C3_WINOGRAD_MAX_ALPHA + 1) / 2 * V]; /* NCOLV <= this / V: V >= 2 */
                for (int h = 0; h < NCOLV; h++) {
                    for (int l = 0; l < V; l++) win[h * V + l] = KN(loadu)(src + l * cstride + h * V);
                    KN(transpose)(win + h * V);
                }
                VT row[C3_WINOGRAD_MAX_ALPHA];
                if (c0 == 0 && c1 == AX) {
                    for (int c = 0; c < AX; c++) row[c] = win[c + shift];
                } else {
                    for (int c = 0; c < AX; c++)
                        row[c] = c >= c0 && c < c1 ? win[c + shift] : (VT){0};
                }
                KN(bt)(AX, row, 1, p + (a * AY + b) * AX, 1);
            }
    } else {
        for (int a = a0; a < a1; a++)
            for (int b = b0; b < b1; b++) {
                const T *src = C3_ROW(a, b);
                VT row[C3_WINOGRAD_MAX_ALPHA];
                for (int c = 0; c < AX; c++) {
                    row[c] = (VT){0};
                    if (c < c0 || c >= c1) continue;
                    c3_idx col = c3_pad_index(x0 + c, W, mode);
                    if (nc == V) {
                        row[c] = KN(gather)(src + col, cstride);
                    } else {
                        for (int l = 0; l < nc; l++) row[c][l] = src[col + l * cstride];
                    }
                }
                KN(bt)(AX, row, 1, p + (a * AY + b) * AX, 1);
            }
    }
    /* Along H then D, one patch column at a time: its AZ x AY values stay in registers
     * between the two passes instead of a round trip through a second stack array. */
    for (int c = 0; c < AX; c++) {
        VT t[C3_WINOGRAD_MAX_ALPHA * C3_WINOGRAD_MAX_ALPHA];
        for (int a = 0; a < AZ; a++) KN(bt)(AY, p + a * AYX + c, AX, t + a * AY, 1);
        for (int b = 0; b < AY; b++) {
            VT r[C3_WINOGRAD_MAX_ALPHA];
            KN(bt)(AZ, t + b, AY, r, 1);
            for (int k = 0; k < AZ; k++) {
                T *dst = v + (c3_idx)((k * AY + b) * AX + c) * v_stride;
                if (nc == V) {
                    KN(storeu)(dst, r[k]);
                } else {
                    for (int l = 0; l < nc; l++) dst[l] = r[k][l];
                }
            }
        }
    }
}

#undef C3_ROW

/* y = A^T M A + bias for one tile and nc <= V output channels: M[xi] is the vector at
 * m_in + xi * m_stride; output (z, y, x) of lane l goes to
 * out[l * ostride + (z * oH + y) * oW + x] for z < mz, y < my, x < mx (edge tiles are cut).
 * Returns nonzero when a value of the tile (stored or not) is NaN or +-inf, so that 'auto'
 * needs no second pass over the output to decide whether to recompute it directly. */
static inline __attribute__((always_inline)) int KN(wino_output_body)(
    const T *m_in, c3_idx m_stride, int nc, const T *bias, T *out, c3_idx ostride, c3_idx oH,
    c3_idx oW, int mz, int my, int mx, const int AZ, const int AY, const int AX, const int MZ,
    const int MY, const int MX) {
    VT p[C3_WINOGRAD_MAX_ALPHA * C3_WINOGRAD_MAX_ALPHA * C3_WINOGRAD_MAX_ALPHA];
    VT q[C3_WINOGRAD_MAX_ALPHA * C3_WINOGRAD_MAX_ALPHA * C3_WINOGRAD_MAX_ALPHA];
    const int AYX = AY * AX;
    VT b = (VT){0};
    for (int l = 0; l < nc; l++) b[l] = bias[l];
    for (int i = 0; i < AYX; i++) {                  /* D: MZ x AY x AX, as M is loaded */
        VT col[C3_WINOGRAD_MAX_ALPHA];
        for (int k = 0; k < AZ; k++) col[k] = KN(loadu)(m_in + (c3_idx)(k * AYX + i) * m_stride);
        KN(at)(AZ, MZ, col, 1, q + i, AYX);
    }
    for (int z = 0; z < MZ; z++)                                           /* H: MZ x MY x AX */
        for (int c = 0; c < AX; c++)
            KN(at)(AY, MY, q + z * AYX + c, AX, p + z * AYX + c, AX);
    for (int z = 0; z < MZ; z++)                                           /* W: MZ x MY x MX */
        for (int y = 0; y < MY; y++)
            KN(at)(AX, MX, p + (z * AY + y) * AX, 1, q + (z * MY + y) * MX, 1);
    /* Bias added once; y - y is 0 for finite y and NaN otherwise (NaN != 0 holds): one
     * check per vector. NaNs leave as one NaN (quiet_nan: the GEMM kernel that computes a
     * tile depends on the blocks, cut by the thread count). */
    IDX bad = (IDX){0};
    for (int i = 0; i < MZ * MY * MX; i++) {
        q[i] = KN(quiet_nan)(q[i] + b);
        bad |= (IDX)((q[i] - q[i]) != (VT){0});
    }
    int nonfinite = 0;
    for (int l = 0; l < V; l++) nonfinite |= bad[l] != 0;
    /* V channels: transpose each output row so a channel's mx outputs are one short
     * contiguous store. */
    if (nc == V && MX > 1 && MX <= V) {
        for (int z = 0; z < mz; z++)
            for (int y = 0; y < my; y++) {
                VT r[V];
                for (int k = 0; k < V; k++) r[k] = k < MX ? q[(z * MY + y) * MX + k] : (VT){0};
                KN(transpose)(r);
                /* A constant size for whole tiles: the copy becomes one short store rather
                 * than a call into libc per channel and row. */
                if (mx == MX)
                    for (int l = 0; l < V; l++)
                        memcpy(out + l * ostride + (z * oH + y) * oW, &r[l], MX * sizeof(T));
                else
                    for (int l = 0; l < V; l++)
                        for (int k = 0; k < mx; k++)
                            out[l * ostride + (z * oH + y) * oW + k] = r[l][k];
            }
        return nonfinite;
    }
    for (int z = 0; z < mz; z++)
        for (int y = 0; y < my; y++)
            for (int xx = 0; xx < mx; xx++) {
                VT r = q[(z * MY + y) * MX + xx];
                T *dst = out + (z * oH + y) * oW + xx;
                for (int l = 0; l < nc; l++) dst[l * ostride] = r[l];
            }
    return nonfinite;
}

/* U = G g G^T for one block of ocb output channels (see kernels.h: c3_wino_weights_fn): one
 * pass per axis (D, then H, then W) with G's integer numerators, in double whatever T, then one
 * multiplication by the reciprocal of the product of the denominators and one rounding to T.
 * For float32 weights the passes lose nothing unless a kernel's taps span a wide range of
 * magnitudes (a float times integers of at most 8 bits, three times, sums of at most five
 * terms: within double's 53 bits), so U is the correctly rounded result but for the
 * reciprocal's one rounding. Every coefficient takes part, zeros included (0 * inf is NaN).
 * Vectors of C3_LD doubles hold C3_LD output channels. */
#define C3_WW_CB C3_WINOGRAD_WEIGHT_CHANNELS
typedef C3_VD KN(vd);
static inline __attribute__((always_inline)) void KN(wino_pass)(
    const double *G, const int A, const int r, const KN(vd) *restrict in,
    KN(vd) *restrict out, const int outer, const int inner) {
    /* out[(o A + i) inner + q] = sum_a G[i][a] in[o][a][q], o < outer, i < A,
     * q < inner, summed in the order of a */
    for (int o = 0; o < outer; o++)
        for (int q = 0; q < inner; q++) {
            KN(vd) col[C3_WINOGRAD_MAX_ALPHA];
            for (int a = 0; a < r; a++) col[a] = in[(o * r + a) * inner + q];
            for (int i = 0; i < A; i++) {
                KN(vd) acc = G[i * r] * col[0];
                for (int a = 1; a < r; a++) acc = acc + G[i * r + a] * col[a];
                out[(o * A + i) * inner + q] = acc;
            }
        }
}

/* The body for one tile shape: every loop bound and every coefficient of G known at compile
 * time, so that the passes run from registers with constant multipliers. */
static inline __attribute__((always_inline)) void KN(wino_weights_body)(
    const T *w, c3_idx wstride, int nvalid, c3_idx cpg, T *u, c3_idx u_stride, int ocb,
    void *scratch, const int MZ, const int MY, const int MX, const int AZ, const int AY,
    const int AX) {
    /* U's C3_LD channels of one point, as T: a double vector converted lane by lane (the
     * same rounding as a scalar cast) and stored at once. */
    typedef T KN(wt) __attribute__((vector_size(C3_LD * sizeof(T))));
    const int kz = AZ - MZ + 1, ky = AY - MY + 1, kx = AX - MX + 1;
    double dz, dy, dx;
    const double *Gz = c3_wino_g(MZ, kz, &dz), *Gy = c3_wino_g(MY, ky, &dy);
    const double *Gx = c3_wino_g(MX, kx, &dx);
    const double scale = 1.0 / (dz * dy * dx);
    const int nv = ocb / C3_LD, taps = kz * ky * kx;
    /* C3_WW_CB input channels at a time: the D and H passes one double vector (C3_LD output
     * channels) at a time, so that the first intermediates stay in L1 however wide the
     * channel block; then the W pass of every point, storing its cb ocb values as one run
     * of U. U's points are u_stride apart, often a multiple of 4 KiB: runs of one vector
     * per point would leave hundreds of half-written lines in one cache set, each evicted
     * and read again before its next vector arrives. */
    KN(vd) *g = scratch;                      /* [kz][ky][kx] */
    KN(vd) *t1 = g + taps;                    /* [az][ky][kx] */
    KN(vd) *t2 = t1 + AZ * ky * kx;           /* [cb][nv][az][ay][kx] */
    const int n2 = AZ * AY * kx;
    double *gs = (double *)g;
    for (c3_idx c0 = 0; c0 < cpg; c0 += C3_WW_CB) {
        const int cb = cpg - c0 < C3_WW_CB ? (int)(cpg - c0) : C3_WW_CB;
        for (int cv = 0; cv < cb * nv; cv++) {
            const int v = cv % nv;
            const c3_idx c = c0 + cv / nv;
            /* g[t][l] = tap t of channel v C3_LD + l: each channel's taps are read as one
             * contiguous run. */
            for (int l = 0; l < C3_LD; l++) {
                const int k = v * C3_LD + l;
                const T *src = w + k * wstride + c * taps;
                if (k < nvalid)
                    for (int t = 0; t < taps; t++) gs[t * C3_LD + l] = (double)src[t];
                else
                    for (int t = 0; t < taps; t++) gs[t * C3_LD + l] = 0.0;
            }
            KN(wino_pass)(Gz, AZ, kz, g, t1, 1, ky * kx);
            KN(wino_pass)(Gy, AY, ky, t1, t2 + cv * n2, AZ, kx);
        }
        /* Each column read once for the AX points it gives; those points' runs are written
         * side by side, one vector each in turn. */
        T *dst = u + c0 * ocb;
        for (int yz = 0; yz < AZ * AY; yz++)
            for (int cv = 0; cv < cb * nv; cv++) {
                KN(vd) col[C3_WINOGRAD_MAX_ALPHA];
                for (int b = 0; b < kx; b++) col[b] = t2[cv * n2 + yz * kx + b];
                for (int i = 0; i < AX; i++) {
                    KN(vd) acc = Gx[i * kx] * col[0];
                    for (int b = 1; b < kx; b++) acc = acc + Gx[i * kx + b] * col[b];
                    KN(wt) q = __builtin_convertvector(acc * scale, KN(wt));
                    memcpy(dst + (yz * AX + i) * u_stride + cv * C3_LD, &q, sizeof q);
                }
            }
    }
}

static int KN(wino_weights)(const c3_wino_tile *tile, const void *w, c3_idx wstride, int nvalid,
                            c3_idx cpg, void *u, c3_idx u_stride, int ocb, void *scratch) {
    const int *m = tile->m, *a = tile->a;
    if (ocb % C3_LD) return -1;
#define C3_WW_CASE(MZ, MY, MX, AZ, AY, AX)                                                    \
    if (m[0] == MZ && m[1] == MY && m[2] == MX && a[0] == AZ && a[1] == AY && a[2] == AX) {   \
        KN(wino_weights_body)(w, wstride, nvalid, cpg, u, u_stride, ocb, scratch, MZ, MY, MX, \
                              AZ, AY, AX);                                                    \
        return 0;                                                                             \
    }
    C3_WINOGRAD_OUTPUT_TILES(C3_WW_CASE)
#undef C3_WW_CASE
    return -1;
}
#undef C3_WW_CB

/* The tile shapes compiled, generated from constants.py (constants.h); a caller asking for
 * another gets -1 and nothing written. */
static int KN(wino_input)(const c3_wino_tile *tile, const void *x, c3_idx cstride, int nc,
                          c3_idx D, c3_idx H, c3_idx W, c3_idx z0, c3_idx y0, c3_idx x0, void *v,
                          c3_idx v_stride) {
    const int *a = tile->a;
#define C3_IN_CASE(AZ, AY, AX)                                                                \
    if (a[0] == AZ && a[1] == AY && a[2] == AX) {                                             \
        KN(wino_input_body)(x, cstride, nc, D, H, W, z0, y0, x0, v, v_stride, tile, AZ, AY,   \
                            AX);                                                              \
        return 0;                                                                             \
    }
    C3_WINOGRAD_INPUT_TILES(C3_IN_CASE)
#undef C3_IN_CASE
    return -1;
}

static int KN(wino_output)(const c3_wino_tile *tile, const void *m_in, c3_idx m_stride, int nc,
                           const void *bias, void *out, c3_idx ostride, c3_idx oH, c3_idx oW,
                           int ez, int ey, int ex) {
    const int *m = tile->m, *a = tile->a;
#define C3_OUT_CASE(MZ, MY, MX, AZ, AY, AX)                                                   \
    if (m[0] == MZ && m[1] == MY && m[2] == MX && a[0] == AZ && a[1] == AY && a[2] == AX)     \
        return KN(wino_output_body)(m_in, m_stride, nc, bias, out, ostride, oH, oW, ez, ey,   \
                                    ex, AZ, AY, AX, MZ, MY, MX);
    C3_WINOGRAD_OUTPUT_TILES(C3_OUT_CASE)
#undef C3_OUT_CASE
    return -1;
}
