"""TensorRT, everything that runs without it: engine metadata, version/GPU checks, the build's
choice of graph, flags and profile (against a recording stand-in for the ``tensorrt`` module that
follows its documented Python API), the manifest records, and clear errors when it is missing.

No engine is built or run here (TensorRT is not installable on these machines).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgevad.artifact.manifest import StageSpec, TensorSpec
from edgevad.errors import MissingDependencyError
from edgevad.runtime.engine_meta import (
    EngineMetadata,
    EngineMismatchError,
    GpuInfo,
    check_compatible,
    read_metadata,
)
from edgevad_calibration.tensorrt_build import (
    EngineBuildError,
    build_engine,
    engine_plan,
    stage_profile,
)

A100 = GpuInfo("NVIDIA A100-SXM4-80GB", (8, 0))
H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
ORIN = GpuInfo("Orin", (8, 7))

BACKBONE = StageSpec(
    name="backbone", file="backbone.int8.onnx", role="backbone", precision="int8",
    inputs=(TensorSpec("clip", ("batch", 3, 16, 224, 224)),),
    outputs=(TensorSpec("features", ("batch", 1024)),),
    variants={"fp32": "backbone.onnx", "fp16": "backbone.fp16.onnx",
              "int8_qdq": "backbone.int8-qdq.onnx"})
HEAD = StageSpec(name="head", file="head.onnx", role="head",
                 inputs=(TensorSpec("features", ("batch", "segments", 1024)),),
                 outputs=(TensorSpec("scores", ("batch", "segments")),))


def _meta(version="10.3.0", gpu=A100) -> EngineMetadata:
    return EngineMetadata(engine="backbone.int8.engine", engine_sha256="0" * 64,
                          stage="backbone", precision="int8", onnx="backbone.int8-qdq.onnx",
                          onnx_sha256="1" * 64, tensorrt_version=version, gpu=gpu,
                          profile=stage_profile(BACKBONE), model_version="abc")


def test_metadata_round_trip(tmp_path):
    meta = _meta()
    path = meta.write(tmp_path)
    assert path.name == "backbone.int8.engine.json"
    assert read_metadata(tmp_path / "backbone.int8.engine") == meta
    d = json.loads(path.read_text())
    assert d["format"] == "edgevad-tensorrt-engine" and d["gpu"]["compute_capability"] == [8, 0]
    with pytest.raises(EngineMismatchError, match="no metadata file"):
        read_metadata(tmp_path / "other.engine")
    path.write_text(json.dumps({**d, "format": "x"}))
    with pytest.raises(EngineMismatchError, match="not edgevad TensorRT engine metadata"):
        read_metadata(tmp_path / "backbone.int8.engine")


def test_compatibility_checks():
    meta = _meta("10.3.0", A100)
    check_compatible(meta, "10.3.0", A100)
    check_compatible(meta, "10.3.0.26", GpuInfo("NVIDIA A100-PCIE-40GB", (8, 0)))  # same sm_80
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0 built it, this machine "
                                                  r"has TensorRT 10\.5\.0") as err:
        check_compatible(meta, "10.5.0", A100, model="mil", artifact="art")
    assert "edgevad export --model mil ... --format tensorrt --precision int8 --out art" \
        in str(err.value)
    with pytest.raises(EngineMismatchError, match=r"built for NVIDIA A100-SXM4-80GB \(sm_80\), "
                                                  r"this GPU is NVIDIA H100 80GB HBM3 \(sm_90\)"):
        check_compatible(meta, "10.3.0", H100)
    with pytest.raises(EngineMismatchError, match="TensorRT 11.0.0 built it.*sm_87"):
        check_compatible(_meta("11.0.0", A100), "10.3.0", ORIN)


def test_profile_covers_batch_and_segments():
    assert stage_profile(BACKBONE, max_batch=4) == {"clip": {
        "min": [1, 3, 16, 224, 224], "opt": [1, 3, 16, 224, 224], "max": [4, 3, 16, 224, 224]}}
    assert stage_profile(HEAD, segments=32)["features"] == {
        "min": [1, 1, 1024], "opt": [1, 32, 1024], "max": [8, 64, 1024]}
    with pytest.raises(EngineBuildError):
        stage_profile(HEAD, max_batch=2, opt_batch=4)


# --- A recording stand-in for the tensorrt module (documented TensorRT 10/11 Python API) ----------

class _Recorder:
    def __init__(self, version: str, weak: bool, parse_ok=True, plan=b"PLAN"):
        self.calls: list = []
        flags = {"FP16": "FP16", "INT8": "INT8"} if weak else {}
        rec = self

        class Logger:
            WARNING = "warning"

            def __init__(self, severity):
                rec.calls.append(("Logger", severity))

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                rec.calls.append(("set_shape", name, list(lo), list(opt), list(hi)))

        class Config:
            def set_flag(self, flag):
                rec.calls.append(("set_flag", flag))

            def add_optimization_profile(self, profile):
                rec.calls.append(("add_optimization_profile",))

            def set_memory_pool_limit(self, pool, size):
                rec.calls.append(("workspace", size))

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                rec.calls.append(("parse", Path(path).name))
                return parse_ok

            def get_error(self, i):
                return "Unsupported operator FancyOp"

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags=0):
                rec.calls.append(("create_network", flags))
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                rec.calls.append(("build",))
                return plan

        self.module = SimpleNamespace(
            __version__=version, Logger=Logger, Builder=Builder, OnnxParser=Parser,
            BuilderFlag=SimpleNamespace(**flags), MemoryPoolType=SimpleNamespace(WORKSPACE="ws"))


def test_plan_per_tensorrt_version():
    trt10 = _Recorder("10.3.0", weak=True).module
    trt11 = _Recorder("11.1.0", weak=False).module
    assert engine_plan(trt10, BACKBONE, "int8") == ("backbone.int8-qdq.onnx", ["INT8", "FP16"],
                                                     False)
    assert engine_plan(trt10, BACKBONE, "fp16") == ("backbone.onnx", ["FP16"], False)
    assert engine_plan(trt11, BACKBONE, "fp16") == ("backbone.fp16.onnx", [], True)
    assert engine_plan(trt11, BACKBONE, "int8") == ("backbone.int8-qdq.onnx", [], True)
    assert engine_plan(trt11, HEAD, "fp32") == ("head.onnx", [], True)
    with pytest.raises(EngineBuildError, match="no a symmetric int8 Q/DQ graph|Q/DQ graph"):
        engine_plan(trt10, HEAD, "int8")
    with pytest.raises(EngineBuildError, match="fp16 graph"):
        engine_plan(trt11, HEAD, "fp16")


def test_build_engine_writes_engine_and_metadata(tmp_path):
    rec = _Recorder("10.3.0", weak=True)
    onnx_path = tmp_path / "backbone.int8-qdq.onnx"
    onnx_path.write_bytes(b"graph")
    graph, flags, strong = engine_plan(rec.module, BACKBONE, "int8")
    meta = build_engine(onnx_path, tmp_path / "backbone.int8.engine", stage=BACKBONE,
                        precision="int8", profile=stage_profile(BACKBONE, max_batch=4),
                        flags=flags, strongly_typed=strong, model_version="v1", trt=rec.module,
                        gpu=ORIN)
    assert (tmp_path / "backbone.int8.engine").read_bytes() == b"PLAN"
    assert read_metadata(tmp_path / "backbone.int8.engine") == meta
    assert meta.tensorrt_version == "10.3.0" and meta.gpu == ORIN and list(meta.flags) == flags
    assert ("create_network", 0) in rec.calls  # explicit batch: the only mode since TensorRT 10
    assert ("set_flag", "INT8") in rec.calls and ("set_flag", "FP16") in rec.calls
    assert ("set_shape", "clip", [1, 3, 16, 224, 224], [1, 3, 16, 224, 224],
            [4, 3, 16, 224, 224]) in rec.calls
    names = [c[0] for c in rec.calls]
    assert names.index("parse") < names.index("set_shape") < names.index("build")


def test_build_errors_are_named(tmp_path):
    onnx_path = tmp_path / "head.onnx"
    onnx_path.write_bytes(b"graph")
    kwargs = dict(stage=HEAD, precision="fp32", profile=stage_profile(HEAD), gpu=ORIN)
    with pytest.raises(EngineBuildError, match="cannot parse head.onnx: Unsupported operator"):
        build_engine(onnx_path, tmp_path / "h.engine",
                     trt=_Recorder("10.3.0", True, parse_ok=False).module, **kwargs)
    with pytest.raises(EngineBuildError, match="failed to build the fp32 engine"):
        build_engine(onnx_path, tmp_path / "h.engine",
                     trt=_Recorder("10.3.0", True, plan=None).module, **kwargs)
    assert not (tmp_path / "h.engine").exists()


def test_missing_tensorrt_is_explained(monkeypatch):
    from edgevad.runtime import tensorrt_engine

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match="pip install --extra-index-url "
                                                     "https://pypi.nvidia.com tensorrt"):
        tensorrt_engine.import_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(MissingDependencyError, match="too old"):
        tensorrt_engine.import_tensorrt()
    monkeypatch.setitem(sys.modules, "cuda", None)
    with pytest.raises(MissingDependencyError, match="cuda-python"):
        tensorrt_engine.cuda_runtime()
