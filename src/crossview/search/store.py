"""A gallery on disk: the index plus what built it, so searches embed queries the same way.

``GalleryStore`` keeps ``crossview.json`` (backend, dimension, embedder spec) beside the index in
one folder: FAISS files for ``backend="faiss"``, a Milvus Lite ``milvus.db`` for ``"milvus"``,
or a Milvus server URI recorded in the settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from crossview.models.identity import ModelMismatch
from crossview.search.index import VectorIndex

Backend = Literal["faiss", "milvus"]
SETTINGS = "crossview.json"


@dataclass(frozen=True, slots=True)
class GallerySettings:
    backend: Backend
    dim: int
    embedder: str
    factory: str = "HNSW32"
    uri: str = ""  # a Milvus server (http://host:port); empty means Milvus Lite in the folder
    model: str = ""  # the embedder's identity key (file digest and preprocessing); "" when unknown


def create_gallery(folder: str | Path, settings: GallerySettings) -> VectorIndex:
    """Create (or reopen, if its settings agree) the gallery in ``folder``."""
    root = Path(folder)
    existing = root / SETTINGS
    if existing.exists():
        stored = read_settings(root)
        if stored.model and settings.model and stored.model != settings.model:
            raise ModelMismatch(str(root), stored.model, settings.model)
        if (stored.backend, stored.dim, stored.embedder) != (
            settings.backend,
            settings.dim,
            settings.embedder,
        ):
            raise ValueError(
                f"{root} already holds a {stored.backend} gallery of dim {stored.dim} embedded with "
                f"{stored.embedder!r}; it cannot take {settings.backend}/{settings.dim}/{settings.embedder!r}"
            )
    root.mkdir(parents=True, exist_ok=True)
    existing.write_text(json.dumps(asdict(settings), indent=2) + "\n")
    return open_gallery(root)


def read_settings(folder: str | Path) -> GallerySettings:
    path = Path(folder) / SETTINGS
    try:
        data = json.loads(path.read_text())
        return GallerySettings(**data)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{folder} is not a crossview gallery (no {SETTINGS}); build one first"
        ) from None
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{path}: unreadable gallery settings: {error}") from None


def open_gallery(folder: str | Path) -> VectorIndex:
    """Open the index of a gallery folder with its recorded settings."""
    root = Path(folder)
    settings = read_settings(root)
    if settings.backend == "milvus":
        from crossview.search.milvus import MilvusIndex

        return MilvusIndex(settings.uri or str(root / "milvus.db"), settings.dim)
    from crossview.search.faiss_index import FaissIndex

    return FaissIndex(root / "faiss", settings.dim, factory=settings.factory)
