"""bench/networks.py --smoke: the whole-network benchmark runs end to end on tiny inputs (every
network, stock PyTorch and its Conv3d layers through conv3d_cpu.conv3d and conv3d_cpu.Conv3d,
plus a check of every padding mode) and each output is within 1e-3 relative error of PyTorch's.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "networks.py")


def test_networks_smoke():
    # Importing (not only finding) torch: make sanitize hides it behind a stub that raises.
    pytest.importorskip("torch", reason="the benchmark's networks are torch.nn")
    proc = subprocess.run([sys.executable, SCRIPT, "--smoke"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "smoke: OK" in proc.stdout, proc.stdout
