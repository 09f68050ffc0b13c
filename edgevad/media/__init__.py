"""Frames in: video files, cameras and streams, per-frame preprocessing and optical flow.

- :mod:`~edgevad.media.video`: :class:`~edgevad.media.video.VideoReader` (OpenCV) and video
  listing.
- :mod:`~edgevad.media.sources`: frame sources for ``edgevad run`` (files, folders, cameras,
  RTSP with reconnects).
- :mod:`~edgevad.media.preprocess`: a frame -> a model's input geometry (resize, crop, colour,
  normalisation), as the zoo spec says.
- :mod:`~edgevad.media.motion`: DIS optical flow, its network encoding and motion boxes.

numpy and OpenCV, no torch; imports :mod:`edgevad.errors` and :mod:`edgevad.artifact.zoo` (input
geometry) only. :mod:`edgevad.runtime` sits on top.
"""
