#!/usr/bin/env python
"""Benchmark whole 3D CNNs: stock PyTorch, the same networks with their Conv3d layers through
conv3d_cpu, and the network compiled by OpenVINO.

The networks are defined below in ``torch.nn`` (random weights from a fixed seed, eval mode,
float32, no dependency beyond PyTorch):

* ``unet`` -- 5-level 3D U-Net: 16-32-64-128-256 channels, two 3x3x3 convolutions with
  InstanceNorm3d(affine) + LeakyReLU per level, max-pool down, ConvTranspose3d up, skip
  concatenation, 1x1x1 head.
* ``nnunet`` -- nnU-Net 3d_fullres-like: 32-64-128-256-320-320, the first convolution of each
  level after the first with stride 2, instance norm + LeakyReLU, ConvTranspose3d upsampling,
  skips.
* ``vnet`` -- V-Net (Milletari et al. 2016): 5x5x5 convolutions, PReLU, residual stages,
  2x2x2 stride-2 down convolutions, ConvTranspose3d up.
* ``r3d18`` / ``r2plus1d18`` -- torchvision's R3D-18 and R(2+1)D-18 re-written (stems,
  BasicBlocks, BatchNorm3d, the (2+1)D mid-channel formula); BatchNorm statistics calibrated
  on the input once (one training-mode forward), then eval mode.
* ``x3d_s`` -- X3D-S-like (pytorchvideo's create_x3d at its X3D-S settings): (1,3,3) +
  depthwise (5,1,1) stem, bottlenecks of 1x1x1 expand, 3x3x3 depthwise (groups=channels),
  squeeze-excitation on every other block, 1x1x1 project, BatchNorm, residuals; a projected
  pooling head.

Modes (``--modes``):

* ``torch`` -- stock PyTorch (the reference for speedup and error; always run).
* ``functional`` -- every nn.Conv3d replaced by a module calling
  ``conv3d_cpu.conv3d(x.numpy(), weight.numpy(), bias, ..., num_threads=T)``, every
  nn.ConvTranspose3d by one calling ``conv3d_cpu.conv_transpose3d``.
* ``module`` -- every nn.Conv3d replaced by a ``conv3d_cpu.Conv3d`` with the same arguments,
  every nn.ConvTranspose3d by a ``conv3d_cpu.ConvTranspose3d``, loaded with the layer's
  weights once, at conversion.
* ``openvino`` -- the stock network through ``openvino.convert_model`` and the CPU plugin
  (f32, INFERENCE_NUM_THREADS = T, latency hint, one stream); optional.
* ``bridge`` -- the stock network converted by the PyTorch bridge,
  ``conv3d_cpu.torch.convert``: every nn.Conv3d / nn.ConvTranspose3d becomes a
  ``conv3d_cpu.torch.Conv3d`` / ``ConvTranspose3d`` (a class swap: the same module objects and
  parameters, forward through the custom ops ``torch.ops.conv3d_cpu.*``, threads
  ``torch.get_num_threads()``), timed like ``torch``.
* ``torch_train`` / ``bridge_train`` -- one training step instead of a forward: the network in
  train mode (BatchNorm on batch statistics), every parameter requiring grad,
  ``zero_grad`` + forward + ``y.float().pow(2).mean()`` + ``backward`` + a
  ``torch.optim.SGD`` (lr 1e-3) step; stock layers, or converted by the bridge (its convolutions'
  backward through ``conv3d_cpu``). ``torch_train`` is their reference (run whenever a training
  mode is asked for); not in the default modes (a step costs ~3 forwards).

In our modes every other layer (the normalizations, activations, pooling and concatenations)
stays in PyTorch.

Processes: each (network, mode, thread count) runs in a fresh subprocess with
``OMP_NUM_THREADS=T`` and ``torch.set_num_threads(T)`` (``--fresh network`` shares one process
among the modes of a network at one thread count, the ``--quick`` default), so that the cold
time is the first forward of a fresh process and no library's threads interfere with
another's. Metrics per (network, mode, threads): cold ms (first forward after building or
converting), warm ms (median of repeated forwards after one warm-up; adaptive, see ``--reps``),
conv share (fraction of the warm forward spent in the Conv3d and ConvTranspose3d layers, timed with
time.perf_counter in forward hooks or in our wrappers, and in the training modes also in their
backward autograd nodes; n/a for OpenVINO), speedup (torch warm / mode warm) and max relative
error (max|y - y_torch| / max|y_torch|). The training modes: the same with a step for a forward,
against ``torch_train``, the error that of the first step's output, and also its loss's and
its convolution weight gradients' (the worst layer's max|g - g_ref| / max|g_ref|, see
``grad_error``; reported, not judged: in float32 these random networks amplify the forward's
rounding into large gradient differences, so ``--smoke`` judges the gradients of a float64
step). The torch-side modes copy the stock network outside inference mode, as a user's model
is, and time it under ``torch.inference_mode()`` (training modes: with grad).

Examples::

    python bench/networks.py                          # all networks, threads 1,2
    python bench/networks.py --quick                  # smaller inputs, fewer runs
    python bench/networks.py --only unet,r3d18 --threads 2 --modes torch,module
    python bench/networks.py --quick --modes torch,bridge,torch_train,bridge_train
    python bench/networks.py --smoke                  # tiny inputs; exit 1 if an error > 1e-3
"""
import argparse
import copy
import dataclasses
import datetime
import functools
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

if __name__ == "__main__" and importlib.util.find_spec("torch") is None:
    print("bench/networks.py: PyTorch is not installed; the networks are built with torch.nn, "
          "so there is nothing to run (skipped)", flush=True)
    sys.exit(1 if "--smoke" in sys.argv else 0)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import run as suite_run  # noqa: E402  (machine info, table and number formatting)

say = suite_run.say
SMOKE_TOL = 1e-3          # --smoke fails above this max relative error
WORKER_TIMEOUT = 1800     # seconds per worker process


# =============================================================================================
# Networks
# =============================================================================================
def conv_norm_act(cin, cout, stride=1):
    """3x3x3 convolution + InstanceNorm3d(affine) + LeakyReLU(0.01), the U-Net unit."""
    return [nn.Conv3d(cin, cout, 3, stride, 1), nn.InstanceNorm3d(cout, affine=True),
            nn.LeakyReLU(0.01, inplace=True)]


class UNet3D(nn.Module):
    """5-level 3D U-Net: per level two conv + instance norm + LeakyReLU units, max-pool down,
    ConvTranspose3d(2, stride 2) up, skip concatenation, 1x1x1 head."""

    def __init__(self, in_channels=1, classes=2, widths=(16, 32, 64, 128, 256)):
        super().__init__()
        self.down, self.up, self.dec = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(nn.Sequential(*conv_norm_act(c, w), *conv_norm_act(w, w)))
            c = w
        self.pool = nn.MaxPool3d(2)
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose3d(c, w, 2, stride=2))
            self.dec.append(nn.Sequential(*conv_norm_act(2 * w, w), *conv_norm_act(w, w)))
            c = w
        self.head = nn.Conv3d(c, classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(self.pool(x) if i else x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


class NnUNet3d(nn.Module):
    """nnU-Net 3d_fullres-like PlainConvUNet: 6 stages of two conv + instance norm + LeakyReLU
    units, the first with stride 2 from stage 1 on (no pooling), ConvTranspose3d(2, stride 2)
    upsampling, skip concatenation, 1x1x1 segmentation head (deep supervision off)."""

    def __init__(self, in_channels=1, classes=3, widths=(32, 64, 128, 256, 320, 320)):
        super().__init__()
        self.enc, self.up, self.dec = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            self.enc.append(nn.Sequential(*conv_norm_act(c, w, 1 if i == 0 else 2),
                                          *conv_norm_act(w, w)))
            c = w
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose3d(c, w, 2, stride=2))
            self.dec.append(nn.Sequential(*conv_norm_act(2 * w, w), *conv_norm_act(w, w)))
            c = w
        self.seg = nn.Conv3d(c, classes, 1)

    def forward(self, x):
        skips = []
        for stage in self.enc:
            x = stage(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.seg(x)


def conv5_prelu(channels):
    return [nn.Conv3d(channels, channels, 5, padding=2), nn.PReLU(channels)]


class VNetInput(nn.Module):
    def __init__(self, channels=16):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv3d(1, channels, 5, padding=2)
        self.act = nn.PReLU(channels)

    def forward(self, x):
        return self.act(self.conv(x) + x.expand(-1, self.channels, -1, -1, -1))


class VNetDown(nn.Module):
    def __init__(self, cin, convs):
        super().__init__()
        c = 2 * cin
        self.down = nn.Sequential(nn.Conv3d(cin, c, 2, stride=2), nn.PReLU(c))
        self.ops = nn.Sequential(*[m for _ in range(convs) for m in conv5_prelu(c)])
        self.act = nn.PReLU(c)

    def forward(self, x):
        down = self.down(x)
        return self.act(self.ops(down) + down)


class VNetUp(nn.Module):
    def __init__(self, cin, cout, convs):
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose3d(cin, cout // 2, 2, stride=2),
                                nn.PReLU(cout // 2))
        self.ops = nn.Sequential(*[m for _ in range(convs) for m in conv5_prelu(cout)])
        self.act = nn.PReLU(cout)

    def forward(self, x, skip):
        xcat = torch.cat([self.up(x), skip], 1)
        return self.act(self.ops(xcat) + xcat)


class VNet(nn.Module):
    """V-Net: 5x5x5 convolutions with PReLU in residual stages (1, 2, 3, 3 convolutions on the
    way down after the input stage, 3, 3, 2, 1 on the way up), 2x2x2 stride-2 down
    convolutions, ConvTranspose3d(2, stride 2) up, 5x5x5 + 1x1x1 output (no normalization, as
    in the paper; stage sizes of the vnet.pytorch re-implementation)."""

    def __init__(self, classes=2):
        super().__init__()
        self.inp = VNetInput(16)
        self.down32, self.down64 = VNetDown(16, 1), VNetDown(32, 2)
        self.down128, self.down256 = VNetDown(64, 3), VNetDown(128, 2)
        self.up256, self.up128 = VNetUp(256, 256, 2), VNetUp(256, 128, 2)
        self.up64, self.up32 = VNetUp(128, 64, 1), VNetUp(64, 32, 1)
        self.out = nn.Sequential(nn.Conv3d(32, classes, 5, padding=2), nn.PReLU(classes),
                                 nn.Conv3d(classes, classes, 1))

    def forward(self, x):
        x16 = self.inp(x)
        x32 = self.down32(x16)
        x64 = self.down64(x32)
        x128 = self.down128(x64)
        x = self.down256(x128)
        x = self.up256(x, x128)
        x = self.up128(x, x64)
        x = self.up64(x, x32)
        x = self.up32(x, x16)
        return self.out(x)


# --- torchvision's VideoResNet (R3D-18, R(2+1)D-18) ------------------------------------------
def conv3d_simple(cin, cout, mid, stride=1):
    return nn.Conv3d(cin, cout, 3, stride, 1, bias=False)


def conv2plus1d(cin, cout, mid, stride=1):
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, builder, stride=1, downsample=None):
        super().__init__()
        mid = (cin * planes * 3 * 3 * 3) // (cin * 3 * 3 + 3 * planes)
        self.conv1 = nn.Sequential(builder(cin, planes, mid, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(builder(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + res)


class VideoResNet(nn.Module):
    """torchvision.models.video.VideoResNet with BasicBlock, layers (2, 2, 2, 2)."""

    def __init__(self, stem, builder, classes=400):
        super().__init__()
        self.stem = stem
        cin, layers = 64, []
        for planes, stride in zip((64, 128, 256, 512), (1, 2, 2, 2)):
            down = None
            if stride != 1 or cin != planes:
                down = nn.Sequential(nn.Conv3d(cin, planes, 1, stride, bias=False),
                                     nn.BatchNorm3d(planes))
            layers.append(nn.Sequential(BasicBlock(cin, planes, builder, stride, down),
                                        BasicBlock(planes, planes, builder)))
            cin = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, classes)
        for m in self.modules():   # torchvision's initialization
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.avgpool(x).flatten(1))


def r3d18():
    stem = nn.Sequential(nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                         nn.BatchNorm3d(64), nn.ReLU(inplace=True))
    return VideoResNet(stem, conv3d_simple)


def r2plus1d18():
    stem = nn.Sequential(nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
                         nn.BatchNorm3d(45), nn.ReLU(inplace=True),
                         nn.Conv3d(45, 64, (3, 1, 1), 1, (1, 0, 0), bias=False),
                         nn.BatchNorm3d(64), nn.ReLU(inplace=True))
    return VideoResNet(stem, conv2plus1d)


# --- X3D-S ------------------------------------------------------------------------------------
def round_width(width, multiplier, min_width=8, divisor=8):
    """pytorchvideo's channel rounding."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * width else out


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1, self.fc2 = nn.Conv3d(channels, reduced, 1), nn.Conv3d(reduced, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class X3DBlock(nn.Module):
    def __init__(self, cin, inner, cout, stride, se):
        super().__init__()
        self.a = nn.Sequential(nn.Conv3d(cin, inner, 1, bias=False), nn.BatchNorm3d(inner),
                               nn.ReLU(inplace=True))
        self.b = nn.Sequential(
            nn.Conv3d(inner, inner, 3, (1, stride, stride), 1, groups=inner, bias=False),
            nn.BatchNorm3d(inner),
            SqueezeExcite(inner, round_width(inner, 0.0625)) if se else nn.Identity(),
            nn.SiLU())
        self.c = nn.Sequential(nn.Conv3d(inner, cout, 1, bias=False), nn.BatchNorm3d(cout))
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, (1, stride, stride), bias=False), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        res = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.c(self.b(self.a(x))) + res)


class X3D(nn.Module):
    """X3D-S-like: pytorchvideo's create_x3d with width factor 2, depth factor 2.2,
    bottleneck factor 2.25 (stage widths 24-48-96-192, inner 54-108-216-432, depths
    3-5-11-7); the head pools adaptively instead of with a fixed (T, H/32, W/32) window."""

    def __init__(self, classes=400):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 24, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False),
            nn.Conv3d(24, 24, (5, 1, 1), 1, (2, 0, 0), groups=24, bias=False),
            nn.BatchNorm3d(24), nn.ReLU(inplace=True))
        cin, stages = 24, []
        for base, depth in zip((12, 24, 48, 96), (1, 2, 5, 3)):
            cout = round_width(base, 2.0)
            inner = int(2.25 * cout)
            blocks = []
            for i in range(math.ceil(2.2 * depth)):
                blocks.append(X3DBlock(cin, inner, cout, 2 if i == 0 else 1, se=(i + 1) % 2))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.Conv3d(cin, 432, 1, bias=False), nn.BatchNorm3d(432), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool3d(1), nn.Conv3d(432, 2048, 1, bias=False), nn.ReLU(inplace=True))
        self.proj = nn.Linear(2048, classes)

    def forward(self, x):
        return self.proj(self.head(self.stages(self.stem(x))).flatten(1))


class PaddingModes(nn.Module):
    """Not a real network (``--smoke`` only): every padding mode, 'same', groups, dilation and
    stride, to check that the replaced layers keep PyTorch's semantics."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(2, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
            nn.Conv3d(4, 4, 3, padding=(1, 2, 0), padding_mode="replicate", dilation=(1, 2, 1)),
            nn.Conv3d(4, 4, (3, 1, 2), padding="same", padding_mode="circular", groups=2),
            nn.Conv3d(4, 6, 3, stride=2, padding=2, dilation=2, padding_mode="circular"),
            nn.Conv3d(6, 3, (2, 3, 1), padding="same", bias=False))

    def forward(self, x):
        return self.body(x)


@dataclasses.dataclass(frozen=True)
class Net:
    name: str
    build: object          # () -> nn.Module
    inputs: dict           # preset -> input shape (N, C, D, H, W)
    about: str
    calibrate_bn: bool = False
    smoke_only: bool = False


NETWORKS = [
    Net("unet", UNet3D, {"full": (1, 1, 96, 96, 96), "quick": (1, 1, 48, 48, 48),
                         "smoke": (1, 1, 32, 32, 32)},
        "5-level 3D U-Net, 16-256 ch, instance norm"),
    Net("nnunet", NnUNet3d, {"full": (1, 1, 96, 96, 96), "quick": (1, 1, 64, 32, 32),
                             "smoke": (1, 1, 64, 32, 32)},
        "nnU-Net 3d_fullres-like, 32-320 ch, strided convs"),
    Net("vnet", VNet, {"full": (1, 1, 64, 64, 64), "quick": (1, 1, 32, 32, 32),
                       "smoke": (1, 1, 16, 16, 16)},
        "V-Net, 5x5x5 convs, PReLU, residual stages"),
    Net("r3d18", r3d18, {"full": (1, 3, 16, 112, 112), "quick": (1, 3, 8, 56, 56),
                         "smoke": (1, 3, 4, 32, 32)},
        "R3D-18 (torchvision), BatchNorm", calibrate_bn=True),
    Net("r2plus1d18", r2plus1d18, {"full": (1, 3, 16, 112, 112), "quick": (1, 3, 8, 56, 56),
                                   "smoke": (1, 3, 4, 32, 32)},
        "R(2+1)D-18 (torchvision), BatchNorm", calibrate_bn=True),
    Net("x3d_s", X3D, {"full": (1, 3, 13, 160, 160), "quick": (1, 3, 13, 112, 112),
                       "smoke": (1, 3, 4, 32, 32)},
        "X3D-S-like, depthwise 3x3x3, SE", calibrate_bn=True),
    Net("padding_modes", PaddingModes, {"smoke": (1, 2, 9, 10, 11)},
        "check: reflect/replicate/circular/'same' padding", smoke_only=True),
]
NET_BY_NAME = {n.name: n for n in NETWORKS}
REAL_NETWORKS = [n.name for n in NETWORKS if not n.smoke_only]

MODES = ("torch", "functional", "module", "openvino", "bridge", "torch_train", "bridge_train")
DEFAULT_MODES = ("torch", "functional", "module", "openvino", "bridge")
# Training steps (forward + loss + backward + SGD step) instead of forwards; torch_train is
# their reference, as torch is the others'. Not in DEFAULT_MODES: they would more than double
# a full run (a step costs ~3 forwards, two more modes), and the full inputs' activations for
# backward take GBs (nnunet at 96^3).
TRAIN_MODES = ("torch_train", "bridge_train")
SMOKE_MODES = ("torch", "functional", "module", "bridge") + TRAIN_MODES
TRAIN_LR = 1e-3
TRAIN_ABOUT = ("train mode, every parameter requiring grad; zero_grad(set_to_none) + forward + "
               f"y.float().pow(2).mean() + backward + torch.optim.SGD(lr={TRAIN_LR:g}) step")
# Modes that cannot run in this version ({mode: why}); none at present.
UNAVAILABLE = {}


def reference_mode(mode):
    """The mode ``mode``'s speedup and errors are measured against."""
    return "torch_train" if mode in TRAIN_MODES else "torch"


def train_loss(y):
    """The training modes' loss: mean(y^2), in float32 at least (float64 kept)."""
    return y.to(torch.promote_types(y.dtype, torch.float32)).pow(2).mean()


def build_network(net, shape, seed):
    """The stock network (eval mode, float32, no gradients) and its input, both from
    ``seed``; networks with BatchNorm get their running statistics from one training-mode
    forward of that input (cumulative average, so exactly that batch's statistics)."""
    torch.manual_seed(seed)
    model = net.build().float()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
    for p in model.parameters():
        p.requires_grad_(False)
    if net.calibrate_bn:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.reset_running_stats()
                m.momentum = None
        model.train()
        with torch.no_grad():
            model(x)
    return model.eval(), x


# =============================================================================================
# Modes: layer clock, replaced convolutions, OpenVINO
# =============================================================================================
@dataclasses.dataclass
class Geometry:
    kind: str              # "conv" (Conv3d) or "convT" (ConvTranspose3d)
    cin: int
    cout: int
    k: tuple
    stride: tuple
    padding: object
    dilation: tuple
    groups: int
    padding_mode: str

    @classmethod
    def of(cls, m):
        kind = "convT" if isinstance(m, nn.ConvTranspose3d) else "conv"
        return cls(kind, m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                   m.padding if isinstance(m.padding, str) else tuple(m.padding),
                   tuple(m.dilation), m.groups, m.padding_mode)

    def describe(self, in_shape):
        def t(v):
            return "x".join(map(str, v)) if len(set(v)) > 1 else str(v[0])
        s = f"{self.cin}->{self.cout} k{t(self.k)}"
        if self.stride != (1, 1, 1):
            s += f" s{t(self.stride)}"
        if isinstance(self.padding, str) or any(self.padding):
            s += f" p{self.padding if isinstance(self.padding, str) else t(self.padding)}"
        if self.dilation != (1, 1, 1):
            s += f" d{t(self.dilation)}"
        if self.groups != 1:
            s += f" g{self.groups}"
        if self.padding_mode != "zeros":
            s += f" {self.padding_mode}"
        return (("ConvT " if self.kind == "convT" else "") + s + " @"
                + "x".join(map(str, in_shape[2:])))

    def flops(self, x, y):
        kvol = math.prod(self.k)
        if self.kind == "convT":
            return 2 * x.numel() * (self.cout // self.groups) * kvol
        return 2 * y.numel() * (self.cin // self.groups) * kvol


class Clock:
    """Seconds spent in each convolution layer during the current forward (perf_counter in
    forward hooks or in our wrappers; in a training step the forward and the backward, timed
    by hooks on the layer output's autograd node), and each layer's geometry from its first
    call."""

    def __init__(self):
        self.seconds, self.layers, self._t0 = {}, {}, {}

    def reset(self):
        self.seconds = dict.fromkeys(self.seconds, 0.0)

    def stop(self, name, geo, t0, x, y):
        self.seconds[name] = self.seconds.get(name, 0.0) + (time.perf_counter() - t0)
        if name not in self.layers:
            self.layers[name] = dict(name=name, kind=geo.kind, layer=geo.describe(x.shape),
                                     flops=geo.flops(x, y))

    def total(self, kind):
        return sum(s for n, s in self.seconds.items() if self.layers[n]["kind"] == kind)

    # forward hooks (stock layers)
    def pre_hook(self, name, module, args):
        self._t0[name] = time.perf_counter()

    def post_hook(self, name, geo, module, args, out):
        self.stop(name, geo, self._t0.pop(name), args[0], out)
        node = out.grad_fn
        if node is not None:  # (training modes) the layer's backward: its autograd node
            node.register_prehook(functools.partial(self.backward_start, name))
            node.register_hook(functools.partial(self.backward_stop, name))

    def backward_start(self, name, grad_outputs):
        self._t0[name, "backward"] = time.perf_counter()

    def backward_stop(self, name, grad_inputs, grad_outputs):
        self.seconds[name] += time.perf_counter() - self._t0.pop((name, "backward"))

    def hook(self, model, types):
        for name, m in model.named_modules():
            if isinstance(m, types):
                m.register_forward_pre_hook(functools.partial(self.pre_hook, name))
                m.register_forward_hook(functools.partial(self.post_hook, name, Geometry.of(m)))


class FunctionalConv3d(nn.Module):
    """An nn.Conv3d through ``conv3d_cpu.conv3d``: the layer's weight and bias are passed as
    numpy views on every call. A padding_mode other than 'zeros' pads in torch first
    (F.pad with the layer's own padding, as nn.Conv3d does), then convolves unpadded."""

    def __init__(self, conv, name, clock, threads):
        super().__init__()
        import conv3d_cpu
        self._conv3d, self.name, self.clock, self.threads = conv3d_cpu.conv3d, name, clock, threads
        self.geo = Geometry.of(conv)
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        self.padding, self.pad = conv.padding, None
        if conv.padding_mode != "zeros":
            self.pad, self.padding = tuple(conv._reversed_padding_repeated_twice), 0
        self.padding_mode = conv.padding_mode

    def forward(self, x):
        t0 = time.perf_counter()
        xp = x if self.pad is None else F.pad(x, self.pad, mode=self.padding_mode)
        b = None if self.bias is None else self.bias.detach().numpy()
        y = torch.from_numpy(self._conv3d(
            xp.detach().numpy(), self.weight.detach().numpy(), b, self.stride, self.padding,
            self.dilation, self.groups, num_threads=self.threads))
        self.clock.stop(self.name, self.geo, t0, x, y)
        return y


class FunctionalConvTranspose3d(nn.Module):
    """An nn.ConvTranspose3d through ``conv3d_cpu.conv_transpose3d`` (weight and bias as numpy
    views on every call)."""

    def __init__(self, conv, name, clock, threads):
        super().__init__()
        import conv3d_cpu
        self._op, self.name, self.clock, self.threads = (conv3d_cpu.conv_transpose3d, name,
                                                         clock, threads)
        self.geo = Geometry.of(conv)
        self.weight, self.bias = conv.weight, conv.bias
        self.args = (conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation)

    def forward(self, x):
        t0 = time.perf_counter()
        b = None if self.bias is None else self.bias.detach().numpy()
        y = torch.from_numpy(self._op(x.detach().numpy(), self.weight.detach().numpy(), b,
                                      *self.args, num_threads=self.threads))
        self.clock.stop(self.name, self.geo, t0, x, y)
        return y


class ModuleConv3d(nn.Module):
    """An nn.Conv3d (nn.ConvTranspose3d) through a ``conv3d_cpu.Conv3d``
    (``ConvTranspose3d``) built with the same arguments and loaded with its weights once,
    here (its threads: OMP_NUM_THREADS)."""

    def __init__(self, conv, name, clock):
        super().__init__()
        import conv3d_cpu
        self.name, self.clock, self.geo = name, clock, Geometry.of(conv)
        if isinstance(conv, nn.ConvTranspose3d):
            self.conv = conv3d_cpu.ConvTranspose3d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.output_padding, conv.groups, bias=conv.bias is not None,
                dilation=conv.dilation, dtype=np.float32, rng=0)
        else:
            self.conv = conv3d_cpu.Conv3d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.dilation, conv.groups, bias=conv.bias is not None,
                padding_mode=conv.padding_mode, dtype=np.float32, rng=0)
        sd = {"weight": conv.weight.detach().numpy()}
        if conv.bias is not None:
            sd["bias"] = conv.bias.detach().numpy()
        self.conv.load_state_dict(sd)

    def forward(self, x):
        t0 = time.perf_counter()
        y = torch.from_numpy(self.conv(x.detach().numpy()))
        self.clock.stop(self.name, self.geo, t0, x, y)
        return y


def replace_convs(model, make):
    """Replace every nn.Conv3d and nn.ConvTranspose3d of ``model`` (in place) by
    ``make(name, conv)``."""
    for name, m in list(model.named_modules()):
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, make(name, m))
    return model


class Unsupported(Exception):
    """The mode cannot run here (a note in the table)."""


def stock_copy(stock):
    """A deepcopy of ``stock`` made outside inference mode, whatever mode the caller is in:
    parameters as a user's model has them (the worker builds the modes in inference mode, where
    a copy's parameters would be inference tensors; the bridge reads its weights' version
    counters, which inference tensors do not have)."""
    with torch.inference_mode(False):
        return copy.deepcopy(stock)


def bridge_convert(model):
    """``model`` converted in place by ``conv3d_cpu.torch.convert``, and how many layers it
    converted."""
    try:
        import conv3d_cpu.torch as bridge
    except ImportError as e:  # (torch < 2.4)
        raise Unsupported(f"conv3d_cpu.torch unavailable: {e}") from None
    bridge.convert(model)
    return model, sum(isinstance(m, (bridge.Conv3d, bridge.ConvTranspose3d))
                      for m in model.modules())


def training_step(model, x):
    """A no-argument callable running one training step of ``model`` (switched to train mode,
    its parameters to requiring grad) on ``x``; returns the step's output, detached. Its
    attribute ``first`` gets the first step's loss and convolution weight gradients ({layer
    name: tensor}, kept tensors: ``zero_grad(set_to_none=True)`` gives the next step new
    ones)."""
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    convs = [(name, m.weight) for name, m in model.named_modules()
             if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    opt = torch.optim.SGD(model.parameters(), lr=TRAIN_LR)
    first = {}

    def step():
        opt.zero_grad(set_to_none=True)
        y = model(x)
        loss = train_loss(y)
        loss.backward()
        opt.step()
        if not first:
            first.update(loss=loss.item(), grads={name: w.grad for name, w in convs
                                                  if w.grad is not None})
        return y.detach()
    step.first = first
    return step


def float64_gradients(mode, stock, x):
    """A training mode's first-step convolution weight gradients in float64 (--smoke: float64
    leaves the backward's accuracy alone to judge; in float32 these networks turn the
    convolutions' rounding into large gradient differences, see the README)."""
    model = stock_copy(stock).double()
    if mode == "bridge_train":
        bridge_convert(model)
    step = training_step(model, x.double())
    step()
    return {n: g.numpy() for n, g in step.first["grads"].items()}


def make_mode(mode, stock, x, threads, clock):
    """A no-argument callable running one forward of ``stock`` in ``mode`` (a training step in
    the training modes; output: a tensor or an array) and a dict of details. Everything done
    here counts as setup."""
    info = {}
    if mode in ("torch", "functional", "module", "bridge") + TRAIN_MODES:
        model = stock_copy(stock)
        if mode == "functional":
            replace_convs(model, lambda name, c: (
                FunctionalConvTranspose3d if isinstance(c, nn.ConvTranspose3d)
                else FunctionalConv3d)(c, name, clock, threads))
        elif mode == "module":
            replace_convs(model, lambda name, c: ModuleConv3d(c, name, clock))
        elif mode in ("bridge", "bridge_train"):
            model, info["bridge_layers"] = bridge_convert(model)
        # (layers left are stock ones, or the bridge's subclasses of them)
        clock.hook(model, (nn.Conv3d, nn.ConvTranspose3d))
        if mode in TRAIN_MODES:
            info["train"] = TRAIN_ABOUT
            return training_step(model, x), info
        return (lambda: model(x)), info
    if mode == "openvino":
        try:
            peer = suite_run.systems.OpenVinoPeer()
        except ImportError as e:
            raise Unsupported(f"openvino not installed ({e.name or e})") from None
        ov, props, hints = peer.ov, peer.props, peer.hints
        compiled = peer.compile(ov.convert_model(stock, example_input=x), threads)
        request = compiled.create_infer_request()
        info.update(openvino=ov.get_version(),
                    inference_num_threads=int(compiled.get_property(props.inference_num_threads)),
                    inference_precision=str(compiled.get_property(hints.inference_precision)))
        xn = x.numpy()

        def forward():
            request.infer([xn], share_inputs=True, share_outputs=True)
            return request.get_output_tensor(0).data
        return forward, info
    raise Unsupported(f"unknown mode {mode!r}")


# =============================================================================================
# Worker (one fresh process per (network, mode, threads) by default)
# =============================================================================================
@dataclasses.dataclass
class Policy:
    reps: int = None        # fixed number of timed forwards
    warmup: int = 1         # untimed forwards after the cold one
    min_reps: int = 3
    max_reps: int = 30
    target: float = 3.0     # seconds of timed forwards

    def done(self, times):
        if self.reps:
            return len(times) >= self.reps
        return len(times) >= self.max_reps or (len(times) >= self.min_reps
                                               and sum(times) >= self.target)

    def describe(self):
        head = (f"cold = first forward after building/converting; then {self.warmup} untimed "
                f"warm-up forward(s), then ")
        if self.reps:
            return head + f"{self.reps} timed forwards; median reported"
        return head + (f"timed forwards until >= {self.min_reps} and >= {self.target:g} s, or "
                       f"{self.max_reps}; median reported")


def to_numpy(y):
    return y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def rel_err(y, ref):
    if y.shape != ref.shape:
        raise ValueError(f"output shape {y.shape} differs from torch's {ref.shape}")
    diff = float(np.max(np.abs(y.astype(np.float64) - ref.astype(np.float64))))
    return diff, diff / (float(np.max(np.abs(ref))) or 1.0)


def time_forward(forward, clock, policy):
    """(cold output, record) for one mode."""
    rec = {}
    clock.reset()
    t0 = time.perf_counter()
    y = forward()
    rec["cold_s"] = time.perf_counter() - t0
    rec["cold_conv_s"] = clock.total("conv") if clock.layers else None
    y = to_numpy(y).copy()
    for _ in range(policy.warmup):
        forward()
    times, conv, convt, per_layer = [], [], [], {}
    contention = suite_run.Contention()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while not policy.done(times):
            clock.reset()
            t0 = time.perf_counter()
            forward()
            times.append(time.perf_counter() - t0)
            conv.append(clock.total("conv"))
            convt.append(clock.total("convT"))
            for name, s in clock.seconds.items():
                per_layer.setdefault(name, []).append(s)
    finally:
        if gc_was_enabled:
            gc.enable()
    rec.update(warm_s=statistics.median(times), min_s=min(times), runs=len(times),
               times_s=times, other_cpu_cores=contention.other_cores())
    if clock.layers:
        rec["conv_share"] = sum(conv) / sum(times)
        rec["convT_share"] = sum(convt) / sum(times)
        rec["layers"] = [dict(clock.layers[n], median_s=statistics.median(s))
                         for n, s in per_layer.items()]
    return y, rec


GRAD_FLOOR = 1e-6  # a layer's gradient error: relative to max(its max|g_ref|, this x the largest)


def grad_error(grads, ref):
    """(worst error, layer): over the convolution layers, max|g - g_ref| / max(max|g_ref|,
    GRAD_FLOOR x the largest max|g_ref| of the network). (The floor: a layer whose gradient
    is zero but for rounding, as X3D's squeeze-excitation fc1 after a train-mode BatchNorm at
    batch 1, whose pooled input is the norm's shift, is not divided by its noise.)"""
    scale = {n: float(np.max(np.abs(g))) for n, g in ref.items()}
    floor = GRAD_FLOOR * max(scale.values(), default=0.0)
    return max(((float(np.max(np.abs(grads[n].astype(np.float64) - g))) / (max(scale[n], floor)
                                                                          or 1.0), n)
                for n, g in ref.items() if n in grads), default=(None, None))


class Refs:
    """The reference modes' results (torch's output; torch_train's first step: output, loss,
    convolution weight gradients, and in --smoke those of a float64 first step) of one network
    at one thread count, kept in memory and in files at ``prefix`` for the later processes."""

    def __init__(self, prefix):
        self.prefix, self.loaded = prefix, {}

    def save(self, mode, y, first):
        ref = dict(y=y)
        if first:
            ref["loss"] = np.float64(first["loss"])
            for key in ("grads", "grads64"):
                ref.update({f"{key}:{n}": g for n, g in first.get(key, {}).items()})
        self.loaded[mode] = ref
        np.savez(f"{self.prefix}-{mode}.npz", **ref)

    def get(self, mode):
        if mode not in self.loaded and os.path.exists(f"{self.prefix}-{mode}.npz"):
            with np.load(f"{self.prefix}-{mode}.npz") as f:
                self.loaded[mode] = dict(f)
        return self.loaded.get(mode)

    def errors(self, mode, y, first):
        """The errors against ``mode``'s results (ValueError: output shapes differ); {} when
        it has none."""
        ref = self.get(mode)
        if ref is None:
            return {}
        err = dict(zip(("max_abs_err", "max_rel_err"), rel_err(y, ref["y"])))
        if first and "loss" in ref:
            err["loss_rel_err"] = abs(first["loss"] - float(ref["loss"])) / (
                abs(float(ref["loss"])) or 1.0)
            for key, name in (("grads", "grad"), ("grads64", "grad64")):
                g_ref = {k.partition(":")[2]: v for k, v in ref.items()
                         if k.startswith(key + ":")}
                if g_ref and first.get(key):
                    err[f"{name}_rel_err"], err[f"{name}_worst_layer"] = grad_error(
                        first[key], g_ref)
        return err


def worker(spec):
    """Run ``spec`` (a dict: networks, modes, threads, preset, seed, cache, policy); returns
    the list of records."""
    threads = spec["threads"]
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    policy = Policy(**spec["policy"])
    cache = spec["cache"]
    records = []
    for name in spec["networks"]:
        net = NET_BY_NAME[name]
        shape = net.inputs[spec["preset"]]
        state_path = os.path.join(cache, f"{name}.pt")
        t0 = time.perf_counter()
        if os.path.exists(state_path):
            saved = torch.load(state_path)
            torch.manual_seed(spec["seed"])
            stock = net.build().float()
            stock.load_state_dict(saved["state"])
            for p in stock.parameters():
                p.requires_grad_(False)
            stock.eval()
            x = saved["x"]
        else:
            stock, x = build_network(net, shape, spec["seed"])
            if spec.get("save_state"):
                torch.save({"state": stock.state_dict(), "x": x}, state_path)
        build_s = time.perf_counter() - t0
        refs = Refs(os.path.join(cache, f"ref-{name}-T{threads}"))
        for mode in spec["modes"]:
            rec = dict(network=name, mode=mode, threads=threads, input=list(shape),
                       params=sum(p.numel() for p in stock.parameters()), build_s=build_s)
            records.append(rec)
            clock = Clock()
            try:
                with torch.enable_grad() if mode in TRAIN_MODES else torch.inference_mode():
                    t0 = time.perf_counter()
                    forward, info = make_mode(mode, stock, x, threads, clock)
                    rec["setup_s"] = time.perf_counter() - t0
                    rec.update(info)
                    y, timing = time_forward(forward, clock, policy)
                    rec.update(timing)
                    first = getattr(forward, "first", None)
                    if first:
                        first["grads"] = {n: g.numpy() for n, g in first["grads"].items()}
                        if spec["preset"] == "smoke":
                            first["grads64"] = float64_gradients(mode, stock, x)
            except Unsupported as e:
                rec["note"] = str(e)
                continue
            except Exception as e:  # a failing mode is reported, the others go on
                msg = str(e).strip().splitlines()
                rec["note"] = f"failed: {type(e).__name__}: {msg[0] if msg else ''}"[:300]
                rec["failed"] = True
                continue
            if mode == reference_mode(mode):
                refs.save(mode, y, first)
            else:
                try:
                    rec.update(refs.errors(reference_mode(mode), y, first))
                except ValueError as e:
                    rec["note"], rec["failed"] = str(e), True
            del y, forward, first
            gc.collect()
        del stock, x
        gc.collect()
    return records


def run_worker(spec, env_threads):
    """Run ``worker(spec)`` in a fresh process with OMP_NUM_THREADS=env_threads."""
    fd, out_path = tempfile.mkstemp(suffix=".json", dir=spec["cache"])
    os.close(fd)
    spec = dict(spec, out=out_path)
    env = dict(os.environ, OMP_NUM_THREADS=str(env_threads))
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                               json.dumps(spec)], env=env, capture_output=True, text=True,
                              timeout=WORKER_TIMEOUT)
        with open(out_path) as f:
            text = f.read()
        if proc.returncode == 0 and text:
            return json.loads(text), None
        tail = (proc.stderr.strip() or proc.stdout.strip() or "?").splitlines()[-1]
        return None, f"worker exited with {proc.returncode}: {tail}"[:300]
    except subprocess.TimeoutExpired:
        return None, f"worker timed out after {WORKER_TIMEOUT} s"
    finally:
        os.unlink(out_path)


# =============================================================================================
# Parent: jobs, tables, JSON, chart
# =============================================================================================
def fmt_share(v):
    return "n/a" if v is None else f"{100 * v:.0f}%"


def version_of(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state(root):
    """'<commit>' of the git checkout at ``root`` (where conv3d_cpu was imported from), with a
    remark when its conv3d_cpu/ has uncommitted changes; None outside a checkout."""
    if not os.path.isdir(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "conv3d_cpu"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + (" + uncommitted changes in conv3d_cpu/" if dirty else "")) or None


def network_table(nets, info, preset):
    rows = []
    for name in nets:
        net, i = NET_BY_NAME[name], info.get(name, {})
        shape = net.inputs[preset]
        conv = [lay for lay in i.get("layers", []) if lay["kind"] == "conv"]
        convt = [lay for lay in i.get("layers", []) if lay["kind"] == "convT"]
        rows.append([name, "x".join(map(str, shape)),
                     f"{i['params'] / 1e6:.2f}" if "params" in i else "?",
                     len(conv) if conv else "?", f"{sum(c['flops'] for c in conv) / 1e9:.1f}"
                     if conv else "?", len(convt), f"{sum(c['flops'] for c in convt) / 1e9:.2f}",
                     net.about])
    return suite_run.table(rows, ["network", "input", "params M", "Conv3d", "conv GFLOP",
                                  "ConvT3d", "convT GFLOP", "what"],
                           ["<", "<", ">", ">", ">", ">", ">", "<"])


def main_table(results, nets, thread_counts, modes):
    header = ["network", "T", "mode", "warm ms", "runs", "cold ms", "cold/warm", "conv share",
              "speedup", "max rel err", "setup s"]
    rows, notes = [], {}
    for name in nets:
        for t in thread_counts:
            first = True
            for mode in modes:
                rec = results.get((name, t, mode))
                if rec is None:
                    continue
                row = [name if first else "", t if first else "", mode]
                first = False
                if "warm_s" not in rec:
                    note = rec.get("note", "?")
                    notes.setdefault(note, len(notes) + 1)
                    rows.append(row + [f"n/a [{notes[note]}]"] + [""] * (len(header) - 4))
                    continue
                busy = rec.get("other_cpu_cores")
                row += [suite_run.fmt_ms(rec["warm_s"]) + (
                    "*" if busy is not None and busy > suite_run.BUSY_WARN else ""),
                    rec["runs"], suite_run.fmt_ms(rec["cold_s"]),
                    f"{rec['cold_s'] / rec['warm_s']:.2f}", fmt_share(rec.get("conv_share")),
                    suite_run.fmt_ratio(rec.get("speedup")),
                    "ref" if mode == reference_mode(mode)
                    else suite_run.fmt_err(rec.get("max_rel_err")),
                    f"{rec['setup_s']:.2f}"]
                rows.append(row)
    align = ["<", ">", "<"] + [">"] * (len(header) - 3)
    return suite_run.table(rows, header, align) + "".join(
        f"\n[{i}] {note}" for note, i in notes.items())


def slow_layers(results, nets, t, modes, top=3):
    """Per network and our mode at ``t`` threads, the Conv3d layers that lose most time
    against stock PyTorch's same layer (warm medians)."""
    lines = []
    for name in nets:
        for mode in modes:
            rec = results.get((name, t, mode), {})
            base = results.get((name, t, reference_mode(mode)), {})
            tl = {lay["name"]: lay for lay in base.get("layers", []) if lay["kind"] == "conv"}
            if mode in ("openvino", reference_mode(mode)) or "layers" not in rec or not tl:
                continue
            diffs = []
            for lay in rec["layers"]:
                ref = tl.get(lay["name"])
                if lay["kind"] == "conv" and ref:
                    diffs.append((lay["median_s"] - ref["median_s"], lay, ref))
            diffs.sort(key=lambda d: -d[0])
            parts = [f"{lay['layer']} {1e3 * lay['median_s']:.1f} vs "
                     f"{1e3 * ref['median_s']:.1f} ms" for d, lay, ref in diffs[:top] if d > 0]
            total = sum(d for d, _, _ in diffs)
            lines.append(f"  {name} {mode} T={t}: convs {total * 1e3:+.0f} ms vs "
                         f"{reference_mode(mode)}"
                         + (("; most lost: " + "; ".join(parts)) if parts else ""))
    return lines


def training_lines(results, nets, thread_counts):
    """Per network, thread count and training mode (not the reference): the step's speedup
    and the first step's errors against torch_train."""
    lines = []
    for name in nets:
        for t in thread_counts:
            for mode in TRAIN_MODES:
                rec = results.get((name, t, mode), {})
                if mode == reference_mode(mode) or "warm_s" not in rec:
                    continue
                def err(key):
                    return suite_run.fmt_err(rec.get(key)) or "n/a"
                line = (f"  {name} T={t} {mode}: step speedup "
                        f"{suite_run.fmt_ratio(rec.get('speedup')) or 'n/a'}; output "
                        f"{err('max_rel_err')}, loss {err('loss_rel_err')}, weight grads "
                        f"{err('grad_rel_err')} (worst: {rec.get('grad_worst_layer')})")
                if "grad64_rel_err" in rec:
                    line += (f"; float64 step's weight grads {err('grad64_rel_err')} (worst: "
                             f"{rec.get('grad64_worst_layer')})")
                lines.append(line)
    return lines


def plot(path, results, nets, thread_counts, modes, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    fig, axes = plt.subplots(len(thread_counts), 2, squeeze=False,
                             figsize=(max(10, 1.9 * len(nets) + 4), 4.2 * len(thread_counts)))
    cmap = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(modes))
    for row, t in enumerate(thread_counts):
        ax, ax2 = axes[row]
        for i, mode in enumerate(modes):
            xs = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(nets))]
            recs = [results.get((n, t, mode), {}) for n in nets]
            warm = [1e3 * r.get("warm_s", 0.0) for r in recs]
            ax.bar(xs, warm, width, color=cmap(i), label=f"{mode} warm")
            cold = [(x, 1e3 * r["cold_s"]) for x, r in zip(xs, recs) if "cold_s" in r]
            if cold:
                ax.plot(*zip(*cold), "v", color="k", ms=4,
                        label="cold (first forward)" if i == 0 else None)
            if mode != reference_mode(mode):
                sp = [r.get("speedup") for r in recs]
                ax2.bar(xs, [v or 0.0 for v in sp], width, color=cmap(i), label=mode)
                for x, v in zip(xs, sp):
                    ax2.text(x, v or 1.0, "n/a" if v is None else f"{v:.2f}", ha="center",
                             va="bottom", fontsize=6, rotation=90)
        for a in (ax, ax2):
            a.set_xticks(range(len(nets)))
            a.set_xticklabels(nets, rotation=20, ha="right")
            a.grid(axis="y", which="both", alpha=0.3)
        ax.set_yscale("log")
        ax.set_ylabel("ms per forward or training step (log)"
                      if any(m in TRAIN_MODES for m in modes) else "ms per forward (log)")
        ax.set_title(f"{title}: warm median and cold, {t} thread(s)")
        ax.legend(fontsize=7, ncol=2)
        ax2.axhline(1.0, color="k", ls="--", lw=1)
        ax2.set_yscale("log")
        ax2.set_ylabel("speedup over torch (*_train: torch_train), warm")
        ax2.set_title(f"speedup over torch, {t} thread(s)")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


name_list, int_list = suite_run.name_list, suite_run.int_list  # (the suite's option parsers)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/networks.py",
        description="Whole 3D CNNs: stock PyTorch, their Conv3d layers through conv3d_cpu "
                    "(functional API, Conv3d modules, the PyTorch bridge) and OpenVINO; "
                    "training steps of stock PyTorch and of the bridge.",
        epilog="networks: " + ", ".join(REAL_NETWORKS) + "; modes: " + ", ".join(MODES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", type=name_list, metavar="NET[,NET]", help="networks to run")
    p.add_argument("--threads", type=int_list, default=[1, 2], metavar="T[,T]",
                   help="thread counts, each in fresh processes (default 1,2)")
    p.add_argument("--modes", type=name_list, metavar="M[,M]",
                   help=f"modes (default {','.join(DEFAULT_MODES)}; --smoke: "
                   f"{','.join(SMOKE_MODES)}; torch is always run, as the reference, and "
                   "torch_train with any training mode, theirs)")
    p.add_argument("--reps", type=int, help="fixed number of timed forwards (default: "
                   "adaptive, >= 3 forwards and >= 3 s, at most 30; quick >= 0.3 s, at most 5)")
    p.add_argument("--quick", action="store_true", help="smaller inputs, fewer forwards, "
                   "one process per (network, threads)")
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny inputs, 1 thread, modes {'/'.join(SMOKE_MODES)}, one process; "
                   f"exit 1 unless every max relative error (training: of the output, the "
                   f"loss and a float64 step's weight gradients) is <= {SMOKE_TOL:g} (no files "
                   f"written unless --json)")
    p.add_argument("--fresh", choices=("mode", "network"), help="a fresh process per "
                   "(network, mode, threads) ('mode', the default) or per (network, threads) "
                   "('network', the --quick default)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each process, wait up to SECONDS for other processes to stop "
                   "using the CPUs (default 0: don't wait)")
    p.add_argument("--retry-busy", type=int, default=0, metavar="N",
                   help="run a process again, up to N times, when other processes used more "
                   f"than {suite_run.BUSY_WARN} cores while it timed (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    p.add_argument("--json", metavar="PATH", help="write the JSON here (the chart goes next to "
                   "it) instead of bench/results/networks-<timestamp>.json + "
                   "networks-latest.json")
    p.add_argument("--no-plot", action="store_true", help="no PNG chart")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.only:
        bad = [n for n in args.only if n not in NET_BY_NAME or NET_BY_NAME[n].smoke_only]
        if bad:
            p.error(f"unknown network(s) {bad}: choose from {', '.join(REAL_NETWORKS)}")
    if args.modes is None:
        args.modes = list(SMOKE_MODES if args.smoke else DEFAULT_MODES)
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        p.error(f"unknown mode(s) {bad}: choose from {', '.join(MODES)}")
    if any(t < 1 for t in args.threads):
        p.error("--threads must be positive")
    if args.reps is not None and args.reps < 1:
        p.error("--reps must be >= 1")
    if args.smoke and args.quick:
        p.error("--smoke and --quick exclude each other")
    return args, p


def main(argv=None):
    args, parser = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        records = worker(spec)
        with open(spec["out"], "w") as f:
            json.dump(records, f, default=str)
        return 0

    import conv3d_cpu
    preset = "smoke" if args.smoke else "quick" if args.quick else "full"
    nets = args.only or REAL_NETWORKS
    if args.smoke:
        nets = (args.only or REAL_NETWORKS) + ["padding_modes"]
        threads, fresh = [1], "all"
        modes = [m for m in args.modes if m in SMOKE_MODES]
        policy = Policy(reps=1, warmup=0)
    else:
        threads = list(dict.fromkeys(args.threads))
        fresh = args.fresh or ("network" if args.quick else "mode")
        modes = list(args.modes)
        policy = Policy(reps=args.reps)
        if args.quick:
            policy.target, policy.max_reps = 0.3, 5
    modes = ["torch"] + [m for m in dict.fromkeys(modes) if m != "torch"]
    if any(m in TRAIN_MODES for m in modes):  # (their reference first)
        modes = ([m for m in modes if m not in TRAIN_MODES]
                 + [m for m in TRAIN_MODES if m in modes or m == "torch_train"])
    notes = {}
    if "openvino" in modes and importlib.util.find_spec("openvino") is None:
        notes["openvino"] = "skipped: openvino not installed (pip install openvino)"
    for m, why in UNAVAILABLE.items():
        if m in modes:
            notes[m] = f"skipped: {why}"
    modes = [m for m in modes if m not in notes]

    ncores = suite_run.cpu_count()
    model, mhz = suite_run.cpu_info()
    config = conv3d_cpu.show_config(mode="dicts")
    isa = config["isa"]["selected"]
    package_dir = os.path.dirname(os.path.abspath(conv3d_cpu.__file__))
    versions = {"conv3d_cpu": conv3d_cpu.__version__, "torch": torch.__version__,
                "openvino": version_of("openvino"), "numpy": np.__version__}
    started = datetime.datetime.now()
    meta = dict(timestamp=started.isoformat(timespec="seconds"), host=platform.node(),
                cpu=model, cpu_mhz=mhz, cores=ncores, python=platform.python_version(),
                versions=versions, isa=isa, package_dir=package_dir,
                git=git_state(os.path.dirname(package_dir)), preset=preset,
                argv=sys.argv[1:],
                threads=threads, modes=modes, fresh=fresh,
                timing=dataclasses.asdict(policy) | {"describe": policy.describe()},
                seed=args.seed, notes=notes,
                torch=dict(set_num_threads="= threads", num_interop_threads=1,
                           OMP_NUM_THREADS="= threads"),
                openvino=dict(INFERENCE_NUM_THREADS="= threads", INFERENCE_PRECISION_HINT="f32",
                              PERFORMANCE_HINT="LATENCY", NUM_STREAMS=1)
                if "openvino" in modes else None,
                train=dict(step=TRAIN_ABOUT, loss="y.float().pow(2).mean()", optimizer="SGD",
                           lr=TRAIN_LR, reference="torch_train")
                if any(m in TRAIN_MODES for m in modes) else None)
    say(f"conv3d_cpu network benchmark  {meta['timestamp']}  {model}, {ncores} cores"
        f"{f' @ {mhz:.0f} MHz' if mhz else ''}")
    say(f"versions: conv3d_cpu {versions['conv3d_cpu']}, torch {versions['torch']}, "
        f"openvino {versions['openvino'] or 'not installed'}, numpy {np.__version__}, python "
        f"{meta['python']}; our kernels: {isa}"
        + f"; conv3d_cpu from {package_dir}"
        + (f" (checkout {meta['git']})" if meta["git"] else ""))
    say(f"preset: {preset}; modes: {', '.join(modes)}; threads: {threads}; seed {args.seed}")
    say(f"processes: " + {"mode": "a fresh one per (network, mode, threads)",
                          "network": "a fresh one per (network, threads), modes in turn",
                          "all": "one for everything"}[fresh]
        + "; OMP_NUM_THREADS = torch.set_num_threads = threads, torch inter-op 1"
        + ("; OpenVINO: INFERENCE_NUM_THREADS = threads, f32, latency hint, 1 stream"
           if "openvino" in modes else ""))
    say(f"timing: {policy.describe()}")
    say("our modes: nn.Conv3d and nn.ConvTranspose3d layers; norms, activations, pooling stay "
        "in PyTorch")
    if any(m in TRAIN_MODES for m in modes):
        say(f"training modes: one step per run ({TRAIN_ABOUT}); cold = first step, warm = median "
            "step; against torch_train")
    for k, v in notes.items():
        say(f"note: {k} {v}")

    cache = tempfile.mkdtemp(prefix="c3d-networks-")
    # Jobs: (networks, modes, threads). With more than one process, a first one builds the
    # networks (BatchNorm calibration included: a forward that would warm up the convolutions
    # of the process that times torch's cold forward) and saves weights and inputs for the rest.
    jobs = []
    if fresh == "all":
        jobs.append((nets, modes, threads[0]))
    else:
        jobs.append((nets, [], threads[0]))
        for name in nets:
            for t in threads:
                if fresh == "network":
                    jobs.append(([name], modes, t))
                else:
                    jobs.extend(([name], [m], t) for m in modes)
    results, info, failures = {}, {}, []
    t_start = time.perf_counter()
    try:
        for i, (jnets, jmodes, t) in enumerate(jobs):
            spec = dict(networks=jnets, modes=jmodes, threads=t, preset=preset,
                        seed=args.seed, cache=cache, policy=dataclasses.asdict(policy),
                        save_state=len(jobs) > 1)
            for attempt in range(args.retry_busy + 1):
                if args.wait_idle:
                    waited = suite_run.wait_for_idle(args.wait_idle)
                    if waited > 1:
                        say(f"      (waited {waited:.0f} s for other processes to go quiet)")
                t0 = time.perf_counter()
                recs, err = run_worker(spec, t)
                took = time.perf_counter() - t0
                busy = max([r.get("other_cpu_cores") or 0.0 for r in recs or []] + [0.0])
                if err or busy <= suite_run.BUSY_WARN or attempt == args.retry_busy:
                    break
                say(f"      (other processes used {busy:.1f} cores while "
                    f"{', '.join(jnets)} {', '.join(jmodes)} T={t} was timed: again)")
            for rec in recs or []:
                rec["attempts"] = attempt + 1
            if not jmodes:
                say(f"[{i + 1}/{len(jobs)}] built and saved {', '.join(jnets)} ({took:.1f} s)"
                    + (f"; FAILED: {err}" if err else ""))
                continue
            if err:
                recs = [dict(network=n, mode=m, threads=t, note=err, failed=True)
                        for n in jnets for m in jmodes]
            for rec in recs:
                results[rec["network"], rec["threads"], rec["mode"]] = rec
                if rec["mode"] == "torch" and "layers" in rec:
                    info.setdefault(rec["network"], dict(params=rec["params"],
                                                         layers=rec["layers"]))
                if "warm_s" in rec:
                    busy = rec.get("other_cpu_cores")
                    msg = (f"warm {suite_run.fmt_ms(rec['warm_s'])} ms x{rec['runs']}, cold "
                           f"{suite_run.fmt_ms(rec['cold_s'])} ms, conv "
                           f"{fmt_share(rec.get('conv_share'))}"
                           + (f", err {rec['max_rel_err']:.1e}" if "max_rel_err" in rec else "")
                           + (f", loss err {rec['loss_rel_err']:.1e}, grad err "
                              f"{rec['grad_rel_err']:.1e}" if "grad_rel_err" in rec else "")
                           + (f" [other processes used {busy:.1f} cores]"
                              if busy is not None and busy > suite_run.BUSY_WARN else ""))
                else:
                    msg = rec.get("note", "?")
                say(f"[{i + 1}/{len(jobs)}] {rec['network']} T={rec['threads']} "
                    f"{rec['mode']}: {msg}")
            say(f"      ({took:.1f} s)")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    elapsed = time.perf_counter() - t_start

    for (name, t, mode), rec in results.items():
        base = results.get((name, t, reference_mode(mode)), {})
        if "warm_s" in rec and "warm_s" in base:
            rec["speedup"] = base["warm_s"] / rec["warm_s"]
        if rec.get("failed"):
            failures.append(f"{name} T={t} {mode}: {rec.get('note')}")

    say("\nNetworks (conv GFLOP: Conv3d layers, 2*MACs; params: weights, not buffers)")
    say(network_table(nets, info, preset))
    say(f"\nResults ({elapsed:.0f} s). warm ms = median forward; cold ms = first forward after "
        "building/converting (setup s = building the mode from the stock network: copy + "
        "layer replacement or bridge conversion, or OpenVINO convert + compile); conv share = "
        "time in the Conv3d layers / forward time; speedup = torch warm / mode warm; max rel "
        "err = max|y - y_torch| / max|y_torch|; * = other processes used > "
        f"{suite_run.BUSY_WARN} cores while timing"
        + ("; *_train rows: the same for a training step (conv share: forward + backward), "
           "against torch_train, err of the first step's output" if any(
               m in TRAIN_MODES for m in modes) else ""))
    say(main_table(results, nets, threads, modes))
    lines = training_lines(results, nets, threads)
    if lines:
        say("\nTraining steps, first step against torch_train's (max rel err of the output, "
            "the loss, and the worst Conv3d/ConvTranspose3d weight gradient, max|g - g_ref| / "
            f"max(max|g_ref|, {GRAD_FLOOR:g} x the network's largest); float32 weight "
            "gradients of these random networks move by far more than the forward's rounding, "
            "see bench/README.md):")
        for line in lines:
            say(line)
    ct = [(n, results[(n, threads[-1], "torch")].get("convT_share")) for n in nets
          if (n, threads[-1], "torch") in results]
    ct = [f"{n} {100 * s:.1f}%" for n, s in ct if s]
    if ct:
        say(f"ConvTranspose3d share of stock torch's forward at "
            f"T={threads[-1]}: " + ", ".join(ct))
    lines = slow_layers(results, nets, threads[-1], modes)
    if lines:
        say(f"\nConv3d layers against stock torch's, warm medians at T={threads[-1]} (training "
            "modes: forward + backward, against torch_train's):" if any(
                m in TRAIN_MODES for m in modes) else
            f"\nConv3d layers against stock torch's, warm medians at T={threads[-1]}:")
        for line in lines:
            say(line)

    status = 0
    if args.smoke:
        bad = failures + [
            f"{n} T={t} {m}: {key} {r[key]:.2e} > {SMOKE_TOL:g}" if r.get(key) is not None
            else f"{n} T={t} {m}: no {key} measured"
            for (n, t, m), r in results.items() if m != reference_mode(m) and not r.get("failed")
            for key in (("max_rel_err", "loss_rel_err", "grad64_rel_err") if m in TRAIN_MODES
                        else ("max_rel_err",))
            if not (r.get(key) is not None and r[key] <= SMOKE_TOL)]
        if bad:
            say("\nSMOKE FAILED:\n  " + "\n  ".join(bad))
            status = 1
        else:
            say(f"\nsmoke: OK, every max relative error <= {SMOKE_TOL:g}"
                + (" (training: output, loss and a float64 step's weight gradients)"
                   if any(m in TRAIN_MODES for m in modes) else ""))
    elif failures:
        say("\nfailed: " + "; ".join(failures))

    if args.json or not args.smoke:
        if args.json:
            json_path, extra = os.path.abspath(args.json), []
        else:
            res_dir = os.path.join(HERE, "results")
            json_path = os.path.join(res_dir,
                                     f"networks-{started.strftime('%Y%m%d-%H%M%S')}.json")
            extra = [os.path.join(res_dir, "networks-latest.json")]
        os.makedirs(os.path.dirname(json_path), exist_ok=True)
        meta["elapsed_s"] = elapsed
        doc = dict(meta=meta, networks=[dict(name=n, input=NET_BY_NAME[n].inputs[preset],
                                             about=NET_BY_NAME[n].about, **info.get(n, {}))
                                        for n in nets],
                   results=[r for r in results.values()])
        text = json.dumps(doc, indent=1, default=str)
        for path in [json_path] + extra:
            with open(path, "w") as f:
                f.write(text)
        say(f"\nJSON: {json_path}" + "".join(f", {p}" for p in extra))
        if not args.no_plot:
            png = os.path.splitext(json_path)[0] + ".png"
            err = plot(png, results, nets, threads, modes, "3D CNNs")
            if err:
                say(err)
            else:
                pngs = [png]
                for p in extra:
                    dst = os.path.splitext(p)[0] + ".png"
                    shutil.copyfile(png, dst)
                    pngs.append(dst)
                say("chart: " + ", ".join(pngs))
    return status


if __name__ == "__main__":
    sys.exit(main())
