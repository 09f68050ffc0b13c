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
(the I3D backbone serves five models), the big pixel-stage graphs in two worker processes while
this one exports the heads and builds (``trt_rtx_graphs``). Builds use the builder's
optimisation level 0: what is proven is that the graph parses and builds, not the fastest
tactic. Nothing here runs an engine: that needs a GPU.
Skipped with a reason only where the wheel is absent.
"""

from __future__ import annotations

import pytest

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed: pip install "
                          "'edgevad[tensorrt-rtx]' (the test extra installs it)")
pytest.importorskip("torch")
pytest.importorskip("onnx")

from trt_rtx_graphs import MODELS, PRECISIONS, Graphs, pixel_keys, stages_of  # noqa: E402

from edgevad.artifact.manifest import StageSpec  # noqa: E402
from edgevad_calibration.tensorrt_build import (  # noqa: E402
    MAX_BATCH,
    EngineBuildError,
    engine_plan,
)


@pytest.fixture(scope="session")
def graphs(tmp_path_factory):
    g = Graphs(tmp_path_factory.mktemp("trt-rtx"), trt)
    pool = g.prefetch(pixel_keys())
    yield g
    pool.shutdown(wait=True, cancel_futures=True)


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
    for key in stages_of(model):
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
