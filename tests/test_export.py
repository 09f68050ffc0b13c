"""Export to ONNX artifacts: manifest, hashes, parity, symbolic axes, and the failure paths.

One real export (``mil`` on a random R3D-18 at 112, ~10 s on 2 CPU cores) is shared by the module;
the DAM check exports a small DAM head through the plain converter, so the file stays well under a
minute.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from video_files import gradient_frames, write_video

from edgevad.artifact.compare import compare_outputs
from edgevad.artifact.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    load_manifest,
    onnx_signature,
)
from edgevad.errors import EdgevadError, MissingDependencyError, UnknownNameError, WeightsError
from edgevad_export import exporter as exporter_mod
from edgevad_export.exporter import ExportError, export_model
from edgevad_export.onnx_export import (
    DAMAdapter,
    OnnxExportError,
    graph_axes,
    torch_to_onnx,
)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def mil_artifact(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "mil-r3d18"
    assert export_model("mil", out, backbone="r3d18", random_init=True) == out
    return out


@pytest.fixture()
def artifact_copy(mil_artifact, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(mil_artifact, dst)
    return dst


def test_mil_artifact_manifest_verifies(mil_artifact):
    m = load_manifest(mil_artifact, verify=True)
    assert m.schema_version == 1 and m.head == "mil" and m.backbones == {"backbone": "r3d18"}
    assert sorted(m.files) == ["backbone.onnx", "head.onnx", "parity.json"]
    assert _leftovers(mil_artifact.parent) == []
    bb, head = m.stage("backbone"), m.stage("head")
    assert bb.inputs[0].shape == ("batch", 3, 16, 112, 112)
    assert bb.output("features").shape == ("batch", 512)
    assert head.input("features").shape == ("batch", "segments", 512)
    assert head.output("scores").shape == ("batch", "segments")
    assert m.geometry("backbone").size == (112, 112)
    assert m.protocol.mode == "segments" and m.protocol.segments == 32
    assert m.weights["head"].source == "random" and m.weights["backbone"].source == "random"
    assert len(m.weights["head"].state_dict_sha256) == 64
    assert m.calibration is None and m.precision == "fp32"
    assert [(link.source, link.target, link.via) for link in m.links] == [
        ("backbone/features", "head/features", "segments")]
    # round trip
    assert Manifest.from_dict(json.loads((mil_artifact / MANIFEST_FILE).read_text())) == m


def test_mil_parity_and_symbolic_axes(mil_artifact):
    report = json.loads((mil_artifact / "parity.json").read_text())
    assert report["passed"] and report["input"]["source"] == "synthetic"
    assert set(report["checks"]) == {"backbone", "backbone[batch=1]", "head",
                                     "head[batch=1,segments=5]"}
    assert report["checks"]["head"]["max_abs"] <= 1e-4
    axes = graph_axes(mil_artifact / "head.onnx")
    assert axes["features"][:2] == ["batch", "segments"] and axes["scores"] == ["batch", "segments"]
    assert graph_axes(mil_artifact / "backbone.onnx")["clip"][0] == "batch"
    # the graph really runs at another batch and segment count
    sess = ort.InferenceSession(str(mil_artifact / "head.onnx"), providers=["CPUExecutionProvider"])
    (scores,) = sess.run(None, {"features": np.zeros((3, 7, 512), np.float32)})
    assert scores.shape == (3, 7)


def test_tampered_file_is_named(artifact_copy):
    path = artifact_copy / "head.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"file head\.onnx changed since export \(sha256 "
                                            r"expected [0-9a-f]{64}, got [0-9a-f]{64}\)"):
        load_manifest(artifact_copy)
    load_manifest(artifact_copy, verify=False)  # parsing alone does not hash


def test_missing_file_is_named(artifact_copy):
    (artifact_copy / "parity.json").unlink()
    with pytest.raises(ManifestError, match=r"parity\.json .* missing"):
        load_manifest(artifact_copy)


def test_manifest_checks_schema_version_and_signature(artifact_copy):
    path = artifact_copy / MANIFEST_FILE
    original = json.loads(path.read_text())
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="unknown manifest schema_version 99"):
        load_manifest(artifact_copy)
    data = json.loads(json.dumps(original))
    data["edgevad_version"] = "999.0.0"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="newer major version"):
        load_manifest(artifact_copy)
    data = json.loads(json.dumps(original))
    data["stages"][1]["inputs"][0]["name"] = "feats"
    data["links"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"head\.onnx .* declares inputs \['features'\]"):
        load_manifest(artifact_copy)
    (artifact_copy / MANIFEST_FILE).unlink()
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(artifact_copy)


def test_refuses_non_empty_out(mil_artifact):
    with pytest.raises(ExportError, match="not empty"):
        export_model("mil", mil_artifact, backbone="r3d18", random_init=True)
    load_manifest(mil_artifact)  # untouched


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="Cannot write the artifact"):
        export_model("mil", blocker / "art", backbone="r3d18", random_init=True)
    with pytest.raises(ExportError, match="not a folder"):
        export_model("mil", blocker, backbone="r3d18", random_init=True)


def test_failure_leaves_no_temp_dir(tmp_path, monkeypatch):
    def boom(module, examples, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OnnxExportError("injected failure")

    monkeypatch.setattr(exporter_mod, "torch_to_onnx", boom)
    out = tmp_path / "art"
    with pytest.raises(OnnxExportError, match="injected"):
        export_model("mil", out, backbone="r3d18", random_init=True)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_random_weights_are_the_same_on_every_export(mil_artifact):
    """What the exporter builds when random weights are asked for: the first artifact's."""
    from edgevad.artifact import zoo

    first = load_manifest(mil_artifact)
    _, backbone = exporter_mod._backbone("r3d18", None, True)
    _, head = exporter_mod._head(zoo.get_head("mil"), "r3d18", None, True)
    assert backbone.state_dict_sha256 == first.weights["backbone"].state_dict_sha256
    assert head.state_dict_sha256 == first.weights["head"].state_dict_sha256


def test_weights_required_without_random_init(tmp_path):
    with pytest.raises(WeightsError, match="r3d18-kinetics"):  # Hara's weights: user-supplied
        export_model("mil", tmp_path / "a", backbone="r3d18", random_init="head")
    with pytest.raises(EdgevadError, match="r3d18"):  # the shipped head is I3D's, or no weights
        export_model("mil", tmp_path / "b", backbone="r3d18")
    with pytest.raises(UnknownNameError):
        export_model("no-such-head", tmp_path / "c")
    if importlib.util.find_spec("tensorrt") is None:  # a clear message, before any work
        with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
            export_model("mil", tmp_path / "d", backbone="r3d18", random_init=True,
                         formats=("tensorrt",))
    with pytest.raises(ExportError, match="needs calibration data"):
        export_model("mil", tmp_path / "e", backbone="r3d18", random_init=True,
                     precision="int8")
    with pytest.raises(ExportError, match="Calibration data .*nope.mp4 does not exist"):
        export_model("mil", tmp_path / "f", backbone="r3d18", random_init=True,
                     precision="int8", calib=tmp_path / "nope.mp4")
    assert _leftovers(tmp_path) == []


def test_dam_head_graph_keeps_state_explicit(tmp_path):
    from edgevad_export.models.heads.dam import build_dam

    head = DAMAdapter(build_dam("dist", feature_dim=16, hidden=8)).eval()
    cm, pm = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    outputs = ["score", "detection", "clip_attention", "next_prev_map"]
    info = torch_to_onnx(head, (cm, pm), tmp_path / "head.onnx", ["clip_map", "prev_map"], outputs)
    inputs, outs = onnx_signature(info.path)
    assert [t.name for t in inputs] == ["clip_map", "prev_map"]
    assert [t.name for t in outs] == outputs
    assert inputs[1].shape == ("batch", 3, 16) and outs[3].shape == ("batch", 3, 16)
    assert outs[0].shape == ("batch",)
    sess = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    x, y = np.random.default_rng(0).standard_normal((2, 1, 3, 16), dtype=np.float32)
    got = dict(zip(outputs, sess.run(None, {"clip_map": x, "prev_map": y})))
    with torch.no_grad():
        ref = dict(zip(outputs, (t.numpy() for t in head(torch.from_numpy(x),
                                                          torch.from_numpy(y)))))
    assert compare_outputs(ref, got, atol=1e-5), compare_outputs(ref, got).summary()
    np.testing.assert_array_equal(got["next_prev_map"], x)


# --- Reduced precision: calibration, INT8 graphs, the accuracy gate, TensorRT records -----------

OPENVINO_VIEWS = {"openvino-bf16", "openvino-int8", "openvino-fp16", "openvino-mixed"}
"""The gate's OpenVINO measurements (made when openvino is installed)."""


def openvino_available() -> bool:
    from edgevad.runtime.openvino_engine import openvino_available as available

    return available()


def _write_video(path: Path, n: int, seed: int = 0, size=(120, 160)) -> Path:
    """A colour gradient with noise and a moving square that blinks every 10 frames."""
    w = size[1]

    def frames():
        for i, frame in enumerate(gradient_frames(n, size, seed, drift=5, noise=30)):
            x0 = (i * 5 + 20 * seed) % (w - 30)
            frame[40:70, x0:x0 + 30] = 250 if i % 20 < 10 else 10
            yield frame

    return write_video(path, frames())


@pytest.fixture(scope="module")
def int8_data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("int8-data")
    (d / "calib").mkdir()
    (d / "val").mkdir()
    for i in range(2):
        _write_video(d / "calib" / f"c{i}.mp4", 40, seed=i)
    labels = {}
    for i in range(2):
        _write_video(d / "val" / f"v{i}.mp4", 40, seed=5 + i)
        labels[f"v{i}"] = [int(10 <= f < 25) for f in range(40)]
    (d / "val" / "frame_labels.json").write_text(json.dumps(labels))
    return {"calib": d / "calib", "val": d / "val", "sample": _write_video(d / "s.mp4", 48, 9)}


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory, int8_data, mil_artifact) -> Path:
    """The fp32 artifact reduced to int8: the steps export_model runs after the ONNX export."""
    out = tmp_path_factory.mktemp("export-int8") / "mil-r3d18-int8"
    exporter_mod.reduce_artifact(mil_artifact, out, precision="int8", calib=int8_data["calib"],
                                 calib_samples=2, calib_method="minmax",
                                 sample_video=int8_data["sample"], val=int8_data["val"])
    return out


def test_int8_artifact(int8_artifact):
    from edgevad.runtime.engines import OnnxRuntimeEngine
    from edgevad_calibration.quantize import check_symmetric_qdq

    m = load_manifest(int8_artifact)
    bb, head = m.stage("backbone"), m.stage("head")
    assert bb.file == "backbone.int8.onnx" and bb.precision == "int8"
    from edgevad_calibration.quantize import nncf_available

    nncf = openvino_available() and nncf_available()  # OpenVINO's own int8 graph (NNCF)
    ov_int8 = {"int8_openvino": "backbone.int8-openvino.onnx"} if nncf else {}
    assert bb.variants == {"fp32": "backbone.onnx", "fp16": "backbone.fp16.onnx",
                           "int8_qdq": "backbone.int8-qdq.onnx", **ov_int8}
    q = bb.quantization["onnxruntime"]
    assert (q["activations"], q["weights"], q["per_channel"]) == ("uint8", "int8", True)
    assert len(q["excluded_nodes"]) == 1  # the 3x7x7 stem stays fp32
    assert q["method"] == "minmax"
    check_symmetric_qdq(int8_artifact / bb.variants["int8_qdq"])
    assert head.quantization["choice"] in ("fp32", "int8-dynamic", "int8-static")
    assert set(head.quantization["measured"]) >= {"fp32", "int8-dynamic", "int8-static"}
    cal = m.calibration
    assert cal["method"] == "minmax" and cal["clips"] == 2
    src = cal["sets"]["backbone"]
    assert [s["name"] for s in src["sources"]] == ["c0.mp4", "c1.mp4"]
    assert len(src["data_sha256"]) == 64 and src["inputs"] == {"clip": [3, 16, 112, 112]}
    gate = json.loads((int8_artifact / "parity.json").read_text())["reduced_precision"]
    assert gate["passed"] and gate["clips"]["video"] == "s.mp4"
    assert set(gate["score_diff"]) - OPENVINO_VIEWS == {"int8", "fp16"}
    if openvino_available():  # what --backend openvino runs, measured like int8 and fp16
        assert set(gate["score_diff"]) >= {"openvino-bf16", "openvino-int8"}
        ov = gate["score_diff"]["openvino-int8"]
        assert ov["backend"] == "openvino" and ov["ran"] == ["f32"]
        assert ov["max_abs"] < 0.1 and gate["score_diff"]["openvino-bf16"]["max_abs"] < 0.1
        assert set(gate["score_diff"]["openvino-bf16"]["ran"]) <= {"bf16", "f32"}
        from edgevad.runtime.engines import open_engine

        ov_bb = open_engine(int8_artifact, m, bb, "openvino")
        assert ov_bb.graph == ("backbone.int8-openvino.onnx" if nncf else bb.file)
        if nncf:
            assert bb.quantization["openvino"]["kind"].startswith("openvino-nncf")
    assert gate["auc"]["videos"] == 2 and gate["auc"]["frames"] == 80
    assert m.parity["accuracy_gate"]["passed"]
    # the runtime opens the int8 stage like any other
    engine = OnnxRuntimeEngine(int8_artifact / bb.file, bb)
    out = engine.run({"clip": np.zeros((1, 3, 16, 112, 112), np.float32)})
    assert out["features"].shape == (1, 512)


def test_accuracy_gate_fails_past_its_threshold(int8_artifact, int8_data):
    from edgevad_export.accuracy_gate import AccuracyGateError, run_gate
    from edgevad_export.precision import PrecisionOptions

    m = load_manifest(int8_artifact)
    opts = PrecisionOptions(precision="int8", val=str(int8_data["val"]), max_auc_drop=-100.0)
    with pytest.raises(AccuracyGateError, match=r"frame AUC on val falls .* > -100"):
        run_gate(int8_artifact, m, opts, sample_video=int8_data["sample"])


def test_accuracy_gate_on_feature_bags(int8_artifact, int8_data, shared_data):
    """Head-only AUC on the real UCF-Crime dev bags (512-D, as R3D-18's features)."""
    from edgevad_export.accuracy_gate import run_gate
    from edgevad_export.precision import PrecisionOptions

    m = load_manifest(int8_artifact)
    dev = shared_data / "ucf_crime_r3d34" / "dev.npz"
    report = run_gate(int8_artifact, m, PrecisionOptions(precision="int8", val=str(dev),
                                                         max_auc_drop=100.0),
                      sample_video=int8_data["sample"])
    auc = report["auc"]
    assert auc["head_only"] and auc["videos"] == 137  # 151 less the 14 empty bags
    assert 0 <= auc["fp32"] <= 1 and 0 <= auc["int8"] <= 1
    assert auc["drop_points"] == pytest.approx(100 * (auc["fp32"] - auc["int8"]), abs=1e-3)
    assert set(auc["distinct_scores"]) == {"fp32", "int8"}


def test_calibration_set_of_wrong_geometry(tmp_path, int8_data):
    from edgevad.artifact import zoo
    from edgevad_calibration import CalibrationError, build_from_videos

    cset = build_from_videos([int8_data["sample"]], zoo.get_backbone("i3d").geometry, samples=1)
    path = cset.save(tmp_path / "i3d.npz")
    with pytest.raises(CalibrationError, match=r"does not match the backbone .*size: set "
                                               r"\[224, 224\], stage \[112, 112\]"):
        export_model("mil", tmp_path / "a", backbone="r3d18", random_init=True,
                     precision="int8", calib=path)  # refused before the export starts
    assert _leftovers(tmp_path) == [] and not (tmp_path / "a").exists()


def test_engines_listed_and_checked_without_tensorrt(int8_artifact, tmp_path):
    """Engines built by a recording stand-in for TensorRT: listed and hashed in the manifest,
    verified by load_manifest, refused by the runtime when TensorRT is missing or they changed."""
    import importlib.util
    from types import SimpleNamespace

    from edgevad.runtime.engine_meta import EngineMismatchError, GpuInfo
    from edgevad.runtime.tensorrt_engine import open_tensorrt_engine, resolve_engine
    from edgevad_calibration.tensorrt_build import build_artifact_engines

    art = tmp_path / "art"
    shutil.copytree(int8_artifact, art)

    class Stub:  # the documented TensorRT 10 calls, returning a fixed plan
        def __init__(self, *a):
            pass

        def __getattr__(self, name):
            return lambda *a, **k: {"parse_from_file": True, "build_serialized_network":
                                    b"PLAN-" + str(a[:1]).encode()}.get(name, Stub())

    trt = SimpleNamespace(__version__="10.3.0", Logger=Stub, Builder=Stub, OnnxParser=Stub,
                          BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8"),
                          MemoryPoolType=SimpleNamespace(WORKSPACE="ws"))
    Stub.WARNING = "w"
    gpu = GpuInfo("Orin", (8, 7))
    m = build_artifact_engines(art, ["int8", "fp16"], trt=trt, gpu=gpu, verify=True)
    m = load_manifest(art)  # hashes of engines and metadata verified
    bb = m.stage("backbone")
    assert [e["precision"] for e in bb.engines] == ["int8", "fp16"]
    assert bb.engines[0]["graph"] == "backbone.int8-qdq.onnx"
    assert m.export["tensorrt"]["gpu"]["compute_capability"] == [8, 7]
    path, meta = resolve_engine(art, m, bb)
    assert path.name == "backbone.int8.engine" and meta.gpu == gpu
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
            open_tensorrt_engine(art, m, bb)
    (art / "backbone.int8.engine").write_bytes(b"other")
    with pytest.raises(EngineMismatchError, match="changed since it was built"):
        resolve_engine(art, m, bb)


def test_bad_checkpoints_are_named(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(np.random.default_rng(0).bytes(1000))
    (tmp_path / "ckdir").mkdir()
    (tmp_path / "ckdir" / "checkpoint.json").write_text(json.dumps(
        {"format": "edgevad-head-checkpoint", "format_version": 1, "head": "mil",
         "weights_file": "head.pt"}))
    cases = [(tmp_path / "missing.pt", "does not exist"),
             (tmp_path / "corrupt.pt", "truncated, corrupt or not a PyTorch checkpoint"),
             (tmp_path / "ckdir", "")]
    for checkpoint, message in cases:
        with pytest.raises(Exception, match=message) as err:
            export_model("mil", tmp_path / "out", backbone="r3d18", random_init="backbone",
                         checkpoint=checkpoint)
        assert "ckdir" in str(err.value) or checkpoint.name in str(err.value)
        assert isinstance(err.value, (WeightsError, ExportError)) or "Checkpoint" in type(
            err.value).__name__
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_fp16_artifact(mil_artifact, int8_data, tmp_path):
    out = exporter_mod.reduce_artifact(mil_artifact, tmp_path / "fp16", precision="fp16",
                                       sample_video=int8_data["sample"])
    m = load_manifest(out)
    assert m.precision == "fp16" and m.calibration is None
    assert m.stage("backbone").file == "backbone.fp16.onnx"
    assert m.stage("backbone").variants["fp32"] == "backbone.onnx"
    gate = m.parity["accuracy_gate"]
    assert gate["passed"] and set(gate["score_diff"]) - OPENVINO_VIEWS == {"fp16"}
    with pytest.raises(ExportError, match="not a plain fp32 artifact"):
        exporter_mod.reduce_artifact(out, tmp_path / "again", precision="int8",
                                     sample_video=int8_data["sample"])


def test_dam_head_precision_is_measured(tmp_path):
    """An LSTM head: fp32 or dynamic int8, whichever measures faster within the score tolerance
    (no static candidate: DAM heads get no calibration set)."""
    from edgevad.artifact.manifest import StageSpec, TensorSpec
    from edgevad_calibration.quantize import Int8Config
    from edgevad_export.models.heads.dam import build_dam
    from edgevad_export.precision import HEAD_SCORE_TOLERANCE, _choose_head, _Sessions

    torch.manual_seed(0)
    head = DAMAdapter(build_dam("dist", feature_dim=64, hidden=64)).eval()
    outputs = ["score", "detection", "clip_attention", "next_prev_map"]
    x = torch.randn(1, 3, 64)
    torch_to_onnx(head, (x, x), tmp_path / "head.onnx", ["clip_map", "prev_map"], outputs)
    stage = StageSpec("head", "head.onnx", "head",
                      (TensorSpec("clip_map", ("batch", 3, 64)),
                       TensorSpec("prev_map", ("batch", 3, 64))),
                      tuple(TensorSpec(n, ("batch",)) for n in outputs))
    rng = np.random.default_rng(0)
    feeds = {"clip_map": rng.standard_normal((1, 3, 64), dtype=np.float32),
             "prev_map": rng.standard_normal((1, 3, 64), dtype=np.float32)}
    file, record = _choose_head(tmp_path, stage, None, _Sessions(tmp_path), feeds, Int8Config())
    assert set(record["measured"]) == {"fp32", "int8-dynamic"}
    assert record["choice"] in record["measured"] and file == record["measured"][
        record["choice"]]["file"]
    assert record["measured"]["int8-dynamic"]["max_score_diff"] < 0.1
    assert all(m["median_ms"] > 0 for m in record["measured"].values())
    kept = {p.name for p in tmp_path.iterdir()}
    assert "head.onnx" in kept and (record["choice"] == "int8-dynamic") == (
        "head.int8-dynamic.onnx" in kept)
    assert record["tolerance"] == HEAD_SCORE_TOLERANCE


def test_dynamic_int8_of_an_exported_dam_head(tmp_path):
    """The exporter's graphs carry intermediate shapes that broke the quantizer's inference."""
    from edgevad_calibration.quantize import quantize_dynamic_int8
    from edgevad_export.models.heads.dam import build_dam

    torch.manual_seed(0)
    head = DAMAdapter(build_dam("dist", feature_dim=96, hidden=32)).eval()
    outputs = ["score", "detection", "clip_attention", "next_prev_map"]
    ex = (torch.randn(2, 7, 96), torch.randn(2, 7, 96))
    torch_to_onnx(head, ex, tmp_path / "head.onnx", ["clip_map", "prev_map"], outputs)
    quantize_dynamic_int8(tmp_path / "head.onnx", tmp_path / "head.int8.onnx")
    feeds = {n: np.random.default_rng(1).standard_normal((3, 7, 96), dtype=np.float32)
             for n in ("clip_map", "prev_map")}
    fp32 = ort.InferenceSession(str(tmp_path / "head.onnx")).run(["score"], feeds)[0]
    int8 = ort.InferenceSession(str(tmp_path / "head.int8.onnx")).run(["score"], feeds)[0]
    assert np.abs(fp32 - int8).max() < 0.05
