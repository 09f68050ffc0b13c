"""``TritonDetector``: the Detector's API (push/process/flush/events) with the models on a Triton
server, so scaling cameras out to a GPU server is a deployment choice, not a rewrite.

    det = TritonDetector.connect("gpu-server:8001", model="dam-dist")   # gRPC; or protocol="http"
    for frame in camera:
        for r in det.push(frame, stream="gate", timestamp=t):
            print(r.index, r.score)
    det.flush("gate")

It *is* a :class:`~edgevad.runtime.detector.Detector`: decoding, pre-processing (from the
manifest, which the server hands out as a config parameter of the backbone model), the clip
buffers, windows, events and bad-input checks are the Detector's own code, per stream, on the
client. Only the engines change:

- Stateless stages (every backbone; MIL/MRM/mil-ctx/joint heads) are :class:`TritonEngine`
  runners behind the runtime's Engine interface, so the Detector's :class:`Pipeline` calls them
  as it calls ONNX Runtime: the client keeps each camera's window of clip features and the
  server's dynamic batcher batches clips of all the cameras that reach it.
- A stateful head (DAM) keeps its state on the server: :class:`SequencePipeline` sends each
  clip to the ensemble with the camera's sequence id (a random 63-bit id per stream and start;
  ``sequence_start`` on its first clip, ``sequence_end`` on its last, at :meth:`flush`). A
  :meth:`reset`, :meth:`remove` or an eviction ends the sequence; the next clip starts a new
  one, exactly as the in-process Detector forgets the previous clip map.

Requests of one call go out concurrently from a thread pool with one synchronous client per
thread: tritonclient's gRPC ``async_infer`` callbacks never fired in trials here, synchronous
calls from threads did. Needs ``tritonclient[grpc]`` or ``[http]`` (the ``[triton]`` extra),
imported lazily.
"""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from edgevad.artifact.manifest import Manifest, ManifestError, StageSpec
from edgevad.errors import MissingDependencyError
from edgevad.runtime.detector import Detector
from edgevad.runtime.engines import Engine, EngineError, StageRunner
from edgevad.runtime.pipeline import ClipOutput, ClipState, Pipeline, _softmax
from edgevad.runtime.stream import StreamSession

__all__ = ["SequencePipeline", "TritonConnection", "TritonDetector", "TritonEngine",
           "TritonError"]

MANIFEST_PARAMETER = "edgevad_manifest"
_SEQ = "triton.sequence_id"
_END = "triton.end"
_NP_TO_TRITON = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int32": "INT32",
                 "int64": "INT64", "uint8": "UINT8", "int8": "INT8", "bool": "BOOL"}


class TritonError(EngineError):
    """The Triton server cannot be reached, lacks the models, or refused a request."""


def _tritonclient(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as tc
        elif protocol == "http":
            import tritonclient.http as tc
        else:
            raise TritonError(f"protocol must be grpc or http, not {protocol!r}")
        from tritonclient.utils import InferenceServerException
    except ImportError as exc:
        raise MissingDependencyError("the Triton client needs tritonclient: pip install "
                                     "'edgevad[triton]'") from exc
    return tc, InferenceServerException


class TritonConnection:
    """A server URL and protocol; one synchronous tritonclient per thread (module doc)."""

    def __init__(self, url: str, protocol: str = "grpc", timeout_s: float | None = 60.0):
        self.url, self.protocol = url, protocol.lower()
        self.timeout_s = timeout_s
        self.tc, self.Error = _tritonclient(self.protocol)
        self._local = threading.local()

    @property
    def client(self):
        c = getattr(self._local, "client", None)
        if c is None:
            if self.protocol == "http":
                c = self.tc.InferenceServerClient(self.url, connection_timeout=self.timeout_s,
                                                  network_timeout=self.timeout_s)
            else:
                c = self.tc.InferenceServerClient(self.url)
            self._local.client = c
        return c

    def config(self, model: str) -> dict:
        """The model's configuration as a dict (both protocols)."""
        try:
            if self.protocol == "grpc":
                return self.client.get_model_config(model, as_json=True)["config"]
            return self.client.get_model_config(model)
        except self.Error as exc:
            raise TritonError(f"Triton at {self.url} ({self.protocol}): cannot read model "
                              f"{model!r}: {exc}") from None

    def infer(self, model: str, feeds: dict[str, np.ndarray], outputs: Sequence[str],
              **sequence) -> dict[str, np.ndarray]:
        tc = self.tc
        inputs = []
        for name, x in feeds.items():
            i = tc.InferInput(name, list(x.shape), _NP_TO_TRITON[str(x.dtype)])
            i.set_data_from_numpy(x)
            inputs.append(i)
        wanted = [tc.InferRequestedOutput(n) for n in outputs]
        kw = {}
        if self.protocol == "grpc" and self.timeout_s:
            kw["client_timeout"] = self.timeout_s
        try:
            result = self.client.infer(model, inputs, outputs=wanted, **sequence, **kw)
        except self.Error as exc:
            raise TritonError(f"Triton at {self.url}: model {model!r} failed: {exc}") from None
        return {n: result.as_numpy(n) for n in outputs}


def _as_manifest_shape(x: np.ndarray, rank: int) -> np.ndarray:
    """Triton serves a per-item scalar as ``[batch, 1]``; the manifest says ``[batch]``."""
    if x.ndim == rank + 1 and x.shape[-1] == 1:
        return x.reshape(x.shape[:-1])
    return x


class TritonEngine(StageRunner):
    """One stateless stage served by Triton, behind the runtime's Engine interface."""

    backend = "triton"

    def __init__(self, connection: TritonConnection, model: str, stage: StageSpec,
                 max_batch: int):
        self.connection, self.model, self.stage = connection, model, stage
        self.max_batch = max(1, int(max_batch))
        self.device = f"{model} on Triton at {connection.url} ({connection.protocol})"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._checked_feeds(feeds)
        n = next(iter(feeds.values())).shape[0]
        parts = []
        for b in range(0, n, self.max_batch):  # the server's max_batch_size bounds a request
            parts.append(self.connection.infer(
                self.model, {k: v[b:b + self.max_batch] for k, v in feeds.items()},
                self.output_names))
        out = {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}
        return {spec.name: _as_manifest_shape(out[spec.name], spec.rank)
                for spec in self.stage.outputs}


class SequencePipeline(Pipeline):
    """A stateful head on the server: one ensemble request per clip, with the stream's sequence
    id (module doc). ``states`` carry only the sequence bookkeeping here."""

    def __init__(self, manifest: Manifest, engines: dict, connection: TritonConnection,
                 ensemble: str, head_model: str, max_batch: int):
        super().__init__(manifest, engines)
        if self.has_motion:
            raise ManifestError("a stateful head with a motion stage has no ensemble")
        self.connection, self.ensemble, self.head_model = connection, ensemble, head_model
        state_out = (manifest.protocol.state or {}).get("output")
        head = manifest.stage("head")
        self.outputs = [o for o in head.output_names if o != state_out]
        self._ranks = {o.name: o.rank for o in head.outputs}
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(max_batch)),
                                        thread_name_prefix="edgevad-triton")
        self._ids = random.SystemRandom()

    def _one(self, clip: np.ndarray, state: ClipState) -> dict[str, np.ndarray]:
        seq = state.state.get(_SEQ)
        start = seq is None
        if seq is None:
            seq = np.array(self._ids.getrandbits(63) or 1, dtype=np.uint64)
        end = bool(state.state.pop(_END, False))
        out = self.connection.infer(
            self.ensemble, {"clip": np.ascontiguousarray(clip[None], dtype=np.float32)},
            self.outputs, sequence_id=int(seq), sequence_start=start, sequence_end=end)
        if end:
            state.state.pop(_SEQ, None)
        else:
            state.state[_SEQ] = seq
        return {k: _as_manifest_shape(v, self._ranks[k])[0] for k, v in out.items()}

    def run(self, clips: list[np.ndarray], flows, states: list[ClipState]) -> list[ClipOutput]:
        if not clips:
            return []
        if len({id(s) for s in states}) != len(states):  # one stream twice: keep its order
            return [o for c, s in zip(clips, states) for o in self.run([c], flows, [s])]
        outs = list(self._pool.map(self._one, clips, states))
        results = []
        for o in outs:
            probs = None
            if self.class_output is not None:
                probs = _softmax(np.asarray(o[self.class_output], dtype=np.float64)[None])[0]
            s = np.asarray(o[self.score_output], dtype=np.float64).reshape(-1)
            results.append(ClipOutput(float(s[-1]), probs))
        return results

    def end(self, state: ClipState) -> None:
        """End the stream's open sequence on the server (frees DAM's state there) with one
        small request to the head: its inputs are zeros and its outputs are dropped."""
        seq = state.state.pop(_SEQ, None)
        state.state.pop(_END, None)
        if seq is None:
            return
        head = self.manifest.stage("head")
        state_in = (self.manifest.protocol.state or {}).get("input")
        feeds = {t.name: np.zeros([1] + [d if isinstance(d, int) else 1 for d in t.shape[1:]],
                                  dtype=t.dtype)
                 for t in head.inputs if t.name != state_in}
        self.connection.infer(self.head_model, feeds, self.outputs[:1], sequence_id=int(seq),
                              sequence_end=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class TritonDetector(Detector):
    """A :class:`Detector` whose models run on a Triton server (module doc). Build it with
    :meth:`connect`."""

    connection: TritonConnection

    @classmethod
    def connect(cls, url: str, model: str, *, protocol: str = "grpc",
                timeout_s: float | None = 60.0, **options) -> TritonDetector:
        """Connect to the repository ``model`` (the name given to ``edgevad triton``, e.g.
        ``dam-dist``) served at ``url`` (``host:8001`` for gRPC, ``host:8000`` for HTTP).
        ``options``: as :meth:`Detector.load` (``events``, ``on_event``, ``fps``,
        ``max_batch``, ``idle_timeout_s``)."""
        conn = TritonConnection(url, protocol, timeout_s)
        backbone_cfg = conn.config(f"{model}_backbone")
        text = ((backbone_cfg.get("parameters") or {}).get(MANIFEST_PARAMETER) or {}).get(
            "string_value")
        if not text:
            raise TritonError(f"model {model}_backbone at {url} carries no edgevad manifest: "
                              "was the repository written by edgevad triton?")
        manifest = Manifest.from_dict(json.loads(text))
        manifest.check_consistency()
        server_batch = int(backbone_cfg.get("max_batch_size") or 1)
        max_batch = min(int(options.pop("max_batch", server_batch)), server_batch)
        engines: dict[str, Engine] = {s.name: TritonEngine(conn, f"{model}_{s.name}", s,
                                                           server_batch)
                                      for s in manifest.stages}
        det = cls(manifest, engines, artifact_dir=Path(f"triton://{url}/{model}"),
                  max_batch=max_batch, **options)
        det.connection = conn
        head_cfg = conn.config(f"{model}_head")
        if head_cfg.get("sequence_batching") is not None:
            conn.config(model)  # the ensemble must be there too
            det.pipeline = SequencePipeline(manifest, engines, conn, model, f"{model}_head",
                                            max_batch)
        elif any(link.via == "state" for link in manifest.links):
            raise TritonError(f"{model}_head at {url} has no sequence batcher, but the model "
                              "keeps state per camera: rewrite the repository with edgevad triton")
        return det

    @property
    def sequences(self) -> bool:
        """Whether per-camera state lives on the server (a stateful head)."""
        return isinstance(self.pipeline, SequencePipeline)

    def flush(self, stream: str | None = None) -> list:
        sessions = self._flushing(stream)
        for s in sessions:  # the tail clip, when there is one, ends the sequence
            s.clip_state.state[_END] = np.array(True)
        results = super().flush(stream)
        for s in sessions:
            self._end(s)
        return results

    def reset(self, stream: str = "0") -> None:
        self._end(self._session(stream))
        super().reset(stream)

    def remove(self, stream: str) -> None:
        s = self._streams.get(str(stream))
        if s is not None:
            self._end(s)
        super().remove(stream)

    def close(self) -> None:
        """End every open sequence and stop the request threads."""
        for s in list(self._streams.values()):
            self._end(s)
        if isinstance(self.pipeline, SequencePipeline):
            self.pipeline.close()

    def __enter__(self) -> TritonDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _flushing(self, stream: str | None) -> list[StreamSession]:
        if not self.sequences:
            return []
        sessions = list(self._streams.values()) if stream is None else [self._session(stream)]
        return [s for s in sessions if not s.finished]

    def _end(self, session: StreamSession) -> None:
        if isinstance(self.pipeline, SequencePipeline):
            self.pipeline.end(session.clip_state)
        else:
            session.clip_state.state.pop(_END, None)

