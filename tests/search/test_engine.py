"""The search engine over a real FAISS index: by embedding, by track, with re-ranking and context."""

from __future__ import annotations

import numpy as np
import pytest

from crossview.search.engine import SearchEngine
from crossview.search.faiss_index import FaissIndex
from crossview.search.index import Entry, Filter


@pytest.fixture
def engine() -> SearchEngine:
    """Ten people, each seen as a track in three cameras (gate -> lane -> exit, 30 s apart)."""
    rng = np.random.default_rng(0)
    people = rng.normal(size=(10, 32))
    vectors, entries, ids = [], [], []
    for person in range(10):
        for hop, camera in enumerate(("gate", "lane", "exit")):
            vectors.append(people[person] + rng.normal(0, 0.35, 32))
            t = 100.0 * person + 30.0 * hop
            entries.append(Entry(camera_id=camera, track_id=person, global_id=person, t_start=t, t_end=t + 5))
            ids.append(person * 10 + hop)
    index = FaissIndex(None, 32, factory="Flat")
    index.add(ids, np.array(vectors), entries)
    topology = {("gate", "lane"): (20.0, 60.0), ("lane", "exit"): (20.0, 60.0)}
    return SearchEngine(index, topology=topology)


def test_search_by_track_finds_the_same_person_elsewhere(engine: SearchEngine) -> None:
    hits = engine.search(track_id=30, k=2)  # person 3 at the gate
    assert [hit.id for hit in hits] == [31, 32] or [hit.id for hit in hits] == [32, 31]
    assert all(hit.entry.global_id == 3 for hit in hits)
    assert [hit.rank for hit in hits] == [1, 2]
    for hit in hits:
        assert hit.distance == pytest.approx(hit.appearance + hit.rerank + hit.context, abs=1e-6)


def test_context_penalises_impossible_transits(engine: SearchEngine) -> None:
    query = engine.index.get([40])[0][0]  # person 4's gate view, searched as if seen at the exit at t=400
    hits = engine.search(embedding=query, k=5, query_camera="exit", query_time=400.0)
    by_id = {hit.id: hit for hit in hits}
    assert by_id[40].verdict == "too_fast" and by_id[40].context > 0  # gate->exit in 2 s: impossible
    plain = {hit.id: hit for hit in SearchEngine(engine.index).search(embedding=query, k=5)}
    assert by_id[40].distance > plain[40].distance


def test_rerank_and_filters(engine: SearchEngine) -> None:
    for method in ("kreciprocal", "aqe"):
        hits = engine.search(track_id=50, k=2, rerank=method, candidates=20)  # type: ignore[arg-type]
        assert {hit.entry.global_id for hit in hits} == {5}
        assert any(hit.rerank != 0 for hit in hits)
    only_exit = engine.search(track_id=50, k=3, filter=Filter(cameras=frozenset({"exit"})))
    assert len(only_exit) == 3 and {hit.entry.camera_id for hit in only_exit} == {"exit"}
    assert only_exit[0].id == 52


def test_bad_queries_are_clear_errors(engine: SearchEngine) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        engine.search(k=3)
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        engine.search(embedding=np.ones(16), k=3)
    with pytest.raises(KeyError, match="999"):
        engine.search(track_id=999, k=3)
    with pytest.raises(ValueError, match="embedder"):
        engine.search(image=np.zeros((8, 8, 3), np.uint8), k=3)
    assert SearchEngine(FaissIndex(None, 32, factory="Flat")).search(embedding=np.ones(32), k=3) == []
