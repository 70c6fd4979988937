"""The benchmark suite: Conv3d layers taken from real 3D CNNs, plus a parser for custom layers.

A :class:`Layer` is one ``conv3d`` call: input ``(N, Cin, D, H, W)``, weight
``(Cout, Cin/groups, kD, kH, kW)``, a bias, and stride / padding / dilation / groups, all with
PyTorch's meaning. It knows its output shape, its FLOP count and how to make reproducible
random inputs.

FLOPs count one multiply and one add per weight tap, bias and padding ignored:
``2 * N * Cout * oD*oH*oW * (Cin/groups) * kD*kH*kW``.
"""
from dataclasses import dataclass, asdict

import numpy as np

__all__ = ["Layer", "SUITE", "QUICK", "parse_layer", "select"]


def _triple(value, what):
    if isinstance(value, int):
        return (value,) * 3
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{what} needs 1 or 3 values, got {value}")
    return value


@dataclass(frozen=True)
class Layer:
    name: str
    cin: int
    cout: int
    size: tuple            # input (D, H, W)
    k: tuple               # kernel (kD, kH, kW)
    stride: tuple = (1, 1, 1)
    padding: tuple = (0, 0, 0)   # symmetric zero padding per axis
    dilation: tuple = (1, 1, 1)
    groups: int = 1
    n: int = 1
    dtype: str = "float32"
    bias: bool = True
    note: str = ""         # where the layer comes from

    def __post_init__(self):
        for f in ("size", "k", "stride", "padding", "dilation"):
            object.__setattr__(self, f, _triple(getattr(self, f), f))
        np.dtype(self.dtype)  # raises on a bad name
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} must divide cin and cout")
        if min(self.out_size) < 1:
            raise ValueError(f"{self.name}: empty output {self.out_size}")

    # --- shapes and cost -------------------------------------------------------------------
    @property
    def out_size(self):
        return tuple(
            (i + 2 * p - d * (k - 1) - 1) // s + 1
            for i, k, s, p, d in zip(self.size, self.k, self.stride, self.padding, self.dilation)
        )

    @property
    def input_shape(self):
        return (self.n, self.cin) + self.size

    @property
    def weight_shape(self):
        return (self.cout, self.cin // self.groups) + self.k

    @property
    def output_shape(self):
        return (self.n, self.cout) + self.out_size

    @property
    def flops(self):
        od, oh, ow = self.out_size
        kd, kh, kw = self.k
        return 2 * self.n * self.cout * od * oh * ow * (self.cin // self.groups) * kd * kh * kw

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    def nbytes(self, which):
        shape = {"input": self.input_shape, "weight": self.weight_shape,
                 "output": self.output_shape}[which]
        return int(np.prod(shape)) * self.itemsize

    def conv_kwargs(self):
        """Keyword arguments shared by ``conv3d_cpu.conv3d`` and ``torch...conv3d``."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def make_inputs(self, seed=0):
        """Reproducible ``(x, w, b)``: N(0, 1) input, weights scaled by 1/sqrt(fan_in) so the
        outputs are O(1) and absolute errors are meaningful; ``b`` is None without bias."""
        rng = np.random.default_rng(seed)
        fan_in = (self.cin // self.groups) * int(np.prod(self.k))
        dt = np.dtype(self.dtype)
        x = rng.standard_normal(self.input_shape, dtype=dt)
        w = rng.standard_normal(self.weight_shape, dtype=dt)
        w *= dt.type(1 / np.sqrt(fan_in))
        b = rng.standard_normal(self.cout, dtype=dt) * dt.type(0.1) if self.bias else None
        return x, w, b

    # --- text ------------------------------------------------------------------------------
    def describe(self):
        """Short geometry string, e.g. ``1x64->128 8x28x28 k3 p1`` (N x Cin -> Cout, D x H x W)."""
        def t(v):
            return str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))
        parts = [f"{self.n}x{self.cin}->{self.cout}", "x".join(map(str, self.size)),
                 f"k{t(self.k)}"]
        if self.stride != (1, 1, 1):
            parts.append(f"s{t(self.stride)}")
        if self.padding != (0, 0, 0):
            parts.append(f"p{t(self.padding)}")
        if self.dilation != (1, 1, 1):
            parts.append(f"d{t(self.dilation)}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        return " ".join(parts)

    def to_dict(self):
        d = asdict(self)
        d.update(out_size=self.out_size, flops=self.flops, describe=self.describe(),
                 input_bytes=self.nbytes("input"), output_bytes=self.nbytes("output"))
        return d


_R21D = "R(2+1)D"
SUITE = [
    Layer("c3d", 64, 128, (8, 28, 28), 3, padding=1, note="C3D conv3a"),
    Layer("unet", 32, 32, 32, 3, padding=1, note="3D U-Net level-1 conv"),
    Layer("med_stem", 1, 32, 64, 3, padding=1, note="medical-imaging stem (1 channel)"),
    Layer("r3d_stem", 3, 64, (8, 56, 56), (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3),
          note="R3D/I3D-style stem"),
    Layer("strided", 64, 128, 16, 3, stride=2, padding=1, note="ResNet-3D downsampling"),
    Layer("pointwise", 128, 128, (16, 28, 28), 1, note="1x1x1 bottleneck"),
    Layer("x3d_dw", 96, 96, (16, 28, 28), 3, padding=1, groups=96, note="X3D depthwise"),
    Layer("grouped", 64, 64, 16, 3, padding=1, groups=8, note="ResNeXt-3D grouped"),
    Layer("r21d_spatial", 64, 144, (8, 28, 28), (1, 3, 3), padding=(0, 1, 1),
          note=_R21D + " spatial (2D) part"),
    Layer("r21d_temporal", 144, 64, (8, 28, 28), (3, 1, 1), padding=(1, 0, 0),
          note=_R21D + " temporal (1D) part"),
    Layer("dilated", 32, 32, 32, 3, padding=2, dilation=2, note="dilated context conv"),
    Layer("batch8", 16, 32, 16, 3, padding=1, n=8, note="small layer, batch 8"),
    Layer("vnet_k5", 16, 16, 32, 5, padding=2, note="V-Net 5x5x5 conv"),
    Layer("unet_f64", 32, 32, 32, 3, padding=1, dtype="float64", note="U-Net layer in float64"),
    Layer("x3d_dw_f64", 96, 96, (16, 28, 28), 3, padding=1, groups=96, dtype="float64",
          note="X3D depthwise in float64"),
]

# A subset that runs in well under a minute even with a slow kernel.
QUICK = ["strided", "pointwise", "x3d_dw", "grouped", "r21d_temporal", "x3d_dw_f64"]


def select(names):
    """Suite layers by name (comma-separated string or list), in suite order."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    by_name = {layer.name: layer for layer in SUITE}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; suite: {', '.join(by_name)}")
    return [layer for layer in SUITE if layer.name in names]


_KEYS = {
    "name": "name", "n": "n", "batch": "n", "cin": "cin", "cout": "cout", "size": "size",
    "k": "k", "kernel": "k", "s": "stride", "stride": "stride", "p": "padding",
    "padding": "padding", "d": "dilation", "dilation": "dilation", "g": "groups",
    "groups": "groups", "dtype": "dtype", "bias": "bias",
}


def _ints(text):
    return tuple(int(v) for v in text.lower().replace("*", "x").split("x"))


def parse_layer(spec, dtype=None):
    """Parse ``"cin=32,cout=32,size=32,k=3,p=1"`` into a :class:`Layer`.

    Keys: ``cin``, ``cout`` (required), ``size`` (``32`` or ``8x28x28``), ``k``, ``s``/``stride``,
    ``p``/``padding``, ``d``/``dilation`` (one int or ``AxBxC``), ``g``/``groups``, ``n``/``batch``,
    ``dtype``, ``bias`` (0/1), ``name``. ``size`` defaults to 32 and ``k`` to 3. ``dtype``
    (the argument) overrides the spec's dtype when given.
    """
    fields = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _KEYS:
            raise ValueError(f"bad layer item {item!r}; keys: {', '.join(sorted(_KEYS))}")
        field, value = _KEYS[key], value.strip()
        if field in ("name", "dtype"):
            fields[field] = value
        elif field == "bias":
            fields[field] = value.lower() not in ("0", "false", "no")
        elif field in ("size", "k", "stride", "padding", "dilation"):
            v = _ints(value)
            fields[field] = v[0] if len(v) == 1 else v
        else:
            fields[field] = int(value)
    if "cin" not in fields or "cout" not in fields:
        raise ValueError(f"layer {spec!r} needs cin= and cout=")
    fields.setdefault("size", 32)
    fields.setdefault("k", 3)
    if dtype is not None:
        fields["dtype"] = dtype
    fields.setdefault("name", "custom")
    return Layer(**fields)
