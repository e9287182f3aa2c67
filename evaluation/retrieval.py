"""Retrieval metrics and fixed-feature baselines for the real-audio sets (numpy only).

Every query has a ranked list of catalog song ids and a set of relevant ids. Per query:

* ``p@1``: the first result is relevant;
* ``hit@10``: a relevant song is among the first 10 (with one relevant song, as in the recordings
  task, this is recall@10; the issue calls it P@10);
* ``mrr``: 1 / rank of the first relevant song within the first :data:`DEPTH` (0 beyond): the served
  API answers at most 100 songs, so every method, baselines included, is cut at the same depth;
* ``group@10`` (when the query has a group, e.g. its game): the share of the first 10 results that
  belong to the group.

Intervals: :func:`evaluation.metrics.bootstrap_ci` over the queries.

The baselines turn each mel into a vector and rank the whole catalog by cosine similarity
(L2-normalised vectors, inner product):

* ``random``: a seeded random order;
* ``mean+std``: the mean and standard deviation of each band over time (96 values), each value
  standardised over the catalog so that loud bands do not outweigh the rest;
* ``fft2``: the magnitude of the 2-D FFT of the log-mel (dB), invariant to circular shifts in time and
  in band, the fixed transform the issue's TCAE must beat;
* ``fft2 band-std``: the same after standardising each band with the catalog's mean and deviation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from evaluation.metrics import bootstrap_ci

DEPTH = 100
N_MELS = 48
FRAMES = 1876
FLOOR_DB = -100.0
BASELINES = ("random", "mean+std", "fft2", "fft2 band-std")


def query_values(ranked: Sequence[int], relevant: Collection[int], group: Collection[int] | None = None,
                 depth: int = DEPTH) -> dict[str, float]:
    """The per-query metrics of one ranked list (see the module docstring)."""
    if not relevant:
        raise ValueError("a query needs at least one relevant song")
    top = [int(s) for s in ranked[:depth]]
    rank = next((i + 1 for i, s in enumerate(top) if s in relevant), None)
    out = {
        "p@1": float(bool(top) and top[0] in relevant),
        "hit@10": float(rank is not None and rank <= 10),
        "mrr": 1.0 / rank if rank is not None else 0.0,
    }
    if group is not None:
        out["group@10"] = sum(1 for s in top[:10] if s in group) / 10.0
    return out


def fit_frames(mel: np.ndarray, frames: int = FRAMES, floor: float = FLOOR_DB) -> np.ndarray:
    """``mel`` cut or padded (with the floor value, i.e. silence) to ``frames`` columns, float32."""
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2:
        raise ValueError(f"a mel must be 2-D (bands x frames), got shape {mel.shape}")
    if mel.shape[1] >= frames:
        return mel[:, :frames]
    return np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), constant_values=floor)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def band_stats(mels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over every frame of the catalog's mels."""
    total = np.zeros(mels[0].shape[0])
    square = np.zeros(mels[0].shape[0])
    count = 0
    for mel in mels:
        m = np.asarray(mel, dtype=np.float64)
        total += m.sum(axis=1)
        square += (m**2).sum(axis=1)
        count += m.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(square / count - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def mean_std_features(mels: Sequence[np.ndarray]) -> np.ndarray:
    """Mean and standard deviation of each band over time: ``(n, 2 * bands)``."""
    return np.stack([np.concatenate([m.mean(axis=1), m.std(axis=1)]) for m in mels]).astype(np.float32)


def fft2_features(mels: Sequence[np.ndarray], frames: int = FRAMES,
                  stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Magnitude of the 2-D FFT of each log-mel (band-standardised first when ``stats`` is given)."""
    out = []
    for mel in mels:
        m = fit_frames(mel, frames)
        if stats is not None:
            m = (m - stats[0][:, None]) / stats[1][:, None]
        out.append(np.abs(np.fft.rfft2(m)).astype(np.float32).ravel())
    return np.stack(out)


def baseline_vectors(name: str, catalog: Sequence[np.ndarray], queries: Sequence[np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the catalog's and the queries' mels for one baseline (statistics from the catalog)."""
    if name == "mean+std":
        cat, qry = mean_std_features(catalog), mean_std_features(queries)
        mu, sd = cat.mean(axis=0), cat.std(axis=0) + 1e-6
        return l2_normalise((cat - mu) / sd), l2_normalise((qry - mu) / sd)
    if name == "fft2":
        return l2_normalise(fft2_features(catalog)), l2_normalise(fft2_features(queries))
    if name == "fft2 band-std":
        stats = band_stats(catalog)
        return l2_normalise(fft2_features(catalog, stats=stats)), l2_normalise(fft2_features(queries, stats=stats))
    raise ValueError(f"baseline must be one of {', '.join(b for b in BASELINES if b != 'random')}, got {name!r}")


def cosine_rankings(query_vecs: np.ndarray, catalog_vecs: np.ndarray, catalog_ids: Sequence[int],
                    exclude: Sequence[int | None] | None = None, depth: int = DEPTH) -> list[list[int]]:
    """Top ``depth`` catalog ids per query by inner product; ``exclude[i]`` (the query's own id) is left out."""
    ids = np.asarray(catalog_ids)
    sims = np.asarray(query_vecs, dtype=np.float32) @ np.asarray(catalog_vecs, dtype=np.float32).T
    out = []
    for i, row in enumerate(sims):
        # Stable order: ties go to the lower catalog position, so a run is reproducible.
        order = np.argsort(-row, kind="stable")
        ranked = [int(s) for s in ids[order[: depth + 1]]]
        if exclude is not None and exclude[i] is not None:
            ranked = [s for s in ranked if s != exclude[i]]
        out.append(ranked[:depth])
    return out


def random_rankings(n_queries: int, catalog_ids: Sequence[int], exclude: Sequence[int | None] | None = None,
                    seed: int = 0, depth: int = DEPTH) -> list[list[int]]:
    """A seeded random order of the catalog per query (the own id left out)."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(catalog_ids)
    out = []
    for i in range(n_queries):
        ranked = [int(s) for s in ids[rng.permutation(ids.size)[: depth + 1]]]
        if exclude is not None and exclude[i] is not None:
            ranked = [s for s in ranked if s != exclude[i]]
        out.append(ranked[:depth])
    return out


def summarise(values: Sequence[Mapping[str, float]], seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean and 95 % percentile-bootstrap interval (1000 resamples) of each metric over the queries."""
    out: dict[str, dict[str, float]] = {}
    for metric in values[0]:
        mean, low, high = bootstrap_ci([v[metric] for v in values], seed=seed)
        out[metric] = {"mean": round(mean, 4), "low": round(low, 4), "high": round(high, 4)}
    return out
