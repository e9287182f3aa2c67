"""Offline evaluation of one artifacts version on the playlists it never saw (``mugle evaluate``).

Protocol
--------
* The held-out playlists are those whose ids the version's manifest lists (``mugle train --holdout``).
  Their song ids are mapped to canonical ids through the catalog's aliases.
* **Warm queries**: per held-out playlist, one seed drawn (seeded) among its songs that some training
  playlist contains; the truth is the rest of that playlist. **Cold-start queries**: per playlist, one
  seed among its songs that no training playlist contains but that have audio.
* Every served method (:data:`app.ranking.METHODS`) is asked through the served
  :class:`app.engine.Engine`, not a copy of its ranking code; ``cooc_list`` is the version's served
  co-occurrence list alone (score_total's fourth source). The baselines are computed here:
  ``random``, ``most_popular``, ``cooccurrence`` (count of shared training playlists), ``item_knn``
  (cosine of playlist columns), ``ease`` (closed-form EASE, up to :data:`training.baselines.EASE_MAX_SONGS`
  songs with history, regularisation the best of :data:`training.baselines.EASE_LAMBDAS` *on these
  queries*, which favours the baseline) and ``original_score_total`` (the original system: each model's
  top 50 *including the query song*, 1/rank summed, 0.02 when absent).
* A paired bootstrap of the per-query difference (the same queries resampled together) compares
  ``score_total`` with the best practitioner baseline and with every single model, on HitRate@10 and nDCG@10.
* Version retrieval uses the demo's ground truth (``demo_truth.json``) when the dataset folder has it.
* A novelty sweep runs ``score_total`` at several ``novelty`` values (hit rate against popularity).
* A fusion study re-fuses the served per-model candidate lists with other depths, rank constants and
  normalisations, so a change to ``score_total`` can be judged before it is made.

Results go to ``<version>/metrics.json`` and a Markdown report with plots (:mod:`evaluation.report`).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from tqdm import tqdm

from app.ranking import COOC
from evaluation import metrics as M
from evaluation.baselines import EASE, EASE_LAMBDAS, EASE_MAX_SONGS, ItemKNN
from evaluation.context import EvalContext, Query
from evaluation.steering import evaluate_steering, steering_targets
from mugle_core.artifacts import (
    CATALOG,
    METRICS,
    MODEL_NAMES,
    PER_QUERY,
    ArtifactError,
    ids_file,
    index_file,
    query_file,
    read_manifest,
    resolve_current,
)
from mugle_core.catalog import SEP, Catalog
from mugle_core.names import METHODS

logger = logging.getLogger(__name__)

K = 10
RECALL_K = 50
DEPTH = 50
ORIGINAL_ABSENT = 0.02
NOVELTY_LEVELS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
SERVED_METHODS: tuple[str, ...] = METHODS
BASELINES: tuple[str, ...] = ("random", "most_popular", "cooccurrence", "item_knn", "original_score_total")
# The practitioners' item-to-item baselines score_total is held against (paired comparison, targets).
PRACTITIONER_BASELINES: tuple[str, ...] = ("cooccurrence", "item_knn", "ease")
SERVED_LIST = "cooc_list"
DEMO_TRUTH = "demo_truth.json"
RETRIEVAL_METHODS: tuple[str, ...] = ("tcae", "cel", "score_total")
RETRIEVAL_DEPTH = 100


class EvaluationError(RuntimeError):
    """The version or dataset cannot be evaluated; the message names the file or field."""


# -- loading -------------------------------------------------------------------------------------------


def resolve_version(artifacts: Path, version: str | None) -> Path:
    """The folder of ``version`` under ``artifacts``, or of ``current`` when ``version`` is None."""
    artifacts = Path(artifacts)
    if version is None:
        return resolve_current(artifacts)
    path = artifacts / version
    if not (path / "manifest.json").is_file():
        raise ArtifactError(f"{path}: no such version (no manifest.json)")
    return path


def _canonical_list(catalog: Catalog, ids: Sequence[int]) -> list[int]:
    """Map original ids to canonical ids in order, dropping unknown ids and repeats after merging."""
    if len(ids) == 0:
        return []
    arr = np.asarray(ids, dtype=np.int64)
    pos = np.searchsorted(catalog.alias_from, arr)
    pos_c = np.minimum(pos, max(len(catalog.alias_from) - 1, 0))
    ok = (pos < len(catalog.alias_from)) & (catalog.alias_from[pos_c] == arr) if len(catalog.alias_from) else (
        np.zeros(len(arr), dtype=bool)
    )
    out: list[int] = []
    seen: set[int] = set()
    for c in catalog.alias_to[pos_c[ok]].tolist():
        if c not in seen:
            seen.add(c)
            out.append(int(c))
    return out


def _training_splits(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The dataset splits the version trained on (``params.train.prep.splits``), ``("train",)`` by default."""
    try:
        splits = params["train"]["prep"]["splits"]
    except (KeyError, TypeError):
        return ("train",)
    return tuple(str(s) for s in splits) or ("train",)


def load_context(data: Path, version_dir: Path) -> EvalContext:
    """Read the manifest, catalog and dataset playlists, and split them into training and held-out."""
    from training.melon import read_dataset

    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    holdout = set(manifest.holdout_playlist_ids)
    if not holdout:
        raise EvaluationError(
            f"{version_dir / 'manifest.json'}: holdout_playlist_ids is empty; "
            "train with `mugle train --holdout 0.1` to evaluate on unseen playlists"
        )
    catalog = Catalog.load(version_dir / CATALOG)
    splits = _training_splits(manifest.params)
    dataset = read_dataset(Path(data), progress=False)
    train: list[list[int]] = []
    train_tags: list[list[str]] = []
    held: list[tuple[int, list[int]]] = []
    held_tags: dict[int, list[str]] = {}
    seen_held: set[int] = set()
    for p in dataset.playlists:
        if p.id in holdout:
            if p.id not in seen_held:
                seen_held.add(p.id)
                held.append((p.id, _canonical_list(catalog, p.songs)))
                held_tags[p.id] = list(p.tags)
        elif p.split in splits:
            seq = _canonical_list(catalog, p.songs)
            if seq:
                train.append(seq)
                train_tags.append(list(p.tags))
    missing = len(holdout) - len(seen_held)
    if not held:
        raise EvaluationError(
            f"{data}: none of the {len(holdout)} held-out playlist ids of {version_dir.name} occur in the dataset "
            "(is --data the folder this version was trained on?)"
        )
    if missing:
        logger.warning("%d held-out playlist ids are not in %s", missing, data)
    genres: dict[int, frozenset[str]] = {}
    col = catalog.columns["genres"]
    for row, sid in enumerate(catalog.song_ids.tolist()):
        g = col[row]
        genres[int(sid)] = frozenset(g.split(SEP)) if g else frozenset()
    popularity = M.popularity_lookup(catalog.song_ids, catalog.popularity)
    return EvalContext(
        version_dir=version_dir,
        catalog=catalog,
        popularity=popularity,
        genres=genres,
        train_playlists=train,
        holdout_playlists=held,
        n_train_playlists=len(train),
        data=Path(data),
        manifest_holdout=len(holdout),
        counts={"holdout_ids_missing_from_dataset": missing},
        holdout_tags=held_tags,
        train_tags=train_tags,
    )


def build_queries(
    ctx: EvalContext, *, max_playlists: int | None, seed: int
) -> tuple[list[Query], list[Query]]:
    """One warm query per held-out playlist, and one cold-start query per cold song in it.

    A warm seed is a song some training playlist contains; a cold seed is one no training playlist
    contains but that has audio. The truth of either is the playlist's other songs, so a playlist needs
    at least two catalog songs.
    """
    rng = np.random.default_rng(seed)
    warm_songs = {int(s) for s in ctx.catalog.song_ids[ctx.catalog.popularity > 0].tolist()}
    cold_songs = {
        int(s) for s in ctx.catalog.song_ids[(ctx.catalog.popularity == 0) & ctx.catalog.has_audio].tolist()
    }
    playlists = [(pid, songs) for pid, songs in ctx.holdout_playlists if len(songs) >= 2]
    order = rng.permutation(len(playlists))
    if max_playlists is not None:
        order = order[:max_playlists]
    warm: list[Query] = []
    cold: list[Query] = []
    for i in order.tolist():
        pid, songs = playlists[i]
        w = [s for s in songs if s in warm_songs]
        c = [s for s in songs if s in cold_songs]
        if w:
            s = w[int(rng.integers(len(w)))]
            warm.append(Query(pid, s, frozenset(songs) - {s}))
        # Cold songs are few (a few per cent of a playlist): every one of them seeds its own query,
        # otherwise the cold-start estimate rests on a handful of playlists.
        for s in c:
            cold.append(Query(pid, s, frozenset(songs) - {s}))
    return warm, cold


# -- baselines -------------------------------------------------------------------------------------------


class Baselines:
    """The non-served rankers: random, most-popular, co-occurrence and the original score total."""

    def __init__(self, ctx: EvalContext, seed: int = 0) -> None:
        self.ctx = ctx
        self.seed = seed
        cat = ctx.catalog
        self.ids = cat.song_ids
        # Most popular first, lowest id on a tie.
        self.by_popularity = cat.song_ids[np.lexsort((cat.song_ids, -cat.popularity.astype(np.int64)))]
        self._pop = cat.popularity.astype(np.float64)
        # Playlist x song incidence matrix over catalog rows, for co-occurrence counts.
        rows: list[int] = []
        cols: list[int] = []
        for i, seq in enumerate(ctx.train_playlists):
            r = np.searchsorted(cat.song_ids, np.asarray(seq, dtype=np.int64))
            rows.extend([i] * len(r))
            cols.extend(r.tolist())
        shape = (max(len(ctx.train_playlists), 1), len(cat.song_ids))
        inc = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
        self._inc_csr = inc
        self._inc_csc = inc.tocsc()
        self._faiss: dict[str, tuple[Any, np.ndarray, np.ndarray]] | None = None
        self.item_knn = ItemKNN(ctx.train_playlists)

    def random(self, seed_song: int, k: int) -> list[int]:
        # Seeded per query so that the k=10 list is the prefix of the k=50 list.
        rng = np.random.default_rng([self.seed, seed_song])
        pick = rng.permutation(len(self.ids))[: k + 1]
        return [int(s) for s in self.ids[pick].tolist() if s != seed_song][:k]

    def most_popular(self, seed_song: int, k: int) -> list[int]:
        return [int(s) for s in self.by_popularity[: k + 1].tolist() if s != seed_song][:k]

    def cooccurrence(self, seed_song: int, k: int) -> list[int]:
        row = self.ctx.catalog.row(seed_song)
        if row is None:
            return []
        lists = self._inc_csc.indices[self._inc_csc.indptr[row] : self._inc_csc.indptr[row + 1]]
        if len(lists) == 0:
            return []
        counts = np.asarray(self._inc_csr[lists].sum(axis=0)).ravel()
        counts[row] = 0
        nz = np.flatnonzero(counts)
        # More shared playlists first; then the more popular song; then the lower id.
        order = nz[np.lexsort((self.ids[nz], -self._pop[nz], -counts[nz]))]
        return [int(s) for s in self.ids[order[:k]].tolist()]

    def _load_faiss(self) -> dict[str, tuple[Any, np.ndarray, np.ndarray]]:
        if self._faiss is None:
            import faiss

            loaded = {}
            for name in MODEL_NAMES:
                path = self.ctx.version_dir / index_file(name)
                if not path.is_file():
                    continue
                index = faiss.read_index(str(path))
                ids = np.load(self.ctx.version_dir / ids_file(name), allow_pickle=False)
                query = np.load(self.ctx.version_dir / query_file(name), allow_pickle=False)
                loaded[name] = (index, ids, query)
            self._faiss = loaded
        return self._faiss

    def original_lists(self, seed_song: int, depth: int = DEPTH) -> dict[str, list[int]]:
        """Each model's top ``depth`` for the seed as the original system had them: the seed itself included."""
        out: dict[str, list[int]] = {}
        for name, (index, ids, query) in self._load_faiss().items():
            pos = int(np.searchsorted(ids, seed_song))
            if pos >= len(ids) or ids[pos] != seed_song:
                continue
            _, found = index.search(query[pos : pos + 1], depth)
            found = found[0]
            out[name] = [int(ids[f]) for f in found.tolist() if f >= 0]
        return out

    def original_score_total(self, seed_song: int, k: int) -> list[int]:
        lists = self.original_lists(seed_song)
        if not lists:
            return []
        scores: dict[int, float] = {}
        for rows in lists.values():
            for rank, sid in enumerate(rows, start=1):
                scores[sid] = scores.get(sid, 0.0) + 1.0 / rank
        # A song absent from a model's list scored 0.02 there.
        n_models = len(lists)
        for sid in scores:
            present = sum(1 for rows in lists.values() if sid in rows)
            scores[sid] += ORIGINAL_ABSENT * (n_models - present)
        return sorted(scores, key=lambda s: (-scores[s], s))[:k]

    def ranker(self, name: str) -> Callable[[int, int], list[int]]:
        rankers: dict[str, Callable[[int, int], list[int]]] = {
            "random": self.random,
            "most_popular": self.most_popular,
            "cooccurrence": self.cooccurrence,
            "item_knn": self.item_knn,
            "original_score_total": self.original_score_total,
        }
        return rankers[name]


# -- the served engine -------------------------------------------------------------------------------


class Served:
    """Adapter over the served :class:`app.engine.Engine`: ranked canonical song ids per request.

    A list for ``k`` = 10 is the prefix of the list for ``k`` = 50 (the engine ranks a pool of depth
    ``max(50, k)`` and cuts it), so one request at depth 50 answers both cut-offs.
    """

    def __init__(self, version_dir: Path) -> None:
        from app.engine import Engine

        self.engine = Engine.load(version_dir)

    @property
    def models(self) -> list[str]:
        return [m for m in MODEL_NAMES if m in self.engine.models]

    def recommend_items(self, seed_song: int, method: str, k: int, novelty: float = 0.0) -> list[dict[str, Any]]:
        _, items = self.engine.recommend(seed_song, method=method, k=k, novelty=novelty, exclude_artist=False)
        return items

    def recommend(self, seed_song: int, method: str, k: int, novelty: float = 0.0) -> list[int]:
        return [int(it["song_id"]) for it in self.recommend_items(seed_song, method, k, novelty)]

    def cooc_list(self, seed_song: int, k: int) -> list[int]:
        """The version's served co-occurrence list for the seed (empty when it has none)."""
        eng = self.engine
        row = eng.resolve(seed_song)
        if eng.cooc is None or row is None:
            return []
        found = eng.cooc.candidates([row], {row}, max(k, DEPTH))
        return [] if found is None else [int(eng.catalog.song_ids[r]) for r in found[0][:k]]

    def model_lists(self, seed_song: int, depth: int = DEPTH) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
        """Each source's served candidate list (query and duplicates excluded) with its similarities."""
        lists: dict[str, list[int]] = {}
        sims: dict[str, list[float]] = {}
        for model in self.models:
            items = self.recommend_items(seed_song, model, depth)
            if items:
                lists[model] = [int(it["song_id"]) for it in items]
                sims[model] = [float(it["score"]) for it in items]
        eng = self.engine
        row = eng.resolve(seed_song)
        if eng.cooc is not None and row is not None:
            found = eng.cooc.candidates([row], {row}, depth)
            if found is not None and found[0]:
                lists[COOC] = [int(eng.catalog.song_ids[r]) for r in found[0]]
                sims[COOC] = list(found[1])
        return lists, sims


# -- scoring -------------------------------------------------------------------------------------------


def _ci(values: Sequence[float], seed: int) -> dict[str, float | None]:
    mean, low, high = M.bootstrap_ci(values, seed=seed)
    return {"mean": _num(mean), "low": _num(low), "high": _num(high)}


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 5)


def score_lists(
    ctx: EvalContext,
    queries: Sequence[Query],
    lists10: Sequence[list[int]],
    lists50: Sequence[list[int]],
    *,
    seed: int,
) -> dict[str, Any]:
    """All metrics of one method on one query set, given its top-10 and top-50 lists per query."""
    catalog_median = float(np.median(ctx.catalog.popularity)) if len(ctx.catalog) else 0.0
    hr, ndcg, rec50, rr, gp, nov, below, ild = ([] for _ in range(8))
    pooled_pop: list[int] = []
    empty = 0
    for q, top10, top50 in zip(queries, lists10, lists50, strict=True):
        if not top10:
            empty += 1
        hr.append(M.hit_rate_at_k(top10, q.relevant, K))
        ndcg.append(M.ndcg_at_k(top10, q.relevant, K))
        rec50.append(M.recall_at_k(top50, q.relevant, RECALL_K))
        rr.append(M.reciprocal_rank(top50, q.relevant, RECALL_K))
        rec_genres = [ctx.genres.get(s, frozenset()) for s in top10]
        gp.append(M.genre_precision_at_k(ctx.genres.get(q.seed, frozenset()), rec_genres, K) if top10 else math.nan)
        pops = [ctx.popularity.get(s, 0) for s in top10]
        pooled_pop.extend(pops)
        nov.append(M.novelty(pops, ctx.n_train_playlists))
        below.append(M.share_below_median(pops, catalog_median))
        ild.append(M.intra_list_diversity(rec_genres))
    return {
        "queries": len(queries),
        "empty_lists": empty,
        "hit_rate@10": _ci(hr, seed),
        "ndcg@10": _ci(ndcg, seed),
        "recall@50": _ci(rec50, seed),
        "mrr@50": _ci(rr, seed),
        "genre_precision@10": _ci(gp, seed),
        "coverage@10": _num(M.catalog_coverage(lists10, max(len(ctx.catalog), 1), K)),
        "novelty@10": _num(M.mean_finite(nov)),
        "share_below_median@10": _num(M.mean_finite(below)),
        "median_popularity@10": _num(M.median_popularity(pooled_pop)),
        "diversity@10": _num(M.mean_finite(ild)),
    }


def _run_method(
    fn: Callable[[int, int], list[int]], queries: Sequence[Query], desc: str, progress: bool
) -> tuple[list[list[int]], list[list[int]]]:
    # Every ranker here answers k=10 with the prefix of its k=50 list, so one call serves both.
    lists50 = [fn(q.seed, RECALL_K) for q in tqdm(queries, desc=desc, disable=not progress, leave=False)]
    return [x[:K] for x in lists50], lists50


# -- version retrieval ---------------------------------------------------------------------------------


def _read_truth(path: Path) -> Any:
    """The demo's truth file parsed, or None when the dataset has none; unreadable: an EvaluationError."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read ({exc})") from exc


def read_version_groups(data: Path, catalog: Catalog) -> list[list[int]] | None:
    """Groups of canonical ids that are versions of one melody, from ``demo_truth.json``; None if absent.

    Groups are mapped through the catalog's aliases; members merged into one id count once, and groups
    left with fewer than two songs are dropped.
    """
    path = Path(data) / DEMO_TRUTH
    truth = _read_truth(path)
    if truth is None:
        return None
    raw = truth.get("version_groups") if isinstance(truth, dict) else None
    if raw is None:
        logger.warning("%s: no 'version_groups' field; version retrieval skipped", path)
        return None
    if isinstance(raw, dict):
        raw = list(raw.values())
    if not isinstance(raw, list) or not all(isinstance(g, list) for g in raw):
        raise EvaluationError(f"{path}: 'version_groups' must be a list of lists of song ids")
    groups = []
    for g in raw:
        try:
            members = _canonical_list(catalog, [int(x) for x in g])
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"{path}: 'version_groups' holds a non-integer id ({exc})") from exc
        if len(members) >= 2:
            groups.append(members)
    return groups


def planted_merges(data: Path, catalog: Catalog) -> dict[str, dict[str, int]] | None:
    """How the catalog's duplicate merging treated the demo's planted pairs; None without a truth file.

    For re-releases (should merge), version pairs and same-title pieces (should not): how many pairs with
    both songs in the catalog ended up as one canonical song.
    """
    path = Path(data) / DEMO_TRUTH
    truth = _read_truth(path)
    if truth is None:
        return None
    kinds = {
        "re-releases": [(r["source"], r["reissue"]) for r in truth.get("reissues", [])],
        "version pairs": [(g[0], s) for g in truth.get("version_groups", []) for s in g[1:]],
        "same-title pairs": [(g[0], s) for g in truth.get("same_title_groups", []) for s in g[1:]],
    }
    out: dict[str, dict[str, int]] = {}
    for kind, pairs in kinds.items():
        both = [(catalog.canonical(int(a)), catalog.canonical(int(b))) for a, b in pairs]
        both = [(a, b) for a, b in both if a is not None and b is not None]
        out[kind] = {"merged": sum(a == b for a, b in both), "pairs": len(both)}
    return out


def version_retrieval(
    served: Served, groups: list[list[int]], methods: Sequence[str], *, seed: int, progress: bool
) -> dict[str, Any]:
    """MRR and P@1 of finding another version of the seed's melody, per method, over all versioned songs."""
    out: dict[str, Any] = {"groups": len(groups), "songs": sum(len(g) for g in groups)}
    for method in methods:
        rr: list[float] = []
        p1: list[float] = []
        answered = 0
        for g in tqdm(groups, desc=f"versions {method}", disable=not progress, leave=False):
            for s in g:
                recs = served.recommend(s, method, RETRIEVAL_DEPTH)
                if recs:
                    answered += 1
                others = set(g) - {s}
                rr.append(M.reciprocal_rank(recs, others))
                p1.append(M.hit_rate_at_k(recs, others, 1))
        out[method] = {"mrr": _ci(rr, seed), "p@1": _ci(p1, seed), "answered": answered}
    return out


# -- fusion study ----------------------------------------------------------------------------------------


FUSION_VARIANTS: dict[str, dict[str, Any]] = {
    "equal weights (1/r, depth 50)": {"depth": 50, "c": 0.0},
    "served weights (the version's fitted ones)": {"depth": 50, "c": 0.0, "weights": "served"},
    "fitted weights without the co-occurrence list": {"depth": 50, "c": 0.0, "weights": "served-no-cooc"},
    "1/r, depth 10": {"depth": 10, "c": 0.0},
    "1/r, depth 20": {"depth": 20, "c": 0.0},
    "RRF c=10, depth 50": {"depth": 50, "c": 10.0},
    "RRF c=60, depth 50": {"depth": 50, "c": 60.0},
    "1/r, music2vec weight 2": {"depth": 50, "c": 0.0, "weights": {"music2vec": 2.0}},
    "1/r, music2vec weight 3": {"depth": 50, "c": 0.0, "weights": {"music2vec": 3.0}},
    "1/r, music2vec + cel only": {"depth": 50, "c": 0.0, "weights": {"tcae": 0.0}},
    "1/r, weights 1 / 0.5 / 0.25 (music2vec / cel / tcae)": {
        "depth": 50, "c": 0.0, "weights": {"music2vec": 1.0, "cel": 0.5, "tcae": 0.25}},
    "cosine sum (normalised sims)": {"depth": 50, "sims": True},
}


def fuse(
    lists: Mapping[str, Sequence[int]],
    sims: Mapping[str, Sequence[float]] | None = None,
    *,
    depth: int = DEPTH,
    c: float = 0.0,
    weights: Mapping[str, float] | None = None,
    use_sims: bool = False,
) -> list[int]:
    """Fuse per-model candidate lists: ``sum_m w_m / (c + rank)`` or, with ``use_sims``, the sum of
    min-max-normalised similarities. Ties go to the better best rank, then the lower id."""
    weights = weights or {}
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for model, rows in lists.items():
        w = float(weights.get(model, 1.0))
        if w == 0.0:
            continue
        rows = list(rows)[:depth]
        if use_sims and sims is not None:
            s = np.asarray(list(sims[model])[:depth], dtype=np.float64)
            span = float(s.max() - s.min()) if len(s) else 0.0
            contrib = (s - s.min()) / span if span > 0 else np.ones_like(s)
        else:
            contrib = np.array([1.0 / (c + r) for r in range(1, len(rows) + 1)])
        for rank, (sid, v) in enumerate(zip(rows, contrib.tolist(), strict=True), start=1):
            scores[sid] = scores.get(sid, 0.0) + w * v
            best[sid] = min(best.get(sid, rank), rank)
    return sorted(scores, key=lambda s: (-scores[s], best[s], s))


def fusion_study(
    ctx: EvalContext,
    served: Served,
    queries: Sequence[Query],
    *,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Hit rate and nDCG of fusion variants over the served single-model lists (depth 50, query excluded)."""
    per_query: list[tuple[dict[str, list[int]], dict[str, list[float]]]] = []
    for q in tqdm(queries, desc="fusion study", disable=not progress, leave=False):
        lists, sims = served.model_lists(q.seed, DEPTH)
        per_query.append((lists, sims))
    out: dict[str, Any] = {}
    served_w = dict(served.engine.weights)
    for name, spec in FUSION_VARIANTS.items():
        hr, nd = [], []
        weights = spec.get("weights")
        if weights == "served":
            weights = served_w
        elif weights == "served-no-cooc":
            weights = {**served_w, COOC: 0.0}
        for q, (lists, sims) in zip(queries, per_query, strict=True):
            top = fuse(lists, sims, depth=spec.get("depth", DEPTH), c=spec.get("c", 0.0),
                       weights=weights, use_sims=spec.get("sims", False))[:K]
            hr.append(M.hit_rate_at_k(top, q.relevant, K))
            nd.append(M.ndcg_at_k(top, q.relevant, K))
        out[name] = {"hit_rate@10": _ci(hr, seed), "ndcg@10": _ci(nd, seed)}
    return out


# -- practitioners' baselines and the paired comparison ------------------------------------------------


def ease_baseline(
    ctx: EvalContext,
    warm: Sequence[Query],
    cold: Sequence[Query],
    results: dict[str, Any],
    warm_top10: dict[str, list[list[int]]],
    *,
    seed: int,
    progress: bool,
    max_songs: int = EASE_MAX_SONGS,
) -> dict[str, Any]:
    """Run EASE at every regularisation of :data:`EASE_LAMBDAS` and keep the best on these queries.

    Adds ``ease`` to ``results["warm"]``/``["cold_start"]`` and to ``warm_top10``; returns what was done
    (per-lambda figures, or why it was skipped: more songs than ``max_songs``).
    """
    fits, n = EASE.fits(ctx.train_playlists, max_songs)
    if not fits:
        logger.info("EASE skipped: %d songs with history > %d", n, max_songs)
        return {"skipped": f"{n:,} songs with playlist history > {max_songs:,} (a dense {n:,}^2 inverse)", "songs": n}
    per_lambda: dict[str, Any] = {}
    best: tuple[float, float, list[list[int]], list[list[int]]] | None = None
    seconds = 0.0
    for lam in EASE_LAMBDAS:
        model = EASE(ctx.train_playlists, lam)
        seconds += model.seconds
        l10, l50 = _run_method(model, warm, f"warm ease {lam:g}", progress)
        hr = M.mean_finite(M.hit_rate_at_k(r, q.relevant, K) for r, q in zip(l10, warm, strict=True))
        nd = M.mean_finite(M.ndcg_at_k(r, q.relevant, K) for r, q in zip(l10, warm, strict=True))
        per_lambda[f"{lam:g}"] = {"hit_rate@10": _num(hr), "ndcg@10": _num(nd), "fit_s": model.seconds}
        if best is None or hr + nd > best[1]:
            best = (lam, hr + nd, l10, l50)
        del model
    assert best is not None
    lam, _, l10, l50 = best
    results["warm"]["ease"] = score_lists(ctx, warm, l10, l50, seed=seed)
    # A seed no training playlist holds has no row in EASE: cold-start queries get empty lists.
    results["cold_start"]["ease"] = (score_lists(ctx, cold, [[] for _ in cold], [[] for _ in cold], seed=seed)
                                     if cold else {"queries": 0})
    warm_top10["ease"] = l10
    return {"songs": n, "lambda": lam, "per_lambda": per_lambda, "fit_s": round(seconds, 3),
            "note": "lambda chosen on these held-out queries: favours the baseline"}


def paired_comparison(
    queries: Sequence[Query],
    top10: Mapping[str, Sequence[Sequence[int]]],
    warm: Mapping[str, Any],
    *,
    seed: int,
    method: str = "score_total",
) -> dict[str, Any]:
    """Bootstrap intervals of the per-query difference ``method`` minus each rival, on HR@10 and nDCG@10.

    The rivals are the best practitioner baseline (per metric, by mean) and every single model. The
    queries are resampled together, so the interval is of the paired difference.
    """
    if method not in top10:
        return {}
    per: dict[str, dict[str, np.ndarray]] = {}
    for name, lists in top10.items():
        per[name] = {
            "hit_rate@10": np.array([M.hit_rate_at_k(r, q.relevant, K) for r, q in zip(lists, queries, strict=True)]),
            "ndcg@10": np.array([M.ndcg_at_k(r, q.relevant, K) for r, q in zip(lists, queries, strict=True)]),
        }
    out: dict[str, Any] = {"method": method, "queries": len(queries)}
    for metric in ("hit_rate@10", "ndcg@10"):
        block: dict[str, Any] = {}
        present = [b for b in PRACTITIONER_BASELINES if b in per]
        if present:
            best = max(present, key=lambda b: (float(per[b][metric].mean()), b))
            block["best_baseline"] = best
            block["vs_best_baseline"] = _ci(per[method][metric] - per[best][metric], seed)
        for rival in (*present, *MODEL_NAMES, SERVED_LIST):
            if rival in per and rival != method:
                block[f"vs_{rival}"] = _ci(per[method][metric] - per[rival][metric], seed)
        out[metric] = block
    return out


# -- targets -------------------------------------------------------------------------------------------


def _mean(block: Mapping[str, Any] | None, metric: str) -> float | None:
    if not block:
        return None
    value = block.get(metric)
    return value.get("mean") if isinstance(value, Mapping) else value


def check_targets(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets on the demo data, each with its measured value and whether it is met."""
    warm = results.get("warm", {})
    cold = results.get("cold_start", {})
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, value: float | None, threshold: float | None, met: bool | None, note: str) -> None:
        out[name] = {"value": _num(value) if value is not None else None,
                     "threshold": _num(threshold) if threshold is not None else None,
                     "met": met, "rule": note}

    hr = {m: _mean(warm.get(m), "hit_rate@10") for m in warm}
    for metric, short in (("hit_rate@10", "HitRate@10"), ("ndcg@10", "nDCG@10")):
        values = {m: v for m in warm if (v := _mean(warm.get(m), metric)) is not None}
        own = values.get("score_total")
        key = "" if metric == "hit_rate@10" else "_ndcg"
        best_single = {m: values[m] for m in MODEL_NAMES if m in values}
        if own is not None and best_single:
            best = max(best_single.values())
            put(f"score_total_vs_best_single{key}", own, best, own >= best,
                f"score_total {short} >= best single model's")
        rivals = {b: values[b] for b in PRACTITIONER_BASELINES if b in values}
        if own is not None and rivals:
            name = max(rivals, key=lambda b: (rivals[b], b))
            put(f"score_total_vs_best_baseline{key}", own, rivals[name], own >= rivals[name],
                f"score_total {short} >= best of co-occurrence, item-kNN, EASE ({name})")
    singles = {m: v for m in MODEL_NAMES if (v := hr.get(m)) is not None}
    pop = hr.get("most_popular")
    for m, single in singles.items():
        if pop is not None:
            put(f"{m}_beats_most_popular", single, pop, single > pop, f"{m} HitRate@10 > most_popular's")
    ver = results.get("version_retrieval") or {}
    if isinstance(ver.get("tcae"), Mapping):
        p1 = ver["tcae"]["p@1"]["mean"]
        put("tcae_version_p@1", p1, 0.9, p1 is not None and p1 >= 0.9,
            "TCAE ranks another version first for >= 90% of versioned songs")
    cold_hr = _mean(cold.get("cel"), "hit_rate@10")
    warm_hr = hr.get("cel")
    if cold_hr is not None and warm_hr:
        put("cel_cold_vs_warm", cold_hr, warm_hr / 2, cold_hr >= warm_hr / 2,
            "cold-start cel HitRate@10 >= half of warm cel HitRate@10")
    sweep = {row["novelty"]: row for row in results.get("novelty_sweep", {}).get("score_total", [])}
    if 0.0 in sweep and 0.5 in sweep:
        base, half = sweep[0.0], sweep[0.5]
        pop0, pop5 = base["median_popularity@10"], half["median_popularity@10"]
        if pop0 is not None and pop5 is not None:
            ratio = pop5 / pop0 if pop0 else None
            put("novelty_halves_popularity", ratio, 0.5, ratio is not None and ratio <= 0.5,
                "median popularity at novelty 0.5 / at 0 <= 0.5")
        if base["hit_rate@10"]:
            # From the hit counts where recorded (the rates are rounded to 5 digits: 126 of 140 hits, exactly
            # 10 %, would read 10.0015 %).
            hits0, hits5 = base.get("hits@10"), half.get("hits@10")
            cost = 1.0 - (hits5 / hits0 if hits0 else half["hit_rate@10"] / base["hit_rate@10"])
            put("novelty_hit_rate_cost", cost, 0.1, cost <= 0.1, "relative HitRate@10 loss at novelty 0.5 <= 10%")
    out.update(steering_targets(results.get("steering") or {}))
    return out


# -- the entry point -----------------------------------------------------------------------------------


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    text = json.dumps(payload, ensure_ascii=False, indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=".metrics-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def per_query_arrays(
    ctx: EvalContext,
    queries: Sequence[Query],
    top10: Mapping[str, Sequence[Sequence[int]]],
    novelty_top10: Mapping[float, Sequence[Sequence[int]]],
) -> dict[str, np.ndarray]:
    """The warm queries' figures one by one, as ``per_query.npz`` holds them.

    Keys: ``playlist_id`` and ``seed`` (the query), ``hit_rate@10/<method>`` and ``ndcg@10/<method>`` for every
    method and baseline scored, and per novelty level of ``score_total`` ``novelty/<level>/hit`` and
    ``novelty/<level>/popularity`` (the top 10's training-playlist counts, -1 where a list is shorter), from
    which a pooled median popularity and hit-rate cost can be recomputed over several evaluations.
    """
    out: dict[str, np.ndarray] = {
        "playlist_id": np.array([q.playlist_id for q in queries], dtype=np.int64),
        "seed": np.array([q.seed for q in queries], dtype=np.int64),
    }
    for name, lists in top10.items():
        pairs = list(zip(lists, queries, strict=True))
        out[f"hit_rate@10/{name}"] = np.array([M.hit_rate_at_k(r, q.relevant, K) for r, q in pairs], dtype=np.float64)
        out[f"ndcg@10/{name}"] = np.array([M.ndcg_at_k(r, q.relevant, K) for r, q in pairs], dtype=np.float64)
    for level, lists in novelty_top10.items():
        pairs = list(zip(lists, queries, strict=True))
        pops = np.full((len(queries), K), -1, dtype=np.int64)
        for i, r in enumerate(lists):
            pops[i, : len(r[:K])] = [ctx.popularity.get(s, 0) for s in r[:K]]
        out[f"novelty/{level:g}/hit"] = np.array([M.hit_rate_at_k(r, q.relevant, K) for r, q in pairs], float)
        out[f"novelty/{level:g}/popularity"] = pops
    return out


def save_per_query(
    path: Path,
    ctx: EvalContext,
    queries: Sequence[Query],
    top10: Mapping[str, Sequence[Sequence[int]]],
    novelty_top10: Mapping[float, Sequence[Sequence[int]]],
) -> None:
    """Write :func:`per_query_arrays` to ``path`` (an ``.npz`` without pickled objects), replacing it whole."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **per_query_arrays(ctx, queries, top10, novelty_top10))  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    os.replace(tmp, path)


def _served_rank(served: Served, method: str, seed_song: int, k: int) -> list[int]:
    """A ranker ``(seed, k) -> ids`` once ``served`` and ``method`` are bound."""
    return served.recommend(seed_song, method, k)


def evaluate(
    data: Path,
    artifacts: Path,
    *,
    version: str | None = None,
    max_playlists: int | None = 1000,
    seed: int = 0,
    report_dir: Path | None = None,
    fusion: bool = True,
    progress: bool = True,
    report: bool = True,
    ease_max_songs: int = EASE_MAX_SONGS,
) -> dict[str, Any]:
    """Evaluate one artifacts version on its held-out playlists and write ``metrics.json`` and a report.

    Parameters
    ----------
    data : the dataset folder the version was trained on (Melon layout).
    artifacts : the artifacts folder.
    version : the version's folder name; ``current`` when None.
    max_playlists : at most this many held-out playlists (drawn with ``seed``); None for all.
    seed : seeds the playlist sample, the seed songs, the random baseline and the bootstrap.
    report_dir : where the Markdown report and its plots go; ``<version>/report`` when None.
    fusion : also run the fusion study (alternative ways to fuse the served candidate lists).
    progress : show progress bars.
    report : write the Markdown report and plots (``metrics.json`` is always written).
    ease_max_songs : run EASE only up to this many songs with playlist history (a dense square inverse).

    Returns
    -------
    dict
        What ``metrics.json`` holds: per query set and method, the metrics with bootstrap intervals;
        version retrieval, the novelty sweep, the fusion study, and the targets.

    Raises
    ------
    mugle_core.artifacts.ArtifactError
        When the version is missing or incomplete.
    EvaluationError
        When the version has no held-out playlists, or the dataset does not match it.
    """
    if max_playlists is not None and max_playlists < 1:
        raise ValueError(f"max_playlists: must be at least 1, got {max_playlists}")
    started = time.perf_counter()
    version_dir = resolve_version(Path(artifacts), version)
    ctx = load_context(Path(data), version_dir)
    served = Served(version_dir)
    baselines = Baselines(ctx, seed=seed)
    warm, cold = build_queries(ctx, max_playlists=max_playlists, seed=seed)
    if not warm:
        raise EvaluationError(f"{version_dir.name}: no held-out playlist has two catalog songs with a warm seed")
    logger.info("evaluating %s: %d warm and %d cold-start queries", version_dir.name, len(warm), len(cold))

    rankers: dict[str, Callable[[int, int], list[int]]] = {
        m: functools.partial(_served_rank, served, m) for m in SERVED_METHODS
    }
    if served.engine.cooc is not None:
        rankers[SERVED_LIST] = served.cooc_list
    rankers.update({b: baselines.ranker(b) for b in BASELINES})
    results: dict[str, Any] = {
        "version": version_dir.name,
        "data": str(data),
        "seed": seed,
        "protocol": {
            "k": K, "recall_k": RECALL_K, "depth": DEPTH, "bootstrap": "percentile, 1000 resamples, 95%",
            "warm_seed": "one song per held-out playlist that some training playlist contains",
            "cold_seed": "every song of a held-out playlist that no training playlist contains, with audio",
            "truth": "the other songs of the same held-out playlist (canonical ids)",
            "novelty": "mean -log2((pop+1)/(training playlists+1)) of the top 10",
        },
        "counts": {
            "catalog_songs": len(ctx.catalog),
            "training_playlists": ctx.n_train_playlists,
            "holdout_playlists": len(ctx.holdout_playlists),
            "warm_queries": len(warm),
            "cold_queries": len(cold),
            "catalog_median_popularity": float(np.median(ctx.catalog.popularity)) if len(ctx.catalog) else 0.0,
            **ctx.counts,
        },
    }
    timings: dict[str, float] = {}
    warm_top10: dict[str, list[list[int]]] = {}
    for set_name, queries in (("warm", warm), ("cold_start", cold)):
        block: dict[str, Any] = {}
        for name, fn in rankers.items():
            t0 = time.perf_counter()
            l10, l50 = _run_method(fn, queries, f"{set_name} {name}", progress)
            block[name] = score_lists(ctx, queries, l10, l50, seed=seed) if queries else {"queries": 0}
            timings[f"{set_name}/{name}"] = round(time.perf_counter() - t0, 3)
            if set_name == "warm":
                warm_top10[name] = l10
        results[set_name] = block

    t0 = time.perf_counter()
    results["ease"] = ease_baseline(ctx, warm, cold, results, warm_top10, seed=seed, progress=progress,
                                    max_songs=ease_max_songs)
    timings["ease"] = round(time.perf_counter() - t0, 3)
    results["paired"] = paired_comparison(warm, warm_top10, results["warm"], seed=seed)
    results["planted_duplicates"] = planted_merges(Path(data), ctx.catalog)
    groups = read_version_groups(Path(data), ctx.catalog)
    if groups:
        methods = [m for m in RETRIEVAL_METHODS if m in served.models or m == "score_total"]
        results["version_retrieval"] = version_retrieval(served, groups, methods, seed=seed, progress=progress)
    else:
        results["version_retrieval"] = None

    sweep: list[dict[str, Any]] = []
    novelty_top10: dict[float, list[list[int]]] = {}
    for level in NOVELTY_LEVELS:
        l10 = [served.recommend(q.seed, "score_total", K, novelty=level)
               for q in tqdm(warm, desc=f"novelty {level}", disable=not progress, leave=False)]
        novelty_top10[level] = l10
        pooled = [ctx.popularity.get(s, 0) for lst in l10 for s in lst]
        pairs = list(zip(l10, warm, strict=True))
        hits = [M.hit_rate_at_k(r, q.relevant, K) for r, q in pairs]
        sweep.append({
            "novelty": level,
            # The count as well as the rate: the cost target compares counts, not rates rounded for the report.
            "hits@10": int(sum(hits)),
            "hit_rate@10": _num(M.mean_finite(hits)),
            "ndcg@10": _num(M.mean_finite(M.ndcg_at_k(r, q.relevant, K) for r, q in pairs)),
            "median_popularity@10": _num(M.median_popularity(pooled)),
            "novelty@10": _num(M.mean_finite(M.novelty([ctx.popularity.get(s, 0) for s in r], ctx.n_train_playlists)
                                             for r in l10)),
        })
    results["novelty_sweep"] = {"score_total": sweep}

    t0 = time.perf_counter()
    results["steering"] = evaluate_steering(ctx, served.engine, warm, seed=seed, progress=progress)
    timings["steering"] = round(time.perf_counter() - t0, 3)

    if fusion:
        t0 = time.perf_counter()
        results["fusion_study"] = fusion_study(ctx, served, warm, seed=seed, progress=progress)
        timings["fusion_study"] = round(time.perf_counter() - t0, 3)
    results["targets"] = check_targets(results)
    timings["total"] = round(time.perf_counter() - started, 3)
    results["timings"] = timings

    if report:
        from evaluation.report import write_report

        out_dir = Path(report_dir) if report_dir is not None else version_dir / "report"
        results["report"] = str(write_report(results, version_dir, out_dir, seed=seed))
        results["timings"]["total"] = round(time.perf_counter() - started, 3)
    save_per_query(version_dir / PER_QUERY, ctx, warm, warm_top10, novelty_top10)
    _write_json_atomic(version_dir / METRICS, results)
    logger.info("wrote %s in %.1f s", version_dir / METRICS, time.perf_counter() - started)
    return results


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mugle evaluate``."""
    parser.add_argument("--data", required=True, help="dataset folder the version was trained on")
    parser.add_argument("--artifacts", default="artifacts", help="artifacts folder (default: artifacts)")
    parser.add_argument("--version", default=None, help="version folder name (default: current)")
    parser.add_argument("--max-playlists", type=int, default=1000,
                        help="evaluate at most this many held-out playlists (default 1000; 0 = all)")
    parser.add_argument("--seed", type=int, default=0, help="seeds sampling, seeds and bootstrap (default 0)")
    parser.add_argument("--report-dir", default=None, help="report folder (default: <version>/report)")
    parser.add_argument("--no-fusion-study", action="store_true", help="skip the fusion study")
    parser.add_argument("--no-report", action="store_true", help="write metrics.json only")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--ease-max-songs", type=int, default=EASE_MAX_SONGS,
                        help=f"run the EASE baseline up to this many songs with history (default {EASE_MAX_SONGS:,})")


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """A short text table of the warm results and the targets, for the terminal."""
    lines = [f"{'method':<22}{'HR@10':>8}{'nDCG@10':>9}{'R@50':>8}{'medPop':>8}{'cold HR':>9}"]
    for name, block in results.get("warm", {}).items():
        cold = results.get("cold_start", {}).get(name, {})

        def f(x: Any) -> str:
            return "   -" if x is None else f"{x:.3f}"

        lines.append(
            f"{name:<22}{f(_mean(block, 'hit_rate@10')):>8}{f(_mean(block, 'ndcg@10')):>9}"
            f"{f(_mean(block, 'recall@50')):>8}{f(block.get('median_popularity@10')):>8}"
            f"{f(_mean(cold, 'hit_rate@10')):>9}"
        )
    ease = results.get("ease") or {}
    if "skipped" in ease:
        lines.append(f"ease: skipped ({ease['skipped']})")
    paired = results.get("paired") or {}
    for metric in ("hit_rate@10", "ndcg@10"):
        block = paired.get(metric) or {}
        ci = block.get("vs_best_baseline")
        if ci:
            lines.append(f"paired {metric}: score_total - {block['best_baseline']} = {ci['mean']:+.3f} "
                         f"[{ci['low']:+.3f}, {ci['high']:+.3f}]")
    for name, t in results.get("targets", {}).items():
        verdict = "reported" if t["met"] is None else "met" if t["met"] else "MISSED"
        lines.append(f"target {name}: {t['value']} vs {t['threshold']} -> {verdict}")
    return lines


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``mugle evaluate``; 0 on success, 2 with a one-line error otherwise."""
    import sys

    try:
        results = evaluate(
            Path(args.data), Path(args.artifacts), version=args.version,
            max_playlists=None if args.max_playlists == 0 else args.max_playlists, seed=args.seed,
            report_dir=Path(args.report_dir) if args.report_dir else None,
            fusion=not args.no_fusion_study, progress=not args.quiet, report=not args.no_report,
            ease_max_songs=args.ease_max_songs,
        )
    except (ArtifactError, EvaluationError, ValueError, OSError) as exc:
        print(f"mugle evaluate: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(results)))
    where = results.get("report")
    print(f"metrics: {Path(args.artifacts) / results['version'] / METRICS}" + (f"\nreport: {where}" if where else ""))
    return 0
