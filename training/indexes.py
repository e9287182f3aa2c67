"""FAISS inner-product indexes over L2-normalised vectors, written in the layout of :mod:`mugle_core.artifacts`.

Below :data:`FLAT_THRESHOLD` rows the exact ``IndexFlatIP`` is used: a scan of that many 128-d vectors
stays in cache and takes well under a millisecond. Above it an HNSW graph over 8-bit scalar-quantised
vectors is built (``IndexHNSWSQ``: 128 bytes of codes per 128-d vector instead of 512, so three models of
707,989 songs take about 0.8 GB instead of 1.6 GB and the service stays under its 1.5 GB budget), and its
recall@10 against exact float search is measured on a sample of queries; ``efSearch`` (then ``M``) is
raised until the target recall is met, and the value reached is stored in the index file and the manifest.

Each model's neighbour lists (:func:`mugle_core.artifacts.knn_file`) are then precomputed with that same index,
so the service answers a catalog song by reading one row instead of searching three indexes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from mugle_core.artifacts import ModelEntry, ids_file, index_file, knn_file, knn_sims_file, query_file
from training.music2vec import l2_normalise

logger = logging.getLogger(__name__)

FLAT_THRESHOLD = 50_000
MIN_RECALL = 0.95
RECALL_K = 10
RECALL_SAMPLE = 1000
EF_SEARCH_STEPS: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
HNSW_M_STEPS: tuple[int, ...] = (32, 64)
# Width of the precomputed neighbour lists: the served depth (50) plus the query song, a few merged or
# excluded songs and slack; 64 int32 rows are 256 bytes, so a row never straddles a memory page.
NEIGHBOURS = 64
_KNN_BATCH = 8192


@dataclass
class IndexInfo:
    """How an index was built, for the manifest.

    Attributes
    ----------
    index_type : ``"flat"`` or ``"hnsw"`` (an HNSW graph over SQ8 codes).
    recall_at_10 : mean overlap of the top 10 with exact search on sampled queries (1.0 for flat).
    params : ``M``, ``efConstruction``, ``efSearch`` for HNSW; the sample size used for recall.
    build_s : seconds spent building and measuring.
    """

    index_type: str
    recall_at_10: float
    params: dict[str, Any] = field(default_factory=dict)
    build_s: float = 0.0


def _check_matrix(name: str, vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {vectors.shape}")
    if dim is not None and vectors.shape[1] != dim:
        raise ValueError(f"{name}: expected {dim} columns, got {vectors.shape[1]}")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return vectors


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = RECALL_K) -> float:
    """Mean fraction of each row's exact top ``k`` found in the approximate top ``k``."""
    if len(exact) == 0:
        return 1.0
    hits = 0
    for a, e in zip(approx[:, :k], exact[:, :k], strict=True):
        truth = set(int(x) for x in e if x >= 0)
        hits += len(truth.intersection(int(x) for x in a if x >= 0)) / max(1, len(truth))
    return hits / len(exact)


def build_index(
    vectors: np.ndarray,
    queries: np.ndarray | None = None,
    *,
    flat_threshold: int = FLAT_THRESHOLD,
    min_recall: float = MIN_RECALL,
    sample: int = RECALL_SAMPLE,
    seed: int = 0,
    m: int = HNSW_M_STEPS[0],
    ef_construction: int = 200,
) -> tuple[faiss.Index, IndexInfo]:
    """Build an inner-product index over ``vectors`` (rows must already be L2-normalised).

    Parameters
    ----------
    vectors : float32 (n, d), the index keys.
    queries : float32 (q, d) used to measure recall; defaults to the keys themselves. For Music2Vec
        pass the input vectors, which are what the service queries with.
    flat_threshold : below this many rows, build the exact ``IndexFlatIP``.
    min_recall : recall@10 an approximate index must reach.
    sample : how many queries recall is measured on.
    seed : chooses the sampled queries.
    m, ef_construction : initial HNSW graph parameters.

    Returns
    -------
    (index, info)

    Raises
    ------
    ValueError
        When the vectors are not a finite 2-D float array or the queries' width differs.
    """
    started = time.perf_counter()
    vectors = _check_matrix("vectors", vectors)
    n, dim = vectors.shape
    if n < flat_threshold:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, IndexInfo("flat", 1.0, {"rows": n}, round(time.perf_counter() - started, 3))

    queries = vectors if queries is None else _check_matrix("queries", queries, dim)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(queries), size=min(sample, len(queries)), replace=False))
    probe = np.ascontiguousarray(queries[picked])
    exact_index = faiss.IndexFlatIP(dim)
    exact_index.add(vectors)
    _, exact = exact_index.search(probe, RECALL_K)
    del exact_index

    m_steps = [m] + [s for s in HNSW_M_STEPS if s > m]
    recall = 0.0
    for m_now in m_steps:
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m_now, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.train(vectors)  # the quantiser's per-dimension ranges: one pass, no iterations
        index.add(vectors)
        for ef in EF_SEARCH_STEPS:
            index.hnsw.efSearch = ef
            _, approx = index.search(probe, RECALL_K)
            recall = recall_at_k(approx, exact)
            logger.debug("hnsw M=%d efSearch=%d recall@10=%.4f", m_now, ef, recall)
            if recall >= min_recall:
                params = {
                    "rows": n, "M": m_now, "efConstruction": ef_construction, "efSearch": ef, "codes": "SQ8",
                    "recall_queries": len(picked),
                }
                info = IndexInfo("hnsw", round(recall, 4), params, round(time.perf_counter() - started, 3))
                logger.info("index: hnsw over %d rows, M=%d efSearch=%d, recall@10=%.4f", n, m_now, ef, recall)
                return index, info
    # No graph setting reached the target: serve exact results rather than a worse index.
    logger.warning(
        "index: hnsw reached recall@10 %.4f < %.2f at M=%d efSearch=%d; falling back to exact search",
        recall, min_recall, m_steps[-1], EF_SEARCH_STEPS[-1],
    )
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    params = {"rows": n, "hnsw_recall_at_10": round(recall, 4)}
    return index, IndexInfo("flat", 1.0, params, round(time.perf_counter() - started, 3))


def neighbour_lists(
    index: faiss.Index, queries: np.ndarray, k: int = NEIGHBOURS, batch: int = _KNN_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Every query row's top ``k`` index rows and similarities, searched with ``index`` as built.

    Parameters
    ----------
    index : an inner-product index; an HNSW graph searches at ``max(efSearch, k)`` as the service does
        when it asks for more neighbours than ``efSearch``.
    queries : float32 (n, d) L2-normalised query vectors, row-aligned with the index's ids.
    k : list width.
    batch : queries per FAISS call (bounds the temporary memory).

    Returns
    -------
    rows, sims : int32 and float32 arrays of shape (n, min(k, ntotal)); -1 and 0 pad a short answer, and
        a query of norm 0 (no usable vector) gets a list of -1 only.
    """
    queries = _check_matrix("queries", queries, index.d)
    width = max(0, min(k, index.ntotal))
    rows = np.full((len(queries), width), -1, dtype=np.int32)
    sims = np.zeros((len(queries), width), dtype=np.float32)
    if width == 0 or len(queries) == 0:
        return rows, sims
    params = None
    if "HNSW" in type(index).__name__:
        params = faiss.SearchParametersHNSW(efSearch=max(index.hnsw.efSearch, width))
    usable = np.linalg.norm(queries, axis=1) > 0
    for start in range(0, len(queries), batch):
        stop = min(start + batch, len(queries))
        found_sims, found = index.search(queries[start:stop], width, params=params)
        found_sims[found < 0] = 0.0
        rows[start:stop] = found
        sims[start:stop] = found_sims
    rows[~usable] = -1
    sims[~usable] = 0.0
    return rows, sims


def write_neighbours(
    entry: ModelEntry, version_dir: Path, name: str, index: faiss.Index, queries: np.ndarray, k: int = NEIGHBOURS
) -> None:
    """Write ``<name>.knn.npy`` and ``<name>.knn_sims.npy`` and record them in the model's ``entry``."""
    started = time.perf_counter()
    rows, sims = neighbour_lists(index, queries, k)
    np.save(Path(version_dir) / knn_file(name), rows, allow_pickle=False)
    np.save(Path(version_dir) / knn_sims_file(name), sims, allow_pickle=False)
    entry.files += [knn_file(name), knn_sims_file(name)]
    entry.params["knn"] = int(rows.shape[1])
    entry.timings["knn_s"] = round(time.perf_counter() - started, 3)
    logger.info("index: %s neighbour lists, %d x %d in %.1f s", name, *rows.shape, entry.timings["knn_s"])


def write_model(
    version_dir: Path,
    name: str,
    ids: np.ndarray,
    query_vecs: np.ndarray,
    key_vecs: np.ndarray | None = None,
    *,
    flat_threshold: int = FLAT_THRESHOLD,
    min_recall: float = MIN_RECALL,
    seed: int = 0,
    neighbours: int = NEIGHBOURS,
) -> ModelEntry:
    """Write ``<name>.index``, ``<name>.ids.npy``, ``<name>.query.npy`` and the neighbour lists.

    Rows are sorted by ascending song id and vectors are L2-normalised here, so callers may pass them
    in any order. ``key_vecs`` defaults to ``query_vecs`` (TCAE and CEL have one vector per song).
    ``neighbours`` is the width of the precomputed lists (0 writes none).

    Returns
    -------
    ModelEntry
        count, dim, files, index type, recall@10 and the index parameters; the caller adds timings.

    Raises
    ------
    ValueError
        On mismatched row counts, duplicate ids, or non-finite vectors, naming the model.
    """
    version_dir = Path(version_dir)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    query = _check_matrix(f"{name} query vectors", query_vecs)
    key = query if key_vecs is None else _check_matrix(f"{name} key vectors", key_vecs, query.shape[1])
    if not (len(ids) == len(query) == len(key)):
        raise ValueError(f"{name}: {len(ids)} ids but {len(query)} query and {len(key)} key vectors")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if len(ids) > 1 and np.any(np.diff(ids) == 0):
        dup = int(ids[1:][np.diff(ids) == 0][0])
        raise ValueError(f"{name}: song id {dup} appears more than once")
    query = l2_normalise(query[order])
    key = query if key_vecs is None else l2_normalise(key[order])

    index, info = build_index(
        key, query, flat_threshold=flat_threshold, min_recall=min_recall, seed=seed,
    )
    faiss.write_index(index, str(version_dir / index_file(name)))
    np.save(version_dir / ids_file(name), ids, allow_pickle=False)
    np.save(version_dir / query_file(name), query, allow_pickle=False)
    entry = ModelEntry(
        count=int(len(ids)),
        dim=int(query.shape[1]),
        files=[index_file(name), ids_file(name), query_file(name)],
        index_type=info.index_type,
        recall_at_10=info.recall_at_10,
        timings={"index_s": info.build_s},
        params=dict(info.params),
    )
    if neighbours > 0:
        write_neighbours(entry, version_dir, name, index, query, neighbours)
    return entry
