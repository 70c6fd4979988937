"""The README's "Volumes larger than memory (Dask)" section: its ```py blocks run as written.

(They are fenced ``py``, not ``python``: tests/api/test_readme.py runs every ``python`` block
wherever the suite runs, `make wheel-test` included, where dask is not installed; here they
run where it is.)"""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
HEADING = "## Volumes larger than memory (Dask)\n"


def _blocks():
    with open(README) as f:
        text = f.read()
    section = text[text.index(HEADING):]
    section = section[:section.index("\n## ", len(HEADING))]
    return re.findall(r"^```py\n(.*?)^```", section, re.S | re.M)


def test_the_section_has_a_py_block():
    assert len(_blocks()) >= 1


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_dask_block_runs(index, capsys):
    pytest.importorskip("dask.array", reason="conv3d_cpu[dask] (dask[array]) not installed")
    exec(compile(_blocks()[index], f"README.md dask block {index}", "exec"),
         {"__name__": "__readme__"})
    assert "((16, 16, 8), (24, 24), (64, 64, 32))" in capsys.readouterr().out
