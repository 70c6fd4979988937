"""Instruction-set dispatch: the micro-kernels are compiled for several ISAs (kernels/); the
best one for this CPU is chosen at import (default_isa), or the one CONV3D_CPU_ISA names.

Also where a build is checked against constants.py: every extension of the package cimports
this module, so none runs with constants other than those the Python layer uses.
"""
import os

from conv3d_cpu._native import constants

from conv3d_cpu._native.constants cimport C3_CONSTANTS_DIGEST

if (<bytes>C3_CONSTANTS_DIGEST).decode() != constants.DIGEST:
    raise ImportError(
        "conv3d_cpu's compiled extensions were built from other constants than "
        "conv3d_cpu/_native/constants.py defines now: rebuild them (make install, or "
        "python setup.py build_ext --inplace)")

# The names in C3_ISAS order (kernels/kernels.h): a table's index is its position here.
ISA_NAMES = tuple((<bytes>c3_isa_name(i)).decode() for i in range(C3_ISA_COUNT))
cdef const c3_kernels* _K = NULL


cdef const c3_kernels* layer_kernels(c3_idx channels, bint f64) noexcept nogil:
    """The kernel table for a layer with ``channels`` per group in a vector's lanes: the
    selected ISA's (use_isa), or the table it names for fewer channels than its narrow block
    (avx512_zmm's 16 float lanes: avx512's 8)."""
    if _K.narrow != NULL and channels < _K.ocb_narrow[f64]:
        return _K.narrow
    return _K


cdef const c3_kernels* current_kernels() noexcept nogil:
    """The selected ISA's table (use_isa)."""
    return _K


def layer_isa(c3_idx channels, bint f64):
    """The name of the ISA whose kernels compute a layer with ``channels`` per group in a
    vector's lanes (layer_kernels): the selected one, or its narrow table's."""
    return ISA_NAMES[layer_kernels(channels, f64).isa]


def direct_tile_positions(c3_idx channels, bint f64):
    """The most output positions one direct tile-kernel call covers for a layer with
    ``channels`` output channels per group (its tiling: tiling_of)."""
    return tiling_of(layer_kernels(channels, f64), f64, channels).nxmax


def available_isas():
    """Instruction sets compiled in and supported by this CPU, worst first."""
    return tuple(name for i, name in enumerate(ISA_NAMES)
                 if c3_kernels_for(i) != NULL and c3_cpu_supports(i))


def default_isa():
    """The ISA chosen without CONV3D_CPU_ISA: the best this CPU supports, except that 512-bit
    vectors are chosen only where they pay (c3_cpu_prefers: Intel cores, AMD from Zen 5)."""
    preferred = [name for i, name in enumerate(ISA_NAMES)
                 if c3_kernels_for(i) != NULL and c3_cpu_prefers(i)]
    return preferred[len(preferred) - 1]  # (wraparound is off: no negative indices)


def compiled_isas():
    """Instruction sets compiled into this build, worst first."""
    return tuple(name for i, name in enumerate(ISA_NAMES) if c3_kernels_for(i) != NULL)


def use_isa(name=None):
    """Select the kernels of ISA ``name`` (None: the best this CPU runs); return its name.

    Not thread-safe against concurrent convolutions: call at import or in tests only.
    """
    global _K
    if name is None:
        name = default_isa()
    if name not in ISA_NAMES:
        raise ValueError(f"CONV3D_CPU_ISA must be one of {', '.join(ISA_NAMES)}, got {name!r}")
    i = ISA_NAMES.index(name)
    if c3_kernels_for(i) == NULL:
        raise ValueError(f"ISA {name!r} was not compiled into this build "
                         f"(compiled: {', '.join(compiled_isas())})")
    if not c3_cpu_supports(i):
        raise ValueError(f"ISA {name!r} is not supported by this CPU "
                         f"(supported: {', '.join(available_isas())})")
    _K = c3_kernels_for(i)
    return name


def current_isa():
    return ISA_NAMES[_K.isa]


def fma_peak_gflops(bint f64=False, double seconds=0.05):
    """GFLOP/s of one core's vector multiply-adds under the selected ISA, for float32 (f64
    False) or float64: its fma_chains kernel (kernels/fma_tmpl.h) on the calling thread, the
    best of 3 runs of about ``seconds`` each. What no convolution kernel can beat on this
    ISA: the benchmarks' %peak."""
    import time

    import numpy as np

    from conv3d_cpu._native.constants import FMA_CHAINS

    cdef const c3_kernels* K = _K
    cdef int lanes = K.ocb_narrow[f64]
    dtype = np.float64 if f64 else np.float32
    # a = 1, b = 0: the values stay put (no overflow, no subnormals, whatever the count)
    ab, acc = np.array([1, 0], dtype), np.ones(FMA_CHAINS * lanes, dtype)
    cdef const void* abp = <const void*><size_t>ab.__array_interface__["data"][0]
    cdef void* accp = <void*><size_t>acc.__array_interface__["data"][0]
    cdef c3_idx iters = 1024
    while True:  # a count that takes about `seconds`
        t0 = time.perf_counter()
        with nogil:
            K.fma_chains[f64](iters, abp, accp)
        took = time.perf_counter() - t0
        if took >= seconds / 4 or iters >= (1 << 40):
            break
        iters *= 2
    iters = max(1, int(iters * seconds / max(took, 1e-9)))
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        with nogil:
            K.fma_chains[f64](iters, abp, accp)
        best = max(best, 2.0 * lanes * FMA_CHAINS * iters / (time.perf_counter() - t0) / 1e9)
    return best


use_isa(os.environ.get("CONV3D_CPU_ISA") or None)
