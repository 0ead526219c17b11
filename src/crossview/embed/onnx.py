"""Re-identification embeddings from an ONNX model (OSNet and other torchreid-style networks).

The model takes ``B x 3 x H x W`` float images (RGB by default, scaled to ``[0, 1]`` and
standardised with the ImageNet mean and standard deviation, as torchreid trains them) and returns
``B x D`` features. Crops of all frames are batched together in chunks of ``batch_size``; a model
exported with a fixed batch runs chunks of exactly that size (the last one padded). Outputs are
L2-normalised, so cosine similarity is a dot product.

With OSNet x0.25 (MSMT17 weights) on the shared Market-1501 subset this gives rank-1 65.69%,
mAP 43.02% (cosine), the figures of the reference pipeline, at about 400-600 crops/s on 2 CPU
cores with the default batch of 32 (``benchmarks/bench_embedders.py``).

Weights are not downloaded: pass the path of an exported model (for instance torchreid's
``osnet_x0_25`` trained on MSMT17, exported with ``torch.onnx.export`` and a dynamic batch axis).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from crossview.core.detections import Detections
from crossview.core.frame import Frame
from crossview.embed.crops import MIN_SIDE, embed_detections, embed_in_chunks, l2_normalised, resize_images
from crossview.models.identity import ModelIdentity, file_digest

IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE: Final = (256, 128)

_INPUT_TYPES: Final[dict[str, type[np.floating[Any]]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


class OnnxReidEmbedder:
    """Appearance vectors from a re-identification network in ONNX format.

    - ``model_path``: the ``.onnx`` file; ``FileNotFoundError`` if missing, ``ValueError`` naming
      it if it cannot be loaded or its input is not ``B x 3 x H x W`` float or its output not ``B x D``.
    - ``input_size``: ``(height, width)`` crops are resized to; by default read from the model
      when its input has a static size, else ``(256, 128)``. Must match a static model size.
    - ``mean`` / ``std``: per-channel statistics in the model's channel order, on ``[0, 1]`` pixels.
    - ``rgb``: feed channels as RGB (torchreid, most PyTorch models); ``False`` keeps BGR.
    - ``batch_size``: crops per inference call (ignored for a model with a fixed batch).
    - ``threads``: onnxruntime intra-op threads (``None``: onnxruntime's default, all cores).
    - ``providers``: onnxruntime execution providers in order of preference (default CPU).
    - ``min_box_side``: boxes thinner than this (pixels) are widened around their centre.

    >>> embedder = OnnxReidEmbedder("../shared/models/osnet_x0_25_msmt17.onnx")  # doctest: +SKIP
    >>> embedder.dim, embedder.input_size  # doctest: +SKIP
    (512, (256, 128))
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        input_size: tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        rgb: bool = True,
        batch_size: int = 32,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        min_box_side: int = MIN_SIDE,
    ) -> None:
        import onnxruntime  # lazily: importing crossview.embed must stay light

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX re-identification model not found: {path}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1 (or None), got {threads}")
        if len(mean) != 3 or len(std) != 3 or any(value <= 0 for value in std):
            raise ValueError(f"mean and std need 3 values each, std positive; got {mean} and {std}")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own, unexported exception types
            raise ValueError(f"cannot load ONNX model {path}: {error}") from error

        self.model_path = path
        self._session = session
        self._input, self._output, self._input_type, static_batch, static_size, static_dim = _signature(
            session, path
        )
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
            raise ValueError(f"input_size must be (height, width) with positive sides, got {input_size}")
        if static_size is not None and input_size is not None and tuple(input_size) != static_size:
            raise ValueError(
                f"input_size {tuple(input_size)} does not match the model's fixed input "
                f"{static_size} ({path})"
            )
        if static_size is not None:
            self.input_size = static_size
        elif input_size is not None:
            self.input_size = (int(input_size[0]), int(input_size[1]))
        else:
            self.input_size = DEFAULT_INPUT_SIZE
        self.fixed_batch = static_batch
        self.batch_size = static_batch if static_batch is not None else batch_size
        self.min_box_side = min_box_side
        # pixel * scale - offset == (pixel / 255 - mean) / std, channel by channel
        self._channels = (2, 1, 0) if rgb else (0, 1, 2)  # crop channel feeding each model channel
        self._scale = (1.0 / (255.0 * np.asarray(std, np.float32))).astype(np.float32)
        self._offset = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)
        self._dim = static_dim if static_dim is not None else self._probe_dim()
        self.mean, self.std, self.rgb = tuple(map(float, mean)), tuple(map(float, std)), rgb
        self._identity: ModelIdentity | None = None

    @property
    def dim(self) -> int:
        return self._dim

    def identity(self) -> ModelIdentity:
        """What makes these vectors: the model file's digest and the preprocessing."""
        if self._identity is None:
            self._identity = ModelIdentity(
                kind="onnx-reid",
                name=self.model_path.stem,
                dim=self.dim,
                digest=file_digest(self.model_path),
                preprocessing={
                    "input_size": list(self.input_size),
                    "mean": list(self.mean),
                    "std": list(self.std),
                    "rgb": self.rgb,
                },
            )
        return self._identity

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime actually uses, in order."""
        return list(self._session.get_providers())

    def embed(self, frames: Sequence[Frame], detections: Sequence[Detections]) -> list[Detections]:
        """The same rows with ``embedding`` filled, ``(N, dim)`` unit vectors per frame."""
        return embed_detections(
            frames,
            detections,
            self.embed_crops,
            size=self.input_size,
            dim=self.dim,
            chunk_size=self.batch_size,
            min_side=self.min_box_side,
        )

    def embed_images(self, images: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """``(N, dim)`` unit vectors of whole BGR images (each already a crop of one object)."""
        stacks = (
            resize_images(images[start : start + self.batch_size], self.input_size)
            for start in range(0, len(images), self.batch_size)
        )
        return embed_in_chunks(stacks, self.embed_crops, self.dim, self.batch_size)

    def embed_crops(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """``(N, dim)`` unit vectors of ``(N, height, width, 3)`` BGR crops already of ``input_size``."""
        height, width = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (height, width, 3):
            raise ValueError(f"crops must have shape (N, {height}, {width}, 3), got {crops.shape}")
        count = crops.shape[0]
        if count == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self._run(crops[start : start + self.batch_size]) for start in range(0, count, self.batch_size)
        ]
        return l2_normalised(np.concatenate(parts), f"ONNX model {self.model_path.name}")

    # ------------------------------------------------------------------------------ internals
    def _run(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Raw features of at most ``batch_size`` crops (padded to a fixed model batch)."""
        count, height, width, _ = crops.shape
        # one pass per channel, straight into NCHW: several times faster than converting,
        # scaling and transposing the whole HWC stack
        planes = np.empty((count, 3, height, width), np.float32)
        for channel, source in enumerate(self._channels):
            np.multiply(crops[..., source], self._scale[channel], out=planes[:, channel], dtype=np.float32)
            planes[:, channel] -= self._offset[channel]
        tensor = planes if self._input_type is np.float32 else planes.astype(self._input_type)
        if self.fixed_batch is not None and count < self.fixed_batch:
            padding = np.zeros((self.fixed_batch - count, *tensor.shape[1:]), tensor.dtype)
            tensor = np.concatenate([tensor, padding])
        (features,) = self._session.run([self._output], {self._input: tensor})
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] != tensor.shape[0]:
            raise ValueError(
                f"ONNX model {self.model_path} returned shape {features.shape} for input {tensor.shape}; "
                "expected (batch, D)"
            )
        return np.asarray(features[:count], dtype=np.float32)

    def _probe_dim(self) -> int:
        """Feature length of a model whose output width is symbolic: run one blank crop."""
        blank = np.zeros((1, *self.input_size, 3), np.uint8)
        return int(self._run(blank).shape[1])


def _signature(
    session: Any, path: Path
) -> tuple[str, str, type[np.floating[Any]], int | None, tuple[int, int] | None, int | None]:
    """Input and output names, input dtype, and what the model fixes: batch, (H, W), D."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = [item.name for item in inputs]
        raise ValueError(f"ONNX model {path} must take one input (images), it takes {len(inputs)}: {names}")
    model_input = inputs[0]
    shape = list(model_input.shape)
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(
            f"ONNX model {path} input {model_input.name!r} must have shape "
            f"(batch, 3, height, width), got {shape}"
        )
    if model_input.type not in _INPUT_TYPES:
        raise ValueError(
            f"ONNX model {path} input {model_input.name!r} must be float or float16, got {model_input.type}"
        )
    model_output = outputs[0]
    output_shape = list(model_output.shape)
    if len(output_shape) != 2:
        raise ValueError(
            f"ONNX model {path} output {model_output.name!r} must have shape (batch, D), got {output_shape}"
        )
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    height, width = shape[2], shape[3]
    size = (height, width) if isinstance(height, int) and isinstance(width, int) else None
    if size is not None and min(size) < 1:
        size = None
    dim = output_shape[1] if isinstance(output_shape[1], int) and output_shape[1] > 0 else None
    return model_input.name, model_output.name, _INPUT_TYPES[model_input.type], batch, size, dim
