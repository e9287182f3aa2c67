"""``score_total``'s fusion and the novelty re-rank: pure functions that the service runs and training fits.

Training (:mod:`training.fitting`) fits, per catalog, the per-source weights of :func:`score_total`, the
cold-start fusion (:class:`ColdFusion`) and the strength, head and popularity cap of :func:`novelty_rerank`
on a validation split, with these very functions, and writes them to the manifest's ``ranking`` record; the
service (:mod:`app.ranking`) reads them back with :func:`fusion_weights`, :func:`fusion_offset`,
:func:`cold_fusion`, :func:`novelty_strength`, :func:`novelty_head` and :func:`novelty_cap_quantile`. Numpy only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

DEPTH = 50
# The weighted fusion's pool leans on Music2Vec, whose songs are more popular than the audio models'
# (demo median about 24 against 5-7), so halving the median at novelty 0.5 takes a stronger pull than
# the equal-weight pool did: strength 4 at 0.5 equals strength 2 at 1, which measured a ratio of 0.48 at
# 7.7% HitRate@10 cost (default demo, holdout seed 1).
NOVELTY_STRENGTH = 4.0
# Per-model weights of the 1/rank sum in ``score_total``. With equal weights the audio lists, which find
# songs that sound alike but are less often listed together, dilute Music2Vec's co-listening list and
# the fusion fell below Music2Vec alone (HitRate@10 0.710 vs 0.755 on the default demo). Chosen by a grid
# over the served depth-50 lists (cel in 0..1, tcae in 0..0.5, music2vec fixed at 1) on the default demo's
# held-out playlists, trained with --seed 0 and checked on --seed 1: the smallest audio weights that
# still let audio candidates reach the top 10 (for diversity and songs Music2Vec has no vector for)
# while staying at or above the best single model. A model not named here counts with weight 1.
FUSION_WEIGHTS: dict[str, float] = {"music2vec": 1.0, "cel": 0.25, "tcae": 0.1}
# Rank offsets the fit tries for score_total (0 first: the plain 1/rank, kept when nothing does better).
# Where two sources are complementary (one finds more of a playlist, the other orders it better) the
# 1/rank head lets whichever weighs more take the first places; reciprocal rank fusion's usual constant
# (60) and a smaller one let the songs both sources place well come first.
FUSION_OFFSETS: tuple[float, ...] = (0.0, 20.0, 60.0)
MODELS: tuple[str, ...] = ("music2vec", "tcae", "cel")
COOC = "cooc"
# Every candidate source a recommendation's ``ranks`` reports (null where a source did not list it).
SOURCES: tuple[str, ...] = (*MODELS, COOC)
# The sources that need playlist history; a query none of them can answer is a cold-start one.
PLAYLIST_SOURCES: tuple[str, ...] = ("music2vec", COOC)
# A cold-start query's extra list: the catalog's songs by popularity (training playlists per song), which a
# version's fitted cold-start fusion may weigh (:class:`ColdFusion`); never part of a warm query's pool.
POPULAR = "popular"
# What a cold-start query can be answered from: the audio models and that list.
COLD_SOURCES: tuple[str, ...] = ("tcae", "cel", POPULAR)

Ranked = list[tuple[int, float]]
"""(catalog row, score) pairs, best first."""


def _pick(rows: list[int], sims: list[float], keep: list[int]) -> tuple[list[int], list[float]]:
    return [rows[i] for i in keep], [sims[i] for i in keep]


def candidate_list(
    found_rows: np.ndarray,
    sims: np.ndarray,
    exclude: Iterable[int] = (),
    depth: int = DEPTH,
    keep: Callable[[int], bool] | None = None,
) -> tuple[list[int], list[float]]:
    """Clean one model's raw search result into a candidate list.

    Parameters
    ----------
    found_rows : catalog rows as the index returned them, best first; negative entries mean "no result".
    sims : the matching similarities.
    exclude : rows that must never be recommended (the query song, seeds, their duplicates).
    depth : how many candidates to keep.
    keep : optional extra filter (e.g. "not by the query's artist"), asked in order until ``depth`` pass.

    Returns
    -------
    rows, sims : at most ``depth`` rows without repeats, and their similarities.
    """
    found = np.asarray(found_rows, dtype=np.int64).reshape(-1)
    values = np.asarray(sims).reshape(-1)[: len(found)]
    # Plain lists: this runs three times per request over ~60 rows, where list operations beat a chain of
    # small numpy calls.
    rows = found[: len(values)].tolist()
    out = values.tolist()
    if rows and min(rows) < 0:
        rows, out = _pick(rows, out, [i for i, r in enumerate(rows) if r >= 0])
    if len(set(rows)) != len(rows):
        # An index never repeats a row, but a hand-made list might: keep each row's first occurrence.
        first: dict[int, int] = {}
        for i, r in enumerate(rows):
            first.setdefault(r, i)
        rows, out = _pick(rows, out, sorted(first.values()))
    banned = {int(r) for r in exclude}
    if len(banned) <= 8:  # usually the query song alone: find and drop it rather than test every row
        for row in banned:
            if row in rows:
                at = rows.index(row)
                del rows[at], out[at]
    else:
        rows, out = _pick(rows, out, [i for i, r in enumerate(rows) if r not in banned])
    if keep is not None:
        kept: list[int] = []
        for i, row in enumerate(rows):
            if keep(row):
                kept.append(i)
                if len(kept) >= depth:
                    break
        rows, out = _pick(rows, out, kept)
    return rows[:depth], out[:depth]


def ranks_of(
    rows: Iterable[int], lists: Mapping[str, Sequence[int]], models: Sequence[str]
) -> dict[int, dict[str, int | None]]:
    """Per row, its 1-based rank in each model's candidate list, or None when absent."""
    positions = {m: {row: i for i, row in enumerate(lists.get(m, ()), start=1)} for m in models}
    return {row: {m: positions[m].get(row) for m in models} for row in rows}


@dataclass(frozen=True)
class ColdFusion:
    """How ``score_total`` fuses a cold-start query (no list from :data:`PLAYLIST_SOURCES`): per-source
    weights over :data:`COLD_SOURCES` and a rank offset (manifest ``ranking.cold``).

    The default is the constant audio fusion of versions from before the fit (:data:`FUSION_WEIGHTS`'
    tcae and cel, no popularity list). The fitted one may weigh :data:`POPULAR`; the service adds that list
    to a cold-start query only when it does (:attr:`popular`).
    """

    weights: Mapping[str, float] = field(
        default_factory=lambda: {"tcae": FUSION_WEIGHTS["tcae"], "cel": FUSION_WEIGHTS["cel"], POPULAR: 0.0})
    offset: float = 0.0

    @property
    def popular(self) -> bool:
        """Whether the fusion weighs the popularity list (so a cold-start query needs one)."""
        return float(self.weights.get(POPULAR, 0.0)) > 0.0

    def as_record(self) -> dict[str, object]:
        """The manifest's ``ranking.cold`` entries the service reads (and the fused lists record)."""
        return {"weights": {m: float(self.weights.get(m, 0.0)) for m in COLD_SOURCES}, "offset": float(self.offset)}


def is_cold(lists: Mapping[str, Sequence[int]]) -> bool:
    """Whether no source that needs playlist history answered: a cold-start query."""
    return not any(len(lists.get(m, ())) for m in PLAYLIST_SOURCES)


def fuse(
    lists: Mapping[str, Sequence[int]],
    weights: Mapping[str, float] | None = None,
    offset: float = 0.0,
    cold: ColdFusion | None = None,
) -> Ranked:
    """``score_total``'s whole pool for one query as the service ranks it: :func:`score_total` with the
    version's ``weights`` and rank ``offset`` (weights None: :data:`FUSION_WEIGHTS` at offset 0), except
    for a cold-start query.

    A query without playlist history (:func:`is_cold`) is fused with ``cold`` (the version's fitted
    cold-start fusion; None: :class:`ColdFusion`'s default): the warm weights were fitted on warm songs,
    where the playlist sources lead.
    """
    if weights is not None and is_cold(lists):
        cold = cold if cold is not None else ColdFusion()
        # Named in full: a source score_total is not told about would weigh 1.
        return score_total(lists, {m: float(cold.weights.get(m, 0.0)) for m in COLD_SOURCES}, cold.offset)
    if weights is None:
        return score_total(lists, FUSION_WEIGHTS)
    return score_total(lists, weights, offset)


def popular_order(popularity: np.ndarray, limit: int) -> np.ndarray:
    """Catalog rows with playlist history, most popular first (then the lower row): the first ``limit``."""
    pop = np.asarray(popularity)
    rows = np.flatnonzero(pop > 0)
    order = rows[np.lexsort((rows, -pop[rows]))]
    return order[:limit].astype(np.int64)


def popular_candidates(
    order: np.ndarray,
    popularity: np.ndarray,
    exclude: Iterable[int] = (),
    depth: int = DEPTH,
    keep: Callable[[int], bool] | None = None,
) -> tuple[list[int], list[float]]:
    """The :data:`POPULAR` candidate list of a cold-start query: :func:`popular_order`'s rows, cleaned like a
    model's list (``exclude``, ``keep``), scored by their popularity."""
    banned = set(exclude)
    # Without a filter the first depth + |exclude| rows are enough; a filter may need to look further.
    head = order if keep is not None else order[: depth + len(banned)]
    return candidate_list(head, np.asarray(popularity)[head].astype(np.float64), banned, depth, keep)


def score_total(
    lists: Mapping[str, Sequence[int]], weights: Mapping[str, float] | None = None, offset: float = 0.0
) -> Ranked:
    """Sum of ``weight / (offset + rank)`` across models; ties go to the better best rank, then the lower row.

    ``weights`` maps a model name to its weight (missing names weigh 1; ``None``: all weigh 1, the
    original system's plain sum). A model with weight 0 contributes neither score nor best rank, unless
    no weighted model has a list: then the zero-weighted ones rank with equal weights. ``offset`` 0 is
    the original ``1 / rank``; a larger one (reciprocal rank fusion's constant) flattens each list's
    head, so that a song two sources both place fairly high passes one that a single source places first
    (fitted per version with the weights, :data:`FUSION_OFFSETS`).
    """
    weights = weights or {}
    given = [(float(weights.get(m, 1.0)), np.asarray(rows, dtype=np.int64)) for m, rows in lists.items()]
    named = [(w, p) for w, p in given if len(p) and w != 0.0]
    if not named:
        # Only sources weighted 0 have an answer (a cold-start song with audio alone, when the fitted
        # weights leave the audio models out): rank by them, equally weighted, rather than answer nothing.
        named = [(1.0, p) for _, p in given if len(p)]
    if not named:
        return []
    rows = np.concatenate([p for _, p in named])
    ranks = np.concatenate([np.arange(1, len(p) + 1, dtype=np.int64) for _, p in named])
    gains = np.concatenate([w / (offset + np.arange(1, len(p) + 1, dtype=np.float64)) for w, p in named])
    songs, inverse = np.unique(rows, return_inverse=True)
    # bincount adds in input order, model after model: the same float sums as adding rank by rank.
    scores = np.bincount(inverse, weights=gains, minlength=len(songs))
    best = np.full(len(songs), len(ranks) + 1, dtype=np.int64)  # above any rank
    np.minimum.at(best, inverse, ranks)
    order = np.lexsort((songs, best, -scores))
    return list(zip(songs[order].tolist(), scores[order].tolist(), strict=True))


def novelty_rerank(
    ranked: Ranked,
    popularity: np.ndarray,
    novelty: float,
    similarity: bool = False,
    strength: float = NOVELTY_STRENGTH,
    head: int = 0,
    cap: float | None = None,
) -> Ranked:
    """Re-rank towards lesser-known songs; see the module docstring for the formula.

    Parameters
    ----------
    ranked : the method's pool, best first.
    popularity : playlists per catalog row.
    novelty : 0 keeps the order, 1 is the strongest preference for lesser-known songs.
    similarity : the scores are cosine similarities in [-1, 1] (single-model methods).
    strength : the exponent's scale; each version fits its own at training time (manifest
        ``ranking.novelty.strength``), :data:`NOVELTY_STRENGTH` for versions from before that.
    head : how many of the best-ranked songs keep their place (fitted with the strength: the first few
        places carry most of the hits, the rest can go to lesser-known songs); the rest is re-ranked.
        Reported scores are made non-increasing down the list.
    cap : a popularity (:func:`novelty_cap`): past the head, every song at or below it (in re-ranked order)
        comes before every song above it (least popular first); None: no cap.
    """
    if not 0.0 <= novelty <= 1.0:
        raise ValueError(f"novelty: must be in [0, 1], got {novelty}")
    if novelty == 0.0 or not ranked:
        return ranked
    rows = np.fromiter((r for r, _ in ranked), dtype=np.int64, count=len(ranked))
    base = np.fromiter((s for _, s in ranked), dtype=np.float64, count=len(ranked))
    if similarity:
        base = (np.clip(base, -1.0, 1.0) + 1.0) / 2.0
    pop = popularity[rows].astype(np.float64)
    adjusted = base * novelty_multiplier(pop, novelty, strength)
    head = max(0, min(int(head), len(rows)))
    rest = np.arange(head, len(rows))
    over = pop[rest] > cap if cap is not None else np.zeros(len(rest), dtype=bool)
    # Songs over the cap fill what the songs under it leave, least popular first: ordered by score they
    # would bring back the hits, so that more novelty (a lower cap) could give a more popular list.
    above = np.where(over, pop[rest], 0.0)
    order = np.concatenate([np.arange(head), rest[np.lexsort((rest, -adjusted[rest], above, over))]])  # stable on ties
    scores = adjusted[order]
    if head or cap is not None:
        # The kept head, and the songs under the cap, must not score below what follows them.
        scores = np.maximum.accumulate(scores[::-1])[::-1]
    return [(int(rows[i]), float(v)) for i, v in zip(order.tolist(), scores.tolist(), strict=True)]


def novelty_multiplier(popularity: np.ndarray, novelty: float, strength: float) -> np.ndarray:
    """The factor the novelty re-rank multiplies a song's score by (at most 1)."""
    return (1.0 + np.log1p(np.maximum(np.asarray(popularity, dtype=np.float64), 0.0))) ** (-strength * novelty)


def cap_levels(popularity: np.ndarray) -> np.ndarray:
    """The sorted popularity of the songs with playlist history: what :func:`novelty_cap` takes quantiles of."""
    pop = np.asarray(popularity)
    return np.sort(pop[pop > 0]).astype(np.float64)


def novelty_cap(levels: np.ndarray, novelty: float, quantile: float | None) -> float | None:
    """The popularity cap of the novelty re-rank at ``novelty``, or None for no cap.

    ``quantile`` is the version's fitted cap at novelty 0.5 (manifest ``ranking.novelty.cap_quantile``), a
    quantile of ``levels`` (:func:`cap_levels`). Quantiles, not counts, so that a cap fitted on the
    validation split's playlist counts means the same on the whole catalog's. The quantile falls linearly
    with ``novelty``, from 1 at 0 (the most popular song: no song is above it) through ``quantile`` at 0.5
    to ``2 quantile - 1`` (at least 0) at 1, so that a little novelty caps a little.
    """
    if quantile is None or novelty <= 0.0 or len(levels) == 0:
        return None
    q = min(1.0, max(0.0, 1.0 - 2.0 * novelty * (1.0 - quantile)))
    return float(levels[int(round(q * (len(levels) - 1)))])


def novelty_cap_quantile(record: Mapping[str, object] | None) -> float | None:
    """The novelty cap's quantile from a manifest's ``ranking`` record (None without one: no cap).

    Raises
    ------
    ValueError
        when the recorded value is not a number in (0, 1].
    """
    block = (record or {}).get("novelty") if isinstance(record, Mapping) else None
    value = block.get("cap_quantile") if isinstance(block, Mapping) else None
    if value is None:
        return None
    try:
        q = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        q = float("nan")
    if not 0.0 < q <= 1.0:
        raise ValueError(f"ranking.novelty.cap_quantile: must be a number in (0, 1], got {value!r}")
    return q


def novelty_head(record: Mapping[str, object] | None) -> int:
    """How many top places the novelty re-rank keeps, from a manifest's ``ranking`` record (0 without one).

    Raises
    ------
    ValueError
        when the recorded value is not a non-negative integer.
    """
    block = (record or {}).get("novelty") if isinstance(record, Mapping) else None
    value = block.get("head", 0) if isinstance(block, Mapping) else 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"ranking.novelty.head: must be an integer >= 0, got {value!r}")
    return value


def novelty_strength(record: Mapping[str, object] | None) -> float:
    """The novelty strength a manifest's ``ranking`` record fitted, or :data:`NOVELTY_STRENGTH` without one.

    Raises
    ------
    ValueError
        when the recorded strength is not a finite positive number.
    """
    block = (record or {}).get("novelty") if isinstance(record, Mapping) else None
    value = block.get("strength") if isinstance(block, Mapping) else None
    if value is None:
        return NOVELTY_STRENGTH
    try:
        strength = float(value)
    except (TypeError, ValueError):
        strength = float("nan")
    if not np.isfinite(strength) or strength <= 0:
        raise ValueError(f"ranking.novelty.strength: must be a finite number > 0, got {value!r}")
    return strength


def fusion_offset(record: Mapping[str, object] | None) -> float:
    """``score_total``'s rank offset from a manifest's ``ranking`` record (0, the plain ``1 / rank``, without one).

    Raises
    ------
    ValueError
        when the recorded offset is not a finite number >= 0.
    """
    fusion = (record or {}).get("fusion") if isinstance(record, Mapping) else None
    return _non_negative(fusion.get("offset", 0.0) if isinstance(fusion, Mapping) else 0.0, "ranking.fusion.offset")


def _non_negative(value: object, where: str) -> float:
    """``value`` as a finite number >= 0 (not a bool); ValueError naming ``where`` otherwise."""
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number < 0:
        raise ValueError(f"{where}: must be a finite number >= 0, got {value!r}")
    return number


def fusion_weights(record: Mapping[str, object] | None) -> dict[str, float]:
    """``score_total``'s weights from a manifest's ``ranking`` record, or :data:`FUSION_WEIGHTS` without one.

    Raises
    ------
    ValueError
        naming the source whose weight is not a finite non-negative number.
    """
    fusion = (record or {}).get("fusion") if isinstance(record, Mapping) else None
    raw = fusion.get("weights") if isinstance(fusion, Mapping) else None
    if not raw:
        return dict(FUSION_WEIGHTS)
    if not isinstance(raw, Mapping):
        raise ValueError(f"ranking.fusion.weights: must be an object, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if name not in SOURCES:
            raise ValueError(f"ranking.fusion.weights: unknown source {name!r} (known: {', '.join(SOURCES)})")
        try:
            w = float(value)
        except (TypeError, ValueError):
            w = float("nan")
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"ranking.fusion.weights.{name}: must be a finite number >= 0, got {value!r}")
        out[str(name)] = w
    # A source the fit did not name gets no say rather than the implicit weight 1.
    return {m: out.get(m, 0.0) for m in SOURCES}


def cold_fusion(record: Mapping[str, object] | None) -> ColdFusion:
    """The cold-start fusion a manifest's ``ranking`` record holds (``ranking.cold``: ``weights`` over
    :data:`COLD_SOURCES`, ``offset``), or :class:`ColdFusion`'s default without one.

    Raises
    ------
    ValueError
        naming the entry that is not as described (an unknown source, a weight or offset that is not a
        finite number >= 0).
    """
    block = (record or {}).get("cold") if isinstance(record, Mapping) else None
    if block is None:
        return ColdFusion()
    if not isinstance(block, Mapping) or not isinstance(raw := block.get("weights"), Mapping):
        raise ValueError("ranking.cold: must be an object with a 'weights' object")
    weights: dict[str, float] = {}
    for name, value in raw.items():
        if name not in COLD_SOURCES:
            raise ValueError(f"ranking.cold.weights: unknown source {name!r} (known: {', '.join(COLD_SOURCES)})")
        weights[str(name)] = _non_negative(value, f"ranking.cold.weights.{name}")
    return ColdFusion({m: weights.get(m, 0.0) for m in COLD_SOURCES},
                      _non_negative(block.get("offset", 0.0), "ranking.cold.offset"))
