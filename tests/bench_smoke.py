"""``python bench/<script> --smoke`` in a fresh interpreter, for tests/install/test_bench_*.py:
the benchmark runs end to end and says ``smoke: OK`` (each script's --smoke exits 1 when a
result is off)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_smoke(script, why_torch, timeout=300):
    """Run ``bench/<script> --smoke``; skipped without PyTorch (``why_torch``: what the
    benchmark needs it for), failed unless it exits 0 and prints ``smoke: OK``. Returns its
    standard output."""
    # Importing (not only finding) torch: make sanitize hides it behind a stub that raises.
    pytest.importorskip("torch", reason=why_torch)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), "--smoke"],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "smoke: OK" in proc.stdout, proc.stdout
    return proc.stdout
