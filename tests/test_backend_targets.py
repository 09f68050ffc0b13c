"""``benchmarks/backend_targets.py``, the one command that checks the issue's OpenVINO speed
targets, runs end to end (on tiny artifacts standing in for the real ones, a synthetic source):
ratios from one bench run each, a verdict per target, the CPU flags it was measured with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_backend_targets_script(tiny_artifact, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO not installed: pip install "
                        "'edgevad[openvino]'")
    art = tiny_artifact("mil")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "backend_targets.py"),
                           "--work", str(tmp_path), "--source", "synthetic", "--iters", "2",
                           "--default", str(art), "--default-int8", str(art),
                           "--r3d18-int8", str(art)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "targets" / "verdict.json").read_text())
    assert set(doc) == {"cpu_flags", "load_average", "busy", "default", "r3d18"}
    for key, target in (("default", 2.5), ("r3d18", 2.0)):
        r = doc[key]
        assert r["target"] == target and r["passed"] == (r["ratio"] >= target)
        assert r["base"]["backend"] == "onnxruntime" and r["best"]["backend"].startswith("openvino")
        assert r["ratio"] == pytest.approx(r["best"]["fps"] / r["base"]["fps"])
        assert r["best"]["backend"] == "openvino" or "f32" not in r["best"]["ran"]
    assert len(doc["default"]["all"]) == 6 and len(doc["r3d18"]["all"]) == 2
    assert doc["default"]["all"][0][1] == 1.0  # ONNX Runtime fp32, the baseline
    assert proc.returncode == (0 if doc["default"]["passed"] and doc["r3d18"]["passed"] else 1)
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    assert "$ edgevad bench --artifacts" in proc.stdout
