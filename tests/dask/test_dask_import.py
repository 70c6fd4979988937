"""``import conv3d_cpu`` never imports dask; ``conv3d_cpu.dask`` does (and needs it)."""
import subprocess
import sys

import pytest


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()


def test_import_conv3d_cpu_does_not_import_dask():
    # (runs whether dask is installed or not)
    assert _run("import sys, conv3d_cpu; conv3d_cpu.conv3d; conv3d_cpu.Conv3d; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                "('dask', 'distributed', 'zarr')))") == ["[]"]


def _dask_installed():
    # Asked of a fresh interpreter: in this one, pytest puts tests/ on sys.path, where the
    # directory tests/dask passes for a namespace package named dask.
    return subprocess.run([sys.executable, "-c", "import dask.array"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _dask_installed(), reason="conv3d_cpu[dask] (dask[array]) not installed")
def test_conv3d_cpu_dask_imports_dask():
    assert _run("import sys, conv3d_cpu.dask; print('dask.array' in sys.modules, "
                "'distributed' in sys.modules)") == ["True", "False"]
