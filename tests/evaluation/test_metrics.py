"""Metric functions against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import metrics as m


def test_hit_rate_counts_only_the_first_k() -> None:
    recs = [5, 6, 7, 8]
    assert m.hit_rate_at_k(recs, {7}, 3) == 1.0
    assert m.hit_rate_at_k(recs, {8}, 3) == 0.0
    assert m.hit_rate_at_k([], {1}, 10) == 0.0


def test_recall_is_share_of_relevant_found() -> None:
    # relevant {1, 2, 3, 4}; top-3 holds 1 and 3 -> 2/4
    assert m.recall_at_k([1, 9, 3, 2], {1, 2, 3, 4}, 3) == pytest.approx(0.5)
    assert math.isnan(m.recall_at_k([1], set(), 3))


def test_ndcg_hand_computed() -> None:
    # hits at ranks 2 and 3 (i = 1, 2): DCG = 1/log2(3) + 1/log2(4) = 0.63093 + 0.5
    # ideal with 2 relevant: 1 + 1/log2(3) = 1.63093
    recs = [10, 1, 2, 11]
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k(recs, {1, 2}, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.6934, abs=1e-4)
    # perfect order scores 1; ideal is capped by k when there are more relevant than k
    assert m.ndcg_at_k([1, 2], {1, 2, 3}, 2) == pytest.approx(1.0)
    assert m.ndcg_at_k([3, 4], {1, 2}, 2) == 0.0


def test_dcg_ignores_repeated_ids() -> None:
    assert m.dcg_at_k([1, 1, 1], {1}, 3) == pytest.approx(1.0)
    assert m.ndcg_at_k([1, 1], {1, 2}, 2) <= 1.0


def test_reciprocal_rank_and_mrr() -> None:
    assert m.reciprocal_rank([4, 5, 6], {6}) == pytest.approx(1 / 3)
    assert m.reciprocal_rank([4, 5, 6], {6}, k=2) == 0.0
    assert m.reciprocal_rank([4, 5, 6], {9}) == 0.0
    # (1 + 1/2 + 0) / 3
    mrr = m.mean_reciprocal_rank([[1, 2], [3, 1], [3, 4]], [{1}, {1}, {9}])
    assert mrr == pytest.approx(0.5)


def test_bad_k_is_named() -> None:
    with pytest.raises(ValueError, match="k must be"):
        m.hit_rate_at_k([1], {1}, 0)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = np.array([0.0] * 60 + [1.0] * 40)
    mean, low, high = m.bootstrap_ci(values, seed=3)
    assert mean == pytest.approx(0.4)
    assert low < 0.4 < high
    # binomial standard error sqrt(.4*.6/100) = 0.049 -> 95% half-width near 0.096
    assert 0.06 < (high - low) / 2 < 0.13
    assert m.bootstrap_ci(values, seed=3) == (mean, low, high)
    # NaNs are dropped, a constant gives a zero-width interval
    assert m.bootstrap_ci([1.0, math.nan, 1.0]) == (1.0, 1.0, 1.0)
    assert all(math.isnan(x) for x in m.bootstrap_ci([math.nan]))


def test_genre_precision() -> None:
    recs = [{"rock"}, {"pop", "ballad"}, {"jazz"}, set()]
    assert m.genre_precision_at_k({"rock", "ballad"}, recs, 4) == pytest.approx(0.5)
    assert m.genre_precision_at_k({"rock"}, recs, 1) == 1.0
    assert math.isnan(m.genre_precision_at_k(set(), recs, 4))


def test_catalog_coverage() -> None:
    lists = [[1, 2, 3], [3, 4, 5], [1, 6, 7]]
    # top-2 of each: {1, 2, 3, 4, 1, 6} -> 5 distinct of 10
    assert m.catalog_coverage(lists, 10, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="catalog_size"):
        m.catalog_coverage(lists, 0, 2)


def test_novelty_and_share_below_median() -> None:
    # 7 playlists: pop 7 -> share 1 -> 0 bits; pop 3 -> share 4/8 -> 1 bit; pop 0 -> 1/8 -> 3 bits
    assert m.novelty([7, 3, 0], 7) == pytest.approx((0 + 1 + 3) / 3)
    assert m.share_below_median([1, 5, 2, 9], 3) == pytest.approx(0.5)
    assert math.isnan(m.novelty([], 7))
    with pytest.raises(ValueError, match="popularities"):
        m.novelty([-1], 3)


def test_intra_list_diversity() -> None:
    # pairs: (a,ab)=1-1/2, (a,c)=1, (ab,c)=1 -> mean 2.5/3
    assert m.intra_list_diversity([{"a"}, {"a", "b"}, {"c"}]) == pytest.approx(2.5 / 3)
    assert m.intra_list_diversity([{"a"}, {"a"}]) == 0.0
    assert math.isnan(m.intra_list_diversity([{"a"}]))
    assert m.jaccard_distance(set(), set()) == 0.0


def test_median_and_mean_finite() -> None:
    assert m.median_popularity([1, 10, 3]) == 3.0
    assert m.mean_finite([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(m.mean_finite([]))


def test_intra_list_similarity_by_hand() -> None:
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    # pairs among the three non-zero rows: 1, 0, 0 -> mean 1/3; the zero row is skipped
    assert m.intra_list_similarity(v) == pytest.approx(1 / 3)
    assert math.isnan(m.intra_list_similarity(v[:1]))
    with pytest.raises(ValueError):
        m.intra_list_similarity(np.zeros(3))
