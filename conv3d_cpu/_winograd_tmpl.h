/* Winograd F(m^3, 3^3) input and output transforms for one type and ISA; included by
 * _kernels.c after _kernels_tmpl.h (same T, VT, V, BCAST, KN). Each call transforms one tile
 * for up to V channels at once, one channel per vector lane, so the arithmetic is vector code
 * whatever the memory layout. ALPHA = m + 2 is 4 (F2) or 6 (F4); the matrices are in
 * _kernels.c. */

/* out[i][b][c] = sum_a M[i][a] * in[a][b][c] for a (ROWS x ALPHA) matrix M, along one axis of
 * an ALPHA^3 (or partially reduced) block; `st` is the axis stride in elements of in/out,
 * `n1`, `n2` and their strides walk the two other axes. */
static inline __attribute__((always_inline)) void KN(wino_axis)(
    const VT *in, VT *out, const double *M, int rows, int alpha, int st_in, int st_out,
    int n1, int s1_in, int s1_out, int n2, int s2_in, int s2_out) {
    for (int u = 0; u < n1; u++)
        for (int v = 0; v < n2; v++) {
            const VT *src = in + u * s1_in + v * s2_in;
            VT *dst = out + u * s1_out + v * s2_out;
            for (int i = 0; i < rows; i++) {
                VT acc = (VT){0};
                for (int a = 0; a < alpha; a++) {
                    double coef = M[i * alpha + a];
                    if (coef != 0.0) acc += BCAST((T)coef) * src[a * st_in];
                }
                dst[i * st_out] = acc;
            }
        }
}

/* V[xi * v_stride + lane] = (B^T d B)[xi] for the input patch whose first element is at
 * (z0, y0, x0) of channels x, x + cstride, ... (nc <= V of them); outside the input is 0. */
static inline __attribute__((always_inline)) void KN(wino_input_body)(
    const T *x, c3_idx cstride, int nc, c3_idx D, c3_idx H, c3_idx W, c3_idx z0, c3_idx y0,
    c3_idx x0, T *v, c3_idx v_stride, const double *BT, const int A) {
    VT p[6 * 6 * 6], q[6 * 6 * 6];
    int inside = z0 >= 0 && y0 >= 0 && x0 >= 0 && z0 + A <= D && y0 + A <= H && x0 + A <= W;
    for (int a = 0; a < A; a++)
        for (int b = 0; b < A; b++)
            for (int c = 0; c < A; c++) {
                c3_idx iz = z0 + a, iy = y0 + b, ix = x0 + c;
                VT e = (VT){0};
                if (inside || (iz >= 0 && iz < D && iy >= 0 && iy < H && ix >= 0 && ix < W)) {
                    const T *src = x + (iz * H + iy) * W + ix;
                    for (int l = 0; l < nc; l++) e[l] = src[l * cstride];
                }
                p[(a * A + b) * A + c] = e;
            }
    KN(wino_axis)(p, q, BT, A, A, A * A, A * A, A, A, A, A, 1, 1);   /* along D */
    KN(wino_axis)(q, p, BT, A, A, A, A, A, A * A, A * A, A, 1, 1);   /* along H */
    KN(wino_axis)(p, q, BT, A, A, 1, 1, A, A * A, A * A, A, A, A);   /* along W */
    for (int xi = 0; xi < A * A * A; xi++) {
        if (nc == V) {
            KN(storeu)(v + xi * v_stride, q[xi]);
        } else {
            for (int l = 0; l < nc; l++) v[xi * v_stride + l] = q[xi][l];
        }
    }
}

/* y = A^T M A + bias for one tile and nc <= V output channels: M[xi] is the vector at
 * m_in + xi * m_stride; output (z, y, x) of lane l goes to
 * out[l * ostride + (z * oH + y) * oW + x] for z < mz, y < my, x < mx (edge tiles are cut). */
static inline __attribute__((always_inline)) void KN(wino_output_body)(
    const T *m_in, c3_idx m_stride, int nc, const T *bias, T *out, c3_idx ostride, c3_idx oH,
    c3_idx oW, int mz, int my, int mx, const double *AT, const int A, const int m) {
    VT p[6 * 6 * 6], q[6 * 6 * 6];
    VT b = (VT){0};
    for (int l = 0; l < nc; l++) b[l] = bias[l];
    for (int xi = 0; xi < A * A * A; xi++) p[xi] = KN(loadu)(m_in + xi * m_stride);
    KN(wino_axis)(p, q, AT, m, A, A * A, A * A, A, A, A, A, 1, 1);   /* D: m x A x A */
    KN(wino_axis)(q, p, AT, m, A, A, A, m, A * A, A * A, A, 1, 1);   /* H: m x m x A */
    KN(wino_axis)(p, q, AT, m, A, 1, 1, m, A * A, m * m, m, A, m);   /* W: m x m x m */
    for (int z = 0; z < mz; z++)
        for (int y = 0; y < my; y++)
            for (int xx = 0; xx < mx; xx++) {
                VT r = q[(z * m + y) * m + xx] + b;
                T *dst = out + (z * oH + y) * oW + xx;
                for (int l = 0; l < nc; l++) dst[l * ostride] = r[l];
            }
}

static void KN(wino_input)(int m, const T *x, c3_idx cstride, int nc, c3_idx D, c3_idx H,
                           c3_idx W, c3_idx z0, c3_idx y0, c3_idx x0, T *v, c3_idx v_stride) {
    if (m == 2)
        KN(wino_input_body)(x, cstride, nc, D, H, W, z0, y0, x0, v, v_stride, &c3_wino_bt4[0][0], 4);
    else
        KN(wino_input_body)(x, cstride, nc, D, H, W, z0, y0, x0, v, v_stride, &c3_wino_bt6[0][0], 6);
}

static void KN(wino_output)(int m, const T *m_in, c3_idx m_stride, int nc, const T *bias,
                            T *out, c3_idx ostride, c3_idx oH, c3_idx oW, int mz, int my,
                            int mx) {
    if (m == 2)
        KN(wino_output_body)(m_in, m_stride, nc, bias, out, ostride, oH, oW, mz, my, mx,
                             &c3_wino_at4[0][0], 4, 2);
    else
        KN(wino_output_body)(m_in, m_stride, nc, bias, out, ostride, oH, oW, mz, my, mx,
                             &c3_wino_at6[0][0], 6, 4);
}
