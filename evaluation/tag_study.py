"""Which way of answering a tag works, measured on a version's held-out playlists (``python -m evaluation.tag_study``).

Two parts, both on every (held-out playlist, tag) pair whose tag the version serves, the truth being the
playlist's songs (the protocol of :mod:`evaluation.steering`):

1. **Candidate lists**, computed here from the dataset and the version's vectors, independently of the
   served code: the tag's songs counted over its training playlists (the baseline), the counts divided by
   a power of popularity, per model the neighbours of the tag's mean vector (count-weighted or each distinct
   song once; for Music2Vec the mean input vector against the output vectors), and 1/rank fusions of these.
2. **Fusion weights of the served** ``/recommend/tag`` ``score_total``, through
   :meth:`app.engine.Engine.recommend_tag` with other weights.

Usage::

    python -m evaluation.tag_study --data data/demo --artifacts artifacts [--version V]

Results of the runs behind :data:`app.engine.TAG_FUSION_WEIGHTS` are in ``docs/notes/steering.md``.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import faiss
import numpy as np

from app.engine import TAG_FUSION_WEIGHTS, TAG_LIST, Engine
from evaluation import metrics as M
from evaluation.evaluate import load_context, resolve_version
from evaluation.steering import tag_queries
from mugle_core.artifacts import ids_file, index_file, query_file
from mugle_core.tagtable import tag_key

logger = logging.getLogger(__name__)

K = 10
DEPTH = 50
WEIGHT_GRID: dict[str, dict[str, float]] = {
    "served (app.engine.TAG_FUSION_WEIGHTS)": dict(TAG_FUSION_WEIGHTS),
    "counts 1, music2vec 1, cel 0.25, tcae 0.1 (the song fusion's weights)":
        {TAG_LIST: 1.0, "music2vec": 1.0, "cel": 0.25, "tcae": 0.1},
    "counts 1, music2vec 1": {TAG_LIST: 1.0, "music2vec": 1.0, "cel": 0.0, "tcae": 0.0},
    "counts 1, music2vec 0.5": {TAG_LIST: 1.0, "music2vec": 0.5, "cel": 0.0, "tcae": 0.0},
    "counts 1, music2vec 0.25": {TAG_LIST: 1.0, "music2vec": 0.25, "cel": 0.0, "tcae": 0.0},
    "counts 1, music2vec 0.5, cel 0.25": {TAG_LIST: 1.0, "music2vec": 0.5, "cel": 0.25, "tcae": 0.0},
}


def _fuse(lists: Mapping[str, list[int]], weights: Mapping[str, float] | None = None) -> list[int]:
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for name, rows in lists.items():
        w = (weights or {}).get(name, 1.0)
        for rank, row in enumerate(rows, start=1):
            scores[row] = scores.get(row, 0.0) + w / rank
            best[row] = min(best.get(row, rank), rank)
    return sorted(scores, key=lambda r: (-scores[r], best[r], r))


def study(data: Path, artifacts: Path, version: str | None = None, seed: int = 0) -> dict[str, dict[str, float]]:
    """HitRate@10 (mean and 95% interval) of every candidate list and weight setting; see the module docstring."""
    version_dir = resolve_version(artifacts, version)
    ctx = load_context(data, version_dir)
    engine = Engine.load(version_dir)
    queries = tag_queries(ctx, engine)
    if not queries:
        raise SystemExit(f"{version_dir}: no held-out playlist carries a tag this version serves")
    cat = ctx.catalog
    n = len(cat)
    row_of = {int(s): i for i, s in enumerate(cat.song_ids.tolist())}
    pop = cat.popularity.astype(np.float64)
    served = {tag_key(q.tag) for q in queries}
    counts: dict[str, np.ndarray] = {key: np.zeros(n) for key in served}
    for songs, tags in zip(ctx.train_playlists, ctx.train_tags, strict=True):
        rows = [row_of[s] for s in songs]
        for key in {tag_key(t) for t in tags} & served:
            counts[key][rows] += 1
    spaces: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in engine.models:
        ids = np.load(version_dir / ids_file(name))
        query = np.load(version_dir / query_file(name))
        index = faiss.read_index(str(version_dir / index_file(name)))
        keys = index.reconstruct_n(0, index.ntotal)
        at = np.array([row_of[int(s)] for s in ids], dtype=np.int64)
        q_all, k_all = np.zeros((n, query.shape[1]), np.float32), np.zeros((n, query.shape[1]), np.float32)
        q_all[at], k_all[at] = query, keys
        has = np.zeros(n, dtype=bool)
        has[at] = True
        spaces[name] = (q_all, k_all, has)

    def top(score: np.ndarray, mask: np.ndarray | None = None) -> list[int]:
        s = np.where(mask, score, -np.inf) if mask is not None else score
        order = np.lexsort((np.arange(n), -pop, -s))[:DEPTH]
        return [int(i) for i in order if np.isfinite(s[i]) and s[i] > -np.inf]

    def neighbours(key: str, model: str, weighted: bool) -> list[int]:
        q_all, k_all, has = spaces[model]
        w = counts[key] if weighted else (counts[key] > 0).astype(np.float64)
        v = w @ q_all
        norm = float(np.linalg.norm(v))
        return top(k_all @ (v / norm), has) if norm else []

    variants: dict[str, Callable[[str], list[int]]] = {
        "counts (the tag-popularity baseline)": lambda key: top(counts[key], counts[key] > 0),
        "counts / (popularity + 5) ** 0.5": lambda key: top(counts[key] / np.sqrt(pop + 5), counts[key] > 0),
        "counts / (popularity + 20) ** 0.3": lambda key: top(counts[key] / (pop + 20) ** 0.3, counts[key] > 0),
    }
    for model in spaces:
        variants[f"{model}: mean vector, count-weighted"] = functools.partial(neighbours, model=model, weighted=True)
        variants[f"{model}: mean vector, distinct songs"] = functools.partial(neighbours, model=model, weighted=False)
    if "music2vec" in spaces:
        variants["fused: counts + music2vec (distinct)"] = lambda key: _fuse(
            {"c": top(counts[key], counts[key] > 0), "m": neighbours(key, "music2vec", False)})
        variants["fused: counts + music2vec (count-weighted)"] = lambda key: _fuse(
            {"c": top(counts[key], counts[key] > 0), "m": neighbours(key, "music2vec", True)})
    out: dict[str, dict[str, float]] = {}
    for name, fn in variants.items():
        hits = [M.hit_rate_at_k(fn(tag_key(q.tag))[:K], {row_of[s] for s in q.relevant}, K) for q in queries]
        out[name] = dict(zip(("mean", "low", "high"), M.bootstrap_ci(hits, seed=seed), strict=True))
    for name, weights in WEIGHT_GRID.items():
        hits = [M.hit_rate_at_k([it["song_id"] for it in engine.recommend_tag(q.tag, k=K, weights=weights)[1]],
                                q.relevant, K) for q in queries]
        out[f"served score_total, {name}"] = dict(zip(("mean", "low", "high"), M.bootstrap_ci(hits, seed=seed),
                                                     strict=True))
    logger.info("tag study on %s: %d queries", version_dir.name, len(queries))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="the dataset the version was trained on")
    parser.add_argument("--artifacts", default=Path("artifacts"), type=Path, help="artifacts folder")
    parser.add_argument("--version", default=None, help="version folder name (default: current)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    results = study(args.data, args.artifacts, args.version, args.seed)
    print(f"{'candidate list / weights':<90} HitRate@10 [95% CI]")
    for name, r in results.items():
        print(f"{name:<90} {r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
