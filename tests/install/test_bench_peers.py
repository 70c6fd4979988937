"""bench/peers.py: every peer the benchmark times computes the layer it is given (checked
against the float64 numpy reference on small layers with stride, padding, dilation, groups,
depthwise, per-axis geometry and no bias), and one that cannot run a layer says so with
Unsupported. A peer whose package is not installed is skipped: they are optional, installed
by ``make bench`` (not by ``make test``)."""
import importlib
import os
import sys

import numpy as np
import pytest

from reference import conv3d_ref

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = {"torch": "torch", "ort": "onnxruntime", "openvino": "openvino"}


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        return importlib.import_module("peers"), importlib.import_module("layers")
    finally:
        sys.path.remove(os.path.join(ROOT, "bench"))


LAYERS = [
    "cin=3,cout=5,size=7,k=3,p=1",
    "cin=4,cout=6,size=5x8x9,k=1x3x2,s=1x2x2,p=0x1x0,bias=0",
    "cin=4,cout=4,size=9,k=3,d=2,p=2,s=2",
    "cin=6,cout=4,size=6,k=3,p=1,g=2",
    "cin=5,cout=5,size=6x7x5,k=3,p=1,g=5,n=2",
]


@pytest.mark.parametrize("spec", LAYERS)
@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_a_peer_computes_the_layer(bench, name, spec):
    peers, layers = bench
    pytest.importorskip(PACKAGES[name], reason=f"the {name} peer is optional (make bench)")
    (peer,), notes = peers.available_peers([name])
    assert not notes
    lay = layers.parse_layer(spec, "float32")
    rng = np.random.default_rng(len(spec))
    x = rng.standard_normal(lay.input_shape).astype(np.float32)
    w = rng.standard_normal((lay.cout, lay.cin // lay.groups) + tuple(lay.k)).astype(np.float32)
    b = rng.standard_normal(lay.cout).astype(np.float32) if lay.bias else None
    got = np.array(peer.prepare(lay, x, w, b, threads=2)())
    want = conv3d_ref(x.astype(np.float64), w.astype(np.float64),
                      None if b is None else b.astype(np.float64), stride=lay.stride,
                      padding=lay.padding, dilation=lay.dilation, groups=lay.groups)
    assert got.shape == want.shape == tuple(lay.output_shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("name", ["ort", "openvino"])
def test_a_peer_without_float64_says_so(bench, name):
    peers, layers = bench
    pytest.importorskip(PACKAGES[name], reason=f"the {name} peer is optional (make bench)")
    (peer,), _ = peers.available_peers([name])
    lay = layers.parse_layer("cin=2,cout=2,size=5,k=3", "float64")
    x = np.zeros(lay.input_shape)
    w = np.zeros((2, 2, 3, 3, 3))
    with pytest.raises(peers.Unsupported, match="float64|NOT_IMPLEMENTED|Conv kernel"):
        peer.prepare(lay, x, w, None, threads=1)()


def test_a_missing_peer_is_a_note(bench, monkeypatch):
    peers, _ = bench
    monkeypatch.setitem(sys.modules, "openvino", None)   # import openvino -> ImportError
    found, notes = peers.available_peers(["openvino"])
    assert found == [] and "not installed" in notes["openvino"]
