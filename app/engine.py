"""The loaded artifacts version and the recommendation logic on top of it.

:meth:`Engine.load` validates a version folder completely (manifest, catalog, every index and its
row maps) and refuses it with an :class:`~mugle_core.artifacts.ArtifactError` naming the problem, so a served
engine is always consistent. Nothing here imports torch or gensim.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from app import ranking, steering
from app.cooc import CoocLists
from app.errors import ClientError
from app.filtered import IndexScan, RowFilter, filtered_search
from app.fused import FusedLists
from app.rowfile import NpyRows
from app.search import TitleSearch
from app.steering import CatalogFilter, Steering
from app.tags import TagIndex, UnknownTagError
from mugle_core.artifacts import (
    CATALOG,
    COOC,
    EXTRAS_DIR,
    FUSED,
    MODEL_NAMES,
    ArtifactError,
    Manifest,
    check_version_files,
    ids_file,
    index_file,
    knn_file,
    knn_sims_file,
    query_file,
    read_manifest,
    tags_file,
)
from mugle_core.catalog import SEP, Catalog
from mugle_core.searchindex import SEARCH_INDEX
from mugle_core.tagtable import TagTable

logger = logging.getLogger(__name__)

# Extra neighbours fetched beyond the depth, so that a few excluded or filtered songs do not shorten lists.
_SLACK = 8
# Song dicts kept decoded; popular songs recur across answers. ~1 kB each, so this bounds it near 64 MB.
_SONG_CACHE = 65_536
# How far down the catalog's popularity order a cold-start query's popularity list may look when a filter
# rejects songs (the list stays shorter past it; the audio lists still answer).
_POPULAR_ROWS = 4096


# The tag's counted songs (how many of its training playlists hold each) join the models' lists under
# this name. For a tag, score_total weighs the lists with TAG_FUSION_WEIGHTS: measured on two demo catalogs'
# held-out playlists (docs/notes/steering.md), the counted list carries the most, Music2Vec's neighbours of
# the tag vector add to it, and the audio lists (a tag is a situation, not a sound) only dilute it.
TAG_LIST = "playlists"
TAG_FUSION_WEIGHTS: dict[str, float] = {TAG_LIST: 1.0, "music2vec": 0.5, "cel": 0.1, "tcae": 0.05}


class UnknownSongError(LookupError):
    """One or more song ids are not in the catalog (neither canonical nor merged duplicates)."""

    def __init__(self, ids: Sequence[int], what: str = "song id(s)") -> None:
        self.ids = list(ids)
        super().__init__(f"unknown {what}: {', '.join(str(i) for i in self.ids)}")


@dataclass
class ModelIndex:
    """One model's FAISS index and the maps between its rows and catalog rows."""

    name: str
    index: Any
    ids: np.ndarray
    query: NpyRows
    catalog_rows: np.ndarray  # index row -> catalog row
    row_of_catalog: np.ndarray  # catalog row -> query row, -1 when the song has no vector in this model
    hnsw: bool
    threads: int = 1
    knn: NpyRows | None = None  # query row -> its precomputed nearest index rows (see mugle_core.artifacts.knn_file)
    knn_sims: NpyRows | None = None
    scan: IndexScan | None = None  # how a filtered search reaches only the passing rows (app.filtered)

    def __post_init__(self) -> None:
        if self.scan is None:
            self.scan = IndexScan(self.index)

    def neighbours(
        self, qrow: int, exclude: set[int], depth: int, keep: Callable[[int], bool] | None = None
    ) -> tuple[list[int], list[float]] | None:
        """The candidate list of query row ``qrow`` read from the precomputed lists, as catalog rows.

        Cleaned by :func:`app.ranking.candidate_list` like a search result, so it gives the same rows a
        search would. Returns None when there are no lists, or when they run out before ``depth``
        candidates while the index holds more songs (many exclusions, or a strict ``keep``): the caller
        then searches.
        """
        if self.knn is None or self.knn_sims is None:
            return None
        found = self.knn[qrow]
        if len(found) == 0:
            return None
        lowest, highest = int(found.min()), int(found.max())
        if highest >= len(self.catalog_rows):
            logger.error("%s: row %d lists index row %d of %d; searching instead", self.name, qrow, highest,
                         len(self.catalog_rows))
            return None
        mapped = self.catalog_rows[found]
        if lowest < 0:
            mapped = np.where(found >= 0, mapped, -1)  # keep the pads as pads, not as the last row
        rows, sims = ranking.candidate_list(mapped, self.knn_sims[qrow], exclude, depth, keep)
        # A pad means the index had nothing more for this query; a full list may have stopped short.
        complete = lowest < 0 or len(found) >= self.index.ntotal
        return (rows, sims) if len(rows) >= depth or complete else None

    def search(self, vector: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest keys of one query vector, as (catalog rows, similarities); rows -1 pad a short result."""
        fetch = max(1, min(fetch, self.index.ntotal))
        x = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        # OpenMP's thread count is per calling thread: set it in each request thread, not once at load.
        faiss.omp_set_num_threads(self.threads)
        if self.hnsw:
            # The build tuned efSearch for recall; only raise it when more neighbours than that are asked
            # for (HNSW returns at most efSearch). Per-call parameters: the shared index is never mutated.
            params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]  # absent from faiss's stubs
                efSearch=max(self.index.hnsw.efSearch, fetch)
            )
            sims, rows = self.index.search(x, fetch, params=params)
        else:
            # IVF and flat indexes carry their own nprobe (tuned when they were built).
            sims, rows = self.index.search(x, fetch)
        rows = rows[0]
        mapped = np.where(rows >= 0, self.catalog_rows[np.maximum(rows, 0)], -1)
        return mapped, np.asarray(sims[0])


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read array ({exc})") from exc


def _load_rows(path: Path) -> NpyRows:
    """Row access to a large per-song array; requests read single rows (see :mod:`app.rowfile`)."""
    try:
        return NpyRows(path)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read array ({exc})") from exc


class Engine:
    """Catalog, per-model indexes and title search of one artifacts version."""

    def __init__(
        self,
        version_dir: Path,
        manifest: Manifest,
        catalog: Catalog,
        models: dict[str, ModelIndex],
        search: TitleSearch,
        load_seconds: float = 0.0,
        cooc: CoocLists | None = None,
        weights: Mapping[str, float] | None = None,
        tags: TagIndex | None = None,
        fused: FusedLists | None = None,
    ) -> None:
        self.version_dir = Path(version_dir)
        self.manifest = manifest
        self.catalog = catalog
        self.models = models
        self.cooc = cooc
        # score_total's per-source weights: fitted for this version at training time (manifest
        # ``ranking.fusion.weights``), or the constant fallback for versions from before that.
        self.weights = dict(weights) if weights is not None else ranking.fusion_weights(manifest.ranking)
        # The rank offset the weights were fitted with (0, the plain 1/rank, for versions from before it).
        self.fusion_offset = ranking.fusion_offset(manifest.ranking)
        # How a query without playlist history is fused (fitted per version, or the constant audio fusion),
        # and, when that fusion weighs it, the catalog by popularity for its popularity list.
        self.cold = ranking.cold_fusion(manifest.ranking)
        self._popular = ranking.popular_order(catalog.popularity, _POPULAR_ROWS) if self.cold.popular else None
        self.novelty_strength = ranking.novelty_strength(manifest.ranking)
        self.novelty_head = ranking.novelty_head(manifest.ranking)
        self.novelty_cap_quantile = ranking.novelty_cap_quantile(manifest.ranking)
        # What the cap's quantiles are taken of (sorted once: a request looks one value up).
        self._cap_levels = ranking.cap_levels(catalog.popularity) if self.novelty_cap_quantile is not None else None
        self.search_index = search
        self.load_seconds = load_seconds
        self.tags = tags
        # score_total fused at training time; None fuses every request (older versions, or set so by tests).
        self.fused = fused
        # Genre and year masks for the steering filters; load() builds its per-row facts (CatalogFilter.warm).
        self.filters = CatalogFilter(catalog)
        self._artists_cache: dict[int, frozenset[str]] = {}
        self._duplicates = self._merged_groups(catalog)
        # Per engine, so a hot swap never serves the old version's songs.
        self._song = functools.lru_cache(maxsize=_SONG_CACHE)(catalog.song)
        self._song_json = functools.lru_cache(maxsize=_SONG_CACHE)(self.encode_song)

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, version_dir: Path, faiss_threads: int = 1) -> Engine:
        """Load and validate one version folder.

        Raises
        ------
        ArtifactError
            naming the file and the inconsistency when anything is missing or does not match.
        """
        start = time.perf_counter()
        version_dir = Path(version_dir)
        if not version_dir.is_dir():
            raise ArtifactError(f"{version_dir}: version folder does not exist")
        faiss.omp_set_num_threads(max(1, faiss_threads))
        manifest = read_manifest(version_dir)
        check_version_files(version_dir, manifest)
        try:
            catalog = Catalog.load(version_dir / CATALOG)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"{version_dir / CATALOG}: cannot load catalog ({exc})") from exc
        if manifest.songs != len(catalog):
            raise ArtifactError(
                f"{version_dir / CATALOG}: has {len(catalog)} songs but manifest.json says songs={manifest.songs}"
            )
        if len(catalog.alias_from) and np.any(np.diff(catalog.alias_from) <= 0):
            raise ArtifactError(f"{version_dir / CATALOG}: alias_from must be strictly ascending")
        if len(catalog.alias_to) and not np.all(np.isin(catalog.alias_to, catalog.song_ids)):
            raise ArtifactError(f"{version_dir / CATALOG}: alias_to names ids that are not catalog songs")
        if not manifest.models:
            raise ArtifactError(f"{version_dir}/manifest.json: lists no models")
        models = {name: cls._load_model(version_dir, manifest, catalog, name) for name in manifest.models}
        for mi in models.values():
            mi.threads = max(1, faiss_threads)
        try:
            weights = ranking.fusion_weights(manifest.ranking)
            ranking.fusion_offset(manifest.ranking)
            ranking.novelty_strength(manifest.ranking)
            ranking.novelty_head(manifest.ranking)
            ranking.novelty_cap_quantile(manifest.ranking)
            cold = ranking.cold_fusion(manifest.ranking)
        except ValueError as exc:
            raise ArtifactError(f"{version_dir}/manifest.json: {exc}") from exc
        cooc = None
        cooc_record = manifest.ranking.get(COOC)
        if cooc_record:
            if not isinstance(cooc_record, dict):
                raise ArtifactError(f"{version_dir}/manifest.json: ranking.cooc must be an object")
            cooc = CoocLists.load(version_dir, cooc_record, catalog.song_ids)
        search = TitleSearch.for_catalog(catalog, version_dir / EXTRAS_DIR / SEARCH_INDEX)
        tags = cls._load_tags(version_dir, manifest, catalog, models)
        fused = None
        fused_record = manifest.ranking.get(FUSED)
        if fused_record:
            if not isinstance(fused_record, dict):
                raise ArtifactError(f"{version_dir}/manifest.json: ranking.fused must be an object")
            lists = [*models, *([COOC] if cooc is not None else [])]
            fused = FusedLists.load(version_dir, fused_record, len(catalog), lists, weights,
                                    ranking.fusion_offset(manifest.ranking), cold)
        # Every request reads a row of each list: have them read ahead into the page cache. Asked last, so
        # that from a cold cache this background reading does not delay the files loaded above.
        for mi in models.values():
            for rows in (mi.knn, mi.knn_sims):
                if rows is not None:
                    rows.prefetch()
        for source in (cooc, fused):
            if source is not None:
                source.prefetch()
        engine = cls(version_dir, manifest, catalog, models, search, cooc=cooc, weights=weights, tags=tags,
                     fused=fused)
        # The steering filters' per-row years and genre rows (about 0.3 s at 700k songs): built here rather
        # than inside the first filtered request.
        engine.filters.warm()
        engine.load_seconds = time.perf_counter() - start
        logger.info(
            "loaded version %s: %d songs, models %s in %.2f s",
            manifest.version,
            len(catalog),
            {m: mi.index.ntotal for m, mi in models.items()},
            engine.load_seconds,
        )
        return engine

    @staticmethod
    def _load_tags(
        version_dir: Path, manifest: Manifest, catalog: Catalog, models: Mapping[str, ModelIndex]
    ) -> TagIndex | None:
        """The version's playlist tags when its manifest lists them (older versions have none)."""
        if tags_file() not in manifest.tags.get("files", []):
            return None
        path = version_dir / tags_file()
        try:
            table = TagTable.load(path)
            index = TagIndex(table, catalog.song_ids, catalog.popularity)
        except ValueError as exc:
            raise ArtifactError(f"{path}: {exc}") from exc
        for name, vecs in table.vectors.items():
            if name in models and vecs.shape[1] != models[name].index.d:
                raise ArtifactError(f"{path}: vector_{name} has dim {vecs.shape[1]}, the index {models[name].index.d}")
        return index

    @staticmethod
    def _load_model(version_dir: Path, manifest: Manifest, catalog: Catalog, name: str) -> ModelIndex:
        entry = manifest.models[name]
        ipath, idpath, qpath = (version_dir / f(name) for f in (index_file, ids_file, query_file))
        for p in (ipath, idpath, qpath):
            if not p.is_file():
                raise ArtifactError(f"{p}: missing file of model {name!r}")
        try:
            index = faiss.read_index(str(ipath))
        except RuntimeError as exc:
            raise ArtifactError(f"{ipath}: cannot read FAISS index ({str(exc).splitlines()[0]})") from exc
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ArtifactError(f"{ipath}: index must use inner product (metric_type {index.metric_type})")
        ids = _load_array(idpath)
        query = _load_rows(qpath)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ArtifactError(f"{idpath}: must be a 1-D integer array, got {ids.dtype} {ids.shape}")
        if query.ndim != 2 or query.dtype != np.float32:
            raise ArtifactError(f"{qpath}: must be a 2-D float32 array, got {query.dtype} {query.shape}")
        counts = {
            "index ntotal": index.ntotal,
            "ids": len(ids),
            "query rows": len(query),
            "manifest count": entry.count,
        }
        if len(set(counts.values())) != 1:
            raise ArtifactError(f"model {name!r} in {version_dir}: row counts disagree {counts}")
        dims = {"index d": index.d, "query dim": query.shape[1], "manifest dim": entry.dim}
        if len(set(dims.values())) != 1:
            raise ArtifactError(f"model {name!r} in {version_dir}: dimensions disagree {dims}")
        ids = ids.astype(np.int64, copy=False)
        if len(ids) and np.any(np.diff(ids) <= 0):
            raise ArtifactError(f"{idpath}: song ids must be strictly ascending")
        catalog_rows = np.searchsorted(catalog.song_ids, ids)
        known = catalog_rows < len(catalog.song_ids)
        known[known] = catalog.song_ids[catalog_rows[known]] == ids[known]
        if not np.all(known):
            bad = ids[~known][:5].tolist()
            raise ArtifactError(f"{idpath}: {int((~known).sum())} ids are not canonical catalog songs, e.g. {bad}")
        sample = np.asarray(query[: min(len(query), 256)], dtype=np.float64)
        if len(sample) and not np.allclose(np.linalg.norm(sample, axis=1), 1.0, atol=1e-3):
            raise ArtifactError(f"{qpath}: query vectors must be L2-normalised")
        row_of_catalog = np.full(len(catalog), -1, dtype=np.int64)
        row_of_catalog[catalog_rows] = np.arange(len(ids))
        hnsw = "HNSW" in type(index).__name__
        knn, knn_sims = Engine._load_neighbours(version_dir, entry.files, name, len(ids))
        return ModelIndex(
            name, index, ids, query, catalog_rows.astype(np.int64), row_of_catalog, hnsw, knn=knn, knn_sims=knn_sims
        )

    @staticmethod
    def _load_neighbours(
        version_dir: Path, files: Sequence[str], name: str, count: int
    ) -> tuple[NpyRows | None, NpyRows | None]:
        """Open a model's precomputed neighbour lists when its manifest lists them."""
        listed = [f in files for f in (knn_file(name), knn_sims_file(name))]
        if not any(listed):
            return None, None
        if not all(listed):
            raise ArtifactError(
                f"{version_dir}/manifest.json: model {name!r} lists only one of {knn_file(name)}, {knn_sims_file(name)}"
            )
        rpath, spath = version_dir / knn_file(name), version_dir / knn_sims_file(name)
        rows, sims = _load_rows(rpath), _load_rows(spath)
        if rows.dtype != np.int32 or rows.ndim != 2 or rows.shape[0] != count:
            raise ArtifactError(f"{rpath}: must be int32 of shape ({count}, K), got {rows.dtype} {rows.shape}")
        if sims.dtype != np.float32 or sims.shape != rows.shape:
            raise ArtifactError(f"{spath}: must be float32 of shape {rows.shape}, got {sims.dtype} {sims.shape}")
        # A full scan would read the whole file; check a sample here, and every row as it is read.
        sample = np.asarray(rows[: min(count, 256)])
        if sample.size and (sample.min() < -1 or sample.max() >= count):
            raise ArtifactError(f"{rpath}: rows must lie in [-1, {count}), found {sample.min()}..{sample.max()}")
        return rows, sims

    @staticmethod
    def _merged_groups(catalog: Catalog) -> dict[int, tuple[int, ...]]:
        # Catalog.group scans every alias; precompute the few merged groups once instead.
        merged = catalog.alias_from != catalog.alias_to
        groups: dict[int, list[int]] = {}
        for src, dst in zip(catalog.alias_from[merged].tolist(), catalog.alias_to[merged].tolist(), strict=True):
            groups.setdefault(dst, []).append(src)
        return {k: tuple(v) for k, v in groups.items()}

    # -- facts --------------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self.manifest.version

    def model_counts(self) -> dict[str, int]:
        """Indexed songs per model; 0 for a model this version lacks."""
        return {m: (self.models[m].index.ntotal if m in self.models else 0) for m in MODEL_NAMES}

    def resolve(self, song_id: int) -> int | None:
        """Catalog row of any id (canonical or merged duplicate), or None."""
        canonical = self.catalog.canonical(int(song_id))
        if canonical is None:
            canonical = int(song_id)
        return self.catalog.row(canonical)

    def duplicates_of(self, song_id: int) -> tuple[int, ...]:
        """Merged duplicate ids of a canonical id (not itself)."""
        return self._duplicates.get(int(song_id), ())

    def song(self, row: int) -> dict[str, Any]:
        """The API Song dict of a catalog row (a fresh dict; its lists are shared, do not mutate them)."""
        return dict(self._song(int(row)))

    def get_song(self, song_id: int) -> dict[str, Any]:
        """The Song of any id; :class:`UnknownSongError` when unknown."""
        row = self.resolve(song_id)
        if row is None:
            raise UnknownSongError([song_id])
        return self.song(row)

    def query_vector(self, model: str, song_id: int) -> np.ndarray | None:
        """A song's query vector in ``model`` (any id of the song), or None when it has none."""
        mi = self.models.get(model)
        row = self.resolve(song_id)
        if mi is None or row is None:
            return None
        qrow = int(mi.row_of_catalog[row])
        return None if qrow < 0 else np.asarray(mi.query[qrow], dtype=np.float32)

    def search(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Songs matching a text query, best first, each with a ``score`` in [0, 100]."""
        hits = self.search_index.search(query, limit)
        return [{**self._song(row), "score": round(score, 3)} for row, score in hits]

    def artists(self, row: int) -> frozenset[str]:
        cached = self._artists_cache.get(row)
        if cached is None:
            text = self.catalog.columns["artists"][row]
            cached = frozenset(a for a in text.split(SEP) if a)
            if len(self._artists_cache) < 200_000:
                self._artists_cache[row] = cached
        return cached

    # -- recommending -------------------------------------------------------------------------------

    def _check(self, method: str, k: int, novelty: float) -> None:
        if method not in ranking.METHODS:
            raise ClientError(f"method: unknown method {method!r} (expected one of {', '.join(ranking.METHODS)})")
        if k < 1:
            raise ClientError(f"k: must be at least 1, got {k}")
        if not 0.0 <= novelty <= 1.0:
            raise ClientError(f"novelty: must be in [0, 1], got {novelty}")

    def _rank(
        self,
        queries: Mapping[str, int | np.ndarray],
        method: str,
        k: int,
        novelty: float,
        exclude_rows: set[int],
        banned_artists: frozenset[str],
        seed_rows: Sequence[int] = (),
        steer: Steering | None = None,
        extra: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Rank for per-model queries: a catalog row (its own vector) or a normalised query vector.

        ``seed_rows`` are the catalog songs asked about (none for a clip outside the catalog): the
        co-occurrence source lists what shares their playlists (summed over a seed set). ``steer`` applies
        filters, songs to avoid and diversity (:mod:`app.steering`); None is the plain path. ``extra`` adds
        named candidate lists (catalog rows, scores) that are not a model's, such as a tag's counted songs;
        they are cleaned like the models' lists. ``weights`` replaces the version's fusion weights of
        ``score_total``.
        """
        self._check(method, k, novelty)
        depth = max(ranking.DEPTH, k)
        keep = None
        if banned_artists:
            def keep(row: int) -> bool:
                return not (self.artists(row) & banned_artists)
        kept: RowFilter | None = None
        negatives: list[int] = []
        if steer is not None:
            kept = self.filters.filter_of(steer)
            negatives = self._rows_of(steer.negative_ids, "negative id(s)")
            exclude_rows = exclude_rows | set(negatives)
        lists: dict[str, list[int]] = {}
        sims: dict[str, list[float]] = {}
        for name, mi in self.models.items():
            query = queries.get(name)
            if query is None:
                continue
            found = self._candidates(mi, query, exclude_rows, depth, keep, kept)
            if found is not None:
                lists[name], sims[name] = found
        passes = keep if kept is None else self._and_mask(keep, kept.mask)
        # Only score_total fuses the co-occurrence list; it is still read for the other methods so that
        # every answer's ``ranks`` says where each source placed a song.
        if self.cooc is not None and seed_rows:
            found = self.cooc.candidates(seed_rows, exclude_rows, depth, passes)
            if found is not None:
                lists[COOC], sims[COOC] = found
        for name, (rows, scores) in (extra or {}).items():
            lists[name], sims[name] = ranking.candidate_list(rows, scores, exclude_rows, depth, passes)
        own = weights is None  # the version's fusion, not weights given by the caller
        if own and method == "score_total" and self._popular is not None and ranking.is_cold(lists):
            lists[ranking.POPULAR], sims[ranking.POPULAR] = ranking.popular_candidates(
                self._popular, self.catalog.popularity, exclude_rows, depth, passes)
        # Weights given by the caller (tag recommendations, studies) are plain 1/rank weights.
        ranked = ranking.rank_method(method, lists, sims, *((self.weights, self.fusion_offset) if own
                                                           else (weights, 0.0)), cold=self.cold if own else None)
        ranked = ranking.novelty_rerank(
            ranked, self.catalog.popularity, novelty, similarity=method in MODEL_NAMES, strength=self.novelty_strength,
            head=self.novelty_head, cap=self.novelty_cap(novelty),
        )
        if steer is not None and (negatives or steer.diversity > 0.0):
            space = self._similarity_vectors([r for r, _ in ranked] + negatives)
            ranked = steering.rerank(
                ranked, space[: len(ranked)], space[len(ranked) :] if negatives else None, steer.diversity, k
            )
        ranked = ranked[:k]
        ranks = ranking.ranks_of((r for r, _ in ranked), lists, ranking.SOURCES)
        return [{**self._song(row), "score": round(float(score), 6), "ranks": ranks[row]} for row, score in ranked]

    def _fused_items(
        self, row: int, method: str, k: int, novelty: float, exclude_artist: bool, steer: Steering | None
    ) -> list[dict[str, Any]] | None:
        """A catalog song's answer from its fused row (:mod:`app.fused`), or None when the request needs the
        per-request fusion: another method, ``exclude_artist``, steering, ``k`` past the fused depth, a version
        without fused lists, or a novelty re-rank the stored pool cannot answer exactly."""
        found = self._fused_answer(row, method, k, novelty, exclude_artist, steer)
        if found is None:
            return None
        song, ranks_dict = self._song, self.fused.ranks_dict  # type: ignore[union-attr]  # not None: found
        return [{**song(r), "score": round(score, 6), "ranks": ranks_dict(ranks)} for r, score, ranks in found]

    def _fused_answer(
        self, row: int, method: str, k: int, novelty: float, exclude_artist: bool, steer: Steering | None
    ) -> list[tuple[int, float, bytes]] | None:
        fused = self.fused
        if fused is None or method != "score_total" or exclude_artist or steer is not None or k > fused.max_k:
            return None
        self._check(method, k, novelty)
        return fused.answer(row, k, novelty, self.catalog.popularity, self.novelty_strength, self.novelty_head,
                            self.novelty_cap(novelty))

    def novelty_cap(self, novelty: float) -> float | None:
        """The popularity cap of the novelty re-rank at ``novelty`` (None: this version fitted none)."""
        if self._cap_levels is None:
            return None
        return ranking.novelty_cap(self._cap_levels, novelty, self.novelty_cap_quantile)

    def encode_song(self, row: int) -> bytes:
        """The Song of a catalog row encoded afresh (:meth:`song_json` keeps them)."""
        return orjson.dumps(self.catalog.song(row))

    def song_json(self, row: int) -> bytes:
        """The Song of a catalog row as JSON (what orjson writes for :meth:`song`'s dict), kept for reuse.

        Bytes, unlike the dicts, are not tracked by the garbage collector and take a fifth of the memory.
        """
        return self._song_json(int(row))

    def recommend_json(self, song_id: int, method: str = "score_total", k: int = 10, novelty: float = 0.0,
                       exclude_artist: bool = False) -> bytes | None:
        """``GET /recommend/{song_id}``'s answer as JSON bytes when the fused lists answer it, else None.

        The same bytes as orjson's encoding of ``{"song", "method", "recommendations"}`` built from
        :meth:`recommend`, spliced from the kept Song JSON instead of Song dicts (a Song asked for the first
        time is decoded once either way, but nothing is decoded into dicts and encoded again).

        Raises
        ------
        UnknownSongError
            when the id is not in the catalog.
        """
        row = self.resolve(song_id)
        if row is None:
            raise UnknownSongError([song_id])
        found = self._fused_answer(row, method, k, novelty, exclude_artist, None)
        if found is None:
            return None
        song, ranks_json, dumps = self._song_json, self.fused.ranks_json, orjson.dumps  # type: ignore[union-attr]
        items = b",".join([song(r)[:-1] + b',"score":' + dumps(round(score, 6)) + b',"ranks":' + ranks_json(ranks)
                           + b"}" for r, score, ranks in found])
        return (b'{"song":' + song(row) + b',"method":' + dumps(method) + b',"recommendations":[' + items + b"]}")

    def _candidates(
        self,
        mi: ModelIndex,
        query: int | np.ndarray,
        exclude_rows: set[int],
        depth: int,
        keep: Callable[[int], bool] | None,
        kept: RowFilter | None = None,
    ) -> tuple[list[int], list[float]] | None:
        """One model's candidate list; None when the query has no vector in that model.

        ``kept`` is a steering filter: the lists are read with it as a keep test, and when they do not hold
        ``depth`` songs the index is searched for passing songs only (:func:`app.filtered.filtered_search`).
        """
        listed_keep = keep if kept is None else self._and_mask(keep, kept.mask)
        if isinstance(query, int):
            qrow = int(mi.row_of_catalog[query])
            if qrow < 0:
                return None
            listed = mi.neighbours(qrow, exclude_rows, depth, listed_keep)
            # Filtered, a short list is not the end: a pad in it means that the index had no more
            # neighbours for the query (all of an IVF's probed lists were read), not that no more songs pass.
            if listed is not None and (kept is None or len(listed[0]) >= depth):
                return listed
            query = mi.query[qrow]
            if not query.any():
                return None  # a zero vector: the song has no usable vector in this model
        if kept is not None:
            assert mi.scan is not None  # set in __post_init__
            rows = kept.in_model(mi.name, mi.catalog_rows)
            faiss.omp_set_num_threads(mi.threads)
            return filtered_search(mi.scan, mi.catalog_rows, query, exclude_rows, depth, keep, rows)
        # Exclusions and the artist filter remove rows from the raw result: fetch deeper to keep `depth`.
        fetch = depth + len(exclude_rows) + _SLACK + (depth if keep else 0)
        found, found_sims = mi.search(query, fetch)
        return ranking.candidate_list(found, found_sims, exclude_rows, depth, keep)

    @staticmethod
    def _and_mask(keep: Callable[[int], bool] | None, mask: np.ndarray) -> Callable[[int], bool]:
        if keep is None:
            return lambda row: bool(mask[row])
        return lambda row: bool(mask[row]) and keep(row)

    def _rows_of(self, song_ids: Sequence[int], what: str) -> list[int]:
        """Catalog rows of ids (any id of a song), without repeats; UnknownSongError names the unknown."""
        rows: list[int] = []
        unknown: list[int] = []
        for sid in song_ids:
            row = self.resolve(sid)
            if row is None:
                unknown.append(int(sid))
            elif row not in rows:
                rows.append(row)
        if unknown:
            raise UnknownSongError(unknown, what)
        return rows

    def _similarity_vectors(self, rows: Sequence[int]) -> np.ndarray:
        """Unit vectors of ``rows`` in the steering similarity space (:data:`app.steering.SPACES`); zero
        rows for songs without a vector there."""
        name = next((m for m in steering.SPACES if m in self.models), None)
        if name is None or not rows:
            return np.zeros((len(rows), 1), dtype=np.float32)
        mi = self.models[name]
        qrows = mi.row_of_catalog[np.asarray(rows, dtype=np.int64)]
        out = np.zeros((len(rows), mi.index.d), dtype=np.float32)
        present = np.flatnonzero(qrows >= 0)
        if len(present):
            out[present] = mi.query[qrows[present].tolist()]
        return out

    def recommend(
        self,
        song_id: int,
        method: str = "score_total",
        k: int = 10,
        novelty: float = 0.0,
        exclude_artist: bool = False,
        steer: Steering | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Recommendations for one song (any of its ids).

        Returns
        -------
        song, items : the query's canonical Song, and Songs with ``score`` and ``ranks``.

        Raises
        ------
        UnknownSongError
            when the id is not in the catalog.
        ValueError
            naming a bad ``method``, ``k``, ``novelty`` or steering parameter.
        """
        row = self.resolve(song_id)
        if row is None:
            raise UnknownSongError([song_id])
        items = self._fused_items(row, method, k, novelty, exclude_artist, steer)
        if items is None:
            banned = self.artists(row) if exclude_artist else frozenset()
            items = self._rank(dict.fromkeys(self.models, row), method, k, novelty, {row}, banned, (row,), steer)
        return self.song(row), items

    def recommend_seeds(
        self,
        song_ids: Sequence[int],
        method: str = "score_total",
        k: int = 10,
        novelty: float = 0.0,
        exclude_artist: bool = False,
        steer: Steering | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Recommendations that continue a set of seed songs (the seeds' mean query vector per model).

        Raises
        ------
        UnknownSongError
            listing every unknown seed id (or, when the seeds are known, every unknown negative id).
        """
        if not song_ids:
            raise ClientError("song_ids: at least one seed is required")
        rows = self._rows_of(song_ids, "song id(s)")
        banned: frozenset[str] = frozenset()
        if exclude_artist:
            banned = frozenset().union(*(self.artists(r) for r in rows))
        items = self._fused_items(rows[0], method, k, novelty, exclude_artist, steer) if len(rows) == 1 else None
        if items is None:
            queries = dict.fromkeys(self.models, rows[0]) if len(rows) == 1 else self._vectors_of(rows)
            items = self._rank(queries, method, k, novelty, set(rows), banned, rows, steer)
        return [self.song(r) for r in rows], items

    def recommend_tag(
        self,
        tag: str,
        method: str = "score_total",
        k: int = 10,
        novelty: float = 0.0,
        steer: Steering | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> tuple[str, list[dict[str, Any]]]:
        """Songs for a playlist tag (a situation or mood): the tag's name as shown, and the Songs.

        ``score_total`` and ``each_top3`` fuse the models' lists for the tag's query vectors with its counted
        songs (:data:`TAG_LIST`); a single model's method uses that model's list alone. ``weights`` replaces
        :data:`TAG_FUSION_WEIGHTS` (the offline study of other weights uses it).

        Raises
        ------
        app.tags.UnknownTagError
            when the version has no such tag (or no tags at all).
        """
        if self.tags is None:
            raise UnknownTagError(tag)
        i = self.tags.find(tag)
        rows, counts = self.tags.counted(i)
        queries = self.tags.query_vectors(i, list(self.models))
        items = self._rank(queries, method, k, novelty, set(), frozenset(), steer=steer,
                           extra={TAG_LIST: (rows, counts.astype(np.float64))},
                           weights=TAG_FUSION_WEIGHTS if weights is None else weights)
        return self.tags.names[i], items

    def search_tags(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Tags matching a text query fuzzily (Hangul initials too), best first."""
        return self.tags.search(query, limit) if self.tags is not None else []

    def recommend_from_vectors(
        self,
        vectors: dict[str, np.ndarray],
        method: str,
        k: int,
        novelty: float = 0.0,
        exclude_artist_of: int | None = None,
        exclude_ids: Iterable[int] = (),
        steer: Steering | None = None,
    ) -> list[dict[str, Any]]:
        """Recommendations for query vectors computed elsewhere (e.g. a song outside the catalog).

        Parameters
        ----------
        vectors : model name -> query vector (normalised here); models missing from it are skipped.
        method : one of :data:`app.ranking.METHODS`.
        k : how many songs to return.
        novelty : see :mod:`app.ranking`.
        exclude_artist_of : a song id whose artists must not appear in the answer.
        exclude_ids : song ids (any id of a song) never to recommend.
        """
        clean: dict[str, np.ndarray] = {}
        for name, vec in vectors.items():
            if name not in self.models:
                continue
            v = np.asarray(vec, dtype=np.float32).reshape(-1)
            if v.shape[0] != self.models[name].index.d:
                raise ValueError(f"vectors[{name!r}]: dimension {v.shape[0]}, index has {self.models[name].index.d}")
            norm = float(np.linalg.norm(v))
            if not np.isfinite(norm) or norm == 0.0:
                continue
            clean[name] = v / norm
        exclude = {r for r in (self.resolve(i) for i in exclude_ids) if r is not None}
        banned: frozenset[str] = frozenset()
        if exclude_artist_of is not None:
            row = self.resolve(exclude_artist_of)
            if row is not None:
                banned = self.artists(row)
        return self._rank(clean, method, k, novelty, exclude, banned, steer=steer)

    def _vectors_of(self, rows: Sequence[int]) -> dict[str, np.ndarray]:
        """Per model, the normalised mean query vector of the rows that have one."""
        out: dict[str, np.ndarray] = {}
        for name, mi in self.models.items():
            qrows = [int(mi.row_of_catalog[r]) for r in rows]
            qrows = [q for q in qrows if q >= 0]
            if not qrows:
                continue
            vec = np.asarray(mi.query[qrows], dtype=np.float32).mean(axis=0)
            norm = float(np.linalg.norm(vec))
            if norm > 0.0:
                out[name] = vec / norm
        return out
