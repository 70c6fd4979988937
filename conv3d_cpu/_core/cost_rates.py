"""The cost model's sustained rates per kernel table and dtype (algorithms.estimate_seconds).

Written by ``python bench/calibrate.py --write`` from one-thread timings of 3x3x3 layers;
rerun it to calibrate for another CPU (docs/performance.md, "the cost model").
"""
# (kernel table, dtype) -> the machine its rates below were measured on: a table is measured
# on the CPUs that run it (avx2 on an AVX2-only CPU gives other rates than on an AVX-512 one).
CALIBRATED_ON = {
    ("avx2", "float32"): "AMD EPYC (family 25 model 1), 2026-12-04",
    ("avx2", "float64"): "AMD EPYC (family 25 model 1), 2026-12-04",
    ("avx512", "float32"): "AMD EPYC (family 26 model 2), 2026-12-03",
    ("avx512", "float64"): "AMD EPYC (family 26 model 2), 2026-12-03",
    ("avx512_zmm", "float32"): "AMD EPYC (family 26 model 2), 2026-12-03",
    ("avx512_zmm", "float64"): "AMD EPYC (family 26 model 2), 2026-12-03",
    ("baseline", "float32"): "AMD EPYC (family 25 model 1), 2026-12-04",
    ("baseline", "float64"): "AMD EPYC (family 25 model 1), 2026-12-04",
}

# (kernel table, dtype) -> direct FLOP/s, the Winograd GEMM's FLOP/s, and seconds per (tile,
# input channel) of the input transform and per (tile, output channel) of the output transform
# for the F(2, 3) and F(4, 3) tile shapes (keys 2 and 4): of 3-D tiles (scaled by the points
# for 2-D ones) and, ``_1d``, of the (3, 1, 1) kernels' 1-D tiles.
RATES = {
    ("avx2", "float32"): dict(
        direct=6.72e+10, gemm=8.05e+10,
        transform_in={2: 4.71e-08, 4: 1.58e-07}, transform_out={2: 1.73e-08, 4: 1.02e-07},
        transform_in_1d={2: 8.54e-09, 4: 1.16e-08}, transform_out_1d={2: 6.08e-09, 4: 1.01e-08}),
    ("avx2", "float64"): dict(
        direct=3.7e+10, gemm=2.66e+10,
        transform_in={2: 6.16e-08, 4: 2.26e-07}, transform_out={2: 3.06e-08, 4: 1.56e-07},
        transform_in_1d={2: 1.18e-08, 4: 1.66e-08}, transform_out_1d={2: 6.43e-09, 4: 1.24e-08}),
    ("avx512", "float32"): dict(
        direct=9.64e+10, gemm=1.09e+11,
        transform_in={2: 3.4e-08, 4: 1.21e-07}, transform_out={2: 1.06e-08, 4: 7.18e-08},
        transform_in_1d={2: 5.54e-09, 4: 8.18e-09}, transform_out_1d={2: 7.33e-09, 4: 1.04e-08}),
    ("avx512", "float64"): dict(
        direct=4.61e+10, gemm=3.18e+10,
        transform_in={2: 5.12e-08, 4: 1.55e-07}, transform_out={2: 8.05e-09, 4: 1.62e-07},
        transform_in_1d={2: 8.74e-09, 4: 1.07e-08}, transform_out_1d={2: 4.4e-09, 4: 6.12e-09}),
    ("avx512_zmm", "float32"): dict(
        direct=1.38e+11, gemm=1.41e+11,
        transform_in={2: 4.9e-08, 4: 1.65e-07}, transform_out={2: 1.54e-08, 4: 9.4e-08},
        transform_in_1d={2: 4.21e-09, 4: 5.61e-09}, transform_out_1d={2: 2.71e-09, 4: 4.64e-09}),
    ("avx512_zmm", "float64"): dict(
        direct=9.09e+10, gemm=5.46e+10,
        transform_in={2: 4.27e-08, 4: 8.66e-08}, transform_out={2: 1.17e-08, 4: 7.32e-08},
        transform_in_1d={2: 4.07e-09, 4: 6.22e-09}, transform_out_1d={2: 2.41e-09, 4: 4.58e-09}),
    ("baseline", "float32"): dict(
        direct=2.71e+10, gemm=2.17e+10,
        transform_in={2: 5.2e-08, 4: 2.37e-07}, transform_out={2: 3.24e-08, 4: 1.64e-07},
        transform_in_1d={2: 1.13e-08, 4: 1.54e-08}, transform_out_1d={2: 6.96e-09, 4: 1.06e-08}),
    ("baseline", "float64"): dict(
        direct=1.32e+10, gemm=1.03e+10,
        transform_in={2: 8.79e-08, 4: 3.9e-07}, transform_out={2: 6.78e-08, 4: 3.44e-07},
        transform_in_1d={2: 2.3e-08, 4: 3.08e-08}, transform_out_1d={2: 8.58e-09, 4: 1.48e-08}),
}
