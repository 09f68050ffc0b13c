"""TensorRT stage runner: a serialized engine from the artifact behind the :class:`Engine` interface.

Needs, on the target only: ``tensorrt`` (10 or 11: NVIDIA's index or JetPack) and ``cuda-python``
(``pip install cuda-python``) for device memory and streams. Both are imported lazily, so
``import edgevad`` works without them; a missing one is a :class:`MissingDependencyError` that
says what to install.

Before deserializing, the engine's metadata (``<engine>.json``, :mod:`edgevad.runtime.engine_meta`)
is checked against this machine's TensorRT version and GPU compute capability, and the engine's
SHA-256 against the manifest; an engine built elsewhere is refused with the command that rebuilds
it. Running uses TensorRT 10's I/O tensor API: ``set_input_shape`` per input,
``set_tensor_address`` per tensor, ``execute_async_v3`` on a CUDA stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevad.artifact.manifest import Manifest, StageSpec
from edgevad.errors import MissingDependencyError
from edgevad.fetch.hashing import sha256_file
from edgevad.runtime.engine_meta import (
    EngineMetadata,
    EngineMismatchError,
    GpuInfo,
    check_compatible,
    read_metadata,
)
from edgevad.runtime.stage_runner import EngineError, StageRunner, check_feeds

__all__ = ["TensorRTEngine", "cuda_runtime", "gpu_info", "import_tensorrt",
           "open_tensorrt_engine"]

TRT_INSTALL = ("TensorRT is not installed: pip install --extra-index-url https://pypi.nvidia.com "
               "tensorrt (x86_64 with an NVIDIA GPU), or on Jetson the python3-libnvinfer package "
               "of JetPack; edgevad supports TensorRT 10 and 11. Without it, run the ONNX graphs "
               "with --backend onnxruntime")
CUDA_INSTALL = ("the TensorRT backend needs cuda-python for device memory and streams: "
                "pip install cuda-python")


def import_tensorrt():
    """``import tensorrt`` (10 or 11), or a :class:`MissingDependencyError` saying how."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(TRT_INSTALL) from exc
    major = int(str(tensorrt.__version__).split(".")[0])
    if major < 10:
        raise MissingDependencyError(f"TensorRT {tensorrt.__version__} is too old: edgevad uses "
                                     "the TensorRT 10 I/O tensor API; install TensorRT 10 or 11")
    return tensorrt


def cuda_runtime():
    """The CUDA runtime bindings of cuda-python (``cuda.bindings.runtime`` in 12.6+, else the
    older ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise MissingDependencyError(CUDA_INSTALL) from exc
    return cudart


def _check(result, what: str):
    """cuda-python returns ``(err, *values)``; raise on an error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else values


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device``."""
    cudart = cuda_runtime()
    props = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name=name.rstrip("\x00"), compute_capability=(int(props.major),
                                                                 int(props.minor)))


def _np_dtype(trt, dtype) -> np.dtype:
    return np.dtype(trt.nptype(dtype))


class TensorRTEngine(StageRunner):
    """One deserialized engine and one execution context; device buffers grow with the batch."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, stage: StageSpec, meta: EngineMetadata,
                 gpu: GpuInfo):
        trt = import_tensorrt()
        self._cudart = cuda_runtime()
        self.stage = stage
        self.meta = meta
        self.device = f"{gpu.describe()}, TensorRT {trt.__version__}, {meta.precision}"
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        data = Path(engine_path).read_bytes()
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize {Path(engine_path).name} (see the "
                              "TensorRT log above); rebuild it on this machine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self._outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        missing = set(stage.input_names + stage.output_names) - set(names)
        if missing:
            raise EngineError(f"engine {Path(engine_path).name} lacks tensors {sorted(missing)} "
                              f"of stage {stage.name!r} (engine has {names})")
        self._dtypes = {n: _np_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self._stream = _check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr), "cudaFree")
            ptr = int(_check(self._cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.stage, feeds)
        cudart, kind = self._cudart, self._cudart.cudaMemcpyKind
        hosts = {}
        for name in self._inputs:
            x = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            hosts[name] = x
            if not self.context.set_input_shape(name, tuple(x.shape)):
                raise EngineError(f"stage {self.stage.name!r}: input {name!r} shape "
                                  f"{list(x.shape)} is outside the engine's profile "
                                  f"{self.meta.profile.get(name)}")
            ptr = self._buffer(name, x.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes,
                                          kind.cudaMemcpyHostToDevice, self._stream), "copy in")
            self.context.set_tensor_address(name, ptr)
        outs = {}
        for name in self._outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = np.empty(shape, dtype=self._dtypes[name])
            self.context.set_tensor_address(name, self._buffer(name, outs[name].nbytes))
        if not self.context.execute_async_v3(int(self._stream)):
            raise EngineError(f"TensorRT execution of stage {self.stage.name!r} failed")
        for name, y in outs.items():
            _check(cudart.cudaMemcpyAsync(y.ctypes.data, self._buffers[name][0], y.nbytes,
                                          kind.cudaMemcpyDeviceToHost, self._stream), "copy out")
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return {n: outs[n].astype(np.float32, copy=False) for n in self.output_names}

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:  # pragma: no cover - needs a GPU
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def resolve_engine(artifact_dir: str | Path, manifest: Manifest, stage: StageSpec,
                   precision: str | None = None) -> tuple[Path, EngineMetadata]:
    """The stage's engine file and its metadata, checked against the manifest (no tensorrt
    needed): listed, present, unchanged, and built from the graph the manifest lists."""
    folder = Path(artifact_dir)
    record = stage.engine(precision)
    if record is None:
        have = [e["precision"] for e in stage.engines]
        raise EngineError(
            f"stage {stage.name!r} has no TensorRT engine" + (f" for {precision}" if precision
                                                               else "")
            + (f" (engines: {', '.join(have)})" if have else "")
            + f" in {folder}; build them on the target: edgevad export --model "
            f"{manifest.head} ... --format tensorrt (or edgevad build-engines {folder})")
    path = folder / record["file"]
    if not path.is_file():
        raise EngineError(f"engine {record['file']} listed for stage {stage.name!r} is missing "
                          f"from {folder}")
    meta = read_metadata(path)
    listed = manifest.files.get(record["file"])
    got = sha256_file(path)
    if got != meta.engine_sha256 or (listed is not None and listed.sha256 != got):
        raise EngineMismatchError(f"engine {record['file']} changed since it was built (sha256 "
                                  f"{got}); rebuild it")
    if meta.onnx in manifest.files and manifest.files[meta.onnx].sha256 != meta.onnx_sha256:
        raise EngineMismatchError(f"engine {record['file']} was built from another {meta.onnx} "
                                  "than this artifact's; rebuild it")
    return path, meta


def open_tensorrt_engine(artifact_dir: str | Path, manifest: Manifest, stage: StageSpec,
                         precision: str | None = None, device: int = 0) -> TensorRTEngine:
    """Open ``stage``'s engine (the stage's precision, else the first listed) after checking it
    was built by this TensorRT for this GPU (:func:`check_compatible`)."""
    path, meta = resolve_engine(artifact_dir, manifest, stage, precision)
    trt = import_tensorrt()
    gpu = gpu_info(device)
    check_compatible(meta, trt.__version__, gpu, model=manifest.head, artifact=artifact_dir)
    return TensorRTEngine(path, stage, meta, gpu)
