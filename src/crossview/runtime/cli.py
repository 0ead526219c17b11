"""``crossview site validate`` and ``crossview calibrate``: check a site file, calibrate its cameras."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

site_app = typer.Typer(no_args_is_help=True, help="Site files: check one before running it.")
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

SitePath = Annotated[Path, typer.Argument(help="The site file (YAML or JSON)")]


@site_app.command("validate")
def validate(
    site_path: SitePath,
    max_range: Annotated[
        float | None,
        typer.Option(min=1.0, help="Metres of ground each camera sees (default: the site's, 40)"),
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON")] = None,
    probe: Annotated[
        bool, typer.Option(help="Contact every stream camera: it must send a frame (of its declared size)")
    ] = False,
    probe_timeout: Annotated[
        float, typer.Option(min=0.1, max=60.0, help="Seconds a probed stream has")
    ] = 5.0,
) -> None:
    """Check a site file: every camera's source, frame size, calibration (fit and leave-one-out
    error), the ground it sees, and which views overlap. Streams are contacted with --probe.
    Exit status 2 when it cannot be run."""
    from crossview.runtime.check import check_site
    from crossview.runtime.site import SiteError, load_site

    try:
        site = load_site(site_path)
    except SiteError as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from None
    report = check_site(site, max_range_m=max_range, probe_s=probe_timeout if probe else None)
    console.print(report.text())
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.ok:
        raise typer.Exit(code=2)


def calibrate(
    site_path: SitePath,
    camera_id: Annotated[str, typer.Argument(help="The camera to calibrate")],
    points: Annotated[
        Path | None, typer.Option(help="CSV of image/ground point pairs: u,v,x,y (pixels, metres)")
    ] = None,
    opencv: Annotated[
        Path | None,
        typer.Option(help="OpenCV FileStorage file: camera_matrix, distortion_coefficients, rvec, tvec"),
    ] = None,
    threshold: Annotated[float, typer.Option(min=0.001, help="RANSAC inlier threshold, metres")] = 0.25,
    dry_run: Annotated[bool, typer.Option(help="Report, but leave the site file as it is")] = False,
) -> None:
    """Calibrate one camera of a site file from point pairs or an OpenCV file, print the report and
    write the calibration into the site file (rewritten as YAML: comments are not kept)."""
    from crossview.runtime.check import check_site
    from crossview.runtime.site import SiteError, load_site, parse_site

    if (points is None) == (opencv is None):
        errors.print("[bold red]error:[/] give exactly one of --points or --opencv")
        raise typer.Exit(code=2)
    try:
        site = load_site(site_path)
        site.camera(camera_id)
    except (SiteError, KeyError) as error:
        errors.print(f"[bold red]error:[/] {error.args[0] if isinstance(error, KeyError) else error}")
        raise typer.Exit(code=2) from None
    data: dict[str, Any] = yaml.safe_load(site_path.read_text(encoding="utf-8"))
    given = points if points is not None else opencv
    assert given is not None
    reference = _relative(given, site_path.parent)
    calibration: dict[str, Any] = (
        {"points": reference, "ransac_threshold_m": threshold}
        if points is not None
        else {"opencv": reference}
    )
    for camera in data["cameras"]:
        if camera.get("id") == camera_id:
            camera["calibration"] = calibration
    try:
        updated = parse_site(data, base=site_path.parent, source=str(site_path))
    except SiteError as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from None
    report = check_site(updated)
    (camera_report,) = [camera for camera in report.cameras if camera.id == camera_id]
    console.print(f"camera {camera_id!r}")
    for line in camera_report.lines:
        console.print(f"  {line}")
    for warning in camera_report.warnings:
        console.print(f"  warning: {warning}")
    if camera_report.problems:
        for problem in camera_report.problems:
            errors.print(f"[bold red]error:[/] camera {camera_id!r}: {problem}")
        raise typer.Exit(code=2)
    if dry_run:
        console.print("dry run: the site file is unchanged")
        return
    site_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    console.print(f"wrote the calibration of {camera_id!r} into {site_path}")


def _relative(path: Path, base: Path) -> str:
    """``path`` as the site file will refer to it: relative to the file's folder when inside it."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def run(
    site_path: SitePath,
    out: Annotated[Path, typer.Option(help="Folder for tracks, mtmc.txt, the index, thumbnails, run.json")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the run's figures here")
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option(min=1, help="Stop each camera after this many frames")
    ] = None,
    detector: Annotated[str | None, typer.Option(help="Override the site's detector")] = None,
    embedder: Annotated[str | None, typer.Option(help="Override the site's embedder")] = None,
    tracker: Annotated[str | None, typer.Option(help="Override the site's tracker")] = None,
    snapshot: Annotated[
        int | None,
        typer.Option(min=0, help="Also draw this frame of every camera and the site map into OUT/snapshots"),
    ] = None,
) -> None:
    """Run every camera of a site file concurrently: detect, embed and track per camera, one
    global identity per object across cameras, located in metres; results under --out."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from crossview.embed.factory import make_embedder
    from crossview.runtime.run import run_site
    from crossview.runtime.site import SiteError, load_site

    try:
        site = load_site(site_path)
        chosen_embedder = None if embedder is None else make_embedder(embedder)
    except (SiteError, ValueError) as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from None
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(camera_id: str, frames: int) -> None:
            if camera_id not in tasks:
                tasks[camera_id] = bar.add_task(camera_id, total=None)
            if frames % 10 == 0:
                bar.update(tasks[camera_id], description=f"{camera_id}: {frames} frames")

        try:
            result = run_site(
                site,
                out,
                max_frames=max_frames,
                detector=detector,
                embedder=chosen_embedder,
                tracker=tracker,
                snapshot=snapshot,
                progress=progress,
                warn=lambda message: bar.console.print(f"warning: {message}"),
            )
        except (SiteError, ValueError) as error:
            errors.print(f"[bold red]error:[/] {error}")
            raise typer.Exit(code=2) from None
    figures = result.to_dict()
    for camera_id, stats in figures["cameras"].items():
        stopped = f", stopped: {stats['error']}" if stats["error"] else ""
        console.print(f"camera {camera_id}: {stats['frames']} frames ({stats['fps']} frames/s){stopped}")
    console.print(f"global identities: {figures['global_ids']}; {result.seconds:.1f} s")
    for stage, values in figures["latency_ms"].items():
        console.print(f"latency {stage}: p50 {values['p50']:.1f} ms, p99 {values['p99']:.1f} ms")
    console.print(f"results: {out} (tracks/, mtmc.txt, index/, thumbnails/, run.json)")
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
