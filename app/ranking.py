"""Pure ranking functions: from per-model candidate lists to one ordered list of recommendations.

A *candidate list* is a model's nearest neighbours of the query, as catalog rows, best first, after
the query song, its merged duplicates and any other exclusions were removed, cut to the depth (50 by
default, more when ``k`` asks for more). Everything here works on such lists and on plain arrays, so it
can be tested without FAISS or a server.

Methods (as in the original system, minus its bug of returning the query song first):

``score_total``
    each model's candidate at 1-based rank ``r`` scores ``w_model / r`` (:data:`FUSION_WEIGHTS`);
    scores add up across models, and a song missing from a model's list gets nothing from it.
``each_top3``
    the top 3 of each model in model order, merged without repeats, then the lists' next entries taken
    round-robin until ``k`` songs are chosen; the score of the ``i``-th chosen song is ``1 / i``.
``music2vec``, ``tcae``, ``cel``
    that model's list, scored by its inner product (cosine similarity for normalised vectors).

Novelty re-rank (``novelty`` in [0, 1]): every ranked song's score is multiplied by
``(1 + ln(1 + popularity)) ** (-NOVELTY_STRENGTH * novelty)``. At 0 the order is unchanged; at 0.5 a song in
1,000 playlists needs about 60 times the score of a song in none to stay ahead, so the lesser-known songs
among the candidates rise ("hidden gems") while the candidate set, and so the relevance floor, stays
the models'. Single-model similarities are first mapped from [-1, 1] to [0, 1] so the product is monotone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

DEPTH = 50
TOP_EACH = 3
# The weighted fusion's pool leans on Music2Vec, whose songs are more popular than the audio models'
# (demo median about 24 against 5-7), so halving the median at novelty 0.5 takes a stronger pull than
# the equal-weight pool did: strength 4 at 0.5 equals strength 2 at 1, which measured a ratio of 0.48 at
# 7.7% HitRate@10 cost (default demo, holdout seed 1).
NOVELTY_STRENGTH = 4.0
METHODS: tuple[str, ...] = ("score_total", "each_top3", "music2vec", "tcae", "cel")
# Per-model weights of the 1/rank sum in ``score_total``. With equal weights the audio lists, which find
# songs that sound alike but are less often listed together, dilute Music2Vec's co-listening list and
# the fusion fell below Music2Vec alone (HitRate@10 0.710 vs 0.755 on the default demo). Chosen by a grid
# over the served depth-50 lists (cel in 0..1, tcae in 0..0.5, music2vec fixed at 1) on the default demo's
# held-out playlists, trained with --seed 0 and checked on --seed 1: the smallest audio weights that
# still let audio candidates reach the top 10 (for diversity and songs Music2Vec has no vector for)
# while staying at or above the best single model. A model not named here counts with weight 1.
FUSION_WEIGHTS: dict[str, float] = {"music2vec": 1.0, "cel": 0.25, "tcae": 0.1}

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


def score_total(lists: Mapping[str, Sequence[int]], weights: Mapping[str, float] | None = None) -> Ranked:
    """Sum of ``weight / rank`` across models; ties go to the better best rank, then the lower row.

    ``weights`` maps a model name to its weight (missing names weigh 1; ``None``: all weigh 1, the
    original system's plain sum). A model with weight 0 contributes neither score nor best rank.
    """
    weights = weights or {}
    named = [(float(weights.get(m, 1.0)), np.asarray(rows, dtype=np.int64)) for m, rows in lists.items()]
    named = [(w, p) for w, p in named if len(p) and w != 0.0]
    if not named:
        return []
    rows = np.concatenate([p for _, p in named])
    ranks = np.concatenate([np.arange(1, len(p) + 1, dtype=np.int64) for _, p in named])
    gains = np.concatenate([w / np.arange(1, len(p) + 1, dtype=np.float64) for w, p in named])
    songs, inverse = np.unique(rows, return_inverse=True)
    # bincount adds in input order, model after model: the same float sums as adding rank by rank.
    scores = np.bincount(inverse, weights=gains, minlength=len(songs))
    best = np.full(len(songs), len(ranks) + 1, dtype=np.int64)  # above any rank
    np.minimum.at(best, inverse, ranks)
    order = np.lexsort((songs, best, -scores))
    return list(zip(songs[order].tolist(), scores[order].tolist(), strict=True))


def each_top3(lists: Mapping[str, Sequence[int]], top: int = TOP_EACH) -> Ranked:
    """Top ``top`` of each model merged without repeats, then round-robin through the lists' rest."""
    chosen: list[int] = []
    seen: set[int] = set()
    model_lists = [list(rows) for rows in lists.values()]

    def take(start: int, stop: int) -> None:
        for rows in model_lists:
            for row in rows[start:stop]:
                if row not in seen:
                    seen.add(row)
                    chosen.append(row)

    take(0, top)
    longest = max((len(r) for r in model_lists), default=0)
    # Round-robin: one position of every model at a time, so no model dominates the fill.
    for pos in range(top, longest):
        take(pos, pos + 1)
    return [(row, 1.0 / i) for i, row in enumerate(chosen, start=1)]


def single_model(rows: Sequence[int], sims: Sequence[float]) -> Ranked:
    """One model's list as it is, scored by its similarity."""
    return [(int(r), float(s)) for r, s in zip(rows, sims, strict=True)]


def rank_method(
    method: str,
    lists: Mapping[str, Sequence[int]],
    sims: Mapping[str, Sequence[float]],
    weights: Mapping[str, float] | None = None,
) -> Ranked:
    """The full ordered pool of ``method`` (not yet cut to ``k``); ``weights`` for ``score_total`` (default
    :data:`FUSION_WEIGHTS`)."""
    if method == "score_total":
        return score_total(lists, FUSION_WEIGHTS if weights is None else weights)
    if method == "each_top3":
        return each_top3(lists)
    if method in lists:
        return single_model(lists[method], sims[method])
    if method in METHODS:
        return []  # the model exists but has no vector for this query: an empty answer, not an error
    raise ValueError(f"method: unknown method {method!r} (expected one of {', '.join(METHODS)})")


def novelty_rerank(ranked: Ranked, popularity: np.ndarray, novelty: float, similarity: bool = False) -> Ranked:
    """Re-rank towards lesser-known songs; see the module docstring for the formula.

    Parameters
    ----------
    ranked : the method's pool, best first.
    popularity : playlists per catalog row.
    novelty : 0 keeps the order, 1 is the strongest preference for lesser-known songs.
    similarity : the scores are cosine similarities in [-1, 1] (single-model methods).
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
    adjusted = base * (1.0 + np.log1p(np.maximum(pop, 0.0))) ** (-NOVELTY_STRENGTH * novelty)
    order = np.lexsort((np.arange(len(rows)), -adjusted))  # stable: equal scores keep the model order
    return [(int(rows[i]), float(adjusted[i])) for i in order]


def ranks_of(rows: Iterable[int], lists: Mapping[str, Sequence[int]], models: Sequence[str]) -> dict[int, dict]:
    """Per row, its 1-based rank in each model's candidate list, or None when absent."""
    positions = {m: {row: i for i, row in enumerate(lists.get(m, ()), start=1)} for m in models}
    return {row: {m: positions[m].get(row) for m in models} for row in rows}
