"""The anomaly heads: zoo round trip, shapes and ranges, DAM's online contract, the losses on
hand-checked inputs, and ONNX export with a dynamic batch."""

from __future__ import annotations

import importlib
import inspect
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevad.artifact import zoo  # noqa: E402
from edgevad_export.models.heads import losses  # noqa: E402
from edgevad_export.models.heads.dam import DAMHead, build_dam, dissimilarities  # noqa: E402
from edgevad_export.models.heads.mil import build_mil  # noqa: E402

torch.manual_seed(0)


def _build(name: str, **overrides):
    spec = zoo.get_head(name)
    module, fn = spec.builder.split(":")
    builder = getattr(importlib.import_module(module), fn)
    return spec, builder(**{**spec.builder_kwargs, **overrides})


def _inputs(spec, model, batch=2, t=7):
    dims = {
        "features": ("seg", model.feature_dim),
        "appearance": ("seg", getattr(model, "appearance_dim", None)),
        "motion": ("seg", getattr(model, "motion_dim", None)),
        "clip_map": ("t", model.feature_dim),
        "prev_map": ("t", model.feature_dim),
    }
    out = []
    for name in spec.inputs:
        kind, d = dims[name]
        out.append(torch.randn(batch, spec.segments if kind == "seg" else t, d))
    return out


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.fixture(scope="module")
def built():
    return {name: _build(name) for name in zoo.list_heads()}


def test_every_head_round_trips_through_the_zoo(built):
    assert set(built) == {"mil", "mil-ctx", "mil-dis", "mrm", "dmrm", "dam-dist", "dam-cov", "joint",
                          "motion-prior"}
    for name, (spec, model) in built.items():
        params = list(inspect.signature(model.forward).parameters)
        assert tuple(params) == spec.inputs, name
        model.eval()
        with torch.no_grad():
            outs = model(*_inputs(spec, model))
        outs = _tuple(outs)
        assert len(outs) == len(spec.outputs), name
        lo, hi = spec.score_range
        for out_name, out in zip(spec.outputs, outs):
            assert out.dtype == torch.float32
            if out_name == "class_logits":
                assert out.shape == (2, len(spec.class_names))
                continue
            assert out.shape == ((2,) if spec.segments is None else (2, spec.segments)), name
            assert torch.isfinite(out).all()
            assert (out >= 0).all() and (out <= (hi if out_name == "score" else 1)).all()
        assert lo == 0.0


def test_feature_dims_follow_the_zoo_backbones():
    from edgevad_export.models.factory import create_head

    for name in zoo.list_heads():  # sized by the factory, as export and train build them
        spec, model = zoo.get_head(name), create_head(name, random_init=True)
        backbone = zoo.get_backbone(spec.default_backbone)
        dim = getattr(model, "appearance_dim", model.feature_dim)
        assert dim == backbone.feature_dim, name
        if spec.motion_backbone:
            assert model.motion_dim == zoo.get_backbone(spec.motion_backbone).feature_dim


def test_dropout_inactive_in_eval_and_active_in_train(built):
    spec, model = built["mil"]
    x = torch.randn(2, 32, model.feature_dim)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))
    model.eval()
    small = {"dmrm": dict(appearance_dim=16, motion_dim=8),
             "dam-dist": dict(feature_dim=16, hidden=8),
             "joint": dict(feature_dim=16, lstm_hidden=8, attention_hidden=8)}
    for name, overrides in small.items():
        spec, model = _build(name, **overrides)
        args = _inputs(spec, model)
        with torch.no_grad():
            model.train()
            a = model(*args)
            b = model(*args)
            assert any(not torch.equal(x, y) for x, y in zip(_tuple(a), _tuple(b))), name
            model.eval()
            a, b = model(*args), model(*args)
        for x, y in zip(_tuple(a), _tuple(b)):
            assert torch.equal(x, y), name


def test_wrong_feature_dim_is_rejected():
    with pytest.raises(ValueError, match="1024"):
        build_mil()(torch.randn(2, 32, 512))


# --- DAM ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dist", "cov"])
@pytest.mark.parametrize("t", [1, 7])
def test_dam_score_identity_and_t(kind, t):
    model = build_dam(kind, feature_dim=64, hidden=32).eval()
    clip, prev = torch.randn(3, t, 64), torch.randn(3, t, 64)
    with torch.no_grad():
        score, detection, attention = model(clip, prev)
    for out in (score, detection, attention):
        assert out.shape == (3,) and torch.isfinite(out).all()
    assert ((detection >= 0) & (detection <= 1)).all()
    assert ((attention >= 0) & (attention <= 1)).all()
    assert torch.allclose(score, detection + detection * attention)
    assert ((score >= 0) & (score <= 2)).all()


def test_dam_dist_dissimilarity_is_zero_for_an_unchanged_clip():
    clip = torch.randn(2, 7, 64)
    channel, temporal = dissimilarities(clip, clip.clone(), "dist")
    assert channel.shape == (2, 64) and temporal.shape == (2, 7)
    assert torch.equal(channel, torch.zeros_like(channel))
    assert torch.equal(temporal, torch.zeros_like(temporal))
    # First clip of a stream (prev_map = clip_map): the attention sees no change, whatever the clip.
    model = build_dam("dist", feature_dim=64, hidden=32).eval()
    other = torch.randn(2, 7, 64)
    with torch.no_grad():
        att_a = model(clip, clip)[2]
        att_b = model(other, other)[2]
    assert torch.allclose(att_a, att_b)


def test_dam_dist_hand_checked():
    clip = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]])
    prev = torch.tensor([[[0.0, 4.0, 3.0], [1.0, 0.0, 0.0]]])
    channel, temporal = dissimilarities(clip, prev, "dist")
    assert channel.tolist() == [[2.0, 2.0, 1.0]]
    assert temporal.tolist() == [[3.0, 2.0]]


def test_dam_cov_centring_stays_meaningful_for_t1():
    x, y = torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([[[3.0, 2.0, 1.0]]])
    channel, temporal = dissimilarities(x, y, "cov")  # global centring: means are 2 and 2
    assert channel.tolist() == [[-1.0, 0.0, -1.0]]
    assert temporal.tolist() == [[pytest.approx(-2.0 / 3.0)]]
    channel_axis, _ = dissimilarities(x, y, "cov", cov_centering="axis")
    # the released code's per-axis centring loses the channel term at t = 1: why it is not default
    assert torch.equal(channel_axis, torch.zeros(1, 3))


def test_dam_rejects_unknown_dissimilarity():
    with pytest.raises(ValueError, match="dissimilarity"):
        build_dam("cosine")
    with pytest.raises(ValueError):
        DAMHead(cov_centering="median")


# --- Losses ---------------------------------------------------------------------------------------

def _leaf(values):
    return torch.tensor(values, requires_grad=True)


def test_mil_ranking_loss_hand_checked_and_gradients():
    a, n = _leaf([[0.2, 0.9, 0.5]]), _leaf([[0.1, 0.3, 0.2]])
    loss = losses.mil_ranking_loss(a, n)
    # hinge 1 - 0.9 + 0.3; smoothness 0.7^2 + 0.4^2; sparsity 1.6
    assert loss.item() == pytest.approx(0.4 + 8e-5 * 0.65 + 8e-5 * 1.6, abs=1e-6)
    loss.backward()
    assert a.grad[0, 1] < 0 and n.grad[0, 1] == pytest.approx(1.0)
    assert n.grad[0, 0] == 0 and n.grad[0, 2] == 0


def test_mil_ranking_hinge_is_zero_when_separated_by_more_than_the_margin():
    a, n = _leaf([[0.1, 0.95, 0.2]]), _leaf([[0.3, 0.1, 0.2]])
    loss = losses.mil_ranking_loss(a, n, smooth=0.0, sparsity=0.0, margin=0.5)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(n.grad, torch.zeros_like(n))
    zero = losses.mil_ranking_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 0.0]]), 0.0, 0.0)
    assert zero.item() == 0.0


def test_ranking_pairings():
    a, n = torch.tensor([[0.9, 0.1], [0.6, 0.0]]), torch.tensor([[0.3, 0.0], [0.5, 0.1]])
    paired = losses.mil_ranking_loss(a, n, 0.0, 0.0)
    every = losses.mil_ranking_loss(a, n, 0.0, 0.0, pairing="all")
    assert paired.item() == pytest.approx((0.4 + 0.9) / 2)
    assert every.item() == pytest.approx(((0.4 + 0.7) + (0.6 + 0.9)) / 2)
    with pytest.raises(ValueError):
        losses.mil_ranking_loss(a, n[:1])
    with pytest.raises(ValueError):
        losses.mil_ranking_loss(a, n, pairing="some")


def test_multiple_ranking_loss_hand_checked():
    a, n = _leaf([[0.2, 0.9, 0.5, 0.7]]), _leaf([[0.1, 0.3, 0.2, 0.0]])
    loss = losses.multiple_ranking_loss(a, n, smooth=0.0, sparsity=0.0)
    # top-vs-top 0.4, top-vs-bottom 0.3, 2nd-vs-top 0.6, 3rd-vs-top 0.8
    assert loss.item() == pytest.approx(2.1)
    loss.backward()
    assert a.grad.tolist() == [[1.0, -2.0, -1.0, -1.0]]
    assert n.grad.tolist() == [[0.0, 3.0, 0.0, 0.0]]
    separated = losses.multiple_ranking_loss(torch.tensor([[0.0, 1.0, 1.0, 1.0]]),
                                             torch.zeros(1, 4), 0.0, 0.0, margin=0.9)
    assert separated.item() == 0.0
    with pytest.raises(ValueError):
        losses.multiple_ranking_loss(torch.ones(1, 2), torch.zeros(1, 2))


def test_dam_weighted_ranking_loss_hand_checked():
    d_a, att_a = _leaf([[0.5, 0.8]]), _leaf([[0.0, 0.5]])
    d_n, att_n = _leaf([[0.4, 0.2]]), _leaf([[0.25, 0.0]])
    loss = losses.dam_weighted_ranking_loss(d_a, att_a, d_n, att_n, smooth=0.0, sparsity=0.0)
    # weighted scores: anomalous [0.5, 1.2], normal [0.5, 0.2]; hinge 1 - 1.2 + 0.5
    assert loss.item() == pytest.approx(0.3 + 0.01 * (0.25 + 0.0625))
    loss.backward()
    assert att_a.grad[0, 1].item() == pytest.approx(-0.8 + 0.01 * 2 * 0.5)
    assert d_a.grad[0, 1].item() == pytest.approx(-1.5)
    high = losses.dam_weighted_ranking_loss(torch.tensor([[1.0]]), torch.tensor([[1.0]]),
                                            torch.tensor([[0.5]]), torch.tensor([[0.0]]),
                                            0.0, 0.0, attention_l2=0.0)
    assert high.item() == 0.0  # 2.0 - 0.5 > 1


def test_joint_loss_hand_checked():
    a, n = torch.tensor([[0.9, 0.2]]), torch.tensor([[0.3, 0.1]])
    logits = torch.zeros(2, 14, requires_grad=True)
    targets = torch.tensor([3, 0])
    w = losses.UCF_CRIME_CLASS_WEIGHTS
    loss = losses.joint_loss(a, n, logits, targets, w, smooth=0.0, sparsity=0.0)
    expected = 0.9 * 0.4 + 0.1 * math.log(14) * (w[3] + w[0]) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[0, 3] < 0 and logits.grad[1, 0] < 0
    plain = losses.joint_loss(a, n, logits, targets, smooth=0.0, sparsity=0.0)
    assert plain.item() == pytest.approx(0.9 * 0.4 + 0.1 * math.log(14), rel=1e-6)


def test_class_weights_follow_the_zoo_order():
    w = dict(zip(zoo.UCF_CRIME_CLASSES, losses.UCF_CRIME_CLASS_WEIGHTS))
    assert w["Normal"] == pytest.approx(0.50310559)
    assert w["Abuse"] == pytest.approx(0.97018634)
    assert w["Vandalism"] == pytest.approx(0.97204969)


# --- ONNX -----------------------------------------------------------------------------------------

def _export(model, args, spec, path):
    """Export with a dynamic batch; dynamo first, the TorchScript exporter as fallback."""
    names = list(spec.inputs) + list(spec.outputs)
    kwargs = dict(input_names=list(spec.inputs), output_names=list(spec.outputs),
                  dynamic_axes={n: {0: "batch"} for n in names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, tuple(args), str(path), dynamo=True, verbose=False, **kwargs)
            return "dynamo"
        except Exception:  # pragma: no cover - only when dynamo cannot export the graph
            torch.onnx.export(model, tuple(args), str(path), dynamo=False, opset_version=17,
                              **kwargs)
            return "torchscript"


def _check_onnx(model, spec, path, make_inputs):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == list(spec.inputs)
    assert [o.name for o in proto.graph.output] == list(spec.outputs)
    for value in list(proto.graph.input) + list(proto.graph.output):
        batch = value.type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.dim_value, value.name  # symbolic batch axis
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        args = make_inputs(batch)
        got = session.run(None, {n: a.numpy() for n, a in zip(spec.inputs, args)})
        with torch.no_grad():
            want = model(*args)
        for g, w in zip(got, _tuple(want)):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)


def test_dam_onnx_dynamic_batch(tmp_path):
    # dam-cov exports the same way (checked by hand; left out to keep this file fast)
    spec, model = _build("dam-dist", feature_dim=64, hidden=48)
    model.eval()
    make = lambda b: [torch.randn(b, 7, 64), torch.randn(b, 7, 64)]  # noqa: E731
    exporter = _export(model, make(2), spec, tmp_path / "dam.onnx")
    assert exporter == "dynamo"  # the LSTMs export with the dynamo exporter
    _check_onnx(model, spec, tmp_path / "dam.onnx", make)


def test_mil_onnx_dynamic_batch(tmp_path):
    spec, model = _build("mil")
    model.eval()
    make = lambda b: [torch.randn(b, 32, model.feature_dim)]  # noqa: E731
    assert _export(model, make(2), spec, tmp_path / "mil.onnx") == "dynamo"
    _check_onnx(model, spec, tmp_path / "mil.onnx", make)
