#!/usr/bin/env python
"""Benchmark conv3d_cpu against PyTorch, ONNX Runtime and OpenVINO on real 3D-CNN layers.

Runs the suite in ``bench/layers.py`` (or layers given with ``--layer``) and, per layer and
thread count, times ``conv3d_cpu.conv3d`` for each requested algorithm and every installed
peer (``torch.nn.functional.conv3d``, ONNX Runtime ``Conv``, OpenVINO) in the same process, with the
same thread count. Every (system, thread count) pair of a layer is timed in bursts that are
interleaved in a fresh random order each round, so that drift of the machine hits every
system and thread count alike, and each burst starts with an untimed settle run so that no
system is timed while the previous one's thread pool winds down.

Timing: one warm-up call per system (its output gives the error against PyTorch), then
rounds of ``--burst`` timed runs until each system has ``--reps`` runs or, adaptively, at least
``--min-reps`` runs and ``--target-time`` seconds, or ``--max-reps`` runs, or 3 runs and
``--max-time`` seconds (a cap for slow kernels). The median is reported, with the number of
runs.

Reported: median time, GFLOP/s (FLOPs = 2*N*Cout*oD*oH*oW*(Cin/groups)*kD*kH*kW), fraction of
the machine's peak (threads x per-core peak; see ``--peak-gflops-per-core``), our time over
each peer's and over the best peer's, max abs error against PyTorch, the growth of peak RSS
during one call in a fresh process (full mode) and a thread sweep with parallel efficiency.
Results go to the terminal, to ``bench/results/bench-<timestamp>.json`` (+ ``latest.json``)
and, when matplotlib is installed, to a PNG chart next to the JSON.

Examples::

    python bench/run.py                      # full suite, thread sweep, memory probe
    python bench/run.py --quick              # a subset, < 1 minute
    python bench/run.py --only unet,c3d --no-sweep
    python bench/run.py --layer "cin=32,cout=32,size=32,k=3,p=1" --threads 1,2 \\
        --algorithms direct,auto --reps 20 --dtype float32
"""
import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import layers as suite  # noqa: E402
import peers as systems  # noqa: E402

# Algorithm names are free-form: a name this build does not know is skipped with a note, so
# new algorithms become columns by adding them here or passing --algorithms.
DEFAULT_ALGORITHMS = ("auto", "direct", "winograd_f2", "winograd_f4")
BUSY_WARN = 0.15   # cores used by other processes above which timings are flagged


def say(*args, **kwargs):
    print(*args, **kwargs, flush=True)


# --- machine ------------------------------------------------------------------------------
def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_info():
    model, mhz = platform.processor() or platform.machine(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(value)
    except OSError:
        pass
    return model, mhz


def default_threads():
    try:
        from conv3d_cpu._native.openmp import default_num_threads
        return int(default_num_threads())
    except ImportError:
        return cpu_count()


def sweep_counts(ncores):
    """1, 2, 4, ... below ``ncores``, then ``ncores``."""
    counts, t = [], 1
    while t < ncores:
        counts.append(t)
        t *= 2
    return counts + [ncores]


class Contention:
    """CPU time that other processes used while we timed: (busy CPU time of the whole machine
    from /proc/stat, minus this process's CPU time) / wall time, in cores. Anything well above
    0 means the numbers (multi-threaded ones above all) are unreliable."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start = self._sample()

    def _sample(self):
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)   # idle + iowait
        busy = sum(v[:8]) - idle                      # guest time is already in user
        t = os.times()
        return time.perf_counter(), busy / self.tick, t.user + t.system

    def other_cores(self):
        """Cores used by other processes since construction (None where unknown)."""
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        wall = end[0] - self.start[0]
        return max(0.0, ((end[1] - self.start[1]) - (end[2] - self.start[2])) / wall)


def wait_for_idle(max_wait, probe=0.3):
    """Sleep until other processes use < BUSY_WARN cores (sampled over ``probe`` s) or
    ``max_wait`` seconds have passed; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        c = Contention()
        time.sleep(probe)
        other = c.other_cores()
        if other is None or other < BUSY_WARN:
            break
    return time.perf_counter() - t0


_SGEMM = """
import time, numpy as np
a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
a @ a
best = min((lambda t: (a @ a, time.perf_counter() - t)[1])(time.perf_counter())
           for _ in range(5))
print(2 * 2048 ** 3 / best / 1e9)
"""


def measure_sgemm():
    """GFLOP/s of a 1-thread float32 2048^3 matmul in a fresh process (BLAS threads pinned
    to 1 through the environment), or None."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", BLIS_NUM_THREADS="1")
    try:
        out = subprocess.run([sys.executable, "-c", _SGEMM], env=env, capture_output=True,
                             text=True, timeout=120)
        return float(out.stdout.split()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def peak_gflops(per_core, dtype, threads):
    return per_core * threads * (0.5 if np.dtype(dtype) == np.float64 else 1.0)


# --- timing -------------------------------------------------------------------------------
@dataclasses.dataclass
class Policy:
    reps: int = None        # fixed number of timed runs (overrides the adaptive rule)
    min_reps: int = 5
    max_reps: int = 100
    target: float = 0.5     # seconds of timed runs per system
    cap: float = 2.0        # ... stop anyway after this many seconds once cap_reps runs are in
    cap_reps: int = 3
    burst: int = 3          # timed runs per system per round, after one untimed settle run

    def done(self, times):
        n, total = len(times), sum(times)
        if self.reps:
            return n >= self.reps
        return (n >= self.max_reps or (n >= self.min_reps and total >= self.target)
                or (n >= self.cap_reps and total >= self.cap))

    def describe(self):
        if self.reps:
            return (f"{self.reps} timed runs per system after 1 warm-up, in rounds of "
                    f"{self.burst} (after 1 untimed settle run)")
        return (f"1 warm-up, then rounds of {self.burst} runs (after 1 untimed settle run) "
                f"until >= {self.min_reps} runs and >= {self.target:g} s, "
                f"or {self.max_reps} runs, or >= {self.cap_reps} runs and >= {self.cap:g} s; "
                f"median reported")


def _our_isa():
    """The instruction set of conv3d_cpu's kernels in this process (CONV3D_CPU_ISA may force
    a lower one than the CPU has)."""
    from conv3d_cpu._native import isa as _isa
    return _isa.current_isa()


def max_err(out, ref):
    if out is None or ref is None:
        return None, None
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from PyTorch's {ref.shape}")
    diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
    scale = float(np.max(np.abs(ref))) or 1.0
    return diff, diff / scale


def measure(layer, thread_counts, syss, policy, inputs, peak_per_core):
    """Time every system on one layer at every thread count; returns {threads: {key: record}}.

    All (system, thread count) pairs are interleaved, so a change in the machine's speed
    during the measurement (shared hosts drift by 10-20% within seconds) hits the 1-thread and
    the many-thread runs alike and the parallel efficiency compares like with like."""
    x, w, b = inputs
    contention = Contention()
    recs, fns, outs = {}, {}, {}
    for t in thread_counts:
        for s in syss:
            rec = recs[t, s.key] = dict(layer=layer.name, dtype=layer.dtype, threads=t,
                                        system=s.key, peer=s.is_peer,
                                        algorithm=getattr(s, "algorithm", None))
            try:
                fn = s.prepare(layer, x, w, b, t)
                t0 = time.perf_counter()
                out = fn()
                rec["warmup_s"] = time.perf_counter() - t0
            except systems.Unsupported as e:
                rec["note"] = str(e)
                continue
            except ValueError as e:  # ours: algorithm not applicable to this layer
                rec["note"] = f"ValueError: {e}"
                continue
            except Exception as e:
                if not s.is_peer:
                    raise
                rec["note"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                continue
            fns[t, s.key], outs[t, s.key] = fn, out
    for (t, key), out in outs.items():
        if key != "torch":
            try:
                recs[t, key]["max_abs_err"], recs[t, key]["max_rel_err"] = max_err(
                    out, outs.get((t, "torch")))
            except ValueError as e:
                recs[t, key]["error_note"] = str(e)
                say(f"  WARNING: {key} on {layer.name}: {e}")
    del outs

    times = {pair: [] for pair in fns}
    active = list(fns)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        # Each round, every (system, threads) pair runs a short burst in a fresh random order.
        # The untimed settle run absorbs what the previous pair leaves behind (a thread pool
        # still spinning or winding down, a pool being resized, other data in the caches);
        # the timed runs then see the system's own steady state, as in a network whose layers
        # all use one library.
        order_rng = random.Random(len(active))
        while active:
            order = list(active)
            order_rng.shuffle(order)
            for pair in order:
                fn = fns[pair]
                fn()
                for _ in range(policy.burst):
                    t0 = time.perf_counter()
                    fn()
                    times[pair].append(time.perf_counter() - t0)
                    if policy.done(times[pair]):
                        break
            active = [pair for pair in active if not policy.done(times[pair])]
    finally:
        if gc_was_enabled:
            gc.enable()

    other = contention.other_cores()
    for rec in recs.values():
        rec["other_cpu_cores"] = other
    for (t, key), ts in times.items():
        med = statistics.median(ts)
        gflops = layer.flops / med / 1e9
        peak = peak_gflops(peak_per_core, layer.dtype, t)
        recs[t, key].update(
            median_s=med, min_s=min(ts), runs=len(ts), times_s=ts,
            iqr_s=(float(np.percentile(ts, 75) - np.percentile(ts, 25))),
            gflops=gflops, peak_gflops=peak, frac_peak=gflops / peak)
    by_threads = {t: {key: r for (tt, key), r in recs.items() if tt == t} for t in thread_counts}
    for trecs in by_threads.values():
        peers_t = {k: r["median_s"] for k, r in trecs.items() if r["peer"] and "median_s" in r}
        for rec in trecs.values():
            if rec["peer"] or "median_s" not in rec or not peers_t:
                continue
            rec["ratio"] = {k: rec["median_s"] / t for k, t in peers_t.items()}
            best = min(peers_t, key=peers_t.get)
            rec["ratio"]["best"] = rec["median_s"] / peers_t[best]
            rec["best_peer"] = best
    return by_threads


# --- memory -------------------------------------------------------------------------------
# A fixed glibc mmap threshold: large blocks are always fresh mappings, returned to the OS
# when freed, so one layer's freed memory cannot hide the next layer's needs.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}


def probe_memory(layer_list, syss, threads):
    """{(layer, system): record} from bench/memprobe.py, one fresh process per system."""
    found = {}
    for s in syss:
        todo = [dataclasses.asdict(layer) for layer in layer_list]
        while todo:
            req = json.dumps({"system": s.key, "threads": threads, "layers": todo})
            try:
                proc = subprocess.run([sys.executable, os.path.join(HERE, "memprobe.py")],
                                      input=req, capture_output=True, text=True, timeout=900,
                                      env=dict(os.environ, **MALLOC_ENV))
            except subprocess.TimeoutExpired:
                say(f"  memory probe for {s.key} timed out")
                break
            lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
            done = [r for r in lines if r.get("note") != "restart"]
            for r in done:
                found[(r["layer"], s.key)] = r
            if not done:
                say(f"  memory probe for {s.key} failed: "
                    f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
                break
            todo = todo[len(done):]
    return found


# --- text output --------------------------------------------------------------------------
def fmt_ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def fmt_ratio(r):
    return "" if r is None else f"{r:.2f}" if r < 100 else f"{r:.0f}"


def fmt_err(e):
    return "" if e is None else f"{e:.1e}"


def table(rows, header, align=None):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    align = align or ["<"] + [">"] * (len(header) - 1)
    lines = []
    for i, row in enumerate([header] + rows):
        lines.append("  ".join(f"{str(c):{a}{w}}" for c, a, w in zip(row, align, widths))
                     .rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def suite_table(layer_list):
    rows = [[lay.name, lay.describe(), lay.dtype, f"{lay.flops / 1e9:.3f}",
             f"{lay.nbytes('input') / 2**20:.1f}", f"{lay.nbytes('output') / 2**20:.1f}",
             lay.note] for lay in layer_list]
    return table(rows, ["layer", "shape (N x Cin->Cout, DxHxW, kernel...)", "dtype", "GFLOP",
                        "in MiB", "out MiB", "from"], ["<", "<", "<", ">", ">", ">", "<"])


def main_table(results, layer_list, main_threads, keys, peer_keys, memory):
    header = ["layer", "T", "system", "median ms", "runs", "GFLOP/s", "%peak"]
    header += [f"ours/{p}" for p in peer_keys] + (["ours/best"] if peer_keys else [])
    header += ["max|err|", "extra MiB"] if memory else ["max|err|"]
    rows, notes = [], {}
    for lay in layer_list:
        for t in main_threads:
            first = True
            for key in keys:
                rec = results.get((lay.name, t, key))
                if rec is None:
                    continue
                row = [lay.name if first else "", t if first else "", key]
                first = False
                if "median_s" not in rec:
                    note = rec.get("note", "?")
                    if note not in notes:
                        notes[note] = len(notes) + 1
                    row += [f"n/a [{notes[note]}]"] + [""] * (len(header) - 4)
                    rows.append(row)
                    continue
                row += [fmt_ms(rec["median_s"]), rec["runs"], f"{rec['gflops']:.1f}",
                        f"{100 * rec['frac_peak']:.1f}%"]
                ratio = rec.get("ratio", {})
                row += [fmt_ratio(ratio.get(p)) for p in peer_keys]
                if peer_keys:
                    row.append(fmt_ratio(ratio.get("best")))
                row.append("ref" if key == "torch" else fmt_err(rec.get("max_abs_err")))
                if memory:
                    m = memory.get((lay.name, key), {})
                    extra = m.get("peak_delta_bytes")
                    row.append("" if extra is None else
                               f"{max(0, extra - m['output_bytes']) / 2**20:.1f}")
                rows.append(row)
    align = ["<", ">", "<"] + [">"] * (len(header) - 3)
    return table(rows, header, align) + "".join(
        f"\n[{i}] {note}" for note, i in notes.items())


def sweep_table(results, layer_list, counts, keys):
    header = ["layer", "system"] + [f"T={t}" for t in counts]
    rows = []
    for lay in layer_list:
        first = True
        for key in keys:
            recs = [results.get((lay.name, t, key)) for t in counts]
            if not any(r and "median_s" in r for r in recs):
                continue
            row = [lay.name if first else "", key]
            first = False
            base = next((r for r in recs if r and "median_s" in r), None)
            for r in recs:
                if not r or "median_s" not in r:
                    row.append("n/a")
                    continue
                eff = parallel_efficiency(base, r)
                row.append(f"{fmt_ms(r['median_s'])} ms" + (
                    "" if r is base else f" ({100 * eff:.0f}%)"))
            rows.append(row)
    return table(rows, header, ["<", "<"] + [">"] * len(counts))


def parallel_efficiency(base, rec):
    return (base["median_s"] * base["threads"]) / (rec["median_s"] * rec["threads"])


def geomean(values):
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summarize(results, layer_list, t, ours_keys):
    """Summary dict at thread count ``t``: per algorithm, geomean / worst of ours/best peer;
    float64 speedups vs PyTorch."""
    out = {"threads": t, "per_algorithm": {}, "float64_vs_torch": {}}
    for key in ours_keys:
        ratios = {lay.name: results[(lay.name, t, key)]["ratio"]["best"]
                  for lay in layer_list
                  if "ratio" in results.get((lay.name, t, key), {})}
        if not ratios:
            continue
        worst = max(ratios, key=ratios.get)
        out["per_algorithm"][key] = dict(
            geomean_ours_over_best_peer=geomean(ratios.values()), layers=len(ratios),
            worst_layer=worst, worst_ratio=ratios[worst],
            wins=sum(r < 1 for r in ratios.values()))
        f64 = {}
        for lay in layer_list:
            rec = results.get((lay.name, t, key), {})
            if lay.dtype == "float64" and "torch" in rec.get("ratio", {}):
                f64[lay.name] = 1.0 / rec["ratio"]["torch"]
        if f64:
            out["float64_vs_torch"][key] = dict(per_layer=f64, geomean=geomean(f64.values()))
    return out


def summary_lines(summary):
    t = summary["threads"]
    lines = []
    for key, s in summary["per_algorithm"].items():
        lines.append(
            f"{key} @ {t} threads: geometric mean of time(ours)/time(best peer) = "
            f"{s['geomean_ours_over_best_peer']:.2f} over {s['layers']} layers "
            f"(faster on {s['wins']}); worst layer {s['worst_layer']} at "
            f"{s['worst_ratio']:.2f}")
    for key, s in summary["float64_vs_torch"].items():
        per = ", ".join(f"{k} {v:.2f}x" for k, v in s["per_layer"].items())
        lines.append(f"{key} @ {t} threads: float64 speedup vs PyTorch (time torch / time "
                     f"ours) = {s['geomean']:.2f}x geomean ({per})")
    if not lines:
        lines.append("no peer measured: no ratios")
    return lines


# --- plot ---------------------------------------------------------------------------------
def plot(path, results, layer_list, main_t, counts, keys, per_core, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    sweep = len(counts) > 1
    fig = plt.figure(figsize=(max(10, 0.9 * len(layer_list) + 4), 10 if sweep else 5.5))
    ax = fig.add_subplot(2 if sweep else 1, 1, 1)
    names = [lay.name for lay in layer_list]
    width = 0.8 / max(1, len(keys))
    cmap = plt.get_cmap("tab10")
    for i, key in enumerate(keys):
        vals = [results.get((n, main_t, key), {}).get("gflops", 0.0) for n in names]
        xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, vals, width, label=key, color=cmap(i % 10))
        for x, v in zip(xs, vals):
            if not v:
                ax.text(x, 0.02, "n/a", transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=7, rotation=90, color=cmap(i % 10))
    ax.axhline(peak_gflops(per_core, "float32", main_t), color="k", ls="--", lw=1,
               label=f"fp32 peak ({main_t} thr)")
    ax.axhline(peak_gflops(per_core, "float64", main_t), color="gray", ls=":", lw=1,
               label=f"fp64 peak ({main_t} thr)")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("GFLOP/s (log)")
    ax.set_title(f"{title}: GFLOP/s per layer, {main_t} threads")
    ax.legend(fontsize=8, ncol=min(6, len(keys) + 2), loc="upper left",
              bbox_to_anchor=(0, -0.28))
    ax.grid(axis="y", which="both", alpha=0.3)
    if sweep:
        ax2 = fig.add_subplot(2, 2, 3)
        ax3 = fig.add_subplot(2, 2, 4)
        ours = keys[0]
        for j, n in enumerate(names):
            recs = [results.get((n, t, ours), {}) for t in counts]
            if all("median_s" in r for r in recs):
                speed = [recs[0]["median_s"] / r["median_s"] for r in recs]
                ax2.plot(counts, speed, marker="o", color=plt.get_cmap("tab20")(j % 20),
                         label=n)
        ax2.plot(counts, [t / counts[0] for t in counts], "k--", lw=1, label="ideal")
        ax2.set_xlabel("threads")
        ax2.set_ylabel(f"speedup over {counts[0]} thread(s)")
        ax2.set_title(f"thread scaling, {ours}")
        ax2.set_xticks(counts)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7, ncol=2)
        # geometric-mean parallel efficiency per system
        for i, key in enumerate(keys):
            effs = []
            for t in counts:
                vals = []
                for n in names:
                    b, r = results.get((n, counts[0], key), {}), results.get((n, t, key), {})
                    if "median_s" in b and "median_s" in r:
                        vals.append(parallel_efficiency(b, r))
                effs.append(geomean(vals))
            if any(e is not None for e in effs):
                ax3.plot(counts, [e if e is not None else float("nan") for e in effs],
                         marker="o", color=cmap(i % 10), label=key)
        ax3.axhline(1.0, color="k", ls="--", lw=1)
        ax3.set_ylim(0, 1.1)
        ax3.set_xticks(counts)
        ax3.set_xlabel("threads")
        ax3.set_ylabel("parallel efficiency (geomean over layers)")
        ax3.set_title("parallel efficiency per system")
        ax3.grid(alpha=0.3)
        ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --- command line -------------------------------------------------------------------------
def say_header(title, meta, notes):
    """A run's first lines: title, time, CPU; versions and our ISA; the notes."""
    mhz = meta["cpu_mhz"]
    say(f"{title}  {meta['timestamp']}  {meta['cpu']}, {meta['cores']} cores"
        f"{f' @ {mhz:.0f} MHz' if mhz else ''}")
    say("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f", numpy {meta['numpy']}, python {meta['python']}; our kernels: {meta['isa']}")
    for k, v in notes.items():
        say(f"note: {k} {v}")


def int_list(text):
    return [int(v) for v in text.split(",") if v.strip()]


def name_list(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def add_layer_options(group):
    """``--only``, ``--layer`` and ``--dtype`` (read back by :func:`pick_layers`)."""
    group.add_argument("--only", type=name_list, metavar="NAME[,NAME]",
                       help="suite layers to run")
    group.add_argument("--layer", action="append", metavar="SPEC",
                       help="a custom layer instead of the suite (repeatable)")
    group.add_argument("--dtype", type=name_list, metavar="DTYPE[,DTYPE]",
                       help="dtype(s) for --layer layers (default float32)")


def add_timing_options(parser):
    """The "timing" option group (read back by :func:`timing_policy`)."""
    g = parser.add_argument_group("timing")
    g.add_argument("--reps", type=int, help="fixed number of timed runs per system "
                   "(default: adaptive, see --min-reps/--max-reps/--target-time/--max-time)")
    g.add_argument("--burst", type=int, default=3, metavar="K",
                   help="timed runs per system per round, each burst after one untimed "
                   "settle run (default %(default)s)")
    g.add_argument("--min-reps", type=int, help="adaptive: at least this many runs "
                   "(default 5; quick 3)")
    g.add_argument("--max-reps", type=int, help="adaptive: at most this many runs "
                   "(default 100; quick 30)")
    g.add_argument("--target-time", type=float, help="adaptive: seconds of runs per system "
                   "(default 0.5; quick 0.2)")
    g.add_argument("--max-time", type=float, help="adaptive: stop after this many seconds "
                   "once 3 runs are in (default 2; quick 1)")
    return g


def timing_policy(args, parser, quick=False):
    """The :class:`Policy` that :func:`add_timing_options`'s options ask for (``quick``:
    shorter adaptive defaults)."""
    if args.burst < 1:
        parser.error(f"--burst must be >= 1, got {args.burst}")
    policy = Policy(reps=args.reps, burst=args.burst)
    if quick:
        policy.min_reps, policy.max_reps, policy.target, policy.cap = 3, 30, 0.2, 1.0
    for name, attr in (("min_reps", "min_reps"), ("max_reps", "max_reps"),
                       ("target_time", "target"), ("max_time", "cap")):
        if getattr(args, name) is not None:
            setattr(policy, attr, getattr(args, name))
    return policy


def add_peak_option(group):
    """``--peak-gflops-per-core`` (read back by :func:`resolve_peak`)."""
    group.add_argument("--peak-gflops-per-core", default="probe",
                       metavar="X|probe|auto|measure", help="fp32 peak GFLOP/s per core for "
                       "%%peak (fp64 is half); 'probe' = independent FMA chains on one core "
                       "under the ISA our kernels use (conv3d_cpu._native.isa."
                       "fma_peak_gflops), 'auto' = 32 FLOP/cycle x /proc/cpuinfo MHz, "
                       "'measure' = a 1-thread numpy float32 matmul (default %(default)s)")


def resolve_peak(args, parser):
    """``(fp32 GFLOP/s per core, where the figure comes from)`` for
    ``--peak-gflops-per-core``."""
    if args.peak_gflops_per_core == "probe":
        from conv3d_cpu._native import isa
        from conv3d_cpu._native.constants import FMA_CHAINS

        say("measuring the per-core peak (FMA chains, 1 thread) ...")
        per_core = isa.fma_peak_gflops(False, seconds=0.1)
        return per_core, (f"{FMA_CHAINS} independent FMA chains on 1 core, "
                          f"ISA {isa.current_isa()}, measured now")
    if args.peak_gflops_per_core == "auto":
        mhz = cpu_info()[1]
        if not mhz:
            parser.error("--peak-gflops-per-core auto: no clock in /proc/cpuinfo")
        return 32 * mhz / 1e3, f"32 FLOP/cycle x {mhz:.0f} MHz (/proc/cpuinfo)"
    if args.peak_gflops_per_core == "measure":
        say("measuring the per-core peak (1-thread numpy float32 matmul) ...")
        per_core = measure_sgemm()
        if not per_core:
            parser.error("--peak-gflops-per-core measure: the matmul probe failed")
        return per_core, "1-thread numpy float32 matmul (BLAS) measured now, a lower bound"
    try:
        per_core = float(args.peak_gflops_per_core)
    except ValueError:
        parser.error("--peak-gflops-per-core takes a number, 'probe', 'auto' or 'measure'")
    return per_core, "--peak-gflops-per-core"


def save_results(doc, json_arg, stem, started, draw=None):
    """Write ``doc`` as JSON to ``json_arg`` or, when that is None, to
    ``bench/results/<stem>-<timestamp>.json`` and ``<stem>-latest.json`` (``latest.json`` for
    the ``bench`` stem); then, when ``draw`` is given, the PNG chart next to each
    (``draw(png_path)`` returns None, or a line saying why there is no chart). Returns the
    JSON's path."""
    if json_arg:
        json_path, extra_paths = os.path.abspath(json_arg), []
    else:
        res_dir = os.path.join(HERE, "results")
        json_path = os.path.join(res_dir, f"{stem}-{started.strftime('%Y%m%d-%H%M%S')}.json")
        latest = "latest" if stem == "bench" else f"{stem}-latest"
        extra_paths = [os.path.join(res_dir, f"{latest}.json")]
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    text = json.dumps(doc, indent=1, default=str)
    for path in [json_path] + extra_paths:
        with open(path, "w") as f:
            f.write(text)
    say(f"\nJSON: {json_path}" + "".join(f", {p}" for p in extra_paths))
    if draw is not None:
        png = os.path.splitext(json_path)[0] + ".png"
        err = draw(png)
        if err:
            say(err)
        else:
            pngs = [png]
            for p in extra_paths:
                dst = os.path.splitext(p)[0] + ".png"
                with open(png, "rb") as src, open(dst, "wb") as out:
                    out.write(src.read())
                pngs.append(dst)
            say("chart: " + ", ".join(pngs))
    return json_path


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark conv3d_cpu.conv3d against PyTorch, ONNX Runtime and OpenVINO on real "
                    "3D-CNN layers (or your own, with --layer).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="layers in the suite: " + ", ".join(lay.name for lay in suite.SUITE) +
               "\n--layer keys: cin, cout (required), size (32 or 8x28x28), k, s, p, d "
               "(int or AxBxC), g, n, dtype, bias (0/1), name.\nexample: --layer "
               "\"cin=32,cout=32,size=32,k=3,p=1\" --threads 1,2 --algorithms direct,auto "
               "--reps 20 --dtype float32")
    g = p.add_argument_group("what to run")
    g.add_argument("--quick", action="store_true",
                   help=f"a subset ({', '.join(suite.QUICK)}), fewer runs, no memory probe")
    add_layer_options(g)
    g.add_argument("--algorithms", type=name_list, default=",".join(DEFAULT_ALGORITHMS),
                   metavar="A[,A]", help="our algorithms, one column each; names this build "
                   "rejects are skipped with a note (default: %(default)s)")
    g.add_argument("--peers", type=name_list, default=",".join(systems.PEERS),
                   metavar="P[,P]", help="peers to compare with, from "
                   f"{', '.join(systems.PEERS)} ('none' for none; those not installed are "
                   "skipped with a note; default: %(default)s)")
    g = p.add_argument_group("threads")
    g.add_argument("--threads", type=int_list, metavar="T[,T]",
                   help="thread counts of the main table (default: conv3d_cpu's default, "
                   "i.e. omp_get_max_threads())")
    g.add_argument("--sweep-threads", type=int_list, metavar="T[,T]",
                   help="thread counts of the scaling sweep (default 1, 2, 4, ... cores)")
    g.add_argument("--no-sweep", action="store_true", help="no thread sweep")
    g.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each measurement wait up to SECONDS for other processes to "
                   "stop using the CPUs (default 0: don't wait)")
    add_timing_options(p)
    g = p.add_argument_group("output and details")
    add_peak_option(g)
    g.add_argument("--ort-spin", choices=("stop", "on", "off"), default="stop",
                   help="ONNX Runtime's thread spinning: 'stop' spins during a run and stops "
                   "when it returns (default), 'on' keeps spinning after it (ORT's default; "
                   "steals CPU from the next system when interleaved on few cores), 'off' "
                   "never spins")
    g.add_argument("--memory", dest="memory", action="store_true", default=None,
                   help="probe peak memory (default in full mode)")
    g.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the memory probe")
    g.add_argument("--json", metavar="PATH", help="write the JSON here (the chart goes "
                   "next to it) instead of bench/results/bench-<timestamp>.json + latest.json")
    g.add_argument("--no-plot", action="store_true", help="no PNG chart")
    g.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    args = p.parse_args(argv)
    if args.peers == ["none"]:
        args.peers = []
    bad = [x for x in args.peers if x not in systems.PEERS]
    if bad:
        p.error(f"unknown peer(s) {bad}: choose from {', '.join(systems.PEERS)}, none")
    if args.layer and args.only:
        p.error("--layer and --only exclude each other")
    return args, p


def pick_layers(args, parser):
    if args.layer:
        dtypes = args.dtype or [None]
        out, seen = [], {}
        for i, spec in enumerate(args.layer):
            for dt in dtypes:
                try:
                    lay = suite.parse_layer(spec, dt)
                except (ValueError, TypeError) as e:
                    parser.error(f"--layer {spec!r}: {e}")
                name = lay.name
                if name == "custom" and len(args.layer) > 1:
                    name = f"custom{i + 1}"
                if len(dtypes) > 1:
                    name += "_f64" if lay.dtype == "float64" else "_f32"
                seen[name] = seen.get(name, 0) + 1
                if seen[name] > 1:
                    name += f"_{seen[name]}"
                out.append(dataclasses.replace(lay, name=name))
        return out
    if args.dtype:
        parser.error("--dtype applies to --layer layers")
    try:
        if args.only:
            return suite.select(args.only)
    except ValueError as e:
        parser.error(str(e))
    return suite.select(suite.QUICK) if args.quick else list(suite.SUITE)


def main(argv=None):
    args, parser = parse_args(argv)
    layer_list = pick_layers(args, parser)
    quick = args.quick
    policy = timing_policy(args, parser, quick)

    ncores = cpu_count()
    model, mhz = cpu_info()
    per_core, peak_src = resolve_peak(args, parser)
    main_threads = args.threads or [default_threads()]
    if args.no_sweep:
        counts = sorted(set(main_threads))
    else:
        counts = sorted(set(main_threads) | set(args.sweep_threads or sweep_counts(ncores)))
    memory_on = (not quick) if args.memory is None else args.memory

    # systems
    ours, notes = [], {}
    for alg in args.algorithms:
        s = systems.Ours(alg)
        try:
            s.check()
        except ValueError as e:
            notes[s.key] = f"skipped: {e}"
            continue
        ours.append(s)
    if not ours:
        parser.error("none of the algorithms is available: " + "; ".join(notes.values()))
    peer_objs, peer_notes = systems.available_peers(args.peers, ort_spin=args.ort_spin)
    notes.update({k: f"skipped: {v}" for k, v in peer_notes.items()})
    syss = ours + peer_objs
    keys = [s.key for s in syss]
    ours_keys = [s.key for s in ours]
    peer_keys = [s.key for s in peer_objs]

    started = datetime.datetime.now()
    meta = dict(
        timestamp=started.isoformat(timespec="seconds"), host=platform.node(), cpu=model,
        cpu_mhz=mhz, cores=ncores, default_threads=default_threads(),
        python=platform.python_version(), numpy=np.__version__,
        versions={s.key: s.version for s in syss}, isa=_our_isa(), quick=quick,
        argv=sys.argv[1:],
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        peak=dict(gflops_per_core_fp32=per_core, gflops_per_core_fp64=per_core / 2,
                  source=peak_src),
        timing=dataclasses.asdict(policy) | {"describe": policy.describe()},
        main_threads=main_threads, sweep_threads=counts,
        ort=dict(intra_op_num_threads="= threads", inter_op_num_threads=1,
                 spinning=args.ort_spin) if "ort" in peer_keys else None,
        torch=dict(set_num_threads="= threads", num_interop_threads=1)
        if "torch" in peer_keys else None,
        flops="2 * N * Cout * oD*oH*oW * (Cin/groups) * kD*kH*kW",
        notes=notes)

    say_header("conv3d_cpu benchmark", meta, notes)
    say(f"peak: {per_core:.1f} GFLOP/s/core fp32, {per_core / 2:.1f} fp64 ({peak_src}); "
        f"%peak = GFLOP/s / (threads x per-core peak)")
    say(f"timing: {policy.describe()}; systems and thread counts interleaved in bursts")
    say(f"threads: main table {main_threads}, sweep {counts if len(counts) > 1 else 'off'}")
    if "ort" in peer_keys:
        say(f"ort: intra_op_num_threads = threads, inter_op 1, spinning "
            + {"stop": "during a run only (session.force_spinning_stop)",
               "on": "on (ORT default)", "off": "off"}[args.ort_spin])
    if "torch" in peer_keys:
        say("torch: set_num_threads(threads), set_num_interop_threads(1)")
    say("OpenMP runtimes loaded: " + (", ".join(systems.openmp_runtimes()) or "none found"))
    say("\n" + suite_table(layer_list) + "\n")

    memory = {}
    if memory_on:
        mt = max(main_threads)
        say(f"memory probe ({mt} threads, one fresh process per system) ...")
        t0 = time.perf_counter()
        memory = probe_memory(layer_list, syss, mt)
        say(f"  done in {time.perf_counter() - t0:.1f} s")

    results = {}
    t_start = time.perf_counter()
    contention = Contention()
    order = sorted(counts, key=lambda t: (t not in main_threads, -t))
    for i, lay in enumerate(layer_list):
        inputs = lay.make_inputs(args.seed)
        if args.wait_idle:
            waited = wait_for_idle(args.wait_idle)
            if waited > 1:
                say(f"  (waited {waited:.0f} s for other processes to go quiet)")
        t0 = time.perf_counter()
        by_threads = measure(lay, order, syss, policy, inputs, per_core)
        took = time.perf_counter() - t0
        for t in order:
            recs = by_threads[t]
            for key, rec in recs.items():
                results[(lay.name, t, key)] = rec
            parts = []
            for key in keys:
                r = recs[key]
                parts.append(f"{key} {fmt_ms(r['median_s'])} ms x{r['runs']}"
                             if "median_s" in r else f"{key} n/a")
            other = next(iter(recs.values())).get("other_cpu_cores")
            busy = (f" [other processes used {other:.1f} cores meanwhile]"
                    if other is not None and other > BUSY_WARN else "")
            say(f"[{i + 1}/{len(layer_list)}] {lay.name} T={t} ({took:.1f} s, all T): "
                + " | ".join(parts) + busy)
        del inputs
    elapsed = time.perf_counter() - t_start
    meta["other_cpu_cores"] = other = contention.other_cores()

    say(f"\nResults ({elapsed:.0f} s of timing). ms = median; ours/X = time ratio (< 1: ours "
        f"faster); max|err| = max abs difference from PyTorch's output"
        + ("; extra MiB = growth of peak RSS during one call in a fresh process, minus the "
           "output array" if memory else ""))
    say(main_table(results, layer_list, sorted(main_threads), keys, peer_keys, memory))
    say("%peak counts direct-convolution FLOPs, so an algorithm that does fewer operations "
        "(Winograd) can pass 100%.")
    over = [r for r in results.values() if r.get("frac_peak", 0) > 1.0
            and (r["peer"] or r["algorithm"] == "direct")]
    if over:
        top = max(over, key=lambda r: r["frac_peak"])
        say(f"NOTE: the peak assumption looks low: {top['system']} reached "
            f"{100 * top['frac_peak']:.0f}% on {top['layer']} at {top['threads']} thread(s) "
            f"({top['gflops'] / top['threads']:.0f} GFLOP/s per thread)"
            + (": the peer runs wider vectors than our ISA, or not direct convolution "
               "(CONV3D_CPU_ISA selects ours; conv3d_cpu.show_config() lists them)"
               if args.peak_gflops_per_core == "probe" else
               "; pass --peak-gflops-per-core probe") + ".")
    if len(counts) > 1:
        say(f"\nThread sweep: median time (parallel efficiency vs T={counts[0]}: "
            f"t({counts[0]}) * {counts[0]} / (t(T) * T))")
        say(sweep_table(results, layer_list, counts, keys))
    head_t = max(main_threads)
    summary = [summarize(results, layer_list, t, ours_keys) for t in sorted(main_threads)]
    say("\nSummary")
    for s in summary:
        for line in summary_lines(s):
            say("  " + line)
    if other is not None:
        say(f"  other processes used {other:.2f} cores on average while timing"
            + (" -- the machine was not idle, timings (multi-threaded above all) are "
               "unreliable" if other > BUSY_WARN else ""))

    # files
    meta["elapsed_s"] = elapsed
    doc = dict(meta=meta, layers=[lay.to_dict() for lay in layer_list],
               results=list(results.values()), summary=summary,
               memory=list(memory.values()))
    title = "conv3d_cpu vs " + (", ".join(peer_keys) or "nothing")
    save_results(doc, args.json, "bench", started, None if args.no_plot else (
        lambda png: plot(png, results, layer_list, head_t, counts, keys, per_core, title)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
