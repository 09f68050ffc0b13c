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

frames = st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.bool_, np.uint16]),
               hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=20)),
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3))),
    st.none(), st.text(max_size=5), st.integers(), st.lists(st.integers(0, 255), max_size=4),
)
timestamps = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
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
    st.none(), st.booleans(), st.integers(-3, 70), st.floats(allow_nan=True),
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
        hnp.arrays(np.float32, shapes, elements=st.floats(-2, 40, width=32)),
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
        elements=st.one_of(st.floats(-3, 3, width=32), st.just(float("nan")), st.just(0.0))))}
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
