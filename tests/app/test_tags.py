"""Playlist tags: learning them (training), the tags.npz format, GET /tags and GET /recommend/tag/{tag}."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import ranking
from app.engine import Engine
from app.main import create_app
from app.settings import Settings
from app.steering import Steering
from app.tags import TagIndex
from mugle_core.artifacts import ArtifactError, read_manifest, tags_file
from mugle_core.tagtable import TagTable, tag_key
from tests.fixtures.synthetic import CLUSTER_TAGS, GENRES, SHARED_TAG, read_truth, write_synthetic_version
from training.tags import build_tag_table


def test_build_tag_table_counts_threshold_spellings_and_vectors(tmp_path: Path) -> None:
    playlists = [[1, 2, 3], [2, 3], [3, 4], [5], [5, 6]]
    tags = [["드라이브", "밤"], ["드라이브 ", "여름"], ["DRIVE", "드라이브"], ["비"], ["비", "drive"]]
    vecs = np.eye(6, dtype=np.float32)
    ids = np.array([6, 5, 4, 3, 2, 1])  # unsorted on purpose: the builder must not rely on order
    table = build_tag_table(tags, playlists, {"m": (ids, vecs)}, min_playlists=2)
    # "밤" and "여름" are on one playlist each: left out; "DRIVE"/"drive" fold into one tag of two playlists
    assert table.names == ["드라이브", "DRIVE", "비"]
    assert table.playlists.tolist() == [3, 2, 2]
    lo, hi = table.song_offsets[0], table.song_offsets[1]
    assert table.song_ids[lo:hi].tolist() == [3, 2, 1, 4] and table.song_counts[lo:hi].tolist() == [3, 2, 1, 1]
    # the vector is the normalised mean of the distinct songs' vectors (songs 1..4 once each)
    expected = np.zeros(6)
    for s in (1, 2, 3, 4):
        expected[6 - s] = 1.0  # song s is row 6 - s of the unsorted input
    assert np.allclose(table.vectors["m"][0], expected / np.linalg.norm(expected))
    table.save(tmp_path / "t.npz")
    back = TagTable.load(tmp_path / "t.npz")
    assert back.names == table.names and np.array_equal(back.song_ids, table.song_ids)
    assert np.array_equal(back.vectors["m"], table.vectors["m"])
    assert tag_key(" Drive  ") == tag_key("drive")


def test_equally_counted_songs_come_more_popular_first() -> None:
    """The table orders a tag's equal counts by id; the served index by popularity, as the baseline does."""
    playlists = [[10, 11, 12, 13], [13, 12], [20, 21], [21, 20, 22]]
    table = build_tag_table([["a"], ["a"], ["b"], ["b"]], playlists, {}, min_playlists=2)
    song_ids = np.array([10, 11, 12, 13, 20, 21, 22])
    popularity = np.array([1, 9, 2, 3, 5, 1, 7])  # per catalog row
    plain = TagIndex(table, song_ids)
    assert song_ids[plain.counted(0)[0]].tolist() == [12, 13, 10, 11]  # counts 2, 2, 1, 1; ties by id
    index = TagIndex(table, song_ids, popularity)
    rows, counts = index.counted(0)
    assert song_ids[rows].tolist() == [13, 12, 11, 10] and counts.tolist() == [2, 2, 1, 1]
    rows, counts = index.counted(1)
    assert song_ids[rows].tolist() == [20, 21, 22] and counts.tolist() == [2, 2, 1]


def test_tag_table_refuses_a_damaged_file(tmp_path: Path) -> None:
    table = build_tag_table([["a"], ["a"]], [[1], [1, 2]], {"m": (np.array([1, 2]), np.eye(2, dtype=np.float32))},
                            min_playlists=1)
    table.playlists = np.array([2, 2], dtype=np.int32)  # one count too many for one name
    table.save(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="bad.npz"):
        TagTable.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        TagTable.load(tmp_path / "junk.npz")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tags")
    write_synthetic_version(root, n_songs=60, seed=2)
    return root


@pytest.fixture(scope="module")
def truth(root: Path) -> dict:
    return read_truth(root / "synthetic-2-60")


@pytest.fixture(scope="module")
def client(root: Path):
    with TestClient(create_app(Settings(artifacts=root))) as c:
        yield c


def test_manifest_lists_the_tags_file(root: Path) -> None:
    manifest = read_manifest(root / "synthetic-2-60")
    assert manifest.tags["files"] == [tags_file()] and manifest.tags["count"] == 7


def test_tags_search_fuzzy_and_initials(client: TestClient) -> None:
    body = client.get("/tags", params={"q": "드라"}).json()
    assert body["query"] == "드라" and body["results"][0] == {"tag": "드라이브", "playlists": 4}
    assert client.get("/tags", params={"q": "ㄷㄹㅇㅂ"}).json()["results"][0]["tag"] == "드라이브"
    assert client.get("/tags", params={"q": "ㅅ ㄴ ㄴ"}).json()["results"][0] == {"tag": SHARED_TAG, "playlists": 8}
    assert client.get("/tags", params={"q": "새벽"}).json()["results"][0]["tag"] == "새벽"
    assert client.get("/tags", params={"q": "zzqqxx"}).json()["results"] == []
    for bad in ({"q": ""}, {"q": "  "}, {"q": "a" * 201}, {"q": "a", "limit": 0}, {"q": "a", "limit": 51}):
        assert client.get("/tags", params=bad).status_code == 422


def test_recommend_tag_gives_the_tags_songs(client: TestClient, truth: dict) -> None:
    for c in range(truth["n_clusters"]):
        tag = CLUSTER_TAGS[c]
        for method in ("score_total", "each_top3", "music2vec", "cel"):
            body = client.get(f"/recommend/tag/{tag}", params={"method": method, "k": 5}).json()
            assert body["tag"] == tag and body["method"] == method
            recs = body["recommendations"]
            assert len(recs) == 5 and set(recs[0]["ranks"]) == set(ranking.SOURCES)
            hits = sum(truth["clusters"][str(r["song_id"])] == c for r in recs)
            assert hits >= 4, (tag, method, hits)
    # the shared tag draws from both of its clusters
    recs = client.get(f"/recommend/tag/{SHARED_TAG}", params={"k": 20}).json()["recommendations"]
    assert {truth["clusters"][str(r["song_id"])] for r in recs} >= {0, 3}
    # case and spacing of the tag do not matter; the answer names it as the catalog spells it
    assert client.get("/recommend/tag/ 드라이브 ").json()["tag"] == "드라이브"


def test_recommend_tag_unknown_and_bad_input(client: TestClient) -> None:
    r = client.get("/recommend/tag/없는태그")
    assert r.status_code == 404 and "없는태그" in r.json()["detail"]
    assert client.get("/recommend/tag/드라이브", params={"k": 0}).status_code == 422
    assert client.get("/recommend/tag/드라이브", params={"method": "best"}).status_code == 422
    assert client.get("/recommend/tag/드라이브", params={"novelty": 2}).status_code == 422
    assert client.get("/recommend/tag/" + "a" * 201).status_code == 422


def test_recommend_tag_with_steering(client: TestClient, truth: dict) -> None:
    genre = GENRES[1]  # cluster 1's genre, not the tag's (cluster 0)
    recs = client.get("/recommend/tag/드라이브", params={"genre": genre, "k": 6}).json()["recommendations"]
    assert len(recs) == 6 and all(genre in r["genres"] for r in recs)
    recs = client.get("/recommend/tag/드라이브", params={"year_from": 2010, "k": 5}).json()["recommendations"]
    assert recs and all(r["issue_date"] and int(r["issue_date"][:4]) >= 2010 for r in recs)
    plain = client.get("/recommend/tag/드라이브", params={"k": 10, "novelty": 1}).json()["recommendations"]
    varied = client.get("/recommend/tag/드라이브", params={"k": 10, "novelty": 1, "diversity": 1}).json()
    assert len(varied["recommendations"]) == 10
    assert [r["song_id"] for r in varied["recommendations"]] != [r["song_id"] for r in plain]


def test_tags_swap_with_the_version(tmp_path: Path) -> None:
    """Tags are part of a version: a version without them answers no tags, and swapping brings them."""
    bare = Engine.load(write_synthetic_version(tmp_path, n_songs=30, seed=5, tags=False, set_as_current=True))
    app = create_app(Settings(artifacts=tmp_path), engine=bare)
    with TestClient(app) as c:
        assert c.get("/tags", params={"q": "드라"}).json()["results"] == []
        assert c.get("/recommend/tag/드라이브").status_code == 404
        app.state.engine = Engine.load(write_synthetic_version(tmp_path, n_songs=30, seed=6, set_as_current=False))
        assert c.get("/tags", params={"q": "드라"}).json()["results"][0]["tag"] == "드라이브"
        assert c.get("/recommend/tag/드라이브").status_code == 200


def test_engine_refuses_a_missing_or_mismatched_tags_file(tmp_path: Path) -> None:
    vdir = write_synthetic_version(tmp_path, n_songs=30, seed=7)
    table = TagTable.load(vdir / tags_file())
    table.vectors["cel"] = np.zeros((len(table), 3), dtype=np.float32)
    table.save(vdir / tags_file())
    with pytest.raises(ArtifactError, match="vector_cel"):
        Engine.load(vdir)
    (vdir / tags_file()).unlink()
    with pytest.raises(ArtifactError, match="tags"):
        Engine.load(vdir)


def test_tag_lists_follow_the_counts(root: Path, truth: dict) -> None:
    """The counted list is the tag's songs by how many of its playlists hold them (the tag's own data)."""
    engine = Engine.load(root / "synthetic-2-60")
    i = engine.tags.find("이별")
    rows, counts = engine.tags.counted(i)
    ids = engine.catalog.song_ids[rows].tolist()
    assert ids and all(truth["clusters"][str(s)] == 1 for s in ids)
    assert counts.tolist() == sorted(counts.tolist(), reverse=True) and Counter(counts.tolist())[3] > 0
    _, items = engine.recommend_tag("이별", "score_total", 5, steer=Steering(negative_ids=(ids[0],)))
    assert ids[0] not in {it["song_id"] for it in items}
