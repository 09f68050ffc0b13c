"""The runtime on a real export: I3D (real Kinetics weights) + a MIL head, on real video.

The Detector's per-frame scores must match the training-side model (torch) run on the same clips
within the export's fp32 tolerance, on ../shared/data/clips/pets2009_vtest.mp4 and a UCSD Ped2
test video, and `edgevad run` must complete on them. One export (~45 s) serves the module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from typer.testing import CliRunner  # noqa: E402

from edgevad import Detector  # noqa: E402
from edgevad.artifact.compare import tolerance_for  # noqa: E402
from edgevad.cli.main import app  # noqa: E402
from edgevad.media.preprocess import preprocess_frame  # noqa: E402
from edgevad.media.video import read_video  # noqa: E402

N_FRAMES = 40  # two full 16-frame clips and a padded tail


@pytest.fixture(scope="module")
def i3d_mil(i3d_mil_export):
    return i3d_mil_export  # conftest: one export per session, shared with test_openvino.py


def _torch_scores(artifact: Path, head_file: Path, frames: list[np.ndarray]) -> np.ndarray:
    """The training side on the runtime's clip schedule, written out independently."""
    from edgevad.artifact.manifest import load_manifest
    from edgevad_export.models.factory import create_backbone, create_head

    m = load_manifest(artifact)
    g = m.geometry()
    backbone = create_backbone("i3d", "i3d-kinetics400").eval()
    head = create_head("mil", backbone="i3d", checkpoint=head_file).eval()
    x = np.stack([preprocess_frame(f, g) for f in frames], axis=1)  # [C, F, H, W]
    n, L = len(frames), g.clip_len
    starts = list(range(0, n - L + 1, g.stride))
    if starts[-1] + L < n:
        starts.append(starts[-1] + g.stride)
    clips = np.stack([x[:, [min(j, n - 1) for j in range(s, s + L)]] for s in starts])
    with torch.inference_mode():
        feats = backbone.forward_features(torch.from_numpy(clips))
        clip_scores = head(feats[:, None, :])[:, 0].numpy()
    return np.array([clip_scores[min(i // g.stride, len(starts) - 1)] for i in range(n)])


@pytest.mark.parametrize("video", ["clips/pets2009_vtest.mp4", "ped2/testing/04.mp4"])
def test_detector_matches_torch_on_real_clips(i3d_mil, shared_data, video):
    artifact, head_file = i3d_mil
    frames = [f for _, f in zip(range(N_FRAMES), read_video(shared_data / video))]
    det = Detector.load(artifact)
    got = []
    for f in frames:
        got += det.push(f)
    got += det.flush()
    assert [r.index for r in got] == list(range(N_FRAMES))
    ref = _torch_scores(artifact, head_file, frames)
    tol = tolerance_for("fp32")
    np.testing.assert_allclose([r.score for r in got], ref, atol=tol.atol, rtol=tol.rtol)
    assert np.ptp(ref) > 0  # different clips, different scores: the check has teeth


def test_edgevad_run_completes_on_real_video(i3d_mil, shared_data, tmp_path):
    result = CliRunner().invoke(app, ["run", str(shared_data / "ped2" / "testing" / "04.mp4"),
                                      "--artifacts", str(i3d_mil[0]), "--out", str(tmp_path),
                                      "--max-frames", "48"])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "run" / "04.scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 48
    assert (tmp_path / "run" / "04.events.json").is_file()
