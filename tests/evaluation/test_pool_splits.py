"""benchmarks/pool_splits.py: a catalog's verdicts pooled over several evaluations of it, from per-query arrays."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import pool_splits as P

METHODS = ("score_total", "cooccurrence", "item_knn", "ease", "music2vec", "tcae", "cel")


def _split(rng: np.random.Generator, n: int, lead: float) -> dict[str, np.ndarray]:
    """Per-query arrays of one split; score_total is counting's list plus ``lead`` hits per query on average."""
    out: dict[str, np.ndarray] = {"seed": np.arange(n), "playlist_id": np.arange(n) + 1000}
    cooc = (rng.random(n) < 0.6).astype(float)
    own = cooc.copy()
    flips = int(round(abs(lead) * n))
    if lead > 0:
        own[np.flatnonzero(cooc == 0)[:flips]] = 1.0
    else:
        own[np.flatnonzero(cooc == 1)[:flips]] = 0.0
    for metric in P.METRICS:
        scale = 1.0 if metric == "hit_rate@10" else 0.4
        out[f"{metric}/cooccurrence"] = cooc * scale
        out[f"{metric}/score_total"] = own * scale
        for weaker, share in (("item_knn", 0.5), ("ease", 0.9), ("music2vec", 0.8), ("tcae", 0.2), ("cel", 0.4)):
            out[f"{metric}/{weaker}"] = cooc * scale * share
    pops = rng.integers(1, 100, size=(n, 10))
    pops[0, 7:] = -1  # a short list
    out["novelty/0/popularity"] = pops
    out["novelty/0.5/popularity"] = np.where(pops >= 0, pops // 3, -1)
    out["novelty/0/hit"] = own.copy()
    lost = np.flatnonzero(own == 1)[:2]
    half = own.copy()
    half[lost] = 0.0
    out["novelty/0.5/hit"] = half
    return out


def test_pooled_differences_are_the_mean_of_the_splits_and_count_the_splits_that_reach() -> None:
    rng = np.random.default_rng(0)
    splits = [_split(rng, 50, -0.04), _split(rng, 40, 0.05), _split(rng, 60, 0.0)]
    got = P.pool_catalog(splits, seed=1)
    assert got["splits"] == 3 and got["queries"] == [50, 40, 60]
    for metric in P.METRICS:
        block = got[metric]
        assert block["best_baseline"] == "cooccurrence"
        by_split = [(s[f"{metric}/score_total"] - s[f"{metric}/cooccurrence"]).mean() for s in splits]
        ci = block["vs_best_baseline"]
        assert ci["mean"] == pytest.approx(np.mean(by_split), abs=1e-5)
        assert ci["low"] < ci["mean"] < ci["high"]
        # Split 0 falls short, 1 gains and 2 ties: two of three reach on their own.
        assert block["splits_reaching"] == 2
        assert block["reaches_baseline"] == (np.mean(by_split) >= 0)
        assert block["vs_tcae"]["mean"] > 0 and block["reaches_singles"]


def test_one_split_pooled_is_that_split() -> None:
    split = _split(np.random.default_rng(3), 80, -0.05)
    got = P.pool_catalog([split], seed=0)
    diff = split["ndcg@10/score_total"] - split["ndcg@10/cooccurrence"]
    assert got["ndcg@10"]["vs_best_baseline"]["mean"] == pytest.approx(diff.mean(), abs=1e-5)
    assert not got["ndcg@10"]["reaches_baseline"] and got["ndcg@10"]["splits_reaching"] == 0


def test_novelty_pools_every_listed_song_and_every_hit() -> None:
    rng = np.random.default_rng(5)
    splits = [_split(rng, 30, 0.0), _split(rng, 20, 0.0)]
    got = P.pool_catalog(splits, seed=0)["novelty"]
    at0 = np.concatenate([s["novelty/0/popularity"].ravel() for s in splits])
    at5 = np.concatenate([s["novelty/0.5/popularity"].ravel() for s in splits])
    ratio = np.median(at5[at5 >= 0]) / np.median(at0[at0 >= 0])
    hits0 = sum(s["novelty/0/hit"].sum() for s in splits)
    cost = 1 - sum(s["novelty/0.5/hit"].sum() for s in splits) / hits0
    assert got["ratio"]["mean"] == pytest.approx(ratio, abs=1e-5)
    assert got["cost"]["mean"] == pytest.approx(cost, abs=1e-5)
    assert got["cost"]["low"] <= got["cost"]["mean"] <= got["cost"]["high"]
    assert got["met"] == bool(ratio <= 0.5 and cost <= 0.1)
    # Four hits lost of about thirty: over the 10 % limit, so not met even though the median fell to a third.
    assert ratio <= 0.5 and cost > 0.1 and not got["met"]
