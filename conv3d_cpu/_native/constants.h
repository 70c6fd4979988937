/* Generated from constants.py (python conv3d_cpu/_native/constants.py): edit that file,
 * not this one. Constants shared by Python, Cython and C; see constants.py for what each
 * means. */
#ifndef CONV3D_CPU_CONSTANTS_H
#define CONV3D_CPU_CONSTANTS_H
#define C3_ROW_UNROLL 4
#define C3_MAX_FLOAT_LANES 16
#define C3_ROW_OVERREAD 64
#define C3_ITEMS_PER_THREAD 8
#define C3_SLAB_BYTES 262144
#define C3_POINTWISE_TILES 16
#define C3_MIN_TILE_BLOCK 12
#define C3_WORKSPACE_SLACK 1048576
#define C3_WINOGRAD_WEIGHT_CHANNELS 8
#define C3_MAX_RANGES 64
#define C3_WINOGRAD_MAX_ALPHA 6
#define C3_INTERRUPT_POLL_MS 20
#define C3_SUM_TERMS 512
#define C3_FMA_CHAINS 12
#define C3_CONSTANTS_DIGEST "d5781675"
#define C3_PAD_ZEROS 0
#define C3_PAD_REFLECT 1
#define C3_PAD_REPLICATE 2
#define C3_PAD_CIRCULAR 3
/* X(AZ, AY, AX): the input transforms compiled (derived from WINOGRAD_SHAPES) */
#define C3_WINOGRAD_INPUT_TILES(X) X(1, 4, 4) X(1, 6, 6) X(4, 1, 1) X(4, 4, 4) X(6, 1, 1) X(6, 6, 6)
/* X(MZ, MY, MX, AZ, AY, AX): the output transforms compiled */
#define C3_WINOGRAD_OUTPUT_TILES(X) X(1, 2, 2, 1, 4, 4) X(1, 4, 4, 1, 6, 6) X(2, 1, 1, 4, 1, 1) X(2, 2, 2, 4, 4, 4) X(2, 2, 2, 6, 6, 6) X(3, 3, 3, 4, 4, 4) X(4, 1, 1, 6, 1, 1) X(4, 4, 4, 6, 6, 6) X(5, 5, 5, 6, 6, 6)
#endif
