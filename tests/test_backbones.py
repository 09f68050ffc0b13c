"""Backbones: shapes, Hara/C3D checkpoint layouts with strict loading, and ONNX parity.

The expected key sets are written out here from the published architectures (not taken from our
models), so a layout drift shows up as a failed strict load.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgevad.errors import WeightsError
from edgevad_export.models import resnet3d
from edgevad_export.models.c3d import build_c3d
from edgevad_export.models.motion_net import build_motion_r3d18
from edgevad_export.models.resnet3d import ResNet3D, build_r3d18, build_r3d34
from edgevad_export.weights.c3d import load_c3d_checkpoint
from edgevad_export.weights.hara import load_hara_checkpoint

BLOCKS = {"r3d18": (2, 2, 2, 2), "r3d34": (3, 4, 6, 3)}
BUILDERS = {"r3d18": build_r3d18, "r3d34": build_r3d34}


def hara_layout(blocks, shortcut: str, in_channels: int = 3) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of Hara's models/resnet.py (BasicBlock), as in resnet-*-kinetics.pth."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, in_channels, 7, 7, 7)}

    def bn(name: str, c: int) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{p}"] = (c,)

    bn("bn1", 64)
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for b in range(n):
            pre = f"layer{li}.{b}"
            keys[f"{pre}.conv1.weight"] = (planes, inplanes, 3, 3, 3)
            bn(f"{pre}.bn1", planes)
            keys[f"{pre}.conv2.weight"] = (planes, planes, 3, 3, 3)
            bn(f"{pre}.bn2", planes)
            if b == 0 and li > 1 and shortcut == "B":
                keys[f"{pre}.downsample.0.weight"] = (planes, inplanes, 1, 1, 1)
                bn(f"{pre}.downsample.1", planes)
            inplanes = planes
    keys["fc.weight"] = (400, 512)
    keys["fc.bias"] = (400,)
    return keys


def c3d_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of DavideA/c3d-pytorch's C3D (c3d.pickle)."""
    convs = [("conv1", 3, 64), ("conv2", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
             ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512),
             ("conv5b", 512, 512)]
    keys = {}
    for name, cin, cout in convs:
        keys[f"{name}.weight"] = (cout, cin, 3, 3, 3)
        keys[f"{name}.bias"] = (cout,)
    for name, cin, cout in [("fc6", 8192, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 487)]:
        keys[f"{name}.weight"] = (cout, cin)
        keys[f"{name}.bias"] = (cout,)
    return keys


def fake_state_dict(layout: dict[str, tuple[int, ...]], prefix: str = "") -> dict:
    """One distinct constant per tensor, as stride-0 views: a full-size file of a few KB."""
    return {prefix + k: torch.tensor(float(i + 1)).expand(*shape)
            for i, (k, shape) in enumerate(layout.items())}


def on_meta(build, **kwargs):
    """Build without allocating or initialising weights: key/shape checks need neither."""
    with torch.device("meta"):
        return build(**kwargs)


def assert_loaded(model, layout) -> None:
    """Each tensor holds its own constant (checked at both corners: cheap on stride-0 views)."""
    sd = model.state_dict()
    for i, key in enumerate(layout):
        t = sd[key]
        first, last = t[(0,) * t.dim()], t[tuple(n - 1 for n in t.shape)]
        assert first.item() == last.item() == float(i + 1), key


# --- shapes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("build,shape", [
    (build_r3d18, (2, 3, 8, 32, 32)),
    (build_r3d34, (2, 3, 8, 32, 32)),
    (build_motion_r3d18, (2, 2, 8, 32, 32)),
])
def test_resnet_shapes(build, shape):
    model = build().eval()
    with torch.no_grad():
        x = torch.randn(shape)
        feats = model.forward_features(x)
        logits = model(x)
    assert model.feature_dim == 512
    assert feats.shape == (2, 512) and feats.dtype == torch.float32
    assert logits.shape == (2, 400) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, model.fc(feats))


def test_c3d_shapes():
    model = build_c3d().eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 16, 112, 112))
        logits = model.fc8(model.relu(model.fc7(feats)))  # eval: dropout is identity
    assert model.feature_dim == 4096
    assert feats.shape == (2, 4096) and feats.dtype == torch.float32
    assert (feats >= 0).all()  # fc6 after ReLU
    assert logits.shape == (2, 487)


def test_shortcut_a_equals_hara_original():
    x = torch.randn(2, 64, 4, 7, 7)
    out = F.avg_pool3d(x, kernel_size=1, stride=2)  # Hara: pool, then cat zero channels
    zeros = torch.zeros(out.size(0), 128 - out.size(1), *out.shape[2:])
    expected = torch.cat([out, zeros], dim=1)
    assert torch.equal(resnet3d.downsample_basic_block(x, planes=128, stride=2), expected)


# --- checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["r3d18", "r3d34"])
@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_hara_checkpoint_loads_strict(tmp_path, arch, shortcut, prefix):
    layout = hara_layout(BLOCKS[arch], shortcut)
    path = tmp_path / "resnet-kinetics.pth"
    # Hara's files: a training-state dict from DataParallel, PyTorch 0.3 (pre-zip) format,
    # BatchNorm without num_batches_tracked.
    torch.save({"epoch": 200, "arch": f"resnet-{arch[3:]}",
                "state_dict": fake_state_dict(layout, prefix), "optimizer": {"state": {}}},
               path, _use_new_zipfile_serialization=False)
    sd = load_hara_checkpoint(path)
    model = on_meta(BUILDERS[arch], shortcut_type=shortcut)
    assert set(sd) == set(model.state_dict())  # what edgevad_export's strict loader checks
    model.load_state_dict(sd, strict=True, assign=True)  # strict also checks every shape
    assert_loaded(model, layout)


def test_hara_plain_state_dict_and_motion_layout(tmp_path):
    layout = hara_layout(BLOCKS["r3d18"], "A", in_channels=2)
    path = tmp_path / "motion.pth"
    torch.save(fake_state_dict(layout), path)
    model = build_motion_r3d18()  # a real model: the values are copied into its parameters
    model.load_state_dict(load_hara_checkpoint(path), strict=True)
    assert_loaded(model, layout)


def test_wrong_shortcut_type_does_not_load(tmp_path):
    path = tmp_path / "b.pth"
    torch.save({"state_dict": fake_state_dict(hara_layout(BLOCKS["r3d18"], "B"), "module.")}, path)
    with pytest.raises(RuntimeError, match="downsample"):
        on_meta(build_r3d18, shortcut_type="A").load_state_dict(
            load_hara_checkpoint(path), strict=True, assign=True)


def test_c3d_checkpoint_loads_strict(tmp_path):
    layout = c3d_layout()
    path = tmp_path / "c3d.pickle"
    torch.save(fake_state_dict(layout), path)
    model = on_meta(build_c3d)
    model.load_state_dict(load_c3d_checkpoint(path), strict=True, assign=True)
    assert_loaded(model, layout)


@pytest.mark.parametrize("loader", [load_hara_checkpoint, load_c3d_checkpoint])
def test_bad_checkpoints_raise_weights_error(tmp_path, loader):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"module.fc.weight": torch.randn(400, 512)}}, good)
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint\xff" * 64)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"state_dict": {"fc.weight": [1.0]}}, tmp_path / "nontensor.pth")
    for name, match in [("missing.pth", "does not exist"), ("truncated.pth", "truncated"),
                        ("garbage.pth", "corrupt"), ("list.pth", "state dict"),
                        ("nontensor.pth", "state dict")]:
        with pytest.raises(WeightsError, match=match):
            loader(tmp_path / name)
    assert set(loader(good)) == {"fc.weight"}


# --- ONNX --------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export internals (treespec)
def test_type_a_shortcut_exports_to_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = ResNet3D((1, 1, 1, 1), shortcut_type="A").eval()
    for m in model.modules():  # non-trivial BatchNorm so the check means something
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "r3d.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 8, 32, 32),), str(path), dynamo=True,
                      input_names=["clip"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 8, 32, 32)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(None, {"clip": x.numpy()})
        assert got.shape == (batch, 400)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
