"""FAISS indexes: exact and HNSW, written in the artifact layout and read back."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from mugle_core.artifacts import ids_file, index_file, knn_file, knn_sims_file, query_file
from training.indexes import build_index, neighbour_lists, recall_at_k, write_model
from training.music2vec import l2_normalise

faiss.omp_set_num_threads(1)


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Vectors around 50 centres, so neighbourhoods are not all ties."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    return l2_normalise(centres[rng.integers(0, 50, n)] + 0.5 * rng.normal(size=(n, dim)))


def test_flat_below_threshold_returns_own_vector_first():
    vecs = clustered(500)
    index, info = build_index(vecs)
    assert info.index_type == "flat" and info.recall_at_10 == 1.0
    _, found = index.search(vecs, 1)
    assert (found[:, 0] == np.arange(500)).all()


def test_hnsw_above_threshold_meets_recall_and_own_vector_first():
    vecs = clustered(4000)
    index, info = build_index(vecs, flat_threshold=1000, sample=300, m=16)
    assert info.index_type == "hnsw"
    assert isinstance(index, faiss.IndexHNSWSQ) and info.params["codes"] == "SQ8"
    assert info.recall_at_10 >= 0.95
    # recall measured independently of the builder, on queries it did not sample
    exact = faiss.IndexFlatIP(32)
    exact.add(vecs)
    probe = vecs[3500:]
    _, truth = exact.search(probe, 10)
    _, approx = index.search(probe, 10)
    assert recall_at_k(approx, truth) >= 0.95
    _, first = index.search(vecs[:500], 1)
    assert (first[:, 0] == np.arange(500)).mean() >= 0.99


def test_unreachable_recall_falls_back_to_exact():
    vecs = clustered(1500)
    index, info = build_index(vecs, flat_threshold=1000, min_recall=1.01, sample=50, m=64)
    assert info.index_type == "flat"
    assert isinstance(index, faiss.IndexFlatIP)
    assert "hnsw_recall_at_10" in info.params


def test_recall_at_k_hand_computed():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[1, 2, 9, 9], [8, 7, 6, 5]])
    assert recall_at_k(approx, exact, k=4) == pytest.approx((0.5 + 1.0) / 2)


def test_write_model_sorts_ids_and_aligns_rows(tmp_path):
    rng = np.random.default_rng(3)
    ids = np.array([40, 10, 30, 20])
    query = rng.normal(size=(4, 8)).astype(np.float32)
    key = rng.normal(size=(4, 8)).astype(np.float32)
    entry = write_model(tmp_path, "music2vec", ids, query, key)
    assert entry.count == 4 and entry.dim == 8 and entry.index_type == "flat"
    assert sorted(entry.files) == sorted(
        f("music2vec") for f in (index_file, ids_file, query_file, knn_file, knn_sims_file)
    )
    assert entry.params["knn"] == 4  # capped at the 4 indexed songs
    saved_ids = np.load(tmp_path / ids_file("music2vec"), allow_pickle=False)
    saved_query = np.load(tmp_path / query_file("music2vec"), allow_pickle=False)
    assert saved_ids.tolist() == [10, 20, 30, 40] and saved_ids.dtype == np.int64
    order = np.argsort(ids)
    np.testing.assert_allclose(saved_query, l2_normalise(query[order]), rtol=1e-6)
    index = faiss.read_index(str(tmp_path / index_file("music2vec")))
    assert index.ntotal == 4
    # the index holds the key vectors: IN-OUT scores equal query . key
    scores, rows = index.search(saved_query, 4)
    expected = saved_query @ l2_normalise(key[order]).T
    for r in range(4):
        np.testing.assert_allclose(scores[r], expected[r, rows[r]], rtol=1e-5)
        assert scores[r, 0] == pytest.approx(expected[r].max(), rel=1e-5)


def test_write_model_one_vector_per_song_returns_itself_first(tmp_path):
    vecs = clustered(300, dim=16)
    ids = np.arange(1000, 1300)[::-1]
    write_model(tmp_path, "tcae", ids, vecs)
    index = faiss.read_index(str(tmp_path / index_file("tcae")))
    saved_ids = np.load(tmp_path / ids_file("tcae"))
    query = np.load(tmp_path / query_file("tcae"))
    _, rows = index.search(query, 1)
    assert (saved_ids[rows[:, 0]] == saved_ids).all()


def test_hnsw_efsearch_survives_write_and_read(tmp_path):
    vecs = clustered(3000)
    entry = write_model(tmp_path, "cel", np.arange(3000), vecs, flat_threshold=1000)
    assert entry.index_type == "hnsw" and entry.recall_at_10 >= 0.95
    index = faiss.read_index(str(tmp_path / index_file("cel")))
    assert faiss.downcast_index(index).hnsw.efSearch == entry.params["efSearch"]


@pytest.mark.parametrize(
    ("ids", "query", "key", "match"),
    [
        (np.arange(3), np.ones((2, 4)), None, "3 ids but 2 query"),
        (np.array([1, 1, 2]), np.ones((3, 4)), None, "song id 1 appears more than once"),
        (np.arange(2), np.array([[1.0, np.nan], [1.0, 0.0]]), None, "NaN"),
        (np.arange(2), np.ones((2, 4)), np.ones((2, 3)), "expected 4 columns"),
        (np.arange(2), np.ones(4), None, "2-D"),
    ],
)
def test_write_model_rejects_bad_input_by_name(tmp_path, ids, query, key, match):
    with pytest.raises(ValueError, match=match):
        write_model(tmp_path, "cel", ids, query, key)


def test_neighbour_lists_are_what_the_index_answers_per_query(tmp_path):
    vecs = clustered(400, dim=16)
    ids = np.arange(5000, 5400)
    entry = write_model(tmp_path, "tcae", ids, vecs, neighbours=20)
    assert entry.params["knn"] == 20 and "knn_s" in entry.timings
    index = faiss.read_index(str(tmp_path / index_file("tcae")))
    query = np.load(tmp_path / query_file("tcae"))
    rows = np.load(tmp_path / knn_file("tcae"))
    sims = np.load(tmp_path / knn_sims_file("tcae"))
    assert rows.dtype == np.int32 and sims.dtype == np.float32 and rows.shape == sims.shape == (400, 20)
    for r in (0, 17, 399):
        found_sims, found = index.search(query[r : r + 1], 20)
        assert rows[r].tolist() == found[0].tolist()
        np.testing.assert_allclose(sims[r], found_sims[0], rtol=1e-5, atol=1e-6)
    assert (rows[:, 0] == np.arange(400)).all()  # each song is its own nearest neighbour


def test_neighbour_lists_of_an_hnsw_graph_search_at_least_k_deep():
    vecs = clustered(3000)
    index, info = build_index(vecs, flat_threshold=1000)
    assert info.index_type == "hnsw" and info.params["efSearch"] < 64
    rows, _ = neighbour_lists(index, vecs[:50], k=64)
    _, exact = faiss.knn(vecs[:50], vecs, 64, metric=faiss.METRIC_INNER_PRODUCT)
    # Searched at efSearch >= 64, the lists are nearly exact all the way down, not only at the top 10.
    assert recall_at_k(rows, exact, k=64) >= 0.95


def test_neighbour_lists_pad_short_answers_and_skip_zero_queries():
    vecs = clustered(5, dim=8)
    index = faiss.IndexFlatIP(8)
    index.add(vecs)
    queries = np.vstack([vecs[:2], np.zeros((1, 8), dtype=np.float32)])
    rows, sims = neighbour_lists(index, queries, k=10)
    assert rows.shape == (3, 5)  # no wider than the index
    assert (rows[2] == -1).all() and (sims[2] == 0).all()
    assert sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]


def test_write_model_without_neighbour_lists(tmp_path):
    entry = write_model(tmp_path, "cel", np.arange(30), clustered(30, dim=8), neighbours=0)
    assert knn_file("cel") not in entry.files and "knn" not in entry.params
    assert not (tmp_path / knn_file("cel")).exists()
