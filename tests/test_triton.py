"""Triton: the repository writer (configs parsed by Triton's own protobuf, field by field), the
START-aware head graph, and the client against a real ``tritonserver`` process.

The server is the one inside the ``nvidia-pytriton`` wheel (python backend only), fetched from
the package index and started on free loopback ports by the tests; it serves the repositories'
python variant (the same ONNX files, batching, sequence batcher and ensemble as the onnxruntime
one). Every test that needs it skips, with the reason, only where it cannot run here (not x86_64
Linux, no libpython for the stub, the wheel cannot be fetched).
"""

from __future__ import annotations

import ctypes.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")
onnx = pytest.importorskip("onnx")

from typer.testing import CliRunner  # noqa: E402

from edgevad import Detector  # noqa: E402
from edgevad.artifact import zoo
from edgevad.artifact.manifest import FileRecord, load_manifest, read_manifest  # noqa: E402
from edgevad.cli.main import app  # noqa: E402
from edgevad.errors import DownloadError  # noqa: E402
from edgevad.fetch.hashing import sha256_file  # noqa: E402
from edgevad.triton.repository import (  # noqa: E402
    INDEX_FILE,
    RepositoryOptions,
    TritonRepositoryError,
    read_config,
    read_repository,
    start_aware_head,
    write_repository,
)

pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")


# --- helpers --------------------------------------------------------------------------------------

def _kind_for(head: zoo.HeadSpec) -> str:
    """The tiny artifact with the zoo head's tensor names (tests/tiny_artifacts.py)."""
    if "prev_map" in head.inputs:
        return "dam"
    if "motion" in head.inputs:
        return "dmrm"
    if head.class_names:
        return "joint"
    return "ctx" if head.name == "mil-ctx" else "mil"


def _with_engines(artifact: Path, dest: Path) -> Path:
    """A copy of ``artifact`` whose stages list TensorRT engines (stand-in bytes: the writer
    only copies them; building real ones needs a GPU)."""
    shutil.copytree(artifact, dest)
    d = json.loads((dest / "manifest.json").read_text())
    for s in d["stages"]:
        engine, meta = f"{s['name']}.fp16.engine", f"{s['name']}.fp16.engine.json"
        (dest / engine).write_bytes(f"engine of {s['name']}".encode())
        (dest / meta).write_text("{}")
        s["engines"] = [{"file": engine, "metadata": meta, "precision": "fp16"}]
        for f in (engine, meta):
            d["files"][f] = FileRecord(sha256_file(dest / f), (dest / f).stat().st_size).to_dict()
    (dest / "manifest.json").write_text(json.dumps(d, indent=2))
    return dest


def _dims(spec) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in spec.shape[1:]]


def _check_tensor(cfg_tensor, spec) -> None:
    assert cfg_tensor.name == spec.name
    assert cfg_tensor.data_type == pb.TYPE_FP32
    if len(spec.shape) == 1:  # [batch] in the graph: served as [batch, 1], reshaped to []
        assert list(cfg_tensor.dims) == [1]
        assert cfg_tensor.HasField("reshape") and list(cfg_tensor.reshape.shape) == []
    else:
        assert list(cfg_tensor.dims) == _dims(spec)
        assert not cfg_tensor.HasField("reshape")


def check_repository(root: Path, artifact: Path, backend: str, max_batch: int = 8) -> None:
    """Every config parsed with Triton's ModelConfig and checked against the manifest and
    Triton's documented semantics."""
    repo = read_repository(root)  # every file's SHA-256
    m = load_manifest(artifact)
    stateful = any(link.via == "state" for link in m.links)
    assert repo.sequence == stateful and (repo.ensemble is not None) == stateful
    for stage in m.stages:
        model = repo.stages[stage.name]
        cfg = read_config(root / model / "config.pbtxt")
        assert cfg.name == model and cfg.max_batch_size == max_batch
        assert [g.count for g in cfg.instance_group] == [1]
        assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
        vdir = root / model / "1"
        assert json.loads((vdir / "manifest.json").read_text()) == m.to_dict()
        seq_head = stateful and stage.role == "head"
        served = "onnxruntime" if backend == "tensorrt" and seq_head else backend
        if served == "onnxruntime":
            assert (cfg.platform, cfg.backend) == ("onnxruntime_onnx", "onnxruntime")
        elif served == "tensorrt":
            assert (cfg.platform, cfg.backend) == ("tensorrt_plan", "tensorrt")
            assert (vdir / "model.plan").read_bytes() == \
                (artifact / stage.engine()["file"]).read_bytes()
        else:
            assert cfg.backend == "python" and not cfg.platform
            assert (vdir / "model.py").is_file()
        if served != "tensorrt" and not seq_head:
            assert sha256_file(vdir / "model.onnx") == m.files[stage.file].sha256
        if stage.role == "backbone":
            assert json.loads(cfg.parameters["edgevad_manifest"].string_value) == m.to_dict()
        if not seq_head:
            assert cfg.WhichOneof("scheduling_choice") == "dynamic_batching"
            assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
            assert [i.name for i in cfg.input] == stage.input_names
            assert [o.name for o in cfg.output] == stage.output_names
            for t, spec in zip(list(cfg.input) + list(cfg.output), stage.inputs + stage.outputs):
                _check_tensor(t, spec)
            continue
        # the stateful head: sequence batcher, implicit state (or python's own), START
        state_in, state_out = m.protocol.state["input"], m.protocol.state["output"]
        assert cfg.WhichOneof("scheduling_choice") == "sequence_batching"
        seq = cfg.sequence_batching
        assert seq.WhichOneof("strategy_choice") == "oldest"
        assert seq.oldest.max_candidate_sequences >= max_batch
        assert seq.max_sequence_idle_microseconds == 60_000_000
        controls = {c.name: c.control[0] for c in seq.control_input}
        assert controls["START"].kind == pb.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START
        assert list(controls["START"].int32_false_true) == [0, 1]
        # state tensors and control inputs are never listed as inputs/outputs
        assert [i.name for i in cfg.input] == [n for n in stage.input_names if n != state_in]
        assert [o.name for o in cfg.output] == [n for n in stage.output_names if n != state_out]
        for t in list(cfg.input) + list(cfg.output):
            _check_tensor(t, next(s for s in stage.inputs + stage.outputs if s.name == t.name))
        if served == "python":
            assert set(controls) == {"START", "END", "CORRID"} and not seq.state
            assert controls["CORRID"].data_type == pb.TYPE_UINT64
            assert cfg.parameters["EDGEVAD_STATE_INPUT"].string_value == state_in
        else:
            assert set(controls) == {"START"}
            (st,) = seq.state
            assert (st.input_name, st.output_name) == (state_in, state_out)
            assert st.data_type == pb.TYPE_FP32 and list(st.dims) == _dims(stage.input(state_in))
            assert st.initial_state[0].zero_data and list(st.initial_state[0].dims) == list(st.dims)
        graph = onnx.load(str(vdir / "model.onnx"))
        assert [i.name for i in graph.graph.input] == stage.input_names + ["START"]
    if stateful:
        ens = read_config(root / repo.ensemble / "config.pbtxt")
        assert ens.platform == "ensemble" and ens.max_batch_size == max_batch
        assert [i.name for i in ens.input] == ["clip"]
        head = m.stage("head")
        outs = [n for n in head.output_names if n != m.protocol.state["output"]]
        assert [o.name for o in ens.output] == outs
        assert all(list(o.dims) == [1] and not o.HasField("reshape") for o in ens.output)
        b, h = ens.ensemble_scheduling.step
        assert (b.model_name, h.model_name) == (repo.stages["backbone"], repo.stages["head"])
        assert dict(b.input_map) == {"clip": "clip"}
        assert dict(h.input_map) == {"clip_map": dict(b.output_map)["feature_map"]}
        assert dict(h.output_map) == {n: n for n in outs}
        assert (root / repo.ensemble / "1").is_dir()


# --- the writer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("head", zoo.list_heads())
@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt", "python"])
def test_every_zoo_head_gets_a_repository_whose_configs_parse(head, backend, tiny_artifact,
                                                              tmp_path):
    artifact = tiny_artifact(_kind_for(zoo.get_head(head)),
                             **({"window": 3} if head == "mil-ctx" else {}))
    if backend == "tensorrt":
        artifact = _with_engines(artifact, tmp_path / "art")
    repo = write_repository(artifact, tmp_path / "repo", RepositoryOptions(backend=backend,
                                                                           name=head))
    assert repo.name == head and set(repo.stages) == {s.name for s in read_manifest(
        artifact).stages}
    check_repository(tmp_path / "repo", artifact, backend)


def test_options_reach_the_configs(tiny_artifact, tmp_path):
    repo = write_repository(tiny_artifact("dam"), tmp_path / "r", RepositoryOptions(
        name="cams", version=3, max_batch_size=16, instances=2, kind="gpu", gpus=(0, 1),
        max_queue_delay_us=500, max_sequence_idle_us=5_000_000, threads=4))
    assert repo.models == ["cams_backbone", "cams_head", "cams"]
    b = read_config(tmp_path / "r" / "cams_backbone" / "config.pbtxt")
    assert b.max_batch_size == 16 and b.dynamic_batching.max_queue_delay_microseconds == 500
    assert (b.instance_group[0].count, list(b.instance_group[0].gpus)) == (2, [0, 1])
    assert b.parameters["intra_op_thread_count"].string_value == "4"
    h = read_config(tmp_path / "r" / "cams_head" / "config.pbtxt")
    assert h.sequence_batching.max_sequence_idle_microseconds == 5_000_000
    assert h.sequence_batching.oldest.max_queue_delay_microseconds == 500
    assert (tmp_path / "r" / "cams_head" / "3" / "model.onnx").is_file()
    assert (tmp_path / "r" / "cams" / "3").is_dir()


def test_start_aware_head_ignores_the_state_on_start(tiny_artifact, tmp_path):
    import onnxruntime as ort

    artifact = tiny_artifact("dam")
    start_aware_head(artifact / "head.onnx", tmp_path / "h.onnx", "prev_map", "clip_map")
    plain = ort.InferenceSession(str(artifact / "head.onnx"), providers=["CPUExecutionProvider"])
    aware = ort.InferenceSession(str(tmp_path / "h.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    clip_map, prev = (rng.random((3, 4, 3), dtype=np.float32) for _ in range(2))
    start = np.array([[1], [0], [1]], dtype=np.int32)
    got = aware.run(None, {"clip_map": clip_map, "prev_map": prev, "START": start})
    want_prev = np.where(start[:, :, None] == 1, clip_map, prev)
    want = plain.run(None, {"clip_map": clip_map, "prev_map": want_prev})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert got[0][0] == got[0][2] == 0.5 and got[0][1] > 0.5  # no dissimilarity on START


def test_bad_requests_are_named_errors(tiny_artifact, tmp_path):
    artifact = tiny_artifact("mil")
    with pytest.raises(TritonRepositoryError, match="build-engines"):
        write_repository(artifact, tmp_path / "a", RepositoryOptions(backend="tensorrt"))
    with pytest.raises(TritonRepositoryError, match="unknown Triton backend"):
        write_repository(artifact, tmp_path / "b", RepositoryOptions(backend="tflite"))
    with pytest.raises(TritonRepositoryError, match="max_batch_size"):
        write_repository(artifact, tmp_path / "c", RepositoryOptions(max_batch_size=0))
    write_repository(artifact, tmp_path / "d")
    with pytest.raises(TritonRepositoryError, match="overwrite"):
        write_repository(artifact, tmp_path / "d")
    write_repository(artifact, tmp_path / "d", overwrite=True)
    (tmp_path / "d" / "tiny-mil_head" / "1" / "model.onnx").write_bytes(b"changed")
    with pytest.raises(TritonRepositoryError, match="changed since"):
        read_repository(tmp_path / "d")


def test_cli_writes_the_repository(tiny_artifact, tmp_path):
    artifact = tiny_artifact("dam")
    r = CliRunner().invoke(app, ["triton", str(artifact), "--out", str(tmp_path / "repo"),
                                 "--name", "cams", "--max-batch", "4", "--kind", "cpu"])
    assert r.exit_code == 0, r.output
    assert "cams_head: head, sequence batcher" in r.output and "ensemble" in r.output
    idx = json.loads((tmp_path / "repo" / INDEX_FILE).read_text())
    assert idx["ensemble"] == "cams" and idx["options"]["max_batch_size"] == 4
    assert idx["options"]["artifact_manifest_sha256"] == sha256_file(artifact / "manifest.json")


# --- a real server --------------------------------------------------------------------------------

def _start_server(repos: list[Path]):
    from edgevad.triton.local_server import LocalTritonServer, TritonServerError, tritonserver_dir

    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if ctypes.util.find_library(f"python{version}") is None:
        pytest.skip(f"no libpython{version} shared library for the python backend stub")
    try:
        tritonserver_dir()
    except (DownloadError, TritonServerError) as exc:
        pytest.skip(f"the nvidia-pytriton tritonserver cannot be had here: {exc}")
    return LocalTritonServer(repos, timeout_s=180).start()


def drive(det, frames: dict[str, list[np.ndarray]], restart: str, again: list[np.ndarray],
          labels: dict | None = None) -> dict[str, list[float]]:
    """Interleave the cameras frame by frame (one process() call per time step), flush each
    as it ends, then ``restart`` starts again (reset) on ``again``. Frame indices are checked
    to come in order, each once; ``labels`` (if given) collects the class labels."""
    out = {k: [] for k in frames}
    labels = {} if labels is None else labels
    index = {k: [] for k in frames}

    def take(k, rs):
        out[k] += [r.score for r in rs]
        index[k] += [r.index for r in rs]
        labels.setdefault(k, []).extend(r.label for r in rs)

    for t in range(max(len(v) for v in frames.values())):
        for k, rs in det.process({k: v[t] for k, v in frames.items() if t < len(v)}).items():
            take(k, rs)
        for k, v in frames.items():
            if t == len(v) - 1:
                take(k, det.flush(k))
    det.reset(restart)
    for f in again:
        take(restart, det.push(f, restart))
    take(restart, det.flush(restart))
    for k, v in frames.items():
        assert index[k] == list(range(len(v))) + (list(range(len(again))) if k == restart
                                                  else [])
    return out


@pytest.fixture(scope="module")
def tiny_server(tiny_artifact, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-repos")
    arts = {"dam": tiny_artifact("dam"), "ctx": tiny_artifact("ctx", window=3),
            "joint": tiny_artifact("joint"), "dmrm": tiny_artifact("dmrm")}
    for name, art in arts.items():
        write_repository(art, root / name, RepositoryOptions(backend="python", kind="cpu",
                                                             name=name))
    server = _start_server([root / n for n in arts])
    yield server, arts
    server.stop()


@pytest.mark.parametrize("name,protocol", [("dam", "grpc"), ("dam", "http"), ("ctx", "grpc"),
                                           ("ctx", "http"), ("joint", "grpc"), ("dmrm", "http")])
def test_served_scores_equal_the_detector_tiny(tiny_server, name, protocol):
    from edgevad.triton.client import TritonDetector

    server, arts = tiny_server
    rng = np.random.default_rng(1)
    frames = {f"cam{i}": [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
                          for _ in range(5 + 3 * i)] for i in range(8)}
    again = frames["cam3"][::-1]
    want_labels, got_labels = {}, {}
    want = drive(Detector.load(arts[name]), frames, "cam0", again, want_labels)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with TritonDetector.connect(url, name, protocol=protocol) as det:
        assert det.sequences == (name == "dam") and det.backend == "triton"
        got = drive(det, frames, "cam0", again, got_labels)
    for k in frames:
        assert len(got[k]) == len(want[k])
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)
    assert got_labels == want_labels
    if name == "joint":
        assert all(label is not None for v in got_labels.values() for label in v)


def test_the_server_holds_each_camera_to_its_sequence(tiny_server):
    """A clip of a sequence the server never saw start is refused (so a client that lost
    track of START could not silently score against another camera's state), and a reset
    starts a new sequence: DAM's first clip after it has no dissimilarity (score 0.5 here)."""
    from edgevad.triton.client import _SEQ, TritonDetector, TritonError

    server, _ = tiny_server
    rng = np.random.default_rng(2)
    a = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(8)]
    with TritonDetector.connect(server.grpc_url, "dam") as det:
        scores = [r.score for f in a for r in det.push(f, "x")]
        old = det._streams["x"].clip_state.state[_SEQ]
        det.reset("x")
        again = [r.score for f in a[::-1] for r in det.push(f, "x")]
        assert det._streams["x"].clip_state.state[_SEQ] != old
        clip = np.zeros((1, 3, 4, 8, 8), np.float32)
        with pytest.raises(TritonError, match="START|start"):
            det.connection.infer("dam", {"clip": clip}, ["score"], sequence_id=987654321)
    assert scores[0] == again[0] == 0.5 and scores[4] != 0.5


# --- real models exported by the CLI, on a real clip ----------------------------------------------

REAL = {"dam-dist": lambda i: 66 if i < 2 else 36 + i,
        "mil-ctx": lambda i: 34 if i < 2 else 17 + i}
"""Frames per camera. DAM's clips are 64 frames of 224x224 (about 108 GFLOPs of I3D each):
two cameras (and the one that starts again) get a full clip and a padded tail, so the state
carried between clips is used; the others one padded clip. mil-ctx (16-frame clips every 8
frames): two cameras (and the restarted one) fill its 3-clip window, the others score a full
clip and a tail. The PETS clip's frames stand in for 8 cameras, each its own slice."""


@pytest.fixture(scope="module")
def real_server(shared_data, tmp_path_factory):
    """dam-dist exported with ``edgevad export`` here; mil-ctx is the built-in I3D model, which
    ``edgevad run --model mil-ctx`` exports into the cache on first use (one I3D export less when
    the cache has it). Both written with ``edgevad triton --backend python`` and served."""
    pytest.importorskip("torch")
    import os

    from edgevad.artifact.defaults import default_artifact
    from edgevad.media.video import VideoReader

    root = tmp_path_factory.mktemp("real-triton")
    # EDGEVAD_TEST_DAM_ARTIFACT: reuse a dam-dist export while developing (CI exports it)
    arts = {"dam-dist": Path(os.environ.get("EDGEVAD_TEST_DAM_ARTIFACT", root / "dam-dist")),
            "mil-ctx": default_artifact("mil-ctx", progress=False)}
    runner = CliRunner()
    if not (arts["dam-dist"] / "manifest.json").is_file():
        r = runner.invoke(app, ["export", "-m", "dam-dist", "-o", str(arts["dam-dist"])])
        assert r.exit_code == 0, r.output
    for model, art in arts.items():
        r = runner.invoke(app, ["triton", str(art), "--out", str(root / f"r-{model}"),
                                "--name", model, "--backend", "python", "--kind", "cpu"])
        assert r.exit_code == 0, r.output
    frames = []
    for i, f in enumerate(VideoReader(shared_data / "clips" / "pets2009_vtest.mp4")):
        frames.append(f)
        if i >= 160:
            break
    server = _start_server([root / f"r-{m}" for m in REAL])
    yield server, arts, frames
    server.stop()


@pytest.mark.parametrize("model", list(REAL))
def test_served_scores_equal_the_detector_on_real_models(real_server, model):
    """dam-dist and mil-ctx exported by the CLI, served by a real tritonserver: 8 cameras
    interleaved frame by frame (each its own slice of the PETS clip), one stopping and starting
    again, score every frame as the in-process Detector does (within 1e-5)."""
    from edgevad.triton.client import TritonDetector

    server, arts, video = real_server
    frames = {f"cam{i}": video[9 * i:9 * i + REAL[model](i)] for i in range(8)}
    again = video[::-1][:REAL[model](0)]  # the camera that stops starts again on other frames
    want = drive(Detector.load(arts[model]), frames, "cam5", again)
    with TritonDetector.connect(server.grpc_url, model, timeout_s=900) as det:
        assert det.sequences == (model == "dam-dist")
        got = drive(det, frames, "cam5", again)
    for k in frames:
        assert len(got[k]) == len(want[k]) > 0
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)
    if model == "dam-dist":  # the state was used: a camera's second clip is not its first
        assert any(len(set(np.round(v, 6))) > 1 for v in got.values())


def test_bench_drives_cameras_served_and_in_process(tiny_server, tmp_path):
    """The bench's bookkeeping (never its speed): every camera's clips are latency samples,
    frames/s counts every pushed frame, both modes report the same clips, JSON written."""
    server, arts = tiny_server
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(app, ["triton-bench", "--url", server.grpc_url, "--model", "dam",
                                 "--artifacts", str(arts["dam"]), "--cameras", "1,3",
                                 "--frames", "10", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["results"]
    assert [(x["mode"], x["cameras"]) for x in rows] == [
        ("in-process", 1), ("triton grpc", 1), ("in-process", 3), ("triton grpc", 3)]
    for x in rows:  # 10 frames, 4-frame clips: 2 full clips + the flushed tail per camera
        assert x["errors"] == [] and x["clips"] == 3 * x["cameras"]
        assert x["clip_latency"]["count"] == x["clips"] and len(x["per_camera_p50_ms"]) == \
            x["cameras"]
        assert x["frames_per_s"] == pytest.approx(x["cameras"] * 10 / x["wall_s"])


@pytest.mark.parametrize("model", list(REAL))
def test_real_onnxruntime_repositories_parse_field_by_field(real_server, model, tmp_path):
    _, arts, _ = real_server
    r = CliRunner().invoke(app, ["triton", str(arts[model]), "--out", str(tmp_path / "repo")])
    assert r.exit_code == 0, r.output
    check_repository(tmp_path / "repo", arts[model], "onnxruntime")
