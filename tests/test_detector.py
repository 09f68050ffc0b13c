"""edgevad.Detector on tiny hand-built artifacts whose scores numpy can recompute exactly.

Covers: the clip schedule and frame-to-clip mapping (stride equal to, below and above the clip
length, streams shorter than a clip), streaming == offline, multi-stream == single-stream, DAM
state, joint windows and labels, the motion stream, events, and every bad input the issue names.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from edgevad import Detector
from edgevad.artifact.manifest import ManifestError
from edgevad.errors import EdgevadError
from edgevad.runtime.events import EventConfig, EventTracker
from edgevad.runtime.results import FrameResult
from edgevad.runtime.stream import FrameError

pytest.importorskip("onnx")
from tiny_artifacts import frame_features, mil_score  # noqa: E402
from video_files import write_video

H, W = 36, 48


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Frames whose colour drifts, so every clip has a different score."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    return [np.clip(base.astype(np.int16) + 7 * i * np.array([1, -1, 2]), 0, 255).astype(np.uint8)
            for i in range(n)]


def clip_starts(n: int, clip_len: int, stride: int) -> list[tuple[int, int]]:
    from edgevad_export.extraction.extract import clip_starts as extract_clip_starts

    return extract_clip_starts(n, clip_len, stride)


def expected_scores(fs: list[np.ndarray], clip_len: int, stride: int) -> np.ndarray:
    """Independent reference: extraction's clip schedule, a frame takes the score of the last
    clip starting at or before it, clips pad by repeating the last frame."""
    n = len(fs)
    per_frame = np.stack([frame_features(f) for f in fs])
    starts = clip_starts(n, clip_len, stride)
    clip_scores = []
    for start, _ in starts:
        idx = [min(j, n - 1) for j in range(start, start + clip_len)]
        clip_scores.append(mil_score(per_frame[idx].mean(axis=0)))
    out = np.empty(n)
    begins = [s for s, _ in starts]
    for i in range(n):
        k = max(j for j, b in enumerate(begins) if b <= i)
        out[i] = clip_scores[k]
    return out


def stream(det: Detector, fs, sid="0", flush=True) -> list[FrameResult]:
    out = []
    for f in fs:
        out += det.push(f, sid)
    if flush:
        out += det.flush(sid)
    return out


@pytest.mark.parametrize("clip_len,stride,n", [
    (4, 4, 17), (4, 4, 16), (4, 2, 11), (4, 6, 15), (4, 6, 16), (4, 4, 3), (4, 4, 1), (5, 3, 12),
])
def test_every_frame_scored_once_in_order_with_the_right_clip(tiny_artifact, clip_len, stride, n):
    det = Detector.load(tiny_artifact("mil", clip_len=clip_len, stride=stride))
    fs = frames(n)
    out = stream(det, fs)
    assert [r.index for r in out] == list(range(n))
    np.testing.assert_allclose([r.score for r in out], expected_scores(fs, clip_len, stride),
                               atol=1e-6)


def test_scores_arrive_within_the_documented_latency(tiny_artifact):
    det = Detector.load(tiny_artifact("mil", clip_len=4, stride=4))
    lo, hi = det.latency_frames
    assert (lo, hi) == (0, 3)
    seen = {}
    for i, f in enumerate(frames(12)):
        for r in det.push(f):
            seen[r.index] = i
    assert all(lo <= seen[j] - j <= hi for j in seen)
    assert sorted(seen) == list(range(12))  # 12 = 3 full clips: nothing left for flush
    assert det.flush() == []


def test_streaming_equals_score_video(tiny_artifact, tmp_path):
    path = write_video(tmp_path / "v.avi", frames(23))
    decoded = []
    cap = cv2.VideoCapture(str(path))
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    det = Detector.load(tiny_artifact("mil", clip_len=4, stride=4))
    offline = det.score_video(path)
    live = stream(det, decoded, "cam")
    assert len(offline.scores) == len(decoded) == 23
    np.testing.assert_allclose(offline.scores, [r.score for r in live], atol=1e-6, rtol=0)
    assert offline.results[5].timestamp == pytest.approx(0.5)
    assert det.streams == ["cam"]  # score_video's private stream is gone


@pytest.mark.parametrize("kind", ["mil", "ctx", "dam", "joint", "dmrm"])
def test_multi_stream_equals_single_stream(tiny_artifact, kind):
    art = tiny_artifact(kind, window=3 if kind == "ctx" else None)
    a, b, c = frames(14, seed=1), frames(9, seed=2), frames(14, seed=3)
    single = {}
    for name, fs in (("a", a), ("b", b), ("c", c)):
        single[name] = stream(Detector.load(art), fs, name)
    det = Detector.load(art, max_batch=2)
    multi = {"a": [], "b": [], "c": []}
    for i in range(14):
        batch = {"a": a[i], "c": c[i]}
        if i < len(b):
            batch["b"] = b[i]
        for sid, res in det.process(batch).items():
            multi[sid] += res
    for sid in multi:
        multi[sid] += det.flush(sid)
    for sid in single:
        assert [r.index for r in multi[sid]] == [r.index for r in single[sid]]
        np.testing.assert_allclose([r.score for r in multi[sid]],
                                   [r.score for r in single[sid]], atol=1e-6)
        assert [r.label for r in multi[sid]] == [r.label for r in single[sid]]


def test_dam_keeps_the_previous_clip_map_per_stream(tiny_artifact):
    det = Detector.load(tiny_artifact("dam", clip_len=4, stride=4))
    fs = frames(12)
    out = stream(det, fs)
    # first clip: prev_map = clip_map, so no dissimilarity: detection 0.5 and score 0.5
    assert out[0].score == pytest.approx(0.5)
    maps = [np.stack([frame_features(f) for f in fs[k:k + 4]]) for k in (0, 4, 8)]
    s = 20 * np.abs(maps[1] - maps[0]).sum()
    assert out[4].score == pytest.approx(1 / (1 + np.exp(-s)) + s, rel=1e-5)
    det.reset("0")
    again = stream(det, fs)
    assert [r.score for r in again] == [r.score for r in out]


def test_joint_gives_labels_probabilities_and_a_padded_window(tiny_artifact):
    det = Detector.load(tiny_artifact("joint", segments=4))
    out = stream(det, frames(10))
    r = out[0]
    assert r.label in det.class_names and len(r.probabilities) == 14
    assert sum(r.probabilities.values()) == pytest.approx(1.0)
    assert r.label == max(r.probabilities, key=r.probabilities.get)
    assert "label" in r.to_dict()


def test_dmrm_reports_motion_boxes(tiny_artifact):
    det = Detector.load(tiny_artifact("dmrm"))
    fs = []
    for i in range(12):
        f = np.full((96, 128, 3), 60, np.uint8)
        cv2.rectangle(f, (10 + 6 * i, 30), (40 + 6 * i, 60), (255, 255, 255), -1)
        fs.append(f)
    out = stream(det, fs)
    assert out[0].boxes == ()  # the first frame has no flow
    assert all(len(r.boxes) >= 1 for r in out[2:])
    box = out[6].boxes[0]
    assert box.x1 < 10 + 6 * 6 + 30 and box.x2 > 10 + 6 * 6


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,match", [
    (None, "None"),
    (np.zeros((H, W), np.uint8), "H x W x 3"),
    (np.zeros((H, W, 4), np.uint8), "3 channels"),
    (np.zeros((H, W, 3), np.float32), "uint8"),
    (np.zeros((H + 2, W, 3), np.uint8), "changed resolution"),
])
def test_bad_frames_raise_and_lose_nothing(tiny_artifact, bad, match):
    art = tiny_artifact("dam", clip_len=4, stride=4)
    fs = frames(13)
    clean = stream(Detector.load(art), fs, "a")
    det = Detector.load(art)
    got = []
    for i, f in enumerate(fs):
        if i == 6:
            with pytest.raises(FrameError, match=match):
                det.process({"b": fs[i], "a": bad})
            got += det.push(f, "a")
            det.push(fs[i], "b")  # the other stream was untouched too: frame 6 arrives once
        else:
            got += det.push(f, "a")
            det.push(f, "b")
    got += det.flush("a")
    assert [r.score for r in got] == [r.score for r in clean]
    assert det.frames_seen("b") == 13


def test_timestamps_must_not_go_backwards(tiny_artifact):
    det = Detector.load(tiny_artifact("mil"))
    f = frames(3)
    det.push(f[0], timestamp=1.0)
    det.push(f[1], timestamp=1.0)  # equal is fine
    with pytest.raises(FrameError, match="backwards"):
        det.push(f[2], timestamp=0.5)
    with pytest.raises(FrameError, match="not finite"):
        det.push(f[2], timestamp=float("nan"))
    assert det.frames_seen() == 2


def test_pushing_after_flush_needs_reset(tiny_artifact):
    det = Detector.load(tiny_artifact("mil"))
    stream(det, frames(5))
    with pytest.raises(FrameError, match="reset"):
        det.push(frames(1)[0])
    det.reset("0")
    assert len(stream(det, frames(5))) == 5


def test_a_changed_file_is_refused_at_load(tiny_artifact, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact("mil"), art)
    with open(art / "head.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="head.onnx changed"):
        Detector.load(art)
    (art / "head.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        Detector.load(art)


def test_idle_streams_are_flushed_and_evicted(tiny_artifact):
    det = Detector.load(tiny_artifact("mil"))
    early = [r.index for f in frames(6) for r in det.push(f, "gone")]
    out = det.evict_idle(0.0)
    assert early == [0, 1, 2, 3] and [r.index for r in out["gone"]] == [4, 5]
    assert det.streams == []


# --- events -----------------------------------------------------------------------------------

def _results(scores):
    return [FrameResult("s", i, i / 10, float(v), i // 4) for i, v in enumerate(scores)]


def test_events_use_hysteresis_and_minimum_length():
    t = EventTracker("s", threshold=0.5, release=0.4, min_frames=3)
    scores = [0.1, 0.6, 0.45, 0.9, 0.42, 0.3, 0.55, 0.6, 0.2, 0.7]
    events = [e for e in map(t.update, _results(scores)) if e is not None]
    assert len(events) == 1  # 0.55, 0.6 is too short; the last run is still open
    e = events[0]
    assert (e.start, e.end, e.peak_frame, e.peak_score) == (1, 4, 3, 0.9)
    assert e.start_time == pytest.approx(0.1) and e.closed_by == "score"
    assert t.finish() is None  # the open run has one frame


def test_event_config_resolves_against_the_model():
    assert EventConfig().resolve(0.5, (0.0, 1.0)) == (0.5, pytest.approx(0.4))
    assert EventConfig(threshold=1.2).resolve(1.0, (0.0, 2.0)) == (1.2, pytest.approx(1.0))
    with pytest.raises(ValueError, match="release"):
        EventConfig(threshold=0.5, release=0.6).resolve(0.5, (0, 1))


def test_detector_delivers_events_by_callback_or_iterator(tiny_artifact):
    got = []
    cfg = EventConfig(threshold=0.0, min_frames=2)
    det = Detector.load(tiny_artifact("mil"), events=cfg, on_event=got.append)
    for i in range(50):  # a callback-only app: the queue must not grow
        stream(det, frames(9), sid=f"s{i}")
    assert len(got) == 50 and list(det.events()) == [] and len(det._events) == 0
    det = Detector.load(tiny_artifact("mil"), events=cfg)
    stream(det, frames(9))
    events = list(det.events())
    assert len(events) == 1 and events[0].closed_by == "flush"
    assert (events[0].start, events[0].end) == (0, 8)
    assert (got[0].start, got[0].end, got[0].peak_score) == (0, 8, events[0].peak_score)


def test_a_manifest_whose_protocol_contradicts_its_geometry_is_refused(tiny_artifact, tmp_path):
    import json

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact("mil"), art)
    m = json.loads((art / "manifest.json").read_text())
    m["protocol"]["stride"] = 3
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="protocol clips"):
        Detector.load(art)
    m["protocol"]["stride"] = 4
    m["stages"][0]["geometry"]["color"] = "purple"
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="color"):
        Detector.load(art)


def test_tensorrt_backend_without_tensorrt_says_what_to_install(tiny_artifact, monkeypatch, caplog):
    import edgevad.runtime.engines as engines_mod
    from edgevad.errors import EdgevadError
    from edgevad.runtime.openvino_engine import openvino_available

    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(EdgevadError, match="TensorRT|tensorrt|engine"):
        Detector.load(tiny_artifact("mil"), backend="tensorrt")
    # auto with engines listed but no usable TensorRT: the next backend, and a warning says why
    monkeypatch.setattr(engines_mod, "_auto_reason", lambda manifest: ("tensorrt", "engines"))
    det = Detector.load(tiny_artifact("mil"), backend="auto")
    assert det.backend == ("openvino" if openvino_available() else "onnxruntime")
    assert "tensorrt unusable here" in caplog.text
    assert "fell back to" in det.backend_choice.reason


def test_a_head_trained_on_other_features_is_refused(tiny_artifact, tmp_path):
    import json

    from edgevad.artifact.protocols import ProtocolMismatchError

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact("mil"), art)
    m = json.loads((art / "manifest.json").read_text())
    g = dict(m["stages"][0]["geometry"])
    m["model"]["feature_protocol"] = {"backbone": "tiny", "clip_len": 4, "stride": 8,
                                      "geometry": {**g, "stride": 8}}
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ProtocolMismatchError, match="stride"):
        Detector.load(art)
    m["model"]["feature_protocol"] = {"backbone": "tiny", "clip_len": 4, "stride": 4,
                                      "geometry": g}
    (art / "manifest.json").write_text(json.dumps(m))
    Detector.load(art)  # the same protocol passes


# --- faults around the core: eviction, stream keys, thresholds, threads -------------------------

def test_push_keeps_the_final_results_of_streams_it_evicts(tiny_artifact):
    import time

    det = Detector.load(tiny_artifact("mil"), idle_timeout_s=0.05)
    a = [r.index for f in frames(6) for r in det.push(f, "a")]
    time.sleep(0.1)
    b = [r.index for f in frames(2) for r in det.push(f, "b")]  # evicts "a" inside this push
    assert a == [0, 1, 2, 3] and b == [] and det.streams == ["b"]
    evicted = det.evicted()
    assert [r.index for r in evicted["a"]] == [4, 5] and det.evicted() == {}
    ref = stream(Detector.load(tiny_artifact("mil")), frames(6), sid="a")
    assert [r.score for r in evicted["a"]] == [r.score for r in ref[4:]]


def test_int_stream_keys_keep_timestamps_and_the_backwards_check(tiny_artifact):
    det = Detector.load(tiny_artifact("mil"))
    fs = frames(5)
    got = []
    for i, f in enumerate(fs[:4]):
        got += det.process({7: f}, {7: 1.0 + i})["7"]
    assert [r.timestamp for r in got] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(FrameError, match="backwards"):
        det.process({7: fs[4]}, {7: 0.5})
    with pytest.raises(FrameError, match="given twice"):
        det.process({7: fs[4], "7": fs[4]})


@pytest.mark.parametrize("ts", ["1.5", b"1", [1.0], True])
def test_a_timestamp_that_is_not_a_number_is_a_frame_error(tiny_artifact, ts):
    det = Detector.load(tiny_artifact("mil"))
    with pytest.raises(FrameError, match="timestamp must be a number"):
        det.push(frames(1)[0], "s", ts)
    assert det.frames_seen("s") == 0


def test_thresholds_that_cannot_work_are_named_errors(tiny_artifact, tmp_path):
    import json

    from edgevad.errors import ConfigError

    for cfg in (EventConfig(threshold=float("nan")), EventConfig(threshold=float("inf")),
                EventConfig(min_frames=0), EventConfig(threshold="high")):
        with pytest.raises(ConfigError):
            Detector.load(tiny_artifact("mil"), events=cfg)
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact("mil"), art)
    m = json.loads((art / "manifest.json").read_text())
    m["default_threshold"] = float("nan")
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="default_threshold"):
        Detector.load(art)


def test_one_detector_shared_by_threads(tiny_artifact):
    """Streams created, fed, flushed and removed on four threads while a fifth evicts idle ones:
    no 'dictionary changed size', and every stream's scores equal a lone stream's."""
    import threading

    det = Detector.load(tiny_artifact("mil"))
    fs = frames(9)
    ref = [r.score for r in stream(Detector.load(tiny_artifact("mil")), fs)]
    errors, scores, stop = [], [], threading.Event()

    def worker(w):
        try:
            for k in range(15):
                sid = f"w{w}-{k}"
                out = stream(det, fs, sid=sid)
                det.remove(sid)
                scores.append([r.score for r in out])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def evictor():
        while not stop.is_set():
            try:
                det.evict_idle(0.0)  # evicts streams mid-feed: their frames come back here
                list(det.events())
                _ = det.streams  # the property reads the stream table under the lock
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    ev = threading.Thread(target=evictor)
    ev.start()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    ev.join()
    # an evicted stream's later frames start a new stream, so some workers hit 'unknown stream'
    # or 'flushed' - named errors; a RuntimeError would mean unguarded state
    assert not [e for e in errors if not isinstance(e, EdgevadError)], errors
    full = [s for s in scores if len(s) == 9]
    assert all(s == ref for s in full)


def test_one_detector_shared_by_threads_without_eviction(tiny_artifact):
    import threading

    det = Detector.load(tiny_artifact("mil"))
    fs = frames(9)
    ref = [r.score for r in stream(Detector.load(tiny_artifact("mil")), fs)]
    out: dict[str, list] = {}

    def worker(w):
        for k in range(10):
            sid = f"w{w}-{k}"
            out[sid] = [r.score for r in stream(det, fs, sid=sid)]
            det.remove(sid)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 40 and all(v == ref for v in out.values())


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["stages"][0].update(name="trunk"), "backbone"),
    (lambda m: m["protocol"].update(window=-3), "window"),
    (lambda m: m["protocol"].update(stride=0), "stride"),
    (lambda m: m.update(score_range=[1.0, 0.0]), "score_range"),
])
def test_a_tampered_manifest_is_a_named_error(tiny_artifact, tmp_path, edit, match):
    import json

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact("mil"), art)
    m = json.loads((art / "manifest.json").read_text())
    edit(m)
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=match):
        Detector.load(art)


def test_a_slow_batch_does_not_evict_the_streams_it_was_fed(tiny_artifact, monkeypatch):
    """An engine call longer than idle_timeout_s (a slow CPU, a big batch) must not evict the
    very streams whose frames it scored: only streams that got no frame are idle."""
    import time

    det = Detector.load(tiny_artifact("mil"), idle_timeout_s=0.05)
    real = det.pipeline.run

    def slow(*args, **kw):
        time.sleep(0.1)
        return real(*args, **kw)

    monkeypatch.setattr(det.pipeline, "run", slow)
    fs = frames(8)
    for f in fs:
        det.process({"a": f, "b": f})
    assert sorted(det.streams) == ["a", "b"]
