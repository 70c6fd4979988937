"""bench/backward.py --smoke: the backward benchmark runs end to end on tiny layers (strides,
padding, dilation, groups, depthwise, float64, no bias; masks grad_input only, grad_weight only
and all three; 1 and 2 threads), conv3d_cpu.conv3d_backward returns None exactly for the
gradients not asked for, PyTorch's dtypes and shapes, and every gradient is within 1e-3
relative error of torch.ops.aten.convolution_backward's.
"""
from bench_smoke import run_smoke


def test_backward_smoke():
    run_smoke("backward.py", "the benchmark's reference is PyTorch")
