"""``/v1/tracks`` and ``/v1/global-tracks``: what was tracked, per camera and across cameras."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from crossview.serve import usecases
from crossview.serve.deps import Caller, ServiceDep
from crossview.serve.http import access
from crossview.serve.keys import Scope as KeyScope
from crossview.serve.schemas import (
    MAX_ID,
    DetectionOut,
    ErrorOut,
    GlobalTrackOut,
    GlobalTracksOut,
    TrackDetailOut,
    TrackOut,
    TracksOut,
)
from crossview.serve.store import DetectionRow, TrackRow

router = APIRouter()


@router.get("/v1/tracks", tags=["tracks"], openapi_extra=access(KeyScope.READ))
def tracks(
    _: Caller,
    service: ServiceDep,
    camera_id: Annotated[str | None, Query(max_length=128)] = None,
    start: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    end: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> TracksOut:
    """Tracks of a camera (or all) overlapping ``[start, end]``, by id; page with ``after_id``."""
    usecases.check_window(start, end)
    found = service.tracks(camera_id=camera_id, start=start, end=end, limit=limit, after_id=after_id)
    return tracks_page(found, limit)


@router.get("/v1/global-tracks", tags=["tracks"], openapi_extra=access(KeyScope.READ))
def global_tracks(
    _: Caller,
    service: ServiceDep,
    camera_id: Annotated[str | None, Query(max_length=128, description="seen by this camera")] = None,
    start: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    end: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=-1, le=MAX_ID)] = -1,
) -> GlobalTracksOut:
    """Objects across cameras: each global identity with its member tracks, by global id.

    A track gets its global id when it ends; tracks not yet associated are not listed.
    """
    usecases.check_window(start, end)
    found = service.global_tracks(camera_id=camera_id, start=start, end=end, limit=limit, after_id=after_id)
    return global_tracks_page(found, limit)


@router.get(
    "/v1/global-tracks/{global_id}",
    tags=["tracks"],
    responses={404: {"model": ErrorOut}},
    openapi_extra=access(KeyScope.READ),
)
def global_track(
    global_id: Annotated[int, Path(ge=0, le=MAX_ID)], _: Caller, service: ServiceDep
) -> GlobalTrackOut:
    """One object across cameras: its member tracks in time order."""
    return global_track_out(*usecases.global_track(service, global_id))


@router.get(
    "/v1/tracks/{track}",
    tags=["tracks"],
    responses={404: {"model": ErrorOut}},
    openapi_extra=access(KeyScope.READ),
)
def track_detail(
    track: Annotated[int, Path(ge=1, le=MAX_ID)], _: Caller, service: ServiceDep
) -> TrackDetailOut:
    """One track and its boxes."""
    return track_detail_out(*usecases.track_with_boxes(service, track))


def tracks_page(rows: list[TrackRow], limit: int) -> TracksOut:
    """One page of tracks; ``next_after_id`` is set when the page is full (there may be more)."""
    page = [TrackOut(**t.to_dict()) for t in rows]
    return TracksOut(tracks=page, next_after_id=page[-1].id if len(page) == limit else None)


def global_tracks_page(found: list[tuple[int, list[TrackRow]]], limit: int) -> GlobalTracksOut:
    """One page of global tracks; ``next_after_id`` is set when the page is full (there may be more)."""
    page = [global_track_out(global_id, members) for global_id, members in found]
    return GlobalTracksOut(
        global_tracks=page, next_after_id=page[-1].global_id if len(page) == limit else None
    )


def global_track_out(global_id: int, members: list[TrackRow]) -> GlobalTrackOut:
    """A global identity: the time its member tracks span and the cameras that saw it."""
    return GlobalTrackOut(
        global_id=global_id,
        t_start=min(t.t_start for t in members),
        t_end=max(t.t_end for t in members),
        cameras=sorted({t.camera_id for t in members}),
        tracks=[TrackOut(**t.to_dict()) for t in members],
    )


def track_detail_out(track: TrackRow, boxes: list[DetectionRow]) -> TrackDetailOut:
    return TrackDetailOut(
        **track.to_dict(),
        boxes=[
            DetectionOut(
                frame_index=b.frame_index,
                timestamp=b.timestamp,
                xyxy=b.xyxy,
                confidence=b.confidence,
                class_id=b.class_id,
            )
            for b in boxes
        ],
    )
