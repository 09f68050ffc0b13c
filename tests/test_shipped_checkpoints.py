"""The trained heads shipped in the package: what `edgevad export --model NAME` uses by default."""

from __future__ import annotations

import json

import pytest

from edgevad.artifact import zoo

torch = pytest.importorskip("torch")

SHIPPED = [h for h in zoo.list_heads() if zoo.get_head(h).default_checkpoint]


def test_the_i3d_heads_ship_a_checkpoint():
    assert {"mil", "mil-ctx", "mil-dis", "mrm", "dmrm", "dam-dist", "dam-cov"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_loads_and_matches_its_backbones(name):
    from edgevad_export.training.checkpoint import load_checkpoint

    spec = zoo.get_head(name)
    folder = spec.default_checkpoint_dir()
    model, meta = load_checkpoint(folder)
    assert meta["head"] == name
    assert meta["protocol"]["backbone"] == spec.default_backbone
    if spec.motion_backbone:
        assert meta["protocol"]["motion"]["backbone"] == spec.motion_backbone
    prov = json.loads((folder / "provenance.json").read_text())
    assert 0.5 < prov["evaluation"]["frame_auc"] <= 1.0  # measured on videos it never saw
    assert any("benchmarks/" in line for line in prov["reproduce"])
    from edgevad_export.training.trainer import forward_scores

    segments = meta["config"]["segments"]
    x = torch.randn(1, segments, meta["protocol"]["feature_dim"])  # DAM: flattened t x D maps
    motion = torch.randn(1, segments, 1024) if spec.motion_backbone else None
    with torch.no_grad():
        out = forward_scores(name, model, x, motion)["scores"]
    lo, hi = spec.score_range
    assert out.shape == (1, segments) and ((out >= lo) & (out <= hi)).all()
