"""The picture endpoints (mel thumbnails, neighbourhood maps, popularity stats) on a synthetic version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.routes.visual import local_pca, popularity_stats
from app.settings import Settings
from mugle_core.artifacts import EXTRAS_DIR
from mugle_core.catalog import Catalog
from mugle_core.pictures import mel_thumbnail, write_mel_thumbs
from tests.synthetic import read_truth, write_synthetic_version


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    vdir = write_synthetic_version(root, n_songs=60, seed=3)
    truth = read_truth(vdir)
    # Thumbnails for every song with audio except one, so both answers of /mel are reachable.
    ids = np.array([i for i in truth["ids"] if i != truth["no_vector"]][1:], dtype=np.int64)
    rng = np.random.default_rng(0)
    thumbs = np.stack([mel_thumbnail(rng.normal(size=(48, 300)) + (i % 7)) for i in range(len(ids))])
    write_mel_thumbs(vdir / EXTRAS_DIR, ids[::-1], thumbs[::-1])  # unsorted on purpose
    return vdir


@pytest.fixture(scope="module")
def client(version: Path) -> TestClient:
    with TestClient(create_app(Settings(artifacts=version.parent))) as c:
        yield c


def test_mel_thumbnail_shapes_and_scaling() -> None:
    ramp = np.tile(np.linspace(-80, 0, 1876), (48, 1))
    thumb = mel_thumbnail(ramp)
    assert thumb.shape == (48, 96) and thumb.dtype == np.uint8
    assert np.all(np.diff(thumb[0].astype(int)) >= 0), "louder later frames must not get darker"
    assert thumb[0, 0] == 0 and thumb[0, -1] == 255
    short = mel_thumbnail(np.arange(48 * 10, dtype=float).reshape(48, 10))
    assert short.shape == (48, 96)
    assert not mel_thumbnail(np.full((48, 50), 3.0)).any(), "a constant clip has no contrast"
    with pytest.raises(ValueError, match="2-D"):
        mel_thumbnail(np.zeros(10))


def test_local_pca_keeps_planar_geometry() -> None:
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(16, 2)))[0]  # an orthonormal 2-D plane in 16-D
    flat = rng.normal(size=(12, 2)) @ basis.T + 5.0
    coords, explained = local_pca(flat)
    d_in = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    d_out = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    assert np.allclose(d_in, d_out, atol=1e-9)
    assert sum(explained) == pytest.approx(1.0)
    again, _ = local_pca(flat[::-1])
    assert np.allclose(again[::-1], coords), "the same points must draw the same way"
    assert np.all(local_pca(np.ones((3, 4)))[0] == 0)
    assert local_pca(np.ones((1, 4)))[0].shape == (1, 2)


def test_popularity_stats_threshold() -> None:
    stats = popularity_stats(np.array([0, 0, 1, 2, 3, 5, 8, 40]))
    assert stats["gem_threshold"] == int(np.floor(np.percentile([0, 0, 1, 2, 3, 5, 8, 40], 25)))
    assert stats["popularity"]["median"] == 2.5
    assert popularity_stats(np.array([]))["gem_threshold"] is None


def test_stats_endpoint(client: TestClient, version: Path) -> None:
    body = client.get("/visual/stats").json()
    pop = Catalog.load(version / "catalog.npz").popularity
    assert body["songs"] == len(pop)
    assert body["gem_threshold"] == int(np.floor(np.percentile(pop, 25)))
    assert (pop <= body["gem_threshold"]).sum() >= len(pop) // 4


def test_mel_endpoint(client: TestClient, version: Path) -> None:
    ids = np.load(version / EXTRAS_DIR / "mel_thumbs_ids.npy")
    thumbs = np.load(version / EXTRAS_DIR / "mel_thumbs.npy")
    sid = int(ids[5])
    body = client.get(f"/songs/{sid}/mel").json()
    assert (body["song_id"], body["bands"], body["frames"]) == (sid, 48, 96)
    assert body["values"] == thumbs[5].reshape(-1).tolist()
    truth = read_truth(version)
    first = truth["ids"][0]  # deliberately left without a thumbnail
    r = client.get(f"/songs/{first}/mel")
    assert r.status_code == 404 and "no mel" in r.json()["detail"]
    assert client.get("/songs/7/mel").status_code == 404
    assert client.get("/songs/-1/mel").status_code in (404, 422)


def test_mel_without_thumbnails(tmp_path: Path) -> None:
    vdir = write_synthetic_version(tmp_path, n_songs=24, seed=1)
    sid = read_truth(vdir)["ids"][2]
    with TestClient(create_app(Settings(artifacts=tmp_path))) as c:
        r = c.get(f"/songs/{sid}/mel")
    assert r.status_code == 404
    assert "mel_thumbs" in r.json()["detail"]


def test_map_places_cluster_mates_nearby(client: TestClient, version: Path) -> None:
    truth = read_truth(version)
    clusters = {int(k): v for k, v in truth["clusters"].items()}
    sid = truth["ids"][8]
    body = client.get(f"/songs/{sid}/map", params={"model": "tcae", "k": 8}).json()
    pts = body["points"]
    assert len(pts) == 9 and pts[0]["self"] and pts[0]["song_id"] == sid
    assert not any(p["self"] for p in pts[1:])
    assert len({p["song_id"] for p in pts}) == 9
    sims = [p["similarity"] for p in pts[1:]]
    assert sims == sorted(sims, reverse=True)
    # tcae keys are its query vectors and the index is exact: the neighbours are the brute-force top 8
    ids = np.load(version / "tcae.ids.npy")
    q = np.load(version / "tcae.query.npy")
    me = int(np.searchsorted(ids, sid))
    order = [int(ids[i]) for i in np.argsort(-(q @ q[me]), kind="stable") if i != me][:8]
    assert [p["song_id"] for p in pts[1:]] == order
    same = sum(clusters[p["song_id"]] == clusters[sid] for p in pts[1:])
    assert same >= 3, f"planted cluster-mates should be over-represented, got {same}/8"
    assert 0 < sum(body["explained"]) <= 1.0 + 1e-6
    xs = [p["x"] for p in pts]
    assert max(xs) > min(xs), "points must spread out"


def test_map_errors_and_aliases(client: TestClient, version: Path) -> None:
    truth = read_truth(version)
    dup, canonical = next(iter(truth["duplicates"].items()))
    body = client.get(f"/songs/{dup}/map", params={"model": "cel"}).json()
    assert body["song_id"] == canonical and body["points"][0]["song_id"] == canonical
    cold = truth["cold_start"][0]
    r = client.get(f"/songs/{cold}/map", params={"model": "music2vec"})
    assert r.status_code == 404 and "music2vec" in r.json()["detail"]
    assert client.get(f"/songs/{cold}/map", params={"model": "tcae"}).status_code == 200
    assert client.get(f"/songs/{truth['no_vector']}/map").status_code == 404
    assert client.get("/songs/5/map").status_code == 404
    assert client.get(f"/songs/{canonical}/map", params={"model": "nope"}).status_code == 422
    assert client.get(f"/songs/{canonical}/map", params={"k": 0}).status_code == 422
    assert client.get(f"/songs/{canonical}/map", params={"k": 51}).status_code == 422
    assert client.get("/songs/abc/map").status_code in (404, 422)
