"""``benchmarks/gpu_check.py`` runs where there is no GPU too: it says so and prints the CPU rows
(on a GPU machine it adds ONNX Runtime's CUDA/TensorRT providers and TensorRT)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_on_this_machine(tiny_artifact, tmp_path):
    art = tiny_artifact("mil")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--work",
                           str(tmp_path), "--artifacts", str(art), "--source", "synthetic",
                           "--iters", "2", "--warmup", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "gpu_check" / "rows.json").read_text())
    assert rows["header"][3] == "device"
    labels = [r[2] for r in rows["rows"]]
    assert labels[0] == "onnxruntime CPU" and rows["rows"][0][3] == "CPUExecutionProvider"
    assert rows["rows"][0][-1] == "1.00" and float(rows["rows"][0][4]) > 0
    if rows["gpu"] is None:
        assert "no NVIDIA GPU here" in proc.stdout and labels == ["onnxruntime CPU"]
    assert "| artifact | precision | backend | device |" in proc.stdout
    assert "$ edgevad bench --artifacts" in proc.stdout
