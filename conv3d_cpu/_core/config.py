"""What this installation is: version, instruction sets, OpenMP runtime and threads, float32
precision, build.

``show_config()`` prints it; ``show_config(mode="dicts")`` returns it as a dict (numpy's
convention). Build facts come from ``_native/build_info.py``, which setup.py writes at build
time;
a tree without it (e.g. extensions built by hand) reports ``build: None`` instead of failing.
"""
import os
import sys

# Imported with the package (not lazily) so that this extension is loaded, and binds its OpenMP
# symbols, at the same moment as the kernels' extensions: what it reports holds for them.
from conv3d_cpu._native import openmp

__all__ = ["show_config"]

# File-name prefixes of the OpenMP runtimes we may be linked against, and their names.
_OPENMP_RUNTIMES = (
    ("libgomp", "GNU libgomp"),
    ("libiomp", "Intel libiomp"),
    ("libomp", "LLVM libomp"),
    ("vcomp", "MSVC vcomp"),
)


def _build_info():
    try:
        from conv3d_cpu._native.build_info import BUILD_INFO
    except ImportError:
        return None
    return dict(BUILD_INFO)


def _runtime_name(path):
    base = os.path.basename(path).lower()
    for prefix, name in _OPENMP_RUNTIMES:
        if base.startswith(prefix):
            return name
    return None


def _library_of_address(addr):
    """Path of the shared library that contains code address ``addr`` (dladdr), or None."""
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    for lib in (None, "libdl.so.2"):
        try:
            dladdr = ctypes.CDLL(lib).dladdr
            break
        except (OSError, AttributeError):
            continue
    else:
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    dladdr.restype = ctypes.c_int
    info = DlInfo()
    if not dladdr(addr, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(os.fsdecode(info.dli_fname))


def _library_via_maps():
    """The only OpenMP runtime mapped into this process (Linux), or None if zero or several."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(None, 5)[-1].strip()
                if path.startswith("/") and _runtime_name(path):
                    found.add(os.path.realpath(path))
    except OSError:
        return None
    return found.pop() if len(found) == 1 else None


def _openmp_library():
    """(path, how it was found) of the OpenMP runtime our kernels call, or (None, None).

    The extension reports the address its ``omp_get_max_threads`` was bound to when it was
    loaded; the library holding that address is the runtime in use. It is usually the one the
    extension links (in a wheel: the copy auditwheel bundled), but a runtime that a library
    imported earlier made global (PyTorch loads its libgomp with RTLD_GLOBAL) takes precedence.
    """
    try:
        addr = openmp.omp_get_max_threads_address()
        path = _library_of_address(addr) if addr else None
        if path:
            return path, "dladdr"
    except (OSError, AttributeError, ValueError):
        pass
    path = _library_via_maps()
    return (path, "/proc/self/maps") if path else (None, None)


def _config():
    import platform  # here, not at module level: it costs import time (re, collections)

    from conv3d_cpu._core.precision import get_float32_precision
    from conv3d_cpu._native import isa
    from conv3d_cpu._version import __version__
    import numpy

    enabled = openmp.openmp_enabled()
    library, found_by = _openmp_library() if enabled else (None, None)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count()
    return {
        "version": __version__,
        "package_dir": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "isa": {
            "selected": isa.current_isa(),
            "available": list(isa.available_isas()),
            "compiled": list(isa.compiled_isas()),
            "CONV3D_CPU_ISA": os.environ.get("CONV3D_CPU_ISA") or None,
        },
        "openmp": {
            "enabled": enabled,
            "runtime": (_runtime_name(library) or "unknown") if library else None,
            "library": library,
            "library_found_by": found_by,
            "num_threads": openmp.default_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "usable_cpus": cpus,
        },
        # The value in effect for the caller (set_float32_precision / float32_precision).
        "float32_precision": get_float32_precision(),
        "build": _build_info(),
        "runtime": {
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "platform": f"{sys.platform}-{platform.machine()}",
        },
    }


def _format(cfg):
    isa, omp, build, rt = cfg["isa"], cfg["openmp"], cfg["build"], cfg["runtime"]
    forced = isa["CONV3D_CPU_ISA"]
    lines = [
        f"conv3d_cpu {cfg['version']} ({cfg['package_dir']})",
        "ISA:",
        f"  selected: {isa['selected']} "
        + (f"(CONV3D_CPU_ISA={forced})" if forced else "(the default for this CPU)"),
        f"  available: {', '.join(isa['available'])} (compiled in and supported by this CPU)",
        f"  compiled: {', '.join(isa['compiled'])}",
        "OpenMP:",
    ]
    if omp["enabled"]:
        lib = omp["library"] or "not found"
        lines += [
            "  enabled: yes",
            f"  runtime: {omp['runtime'] or 'unknown'} ({lib})",
            f"  threads: {omp['num_threads']} per call by default (omp_get_max_threads(); "
            f"OMP_NUM_THREADS={omp['OMP_NUM_THREADS'] or 'unset'}; "
            f"{omp['usable_cpus']} usable CPUs)",
        ]
    else:
        lines.append("  enabled: no (built without OpenMP: kernels run serially, 1 thread)")
    lines += ["Settings:",
              f"  float32 precision: {cfg['float32_precision']} (algorithm='auto'; "
              f"conv3d_cpu.set_float32_precision)"]
    lines.append("Build:")
    if build is None:
        lines.append("  unknown (no conv3d_cpu/_native/build_info.py: not built by setup.py)")
    else:
        lines += [
            f"  compiler: {build.get('compiler_version') or build.get('compiler')}",
            f"  compile flags: {' '.join(build.get('all_compile_args', []))}",
            f"  link flags: {' '.join(build.get('extra_link_args', [])) or '(none extra)'}",
            f"  openmp: {'yes' if build.get('openmp') else 'no'}"
            + ("" if build.get("openmp") or not build.get("openmp_requested")
               else " (requested, but the compiler has no OpenMP)"),
            f"  -march=native: {'yes' if build.get('native') else 'no'}",
            f"  built with Cython {build.get('cython_version')}, "
            f"numpy {build.get('numpy_build_version')}, "
            f"Python {build.get('python_build_version')}, {build.get('build_platform')}",
        ]
    lines += ["Runtime:", f"  Python {rt['python']}, numpy {rt['numpy']}, {rt['platform']}"]
    return "\n".join(lines)


def show_config(mode="stdout"):
    """Print this installation's configuration, or return it (``mode="dicts"``).

    Reports the version; the instruction set in use and those this CPU can use; whether
    OpenMP is compiled in, which runtime library the kernels call and how many threads a
    call uses by default; the float32 precision in effect (``get_float32_precision``); the
    compiler and flags of the build.
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    cfg = _config()
    if mode == "dicts":
        return cfg
    print(_format(cfg))
    return None
