#!/usr/bin/env python
"""Benchmark conv3d_cpu.dask.conv3d on a dask.distributed LocalCluster against the in-memory
conv3d_cpu.conv3d at the same total thread count.

One layer (default 16 -> 16 channels, 3x3x3, padding 'same', float32, ``algorithm='auto'``;
``--layer``), one volume (default 1 x 16 x 256^3); chunks of 32^3, 64^3 and 128^3 (``--chunks``),
on 1 and 2 worker processes (``--workers``) of one thread each, every task on one OpenMP
thread (the package's default). Baseline: ``conv3d_cpu.conv3d(x, w, b, ...,
num_threads=W)`` on the whole array in memory, W = the number of workers.

What is timed, per (chunks, workers): from a dask array of the input already held by the
workers (``client.persist``; its values a function of the global indices, so the same for
every chunking) to every output block computed on the workers: the graph's building and
scheduling, the halo exchange (dask's overlap), every block's kernel call at block size; each
block then yields one element (so that blocks are freed at once and no run reuses another's
results). Moving the volume into and out of the cluster is not timed (that is the storage's
time: zarr in the example). Each configuration runs ``--repeat`` times after one warm-up run;
medians are reported, as output voxels per second (N oD oH oW per second: every output
channel of a voxel counts once). Every configuration's result is checked bitwise against the
in-memory result (a CRC-32 per block, computed on the workers, in an untimed run).

Worker memory (``--worker-malloc``): distributed's nannies start workers with
``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's mmap threshold at 128 KiB, so every
block's arrays are fresh mappings whose pages fault in on first touch; on virtual machines
that back guest memory lazily (this project's: 140 MB touched in 0.65 s when fresh, 0.04 s
when reused) that alone doubled the time of 64^3 blocks. ``keep`` (the default) adds
``MALLOC_MMAP_THRESHOLD_=32 MiB`` and a trim threshold of 16 GiB, so blocks up to 32 MiB reuse
the worker's heap, as the in-memory call's one process reuses its pages between runs;
``distributed`` keeps distributed's setting. Both are recorded in the JSON.

Overhead = time(dask) / time(in memory) - 1; the target (issue 20) is <= 15 % from 64^3
chunks up. Other processes' CPU use is sampled during the in-memory runs (the workers' own
use makes it meaningless during the cluster's) and reported.

Results go to the terminal and to ``bench/results/dask-<timestamp>.json`` (+
``dask-latest.json``), or ``--json PATH``.

``--quick``: a 1 x 8 x 64^3 volume, chunks 32^3, 1 and 2 workers, one timed run each (the
smoke test of tests/dask runs it). Exits 1 when a result is not bitwise the in-memory one.

Examples::

    python bench/dask.py                         # chunks 32, 64, 128; 1 and 2 workers
    python bench/dask.py --chunks 64,128 --workers 2 --repeat 5
    python bench/dask.py --layer cin=1,cout=8,k=3 --size 384
    python bench/dask.py --quick --json /tmp/dask.json
"""
# This file is named dask.py: its own directory must not shadow the dask package, in this
# process or in the worker processes it starts (they inherit sys.path).
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402

sys.path.append(HERE)
import run as bench  # noqa: E402  (machine info, contention, tables, JSON)

import argparse  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402

say = bench.say
TARGET_OVERHEAD = 0.15      # from TARGET_FROM^3 chunks up
TARGET_FROM = 64


def _crc_block(block):
    return np.array([zlib.crc32(np.ascontiguousarray(block).view(np.uint8))],
                    np.uint64).reshape((1,) * block.ndim)


def block_crcs(y):
    """CRC-32 of every block of the dask array ``y``, computed where the blocks are."""
    return y.map_blocks(_crc_block, dtype=np.uint64, chunks=tuple((1,) * len(c)
                                                                   for c in y.chunks))


def reference_crcs(ref, chunks):
    """The same CRCs for the in-memory array ``ref`` cut at ``chunks``."""
    bounds = [np.cumsum((0,) + tuple(c)) for c in chunks]
    out = np.empty(tuple(len(c) for c in chunks), np.uint64)
    for idx in np.ndindex(*out.shape):
        sl = tuple(slice(b[i], b[i + 1]) for b, i in zip(bounds, idx))
        out[idx] = zlib.crc32(np.ascontiguousarray(ref[sl]).view(np.uint8))
    return out


def _values(c, i, j, k):
    """The benchmark's input at channel ``c`` and position (i, j, k): integer hashing, exact
    in any chunking and any process, uniform in [-0.5, 0.5)."""
    h = (i * 73856093) ^ (j * 19349663) ^ (k * 83492791) ^ (c * 2654435761)
    return ((h & 0xFFFF).astype(np.float32) / np.float32(65536) - np.float32(0.5))


def _input_block(block_info=None):
    info = block_info[None]
    (n0, n1), (c0, c1), *spatial = info["array-location"]
    idx = np.ix_(*(np.arange(a, b, dtype=np.int64) for a, b in [(c0, c1)] + spatial))
    return np.broadcast_to(_values(*idx), (n1 - n0,) + info["chunk-shape"][1:]).copy()


def input_array(shape, chunks):
    """The input as a dask array computed where its blocks are (nothing in the graph)."""
    return da.map_blocks(_input_block, chunks=da.core.normalize_chunks(chunks, shape),
                         dtype=np.float32, meta=np.empty((0,) * 5, np.float32))


def input_numpy(shape):
    c, d, h, w = (np.arange(s, dtype=np.int64) for s in shape[1:])
    x = np.empty(shape, np.float32)
    for z in range(shape[2]):  # (a plane at a time: int64 temporaries stay small)
        x[:, :, z] = _values(c[:, None, None], d[z], h[None, :, None], w[None, None, :])
    return x


def _corner(block, run=0):
    return block[(slice(0, 1),) * block.ndim]


def parse_layer(text):
    spec = dict(cin=16, cout=16, k=3)
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        if key not in spec:
            raise argparse.ArgumentTypeError(f"--layer keys are cin, cout, k; got {key!r}")
        spec[key] = int(value)
    return spec


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layer", type=parse_layer, default=parse_layer(""),
                   help="cin=..,cout=..,k=.. (default cin=16,cout=16,k=3; padding 'same')")
    p.add_argument("--size", type=int, default=256, help="volume edge (default 256)")
    p.add_argument("--chunks", type=bench.int_list, default=[32, 64, 128],
                   help="chunk edges (default 32,64,128)")
    p.add_argument("--workers", type=bench.int_list, default=[1, 2],
                   help="worker counts (default 1,2)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per configuration")
    p.add_argument("--memory-limit", default="8GiB",
                   help="per worker (default 8GiB; spilling and pausing are off: the volume "
                        "fits, and what is measured is the computation)")
    p.add_argument("--worker-malloc", choices=("keep", "distributed"), default="keep",
                   help="workers' glibc malloc settings (see the module docstring)")
    p.add_argument("--quick", action="store_true", help="a tiny volume, one run each")
    p.add_argument("--json", help="write the JSON here instead of bench/results/")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.chunks, args.repeat = 64, [32], 1
        args.layer = dict(args.layer, cin=8, cout=8) if args.layer == parse_layer("") \
            else args.layer
    return args


def median_time(fn, repeat):
    fn()  # warm-up: imports, weight transforms, first-touch of the workers' memory
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main(argv=None):
    args = parse_args(argv)
    from distributed import Client, LocalCluster, wait

    import conv3d_cpu
    import conv3d_cpu.dask as cd

    started = datetime.datetime.now()
    model, mhz = bench.cpu_info()
    spec = args.layer
    shape = (1, spec["cin"]) + (args.size,) * 3
    x = input_numpy(shape)
    m = conv3d_cpu.Conv3d(spec["cin"], spec["cout"], spec["k"], padding="same", rng=0)
    w, b = m.weight, m.bias
    voxels = shape[0] * args.size ** 3
    say(f"conv3d_cpu.dask benchmark  {started:%Y-%m-%d %H:%M:%S}  {model}, "
        f"{bench.cpu_count()} cores{f' @ {mhz:.0f} MHz' if mhz else ''}")
    say(f"layer {spec['cin']}->{spec['cout']} k{spec['k']} 'same' float32, volume {shape} "
        f"({x.nbytes / 2**20:.0f} MiB in, {voxels * spec['cout'] * 4 / 2**20:.0f} MiB out); "
        f"tasks on 1 thread, workers of 1 thread")

    memory = {}
    other = {}
    ref = None
    for t in sorted(set(args.workers)):
        bench.wait_for_idle(10)
        c = bench.Contention()
        tm, runs = median_time(lambda: conv3d_cpu.conv3d(x, w, b, padding="same",
                                                         num_threads=t), args.repeat)
        other[t] = c.other_cores()
        memory[t] = dict(seconds=tm, runs=runs, voxels_per_second=voxels / tm)
        if ref is None:
            ref = conv3d_cpu.conv3d(x, w, b, padding="same", num_threads=t)
        say(f"in memory, {t} thread(s): {tm * 1e3:.0f} ms ({voxels / tm / 1e6:.2f} M voxels/s)"
            f"{'' if other[t] is None else f'; other processes used {other[t]:.2f} cores'}")

    rows, results, failures = [], [], 0
    import dask
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    if args.worker_malloc == "keep":
        environ.update(MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(16 << 30))
    say(f"worker environment ({args.worker_malloc}): {environ}")
    for nw in args.workers:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ,
                              "distributed.worker.memory.target": False,
                              "distributed.worker.memory.spill": False,
                              "distributed.worker.memory.pause": False}), LocalCluster(n_workers=nw, threads_per_worker=1, processes=True,
                          memory_limit=args.memory_limit, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            for edge in args.chunks:
                xd = client.persist(input_array(shape, (1, shape[1]) + (edge,) * 3))
                wait(xd)
                runs_done = [0]

                def once():
                    y = cd.conv3d(xd, w, b, padding="same")
                    runs_done[0] += 1  # (a new key for each run's last layer)
                    corners = y.map_blocks(_corner, run=runs_done[0], dtype=y.dtype,
                                           chunks=tuple((1,) * len(c) for c in y.chunks))
                    corners.compute()

                td, runs = median_time(once, args.repeat)
                y = cd.conv3d(xd, w, b, padding="same")
                plan = cd.plan(xd, w, padding="same")
                ok = bool(np.array_equal(block_crcs(y).compute(),
                                         reference_crcs(ref, y.chunks)))
                failures += not ok
                del y, xd
                tm = memory[nw]["seconds"]
                overhead = td / tm - 1
                target = (overhead <= TARGET_OVERHEAD) if edge >= TARGET_FROM else None
                results.append(dict(chunk=edge, workers=nw, seconds=td, runs=runs,
                                    voxels_per_second=voxels / td, in_memory_seconds=tm,
                                    overhead=overhead, meets_target=target, bitwise=ok,
                                    tile=plan["tile"],
                                    blocks=int(np.prod([len(c) for c in plan["output_chunks"]]))))
                rows.append([f"{edge}^3", nw, results[-1]["blocks"], f"{td * 1e3:.0f}",
                             f"{tm * 1e3:.0f}", f"{voxels / td / 1e6:.2f}",
                             f"{voxels / tm / 1e6:.2f}", f"{overhead * 100:+.1f}%",
                             {True: "yes", False: "NO", None: "-"}[target],
                             "yes" if ok else "NO"])
                say(bench.table(rows[-1:], ["chunks", "workers", "blocks", "dask ms",
                                            "memory ms", "dask Mvox/s", "memory Mvox/s",
                                            "overhead", "<=15%", "bitwise"]).splitlines()[-1])
    say("")
    say(bench.table(rows, ["chunks", "workers", "blocks", "dask ms", "memory ms",
                           "dask Mvox/s", "memory Mvox/s", "overhead", "<=15%", "bitwise"]))
    say(f"(in memory at as many threads as workers; target: overhead <= "
        f"{TARGET_OVERHEAD:.0%} from {TARGET_FROM}^3 chunks up)")
    import distributed
    doc = dict(worker_malloc=args.worker_malloc, worker_environ=environ, benchmark="dask", timestamp=started.isoformat(), cpu=model, cpu_mhz=mhz,
               cores=bench.cpu_count(), layer=spec, shape=shape, dtype="float32",
               padding="same", repeat=args.repeat, quick=args.quick,
               versions=dict(conv3d_cpu=conv3d_cpu.__version__, dask=dask.__version__,
                             distributed=distributed.__version__, numpy=np.__version__),
               in_memory={str(k): v for k, v in memory.items()},
               other_processes_cores={str(k): v for k, v in other.items()},
               results=results, target=dict(overhead=TARGET_OVERHEAD, from_chunk=TARGET_FROM))
    bench.save_results(doc, args.json, "dask", started)
    if failures:
        say(f"{failures} configuration(s) not bitwise the in-memory result")
        return 1
    say("bitwise: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
