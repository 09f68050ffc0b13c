"""edgevad: edge inference for weakly-supervised video anomaly detection.

This package (folder ``edgevad/``) is the runtime: numpy, OpenCV, ONNX Runtime and TensorRT
where present, never torch. The training side lives in ``edgevad_export`` (folder ``export/``)
and ``edgevad_calibration`` (folder ``calibration/``), installed with ``pip install
'edgevad[train]'``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("edgevad")
except PackageNotFoundError:  # a bare checkout that was never installed
    __version__ = "0.0.0+unknown"

from edgevad.errors import EdgevadError  # noqa: E402

__all__ = ["AnomalyEvent", "Detector", "EdgevadError", "EventConfig", "FrameResult",
           "__version__"]
_RUNTIME = {"Detector": "detector", "EventConfig": "events", "AnomalyEvent": "results",
            "FrameResult": "results"}


def __getattr__(name: str):
    """``edgevad.Detector`` without paying for OpenCV and ONNX Runtime at ``import edgevad``."""
    if name in _RUNTIME:
        import importlib

        return getattr(importlib.import_module(f"edgevad.runtime.{_RUNTIME[name]}"), name)
    raise AttributeError(f"module 'edgevad' has no attribute {name!r}")
