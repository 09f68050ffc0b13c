"""``mil-dis``: the change gate on hand-checkable bags, the calibration that maps the held-out
video threshold to 0.5, training through ``train`` (ungated detection), and its ONNX graph with a
symbolic segments axis on real features (a full bag and a short window)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevad.artifact import zoo
from edgevad_export.data.bags import FeatureBags
from edgevad_export.models.heads.dissimilarity import build_dissimilarity_mil
from edgevad_export.training import TrainConfig, load_checkpoint, train
from edgevad_export.training.trainer import forward_scores


def _head(dim: int = 2):
    torch.manual_seed(0)
    return build_dissimilarity_mil(dim, hidden=8, bottleneck=4).eval()


def test_gate_is_the_change_from_the_previous_segment_over_the_training_maximum():
    head = _head()
    train_bags = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]]])  # changes 5, 0
    head.fit_statistics(train_bags)
    assert float(head.change_scale) == 5.0
    x = torch.tensor([[[1.0, 1.0], [1.0, 2.0], [4.0, 6.0], [14.0, 6.0]]])  # changes 1, 5, 10
    # first: no predecessor; 1/5; clamped at 1
    torch.testing.assert_close(head.gate(x), torch.tensor([[0.0, 0.2, 1.0, 1.0]]))
    scores = head(x)
    assert scores.shape == (1, 4) and scores[0, 0] == 0.0
    torch.testing.assert_close(scores, head.detection(x) * head.gate(x))


def test_calibrate_maps_the_best_held_out_video_threshold_to_one_half():
    head = _head(1)
    head.fit_statistics(torch.tensor([[[0.0], [1.0]]]))
    head.detection = lambda x: torch.full(x.shape[:2], 0.5)  # isolate the gate: score = g / 2
    feats = torch.tensor([[[0.0], [0.8]], [[0.0], [0.6]], [[0.0], [0.2]], [[0.0], [0.1]]])
    labels = torch.tensor([True, True, False, False])
    t = head.calibrate(feats, labels)  # peaks 0.4, 0.3 (anomalous), 0.1, 0.05 (normal)
    assert t == pytest.approx(0.3)
    assert float(head.score_power) == pytest.approx(math.log(0.5) / math.log(0.3))
    peaks = head(feats).amax(dim=1)
    assert peaks[1] == pytest.approx(0.5) and (peaks[:2] >= 0.5).all() and (peaks[2:] < 0.5).all()


def _steady_bags(n: int = 24, dim: int = 8) -> FeatureBags:
    """Videos whose features barely change, except a jump on segments 10-13 of anomalous ones."""
    rng = np.random.default_rng(0)
    feats = []
    for i in range(n):
        f = rng.normal(size=dim) + 0.05 * rng.normal(size=(32, dim))
        if i % 2 == 0:
            f[10:14, 0] += 4.0
        feats.append(f.astype(np.float32))
    return FeatureBags(features=feats, names=np.array([f"v{i:03d}" for i in range(n)]),
                       labels=np.arange(n) % 2 == 0,
                       categories=np.array(["Abuse" if i % 2 == 0 else "Normal" for i in range(n)]))


def test_training_fits_the_ungated_detection_and_records_the_calibration(tmp_path):
    assert zoo.get_head("mil-dis").outputs == ("scores",)
    bags = _steady_bags()
    cfg = TrainConfig(model="mil-dis", backbone=None, steps=20, batch_anomalous=4,
                      batch_normal=4, topk=3, self_training=True, val_share=0.25, eval_every=5,
                      val_batches=2, head_kwargs={"hidden": 16})
    model, meta = load_checkpoint(train(cfg, bags, tmp_path / "dis", progress=False))
    calibration = meta["validation"]["calibration"]
    assert 0 < calibration["video_threshold"] < 1
    assert float(model.score_power) == pytest.approx(calibration["score_power"], rel=1e-5)
    x = torch.from_numpy(bags.stacked(32))
    out = forward_scores("mil-dis", model, x)
    torch.testing.assert_close(out["scores"], model(x))  # what eval and export see
    torch.testing.assert_close(out["detection"], model.detection(x))  # what training fits
    gated = (model.detection(x) * model.gate(x)).pow(model.score_power)
    torch.testing.assert_close(model(x), gated)
    assert ((model(x) >= 0) & (model(x) <= 1)).all()


def test_onnx_symbolic_segments_matches_torch_on_real_features(shared_data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgevad_export.data.bags import load_bags
    from edgevad_export.onnx_export import torch_to_onnx

    feats = torch.from_numpy(
        load_bags(shared_data / "ucf_crime_r3d34" / "dev.npz").stacked(32)[:4])
    torch.manual_seed(0)
    head = build_dissimilarity_mil(512).eval()
    head.fit_statistics(feats)
    head.score_power.fill_(0.3)
    path = tmp_path / "head.onnx"
    torch_to_onnx(head, [feats[:2]], path, ["features"], ["scores"],
                  dynamic_axes={"features": {1: "segments"}, "scores": {1: "segments"}},
                  exporter="legacy")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert all(isinstance(d, str) for d in session.get_inputs()[0].shape[:2])
    for x in (feats[:1], feats[1:4, 5:12]):  # a full bag; a 7-segment window of three videos
        got = session.run(None, {"features": x.numpy()})[0]
        with torch.no_grad():
            want = head(x).numpy()
        assert got.shape == want.shape and got.min() >= 0 and got.max() <= 1
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
