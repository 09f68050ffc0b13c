"""Feature-bag files: the format ``edgevad extract`` writes and ``edgevad train``/``eval`` read.

One ``.npz`` per split, N videos (the format of ``../shared/data/ucf_crime_r3d34``):

- ``features`` float32 [N, S_max, D]: segment features, rows past ``n_segments`` are padding;
- ``n_segments`` int [N]: real segments per video (0 = extraction failed: the video is skipped);
- ``name`` str [N], ``label`` bool [N] (True = anomalous video), ``category`` str [N];
- optional, for evaluation: ``n_frames`` int [N] and ``anomaly_intervals`` int [N, 2k]
  (inclusive start/end frame pairs, -1 where absent).

Real data is messy, so loading checks every bag: empty bags are skipped and counted; a bag with a
NaN or an all-zero segment inside ``n_segments`` is refused with the video's name and the reason
(it would silently train on garbage). The real UCF-Crime train split has two such bags
(Assault023_x264, Normal_Videos322_x264). ``strict=True`` turns a refusal into an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevad.artifact.segments import resample_segments
from edgevad.errors import EdgevadError

log = logging.getLogger(__name__)

REQUIRED = ("features", "n_segments", "name", "label")


class BagFileError(EdgevadError):
    """A feature-bag file is missing, unreadable or holds a bag that cannot be used."""


@dataclass
class FeatureBags:
    """Validated bags of one split; ``features[i]`` is [n_segments[i], D] (no padding)."""

    features: list[np.ndarray]
    names: np.ndarray
    labels: np.ndarray
    categories: np.ndarray
    n_frames: np.ndarray | None = None
    anomaly_intervals: np.ndarray | None = None
    skipped_empty: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    """Video name -> why its bag was refused (NaN, all-zero rows)."""
    source: str = ""

    def __len__(self) -> int:
        return len(self.features)

    @property
    def feature_dim(self) -> int:
        return self.features[0].shape[-1]

    def select(self, indices) -> "FeatureBags":
        """The bags at ``indices`` (a fold, a class), with every per-video array kept aligned."""
        idx = np.asarray(indices, dtype=np.int64)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return FeatureBags(
            features=[self.features[i] for i in idx], names=self.names[idx],
            labels=self.labels[idx], categories=self.categories[idx],
            n_frames=pick(self.n_frames), anomaly_intervals=pick(self.anomaly_intervals),
            source=self.source,
        )

    def stacked(self, n_segments: int) -> np.ndarray:
        """All bags resampled to ``n_segments``, as one float32 array [N, n_segments, D]."""
        return np.stack([resample_segments(f, n_segments) for f in self.features]).astype(np.float32)


def load_bags(path: str | Path, *, strict: bool = False) -> FeatureBags:
    """Read and validate a feature-bag file (see the module docstring for the format).

    Refused bags are left out and listed in ``FeatureBags.refused``; with ``strict`` the first
    one raises ``BagFileError`` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise BagFileError(f"Feature-bag file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # truncated zip, not an npz, object arrays
        raise BagFileError(f"Cannot read feature-bag file {path}: {exc}") from exc
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise BagFileError(f"{path} lacks the arrays {', '.join(missing)} (has {', '.join(arrays)})")
    _check_arrays(path, arrays)
    feats, counts = arrays["features"], arrays["n_segments"].astype(np.int64)
    n = len(counts)
    if feats.ndim != 3 or feats.shape[0] != n:
        raise BagFileError(f"{path}: features must be [N, S, D] with N = {n}, got {feats.shape}")
    names = arrays["name"].astype(str)
    keep, bags, empty, refused = [], [], [], {}
    for i in range(n):
        k = int(counts[i])
        if k <= 0:
            empty.append(str(names[i]))
            continue
        if k > feats.shape[1]:
            raise BagFileError(f"{path}: video {names[i]} claims {k} segments, the array holds "
                               f"{feats.shape[1]}")
        bag = feats[i, :k].astype(np.float32)
        problem = _bag_problem(bag)
        if problem:
            if strict:
                raise BagFileError(f"{path}: video {names[i]} {problem}")
            refused[str(names[i])] = problem
            log.warning("%s: refused video %s: %s", path.name, names[i], problem)
            continue
        keep.append(i)
        bags.append(bag)
    if empty:
        log.info("%s: skipped %d videos with no segments (failed extraction)", path.name, len(empty))
    if not bags:
        raise BagFileError(f"{path} holds no usable bag ({len(empty)} empty)")
    idx = np.asarray(keep)
    labels = arrays["label"].astype(bool)[idx]
    categories = (arrays["category"].astype(str)[idx] if "category" in arrays
                  else np.where(labels, "Anomaly", "Normal"))
    return FeatureBags(
        features=bags,
        names=names[idx],
        labels=labels,
        categories=categories,
        n_frames=arrays["n_frames"].astype(np.int64)[idx] if "n_frames" in arrays else None,
        anomaly_intervals=(arrays["anomaly_intervals"].astype(np.int64)[idx]
                           if "anomaly_intervals" in arrays else None),
        skipped_empty=empty,
        refused=refused,
        source=str(path),
    )


def _check_arrays(path: Path, arrays: dict) -> None:
    """Per-video arrays agree in length and kind: a label array of strings would become all
    True under ``astype(bool)``, a short name array would pair features with other videos."""
    counts = arrays["n_segments"]
    if counts.ndim != 1 or counts.dtype.kind not in "iu":
        raise BagFileError(f"{path}: n_segments must be a 1-D integer array, got {counts.dtype} "
                           f"{counts.shape}")
    n = len(counts)
    for key in ("name", "label", "category", "n_frames", "anomaly_intervals"):
        if key in arrays and (arrays[key].ndim < 1 or len(arrays[key]) != n):
            raise BagFileError(f"{path}: {key} has {len(arrays[key]) if arrays[key].ndim else 0} "
                               f"entries, n_segments has {n} (one per video)")
    label = arrays["label"]
    if label.ndim != 1 or not (label.dtype == bool or (
            label.dtype.kind in "iu" and np.isin(label, (0, 1)).all())):
        raise BagFileError(f"{path}: label must be booleans (or 0/1), one per video; got "
                           f"{label.dtype} {label[:3].tolist()}")
    if "n_frames" in arrays:
        nf = arrays["n_frames"]
        if nf.ndim != 1 or nf.dtype.kind not in "iu" or (nf < 0).any():
            raise BagFileError(f"{path}: n_frames must be whole numbers >= 0, one per video")
    if "anomaly_intervals" in arrays:
        iv = arrays["anomaly_intervals"]
        if iv.ndim != 2 or iv.dtype.kind not in "iu" or iv.shape[1] % 2:
            raise BagFileError(f"{path}: anomaly_intervals must be integers [N, 2k] (start/end "
                               f"pairs), got {iv.dtype} {iv.shape}")
        if "n_frames" not in arrays:
            return
        nf = arrays["n_frames"]
        starts, ends = iv[:, 0::2], iv[:, 1::2]
        present = (starts >= 0) | (ends >= 0)
        bad = present & ((starts < 0) | (ends < starts) | (starts >= nf[:, None]))
        if bad.any():  # an end past n_frames is clipped (real annotations do that); a start is not
            i = int(np.flatnonzero(bad.any(axis=1))[0])
            raise BagFileError(f"{path}: video {arrays['name'][i]} has an anomaly interval "
                               f"{iv[i].tolist()} that is not inside its {int(nf[i])} frames "
                               "(need 0 <= start <= end, start < n_frames)")


def _bag_problem(bag: np.ndarray) -> str:
    """Why a bag cannot be used, or '' when it can."""
    if not np.isfinite(bag).all():
        return "has NaN or infinite features"
    zero_rows = np.flatnonzero(~bag.any(axis=1))
    if zero_rows.size:
        shown = zero_rows.tolist()[:8]
        return (f"has all-zero feature rows at segments {shown}{' …' if zero_rows.size > 8 else ''}"
                f" (inside its {len(bag)} segments)")
    return ""


def concat_bags(*parts: FeatureBags) -> FeatureBags:
    """One split from several (e.g. normal training videos + anomalous videos of another fold).

    Frame counts and annotations are kept only when every part has them.
    """
    def joined(attr: str):
        arrays = [getattr(p, attr) for p in parts]
        if any(a is None for a in arrays):
            return None
        width = max(a.shape[1] for a in arrays) if arrays[0].ndim == 2 else None
        if width is not None:  # interval tables of different widths: pad with -1
            arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1)
                      for a in arrays]
        return np.concatenate(arrays)

    return FeatureBags(
        features=[f for p in parts for f in p.features],
        names=np.concatenate([p.names for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        categories=np.concatenate([p.categories for p in parts]),
        n_frames=joined("n_frames"), anomaly_intervals=joined("anomaly_intervals"),
        source=" + ".join(p.source for p in parts),
    )


def frame_labels(n_frames: int, intervals: np.ndarray) -> np.ndarray:
    """0/1 per frame from inclusive (start, end) pairs; -1 marks an absent pair."""
    labels = np.zeros(n_frames, dtype=np.int8)
    pairs = np.asarray(intervals).reshape(-1, 2)
    for start, end in pairs:
        if start < 0 or end < 0:
            continue
        labels[max(start, 0): min(end, n_frames - 1) + 1] = 1
    return labels
