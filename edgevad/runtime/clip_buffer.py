"""A ring of pre-processed frames that hands out clips as views.

Each frame is pre-processed once, straight into its slot. The ring holds ``clip_len`` slots
stored twice (``[C, 2 * clip_len, h, w]``): frame ``i`` goes to slot ``i % clip_len`` and to its
mirror ``i % clip_len + clip_len``, so the last ``clip_len`` frames are always one contiguous
range of the time axis and a full clip is a view, not a copy. Copying a clip happens once per
clip, when clips of several streams are stacked into one engine batch.

Clip schedule (the same as ``edgevad extract``): clip ``k`` covers frames
``[k * stride, k * stride + clip_len)``; at the end of a stream, frames that no full clip
covered get one more clip starting at the next multiple of ``stride``, padded by repeating the
last frame (a stream shorter than one clip is one such padded clip).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["ClipBuffer"]


class ClipBuffer:
    """Frames in (by a fill callback), clips out. Not thread-safe: one buffer per stream."""

    def __init__(self, shape: tuple[int, int, int], clip_len: int, stride: int):
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
        c, h, w = (int(v) for v in shape)
        self.clip_len, self.stride = int(clip_len), int(stride)
        self._ring = np.zeros((c, 2 * self.clip_len, h, w), dtype=np.float32)
        self.frames = 0
        """Frames pushed so far."""
        self.clips = 0
        """Full clips handed out so far (the next full clip is number ``clips``)."""
        self._covered = 0  # frames covered by the clips handed out

    def needs(self, index: int) -> bool:
        """Whether frame ``index`` belongs to any clip (with ``stride > clip_len`` some do not,
        and need no pre-processing)."""
        return self.stride <= self.clip_len or index % self.stride < self.clip_len

    def push(self, fill: Callable[[np.ndarray], object] | None) -> np.ndarray | None:
        """Add the next frame; ``fill(slot)`` writes its float32 ``[C, h, w]`` data into ``slot``
        (None for a frame no clip uses). Returns the clip ``[C, T, h, w]`` (a view, valid until
        the next push) when this frame completes one, else None."""
        i = self.frames
        if fill is not None:
            s = i % self.clip_len
            fill(self._ring[:, s])
            if self.stride % self.clip_len:  # clips that start mid-ring read the mirror
                self._ring[:, s + self.clip_len] = self._ring[:, s]
        self.frames += 1
        start = self.clips * self.stride
        if start + self.clip_len == self.frames:
            self.clips += 1
            self._covered = self.frames
            s0 = start % self.clip_len
            return self._ring[:, s0:s0 + self.clip_len]
        return None

    @property
    def next_start(self) -> int:
        return self.clips * self.stride

    def tail(self) -> tuple[np.ndarray, int, int] | None:
        """The end-of-stream clip: ``(clip copy, start, real frames)`` when frames remain that no
        full clip covered, else None. Does not change the buffer."""
        n, start = self.frames, self.next_start
        if n == 0 or start >= n or self._covered >= n:
            return None
        idx = [min(j, n - 1) % self.clip_len for j in range(start, start + self.clip_len)]
        return self._ring[:, idx].copy(), start, n - start

    def reset(self) -> None:
        self._ring[...] = 0.0
        self.frames = self.clips = self._covered = 0
