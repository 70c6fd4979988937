"""conv3d_cpu.dask on a real dask.distributed LocalCluster with zarr v3 storage.

- ``python -m conv3d_cpu.dask``: --help, and a small run (demo volume, weights from an .npz)
  whose zarr output is bitwise ``conv3d_cpu.Conv3d`` on the zarr input;
- a volume 3x larger than the cluster's memory (3 GiB of float32 on 2 workers of 512 MiB):
  convolved with no worker dying or restarting, and whole samples of the output equal the
  in-memory result bit for bit (a batch's results are bitwise those of its samples, so a
  sample of N is the whole array's result restricted to it).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="conv3d_cpu[dask] (dask[array]) not installed")
pytest.importorskip("distributed", reason="conv3d_cpu[dask] (distributed) not installed")
zarr = pytest.importorskip("zarr", reason="conv3d_cpu[dask] (zarr) not installed")
if int(zarr.__version__.split(".")[0]) < 3:
    pytest.skip(f"conv3d_cpu[dask] needs zarr >= 3, found {zarr.__version__}",
                allow_module_level=True)

import conv3d_cpu  # noqa: E402
from conv3d_cpu.dask import __main__ as cli  # noqa: E402


def bits_equal(a, b):
    return (a.shape == b.shape and a.dtype == b.dtype
            and np.array_equal(a.view(np.uint8), b.view(np.uint8)))


def _asan():
    return "asan" in os.environ.get("LD_PRELOAD", "")


# Under a preloaded libasan a worker's RSS holds ASan's shadow memory and quarantine: on the
# small run it reached 426 MiB, past the 80% at which distributed pauses a 512 MiB worker,
# and the run waited 128 s for it to resume (4 s without ASan).
SMALL_RUN_MEMORY = "2GiB" if _asan() else "512MiB"


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "conv3d_cpu.dask", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_help():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    for word in ("--make-demo", "--padding-mode", "--workers", "--memory-limit", "zarr"):
        assert word in r.stdout


def test_cli_refuses_a_missing_output():
    r = run_cli("in.zarr")
    assert r.returncode == 2 and "OUTPUT is required" in r.stderr


def test_cli_small_run_is_bitwise_conv3d(tmp_path):
    m = conv3d_cpu.Conv3d(2, 5, 3, padding=1, padding_mode="circular", rng=3)
    np.savez(tmp_path / "layer.npz", weight=m.weight, bias=m.bias)
    src, dst = tmp_path / "in.zarr", tmp_path / "out.zarr"
    r = run_cli("--make-demo", src, dst, "--shape", "2,2,20,24,70", "--demo-chunks", "8,10,32",
                "--weights", tmp_path / "layer.npz", "--padding", "1", "--padding-mode",
                "circular", "--workers", 1, "--memory-limit", SMALL_RUN_MEMORY,
                "--json", tmp_path / "run.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100% Completed" in r.stdout  # dask's progress bar
    x = zarr.open_array(src, mode="r")[...]
    y = zarr.open_array(dst, mode="r")
    assert y.chunks[2:] == (8, 10, 64)   # the blocks (W: the direct row kernel's step)
    assert bits_equal(y[...], m(x))


@pytest.mark.skipif(_asan(), reason="make sanitize: 3 GiB through worker processes under a "
                                    "preloaded libasan is too slow and ASan caps allocations")
def test_volume_larger_than_cluster_memory(tmp_path):
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    need = 7 << 30
    if shutil.disk_usage(tmp_path).free < need:
        pytest.skip(f"needs {need >> 30} GiB free under {tmp_path} (a 3 GiB volume and its "
                    f"3 GiB result)")

    class Departures(SchedulerPlugin):
        def __init__(self):
            self.removed = []

        def remove_worker(self, scheduler, worker, **kwargs):
            self.removed.append(worker)

    shape = (3, 2, 512, 512, 512)                 # float32: 3 GiB
    workers, limit = 2, 512 << 20                 # 1 GiB of worker memory in all
    assert np.prod(shape) * 4 >= 3 * workers * limit
    m = conv3d_cpu.Conv3d(2, 2, 3, padding="same", padding_mode="reflect", rng=0)
    src, dst = tmp_path / "in.zarr", tmp_path / "out.zarr"
    try:
        with LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=limit,
                          processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            departures = Departures()
            cluster.scheduler.add_plugin(departures)
            pids = client.run(os.getpid)
            cli.make_demo(client, src, shape, 128, seed=1, progress=False)
            summary = cli.convolve_zarr(client, src, dst, m.weight, m.bias, padding="same",
                                        padding_mode="reflect", progress=False)
            assert departures.removed == []
            assert client.run(os.getpid) == pids     # the same worker processes
        assert summary["output_chunks"] == [1, 2, 128, 128, 128]
        x, y = zarr.open_array(src, mode="r"), zarr.open_array(dst, mode="r")
        assert y.shape == shape
        for n in (0, shape[0] - 1):                  # whole samples: every face and halo
            assert bits_equal(y[n], m(x[n])), n
    finally:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)
