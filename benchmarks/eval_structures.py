"""Train and evaluate Mugle on demo catalogs of different structure, and write the results table.

Each catalog is generated with ``mugle demo-data`` (structure knobs: playlist length, theme purity,
popularity skew, curator order), trained with ``mugle train --holdout 0.1`` (which fits the ranking on a
validation split of that catalog's own training playlists) and evaluated with ``mugle evaluate``. The
table (every method and baseline, HitRate@10 and nDCG@10 with 95 % intervals, the paired interval of
``score_total`` against the best baseline, the novelty check and what was fitted) goes to
``docs/eval/structures.md`` and the raw figures to ``docs/eval/structures.json``.

    python benchmarks/eval_structures.py --work /work/cache/ranking/sweep          # all catalogs
    python benchmarks/eval_structures.py --work DIR --only default --only long-noisy

Datasets and artifacts stay under ``--work`` (outside the repository); a catalog already trained there
is evaluated again without retraining unless ``--retrain``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from training.fitting import NoveltySetting

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# name -> (description, demo-data options). "default" is the default demo; the others move every knob.
CATALOGS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("the default demo: 3,000 songs, 2,000 playlists", {}),
    "long-noisy": ("long playlists (40), theme purity 0.6, flat popularity (0.7), order shuffled",
                   {"playlist-length": 40, "theme-purity": 0.6, "pop-exponent": 0.7, "curator-order": 0.0}),
    "short-pure-skewed": ("short playlists (8), theme purity 0.97, skewed popularity (1.6), curator order",
                          {"playlist-length": 8, "theme-purity": 0.97, "pop-exponent": 1.6, "curator-order": 1.0}),
    "big-mixed": ("6,000 songs, 3,000 playlists of 24, purity 0.75, popularity 1.3, half in curator order",
                  {"songs": 6000, "playlists": 3000, "playlist-length": 24, "theme-purity": 0.75,
                   "pop-exponent": 1.3, "curator-order": 0.5, "seed": 7}),
    "check-mid-long": ("4,000 songs, 2,500 playlists of 30, purity 0.7, popularity 0.9, a quarter in curator order",
                       {"songs": 4000, "playlists": 2500, "playlist-length": 30, "theme-purity": 0.7,
                        "pop-exponent": 0.9, "curator-order": 0.25, "seed": 11}),
    "check-flat-mid": ("3,500 songs, 2,200 playlists of 15, purity 0.8, flat popularity (0.6), half in curator order",
                       {"songs": 3500, "playlists": 2200, "playlist-length": 15, "theme-purity": 0.8,
                        "pop-exponent": 0.6, "curator-order": 0.5, "seed": 23}),
    "check-long-skewed": ("5,000 songs, 2,500 playlists of 35, purity 0.65, popularity 1.2, three quarters in "
                          "curator order",
                          {"songs": 5000, "playlists": 2500, "playlist-length": 35, "theme-purity": 0.65,
                           "pop-exponent": 1.2, "curator-order": 0.75, "seed": 31}),
    "check-short-flat": ("3,000 songs, 2,500 playlists of 10, purity 0.9, flat popularity (0.5), order shuffled",
                         {"songs": 3000, "playlists": 2500, "playlist-length": 10, "theme-purity": 0.9,
                          "pop-exponent": 0.5, "curator-order": 0.0, "seed": 41}),
}
# Catalogs kept out of the work on the fit: added once the fit's rules were final, and evaluated only
# after, as a check that the rules hold on a structure they were not developed against.
# check-flat-mid came with the novelty cap (fitted against long-noisy's validation split): another flat
# popularity, defined before it was run.
# check-long-skewed and check-short-flat came with the selection-aware fusion rule and the novelty room
# counted in standard deviations (both fitted against check-flat-mid and check-mid-long, which stopped
# being checks then), defined before either was first run.
CHECKS: frozenset[str] = frozenset({"check-mid-long", "check-flat-mid", "check-long-skewed", "check-short-flat"})
SHOWN = ("score_total", "each_top3", "music2vec", "tcae", "cel", "cooc_list", "cooccurrence", "item_knn", "ease",
         "most_popular", "random", "original_score_total")


def _run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}) after {time.perf_counter() - started:.0f}s: "
                         f"{' '.join(cmd)}; see {log}")


def run_catalog(name: str, work: Path, retrain: bool, seed: int = 0) -> dict[str, Any]:
    """Generate, train and evaluate one catalog; returns its metrics.json plus what training fitted.

    ``seed`` is training's (it draws the held-out playlists and the validation split); the catalog is the same.
    """
    _, opts = CATALOGS[name]
    data, arts, log = work / name / "data", work / name / "artifacts", work / name / "log.txt"
    (work / name).mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "mugle_cli"]
    timings: dict[str, float] = {}
    if not (data / "song_meta.json").is_file():
        t0 = time.perf_counter()
        extra = [x for k, v in opts.items() for x in (f"--{k}", str(v))]
        _run(py + ["demo-data", "--out", str(data), "--quiet", "--overwrite", *extra], log)
        timings["generate_s"] = round(time.perf_counter() - t0, 1)
    if retrain or not (arts / "current").exists():
        t0 = time.perf_counter()
        _run(py + ["train", "--data", str(data), "--out", str(arts), "--holdout", "0.1", "--no-progress",
                   "--seed", str(seed)], log)
        timings["train_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    _run(py + ["evaluate", "--data", str(data), "--artifacts", str(arts), "--quiet", "--no-fusion-study",
               "--report-dir", str(work / name / "report")], log)
    timings["evaluate_s"] = round(time.perf_counter() - t0, 1)
    version = (arts / "current").read_text().strip()
    metrics = json.loads((arts / version / "metrics.json").read_text())
    manifest = json.loads((arts / version / "manifest.json").read_text())
    return {"metrics": metrics, "ranking": manifest.get("ranking", {}), "timings": timings,
            "train_timings": manifest.get("timings", {}), "options": opts}


def _ci(block: dict[str, Any] | None, metric: str) -> str:
    if not block or not isinstance(block.get(metric), dict):
        return "–"
    v = block[metric]
    return f"{v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"


def _signed(v: dict[str, Any] | None) -> str:
    return "–" if not v else f"{v['mean']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]"


def _summary(results: dict[str, dict[str, Any]]) -> list[str]:
    """The summary table's lines: per catalog, score_total against the best baseline and the novelty check."""
    summary = ["| catalog | score_total HR@10 | best baseline HR@10 | paired Δ HR@10 | score_total nDCG@10 | "
               "best baseline nDCG@10 | paired Δ nDCG@10 | ≥ best baseline (HR / nDCG) | "
               "≥ every single model (HR / nDCG) | novelty 0.5: pop ratio, HR cost (met) |",
               "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        m = r["metrics"]
        warm = m["warm"]
        paired = m.get("paired", {})
        t = m.get("targets", {})
        cells = []
        for metric in ("hit_rate@10", "ndcg@10"):
            p = paired.get(metric, {})
            best = p.get("best_baseline")
            cells += [_ci(warm.get("score_total"), metric), f"{best} {_ci(warm.get(best), metric)}",
                      _signed(p.get("vs_best_baseline"))]
        base = "/".join("yes" if t.get(k, {}).get("met") else "NO"
                        for k in ("score_total_vs_best_baseline", "score_total_vs_best_baseline_ndcg"))
        single = "/".join("yes" if t.get(k, {}).get("met") else "NO"
                          for k in ("score_total_vs_best_single", "score_total_vs_best_single_ndcg"))
        nov = t.get("novelty_halves_popularity", {})
        cost = t.get("novelty_hit_rate_cost", {})
        nov_cell = (f"{nov.get('value', float('nan')):.2f}, {100 * cost.get('value', float('nan')):.1f} % "
                    f"({'yes' if nov.get('met') and cost.get('met') else 'NO'})"
                    if nov and cost and nov.get("value") is not None and cost.get("value") is not None else "–")
        summary.append(f"| {name} | " + " | ".join(cells) + f" | {base} | {single} | {nov_cell} |")
    return summary


def _best_point(fusion: dict[str, Any]) -> str:
    """How the fit judged its best grid point against the reference (empty for versions without the record)."""
    best = fusion.get("best_grid_point")
    if not best:
        return ""
    if "z_needed" in best:
        judged = f"paired z {best['z']} over the reference, {best['z_needed']} needed"
    elif "z_against_leaders" in best:
        judged = f"no single leader; smaller z against the two leaders {best['z_against_leaders']}"
    else:
        judged = f"paired z {best['z']}"
    return f"best grid point {best['weights']} at offset {best['offset']} ({judged}; adopted: {best['adopted']}); "


def _novelty_room(novelty: dict[str, Any]) -> str:
    """The chosen novelty setting's validation figures."""
    tried = novelty.get("tried") or {}
    name = NoveltySetting(0.0, 0.0, float(novelty.get("strength", 0.0)), int(novelty.get("head", 0)),
                          novelty.get("cap_quantile")).name
    if name not in tried:
        return "validation figures not recorded"
    row = tried[name]
    return (f"validation: ratio {row['median_popularity_ratio']}, cost {row['hit_rate_cost']}"
            + (f", room {row['margin']} sd" if "ratio_sd" in row else f", relative room {row['margin']}"))


def table(results: dict[str, dict[str, Any]], seed: int = 0) -> str:
    """The Markdown report of every catalog (``seed``: training's, named in the title when not 0)."""
    lines = [
        "# Ranking on catalogs of different structure" + (f", training seed {seed}" if seed else ""),
        "",
        "Generated by `python benchmarks/eval_structures.py" + (f" --seed {seed}" if seed else "") + "` (also "
        "`make eval-structures`): each catalog is",
        "generated with `mugle demo-data`, trained with `mugle train --holdout 0.1"
        + (f" --seed {seed}" if seed else "") + "` (which fits the ranking on a",
        "validation split of that catalog's own training playlists: nothing here was chosen on these held-out",
        "playlists) and evaluated with `mugle evaluate` (one seed per held-out playlist, truth = the rest of it;",
        "95 % bootstrap intervals, 1,000 resamples). `ease` picks its regularisation on these very queries,",
        "which favours the baseline. `cooc_list` is the served co-occurrence list alone (score_total's fourth",
        "source).",
        "",
    ]
    developed = {k: v for k, v in results.items() if k not in CHECKS}
    checks = {k: v for k, v in results.items() if k in CHECKS}
    lines += ["## Summary", ""] + _summary(developed) + [""]
    if checks:
        lines += ["## Checks: catalogs kept out of the work on the fit", "",
                  "Each added before its first run and evaluated only after, as a check that the rules hold on a",
                  "structure they were not developed against (check-mid-long with the fusion rules, check-flat-mid",
                  "with the novelty cap). Both then served to develop the selection-aware fusion rule and the",
                  "novelty room counted in standard deviations; check-long-skewed and check-short-flat came with",
                  "those two rules.", ""] + _summary(checks) + [""]
    for name, r in results.items():
        desc, _ = CATALOGS.get(name, ("", {}))
        m = r["metrics"]
        c = m["counts"]
        lines += [f"## {name}{' (check)' if name in CHECKS else ''}: {desc}", "",
                  f"{c['catalog_songs']:,} songs, {c['training_playlists']:,} training playlists, "
                  f"{c['warm_queries']} warm queries.", ""]
        lines += ["| method | HitRate@10 | nDCG@10 | median popularity@10 |", "|---|---|---|---|"]
        for meth in SHOWN:
            b = m["warm"].get(meth)
            if b:
                lines.append(f"| {meth} | {_ci(b, 'hit_rate@10')} | {_ci(b, 'ndcg@10')} | "
                             f"{b.get('median_popularity@10')} |")
        ease = m.get("ease") or {}
        if "skipped" in ease:
            lines.append(f"\nEASE skipped: {ease['skipped']}.")
        elif ease:
            lines.append(f"\nEASE lambda {ease['lambda']:g} (of {', '.join(ease['per_lambda'])}).")
        paired = m.get("paired", {})
        lines += ["", "Paired differences, score_total minus each rival (same queries):", "",
                  "| rival | Δ HitRate@10 | Δ nDCG@10 |", "|---|---|---|"]
        rivals = [k[3:] for k in paired.get("hit_rate@10", {}) if k.startswith("vs_") and k != "vs_best_baseline"]
        for rv in rivals:
            lines.append(f"| {rv} | {_signed(paired['hit_rate@10'].get('vs_' + rv))} | "
                         f"{_signed(paired['ndcg@10'].get('vs_' + rv))} |")
        rk = r.get("ranking", {})
        fit = rk.get("fit", {})
        fusion = rk.get("fusion", {})
        w2v = (fit.get("music2vec") or {}).get("chosen")
        lines += ["", "Fitted at training time (validation split of the training playlists): "
                  f"weights {fusion.get('weights')} at rank offset {fusion.get('offset', 0.0)}, "
                  f"co-occurrence alpha {(rk.get('cooc') or {}).get('alpha')}, "
                  f"Music2Vec {w2v}; validation {fusion.get('validation')}; {_best_point(fit.get('fusion') or {})}"
                  f"novelty {rk.get('novelty')} ({_novelty_room(fit.get('novelty') or {})}); fitting took "
                  f"{fit.get('elapsed_s')} s of a {(fit.get('options') or {}).get('budget_s')} s budget. "
                  f"Training stages (s): {r.get('train_timings')}.", ""]
        sweep = m.get("novelty_sweep", {}).get("score_total", [])
        if sweep:
            lines.append("Novelty sweep (score_total): " + "; ".join(
                f"{row['novelty']}: HR {row['hit_rate@10']}, median pop {row['median_popularity@10']}"
                for row in sweep))
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/eval-structures"),
                        help="where datasets and artifacts go (default build/eval-structures)")
    parser.add_argument("--only", action="append", choices=sorted(CATALOGS), help="run only these catalogs")
    parser.add_argument("--retrain", action="store_true", help="retrain catalogs already trained under --work")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "eval", help="where the table goes")
    parser.add_argument("--seed", type=int, default=0,
                        help="training's seed: another held-out and validation split of the same catalogs (default 0; "
                             "other seeds write structures-seed<N>.md/.json and need their own --work)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the Markdown from the JSON already there, running nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    names = [] if args.report_only else (args.only or list(CATALOGS))
    stem = "structures" if args.seed == 0 else f"structures-seed{args.seed}"
    raw_path = args.out / f"{stem}.json"
    results: dict[str, Any] = json.loads(raw_path.read_text()) if raw_path.is_file() else {}
    if args.report_only:
        if not results:
            raise SystemExit(f"--report-only: no results at {raw_path}")
        (args.out / f"{stem}.md").write_text(table(results, args.seed), encoding="utf-8")
    for name in names:
        logger.info("catalog %s ...", name)
        t0 = time.perf_counter()
        results[name] = run_catalog(name, args.work, args.retrain, args.seed)
        logger.info("catalog %s done in %.0f s", name, time.perf_counter() - t0)
        results = {k: results[k] for k in CATALOGS if k in results}
        args.out.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n")
        (args.out / f"{stem}.md").write_text(table(results, args.seed), encoding="utf-8")
    print((args.out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
