"""Hypothesis fuzzing of what users feed edgevad: frames, timestamps, manifests, bag files.

Properties: every input is either accepted or refused with one of the project's named errors
(an :class:`~edgevad.errors.EdgevadError`), never a bare ``ValueError``/``KeyError``/ORT error;
and a bad input on one stream leaves another stream's scores bit-identical. Examples are bounded
and ``deadline=None`` (the machine is shared), so the whole file runs in well under a minute.
"""

from __future__ import annotations

import copy
import json
import math
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgevad import Detector
from edgevad.errors import EdgevadError

pytest.importorskip("onnx")

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

H, W = 12, 16


def _good_frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


GOOD = _good_frames(10)

# No subnormal floats anywhere: the trainer calls torch.set_flush_denormal(True), which holds
# for the whole process, so after a training test Hypothesis refuses to draw them.
FLOATS = dict(allow_subnormal=False)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=20)
frames = st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.int16, np.bool_, np.uint16]), SHAPES),
    hnp.arrays(st.sampled_from([np.float32, np.float64]), SHAPES,
               elements=st.floats(width=32, **FLOATS)),
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3))),
    st.none(), st.text(max_size=5), st.integers(), st.lists(st.integers(0, 255), max_size=4),
)
timestamps = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True, **FLOATS),
    st.integers(-10**20, 10**20),
    st.text(max_size=4), st.booleans(), st.just([1.0]),
)


@pytest.fixture(scope="module")
def mil(tiny_artifact):
    return tiny_artifact("mil")


@pytest.fixture(scope="module")
def detector(mil):
    return Detector.load(mil)


@pytest.fixture(scope="module")
def reference(mil):
    det = Detector.load(mil)
    out = [r for f in GOOD for r in det.push(f, "good", None)] + det.flush("good")
    return [(r.index, r.score, r.clip) for r in out]


@FUZZ
@given(st.lists(st.tuples(frames, timestamps), min_size=1, max_size=12))
def test_any_frame_and_timestamp_is_accepted_or_a_named_error(detector, reference, ops):
    """A fuzzed stream beside a good one: only FrameErrors, and the good stream is unchanged."""
    good = []
    try:
        for i, (frame, ts) in enumerate(ops):
            try:
                detector.push(frame, "fuzz", ts)
            except EdgevadError:
                pass
            if i < len(GOOD):
                good += detector.push(GOOD[i], "good", None)
            try:
                detector.process({"fuzz": frame, "other": GOOD[0]}, {"fuzz": ts})
            except EdgevadError:
                pass
        for f in GOOD[len(ops):]:
            good += detector.push(f, "good", None)
        good += detector.flush("good")
    finally:
        for sid in ("fuzz", "good", "other"):
            detector.remove(sid)
    assert [(r.index, r.score, r.clip) for r in good] == reference


# --- manifests --------------------------------------------------------------------------------

def _paths(tree, prefix=()):
    """Every (path, value) in a JSON tree."""
    yield prefix, tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, (*prefix, i))


json_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.floats(allow_nan=True, **FLOATS),
    st.sampled_from(["", "x", "backbone", "head", "float32", "segments", "online", "rgb"]),
    st.just([]), st.just({}), st.lists(st.integers(-1, 20), max_size=5),
)


@pytest.fixture(scope="module")
def manifest_dict(mil):
    return json.loads((mil / "manifest.json").read_text())


@FUZZ
@given(data=st.data())
def test_any_manifest_edit_loads_or_is_a_named_error(mil, manifest_dict, tmp_path_factory, data):
    paths = [p for p, _ in _paths(manifest_dict) if p and p[0] not in ("files",)]
    edits = data.draw(st.lists(st.tuples(st.sampled_from(paths), json_values), min_size=1,
                               max_size=3))
    m = copy.deepcopy(manifest_dict)
    for path, value in edits:
        node = m
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):  # an earlier edit removed the branch
            continue
    art = tmp_path_factory.mktemp("fuzzed") / "art"
    shutil.copytree(mil, art)
    (art / "manifest.json").write_text(json.dumps(m))
    try:
        det = Detector.load(art)
    except EdgevadError:
        return
    try:  # it loaded: it must also run, or refuse frames by name
        out = [r for f in GOOD[:9] for r in det.push(f)] + det.flush()
    except EdgevadError:
        return
    assert all(math.isfinite(r.score) or math.isnan(r.score) for r in out)


# --- bag files ---------------------------------------------------------------------------------

def _column(n):
    shapes = st.sampled_from([(n,), (n + 1,), (max(n - 1, 0),), (n, 2), ()])
    return st.one_of(
        hnp.arrays(np.int64, shapes, elements=st.integers(-2, 40)),
        hnp.arrays(np.float32, shapes, elements=st.floats(-2, 40, width=32, **FLOATS)),
        hnp.arrays(np.bool_, shapes),
        st.just(np.array([f"s{i}" for i in range(n)])),
    )


@FUZZ
@given(data=st.data())
def test_any_bag_file_loads_or_is_a_named_error(tmp_path_factory, data):
    torch = pytest.importorskip("torch")  # noqa: F841 - load_bags lives on the training side
    from edgevad_export.data.bags import FeatureBags, load_bags

    n = data.draw(st.integers(1, 4))
    arrays = {"features": data.draw(hnp.arrays(
        np.float32, st.sampled_from([(n, 5, 3), (n, 0, 3), (n + 1, 5, 3), (n, 5)]),
        elements=st.one_of(st.floats(-3, 3, width=32, **FLOATS), st.just(float("nan")),
                           st.just(0.0))))}
    for key in ("n_segments", "name", "label", "category", "n_frames"):
        if data.draw(st.booleans()) or key in ("n_segments", "label"):
            arrays[key] = data.draw(_column(n))
    if data.draw(st.booleans()):
        arrays["anomaly_intervals"] = data.draw(hnp.arrays(
            np.int64, st.sampled_from([(n, 2), (n, 4), (n, 3), (n,)]), elements=st.integers(-2, 50)))
    path = tmp_path_factory.mktemp("bags") / "b.npz"
    np.savez(path, **arrays)
    try:
        bags = load_bags(path)
    except EdgevadError:
        return
    assert isinstance(bags, FeatureBags) and len(bags) == len(bags.names) == len(bags.labels)
    assert bags.labels.dtype == bool


# --- events: constant memory, same events as keeping every frame ------------------------------

class _ListTracker:
    """The event tracker as it was before it kept running figures: every frame of an open
    event in a list. The reference the constant-memory tracker must match exactly."""

    def __init__(self, threshold, release, min_frames, max_gap):
        self.threshold, self.release = threshold, release
        self.min_frames, self.max_gap = min_frames, max_gap
        self._open, self._below = None, 0

    def update(self, r):
        if self._open is None:
            if r.score >= self.threshold:
                self._open, self._below = [r], 0
            return None
        if r.score >= self.release:
            self._open.append(r)
            self._below = 0
            return None
        self._below += 1
        if self._below <= self.max_gap:
            self._open.append(r)
            return None
        return self._close("score")

    def finish(self):
        return self._close("flush") if self._open is not None else None

    def _close(self, why):
        frames = self._open or []
        if self._below:
            frames = frames[:len(frames) - min(self._below, self.max_gap)] if self.max_gap else frames
        self._open, self._below = None, 0
        if len(frames) < self.min_frames:
            return None
        peak = max(frames, key=lambda r: r.score)
        return dict(start=frames[0].index, end=frames[-1].index, peak_score=peak.score,
                    peak_frame=peak.index, start_time=frames[0].timestamp,
                    end_time=frames[-1].timestamp, label=peak.label,
                    mean_score=float(sum(r.score for r in frames) / len(frames)), closed_by=why)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(scores=st.lists(st.sampled_from([0.0, 0.3, 0.45, 0.5, 0.55, 0.7, 0.9, 0.9, 1.0]) |
                       st.floats(0, 1, **FLOATS), max_size=60),
       threshold=st.sampled_from([0.5, 0.7]), hysteresis=st.sampled_from([0.0, 0.1, 0.3]),
       min_frames=st.integers(1, 5), max_gap=st.integers(0, 4))
def test_events_in_constant_memory_equal_keeping_every_frame(scores, threshold, hysteresis,
                                                             min_frames, max_gap):
    from edgevad.runtime.events import EventTracker
    from edgevad.runtime.results import FrameResult

    new = EventTracker("s", threshold, threshold - hysteresis, min_frames, max_gap)
    ref = _ListTracker(threshold, threshold - hysteresis, min_frames, max_gap)
    got, want = [], []
    for i, v in enumerate(scores):
        r = FrameResult("s", i, i / 25, v, i // 4, label=f"c{i % 3}")
        got.append(new.update(r))
        want.append(ref.update(r))
    got.append(new.finish())
    want.append(ref.finish())
    assert [_fields(e) for e in got] == want
    assert len(new._dips) <= max_gap  # nothing else is kept per frame


def _fields(e):
    if e is None:
        return None
    return dict(start=e.start, end=e.end, peak_score=e.peak_score, peak_frame=e.peak_frame,
                start_time=e.start_time, end_time=e.end_time, label=e.label,
                mean_score=e.mean_score, closed_by=e.closed_by)
