"""Peak-memory probe: run each layer once in this (fresh) process and report the growth of
peak RSS during the call.

Started by ``run.py`` as ``python bench/memprobe.py`` with a JSON request on stdin
(``{"system": "ours:auto" | "torch" | "ort", "threads": T, "layers": [Layer fields...]}``);
writes one JSON line per layer to stdout.

Method: tracemalloc cannot see C allocations, so this reads ``VmHWM`` (peak resident set)
from ``/proc/self/status``. Before each call the peak is reset by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0); the growth of the peak over the resident size just
before the call is what the call needed (its output array included). Inputs are created and
the system prepared (an ORT session built) before the baseline, and a tiny warm-up call starts
the thread pool first, so neither is counted. Where the peak cannot be reset, only the first
layer is measured and the caller starts a new process for the next one.
"""
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from layers import Layer  # noqa: E402
from peers import Ours, Unsupported, make_peer  # noqa: E402


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _system(key):
    if key.startswith("ours:"):
        return Ours(key.split(":", 1)[1])
    return make_peer(key)


def main():
    req = json.load(sys.stdin)
    system, threads = _system(req["system"]), int(req["threads"])
    tiny = Layer("warmup", 4, 4, 8, 3, padding=1)
    x, w, b = tiny.make_inputs()
    try:
        system.prepare(tiny, x, w, b, threads)()
    except (ValueError, Unsupported):
        pass
    for i, fields in enumerate(req["layers"]):
        layer = Layer(**fields)
        rec = {"layer": layer.name, "system": system.key, "threads": threads,
               "output_bytes": layer.nbytes("output")}
        x, w, b = layer.make_inputs()
        try:
            run = system.prepare(layer, x, w, b, threads)
        except Unsupported as e:
            rec["note"] = str(e)
            print(json.dumps(rec), flush=True)
            continue
        gc.collect()
        reset = _reset_peak()
        if not reset and i > 0:
            rec["note"] = "restart"  # peak cannot be reset: caller runs it in a new process
            print(json.dumps(rec), flush=True)
            return
        base = _status_kib("VmRSS" if reset else "VmHWM")
        try:
            out = run()
        except (ValueError, Unsupported) as e:
            rec["note"] = f"{type(e).__name__}: {e}"
        else:
            rec["peak_delta_bytes"] = max(0, _status_kib("VmHWM") - base) * 1024
            del out
        print(json.dumps(rec), flush=True)
        del run, x, w, b


if __name__ == "__main__":
    main()
