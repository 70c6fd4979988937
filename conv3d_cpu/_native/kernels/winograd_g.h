/* G of the Winograd weight transform U = G g G^T per axis, F(m, r) for the tiles of
 * constants.WINOGRAD_SHAPES, matching B^T and A^T in winograd_tmpl.h: y = A^T [(G g) * (B^T d)].
 * Row i is s_i * (1, p_i, p_i^2, ...) at point p_i (the leading coefficient at inf), s_i
 * compensating the integer scaling of B^T's rows. Kept as integers over one denominator per
 * axis, so that the transform multiplies by small integers (exact in double for float32
 * weights) and divides once at the end. Included once (kernels.c compiles every ISA in one
 * unit). */
#ifndef CONV3D_CPU_WINOGRAD_G_H
#define CONV3D_CPU_WINOGRAD_G_H

/* F(2, 3): points 0, +-1, inf; / 2 */
static const double c3_wino_g_2_3[4 * 3] = {
    2, 0, 0,
    1, 1, 1,
    1, -1, 1,
    0, 0, 2,
};
/* F(4, 3): points 0, +-1, +-1/2, inf; / 24 */
static const double c3_wino_g_4_3[6 * 3] = {
    24, 0, 0,
    4, 4, 4,
    4, -4, 4,
    -32, -16, -8,
    -32, 16, -8,
    0, 0, 6,
};
/* F(2, 5): the same six points; / 96 */
static const double c3_wino_g_2_5[6 * 5] = {
    96, 0, 0, 0, 0,
    16, 16, 16, 16, 16,
    16, -16, 16, -16, 16,
    -128, -64, -32, -16, -8,
    -128, 64, -32, 16, -8,
    0, 0, 0, 0, 24,
};
/* F(3, 2): F(2, 3)'s points; / 2 */
static const double c3_wino_g_3_2[4 * 2] = {
    2, 0,
    1, 1,
    1, -1,
    0, 2,
};
/* F(5, 2): F(4, 3)'s points; / 12 */
static const double c3_wino_g_5_2[6 * 2] = {
    12, 0,
    2, 2,
    2, -2,
    -16, -8,
    -16, 8,
    0, 3,
};
static const double c3_wino_g_1_1[1] = {1};

/* The numerators of G for F(m, r), (m + r - 1) x r row-major, and their denominator
 * (*den), or NULL when none is defined. */
static inline const double *c3_wino_g(int m, int r, double *den) {
    if (m == 1 && r == 1) return *den = 1, c3_wino_g_1_1;
    if (m == 2 && r == 3) return *den = 2, c3_wino_g_2_3;
    if (m == 4 && r == 3) return *den = 24, c3_wino_g_4_3;
    if (m == 2 && r == 5) return *den = 96, c3_wino_g_2_5;
    if (m == 3 && r == 2) return *den = 2, c3_wino_g_3_2;
    if (m == 5 && r == 2) return *den = 12, c3_wino_g_5_2;
    return 0;
}
#endif
