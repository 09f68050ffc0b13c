"""Every TensorRT-bound graph an export writes, for every zoo model, built by NVIDIA's builder.

TensorRT itself cannot be installed on a machine without a GPU, but TensorRT-RTX's wheel
(``tensorrt-rtx-cu12``, the ``[tensorrt-rtx]`` extra, in the ``test`` extra so CI has it) has the
same ``Builder`` / ``OnnxParser`` API and builds engines ahead of time on a CPU-only machine. So
the graphs are proven against the real parser and builder, not a stand-in: fp32, fp16 (the fp16
graph, strongly typed as TensorRT 11 and TensorRT-RTX build it) and int8 (the symmetric Q/DQ
graph), for every stage of every model: I3D at 16 and at 64 frames (DAM), dmrm's motion stream,
R3D-34 (joint), each head (DAM's two-input LSTM head, dmrm's two-stream head, joint's fixed 32
segments) with the artifact's batch profile (batch 1..8, segments 1..64). Recurrent heads (DAM,
joint) have no Q/DQ graph: the builder rejected joint's (``precision.RECURRENT_QDQ_NOTE``), so
exports write none and ``edgevad build-engines`` builds their fp16 engine where int8 is asked.

The graphs come from the exporter's own pieces (``torch_to_onnx`` with the stage adapters and
the exporter's shapes, ``make_fp16``, ``quantize_trt_qdq``), with seeded random weights: graph
structure does not depend on the weights, and each distinct graph is exported once per session
(the I3D backbone serves five models). Nothing here runs an engine: that needs a GPU.
Skipped with a reason only where the wheel is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed: pip install "
                          "'edgevad[tensorrt-rtx]' (the test extra installs it)")
torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from edgevad.artifact import zoo  # noqa: E402
from edgevad.artifact.manifest import StageSpec, TensorSpec  # noqa: E402
from edgevad.runtime.engine_meta import GpuInfo  # noqa: E402
from edgevad_calibration.tensorrt_build import (  # noqa: E402
    MAX_BATCH,
    EngineBuildError,
    build_engine,
    engine_plan,
    stage_profile,
)

PRECISIONS = ("fp32", "fp16", "int8")
AHEAD_OF_TIME = GpuInfo(name="none (TensorRT-RTX ahead-of-time build on CPU)",
                        compute_capability=(0, 0))
MODELS = zoo.list_heads()


def _clip_len(head: zoo.HeadSpec, bb: zoo.BackboneSpec) -> int:
    return head.clip_len or bb.geometry.clip_len  # exporter._geometry: DAM's 64-frame clips


def _stages_of(model: str) -> list[tuple]:
    """The graph keys of ``model``'s stages, as ``edgevad export -m MODEL`` writes them."""
    head = zoo.get_head(model)
    bb = zoo.get_backbone(head.default_backbone)
    # motion-prior: no backbone graph (the runtime computes its flow statistics), the head only
    keys = [("backbone", bb.name, _clip_len(head, bb))] if bb.kind == "network" else []
    if head.motion_backbone:
        keys.append(("motion", head.motion_backbone, None))
    return keys + [("head", model, None)]


class _Reader:
    """One seeded random sample, re-iterable (ONNX Runtime's calibration protocol): ranges do
    not change a graph's structure."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        self.feeds, self._done = feeds, False

    def get_next(self):
        if self._done:
            self._done = False
            return None
        self._done = True
        return self.feeds

    def rewind(self):
        self._done = False


class _Graphs:
    """Each distinct stage graph exported once (fp32, fp16, Q/DQ), as a StageSpec with
    variants; engines built once per (graph, precision)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.stages: dict[tuple, StageSpec] = {}
        self.built: dict[tuple, object] = {}

    def stage(self, key: tuple) -> StageSpec:
        if key not in self.stages:
            self.stages[key] = self._export(key)
        return self.stages[key]

    def _export(self, key: tuple) -> StageSpec:
        from edgevad_calibration.quantize import Int8Config, quantize_trt_qdq
        from edgevad_export.onnx_export import BackboneAdapter, torch_to_onnx
        from edgevad_export.precision import make_fp16

        role, name, clip_len = key
        tag = "-".join(str(k) for k in key if k is not None)
        fp32 = self.folder / f"{tag}.onnx"
        torch.manual_seed(0)
        calib: dict[str, np.ndarray] | None
        if role in ("backbone", "motion"):
            from edgevad_export.models.factory import create_backbone

            spec = zoo.get_backbone(name)
            g = spec.geometry
            shape = (g.channels, clip_len or g.clip_len, int(g.size[0]), int(g.size[1]))
            module = create_backbone(name, random_init=True).eval()
            fmap = role == "backbone" and spec.feature_map
            outputs = [TensorSpec("features", ("batch", spec.feature_dim))]
            if fmap:
                with torch.no_grad():
                    t = int(module.forward_feature_map(torch.zeros(1, *shape)).shape[1])
                outputs.append(TensorSpec("feature_map", ("batch", t, spec.feature_dim)))
            inp = "clip" if role == "backbone" else "flow"
            inputs = [TensorSpec(inp, ("batch", *shape))]
            torch_to_onnx(BackboneAdapter(module, feature_map=fmap), (torch.randn(2, *shape),),
                          fp32, [inp], [o.name for o in outputs], dynamic_batch=True)
            calib = {inp: np.random.default_rng(0).standard_normal((1, *shape),
                                                                   dtype=np.float32)}
        else:
            inputs, outputs, calib = self._export_head(name, fp32)
        stage = StageSpec(name=role, file=fp32.name, role=role, model=name, inputs=tuple(inputs),
                          outputs=tuple(outputs))
        variants = {"fp32": fp32.name,
                    "fp16": make_fp16(fp32, self.folder / f"{tag}.fp16.onnx").name}
        if calib is not None:  # precision.apply_precision: every pixel stage, non-LSTM heads
            qdq = self.folder / f"{tag}.int8-qdq.onnx"
            quantize_trt_qdq(fp32, qdq, _Reader(calib), Int8Config(method="minmax"))
            variants["int8_qdq"] = qdq.name
        from dataclasses import replace

        return replace(stage, variants=variants)

    def _export_head(self, name: str, path: Path):
        """exporter._export_stages' head branch: DAM with its state explicit, segment heads with
        a symbolic segment axis (joint's is fixed)."""
        from edgevad_export.models.factory import create_head
        from edgevad_export.onnx_export import DAMAdapter, torch_to_onnx

        spec = zoo.get_head(name)
        bb = zoo.get_backbone(spec.default_backbone)
        module = create_head(name, backbone=bb.name, random_init=True).eval()
        D = bb.feature_dim
        if "clip_map" in spec.inputs:
            bb_stage = self.stage(("backbone", bb.name, _clip_len(spec, bb)))
            t = bb_stage.output("feature_map").shape[1]
            shape = ("batch", t, D)
            inputs = [TensorSpec(n, shape) for n in spec.inputs]
            outputs = [TensorSpec(n, ("batch",)) for n in spec.outputs]
            outputs.append(TensorSpec("next_prev_map", shape))
            torch_to_onnx(DAMAdapter(module), tuple(torch.randn(2, t, D) for _ in inputs), path,
                          list(spec.inputs), [o.name for o in outputs], dynamic_batch=True)
            return inputs, outputs, None  # LSTM head: fp32 or dynamic int8, no Q/DQ graph
        fixed = name == "joint"
        S = spec.segments or 32
        seg: int | str = S if fixed else "segments"
        dims = {n: D for n in spec.inputs}
        if spec.motion_backbone:
            dims["motion"] = zoo.get_backbone(spec.motion_backbone).feature_dim
        inputs = [TensorSpec(n, ("batch", seg, dims[n])) for n in spec.inputs]
        outputs = [TensorSpec("scores", ("batch", seg))]
        for n in spec.outputs[1:]:
            outputs.append(TensorSpec(n, ("batch", len(spec.class_names))))
        dyn = None if fixed else {**{n: {1: "segments"} for n in spec.inputs},
                                  "scores": {1: "segments"}}
        torch_to_onnx(module, tuple(torch.randn(2, S, dims[n]) for n in spec.inputs), path,
                      list(spec.inputs), [o.name for o in outputs], dynamic_batch=True,
                      dynamic_axes=dyn)
        from edgevad_export.precision import tensorrt_qdq_head

        # joint's LSTM head: as precision.apply_precision; motion-prior: fp32 only (no weights)
        if bb.kind != "network" or not tensorrt_qdq_head(path):
            return inputs, outputs, None
        rng = np.random.default_rng(0)
        calib = {n: rng.standard_normal((1, S, dims[n]), dtype=np.float32) for n in spec.inputs}
        return inputs, outputs, calib

    def build(self, key: tuple, precision: str):
        """(graph file, metadata) of the engine, or (None, why) where the export writes no
        graph for it (an LSTM head's int8: the artifact gets an fp16 engine instead)."""
        if (key, precision) in self.built:
            return self.built[key, precision]
        stage = self.stage(key)
        if precision == "int8" and "int8_qdq" not in stage.variants:
            result = (None, "no Q/DQ graph (build_artifact_engines builds fp16 instead)")
        else:
            graph, flags, strong = engine_plan(trt, stage, precision)
            profile = stage_profile(stage, max_batch=MAX_BATCH, segments=32)
            meta = build_engine(self.folder / graph,
                                self.folder / f"{Path(graph).stem}.{precision}.engine",
                                stage=stage, precision=precision, profile=profile, flags=flags,
                                strongly_typed=strong, trt=trt, gpu=AHEAD_OF_TIME,
                                optimization_level=0)
            result = (graph, meta)
        self.built[key, precision] = result
        return result


@pytest.fixture(scope="session")
def graphs(tmp_path_factory) -> _Graphs:
    return _Graphs(tmp_path_factory.mktemp("trt-rtx"))


def test_the_plan_is_strongly_typed_for_tensorrt_rtx():
    """TensorRT-RTX, like TensorRT 11, has no precision flags: fp16 and int8 come from the
    graphs themselves (engine_plan picks them)."""
    assert not hasattr(trt.BuilderFlag, "FP16") and not hasattr(trt.BuilderFlag, "INT8")
    stage = StageSpec(name="head", file="h.onnx", role="head", inputs=(), outputs=(),
                      variants={"fp32": "h.onnx", "fp16": "h.fp16.onnx"})
    assert engine_plan(trt, stage, "fp16") == ("h.fp16.onnx", [], True)
    with pytest.raises(EngineBuildError, match="Q/DQ"):
        engine_plan(trt, stage, "int8")


@pytest.mark.parametrize("model", MODELS)
def test_every_graph_of_the_model_builds(graphs, model):
    for key in _stages_of(model):
        stage = graphs.stage(key)
        for precision in PRECISIONS:
            graph, meta = graphs.build(key, precision)
            if graph is None:  # recurrent heads (DAM's, joint's LSTM) and motion-prior (no
                assert precision == "int8" and key[0] == "head", meta  # weights) lack Q/DQ
                assert model.startswith("dam") or model in ("joint", "motion-prior"), model
                continue
            assert meta.precision == precision and meta.strongly_typed
            assert meta.tensorrt_version == trt.__version__
            engine = graphs.folder / meta.engine
            assert engine.stat().st_size > 0
            want = {"fp32": stage.variants["fp32"], "fp16": stage.variants["fp16"],
                    "int8": stage.variants.get("int8_qdq")}[precision]
            assert graph == want
            profile = meta.profile
            for spec in stage.inputs:  # the artifact's batch (and segment) profile
                assert profile[spec.name]["max"][0] == MAX_BATCH
                if "segments" in spec.shape:
                    assert profile[spec.name]["max"][1] == 64
