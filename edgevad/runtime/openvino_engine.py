"""OpenVINO stage runner: the artifact's ONNX graphs on Intel CPUs, iGPUs and NPUs.

Why a second CPU backend: OpenVINO runs the same ONNX files faster than ONNX Runtime on many x86
CPUs (its own kernels, bf16 where the CPU has it, int8 from the artifact's Q/DQ graph as is), and
it is the only way onto Intel iGPUs and NPUs. Nothing is converted ahead of time: the stage's
ONNX file is compiled at load (``ov.Core().compile_model(onnx, device, config)``), with the
compiled blob kept in ``CACHE_DIR`` so the next start skips the compilation.

**Precision is explicit.** On a CPU with bf16 OpenVINO's *default* inference precision is bf16,
so an "fp32" artifact would silently return bf16 scores. Every compile therefore sets
``INFERENCE_PRECISION_HINT``: ``f32`` unless the caller asks for ``bf16`` (or ``f16``); int8
artifacts run their Q/DQ graphs as they are (the hint applies to the ops left in float). What
the device actually compiled (read back from the compiled model: a CPU without bf16 runs f32
even when bf16 is asked, and says so in a warning) is :attr:`OpenVinoEngine.precision` and part
of :attr:`OpenVinoEngine.device`.

**int8 runs OpenVINO's own graph.** An int8 stage exported with OpenVINO and NNCF installed has
``variants["int8_openvino"]``: the same calibration set quantized by NNCF, OpenVINO's quantizer,
which places Q/DQ where OpenVINO's int8 kernels fuse them (first convolution included, with its
overflow fix for CPUs without VNNI). :func:`openvino_graph` picks it; without it the stage's own
file (ONNX Runtime's U8S8 graph) runs. Measured on an AVX2-only EPYC, I3D backbone alone: NNCF's
graph 2.1x ONNX Runtime fp32, the U8S8 graph 1.7x (docs/backends.md).

**State stays explicit.** DAM's previous clip map is an ordinary input and output of the head,
carried by the stream (:mod:`edgevad.runtime.pipeline`), exactly as with ONNX Runtime. OpenVINO's
``MakeStateful`` is not used: it returned NaN or mixed-up results (2026.4.1) when a state output
is a plain pass-through of an input, and it would tie one state to one infer request, where the
engines here are shared by every stream.

``openvino`` is imported lazily: ``import edgevad`` works without it (``pip install
'edgevad[openvino]'``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgevad.artifact.manifest import StageSpec
from edgevad.errors import MissingDependencyError
from edgevad.runtime.stage_runner import EngineError, StageRunner

__all__ = ["OV_DEVICES", "OV_PRECISIONS", "OpenVinoEngine", "OpenVinoOptions", "import_openvino",
           "openvino_available", "openvino_graph", "openvino_version"]

log = logging.getLogger(__name__)

OV_INSTALL = "the openvino backend needs OpenVINO: pip install 'edgevad[openvino]'"
OV_DEVICES = ("CPU", "GPU", "NPU", "AUTO")
"""Device names users pass; ``GPU.1``, ``AUTO:GPU,CPU`` and the like are passed through too."""
OV_PRECISIONS = {"f32": "f32", "fp32": "f32", "float32": "f32", "bf16": "bf16",
                 "bfloat16": "bf16", "f16": "f16", "fp16": "f16", "float16": "f16"}
CACHE_ENV = "EDGEVAD_OPENVINO_CACHE"
"""Where compiled blobs go (default: ``openvino/`` in edgevad's cache; ``off`` disables)."""


def import_openvino():
    """``import openvino``, or a :class:`MissingDependencyError` saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError(OV_INSTALL) from exc
    return openvino


def openvino_available() -> bool:
    """Whether ``import openvino`` works here (without importing it for nothing twice)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def openvino_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("openvino")
    except Exception:  # noqa: BLE001 - not installed
        return None


def openvino_graph(stage: StageSpec) -> str:
    """The graph file OpenVINO runs for ``stage``: OpenVINO's own int8 graph where the export
    made one (module doc), else the stage's file."""
    if stage.precision == "int8" and stage.variants.get("int8_openvino"):
        return stage.variants["int8_openvino"]
    return stage.file


@lru_cache(maxsize=1)
def _core():
    """One ``ov.Core`` per process: it holds the device plugins, loaded once."""
    return import_openvino().Core()


@dataclass(frozen=True)
class OpenVinoOptions:
    """How to compile a stage. ``None`` fields are resolved inside (Polygraphy's rule: unset CLI
    flags never override library defaults)."""

    device: str | None = None
    """``CPU`` (default), ``GPU``, ``NPU``, ``AUTO`` or any device string OpenVINO accepts."""
    precision: str | None = None
    """Inference precision hint: ``f32`` (default), ``bf16`` or ``f16``."""
    threads: int | None = None
    """``INFERENCE_NUM_THREADS`` (CPU); default: OpenVINO's."""
    cache_dir: str | Path | None = None
    """``CACHE_DIR`` for compiled blobs; default ``$EDGEVAD_OPENVINO_CACHE`` or the edgevad
    cache's ``openvino/``; ``"off"`` disables caching."""

    def resolved_device(self) -> str:
        return (self.device or "CPU").strip().upper()

    def resolved_precision(self) -> str:
        key = (self.precision or "f32").strip().lower()
        if key not in OV_PRECISIONS:
            raise EngineError(f"unknown OpenVINO precision {self.precision!r}; choose f32, bf16 "
                              "or f16")
        return OV_PRECISIONS[key]

    def resolved_cache_dir(self) -> Path | None:
        value = self.cache_dir if self.cache_dir is not None else os.environ.get(CACHE_ENV)
        if value is not None and str(value).strip().lower() in ("", "off", "none", "0"):
            return None
        if value is not None:
            path = Path(value).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            return path
        from edgevad.fetch.cache import cache_dir

        return cache_dir("openvino")


def _check_device(core, device: str) -> None:
    base = device.split(":", 1)[0].split(".", 1)[0]
    if base in ("AUTO", "MULTI", "HETERO", "BATCH"):
        return
    available = list(core.available_devices)
    if device not in available and not any(d.split(".", 1)[0] == device for d in available):
        raise EngineError(f"OpenVINO device {device!r} is not available here (available: "
                          f"{', '.join(available) or 'none'}); use --device CPU or AUTO")


def _supported(core, device: str) -> set[str]:
    try:
        return {str(k) for k in core.get_property(device, "SUPPORTED_PROPERTIES")}
    except Exception:  # noqa: BLE001 - AUTO and virtual devices answer differently
        return set()


def _type_name(value) -> str:
    """``<Type: 'float32'>`` -> ``f32`` (OpenVINO's short names, as the hint takes them)."""
    text = str(getattr(value, "to_string", lambda: value)())
    text = text.strip().lower().removeprefix("<type: '").removesuffix("'>")
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text, text)


class OpenVinoEngine(StageRunner):
    """A stage's ONNX graph compiled by OpenVINO; one infer request (the Detector runs its
    engines on one thread), outputs copied out so a later run cannot overwrite them."""

    backend = "openvino"

    def __init__(self, path: str | Path, stage: StageSpec, options: OpenVinoOptions | None = None):
        import time

        ov = import_openvino()
        self.stage = stage
        self.options = options = options or OpenVinoOptions()
        core = _core()
        device = options.resolved_device()
        asked = options.resolved_precision()
        _check_device(core, device)
        props = _supported(core, device)
        config: dict[str, object] = {}
        if not props or "INFERENCE_PRECISION_HINT" in props:
            config["INFERENCE_PRECISION_HINT"] = asked
        if options.threads and (not props or "INFERENCE_NUM_THREADS" in props):
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        if not props or "PERFORMANCE_HINT" in props:
            config["PERFORMANCE_HINT"] = "LATENCY"  # one request at a time, batches across streams
        cache = options.resolved_cache_dir()
        if cache is not None:
            config["CACHE_DIR"] = str(cache)
        t0 = time.perf_counter()
        try:
            # the path (not a read_model'd Model): on a cache hit OpenVINO skips reading and
            # transforming the ONNX graph as well as compiling it
            self.compiled = core.compile_model(str(path), device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its own message
            raise EngineError(f"OpenVINO cannot compile {Path(path).name} for stage "
                              f"{stage.name!r} on {device}: {exc}") from exc
        self.compile_s = time.perf_counter() - t0
        self.cache_dir = cache
        self.graph = Path(path).name
        try:
            ran = _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # noqa: BLE001 - a device without the property
            ran = asked
        self.precision = ran
        self.requested_precision = asked
        if ran != asked:
            try:
                caps = ", ".join(str(c) for c in core.get_property(
                    device, "OPTIMIZATION_CAPABILITIES"))
            except Exception:  # noqa: BLE001 - AUTO has none
                caps = ""
            log.warning("OpenVINO %s runs stage %s in %s, not the %s asked for (device "
                        "capabilities: %s)", device, stage.name, ran, asked, caps or "unknown")
        try:
            name = str(core.get_property(device.split(":", 1)[0], "FULL_DEVICE_NAME"))
        except Exception:  # noqa: BLE001 - AUTO has no single name
            name = device
        self.device_name = device
        self.device = f"OpenVINO {ov.__version__.split('-')[0]} {device} ({name}), {ran}"
        names = {n for port in self.compiled.outputs for n in port.get_names()}
        missing = [n for n in stage.output_names if n not in names]
        if missing:
            raise EngineError(f"{Path(path).name} compiled by OpenVINO lacks outputs {missing} "
                              f"of stage {stage.name!r} (it has {sorted(names)})")
        self._outputs = {n: self.compiled.output(n) for n in stage.output_names}
        # One infer request per calling thread: a request runs one inference at a time ("Infer
        # Request is busy" from a second thread), while the compiled model is shared safely.
        # ONNX Runtime sessions allow concurrent runs, and engines are shared by every stream
        # and every Detector of a process, so this runner must allow them too.
        self._requests = threading.local()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._checked_feeds(feeds)
        try:
            request = getattr(self._requests, "request", None)
            if request is None:
                request = self._requests.request = self.compiled.create_infer_request()
            result = request.infer(feeds)
        except Exception as exc:
            raise EngineError(f"OpenVINO failed on stage {self.stage.name!r} with inputs "
                              f"{ {k: list(v.shape) for k, v in feeds.items()} }: {exc}") from exc
        return {n: np.array(result[port], dtype=np.float32, copy=True)
                for n, port in self._outputs.items()}
