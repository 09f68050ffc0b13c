"""I3D in PyTorch: output shapes, TF-SAME details, and the real Kinetics weights against Flax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevad.errors import DownloadError
from edgevad_export.models.i3d import MIN_FRAMES, MaxPool3dSame, build_i3d, same_pads

WEIGHTS = "i3d-kinetics400"


@pytest.fixture(scope="session")
def i3d_weights_path():
    """The converted Kinetics weights: the user's cache if it already holds them, else fetched.

    Fetching goes to the normal cache (``$EDGEVAD_CACHE`` or ``~/.cache/edgevad``), so the 47 MB
    download happens once per machine, not once per test run.
    """
    from edgevad_export.weights.fetch import cached_weights, fetch_weights

    path = cached_weights(WEIGHTS)
    if path is None:
        try:
            path = fetch_weights(WEIGHTS, progress=False)
        except DownloadError as exc:
            pytest.skip(f"{WEIGHTS} is not cached and cannot be downloaded: {exc}")
    return path


@pytest.fixture(scope="session")
def i3d_state_dict(i3d_weights_path) -> dict[str, torch.Tensor]:
    return torch.load(i3d_weights_path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def random_i3d() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_i3d().eval()


def _clip(b: int, t: int, h: int = 224, w: int = 224) -> torch.Tensor:
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_matches_flax_reference_on_cricket_gif(shared_data, i3d_state_dict):
    image = pytest.importorskip("PIL.Image")
    ref_dir = shared_data / "i3d_reference"
    with image.open(ref_dir / "cricket_rgb.gif") as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
    video = np.stack(frames)
    assert video.shape == (79, 224, 224, 3)
    x = torch.from_numpy(video).float().div(255.0).mul(2.0).sub(1.0).permute(3, 0, 1, 2)[None]

    model = build_i3d().eval()
    model.load_state_dict(i3d_state_dict, strict=True)
    with torch.inference_mode():
        logits = model(x).numpy()

    expected = np.load(ref_dir / "flax_logits.npy")
    labels = (ref_dir / "label_map.txt").read_text().splitlines()
    assert logits.shape == expected.shape == (1, 400)
    assert int(logits.argmax()) == 227 and labels[227] == "playing cricket"
    assert np.abs(logits - expected).max() <= 1e-4


def test_converted_weights_fit_the_model(i3d_state_dict):
    model = build_i3d()
    assert set(i3d_state_dict) == set(model.state_dict())
    bn_weights = [v for k, v in i3d_state_dict.items() if k.endswith(".bn.weight")]
    assert bn_weights and all(bool((w == 1).all()) for w in bn_weights)  # Flax BN has no scale


def test_feature_map_has_seven_steps_for_64_frames(random_i3d):
    with torch.inference_mode():
        fmap = random_i3d.forward_feature_map(_clip(1, 64))
    assert fmap.shape == (1, 7, random_i3d.feature_dim)


def test_16_frame_clip_shapes(random_i3d):
    x = _clip(2, 16, 64, 64)  # t depends on T only; a small frame keeps the test fast
    with torch.inference_mode():
        fmap = random_i3d.forward_feature_map(x)
        feats = random_i3d.forward_features(x)
        logits = random_i3d(x)
    assert fmap.shape == (2, 1, 1024)
    assert feats.shape == (2, 1024) and torch.allclose(feats, fmap[:, 0])
    assert logits.shape == (2, random_i3d.num_classes) == (2, 400)


def test_other_sizes_and_shortest_clip(random_i3d):
    with torch.inference_mode():
        fmap = random_i3d.forward_feature_map(_clip(1, MIN_FRAMES, 112, 160))
    assert fmap.shape == (1, 1, 1024)


def test_too_short_or_wrong_input_is_a_clear_error(random_i3d):
    with pytest.raises(ValueError, match=f"at least {MIN_FRAMES} frames"):
        random_i3d(_clip(1, MIN_FRAMES - 1, 64, 64))
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        random_i3d(torch.zeros(1, 16, 3, 64, 64))


@pytest.mark.parametrize("n, k, s, low_high", [
    (224, 7, 2, (2, 3)),   # even total: the extra pixel goes at the end, as in TensorFlow
    (79, 7, 2, (3, 3)),
    (112, 3, 2, (0, 1)),
    (40, 3, 1, (1, 1)),
    (5, 2, 2, (0, 1)),
    (4, 1, 1, (0, 0)),
])
def test_tf_same_padding(n, k, s, low_high):
    assert tuple(same_pads((n,), (k,), (s,))) == low_high


def test_maxpool_same_pads_with_minus_infinity():
    pool = MaxPool3dSame((1, 3, 3), (1, 2, 2))
    x = -torch.arange(1, 1 + 4 * 4, dtype=torch.float32).reshape(1, 1, 1, 4, 4)  # all negative
    y = pool(x)
    assert y.shape == (1, 1, 1, 2, 2)
    # Windows start at 0 and 2; the padded cell past the end never wins even over negatives.
    assert y.flatten().tolist() == [-1.0, -3.0, -9.0, -11.0]


def test_factory_loads_registered_name_and_converted_file(i3d_weights_path, i3d_state_dict):
    from edgevad_export.models import create_backbone

    by_name = create_backbone("i3d")
    by_path = create_backbone("i3d", weights=i3d_weights_path)
    for model in (by_name, by_path):
        assert not model.training
        for key, value in i3d_state_dict.items():
            assert torch.equal(model.state_dict()[key], value), key
