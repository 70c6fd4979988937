#!/usr/bin/env python
"""Benchmark conv3d_cpu.conv_transpose3d against torch.nn.functional.conv_transpose3d.

On the transposed convolutions of 3D U-Net-style decoders (below; or layers given with
``--layer``), times ``conv3d_cpu.conv_transpose3d(x, w, b, stride, padding, output_padding,
groups, dilation, num_threads=T)`` against ``torch.nn.functional.conv_transpose3d`` with the
same arguments under ``torch.set_num_threads(T)``, at the same thread counts, with
``bench/run.py``'s timing loop as ``bench/backward.py`` uses it: every (system, thread count)
pair of a layer is timed in bursts interleaved in a fresh random order each round, each burst
after an untimed settle run; medians are reported.

FLOPs: ``2*N*Cin*(Cout/groups)*kD*kH*kW*iD*iH*iW`` -- every input element times every tap
(the FLOPs of the convolution whose grad_input this is); bias and output_padding not counted.

Reported: median ms, ours/torch, GFLOP/s and %peak of both, the max relative error of ours
against PyTorch's result (``max|a - b| / max|b|``) and, for float32 layers, of both against
PyTorch's float64 result; then per thread count the geometric mean of ours/torch over the
float32 layers, the worst layer and the float64 speedups, each against its target
(:data:`TARGETS`). Results go to the terminal, to ``bench/results/transposed-<timestamp>.json``
(+ ``transposed-latest.json``) and, when matplotlib is installed, to a PNG chart next to the
JSON.

``--smoke``: tiny layers (strides, padding, output_padding, dilation, groups, depthwise,
float64, no bias), one timed run each; exit 1 unless conv3d_cpu.conv_transpose3d exists,
returns PyTorch's dtype and shape and is within 1e-3 relative error of PyTorch's result. No
files unless ``--json``.

Examples::

    python bench/transposed.py                  # the layers below, threads 1 and 2
    python bench/transposed.py --quick          # a subset, shorter timing
    python bench/transposed.py --only unet_up_deep,up_k4 --threads 2
    python bench/transposed.py --layer "cin=64,cout=32,size=24,k=2,s=2" --dtype float32,float64
    python bench/transposed.py --smoke          # tiny layers, correctness only
"""
import argparse
import dataclasses
import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import backward  # noqa: E402  (options, set-up, output keeping, table, smoke verdict)
import layers as suite  # noqa: E402
import peers as systems  # noqa: E402
import run as bench  # noqa: E402  (machine, timing loop, options, tables, JSON, chart)

say = bench.say
SMOKE_TOL = backward.SMOKE_TOL
# The goals the summary checks at every thread count.
TARGETS = dict(float32_geomean=0.5,   # geomean of time(ours)/time(torch), float32 layers, <=
               worst_ratio=1.0,       # no layer's time(ours)/time(torch) above
               float64_speedup=5.0)   # every float64 layer's time(torch)/time(ours) >=
OP_KEYS = ("op", "output_padding")    # --layer keys added to bench/run.py's


@dataclasses.dataclass(frozen=True)
class Transposed(suite.Layer):
    """One ``conv_transpose3d`` call: input ``(N, Cin, D, H, W)``, weight
    ``(Cin, Cout/groups, kD, kH, kW)``, stride / padding / output_padding / dilation / groups
    with PyTorch's meaning; output ``(i - 1)*s - 2*p + d*(k - 1) + output_padding + 1`` per
    axis. ``flops`` counts every input element times every tap."""
    output_padding: tuple = (0, 0, 0)

    def __post_init__(self):
        op = suite._triple(self.output_padding, "output_padding")
        object.__setattr__(self, "output_padding", op)
        super().__post_init__()
        if any(o >= max(s, d) for o, s, d in zip(op, self.stride, self.dilation)):
            raise ValueError(f"{self.name}: output_padding {op} must be smaller than the "
                             f"stride or the dilation on each axis")

    @property
    def out_size(self):
        return tuple((i - 1) * s - 2 * p + d * (k - 1) + o + 1 for i, k, s, p, d, o in zip(
            self.size, self.k, self.stride, self.padding, self.dilation, self.output_padding))

    @property
    def weight_shape(self):
        return (self.cin, self.cout // self.groups) + self.k

    @property
    def flops(self):
        return (2 * self.n * self.cin * (self.cout // self.groups) * int(np.prod(self.k))
                * int(np.prod(self.size)))

    def conv_kwargs(self):
        return super().conv_kwargs() | {"output_padding": self.output_padding}

    def describe(self):
        op = self.output_padding
        return (super().describe()
                + (f" op{'x'.join(map(str, op)) if len(set(op)) > 1 else op[0]}"
                   if any(op) else "")
                + " -> " + "x".join(map(str, self.out_size)))

    @classmethod
    def of(cls, layer, output_padding=0):
        """The transposed convolution with ``layer``'s fields (a :class:`suite.Layer`)."""
        fields = {f.name: getattr(layer, f.name) for f in dataclasses.fields(suite.Layer)}
        return cls(**fields, output_padding=output_padding)


_T = Transposed
_UNET = "3D U-Net decoder up-conv"
LAYERS = [
    _T("unet_up_deep", 64, 32, 24, 2, stride=2, note=_UNET + " (2x2x2 stride 2), 24^3 -> 48^3"),
    _T("unet_up_top", 32, 16, 48, 2, stride=2,
       note=_UNET + " to full resolution, 48^3 -> 96^3"),
    _T("up_k3_op1", 64, 32, 24, 3, stride=2, padding=1, output_padding=1,
       note="3x3x3 stride-2 up-conv, inverse of a k3 s2 p1 conv's shape"),
    _T("tconv_k3", 32, 32, 32, 3, padding=1, note="stride-1 transposed conv (flipped kernel)"),
    _T("up_k4", 64, 32, 24, 4, stride=2, padding=1, note="4x4x4 stride-2 up-conv (3D GAN "
       "generators, pix2pix-3D)"),
    _T("tconv_k3_f64", 32, 32, 32, 3, padding=1, dtype="float64",
       note="stride-1 transposed conv in float64"),
    _T("unet_up_f64", 32, 16, 32, 2, stride=2, dtype="float64",
       note=_UNET + " in float64, 32^3 -> 64^3"),
]
QUICK = ["unet_up_deep", "up_k3_op1", "tconv_k3", "unet_up_f64"]

SMOKE = [
    _T("tiny", 3, 4, (5, 6, 7), 3, padding=1, note="3x3x3 stride 1, padding 1"),
    _T("tiny_up", 4, 6, 5, 2, stride=2, n=2, note="2x2x2 stride 2, batch 2"),
    _T("tiny_op", 4, 3, (4, 5, 6), 3, stride=2, padding=1, output_padding=1,
       note="stride 2, padding 1, output_padding 1"),
    _T("tiny_gaps", 2, 3, 4, 2, stride=3, note="stride 3 > kernel 2: voxels no tap reaches"),
    _T("tiny_k4", 3, 2, 5, 4, stride=2, padding=1, note="4x4x4 stride 2, padding 1"),
    _T("tiny_crop", 2, 3, 5, 1, stride=2, padding=1,
       note="1x1x1 stride 2, padding 1 > dilation*(k-1): the output cropped"),
    _T("tiny_mixed", 3, 5, (4, 6, 5), (3, 2, 3), stride=(1, 2, 2), padding=(2, 0, 1),
       dilation=(2, 1, 1), output_padding=(1, 1, 0),
       note="per-axis kernel, stride, padding, dilation, output_padding"),
    _T("tiny_dilated", 3, 4, 5, 3, stride=2, dilation=2, output_padding=1,
       note="dilation 2, stride 2, output_padding 1"),
    _T("tiny_grouped", 8, 12, 5, 3, stride=2, padding=1, output_padding=1, groups=4,
       note="groups 4, stride 2"),
    _T("tiny_dw", 6, 6, (4, 9, 9), 3, padding=1, groups=6, note="depthwise"),
    _T("tiny_dw_up", 6, 12, 5, 2, stride=2, groups=6, note="depthwise x2 channels, stride 2"),
    _T("tiny_pointwise", 8, 4, (3, 5, 6), 1, note="1x1x1"),
    _T("tiny_nobias", 2, 3, 5, 2, stride=2, bias=False, note="no bias"),
    _T("tiny_f64", 3, 4, 5, 3, stride=2, padding=1, output_padding=1, dtype="float64",
       note="float64, stride 2, output_padding 1"),
    _T("tiny_dw_f64", 4, 4, 6, 2, stride=2, groups=4, dtype="float64",
       note="float64 depthwise, stride 2"),
]


def select(names):
    """Layers of :data:`LAYERS` by name, in its order."""
    unknown = [n for n in names if n not in {lay.name for lay in LAYERS}]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; layers: "
                         + ", ".join(lay.name for lay in LAYERS))
    return [lay for lay in LAYERS if lay.name in names]


def pick_layers(args, parser):
    """``--layer`` specs (bench/run.py's keys plus ``op``/``output_padding``), ``--only``,
    ``--quick`` or every layer."""
    if not args.layer:
        if args.dtype:
            parser.error("--dtype applies to --layer layers")
        try:
            return select(args.only or (QUICK if args.quick else [lay.name for lay in LAYERS]))
        except ValueError as e:
            parser.error(str(e))
    specs, pads = [], []
    for spec in args.layer:   # output_padding out of the spec, the rest to run.py's parser
        items = [i.strip() for i in spec.split(",") if i.strip()]
        ops = [i for i in items if i.partition("=")[0].strip().lower() in OP_KEYS]
        specs.append(",".join(i for i in items if i not in ops))
        try:
            op = suite._ints(ops[-1].partition("=")[2]) if ops else (0,)
        except ValueError:
            parser.error(f"--layer {spec!r}: bad output_padding {ops[-1]!r}")
        pads += [op[0] if len(op) == 1 else op] * max(1, len(args.dtype or [None]))
    convs = bench.pick_layers(argparse.Namespace(layer=specs, dtype=args.dtype, only=None),
                              parser)
    try:
        return [Transposed.of(lay, op) for lay, op in zip(convs, pads)]
    except (ValueError, TypeError) as e:
        parser.error(f"--layer: {e}")


# --- the two systems ----------------------------------------------------------------------
# backward._KeepsFirst wraps each system's prepare(): its callable returns None to measure()
# (no error recorded there) and keeps the first result, the warm-up's, in outputs[threads]
# for record_errors().
class OursTransposed(backward._KeepsFirst, systems.Ours):
    """``conv3d_cpu.conv_transpose3d``; AttributeError when the build has none."""

    op = "conv_transpose3d"

    def __init__(self, algorithm):
        super().__init__(algorithm)
        self.key, self.outputs = "ours", {}   # one algorithm: "ours", not "ours:<algorithm>"

    def callable(self, layer, x, w, b, threads):
        return systems.Ours.prepare(self, layer, x, w, b, threads)


class TorchTransposed(backward._KeepsFirst, systems.TorchPeer):
    """``torch.nn.functional.conv_transpose3d``."""

    op = "conv_transpose3d"

    def __init__(self):
        super().__init__()
        self.outputs = {}

    def callable(self, layer, x, w, b, threads):
        return systems.TorchPeer.prepare(self, layer, x, w, b, threads)

    def reference64(self, layer, x, w, b, threads):
        """``layer`` computed in float64 (untimed)."""
        x, w, b = (None if a is None else a.astype(np.float64) for a in (x, w, b))
        return self.callable(dataclasses.replace(layer, dtype="float64"), x, w, b, threads)()


def check(lay, got, ref, ref64):
    """``(errors, problems)`` of one output ``got``: ``max_abs_err``/``max_rel_err`` against
    PyTorch's ``ref`` and ``max_rel_err64`` against the float64 ``ref64`` (each skipped when
    None), and what is wrong besides (type, dtype, shape)."""
    if not isinstance(got, np.ndarray) or got.dtype != np.dtype(lay.dtype):
        return {}, [f"returned {type(got).__name__} {getattr(got, 'dtype', '')}, "
                    f"not {lay.dtype}"]
    if got.shape != lay.output_shape:
        return {}, [f"shape {got.shape}, not {lay.output_shape}"]
    errors = {}
    try:
        if ref is not None:
            errors["max_abs_err"], errors["max_rel_err"] = bench.max_err(got, ref)
        if ref64 is not None:
            errors["max_rel_err64"] = bench.max_err(got, ref64)[1]
    except ValueError as e:
        return errors, [str(e)]
    return errors, []


def record_errors(lay, by_threads, syss, ref64):
    """Add every system's errors (and ``problems``) to its records."""
    torch_sys = next(s for s in syss if s.key == "torch")
    for t, recs in by_threads.items():
        ref = torch_sys.outputs.get(t)
        for s in syss:
            if t not in s.outputs:
                continue
            errors, problems = check(lay, s.outputs[t], None if s is torch_sys else ref, ref64)
            recs[s.key].update(errors)
            if problems:
                recs[s.key]["problems"] = problems
                say(f"  WARNING: {s.key} on {lay.name} T={t}: " + "; ".join(problems))


# --- summary ------------------------------------------------------------------------------
def summarize(results, layer_list, t):
    """Summary dict at thread count ``t``: run.py's summary over the float32 layers (geomean,
    worst) and over all (worst, float64 speedups), and each target met or not (None: no
    layer to judge)."""
    f32 = [lay for lay in layer_list if lay.dtype != "float64"]
    s32 = bench.summarize(results, f32, t, ["ours"])["per_algorithm"].get("ours")
    s_all = bench.summarize(results, layer_list, t, ["ours"])
    worst = s_all["per_algorithm"].get("ours")
    f64 = s_all["float64_vs_torch"].get("ours", {}).get("per_layer", {})
    met = dict(
        float32_geomean=None if not s32 else
        s32["geomean_ours_over_best_peer"] <= TARGETS["float32_geomean"],
        worst_ratio=None if not worst else worst["worst_ratio"] <= TARGETS["worst_ratio"],
        float64_speedup=None if not f64 else min(f64.values()) >= TARGETS["float64_speedup"])
    return dict(threads=t, float32=s32, all_layers=worst, float64_speedup=f64,
                targets=TARGETS, met=met)


def summary_lines(s):
    t, met = s["threads"], s["met"]

    def verdict(key):
        return {True: "met", False: "NOT MET", None: "n/a"}[met[key]]
    lines = []
    if s["float32"]:
        f = s["float32"]
        lines.append(f"T={t}: float32 geomean ours/torch = {f['geomean_ours_over_best_peer']:.2f}"
                     f" over {f['layers']} layers (faster on {f['wins']}; worst "
                     f"{f['worst_layer']} {f['worst_ratio']:.2f}) -- target <= "
                     f"{TARGETS['float32_geomean']:g}: {verdict('float32_geomean')}")
    if s["all_layers"]:
        a = s["all_layers"]
        lines.append(f"T={t}: worst layer {a['worst_layer']} at ours/torch "
                     f"{a['worst_ratio']:.2f} -- target: none above "
                     f"{TARGETS['worst_ratio']:g}: {verdict('worst_ratio')}")
    if s["float64_speedup"]:
        per = ", ".join(f"{k} {v:.2f}x" for k, v in s["float64_speedup"].items())
        lines.append(f"T={t}: float64 speedup (torch/ours) {per} -- target >= "
                     f"{TARGETS['float64_speedup']:g}x each: {verdict('float64_speedup')}")
    return lines or [f"T={t}: no ratios"]


# --- command line -------------------------------------------------------------------------
def parse_args(argv=None):
    p, _ = backward.make_parser(
        "bench/transposed.py",
        "Benchmark conv3d_cpu.conv_transpose3d against PyTorch's conv_transpose3d on the "
        "transposed convolutions of 3D U-Net-style decoders (or your own, with --layer).",
        "layers: " + ", ".join(lay.name for lay in LAYERS)
        + "\n--layer: as bench/run.py --layer (see bench/run.py --help) plus "
        "op=/output_padding= (int or AxBxC); the weight is (Cin, Cout/groups, k...)"
        + "\ntargets: " + ", ".join(f"{k} {v:g}" for k, v in TARGETS.items()),
        "transposed", QUICK, "conv_transpose3d", "layer")
    args = p.parse_args(argv)
    backward.check_options(p, args)
    return args, p


def main(argv=None):
    args, parser = parse_args(argv)
    if backward.torch_missing("bench/transposed.py"):
        return 1 if args.smoke else 0
    layer_list, policy, per_core, peak_src = backward.setup(args, parser, SMOKE, pick_layers)
    threads = list(dict.fromkeys(args.threads))

    notes, failures = {}, []
    torch_sys = TorchTransposed()
    ours = backward.make_ours(OursTransposed, args, "conv_transpose3d", notes, failures)
    syss = ([ours] if ours else []) + [torch_sys]

    meta = backward.run_meta(
        args, argv, syss, policy, (per_core, peak_src), threads, datetime.datetime.now(),
        torch=dict(op="torch.nn.functional.conv_transpose3d", set_num_threads="= threads",
                   num_interop_threads=1),
        flops="2 * N * Cin * (Cout/groups) * kD*kH*kW * iD*iH*iW (every input element times "
              "every tap; bias and output_padding not counted)",
        targets=TARGETS, notes=notes)

    bench.say_header("conv3d_cpu transposed-convolution benchmark", meta, notes)
    say(f"ours: conv3d_cpu.conv_transpose3d(x, w, b, stride, padding, output_padding, groups, "
        f"dilation, algorithm={args.algorithm!r}, num_threads=T); torch: "
        f"F.conv_transpose3d(...) under set_num_threads(T), set_num_interop_threads(1)")
    backward.say_setup(meta)
    say("\n" + bench.suite_table(layer_list) + "\n(shape: the input's; -> the output's)\n")

    results, contention, t_start = {}, bench.Contention(), time.perf_counter()
    for i, lay in enumerate(layer_list):
        x, w, b = lay.make_inputs(args.seed)
        ref64 = (torch_sys.reference64(lay, x, w, b, max(threads))
                 if lay.dtype != "float64" else None)
        by_threads, took = backward.measure_one(lay.name, lay, syss, policy, (x, w, b), args,
                                                meta, failures)
        if by_threads is not None:
            record_errors(lay, by_threads, syss, ref64)
            results.update(((lay.name, t, key), rec)
                           for t, recs in by_threads.items() for key, rec in recs.items())
            say(backward.progress_line(f"[{i + 1}/{len(layer_list)}] {lay.name}", by_threads,
                                       took))
        for s in syss:   # (the outputs of the largest layers take 100s of MB)
            s.outputs.clear()
        del x, w, b, ref64
    other = backward.say_results(meta, t_start, contention, results, layer_list, [None])

    summary = ([summarize(results, layer_list, t) for t in threads]
               if ours and not args.smoke else [])
    say("\nSummary " + ("(--smoke: one run of tiny layers, not judged against the targets)"
                        if args.smoke else "against the targets (float32 geomean ours/torch "
                        f"<= {TARGETS['float32_geomean']:g}, no layer above "
                        f"{TARGETS['worst_ratio']:g}, float64 >= "
                        f"{TARGETS['float64_speedup']:g}x faster)"))
    for s in summary:
        for line in summary_lines(s):
            say("  " + line)
    if not ours:
        say("  ours not measured: " + notes["ours"])
    backward.closing_notes(results, other)
    return backward.finish(args, meta, layer_list, results, summary, failures, "transposed",
                           [s.key for s in syss],
                           "conv3d_cpu.conv_transpose3d vs torch conv_transpose3d")


if __name__ == "__main__":
    sys.exit(main())
