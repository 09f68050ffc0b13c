"""Feature extraction: synthetic videos -> feature-bag npz, corrupt input skipped, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from video_files import noise_frames, write_video

from edgevad_export.data.bags import load_bags
from edgevad_export.extraction import (
    ExtractionError,
    clip_starts,
    collect_videos,
    extract_features,
    pool_segments,
    read_protocol,
)
from edgevad_export.extraction import extract as ext


def _write_video(path, n, size=(48, 64), seed=0):
    return write_video(path, noise_frames(n, size, seed))


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    return [_write_video(folder / "alpha.mp4", 40, seed=1), _write_video(folder / "beta.mp4", 9, seed=2)]


class TinyBackbone(nn.Module):
    """Stand-in for a 3D CNN: per-channel means and a few weighted sums; counts its calls."""

    def __init__(self, fail_on_call: int | None = None):
        super().__init__()
        self.proj = nn.Linear(3, 6)
        self.calls = 0
        self.clips = 0
        self.fail_on_call = fail_on_call

    def forward_features(self, x):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        assert x.ndim == 5 and x.shape[1] == 3  # N, C, T, H, W
        self.clips += x.shape[0]
        return torch.relu(self.proj(x.mean(dim=(2, 3, 4)))) + 1.0


def _use(monkeypatch, model):
    monkeypatch.setattr(ext, "_load_model", lambda *a, **k: model)


def test_clip_starts_and_pooling_arithmetic():
    assert clip_starts(40, 16, 16) == [(0, 16), (16, 16), (32, 8)]
    assert clip_starts(32, 16, 16) == [(0, 16), (16, 16)]
    assert clip_starts(9, 16, 16) == [(0, 9)]
    assert clip_starts(32, 16, 8) == [(0, 16), (8, 16), (16, 16)]
    assert clip_starts(0, 16, 16) == []
    feats = np.arange(3, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    # 40 frames, 4 segments of 10: centres 7.5 (seg 0), 23.5 (seg 2), 35.5 (seg 3)
    pooled = pool_segments(feats, [7.5, 23.5, 35.5], 40, 4)
    assert pooled[:, 0].tolist() == [0, 0, 1, 2]  # segment 1 takes the nearest clip (0)
    pooled = pool_segments(feats, [1.0, 2.0, 30.0], 40, 2)
    assert pooled[:, 0].tolist() == [0.5, 2]


def test_extract_real_r3d18_random_init(tmp_path, videos):
    out = tmp_path / "bags" / "feats.npz"
    report = extract_features(videos, "r3d18", out, random_init=True, segments=4,
                              labels={"alpha": True}, progress=False)
    assert report.written == ["alpha", "beta"] and not report.failed
    assert report.clips == 3 + 1 and report.frames == 49
    bags = load_bags(out, strict=True)
    assert len(bags) == 2 and bags.feature_dim == 512
    assert [f.shape for f in bags.features] == [(4, 512), (4, 512)]
    assert bags.labels.tolist() == [True, False]
    assert bags.n_frames.tolist() == [40, 9]
    with np.load(out) as data:
        assert data["features"].shape == (2, 4, 512) and data["features"].dtype == np.float32
        assert data["n_segments"].tolist() == [4, 4]
    proto = read_protocol(out)
    assert proto["backbone"] == "r3d18" and proto["weights"] == "random"
    assert (proto["clip_len"], proto["stride"], proto["segments"]) == (16, 16, 4)
    assert proto["geometry"]["size"] == [112, 112] and proto["edgevad_version"]
    assert not (tmp_path / "bags" / "feats.npz.parts").exists()


def test_inputs_folder_and_list_with_labels(tmp_path, videos):
    assert [v.name for v in collect_videos([videos[0].parent])] == ["alpha", "beta"]
    listing = tmp_path / "list.txt"
    listing.write_text("# name,label\nvideos/alpha.mp4,1\n\nvideos/beta.mp4,Normal\n")
    items = collect_videos([listing])
    assert [(v.name, v.label, v.category) for v in items] == [("alpha", True, None),
                                                              ("beta", False, "Normal")]
    assert items[0].path == videos[0]
    (tmp_path / "dup").mkdir()
    _write_video(tmp_path / "dup" / "alpha.mp4", 3)
    with pytest.raises(ExtractionError, match="alpha"):
        extract_features([videos[0], tmp_path / "dup" / "alpha.mp4"], "r3d18", tmp_path / "x.npz",
                         random_init=True, progress=False)


def test_corrupt_video_is_reported_and_skipped(tmp_path, videos, monkeypatch, capsys):
    model = TinyBackbone()
    _use(monkeypatch, model)
    bad = videos[0].parent / "broken.mp4"
    bad.write_bytes(np.random.default_rng(3).bytes(5000))
    listing = tmp_path / "split.txt"
    listing.write_text("videos/alpha.mp4,Arson\nvideos/broken.mp4,1\nvideos/beta.mp4,0\n")
    out = tmp_path / "f.npz"
    report = extract_features([listing], "r3d18", out, segments=8, progress=False)
    assert list(report.failed) == ["broken"] and "broken.mp4" in report.failed["broken"]
    assert "broken" in capsys.readouterr().err
    assert "skipped broken" in report.summary()
    bags = load_bags(out)
    assert bags.names.tolist() == ["alpha", "beta"]
    assert bags.categories.tolist() == ["Arson", "Normal"] and bags.labels.tolist() == [True, False]
    assert bags.features[0].shape == (8, 6)
    # every video unreadable: an error, nothing written
    with pytest.raises(ExtractionError, match="broken"):
        extract_features([bad], "r3d18", tmp_path / "none.npz", progress=False)
    assert not (tmp_path / "none.npz").exists()


def test_resume_redoes_only_unfinished_videos(tmp_path, videos, monkeypatch):
    out = tmp_path / "f.npz"
    # 1 batch per video (3 and 1 clips, batch 8): the 2nd backbone call is the 2nd video
    first = TinyBackbone(fail_on_call=2)
    _use(monkeypatch, first)
    with pytest.raises(KeyboardInterrupt):
        extract_features(videos, "r3d18", out, segments=4, batch_size=8, progress=False)
    assert not out.exists()
    parts = list((tmp_path / "f.npz.parts").glob("*.npz"))
    assert len(parts) == 1 and parts[0].name.startswith("alpha")

    second = TinyBackbone()
    second.load_state_dict(first.state_dict())
    _use(monkeypatch, second)
    report = extract_features(videos, "r3d18", out, segments=4, batch_size=8, progress=False)
    assert report.reused == ["alpha"] and report.computed == ["beta"]
    assert second.calls == 1 and second.clips == 1  # alpha was not recomputed
    bags = load_bags(out, strict=True)
    assert bags.names.tolist() == ["alpha", "beta"] and bags.n_frames.tolist() == [40, 9]

    # the same result as a run from scratch
    fresh = TinyBackbone()
    fresh.load_state_dict(first.state_dict())
    _use(monkeypatch, fresh)
    extract_features(videos, "r3d18", tmp_path / "g.npz", segments=4, resume=False, progress=False)
    with np.load(out) as a, np.load(tmp_path / "g.npz") as b:
        np.testing.assert_allclose(a["features"], b["features"], rtol=1e-6)
        assert json.loads(str(a["protocol"])) == json.loads(str(b["protocol"]))
    assert fresh.calls == 2


def test_changed_settings_invalidate_parts(tmp_path, videos, monkeypatch):
    out = tmp_path / "f.npz"
    _use(monkeypatch, TinyBackbone(fail_on_call=2))
    with pytest.raises(KeyboardInterrupt):
        extract_features(videos, "r3d18", out, segments=4, progress=False)
    model = TinyBackbone()
    _use(monkeypatch, model)
    report = extract_features(videos, "r3d18", out, segments=4, stride=8, progress=False)
    assert report.reused == [] and model.calls == 2  # other stride: nothing reused
    assert read_protocol(out)["stride"] == 8
