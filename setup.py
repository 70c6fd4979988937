"""Build script: Cython extensions with an OpenMP probe.

Environment switches
--------------------
CONV3D_CPU_OPENMP=0   build without OpenMP (serial kernels).
CONV3D_CPU_NATIVE=1   add -march=native (local developer builds only; never for wheels).
CONV3D_CPU_OPTIMIZE=-O1  the optimization flag instead of -O3 (-O0..-O3, -Os, -Og): `make
                      sanitize` builds at -O1, the level AddressSanitizer is documented for,
                      because its instrumentation of the ISA kernels at -O3 takes minutes.

The compiler and flags used are written to conv3d_cpu/_native/build_info.py (generated,
git-ignored) for conv3d_cpu.show_config().
"""
import ast
import glob
import os
import platform
import pprint
import re
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
}

OPENMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
    }
    """
)


def _env_on(name, default="0"):
    return os.environ.get(name, default).strip().lower() not in ("0", "", "false", "no", "off")


def _openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def _optimize_flag():
    flag = os.environ.get("CONV3D_CPU_OPTIMIZE", "").strip() or "-O3"
    if not re.fullmatch(r"-O[0-3sg]", flag):
        raise SystemExit(f"CONV3D_CPU_OPTIMIZE must be one of -O0..-O3, -Os, -Og; got {flag!r}")
    return flag


class BuildExtOpenMP(build_ext):
    """build_ext that adds the optimization flag (-O3 unless CONV3D_CPU_OPTIMIZE says
    otherwise) and OpenMP flags when the compiler supports them."""

    def finalize_options(self):
        super().finalize_options()
        # The extensions are independent: compile them on every core unless told otherwise
        # (`build_ext -j N`; CONV3D_CPU_BUILD_JOBS=N).
        if not self.parallel:
            jobs = os.environ.get("CONV3D_CPU_BUILD_JOBS", "").strip()
            self.parallel = int(jobs) if jobs.isdigit() else (os.cpu_count() or 1)

    def _probe_openmp(self, cflags, ldflags):
        from setuptools.errors import CompileError, LinkError

        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp_probe.c")
            with open(src, "w") as f:
                f.write(OPENMP_TEST)
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                self.compiler.link_executable(
                    objs, "omp_probe", output_dir=tmp, extra_postargs=ldflags
                )
            except (CompileError, LinkError):
                return False
        return True

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        cflags, ldflags = _openmp_flags(ctype)
        want_openmp = _env_on("CONV3D_CPU_OPENMP", "1")
        has_openmp = want_openmp and self._probe_openmp(cflags, ldflags)
        if want_openmp and not has_openmp:
            warnings.warn(
                "conv3d_cpu: the C compiler does not support OpenMP; building serial kernels."
            )
        # -ffp-contract=off: the kernels fuse multiply-adds explicitly (_native/kernels/kernels.c); left to
        # the compiler, fusing differed between unrolled copies of one loop (GCC 13) and
        # results between thread counts.
        base = (["/O2"] if ctype == "msvc"
                else [_optimize_flag(), "-fno-math-errno", "-ffp-contract=off"])
        if _env_on("CONV3D_CPU_NATIVE") and ctype != "msvc":
            base.append("-march=native")
        for ext in self.extensions:
            ext.extra_compile_args = base + (cflags if has_openmp else []) + ext.extra_compile_args
            ext.extra_link_args = (ldflags if has_openmp else []) + ext.extra_link_args
        info = self._build_info(base, cflags if has_openmp else [], ldflags if has_openmp else [],
                                want_openmp, has_openmp)
        target = os.path.join(self.build_lib, *NATIVE.split("."), BUILD_INFO_FILE)
        if _read_build_info(target) != info:
            # Other flags than the last build in this directory: setuptools only compares
            # timestamps, so rebuild everything or the extensions would not match the record.
            self.force = True
        super().build_extensions()
        _write_build_info(target, info)
        self._build_info_record = info

    def run(self):
        super().run()
        info = getattr(self, "_build_info_record", None)
        if info is not None and (self.inplace or getattr(self, "editable_mode", False)):
            package_dir = self.get_finalized_command("build_py").get_package_dir(NATIVE)
            _write_build_info(os.path.join(package_dir, BUILD_INFO_FILE), info)

    def _build_info(self, base, omp_cflags, omp_ldflags, want_openmp, has_openmp):
        """What show_config() reports about this build (only facts fixed at build time)."""
        compiler_so = list(getattr(self.compiler, "compiler_so", None) or [])
        ext = self.extensions[0]
        import Cython

        return {
            "compiler_type": self.compiler.compiler_type,
            "compiler": compiler_so[0] if compiler_so else self.compiler.compiler_type,
            "compiler_version": _compiler_version(compiler_so[:1]),
            "compiler_command": compiler_so,
            "extra_compile_args": list(base + omp_cflags),
            "extra_link_args": list(omp_ldflags),
            "all_compile_args": compiler_so[1:] + list(ext.extra_compile_args),
            "openmp_requested": bool(want_openmp),
            "openmp": bool(has_openmp),
            "native": "-march=native" in base,
            "cython_version": Cython.__version__,
            "numpy_build_version": np.__version__,
            "python_build_version": platform.python_version(),
            "build_platform": f"{sys.platform}-{platform.machine()}",
        }


NATIVE = "conv3d_cpu._native"  # the Cython drivers and C kernels
NATIVE_DIR = NATIVE.replace(".", "/")
BUILD_INFO_FILE = "build_info.py"


def _compiler_version(cmd):
    if not cmd:
        return None
    try:
        out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def _read_build_info(path):
    try:
        with open(path) as f:
            text = f.read()
        return ast.literal_eval(text[text.index("BUILD_INFO = ") + len("BUILD_INFO = "):])
    except (OSError, ValueError, SyntaxError):
        return None


def _write_build_info(path, info):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write('"""Generated by setup.py at build time; read by conv3d_cpu.show_config()."""\n')
        f.write("BUILD_INFO = " + pprint.pformat(info, width=99, sort_dicts=True) + "\n")


# Every extension includes some of these (kernels, transforms, OpenMP and scheduling helpers,
# the .pxd files it cimports): listed as dependencies so that editing one rebuilds what uses it.
_DEPENDS = sorted(glob.glob(f"{NATIVE_DIR}/**/*.h", recursive=True)
                  + glob.glob(f"{NATIVE_DIR}/*.pxd"))


def _extension(name, c_sources=()):
    return Extension(
        f"{NATIVE}.{name}",
        [f"{NATIVE_DIR}/{name}.pyx", *(f"{NATIVE_DIR}/{c}" for c in c_sources)],
        depends=_DEPENDS,
        include_dirs=[np.get_include(), NATIVE_DIR],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


setup(
    ext_modules=cythonize(
        [
            _extension("isa", ["kernels/kernels.c"]),
            _extension("direct"),
            _extension("winograd"),
            _extension("openmp"),
            _extension("launch"),
            _extension("microkernels"),
            _extension("layout"),
            _extension("grad_weight"),
            _extension("buffers"),
        ],
        compiler_directives=CYTHON_DIRECTIVES,
    ),
    cmdclass={"build_ext": BuildExtOpenMP},
)
