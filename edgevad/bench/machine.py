"""What a benchmark ran on: CPU, cores, memory, library versions; and the process's memory.

Peak memory is the resident set's high-water mark (``VmHWM``), which counts what ONNX Runtime
allocates outside Python (``tracemalloc`` sees none of it). On Linux the mark is reset before
each artifact (writing ``5`` to ``/proc/self/clear_refs``), so in ``--compare`` every artifact
gets its own peak; elsewhere ``resource.getrusage`` gives the process's lifetime peak, and the
report says which one it is.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["machine_info", "memory_now", "release_freed_memory", "reset_peak_memory", "versions"]

_STATUS = Path("/proc/self/status")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


_ISA = ("sse4_2", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
        "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")
"""CPU features that decide which ONNX Runtime kernels run (VNNI/AMX: fast INT8)."""


def _cpu_features() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("flags", "features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in _ISA if f in have]
    except OSError:
        pass
    return []


def _physical_cores() -> int | None:
    try:
        pairs = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            if line.startswith("physical id"):
                phys = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
            elif not line.strip() and core is not None:
                pairs.add((phys, core))
                phys = core = None
        return len(pairs) or None
    except OSError:
        return None


def _memory_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_model": _cpu_model(), "cpu_features": _cpu_features(),
            "logical_cores": os.cpu_count(),
            "physical_cores": _physical_cores(), "usable_cores": affinity,
            "memory_total_mb": _memory_total_mb(), "platform": platform.platform(),
            "machine": platform.machine(), "hostname": platform.node(), "load_average": load}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    """Versions without importing anything heavy (torch is looked up, never imported)."""
    from edgevad import __version__

    out: dict[str, str | None] = {"python": sys.version.split()[0], "edgevad": __version__}
    for key, dists in (("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
                       ("numpy", ("numpy",)),
                       ("opencv", ("opencv-python-headless", "opencv-python",
                                   "opencv-contrib-python-headless", "opencv-contrib-python")),
                       ("tensorrt", ("tensorrt",)), ("openvino", ("openvino",)),
                       ("tensorrt_rtx", ("tensorrt-rtx-cu12",)), ("torch", ("torch",))):
        out[key] = next((v for v in map(_version, dists) if v), None)
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError:  # pragma: no cover - opencv is a runtime dependency
        pass
    return out


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def release_freed_memory() -> None:
    """Give memory freed by an earlier artifact back to the OS (glibc keeps it otherwise), so the
    next artifact's RSS starts from the same place."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): RSS stays high, peaks stay right
            pass


def reset_peak_memory() -> bool:
    """Reset the high-water mark (Linux); False where only the lifetime peak is known."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_now() -> dict:
    """``rss_mb`` now and ``peak_rss_mb`` (since the last reset, or the process's lifetime)."""
    rss, hwm = _status_kb("VmRSS"), _status_kb("VmHWM")
    if hwm is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        hwm = peak // 1024 if sys.platform == "darwin" else peak  # macOS: bytes
    return {"rss_mb": None if rss is None else round(rss / 1024, 1),
            "peak_rss_mb": round(hwm / 1024, 1)}
