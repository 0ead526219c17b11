"""Trackers by name: one visible table, nothing registered on import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crossview.track.base import KalmanTracker
from crossview.track.bytetrack import ByteTrackConfig, ByteTrackTracker
from crossview.track.ocsort import OcSortConfig, OcSortTracker
from crossview.track.sort import SortConfig, SortTracker


def _sort(**settings: Any) -> KalmanTracker:
    return SortTracker(SortConfig(**settings))


def _bytetrack(**settings: Any) -> KalmanTracker:
    return ByteTrackTracker(ByteTrackConfig(**settings))


def _ocsort(**settings: Any) -> KalmanTracker:
    return OcSortTracker(OcSortConfig(**settings))


TRACKERS: dict[str, Callable[..., KalmanTracker]] = {
    "sort": _sort,
    "bytetrack": _bytetrack,
    "ocsort": _ocsort,
}


def make_tracker(name: str, **settings: Any) -> KalmanTracker:
    """A new tracker by name (``sort``, ``bytetrack``, ``ocsort``) with config overrides."""
    try:
        constructor = TRACKERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown tracker {name!r}; choose one of {', '.join(TRACKERS)}") from None
    return constructor(**settings)
