"""One benchmark run: an artifact, a number of streams, a frame source -> one result record.

The Detector runs exactly as in a camera loop (``Detector.process`` with one frame per stream
per tick); only its engines are swapped for timing proxies and its per-frame stages wrapped
(:mod:`edgevad.bench.timing`). Streams are fed in lockstep, so their clips complete on the same
tick and run as one engine batch: the best case for throughput, the worst for one tick's latency.

Phases: load (timed) -> ``warmup`` clips per stream (not in the statistics; the first score gives
the time to first score) -> ``iters`` clips per stream measured -> each engine alone on the
last batch it saw (``isolated``), repeated to get stable numbers for fast heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevad.bench.machine import memory_now, release_freed_memory, reset_peak_memory
from edgevad.bench.sources import FrameSource
from edgevad.bench.stats import LatencyStats
from edgevad.bench.timing import StageClock, clock, cpu_clock, timed_stream_stages, wrap_engines
from edgevad.errors import EdgevadError

__all__ = ["BackendSpec", "BenchError", "BenchSettings", "apply_openvino_options", "bench_artifact",
           "check_artifact_dir", "parse_backends"]

FRAME_STAGES = ("preprocess", "flow", "flow_magnitude", "motion_boxes", "flow_encode")
"""Per-frame work inside ``Detector.process`` (the rest is engines and bookkeeping)."""


class BenchError(EdgevadError):
    """The benchmark cannot run as asked (no artifact there, bad settings)."""


@dataclass(frozen=True)
class BackendSpec:
    """One backend to bench: ``NAME[:PRECISION][@DEVICE]`` (``openvino:bf16@GPU``)."""

    name: str
    precision: str | None = None
    """OpenVINO inference precision (``f32``, ``bf16``, ``f16``)."""
    device: str | None = None
    """OpenVINO device (``CPU``, ``GPU``, ``NPU``, ``AUTO``)."""

    @property
    def label(self) -> str:
        return self.name + (f":{self.precision}" if self.precision else "") + (
            f"@{self.device}" if self.device else "")


def parse_backends(text: str) -> list[BackendSpec]:
    """``"onnxruntime,openvino,openvino:bf16"`` -> three specs, in order (the first is the
    baseline of the ratios); names are checked, aliases (``ort``, ``ov``, ``trt``) resolved."""
    from edgevad.runtime.engines import EngineError, resolve_backend

    specs = []
    for item in (t.strip() for t in (text or "auto").split(",")):
        if not item:
            continue
        rest, _, device = item.partition("@")
        name, _, precision = rest.partition(":")
        try:
            name = resolve_backend(name)
        except EngineError as exc:
            raise BenchError(f"--backend {item!r}: {exc}") from None
        if precision and name not in ("openvino", "auto"):
            raise BenchError(f"--backend {item!r}: a precision after ':' is OpenVINO's (f32, "
                             f"bf16); {name} runs the artifact's graphs as exported")
        specs.append(BackendSpec(name, precision or None, device or None))
    if not specs:
        raise BenchError(f"--backend needs at least one backend, got {text!r}")
    if len({s.label for s in specs}) != len(specs):
        raise BenchError(f"--backend lists a backend twice: {text!r}")
    return specs


def apply_openvino_options(specs: list[BackendSpec], precision: str | None,
                           device: str | None) -> list[BackendSpec]:
    """``--precision`` / ``--device`` given on their own (as ``edgevad run`` takes them): they
    apply to the OpenVINO (and ``auto``) entries that name none; with no such entry they are an
    error rather than silently unused."""
    from dataclasses import replace

    if precision is None and device is None:
        return specs
    takers = [s.name in ("openvino", "auto") for s in specs]
    if not any(takers):
        raise BenchError("--precision and --device are OpenVINO's: add openvino to --backend "
                         f"(got {', '.join(s.label for s in specs)})")
    out = [replace(s, precision=s.precision or precision, device=s.device or device)
           if take else s for s, take in zip(specs, takers)]
    if len({s.label for s in out}) != len(out):
        raise BenchError(f"--backend lists a backend twice once --precision/--device apply: "
                         f"{', '.join(s.label for s in out)}")
    return out


@dataclass(frozen=True)
class BenchSettings:
    backend: str = "auto"
    precision: str | None = None
    """OpenVINO inference precision (None: f32)."""
    device: str | None = None
    """OpenVINO device (None: CPU)."""
    providers: tuple[str, ...] | None = None
    threads: int | None = None
    warmup: int = 2
    """Clips per stream before measuring."""
    iters: int = 20
    """Clips per stream measured."""
    max_batch: int = 16
    isolated: bool = True
    """Also time each engine alone on its last batch."""
    isolated_max_runs: int = 500
    isolated_budget_s: float = 2.0

    def __post_init__(self):
        if self.iters < 1:
            raise BenchError(f"--iters must be >= 1, got {self.iters}")
        if self.warmup < 0:
            raise BenchError(f"--warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {self.threads}")


def check_artifact_dir(path: str | Path) -> Path:
    """The folder, if it looks like an artifact; else a :class:`BenchError` saying what is wrong."""
    folder = Path(path)
    if not folder.exists():
        raise BenchError(f"artifact folder {folder} does not exist")
    if not folder.is_dir():
        raise BenchError(f"{folder} is not a folder: --artifacts takes the folder that "
                         "edgevad export wrote")
    if not (folder / "manifest.json").is_file():
        raise BenchError(f"{folder} is not an artifact folder: it has no manifest.json "
                         "(make one with edgevad export)")
    return folder


def _stats(samples) -> dict:
    return LatencyStats.from_seconds(samples).to_dict() if samples else {}


def _isolated(engine, settings: BenchSettings) -> dict | None:
    """Time ``engine`` alone on the last feeds it saw: up to ``isolated_max_runs`` runs within
    ``isolated_budget_s`` (at least 3), so a 0.05 ms head gets hundreds of samples."""
    feeds = engine.last_feeds
    if feeds is None:
        return None
    engine.inner.run(feeds)
    samples: list[float] = []
    while len(samples) < settings.isolated_max_runs:
        t0 = clock()
        engine.inner.run(feeds)
        samples.append(clock() - t0)
        if len(samples) >= 3 and sum(samples) >= settings.isolated_budget_s:
            break
    first = next(iter(feeds.values()))
    return {**LatencyStats.from_seconds(samples).to_dict(), "batch": int(first.shape[0]),
            "inputs": {k: list(v.shape) for k, v in feeds.items()}}


def bench_artifact(artifact_dir: str | Path, source: FrameSource, streams: int,
                   settings: BenchSettings) -> dict:
    """Run one artifact on ``streams`` streams of ``source``; the result record (see module doc
    and :mod:`edgevad.bench.report` for its fields)."""
    from edgevad.runtime.detector import Detector

    if streams < 1:
        raise BenchError(f"streams must be >= 1, got {streams}")
    folder = check_artifact_dir(artifact_dir)
    release_freed_memory()
    peak_is_per_run = reset_peak_memory()
    mem_before = memory_now()
    sclock = StageClock()
    t_start = clock()
    det = Detector.load(folder, backend=settings.backend, providers=settings.providers,
                        threads=settings.threads, max_batch=settings.max_batch,
                        device=settings.device, precision=settings.precision)
    engine_precisions = {n: getattr(e, "precision", e.stage.precision)
                         for n, e in det.engines.items()}
    engine_graphs = {n: getattr(e, "graph", e.stage.file) for n, e in det.engines.items()}
    load_s = clock() - t_start
    mem_loaded = memory_now()
    engines = wrap_engines(det.engines, sclock)
    g = det.geometry
    ids = [str(i) for i in range(streams)]
    warm_frames = g.clip_len + (settings.warmup - 1) * g.stride if settings.warmup else 0
    measured = max(settings.iters * g.stride, g.clip_len - warm_frames)
    timed_decode = source.kind != "synthetic"
    ticks: list[tuple[float, float, float, float]] = []  # decode, process, engines, frame stages
    cpu_overhead: list[float] = []  # main-thread CPU seconds in process() outside the engines
    first_score = None
    with timed_stream_stages(sclock):
        for t in range(warm_frames + measured):
            if t == warm_frames:
                sclock.clear()
                for eng in engines.values():
                    eng.batches.clear()
            frames, dec = {}, 0.0
            for i, sid in enumerate(ids):
                t0 = clock()
                frames[sid] = source.frame(i)
                d = clock() - t0
                dec += d
                if timed_decode:
                    sclock.add("decode", d)
            e0 = sum(sclock.totals[e.key] for e in engines.values())
            ec0 = sum(sclock.cpu_totals[e.key] for e in engines.values())
            f0 = sum(sclock.totals[k] for k in FRAME_STAGES)
            c0, t0 = cpu_clock(), clock()
            out = det.process(frames)
            p, pc = clock() - t0, cpu_clock() - c0
            e = sum(sclock.totals[e.key] for e in engines.values()) - e0
            cpu_overhead.append(pc - (sum(sclock.cpu_totals[e.key] for e in engines.values())
                                      - ec0))
            f = sum(sclock.totals[k] for k in FRAME_STAGES) - f0
            if first_score is None and any(out.values()):
                first_score = (clock() - t_start, t + 1)
            ticks.append((dec, p, e, f))
    ticks, cpu_overhead = ticks[warm_frames:], cpu_overhead[warm_frames:]

    stages: dict[str, dict] = {}
    if timed_decode:
        stages["decode"] = {"unit": "frame", **_stats(sclock.samples["decode"])}
    for name in FRAME_STAGES:
        if sclock.samples.get(name):
            stages[name] = {"unit": "frame", **_stats(sclock.samples[name])}
    for eng in engines.values():
        if eng.batches:
            stages[eng.key] = {"unit": "call", **_stats(sclock.samples[eng.key]),
                               "batch_mean": sum(eng.batches) / len(eng.batches)}
    clip_ticks = [tk for tk in ticks if tk[2] > 0]
    if clip_ticks:
        stages["model"] = {"unit": "clip batch", **_stats([tk[2] for tk in clip_ticks])}
    stages["post"] = {"unit": "tick", **_stats([max(0.0, p - e - f) for _, p, e, f in ticks])}
    stages["detector_overhead"] = {"unit": "frame",
                                   **_stats([(p - e) / streams for _, p, e, _ in ticks])}
    stages["detector_overhead_cpu"] = {"unit": "frame",
                                       **_stats([c / streams for c in cpu_overhead])}
    if clip_ticks:
        stages["clip_latency"] = {"unit": "clip batch", **_stats([p for _, p, _, _ in clip_ticks])}
    stages["end_to_end"] = {"unit": "tick", **_stats([d + p for d, p, _, _ in ticks])}

    frames_n = len(ticks) * streams
    wall = sum(d + p for d, p, _, _ in ticks)
    engine_s = sum(e for _, _, e, _ in ticks)
    overhead_s = sum(p - e for _, p, e, _ in ticks)
    backbone = engines.get("backbone")
    clips = sum(backbone.batches) if backbone is not None else len(clip_ticks) * streams
    fps = source.fps
    per_stream = frames_n / wall / streams
    isolated = {}
    if settings.isolated:
        for name, eng in engines.items():
            iso = _isolated(eng, settings)
            if iso is not None:
                isolated[name] = iso
    mem_peak = memory_now()
    record = {
        "artifact": str(folder),
        "model": dict(det.manifest.model),
        "head": det.manifest.head,
        "backbones": dict(det.manifest.backbones),
        "precision": det.manifest.precision,
        "stage_precisions": {s.name: s.precision for s in det.manifest.stages},
        "backend": det.backend,
        "backend_spec": BackendSpec(settings.backend, settings.precision, settings.device).label,
        "backend_choice": det.backend_choice.describe() if det.backend_choice else det.backend,
        "engine_precisions": engine_precisions,
        "engine_graphs": engine_graphs,
        "devices": {n: e.device for n, e in engines.items()},
        "streams": streams,
        "clip_len": g.clip_len,
        "stride": g.stride,
        "input_size": list(g.size),
        "frames": frames_n,
        "clips": clips,
        "stages": stages,
        "throughput": {
            "frames_per_s": frames_n / wall,
            "frames_per_s_per_stream": per_stream,
            "clips_per_s": clips / wall,
            "model_frames_per_s": frames_n / engine_s if engine_s > 0 else None,
            "realtime_factor": per_stream / fps if fps else None,
        },
        "detector_overhead_ms_per_frame": overhead_s / frames_n * 1e3,
        "detector_overhead_cpu_ms_per_frame": sum(cpu_overhead) / frames_n * 1e3,
        "load_s": load_s,
        "time_to_first_score_s": None if first_score is None else first_score[0],
        "first_score_after_frames": None if first_score is None else first_score[1],
        "latency_frames": list(det.latency_frames),
        "memory": {"before_load_rss_mb": mem_before["rss_mb"],
                   "loaded_rss_mb": mem_loaded["rss_mb"], "peak_rss_mb": mem_peak["peak_rss_mb"],
                   "added_peak_mb": None if mem_before["rss_mb"] is None else round(
                       mem_peak["peak_rss_mb"] - mem_before["rss_mb"], 1),
                   "peak_scope": "this run" if peak_is_per_run else "process lifetime"},
        "isolated": isolated,
    }
    del det, engines
    release_freed_memory()
    return record
