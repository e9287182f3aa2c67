"""The co-occurrence candidate source as the service reads it: precomputed lists, one row per song.

Training writes, for every song in its training playlists, the songs that share the most playlists with
it (``training.cooc``; files named by :func:`mugle_core.artifacts.knn_file` for :data:`mugle_core.artifacts.COOC`).
A request reads the query song's row by a positioned read (:class:`app.rowfile.NpyRows`), as it reads the
models' neighbour lists; a seed set sums its seeds' rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app import ranking
from app.rowfile import NpyRows
from mugle_core.artifacts import COOC, ArtifactError, ids_file, knn_file, knn_sims_file

logger = logging.getLogger(__name__)


class CoocLists:
    """A version's co-occurrence lists, mapped to catalog rows."""

    def __init__(self, catalog_rows: np.ndarray, rows: NpyRows, scores: NpyRows, catalog_size: int) -> None:
        self.catalog_rows = catalog_rows  # list row -> catalog row
        self.rows = rows
        self.scores = scores
        self.row_of_catalog = np.full(catalog_size, -1, dtype=np.int64)
        self.row_of_catalog[catalog_rows] = np.arange(len(catalog_rows))

    @classmethod
    def load(cls, version_dir: Path, record: Mapping[str, Any], song_ids: np.ndarray) -> CoocLists:
        """Open the lists the manifest's ``ranking.cooc`` record names.

        Raises
        ------
        ArtifactError
            naming the file when a list is missing, malformed, or names songs the catalog lacks.
        """
        version_dir = Path(version_dir)
        paths = [version_dir / f(COOC) for f in (ids_file, knn_file, knn_sims_file)]
        for p in paths:
            if not p.is_file():
                raise ArtifactError(f"{p}: missing co-occurrence list file")
        try:
            ids = np.load(paths[0], allow_pickle=False)
            rows, scores = NpyRows(paths[1]), NpyRows(paths[2])
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{version_dir}: cannot read the co-occurrence lists ({exc})") from exc
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or (len(ids) and np.any(np.diff(ids) <= 0)):
            raise ArtifactError(f"{paths[0]}: must be strictly ascending 1-D integer song ids")
        if rows.dtype != np.int32 or rows.shape[0] != len(ids):
            raise ArtifactError(f"{paths[1]}: must be int32 of shape ({len(ids)}, K), got {rows.dtype} {rows.shape}")
        if scores.dtype != np.float32 or scores.shape != rows.shape:
            raise ArtifactError(f"{paths[2]}: must be float32 of shape {rows.shape}, got {scores.dtype} {scores.shape}")
        count = record.get("count")
        if count is not None and int(count) != len(ids):
            raise ArtifactError(f"{paths[0]}: {len(ids)} songs but manifest ranking.cooc.count says {count}")
        pos = np.searchsorted(song_ids, ids)
        ok = pos < len(song_ids)
        ok[ok] = song_ids[pos[ok]] == ids[ok]
        if not np.all(ok):
            raise ArtifactError(f"{paths[0]}: {int((~ok).sum())} ids are not canonical catalog songs")
        sample = np.asarray(rows[: min(len(ids), 256)])
        if sample.size and (sample.min() < -1 or sample.max() >= len(ids)):
            raise ArtifactError(f"{paths[1]}: rows must lie in [-1, {len(ids)})")
        return cls(pos.astype(np.int64), rows, scores, len(song_ids))

    def prefetch(self) -> None:
        self.rows.prefetch()
        self.scores.prefetch()

    def _row(self, catalog_row: int) -> tuple[np.ndarray, np.ndarray] | None:
        """One song's raw list as (catalog rows with -1 pads, scores); None when it has none."""
        r = int(self.row_of_catalog[catalog_row])
        if r < 0:
            return None
        found = self.rows[r]
        if len(found) and int(found.max()) >= len(self.catalog_rows):
            logger.error("cooc: row %d lists row %d of %d; ignoring it", r, int(found.max()), len(self.catalog_rows))
            return None
        mapped = np.where(found >= 0, self.catalog_rows[np.maximum(found, 0)], -1)
        return mapped, self.scores[r]

    def candidates(
        self,
        catalog_rows: Sequence[int],
        exclude: set[int],
        depth: int,
        keep: Callable[[int], bool] | None = None,
    ) -> tuple[list[int], list[float]] | None:
        """The candidate list of one song or of a seed set (the sum of the seeds' rows).

        Returns None when no seed has a list (no playlist history).
        """
        found = [x for x in (self._row(r) for r in catalog_rows) if x is not None]
        if not found:
            return None
        if len(found) == 1:
            return ranking.candidate_list(found[0][0], found[0][1], exclude, depth, keep)
        merged, scores = ranking.sum_lists([(m.tolist(), s.tolist()) for m, s in found], exclude, depth=len(
            self.catalog_rows))
        return ranking.candidate_list(np.asarray(merged, dtype=np.int64), np.asarray(scores), (), depth, keep)
