"""Shared fixtures: where the real data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevad_export.data.bags import FeatureBags  # numpy only: no torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip with a reason otherwise."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (CI has it; a fresh checkout does not)")
    return SHARED_DATA


@pytest.fixture
def synthetic_bags():
    """A builder of small labelled bags: ``synthetic_bags(n=16, dim=8, segments=32, ...)``."""
    return _synthetic_bags


def _synthetic_bags(n: int = 16, dim: int = 8, segments: int = 32, seed: int = 0,
                   with_frames: bool = False) -> FeatureBags:
    """Half anomalous (a bump on segments 10-13 along the first axis), categories from UCF."""
    rng = np.random.default_rng(seed)
    feats, labels, cats = [], [], []
    classes = ["Abuse", "Arson", "Robbery"]
    for i in range(n):
        anomalous = i % 2 == 0
        s = segments + (i % 3) - 1  # 31..33 like the real data
        f = rng.normal(size=(s, dim)).astype(np.float32)
        if anomalous:
            f[10:14, 0] += 4.0
        feats.append(f)
        labels.append(anomalous)
        cats.append(classes[i % 3] if anomalous else "Normal")
    extra = {}
    if with_frames:
        extra["n_frames"] = np.full(n, 320, dtype=np.int64)
        iv = np.full((n, 4), -1, dtype=np.int64)
        for i in range(0, n, 2):
            iv[i, :2] = (100, 139)
        extra["anomaly_intervals"] = iv
    return FeatureBags(features=feats, names=np.array([f"v{i:03d}" for i in range(n)]),
                       labels=np.array(labels), categories=np.array(cats), **extra)


# --- Tiny hand-built artifacts for runtime tests (onnx + numpy, no torch) --------------------------

@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory):
    """A builder of small, exactly computable artifacts: ``tiny_artifact(kind, clip_len=4,
    stride=4, ...)`` -> folder. Kinds: ``mil`` (per-segment sigmoid of a linear map of the
    clip's mean colour), ``ctx`` (adds the window mean: needs ``window``), ``joint`` (fixed
    segments + 14 class logits), ``dam`` (score from |clip_map - prev_map|), ``dmrm`` (appearance
    + a motion stage on flow). Built once per distinct argument set."""
    pytest.importorskip("onnx")
    from tiny_artifacts import build_tiny_artifact

    made: dict = {}

    def make(kind: str = "mil", **kw):
        key = (kind, tuple(sorted(kw.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"tiny-{kind}") / "artifact"
            made[key] = build_tiny_artifact(folder, kind, **kw)
        return made[key]

    return make


# --- One real export shared by the tests that need real graphs on real video ------------------------

@pytest.fixture(scope="session")
def i3d_mil_export(tmp_path_factory, shared_data):
    """(artifact folder, head.pt): I3D with its real Kinetics weights (registry package,
    hash-checked) and a seeded random MIL head saved as a file, exported once per session
    (~45 s) for every module that compares backends or the runtime with torch on it."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgevad_export.exporter import export_model
    from edgevad_export.models.factory import create_head
    from edgevad_export.weights.fetch import fetch_weights

    fetch_weights("i3d-kinetics400")
    folder = tmp_path_factory.mktemp("real")
    torch.manual_seed(0)
    head_file = folder / "head.pt"  # a random head saved as a file: torch and ONNX share it
    torch.save(create_head("mil", backbone="i3d", random_init=True).state_dict(), head_file)
    return export_model("mil", folder / "mil-i3d", checkpoint=head_file), head_file
