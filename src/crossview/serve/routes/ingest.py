"""``/v1/ingest/*``: a camera's detections or encoded frames, acknowledged (202) once stored."""

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from crossview.serve import usecases
from crossview.serve.deps import Caller, IdempotencyKey, MetricsDep, ServiceDep
from crossview.serve.errors import InvalidRequest
from crossview.serve.http import access
from crossview.serve.keys import Scope as KeyScope
from crossview.serve.metrics import ServiceMetrics
from crossview.serve.schemas import MAX_ID, ErrorOut, FrameIn, IngestIn, IngestOut
from crossview.serve.service import Ack, FrameInput, ImageInput, Service

router = APIRouter()


@router.post(
    "/v1/ingest/detections",
    status_code=202,
    tags=["ingest"],
    responses={422: {"model": ErrorOut}},
    openapi_extra=access(KeyScope.INGEST),
)
def ingest(
    body: IngestIn,
    principal: Caller,
    service: ServiceDep,
    metrics: MetricsDep,
    response: Response,
    key: IdempotencyKey = None,
) -> IngestOut:
    """Accept one camera's frames of detections; 202 once stored durably (tracked later)."""
    with usecases.refusals_counted(metrics, len(body.frames)):
        ack = service.submit(
            body.camera_id,
            frame_inputs(body.frames),
            model=body.model,
            idempotency=usecases.idempotency(principal, key),
        )
    return acknowledged(ack, body.camera_id, service, metrics, response)


@router.post(
    "/v1/ingest/frames",
    status_code=202,
    tags=["ingest"],
    responses={415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    openapi_extra=access(KeyScope.INGEST),
)
async def ingest_frames(
    principal: Caller,
    service: ServiceDep,
    metrics: MetricsDep,
    response: Response,
    camera_id: Annotated[str, Form(min_length=1, max_length=128)],
    timestamps: Annotated[str, Form(description="comma-separated seconds, one per image, increasing")],
    images: Annotated[list[UploadFile], File(description="encoded frames (JPEG, PNG, WebP, BMP), in order")],
    frame_indices: Annotated[str | None, Form(description="comma-separated; default 0, 1, ...")] = None,
    key: IdempotencyKey = None,
) -> IngestOut:
    """Accept one camera's encoded frames; the service detects, embeds and tracks them (202)."""
    numbers = frame_numbers(len(images), timestamps, frame_indices)
    inputs = [
        ImageInput(frame_index=index, timestamp=time, data=await image.read())
        for (index, time), image in zip(numbers, images, strict=True)
    ]
    with usecases.refusals_counted(metrics, len(inputs)):
        ack = await run_in_threadpool(
            service.submit_images, camera_id, inputs, idempotency=usecases.idempotency(principal, key)
        )
    return acknowledged(ack, camera_id, service, metrics, response)


def acknowledged(
    ack: Ack, camera_id: str, service: Service, metrics: ServiceMetrics, response: Response
) -> IngestOut:
    """The 202's body; a replayed answer is marked ``Idempotent-Replayed: true``."""
    if ack.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    usecases.count_accepted(metrics, camera_id, ack)
    return IngestOut(
        batch_id=ack.batch_id, frames=ack.frames, detections=ack.detections, queued=service.queued
    )


def frame_numbers(images: int, timestamps: str, frame_indices: str | None) -> list[tuple[int, float]]:
    """Each image's frame index and timestamp, from the form's comma-separated fields.

    >>> frame_numbers(2, "0.0,0.1", None)
    [(0, 0.0), (1, 0.1)]
    """
    try:
        times = [float(t) for t in timestamps.split(",")]
        indices = [int(i) for i in frame_indices.split(",")] if frame_indices else list(range(images))
    except ValueError:
        raise InvalidRequest("timestamps and frame_indices must be comma-separated numbers") from None
    if len(times) != images or len(indices) != images:
        raise InvalidRequest(
            f"{images} images need as many timestamps ({len(times)}) and frame indices ({len(indices)})"
        )
    if any(not 0 <= i <= MAX_ID for i in indices):
        raise InvalidRequest(f"frame indices must be in [0, {MAX_ID}]")
    return list(zip(indices, times, strict=True))


def frame_inputs(frames: list[FrameIn]) -> list[FrameInput]:
    """The request's frames as the service takes them: one array per column."""
    return [_frame_input(frame, number) for number, frame in enumerate(frames)]


def _frame_input(frame: FrameIn, number: int) -> FrameInput:
    rows = frame.detections
    with_embedding = [d.embedding is not None for d in rows]
    if any(with_embedding) and not all(with_embedding):
        raise InvalidRequest(f"frame {number}: either every detection has an embedding or none has")
    embedding = np.asarray([d.embedding for d in rows], np.float32) if rows and all(with_embedding) else None
    return FrameInput(
        frame_index=frame.frame_index,
        timestamp=frame.timestamp,
        xyxy=np.asarray([d.xyxy for d in rows], np.float32).reshape(len(rows), 4),
        confidence=np.asarray([d.confidence for d in rows], np.float32),
        class_id=np.asarray([d.class_id for d in rows], np.int64),
        embedding=embedding,
    )
