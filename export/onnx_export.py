"""PyTorch -> ONNX, one graph at a time: the converter and the small adapters it exports.

:func:`torch_to_onnx` is a plain function with explicit arguments (path in the signature, no
hidden state): it tries the dynamo exporter (``torch.export`` based, the default since PyTorch
2.9), falls back to the legacy TorchScript exporter when that fails, and then checks that every
axis meant to be symbolic (the batch, and the segments of MIL-type heads) *is* symbolic in the
written graph, renaming it to the requested name; a graph that baked an example size in is an
:class:`OnnxExportError`. It drops the stack traces the dynamo exporter stores on every node
(they name the exporting machine's files: two checkouts would write different graphs). The
adapters wrap the zoo's modules so each stage's graph has the inputs and outputs the manifest
names.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgevad.errors import EdgevadError

log = logging.getLogger(__name__)
# torch's exporter warns, once per export, that torchvision (which edgevad never uses) is absent
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

__all__ = [
    "DEFAULT_OPSET", "BackboneAdapter", "DAMAdapter", "OnnxExport",
    "OnnxExportError", "drop_source_locations", "graph_axes", "torch_to_onnx",
]

DEFAULT_OPSET = 18
"""The dynamo exporter's lowest opset; ONNX Runtime >= 1.14 and TensorRT 10 run it."""


class OnnxExportError(EdgevadError):
    """A module could not be exported to ONNX, or the graph lacks a symbolic axis it needs."""


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`torch_to_onnx` did: the file, the exporter used and why a fallback happened."""

    path: Path
    exporter: str
    opset: int
    seconds: float
    bytes: int
    note: str | None = None


# --- Adapters -------------------------------------------------------------------------------------

class BackboneAdapter(nn.Module):
    """``clip -> features`` (``forward_features``), or ``-> (features, feature_map)`` with
    ``feature_map=True`` (I3D's ``forward_feature_map`` and its time average, computed once)."""

    def __init__(self, backbone: nn.Module, feature_map: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_map = feature_map
        if feature_map and not hasattr(backbone, "forward_feature_map"):
            raise ValueError(f"{type(backbone).__name__} has no forward_feature_map")

    def forward(self, clip: torch.Tensor):
        if self.feature_map:
            fmap = self.backbone.forward_feature_map(clip)
            return fmap.mean(dim=1), fmap
        return self.backbone.forward_features(clip)


class DAMAdapter(nn.Module):
    """DAM with its state made explicit: ``(clip_map, prev_map) -> (score, detection,
    clip_attention, next_prev_map)``, where ``next_prev_map`` is ``clip_map`` passed through, so
    the runtime feeds it back as the next clip's ``prev_map`` without knowing the head."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, clip_map: torch.Tensor, prev_map: torch.Tensor):
        score, detection, attention = self.head(clip_map, prev_map)
        return score, detection, attention, clip_map.clone()


# --- Converter ------------------------------------------------------------------------------------

def _dynamic_shapes(example_inputs: Sequence[torch.Tensor], input_names: Sequence[str],
                    axes: Mapping[str, Mapping[int, str]]) -> tuple:
    dims: dict[str, torch.export.Dim] = {}
    shapes = []
    for name, x in zip(input_names, example_inputs):
        spec = {}
        for axis, axis_name in axes.get(name, {}).items():
            if int(x.shape[axis]) < 2:
                raise OnnxExportError(f"example input {name!r} has size {int(x.shape[axis])} on "
                                      f"symbolic axis {axis_name!r}; use >= 2 (torch.export "
                                      "specialises sizes 0 and 1)")
            spec[axis] = dims.setdefault(axis_name, torch.export.Dim(axis_name, min=1))
        shapes.append(spec or None)
    return tuple(shapes)


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings that mean nothing to a user; keep them in the
    debug log instead."""
    buf = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(buf):
            yield
    if buf.getvalue().strip():
        log.debug("exporter output:\n%s", buf.getvalue())


def _export_dynamo(module, example_inputs, path, input_names, output_names, axes, opset):
    torch.onnx.export(
        module, tuple(example_inputs), str(path), input_names=list(input_names),
        output_names=list(output_names), opset_version=opset, dynamo=True,
        external_data=False, dynamic_shapes=_dynamic_shapes(example_inputs, input_names, axes),
        verbose=False, optimize=True,
    )


def _export_legacy(module, example_inputs, path, input_names, output_names, axes, opset):
    torch.onnx.export(
        module, tuple(example_inputs), str(path), input_names=list(input_names),
        output_names=list(output_names), opset_version=opset, dynamo=False,
        dynamic_axes={k: dict(v) for k, v in axes.items()} or None, do_constant_folding=True,
    )


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is somewhere in the chain: torch's dynamo exporter catches
    it and re-raises its own error, which must stop the export, not fall back to legacy."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _reason(exc: BaseException) -> str:
    """The root cause's first line, without terminal colour codes."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return f"{type(exc).__name__}: {(text.splitlines() or [''])[0][:300]}"


def graph_axes(path: str | Path) -> dict[str, list[int | str]]:
    """Declared shape of every graph input and output: ints, or the symbolic axis names."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(graph.input) + list(graph.output) if v.name not in inits}


def _fix_symbolic_axes(path: Path, input_names, output_names,
                       axes: Mapping[str, Mapping[int, str]]) -> None:
    """Fail unless every requested axis is symbolic; give those axes the requested names. Drop
    the exporter's source locations (:func:`drop_source_locations`) in the same pass."""
    import onnx

    model = onnx.load(str(path))
    changed = drop_source_locations(model)
    values = {v.name: v for v in list(model.graph.input) + list(model.graph.output)}
    got_in = [v.name for v in model.graph.input if v.name in set(input_names)]
    got_out = [v.name for v in model.graph.output]
    if got_in != list(input_names) or got_out != list(output_names):
        raise OnnxExportError(f"{path.name}: graph declares inputs {got_in} and outputs {got_out}, "
                              f"expected {list(input_names)} and {list(output_names)}")
    for name, spec in axes.items():
        dims = values[name].type.tensor_type.shape.dim
        for axis, axis_name in spec.items():
            if axis >= len(dims):
                raise OnnxExportError(f"{path.name}: {name!r} has rank {len(dims)}, no axis {axis}")
            dim = dims[axis]
            if not dim.dim_param:
                raise OnnxExportError(
                    f"{path.name}: axis {axis} ({axis_name}) of {name!r} was fixed to "
                    f"{dim.dim_value} by the export; it must be symbolic")
            if dim.dim_param != axis_name:
                dim.dim_param = axis_name
                changed = True
    if changed:
        onnx.save(model, str(path))


SOURCE_LOCATION_KEYS = ("pkg.torch.onnx.stack_trace",)
"""Node metadata the dynamo exporter fills with Python stack traces: absolute paths of the
exporting machine's files (``File "/home/alice/venv/.../container.py", line 253``)."""


def drop_source_locations(model) -> bool:
    """Remove the exporter's source locations from every node of ``model`` (an ``onnx``
    ModelProto, its subgraphs and functions included): stack-trace metadata and doc strings that
    name files. They name the exporting machine's folders, so two checkouts would write
    different graphs (and artifact hashes) from the same weights; nothing reads them. Returns
    whether anything was removed."""
    from onnx import AttributeProto

    from edgevad.artifact.records import machine_paths

    changed = False

    def nodes(graph):
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.type == AttributeProto.GRAPH:
                    yield from nodes(attr.g)
                elif attr.type == AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        yield from nodes(g)

    for node in [*nodes(model.graph), *(n for f in model.functions for n in f.node)]:
        keep = [p for p in node.metadata_props if p.key not in SOURCE_LOCATION_KEYS
                and not machine_paths(p.value)]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
            changed = True
        if node.doc_string and machine_paths(node.doc_string):
            node.doc_string = ""
            changed = True
    return changed


def torch_to_onnx(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    exporter: str = "auto",
) -> OnnxExport:
    """Export ``module`` (put in eval mode) to one self-contained ONNX file at ``path``.

    ``dynamic_batch``: axis 0 of every input and output is the symbolic ``"batch"``.
    ``dynamic_axes``: further symbolic axes, ``{tensor name: {axis: name}}`` (e.g.
    ``{"features": {1: "segments"}}``), for inputs and outputs. ``exporter``: ``"auto"`` (dynamo,
    then legacy if it raises), ``"dynamo"`` or ``"legacy"``. Raises :class:`OnnxExportError` when
    no exporter succeeds or an axis meant to be symbolic is fixed in the graph.
    """
    if exporter not in ("auto", "dynamo", "legacy"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'legacy', got {exporter!r}")
    path = Path(path)
    example_inputs = tuple(example_inputs)
    if len(example_inputs) != len(input_names):
        raise ValueError(f"{len(example_inputs)} example inputs for {len(input_names)} names")
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch:
        for name in (*input_names, *output_names):
            axes.setdefault(name, {})[0] = "batch"
    for name, spec in (dynamic_axes or {}).items():
        if name not in (*input_names, *output_names):
            raise ValueError(f"dynamic_axes names {name!r}, not an input or output")
        axes.setdefault(name, {}).update({int(k): str(v) for k, v in spec.items()})
    in_axes = {k: v for k, v in axes.items() if k in input_names}
    module = module.eval()
    attempts = ("dynamo", "legacy") if exporter == "auto" else (exporter,)
    errors: list[str] = []
    start = time.perf_counter()
    for kind in attempts:
        if path.exists():
            path.unlink()
        try:
            with _quiet(), torch.no_grad():
                fn = _export_dynamo if kind == "dynamo" else _export_legacy
                fn(module, example_inputs, path, input_names, output_names,
                   in_axes if kind == "dynamo" else axes, opset)
            if not path.is_file():
                raise OnnxExportError(f"the {kind} exporter wrote no file")
            _fix_symbolic_axes(path, input_names, output_names, axes)
        except Exception as exc:  # noqa: BLE001 - any exporter failure: try the next one
            if _interrupted(exc):  # Ctrl-C inside the exporter, wrapped as its own error
                raise KeyboardInterrupt from exc
            first = _reason(exc)
            errors.append(f"{kind}: {first}")
            log.warning("%s export of %s failed: %s", kind, path.name, first)
            continue
        note = f"fell back to legacy: {errors[0]}" if errors else None
        info = OnnxExport(path=path, exporter=kind, opset=opset,
                          seconds=time.perf_counter() - start, bytes=os.path.getsize(path),
                          note=note)
        log.info("exported %s with the %s exporter in %.1f s (%.1f MB)", path.name, kind,
                 info.seconds, info.bytes / 1e6)
        return info
    if path.exists():
        path.unlink()
    raise OnnxExportError(f"Cannot export {path.name} to ONNX: " + "; ".join(errors))
