"""Feature protocols: how features were made, so a head is only ever fed features made its way.

A head learns the features of one backbone, with one set of weights, cut into clips one way and
pooled into segments one way. Features made any other way (another stride, a centre crop, BGR,
no mean subtraction...) still have the right shape, and a head scores them without complaint,
wrongly. So every feature-bag file (``edgevad extract``), checkpoint (``edgevad train``) and
artifact (``edgevad export``) records a :class:`FeatureProtocol`, and ``edgevad eval``,
``edgevad export`` and the runtime refuse to combine records that differ
(:func:`check_compatible`), naming what differs.

Fields that one side does not record (``None``: e.g. the UCF-Crime files in ``../shared`` carry
no extraction record) are not compared; the edgevad version is recorded but never compared.

Named protocols (:data:`NAMED`) describe features made outside edgevad, e.g.
``ucf-crime-r3d34``, the upstream recipe of the UCF-Crime R3D-34 features
(:mod:`edgevad.artifact.ucf_crime`). Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgevad.artifact import ucf_crime, zoo
from edgevad.errors import EdgevadError

__all__ = ["FeatureProtocol", "NAMED", "ProtocolMismatchError", "check_compatible",
           "check_manifest_protocol", "differences", "export_geometry", "feature_file_protocol",
           "get_named", "head_protocol", "manifest_backbone_protocol", "stamp_manifest"]

GEOMETRY_LABELS = {
    "size": "input size", "resize": "resize", "crop": "crop", "color": "colour order",
    "scale": "pixel scale", "mean": "normalisation mean", "std": "normalisation std",
    "channels": "input channels", "layout": "clip layout", "flow_bound": "flow bound",
}
"""Geometry keys compared, with the words a message uses (clip_len and stride are top-level)."""

LABELS = {
    "backbone": "backbone", "weights_sha256": "backbone weights (sha256)",
    "feature_dim": "feature size", "clip_len": "clip length (frames)",
    "stride": "clip stride (frames)", "clip_scheme": "clip scheme", "input": "input",
    "segments": "segments per video", "segment_scheme": "segment scheme",
}
RANDOM_WEIGHTS = "random"
"""``weights_sha256`` of a backbone with random (untrained) weights."""


class ProtocolMismatchError(EdgevadError):
    """A head and the features or backbone it would be combined with were made differently."""


@dataclass(frozen=True)
class FeatureProtocol:
    """How a feature was made. ``None`` everywhere means "not recorded" (never compared)."""

    backbone: str | None = None
    weights_sha256: str | None = None
    """The backbone weights' identity: the registry member's or the user file's SHA-256, or
    ``"random"``."""
    feature_dim: int | None = None
    clip_len: int | None = None
    stride: int | None = None
    geometry: dict | None = None
    """:class:`edgevad.artifact.zoo.InputGeometry` as a dict: resize, crop, colour, normalisation..."""
    clip_scheme: str | None = None
    """How clips are cut at the end of a video (and, for named protocols, clip layout quirks)."""
    input: str | None = None
    segments: int | None = None
    segment_scheme: str | None = None
    name: str | None = None
    """A named protocol (:data:`NAMED`) this record follows, if any; informative only."""
    edgevad_version: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict | None) -> FeatureProtocol:
        """From an extraction record (the ``protocol`` of a bag file) or a :meth:`to_dict`."""
        if not data:
            return cls()
        d = dict(data)
        if d.get("protocol_name") and not d.get("name"):
            d["name"] = d["protocol_name"]
        if "clips" in d and "clip_scheme" not in d:
            d["clip_scheme"] = d["clips"]
        if d.get("weights") == RANDOM_WEIGHTS and not d.get("weights_sha256"):
            d["weights_sha256"] = RANDOM_WEIGHTS
        geometry = d.get("geometry")
        if isinstance(geometry, dict):
            d["geometry"] = _plain(geometry)
            d.setdefault("clip_len", geometry.get("clip_len"))
            d.setdefault("stride", geometry.get("stride"))
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def merged(self, other: FeatureProtocol) -> FeatureProtocol:
        """This record with the fields it lacks taken from ``other``."""
        return replace(self, **{f.name: getattr(other, f.name) for f in fields(self)
                                if getattr(self, f.name) is None
                                and getattr(other, f.name) is not None})


def differences(a: FeatureProtocol, b: FeatureProtocol) -> list[str]:
    """What differs between two records, as ``"clip stride (frames): 8 vs 16"`` lines.

    Only fields both record are compared; the edgevad version and the protocol name never are.
    """
    out = []
    for key, label in LABELS.items():
        va, vb = getattr(a, key), getattr(b, key)
        if va is not None and vb is not None and _plain(va) != _plain(vb):
            out.append(f"{label}: {_show(va)} vs {_show(vb)}")
    if a.geometry is not None and b.geometry is not None:
        for key, label in GEOMETRY_LABELS.items():
            if key in a.geometry and key in b.geometry and not _same(a.geometry[key],
                                                                     b.geometry[key]):
                out.append(f"{label}: {_show(a.geometry[key])} vs {_show(b.geometry[key])}")
    return out


def check_compatible(head: FeatureProtocol, other: FeatureProtocol, *, head_what: str = "the head",
                     other_what: str = "the features", hint: str = "") -> None:
    """Raise :class:`ProtocolMismatchError` naming every difference, else return None."""
    diffs = differences(head, other)
    if diffs:
        raise ProtocolMismatchError(
            f"Feature protocol mismatch: {head_what} was trained on features made differently "
            f"from {other_what} (the head's value first): " + "; ".join(diffs) + "."
            + (f" {hint}" if hint else "")
        )


# --- Where records come from ----------------------------------------------------------------------

def feature_file_protocol(path: str | Path) -> FeatureProtocol:
    """The record of a feature-bag ``.npz``: its ``protocol`` (``edgevad extract``) and its
    feature size; a file without ``protocol`` gives just the feature size."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        record = (json.loads(str(data["protocol"].reshape(-1)[0])) if "protocol" in data.files
                  else {})
        dim = int(data["features"].shape[-1]) if "features" in data.files else None
    proto = FeatureProtocol.from_dict(record)
    proto = proto if proto.feature_dim is not None else replace(proto, feature_dim=dim)
    steps = int(record.get("map_steps") or 1)  # clip maps (extract --feature-map): t x D each
    if steps > 1 and proto.feature_dim is not None:
        return replace(proto, feature_dim=proto.feature_dim // steps)
    return proto


def extraction_record(feature_file: str | None) -> dict | None:
    """The extraction ``protocol`` of the file(s) a head was trained on (``"a.npz + b.npz"`` for
    concatenated splits: kept only when every part records the same protocol), else None.

    ``edgevad train`` stores it in the checkpoint (``protocol["extraction"]``)."""
    if not feature_file:
        return None
    records = []
    for part in str(feature_file).split(" + "):
        path = Path(part)
        if not path.is_file():
            return None
        try:
            proto = feature_file_protocol(path)
        except Exception:  # an unreadable file is the bag loader's business
            return None
        if proto.backbone is None:
            return None
        records.append(proto)
    if any(differences(records[0], r) for r in records[1:]):
        return None
    return records[0].to_dict()


def head_protocol(meta: dict) -> FeatureProtocol:
    """The protocol of a checkpoint's training features (``checkpoint.json`` as a dict): the
    training backbone and feature size, completed by the extraction record of the feature file
    (``protocol["extraction"]``) or by a named protocol (``protocol["name"]``)."""
    proto = meta.get("protocol") or {}
    record = FeatureProtocol.from_dict(proto.get("extraction"))
    dim, steps = proto.get("feature_dim"), int(proto.get("map_steps") or 1)
    top = FeatureProtocol(backbone=proto.get("backbone"),
                          feature_dim=None if dim is None else int(dim) // steps)  # per map step
    if proto.get("name"):
        record = record.merged(get_named(proto["name"]))
    for named in NAMED.values():  # a backbone that exists for a named protocol implies it
        if named.backbone == top.backbone:
            record = record.merged(named)
    return top.merged(record)


def backbone_protocol(backbone: str, geometry: zoo.InputGeometry | dict,
                      weights_sha256: str | None, *, segments: int | None = None,
                      segment_scheme: str | None = None, feature_dim: int | None = None
                      ) -> FeatureProtocol:
    """What a backbone stage produces: its name, weights, geometry and segment protocol."""
    g = geometry.to_dict() if isinstance(geometry, zoo.InputGeometry) else dict(geometry)
    return FeatureProtocol(
        backbone=backbone, weights_sha256=weights_sha256,
        feature_dim=feature_dim or zoo.get_backbone(backbone).feature_dim,
        clip_len=g.get("clip_len"), stride=g.get("stride"), geometry=_plain(g),
        segments=segments, segment_scheme=segment_scheme)


def weights_identity(record: Any) -> str | None:
    """The SHA-256 that identifies a manifest :class:`~edgevad.artifact.manifest.WeightsRecord` (or its
    dict) as extraction records it; ``"random"`` for random weights."""
    get = record.get if isinstance(record, dict) else lambda k: getattr(record, k, None)
    if get("source") == "random":
        return RANDOM_WEIGHTS
    return get("registry_sha256") or get("file_sha256")


# --- Export and runtime ---------------------------------------------------------------------------

def export_geometry(meta: dict | None, head_spec: zoo.HeadSpec, backbone: str,
                    geometry: zoo.InputGeometry, weights_record: Any) -> zoo.InputGeometry:
    """The geometry to export a checkpoint's head with, after checking its protocol.

    The head's recorded clip stride is adopted (and its clip length, unless the head's zoo spec
    fixes one: DAM's 64-frame clips); then every other recorded field must match the backbone
    stage: name, weights, resize, crop, colour, normalisation, segments. Raises
    :class:`ProtocolMismatchError`; without a checkpoint record, returns ``geometry`` unchanged.
    """
    if meta is None:
        return geometry
    head = head_protocol(meta)
    if head.stride is not None:
        geometry = replace(geometry, stride=int(head.stride))
    if head.clip_len is not None and head_spec.clip_len is None:
        geometry = replace(geometry, clip_len=int(head.clip_len))
    stage = backbone_protocol(backbone, geometry, weights_identity(weights_record))
    check_compatible(head, stage, head_what=f"head {meta.get('head')!r}",
                     other_what=f"backbone {backbone!r}",
                     hint="Export with the backbone, weights and geometry the head was trained "
                          "with, or train a head on features of this backbone.")
    return geometry


def stamp_manifest(manifest, meta: dict | None):
    """The manifest with the head's training protocol recorded (``model["feature_protocol"]``)
    and its segment count and scheme, for :func:`check_manifest_protocol`; unchanged without a
    record. The scheme says how the training features were pooled into segments (e.g. the
    ``ucf-crime-r3d34`` loop); the runtime itself scores clip by clip and never segments."""
    if meta is None:
        return manifest
    head = head_protocol(meta)
    protocol = manifest.protocol
    if head.segments is not None and protocol.mode == "segments" and not protocol.segments_fixed:
        protocol = replace(protocol, segments=int(head.segments))
    if head.segment_scheme is not None and protocol.mode == "segments":
        protocol = replace(protocol, segment_scheme=head.segment_scheme)
    return replace(manifest, protocol=protocol,
                   model={**manifest.model, "feature_protocol": head.to_dict()})


def manifest_backbone_protocol(manifest) -> FeatureProtocol:
    """What an artifact's backbone stage produces, from its manifest alone."""
    stage = manifest.stage("backbone")
    dim = None
    try:
        shape = stage.output("features").shape
        dim = shape[-1] if isinstance(shape[-1], int) else None
    except KeyError:
        pass
    p = manifest.protocol
    return backbone_protocol(manifest.backbones.get("backbone", stage.model),
                             stage.geometry or {}, weights_identity(manifest.weights.get("backbone")),
                             segments=p.segments, segment_scheme=p.segment_scheme,
                             feature_dim=dim)


def check_manifest_protocol(manifest) -> None:
    """For the runtime: refuse an artifact whose head was trained on features its backbone stage
    does not make (:class:`ProtocolMismatchError` naming the difference). Artifacts without a
    recorded head protocol (random heads, older exports) pass."""
    recorded = (manifest.model or {}).get("feature_protocol")
    if not recorded:
        return
    check_compatible(FeatureProtocol.from_dict(recorded), manifest_backbone_protocol(manifest),
                     head_what=f"head {manifest.head!r}", other_what="the artifact's backbone stage",
                     hint="The artifact is inconsistent: export it again from its checkpoint.")


# --- helpers --------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON-shaped: tuples to lists, recursively (records round-trip through JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)), abs(float(b)))
    return a == b


def _show(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, str) and len(value) > 70:
        return repr(value[:67] + "...")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


# --- Named protocols ------------------------------------------------------------------------------

NAMED: dict[str, FeatureProtocol] = {
    ucf_crime.PROTOCOL_NAME: FeatureProtocol.from_dict(ucf_crime.protocol_record()),
}
"""Protocols of features made outside edgevad, by name (``ucf-crime-r3d34``)."""


def get_named(name: str) -> FeatureProtocol:
    if name not in NAMED:
        raise zoo.UnknownNameError(f"Unknown feature protocol {name!r}; known: "
                                   f"{', '.join(sorted(NAMED))}")
    return NAMED[name]
