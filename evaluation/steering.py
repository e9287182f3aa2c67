"""Offline evaluation of steering (part of ``mugle evaluate``): the tag endpoint, diversity and filters.

Protocol
--------
* **Tags.** Every (held-out playlist, tag) pair where the served version knows the tag and the playlist
  has a catalog song is one query; the truth is the playlist's songs (canonical ids). The served
  ``/recommend/tag`` methods are asked through :meth:`app.engine.Engine.recommend_tag`; the baseline,
  ``tag_popularity``, lists the songs most training playlists with that tag contain (ties: the more
  popular song, then the lower id), counted here from the dataset, not read from the version.
* **Diversity.** The warm queries of the main evaluation (one seed per held-out playlist) at several
  ``diversity`` levels with ``score_total``: hit rate, nDCG, and the top 10's intra-list similarity in two
  embeddings (CEL, the space the re-rank uses, and Music2Vec's input vectors, which it does not see) and
  genre diversity (mean pairwise Jaccard distance of genre sets). The same for the tag queries.
* **Filters.** The warm queries again, with a genre filter (the seed's first genre) and with a year
  window (the seed's year +- 5, seeds without a date skipped): share of the top 10 that passes (must be 1),
  how full the lists are (songs returned / 10), hit rate, and time per request against no filter.

The bootstrap intervals are the main evaluation's (percentile, 1000 resamples, 95 %).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from app.steering import Steering
from evaluation import metrics as M
from evaluation.context import EvalContext, Query
from mugle_core.tagtable import tag_key

if TYPE_CHECKING:
    from app.engine import Engine

logger = logging.getLogger(__name__)

K = 10
DEPTH = 50
DIVERSITY_LEVELS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
TAG_METHODS: tuple[str, ...] = ("score_total", "each_top3", "music2vec", "tcae", "cel")
YEAR_WINDOW = 5


@dataclass(frozen=True)
class TagQuery:
    playlist_id: int
    tag: str
    relevant: frozenset[int]


def _ci(values: Sequence[float], seed: int) -> dict[str, float | None]:
    mean, low, high = M.bootstrap_ci(values, seed=seed)
    return {"mean": _num(mean), "low": _num(low), "high": _num(high)}


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 5)


def tag_queries(ctx: EvalContext, engine: Engine) -> list[TagQuery]:
    """One query per (held-out playlist, tag the version knows), the playlist's songs as truth."""
    out: list[TagQuery] = []
    if engine.tags is None:
        return out
    for pid, songs in ctx.holdout_playlists:
        if not songs:
            continue
        seen: set[str] = set()
        for raw in ctx.holdout_tags.get(pid, []):
            key = tag_key(raw)
            if not key or key in seen:
                continue
            seen.add(key)
            try:
                i = engine.tags.find(raw)
            except LookupError:
                continue
            out.append(TagQuery(pid, engine.tags.names[i], frozenset(songs)))
    return out


class TagPopularity:
    """The baseline: the songs most training playlists carrying the tag contain."""

    def __init__(self, ctx: EvalContext) -> None:
        self.counts: dict[str, dict[int, int]] = {}
        for songs, tags in zip(ctx.train_playlists, ctx.train_tags, strict=True):
            for key in {tag_key(t) for t in tags if tag_key(t)}:
                bucket = self.counts.setdefault(key, {})
                for s in songs:
                    bucket[s] = bucket.get(s, 0) + 1
        self.popularity = ctx.popularity

    def __call__(self, tag: str, k: int) -> list[int]:
        bucket = self.counts.get(tag_key(tag), {})
        return sorted(bucket, key=lambda s: (-bucket[s], -self.popularity.get(s, 0), s))[:k]


def _score(lists10: Sequence[list[int]], lists50: Sequence[list[int]], truths: Sequence[frozenset[int]],
           pops: Mapping[int, int], seed: int) -> dict[str, Any]:
    hr = [M.hit_rate_at_k(top, rel, K) for top, rel in zip(lists10, truths, strict=True)]
    nd = [M.ndcg_at_k(top, rel, K) for top, rel in zip(lists10, truths, strict=True)]
    rc = [M.recall_at_k(top, rel, DEPTH) for top, rel in zip(lists50, truths, strict=True)]
    pooled = [pops.get(s, 0) for top in lists10 for s in top]
    return {
        "queries": len(truths),
        "hit_rate@10": _ci(hr, seed),
        "ndcg@10": _ci(nd, seed),
        "recall@50": _ci(rc, seed),
        "median_popularity@10": _num(M.median_popularity(pooled)),
        "empty_lists": sum(1 for top in lists10 if not top),
    }


def _similarity(engine: Engine, ids: Sequence[int], model: str) -> float:
    mi = engine.models.get(model)
    if mi is None or len(ids) < 2:
        return math.nan
    rows = [engine.resolve(s) for s in ids]
    qrows = [int(mi.row_of_catalog[r]) for r in rows if r is not None]
    qrows = [q for q in qrows if q >= 0]
    if len(qrows) < 2:
        return math.nan
    return M.intra_list_similarity(np.asarray(mi.query[qrows]))


def _variety(engine: Engine, ctx: EvalContext, lists10: Sequence[list[int]]) -> dict[str, float | None]:
    return {
        "similarity_cel@10": _num(M.mean_finite(_similarity(engine, top, "cel") for top in lists10)),
        "similarity_music2vec@10": _num(M.mean_finite(_similarity(engine, top, "music2vec") for top in lists10)),
        "genre_diversity@10": _num(M.mean_finite(
            M.intra_list_diversity([ctx.genres.get(s, frozenset()) for s in top]) for top in lists10)),
    }


def _ids(items: Sequence[Mapping[str, Any]]) -> list[int]:
    return [int(it["song_id"]) for it in items]


def evaluate_tags(ctx: EvalContext, engine: Engine, queries: Sequence[TagQuery], *, seed: int,
                  progress: bool) -> dict[str, Any]:
    """HitRate@10 and the rest of each served tag method and of the tag-popularity baseline."""
    baseline = TagPopularity(ctx)
    truths = [q.relevant for q in queries]
    def served(method: str) -> Callable[[str], list[int]]:
        return lambda tag: _ids(engine.recommend_tag(tag, method, DEPTH)[1])

    rankers: dict[str, Callable[[str], list[int]]] = {m: served(m) for m in TAG_METHODS}
    rankers["tag_popularity"] = lambda tag: baseline(tag, DEPTH)
    out: dict[str, Any] = {}
    for name, fn in rankers.items():
        lists50 = [fn(q.tag) for q in tqdm(queries, desc=f"tags {name}", disable=not progress, leave=False)]
        lists10 = [x[:K] for x in lists50]
        out[name] = _score(lists10, lists50, truths, ctx.popularity, seed)
    return out


def diversity_sweep(
    ctx: EvalContext, engine: Engine, ask: Callable[[Any, Steering | None], list[int]], queries: Sequence[Any],
    truths: Sequence[frozenset[int]], *, seed: int, progress: bool, label: str,
) -> list[dict[str, Any]]:
    """Hit rate and list variety of ``score_total`` at each :data:`DIVERSITY_LEVELS`."""
    rows: list[dict[str, Any]] = []
    for level in DIVERSITY_LEVELS:
        steer = Steering.of(diversity=level)
        lists10 = [ask(q, steer) for q in tqdm(queries, desc=f"{label} diversity {level}", disable=not progress,
                                               leave=False)]
        hr = [M.hit_rate_at_k(top, rel, K) for top, rel in zip(lists10, truths, strict=True)]
        nd = [M.ndcg_at_k(top, rel, K) for top, rel in zip(lists10, truths, strict=True)]
        rows.append({"diversity": level, "hit_rate@10": _ci(hr, seed),
                     "ndcg@10": _num(M.mean_finite(nd)), **_variety(engine, ctx, lists10)})
    return rows


def filter_effects(ctx: EvalContext, engine: Engine, queries: Sequence[Query], *, seed: int,
                   progress: bool) -> dict[str, Any]:
    """What a genre filter and a year window do to the warm queries' answers (see the module docstring)."""
    years = engine.filters.years

    def genre_of(q: Query) -> Steering | None:
        genres = ctx.genres.get(q.seed)
        return Steering(genres=(sorted(genres)[0],)) if genres else None

    def window_of(q: Query) -> Steering | None:
        row = engine.resolve(q.seed)
        year = int(years[row]) if row is not None else 0
        return Steering(year_from=year - YEAR_WINDOW, year_to=year + YEAR_WINDOW) if year else None

    out: dict[str, Any] = {}
    for name, make in (("none", lambda q: None), ("genre: the seed's", genre_of),
                       (f"year: the seed's +-{YEAR_WINDOW}", window_of)):
        hr, passing, full, seconds = [], [], [], []
        for q in tqdm(queries, desc=f"filter {name}", disable=not progress, leave=False):
            steer = make(q)
            if name != "none" and steer is None:
                continue
            started = time.perf_counter()
            _, items = engine.recommend(q.seed, "score_total", K, steer=steer)
            seconds.append(time.perf_counter() - started)
            top = _ids(items)
            hr.append(M.hit_rate_at_k(top, q.relevant, K))
            full.append(len(top) / K)
            mask = engine.filters.mask_of(steer) if steer is not None else None
            if mask is not None and items:
                passing.append(float(np.mean([mask[engine.resolve(s)] for s in top])))
        out[name] = {
            "queries": len(hr),
            "hit_rate@10": _ci(hr, seed),
            "passing_share@10": _num(M.mean_finite(passing)) if passing else None,
            "fullness@10": _num(M.mean_finite(full)),
            "ms_per_request": _num(1000.0 * float(np.median(seconds))) if seconds else None,
        }
    return out


def evaluate_steering(ctx: EvalContext, engine: Engine, warm: Sequence[Query], *, seed: int,
                      progress: bool) -> dict[str, Any]:
    """The steering block of ``metrics.json``: tags, diversity and filters."""
    out: dict[str, Any] = {}
    tq = tag_queries(ctx, engine)
    out["tags"] = {
        "tags_served": len(engine.tags) if engine.tags is not None else 0,
        "queries": len(tq),
        "methods": evaluate_tags(ctx, engine, tq, seed=seed, progress=progress) if tq else {},
    }

    def ask_warm(q: Query, steer: Steering | None) -> list[int]:
        return _ids(engine.recommend(q.seed, "score_total", K, steer=steer)[1])

    def ask_tag(q: TagQuery, steer: Steering | None) -> list[int]:
        return _ids(engine.recommend_tag(q.tag, "score_total", K, steer=steer)[1])

    out["diversity"] = {
        "warm": diversity_sweep(ctx, engine, ask_warm, warm, [q.relevant for q in warm], seed=seed,
                                progress=progress, label="warm"),
        "tags": diversity_sweep(ctx, engine, ask_tag, tq, [q.relevant for q in tq], seed=seed, progress=progress,
                                label="tags") if tq else [],
    }
    out["filters"] = filter_effects(ctx, engine, warm, seed=seed, progress=progress)
    return out


def _mean(cell: Any) -> float | None:
    return cell.get("mean") if isinstance(cell, Mapping) else cell


def steering_targets(steering: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's steering targets, in :func:`evaluation.evaluate.check_targets`' form."""
    out: dict[str, dict[str, Any]] = {}
    methods = (steering.get("tags") or {}).get("methods") or {}
    served = _mean((methods.get("score_total") or {}).get("hit_rate@10"))
    base = _mean((methods.get("tag_popularity") or {}).get("hit_rate@10"))
    if served is not None and base is not None:
        out["tag_beats_tag_popularity"] = {
            "value": served, "threshold": base, "met": served > base,
            "rule": "/recommend/tag score_total HitRate@10 > most frequent songs of the tag's training playlists"}
    sweep = {row["diversity"]: row for row in (steering.get("diversity") or {}).get("warm", [])}
    if 0.0 in sweep and 1.0 in sweep:
        s0, s1 = sweep[0.0]["similarity_music2vec@10"], sweep[1.0]["similarity_music2vec@10"]
        if s0 is not None and s1 is not None:
            out["diversity_lowers_similarity"] = {
                "value": s1, "threshold": s0, "met": s1 < s0,
                "rule": "intra-list similarity (Music2Vec, a space MMR does not use) at diversity 1 < at 0"}
        h0, h1 = _mean(sweep[0.0]["hit_rate@10"]), _mean(sweep[1.0]["hit_rate@10"])
        if h0 and h1 is not None:
            out["diversity_hit_rate_cost"] = {
                "value": _num(1.0 - h1 / h0), "threshold": None, "met": None,
                "rule": "relative HitRate@10 loss at diversity 1 (reported, no threshold)"}
    return out


def _cell(x: Any, digits: int = 3) -> str:
    x = _mean(x)
    return "–" if x is None else f"{x:.{digits}f}"


def steering_markdown(steering: Mapping[str, Any]) -> list[str]:
    """The report's section on steering: tags against their baseline, the diversity sweeps, the filters."""
    if not steering:
        return []
    out = ["## Steering: situations (tags), diversity, filters", ""]
    tags = steering.get("tags") or {}
    methods = tags.get("methods") or {}
    if methods:
        out += [f"{tags.get('queries', 0):,} (held-out playlist, tag) queries over {tags.get('tags_served', 0):,} "
                "served tags; the truth is the playlist's songs. `tag_popularity`: the songs most training "
                "playlists with the tag contain.", "",
                "| method | HitRate@10 [95% CI] | nDCG@10 | Recall@50 | median popularity |", "|---|---|---|---|---|"]
        for name, b in methods.items():
            hr = b["hit_rate@10"]
            out.append(f"| `{name}` | {_cell(hr)} [{_cell(hr.get('low'))}, {_cell(hr.get('high'))}] | "
                       f"{_cell(b['ndcg@10'])} | {_cell(b['recall@50'])} | {_cell(b['median_popularity@10'], 1)} |")
        out.append("")
    else:
        out += ["The version has no tags, or no held-out playlist carries a tag it knows.", ""]
    for kind, rows in (steering.get("diversity") or {}).items():
        if not rows:
            continue
        out += [f"Diversity (`score_total`, {kind} queries): intra-list similarity is the mean pairwise cosine "
                "of the top 10 (CEL: the space the re-rank uses; Music2Vec: one it does not); genre diversity "
                "the mean pairwise Jaccard distance of their genre sets.", "",
                "| diversity | HitRate@10 | nDCG@10 | similarity (CEL) | similarity (Music2Vec) | genre diversity |",
                "|---|---|---|---|---|---|"]
        for row in rows:
            out.append(f"| {row['diversity']:g} | {_cell(row['hit_rate@10'])} | {_cell(row['ndcg@10'])} | "
                       f"{_cell(row['similarity_cel@10'])} | {_cell(row['similarity_music2vec@10'])} | "
                       f"{_cell(row['genre_diversity@10'])} |")
        out.append("")
    filters = steering.get("filters") or {}
    if filters:
        out += ["Filters (warm queries, `score_total`):", "",
                "| filter | queries | HitRate@10 | share passing | list fullness | ms per request |",
                "|---|---|---|---|---|---|"]
        for name, b in filters.items():
            out.append(f"| {name} | {b['queries']} | {_cell(b['hit_rate@10'])} | {_cell(b['passing_share@10'])} | "
                       f"{_cell(b['fullness@10'])} | {_cell(b['ms_per_request'], 2)} |")
        out.append("")
    return out
