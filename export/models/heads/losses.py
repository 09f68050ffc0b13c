"""The heads' training objectives, as published; they are what make each head what it is.

All take per-segment scores of anomalous bags ``[Ba, S]`` and normal bags ``[Bn, S]``.
``pairing`` says how a batch of bags is reduced:

* ``"paired"`` (default): bag ``i`` of the anomalous batch is paired with bag ``i`` of the normal
  batch (``Ba == Bn``); the per-pair loss of the paper is averaged over the pairs.
* ``"all"``: the reduction of the authors' Keras objectives (Sultani's ``custom_objective``, copied
  in DAM's ``RankingLoss.py`` and the joint model's ``ObjectiveFunctions.py``): for every normal bag
  the hinge is summed over all anomalous bags, then averaged over normal bags, and the smoothness
  and sparsity terms are summed over the anomalous bags. The 8e-5 weights were tuned with it.

For one pair of bags the two coincide.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgevad.artifact.zoo import UCF_CRIME_CLASSES

_PAIRINGS = ("paired", "all")

UCF_CRIME_TRAIN_COUNTS: dict[str, int] = {
    "Normal": 800, "Abuse": 48, "Arrest": 45, "Arson": 41, "Assault": 47, "Burglary": 87,
    "Explosion": 29, "Fighting": 45, "RoadAccidents": 127, "Robbery": 145, "Shooting": 27,
    "Shoplifting": 29, "Stealing": 95, "Vandalism": 45,
}
"""Training videos per class in the official UCF-Crime split (1610 in all)."""

_N_TRAIN = sum(UCF_CRIME_TRAIN_COUNTS.values())
UCF_CRIME_CLASS_WEIGHTS: tuple[float, ...] = tuple(
    1.0 - UCF_CRIME_TRAIN_COUNTS[c] / _N_TRAIN for c in UCF_CRIME_CLASSES
)
"""Majhi et al.'s (FG 2021) cross-entropy class weights, ``1 - n_c / N``, in the zoo's class order
(their code lists the same numbers in alphabetical order, Normal at index 7: 0.5031...)."""


def _check(scores_anom: torch.Tensor, scores_norm: torch.Tensor, pairing: str) -> None:
    if pairing not in _PAIRINGS:
        raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
    if scores_anom.dim() != 2 or scores_norm.dim() != 2:
        raise ValueError("scores must be [bags, segments] for both anomalous and normal bags")
    if pairing == "paired" and scores_anom.shape[0] != scores_norm.shape[0]:
        raise ValueError(
            f"pairing='paired' needs as many anomalous as normal bags, got "
            f"{scores_anom.shape[0]} and {scores_norm.shape[0]}"
        )


def _hinge(anom: torch.Tensor, norm: torch.Tensor, margin: float, pairing: str) -> torch.Tensor:
    """``max(0, margin - anom + norm)`` over bag pairs, reduced as ``pairing`` says."""
    if pairing == "paired":
        return F.relu(margin - anom + norm).mean()
    return F.relu(margin - anom[None, :] + norm[:, None]).sum(dim=1).mean()


def _reduce(per_bag: torch.Tensor, pairing: str) -> torch.Tensor:
    return per_bag.mean() if pairing == "paired" else per_bag.sum()


def temporal_smoothness(scores: torch.Tensor) -> torch.Tensor:
    """``sum_i (s_i - s_{i+1})^2`` per bag: ``[B, S] -> [B]``."""
    return (scores[:, 1:] - scores[:, :-1]).pow(2).sum(dim=1)


def mil_ranking_loss(scores_anom: torch.Tensor, scores_norm: torch.Tensor,
                     smooth: float = 8e-5, sparsity: float = 8e-5, *, margin: float = 1.0,
                     pairing: str = "paired") -> torch.Tensor:
    """Sultani et al. (CVPR 2018), Eq. 7: ``max(0, 1 - max_i f(a_i) + max_i f(n_i))
    + lambda1 * sum_i (f(a_i) - f(a_{i+1}))^2 + lambda2 * sum_i f(a_i)``.

    Only the top-scoring segment of each bag is ranked (the anomalous bag holds at least one
    anomalous segment, the normal bag none); smoothness and sparsity act on the anomalous bag
    because anomalies are short and contiguous. The weight penalty (lambda3 ||W||) is weight decay.
    """
    _check(scores_anom, scores_norm, pairing)
    loss = _hinge(scores_anom.max(dim=1).values, scores_norm.max(dim=1).values, margin, pairing)
    loss = loss + smooth * _reduce(temporal_smoothness(scores_anom), pairing)
    return loss + sparsity * _reduce(scores_anom.sum(dim=1), pairing)


def multiple_ranking_loss(scores_anom: torch.Tensor, scores_norm: torch.Tensor,
                          smooth: float = 8e-5, sparsity: float = 8e-5, *, margin: float = 1.0,
                          pairing: str = "paired") -> torch.Tensor:
    """MILR / DMRM multiple ranking measures (Dubey et al. 2019, 2021), each a margin hinge:

    1. top of the anomalous bag vs top of the normal bag (Sultani's term);
    2. top vs bottom inside the anomalous bag (an anomalous video also holds normal segments);
    3. 2nd and 3rd highest of the anomalous bag vs top of the normal bag (more than one anomalous
       segment must outrank the normal video, so one spurious peak cannot carry the bag);

    plus Sultani's smoothness and sparsity on the anomalous bag. Needs ``S >= 3``.
    """
    _check(scores_anom, scores_norm, pairing)
    if scores_anom.shape[1] < 3:
        raise ValueError("multiple_ranking_loss needs at least 3 segments per anomalous bag")
    top3 = scores_anom.topk(3, dim=1).values  # descending
    top_norm = scores_norm.max(dim=1).values
    loss = _hinge(top3[:, 0], top_norm, margin, pairing)
    loss = loss + _reduce(F.relu(margin - top3[:, 0] + scores_anom.min(dim=1).values), pairing)
    loss = loss + _hinge(top3[:, 1], top_norm, margin, pairing)
    loss = loss + _hinge(top3[:, 2], top_norm, margin, pairing)
    loss = loss + smooth * _reduce(temporal_smoothness(scores_anom), pairing)
    return loss + sparsity * _reduce(scores_anom.sum(dim=1), pairing)


def dam_weighted_ranking_loss(detection_anom: torch.Tensor, attention_anom: torch.Tensor,
                              detection_norm: torch.Tensor, attention_norm: torch.Tensor,
                              smooth: float = 8e-5, sparsity: float = 8e-5, *,
                              attention_l2: float = 0.01, margin: float = 1.0,
                              pairing: str = "paired") -> torch.Tensor:
    """DAM's weighted ranking loss (Majhi, Das & Bremond, AVSS 2021), our reading of the paper and
    of the authors' ``RankingLoss.py``/``model_DAM.py``.

    Each bag is a video's 32 consecutive clips, each clip scored online against its predecessor.
    The ranking is done on the *weighted* score ``S = D + D * ClipA`` (detection weighted by the
    clip attention, range [0, 2]) with Sultani's MIL ranking loss, margin 1, smoothness and
    sparsity 8e-5 on the anomalous bag: the clip attention can lift a clip's score above 1 only
    where the clip differs from the one before, which widens the margin of separation.
    ``attention_l2`` is the Keras activity penalty 0.01 * sum(ClipA^2) the authors put on the clip
    attention (here per bag, over both anomalous and normal bags). Their other penalties (activity
    L2 0.01 on the dissimilarity LSTM's output, weight L2 1e-3 on the detector) are weight decay
    or internal activations and belong to the training loop.
    """
    scores_anom = detection_anom + detection_anom * attention_anom
    scores_norm = detection_norm + detection_norm * attention_norm
    loss = mil_ranking_loss(scores_anom, scores_norm, smooth, sparsity, margin=margin,
                            pairing=pairing)
    if attention_l2:
        loss = loss + attention_l2 * (_reduce(attention_anom.pow(2).sum(dim=1), pairing)
                                      + _reduce(attention_norm.pow(2).sum(dim=1), pairing))
    return loss


def joint_loss(scores_anom: torch.Tensor, scores_norm: torch.Tensor, class_logits: torch.Tensor,
               class_targets: torch.Tensor, class_weights: torch.Tensor | None = None, *,
               detection_weight: float = 0.9, classification_weight: float = 0.1,
               smooth: float = 8e-5, sparsity: float = 8e-5, margin: float = 1.0,
               pairing: str = "paired") -> torch.Tensor:
    """Majhi, Das & Bremond (FG 2021): ``0.9 * MIL ranking loss + 0.1 * weighted cross-entropy``.

    ``class_logits [N, C]`` and ``class_targets [N]`` (class indices, Normal = 0) cover every video
    of the batch, normal ones included. With ``class_weights`` each video's cross-entropy is scaled
    by its true class's weight and the batch averaged (Keras semantics, not PyTorch's weighted
    mean); :data:`UCF_CRIME_CLASS_WEIGHTS` are the paper's weights.
    """
    ranking = mil_ranking_loss(scores_anom, scores_norm, smooth, sparsity, margin=margin,
                               pairing=pairing)
    ce = F.cross_entropy(class_logits, class_targets, reduction="none")
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=ce.dtype, device=ce.device)
        ce = ce * weights[class_targets]
    return detection_weight * ranking + classification_weight * ce.mean()
