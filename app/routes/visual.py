"""Pictures for the web page: mel thumbnails, 2-D neighbourhood maps and popularity facts.

- ``GET /songs/{id}/mel``: the song's mel-spectrogram as a small uint8 image,
  ``{"song_id", "bands", "frames", "values"}`` with ``values`` row-major over (bands, frames) and band 0
  the lowest. The thumbnails are precomputed at training time (:mod:`mugle_core.pictures`). Without
  them the answer is 404 and the page leaves the picture out.
- ``GET /songs/{id}/map?model=cel&k=15``: the song and its ``k`` nearest neighbours in one model's space,
  projected to 2-D by a PCA of just those vectors. A local PCA per request costs well under a
  millisecond for 16 x 128 values and shows the neighbourhood's own main directions, which a global
  projection precomputed over the whole catalog would flatten.
- ``GET /visual/stats``: popularity quantiles of the catalog and the "hidden gem" threshold the page
  marks songs with (popularity at or below the catalog's 25th percentile).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam

from app.deps import EngineDep
from app.engine import Engine
from app.schemas import ErrorDetail
from mugle_core.artifacts import EXTRAS_DIR
from mugle_core.pictures import MEL_THUMBS, MEL_THUMBS_IDS

logger = logging.getLogger(__name__)

router = APIRouter(tags=["visual"])

GEM_PERCENTILE = 25.0
MAX_MAP_K = 50

SongId = Annotated[int, PathParam(ge=0, le=2**62, description="any id of the song (merged duplicates resolve)")]
ModelName = Literal["music2vec", "tcae", "cel"]


# -- per-version caches -------------------------------------------------------------------------------

_lock = threading.Lock()
_thumbs: dict[Path, tuple[np.ndarray, np.ndarray] | None] = {}
_stats: dict[Path, dict[str, Any]] = {}


def _load_thumbs(version_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, thumbs) of a version, memory-mapped; None when absent or unreadable (logged once)."""
    with _lock:
        if version_dir in _thumbs:
            return _thumbs[version_dir]
    extras = version_dir / EXTRAS_DIR
    result: tuple[np.ndarray, np.ndarray] | None = None
    if (extras / MEL_THUMBS).is_file() and (extras / MEL_THUMBS_IDS).is_file():
        try:
            ids = np.load(extras / MEL_THUMBS_IDS, allow_pickle=False)
            thumbs = np.load(extras / MEL_THUMBS, allow_pickle=False, mmap_mode="r")
            if thumbs.ndim != 3 or thumbs.dtype != np.uint8 or len(thumbs) != len(ids) or ids.ndim != 1:
                raise ValueError(f"ids {ids.shape} {ids.dtype}, thumbs {thumbs.shape} {thumbs.dtype}")
            if len(ids) > 1 and np.any(np.diff(ids) <= 0):
                raise ValueError("ids must be strictly ascending")
            result = (ids.astype(np.int64, copy=False), thumbs)
        except (OSError, ValueError) as exc:
            logger.warning("%s: mel thumbnails unusable, pictures disabled (%s)", extras, exc)
    else:
        logger.info("%s: no mel thumbnails in this version", extras)
    with _lock:
        _thumbs[version_dir] = result
    return result


def popularity_stats(popularity: np.ndarray) -> dict[str, Any]:
    """Quantiles of catalog popularity and the hidden-gem threshold (see module docstring)."""
    pop = np.asarray(popularity, dtype=np.float64)
    if len(pop) == 0:
        return {"songs": 0, "popularity": None, "gem_threshold": None, "gem_rule": _GEM_RULE}
    q = np.percentile(pop, [0, 25, 50, 75, 100])
    return {
        "songs": int(len(pop)),
        "popularity": {
            "min": int(q[0]),
            "p25": float(q[1]),
            "median": float(q[2]),
            "p75": float(q[3]),
            "max": int(q[4]),
        },
        "gem_threshold": int(np.floor(np.percentile(pop, GEM_PERCENTILE))),
        "gem_rule": _GEM_RULE,
    }


_GEM_RULE = f"popularity <= floor({GEM_PERCENTILE:g}th percentile of catalog popularity)"


# -- projection ---------------------------------------------------------------------------------------


def local_pca(vectors: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Project rows onto their first two principal components.

    Returns (coords (n, 2), explained variance ratio of the two axes). Signs are fixed so that each
    axis's largest-magnitude loading is positive: the same neighbourhood always draws the same way.
    Degenerate inputs (one point, identical points) give zeros rather than an error.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    coords = np.zeros((n, 2))
    if n < 2:
        return coords, [0.0, 0.0]
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum())
    if total <= 1e-18:
        return coords, [0.0, 0.0]
    comps = vt[:2]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    coords[:, : len(comps)] = centred @ comps.T
    ratio = (s[:2] ** 2 / total).tolist()
    return coords, [float(r) for r in ratio] + [0.0] * (2 - len(ratio))


# -- endpoints ----------------------------------------------------------------------------------------

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown song, or no picture/vector for it"}
}


def _row_or_404(engine: Engine, song_id: int) -> int:
    row = engine.resolve(song_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"unknown song id: {song_id}")
    return row


@router.get("/songs/{song_id}/mel", responses=_NOT_FOUND)
def song_mel(song_id: SongId, engine: EngineDep) -> dict[str, Any]:
    """The song's mel thumbnail: ``{"song_id", "bands", "frames", "values": [uint8, ...]}``."""
    row = _row_or_404(engine, song_id)
    canonical = int(engine.catalog.song_ids[row])
    loaded = _load_thumbs(engine.version_dir)
    if loaded is None:
        raise HTTPException(
            status_code=404, detail=f"this artifacts version has no mel thumbnails ({EXTRAS_DIR}/{MEL_THUMBS})"
        )
    ids, thumbs = loaded
    i = int(np.searchsorted(ids, canonical))
    if i >= len(ids) or ids[i] != canonical:
        raise HTTPException(status_code=404, detail=f"song {canonical} has no mel-spectrogram")
    thumb = np.asarray(thumbs[i])
    return {
        "song_id": canonical,
        "bands": int(thumb.shape[0]),
        "frames": int(thumb.shape[1]),
        "values": thumb.reshape(-1).tolist(),
    }


@router.get("/songs/{song_id}/map", responses=_NOT_FOUND)
def song_map(
    song_id: SongId,
    engine: EngineDep,
    model: Annotated[ModelName, Query(description="embedding space")] = "cel",
    k: Annotated[int, Query(ge=1, le=MAX_MAP_K, description="neighbours to place")] = 15,
) -> dict[str, Any]:
    """The song and its nearest neighbours in ``model``, as 2-D points of a local PCA.

    Answer: ``{"song_id", "model", "explained": [r1, r2], "points": [Song + {"x", "y", "similarity",
    "self"}]}``, the song first, then neighbours by decreasing similarity.
    """
    row = _row_or_404(engine, song_id)
    mi = engine.models.get(model)
    if mi is None:
        raise HTTPException(status_code=404, detail=f"model {model!r} is not in this artifacts version")
    canonical = int(engine.catalog.song_ids[row])
    query = engine.query_vector(model, canonical)
    if query is None:
        raise HTTPException(status_code=404, detail=f"song {canonical} has no {model} vector")
    exclude = {row}
    found, sims = mi.search(query, k + 1 + len(engine.duplicates_of(canonical)))
    rows: list[int] = [row]
    similarity: list[float] = [1.0]
    for r, s in zip(found.tolist(), sims.tolist(), strict=True):
        if r < 0 or r in exclude or mi.row_of_catalog[r] < 0:
            continue
        exclude.add(r)
        rows.append(r)
        similarity.append(float(s))
        if len(rows) > k:
            break
    # Every point is placed by its query vector, so all points live in one space (for Music2Vec the
    # index holds output vectors; similarities above are the model's own scores).
    vectors = np.stack([np.asarray(mi.query[int(mi.row_of_catalog[r])], dtype=np.float32) for r in rows])
    coords, explained = local_pca(vectors)
    points = []
    for i, r in enumerate(rows):
        points.append(
            {
                **engine.song(r),
                "x": round(float(coords[i, 0]), 5),
                "y": round(float(coords[i, 1]), 5),
                "similarity": round(similarity[i], 5),
                "self": i == 0,
            }
        )
    return {"song_id": canonical, "model": model, "explained": [round(e, 4) for e in explained], "points": points}


@router.get("/visual/stats")
def visual_stats(engine: EngineDep) -> dict[str, Any]:
    """Popularity quantiles of the catalog and the hidden-gem threshold the page uses."""
    key = engine.version_dir
    with _lock:
        cached = _stats.get(key)
    if cached is None:
        cached = popularity_stats(engine.catalog.popularity)
        with _lock:
            _stats[key] = cached
    return {"version": engine.version, **cached}
