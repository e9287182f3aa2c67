"""Learn the playlist tags of a version (``tags.npz``, see :mod:`app.tagtable`) from the training playlists.

Per tag carried by at least ``min_playlists`` training playlists (:data:`app.tagtable.MIN_PLAYLISTS` by
default): its songs counted over its playlists, and per model a query vector, the normalised mean of the
vectors of the distinct songs its playlists hold. How these were chosen over the alternatives (counts
smoothed by popularity, count-weighted means) is measured in ``docs/notes/steering.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mugle_core.artifacts import tags_file
from mugle_core.tagtable import MIN_PLAYLISTS, TOP_SONGS, TagTable, tag_key

logger = logging.getLogger(__name__)


def build_tag_table(
    playlist_tags: Sequence[Sequence[str]],
    playlists: Sequence[Sequence[int]],
    vectors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    min_playlists: int = MIN_PLAYLISTS,
    top_songs: int = TOP_SONGS,
) -> TagTable:
    """Learn the tag table from training playlists (pure numpy; :mod:`training.tags` calls it).

    Parameters
    ----------
    playlist_tags : the tags of each training playlist, as the dataset spells them.
    playlists : the canonical song ids of each training playlist (aligned with ``playlist_tags``).
    vectors : model name -> (song ids ascending, query vectors row-aligned) of that model.
    min_playlists : tags on fewer training playlists are left out.
    top_songs : counted songs kept per tag.
    """
    if len(playlist_tags) != len(playlists):
        raise ValueError(f"playlist_tags has {len(playlist_tags)} entries, playlists {len(playlists)}")
    spellings: dict[str, dict[str, int]] = {}
    members: dict[str, list[int]] = {}
    for i, tags in enumerate(playlist_tags):
        seen: set[str] = set()
        for raw in tags:
            key = tag_key(raw)
            if not key or key in seen:
                continue
            seen.add(key)
            shown = " ".join(str(raw).split())
            spelled = spellings.setdefault(key, {})
            spelled[shown] = spelled.get(shown, 0) + 1
            members.setdefault(key, []).append(i)
    keys = [k for k, pls in members.items() if len(pls) >= min_playlists]
    # Most playlists first, then by name, so the file is the same for the same data.
    keys.sort(key=lambda k: (-len(members[k]), k))
    # The most frequent spelling names the tag; on a tie the first one met (max keeps the first maximum).
    names = [max(spellings[k].items(), key=lambda kv: kv[1])[0] for k in keys]
    offsets = [0]
    ids_out: list[np.ndarray] = []
    counts_out: list[np.ndarray] = []
    distinct: list[np.ndarray] = []
    for k in keys:
        flat = np.concatenate([np.asarray(playlists[p], dtype=np.int64) for p in members[k]] or [np.zeros(0, np.int64)])
        songs, counts = np.unique(flat, return_counts=True)
        distinct.append(songs)
        order = np.lexsort((songs, -counts))[:top_songs]
        ids_out.append(songs[order])
        counts_out.append(counts[order].astype(np.int32))
        offsets.append(offsets[-1] + len(order))
    vecs_out: dict[str, np.ndarray] = {}
    for model, (ids, vecs) in vectors.items():
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and np.any(np.diff(ids) <= 0):
            by_id = np.argsort(ids, kind="stable")
            ids, vecs = ids[by_id], np.asarray(vecs)[by_id]
        out = np.zeros((len(keys), vecs.shape[1]), dtype=np.float32)
        for t, songs in enumerate(distinct):
            pos = np.searchsorted(ids, songs)
            ok = pos < len(ids)
            ok[ok] = ids[pos[ok]] == songs[ok]
            if not ok.any():
                continue
            # Each distinct song once: measured on held-out playlists, weighting by counts let the tag's
            # hits crowd the mean and lowered the hit rate (docs/notes/steering.md).
            mean = np.asarray(vecs[pos[ok]], dtype=np.float64).mean(axis=0)
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                out[t] = (mean / norm).astype(np.float32)
        vecs_out[model] = out
    return TagTable(
        names=names,
        playlists=np.array([len(members[k]) for k in keys], dtype=np.int32),
        song_offsets=np.array(offsets, dtype=np.int64),
        song_ids=np.concatenate(ids_out) if ids_out else np.zeros(0, dtype=np.int64),
        song_counts=np.concatenate(counts_out) if counts_out else np.zeros(0, dtype=np.int32),
        vectors=vecs_out,
    )


def write_tags(
    version_dir: Path,
    playlist_tags: Sequence[Sequence[str]],
    playlists: Sequence[Sequence[int]],
    vectors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    min_playlists: int = MIN_PLAYLISTS,
) -> dict[str, Any]:
    """Learn and write ``tags.npz`` into a version folder; returns the manifest's ``tags`` entry."""
    table = build_tag_table(playlist_tags, playlists, vectors, min_playlists=min_playlists)
    table.save(Path(version_dir) / tags_file())
    carried = sum(1 for tags in playlist_tags if tags)
    logger.info("tags: %d tags on >= %d training playlists (of %d playlists, %d with tags)",
                len(table), min_playlists, len(playlists), carried)
    return {
        "files": [tags_file()],
        "count": len(table),
        "min_playlists": min_playlists,
        "playlists_with_tags": carried,
        "models": sorted(table.vectors),
    }
