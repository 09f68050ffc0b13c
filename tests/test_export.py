"""Export to ONNX artifacts: manifest, hashes, parity, symbolic axes, and the failure paths.

One real export (``mil`` on a random R3D-18 at 112, ~10 s on 2 CPU cores) is shared by the module;
the DAM check exports a small DAM head through the plain converter, so the file stays well under a
minute.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgevad_export import exporter as exporter_mod
from edgevad_export.exporter import ExportError, export_model
from edgevad_export.onnx_export import (
    DAMAdapter,
    OnnxExportError,
    graph_axes,
    torch_to_onnx,
)

from edgevad.compare import compare_outputs
from edgevad.errors import UnknownNameError, WeightsError
from edgevad.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    load_manifest,
    onnx_signature,
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


def test_weights_required_without_random_init(tmp_path):
    with pytest.raises(WeightsError, match="random"):
        export_model("mil", tmp_path / "a", backbone="r3d18", random_init="backbone")
    with pytest.raises(WeightsError):
        export_model("mil", tmp_path / "b", backbone="r3d18")
    with pytest.raises(UnknownNameError):
        export_model("no-such-head", tmp_path / "c")
    with pytest.raises(ExportError, match="not available"):
        export_model("mil", tmp_path / "d", backbone="r3d18", random_init=True,
                     formats=("tensorrt",))
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
