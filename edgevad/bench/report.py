"""The benchmark document: JSON with machine, versions and settings; its check; the rich tables.

Document (``format: edgevad-bench``, ``schema_version: 1``)::

    machine      cpu_model, logical/physical/usable cores, memory, platform, load_average
    versions     python, edgevad, onnxruntime, numpy, opencv (tensorrt, torch when installed)
    settings     backend, threads, streams [..], source {kind, fps, width, height[, path]},
                 warmup, iters, max_batch
    runs         one record per artifact x stream count (edgevad.bench.runner): stages
                 {name: {unit, count, mean_ms, p50_ms, p90_ms, p95_ms, p99_ms, max_ms, ...}},
                 throughput, detector_overhead_ms_per_frame, time_to_first_score_s, memory, ...
    references   PyTorch eager records (edgevad.bench.reference), or {skipped: why}; artifacts
                 of the same model share one measurement (``same_as`` names the first)
    comparisons  per run: ratios of frames/s to the first run (first artifact on the first
                 backend) at the same stream count and of model frames/s to the eager reference
                 at the same batch

Times are milliseconds (``*_ms``) or seconds (``*_s``); memory is MiB of resident set.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgevad.errors import EdgevadError

__all__ = ["FORMAT", "SCHEMA_VERSION", "ReportError", "build_document", "compare_runs",
           "print_report", "validate_document", "write_document"]

FORMAT = "edgevad-bench"
SCHEMA_VERSION = 1

STAT_KEYS = ("count", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")
_NUM = (int, float)
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "document": {"format": str, "schema_version": int, "created": str, "machine": dict,
                 "versions": dict, "settings": dict, "runs": list, "references": list,
                 "comparisons": list},
    "machine": {"cpu_model": str, "logical_cores": int},
    "versions": {"python": str, "edgevad": str, "onnxruntime": str, "numpy": str, "opencv": str},
    "settings": {"backend": str, "streams": list, "source": dict, "warmup": int, "iters": int},
    "run": {"artifact": str, "precision": str, "backend": str, "streams": int, "frames": int,
            "clips": int, "stages": dict, "throughput": dict,
            "detector_overhead_ms_per_frame": _NUM, "load_s": _NUM, "memory": dict},
    "throughput": {"frames_per_s": _NUM, "frames_per_s_per_stream": _NUM, "clips_per_s": _NUM},
    "memory": {"peak_rss_mb": _NUM},
}


class ReportError(EdgevadError):
    """A benchmark document does not have the expected form."""


def _check(d: object, kind: str, where: str) -> None:
    if not isinstance(d, dict):
        raise ReportError(f"{where}: expected an object, got {type(d).__name__}")
    for key, typ in _REQUIRED[kind].items():
        if key not in d:
            raise ReportError(f"{where}: missing {key!r}")
        if not isinstance(d[key], typ) or isinstance(d[key], bool):
            raise ReportError(f"{where}.{key}: expected {typ}, got {type(d[key]).__name__}")


def validate_document(doc: dict) -> dict:
    """Raise :class:`ReportError` naming the first field that is missing or of the wrong type."""
    _check(doc, "document", "document")
    if doc["format"] != FORMAT or doc["schema_version"] != SCHEMA_VERSION:
        raise ReportError(f"not an {FORMAT} v{SCHEMA_VERSION} document "
                          f"({doc['format']!r} v{doc['schema_version']!r})")
    for kind in ("machine", "versions", "settings"):
        _check(doc[kind], kind, kind)
    for i, run in enumerate(doc["runs"]):
        where = f"runs[{i}]"
        _check(run, "run", where)
        _check(run["throughput"], "throughput", f"{where}.throughput")
        _check(run["memory"], "memory", f"{where}.memory")
        for name, st in run["stages"].items():
            for key in STAT_KEYS:
                if not isinstance(st.get(key), _NUM):
                    raise ReportError(f"{where}.stages[{name!r}]: missing number {key!r}")
    return doc


def _model_fps(run: dict) -> float | None:
    return run["throughput"].get("model_frames_per_s")


def _key(run: dict) -> tuple[str, str]:
    """A run's artifact and backend (runs before backends were compared carry no spec)."""
    return run["artifact"], run.get("backend_spec", run["backend"])


def compare_runs(runs: list[dict], references: list[dict]) -> list[dict]:
    """Ratios against the first run's artifact and backend at the same stream count and against
    the eager reference of the same artifact at the same batch (= streams, clips run in
    lockstep)."""
    first = _key(runs[0]) if runs else None
    base = {r["streams"]: r for r in runs if _key(r) == first}
    eager = {(ref["artifact"], ref["batch"]): ref for ref in references if "kind" in ref}
    out = []
    for run in runs:
        b = base.get(run["streams"])
        row = {"artifact": run["artifact"], "backend": _key(run)[1],
               "precision": run["precision"], "streams": run["streams"],
               "frames_per_s": run["throughput"]["frames_per_s"],
               "model_frames_per_s": _model_fps(run)}
        if b is not None:
            row["ratio_frames_per_s"] = run["throughput"]["frames_per_s"] / b["throughput"][
                "frames_per_s"]
            run_fps, base_fps = _model_fps(run), _model_fps(b)
            if run_fps and base_fps:
                row["ratio_model_frames_per_s"] = run_fps / base_fps
        ref = eager.get((run["artifact"], run["streams"]))
        if ref is not None and _model_fps(run):
            row["eager_model_frames_per_s"] = ref["model_frames_per_s"]
            row["speedup_vs_eager"] = _model_fps(run) / ref["model_frames_per_s"]
        out.append(row)
    return out


def build_document(machine: dict, versions: dict, settings: dict, runs: list[dict],
                   references: list[dict]) -> dict:
    doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine, "versions": versions, "settings": settings, "runs": runs,
           "references": references, "comparisons": compare_runs(runs, references)}
    return validate_document(doc)


def write_document(doc: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from edgevad.artifact.records import portable_fields  # paths as records name them (records.py)

    doc = portable_fields(doc, ("artifact", "same_as", "path"))
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


# --- tables --------------------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _name(run: dict) -> str:
    return Path(run["artifact"]).name


def _backend(run: dict) -> str:
    """The backend as run, with the precision the engines really used where it was chosen
    (OpenVINO's read-back inference precision)."""
    ran = sorted({str(p) for p in (run.get("engine_precisions") or {}).values()})
    label = run.get("backend_spec") or run["backend"]
    if run.get("backend") not in label:
        label = f"{label}->{run['backend']}"
    return label + (f" ({'/'.join(ran)})" if run["backend"] == "openvino" and ran else "")


def _stage_table(run: dict) -> Table:
    t = Table(title=f"{_name(run)}: {run['precision']} on {_backend(run)}, "
                    f"{run['streams']} stream(s), {run['frames']} frames, {run['clips']} clips",
              title_justify="left")
    for col in ("stage", "per", "n", "mean", "p50", "p90", "p95", "p99", "max ms", "batch"):
        t.add_column(col, justify="left" if col in ("stage", "per") else "right")

    def row(name, st, per, batch=None):
        t.add_row(name, per, str(st["count"]), *(_ms(st[k]) for k in
                  ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")),
                  "" if batch is None else _f(batch, 1))

    for name, st in run["stages"].items():
        row(name, st, st.get("unit", ""), st.get("batch_mean"))
    for name, st in run.get("isolated", {}).items():
        row(f"alone:{name}", st, "call", st.get("batch"))
    return t


def _summary(run: dict, fps: float | None) -> str:
    tp, mem = run["throughput"], run["memory"]
    ov = run["stages"].get("detector_overhead", {})
    rtf = tp.get("realtime_factor")
    parts = [f"[bold]{tp['frames_per_s']:.1f} frames/s[/bold] ({tp['frames_per_s_per_stream']:.1f}"
             f" per stream), {tp['clips_per_s']:.2f} clips/s",
             f"engines alone {_f(tp.get('model_frames_per_s'))} frames/s",
             f"real-time x{_f(rtf, 2)} at {_f(fps)} fps" if rtf else "",
             f"Detector overhead {run['detector_overhead_ms_per_frame']:.3f} ms/frame "
             f"(p50 {_ms(ov.get('p50_ms'))}; CPU "
             f"{_f(run.get('detector_overhead_cpu_ms_per_frame'), 3)})",
             f"first score after {_f(run.get('time_to_first_score_s'), 2)} s "
             f"(load {run['load_s']:.2f} s, {run.get('first_score_after_frames')} frames)",
             f"peak RSS {_f(mem['peak_rss_mb'])} MiB ({mem.get('peak_scope', '')}; "
             f"+{_f(mem.get('added_peak_mb'))} over the RSS before loading)"]
    return "  " + "; ".join(p for p in parts if p)


def _memory(mem: dict) -> str:
    return f"{_f(mem['peak_rss_mb'], 0)} (+{_f(mem.get('added_peak_mb'), 0)})"


def _comparison_table(doc: dict) -> Table:
    t = Table(title="Comparison (ratios: frames/s and engines-only frames/s against the first "
                    "run at the same streams; engines-only frames/s against PyTorch eager)",
              title_justify="left")
    for col in ("artifact", "backend", "precision", "streams", "frames/s", "engines frames/s",
                "clip p50 ms", "overhead ms/frame", "peak (+added) MiB", "x first",
                "engines x first", "x eager"):
        t.add_column(col, justify="left" if col in ("artifact", "backend", "precision")
                     else "right")
    for c, run in zip(doc["comparisons"], doc["runs"]):
        clip = run["stages"].get("clip_latency", {}).get("p50_ms")
        t.add_row(_name(run), _backend(run), run["precision"], str(run["streams"]),
                  _f(c["frames_per_s"]),
                  _f(c.get("model_frames_per_s")), _ms(clip),
                  f"{run['detector_overhead_ms_per_frame']:.3f}",
                  _memory(run["memory"]),
                  _f(c.get("ratio_frames_per_s"), 2),
                  _f(c.get("ratio_model_frames_per_s"), 2),
                  _f(c.get("speedup_vs_eager"), 2))
    for ref in doc["references"]:
        if "kind" in ref and "same_as" not in ref:
            m = ref["stages"]["eager:model"]
            t.add_row(f"{Path(ref['artifact']).name}", "PyTorch eager", "fp32",
                      str(ref["batch"]), "-", _f(ref["model_frames_per_s"]), _ms(m["p50_ms"]),
                      "-", "-", "-", "-", "1.00")
    return t


def _scaling_table(doc: dict) -> Table:
    t = Table(title="Scaling with streams (lockstep: clips of all streams in one batch)",
              title_justify="left")
    for col in ("artifact", "backend", "streams", "frames/s", "per stream", "real-time x",
                "clip p50 ms", "ms per frame"):
        t.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
    for run in doc["runs"]:
        tp = run["throughput"]
        t.add_row(_name(run), _backend(run), str(run["streams"]), _f(tp["frames_per_s"]),
                  _f(tp["frames_per_s_per_stream"]), _f(tp.get("realtime_factor"), 2),
                  _ms(run["stages"].get("clip_latency", {}).get("p50_ms")),
                  _ms(1e3 / tp["frames_per_s"]))
    return t


def print_report(doc: dict, console: Console | None = None) -> None:
    console = console or Console()
    m, v = doc["machine"], doc["versions"]
    cores = m["usable_cores"] or m["logical_cores"]
    isa = ", ".join(m.get("cpu_features") or []) or "-"
    console.print(f"[bold]edgevad bench[/bold] on {m['cpu_model']} [{isa}] ({cores} usable cores, "
                  f"load {m.get('load_average')}); edgevad {v['edgevad']}, "
                  f"onnxruntime {v['onnxruntime']}, "
                  + (f"openvino {v['openvino']}, " if v.get("openvino") else "")
                  + f"numpy {v['numpy']}, opencv {v['opencv']}, python {v['python']}")
    src = doc["settings"]["source"]
    fps = src.get("fps")
    for run in doc["runs"]:
        console.print(_stage_table(run))
        console.print(_summary(run, fps))
    for ref in doc["references"]:
        if "skipped" in ref and "same_as" not in ref:
            console.print(f"[yellow]PyTorch eager reference skipped:[/yellow] {ref['skipped']}")
    if len({_key(r) for r in doc["runs"]}) > 1 or any("kind" in r for r in doc["references"]):
        console.print(_comparison_table(doc))
    if len({r["streams"] for r in doc["runs"]}) > 1:
        console.print(_scaling_table(doc))
