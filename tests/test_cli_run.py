"""`edgevad run` on tiny artifacts: outputs, folders, bad sources, Ctrl-C, and no torch anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import pytest
from typer.testing import CliRunner
from video_files import noise_frames, write_video

from edgevad.cli import app

pytest.importorskip("onnx")


def _video(path, n=30, fps=10.0):
    return write_video(path, noise_frames(n), fps)


def test_run_writes_scores_events_plot_and_video(tiny_artifact, tmp_path):
    video = _video(tmp_path / "cam.avi")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(video), "--artifacts", str(tiny_artifact("mil")),
                                   "--out", str(out), "--video", "--threshold", "0",
                                   "--min-event-frames", "2"])
    assert res.exit_code == 0, res.output
    rows = (out / "cam.scores.csv").read_text().splitlines()
    assert rows[0].startswith("frame,timestamp,score") and len(rows) == 31
    lines = [json.loads(x) for x in (out / "cam.scores.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(30))
    events = json.loads((out / "cam.events.json").read_text())
    assert events["frames"] == 30 and len(events["events"]) == 1
    assert (out / "cam.plot.png").stat().st_size > 1000
    cap = cv2.VideoCapture(str(out / "cam.annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert "Top 1 events" in res.output and str(out / "cam.scores.csv") in res.output


def test_run_scores_every_video_of_a_folder_and_names_bad_sources(tiny_artifact, tmp_path):
    _video(tmp_path / "a.avi", n=9)
    _video(tmp_path / "b.avi", n=5)
    res = CliRunner().invoke(app, ["run", str(tmp_path), "--artifacts", str(tiny_artifact("mil")),
                                   "--out", str(tmp_path / "o"), "--no-plot"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "o" / "a.scores.csv").read_text().splitlines()) == 10
    assert len((tmp_path / "o" / "b.scores.csv").read_text().splitlines()) == 6
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    res = CliRunner().invoke(app, ["run", str(bad), "--artifacts", str(tiny_artifact("mil"))])
    assert res.exit_code != 0 and "broken.mp4" in str(res.exception or res.output)
    res = CliRunner().invoke(app, ["run", str(tmp_path / "nope.mp4"),
                                   "--artifacts", str(tiny_artifact("mil"))])
    assert res.exit_code != 0 and "nope.mp4" in str(res.exception or res.output)


def test_ctrl_c_keeps_what_was_written(tiny_artifact, tmp_path, monkeypatch):
    from edgevad import sources

    video = _video(tmp_path / "cam.avi", n=30)
    real = sources.FrameSource.frames

    def interrupted(self, queue_size=32):
        for i, item in enumerate(real(self, queue_size)):
            if i == 10:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(sources.FrameSource, "frames", interrupted)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(video), "--artifacts", str(tiny_artifact("mil")),
                                   "--out", str(out)])
    assert res.exit_code == 130, res.output
    rows = (out / "cam.scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 10  # the 10 frames read, the buffered ones scored by flush
    assert json.loads((out / "cam.events.json").read_text())["interrupted"] is True


def test_runtime_never_imports_torch(tiny_artifact, tmp_path):
    """Import edgevad, load and run a Detector and `edgevad run` with torch import blocked."""
    video = _video(tmp_path / "v.avi", n=12)
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, Block())
        import numpy as np
        import edgevad
        det = edgevad.Detector.load({str(tiny_artifact("dam"))!r})
        out = [r for i in range(6) for r in det.push(np.full((20, 30, 3), 10 * i, np.uint8))]
        assert len(out + det.flush()) == 6
        from typer.testing import CliRunner
        from edgevad.cli import app
        res = CliRunner().invoke(app, ["run", {str(video)!r}, "--artifacts",
                                       {str(tiny_artifact("mil"))!r}, "--out", {str(tmp_path / "o")!r}])
        assert res.exit_code == 0, res.output
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("torch-free ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch-free ok" in proc.stdout
