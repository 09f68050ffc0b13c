"""Each example in examples/ runs as written, on the real clips in ../shared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_camera_loop(tiny_artifact, shared_data):
    out = _run(str(EXAMPLES / "camera_loop.py"), "--artifacts", str(tiny_artifact("mil")),
               "--source", str(shared_data / "clips" / "pets2009_vtest.mp4"), "--max-frames", "50")
    assert "50 frames, last score" in out and "(frame 49)" in out


def test_multi_camera(tiny_artifact, shared_data):
    ped2 = shared_data / "ped2" / "testing"
    out = _run(str(EXAMPLES / "multi_camera.py"), "--artifacts", str(tiny_artifact("dam")),
               str(ped2 / "01.mp4"), str(ped2 / "02.mp4"), "--max-frames", "40")
    assert "cam0: peak score" in out and "cam1: peak score" in out


def test_score_folder(tiny_artifact, shared_data, tmp_path):
    out = _run(str(EXAMPLES / "score_folder.py"), "--artifacts", str(tiny_artifact("mil")),
               str(shared_data / "ped2" / "testing"), "--out", str(tmp_path), "--limit", "2")
    assert "01.mp4:" in out and "02.mp4:" in out
    assert len((tmp_path / "summary.csv").read_text().splitlines()) == 3
    assert (tmp_path / "01.npz").is_file()
