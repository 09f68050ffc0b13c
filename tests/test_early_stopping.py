"""Choosing training length on held-out training videos (``TrainConfig.val_share``): the split,
the kept weights, and the standardised MIL head's ONNX graph with a symbolic segments axis on real
features. (A short real run with held-out stopping is in test_training.py, sharing its data.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevad_export.data.bags import load_bags
from edgevad_export.training import TrainConfig, load_checkpoint, train
from edgevad_export.training.config import ConfigError
from edgevad_export.training.trainer import TrainingError, _hold_out


def test_hold_out_is_stratified_disjoint_and_seeded():
    anom, norm = np.arange(0, 10), np.arange(10, 30)
    cfg = TrainConfig(val_share=0.2, seed=3)
    (fa, fn), (va, vn) = _hold_out(anom, norm, cfg)
    assert (len(va), len(vn), len(fa), len(fn)) == (2, 4, 8, 16)
    assert not set(va) & set(fa) and not set(vn) & set(fn)
    assert set(va) | set(fa) == set(anom) and set(vn) | set(fn) == set(norm)
    again = _hold_out(anom, norm, cfg)[1]
    assert again[0].tolist() == va.tolist() and again[1].tolist() == vn.tolist()
    assert len(_hold_out(anom, norm, TrainConfig())[1][0]) == 0  # val_share 0: nothing held out
    with pytest.raises(TrainingError, match="leaves no held-out"):
        _hold_out(np.arange(2), norm, TrainConfig(val_share=0.1))
    with pytest.raises(ConfigError, match="val_share"):
        TrainConfig(val_share=1.0)


def test_each_stage_keeps_its_best_held_out_weights(synthetic_bags, tmp_path):
    bags = synthetic_bags(n=24, dim=8)
    cfg = TrainConfig(model="mil", backbone=None, steps=40, batch_anomalous=4, batch_normal=4,
                      topk=3, self_training=True, val_share=0.25, eval_every=5, patience=3,
                      val_batches=3, head_kwargs={"hidden": 16, "standardize": True})
    model, meta = load_checkpoint(train(cfg, bags, tmp_path / "es", progress=False))
    val = meta["validation"]
    held = set(val["held_out_names"])
    assert len(held) == 6 and held <= set(bags.names.tolist())
    assert len(val["stages"]) == 2  # ranking, then self-training
    for stage in val["stages"]:
        curve = dict(map(tuple, stage["held_out_curve"]))
        assert stage["best_held_out_loss"] == min(curve.values())
        assert curve[stage["best_step"]] == stage["best_held_out_loss"]
        stopped_early = stage["steps_run"] < cfg.steps
        assert not stopped_early or stage["steps_run"] - stage["best_step"] >= 3 * 5
    # the standardiser saw only the training videos
    keep = [i for i, n in enumerate(bags.names) if n not in held]
    flat = torch.from_numpy(bags.stacked(32)[keep]).reshape(-1, 8)
    assert torch.allclose(model.standardizer.mean, flat.mean(0), atol=1e-5)


def test_standardised_mil_onnx_has_symbolic_segments_and_matches_torch(shared_data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgevad_export.models.heads.mil import build_mil

    feats = torch.from_numpy(
        load_bags(shared_data / "ucf_crime_r3d34" / "dev.npz").stacked(32)[:4])
    torch.manual_seed(0)
    model = build_mil(512, hidden=128, standardize=True)
    model.standardizer.fit(feats)
    model.eval()
    path = tmp_path / "mil.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (feats[:2],), str(path), dynamo=False, opset_version=17,
                          input_names=["features"], output_names=["scores"],
                          dynamic_axes={"features": {0: "batch", 1: "segments"},
                                        "scores": {0: "batch", 1: "segments"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dims = session.get_inputs()[0].shape[:2]
    assert all(isinstance(d, str) for d in dims), dims  # batch and segments are symbolic
    for x in (feats[:1], feats[1:4, :7]):  # a full bag, and a 7-segment window of three videos
        got = session.run(None, {"features": x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape and (got >= 0).all() and (got <= 1).all()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
