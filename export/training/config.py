"""``TrainConfig``: every knob of a training run, typed, with a JSON round trip.

Defaults are the papers' (Sultani et al. 2018 and the heads' own papers): bags of 32 segments,
batches of 30 anomalous + 30 normal videos, Adagrad lr 0.01 with an L2 weight penalty of 1e-3
(Keras' ``l2(0.001)`` is weight decay here), smoothness and sparsity 8e-5, margin 1. The full
config is stored in every checkpoint so a run can be repeated exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgevad.errors import EdgevadError

OPTIMIZERS = ("adagrad", "adam", "adamw", "sgd")
PAIRINGS = ("paired", "all")
SELF_TRAINABLE = ("mil", "mrm", "mil-ctx", "mil-dis")
"""Heads whose only output is a score per segment, so segment pseudo-labels can train them."""


class ConfigError(EdgevadError):
    """A training config that cannot be used (unknown key, bad value)."""


@dataclass
class TrainConfig:
    model: str = "mil"
    """A zoo head name (``edgevad.artifact.zoo.list_heads()``)."""
    backbone: str | None = "r3d34"
    """Backbone that made the features (sizes the head; recorded as the protocol)."""
    feature_dim: int | None = None
    """Feature size; None: taken from the training bags (checked against the backbone)."""
    segments: int = 32
    steps: int = 3000
    batch_anomalous: int = 30
    batch_normal: int = 30
    optimizer: str = "adagrad"
    lr: float = 0.01
    weight_decay: float = 1e-3
    momentum: float = 0.0
    """Only for ``sgd``."""
    margin: float = 1.0
    smooth: float = 8e-5
    sparsity: float = 8e-5
    pairing: str = "paired"
    topk: int = 1
    """``mil``, ``mil-ctx``, ``mil-dis``: rank the mean of the k top segments (1 = Sultani's
    maximum)."""
    self_training: bool = False
    """Two stages (mil, mrm, mil-ctx, mil-dis): the ranking-trained head labels the top
    ``pseudo_positive`` share of each anomalous training video's segments as anomalous (the rest
    of that video is left out) and every normal segment as normal; a fresh head of the same
    architecture is then trained on those segment labels with binary cross-entropy."""
    pseudo_positive: float = 0.25
    val_share: float = 0.0
    """Share of the training videos (stratified by label, drawn with ``seed``) held out to choose
    how long to train: every ``eval_every`` steps each stage (ranking, then self-training) measures
    its own objective on fixed held-out batches and keeps the weights where it was lowest; it
    stops after ``patience`` evaluations without improvement. 0: no hold-out, the last step's
    weights (the papers' protocol). Weak heads over pooled features overfit the noisy weak labels
    quickly (on UCF-Crime R3D-34 the held-out loss is lowest after 25-225 of 1500 steps)."""
    eval_every: int = 25
    patience: int = 8
    """Held-out evaluations without a new best before a stage stops (0: run all ``steps``)."""
    val_batches: int = 20
    """Fixed held-out batches (of ``batch_anomalous + batch_normal`` bags) per evaluation."""
    attention_l2: float = 0.01
    """DAM: the Keras activity penalty on the clip attention."""
    detection_weight: float = 0.9
    classification_weight: float = 0.1
    class_weights: bool = True
    """Joint: the paper's class weights ``1 - n_c / N`` in the cross-entropy."""
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra builder keyword arguments (e.g. ``{"dropout": 0.5}``); stored in the checkpoint."""
    seed: int = 0
    threads: int | None = None
    """torch intra-op threads; None leaves torch's default."""
    log_every: int = 10
    """Write a loss-log row every this many steps."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"Invalid training config: {what}")

        need(isinstance(self.model, str) and bool(self.model), "model must be a head name")
        need(self.segments >= 1, f"segments must be >= 1, got {self.segments}")
        need(self.steps >= 0, f"steps must be >= 0, got {self.steps}")
        need(self.batch_anomalous >= 1 and self.batch_normal >= 1,
             f"batch sizes must be >= 1, got {self.batch_anomalous} + {self.batch_normal}")
        need(self.pairing in PAIRINGS, f"pairing must be one of {PAIRINGS}, got {self.pairing!r}")
        need(self.pairing != "paired" or self.batch_anomalous == self.batch_normal,
             "pairing='paired' needs batch_anomalous == batch_normal")
        need(self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(1 <= self.topk <= self.segments, f"topk must be in 1..segments, got {self.topk}")
        need(0.0 < self.pseudo_positive < 1.0,
             f"pseudo_positive must be in (0, 1), got {self.pseudo_positive}")
        need(not self.self_training or self.model in SELF_TRAINABLE,
             f"self_training works for {', '.join(SELF_TRAINABLE)}, not {self.model!r}")
        need(0.0 <= self.val_share < 1.0, f"val_share must be in [0, 1), got {self.val_share}")
        need(self.eval_every >= 1 and self.patience >= 0 and self.val_batches >= 1,
             "eval_every and val_batches must be >= 1 and patience >= 0, got "
             f"{self.eval_every}, {self.val_batches}, {self.patience}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(isinstance(self.head_kwargs, dict), "head_kwargs must be a dict")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown training config keys: {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(known))})")
        return cls(**data)
