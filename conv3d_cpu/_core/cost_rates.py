"""The cost model's sustained rates per kernel table and dtype (algorithms.estimate_seconds).

Written by ``python bench/calibrate.py --write`` from one-thread timings of 3x3x3 layers;
rerun it to calibrate for another CPU (docs/performance.md, "the cost model").
"""
# The machine the rates below were measured on.
CALIBRATED_ON = "AMD EPYC (family 26 model 2), 2026-12-02"

# (kernel table, dtype) -> direct FLOP/s, the Winograd GEMM's FLOP/s, and seconds per (tile,
# input channel) of the input transform and per (tile, output channel) of the output transform
# for the F(2, 3) and F(4, 3) tile shapes (keys 2 and 4).
RATES = {
    ("avx2", "float32"): dict(
        direct=6.77e+10, gemm=6.41e+10,
        transform_in={2: 3.48e-08, 4: 1.21e-07}, transform_out={2: 1.61e-08, 4: 7.14e-08}),
    ("avx2", "float64"): dict(
        direct=3.79e+10, gemm=2.79e+10,
        transform_in={2: 3.91e-08, 4: 1.73e-07}, transform_out={2: 2.45e-08, 4: 1.39e-07}),
    ("avx512", "float32"): dict(
        direct=7.73e+10, gemm=7.83e+10,
        transform_in={2: 2.9e-08, 4: 1.39e-07}, transform_out={2: 1.13e-08, 4: 4.71e-08}),
    ("avx512", "float64"): dict(
        direct=4.67e+10, gemm=3.75e+10,
        transform_in={2: 4.1e-08, 4: 1.81e-07}, transform_out={2: 1.81e-08, 4: 7.91e-08}),
    ("avx512_zmm", "float32"): dict(
        direct=1.43e+11, gemm=1.81e+11,
        transform_in={2: 3.94e-08, 4: 1.52e-07}, transform_out={2: 1.18e-08, 4: 7.04e-08}),
    ("avx512_zmm", "float64"): dict(
        direct=9.21e+10, gemm=8.22e+10,
        transform_in={2: 4.71e-08, 4: 1.22e-07}, transform_out={2: 1.08e-08, 4: 4.33e-08}),
    ("baseline", "float32"): dict(
        direct=3.56e+10, gemm=2.75e+10,
        transform_in={2: 3.95e-08, 4: 1.19e-07}, transform_out={2: 2.37e-08, 4: 1.51e-07}),
    ("baseline", "float64"): dict(
        direct=1.66e+10, gemm=1.28e+10,
        transform_in={2: 1.03e-07, 4: 2.74e-07}, transform_out={2: 0, 4: 2.72e-07}),
}
