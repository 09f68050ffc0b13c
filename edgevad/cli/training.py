"""Training-side commands of ``edgevad``: extract, train, eval, export.

Registered on the main app by ``edgevad.cli.main``; each imports ``edgevad_export`` (torch) only when
it runs, so ``edgevad --help`` stays torch-free. Options default to None and are resolved by the
library, so an unset flag never overrides a library default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from edgevad.errors import EdgevadError, MissingDependencyError

console = Console()


def training_side(command: str, module: str):
    """Import a training-side module, explaining the extra when torch is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{command} needs the training extra (torch): pip install 'edgevad[train]' ({exc})"
        ) from exc


def _given(**options) -> dict:
    """Only the options the user set."""
    return {k: v for k, v in options.items() if v is not None}


def _key_values(pairs: list[str] | None) -> dict:
    """``k=v`` strings -> dict, values parsed as JSON where they parse (numbers, booleans)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EdgevadError(f"Expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _read_config(path: Path) -> dict:
    """A JSON object from ``--config``; a missing file or bad JSON is one line, not a traceback."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgevadError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise EdgevadError(f"--config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EdgevadError(f"--config {path} must hold a JSON object of TrainConfig fields, got "
                           f"{type(data).__name__}")
    return data


def extract_command(
    inputs: List[Path] = typer.Argument(..., help="Videos, folders of videos, or list files "
                                        "(one 'path[,label[,category]]' a line)."),
    out: Path = typer.Option(..., "--out", "-o", help="Feature-bag file to write (.npz)."),
    backbone: str = typer.Option("i3d", help="Registered backbone (edgevad models)."),
    weights: Optional[str] = typer.Option(None, help="Weights name or file (default: the "
                                          "backbone's registered weights)."),
    random_init: bool = typer.Option(False, "--random-init", help="Random backbone weights "
                                     "(testing only; features are meaningless)."),
    segments: Optional[int] = typer.Option(None, help="Segments per video (default 32)."),
    clip_len: Optional[int] = typer.Option(None, help="Frames per clip (default: geometry)."),
    stride: Optional[int] = typer.Option(None, help="Frames between clips (default: geometry)."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per backbone call."),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cpu or cuda."),
    resume: bool = typer.Option(True, help="Reuse videos finished by an interrupted run."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    feature_map: bool = typer.Option(False, "--feature-map", help="Keep each clip's t x D "
                                     "feature map (I3D), flattened: what DAM heads train on."),
) -> None:
    """Extract feature bags from videos with a registered backbone (resumable)."""
    extract = training_side("edgevad extract", "edgevad_export.extraction.extract")
    try:
        report = extract.extract_features(
            inputs, backbone, out, weights=weights, random_init=random_init, resume=resume,
            progress=progress, feature_map=feature_map,
            **_given(segments=segments, clip_len=clip_len, stride=stride, batch_size=batch_size,
                     device=device))
    except KeyboardInterrupt:
        console.print(f"interrupted: run the same command again to resume (finished videos are "
                      f"kept in {out}.parts/)")
        raise typer.Exit(130) from None
    console.print(report.summary())
    if report.failed:
        raise typer.Exit(3)


def train_command(
    model: str = typer.Option(..., "--model", "-m", help="Head to train (edgevad models)."),
    features: Path = typer.Option(..., help="Training feature-bag file (.npz)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
    backbone: Optional[str] = typer.Option(None, help="Backbone that made the features."),
    motion_features: Optional[Path] = typer.Option(None, help="Motion-stream bags (dmrm)."),
    config: Optional[Path] = typer.Option(None, help="TrainConfig JSON; flags override it."),
    steps: Optional[int] = typer.Option(None),
    batch: Optional[int] = typer.Option(None, help="Anomalous and normal bags per step, each."),
    lr: Optional[float] = typer.Option(None),
    optimizer: Optional[str] = typer.Option(None, help="adagrad, adam, adamw or sgd."),
    weight_decay: Optional[float] = typer.Option(None),
    topk: Optional[int] = typer.Option(None, help="mil-ctx: rank the mean of the top k."),
    seed: Optional[int] = typer.Option(None),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    head_kwarg: Optional[List[str]] = typer.Option(None, help="Head builder argument KEY=VALUE "
                                                   "(repeatable)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train an anomaly head on feature bags with video-level labels."""
    training = training_side("edgevad train", "edgevad_export.training")
    settings = _read_config(config) if config else {}
    settings.update(_given(model=model, backbone=backbone, steps=steps, lr=lr, optimizer=optimizer,
                           weight_decay=weight_decay, topk=topk, seed=seed, threads=threads))
    if batch is not None:
        settings.update(batch_anomalous=batch, batch_normal=batch)
    if head_kwarg:
        settings["head_kwargs"] = {**settings.get("head_kwargs", {}), **_key_values(head_kwarg)}
    cfg = training.TrainConfig.from_dict(settings)
    folder = training.train(cfg, features, out, motion_bags=motion_features, progress=progress)
    console.print(f"[green]checkpoint[/green] {folder}")


def fit_prior_command(
    videos: List[Path] = typer.Argument(..., help="Normal videos of the scene, or folders of "
                                        "them (no anomaly in any frame)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
    model: str = typer.Option("motion-prior", "--model", "-m", help="The prior to fit."),
) -> None:
    """Fit motion-prior's normality statistics on a scene's normal videos (no labels, no
    backbone: the runtime's own flow statistics per clip); export it with edgevad export."""
    prior = training_side("edgevad fit-prior", "edgevad_export.training.prior")
    folder = prior.fit_prior(videos, out, model=model,
                             progress=lambda name, k: console.print(f"{name}: {k} clips"))
    meta = json.loads((folder / "checkpoint.json").read_text("utf-8"))
    rec = meta.get("threshold") or {}
    if rec.get("value") is None:
        console.print(f"threshold {meta.get('default_threshold')} (the zoo's): "
                      f"{rec.get('note', 'not calibrated')}")
    else:
        held = ", ".join(f"{v['file']} {v['max']:.3f}" for v in rec["held_out"])
        console.print(f"threshold {rec['value']:.3f}: the highest score of a normal video held "
                      f"out of the fit (each in turn: {held}). Held-out scores near 1 mean "
                      "each video moves unlike the others: fit on more of the scene's footage")
    console.print(f"[green]checkpoint[/green] {folder}")


def eval_command(
    videos: Optional[List[Path]] = typer.Argument(None, help="With --artifacts: labelled videos, "
                                                  "folders or list files (see --frame-labels)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint folder written by edgevad "
                                              "train (with --features)."),
    features: Optional[Path] = typer.Option(None, help="Test feature-bag file with frame "
                                            "annotations (with --checkpoint)."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", "-a", help="Evaluate an "
                                             "exported artifact live on VIDEOS instead (any "
                                             "model, motion-prior included)."),
    frame_labels: Optional[Path] = typer.Option(None, help="With --artifacts: JSON, video name "
                                                "-> one 0/1 per frame or [start, end] frame "
                                                "intervals."),
    normal: Optional[List[Path]] = typer.Option(None, "--normal", help="With --artifacts: "
                                                "all-normal videos or folders (repeatable; no "
                                                "labels needed)."),
    backend: str = typer.Option("auto", help="With --artifacts: the runtime backend."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json, "
                                       "roc.png and per-video curves."),
    threshold: Optional[float] = typer.Option(None, help="FAR threshold (default: the head's)."),
    scores_out: Optional[Path] = typer.Option(None, help="Write per-video segment scores (.npz)."),
    motion_features: Optional[Path] = typer.Option(None, help="Motion-stream bags (dmrm)."),
    curves: bool = typer.Option(True, help="Per-video score-curve PNGs."),
) -> None:
    """Evaluate a trained head on feature bags (--checkpoint, --features), or an exported model
    live on labelled videos (--artifacts): frame AUC, AP, false alarm rate, video AUC."""
    if artifacts is not None:
        if checkpoint is not None or features is not None:
            raise typer.BadParameter("give --artifacts (videos) or --checkpoint with --features "
                                     "(feature bags), not both", param_hint="--artifacts")
        videos_eval = training_side("edgevad eval", "edgevad_export.evaluation.videos")
        report = videos_eval.evaluate_videos(
            artifacts, videos or [], frame_labels=frame_labels, normal=normal or [],
            backend=backend, threshold=threshold, out_dir=out,
            progress=lambda name, r: console.print(
                f"{name}: {r['frames']} frames, max {r['max_score']:.3f}, {r['events']} "
                "event(s)", highlight=False))
        shown = {k: report[k] for k in ("frame_auc", "average_precision", "far", "video_auc")}
        console.print_json(json.dumps({**shown, "alarms": report["alarms"]}))
        for name, why in report["not_scored"].items():
            console.print(f"[yellow]not scored[/yellow] {name}: {why}", highlight=False)
        if out:
            console.print(f"report: {out / 'report.json'}")
        return
    if checkpoint is None or features is None:
        raise typer.BadParameter("give --checkpoint and --features (feature bags), or "
                                 "--artifacts with videos", param_hint="--checkpoint")
    if videos:
        raise typer.BadParameter("VIDEOS go with --artifacts; --checkpoint reads --features",
                                 param_hint="VIDEOS")
    evaluation = training_side("edgevad eval", "edgevad_export.evaluation.evaluate")
    report = evaluation.evaluate(checkpoint, features, out_dir=out, scores_out=scores_out,
                                 motion_bags=motion_features, curves=curves,
                                 **_given(threshold=threshold))
    shown = {k: report[k] for k in ("frame_auc", "average_precision", "far", "video_auc")
             if k in report}
    console.print_json(json.dumps(shown))
    if "classification" in report:
        console.print(f"classification accuracy: {report['classification'].get('accuracy')}")
    console.print(f"not scored: {json.dumps(report.get('not_scored', {}))}")
    if out:
        console.print(f"report: {out / 'report.json'}")


def export_command(
    model: str = typer.Option(..., "--model", "-m", help="Head to export (edgevad models)."),
    out: Path = typer.Option(..., "--out", "-o", help="Artifact folder to create."),
    backbone: Optional[str] = typer.Option(None, help="Backbone (default: the head's)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Trained head: checkpoint folder or "
                                              "state-dict file."),
    backbone_weights: Optional[str] = typer.Option(None, help="Backbone weights name or file."),
    motion_weights: Optional[str] = typer.Option(None, help="Motion-stream weights file (dmrm)."),
    random_init: bool = typer.Option(False, "--random-init", help="Allow random weights for "
                                     "every stage without weights (untrained: testing only)."),
    random_init_stage: Optional[List[str]] = typer.Option(None, help="Allow random weights for "
                                                          "this stage only: head, backbone, motion."),
    precision: Optional[str] = typer.Option(None, help="fp32 (default), fp16, or int8 "
                                            "(calibrated; see --calib)."),
    format: Optional[List[str]] = typer.Option(None, "--format", help="onnx (default), "
                                               "tensorrt (engines built here: TensorRT + GPU)."),
    calib: Optional[List[str]] = typer.Option(None, help="INT8 calibration: a set made by "
                                              "edgevad calibrate, videos/folders/list files, or "
                                              "a feature-bag file for the head (repeatable)."),
    calib_method: Optional[str] = typer.Option(None, help="minmax (default), entropy or "
                                               "percentile."),
    calib_samples: Optional[int] = typer.Option(None, help="Clips sampled from calibration "
                                                "videos (default 32)."),
    val: Optional[Path] = typer.Option(None, help="Labelled data for the accuracy gate: a "
                                       "feature-bag file with frame annotations, or a folder "
                                       "of videos with a *labels*.json (Ped2 layout)."),
    max_auc_drop: Optional[float] = typer.Option(None, help="Fail when the frame AUC on --val "
                                                 "falls by more than this many points "
                                                 "(default 1)."),
    max_score_diff: Optional[float] = typer.Option(None, help="Fail when a per-clip score "
                                                   "moves more than this from fp32."),
    engine_max_batch: Optional[int] = typer.Option(None, help="TensorRT profile: largest "
                                                   "batch (default 8)."),
    sample_video: Optional[Path] = typer.Option(None, help="Real video for the parity check "
                                                "(default: synthetic frames)."),
    overwrite: bool = typer.Option(False, help="Replace an existing artifact folder."),
    opset: Optional[int] = typer.Option(None, help="ONNX opset."),
) -> None:
    """Export a model to an artifact folder: ONNX per stage, manifest.json, parity.json."""
    exporter = training_side("edgevad export", "edgevad_export.exporter")
    folder = exporter.export_model(
        model, out, random_init=True if random_init else (random_init_stage or False),
        overwrite=overwrite,
        **_given(backbone=backbone, checkpoint=checkpoint, backbone_weights=backbone_weights,
                 motion_weights=motion_weights, precision=precision,
                 formats=tuple(format) if format else None, sample_video=sample_video,
                 opset=opset, calib=calib or None, calib_method=calib_method,
                 calib_samples=calib_samples, val=val, max_auc_drop=max_auc_drop,
                 max_score_diff=max_score_diff, engine_max_batch=engine_max_batch))
    console.print(f"[green]artifact[/green] {folder}")


def calibrate_command(
    inputs: List[Path] = typer.Argument(..., help="Videos, folders of videos or list files; "
                                        "or one feature-bag file (.npz) for a head set."),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration set to write (.npz)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Take the geometry from "
                                        "this head's pipeline (edgevad models)."),
    backbone: Optional[str] = typer.Option(None, help="Backbone whose geometry to use (default: "
                                           "the model's)."),
    stage: str = typer.Option("backbone", help="backbone, motion (DMRM's flow stream) or head "
                              "(from feature bags)."),
    samples: Optional[int] = typer.Option(None, help="Clips to sample across the videos "
                                          "(default 32; bags: 64)."),
    method: Optional[str] = typer.Option(None, help="Default method stored with the set: "
                                         "minmax, entropy or percentile."),
    segments: Optional[int] = typer.Option(None, help="Head sets: segments per bag (default: "
                                           "the model's, else 32)."),
) -> None:
    """Build a calibration set for INT8 export (torch-free): clips sampled across videos and
    preprocessed exactly as the runtime does, or head inputs from feature bags."""
    from edgevad.artifact import zoo
    from edgevad_calibration import build_from_bags, build_from_videos

    head = zoo.get_head(model) if model else None
    bb = zoo.get_backbone(backbone or (head.default_backbone if head else "i3d"))
    opts = _given(method=method)
    if stage == "head":
        if len(inputs) != 1 or inputs[0].suffix != ".npz":
            raise EdgevadError("a head set is built from one feature-bag file (.npz)")
        S = segments or (head.segments if head and head.segments else 32)
        cset = build_from_bags(inputs[0], segments=S, input_name=(head.inputs[0] if head
                                                                  else "features"),
                               **_given(samples=samples), **opts)
    elif stage in ("backbone", "motion"):
        if stage == "motion":
            if not head or not head.motion_backbone:
                raise EdgevadError("--stage motion needs --model with a motion stream (dmrm)")
            geometry = zoo.get_backbone(head.motion_backbone).geometry
        else:
            geometry = bb.geometry
            if head is not None and head.clip_len and head.clip_len != geometry.clip_len:
                from dataclasses import replace

                geometry = replace(geometry, clip_len=head.clip_len, stride=head.clip_len)
        cset = build_from_videos(inputs, geometry, **_given(samples=samples), **opts)
    else:
        raise EdgevadError(f"--stage must be backbone, motion or head, not {stage!r}")
    path = cset.save(out)
    console.print(f"[green]calibration set[/green] {path}: {cset.n_samples} {cset.role} samples "
                  f"of {list(cset.sample_shape(cset.input_names[0]))}, method {cset.method}, "
                  f"from {len(cset.sources)} source(s); data sha256 {cset.data_sha256[:16]}")


def build_engines_command(
    artifact: Path = typer.Argument(..., help="Artifact folder written by edgevad export."),
    precision: Optional[List[str]] = typer.Option(None, help="Engine precisions (default: fp16, "
                                                  "and int8 when the artifact has Q/DQ graphs)."),
    max_batch: int = typer.Option(8, help="Largest batch of the optimisation profile."),
) -> None:
    """Build TensorRT engines for an exported artifact on this machine (no torch needed)."""
    from edgevad.artifact.manifest import load_manifest
    from edgevad_calibration.tensorrt_build import build_artifact_engines

    manifest = load_manifest(artifact)
    wanted = list(precision or [])
    if not wanted:
        wanted = (["int8"] if all("int8_qdq" in s.variants for s in manifest.stages
                                  if s.role != "head") else []) + ["fp16"]
    manifest = build_artifact_engines(artifact, wanted, max_batch=max_batch)
    for s in manifest.stages:
        for e in s.engines:
            console.print(f"{s.name}: {e['file']} ({e['precision']}, {e['gpu']})")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
    app.command("build-engines")(build_engines_command)
    app.command("extract")(extract_command)
    app.command("train")(train_command)
    app.command("fit-prior")(fit_prior_command)
    app.command("eval")(eval_command)
    app.command("export")(export_command)
