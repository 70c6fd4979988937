"""Constants shared by Python, Cython and C, defined here once.

``constants.h`` is generated from this file (``python conv3d_cpu/_native/constants.py``
rewrites it; ``make constants`` does the same) and committed; a test fails when it is not
current. The C kernels include it, Cython reads it through ``constants.pxd``, and
``conv3d_cpu._native.isa`` refuses to import (ImportError) when the compiled extension was
built from other values than these (``DIGEST``).

This module imports nothing from the compiled extension, so the cost model and the argument
checks that use these values can be imported without it.
"""
import zlib

# Winograd: the kernel shapes (kD, kH, kW) the transforms are compiled for, and the tile sizes
# m each has (F(m, r) along each axis where the kernel is r > 1, the identity where it is 1).
# 2x2x2: the stride phases of kernel 4 stride 2 transposed convolutions (and input
# gradients), on the 4 and 6 points of F(2, 3) and F(4, 3).
WINOGRAD_SHAPES = {
    (3, 3, 3): (2, 4),
    (1, 3, 3): (2, 4),
    (3, 1, 1): (2, 4),
    (5, 5, 5): (2,),
    (2, 2, 2): (3, 5),
}

# The row micro-kernel (layers with fewer output channels per group than a vector holds) steps
# along an output row ROW_UNROLL vectors at a time and reads whole vectors past the row end.
ROW_UNROLL = 4
# Lanes of the widest float vector compiled (512 bits): with ROW_UNROLL, the most elements a
# padded input row may need beyond the padded input.
MAX_FLOAT_LANES = 16
ROW_OVERREAD = ROW_UNROLL * MAX_FLOAT_LANES

# Direct, blocked path: work items per thread aimed at (load balance), and the most bytes of
# gathered input rows a thread keeps (its share of L2).
ITEMS_PER_THREAD = 8
SLAB_BYTES = 1 << 18
# Direct: the most products (input channels x taps) summed in one run; longer sums add runs
# of this length (each from zero) in order, so the float32 error grows with the number of
# runs, not of terms (a single run of 512 x 27 terms exceeded PyTorch's tolerance).
SUM_TERMS = 512
# Direct, 1x1x1 path: most register tiles in one work item.
POINTWISE_TILES = 16

# Winograd: tiles per block, at least a multiple of the wide micro-kernel's 6 or 12 positions
# and a whole narrow call (up to 16); the workspace allowed beyond input + output, in elements.
MIN_TILE_BLOCK = 12
WORKSPACE_SLACK = 1 << 20

# Winograd weight transform: input channels transformed together, so that each transformed
# point's values for them are stored as one contiguous run (U's points are far apart: short
# runs at each point leave many half-written lines that share cache sets).
WINOGRAD_WEIGHT_CHANNELS = 8

# Padding modes, by their codes in C (C3_PAD_ZEROS, ...): the kernels read reflect, replicate
# and circular padding through padding.h's index map, zeros as implicit zeros.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# Work-stealing ranges a kernel keeps on its stack (schedule.h); larger teams share them.
MAX_RANGES = 64
# While a call computes, its calling thread looks for a pending signal (Ctrl-C) this often
# (interrupt.h): the call then stops within about this time plus one work step.
INTERRUPT_POLL_MS = 20
# Independent vector FMA chains of the peak probe (fma_tmpl.h): at least latency x FMA units
# (4 x 2 on Zen 4 and on Intel cores with two 512-bit units), and with its two operands within
# the 16 vector registers of SSE2 and AVX2.
FMA_CHAINS = 12


def winograd_tile(m, kernel):
    """Per-axis outputs of a Winograd tile of size m: m where the kernel is larger than 1, 1
    where it is 1."""
    return tuple(m if k > 1 else 1 for k in kernel)


def winograd_points(tile, kernel):
    """Per-axis transformed points of a tile with per-axis outputs ``tile``: m + k - 1."""
    return tuple(md + k - 1 for md, k in zip(tile, kernel))


# The transforms compiled (derived): input transforms by transformed points per axis, output
# transforms by (outputs, points) per axis.
_TILES = [(winograd_tile(m, k), k) for k, ms in WINOGRAD_SHAPES.items() for m in ms]
WINOGRAD_INPUT_TILES = tuple(sorted({winograd_points(t, k) for t, k in _TILES}))
WINOGRAD_OUTPUT_TILES = tuple(sorted({t + winograd_points(t, k) for t, k in _TILES}))
WINOGRAD_MAX_ALPHA = max(max(a) for a in WINOGRAD_INPUT_TILES)

_INTS = ("ROW_UNROLL", "MAX_FLOAT_LANES", "ROW_OVERREAD", "ITEMS_PER_THREAD", "SLAB_BYTES",
         "POINTWISE_TILES", "MIN_TILE_BLOCK", "WORKSPACE_SLACK", "WINOGRAD_WEIGHT_CHANNELS",
         "MAX_RANGES", "WINOGRAD_MAX_ALPHA", "INTERRUPT_POLL_MS",
         "SUM_TERMS", "FMA_CHAINS")
# A checksum of every value above (zlib: a stale build is to be caught, not an adversary, and
# hashlib's import would cost the package's import more than all the rest of this module).
_VALUES = repr([(name, globals()[name]) for name in _INTS]
               + [sorted(WINOGRAD_SHAPES.items()), WINOGRAD_INPUT_TILES, WINOGRAD_OUTPUT_TILES,
                  PADDING_MODES])
DIGEST = f"{zlib.crc32(_VALUES.encode()):08x}"


def header():
    """The text of constants.h."""
    def xlist(name, what, rows):
        body = " ".join(f"X({', '.join(map(str, r))})" for r in rows)
        return f"/* {what} */\n#define {name}(X) {body}"

    lines = [
        "/* Generated from constants.py (python conv3d_cpu/_native/constants.py): edit that file,",
        " * not this one. Constants shared by Python, Cython and C; see constants.py for what each",
        " * means. */",
        "#ifndef CONV3D_CPU_CONSTANTS_H",
        "#define CONV3D_CPU_CONSTANTS_H",
    ]
    lines += [f"#define C3_{name} {globals()[name]}" for name in _INTS]
    lines.append(f'#define C3_CONSTANTS_DIGEST "{DIGEST}"')
    lines += [f"#define C3_PAD_{mode.upper()} {i}" for i, mode in enumerate(PADDING_MODES)]
    lines.append(xlist("C3_WINOGRAD_INPUT_TILES",
                       "X(AZ, AY, AX): the input transforms compiled (derived from WINOGRAD_SHAPES)",
                       WINOGRAD_INPUT_TILES))
    lines.append(xlist("C3_WINOGRAD_OUTPUT_TILES",
                       "X(MZ, MY, MX, AZ, AY, AX): the output transforms compiled",
                       WINOGRAD_OUTPUT_TILES))
    lines.append("#endif")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "constants.h")
    with open(path, "w") as f:
        f.write(header())
    print(f"wrote {path}")
