"""Search a track gallery by image, embedding or track: ANN candidates, re-ranking, context.

Each hit says why it ranks where it does: its appearance distance (``1 - cos`` to the query),
the re-ranking term (k-reciprocal or query expansion, relative to appearance) and the context term
(camera topology and time), which add up to the distance it is sorted by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossview.embed.base import Embedder
from crossview.search.index import Entry, Filter, VectorIndex, check_vectors
from crossview.search.rerank import (
    CameraTopology,
    alpha_query_expansion,
    context_rerank,
    k_reciprocal_distances,
)

RerankMethod = Literal["none", "kreciprocal", "aqe"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked result and the terms of its distance (``distance = appearance + rerank + context``)."""

    rank: int
    id: int
    entry: Entry
    distance: float
    appearance: float
    rerank: float
    context: float
    verdict: str  # the context's reading of the transition: plausible, too_fast, same_camera, ...


class SearchEngine:
    """Visual search over a ``VectorIndex`` of track entries.

    ``candidates`` nearest entries are fetched (filters applied inside the index), re-ranked among
    themselves, adjusted by context when the query's camera and time are known and a topology is
    given, and the best ``k`` returned.
    """

    def __init__(
        self, index: VectorIndex, embedder: Embedder | None = None, topology: CameraTopology | None = None
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.topology = topology

    def search(
        self,
        *,
        image: NDArray[np.uint8] | None = None,
        embedding: ArrayLike | None = None,
        track_id: int | None = None,
        k: int = 10,
        filter: Filter | None = None,
        rerank: RerankMethod = "none",
        candidates: int = 100,
        query_camera: str | None = None,
        query_time: float | None = None,
    ) -> list[Hit]:
        """Exactly one of ``image`` (a crop; needs an embedder), ``embedding`` or ``track_id``
        (an entry already in the index, excluded from its own results; its camera and time serve
        as context unless given)."""
        given = sum(value is not None for value in (image, embedding, track_id))
        if given != 1:
            raise ValueError("search needs exactly one of image, embedding or track_id")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        exclude: int | None = None
        if image is not None:
            if self.embedder is None:
                raise ValueError("searching by image needs an embedder")
            query = self.embedder.embed_images([image])[0]
        elif embedding is not None:
            query = check_vectors(embedding, self.index.dim, "query embedding")[0]
        else:
            assert track_id is not None
            vectors, entries = self.index.get([track_id])
            found = entries[0]
            if found is None:
                raise KeyError(f"track id {track_id} is not in the index")
            query, exclude = vectors[0], track_id
            query_camera = query_camera if query_camera is not None else found.camera_id
            query_time = query_time if query_time is not None else (found.t_start + found.t_end) / 2
        fetched = self.index.search(query[None, :], max(k, candidates) + (exclude is not None), filter)
        valid = fetched.ids[0] >= 0
        if exclude is not None:
            valid &= fetched.ids[0] != exclude
        ids = fetched.ids[0][valid]
        entries = [entry for entry, keep in zip(fetched.entries[0], valid, strict=True) if keep]
        appearance = fetched.distances[0][valid].astype(np.float32)
        if len(ids) == 0:
            return []
        reranked = self._rerank(query, ids, appearance, rerank, k)
        if self.topology is not None and query_camera is not None and query_time is not None:
            context = context_rerank(
                appearance,
                [e.camera_id for e in entries if e is not None],
                [(e.t_start + e.t_end) / 2 for e in entries if e is not None],
                query_camera,
                query_time,
                self.topology,
                reranked=reranked,
            )
            distances, context_terms, verdicts = context.distances, context.context, context.verdict.tolist()
        else:
            distances = reranked
            context_terms = np.zeros_like(appearance)
            verdicts = ["unknown"] * len(ids)
        order = np.argsort(distances, kind="stable")[:k]
        return [
            Hit(
                rank=rank + 1,
                id=int(ids[i]),
                entry=entries[i] or Entry(camera_id="?"),
                distance=float(distances[i]),
                appearance=float(appearance[i]),
                rerank=float(reranked[i] - appearance[i]),
                context=float(context_terms[i]),
                verdict=str(verdicts[i]),
            )
            for rank, i in enumerate(order.tolist())
        ]

    def _rerank(
        self,
        query: NDArray[np.float32],
        ids: NDArray[np.int64],
        appearance: NDArray[np.float32],
        method: RerankMethod,
        k: int,
    ) -> NDArray[np.float32]:
        if method == "none" or len(ids) < 2:
            return appearance
        vectors, _ = self.index.get(ids)
        if method == "aqe":
            expanded = alpha_query_expansion(query[None, :], vectors, k=min(5, len(ids)))
            result: NDArray[np.float32] = (1.0 - expanded @ vectors.T)[0].astype(np.float32)
            return result
        # k-reciprocal among the candidates: the top-K form, with the pool the index returned.
        k1 = min(20, len(ids) - 1)
        k2 = min(6, k1)
        result = k_reciprocal_distances(query[None, :], vectors, k1=k1, k2=max(k2, 1))[0]
        return result.astype(np.float32)
