"""Fitting the ranking per catalog: the validation split, the time bound, and the service using the result."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gensim.models  # noqa: F401 - imported before any clock starts: its first import takes seconds
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import ranking
from app.engine import Engine
from app.main import create_app
from app.settings import Settings
from mugle_core.artifacts import COOC, MANIFEST, read_manifest
from tests.fixtures.synthetic import read_truth, write_synthetic_version
from training.cooc import write_cooc
from training.fitting import (
    FILL_WEIGHT,
    MIN_GAIN_Z,
    NOVELTY_MAX_COST,
    NOVELTY_MIN_SD,
    NOVELTY_TARGET_RATIO,
    REACH_TOL,
    FitError,
    FitOptions,
    Fitter,
    NoveltySetting,
    ValidationSplit,
    ValQuery,
    _grid_objectives,
    _NoveltySpread,
    _z_against_leaders,
    choose_novelty,
    clear_gain,
    figures,
    novelty_margin,
    selection_z,
    split_validation,
    vector_lists,
)
from training.music2vec import Music2VecOptions


def _clustered_playlists(seed: int, n_songs: int = 120, n_playlists: int = 400, n_clusters: int = 6) -> list[list[int]]:
    """Playlists mostly from one cluster of song ids 0..n_songs-1 (cluster = id % n_clusters)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_playlists):
        c = int(rng.integers(n_clusters))
        members = np.arange(c, n_songs, n_clusters)
        songs = rng.choice(members, size=int(rng.integers(3, 9)), replace=False).tolist()
        if rng.random() < 0.3:
            songs.append(int(rng.integers(n_songs)))
        out.append(list(dict.fromkeys(int(s) for s in songs)))
    return out


# -- the split ------------------------------------------------------------------------------------


def test_split_never_uses_held_out_playlists() -> None:
    playlists = _clustered_playlists(0)
    ids = list(range(1000, 1000 + len(playlists)))
    with pytest.raises(FitError, match="held-out"):
        split_validation(playlists, ids, holdout_ids=[ids[5]], options=FitOptions(), seed=0)
    split = split_validation(playlists, ids, holdout_ids=[1, 2, 3], options=FitOptions(val_fraction=0.2), seed=0)
    assert not set(split.val_ids) & set(split.fit_ids)
    assert sorted(split.val_ids + split.fit_ids) == ids
    assert len(split.val_ids) == 80
    known = {s for p in split.fit_playlists for s in p}
    by_id = dict(zip(ids, playlists, strict=True))
    val_songs = [set(by_id[i]) for i in split.val_ids]
    for q in split.queries:
        assert q.seed in known  # a seed the fitting playlists know (a warm query)
        assert q.seed not in q.relevant
        assert any(q.relevant | {q.seed} == s for s in val_songs)  # truth: the rest of one validation playlist


# -- the time bound -------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.2, 2.5])
def test_fitting_respects_its_time_bound(budget: float) -> None:
    playlists = _clustered_playlists(1)
    split = split_validation(playlists, list(range(len(playlists))), [], FitOptions(budget_s=budget), seed=0)
    fitter = Fitter(split, FitOptions(budget_s=budget), seed=0)
    started = time.perf_counter()
    alpha = fitter.fit_alpha()
    opts, score = fitter.search_music2vec(Music2VecOptions(dim=16, epochs=5, workers=1), min_playlists=1)
    audio_ids = np.arange(120, dtype=np.int64)
    vecs = np.random.default_rng(0).normal(size=(120, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    weights = fitter.fit_fusion({"tcae": (audio_ids, vecs)}, None, cel_seconds=0.0)
    took = time.perf_counter() - started
    summary = fitter.summary()
    trials = summary["music2vec"]["trials"]
    assert summary["fusion"]["reference"] in (COOC, "music2vec")
    assert alpha in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert set(weights) == set(ranking.SOURCES)
    assert weights[summary["fusion"]["reference"]] == 1.0  # the best single source on validation leads
    assert summary["elapsed_s"] <= took + 0.01
    if budget < 1.0:
        # Nothing fits in a fifth of a second: the given options stay and every trial says why it was skipped.
        assert all("skipped" in t for t in trials)
        assert opts.epochs == 5 and score == "in_out"
        assert took <= budget + 0.5  # the co-occurrence fit and the weight grid still run, briefly
    else:
        assert any("skipped" not in t for t in trials)
        # A Music2Vec trial stops at the end of the epoch that crosses the deadline: at most one epoch over.
        assert took <= budget + summary["music2vec"]["longest_epoch_s"] + 0.5


# -- the fusion grid ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_weight_grid_scores_exactly_what_the_service_serves(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = ["music2vec", "tcae", "cooc"]
    queries, lists = [], {m: [] for m in names}
    for _ in range(40):
        for m in names:  # few distinct songs, so lists overlap and scores tie; cooc (always weighted) lists some
            lists[m].append(rng.choice(60, size=int(rng.integers(m == "cooc", 30)), replace=False).tolist())
        queries.append(ValQuery(100, frozenset(rng.choice(60, size=int(rng.integers(1, 12)), replace=False).tolist())))
    combos = [{"cooc": 1.0, "music2vec": a, "tcae": b} for a in (0.0, 0.25, 1.0, 2.0) for b in (0.0, 0.005, 0.5)]
    offsets = ranking.FUSION_OFFSETS
    hits, gains = _grid_objectives(lists, names, combos, queries, offsets=offsets)
    assert hits.shape == gains.shape == (len(queries), len(combos) * len(offsets))
    for o, off in enumerate(offsets):
        for c, w in enumerate(combos):
            served = [[r for r, _ in ranking.score_total({m: lists[m][i] for m in names}, w, off)[:10]]
                      for i in range(len(queries))]
            fig = figures(served, queries)
            col = o * len(combos) + c
            assert hits[:, col].mean() == pytest.approx(fig["hit_rate@10"], abs=1e-5)
            assert gains[:, col].mean() == pytest.approx(fig["ndcg@10"], abs=1e-5)


def _fit_fusion_on(
    queries: list[ValQuery], lists: dict[str, list[list[int]]]
) -> tuple[ValidationSplit, dict[str, float], dict]:
    """Fit the fusion weights on hand-made validation queries and source lists: (split, weights, record)."""
    split = split_validation([], [], [], FitOptions(), seed=0)
    split.queries = queries
    fitter = Fitter(split, FitOptions(budget_s=60.0), seed=0)
    fitter.lists = lists
    weights = fitter.fit_fusion({}, None, cel_seconds=0.0)
    return split, weights, fitter.record["fusion"]


def test_fusion_fit_takes_a_rank_offset_when_the_sources_agree_below_their_heads() -> None:
    # Half the queries: co-occurrence has the playlist's song first. The other half: neither source has it
    # in its top 10, but both place it 12th; with 1/rank it stays below both heads, with an offset it leads.
    queries, cooc, m2v = [], [], []
    for q in range(60):
        base = 1000 + 100 * q
        if q % 2:
            hit = base
            cooc.append([hit] + list(range(base + 1, base + 20)))
            m2v.append(list(range(base + 50, base + 70)))
        else:
            hit = base + 99
            cooc.append(list(range(base + 1, base + 12)) + [hit] + list(range(base + 12, base + 20)))
            m2v.append(list(range(base + 50, base + 61)) + [hit] + list(range(base + 61, base + 70)))
        queries.append(ValQuery(q, frozenset({hit})))
    split, weights, rec = _fit_fusion_on(queries, {COOC: cooc, "music2vec": m2v})
    assert rec["reference"] == COOC and rec["single_sources"][COOC]["hit_rate@10"] == 0.5
    assert rec["offset"] > 0 and weights["music2vec"] > 0
    assert rec["validation"]["hit_rate@10"] == 1.0
    # What was recorded is what the service's fusion gives.
    served = [[r for r, _ in ranking.score_total({COOC: c, "music2vec": m}, weights, rec["offset"])[:10]]
              for c, m in zip(cooc, m2v, strict=True)]
    assert figures(served, queries) == rec["validation"]
    # Without any gain to be had, the plain 1/rank and the reference's fill weights stay.
    fitter = Fitter(split, FitOptions(budget_s=30.0), seed=0)
    fitter.lists = {COOC: [c if q % 2 else c[:11] for q, c in enumerate(cooc)], "music2vec": m2v}
    split.queries = [ValQuery(q.seed, q.relevant) if i % 2 else ValQuery(q.seed, frozenset({-1}))
                     for i, q in enumerate(queries)]
    fitter.fit_fusion({}, None, cel_seconds=0.0)
    assert fitter.record["fusion"]["offset"] == 0.0 and fitter.weights["music2vec"] <= 0.005


def test_a_narrow_lead_of_another_source_makes_the_fit_fuse_rather_than_keep_the_reference() -> None:
    # One relevant song per query. Co-occurrence has it first on queries 0-299 (it leads nDCG and the
    # objective); Music2Vec has it 5th on queries 0-300: one more hit, a lead of 0.0017 in HitRate@10,
    # within REACH_TOL of the reference. Fusing them keeps co-occurrence's order and Music2Vec's hit.
    n = 600
    queries = [ValQuery(0, frozenset({q})) for q in range(n)]
    cooc = [[q] + [10_000 + 20 * q + j for j in range(19)] if q < 300 else [10_000 + 20 * q + j for j in range(20)]
            for q in range(n)]
    m2v = [[50_000 + 20 * q + j for j in range(4)] + ([q] if q <= 300 else [])
           + [60_000 + 20 * q + j for j in range(15)] for q in range(n)]
    _, weights, rec = _fit_fusion_on(queries, {COOC: cooc, "music2vec": m2v})
    singles = rec["single_sources"]
    assert rec["reference"] == COOC and singles["music2vec"]["hit_rate@10"] > singles[COOC]["hit_rate@10"]
    assert rec["best_grid_point"]["reference_reach"] >= 1 - REACH_TOL  # the old rule would have kept it
    assert weights["music2vec"] > FILL_WEIGHT
    assert rec["validation"]["hit_rate@10"] >= singles["music2vec"]["hit_rate@10"]
    assert rec["validation"]["ndcg@10"] >= singles[COOC]["ndcg@10"]


def test_when_the_leaders_differ_the_surer_lead_beats_the_larger_one() -> None:
    # One relevant song per query. "a" has it first on queries 0-49 (leads nDCG), "b" 10th on 0-59 (leads HR).
    n = 100
    queries = [ValQuery(0, frozenset({i})) for i in range(n)]
    pad = list(range(1000, 1009))
    tops = {"a": [[i] + pad if i < 50 else pad for i in range(n)],
            "b": [pad + [i] if i < 60 else pad for i in range(n)]}
    a_nd = np.array([1.0 if i < 50 else 0.0 for i in range(n)])
    b_hit = np.array([1.0 if i < 60 else 0.0 for i in range(n)])
    tenth = 1 / np.log2(11)
    # Column 0: a small lead on both, on every query where it differs (never behind).
    hit0 = b_hit.copy()
    hit0[60:65] = 1
    nd0 = a_nd.copy()
    nd0[50:65] = tenth
    # Column 1: a larger lead on average, but behind on ten queries.
    hit1 = b_hit.copy()
    hit1[60:78] = 1
    hit1[:10] = 0
    nd1 = a_nd.copy()
    nd1[60:78] = 1
    nd1[:10] = 0
    hits, gains = np.stack([hit0, hit1], axis=1), np.stack([nd0, nd1], axis=1)
    assert hits[:, 1].mean() > hits[:, 0].mean() and gains[:, 1].mean() > gains[:, 0].mean()
    z = _z_against_leaders(hits, gains, tops, queries)
    assert z[0] > 2 and z[0] > z[1]
    # A column equal to both leaders where they lead is 0, one behind on every query is far below.
    same = _z_against_leaders(np.stack([b_hit], axis=1), np.stack([a_nd], axis=1), tops, queries)
    assert same[0] == 0.0
    worse = _z_against_leaders(np.zeros((n, 1)), np.zeros((n, 1)), tops, queries)
    assert worse[0] < -5


def test_selection_z_is_what_the_best_of_many_reaches_by_luck() -> None:
    rng = np.random.default_rng(5)
    n = 400
    noise = rng.choice([-1.0, 0.0, 0.0, 1.0], size=(n, 300))  # 300 weightings, none better than the reference

    def z_needed(diff: np.ndarray) -> float:  # column 0: the reference, the others its differences
        return selection_z(np.column_stack([np.zeros(n), diff]), 0, np.arange(1, diff.shape[1] + 1), seed=0)

    one, many = z_needed(noise[:, :1]), z_needed(noise)
    assert 1.2 < one < 2.1  # about the one-sided 95 % point of a single z
    assert many > 2.5 and many > one + 0.8
    col_z = noise.mean(axis=0) / (noise.std(axis=0, ddof=1) / np.sqrt(n))
    assert col_z.max() > 2.0 > one  # the best noise column looks like a gain to a single-test rule ...
    assert col_z.max() < many  # ... but not to this one
    # Columns that move together are one test, not many.
    assert z_needed(np.repeat(noise[:, :1], 700, axis=1)) == pytest.approx(one, abs=1e-9)  # two slices
    # A real gain passes: a hit more on a quarter of the queries, as noisy otherwise.
    gain = noise[:, 0] + (rng.random(n) < 0.25)
    assert gain.mean() / (gain.std(ddof=1) / np.sqrt(n)) > many
    assert z_needed(np.zeros((n, 3))) == 0.0


def test_a_weighting_picked_from_many_must_gain_more_than_luck_gives() -> None:
    rng = np.random.default_rng(3)
    n, cols = 400, 200
    reference = rng.choice([0.0, 1.0, 1.0, 2.0], size=n)  # column 0; the others move off it at random
    per_query = reference[:, None] + rng.choice([-1.0, 0.0, 0.0, 1.0], size=(n, cols))
    per_query[:, 0] = reference
    diff = per_query - per_query[:, [0]]
    z = diff.mean(axis=0)[1:] / (diff.std(axis=0, ddof=1)[1:] / np.sqrt(n))
    best = 1 + int(np.argmax(z))
    assert z.max() > MIN_GAIN_Z  # picked from 200, the luckiest looks like a gain to a single test
    gain, z_best, needed = clear_gain(per_query, best, 0, np.arange(cols), seed=0)
    assert not gain and z_best == pytest.approx(z.max()) and needed > z_best
    # The same column alone (nothing to pick from) passes.
    assert clear_gain(per_query, best, 0, np.array([best]), seed=0)[0]
    # A weighting that gains a point on a quarter of the queries passes among the 200.
    per_query[:, 7] = per_query[:, 0] + (rng.random(n) < 0.25) + rng.choice([-1.0, 0.0, 0.0, 1.0], size=n)
    assert clear_gain(per_query, 7, 0, np.arange(cols), seed=0)[0]
    # The reference itself never counts as a gain.
    assert clear_gain(per_query, 0, 0, np.arange(cols), seed=0) == (False, 0.0, MIN_GAIN_Z)


# -- the novelty fit ------------------------------------------------------------------------------


def test_novelty_takes_the_setting_with_most_room_not_the_cheapest_that_just_halves() -> None:
    S = NoveltySetting  # (median popularity ratio, hit-rate cost, strength, head, cap quantile)
    barely = S(0.49, 0.02, 8.0, 0)  # halves by a hair: cheapest, but misses on other queries half the time
    roomy = S(0.30, 0.06, 16.0, 5)
    too_dear = S(0.10, 0.11, 32.0, 0)
    assert novelty_margin(barely.ratio, barely.cost) < novelty_margin(roomy.ratio, roomy.cost)
    assert novelty_margin(too_dear.ratio, too_dear.cost) < 0
    assert choose_novelty([barely, too_dear, roomy]) == roomy
    # Nothing inside both limits: the setting closest to them, not the one that lowers popularity most.
    weak, close, harsh = S(0.70, 0.02, 4.0, 0), S(0.55, 0.09, 12.0, 2), S(0.20, 0.20, 32.0, 0)
    assert choose_novelty([weak, harsh, close]) == close
    # Equal room: the one further inside the other limit too, then the weaker strength.
    a, b = S(0.26, 0.067, 16.0, 5), S(0.18, 0.067, 24.0, 5)
    assert choose_novelty([a, b]) == b
    assert choose_novelty([S(0.3, 0.05, 24.0, 5), S(0.3, 0.05, 16.0, 5)]) == S(0.3, 0.05, 16.0, 5)
    # On equal figures no cap wins over a cap, and a looser cap over a tighter one.
    capped, tighter = S(0.3, 0.05, 16.0, 5, 0.8), S(0.3, 0.05, 16.0, 5, 0.6)
    assert choose_novelty([tighter, capped, S(0.3, 0.05, 16.0, 5)]) == S(0.3, 0.05, 16.0, 5)
    assert choose_novelty([tighter, capped]) == capped
    # A cap that measured more room wins.
    assert choose_novelty([S(0.45, 0.09, 8.0, 4), S(0.40, 0.08, 1.0, 5, 0.75)]).cap_quantile == 0.75
    assert choose_novelty([]) is None
    assert capped.name == "head 5, cap q0.8, strength 16" and a.name == "head 5, no cap, strength 16"
    assert S.parse_name(capped.name) == (5, 0.8, 16.0) and S.parse_name(a.name) == (5, None, 16.0)
    with pytest.raises(ValueError, match="setting name"):
        S.parse_name("head five")


def test_novelty_room_is_counted_in_each_estimate_s_own_spread() -> None:
    S = NoveltySetting
    # Far inside the halving, a little inside the cost: the most room in relative terms ...
    deep = S(0.29, 0.083, 16.0, 5, None, 0.03, 0.03)
    cheap = S(0.45, 0.04, 4.0, 5, None, 0.03, 0.03)
    assert novelty_margin(deep.ratio, deep.cost) > novelty_margin(cheap.ratio, cheap.cost)
    # ... but with both estimates as noisy (a cost of 8.3 % is 0.6 sd from its limit), the cheap one wins.
    assert deep.margin < cheap.margin and choose_novelty([deep, cheap]) == cheap
    # A precise popularity estimate makes a small ratio margin safe.
    assert S(0.47, 0.04, 4.0, 5, None, 0.005, 0.03).margin == pytest.approx(2.0)


def test_novelty_spread_is_the_bootstrap_spread_of_the_two_estimates() -> None:
    rng = np.random.default_rng(0)
    n = 100  # few enough queries that the cost's spread (about 0.04) lies above its floor
    queries = [ValQuery(0, frozenset({q})) for q in range(n)]
    base = [[q] + list(range(10_000 + 10 * q, 10_009 + 10 * q)) for q in range(n)]  # a hit on every query
    pop = {s: int(rng.integers(1, 50)) for t in base for s in t}
    spread = _NoveltySpread(base, queries, pop, seed=0)
    assert spread.of(base) == NOVELTY_MIN_SD  # the unchanged lists: no spread, the floors
    keep = rng.random(n) < 0.8  # the re-rank loses the hit on a fifth of the queries
    moved = [t if k else t[1:] + [99_999] for t, k in zip(base, keep, strict=True)]
    pop[99_999] = 1
    ratio_sd, cost_sd = spread.of(moved)
    assert cost_sd == pytest.approx(np.sqrt(0.2 * 0.8 / n), rel=0.3)  # a binomial share's spread
    assert NOVELTY_MIN_SD[0] <= ratio_sd < 0.1


def test_fit_novelty_records_the_setting_it_measured_furthest_inside_both_limits() -> None:
    playlists = _clustered_playlists(3, n_songs=240, n_playlists=600)
    # A popularity skew: low ids are listed much more often.
    rng = np.random.default_rng(3)
    playlists = [p + [int(s) for s in rng.integers(0, 12, size=2)] for p in playlists]
    playlists = [list(dict.fromkeys(p)) for p in playlists]
    options = FitOptions(budget_s=30.0, search=False)
    split = split_validation(playlists, list(range(len(playlists))), [], options, seed=0)
    fitter = Fitter(split, options, seed=0)
    fitter.fit_alpha()
    fitter.search_music2vec(Music2VecOptions(dim=16, epochs=5, workers=1), min_playlists=1)
    fitter.fit_fusion({}, None, cel_seconds=0.0)
    strength, head, quantile = fitter.fit_novelty()
    rec = fitter.record["novelty"]
    table = rec["tried"]
    chosen = table[NoveltySetting(0.0, 0.0, strength, head, quantile).name]
    assert rec.get("cap_quantile") == quantile
    # What the manifest gives the service is the chosen setting, the cap included.
    served = fitter.served_novelty()
    assert served is not None and served["strength"] == strength and served["head"] == head
    assert ranking.novelty_cap_quantile({"novelty": served}) == quantile
    assert any("no cap" in name for name in table) and any("cap q" in name for name in table)
    assert chosen["margin"] == max(row["margin"] for row in table.values())
    assert rec["fitted"] == (chosen["median_popularity_ratio"] <= NOVELTY_TARGET_RATIO
                             and chosen["hit_rate_cost"] <= NOVELTY_MAX_COST)
    # The recorded figures are what the service's re-rank gives with the chosen setting on these queries.
    pop: dict[int, int] = {}
    for p in split.fit_playlists:
        for s_ in p:
            pop[s_] = pop.get(s_, 0) + 1
    songs = sorted(pop)
    pop_arr = np.zeros(max(songs) + 1, dtype=np.int64)
    pop_arr[songs] = [pop[s_] for s_ in songs]
    pools = [ranking.score_total({m: ls[i] for m, ls in fitter.fused_lists.items()}, fitter.weights)
             for i in range(len(split.queries))]
    base = [[r for r, _ in pool[:10]] for pool in pools]
    cap = ranking.novelty_cap(ranking.cap_levels(pop_arr), 0.5, quantile)
    moved = [[r for r, _ in ranking.novelty_rerank(pool, pop_arr, 0.5, strength=strength, head=head, cap=cap)[:10]]
             for pool in pools]
    ratio = np.median([pop[s_] for t in moved for s_ in t]) / np.median([pop[s_] for t in base for s_ in t])
    cost = 1 - figures(moved, split.queries)["hit_rate@10"] / figures(base, split.queries)["hit_rate@10"]
    assert chosen["median_popularity_ratio"] == pytest.approx(ratio, abs=1e-3)
    assert chosen["hit_rate_cost"] == pytest.approx(cost, abs=1e-4)
    assert all(m[:head] == b[:head] for m, b in zip(moved, base, strict=True))  # the head keeps its place


def test_served_novelty_carries_the_cap_and_leaves_the_trials_out() -> None:
    split = ValidationSplit([[1, 2], [2, 3]], [0, 1], [], [])
    fitter = Fitter(split, FitOptions(budget_s=1.0, search=False))
    assert fitter.served_novelty() is None
    fitter.record["novelty"] = {"strength": 2.0, "head": 5, "cap_quantile": 0.75, "fitted": True, "level": 0.5,
                                "tried": {"head 5, cap q0.75, strength 2": {}}, "seconds": 0.1}
    served = fitter.served_novelty()
    assert served == {"strength": 2.0, "head": 5, "cap_quantile": 0.75, "fitted": True}
    assert ranking.novelty_cap_quantile({"novelty": served}) == 0.75


def _cold_split(seed: int, truth_popular: bool, n: int = 240) -> tuple[ValidationSplit, dict]:
    """Songs 0..199 with random audio vectors; songs 0..19 are in many fitting playlists, songs 150..199 in
    none (the cold seeds). Each cold query's truth is either popular songs or its seed's nearest audio
    neighbours: (split, audio vectors as the fusion fit leaves them)."""
    rng = np.random.default_rng(seed)
    fit_playlists = [rng.choice(20, 4, replace=False).tolist() + rng.choice(np.arange(20, 150), 4).tolist()
                     for _ in range(300)]
    ids = np.arange(200)
    vectors = {}
    for model in ("tcae", "cel"):
        v = rng.normal(size=(200, 16)).astype(np.float32)
        vectors[model] = (ids, v / np.linalg.norm(v, axis=1, keepdims=True))
    queries = []
    for _ in range(n):
        seed_song = int(rng.integers(150, 200))
        if truth_popular:
            truth = rng.choice(20, 6, replace=False).tolist()
        else:
            truth = [s for m in ("tcae", "cel")
                     for s in np.argsort(-(vectors[m][1] @ vectors[m][1][seed_song]))[1:4].tolist()]
        queries.append(ValQuery(seed_song, frozenset(int(t) for t in truth)))
    split = ValidationSplit(fit_playlists, list(range(len(fit_playlists))), [], [], queries)
    return split, vectors


def test_split_draws_cold_queries_from_songs_no_fitting_playlist_holds() -> None:
    playlists = _clustered_playlists(4) + [[500, 501, 1], [502, 2]]
    split = split_validation(playlists, list(range(len(playlists))), [], FitOptions(val_fraction=0.3), seed=1)
    known = {s for p in split.fit_playlists for s in p}
    val = [playlists[i] for i in split.val_ids]
    expected = [(s, frozenset(p) - {s}) for p in val for s in dict.fromkeys(p) if s not in known]
    assert [(q.seed, q.relevant) for q in split.cold_queries] == expected
    assert all(q.seed in known for q in split.queries)


def test_cold_fit_weighs_popularity_where_held_out_songs_are_the_hits() -> None:
    split, vectors = _cold_split(0, truth_popular=True)
    fitter = Fitter(split, FitOptions(budget_s=1.0, search=False), seed=0)
    fitter.audio_vectors = vectors
    cold = fitter.fit_cold()
    rec = fitter.record["cold"]
    assert cold.popular and rec["best_grid_point"]["adopted"] and rec["fitted"]
    assert rec["validation"]["hit_rate@10"] > 0.9 > rec["reference_validation"]["hit_rate@10"]
    # The record is what the service reads.
    served = fitter.served_cold()
    assert served is not None and ranking.cold_fusion({"cold": served}) == cold
    # The validation figures are those of the service's fusion of the same lists.
    pop = fitter.fit_popularity()
    by_pop = sorted(pop, key=lambda s_: (-pop[s_], s_))
    seeds = [q.seed for q in split.cold_queries]
    audio = {m: vector_lists(ids, v, v, seeds) for m, (ids, v) in vectors.items()}
    tops = [[r for r, _ in ranking.fuse({"tcae": audio["tcae"][i], "cel": audio["cel"][i],
                                         ranking.POPULAR: [x for x in by_pop[:51] if x != q.seed][:50]},
                                        {"cooc": 1.0}, 0.0, cold)[:10]]
            for i, q in enumerate(split.cold_queries)]
    assert figures(tops, split.cold_queries) == rec["validation"]


def test_cold_fit_keeps_the_audio_fusion_where_the_audio_lists_hold_the_hits() -> None:
    split, vectors = _cold_split(1, truth_popular=False)
    fitter = Fitter(split, FitOptions(budget_s=1.0, search=False), seed=0)
    fitter.audio_vectors = vectors
    cold = fitter.fit_cold()
    rec = fitter.record["cold"]
    assert rec["reference_validation"]["hit_rate@10"] == 1.0  # the audio lists' heads are the truth
    # Popularity has nothing to add here (the audio weights may still be re-balanced for the order).
    assert not cold.popular and rec["validation"]["hit_rate@10"] == 1.0
    assert rec["validation"]["ndcg@10"] >= rec["reference_validation"]["ndcg@10"]
    assert rec["popular_alone"]["hit_rate@10"] < 0.5


def test_cold_fit_needs_both_audio_models_and_cold_queries() -> None:
    split, vectors = _cold_split(2, truth_popular=True, n=20)
    fitter = Fitter(split, FitOptions(budget_s=1.0, search=False), seed=0)
    fitter.audio_vectors = {"tcae": vectors["tcae"]}  # no CEL was trained on the fitting split
    assert fitter.fit_cold() == ranking.ColdFusion()
    assert fitter.record["cold"]["fitted"] is False and "cel" in fitter.record["cold"]["note"]
    fitter = Fitter(ValidationSplit(split.fit_playlists, split.fit_ids, [], [], []), FitOptions(), seed=0)
    fitter.audio_vectors = vectors
    assert fitter.fit_cold() == ranking.ColdFusion() and "0 cold-start" in fitter.record["cold"]["note"]


# -- the service uses what was fitted -------------------------------------------------------------


@pytest.fixture()
def version(tmp_path: Path) -> Path:
    vdir = write_synthetic_version(tmp_path / "art", n_songs=60, seed=2)
    truth = read_truth(vdir)
    ids = np.array(truth["ids"])
    playlists = [[int(s) for s in p] for p in np.array_split(np.random.default_rng(0).permutation(ids[:50]), 10)]
    playlists += [[int(ids[0]), int(ids[7]), int(ids[9])], [int(ids[0]), int(ids[7])]]
    record = write_cooc(vdir, playlists, k=16, alpha=0.0)
    data = json.loads((vdir / MANIFEST).read_text())
    data["ranking"] = {"cooc": record, "fusion": {"weights": {"music2vec": 0.0, "tcae": 0.0, "cel": 0.0, "cooc": 1.0}},
                       "novelty": {"strength": 8.0, "head": 2}}
    (vdir / MANIFEST).write_text(json.dumps(data))
    return vdir


def _set_weights(vdir: Path, weights: dict[str, float]) -> None:
    data = json.loads((vdir / MANIFEST).read_text())
    data["ranking"]["fusion"]["weights"] = weights
    (vdir / MANIFEST).write_text(json.dumps(data))


def test_engine_reads_the_fitted_weights_and_the_cooc_list(version: Path) -> None:
    truth = read_truth(version)
    ids = truth["ids"]
    engine = Engine.load(version)
    assert engine.weights == {"music2vec": 0.0, "tcae": 0.0, "cel": 0.0, "cooc": 1.0}
    assert engine.novelty_strength == 8.0 and engine.novelty_head == 2
    _, items = engine.recommend(ids[0], "score_total", k=5)
    # Cooc alone: song 7 shares two playlists with song 0, so it comes first.
    assert items[0]["song_id"] == ids[7] and items[0]["ranks"]["cooc"] == 1
    assert all(set(it["ranks"]) == set(ranking.SOURCES) for it in items)
    assert [it["ranks"]["cooc"] for it in items] == list(range(1, len(items) + 1))
    # each_top3 and single models never fuse the co-occurrence list.
    _, single = engine.recommend(ids[0], "tcae", k=5)
    assert [it["ranks"]["tcae"] for it in single] == [1, 2, 3, 4, 5]

    _set_weights(version, {"music2vec": 0.0, "tcae": 1.0, "cel": 0.0, "cooc": 0.0})
    engine = Engine.load(version)
    _, items = engine.recommend(ids[0], "score_total", k=5)
    assert [it["song_id"] for it in items] == [it["song_id"] for it in single]


def test_old_versions_fall_back_to_the_constant_weights(tmp_path: Path) -> None:
    vdir = write_synthetic_version(tmp_path / "art", n_songs=60, seed=2)
    assert read_manifest(vdir).ranking == {}
    engine = Engine.load(vdir)
    assert engine.weights == ranking.FUSION_WEIGHTS and engine.cooc is None
    assert engine.novelty_strength == ranking.NOVELTY_STRENGTH and engine.novelty_head == 0
    ids = read_truth(vdir)["ids"]
    _, items = engine.recommend(ids[0], "score_total", k=5)
    assert all(it["ranks"]["cooc"] is None for it in items)


def test_engine_fuses_with_the_fitted_rank_offset(version: Path) -> None:
    ids = read_truth(version)["ids"]
    assert Engine.load(version).fusion_offset == 0.0  # not recorded: the plain 1/rank
    _set_weights(version, {"music2vec": 0.0, "tcae": 1.0, "cel": 0.0, "cooc": 1.0})
    plain = Engine.load(version)
    data = json.loads((version / MANIFEST).read_text())
    data["ranking"]["fusion"]["offset"] = 60.0
    (version / MANIFEST).write_text(json.dumps(data))
    engine = Engine.load(version)
    assert engine.fusion_offset == 60.0
    _, items = engine.recommend(ids[0], "score_total", k=10)
    _, before = plain.recommend(ids[0], "score_total", k=10)
    # Each answer is ordered by sum w / (offset + rank) over the ranks it reports.
    def fused(item: dict, offset: float) -> float:
        return sum(engine.weights[m] / (offset + r) for m, r in item["ranks"].items() if r is not None)

    for answer, offset in ((items, 60.0), (before, 0.0)):
        scores = [fused(it, offset) for it in answer]
        assert all(x >= y - 1e-12 for x, y in zip(scores, scores[1:], strict=False))
    assert any(it["ranks"]["tcae"] is not None and it["ranks"]["cooc"] is not None for it in items)
    for bad in (-1.0, "x", float("inf")):
        data["ranking"]["fusion"]["offset"] = bad
        (version / MANIFEST).write_text(json.dumps(data) if bad != float("inf") else json.dumps(data).replace(
            "Infinity", "1e999"))
        from mugle_core.artifacts import ArtifactError

        with pytest.raises(ArtifactError, match="offset"):
            Engine.load(version)


def test_bad_weights_refuse_the_version(version: Path) -> None:
    from mugle_core.artifacts import ArtifactError

    _set_weights(version, {"music2vec": -1.0})
    with pytest.raises(ArtifactError, match="music2vec"):
        Engine.load(version)
    _set_weights(version, {"lyrics": 1.0})
    with pytest.raises(ArtifactError, match="lyrics"):
        Engine.load(version)


def test_service_answers_with_the_fitted_weights(version: Path) -> None:
    truth = read_truth(version)
    ids = truth["ids"]
    with TestClient(create_app(Settings(artifacts=version.parent))) as client:
        body = client.get(f"/recommend/{ids[0]}", params={"k": 3}).json()
        assert body["recommendations"][0]["song_id"] == ids[7]
        assert body["recommendations"][0]["ranks"]["cooc"] == 1
        # A seed set sums its seeds' co-occurrence rows: 0 and 9 both share playlists with 7.
        body = client.post("/recommend", json={"song_ids": [ids[0], ids[9]], "k": 3}).json()
        recs = [r["song_id"] for r in body["recommendations"]]
        assert recs[0] == ids[7] and ids[0] not in recs and ids[9] not in recs
        assert body["recommendations"][0]["ranks"]["cooc"] == 1
