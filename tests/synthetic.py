"""Tiny but valid artifacts versions, written with the real layout, for tests of the app.

Vectors have planted structure so ranking tests can assert real behaviour: song ``i`` belongs to cluster
``i % n_clusters`` in every model, so its nearest neighbours are the other songs of its cluster. Each
cluster has two artists, alternating. Some ids are merged duplicates of a canonical song, some songs
have no playlist history (no ``music2vec`` vector: cold start, audio only), and one song has no vector
at all. The ground truth is written to ``extras/synthetic.json`` and returned by :func:`read_truth`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.artifacts import (
    CATALOG,
    EXTRAS_DIR,
    MANIFEST,
    MODEL_NAMES,
    Manifest,
    ModelEntry,
    ids_file,
    index_file,
    knn_file,
    knn_sims_file,
    model_files,
    now_iso,
    query_file,
    set_current,
    tags_file,
)
from app.catalog import Catalog

logger = logging.getLogger(__name__)

TRUTH = "synthetic.json"
GENRES = ["발라드", "댄스", "랩/힙합", "R&B/Soul", "인디음악", "록/메탈", "트로트", "GN9000"]
# The genre table's codes of those names; GN9000 is a code the table lacks, shown as itself.
GENRE_CODES = {"GN0100": "발라드", "GN0200": "댄스", "GN0300": "랩/힙합", "GN0400": "R&B/Soul",
               "GN0500": "인디음악", "GN0600": "록/메탈", "GN0700": "트로트"}
# Playlist tags, one per cluster, and one shared by clusters 0 and 3 (see write_synthetic_version).
CLUSTER_TAGS = ["드라이브", "이별", "새벽", "운동", "카페", "여름", "비오는날", "집중"]
SHARED_TAG = "신나는"
_WORDS_KO = ["사랑", "바람", "노래", "하늘", "우리", "그대", "시간", "기억", "여름", "겨울", "별빛", "눈물"]
_WORDS_EN = ["love", "night", "blue", "dream", "star", "light", "home", "river", "fire", "rain"]
# Fixed titles the search tests rely on; they take the first rows.
FIXED_TITLES = ["봄날", "벚꽃 엔딩", "Love Poem (feat. IU)", "Dynamite", "밤편지", "비 퐁 주", "좋은 날"]


def song_id_of(i: int) -> int:
    """Canonical id of synthetic song number ``i`` (not contiguous, to catch row/id mix-ups)."""
    return 1000 + 3 * i


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _build_index(keys: np.ndarray, index_type: str) -> Any:
    dim = keys.shape[1]
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    elif index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        raise ValueError(f"index_type: expected 'flat' or 'hnsw', got {index_type!r}")
    index.add(keys)
    return index


def _write_neighbours(vdir: Path, name: str, index: Any, query: np.ndarray, width: int) -> None:
    """Neighbour lists from one search per query, exactly as the service would search them.

    Training batches these searches, which for an exact index can round similarities differently in
    the last bit; one search per row keeps a test's answers with and without the lists identical.
    """
    width = min(width, index.ntotal)
    rows = np.full((len(query), width), -1, dtype=np.int32)
    sims = np.zeros((len(query), width), dtype=np.float32)
    for r in range(len(query)):
        found_sims, found = index.search(query[r : r + 1], width)
        rows[r], sims[r] = found[0], np.where(found[0] >= 0, found_sims[0], 0.0)
    np.save(vdir / knn_file(name), rows)
    np.save(vdir / knn_sims_file(name), sims)


def write_synthetic_version(
    root: Path,
    n_songs: int = 60,
    seed: int = 0,
    n_clusters: int = 6,
    dim: int = 16,
    version: str | None = None,
    index_type: str = "flat",
    set_as_current: bool = True,
    neighbours: int = 64,
    tags: bool = True,
) -> Path:
    """Write one complete artifacts version under ``root`` and (by default) point ``current`` at it.

    Parameters
    ----------
    root : artifacts folder (created when missing).
    n_songs : canonical songs in the catalog (at least 12).
    seed : random seed; the same arguments give the same files.
    n_clusters : planted clusters; song ``i`` is in cluster ``i % n_clusters``.
    dim : vector dimension of every model.
    version : folder name; defaults to ``synthetic-<seed>-<n_songs>``.
    index_type : ``flat`` (exact) or ``hnsw``.
    set_as_current : switch ``current`` to the new version.
    neighbours : width of the precomputed neighbour lists (0: none, so the engine searches the indexes).
    tags : write ``tags.npz``: per cluster c, playlists tagged ``CLUSTER_TAGS[c]`` holding that cluster's songs
        with playlist history (and ``SHARED_TAG`` on clusters 0 and 3), learned by the training code.

    Returns
    -------
    Path of the version folder.
    """
    if n_songs < 12:
        raise ValueError(f"n_songs: at least 12 needed for the planted structure, got {n_songs}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    version = version or f"synthetic-{seed}-{n_songs}"
    vdir = root / version
    (vdir / EXTRAS_DIR).mkdir(parents=True, exist_ok=True)
    (vdir / "models").mkdir(exist_ok=True)

    idx = np.arange(n_songs)
    ids = np.array([song_id_of(i) for i in idx], dtype=np.int64)
    clusters = idx % n_clusters
    # Popularity: heavy-tailed, with the last few songs never in a playlist (cold start).
    popularity = np.floor(rng.pareto(1.2, n_songs) * 5).astype(np.int64)
    n_cold = max(2, n_songs // 20)
    cold = idx[-n_cold:]
    popularity[cold] = 0
    no_vector = int(idx[-1])  # neither playlists nor audio
    songs: list[dict[str, Any]] = []
    for i in idx.tolist():
        if i < len(FIXED_TITLES):
            title = FIXED_TITLES[i]
        elif i % 2:
            title = " ".join(rng.choice(_WORDS_KO, 2).tolist()) + f" {i}"
        else:
            title = " ".join(rng.choice(_WORDS_EN, 2).tolist()) + f" {i}"
        c = int(clusters[i])
        songs.append(
            {
                "song_id": int(ids[i]),
                "title": title,
                "artists": [f"Artist {c}{'AB'[(i // n_clusters) % 2]}"],
                "album": f"Album {i // 4}" if i % 5 else "",
                "genres": [GENRES[c % len(GENRES)]],
                "issue_date": f"{2000 + i % 20}-{1 + i % 12:02d}-{1 + i % 28:02d}" if i % 7 else None,
                "popularity": int(popularity[i]),
                "has_audio": i != no_vector,
            }
        )
    # Merged duplicates: every 10th song has an extra original id that points to it.
    aliases = {int(s): int(s) for s in ids}
    duplicates: dict[int, int] = {}
    for i in range(3, n_songs, 10):
        dup = int(ids[i]) + 1  # ids step by 3, so +1 is free
        aliases[dup] = int(ids[i])
        duplicates[dup] = int(ids[i])
    Catalog.save(vdir / CATALOG, songs, aliases, genre_table=GENRE_CODES)

    centers = _unit(rng.normal(size=(n_clusters, dim)))
    entries: dict[str, ModelEntry] = {}
    for name in MODEL_NAMES:
        keep = idx != no_vector
        if name == "music2vec":
            keep &= popularity > 0  # no playlists, no Word2Vec vector
        rows = idx[keep]
        query = _unit(centers[clusters[rows]] + 0.2 * rng.normal(size=(len(rows), dim)))
        if name == "music2vec":
            keys = _unit(centers[clusters[rows]] + 0.2 * rng.normal(size=(len(rows), dim)))
        else:
            keys = query
        index = _build_index(keys, index_type)
        faiss.write_index(index, str(vdir / index_file(name)))
        np.save(vdir / ids_file(name), ids[rows])
        np.save(vdir / query_file(name), query)
        entries[name] = ModelEntry(count=len(rows), dim=dim, files=model_files(name), index_type=index_type)
        if neighbours:
            _write_neighbours(vdir, name, index, query, neighbours)
            entries[name].files += [knn_file(name), knn_sims_file(name)]
    tag_entry: dict[str, Any] = {}
    if tags:
        from training.tags import write_tags

        playlist_tags: list[list[str]] = []
        playlists: list[list[int]] = []
        for c in range(n_clusters):
            members = [int(ids[i]) for i in idx if clusters[i] == c and popularity[i] > 0]
            for j in range(4):  # four playlists per cluster, each without one of the members
                playlists.append([m for t, m in enumerate(members) if t % 4 != j] or members)
                playlist_tags.append([CLUSTER_TAGS[c % len(CLUSTER_TAGS)]] + ([SHARED_TAG] if c in (0, 3) else []))
        vectors = {name: (np.load(vdir / ids_file(name)), np.load(vdir / query_file(name))) for name in MODEL_NAMES}
        tag_entry = write_tags(vdir, playlist_tags, playlists, vectors, min_playlists=2)
        assert tag_entry["files"] == [tags_file()]
    manifest = Manifest(
        version=version,
        created_at=now_iso(),
        dataset_fingerprint=f"synthetic-{seed}-{n_songs}",
        songs=n_songs,
        models=entries,
        params={"synthetic": True, "n_clusters": n_clusters},
        tags=tag_entry,
    )
    (vdir / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    truth = {
        "ids": ids.tolist(),
        "clusters": {str(int(ids[i])): int(clusters[i]) for i in idx},
        "duplicates": {str(k): v for k, v in duplicates.items()},
        "cold_start": [int(ids[i]) for i in cold if i != no_vector],
        "no_vector": int(ids[no_vector]),
        "n_clusters": n_clusters,
    }
    (vdir / EXTRAS_DIR / TRUTH).write_text(json.dumps(truth), encoding="utf-8")
    if set_as_current:
        set_current(root, version)
    return vdir


def read_truth(version_dir: Path) -> dict[str, Any]:
    """The planted structure of a synthetic version (ids, clusters, duplicates, cold-start songs)."""
    return json.loads((Path(version_dir) / EXTRAS_DIR / TRUTH).read_text(encoding="utf-8"))
