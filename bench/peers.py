"""The systems the benchmark times: ours (one per algorithm) and the optional peers.

Every system has a ``key`` (column name), a ``version`` string and
``prepare(layer, x, w, b, threads)``, which does all set-up outside the timed region and
returns a no-argument callable that runs the convolution once and returns the output as a
numpy array. ``prepare`` raises :class:`Unsupported` when the system cannot run the layer.

* ``ours:<algorithm>`` -- ``conv3d_cpu.conv3d(..., algorithm=..., num_threads=threads)``.
* ``torch`` -- ``torch.nn.functional.conv3d`` under ``torch.inference_mode()``, threads set with
  ``torch.set_num_threads`` (inter-op threads are set to 1 once, at import).
* ``ort`` -- ONNX Runtime's CPU ``Conv``: a one-node ONNX model built in memory with
  ``onnx.helper`` (weights and bias as initializers), one ``InferenceSession`` per layer and
  thread count with ``intra_op_num_threads = threads``. ORT's worker threads busy-wait
  ("spin") for work, also after a run has returned; interleaved with other systems on few
  cores that steals their CPU time. ``spin`` picks: ``"stop"`` (default) spins during a run
  but stops when it returns (``session.force_spinning_stop``), ``"on"`` is ORT's default,
  ``"off"`` never spins (``session.intra_op.allow_spinning = 0``).
* ``openvino`` -- OpenVINO's CPU plugin: a model of one ``Convolution`` (``GroupConvolution``
  when groups > 1) node and a bias ``Add``, built with ``openvino.opset15`` and compiled per
  layer and thread count with ``INFERENCE_NUM_THREADS = threads``, f32 inference precision,
  the latency hint and one stream. Float64 layers are n/a: the CPU plugin computes an f64
  model in f32.

Peers are optional: :func:`available_peers` returns those that import, plus a note for each
that does not.
"""
import numpy as np

__all__ = ["Unsupported", "Ours", "TorchPeer", "OrtPeer", "OpenVinoPeer", "PEERS", "make_peer",
           "available_peers", "openmp_runtimes"]


class Unsupported(Exception):
    """The system cannot run this layer (reported as n/a with the message)."""


class Ours:
    """``conv3d_cpu.conv3d`` with a fixed ``algorithm`` (``op``: the name of another
    conv3d_cpu function with conv3d's calling convention, e.g. ``conv_transpose3d``)."""

    is_peer = False
    op = "conv3d"

    def __init__(self, algorithm):
        import conv3d_cpu
        self._conv = getattr(conv3d_cpu, self.op)
        self.algorithm = algorithm
        self.key = f"ours:{algorithm}"
        self.version = conv3d_cpu.__version__

    def check(self):
        """Raise ValueError when this build does not know the algorithm (tiny 3x3x3 probe)."""
        x = np.zeros((1, 1, 6, 6, 6), np.float32)
        w = np.zeros((1, 1, 3, 3, 3), np.float32)
        self._conv(x, w, padding=1, algorithm=self.algorithm, num_threads=1)

    def prepare(self, layer, x, w, b, threads):
        conv, kwargs = self._conv, layer.conv_kwargs()
        algorithm = self.algorithm

        def run():
            return conv(x, w, b, algorithm=algorithm, num_threads=threads, **kwargs)
        return run


class TorchPeer:
    """PyTorch's ``F.conv3d`` (oneDNN for float32 on most builds; ``op``: the name of another
    ``torch.nn.functional`` function with the same calling convention)."""

    key = "torch"
    is_peer = True
    op = "conv3d"

    def __init__(self):
        import torch
        self.torch = torch
        self.version = torch.__version__
        try:  # only allowed before any inter-op parallel work has started
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass

    def prepare(self, layer, x, w, b, threads):
        torch = self.torch
        conv = getattr(torch.nn.functional, self.op)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        tb = None if b is None else torch.from_numpy(b)
        kwargs = layer.conv_kwargs()
        torch.set_num_threads(threads)

        def run():
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            with torch.inference_mode():
                return conv(tx, tw, tb, **kwargs).numpy()
        return run


class OrtPeer:
    """ONNX Runtime's CPU ``Conv`` node."""

    key = "ort"
    is_peer = True
    OPSET = 17   # Conv is unchanged since opset 11
    IR_VERSION = 8

    SPIN_MODES = ("stop", "on", "off")

    def __init__(self, spin="stop"):
        if spin not in self.SPIN_MODES:
            raise ValueError(f"spin must be one of {self.SPIN_MODES}, got {spin!r}")
        import onnx
        import onnxruntime
        self.onnx, self.ort, self.spin = onnx, onnxruntime, spin
        self.version = onnxruntime.__version__

    def model_bytes(self, layer, w, b):
        from onnx import helper, numpy_helper
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(layer.dtype))
        x_info = helper.make_tensor_value_info("x", elem, list(layer.input_shape))
        y_info = helper.make_tensor_value_info("y", elem, list(layer.output_shape))
        inits = [numpy_helper.from_array(w, "w")]
        inputs = ["x", "w"]
        if b is not None:
            inits.append(numpy_helper.from_array(b, "b"))
            inputs.append("b")
        node = helper.make_node(
            "Conv", inputs, ["y"], kernel_shape=list(layer.k), strides=list(layer.stride),
            dilations=list(layer.dilation), pads=list(layer.padding) * 2, group=layer.groups)
        graph = helper.make_graph([node], f"conv3d_{layer.name}", [x_info], [y_info], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.OPSET)])
        model.ir_version = self.IR_VERSION
        return model.SerializeToString()

    def session_options(self, threads):
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning",
                                    "0" if self.spin == "off" else "1")
        if self.spin == "stop":
            so.add_session_config_entry("session.force_spinning_stop", "1")
        return so

    def prepare(self, layer, x, w, b, threads):
        try:
            sess = self.ort.InferenceSession(
                self.model_bytes(layer, w, b), self.session_options(threads),
                providers=["CPUExecutionProvider"])
        except Exception as e:  # e.g. NOT_IMPLEMENTED: no float64 Conv kernel on CPU
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "NOT_IMPLEMENTED" in msg:
                msg = f"ORT CPU has no {layer.dtype} Conv kernel"
            raise Unsupported(msg) from None
        feed = {"x": x}

        def run():
            return sess.run(None, feed)[0]
        return run


class OpenVinoPeer:
    """OpenVINO's CPU plugin running a one-convolution model."""

    key = "openvino"
    is_peer = True

    def __init__(self):
        import openvino
        import openvino.opset15 as ops
        import openvino.properties as props
        import openvino.properties.hint as hints
        self.ov, self.ops, self.props, self.hints = openvino, ops, props, hints
        self.version = openvino.get_version()
        self.core = openvino.Core()

    def model(self, layer, w, b):
        ops = self.ops
        if layer.dtype != "float32":
            raise Unsupported(f"OpenVINO's CPU plugin computes {layer.dtype} in float32")
        x = ops.parameter(list(layer.input_shape), np.float32, name="x")
        pads = list(layer.padding)
        geometry = dict(strides=list(layer.stride), pads_begin=pads, pads_end=pads,
                        dilations=list(layer.dilation))
        if layer.groups == 1:
            y = ops.convolution(x, ops.constant(w), **geometry)
        else:   # filters (G, Cout/G, Cin/G, kD, kH, kW)
            g = layer.groups
            wg = w.reshape((g, w.shape[0] // g) + w.shape[1:])
            y = ops.group_convolution(x, ops.constant(wg), **geometry)
        if b is not None:
            y = ops.add(y, ops.constant(b.reshape(1, -1, 1, 1, 1)))
        return self.ov.Model([y], [x], f"conv3d_{layer.name}")

    def compile(self, model, threads):
        """``model`` compiled for the CPU plugin as every benchmark runs OpenVINO (also
        bench/networks.py's whole networks)."""
        props, hints = self.props, self.hints
        return self.core.compile_model(model, "CPU", {
            props.inference_num_threads: threads,
            hints.inference_precision: self.ov.Type.f32,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: 1})

    def prepare(self, layer, x, w, b, threads):
        props = self.props
        compiled = self.compile(self.model(layer, w, b), threads)
        got = int(compiled.get_property(props.inference_num_threads))
        if got != threads:
            raise Unsupported(f"OpenVINO runs {got} threads, asked for {threads}")
        request = compiled.create_infer_request()

        def run():
            request.infer([x], share_inputs=True)
            return request.get_output_tensor(0).data
        return run


PEERS = ("torch", "ort", "openvino")


def make_peer(name, ort_spin="stop"):
    """The peer called ``name`` (one of PEERS); ImportError when its package is missing."""
    if name == "ort":
        return OrtPeer(spin=ort_spin)
    return {"torch": TorchPeer, "openvino": OpenVinoPeer}[name]()


def available_peers(names=PEERS, ort_spin="stop"):
    """``(peers, notes)``: instances of the requested peers that import, and a
    ``{name: reason}`` dict for those that do not."""
    peers, notes = [], {}
    for name in names:
        try:
            peers.append(make_peer(name, ort_spin))
        except ImportError as e:
            notes[name] = f"not installed ({e.name or e})"
    return peers, notes


def openmp_runtimes():
    """Paths of the OpenMP runtime libraries mapped into this process (Linux only)."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                base = path.rsplit("/", 1)[-1]
                if base.startswith(("libgomp", "libiomp", "libomp")):
                    found.add(path)
    except OSError:
        pass
    return sorted(found)
