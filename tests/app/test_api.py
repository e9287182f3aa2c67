"""The HTTP API through TestClient, on tiny synthetic artifacts."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

import pytest
from fastapi.testclient import TestClient

from app.deps import get_engine
from app.engine import Engine
from app.errors import ClientError
from app.main import create_app
from app.settings import Settings
from mugle_core.artifacts import ArtifactError
from mugle_core.names import METHODS
from tests.fixtures.synthetic import read_truth, write_synthetic_version


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    write_synthetic_version(root, n_songs=60, seed=1)
    return root


@pytest.fixture(scope="module")
def truth(root: Path) -> dict:
    return read_truth(root / "synthetic-1-60")


@pytest.fixture(scope="module")
def client(root: Path):
    with TestClient(create_app(Settings(artifacts=root, cors_origins=["http://example.test"]))) as c:
        yield c


def test_health(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body == {"status": "ok", "version": "synthetic-1-60", "songs": 60,
                    "models": {"music2vec": body["models"]["music2vec"], "tcae": 59, "cel": 59},
                    "methods": list(METHODS),
                    "worker": f"{socket.gethostname()}:{os.getpid()}"}
    assert 0 < body["models"]["music2vec"] < 59


def test_song_and_duplicate(client: TestClient, truth: dict) -> None:
    dup, canonical = next(iter(truth["duplicates"].items()))
    song = client.get(f"/songs/{dup}").json()
    assert song["song_id"] == canonical
    assert set(song) == {"song_id", "title", "artists", "album", "genres", "issue_date", "popularity"}


@pytest.mark.parametrize("path", ["/songs/-1", "/songs/5", "/recommend/-1", "/recommend/999999999"])
def test_unknown_ids_404_with_detail(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert path.rsplit("/", 1)[1] in r.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/songs/abc",
        "/songs/99999999999999999999999",
        "/recommend/1000?k=0",
        "/recommend/1000?k=101",
        "/recommend/1000?method=best",
        "/recommend/1000?novelty=1.5",
        "/recommend/1000?novelty=nan",
        "/search?q=",
        "/search?q=%20%20",
        "/search?q=a&limit=0",
        "/search?q=a&limit=51",
        "/search?q=" + "a" * 201,
    ],
)
def test_bad_input_422_with_detail(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_recommend_every_method(client: TestClient, truth: dict) -> None:
    sid = truth["ids"][7]
    for method in ("score_total", "each_top3", "music2vec", "tcae", "cel"):
        body = client.get(f"/recommend/{sid}", params={"method": method, "k": 7}).json()
        assert body["method"] == method and body["song"]["song_id"] == sid
        recs = body["recommendations"]
        assert len(recs) == 7 and sid not in {r["song_id"] for r in recs}
        assert set(recs[0]["ranks"]) == {"music2vec", "tcae", "cel", "cooc"}
    body = client.get(f"/recommend/{sid}", params={"novelty": 1, "exclude_artist": "true"}).json()
    artists = set(body["song"]["artists"])
    assert not any(set(r["artists"]) & artists for r in body["recommendations"])


def test_post_recommend(client: TestClient, truth: dict) -> None:
    seeds = truth["ids"][:3]
    body = client.post("/recommend", json={"song_ids": seeds, "k": 5, "method": "each_top3"}).json()
    assert [s["song_id"] for s in body["seeds"]] == seeds
    assert len(body["recommendations"]) == 5 and not {r["song_id"] for r in body["recommendations"]} & set(seeds)
    r = client.post("/recommend", json={"song_ids": [seeds[0], 4, 5]})
    assert r.status_code == 404 and "4" in r.json()["detail"] and "5" in r.json()["detail"]
    assert client.post("/recommend", json={"song_ids": list(range(101))}).status_code == 422
    assert client.post("/recommend", json={"song_ids": []}).status_code == 422
    assert client.post("/recommend", json={"song_ids": [seeds[0]], "k": 0}).status_code == 422
    bad_json = client.post("/recommend", content=b"not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422


def test_search(client: TestClient) -> None:
    body = client.get("/search", params={"q": "ㅂ ㅍ ㅈ", "limit": 2}).json()
    assert body["query"] == "ㅂ ㅍ ㅈ"
    assert {r["title"] for r in body["results"]} == {"비 퐁 주", "밤편지"}
    assert client.get("/search", params={"q": "봄날"}).json()["results"][0]["title"] == "봄날"


def test_cors_and_docs(client: TestClient) -> None:
    r = client.get("/health", headers={"Origin": "http://example.test"})
    assert r.headers["access-control-allow-origin"] == "http://example.test"
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "http://evil.test"}).headers
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/search", "/recommend/{song_id}", "/recommend", "/songs/{song_id}", "/health"} <= set(schema["paths"])


def test_engine_dependency_can_be_overridden(root: Path) -> None:
    other = Engine.load(write_synthetic_version(root, n_songs=30, seed=9, set_as_current=False))
    app = create_app(Settings(artifacts=root))
    app.dependency_overrides[get_engine] = lambda: other
    with TestClient(app) as c:
        assert c.get("/health").json()["songs"] == 30
        # the plain GET /recommend (answered by a shortcut past FastAPI's parameters) follows the override too
        song = int(other.catalog.song_ids[0])
        _, expected = other.recommend(song)
        assert c.get(f"/recommend/{song}").json()["recommendations"] == expected


def test_refuses_to_start_without_artifacts(tmp_path: Path) -> None:
    app = create_app(Settings(artifacts=tmp_path / "nothing"))
    with pytest.raises(ArtifactError, match="does not exist"), TestClient(app):
        pass


def test_serving_never_imports_torch_or_gensim(root: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from app.main import create_app
        from app.settings import Settings
        with TestClient(create_app(Settings(artifacts={str(root)!r}))) as c:
            assert c.get("/recommend/1000?k=3").status_code == 200
            assert c.get("/search?q=love").status_code == 200
        bad = [m for m in ("torch", "gensim") if m in sys.modules]
        assert not bad, bad
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr


def test_answers_match_the_declared_models_exactly(client: TestClient, truth: dict) -> None:
    # The routes skip response_model re-validation for speed: check the shapes here instead, keys included.
    from app.schemas import Recommendation, RecommendResponse, SearchHit, SearchResponse, SeedsResponse

    sid = truth["ids"][3]
    for method in ("score_total", "each_top3", "music2vec", "tcae", "cel"):
        body = client.get(f"/recommend/{sid}", params={"method": method, "k": 5, "novelty": 0.5}).json()
        assert RecommendResponse.model_validate(body).model_dump(mode="json") == body
        assert all(set(it) == set(Recommendation.model_fields) for it in body["recommendations"])
    body = client.post("/recommend", json={"song_ids": [sid, truth["ids"][4]], "k": 5}).json()
    assert SeedsResponse.model_validate(body).model_dump(mode="json") == body
    title = client.get(f"/songs/{sid}").json()["title"]
    body = client.get("/search", params={"q": title, "limit": 5}).json()
    assert body["results"] and SearchResponse.model_validate(body).model_dump(mode="json") == body
    assert all(set(hit) == set(SearchHit.model_fields) for hit in body["results"])


def test_client_errors_are_422_and_internal_errors_a_logged_500(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(artifacts=root))
    with TestClient(app, raise_server_exceptions=False) as c:
        engine = app.state.engine
        song = int(engine.catalog.song_ids[0])

        def client_mistake(*args: Any, **kwargs: Any) -> NoReturn:
            raise ClientError("k: must be at least 1, got 0")

        monkeypatch.setattr(engine, "recommend", client_mistake)
        r = c.get(f"/recommend/{song}")
        assert r.status_code == 422 and r.json() == {"detail": "k: must be at least 1, got 0"}

        # A plain ValueError from inside the engine is a bug, not bad input: 500, and its trace in the log.
        def bug(*args: Any, **kwargs: Any) -> NoReturn:
            raise ValueError("operands could not be broadcast together")

        monkeypatch.setattr(engine, "recommend", bug)
        with caplog.at_level(logging.ERROR):
            r = c.get(f"/recommend/{song}")
        assert r.status_code == 500
        assert "broadcast" not in r.text
        traced = [rec for rec in caplog.records if rec.exc_info and isinstance(rec.exc_info[1], ValueError)]
        assert traced and f"/recommend/{song}" in traced[0].getMessage()
