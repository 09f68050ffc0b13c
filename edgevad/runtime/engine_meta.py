"""Metadata of a serialized TensorRT engine, kept beside it as JSON, and the check that it fits.

A TensorRT engine runs only with the TensorRT version that built it and on GPUs of the compute
capability it was built for. So every ``<stage>.<precision>.engine`` has a
``<stage>.<precision>.engine.json`` (not bytes glued onto the engine): TensorRT version, GPU name
and compute capability, the ONNX graph and its SHA-256, the model version from the manifest, the
precision and the optimisation profile. :func:`check_compatible` refuses an engine built
elsewhere with a message that says how to rebuild it. Pure Python: no tensorrt needed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgevad.errors import EdgevadError

__all__ = ["ENGINE_FORMAT", "EngineMetadata", "EngineMismatchError", "GpuInfo",
           "check_compatible", "metadata_path", "read_metadata", "rebuild_hint"]

ENGINE_FORMAT = "edgevad-tensorrt-engine"
SCHEMA_VERSION = 1


class EngineMismatchError(EdgevadError):
    """An engine was built by another TensorRT version or for another GPU, or its files changed."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    def describe(self) -> str:
        return f"{self.name} ({self.sm})"

    def to_dict(self) -> dict:
        return {"name": self.name, "compute_capability": list(self.compute_capability)}

    @classmethod
    def from_dict(cls, d: dict) -> GpuInfo:
        cc = d.get("compute_capability") or (0, 0)
        return cls(name=str(d.get("name", "?")), compute_capability=(int(cc[0]), int(cc[1])))


@dataclass(frozen=True)
class EngineMetadata:
    """What :func:`edgevad_calibration.tensorrt_build.build_engine` records about one engine."""

    engine: str
    """The engine's file name (beside the metadata)."""
    engine_sha256: str
    stage: str
    precision: str
    onnx: str
    """The graph it was built from (file name in the artifact) and its SHA-256."""
    onnx_sha256: str
    tensorrt_version: str
    gpu: GpuInfo
    profile: dict[str, dict[str, list[int]]]
    """Input name -> ``{"min", "opt", "max"}`` shapes of the (single) optimisation profile."""
    model_version: str = ""
    strongly_typed: bool = False
    flags: tuple[str, ...] = ()
    build_seconds: float | None = None
    created: str = ""
    edgevad_version: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gpu"] = self.gpu.to_dict()
        d["flags"] = list(self.flags)
        return {"format": ENGINE_FORMAT, "schema_version": SCHEMA_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> EngineMetadata:
        if not isinstance(d, dict) or d.get("format") != ENGINE_FORMAT:
            raise EngineMismatchError("not edgevad TensorRT engine metadata "
                                      f"(format {d.get('format') if isinstance(d, dict) else d!r})")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise EngineMismatchError(f"unknown engine metadata schema {d.get('schema_version')!r}")
        try:
            return cls(
                engine=str(d["engine"]), engine_sha256=str(d["engine_sha256"]),
                stage=str(d["stage"]), precision=str(d["precision"]), onnx=str(d["onnx"]),
                onnx_sha256=str(d["onnx_sha256"]),
                tensorrt_version=str(d["tensorrt_version"]), gpu=GpuInfo.from_dict(d["gpu"]),
                profile={k: {kk: [int(x) for x in vv] for kk, vv in v.items()}
                         for k, v in d["profile"].items()},
                model_version=str(d.get("model_version", "")),
                strongly_typed=bool(d.get("strongly_typed", False)),
                flags=tuple(d.get("flags", ())), build_seconds=d.get("build_seconds"),
                created=str(d.get("created", "")), edgevad_version=str(d.get("edgevad_version", "")),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EngineMismatchError(f"engine metadata is incomplete: {exc!r}") from exc

    def write(self, folder: str | Path) -> Path:
        path = metadata_path(Path(folder) / self.engine)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu.describe()}"


def metadata_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_metadata(engine_path: str | Path) -> EngineMetadata:
    """The metadata beside ``engine_path``; an engine without it is refused (it cannot be
    checked)."""
    path = metadata_path(engine_path)
    if not path.is_file():
        raise EngineMismatchError(f"engine {Path(engine_path).name} has no metadata file "
                                  f"{path.name}; rebuild it with edgevad")
    try:
        return EngineMetadata.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineMismatchError(f"cannot read {path}: {exc}") from exc


def _version_key(version: str) -> tuple[str, ...]:
    """major.minor.patch: engines are tied to the exact TensorRT release (the build number of
    a fourth component does not matter)."""
    return tuple(version.split("+")[0].split(".")[:3])


def rebuild_hint(model: str | None, precision: str, artifact: str | Path | None = None) -> str:
    model_arg = f"--model {model}" if model else "--model MODEL"
    out = f" --out {artifact}" if artifact else " --out DIR"
    return (f"rebuild the engines on this machine: edgevad export {model_arg} ... --format "
            f"tensorrt --precision {precision}{out} --overwrite (or edgevad build-engines "
            f"{artifact or 'DIR'}, which needs no torch)")


def check_compatible(meta: EngineMetadata, tensorrt_version: str, gpu: GpuInfo, *,
                     model: str | None = None, artifact: str | Path | None = None) -> None:
    """Raise :class:`EngineMismatchError` unless ``meta``'s engine can run with
    ``tensorrt_version`` on ``gpu`` (same major.minor.patch, same compute capability)."""
    problems = []
    if _version_key(meta.tensorrt_version) != _version_key(tensorrt_version):
        problems.append(f"TensorRT {meta.tensorrt_version} built it, this machine has TensorRT "
                        f"{tensorrt_version}")
    if tuple(meta.gpu.compute_capability) != tuple(gpu.compute_capability):
        problems.append(f"it was built for {meta.gpu.describe()}, this GPU is {gpu.describe()}")
    if problems:
        raise EngineMismatchError(
            f"TensorRT engine {meta.engine} (stage {meta.stage!r}, {meta.precision}) cannot run "
            f"here: " + "; ".join(problems) + ". TensorRT engines only run with the TensorRT "
            "release and GPU generation that built them; "
            + rebuild_hint(model, meta.precision, artifact))
