"""The ``crossview`` command line: thin wrappers that call the library and print with rich."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from crossview.eval.mot import MotScores

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Multi-camera perception and visual search."
)
eval_app = typer.Typer(no_args_is_help=True, help="Score outputs against ground truth.")
sample_app = typer.Typer(no_args_is_help=True, help="Write synthetic sample data with ground truth.")
app.add_typer(eval_app, name="eval")
app.add_typer(sample_app, name="sample")

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
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
