"""bench/backward.py --smoke: the backward benchmark runs end to end on tiny layers (strides,
padding, dilation, groups, depthwise, float64, no bias; masks grad_input only, grad_weight only
and all three; 1 and 2 threads), conv3d_cpu.conv3d_backward returns None exactly for the
gradients not asked for, PyTorch's dtypes and shapes, and every gradient is within 1e-3
relative error of torch.ops.aten.convolution_backward's.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "backward.py")


def test_backward_smoke():
    # Importing (not only finding) torch: make sanitize hides it behind a stub that raises.
    pytest.importorskip("torch", reason="the benchmark's reference is PyTorch")
    proc = subprocess.run([sys.executable, SCRIPT, "--smoke"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "smoke: OK" in proc.stdout, proc.stdout
