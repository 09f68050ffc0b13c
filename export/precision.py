"""Reduced precision for an exported artifact: calibration, INT8 and fp16 graphs, the gate.

Runs after the fp32 graphs are exported and checked against PyTorch; from there everything is
ONNX and ONNX Runtime (no torch), on the artifact's temporary folder:

1. calibration sets per stage (:func:`resolve_calibration`): given sets (checked against the
   stage's geometry and inputs), or built from videos / feature bags, or, for a segment head,
   from the fp32 backbone's features of the backbone set's clips;
2. per pixel stage: ONNX Runtime's U8S8 QDQ graph (the stage's file, first conv in fp32), the
   symmetric int8 Q/DQ graph for TensorRT (``variants["int8_qdq"]``), ranges computed once, and,
   when OpenVINO and NNCF are installed, OpenVINO's own int8 graph (``variants["int8_openvino"]``,
   NNCF on the same calibration set), which ``--backend openvino`` runs for an int8 stage;
3. the head: fp32, dynamic int8 or static int8, whichever runs fastest here while its scores stay
   within :data:`HEAD_SCORE_TOLERANCE` of fp32 (measured, recorded in the manifest);
4. fp16 graphs (fp16 weights and arithmetic, float32 inputs/outputs) for TensorRT 11 builds and
   for ``--precision fp16``;
5. the accuracy gate (:mod:`edgevad_export.accuracy_gate`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgevad.artifact.manifest import Manifest, StageSpec
from edgevad.errors import EdgevadError
from edgevad_calibration import (
    DEFAULT_SAMPLES,
    CalibrationError,
    CalibrationSet,
    build_from_bags,
    build_from_videos,
    head_set_from_features,
    is_calibration_file,
    load_calibration,
)
from edgevad_calibration.quantize import (
    Int8Config,
    nncf_available,
    quantize_dynamic_int8,
    quantize_openvino_int8,
    quantize_ort_int8,
    quantize_trt_qdq,
)

log = logging.getLogger(__name__)

__all__ = ["HEAD_SCORE_TOLERANCE", "PrecisionOptions", "make_fp16", "resolve_calibration",
           "run_graph", "apply_precision", "tensorrt_qdq_head"]

HEAD_SCORE_TOLERANCE = 0.01
"""A quantized head is a candidate only if its scores stay within this of fp32's on the head's
calibration inputs."""


@dataclass(frozen=True)
class PrecisionOptions:
    """What ``edgevad export --precision ... --calib ... --val ...`` asked for."""

    precision: str = "fp32"
    calib: tuple[str, ...] = ()
    """Calibration sets (.npz from ``edgevad calibrate``), feature-bag files (heads) or videos,
    folders and list files to build sets from."""
    calib_method: str | None = None
    calib_samples: int = DEFAULT_SAMPLES
    val: str | None = None
    """Labelled data for the AUC gate: a feature-bag file with frame annotations, or a folder of
    videos with a ``*labels*.json`` beside or inside it (UCSD Ped2 layout)."""
    max_auc_drop: float = 1.0
    """Fail when the frame AUC falls by more than this many points."""
    max_score_diff: float | None = None
    """Fail when a per-clip score differs from fp32's by more than this (None: report only)."""
    fp16_variants: bool = False
    """Write fp16 graphs too (TensorRT 11 builds fp16 engines from them)."""
    exclude_first_conv: bool = True


class PrecisionError(EdgevadError):
    """Reduced precision cannot be produced as asked (no calibration data, wrong set)."""


# --- Running graphs -------------------------------------------------------------------------------

class _Sessions:
    def __init__(self, folder: Path):
        self.folder = folder
        self._cache: dict[str, object] = {}

    def get(self, file: str):
        import onnxruntime as ort

        if file not in self._cache:
            self._cache[file] = ort.InferenceSession(str(self.folder / file),
                                                     providers=["CPUExecutionProvider"])
        return self._cache[file]


class _OvSession:
    """An OpenVINO-compiled graph behind the two ONNX Runtime session methods the gate uses."""

    def __init__(self, path: Path, precision: str):
        from edgevad.runtime.openvino_engine import OpenVinoOptions, _core

        opts = OpenVinoOptions(precision=precision, cache_dir="off")
        self.compiled = _core().compile_model(str(path), "CPU", {
            "INFERENCE_PRECISION_HINT": opts.resolved_precision()})
        self.request = self.compiled.create_infer_request()
        self.ran = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        import onnx  # the graph's own output names (an OpenVINO tensor may carry several)

        self._names = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]

    def get_outputs(self):
        from types import SimpleNamespace

        return [SimpleNamespace(name=n) for n in self._names]

    def run(self, names, feeds):
        result = self.request.infer(feeds)
        return [np.array(result[self.compiled.output(n)], copy=True) for n in names]


class _OvSessions(_Sessions):
    """The gate's graphs compiled by OpenVINO on CPU at ``precision`` (``bf16``, ``f32``): what
    ``--backend openvino`` runs, measured against the same fp32 reference."""

    def __init__(self, folder: Path, precision: str):
        super().__init__(folder)
        self.precision = precision

    def get(self, file: str):
        if file not in self._cache:
            self._cache[file] = _OvSession(self.folder / file, self.precision)
        return self._cache[file]

    def ran(self) -> list[str]:
        """The inference precisions OpenVINO compiled (f32 on a CPU without bf16)."""
        from edgevad.runtime.openvino_engine import _type_name

        return sorted({_type_name(s.ran) for s in self._cache.values()})


def run_graph(sessions: _Sessions, file: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = sessions.get(file)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


# --- Calibration ----------------------------------------------------------------------------------

def resolve_calibration(folder: Path, manifest: Manifest, opts: PrecisionOptions,
                        sample_video: str | Path | None, sessions: _Sessions
                        ) -> dict[str, CalibrationSet]:
    """Calibration sets per stage name (module doc, step 1)."""
    sets: dict[str, CalibrationSet] = {}
    videos: list[str] = []
    head = manifest.stage("head")
    segments = manifest.protocol.segments or 32
    for spec in opts.calib:
        path = Path(spec)
        if is_calibration_file(path):
            cset = load_calibration(path)
            stage = cset.role
            if not manifest.has_stage(stage):
                raise CalibrationError(f"calibration set {path.name} is for a {stage} stage; "
                                       f"{manifest.head} has stages "
                                       f"{[s.name for s in manifest.stages]}")
            sets[stage] = replace(cset, sources=cset.sources,
                                  sampler={**cset.sampler, "file": path.name})
        elif path.suffix == ".npz":
            sets["head"] = build_from_bags(path, segments=segments,
                                           input_name=head.input_names[0],
                                           method=opts.calib_method or "minmax")
        else:
            videos.append(spec)
    if not videos and "backbone" not in sets and sample_video is not None:
        log.warning("no --calib data: calibrating on the sample video (the gate then reports on "
                    "the same clips)")
        videos = [str(sample_video)]
    for stage in ("backbone", "motion"):
        if manifest.has_stage(stage) and stage not in sets:
            if not videos:
                raise PrecisionError(
                    f"--precision {opts.precision} needs calibration data for the {stage} "
                    "stage: --calib VIDEOS (files, folders, list files) or a set made by "
                    "edgevad calibrate")
            sets[stage] = build_from_videos(videos, manifest.geometry(stage),
                                            samples=opts.calib_samples,
                                            input_name=manifest.stage(stage).input_names[0],
                                            method=opts.calib_method or "minmax")
    for stage in ("backbone", "motion"):
        if stage in sets:
            spec = manifest.stage(stage)
            sets[stage].check_geometry(manifest.geometry(stage), f"stage {stage} "
                                       f"({spec.model})")
            sets[stage].check_inputs({t.name: t.shape for t in spec.inputs},
                                     f"stage {stage} ({spec.model})")
    if manifest.protocol.mode == "segments" and "head" not in sets:
        sets["head"] = _head_set_from_backbone(manifest, sets, sessions, segments, opts)
    if "head" in sets:
        sets["head"].check_inputs({t.name: t.shape for t in head.inputs}, "the head")
    if opts.calib_method:
        for cset in sets.values():
            cset.method = opts.calib_method
    return sets


def _head_set_from_backbone(manifest: Manifest, sets: dict[str, CalibrationSet],
                            sessions: _Sessions, segments: int, opts: PrecisionOptions
                            ) -> CalibrationSet:
    streams = {}
    head = manifest.stage("head")
    for link in manifest.links:
        src_stage, _, src_out = link.source.partition("/")
        dst_stage, _, dst_in = link.target.partition("/")
        if dst_stage != "head" or src_stage not in sets:
            continue
        cset = sets[src_stage]
        stage = manifest.stage(src_stage)
        feats = [run_graph(sessions, stage.file, cset.sample(i))[src_out][0]
                 for i in range(cset.n_samples)]
        streams[dst_in] = np.stack(feats)
    missing = set(head.input_names) - set(streams)
    if missing:
        raise PrecisionError(f"cannot derive head calibration inputs {sorted(missing)}; give a "
                             "feature-bag file with --calib")
    ref = sets["backbone"]
    index = ref.sampler.get("video_index") or [0] * ref.n_samples
    return head_set_from_features(streams, index, segments=segments,
                                  sources=[{"from": "backbone calibration clips", "data_sha256":
                                            ref.data_sha256}],
                                  method=opts.calib_method or ref.method)


# --- Graph variants -------------------------------------------------------------------------------

def make_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights and arithmetic, float32 inputs and outputs (ONNX Runtime's converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def _median_ms(sessions: _Sessions, file: str, feeds: dict, repeats: int = 20) -> float:
    run_graph(sessions, file, feeds)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_graph(sessions, file, feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def _has_ops(path: Path, ops: set[str]) -> bool:
    import onnx

    return any(n.op_type in ops for n in onnx.load(str(path)).graph.node)


RECURRENT_OPS = {"LSTM", "GRU", "RNN"}
RECURRENT_QDQ_NOTE = ("no int8 Q/DQ graph for TensorRT: the head is recurrent, and TensorRT's "
                      "Myelin compiler rejects the Q/DQ graph of joint's LSTM head (TensorRT-RTX "
                      "1.7.1: a reshape check fails); its fp16 engine is built where int8 is asked")


def tensorrt_qdq_head(path: Path) -> bool:
    """Whether a head gets a symmetric int8 Q/DQ graph for TensorRT: not when it is recurrent
    (:data:`RECURRENT_QDQ_NOTE`; DAM's LSTM head has no head calibration set either). Such a
    head is small next to its backbone, so fp16 costs nothing that matters."""
    return not _has_ops(Path(path), RECURRENT_OPS)


def _choose_head(folder: Path, stage: StageSpec, cset: CalibrationSet | None,
                 sessions: _Sessions, feeds: dict[str, np.ndarray], config: Int8Config
                 ) -> tuple[str, dict]:
    """(file, record) of the head graph that runs fastest within HEAD_SCORE_TOLERANCE."""
    fp32 = stage.file
    candidates = {"fp32": fp32}
    if _has_ops(folder / fp32, {"LSTM", "MatMul", "Gemm", "GRU"}):
        dyn = f"{stage.name}.int8-dynamic.onnx"
        quantize_dynamic_int8(folder / fp32, folder / dyn)
        candidates["int8-dynamic"] = dyn
    if cset is not None:
        static = f"{stage.name}.int8.onnx"
        quantize_ort_int8(folder / fp32, folder / static, cset.reader(),
                          replace(config, exclude_first_conv=False))
        candidates["int8-static"] = static
    out0 = stage.output_names[0]
    ref = run_graph(sessions, fp32, feeds)[out0]
    measured = {}
    for kind, file in candidates.items():
        diff = float(np.max(np.abs(run_graph(sessions, file, feeds)[out0] - ref)))
        measured[kind] = {"file": file, "median_ms": round(_median_ms(sessions, file, feeds), 4),
                          "max_score_diff": diff}
    ok = {k: m for k, m in measured.items() if m["max_score_diff"] <= HEAD_SCORE_TOLERANCE}
    best = min(ok, key=lambda k: ok[k]["median_ms"])
    if best != "fp32" and ok[best]["median_ms"] > 0.95 * measured["fp32"]["median_ms"]:
        best = "fp32"  # not measurably faster: keep the exact graph
    for kind, m in measured.items():
        if kind != best and m["file"] != fp32:
            (folder / m["file"]).unlink(missing_ok=True)
    record = {"choice": best, "measured": measured, "tolerance": HEAD_SCORE_TOLERANCE,
              "rule": "fastest candidate within the score tolerance; fp32 unless >5% faster",
              "feeds": {k: list(v.shape) for k, v in feeds.items()}}
    log.info("head precision: %s (%s)", best, {k: m["median_ms"] for k, m in measured.items()})
    return measured[best]["file"], record


def _head_feeds(manifest: Manifest, sets: dict[str, CalibrationSet], sessions: _Sessions
                ) -> dict[str, np.ndarray]:
    head = manifest.stage("head")
    if "head" in sets:
        return sets["head"].sample(0)
    # DAM: a clip's map and the previous one's, from the backbone set (fp32 graph)
    bb = manifest.stage("backbone")
    cset = sets["backbone"]
    maps = [run_graph(sessions, bb.file, cset.sample(i))["feature_map"]
            for i in range(min(2, cset.n_samples))]
    prev = maps[0]
    return {head.input_names[0]: maps[-1], head.input_names[1]: prev}


def _openvino_int8_wanted() -> bool:
    """OpenVINO's own int8 graph is made when OpenVINO and NNCF are both installed (the train
    extra has NNCF; without it ``--backend openvino`` runs ONNX Runtime's U8S8 graph)."""
    from edgevad.runtime.openvino_engine import openvino_available

    if openvino_available() and nncf_available():
        return True
    log.info("no OpenVINO int8 graph: %s is not installed (pip install openvino nncf)",
             "openvino" if not openvino_available() else "nncf")
    return False


# --- The step -------------------------------------------------------------------------------------

def apply_precision(folder: Path, manifest: Manifest, opts: PrecisionOptions, *,
                    sample_video: str | Path | None = None) -> tuple[Manifest, dict | None]:
    """Quantize / convert the stages in ``folder`` as ``opts`` asks; return the updated manifest
    (files not yet re-hashed) and the accuracy-gate report (None for plain fp32)."""
    from edgevad_export.accuracy_gate import run_gate

    sessions = _Sessions(folder)
    stages = {s.name: s for s in manifest.stages}
    calibration = None
    fp16 = opts.precision == "fp16" or opts.fp16_variants or opts.precision == "int8"
    if fp16:
        for name, s in list(stages.items()):
            f16 = f"{name}.fp16.onnx"
            make_fp16(folder / s.file, folder / f16)
            stages[name] = replace(s, variants={**s.variants, "fp16": f16})
    if opts.precision == "int8":
        sets = resolve_calibration(folder, manifest, opts, sample_video, sessions)
        method = next(iter(sets.values())).method
        config = Int8Config(method=method, exclude_first_conv=opts.exclude_first_conv)
        calibration = {"method": method, "sets": {}, "clips": sets["backbone"].n_samples}
        with tempfile.TemporaryDirectory(prefix="edgevad-calib-") as work:
            for name in ("backbone", "motion"):
                if name not in stages:
                    continue
                s, cset = stages[name], sets[name]
                calibration["sets"][name] = cset.record()
                cache = Path(work) / f"{name}.ranges.json"
                q = quantize_ort_int8(folder / s.file, folder / f"{name}.int8.onnx",
                                      cset.reader(), config, cache=cache)
                t = quantize_trt_qdq(folder / s.file, folder / f"{name}.int8-qdq.onnx",
                                     cset.reader(), replace(config, exclude_nodes=()),
                                     cache=cache)
                variants = {**stages[name].variants, "fp32": s.file, "int8_qdq": t.path}
                records = {"onnxruntime": q.to_dict(), "tensorrt": t.to_dict()}
                if _openvino_int8_wanted():
                    o = quantize_openvino_int8(folder / s.file,
                                               folder / f"{name}.int8-openvino.onnx",
                                               cset.reader(), replace(config, exclude_nodes=()))
                    variants["int8_openvino"] = o.path
                    records["openvino"] = o.to_dict()
                stages[name] = replace(s, file=q.path, precision="int8", variants=variants,
                                       quantization={**records, "calibration_data_sha256":
                                                     cset.data_sha256})
        head = stages["head"]
        hset = sets.get("head")
        if hset is not None:
            calibration["sets"]["head"] = hset.record()
        file, record = _choose_head(folder, head, hset, sessions,
                                    _head_feeds(manifest, sets, sessions), config)
        variants = {**head.variants, "fp32": head.file}
        if hset is not None and tensorrt_qdq_head(folder / head.file):
            t = quantize_trt_qdq(folder / head.file, folder / "head.int8-qdq.onnx", hset.reader(),
                                 config)
            variants["int8_qdq"] = t.path
            record["tensorrt"] = t.to_dict()
        elif hset is not None:
            record["tensorrt"] = {"skipped": RECURRENT_QDQ_NOTE}
        precision = "fp32" if record["choice"] == "fp32" else "int8"
        stages["head"] = replace(head, file=file, precision=precision, variants=variants,
                                 quantization=record)
    elif opts.precision == "fp16":
        for name, s in list(stages.items()):
            stages[name] = replace(s, file=s.variants["fp16"], precision="fp16",
                                   variants={**s.variants, "fp32": s.file})
    new = replace(manifest, stages=tuple(stages[s.name] for s in manifest.stages),
                  calibration=calibration)
    gate = None
    if opts.precision != "fp32":
        gate = run_gate(folder, new, opts, sample_video=sample_video,
                        calib_clips=None if calibration is None else sets["backbone"])
    return new, gate
