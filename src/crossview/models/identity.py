"""What a model is, as far as its outputs are concerned: kind, name, output size, a digest of its
weights (or of its settings, for a weight-free model) and its preprocessing.

Two embedders are interchangeable only when their identities are equal. Two OSNet files of the same
size are not: they put images in different spaces. Nor is one file with another input size or
normalisation. So stores record the identity of the model that made their vectors (``key``) and
refuse vectors of another one, naming both, instead of silently mixing spaces.

>>> from crossview.embed.color import ColorHistogramEmbedder, ColorHistogramConfig
>>> default = identity_of(ColorHistogramEmbedder())
>>> default.key.startswith("color-histogram:colour@") and default.dim == 480
True
>>> wider = identity_of(ColorHistogramEmbedder(ColorHistogramConfig(crop_size=(96, 48))))
>>> wider.dim == default.dim, wider.key == default.key
(True, False)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Identified", "ModelIdentity", "ModelMismatch", "file_digest", "identity_of", "settings_digest"]


class ModelIdentity(BaseModel):
    """A model's identity; ``key`` is its one-line form, stored beside the model's outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    dim: int = Field(ge=1)
    digest: str = Field(min_length=8, description="sha256 of the weights, or of the settings")
    preprocessing: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """``kind:name@digest/dim``; the digest covers the preprocessing too."""
        both = hashlib.sha256(
            (self.digest + json.dumps(self.preprocessing, sort_keys=True, default=str)).encode()
        )
        return f"{self.kind}:{self.name}@{both.hexdigest()[:16]}/{self.dim}d"


class ModelMismatch(ValueError):
    """Stored vectors were made by another model than the one now in use."""

    def __init__(self, where: str, stored: str, current: str) -> None:
        self.stored = stored
        self.current = current
        super().__init__(
            f"{where} holds embeddings of model {stored}, and this run uses {current}: their vectors are "
            "not comparable. Use the same model (file, input size and normalisation), or a new folder "
            "to index afresh"
        )


@runtime_checkable
class Identified(Protocol):
    """A model that can say what it is."""

    def identity(self) -> ModelIdentity: ...


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def settings_digest(settings: BaseModel | dict[str, Any]) -> str:
    """sha256 of settings as canonical JSON (a weight-free model's identity)."""
    data = settings.model_dump(mode="json") if isinstance(settings, BaseModel) else settings
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def identity_of(model: object) -> ModelIdentity:
    """The model's own identity when it has one; else its type name and size (a weak identity:
    two instances of one class with different weights would look equal)."""
    if isinstance(model, Identified):
        return model.identity()
    dim = int(getattr(model, "dim", 1) or 1)
    name = type(model).__name__
    return ModelIdentity(kind="python", name=name, dim=dim, digest=hashlib.sha256(name.encode()).hexdigest())
