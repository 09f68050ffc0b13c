"""The OpenVINO backend against ONNX Runtime: same artifacts, per-stream semantics and scores.

Tiny hand-built artifacts of every pipeline shape in the zoo (per-segment head, windowed head,
fixed-segment joint head with classes, DAM's two-input head with its previous map carried by the
stream, dmrm's motion stream) run on both backends with two interleaved streams; then a real
export (I3D with its Kinetics weights) on real video through the Detector and through
``edgevad run``. Skipped with a reason where ``openvino`` is not installed (the ``test`` extra
installs it).
"""

from __future__ import annotations

import csv
import logging
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("openvino", reason="OpenVINO not installed: pip install 'edgevad[openvino]'")

from edgevad import Detector  # noqa: E402
from edgevad.cli.main import app  # noqa: E402
from edgevad.errors import MissingDependencyError  # noqa: E402
from edgevad.runtime import engines as engines_mod  # noqa: E402
from edgevad.runtime import openvino_engine as ov_mod  # noqa: E402
from edgevad.runtime.engines import EngineError  # noqa: E402

KINDS = [("mil", {}), ("ctx", {"window": 3}), ("joint", {}), ("dam", {}), ("dmrm", {})]


def _stream_scores(det: Detector, frames: list[np.ndarray]) -> dict[str, list]:
    """Two streams fed in lockstep (one batch per tick), the second with inverted frames."""
    out: dict[str, list] = {"a": [], "b": []}
    for f in frames:
        for sid, rs in det.process({"a": f, "b": 255 - f}).items():
            out[sid] += rs
    for sid in out:
        out[sid] += det.flush(sid)
    return out


@pytest.mark.parametrize("kind,kw", KINDS, ids=[k for k, _ in KINDS])
def test_every_pipeline_shape_matches_onnxruntime(tiny_artifact, kind, kw, tmp_path):
    art = tiny_artifact(kind, **kw)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(22)]
    ort = _stream_scores(Detector.load(art, backend="onnxruntime"), frames)
    det = Detector.load(art, backend="openvino", device="CPU")
    assert det.backend == "openvino"
    assert all(e.precision == "f32" and "f32" in e.device for e in det.engines.values())
    ov = _stream_scores(det, frames)
    for sid in ("a", "b"):
        assert [r.index for r in ov[sid]] == [r.index for r in ort[sid]] == list(range(22))
        a, b = np.array([r.score for r in ort[sid]]), np.array([r.score for r in ov[sid]])
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-5)
        assert np.ptp(a) > 0
        if kind == "joint":
            assert [r.label for r in ov[sid]] == [r.label for r in ort[sid]]
    # the streams differ, so a backend mixing their state up would not match
    assert not np.allclose([r.score for r in ov["a"]], [r.score for r in ov["b"]])


def test_an_engine_serves_several_threads_at_once(tiny_artifact):
    """Engines are shared by every stream and Detector of a process, and ONNX Runtime sessions
    run concurrently: OpenVINO's runner must too (one infer request per thread; a shared one
    raised "Infer Request is busy" when triton-bench's camera threads ran in process)."""
    from concurrent.futures import ThreadPoolExecutor

    art = tiny_artifact("mil")
    engine = Detector.load(art, backend="openvino").engines["backbone"]
    rng = np.random.default_rng(2)
    shape = [d if isinstance(d, int) else 1 for d in engine.stage.inputs[0].shape]
    clips = [rng.standard_normal(shape, dtype=np.float32) for _ in range(8)]
    name = engine.input_names[0]
    alone = [engine.run({name: c}) for c in clips]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda c: engine.run({name: c}), clips * 25))
    for i, got in enumerate(together):
        for out, want in alone[i % len(clips)].items():
            np.testing.assert_array_equal(got[out], want)


def test_precision_is_explicit_and_recorded(tiny_artifact, caplog):
    import openvino as ov

    art = tiny_artifact("mil")
    caps = [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    with caplog.at_level(logging.WARNING):
        det = Detector.load(art, backend="openvino", precision="bf16")
    eng = det.engines["backbone"]
    assert eng.requested_precision == "bf16"
    if "BF16" in caps:
        assert eng.precision == "bf16"
    else:  # a CPU without bf16 runs f32 and says so instead of claiming bf16
        assert eng.precision == "f32" and "not the bf16 asked for" in caplog.text
    assert eng.precision in eng.device
    with pytest.raises(EngineError, match="unknown OpenVINO precision"):
        Detector.load(art, backend="openvino", precision="int4")
    with pytest.raises(EngineError, match="OpenVINO option"):
        Detector.load(art, backend="onnxruntime", precision="bf16")


def test_edgevad_run_takes_bf16_and_records_what_ran(tiny_artifact, tmp_path):
    """``edgevad run --backend openvino --precision bf16``: report.json names, per engine, the
    graph and the precision that really ran (f32 on a CPU without bf16, never a claimed bf16)."""
    import json

    from video_files import noise_frames, write_video

    video = write_video(tmp_path / "v.mp4", noise_frames(12, (20, 24)))
    res = CliRunner().invoke(app, ["run", str(video), "--artifacts", str(tiny_artifact("mil")),
                                   "--out", str(tmp_path / "out"), "--backend", "openvino",
                                   "--precision", "bf16", "--no-plot"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "run" / "report.json").read_text())
    assert report["backend"] == "openvino" and set(report["engines"]) == {"backbone", "head"}
    ran = {e["precision"] for e in report["engines"].values()}
    bf16_cpu = "BF16" in ov_mod._core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert ran == ({"bf16"} if bf16_cpu else {"f32"})
    assert all(e["precision"] in e["device"] and e["graph"].endswith(".onnx")
               for e in report["engines"].values())


def test_compiled_models_are_cached(tiny_artifact, tmp_path, monkeypatch):
    cache = tmp_path / "ovcache"
    monkeypatch.setenv(ov_mod.CACHE_ENV, str(cache))
    art = tiny_artifact("dam")
    first = Detector.load(art, backend="openvino")
    blobs = sorted(p.name for p in cache.iterdir())
    assert blobs, "OpenVINO wrote no compiled blob into CACHE_DIR"
    assert all(e.cache_dir == cache for e in first.engines.values())
    second = Detector.load(art, backend="openvino")  # from the cache: same results
    frames = [np.full((20, 24, 3), 9 * i, np.uint8) for i in range(9)]
    s1 = [r.score for f in frames for r in first.push(f)] + [r.score for r in first.flush()]
    s2 = [r.score for f in frames for r in second.push(f)] + [r.score for r in second.flush()]
    assert s1 == s2 and sorted(p.name for p in cache.iterdir()) == blobs
    monkeypatch.setenv(ov_mod.CACHE_ENV, "off")
    assert Detector.load(art, backend="openvino").engines["head"].cache_dir is None


def test_auto_prefers_openvino_and_says_why(tiny_artifact, monkeypatch):
    art = tiny_artifact("mil")
    det = Detector.load(art)
    assert det.backend == "openvino"
    assert det.backend_choice.asked == "auto" and "OpenVINO is installed" in \
        det.backend_choice.reason
    assert "openvino" in det.backend_choice.describe()
    # ONNX Runtime providers asked for: auto keeps ONNX Runtime
    det = Detector.load(art, providers=["CUDAExecutionProvider"])
    assert det.backend == "onnxruntime"
    monkeypatch.setattr(ov_mod, "openvino_available", lambda: False)
    det = Detector.load(art)
    assert det.backend == "onnxruntime" and "not installed" in det.backend_choice.reason


def test_unusable_device_and_missing_openvino_are_named(tiny_artifact, monkeypatch):
    art = tiny_artifact("mil")
    with pytest.raises(EngineError, match="device 'NPU7' is not available"):
        Detector.load(art, backend="openvino", device="NPU7")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    ov_mod._core.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r"edgevad\[openvino\]"):
            Detector.load(art, backend="ov")
    finally:
        ov_mod._core.cache_clear()
    assert engines_mod.resolve_backend("OV") == "openvino"


# --- A real export on real video ----------------------------------------------------------------


@pytest.fixture(scope="module")
def i3d_mil(i3d_mil_export):
    return i3d_mil_export[0]  # conftest: one export per session, shared with test_runtime_real


def test_real_i3d_scores_match_onnxruntime(i3d_mil, shared_data):
    from edgevad.media.video import read_video

    clip = shared_data / "clips" / "pets2009_vtest.mp4"
    frames = [f for _, f in zip(range(40), read_video(clip))]
    got = {}
    for backend in ("onnxruntime", "openvino"):
        det = Detector.load(i3d_mil, backend=backend)
        rs = [r for f in frames for r in det.push(f)] + det.flush()
        assert [r.index for r in rs] == list(range(40))
        got[backend] = np.array([r.score for r in rs])
    assert np.ptp(got["onnxruntime"]) > 0
    assert np.max(np.abs(got["openvino"] - got["onnxruntime"])) <= 1e-4


def test_edgevad_run_same_scores_on_both_backends(i3d_mil, shared_data, tmp_path):
    """``edgevad run`` on a whole Ped2 test video: OpenVINO f32 within 1e-3 of ONNX Runtime on
    every frame."""
    video = shared_data / "ped2" / "testing" / "04.mp4"
    scores = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / backend
        res = CliRunner().invoke(app, ["run", str(video), "--artifacts", str(i3d_mil), "--out",
                                       str(out), "--backend", backend, "--no-plot"])
        assert res.exit_code == 0, res.output
        assert backend in res.output
        with open(out / "run" / "04.scores.csv", newline="") as fh:  # each run's own folder
            rows = list(csv.DictReader(fh))
        scores[backend] = np.array([float(r["score"]) for r in rows])
    assert "f32" in res.output  # the precision that ran is shown
    a, b = scores["onnxruntime"], scores["openvino"]
    assert len(a) == len(b) > 100 and np.ptp(a) > 0
    assert np.max(np.abs(a - b)) <= 1e-3
