"""Pure ranking functions: from per-model candidate lists to one ordered list of recommendations.

A *candidate list* is a model's nearest neighbours of the query, as catalog rows, best first, after
the query song, its merged duplicates and any other exclusions were removed, cut to the depth (50 by
default, more when ``k`` asks for more). Everything here works on such lists and on plain arrays, so it
can be tested without FAISS or a server.

Methods (as in the original system, minus its bug of returning the query song first):

``score_total``
    each source's candidate at 1-based rank ``r`` scores ``w_source / (offset + r)``; scores add up across sources,
    and a song missing from a source's list gets nothing from it. The sources are the three models and,
    in versions that have it, the co-occurrence list (``cooc``: songs sharing the most training
    playlists). The weights are fitted per catalog at training time on a validation split of its
    training playlists and read from the version's manifest, with the rank offset (0, the plain
    ``1 / r``, for versions without one); :data:`FUSION_WEIGHTS` at offset 0 is the fallback for versions
    from before that.
``each_top3``
    the top 3 of each of the three models in model order, merged without repeats, then the lists' next entries taken
    round-robin until ``k`` songs are chosen; the score of the ``i``-th chosen song is ``1 / i``.
``music2vec``, ``tcae``, ``cel``
    that model's list, scored by its inner product (cosine similarity for normalised vectors).

Novelty re-rank (``novelty`` in [0, 1]): every ranked song's score is multiplied by
``(1 + ln(1 + popularity)) ** (-strength * novelty)``. At 0 the order is unchanged; at 0.5 a song in
1,000 playlists needs about 60 times the score of a song in none to stay ahead, so the lesser-known songs
among the candidates rise ("hidden gems") while the candidate set, and so the relevance floor, stays
the models'. Single-model similarities are first mapped from [-1, 1] to [0, 1] so the product is monotone.
Each version fits, on a validation split, the strength, a head (the best few places keep their place) and
optionally a popularity cap: past the head, the songs at or below the cap come first. The cap is a quantile
of the catalog's popularity that falls with ``novelty`` (:func:`mugle_core.fusion.novelty_cap`); where
popularity is flat it halves the list's popularity at less hit-rate cost than a stronger penalty.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from app.errors import ClientError

# score_total, the novelty re-rank and their constants live in mugle_core.fusion (training fits them);
# they are re-exported here, where the rest of the ranking is.
from mugle_core.fusion import (
    COLD_SOURCES,
    COOC,
    DEPTH,
    FUSION_OFFSETS,
    FUSION_WEIGHTS,
    MODELS,
    NOVELTY_STRENGTH,
    PLAYLIST_SOURCES,
    POPULAR,
    SOURCES,
    ColdFusion,
    Ranked,
    candidate_list,
    cap_levels,
    cold_fusion,
    fuse,
    fusion_offset,
    fusion_weights,
    is_cold,
    novelty_cap,
    novelty_cap_quantile,
    novelty_head,
    novelty_rerank,
    novelty_strength,
    popular_candidates,
    popular_order,
    ranks_of,
    score_total,
)
from mugle_core.names import METHODS

logger = logging.getLogger(__name__)

# What other modules take from here: the fusion's names re-exported, the method list, and this module's own.
__all__ = [
    "COLD_SOURCES",
    "COOC",
    "DEPTH",
    "FUSION_OFFSETS",
    "FUSION_WEIGHTS",
    "METHODS",
    "MODELS",
    "NOVELTY_STRENGTH",
    "PLAYLIST_SOURCES",
    "POPULAR",
    "ColdFusion",
    "Ranked",
    "SOURCES",
    "cold_fusion",
    "is_cold",
    "fusion_offset",
    "fusion_weights",
    "cap_levels",
    "novelty_cap",
    "novelty_cap_quantile",
    "novelty_head",
    "novelty_rerank",
    "novelty_strength",
    "popular_candidates",
    "popular_order",
    "score_total",
    "candidate_list",
    "each_top3",
    "fuse",
    "rank_method",
    "ranks_of",
    "single_model",
    "sum_lists",
]

TOP_EACH = 3


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
    offset: float = 0.0,
    cold: ColdFusion | None = None,
) -> Ranked:
    """The full ordered pool of ``method`` (not yet cut to ``k``).

    ``weights`` and ``offset`` are ``score_total``'s per-source weights and rank offset (the version's
    fitted ones); weights None means :data:`FUSION_WEIGHTS` with the plain ``1 / rank``. ``cold`` is the
    version's cold-start fusion (:func:`mugle_core.fusion.fuse`). ``each_top3`` merges the three models
    only, as the original did.
    """
    if method == "score_total":
        return fuse(lists, weights, offset, cold)
    if method == "each_top3":
        return each_top3({m: rows for m, rows in lists.items() if m in MODELS})
    if method in lists:
        return single_model(lists[method], sims[method])
    if method in METHODS:
        return []  # the model exists but has no vector for this query: an empty answer, not an error
    raise ClientError(f"method: unknown method {method!r} (expected one of {', '.join(METHODS)})")


def sum_lists(
    lists: Sequence[tuple[Sequence[int], Sequence[float]]], exclude: Iterable[int] = (), depth: int = DEPTH
) -> tuple[list[int], list[float]]:
    """Merge several scored lists by summing each row's scores (a seed set's co-occurrence rows).

    Ties go to the lower row. Negative rows (pads) and ``exclude`` are dropped; at most ``depth`` rows.
    """
    banned = {int(r) for r in exclude}
    total: dict[int, float] = {}
    for rows, scores in lists:
        for r, s in zip(rows, scores, strict=True):
            r = int(r)
            if r >= 0 and r not in banned:
                total[r] = total.get(r, 0.0) + float(s)
    best = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
    return [r for r, _ in best], [s for _, s in best]
