"""OnnxReidEmbedder: the real OSNet model on Market-1501 crops, and tiny hand-built models for the edges."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper

from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.embed.base import Embedder
from crossview.embed.onnx import OnnxReidEmbedder
from crossview.eval.reid import reid_metrics_from_features
from crossview.io.formats.reid import ReidManifest, read_reid_manifest
from tests.conftest import shared_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
OSNET = SHARED / "models" / "osnet_x0_25_msmt17.onnx"
MARKET = SHARED / "data" / "market1501" / "manifest.csv"

Image = NDArray[np.uint8]


def need(path: Path) -> Path:
    return shared_path(*path.relative_to(SHARED).parts)


def read_images(files: NDArray[np.str_]) -> list[Image]:
    images = []
    for file in files.tolist():
        image = cv2.imread(file, cv2.IMREAD_COLOR)
        assert image is not None, f"cannot read {file}"
        images.append(np.asarray(image, dtype=np.uint8))
    return images


def save_model(path: Path, graph: onnx.GraphProto) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.save(model, str(path))
    return path


def pooling_model(path: Path, input_shape: list[int | str], output_shape: list[int | str]) -> Path:
    """A tiny valid re-id model: per-channel global average of the input, ``B x 3`` features."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        ],
        "pool",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, output_shape)],
    )
    return save_model(path, graph)


def with_fixed_batch(source: Path, target: Path, batch: int) -> Path:
    """The OSNet model with its batch axis fixed (as some exporters leave it)."""
    model = onnx.load(str(source))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def osnet() -> OnnxReidEmbedder:
    return OnnxReidEmbedder(need(OSNET), batch_size=8, threads=2)


@pytest.fixture(scope="module")
def market() -> ReidManifest:
    return read_reid_manifest(need(MARKET))


@pytest.fixture(scope="module")
def crops(market: ReidManifest) -> list[Image]:
    """Twelve real person crops (64x128) of six identities."""
    rows = np.concatenate([np.flatnonzero(market.pids == pid)[:2] for pid in np.unique(market.pids)[:6]])
    return read_images(market.files[rows])


# ------------------------------------------------------------------------------ the real model
def test_reads_its_shapes_from_the_model(osnet: OnnxReidEmbedder) -> None:
    assert isinstance(osnet, Embedder)
    assert osnet.dim == 512
    assert osnet.input_size == (256, 128)
    assert osnet.fixed_batch is None and osnet.batch_size == 8
    assert osnet.providers == ["CPUExecutionProvider"]


def test_embed_fills_the_same_rows_with_unit_vectors_in_order(
    osnet: OnnxReidEmbedder, crops: list[Image]
) -> None:
    canvas = np.full((400, 600, 3), 100, np.uint8)
    places = [(10, 20), (250, 140), (420, 30)]  # (x, y) of three pasted 64x128 crops
    for (x, y), crop in zip(places, crops[:3], strict=True):
        canvas[y : y + 128, x : x + 64] = crop
    boxes = [[x, y, x + 64, y + 128] for x, y in places][::-1]  # rows in another order than pasted
    table = Detections(
        xyxy=boxes, confidence=[0.9, 0.5, 0.7], tracker_id=[3, 1, 2], camera_id="c", frame_index=0
    )
    frame = Frame(canvas, "c", 0, 0.0)
    empty_frame = Frame(canvas, "c", 1, 0.1)

    results = osnet.embed([frame, empty_frame], [table, Detections.empty(camera_id="c", frame_index=1)])

    filled = results[0]
    np.testing.assert_array_equal(filled.xyxy, table.xyxy)
    assert filled.tracker_id.tolist() == [3, 1, 2] and filled.confidence.tolist() == pytest.approx(
        [0.9, 0.5, 0.7]
    )
    assert filled.embedding is not None and filled.embedding.shape == (3, 512)
    assert filled.embedding.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(filled.embedding, axis=1), 1.0, rtol=1e-5)
    direct = osnet.embed_images(crops[:3][::-1])
    np.testing.assert_allclose(filled.embedding, direct, atol=1e-5)
    assert results[1].embedding is not None and results[1].embedding.shape == (0, 512)
    assert osnet.embed([], []) == []
    assert osnet.embed_images([]).shape == (0, 512)


def test_degenerate_and_border_boxes_do_not_crash(osnet: OnnxReidEmbedder) -> None:
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes: list[list[float]] = [
        [0, 0, 0, 0],  # empty, at the corner
        [159.5, 30, 160, 90],  # half a pixel wide on the right border
        [150, 119, 170, 125],  # mostly below the frame
        [-40, -40, -10, -10],  # wholly outside
        [10, 10, 10.2, 200],  # a sliver taller than the frame
        [0, 0, 160, 120],  # the whole frame
    ]
    frame = Frame(image, "c", 0, 0.0)
    (result,) = osnet.embed([frame], [Detections(xyxy=boxes)])
    assert result.embedding is not None and result.embedding.shape == (6, 512)
    assert np.all(np.isfinite(result.embedding))
    tiny = Frame(np.zeros((3, 5, 3), np.uint8) + 50, "tiny", 0, 0.0)  # smaller than the minimum crop
    (small,) = osnet.embed([tiny], [Detections(xyxy=[[1, 1, 2, 2]])])
    assert small.embedding is not None and small.embedding.shape == (1, 512)


def test_results_do_not_depend_on_batching(crops: list[Image]) -> None:
    frames = [
        Frame(np.ascontiguousarray(np.tile(crop, (1, 2, 1))), "c", i, float(i))
        for i, crop in enumerate(crops)
    ]
    tables = [
        Detections(xyxy=[[0, 0, 64, 128], [64, 0, 128, 128], [10, 20, 50, 100]][: 1 + i % 3])
        for i in range(12)
    ]
    reference = None
    for batch_size in (1, 5, 64):
        embedder = OnnxReidEmbedder(need(OSNET), batch_size=batch_size, threads=2)
        vectors = np.concatenate(
            [t.embedding for t in embedder.embed(frames, tables) if t.embedding is not None]
        )
        assert vectors.shape == (sum(len(t) for t in tables), 512)
        if reference is None:
            reference = vectors
        np.testing.assert_allclose(vectors, reference, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_models_with_a_fixed_batch_run_in_chunks_of_it(
    tmp_path: Path, osnet: OnnxReidEmbedder, crops: list[Image], batch: int
) -> None:
    fixed = OnnxReidEmbedder(with_fixed_batch(need(OSNET), tmp_path / "fixed.onnx", batch), batch_size=32)
    assert fixed.fixed_batch == batch and fixed.batch_size == batch
    vectors = fixed.embed_images(crops[:7])  # 7: not a multiple of 4, the last chunk is padded
    np.testing.assert_allclose(vectors, osnet.embed_images(crops[:7]), atol=1e-5)


def test_same_identity_is_closer_on_market(osnet: OnnxReidEmbedder, market: ReidManifest) -> None:
    pids = np.unique(market.pids)[::8][:40]  # 40 identities, up to 8 crops each
    rows = np.concatenate([np.flatnonzero(market.pids == pid)[:8] for pid in pids])
    vectors = osnet.embed_images(read_images(market.files[rows]))
    labels = market.pids[rows]
    similarity = vectors @ vectors.T
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(rows), dtype=bool)
    different = labels[:, None] != labels[None, :]
    # Measured: mean cosine 0.76 for the same identity, 0.47 for different ones.
    assert similarity[same].mean() > similarity[different].mean() + 0.15


def retrieval_subset(market: ReidManifest) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """50 queries (one per identity), 4 cross-camera matches each and 150 distractors."""
    query_pids = np.unique(market.query.pids)[::7][:50]
    query_rows = np.flatnonzero(market.is_query & np.isin(market.pids, query_pids))
    query_rows = query_rows[np.unique(market.pids[query_rows], return_index=True)[1]]
    gallery: list[int] = []
    for row in query_rows:
        matches = np.flatnonzero(
            ~market.is_query & (market.pids == market.pids[row]) & (market.camids != market.camids[row])
        )
        gallery.extend(matches[:: max(1, len(matches) // 4)][:4].tolist())
    others = np.flatnonzero(~market.is_query & ~np.isin(market.pids, query_pids))
    gallery.extend(others[:: len(others) // 150][:150].tolist())
    return query_rows, np.asarray(gallery, dtype=np.intp)


def test_market_retrieval_rank1_is_far_above_chance(osnet: OnnxReidEmbedder, market: ReidManifest) -> None:
    query_rows, gallery_rows = retrieval_subset(market)
    assert len(query_rows) == 50 and 300 <= len(gallery_rows) <= 400
    query = osnet.embed_images(read_images(market.files[query_rows]))
    gallery = osnet.embed_images(read_images(market.files[gallery_rows]))
    result = reid_metrics_from_features(
        query,
        gallery,
        market.pids[query_rows],
        market.pids[gallery_rows],
        market.camids[query_rows],
        market.camids[gallery_rows],
    )
    # Measured: rank-1 0.88, mAP 0.70 (chance rank-1 about 4 / 346 = 0.01).
    assert result.rank1 >= 0.7
    assert result.mAP >= 0.5


# ------------------------------------------------------------------------------ validation
def test_a_missing_model_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "osnet.onnx"
    with pytest.raises(FileNotFoundError, match=r"nowhere/osnet\.onnx"):
        OnnxReidEmbedder(missing)


def test_a_corrupt_model_is_named(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ValueError, match=r"cannot load ONNX model .*corrupt\.onnx"):
        OnnxReidEmbedder(corrupt)


def test_an_input_that_is_not_three_channel_images_is_refused(tmp_path: Path) -> None:
    grey = pooling_model(tmp_path / "grey.onnx", ["batch", 1, 64, 32], ["batch", 1])
    with pytest.raises(
        ValueError, match=r"grey\.onnx.*\(batch, 3, height, width\), got \['batch', 1, 64, 32\]"
    ):
        OnnxReidEmbedder(grey)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["features"], axis=1)],
        "flat",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3 * 64 * 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3 * 64 * 32])],
    )
    with pytest.raises(ValueError, match=r"got \['batch', 6144\]"):
        OnnxReidEmbedder(save_model(tmp_path / "flat.onnx", graph))


def test_an_output_that_is_not_two_dimensional_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["maps"])],
        "maps",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 32])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["batch", 3, 64, 32])],
    )
    with pytest.raises(
        ValueError, match=r"output 'maps' must have shape \(batch, D\), got \['batch', 3, 64, 32\]"
    ):
        OnnxReidEmbedder(save_model(tmp_path / "maps.onnx", graph))


def test_a_tiny_model_with_static_size_and_symbolic_width(tmp_path: Path) -> None:
    model = pooling_model(tmp_path / "pool.onnx", ["batch", 3, 16, 8], ["batch", "dim"])
    embedder = OnnxReidEmbedder(model, batch_size=3)
    assert embedder.input_size == (16, 8)  # read from the model
    assert embedder.dim == 3  # found by running it once
    red = np.zeros((40, 20, 3), np.uint8)
    red[..., 2] = 255
    (vector,) = embedder.embed_images([red])
    # RGB order, ImageNet standardisation: red channel (2.249) first, then green and blue (-2.036, -1.804)
    expected = np.array([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
    bgr = OnnxReidEmbedder(model, rgb=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    np.testing.assert_allclose(bgr.embed_images([red])[0], [0.0, 0.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"does not match the model's fixed input \(16, 8\)"):
        OnnxReidEmbedder(model, input_size=(256, 128))
    with pytest.raises(ValueError, match="batch_size"):
        OnnxReidEmbedder(model, batch_size=0)
