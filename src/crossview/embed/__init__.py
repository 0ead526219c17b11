"""Appearance embedders: one ``Embedder`` protocol; ONNX re-identification and a weight-free default."""

from crossview.embed.base import Embedder

__all__ = ["Embedder"]
