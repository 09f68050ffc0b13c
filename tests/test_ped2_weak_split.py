"""The Ped2 weak-split study: its clip features are ``edgevad extract``'s, and its split is the
standard one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ped2_clips  # noqa: E402
import ped2_weak_split  # noqa: E402

from edgevad.media.motion import flow_statistics  # noqa: E402


def test_split_is_the_standard_one_and_never_mixes_train_and_test():
    train = {ped2_weak_split.video_key(*v) for v in ped2_clips.TRAIN_VIDEOS}
    test = {ped2_weak_split.video_key(*v) for v in ped2_weak_split.TEST_VIDEOS}
    assert train == {f"testing/{n}" for n in ("02", "06", "09", "10", "11", "12")} | {
        f"training/{n}" for n in ("07", "08", "14", "15")}
    assert len(test) == 18 and not train & test
    assert train | test == {f"{s}/{i:02d}" for s, k in (("testing", 12), ("training", 16))
                            for i in range(1, k + 1)}
    inner = [ped2_weak_split.video_key(*v) for fold in ped2_weak_split.INNER for v in fold]
    assert sorted(inner) == sorted(train)  # the validation folds partition the training videos
    for fold in ped2_weak_split.INNER:  # each held-out fold has anomalous and normal videos
        assert {s for s, _ in fold} == {"testing", "training"}


@pytest.mark.parametrize("n_frames", [120, 150, 180, 23])
def test_cuts(n_frames):
    from edgevad_export.extraction.extract import clip_starts

    s8 = ped2_clips.cut_clips(n_frames, "s8")
    assert s8 == clip_starts(n_frames, 16, 8)
    o4 = ped2_clips.cut_clips(n_frames, "o4")
    assert set(s8) | set(o4) == set(s8) | set(clip_starts(n_frames, 16, 4))
    assert not set(s8) & set(o4)


def test_pooled_clip_features_are_what_extract_writes(shared_data, tmp_path):
    """24 real Ped2 frames, random-init I3D (seeded the same way): the study's clips pooled with
    extract's pool_segments equal ``extract_features(..., stride=8)`` (the real weights are the
    same code path with other numbers); the flipped view mirrors every frame."""
    torch = pytest.importorskip("torch")
    from video_files import write_video

    from edgevad.media.video import VideoReader
    from edgevad_export.extraction.extract import clip_centre, extract_features, pool_segments
    from edgevad_export.models.factory import create_backbone

    reader = VideoReader(shared_data / "ped2" / "testing" / "01.mp4")
    frames = [f for _, f in zip(range(24), reader)]
    reader.close()
    video = write_video(tmp_path / "ped2_01_head.mp4", frames)

    torch.manual_seed(0)
    extract_features([video], "i3d", tmp_path / "bags.npz", random_init=True, segments=3,
                     stride=8, progress=False)
    with np.load(tmp_path / "bags.npz") as d:
        expected = d["features"][0]

    torch.manual_seed(0)
    model = create_backbone("i3d", random_init=True)
    decoded = ped2_clips.decode(video)
    plan = ped2_clips.cut_clips(len(decoded), "s8")
    mean, _ = ped2_clips.clip_features(model, decoded, plan, flip=False)
    centres = [clip_centre(s, r) for s, r in plan]
    np.testing.assert_allclose(pool_segments(mean, centres, len(decoded), 3), expected,
                               rtol=1e-4, atol=1e-5)

    flipped, _ = ped2_clips.clip_features(model, decoded[..., ::-1].copy(), plan[:1], flip=False)
    via_flag, _ = ped2_clips.clip_features(model, decoded, plan[:1], flip=True)
    np.testing.assert_allclose(via_flag, flipped, rtol=1e-4, atol=1e-5)


def test_live_scores_see_no_future_segment():
    """A live score of segment i is unchanged by any later segment; at the bag's end, where the
    bag's centred window holds no future either, it equals ``edgevad eval``'s bag score."""
    torch = pytest.importorskip("torch")
    from edgevad_export.training.checkpoint import build_head
    from edgevad_export.training.trainer import forward_scores

    torch.manual_seed(0)
    feats = np.random.default_rng(0).random((9, 16), dtype=np.float32)
    for head in ("mil-ctx", "mil", "mil-dis"):
        model = build_head(head, backbone=None, builder_kwargs={"feature_dim": 16}).eval()
        live = ped2_weak_split.live_scores(model, head, feats)
        with torch.inference_mode():
            bag = forward_scores(head, model, torch.from_numpy(feats)[None])["scores"][0].numpy()
        assert live.shape == (9,)
        np.testing.assert_allclose(live[-1], bag[-1], rtol=1e-5)
        changed = feats.copy()
        changed[5:] += 1.0
        np.testing.assert_allclose(ped2_weak_split.live_scores(model, head, changed)[:5],
                                   live[:5], rtol=1e-5)


def test_motion_features_on_real_ped2_frames(shared_data, tmp_path):
    """The motion cue of the weak-split study on a real Ped2 video (testing/02, a training video
    of the split): the live flow estimator's first frame has no flow, a clip's feature is the mean
    of its 16 frames' statistics (a padded tail repeats the last frame), and frames labelled
    anomalous (a cyclist) move faster than the walkers-only frames of the same video."""
    import json

    import ped2_flow

    video = shared_data / "ped2" / "testing" / "02.mp4"
    mag = ped2_flow.magnitude_maps(video, ped2_flow.SIZES["120x180"])
    n = len(mag)
    assert mag.shape[1:] == (120, 180) and mag.dtype == np.float16
    assert not mag[0].any() and mag[1:].any()
    out = ped2_flow.flow_file(tmp_path, "testing", "02", "120x180")
    out.parent.mkdir(parents=True)
    np.savez(out, mag=mag)

    stats = flow_statistics(mag)
    assert stats.shape == (n, 7)
    assert (np.diff(stats[:, :6], axis=1) >= 0).all()  # percentiles rise to the maximum
    starts = np.array([0, 8, n - 8])
    clips = ped2_weak_split.motion_clip_features(tmp_path, "testing", "02", "120x180", starts, n)
    np.testing.assert_allclose(clips[1], stats[8:24].mean(axis=0), rtol=1e-6)
    tail = np.concatenate([stats[n - 8:], np.repeat(stats[-1:], 8, axis=0)])
    np.testing.assert_allclose(clips[2], tail.mean(axis=0), rtol=1e-6)

    labels = np.asarray(json.loads((shared_data / "ped2" / "test_frame_labels.json")
                                   .read_text())["02"], bool)
    assert labels.any() and (~labels).any()
    p99 = stats[:, 3]
    assert np.median(p99[labels]) > 1.5 * np.median(p99[~labels][1:])


def test_normality_scores_use_only_the_normal_training_bags():
    """BN-WVAD's prior as the study computes it: statistics from the normal training bags only
    (anomalous training bags change nothing), a segment far from them scores higher, the score
    is per segment (bag = live) and in [0, 1)."""
    from edgevad_export.data.bags import FeatureBags

    rng = np.random.default_rng(0)

    def bags(feats, labels):
        labels = np.asarray(labels, bool)
        return FeatureBags(features=feats, names=np.asarray([f"v{i}" for i in range(len(feats))]),
                           labels=labels, categories=np.where(labels, "Anomaly", "Normal"),
                           n_frames=np.full(len(feats), 40, np.int64))

    normal = [rng.normal(0, 1, (4, 7)) for _ in range(3)]
    test = bags([np.stack([np.zeros(7), np.full(7, 4.0)])], [True])
    a = ped2_weak_split.normality_scores({"normality": "both"}, bags(normal, [0, 0, 0]), test)
    b = ped2_weak_split.normality_scores(
        {"normality": "both"}, bags(normal + [rng.normal(50, 9, (4, 7))], [0, 0, 0, 1]), test)
    assert a == b and a["bag"] == a["live"]
    near, far = a["bag"]["v0"]
    assert 0 <= near < far < 1
    upper = ped2_weak_split.normality_scores(
        {"normality": "upper"}, bags(normal, [0, 0, 0]),
        bags([np.stack([np.full(7, -4.0), np.full(7, 4.0)])], [True]))["bag"]["v0"]
    assert upper[0] < 0.5 < upper[1]  # below the normal mean does not count as anomalous


def test_clip_level_normality_is_causal(tmp_path):
    """Clip-by-clip scoring (what a live runtime computes): a frame's score comes from the first
    clip that holds it and completes, so motion from frame 48 on changes no score before it,
    and the frames of a burst of fast motion score above the calm ones."""
    from edgevad_export.extraction.extract import clip_starts

    (tmp_path / "clips").mkdir()
    (tmp_path / "flow").mkdir()
    rng = np.random.default_rng(0)
    n = 96
    plan = clip_starts(n, 16, 8)

    def video(split, name, mag):
        np.savez(ped2_clips.clip_file(tmp_path, split, name, "orig", "s8"),
                 start=np.array([s for s, _ in plan]), real=np.array([r for _, r in plan]),
                 n_frames=np.asarray(n))
        np.savez(tmp_path / "flow" / f"{split}_{name}_120x180.npz", mag=mag.astype(np.float16))

    calm = lambda: rng.uniform(0, 0.5, (n, 12, 18))  # noqa: E731
    for name in ("07", "08"):
        video("training", name, calm())
    burst = calm()
    burst[60:70, 4:8, 4:8] = 6.0
    video("testing", "02", burst)
    train = [("training", "07"), ("training", "08")]
    ped2_weak_split._MOTION_CACHE.clear()
    scores = np.asarray(ped2_weak_split.clip_level_normality(
        "motion-normality", tmp_path, train, [("testing", "02")])["testing/02"])
    assert scores.shape == (n,)
    assert scores[60:70].min() > scores[:40].max()

    later = burst.copy()
    later[48:] = 9.0
    video("testing", "02", later)
    ped2_weak_split._MOTION_CACHE.clear()  # the study caches each video's statistics
    changed = np.asarray(ped2_weak_split.clip_level_normality(
        "motion-normality", tmp_path, train, [("testing", "02")])["testing/02"])
    np.testing.assert_array_equal(changed[:48], scores[:48])
    assert not np.array_equal(changed[48:], scores[48:])
