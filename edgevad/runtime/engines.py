"""Engines: one runner per stage graph, behind one small interface.

A runner (Polygraphy's word) is built from an artifact stage and answers ``run(feeds) -> outputs``
with numpy arrays keyed by the manifest's tensor names. The Detector never touches ONNX Runtime or
TensorRT directly, so a backend is one class here and nothing else changes. Backends import their
library lazily: ``import edgevad`` works with neither installed.

- :class:`OnnxRuntimeEngine`: CPU or CUDA through ONNX Runtime providers.
- ``edgevad.runtime.tensorrt_engine.TensorRTEngine``: serialized engines (TensorRT 10/11), refused
  when built by another TensorRT version or for another GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from edgevad.errors import EdgevadError, MissingDependencyError
from edgevad.manifest import Manifest, StageSpec

__all__ = ["BACKENDS", "Engine", "EngineError", "OnnxRuntimeEngine", "StageRunner", "open_engine",
           "resolve_backend"]

BACKENDS = ("auto", "onnxruntime", "tensorrt")


class EngineError(EdgevadError):
    """A stage engine cannot be opened or run (missing backend, wrong inputs, engine mismatch)."""


class Engine(Protocol):
    """What the Detector needs of a stage runner."""

    stage: StageSpec
    backend: str
    """``"onnxruntime"`` or ``"tensorrt"``."""
    device: str
    """Where it runs, in words (``"CPUExecutionProvider"``, ``"NVIDIA H100 (sm_90)"``)."""

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; ``feeds`` holds every input by name, the result every output."""
        ...


def check_feeds(stage: StageSpec, feeds: dict[str, np.ndarray]) -> None:
    """Raise :class:`EngineError` unless ``feeds`` match the stage's declared inputs."""
    missing = [n for n in stage.input_names if n not in feeds]
    if missing:
        raise EngineError(f"stage {stage.name!r}: missing input(s) {missing}")
    for spec in stage.inputs:
        x = feeds[spec.name]
        if x.ndim != spec.rank:
            raise EngineError(f"stage {stage.name!r} input {spec.name!r}: expected rank "
                              f"{spec.rank} {list(spec.shape)}, got shape {list(x.shape)}")
        for axis, (want, got) in enumerate(zip(spec.shape, x.shape)):
            if isinstance(want, int) and want != got:
                raise EngineError(f"stage {stage.name!r} input {spec.name!r} axis {axis}: "
                                  f"expected {want}, got {got} (shape {list(x.shape)})")


class StageRunner:
    """What every backend shares: the stage it runs and its tensor names (from the manifest)."""

    stage: StageSpec

    @property
    def input_names(self) -> list[str]:
        return self.stage.input_names

    @property
    def output_names(self) -> list[str]:
        return self.stage.output_names


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
        available = ort.get_available_providers()
        providers = list(providers) if providers else ["CPUExecutionProvider"]
        unknown = [p for p in providers
                   if (p[0] if isinstance(p, (tuple, list)) else p) not in available]
        if unknown:
            raise EngineError(f"ONNX Runtime providers {unknown} are not available in this "
                              f"onnxruntime build (available: {available})")
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
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise EngineError(f"cannot open {Path(path).name} for stage {stage.name!r} with "
                              f"ONNX Runtime: {exc}") from exc
        self.device = self.session.get_providers()[0]
        self._dtypes = {spec.name: np.dtype(spec.dtype) for spec in stage.inputs}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {n: np.ascontiguousarray(feeds[n], dtype=self._dtypes[n])
                 for n in self.input_names if n in feeds}
        check_feeds(self.stage, feeds)
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``tensorrt`` when TensorRT and engines are usable, else ``onnxruntime``."""
    key = (backend or "auto").strip().lower()
    if key in ("ort", "onnx"):
        key = "onnxruntime"
    if key in ("trt", "engine"):
        key = "tensorrt"
    if key not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return key


def open_engine(artifact_dir: str | Path, manifest: Manifest, stage: StageSpec, backend: str,
                providers: Sequence | None = None, threads: int | None = None) -> Engine:
    """Open one stage with ``backend`` (already resolved, not ``auto``)."""
    if backend == "tensorrt":
        from edgevad.runtime.tensorrt_engine import open_tensorrt_engine

        return open_tensorrt_engine(artifact_dir, manifest, stage)
    return OnnxRuntimeEngine(Path(artifact_dir) / stage.file, stage, providers, threads)
