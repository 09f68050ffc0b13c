"""The training loop: weakly supervised bags in, a checkpoint folder out.

Every step draws ``batch_anomalous`` anomalous and ``batch_normal`` normal videos (30 + 30, as
Sultani et al. and the heads' papers), each a bag of ``segments`` (32) segment features (bags of
31/33 are resampled by averaging), and applies the objective that defines the head:

==============  ==================================================================================
``mil``         :func:`~edgevad_export.models.heads.losses.mil_ranking_loss` (Sultani Eq. 7)
``mrm``         :func:`~edgevad_export.models.heads.losses.multiple_ranking_loss`
``dmrm``        ``multiple_ranking_loss`` on the fused appearance + motion features. Needs a second
                bag file with the motion stream (same video names); the UCF-Crime R3D-34 files
                have appearance only, so ``dmrm`` refuses them and says to use ``mrm`` (the same
                MLP and loss on appearance alone) or to pass motion features.
``dam-dist``,   :func:`~edgevad_export.models.heads.losses.dam_weighted_ranking_loss`. Each segment
``dam-cov``     is a clip with a t = 1 map ``[1, D]``; its ``prev_map`` is the previous segment's
                feature, the first segment uses itself, exactly as the runtime feeds a stream.
``joint``       :func:`~edgevad_export.models.heads.losses.joint_loss` (0.9 ranking + 0.1 class-
                weighted cross-entropy), categories mapped to ``edgevad.artifact.zoo.UCF_CRIME_CLASSES``.
``mil-ctx``     :func:`~edgevad_export.models.heads.context.topk_ranking_loss` (the mean of the k
                top segments ranked, RTFM-style; k = ``config.topk``) on the context head.
``mil-dis``     ``topk_ranking_loss`` (and self-training) on the head's ungated ``detection``; its
                change gate is fixed (fitted on the training bags) and applies at inference only.
==============  ==================================================================================

How long to train: with ``config.val_share`` a stratified share of the training videos is held
out, and each stage (ranking, then self-training) keeps the weights where its own objective on
fixed held-out batches is lowest (early stopping; no test data involved). On the UCF-Crime
R3D-34 features both stages are best after 25-225 steps, not the papers' thousands.

Speed on CPU stays flat over a run: denormal floats are flushed to zero (weights decaying towards
zero otherwise slow a small MLP down 100x) and the steps/s of the first and last tenth are
recorded in the checkpoint's loss summary.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgevad.artifact import zoo
from edgevad.cli.progress import progress_bar
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file
from edgevad_export.data.bags import FeatureBags, load_bags
from edgevad_export.models.heads import losses
from edgevad_export.training.checkpoint import (
    LOSS_LOG_FILE,
    build_head,
    save_checkpoint,
)
from edgevad_export.training.config import TrainConfig

log = logging.getLogger(__name__)

DAM_HEADS = ("dam-dist", "dam-cov")
GATED_AT_INFERENCE = ("mil-dis",)
"""Heads whose ``scores`` are a trained ``detection`` times a fixed gate (trained ungated)."""


class TrainingError(EdgevadError):
    """Training cannot start or diverged (the message says why)."""


def train(config: TrainConfig, train_bags: FeatureBags | str | Path, out_dir: str | Path, *,
          motion_bags: FeatureBags | str | Path | None = None, progress: bool = True) -> Path:
    """Train ``config.model`` on ``train_bags`` and write a checkpoint folder to ``out_dir``.

    ``train_bags``: a :class:`FeatureBags` or the path of a feature-bag ``.npz``.
    ``motion_bags``: the motion stream for ``dmrm`` (bags with the same video names).
    ``progress``: show a rich progress bar. Returns the checkpoint folder.
    """
    bags = load_bags(train_bags) if not isinstance(train_bags, FeatureBags) else train_bags
    name = config.model
    zoo.get_head(name)  # UnknownNameError with suggestions before any work
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    dim = bags.feature_dim
    steps = _map_steps(bags) if name in DAM_HEADS else 1  # `extract --feature-map`: t x D maps
    protocol = _protocol(config, bags, dim, steps)
    feats = torch.from_numpy(bags.stacked(config.segments))
    motion = None
    builder_kwargs: dict[str, Any] = dict(config.head_kwargs)
    if name == "dmrm":
        motion, protocol["motion"] = _motion_stream(bags, motion_bags, config.segments)
        builder_kwargs.update(appearance_dim=dim, motion_dim=motion.shape[-1])
    else:
        builder_kwargs["feature_dim"] = dim // steps
    if name == "joint":
        builder_kwargs.setdefault("segments", config.segments)
        if builder_kwargs["segments"] != config.segments:
            raise TrainingError(f"joint head built for {builder_kwargs['segments']} segments but "
                                f"config.segments = {config.segments}")
    targets = torch.from_numpy(_class_targets(bags)) if name == "joint" else None

    labels = np.asarray(bags.labels, dtype=bool)
    anom_pool, norm_pool = np.flatnonzero(labels), np.flatnonzero(~labels)
    if not len(anom_pool) or not len(norm_pool):
        raise TrainingError(f"training needs anomalous and normal videos; {bags.source or 'the bags'}"
                            f" hold {len(anom_pool)} anomalous and {len(norm_pool)} normal")

    class_weights = (torch.tensor(losses.UCF_CRIME_CLASS_WEIGHTS)
                     if name == "joint" and config.class_weights else None)
    (anom_pool, norm_pool), (val_anom, val_norm) = _hold_out(anom_pool, norm_pool, config)
    fit_feats = feats[np.sort(np.concatenate([anom_pool, norm_pool]))]

    def draw(gen: np.random.Generator, anom: np.ndarray, norm: np.ndarray) -> torch.Tensor:
        ia = gen.choice(anom, config.batch_anomalous, replace=len(anom) < config.batch_anomalous)
        inn = gen.choice(norm, config.batch_normal, replace=len(norm) < config.batch_normal)
        return torch.from_numpy(np.concatenate([ia, inn]))

    def sample() -> torch.Tensor:
        return draw(rng, anom_pool, norm_pool)

    val_rng = np.random.default_rng([config.seed, 2])
    val_batches = ([draw(val_rng, val_anom, val_norm) for _ in range(config.val_batches)]
                   if len(val_anom) else [])

    def ranking_loss(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        return _loss(name, config, model, feats[idx], motion[idx] if motion is not None else None,
                     targets[idx] if targets is not None else None, class_weights)

    rows: list[dict[str, float]] = []
    step_times: list[float] = []
    stages: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with progress_bar("loss {task.fields[loss]:.4f}", enabled=progress) as bar:
        model = _new_head(name, config, builder_kwargs, fit_feats)
        stages.append(_fit(model, ranking_loss, sample, config, bar, f"train {name}", rows,
                           step_times, t0, val_batches=val_batches))
        if config.self_training:
            target, mask = pseudo_labels(model, name, feats, labels, config.pseudo_positive)
            model = _new_head(name, config, builder_kwargs, fit_feats)

            def pseudo_label_loss(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
                out = forward_scores(name, model, feats[idx])
                scores = trained_scores(name, out).clamp(1e-6, 1 - 1e-6)
                bce = F.binary_cross_entropy(scores, target[idx], reduction="none")
                return (bce * mask[idx]).sum() / mask[idx].sum().clamp_min(1.0)

            stages.append(_fit(model, pseudo_label_loss, sample, config, bar,
                               f"self-train {name}", rows, step_times, t0,
                               first_step=config.steps + 1, val_batches=val_batches))
        calibration = _calibrate(model, feats, labels, np.concatenate([val_anom, val_norm]))
    wall = time.perf_counter() - t0
    model.eval()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOSS_LOG_FILE, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "loss", "elapsed_s"])
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "head": name,
        "builder_kwargs": builder_kwargs,
        "config": config.to_dict(),
        "protocol": protocol,
        "data": _data_summary(bags, feats),
        "loss_summary": _loss_summary(rows, step_times, wall),
        "validation": {
            "share": config.val_share,
            "held_out_names": [str(bags.names[i]) for i in np.concatenate([val_anom, val_norm])],
            "stages": stages,
            "calibration": calibration,
        },
        "class_names": list(zoo.UCF_CRIME_CLASSES) if name == "joint" else [],
        "score_range": list(zoo.get_head(name).score_range),
        "default_threshold": zoo.get_head(name).default_threshold,
    }
    save_checkpoint(out, model, meta)
    log.info("trained %s for %d steps in %.1fs -> %s", name, config.steps, wall, out)
    return out


def _new_head(name: str, config: TrainConfig, builder_kwargs: dict, feats: torch.Tensor):
    """A freshly initialised head in train mode, its feature standardiser (if any) fitted."""
    model = build_head(name, backbone=config.backbone, builder_kwargs=builder_kwargs)
    fit_statistics = getattr(model, "fit_statistics", None)
    standardizer = getattr(model, "standardizer", None)
    if fit_statistics is not None:
        fit_statistics(feats)
    elif standardizer is not None:
        standardizer.fit(feats)
    return model.train()


def _fit(model: torch.nn.Module, loss_of: Callable, sample: Callable, config: TrainConfig, bar,
         title: str, rows: list[dict], step_times: list[float], t0: float,
         first_step: int = 1, val_batches: list[torch.Tensor] = ()) -> dict[str, Any]:
    """Up to ``config.steps`` optimiser steps of ``loss_of(model, batch_indices)``, logged to
    ``rows``. With ``val_batches`` the same objective is measured on them (dropout off) every
    ``config.eval_every`` steps and the model ends with the weights where it was lowest.
    Returns the stage's record: steps run, best step and the held-out loss curve."""
    opt = _optimizer(config, model)
    task = bar.add_task(title, total=config.steps, loss=float("nan"))
    curve: list[list[float]] = []
    best = (math.inf, 0, None)  # loss, step, state
    ran = 0
    for i in range(1, config.steps + 1):
        step = first_step + i - 1
        ts = time.perf_counter()
        loss = loss_of(model, sample())
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at step {step}; lower the learning "
                                f"rate (lr = {config.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_times.append(time.perf_counter() - ts)
        ran = i
        if i % config.log_every == 0 or i == config.steps:
            rows.append({"step": step, "loss": float(loss.item()),
                         "elapsed_s": round(time.perf_counter() - t0, 3)})
            bar.update(task, completed=i, loss=float(loss.item()))
        if val_batches and (i % config.eval_every == 0 or i == config.steps):
            held_out = _held_out_loss(model, loss_of, val_batches)
            curve.append([i, round(held_out, 6)])
            if held_out < best[0]:
                best = (held_out, i, {k: v.detach().clone() for k, v in model.state_dict().items()})
            elif config.patience and (i - best[1]) >= config.patience * config.eval_every:
                break
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    return {"stage": title, "steps_run": ran, "best_step": best[1] if curve else ran,
            "best_held_out_loss": None if not curve else round(best[0], 6),
            "held_out_curve": curve}


@torch.no_grad()
def _calibrate(model: torch.nn.Module, feats: torch.Tensor, labels: np.ndarray,
               held_out: np.ndarray) -> dict[str, float] | None:
    """Heads with a ``calibrate(features, labels)`` method (``mil-dis``) fit their score scale on
    the held-out training videos; None when there are none or the head has no such method."""
    calibrate = getattr(model, "calibrate", None)
    if calibrate is None or not len(held_out):
        return None
    model.eval()
    method = "Youden's J on held-out video peaks, mapped to 0.5 by a power"
    try:
        threshold = calibrate(feats[held_out], torch.from_numpy(labels[held_out]))
    except ValueError as exc:
        log.warning("scores left uncalibrated: %s", exc)
        return {"method": method, "skipped": str(exc)}
    return {"method": method, "video_threshold": round(float(threshold), 6),
            "score_power": round(float(model.score_power), 6)}


@torch.no_grad()
def _held_out_loss(model: torch.nn.Module, loss_of: Callable, batches: list[torch.Tensor]) -> float:
    model.eval()
    value = float(np.mean([loss_of(model, idx).item() for idx in batches]))
    model.train()
    return value


def _hold_out(anom_pool: np.ndarray, norm_pool: np.ndarray, config: TrainConfig
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split both pools into (training, held-out) by ``config.val_share``, per label."""
    empty = np.zeros(0, dtype=anom_pool.dtype)
    if not config.val_share:
        return (anom_pool, norm_pool), (empty, empty)
    gen = np.random.default_rng([config.seed, 1])
    fit, held = [], []
    for pool in (anom_pool, norm_pool):
        n_val = int(round(len(pool) * config.val_share))
        if n_val < 1 or n_val >= len(pool):
            raise TrainingError(f"val_share = {config.val_share} leaves no held-out or no training "
                                f"video among {len(pool)} of one label")
        pick = np.zeros(len(pool), dtype=bool)
        pick[gen.choice(len(pool), n_val, replace=False)] = True
        fit.append(pool[~pick])
        held.append(pool[pick])
    return (fit[0], fit[1]), (held[0], held[1])


@torch.no_grad()
def pseudo_labels(model: torch.nn.Module, name: str, feats: torch.Tensor, labels: np.ndarray,
                  positive_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment targets and loss mask from a ranking-trained head (self-training's first stage).

    Anomalous videos: their top ``positive_share`` segments by score are anomalous, the rest is
    masked out (weak labels do not say which part of the video is normal). Normal videos: every
    segment is normal.
    """
    model.eval()
    scores = trained_scores(name, forward_scores(name, model, feats))
    target = torch.zeros_like(scores)
    mask = torch.ones_like(scores)
    k = max(1, int(round(scores.shape[1] * positive_share)))
    anomalous = torch.from_numpy(np.flatnonzero(labels))
    top = scores[anomalous].topk(k, dim=1).indices
    mask[anomalous] = 0.0
    rows = anomalous[:, None].expand_as(top)
    target[rows, top] = 1.0
    mask[rows, top] = 1.0
    return target, mask


# --- objectives ------------------------------------------------------------------------------------

def forward_scores(name: str, model: torch.nn.Module, x: torch.Tensor,
                   motion: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Run a head on bags ``x [B, S, D]`` the way training and evaluation both do.

    Returns ``scores [B, S]`` and, per head, ``detection``/``attention`` (DAM) or
    ``class_logits`` (joint). DAM scores each segment online against the previous one (the first
    against itself).
    """
    if name in DAM_HEADS:  # bags of pooled features (t = 1) or of flattened t x D clip maps
        b, s, d = x.shape
        t, d = d // model.feature_dim, model.feature_dim
        prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
        score, det, att = model(x.reshape(b * s, t, d), prev.reshape(b * s, t, d))
        return {"scores": score.view(b, s), "detection": det.view(b, s), "attention": att.view(b, s)}
    if name == "joint":
        scores, logits = model(x)
        return {"scores": scores, "class_logits": logits}
    if name in GATED_AT_INFERENCE:
        detection = model.detection(x)
        return {"scores": model.gated(detection, x), "detection": detection}
    if name == "dmrm":
        if motion is None:
            raise TrainingError("dmrm needs the motion stream as well as the appearance features")
        return {"scores": model(x, motion)}
    return {"scores": model(x)}


def trained_scores(name: str, out: dict[str, torch.Tensor]) -> torch.Tensor:
    """The segment scores the MIL objectives train: the ungated ``detection`` of heads gated at
    inference only (``GATED_AT_INFERENCE``), else ``scores``."""
    return out["detection"] if name in GATED_AT_INFERENCE else out["scores"]


def _loss(name: str, cfg: TrainConfig, model: torch.nn.Module, x: torch.Tensor,
          motion: torch.Tensor | None, targets: torch.Tensor | None,
          class_weights: torch.Tensor | None) -> torch.Tensor:
    na = cfg.batch_anomalous
    out = forward_scores(name, model, x, motion)
    sa, sn = out["scores"][:na], out["scores"][na:]
    common = {"margin": cfg.margin, "pairing": cfg.pairing}
    if name == "mil" and cfg.topk == 1:
        return losses.mil_ranking_loss(sa, sn, cfg.smooth, cfg.sparsity, **common)
    if name in ("mrm", "dmrm"):
        return losses.multiple_ranking_loss(sa, sn, cfg.smooth, cfg.sparsity, **common)
    if name in DAM_HEADS:
        det, att = out["detection"], out["attention"]
        return losses.dam_weighted_ranking_loss(det[:na], att[:na], det[na:], att[na:],
                                                cfg.smooth, cfg.sparsity,
                                                attention_l2=cfg.attention_l2, **common)
    if name == "joint":
        return losses.joint_loss(sa, sn, out["class_logits"], targets, class_weights,
                                 detection_weight=cfg.detection_weight,
                                 classification_weight=cfg.classification_weight,
                                 smooth=cfg.smooth, sparsity=cfg.sparsity, **common)
    if name in ("mil", "mil-ctx", "mil-dis"):
        from edgevad_export.models.heads.context import topk_ranking_loss

        trained = trained_scores(name, out)
        return topk_ranking_loss(trained[:na], trained[na:], cfg.topk, cfg.smooth, cfg.sparsity,
                                 **common)
    raise TrainingError(f"no training objective for head {name!r}")


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)


# --- data and protocol -----------------------------------------------------------------------------

def _map_steps(bags: FeatureBags) -> int:
    """Time steps per segment of bags written by ``extract --feature-map`` (1 otherwise)."""
    source = Path(bags.source) if bags.source else None
    if source is None or not source.is_file():
        return 1
    from edgevad_export.extraction.extract import read_protocol

    try:
        return int(read_protocol(source).get("map_steps", 1))
    except Exception:  # a file without a protocol record holds pooled features
        return 1


def _protocol(cfg: TrainConfig, bags: FeatureBags, dim: int, steps: int = 1) -> dict[str, Any]:
    if cfg.feature_dim is not None and cfg.feature_dim != dim:
        raise TrainingError(f"config.feature_dim = {cfg.feature_dim} but the features in "
                            f"{bags.source or 'the bags'} are {dim}-D")
    if cfg.backbone is not None:
        bb = zoo.get_backbone(cfg.backbone)
        if bb.feature_dim * steps != dim:
            raise TrainingError(f"backbone {cfg.backbone!r} gives {bb.feature_dim}-D features but "
                                f"{bags.source or 'the bags'} hold {dim}-D ones: pass the backbone "
                                "that made them (or backbone=None)")
    source = Path(bags.source) if bags.source else None
    return {
        "backbone": cfg.backbone,
        "feature_dim": dim,
        **({"map_steps": steps} if steps > 1 else {}),
        "segments": cfg.segments,
        "feature_file": str(source) if source else None,
        "feature_file_sha256": sha256_file(source) if source and source.is_file() else None,
    }


def _motion_stream(bags: FeatureBags, motion_bags, segments: int) -> tuple[torch.Tensor, dict]:
    if motion_bags is None:
        raise TrainingError(
            f"dmrm fuses an appearance and a motion (optical-flow) stream, but only one feature "
            f"file was given ({bags.source or 'appearance bags'}, {bags.feature_dim}-D): the "
            "UCF-Crime R3D-34 features have no motion stream. Pass motion features of the same "
            "videos (motion_bags / --motion-features, e.g. from the motion-r3d18 backbone), or "
            "train 'mrm', which is the same MLP and loss on appearance alone."
        )
    mb = load_bags(motion_bags) if not isinstance(motion_bags, FeatureBags) else motion_bags
    index = {n: i for i, n in enumerate(mb.names)}
    missing = [n for n in bags.names if n not in index]
    if missing:
        raise TrainingError(f"the motion features lack {len(missing)} of the appearance videos "
                            f"(e.g. {', '.join(missing[:3])})")
    stacked = mb.stacked(segments)[[index[n] for n in bags.names]]
    source = Path(mb.source) if mb.source else None
    from edgevad.artifact.protocols import extraction_record

    record = extraction_record(str(source)) if source else None
    return torch.from_numpy(stacked), {
        "backbone": (record or {}).get("backbone"),
        "feature_dim": mb.feature_dim,
        "feature_file": str(source) if source else None,
        "feature_file_sha256": sha256_file(source) if source and source.is_file() else None,
        **({"extraction": record} if record else {}),
    }


def class_index(category: str) -> int:
    """Index of a UCF-Crime category in ``edgevad.artifact.zoo.UCF_CRIME_CLASSES`` (Normal = 0)."""
    try:
        return zoo.UCF_CRIME_CLASSES.index(str(category))
    except ValueError:
        raise TrainingError(f"category {category!r} is not a UCF-Crime class "
                            f"({', '.join(zoo.UCF_CRIME_CLASSES)})") from None


def _class_targets(bags: FeatureBags) -> np.ndarray:
    targets = np.array([class_index(c) for c in bags.categories], dtype=np.int64)
    wrong = [(n, c) for n, c, lab in zip(bags.names, bags.categories, bags.labels)
             if bool(lab) != (c != "Normal")]
    if wrong:
        raise TrainingError(f"{len(wrong)} videos have a category that contradicts their label "
                            f"(e.g. {wrong[0][0]}: {wrong[0][1]})")
    return targets


def _data_summary(bags: FeatureBags, feats: torch.Tensor) -> dict[str, Any]:
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, bags.names)).encode())
    digest.update(np.asarray(bags.labels, dtype=np.uint8).tobytes())
    digest.update(feats.numpy().tobytes())
    return {
        "n_bags": len(bags),
        "n_anomalous": int(np.sum(bags.labels)),
        "n_normal": int(len(bags) - np.sum(bags.labels)),
        "skipped_empty": len(bags.skipped_empty),
        "refused": dict(bags.refused),
        "bags_sha256": digest.hexdigest(),
    }


def _loss_summary(rows: list[dict], step_times: list[float], wall: float) -> dict[str, Any]:
    tenth = max(1, len(step_times) // 10)
    first = float(np.mean(step_times[:tenth])) if step_times else math.nan
    last = float(np.mean(step_times[-tenth:])) if step_times else math.nan
    losses_ = [r["loss"] for r in rows]
    return {
        "steps": len(step_times),
        "wall_s": round(wall, 3),
        "first_loss": losses_[0] if losses_ else None,
        "last_loss": losses_[-1] if losses_ else None,
        "min_loss": min(losses_) if losses_ else None,
        "steps_per_s_first_tenth": round(1.0 / first, 2) if first and first > 0 else None,
        "steps_per_s_last_tenth": round(1.0 / last, 2) if last and last > 0 else None,
        "log_file": LOSS_LOG_FILE,
    }
