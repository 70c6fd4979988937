"""Helpers shared by the hardening tests (fuzzing, memory, concurrency, special values).

``guarded()`` runs a block under an address-space limit (so an impossible size becomes a
prompt MemoryError instead of a swapping machine) and a hang watchdog (a stuck call dumps
every thread's traceback and ends the run instead of blocking CI forever).
"""
import contextlib
import faulthandler
import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
from hypothesis import HealthCheck, settings

HERE = os.path.dirname(os.path.abspath(__file__))

# Under AddressSanitizer (make sanitize) the shadow memory needs terabytes of address space,
# so RLIMIT_AS cannot be used there; ASAN_OPTIONS=allocator_may_return_null=1 with
# max_allocation_size_mb plays its part (an oversized malloc returns NULL -> MemoryError).
try:
    with open("/proc/self/maps") as _maps:
        UNDER_ASAN = "libasan" in _maps.read()
except OSError:  # no /proc (not Linux): no address-space limit is set either
    UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "") + os.environ.get(
        "DYLD_INSERT_LIBRARIES", "")
HAVE_PROC = os.path.exists("/proc/self/status")

# Headroom above the current address space while fuzzing: far below anything that could make
# the machine swap, far above what a legitimate fuzz case needs (a few MB).
FUZZ_HEADROOM = 2 << 30
HANG_SECONDS = 120


# Examples per property-based test: the test's CI default, or CONV3D_CPU_FUZZ_EXAMPLES for
# every test (make fuzz-long). The seed comes from the hypothesis profile (tests/conftest.py:
# 'ci' is derandomized, i.e. fixed) or --hypothesis-seed.
FUZZ_EXAMPLES = int(os.environ.get("CONV3D_CPU_FUZZ_EXAMPLES", "0"))


def budget(default):
    return settings(max_examples=FUZZ_EXAMPLES or default, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def vm_size():
    """Current virtual memory size of this process in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def rss():
    """Current resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def guarded(headroom=FUZZ_HEADROOM, hang_seconds=HANG_SECONDS):
    """Run the block with at most ``headroom`` more bytes of address space and a watchdog."""
    faulthandler.dump_traceback_later(hang_seconds, exit=True)
    old = resource.getrlimit(resource.RLIMIT_AS)
    try:
        if HAVE_PROC and not UNDER_ASAN:
            soft = vm_size() + headroom
            if old[1] != resource.RLIM_INFINITY:
                soft = min(soft, old[1])
            resource.setrlimit(resource.RLIMIT_AS, (soft, old[1]))
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)
        faulthandler.cancel_dump_traceback_later()


def run_python(code, timeout=120, env=None):
    """Run ``code`` in a fresh interpreter (this one's sys.path); return CompletedProcess."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([HERE] + sys.path)
    full_env.setdefault("OMP_NUM_THREADS", "2")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def bits(a):
    """The raw bytes of an array, for bitwise comparisons (NaN payloads and -0.0 included)."""
    a = np.ascontiguousarray(a)
    return a.dtype, a.shape, a.tobytes()
