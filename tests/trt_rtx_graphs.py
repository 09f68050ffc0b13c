"""The TensorRT-bound graphs of every zoo model, as the exporter writes them, for
``test_tensorrt_rtx_build.py``: a module of its own so that worker processes can import it.

Exporting (PyTorch's dynamo exporter, ONNX Runtime's quantizer) is most of the build test's
time and mostly one core's Python, so the pixel-stage graphs (the big ones: I3D at 16 and 64
frames, dmrm's motion stream, R3D-34) are exported in a pool of worker processes while the main
process exports the heads and builds engines; on 2 cores that overlaps the exports with each
other and with the builder.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from edgevad.artifact import zoo
from edgevad.artifact.manifest import StageSpec, TensorSpec
from edgevad.runtime.engine_meta import GpuInfo
from edgevad_calibration.tensorrt_build import MAX_BATCH, build_engine, engine_plan, stage_profile

PRECISIONS = ("fp32", "fp16", "int8")
AHEAD_OF_TIME = GpuInfo(name="none (TensorRT-RTX ahead-of-time build on CPU)",
                        compute_capability=(0, 0))
MODELS = zoo.list_heads()


def clip_len_of(head: zoo.HeadSpec, bb: zoo.BackboneSpec) -> int:
    return head.clip_len or bb.geometry.clip_len  # exporter._geometry: DAM's 64-frame clips


def stages_of(model: str) -> list[tuple]:
    """The graph keys of ``model``'s stages, as ``edgevad export -m MODEL`` writes them."""
    head = zoo.get_head(model)
    bb = zoo.get_backbone(head.default_backbone)
    # motion-prior: no backbone graph (the runtime computes its flow statistics), the head only
    keys = [("backbone", bb.name, clip_len_of(head, bb))] if bb.kind == "network" else []
    if head.motion_backbone:
        keys.append(("motion", head.motion_backbone, None))
    return keys + [("head", model, None)]


class Reader:
    """One seeded random sample, re-iterable (ONNX Runtime's calibration protocol): ranges do
    not change a graph's structure."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        self.feeds, self._done = feeds, False

    def get_next(self):
        if self._done:
            self._done = False
            return None
        self._done = True
        return self.feeds

    def rewind(self):
        self._done = False


class Graphs:
    """Each distinct stage graph exported once (fp32, fp16, Q/DQ), as a StageSpec with
    variants; engines built once per (graph, precision)."""

    def __init__(self, folder: Path, trt=None):
        self.folder = folder
        self.trt = trt
        self.stages: dict[tuple, StageSpec] = {}
        self.pending: dict[tuple, Future] = {}
        self.built: dict[tuple, object] = {}

    def prefetch(self, keys: list[tuple], workers: int | None = None) -> ProcessPoolExecutor:
        """Export ``keys`` (pixel stages) in worker processes; :meth:`stage` waits for them."""
        import multiprocessing

        workers = workers or max(1, min(2, os.cpu_count() or 1))
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        for key in keys:
            if key not in self.stages and key not in self.pending:
                self.pending[key] = pool.submit(export_stage, str(self.folder), key)
        return pool

    def stage(self, key: tuple) -> StageSpec:
        if key not in self.stages:
            future = self.pending.pop(key, None)
            self.stages[key] = future.result() if future is not None else self._export(key)
        return self.stages[key]

    def _export(self, key: tuple) -> StageSpec:
        from edgevad_calibration.quantize import Int8Config, quantize_trt_qdq
        from edgevad_export.onnx_export import BackboneAdapter, torch_to_onnx
        from edgevad_export.precision import make_fp16

        role, name, clip_len = key
        tag = "-".join(str(k) for k in key if k is not None)
        fp32 = self.folder / f"{tag}.onnx"
        torch.manual_seed(0)
        calib: dict[str, np.ndarray] | None
        if role in ("backbone", "motion"):
            from edgevad_export.models.factory import create_backbone

            spec = zoo.get_backbone(name)
            g = spec.geometry
            shape = (g.channels, clip_len or g.clip_len, int(g.size[0]), int(g.size[1]))
            module = create_backbone(name, random_init=True).eval()
            fmap = role == "backbone" and spec.feature_map
            outputs = [TensorSpec("features", ("batch", spec.feature_dim))]
            if fmap:
                with torch.no_grad():
                    t = int(module.forward_feature_map(torch.zeros(1, *shape)).shape[1])
                outputs.append(TensorSpec("feature_map", ("batch", t, spec.feature_dim)))
            inp = "clip" if role == "backbone" else "flow"
            inputs = [TensorSpec(inp, ("batch", *shape))]
            torch_to_onnx(BackboneAdapter(module, feature_map=fmap), (torch.randn(2, *shape),),
                          fp32, [inp], [o.name for o in outputs], dynamic_batch=True)
            calib = {inp: np.random.default_rng(0).standard_normal((1, *shape),
                                                                   dtype=np.float32)}
        else:
            inputs, outputs, calib = self._export_head(name, fp32)
        stage = StageSpec(name=role, file=fp32.name, role=role, model=name, inputs=tuple(inputs),
                          outputs=tuple(outputs))
        variants = {"fp32": fp32.name,
                    "fp16": make_fp16(fp32, self.folder / f"{tag}.fp16.onnx").name}
        if calib is not None:  # precision.apply_precision: every pixel stage, non-LSTM heads
            qdq = self.folder / f"{tag}.int8-qdq.onnx"
            quantize_trt_qdq(fp32, qdq, Reader(calib), Int8Config(method="minmax"))
            variants["int8_qdq"] = qdq.name
        from dataclasses import replace

        return replace(stage, variants=variants)

    def _export_head(self, name: str, path: Path):
        """exporter._export_stages' head branch: DAM with its state explicit, segment heads with
        a symbolic segment axis (joint's is fixed)."""
        from edgevad_export.models.factory import create_head
        from edgevad_export.onnx_export import DAMAdapter, torch_to_onnx

        spec = zoo.get_head(name)
        bb = zoo.get_backbone(spec.default_backbone)
        module = create_head(name, backbone=bb.name, random_init=True).eval()
        D = bb.feature_dim
        if "clip_map" in spec.inputs:
            bb_stage = self.stage(("backbone", bb.name, clip_len_of(spec, bb)))
            t = bb_stage.output("feature_map").shape[1]
            shape = ("batch", t, D)
            inputs = [TensorSpec(n, shape) for n in spec.inputs]
            outputs = [TensorSpec(n, ("batch",)) for n in spec.outputs]
            outputs.append(TensorSpec("next_prev_map", shape))
            torch_to_onnx(DAMAdapter(module), tuple(torch.randn(2, t, D) for _ in inputs), path,
                          list(spec.inputs), [o.name for o in outputs], dynamic_batch=True)
            return inputs, outputs, None  # LSTM head: fp32 or dynamic int8, no Q/DQ graph
        fixed = name == "joint"
        S = spec.segments or 32
        seg: int | str = S if fixed else "segments"
        dims = {n: D for n in spec.inputs}
        if spec.motion_backbone:
            dims["motion"] = zoo.get_backbone(spec.motion_backbone).feature_dim
        inputs = [TensorSpec(n, ("batch", seg, dims[n])) for n in spec.inputs]
        outputs = [TensorSpec("scores", ("batch", seg))]
        for n in spec.outputs[1:]:
            outputs.append(TensorSpec(n, ("batch", len(spec.class_names))))
        dyn = None if fixed else {**{n: {1: "segments"} for n in spec.inputs},
                                  "scores": {1: "segments"}}
        torch_to_onnx(module, tuple(torch.randn(2, S, dims[n]) for n in spec.inputs), path,
                      list(spec.inputs), [o.name for o in outputs], dynamic_batch=True,
                      dynamic_axes=dyn)
        from edgevad_export.precision import tensorrt_qdq_head

        # joint's LSTM head: as precision.apply_precision; motion-prior: fp32 only (no weights)
        if bb.kind != "network" or not tensorrt_qdq_head(path):
            return inputs, outputs, None
        rng = np.random.default_rng(0)
        calib = {n: rng.standard_normal((1, S, dims[n]), dtype=np.float32) for n in spec.inputs}
        return inputs, outputs, calib

    def build(self, key: tuple, precision: str):
        """(graph file, metadata) of the engine, or (None, why) where the export writes no
        graph for it (an LSTM head's int8: the artifact gets an fp16 engine instead)."""
        if (key, precision) in self.built:
            return self.built[key, precision]
        stage = self.stage(key)
        if precision == "int8" and "int8_qdq" not in stage.variants:
            result = (None, "no Q/DQ graph (build_artifact_engines builds fp16 instead)")
        else:
            trt = self.trt
            graph, flags, strong = engine_plan(trt, stage, precision)
            profile = stage_profile(stage, max_batch=MAX_BATCH, segments=32)
            meta = build_engine(self.folder / graph,
                                self.folder / f"{Path(graph).stem}.{precision}.engine",
                                stage=stage, precision=precision, profile=profile, flags=flags,
                                strongly_typed=strong, trt=trt, gpu=AHEAD_OF_TIME,
                                optimization_level=0)
            result = (graph, meta)
        self.built[key, precision] = result
        return result


def export_stage(folder: str, key: tuple) -> StageSpec:
    """Worker: one pixel stage's graphs (fp32, fp16, Q/DQ) written into ``folder``."""
    return Graphs(Path(folder))._export(key)


def pixel_keys() -> list[tuple]:
    """The distinct pixel-stage graphs of the zoo, biggest first (they bound the pool's time)."""
    keys = []
    for model in MODELS:
        for key in stages_of(model):
            if key[0] != "head" and key not in keys:
                keys.append(key)
    return sorted(keys, key=lambda k: -(k[2] or 16))

