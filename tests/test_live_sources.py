"""Live sources that drop, stall or never come back, served by a real HTTP server on 127.0.0.1.

OpenCV's FFmpeg back-end reads the served clip as a network stream: the end of the clip is a
drop (the connection ends), a response that stops half-way is a stall, a 404 is a stream that
does not come back. Nothing leaves the machine.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner
from video_files import noise_frames, write_video

from edgevad.cli.main import app
from edgevad.media.sources import FrameSource, Reconnect, SourceError

pytest.importorskip("onnx")

N = 10  # frames in the served clip
STALL_S = 20.0  # a stalled response sends nothing more for this long


class _Handler(http.server.BaseHTTPRequestHandler):
    data = b""
    mode = "ok"  # "ok": the whole clip; "stall": 60 % then STALL_S of silence; "down": 404
    served = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        cls = type(self)
        if cls.mode == "down":
            self.send_error(404)
            return
        cls.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "video/x-msvideo")
        self.send_header("Content-Length", str(len(cls.data)))
        self.end_headers()
        if cls.mode == "stall":
            self.wfile.write(cls.data[: len(cls.data) * 6 // 10])
            self.wfile.flush()
            time.sleep(STALL_S)
            return
        self.wfile.write(cls.data)
        if cls.after_first is not None:
            cls.mode = cls.after_first

    after_first: str | None = None

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    clip = write_video(tmp_path / "cam.avi", noise_frames(N), 10.0)
    handler = type("Handler", (_Handler,), {"data": clip.read_bytes()})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{srv.server_address[1]}/cam.avi"
    yield handler
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def run_url(tiny_artifact, tmp_path):
    """``edgevad run URL ...`` into a fresh folder: (result, run folder, report)."""

    def run(url, *args):
        res = CliRunner().invoke(app, ["run", url, "--artifacts", str(tiny_artifact("mil")),
                                       "--out", str(tmp_path / "o"), "--no-plot",
                                       "--reconnect-delay", "0.05", *map(str, args)])
        folder = tmp_path / "o" / "run"
        return res, folder, json.loads((folder / "report.json").read_text())

    return run


def _rows(run):
    csv = next(run.glob("*.scores.csv"))
    lines = csv.read_text().splitlines()[1:]
    return [int(x.split(",")[0]) for x in lines], [float(x.split(",")[1]) for x in lines]


def test_a_dropped_stream_is_reopened_and_indices_and_timestamps_continue(server, run_url):
    res, run, report = run_url(server.url, "--reconnect", 3, "--max-frames", 25)
    assert res.exit_code == 0, res.output
    src = report["sources"][0]
    assert src["status"] == "ok" and src["frames"] == 25 and src["reconnects"] == 2
    index, ts = _rows(run)
    assert index == list(range(25)) and all(np.diff(ts) >= 0)
    assert "2 reconnect(s)" in res.output


def test_a_stream_that_does_not_come_back_fails_named_and_keeps_its_frames(server, run_url):
    server.after_first = "down"
    res, run, report = run_url(server.url, "--reconnect", 2)
    assert res.exit_code == 3, res.output
    src = report["sources"][0]
    assert src["status"] == "failed" and "after 2 reconnect attempt" in src["error"]
    assert src["frames"] == N and src["reconnects"] == 0
    assert _rows(run)[0] == list(range(N))


def test_reconnect_0_ends_at_the_first_drop(server, run_url):
    res, run, report = run_url(server.url, "--reconnect", 0)
    assert res.exit_code == 3, res.output
    src = report["sources"][0]
    assert "--reconnect 0" in src["error"] and src["frames"] == N and server.served == 1


def test_a_stalled_stream_counts_as_a_drop(server, run_url):
    server.mode = "stall"
    t0 = time.monotonic()
    res, run, report = run_url(server.url, "--reconnect", 0, "--read-timeout", 0.5)
    assert time.monotonic() - t0 < STALL_S / 2  # the read timeout cut the stall short
    src = report["sources"][0]
    assert res.exit_code == 3 and "stalled" in src["error"]
    assert 0 < src["frames"] < N and _rows(run)[0] == list(range(src["frames"]))


def test_the_source_api_counts_reconnects_and_stops_on_request(server):
    src = FrameSource(server.url, "cam", "url", reconnect=Reconnect(attempts=2, delay_s=0.01))
    stop = threading.Event()
    got = []
    for _frame, ts in src.frames(stop=stop):
        got.append(ts)
        if len(got) == 2 * N + 3:
            stop.set()  # as a signal handler does: the iteration ends within 0.1 s
    assert len(got) == 2 * N + 3 and src.reconnects == 2
    assert not [t for t in threading.enumerate() if t.name == "edgevad-decode"]
    with pytest.raises(SourceError, match=">= 0"):
        Reconnect(attempts=-1)
