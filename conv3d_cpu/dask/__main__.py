"""``python -m conv3d_cpu.dask``: convolve a zarr volume larger than memory on a Dask cluster.

Reads a zarr array (N, C, D, H, W) or (C, D, H, W), convolves it with
:func:`conv3d_cpu.dask.conv3d` on a ``dask.distributed`` ``LocalCluster`` (worker processes
with a memory limit; or the cluster at ``--scheduler``), writes the result to a zarr array
whose chunks are the output's blocks (each task writes whole zarr chunks), with dask's
progress bar. ``--make-demo`` first writes a synthetic volume (normal noise, uncompressed).

Examples::

    python -m conv3d_cpu.dask --make-demo demo.zarr --shape 1,1,256,256,256
    python -m conv3d_cpu.dask demo.zarr out.zarr --out-channels 4 --kernel-size 3 \\
        --padding same --padding-mode reflect --workers 2 --memory-limit 1GiB
    python -m conv3d_cpu.dask in.zarr out.zarr --weights layer.npz   # weight (and bias)

``layer.npz`` holds ``weight`` (O, C / groups, kD, kH, kW) and optionally ``bias`` (O,), e.g.
``np.savez("layer.npz", **{k: t.detach().numpy() for k, t in conv.state_dict().items()})``
from a ``torch.nn.Conv3d``. Without ``--weights`` the layer is initialized as
``conv3d_cpu.Conv3d(..., rng=--seed)`` (PyTorch's initialization).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import numpy as np

import conv3d_cpu
import conv3d_cpu.dask as cd


def _ints(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")
    return values[0] if len(values) == 1 else values


def _padding(text):
    return text if text in ("same", "valid") else _ints(text)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m conv3d_cpu.dask",
        description="Convolve a zarr volume with conv3d_cpu on a dask.distributed cluster and "
                    "write the result to zarr (bitwise conv3d_cpu.Conv3d on the whole array).",
        epilog="Each task runs conv3d_cpu's kernels on 1 OpenMP thread (--num-threads to "
               "change); parallelism comes from the workers and their threads.")
    p.add_argument("input", help="zarr array to read (N, C, D, H, W) or (C, D, H, W)")
    p.add_argument("output", nargs="?", help="zarr array to write (overwritten)")
    demo = p.add_argument_group("synthetic input")
    demo.add_argument("--make-demo", action="store_true",
                      help="first write a synthetic float32 volume (normal noise) to INPUT")
    demo.add_argument("--shape", type=_ints, default=(1, 1, 128, 128, 128),
                      help="demo volume shape N,C,D,H,W (default 1,1,128,128,128)")
    demo.add_argument("--demo-chunks", type=_ints, default=64,
                      help="demo zarr chunks along D,H,W (one int or three; default 64)")
    layer = p.add_argument_group("layer")
    layer.add_argument("--weights", help=".npz with 'weight' and optionally 'bias'")
    layer.add_argument("--out-channels", type=int, default=1)
    layer.add_argument("--kernel-size", type=_ints, default=3)
    layer.add_argument("--no-bias", action="store_true")
    layer.add_argument("--seed", type=int, default=0,
                       help="seed of the demo volume and of the layer's initialization")
    layer.add_argument("--stride", type=_ints, default=1)
    layer.add_argument("--padding", type=_padding, default="same",
                       help="int, D,H,W, 'same' (default) or 'valid'")
    layer.add_argument("--dilation", type=_ints, default=1)
    layer.add_argument("--groups", type=int, default=1)
    layer.add_argument("--padding-mode", default="zeros",
                       choices=("zeros", "reflect", "replicate", "circular"))
    layer.add_argument("--algorithm", default="auto",
                       choices=("auto", "direct", "winograd", "winograd_f2", "winograd_f4"))
    layer.add_argument("--num-threads", type=int, default=None,
                       help="OpenMP threads per task (default 1)")
    layer.add_argument("--chunks", type=_ints, default=None,
                       help="rechunk the input along D,H,W first (default: the zarr chunks)")
    cluster = p.add_argument_group("cluster")
    cluster.add_argument("--scheduler", help="address of a running dask scheduler (default: "
                                             "start a LocalCluster)")
    cluster.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    cluster.add_argument("--threads-per-worker", type=int, default=1)
    cluster.add_argument("--memory-limit", default="2GiB", help="per worker (default 2GiB)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", help="also write the run's summary to this JSON file")
    return p


def _compute(client, work, progress):
    """Compute a dask collection on ``client``, with distributed's progress bar."""
    future = client.compute(work)
    if progress:
        from distributed import progress as progress_bar
        progress_bar(future)
        print(file=sys.stdout, flush=True)
    return future.result()


def make_demo(client, path, shape, chunks, seed=0, progress=True):
    """Write a float32 volume of ``shape`` (standard normal noise, reproducible from
    ``seed`` and the chunks) to the zarr array at ``path``, uncompressed, with zarr chunks
    (1, C, *chunks) (``chunks``: D, H, W sizes), on the cluster."""
    import dask.array as da
    import zarr

    shape = tuple(shape)
    chunks = (chunks,) * 3 if isinstance(chunks, int) else tuple(chunks)
    zchunks = (1,) * (len(shape) - 4) + (shape[-4],) + tuple(
        min(c, s) for c, s in zip(chunks, shape[-3:]))
    x = da.random.default_rng(seed).standard_normal(shape, chunks=zchunks, dtype=np.float32)
    z = zarr.create_array(store=path, shape=shape, chunks=zchunks, dtype=np.float32,
                          compressors=None, overwrite=True)
    _compute(client, da.store(x, z, lock=False, compute=False), progress)
    return z


def _regular_chunks(chunks):
    """The zarr chunk shape of dask ``chunks`` when they are a regular grid (all equal but a
    smaller last), else None."""
    out = []
    for c in chunks:
        if any(v != c[0] for v in c[:-1]) or c[-1] > c[0]:
            return None
        out.append(c[0])
    return tuple(out)


def convolve_zarr(client, input, output, weight, bias=None, *, stride=1, padding="same",
                  dilation=1, groups=1, padding_mode="zeros", algorithm="auto",
                  num_threads=None, chunks=None, progress=True):
    """Convolve the zarr array at ``input`` into a new zarr array at ``output`` on
    ``client``'s cluster; returns a summary dict (shapes, chunks, tile, seconds,
    voxels per second)."""
    import dask.array as da
    import zarr

    src = zarr.open_array(input, mode="r")
    x = da.from_zarr(src)
    channel_axis = x.ndim - 4
    if len(x.chunks[channel_axis]) > 1:  # (the API refuses split channels; here we rechunk)
        x = x.rechunk({channel_axis: -1})
    if chunks is not None:
        x = x.rechunk(dict(zip(range(x.ndim - 3, x.ndim),
                               (chunks,) * 3 if isinstance(chunks, int) else chunks)))
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode, algorithm=algorithm)
    y = cd.conv3d(x, weight, bias, num_threads=num_threads, **args)
    plan = cd.plan(x, weight, **args)
    zchunks = _regular_chunks(y.chunks)
    if zchunks is None:  # writes must cover whole zarr chunks: a regular grid
        zchunks = tuple(max(c) for c in y.chunks)
        y = y.rechunk(zchunks)
    dst = zarr.create_array(store=output, shape=y.shape, chunks=zchunks, dtype=y.dtype,
                            compressors=src.compressors, overwrite=True)
    start = time.perf_counter()
    _compute(client, da.store(y, dst, lock=False, compute=False), progress)
    seconds = time.perf_counter() - start
    voxels = int(np.prod(y.shape)) // weight.shape[0]
    return dict(input=str(input), output=str(output), input_shape=list(x.shape),
                output_shape=list(y.shape), output_chunks=list(zchunks),
                tile=plan["tile"], seconds=seconds, voxels_per_second=voxels / seconds,
                workers=len(client.scheduler_info()["workers"]))


def _layer(args, in_channels, dtype):
    if args.weights:
        with np.load(args.weights) as f:
            weight = np.asarray(f["weight"], dtype)
            bias = np.asarray(f["bias"], dtype) if "bias" in f and not args.no_bias else None
        return weight, bias
    m = conv3d_cpu.Conv3d(in_channels, args.out_channels, args.kernel_size, groups=args.groups,
                          bias=not args.no_bias, dtype=dtype, rng=args.seed)
    return m.weight, m.bias


@contextlib.contextmanager
def _client(args):
    from distributed import Client, LocalCluster

    if args.scheduler:
        with Client(args.scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker,
                      memory_limit=args.memory_limit, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.output is None and not args.make_demo:
        build_parser().error("OUTPUT is required (unless --make-demo only writes INPUT)")
    if args.make_demo and len(args.shape) not in (4, 5):
        build_parser().error(f"--shape must have 4 or 5 sizes, got {args.shape}")
    progress = not args.no_progress
    with _client(args) as client:
        if args.make_demo:
            make_demo(client, args.input, args.shape, args.demo_chunks, args.seed, progress)
            print(f"wrote the demo volume {args.input} {tuple(args.shape)}", flush=True)
        if args.output is None:
            return 0
        import zarr
        src = zarr.open_array(args.input, mode="r")
        weight, bias = _layer(args, src.shape[-4], np.dtype(src.dtype).newbyteorder("="))
        summary = convolve_zarr(
            client, args.input, args.output, weight, bias, stride=args.stride,
            padding=args.padding, dilation=args.dilation, groups=args.groups,
            padding_mode=args.padding_mode, algorithm=args.algorithm,
            num_threads=args.num_threads, chunks=args.chunks, progress=progress)
    print(f"wrote {summary['output']} {tuple(summary['output_shape'])} in "
          f"{summary['seconds']:.2f} s ({summary['voxels_per_second'] / 1e6:.1f} M output "
          f"voxels/s per channel, tile {summary['tile']}, {summary['workers']} workers)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
