"""Every Python block of README.md runs as written (a newcomer copies them)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")


def _blocks():
    with open(README) as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_readme_has_python_blocks():
    assert len(_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(index, capsys):
    code = _blocks()[index]
    if re.search(r"^import torch", code, re.M):
        pytest.importorskip("torch", reason="this README block loads PyTorch weights")
    exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "__readme__"})
