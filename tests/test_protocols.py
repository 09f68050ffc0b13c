"""Feature protocols: records, differences, and refusals in eval and export; the named
ucf-crime-r3d34 protocol's arithmetic on synthetic frames (no R3D-34 weights are available)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edgevad.artifact import protocols, ucf_crime, zoo
from edgevad.artifact.protocols import FeatureProtocol, ProtocolMismatchError, differences
from edgevad.errors import EdgevadError

I3D_SHA = zoo.get_weights("i3d-kinetics400").member_sha256


def _record(**changes) -> dict:
    """An extraction record as `edgevad extract` writes it (I3D, stride 8, 16 segments)."""
    g = replace(zoo.I3D_GEOMETRY, stride=8).to_dict()
    rec = {"format": "edgevad-feature-bags", "backbone": "i3d", "feature_dim": 1024,
           "weights": "i3d-kinetics400", "weights_sha256": I3D_SHA, "clip_len": 16, "stride": 8,
           "geometry": g, "input": "rgb-frames", "clips": "tail rule", "segments": 16,
           "segment_scheme": "centre rule", "edgevad_version": "0.1.0"}
    for key, value in changes.items():
        if key in g and key not in ("clip_len", "stride"):
            rec["geometry"] = {**rec["geometry"], key: value}
        else:
            rec[key] = value
    return rec


def test_differences_name_what_differs_and_ignore_the_version():
    a = FeatureProtocol.from_dict(_record())
    assert differences(a, FeatureProtocol.from_dict(_record(edgevad_version="9.9"))) == []
    assert differences(a, FeatureProtocol.from_dict(json.loads(json.dumps(a.to_dict())))) == []
    diffs = differences(a, FeatureProtocol.from_dict(
        _record(stride=16, crop="center", color="bgr", mean=[0.4, 0.5, 0.5])))
    assert diffs == ["clip stride (frames): 8 vs 16", "crop: 'none' vs 'center'",
                     "colour order: 'rgb' vs 'bgr'",
                     "normalisation mean: [0.5, 0.5, 0.5] vs [0.4, 0.5, 0.5]"]
    assert differences(a, FeatureProtocol.from_dict(_record(weights_sha256="0" * 64)))[0] \
        .startswith("backbone weights (sha256)")
    # what one side does not record is not compared
    assert differences(a, FeatureProtocol(feature_dim=1024)) == []
    assert differences(a, FeatureProtocol(feature_dim=512)) == ["feature size: 1024 vs 512"]


def test_check_compatible_raises_a_user_error_naming_the_difference():
    a = FeatureProtocol.from_dict(_record())
    protocols.check_compatible(a, FeatureProtocol.from_dict(_record()))
    with pytest.raises(ProtocolMismatchError, match=r"segments per video: 16 vs 32") as info:
        protocols.check_compatible(a, FeatureProtocol.from_dict(_record(segments=32)),
                                   head_what="head 'mil-ctx'", other_what="x.npz")
    assert isinstance(info.value, EdgevadError) and "head 'mil-ctx'" in str(info.value)


def test_head_protocol_combines_the_training_record_and_the_extraction():
    meta = {"head": "mil", "protocol": {"backbone": "i3d", "feature_dim": 1024, "segments": 32,
                                        "extraction": _record()}}
    head = protocols.head_protocol(meta)
    assert (head.backbone, head.stride, head.segments, head.weights_sha256) == \
        ("i3d", 8, 16, I3D_SHA)
    # a UCF-Crime-style checkpoint (no extraction record) knows only backbone and size...
    bare = protocols.head_protocol({"protocol": {"backbone": "r3d34", "feature_dim": 512}})
    assert bare.geometry is None and bare.segments is None
    # ...unless its backbone is the one of a named protocol
    named = protocols.head_protocol({"protocol": {"backbone": "r3d34-ucf-crime",
                                                  "feature_dim": 512}})
    assert named.name == "ucf-crime-r3d34" and named.geometry["crop"] == "none"


def test_export_geometry_follows_the_head_and_refuses_another_backbone():
    meta = {"head": "mil-ctx", "protocol": {"backbone": "i3d", "feature_dim": 1024,
                                            "extraction": _record()}}
    spec = zoo.get_head("mil-ctx")
    real = {"source": "registry", "registry_sha256": I3D_SHA}
    g = protocols.export_geometry(meta, spec, "i3d", zoo.I3D_GEOMETRY, real)
    assert (g.clip_len, g.stride) == (16, 8)  # the head's stride, not the backbone default 16
    assert protocols.export_geometry(None, spec, "i3d", zoo.I3D_GEOMETRY, real) is zoo.I3D_GEOMETRY
    with pytest.raises(ProtocolMismatchError, match="backbone weights .* vs 'random'"):
        protocols.export_geometry(meta, spec, "i3d", zoo.I3D_GEOMETRY, {"source": "random"})
    with pytest.raises(ProtocolMismatchError, match="backbone: 'i3d' vs 'r3d34'.*crop"):
        protocols.export_geometry(meta, spec, "r3d34", zoo.HARA_R3D_GEOMETRY, {"source": "file"})
    # DAM fixes 64-frame clips: a head whose features came from 16-frame clips is refused
    dam = zoo.get_head("dam-dist")
    with pytest.raises(ProtocolMismatchError, match=r"clip length \(frames\): 16 vs 64"):
        protocols.export_geometry(meta, dam, "i3d", replace(zoo.I3D_GEOMETRY, clip_len=64), real)


def _bag_file(path, record, n=8, segments=16, dim=1024, with_frames=True, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, segments, dim)).astype(np.float32)
    labels = np.arange(n) % 2 == 0
    feats[labels, 5:8, 0] += 4.0
    extra = {}
    if with_frames:
        extra = {"n_frames": np.full(n, 160), "anomaly_intervals":
                 np.where(labels[:, None], np.array([[50, 79]]), -1)}
    np.savez(path, features=feats, n_segments=np.full(n, segments), name=[f"v{i}" for i in range(n)],
             label=labels, category=np.where(labels, "Anomaly", "Normal"),
             protocol=np.asarray(json.dumps(record)), **extra)
    return path


def test_training_records_and_eval_checks_the_protocol(tmp_path):
    from edgevad_export.evaluation.evaluate import ProtocolError, evaluate
    from edgevad_export.training import TrainConfig, train

    train_file = _bag_file(tmp_path / "train.npz", _record(), with_frames=False)
    ckpt = train(TrainConfig(model="mil", backbone="i3d", segments=16, steps=3, batch_anomalous=2,
                             batch_normal=2, head_kwargs={"hidden": 16}), train_file,
                 tmp_path / "ckpt", progress=False)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["protocol"]["extraction"]["stride"] == 8
    same = _bag_file(tmp_path / "same.npz", _record(edgevad_version="0.2.0"), seed=1)
    assert evaluate(ckpt, same, plots=False)["frame_auc"] is not None
    other = _bag_file(tmp_path / "other.npz", _record(stride=16, resize=256), seed=1)
    with pytest.raises(ProtocolError, match=r"clip stride \(frames\): 8 vs 16; resize: None vs 256"):
        evaluate(ckpt, other, plots=False)
    # the refusal is the user-error type the CLI prints as one line
    with pytest.raises(ProtocolMismatchError):
        evaluate(ckpt, other, plots=False)


def test_export_refuses_a_backbone_of_another_protocol(tmp_path):
    from edgevad_export.exporter import export_model
    from edgevad_export.training import TrainConfig, train

    train_file = _bag_file(tmp_path / "train.npz", _record(backbone="r3d18", feature_dim=512,
                                                           weights_sha256=None), dim=512,
                           with_frames=False)
    ckpt = train(TrainConfig(model="mil", backbone="r3d18", segments=16, steps=2,
                             batch_anomalous=2, batch_normal=2, head_kwargs={"hidden": 16}),
                 train_file, tmp_path / "ckpt", progress=False)
    with pytest.raises(ProtocolMismatchError, match="backbone: 'r3d18' vs 'r3d34'"):
        export_model("mil", tmp_path / "art", checkpoint=ckpt, backbone="r3d34",
                     random_init="backbone")
    assert not (tmp_path / "art").exists()


# --- ucf-crime-r3d34 ------------------------------------------------------------------------------

def test_ucf_crime_segments_follow_the_upstream_loop():
    # L = 1285 // 32 = 40: segments at 0, 40, ..., below 1245 -> 32; clips at s and s + 16
    clips = ucf_crime.segment_clips(1285)
    assert len(clips) == 32 and clips[0] == [0, 16] and clips[-1] == [1240, 1256]
    # F divisible by 32: one segment fewer (31); a large remainder: one more (33)
    assert len(ucf_crime.segment_clips(32 * 20)) == 31
    assert [len(c) for c in ucf_crime.segment_clips(574)] == [1] * 33
    # L <= 16: no clip fits before the segment's last frame: no features at all
    assert ucf_crime.segment_clips(531) == [] and ucf_crime.segment_clips(0) == []
    # every clip stays inside its segment and the video
    for f in (545, 999, 5000, 12345):
        L = f // 32
        for k, starts in enumerate(ucf_crime.segment_clips(f)):
            assert all(k * L <= s and s + 16 < (k + 1) * L and s + 16 <= f for s in starts)


def test_ucf_crime_segment_counts_match_the_real_dev_split(shared_data):
    with np.load(shared_data / "ucf_crime_r3d34" / "dev.npz") as d:
        frames, counts = d["n_frames"], d["n_segments"]
    predicted = np.array([len(ucf_crime.segment_clips(int(f))) for f in frames])
    assert (predicted == counts).sum() >= 147  # the rest: one segment off (decoded frame counts)
    assert np.all(np.abs(predicted - counts) <= 2)


def test_ucf_crime_scramble_is_a_plain_reshape():
    clip = np.arange(16 * 112 * 112 * 3, dtype=np.float32).reshape(16, 112, 112, 3)
    x = ucf_crime.scramble(clip)
    assert x.shape == (3, 16, 112, 112)
    # element 16*112*112 of the flat clip: frame 5, row 37, column 37, channel 1
    assert x[1, 0, 0, 0] == clip[5, 37, 37, 1] == 16 * 112 * 112
    assert not np.array_equal(x, clip.transpose(3, 0, 1, 2))  # not the transpose
    # from the properly laid out clip the runtime builds, the same scramble
    np.testing.assert_array_equal(ucf_crime.scramble_cthw(clip.transpose(3, 0, 1, 2)), x)
    with pytest.raises(ValueError, match=r"\(16, h, w, 3\)"):
        ucf_crime.scramble(clip[:8])


def test_ucf_crime_features_on_synthetic_frames():
    """Each frame carries its index in its colour; the 'backbone' reads the indices back."""
    n = 1285
    frames = [np.dstack([np.full((6, 8), i % 256, np.uint8), np.full((6, 8), i // 256, np.uint8),
                         np.zeros((6, 8), np.uint8)]) for i in range(n)]

    def backbone(x):  # [N, 3, 16, 112, 112] -> frame indices of each clip, via un-scrambling
        thwc = x.reshape(len(x), 16, 112, 112, 3)  # what the reshape scrambled
        idx = thwc[:, :, 50, 50, 1] * 256 + thwc[:, :, 50, 50, 2]  # RGB = (0, i // 256, i % 256)
        return np.stack([idx.mean(axis=1), idx[:, 0], idx[:, -1]], axis=1)

    feats = ucf_crime.video_features(frames, backbone)
    assert feats.shape == (32, 3)
    expected = np.array([[40 * k + 15.5, 40 * k + 8, 40 * k + 23] for k in range(32)])
    np.testing.assert_allclose(feats, expected)
    assert ucf_crime.video_features(frames[:500], backbone).shape == (0, 0)


def test_ucf_crime_geometry_matches_the_upstream_pixels():
    from edgevad.media.preprocess import preprocess_frame

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    ours = preprocess_frame(frame, zoo.UCF_CRIME_R3D34_GEOMETRY)  # C, H, W as the runtime does
    np.testing.assert_array_equal(ours.transpose(1, 2, 0), ucf_crime.frame_input(frame))


def test_r3d34_ucf_crime_backbone_scrambles_in_the_graph():
    import torch

    from edgevad_export.models import create_backbone
    from edgevad_export.models.resnet3d import build_r3d34

    model = create_backbone("r3d34-ucf-crime", random_init=True)
    plain = build_r3d34().eval()
    plain.load_state_dict(model.state_dict())  # Hara's keys: resnet-34-kinetics.pth loads as is
    clip = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 16, 112, 112))
                            .astype(np.float32))
    np.testing.assert_array_equal(model.scramble(clip)[0].numpy(),
                                  ucf_crime.scramble_cthw(clip[0].numpy()))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(clip),
                                   plain.forward_features(model.scramble(clip)))
    named = protocols.get_named("ucf-crime-r3d34")
    assert named.backbone == "r3d34-ucf-crime" and named.segments == 32
    with pytest.raises(EdgevadError, match="Unknown feature protocol"):
        protocols.get_named("nope")
