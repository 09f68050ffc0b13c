"""`edgevad run` on tiny artifacts: outputs, run folders, folders with bad videos, real signals
(in this process and in a child process), bad option values, and no torch anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import pytest
from typer.testing import CliRunner
from video_files import noise_frames, write_video

from edgevad.cli.main import app
from edgevad.errors import EdgevadError

pytest.importorskip("onnx")


def _video(path, n=30, fps=10.0):
    return write_video(path, noise_frames(n), fps)


def _run(*args):
    return CliRunner().invoke(app, ["run", *map(str, args)])


def test_run_writes_scores_events_plot_and_video(tiny_artifact, tmp_path):
    video = _video(tmp_path / "cam.avi")
    out = tmp_path / "out"
    res = _run(video, "--artifacts", tiny_artifact("mil"), "--out", out, "--video",
               "--threshold", "0", "--min-event-frames", "2")
    assert res.exit_code == 0, res.output
    run = out / "run"
    rows = (run / "cam.scores.csv").read_text().splitlines()
    assert rows[0].startswith("frame,timestamp,score") and len(rows) == 31
    lines = [json.loads(x) for x in (run / "cam.scores.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(30))
    events = json.loads((run / "cam.events.json").read_text())
    assert events["frames"] == 30 and len(events["events"]) == 1
    assert (run / "cam.plot.png").stat().st_size > 1000
    cap = cv2.VideoCapture(str(run / "cam.annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert "Top 1 events" in res.output and str(run / "cam.scores.csv") in res.output
    report = json.loads((run / "report.json").read_text())
    assert report["exit_code"] == 0 and report["counts"] == {"ok": 1}
    assert report["sources"][0]["frames"] == 30 and len(report["sources"][0]["events"]) == 1


def _truncated(path, n=40):
    """An MJPG AVI cut in half: it opens, declares n frames and stops decoding half-way."""
    full = _video(path.with_name("full-" + path.name), n=n)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


def test_a_folder_with_bad_videos_scores_every_good_one_and_names_each_bad(tiny_artifact,
                                                                           tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    _video(clips / "01.avi", n=9)
    _video(clips / "01.mp4", n=5)  # same stem: must not overwrite 01.avi's files
    (clips / "broken.mp4").write_bytes(b"not a video at all" * 100)
    _truncated(clips / "cut.avi")
    _video(clips / "z.avi", n=6)  # after the bad ones: still scored
    out = tmp_path / "o"
    res = _run(clips, "--artifacts", tiny_artifact("mil"), "--out", out, "--no-plot")
    assert res.exit_code == 3, res.output
    run = out / "run"
    for name, n in (("01.avi", 9), ("01.mp4", 5), ("z", 6)):
        assert len((run / f"{name}.scores.csv").read_text().splitlines()) == 1 + n, name
    report = json.loads((run / "report.json").read_text())
    by_name = {s["name"]: s for s in report["sources"]}
    assert {k: v["status"] for k, v in by_name.items()} == {
        "01.avi": "ok", "01.mp4": "ok", "broken": "failed", "cut": "failed", "z": "ok"}
    assert "broken.mp4" in by_name["broken"]["error"] and by_name["broken"]["files"] == {}
    assert not list(run.glob("broken.*"))  # no empty files for a source that gave no frame
    cut = by_name["cut"]
    assert "stopped early" in cut["error"] and 0 < cut["frames"] < 40
    rows = (run / "cut.scores.csv").read_text().splitlines()
    assert len(rows) == 1 + cut["frames"]  # every decoded frame scored, the tail padded
    events = json.loads((run / "cut.events.json").read_text())
    assert events["status"] == "failed" and events["frames"] == cut["frames"]
    assert report["exit_code"] == 3 and report["counts"] == {"ok": 3, "failed": 2}
    assert "broken.mp4" in res.output and "cut.avi" in res.output and "2 of 5" in res.output


def test_camera_credentials_stay_out_of_the_run_records(tiny_artifact, tmp_path):
    """A camera URL carries its password; the terminal, report.json and events files name the
    source without it."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on: the camera is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://admin:s3cret@127.0.0.1:{port}/stream.mjpg"
    good = _video(tmp_path / "a.avi", n=5)
    res = _run(url, good, "--artifacts", tiny_artifact("mil"), "--out", tmp_path / "o",
               "--no-plot", "--reconnect", "0")
    assert res.exit_code == 3, res.output
    run = tmp_path / "o" / "run"
    written = res.output + "".join(p.read_text() for p in run.glob("*.json"))
    assert "s3cret" not in written and "admin" not in written
    report = json.loads((run / "report.json").read_text())
    assert f"http://***@127.0.0.1:{port}/stream.mjpg" in [s["source"] for s in report["sources"]]


def test_sources_that_do_not_open_are_named_and_the_others_scored(tiny_artifact, tmp_path):
    good = _video(tmp_path / "a.avi", n=5)
    res = _run(tmp_path / "nope.mp4", good, "--artifacts", tiny_artifact("mil"),
               "--out", tmp_path / "o", "--no-plot")
    assert res.exit_code == 3, res.output
    report = json.loads((tmp_path / "o" / "run" / "report.json").read_text())
    assert [(s["name"], s["status"]) for s in report["sources"]] == [
        (str(tmp_path / "nope.mp4"), "failed"), ("a", "ok")]
    assert "nope.mp4" in report["sources"][0]["error"]
    # nothing opens: one line naming it, status 1, no run folder
    res = _run(tmp_path / "nope.mp4", "--artifacts", tiny_artifact("mil"), "--out", tmp_path / "p")
    assert res.exit_code != 0 and "nope.mp4" in str(res.exception or res.output)
    assert not (tmp_path / "p").exists()


def test_runs_never_overwrite_each_other(tiny_artifact, tmp_path):
    video = _video(tmp_path / "cam.avi", n=5)
    args = [video, "--artifacts", tiny_artifact("mil"), "--out", tmp_path / "o", "--no-plot"]
    assert _run(*args).exit_code == 0
    first = (tmp_path / "o" / "run" / "cam.scores.csv").read_text()
    assert _run(*args, "--max-frames", "2").exit_code == 0
    assert (tmp_path / "o" / "run" / "cam.scores.csv").read_text() == first
    assert len((tmp_path / "o" / "run2" / "cam.scores.csv").read_text().splitlines()) == 3
    assert _run(*args, "--max-frames", "3", "--exist-ok").exit_code == 0  # asked for
    assert len((tmp_path / "o" / "run" / "cam.scores.csv").read_text().splitlines()) == 4
    assert not (tmp_path / "o" / "run3").exists()


@pytest.mark.parametrize("args, match", [
    (["--max-frames", "0"], "max-frames"),
    (["--min-event-frames", "0"], "min-event-frames"),
    (["--threshold", "nan"], "finite"),
    (["--name", "../x"], "plain folder name"),
    (["--model", "mil"], "--artifacts or --model, not both"),
])
def test_bad_option_values_are_one_line_errors(tiny_artifact, tmp_path, args, match):
    video = _video(tmp_path / "cam.avi", n=5)
    res = _run(video, "--artifacts", tiny_artifact("mil"), "--out", tmp_path / "o", *args)
    assert res.exit_code in (1, 2), res.output
    assert match in (res.output + str(res.exception or "")), res.output
    assert not isinstance(res.exception, (ValueError, TypeError)) or isinstance(
        res.exception, EdgevadError)


def test_model_runs_a_builtin_model_and_names_those_that_are_not(shared_data, tmp_path,
                                                                 monkeypatch):
    """``--model motion-prior`` builds the shipped fit into an empty cache and scores a real
    Ped2 video with the fit's own threshold; a model that is not built in is a one-line error."""
    pytest.importorskip("torch")
    from edgevad.artifact.defaults import default_model_info

    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path / "cache"))
    video = shared_data / "ped2" / "testing" / "02.mp4"
    res = _run(video, "--model", "motion-prior", "--out", tmp_path / "o", "--no-plot")
    assert res.exit_code == 0, res.output
    threshold = default_model_info("motion-prior")["checkpoint"]["default_threshold"]
    assert "model motion-prior" in res.output and f"threshold {threshold:g}" in res.output
    report = json.loads((tmp_path / "o" / "run" / "report.json").read_text())
    assert report["sources"][0]["frames"] == 180 and report["sources"][0]["events"]
    res = _run(video, "--model", "joint", "--out", tmp_path / "o")
    assert isinstance(res.exception, EdgevadError) and "not built in" in str(res.exception)


def test_an_unwritable_out_is_a_one_line_error(tiny_artifact, tmp_path):
    video = _video(tmp_path / "cam.avi", n=5)
    blocker = tmp_path / "file"
    blocker.write_text("x")  # --out below a file: cannot be created, whoever runs the test
    res = _run(video, "--artifacts", tiny_artifact("mil"), "--out", blocker / "o")
    assert isinstance(res.exception, EdgevadError) and "cannot create" in str(res.exception)


def _signal_after(monkeypatch, k, signum=signal.SIGINT):
    """Frames come from the real source; after the k-th a real signal hits this process."""
    from edgevad.media import sources

    real = sources.FrameSource.frames

    def frames(self, queue_size=32, stop=None):
        for i, item in enumerate(real(self, queue_size, stop)):
            if i == k:
                os.kill(os.getpid(), signum)
            yield item

    monkeypatch.setattr(sources.FrameSource, "frames", frames)


@pytest.mark.parametrize("k", [2, 10])  # inside the first clip; inside the third
def test_an_interrupted_run_writes_the_rows_of_an_uninterrupted_max_frames_run(
        tiny_artifact, tmp_path, monkeypatch, k):
    video = _video(tmp_path / "cam.avi", n=30)
    args = [video, "--artifacts", tiny_artifact("mil"), "--no-plot"]
    ref = _run(*args, "--out", tmp_path / "ref", "--max-frames", k + 1)
    assert ref.exit_code == 0
    _signal_after(monkeypatch, k)
    res = _run(*args, "--out", tmp_path / "out")
    assert res.exit_code == 130, res.output
    run = tmp_path / "out" / "run"
    got = (run / "cam.scores.csv").read_text()
    assert got == (tmp_path / "ref" / "run" / "cam.scores.csv").read_text()
    assert len(got.splitlines()) == 1 + k + 1  # frame k was read when the signal came
    events = json.loads((run / "cam.events.json").read_text())
    assert events["interrupted"] is True and events["frames"] == k + 1
    report = json.loads((run / "report.json").read_text())
    assert report["stopped_by"] == "SIGINT" and report["sources"][0]["status"] == "interrupted"
    assert report["sources"][0]["frames"] == k + 1


def test_sigterm_stops_between_sources_and_names_those_not_run(tiny_artifact, tmp_path,
                                                               monkeypatch):
    clips = tmp_path / "clips"
    clips.mkdir()
    _video(clips / "a.avi", n=12)
    _video(clips / "b.avi", n=12)
    _signal_after(monkeypatch, 5, signal.SIGTERM)
    res = _run(clips, "--artifacts", tiny_artifact("mil"), "--out", tmp_path / "o", "--no-plot")
    assert res.exit_code == 143, res.output
    report = json.loads((tmp_path / "o" / "run" / "report.json").read_text())
    assert [s["status"] for s in report["sources"]] == ["interrupted", "not run"]
    assert report["stopped_by"] == "SIGTERM"
    assert len((tmp_path / "o" / "run" / "a.scores.csv").read_text().splitlines()) == 1 + 6


_SLOW_RUN = textwrap.dedent("""
    import sys, time
    from edgevad.media import sources
    real = sources.FrameSource._decode
    def slow(self, stop):  # a camera at 50 frames/s
        for item in real(self, stop):
            time.sleep(0.02)
            yield item
    sources.FrameSource._decode = slow
    from edgevad.cli.main import main
    sys.argv = ["edgevad", "run", *sys.argv[1:]]
    main()
""")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_signal_to_a_real_process(tiny_artifact, tmp_path, signum, code):
    """The command in its own process gets a real signal half-way: it exits 130/143 (not
    SIGABRT), and its rows equal a --max-frames run of as many frames."""
    video = _video(tmp_path / "cam.avi", n=400)
    out = tmp_path / "o"
    args = [str(video), "--artifacts", str(tiny_artifact("mil")), "--no-plot"]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    csv_path = out / "run" / "cam.scores.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if csv_path.is_file() and len(csv_path.read_text().splitlines()) > 9:
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, output
    assert "terminate called" not in output and "Traceback" not in output, output
    report = json.loads((out / "run" / "report.json").read_text())
    n = report["sources"][0]["frames"]
    assert report["sources"][0]["status"] == "interrupted" and 9 < n < 400
    ref = _run(*args, "--out", tmp_path / "ref", "--max-frames", n)
    assert ref.exit_code == 0
    assert csv_path.read_text() == (tmp_path / "ref" / "run" / "cam.scores.csv").read_text()


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
        from edgevad.cli.main import app
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
