"""Visual search over track galleries: vector index backends, filters and re-ranking."""

from crossview.search.index import Entry, Filter, SearchHits, VectorIndex, open_index

__all__ = ["Entry", "Filter", "SearchHits", "VectorIndex", "open_index"]
