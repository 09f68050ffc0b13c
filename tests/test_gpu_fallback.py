"""GPU execution providers that cannot run here fall back to CPU with one clear warning.

Two ways a machine without a usable GPU meets a request for ONNX Runtime's CUDA or TensorRT
providers: the CPU ``onnxruntime`` wheel does not offer them at all, and ``onnxruntime-gpu``
offers them everywhere (``get_available_providers`` lists them) but its session silently runs on
CPU. The second is reproduced with the real CPU wheel by making it list the GPU providers: the
session it then creates really is a CPU session, exactly what onnxruntime-gpu gives on a CPU box.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest

from edgevad import Detector
from edgevad.runtime import engines as engines_mod
from edgevad.runtime.engines import EngineError

GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def _fallback_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "could not use" in r.getMessage()]


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(engines_mod, "_warned", set())


def _scores(det: Detector) -> list[float]:
    frames = [np.full((20, 24, 3), 20 * i, np.uint8) for i in range(9)]
    return [r.score for f in frames for r in det.push(f)] + [r.score for r in det.flush()]


def test_cpu_wheel_without_gpu_providers_falls_back(tiny_artifact, caplog):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA: the simulated case below covers it")
    art = tiny_artifact("dmrm")  # three stages, still one warning
    with caplog.at_level(logging.WARNING):
        det = Detector.load(art, backend="onnxruntime", providers=GPU)
    assert all(e.device == "CPUExecutionProvider" for e in det.engines.values())
    warnings = _fallback_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "CUDAExecutionProvider" in warnings[0] and "CPUExecutionProvider" in warnings[0]
    ref = Detector.load(art, backend="onnxruntime")
    assert _scores(det) == _scores(ref)


def test_gpu_wheel_on_a_cpu_machine_falls_back(tiny_artifact, caplog, monkeypatch):
    """onnxruntime-gpu lists the GPU providers; the session runs on CPU: detected by comparing
    what was asked with ``session.get_providers()``."""
    listed = GPU + list(ort.get_available_providers())
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    art = tiny_artifact("dam")
    with caplog.at_level(logging.WARNING):
        det = Detector.load(art, backend="onnxruntime", providers=GPU + ["CPUExecutionProvider"])
        Detector.load(art, backend="onnxruntime", providers=GPU)  # same request: no new warning
    assert all(e.providers == ["CPUExecutionProvider"] for e in det.engines.values())
    warnings = _fallback_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "TensorrtExecutionProvider, CUDAExecutionProvider" in warnings[0]
    assert "no usable GPU" in warnings[0]
    assert np.ptp(_scores(det)) > 0


def test_cpu_only_request_is_silent_and_typos_are_refused(tiny_artifact, caplog):
    art = tiny_artifact("mil")
    with caplog.at_level(logging.WARNING):
        Detector.load(art, backend="onnxruntime", providers=["CPUExecutionProvider"])
    assert not _fallback_warnings(caplog)
    with pytest.raises(EngineError, match="no execution provider named"):
        Detector.load(art, backend="onnxruntime", providers=["CUDAExecutonProvider"])
