"""Evaluation: the report, its files (JSON, ROC and per-video PNGs, the scores .npz from which
sklearn recomputes the same AUC), the protocol check and the joint head's classification."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.metrics import roc_auc_score

from edgevad.artifact.segments import segment_scores_to_frames
from edgevad_export.data.bags import (
    frame_labels,
    load_bags,
)
from edgevad_export.evaluation.evaluate import (
    ProtocolError,
    check_protocol,
    classification_report,
    evaluate,
)
from edgevad_export.models import create_head
from edgevad_export.training import TrainConfig, train


@pytest.fixture(scope="module")
def dev(shared_data):
    return load_bags(shared_data / "ucf_crime_r3d34" / "dev.npz")


def test_evaluate_writes_report_plots_and_scores(dev, tmp_path):
    torch.manual_seed(0)
    model = create_head("mil", backbone="r3d34", random_init=True, hidden=32)
    out = tmp_path / "eval"
    report = evaluate(model, dev, head="mil", out_dir=out, scores_out=out / "scores.npz", curves=3)
    saved = json.loads((out / "report.json").read_text())
    assert saved["frame_auc"] == pytest.approx(report["frame_auc"])
    for key in ("frame_auc", "average_precision", "far", "far_at_0.5", "video_auc", "per_class_auc"):
        assert key in saved
    assert saved["n_videos"] == 137 and saved["not_scored"]["count"] == 14
    assert "extraction failed" in saved["not_scored"]["empty"]["reason"]
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    curves = sorted((out / "curves").glob("*.png"))
    assert len(curves) == 3 and curves[0].read_bytes()[:4] == b"\x89PNG"

    # anyone can recompute the metric from the .npz alone
    z = np.load(out / "scores.npz")
    assert z["scores"].shape[0] == 137 and np.isnan(z["scores"]).any()
    frame_s, frame_y = [], []
    for s, k, f, iv in zip(z["scores"], z["n_segments"], z["n_frames"], z["anomaly_intervals"]):
        assert not np.isnan(s[:k]).any()
        frame_s.append(segment_scores_to_frames(s[:k], int(f)))
        frame_y.append(frame_labels(int(f), iv))
    auc = roc_auc_score(np.concatenate(frame_y), np.concatenate(frame_s))
    assert auc == pytest.approx(report["frame_auc"], abs=1e-9)


def test_protocol_mismatch_names_both_sizes(synthetic_bags, dev, tmp_path):
    ckpt = train(TrainConfig(model="mil", backbone=None, head_kwargs={"hidden": 8}, steps=1,
                             batch_anomalous=2, batch_normal=2), synthetic_bags(dim=8),
                 tmp_path / "small", progress=False)
    with pytest.raises(ProtocolError, match=r"takes 8-D features.*hold 512-D"):
        evaluate(ckpt, dev)
    model = create_head("mil", random_init=True)  # i3d-sized: 1024-D
    with pytest.raises(ProtocolError, match="1024-D.*512-D"):
        check_protocol(model, dev, head="mil")


def test_joint_classification_report_tiny_case():
    classes_idx = {"Normal": 0, "Abuse": 1, "Arson": 3}
    cats = np.array(["Normal", "Normal", "Abuse", "Arson", "Arson", "Unknown"])
    logits = np.full((6, 14), -5.0)
    for i, pred in enumerate([0, 1, 1, 3, 0, 2]):
        logits[i, pred] = 5.0
    rep = classification_report(logits, cats)
    assert rep["n_videos"] == 5 and rep["left_out"] == 1
    assert rep["accuracy"] == pytest.approx(3 / 5)
    assert rep["accuracy_normal"] == pytest.approx(1 / 2)
    assert rep["accuracy_anomalous"] == pytest.approx(2 / 3)
    conf = np.array(rep["confusion"])
    assert conf.sum() == 5
    n, a, r = classes_idx["Normal"], classes_idx["Abuse"], classes_idx["Arson"]
    assert conf[n, n] == 1 and conf[n, a] == 1 and conf[a, a] == 1 and conf[r, r] == 1 and conf[r, n] == 1


def test_joint_checkpoint_reports_accuracy_and_confusion(synthetic_bags, tmp_path):
    bags = synthetic_bags(n=12, with_frames=True)
    cfg = TrainConfig(model="joint", backbone=None, steps=2, batch_anomalous=4, batch_normal=4,
                      head_kwargs={"lstm_hidden": 8, "attention_hidden": 8, "classifier_hidden": 8})
    ckpt = train(cfg, bags, tmp_path / "joint", progress=False)
    report = evaluate(ckpt, bags, out_dir=tmp_path / "ev", curves=False)
    cls = report["classification"]
    assert cls["n_videos"] == 12 and len(cls["confusion"]) == 14
    assert sum(map(sum, cls["confusion"])) == 12 and 0.0 <= cls["accuracy"] <= 1.0
    assert (tmp_path / "ev" / "report.json").is_file() and not (tmp_path / "ev" / "curves").exists()
