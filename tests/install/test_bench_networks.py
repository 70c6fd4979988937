"""bench/networks.py --smoke: the whole-network benchmark runs end to end on tiny inputs (every
network: stock PyTorch, its Conv3d layers through conv3d_cpu.conv3d, conv3d_cpu.Conv3d and the
PyTorch bridge conv3d_cpu.torch.convert, and training steps of stock PyTorch and of the bridge;
plus a check of every padding mode). Each output is within 1e-3 relative error of PyTorch's,
and the bridge's training step also in its loss and (in a float64 step) its weight gradients.
"""
import re

from bench_smoke import run_smoke

MODES = ("torch", "functional", "module", "bridge", "torch_train", "bridge_train")


def test_networks_smoke():
    out = run_smoke("networks.py", "the benchmark's networks are torch.nn")
    # Every mode has a timed row (a mode that failed or was skipped shows "n/a" instead).
    for mode in MODES:
        assert re.search(rf"^\S*\s+(1\s+)?{mode}\s+[0-9.]+\*?\s", out, re.M), (mode, out)
    assert "float64 step's weight grads" in out, out
