"""edgevad_calibration (folder ``calibration/``): calibration sets and INT8 graphs for export.

Torch-free on purpose (numpy, OpenCV, onnx, ONNX Runtime; TensorRT where installed): TensorRT
engines are built on the target device, which has no torch.

- :mod:`~edgevad_calibration.dataset`: :class:`CalibrationSet`, saved as one ``.npz`` with its
  provenance (sources and their SHA-256, geometry, sampler, method, data hash);
- :mod:`~edgevad_calibration.build`: sets from videos (pixels or flow, preprocessed exactly as the
  runtime does) or from feature-bag files (heads);
- :mod:`~edgevad_calibration.reader`: ONNX Runtime's ``get_next()`` protocol, re-iterable;
- :mod:`~edgevad_calibration.quantize`: ONNX Runtime static U8S8 QDQ, the symmetric int8 Q/DQ graph
  for TensorRT, dynamic int8;
- :mod:`~edgevad_calibration.tensorrt_build`: serialized TensorRT engines and their metadata.
"""

from edgevad_calibration.build import (
    DEFAULT_SAMPLES,
    build_from_bags,
    build_from_videos,
    collect_videos,
    head_set_from_features,
)
from edgevad_calibration.dataset import (
    METHODS,
    CalibrationError,
    CalibrationSet,
    is_calibration_file,
    load_calibration,
)
from edgevad_calibration.reader import CalibrationReader

__all__ = ["DEFAULT_SAMPLES", "METHODS", "CalibrationError", "CalibrationReader",
           "CalibrationSet", "build_from_bags", "build_from_videos", "collect_videos",
           "head_set_from_features", "is_calibration_file", "load_calibration"]
