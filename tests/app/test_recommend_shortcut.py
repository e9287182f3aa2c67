"""``RecommendShortcut``: plain ``GET /recommend/{song_id}`` answered without FastAPI's parameter handling,
with exactly the route's answers (status, headers, body) for every request, plain or not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from app.routes import recommend as recommend_routes
from app.routes.recommend import RecommendShortcut, plain_recommend_query
from app.settings import Settings
from tests.fixtures.synthetic import read_truth, write_synthetic_version
from training.fused import add_fused

ORIGIN = "http://example.test"
PLAIN = 14  # the first queries of _queries, which the shortcut answers itself


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    add_fused(write_synthetic_version(root, n_songs=120, seed=4))
    return root


def _without_shortcut(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RecommendShortcut]
    return app


@pytest.fixture(scope="module")
def clients(root: Path) -> Iterator[tuple[TestClient, TestClient]]:
    settings = Settings(artifacts=root, cors_origins=[ORIGIN])
    fast = create_app(settings)
    assert any(m.cls is RecommendShortcut for m in fast.user_middleware)
    with TestClient(fast) as a, TestClient(_without_shortcut(create_app(settings))) as b:
        yield a, b


def _queries(truth: dict) -> list[str]:
    sid = truth["ids"][5]
    dup = next(iter(truth["duplicates"]))
    plain = [f"/recommend/{sid}", f"/recommend/{sid}?k=10", f"/recommend/{sid}?method=score_total&k=10",
             f"/recommend/{sid}?method=cel&k=5", f"/recommend/{sid}?method=each_top3",
             f"/recommend/{sid}?novelty=0.5", f"/recommend/{sid}?novelty=1", f"/recommend/{sid}?novelty=.25",
             f"/recommend/{sid}?k=100&novelty=1.0", f"/recommend/{sid}?exclude_artist=true",
             f"/recommend/{sid}?exclude_artist=0&k=3", f"/recommend/{dup}", f"/recommend/{truth['no_vector']}",
             f"/recommend/{truth['cold_start'][0]}?k=7"]
    other = [f"/recommend/{sid}?k=101", f"/recommend/{sid}?k=0", f"/recommend/{sid}?k=010", f"/recommend/{sid}?k=1e1",
             f"/recommend/{sid}?novelty=1.5", f"/recommend/{sid}?novelty=nan", f"/recommend/{sid}?novelty=-0.0",
             f"/recommend/{sid}?method=bogus", f"/recommend/{sid}?exclude_artist=yes",
             f"/recommend/{sid}?exclude_artist=maybe", f"/recommend/{sid}?k=10&k=5", f"/recommend/{sid}?k=10&",
             f"/recommend/{sid}?foo=1", f"/recommend/{sid}?genre=POP", f"/recommend/{sid}?diversity=2",
             f"/recommend/{sid}?year_from=2005&k=4", f"/recommend/{sid}?method=score%5Ftotal",
             "/recommend/999999999", "/recommend/-3", "/recommend/007", "/recommend/abc", "/recommend/0",
             "/recommend/99999999999999999999", "/recommend/tag/x"]
    assert len(plain) == PLAIN
    return plain + other


def test_every_answer_equals_the_route(
    clients: tuple[TestClient, TestClient], root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = clients
    truth = read_truth(root / "synthetic-4-120")
    routed: list[str] = []
    real = recommend_routes.steering_from_query  # the route calls it first; the shortcut never does
    monkeypatch.setattr(recommend_routes, "steering_from_query", lambda params: routed.append("x") or real(params))
    queries = _queries(truth)
    for url in queries:
        for headers in ({}, {"Origin": ORIGIN}):
            a, b = fast.get(url, headers=headers), slow.get(url, headers=headers)
            assert (a.status_code, a.content) == (b.status_code, b.content), url
            strip = {"x-request-id"}
            assert [(k, v) for k, v in a.headers.items() if k not in strip] == [
                (k, v) for k, v in b.headers.items() if k not in strip], url
    assert routed  # the route answered the others
    routed.clear()
    for url in queries[:PLAIN]:
        assert fast.get(url).status_code == 200
    assert not routed  # the shortcut answered every plain request
    assert fast.get(f"/recommend/{truth['ids'][5]}?k=101").status_code == 422


def test_plain_queries_are_read_and_the_rest_left_to_the_route() -> None:
    assert plain_recommend_query(b"") == ("score_total", 10, 0.0, False)
    assert plain_recommend_query(b"method=cel&k=5&novelty=0.25&exclude_artist=true") == ("cel", 5, 0.25, True)
    assert plain_recommend_query(b"k=100&exclude_artist=0") == ("score_total", 100, 0.0, False)
    for query in (b"k=101", b"k=0", b"k=010", b"novelty=1.01", b"novelty=1e-1", b"method=x", b"k=1&k=2",
                  b"k=1&", b"genre=POP", b"novelty=0%2E5", b"exclude_artist=True", b"k"):
        assert plain_recommend_query(query) is None, query


def test_shortcut_requests_are_counted_as_the_route(clients: tuple[TestClient, TestClient], root: Path) -> None:
    fast, _ = clients
    sid = read_truth(root / "synthetic-4-120")["ids"][9]
    before = fast.get("/metrics").text
    assert fast.get(f"/recommend/{sid}?method=tcae").status_code == 200
    after = fast.get("/metrics").text
    line = 'mugle_recommend_duration_seconds_count{method="tcae",route="/recommend/{song_id}"}'

    def count(text: str) -> float:
        return next((float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line)), 0.0)

    assert count(after) == count(before) + 1
