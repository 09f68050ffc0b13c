"""Serving edgevad models on NVIDIA Triton Inference Server: many cameras, one GPU server.

- :mod:`edgevad.triton.repository`: an exported artifact -> a Triton model repository
  (``edgevad triton ARTIFACT --out REPO``); torch-free, needs ``tritonclient`` and ``onnx``.
- :mod:`edgevad.triton.client`: :class:`~edgevad.triton.client.TritonDetector`, the Detector's
  API (push/process/flush/events) with the models on the server.
- :mod:`edgevad.triton.bench`: N cameras at once through the client and in-process
  (``edgevad triton-bench``): per-camera clip latency percentiles, total frames/s.
- :mod:`edgevad.triton.local_server`: a real ``tritonserver`` (python backend) from the
  ``nvidia-pytriton`` wheel, for tests and trials on a CPU machine.

Nothing here is imported by ``import edgevad``; tritonclient is imported lazily (the
``[triton]`` extra).
"""
