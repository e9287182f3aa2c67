"""``score_total`` fused once per song at training time: the list a request with default parameters reads.

A version's fusion weights are fixed when it is trained, and so is every candidate list a catalog song's
recommendation fuses (its precomputed neighbour lists in each model and its co-occurrence list). So the
pool that ``score_total`` builds per request from those four lists can be built here once per song, with
the very functions the service runs (:func:`mugle_core.fusion.candidate_list`, :func:`~mugle_core.fusion.fuse`,
:func:`~mugle_core.fusion.ranks_of`), and stored like a neighbour list (:data:`mugle_core.artifacts.FUSED`):

- ``fused.knn.npy`` int32 (songs, W): the pool's catalog rows, best first, -1 after its end;
- ``fused.knn_sims.npy`` float64 (songs, W): their scores, exactly as the per-request fusion sums them;
- ``fused.ranks.npy`` uint8 (songs, 4 W): each entry's rank in every source's candidate list (0: absent),
  which the answer reports.

Rows follow the catalog. The pool is cut to its best W songs; the service uses the row for ``k`` up to the
depth, and with a novelty re-rank only when the cut provably cannot change the answer
(:mod:`app.fused`). Every other request (another method, ``exclude_artist``, steering, a deeper ``k``)
is fused per request as before.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mugle_core.artifacts import (
    CATALOG,
    COOC,
    FUSED,
    MANIFEST,
    ModelEntry,
    ids_file,
    knn_file,
    knn_sims_file,
    ranks_file,
    read_manifest,
)
from mugle_core.fusion import (
    DEPTH,
    POPULAR,
    SOURCES,
    candidate_list,
    cold_fusion,
    fuse,
    fusion_offset,
    fusion_weights,
    is_cold,
    popular_candidates,
    popular_order,
    ranks_of,
)

logger = logging.getLogger(__name__)

# Stored pool width: the served depth plus room for the novelty re-rank to find its songs among the pool's
# next ones (the deeper the stored pool, the more novelty requests it can answer exactly).
WIDTH = 64
_RANK_MAX = 255  # ranks are stored as uint8; a candidate list is at most DEPTH long


class _Lists:
    """One source's stored lists, mapped to catalog rows (a model's neighbour lists, or the co-occurrence lists)."""

    def __init__(self, version_dir: Path, name: str, song_ids: np.ndarray, complete_at: int | None) -> None:
        ids = np.load(version_dir / ids_file(name), allow_pickle=False).astype(np.int64)
        self.catalog_rows = np.searchsorted(song_ids, ids)
        self.row_of = np.full(len(song_ids), -1, dtype=np.int64)
        self.row_of[self.catalog_rows] = np.arange(len(ids))
        self.knn = np.load(version_dir / knn_file(name), mmap_mode="r", allow_pickle=False)
        self.sims = np.load(version_dir / knn_sims_file(name), mmap_mode="r", allow_pickle=False)
        self.name = name
        # A model's list that holds every indexed song is complete even without a pad (the service's
        # ModelIndex.neighbours); the co-occurrence source never searches, so any list of it is final.
        self.complete_at = complete_at

    def candidates(self, row: int) -> list[int] | None:
        """The candidate list a request for catalog ``row`` builds from this source, as the service does."""
        r = int(self.row_of[row])
        if r < 0:
            return None
        found = np.asarray(self.knn[r])
        if len(found) and int(found.max()) >= len(self.catalog_rows):
            raise ValueError(f"{knn_file(self.name)}: row {r} lists row {int(found.max())} of {len(self.catalog_rows)}")
        mapped = np.where(found >= 0, self.catalog_rows[np.maximum(found, 0)], -1)
        rows, _ = candidate_list(mapped, np.asarray(self.sims[r]), {row}, DEPTH)
        padded = len(found) > 0 and int(found.min()) < 0
        if self.complete_at is not None and len(rows) < DEPTH and not padded and len(found) < self.complete_at:
            # The service would search the index here; the list alone cannot say what it finds.
            raise ValueError(f"{knn_file(self.name)}: row {r} runs out before depth {DEPTH}")
        return rows


def fused_lists(
    version_dir: Path,
    models: dict[str, ModelEntry],
    ranking_record: dict[str, Any],
    width: int = WIDTH,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every catalog song's ``score_total`` pool: (rows int32, scores float64, ranks uint8, pools cut to width).

    Reads the catalog, each model's ids and neighbour lists and the co-occurrence lists from ``version_dir``;
    ``models`` and ``ranking_record`` are the manifest's (model order and fitted weights as the service
    reads them).

    Raises
    ------
    ValueError
        naming the file when a model has no neighbour lists, or a list runs out where the service would search.
    """
    version_dir = Path(version_dir)
    with np.load(version_dir / CATALOG, allow_pickle=False) as data:
        song_ids = np.asarray(data["song_ids"], dtype=np.int64)
        popularity = np.asarray(data["popularity"])
    sources: list[_Lists] = []
    for name, entry in models.items():
        if knn_file(name) not in entry.files:
            raise ValueError(f"{version_dir / knn_file(name)}: model {name!r} has no neighbour lists to fuse")
        sources.append(_Lists(version_dir, name, song_ids, entry.count))
    if ranking_record.get(COOC):
        sources.append(_Lists(version_dir, COOC, song_ids, None))
    weights = fusion_weights(ranking_record)
    offset = fusion_offset(ranking_record)
    cold = cold_fusion(ranking_record)
    # A cold-start song's popularity list, as the service builds it (no filter: the first rows suffice).
    popular = popular_order(popularity, DEPTH + 1) if cold.popular else None
    n = len(song_ids)
    rows = np.full((n, width), -1, dtype=np.int32)
    scores = np.zeros((n, width), dtype=np.float64)
    ranks = np.zeros((n, width * len(SOURCES)), dtype=np.uint8)
    cut = 0
    from tqdm import tqdm

    for row in tqdm(range(n), desc="fused score_total lists", unit="song", disable=not progress, leave=False):
        lists: dict[str, list[int]] = {}
        for src in sources:
            found = src.candidates(row)
            if found is not None:
                lists[src.name] = found
        if popular is not None and is_cold(lists):
            lists[POPULAR] = popular_candidates(popular, popularity, {row}, DEPTH)[0]
        pool = fuse(lists, weights, offset, cold)
        if len(pool) > width:
            cut += 1
            pool = pool[:width]
        if not pool:
            continue
        pool_rows = [r for r, _ in pool]
        rows[row, : len(pool)] = pool_rows
        scores[row, : len(pool)] = [s for _, s in pool]
        of = ranks_of(pool_rows, lists, SOURCES)
        ranks[row, : len(pool) * len(SOURCES)] = [v or 0 for r in pool_rows for v in of[r].values()]
    return rows, scores, ranks, cut


def write_fused(
    version_dir: Path,
    models: dict[str, ModelEntry],
    ranking_record: dict[str, Any],
    width: int = WIDTH,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the three fused files into ``version_dir``; returns the manifest's ``ranking.fused`` record.

    The record names what the service checks before it trusts the files: the depth and sources the pools
    were fused with, the models and co-occurrence lists fused (``lists``), the weights and the rank offset.
    """
    if width < DEPTH:
        raise ValueError(f"fused width: must be at least the depth {DEPTH}, got {width}")
    assert DEPTH <= _RANK_MAX
    started = time.perf_counter()
    version_dir = Path(version_dir)
    rows, scores, ranks, cut = fused_lists(version_dir, models, ranking_record, width, progress)
    np.save(version_dir / knn_file(FUSED), rows, allow_pickle=False)
    np.save(version_dir / knn_sims_file(FUSED), scores, allow_pickle=False)
    np.save(version_dir / ranks_file(FUSED), ranks, allow_pickle=False)
    seconds = round(time.perf_counter() - started, 3)
    logger.info("fused: %d songs x %d in %.1f s (%d pools longer than the width)", len(rows), width, seconds, cut)
    return {
        "files": [knn_file(FUSED), knn_sims_file(FUSED), ranks_file(FUSED)],
        "width": width,
        "depth": DEPTH,
        "sources": list(SOURCES),
        "lists": [*models, *([COOC] if ranking_record.get(COOC) else [])],
        "weights": fusion_weights(ranking_record),
        "offset": fusion_offset(ranking_record),
        "cold": cold_fusion(ranking_record).as_record(),
        "songs": len(rows),
        "pools_cut": cut,
        "seconds": seconds,
    }


def add_fused(version_dir: Path, width: int = WIDTH, progress: bool = False) -> dict[str, Any]:
    """Fuse an existing version's lists and add them to its manifest (``ranking.fused``); returns the record.

    For versions written before the fused lists existed (or by a generator that does not write them). The
    manifest is replaced atomically; a server that has the version loaded keeps fusing per request until it
    loads it again.
    """
    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    record = write_fused(version_dir, manifest.models, manifest.ranking, width, progress)
    manifest.ranking[FUSED] = record
    tmp = version_dir / f".{MANIFEST}.tmp"
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, version_dir / MANIFEST)
    return record
