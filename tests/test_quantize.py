"""INT8 graphs: ONNX Runtime's U8S8 QDQ (first conv kept fp32, Conv3d fused as QLinearConv), the
symmetric int8 Q/DQ graph for TensorRT, dynamic int8 for LSTM heads.

A small 3D CNN (conv 3x7x7 stem, I3D's -inf padded max pooling, two 3x3x3 convs, pooling,
linear) stands in for a backbone so the file runs in seconds; the real backbones are measured by
benchmarks/int8_backbones.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from torch import nn

from edgevad_calibration import CalibrationError, CalibrationSet
from edgevad_calibration.quantize import (
    Int8Config,
    check_symmetric_qdq,
    first_conv_nodes,
    non_finite_pad_nodes,
    quantize_dynamic_int8,
    quantize_ort_int8,
    quantize_trt_qdq,
)


class TinyC3(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(3, 8, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3))
        self.c1 = nn.Conv3d(8, 16, 3, padding=1)
        self.c2 = nn.Conv3d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, clip):
        x = torch.relu(self.stem(clip))
        # TF "SAME" max pooling as I3D does it: pad with -inf, then pool
        x = nn.functional.max_pool3d(nn.functional.pad(x, (0, 1, 0, 1), value=float("-inf")),
                                     (1, 3, 3), stride=(1, 2, 2))
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x)) + x
        return self.fc(x.mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, CalibrationSet]:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny")
    path = d / "tiny.onnx"
    model = TinyC3().eval()
    torch.onnx.export(model, (torch.randn(1, 3, 4, 32, 32),), str(path), input_names=["clip"],
                      output_names=["features"], dynamic_axes={"clip": {0: "batch"}},
                      opset_version=17, dynamo=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (6, 3, 4, 32, 32)).astype(np.float32)
    return path, CalibrationSet("backbone", {"clip": x}, {"clip": "float32"})


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _optimized_ops(path: Path, tmp: Path) -> list[str]:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return _ops(tmp / "optimized.onnx")


def test_first_conv_is_found(tiny):
    path, _ = tiny
    names = first_conv_nodes(path)
    assert len(names) == 1
    stem = [n for n in onnx.load(str(path)).graph.node if n.name == names[0]][0]
    assert stem.input[0] == "clip"


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_ort_int8_u8s8(tiny, tmp_path, method):
    path, cset = tiny
    out = tmp_path / "int8.onnx"
    report = quantize_ort_int8(path, out, cset.reader(), Int8Config(method=method))
    assert report.activations == "uint8" and report.weights == "int8" and report.per_channel
    pads = non_finite_pad_nodes(path)
    assert len(pads) == 1  # its output holds -inf: no int8 scale fits, so it stays fp32
    assert report.excluded_nodes == first_conv_nodes(path) + pads
    graph = onnx.load(str(out)).graph
    acts = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    zp_types = {onnx.numpy_helper.to_array(i).dtype for i in graph.initializer
                if any(i.name == n.input[2] for n in acts)}
    assert zp_types == {np.dtype(np.uint8)}
    ops = _optimized_ops(out, tmp_path)
    assert ops.count("QLinearConv") == 2  # the two 3x3x3 convs run fused in int8
    assert ops.count("Conv") + ops.count("FusedConv") >= 1  # the stem stays fp32
    x = cset.sample(0)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, x)[0]
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() < 0.1 * scale  # int8-close, not equal
    assert not np.array_equal(got, ref)


def test_trt_qdq_is_symmetric_int8(tiny, tmp_path):
    path, cset = tiny
    cache = tmp_path / "ranges.json"
    quantize_ort_int8(path, tmp_path / "u8.onnx", cset.reader(), cache=cache)
    out = tmp_path / "qdq.onnx"
    report = quantize_trt_qdq(path, out, cset.reader(), cache=cache)
    assert report.symmetric and report.activations == "int8"
    assert report.excluded_nodes == non_finite_pad_nodes(path)  # only the -inf pad
    summary = check_symmetric_qdq(out)
    assert summary["QuantizeLinear"] >= 4 and summary["per_channel_scales"] == 4  # 3 convs + fc
    graph = onnx.load(str(out)).graph
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = [onnx.numpy_helper.to_array(i) for i in graph.initializer
                  if i.name == node.input[2]][0]
            assert zp.dtype == np.int8 and not zp.any()
    # the U8S8 graph is refused by the same check, naming why
    with pytest.raises(CalibrationError, match="zero point dtype uint8"):
        check_symmetric_qdq(tmp_path / "u8.onnx")
    # and TensorRT's graph computes what fp32 does, to int8 precision. Its Q/DQ pairs are run
    # as written (basic optimisations: quantise, dequantise, float op), which is what TensorRT
    # fuses: ONNX Runtime's fused S8S8 CPU kernels (ORT_ENABLE_ALL) saturate on x86 CPUs
    # without VNNI (measured 0.20 of the output's range on an AVX2 EPYC, 0.004 run as written)
    x = cset.sample(1)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    as_written = ort.SessionOptions()
    as_written.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    got = ort.InferenceSession(str(out), as_written,
                               providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


def test_dynamic_int8_lstm(tmp_path):
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(32, 64, batch_first=True)
            self.out = nn.Linear(64, 1)

        def forward(self, x):
            y, _ = self.lstm(x)
            return torch.sigmoid(self.out(y[:, -1])).squeeze(-1)

    torch.manual_seed(0)
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(Head().eval(), (torch.randn(1, 5, 32),), str(path), input_names=["x"],
                      output_names=["score"], opset_version=17, dynamo=False)
    out = tmp_path / "lstm.int8.onnx"
    report = quantize_dynamic_int8(path, out)
    assert report.kind == "ort-dynamic" and report.qdq.get("DynamicQuantizeLSTM") == 1
    x = {"x": np.random.default_rng(1).standard_normal((1, 5, 32)).astype(np.float32)}
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert np.abs(got - ref).max() < 0.02
