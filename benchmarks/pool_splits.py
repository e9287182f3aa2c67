"""The structure sweep's verdicts per catalog over several training splits at once, not split by split.

One split of a catalog holds 155-232 warm held-out queries, so one query more or less moves HitRate@10 by
0.4-0.6 points, and a split's verdict "score_total >= the best baseline" flips on ties inside the paired
interval. The question the sweep asks is about the catalog's structure, so this pools the evaluations of
several splits of the same catalog (``benchmarks/eval_structures.py --seed N`` for N = 0, 1, 2: another
held-out set, validation split and fitted ranking each time) from their ``per_query.npz`` files:

- per metric (HitRate@10, nDCG@10) each method's mean is the mean of its per-split means (each split
  weighs the same), and ``score_total`` minus the best practitioner baseline (by that pooled mean) and minus
  every single model, with a 95 % interval from a bootstrap stratified by split (queries resampled within
  their own split, the split means averaged);
- novelty 0.5: the median popularity of all splits' top 10s at 0.5 over that at 0, and the relative
  HitRate@10 cost (hits summed over all splits' queries), with intervals from the same bootstrap.

The held-out sets of different splits are drawn independently from the same playlists, so about a tenth of
one split's queries come from playlists another split also held out (its seed song is drawn afresh): the
intervals treat the splits as independent samples and are a little narrow for it.

    python benchmarks/pool_splits.py --work /work/cache/sweep/seed0 --work /work/cache/sweep/seed1 \\
        --work /work/cache/sweep/seed2 --out docs/eval/structures-pooled.md

Reads only; each catalog's ``artifacts/current`` version must have been evaluated by this code's
``mugle evaluate`` (which writes ``per_query.npz``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.eval_structures import CATALOGS, CHECKS  # noqa: E402
from benchmarks.sweep_files import sweep_parser, write_results  # noqa: E402
from evaluation.evaluate import PRACTITIONER_BASELINES, resolve_version  # noqa: E402
from mugle_core.artifacts import MODEL_NAMES, PER_QUERY  # noqa: E402
from training.fitting import NOVELTY_MAX_COST, NOVELTY_TARGET_RATIO  # noqa: E402

METRICS = ("hit_rate@10", "ndcg@10")
DRAWS = 2000
LEVEL = 0.95


def load_splits(works: Sequence[Path], name: str) -> list[dict[str, np.ndarray]]:
    """Each split's per-query arrays of catalog ``name`` (the works that lack it are skipped)."""
    out = []
    for work in works:
        arts = work / name / "artifacts"
        if not (arts / "current").exists():
            continue
        path = resolve_version(arts, None) / PER_QUERY
        if not path.is_file():
            raise SystemExit(f"{path}: missing; run `mugle evaluate` on this version with the current code")
        with np.load(path, allow_pickle=False) as z:
            out.append({k: z[k] for k in z.files})
    return out


def _draws(sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Per split, DRAWS x n query indices drawn with replacement (the stratified bootstrap)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=(DRAWS, n)) for n in sizes]


def _interval(point: float, draws: np.ndarray) -> dict[str, float]:
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"mean": round(point, 5), "low": round(float(low), 5), "high": round(float(high), 5)}


def pooled_mean(splits: Sequence[dict[str, np.ndarray]], key: str) -> float:
    return float(np.mean([s[key].mean() for s in splits]))


def paired(splits: Sequence[dict[str, np.ndarray]], a: str, b: str, idx: Sequence[np.ndarray]) -> dict[str, float]:
    """Pooled mean of ``a - b`` (per-query arrays) and its stratified bootstrap interval."""
    diffs = [s[a] - s[b] for s in splits]
    point = float(np.mean([d.mean() for d in diffs]))
    draws = np.mean([d[i].mean(axis=1) for d, i in zip(diffs, idx, strict=True)], axis=0)
    return _interval(point, draws)


def _median_of(pops: np.ndarray, rows: np.ndarray | None = None) -> float:
    chosen = pops if rows is None else pops[rows]
    return float(np.median(chosen[chosen >= 0])) if (chosen >= 0).any() else 0.0


def novelty(splits: Sequence[dict[str, np.ndarray]], idx: Sequence[np.ndarray], level: str = "0.5") -> dict[str, Any]:
    """The pooled median-popularity ratio and hit-rate cost of novelty ``level`` against 0, with intervals."""
    pop0 = [s["novelty/0/popularity"] for s in splits]
    popn = [s[f"novelty/{level}/popularity"] for s in splits]
    hit0 = [s["novelty/0/hit"] for s in splits]
    hitn = [s[f"novelty/{level}/hit"] for s in splits]

    def figures(rows: Sequence[np.ndarray] | None) -> tuple[float, float]:
        pick = (lambda a, i: a) if rows is None else (lambda a, i: a[rows[i]])
        base = _median_of(np.concatenate([pick(p, i) for i, p in enumerate(pop0)]))
        moved = _median_of(np.concatenate([pick(p, i) for i, p in enumerate(popn)]))
        h0 = sum(float(pick(h, i).sum()) for i, h in enumerate(hit0))
        hn = sum(float(pick(h, i).sum()) for i, h in enumerate(hitn))
        return (moved / base if base else 1.0), (1.0 - hn / h0 if h0 else 0.0)

    ratio, cost = figures(None)
    # Fewer draws than the means: each one takes a median over every listed song of every split.
    boot = np.array([figures([i[d] for i in idx]) for d in range(0, DRAWS, 4)])
    return {"ratio": _interval(ratio, boot[:, 0]), "cost": _interval(cost, boot[:, 1]),
            "met": bool(ratio <= NOVELTY_TARGET_RATIO and cost <= NOVELTY_MAX_COST)}


def pool_catalog(splits: Sequence[dict[str, np.ndarray]], seed: int = 0) -> dict[str, Any]:
    """Every pooled figure of one catalog (see the module docstring)."""
    idx = _draws([len(s["seed"]) for s in splits], seed)
    out: dict[str, Any] = {"splits": len(splits), "queries": [int(len(s["seed"])) for s in splits]}
    for metric in METRICS:
        present = [b for b in PRACTITIONER_BASELINES if all(f"{metric}/{b}" in s for s in splits)]
        best = max(present, key=lambda b: (pooled_mean(splits, f"{metric}/{b}"), b))
        own = f"{metric}/score_total"
        singles = [m for m in MODEL_NAMES if all(f"{metric}/{m}" in s for s in splits)]
        block: dict[str, Any] = {
            "score_total": round(pooled_mean(splits, own), 5),
            "best_baseline": best,
            "best_baseline_mean": round(pooled_mean(splits, f"{metric}/{best}"), 5),
            "vs_best_baseline": paired(splits, own, f"{metric}/{best}", idx),
            **{f"vs_{m}": paired(splits, own, f"{metric}/{m}", idx) for m in singles},
            # Split by split, the same question (as the per-split tables ask it).
            "splits_reaching": sum(
                bool(s[own].mean() >= max(s[f"{metric}/{b}"].mean() for b in [*present, *singles]) - 1e-12)
                for s in splits),
        }
        block["reaches_baseline"] = block["vs_best_baseline"]["mean"] >= 0
        block["reaches_singles"] = all(block[f"vs_{m}"]["mean"] >= 0 for m in singles)
        out[metric] = block
    out["novelty"] = novelty(splits, idx)
    return out


def _cell(ci: dict[str, float], pct: bool = False) -> str:
    f = (lambda v: f"{100 * v:.1f} %") if pct else (lambda v: f"{v:+.4f}")
    return f"{f(ci['mean'])} [{f(ci['low'])}, {f(ci['high'])}]"


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| catalog | splits (queries) | score_total − best baseline, HR@10 | nDCG@10 | "
             "− weakest-margin single model, HR@10 | nDCG@10 | reaches all (HR / nDCG); splits reaching | "
             "novelty 0.5: median pop ratio | HR cost | all points |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        hr, nd, nov = r["hit_rate@10"], r["ndcg@10"], r["novelty"]

        def worst(block: dict[str, Any]) -> str:
            rivals = {k[3:]: v for k, v in block.items() if k.startswith("vs_") and k[3:] in MODEL_NAMES}
            m = min(rivals, key=lambda k: rivals[k]["mean"])
            return f"{m} {_cell(rivals[m])}"

        reach = [b["reaches_baseline"] and b["reaches_singles"] for b in (hr, nd)]
        ratio = nov["ratio"]
        every = all(reach) and nov["met"]
        lines.append(
            f"| {name} | {r['splits']} ({'/'.join(map(str, r['queries']))}) | "
            f"{hr['best_baseline']} {_cell(hr['vs_best_baseline'])} | {nd['best_baseline']} "
            f"{_cell(nd['vs_best_baseline'])} | {worst(hr)} | {worst(nd)} | "
            f"{'/'.join('yes' if x else 'NO' for x in reach)}; {hr['splits_reaching']}/{nd['splits_reaching']} "
            f"of {r['splits']} | {ratio['mean']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}] | "
            f"{_cell(nov['cost'], pct=True)} | {'yes' if every else 'NO'} |")
    return lines


HEADER = """# Ranking on catalogs of different structure, pooled over training splits

Generated by `python benchmarks/pool_splits.py` from the structure sweeps of the training seeds listed
below (`benchmarks/eval_structures.py --seed N`; per split: docs/eval/structures.md, structures-seed1.md,
structures-seed2.md). Each split is another held-out set, validation split and fitted ranking of the same
catalog; here the catalog's verdict uses all of them at once: pooled means (each split weighs the same) and
95 % intervals of a bootstrap stratified by split. "Reaches" is the pooled mean difference >= 0 against the
best practitioner baseline (counting, item-kNN, EASE) and against every single model (music2vec, tcae,
cel); "splits reaching" counts the splits where it holds on that split alone (HR / nDCG). Novelty 0.5 is
met when the pooled median popularity of the top 10 is at most half that at 0 and the pooled HitRate@10
cost is at most 10 %. About a tenth of a split's held-out playlists are also held out by another split, so
the intervals are a little narrow.
"""


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seeds the bootstrap (default 0)")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    for name in CATALOGS:
        splits = load_splits(args.work, name)
        if splits:
            results[name] = pool_catalog(splits, seed=args.seed)
    main_rows = {k: v for k, v in results.items() if k not in CHECKS}
    checks = {k: v for k, v in results.items() if k in CHECKS}
    lines = [*table(main_rows), "", "Checks (catalogs kept out of the work on the fit, see structures.md):", "",
             *table(checks)]
    print("\n".join(lines))
    if args.out:
        works = ", ".join(f"`{w}`" for w in args.work)
        write_results(args.out, HEADER + f"\nSweeps pooled: {works}.\n\n" + "\n".join(lines) + "\n", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
