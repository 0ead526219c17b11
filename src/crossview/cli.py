"""The ``crossview`` command line: thin wrappers that call the library and print with rich."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from crossview.runtime.cli import calibrate, run, site_app
from crossview.serve.cli import keys_app, serve

if TYPE_CHECKING:
    from crossview.eval.mot import MotScores

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Multi-camera perception and visual search."
)
eval_app = typer.Typer(no_args_is_help=True, help="Score outputs against ground truth.")
sample_app = typer.Typer(no_args_is_help=True, help="Write synthetic sample data with ground truth.")
app.add_typer(eval_app, name="eval")
app.add_typer(sample_app, name="sample")
app.add_typer(keys_app, name="keys")
app.command("serve")(serve)
app.add_typer(site_app, name="site")
app.command("calibrate")(calibrate)
app.command("run")(run)

console = Console()
errors = Console(stderr=True)


class Protocol(StrEnum):
    mot17 = "mot17"
    mot20 = "mot20"
    mot15 = "mot15"


class Missing(StrEnum):
    error = "error"
    empty = "empty"


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)  # one greppable line
    return typer.Exit(code=2)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    console.print(f"wrote {path}")


MOT_COLUMNS = (
    ("HOTA", True),
    ("DetA", True),
    ("AssA", True),
    ("MOTA", True),
    ("IDF1", True),
    ("IDSW", False),
    ("CLR_FP", False),
    ("CLR_FN", False),
    ("Frag", False),
)


def _print_scores(
    title: str, label: str, rows: Mapping[str, MotScores], total: tuple[str, MotScores]
) -> None:
    """One row of MOT figures per sequence or camera, then the total row under a rule."""
    table = Table(title=title)
    table.add_column(label)
    for column, _ in MOT_COLUMNS:
        table.add_column(column.removeprefix("CLR_"), justify="right")
    for index, (name, scores) in enumerate([*rows.items(), total]):
        summary = scores.summary()
        cells = [
            f"{100 * summary[c]:.2f}" if is_score else f"{int(summary[c])}" for c, is_score in MOT_COLUMNS
        ]
        table.add_row(name, *cells, end_section=index == len(rows) - 1)
    console.print(table)


@eval_app.command("mot")
def eval_mot(
    gt: Annotated[Path, typer.Option(help="Folder with <seq>/gt/gt.txt and <seq>/seqinfo.ini")],
    pred: Annotated[Path, typer.Option(help="Folder with <seq>.txt tracker results")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every figure to this JSON file")
    ] = None,
    protocol: Annotated[
        Protocol,
        typer.Option(help="mot17/mot20: pedestrians, distractors removed; mot15: every box, no classes"),
    ] = Protocol.mot17,
    seq: Annotated[list[str] | None, typer.Option(help="Evaluate only these sequences (repeatable)")] = None,
    pred_name: Annotated[str, typer.Option(help="Prediction file stem, {seq} is replaced")] = "{seq}",
    missing: Annotated[
        Missing, typer.Option(help="A sequence with no prediction file: error, or score it as all misses")
    ] = Missing.error,
) -> None:
    """HOTA, CLEAR (MOTA...) and Identity (IDF1...) per sequence and combined, equal to TrackEval."""
    from crossview.eval.mot import (
        MissingSequenceError,
        MotProtocol,
        SequenceError,
        evaluate_mot_dirs,
        find_sequences,
    )
    from crossview.io.formats import FormatError

    chosen = {"mot17": MotProtocol.mot17, "mot20": MotProtocol.mot20, "mot15": MotProtocol.mot15}[
        protocol.value
    ]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unexpected files are reported below, once
        try:
            names = seq or find_sequences(gt)
            evaluation = evaluate_mot_dirs(
                gt,
                pred,
                protocol=chosen,
                sequences=names,
                missing=missing.value,
                pred_names={name: pred_name.format(seq=name) for name in names},
            )
        except (FileNotFoundError, MissingSequenceError, FormatError, SequenceError) as error:
            raise _fail(str(error)) from None
    title = f"MOT evaluation ({protocol.value} protocol; scores in %)"
    _print_scores(title, "sequence", evaluation.sequences, ("COMBINED", evaluation.combined))
    for name in evaluation.missing_predictions:
        errors.print(f"[yellow]warning:[/] no predictions for {name}: scored as all misses")
    for name in evaluation.unexpected_predictions:
        errors.print(f"[yellow]warning:[/] predictions for {name} have no ground truth: not scored")
    if json_path is not None:
        _write_json(json_path, evaluation.to_dict())


@eval_app.command("coco")
def eval_coco(
    gt: Annotated[Path, typer.Option(help="COCO ground truth JSON (images, annotations, categories)")],
    pred: Annotated[
        Path, typer.Option(help="COCO results JSON: a list of {image_id, category_id, bbox, score}")
    ],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every figure to this JSON file")
    ] = None,
) -> None:
    """COCO box AP@[.5:.95], AP50, AP75, APs/m/l, AR@1/10/100 and per-class AP, equal to pycocotools."""
    from crossview.eval.detection import evaluate_coco_files
    from crossview.io.formats import FormatError

    try:
        result = evaluate_coco_files(gt, pred)
    except (FormatError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
    figures = result.to_dict()
    table = Table(title="COCO box evaluation (in %; -1 where undefined)")
    for name in figures:
        table.add_column(name, justify="right")
    table.add_row(*(f"{100 * value:.2f}" if value >= 0 else "-1" for value in figures.values()))
    console.print(table)
    per_class = Table(title="AP per class")
    per_class.add_column("id", justify="right")
    per_class.add_column("class")
    per_class.add_column("AP", justify="right")
    for category in result.category_ids:
        value = result.per_class[category]
        label = result.category_names.get(category, "")
        per_class.add_row(str(category), label, f"{100 * value:.2f}" if value >= 0 else "-1")
    console.print(per_class)
    if json_path is not None:
        payload = {**figures, "per_class": {str(k): v for k, v in result.per_class.items()}}
        _write_json(json_path, payload)


class Rerank(StrEnum):
    none = "none"
    kreciprocal = "kreciprocal"
    kreciprocal_topk = "kreciprocal-topk"
    aqe = "aqe"


@eval_app.command("reid")
def eval_reid(
    manifest: Annotated[Path, typer.Option(help="CSV with path,pid,camid,role (query/gallery)")],
    model: Annotated[
        str, typer.Option(help="Re-id ONNX model (OSNet style), or 'color' for the weight-free one")
    ],
    rerank: Annotated[Rerank, typer.Option(help="Re-ranking of the cosine distances")] = Rerank.none,
    top_k: Annotated[int, typer.Option(min=1, help="Re-ranked hits kept per query (kreciprocal-topk)")] = 200,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the figures to this JSON file")
    ] = None,
) -> None:
    """Embed a re-id manifest's crops, rank the gallery for every query, report CMC, mAP and mINP."""
    import time

    import cv2

    from crossview.embed.factory import make_embedder
    from crossview.eval.reid import cosine_distance, reid_metrics
    from crossview.io.formats import FormatError
    from crossview.io.formats.reid import read_reid_manifest
    from crossview.search.rerank import alpha_query_expansion, k_reciprocal_distances, k_reciprocal_topk

    try:
        table = read_reid_manifest(manifest, check_files=True)
        embedder = make_embedder(model if model == "color" else f"osnet:{model}")
    except (FormatError, ValueError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
    images = []
    for path in table.files.tolist():
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise _fail(f"{path}: not a readable image")
        images.append(np.asarray(image, dtype=np.uint8))
    features = embedder.embed_images(images)
    query, gallery = table.is_query, ~table.is_query
    started = time.perf_counter()
    if rerank is Rerank.kreciprocal:
        distances = k_reciprocal_distances(features[query], features[gallery])
    elif rerank is Rerank.kreciprocal_topk:
        distances = k_reciprocal_topk(features[query], features[gallery], top_k=top_k)
    elif rerank is Rerank.aqe:
        distances = cosine_distance(
            alpha_query_expansion(features[query], features[gallery]), features[gallery]
        )
    else:
        distances = cosine_distance(features[query], features[gallery])
    seconds = time.perf_counter() - started
    result = reid_metrics(
        distances, table.pids[query], table.pids[gallery], table.camids[query], table.camids[gallery]
    )
    figures: dict[str, Any] = {**result.to_dict(), "seconds": seconds}
    view = Table(
        title=f"Re-identification ({int(query.sum())} queries, {int(gallery.sum())} gallery; {rerank.value})"
    )
    for name in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        view.add_column(name, justify="right")
    view.add_column("seconds", justify="right")
    view.add_row(
        *(f"{100 * figures[n]:.2f}" for n in ("rank1", "rank5", "rank10", "mAP", "mINP")), f"{seconds:.2f}"
    )
    console.print(view)
    if json_path is not None:
        _write_json(json_path, figures)


@eval_app.command("mtmc")
def eval_mtmc(
    gt: Annotated[
        Path, typer.Option(help="Ground truth: AI City rows 'camera id frame x y w h xworld yworld'")
    ],
    pred: Annotated[Path, typer.Option(help="Predictions in the same format, with global ids")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every figure to this JSON file")
    ] = None,
) -> None:
    """Multi-camera IDF1/HOTA with one global identity matching, per camera, and localisation error."""
    from crossview.eval.mot import SequenceError
    from crossview.eval.mtmc import UnexpectedCameraError, evaluate_mtmc, localisation_error
    from crossview.io.formats import FormatError
    from crossview.io.formats.mtmc import read_mtmc

    try:
        gt_table, pred_table = read_mtmc(gt), read_mtmc(pred)
        scores = evaluate_mtmc(gt_table, pred_table)
        location = localisation_error(gt_table, pred_table)
    except (FormatError, SequenceError, UnexpectedCameraError) as error:
        raise _fail(str(error)) from None
    title = "Multi-camera evaluation; ALL matches one global identity across cameras (scores in %)"
    _print_scores(title, "cameras", scores.per_camera, ("ALL", scores.overall))
    if location.compared:
        console.print(
            f"ground-plane error over {location.compared} matched boxes: median {location.median:.3f} m, "
            f"mean {location.mean:.3f} m, p90 {location.p90:.3f} m"
        )
    for name in scores.missing_cameras:
        errors.print(f"[yellow]warning:[/] no predictions for camera {name}: scored as all misses")
    if json_path is not None:
        _write_json(json_path, {**scores.to_dict(), **location.to_dict()})


class TrackerName(StrEnum):
    sort = "sort"
    bytetrack = "bytetrack"
    ocsort = "ocsort"


class BoxOutput(StrEnum):
    track = "track"
    detection = "detection"


@app.command("track")
def track(
    source: Annotated[
        str | None, typer.Argument(help="Video file, image folder (MOTChallenge img1/) or stream URL")
    ] = None,
    det: Annotated[
        Path | None, typer.Option(help="Track precomputed MOTChallenge detections instead")
    ] = None,
    out: Annotated[Path, typer.Option(help="Write MOTChallenge results here")] = Path("results.txt"),
    detector: Annotated[
        str, typer.Option(help="motion (no weights) | yolox:MODEL.onnx | yolov8:MODEL.onnx")
    ] = "motion",
    tracker: Annotated[TrackerName, typer.Option(help="Per-camera tracker")] = TrackerName.ocsort,
    embedder: Annotated[
        str | None, typer.Option(help="Appearance for association: color | osnet:MODEL.onnx")
    ] = None,
    video: Annotated[Path | None, typer.Option(help="Also write an annotated video (.mp4)")] = None,
    classes: Annotated[str | None, typer.Option(help="Keep only these classes, e.g. person,car")] = None,
    score_threshold: Annotated[float | None, typer.Option(help="Detector score threshold")] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop after this many frames")] = None,
    camera_id: Annotated[str | None, typer.Option(help="Camera id (default: the file name)")] = None,
    frame_rate: Annotated[float | None, typer.Option(help="Override the source's frame rate")] = None,
    seqinfo: Annotated[Path | None, typer.Option(help="With --det: seqinfo.ini for length and rate")] = None,
    box: Annotated[BoxOutput, typer.Option(help="Write the tracker's filtered box or the detection's")] = (
        BoxOutput.track
    ),
) -> None:
    """Detect and track objects in a video, image folder or stream; or track a det.txt file."""
    from crossview.io.formats import FormatError
    from crossview.io.formats.mot import read_mot, read_seqinfo, write_mot
    from crossview.track import make_tracker
    from crossview.track.replay import track_table

    if (source is None) == (det is None):
        raise _fail("give either a SOURCE to detect in or --det DETECTIONS.txt, not both or neither")
    if det is not None:
        try:
            table = read_mot(det)
            info = read_seqinfo(seqinfo) if seqinfo is not None else None
        except FormatError as error:
            raise _fail(str(error)) from None
        rate = frame_rate or (info.frame_rate if info else 30.0)
        results = track_table(
            table,
            make_tracker(tracker.value, frame_rate=rate),
            num_frames=info.length if info else None,
            box=box.value,
        )
        write_mot(out, results)
        console.print(
            f"tracked {len(table)} detections: {len(results)} rows, "
            f"{len(set(results.track_id.tolist()))} tracks -> {out}"
        )
        return
    assert source is not None
    _track_source(
        source,
        out=out,
        detector=detector,
        tracker=tracker.value,
        embedder=embedder,
        video=video,
        classes=classes,
        score_threshold=score_threshold,
        max_frames=max_frames,
        camera_id=camera_id,
        frame_rate=frame_rate,
        box=box.value,
    )


def _track_source(
    source: str,
    *,
    out: Path,
    detector: str,
    tracker: str,
    embedder: str | None,
    video: Path | None,
    classes: str | None,
    score_threshold: float | None,
    max_frames: int | None,
    camera_id: str | None,
    frame_rate: float | None,
    box: str,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crossview.detect.factory import make_detector
    from crossview.embed.factory import make_embedder
    from crossview.io.formats.mot import MotTable, write_mot
    from crossview.io.open import open_source
    from crossview.io.sinks import VideoWriter, draw_tracks
    from crossview.io.sources import SourceError
    from crossview.pipeline import Pipeline
    from crossview.track import make_tracker
    from crossview.track.replay import tracked_rows

    options: dict[str, Any] = {}
    if classes:
        options["classes"] = tuple(c.strip() for c in classes.split(",") if c.strip())
    if score_threshold is not None:
        if detector.startswith("motion"):
            raise _fail(
                "--score-threshold applies to ONNX detectors; the motion detector scores by fill ratio"
            )
        options["score_threshold"] = score_threshold
    try:
        frames_in = open_source(source, camera_id, max_frames=max_frames)
        found = make_detector(detector, **options)
        appearance = make_embedder(embedder) if embedder else None
    except (SourceError, ValueError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
    rate = frame_rate or getattr(frames_in, "fps", None) or 30.0
    pipeline = Pipeline(found, lambda: make_tracker(tracker, frame_rate=rate), appearance)
    names = dict(enumerate(getattr(found, "class_names", ()) or ()))
    parts: list[MotTable] = []
    writer = VideoWriter(video, rate) if video is not None else None
    total = max_frames or getattr(frames_in, "frame_count", None)
    columns = (TextColumn("[bold]tracking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with frames_in, Progress(*columns, console=errors, transient=False) as progress:
            task = progress.add_task("frames", total=total)
            for result in pipeline.run(frames_in):
                parts.append(tracked_rows(result.detections, box=box))  # type: ignore[arg-type]
                if writer is not None:
                    writer.write(draw_tracks(result.frame.image, result.detections, names))
                progress.advance(task)
    except SourceError as error:
        raise _fail(str(error)) from None
    finally:
        if writer is not None:
            writer.close()
    results = MotTable.concatenate(parts)
    write_mot(out, results)
    stats = frames_in.stats
    latency = pipeline.latency_summary()
    console.print(
        f"{len(parts)} frames, {len(results)} tracked boxes, {len(set(results.track_id.tolist()))} tracks "
        f"-> {out}" + (f", video -> {video}" if video else "")
    )
    console.print(
        "per-frame latency (ms): "
        + ", ".join(f"{stage} p50 {s.p50:.1f} p99 {s.p99:.1f}" for stage, s in latency.items())
    )
    if stats.corrupt_frames:
        errors.print(f"[yellow]warning:[/] {stats.corrupt_frames} corrupt frames were skipped")


@sample_app.command("mot")
def sample_mot(
    out: Annotated[Path, typer.Argument(help="Folder to write gt/ and pred/ into")],
    sequences: Annotated[int, typer.Option(min=1, help="How many sequences")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files)")] = 0,
) -> None:
    """Synthetic sequences with ground truth and a noisy tracker's output, in MOTChallenge layout."""
    from crossview.sim.sequences import write_mot_sample

    generated = write_mot_sample(out, sequences=sequences, seed=seed)
    console.print(f"wrote {len(generated)} sequences to {out}/gt and {out}/pred")
    console.print(f"next: crossview eval mot --gt {out}/gt --pred {out}/pred")


@sample_app.command("video")
def sample_video(
    out: Annotated[Path, typer.Argument(help="Folder to write <name>.mp4 and gt/<name>/ into")],
    frames: Annotated[int, typer.Option(min=1, help="Length in frames (10 fps)")] = 200,
    people: Annotated[int, typer.Option(min=1, help="How many people walk through")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same video)")] = 0,
) -> None:
    """A synthetic fixed-camera video of people walking, with MOTChallenge ground truth."""
    from crossview.sim.video import SceneSpec, render_scene

    scene = render_scene(out, SceneSpec(num_frames=frames, num_people=people), seed=seed)
    console.print(f"wrote {scene.video} ({frames} frames) and ground truth under {out}/gt")
    console.print(f"next: crossview track {scene.video} --out {out}/pred/{scene.info.name}.txt")


index_app = typer.Typer(no_args_is_help=True, help="Build and inspect search galleries.")
app.add_typer(index_app, name="index")


class BackendName(StrEnum):
    faiss = "faiss"
    milvus = "milvus"


@index_app.command("build")
def index_build(
    sources: Annotated[list[str], typer.Argument(help="Videos, image folders or stream URLs to index")],
    index: Annotated[Path, typer.Option(help="Gallery folder (created if missing)")],
    detector: Annotated[str, typer.Option(help="motion | yolox:MODEL.onnx | yolov8:MODEL.onnx")] = "motion",
    embedder: Annotated[str, typer.Option(help="color | osnet:MODEL.onnx")] = "color",
    tracker: Annotated[TrackerName, typer.Option(help="Per-camera tracker")] = TrackerName.ocsort,
    backend: Annotated[BackendName, typer.Option(help="faiss (in-process) or milvus (Milvus Lite file)")] = (
        BackendName.faiss
    ),
    factory: Annotated[str, typer.Option(help="FAISS index factory string")] = "HNSW32",
    classes: Annotated[str | None, typer.Option(help="Keep only these classes, e.g. person,car")] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Per source")] = None,
) -> None:
    """Run the sources as the cameras of one site, all at once: each detected, embedded and tracked,
    the tracks joined across sources into global identities (by appearance: the sources have no
    calibration); index each finished track's appearance with its metadata and global id.

    A source's camera id is a video's file name without extension, an image folder's name or a
    stream URL's last part; two sources with one id are refused. A gallery built before keeps its
    entries: the new ones take ids, and global ids, after its largest."""
    from itertools import combinations

    from crossview.detect.factory import make_detector
    from crossview.embed.factory import make_embedder
    from crossview.io.open import open_source
    from crossview.io.sources import FrameSource, SourceError, StreamSource
    from crossview.models.identity import identity_of
    from crossview.multicam.association import AssociationConfig
    from crossview.multicam.topology import CameraTopology
    from crossview.runtime.engine import CameraStage, SiteStage, run_cameras
    from crossview.runtime.run import camera_stage
    from crossview.runtime.sinks import IndexSink
    from crossview.runtime.site import SiteFile
    from crossview.search.store import GallerySettings, create_gallery

    def warn(message: str) -> None:
        errors.print(f"warning: {message}", highlight=False, soft_wrap=True)

    options: dict[str, Any] = {}
    if classes:
        options["classes"] = tuple(c.strip() for c in classes.split(",") if c.strip())
    opened: list[FrameSource] = []
    try:
        appearance = make_embedder(embedder)
        named: dict[str, str] = {}
        for spec in sources:
            source = open_source(spec, max_frames=max_frames)
            opened.append(source)
            if source.camera_id in named:
                raise ValueError(
                    f"{named[source.camera_id]} and {spec} are both camera {source.camera_id!r} (a camera "
                    "id is a video's file name without extension, a folder's name or a stream URL's last "
                    "part): give each source its own name"
                )
            named[source.camera_id] = spec
        stages: list[CameraStage] = [
            camera_stage(
                None,
                source.camera_id,
                source,
                make_detector(detector, **options),  # one per camera: detectors keep per-camera state
                appearance,
                detector_spec=detector,
                tracker=tracker.value,
                max_frames=max_frames,
                warn=warn,
            )
            for source in opened
        ]
        gallery_index = create_gallery(
            index,
            GallerySettings(
                backend=backend.value,
                dim=appearance.dim,
                embedder=embedder,
                factory=factory,
                model=identity_of(appearance).key,
            ),
        )
    except (SourceError, ValueError, FileNotFoundError) as error:
        for source in opened:
            source.close()
        raise _fail(str(error)) from None
    cameras = tuple(named)
    # Sources without calibration nor a shared clock: any two may show one object at once.
    topology = CameraTopology(cameras=cameras, overlaps=frozenset(combinations(cameras, 2)))
    association: AssociationConfig = SiteFile.model_fields["association"].get_default(
        call_default_factory=True
    )
    live = frozenset(source.camera_id for source in opened if isinstance(source, StreamSource))
    with gallery_index:
        sink = IndexSink(gallery_index, new_identities=True)
        site = SiteStage({}, topology, association, sinks=[sink])
        try:
            result = run_cameras(stages, site, live=live, warn=warn)
        finally:
            for source in opened:
                source.close()
        total = gallery_index.count()
    for camera_id, stats in result.cameras.items():
        stopped = f", stopped: {stats.error}" if stats.error else ""
        console.print(
            f"{named[camera_id]}: camera {camera_id}, {stats.frames} frames, "
            f"{sink.added[camera_id]} tracks{stopped}"
        )
    console.print(
        f"indexed {sum(sink.added.values())} tracks of {result.site.identities} global identities "
        f"into {index} (now {total} tracks)"
    )


@app.command("search")
def search(
    index: Annotated[Path, typer.Option(help="Gallery folder built by 'crossview index build'")],
    image: Annotated[Path | None, typer.Option(help="Query crop (an image of the object)")] = None,
    track: Annotated[int | None, typer.Option(help="Or: the id of an indexed track")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many hits")] = 10,
    camera: Annotated[list[str] | None, typer.Option(help="Only these cameras (repeatable)")] = None,
    after: Annotated[float | None, typer.Option(help="Only tracks seen at or after this time (s)")] = None,
    before: Annotated[float | None, typer.Option(help="Only tracks seen at or before this time (s)")] = None,
    rerank: Annotated[str, typer.Option(help="none | kreciprocal | aqe")] = "none",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the hits to this JSON file")] = None,
) -> None:
    """Find where an object appeared: nearest tracks by appearance, filtered, re-ranked, explained."""
    import cv2

    from crossview.embed.factory import make_embedder
    from crossview.models.identity import ModelMismatch, identity_of
    from crossview.search.engine import SearchEngine
    from crossview.search.index import Filter
    from crossview.search.store import open_gallery, read_settings

    if (image is None) == (track is None):
        raise _fail("give either --image QUERY.jpg or --track ID")
    if rerank not in ("none", "kreciprocal", "aqe"):
        raise _fail(f"--rerank must be none, kreciprocal or aqe, got {rerank!r}")
    try:
        settings = read_settings(index)
        embedder = make_embedder(settings.embedder) if image is not None else None
        if embedder is not None and settings.model and identity_of(embedder).key != settings.model:
            raise ModelMismatch(str(index), settings.model, identity_of(embedder).key)
        time_range = None
        if after is not None or before is not None:
            time_range = (after if after is not None else -1e18, before if before is not None else 1e18)
        chosen = Filter(cameras=frozenset(camera) if camera else None, time_range=time_range)
    except (ValueError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
    query = None
    if image is not None:
        query = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if query is None:
            raise _fail(f"{image}: not a readable image")
    with open_gallery(index) as gallery_index:
        engine = SearchEngine(gallery_index, embedder)
        try:
            hits = engine.search(
                image=None if query is None else np.asarray(query, np.uint8),
                track_id=track,
                k=k,
                filter=None if chosen.is_empty() else chosen,
                rerank=rerank,  # type: ignore[arg-type]
            )
        except (ValueError, KeyError) as error:
            raise _fail(str(error).strip("'\"")) from None
    view = Table(title=f"{len(hits)} hits (distance = appearance + re-rank + context)")
    for column in ("rank", "id", "camera", "track", "from s", "to s", "distance", "appearance", "re-rank"):
        view.add_column(column, justify="right")
    for hit in hits:
        view.add_row(
            str(hit.rank),
            str(hit.id),
            hit.entry.camera_id,
            str(hit.entry.track_id),
            f"{hit.entry.t_start:.1f}",
            f"{hit.entry.t_end:.1f}",
            f"{hit.distance:.3f}",
            f"{hit.appearance:.3f}",
            f"{hit.rerank:+.3f}",
        )
    console.print(view)
    if json_path is not None:
        payload = {
            "hits": [
                {
                    "rank": h.rank,
                    "id": h.id,
                    "distance": h.distance,
                    "appearance": h.appearance,
                    "rerank": h.rerank,
                    "context": h.context,
                    **h.entry.model_dump(),
                }
                for h in hits
            ]
        }
        _write_json(json_path, payload)


@app.command("demo")
def demo(
    out: Annotated[
        Path, typer.Option(help="Folder for the site, predictions, results.json and report.html")
    ] = Path("runs/demo"),
    cameras: Annotated[int, typer.Option(min=2, max=8, help="Cameras of the synthetic site")] = 4,
    seconds: Annotated[float, typer.Option(min=5, help="Length of the recording")] = 60.0,
    scenario: Annotated[
        str, typer.Option(help="default or a long-tail scenario (docs/simulation.md)")
    ] = "default",
    seed: Annotated[int, typer.Option(help="Random seed of the site (same seed, same site)")] = 0,
    tracker: Annotated[str, typer.Option(help="sort, bytetrack or ocsort")] = "sort",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this JSON file")
    ] = None,
) -> None:
    """Simulate a parking site, run the whole platform over it and score it against ground truth."""
    from crossview.demo import DemoConfig, run_demo
    from crossview.sim.site import SCENARIOS

    if scenario not in SCENARIOS:
        raise _fail(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    config = DemoConfig.model_validate(
        {"cameras": cameras, "seconds": seconds, "scenario": scenario, "seed": seed, "tracker": tracker}
    )
    result = run_demo(out, config, progress=lambda message: console.print(message, highlight=False))
    figures = result.figures
    table = Table(title=f"crossview demo: {scenario}, {cameras} cameras, {seconds:.0f} s")
    table.add_column("camera")
    for column in ("HOTA", "IDF1", "MOTA"):
        table.add_column(column, justify="right")
    for camera_id, scores in figures["per_camera"].items():
        table.add_row(camera_id, *(f"{100 * scores[c]:.1f}" for c in ("HOTA", "IDF1", "MOTA")))
    console.print(table)
    summary = Table(show_header=False, title="across cameras")
    rows = [
        ("multi-camera IDF1 (online ids)", f"{100 * figures['mtmc_idf1']:.1f}"),
        ("multi-camera IDF1 (offline re-association)", f"{100 * figures['mtmc_idf1_offline']:.1f}"),
        ("localisation error, median", f"{figures['localization_error_median_m']:.2f} m"),
        ("exit-to-entry top-1", f"{figures['session_match_top1']:.3f} ({figures['sessions_scored']} exits)"),
        ("global ids / true objects", f"{figures['global_ids']} / {figures['objects_true']}"),
    ]
    rows += [
        (f"latency {stage} p50 / p99", f"{v['p50_ms']:.1f} / {v['p99_ms']:.1f} ms")
        for stage, v in figures["latency"].items()
    ]
    rows.append(("wall time", f"{figures['seconds_total']:.1f} s"))
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)
    console.print(f"report: {result.report}")
    if json_path is not None:
        _write_json(json_path, figures)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
