"""`edgevad export --model joint`: the shipped UCF-Crime head behind the UCF-Crime R3D-34 backbone.

The R3D-34 Kinetics weights are not on the package registry, so a plain export must stop with a
message that says which file to get and how to pass it, and leave nothing behind; with the file
given (``--backbone-weights``), the artifact must carry the head's protocol (the
``ucf-crime-r3d34`` segment loop included) so the Detector accepts it and emits class labels.
One R3D-34 export (~30 s on 2 cores) is shared by the module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import stand_in_weights

from edgevad import Detector
from edgevad.artifact import protocols, ucf_crime, zoo
from edgevad.artifact.manifest import load_manifest
from edgevad.errors import WeightsError
from edgevad.fetch.hashing import sha256_file
from edgevad_export.exporter import export_model

SPEC = zoo.get_head("joint")


@pytest.fixture(scope="module")
def hara_file(tmp_path_factory):
    """A stand-in for the user's resnet-34-kinetics.pth (the real file is not here)."""
    return stand_in_weights.hara_file(
        tmp_path_factory.mktemp("weights") / "resnet-34-kinetics.pth", "r3d34-ucf-crime")


@pytest.fixture(scope="module")
def joint_artifact(tmp_path_factory, hara_file):
    out = tmp_path_factory.mktemp("joint") / "art"
    export_model("joint", out, backbone_weights=str(hara_file))  # what the README tells users
    return out


def test_plain_export_names_the_missing_weights_and_leaves_nothing(tmp_path):
    with pytest.raises(WeightsError) as info:
        export_model("joint", tmp_path / "art")
    msg = str(info.value)
    assert "resnet-34-kinetics.pth" in msg and "--backbone-weights PATH" in msg
    assert "edgevad weights add r3d34-kinetics-ucf-crime PATH" in msg
    assert "--random-init-stage backbone" in msg
    assert list(tmp_path.iterdir()) == []  # no artifact, no temporary folder


def test_the_shipped_head_was_measured_on_unseen_ucf_crime_videos():
    prov = json.loads((SPEC.default_checkpoint_dir() / "provenance.json").read_text())
    ev = prov["evaluation"]
    assert 0.6 < ev["frame_auc"] <= 1.0 and ev["n_videos"] == 137
    assert ev["accuracy_anomalous"] > 2 / 13  # well above chance over 13 anomaly classes
    assert prov["selection"]["chosen_steps"] in [c["steps"] for c in prov["selection"]["candidates"]]


def test_artifact_carries_the_heads_protocol_and_the_shipped_weights(joint_artifact, hara_file):
    m = load_manifest(joint_artifact, verify=True)
    assert m.head == "joint" and m.backbones["backbone"] == "r3d34-ucf-crime"
    assert m.weights["backbone"].source == "file"
    assert m.weights["backbone"].file_sha256 == sha256_file(hara_file)
    assert m.weights["head"].file_sha256 == sha256_file(SPEC.default_checkpoint_dir() / "head.pt")
    assert (m.protocol.clip_len, m.protocol.stride, m.protocol.segments) == (16, 16, 32)
    assert m.protocol.segments_fixed and m.protocol.segment_scheme == ucf_crime.SEGMENT_SCHEME
    assert tuple(m.class_names) == zoo.UCF_CRIME_CLASSES
    assert m.parity["passed"]
    protocols.check_manifest_protocol(m)  # what the Detector checks on load


def test_detector_runs_it_and_labels_frames_with_ucf_crime_classes(joint_artifact):
    det = Detector.load(joint_artifact, backend="onnxruntime")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(40)]
    results = [r for f in frames for r in det.push(f)] + det.flush()
    assert [r.index for r in results] == list(range(40))
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert all(r.label in zoo.UCF_CRIME_CLASSES and abs(sum(r.probabilities.values()) - 1) < 1e-5
               for r in results)
