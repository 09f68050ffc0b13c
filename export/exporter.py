"""``edgevad export``: a zoo model -> one artifact folder (ONNX graphs per stage + manifest).

One table of formats (:data:`FORMATS`) drives validation and help; converters are plain
functions (:func:`edgevad_export.onnx_export.torch_to_onnx`; INT8 and TensorRT plug in later as
``onnx_to_int8`` / ``onnx_to_tensorrt``); :func:`export_model` orchestrates and logs time and size
per stage. The artifact::

    out/manifest.json    edgevad.artifact.manifest.Manifest (schema 1): what to feed, how stages chain,
                         weights provenance, SHA-256 of every file
    out/backbone.onnx    clip [batch, C, T, H, W] -> features [batch, D] (+ feature_map for I3D)
    out/motion.onnx      DMRM: flow [batch, 2, T, h, w] -> features [batch, D]
    out/head.onnx        the head (segment heads: [batch, segments, D]; DAM: clip_map/prev_map in,
                         next_prev_map out so the runtime keeps the state explicitly)
    out/parity.json      PyTorch vs ONNX Runtime on real (or synthetic) clips

Everything is written into a hidden temporary folder beside ``out`` and moved into place only
once complete and verified, so a folder named ``out`` is never a half-written artifact; on any
failure the temporary folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from edgevad import __version__
from edgevad.artifact import protocols, zoo
from edgevad.artifact.compare import tolerance_for
from edgevad.artifact.manifest import (
    FileRecord,
    Link,
    Manifest,
    Protocol,
    StageSpec,
    TensorSpec,
    WeightsRecord,
    load_manifest,
    sha256_file,
)
from edgevad.errors import EdgevadError
from edgevad_calibration import DEFAULT_SAMPLES
from edgevad_export.onnx_export import (
    DEFAULT_OPSET,
    BackboneAdapter,
    DAMAdapter,
    torch_to_onnx,
)
from edgevad_export.parity import ParityError, StageRun, failure_message, run_parity
from edgevad_export.precision import PrecisionOptions, apply_precision

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "PRECISIONS", "STAGES", "ExportError", "ExportFormat", "ParityError",
           "reduce_artifact",
           "export_model", "resolve_format", "state_dict_sha256"]


class ExportError(EdgevadError):
    """The export cannot run as asked (bad arguments, output folder, unsupported format)."""


@dataclass(frozen=True)
class ExportFormat:
    """One row of the format table."""

    name: str
    aliases: tuple[str, ...]
    suffix: str
    precisions: tuple[str, ...]
    needs_gpu: bool
    converter: str | None
    """``module:function`` of the converter; None while the format is not implemented."""
    description: str

    @property
    def available(self) -> bool:
        return self.converter is not None


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", ("onnxruntime", "ort"), ".onnx", ("fp32", "fp16", "int8"), False,
                 "edgevad_export.onnx_export:torch_to_onnx",
                 "ONNX graphs per stage, run by ONNX Runtime (CPU/CUDA); int8: static U8S8 QDQ "
                 "from a calibration set, plus a symmetric Q/DQ graph for TensorRT"),
    ExportFormat("tensorrt", ("trt", "engine"), ".engine", ("fp32", "fp16", "int8"), True,
                 "edgevad_calibration.tensorrt_build:build_artifact_engines",
                 "TensorRT engines (and their metadata) built on this machine's GPU from the "
                 "ONNX graphs; int8 from the Q/DQ graph, with an fp16 engine beside it"),
)}
ENGINE_PRECISIONS = {"fp32": ("fp32",), "fp16": ("fp16",), "int8": ("int8", "fp16")}
"""TensorRT engines built per exported precision (an int8 export also gets an fp16 engine)."""
PRECISIONS = ("fp32", "fp16", "int8")
STAGES = ("backbone", "motion", "head")
"""Stage names; ``random_init`` may name any of them."""


def resolve_format(name: str) -> ExportFormat:
    key = name.strip().lower()
    for fmt in FORMATS.values():
        if key == fmt.name or key in fmt.aliases:
            return fmt
    raise ExportError(f"Unknown export format {name!r}; known: "
                      + ", ".join(f"{f.name} ({', '.join(f.aliases)})" for f in FORMATS.values()))


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict: sorted names, dtypes, shapes and raw bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --- Arguments ------------------------------------------------------------------------------------

def _random_stages(random_init: bool | str | Iterable[str]) -> set[str]:
    if random_init is True:
        return set(STAGES)
    if random_init is False or random_init is None:
        return set()
    names = {random_init} if isinstance(random_init, str) else set(random_init)
    if "all" in names:
        return set(STAGES)
    unknown = names - set(STAGES)
    if unknown:
        raise ExportError(f"random_init names unknown stage(s) {sorted(unknown)}; "
                          f"use True, 'all' or any of {', '.join(STAGES)}")
    return names


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """Check ``out`` and create the temporary folder beside it (returned)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"Output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"Output folder {out} is not empty; choose another folder or pass "
                          "overwrite=True (--overwrite) to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise ExportError(f"Cannot write the artifact to {out}: {exc.strerror or exc} "
                          f"(is {out.parent} writable?)") from exc


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- Models ---------------------------------------------------------------------------------------

RANDOM_INIT_SEED = 0


@contextmanager
def _seeded(random: bool):
    """Random weights, when asked for, are the same on every export (``RANDOM_INIT_SEED``): a
    plumbing artifact is reproducible and its parity check deterministic (a fresh draw once put
    a random R3D-34's standardised features so far out that joint's logits missed fp32 parity)."""
    if not random:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        yield

def _backbone(name: str, weights, random: bool) -> tuple[nn.Module, WeightsRecord]:
    from edgevad_export.models.factory import create_backbone
    from edgevad_export.weights.fetch import user_file

    spec = zoo.get_backbone(name)
    if random and weights is not None:
        raise ExportError(f"Weights were given for backbone {name!r} and random_init names it too")
    with _seeded(random):
        model = create_backbone(name, weights, random_init=random)
    sd_hash = state_dict_sha256(model)
    if random:
        return model, WeightsRecord("random", None, sd_hash)
    wname = weights if weights is not None else spec.weights[0]
    if isinstance(wname, str) and wname in zoo.list_weights():
        wspec = zoo.get_weights(wname)
        added = user_file(wname)  # the user's copy, from the cache: its file identifies it
        if added is not None:
            return model, WeightsRecord("file", added["file"], sd_hash,
                                        file_sha256=added["file_sha256"])
        return model, WeightsRecord("registry", wname, sd_hash,
                                    registry_sha256=wspec.member_sha256 or None)
    path = Path(wname)
    return model, WeightsRecord("file", path.name, sd_hash, file_sha256=sha256_file(path))


def _checkpoint_meta(checkpoint) -> dict | None:
    if checkpoint is None or not Path(checkpoint).is_dir():
        return None
    try:
        from edgevad_export.training.checkpoint import read_meta
    except ImportError as exc:  # pragma: no cover - training side missing
        raise ExportError(f"{checkpoint} is a folder, but checkpoint folders need "
                          f"edgevad_export.training ({exc})") from exc
    return read_meta(checkpoint)


def _head(spec: zoo.HeadSpec, backbone: str, checkpoint, random: bool
          ) -> tuple[nn.Module, WeightsRecord]:
    from edgevad_export.models.factory import create_head

    if random and checkpoint is not None:
        raise ExportError("A head checkpoint was given and random_init names the head too")
    if checkpoint is not None and Path(checkpoint).is_dir():
        from edgevad_export.training.checkpoint import load_checkpoint

        model, meta = load_checkpoint(checkpoint)
        if meta.get("head") != spec.name:
            raise ExportError(f"Checkpoint {checkpoint} holds head {meta.get('head')!r}, "
                              f"not {spec.name!r}")
        weights_file = Path(checkpoint) / meta.get("weights_file", "head.pt")
        return model.eval(), WeightsRecord("checkpoint", Path(checkpoint).name,
                                           state_dict_sha256(model),
                                           file_sha256=sha256_file(weights_file))
    with _seeded(random):
        model = create_head(spec.name, backbone=backbone, checkpoint=checkpoint, random_init=random)
    if checkpoint is None:
        return model, WeightsRecord("random", None, state_dict_sha256(model))
    return model, WeightsRecord("checkpoint", Path(checkpoint).name, state_dict_sha256(model),
                                file_sha256=sha256_file(checkpoint))


def _geometry(head: zoo.HeadSpec, backbone: zoo.BackboneSpec) -> zoo.InputGeometry:
    """The backbone's geometry; a head that wants longer clips (DAM: 64) gets them, one new clip
    every ``clip_len`` frames (each clip is compared with the one before it)."""
    g = backbone.geometry
    if head.clip_len is not None and head.clip_len != g.clip_len:
        g = replace(g, clip_len=head.clip_len, stride=head.clip_len)
    return g


def _clip_shape(g: zoo.InputGeometry) -> tuple[int, ...]:
    return (g.channels, g.clip_len, int(g.size[0]), int(g.size[1]))


# --- The orchestrator -----------------------------------------------------------------------------

def export_model(
    model: str,
    out: str | Path,
    *,
    backbone: str | None = None,
    checkpoint: str | Path | None = None,
    backbone_weights: str | Path | None = None,
    motion_weights: str | Path | None = None,
    random_init: bool | str | Sequence[str] = False,
    precision: str = "fp32",
    formats: Sequence[str] = ("onnx",),
    sample_video: str | Path | None = None,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
    calib: str | Path | Sequence[str | Path] | None = None,
    calib_method: str | None = None,
    calib_samples: int | None = None,
    val: str | Path | None = None,
    max_auc_drop: float = 1.0,
    max_score_diff: float | None = None,
    engine_max_batch: int = 8,
) -> Path:
    """Export zoo head ``model`` with its backbone(s) into the artifact folder ``out``.

    ``backbone``: the appearance backbone (default: the checkpoint's, else the head's default).
    ``checkpoint``: the head's trained weights (a state-dict file or an ``edgevad train`` folder).
    ``backbone_weights`` / ``motion_weights``: a registered weights name or a file (default: the
    backbone's registered default). ``random_init``: ``True`` (or ``"all"``) gives random weights
    to every stage not given weights explicitly; a stage name or list of them (``"head"``,
    ``"backbone"``, ``"motion"``) only to those. Random weights are never a silent fallback: a
    stage without weights and not named is a ``WeightsError``.
    ``sample_video``: clips for the parity check (else deterministic synthetic frames).
    ``overwrite``: replace a non-empty ``out``. Returns ``out``.

    Reduced precision (:mod:`edgevad_export.precision`): ``precision="int8"`` quantizes from
    ``calib`` (calibration sets, feature-bag files or videos; default: the sample video) with
    ``calib_method`` (minmax, entropy, percentile) over ``calib_samples`` clips; ``"fp16"``
    converts. Both run the accuracy gate (per-clip score difference on real clips; frame-AUC
    change on ``val``, failing past ``max_auc_drop`` points; ``max_score_diff`` optional).
    ``formats`` with ``"tensorrt"`` builds engines here (TensorRT and a GPU needed) for batch
    1..``engine_max_batch``.
    """
    t_start = time.perf_counter()
    spec = zoo.get_head(model)
    fmts = [resolve_format(f) for f in formats]
    if not fmts:
        raise ExportError("No export format given")
    if precision not in PRECISIONS:
        raise ExportError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    for fmt in fmts:
        if not fmt.available:
            raise ExportError(f"Export format {fmt.name!r} is not available in edgevad "
                              f"{__version__} yet; export 'onnx'")
        if precision not in fmt.precisions:
            raise ExportError(f"Format {fmt.name!r} supports precision "
                              f"{', '.join(fmt.precisions)} in this version, not {precision!r} "
                              "(INT8 needs calibration, which comes with edgevad_calibration)")
    if any(f.name == "tensorrt" for f in fmts):
        from edgevad.runtime.tensorrt_engine import import_tensorrt

        import_tensorrt()  # before any work: a clear message when TensorRT is missing
    calib_specs = _calib_specs(calib)
    if precision == "int8" and not calib_specs and sample_video is None:
        raise ExportError("--precision int8 needs calibration data: --calib VIDEOS (files, "
                          "folders, list files), a set made by edgevad calibrate, or at least "
                          "--sample-video")
    if val is not None and not Path(val).exists():
        raise ExportError(f"Validation data {val} does not exist")
    random = _random_stages(random_init)
    if sample_video is not None and not Path(sample_video).is_file():
        raise ExportError(f"Sample video {sample_video} does not exist")
    if checkpoint is None and "head" not in random:  # the head's shipped checkpoint, if any
        checkpoint = spec.default_checkpoint_dir()
    meta = _checkpoint_meta(checkpoint)
    if backbone is None and meta is not None:
        backbone = (meta.get("protocol") or {}).get("backbone")
    bb_spec = zoo.get_backbone(backbone or spec.default_backbone)
    if (bb_spec.kind == "network") != (zoo.get_backbone(spec.default_backbone).kind == "network"):
        raise ExportError(f"Backbone {bb_spec.name!r} gives {bb_spec.kind} features, not "
                          f"{zoo.get_backbone(spec.default_backbone).kind} features as head "
                          f"{model!r} takes")
    motion_spec = zoo.get_backbone(spec.motion_backbone) if spec.motion_backbone else None
    if motion_spec is None and motion_weights is not None:
        raise ExportError(f"Head {model!r} has no motion stream")
    is_dam = "clip_map" in spec.inputs
    if is_dam and not bb_spec.feature_map:
        raise ExportError(f"Head {model!r} needs a backbone with a feature map (i3d), "
                          f"not {bb_spec.name!r}")

    if bb_spec.kind != "network":
        if precision != "fp32" or calib_specs or backbone_weights is not None:
            raise ExportError(f"{model!r} has no backbone network and a head of a few dozen "
                              "operations on 7 numbers: it is exported in fp32 only, without "
                              "backbone weights or calibration")
        if meta is not None and (meta.get("protocol") or {}).get("features") is None:
            raise ExportError(f"Checkpoint {checkpoint} records no flow-statistics features: "
                              f"fit {model!r} with edgevad fit-prior")
    out = Path(out)
    tmp = _prepare_out(out, overwrite)
    try:
        if bb_spec.kind != "network":
            head, head_record = _head(spec, bb_spec.name, checkpoint, "head" in random)
            manifest = _export_computed_features(
                tmp, spec=spec, bb_spec=bb_spec, head=head, head_record=head_record, meta=meta,
                opset=opset, sample_video=sample_video)
            manifest = replace(manifest, export={
                **manifest.export, "formats": [f.name for f in fmts],
                "random_init": sorted(random & {"head"}),
                "seconds": round(time.perf_counter() - t_start, 2)})
            manifest.save(tmp)
            if any(f.name == "tensorrt" for f in fmts):
                from edgevad_calibration.tensorrt_build import build_artifact_engines

                build_artifact_engines(tmp, ENGINE_PRECISIONS[precision], max_batch=engine_max_batch)
            load_manifest(tmp, verify=True)
            _move_into_place(tmp, out)
            log.info("exported %s to %s in %.1f s", model, out, time.perf_counter() - t_start)
            return out
        # the head first: it is cheap, and a head without weights is the common mistake
        head, head_record = _head(spec, bb_spec.name, checkpoint, "head" in random)
        backbone_model, bb_record = _backbone(bb_spec.name, backbone_weights, "backbone" in random)
        weights = {"backbone": bb_record, "head": head_record}
        motion_model = None
        if motion_spec is not None:
            motion_model, weights["motion"] = _backbone(motion_spec.name, motion_weights,
                                                        "motion" in random)
        geometry = protocols.export_geometry(meta, spec, bb_spec.name, _geometry(spec, bb_spec),
                                             bb_record)  # refuses a head of another protocol
        _check_calibration_sets(calib_specs, geometry, motion_spec)  # before the slow part
        manifest = _export_stages(
            tmp, spec=spec, bb_spec=bb_spec, motion_spec=motion_spec, head=head,
            backbone=backbone_model, motion=motion_model, geometry=geometry, weights=weights,
            precision="fp32", opset=opset, sample_video=sample_video,
        )
        tensorrt = any(f.name == "tensorrt" for f in fmts)
        if precision != "fp32" or tensorrt:
            manifest = _reduce_precision(tmp, manifest, PrecisionOptions(
                precision=precision, calib=calib_specs, calib_method=calib_method,
                calib_samples=calib_samples or DEFAULT_SAMPLES, val=None if val is None
                else str(val), max_auc_drop=max_auc_drop, max_score_diff=max_score_diff,
                fp16_variants=tensorrt), sample_video)
        manifest = replace(manifest, export={
            **manifest.export,
            "formats": [f.name for f in fmts],
            "random_init": sorted(random & ({"backbone", "head"} | ({"motion"} if motion_spec
                                                                    else set()))),
            "seconds": round(time.perf_counter() - t_start, 2),
        })
        manifest = protocols.stamp_manifest(manifest, meta)  # the head's training protocol
        manifest.save(tmp)
        if tensorrt:
            from edgevad_calibration.tensorrt_build import build_artifact_engines

            build_artifact_engines(tmp, ENGINE_PRECISIONS[precision], max_batch=engine_max_batch)
        load_manifest(tmp, verify=True)  # what the runtime will do; catches our own mistakes
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s to %s in %.1f s", model, out, time.perf_counter() - t_start)
    return out


def reduce_artifact(
    artifact: str | Path,
    out: str | Path,
    *,
    precision: str = "int8",
    calib: str | Path | Sequence[str | Path] | None = None,
    calib_method: str | None = None,
    calib_samples: int | None = None,
    sample_video: str | Path | None = None,
    val: str | Path | None = None,
    max_auc_drop: float = 1.0,
    max_score_diff: float | None = None,
    overwrite: bool = False,
) -> Path:
    """An fp32 artifact folder -> a new ``precision`` artifact at ``out`` (same steps as
    :func:`export_model` after the ONNX export; no torch model is rebuilt)."""
    src = Path(artifact)
    manifest = load_manifest(src, verify=True)
    if any(s.precision != "fp32" or s.variants for s in manifest.stages):
        raise ExportError(f"{src} is not a plain fp32 artifact; reduce the fp32 export")
    if precision not in ("fp16", "int8"):
        raise ExportError(f"precision must be fp16 or int8, got {precision!r}")
    specs = _calib_specs(calib)
    if precision == "int8" and not specs and sample_video is None:
        raise ExportError("--precision int8 needs calibration data (--calib or --sample-video)")
    _check_calibration_sets(specs, manifest.geometry("backbone"),
                            zoo.get_backbone(manifest.backbones["motion"])
                            if "motion" in manifest.backbones else None)
    out = Path(out)
    tmp = _prepare_out(out, overwrite)
    try:
        for p in src.iterdir():
            if p.is_file() and p.name != "manifest.json":
                shutil.copyfile(p, tmp / p.name)
        manifest = _reduce_precision(tmp, manifest, PrecisionOptions(
            precision=precision, calib=specs, calib_method=calib_method,
            calib_samples=calib_samples or DEFAULT_SAMPLES,
            val=None if val is None else str(val), max_auc_drop=max_auc_drop,
            max_score_diff=max_score_diff), sample_video)
        manifest = replace(manifest, export={**manifest.export, "reduced_from": src.name})
        manifest.save(tmp)
        load_manifest(tmp, verify=True)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _calib_specs(calib) -> tuple[str, ...]:
    if calib is None:
        return ()
    if isinstance(calib, (str, Path)):
        calib = [calib]
    specs = tuple(str(c) for c in calib)
    for c in specs:
        if not Path(c).exists():
            raise ExportError(f"Calibration data {c} does not exist")
    return specs


def _check_calibration_sets(specs, geometry, motion_spec) -> None:
    """A given calibration set of the wrong geometry is refused before anything is exported."""
    from edgevad_calibration import is_calibration_file, load_calibration

    for spec in specs:
        if is_calibration_file(spec):
            cset = load_calibration(spec)
            if cset.role == "backbone":
                cset.check_geometry(geometry, "the backbone")
            elif cset.role == "motion":
                if motion_spec is None:
                    raise ExportError(f"calibration set {spec} is for a motion stream; this "
                                      "model has none")
                cset.check_geometry(motion_spec.geometry, "the motion stream")


def _reduce_precision(tmp: Path, manifest: Manifest, opts: PrecisionOptions,
                      sample_video) -> Manifest:
    """INT8/fp16 graphs and the accuracy gate (edgevad_export.precision); re-hash the files and
    add the gate to parity.json and the manifest's parity summary."""
    manifest, gate = apply_precision(tmp, manifest, opts, sample_video=sample_video)
    parity = manifest.parity
    if gate is not None:
        path = tmp / "parity.json"
        report = json.loads(path.read_text(encoding="utf-8"))
        report["reduced_precision"] = gate
        path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        parity = {**(parity or {}), "accuracy_gate": {
            "passed": gate["passed"], "score_diff": gate["score_diff"],
            "auc": gate.get("auc"), "max_auc_drop_points": gate["max_auc_drop_points"]}}
    files = {p.name: FileRecord(sha256_file(p), p.stat().st_size)
             for p in sorted(tmp.iterdir()) if p.is_file() and p.name != "manifest.json"}
    return replace(manifest, files=files, parity=parity)


def _export_computed_features(tmp: Path, *, spec, bb_spec, head, head_record, meta, opset,
                              sample_video) -> Manifest:
    """A model whose head is fed features the runtime computes (``flow-stats``): ``head.onnx``
    alone, linked from the manifest's ``features`` record. Parity: the head in torch and in ONNX
    Runtime on the sample video's real clip features (else seeded positive numbers of the
    statistics' scale), within the fp32 tolerance."""
    import numpy as np
    import onnx

    from edgevad.artifact.compare import compare_outputs
    from edgevad.artifact.manifest import FEATURE_KINDS, FEATURES_STAGE

    features = dict(zoo.FLOW_STATISTICS_FEATURES)
    if meta is not None:
        recorded = (meta.get("protocol") or {}).get("features") or {}
        differ = [k for k in ("kind", "size", "preset", "finest_scale", "statistics", "clip_len",
                              "stride") if recorded.get(k) != features.get(k)]
        if differ:
            raise ExportError(f"the checkpoint's flow statistics differ from {bb_spec.name!r}'s "
                              f"in {', '.join(differ)}: refit it with edgevad fit-prior")
    D, S = bb_spec.feature_dim, spec.segments or 16
    inputs = [TensorSpec(spec.inputs[0], ("batch", "segments", D))]
    outputs = [TensorSpec("scores", ("batch", "segments"))]
    path = tmp / "head.onnx"
    example = torch.rand(2, S, D) * 3
    info = torch_to_onnx(head, (example,), path, [t.name for t in inputs],
                         [t.name for t in outputs], dynamic_batch=True, opset=opset,
                         dynamic_axes={inputs[0].name: {1: "segments"}, "scores": {1: "segments"}})
    if sample_video is not None:
        from edgevad.media.video import VideoReader
        from edgevad.runtime.stream import flow_statistics_clips

        with VideoReader(sample_video) as reader:
            clips, _ = flow_statistics_clips(reader, features)
        x, source = clips[None].astype(np.float32), f"clip features of {Path(sample_video).name}"
    else:
        x, source = (np.random.default_rng(0).random((2, S, D), dtype=np.float32) * 3,
                     "seeded uniform [0, 3) features")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["scores"], {inputs[0].name: x})[0]
    with torch.no_grad():
        want = head(torch.from_numpy(x)).numpy()
    tol = tolerance_for("fp32")
    cmp = compare_outputs({"scores": want}, {"scores": got}, tol.atol, tol.rtol)
    report = {"passed": cmp.passed, "max_abs": float(cmp.max_abs or 0.0),
              "tolerance": {"atol": tol.atol, "rtol": tol.rtol},
              "input": {"source": source, "shape": list(x.shape)},
              "stages": {"head": cmp.to_dict()}}
    (tmp / "parity.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n",
                                     encoding="utf-8")
    if not cmp.passed:
        raise ParityError(f"head.onnx differs from the torch head:\n{cmp.summary()}")
    stage = StageSpec(name="head", file=path.name, role="head", model=spec.name,
                      inputs=tuple(inputs), outputs=tuple(outputs), precision="fp32",
                      exporter=info.exporter, export_note=info.note, opset=opset)
    files = {p.name: FileRecord(sha256_file(p), p.stat().st_size)
             for p in sorted(tmp.iterdir()) if p.is_file()}
    fingerprint = hashlib.sha256(json.dumps(
        {"head": spec.name, "head_weights": head_record.state_dict_sha256},
        sort_keys=True).encode()).hexdigest()
    model_record = {"name": spec.name, "version": fingerprint[:12],
                    "description": spec.description, "paper": spec.paper}
    if meta is not None:  # provenance: the normal videos (name + SHA-256) and the fit
        model_record["normal_videos"] = meta.get("normal_videos", [])
        model_record["fit"] = meta.get("fit", {})
        if meta.get("threshold"):  # how fit-prior chose the alarm threshold
            model_record["threshold"] = meta["threshold"]
    return Manifest(
        model=model_record, head=spec.name, backbones={}, weights={"head": head_record},
        stages=(stage,),
        links=(Link(f"{FEATURES_STAGE}/{FEATURE_KINDS[features['kind']]}",
                    f"head/{inputs[0].name}", via="segments"),),
        protocol=Protocol(mode="segments", clip_len=int(features["clip_len"]),
                          stride=int(features["stride"]), segments=S, segments_fixed=False,
                          window=int(getattr(head, "live_window", 1))),
        files=files, opset=opset, class_names=tuple(spec.class_names),
        score_range=tuple(spec.score_range), default_threshold=_fitted_threshold(meta, spec),
        features=features,
        parity={"file": "parity.json", "passed": report["passed"], "max_abs": report["max_abs"],
                "tolerance": report["tolerance"], "input": source},
        export={"torch": torch.__version__, "onnx": onnx.__version__,
                "stages": {"head": {"seconds": round(info.seconds, 2), "bytes": info.bytes,
                                    "exporter": info.exporter}}},
        edgevad_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _fitted_threshold(meta: dict | None, spec) -> float:
    """The checkpoint's own alarm threshold (``edgevad fit-prior`` calibrates one on held-out
    normal footage) when it lies inside the head's score range, else the zoo's default."""
    import math

    value = (meta or {}).get("default_threshold")
    lo, hi = spec.score_range
    if isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi:
        return float(value)
    if value is not None:
        raise ExportError(f"checkpoint default_threshold {value!r} is not a number in the "
                          f"head's score range [{lo}, {hi}]")
    return float(spec.default_threshold)


def _export_stages(tmp: Path, *, spec, bb_spec, motion_spec, head, backbone, motion, geometry,
                   weights, precision, opset, sample_video) -> Manifest:
    batch = 2
    is_dam = "clip_map" in spec.inputs
    stages: list[StageSpec] = []
    runs: dict[str, StageRun] = {}
    timings: dict[str, dict] = {}

    def export(name: str, role: str, zoo_name: str, module: nn.Module, examples, inputs,
               outputs, dynamic_axes=None, stage_geometry=None, segments_symbolic=False) -> None:
        path = tmp / f"{name}.onnx"
        info = torch_to_onnx(module, examples, path, [t.name for t in inputs],
                             [t.name for t in outputs], dynamic_batch=True, opset=opset,
                             dynamic_axes=dynamic_axes)
        stages.append(StageSpec(
            name=name, file=path.name, role=role, model=zoo_name, inputs=tuple(inputs),
            outputs=tuple(outputs), precision=precision,
            geometry=None if stage_geometry is None else stage_geometry.to_dict(),
            exporter=info.exporter, export_note=info.note, opset=opset,
        ))
        runs[name] = StageRun(name, module, path, [t.name for t in inputs],
                              [t.name for t in outputs], segments_symbolic=segments_symbolic)
        timings[name] = {"seconds": round(info.seconds, 2), "bytes": info.bytes,
                         "exporter": info.exporter}

    # backbone: clip -> features (+ feature_map for a DAM head)
    clip_shape = _clip_shape(geometry)
    bb_outputs = [TensorSpec("features", ("batch", bb_spec.feature_dim))]
    t_steps = None
    if bb_spec.feature_map:
        with torch.no_grad():
            t_steps = int(backbone.forward_feature_map(torch.zeros(1, *clip_shape)).shape[1])
        bb_outputs.append(TensorSpec("feature_map", ("batch", t_steps, bb_spec.feature_dim)))
    export("backbone", "backbone", bb_spec.name,
           BackboneAdapter(backbone, feature_map=bb_spec.feature_map),
           (torch.randn(batch, *clip_shape),), [TensorSpec("clip", ("batch", *clip_shape))],
           bb_outputs, stage_geometry=geometry)

    motion_geometry = None
    if motion_spec is not None:
        motion_geometry = motion_spec.geometry
        m_shape = _clip_shape(motion_geometry)
        export("motion", "motion", motion_spec.name, BackboneAdapter(motion),
               (torch.rand(batch, *m_shape) * 2 - 1,), [TensorSpec("flow", ("batch", *m_shape))],
               [TensorSpec("features", ("batch", motion_spec.feature_dim))],
               stage_geometry=motion_geometry)

    # head
    links: list[Link] = []
    if is_dam:
        D = bb_spec.feature_dim
        map_shape = ("batch", t_steps, D)
        inputs = [TensorSpec(n, map_shape) for n in spec.inputs]
        outputs = [TensorSpec(n, ("batch",)) for n in spec.outputs]
        outputs.append(TensorSpec("next_prev_map", map_shape))
        examples = tuple(torch.randn(batch, t_steps, D) for _ in inputs)
        export("head", "head", spec.name, DAMAdapter(head), examples, inputs, outputs)
        links += [Link("backbone/feature_map", "head/clip_map"),
                  Link("head/next_prev_map", "head/prev_map", via="state")]
        protocol = Protocol(
            mode="online", clip_len=geometry.clip_len, stride=geometry.stride, segments=None,
            state={"input": "prev_map", "output": "next_prev_map", "initial": "clip_map",
                   "note": "feed each clip's next_prev_map as the next clip's prev_map; on a "
                           "stream's first clip (or after a reset) prev_map = clip_map"},
        )
    else:
        fixed = spec.name == "joint"
        S = spec.segments or 32
        seg_axis: int | str = S if fixed else "segments"
        dims = {n: bb_spec.feature_dim for n in spec.inputs}
        if motion_spec is not None:
            dims["motion"] = motion_spec.feature_dim
        inputs = [TensorSpec(n, ("batch", seg_axis, dims[n])) for n in spec.inputs]
        outputs = [TensorSpec("scores", ("batch", seg_axis))]
        for n in spec.outputs[1:]:  # joint: class_logits [batch, classes]
            outputs.append(TensorSpec(n, ("batch", len(spec.class_names))))
        dyn = None if fixed else {
            **{n: {1: "segments"} for n in spec.inputs}, "scores": {1: "segments"}}
        examples = tuple(torch.randn(batch, S, dims[n]) for n in spec.inputs)
        export("head", "head", spec.name, head, examples, inputs, outputs,
               dynamic_axes=dyn, segments_symbolic=not fixed)
        links.append(Link("backbone/features", f"head/{spec.inputs[0]}", via="segments"))
        if motion_spec is not None:
            links.append(Link("motion/features", "head/motion", via="segments"))
        from edgevad_export.extraction.extract import SEGMENT_SCHEME

        protocol = Protocol(mode="segments", clip_len=geometry.clip_len, stride=geometry.stride,
                            segments=S, segments_fixed=fixed, segment_scheme=SEGMENT_SCHEME,
                            window=getattr(head, "live_window", None))

    flow = None
    if motion_spec is not None:
        from edgevad.media.motion import FLOW_BOUND

        flow = {"estimator": "opencv-dis", "preset": "ultrafast", "finest_scale": 1,
                "size": list(motion_geometry.size),
                "bound": float(getattr(motion_geometry, "flow_bound", None) or FLOW_BOUND),
                "encoding": "clip(flow, -bound, bound) / bound, channels (dx, dy); the first "
                            "frame of a stream gets zero flow (edgevad.media.motion.FlowEstimator)"}

    tol = tolerance_for(precision)
    report = run_parity(runs, geometry=geometry, head_inputs=spec.inputs, segments=spec.segments,
                        motion_geometry=motion_geometry,
                        flow_bound=None if flow is None else flow["bound"],
                        sample_video=sample_video, tolerance=tol)
    (tmp / "parity.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n",
                                     encoding="utf-8")
    if not report["passed"]:
        raise ParityError(failure_message(report))

    files = {p.name: FileRecord(sha256_file(p), p.stat().st_size)
             for p in sorted(tmp.iterdir()) if p.is_file()}
    fingerprint = hashlib.sha256(json.dumps(
        {"head": spec.name, **{k: w.state_dict_sha256 for k, w in weights.items()}},
        sort_keys=True).encode()).hexdigest()
    import onnx

    return Manifest(
        model={"name": spec.name, "version": fingerprint[:12], "description": spec.description,
               "paper": spec.paper},
        head=spec.name,
        backbones={"backbone": bb_spec.name,
                   **({"motion": motion_spec.name} if motion_spec else {})},
        weights=weights,
        stages=tuple(stages),
        links=tuple(links),
        protocol=protocol,
        files=files,
        opset=opset,
        class_names=tuple(spec.class_names),
        score_range=tuple(spec.score_range),
        default_threshold=spec.default_threshold,
        flow=flow,
        calibration=None,
        parity={"file": "parity.json", "passed": report["passed"], "max_abs": report["max_abs"],
                "tolerance": report["tolerance"], "input": report["input"]["source"]},
        export={"torch": torch.__version__, "onnx": onnx.__version__, "stages": timings},
        edgevad_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
