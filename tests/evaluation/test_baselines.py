"""The practitioners' baselines of the evaluation (item co-occurrence, item-kNN, EASE) on hand-made matrices."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.baselines import EASE, ItemCooccurrence, ItemKNN
from evaluation.context import Query
from evaluation.evaluate import paired_comparison

# Songs 1..5; popularity 1:2, 2:3, 3:2, 4:2, 5:1.
PLAYLISTS = [[1, 2, 3], [1, 2], [2, 4], [3, 4, 5]]


def test_cooccurrence_counts_and_breaks_ties_by_popularity() -> None:
    rank = ItemCooccurrence(PLAYLISTS)
    assert rank(1, 10) == [2, 3]  # 2 shares two playlists with 1, 3 one
    assert rank(4, 10) == [2, 3, 5]  # one each: the more popular first
    assert rank(99, 10) == []  # no history, no list


def test_item_knn_is_cosine_of_playlist_columns() -> None:
    rank = ItemKNN(PLAYLISTS)
    # Seed 4 shares one playlist with each of 2 (pop 3), 3 (pop 2) and 5 (pop 1): cosine 1/sqrt(2*pop).
    assert rank(4, 10) == [5, 3, 2]
    x = np.zeros((4, 5))
    for r, p in enumerate(PLAYLISTS):
        x[r, [s - 1 for s in p]] = 1
    cos = (x.T @ x) / np.sqrt(np.outer(x.sum(0), x.sum(0)))
    np.fill_diagonal(cos, -1)
    for seed in range(1, 6):
        order = [int(j) + 1 for j in np.argsort(-cos[seed - 1], kind="stable") if cos[seed - 1, j] > 0]
        assert rank(seed, 10) == order


@pytest.mark.parametrize("lam", [0.5, 5.0])
def test_ease_solves_the_constrained_ridge_regression(lam: float) -> None:
    """Each column of EASE's B is the ridge regression of that song's column on the other songs'."""
    rng = np.random.default_rng(0)
    playlists = [sorted(set(rng.integers(0, 12, size=int(rng.integers(2, 6))).tolist())) for _ in range(40)]
    model = EASE(playlists, lam)
    x = model.x.toarray().astype(np.float64)
    n = x.shape[1]
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        b = np.linalg.solve(a.T @ a + lam * np.eye(n - 1), a.T @ x[:, j])
        assert np.allclose(model.b[others, j], b, atol=1e-8)
        assert model.b[j, j] == 0.0


def test_ease_ranks_by_its_row_and_tends_to_counting_at_large_lambda() -> None:
    lam = 1e6
    model = EASE(PLAYLISTS, lam)
    # At a large lambda B ~ (X^T X) / lambda off the diagonal: EASE becomes counting.
    g = (model.x.T @ model.x).toarray()
    np.fill_diagonal(g, 0)
    assert np.allclose(model.b * lam, g, atol=1e-3)
    assert model(1, 10) == [2, 3]  # its row, best first, the seed left out
    assert 99 not in model.ids and model(99, 10) == []


def test_ease_fits_bound() -> None:
    assert EASE.fits(PLAYLISTS, max_songs=5) == (True, 5)
    assert EASE.fits(PLAYLISTS, max_songs=4) == (False, 5)


def test_paired_comparison_is_a_difference_over_the_same_queries() -> None:
    queries = [Query(i, 100 + i, frozenset({i})) for i in range(40)]
    hit, miss = [[i] for i in range(40)], [[-1] for _ in range(40)]
    half = [[i] if i % 2 else [-1] for i in range(40)]
    top10 = {"score_total": hit, "cooccurrence": half, "item_knn": miss, "music2vec": hit}
    out = paired_comparison(queries, top10, {}, seed=0)
    hr = out["hit_rate@10"]
    assert hr["best_baseline"] == "cooccurrence"
    assert hr["vs_best_baseline"]["mean"] == pytest.approx(0.5)
    assert hr["vs_best_baseline"]["low"] > 0.2 and hr["vs_best_baseline"]["high"] < 0.8
    # Identical lists: the paired interval collapses to zero.
    assert hr["vs_music2vec"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
