"""How records name input files: the file's name and SHA-256, and a path only where it travels.

Checkpoints, artifact manifests, feature-bag and calibration files, provenance, eval reports and
bench JSON all say which files they were made from, and all of them travel: the package ships
checkpoints, an artifact's ``manifest.json`` goes onto every camera it is deployed to, feature
files are shared. An absolute path in them names the build machine's folders (``/home/alice/``,
``/tmp/ped2/``), which leaks that machine's layout into firmware images, makes two exports of the
same model from two checkouts differ for no reason, and cannot be followed on any other machine
anyway. What identifies a file everywhere is its SHA-256; what finds it is its name.

So every writer names a file through :func:`record_path` / :func:`file_record`:

- ``name``: the file's name; ``sha256``: its content (the writer's own key where it has one);
- ``path`` (mode ``relative``, the default): where the file lies relative to a root the user
  named. A path the user wrote relative (on the command line, or in a list file) is kept as
  written, so a checkout that holds the same layout finds it again (``../shared/data/...``). A
  path written absolute keeps only what lies below the folder holding the item the user named:
  a file named on the command line keeps its name, a video found in a named folder
  ``/home/alice/ped2/training`` is ``training/01.mp4``, a video listed in ``/home/alice/list.txt``
  as ``clips/a.mp4`` is ``clips/a.mp4``.
- mode ``name``: the file's name only; mode ``absolute``: the full absolute path, for users who
  want it and know their records stay on their machine (``edgevad --record-paths absolute``,
  or ``EDGEVAD_RECORD_PATHS=absolute`` for library use).

:func:`machine_paths` finds absolute paths in text (tests scan package data, artifacts and feature
files with it). Torch-free, standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePath, PureWindowsPath

from edgevad.errors import EdgevadError

__all__ = ["ENV_VAR", "RECORD_PATHS", "RecordPathsError", "distinct_paths", "file_record",
           "machine_paths", "portable_fields", "portable_sources", "record_path", "record_paths",
           "redact_credentials", "set_record_paths"]

RECORD_PATHS = ("relative", "name", "absolute")
"""How a record names a file's location (module doc); ``relative`` by default."""
ENV_VAR = "EDGEVAD_RECORD_PATHS"

_mode: str | None = None


class RecordPathsError(EdgevadError):
    """An unknown ``--record-paths`` mode."""


def _check(mode: str) -> str:
    key = str(mode).strip().lower()
    if key not in RECORD_PATHS:
        raise RecordPathsError(f"--record-paths must be one of {', '.join(RECORD_PATHS)}, "
                               f"got {mode!r}")
    return key


def set_record_paths(mode: str | None) -> None:
    """Set the mode for this process (``edgevad --record-paths``); None: back to the default
    (``$EDGEVAD_RECORD_PATHS``, else ``relative``)."""
    global _mode
    _mode = None if mode is None else _check(mode)


def record_paths(mode: str | None = None) -> str:
    """The mode in force: ``mode`` if given, else the process's, else ``$EDGEVAD_RECORD_PATHS``,
    else ``relative``."""
    return _check(mode or _mode or os.environ.get(ENV_VAR) or "relative")


def _is_absolute(p: PurePath | str) -> bool:
    text = str(p)
    return Path(text).is_absolute() or PureWindowsPath(text).is_absolute() \
        or bool(PureWindowsPath(text).drive)


def record_path(path: str | Path, *, named: str | Path | None = None,
                mode: str | None = None) -> str:
    """How a record names ``path`` (module doc). ``named``: the item the user named that led to
    ``path`` (the folder or list file it was found through; default ``path`` itself)."""
    mode = record_paths(mode)
    p = Path(path)
    if mode == "absolute":
        return Path(os.path.abspath(p)).as_posix()
    if mode == "name":
        return p.name
    if not _is_absolute(p):
        return p.as_posix()
    base = Path(named) if named is not None else p
    if _is_absolute(base):
        try:
            return p.relative_to(base.parent).as_posix()
        except ValueError:
            pass
    return p.name


def file_record(path: str | Path, *, named: str | Path | None = None, sha256: str | None = None,
                mode: str | None = None, **extra) -> dict:
    """``{"name", "path", "sha256", **extra}`` of a file (``sha256`` computed unless given);
    ``path`` is left out where it would only repeat ``name``."""
    from edgevad.fetch.hashing import sha256_file

    p = Path(path)
    where = record_path(p, named=named, mode=mode)
    return {"name": p.name, **({"path": where} if where != p.name else {}),
            "sha256": sha256 if sha256 is not None else sha256_file(p), **extra}


def portable_sources(sources: Iterable[dict], mode: str | None = None) -> list[dict]:
    """Source records as the mode wants them, for records written before this rule or in another
    mode: an absolute ``path`` becomes what :func:`record_path` makes of it, a path that only
    repeats the name is dropped (mode ``absolute`` keeps them as they are)."""
    mode = record_paths(mode)
    out = []
    for src in sources:
        src = dict(src)
        where = src.get("path")
        if isinstance(where, str) and mode != "absolute":
            where = record_path(where, mode=mode)
            if where == (src.get("name") or Path(where).name):
                src.pop("path")
            else:
                src["path"] = where
        out.append(src)
    return out


def distinct_paths(paths: Iterable[str | Path], mode: str | None = None) -> dict[str, str]:
    """``{path: how a record names it}`` for paths that must stay told apart (the artifacts a
    bench compares): :func:`record_path`, except that absolute paths keep as many trailing
    folders as it takes to differ (``/tmp/a/art``, ``/tmp/b/art`` -> ``a/art``, ``b/art``)."""
    names = list(dict.fromkeys(str(p) for p in paths))
    out = {p: record_path(p, mode=mode) for p in names}
    if record_paths(mode) == "relative":
        absolute = [p for p in names if _is_absolute(p)]
        for p in absolute:
            parts = Path(p).parts[1:] or (Path(p).name,)
            for n in range(1, len(parts) + 1):
                tail = "/".join(parts[-n:])
                if all(q == p or not Path(q).as_posix().endswith("/" + tail) for q in absolute):
                    break
            out[p] = tail
    return out


def portable_fields(doc, keys: Iterable[str], mode: str | None = None):
    """A copy of the JSON-like ``doc`` with the string values of ``keys`` (at any depth) named by
    :func:`distinct_paths`: for documents that carry paths as plain strings (bench JSON)."""
    keys = frozenset(keys)
    found: list[str] = []

    def collect(d):
        if isinstance(d, dict):
            for k, v in d.items():
                if k in keys and isinstance(v, str) and v:
                    found.append(v)
                else:
                    collect(v)
        elif isinstance(d, list):
            for v in d:
                collect(v)

    def rename(d):
        if isinstance(d, dict):
            return {k: (names[v] if k in keys and isinstance(v, str) and v else rename(v))
                    for k, v in d.items()}
        if isinstance(d, list):
            return [rename(v) for v in d]
        return d

    collect(doc)
    names = distinct_paths(found, mode)
    return rename(doc)


_UNIX = r"(?<![\w.~-])/(?:tmp|home|work|root|Users|mnt|media|var|opt|srv|private|data|scratch)/"
_DRIVE = r"(?<![\w])[A-Za-z]:[\\/](?=[\w.$ \\-])"  # C:\x, C:/x, JSON's C:\\x; not https://


def machine_paths(text: str | bytes, *, drives: bool = True) -> list[str]:
    """Absolute paths of machine folders in ``text`` (``/tmp/...``, ``/home/...``, ``/work/...``,
    ``C:\\...``): each with up to 60 characters after it, for a message. Empty when portable.
    ``drives=False`` looks for the Unix roots only (binary files: a letter, a colon and a slash
    turn up by chance in megabytes of weights)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    pattern = f"{_UNIX}|{_DRIVE}" if drives else _UNIX
    return [text[m.start():m.start() + 60].split("\n")[0] for m in re.finditer(pattern, text)]


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@")


def redact_credentials(text: str) -> str:
    """``rtsp://user:secret@cam/stream`` -> ``rtsp://***@cam/stream``, anywhere in ``text``.

    Camera URLs carry their credentials; run reports, events files, plots and the terminal
    name sources by what the user typed, and those records travel further than the password
    should."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", str(text))
