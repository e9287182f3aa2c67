"""Fit the ranking to the catalog at hand, on a validation split of its own training playlists.

What the project once chose by hand on the demo catalog is chosen here per catalog, at training time:

* the co-occurrence list's popularity exponent ``alpha`` (:mod:`training.cooc`);
* Music2Vec's hyper-parameters worth searching (``ns_exponent``, ``window``, ``epochs``, ``sample``) and
  how its neighbours are scored (``in_out``: input vector against output vectors; ``in_in``: cosine of
  input vectors), by a coordinate search that starts from the given options;
* ``score_total``'s per-source weights (music2vec, tcae, cel, cooc) and rank offset, by a grid over the
  sources' validation lists fused exactly as the service fuses them (:func:`mugle_core.fusion.score_total`);
* the novelty re-rank's strength, kept head and popularity cap;
* the cold-start fusion (a query with audio alone): the audio models' weights and that of a popularity list
  (:class:`mugle_core.fusion.ColdFusion`), on the validation playlists' songs that no fitting playlist holds.

Protocol: a seeded share of the *training* playlists (never the held-out ones, which are not even passed
in; :func:`split_validation` refuses an overlap) is set aside. Models are trained on the rest; each
validation playlist gives up to ``seeds_per_playlist`` queries (a seed song the fitting playlists know,
the truth being the playlist's other songs), as the offline evaluation does with held-out playlists.
The objective is HitRate@10 + nDCG@10.

Everything runs inside a wall-clock budget. A Music2Vec trial starts only when its estimated time (from
the trials measured so far) fits in what is left of the first phase's share; the second phase (the
fusion weights, after the audio models are trained) trains a CEL on the fitting split only when the
final CEL's measured time fits. What could not be fitted keeps its given or fallback value, and the
manifest says so.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse

from mugle_core import fusion as ranking
from training import cooc
from training.music2vec import Music2VecOptions, Music2VecResult, train_music2vec

logger = logging.getLogger(__name__)

K = 10
DEPTH = ranking.DEPTH
SCORES: tuple[str, ...] = ("in_out", "in_in")
ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
# Coordinate search: per parameter, the values tried (the given value is always the incumbent).
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "ns_exponent": (-0.5, 0.0, 0.75),
    "window": (5, 10, 30, 100),
    "epochs": (5, 10, 20),
    "sample": (0.0, 1e-3),
    "score": SCORES,
}
# score_total weights tried for the sources other than the reference (the best single source, at 1).
# The small values only fill what the reference leaves short; the large ones fuse.
WEIGHT_GRID: dict[str, tuple[float, ...]] = {
    "cooc": (0.0, 0.005, 0.02, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
    "music2vec": (0.0, 0.005, 0.02, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
    "cel": (0.0, 0.002, 0.005, 0.05, 0.1, 0.25),
    "tcae": (0.0, 0.002, 0.005, 0.05, 0.1),
}
# The reference's weighting: the other sources only fill (a candidate at rank 1 of another source scores
# less than one at rank 50 of the reference, so it never passes one the reference listed).
FILL_WEIGHT = 0.005
# A grid point replaces the reference only with a clear validation gain (paired z over the queries): at
# least MIN_GAIN_Z, and at least what the best of the grid's columns reaches by luck alone
# (:func:`selection_z`): the grid holds thousands of weightings, and the best of them shows z 2 and more
# over the reference when none is better (check-flat-mid: the top validation point, z 1.9-2.3, lost
# 0.05 HitRate@10 on the held-out playlists, z -2.5, in two runs of two seeds each).
MIN_GAIN_Z = 2.0
# Sign-flip draws of the selection null and the quantile taken.
NULL_DRAWS = 200
NULL_LEVEL = 0.95
# "Reaches the best single source" on validation, with room for the fill weights' reordering of the tail.
REACH_TOL = 0.005
# Novelty settings tried. Head 5 keeps half the top 10, so a strong pull on the other half moves the
# median; the strengths reach 32, where the re-ranked tail is ordered almost by popularity alone.
NOVELTY_STRENGTHS: tuple[float, ...] = (4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0)
NOVELTY_HEADS: tuple[int, ...] = (5, 4, 3, 2, 0)  # the likeliest first, should the budget stop the grid
# Popularity caps tried besides none, as quantiles at novelty 0.5 (:func:`mugle_core.fusion.novelty_cap`).
# Where popularity is flat, the songs a playlist shares are the popular ones and a penalty strong enough to
# move the tail also reorders it by popularity alone; a cap instead keeps the tail in relevance order among
# the songs below it (long-noisy catalog, validation: margin 0.00 without a cap, 0.14 with one).
# 0.95 is the gentlest: on skewed catalogs q0.9 already took the median to a quarter of its value
# (ratio 0.2-0.3) and paid for the overshoot in hits (check-long-skewed, seed 1: 13 % held out).
NOVELTY_CAPS: tuple[float, ...] = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5)
# Under a cap the tail is already lesser-known: weaker pulls keep more of its relevance order.
NOVELTY_CAP_STRENGTHS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
NOVELTY_TARGET_RATIO = 0.5
NOVELTY_MAX_COST = 0.1
# A setting's room inside each limit is counted in standard deviations of its own validation estimate
# (bootstrap over the queries): the hit-rate cost is the noisier of the two by far (one query more or less
# among 200 moves it by 0.7 points, the median popularity hardly at all), so a cost 1.7 points inside its
# limit was less room than a ratio 0.2 inside its own (check-mid-long: cost 8.3 % on validation, 10.9 % held
# out). Draws of that bootstrap, and floors: the setting is judged on another sample than validation, and
# over 16 sweep runs (eight catalogs, two splits) the held-out figure minus the validation one had a standard
# deviation of 0.027 for the ratio and 3.3 points for the cost; each of the two samples' share of that is
# about 1/sqrt(2) of it, and no bootstrap of one sample may claim less. With the old floors (0.01, 0.005) a
# setting that changed few lists showed a tiny cost spread and won on room it did not have (check-mid-long,
# seed 0: cost 7 % on validation, 12 % held out).
NOVELTY_BOOTSTRAP = 60
NOVELTY_MIN_SD = (0.019, 0.023)  # (ratio, cost)
# Cold-start weights tried (tcae, cel, and the popularity list), crossed with the rank offsets. Where
# popularity is skewed a held-out playlist is mostly the catalog's hits, and a song's sound says little of
# which (structure sweep, cold-start seeds: most-popular 0.59-0.74 HitRate@10 against the audio fusion's
# 0.15-0.34 on big-mixed and check-long-skewed); on the default demo the audio lists lead and a little
# popularity only breaks their ties. The fit weighs them per catalog.
COLD_WEIGHT_GRID: dict[str, tuple[float, ...]] = {
    "tcae": (0.0, 0.1, 0.25, 0.5, 1.0),
    "cel": (0.0, 0.1, 0.25, 0.5, 1.0),
    ranking.POPULAR: (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
}
# Wall-clock cap of the cold-start grid (it runs after the rest of the fit, whose budget it does not share:
# that one may be spent by then); judged on the queries scored when it stops.
COLD_MAX_S = 15.0
# Weights of a version whose fusion could not be fitted (budget too small): co-occurrence leads, the
# embeddings add what it lacks. Chosen as the typical fit on the structure sweep (docs/eval/structures.md).
UNFITTED_WEIGHTS: dict[str, float] = {"cooc": 1.0, "music2vec": 0.5, "cel": 0.1, "tcae": 0.05}
# Share of the budget the first phase (co-occurrence and Music2Vec) may use; the rest is the fusion's.
PHASE1_SHARE = 0.75
# Words per second assumed for the first Music2Vec trial's estimate (2 cores; measured 77k-300k).
ASSUMED_WORDS_PER_S = 100_000.0


class FitError(ValueError):
    """The fitting cannot run as asked (e.g. a validation playlist is also held out)."""


class _OutOfTime(Exception):
    """Raised between two Music2Vec epochs when the fitting's deadline has passed."""


def _deadline_callback(fitter: Fitter, share: float, epoch_times: list[float]) -> Any:
    """A gensim callback that times each epoch and stops training once ``fitter`` is out of its share."""
    from gensim.models.callbacks import CallbackAny2Vec

    class Deadline(CallbackAny2Vec):  # type: ignore[misc]
        def on_epoch_begin(self, model: Any) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, model: Any) -> None:
            epoch_times.append(time.perf_counter() - self.t0)
            if fitter.left(share) < 0:
                raise _OutOfTime

    return Deadline()


@dataclass
class FitOptions:
    """How training fits the ranking (recorded in the manifest).

    Attributes
    ----------
    budget_s : wall-clock bound of the whole fitting, both phases.
    val_fraction : share of the training playlists set aside for validation.
    max_val_playlists : at most this many validation playlists.
    seeds_per_playlist : queries per validation playlist (different seed songs).
    search : run the Music2Vec search (off: only alpha and the fusion weights are fitted).
    """

    budget_s: float = 60.0
    val_fraction: float = 0.15
    max_val_playlists: int = 2000
    seeds_per_playlist: int = 3
    search: bool = True

    def validate(self) -> None:
        if not self.budget_s >= 0:
            raise ValueError(f"fit_budget={self.budget_s!r}: must be >= 0 seconds")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"fit_val_fraction={self.val_fraction!r}: must be in (0, 0.5)")
        if self.max_val_playlists < 1:
            raise ValueError(f"fit_max_val_playlists={self.max_val_playlists!r}: must be at least 1")
        if self.seeds_per_playlist < 1:
            raise ValueError(f"fit_seeds_per_playlist={self.seeds_per_playlist!r}: must be at least 1")


@dataclass(frozen=True)
class ValQuery:
    """One validation query: a seed song and the other songs of its validation playlist."""

    seed: int
    relevant: frozenset[int]


@dataclass
class ValidationSplit:
    """The fitting playlists, the validation playlists' ids and the validation queries.

    ``cold_queries`` are the validation playlists' songs that no fitting playlist holds, each a seed with
    the rest of its playlist as the truth: cold-start queries, as `mugle evaluate` draws them from the
    held-out playlists (the cold-start fusion is fitted on them).
    """

    fit_playlists: list[list[int]]
    fit_ids: list[int]
    val_ids: list[int]
    queries: list[ValQuery]
    cold_queries: list[ValQuery] = field(default_factory=list)


def split_validation(
    playlists: Sequence[Sequence[int]],
    playlist_ids: Sequence[int],
    holdout_ids: Iterable[int],
    options: FitOptions,
    seed: int,
) -> ValidationSplit:
    """Set a seeded share of the training playlists aside and draw the validation queries.

    Parameters
    ----------
    playlists : the training playlists (canonical ids, curator order), held-out ones already removed.
    playlist_ids : their playlist ids, aligned with ``playlists``.
    holdout_ids : the version's held-out playlist ids; none of them may be among ``playlist_ids``.
    options : see :class:`FitOptions`.
    seed : seeds the split and the seed songs.

    Raises
    ------
    FitError
        When a held-out playlist is among the training playlists, or the lengths disagree.
    """
    if len(playlists) != len(playlist_ids):
        raise FitError(f"{len(playlists)} playlists but {len(playlist_ids)} playlist ids")
    leaked = set(int(i) for i in playlist_ids) & set(int(i) for i in holdout_ids)
    if leaked:
        raise FitError(f"{len(leaked)} held-out playlists are among the training playlists, e.g. {sorted(leaked)[:3]}")
    rng = np.random.default_rng([seed, 0x56616C])  # a stream of its own
    n_val = min(options.max_val_playlists, int(round(options.val_fraction * len(playlists))))
    order = rng.permutation(len(playlists))
    val_idx = np.sort(order[:n_val])
    is_val = np.zeros(len(playlists), dtype=bool)
    is_val[val_idx] = True
    fit_playlists = [list(p) for p, v in zip(playlists, is_val, strict=True) if not v]
    fit_ids = [int(i) for i, v in zip(playlist_ids, is_val, strict=True) if not v]
    known = {s for p in fit_playlists for s in p}
    queries: list[ValQuery] = []
    cold: list[ValQuery] = []
    for i in val_idx.tolist():
        songs = list(dict.fromkeys(playlists[i]))
        if len(songs) < 2:
            continue
        warm = [s for s in songs if s in known]
        picks = rng.permutation(len(warm))[: options.seeds_per_playlist]
        for j in picks.tolist():
            s = warm[j]
            queries.append(ValQuery(int(s), frozenset(songs) - {s}))
        # Every cold song seeds its own query, as in `mugle evaluate` (no draw: the warm draws stay what
        # they were); whether it has audio is the fit's to check.
        cold.extend(ValQuery(int(s), frozenset(songs) - {s}) for s in songs if s not in known)
    return ValidationSplit(fit_playlists, fit_ids, [int(playlist_ids[i]) for i in val_idx.tolist()], queries, cold)


# -- scoring ---------------------------------------------------------------------------------------


def figures(lists: Sequence[Sequence[int]], queries: Sequence[ValQuery]) -> dict[str, float]:
    """HitRate@10 and nDCG@10 (binary gains) of ranked id lists against the queries' truth."""
    hr = nd = 0.0
    for top, q in zip(lists, queries, strict=True):
        gains = [1.0 if s in q.relevant else 0.0 for s in list(top)[:K]]
        hr += 1.0 if any(gains) else 0.0
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(K, len(q.relevant))))
        nd += sum(g / math.log2(i + 2) for i, g in enumerate(gains)) / ideal if ideal else 0.0
    n = max(len(queries), 1)
    return {"hit_rate@10": round(hr / n, 5), "ndcg@10": round(nd / n, 5)}


def objective(fig: Mapping[str, float]) -> float:
    return float(fig["hit_rate@10"]) + float(fig["ndcg@10"])


def vector_lists(
    ids: np.ndarray, query: np.ndarray, key: np.ndarray, seeds: Sequence[int], depth: int = DEPTH
) -> list[list[int]]:
    """Each seed's top ``depth`` song ids by ``key @ query[seed]``, itself excluded; [] without a vector."""
    ids = np.asarray(ids, dtype=np.int64)
    out: list[list[int]] = [[] for _ in seeds]
    if len(ids) == 0:
        return out
    seeds_arr = np.asarray(seeds, dtype=np.int64)
    pos = np.minimum(np.searchsorted(ids, seeds_arr), len(ids) - 1)
    found = ids[pos] == seeds_arr
    have = np.flatnonzero(found)
    for start in range(0, len(have), 512):
        chunk = have[start:start + 512]
        sims = query[pos[chunk]] @ key.T
        sims[np.arange(len(chunk)), pos[chunk]] = -np.inf
        take = min(depth, len(ids) - 1)
        if take <= 0:
            continue
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take] if take < len(ids) else np.tile(
            np.arange(len(ids)), (len(chunk), 1))
        for r, qi in enumerate(chunk.tolist()):
            cand = top[r][np.isfinite(sims[r, top[r]])]
            cand = cand[np.lexsort((cand, -sims[r, cand]))]
            out[qi] = ids[cand[:depth]].tolist()
    return out


# -- the fitter ------------------------------------------------------------------------------------


@dataclass
class Fitter:
    """Fits the ranking of one catalog in two phases inside one wall-clock budget.

    Phase 1 (:meth:`fit_lists`, before the final Music2Vec is trained) fits the co-occurrence
    exponent and searches Music2Vec; phase 2 (:meth:`fit_fusion`, after the audio models) fits the
    ``score_total`` weights.
    """

    split: ValidationSplit
    options: FitOptions
    seed: int = 0
    progress: bool = False
    record: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, list[list[int]]] = field(default_factory=dict)
    fit_w2v: Music2VecResult | None = None
    fit_score: str = "in_out"
    fused_lists: dict[str, list[list[int]]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    offset: float = 0.0
    # The audio models' (ids, L2-normalised vectors) the fusion was fitted with: tcae, and cel when a CEL
    # was trained on the fitting split. The cold-start fit lists its seeds' neighbours in them.
    audio_vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # The budget counts the fitting's own time only: training pauses the clock between the phases.
    _spent: float = 0.0
    _since: float | None = field(default_factory=time.perf_counter)

    def pause(self) -> None:
        if self._since is not None:
            self._spent += time.perf_counter() - self._since
            self._since = None

    def resume(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def elapsed(self) -> float:
        return self._spent + (time.perf_counter() - self._since if self._since is not None else 0.0)

    def left(self, share: float = 1.0) -> float:
        return self.options.budget_s * share - self.elapsed()

    def fit_popularity(self) -> dict[int, int]:
        """Playlists per song in the fitting split (the validation playlists do not count)."""
        counted: dict[int, int] = {}
        for p in self.split.fit_playlists:
            for s in p:
                counted[s] = counted.get(s, 0) + 1
        return counted

    @property
    def seeds(self) -> list[int]:
        return [q.seed for q in self.split.queries]

    # -- phase 1 -----------------------------------------------------------------------------------

    def fit_alpha(self, alphas: Sequence[float] = ALPHAS) -> float:
        """The co-occurrence exponent with the best validation objective (lists kept for phase 2)."""
        t0 = time.perf_counter()
        fit = self.split.fit_playlists
        ids = np.unique(np.fromiter((s for p in fit for s in p), dtype=np.int64))
        x = cooc.incidence(fit, ids)
        pop = cooc.popularity(x)
        cols = np.searchsorted(ids, np.asarray(self.seeds, dtype=np.int64))
        counts = cooc.counts_for(x, x.T.tocsr(), cols)
        table: dict[str, Any] = {}
        best_alpha, best_obj, best_lists = 0.0, -1.0, []
        for a in alphas:
            found, _ = cooc.top_k(counts, cols, pop, DEPTH, a)
            lists = [ids[row[row >= 0]].tolist() for row in found]
            fig = figures(lists, self.split.queries)
            table[str(a)] = fig
            if objective(fig) > best_obj + 1e-12:
                best_alpha, best_obj, best_lists = float(a), objective(fig), lists
        self.lists[ranking.COOC] = best_lists
        self.record["cooc"] = {"alpha": best_alpha, "validation": table, "seconds": round(time.perf_counter() - t0, 3)}
        logger.info("fit: co-occurrence alpha %.2f (%s)", best_alpha, table[str(best_alpha)])
        return best_alpha

    def _train_trial(self, opts: Music2VecOptions, keep: set[int], epoch_times: list[float]) -> Music2VecResult | None:
        """Train one trial; None when the deadline passed mid-way (checked after every epoch)."""
        deadline = _deadline_callback(self, PHASE1_SHARE, epoch_times)
        with tempfile.TemporaryDirectory(prefix="mugle-fit-") as tmp:
            try:
                return train_music2vec(self.split.fit_playlists, keep, opts, self.seed, work_dir=tmp,  # type: ignore[arg-type]
                                       callbacks=[deadline])
            except _OutOfTime:
                return None

    def search_music2vec(self, base: Music2VecOptions, min_playlists: int, score: str = "in_out") -> tuple[
            Music2VecOptions, str]:
        """Coordinate search over :data:`SEARCH_SPACE` from ``base``, inside phase 1's share of the budget.

        Returns the best options and scoring found (``base`` and ``score`` when nothing could be tried).
        """
        import gensim.models  # noqa: F401 - imported here (seconds, once) so it does not count as a trial's time

        pop: dict[int, int] = {}
        for p in self.split.fit_playlists:
            for s in p:
                pop[s] = pop.get(s, 0) + 1
        keep = {s for s, n in pop.items() if n >= min_playlists}
        tokens = sum(sum(1 for s in p if s in keep) for p in self.split.fit_playlists)
        mean_len = tokens / max(1, len(self.split.fit_playlists))
        trials: list[dict[str, Any]] = []
        cache: dict[tuple, Music2VecResult] = {}
        epoch_times: list[float] = []
        per_epoch: list[tuple[float, float]] = []  # (seconds per epoch, effective window) of finished trials

        def cost(o: Music2VecOptions) -> float:
            w = min(o.window, mean_len)
            if per_epoch:
                # Per-epoch time has a fixed part (threads, queues) and a part that grows with the window:
                # scale only up, never down, so the estimate errs on the safe side.
                return max(s * max(1.0, w / w0) for s, w0 in per_epoch) * o.epochs * 1.1
            return o.epochs * (0.05 + tokens * w / min(10.0, max(mean_len, 1.0)) / ASSUMED_WORDS_PER_S)

        def run(o: Music2VecOptions, sc: str) -> dict[str, float] | None:
            key = (o.ns_exponent, o.window, o.epochs, o.sample)
            result = cache.get(key)
            if result is None:
                need = cost(o)
                if need > self.left(PHASE1_SHARE):
                    left = self.left(PHASE1_SHARE)
                    trials.append({**_trial_params(o, sc), "skipped": f"needs ~{need:.1f}s, {left:.1f}s left"})
                    return None
                t0 = time.perf_counter()
                done = len(epoch_times)
                result = self._train_trial(o, keep, epoch_times)
                took = time.perf_counter() - t0
                if result is None:
                    trials.append({**_trial_params(o, sc), "skipped": f"stopped by the budget after {took:.1f}s"})
                    return None
                per_epoch.append((took / max(1, len(epoch_times) - done), min(o.window, mean_len)))
                cache[key] = result
            else:
                took = 0.0
            lists = vector_lists(result.ids, result.query, result.key if sc == "in_out" else result.query, self.seeds)
            fig = figures(lists, self.split.queries)
            trials.append({**_trial_params(o, sc), **fig, "seconds": round(took, 3)})
            if fig and (best["obj"] is None or objective(fig) > best["obj"] + 1e-12):
                best.update(obj=objective(fig), opts=o, score=sc, lists=lists, result=result)
            return fig

        best: dict[str, Any] = {"obj": None, "opts": base, "score": score, "lists": None, "result": None}
        run(base, score)
        if self.options.search and best["obj"] is not None:
            for name, values in SEARCH_SPACE.items():
                for v in values:
                    cur_opts, cur_score = best["opts"], best["score"]
                    if name == "score":
                        if v == cur_score:
                            continue
                        run(cur_opts, v)
                    else:
                        if getattr(cur_opts, name) == v:
                            continue
                        run(replace(cur_opts, **{name: v}), cur_score)
        if best["lists"] is not None:
            self.lists["music2vec"] = best["lists"]
            self.fit_w2v = best["result"]
            self.fit_score = best["score"]
        chosen = best["opts"]
        self.record["music2vec"] = {
            "searched": bool(self.options.search),
            "chosen": {**_trial_params(chosen, best["score"])},
            "validation": next((t for t in trials if "skipped" not in t and _same(t, chosen, best["score"])), None),
            "trials": trials,
            "fit_vocab": len(keep),
            "longest_epoch_s": round(max(epoch_times, default=0.0), 3),
        }
        logger.info("fit: music2vec %s after %d trials", self.record["music2vec"]["chosen"], len(trials))
        return chosen, best["score"]

    # -- phase 2 -----------------------------------------------------------------------------------

    def fit_fusion(
        self,
        audio: Mapping[str, tuple[np.ndarray, np.ndarray]],
        cel_trainer: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None,
        cel_seconds: float,
        have_cooc: bool = True,
    ) -> dict[str, float]:
        """Fit ``score_total``'s weights (every source named in the result) and the novelty strength.

        Parameters
        ----------
        audio : ``{"tcae": (ids, vectors)}``: models trained without playlists, usable as they are.
        cel_trainer : trains a CEL from (music2vec ids, query vectors) of the fitting split and returns
            (ids, vectors); called only when ``cel_seconds`` (the final CEL's measured time) fits.
        cel_seconds : how long the final CEL took.
        have_cooc : whether the version has co-occurrence lists (else the fusion is over the models).

        Notes
        -----
        The served fusion must reach every single source on HitRate@10 *and* on nDCG@10. On validation,
        a weighting's shortfall is ``min(HR / best single HR, nDCG / best single nDCG)``. The reference
        weighting is the strongest single source alone, the others at a weight so small that they only
        fill lists it leaves short. When the reference leads both metrics itself (and its fills keep it
        within :data:`REACH_TOL` of them), a grid point replaces it only with a clear gain (a paired z of at
        least :data:`MIN_GAIN_Z` on HR + nDCG over the queries, and more than the best of the grid's
        columns reaches by luck, :func:`selection_z`), so the fusion follows validation evidence, not
        validation noise; when it does not (one source leads on hits, another on order, even by a
        hair), the grid point whose smaller paired z against the two
        leaders is largest wins (:func:`_z_against_leaders`): the one likeliest to stay ahead of both on
        other queries, not the one ahead by most on these.
        The grid crosses the weights with the rank offsets :data:`mugle_core.fusion.FUSION_OFFSETS`
        (``w / (offset + rank)``); on equal figures the smaller offset, first in the grid, is kept.
        """
        t0 = time.perf_counter()
        lists = dict(self.lists)
        if not have_cooc:
            lists.pop(ranking.COOC, None)
        for name, (ids, vecs) in audio.items():
            lists[name] = vector_lists(ids, vecs, vecs, self.seeds)
            self.audio_vectors[name] = (ids, vecs)
        notes: dict[str, str] = {}
        if cel_trainer is not None and self.fit_w2v is not None and len(self.fit_w2v.ids):
            if cel_seconds * 1.2 + 1.0 <= self.left():
                cel_ids, cel_vecs = cel_trainer(self.fit_w2v.ids, self.fit_w2v.query)
                lists["cel"] = vector_lists(cel_ids, cel_vecs, cel_vecs, self.seeds)
                self.audio_vectors["cel"] = (cel_ids, cel_vecs)
            else:
                notes["cel"] = (f"not fitted (weight 0 but for audio-only songs): a CEL takes ~{cel_seconds:.1f}s, "
                                f"{self.left():.1f}s of the budget left")
        queries = self.split.queries
        if not lists or not queries:
            weights = dict(UNFITTED_WEIGHTS if have_cooc else ranking.FUSION_WEIGHTS)
            weights = {m: weights.get(m, 0.0) for m in ranking.SOURCES}
            self.record["fusion"] = {"weights": weights, "fitted": False, "note": "no validation lists", **notes}
            return weights
        singles = {name: figures([x[:K] for x in ls], queries) for name, ls in lists.items()}
        names = [m for m in ranking.SOURCES if m in lists]
        reference = max(names, key=lambda m: (objective(singles[m]), m == ranking.COOC))
        others = [m for m in names if m != reference]
        combos = [{reference: 1.0, **dict(zip(others, c, strict=True))}
                  for c in _grid([WEIGHT_GRID.get(m, WEIGHT_GRID["cel"]) for m in others])]
        fill = {reference: 1.0, **{m: FILL_WEIGHT for m in others}}
        if fill not in combos:
            combos.append(fill)
        offsets = ranking.FUSION_OFFSETS
        hits, gains = _grid_objectives(lists, names, combos, queries, lambda: self.left() <= 0, offsets)
        if len(hits) < len(queries):  # the budget ran out: judge every weighting on the queries scored
            notes["grid"] = f"stopped by the budget after {len(hits)} of {len(queries)} queries"
            queries = queries[: len(hits)]
            singles = {name: figures([x[:K] for x in ls[: len(hits)]], queries) for name, ls in lists.items()}
        per_query = hits + gains
        best_hr = max(f["hit_rate@10"] for f in singles.values())
        best_nd = max(f["ndcg@10"] for f in singles.values())
        reach = np.minimum(hits.mean(axis=0) / max(best_hr, 1e-9), gains.mean(axis=0) / max(best_nd, 1e-9))
        ref_i = combos.index(fill) + len(combos) * offsets.index(0.0)  # plain 1/rank
        obj = per_query.mean(axis=0)
        # The reference stands only where it leads both metrics itself. Where another source leads one of
        # them, however narrowly, the two are near-equal rivals whose order on other queries is a coin toss
        # (long-noisy: Music2Vec 0.683 vs counting 0.679 on validation, 0.697 vs 0.645 held out): the
        # weighting likeliest to pass both is then the better bet than either alone.
        one_leader = (singles[reference]["hit_rate@10"] >= best_hr and singles[reference]["ndcg@10"] >= best_nd)
        ref_reaches = bool(one_leader and reach[ref_i] >= 1.0 - REACH_TOL)
        leaders_z = None
        if ref_reaches:
            reaching = np.flatnonzero(reach >= 1.0 - REACH_TOL)
            best_i = int(reaching[np.argmax(obj[reaching])])
        else:
            # One source leads on hits, another on order: the weighting likeliest to pass both elsewhere,
            # the largest smaller paired z against the two leaders (then HR + nDCG).
            leaders_z = _z_against_leaders(hits, gains, {m: [x[:K] for x in lists[m][: len(hits)]] for m in names},
                                           queries)
            best_i = int(np.lexsort((-obj, -np.round(leaders_z, 6)))[0])
        z_needed = None
        if ref_reaches:
            gain, z, z_needed = clear_gain(per_query, best_i, ref_i, reaching, self.seed)
            chosen_i = best_i if gain else ref_i
        else:
            z = _paired_z(per_query[:, best_i] - per_query[:, ref_i])
            chosen_i = best_i
        weights = {m: float(combos[chosen_i % len(combos)].get(m, 0.0)) for m in ranking.SOURCES}
        offset = float(offsets[chosen_i // len(combos)])
        fused = [[r for r, _ in ranking.score_total({m: lists[m][i] for m in names}, weights, offset)[:K]]
                 for i in range(len(queries))]
        self.record["fusion"] = {
            "weights": weights, "offset": offset, "fitted": True, "reference": reference,
            "grid_points": len(combos) * len(offsets), "validation": figures(fused, queries), "single_sources": singles,
            "best_grid_point": {"weights": combos[best_i % len(combos)],
                                "offset": float(offsets[best_i // len(combos)]),
                                "objective_gain": round(float(obj[best_i] - obj[ref_i]), 5),
                                "z": round(z, 2),
                                **({"z_needed": round(z_needed, 2)} if z_needed is not None else {}),
                                "reach": round(float(reach[best_i]), 4),
                                "reference_reach": round(float(reach[ref_i]), 4), "adopted": chosen_i == best_i,
                                **({"z_against_leaders": round(float(leaders_z[best_i]), 2)}
                                   if leaders_z is not None else {})},
            "seconds": round(time.perf_counter() - t0, 3), **notes,
        }
        self.fused_lists = {m: lists[m] for m in names}
        self.weights = weights
        self.offset = offset
        logger.info("fit: fusion weights %s (%s; single sources %s)", weights, self.record["fusion"]["validation"],
                    singles)
        return weights

    def fit_novelty(
        self, popularity: Mapping[int, int] | None = None, level: float = 0.5
    ) -> tuple[float, int, float | None]:
        """The novelty strength, kept head and popularity cap at which ``novelty=level`` halves the top 10's
        median popularity.

        Measured on the validation queries with the fitted fusion and ``popularity`` (default: playlists
        per song in the fitting split, so the validation playlists do not count), over
        :data:`NOVELTY_HEADS` x :data:`NOVELTY_STRENGTHS` without a cap and :data:`NOVELTY_HEADS` x
        :data:`NOVELTY_CAPS` x :data:`NOVELTY_CAP_STRENGTHS` with one: the setting furthest
        inside both limits (:func:`novelty_margin`, each margin in bootstrap standard deviations of its
        estimate), so that the halving and the hit-rate bound hold on other queries than these, not just
        barely here; when none is inside, the one closest to them.
        ``fitted`` says whether the chosen setting halves the median within the cost on validation.
        """
        t0 = time.perf_counter()
        queries = self.split.queries
        if not self.fused_lists or not queries:
            return ranking.NOVELTY_STRENGTH, 0, None
        if popularity is None:
            popularity = self.fit_popularity()
        weights = self.weights
        pools = [ranking.score_total({m: ls[i] for m, ls in self.fused_lists.items()}, weights, self.offset)
                 for i in range(len(queries))]
        songs = sorted({r for pool in pools for r, _ in pool})
        index = {s: i for i, s in enumerate(songs)}
        pop = np.array([popularity.get(s, 0) for s in songs], dtype=np.int64)
        pools = [[(index[r], v) for r, v in pool] for pool in pools]
        # The cap's quantiles are of the fitting split's songs, as the service's are of the catalog's.
        levels = ranking.cap_levels(np.fromiter(popularity.values(), dtype=np.int64, count=len(popularity)))

        def top(strength: float, nov: float, head: int = 0, quantile: float | None = None) -> list[list[int]]:
            cap = ranking.novelty_cap(levels, nov, quantile)
            return [[songs[r] for r, _ in ranking.novelty_rerank(pool, pop, nov, strength=strength, head=head,
                                                                  cap=cap)[:K]]
                    for pool in pools]

        base = top(ranking.NOVELTY_STRENGTH, 0.0)
        base_fig = figures(base, queries)
        base_pop = float(np.median([popularity.get(s, 0) for t in base for s in t])) if any(base) else 0.0
        spread = _NoveltySpread(base, queries, popularity, self.seed)
        table: dict[str, Any] = {}
        tried: list[NoveltySetting] = []
        stopped = False
        # Head by head, the likeliest first and within a head the caps from the gentlest, should the budget
        # stop the grid (it did on the three largest sweep catalogs, before the gentle settings were reached).
        grid = [(head, q, strength) for head in NOVELTY_HEADS for q in (*NOVELTY_CAPS, None)
                for strength in (NOVELTY_STRENGTHS if q is None else NOVELTY_CAP_STRENGTHS)]
        for head, q, strength in grid:
            if self.left() <= 0 and table:
                stopped = True
                break
            lists = top(strength, level, int(head), q)
            fig = figures(lists, queries)
            med = float(np.median([popularity.get(s, 0) for t in lists for s in t])) if any(lists) else 0.0
            ratio = med / base_pop if base_pop else 1.0
            cost = 1.0 - fig["hit_rate@10"] / base_fig["hit_rate@10"] if base_fig["hit_rate@10"] else 0.0
            ratio_sd, cost_sd = spread.of(lists)
            setting = NoveltySetting(ratio, cost, float(strength), int(head), q, ratio_sd, cost_sd)
            table[setting.name] = {"median_popularity_ratio": round(ratio, 3), "hit_rate_cost": round(cost, 4),
                                   "ratio_sd": round(ratio_sd, 4), "cost_sd": round(cost_sd, 4),
                                   "margin": round(setting.margin, 3)}
            tried.append(setting)
        chosen = choose_novelty(tried)
        if chosen is None:
            chosen = NoveltySetting(1.0, 0.0, ranking.NOVELTY_STRENGTH, 0, None)
            fitted = False
        else:
            fitted = chosen.margin >= 0
        self.record["novelty"] = {"strength": chosen.strength, "head": chosen.head,
                                  **({"cap_quantile": chosen.cap_quantile} if chosen.cap_quantile is not None else {}),
                                  "level": level, "fitted": bool(fitted), "stopped_by_budget": stopped,
                                  "median_popularity_at_0": base_pop, "tried": table,
                                  "seconds": round(time.perf_counter() - t0, 3)}
        logger.info("fit: novelty %s (%s)", chosen.name, table.get(chosen.name))
        return chosen.strength, chosen.head, chosen.cap_quantile

    def fit_cold(self, popularity: Mapping[int, int] | None = None) -> ranking.ColdFusion:
        """The cold-start fusion: weights over :data:`mugle_core.fusion.COLD_SOURCES` and a rank offset.

        The queries are the validation split's cold ones (:attr:`ValidationSplit.cold_queries`: songs of
        validation playlists that no fitting playlist holds, so neither Music2Vec nor the CEL trained on the
        fitting split learnt anything of them, as of a new song), those with audio. Each is answered from its
        seed's neighbours in the audio models (:attr:`audio_vectors`) and the fitting split's songs by
        popularity (``popularity``, default playlists per song in the fitting split), fused over
        :data:`COLD_WEIGHT_GRID` x :data:`mugle_core.fusion.FUSION_OFFSETS`. The constant audio fusion
        (:class:`mugle_core.fusion.ColdFusion`'s default) stays unless the grid's best point gains clearly
        over it (:func:`clear_gain`, as the warm fusion): with few cold queries only a large gain passes.
        Needs both audio models: without a CEL trained on the fitting split the served CEL would enter a
        fusion fitted without it, so the default is kept.
        """
        t0 = time.perf_counter()
        default = ranking.ColdFusion()
        missing = [m for m in ("tcae", "cel") if m not in self.audio_vectors]
        seeds = [q.seed for q in self.split.cold_queries]
        audio = {m: vector_lists(*self.audio_vectors[m], self.audio_vectors[m][1], seeds)
                 for m in ("tcae", "cel") if m not in missing}
        keep = [i for i in range(len(seeds)) if any(ls[i] for ls in audio.values())]
        queries = [self.split.cold_queries[i] for i in keep]
        if missing or len(queries) < 2:
            why = (f"no {' or '.join(missing)} vectors on the fitting split" if missing
                   else f"{len(queries)} cold-start validation queries with audio")
            self.record["cold"] = {**default.as_record(), "fitted": False, "note": why}
            return default
        if popularity is None:
            popularity = self.fit_popularity()
        by_pop = sorted((s for s, n in popularity.items() if n > 0), key=lambda s: (-popularity[s], s))
        head = by_pop[: DEPTH + 1]
        lists = {**{m: [ls[i] for i in keep] for m, ls in audio.items()},
                 ranking.POPULAR: [[s for s in head if s != q.seed][:DEPTH] for q in queries]}
        names = list(ranking.COLD_SOURCES)
        combos = [dict(zip(names, c, strict=True)) for c in _grid([COLD_WEIGHT_GRID[m] for m in names]) if any(c)]
        reference = {m: float(default.weights.get(m, 0.0)) for m in names}
        if reference not in combos:
            combos.append(reference)
        offsets = ranking.FUSION_OFFSETS
        hits, gains = _grid_objectives(lists, names, combos, queries,
                                       lambda: time.perf_counter() - t0 > COLD_MAX_S, offsets)
        n = len(hits)
        per_query = hits + gains
        ref_i = combos.index(reference) + len(combos) * offsets.index(default.offset)
        obj = per_query.mean(axis=0)
        best_i = int(np.argmax(obj))  # the first of equals: the grid's order, offset 0 first
        gain, z, z_needed = clear_gain(per_query, best_i, ref_i, np.arange(per_query.shape[1]), self.seed)
        chosen_i = best_i if gain else ref_i
        chosen = ranking.ColdFusion({m: float(combos[chosen_i % len(combos)][m]) for m in names},
                                    float(offsets[chosen_i // len(combos)]))

        def fig(i: int) -> dict[str, float]:
            return {"hit_rate@10": round(float(hits[:, i].mean()), 5), "ndcg@10": round(float(gains[:, i].mean()), 5)}

        stopped = {"note": f"stopped after {n} of {len(queries)} queries ({COLD_MAX_S:.0f}s)"} if n < len(
            queries) else {}
        self.record["cold"] = {
            **chosen.as_record(), "fitted": True, "queries": n, **stopped,
            "validation": fig(chosen_i), "reference_validation": fig(ref_i),
            "popular_alone": fig(combos.index({"tcae": 0.0, "cel": 0.0, ranking.POPULAR: 1.0})),
            "best_grid_point": {"weights": combos[best_i % len(combos)],
                                "offset": float(offsets[best_i // len(combos)]),
                                "z": round(z, 2), "z_needed": round(z_needed, 2), "adopted": chosen_i == best_i},
            "seconds": round(time.perf_counter() - t0, 3),
        }
        logger.info("fit: cold-start fusion %s at offset %s (%s)", chosen.weights, chosen.offset, fig(chosen_i))
        return chosen

    def served_cold(self) -> dict[str, Any] | None:
        """The manifest's ``ranking.cold`` record (:func:`mugle_core.fusion.cold_fusion` reads its weights and
        offset); None before :meth:`fit_cold`."""
        chosen = self.record.get("cold")
        if chosen is None:
            return None
        return {k: chosen[k] for k in ("weights", "offset", "fitted")}

    def served_novelty(self) -> dict[str, Any] | None:
        """The manifest's ``ranking.novelty`` record: what the service reads of the chosen novelty setting
        (:func:`mugle_core.fusion.novelty_strength`, ``novelty_head``, ``novelty_cap_quantile``); the trials
        stay in ``ranking.fit``. None before :meth:`fit_novelty`."""
        chosen = self.record.get("novelty")
        if chosen is None:
            return None
        return {k: chosen[k] for k in ("strength", "head", "cap_quantile", "fitted") if k in chosen}

    def summary(self) -> dict[str, Any]:
        """The manifest's ``ranking.fit`` record."""
        return {
            "options": asdict(self.options),
            "seed": self.seed,
            "validation_playlists": len(self.split.val_ids),
            # Recorded so that anyone can check them against the manifest's holdout_playlist_ids.
            "validation_playlist_ids": sorted(self.split.val_ids),
            "fitting_playlists": len(self.split.fit_ids),
            "queries": len(self.split.queries),
            "elapsed_s": round(self.elapsed(), 3),
            "within_budget": self.elapsed() <= self.options.budget_s,
            **self.record,
        }


def novelty_margin(
    ratio: float, cost: float, ratio_sd: float = NOVELTY_TARGET_RATIO, cost_sd: float = NOVELTY_MAX_COST
) -> float:
    """How far a novelty setting lies inside both limits: the smaller of the two margins, each in units of
    its own spread.

    ``(target - ratio) / ratio_sd`` for the median popularity ratio (:data:`NOVELTY_TARGET_RATIO`) and
    ``(max - cost) / cost_sd`` for the hit-rate cost (:data:`NOVELTY_MAX_COST`); negative when a limit is
    missed. The fit passes the bootstrap standard deviations of the two estimates (floored at
    :data:`NOVELTY_MIN_SD`); by default the limits themselves, i.e. relative margins.
    Validation is another sample than the queries the version will be judged on (and its lists come from
    models trained on fewer playlists), so a setting that only just halves there, or only just stays
    within the cost, misses about half the time elsewhere: the fit takes the one with the most room.
    """
    return min(novelty_rooms(ratio, cost, ratio_sd, cost_sd))


def novelty_rooms(
    ratio: float, cost: float, ratio_sd: float = NOVELTY_TARGET_RATIO, cost_sd: float = NOVELTY_MAX_COST
) -> tuple[float, float]:
    """The room inside each novelty limit, in units of its spread: (ratio's, cost's); see :func:`novelty_margin`."""
    return (NOVELTY_TARGET_RATIO - ratio) / ratio_sd, (NOVELTY_MAX_COST - cost) / cost_sd


class NoveltySetting(NamedTuple):
    """One novelty setting tried on validation and what it measured there."""

    ratio: float  # the top 10's median popularity at the fitted level over that at novelty 0
    cost: float  # the relative HitRate@10 loss
    strength: float
    head: int
    cap_quantile: float | None = None  # None: no cap
    ratio_sd: float = NOVELTY_TARGET_RATIO  # spreads of the two estimates (default: relative margins)
    cost_sd: float = NOVELTY_MAX_COST

    @property
    def margin(self) -> float:
        return novelty_margin(self.ratio, self.cost, self.ratio_sd, self.cost_sd)

    @property
    def name(self) -> str:
        cap = "no cap" if self.cap_quantile is None else f"cap q{self.cap_quantile:g}"
        return f"head {self.head}, {cap}, strength {self.strength:g}"

    @staticmethod
    def parse_name(name: str) -> tuple[int, float | None, float]:
        """(head, cap quantile or None, strength) of a :attr:`name`, as ``ranking.fit.novelty.tried`` keys it."""
        m = _SETTING_NAME.match(name)
        if m is None:
            raise ValueError(f"ranking.fit.novelty.tried: cannot read the setting name {name!r}")
        return int(m.group(1)), (float(m.group(2)) if m.group(2) else None), float(m.group(3))


_SETTING_NAME = re.compile(r"head (\d+), (?:no cap|cap q([\d.]+)), strength ([\d.]+)$")


class _NoveltySpread:
    """Bootstrap standard deviations of a novelty setting's two estimates over the validation queries.

    The same query resamples serve every setting and the unchanged lists (the ratio and the cost are
    both relative to those), so each spread is that of a paired estimate.
    """

    def __init__(self, base: Sequence[Sequence[int]], queries: Sequence[ValQuery], popularity: Mapping[int, int],
                 seed: int, draws: int = NOVELTY_BOOTSTRAP) -> None:
        rng = np.random.default_rng([seed, 0x4E6F76])
        n = len(queries)
        # Query weights per draw: how often each query is drawn.
        self.weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(draws)]).astype(
            np.float64) if n else np.zeros((draws, 0))
        self.queries, self.popularity = queries, popularity
        self.base_hits, self.base_median = self._hits(base), self._medians(base)

    def _hits(self, lists: Sequence[Sequence[int]]) -> np.ndarray:
        hits = np.array([any(s in q.relevant for s in t[:K]) for t, q in zip(lists, self.queries, strict=True)],
                        dtype=np.float64)
        return self.weights @ hits  # (draws,)

    def _medians(self, lists: Sequence[Sequence[int]]) -> np.ndarray:
        """Each draw's median popularity of all listed songs (a weighted median over the queries' songs)."""
        pops = np.fromiter((self.popularity.get(s, 0) for t in lists for s in t[:K]), dtype=np.int64)
        owner = np.repeat(np.arange(len(lists)), [len(t[:K]) for t in lists])
        if not len(pops):
            return np.zeros(len(self.weights))
        # Per draw, the weight of each distinct popularity value (queries x values, summed by a sparse product).
        values, col = np.unique(pops, return_inverse=True)
        per_query = sparse.csr_matrix((np.ones(len(pops)), (owner, col)), shape=(len(lists), len(values)))
        cum = np.cumsum(np.asarray((per_query.T @ self.weights.T).T), axis=1)
        half = cum[:, -1:] / 2.0
        return values[np.minimum((cum < half).sum(axis=1), len(values) - 1)].astype(np.float64)

    def of(self, lists: Sequence[Sequence[int]]) -> tuple[float, float]:
        """(ratio sd, cost sd) of the lists against the unchanged ones, floored at :data:`NOVELTY_MIN_SD`."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.base_median > 0, self._medians(lists) / self.base_median, 1.0)
            cost = np.where(self.base_hits > 0, 1.0 - self._hits(lists) / self.base_hits, 0.0)
        return (max(float(ratio.std(ddof=1)), NOVELTY_MIN_SD[0]), max(float(cost.std(ddof=1)), NOVELTY_MIN_SD[1]))


def choose_novelty(tried: Sequence[NoveltySetting]) -> NoveltySetting | None:
    """The setting with the largest :func:`novelty_margin` (:attr:`NoveltySetting.margin`).

    Ties (to 1e-3) go to the larger sum of the two margins, then no cap before a cap and the looser cap
    first, then the weaker strength, then the smaller head. None when nothing was tried.
    """
    if not tried:
        return None

    def key(t: NoveltySetting) -> tuple[float, float, float, float, int]:
        room = sum(novelty_rooms(t.ratio, t.cost, t.ratio_sd, t.cost_sd))
        looser = -(t.cap_quantile if t.cap_quantile is not None else 2.0)
        return (-round(t.margin, 3), -round(room, 3), looser, t.strength, t.head)

    return min(tried, key=key)


def clear_gain(
    per_query: np.ndarray, best: int, ref: int, chosen_from: np.ndarray, seed: int
) -> tuple[bool, float, float]:
    """Whether column ``best`` gains clearly over column ``ref``: (gain, its paired z, the z it needed).

    ``per_query`` holds each query's objective per column; ``best`` was picked as the best of the columns
    ``chosen_from``, so its z must pass both :data:`MIN_GAIN_Z` and what the best of those columns reaches
    by luck (:func:`selection_z`).
    """
    z = _paired_z(per_query[:, best] - per_query[:, ref])
    if best == ref:
        return False, z, MIN_GAIN_Z
    needed = max(MIN_GAIN_Z, selection_z(per_query, ref, chosen_from, seed))
    return z >= needed, z, needed


def _paired_z(diff: np.ndarray) -> float:
    """Mean over standard error of per-query differences; 0 when they never differ."""
    if len(diff) < 2 or diff.std() == 0:
        return 0.0
    return float(diff.mean() / (diff.std(ddof=1) / math.sqrt(len(diff))))


def selection_z(
    per_query: np.ndarray, ref: int, columns: np.ndarray, seed: int, draws: int = NULL_DRAWS, level: float = NULL_LEVEL
) -> float:
    """The paired z over column ``ref`` that the best of ``columns`` reaches by luck alone, at quantile ``level``.

    Parameters
    ----------
    per_query : (queries, columns) each query's objective per column.
    ref : the reference column; ``columns``: the candidates the best was picked from.
    seed : seeds the draws.
    draws, level : sign-flip draws and the quantile of their maxima.

    Notes
    -----
    A max-T null: with no column truly better, each query's differences are as likely negated, so every
    draw flips the sign of whole query rows (keeping how the columns move together) and takes the largest
    column z. The best column's own z must exceed the ``level`` quantile of those maxima for its gain to be
    more than the luck of having been picked from many. Columns equal to the reference on every query
    count as z 0. The columns are taken in slices, so a large grid never needs a second copy of itself.
    """
    n = per_query.shape[0]
    columns = np.asarray(columns, dtype=np.int64)
    if n < 2 or len(columns) == 0:
        return math.inf
    rng = np.random.default_rng([seed, 0x4D6178])
    signs = rng.choice(np.array([-1.0, 1.0]), size=(draws, n))
    best = np.full(draws, -np.inf)
    for start in range(0, len(columns), 512):
        diff = per_query[:, columns[start:start + 512]] - per_query[:, [ref]]
        means = signs @ diff / n  # (draws, columns of the slice)
        var = np.maximum((diff * diff).sum(axis=0)[None, :] - n * means * means, 0.0) / (n - 1)
        se = np.sqrt(var / n)
        z = np.where(se > 0, means / np.where(se > 0, se, 1.0), 0.0)
        best = np.maximum(best, z.max(axis=1))
    return float(np.quantile(best, level))


def _grid_objectives(
    lists: Mapping[str, Sequence[Sequence[int]]],
    names: Sequence[str],
    combos: Sequence[Mapping[str, float]],
    queries: Sequence[ValQuery],
    out_of_time: Callable[[], bool] | None = None,
    offsets: Sequence[float] = (0.0,),
) -> tuple[np.ndarray, np.ndarray]:
    """HitRate@10 and nDCG@10 of every (offset, weighting), per query: two arrays (queries, offsets x weightings).

    Column ``o * len(combos) + c`` holds offset ``offsets[o]`` with weighting ``combos[c]``. With
    ``out_of_time``, checked every 64 queries, the arrays stop at the queries scored in time.

    Each query's candidates are scored ``sum_source w / (offset + rank)`` for all weightings at once (a
    matrix product per offset); ties go to the better best rank, then the lower id, as
    :func:`mugle_core.fusion.score_total`. A query that only zero-weighted sources answer counts as a miss
    (the service would rank those equally; the fit's reference source always weighs).
    """
    w = np.array([[float(c.get(m, 0.0)) for c in combos] for m in names])  # (sources, combos)
    # A source weighted 0 gives no best rank either, so the tie order depends on which sources weigh:
    # the weightings are scored in groups that share it.
    groups: dict[tuple[bool, ...], list[int]] = {}
    for c in range(len(combos)):
        groups.setdefault(tuple(bool(x) for x in w[:, c]), []).append(c)
    disc = 1.0 / np.log2(np.arange(K) + 2.0)
    n = len(combos)
    hit = np.zeros((len(queries), n * len(offsets)))
    nd = np.zeros((len(queries), n * len(offsets)))
    for qi, q in enumerate(queries):
        if out_of_time is not None and qi and qi % 64 == 0 and out_of_time():
            return hit[:qi], nd[:qi]
        cand: dict[int, int] = {}
        for m in names:
            for s in lists[m][qi]:
                cand.setdefault(s, len(cand))
        if not cand:
            continue
        songs = np.fromiter(cand, dtype=np.int64, count=len(cand))
        rank = np.zeros((len(songs), len(names)))  # 0: not listed by that source
        for j, m in enumerate(names):
            for r, s in enumerate(lists[m][qi], start=1):
                rank[cand[s], j] = r
        listed = rank > 0
        rel_all = np.array([s in q.relevant for s in songs], dtype=np.float64)
        ideal = disc[: min(K, len(q.relevant))].sum()
        for weighs, cols in groups.items():
            best = np.where(listed[:, list(weighs)], rank[:, list(weighs)], np.inf).min(axis=1, initial=np.inf)
            pre = np.lexsort((songs, best))  # tie order: best rank among the weighted sources, then id
            rel = rel_all[pre]
            wc = w[:, cols]
            for o, off in enumerate(offsets):
                inv = np.where(listed[pre], 1.0 / (off + np.maximum(rank[pre], 1.0)), 0.0)
                scores = inv @ wc  # (candidates, weightings of the group)
                order = np.argsort(-scores, axis=0, kind="stable")[:K]
                gains = rel[order] * (scores[order, np.arange(len(cols))] > 0)
                at = [o * n + c for c in cols]
                hit[qi, at] = gains.max(axis=0) if len(gains) else 0.0
                nd[qi, at] = (gains * disc[: len(gains), None]).sum(axis=0) / ideal
    return hit, nd


def _z_against_leaders(
    hits: np.ndarray, gains: np.ndarray, tops: Mapping[str, Sequence[Sequence[int]]], queries: Sequence[ValQuery]
) -> np.ndarray:
    """Per grid column, the smaller of two paired z: its HitRate@10 against the single source with the best
    HitRate@10, its nDCG@10 against the one with the best nDCG@10 (over the same queries).

    A z says how surely a weighting stays ahead on other queries: a lead of 0.003 nDCG over hundreds of
    queries can be sure (the lists mostly agree) while one of 0.01 hit rate is not. A column identical to
    a leader on every query scores 0 against it.
    """
    disc = 1.0 / np.log2(np.arange(K) + 2.0)
    per_hit, per_nd = {}, {}
    for m, top in tops.items():
        h = np.zeros(len(queries))
        d = np.zeros(len(queries))
        for i, (t, q) in enumerate(zip(top, queries, strict=True)):
            g = np.array([s in q.relevant for s in t[:K]], dtype=np.float64)
            h[i] = g.max() if len(g) else 0.0
            d[i] = (g * disc[: len(g)]).sum() / disc[: min(K, len(q.relevant))].sum()
        per_hit[m], per_nd[m] = h, d
    lead_h = max(per_hit, key=lambda m: per_hit[m].mean())
    lead_n = max(per_nd, key=lambda m: per_nd[m].mean())

    def z(diff: np.ndarray) -> np.ndarray:
        se = diff.std(axis=0, ddof=1) / math.sqrt(max(len(diff), 1))
        mean = diff.mean(axis=0)
        return np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.where(mean >= 0, 0.0, -np.inf))

    return np.minimum(z(hits - per_hit[lead_h][:, None]), z(gains - per_nd[lead_n][:, None]))


def _grid(axes: Sequence[Sequence[float]]) -> Iterable[tuple[float, ...]]:
    if not axes:
        yield ()
        return
    for v in axes[0]:
        for rest in _grid(axes[1:]):
            yield (v, *rest)


def _trial_params(o: Music2VecOptions, score: str) -> dict[str, Any]:
    return {"ns_exponent": o.ns_exponent, "window": o.window, "epochs": o.epochs, "sample": o.sample, "score": score}


def _same(trial: Mapping[str, Any], o: Music2VecOptions, score: str) -> bool:
    return all(trial.get(k) == v for k, v in _trial_params(o, score).items())
