"""Triton python-backend model: one edgevad stage graph run by ONNX Runtime inside the server.

This file is copied as ``model.py`` into every model of a repository written with
``edgevad triton ... --backend python`` (:mod:`edgevad.triton.repository`). That variant exists
because the only Triton installable with pip (the server bundled in ``nvidia-pytriton``) has the
python backend only: the tests serve the same ONNX files, batching and ensemble through it. On a
GPU server use the ``onnxruntime`` or ``tensorrt`` repository instead.

It imports neither edgevad nor tritonclient (the stub's interpreter may have neither), only numpy
and onnxruntime; the stub ignores ``PYTHONPATH``, so the config parameter ``EDGEVAD_SYS_PATH``
(``os.pathsep``-separated folders) is prepended to ``sys.path`` before they are imported.

A stateful head (DAM) runs under the sequence batcher with START, END and CORRID control inputs.
Implicit state is not available to python models, so its state lives here, one array per
correlation id: the previous request's ``state_output`` is fed as ``state_input`` next time (what
Triton's implicit state does for the onnxruntime backend), START makes the graph ignore it, END
forgets it.

Tensors cross the stub through DLPack: with numpy 2 the stub's ``as_numpy()`` and
``Tensor(name, array)`` (pybind11 built for numpy 1) gave outputs of the right shape and no
bytes. The stub then logs "PyCapsule_GetPointer called with incorrect name" for each output
(numpy's capsule destructor seeing the capsule the stub consumed); the values are exact, as
the tests check against the in-process Detector.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _parameters(config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}


class TritonPythonModel:
    """One stage graph (see the module doc); requests of a batch run in one ONNX Runtime call."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = _parameters(config)
        for folder in reversed([p for p in params.get("EDGEVAD_SYS_PATH", "").split(os.pathsep)
                                if p]):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        import numpy as np
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.np, self.pb = np, pb_utils
        path = Path(args["model_repository"]) / args["model_version"] / params.get(
            "EDGEVAD_ONNX_FILE", "model.onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = int(params.get("EDGEVAD_THREADS", "0") or 0)
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.onnx_inputs = [i.name for i in self.session.get_inputs()]
        self.onnx_outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = [i["name"] for i in config.get("input", [])]
        self.outputs = [o["name"] for o in config.get("output", [])]
        self.controls = {}
        for c in (config.get("sequence_batching") or {}).get("control_input", []):
            for kind in c.get("control", []):
                self.controls[kind.get("kind", "")] = c["name"]
        self.state_input = params.get("EDGEVAD_STATE_INPUT") or None
        self.state_output = params.get("EDGEVAD_STATE_OUTPUT") or None
        self.start_input = params.get("EDGEVAD_START_INPUT") or None
        self.state_dims = tuple(json.loads(params.get("EDGEVAD_STATE_DIMS", "[]")))
        self.states: dict[int, object] = {}

    def _input(self, request, name: str):
        # through DLPack, not as_numpy(): the stub's pybind11 reads numpy 2 arrays wrongly
        # (outputs made from them arrived empty)
        return self.np.from_dlpack(self.pb.get_input_tensor_by_name(request, name))

    def _output(self, name: str, array):
        # the legacy "dltensor" capsule: numpy 2 hands out a versioned one to callers that ask
        return self.pb.Tensor.from_dlpack(name, self.np.ascontiguousarray(array).__dlpack__())

    def _control(self, request, kind: str):
        name = self.controls.get(kind)
        if name is None:
            return None
        return self._input(request, name).reshape(-1)[0]

    def execute(self, requests):
        np, pb = self.np, self.pb
        feeds: dict[str, list] = {n: [] for n in self.inputs}
        sizes, seqs = [], []
        for request in requests:
            n = 0
            for name in self.inputs:
                x = self._input(request, name)
                feeds[name].append(x)
                n = x.shape[0]
            sizes.append(n)
            if self.state_input is not None:
                corrid = int(self._control(request, "CONTROL_SEQUENCE_CORRID"))
                start = bool(self._control(request, "CONTROL_SEQUENCE_START"))
                end = bool(self._control(request, "CONTROL_SEQUENCE_END"))
                seqs.append((corrid, start, end, n))
        batch = {n: np.concatenate(v, axis=0) for n, v in feeds.items()}
        if self.state_input is not None:
            rows, starts = [], []
            for corrid, start, _end, n in seqs:
                prev = None if start else self.states.get(corrid)
                if prev is None:  # START (or a sequence this instance never saw): the graph
                    start = True  # takes its initial state from this clip
                    prev = np.zeros((n, *self.state_dims), dtype=np.float32)
                rows.append(prev)
                starts.append(np.full((n, 1), int(start), dtype=np.int32))
            batch[self.state_input] = np.concatenate(rows, axis=0)
            if self.start_input is not None:
                batch[self.start_input] = np.concatenate(starts, axis=0)
        wanted = [o for o in self.onnx_outputs if o in self.outputs or o == self.state_output]
        outs = dict(zip(wanted, self.session.run(wanted, {k: batch[k] for k in self.onnx_inputs})))
        responses, at = [], 0
        for i, n in enumerate(sizes):
            part = {k: v[at:at + n] for k, v in outs.items()}
            at += n
            if self.state_input is not None:
                corrid, _, end, _ = seqs[i]
                if end:
                    self.states.pop(corrid, None)
                else:
                    self.states[corrid] = np.array(part[self.state_output], copy=True)
            tensors = [self._output(k, part[k]) for k in self.outputs]
            responses.append(pb.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self):
        self.states.clear()
