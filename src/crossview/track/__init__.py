"""Per-camera multi-object trackers: SORT, ByteTrack and OC-SORT over one Kalman core.

Each tracker's ``update(detections)`` returns the same rows with ``tracker_id`` filled;
``make_tracker(name, **settings)`` builds one by name for configuration files and the CLI.
"""

from crossview.track.base import Tracker, TrackerConfig, TrackState, TrackView
from crossview.track.bytetrack import ByteTrackConfig, ByteTrackTracker
from crossview.track.factory import TRACKERS, make_tracker
from crossview.track.forecast import Forecast, forecast
from crossview.track.ocsort import OcSortConfig, OcSortTracker
from crossview.track.sort import SortConfig, SortTracker

__all__ = [
    "TRACKERS",
    "ByteTrackConfig",
    "ByteTrackTracker",
    "Forecast",
    "OcSortConfig",
    "OcSortTracker",
    "SortConfig",
    "SortTracker",
    "TrackState",
    "TrackView",
    "Tracker",
    "TrackerConfig",
    "forecast",
    "make_tracker",
]
