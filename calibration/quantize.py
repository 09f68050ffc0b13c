"""INT8 graphs from an fp32 stage graph and a calibration set, with ONNX Runtime's quantizer.

Path in, path out; torch-free, so it runs on the target device too. Three converters:

- :func:`quantize_ort_int8`: static QDQ for ONNX Runtime on CPU. uint8 activations and int8
  per-channel weights (U8S8): measured here, Conv3d becomes a fused QLinearConv only with uint8
  activations. The graph is first pre-processed (``quant_pre_process``: shape inference and
  fp32 graph optimisation). The first convolution (I3D's 7x7x7 over RGB, R3D's 3x7x7) stays
  fp32 by default: measured slower in int8 than in fp32 on CPU.
- :func:`quantize_trt_qdq`: the graph TensorRT's explicit quantization wants: Q/DQ pairs with
  int8 activations and weights, symmetric (zero point 0), per-channel weights, on Conv, MatMul
  and Gemm only, biases left in float (TensorRT's parser takes int8 Q/DQ only).
- :func:`quantize_dynamic_int8`: weights-only int8 for LSTM/MatMul heads (activations quantized
  on the fly), for heads where no calibration is needed.
- :func:`quantize_openvino_int8`: the graph OpenVINO runs fastest, made by OpenVINO's own
  post-training quantizer (NNCF, ``nncf.quantize`` on the ONNX graph, same calibration set), Q/DQ
  placed where OpenVINO's int8 kernels fuse them, first convolution included, and NNCF's
  overflow fix on the first layer so CPUs without VNNI do not saturate. Measured on an AVX2-only
  EPYC, I3D backbone alone: 2.1x ONNX Runtime fp32 under OpenVINO, against 1.7x for the U8S8
  graph above (ONNX Runtime runs this graph slower than fp32: it is OpenVINO's only).

Ranges are computed once per set and method: when the installed ONNX Runtime supports a
calibration cache (1.31+), the second graph reuses the first one's ranges.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevad_calibration.dataset import CalibrationError, resolve_method

log = logging.getLogger(__name__)

__all__ = ["Int8Config", "QuantReport", "check_scales", "check_symmetric_qdq", "first_conv_nodes",
           "finite_pads", "non_finite_pad_nodes",
           "nncf_available", "preprocess_graph", "qdq_summary", "quantize_dynamic_int8",
           "quantize_openvino_int8", "quantize_ort_int8", "quantize_trt_qdq"]

TRT_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class Int8Config:
    """How to quantize. ``method``: minmax, entropy or percentile. ``exclude_first_conv``: keep
    the convolution(s) that read the graph input in fp32 (ONNX Runtime CPU graphs only).
    ``exclude_nodes``: further node names to keep in fp32. ``percentile``: for the percentile
    method."""

    method: str = "minmax"
    per_channel: bool = True
    exclude_first_conv: bool = True
    exclude_nodes: tuple[str, ...] = ()
    percentile: float = 99.999
    preprocess: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", resolve_method(self.method))
        if not 0 < self.percentile <= 100:
            raise CalibrationError(f"percentile must be in (0, 100], got {self.percentile}")


@dataclass
class QuantReport:
    """What a converter did (kept in the manifest)."""

    kind: str
    path: str
    method: str | None
    activations: str | None
    weights: str
    per_channel: bool
    symmetric: bool
    excluded_nodes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    qdq: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _q():
    try:
        from onnxruntime import quantization
    except ImportError as exc:  # pragma: no cover - runtime dependency
        raise CalibrationError("INT8 quantization needs onnxruntime's quantization tools "
                               "(pip install onnxruntime onnx)") from exc
    return quantization


def _method(name: str):
    q = _q()
    return {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
            "percentile": q.CalibrationMethod.Percentile}[resolve_method(name)]


def preprocess_graph(src: str | Path, dst: str | Path) -> Path:
    """``quant_pre_process``: symbolic and ONNX shape inference plus ONNX Runtime's fp32 graph
    optimisations (BatchNorm folding and the like), the documented first step of static
    quantization. Falls back to ONNX shape inference alone if the symbolic pass fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # noqa: BLE001 - symbolic shape inference gives up on some graphs
        log.warning("symbolic shape inference failed on %s (%s); using ONNX shape inference",
                    src.name, exc)
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


def first_conv_nodes(model_or_path) -> list[str]:
    """Names of the Conv nodes that read a graph input, directly or through shape-only nodes
    (Pad, Transpose, Reshape, Cast, ...): the first layer of a video backbone."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) \
        else model_or_path
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    passthrough = {"Pad", "Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze",
                   "Slice", "Concat"}
    found, seen = [], set()
    frontier = [i.name for i in graph.input if i.name not in inits]
    while frontier:
        tensor = frontier.pop()
        for node in consumers.get(tensor, []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "Conv":
                found.append(node.name)
            elif node.op_type in passthrough:
                frontier.extend(node.output)
    return found


def non_finite_pad_nodes(model_or_path) -> list[str]:
    """Pad nodes that pad with an infinity (TF "SAME" max pooling, as in I3D, pads with -inf):
    their outputs have an infinite range that no int8 scale holds (and that ONNX Runtime's
    histogram calibrators refuse)."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) \
        else model_or_path
    graph = model.graph
    found = []
    for node in graph.node:
        if node.op_type != "Pad" or len(node.input) < 3 or not node.input[2]:
            continue
        value = _const(graph, node.input[2])
        if value is not None and not np.all(np.isfinite(value)):
            found.append(node.name)
    return found


def finite_pads(path: str | Path) -> list[str]:
    """Rewrite, in the graph file at ``path``, every Pad value of -inf (+inf) to -1e30 (+1e30):
    the same max pooling for any activation a network produces, and a finite range that the
    histogram calibrators can bin (float32's own extremes overflow their bin widths). Returns the
    names of those Pad nodes (quantization keeps them fp32)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    names = non_finite_pad_nodes(model)
    if not names:
        return []
    big = 1e30
    pads = {n.input[2] for n in graph.node if n.name in names}
    for init in graph.initializer:
        if init.name in pads:
            a = np.nan_to_num(numpy_helper.to_array(init), neginf=-big, posinf=big)
            init.CopyFrom(numpy_helper.from_array(a.astype(np.float32), init.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in pads:
            a = np.nan_to_num(numpy_helper.to_array(node.attribute[0].t), neginf=-big,
                              posinf=big)
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(a.astype(np.float32)))
    onnx.save(model, str(path))
    return names


def check_scales(path: str | Path) -> None:
    """Raise :class:`CalibrationError` if a quantization scale is not a positive finite number
    (a tensor with an infinite or NaN range in the calibration data)."""
    import onnx

    graph = onnx.load(str(path)).graph
    bad = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 1:
            scale = _const(graph, node.input[1])
            if scale is not None and not np.all(np.isfinite(scale) & (scale > 0)):
                bad.append(node.input[0])
    if bad:
        raise CalibrationError(f"{Path(path).name}: tensors {sorted(set(bad))[:5]} got no finite "
                               "int8 scale (infinite or NaN values in the calibration data)")


def _supports_cache() -> bool:
    return "calibration_cache_path" in inspect.signature(_q().quantize_static).parameters


def _static(src: Path, dst: Path, reader, *, config: Int8Config, activation, weight,
            op_types: Sequence[str] | None, exclude: list[str], extra: dict,
            cache: Path | None) -> None:
    q = _q()
    reader.rewind() if hasattr(reader, "rewind") else None
    kwargs = {}
    if cache is not None and _supports_cache():
        kwargs["calibration_cache_path"] = str(cache)
    extra = dict(extra)
    if config.method == "percentile":
        extra.setdefault("CalibPercentile", config.percentile)
        extra.setdefault("CalibTensorRangeSymmetric", False)  # the quantizer symmetrises if asked
    q.quantize_static(
        str(src), str(dst), reader, quant_format=q.QuantFormat.QDQ,
        op_types_to_quantize=list(op_types) if op_types else None,
        per_channel=config.per_channel, reduce_range=False, activation_type=activation,
        weight_type=weight, nodes_to_exclude=exclude or None,
        calibrate_method=_method(config.method), extra_options=extra, **kwargs)


def _prepared(src: Path, work: Path, config: Int8Config) -> tuple[Path, list[str]]:
    """The graph to quantize (pre-processed, infinite pads made finite) and those pads' names."""
    dst = work / f"{src.stem}.pre.onnx"
    if config.preprocess:
        preprocess_graph(src, dst)
    else:
        shutil.copyfile(src, dst)
    return dst, finite_pads(dst)


def quantize_ort_int8(src: str | Path, dst: str | Path, reader, config: Int8Config | None = None,
                      *, cache: str | Path | None = None,
                      op_types: Sequence[str] | None = None) -> QuantReport:
    """Static U8S8 QDQ graph for ONNX Runtime (module doc). ``reader``: a calibration reader
    (``get_next() -> dict | None``). ``cache``: a JSON file for the computed ranges (reused by a
    later call with the same method, e.g. :func:`quantize_trt_qdq`)."""
    config = config or Int8Config()
    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    q = _q()
    with tempfile.TemporaryDirectory(prefix="edgevad-q-") as work:
        pre, pads = _prepared(src, Path(work), config)
        exclude = list(config.exclude_nodes)
        if config.exclude_first_conv:
            exclude += [n for n in first_conv_nodes(pre) if n not in exclude]
        exclude += [n for n in pads if n not in exclude]
        _static(pre, dst, reader, config=config, activation=q.QuantType.QUInt8,
                weight=q.QuantType.QInt8, op_types=op_types, exclude=exclude, extra={},
                cache=None if cache is None else Path(cache))
    check_scales(dst)
    report = QuantReport("ort-static-qdq-u8s8", dst.name, config.method, "uint8", "int8",
                         config.per_channel, False, exclude, round(time.perf_counter() - t0, 2),
                         qdq_summary(dst))
    log.info("int8 (ONNX Runtime) %s in %.1f s: %s", dst.name, report.seconds, report.qdq)
    return report


def quantize_trt_qdq(src: str | Path, dst: str | Path, reader, config: Int8Config | None = None,
                     *, cache: str | Path | None = None) -> QuantReport:
    """Symmetric int8 Q/DQ graph for TensorRT's explicit quantization (module doc); checked
    with :func:`check_symmetric_qdq` before it is returned."""
    config = config or Int8Config()
    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    q = _q()
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    with tempfile.TemporaryDirectory(prefix="edgevad-q-") as work:
        pre, pads = _prepared(src, Path(work), config)
        exclude = list(config.exclude_nodes) + [n for n in pads if n not in config.exclude_nodes]
        _static(pre, dst, reader, config=config, activation=q.QuantType.QInt8,
                weight=q.QuantType.QInt8, op_types=TRT_OP_TYPES, exclude=exclude,
                extra=extra, cache=None if cache is None else Path(cache))
    check_scales(dst)
    summary = check_symmetric_qdq(dst)
    report = QuantReport("tensorrt-explicit-qdq-s8s8", dst.name, config.method, "int8", "int8",
                         config.per_channel, True, exclude,
                         round(time.perf_counter() - t0, 2), summary)
    log.info("int8 Q/DQ (TensorRT) %s in %.1f s: %s", dst.name, report.seconds, summary)
    return report


def nncf_available() -> bool:
    """Whether OpenVINO's quantizer (``nncf``, in the ``train`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def quantize_openvino_int8(src: str | Path, dst: str | Path, reader,
                           config: Int8Config | None = None, *, samples: int | None = None
                           ) -> QuantReport:
    """OpenVINO's int8 graph of ``src`` (module doc), as ONNX Q/DQ: NNCF's post-training
    quantization (``PERFORMANCE`` preset: symmetric int8 weights per channel, activations as
    OpenVINO's CPU plugin takes them) over the calibration ``reader``'s samples (re-iterable).
    ``config.exclude_nodes`` stay fp32. Needs ``nncf`` (``pip install nncf``)."""
    config = config or Int8Config()
    src, dst = Path(src), Path(dst)
    try:
        import nncf
    except ImportError as exc:
        raise CalibrationError("OpenVINO's int8 graph needs NNCF: pip install nncf (the train "
                               "extra installs it)") from exc
    import onnx

    t0 = time.perf_counter()
    samples = samples or len(reader)
    ignored = (nncf.IgnoredScope(names=list(config.exclude_nodes), validate=False)
               if config.exclude_nodes else None)
    model = nncf.quantize(onnx.load(str(src)), nncf.Dataset(reader), subset_size=samples,
                          preset=nncf.QuantizationPreset.PERFORMANCE,
                          **({"ignored_scope": ignored} if ignored else {}))
    onnx.save(model, str(dst))
    check_scales(dst)
    report = QuantReport(f"openvino-nncf-{getattr(nncf, '__version__', '?')}", dst.name,
                         "nncf-default", "int8/uint8", "int8", True, True,
                         list(config.exclude_nodes),
                         round(time.perf_counter() - t0, 2), qdq_summary(dst))
    log.info("int8 (OpenVINO, NNCF) %s in %.1f s: %s", dst.name, report.seconds, report.qdq)
    return report


def quantize_dynamic_int8(src: str | Path, dst: str | Path,
                          op_types: Sequence[str] = ("LSTM", "MatMul", "Gemm")) -> QuantReport:
    """Weights-only int8 (dynamic quantization) of ``op_types``; no calibration data."""
    import tempfile

    import onnx

    q = _q()
    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    # the exporter's stale intermediate shapes (value_info) make the quantizer's shape inference
    # fail on LSTM heads ("differ in dimension 0"): drop them and let it infer afresh
    model = onnx.load(str(src))
    del model.graph.value_info[:]
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        clean = Path(tmp) / src.name
        onnx.save(model, str(clean))
        q.quantize_dynamic(str(clean), str(dst), op_types_to_quantize=list(op_types),
                           per_channel=False, weight_type=q.QuantType.QInt8)
    return QuantReport("ort-dynamic", dst.name, None, "dynamic uint8", "int8", False, False, [],
                       round(time.perf_counter() - t0, 2), qdq_summary(dst))


# --- Inspecting quantized graphs ------------------------------------------------------------------

def _const(graph, name: str):
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            from onnx import helper

            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
    return None


def qdq_summary(path: str | Path) -> dict:
    """Counts of quantization nodes and quantized operators in a graph."""
    import onnx

    graph = onnx.load(str(path)).graph
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                            "DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeLinear",
                            "ConvInteger"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def check_symmetric_qdq(path: str | Path) -> dict:
    """Raise :class:`CalibrationError` unless every QuantizeLinear/DequantizeLinear of the graph
    is int8 with all zero points 0 (what TensorRT's explicit quantization takes); return counts
    and the number of per-channel scales."""
    import onnx

    graph = onnx.load(str(path)).graph
    bad, per_channel = [], 0
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for node in graph.node:
        if node.op_type not in counts:
            continue
        counts[node.op_type] += 1
        if node.domain not in ("", "ai.onnx"):
            bad.append(f"{node.name}: domain {node.domain!r} (TensorRT reads standard ONNX Q/DQ)")
            continue
        if len(node.input) < 3 or not node.input[2]:
            bad.append(f"{node.name}: no zero point (defaults to uint8)")
            continue
        zp = _const(graph, node.input[2])
        scale = _const(graph, node.input[1])
        if zp is None:
            bad.append(f"{node.name}: zero point is not a constant")
            continue
        if zp.dtype != np.int8:
            bad.append(f"{node.name}: zero point dtype {zp.dtype}, not int8")
        elif np.any(zp != 0):
            bad.append(f"{node.name}: zero point {zp.reshape(-1)[:4].tolist()} is not 0")
        if scale is not None and scale.size > 1:
            per_channel += 1
    if bad:
        raise CalibrationError(f"{Path(path).name} is not a symmetric int8 Q/DQ graph: "
                               + "; ".join(bad[:5]) + (f" (and {len(bad) - 5} more)"
                                                       if len(bad) > 5 else ""))
    if counts["QuantizeLinear"] == 0:
        raise CalibrationError(f"{Path(path).name} has no QuantizeLinear node: nothing was "
                               "quantized")
    return {**counts, "per_channel_scales": per_channel}


def copy_graph(src: str | Path, dst: str | Path) -> Path:
    shutil.copyfile(src, dst)
    return Path(dst)
