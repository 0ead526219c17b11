"""Object detectors that run an ONNX model with ONNX Runtime: YOLOX and YOLOv8/YOLO11 heads.

A detector reads its model once, checks at construction that the model's input is one
``N x 3 x H x W`` image tensor and that its output is the declared head's (anything else is
refused with the expected and the actual shapes), and then for each batch of frames:

1. letterboxes every frame the way the model was trained (see ``crossview.detect.preprocess``),
2. runs the model: the whole batch as one ``N x 3 x H x W`` tensor when the model's batch
   dimension is dynamic (at most ``batch_size`` frames per run), one frame per run when the
   model is fixed at batch 1 (and ``k`` per run, the last run padded, when fixed at ``k``),
3. decodes each frame's output (``crossview.detect.heads``), keeps for every anchor its best
   class among the wanted ones, drops scores below ``score_threshold``, runs per-class NMS,
   keeps the ``max_detections`` best, and maps the boxes back to the frame, clipped to it
   (a box that lies wholly in the padding, and so clips to nothing, is dropped).

Rows come out in decreasing confidence. Weights are never downloaded: pass a path to a model
exported from YOLOX (``tools/export_onnx.py``, raw output, no ``--decode_in_inference``) or from
ultralytics (``yolo export format=onnx``, optionally ``dynamic=True`` for batching).

>>> from crossview.detect.onnx import OnnxDetectorConfig
>>> OnnxDetectorConfig().score_threshold, OnnxDetectorConfig().iou_threshold
(0.25, 0.45)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.coco import COCO_CLASSES
from crossview.detect.heads import Dimension, Head, YoloV8Head, YoloxHead
from crossview.detect.nms import non_max_suppression
from crossview.detect.preprocess import BoxMapping, letterbox_batch, to_tensor

CPU: Final = "CPUExecutionProvider"
CUDA: Final = "CUDAExecutionProvider"
TENSORRT: Final = "TensorrtExecutionProvider"

_PROVIDER_ALIASES: Final[Mapping[str, str]] = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
_INPUT_TYPES: Final[Mapping[str, type[np.floating]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}

HeadFactory = Callable[[int, int], Head]
"""Builds a head for a model input of ``(width, height)`` pixels."""


class OnnxDetectorConfig(BaseModel):
    """Settings of an ONNX detector; every field has a default that suits COCO YOLO models.

    - ``score_threshold``: a box is kept when its score (class probability, times objectness
      for YOLOX) is at least this. 0.25 is ultralytics' default; YOLOX's demo draws from 0.3.
    - ``iou_threshold``: NMS drops a box whose IoU with a better box of the same class is above
      this (0.45, YOLOX's demo value; ultralytics predicts with 0.7, which keeps more overlaps).
    - ``max_detections``: at most this many boxes per frame, the best ones (ultralytics' 300).
    - ``classes``: keep only these classes, by id or by name (``("person", 2)``); ``None`` keeps
      all. The filter applies *before* each anchor's best class is chosen, so a person partly
      hidden by a bicycle is still found as a person when only persons are wanted.
    - ``class_agnostic_nms``: suppress overlapping boxes across classes too.
    - ``class_names``: the names of the model's classes, in order, or a text file with one per
      line (like ``coco_classes.txt``); ``None`` uses the COCO names for an 80-class model and
      indices (``"0"``, ``"1"``, ...) otherwise.
      Their number must equal the model's.
    - ``input_size``: ``(width, height)`` for a model whose spatial input size is dynamic;
      must agree with the model's when the model declares one.
    - ``batch_size``: the most frames per model run when the model's batch is dynamic.
    - ``providers``: ``"auto"`` (CUDA when ONNX Runtime has it, then CPU), ``"cpu"``, or execution
      providers in order of preference (ONNX Runtime names or ``"cuda"``, ``"tensorrt"``,
      ``"cpu"``). Unavailable ones are skipped with a warning; the CPU is always the last
      resort. TensorRT is only used when named: it compiles an engine at start-up (minutes).
    - ``intra_op_num_threads`` / ``inter_op_num_threads``: ONNX Runtime's thread pools;
      0 lets it choose (one intra-op thread per physical core).
    - ``allow_spinning``: let idle intra-op threads busy-wait for work (ONNX Runtime's own
      default). Off here: a pipeline shares the CPU with decoding and tracking, and on a busy
      2-core machine spinning made YOLOX-Nano with 2 threads twice as slow (p50 42 ms against
      22 ms without); on idle, dedicated cores turning it on may shave a little latency.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    score_threshold: float = Field(default=0.25, ge=0, le=1)
    iou_threshold: float = Field(default=0.45, ge=0, le=1)
    max_detections: int = Field(default=300, ge=1)
    classes: tuple[int | str, ...] | None = None
    class_agnostic_nms: bool = False
    class_names: tuple[str, ...] | Path | None = None
    input_size: tuple[int, int] | None = None
    batch_size: int = Field(default=8, ge=1)
    providers: Literal["auto", "cpu"] | tuple[str, ...] = "auto"
    intra_op_num_threads: int = Field(default=0, ge=0)
    inter_op_num_threads: int = Field(default=0, ge=0)
    allow_spinning: bool = False


class YoloV8Config(OnnxDetectorConfig):
    """``OnnxDetectorConfig`` plus the output ``layout`` (see ``crossview.detect.heads.YoloV8Head``).

    ``"channels_first"`` is ultralytics' ``N x (4 + C) x A``; ``"anchors_first"`` reads a
    transposed ``N x A x (4 + C)`` export and must be asked for explicitly.
    """

    layout: Literal["channels_first", "anchors_first"] = "channels_first"


def select_providers(requested: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Execution providers to ask ONNX Runtime for, best first, always ending with the CPU.

    >>> select_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> select_providers("auto", ["CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    if requested == "auto":
        wanted = [CUDA]
    elif isinstance(requested, str):
        wanted = [requested]
    else:
        wanted = list(requested)
    chosen: list[str] = []
    for name in wanted:
        provider = _PROVIDER_ALIASES.get(name.lower(), name)
        if provider in available or provider == CPU:
            if provider not in chosen:
                chosen.append(provider)
        elif requested != "auto":
            warnings.warn(
                f"execution provider {name!r} is not available in this ONNX Runtime "
                f"(available: {', '.join(available)}); skipping it",
                RuntimeWarning,
                stacklevel=3,
            )
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file, one per line, blank lines and surrounding spaces ignored."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"class names file not found: {file}") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise ValueError(f"class names file {file} has no names")
    return names


class OnnxDetector:
    """Runs an ONNX detection model whose output ``head`` decodes; see the module's notes.

    ``YoloxDetector`` and ``YoloV8Detector`` fix the head; use them rather than this class.
    A model that is missing raises ``FileNotFoundError``; one that ONNX Runtime cannot load, or
    whose shapes do not fit the head, raises ``ValueError`` naming the file and the shapes.
    """

    def __init__(
        self, model: str | Path, head: HeadFactory, config: OnnxDetectorConfig | None = None
    ) -> None:
        self.config = config if config is not None else OnnxDetectorConfig()
        self.model_path = Path(model)
        self._session = _open_session(self.model_path, self.config)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{self.model_path}: expected a model with one input and one output, got "
                f"inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        self._input_name, self._output_name = inputs[0].name, outputs[0].name
        input_dtype = _INPUT_TYPES.get(inputs[0].type)
        if input_dtype is None:
            raise ValueError(
                f"{self.model_path}: input {inputs[0].name!r} has type {inputs[0].type}, "
                f"expected one of {sorted(_INPUT_TYPES)}"
            )
        self._input_dtype: type[np.floating] = input_dtype
        width, height, self.batch_capacity = _input_geometry(
            self.model_path, list(inputs[0].shape), self.config.input_size
        )
        self.input_size = (width, height)
        self._head = head(width, height)
        self._output_shape: list[Dimension] = list(outputs[0].shape)
        try:
            self.num_classes = self._head.num_classes(self._output_shape)
        except ValueError as error:
            raise ValueError(f"{self.model_path}: {error} (model input {list(inputs[0].shape)})") from None
        self.class_names = _class_names(self.config.class_names, self.num_classes, self.model_path)
        self._columns = _class_columns(self.config.classes, self.class_names)
        self._format = self._head.input_format

    @property
    def providers(self) -> list[str]:
        """The execution providers ONNX Runtime actually uses for this model, best first."""
        return list(self._session.get_providers())

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """One ``Detections`` per frame, in order, boxes in the frame's pixels, best first."""
        chunk = self.batch_capacity or self.config.batch_size
        results: list[Detections] = []
        for start in range(0, len(frames), chunk):
            results.extend(self._detect_chunk(frames[start : start + chunk]))
        return results

    def __repr__(self) -> str:
        width, height = self.input_size
        return (
            f"{type(self).__name__}({str(self.model_path)!r}, input={width}x{height}, "
            f"classes={self.num_classes}, providers={self.providers})"
        )

    # ------------------------------------------------------------------------------ internals
    def _detect_chunk(self, frames: Sequence[Frame]) -> list[Detections]:
        images = [frame.image for frame in frames]
        if self.batch_capacity is not None and len(images) < self.batch_capacity:
            # A model fixed at batch k > 1 still needs k images; the padding rows are ignored.
            filler = np.full_like(images[0], self._format.letterbox.pad_value)
            images += [filler] * (self.batch_capacity - len(images))
        canvases, mappings = letterbox_batch(images, self._format.letterbox)
        tensor = to_tensor(
            canvases, rgb=self._format.rgb, divisor=self._format.divisor, dtype=self._input_dtype
        )
        output = np.asarray(self._session.run([self._output_name], {self._input_name: tensor})[0])
        self._check_output(output.shape, tensor.shape[0])
        return [self._select(output[i], mappings[i], frame) for i, frame in enumerate(frames)]

    def _check_output(self, shape: tuple[int, ...], batch: int) -> None:
        declared = self._output_shape
        if (
            len(shape) != len(declared)
            or shape[0] != batch
            or any(isinstance(d, int) and d != s for d, s in zip(declared, shape, strict=True))
        ):
            raise ValueError(
                f"{self.model_path}: model returned an output of shape {shape} for a batch of {batch}, "
                f"expected {tuple(declared)}"
            )
        try:
            self._head.num_classes(list(shape))
        except ValueError as error:
            raise ValueError(f"{self.model_path}: {error}") from None

    def _select(self, output: NDArray[np.floating], mapping: BoxMapping, frame: Frame) -> Detections:
        config = self.config
        fields: dict[str, Any] = {
            "camera_id": frame.camera_id,
            "frame_index": frame.index,
            "timestamp": frame.timestamp,
        }
        boxes, scores = self._head.decode(output)
        if self._columns is not None:
            scores = scores[:, self._columns]
        best = np.argmax(scores, axis=1)
        score = np.take_along_axis(scores, best[:, None], axis=1)[:, 0]
        candidates = np.flatnonzero(score >= config.score_threshold)
        if candidates.size == 0:
            return Detections.empty(**fields)
        class_id = best[candidates] if self._columns is None else self._columns[best[candidates]]
        boxes, score = boxes[candidates], score[candidates]
        keep = non_max_suppression(
            boxes,
            score,
            None if config.class_agnostic_nms else class_id,
            config.iou_threshold,
            config.max_detections,
        )
        xyxy = mapping.to_source(boxes[keep])
        # A box wholly in the padding clips to nothing; it is not an object in the frame.
        visible = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        keep = keep[visible]
        return Detections(xyxy=xyxy[visible], confidence=score[keep], class_id=class_id[keep], **fields)


class YoloxDetector(OnnxDetector):
    """YOLOX (raw grid output ``N x A x (5 + C)``) with ONNX Runtime.

    Pre-processing as YOLOX's ``preproc``: BGR, 0-255, letterboxed top-left with 114.

    >>> detector = YoloxDetector("yolox_nano.onnx")  # doctest: +SKIP
    >>> detector.detect(frames)  # doctest: +SKIP
    """

    def __init__(self, model: str | Path, config: OnnxDetectorConfig | None = None) -> None:
        super().__init__(model, YoloxHead, config)


class YoloV8Detector(OnnxDetector):
    """YOLOv8 / YOLO11 (output ``N x (4 + C) x A``) with ONNX Runtime.

    Pre-processing as ultralytics' ``LetterBox``: RGB, 0-1, letterboxed centred with 114.

    >>> detector = YoloV8Detector("yolo11n.onnx", YoloV8Config(classes=("person",)))  # doctest: +SKIP
    """

    def __init__(self, model: str | Path, config: YoloV8Config | None = None) -> None:
        settings = config if config is not None else YoloV8Config()
        layout = settings.layout

        def head(width: int, height: int) -> Head:
            return YoloV8Head(width, height, layout)

        super().__init__(model, head, settings)


def _open_session(path: Path, config: OnnxDetectorConfig) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_num_threads
    options.inter_op_num_threads = config.inter_op_num_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.allow_spinning else "0")
    providers = select_providers(config.providers, ort.get_available_providers())
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # ONNX Runtime raises its own exception types for unreadable models
        raise ValueError(f"could not load ONNX model {path}: {error}") from error


def _input_geometry(
    path: Path, shape: list[Dimension], requested: tuple[int, int] | None
) -> tuple[int, int, int | None]:
    """``(width, height, batch capacity or None if dynamic)`` of an ``N x 3 x H x W`` input."""
    text = "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"{path}: model input has shape {text}, expected (N, 3, height, width)")
    batch, height, width = (
        d if isinstance(d, int) and d > 0 else None for d in (shape[0], shape[2], shape[3])
    )
    if requested is not None:
        if (width is not None and width != requested[0]) or (height is not None and height != requested[1]):
            raise ValueError(
                f"{path}: input_size {requested[0]}x{requested[1]} does not match the model's input {text}"
            )
        width, height = requested
    if width is None or height is None:
        raise ValueError(f"{path}: model input {text} has a dynamic size; set input_size=(width, height)")
    return width, height, batch


def _class_names(source: tuple[str, ...] | Path | None, count: int, path: Path) -> tuple[str, ...]:
    if source is None:
        # An 80-class model is taken to be COCO-trained, the overwhelmingly common case.
        return COCO_CLASSES if count == len(COCO_CLASSES) else tuple(str(i) for i in range(count))
    names = read_class_names(source) if isinstance(source, Path) else source
    if len(names) != count:
        where = f" (from {source})" if isinstance(source, Path) else ""
        raise ValueError(
            f"{path}: the model has {count} classes but {len(names)} class names were given{where}"
        )
    return names


def _class_columns(wanted: tuple[int | str, ...] | None, names: tuple[str, ...]) -> NDArray[np.intp] | None:
    if wanted is None:
        return None
    index = {name: i for i, name in enumerate(names)}
    columns: list[int] = []
    for item in wanted:
        if isinstance(item, str):
            if item not in index:
                raise ValueError(f"unknown class {item!r}; the model's classes are {', '.join(names)}")
            columns.append(index[item])
        elif not 0 <= item < len(names):
            raise ValueError(f"class id {item} is out of range for a model with {len(names)} classes")
        else:
            columns.append(item)
    if not columns:
        raise ValueError("classes must name at least one class (or be None for all)")
    return np.asarray(sorted(set(columns)), dtype=np.intp)
