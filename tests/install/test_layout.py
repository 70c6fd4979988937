"""The package's structure holds: constants defined once, the pure-Python layer importable
without the compiled extension, and a build that refuses to run with stale constants."""
import os
import subprocess
import sys
import textwrap

import conv3d_cpu
from conv3d_cpu._native import constants

PACKAGE = os.path.dirname(os.path.abspath(conv3d_cpu.__file__))
NATIVE = os.path.join(PACKAGE, "_native")


def run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_constants_header_is_current():
    with open(os.path.join(NATIVE, "constants.h")) as f:
        text = f.read()
    assert text == constants.header(), (
        "conv3d_cpu/_native/constants.h is not what constants.py generates: run "
        "`python conv3d_cpu/_native/constants.py` (make constants) and commit it")


def test_compiled_with_these_constants():
    # (isa.pyx compares the digest compiled into the extension with constants.py's at import;
    # had they differed, conv3d_cpu would not have imported.)
    proc = run_python(f"""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location(
        "conv3d_cpu._native.constants", {os.path.join(NATIVE, "constants.py")!r})
    stale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stale)
    stale.DIGEST = "0" * 8  # as if constants.py had changed since the build
    sys.modules["conv3d_cpu._native.constants"] = stale
    try:
        import conv3d_cpu
    except ImportError as e:
        print("ImportError:", e)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ImportError: conv3d_cpu's compiled extensions were built from other constants" \
        in proc.stdout, proc.stdout


def test_every_winograd_shape_has_transforms():
    import numpy as np

    from conv3d_cpu._native import microkernels

    for kernel, tiles in constants.WINOGRAD_SHAPES.items():
        for m in tiles:
            tile = constants.winograd_tile(m, kernel)
            points = constants.winograd_points(tile, kernel)
            assert points in constants.WINOGRAD_INPUT_TILES
            assert tile + points in constants.WINOGRAD_OUTPUT_TILES
            w = np.ones(int(np.prod(kernel)), np.float32)  # one kernel, one channel
            ocb = microkernels.table()["ocb_narrow"][0]
            _, rc = microkernels.wino_weights(tile, points, w, w.size, 1, 1, ocb, ocb)
            assert rc == 0, (kernel, m)  # its G is compiled


def test_cost_model_and_checks_import_without_the_extension():
    # The package's __init__ and every compiled module are kept out; the cost model and the
    # argument checks still import and run.
    proc = run_python(f"""
    import importlib.abc, sys, types
    class NoExtensions(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.startswith("conv3d_cpu._native.") and not name.endswith(".constants"):
                raise ImportError("compiled extension blocked: " + name)
    sys.meta_path.insert(0, NoExtensions())
    for name, sub in (("conv3d_cpu", ""), ("conv3d_cpu._core", "_core"),
                      ("conv3d_cpu._native", "_native")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [{PACKAGE!r} + ("/" + sub if sub else "")]
        sys.modules[name] = pkg
    from conv3d_cpu._core import algorithms, validation
    m = algorithms.choose("auto", (1, 32, 32, 32, 32), (32, 32, 3, 3, 3), (1, 1, 1), (1, 1, 1),
                          1, (32, 32, 32))
    validation.algorithm_fits("winograd", (3, 3, 3), (1, 1, 1), (1, 1, 1))
    print("chose", m, "compiled modules:",
          sorted(n for n in sys.modules if n.startswith("conv3d_cpu._native.")))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "compiled modules: ['conv3d_cpu._native.constants']" in proc.stdout, proc.stdout
    assert "chose (" in proc.stdout, proc.stdout


def test_show_config_names_the_package_directory():
    assert conv3d_cpu.show_config(mode="dicts")["package_dir"] == PACKAGE
