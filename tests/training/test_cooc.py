"""Co-occurrence lists: the blockwise sparse computation against a brute-force count on tiny catalogs."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from mugle_core.artifacts import COOC, ids_file, knn_file, knn_sims_file
from training import cooc


def _random_playlists(seed: int, n_songs: int, n_playlists: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10_000, size=n_songs, replace=False))
    weights = 1.0 / np.arange(1, n_songs + 1)
    out = []
    for _ in range(n_playlists):
        size = int(rng.integers(1, 9))
        out.append(rng.choice(ids, size=size, replace=True, p=weights / weights.sum()).tolist())
    return out


def _brute_force(playlists: list[list[int]], k: int, alpha: float) -> dict[int, list[tuple[int, float]]]:
    """Per song id, its top k (id, score) by counting pairs in Python, ties: more popular, then lower id."""
    pop: dict[int, int] = {}
    pairs: dict[tuple[int, int], int] = {}
    for p in playlists:
        songs = sorted(set(p))
        for s in songs:
            pop[s] = pop.get(s, 0) + 1
        for a, b in combinations(songs, 2):
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
            pairs[(b, a)] = pairs.get((b, a), 0) + 1
    out: dict[int, list[tuple[int, float]]] = {}
    for s in pop:
        cands = [(j, c / pop[j] ** alpha) for (i, j), c in pairs.items() if i == s]
        cands.sort(key=lambda t: (-t[1], -pop[t[0]], t[0]))
        out[s] = cands[:k]
    return out


@pytest.mark.parametrize(("seed", "alpha", "k", "block"), [(0, 0.0, 5, 10**9), (1, 0.5, 4, 7), (2, 1.0, 64, 1)])
def test_lists_match_brute_force(seed: int, alpha: float, k: int, block: int) -> None:
    playlists = _random_playlists(seed, n_songs=40, n_playlists=60)
    ids = np.unique(np.concatenate([np.asarray(p) for p in playlists]))
    x = cooc.incidence(playlists, ids)
    # A tiny block forces many blocks (one song each at block=1): the result must not depend on it.
    cols, scores, stats = cooc.cooc_lists(x, k, alpha, block_nnz=block)
    truth = _brute_force(playlists, k, alpha)
    assert stats["blocks"] >= (len(ids) if block == 1 else 1)
    for row, sid in enumerate(ids.tolist()):
        got = [(int(ids[c]), float(s)) for c, s in zip(cols[row], scores[row], strict=True) if c >= 0]
        want = truth[sid]
        assert [g for g, _ in got] == [w for w, _ in want], sid
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-6)
        assert all(c == -1 for c in cols[row][len(want):])


def test_incidence_counts_a_repeat_once_and_ignores_unknown_songs() -> None:
    x = cooc.incidence([[5, 5, 7], [7, 99]], np.array([5, 7]))
    assert x.shape == (2, 2)
    assert x.toarray().tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert cooc.popularity(x).tolist() == [1, 2]


def test_write_cooc_files_and_record(tmp_path: Path) -> None:
    playlists = [[3, 1, 2], [1, 2], [2, 4]]
    record = cooc.write_cooc(tmp_path, playlists, k=3, alpha=0.0)
    ids = np.load(tmp_path / ids_file(COOC))
    rows = np.load(tmp_path / knn_file(COOC))
    sims = np.load(tmp_path / knn_sims_file(COOC))
    assert ids.tolist() == [1, 2, 3, 4]
    assert rows.dtype == np.int32 and sims.dtype == np.float32 and rows.shape == (4, 3)
    # Song 2 shares two playlists with 1 and one each with 3 and 4 (4 and 3 tie: more popular, then lower id).
    assert [int(ids[r]) for r in rows[1] if r >= 0] == [1, 3, 4]
    assert sims[1].tolist() == [2.0, 1.0, 1.0]
    assert record["count"] == 4 and record["files"] == [ids_file(COOC), knn_file(COOC), knn_sims_file(COOC)]
