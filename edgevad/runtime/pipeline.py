"""How an artifact's stages chain, read from its manifest: clips in, one score per clip out.

The pipeline is stateless; everything a stream carries between clips (the feature window of a
segment head, DAM's previous clip map) lives in the stream's :class:`ClipState` and is passed in
and updated here. One call runs a batch of clips from any number of streams through each engine
once (engine batch axis = clips), which is how the Detector batches across cameras.

Links (``manifest.links``) say what feeds the head:
- ``via="segments"``: the head sees a window of the stream's last ``window`` clip features as
  segments ``[1, W, D]`` and the newest clip's score is the stream's. Per-segment heads (MIL,
  MRM, DMRM) use W = 1, which is exact; heads with temporal context use the manifest's
  ``protocol.window``; a head that takes exactly ``segments`` segments (joint) gets that many,
  the window padded at its start by repeating the stream's first clip until it fills.
- ``via="identity"``: this clip's output (DAM's ``clip_map``).
- ``via="state"``: the previous clip's output (DAM's ``prev_map``); a stream's first clip uses
  ``protocol.state["initial"]`` (this clip's map, so the first dissimilarity is zero).

A model without a backbone stage (the manifest's ``features``: ``motion-prior``) gets each
clip's runtime-computed feature vector (``[D]``, made by the stream) in place of a pixel clip;
it feeds the head through the pseudo-stage ``features`` like a backbone's output would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edgevad.artifact.manifest import FEATURE_KINDS, FEATURES_STAGE, Manifest, ManifestError
from edgevad.runtime.engines import Engine

__all__ = ["ClipOutput", "ClipState", "Pipeline"]


@dataclass
class ClipState:
    """What one stream carries from clip to clip."""

    windows: dict[str, deque] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def reset(self) -> None:
        self.windows.clear()
        self.state.clear()


@dataclass(frozen=True)
class ClipOutput:
    score: float
    probabilities: np.ndarray | None = None


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Pipeline:
    """The stage graph of one artifact, over already-opened engines (one per stage)."""

    def __init__(self, manifest: Manifest, engines: dict[str, Engine]):
        self.manifest = manifest
        self.engines = engines
        proto = manifest.protocol
        self.online = proto.mode == "online"
        self.window = int(proto.window or (proto.segments if proto.segments_fixed else 1) or 1)
        self.pad_window = bool(proto.segments_fixed)
        self.has_motion = manifest.has_stage("motion")
        self.computed = (None if manifest.features is None
                         else FEATURE_KINDS.get(str(manifest.features.get("kind"))))
        """Output name of runtime-computed features (no backbone stage), else None."""
        self.head_inputs: dict[str, tuple[str, str, str]] = {}  # input -> (stage, output, via)
        for link in manifest.links:
            stage, _, tensor = link.target.partition("/")
            if stage == "head":
                src_stage, _, src_out = link.source.partition("/")
                self.head_inputs.setdefault(tensor, (src_stage, src_out, link.via))
        head = manifest.stage("head")
        missing = [n for n in head.input_names if n not in self.head_inputs]
        if missing:
            raise ManifestError(f"no link feeds head input(s) {missing}")
        self.score_output = "score" if "score" in head.output_names else "scores"
        self.class_output = "class_logits" if "class_logits" in head.output_names else None
        self.state_links = {n: src for n, src in self.head_inputs.items() if src[2] == "state"}
        self.initial = (proto.state or {}).get("initial")

    def run(self, clips: list[np.ndarray], flows: list[np.ndarray] | None,
            states: list[ClipState]) -> list[ClipOutput]:
        """Score one clip per entry (a batch across streams); updates ``states`` in place."""
        if not clips:
            return []
        outs: dict[str, dict[str, np.ndarray]] = {}
        if self.computed is not None:  # clips are already the head's per-clip features
            outs[FEATURES_STAGE] = {self.computed: np.stack(clips).astype(np.float32)}
        else:
            outs["backbone"] = self.engines["backbone"].run({"clip": np.stack(clips)})
        if self.has_motion:
            if flows is None:
                raise ValueError("this model has a motion stream: flow clips are required")
            outs["motion"] = self.engines["motion"].run({"flow": np.stack(flows)})
        feeds: dict[str, list[np.ndarray]] = {}
        for name, (stage, output, via) in self.head_inputs.items():
            if via == "segments":
                feeds[name] = self._windows(name, outs[stage][output], states)
            elif via == "identity":
                feeds[name] = list(outs[stage][output])
            elif via != "state":
                raise ManifestError(f"unknown link kind {via!r} for head input {name!r}")
        for name in self.state_links:
            first = feeds.get(self.initial) if self.initial is not None else None
            prevs = []
            for i, st in enumerate(states):
                prev = st.state.get(name)
                if prev is None:
                    if first is None:
                        raise ManifestError(f"state input {name!r} has no initial value")
                    prev = first[i]
                prevs.append(prev)
            feeds[name] = prevs
        # rows whose windows differ in length (streams still filling them) run separately, so a
        # stream's scores never depend on which other streams shared its batch
        groups: dict[tuple, list[int]] = {}
        for i in range(len(clips)):
            groups.setdefault(tuple(feeds[n][i].shape for n in feeds), []).append(i)
        scores = np.empty(len(clips), dtype=np.float64)
        probs = None
        for rows in groups.values():
            head_out = self.engines["head"].run({n: np.stack([feeds[n][i] for i in rows])
                                                 for n in feeds})
            for name, (_, output, _) in self.state_links.items():
                for j, i in enumerate(rows):
                    states[i].state[name] = np.array(head_out[output][j], copy=True)
            s = np.asarray(head_out[self.score_output], dtype=np.float64)
            scores[rows] = s[:, -1] if s.ndim == 2 else s  # segment heads: the newest clip
            if self.class_output is not None:
                p = _softmax(np.asarray(head_out[self.class_output], dtype=np.float64))
                if probs is None:
                    probs = np.empty((len(clips), p.shape[1]), dtype=np.float64)
                probs[rows] = p
        return [ClipOutput(float(scores[i]), None if probs is None else probs[i])
                for i in range(len(clips))]

    def _windows(self, name: str, features: np.ndarray, states: list[ClipState]
                 ) -> list[np.ndarray]:
        """Append each clip's feature to its stream's window; each window as [W, D]."""
        rows = []
        for i, st in enumerate(states):
            win = st.windows.get(name)
            if win is None:
                win = st.windows[name] = deque(maxlen=self.window)
            f = np.array(features[i], copy=True)
            if self.pad_window and not win:
                win.extend([f] * (self.window - 1))
            win.append(f)
            rows.append(np.stack(win))
        return rows
