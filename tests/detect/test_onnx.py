"""ONNX detectors on models built by the tests, whose raw output is a known table.

Every expected box below is worked out by hand from the table and the letterbox:

- YOLOv8 at 64x64 (84 anchors), a 128x62 frame: scale 0.5, resized 64x31, centred, 16 rows of
  padding above, so ``frame = (2x, 2(y - 16))``; a 16x128 frame: resized 8x64, 28 columns of
  padding left, so ``frame = (2(x - 28), 2y)``.
- YOLOX at 64x64: the same 128x62 frame goes top-left, so ``frame = (2x, 2y)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from onnx import TensorProto
from pydantic import ValidationError

from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.detect.base import Detector
from crossview.detect.factory import DETECTORS, make_detector, parse_spec
from crossview.detect.onnx import (
    CPU,
    CUDA,
    OnnxDetectorConfig,
    YoloV8Config,
    YoloV8Detector,
    YoloxDetector,
    read_class_names,
    select_providers,
)
from tests.detect.onnx_models import constant_output_model

ANCHORS = 84  # 64x64 input: 8x8 + 4x4 + 2x2
NAMES = ("a", "b", "c")

# anchor: (cx, cy, w, h, score a, score b, score c), in input pixels
V8_ANCHORS = {
    0: (32, 32, 20, 10, 0.9, 0.1, 0.0),  # kept, class a
    5: (33, 32, 20, 10, 0.8, 0.0, 0.0),  # IoU 190/210 with anchor 0, same class: suppressed
    10: (32, 32, 20, 10, 0.3, 0.7, 0.4),  # same box as anchor 0 but class b: kept
    20: (2, 20, 8, 6, 0.0, 0.0, 0.6),  # crosses the left edge: clipped
    30: (50, 40, 10, 10, 0.2, 0.1, 0.0),  # below the 0.25 threshold
    40: (10, 45, 4, 4, 0.25, 0.0, 0.0),  # exactly at the threshold: kept
    50: (30, 30, 4, 4, 0.85, 0.0, 0.0),  # inside anchor 0's box, IoU 16/200: kept
    83: (50, 14, 10, 8, 0.0, 0.0, 0.5),  # partly in the top padding: clipped
}


def _v8_table(anchors_first: bool = False) -> NDArray[np.float32]:
    table = np.zeros((1, 4 + len(NAMES), ANCHORS), np.float32)
    for anchor, values in V8_ANCHORS.items():
        table[0, :, anchor] = values
    return table.transpose(0, 2, 1).copy() if anchors_first else table


def _frame(width: int, height: int, index: int = 0, camera: str = "cam") -> Frame:
    image = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Frame(image, camera_id=camera, index=index, timestamp=index / 10)


def _rows(d: Detections) -> list[tuple[float, int, list[float]]]:
    return [(float(c), int(k), b.tolist()) for c, k, b in zip(d.confidence, d.class_id, d.xyxy, strict=True)]


f32 = np.float32

# (score, class, xyxy in the 128x62 frame), best first
V8_EXPECTED_WIDE = [
    (float(f32(0.9)), 0, [44.0, 22.0, 84.0, 42.0]),
    (float(f32(0.85)), 0, [56.0, 24.0, 64.0, 32.0]),
    (float(f32(0.7)), 1, [44.0, 22.0, 84.0, 42.0]),
    (float(f32(0.6)), 2, [0.0, 2.0, 12.0, 14.0]),
    (float(f32(0.5)), 2, [90.0, 0.0, 110.0, 4.0]),
    (float(f32(0.25)), 0, [16.0, 54.0, 24.0, 62.0]),
]
# the same table on a 16x128 frame; anchors 20, 40 and 83 fall wholly in the padding and go
V8_EXPECTED_TALL = [
    (float(f32(0.9)), 0, [0.0, 54.0, 16.0, 74.0]),
    (float(f32(0.85)), 0, [0.0, 56.0, 8.0, 64.0]),
    (float(f32(0.7)), 1, [0.0, 54.0, 16.0, 74.0]),
]


@pytest.fixture
def v8_model(tmp_path: Path) -> Path:
    return constant_output_model(tmp_path / "v8.onnx", _v8_table(), input_shape=[1, 3, 64, 64])


@pytest.fixture
def v8_dynamic_model(tmp_path: Path) -> Path:
    return constant_output_model(tmp_path / "v8_dynamic.onnx", _v8_table(), input_shape=["batch", 3, 64, 64])


@pytest.fixture
def yolox_model(tmp_path: Path) -> Path:
    # (x, y, log w, log h, objectness, class scores): anchor 19 is stride 8 cell (3, 2), anchor 70
    # stride 16 cell (2, 1), anchors 80 and 83 stride 32 cells (0, 0) and (1, 1).
    table = np.zeros((1, ANCHORS, 7), np.float32)
    table[0, 19] = (0.5, 0.25, 0.0, 0.0, 0.8, 0.5, 0.25)  # centre (28, 18), 8x8
    table[0, 70] = (0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.9)  # centre (32, 16), 16x16
    table[0, 80] = (0.5, 0.5, 0.0, 0.0, 0.5, 0.6, 0.0)  # centre (16, 16), 32x32
    table[0, 83] = (0.5, 0.5, 0.0, 0.0, 0.9, 0.9, 0.0)  # centre (48, 48): wholly in the padding
    table[0, 5] = (0.0, 0.0, np.log(2.0), np.log(3.0), 0.4, 0.5, 0.1)  # score 0.2 < 0.25
    return constant_output_model(tmp_path / "yolox.onnx", table, input_shape=[1, 3, 64, 64])


# ------------------------------------------------------------------------------------ YOLOv8
def test_yolov8_decodes_filters_and_maps_back_exactly(v8_model: Path) -> None:
    detector = YoloV8Detector(v8_model, YoloV8Config(class_names=NAMES))
    [result] = detector.detect([_frame(128, 62, index=7, camera="gate")])
    assert _rows(result) == V8_EXPECTED_WIDE
    assert (result.camera_id, result.frame_index, result.timestamp) == ("gate", 7, 0.7)
    assert result.xyxy.dtype == np.float32 and result.class_id.dtype == np.int64
    assert (result.tracker_id == -1).all()
    assert detector.num_classes == 3 and detector.class_names == NAMES
    assert detector.input_size == (64, 64) and detector.batch_capacity == 1


def test_yolov8_class_filter_applies_before_the_best_class(v8_model: Path) -> None:
    only_c = YoloV8Detector(v8_model, YoloV8Config(class_names=NAMES, classes=("c",)))
    # anchor 10's best class is b (0.7), but with only c wanted its c score (0.4) counts
    assert _rows(only_c.detect([_frame(128, 62)])[0]) == [
        (float(f32(0.6)), 2, [0.0, 2.0, 12.0, 14.0]),
        (float(f32(0.5)), 2, [90.0, 0.0, 110.0, 4.0]),
        (float(f32(0.4)), 2, [44.0, 22.0, 84.0, 42.0]),
    ]
    by_id = YoloV8Detector(v8_model, YoloV8Config(classes=(0,)))
    assert _rows(by_id.detect([_frame(128, 62)])[0]) == [V8_EXPECTED_WIDE[i] for i in (0, 1, 5)]


def test_yolov8_thresholds_limits_and_agnostic_nms(v8_model: Path) -> None:
    frame = _frame(128, 62)
    top_two = YoloV8Detector(v8_model, YoloV8Config(max_detections=2)).detect([frame])[0]
    assert _rows(top_two) == V8_EXPECTED_WIDE[:2]
    strict = YoloV8Detector(v8_model, YoloV8Config(score_threshold=0.55)).detect([frame])[0]
    assert _rows(strict) == V8_EXPECTED_WIDE[:4]
    agnostic = YoloV8Detector(v8_model, YoloV8Config(class_agnostic_nms=True)).detect([frame])[0]
    assert _rows(agnostic) == [V8_EXPECTED_WIDE[i] for i in (0, 1, 3, 4, 5)]
    loose = YoloV8Detector(v8_model, YoloV8Config(iou_threshold=0.95)).detect([frame])[0]
    assert len(loose) == 7  # anchor 5 (IoU 0.905) survives too


def test_yolov8_dynamic_batch_runs_frames_together(v8_dynamic_model: Path, v8_model: Path) -> None:
    detector = YoloV8Detector(v8_dynamic_model, YoloV8Config(batch_size=2))
    assert detector.batch_capacity is None
    frames = [_frame(128, 62, 0), _frame(16, 128, 1), _frame(128, 62, 2)]  # runs of 2, then 1
    results = detector.detect(frames)
    assert [_rows(r) for r in results] == [V8_EXPECTED_WIDE, V8_EXPECTED_TALL, V8_EXPECTED_WIDE]
    assert [r.frame_index for r in results] == [0, 1, 2]
    one_by_one = YoloV8Detector(v8_model).detect(frames)  # fixed batch 1: a loop, same answers
    assert [_rows(r) for r in one_by_one] == [_rows(r) for r in results]


def test_yolov8_fixed_batch_larger_than_one_is_padded(tmp_path: Path) -> None:
    model = constant_output_model(tmp_path / "b4.onnx", _v8_table(), input_shape=[4, 3, 64, 64])
    detector = YoloV8Detector(model)
    assert detector.batch_capacity == 4
    results = detector.detect([_frame(16, 128, i) for i in range(5)])
    assert [_rows(r) for r in results] == [V8_EXPECTED_TALL] * 5


def test_half_precision_input(tmp_path: Path) -> None:
    model = constant_output_model(
        tmp_path / "fp16.onnx", _v8_table(), input_shape=[1, 3, 64, 64], input_type=TensorProto.FLOAT16
    )
    assert _rows(YoloV8Detector(model).detect([_frame(128, 62)])[0]) == V8_EXPECTED_WIDE


def test_yolov8_transposed_layout_only_when_asked(tmp_path: Path) -> None:
    model = constant_output_model(
        tmp_path / "t.onnx", _v8_table(anchors_first=True), input_shape=[1, 3, 64, 64]
    )
    with pytest.raises(ValueError, match=r"shape \(1, 84, 7\), expected \(N, 4 \+ classes, 84\)"):
        YoloV8Detector(model)
    detector = YoloV8Detector(model, YoloV8Config(layout="anchors_first"))
    assert _rows(detector.detect([_frame(128, 62)])[0]) == V8_EXPECTED_WIDE


def test_dynamic_spatial_size_needs_input_size(tmp_path: Path) -> None:
    model = constant_output_model(
        tmp_path / "hw.onnx",
        _v8_table(),
        input_shape=[1, 3, "height", "width"],
        output_shape=[1, 7, "anchors"],
    )
    with pytest.raises(ValueError, match=r"dynamic size; set input_size=\(width, height\)"):
        YoloV8Detector(model)
    detector = YoloV8Detector(model, YoloV8Config(input_size=(64, 64)))
    assert _rows(detector.detect([_frame(128, 62)])[0]) == V8_EXPECTED_WIDE
    # 96x64 has 126 anchors; the model gives 84 (ONNX Runtime infers the output's shape)
    with pytest.raises(
        ValueError, match=r"shape \(1, 7, 84\), expected \(N, 4 \+ classes, 126\) for YOLOv8 at 96x64"
    ):
        YoloV8Detector(model, YoloV8Config(input_size=(96, 64)))


# ------------------------------------------------------------------------------------ YOLOX
def test_yolox_decodes_the_grid_and_maps_back_exactly(yolox_model: Path) -> None:
    detector = YoloxDetector(yolox_model, OnnxDetectorConfig(class_names=("p", "q")))
    [result] = detector.detect([_frame(128, 62)])
    assert _rows(result) == [
        (float(f32(1.0) * f32(0.9)), 1, [48.0, 16.0, 80.0, 48.0]),  # (24, 8, 40, 24) x 2
        (float(f32(0.8) * f32(0.5)), 0, [48.0, 28.0, 64.0, 44.0]),  # (24, 14, 32, 22) x 2
        (float(f32(0.5) * f32(0.6)), 0, [0.0, 0.0, 64.0, 62.0]),  # (0, 0, 32, 32) x 2, clipped
    ]


def test_yolox_log_sizes_decode_with_exp(yolox_model: Path) -> None:
    detector = YoloxDetector(yolox_model, OnnxDetectorConfig(score_threshold=0.15))
    result = detector.detect([_frame(64, 64)])[0]  # 64x64 frame: no letterbox at all
    row = np.flatnonzero(np.isclose(result.confidence, 0.2))
    assert row.size == 1
    # anchor 5: stride 8 cell (5, 0), centre (40, 0), size (2 x 8, 3 x 8)
    np.testing.assert_allclose(result.xyxy[row[0]], [32, 0, 48, 12], rtol=1e-6)


# ------------------------------------------------------------------------- refusals, errors
def test_yolov8_model_is_refused_as_yolox(v8_model: Path) -> None:
    with pytest.raises(ValueError, match=r"v8\.onnx.*shape \(1, 7, 84\), expected \(N, 84, 5 \+ classes\)"):
        YoloxDetector(v8_model)


def test_yolox_model_is_refused_as_yolov8(yolox_model: Path) -> None:
    with pytest.raises(ValueError, match=r"shape \(1, 84, 7\), expected \(N, 4 \+ classes, 84\) for YOLOv8"):
        YoloV8Detector(yolox_model)


def test_wrong_input_shape_is_refused(tmp_path: Path) -> None:
    model = constant_output_model(tmp_path / "gray.onnx", _v8_table(), input_shape=[1, 1, 64, 64])
    with pytest.raises(
        ValueError, match=r"input has shape \(1, 1, 64, 64\), expected \(N, 3, height, width\)"
    ):
        YoloV8Detector(model)
    with pytest.raises(ValueError, match="does not match the model's input"):
        YoloV8Detector(_v8(tmp_path), YoloV8Config(input_size=(32, 32)))


def _v8(tmp_path: Path) -> Path:
    return constant_output_model(tmp_path / "plain.onnx", _v8_table(), input_shape=[1, 3, 64, 64])


def test_missing_and_corrupt_model_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(FileNotFoundError, match=r"ONNX model not found: .*nowhere/model\.onnx"):
        YoloxDetector(missing)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ValueError, match=r"could not load ONNX model .*corrupt\.onnx"):
        YoloxDetector(corrupt)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(_v8(tmp_path).read_bytes()[:100])
    with pytest.raises(ValueError, match=r"could not load ONNX model .*truncated\.onnx"):
        YoloV8Detector(truncated)


def test_class_names_and_filters_are_checked(v8_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 classes but 2 class names"):
        YoloV8Detector(v8_model, YoloV8Config(class_names=("a", "b")))
    with pytest.raises(ValueError, match=r"unknown class 'dog'; the model's classes are a, b, c"):
        YoloV8Detector(v8_model, YoloV8Config(class_names=NAMES, classes=("dog",)))
    with pytest.raises(ValueError, match="class id 3 is out of range"):
        YoloV8Detector(v8_model, YoloV8Config(classes=(3,)))
    names = tmp_path / "names.txt"
    names.write_text("a\n b \n\nc\n")
    assert read_class_names(names) == NAMES
    from_file = YoloV8Detector(v8_model, YoloV8Config(class_names=names, classes=("b",)))
    assert from_file.class_names == NAMES
    assert _rows(from_file.detect([_frame(128, 62)])[0]) == [V8_EXPECTED_WIDE[2]]
    with pytest.raises(FileNotFoundError, match="class names file not found"):
        YoloV8Detector(v8_model, YoloV8Config(class_names=tmp_path / "none.txt"))
    assert YoloV8Detector(v8_model).class_names == ("0", "1", "2")


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        OnnxDetectorConfig(score_threshold=1.5)
    with pytest.raises(ValidationError):
        OnnxDetectorConfig(max_detections=0)
    with pytest.raises(ValidationError):
        OnnxDetectorConfig(unknown=1)
    with pytest.raises(ValidationError):
        OnnxDetectorConfig(layout="anchors_first")  # a YOLOv8 setting only


# ------------------------------------------------------------------------------- providers
def test_provider_selection() -> None:
    available = [CUDA, CPU]
    assert select_providers("auto", available) == [CUDA, CPU]
    assert select_providers("auto", [CPU]) == [CPU]
    assert select_providers("cpu", available) == [CPU]
    assert select_providers(("cuda",), available) == [CUDA, CPU]
    with pytest.warns(RuntimeWarning, match="'tensorrt' is not available"):
        assert select_providers(("tensorrt", "cuda"), available) == [CUDA, CPU]
    with pytest.warns(RuntimeWarning, match="'CUDAExecutionProvider' is not available"):
        assert select_providers((CUDA,), [CPU]) == [CPU]


def test_detector_falls_back_to_cpu(v8_model: Path) -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("CUDA is available here, so there is nothing to fall back from")
    with pytest.warns(RuntimeWarning, match="not available"):
        detector = YoloV8Detector(v8_model, YoloV8Config(providers=("cuda",)))
    assert detector.providers == [CPU]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" falls back silently
        assert YoloV8Detector(
            v8_model, YoloV8Config(providers="auto", intra_op_num_threads=1, allow_spinning=True)
        ).providers == [CPU]


# ------------------------------------------------------------------- contract and factory
def test_detector_contract(v8_model: Path, yolox_model: Path) -> None:
    for detector in (YoloV8Detector(v8_model), YoloxDetector(yolox_model)):
        assert isinstance(detector, Detector)
        assert detector.detect([]) == []
        frames = [_frame(128, 62, 0), _frame(64, 64, 1)]
        first, second = detector.detect(frames), detector.detect(frames)
        assert [_rows(r) for r in first] == [_rows(r) for r in second]
        assert [r.frame_index for r in first] == [0, 1]
    blank = YoloV8Detector(v8_model, YoloV8Config(score_threshold=1.0)).detect([_frame(128, 62, 3)])[0]
    assert blank.is_empty and blank.frame_index == 3 and blank.camera_id == "cam"


def test_factory(v8_model: Path, yolox_model: Path) -> None:
    assert parse_spec("YOLOX:/a:b/model.onnx") == ("yolox", "/a:b/model.onnx")
    assert set(DETECTORS) >= {"yolox", "yolov8", "yolo11"}
    detector = make_detector(f"yolov8:{v8_model}", score_threshold=0.55, class_names=list(NAMES))
    assert isinstance(detector, YoloV8Detector)
    assert detector.config.score_threshold == 0.55 and detector.class_names == NAMES
    assert _rows(detector.detect([_frame(128, 62)])[0]) == V8_EXPECTED_WIDE[:4]
    assert isinstance(make_detector(f"yolo11:{v8_model}"), YoloV8Detector)
    assert isinstance(make_detector(f"yolox:{yolox_model}", classes=[1]), YoloxDetector)
    with pytest.raises(ValueError, match="unknown detector 'ssd'"):
        make_detector("ssd:model.onnx")
    with pytest.raises(ValueError, match="needs a model path"):
        make_detector("yolox")
    with pytest.raises(ValidationError):
        make_detector(f"yolox:{yolox_model}", score_treshold=0.5)
