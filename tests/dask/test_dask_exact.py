"""conv3d_cpu.dask.conv3d against conv3d_cpu.Conv3d on the computed array, bit for bit.

Oracle: the module (``Conv3d(..., padding_mode=..., algorithm=...)`` with the same weight and
bias) on ``x.compute()``; equality of the bytes (so -0.0 vs 0.0 and NaN payloads count).
Chunkings are uneven, smaller than the halo, and cut the Winograd tiles and the direct row
kernel's groups where the plan did not align them. Graphs run on dask's synchronous
scheduler (the distributed cluster is in test_dask_cluster.py).
"""
import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="conv3d_cpu[dask] (dask[array]) not installed")

import cloudpickle  # noqa: E402  (a dependency of dask)

import conv3d_cpu  # noqa: E402
import conv3d_cpu.dask as cd  # noqa: E402

MODES = ("zeros", "reflect", "replicate", "circular")


def bits_equal(a, b):
    return (a.shape == b.shape and a.dtype == b.dtype
            and np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                               np.ascontiguousarray(b).view(np.uint8)))


def check(x, chunks, out_channels, kernel_size, *, stride=1, padding=0, dilation=1, groups=1,
          padding_mode="zeros", algorithm="auto", bias=True, seed=0, expect_tile=None):
    """Compare once; return the plan (for assertions on the alignment)."""
    in_channels = x.shape[-4]
    m = conv3d_cpu.Conv3d(in_channels, out_channels, kernel_size, stride=stride,
                          padding=padding, dilation=dilation, groups=groups, bias=bias,
                          padding_mode=padding_mode, dtype=x.dtype, rng=seed,
                          algorithm=algorithm)
    expected = m(x)
    xd = da.from_array(x, chunks=chunks)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode, algorithm=algorithm)
    y = cd.conv3d(xd, m.weight, m.bias, **args)
    assert isinstance(y, da.Array)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    got = y.compute(scheduler="sync")
    assert bits_equal(got, expected), (
        f"max |diff| {np.nanmax(np.abs(got - expected))}, plan {cd.plan(xd, m.weight, **args)}")
    plan = cd.plan(xd, m.weight, **args)
    if expect_tile is not None:
        assert plan["tile"] == expect_tile
    return plan


def volume(shape, dtype=np.float32, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# Uneven chunks on every axis, N chunked, some chunks smaller than the halo.
X = volume((2, 16, 13, 14, 15))
CHUNKS = ((1, 1), 16, (5, 4, 4), (3, 6, 5), (2, 7, 6))


@pytest.mark.parametrize("padding_mode", MODES)
@pytest.mark.parametrize("algorithm,tile", [("direct", None), ("winograd_f2", (2, 2, 2)),
                                            ("winograd_f4", (4, 4, 4)), ("auto", None)])
def test_modes_and_algorithms(padding_mode, algorithm, tile):
    plan = check(X, CHUNKS, 16, 3, padding=1, padding_mode=padding_mode, algorithm=algorithm,
                 expect_tile=tile)
    for m, chunks in zip(plan["tile"] or (1, 1, 1), plan["output_chunks"][2:]):
        assert all(c % m == 0 for c in chunks[:-1]), (m, chunks)  # tiles on the global grid
    assert plan["output_chunks"][0] == (1, 1)


def test_auto_chooses_winograd_as_the_whole_array():
    x = volume((1, 32, 12, 12, 12))
    assert check(x, (1, 32, 6, 5, 7), 32, 3, padding=1)["tile"] == (4, 4, 4)
    with conv3d_cpu.float32_precision("highest"):  # at graph build: what 'auto' may pick
        assert check(x, (1, 32, 6, 5, 7), 32, 3, padding=1)["tile"] == (2, 2, 2)


@pytest.mark.parametrize("padding_mode", MODES)
@pytest.mark.parametrize("case", [
    dict(stride=2, padding=2),
    dict(stride=(3, 1, 2), padding=(1, 0, 2), kernel_size=(3, 2, 3)),
    dict(dilation=2, padding=2),
    dict(dilation=(1, 2, 3), padding="same"),
    dict(kernel_size=4, padding="same"),           # even kernel: extra element at the far side
    dict(kernel_size=(1, 3, 3), padding=(0, 1, 1), algorithm="winograd_f4"),
    dict(kernel_size=(3, 1, 1), padding=(1, 0, 0), algorithm="winograd_f2"),
    dict(kernel_size=5, padding=2, algorithm="winograd_f2"),
    dict(kernel_size=2, padding=1, algorithm="winograd"),   # F(3, 2) / F(5, 2): no name
    dict(groups=4),
    dict(groups=16, out_channels=16, padding=1),    # depthwise: the row kernel
    dict(kernel_size=1, stride=2),
    dict(kernel_size=3, stride=4, padding=1),        # stride above the kernel: gaps
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_geometry(padding_mode, case):
    case = dict(case)
    k = case.pop("kernel_size", 3)
    o = case.pop("out_channels", 8)
    if padding_mode != "zeros" and case.get("padding", 0) in (0, (0, 0, 0), "valid"):
        case["padding"] = 1
    check(X, CHUNKS, o, k, padding_mode=padding_mode, **case)


@pytest.mark.parametrize("padding_mode", MODES)
def test_padding_larger_than_chunks(padding_mode):
    # padding 4 > the first chunks; reflect needs padding < size (9): data from 3 chunks
    x = volume((1, 2, 9, 10, 11))
    check(x, (1, 2, 2, 3, 1), 4, 5, padding=4, padding_mode=padding_mode, dilation=(2, 1, 1)
          if padding_mode == "zeros" else 1)


@pytest.mark.parametrize("padding_mode", MODES)
def test_direct_row_kernel_along_w(padding_mode):
    # Few output channels: the row kernel, whose groups along W fix the rounding; W chunks
    # of 40 are merged to starts at multiples of 64 (ROW_STEP).
    x = volume((1, 2, 5, 6, 150))
    plan = check(x, (1, 2, 3, 3, 40), 3, 3, padding=1, padding_mode=padding_mode,
                 algorithm="direct")
    w_chunks = plan["output_chunks"][4]
    assert len(w_chunks) > 1 and all(c % cd.ROW_STEP == 0 for c in w_chunks[:-1]), w_chunks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", ["direct", "winograd_f4"])
def test_dtypes_unbatched_no_bias(dtype, algorithm):
    x = volume((6, 11, 12, 13), dtype)
    check(x, (6, 4, 5, 6), 5, 3, padding=(1, 2, 0), algorithm=algorithm, bias=False,
          padding_mode="reflect")


def test_big_endian_input():
    x = volume((1, 3, 8, 9, 10))
    m = conv3d_cpu.Conv3d(3, 4, 3, padding=1, rng=0)
    y = cd.conv3d(da.from_array(x.astype(">f4"), chunks=(1, 3, 4, 4, 5)), m.weight, m.bias,
                  padding=1)
    assert y.dtype == np.float32
    assert bits_equal(y.compute(scheduler="sync"), m(x))


def test_one_chunk_and_valid():
    x = volume((1, 4, 9, 9, 9))
    check(x, -1, 4, 3, padding="valid")
    check(x, (1, 4, 1, 1, 1), 4, 3, padding="valid")   # every chunk smaller than the halo


@pytest.mark.parametrize("seed", range(8))
def test_random_layers_and_chunkings(seed):
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(s) for s in rng.integers(5, 14, 3))
    n = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 2]))
    c = groups * int(rng.integers(1, 5))
    o = groups * int(rng.integers(1, 10))
    k = tuple(int(v) for v in rng.choice([1, 2, 3], 3))
    stride = tuple(int(v) for v in rng.choice([1, 1, 2], 3))
    dilation = tuple(int(v) for v in rng.choice([1, 1, 2], 3))
    mode = str(rng.choice(MODES))
    pad = tuple(int(rng.integers(0, min(s, d * (kk - 1) + 1)))
                for s, kk, d in zip(shape, k, dilation))
    dtype = np.float32 if rng.random() < 0.7 else np.float64
    x = volume((n, c) + shape, dtype, seed)

    def cut(size):
        cuts = np.sort(rng.choice(np.arange(1, size), int(rng.integers(0, 4)), replace=False))
        return tuple(int(v) for v in np.diff(np.concatenate([[0], cuts, [size]])))

    chunks = ((1,) * n, c) + tuple(cut(s) for s in shape)
    try:
        check(x, chunks, o, k, stride=stride, padding=pad, dilation=dilation, groups=groups,
              padding_mode=mode)
    except ValueError as e:  # a layer the in-memory module refuses too (kernel too large)
        with pytest.raises(ValueError):
            conv3d_cpu.Conv3d(c, o, k, stride=stride, padding=pad, dilation=dilation,
                              groups=groups, padding_mode=mode, dtype=dtype)(x)
        assert "kernel size" in str(e)


def test_nonfinite_input_under_auto_keeps_nan_positions():
    # Documented: under 'auto', a block whose Winograd result is not finite is recomputed
    # directly (the NaN/Inf positions are direct's, as in memory); explicit algorithms are
    # bitwise the in-memory result, NaN/Inf included.
    x = volume((1, 16, 16, 16, 16))
    x[0, 3, 5, 6, 7] = np.nan
    x[0, 1, 12, 2, 9] = np.inf
    m = conv3d_cpu.Conv3d(16, 16, 3, padding=1, rng=0)
    xd = da.from_array(x, chunks=(1, 16, 8, 8, 8))
    assert cd.plan(xd, m.weight, padding=1)["tile"] == (4, 4, 4)
    got = cd.conv3d(xd, m.weight, m.bias, padding=1).compute(scheduler="sync")
    expected = m(x)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.array_equal(np.isinf(got), np.isinf(expected))
    check(x, (1, 16, 8, 8, 8), 16, 3, padding=1, algorithm="winograd_f4")
    check(x, (1, 16, 8, 8, 8), 16, 3, padding=1, algorithm="direct")


def test_nonfinite_weight_zero_padding():
    x = volume((1, 3, 9, 10, 11))
    m = conv3d_cpu.Conv3d(3, 4, 3, padding=1, rng=0)
    w = m.weight.copy()
    w[1, 2, 0, 1, 2] = np.inf
    m.weight = w
    y = cd.conv3d(da.from_array(x, chunks=(1, 3, 4, 3, 5)), w, m.bias, padding=1)
    assert bits_equal(y.compute(scheduler="sync"), m(x))


# ------------------------------------------------------------------ the graph

def test_weight_is_one_key_of_the_graph():
    x = da.from_array(volume((1, 64, 12, 12, 12)), chunks=(1, 64, 4, 4, 4))
    w = volume((64, 64, 3, 3, 3), seed=2)           # 442 KB: far larger than any chunk
    b = volume((64,), seed=3)
    y = cd.conv3d(x, w, b, padding=1, algorithm="direct")
    graph = dict(y.__dask_graph__())
    big = [k for k, task in graph.items() if len(cloudpickle.dumps(task)) > w.nbytes]
    assert len(big) == 1, big
    blocks = [k for k in graph if isinstance(k, tuple) and k[0] == y.name]
    assert len(blocks) == y.npartitions == 27
    deps = y.__dask_graph__().get_all_dependencies()
    assert all(big[0] in deps[k] for k in blocks)


def test_tasks_run_one_thread_unless_told(monkeypatch):
    seen = []
    real = cd._convolve

    def spy(*args, **kwargs):
        seen.append(args[8])
        return real(*args, **kwargs)

    monkeypatch.setattr(cd, "_convolve", spy)
    x = da.from_array(volume((1, 2, 8, 8, 8)), chunks=(1, 2, 4, 4, 8))
    w = volume((2, 2, 3, 3, 3))
    cd.conv3d(x, w, padding=1, algorithm="direct").compute(scheduler="sync")
    assert seen and set(seen) == {1}
    seen.clear()
    cd.conv3d(x, w, padding=1, algorithm="direct", num_threads=2).compute(scheduler="sync")
    assert seen and set(seen) == {2}


def test_output_chunks_follow_input_chunks():
    # stride 1, 'same': the output chunks are the input's (chunk-aligned zarr writes)
    x = da.zeros((1, 16, 64, 64, 64), dtype=np.float32, chunks=(1, 16, 32, 32, 32))
    w = np.zeros((16, 16, 3, 3, 3), np.float32)
    for algorithm in ("direct", "winograd_f2", "winograd_f4"):
        p = cd.plan(x, w, padding="same", algorithm=algorithm)
        assert p["output_chunks"] == x.chunks, (algorithm, p)
    y = cd.conv3d(x, w, padding="same", padding_mode="reflect")
    assert y.chunks == x.chunks
