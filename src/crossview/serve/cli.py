"""``crossview serve`` and ``crossview keys``: run the service, manage its API keys."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

DATA_DIR_ENV = "CROSSVIEW_DATA_DIR"
JWT_SECRET_ENV = "CROSSVIEW_JWT_SECRET"
JWT_ISSUER_ENV = "CROSSVIEW_JWT_ISSUER"
JWT_AUDIENCE_ENV = "CROSSVIEW_JWT_AUDIENCE"
JWT_LIFETIME_ENV = "CROSSVIEW_JWT_MAX_LIFETIME"

keys_app = typer.Typer(no_args_is_help=True, help="API keys of a service data directory.")
console = Console()
errors = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help=f"The service's data directory (default: ${DATA_DIR_ENV})"),
]


def _data_dir(value: Path | None) -> Path:
    chosen = value if value is not None else os.environ.get(DATA_DIR_ENV)
    if not chosen:
        errors.print(f"[bold red]error:[/] give --data-dir or set {DATA_DIR_ENV}", highlight=False)
        raise typer.Exit(code=2)
    return Path(chosen)


def serve(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 8000,
    embedder: Annotated[
        str | None,
        typer.Option(help="Appearance embedder: color | osnet:MODEL.onnx (default: the site's, or color)"),
    ] = None,
    tracker: Annotated[
        str | None,
        typer.Option(help="Per-camera tracker: sort | bytetrack | ocsort (default: the site's, or sort)"),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            help="For frames sent as images: motion | yolox:MODEL.onnx | yolov8:MODEL.onnx "
            "(default: the site's, or motion)"
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="A detector name that detection batches may declare (repeatable; 'unknown' always)"
        ),
    ] = None,
    rate: Annotated[float, typer.Option(min=0.001, help="Requests per second per credential")] = 50.0,
    burst: Annotated[int, typer.Option(min=1, help="Burst size per credential")] = 100,
    max_queued: Annotated[int, typer.Option(min=1, help="Ingest batches that may wait")] = 256,
    max_inflight_ingest: Annotated[
        int, typer.Option(min=1, help="Ingest requests handled at once; beyond: 503 at once")
    ] = 4,
    max_inflight_search: Annotated[
        int, typer.Option(min=1, help="Search requests handled at once; beyond: 503 at once")
    ] = 8,
    max_body_mb: Annotated[float, typer.Option(min=0.01, help="Largest request body (MiB)")] = 16.0,
    max_image_megapixels: Annotated[
        float, typer.Option(min=0.01, help="Largest image, checked from its header before decoding")
    ] = 4096 * 2160 / 1e6,
    max_cameras: Annotated[
        int, typer.Option(min=1, help="Cameras holding state at once (no site file)")
    ] = 64,
    max_camera_megapixels: Annotated[
        float, typer.Option(min=0.01, help="Frame megapixels summed over cameras sending images")
    ] = 32.0,
    camera_idle: Annotated[
        float, typer.Option(min=1.0, help="Seconds of silence before a camera is freed")
    ] = 120.0,
    drain: Annotated[
        float, typer.Option(min=0.0, help="Seconds of 503 answers after SIGTERM before the listener closes")
    ] = 5.0,
    header_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a client has to send its headers")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a client has to send its body")
    ] = 30.0,
    max_connections: Annotated[int, typer.Option(min=1, help="Open connections at once")] = 1000,
    max_connections_per_client: Annotated[int, typer.Option(min=1, help="Open connections per address")] = 64,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(help="Address of a reverse proxy whose X-Forwarded-For is believed (repeatable)"),
    ] = None,
    public_docs: Annotated[
        bool, typer.Option(help="Serve /docs and /openapi.json without a credential")
    ] = False,
    site: Annotated[
        Path | None,
        typer.Option(
            help="The site file (YAML or JSON): its cameras (only they may send), calibration, topology "
            "and models; see 'crossview site validate'"
        ),
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Also serve gRPC on this port (same host)")
    ] = None,
) -> None:
    """Serve the REST API (and gRPC) over a data directory, until SIGINT or SIGTERM (then drain, flush).

    The JWT secret comes from $CROSSVIEW_JWT_SECRET; $CROSSVIEW_JWT_ISSUER and
    $CROSSVIEW_JWT_AUDIENCE make 'iss' and 'aud' required, $CROSSVIEW_JWT_MAX_LIFETIME caps a
    token's lifetime in seconds (default a day). Files are created private (umask 077).
    """
    import uvicorn
    from pydantic import SecretStr

    from crossview.embed.factory import make_embedder
    from crossview.io.image import ImageLimits
    from crossview.runtime.site import load_site
    from crossview.serve.admission import CameraLimits
    from crossview.serve.app import ServeConfig, create_app
    from crossview.serve.gate import GateConfig
    from crossview.serve.http import DrainingServer, guarded_h11
    from crossview.serve.limits import RateLimit
    from crossview.serve.service import ServiceConfig, SiteConfig

    directory = _data_dir(data_dir)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.umask(0o077)  # the journal holds camera frames and embeddings: nothing is for other users
    secret = os.environ.get(JWT_SECRET_ENV) or None
    try:
        site_file = None if site is None else load_site(site)
        site_config = SiteConfig() if site_file is None else SiteConfig.from_site_file(site_file)
        models = None if site_file is None else site_file.models
        detector = detector or (models.detector if models else "motion")
        embedder = embedder or (models.embedder if models else "color")
        tracker = tracker or (site_file.tracker.name if site_file else "sort")
        max_pixels = int(max_image_megapixels * 1e6)
        config = ServeConfig(
            service=ServiceConfig(
                data_dir=directory,
                tracker=tracker,
                detector=detector,
                models=tuple(model or ()),
                max_queued_batches=max_queued,
                images=ImageLimits(max_pixels=max_pixels),
                cameras=CameraLimits(
                    max_cameras=max_cameras, max_megapixels=max_camera_megapixels, idle_s=camera_idle
                ),
                site=site_config,
            ),
            gate=GateConfig(
                rate_limit=RateLimit(rate_per_s=rate, burst=burst),
                max_inflight_ingest=max_inflight_ingest,
                max_inflight_search=max_inflight_search,
            ),
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            body_timeout_s=body_timeout,
            jwt_secret=None if secret is None else SecretStr(secret),
            jwt_issuer=os.environ.get(JWT_ISSUER_ENV) or None,
            jwt_audience=os.environ.get(JWT_AUDIENCE_ENV) or None,
            jwt_max_lifetime_s=float(os.environ.get(JWT_LIFETIME_ENV) or 86400.0),
            public_docs=public_docs,
            grpc_host=host,
            grpc_port=grpc_port,
        )
        app = create_app(config, make_embedder(embedder))
    except (ValueError, OSError) as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    proxies = list(trusted_proxy or ())
    server = DrainingServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,  # our own request log: no query strings, no credentials
            server_header=False,
            http=guarded_h11(header_timeout_s=header_timeout, max_per_client=max_connections_per_client),
            limit_concurrency=max_connections,
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
            timeout_graceful_shutdown=30,
        ),
        drain_s=drain,
        on_drain=app.state.crossview.drain,
    )
    server.run()


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="Who or what the key is for")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, search, ingest, admin")] = "read,search",
    data_dir: DataDir = None,
) -> None:
    """Create a key and print its token once (only a hash is kept)."""
    from crossview.serve.keys import KeyStore

    try:
        with KeyStore(_data_dir(data_dir) / "keys.sqlite") as store:
            token, record = store.create(name, scopes)
    except ValueError as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(f"key {record.key_id} for {record.name!r}, scopes {', '.join(sorted(record.scopes))}")
    console.print("token (shown once, store it now):")
    print(token)


@keys_app.command("list")
def list_keys(
    data_dir: DataDir = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List keys (never their secrets)."""
    from crossview.serve.keys import KeyStore

    with KeyStore(_data_dir(data_dir) / "keys.sqlite") as store:
        records = store.list()
    if json_output:
        print(json.dumps([r.to_dict() for r in records], indent=2, default=str))
        return
    table = Table("key id", "name", "scopes", "created", "revoked")
    for r in records:
        table.add_row(
            r.key_id,
            r.name,
            ",".join(sorted(r.scopes)),
            f"{r.created_at:.0f}",
            "" if r.revoked_at is None else f"{r.revoked_at:.0f}",
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id from 'crossview keys list'")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key: refused from the next request on, also by a running server."""
    from crossview.serve.keys import KeyStore

    try:
        with KeyStore(_data_dir(data_dir) / "keys.sqlite") as store:
            record = store.revoke(key_id)
    except KeyError as error:
        errors.print(f"[bold red]error:[/] {error.args[0]}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(f"revoked {record.key_id} ({record.name!r})")
