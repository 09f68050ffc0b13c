"""A calibration set: stage inputs sampled from real data, saved with where they came from.

One set calibrates one stage graph (``role``: ``backbone``, ``motion`` or ``head``); it holds,
per graph input, N samples that each feed the graph at batch 1. It is saved as one ``.npz``::

    meta                 JSON string: format, role, geometry, sources (+ SHA-256), sampler,
                         method, sample count, data hash, edgevad version
    input/<name>         the samples of graph input <name>

Pixel clips are stored compactly and exactly: as the uint8 BGR frames *after* the geometry's
resize and crop (``encoding: "frames-bgr-uint8"``, [N, T, h, w, 3]); reading a sample runs
:func:`edgevad.media.preprocess.preprocess_frame` on them, which skips the resize (the size already
matches) and applies the very colour conversion and normalisation the runtime applies, so the
floats are bit-identical to the runtime's and the file is 4x smaller than float32 clips. Flow
clips and head inputs are stored as float32 (``encoding: "float32"``).

Torch-free: numpy and the runtime's own preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgevad import __version__
from edgevad.artifact.records import portable_sources
from edgevad.artifact.zoo import InputGeometry
from edgevad.errors import EdgevadError

__all__ = ["CALIBRATION_FORMAT", "METHODS", "ROLES", "CalibrationError", "CalibrationSet",
           "geometry_from_dict", "is_calibration_file", "load_calibration"]

CALIBRATION_FORMAT = "edgevad-calibration"
SCHEMA_VERSION = 1
METHODS = ("minmax", "entropy", "percentile")
"""Calibration methods (ONNX Runtime's MinMax, Entropy and Percentile calibrators)."""
ROLES = ("backbone", "motion", "head")
FRAMES = "frames-bgr-uint8"
FLOAT = "float32"

_PIXEL_FIELDS = ("clip_len", "size", "resize", "crop", "color", "scale", "mean", "std",
                 "channels", "layout", "flow_bound")
"""Geometry fields that change what a sample holds (``stride`` only changes where clips start)."""


class CalibrationError(EdgevadError):
    """A calibration set cannot be built, read or used for this stage (names the problem)."""


def resolve_method(method: str | None) -> str:
    key = (method or "minmax").strip().lower().replace("-", "").replace("_", "")
    if key not in METHODS:
        raise CalibrationError(f"Unknown calibration method {method!r}; choose one of "
                               f"{', '.join(METHODS)}")
    return key


def geometry_from_dict(d: dict) -> InputGeometry:
    """A geometry dict (JSON lists) back to :class:`InputGeometry`."""
    return InputGeometry(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _norm(value):
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class CalibrationSet:
    """Samples for one stage graph; see the module doc. ``arrays[name]`` is [N, ...]."""

    role: str
    arrays: dict[str, np.ndarray]
    encodings: dict[str, str]
    geometry: dict | None = None
    """The :class:`InputGeometry` dict the samples were made with (pixel and flow stages)."""
    sources: list[dict] = field(default_factory=list)
    """Where the samples came from: ``{"name", "path", "sha256", ...}`` per video or bag file
    (``path`` as :mod:`edgevad.artifact.records` writes it: never the machine's absolute path unless
    asked for)."""
    sampler: dict = field(default_factory=dict)
    method: str = "minmax"
    """Default calibration method for this set (the quantizer may override it)."""
    created: str = ""
    edgevad_version: str = __version__

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise CalibrationError(f"calibration role must be one of {', '.join(ROLES)}, "
                                   f"got {self.role!r}")
        self.method = resolve_method(self.method)
        if self.geometry is not None:  # JSON form (lists), the same in memory and on disk
            self.geometry = json.loads(json.dumps(self.geometry))
        if not self.arrays:
            raise CalibrationError("a calibration set needs at least one input")
        counts = {name: len(a) for name, a in self.arrays.items()}
        if len(set(counts.values())) != 1 or 0 in counts.values():
            raise CalibrationError(f"calibration inputs must hold the same, non-zero number of "
                                   f"samples, got {counts}")
        for name, enc in self.encodings.items():
            if enc not in (FRAMES, FLOAT):
                raise CalibrationError(f"input {name!r}: unknown encoding {enc!r}")
            if enc == FRAMES and self.geometry is None:
                raise CalibrationError(f"input {name!r} holds frames but the set has no geometry")

    # -- access ------------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def input_names(self) -> list[str]:
        return list(self.arrays)

    def input_geometry(self) -> InputGeometry | None:
        return None if self.geometry is None else geometry_from_dict(self.geometry)

    def sample(self, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` as graph feeds at batch 1 (float32, [1, ...])."""
        return {name: self._decode(name, index)[None] for name in self.arrays}

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Samples ``indices`` stacked along the batch axis."""
        return {name: np.ascontiguousarray(np.stack([self._decode(name, i) for i in indices]))
                for name in self.arrays}

    def sample_shape(self, name: str) -> tuple[int, ...]:
        """One decoded sample's shape (no batch axis)."""
        a = self.arrays[name]
        if self.encodings[name] == FRAMES:
            t, h, w = a.shape[1:4]
            return (int(self.geometry["channels"]), t, h, w)
        return tuple(a.shape[1:])

    def _decode(self, name: str, index: int) -> np.ndarray:
        a = self.arrays[name]
        if self.encodings[name] == FLOAT:
            return np.asarray(a[index], dtype=np.float32)
        from edgevad.media.preprocess import preprocess_frame

        g = replace(self.input_geometry(), resize=None, crop="none")
        frames = a[index]
        out = np.empty(self.sample_shape(name), np.float32)
        for t, frame in enumerate(frames):
            preprocess_frame(frame, g, out=out[:, t])
        return out

    @property
    def data_sha256(self) -> str:
        """SHA-256 over the stored samples (names, encodings, dtypes, shapes, bytes)."""
        digest = hashlib.sha256()
        for name in sorted(self.arrays):
            a = np.ascontiguousarray(self.arrays[name])
            digest.update(f"{name}|{self.encodings[name]}|{a.dtype}|{a.shape}|".encode())
            digest.update(a.tobytes())
        return digest.hexdigest()

    def reader(self, batch_size: int = 1, names: dict[str, str] | None = None):
        """A re-iterable :class:`~edgevad_calibration.reader.CalibrationReader` over this set."""
        from edgevad_calibration.reader import CalibrationReader

        return CalibrationReader(self, batch_size=batch_size, names=names)

    # -- checks ------------------------------------------------------------------------------------
    def check_geometry(self, expected: InputGeometry | dict, what: str = "this stage") -> None:
        """Raise :class:`CalibrationError` unless the set was made with ``expected``'s pixels
        (clip length, size, resize, crop, colour, normalisation; the stride may differ)."""
        want = expected.to_dict() if isinstance(expected, InputGeometry) else dict(expected)
        if self.geometry is None:
            raise CalibrationError(f"the calibration set ({self.role}) holds no pixel geometry, "
                                   f"but {what} takes clips of {_describe(want)}")
        diffs = [f"{k}: set {_norm(self.geometry.get(k))!r}, stage {_norm(want.get(k))!r}"
                 for k in _PIXEL_FIELDS if _norm(self.geometry.get(k)) != _norm(want.get(k))]
        if diffs:
            raise CalibrationError(
                f"calibration set geometry does not match {what} ({_describe(want)}): "
                + "; ".join(diffs) + ". Build a set for this model: edgevad calibrate --model "
                "MODEL [--backbone B] VIDEOS -o calib.npz")

    def check_inputs(self, shapes: dict[str, tuple], what: str = "the stage graph") -> None:
        """Raise :class:`CalibrationError` unless the set feeds exactly the inputs ``shapes``
        (name -> shape with the batch axis; str axes are free)."""
        if set(shapes) != set(self.arrays):
            raise CalibrationError(f"calibration set has inputs {sorted(self.arrays)}, "
                                   f"{what} takes {sorted(shapes)}")
        for name, shape in shapes.items():
            got = self.sample_shape(name)
            want = tuple(shape)[1:]
            bad = len(got) != len(want) or any(
                isinstance(w, int) and w != g for w, g in zip(want, got))
            if bad:
                raise CalibrationError(f"calibration input {name!r} has samples of shape "
                                       f"{list(got)}, {what} takes {list(shape)}")

    # -- provenance --------------------------------------------------------------------------------
    def record(self, file: str | None = None) -> dict:
        """The provenance record the artifact manifest keeps (sources made portable: a set saved
        by an older edgevad, or in ``--record-paths absolute``, may hold absolute paths)."""
        return {
            "role": self.role, "file": file, "method": self.method, "samples": self.n_samples,
            "data_sha256": self.data_sha256, "sources": portable_sources(self.sources),
            "sampler": self.sampler,
            "geometry": self.geometry, "inputs": {n: list(self.sample_shape(n))
                                                  for n in self.arrays},
        }

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the set to ``path`` (.npz) atomically; returns the path."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta = {
            "format": CALIBRATION_FORMAT, "schema_version": SCHEMA_VERSION, "role": self.role,
            "encodings": self.encodings, "geometry": self.geometry, "sources": self.sources,
            "sampler": self.sampler, "method": self.method, "samples": self.n_samples,
            "data_sha256": self.data_sha256,
            "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "edgevad_version": self.edgevad_version,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.partial")
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta)),
                         **{f"input/{n}": a for n, a in self.arrays.items()})
            tmp.replace(path)
        except OSError as exc:
            raise CalibrationError(f"cannot write calibration set {path}: "
                                   f"{exc.strerror or exc}") from exc
        return path


def _describe(g: dict) -> str:
    size = "x".join(str(s) for s in _norm(g.get("size") or []))
    return f"{g.get('clip_len')} frames of {size}, {g.get('color')}"


def is_calibration_file(path: str | Path) -> bool:
    """True if ``path`` is an .npz written by :meth:`CalibrationSet.save`."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".npz":
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return "meta.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def load_calibration(path: str | Path) -> CalibrationSet:
    """Read a saved set; checks the format and that the stored data hash still matches."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration set {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("input/")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path} is not a readable calibration set: {exc}") from exc
    if meta.get("format") != CALIBRATION_FORMAT:
        raise CalibrationError(f"{path} is not an edgevad calibration set (format "
                               f"{meta.get('format')!r})")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CalibrationError(f"{path}: unknown calibration schema {meta.get('schema_version')!r}")
    cset = CalibrationSet(
        role=meta["role"], arrays=arrays, encodings=meta["encodings"],
        geometry=meta.get("geometry"), sources=meta.get("sources", []),
        sampler=meta.get("sampler", {}), method=meta.get("method", "minmax"),
        created=meta.get("created", ""), edgevad_version=meta.get("edgevad_version", ""))
    if meta.get("data_sha256") and cset.data_sha256 != meta["data_sha256"]:
        raise CalibrationError(f"calibration set {path} is corrupt: its samples no longer match "
                               "the hash recorded when it was written")
    return cset

