"""What ``edgevad run`` writes for a source: per-frame scores (CSV + JSON Lines, appended and
flushed as results arrive, so an interrupted run keeps every line written), the events (JSON),
an optional annotated video and a score plot (PNG, matplotlib when installed)."""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgevad.runtime.results import AnomalyEvent, FrameResult

__all__ = ["AnnotatedVideo", "ScoreWriter", "plot_scores", "write_events"]


class ScoreWriter:
    """``<stem>.scores.csv`` and ``<stem>.scores.jsonl``, one row per frame."""

    def __init__(self, folder: Path, stem: str):
        self.csv_path = folder / f"{stem}.scores.csv"
        self.jsonl_path = folder / f"{stem}.scores.jsonl"
        self._csv_fh = open(self.csv_path, "w", newline="", encoding="utf-8")
        self._jsonl_fh = open(self.jsonl_path, "w", encoding="utf-8")
        self._csv = csv.writer(self._csv_fh)
        self._csv.writerow(["frame", "timestamp", "score", "clip", "label", "boxes"])
        self.rows = 0

    def write(self, results: Sequence[FrameResult]) -> None:
        for r in results:
            self._csv.writerow([r.index, "" if r.timestamp is None else f"{r.timestamp:.4f}",
                                f"{r.score:.6f}", r.clip, r.label or "", len(r.boxes)])
            self._jsonl_fh.write(json.dumps(r.to_dict()) + "\n")
        self.rows += len(results)
        if results:
            self._csv_fh.flush()
            self._jsonl_fh.flush()

    def close(self) -> None:
        self._csv_fh.close()
        self._jsonl_fh.close()


def write_events(path: Path, events: Iterable[AnomalyEvent], **summary) -> Path:
    events = list(events)
    payload = {**summary, "events": [e.to_dict() for e in events]}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


class AnnotatedVideo:
    """Frames wait here until their score is known, then are drawn on and written in order:
    a score bar along the bottom (red above the threshold), the score and class label, and
    motion boxes."""

    def __init__(self, path: Path, fps: float, threshold: float, score_max: float = 1.0):
        self.path = path
        self.fps = fps or 25.0
        self.threshold = threshold
        self.score_max = max(score_max, 1e-6)
        self._writer: cv2.VideoWriter | None = None
        self._frames: deque[tuple[int, np.ndarray]] = deque()
        self.written = 0

    def add(self, index: int, frame: np.ndarray) -> None:
        self._frames.append((index, frame))

    def scored(self, results: Sequence[FrameResult]) -> None:
        for r in results:
            while self._frames and self._frames[0][0] < r.index:  # never scored: write plain
                self._write(self._frames.popleft()[1])
            if self._frames and self._frames[0][0] == r.index:
                self._write(self._draw(self._frames.popleft()[1].copy(), r))

    def close(self) -> None:
        while self._frames:
            self._write(self._frames.popleft()[1])
        if self._writer is not None:
            self._writer.release()

    def _write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"),
                                           self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write {self.path}")
        self._writer.write(frame)
        self.written += 1

    def _draw(self, frame: np.ndarray, r: FrameResult) -> np.ndarray:
        h, w = frame.shape[:2]
        hot = r.score >= self.threshold
        colour = (0, 0, 255) if hot else (0, 200, 0)
        bar = int(round(w * min(max(r.score / self.score_max, 0.0), 1.0)))
        cv2.rectangle(frame, (0, h - 8), (w, h), (40, 40, 40), -1)
        cv2.rectangle(frame, (0, h - 8), (bar, h), colour, -1)
        tx = int(w * min(self.threshold / self.score_max, 1.0))
        cv2.line(frame, (tx, h - 10), (tx, h), (255, 255, 255), 1)
        text = f"{r.score:.2f}" + (f" {r.label}" if r.label else "")
        cv2.putText(frame, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
        for b in r.boxes:
            cv2.rectangle(frame, (b.x1, b.y1), (b.x2 - 1, b.y2 - 1), (0, 255, 255), 1)
        return frame


def plot_scores(path: Path, scores: np.ndarray, *, threshold: float, events: Sequence[AnomalyEvent],
                fps: float = 0.0, title: str = "", score_range=(0.0, 1.0)) -> Path | None:
    """Scores over frames (seconds when ``fps`` is known) with events shaded; None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    x = np.arange(len(scores)) / fps if fps else np.arange(len(scores))
    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    for e in events:
        a, b = (e.start / fps, (e.end + 1) / fps) if fps else (e.start, e.end + 1)
        ax.axvspan(a, b, color="tab:red", alpha=0.2, lw=0)
    ax.plot(x, scores, lw=1.2, color="tab:blue", label="anomaly score")
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("seconds" if fps else "frame")
    ax.set_ylabel("score")
    ax.set_ylim(score_range[0], max(score_range[1], float(np.max(scores, initial=0.0))) * 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
