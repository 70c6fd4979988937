"""``conv3d_cpu.dask``: ``conv3d`` on Dask arrays larger than memory, chunk by chunk, with halos.

``import conv3d_cpu`` never imports dask; this module does (``pip install
"conv3d_cpu[dask]"``: dask[array], distributed, zarr). It builds a dask graph and computes
nothing itself: dask (the threaded scheduler, or a ``dask.distributed`` cluster) schedules the
blocks and moves the data, each block is one call of this package's kernels.

The result is bitwise the one ``conv3d_cpu.Conv3d(..., padding_mode=...)`` gives on the whole
array computed in memory (see :func:`conv3d` for the one exception, non-finite inputs under
``algorithm='auto'``). How (docs/design.md, "Volumes larger than memory"):

- the algorithm is chosen once, on the whole array's shape, as the in-memory call would
  choose it (``'auto'``: the cost model, under the float32 precision in effect when the graph
  is built), and every block runs that one algorithm;
- output chunks are designed first, from ``x``'s chunks: their starts are multiples of the
  Winograd tile (so the tiles of every block are the whole array's tiles), and, for the direct
  engine's row kernel (fewer output channels per group than a vector holds), of its step
  along W; chunks too small for the halo or the alignment are merged with a neighbour;
- each output chunk reads one input window: ``x`` is rechunked so that its chunks are the
  windows' cores, and dask's ``overlap`` (``boundary='none'``) adds the interior halos from
  the neighbouring chunks; the global faces are padded inside the block function, by the
  kernels' own padding modes (PyTorch's reflect, replicate; zeros stay implicit), so a face
  block is the whole array's call restricted to it; circular padding reads the opposite face,
  so its wrap-around slabs are concatenated to the array (dask slicing) before blocking;
- the weight and bias enter the graph once each (``dask.delayed``), not inside every task.
"""
from __future__ import annotations

import math

try:
    import dask
    import dask.array as da
    from dask.array.overlap import overlap as _overlap
except ImportError as e:
    raise ImportError("conv3d_cpu.dask needs dask[array] (pip install 'conv3d_cpu[dask]', "
                      f"which also brings distributed and zarr): {e}") from None

import numpy as np

from conv3d_cpu._core import algorithms as _algorithms
from conv3d_cpu._core import validation as _v
from conv3d_cpu._core.forward import choose_tile as _choose_tile
from conv3d_cpu._core.forward import convolve as _convolve
from conv3d_cpu._core.forward import result_shape as _result_shape
from conv3d_cpu._native.constants import MAX_FLOAT_LANES, PADDING_MODES, ROW_UNROLL
from conv3d_cpu.functional import layer_args as _layer_args

__all__ = ["conv3d", "plan"]

# The direct engine's row kernel (layers with fewer output channels per group than a vector
# holds) computes an output row ROW_UNROLL vectors at a time and sums a short last group in
# several chains: where a row's groups start decides the rounding of their outputs. Output
# chunks along W that start at multiples of the widest group (any ISA, either dtype) and,
# but for the last, are whole multiples of it, see the whole row's groups.
ROW_STEP = ROW_UNROLL * MAX_FLOAT_LANES
_AXES = ("depth", "height", "width")


def _is_dask_array(x):
    return isinstance(x, da.Array)


def _tile_names(kernel):
    """{per-axis tile: the explicit algorithm name that forces it} for ``kernel``."""
    names = {}
    for name, m in _algorithms.FORCED_TILE.items():
        if m in _algorithms.WINOGRAD_SHAPES.get(tuple(kernel), ()):
            names[_algorithms.winograd_tile(m, kernel)] = name
    return names


class _Axis:
    """The blocking of one spatial axis: output chunks, the input cores that become ``x``'s
    chunks, the halo dask adds after each core, and per block the padding (front, back) the
    kernel applies and how much of the received data the block's window uses."""

    def __init__(self, out_chunks, cores, before, after, pads, lengths):
        self.out_chunks, self.cores = tuple(out_chunks), tuple(cores)
        self.before, self.after = before, after
        self.pads, self.lengths = tuple(pads), tuple(lengths)


def _plan_axis(chunks, n, pads, ext, s, unit, mode, axis):
    """Block one spatial axis of size ``n`` (chunks ``chunks``) for a convolution of dilated
    extent ``ext``, stride ``s`` and padding ``pads`` = (lo, hi) in ``mode``, output chunk
    starts multiples of ``unit``.

    Output chunk [a, b) reads the (padded) input window [a s - lo, (b - 1) s - lo + ext); its
    core is [a s, b s) (the first from 0, the last to the end), so dask adds ``lo`` elements
    before it and ``ext - s - lo`` after it (when positive) from the neighbours, and a block at
    a face pads itself. Output cuts are put at the input cuts (in output positions, rounded
    to ``unit``): for stride 1 and 'same' the output chunks are the input's. Circular padding
    is concatenated to the array first (by the caller): then the axis is planned on the padded
    size with no padding.
    """
    lo, hi = pads
    o = (n + lo + hi - ext) // s + 1
    cuts, p = set(), 0
    for c in chunks[:-1]:
        p += c
        q = (p + s * unit // 2) // (s * unit) * unit  # nearest multiple of unit to p / s
        if 0 < q < o:
            cuts.add(q)
    if mode == "circular" and (lo or hi):
        n, lo, hi = n + lo + hi, 0, 0  # the wrap-around slabs are data now
    after = ext - s - lo
    halo = max(lo, after, 0)
    face_lo = {"reflect": lo + 1, "replicate": 1 if lo else 0}.get(mode, 0)
    face_hi = {"reflect": hi + 1, "replicate": 1 if hi else 0}.get(mode, 0)
    bounds = [0] + sorted(cuts) + [o]

    def core(j):
        start = 0 if j == 0 else min(n, bounds[j] * s)
        end = n if j == len(bounds) - 2 else min(n, bounds[j + 1] * s)
        return start, end

    def need(j):
        last = j == len(bounds) - 2
        return max(halo, 1, face_lo if j == 0 else 0, face_hi if last else 0)

    # Merge chunks whose core cannot give its neighbours their halo (dask's overlap takes a
    # halo from the next chunk only) or hold the data a face's padding reads.
    j = 0
    while j < len(bounds) - 2:
        start, end = core(j)
        if end - start < need(j):
            del bounds[j + 1]
        else:
            j += 1
    while len(bounds) > 2:
        start, end = core(len(bounds) - 2)
        if end - start >= need(len(bounds) - 2):
            break
        del bounds[-2]
    nb = len(bounds) - 1
    cores, out_chunks, block_pads, lengths = [], [], [], []
    for j in range(nb):
        a, b = bounds[j], bounds[j + 1]
        start, end = core(j)
        cores.append(end - start)
        out_chunks.append(b - a)
        first, last = j == 0, j == nb - 1
        block_pads.append((lo if first else 0, hi if last else 0))
        # The data the block receives starts at its window's start (a face: at 0); it uses
        # it up to the window's end (the last block: to the end, as the whole array's call).
        data_start = 0 if first else a * s - lo
        lengths.append(None if last else (b - 1) * s - lo + ext - data_start)
    for j in range(nb - 1):  # (what the merging above guarantees)
        assert cores[j + 1] >= halo and lengths[j] <= cores[j] + (
            lo if j else 0) + max(after, 0), (axis, bounds)
    return _Axis(out_chunks, cores, lo, max(after, 0), block_pads, lengths)


def _check_chunks(x5):
    if any(math.isnan(c) for cs in x5.chunks for c in cs):
        raise ValueError(
            f"x has unknown chunk sizes (chunks {x5.chunks}): compute them first with "
            f"x.compute_chunk_sizes()")


def plan(x, weight, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
         algorithm="auto"):
    """How :func:`conv3d` blocks this layer, without building its graph.

    Parameters
    ----------
    x, weight, stride, padding, dilation, groups, padding_mode, algorithm : as in conv3d
        Checked as :func:`conv3d` checks them.

    Returns
    -------
    dict
        ``'tile'``: the per-axis Winograd tile every block runs, or None for direct;
        ``'input_chunks'`` and ``'output_chunks'``: 5-D chunk tuples (batch axis first) of
        the input after rechunking to the blocks' cores and of the output;
        ``'halo'``: (before, after) elements dask adds to each core per spatial axis.
    """
    p = _prepare(x, weight, None, stride, padding, dilation, groups, padding_mode, algorithm,
                 None)
    return {"tile": p["tile"], "input_chunks": p["x"].chunks,
            "output_chunks": p["out_chunks"],
            "halo": tuple((a.before, a.after) for a in p["axes"])}


def _prepare(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
             num_threads):
    """Every check of :func:`conv3d` and the blocking, before anything is computed."""
    if not _is_dask_array(x):
        raise TypeError(
            f"x must be a dask array (dask.array.Array), got {type(x).__module__}."
            f"{type(x).__name__}: wrap it with dask.array.from_array(x, chunks=...), or use "
            f"conv3d_cpu.conv3d / conv3d_cpu.Conv3d for an array in memory")
    weight, groups, stride, pads, dilation, _ = _layer_args(
        weight, groups, stride, padding, dilation, algorithm, num_threads)
    threads = 1 if num_threads is None else _v.num_threads_arg(num_threads)
    bias = _v.bias_arg(bias, weight)
    mode = _v.padding_mode_arg(padding_mode)
    if x.dtype not in _v.SUPPORTED_DTYPES and x.dtype.kind == "f" and (
            x.dtype.newbyteorder("=") in _v.SUPPORTED_DTYPES):
        x = x.astype(x.dtype.newbyteorder("="))  # (lossless: the other byte order)
    if x.dtype not in _v.SUPPORTED_DTYPES:
        raise TypeError(f"x must have dtype float32 or float64, got {x.dtype}")
    try:  # (the in-memory API's checks, whose messages call x 'input')
        _v.same_dtype("input", x, weight.dtype)
        x5, unbatched = _v.input_5d(x, weight.shape[1] * groups)
    except (TypeError, ValueError) as e:
        raise type(e)(f"x: {e}") from None
    _check_chunks(x5)
    if len(x5.chunks[1]) > 1:
        axis = 0 if unbatched else 1
        raise ValueError(
            f"x is chunked along its channel axis (axis {axis}, chunks {x5.chunks[1]}): all "
            f"{x5.shape[1]} channels must be in one chunk; rechunk with "
            f"x.rechunk({{{axis}: -1}})")
    if mode != "zeros":
        _v.padding_mode_fits(mode, x5.shape[2:], pads)
    shape = _result_shape(x5, weight, stride, pads, dilation, groups, False)
    # The algorithm of the whole array's call (forward.convolve), chosen once.
    tile = _choose_tile(algorithm, x5.shape, weight.shape, stride, dilation, groups, shape[2:],
                        x5.dtype)
    kernel = weight.shape[2:]
    units = list(tile or (1, 1, 1))
    # A block may run the direct engine: always for tile None, on non-finite results of
    # 'auto' otherwise.
    may_run_direct = tile is None or algorithm == "auto"
    if may_run_direct and weight.shape[0] // groups < MAX_FLOAT_LANES and stride[2] <= 2:
        units[2] = math.lcm(units[2], ROW_STEP)
    axes = []
    for i in range(3):
        ext = dilation[i] * (kernel[i] - 1) + 1
        axes.append(_plan_axis(x5.chunks[2 + i], x5.shape[2 + i], pads[i], ext, stride[i],
                               units[i], mode, i))
    if mode == "circular":
        for i, (lo, hi) in enumerate(pads):
            if lo or hi:
                ax = 2 + i
                n = x5.shape[ax]
                parts = [x5[(slice(None),) * ax + (slice(n - lo, n),)]] if lo else []
                parts.append(x5)
                if hi:
                    parts.append(x5[(slice(None),) * ax + (slice(0, hi),)])
                x5 = da.concatenate(parts, axis=ax)
        block_mode = "zeros"  # (no padding is left for the kernels)
    else:
        block_mode = mode
    x5 = x5.rechunk((x5.chunks[0], x5.shape[1]) + tuple(a.cores for a in axes))
    out_chunks = (x5.chunks[0], (weight.shape[0],)) + tuple(a.out_chunks for a in axes)
    return dict(x=x5, unbatched=unbatched, weight=weight, bias=bias, groups=groups,
                stride=stride, dilation=dilation, tile=tile, algorithm=algorithm,
                threads=threads, mode=block_mode, axes=axes, out_chunks=out_chunks,
                shape=shape)


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", algorithm="auto", num_threads=None):
    """3D convolution of a dask array, block by block: ``conv3d_cpu.Conv3d`` on arrays larger
    than memory.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C, D, H, W) or (C, D, H, W)
        float32 or float64, chunked along N and any spatial axes, with all C channels in one
        chunk (a ValueError otherwise: rechunk with ``x.rechunk({1: -1})``, or ``{0: -1}``
        unbatched). Chunks smaller than the convolution's halo (or than the alignment below)
        are merged with a neighbour, never an error.
    weight : array_like, shape (O, C // groups, kD, kH, kW)
        In memory, of ``x``'s dtype; enters the graph once (a ``dask.delayed`` key that
        every block reads), as does ``bias``.
    bias : array_like, shape (O,), optional
    stride, padding, dilation, groups : int, tuple of 3 ints, or str (padding)
        As in ``conv3d_cpu.conv3d`` ('same' and 'valid' included).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, keyword-only
        As in ``conv3d_cpu.Conv3d`` (PyTorch's semantics: reflect does not repeat the edge
        sample, unlike dask's ``boundary='reflect'``), on the whole array's faces.
    algorithm : {'auto', 'direct', 'winograd', 'winograd_f2', 'winograd_f4'}, keyword-only
        Chosen once for the whole array, as ``conv3d_cpu.conv3d`` would choose it on it
        ('auto' under the float32 precision in effect now, when the graph is built); every
        block runs that algorithm.
    num_threads : int, optional, keyword-only
        OpenMP threads per block; None (the default) is 1: dask runs blocks in parallel (its
        threads, or distributed workers, which start with ``OMP_NUM_THREADS=1``).

    Returns
    -------
    dask.array.Array, shape (N, O, oD, oH, oW) or (O, oD, oH, oW)
        Of ``x``'s dtype, one chunk along O. Bitwise equal to
        ``conv3d_cpu.Conv3d(C, O, kernel_size, stride, padding, dilation, groups,
        padding_mode=padding_mode, algorithm=algorithm)`` with these parameters on
        ``x.compute()``, for any chunking, when the output is finite. Under
        ``algorithm='auto'``, where Winograd was chosen and a block's result holds a NaN or
        an infinity, that block is recomputed by direct convolution, as the in-memory call
        recomputes the whole array: the NaN/Inf positions are direct convolution's
        (PyTorch's), but the other blocks keep Winograd's values where the in-memory call
        would give direct's.

    Raises
    ------
    TypeError, ValueError
        When the graph is built, for every argument error of ``conv3d_cpu.conv3d`` and
        ``Conv3d``, for an ``x`` that is not a dask array (TypeError), is chunked along the
        channels or has unknown chunk sizes (ValueError).

    Notes
    -----
    Output chunks follow ``x``'s (for stride 1 and ``padding='same'``, the same chunks),
    their starts rounded to the Winograd tile size and, for layers with fewer than 16 output
    channels per group run directly, to 64 along W. Each block receives its window of ``x``
    (dask's ``overlap`` exchanges the halos between neighbouring chunks) and pads the array's
    faces itself.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> import conv3d_cpu.dask
    >>> x = da.zeros((1, 2, 40, 40, 40), np.float32, chunks=(1, 2, 20, 20, 40))
    >>> w = np.ones((4, 2, 3, 3, 3), np.float32)
    >>> conv3d_cpu.dask.conv3d(x, w, padding="same", padding_mode="reflect").shape
    (1, 4, 40, 40, 40)
    """
    p = _prepare(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                 num_threads)
    x5, axes = p["x"], p["axes"]
    depth = {2 + i: (a.before, a.after) for i, a in enumerate(axes)}
    if any(b or f for b, f in depth.values()):
        # Asymmetric halos from the neighbours only; the faces are padded in the blocks.
        x5 = _overlap(x5, depth={0: 0, 1: 0, **depth}, boundary="none", allow_rechunk=False)
    weight_d = dask.delayed(p["weight"], pure=True)
    bias_d = None if p["bias"] is None else dask.delayed(p["bias"], pure=True)
    kernel = p["weight"].shape[2:]
    y = da.map_blocks(
        _block, x5, weight_d, bias_d, chunks=p["out_chunks"],
        meta=np.empty((0,) * 5, x5.dtype), token="conv3d_cpu-conv3d",
        pads=tuple(a.pads for a in axes), lengths=tuple(a.lengths for a in axes),
        stride=p["stride"], dilation=p["dilation"], groups=p["groups"], tile=p["tile"],
        tile_name=_tile_names(kernel).get(p["tile"]), auto=p["algorithm"] == "auto",
        num_threads=p["threads"], mode=p["mode"])
    return y[0] if p["unbatched"] else y


def _block(xb, weight, bias, *, pads, lengths, stride, dilation, groups, tile, tile_name, auto,
           num_threads, mode, block_id=None):
    """One output block: the whole array's call restricted to it (see :func:`conv3d`)."""
    idx = block_id[2:]
    block_pads = tuple(pads[i][j] for i, j in enumerate(idx))
    crop = tuple(slice(None, lengths[i][j]) for i, j in enumerate(idx))
    # (a worker may hold the block and the weights in a frame at any byte offset)
    xb, weight = _v.aligned(xb[(slice(None), slice(None)) + crop]), _v.aligned(weight)
    bias = None if bias is None else _v.aligned(bias)
    args = (stride, block_pads, dilation, groups)
    if tile is None:
        return _convolve(xb, weight, bias, *args, "direct", num_threads, padding_mode=mode)
    if tile_name is not None:
        out = _convolve(xb, weight, bias, *args, tile_name, num_threads, padding_mode=mode)
        # (min and max propagate NaN, and see an infinity: no temporary of the block's size)
        finite = not auto or bool(np.isfinite(out.min()) and np.isfinite(out.max()))
    else:
        out, finite = _winograd(xb, weight, bias, *args, tile, num_threads, mode)
    if auto and not finite:  # forward.convolve's fallback for 'auto'
        return _convolve(xb, weight, bias, *args, "direct", num_threads, padding_mode=mode)
    return out


def _winograd(x, weight, bias, stride, pads, dilation, groups, tile, num_threads, mode):
    """forward.convolve's Winograd step for a tile no algorithm name forces (2x2x2 kernels'
    F(3, 2) and F(5, 2), which only 'winograd' / 'auto' choose, by shape): (out, finite)."""
    from conv3d_cpu._core.weight_cache import functional_cache
    from conv3d_cpu._native import layout, winograd

    shape = _result_shape(x, weight, stride, pads, dilation, groups, False)
    out = np.empty(shape, x.dtype)
    threads = _algorithms.threads_for(num_threads, out.size * math.prod(weight.shape[1:]))
    x = layout.contiguous(x, threads)
    weight = np.ascontiguousarray(weight)
    bias = np.zeros(weight.shape[0], x.dtype) if bias is None else np.ascontiguousarray(bias)
    transformed = functional_cache.get(weight, groups, tile, threads)
    finite = winograd.winograd(x, transformed, bias, out, tuple(lo for lo, _ in pads), tile,
                               weight.shape[2:], groups, threads, PADDING_MODES.index(mode))
    return out, bool(finite)
