"""``edgevad run``: score videos, folders, cameras or streams with an exported model (torch-free).

Every run writes into a new folder, ``--out/--name`` (``edgevad-runs/run``, then ``run2``,
``run3``... as Ultralytics' ``runs/`` do; ``--exist-ok`` reuses ``--out/--name``), so a second
run never replaces the first. For each source it writes ``<name>.scores.csv`` and
``<name>.scores.jsonl`` (every frame, appended as scores arrive), ``<name>.events.json``,
``<name>.plot.png`` and, with ``--video``, ``<name>.annotated.mp4``; names of one run never
collide (``01.mp4`` and ``01.avi`` keep their extension). ``report.json`` lists every source with
its status (``ok``, ``failed`` and why, ``interrupted``, ``not run``), frames, events,
reconnects and files.

**Why sources fail alone.** A camera app runs unattended: one corrupt file, or a video that stops
decoding half-way, must not cost the other sources their scores. A failing source keeps every
frame it gave (scored, padded as ``flush`` does), is named with its reason in the summary and
the report, and the run goes on. The exit status says whether any failed (:data:`EXIT_CODES`).

**Why signals set a flag.** SIGINT (Ctrl-C) and SIGTERM (systemd, docker stop) are caught on
the main thread and only *ask* the frame loop to stop between two frames: a frame is never
half-pushed, so the interrupted clip is padded by ``flush`` exactly as a ``--max-frames N`` run
would pad it, and its rows equal that run's. The decode thread is joined and every file closed,
then the command exits 130 (SIGINT) or 143 (SIGTERM). A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from edgevad.artifact.records import redact_credentials
from edgevad.errors import EdgevadError

if TYPE_CHECKING:  # OpenCV and numpy load when the command runs, not at `edgevad --help`
    from edgevad.media.sources import FrameSource
    from edgevad.runtime.detector import Detector

console = Console()

EXIT_OK = 0
EXIT_ERROR = 1  # nothing ran: bad model, bad option value, output folder not writable
EXIT_USAGE = 2  # typer/click: unknown option, value out of range
EXIT_SOURCES_FAILED = 3  # some source failed (named in the summary and report.json)
EXIT_SIGNAL: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells do
EXIT_CODES = {EXIT_OK: "every source scored", EXIT_ERROR: "nothing ran (error printed)",
              EXIT_USAGE: "command-line usage error",
              EXIT_SOURCES_FAILED: "one or more sources failed; the others were scored",
              130: "interrupted by SIGINT (Ctrl-C)", 143: "stopped by SIGTERM"}


def _default_source() -> str:
    from edgevad.fetch.samples import sample_video

    path = sample_video()
    console.print(f"no SOURCE given: using the sample video {path}")
    return str(path)


def _builtin_artifacts(model: Optional[str]) -> Path:
    from edgevad.artifact.defaults import DEFAULT_MODEL, default_artifact

    path = default_artifact(model, progress=True)
    what = f"the built-in model {model}" if model else f"the default model ({DEFAULT_MODEL})"
    console.print(f"no --artifacts given: using {what} {path}")
    return path


def run_command(
    source: Optional[List[str]] = typer.Argument(
        None, help="Video files, folders of videos, camera indices (0) or rtsp/http URLs "
        "(default: the sample video)."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", "-a", help="Exported artifact "
                                             "folder (default: the default model, built on first use)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A built-in model instead of "
                                        "--artifacts: motion-prior (the default), mil-ctx, "
                                        "mil-dis, dam-dist... (edgevad models); built on first use."),
    out: Path = typer.Option(Path("edgevad-runs"), "--out", "-o", help="Parent folder of the "
                             "run folders."),
    name: str = typer.Option("run", help="Run folder name inside --out; run2, run3... when taken."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Write into --out/--name even if it "
                                  "exists (files of sources with the same names are replaced)."),
    backend: str = typer.Option("auto", help="auto (TensorRT engines, else OpenVINO if installed, "
                                "else ONNX Runtime), onnxruntime, openvino or tensorrt."),
    device: Optional[str] = typer.Option(None, help="OpenVINO device: CPU, GPU, NPU or AUTO."),
    precision: Optional[str] = typer.Option(None, help="OpenVINO inference precision: f32 "
                                            "(default) or bf16."),
    threshold: Optional[float] = typer.Option(None, help="Event threshold (default: the model's)."),
    min_event_frames: int = typer.Option(8, min=1, help="Shortest event, in frames."),
    video: bool = typer.Option(False, "--video/--no-video", help="Write an annotated video."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write a score plot PNG."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop each source after this many "
                                             "frames."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads."),
    top: int = typer.Option(5, help="Events to show in the terminal."),
    reconnect: int = typer.Option(5, min=0, help="Reopen a live source that drops or stalls up "
                                  "to this many times in a row; 0: end it at the first drop."),
    reconnect_delay: float = typer.Option(1.0, min=0.0, help="Seconds before the first reopen; "
                                          "doubled after each failed one (at most 30 s)."),
    read_timeout: float = typer.Option(10.0, min=0.1, help="Seconds without a frame after which "
                                       "a network stream counts as stalled."),
) -> None:
    """Score videos, folders, cameras or streams: per-frame scores, events, plot, report.json.

    Exit status: 0 every source scored; 1 nothing ran; 2 usage; 3 some source failed (the
    others scored; see report.json); 130 SIGINT, 143 SIGTERM (what was read is scored).
    """
    from edgevad.media.sources import Reconnect, open_sources, unique_names
    from edgevad.runtime.detector import Detector
    from edgevad.runtime.events import EventConfig

    if artifacts is not None and model is not None:
        raise typer.BadParameter("give --artifacts or --model, not both", param_hint="--model")
    _log_to_console()
    specs = list(source) if source else [_default_source()]
    rc = Reconnect(attempts=reconnect, delay_s=reconnect_delay, read_timeout_s=read_timeout)
    sources: list[FrameSource] = []
    unopened: list[dict] = []
    for spec in specs:
        try:
            sources.extend(open_sources(spec, rc))
        except EdgevadError as exc:
            unopened.append(_entry(spec, spec, "failed", error=str(exc)))
    if not sources:
        for u in unopened:
            console.print(f"[red]failed[/red] {u['source']}: {u['error']}", highlight=False)
        raise EdgevadError("no source could be opened" if len(unopened) > 1 else unopened[0]["error"])
    unique_names(sources)
    folder = artifacts if artifacts is not None else _builtin_artifacts(model)
    events_cfg = EventConfig(threshold=threshold, min_frames=min_event_frames)
    detector = Detector.load(folder, backend=backend, threads=threads, events=events_cfg,
                             device=device, precision=precision)
    m = detector.manifest
    assert detector.backend_choice is not None  # Detector.load() records it
    chosen = detector.backend_choice.describe()
    console.print(f"model {m.model.get('name')} ({m.precision}, {chosen} on "
                  f"{next(iter(detector.engines.values())).device}); clip {m.protocol.clip_len} "
                  f"frames every {m.protocol.stride}; threshold {detector.threshold:g}")
    run_dir = _run_dir(out, name, exist_ok)
    console.print(f"writing to {run_dir}", highlight=False)
    started = datetime.now(timezone.utc)
    entries = list(unopened)
    with _StopOnSignal() as stop:
        for src in sources:
            if stop.signum is not None:
                entries.append(_entry(src.spec, src.name, "not run", kind=src.kind,
                                      error=f"the run was stopped by {stop.signame} first"))
                continue
            entries.append(_run_one(detector, src, run_dir, video=video, plot=plot,
                                    max_frames=max_frames, stop=stop))
        code = (EXIT_SIGNAL[stop.signum] if stop.signum is not None
                else EXIT_SOURCES_FAILED if any(e["status"] == "failed" for e in entries)
                else EXIT_OK)
        report = _write_report(run_dir, entries, detector, folder, started, stop.signame, code)
    _summary(entries, top)
    console.print(f"  {'report':<12} {report}", soft_wrap=True, highlight=False)
    if stop.signum is not None:
        console.print(f"[yellow]stopped by {stop.signame}[/yellow]: everything read so far is "
                      "scored and written")
    elif code == EXIT_SOURCES_FAILED:
        n = sum(e["status"] == "failed" for e in entries)
        console.print(f"[red]{n} of {len(entries)} source(s) failed[/red] (see above and "
                      f"{report})", highlight=False)
    if code:
        raise typer.Exit(code)


class _StopOnSignal:
    """SIGINT and SIGTERM set :attr:`event` (the frame loop stops between frames) instead of
    raising in the middle of a push; a second SIGINT raises KeyboardInterrupt. Handlers can only
    be installed on the main thread; elsewhere KeyboardInterrupt is still caught by the loop."""

    def __init__(self):
        self.event = threading.Event()
        self.signum: int | None = None
        self._old: dict = {}

    @property
    def signame(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        if self.signum is None:  # no printing here: the handler may interrupt a print
            self.signum = signum
        self.event.set()

    def interrupted_by(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()


def _run_dir(out: Path, name: str, exist_ok: bool) -> Path:
    """``out/name``, or the first free ``out/name2``, ``out/name3``... (created here)."""
    if not name or Path(name).name != name:
        raise EdgevadError(f"--name must be a plain folder name, got {name!r}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        path, k = out / name, 2
        while True:
            try:
                path.mkdir(exist_ok=exist_ok)
                return path
            except FileExistsError:
                if exist_ok:  # a file of that name
                    raise
                path, k = out / f"{name}{k}", k + 1
    except OSError as exc:
        raise EdgevadError(f"cannot create the output folder in {out}: "
                           f"{exc.strerror or exc}") from exc


def _entry(spec: str, name: str, status: str, **kw) -> dict:
    base = {"source": redact_credentials(spec), "name": redact_credentials(name),
            "kind": kw.pop("kind", None),
            "status": status, "error": None, "frames": 0, "seconds": 0.0, "first_score_s": None,
            "reconnects": 0, "max_score": None, "events": [], "files": {}}
    base.update(kw)
    if base["error"] is not None:
        base["error"] = redact_credentials(base["error"])
    return base


def _run_one(detector: Detector, src: FrameSource, out: Path, *, video: bool, plot: bool,
             max_frames: int | None, stop: _StopOnSignal) -> dict:
    """Score one source; never raises for a fault of the source itself (reported instead)."""
    import numpy as np

    from edgevad.cli.outputs import AnnotatedVideo, ScoreWriter, plot_scores, write_events
    from edgevad.cli.progress import progress_bar

    sid = src.name
    detector.remove(sid)
    writer: ScoreWriter | None = None
    annot = None
    scores: list[float] = []
    error: str | None = None
    t0 = time.perf_counter()
    first_score_s = None
    total = min(src.frames_declared, max_frames or src.frames_declared) or None
    n = 0

    def take(results) -> None:
        nonlocal first_score_s
        if results and first_score_s is None:
            first_score_s = time.perf_counter() - t0
        assert writer is not None  # made before the first frame is pushed
        writer.write(results)
        scores.extend(r.score for r in results)
        if annot is not None:
            annot.scored(results)

    with progress_bar("{task.fields[fps]} frames/s", enabled=True) as bar:
        task = bar.add_task(sid, total=total, fps="-")
        try:
            try:
                for frame, ts in src.frames(stop=stop.event):
                    if writer is None:  # files appear once the source gave a frame
                        writer = ScoreWriter(out, sid)
                        if video:
                            annot = AnnotatedVideo(out / f"{sid}.annotated.mp4", src.fps,
                                                   detector.threshold,
                                                   detector.manifest.score_range[1])
                    if annot is not None:
                        annot.add(n, frame)
                    take(detector.push(frame, sid, ts))
                    n += 1
                    if n % 10 == 0:
                        bar.update(task, completed=n,
                                   fps=f"{n / (time.perf_counter() - t0):.1f}")
                    if max_frames is not None and n >= max_frames:
                        break
            except KeyboardInterrupt:  # no handler (not the main thread), or a second Ctrl-C
                stop.interrupted_by(signal.SIGINT)
            except (EdgevadError, OSError) as exc:  # the source failed: keep what it gave
                error = str(exc) if isinstance(exc, EdgevadError) else f"cannot write: {exc}"
            if writer is not None and sid in detector.streams:
                take(detector.flush(sid))
            bar.update(task, completed=n, fps=f"{n / max(time.perf_counter() - t0, 1e-9):.1f}")
        except OSError as exc:
            error = error or f"cannot write: {exc}"
        finally:
            if writer is not None:
                writer.close()
            if annot is not None:
                annot.close()
    elapsed = time.perf_counter() - t0
    events = [e for e in detector.events() if e.stream == sid]
    detector.remove(sid)
    interrupted = stop.signum is not None
    status = "failed" if error else "interrupted" if interrupted else "ok"
    shown = redact_credentials(src.spec)
    if error:
        console.print(f"[red]failed[/red] {shown}: {redact_credentials(error)}", highlight=False)
    entry = _entry(src.spec, sid, status, kind=src.kind, error=error, frames=n, seconds=elapsed,
                   first_score_s=first_score_s, reconnects=src.reconnects, events=events)
    if writer is None:
        return entry
    arr = np.asarray(scores, dtype=np.float64)
    files = {"scores_csv": writer.csv_path, "scores_jsonl": writer.jsonl_path}
    try:
        files["events"] = write_events(out / f"{sid}.events.json", events, source=shown,
                                       frames=n, fps=src.fps, threshold=detector.threshold,
                                       model=detector.manifest.model, interrupted=interrupted,
                                       status=status, error=entry["error"],
                                       reconnects=src.reconnects)
        if plot and len(arr):
            png = plot_scores(out / f"{sid}.plot.png", arr, threshold=detector.threshold,
                              events=events, fps=src.fps,
                              title=f"{shown} - {detector.manifest.model.get('name')}",
                              score_range=detector.manifest.score_range)
            if png is None:
                console.print("plot skipped: matplotlib is not installed (pip install matplotlib)")
            else:
                files["plot"] = png
    except OSError as exc:
        entry.update(status="failed", error=entry["error"] or f"cannot write: {exc}")
    if annot is not None:
        files["video"] = annot.path
    entry.update(files=files, max_score=float(arr.max()) if len(arr) else None)
    return entry


def _write_report(run_dir: Path, entries: list[dict], detector: Detector, artifacts: Path,
                  started: datetime, signame: str | None, code: int) -> Path:
    from edgevad import __version__

    def plain(e: dict) -> dict:
        return {**e, "events": [ev.to_dict() for ev in e["events"]],
                "files": {k: str(v) for k, v in e["files"].items()}}

    counts: dict[str, int] = {}
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    report = {
        "edgevad": __version__, "model": detector.manifest.model, "artifacts": str(artifacts),
        "backend": detector.backend, "threshold": detector.threshold,
        "engines": {n: {"device": e.device, "graph": getattr(e, "graph", e.stage.file),  # ran
                        "precision": getattr(e, "precision", e.stage.precision)}
                    for n, e in detector.engines.items()},
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stopped_by": signame, "exit_code": code, "exit_meaning": EXIT_CODES.get(code),
        "counts": counts, "sources": [plain(e) for e in entries],
    }
    path = run_dir / "report.json"
    try:
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        console.print(f"[red]cannot write {path}[/red]: {exc}", highlight=False)
    return path


def _summary(entries: list[dict], top: int) -> None:
    for s in entries:
        if s["status"] in ("failed", "not run") and not s["files"]:
            console.print(f"[bold]{s['source']}[/bold]: [red]{s['status']}[/red]: {s['error']}",
                          highlight=False)
            continue
        fps = s["frames"] / s["seconds"] if s["seconds"] else 0.0
        tag = {"ok": "", "interrupted": " [yellow](interrupted)[/yellow]"}.get(
            s["status"], f" [red]({s['status']}: {s['error']})[/red]")
        extra = f", {s['reconnects']} reconnect(s)" if s["reconnects"] else ""
        console.print(f"[bold]{s['source']}[/bold]: {s['frames']} frames in {s['seconds']:.1f} s "
                      f"({fps:.1f} frames/s), max score "
                      f"{'-' if s['max_score'] is None else format(s['max_score'], '.3f')}, "
                      f"{len(s['events'])} event(s){extra}{tag}", highlight=False)
        for kind, path in s["files"].items():  # never wrapped: paths get copied
            console.print(f"  {kind:<12} {path}", soft_wrap=True, highlight=False)
    events = [e for s in entries for e in s["events"]]
    if not events:
        return
    table = Table(title=f"Top {min(top, len(events))} events (of {len(events)})")
    for col in ("source", "frames", "time (s)", "peak", "class"):
        table.add_column(col)
    for e in sorted(events, key=lambda e: e.peak_score, reverse=True)[:top]:
        when = "-" if e.start_time is None else f"{e.start_time:.1f}-{e.end_time:.1f}"
        table.add_row(e.stream, f"{e.start}-{e.end}", when, f"{e.peak_score:.3f}", e.label or "-")
    console.print(table)


def _log_to_console() -> None:
    """Warnings of the runtime (reconnects, engine fall-backs) reach the terminal."""
    logger = logging.getLogger("edgevad")
    if not logger.handlers:
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
