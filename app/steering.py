"""Steering a list: genre and year filters, a diversity re-rank, and songs to steer away from.

All of it is optional; a request that sets none of these parameters never reaches this module, so the
fast path (precomputed neighbour lists, see :meth:`app.engine.ModelIndex.neighbours`) is unchanged.

Filters (``genre``, ``year_from``, ``year_to``)
    keep only catalog rows that pass (:class:`CatalogFilter` builds a boolean mask over rows, wrapped in an
    :class:`app.filtered.RowFilter`; the filters of recent requests are cached, and with them each model's
    selector over its index rows). The precomputed candidate lists are read as usual with the filter as a
    ``keep`` test; when they do not hold the depth, :func:`app.filtered.filtered_search` asks the model's
    index for the nearest passing songs only (a FAISS selector: an exact scan of the passing rows' codes, or
    the HNSW graph / IVF lists searched deeper when many pass). So a filtered answer holds ``k`` songs
    whenever the catalog has ``k`` songs that pass and have a vector in some model.

Relevance for the two re-ranks
    the method's scores of the pool (after ``novelty``) scaled to [0, 1] by min-max over the pool.

Songs to avoid (``negative_ids``)
    never recommended (they join the excluded rows), and every candidate's relevance drops by
    :data:`NEGATIVE_WEIGHT` times its highest cosine similarity to any of them (negative similarities
    count as 0), so songs near a rejected one sink while unrelated songs keep their order.

Diversity (``diversity`` in [0, 1])
    maximal marginal relevance (Carbonell and Goldstein, 1998) over the pool: the list is built one song
    at a time, each time taking the song with the highest ``(1 - l) * relevance - l * max similarity to
    the songs already chosen``, with ``l = DIVERSITY_STRENGTH * diversity``. 0 keeps the order.

Similarity for both re-ranks
    cosine in one embedding space, the first of :data:`SPACES` the version has: CEL (every song with
    playlists or audio has a vector there), else Music2Vec's input vectors, else TCAE. A song without a
    vector in that space counts as similar to nothing.

The ``score`` of a steered answer is the value that ordered it: the penalised relevance, or MMR's marginal
score at the time the song was chosen.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app import ranking
from app.errors import ClientError
from app.filtered import RowFilter
from mugle_core.catalog import SEP, Catalog

logger = logging.getLogger(__name__)

# At diversity 1 relevance and dissimilarity weigh the same: the list still starts with the best song and
# keeps to the candidate pool, but each next pick is the most relevant song unlike those already chosen.
# The measured cost in hit rate is in the README ("Steering a list").
DIVERSITY_STRENGTH = 0.5
NEGATIVE_WEIGHT = 1.0
SPACES: tuple[str, ...] = ("cel", "music2vec", "tcae")
MAX_GENRES = 50
MAX_NEGATIVES = 100
_MASK_CACHE = 64


@dataclass(frozen=True)
class Steering:
    """The steering parameters of one request (see DESIGN.md, "Steering a list")."""

    genres: tuple[str, ...] = ()
    year_from: int | None = None
    year_to: int | None = None
    diversity: float = 0.0
    negative_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.year_from is not None and self.year_to is not None and self.year_from > self.year_to:
            raise ClientError(f"year_from: {self.year_from} is after year_to {self.year_to}")
        if not 0.0 <= self.diversity <= 1.0:
            raise ClientError(f"diversity: must be in [0, 1], got {self.diversity}")
        if len(self.genres) > MAX_GENRES:
            raise ClientError(f"genre: at most {MAX_GENRES} genres, got {len(self.genres)}")
        if len(self.negative_ids) > MAX_NEGATIVES:
            raise ClientError(f"negative_ids: at most {MAX_NEGATIVES} ids, got {len(self.negative_ids)}")

    @classmethod
    def of(
        cls,
        genre: Iterable[str] | None = None,
        year_from: int | None = None,
        year_to: int | None = None,
        diversity: float = 0.0,
        negative_ids: Iterable[int] | None = None,
    ) -> Steering | None:
        """The steering of a request's parameters, or None when none is set (the unsteered fast path)."""
        steer = cls(tuple(genre or ()), year_from, year_to, float(diversity), tuple(int(i) for i in negative_ids or ()))
        return steer if steer.active else None

    @property
    def filters(self) -> bool:
        return bool(self.genres) or self.year_from is not None or self.year_to is not None

    @property
    def active(self) -> bool:
        return self.filters or self.diversity > 0.0 or bool(self.negative_ids)


class CatalogFilter:
    """Genre and year masks over a catalog's rows; the per-row facts are built on first use."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.mask = functools.lru_cache(maxsize=_MASK_CACHE)(self._mask)

    @functools.cached_property
    def years(self) -> np.ndarray:
        """int16 issue year per row, 0 when unknown (``issue_date`` starts with ``YYYY``)."""
        col = self.catalog.columns["issue_date"]
        blob = np.frombuffer(col._bytes, dtype=np.uint8)
        starts = np.asarray(col._offsets[:-1], dtype=np.int64)
        lengths = np.asarray(col._offsets[1:], dtype=np.int64) - starts
        years = np.zeros(len(starts), dtype=np.int64)
        ok = lengths >= 4
        for i in range(4):
            digit = np.zeros(len(starts), dtype=np.int64)
            digit[ok] = blob[starts[ok] + i].astype(np.int64) - ord("0")
            ok &= (digit >= 0) & (digit <= 9)
            years = years * 10 + digit
        return np.where(ok, years, 0).astype(np.int16)

    @functools.cached_property
    def _genre_rows(self) -> dict[str, np.ndarray]:
        """Shown genre name -> the rows that carry it."""
        col = self.catalog.columns["genres"]
        # One decode of the whole column with a newline between rows (genre names hold none), then the rows
        # grouped by their genre combination (a few hundred at real size): about 0.2 s at 700k songs instead
        # of a second for a decode per row.
        blob = np.frombuffer(col._bytes, dtype=np.uint8)
        inner = np.asarray(col._offsets[1:-1], dtype=np.int64)
        texts = np.insert(blob, inner, ord("\n")).tobytes().decode("utf-8").split("\n") if len(col) else []
        combos: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            if text:
                combos.setdefault(text, []).append(row)
        rows: dict[str, list[np.ndarray]] = {}
        for text, members in combos.items():
            for name in dict.fromkeys(text.split(SEP)):
                rows.setdefault(name, []).append(np.array(members, dtype=np.int64))
        return {name: np.sort(np.concatenate(parts)) for name, parts in rows.items()}

    @functools.cached_property
    def _names(self) -> dict[str, str]:
        """Every accepted spelling (a shown name or a table code, case-folded) -> the shown name."""
        out = {name.casefold(): name for name in self._genre_rows}
        for code, name in self.catalog.genre_table.items():
            if name in self._genre_rows:
                out.setdefault(code.casefold(), name)
        return out

    def genres(self) -> list[dict[str, Any]]:
        """The catalog's genres: shown name, the codes that name it, and how many songs carry it."""
        codes: dict[str, list[str]] = {}
        for code, name in sorted(self.catalog.genre_table.items()):
            codes.setdefault(name, []).append(code)
        out = [{"name": n, "codes": codes.get(n, []), "songs": int(len(r))} for n, r in self._genre_rows.items()]
        return sorted(out, key=lambda g: (-g["songs"], g["name"]))

    def resolve(self, genres: Sequence[str]) -> tuple[str, ...]:
        """Shown names of ``genres`` (names or codes, any case); ValueError naming the unknown ones."""
        names: list[str] = []
        unknown: list[str] = []
        for g in genres:
            name = self._names.get(str(g).strip().casefold())
            if name is None:
                unknown.append(str(g))
            elif name not in names:
                names.append(name)
        if unknown:
            raise ClientError(f"genre: unknown genre(s) {', '.join(repr(u) for u in unknown)} "
                             "(GET /genres lists the catalog's genres; a code such as GN0100 works too)")
        return tuple(sorted(names))

    def _mask(self, genres: tuple[str, ...], year_from: int | None, year_to: int | None) -> RowFilter:
        n = len(self.catalog)
        if genres:
            mask = np.zeros(n, dtype=bool)
            for name in genres:
                mask[self._genre_rows[name]] = True
        else:
            mask = np.ones(n, dtype=bool)
        if year_from is not None or year_to is not None:
            years = self.years
            mask &= years > 0  # songs without a date drop out when either bound is set
            if year_from is not None:
                mask &= years >= year_from
            if year_to is not None:
                mask &= years <= year_to
        mask.flags.writeable = False  # shared through the cache
        return RowFilter(mask)

    def filter_of(self, steer: Steering) -> RowFilter | None:
        """The rows ``steer``'s filters keep, or None when it sets no filter."""
        if not steer.filters:
            return None
        return self.mask(self.resolve(steer.genres), steer.year_from, steer.year_to)

    def mask_of(self, steer: Steering) -> np.ndarray | None:
        """:meth:`filter_of` as a bool per catalog row."""
        kept = self.filter_of(steer)
        return None if kept is None else kept.mask

    def warm(self) -> None:
        """Build the per-row years and genre rows now (about 0.3 s at 700k songs) rather than on the first
        filtered request."""
        _ = self.years, self._names


def _relevance(ranked: ranking.Ranked) -> np.ndarray:
    scores = np.fromiter((s for _, s in ranked), dtype=np.float64, count=len(ranked))
    low, high = float(scores.min()), float(scores.max())
    return (scores - low) / (high - low) if high > low else np.ones(len(scores))


def rerank(
    ranked: ranking.Ranked,
    vectors: np.ndarray,
    negatives: np.ndarray | None,
    diversity: float,
    k: int,
) -> ranking.Ranked:
    """Push songs near the negatives down and/or re-rank for variety; returns the top ``k``.

    Parameters
    ----------
    ranked : the method's pool, best first (after ``novelty``).
    vectors : float (len(ranked), dim) unit vectors of the pool's songs in the similarity space (zero rows
        for songs without one).
    negatives : float (n, dim) unit vectors of the songs to avoid, or None.
    diversity : 0 keeps the order; see the module docstring.
    k : how many songs to return.
    """
    if not ranked:
        return ranked
    rows = [r for r, _ in ranked]
    value = _relevance(ranked)
    if negatives is not None and len(negatives):
        closeness = np.maximum(vectors @ negatives.T, 0.0).max(axis=1)
        value = value - NEGATIVE_WEIGHT * closeness
    strength = DIVERSITY_STRENGTH * diversity
    if strength <= 0.0:
        order = np.lexsort((np.arange(len(rows)), -value))[:k]
        return [(rows[i], float(value[i])) for i in order]
    sim = vectors @ vectors.T
    chosen: list[tuple[int, float]] = []
    nearest = np.full(len(rows), -np.inf)  # highest similarity to a chosen song; -inf: nothing chosen yet
    free = np.ones(len(rows), dtype=bool)
    for _ in range(min(k, len(rows))):
        redundancy = np.where(np.isfinite(nearest), nearest, 0.0)
        marginal = np.where(free, (1.0 - strength) * value - strength * redundancy, -np.inf)
        best = int(np.argmax(marginal))  # the first of equal values: the method's order breaks ties
        chosen.append((rows[best], float(marginal[best])))
        free[best] = False
        nearest = np.maximum(nearest, sim[best])
    return chosen
