"""The fused score_total lists: answers read from one row equal the per-request fusion's, byte for byte.

Two versions: the session's tiny trained version (the real pipeline: fitted weights, the co-occurrence
source, cold-start songs; its pools fit the stored width), and a synthetic one with planted clusters and
co-occurrence lists added, whose pools are longer than the width, so the novelty re-rank's check for songs
past the cut is exercised both ways.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson
import pytest

from app.engine import Engine
from app.fused import FusedLists
from mugle_core.artifacts import COOC, FUSED, MANIFEST, ArtifactError, knn_sims_file, ranks_file, read_manifest
from tests.fixtures.synthetic import read_truth, write_synthetic_version
from training.cooc import write_cooc
from training.fused import WIDTH, add_fused

faiss.omp_set_num_threads(1)

NOVELTIES = (0.0, 0.3, 1.0)


def _pair(version: Path) -> tuple[Engine, Engine]:
    """The same version loaded twice: answering from the fused lists, and fusing every request."""
    fast, slow = Engine.load(version), Engine.load(version)
    assert fast.fused is not None
    slow.fused = None
    return fast, slow


def _same(fast: Engine, slow: Engine, call: str, *args: Any, **kwargs: Any) -> None:
    a = getattr(fast, call)(*args, **kwargs)
    b = getattr(slow, call)(*args, **kwargs)
    assert orjson.dumps(a) == orjson.dumps(b), (call, args, kwargs)
    if call == "recommend":
        # The route's JSON spliced from kept Song JSON: the bytes orjson writes for the dict answer.
        spliced = fast.recommend_json(*args, **kwargs)
        method = kwargs.get("method", "score_total")
        if spliced is not None:
            assert spliced == orjson.dumps({"song": b[0], "method": method, "recommendations": b[1]}), (args, kwargs)


@pytest.fixture(scope="module")
def tiny(tiny_version: dict) -> tuple[Engine, Engine]:
    return _pair(tiny_version["version"])


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 songs in 6 clusters with co-occurrence lists: pools of about 100 songs, cut to the width 64."""
    vdir = write_synthetic_version(tmp_path_factory.mktemp("fused"), n_songs=300, seed=5, n_clusters=6)
    truth = read_truth(vdir)
    ids = truth["ids"]
    pop = np.load(vdir / "music2vec.ids.npy").tolist()  # the songs with playlist history
    rng = np.random.default_rng(0)
    playlists = [rng.choice([i for i in pop if truth["clusters"][str(i)] == c], 12, replace=False).tolist()
                 for c in range(truth["n_clusters"]) for _ in range(10)]
    assert set(i for p in playlists for i in p) <= set(ids)
    manifest = read_manifest(vdir)
    manifest.ranking = {COOC: write_cooc(vdir, playlists, k=64),
                        "fusion": {"weights": {"music2vec": 1.0, "cooc": 0.7, "cel": 0.2, "tcae": 0.1}},
                        "novelty": {"strength": 3.0, "head": 2}}
    (vdir / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    record = add_fused(vdir)
    assert record["lists"] == ["music2vec", "tcae", "cel", COOC] and record["pools_cut"] > 0
    return vdir


def test_trained_version_has_fused_lists(tiny_version: dict) -> None:
    record = read_manifest(tiny_version["version"]).ranking[FUSED]
    assert record["width"] == WIDTH and record["depth"] == 50
    assert record["files"] == ["fused.knn.npy", "fused.knn_sims.npy", "fused.ranks.npy"]
    assert COOC in record["lists"]


def test_every_song_every_k_matches_the_per_request_fusion(tiny: tuple[Engine, Engine]) -> None:
    fast, slow = tiny
    assert fast.fused is not None
    ids = fast.catalog.song_ids.tolist() + fast.catalog.alias_from.tolist()  # canonical and merged ids
    for sid in ids:
        row = fast.resolve(sid)
        assert row is not None
        for k in range(1, fast.fused.max_k + 1):
            for novelty in NOVELTIES:
                _same(fast, slow, "recommend", sid, k=k, novelty=novelty)
        # The fast path answered (the tiny version's pools fit the width, so even with novelty).
        assert fast._fused_items(row, "score_total", 10, 0.5, False, None) is not None
        assert fast.recommend_json(sid, k=10, novelty=0.5) is not None
    for sid in ids[:10]:
        _same(fast, slow, "recommend_seeds", [sid], k=10)
        _same(fast, slow, "recommend_seeds", [sid], k=7, novelty=0.5)


def test_long_pools_match_with_and_without_novelty(clustered: Path) -> None:
    fast, slow = _pair(clustered)
    assert fast.fused is not None and fast.novelty_head == 2
    served = fell_back = 0
    for sid in fast.catalog.song_ids.tolist():
        row = fast.resolve(sid)
        for k in (1, 2, 3, 10, 50):
            for novelty in NOVELTIES:
                _same(fast, slow, "recommend", sid, k=k, novelty=novelty)
                if novelty:
                    got = fast._fused_items(row, "score_total", k, novelty, False, None)
                    served += got is not None
                    fell_back += got is None
    assert served and fell_back  # both sides of the check past the cut were taken


@pytest.fixture(scope="module")
def capped(clustered: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clustered version with a novelty popularity cap fitted (the fused lists do not depend on it)."""
    vdir = tmp_path_factory.mktemp("capped") / clustered.name
    shutil.copytree(clustered, vdir)
    data = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
    data["ranking"]["novelty"]["cap_quantile"] = 0.6
    (vdir / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    return vdir


def test_capped_novelty_matches_and_puts_the_songs_under_the_cap_first(capped: Path) -> None:
    fast, slow = _pair(capped)
    assert fast.novelty_cap_quantile == 0.6 and fast.novelty_cap(0.0) is None
    pop = fast.catalog.popularity
    served = fell_back = reordered = 0
    for sid in fast.catalog.song_ids.tolist():
        row = fast.resolve(sid)
        for k in (1, 3, 10, 50):
            for novelty in NOVELTIES:
                _same(fast, slow, "recommend", sid, k=k, novelty=novelty)
                if not novelty:
                    continue
                got = fast._fused_items(row, "score_total", k, novelty, False, None)
                served += got is not None
                fell_back += got is None
        cap = fast.novelty_cap(0.5)
        assert cap is not None
        _, plain = slow.recommend(sid, k=50, novelty=0.0)
        _, items = slow.recommend(sid, k=50, novelty=0.5)
        tail = [pop[fast.resolve(it["song_id"])] > cap for it in items[fast.novelty_head:]]
        assert tail == sorted(tail)  # past the head: every song under the cap before every song over it
        reordered += [it["song_id"] for it in items] != [it["song_id"] for it in plain]
    assert served and fell_back and reordered


def test_other_requests_fall_back_and_match(clustered: Path) -> None:
    fast, slow = _pair(clustered)
    sid = int(fast.catalog.song_ids[7])
    for kwargs in ({"k": 51}, {"k": 100}, {"method": "music2vec"}, {"method": "each_top3"},
                   {"exclude_artist": True}):
        assert fast._fused_items(7, kwargs.get("method", "score_total"), kwargs.get("k", 10), 0.0,
                                 kwargs.get("exclude_artist", False), None) is None
        _same(fast, slow, "recommend", sid, **kwargs)
    seeds = fast.catalog.song_ids[[3, 9, 20]].tolist()
    _same(fast, slow, "recommend_seeds", seeds, k=10)


def test_stale_record_is_ignored(clustered: Path, tmp_path: Path) -> None:
    vdir = tmp_path / clustered.name
    shutil.copytree(clustered, vdir)
    data = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
    data["ranking"]["fusion"]["weights"]["cel"] = 0.9  # refitted weights, lists fused with the old ones
    (vdir / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    engine = Engine.load(vdir)
    assert engine.fused is None
    assert engine.recommend(int(engine.catalog.song_ids[0]))[1]


@pytest.mark.parametrize("broken", ["dtype", "missing"])
def test_malformed_fused_files_are_refused(clustered: Path, tmp_path: Path, broken: str) -> None:
    vdir = tmp_path / clustered.name
    shutil.copytree(clustered, vdir)
    if broken == "dtype":
        np.save(vdir / knn_sims_file(FUSED), np.load(vdir / knn_sims_file(FUSED)).astype(np.float32))
        with pytest.raises(ArtifactError, match="fused.knn_sims.npy: must be float64"):
            Engine.load(vdir)
    else:
        (vdir / ranks_file(FUSED)).unlink()
        with pytest.raises(ArtifactError, match="fused.ranks.npy: listed in manifest ranking.fused but missing"):
            Engine.load(vdir)


def test_record_must_match_the_served_fusion(clustered: Path) -> None:
    record = read_manifest(clustered).ranking[FUSED]
    lists = ["music2vec", "tcae", "cel", COOC]
    weights = record["weights"]
    assert FusedLists.load(clustered, record, 300, lists, weights) is not None
    assert FusedLists.load(clustered, record, 300, lists[:3], weights) is None
    assert FusedLists.load(clustered, {**record, "depth": 40}, 300, lists, weights) is None
    with pytest.raises(ArtifactError, match="fused.knn.npy: must be int32 of shape \\(299, W\\)"):
        FusedLists.load(clustered, record, 299, lists, weights)


def test_fused_with_the_fitted_rank_offset(clustered: Path, tmp_path: Path) -> None:
    vdir = tmp_path / clustered.name
    shutil.copytree(clustered, vdir)
    data = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
    data["ranking"]["fusion"]["offset"] = 60.0
    del data["ranking"][FUSED]
    (vdir / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    record = add_fused(vdir)
    assert record["offset"] == 60.0
    fast, slow = _pair(vdir)
    assert fast.fusion_offset == 60.0
    for sid in fast.catalog.song_ids[:40].tolist():
        for novelty in NOVELTIES:
            _same(fast, slow, "recommend", sid, k=10, novelty=novelty)
    # The stored pools differ from the 1/rank ones, and lists fused at another offset are not trusted.
    plain = Engine.load(clustered)
    assert any(fast.recommend(s)[1] != plain.recommend(s)[1] for s in fast.catalog.song_ids[:40].tolist())
    lists, weights = record["lists"], record["weights"]
    assert FusedLists.load(vdir, record, 300, lists, weights, 60.0) is not None
    assert FusedLists.load(vdir, record, 300, lists, weights, 0.0) is None
    assert FusedLists.load(clustered, read_manifest(clustered).ranking[FUSED], 300, lists, weights, 20.0) is None


def test_a_fitted_cold_start_fusion_with_the_popularity_list(clustered: Path, tmp_path: Path) -> None:
    """A version whose cold-start fusion weighs popularity: cold seeds get the popular songs, from the fused row
    and per request alike; warm seeds' answers do not change; filters apply to the popularity list too."""
    vdir = tmp_path / clustered.name
    shutil.copytree(clustered, vdir)
    data = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
    cold = {"weights": {"tcae": 0.1, "cel": 0.0, "popular": 1.0}, "offset": 20.0}
    data["ranking"]["cold"] = {**cold, "fitted": True}
    del data["ranking"][FUSED]
    (vdir / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    record = add_fused(vdir)
    assert record["cold"] == cold
    fast, slow = _pair(vdir)
    plain = Engine.load(clustered)
    truth = read_truth(vdir)
    cold_ids = truth["cold_start"]
    assert cold_ids
    by_popularity = np.argsort(-fast.catalog.popularity, kind="stable")
    for sid in fast.catalog.song_ids.tolist():
        for novelty in NOVELTIES:
            _same(fast, slow, "recommend", sid, k=10, novelty=novelty)
        if sid not in cold_ids and fast.query_vector("music2vec", sid) is not None:
            assert fast.recommend(sid)[1] == plain.recommend(sid)[1], sid  # warm: the popularity list never enters
    for sid in cold_ids:
        row = fast.resolve(sid)
        top = [it["song_id"] for it in fast.recommend(sid, k=10)[1]]
        # Weight 1 at offset 20 against tcae's 0.1: the popular songs lead, the audio list reorders neighbours
        # (a song tcae places first gains 0.1 / 21, which lifts the 15th most popular past the 10th at most).
        popular = [int(fast.catalog.song_ids[r]) for r in by_popularity[:16] if r != row][:15]
        assert len(top) == 10 and set(top) <= set(popular) and top[0] in popular[:2]
        assert top != [it["song_id"] for it in plain.recommend(sid, k=10)[1]]
        assert fast._fused_items(row, "score_total", 10, 0.0, False, None) is not None
        # Not the seed, and with exclude_artist not its artist's songs (the popularity list is cleaned too).
        artists = fast.artists(row)
        assert sid not in top
        for it in fast.recommend(sid, k=10, exclude_artist=True)[1]:
            assert not fast.artists(fast.resolve(it["song_id"])) & artists
    # Fused without the fitted cold-start fusion, the lists are not trusted for this version.
    lists, weights = record["lists"], record["weights"]
    assert FusedLists.load(vdir, record, 300, lists, weights, 0.0, fast.cold) is not None
    assert FusedLists.load(vdir, {k: v for k, v in record.items() if k != "cold"}, 300, lists, weights, 0.0,
                           fast.cold) is None
