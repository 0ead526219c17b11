# ruff: noqa
# fmt: off
# mypy: ignore-errors
# Generated from proto/crossview/v1/crossview.proto by scripts/gen_grpc.sh: do not edit.
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("status", "ready", "queued_batches", "index_breaker")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    INDEX_BREAKER_FIELD_NUMBER: _ClassVar[int]
    status: str
    ready: bool
    queued_batches: int
    index_breaker: str
    def __init__(self, status: _Optional[str] = ..., ready: _Optional[bool] = ..., queued_batches: _Optional[int] = ..., index_breaker: _Optional[str] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("xyxy", "confidence", "class_id", "embedding")
    XYXY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    xyxy: _containers.RepeatedScalarFieldContainer[float]
    confidence: float
    class_id: int
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, xyxy: _Optional[_Iterable[float]] = ..., confidence: _Optional[float] = ..., class_id: _Optional[int] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("frame_index", "timestamp", "detections")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    timestamp: float
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    def __init__(self, frame_index: _Optional[int] = ..., timestamp: _Optional[float] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("camera_id", "model", "frames")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    model: str
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, camera_id: _Optional[str] = ..., model: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class IngestReply(_message.Message):
    __slots__ = ("batch_id", "frames", "detections", "queued")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    frames: int
    detections: int
    queued: int
    def __init__(self, batch_id: _Optional[int] = ..., frames: _Optional[int] = ..., detections: _Optional[int] = ..., queued: _Optional[int] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("cameras", "classes", "time_range")
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    cameras: _containers.RepeatedScalarFieldContainer[str]
    classes: _containers.RepeatedScalarFieldContainer[int]
    time_range: TimeRange
    def __init__(self, cameras: _Optional[_Iterable[str]] = ..., classes: _Optional[_Iterable[int]] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("embedding", "track", "image", "k", "filter", "rerank")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    embedding: Embedding
    track: int
    image: bytes
    k: int
    filter: Filter
    rerank: str
    def __init__(self, embedding: _Optional[_Union[Embedding, _Mapping]] = ..., track: _Optional[int] = ..., image: _Optional[bytes] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., rerank: _Optional[str] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("rank", "track", "camera_id", "track_id", "class_id", "t_start", "t_end", "distance", "appearance", "rerank", "context", "global_id")
    RANK_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    T_START_FIELD_NUMBER: _ClassVar[int]
    T_END_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    APPEARANCE_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_ID_FIELD_NUMBER: _ClassVar[int]
    rank: int
    track: int
    camera_id: str
    track_id: int
    class_id: int
    t_start: float
    t_end: float
    distance: float
    appearance: float
    rerank: float
    context: float
    global_id: int
    def __init__(self, rank: _Optional[int] = ..., track: _Optional[int] = ..., camera_id: _Optional[str] = ..., track_id: _Optional[int] = ..., class_id: _Optional[int] = ..., t_start: _Optional[float] = ..., t_end: _Optional[float] = ..., distance: _Optional[float] = ..., appearance: _Optional[float] = ..., rerank: _Optional[float] = ..., context: _Optional[float] = ..., global_id: _Optional[int] = ...) -> None: ...

class SearchReply(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...
