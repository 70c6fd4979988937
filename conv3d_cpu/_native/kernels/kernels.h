/* The micro-kernel tables: one per instruction set, compiled in kernels.c, one of them chosen
 * at import (isa.pyx). Each table holds every micro-kernel of C3_MICROKERNELS for both dtypes,
 * indexed [C3_F32] / [C3_F64]; their data pointers point at elements of that dtype.
 *
 * Data the direct kernels read: n_rows input rows, row i starting at rows + r_off[i] (the
 * tile's first input column), either in place in the input or gathered and zero padded along
 * W by the caller; row i pairs with the kernel row at w + w_off[i] (kW taps, each a block of
 * ocb output channels for the tile kernels, a single scalar for the row kernel). */
#ifndef CONV3D_CPU_KERNELS_H
#define CONV3D_CPU_KERNELS_H
#include <stddef.h>

#include "constants.h"

typedef ptrdiff_t c3_idx;

enum { C3_F32 = 0, C3_F64 = 1 };

/* tile[j * ocb + k] = sum_i sum_e w[w_off[i] + e * ocb + k] * rows[r_off[i] + j * sW + e * dW]
 * for j < nx (nx <= the table's nx_wide or nx_narrow), k < ocb (2 vectors for tile_wide, 1
 * for tile_narrow). */
typedef void (*c3_tile_fn)(const void *rows, const c3_idx *r_off, c3_idx n_rows, const void *w,
                           const c3_idx *w_off, c3_idx kW, c3_idx dW, c3_idx sW, void *tile,
                           int nx);
/* out[k * plane + j] = tile[j * ocb + k] + bias[k] for j < nx, k < nvalid (ocb a multiple of
 * the vector length): a tile stored as output rows. */
typedef void (*c3_store_fn)(const void *tile, int ocb, int nx, void *out, c3_idx plane,
                            const void *bias, int nvalid);
/* out[x] = *bias + sum_i sum_e w[w_off[i] + e] * rows[r_off[i] + x * sW + e * dW], x < oW.
 * With sW == 1 or 2 rows are read in whole vectors past oW, C3_ROW_UNROLL x the table's
 * narrow block (times sW) at a time: callers pad rows to a multiple of that (direct_tmpl.h). */
typedef void (*c3_row_fn)(const void *rows, const c3_idx *r_off, c3_idx n_rows, const void *w,
                          const c3_idx *w_off, c3_idx kW, c3_idx dW, c3_idx sW, void *out,
                          c3_idx oW, const void *bias);

/* dst[j * dst_stride + i] = src[i * src_stride + j] for i < n_i, j < n_j: a block transposed
 * (src's rows contiguous along j, dst's along i), as V x V register transposes. */
typedef void (*c3_transpose_fn)(const void *src, c3_idx src_stride, void *dst, c3_idx dst_stride,
                                c3_idx n_i, c3_idx n_j);

/* A Winograd tile: per axis (z, y, x) the outputs m and the transformed points a (see
 * winograd_tmpl.h; the shapes compiled are C3_WINOGRAD_INPUT_TILES / _OUTPUT_TILES), and the
 * padding the input transform reads outside the input: its mode (C3_PAD_*; padding.h) and,
 * for modes other than zeros, its extent before (lo) and after (hi) the input per axis. */
typedef struct {
    int m[3], a[3];
    int mode;
    c3_idx lo[3], hi[3];
} c3_wino_tile;
/* The input transform of one tile for nc <= one vector of channels: see winograd_tmpl.h.
 * Returns 0, or -1 (writing nothing) for a tile shape that was not compiled. */
typedef int (*c3_wino_in_fn)(const c3_wino_tile *tile, const void *x, c3_idx cstride, int nc,
                             c3_idx D, c3_idx H, c3_idx W, c3_idx z0, c3_idx y0, c3_idx x0,
                             void *v, c3_idx v_stride);
/* The output transform: stores ez x ey x ex outputs (edge tiles are cut); returns 1 when the
 * tile holds a NaN or an infinity, else 0, or -1 (writing nothing) for a shape not compiled. */
typedef int (*c3_wino_out_fn)(const c3_wino_tile *tile, const void *m_in, c3_idx m_stride,
                              int nc, const void *bias, void *out, c3_idx ostride, c3_idx oH,
                              c3_idx oW, int ez, int ey, int ex);

/* The weight transform of one block of ocb output channels (a multiple of the double vector):
 * u[xi * u_stride + c * ocb + k] = (G g_{k,c} G^T)[xi] for the tile's A points xi, c < cpg,
 * k < ocb, where g_{k,c} is the kernel of output channel k, input channel c, at
 * w + k * wstride + c * kD * kH * kW for k < nvalid and zero beyond; computed in double and
 * rounded once (see winograd_tmpl.h). ``scratch``: (kD kH kW + aD kH kW
 * + C3_WINOGRAD_WEIGHT_CHANNELS aD aH kW) ocb doubles, aligned for the double vector. Returns 0, or -1
 * for a tile not compiled. */
typedef int (*c3_wino_weights_fn)(const c3_wino_tile *tile, const void *w, c3_idx wstride,
                                  int nvalid, c3_idx cpg, void *u, c3_idx u_stride, int ocb,
                                  void *scratch);

/* The peak probe: acc[c * V + l] = acc[c * V + l] * ab[0] + ab[1], iters times over
 * C3_FMA_CHAINS independent chains of one vector each (2 V C3_FMA_CHAINS iters FLOPs), with
 * the ISA's fused multiply-add: what one core's vector FMA units sustain, for %peak. */
typedef void (*c3_fma_chains_fn)(c3_idx iters, const void *ab, void *acc);

/* Every micro-kernel, X(name, signature). Adding one: an entry here, its template KN(name)
 * (direct_tmpl.h, winograd_tmpl.h or fma_tmpl.h), its declaration in isa.pxd, a contract test. */
#define C3_MICROKERNELS(X)                                                                    \
    X(tile_wide, c3_tile_fn)                                                                  \
    X(tile_narrow, c3_tile_fn)                                                                \
    X(store_tile, c3_store_fn)                                                                \
    X(row, c3_row_fn)                                                                         \
    X(transpose_block, c3_transpose_fn)                                                       \
    X(wino_input, c3_wino_in_fn)                                                              \
    X(wino_output, c3_wino_out_fn)                                                            \
    X(wino_weights, c3_wino_weights_fn)                                                       \
    X(fma_chains, c3_fma_chains_fn)

typedef struct c3_kernels_s {
    int isa; /* its index in C3_ISAS */
    /* Output-channel block widths per dtype (the wide tile's and the narrow tile's, which is
     * one vector), and the most positions one wide / narrow tile call handles. */
    int ocb_wide[2], ocb_narrow[2];
    int nx_wide, nx_narrow;
#define C3_KERNEL_FIELD(name, type) type name[2];
    C3_MICROKERNELS(C3_KERNEL_FIELD)
#undef C3_KERNEL_FIELD
    /* The table for layers with fewer channels per group than this one's narrow block, or
     * NULL (this one): 512-bit vectors hand them to 256-bit ones, whose lanes they fill. */
    const struct c3_kernels_s *narrow;
} c3_kernels;

/* The instruction sets, worst first: the tables' order (C3_ISA_<name>) and their names for
 * users (CONV3D_CPU_ISA, show_config). Adding one: an entry here, a section in kernels.c and
 * its case in c3_cpu_supports. */
#define C3_ISAS(X) X(baseline) X(avx2) X(avx512) X(avx512_zmm)

#define C3_ISA_ENUM(name) C3_ISA_##name,
enum { C3_ISAS(C3_ISA_ENUM) C3_ISA_COUNT };
#undef C3_ISA_ENUM

/* The name of ISA isa (0 <= isa < C3_ISA_COUNT). */
const char *c3_isa_name(int isa);
/* The kernel table for an ISA, or NULL when it was not compiled in. */
const c3_kernels *c3_kernels_for(int isa);
/* 1 when this CPU can run the ISA's kernels. */
int c3_cpu_supports(int isa);
/* 1 when the ISA is worth choosing by default on this CPU, where it runs. */
int c3_cpu_prefers(int isa);

#endif
