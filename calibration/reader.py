"""The calibration-data protocol of ONNX Runtime's quantizer, over a :class:`CalibrationSet`.

ONNX Runtime asks ``get_next() -> dict | None`` until it gets ``None``. This reader is
re-iterable: after the ``None`` that ends a pass, the next ``get_next()`` starts a fresh pass, and
``iter(reader)`` always starts from the first sample, so one reader serves several calibrations
(ONNX Runtime's int8 graph, the TensorRT Q/DQ graph, the accuracy gate) in turn.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgevad_calibration.dataset import CalibrationError, CalibrationSet

try:  # subclass ONNX Runtime's ABC when it is there (it is a runtime dependency)
    from onnxruntime.quantization import CalibrationDataReader as _Base
except ImportError:  # pragma: no cover
    _Base = object

__all__ = ["CalibrationReader"]


class CalibrationReader(_Base):
    """Feeds of ``cset`` in batches of ``batch_size`` (the last batch may be smaller).

    ``names`` maps the set's input names to the graph's, where they differ.
    """

    def __init__(self, cset: CalibrationSet, batch_size: int = 1,
                 names: dict[str, str] | None = None):
        if batch_size < 1:
            raise CalibrationError(f"batch_size must be >= 1, got {batch_size}")
        self.cset = cset
        self.batch_size = int(batch_size)
        self.names = dict(names or {})
        self._start, self._end = 0, cset.n_samples
        self._pass: Iterator[dict] | None = None

    def __len__(self) -> int:
        return -(-(self._end - self._start) // self.batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict to samples ``[start, end)`` (ONNX Runtime's strided MinMax uses this)."""
        if not 0 <= start_index < end_index:
            raise CalibrationError(f"bad calibration range [{start_index}, {end_index})")
        self._start, self._end = start_index, min(end_index, self.cset.n_samples)
        self._pass = None

    def rewind(self) -> None:
        self._pass = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self._start, self._end, self.batch_size):
            batch = self.cset.batch(range(i, min(i + self.batch_size, self._end)))
            yield {self.names.get(k, k): v for k, v in batch.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pass is None:
            self._pass = self._batches()
        item = next(self._pass, None)
        if item is None:
            self._pass = None  # the next call starts a fresh pass
        return item

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._batches()

    def __next__(self) -> dict[str, np.ndarray]:  # ONNX Runtime's ABC iterates with next()
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item
