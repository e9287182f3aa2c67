"""Steering a list: genre and year filters, diversity, songs to avoid, on synthetic versions and as pure functions."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.engine import Engine, UnknownSongError
from app.main import create_app
from app.settings import Settings
from app.steering import CatalogFilter, Steering, rerank
from tests.fixtures.synthetic import GENRE_CODES, GENRES, read_truth, write_synthetic_version


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("steer")
    write_synthetic_version(root, n_songs=60, seed=1)
    return root


@pytest.fixture(scope="module")
def vdir(root: Path) -> Path:
    return root / "synthetic-1-60"


@pytest.fixture(scope="module")
def truth(vdir: Path) -> dict:
    return read_truth(vdir)


@pytest.fixture(scope="module")
def engine(vdir: Path) -> Engine:
    return Engine.load(vdir)


@pytest.fixture(scope="module")
def client(root: Path):
    with TestClient(create_app(Settings(artifacts=root))) as c:
        yield c


def _cluster_genre(truth: dict, sid: int) -> str:
    return GENRES[truth["clusters"][str(sid)] % len(GENRES)]


def _year(song: dict) -> int | None:
    return int(song["issue_date"][:4]) if song["issue_date"] else None


def _mean_pairwise_cos(engine: Engine, ids: list[int]) -> float:
    rows = [engine.resolve(i) for i in ids]
    vecs = engine._similarity_vectors(rows)
    pairs = list(itertools.combinations(range(len(rows)), 2))
    return float(np.mean([vecs[a] @ vecs[b] for a, b in pairs]))


# -- pure parts -------------------------------------------------------------------------------------


def test_steering_parameters_are_checked() -> None:
    assert Steering.of() is None and Steering.of([], None, None, 0.0, []) is None
    assert Steering.of(diversity=0.5) == Steering(diversity=0.5)
    with pytest.raises(ValueError, match="year_from"):
        Steering(year_from=2010, year_to=2000)
    with pytest.raises(ValueError, match="diversity"):
        Steering(diversity=1.5)
    with pytest.raises(ValueError, match="negative_ids"):
        Steering(negative_ids=tuple(range(101)))


def test_rerank_orders_by_relevance_penalises_negatives_and_diversifies() -> None:
    # Pool of six: three near-copies of direction a (best scored), three of direction b.
    a, b, c = np.eye(3, dtype=np.float32)
    vectors = np.stack([a, a, a, b, b, b])
    ranked = [(10, 6.0), (11, 5.0), (12, 4.0), (13, 3.0), (14, 2.0), (15, 1.0)]
    assert rerank(ranked, vectors, None, 0.0, 6) == [(r, pytest.approx(v)) for r, v in
                                                      zip(range(10, 16), [1.0, 0.8, 0.6, 0.4, 0.2, 0.0], strict=True)]
    # A negative along a: every a-song loses 1.0 of relevance and falls behind the b-songs (10 ties with 15
    # at 0.0 and keeps its place before it).
    avoided = [r for r, _ in rerank(ranked, vectors, a[None, :], 0.0, 6)]
    assert avoided == [13, 14, 10, 15, 11, 12]
    # An unrelated negative (direction c) changes nothing.
    assert [r for r, _ in rerank(ranked, vectors, c[None, :], 0.0, 6)] == list(range(10, 16))
    # Diversity 1: after the best a-song the best b-song, then back (MMR); at 0 the three a-songs lead.
    assert [r for r, _ in rerank(ranked, vectors, None, 1.0, 3)] == [10, 13, 11]
    assert [r for r, _ in rerank(ranked, vectors, None, 0.0, 3)] == [10, 11, 12]


def test_catalog_filter_years_and_genre_names(engine: Engine) -> None:
    f = CatalogFilter(engine.catalog)
    dates = engine.catalog.columns["issue_date"].to_list()
    expected = [int(d[:4]) if d else 0 for d in dates]
    assert f.years.tolist() == expected
    assert f.resolve(["GN0100", "발라드", "gn0200"]) == tuple(sorted({"발라드", "댄스"}))
    with pytest.raises(ValueError, match="'nope'.*'GN4242'|'GN4242'.*'nope'"):
        f.resolve(["nope", "발라드", "GN4242"])
    listed = {g["name"]: g for g in f.genres()}
    assert listed["발라드"]["codes"] == ["GN0100"]
    assert sum(g["songs"] for g in listed.values()) == sum(1 for g in engine.catalog.columns["genres"].to_list() if g)


# -- filters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["score_total", "each_top3", "music2vec", "tcae", "cel"])
def test_genre_filter_keeps_only_that_genre(engine: Engine, truth: dict, method: str) -> None:
    sid = truth["ids"][7]
    _, items = engine.recommend(sid, method, 10, steer=Steering(genres=("댄스", "GN0300")))
    assert items and all(set(it["genres"]) & {"댄스", "랩/힙합"} for it in items)
    # a code and its name are the same filter
    _, by_code = engine.recommend(sid, method, 10, steer=Steering(genres=("GN0200",)))
    _, by_name = engine.recommend(sid, method, 10, steer=Steering(genres=("댄스",)))
    assert [i["song_id"] for i in by_code] == [i["song_id"] for i in by_name]


def test_strict_filter_falls_back_to_a_deeper_search(tmp_path: Path) -> None:
    """Narrow neighbour lists (8) cannot hold 9 songs of another cluster's genre: the deeper search must."""
    vdir = write_synthetic_version(tmp_path, n_songs=60, seed=3, neighbours=8)
    truth = read_truth(vdir)
    engine = Engine.load(vdir)
    sid = truth["ids"][7]  # cluster 1
    genre = GENRES[4]  # cluster 4's genre
    passing = [i for i in truth["ids"] if _cluster_genre(truth, i) == genre and i != truth["no_vector"]]
    assert len(passing) >= 9
    for method in ("score_total", "cel", "tcae"):
        _, items = engine.recommend(sid, method, 9, steer=Steering(genres=(genre,)))
        assert len(items) == 9, method
        assert all(genre in it["genres"] for it in items)
    # The deeper search returns exactly the nearest passing songs: compare with a full scan of the cel vectors.
    mi = engine.models["cel"]
    query = np.asarray(mi.query[int(mi.row_of_catalog[engine.resolve(sid)])])
    keys = mi.index.reconstruct_n(0, mi.index.ntotal)
    ok = np.array([genre in engine.song(int(r))["genres"] for r in mi.catalog_rows])
    sims = np.where(ok, keys @ query, -np.inf)
    best = [int(engine.catalog.song_ids[mi.catalog_rows[i]]) for i in np.argsort(-sims)[:9]]
    _, items = engine.recommend(sid, "cel", 9, steer=Steering(genres=(genre,)))
    assert [it["song_id"] for it in items] == best
    # A filter that fewer songs pass than asked for gives all of them, not an error.
    _, items = engine.recommend(sid, "cel", 50, steer=Steering(genres=(genre,)))
    assert {it["song_id"] for it in items} == set(passing) - {sid}


def test_year_filter(engine: Engine, truth: dict) -> None:
    sid = truth["ids"][7]
    _, items = engine.recommend(sid, "score_total", 20, steer=Steering(year_from=2005, year_to=2010))
    assert items and all(it["issue_date"] and 2005 <= _year(it) <= 2010 for it in items)
    _, items = engine.recommend(sid, "cel", 30, steer=Steering(year_from=2015))
    assert items and all(it["issue_date"] and _year(it) >= 2015 for it in items)
    # every song issued in 2015 or later that has a vector is reachable
    expected = {i for i in truth["ids"] if i not in (sid, truth["no_vector"])
                and (y := _year(engine.get_song(i))) is not None and y >= 2015}
    assert {it["song_id"] for it in items} == expected


def test_no_steering_is_the_plain_answer(engine: Engine, truth: dict) -> None:
    sid = truth["ids"][9]
    _, plain = engine.recommend(sid, "score_total", 10)
    assert engine.recommend(sid, "score_total", 10, steer=Steering.of())[1] == plain
    # year bounds every dated song passes only drop the undated ones
    _, deep = engine.recommend(sid, "cel", 50)
    _, wide = engine.recommend(sid, "cel", 10, steer=Steering(year_from=1000, year_to=3000))
    assert [i["song_id"] for i in wide] == [i["song_id"] for i in deep if i["issue_date"]][:10]


# -- diversity and negatives ------------------------------------------------------------------------


def test_diversity_lowers_intra_list_similarity(engine: Engine, truth: dict) -> None:
    lower = 0
    for sid in truth["ids"][:12]:
        _, plain = engine.recommend(sid, "score_total", 10)
        _, varied = engine.recommend(sid, "score_total", 10, steer=Steering(diversity=1.0))
        if len(plain) < 10:
            continue
        assert len(varied) == 10 and sid not in {i["song_id"] for i in varied}
        assert varied[0]["song_id"] == plain[0]["song_id"]  # MMR starts with the most relevant song
        if _mean_pairwise_cos(engine, [i["song_id"] for i in varied]) < _mean_pairwise_cos(
            engine, [i["song_id"] for i in plain]
        ):
            lower += 1
    assert lower >= 8


def test_negatives_are_never_recommended_and_their_neighbours_sink(engine: Engine, truth: dict) -> None:
    seeds = [truth["ids"][7]]  # cluster 1
    _, plain = engine.recommend_seeds(seeds, "score_total", 20)
    negative = plain[0]["song_id"]
    cluster = truth["clusters"][str(negative)]
    _, steered = engine.recommend_seeds(seeds, "score_total", 20, steer=Steering(negative_ids=(negative,)))
    assert negative not in {i["song_id"] for i in steered}

    def share(items: list[dict]) -> float:
        return float(np.mean([truth["clusters"][str(i["song_id"])] == cluster for i in items[:10]]))

    assert share(steered) < share(plain)
    # a merged duplicate id of a song avoids that song
    dup, canonical = next(iter(truth["duplicates"].items()))
    _, items = engine.recommend_seeds([truth["ids"][0]], "score_total", 50, steer=Steering(negative_ids=(int(dup),)))
    assert canonical not in {i["song_id"] for i in items}
    with pytest.raises(UnknownSongError, match="negative id.*: 5, 7"):
        engine.recommend_seeds(seeds, steer=Steering(negative_ids=(5, negative, 7)))


# -- over HTTP --------------------------------------------------------------------------------------


def test_http_steering_parameters(client: TestClient, truth: dict) -> None:
    sid = truth["ids"][7]
    body = client.get(f"/recommend/{sid}", params={"genre": ["댄스", "GN0300"], "k": 8, "diversity": 0.5}).json()
    assert len(body["recommendations"]) == 8
    assert all(set(r["genres"]) & {"댄스", "랩/힙합"} for r in body["recommendations"])
    body = client.post("/recommend", json={"song_ids": [sid], "genre": ["GN0100"], "year_from": 2000,
                                           "year_to": 2019, "diversity": 1, "negative_ids": [truth["ids"][13]]}).json()
    recs = body["recommendations"]
    assert recs and all("발라드" in r["genres"] and 2000 <= _year(r) <= 2019 for r in recs)
    assert truth["ids"][13] not in {r["song_id"] for r in recs}
    genres = client.get("/genres").json()["genres"]
    assert {g["name"] for g in genres} >= {"발라드", "댄스"} and all(g["songs"] > 0 for g in genres)
    assert {c for g in genres for c in g["codes"]} <= set(GENRE_CODES)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"genre": "nope"}, "nope"),
        ({"genre": ["발라드", "GN4242"]}, "GN4242"),
        ({"year_from": 2010, "year_to": 2000}, "year_from"),
        ({"diversity": 1.5}, "diversity"),
        ({"diversity": -0.1}, "diversity"),
        ({"diversity": "nan"}, "diversity"),
        ({"year_from": -1}, "year_from"),
    ],
)
def test_http_bad_steering_is_422_naming_it(client: TestClient, truth: dict, params: dict, needle: str) -> None:
    for path in (f"/recommend/{truth['ids'][7]}", "/recommend/tag/드라이브"):
        r = client.get(path, params=params)
        assert r.status_code == 422, (path, r.text)
        assert needle in str(r.json()["detail"])
    body = {"song_ids": [truth["ids"][7]], **{k: v for k, v in params.items()}}
    if isinstance(body.get("genre"), str):
        body["genre"] = [body["genre"]]
    if body.get("diversity") == "nan":
        # JSON has no NaN; Python's parser takes it, and the answer is a 422 (its detail is the framework's)
        r = client.post("/recommend", content=b'{"song_ids": [%d], "diversity": NaN}' % truth["ids"][7],
                        headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        return
    r = client.post("/recommend", json=body)
    assert r.status_code == 422, r.text
    assert needle in str(r.json()["detail"])


def test_http_negative_ids(client: TestClient, truth: dict) -> None:
    sid = truth["ids"][7]
    r = client.post("/recommend", json={"song_ids": [sid], "negative_ids": [4, truth["ids"][13], 99999999]})
    assert r.status_code == 404
    assert "negative" in r.json()["detail"] and "4" in r.json()["detail"] and "99999999" in r.json()["detail"]
    r = client.post("/recommend", json={"song_ids": [sid], "negative_ids": list(range(101))})
    assert r.status_code == 422
    # unknown seeds are named before negatives
    r = client.post("/recommend", json={"song_ids": [5], "negative_ids": [4]})
    assert r.status_code == 404 and "song id" in r.json()["detail"] and ": 5" in r.json()["detail"]


def test_openapi_documents_the_steering_parameters(client: TestClient) -> None:
    """The GET routes read them from the query string (see app.routes.recommend): the schema must still list
    them, so that clients and the schema fuzz test know them."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/recommend/{song_id}", "/recommend/tag/{tag}"):
        names = [p["name"] for p in paths[path]["get"]["parameters"]]
        assert {"genre", "year_from", "year_to", "diversity", "method", "k", "novelty"} <= set(names), path
        assert len(names) == len(set(names))
    body = client.get("/openapi.json").json()["components"]["schemas"]["SeedsRequest"]["properties"]
    assert {"genre", "year_from", "year_to", "diversity", "negative_ids"} <= set(body)


@pytest.mark.parametrize("query", ["year_from=abc", "year_from=20000", "year_to=-3", "year_from=%E2%91%A0",
                                   "diversity=abc", "diversity=inf", "genre=", "genre=" + "x" * 101])
def test_malformed_steering_query_is_422_naming_it(client: TestClient, truth: dict, query: str) -> None:
    r = client.get(f"/recommend/{truth['ids'][7]}?{query}")
    assert r.status_code == 422, r.text
    assert query.split("=")[0] in r.json()["detail"]
