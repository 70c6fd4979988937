"""Which algorithm computes a layer: the names, Winograd's eligibility and the cost model.

Algorithms: 'direct' (any layer) and Winograd for the kernel shapes of
``constants.WINOGRAD_SHAPES`` (3x3x3, (1,3,3), (3,1,1), 5x5x5, 2x2x2) with stride 1 and
dilation 1: F(m, 3) along each axis where the kernel is 3, F(2, 5) where it is 5, F(3, 2) or
F(5, 2) where it is 2 (identity where it is 1); 'winograd_f2' (m = 2), 'winograd_f4' (m = 4;
kernels of 3 only), 'winograd' (the tile size the cost model prefers; the only name for
2x2x2). 'auto' picks by the cost model below, among direct and every tile under
float32 precision 'high' (the default), among direct and ``ACCURATE_TILES`` (F(2^3, 3^3)) under
'highest' (precision.py); forward.py makes sure that it never lets Winograd change where
NaN/Inf appear.

Cost model (``estimate_seconds``): time = FLOPs / sustained rate per stage, with rates
measured per kernel table (ISA) and dtype by bench/calibrate.py on one thread and stored in
cost_rates.py with the CPU they came from. Direct: 2 N O P (C/g) kD kH kW FLOPs, P counting
the positions its kernel computes (rows shorter than two tiles are computed at the padded
width: a 256 -> 256 5x5x5 layer at 4^3 computes 8 positions per row of 4), plus reading and
repacking the weights on every call (which the deep layers of a network, few positions and
many channels, spend much of their time on). Winograd: the
element-wise GEMM does 2 N T A (C/g) (O/g) g FLOPs for T tiles of A transformed positions (A =
(m+2)^3 for 3x3x3 kernels, (m+2)^2 for (1,3,3), m+2 for (3,1,1), 6^3 for 5x5x5); the
transforms cost per tile and channel, in proportion to A (1-D tiles, (3,1,1), have rates of
their own: 3-D ones scaled by the points underprice them); the transformed weights (A (C/g)
(O/g) g values) are read from memory once per call. A layer is priced with the rates of the
tables that would run it (kernels.h: a 512-bit table hands groups narrower than its vector to
the 256-bit one, at about half the rate), so a grouped layer is not priced as a dense one.
Ratios, not absolute rates, decide.

Pure Python: nothing here needs the compiled extension.
"""
import functools
import math

from conv3d_cpu._core import cost_rates
from conv3d_cpu._native.constants import WINOGRAD_SHAPES, winograd_points, winograd_tile

ALGORITHMS = ("auto", "direct", "winograd", "winograd_f2", "winograd_f4")
# The tile size an explicit Winograd algorithm asks for.
FORCED_TILE = {"winograd_f2": 2, "winograd_f4": 4}

# F(3, 2) and F(5, 2) transform as many points (4 and 6 per axis) as F(2, 3) and F(4, 3), with
# the same B^T and an A^T of one more row: they are priced as those.
_SAME_POINTS = {3: 2, 5: 4}
# The transformed weights U (A x C/g x O/g x g elements) are read from memory once per call at
# least: on few tiles with many channels (a network's bottleneck) that read, not the GEMM,
# takes the time, and a large U is also written once, on first use (docs/performance.md, "cost
# model"). Bytes per second, one thread: the rate that orders direct, F(2^3) and F(4^3) as
# measured on the networks' layers (512 -> 512 channels on 2x7x7 direct, 256 -> 256 on 4x14x14
# F(2^3), 128 -> 128 on 8x28x28 F(4^3)).
_U_BANDWIDTH = 8e9
# Transforming weights (for weights new to a call): bytes of U written per second, one
# thread, with fresh U (docs/performance.md, "2026-12-01: Winograd weight transforms in C").
_U_WRITE = 3.5e9
# The Winograd tiles whose float32 results stay within PyTorch's float32 tolerance
# (torch.testing.assert_close: |err| <= 1e-5 + 1.3e-6 |y|) of a float64 reference: the only
# ones 'auto' considers under float32 precision 'highest' (precision.py). bench/precision.py
# (30 layers, 1..512 channels, 4^3..32^3, PyTorch's default init, N(0, 1) inputs, 3 draws
# each), the worst |err| / tolerance over the set (below 1 passes):
#   F(2^3, 3^3): 0.26 (3x3x3), 0.25 (1x3x3), 0.25 (3x1x1): passes everywhere, kept;
#   F(4^3, 3^3): 26 (3x3x3), 5.8 (1x3x3), 1.06 (3x1x1, 512 channels; passes to 128): out;
#   F(2^3, 5^3): 10, failing on every layer, from 1 channel: out (5x5x5 runs direct);
#   F(3^3, 2^3): 0.32 (2x2x2; direct 0.25): kept; F(5^3, 2^3): 29, failing from 1 channel: out;
#   direct: 0.22 (3x3x3), 0.18 (1x3x3), 0.19 (3x1x1), 0.13 (5x5x5): its products are summed in
#   runs of constants.SUM_TERMS (PyTorch's own worst: 0.13, 0.15, 0.09, 0.33).
ACCURATE_TILES = {(3, 3, 3): (2,), (1, 3, 3): (2,), (3, 1, 1): (2,), (5, 5, 5): (),
                  (2, 2, 2): (3,)}
# Under 'high', 'auto' takes the tiles of six points (F(4, 3), F(5, 2)) only up to a fan-in
# (input channels per group x kernel volume): their float32 error grows with it, and past it
# leaves the 1e-4 x max|y| that 'high' promises (bench/precision.py, 3x3x3 F(4^3, 3^3): 5.1e-5
# of max|y| at 256 channels, 9.9e-5 and 1.2e-4 at 512; 2x2x2 F(5^3, 2^3): 6.3e-5 at 128,
# 1.1e-4 at 256).
F4_MAX_FAN_IN = 256 * 27
MAX_FAN_IN = {4: F4_MAX_FAN_IN, 5: 128 * 8}
# Below this many multiply-adds (about 10 microseconds of one core) the default thread count
# is 1: waking an OpenMP team costs more than the work it would share.
TINY_MACS = 1_000_000


def winograd_ineligible(kernel_size, stride, dilation):
    """Why Winograd cannot compute this layer, or None when it can."""
    reasons = []
    if tuple(kernel_size) not in WINOGRAD_SHAPES:
        shapes = list(map(str, WINOGRAD_SHAPES))
        reasons.append(f"kernel_size {tuple(kernel_size)} (needs "
                       f"{', '.join(shapes[:-1])} or {shapes[-1]})")
    if tuple(stride) != (1, 1, 1):
        reasons.append(f"stride {tuple(stride)} (needs (1, 1, 1))")
    # Dilation along an axis where the kernel is 1 changes nothing.
    if any(d != 1 and k != 1 for d, k in zip(dilation, kernel_size)):
        reasons.append(f"dilation {tuple(dilation)} (needs 1 where the kernel is larger than 1)")
    return ", ".join(reasons) or None


# The table and dtype the cost model prices when a caller names none.
DEFAULT_RATES = ("avx512", "float32")


def direct_flops(n, in_channels, out_channels, groups, out_spatial, kernel_size,
                 row_width=None):
    """The FLOPs the direct kernel does: 2 per multiply-add of every position it computes,
    ``row_width`` of them per output row where its tiles run across padded rows (None: the
    output row's own width)."""
    rows = n * math.prod(out_spatial[:2])
    width = out_spatial[2] if row_width is None else row_width
    return (2.0 * rows * width * out_channels * (in_channels // groups)
            * math.prod(kernel_size))


def direct_weight_seconds(in_channels, out_channels, groups, kernel_size, itemsize):
    """The direct engine's per-call weight repacking: the weights read and their packed copy
    written, at _U_BANDWIDTH."""
    return (2.0 * itemsize * out_channels * (in_channels // groups) * math.prod(kernel_size)
            / _U_BANDWIDTH)


def flat_row_width(out_spatial, kernel_size, stride, dilation, tile_positions):
    """The positions per output row the direct kernel computes, when its tiles run across
    an item's rows (direct.pyx: stride 1 along H and W and rows shorter than two tiles of
    ``tile_positions``: each row is computed at the padded input's width); else None."""
    if stride[1] != 1 or stride[2] != 1 or out_spatial[2] >= 2 * tile_positions:
        return None
    return out_spatial[2] + (kernel_size[2] - 1) * dilation[2]


def winograd_work(m, n, out_spatial, kernel_size):
    """(tiles, transformed points per tile) of F(m) on ``n`` samples of ``out_spatial``."""
    ms = winograd_tile(m, kernel_size)
    tiles = n * math.prod(-(-s // md) for s, md in zip(out_spatial, ms))
    return tiles, math.prod(winograd_points(ms, kernel_size))


def estimate_seconds(m, n, in_channels, out_channels, groups, out_spatial, kernel_size,
                     transform=False, rates=DEFAULT_RATES, row_width=None):
    """Cost-model time of one call: direct when m is None, else Winograd F(m, r) along the
    kernel's axes of size r > 1, with the weights' transform when ``transform``; priced with
    ``cost_rates.RATES[rates]`` ((kernel table, dtype name)). ``row_width``: direct's
    positions per output row (flat_row_width)."""
    r = cost_rates.RATES[rates]
    cpg, opg = in_channels // groups, out_channels // groups
    itemsize = 8.0 if rates[1] == "float64" else 4.0
    if m is None:
        return (direct_flops(n, in_channels, out_channels, groups, out_spatial, kernel_size,
                             row_width) / r["direct"]
                + direct_weight_seconds(in_channels, out_channels, groups, kernel_size,
                                        itemsize))
    tiles, positions = winograd_work(m, n, out_spatial, kernel_size)
    gemm = 2.0 * tiles * positions * cpg * opg * groups / r["gemm"]
    m = _SAME_POINTS.get(m, m)
    u_read = itemsize * positions * cpg * opg * groups / _U_BANDWIDTH
    if transform:
        u_read += itemsize * positions * cpg * opg * groups / _U_WRITE
    if sum(k > 1 for k in kernel_size) == 1:  # (3, 1, 1): 1-D tiles, their own rates
        t_in, t_out = r["transform_in_1d"][m], r["transform_out_1d"][m]
    else:  # 3-D tiles' rates, scaled for 2-D tiles by their share of the positions
        share = positions / (m + 2) ** 3
        t_in, t_out = share * r["transform_in"][m], share * r["transform_out"][m]
    return gemm + u_read + tiles * (in_channels * t_in + out_channels * t_out)


@functools.lru_cache(maxsize=256)
def choose(algorithm, x_shape, weight_shape, stride, dilation, groups, out_spatial,
           precision="high", transform=False, kernels=("avx512", "avx512"), dtype="float32",
           tile_positions=12):
    """The per-axis Winograd tile (mz, my, mx) to run with, or None for direct.

    ``algorithm`` is one the layer can use (validation.algorithm_fits). ``precision``
    (precision.PRECISIONS; forward.py passes the float32 precision in effect for float32 and
    'high' for float64) restricts what 'auto' considers: under 'highest' the tiles of
    ``ACCURATE_TILES`` only; explicit algorithms are taken as asked. Cached (the precision is
    part of the key): a network calls each layer with the same shapes. ``transform``: the
    weights are new to this call (an input gradient's), so Winograd's cost includes
    transforming them. ``kernels``: the kernel tables (ISA names) that would run the direct
    and the Winograd engine (isa.layer_isa), whose rates ``dtype`` prices them with;
    ``tile_positions``: the most positions of the direct engine's tile kernel
    (isa.direct_tile_positions)."""
    if algorithm == "direct":
        return None
    kernel = tuple(weight_shape[2:])
    if algorithm in FORCED_TILE:
        return winograd_tile(FORCED_TILE[algorithm], kernel)
    if winograd_ineligible(kernel, stride, dilation):
        return None  # (algorithm 'auto')
    # Costed for one sample: the choice must not depend on the batch size, so that a batch's
    # results are bitwise those of its samples (m(x)[1:] == m(x[1:]), as in PyTorch), while
    # reading U is a per-call cost.
    cin, cout = x_shape[1], weight_shape[0]
    tiles = WINOGRAD_SHAPES[kernel]
    if algorithm == "auto" and precision == "highest":
        tiles = ACCURATE_TILES[kernel]
    elif algorithm == "auto":
        fan_in = x_shape[1] // groups * math.prod(kernel)
        tiles = tuple(m for m in tiles if fan_in <= MAX_FAN_IN.get(m, fan_in))
    row_width = flat_row_width(out_spatial, kernel, stride, dilation, tile_positions)
    costs = {m: estimate_seconds(m, 1, cin, cout, groups, out_spatial, kernel, transform,
                                 (kernels[m is not None], dtype), row_width)
             for m in (None,) + tiles}
    if algorithm == "winograd":
        costs.pop(None)
    m = min(costs, key=costs.get)
    return None if m is None else winograd_tile(m, kernel)


def threads_for(num_threads, macs):
    """The thread count to run with: ``num_threads``, or for the default (0) one thread when
    the call has fewer than TINY_MACS multiply-adds, else 0 (the OpenMP default)."""
    if num_threads == 0 and macs < TINY_MACS:
        return 1
    return num_threads
