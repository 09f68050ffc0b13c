"""The command line: help without torch, clear errors, listing the zoo."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgevad.artifact import zoo
from edgevad.cli.main import app

runner = CliRunner()

# Runs code in a fresh interpreter where `import torch` fails, as on a camera without torch.
NO_TORCH = "import sys; sys.modules['torch'] = None\n"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("export", "train", "eval", "extract", "run", "bench", "weights", "models"):
        assert command in result.output


def test_runtime_and_help_work_without_torch():
    code = NO_TORCH + (
        "import edgevad, edgevad.artifact.zoo, edgevad.cli.main\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(edgevad.cli.main.app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(edgevad.cli.main.app, ['models'])\n"
        "assert r.exit_code == 0 and 'dmrm' in r.output, r.output\n"
        "print('ok')\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_import_edgevad_does_not_import_torch():
    result = _python("import sys, edgevad, edgevad.cli.main, edgevad.artifact.zoo, edgevad.fetch.cache\n"
                     "print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_weights_fetch_without_torch_names_the_extra():
    code = NO_TORCH + (
        "from typer.testing import CliRunner\nimport edgevad.cli.main\n"
        "r = CliRunner().invoke(edgevad.cli.main.app, ['weights', 'fetch', 'i3d-kinetics400'])\n"
        "print(type(r.exception).__name__, r.exception)\n"
    )
    result = _python(code)
    assert "MissingDependencyError" in result.stdout and "edgevad[train]" in result.stdout


def test_unknown_weights_name_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "edgevad", "weights", "fetch", "i3d-kinetic400"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Unknown weights 'i3d-kinetic400'" in result.stderr
    assert "Did you mean i3d-kinetics400" in result.stderr
    assert "Traceback" not in result.stderr


def test_models_lists_heads_and_backbones():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("mil", "mrm", "dmrm", "dam-dist", "dam-cov", "joint", "i3d", "r3d34", "c3d"):
        assert name in result.output


def test_models_says_what_each_shipped_head_was_trained_on_and_scored():
    from edgevad.cli.main import _shipped_head

    shown = {name: _shipped_head(zoo.get_head(name)) for name in zoo.list_heads()}
    assert shown["joint"].startswith("UCF-Crime, frame AUC ")
    assert shown["mil-ctx"] == "UCSD Ped2, frame AUC 78.0"
    assert all(text.startswith(("UCSD Ped2, ", "UCF-Crime, ")) for text in shown.values())


def _real_slice(src, dst, n_per_class: int):
    """A small feature-bag file from the real split: the first n anomalous and n normal videos."""
    import numpy as np

    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    ok = arrays["n_segments"] > 0
    idx = np.concatenate([np.flatnonzero(ok & arrays["label"])[:n_per_class],
                          np.flatnonzero(ok & ~arrays["label"])[:n_per_class]])
    np.savez(dst, **{k: v[idx] for k, v in arrays.items()})
    return dst


def test_train_eval_export_from_the_command_line(shared_data, tmp_path):
    ucf = shared_data / "ucf_crime_r3d34"
    train = _real_slice(ucf / "train.npz", tmp_path / "train.npz", 60)
    dev = _real_slice(ucf / "dev.npz", tmp_path / "dev.npz", 20)
    ckpt, report = tmp_path / "ckpt", tmp_path / "report"
    r = runner.invoke(app, ["train", "-m", "mil", "--features", str(train), "-o", str(ckpt),
                            "--steps", "60", "--batch", "8", "--no-progress",
                            "--head-kwarg", "hidden=128"])
    assert r.exit_code == 0, r.output
    assert (ckpt / "checkpoint.json").is_file()
    r = runner.invoke(app, ["eval", "--checkpoint", str(ckpt), "--features", str(dev),
                            "-o", str(report), "--scores-out", str(tmp_path / "s.npz"),
                            "--no-curves"])
    assert r.exit_code == 0, r.output
    assert "frame_auc" in r.output and (report / "report.json").is_file()
    r = runner.invoke(app, ["export", "-m", "mil", "--checkpoint", str(ckpt), "-o",
                            str(tmp_path / "art")])
    assert r.exit_code != 0 and "resnet-34-kinetics.pth" in str(r.exception)


def test_train_rejects_bad_head_kwarg(tmp_path):
    r = runner.invoke(app, ["train", "-m", "mil", "--features", str(tmp_path / "x.npz"),
                            "-o", str(tmp_path / "c"), "--head-kwarg", "oops"])
    assert r.exit_code != 0 and "KEY=VALUE" in str(r.exception)


def test_weights_add_caches_a_users_file(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from stand_in_weights import hara_file

    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path / "cache"))
    path = hara_file(tmp_path / "resnet-18-kinetics.pth", "r3d18")
    result = runner.invoke(app, ["weights", "add", "r3d18-kinetics", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "weights" / "r3d18-kinetics.pt").is_file()
    result = runner.invoke(app, ["weights", "add", "r3d34-kinetics", str(path)])
    assert "do not fit backbone 'r3d34'" in str(result.exception)  # main() prints it, exits 1
