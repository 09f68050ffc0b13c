"""DAM heads train on clip feature maps (t x D), as the runtime feeds them, not on pooled features."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from video_files import noise_frames, write_video

from edgevad_export.extraction.extract import extract_features, read_protocol  # noqa: E402
from edgevad_export.training import TrainConfig, train  # noqa: E402
from edgevad_export.training.checkpoint import load_checkpoint  # noqa: E402
from edgevad_export.training.trainer import forward_scores  # noqa: E402


def test_extract_keeps_the_i3d_feature_map_flattened(tmp_path):
    video = write_video(tmp_path / "v.avi", noise_frames(32))
    out = tmp_path / "maps.npz"
    extract_features([video], "i3d", out, random_init=True, segments=2, clip_len=32,
                     stride=16, feature_map=True, progress=False)
    proto = read_protocol(out)
    t = proto["map_steps"]
    assert t > 1 and proto["feature_dim"] == t * 1024
    with np.load(out) as d:
        assert d["features"].shape == (1, 2, t * 1024)
    with pytest.raises(ValueError, match="no feature map"):
        extract_features([video], "r3d18", tmp_path / "x.npz", random_init=True,
                         feature_map=True, progress=False)


def test_dam_trains_on_flattened_maps_and_scores_them_as_maps(tmp_path):
    t, d, n, s = 3, 8, 12, 6
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, s, t * d)).astype(np.float32)
    labels = np.arange(n) % 2 == 0
    feats[labels, 3] += 3.0  # an abrupt change in anomalous videos
    path = tmp_path / "maps.npz"
    np.savez(path, features=feats, n_segments=np.full(n, s), name=np.array([f"v{i}" for i in range(n)]),
             label=labels, category=np.where(labels, "Arson", "Normal"),
             protocol=np.asarray(json.dumps({"backbone": "i3d", "map_steps": t,
                                             "feature_dim": t * d})))
    cfg = TrainConfig(model="dam-dist", backbone=None, segments=s, steps=3, batch_anomalous=2,
                      batch_normal=2, head_kwargs={"hidden": 8})
    ckpt = train(cfg, path, tmp_path / "dam", progress=False)
    model, meta = load_checkpoint(ckpt)
    assert model.feature_dim == d and meta["builder_kwargs"]["feature_dim"] == d
    out = forward_scores("dam-dist", model, torch.from_numpy(feats[:2]))
    assert out["scores"].shape == (2, s)
