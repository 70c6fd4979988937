"""The public API's docstrings document every parameter (numpydoc "name : type" lines in a
Parameters section)."""
import inspect
import re

import pytest

import conv3d_cpu

PUBLIC = [conv3d_cpu.conv3d, conv3d_cpu.Conv3d, conv3d_cpu.set_float32_precision,
          conv3d_cpu.float32_precision, conv3d_cpu.set_weight_cache_limit,
          conv3d_cpu.Conv3d.forward, conv3d_cpu.Conv3d.load_state_dict]


def documented(obj):
    """Names on the "name : type" (or "a, b : type") lines of ``obj``'s docstring."""
    names = set()
    for line in (inspect.getdoc(obj) or "").splitlines():
        m = re.match(r"^(\w+(?:, \w+)*) :", line)
        if m:
            names.update(m.group(1).split(", "))
    return names


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__qualname__)
def test_every_parameter_is_documented(obj):
    params = [p for p in inspect.signature(obj).parameters if p != "self"]
    missing = [p for p in params if p not in documented(obj)]
    assert not missing, f"{obj.__qualname__}: not in its docstring: {missing}"


@pytest.mark.parametrize("name", ["conv3d", "plan"])
def test_dask_api_parameters_are_documented(name):
    # (conv3d_cpu.dask raises ImportError, naming the extra, where dask is missing)
    obj = getattr(pytest.importorskip("conv3d_cpu.dask", exc_type=ImportError,
                                      reason="conv3d_cpu[dask] (dask[array]) not installed"), name)
    missing = [p for p in inspect.signature(obj).parameters if p not in documented(obj)]
    assert not missing, f"conv3d_cpu.dask.{name}: not in its docstring: {missing}"
