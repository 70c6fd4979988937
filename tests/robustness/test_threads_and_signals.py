"""A call never kills the process for lack of threads, and Ctrl-C stops it.

Both run in subprocesses: one under an address-space limit (RLIMIT_AS) that leaves room for
the call's arrays but not for the stacks of the threads it asks for (libgomp exits the process
when it cannot start a thread; launch.pyx first cuts the team to what can start: team.h); one
that receives a real SIGINT in the middle of long calls (interrupt.h).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from hardening import HAVE_PROC, UNDER_ASAN

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE)] + sys.path))

# Each case: (input shape, weight shape, keyword arguments). The results under the limit
# must be those computed before it, bitwise (fewer threads change no result).
THREAD_CASES = [
    ((1, 8, 24, 24, 24), (16, 8, 3, 3, 3), dict(padding=1, algorithm="direct")),
    ((1, 8, 24, 24, 24), (16, 8, 3, 3, 3), dict(padding=1, algorithm="winograd_f4")),
    ((1, 8, 24, 24, 24), (8, 1, 3, 3, 3), dict(padding=1, groups=8)),
    ((1, 8, 24, 24, 24), (16, 8, 1, 1, 1), dict()),
]

THREAD_SCRIPT = """
import json, resource, sys
import numpy as np
from conv3d_cpu import conv3d
from hardening import vm_size

cases, teams, headroom = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
data = [(rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32),
         kw) for xs, ws, kw in cases]
expected = [conv3d(x, w, num_threads=1, **kw) for x, w, kw in data]
# Room for the calls' arrays and workspaces (a few MiB), none for 255 stacks of 8 MiB.
limit = vm_size() + headroom
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
strided = [np.ascontiguousarray(x.transpose(0, 1, 4, 3, 2)).transpose(0, 1, 4, 3, 2)
           for x, _, _ in data]
results = []
for nt in teams:
    for (x, w, kw), xs, y0 in zip(data, strided, expected):
        for inp in (x, xs):  # a strided input goes through the parallel copy first
            try:
                results.append("same" if np.array_equal(conv3d(inp, w, num_threads=nt, **kw), y0)
                               else "differs")
            except MemoryError:
                results.append("MemoryError")
print(json.dumps(results))
"""


@pytest.mark.skipif(not HAVE_PROC or UNDER_ASAN,
                    reason="sizes the RLIMIT_AS from /proc (ASan reserves terabytes)")
@pytest.mark.parametrize("headroom_mib", [48, 256])
def test_calls_survive_threads_that_cannot_start(headroom_mib):
    # 256: the most num_threads accepts; 2 after 256 shrinks libgomp's pool, 256 then needs
    # new threads again; 1 leaves the pool as it is.
    teams = [256, 2, 256, 1, 256, 3]
    proc = subprocess.run(
        [sys.executable, "-c", THREAD_SCRIPT,
         json.dumps([THREAD_CASES, teams, headroom_mib << 20])],
        capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, f"the process died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    # The threads libgomp keeps for the next call hold their stacks, so a later call may find
    # no room for its arrays (256 threads' workspaces, too, are allocated before any starts):
    # a MemoryError then, never a wrong result or a dead process. The first call finds the
    # room the limit left.
    assert set(results) <= {"same", "MemoryError"}, results
    assert results[:2] == ["same", "same"], results  # direct, 256 threads asked


# ---------------------------------------------------------------------------- Ctrl-C

SIGNAL_SCRIPT = """
import json, signal, sys, time
import numpy as np
from conv3d_cpu import conv3d

# Python's own SIGINT handler, whatever we inherited: a non-interactive shell starts a
# background job with SIGINT ignored, and Python then leaves it ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
x_shape, w_shape, kw, dtype, repeats, fresh = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
w = rng.standard_normal(w_shape).astype(dtype)
while True:  # deeper inputs until one call takes long enough on this machine
    x = rng.standard_normal(x_shape).astype(dtype)
    t0 = time.monotonic()
    conv3d(x, w, **kw)
    call_s = time.monotonic() - t0
    if call_s >= 0.4 or x_shape[2] >= 1024:
        break
    x_shape[2] *= 2
small = (slice(None), slice(None), slice(0, 6), slice(0, 6), slice(0, 6))
expected = conv3d(x[small], w, **kw)
out_shape, kept = conv3d(x, w, **kw).shape, []
print(json.dumps({"call_s": call_s}), flush=True)
for _ in range(repeats):
    print(json.dumps({"calling": time.monotonic()}), flush=True)
    try:
        while True:  # (a signal between two calls would not test the kernels: see the parent)
            if fresh:  # an output in memory the process never had: its pages fault in the call
                kept.append(np.empty_like(conv3d(x[small], w, **kw), shape=out_shape))
                conv3d(x, w, out=kept[-1], **kw)
            else:
                conv3d(x, w, **kw)
    except KeyboardInterrupt:
        print(json.dumps({"interrupted": time.monotonic()}), flush=True)
# the interpreter and the package still work
print(json.dumps({"after": bool(np.array_equal(conv3d(x[small], w, **kw), expected))}))
"""

SIGNAL_CASES = {
    # (input shape, weight shape, keyword arguments, dtype)
    "direct float64": ((1, 32, 32, 64, 64), (64, 32, 3, 3, 3), dict(padding=1), "float64"),
    "winograd float32": ((1, 64, 32, 80, 80), (128, 64, 3, 3, 3),
                         dict(padding=1, algorithm="winograd_f4"), "float32"),
    "depthwise": ((1, 64, 32, 96, 96), (64, 1, 5, 5, 5), dict(padding=2, groups=64),
                  "float64"),
    "pointwise": ((1, 256, 32, 64, 64), (256, 256, 1, 1, 1), dict(), "float64"),
    # Fresh output pages (zeroed by the OS on first touch, slowly on a VM): a first
    # store to a tile of every output channel faulted 64 planes' huge pages at once.
    "winograd, fresh output": ((1, 8, 64, 64, 64), (64, 8, 3, 3, 3),
                               dict(padding=1, algorithm="winograd_f4"), "float64"),
    "direct, fresh output": ((1, 8, 64, 64, 64), (64, 8, 3, 3, 3),
                             dict(padding=1, algorithm="direct"), "float64"),
}
FRESH = {"winograd, fresh output", "direct, fresh output"}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("case", SIGNAL_CASES)
def test_ctrl_c_stops_a_long_call(case):
    x_shape, w_shape, kw, dtype = SIGNAL_CASES[case]
    repeats = 3
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_SCRIPT,
         json.dumps([x_shape, w_shape, kw, dtype, repeats, case in FRESH])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    # A signal that never arrives fails the test (the reads below see EOF) instead of hanging
    # it.
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    try:
        call_s = json.loads(proc.stdout.readline())["call_s"]
        latencies = []
        for _ in range(repeats):
            assert "calling" in json.loads(proc.stdout.readline())
            # Half-way into the first call of the loop (calls last call_s; the gap between two
            # is microseconds, so the signal lands inside a kernel).
            time.sleep(0.5 * call_s)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            latencies.append(json.loads(proc.stdout.readline())["interrupted"] - sent)
        after = json.loads(proc.stdout.readline())["after"]
        assert proc.wait(timeout=60) == 0, proc.stderr.read()[-3000:]
    finally:
        watchdog.cancel()
        proc.kill()
    assert after
    # Within 100 ms of the signal (the poll is every INTERRUPT_POLL_MS), on calls that take
    # far longer.
    assert call_s > 0.2, f"the case is too short to test an interrupt: {call_s:.3f} s"  # (D 1024)
    assert max(latencies) < 0.1, (call_s, latencies)


EXIT_SCRIPT = """
import sys, threading, time
import numpy as np
from conv3d_cpu import conv3d

x = np.ones((1, 32, 32, 64, 64), np.float32)
w = np.ones((64, 32, 3, 3, 3), np.float32)

def work():
    while True:
        conv3d(x, w, padding=1, algorithm="direct", num_threads=int(sys.argv[1]))

threading.Thread(target=work, daemon=True).start()
time.sleep(0.3)  # the interpreter exits with the thread inside a kernel
"""


@pytest.mark.parametrize("num_threads", [1, 2])
def test_interpreter_exit_while_a_thread_computes(num_threads):
    # Only the main thread polls for signals: a daemon thread taking the GIL inside the kernel
    # while the interpreter shuts down is ended there (pthread_exit) and corrupted the heap
    # ("free(): invalid pointer", SIGABRT) before that.
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(num_threads)],
                              capture_output=True, text=True, timeout=120, env=ENV)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


HANDLER_SCRIPT = """
import json, os, signal, threading, time
import numpy as np
from conv3d_cpu import conv3d

rng = np.random.default_rng(0)
x = rng.standard_normal((1, 32, 32, 64, 64)).astype(np.float32)
w = rng.standard_normal((64, 32, 3, 3, 3)).astype(np.float32)
ref = conv3d(x, w, padding=1, num_threads=1)
durations = []
for _ in range(2):
    t0 = time.monotonic()
    conv3d(x, w, padding=1)
    durations.append(time.monotonic() - t0)
half = min(durations) / 2
out = {}
timers = []

def signal_in(seconds):
    # A timer still pending from an earlier case (its call ended first) is cancelled: its
    # signal would land in the next case.
    for t in timers:
        t.cancel()
        t.join()
    timers.append(threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT)))
    timers[-1].start()

# a handler that returns: the call goes on, exactly
hits = []
signal.signal(signal.SIGINT, lambda s, f: hits.append(1))
signal_in(half)
y = conv3d(x, w, padding=1)
out["returning handler"] = [len(hits), bool(np.array_equal(y, ref))]
# a handler that convolves meanwhile (the same thread, inside the call): both exact
xs, ws = x[:, :, :4, :8, :8].copy(), w.copy()
small_ref = conv3d(xs, ws, padding=1, algorithm="direct")
inner = []
signal.signal(signal.SIGINT, lambda s, f: inner.append(
    bool(np.array_equal(conv3d(xs, ws, padding=1, algorithm="direct"), small_ref))))
signal_in(half)
y = conv3d(x, w, padding=1, algorithm="direct")
out["convolving handler"] = inner + [bool(np.array_equal(y, conv3d(x, w, padding=1,
                                                                    algorithm="direct")))]
# a handler that raises something else: that exception
class Stop(Exception):
    pass

def stop(s, f):
    raise Stop()

signal.signal(signal.SIGINT, stop)
signal_in(half)
try:
    conv3d(x, w, padding=1)
    out["raising handler"] = "returned"
except Stop:
    out["raising handler"] = "Stop"
# Ctrl-C while another thread convolves: the main thread is interrupted, the other thread's
# calls end with their exact results. It convolves until told to stop (one call can end before
# the signal comes on a fast CPU).
signal.signal(signal.SIGINT, signal.default_int_handler)
stop_work, done, res = threading.Event(), threading.Event(), {"exact": True, "calls": 0}

def work():
    while not stop_work.is_set():
        res["exact"] &= bool(np.array_equal(conv3d(x, w, padding=1, num_threads=1), ref))
        res["calls"] += 1
    done.set()

threading.Thread(target=work).start()
signal_in(0.05)
try:
    done.wait(timeout=120)
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
stop_work.set()
done.wait()
out["other thread"] = res["exact"] and res["calls"] >= 1 if interrupted else "not interrupted"
print(json.dumps(out))
"""


def test_signal_handlers_decide():
    proc = subprocess.run([sys.executable, "-c", HANDLER_SCRIPT], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"returning handler": [1, True], "convolving handler": [True, True],
                   "raising handler": "Stop", "other thread": True}, out
