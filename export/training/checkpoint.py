"""Checkpoint folders: what ``edgevad train`` writes and ``edgevad eval``/export read.

A checkpoint is a FOLDER::

    head.pt           the head's state dict (torch, loadable with weights_only=True)
    checkpoint.json   everything needed to rebuild and trust it: the full TrainConfig, the head
                      name, its builder and builder kwargs, the feature protocol (backbone,
                      feature_dim, segments, the training feature file and its SHA-256, and
                      under ``extraction`` the file's own extraction record), the
                      data summary, the edgevad version and the loss-log summary. The
                      feature file is named as :mod:`edgevad.artifact.records` names files: as the
                      user wrote it when relative, by its name when absolute (its SHA-256
                      identifies it), so a shipped checkpoint says nothing of the machine
                      that trained it
    loss_log.csv      step, loss (and its parts) during training

``load_checkpoint(dir) -> (model, meta)`` rebuilds the head through
``edgevad_export.models.create_head(name, checkpoint=head.pt, ...)`` so a checkpoint loads the
same strict way as any other weights; a missing folder or a missing/corrupt file is a
``CheckpointError`` that names the path and the problem.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

import edgevad
from edgevad.artifact import zoo
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file

FORMAT = "edgevad-head-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "head.pt"
META_FILE = "checkpoint.json"
LOSS_LOG_FILE = "loss_log.csv"

class CheckpointError(EdgevadError):
    """A checkpoint folder is missing, incomplete or corrupt."""


def build_head(name: str, *, backbone: str | None, builder_kwargs: dict[str, Any],
               checkpoint: str | Path | None = None) -> nn.Module:
    """Build head ``name`` with ``builder_kwargs`` (which include its feature sizes); random
    weights when ``checkpoint`` is None (training), else the checkpoint's, strictly."""
    from edgevad_export.models.factory import create_head

    return create_head(name, backbone=backbone, checkpoint=checkpoint,
                       random_init=checkpoint is None, **builder_kwargs)


def save_checkpoint(out_dir: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``head.pt`` and ``checkpoint.json`` into ``out_dir`` (created); returns the folder.

    ``meta`` must hold at least ``head``, ``builder_kwargs`` and ``protocol``; the format tag,
    the builder path, the edgevad version and a timestamp are added here.
    """
    for key in ("head", "builder_kwargs", "protocol"):
        if key not in meta:
            raise ValueError(f"checkpoint meta lacks {key!r}")
    if "extraction" not in meta["protocol"]:  # the feature file's own record travels along
        from edgevad.artifact.protocols import extraction_record

        record = extraction_record(meta["protocol"].get("feature_file"))
        if record:
            meta = {**meta, "protocol": {**meta["protocol"], "extraction": record}}
    meta = {**meta, "protocol": portable_protocol(meta["protocol"])}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / WEIGHTS_FILE)
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "head": meta["head"],
        "builder": zoo.get_head(meta["head"]).builder,
        "edgevad_version": edgevad.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(out / WEIGHTS_FILE),
        **{k: v for k, v in meta.items() if k != "head"},
    }
    (out / META_FILE).write_text(json.dumps(full, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return out


def portable_protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """``protocol`` with its feature files (``feature_file``, the motion stream's too; ``"a.npz
    + b.npz"`` for concatenated splits) named by :func:`edgevad.artifact.records.record_path`. Run after
    every record that reads the files has been taken: the names may not lead back to them."""
    from edgevad.artifact.records import record_path

    out = dict(protocol)
    if isinstance(out.get("feature_file"), str):
        out["feature_file"] = " + ".join(record_path(part)
                                         for part in out["feature_file"].split(" + "))
    if isinstance(out.get("motion"), dict):
        out["motion"] = portable_protocol(out["motion"])
    return out


def read_meta(ckpt_dir: str | Path) -> dict[str, Any]:
    """``checkpoint.json`` of a checkpoint folder, checked; CheckpointError when unusable."""
    folder = Path(ckpt_dir)
    if not folder.exists():
        raise CheckpointError(f"Checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} is not a checkpoint folder (expected a directory with {WEIGHTS_FILE} and "
            f"{META_FILE}, as `edgevad train` writes)"
        )
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"Checkpoint folder {folder} lacks {META_FILE}: not written by "
                              "`edgevad train`, or the run did not finish")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Cannot read {meta_path}: corrupt JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not an edgevad head checkpoint "
                              f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{meta_path} has format version {meta['format_version']}; this "
                              f"edgevad reads up to {FORMAT_VERSION}: upgrade edgevad")
    for key in ("head", "builder_kwargs", "protocol"):
        if key not in meta:
            raise CheckpointError(f"{meta_path} lacks {key!r}")
    return meta


def load_checkpoint(ckpt_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained head of a checkpoint folder, in eval mode, and return its meta."""
    folder = Path(ckpt_dir)
    meta = read_meta(folder)
    weights = folder / meta.get("weights_file", WEIGHTS_FILE)
    if not weights.is_file():
        raise CheckpointError(f"Checkpoint folder {folder} lacks its weights file {weights.name}")
    name = meta["head"]
    try:
        model = build_head(name, backbone=meta["protocol"].get("backbone"),
                           builder_kwargs=dict(meta["builder_kwargs"]), checkpoint=weights)
    except EdgevadError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"Cannot load checkpoint {folder}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"Cannot rebuild head {name!r} from {folder}/{META_FILE}: {exc}") from exc
    return model, meta


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
