"""benchmarks/soak.py runs (a few seconds, the plumbing artifact) and accounts for every frame."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("onnx")

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def test_soak_reports_windows_drift_and_scores_every_frame_once(tmp_path):
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    result = soak.main(["--plumbing", "--minutes", "0.06", "--warmup", "0.5", "--every", "0.8",
                        "--churn", "0.4", "--idle", "0.2", "--streams", "4", "--size", "48x64",
                        "--clip", str(tmp_path / "none.mp4"), "--json", str(tmp_path / "s.json")])
    assert result["accounted"]["ok"] and result["frames_in"] > 0
    assert len(result["windows"]) >= 2 and "drift" in result
    assert result["windows"][-1]["churned"] >= 2 and result["windows"][-1]["rss_mib"] > 0
    assert (tmp_path / "s.json").is_file()
