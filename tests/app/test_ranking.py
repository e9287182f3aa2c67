"""Ranking: the pure functions, and the engine's behaviour on artifacts with planted clusters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from app import ranking
from app.engine import Engine, UnknownSongError
from mugle_core.artifacts import MANIFEST, ArtifactError, ids_file, knn_file, knn_sims_file, query_file
from tests.fixtures.synthetic import read_truth, write_synthetic_version

faiss.omp_set_num_threads(1)


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_version(tmp_path_factory.mktemp("art"), n_songs=120, seed=3, n_clusters=6)


@pytest.fixture(scope="module")
def searching_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same version without precomputed neighbour lists: every request searches the indexes."""
    return write_synthetic_version(tmp_path_factory.mktemp("art"), n_songs=120, seed=3, n_clusters=6, neighbours=0)


# Every engine test runs on both paths: neighbour lists read from disk, and live index searches.
@pytest.fixture(scope="module", params=["lists", "search"])
def engine(request: pytest.FixtureRequest) -> Engine:
    fixture = "version" if request.param == "lists" else "searching_version"
    return Engine.load(request.getfixturevalue(fixture))


@pytest.fixture(scope="module")
def truth(version: Path) -> dict:
    return read_truth(version)


# -- pure functions -----------------------------------------------------------------------------------


def test_score_total_sums_reciprocal_ranks() -> None:
    lists = {"music2vec": [10, 20, 30], "tcae": [20, 10], "cel": [30]}
    ranked = ranking.score_total(lists)
    scores = dict(ranked)
    assert scores[10] == pytest.approx(1 + 1 / 2)
    assert scores[20] == pytest.approx(1 / 2 + 1)
    assert scores[30] == pytest.approx(1 / 3 + 1)
    # 10 and 20 tie at 1.5 with the same best rank: the lower row wins the tie, deterministically.
    assert [r for r, _ in ranked] == [10, 20, 30]


def test_score_total_weighted_by_hand() -> None:
    lists = {"music2vec": [10, 20, 30], "tcae": [20, 10, 40], "cel": [30, 50]}
    weights = {"music2vec": 1.0, "cel": 0.5, "tcae": 0.25}
    ranked = ranking.score_total(lists, weights)
    # 10: 1/1 + 0.25/2 = 1.125; 20: 1/2 + 0.25/1 = 0.75; 30: 1/3 + 0.5/1 = 0.8333;
    # 40: 0.25/3 = 0.0833; 50: 0.5/2 = 0.25.
    assert ranked == [
        (10, pytest.approx(1.125)), (30, pytest.approx(1 / 3 + 0.5)), (20, pytest.approx(0.75)),
        (50, pytest.approx(0.25)), (40, pytest.approx(0.25 / 3)),
    ]
    # Unweighted, 20 (1/2 + 1) ties 10 and beats 30 (1/3 + 1/1): the weights are what move 30 above 20.
    assert [r for r, _ in ranking.score_total(lists)][:3] == [10, 20, 30]
    # A model missing from the weights counts fully; weight 0 drops a model's songs entirely.
    assert dict(ranking.score_total(lists, {"tcae": 0.0})) == pytest.approx({10: 1.0, 20: 0.5, 30: 4 / 3, 50: 0.5})
    # When only zero-weighted models have lists (an audio-only song under weights that leave audio out),
    # they rank with equal weights instead of leaving the answer empty.
    audio_only = {"music2vec": [], "tcae": [20, 10, 40], "cel": [30, 50]}
    assert dict(ranking.score_total(audio_only, {"music2vec": 1.0, "tcae": 0.0, "cel": 0.0})) == pytest.approx(
        dict(ranking.score_total(audio_only)))


def test_served_score_total_uses_the_fusion_weights() -> None:
    lists = {"music2vec": [1, 2], "tcae": [3], "cel": [4]}
    sims = {"music2vec": [0.9, 0.8], "tcae": [0.99], "cel": [0.7]}
    ranked = ranking.rank_method("score_total", lists, sims)
    w = ranking.FUSION_WEIGHTS
    assert dict(ranked) == pytest.approx({1: w["music2vec"], 2: w["music2vec"] / 2, 3: w["tcae"], 4: w["cel"]})
    # Music2Vec's rank 1 outweighs every audio model's rank 1, as the weights were fitted to do.
    assert ranked[0][0] == 1


def _score_total_reference(
    lists: dict[str, list[int]], weights: dict[str, float] | None = None, offset: float = 0.0,
) -> list[tuple[int, float]]:
    # The definition, written the obvious way, to check the vectorised version against.
    weights = weights or {}
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for model, rows in lists.items():
        w = weights.get(model, 1.0)
        if w == 0.0:
            continue
        for rank, row in enumerate(rows, start=1):
            scores[row] = scores.get(row, 0.0) + w / (offset + rank)
            best[row] = min(best.get(row, rank), rank)
    return [(r, scores[r]) for r in sorted(scores, key=lambda r: (-scores[r], best[r], r))]


@pytest.mark.parametrize("seed", range(20))
def test_score_total_matches_its_definition_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct rows, so overlaps and exact ties are common.
    lists = {
        m: rng.choice(80, size=int(rng.integers(0, 50)), replace=False).tolist()
        for m in ("music2vec", "tcae", "cel")
    }
    assert ranking.score_total(lists) == _score_total_reference(lists)
    weights = {"music2vec": 1.0, "cel": 0.5, "tcae": 0.25} if seed % 2 else dict(ranking.FUSION_WEIGHTS)
    assert ranking.score_total(lists, weights) == _score_total_reference(lists, weights)
    offset = ranking.FUSION_OFFSETS[seed % len(ranking.FUSION_OFFSETS)]
    assert ranking.score_total(lists, weights, offset) == _score_total_reference(lists, weights, offset)


def test_rank_offset_lets_a_song_two_sources_place_well_pass_one_source_s_first() -> None:
    lists = {"cooc": [1, 2, 3], "music2vec": [9, 2, 8]}
    weights = {"cooc": 1.0, "music2vec": 1.0}
    # 1/rank: song 2 (1/2 + 1/2) only ties songs 1 and 9 (1/1 each), and loses the tie on its best rank.
    assert [r for r, _ in ranking.score_total(lists, weights)][:3] == [1, 9, 2]
    # Reciprocal rank fusion's constant: 2/62 > 1/61, the song both sources list comes first.
    ranked = ranking.score_total(lists, weights, 60.0)
    assert ranked[0] == (2, pytest.approx(2 / 62)) and ranked[1][0] == 1
    # Served: the offset applies with the version's weights, never to the constant cold-start fallback.
    sims = {m: [0.0] * len(v) for m, v in lists.items()}
    assert ranking.rank_method("score_total", lists, sims, weights, 60.0)[0][0] == 2
    cold = {"tcae": [5, 6], "cel": [6]}
    assert ranking.rank_method("score_total", cold, {"tcae": [0.0, 0.0], "cel": [0.0]}, weights, 60.0) == \
        ranking.score_total(cold, ranking.FUSION_WEIGHTS)


def test_candidate_list_keeps_first_of_repeats_and_order() -> None:
    found = np.array([4, 2, 4, -1, 8, 2, 6, 3])
    sims = np.arange(8, dtype=np.float32)
    rows, out = ranking.candidate_list(found, sims, exclude=[6], depth=10)
    assert rows == [4, 2, 8, 3]
    assert out == [0.0, 1.0, 4.0, 7.0]
    assert ranking.candidate_list(np.array([-1, -1]), np.zeros(2)) == ([], [])
    # The filter is applied lazily up to the depth, in order.
    seen: list[int] = []
    rows, _ = ranking.candidate_list(found, sims, depth=2, keep=lambda r: seen.append(r) or r != 2)
    assert rows == [4, 8] and seen == [4, 2, 8]


def test_each_top3_merges_then_round_robin() -> None:
    lists = {"music2vec": [1, 2, 3, 4, 5, 6], "tcae": [1, 7, 8, 9, 10], "cel": [11, 12, 13, 14]}
    rows = [r for r, _ in ranking.each_top3(lists)]
    assert rows[:8] == [1, 2, 3, 7, 8, 11, 12, 13]  # top 3 of each, repeats dropped
    assert rows[8:] == [4, 9, 14, 5, 10, 6]  # then one position of every model at a time
    assert len(rows) == len(set(rows))
    scores = [s for _, s in ranking.each_top3(lists)]
    assert scores == sorted(scores, reverse=True)


def test_candidate_list_excludes_and_cuts_to_depth() -> None:
    found = np.array([5, 7, -1, 9, 11, 13])
    sims = np.linspace(0.9, 0.4, 6)
    rows, out = ranking.candidate_list(found, sims, exclude={7}, depth=3, keep=lambda r: r != 11)
    assert rows == [5, 9, 13]
    assert out == pytest.approx([sims[0], sims[3], sims[5]])


def test_novelty_rerank_lowers_popularity_and_is_identity_at_zero() -> None:
    popularity = np.array([1000, 500, 100, 10, 1, 0, 2000, 3])
    ranked = [(i, 1.0 / (i + 1)) for i in range(8)]
    assert ranking.novelty_rerank(ranked, popularity, 0.0) == ranked
    strong = ranking.novelty_rerank(ranked, popularity, 1.0)
    assert sorted(r for r, _ in strong) == list(range(8))
    top = lambda rr: np.mean([popularity[r] for r, _ in rr[:3]])  # noqa: E731
    assert top(strong) < top(ranking.novelty_rerank(ranked, popularity, 0.3)) < top(ranked)
    with pytest.raises(ValueError, match="novelty"):
        ranking.novelty_rerank(ranked, popularity, 1.5)


def test_rank_method_rejects_unknown_and_empties_missing_model() -> None:
    assert ranking.rank_method("music2vec", {"tcae": [1]}, {"tcae": [0.5]}) == []
    with pytest.raises(ValueError, match="method"):
        ranking.rank_method("best", {}, {})


# -- engine -------------------------------------------------------------------------------------------


def test_recommendations_come_from_the_planted_cluster(engine: Engine, truth: dict) -> None:
    clusters = truth["clusters"]
    sid = truth["ids"][8]
    for method in ranking.METHODS:
        _, items = engine.recommend(sid, method=method, k=10)
        assert len(items) == 10
        same = sum(clusters[str(it["song_id"])] == clusters[str(sid)] for it in items)
        assert same >= 8, (method, same)


def test_query_and_duplicates_never_recommended(engine: Engine, truth: dict) -> None:
    dup, canonical = next(iter(truth["duplicates"].items()))
    song, items = engine.recommend(int(dup), k=50)
    assert song["song_id"] == canonical  # the duplicate resolves to its canonical song
    got = {it["song_id"] for it in items}
    assert canonical not in got and int(dup) not in got
    assert engine.duplicates_of(canonical) == (int(dup),)


def test_ranks_explain_score_total(engine: Engine, truth: dict) -> None:
    _, items = engine.recommend(truth["ids"][2], k=20)
    for it in items:
        ranks = [r for r in it["ranks"].values() if r is not None]
        assert ranks and all(1 <= r <= ranking.DEPTH for r in ranks)
        weighted = sum(engine.weights.get(m, 1.0) / r for m, r in it["ranks"].items() if r is not None)
        assert it["score"] == pytest.approx(weighted, abs=1e-5)


def test_exclude_artist(engine: Engine, truth: dict) -> None:
    sid = truth["ids"][4]
    artist = set(engine.get_song(sid)["artists"])
    _, plain = engine.recommend(sid, k=20)
    assert any(set(it["artists"]) & artist for it in plain)  # the filter has something to remove
    _, filtered = engine.recommend(sid, k=20, exclude_artist=True)
    assert filtered and not any(set(it["artists"]) & artist for it in filtered)


def test_novelty_lowers_mean_popularity(engine: Engine, truth: dict) -> None:
    means = {}
    for nov in (0.0, 1.0):
        pops = [
            np.mean([it["popularity"] for it in engine.recommend(sid, k=10, novelty=nov)[1]])
            for sid in truth["ids"][:30]
        ]
        means[nov] = float(np.mean(pops))
    assert means[1.0] < 0.7 * means[0.0]


def test_cold_start_and_no_vector_songs(engine: Engine, truth: dict) -> None:
    cold = truth["cold_start"][0]
    assert engine.query_vector("music2vec", cold) is None
    assert engine.query_vector("tcae", cold) is not None
    _, items = engine.recommend(cold, k=10)
    assert len(items) == 10 and all(it["ranks"]["music2vec"] is None for it in items)
    assert engine.recommend(cold, method="music2vec")[1] == []
    song, items = engine.recommend(truth["no_vector"], k=10)
    assert song["song_id"] == truth["no_vector"] and items == []


def test_seeds_exclude_every_seed(engine: Engine, truth: dict) -> None:
    clusters = truth["clusters"]
    seeds = [s for s in truth["ids"] if clusters[str(s)] == 2][:5]
    got_seeds, items = engine.recommend_seeds(seeds, k=30)
    assert [s["song_id"] for s in got_seeds] == seeds
    ids = {it["song_id"] for it in items}
    assert not ids & set(seeds)
    assert sum(clusters[str(i)] == 2 for i in ids) >= 10
    with pytest.raises(UnknownSongError) as err:
        engine.recommend_seeds([seeds[0], 7, 8])
    assert err.value.ids == [7, 8]


def test_recommend_from_vectors_and_k_beyond_depth(engine: Engine, truth: dict) -> None:
    sid = truth["ids"][10]
    vec = engine.query_vector("tcae", sid)
    items = engine.recommend_from_vectors({"tcae": vec * 3.0, "cel": engine.query_vector("cel", sid)}, "score_total",
                                          k=5, exclude_ids=[sid])
    assert len(items) == 5 and sid not in {it["song_id"] for it in items}
    assert all(it["ranks"]["music2vec"] is None for it in items)
    single = engine.recommend(sid, method="tcae", k=80)[1]
    assert len(single) == 80
    sims = [it["score"] for it in single]
    assert sims == sorted(sims, reverse=True)
    with pytest.raises(ValueError, match="dimension"):
        engine.recommend_from_vectors({"tcae": np.ones(3)}, "tcae", k=5)


@pytest.mark.parametrize("method", ranking.METHODS)
def test_neighbour_lists_answer_exactly_like_searching(version: Path, searching_version: Path, method: str) -> None:
    lists, search = Engine.load(version), Engine.load(searching_version)
    assert all(mi.knn is not None for mi in lists.models.values())
    assert all(mi.knn is None for mi in search.models.values())
    truth = read_truth(version)
    # k=60 still reads the lists (64 wide); k=70 needs more than they hold, so it searches.
    options = [{}, {"k": 60}, {"k": 70}, {"exclude_artist": True}, {"novelty": 0.5}, {"k": 3, "exclude_artist": True}]
    for sid in truth["ids"] + [int(d) for d in truth["duplicates"]]:
        for opts in options:
            assert lists.recommend(sid, method, **opts) == search.recommend(sid, method, **opts), (sid, opts)
    seeds = truth["ids"][5:6]
    assert lists.recommend_seeds(seeds, method) == search.recommend_seeds(seeds, method)


def test_a_corrupt_neighbour_row_falls_back_to_searching(version: Path, tmp_path: Path) -> None:
    broken = _broken_copy(version, tmp_path)
    engine = Engine.load(broken)
    # The loader checks a sample of rows; a row can still go bad on disk after that.
    knn = np.load(broken / knn_file("cel"))
    knn[40] = 10**6
    np.save(broken / knn_file("cel"), knn)
    mi = engine.models["cel"]
    row = int(mi.catalog_rows[40])
    sid = int(engine.catalog.song_ids[row])
    assert mi.neighbours(40, {row}, ranking.DEPTH) is None
    assert engine.recommend(sid, "cel") == Engine.load(version).recommend(sid, "cel")


# -- validation ---------------------------------------------------------------------------------------


def _drop_from_manifest(version: Path, model: str, name: str) -> None:
    data = json.loads((version / MANIFEST).read_text())
    data["models"][model]["files"].remove(name)
    (version / MANIFEST).write_text(json.dumps(data))


def _broken_copy(version: Path, tmp_path: Path) -> Path:
    dst = tmp_path / version.name
    shutil.copytree(version, dst)
    return dst


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: np.save(d / ids_file("tcae"), np.load(d / ids_file("tcae"))[::-1].copy()), "ascending"),
        (lambda d: np.save(d / ids_file("cel"), np.load(d / ids_file("cel")) + 1), "not canonical"),
        (lambda d: np.save(d / query_file("cel"), np.load(d / query_file("cel"))[:-1]), "row counts"),
        (lambda d: np.save(d / query_file("tcae"), np.load(d / query_file("tcae"))[:, :-1].copy()), "dimensions"),
        (lambda d: (d / "music2vec.index").unlink(), "music2vec.index"),
        (lambda d: (d / "music2vec.index").write_bytes(b"junk"), "FAISS"),
        (lambda d: (d / "catalog.npz").write_bytes(b"junk"), "catalog"),
        (lambda d: np.save(d / knn_file("cel"), np.load(d / knn_file("cel"))[:-1]), r"cel.knn.npy: must be int32"),
        (lambda d: np.save(d / knn_file("cel"), np.load(d / knn_file("cel")).astype(np.int64)), "must be int32"),
        (lambda d: np.save(d / knn_sims_file("tcae"), np.load(d / knn_sims_file("tcae"))[:, :3].copy()), "float32"),
        (lambda d: np.save(d / knn_file("tcae"), np.load(d / knn_file("tcae")) + 1000), r"must lie in \[-1"),
        (lambda d: (d / knn_file("tcae")).write_bytes(b"\x93NUMPY junk"), "cannot read array"),
        (lambda d: (d / knn_sims_file("music2vec")).unlink(), "listed in manifest"),
        (lambda d: _drop_from_manifest(d, "tcae", knn_sims_file("tcae")), "lists only one of"),
    ],
)
def test_load_refuses_inconsistent_artifacts(version: Path, tmp_path: Path, breakage, message: str) -> None:
    broken = _broken_copy(version, tmp_path)
    breakage(broken)
    with pytest.raises(ArtifactError, match=message):
        Engine.load(broken)


def test_novelty_head_keeps_the_best_places_and_reranks_the_rest() -> None:
    ranked = [(0, 1.0), (1, 0.5), (2, 0.33), (3, 0.25), (4, 0.2)]
    popularity = np.array([500, 400, 300, 1, 0])
    plain = ranking.novelty_rerank(ranked, popularity, 1.0, strength=8.0)
    kept = ranking.novelty_rerank(ranked, popularity, 1.0, strength=8.0, head=2)
    assert [r for r, _ in plain][:2] == [4, 3]  # without a head the obscure songs take the top
    assert [r for r, _ in kept][:2] == [0, 1]  # with head 2 the two best keep their places
    assert sorted(r for r, _ in kept[2:]) == [2, 3, 4] and kept[2][0] == 4
    scores = [s for _, s in kept]
    assert scores == sorted(scores, reverse=True)  # reported scores never increase down the list
    assert ranking.novelty_rerank(ranked, popularity, 0.0, head=2) == ranked


def test_novelty_cap_puts_the_lesser_known_songs_first_past_the_head() -> None:
    ranked = [(0, 1.0), (1, 0.5), (2, 0.33), (3, 0.25), (4, 0.2), (5, 0.1)]
    popularity = np.array([500, 400, 300, 1, 200, 2])
    capped = ranking.novelty_rerank(ranked, popularity, 0.5, strength=1.0, head=1, cap=100.0)
    # The head keeps its place; then the songs at or under the cap in re-ranked order; then the rest, least
    # popular first.
    assert [r for r, _ in capped] == [0, 3, 5, 4, 2, 1]
    scores = [s for _, s in capped]
    assert scores == sorted(scores, reverse=True)
    assert ranking.novelty_rerank(ranked, popularity, 0.5, strength=1.0, head=1, cap=None) != capped
    assert ranking.novelty_rerank(ranked, popularity, 0.0, head=1, cap=100.0) == ranked


def test_more_novelty_never_gives_a_more_popular_list_when_the_songs_under_the_cap_run_out() -> None:
    # A pool ordered by popularity (the popular songs are the relevant ones), a catalog where few songs of
    # the pool are below the lower caps.
    rng = np.random.default_rng(0)
    popularity = np.concatenate([np.arange(60, 0, -1), rng.integers(1, 4, size=400)])
    ranked = [(r, 1.0 / (r + 1)) for r in range(60)]
    levels = ranking.cap_levels(popularity)
    medians = []
    for novelty in (0.0, 0.25, 0.5, 0.75, 1.0):
        cap = ranking.novelty_cap(levels, novelty, 0.6)
        top = ranking.novelty_rerank(ranked, popularity, novelty, strength=1.0, head=5, cap=cap)[:10]
        medians.append(float(np.median([popularity[r] for r, _ in top])))
    assert medians == sorted(medians, reverse=True) and medians[-1] < medians[0]


def test_novelty_cap_falls_with_novelty_through_the_fitted_quantile() -> None:
    levels = ranking.cap_levels(np.array([0, 0, *range(1, 101)]))  # songs without playlists do not count
    assert levels[0] == 1 and len(levels) == 100
    assert ranking.novelty_cap(levels, 0.0, 0.7) is None
    assert ranking.novelty_cap(levels, 0.5, None) is None
    assert ranking.novelty_cap(levels, 0.5, 0.7) == pytest.approx(70, abs=1)
    caps = [ranking.novelty_cap(levels, v, 0.7) for v in (0.01, 0.25, 0.5, 0.75, 1.0)]
    assert caps == sorted(caps, reverse=True) and caps[0] == pytest.approx(100, abs=1)
    assert caps[-1] == pytest.approx(40, abs=1)  # 2 * 0.7 - 1 of the way
    assert ranking.novelty_cap(levels, 1.0, 0.3) == 1  # never below the least popular song
    assert ranking.novelty_cap(np.zeros(0), 0.5, 0.7) is None


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5, "x", True, float("nan")])
def test_novelty_cap_quantile_is_checked(value: object) -> None:
    with pytest.raises(ValueError, match="ranking.novelty.cap_quantile"):
        ranking.novelty_cap_quantile({"novelty": {"cap_quantile": value}})
    assert ranking.novelty_cap_quantile({"novelty": {"strength": 4.0}}) is None
    assert ranking.novelty_cap_quantile({"novelty": {"cap_quantile": 0.75}}) == 0.75


def test_cold_start_queries_fuse_the_audio_models_with_the_constant_weights() -> None:
    fitted = {"music2vec": 1.0, "cooc": 1.0, "cel": 0.002, "tcae": 0.0}
    audio = {"tcae": [20, 10, 40], "cel": [30, 50]}
    sims = {"tcae": [0.9, 0.8, 0.7], "cel": [0.9, 0.8]}
    # No playlist source answers: the fitted (warm) weights would drop tcae; the constant ones fuse both.
    assert ranking.rank_method("score_total", audio, sims, fitted) == ranking.score_total(audio, ranking.FUSION_WEIGHTS)
    warm = {**audio, "cooc": [60, 70]}
    assert ranking.rank_method("score_total", warm, {**sims, "cooc": [3.0, 2.0]}, fitted) == ranking.score_total(
        warm, fitted)


def test_a_version_s_cold_start_fusion_weighs_the_popularity_list() -> None:
    fitted = {"music2vec": 1.0, "cooc": 1.0, "cel": 0.002, "tcae": 0.0}
    cold = ranking.ColdFusion({"tcae": 0.1, "cel": 0.0, ranking.POPULAR: 1.0}, 20.0)
    assert cold.popular and not ranking.ColdFusion().popular
    lists = {"tcae": [20, 10, 40], "cel": [30, 50], ranking.POPULAR: [70, 10, 80]}
    sims = {m: [1.0] * len(v) for m, v in lists.items()}
    ranked = ranking.rank_method("score_total", lists, sims, fitted, 0.0, cold)
    # cel weighs 0 here; 10 is in both tcae (rank 2) and the popularity list (rank 2).
    assert [r for r, _ in ranked] == [10, 70, 80, 20, 40]
    assert ranked[0][1] == pytest.approx(1 / 22 + 0.1 / 22)
    # A warm query (a playlist source answered) ignores the cold-start fusion.
    warm = {"cooc": [60], **lists}
    assert ranking.rank_method("score_total", warm, {**sims, "cooc": [1.0]}, fitted, 0.0, cold) == \
        ranking.score_total(warm, fitted)
    # The default keeps the constant audio fusion of older versions.
    audio = {"tcae": [20, 10, 40], "cel": [30, 50]}
    assert ranking.fuse(audio, fitted, 0.0, ranking.ColdFusion()) == ranking.score_total(audio, ranking.FUSION_WEIGHTS)


def test_cold_fusion_record_is_read_and_checked() -> None:
    assert ranking.cold_fusion({}) == ranking.ColdFusion()
    got = ranking.cold_fusion({"cold": {"weights": {"tcae": 0.5, "popular": 2.0}, "offset": 60, "fitted": True}})
    assert got.weights == {"tcae": 0.5, "cel": 0.0, "popular": 2.0} and got.offset == 60.0
    assert ranking.cold_fusion({"cold": got.as_record()}) == got
    for bad, match in (({"weights": {"cooc": 1.0}}, "unknown source 'cooc'"),
                       ({"weights": {"tcae": -1}}, "ranking.cold.weights.tcae"),
                       ({"weights": {"tcae": 1}, "offset": "x"}, "ranking.cold.offset"),
                       ({"offset": 1.0}, "ranking.cold: must be an object with a 'weights' object")):
        with pytest.raises(ValueError, match=match):
            ranking.cold_fusion({"cold": bad})


def test_popular_candidates_skip_the_excluded_and_look_past_a_filter() -> None:
    popularity = np.array([5, 0, 9, 9, 1, 7])
    order = ranking.popular_order(popularity, 10)
    assert order.tolist() == [2, 3, 5, 0, 4]  # no song without history; ties by row
    rows, sims = ranking.popular_candidates(order, popularity, {3}, depth=2)
    assert rows == [2, 5] and sims == [9.0, 7.0]
    rows, _ = ranking.popular_candidates(order, popularity, {3}, depth=2, keep=lambda r: r % 2 == 0)
    assert rows == [2, 0]
