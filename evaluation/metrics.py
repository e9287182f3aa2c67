"""Offline recommendation metrics: pure functions over id lists, small enough to check by hand.

Every per-query function takes one ranked list (``recommended``, best first) and returns a float, so
the evaluation can collect one value per seed and put a bootstrap interval around the mean with
:func:`bootstrap_ci`. Relevance is binary throughout, as in the Melon competition metric.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def hit_rate_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """1.0 when any of the first ``k`` recommendations is relevant, else 0.0.

    Parameters
    ----------
    recommended : ranked song ids, best first.
    relevant : the ids that count as hits.
    k : cut-off, positive.

    Returns
    -------
    float
        0.0 or 1.0 (the mean over queries is the hit rate).
    """
    _check_k(k)
    rel = set(relevant)
    return 1.0 if any(r in rel for r in recommended[:k]) else 0.0


def recall_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Share of the relevant ids found among the first ``k`` recommendations.

    Returns NaN when ``relevant`` is empty (recall is undefined; callers skip such queries).
    """
    _check_k(k)
    rel = set(relevant)
    if not rel:
        return math.nan
    found = len(rel.intersection(recommended[:k]))
    return found / len(rel)


def dcg_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Discounted cumulative gain with binary gains and the ``1/log2(i+2)`` discount (i from 0)."""
    _check_k(k)
    rel = set(relevant)
    # A repeated id must not be counted twice: a list with duplicates would otherwise beat the ideal.
    seen: set[int] = set()
    total = 0.0
    for i, r in enumerate(recommended[:k]):
        if r in rel and r not in seen:
            total += 1.0 / math.log2(i + 2)
        seen.add(r)
    return total


def ndcg_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """DCG normalised by the ideal DCG of ``min(k, |relevant|)`` hits at the top; NaN if none relevant."""
    rel = set(relevant)
    if not rel:
        return math.nan
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(rel))))
    return dcg_at_k(recommended, rel, k) / ideal


def reciprocal_rank(recommended: Sequence[int], relevant: Collection[int], k: int | None = None) -> float:
    """``1 / rank`` of the first relevant id (1-based) within the first ``k``, 0.0 when none is found.

    The mean over queries is the MRR.
    """
    if k is not None:
        _check_k(k)
    rel = set(relevant)
    for i, r in enumerate(recommended if k is None else recommended[:k]):
        if r in rel:
            return 1.0 / (i + 1)
    return 0.0


def mean_reciprocal_rank(ranked_lists: Iterable[Sequence[int]], relevant_sets: Iterable[Collection[int]]) -> float:
    """MRR over paired (ranked list, relevant set) queries; NaN for no queries."""
    values = [reciprocal_rank(r, s) for r, s in zip(ranked_lists, relevant_sets, strict=True)]
    return float(np.mean(values)) if values else math.nan


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval of the mean.

    Parameters
    ----------
    values : one value per query; NaNs (undefined queries) are dropped first.
    n_resamples : bootstrap resamples.
    confidence : interval mass, e.g. 0.95.
    seed : seeds the resampling, so a report is reproducible.

    Returns
    -------
    (mean, low, high)
        All NaN when there is no finite value.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples!r}")
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_resamples, arr.size))
    means = arr[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(arr.mean()), float(low), float(high))


def genre_precision_at_k(
    seed_genres: Collection[str], recommended_genres: Sequence[Collection[str]], k: int
) -> float:
    """Share of the first ``k`` recommendations that share at least one genre with the seed.

    The denominator is the number of recommendations actually given (at most ``k``). NaN when the
    seed has no genre or nothing was recommended: such queries say nothing about genre agreement.
    """
    _check_k(k)
    seed = set(seed_genres)
    recs = list(recommended_genres[:k])
    if not seed or not recs:
        return math.nan
    return sum(1 for g in recs if seed.intersection(g)) / len(recs)


def catalog_coverage(recommended_lists: Iterable[Sequence[int]], catalog_size: int, k: int) -> float:
    """Share of the catalog that appears in at least one top-``k`` list."""
    _check_k(k)
    if catalog_size <= 0:
        raise ValueError(f"catalog_size must be positive, got {catalog_size!r}")
    seen: set[int] = set()
    for recs in recommended_lists:
        seen.update(recs[:k])
    return len(seen) / catalog_size


def novelty(popularities: Sequence[float] | np.ndarray, n_playlists: int) -> float:
    """Mean self-information ``-log2(share)`` of the recommended songs' popularity.

    ``share`` is the fraction of training playlists that contain the song, smoothed with add-one
    (``(pop + 1) / (n_playlists + 1)``) so that a cold-start song (popularity 0) has a finite, maximal
    value instead of infinity. Higher means less-known songs. NaN for an empty list.
    """
    if n_playlists < 0:
        raise ValueError(f"n_playlists must be >= 0, got {n_playlists!r}")
    pops = np.asarray(popularities, dtype=np.float64)
    if pops.size == 0:
        return math.nan
    if np.any(pops < 0):
        raise ValueError("popularities must be >= 0")
    share = (pops + 1.0) / (n_playlists + 1.0)
    return float(np.mean(-np.log2(share)))


def share_below_median(popularities: Sequence[float] | np.ndarray, catalog_median: float) -> float:
    """Share of recommended songs whose popularity is strictly below the catalog's median; NaN if empty."""
    pops = np.asarray(popularities, dtype=np.float64)
    if pops.size == 0:
        return math.nan
    return float(np.mean(pops < catalog_median))


def jaccard_distance(a: Collection[str], b: Collection[str]) -> float:
    """``1 - |a & b| / |a | b|``; two empty sets are identical (distance 0)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    if not union:
        return 0.0
    return 1.0 - len(sa & sb) / len(union)


def intra_list_diversity(genre_sets: Sequence[Collection[str]]) -> float:
    """Mean pairwise Jaccard distance between the genre sets of one list; NaN below two items.

    Measured in genre space on purpose: diversity in the embedding that produced the ranking would
    reward a model for its own notion of distance.
    """
    n = len(genre_sets)
    if n < 2:
        return math.nan
    sets = [set(g) for g in genre_sets]
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            total += jaccard_distance(sets[i], sets[j])
    return total / (n * (n - 1) / 2)


def intra_list_similarity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine similarity of one list's vectors (rows); rows of norm 0 are skipped; NaN below two.

    Higher means a more uniform list. Which embedding the vectors come from matters: measured in the space
    a re-rank optimises, it shows that the re-rank works; in another space, whether the variety is real.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1)
    v = v[norms > 0] / norms[norms > 0, None]
    n = len(v)
    if n < 2:
        return math.nan
    sims = v @ v.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def median_popularity(popularities: Sequence[float] | np.ndarray) -> float:
    """Median popularity of a pool of recommended songs; NaN for an empty pool."""
    pops = np.asarray(popularities, dtype=np.float64)
    return float(np.median(pops)) if pops.size else math.nan


def mean_finite(values: Iterable[float]) -> float:
    """Mean of the finite values, NaN when there are none (undefined queries are skipped)."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def popularity_lookup(song_ids: np.ndarray, popularity: np.ndarray) -> Mapping[int, int]:
    """A dict song_id -> popularity, for scoring lists of ids."""
    return {int(s): int(p) for s, p in zip(song_ids.tolist(), popularity.tolist(), strict=True)}
