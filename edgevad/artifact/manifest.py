"""The artifact manifest: everything the runtime needs to run an exported model, and to trust it.

An exported artifact is a folder (``edgevad export`` writes it)::

    manifest.json   this module's :class:`Manifest` (schema_version 1)
    backbone.onnx   clip [batch, C, T, H, W] -> features [batch, D] (I3D: + feature_map [batch, t, D])
    motion.onnx     DMRM only: encoded optical flow [batch, 2, T, h, w] -> features [batch, D]
    head.onnx       the anomaly head (input names from the zoo's HeadSpec)
    parity.json     torch vs ONNX Runtime comparison made at export time

A model without a backbone network (``motion-prior``) has no ``backbone.onnx``: its head is fed
features the runtime computes itself, described by :attr:`Manifest.features` (``kind``
``"flow-statistics"``: per-frame statistics of DIS optical-flow magnitude, averaged over each
clip) and linked from the pseudo-stage ``features`` (``features/flow_statistics -> head/...``).

The manifest copies from the zoo whatever the runtime needs (input geometry, clip and segment
protocol, class names, score range, threshold) so the runtime never imports the zoo's builders or
torch. :func:`load_manifest` checks, by default, that every listed file is present and unchanged
(SHA-256) and that each stage's ONNX graph declares the inputs and outputs the manifest says;
any problem is a :class:`ManifestError` that names the file and what is wrong.

Torch-free: json, hashlib, and ``onnx`` (if installed) or ONNX Runtime to read graph signatures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgevad import __version__
from edgevad.artifact.zoo import InputGeometry
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file

__all__ = [
    "FORMAT", "MANIFEST_FILE", "SCHEMA_VERSION", "FileRecord", "Link", "Manifest", "ManifestError",
    "FEATURE_KINDS", "FEATURES_STAGE", "Protocol", "StageSpec", "TensorSpec", "WeightsRecord",
    "load_manifest", "onnx_signature", "sha256_file",
]

FORMAT = "edgevad-artifact"
SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"

_DTYPES = {  # ONNX TensorProto element types the stages use
    1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
    11: "float64", 16: "bfloat16",
}
_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
    "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(bfloat16)": "bfloat16",
}


FEATURES_STAGE = "features"
"""Pseudo-stage name of features the runtime computes itself (no graph): links name its output
``features/<name>``."""
FEATURE_KINDS = {"flow-statistics": "flow_statistics"}
"""Kinds of runtime-computed features :attr:`Manifest.features` may name -> the output name
links use."""


class ManifestError(EdgevadError):
    """An artifact folder or its manifest is missing, malformed, changed or incompatible."""


# --- Records --------------------------------------------------------------------------------------

def _require(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise ManifestError(f"{where} must be a JSON object, got {type(d).__name__}")
    if key not in d:
        raise ManifestError(f"{where} lacks {key!r}")
    return d[key]


def _score_range(v: Any) -> tuple[float, float]:
    """``score_range``: two numbers (a JSON list); anything else is malformed (ValueError)."""
    vals = [float(x) for x in v]
    if len(vals) != 2:
        raise ValueError(f"score_range must be two numbers, got {v!r}")
    return vals[0], vals[1]


def _known(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (ints, or strings for symbolic axes such as
    ``"batch"`` and ``"segments"``) and numpy dtype name."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def symbolic(self) -> dict[int, str]:
        """Axis index -> name of the symbolic axes."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict, where: str = "tensor") -> TensorSpec:
        name = _require(d, "name", where)
        shape = _require(d, "shape", f"{where} {name!r}")
        if not isinstance(shape, list) or not all(
                isinstance(s, str) or (isinstance(s, int) and s >= 0) for s in shape):
            raise ManifestError(f"{where} {name!r}: shape must be a list of ints and axis names, "
                                f"got {shape!r}")
        return cls(name=str(name), shape=tuple(shape), dtype=str(d.get("dtype", "float32")))


@dataclass(frozen=True)
class StageSpec:
    """One ONNX graph of the pipeline.

    ``role``: ``"backbone"`` (pixels in), ``"motion"`` (encoded flow in) or ``"head"``.
    ``geometry``: the :class:`~edgevad.artifact.zoo.InputGeometry` dict of a pixel stage (None for the
    head). ``exporter``: ``"dynamo"`` or ``"legacy"`` (the TorchScript exporter, used when the
    dynamo one failed; ``export_note`` says why).
    """

    name: str
    file: str
    role: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str = "fp32"
    model: str = ""
    """The zoo name this stage was built from (backbone or head name)."""
    geometry: dict | None = None
    exporter: str = "dynamo"
    export_note: str | None = None
    opset: int | None = None
    variants: dict[str, str] = field(default_factory=dict)
    """Other graphs of this stage, by purpose: ``"fp32"`` (the reference graph when ``file`` is
    quantized), ``"fp16"`` (fp16 weights, float32 inputs/outputs), ``"int8_qdq"`` (symmetric int8
    Q/DQ graph for TensorRT's explicit quantization). File names in the artifact (hashed in
    ``files``)."""
    engines: tuple[dict, ...] = ()
    """TensorRT engines of this stage: ``{"file", "metadata", "precision"}`` each; the metadata
    JSON beside an engine says which TensorRT and GPU built it."""
    quantization: dict | None = None
    """How ``file`` was quantized (converter, method, activation/weight types, excluded nodes,
    measured choice for heads); None for an unquantized graph."""

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, f"stage {self.name!r} input")

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, f"stage {self.name!r} output")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input_geometry(self) -> InputGeometry | None:
        """The stage's geometry as an :class:`InputGeometry` (JSON lists back to tuples)."""
        if self.geometry is None:
            return None
        g: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                             for k, v in self.geometry.items()}
        try:
            return InputGeometry(**g)
        except TypeError as exc:
            raise ManifestError(f"stage {self.name!r}: geometry does not fit InputGeometry: "
                                f"{exc}") from exc

    def to_dict(self) -> dict:
        d = {
            "name": self.name, "file": self.file, "role": self.role, "model": self.model,
            "precision": self.precision,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "geometry": self.geometry, "exporter": self.exporter, "opset": self.opset,
        }
        if self.export_note:
            d["export_note"] = self.export_note
        if self.variants:
            d["variants"] = dict(self.variants)
        if self.engines:
            d["engines"] = [dict(e) for e in self.engines]
        if self.quantization is not None:
            d["quantization"] = self.quantization
        return d

    def engine(self, precision: str | None = None) -> dict | None:
        """The engine record for ``precision`` (default: the stage's precision, else the first
        listed), or None when the stage has no engine."""
        if not self.engines:
            return None
        want = precision or self.precision
        for e in self.engines:
            if e.get("precision") == want:
                return e
        return None if precision else self.engines[0]

    @classmethod
    def from_dict(cls, d: dict) -> StageSpec:
        name = _require(d, "name", "stage")
        where = f"stage {name!r}"
        for key in ("file", "role", "inputs", "outputs"):
            _require(d, key, where)
        if not isinstance(d["inputs"], list) or not isinstance(d["outputs"], list):
            raise ManifestError(f"{where}: inputs and outputs must be lists")
        return cls(
            name=str(name), file=str(d["file"]), role=str(d["role"]),
            inputs=tuple(TensorSpec.from_dict(t, f"{where} input") for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t, f"{where} output") for t in d["outputs"]),
            precision=str(d.get("precision", "fp32")), model=str(d.get("model", "")),
            geometry=d.get("geometry"), exporter=str(d.get("exporter", "dynamo")),
            export_note=d.get("export_note"), opset=d.get("opset"),
            variants={str(k): str(v) for k, v in (d.get("variants") or {}).items()},
            engines=tuple(_engine_record(e, where) for e in d.get("engines") or ()),
            quantization=d.get("quantization"),
        )


def _engine_record(e: Any, where: str) -> dict:
    if not isinstance(e, dict) or "file" not in e or "precision" not in e:
        raise ManifestError(f"{where}: an engine record needs 'file' and 'precision', got {e!r}")
    return dict(e)


def _check_numbers(m: Manifest) -> None:
    """Numbers the runtime computes with: a NaN threshold would never open an event, a negative
    window or stride would fail deep inside the clip buffer with a bare traceback."""
    if not math.isfinite(m.default_threshold):
        raise ManifestError(f"default_threshold must be a finite number, got {m.default_threshold}")
    r = m.score_range
    if len(r) != 2 or not (math.isfinite(r[0]) and math.isfinite(r[1]) and r[0] < r[1]):
        raise ManifestError(f"score_range must be two finite numbers, low < high, got "
                            f"{list(m.score_range)}")
    p = m.protocol
    for key in ("clip_len", "stride", "segments", "window"):
        v = getattr(p, key)
        if v is None and key in ("segments", "window"):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ManifestError(f"protocol {key} must be a whole number >= 1, got {v!r}")


def _check_features(m: Manifest) -> None:
    """A ``features`` record (runtime-computed head input) must be complete and fit the head:
    its kind known, the flow's working size, preset and finest scale well-formed, the clip
    schedule the protocol's, and one statistic per feature dimension the head takes. Whether this
    runtime computes exactly those statistics is checked when the Detector opens it
    (``edgevad.runtime.stream.check_feature_record``)."""
    f = m.features
    if f is None:
        if any(link.source.partition("/")[0] == FEATURES_STAGE for link in m.links):
            raise ManifestError(f"a link reads the {FEATURES_STAGE!r} pseudo-stage but the "
                                "manifest has no 'features' record")
        return
    if not isinstance(f, dict):
        raise ManifestError(f"features must be a JSON object, got {type(f).__name__}")
    kind = f.get("kind")
    if kind not in FEATURE_KINDS:
        raise ManifestError(f"features kind {kind!r} is unknown to this edgevad ({__version__}); "
                            f"known: {', '.join(FEATURE_KINDS)}")
    if m.has_stage("backbone"):
        raise ManifestError(f"features of kind {kind!r} replace the backbone, but the manifest "
                            "also has a 'backbone' stage")
    for key in ("size", "preset", "statistics", "clip_len", "stride"):
        if key not in f:
            raise ManifestError(f"features ({kind}) lacks {key!r}")
    size = f["size"]
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in size)):
        raise ManifestError(f"features size must be [height, width], both whole numbers >= 8, "
                            f"got {size!r}")
    if not isinstance(f["preset"], str):
        raise ManifestError(f"features preset must be a name, got {f['preset']!r}")
    fs = f.get("finest_scale")
    if fs is not None and (isinstance(fs, bool) or not isinstance(fs, int) or not 0 <= fs <= 4):
        raise ManifestError(f"features finest_scale must be 0..4 or null, got {fs!r}")
    stats = f["statistics"]
    if not (isinstance(stats, list) and stats and all(isinstance(v, str) for v in stats)
            and len(set(stats)) == len(stats)):
        raise ManifestError(f"features statistics must be a list of distinct names, got {stats!r}")
    p = m.protocol
    if (f["clip_len"], f["stride"]) != (p.clip_len, p.stride):
        raise ManifestError(f"features clips ({f['clip_len']} frames every {f['stride']}) differ "
                            f"from the protocol's ({p.clip_len} every {p.stride})")
    out = f"{FEATURES_STAGE}/{FEATURE_KINDS[kind]}"
    for link in m.links:
        if link.source.partition("/")[0] != FEATURES_STAGE:
            continue
        if link.source != out:
            raise ManifestError(f"link {link.source} -> {link.target}: features of kind {kind!r} "
                                f"give {out!r}")
        stage, _, tensor = link.target.partition("/")
        try:
            dim = m.stage(stage).input(tensor).shape[-1]
        except KeyError as exc:
            raise ManifestError(f"link {link.source} -> {link.target}: {exc.args[0]}") from None
        if dim != len(stats):
            raise ManifestError(f"{link.target} takes {dim} features per clip, but features "
                                f"lists {len(stats)} statistics {stats}")


def _by_name(items: Iterable, name: str, what: str):
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"no {what} named {name!r}")


@dataclass(frozen=True)
class Link:
    """Output ``source`` (``"stage/output"``) feeds input ``target`` (``"stage/input"``).

    ``via``: ``"identity"`` (as is), ``"segments"`` (per-clip features pooled into the protocol's
    segments, ``[batch, D]`` clips -> ``[batch, segments, D]``), ``"state"`` (kept by the runtime and
    fed on the *next* clip: DAM's ``next_prev_map -> prev_map``).
    """

    source: str
    target: str
    via: str = "identity"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Link:
        return cls(source=str(_require(d, "source", "link")),
                   target=str(_require(d, "target", "link")), via=str(d.get("via", "identity")))


@dataclass(frozen=True)
class Protocol:
    """How clips and segments are cut and fed.

    ``mode``: ``"segments"`` (a video or window is split into ``segments`` segments whose clip
    features are averaged; ``segments_fixed`` when the head takes exactly that many) or
    ``"online"`` (one score per clip, e.g. DAM). ``state``: for online heads with memory, which
    input takes which output of the previous clip and what to feed first.
    """

    mode: str
    clip_len: int
    stride: int
    segments: int | None = None
    segments_fixed: bool = False
    segment_scheme: str | None = None
    state: dict | None = None
    window: int | None = None
    """Segment heads run live over a sliding window of this many clip features and the newest
    clip's score is the stream's (None: ``segments`` when ``segments_fixed``, else 1)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Protocol:
        for key in ("mode", "clip_len", "stride"):
            _require(d, key, "protocol")
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class WeightsRecord:
    """Where a stage's weights came from: ``source`` is ``"registry"`` (a zoo weights name),
    ``"file"``, ``"checkpoint"`` (a trained head) or ``"random"`` (explicit random init).
    ``state_dict_sha256`` hashes the tensors actually exported (names, dtypes, shapes, bytes)."""

    source: str
    name: str | None = None
    state_dict_sha256: str | None = None
    file_sha256: str | None = None
    registry_sha256: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WeightsRecord:
        _require(d, "source", "weights record")
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    bytes: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, name: str = "") -> FileRecord:
        sha = _require(d, "sha256", f"files[{name!r}]")
        return cls(sha256=str(sha), bytes=int(d.get("bytes", -1)))


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of an artifact folder (see the module doc)."""

    model: dict
    """``name`` (the zoo head), ``version`` (fingerprint of the weights), ``description``, ``paper``."""
    head: str
    backbones: dict[str, str]
    """Stage name -> zoo backbone name (``{"backbone": "i3d"}``; DMRM adds ``"motion"``)."""
    weights: dict[str, WeightsRecord]
    stages: tuple[StageSpec, ...]
    links: tuple[Link, ...]
    protocol: Protocol
    files: dict[str, FileRecord]
    opset: int
    class_names: tuple[str, ...] = ()
    score_range: tuple[float, float] = (0.0, 1.0)
    default_threshold: float = 0.5
    flow: dict | None = None
    """DMRM: how the motion stage's input is made (estimator, size, ``bound``)."""
    features: dict | None = None
    """Head input the runtime computes itself instead of a backbone stage (``motion-prior``):
    ``kind`` (:data:`FEATURE_KINDS`), and for ``"flow-statistics"`` the flow's ``size``
    ([h, w]), ``preset``, ``finest_scale``, the per-frame ``statistics`` in order, and the clip
    schedule (``clip_len``, ``stride``; a clip's feature is the mean of its frames' statistics,
    a stream's tail clip repeating its last frame). None for models with a backbone."""
    calibration: dict | None = None
    """INT8 calibration provenance (method, samples, data hash); None for fp32."""
    parity: dict | None = None
    """Summary of ``parity.json`` (file, passed, worst max-abs error, source)."""
    export: dict = field(default_factory=dict)
    """Tool versions and timings of the export."""
    edgevad_version: str = __version__
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    format: str = FORMAT

    # -- access ------------------------------------------------------------------------------------
    def stage(self, name: str) -> StageSpec:
        return _by_name(self.stages, name, "stage")

    def has_stage(self, name: str) -> bool:
        return any(s.name == name for s in self.stages)

    @property
    def precision(self) -> str:
        """The stages' precision if they agree, else ``"mixed"``."""
        kinds = {s.precision for s in self.stages}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def input_geometry(self) -> InputGeometry:
        """The geometry that frames the stream: the backbone's, or for runtime-computed
        ``features`` their clip schedule and flow working size (grey, one channel)."""
        if self.features is None:
            return self.geometry("backbone")
        f = self.features
        return InputGeometry(clip_len=int(f["clip_len"]), stride=int(f["stride"]),
                             size=(int(f["size"][0]), int(f["size"][1])), color="gray",
                             mean=(0.0,), std=(1.0,), channels=1)

    def geometry(self, stage: str = "backbone") -> InputGeometry:
        g = self.stage(stage).input_geometry()
        if g is None:
            raise ManifestError(f"stage {stage!r} has no input geometry")
        return g

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "schema_version": self.schema_version,
            "edgevad_version": self.edgevad_version,
            "created": self.created,
            "model": dict(self.model),
            "head": self.head,
            "backbones": dict(self.backbones),
            "weights": {k: w.to_dict() for k, w in self.weights.items()},
            "stages": [s.to_dict() for s in self.stages],
            "links": [link.to_dict() for link in self.links],
            "protocol": self.protocol.to_dict(),
            "class_names": list(self.class_names),
            "score_range": list(self.score_range),
            "default_threshold": self.default_threshold,
            "flow": self.flow,
            **({"features": self.features} if self.features is not None else {}),
            "opset": self.opset,
            "calibration": self.calibration,
            "parity": self.parity,
            "export": self.export,
            "files": {k: f.to_dict() for k, f in self.files.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def save(self, artifact_dir: str | Path) -> Path:
        path = Path(artifact_dir) / MANIFEST_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        if not isinstance(d, dict):
            raise ManifestError(f"manifest must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise ManifestError(f"not an edgevad artifact manifest (format {fmt!r}, expected "
                                f"{FORMAT!r})")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"unknown manifest schema_version {version!r}: this edgevad ({__version__}) "
                f"reads schema {SCHEMA_VERSION}; "
                + ("upgrade edgevad" if isinstance(version, int) and version > SCHEMA_VERSION
                   else "re-export the model")
            )
        for key in ("model", "head", "backbones", "weights", "stages", "links", "protocol",
                    "files", "opset"):
            _require(d, key, "manifest")
        if not isinstance(d["stages"], list) or not d["stages"]:
            raise ManifestError("manifest lists no stages")
        try:
            return cls(
                format=fmt, schema_version=version,
                edgevad_version=str(d.get("edgevad_version", "")),
                created=str(d.get("created", "")),
                model=dict(d["model"]), head=str(d["head"]),
                backbones={str(k): str(v) for k, v in d["backbones"].items()},
                weights={str(k): WeightsRecord.from_dict(w) for k, w in d["weights"].items()},
                stages=tuple(StageSpec.from_dict(s) for s in d["stages"]),
                links=tuple(Link.from_dict(link) for link in d["links"]),
                protocol=Protocol.from_dict(d["protocol"]),
                files={str(k): FileRecord.from_dict(f, k) for k, f in d["files"].items()},
                opset=int(d["opset"]),
                class_names=tuple(d.get("class_names", ())),
                score_range=_score_range(d.get("score_range", (0.0, 1.0))),
                default_threshold=float(d.get("default_threshold", 0.5)),
                flow=d.get("flow"), features=d.get("features"),
                calibration=d.get("calibration"), parity=d.get("parity"),
                export=dict(d.get("export") or {}),
            )
        except ManifestError:
            raise
        except (TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"malformed manifest: {exc}") from exc

    # -- checks ------------------------------------------------------------------------------------
    def check_consistency(self) -> None:
        """Stage names unique, every stage file hashed, links name real stage inputs/outputs."""
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ManifestError(f"stage names repeat: {names}")
        _check_numbers(self)
        for s in self.stages:
            if s.file not in self.files:
                raise ManifestError(f"stage {s.name!r} file {s.file} is not listed in 'files'")
            extra = list(s.variants.values()) + [f for e in s.engines
                                                 for f in (e["file"], e.get("metadata")) if f]
            for f in extra:
                if f not in self.files:
                    raise ManifestError(f"stage {s.name!r} lists {f}, which is not in 'files'")
        _check_features(self)
        for link in self.links:
            for end, kind in ((link.source, "output"), (link.target, "input")):
                stage, _, tensor = end.partition("/")
                if kind == "output" and stage == FEATURES_STAGE:
                    continue  # computed by the runtime (checked by _check_features)
                try:
                    spec = self.stage(stage)
                    (spec.output if kind == "output" else spec.input)(tensor)
                except KeyError as exc:
                    raise ManifestError(f"link {link.source} -> {link.target}: {exc.args[0]}") \
                        from None

    def verify(self, artifact_dir: str | Path, *, signatures: bool = True) -> None:
        """Check versions, files (presence, SHA-256) and, with ``signatures``, each stage graph's
        declared inputs and outputs against the manifest. Raises :class:`ManifestError`."""
        folder = Path(artifact_dir)
        _check_edgevad_version(self.edgevad_version)
        self.check_consistency()
        for name, record in self.files.items():
            path = folder / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ManifestError(f"file {name!r} is not inside the artifact folder")
            if not path.is_file():
                raise ManifestError(f"file {name} listed in {folder / MANIFEST_FILE} is missing "
                                    f"from {folder}")
            got = sha256_file(path)
            if got != record.sha256:
                raise ManifestError(f"file {name} changed since export (sha256 expected "
                                    f"{record.sha256}, got {got}) in {folder}")
        if signatures:
            for stage in self.stages:
                check_signature(folder / stage.file, stage)


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _check_edgevad_version(made_by: str) -> None:
    ours, theirs = _major(__version__), _major(made_by)
    if ours is not None and theirs is not None and theirs > ours:
        raise ManifestError(f"artifact was exported by edgevad {made_by}, a newer major version "
                            f"than this runtime ({__version__}); upgrade edgevad")


# --- ONNX graph signatures ------------------------------------------------------------------------

def onnx_signature(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Declared (inputs, outputs) of an ONNX file, symbolic axes as their names.

    Uses ``onnx`` when installed (reads the protobuf, no external data); otherwise builds an ONNX
    Runtime session without graph optimisations and reads its metadata.
    """
    path = Path(path)
    try:
        import onnx
    except ImportError:
        pass  # ONNX Runtime reads the signature (below)
    else:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ManifestError(f"file {path.name} is not a readable ONNX model: {exc}") from exc
        graph = model.graph
        initializers = {i.name for i in graph.initializer}

        def spec(v) -> TensorSpec:
            t = v.type.tensor_type
            shape = tuple(d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value")
                                                           else "?") for d in t.shape.dim)
            return TensorSpec(v.name, shape, _DTYPES.get(t.elem_type, str(t.elem_type)))

        return ([spec(v) for v in graph.input if v.name not in initializers],
                [spec(v) for v in graph.output])
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ManifestError(f"file {path.name} is not a loadable ONNX model: {exc}") from exc

    def ort_spec(v) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else (d or "?") for d in v.shape)
        return TensorSpec(v.name, shape, _ORT_DTYPES.get(v.type, v.type))

    return [ort_spec(v) for v in sess.get_inputs()], [ort_spec(v) for v in sess.get_outputs()]


def check_signature(path: str | Path, stage: StageSpec) -> None:
    """Raise :class:`ManifestError` unless the graph at ``path`` declares ``stage``'s inputs and
    outputs: same names in the same order, same rank and dtype, fixed axes equal, symbolic axes
    symbolic."""
    path = Path(path)
    inputs, outputs = onnx_signature(path)
    for kind, declared, expected in (("inputs", inputs, stage.inputs),
                                     ("outputs", outputs, stage.outputs)):
        got_names = [t.name for t in declared]
        want_names = [t.name for t in expected]
        if got_names != want_names:
            raise ManifestError(f"file {path.name} (stage {stage.name!r}) declares {kind} "
                                f"{got_names}, the manifest says {want_names}")
        for got, want in zip(declared, expected):
            where = f"file {path.name} (stage {stage.name!r}) {kind[:-1]} {want.name!r}"
            if got.rank != want.rank:
                raise ManifestError(f"{where} has rank {got.rank} {list(got.shape)}, the manifest "
                                    f"says rank {want.rank} {list(want.shape)}")
            if got.dtype != want.dtype:
                raise ManifestError(f"{where} is {got.dtype}, the manifest says {want.dtype}")
            for axis, (g, w) in enumerate(zip(got.shape, want.shape)):
                if isinstance(w, int) and g != w:
                    raise ManifestError(f"{where} axis {axis} is {g}, the manifest says {w}")
                if isinstance(w, str) and not isinstance(g, str):
                    raise ManifestError(f"{where} axis {axis} is fixed to {g}, the manifest says "
                                        f"it is symbolic ({w!r})")


# --- Loading --------------------------------------------------------------------------------------

def read_manifest(artifact_dir: str | Path) -> Manifest:
    """Parse ``manifest.json`` of an artifact folder without checking the files."""
    folder = Path(artifact_dir)
    if not folder.is_dir():
        raise ManifestError(f"artifact folder {folder} does not exist (or is not a folder)")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{folder} has no {MANIFEST_FILE}: not an exported edgevad artifact "
                            "(or the export did not finish)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    try:
        return Manifest.from_dict(data)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc


def load_manifest(artifact_dir: str | Path, verify: bool = True) -> Manifest:
    """Read an artifact's manifest and, with ``verify`` (default), check it against the files:
    edgevad major version, every listed file present with its SHA-256, each stage graph's
    declared inputs/outputs. Raises :class:`ManifestError` naming the file and the problem."""
    manifest = read_manifest(artifact_dir)
    if verify:
        manifest.verify(artifact_dir)
    else:
        _check_edgevad_version(manifest.edgevad_version)
    return manifest
