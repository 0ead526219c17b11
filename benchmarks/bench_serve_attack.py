"""The service under attack and overload at once: memory stays bounded, refusals stay fast.

    python benchmarks/bench_serve_attack.py [--seconds 60] [--factor 2] [--cameras 1000] [--quick]

``crossview serve`` (defaults, but for ``--model bench``, a rate limit that never bites and 1000
connections per client address, since every client here shares 127.0.0.1) runs as a child process
on 127.0.0.1 and its
resident memory (VmRSS) is sampled every 0.25 s throughout. Two calibration phases first measure
what the service sustains, each a closed loop of 4 clients for ``--calibrate-seconds``:

* JSON ingest: batches of 10 frames x 10 detections with 480-d embeddings (``bench_serve``'s
  template), one camera per client;
* image ingest: batches of 4 frames of 640 x 360 JPEG (a moving bright block on noise, so the
  motion detector finds something), one camera per client.

The site has 24 cameras sending detections and 16 sending images; each sends a batch before the
attack starts, so they are all streaming when it comes. Then, for ``--seconds``, all at once:

1. JSON ingest offered open-loop at ``--factor`` times its sustained rate, from the 24 cameras;
2. image ingest offered open-loop at ``--factor`` times its sustained rate, from the 16 cameras;
3. decompression bombs, 4 a second: 20000 x 20000 and 32000 x 32000 PNGs to ``/v1/search/image``,
   8000 x 8000 and 40000 x 40000 ones to ``/v1/ingest/frames`` (each from a new camera id);
4. ``--cameras`` new camera ids spread over the run, each sending one small detections batch,
   and one new camera a second sending a valid 4096 x 2160 frame (the image limit): the camera
   cap and the frame-pixel budget under attack;
5. 14 MB JSON bodies without a credential, 4 a second, from another address (127.0.0.2);
6. ``/healthz`` probed 10 times a second.

Every answer is counted by kind and status; latency is client-side, from just before the request
to the end of the answer, split into accepted (2xx) and refused. A 5xx other than 503 (with
``Retry-After``) is an error. Progress goes to stderr; stdout is the markdown block for
docs/benchmarks.md. The load clients share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import cv2
import httpx
import numpy as np
from bench_serve import BatchTemplate, CameraFeed, Server  # type: ignore[import-not-found]

from crossview.eval.latency import LatencySummary
from crossview.serve.keys import KeyStore
from crossview.sim.bombs import png_bomb

MIB = 1024 * 1024
IMAGE_SIZE = (360, 640)
IMAGES_PER_BATCH = 4
JSON_CAMERAS = 24
IMAGE_CAMERAS = 16


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class ImageFeed:
    """Successive image batches of one camera: a bright block crossing a noisy background."""

    def __init__(self, camera_id: str, frames: list[bytes]) -> None:
        self.camera_id = camera_id
        self.frames = frames
        self.next_frame = 0

    def next_form(self) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
        first = self.next_frame
        self.next_frame += IMAGES_PER_BATCH
        indices = range(first, first + IMAGES_PER_BATCH)
        data = {
            "camera_id": self.camera_id,
            "timestamps": ",".join(f"{i / 10:.1f}" for i in indices),
            "frame_indices": ",".join(str(i) for i in indices),
        }
        files = [("images", (f"{i}.jpg", self.frames[i % len(self.frames)], "image/jpeg")) for i in indices]
        return data, files


def ultra_hd_frame() -> bytes:
    """A 4096 x 2160 JPEG (the largest frame the default limits take): a gradient and a block."""
    ramp = np.linspace(0, 255, 4096, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[None, :, None], 2160, axis=0), 3, axis=2).astype(np.uint8)
    image[800:1200, 1500:2100] = (40, 200, 90)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data.tobytes()


Feed = CameraFeed | ImageFeed


def rendered_frames(count_: int = 40) -> list[bytes]:
    rng = np.random.default_rng(0)
    height, width = IMAGE_SIZE
    background = rng.integers(60, 90, (height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(count_):
        image = background.copy()
        x = 20 + (i * 12) % (width - 80)
        image[120:220, x : x + 60] = (230, 230, 230)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        frames.append(data.tobytes())
    return frames


@dataclass
class Tally:
    """Answers of one kind of request: statuses, and latencies of accepted and refused ones."""

    statuses: Counter[str] = field(default_factory=Counter)
    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    missing_retry_after: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, started: float, answer: httpx.Response | None, error: str | None = None) -> None:
        latency = time.perf_counter() - started
        with self.lock:
            if answer is None:
                self.statuses[error or "error"] += 1
                return
            self.statuses[str(answer.status_code)] += 1
            (self.accepted if answer.status_code < 300 else self.refused).append(latency)
            if answer.status_code in (429, 503) and "retry-after" not in answer.headers:
                self.missing_retry_after += 1


def post(tally: Tally, client: httpx.Client, path: str, **kwargs: object) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        answer = client.post(path, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as error:
        tally.record(started, None, type(error).__name__)
        return None
    tally.record(started, answer)
    return answer


def processed(url: str, headers: dict[str, str]) -> tuple[int, int]:
    """Batches done (or failed) and batches queued, from ``/v1/stats``."""
    stats = httpx.get(f"{url}/v1/stats", headers=headers, timeout=60).json()
    return int(stats["batches_done"] + stats["batches_failed"]), int(stats["batches_queued"])


def sustained(
    seconds: float, clients: int, send: Callable[[int, httpx.Client], bool], url: str, headers: dict[str, str]
) -> float:
    """Batches the service processes per second: ``clients`` threads send back to back for
    ``seconds`` (backing off 50 ms after a refusal), then the queue drains; the batches processed
    over the whole time. HTTP acceptance alone would overstate it, by what the queue absorbs."""
    before, _ = processed(url, headers)
    started = time.perf_counter()
    closed_loop(seconds, clients, send, url)
    while processed(url, headers)[1] and time.perf_counter() - started < seconds + 300:
        time.sleep(0.1)
    after, _ = processed(url, headers)
    return (after - before) / (time.perf_counter() - started)


def closed_loop(seconds: float, clients: int, send: Callable[[int, httpx.Client], bool], url: str) -> float:
    """Accepted requests per second of ``clients`` threads sending back to back."""
    accepted = [0] * clients
    deadline = time.perf_counter() + seconds

    def run(number: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.perf_counter() < deadline:
                if send(number, client):
                    accepted[number] += 1
                else:
                    time.sleep(0.05)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(accepted) / (time.perf_counter() - started)


def open_loop(
    rate: float, seconds: float, workers: int, send: Callable[[httpx.Client], None], url: str
) -> None:
    """``send`` at ``rate`` a second on an absolute schedule, from a pool of ``workers`` threads."""
    local = threading.local()
    opened: list[httpx.Client] = []
    lock = threading.Lock()

    def task() -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=120)
            with lock:
                opened.append(client)
        send(client)

    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for number in count():
            due = begin + number / rate
            if due >= begin + seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(task)
    for client in opened:
        client.close()


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    summary = LatencySummary.from_seconds(values)
    return f"{summary.p50:.1f} / {summary.p99:.1f} / {summary.max:.1f} (n = {summary.count})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--calibrate-seconds", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=2.0, help="offered / sustained rate")
    parser.add_argument("--cameras", type=int, default=1000, help="new camera ids over the run")
    parser.add_argument("--quick", action="store_true", help="15 s, 3 s calibrations, 200 camera ids")
    parser.add_argument("--serve-option", action="append", default=[], help="passed to crossview serve")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.calibrate_seconds, args.cameras = 15.0, 3.0, 200

    folder = Path(tempfile.mkdtemp(prefix="crossview-attack-"))
    data_dir = folder / "data"
    data_dir.mkdir(mode=0o700)
    with KeyStore(data_dir / "keys.sqlite") as keys:
        token, _ = keys.create("bench", "admin")
    # every client here comes from 127.0.0.1, where a site's cameras come from addresses of their own:
    # the per-address connection cap is raised, the per-credential rate limit taken out of the way
    server = Server(
        data_dir,
        folder / "server.log",
        *("--model", "bench", "--rate", "100000", "--burst", "100000"),
        *("--max-connections-per-client", "1000"),
        *args.serve_option,
    )
    headers = {"Authorization": f"Bearer {token}"}
    rss: list[tuple[float, float]] = []
    sampling = threading.Event()
    begin = time.perf_counter()

    def sample() -> None:
        while not sampling.wait(0.25):
            try:
                rss.append((time.perf_counter() - begin, server.rss_mib()))
            except OSError:
                return

    sampler = threading.Thread(target=sample, name="rss")
    sampler.start()
    start_rss = server.rss_mib()
    template = BatchTemplate(10)
    frames = rendered_frames()
    bombs = {
        "search 20000x20000": png_bomb(20000, 20000),
        "search 32000x32000": png_bomb(32000, 32000),
        "frames 8000x8000": png_bomb(8000, 8000),
        "frames 40000x40000": png_bomb(40000, 40000),
    }
    sizes = [len(b) for b in bombs.values()]
    log(f"server ready in {server.ready_s:.1f} s, RSS {start_rss:.0f} MiB; bombs of {sizes} bytes")

    # ---- calibration: what the service sustains on each ingest path
    # the site's cameras: 24 sending detections, 16 sending images (the first 4 of each calibrate)
    json_feeds = [CameraFeed(f"json-{n}", template) for n in range(JSON_CAMERAS)]
    image_feeds = [ImageFeed(f"images-{n}", frames) for n in range(IMAGE_CAMERAS)]
    scratch = Tally()

    def send_json(number: int, client: httpx.Client) -> bool:
        answer = post(
            scratch,
            client,
            "/v1/ingest/detections",
            content=json_feeds[number].next_body(),
            headers={**headers, "Content-Type": "application/json"},
        )
        return answer is not None and answer.status_code == 202

    def send_images(number: int, client: httpx.Client) -> bool:
        data, files = image_feeds[number].next_form()
        answer = post(scratch, client, "/v1/ingest/frames", data=data, files=files, headers=headers)
        return answer is not None and answer.status_code == 202

    json_rate = sustained(args.calibrate_seconds, 4, send_json, server.url, headers)
    log(f"JSON ingest sustains {json_rate:.1f} batches/s")
    image_rate = sustained(args.calibrate_seconds, 4, send_images, server.url, headers)
    log(f"image ingest sustains {image_rate:.1f} batches/s ({image_rate * IMAGES_PER_BATCH:.1f} frames/s)")
    deadline = time.perf_counter() + 120
    while (
        httpx.get(f"{server.url}/v1/stats", headers=headers).json()["batches_queued"]
        and time.perf_counter() < deadline
    ):
        time.sleep(0.25)
    calibrated_rss = server.rss_mib()

    # ---- finding 4 alone: two clients sending 14 MB bodies without a credential, back to back
    big_body = b'{"camera_id": "x", "frames": [' + b" " * (14 * MIB) + b"]}"
    quiet_health, loud_health, loud_answers = Tally(), Tally(), Tally()

    def probe_into(tally: Tally, seconds: float) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                started = time.perf_counter()
                tally.record(started, client.get("/healthz"))
                time.sleep(0.05)

    probe_into(quiet_health, args.calibrate_seconds)
    unauthenticated_stop = threading.Event()

    def unauthenticated_loop() -> None:
        transport = httpx.HTTPTransport(local_address="127.0.0.2")  # not the cameras' address
        with httpx.Client(base_url=server.url, timeout=120, transport=transport) as client:
            while not unauthenticated_stop.is_set():
                post(
                    loud_answers,
                    client,
                    "/v1/ingest/detections",
                    content=big_body,
                    headers={"Content-Type": "application/json"},
                )

    loud = [threading.Thread(target=unauthenticated_loop) for _ in range(2)]
    for thread in loud:
        thread.start()
    probe_into(loud_health, args.calibrate_seconds)
    unauthenticated_stop.set()
    for thread in loud:
        thread.join()
    log(
        f"healthz p99 alone {ms(quiet_health.accepted)}, beside 2 unauthenticated 14 MB clients "
        f"{ms(loud_health.accepted)}"
    )

    # ---- the attack
    tallies: dict[str, Tally] = defaultdict(Tally)
    # every camera of the site sends once, so all are streaming before the attacker arrives
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for number in range(JSON_CAMERAS):
            send_json(number, client)
        for number in range(IMAGE_CAMERAS):
            send_images(number, client)
    json_pool: list[Feed] = list(json_feeds)
    image_pool: list[Feed] = list(image_feeds)
    pools_lock = threading.Lock()
    new_camera = count()
    seconds = args.seconds

    def pooled(
        name: str, pool: list[Feed], send: Callable[[Feed, httpx.Client], None]
    ) -> Callable[[httpx.Client], None]:
        """A sender that takes a camera no other send is using, so each camera's batches stay in order."""

        def run(client: httpx.Client) -> None:
            with pools_lock:
                feed = pool.pop() if pool else None
            if feed is None:  # every camera has a request in flight: counted, not sent
                tallies[name].statuses["no free camera"] += 1
                return
            try:
                send(feed, client)
            finally:
                with pools_lock:
                    pool.append(feed)

        return run

    def json_batch(feed: Feed, client: httpx.Client) -> None:
        assert isinstance(feed, CameraFeed)
        body = feed.next_body()
        post(tallies["JSON ingest"], client, "/v1/ingest/detections", content=body, headers=json_headers)

    def image_batch(feed: Feed, client: httpx.Client) -> None:
        assert isinstance(feed, ImageFeed)
        data, files = feed.next_form()
        post(tallies["image ingest"], client, "/v1/ingest/frames", data=data, files=files, headers=headers)

    json_headers = {**headers, "Content-Type": "application/json"}
    overload_json = pooled("JSON ingest", json_pool, json_batch)
    overload_images = pooled("image ingest", image_pool, image_batch)

    bomb_names = list(bombs)
    bomb_number = count()

    def bomb(client: httpx.Client) -> None:
        name = bomb_names[next(bomb_number) % len(bomb_names)]
        data = bombs[name]
        if name.startswith("search"):
            post(
                tallies[f"bomb: {name}"],
                client,
                "/v1/search/image",
                files={"image": ("b.png", data)},
                headers=headers,
            )
        else:
            form = {"camera_id": f"bomb-{next(new_camera)}", "timestamps": "0.0"}
            post(
                tallies[f"bomb: {name}"],
                client,
                "/v1/ingest/frames",
                data=form,
                files=[("images", ("b.png", data, "image/png"))],
                headers=headers,
            )

    ultra = ultra_hd_frame()

    def ultra_hd(client: httpx.Client) -> None:
        # valid 4096 x 2160 frames (at the image limit) from new cameras: the frame-pixel budget's test
        form = {"camera_id": f"uhd-{next(new_camera)}", "timestamps": "0.0"}
        post(
            tallies["4K frames, new cameras"],
            client,
            "/v1/ingest/frames",
            data=form,
            files=[("images", ("uhd.jpg", ultra, "image/jpeg"))],
            headers=headers,
        )

    def churn(client: httpx.Client) -> None:
        body = {
            "camera_id": f"new-camera-{next(new_camera)}",
            "model": "bench",
            "frames": [
                {
                    "frame_index": 0,
                    "timestamp": 0.0,
                    "detections": [{"xyxy": [10, 10, 50, 90], "confidence": 0.9}],
                }
            ],
        }
        post(tallies["new camera ids"], client, "/v1/ingest/detections", json=body, headers=headers)

    health = Tally()
    stranger = httpx.Client(
        base_url=server.url, timeout=120, transport=httpx.HTTPTransport(local_address="127.0.0.3")
    )

    def unauthenticated(client: httpx.Client) -> None:
        # from another address: its failures must not throttle the site's cameras on 127.0.0.1
        post(
            tallies["unauthenticated 14 MB"],
            stranger,
            "/v1/ingest/detections",
            content=big_body,
            headers={"Content-Type": "application/json"},
        )

    def probe(client: httpx.Client) -> None:
        started = time.perf_counter()
        try:
            health.record(started, client.get("/healthz"))
        except httpx.HTTPError as error:
            health.record(started, None, type(error).__name__)

    loads = [
        ("JSON ingest", args.factor * json_rate, JSON_CAMERAS, overload_json),
        ("image ingest", args.factor * image_rate, IMAGE_CAMERAS, overload_images),
        ("bombs", 4.0, 8, bomb),
        ("new camera ids", args.cameras / seconds, 8, churn),
        ("4K frames, new cameras", 1.0, 2, ultra_hd),
        ("unauthenticated 14 MB", 4.0, 2, unauthenticated),
        ("healthz", 10.0, 4, probe),
    ]
    log(f"attack for {seconds:.0f} s: " + ", ".join(f"{name} {rate:.1f}/s" for name, rate, _, _ in loads))
    attack_start = time.perf_counter()
    attack_cpu = server.cpu()
    threads = [
        threading.Thread(target=open_loop, args=(rate, seconds, workers, send, server.url), name=name)
        for name, rate, workers, send in loads
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stranger.close()
    attack_s = time.perf_counter() - attack_start
    server_cores = (server.cpu() - attack_cpu) / attack_s
    attack_rss = [value for at, value in rss if at >= attack_start - begin]
    after_attack = server.rss_mib()
    stats = httpx.get(f"{server.url}/v1/stats", headers=headers, timeout=60).json()
    time.sleep(5)
    settled = server.rss_mib()
    stop_s, clean = server.stop()
    sampling.set()
    sampler.join()

    # ---- report
    offered = {name: rate for name, rate, _, _ in loads}
    fivexx = sum(
        n
        for t in [*tallies.values(), health]
        for s, n in t.statuses.items()
        if s.startswith("5") and s != "503"
    )
    print("## The service under attack and overload (issue 12)\n")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"command: `{command}`  ")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ")
    print(
        f"machine: {platform.platform()}, {platform.machine()}, os.cpu_count() {os.cpu_count()}; "
        f"Python {platform.python_version()}  "
    )
    print("note: the load clients (threads of this process) share the cores with the server.\n")
    print(
        f"Calibration (closed loop, 4 clients, {args.calibrate_seconds:.0f} s each, then the queue drained; "
        f"batches processed over the whole time): JSON ingest "
        f"{json_rate:.1f} batches/s of 10 frames x 10 detections with 480-d embeddings; image ingest "
        f"{image_rate:.1f} batches/s of {IMAGES_PER_BATCH} JPEG frames of {IMAGE_SIZE[1]} x {IMAGE_SIZE[0]} "
        "(motion detection, colour embeddings, SORT).\n"
    )
    print(
        f"Two clients sending 14 MB JSON bodies without a credential, back to back, from 127.0.0.2 "
        f"({args.calibrate_seconds:.0f} s): answers {dict(sorted(loud_answers.statuses.items()))}, refused "
        f"in {ms(loud_answers.refused)} ms; `/healthz` 20 a second beside them "
        f"{ms(loud_health.accepted)} ms, alone {ms(quiet_health.accepted)} ms (p50 / p99 / max).\n"
    )
    print(f"Attack: {attack_s:.1f} s, server {server_cores:.2f} cores.\n")
    print("| requests | offered /s | answers by status | accepted ms: p50 / p99 / max | refused ms: same |")
    print("|---|---|---|---|---|")
    for name, tally in sorted(tallies.items()):
        rate = offered.get(name, offered["bombs"] / len(bombs))
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
        print(f"| {name} | {rate:.1f} | {statuses} | {ms(tally.accepted)} | {ms(tally.refused)} |")
    print(
        f"| `/healthz` | 10.0 | {', '.join(f'{s}: {n}' for s, n in sorted(health.statuses.items()))} "
        f"| {ms(health.accepted)} | - |\n"
    )
    print("| figure | value |")
    print("|---|---|")
    print(f"| 5xx other than 503 | {fivexx} |")
    print(f"| 429/503 without `Retry-After` | {sum(t.missing_retry_after for t in tallies.values())} |")
    print(f"| RSS at start / after calibration | {start_rss:.0f} / {calibrated_rss:.0f} MiB |")
    peak, median = max(attack_rss), float(np.median(attack_rss))
    print(f"| RSS during the attack: peak / median | {peak:.0f} / {median:.0f} MiB |")
    print(f"| RSS at the end / 5 s later | {after_attack:.0f} / {settled:.0f} MiB |")
    print(
        f"| cameras holding state at the end | {stats['cameras']} ({stats['camera_megapixels']} megapixels) |"
    )
    print(
        f"| batches done / queued / failed | {stats['batches_done']} / {stats['batches_queued']} / "
        f"{stats['batches_failed']} |"
    )
    print(f"| SIGTERM to exit | {stop_s:.1f} s (clean: {clean}) |")


if __name__ == "__main__":
    main()
