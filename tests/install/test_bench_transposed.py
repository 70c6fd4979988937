"""bench/transposed.py --smoke: the transposed-convolution benchmark runs end to end on tiny
layers (strides 1-3, padding, output_padding, padding that crops, dilation, per-axis
geometry, groups, depthwise, 1x1x1, no bias, float64; 1 and 2 threads), and
conv3d_cpu.conv_transpose3d returns PyTorch's dtype and shape, within 1e-3 relative error of
torch.nn.functional.conv_transpose3d's result.
"""
from bench_smoke import run_smoke


def test_transposed_smoke():
    run_smoke("transposed.py", "the benchmark's reference is PyTorch")
