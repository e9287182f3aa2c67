"""Co-occurrence lists: for every song, the songs that share the most training playlists with it.

The fourth candidate source of ``score_total`` (:data:`app.artifacts.COOC`). From the binary playlist x
song incidence matrix ``X`` the co-occurrence counts are ``C = X^T X``; a candidate ``j`` of song ``i``
scores ``C[i, j] / pop(j) ** alpha``, where ``pop`` counts training playlists. ``alpha`` = 0 is the plain
count ("listened together most often", which favours hits), 0.5 ranks like the cosine of the two
songs' playlist vectors (item-kNN), 1 like the share of ``j``'s playlists that also hold ``i``. It is
fitted per catalog on a validation split (:mod:`training.fitting`). Ties go to the more popular song,
then the lower id, as the evaluation's counting baseline breaks them.

``C`` is never materialised whole: at real size (707,989 songs, 148,826 playlists of about 46 songs)
it has hundreds of millions of non-zeros. Rows are computed in blocks sized by an upper bound of their
non-zeros (the summed length of a song's playlists), each block is cut to its top ``k`` per row, and
only those lists are kept: ``(songs, k)`` int32 and float32, like the models' neighbour lists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from mugle_core.artifacts import COOC, ids_file, knn_file, knn_sims_file

logger = logging.getLogger(__name__)

# Width of the stored lists: the served depth (50) plus the query's duplicates and a few exclusions.
WIDTH = 64
# Upper bound of co-occurrence non-zeros handled at once (about 24 bytes each while ranking a block).
BLOCK_NNZ = 8_000_000


def incidence(playlists: Iterable[Sequence[int]], ids: np.ndarray) -> sparse.csr_matrix:
    """Binary playlist x song matrix over the columns ``ids`` (ascending song ids).

    Songs not in ``ids`` are ignored; a song repeated inside one playlist counts once.
    """
    ids = np.asarray(ids, dtype=np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    n = 0
    for i, seq in enumerate(playlists):
        arr = np.asarray(seq, dtype=np.int64)
        pos = np.searchsorted(ids, arr)
        ok = pos < len(ids)
        ok[ok] = ids[pos[ok]] == arr[ok]
        cols.append(pos[ok])
        rows.append(np.full(int(ok.sum()), i, dtype=np.int64))
        n = i + 1
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    x = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, len(ids)))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def popularity(x: sparse.csr_matrix) -> np.ndarray:
    """Playlists per column of an incidence matrix (int64)."""
    return np.bincount(x.indices, minlength=x.shape[1]).astype(np.int64)


def counts_for(x: sparse.csr_matrix, xt: sparse.csr_matrix, rows: np.ndarray) -> sparse.csr_matrix:
    """Co-occurrence counts of the songs ``rows`` with every song: ``X^T[rows] X`` (self included)."""
    return (xt[np.asarray(rows, dtype=np.int64)] @ x).tocsr()


def top_k(
    counts: sparse.csr_matrix, rows: np.ndarray, pop: np.ndarray, k: int, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``k`` columns by ``count / pop ** alpha``, itself excluded.

    Parameters
    ----------
    counts : co-occurrence counts, one row per entry of ``rows``.
    rows : the song (column) each row of ``counts`` belongs to, so the song itself can be dropped.
    pop : playlists per song; candidates are scored ``count / pop ** alpha``.
    k : list width.
    alpha : popularity exponent.

    Returns
    -------
    cols, scores : int32 and float32 ``(len(rows), k)``, best first, padded with -1 and 0.
    """
    counts = counts.tocsr()
    counts.sort_indices()
    n = counts.shape[0]
    cols = np.full((n, k), -1, dtype=np.int32)
    scores = np.zeros((n, k), dtype=np.float32)
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(counts.indptr))
    idx = counts.indices.astype(np.int64)
    keep = (idx != np.asarray(rows, dtype=np.int64)[owner]) & (counts.data > 0)
    owner, idx, data = owner[keep], idx[keep], counts.data[keep].astype(np.float64)
    if len(idx) == 0:
        return cols, scores
    score = data / np.power(np.maximum(pop[idx], 1).astype(np.float64), alpha) if alpha else data
    # Best score first; then the more popular song; then the lower id (columns are in id order).
    order = np.lexsort((idx, -pop[idx], -score, owner))
    owner, idx, score = owner[order], idx[order], score[order]
    start = np.searchsorted(owner, np.arange(n))
    pos = np.arange(len(owner)) - start[owner]
    sel = pos < k
    cols[owner[sel], pos[sel]] = idx[sel]
    scores[owner[sel], pos[sel]] = score[sel]
    return cols, scores


def cooc_lists(
    x: sparse.csr_matrix,
    k: int = WIDTH,
    alpha: float = 0.0,
    *,
    block_nnz: int = BLOCK_NNZ,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every song's top ``k`` co-occurring songs, computed block by block.

    Parameters
    ----------
    x : binary playlist x song incidence (:func:`incidence`).
    k : list width.
    alpha : popularity exponent of the score (see the module docstring).
    block_nnz : upper bound of co-occurrence non-zeros per block (bounds the memory).
    progress : show a progress bar.

    Returns
    -------
    cols, scores, stats : int32/float32 ``(songs, k)`` lists (columns of ``x``) and what it cost.
    """
    started = time.perf_counter()
    x = x.tocsr().astype(np.float32)
    n = x.shape[1]
    pop = popularity(x)
    xt = x.T.tocsr()
    lengths = np.diff(x.indptr).astype(np.int64)
    # Row i of C has at most sum of the lengths of i's playlists non-zeros.
    bound = np.asarray(xt @ lengths.astype(np.float64)).ravel()
    cols = np.full((n, k), -1, dtype=np.int32)
    scores = np.zeros((n, k), dtype=np.float32)
    cum = np.cumsum(bound)
    edges = [0]
    while edges[-1] < n:
        base = cum[edges[-1] - 1] if edges[-1] else 0.0
        stop = int(np.searchsorted(cum, base + block_nnz, side="right"))
        edges.append(min(n, max(stop, edges[-1] + 1)))
    bar = _bar(progress, n)
    nnz = 0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        rows = np.arange(a, b)
        block = counts_for(x, xt, rows)
        nnz += block.nnz
        cols[a:b], scores[a:b] = top_k(block, rows, pop, k, alpha)
        bar.update(b - a)
    bar.close()
    stats = {
        "songs": int(n), "playlists": int(x.shape[0]), "entries": int(x.nnz), "width": int(k), "alpha": float(alpha),
        "cooc_nnz": int(nnz), "blocks": len(edges) - 1, "seconds": round(time.perf_counter() - started, 3),
    }
    return cols, scores, stats


def write_cooc(
    version_dir: Path,
    playlists: Sequence[Sequence[int]],
    *,
    k: int = WIDTH,
    alpha: float = 0.0,
    progress: bool = False,
) -> dict[str, Any]:
    """Write ``cooc.ids.npy``, ``cooc.knn.npy`` and ``cooc.knn_sims.npy``; returns the manifest record.

    Rows are the songs that occur in ``playlists`` (ascending ids); list entries are rows of that same
    id array, as in a model's neighbour lists.
    """
    started = time.perf_counter()
    ids = np.unique(np.fromiter((s for p in playlists for s in p), dtype=np.int64))
    x = incidence(playlists, ids)
    cols, scores, stats = cooc_lists(x, k, alpha, progress=progress)
    version_dir = Path(version_dir)
    np.save(version_dir / ids_file(COOC), ids, allow_pickle=False)
    np.save(version_dir / knn_file(COOC), cols, allow_pickle=False)
    np.save(version_dir / knn_sims_file(COOC), scores, allow_pickle=False)
    stats["seconds"] = round(time.perf_counter() - started, 3)
    logger.info("cooc: %d songs x %d in %.1f s (alpha %.2f, %d co-occurrence non-zeros)",
                len(ids), k, stats["seconds"], alpha, stats["cooc_nnz"])
    return {
        "files": [ids_file(COOC), knn_file(COOC), knn_sims_file(COOC)],
        "count": int(len(ids)),
        "score": "shared training playlists / popularity(candidate) ** alpha",
        **stats,
    }


def _bar(progress: bool, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="co-occurrence lists", unit="song", disable=not progress, leave=False)
