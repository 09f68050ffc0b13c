"""The zoo registry: every name resolves to a builder, and unknown names fail clearly."""

from __future__ import annotations

import pytest
import torch

from edgevad.artifact import zoo
from edgevad.errors import UnknownNameError, WeightsError
from edgevad_export.models import create_backbone, create_head, head_dims

SEED_HEADS = {"mil", "mrm", "dmrm", "dam-dist", "dam-cov", "joint"}


def test_seed_heads_are_registered():
    assert SEED_HEADS <= set(zoo.list_heads())


@pytest.mark.parametrize("name", sorted(SEED_HEADS))
def test_head_spec_round_trips_through_its_builder(name):
    spec = zoo.get_head(name)
    model = create_head(name, random_init=True)
    assert zoo.get_backbone(spec.default_backbone)  # default backbone is registered
    if spec.motion_backbone:
        assert zoo.get_backbone(spec.motion_backbone)
    assert not model.training
    dims = head_dims(spec)
    assert all(getattr(model, k) == v for k, v in dims.items()), dims


@pytest.mark.parametrize("name", ["i3d", "r3d18", "r3d34", "c3d", "motion-r3d18"])
def test_backbone_builders_resolve(name):
    spec = zoo.get_backbone(name)
    model = zoo.resolve(spec.builder)()
    assert model.feature_dim == spec.feature_dim
    for w in spec.weights:
        assert zoo.get_weights(w).backbone == name


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean dmrm"):
        zoo.get_head("drmm")
    with pytest.raises(UnknownNameError, match="Unknown backbone 'resnet'"):
        zoo.get_backbone("resnet")
    with pytest.raises(UnknownNameError, match="Registered:"):
        zoo.get_weights("i3d-imagenet")


def test_head_without_checkpoint_needs_explicit_random_init():
    with pytest.raises(WeightsError, match="--random-init"):
        create_head("mil")


def test_backbone_without_published_weights_says_how_to_get_them():
    with pytest.raises(WeightsError, match="resnet-34-kinetics.pth"):
        create_backbone("r3d34")
    with pytest.raises(WeightsError, match="no published weights"):
        create_backbone("motion-r3d18")
    with pytest.raises(WeightsError, match="neither a registered name"):
        create_backbone("r3d18", weights="/nonexistent/resnet-18.pth")


def test_head_checkpoint_round_trip_is_strict(tmp_path):
    model = create_head("mil", random_init=True)
    path = tmp_path / "mil.pt"
    torch.save(model.state_dict(), path)
    again = create_head("mil", checkpoint=path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    with pytest.raises(WeightsError, match="Weights do not fit head 'mrm'"):
        create_head("mrm", checkpoint=path, feature_dim=256)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightsError, match="Cannot read head .mil. checkpoint .*truncated"):
        create_head("mil", checkpoint=path)


def test_geometry_is_json_ready():
    import json

    for name in zoo.list_backbones():
        json.dumps(zoo.get_backbone(name).geometry.to_dict())
