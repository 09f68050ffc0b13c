"""Engines: one runner per stage graph, behind one small interface.

A runner (Polygraphy's word) is built from an artifact stage and answers ``run(feeds) -> outputs``
with numpy arrays keyed by the manifest's tensor names. The Detector never touches ONNX Runtime or
TensorRT directly, so a backend is one class here and nothing else changes. Backends import their
library lazily: ``import edgevad`` works with neither installed.

- :class:`OnnxRuntimeEngine`: CPU or CUDA through ONNX Runtime providers.
- ``edgevad.runtime.tensorrt_engine.TensorRTEngine``: serialized engines (TensorRT 10/11), refused
  when built by another TensorRT version or for another GPU.
- ``edgevad.runtime.openvino_engine.OpenVinoEngine``: the same ONNX graphs compiled by OpenVINO
  (Intel CPUs, iGPUs, NPUs), precision explicit and recorded.

``auto`` (:func:`open_engines`) prefers TensorRT engines (when TensorRT imports and the artifact
carries engines that this GPU can run), then OpenVINO when it is installed, then ONNX Runtime,
and says which it chose and why.

GPU execution providers that cannot run here (``onnxruntime-gpu`` on a machine without a usable
GPU lists CUDA and TensorRT but silently creates a CPU session) are detected by comparing the
providers asked for with ``session.get_providers()``: the session falls back to CPU with one
warning instead of pretending to run on the GPU.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgevad.artifact.manifest import Manifest, StageSpec
from edgevad.errors import MissingDependencyError
from edgevad.runtime.stage_runner import Engine, EngineError, StageRunner, check_feeds

__all__ = ["BACKENDS", "BackendChoice", "Engine", "EngineError", "OnnxRuntimeEngine", "StageRunner",
           "check_feeds", "open_engine", "open_engines", "resolve_backend"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino")
_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "engine": "tensorrt",
            "ov": "openvino"}


class OnnxRuntimeEngine(StageRunner):
    """A stage graph in an ONNX Runtime session (one session per stage, shared by all streams)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, stage: StageSpec, providers: Sequence | None = None,
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime dependency
            raise MissingDependencyError("the onnxruntime backend needs onnxruntime: "
                                         "pip install onnxruntime") from exc
        self.stage = stage
        requested = _provider_names(providers) or ["CPUExecutionProvider"]
        providers = _usable_providers(ort, list(providers) if providers else requested)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        # Between clips the Detector pre-processes frames on the same cores; ORT's workers
        # spin-waiting after each run starve it (R3D-18 int8 on 2 cores, frames/s end to end:
        # 104 spinning, 146 not; engines alone are unaffected).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            try:
                with warnings.catch_warnings():  # ORT's "not in available provider names":
                    warnings.simplefilter("ignore")  # _warn_provider_fallback says it once
                    self.session = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as exc:  # noqa: BLE001 - a GPU provider that fails to start
                if _provider_names(providers) == ["CPUExecutionProvider"]:
                    raise
                log.debug("session with %s failed (%s); retrying on CPU", providers, exc)
                self.session = ort.InferenceSession(str(path), opts,
                                                    providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise EngineError(f"cannot open {Path(path).name} for stage {stage.name!r} with "
                              f"ONNX Runtime: {exc}") from exc
        _warn_provider_fallback(requested, self.session.get_providers())
        self.providers = list(self.session.get_providers())
        self.device = self.providers[0]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._checked_feeds(feeds)
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))


_GPU_PROVIDERS = ("TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider",
                  "CUDAExecutionProvider", "ROCMExecutionProvider", "MIGraphXExecutionProvider",
                  "DmlExecutionProvider", "OpenVINOExecutionProvider", "CoreMLExecutionProvider")
_warned: set[tuple] = set()


def _provider_names(providers: Sequence | None) -> list[str]:
    return [p[0] if isinstance(p, (tuple, list)) else str(p) for p in (providers or [])]


def _usable_providers(ort, providers: list) -> list:
    """Drop providers this onnxruntime build lacks (the session's fallback warning names them),
    refuse names ONNX Runtime does not know (a typo), and keep CPU last so a fallback is always
    possible."""
    available = set(ort.get_available_providers())
    known = set(ort.get_all_providers())
    unknown = [n for n in _provider_names(providers) if n not in known]
    if unknown:
        raise EngineError(f"ONNX Runtime has no execution provider named {unknown} (this build "
                          f"offers: {sorted(available)})")
    kept = [p for p in providers if _provider_names([p])[0] in available]
    if "CPUExecutionProvider" not in _provider_names(kept):
        kept.append("CPUExecutionProvider")
    return kept


def _warn_provider_fallback(requested: list[str], active: list[str]) -> None:
    """One warning per process and combination when providers asked for are not running."""
    missing = [p for p in requested if p not in active and p != "CPUExecutionProvider"]
    if not missing:
        return
    key = (tuple(missing), tuple(active))
    if key in _warned:
        return
    _warned.add(key)
    gpu = [p for p in missing if p in _GPU_PROVIDERS]
    why = (" (no usable GPU or CUDA/TensorRT libraries here: onnxruntime-gpu lists these providers"
           " wherever it is installed)") if gpu else ""
    log.warning("ONNX Runtime could not use %s%s; running on %s instead", ", ".join(missing), why,
                ", ".join(active))


def resolve_backend(backend: str) -> str:
    """Normalise a backend name (``auto``, ``onnxruntime``/``ort``, ``tensorrt``/``trt``,
    ``openvino``/``ov``); unknown names are an :class:`EngineError`."""
    key = (backend or "auto").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return key


def open_engine(artifact_dir: str | Path, manifest: Manifest, stage: StageSpec, backend: str,
                providers: Sequence | None = None, threads: int | None = None, *,
                device: str | None = None, precision: str | None = None) -> Engine:
    """Open one stage with ``backend`` (already resolved, not ``auto``). ``device`` and
    ``precision`` are OpenVINO's (``CPU``/``GPU``/``NPU``/``AUTO``; ``f32``/``bf16``/``f16``);
    ``providers`` ONNX Runtime's."""
    if backend == "tensorrt":
        from edgevad.runtime.tensorrt_engine import open_tensorrt_engine

        return open_tensorrt_engine(artifact_dir, manifest, stage)
    if backend == "openvino":
        from edgevad.runtime.openvino_engine import OpenVinoEngine, OpenVinoOptions, openvino_graph

        return OpenVinoEngine(Path(artifact_dir) / openvino_graph(stage), stage,
                              OpenVinoOptions(device=device, precision=precision,
                                              threads=threads))
    if precision is not None and precision.strip().lower() not in ("f32", "fp32"):
        raise EngineError(f"precision {precision!r} is an OpenVINO option: ONNX Runtime runs the "
                          "artifact's graphs in the precision they were exported in (export "
                          "another --precision, or use --backend openvino)")
    return OnnxRuntimeEngine(Path(artifact_dir) / stage.file, stage, providers, threads)


@dataclass(frozen=True)
class BackendChoice:
    """Which backend :func:`open_engines` used, and why (shown by ``edgevad run``/``bench``)."""

    asked: str
    backend: str
    reason: str

    def describe(self) -> str:
        return self.backend if self.asked == self.backend else \
            f"{self.backend} ({self.asked}: {self.reason})"


def _auto_reason(manifest: Manifest) -> tuple[str, str]:
    """(backend, reason) for ``auto`` before anything is opened."""
    if all(s.engines for s in manifest.stages):
        try:
            import tensorrt  # noqa: F401

            return "tensorrt", "TensorRT engines in the artifact and TensorRT installed"
        except ImportError:
            trt = "the artifact has TensorRT engines but TensorRT is not installed"
    else:
        trt = "no TensorRT engines in the artifact"
    from edgevad.runtime.openvino_engine import openvino_available

    if openvino_available():
        return "openvino", f"{trt}; OpenVINO is installed"
    return "onnxruntime", f"{trt}; OpenVINO is not installed"


def open_engines(artifact_dir: str | Path, manifest: Manifest, backend: str = "auto",
                 providers: Sequence | None = None, threads: int | None = None, *,
                 device: str | None = None, precision: str | None = None
                 ) -> tuple[dict[str, Engine], BackendChoice]:
    """One engine per stage with ``backend``; ``auto`` tries TensorRT engines, then OpenVINO,
    then ONNX Runtime (module doc), falling back with a warning when one cannot open."""
    from edgevad.errors import MissingDependencyError as _Missing

    asked = resolve_backend(backend)
    if asked != "auto":
        return ({s.name: open_engine(artifact_dir, manifest, s, asked, providers, threads,
                                     device=device, precision=precision)
                 for s in manifest.stages}, BackendChoice(asked, asked, "asked for"))
    chosen, reason = _auto_reason(manifest)
    order = {"tensorrt": ["tensorrt", "openvino", "onnxruntime"],
             "openvino": ["openvino", "onnxruntime"], "onnxruntime": ["onnxruntime"]}[chosen]
    if providers and "onnxruntime" in order and any(
            p != "CPUExecutionProvider" for p in _provider_names(providers)):
        order = [b for b in order if b != "openvino"]  # ORT providers asked for: keep ORT
        reason += "; ONNX Runtime providers were asked for"
    for i, name in enumerate(order):
        if name == "openvino":
            from edgevad.runtime.openvino_engine import openvino_available

            if not openvino_available():
                continue
        try:
            engines = {s.name: open_engine(artifact_dir, manifest, s, name, providers, threads,
                                           device=device, precision=precision)
                       for s in manifest.stages}
        except (EngineError, _Missing) as exc:
            if i == len(order) - 1:
                raise
            log.warning("backend auto: %s unusable here (%s); trying %s", name, exc,
                        order[i + 1])
            reason = f"{name} unusable: {exc}"
            continue
        if name != chosen:
            reason = f"{reason}; fell back to {name}"
        choice = BackendChoice("auto", name, reason)
        log.info("backend auto -> %s (%s)", name, reason)
        return engines, choice
    raise EngineError("no backend could open the artifact")  # pragma: no cover - ORT is last
