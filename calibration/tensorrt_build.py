"""Serialized TensorRT engines from an artifact's ONNX graphs, with their metadata beside them.

Runs on the target device (TensorRT engines are tied to the TensorRT release and the GPU that
build them), torch-free: ``tensorrt`` 10/11 and ``cuda-python`` (for the GPU's name and compute
capability). Written against TensorRT's documented Python API: ``trt.Builder`` ->
``create_network()`` (explicit batch is the only mode since 10) -> ``trt.OnnxParser`` ->
``create_builder_config()`` with one optimisation profile over the symbolic axes (batch 1..max,
segments 1..max) -> ``build_serialized_network``.

Which graph and which flags, per precision:

====== ======================================= ===============================================
        TensorRT 10 (weakly typed, flags)        TensorRT 11 (strongly typed: flags removed)
====== ======================================= ===============================================
fp32    fp32 graph                               fp32 graph
fp16    fp32 graph + ``BuilderFlag.FP16``        the fp16 graph (``variants["fp16"]``)
int8    Q/DQ graph + ``INT8`` (+ ``FP16``)       the Q/DQ graph (explicit quantization)
====== ======================================= ===============================================

Implicit INT8 calibrators are not used: deprecated in TensorRT 10.1, removed in 11; the int8
engines come from the symmetric Q/DQ graph made from the same calibration set as ONNX Runtime's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from edgevad import __version__
from edgevad.artifact.manifest import FileRecord, Manifest, StageSpec, load_manifest
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file
from edgevad.runtime.engine_meta import EngineMetadata, GpuInfo, metadata_path

log = logging.getLogger(__name__)

__all__ = ["ENGINE_PRECISIONS", "EngineBuildError", "build_artifact_engines", "build_engine",
           "engine_plan", "stage_profile"]

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
MAX_BATCH = 8


class EngineBuildError(EdgevadError):
    """TensorRT could not parse a graph or build an engine (the parser's errors are quoted)."""


def _major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def engine_plan(trt, stage: StageSpec, precision: str) -> tuple[str, list[str], bool]:
    """(graph file, builder flags, strongly typed) for ``stage`` at ``precision`` (module table)."""
    if precision not in ENGINE_PRECISIONS:
        raise EngineBuildError(f"unknown engine precision {precision!r}; choose one of "
                               f"{', '.join(ENGINE_PRECISIONS)}")
    fp32 = stage.variants.get("fp32") or (stage.file if stage.precision == "fp32" else None)
    weak = hasattr(trt.BuilderFlag, "FP16") and _major(trt) < 11
    need = {"fp32": fp32,
            "fp16": fp32 if weak else stage.variants.get("fp16"),
            "int8": stage.variants.get("int8_qdq")}[precision]
    if need is None:
        what = {"fp32": "an fp32 graph", "fp16": "an fp16 graph (variants['fp16'])",
                "int8": "a symmetric int8 Q/DQ graph (variants['int8_qdq']); export with "
                        "--precision int8 --calib DATA"}[precision]
        raise EngineBuildError(f"stage {stage.name!r} has no {what} to build a {precision} "
                               "engine from")
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision] if weak else []
    return need, flags, not weak


def stage_profile(stage: StageSpec, *, max_batch: int = MAX_BATCH, opt_batch: int = 1,
                  segments: int | None = None) -> dict[str, dict[str, list[int]]]:
    """min/opt/max shapes per input: ``batch`` 1..``max_batch`` (opt ``opt_batch``), a
    ``segments`` axis 1..max(64, 2 x segments) (opt ``segments``), fixed axes as they are."""
    if not 1 <= opt_batch <= max_batch:
        raise EngineBuildError(f"need 1 <= opt_batch <= max_batch, got {opt_batch}, {max_batch}")
    seg = segments or 32
    ranges = {"batch": (1, opt_batch, max_batch), "segments": (1, seg, max(64, 2 * seg))}
    profile = {}
    for spec in stage.inputs:
        shapes = {"min": [], "opt": [], "max": []}
        for d in spec.shape:
            lo, opt, hi = (d, d, d) if isinstance(d, int) else ranges.get(d, (1, 1, 1))
            shapes["min"].append(lo)
            shapes["opt"].append(opt)
            shapes["max"].append(hi)
        profile[spec.name] = shapes
    return profile


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    stage: StageSpec,
    precision: str,
    profile: dict[str, dict[str, list[int]]],
    flags: Sequence[str] = (),
    strongly_typed: bool = False,
    model_version: str = "",
    trt=None,
    gpu: GpuInfo | None = None,
    workspace_bytes: int | None = None,
    optimization_level: int | None = None,
) -> EngineMetadata:
    """Parse ``onnx_path``, build one engine with ``profile`` and ``flags``, write it and its
    metadata JSON; return the metadata. ``trt`` / ``gpu``: the tensorrt module and the GPU
    (default: import tensorrt, ask cuda-python); any module with TensorRT's builder API works,
    e.g. ``tensorrt_rtx``, whose builder runs without a GPU. ``optimization_level``: the
    builder's (0-5; TensorRT's default 3 when None): lower builds faster, runs slower."""
    from edgevad.runtime.tensorrt_engine import gpu_info, import_tensorrt

    trt = trt or import_tensorrt()
    gpu = gpu or gpu_info()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: "
                               + "; ".join(errors or ["no error reported"]))
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if optimization_level is not None:
        config.builder_optimization_level = int(optimization_level)
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    opt = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(opt)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build the {precision} "
                               f"engine of {onnx_path.name} (see its log above)")
    engine_path.write_bytes(bytes(plan))
    meta = EngineMetadata(
        engine=engine_path.name, engine_sha256=sha256_file(engine_path), stage=stage.name,
        precision=precision, onnx=onnx_path.name, onnx_sha256=sha256_file(onnx_path),
        tensorrt_version=str(trt.__version__), gpu=gpu, profile=profile,
        model_version=model_version, strongly_typed=strongly_typed, flags=tuple(flags),
        build_seconds=round(time.perf_counter() - t0, 2),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        edgevad_version=__version__,
    )
    meta.write(engine_path.parent)
    log.info("built %s (%s) in %.1f s", engine_path.name, meta.describe(), meta.build_seconds)
    return meta


def build_artifact_engines(
    artifact_dir: str | Path,
    precisions: Sequence[str],
    *,
    max_batch: int = MAX_BATCH,
    opt_batch: int = 1,
    trt=None,
    gpu: GpuInfo | None = None,
    verify: bool = True,
) -> Manifest:
    """Build ``precisions`` engines for every stage of an artifact folder, list them (and their
    metadata) in its manifest, and rewrite ``manifest.json``. Replaces engines already there."""
    from dataclasses import replace

    from edgevad.runtime.tensorrt_engine import gpu_info, import_tensorrt

    folder = Path(artifact_dir)
    manifest = load_manifest(folder, verify=verify)
    trt = trt or import_tensorrt()
    gpu = gpu or gpu_info()
    files = dict(manifest.files)
    stages = []
    for stage in manifest.stages:
        for old in stage.engines:
            for f in (old["file"], old.get("metadata")):
                files.pop(f, None)
                if f:
                    (folder / f).unlink(missing_ok=True)
        records = []
        wanted = []
        for precision in precisions:
            if precision == "int8" and "int8_qdq" not in stage.variants:
                precision = "fp16"  # a stage kept out of int8 (an LSTM head): its fp16 engine
                log.info("stage %s has no Q/DQ graph: fp16 engine instead of int8", stage.name)
            if precision not in wanted:
                wanted.append(precision)
        for precision in wanted:
            graph, flags, strong = engine_plan(trt, stage, precision)
            engine = folder / f"{stage.name}.{precision}.engine"
            meta = build_engine(folder / graph, engine, stage=stage, precision=precision,
                                profile=stage_profile(stage, max_batch=max_batch,
                                                      opt_batch=opt_batch,
                                                      segments=manifest.protocol.segments),
                                flags=flags, strongly_typed=strong,
                                model_version=str(manifest.model.get("version", "")),
                                trt=trt, gpu=gpu)
            mpath = metadata_path(engine)
            for p in (engine, mpath):
                files[p.name] = FileRecord(sha256_file(p), p.stat().st_size)
            records.append({"file": engine.name, "metadata": mpath.name, "precision": precision,
                            "tensorrt_version": meta.tensorrt_version,
                            "gpu": meta.gpu.describe(), "graph": graph})
        stages.append(replace(stage, engines=tuple(records)))
    manifest = replace(manifest, stages=tuple(stages), files=files, export={
        **manifest.export, "tensorrt": {"version": str(trt.__version__), "gpu": gpu.to_dict(),
                                        "precisions": list(precisions), "max_batch": max_batch}})
    manifest.save(folder)
    return manifest
