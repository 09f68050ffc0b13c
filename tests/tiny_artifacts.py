"""Small artifacts built by hand with ``onnx.helper``: every number they give can be recomputed
with numpy, so runtime tests check exact scores without torch or minutes of export.

Geometry: 8x8 RGB in [0, 1] (``scale = 1/255``), no resize crop. The backbone's feature is the
clip's mean per channel ([B, 3]); its feature map is the per-frame mean ([B, T, 3]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevad import __version__
from edgevad.artifact.manifest import (
    FileRecord,
    Link,
    Manifest,
    Protocol,
    StageSpec,
    TensorSpec,
    WeightsRecord,
    sha256_file,
)
from edgevad.artifact.zoo import UCF_CRIME_CLASSES, InputGeometry

W_APPEAR = np.array([[4.0], [-2.0], [1.0]], dtype=np.float32)
B_APPEAR = np.float32(-1.0)
W_CTX = np.array([[1.0], [1.0], [-3.0]], dtype=np.float32)
W_MOTION = np.array([[3.0], [3.0]], dtype=np.float32)
W_CLASS = np.linspace(-1, 1, 3 * 14, dtype=np.float32).reshape(3, 14)
OPSET = 18
SIZE = (8, 8)
FLOW_SIZE = (16, 16)  # DIS needs 12 px or more


def geometry(clip_len: int, stride: int, channels: int = 3) -> InputGeometry:
    if channels == 2:
        return InputGeometry(clip_len=clip_len, stride=stride, size=FLOW_SIZE, color="gray",
                             channels=2, mean=(0.0, 0.0), std=(1.0, 1.0), flow_bound=5.0)
    return InputGeometry(clip_len=clip_len, stride=stride, size=SIZE, resize=None, crop="none",
                         color="rgb", scale=1.0 / 255.0)


def _save(graph, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _backbone(path: Path, clip_len: int, channels: int, name: str, feature_map: bool,
              size: tuple[int, int] = SIZE) -> list:
    nodes = [helper.make_node("ReduceMean", [name, "axes"], ["features"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array([2, 3, 4], np.int64), "axes")]
    outputs = [_vi("features", ["batch", channels])]
    if feature_map:
        inits.append(numpy_helper.from_array(np.array([3, 4], np.int64), "axes_hw"))
        nodes += [helper.make_node("ReduceMean", [name, "axes_hw"], ["m"], keepdims=0),
                  helper.make_node("Transpose", ["m"], ["feature_map"], perm=[0, 2, 1])]
        outputs.append(_vi("feature_map", ["batch", clip_len, channels]))
    graph = helper.make_graph(nodes, name, [_vi(name, ["batch", channels, clip_len, *size])],
                              outputs, inits)
    _save(graph, path)
    return outputs


def _segment_head(path: Path, kind: str, segments: int | str) -> tuple[list, list]:
    inits = [numpy_helper.from_array(W_APPEAR, "w"), numpy_helper.from_array(np.array(B_APPEAR), "b"),
             numpy_helper.from_array(np.array([2], np.int64), "ax2")]
    inputs = [_vi("appearance" if kind == "dmrm" else "features", ["batch", segments, 3])]
    x = inputs[0].name
    nodes = [helper.make_node("MatMul", [x, "w"], ["lin"]),
             helper.make_node("Add", ["lin", "b"], ["z0"])]
    z = "z0"
    if kind == "ctx":  # + (window mean) @ W_CTX, the same for every segment of the window
        inits += [numpy_helper.from_array(W_CTX, "wc"),
                  numpy_helper.from_array(np.array([1], np.int64), "ax1")]
        nodes += [helper.make_node("ReduceMean", [x, "ax1"], ["mean"], keepdims=1),
                  helper.make_node("MatMul", ["mean", "wc"], ["ctx"]),
                  helper.make_node("Add", ["z0", "ctx"], ["z1"])]
        z = "z1"
    if kind == "dmrm":
        inputs.append(_vi("motion", ["batch", segments, 2]))
        inits.append(numpy_helper.from_array(W_MOTION, "wm"))
        nodes += [helper.make_node("MatMul", ["motion", "wm"], ["mz"]),
                  helper.make_node("Add", ["z0", "mz"], ["z1"])]
        z = "z1"
    nodes += [helper.make_node("Squeeze", [z, "ax2"], ["zs"]),
              helper.make_node("Sigmoid", ["zs"], ["scores"])]
    outputs = [_vi("scores", ["batch", segments])]
    if kind == "joint":
        inits += [numpy_helper.from_array(W_CLASS, "wk"),
                  numpy_helper.from_array(np.array([1], np.int64), "ax1")]
        nodes += [helper.make_node("ReduceMean", [x, "ax1"], ["pooled"], keepdims=0),
                  helper.make_node("MatMul", ["pooled", "wk"], ["class_logits"])]
        outputs.append(_vi("class_logits", ["batch", 14]))
    _save(helper.make_graph(nodes, "head", inputs, outputs, inits), path)
    return inputs, outputs


def _dam_head(path: Path, t: int) -> tuple[list, list]:
    inputs = [_vi("clip_map", ["batch", t, 3]), _vi("prev_map", ["batch", t, 3])]
    nodes = [helper.make_node("Sub", ["clip_map", "prev_map"], ["d"]),
             helper.make_node("Abs", ["d"], ["ad"]),
             helper.make_node("ReduceSum", ["ad", "ax"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "k"], ["sk"]),
             helper.make_node("Sigmoid", ["sk"], ["detection"]),
             helper.make_node("Identity", ["detection"], ["clip_attention"]),
             helper.make_node("Add", ["detection", "sk"], ["score"]),
             helper.make_node("Identity", ["clip_map"], ["next_prev_map"])]
    inits = [numpy_helper.from_array(np.array([1, 2], np.int64), "ax"),
             numpy_helper.from_array(np.array(20.0, np.float32), "k")]
    outputs = [_vi("score", ["batch"]), _vi("detection", ["batch"]),
               _vi("clip_attention", ["batch"]), _vi("next_prev_map", ["batch", t, 3])]
    _save(helper.make_graph(nodes, "head", inputs, outputs, inits), path)
    return inputs, outputs


def _specs(value_infos) -> tuple[TensorSpec, ...]:
    out = []
    for v in value_infos:
        dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        out.append(TensorSpec(v.name, tuple(dims)))
    return tuple(out)


def build_tiny_artifact(folder: Path, kind: str = "mil", clip_len: int = 4, stride: int = 4,
                        window: int | None = None, segments: int = 4) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True)
    g = geometry(clip_len, stride)
    stages, links = [], []
    bb_out = _backbone(folder / "backbone.onnx", clip_len, 3, "clip", feature_map=kind == "dam")
    stages.append(StageSpec("backbone", "backbone.onnx", "backbone",
                            (TensorSpec("clip", ("batch", 3, clip_len, *SIZE)),), _specs(bb_out),
                            model="tiny", geometry=g.to_dict(), opset=OPSET))
    flow = None
    if kind == "dmrm":
        fg = geometry(clip_len, stride, channels=2)
        m_out = _backbone(folder / "motion.onnx", clip_len, 2, "flow", feature_map=False,
                          size=FLOW_SIZE)
        stages.append(StageSpec("motion", "motion.onnx", "motion",
                                (TensorSpec("flow", ("batch", 2, clip_len, *FLOW_SIZE)),),
                                _specs(m_out), model="tiny-motion", geometry=fg.to_dict(),
                                opset=OPSET))
        flow = {"estimator": "opencv-dis", "preset": "ultrafast", "finest_scale": 1,
                "size": list(FLOW_SIZE), "bound": 5.0}
    if kind == "dam":
        h_in, h_out = _dam_head(folder / "head.onnx", clip_len)
        links += [Link("backbone/feature_map", "head/clip_map"),
                  Link("head/next_prev_map", "head/prev_map", via="state")]
        protocol = Protocol(mode="online", clip_len=clip_len, stride=stride,
                            state={"input": "prev_map", "output": "next_prev_map",
                                   "initial": "clip_map"})
    else:
        fixed = kind == "joint"
        h_in, h_out = _segment_head(folder / "head.onnx", kind, segments if fixed else "segments")
        links.append(Link("backbone/features", f"head/{h_in[0].name}", via="segments"))
        if kind == "dmrm":
            links.append(Link("motion/features", "head/motion", via="segments"))
        protocol = Protocol(mode="segments", clip_len=clip_len, stride=stride, segments=segments,
                            segments_fixed=fixed, window=window)
    stages.append(StageSpec("head", "head.onnx", "head", _specs(h_in), _specs(h_out),
                            model=f"tiny-{kind}", opset=OPSET))
    files = {p.name: FileRecord(sha256_file(p), p.stat().st_size)
             for p in sorted(folder.iterdir())}
    manifest = Manifest(
        model={"name": f"tiny-{kind}", "version": "test"}, head=f"tiny-{kind}",
        backbones={s.name: "tiny" for s in stages if s.role != "head"},
        weights={s.name: WeightsRecord("random") for s in stages},
        stages=tuple(stages), links=tuple(links), protocol=protocol, files=files, opset=OPSET,
        class_names=UCF_CRIME_CLASSES if kind == "joint" else (),
        score_range=(0.0, 2.0) if kind == "dam" else (0.0, 1.0),
        default_threshold=1.0 if kind == "dam" else 0.5, flow=flow,
        edgevad_version=__version__, created="test",
    )
    manifest.save(folder)
    return folder


# --- numpy references --------------------------------------------------------------------------

def frame_features(frame_bgr: np.ndarray) -> np.ndarray:
    """The backbone's per-frame contribution: mean RGB of the 8x8 resized frame, in [0, 1]."""
    from edgevad.media.preprocess import preprocess_frame

    return preprocess_frame(frame_bgr, geometry(1, 1)).mean(axis=(1, 2))


def mil_score(clip_feature: np.ndarray) -> float:
    z = float(clip_feature @ W_APPEAR[:, 0] + B_APPEAR)
    return 1.0 / (1.0 + np.exp(-z))
