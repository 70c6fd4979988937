"""Select the package's per-ISA kernels in tests (an internal switch of this build)."""
import contextlib
import importlib

try:
    _isa = importlib.import_module("conv3d_cpu._native.isa")
except ImportError:  # a build without per-ISA dispatch: run everything once, as is
    _isa = None

HAS_ISA_SWITCH = all(hasattr(_isa, n) for n in ("available_isas", "use_isa", "current_isa"))
ISAS = list(_isa.available_isas()) if HAS_ISA_SWITCH else [None]


def current_isa():
    return _isa.current_isa()


@contextlib.contextmanager
def isa_selected(name):
    """Run the body with the kernels of ISA ``name`` (None: leave the selection alone)."""
    if name is None:
        yield
        return
    previous = _isa.current_isa()
    _isa.use_isa(name)
    try:
        assert _isa.current_isa() == name
        yield
    finally:
        _isa.use_isa(previous)
