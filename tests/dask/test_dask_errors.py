"""conv3d_cpu.dask.conv3d refuses bad input when the graph is built, naming the argument.

Every call here gets an ``x`` whose blocks raise ZeroDivisionError if computed: an error
found by running the graph would show as that instead of the ValueError / TypeError
expected.
"""
import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="conv3d_cpu[dask] (dask[array]) not installed")

import conv3d_cpu.dask as cd  # noqa: E402


def bomb(shape=(1, 4, 8, 8, 8), chunks=(1, 4, 4, 4, 4), dtype=np.float32):
    """A dask array whose every block raises when computed."""
    def explode(block):
        raise ZeroDivisionError("the graph ran")
    return da.zeros(shape, dtype=dtype, chunks=chunks).map_blocks(explode, dtype=dtype)


W = np.zeros((6, 4, 3, 3, 3), np.float32)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(stride=0), ValueError, ["stride"]),
    (dict(stride=(1, 2)), ValueError, ["stride"]),
    (dict(stride=1.5), TypeError, ["stride"]),
    (dict(padding=-1), ValueError, ["padding"]),
    (dict(padding="full"), ValueError, ["padding", "'full'"]),
    (dict(padding="same", stride=2), ValueError, ["padding='same'", "stride"]),
    (dict(dilation=0), ValueError, ["dilation"]),
    (dict(groups=0), ValueError, ["groups"]),
    (dict(groups=4), ValueError, ["groups"]),          # 6 output channels
    (dict(algorithm="fft"), ValueError, ["algorithm", "'fft'"]),
    (dict(algorithm="winograd", stride=2), ValueError, ["algorithm", "stride"]),
    (dict(padding_mode="symmetric"), ValueError, ["padding_mode", "'symmetric'"]),
    (dict(padding_mode="reflect", padding=8), ValueError, ["padding_mode='reflect'",
                                                           "padding"]),
    (dict(padding_mode="circular", padding=9), ValueError, ["padding_mode='circular'"]),
    (dict(num_threads=0), ValueError, ["num_threads"]),
    (dict(num_threads=10**6), ValueError, ["num_threads"]),
    (dict(num_threads="2"), TypeError, ["num_threads"]),
    (dict(bias=np.zeros(5, np.float32)), ValueError, ["bias", "(6,)"]),
    (dict(bias=np.zeros(6, np.float64)), TypeError, ["bias", "float64"]),
    (dict(weight=np.zeros((6, 4, 3, 3), np.float32)), ValueError, ["weight", "5-D"]),
    (dict(weight=np.zeros((6, 4, 3, 3, 3), np.int32)), TypeError, ["weight", "int32"]),
    (dict(weight=np.zeros((6, 4, 9, 9, 9), np.float32)), ValueError, ["kernel size"]),
    (dict(weight=np.zeros((6, 4, 3, 3, 3), np.float64)), TypeError, ["x", "dtype"]),
    (dict(weight=np.zeros((6, 3, 3, 3, 3), np.float32)), ValueError, ["x", "channels",
                                                                     "in_channels=3"]),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_argument_errors_at_graph_build(kwargs, exc, words):
    kwargs = dict(kwargs)
    weight = kwargs.pop("weight", W)
    with pytest.raises(exc) as info:
        cd.conv3d(bomb(), weight, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("x", [np.zeros((1, 4, 8, 8, 8), np.float32), [[1.0]], None])
def test_x_must_be_a_dask_array(x):
    with pytest.raises(TypeError, match=r"x must be a dask array .*dask.array.from_array"):
        cd.conv3d(x, W)


def test_x_rank_and_dtype():
    with pytest.raises(ValueError, match=r"^x: input must have 4 .* or 5 .*dimensions"):
        cd.conv3d(bomb((4, 8, 8), (4, 4, 4)), W)
    with pytest.raises(TypeError, match=r"^x must have dtype float32 or float64, got int16"):
        cd.conv3d(da.zeros((1, 4, 8, 8, 8), dtype=np.int16, chunks=4), W)
    with pytest.raises(ValueError, match=r"^x: input spatial dimensions"):
        cd.conv3d(bomb((1, 4, 0, 8, 8), (1, 4, 1, 4, 4)), W)


@pytest.mark.parametrize("shape,chunks,axis", [((1, 4, 8, 8, 8), (1, 2, 4, 4, 4), 1),
                                               ((4, 8, 8, 8), (3, 8, 8, 8), 0)])
def test_channels_split_across_chunks(shape, chunks, axis):
    with pytest.raises(ValueError) as info:
        cd.conv3d(bomb(shape, chunks), W)
    msg = str(info.value)
    assert f"chunked along its channel axis (axis {axis}" in msg
    assert f"x.rechunk({{{axis}: -1}})" in msg


def test_unknown_chunk_sizes():
    x = da.zeros((2, 4, 8, 8, 8), dtype=np.float32, chunks=(1, 4, 4, 4, 4))
    x = x[x[:, 0, 0, 0, 0] == 0]   # boolean indexing: chunk sizes along N unknown
    with pytest.raises(ValueError, match=r"unknown chunk sizes .*compute_chunk_sizes"):
        cd.conv3d(x, W)
