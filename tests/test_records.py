"""Portable records: no machine-local path in package data, artifacts, feature files and reports.

Every record that names an input file keeps its name and SHA-256 and, where it travels, a path
relative to a root the user named (``edgevad.artifact.records``). The heavy test exports one int8 model
from two copies of the code in two folders, as two checkouts would, and compares the manifests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from video_files import gradient_frames, write_video

import edgevad
from edgevad.artifact.records import (
    RecordPathsError,
    distinct_paths,
    file_record,
    machine_paths,
    portable_sources,
    record_path,
    record_paths,
    set_record_paths,
)
from edgevad.fetch.hashing import sha256_file

REPO = Path(__file__).resolve().parents[1]


def assert_portable(path: Path) -> None:
    """No absolute path of this (or any) machine in ``path`` (a folder: every file in it).

    Text and JSON are scanned whole (Unix roots and drive letters); an ``.npz`` array by array
    (its string arrays whole); an ONNX graph without its weights; other binaries (``head.pt``)
    for the Unix roots only."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    assert files, f"nothing to scan at {path}"
    found = {}
    for f in files:
        hits = _scan(f)
        if hits:
            found[str(f.relative_to(path) if path.is_dir() else f.name)] = hits[:3]
    assert not found, f"absolute paths recorded: {found}"


def _scan(f: Path) -> list[str]:
    if f.suffix in (".json", ".csv", ".txt", ".md", ".jsonl"):
        return machine_paths(f.read_text("utf-8"))
    if f.suffix == ".npz":
        hits = machine_paths(f.read_bytes(), drives=False)
        with np.load(f, allow_pickle=False) as data:
            for key in data.files:
                if data[key].dtype.kind in "US":
                    hits += machine_paths(" ".join(map(str, data[key].reshape(-1))))
        return hits
    if f.suffix == ".onnx":
        import onnx

        model = onnx.load(str(f), load_external_data=False)
        for init in model.graph.initializer:
            init.ClearField("raw_data")
        return machine_paths(str(model)) + machine_paths(f.read_bytes(), drives=False)
    return machine_paths(f.read_bytes(), drives=False)


# --- the rule -------------------------------------------------------------------------------------

def test_record_path_keeps_what_the_user_wrote_and_drops_the_machine_root(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEVAD_RECORD_PATHS", raising=False)
    assert record_path("../shared/data/clip.mp4") == "../shared/data/clip.mp4"
    assert record_path("clips/a.mp4") == "clips/a.mp4"
    assert record_path("/home/alice/clip.mp4") == "clip.mp4"
    assert record_path("/home/alice/ped2/training/01.mp4",
                       named="/home/alice/ped2/training") == "training/01.mp4"
    assert record_path("/home/alice/clips/a.mp4", named="/home/alice/list.txt") == "clips/a.mp4"
    assert record_path("/data/b.mp4", named="/home/alice/list.txt") == "b.mp4"  # outside: name
    assert record_path("clips/a.mp4", mode="name") == "a.mp4"
    assert record_path("clips/a.mp4", mode="absolute") == (Path.cwd() / "clips/a.mp4").as_posix()
    monkeypatch.setenv("EDGEVAD_RECORD_PATHS", "absolute")
    assert record_path("/home/alice/clip.mp4") == "/home/alice/clip.mp4"
    set_record_paths("name")  # the CLI's flag wins over the environment
    try:
        assert record_paths() == "name" and record_path("clips/a.mp4") == "a.mp4"
    finally:
        set_record_paths(None)
    with pytest.raises(RecordPathsError, match="relative, name, absolute"):
        record_paths("full")


def test_file_record_and_old_records(tmp_path):
    f = tmp_path / "clip.mp4"
    f.write_bytes(b"not a video")
    rec = file_record(f, frames=3)
    assert rec == {"name": "clip.mp4", "sha256": sha256_file(f), "frames": 3}  # path = name
    assert file_record(f, named=tmp_path)["path"] == f"{tmp_path.name}/clip.mp4"
    old = [{"path": str(f), "name": "clip.mp4", "sha256": "x"},
           {"path": "../rel/c.mp4", "name": "c.mp4"}, {"from": "backbone clips"}]
    assert portable_sources(old) == [{"name": "clip.mp4", "sha256": "x"},
                                     {"path": "../rel/c.mp4", "name": "c.mp4"},
                                     {"from": "backbone clips"}]
    assert portable_sources(old, mode="absolute") == old


def test_distinct_paths_keep_folders_apart():
    names = distinct_paths(["/tmp/a/art", "/tmp/b/art", "/x/y.mp4", "rel/p"])
    assert names == {"/tmp/a/art": "a/art", "/tmp/b/art": "b/art", "/x/y.mp4": "y.mp4",
                     "rel/p": "rel/p"}


def test_machine_paths_finds_roots_and_drive_letters_not_urls():
    text = json.dumps({"a": "/tmp/ped2/x.npz", "b": "C:\\Users\\al\\x.mp4", "c": "D:/v.mp4",
                       "ok": ["../shared/data/ped2", "https://pypi.org/simple", "ped2/testing/01",
                              "frames/s", "16 x 112 x 112"]})
    assert [h.split('"')[0] for h in machine_paths(text)] == [
        "/tmp/ped2/x.npz", "C:\\\\Users\\\\al\\\\x.mp4", "D:/v.mp4"]


# --- package data ---------------------------------------------------------------------------------

def test_installed_package_data_names_no_machine_path():
    """What ``pip install edgevad`` puts on a user's disk: the shipped heads and default model."""
    root = Path(edgevad.__file__).parent
    data = [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert any(p.name == "checkpoint.json" for p in data)
    for f in data:
        assert not _scan(f), f"{f.relative_to(root)}: {_scan(f)[:3]}"
    for meta_file in root.glob("**/checkpoint.json"):
        meta = json.loads(meta_file.read_text())
        assert sha256_file(meta_file.parent / meta["weights_file"]) == meta["weights_sha256"]
        proto = meta["protocol"]
        for p in [proto, proto.get("motion") or {}]:
            if p.get("feature_file"):  # named without a machine root, identified by its hash
                assert len(p["feature_file_sha256"]) == 64


# --- writers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two short clips in ``<tmp>/clips`` (absolute, as a user's folder would be)."""
    d = tmp_path_factory.mktemp("records") / "clips"
    d.mkdir()
    for i in range(2):
        write_video(d / f"v{i}.mp4", gradient_frames(20, (48, 64), seed=i))
    return d


def test_calibration_sets_name_videos_below_the_named_folder(videos, tmp_path, monkeypatch):
    from edgevad.artifact import zoo
    from edgevad_calibration import build_from_videos, load_calibration

    geometry = zoo.get_backbone("r3d18").geometry
    cset = build_from_videos([videos], geometry, samples=2)
    assert [(s["name"], s["path"]) for s in cset.sources] == [
        ("v0.mp4", "clips/v0.mp4"), ("v1.mp4", "clips/v1.mp4")]
    assert [s["sha256"] for s in cset.sources] == [sha256_file(videos / f"v{i}.mp4")
                                                   for i in range(2)]
    assert_portable(cset.save(tmp_path / "set.npz"))
    monkeypatch.chdir(videos.parent)  # relative, as typed: kept as typed
    lst = Path("list.txt")
    lst.write_text("clips/v1.mp4\n")
    assert [s.get("path") for s in build_from_videos([lst], geometry, samples=1).sources] == [
        "clips/v1.mp4"]
    set_record_paths("absolute")  # asked for: the machine's path
    try:
        cset = build_from_videos([Path("clips/v0.mp4")], geometry, samples=1)
    finally:
        set_record_paths(None)
    assert cset.sources[0]["path"] == (videos / "v0.mp4").as_posix()
    saved = load_calibration(cset.save(tmp_path / "abs.npz"))
    assert saved.sources[0]["path"] == (videos / "v0.mp4").as_posix()  # the file keeps them...
    assert "path" not in saved.record()["sources"][0]  # ...a manifest gets them portable


def test_cli_flag_is_checked_and_reaches_the_writers(videos, tmp_path):
    from typer.testing import CliRunner

    from edgevad.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["--record-paths", "full", "models"])
    assert r.exit_code != 0 and isinstance(r.exception, RecordPathsError)
    out = tmp_path / "c.npz"
    r = runner.invoke(app, ["--record-paths", "absolute", "calibrate", str(videos / "v0.mp4"),
                            "--backbone", "r3d18", "--samples", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    from edgevad_calibration import load_calibration

    assert load_calibration(out).sources[0]["path"] == (videos / "v0.mp4").as_posix()
    assert record_paths() == "relative"  # the next command starts from the default again
    r = runner.invoke(app, ["calibrate", str(videos / "v0.mp4"), "--backbone", "r3d18",
                            "--samples", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert_portable(out)


@pytest.fixture(scope="module")
def feature_file(videos, tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from edgevad_export.extraction.extract import extract_features

    out = tmp_path_factory.mktemp("records-features") / "bags.npz"
    report = extract_features([videos], "r3d18", out, random_init=True, segments=4,
                              progress=False, labels={"v0": True, "v1": False}, keep_parts=True)
    assert report.written == ["v0", "v1"]
    return out


def test_feature_file_names_its_videos_and_nothing_of_the_machine(feature_file, videos):
    from edgevad_export.extraction.extract import extract_features, read_sources

    assert_portable(feature_file)
    sources = read_sources(feature_file)
    assert sources == [{"name": f"v{i}.mp4", "path": f"clips/v{i}.mp4",
                        "sha256": sha256_file(videos / f"v{i}.mp4")} for i in range(2)]
    # a resumed run takes the hashes from the parts it reuses: the same file again
    again = feature_file.with_name("again.npz")
    shutil.copytree(Path(f"{feature_file}.parts"), Path(f"{again}.parts"))
    report = extract_features([videos], "r3d18", again, random_init=True, segments=4,
                              progress=False, labels={"v0": True, "v1": False})
    assert report.reused == ["v0", "v1"] and read_sources(again) == sources
    assert sha256_file(again) == sha256_file(feature_file)


def test_checkpoint_and_eval_report_name_feature_files_by_name(synthetic_bags, tmp_path):
    pytest.importorskip("torch")
    from edgevad_export.evaluation.evaluate import evaluate
    from edgevad_export.training import TrainConfig, train

    bags = synthetic_bags(n=8, dim=8, with_frames=True)
    data = tmp_path / "data" / "bags.npz"  # absolute, as WORK/ped2_train_B.npz was
    data.parent.mkdir()
    n = max(len(f) for f in bags.features)
    np.savez(data, features=np.stack([np.pad(f, ((0, n - len(f)), (0, 0))) for f in bags.features]),
             n_segments=np.array([len(f) for f in bags.features]), name=bags.names,
             label=bags.labels, category=bags.categories, n_frames=bags.n_frames,
             anomaly_intervals=bags.anomaly_intervals)
    ckpt = train(TrainConfig(model="mil", backbone=None, head_kwargs={"hidden": 8}, steps=2,
                             batch_anomalous=2, batch_normal=2), data, tmp_path / "ckpt",
                 progress=False)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["protocol"]["feature_file"] == "bags.npz"
    assert meta["protocol"]["feature_file_sha256"] == sha256_file(data)
    assert_portable(ckpt)
    report = evaluate(ckpt, data, out_dir=tmp_path / "eval", curves=False, plots=False)
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert (saved["feature_file"], saved["checkpoint"]) == ("bags.npz", "ckpt")
    assert saved["feature_file_sha256"] == sha256_file(data)
    assert saved["checkpoint_weights_sha256"] == meta["weights_sha256"]
    assert report["frame_auc"] == saved["frame_auc"]
    assert_portable(tmp_path / "eval")


# --- two checkouts, one artifact ------------------------------------------------------------------

RUNNER = """
import sys
import edgevad, edgevad_export, edgevad_calibration
import edgevad_export.precision as precision
print("imports:", edgevad.__file__, edgevad_export.__file__, edgevad_calibration.__file__,
      file=sys.stderr)
# The head's precision is chosen by timing its graphs; the choice is a measurement, not a record
# of the inputs, so both runs are given the same one (all equal: fp32 is kept).
assert hasattr(precision, "_median_ms"), "precision._median_ms moved: update this runner"
precision._median_ms = lambda *args, **kwargs: 1.0
from edgevad.cli.main import main
sys.argv = ["edgevad", *sys.argv[1:]]
main()
"""
MEASURED = ("created", "seconds", "median_ms")
"""When the artifact was made and how long its steps took: all that may differ."""


def _masked(doc):
    if isinstance(doc, dict):
        return {k: ("<measured>" if k in MEASURED else _masked(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_masked(v) for v in doc]
    return doc


def _checkout(root: Path, clip: Path) -> Path:
    """A copy of the code (the three import packages) and the calibration clip under ``root``."""
    for src, name in (("edgevad", "edgevad"), ("export", "edgevad_export"),
                      ("calibration", "edgevad_calibration")):
        shutil.copytree(REPO / src, root / "src" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(clip, root / "clip.mp4")
    (root / "runner.py").write_text(RUNNER)
    return root


def test_two_checkouts_export_the_same_manifest(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    clip = write_video(tmp_path / "clip.mp4", gradient_frames(24, (64, 80), seed=3))
    manifests, parities = [], []
    for name in ("checkout-a", "elsewhere/checkout-b"):
        root = _checkout(tmp_path / name, clip)
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
        done = subprocess.run(
            [sys.executable, "runner.py", "export", "-m", "mil", "--backbone", "r3d18",
             "--random-init", "--precision", "int8", "--calib", "clip.mp4", "--calib-samples",
             "1", "-o", "artifact"],
            cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        imported = re.search(r"imports: (.*)", done.stderr).group(1).split()
        assert all(p.startswith(str(root / "src")) for p in imported), imported
        art = root / "artifact"
        assert_portable(art)
        manifests.append(json.loads((art / "manifest.json").read_text()))
        parities.append(json.loads((art / "parity.json").read_text()))
    a, b = manifests
    calib = a["calibration"]["sets"]["backbone"]["sources"]
    assert calib == [{"name": "clip.mp4", "sha256": sha256_file(clip), "frames_declared": 24,
                      "clip_starts": [4]}]
    # every graph byte for byte: the files' hashes are in the manifest
    assert {k: v for k, v in a["files"].items() if k != "parity.json"} == \
        {k: v for k, v in b["files"].items() if k != "parity.json"}
    assert _masked(parities[0]) == _masked(parities[1])  # parity.json differs by its timings
    for m in (a, b):
        m["files"]["parity.json"] = "<hashes its timings>"
    assert json.dumps(_masked(a), indent=2) == json.dumps(_masked(b), indent=2)
    assert a["created"] and a["export"]["seconds"] > 0  # masked above: present, not compared


def test_credentials_in_urls_are_redacted():
    from edgevad.artifact.records import redact_credentials

    assert redact_credentials("rtsp://user:pa@ss@cam.local:554/live") == "rtsp://***@cam.local:554/live"
    assert redact_credentials("cannot open http://u:p@10.0.0.2/x (timeout)") == \
        "cannot open http://***@10.0.0.2/x (timeout)"
    for plain in ("rtsp://cam.local/live", "clips/a@b.mp4", "0", "user@example.org"):
        assert redact_credentials(plain) == plain
