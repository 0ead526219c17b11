"""The REST API's request and response bodies (pydantic models), as its OpenAPI schema shows them.

The models carry no docstrings on purpose: pydantic would put them in the schema's descriptions.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crossview.search.index import Filter

__all__ = [
    "MAX_ID",
    "DetectionIn",
    "DetectionOut",
    "ErrorBody",
    "ErrorOut",
    "FilterIn",
    "FrameIn",
    "GlobalTrackOut",
    "GlobalTracksOut",
    "HitOut",
    "IngestIn",
    "IngestOut",
    "SearchIn",
    "SearchOut",
    "TrackDetailOut",
    "TrackOut",
    "TracksOut",
]

MAX_ID = 2**62  # ids and frame numbers: SQLite integers are 64-bit


# ------------------------------------------------------------------------------------------ errors
class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
    request_id: str | None = None


# ------------------------------------------------------------------------------------------ ingest
class DetectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    xyxy: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=4, max_length=4, description="x1, y1, x2, y2 in pixels"
    )
    confidence: float = Field(ge=0, le=1)
    class_id: int = Field(default=0, ge=0, le=2**31 - 1)
    embedding: list[float] | None = Field(default=None, max_length=4096)


class FrameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frame_index: int = Field(ge=0, le=MAX_ID)
    timestamp: float = Field(allow_inf_nan=False, description="seconds; strictly increasing per camera")
    detections: list[DetectionIn] = Field(default_factory=list, max_length=10_000)


class IngestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(min_length=1, max_length=128)
    model: str = Field(default="unknown", min_length=1, max_length=128, description="the detector's name")
    frames: list[FrameIn] = Field(min_length=1, max_length=10_000)


class IngestOut(BaseModel):
    batch_id: int
    frames: int
    detections: int
    queued: int


# ------------------------------------------------------------------------------------------ search
class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: list[str] | None = Field(default=None, max_length=1000)
    classes: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(default=None, max_length=1000)
    time_range: (
        tuple[Annotated[float, Field(allow_inf_nan=False)], Annotated[float, Field(allow_inf_nan=False)]]
        | None
    ) = None

    @model_validator(mode="after")
    def _ordered(self) -> "FilterIn":
        if self.time_range is not None and self.time_range[1] < self.time_range[0]:
            start, end = self.time_range
            raise ValueError(f"time_range end ({end}) is before its start ({start})")
        return self

    def to_filter(self) -> Filter | None:
        if self.cameras is None and self.classes is None and self.time_range is None:
            return None
        return Filter(
            cameras=None if self.cameras is None else frozenset(self.cameras),
            classes=None if self.classes is None else frozenset(self.classes),
            time_range=self.time_range,
        )


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding: list[float] | None = Field(default=None, max_length=4096)
    track: int | None = Field(default=None, ge=1, le=MAX_ID, description="a track's id (from /v1/tracks)")
    k: int = Field(default=10, ge=1, le=1000)
    filter: FilterIn = Field(default_factory=FilterIn)
    rerank: Literal["none", "kreciprocal", "aqe"] = "none"


class HitOut(BaseModel):
    rank: int
    track: int
    camera_id: str
    track_id: int
    global_id: int
    class_id: int
    t_start: float
    t_end: float
    distance: float
    appearance: float
    rerank: float
    context: float


class SearchOut(BaseModel):
    hits: list[HitOut]


# ------------------------------------------------------------------------------------------ tracks
class TrackOut(BaseModel):
    id: int
    camera_id: str
    track_id: int
    class_id: int
    t_start: float
    t_end: float
    detections: int
    global_id: int
    indexed: bool


class TracksOut(BaseModel):
    tracks: list[TrackOut]
    next_after_id: int | None


class DetectionOut(BaseModel):
    frame_index: int
    timestamp: float
    xyxy: tuple[float, float, float, float]
    confidence: float
    class_id: int


class GlobalTrackOut(BaseModel):
    global_id: int
    t_start: float
    t_end: float
    cameras: list[str]
    tracks: list[TrackOut]


class GlobalTracksOut(BaseModel):
    global_tracks: list[GlobalTrackOut]
    next_after_id: int | None


class TrackDetailOut(TrackOut):
    boxes: list[DetectionOut]
