"""The runtime: stage engines, per-stream clip buffers, the Detector and its events (torch-free)."""
