"""Evaluation figures with matplotlib's Agg backend (no display needed): the pooled-frame ROC
curve and one score curve per video with its annotated anomaly intervals shaded."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_roc(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: str | Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(fpr, tpr, lw=1.5, label=f"frame AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=title or "Frame-level ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_video_curve(frame_scores: np.ndarray, intervals: np.ndarray | None, path: str | Path, *,
                     title: str, threshold: float | None = None,
                     score_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    fig, ax = plt.subplots(figsize=(6, 2.4), dpi=80)
    if intervals is not None:
        for start, end in np.asarray(intervals).reshape(-1, 2):
            if start >= 0 and end >= 0:
                ax.axvspan(start, end, color="tab:red", alpha=0.2, lw=0)
    ax.plot(np.arange(len(frame_scores)), frame_scores, lw=1.2)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=0.8)
    ax.set(xlim=(0, max(len(frame_scores) - 1, 1)), ylim=score_range, xlabel="frame", ylabel="score",
           title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "video"
