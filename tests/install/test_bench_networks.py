"""bench/networks.py --smoke: the whole-network benchmark runs end to end on tiny inputs (every
network, stock PyTorch and its Conv3d layers through conv3d_cpu.conv3d and conv3d_cpu.Conv3d,
plus a check of every padding mode) and each output is within 1e-3 relative error of PyTorch's.
"""
from bench_smoke import run_smoke


def test_networks_smoke():
    run_smoke("networks.py", "the benchmark's networks are torch.nn")
