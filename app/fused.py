"""The fused ``score_total`` lists as the service reads them: a catalog song's whole answer in one row.

Training fuses every catalog song's ``score_total`` pool once (:mod:`training.fused`; files named by
:data:`mugle_core.artifacts.FUSED`). A request for a catalog song with default parameters (``score_total``,
``k`` up to the depth, no ``exclude_artist``, no steering) reads the song's row by positioned reads
(:class:`app.rowfile.NpyRows`) instead of reading and fusing four lists. The answer is the per-request
fusion's, to the byte: the rows were fused by the same functions, the scores are stored as the fusion summed
them, and the ranks each source gave are stored beside them.

With a novelty re-rank the stored pool (its best ``width`` songs) answers only when the songs cut off could
not have reached the answer: the re-rank only lowers scores (the multiplier is at most 1), so a song past
the cut scores at most the last stored song's fused score; when the answer's last re-ranked score is at
least that, no such song can enter it (on a tie the earlier song, a stored one, wins). Under a popularity cap
the answer's last song must also be under the cap (else the stored songs under it ran out). Otherwise the
request is fused per request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.rowfile import NpyRows
from mugle_core.artifacts import FUSED, ArtifactError, knn_file, knn_sims_file, ranks_file
from mugle_core.fusion import DEPTH, SOURCES, ColdFusion, Ranked, novelty_multiplier, novelty_rerank

logger = logging.getLogger(__name__)

# Distinct per-source rank combinations kept decoded (a few hundred bytes each).
_RANKS_KEPT = 100_000


class FusedLists:
    """A version's fused ``score_total`` pools, one row per catalog song."""

    def __init__(self, rows: NpyRows, scores: NpyRows, ranks: NpyRows, depth: int) -> None:
        self.rows = rows
        self.scores = scores
        self.ranks = ranks
        self.width = rows.shape[1]
        # The largest k a row answers: the pool was fused at this depth, and a deeper k fuses deeper lists.
        self.max_k = min(depth, self.width)
        self._ranks: dict[bytes, dict[str, int | None]] = {}
        self._ranks_json: dict[bytes, bytes] = {}

    @classmethod
    def load(
        cls,
        version_dir: Path,
        record: Mapping[str, Any],
        catalog_size: int,
        lists: list[str],
        weights: Mapping[str, float],
        offset: float = 0.0,
        cold: ColdFusion | None = None,
    ) -> FusedLists | None:
        """Open the files the manifest's ``ranking.fused`` record names.

        Returns None (the engine then fuses per request) when the record describes another fusion than the
        one this service runs: another depth, other sources, other lists, weights, rank offset or cold-start
        fusion than the version's (a record without an offset was fused at 0, one without ``cold`` with the
        constant audio fusion).

        Raises
        ------
        ArtifactError
            naming the file when one is missing, malformed, or not row-aligned with the catalog.
        """
        version_dir = Path(version_dir)
        differs = {
            "depth": (record.get("depth"), DEPTH),
            "sources": (record.get("sources"), list(SOURCES)),
            "lists": (record.get("lists"), lists),
            "weights": (record.get("weights"), dict(weights)),
            "offset": (record.get("offset", 0.0), offset),
            "cold": (record.get("cold", ColdFusion().as_record()), (cold or ColdFusion()).as_record()),
        }
        stale = [f"{k} {got!r} (served: {want!r})" for k, (got, want) in differs.items() if got != want]
        if stale:
            logger.warning("%s/manifest.json: ranking.fused was fused with other settings (%s); fusing per request",
                           version_dir, "; ".join(stale))
            return None
        paths = [version_dir / f(FUSED) for f in (knn_file, knn_sims_file, ranks_file)]
        for p in paths:
            if not p.is_file():
                raise ArtifactError(f"{p}: missing fused list file")
        try:
            rows, scores, ranks = (NpyRows(p) for p in paths)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{version_dir}: cannot read the fused lists ({exc})") from exc
        if rows.dtype != np.int32 or rows.shape[0] != catalog_size or rows.shape[1] < 1:
            raise ArtifactError(
                f"{paths[0]}: must be int32 of shape ({catalog_size}, W), got {rows.dtype} {rows.shape}"
            )
        if scores.dtype != np.float64 or scores.shape != rows.shape:
            raise ArtifactError(f"{paths[1]}: must be float64 of shape {rows.shape}, got {scores.dtype} {scores.shape}")
        want = (rows.shape[0], rows.shape[1] * len(SOURCES))
        if ranks.dtype != np.uint8 or ranks.shape != want:
            raise ArtifactError(f"{paths[2]}: must be uint8 of shape {want}, got {ranks.dtype} {ranks.shape}")
        if not all(f.dtype.isnative for f in (rows, scores, ranks)):
            raise ArtifactError(f"{version_dir}: the fused lists must be in this machine's byte order")
        sample = np.asarray(rows[: min(catalog_size, 256)])
        if sample.size and (sample.min() < -1 or sample.max() >= catalog_size):
            raise ArtifactError(f"{paths[0]}: rows must lie in [-1, {catalog_size})")
        return cls(rows, scores, ranks, int(record["depth"]))

    def prefetch(self) -> None:
        for rows in (self.rows, self.scores, self.ranks):
            rows.prefetch()

    def answer(
        self, row: int, k: int, novelty: float, popularity: np.ndarray, strength: float, head: int,
        cap: float | None = None,
    ) -> list[tuple[int, float, bytes]] | None:
        """The best ``k`` of catalog ``row``'s pool, re-ranked for ``novelty``: (row, score, ranks) each, the
        ranks as stored (one byte per source; :meth:`ranks_dict` and :meth:`ranks_json` decode them).

        None when the stored pool cannot answer exactly (a corrupt row, or a novelty re-rank that might
        reach past the stored songs); the caller then fuses per request.
        """
        # Plain bytes and memoryviews, not arrays: a dozen values are read, and numpy's per-call overhead
        # would be most of the cost. Without novelty only the first k entries matter.
        count = None if novelty else k
        found = memoryview(self.rows.raw(row, count)).cast("i").tolist()
        n = found.index(-1) if -1 in found else len(found)
        del found[n:]
        if n and (min(found) < 0 or max(found) >= len(self.rows)):
            logger.error("fused: row %d lists a row outside the catalog; fusing per request", row)
            return None
        scores = memoryview(self.scores.raw(row, n)).cast("d").tolist()
        ranked: Ranked = list(zip(found, scores, strict=True))
        if novelty:
            ranked = novelty_rerank(ranked, popularity, novelty, strength=strength, head=head, cap=cap)
            at = {r: i for i, r in enumerate(found)}
            if n == self.width:  # the pool may go on past the stored songs
                head = max(0, min(int(head), n))
                last = head + max(k - head, 1) - 1
                if last >= n:
                    return None
                # The re-ranked score of the answer's last song, before scores were made non-increasing.
                last_row = ranked[last][0]
                own = scores[at[last_row]] * float(novelty_multiplier(popularity[last_row], novelty, strength))
                # A song over the cap there means the stored songs under it ran out: one past the cut may
                # be under it, and would come first.
                if own < scores[-1] or (cap is not None and popularity[last_row] > cap):
                    return None
            ranked = ranked[:k]
            places = [at[r] for r, _ in ranked]
        else:
            ranked = ranked[:k]
            places = list(range(len(ranked)))
        width = len(SOURCES)
        ranks = self.ranks.raw(row, (max(places) + 1) * width if places else 0)
        return [(r, score, ranks[i * width : (i + 1) * width]) for (r, score), i in zip(ranked, places, strict=True)]

    def ranks_dict(self, given: bytes) -> dict[str, int | None]:
        """The ``ranks`` of one entry (a fresh dict): few distinct rank combinations recur, so they are kept."""
        known = self._ranks.get(given)
        if known is None:
            known = dict(zip(SOURCES, [v or None for v in given], strict=True))
            if len(self._ranks) < _RANKS_KEPT:
                self._ranks[given] = known
        return known.copy()

    def ranks_json(self, given: bytes) -> bytes:
        """The ``ranks`` of one entry as JSON (what orjson writes for :meth:`ranks_dict`'s dict)."""
        known = self._ranks_json.get(given)
        if known is None:
            known = orjson.dumps(dict(zip(SOURCES, [v or None for v in given], strict=True)))
            if len(self._ranks_json) < _RANKS_KEPT:
                self._ranks_json[given] = known
        return known
