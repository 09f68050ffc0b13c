"""Feature extraction: videos -> per-segment backbone features in the feature-bag format."""

from edgevad_export.extraction.extract import (
    ExtractionError,
    ExtractReport,
    VideoItem,
    clip_starts,
    collect_videos,
    extract_features,
    pool_segments,
    read_protocol,
)

__all__ = [
    "ExtractReport", "ExtractionError", "VideoItem", "clip_starts", "collect_videos",
    "extract_features", "pool_segments", "read_protocol",
]
