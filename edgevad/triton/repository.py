"""Write a Triton Inference Server model repository from an exported artifact.

One artifact (``manifest.json`` + one ONNX graph per stage) becomes, under ``--out``::

    <name>_backbone/config.pbtxt         dynamic batching: clips of many cameras in one batch
    <name>_backbone/<version>/model.onnx (or model.plan: a TensorRT engine of the artifact)
    <name>_motion/...                    dmrm's optical-flow stream, the same way
    <name>_head/config.pbtxt             stateless heads: dynamic batching; stateful heads
    <name>_head/<version>/model.onnx     (DAM): the sequence batcher, see below
    <name>/config.pbtxt                  stateful heads: the ensemble backbone -> head
    edgevad-triton.json                  what was written: the artifact's manifest, every
                                         file's SHA-256, the model names and options

Why this shape. The backbone is stateless and by far the most expensive stage, so Triton's
dynamic batcher batches clips of every camera that reaches the server. A segment head (MIL,
MRM, mil-ctx, joint) is stateless too: the client (:mod:`edgevad.triton.client`) keeps each
camera's window of clip features, exactly as the in-process Detector does, and calls the
backbone and head models. DAM's head is stateful per camera (the previous clip's map): it runs
under the sequence batcher with implicit state (``state { input_name: "prev_map" output_name:
"next_prev_map" }``), so the map never leaves the server, and an ensemble chains backbone and
head so one request per clip, carrying the camera's sequence id, does everything. The state
tensors are not listed in ``input``/``output`` (Triton's rule), and on a sequence's first
request the incoming state is uninitialised: the head graph is therefore rewritten into a
START-aware variant (``START`` [batch, 1] int32 -> ``prev = START ? clip_map : prev_map``, the
Detector's "first clip is its own previous clip"), written with ``onnx.helper``.

Backends (``backend=``): ``onnxruntime`` (the artifact's graphs), ``tensorrt`` (the engines
``edgevad build-engines`` made, refused when absent; a stateful head stays on onnxruntime, since
its START-aware graph has no engine) and ``python``: the same graphs run by ONNX Runtime inside a
python-backend ``model.py`` (:mod:`edgevad.triton.python_model`), with the same batching,
sequence batcher and ensemble. Implicit state is only for the onnxruntime, tensorrt and pytorch
backends, so the python head keeps its state itself, by correlation id (control inputs START,
END, CORRID). It exists because the only Triton that pip installs (the server inside
``nvidia-pytriton``) has the python backend only; the tests serve it.

Configs are built with Triton's own protobuf (``tritonclient.grpc.model_config_pb2``) and
printed with ``google.protobuf.text_format``: a misspelt field fails here, not at server start.
Needs ``tritonclient[grpc]`` and ``onnx`` (the ``[triton]`` extra); no torch.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevad import __version__
from edgevad.artifact.manifest import MANIFEST_FILE, Manifest, StageSpec, TensorSpec, load_manifest
from edgevad.errors import EdgevadError, MissingDependencyError
from edgevad.fetch.hashing import sha256_file

__all__ = ["BACKENDS", "INDEX_FILE", "REPOSITORY_FORMAT", "RepositoryOptions", "TritonRepository",
           "TritonRepositoryError", "model_config_pb2", "read_repository", "write_repository"]

BACKENDS = ("onnxruntime", "tensorrt", "python")
INDEX_FILE = "edgevad-triton.json"
REPOSITORY_FORMAT = "edgevad-triton-repository"
SCHEMA_VERSION = 1
START = "START"
END = "END"
CORRID = "CORRID"
MANIFEST_PARAMETER = "edgevad_manifest"
"""Config parameter of the backbone model (and the ensemble) holding the artifact's manifest as
JSON: the client reads pre-processing, protocol and links from the server itself."""

_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64",
          "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "int32": "TYPE_INT32",
          "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "bfloat16": "TYPE_BF16"}


class TritonRepositoryError(EdgevadError):
    """The repository cannot be written as asked (bad options, missing engines, bad folder)."""


def model_config_pb2():
    """Triton's model-config protobuf module, from tritonclient (the ``[triton]`` extra)."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb
    except ImportError as exc:
        raise MissingDependencyError("writing a Triton repository needs tritonclient: "
                                     "pip install 'edgevad[triton]'") from exc
    return pb


@dataclass(frozen=True)
class RepositoryOptions:
    """How to write the repository (every field has the default the CLI shows)."""

    name: str | None = None
    """Model-name prefix (default: the artifact's head, e.g. ``dam-dist``)."""
    backend: str = "onnxruntime"
    version: int = 1
    max_batch_size: int = 8
    """Largest batch a model takes: clips batched across cameras (the TensorRT engines' profile
    must allow it)."""
    instances: int = 1
    """Execution instances of each model per device (``instance_group.count``)."""
    kind: str = "gpu"
    """``gpu`` (``KIND_GPU``), ``cpu`` (``KIND_CPU``) or ``auto`` (``KIND_AUTO``)."""
    gpus: tuple[int, ...] = ()
    """GPU indices for the instances (empty: every GPU)."""
    max_queue_delay_us: int = 2000
    """How long the dynamic and sequence batchers wait to fill a batch."""
    max_sequence_idle_us: int = 60_000_000
    """A camera silent this long loses its sequence (and DAM's state) on the server."""
    precision: str | None = None
    """TensorRT engines to take (default: each stage's precision)."""
    threads: int | None = None
    """ONNX Runtime intra-op threads per instance (onnxruntime and python backends)."""
    sys_path: tuple[str, ...] = ()
    """Python backend: folders with numpy and onnxruntime for the stub's interpreter (which
    ignores PYTHONPATH); default: this interpreter's site-packages."""

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise TritonRepositoryError(f"unknown Triton backend {self.backend!r}; choose one "
                                        f"of {', '.join(BACKENDS)}")
        if self.kind not in ("gpu", "cpu", "auto"):
            raise TritonRepositoryError(f"instance kind must be gpu, cpu or auto, not "
                                        f"{self.kind!r}")
        for what, v in (("version", self.version), ("max_batch_size", self.max_batch_size),
                        ("instances", self.instances)):
            if v < 1:
                raise TritonRepositoryError(f"{what} must be >= 1, got {v}")
        if self.name is not None and (not self.name or "/" in self.name or self.name[0] == "."):
            raise TritonRepositoryError(f"model name {self.name!r} cannot be a folder name")


@dataclass
class TritonRepository:
    """What :func:`write_repository` wrote (also ``edgevad-triton.json``)."""

    root: Path
    name: str
    backend: str
    version: int
    stages: dict[str, str]
    """Artifact stage -> Triton model name."""
    ensemble: str | None
    """The ensemble's model name (stateful heads), else None."""
    sequence: bool
    """Whether the head runs under the sequence batcher (per-camera state on the server)."""
    state: dict | None
    """``{"input", "output", "dims"}`` of the head's state, when ``sequence``."""
    files: dict[str, str] = field(default_factory=dict)
    """Path relative to ``root`` -> SHA-256."""
    options: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(self.stages.values()) + ([self.ensemble] if self.ensemble else [])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["root"] = None  # the folder moves with the repository
        return {"format": REPOSITORY_FORMAT, "schema_version": SCHEMA_VERSION,
                "edgevad_version": __version__, **d}


# --- Config building ------------------------------------------------------------------------------

def _dims(spec: TensorSpec) -> list[int]:
    """Per-request dims (the batch axis dropped); symbolic axes are -1."""
    return [d if isinstance(d, int) else -1 for d in spec.shape[1:]]


def _data_type(pb, spec: TensorSpec) -> int:
    try:
        return pb.DataType.Value(_TYPES[spec.dtype])
    except KeyError:
        raise TritonRepositoryError(f"tensor {spec.name!r} has dtype {spec.dtype}, which has no "
                                    "Triton type here") from None


def _tensor(pb, cls, spec: TensorSpec):
    t = cls(name=spec.name, data_type=_data_type(pb, spec))
    dims = _dims(spec)
    if dims:
        t.dims.extend(dims)
    else:  # a per-item scalar ([batch] in the graph): Triton wants dims [1], reshaped to []
        t.dims.append(1)
        t.reshape.SetInParent()
    return t


def _instance_group(pb, options: RepositoryOptions):
    kind = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}[options.kind]
    group = pb.ModelInstanceGroup(count=options.instances,
                                  kind=pb.ModelInstanceGroup.Kind.Value(kind))
    if options.gpus and options.kind == "gpu":
        group.gpus.extend(options.gpus)
    return group


def _set_backend(config, backend: str) -> None:
    if backend == "onnxruntime":
        config.platform = "onnxruntime_onnx"
        config.backend = "onnxruntime"
    elif backend == "tensorrt":
        config.platform = "tensorrt_plan"
        config.backend = "tensorrt"
    else:
        config.backend = "python"


def _param(config, key: str, value: str) -> None:
    config.parameters[key].string_value = value


def stage_config(pb, model_name: str, stage: StageSpec, backend: str,
                 options: RepositoryOptions, *, exclude_inputs: tuple[str, ...] = ()):
    """A stateless stage under the dynamic batcher."""
    config = pb.ModelConfig(name=model_name, max_batch_size=options.max_batch_size)
    _set_backend(config, backend)
    config.input.extend(_tensor(pb, pb.ModelInput, t) for t in stage.inputs
                        if t.name not in exclude_inputs)
    config.output.extend(_tensor(pb, pb.ModelOutput, t) for t in stage.outputs)
    config.instance_group.append(_instance_group(pb, options))
    config.version_policy.latest.num_versions = 1
    return config


def _dynamic(pb, config, options: RepositoryOptions) -> None:
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us


def _control(pb, name: str, kind: str, *, dtype: str = "int32"):
    c = pb.ModelSequenceBatching.Control(kind=pb.ModelSequenceBatching.Control.Kind.Value(kind))
    if kind == "CONTROL_SEQUENCE_CORRID":
        c.data_type = pb.DataType.Value("TYPE_UINT64")
    else:
        c.int32_false_true.extend([0, 1])
    return pb.ModelSequenceBatching.ControlInput(name=name, control=[c])


def sequence_head_config(pb, model_name: str, stage: StageSpec, backend: str,
                         options: RepositoryOptions, state: dict):
    """The stateful head under the sequence batcher (``oldest``: requests of many sequences
    batched together). onnxruntime/tensorrt: implicit state; python: START/END/CORRID control
    inputs and the state kept in ``model.py``."""
    config = stage_config(pb, model_name, stage, backend, options,
                          exclude_inputs=(state["input"],))
    # the state output is not a model output either (the client may not ask for it)
    keep = [o for o in config.output if o.name != state["output"]]
    del config.output[:]
    config.output.extend(keep)
    seq = config.sequence_batching
    seq.max_sequence_idle_microseconds = options.max_sequence_idle_us
    seq.oldest.max_candidate_sequences = max(options.max_batch_size * 4, 64)
    seq.oldest.preferred_batch_size.append(options.max_batch_size)
    seq.oldest.max_queue_delay_microseconds = options.max_queue_delay_us
    seq.control_input.append(_control(pb, START, "CONTROL_SEQUENCE_START"))
    if backend == "python":
        seq.control_input.append(_control(pb, END, "CONTROL_SEQUENCE_END"))
        seq.control_input.append(_control(pb, CORRID, "CONTROL_SEQUENCE_CORRID"))
    else:
        st = pb.ModelSequenceBatching.State(input_name=state["input"], output_name=state["output"],
                                            data_type=pb.DataType.Value("TYPE_FP32"))
        st.dims.extend(state["dims"])
        # the START-aware graph ignores the incoming state on START; zeros keep it defined
        init = st.initial_state.add(data_type=st.data_type, name="zeros", zero_data=True)
        init.dims.extend(state["dims"])
        seq.state.append(st)
    return config


def ensemble_config(pb, name: str, manifest: Manifest, stages: dict[str, str],
                    options: RepositoryOptions):
    """Backbone -> head in one request per clip (stateful heads: the request carries the
    camera's sequence id, start and end, which Triton passes to the head)."""
    backbone, head = manifest.stage("backbone"), manifest.stage("head")
    config = pb.ModelConfig(name=name, platform="ensemble", max_batch_size=options.max_batch_size)
    config.input.extend(_tensor(pb, pb.ModelInput, t) for t in backbone.inputs)
    state_out = (manifest.protocol.state or {}).get("output")
    outs = [t for t in head.outputs if t.name != state_out]
    config.output.extend(_tensor(pb, pb.ModelOutput, t) for t in outs)
    for o in config.output:  # the ensemble sees the head's outputs as served: [batch, 1]
        o.ClearField("reshape")
    step_b = pb.ModelEnsembling.Step(model_name=stages["backbone"], model_version=-1)
    for t in backbone.inputs:
        step_b.input_map[t.name] = t.name
    step_h = pb.ModelEnsembling.Step(model_name=stages["head"], model_version=-1)
    state_in = (manifest.protocol.state or {}).get("input")
    for link in manifest.links:
        src_stage, _, src = link.source.partition("/")
        dst_stage, _, dst = link.target.partition("/")
        if dst_stage != "head" or link.via == "state" or dst == state_in:
            continue
        if src_stage != "backbone" or link.via != "identity":
            raise TritonRepositoryError(f"link {link.source} -> {link.target} ({link.via}) "
                                        "cannot run inside an ensemble")
        step_b.output_map[src] = f"backbone_{src}"
        step_h.input_map[dst] = f"backbone_{src}"
    for t in outs:
        step_h.output_map[t.name] = t.name
    config.ensemble_scheduling.step.extend([step_b, step_h])
    return config


def write_config(config, folder: Path) -> Path:
    from google.protobuf import text_format

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.pbtxt"
    path.write_text(text_format.MessageToString(config), encoding="utf-8")
    return path


def read_config(path: str | Path):
    """Parse a ``config.pbtxt`` with Triton's protobuf (raises on any unknown field)."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    return text_format.Parse(Path(path).read_text(encoding="utf-8"), pb.ModelConfig())


# --- The START-aware head graph -------------------------------------------------------------------

def start_aware_head(src: Path, dst: Path, state_input: str, initial: str) -> None:
    """Copy the head graph with a ``START`` [batch, 1] int32 input: where START is 1 the state
    input is replaced by ``initial`` (DAM: this clip's map), so an uninitialised state on a
    sequence's first request is never read."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("the sequence head needs onnx: pip install "
                                     "'edgevad[triton]'") from exc
    model = onnx.load(str(src))
    graph = model.graph
    names = {i.name for i in graph.input}
    if state_input not in names or initial not in names:
        raise TritonRepositoryError(f"head graph {src.name} has no inputs {state_input!r} and "
                                    f"{initial!r} to make START-aware")
    rank = next(len(i.type.tensor_type.shape.dim) for i in graph.input if i.name == initial)
    inner = f"{state_input}__effective"
    for node in graph.node:
        node.input[:] = [inner if n == state_input else n for n in node.input]
    for out in graph.output:  # an output that is the state input itself stays correct
        if out.name == state_input:
            raise TritonRepositoryError(f"head graph {src.name} outputs its state input")
    axes = list(range(2, rank))
    new_nodes = [
        helper.make_node("Cast", [START], ["edgevad_start_bool"], to=TensorProto.BOOL),
    ]
    cond = "edgevad_start_bool"
    if axes:
        graph.initializer.append(numpy_helper.from_array(np.array(axes, dtype=np.int64),
                                                         "edgevad_start_axes"))
        new_nodes.append(helper.make_node("Unsqueeze", [cond, "edgevad_start_axes"],
                                          ["edgevad_start_b"]))
        cond = "edgevad_start_b"
    new_nodes.append(helper.make_node("Where", [cond, initial, state_input], [inner]))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    start_vi = helper.make_tensor_value_info(START, TensorProto.INT32, [None, 1])
    if batch.dim_param:
        start_vi.type.tensor_type.shape.dim[0].dim_param = batch.dim_param
    graph.input.append(start_vi)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


# --- Writing --------------------------------------------------------------------------------------

def _engine_file(artifact: Path, stage: StageSpec, precision: str | None) -> Path:
    record = stage.engine(precision)
    if record is None:
        raise TritonRepositoryError(
            f"stage {stage.name!r} has no TensorRT engine"
            + (f" of precision {precision}" if precision else "")
            + f" in {artifact}; build them on the serving GPU first: edgevad build-engines "
            f"{artifact} (or write --backend onnxruntime)")
    return artifact / record["file"]


def _default_sys_path() -> tuple[str, ...]:
    import site

    paths = [p for p in site.getsitepackages() + [site.getusersitepackages()]
             if os.path.isdir(p)]
    paths += [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)
              and p not in paths and "site-packages" not in p
              and not p.startswith(sys.base_prefix)]
    return tuple(paths)


def write_repository(artifact_dir: str | Path, out: str | Path,
                     options: RepositoryOptions | None = None, *,
                     overwrite: bool = False) -> TritonRepository:
    """Write the model repository of the artifact at ``artifact_dir`` into ``out`` (module
    doc). The artifact is verified first (hashes, graph signatures). Returns what was written."""
    options = options or RepositoryOptions()
    options.check()
    pb = model_config_pb2()
    artifact = Path(artifact_dir)
    manifest = load_manifest(artifact, verify=True)
    if manifest.features is not None:
        raise TritonRepositoryError(
            f"{manifest.head!r} has no backbone stage: its head's input "
            f"({manifest.features.get('kind')}) is computed from each camera's optical flow by "
            "the client, and a Triton repository (the manifest rides on the backbone's config, "
            "the ensemble starts from pixels) cannot serve it; run it with edgevad run or "
            "edgevad.Detector (the head costs microseconds on a CPU)")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise TritonRepositoryError(f"{out} exists and is not empty; pass overwrite=True "
                                        "(--overwrite) to replace it")
        shutil.rmtree(out)
    name = options.name or manifest.head
    backend = options.backend
    sys_path = options.sys_path or (_default_sys_path() if backend == "python" else ())
    state_links = [link for link in manifest.links if link.via == "state"]
    proto_state = manifest.protocol.state or {}
    sequence = bool(state_links)
    head = manifest.stage("head")
    state = None
    if sequence:
        if len(state_links) != 1:
            raise TritonRepositoryError("heads with more than one state tensor are not "
                                        "supported")
        s_in = state_links[0].target.partition("/")[2]
        s_out = state_links[0].source.partition("/")[2]
        initial = proto_state.get("initial")
        if not initial:
            raise TritonRepositoryError("the manifest's state has no 'initial' input")
        state = {"input": s_in, "output": s_out, "dims": _dims(head.input(s_in)),
                 "initial": initial}
    stages = {s.name: f"{name}_{s.name}" for s in manifest.stages}
    version = str(options.version)
    out.mkdir(parents=True, exist_ok=True)
    manifest_text = manifest.to_json()
    manifest_param = json.dumps(manifest.to_dict(), separators=(",", ":"))
    for stage in manifest.stages:
        model_name = stages[stage.name]
        folder = out / model_name
        vdir = folder / version
        vdir.mkdir(parents=True)
        stage_backend = backend
        is_seq_head = sequence and stage.role == "head"
        if backend == "tensorrt" and is_seq_head:
            stage_backend = "onnxruntime"  # its START-aware graph has no engine
        if is_seq_head:
            assert state is not None  # made with the sequence batcher's head
            start_aware_head(artifact / stage.file, vdir / "model.onnx", state["input"],
                             state["initial"])
            config = sequence_head_config(pb, model_name, stage, stage_backend, options, state)
        else:
            if stage_backend == "tensorrt":
                shutil.copyfile(_engine_file(artifact, stage, options.precision),
                                vdir / "model.plan")
            else:
                shutil.copyfile(artifact / stage.file, vdir / "model.onnx")
            config = stage_config(pb, model_name, stage, stage_backend, options)
            _dynamic(pb, config, options)
        if stage_backend in ("onnxruntime", "python") and options.threads:
            key = "intra_op_thread_count" if stage_backend == "onnxruntime" else "EDGEVAD_THREADS"
            _param(config, key, str(options.threads))
        if stage_backend == "python":
            shutil.copyfile(Path(__file__).with_name("python_model.py"), vdir / "model.py")
            _param(config, "EDGEVAD_SYS_PATH", os.pathsep.join(sys_path))
            if is_seq_head:
                assert state is not None
                _param(config, "EDGEVAD_STATE_INPUT", state["input"])
                _param(config, "EDGEVAD_STATE_OUTPUT", state["output"])
                _param(config, "EDGEVAD_STATE_DIMS", json.dumps(state["dims"]))
                _param(config, "EDGEVAD_START_INPUT", START)
        if stage.role == "backbone":
            _param(config, MANIFEST_PARAMETER, manifest_param)
        (vdir / MANIFEST_FILE).write_text(manifest_text, encoding="utf-8")
        write_config(config, folder)
    ensemble = None
    if sequence:
        ensemble = name
        config = ensemble_config(pb, name, manifest, stages, options)
        _param(config, MANIFEST_PARAMETER, manifest_param)
        (out / name / version).mkdir(parents=True)  # Triton wants a version folder, even empty
        write_config(config, out / name)
    files = {p.relative_to(out).as_posix(): sha256_file(p)
             for p in sorted(out.rglob("*")) if p.is_file()}
    repo = TritonRepository(
        root=out, name=name, backend=backend, version=options.version, stages=stages,
        ensemble=ensemble, sequence=sequence, state=state, files=files,
        options={**asdict(options), "sys_path": list(sys_path)},
        manifest=manifest.to_dict())
    repo.options["artifact_manifest_sha256"] = sha256_file(artifact / MANIFEST_FILE)
    (out / INDEX_FILE).write_text(json.dumps(repo.to_dict(), indent=2) + "\n", encoding="utf-8")
    return repo


def read_repository(root: str | Path, *, verify: bool = True) -> TritonRepository:
    """Read ``edgevad-triton.json`` of a repository; with ``verify``, check every file's
    SHA-256 (a changed model file is refused by name)."""
    root = Path(root)
    path = root / INDEX_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TritonRepositoryError(f"{root} is not a repository written by edgevad triton "
                                    f"({path.name}: {exc})") from None
    if d.get("format") != REPOSITORY_FORMAT:
        raise TritonRepositoryError(f"{path} is not an edgevad Triton repository index")
    repo = TritonRepository(root=root, **{k: d[k] for k in (
        "name", "backend", "version", "stages", "ensemble", "sequence", "state", "files",
        "options", "manifest")})
    if verify:
        for rel, sha in repo.files.items():
            p = root / rel
            if not p.is_file():
                raise TritonRepositoryError(f"{rel} listed in {path.name} is missing from {root}")
            if sha256_file(p) != sha:
                raise TritonRepositoryError(f"{rel} changed since it was written (sha256 "
                                            f"mismatch) in {root}")
    return repo
