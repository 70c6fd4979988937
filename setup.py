"""Build script: Cython extensions with an OpenMP probe.

Environment switches
--------------------
CONV3D_CPU_OPENMP=0   build without OpenMP (serial kernels).
CONV3D_CPU_NATIVE=1   add -march=native (local developer builds only; never for wheels).
"""
import os
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


class BuildExtOpenMP(build_ext):
    """build_ext that adds -O3 and OpenMP flags when the compiler supports them."""

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
        base = ["/O2"] if ctype == "msvc" else ["-O3", "-fno-math-errno"]
        if _env_on("CONV3D_CPU_NATIVE") and ctype != "msvc":
            base.append("-march=native")
        for ext in self.extensions:
            ext.extra_compile_args = base + (cflags if has_openmp else []) + ext.extra_compile_args
            ext.extra_link_args = (ldflags if has_openmp else []) + ext.extra_link_args
        super().build_extensions()


def _extension(name, c_sources=()):
    return Extension(
        f"conv3d_cpu.{name}",
        [f"conv3d_cpu/{name}.pyx", *(f"conv3d_cpu/{c}" for c in c_sources)],
        include_dirs=[np.get_include(), "conv3d_cpu"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


setup(
    ext_modules=cythonize(
        [
            _extension("_isa", ["_kernels.c"]),
            _extension("_direct"),
            _extension("_winograd"),
            _extension("_openmp_helpers"),
        ],
        compiler_directives=CYTHON_DIRECTIVES,
    ),
    cmdclass={"build_ext": BuildExtOpenMP},
)
