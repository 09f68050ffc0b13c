"""Bad input on the training side and the export's Ctrl-C: one named error, never a traceback.

Each case comes from issue 13's catalogue: bag files whose per-video arrays disagree in length,
string labels (``astype(bool)`` made them all True), annotations outside the video, an eval split
with no anomalous frames, and a Ctrl-C that torch's dynamo exporter wraps in its own error.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from edgevad.cli.main import app
from edgevad.errors import EdgevadError

torch = pytest.importorskip("torch")

from edgevad_export.data.bags import BagFileError, load_bags  # noqa: E402


def _bags(path, n=4, **override):
    rng = np.random.default_rng(0)
    arrays = dict(features=rng.normal(size=(n, 8, 6)).astype(np.float32) + 3,
                  n_segments=np.full(n, 8), name=np.array([f"v{i}" for i in range(n)]),
                  label=np.array([True, False] * (n // 2)), category=np.array(["Arson"] * n),
                  n_frames=np.full(n, 64),
                  anomaly_intervals=np.array([[10, 30, -1, -1], [-1, -1, -1, -1]] * (n // 2)))
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("override, match", [
    (dict(label=np.array(["yes", "no", "no", "no"])), "label must be booleans"),
    (dict(label=np.array([2, 0, 1, 0])), "label must be booleans"),
    (dict(name=np.array(["a", "b", "c"])), "name has 3 entries"),
    (dict(label=np.array([True, False])), "label has 2 entries"),
    (dict(n_frames=np.full(5, 64)), "n_frames has 5 entries"),
    (dict(anomaly_intervals=np.array([[70, 80, -1, -1], [-1, -1, -1, -1]] * 2)),
     "not inside its 64 frames"),
    (dict(anomaly_intervals=np.array([[30, 10, -1, -1], [-1, -1, -1, -1]] * 2)),
     "not inside its 64 frames"),
    (dict(anomaly_intervals=np.zeros((4, 3), np.int64)), r"\[N, 2k\]"),
    (dict(n_segments=np.array(["8"] * 4)), "n_segments must be"),
])
def test_inconsistent_bag_files_are_named_errors(tmp_path, override, match):
    path = _bags(tmp_path / "b.npz", **override)
    with pytest.raises(BagFileError, match=match):
        load_bags(path)


def test_annotations_ending_past_the_video_are_clipped_as_before(tmp_path):
    # the real UCF-Crime dev split has five intervals that end past n_frames
    path = _bags(tmp_path / "b.npz",
                 anomaly_intervals=np.array([[10, 90, -1, -1], [-1, -1, -1, -1]] * 2))
    assert load_bags(path).anomaly_intervals[0, 1] == 90


def test_train_and_eval_on_bad_bags_print_one_line(tmp_path):
    bad = _bags(tmp_path / "bad.npz", label=np.array(["yes", "no", "no", "no"]))
    res = CliRunner().invoke(app, ["train", "--model", "mil", "--features", str(bad),
                                   "--out", str(tmp_path / "ckpt"), "--steps", "1",
                                   "--no-progress"])
    assert isinstance(res.exception, BagFileError), res.output


def test_eval_on_a_split_without_anomalous_frames_is_a_named_error(tmp_path):
    from edgevad_export.evaluation.evaluate import EvaluationError, evaluate
    from edgevad_export.models import create_head

    path = _bags(tmp_path / "b.npz", anomaly_intervals=np.full((4, 4), -1))
    torch.manual_seed(0)
    model = create_head("mil", random_init=True, feature_dim=6, hidden=8)
    with pytest.raises(EvaluationError, match="no anomalous frames"):
        evaluate(model, load_bags(path), head="mil", segments=8, plots=False, curves=False)


def test_ctrl_c_inside_the_dynamo_exporter_stops_the_export(tmp_path, monkeypatch):
    """torch's dynamo exporter turns a KeyboardInterrupt into its own error; the export must
    stop, not fall back to the legacy exporter and fail later with an unrelated message."""
    from edgevad_export import onnx_export

    legacy = []

    def dynamo(*args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("torch.onnx: Failed to export the model with torch.export") from exc

    monkeypatch.setattr(onnx_export, "_export_dynamo", dynamo)
    monkeypatch.setattr(onnx_export, "_export_legacy", lambda *a: legacy.append(a))
    model = torch.nn.Linear(3, 1)
    with pytest.raises(KeyboardInterrupt):
        onnx_export.torch_to_onnx(model, (torch.zeros(1, 3),), tmp_path / "m.onnx", ["x"], ["y"])
    assert legacy == [] and not (tmp_path / "m.onnx").exists()
    # a real exporter failure still falls back
    monkeypatch.setattr(onnx_export, "_export_dynamo",
                        lambda *a: (_ for _ in ()).throw(RuntimeError("unsupported op")))
    with pytest.raises(EdgevadError):
        onnx_export.torch_to_onnx(model, (torch.zeros(1, 3),), tmp_path / "m.onnx", ["x"], ["y"])
    assert len(legacy) == 1


@pytest.mark.parametrize("text, match", [("{bad", "not valid JSON"), ("[1]", "JSON object"),
                                         (None, "cannot read")])
def test_a_bad_train_config_file_is_one_line(tmp_path, text, match):
    config = tmp_path / "config.json"
    if text is not None:
        config.write_text(text)
    bags = _bags(tmp_path / "b.npz")
    res = CliRunner().invoke(app, ["train", "--model", "mil", "--features", str(bags), "--out",
                                   str(tmp_path / "ckpt"), "--config", str(config)])
    assert isinstance(res.exception, EdgevadError) and match in str(res.exception)
