/* Micro-kernels of the direct convolution, compiled once per instruction set in _kernels.c
 * and chosen at import (conv3d_kernels_select).
 *
 * Data they read: n_rows input rows, row i starting at rows + r_off[i] (the tile's first
 * input column), either in place in the input or gathered and zero padded along W by the
 * caller; row i pairs with the kernel row at w + w_off[i] (kW taps, each a block of OCB output
 * channels for the tile kernels, a single scalar for the row kernel).
 */
#ifndef CONV3D_CPU_KERNELS_H
#define CONV3D_CPU_KERNELS_H
#include <stddef.h>

typedef ptrdiff_t c3_idx;

/* tile[j * OCB + k] = sum_i sum_e w[w_off[i] + e * OCB + k] * rows[r_off[i] + j * sW + e * dW]
 * for j < nx (nx <= tile_nx), k < OCB. */
typedef void (*c3_tile_f32)(const float *rows, const c3_idx *r_off, c3_idx n_rows,
                            const float *w, const c3_idx *w_off, c3_idx kW, c3_idx dW,
                            c3_idx sW, float *tile, int nx);
typedef void (*c3_tile_f64)(const double *rows, const c3_idx *r_off, c3_idx n_rows,
                            const double *w, const c3_idx *w_off, c3_idx kW, c3_idx dW,
                            c3_idx sW, double *tile, int nx);
/* out[k * plane + j] = tile[j * ocb + k] + bias[k] for j < nx, k < nvalid (ocb a multiple of
 * the vector length): a tile stored as output rows. */
typedef void (*c3_store_f32)(const float *tile, int ocb, int nx, float *out, c3_idx plane,
                             const float *bias, int nvalid);
typedef void (*c3_store_f64)(const double *tile, int ocb, int nx, double *out, c3_idx plane,
                             const double *bias, int nvalid);
/* out[x] = bias + sum_i sum_e w[w_off[i] + e] * rows[r_off[i] + x * sW + e * dW], x < oW.
 * With sW == 1 rows are read in whole vectors past oW, 4 vectors (4 x the table's narrow
 * block) at a time: callers pad rows to a multiple of that (see _kernels_tmpl.h). */
typedef void (*c3_row_f32)(const float *rows, const c3_idx *r_off, c3_idx n_rows,
                           const float *w, const c3_idx *w_off, c3_idx kW, c3_idx dW,
                           c3_idx sW, float *out, c3_idx oW, float bias);
typedef void (*c3_row_f64)(const double *rows, const c3_idx *r_off, c3_idx n_rows,
                           const double *w, const c3_idx *w_off, c3_idx kW, c3_idx dW,
                           c3_idx sW, double *out, c3_idx oW, double bias);
/* Winograd transforms of one tile with az x ay x ax transformed points and mz x my x mx
 * outputs (see _winograd_tmpl.h for the shapes compiled). */
typedef void (*c3_wino_in_f32)(int az, int ay, int ax, const float *x, c3_idx cstride, int nc,
                               c3_idx D, c3_idx H, c3_idx W, c3_idx z0, c3_idx y0, c3_idx x0,
                               float *v, c3_idx v_stride);
typedef void (*c3_wino_in_f64)(int az, int ay, int ax, const double *x, c3_idx cstride, int nc,
                               c3_idx D, c3_idx H, c3_idx W, c3_idx z0, c3_idx y0, c3_idx x0,
                               double *v, c3_idx v_stride);
/* The output transforms store ez x ey x ex outputs (edge tiles are cut) and return nonzero
 * when the tile holds a NaN or an infinity. */
typedef int (*c3_wino_out_f32)(int mz, int my, int mx, int az, int ay, int ax,
                               const float *m_in, c3_idx m_stride, int nc, const float *bias,
                               float *out, c3_idx ostride, c3_idx oH, c3_idx oW, int ez,
                               int ey, int ex);
typedef int (*c3_wino_out_f64)(int mz, int my, int mx, int az, int ay, int ax,
                               const double *m_in, c3_idx m_stride, int nc, const double *bias,
                               double *out, c3_idx ostride, c3_idx oH, c3_idx oW, int ez,
                               int ey, int ex);

typedef struct c3_kernels_s {
    const char *isa;
    /* Output-channel block widths and the most positions one tile call handles. */
    int ocb_wide_f32, ocb_narrow_f32, ocb_wide_f64, ocb_narrow_f64;
    int nx_wide, nx_narrow;
    c3_tile_f32 tile_wide_f32, tile_narrow_f32;
    c3_tile_f64 tile_wide_f64, tile_narrow_f64;
    c3_store_f32 store_f32;
    c3_store_f64 store_f64;
    c3_row_f32 row_f32;
    c3_row_f64 row_f64;
    c3_wino_in_f32 wino_in_f32;
    c3_wino_in_f64 wino_in_f64;
    c3_wino_out_f32 wino_out_f32;
    c3_wino_out_f64 wino_out_f64;
    /* The table for layers with fewer channels per group than this one's narrow block, or
     * NULL (this one): 512-bit vectors hand them to 256-bit ones, whose lanes they fill. */
    const struct c3_kernels_s *narrow;
} c3_kernels;

enum { C3_ISA_BASELINE = 0, C3_ISA_AVX2 = 1, C3_ISA_AVX512 = 2, C3_ISA_AVX512_ZMM = 3,
       C3_ISA_COUNT = 4 };

/* The kernel table for an ISA, or NULL when it was not compiled in. */
const c3_kernels *c3_kernels_for(int isa);
/* 1 when this CPU can run the ISA's kernels. */
int c3_cpu_supports(int isa);
/* 1 when the ISA is worth choosing by default on this CPU, where it runs. */
int c3_cpu_prefers(int isa);

#endif
