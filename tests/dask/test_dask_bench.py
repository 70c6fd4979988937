"""bench/dask.py --quick runs end to end (a LocalCluster of 1 and 2 workers, a tiny volume)
and finds every configuration bitwise the in-memory result; its JSON has the fields the
README's table is read from."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("dask.array", reason="conv3d_cpu[dask] (dask[array]) not installed")
pytest.importorskip("distributed", reason="conv3d_cpu[dask] (distributed) not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_dask_quick(tmp_path):
    out = tmp_path / "dask.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "dask.py"), "--quick",
                           "--json", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "bitwise: OK" in proc.stdout, proc.stdout
    doc = json.loads(out.read_text())
    assert {(r["workers"], r["chunk"]) for r in doc["results"]} == {(1, 32), (2, 32)}
    for r in doc["results"]:
        assert r["bitwise"] and r["seconds"] > 0 and r["in_memory_seconds"] > 0
        assert r["voxels_per_second"] == pytest.approx(64 ** 3 / r["seconds"])
