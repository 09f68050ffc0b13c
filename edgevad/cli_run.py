"""``edgevad run``: score videos, folders, cameras or streams with an exported model (torch-free).

For each source it writes, into ``--out``: ``<name>.scores.csv`` and ``<name>.scores.jsonl``
(every frame, appended as scores arrive), ``<name>.events.json``, ``<name>.plot.png`` and, with
``--video``, ``<name>.annotated.mp4``. Ctrl-C stops at once: the frames still buffered are
scored, every file is closed and the summary printed, then it exits with status 130.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from edgevad.errors import EdgevadError

if TYPE_CHECKING:  # OpenCV and numpy load when the command runs, not at `edgevad --help`
    from edgevad.runtime.detector import Detector
    from edgevad.sources import FrameSource

console = Console()


def _default_source() -> str:
    from edgevad.samples import sample_video

    path = sample_video()
    console.print(f"no SOURCE given: using the sample video {path}")
    return str(path)


def _default_artifacts() -> Path:
    from edgevad.defaults import default_artifact

    path = default_artifact(progress=True)
    console.print(f"no --artifacts given: using the default model {path}")
    return path


def run_command(
    source: Optional[str] = typer.Argument(None, help="Video file, folder of videos, camera "
                                           "index (0) or rtsp/http URL (default: the sample video)."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", "-a", help="Exported artifact "
                                             "folder (default: the default model, built on first use)."),
    out: Path = typer.Option(Path("edgevad-runs"), "--out", "-o", help="Folder for the outputs."),
    backend: str = typer.Option("auto", help="auto (TensorRT engines, else OpenVINO if installed, "
                                "else ONNX Runtime), onnxruntime, openvino or tensorrt."),
    device: Optional[str] = typer.Option(None, help="OpenVINO device: CPU, GPU, NPU or AUTO."),
    precision: Optional[str] = typer.Option(None, help="OpenVINO inference precision: f32 "
                                            "(default) or bf16."),
    threshold: Optional[float] = typer.Option(None, help="Event threshold (default: the model's)."),
    min_event_frames: int = typer.Option(8, help="Shortest event, in frames."),
    video: bool = typer.Option(False, "--video/--no-video", help="Write an annotated video."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write a score plot PNG."),
    max_frames: Optional[int] = typer.Option(None, help="Stop each source after this many frames."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads."),
    top: int = typer.Option(5, help="Events to show in the terminal."),
) -> None:
    """Score a video, folder, camera or stream: per-frame scores, events, plot."""
    from edgevad.runtime.detector import Detector
    from edgevad.runtime.events import EventConfig
    from edgevad.sources import open_sources

    spec = source if source is not None else _default_source()
    sources = open_sources(spec)
    folder = artifacts if artifacts is not None else _default_artifacts()
    events_cfg = EventConfig(threshold=threshold, min_frames=min_event_frames)
    detector = Detector.load(folder, backend=backend, threads=threads, events=events_cfg,
                             device=device, precision=precision)
    m = detector.manifest
    chosen = detector.backend_choice.describe()
    console.print(f"model {m.model.get('name')} ({m.precision}, {chosen} on "
                  f"{next(iter(detector.engines.values())).device}); clip {m.protocol.clip_len} "
                  f"frames every {m.protocol.stride}; threshold {detector.threshold:g}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgevadError(f"cannot create the output folder {out}: {exc.strerror or exc}") from exc
    interrupted = False
    summaries = []
    for src in sources:
        summary, interrupted = _run_one(detector, src, out, video=video, plot=plot,
                                        max_frames=max_frames)
        summaries.append(summary)
        if interrupted:
            break
    _report(summaries, out, top)
    if interrupted:
        console.print("[yellow]interrupted[/yellow]: everything scored so far is written")
        raise typer.Exit(130)


def _run_one(detector: Detector, src: FrameSource, out: Path, *, video: bool, plot: bool,
             max_frames: int | None) -> tuple[dict, bool]:
    import numpy as np

    from edgevad.outputs import AnnotatedVideo, ScoreWriter, plot_scores, write_events
    from edgevad.progress import progress_bar

    stem = src.name
    writer = ScoreWriter(out, stem)
    annot = None
    if video:
        annot = AnnotatedVideo(out / f"{stem}.annotated.mp4", src.fps, detector.threshold,
                               detector.manifest.score_range[1])
    sid = stem
    detector.remove(sid)
    scores: list[float] = []
    interrupted = False
    t0 = time.perf_counter()
    first_score_s = None
    total = min(src.frames_declared, max_frames or src.frames_declared) or None
    n = 0

    def take(results) -> None:
        nonlocal first_score_s
        if results and first_score_s is None:
            first_score_s = time.perf_counter() - t0
        writer.write(results)
        scores.extend(r.score for r in results)
        if annot is not None:
            annot.scored(results)

    with progress_bar("{task.fields[fps]} frames/s", enabled=True) as bar:
        task = bar.add_task(stem, total=total, fps="-")
        try:
            try:
                for frame, ts in src.frames():
                    if annot is not None:
                        annot.add(n, frame)
                    take(detector.push(frame, sid, ts))
                    n += 1
                    if n % 10 == 0:
                        bar.update(task, completed=n,
                                   fps=f"{n / (time.perf_counter() - t0):.1f}")
                    if max_frames is not None and n >= max_frames:
                        break
            except KeyboardInterrupt:
                interrupted = True
            take(detector.flush(sid))
            bar.update(task, completed=n, fps=f"{n / max(time.perf_counter() - t0, 1e-9):.1f}")
        finally:
            writer.close()
            if annot is not None:
                annot.close()
    elapsed = time.perf_counter() - t0
    events = [e for e in detector.events() if e.stream == sid]
    detector.remove(sid)
    arr = np.asarray(scores, dtype=np.float64)
    files = {"scores_csv": writer.csv_path, "scores_jsonl": writer.jsonl_path}
    files["events"] = write_events(out / f"{stem}.events.json", events, source=src.spec,
                                   frames=n, fps=src.fps, threshold=detector.threshold,
                                   model=detector.manifest.model, interrupted=interrupted)
    if plot and len(arr):
        png = plot_scores(out / f"{stem}.plot.png", arr, threshold=detector.threshold,
                          events=events, fps=src.fps, title=f"{src.spec} - {detector.manifest.model.get('name')}",
                          score_range=detector.manifest.score_range)
        if png is None:
            console.print("plot skipped: matplotlib is not installed (pip install matplotlib)")
        else:
            files["plot"] = png
    if annot is not None:
        files["video"] = annot.path
    return {"source": src.spec, "name": stem, "frames": n, "seconds": elapsed,
            "first_score_s": first_score_s, "events": events, "files": files,
            "max_score": float(arr.max()) if len(arr) else None}, interrupted


def _report(summaries: list[dict], out: Path, top: int) -> None:
    for s in summaries:
        fps = s["frames"] / s["seconds"] if s["seconds"] else 0.0
        console.print(f"[bold]{s['source']}[/bold]: {s['frames']} frames in {s['seconds']:.1f} s "
                      f"({fps:.1f} frames/s), max score "
                      f"{'-' if s['max_score'] is None else format(s['max_score'], '.3f')}, "
                      f"{len(s['events'])} event(s)")
        for kind, path in s["files"].items():  # never wrapped: paths get copied
            console.print(f"  {kind:<12} {path}", soft_wrap=True, highlight=False)
    events = [e for s in summaries for e in s["events"]]
    if not events:
        return
    table = Table(title=f"Top {min(top, len(events))} events (of {len(events)})")
    for col in ("source", "frames", "time (s)", "peak", "class"):
        table.add_column(col)
    for e in sorted(events, key=lambda e: e.peak_score, reverse=True)[:top]:
        when = "-" if e.start_time is None else f"{e.start_time:.1f}-{e.end_time:.1f}"
        table.add_row(e.stream, f"{e.start}-{e.end}", when, f"{e.peak_score:.3f}", e.label or "-")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
