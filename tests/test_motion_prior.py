"""``motion-prior`` end to end on real Ped2 video: ``edgevad fit-prior`` -> ``edgevad export`` ->
the Detector, which computes the head's input (per-clip flow statistics) per stream, with no
backbone. Checked against the Ped2 benchmark's own clip-by-clip scoring for the same fit, across
streams, on every runtime backend the suite covers, and on bad manifests."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

torch = pytest.importorskip("torch")

NORMAL = ("training", "08")  # 120 frames, all normal
VIDEO = ("testing", "02")  # 180 frames, a cyclist among walkers from frame ~95


def _path(shared: Path, video: tuple[str, str]) -> Path:
    return shared / "ped2" / video[0] / f"{video[1]}.mp4"


@pytest.fixture(scope="module")
def prior(shared_data, tmp_path_factory):
    """A motion-prior fitted on one normal Ped2 video and exported (one export per module)."""
    from edgevad_export.exporter import export_model
    from edgevad_export.training.prior import fit_prior

    root = tmp_path_factory.mktemp("prior")
    ckpt = fit_prior([_path(shared_data, NORMAL)], root / "ckpt")
    art = export_model("motion-prior", root / "art", checkpoint=ckpt)
    return ckpt, art


@pytest.fixture(scope="module")
def live(prior, shared_data):
    """The Detector's per-frame results on VIDEO (ONNX Runtime)."""
    from edgevad import Detector

    det = Detector.load(prior[1], backend="onnxruntime")
    return det.score_video(_path(shared_data, VIDEO))


def _float32_flow_work(work: Path, shared: Path, videos) -> None:
    """The benchmark's inputs for ``videos`` in ``work``: flow maps as ``ped2_flow.py`` makes
    them (kept float32 here, so only the implementations are compared) and the clip grid of
    ``ped2_clips.py`` (every 8 frames, a padded tail)."""
    import ped2_clips
    import ped2_flow

    from edgevad.media.motion import FlowEstimator, flow_magnitude
    from edgevad.media.video import read_video

    for split, name in videos:
        est = FlowEstimator(size=ped2_flow.SIZES["240x360"])
        mag = np.stack([flow_magnitude(est(f)) for f in read_video(_path(shared, (split, name)))])
        out = ped2_flow.flow_file(work, split, name, "240x360")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, mag=mag)
        plan = ped2_clips.cut_clips(len(mag), "s8")
        clip = ped2_clips.clip_file(work, split, name, "orig", "s8")
        clip.parent.mkdir(parents=True, exist_ok=True)
        np.savez(clip, start=np.asarray([s for s, _ in plan]), n_frames=len(mag))


def test_live_scores_are_the_benchmarks_clip_by_clip_scores(prior, live, shared_data,
                                                            tmp_path):
    """The shipped recipe's figure (98.8 clip by clip) is what the Detector computes: the
    benchmark's ``clip_level_normality`` for the same normal video gives every clip the score
    the Detector gives it, and the fitted statistics are the benchmark's."""
    import ped2_weak_split

    _float32_flow_work(tmp_path, shared_data, [NORMAL, VIDEO])
    bench = np.asarray(ped2_weak_split.clip_level_normality(
        "motion-normality-upper@240x360", tmp_path, [NORMAL], [VIDEO])["/".join(VIDEO)])
    n = len(bench)
    assert len(live.results) == n == 180
    clip_scores: dict[int, float] = {}
    for r in live.results:
        assert clip_scores.setdefault(r.clip, r.score) == r.score
    starts = 8 * np.arange(len(clip_scores))
    want = bench[np.minimum(starts + 15, n - 1)]  # the benchmark's frame ending each clip
    got = np.array([clip_scores[k] for k in range(len(clip_scores))])
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(json.loads((shared_data / "ped2" / "test_frame_labels.json")
                                   .read_text())[VIDEO[1]], bool)
    assert roc_auc_score(labels, live.scores) > 0.9  # the cyclist's frames score higher

    meta = json.loads((prior[0] / "checkpoint.json").read_text())
    import ped2_clips

    starts = np.asarray([s for s, _ in ped2_clips.cut_clips(120, "s8")])
    normal = ped2_weak_split.motion_clip_features(tmp_path, *NORMAL, "240x360", starts, 120)
    np.testing.assert_allclose(meta["fit"]["mean"], normal.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(meta["fit"]["std"], normal.std(axis=0) + 1e-6, rtol=1e-4)
    assert meta["normal_videos"] == [{
        "file": "08.mp4", "sha256": meta["normal_videos"][0]["sha256"], "frames": 120,
        "clips": 14}]


def test_streams_batches_flush_and_eviction_keep_each_streams_scores(prior, live,
                                                                      shared_data):
    """Two cameras through ``process`` (clips of both in one head batch), one cut short and
    flushed (its tail clip padded), a third evicted when idle: every stream's scores are what it
    gets alone."""
    from edgevad import Detector
    from edgevad.media.video import read_video

    frames = list(read_video(_path(shared_data, VIDEO)))
    other = list(read_video(_path(shared_data, NORMAL)))[:45]
    det = Detector.load(prior[1], backend="onnxruntime", max_batch=4)
    alone = Detector.load(prior[1], backend="onnxruntime").score_video(
        _path(shared_data, NORMAL)).scores
    out: dict[str, list] = {"a": [], "b": []}
    for i, f in enumerate(frames):
        batch = {"a": f} if i >= len(other) else {"a": f, "b": other[i]}
        for sid, rs in det.process(batch).items():
            out[sid].extend(rs)
    out["a"] += det.flush("a")
    out["b"] += det.flush("b")
    np.testing.assert_array_equal([r.score for r in out["a"]], live.scores)
    assert [r.index for r in out["b"]] == list(range(45))
    # 45 frames: clips at 0..24 complete and a padded tail clip at 32 (frames 32-44)
    assert len({r.clip for r in out["b"]}) == 5
    np.testing.assert_array_equal([r.score for r in out["b"]][:32], alone[:32])
    # the tail clip is the mean of frames 32-44 and frame 44 repeated three times
    import onnxruntime as ort

    from edgevad.artifact.zoo import FLOW_STATISTICS_FEATURES
    from edgevad.runtime.stream import flow_statistics_clips

    feats, n = flow_statistics_clips(other, FLOW_STATISTICS_FEATURES)
    assert n == 45 and len(feats) == 5
    head = ort.InferenceSession(str(prior[1] / "head.onnx"), providers=["CPUExecutionProvider"])
    tail = head.run(None, {"features": feats[None, -1:]})[0][0, 0]
    np.testing.assert_allclose([r.score for r in out["b"][32:]], float(tail), atol=1e-7)
    assert any(r.boxes for r in out["a"][100:])  # motion boxes come with the scores

    det = Detector.load(prior[1], backend="onnxruntime", idle_timeout_s=0.0)
    gone = [r for f in frames[:20] for r in det.push(f, stream="gone")]  # clip 0: frames 0-7
    det.push(frames[0], stream="new")  # evicts "gone": flushed (tail clip 8-19), results kept
    gone += det.evicted()["gone"]
    assert [r.index for r in gone] == list(range(20)) and det.streams == ["new"]
    np.testing.assert_array_equal([r.score for r in gone[:8]], live.scores[:8])


def test_openvino_runs_the_prior_as_onnx_runtime_does(prior, live, shared_data):
    pytest.importorskip("openvino")
    from edgevad import Detector

    det = Detector.load(prior[1], backend="openvino")
    got = det.score_video(_path(shared_data, VIDEO)).scores
    np.testing.assert_allclose(got, live.scores, atol=1e-5)


def test_triton_repository_refuses_the_prior_by_name(prior, tmp_path):
    from edgevad.triton.repository import TritonRepositoryError, write_repository

    with pytest.raises(TritonRepositoryError, match="no backbone stage"):
        write_repository(prior[1], tmp_path / "repo")


def _broken(art: Path, tmp: Path, change) -> Path:
    dest = tmp / "broken"
    shutil.copytree(art, dest)
    m = json.loads((dest / "manifest.json").read_text())
    change(m)
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


@pytest.mark.parametrize("change, message", [
    (lambda m: m["features"].update(kind="flow-histogram"), "kind 'flow-histogram' is unknown"),
    (lambda m: m["features"].update(size=[240]), "size must be"),
    (lambda m: m["features"].update(finest_scale=7), "finest_scale must be"),
    (lambda m: m["features"].update(stride=16), "differ from the protocol"),
    (lambda m: m["features"].update(statistics=["p50", "max"]), "takes 7 features per clip"),
    (lambda m: m["features"].pop("preset"), "lacks 'preset'"),
    (lambda m: m.pop("features"), "no 'features' record"),
])
def test_bad_features_records_are_named_errors_on_load(prior, tmp_path, change, message):
    from edgevad import Detector
    from edgevad.artifact.manifest import ManifestError

    with pytest.raises(ManifestError, match=message):
        Detector.load(_broken(prior[1], tmp_path, change))


@pytest.mark.parametrize("change, message", [
    (lambda m: m["features"].update(preset="slow"), "not a DIS preset"),
    (lambda m: m["features"].update(statistics=["p50", "p90", "p95", "p99", "p99.9", "mean",
                                                "max"]), "differ from what this runtime"),
])
def test_features_this_runtime_cannot_compute_are_refused(prior, tmp_path, change, message):
    from edgevad import Detector
    from edgevad.artifact.manifest import ManifestError

    with pytest.raises(ManifestError, match=message):
        Detector.load(_broken(prior[1], tmp_path, change))


def test_export_refuses_what_the_prior_cannot_be(prior, tmp_path):
    from edgevad_export.exporter import ExportError, export_model

    with pytest.raises(ExportError, match="fp32 only"):
        export_model("motion-prior", tmp_path / "a", checkpoint=prior[0], precision="fp16")
    with pytest.raises(ExportError, match="flow-stats.* gives flow-statistics features, not network"):
        export_model("mil", tmp_path / "b", backbone="flow-stats", random_init=True)


def test_fit_prior_names_what_it_cannot_fit(tmp_path, shared_data):
    from edgevad_export.training.prior import PriorError, fit_prior

    with pytest.raises(PriorError, match="does not exist"):
        fit_prior([tmp_path / "missing.mp4"], tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PriorError, match="holds no videos"):
        fit_prior([tmp_path / "empty"], tmp_path / "b")
    with pytest.raises(PriorError, match="not a normality prior"):
        fit_prior([_path(shared_data, NORMAL)], tmp_path / "c", model="mil")
    assert not any((tmp_path / n).exists() for n in "abc")  # nothing half-written


def test_fit_prior_calibrates_its_threshold_on_held_out_normal_videos(prior, tmp_path,
                                                                      shared_data):
    """Two normal videos: each held out in turn, scored by the prior fitted on the other; the
    highest held-out clip score is the threshold the export and the Detector use. One video
    keeps the zoo's default and says why."""
    from typer.testing import CliRunner

    from edgevad import Detector
    from edgevad.artifact import zoo
    from edgevad.cli.main import app
    from edgevad.media.video import VideoReader
    from edgevad.runtime.stream import flow_statistics_clips
    from edgevad_export.exporter import export_model

    videos = [_path(shared_data, ("training", n)) for n in ("07", "08")]
    res = CliRunner().invoke(app, ["fit-prior", *map(str, videos), "-o", str(tmp_path / "ckpt")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert f"threshold {meta['default_threshold']:.3f}: the highest score" in " ".join(
        res.output.split())
    clips = []
    for v in videos:
        with VideoReader(v) as reader:
            clips.append(np.asarray(flow_statistics_clips(reader, dict(
                zoo.FLOW_STATISTICS_FEATURES))[0], np.float64))
    maxima = []
    for i in (0, 1):  # the prior's formula in numpy, fitted on the other video
        rest = clips[1 - i]
        z = np.clip((clips[i] - rest.mean(0)) / (rest.std(0) + 1e-6), 0, None)
        d = (z * z).mean(-1)
        maxima.append((d / (1 + d)).max())
    rec = meta["threshold"]
    assert [v["file"] for v in rec["held_out"]] == ["07.mp4", "08.mp4"]
    assert [v["max"] for v in rec["held_out"]] == pytest.approx(maxima, abs=2e-4)
    assert meta["default_threshold"] == rec["value"] == max(v["max"] for v in rec["held_out"])
    art = export_model("motion-prior", tmp_path / "art", checkpoint=tmp_path / "ckpt")
    det = Detector.load(art, backend="onnxruntime")
    assert det.threshold == pytest.approx(rec["value"])
    assert det.manifest.model["threshold"]["held_out"] == rec["held_out"]

    one = json.loads((prior[0] / "checkpoint.json").read_text())
    assert one["threshold"]["value"] is None and "one normal video" in one["threshold"]["note"]
    assert one["default_threshold"] == zoo.get_head("motion-prior").default_threshold


def test_a_checkpoint_threshold_outside_the_score_range_is_refused(prior, tmp_path):
    from edgevad_export.exporter import ExportError, export_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(prior[0], ckpt)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    (ckpt / "checkpoint.json").write_text(json.dumps({**meta, "default_threshold": 1.5}))
    with pytest.raises(ExportError, match=r"default_threshold 1.5 is not a number in the head's "
                                          r"score range \[0.0, 1.0\]"):
        export_model("motion-prior", tmp_path / "art", checkpoint=ckpt)
    assert not (tmp_path / "art").exists()


@pytest.fixture(scope="module")
def ped2_labels(shared_data) -> dict:
    return json.loads((shared_data / "ped2" / "test_frame_labels.json").read_text())


def test_eval_on_videos_pools_the_detectors_frames_with_their_labels(prior, live, shared_data,
                                                                     ped2_labels, tmp_path):
    """``edgevad eval --artifacts`` on a labelled anomalous video and a normal one: the frame
    AUC, AP and alarms are those of the Detector's own per-frame scores with Ped2's labels, and
    intervals give the same ground truth as per-frame 0/1."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    from typer.testing import CliRunner

    from edgevad import Detector
    from edgevad.cli.main import app

    other = _path(shared_data, ("training", "07"))
    normal_scores = Detector.load(prior[1], backend="onnxruntime").score_video(other).scores
    y = np.concatenate([np.asarray(ped2_labels[VIDEO[1]]), np.zeros(len(normal_scores))])
    s = np.concatenate([live.scores, normal_scores])
    y02 = np.asarray(ped2_labels[VIDEO[1]])
    start, end = int(np.argmax(y02)), int(len(y02) - 1 - np.argmax(y02[::-1]))
    assert y02[start:end + 1].all()  # one run of anomalous frames: one interval says the same
    for name, entry in (("frames", ped2_labels[VIDEO[1]]), ("intervals", [[start, end]])):
        (tmp_path / f"{name}.json").write_text(json.dumps({VIDEO[1]: entry}))
        res = CliRunner().invoke(app, [
            "eval", "--artifacts", str(prior[1]), str(_path(shared_data, VIDEO)),
            "--frame-labels", str(tmp_path / f"{name}.json"), "--normal", str(other),
            "--backend", "onnxruntime", "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        rep = json.loads((tmp_path / name / "report.json").read_text())
        assert rep["frame_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
        assert rep["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
        thr = rep["alarms"]["threshold"]
        assert rep["alarms"]["normal_frames_alarmed"] == pytest.approx((s[y == 0] >= thr).mean())
        assert [v["frames"] for v in rep["videos"]] == [180, 150]
        assert rep["model"]["name"] == "motion-prior" and rep["not_scored"] == {}


def test_eval_on_videos_names_bad_inputs_and_keeps_the_rest(prior, shared_data, ped2_labels,
                                                          tmp_path):
    from edgevad_export.evaluation.evaluate import EvaluationError
    from edgevad_export.evaluation.videos import evaluate_videos

    good = _path(shared_data, VIDEO)
    cut = tmp_path / "cut.mp4"  # half a file: opens, stops decoding part-way
    data = _path(shared_data, ("testing", "03")).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"02": ped2_labels["02"], "cut": ped2_labels["03"],
                                  "04": ped2_labels["04"][:-5]}))
    short = tmp_path / "04.mp4"
    short.write_bytes(_path(shared_data, ("testing", "04")).read_bytes())
    rep = evaluate_videos(prior[1], [good, cut, short], frame_labels=labels,
                          normal=[_path(shared_data, ("training", "07"))], backend="onnxruntime")
    assert [v["video"].rsplit("/", 1)[-1] for v in rep["videos"]] == ["02.mp4", "07.mp4"]
    assert set(rep["not_scored"]) == {"cut", "04"}
    assert "frames decoded, 175 labelled" in rep["not_scored"]["04"]
    with pytest.raises(EvaluationError, match=r"names no labels for 01"):
        evaluate_videos(prior[1], [_path(shared_data, ("testing", "01"))], frame_labels=labels)
    with pytest.raises(EvaluationError, match="frame labels file .* does not exist"):
        evaluate_videos(prior[1], [good], frame_labels=tmp_path / "missing.json")
    with pytest.raises(EvaluationError, match="no anomalous frames"):
        evaluate_videos(prior[1], normal=[_path(shared_data, ("training", "07"))])


def test_eval_modes_do_not_mix(prior, tmp_path):
    from typer.testing import CliRunner

    from edgevad.cli.main import app

    res = CliRunner().invoke(app, ["eval", "--artifacts", str(prior[1]), "--checkpoint",
                                   str(prior[0]), "--features", str(tmp_path / "f.npz")])
    assert res.exit_code == 2 and "not both" in res.output
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(prior[0])])
    assert res.exit_code == 2 and "--artifacts with videos" in res.output
