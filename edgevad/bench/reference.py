"""The PyTorch eager baseline: the artifact's model rebuilt from the zoo, timed on the same clips.

This is how the seed implementations run (a ``torch.nn.Module`` called in eager mode), so
``edgevad bench`` reports its engines' speed as a ratio to it. torch is imported here only, and
only when asked; without torch the reference is skipped with a reason.

The backbone gets the weights the manifest records when they are a zoo name already in the cache
(``edgevad weights fetch``), else random weights of the same architecture; heads get random
weights (the manifest names a checkpoint, not where it lives). Weights do not change the work a
dense network does, so the timing is the same; the record says which weights were used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgevad.artifact.manifest import Manifest, load_manifest
from edgevad.bench.stats import LatencyStats
from edgevad.bench.timing import clock
from edgevad.errors import EdgevadError

__all__ = ["eager_reference", "torch_available"]


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec(
        "edgevad_export") is not None


def _backbone(name: str, record) -> tuple[object, str]:
    from edgevad.errors import WeightsError
    from edgevad_export.models.factory import create_backbone

    if record is not None and record.source == "registry" and record.name:
        try:
            return create_backbone(name, record.name), f"registry {record.name}"
        except (WeightsError, OSError) as exc:
            note = f"random (registry weights {record.name} not available: {exc})"
            return create_backbone(name, random_init=True), note
    return create_backbone(name, random_init=True), "random"


def _shape(spec, batch: int, window: int) -> tuple[int, ...]:
    return tuple(batch if d == "batch" else (window if isinstance(d, str) else int(d))
                 for d in spec.shape)


def _build(manifest: Manifest, batch: int) -> tuple[dict, dict, dict]:
    """Modules, example inputs and a weights note per stage."""
    import torch

    from edgevad_export.models.factory import create_head
    from edgevad_export.onnx_export import BackboneAdapter, DAMAdapter

    window = int(manifest.protocol.window or (manifest.protocol.segments
                                              if manifest.protocol.segments_fixed else 1) or 1)
    modules, inputs, weights = {}, {}, {}
    for stage in manifest.stages:
        if stage.role == "head":
            continue
        net, weights[stage.name] = _backbone(manifest.backbones[stage.name],
                                             manifest.weights.get(stage.name))
        fmap = "feature_map" in stage.output_names
        modules[stage.name] = BackboneAdapter(net, feature_map=fmap).eval()
        inputs[stage.name] = [torch.randn(_shape(s, batch, window)) for s in stage.inputs]
    head_stage = manifest.stage("head")
    head = create_head(manifest.head, backbone=manifest.backbones.get("backbone"),
                       random_init=True)
    if "prev_map" in head_stage.input_names:
        head = DAMAdapter(head)
    modules["head"] = head.eval()
    inputs["head"] = [torch.randn(_shape(s, batch, window)) for s in head_stage.inputs]
    weights["head"] = "random"
    return modules, inputs, weights


def eager_reference(artifact_dir: str | Path, batch: int, warmup: int, iters: int,
                    threads: int | None = None) -> dict:
    """Time the artifact's stages in PyTorch eager at ``batch`` clips; ``{"skipped": why}`` when
    torch or the training side is not installed."""
    if not torch_available():
        return {"skipped": "torch and edgevad_export are not installed (pip install "
                           "'edgevad[train]' for the PyTorch eager reference)"}
    import torch

    manifest: Manifest = load_manifest(Path(artifact_dir), verify=False)
    if threads:
        torch.set_num_threads(int(threads))
    try:
        modules, inputs, weights = _build(manifest, batch)
    except (EdgevadError, KeyError, ValueError) as exc:
        return {"skipped": f"cannot rebuild {Path(artifact_dir).name} in PyTorch: {exc}",
                "artifact": str(artifact_dir)}
    samples: dict[str, list[float]] = {name: [] for name in modules}
    with torch.inference_mode():
        for i in range(warmup + iters):
            for name, module in modules.items():
                t0 = clock()
                module(*inputs[name])
                if i >= warmup:
                    samples[name].append(clock() - t0)
    total = [sum(s[i] for s in samples.values()) for i in range(iters)]
    stride = manifest.input_geometry().stride  # motion-prior: no backbone stage
    stages = {f"eager:{n}": {"unit": "call", **LatencyStats.from_seconds(s).to_dict(),
                             "batch_mean": float(batch)} for n, s in samples.items()}
    stages["eager:model"] = {"unit": "clip batch", **LatencyStats.from_seconds(total).to_dict()}
    return {
        "kind": "pytorch-eager",
        "artifact": str(artifact_dir),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "weights": weights,
        "stages": stages,
        "model_frames_per_s": stride * batch * iters / sum(total),
    }
