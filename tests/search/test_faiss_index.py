"""FaissIndex specifics beyond the shared contract: query-time search parameters."""

from __future__ import annotations

import numpy as np
import pytest

from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry


def test_search_parameters_are_tunable_at_query_time() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4000, 64)).astype(np.float32)  # no structure: hard for HNSW
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[:200] + 0.3 * rng.standard_normal((200, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    with FaissIndex(None, 64, factory="HNSW8", exact_below=0, ef_search=1) as index:
        index.add(np.arange(4000), data, [Entry(camera_id="c")] * 4000)

        def recall() -> float:
            found = index.search(queries, 10).ids
            return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))

        low = recall()
        index.ef_search = 256
        assert index.ef_search == 256
        high = recall()
        assert high > low + 0.1 and high > 0.9
        with pytest.raises(ValueError, match="ef_search must be positive, got 0"):
            index.ef_search = 0
        with pytest.raises(ValueError, match="nprobe must be positive, got -1"):
            index.nprobe = -1
