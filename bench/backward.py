#!/usr/bin/env python
"""Benchmark conv3d_cpu.conv3d_backward against PyTorch's convolution_backward.

For every layer of the suite in ``bench/layers.py`` (float64 layers included; or layers given
with ``--layer``) and every output mask -- ``input`` = grad_input only (T, F, F), ``weight`` =
grad_weight only (F, T, F), ``all`` = grad_input, grad_weight and grad_bias (T, T, T) -- times
``conv3d_cpu.conv3d_backward(grad_output, x, w, ..., output_mask=mask, num_threads=T)``
against ``torch.ops.aten.convolution_backward(grad_output, x, w, [Cout], stride, padding,
dilation, False, [0, 0, 0], groups, mask)`` under ``torch.set_num_threads(T)``, at the same
thread counts, with ``bench/run.py``'s timing loop: every (system, thread count) pair of a
(layer, mask) is timed in bursts interleaved in a fresh random order each round, each burst
after an untimed settle run; medians are reported.

FLOPs: grad_input and grad_weight each cost the forward's ``2*N*Cout*oD*oH*oW*(Cin/groups)*
kD*kH*kW``; ``all`` counts both (grad_bias, a sum over grad_output, is not counted).

Reported: median ms, ours/torch, GFLOP/s and %peak of both, the max relative error of ours
against PyTorch's result (``max|a - b| / max|b|``, the worst of the gradients asked for) and,
for float32 layers, of both against PyTorch's float64 result; then per mask and thread count
the geometric mean of ours/torch, the worst layer and the float64 speedup. Results go to the
terminal, to ``bench/results/backward-<timestamp>.json`` (+ ``backward-latest.json``) and,
when matplotlib is installed, to a PNG chart next to the JSON.

``--smoke``: tiny layers (strides, padding, dilation, groups, depthwise, float64, no bias), one
timed run each; exit 1 unless conv3d_cpu.conv3d_backward exists, returns None exactly for the
gradients not asked for, PyTorch's dtypes and shapes, and every result within 1e-3 relative
error of PyTorch's. No files unless ``--json``.

Examples::

    python bench/backward.py                    # the suite, threads 1 and 2
    python bench/backward.py --quick            # a subset, shorter timing
    python bench/backward.py --only unet,c3d --masks all --threads 2
    python bench/backward.py --layer "cin=32,cout=32,size=32,k=3,p=1" --dtype float32,float64
    python bench/backward.py --smoke            # tiny layers, correctness only
"""
import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import layers as suite  # noqa: E402
import peers as systems  # noqa: E402
import run as bench  # noqa: E402  (machine, timing loop, options, tables, JSON, chart)

say = bench.say
SMOKE_TOL = 1e-3   # --smoke fails above this max relative error against PyTorch
GRADS = ("grad_input", "grad_weight", "grad_bias")
MASKS = {"input": (True, False, False), "weight": (False, True, False),
         "all": (True, True, True)}
MASK_ABOUT = {"input": "grad_input only", "weight": "grad_weight only",
              "all": "grad_input + grad_weight + grad_bias"}

_L = suite.Layer
SMOKE = [
    _L("tiny", 3, 4, (5, 6, 7), 3, padding=1, note="3x3x3, padding 1"),
    _L("tiny_strided", 4, 6, 10, 3, stride=2, padding=1, n=2,
       note="stride 2 (last input row half used), batch 2"),
    _L("tiny_gaps", 2, 3, 8, 2, stride=3, note="stride 3 > kernel 2: voxels no output sees"),
    _L("tiny_mixed", 3, 5, (6, 8, 7), (3, 2, 3), stride=(1, 2, 1), padding=(2, 1, 0),
       dilation=(2, 1, 2), note="per-axis kernel, stride, padding, dilation"),
    _L("tiny_grouped", 8, 12, 6, 3, padding=1, groups=4, note="groups 4"),
    _L("tiny_dw", 6, 6, (4, 9, 9), 3, padding=1, groups=6, note="depthwise"),
    _L("tiny_dw_s2", 6, 12, 8, 3, stride=2, padding=1, groups=6,
       note="depthwise x2 channels, stride 2"),
    _L("tiny_pointwise", 8, 4, (3, 5, 6), 1, note="1x1x1"),
    _L("tiny_nobias", 2, 3, 5, 2, bias=False, note="no bias: 'all' asks for no grad_bias"),
    _L("tiny_f64", 3, 4, 6, 3, padding=1, dtype="float64", note="float64"),
    _L("tiny_dw_f64", 4, 4, 6, 3, padding=1, groups=4, dtype="float64",
       note="float64 depthwise"),
]


@dataclasses.dataclass(frozen=True)
class Backward(suite.Layer):
    """One backward call of a layer: the layer's geometry plus the output mask. ``flops``
    counts the forward's FLOPs once per gradient of grad_input / grad_weight asked for."""
    mask: tuple = (True, True, True)

    @property
    def flops(self):
        return super().flops * (int(self.mask[0]) + int(self.mask[1]))

    @classmethod
    def of(cls, layer, mask):
        """``layer`` with ``mask`` (a layer without bias asks for no grad_bias)."""
        fields = {f.name: getattr(layer, f.name) for f in dataclasses.fields(suite.Layer)}
        return cls(**fields, mask=(bool(mask[0]), bool(mask[1]), bool(mask[2]) and layer.bias))


def make_inputs(layer, seed):
    """``(x, w, grad_output)``: the forward's reproducible inputs and an N(0, 1) grad_output."""
    x, w, _ = layer.make_inputs(seed)
    go = np.random.default_rng(seed + 1).standard_normal(layer.output_shape,
                                                         dtype=np.dtype(layer.dtype))
    return x, w, go


# --- the two systems ----------------------------------------------------------------------
# bench.measure() calls prepare(layer, x, w, b, threads) with the inputs it is given, here
# (x, w, grad_output), and checks a callable's result against PyTorch's as one forward output.
# The callables below return None instead (measure then records no error) and keep their first
# result, the warm-up's, in ``outputs[threads]`` for check() to compare gradient by gradient.
class _KeepsFirst:
    def prepare(self, layer, x, w, go, threads):
        run, outputs = self.callable(layer, x, w, go, threads), self.outputs

        def call():
            out = run()
            if threads not in outputs:
                outputs[threads] = out
        return call


class OursBackward(_KeepsFirst):
    """``conv3d_cpu.conv3d_backward``; AttributeError when the build has none."""

    key = "ours"
    is_peer = False

    def __init__(self, algorithm):
        import conv3d_cpu
        self._backward = conv3d_cpu.conv3d_backward
        self.algorithm = algorithm
        self.version = conv3d_cpu.__version__
        self.outputs = {}

    def callable(self, layer, x, w, go, threads):
        backward, kwargs = self._backward, layer.conv_kwargs()
        mask, algorithm = layer.mask, self.algorithm

        def run():
            return backward(go, x, w, output_mask=mask, algorithm=algorithm,
                            num_threads=threads, **kwargs)
        return run


class TorchBackward(_KeepsFirst, systems.TorchPeer):
    """``torch.ops.aten.convolution_backward`` (what autograd runs for ``F.conv3d``)."""

    def __init__(self):
        super().__init__()
        self.outputs = {}

    def callable(self, layer, x, w, go, threads):
        torch = self.torch
        op = torch.ops.aten.convolution_backward
        tx, tw, tgo = (torch.from_numpy(a) for a in (x, w, go))
        args = (tgo, tx, tw, [layer.cout], list(layer.stride), list(layer.padding),
                list(layer.dilation), False, [0, 0, 0], layer.groups, list(layer.mask))
        torch.set_num_threads(threads)

        def run():
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            with torch.inference_mode():
                grads = op(*args)
            return tuple(None if g is None else g.numpy() for g in grads)
        return run

    def reference64(self, layer, x, w, go, threads):
        """Every gradient of ``layer`` computed in float64 (untimed)."""
        lay64 = Backward.of(dataclasses.replace(layer, dtype="float64"), MASKS["all"])
        return self.callable(lay64, *(a.astype(np.float64) for a in (x, w, go)), threads)()


def check(blay, got, ref, ref64):
    """Errors of one system's gradients ``got``: ``(errors, problems)``. ``errors`` maps
    ``rel_err`` (against PyTorch's ``ref``; skipped when None) and ``rel_err64`` (against the
    float64 ``ref64``; skipped when None) to ``{gradient: max relative error}``; ``problems``
    lists what is wrong besides (a gradient missing or not asked for, dtype, shape)."""
    errors, problems = {"rel_err": {}, "abs_err": {}, "rel_err64": {}}, []
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return errors, [f"returned {type(got).__name__}, not a 3-tuple"]
    for i, (name, asked, g) in enumerate(zip(GRADS, blay.mask, got)):
        if not asked:
            if g is not None:
                problems.append(f"{name} not asked for but returned")
            continue
        if g is None:
            problems.append(f"{name} asked for but None")
            continue
        if not isinstance(g, np.ndarray) or g.dtype != np.dtype(blay.dtype):
            problems.append(f"{name} is {type(g).__name__} {getattr(g, 'dtype', '')}, "
                            f"not {blay.dtype}")
            continue
        for key, other in (("rel_err", ref), ("rel_err64", ref64)):
            if other is None:
                continue
            try:
                abs_err, rel_err = bench.max_err(g, other[i])
            except ValueError as e:
                problems.append(f"{name}: {e}")
                break
            errors[key][name] = rel_err
            if key == "rel_err":
                errors["abs_err"][name] = abs_err
    return errors, problems


def record_errors(blay, by_threads, syss, ref64):
    """Add every system's errors to its records (``max_rel_err``: worst gradient against
    PyTorch; ``max_rel_err64``: against float64; ``problems``)."""
    torch_sys = next(s for s in syss if s.key == "torch")
    for t, recs in by_threads.items():
        ref = torch_sys.outputs.get(t)
        for s in syss:
            rec, got = recs[s.key], s.outputs.get(t)
            if got is None:
                continue
            errors, problems = check(blay, got, None if s is torch_sys else ref, ref64)
            rec.update(errors)
            for key, into in (("rel_err", "max_rel_err"), ("abs_err", "max_abs_err"),
                              ("rel_err64", "max_rel_err64")):
                rec[into] = max(errors[key].values()) if errors[key] else None
            if problems:
                rec["problems"] = problems
                say(f"  WARNING: {s.key} on {blay.name} ({mask_name(blay.mask)}) T={t}: "
                    + "; ".join(problems))


def mask_name(mask):
    return next((k for k, v in MASKS.items() if v == tuple(mask)),
                "".join("TF"[not m] for m in mask))


# --- text output (bench/transposed.py's too) ----------------------------------------------
def system_key(system, mode):
    """A result's key: ``ours:all`` etc., or the bare ``ours`` / ``torch`` where a benchmark
    has one mode (None)."""
    return system if mode is None else f"{system}:{mode}"


def results_table(results, layer_list, threads, masks):
    """The results of ``ours`` and ``torch`` per layer, thread count and mask (``masks``:
    ``[None]`` for a benchmark without masks, no "grads" column then)."""
    moded = masks != [None]
    header = ["layer", "T"] + (["grads"] if moded else []) + [
        "ours ms", "torch ms", "ours/torch", "ours GFLOP/s", "%peak", "torch GFLOP/s",
        "%peak", "runs", "err vs torch", "vs f64: ours", "torch"]
    rows, notes = [], {}

    def note_ref(rec):
        note = rec.get("note") or "; ".join(rec.get("problems", [])) or "?"
        notes.setdefault(note, len(notes) + 1)
        return f"n/a [{notes[note]}]"

    for lay in layer_list:
        first = True
        for t in threads:
            for m in masks:
                ours = results.get((lay.name, t, system_key("ours", m)))
                tr = results.get((lay.name, t, system_key("torch", m)), {})
                row = [lay.name if first else "", t] + ([m] if moded else [])
                first = False
                for rec in (ours, tr):
                    row.append(bench.fmt_ms(rec["median_s"]) if rec and "median_s" in rec
                               else note_ref(rec) if rec else "-")
                row.append(bench.fmt_ratio((ours or {}).get("ratio", {}).get("torch")))
                for rec in (ours, tr):
                    timed = rec and "median_s" in rec
                    row += [f"{rec['gflops']:.1f}" if timed else "",
                            f"{100 * rec['frac_peak']:.1f}%" if timed else ""]
                row.append("/".join(str(rec.get("runs", "-")) for rec in (ours or {}, tr)))
                row.append(bench.fmt_err((ours or {}).get("max_rel_err")))
                row += [bench.fmt_err((ours or {}).get("max_rel_err64")),
                        bench.fmt_err(tr.get("max_rel_err64"))]
                if ours and ours.get("problems") and "median_s" in ours:
                    row[-3] = note_ref(ours)
                rows.append(row)
    align = ["<", ">"] + (["<"] if moded else []) + [">"] * (len(header) - 2 - moded)
    return bench.table(rows, header, align) + "".join(
        f"\n[{i}] {note}" for note, i in notes.items())


def where(rec):
    """``layer, mask, T=t`` (no mask where the record has none)."""
    return ", ".join([rec["layer"]] + ([rec["mask_name"]] if "mask_name" in rec else [])
                     + [f"T={rec['threads']}"])


def error_lines(results):
    """The worst error of each kind, with where it happened."""
    lines = []
    for system, key, what in (("ours", "max_rel_err", "ours vs torch"),
                              ("ours", "max_rel_err64", "ours vs float64 torch"),
                              ("torch", "max_rel_err64", "torch vs float64 torch")):
        recs = [r for r in results.values()
                if r["system"].split(":")[0] == system and r.get(key) is not None]
        if recs:
            top = max(recs, key=lambda r: r[key])
            lines.append(f"max relative error, {what}: {top[key]:.1e} ({where(top)})")
    return lines


def progress_line(label, by_threads, took):
    """``label (took s): T=1 ours x ms xN | torch ...; T=2 ...`` for one measurement, with
    the cores other processes used meanwhile when that is more than noise."""
    parts = [f"T={t} " + " | ".join(
        f"{k} {bench.fmt_ms(r['median_s'])} ms x{r['runs']}" if "median_s" in r
        else f"{k} n/a" for k, r in recs.items()) for t, recs in by_threads.items()]
    other = next(iter(by_threads.values()))["torch"].get("other_cpu_cores")
    busy = (f" [other processes used {other:.1f} cores meanwhile]"   # (noise < 0.5 s)
            if other is not None and other > bench.BUSY_WARN and took >= 0.5 else "")
    return f"{label} ({took:.1f} s): " + "; ".join(parts) + busy


def closing_notes(results, other):
    """The summary's last lines: the largest errors, a peak assumption that looks low, and
    how busy the machine was (``other``: cores other processes used, or None)."""
    for line in error_lines(results):
        say("  " + line)
    over = [r for r in results.values() if r.get("frac_peak", 0) > 1.0]
    if over:
        top = max(over, key=lambda r: r["frac_peak"])
        say(f"  NOTE: the peak assumption looks low: {top['system']} reached "
            f"{100 * top['frac_peak']:.0f}% on {top['layer']} at {top['threads']} thread(s); "
            f"see --peak-gflops-per-core in bench/run.py --help")
    if other is not None:
        say(f"  other processes used {other:.2f} cores on average while timing"
            + (" -- the machine was not idle, timings (multi-threaded above all) are "
               "unreliable" if other > bench.BUSY_WARN else ""))


def smoke_verdict(results, failures):
    """``--smoke``'s end: add to ``failures`` each of our results that has no timing, a
    problem or an error above SMOKE_TOL, print the verdict; returns the exit status."""
    ours = [rec for (_, _, key), rec in results.items() if key.split(":")[0] == "ours"]
    for rec in ours:
        if "note" in rec:
            failures.append(f"{where(rec)}: {rec['note']}")
        elif rec.get("problems"):
            failures.append(f"{where(rec)}: " + "; ".join(rec["problems"]))
        elif rec.get("max_rel_err") is None or not rec["max_rel_err"] <= SMOKE_TOL:
            failures.append(f"{where(rec)}: max rel err {rec.get('max_rel_err')} > "
                            f"{SMOKE_TOL:g}")
    if failures:
        say("\nSMOKE FAILED:\n  " + "\n  ".join(failures))
        return 1
    say(f"\nsmoke: OK, every max relative error <= {SMOKE_TOL:g} ({len(ours)} results)")
    return 0


# --- command line (the parts bench/transposed.py shares) ----------------------------------
def make_parser(prog, description, epilog, stem, quick, function, per):
    """The command line of an op benchmark: ``(parser, its "what to run" group)`` (for the
    benchmark's own options), with the options :func:`check_options` checks. ``stem``: the
    results' file names; ``quick``: the --quick layers; ``function``: the conv3d_cpu function
    timed; ``per``: what --wait-idle waits before."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to run")
    g.add_argument("--quick", action="store_true",
                   help=f"a subset ({', '.join(quick)}), fewer runs")
    g.add_argument("--smoke", action="store_true",
                   help=f"tiny layers, 1 run each; exit 1 unless every result is within "
                   f"{SMOKE_TOL:g} relative error of PyTorch's (no files unless --json)")
    bench.add_layer_options(g)
    g.add_argument("--algorithm", default="auto",
                   help=f"{function}'s algorithm= (default %(default)s)")
    t = p.add_argument_group("threads")
    t.add_argument("--threads", type=bench.int_list, default=[1, 2], metavar="T[,T]",
                   help="thread counts, interleaved (default 1,2)")
    t.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help=f"before each {per} wait up to SECONDS for other processes to stop "
                   "using the CPUs (default 0: don't wait)")
    bench.add_timing_options(p)
    o = p.add_argument_group("output and details")
    bench.add_peak_option(o)
    o.add_argument("--json", metavar="PATH", help="write the JSON here (the chart goes next "
                   f"to it) instead of bench/results/{stem}-<timestamp>.json + "
                   f"{stem}-latest.json")
    o.add_argument("--no-plot", action="store_true", help="no PNG chart")
    o.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    return p, g


def check_options(p, args):
    """Exit with a usage error on options of :func:`make_parser` that do not go together."""
    if not args.threads or any(t < 1 for t in args.threads):
        p.error("--threads must be positive")
    if args.layer and args.only:
        p.error("--layer and --only exclude each other")
    if args.smoke and (args.quick or args.only or args.layer):
        p.error("--smoke runs its own tiny layers: no --quick, --only or --layer")


def parse_args(argv=None):
    p, g = make_parser(
        "bench/backward.py",
        "Benchmark conv3d_cpu.conv3d_backward against PyTorch's convolution_backward on the "
        "suite's 3D-CNN layers (or your own, with --layer), for three output masks.",
        "layers in the suite: " + ", ".join(lay.name for lay in suite.SUITE)
        + "\nmasks: " + ", ".join(f"{k} = {MASK_ABOUT[k]} {v}" for k, v in MASKS.items())
        + "\n--layer: as bench/run.py --layer (see bench/run.py --help)",
        "backward", suite.QUICK, "conv3d_backward", "(layer, mask)")
    g.add_argument("--masks", type=bench.name_list, default=",".join(MASKS),
                   metavar="M[,M]", help="output masks, from %(default)s")
    args = p.parse_args(argv)
    bad = [m for m in args.masks if m not in MASKS]
    if bad or not args.masks:
        p.error(f"unknown mask(s) {bad}: choose from {', '.join(MASKS)}")
    check_options(p, args)
    return args, p


def torch_missing(prog):
    """True, said, where PyTorch (the reference) does not import."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        say(f"{prog}: PyTorch is not installed ({e}); it is the reference, so there is "
            "nothing to run (skipped)")
        return True
    return False


def setup(args, parser, smoke_layers, pick_layers):
    """``(layers, timing policy, fp32 GFLOP/s per core, its source)``: ``smoke_layers`` with
    one timed run under --smoke, else ``pick_layers(args, parser)`` with the timing options'
    policy."""
    if args.smoke:
        layer_list, policy = list(smoke_layers), bench.Policy(reps=1, burst=1)
    else:
        layer_list = pick_layers(args, parser)
        policy = bench.timing_policy(args, parser, args.quick)
    return (layer_list, policy) + bench.resolve_peak(args, parser)


def make_ours(cls, args, function, notes, failures):
    """``cls(args.algorithm)``, or None with a note (and, under --smoke, a failure) where
    this conv3d_cpu has no ``function``."""
    try:
        return cls(args.algorithm)
    except AttributeError:
        notes["ours"] = f"skipped: this conv3d_cpu has no {function}; timing PyTorch only"
        if args.smoke:
            failures.append(f"conv3d_cpu.{function} does not exist")
        return None


def run_meta(args, argv, syss, policy, peak, threads, started, **more):
    """The JSON's ``meta``: machine, versions, options, peak (``(per core, source)``),
    timing and thread counts, then ``more``."""
    model, mhz = bench.cpu_info()
    per_core, peak_src = peak
    return dict(
        timestamp=started.isoformat(timespec="seconds"), host=platform.node(), cpu=model,
        cpu_mhz=mhz, cores=bench.cpu_count(), python=platform.python_version(),
        numpy=np.__version__, versions={s.key: s.version for s in syss}, isa=bench._our_isa(),
        preset="smoke" if args.smoke else "quick" if args.quick else "full",
        argv=sys.argv[1:] if argv is None else list(argv),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"), algorithm=args.algorithm,
        peak=dict(gflops_per_core_fp32=per_core, gflops_per_core_fp64=per_core / 2,
                  source=peak_src),
        timing=dataclasses.asdict(policy) | {"describe": policy.describe()}, threads=threads,
        **more)


def say_setup(meta):
    """The header's lines on FLOPs, peak, timing and OpenMP runtimes."""
    peak = meta["peak"]
    say(f"FLOPs: {meta['flops']}")
    say(f"peak: {peak['gflops_per_core_fp32']:.1f} GFLOP/s/core fp32, "
        f"{peak['gflops_per_core_fp64']:.1f} fp64 ({peak['source']})")
    say(f"timing: {meta['timing']['describe']}; systems and thread counts {meta['threads']} "
        "interleaved")
    say("OpenMP runtimes loaded: " + (", ".join(systems.openmp_runtimes()) or "none found"))


def measure_one(what, lay, syss, policy, inputs, args, meta, failures):
    """``(by_threads, seconds)`` of ``bench.measure`` on ``lay`` at ``meta["threads"]``
    (after --wait-idle); ``(None, seconds)``, said and added to ``failures``, where ours
    raised (``what`` names the measurement)."""
    if args.wait_idle:
        waited = bench.wait_for_idle(args.wait_idle)
        if waited > 1:
            say(f"  (waited {waited:.0f} s for other processes to go quiet)")
    t0 = time.perf_counter()
    try:
        by_threads = bench.measure(lay, meta["threads"], syss, policy, inputs,
                                   meta["peak"]["gflops_per_core_fp32"])
    except Exception as e:  # ours failed (measure re-raises our errors but ValueError)
        msg = f"{what}: {type(e).__name__}: {e}"
        say(f"  FAILED: {msg}")
        failures.append(msg)
        by_threads = None
    return by_threads, time.perf_counter() - t0


def say_results(meta, t_start, contention, results, layer_list, masks, err_over=""):
    """After the timing loop: its seconds and the cores other processes used into ``meta``,
    then the results table said (``err_over``: what the error is the worst of). Returns the
    cores other processes used (None where unknown)."""
    meta["elapsed_s"] = elapsed = time.perf_counter() - t_start
    meta["other_cpu_cores"] = other = contention.other_cores()
    say(f"\nResults ({elapsed:.0f} s of timing). ms = median; ours/torch = time ratio (< 1: "
        f"ours faster); runs = ours/torch; err = max|a - b| / max|b|{err_over}, against "
        f"PyTorch's result and, for float32, against PyTorch's float64 result")
    say(results_table(results, layer_list, meta["threads"], masks))
    return other


def finish(args, meta, layer_list, results, summary, failures, stem, keys, title):
    """The end of a run: --smoke's verdict or the failures, then (unless --smoke without
    --json) the JSON and the chart of ``keys``; returns the exit status."""
    status = smoke_verdict(results, failures) if args.smoke else 0
    if failures and not args.smoke:
        say("\nfailed: " + "; ".join(failures))
        status = 1
    if args.json or not args.smoke:
        doc = dict(meta=meta, layers=[lay.to_dict() for lay in layer_list],
                   results=list(results.values()), summary=summary, failures=failures)
        threads, per_core = meta["threads"], meta["peak"]["gflops_per_core_fp32"]
        started = datetime.datetime.fromisoformat(meta["timestamp"])
        bench.save_results(doc, args.json, stem, started, None if args.no_plot else (
            lambda png: bench.plot(png, results, layer_list, max(threads), sorted(threads),
                                   keys, per_core, title)))
    return status


def main(argv=None):
    args, parser = parse_args(argv)
    if torch_missing("bench/backward.py"):
        return 1 if args.smoke else 0
    layer_list, policy, per_core, peak_src = setup(args, parser, SMOKE, bench.pick_layers)
    threads = list(dict.fromkeys(args.threads))
    masks = list(dict.fromkeys(args.masks))

    notes, failures = {}, []
    torch_sys = TorchBackward()
    ours = make_ours(OursBackward, args, "conv3d_backward", notes, failures)
    syss = ([ours] if ours else []) + [torch_sys]

    meta = run_meta(
        args, argv, syss, policy, (per_core, peak_src), threads, datetime.datetime.now(),
        masks={m: dict(mask=MASKS[m], about=MASK_ABOUT[m]) for m in masks},
        torch=dict(op="torch.ops.aten.convolution_backward", set_num_threads="= threads",
                   num_interop_threads=1),
        flops="grad_input = grad_weight = 2 * N * Cout * oD*oH*oW * (Cin/groups) * kD*kH*kW "
              "(the forward's); 'all' counts both, grad_bias not counted",
        notes=notes)

    bench.say_header("conv3d_cpu backward benchmark", meta, notes)
    say("masks: " + "; ".join(f"{m} = {MASK_ABOUT[m]} {MASKS[m]}" for m in masks))
    say(f"ours: conv3d_cpu.conv3d_backward(..., output_mask=mask, algorithm="
        f"{args.algorithm!r}, num_threads=T); torch: convolution_backward(..., mask) under "
        f"set_num_threads(T), set_num_interop_threads(1)")
    say_setup(meta)
    say("\n" + bench.suite_table(layer_list)
        + "\n(GFLOP: the forward's; grad_input and grad_weight cost as much each)\n")

    results, contention, t_start = {}, bench.Contention(), time.perf_counter()
    for i, lay in enumerate(layer_list):
        x, w, go = make_inputs(lay, args.seed)
        ref64 = (torch_sys.reference64(lay, x, w, go, max(threads))
                 if lay.dtype != "float64" else None)
        for m in masks:
            blay = Backward.of(lay, MASKS[m])
            for s in syss:
                s.outputs.clear()
            by_threads, took = measure_one(f"{lay.name} {m}", blay, syss, policy, (x, w, go),
                                           args, meta, failures)
            if by_threads is None:
                continue
            record_errors(blay, by_threads, syss, ref64)
            for t in threads:
                for key, rec in by_threads[t].items():
                    rec.update(system=f"{key}:{m}", mask=blay.mask, mask_name=m)
                    results[(lay.name, t, f"{key}:{m}")] = rec
            say(progress_line(f"[{i + 1}/{len(layer_list)}] {lay.name} {m}", by_threads, took))
        del x, w, go, ref64
    other = say_results(meta, t_start, contention, results, layer_list, masks,
                        " over the gradients asked for")

    ours_keys = [f"ours:{m}" for m in masks] if ours else []
    summary = [bench.summarize(results, layer_list, t, ours_keys) for t in threads]
    say("\nSummary (the only peer is PyTorch: best peer = torch)")
    for s in summary:
        for line in (bench.summary_lines(s) if ours else []):
            say("  " + line)
    if not ours:
        say("  ours not measured: " + notes["ours"])
    closing_notes(results, other)
    return finish(args, meta, layer_list, results, summary, failures, "backward",
                  [f"{s.key}:{m}" for m in masks for s in syss],
                  "conv3d_cpu.conv3d_backward vs torch convolution_backward")


if __name__ == "__main__":
    sys.exit(main())
