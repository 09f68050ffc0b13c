"""Training heads on feature bags: a short run on real UCF-Crime features that beats chance on
held-out dev videos, the checkpoint folder round trip and its errors, every head's objective on
tiny synthetic bags, and the dmrm refusal without a motion stream."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevad.errors import EdgevadError
from edgevad_export.data.bags import FeatureBags, load_bags
from edgevad_export.training import (
    CheckpointError,
    TrainConfig,
    load_checkpoint,
    save_checkpoint,
    train,
)
from edgevad_export.training.config import ConfigError
from edgevad_export.training.trainer import TrainingError


def subset(bags: FeatureBags, idx) -> FeatureBags:
    idx = np.asarray(idx)

    def pick(a):
        return None if a is None else a[idx]

    return FeatureBags(features=[bags.features[i] for i in idx], names=bags.names[idx],
                       labels=bags.labels[idx], categories=bags.categories[idx],
                       n_frames=pick(bags.n_frames), anomaly_intervals=pick(bags.anomaly_intervals),
                       skipped_empty=list(bags.skipped_empty), source=bags.source)


@pytest.fixture(scope="module")
def real_run(shared_data, tmp_path_factory):
    """mil-base (512-128-32-1) for 300 steps on 300 real training videos."""
    torch.set_flush_denormal(True)
    train_bags = load_bags(shared_data / "ucf_crime_r3d34" / "train.npz")
    rng = np.random.default_rng(0)
    anom = rng.choice(np.flatnonzero(train_bags.labels), 150, replace=False)
    norm = rng.choice(np.flatnonzero(~train_bags.labels), 150, replace=False)
    small = subset(train_bags, np.concatenate([anom, norm]))
    cfg = TrainConfig(model="mil", head_kwargs={"hidden": 128}, steps=300, seed=0, log_every=25)
    ckpt = train(cfg, small, tmp_path_factory.mktemp("ckpt") / "mil", progress=False)
    dev = load_bags(shared_data / "ucf_crime_r3d34" / "dev.npz")
    return ckpt, dev, small


def test_short_real_run_beats_chance_on_dev(real_run):
    from edgevad_export.evaluation.evaluate import evaluate

    ckpt, dev, _ = real_run
    report = evaluate(ckpt, dev, plots=False)
    assert report["frame_auc"] > 0.6, report["frame_auc"]
    assert report["video_auc"] > 0.6
    assert report["not_scored"]["empty"]["count"] == 14


def test_short_real_mil_dis_run_with_held_out_stopping_beats_chance(real_run, tmp_path):
    """The winning recipe (self-training, held-out stopping and calibration, change gate) on the
    same 300 real training videos, 60 steps per stage at most."""
    from edgevad_export.evaluation.evaluate import evaluate

    _, dev, small = real_run
    cfg = TrainConfig(model="mil-dis", topk=3, self_training=True, val_share=0.2, steps=60,
                      eval_every=20, patience=2, val_batches=2, seed=0,
                      head_kwargs={"hidden": 128})
    report = evaluate(train(cfg, small, tmp_path / "mil-dis", progress=False), dev, plots=False)
    assert report["frame_auc"] > 0.7, report["frame_auc"]
    assert report["far_at_0.5"] < 0.01, report["far_at_0.5"]


def test_checkpoint_folder_contents(real_run):
    ckpt, _, small = real_run
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert (ckpt / "head.pt").is_file() and (ckpt / "loss_log.csv").is_file()
    assert meta["head"] == "mil" and meta["builder"].endswith(":build_mil")
    assert meta["builder_kwargs"] == {"hidden": 128, "feature_dim": 512}
    assert meta["protocol"]["feature_dim"] == 512 and meta["protocol"]["segments"] == 32
    assert meta["protocol"]["backbone"] == "r3d34"
    assert len(meta["protocol"]["feature_file_sha256"]) == 64
    assert meta["config"]["steps"] == 300 and TrainConfig.from_dict(meta["config"]).seed == 0
    assert meta["data"]["n_bags"] == len(small) and len(meta["data"]["bags_sha256"]) == 64
    summary = meta["loss_summary"]
    assert summary["steps"] == 300 and summary["last_loss"] < summary["first_loss"]
    # speed over the run is recorded for benchmarks to read, never asserted here
    assert summary["steps_per_s_last_tenth"] > 0 and summary["steps_per_s_first_tenth"] > 0
    rows = (ckpt / "loss_log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,elapsed_s" and len(rows) == 1 + 300 // 25


def test_checkpoint_round_trip_same_scores(real_run, tmp_path):
    ckpt, dev, _ = real_run
    model, meta = load_checkpoint(ckpt)
    assert not model.training
    x = torch.from_numpy(dev.stacked(32)[:20])
    with torch.no_grad():
        before = model(x)
    again = save_checkpoint(tmp_path / "copy", model, meta)
    model2, meta2 = load_checkpoint(again)
    with torch.no_grad():
        assert torch.equal(before, model2(x))
    assert meta2["protocol"] == meta["protocol"]


def test_missing_and_corrupt_checkpoints(real_run, tmp_path):
    ckpt, _, _ = real_run
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_checkpoint(ckpt / "head.pt")
    no_weights = tmp_path / "no_weights"
    shutil.copytree(ckpt, no_weights)
    (no_weights / "head.pt").unlink()
    with pytest.raises(CheckpointError, match="head.pt"):
        load_checkpoint(no_weights)
    no_meta = tmp_path / "no_meta"
    shutil.copytree(ckpt, no_meta)
    (no_meta / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match="lacks checkpoint.json"):
        load_checkpoint(no_meta)
    bad_json = tmp_path / "bad_json"
    shutil.copytree(ckpt, bad_json)
    (bad_json / "checkpoint.json").write_text('{"format": "edgevad-head')
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        load_checkpoint(bad_json)
    truncated = tmp_path / "truncated"
    shutil.copytree(ckpt, truncated)
    data = (truncated / "head.pt").read_bytes()
    (truncated / "head.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(truncated)
    wrong_shape = tmp_path / "wrong_shape"
    shutil.copytree(ckpt, wrong_shape)
    meta = json.loads((wrong_shape / "checkpoint.json").read_text())
    meta["builder_kwargs"]["hidden"] = 64
    (wrong_shape / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(wrong_shape)


@pytest.mark.parametrize("model,kwargs", [
    ("mil", {"hidden": 16}),
    ("mrm", {"hidden": 16}),
    ("mil-ctx", {"hidden": 16}),
    ("dam-dist", {"hidden": 16, "detector_hidden": 8}),
    ("dam-cov", {"hidden": 16, "detector_hidden": 8}),
    ("joint", {"lstm_hidden": 16, "attention_hidden": 16, "classifier_hidden": 16}),
])
def test_every_head_trains_and_reloads(synthetic_bags, model, kwargs, tmp_path):
    bags = synthetic_bags()
    cfg = TrainConfig(model=model, backbone=None, head_kwargs=kwargs, steps=3, batch_anomalous=4,
                      batch_normal=4, topk=3, log_every=1)
    ckpt = train(cfg, bags, tmp_path / model, progress=False)
    _, meta = load_checkpoint(ckpt)
    assert meta["head"] == model and meta["loss_summary"]["steps"] == 3
    assert np.isfinite(meta["loss_summary"]["last_loss"])


def test_dmrm_refuses_a_single_stream_and_trains_with_two(synthetic_bags, tmp_path):
    bags = synthetic_bags()
    cfg = TrainConfig(model="dmrm", backbone=None, head_kwargs={"hidden": 16}, steps=2,
                      batch_anomalous=4, batch_normal=4)
    with pytest.raises(TrainingError, match="motion"):
        train(cfg, bags, tmp_path / "dmrm", progress=False)
    motion = synthetic_bags(dim=4, seed=1)
    ckpt = train(cfg, bags, tmp_path / "dmrm", motion_bags=motion, progress=False)
    _, meta = load_checkpoint(ckpt)
    assert meta["builder_kwargs"]["motion_dim"] == 4 and meta["protocol"]["motion"]["feature_dim"] == 4


def test_config_round_trip_and_errors(synthetic_bags, tmp_path):
    cfg = TrainConfig(model="mrm", steps=10, head_kwargs={"dropout": 0.5})
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="Unknown training config keys: nope"):
        TrainConfig.from_dict({"nope": 1})
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(EdgevadError, match="Did you mean"):
        train(TrainConfig(model="mrn", backbone=None, steps=1), synthetic_bags(), tmp_path / "x",
              progress=False)
    with pytest.raises(TrainingError, match="backbone 'i3d' gives 1024-D"):
        train(TrainConfig(model="mil", backbone="i3d", steps=1), synthetic_bags(), tmp_path / "y",
              progress=False)


def test_self_training_and_standardisation(synthetic_bags, tmp_path):
    bags = synthetic_bags(n=16, dim=8)
    cfg = TrainConfig(model="mil", backbone=None, steps=20, batch_anomalous=4, batch_normal=4,
                      topk=3, self_training=True, head_kwargs={"hidden": 16, "standardize": True})
    folder = train(cfg, bags, tmp_path / "st", progress=False)
    model, meta = load_checkpoint(folder)
    feats = torch.from_numpy(bags.stacked(32))
    flat = feats.reshape(-1, 8)
    assert torch.allclose(model.standardizer.mean, flat.mean(0), atol=1e-5)
    assert torch.allclose(model.standardizer.std, flat.std(0), atol=1e-5)
    assert meta["config"]["self_training"] and meta["loss_summary"]["steps"] == 40
    rows = (folder / "loss_log.csv").read_text().splitlines()
    assert rows[-1].startswith("40,")  # the second stage continues the step count


def test_pseudo_labels_mark_top_segments_of_anomalous_videos_only():
    from edgevad_export.training.trainer import pseudo_labels

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x[..., 0]

    feats = torch.tensor([[[0.1], [0.9], [0.5], [0.2]], [[0.8], [0.1], [0.3], [0.4]]])
    target, mask = pseudo_labels(Fixed(), "mil", feats, np.array([True, False]), 0.5)
    assert target.tolist() == [[0, 1, 1, 0], [0, 0, 0, 0]]
    assert mask.tolist() == [[0, 1, 1, 0], [1, 1, 1, 1]]


def test_self_training_is_refused_for_heads_without_segment_labels():
    with pytest.raises(ConfigError, match="self_training works for"):
        TrainConfig(model="joint", self_training=True)
