"""Practitioners' item-to-item baselines over the training playlists, for the offline evaluation.

All three answer "songs for one seed song" from the binary playlist x song incidence matrix ``X``:

* :class:`ItemCooccurrence` — count of shared playlists (``X^T X``), ties to the more popular song;
* :class:`ItemKNN` — cosine of the songs' playlist columns, ``C[i, j] / sqrt(pop(i) pop(j))``;
* :class:`EASE` — Steck's "Embarrassingly Shallow Autoencoder" (WWW 2019): the closed form
  ``P = (X^T X + lambda I)^-1``, ``B = -P / diag(P)`` with a zero diagonal; a seed's scores are its row
  of ``B``. It needs a dense songs x songs inverse, so it runs only up to :data:`EASE_MAX_SONGS` songs
  (those with playlist history), and says so when skipped.

Every ranker returns catalog song ids, best first, without the seed; ties go to the more popular song,
then the lower id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from training import cooc

logger = logging.getLogger(__name__)

EASE_MAX_SONGS = 30_000
EASE_LAMBDAS: tuple[float, ...] = (10.0, 50.0, 200.0, 1000.0)


class _ItemRanker:
    """Shared set-up: the incidence matrix over the songs with history, and their popularity."""

    def __init__(self, playlists: Sequence[Sequence[int]]) -> None:
        self.ids = np.unique(np.fromiter((s for p in playlists for s in p), dtype=np.int64))
        self.x: sparse.csr_matrix = cooc.incidence(playlists, self.ids)
        self.xt = self.x.T.tocsr()
        self.pop = cooc.popularity(self.x)

    def _col(self, song: int) -> int | None:
        pos = int(np.searchsorted(self.ids, song))
        return pos if pos < len(self.ids) and self.ids[pos] == song else None

    def _rank(self, col: int, scores: np.ndarray, k: int) -> list[int]:
        """Top ``k`` song ids of a dense score row, the seed and non-positive scores left out."""
        scores = scores.astype(np.float64, copy=True)
        scores[col] = -np.inf
        cand = np.flatnonzero(scores > 0)
        if len(cand) > 4 * k:
            cand = cand[np.argpartition(-scores[cand], 4 * k)[: 4 * k]]
        order = cand[np.lexsort((cand, -self.pop[cand], -scores[cand]))]
        return self.ids[order[:k]].tolist()


class ItemCooccurrence(_ItemRanker):
    """Count of shared training playlists."""

    alpha = 0.0

    def __call__(self, song: int, k: int) -> list[int]:
        col = self._col(song)
        if col is None:
            return []
        counts = cooc.counts_for(self.x, self.xt, np.array([col]))
        found, _ = cooc.top_k(counts, np.array([col]), self.pop, k, self.alpha)
        return self.ids[found[0][found[0] >= 0]].tolist()


class ItemKNN(ItemCooccurrence):
    """Cosine similarity of binary playlist columns: per seed, ``C[i, j] / sqrt(pop(j))`` orders alike."""

    alpha = 0.5


class EASE(_ItemRanker):
    """The closed-form EASE item model at one regularisation ``lam``.

    Raises
    ------
    MemoryError
        Never on purpose: callers check :meth:`fits` first, which bounds the dense matrix.
    """

    def __init__(self, playlists: Sequence[Sequence[int]], lam: float = 200.0) -> None:
        super().__init__(playlists)
        started = time.perf_counter()
        n = len(self.ids)
        dtype = np.float64 if n <= 10_000 else np.float32
        g = (self.xt @ self.x).toarray().astype(dtype)
        g[np.diag_indices(n)] += lam
        p = np.linalg.inv(g)
        del g
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices(n)] = 0.0
        self.b = b
        self.lam = lam
        self.seconds = round(time.perf_counter() - started, 3)
        logger.info("EASE: %d songs, lambda %g in %.1f s", n, lam, self.seconds)

    @staticmethod
    def fits(playlists: Sequence[Sequence[int]], max_songs: int = EASE_MAX_SONGS) -> tuple[bool, int]:
        """Whether the dense model is small enough, and how many songs it would have."""
        n = len({s for p in playlists for s in p})
        return n <= max_songs, n

    def __call__(self, song: int, k: int) -> list[int]:
        col = self._col(song)
        if col is None:
            return []
        return self._rank(col, np.asarray(self.b[col]), k)
