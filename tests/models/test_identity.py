"""Model identity: equal for the same model and preprocessing, different otherwise, and every store
of vectors refuses those of another model, naming both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossview.embed.color import ColorHistogramConfig, ColorHistogramEmbedder
from crossview.models.identity import ModelMismatch, identity_of
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry
from crossview.serve.service import Service, ServiceConfig

OSNET = Path(__file__).resolve().parents[3] / "shared" / "models" / "osnet_x0_25_msmt17.onnx"


def test_colour_identity_follows_the_settings_not_just_the_size() -> None:
    default = identity_of(ColorHistogramEmbedder())
    assert identity_of(ColorHistogramEmbedder()).key == default.key  # another instance, same model
    wider = identity_of(ColorHistogramEmbedder(ColorHistogramConfig(crop_size=(96, 48))))
    flatter = identity_of(ColorHistogramEmbedder(ColorHistogramConfig(power=1.0)))
    assert wider.dim == flatter.dim == default.dim == 480
    assert len({default.key, wider.key, flatter.key}) == 3


@pytest.mark.skipif(not OSNET.is_file(), reason="needs ../shared/models/osnet_x0_25_msmt17.onnx")
def test_onnx_identity_is_the_file_and_its_preprocessing(tmp_path: Path) -> None:
    from crossview.embed.onnx import OnnxReidEmbedder

    first = identity_of(OnnxReidEmbedder(OSNET))
    assert first.kind == "onnx-reid" and first.dim == 512 and first.name == "osnet_x0_25_msmt17"
    copy = tmp_path / "renamed.onnx"
    copy.write_bytes(OSNET.read_bytes())
    assert identity_of(OnnxReidEmbedder(copy)).digest == first.digest  # the bytes, not the name
    bgr = identity_of(OnnxReidEmbedder(OSNET, rgb=False))
    assert bgr.digest == first.digest and bgr.key != first.key  # same weights, other preprocessing


def test_an_index_refuses_vectors_of_another_model(tmp_path: Path) -> None:
    colour = identity_of(ColorHistogramEmbedder()).key
    other = identity_of(ColorHistogramEmbedder(ColorHistogramConfig(power=1.0))).key
    index = FaissIndex(tmp_path / "index", 480, factory="Flat", model=colour)
    index.add([1], np.ones((1, 480), np.float32), [Entry(camera_id="a")])
    index.close()
    FaissIndex(tmp_path / "index", 480, factory="Flat", model=colour).close()  # the same model: fine
    with pytest.raises(ModelMismatch) as refused:
        FaissIndex(tmp_path / "index", 480, factory="Flat", model=other)
    assert colour in str(refused.value) and other in str(refused.value)


def test_the_service_refuses_a_data_directory_of_another_embedder(tmp_path: Path) -> None:
    config = ServiceConfig(data_dir=tmp_path / "data")
    Service(config, ColorHistogramEmbedder()).stop()
    with pytest.raises(ModelMismatch, match="not comparable"):
        Service(config, ColorHistogramEmbedder(ColorHistogramConfig(crop_size=(96, 48))))
    Service(config, ColorHistogramEmbedder()).stop()  # the model it was made with still opens it
