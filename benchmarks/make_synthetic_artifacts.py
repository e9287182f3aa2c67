"""Write a large synthetic artifacts version (catalog, three HNSW indexes, search index) for benchmarks.

Vectors are tight clusters (about 200 songs each; a song's noise is 0.75 of its cluster centre's norm,
so same-cluster cosine is about 0.64 and a song's true neighbours are its cluster mates, as with real
embeddings), titles are random Hangul/English words, popularity is heavy-tailed, 1% of songs have a
merged duplicate id and 10% have no Music2Vec vector (cold start). The point is scale, not realism: the
layout and sizes are those of a real 707,989-song version.

Approximate indexes are tuned like training tunes its own: the smallest ``nprobe`` (IVF) or ``efSearch``
(HNSW) whose recall@10 against exact search reaches 0.95 on 200 sampled queries (``--index training``
builds and tunes each index with training's own code instead) is stored in the index
and recorded in the manifest (``recall_at_10``, ``params``), so the service is timed at a setting that
keeps its answers right. Each model's neighbour lists are then precomputed with that tuned index, as
training does (``--no-knn`` leaves them out, to time the service searching the indexes instead), and
``score_total`` is fused once per song from them into the fused lists (:mod:`training.fused`), as training
does (``--no-fused`` leaves them out, to time the per-request fusion). ``--add-fused`` adds the fused lists
to a version written before they existed, without regenerating it.

Usage::

    python benchmarks/make_synthetic_artifacts.py --songs 707989 --out /tmp/mugle-bench [--dim 128]
    python benchmarks/make_synthetic_artifacts.py --add-fused /tmp/mugle-bench/<version>
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import faiss
import numpy as np

from mugle_core.artifacts import (
    CATALOG,
    MANIFEST,
    MODEL_NAMES,
    Manifest,
    ModelEntry,
    ids_file,
    index_file,
    model_files,
    now_iso,
    query_file,
    set_current,
    staging_version,
)
from mugle_core.catalog import Catalog
from mugle_core.searchindex import write_search_index
from training.fused import add_fused
from training.indexes import NEIGHBOURS, write_neighbours
from training.indexes import build_index as training_index

logger = logging.getLogger(__name__)

_SYLLABLES = [chr(c) for c in range(0xAC00, 0xD7A4, 37)]
_WORDS = ["love", "night", "blue", "dream", "star", "light", "home", "river", "fire", "rain", "you", "summer"]
_GENRES = ["발라드", "댄스", "랩/힙합", "R&B/Soul", "인디음악", "록/메탈", "트로트", "OST", "GN9000"]


def _titles(rng: np.random.Generator, n: int) -> list[str]:
    syl = np.array(_SYLLABLES)
    lengths = rng.integers(2, 7, n)
    korean = rng.random(n) < 0.6
    picks = rng.integers(0, len(syl), (n, 6))
    words = rng.integers(0, len(_WORDS), (n, 3))
    out = []
    for i in range(n):
        if korean[i]:
            out.append("".join(syl[picks[i, : lengths[i]]].tolist()))
        else:
            out.append(" ".join(_WORDS[w] for w in words[i, : 1 + lengths[i] % 3]))
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32, copy=False)


MIN_RECALL = 0.95
RECALL_QUERIES = 200
NOISE = 0.75  # norm of a song's offset from its cluster centre (the centre has norm 1)


def build_index(keys: np.ndarray, kind: str, m: int = 16, ef_construction: int = 40) -> faiss.Index:
    """An inner-product index over ``keys``.

    ``flat`` is exact; ``hnsw`` is an HNSW graph over 8-bit scalar-quantised vectors (slow to build: about a
    minute per 100k vectors on two cores); ``ivf`` is an inverted file of ``sqrt(n)``-ish lists over 8-bit
    codes, probed 16 lists deep (seconds to build, about 0.3 ms per query at 700k).
    """
    dim = keys.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = int(min(4096, max(64, 2 * np.sqrt(len(keys)))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.niter = 10  # k-means on clustered data settles fast; the default 25 costs minutes at 700k
        index.train(keys[np.random.default_rng(0).choice(len(keys), min(len(keys), 40 * nlist), replace=False)])
    else:
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.train(keys[: min(len(keys), 100_000)])
    index.add(keys)
    return index


def tune_index(index: faiss.Index, keys: np.ndarray, queries: np.ndarray, seed: int = 0) -> tuple[float, dict]:
    """Set the smallest ``nprobe``/``efSearch`` reaching :data:`MIN_RECALL` recall@10; returns (recall, params).

    Recall is measured against exact inner-product search over ``keys`` for a sample of ``queries``.
    """
    if isinstance(index, faiss.IndexFlat):
        return 1.0, {}
    rng = np.random.default_rng(seed)
    probe = np.ascontiguousarray(queries[rng.choice(len(queries), min(RECALL_QUERIES, len(queries)), replace=False)])
    _, exact = faiss.knn(probe, keys, 10, metric=faiss.METRIC_INNER_PRODUCT)
    hnsw = isinstance(index, faiss.IndexHNSW)
    recall = 0.0
    for value in (16, 32, 64, 128, 256, 512) if hnsw else (1, 2, 4, 8, 16, 32, 64, 128):
        if hnsw:
            index.hnsw.efSearch = value
        else:
            index.nprobe = value
        _, approx = index.search(probe, 10)
        pairs = zip(approx.tolist(), exact.tolist(), strict=True)
        recall = float(np.mean([len(set(a) & set(e)) / 10 for a, e in pairs]))
        logger.info("%s %s=%d recall@10=%.3f", type(index).__name__, "efSearch" if hnsw else "nprobe", value, recall)
        if recall >= MIN_RECALL:
            break
    return recall, {("efSearch" if hnsw else "nprobe"): value, "recall_queries": len(probe)}


def make_version(
    root: Path, n_songs: int, dim: int = 128, seed: int = 0, index: str = "auto", knn: int = NEIGHBOURS,
    fused: bool = True,
) -> Path:
    """Write one version under ``root`` and point ``current`` at it; returns the version folder."""
    rng = np.random.default_rng(seed)
    kind = index if index != "auto" else ("ivf" if n_songs > 50_000 else "flat")
    ids = np.arange(n_songs, dtype=np.int64)
    popularity = np.floor(rng.pareto(1.1, n_songs) * 3).astype(np.int32)
    titles = _titles(rng, n_songs)
    artist_of = rng.integers(0, max(1, n_songs // 8), n_songs)
    genre_of = rng.integers(0, len(_GENRES), n_songs)
    songs = [
        {
            "song_id": int(i),
            "title": titles[i],
            "artists": [f"가수 {artist_of[i]}"],
            "album": f"Album {artist_of[i]}",
            "genres": [_GENRES[genre_of[i]]],
            "issue_date": f"{1990 + i % 35}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "popularity": int(popularity[i]),
            "has_audio": True,
        }
        for i in range(n_songs)
    ]
    # Duplicates get ids beyond the canonical range so they stay unique.
    aliases = {int(i): int(i) for i in ids}
    for j, i in enumerate(rng.choice(n_songs, n_songs // 100, replace=False).tolist()):
        aliases[n_songs + j] = int(i)
    n_clusters = max(10, n_songs // 200)
    centers = _unit(rng.normal(size=(n_clusters, dim)).astype(np.float32))
    cluster = rng.integers(0, n_clusters, n_songs)
    with staging_version(root) as tmp:
        Catalog.save(tmp / CATALOG, songs, aliases)
        entries = {}
        for name in MODEL_NAMES:
            t0 = time.perf_counter()
            rows = ids[rng.random(n_songs) >= 0.1] if name == "music2vec" else ids
            scale = NOISE / np.sqrt(dim)  # per-dimension deviation giving an offset of norm ~NOISE
            query = _unit(centers[cluster[rows]] + scale * rng.normal(size=(len(rows), dim)).astype(np.float32))
            keys = query
            if name == "music2vec":
                keys = _unit(centers[cluster[rows]] + scale * rng.normal(size=(len(rows), dim)).astype(np.float32))
            if kind == "training":
                # Exactly what `mugle train` builds: exact below its threshold, HNSW over SQ8 codes above.
                built, info = training_index(keys, query, seed=seed)
                recall, params, index_type = info.recall_at_10, info.params, info.index_type
            else:
                built = build_index(keys, kind)
                recall, params = tune_index(built, keys, query, seed)
                index_type = kind
            faiss.write_index(built, str(tmp / index_file(name)))
            np.save(tmp / ids_file(name), rows)
            np.save(tmp / query_file(name), query)
            entries[name] = ModelEntry(
                count=len(rows),
                dim=dim,
                files=model_files(name),
                index_type=index_type,
                recall_at_10=round(recall, 4),
                params=params,
                timings={"index_s": round(time.perf_counter() - t0, 2)},
            )
            if knn:
                write_neighbours(entries[name], tmp, name, built, query, knn)
            logger.info("%s: %d vectors, %s index in %.1f s", name, len(rows), kind, time.perf_counter() - t0)
        manifest = Manifest(
            version=tmp.name.removeprefix(".tmp-"),
            created_at=now_iso(),
            dataset_fingerprint=f"synthetic-bench-{n_songs}-{seed}",
            songs=n_songs,
            models=entries,
            params={"synthetic": True},
        )
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        if knn and fused:
            add_fused(tmp, progress=True)
        write_search_index(tmp)
    version = manifest.version
    set_current(root, version)
    return root / version


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=10_000)
    parser.add_argument("--out", type=Path, help="artifacts folder (a new version is added)")
    parser.add_argument("--add-fused", type=Path, metavar="VERSION_DIR",
                        help="only add the fused score_total lists to this existing version")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw", "training"], default="auto",
                        help="training: the index `mugle train` builds (HNSW over SQ8 above 50,000 songs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-knn", action="store_true", help="write no precomputed neighbour lists")
    parser.add_argument("--no-fused", action="store_true", help="write no fused score_total lists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.add_fused is not None:
        start = time.perf_counter()
        add_fused(args.add_fused, progress=True)
        logger.info("added fused lists to %s in %.1f s", args.add_fused, time.perf_counter() - start)
        return
    if args.out is None:
        parser.error("--out is required (unless --add-fused)")
    faiss.omp_set_num_threads(args.threads)
    start = time.perf_counter()
    path = make_version(args.out, args.songs, args.dim, args.seed, args.index, 0 if args.no_knn else NEIGHBOURS,
                        fused=not args.no_fused)
    logger.info("wrote %s in %.1f s", path, time.perf_counter() - start)


if __name__ == "__main__":
    main()
