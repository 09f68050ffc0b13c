"""``edgevad bench``: percentile arithmetic, the JSON document, ``--compare`` on tiny artifacts,
clear errors. No test asserts a speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgevad.bench.report import ReportError, validate_document
from edgevad.bench.runner import BenchError
from edgevad.bench.stats import LatencyStats, percentile
from edgevad.bench.timing import StageClock, TimedEngine, timed_stream_stages

runner = CliRunner()


# --- percentiles ----------------------------------------------------------------------------------

def test_percentiles_of_one_to_hundred():
    xs = list(range(1, 101))
    assert percentile(xs, 50) == pytest.approx(50.5)
    assert percentile(xs, 90) == pytest.approx(90.1)
    assert percentile(xs, 95) == pytest.approx(95.05)
    assert percentile(xs, 99) == pytest.approx(99.01)
    assert percentile(xs, 0) == 1 and percentile(xs, 100) == 100


def test_percentiles_interpolate_and_ignore_order():
    assert percentile([10.0, 0.0], 25) == pytest.approx(2.5)
    assert percentile([7.0], 99) == 7.0
    rng = np.random.default_rng(0)
    xs = rng.exponential(size=57).tolist()
    for q in (50, 90, 95, 99):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_refuses_empty_and_bad_q():
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 101)


def test_latency_stats_in_milliseconds():
    st = LatencyStats.from_seconds([0.004, 0.001, 0.003, 0.002])
    assert st.count == 4 and st.total_s == pytest.approx(0.010)
    assert st.mean_ms == pytest.approx(2.5) and st.p50_ms == pytest.approx(2.5)
    assert st.min_ms == pytest.approx(1.0) and st.max_ms == pytest.approx(4.0)
    assert st.p90_ms == pytest.approx(3.7)


# --- timing proxies ------------------------------------------------------------------------------

def test_timed_engine_passes_outputs_through_and_records_batches(tiny_artifact):
    from edgevad.runtime.detector import Detector

    det = Detector.load(tiny_artifact("mil"))
    inner = det.engines["backbone"]
    timed = TimedEngine(inner, StageClock())
    x = np.random.default_rng(1).random((3, 3, 4, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(timed.run({"clip": x})["features"],
                                  inner.run({"clip": x})["features"])
    assert timed.batches == [3] and len(timed.clock.samples["engine:backbone"]) == 1
    assert (timed.stage, timed.backend, timed.device) == (inner.stage, inner.backend, inner.device)
    assert timed.input_names == ["clip"] and timed.output_names == inner.output_names


def test_stream_stage_timers_are_removed_afterwards():
    from edgevad.runtime import stream

    before = (stream.preprocess_frame, stream.encode_flow, stream.motion_boxes,
              stream.FlowEstimator)
    with timed_stream_stages(StageClock()):
        assert stream.preprocess_frame is not before[0]
    assert (stream.preprocess_frame, stream.encode_flow, stream.motion_boxes,
            stream.FlowEstimator) == before


# --- the command ----------------------------------------------------------------------------------

def _bench(*args):
    from edgevad.cli.main import app

    return runner.invoke(app, ["bench", "--size", "64x48", "--warmup", "1", "--iters", "3",
                               "--no-reference", *map(str, args)])


@pytest.fixture(scope="module")
def compared(tiny_artifact, tmp_path_factory):
    """``--compare`` of a MIL and a DMRM tiny artifact on 1 and 2 streams: (result, document,
    the two artifacts as the document names them: without this machine's folders)."""
    from edgevad.artifact.records import distinct_paths

    a, b = tiny_artifact("mil"), tiny_artifact("dmrm")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    r = _bench("--artifacts", a, "--compare", b, "--streams", "1,2", "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    names = distinct_paths([a, b])
    return r, json.loads(out.read_text()), (names[str(a)], names[str(b)])


def test_compare_runs_both_artifacts_at_each_stream_count(compared):
    r, doc, (a, b) = compared
    assert [(run["artifact"], run["streams"]) for run in doc["runs"]] == [
        (a, 1), (a, 2), (b, 1), (b, 2)]
    for run in doc["runs"]:
        n = run["streams"]
        assert run["frames"] == 3 * 4 * n and run["clips"] == 3 * n  # iters x stride x streams
        assert run["stages"]["engine:backbone"]["batch_mean"] == n  # lockstep: one batch
        assert run["stages"]["engine:backbone"]["count"] == 3
        assert run["stages"]["preprocess"]["count"] == run["frames"]
        assert run["stages"]["detector_overhead"]["count"] == 3 * 4
        assert run["isolated"]["head"]["batch"] == n
        assert run["first_score_after_frames"] == 4
    dmrm = doc["runs"][2]["stages"]
    assert {"flow", "engine:motion", "motion_boxes"} <= set(dmrm)
    assert "Comparison" in r.output and "Scaling" in r.output


def test_compare_ratios_are_against_the_first_artifact(compared):
    _, doc, (a, b) = compared
    fps = {(run["artifact"], run["streams"]): run["throughput"]["frames_per_s"]
           for run in doc["runs"]}
    for c in doc["comparisons"]:
        expected = fps[(c["artifact"], c["streams"])] / fps[(a, c["streams"])]
        assert c["ratio_frames_per_s"] == pytest.approx(expected)
    assert [c["ratio_frames_per_s"] for c in doc["comparisons"][:2]] == [1.0, 1.0]


def test_document_has_machine_versions_settings_and_validates(compared):
    _, doc, _ = compared
    assert validate_document(doc) is doc
    assert doc["machine"]["logical_cores"] >= 1 and doc["machine"]["cpu_model"]
    assert {"python", "edgevad", "onnxruntime", "numpy", "opencv"} <= set(doc["versions"])
    assert doc["settings"]["streams"] == [1, 2] and doc["settings"]["iters"] == 3
    assert doc["settings"]["source"] == {"kind": "synthetic", "fps": 30.0, "width": 64,
                                         "height": 48}
    st = doc["runs"][0]["stages"]["end_to_end"]
    assert st["p50_ms"] <= st["p90_ms"] <= st["p95_ms"] <= st["p99_ms"] <= st["max_ms"]


def test_document_check_names_what_is_wrong(compared):
    _, doc, _ = compared
    broken = json.loads(json.dumps(doc))
    del broken["runs"][1]["throughput"]["frames_per_s"]
    with pytest.raises(ReportError, match=r"runs\[1\].throughput: missing 'frames_per_s'"):
        validate_document(broken)
    broken = json.loads(json.dumps(doc))
    broken["runs"][0]["stages"]["preprocess"]["p99_ms"] = "fast"
    with pytest.raises(ReportError, match="p99_ms"):
        validate_document(broken)
    with pytest.raises(ReportError, match="not an edgevad-bench"):
        validate_document({**doc, "format": "other"})


def test_eager_reference_explains_a_model_it_cannot_rebuild(tiny_artifact):
    pytest.importorskip("torch")
    from edgevad.bench.reference import eager_reference

    ref = eager_reference(tiny_artifact("mil"), batch=1, warmup=0, iters=1)
    assert "kind" not in ref and "Unknown backbone 'tiny'" in ref["skipped"]


def test_bench_never_imports_torch(tiny_artifact):
    code = ("import sys\nfrom typer.testing import CliRunner\nimport edgevad.cli.main\n"
            f"r = CliRunner().invoke(edgevad.cli.main.app, ['bench', '--artifacts', "
            f"{str(tiny_artifact('mil'))!r}, '--iters', '1', '--warmup', '0', "
            "'--no-reference', '--size', '32x24'])\n"
            "assert r.exit_code == 0, r.output\nprint('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


# --- bad input ------------------------------------------------------------------------------------

def test_missing_artifact_folder_is_a_clear_error(tmp_path):
    r = _bench("--artifacts", tmp_path / "nope")
    assert r.exit_code != 0 and isinstance(r.exception, BenchError)
    assert "does not exist" in str(r.exception) and "nope" in str(r.exception)


def test_folder_without_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "backbone.onnx").write_bytes(b"not a model")
    r = _bench("--artifacts", tmp_path)
    assert r.exit_code != 0 and "no manifest.json" in str(r.exception)


def test_tampered_artifact_is_refused_naming_the_file(tiny_artifact, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_artifact("mil"), bad)
    with open(bad / "head.onnx", "ab") as f:
        f.write(b"\0")
    r = _bench("--artifacts", bad)
    assert r.exit_code != 0 and "head.onnx" in str(r.exception)


def test_bad_streams_and_iters_are_refused(tiny_artifact):
    r = _bench("--artifacts", tiny_artifact("mil"), "--streams", "two")
    assert r.exit_code != 0 and "--streams" in str(r.exception)
    r = _bench("--artifacts", tiny_artifact("mil"), "--streams", "0")
    assert r.exit_code != 0 and ">= 1" in str(r.exception)
    r = _bench("--artifacts", tiny_artifact("mil"), "--source", "missing.mp4")
    assert r.exit_code != 0 and "neither 'synthetic' nor a video file" in str(r.exception)


# --- several backends in one run -----------------------------------------------------------------

def test_backends_side_by_side_with_ratios_to_the_first(tiny_artifact, tmp_path):
    pytest.importorskip("openvino")
    a = tiny_artifact("dam")
    out = tmp_path / "b.json"
    r = _bench("--artifacts", a, "--backend", "onnxruntime,openvino,ov:bf16", "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    doc = json.loads(out.read_text())
    assert [run["backend_spec"] for run in doc["runs"]] == ["onnxruntime", "openvino",
                                                            "openvino:bf16"]
    assert [run["backend"] for run in doc["runs"]] == ["onnxruntime", "openvino", "openvino"]
    assert doc["settings"]["backends"] == ["onnxruntime", "openvino", "openvino:bf16"]
    ov32, ov16 = doc["runs"][1], doc["runs"][2]
    assert set(ov32["engine_precisions"].values()) == {"f32"}
    assert set(ov16["engine_precisions"].values()) <= {"bf16", "f32"}  # f32 where no bf16
    assert all("OpenVINO" in d for d in ov32["devices"].values())
    base = doc["runs"][0]["throughput"]["frames_per_s"]
    for c, run in zip(doc["comparisons"], doc["runs"]):
        assert c["backend"] == run["backend_spec"]
        assert c["ratio_frames_per_s"] == pytest.approx(run["throughput"]["frames_per_s"] / base)
    assert doc["comparisons"][0]["ratio_frames_per_s"] == 1.0
    assert "Comparison" in r.output and "openvino:bf16" in r.output


def test_precision_option_applies_to_the_openvino_entries(tiny_artifact, tmp_path):
    """``--precision bf16`` as ``edgevad run`` takes it: the OpenVINO entries that name no
    precision get it, ONNX Runtime's and ``openvino:f32`` keep theirs; the run records it."""
    pytest.importorskip("openvino")
    out = tmp_path / "b.json"
    r = _bench("--artifacts", tiny_artifact("mil"), "--backend", "onnxruntime,openvino:f32,ov",
               "--precision", "bf16", "--no-isolated", "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    doc = json.loads(out.read_text())
    assert [run["backend_spec"] for run in doc["runs"]] == ["onnxruntime", "openvino:f32",
                                                            "openvino:bf16"]
    assert set(doc["runs"][2]["engine_precisions"].values()) <= {"bf16", "f32"}
    assert doc["runs"][2]["engine_graphs"] == {"backbone": "backbone.onnx", "head": "head.onnx"}


def test_bad_backend_lists_are_refused(tiny_artifact):
    for spec, msg in (("onnxruntime,cuda", "unknown backend"), ("ort,ort", "twice"),
                      ("onnxruntime:bf16", "OpenVINO's")):
        r = _bench("--artifacts", tiny_artifact("mil"), "--backend", spec)
        assert r.exit_code != 0 and msg in str(r.exception), r.exception
    for extra, msg in ((["--backend", "onnxruntime", "--precision", "bf16"], "OpenVINO's"),
                       (["--backend", "openvino:bf16,openvino", "--precision", "bf16"], "twice")):
        r = _bench("--artifacts", tiny_artifact("mil"), *extra)
        assert r.exit_code != 0 and msg in str(r.exception), r.exception
