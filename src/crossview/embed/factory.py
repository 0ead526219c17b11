"""Embedders by name: one visible table from a spec's prefix to a constructor.

``"color"`` is the weight-free default; ``"osnet:/path/model.onnx"`` (or ``"onnx:..."``) loads an
ONNX re-identification model. Options fill the embedder's settings.

>>> sorted(EMBEDDERS)
['color', 'onnx', 'osnet']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from crossview.embed.base import Embedder


def _color(argument: str, **options: Any) -> Embedder:
    from crossview.embed.color import ColorHistogramConfig, ColorHistogramEmbedder

    if argument:
        raise ValueError(f"the color embedder takes no model, got 'color:{argument}'")
    return ColorHistogramEmbedder(ColorHistogramConfig(**options))


def _onnx(argument: str, **options: Any) -> Embedder:
    from crossview.embed.onnx import OnnxReidEmbedder

    if not argument:
        raise ValueError("an ONNX embedder needs a model path: 'osnet:/path/to/model.onnx'")
    return OnnxReidEmbedder(argument, **options)


EMBEDDERS: Final[Mapping[str, Callable[..., Embedder]]] = {
    "color": _color,
    "osnet": _onnx,
    "onnx": _onnx,
}


def make_embedder(spec: str, **options: Any) -> Embedder:
    """The embedder a spec names (``color``, ``osnet:MODEL.onnx``)."""
    name, _, argument = spec.partition(":")
    maker = EMBEDDERS.get(name.strip().lower())
    if maker is None:
        raise ValueError(f"unknown embedder {name!r} in {spec!r}; known: {', '.join(sorted(EMBEDDERS))}")
    return maker(argument, **options)
