"""The ``ucf-crime-r3d34`` protocol: how the UCF-Crime R3D-34 features in ``../shared`` were made.

Those features came from another project's extraction script (``../shared/data/README.md``).
A head trained on them only transfers to live video through a backbone that reproduces that
recipe, quirks included:

* frames read with OpenCV, resized to 112x112 (``cv2.resize``, bilinear, no crop), BGR -> RGB,
  float 0-255 with no mean subtraction (:data:`edgevad.artifact.zoo.UCF_CRIME_R3D34_GEOMETRY`);
* a video of F frames is cut into segments of ``L = F // 32`` frames starting at
  ``0, L, 2L, ...`` below ``F - L`` (31 to 33 segments); inside a segment, non-overlapping
  16-frame clips start at ``s, s + 16, ...`` below ``s + L - 16`` (a clip never reaches the
  segment's last frame); a video with ``L <= 16`` has no clip at all (upstream: extraction
  failed, ``n_segments == 0``). :func:`segment_clips`;
* each clip, an array (16, 112, 112, 3), goes to the network after a plain **reshape** to
  (1, 3, 16, 112, 112), not a transpose (:func:`scramble`), so channels and time are scrambled
  the same way for every clip;
* a segment's feature is the mean of its clips' 512-D features.

The segment loop is read from the data: with these rules the segment counts of 147 of the 151
videos of ``dev.npz`` follow from their frame counts exactly (the 14 empty videos included; the
other four are one segment off, as a decoded frame count one off the annotated count gives).
On live video there is no F: clips are cut continuously every 16 frames, so the clip features
are the upstream ones and only the segment boundaries are the runtime's. Numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from edgevad.artifact import zoo

PROTOCOL_NAME = "ucf-crime-r3d34"
BACKBONE = "r3d34-ucf-crime"
SEGMENTS = 32
CLIP_LEN = 16
SIZE = 112
SEGMENT_SCHEME = (
    "ucf-crime-r3d34: L = F // 32; segments start at 0, L, 2L, ... below F - L (31-33); "
    "non-overlapping 16-frame clips start at s, s + 16, ... below s + L - 16; a segment is the "
    "mean of its clips; L <= 16: no features"
)
CLIP_SCHEME = ("clip (16, 112, 112, 3) reshaped, not transposed, to (3, 16, 112, 112); on live "
               "video clips every 16 frames")


def protocol_record() -> dict:
    """The named protocol as a :class:`edgevad.artifact.protocols.FeatureProtocol` dict."""
    g = zoo.UCF_CRIME_R3D34_GEOMETRY
    return {"name": PROTOCOL_NAME, "backbone": BACKBONE, "feature_dim": 512,
            "clip_len": g.clip_len, "stride": g.stride, "geometry": g.to_dict(),
            "clip_scheme": CLIP_SCHEME, "input": "rgb-frames", "segments": SEGMENTS,
            "segment_scheme": SEGMENT_SCHEME}


def segment_clips(n_frames: int) -> list[list[int]]:
    """Start frame of every clip, segment by segment, of an ``n_frames`` video (module doc);
    ``[]`` when the video is too short for any clip (L = F // 32 <= 16)."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    seg_len = n_frames // SEGMENTS
    if seg_len <= CLIP_LEN:
        return []
    return [list(range(start, start + seg_len - CLIP_LEN, CLIP_LEN))
            for start in range(0, n_frames - seg_len, seg_len)]


def frame_input(frame_bgr: np.ndarray) -> np.ndarray:
    """One OpenCV frame -> float32 (112, 112, 3) RGB in 0-255, as upstream (H, W, C order)."""
    small = cv2.resize(frame_bgr, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return small[:, :, ::-1].astype(np.float32)


def scramble(clip_thwc: np.ndarray) -> np.ndarray:
    """Upstream's network input from a (16, 112, 112, 3) clip: a plain reshape to
    (3, 16, 112, 112) of the contiguous array (the quirk; a transpose would be correct)."""
    clip = np.ascontiguousarray(clip_thwc)
    if clip.shape[0] != CLIP_LEN or clip.shape[-1] != 3:
        raise ValueError(f"expected a (16, h, w, 3) clip, got {clip.shape}")
    return clip.reshape(3, CLIP_LEN, clip.shape[1], clip.shape[2])


def scramble_cthw(clip_cthw: np.ndarray) -> np.ndarray:
    """The same scramble from a properly laid out (3, 16, h, w) clip, as the runtime's clip
    buffer and the exported ``r3d34-ucf-crime`` graph receive it."""
    return scramble(np.transpose(clip_cthw, (1, 2, 3, 0)))


def video_features(frames: Sequence[np.ndarray],
                   backbone: Callable[[np.ndarray], np.ndarray], batch: int = 8) -> np.ndarray:
    """Segment features [S, D] of a whole video exactly as upstream (S = 31..33; [0, 0] when
    the video is too short). ``backbone``: float32 [N, 3, 16, 112, 112] -> [N, D]."""
    segments = segment_clips(len(frames))
    if not segments:
        return np.zeros((0, 0), dtype=np.float32)
    cache: dict[int, np.ndarray] = {}

    def frame(i: int) -> np.ndarray:
        if i not in cache:
            cache.clear() if len(cache) > 4 * CLIP_LEN else None
            cache[i] = frame_input(frames[i])
        return cache[i]

    out = []
    for starts in segments:
        clips = np.stack([scramble(np.stack([frame(s + t) for t in range(CLIP_LEN)]))
                          for s in starts])
        feats = np.concatenate([np.asarray(backbone(clips[i:i + batch]), dtype=np.float32)
                                for i in range(0, len(clips), batch)])
        out.append(feats.mean(axis=0))
    return np.stack(out).astype(np.float32)
