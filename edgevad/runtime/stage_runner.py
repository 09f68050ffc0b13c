"""What every stage runner shares, below the backends: the :class:`Engine` interface, the
:class:`StageRunner` base class, the feed check and :class:`EngineError`.

:mod:`edgevad.runtime.engines` (the ONNX Runtime runner and the backend choice) opens the
TensorRT and OpenVINO runners, and those runners are built on these pieces; kept here, each
backend module imports this one and none imports :mod:`~edgevad.runtime.engines`, so the backends
form no import cycle. :mod:`edgevad.runtime.engines` re-exports every name, which stays the place
to import them from.
"""

from __future__ import annotations

from functools import cached_property
from typing import Protocol

import numpy as np

from edgevad.artifact.manifest import StageSpec
from edgevad.errors import EdgevadError

__all__ = ["Engine", "EngineError", "StageRunner", "check_feeds"]


class EngineError(EdgevadError):
    """A stage engine cannot be opened or run (missing backend, wrong inputs, engine mismatch)."""


class Engine(Protocol):
    """What the Detector needs of a stage runner."""

    stage: StageSpec
    backend: str
    """``"onnxruntime"``, ``"tensorrt"`` or ``"openvino"``."""
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

    @cached_property
    def _input_dtypes(self) -> dict[str, np.dtype]:
        return {spec.name: np.dtype(spec.dtype) for spec in self.stage.inputs}

    def _checked_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``feeds`` as the graph takes them: contiguous, in each input's declared dtype,
        checked against the stage (:func:`check_feeds`)."""
        feeds = {n: np.ascontiguousarray(feeds[n], dtype=self._input_dtypes[n])
                 for n in self.input_names if n in feeds}
        check_feeds(self.stage, feeds)
        return feeds
