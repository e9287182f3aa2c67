"""How the novelty fit's validation figures transfer to the held-out playlists, setting by setting.

For every catalog a structure sweep trained (``benchmarks/eval_structures.py --work DIR``), this reads the
novelty settings the version tried on its validation split (manifest ``ranking.fit.novelty.tried``:
median-popularity ratio and hit-rate cost at ``novelty`` 0.5), serves each of them on the held-out queries
of ``mugle evaluate`` (one warm seed per held-out playlist, same seed) and reports:

- the chosen setting's figures on validation and held out;
- the best any tried setting did held out (the least cost among those that halve the median there): an
  oracle that no rule fitted on validation can beat, so where it misses the 10 % limit the re-rank itself,
  not the choice, is short;
- how many tried settings meet both limits held out.

    python benchmarks/novelty_transfer.py --work /work/cache/sweep --work /work/cache/sweep-seed1 \\
        --out docs/eval/novelty_transfer.md

Read-only on the artifacts; the served engine's novelty setting is changed in memory only.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import ranking  # noqa: E402
from evaluation.evaluate import Served, build_queries, load_context, resolve_version  # noqa: E402
from training.fitting import NOVELTY_MAX_COST, NOVELTY_TARGET_RATIO, NoveltySetting  # noqa: E402

K = 10
LEVEL = 0.5
_NAME = re.compile(r"head (\d+), (?:no cap|cap q([\d.]+)), strength ([\d.]+)$")


def parse_setting(name: str) -> tuple[int, float | None, float]:
    """(head, cap quantile or None, strength) of a tried setting's name (``NoveltySetting.name``)."""
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"ranking.fit.novelty.tried: cannot read the setting name {name!r}")
    return int(m.group(1)), (float(m.group(2)) if m.group(2) else None), float(m.group(3))


def catalog_transfer(data: Path, artifacts: Path) -> dict[str, Any]:
    """Every tried setting's validation and held-out (ratio, cost) for one trained catalog."""
    vdir = resolve_version(artifacts, None)
    fit = json.loads((vdir / "manifest.json").read_text())["ranking"]["fit"]["novelty"]
    served = Served(vdir)
    engine = served.engine
    ctx = load_context(data, vdir)
    warm, _ = build_queries(ctx, max_playlists=1000, seed=0)  # as `mugle evaluate` by default
    engine._cap_levels = ranking.cap_levels(engine.catalog.popularity)

    def measure(head: int, quantile: float | None, strength: float, novelty: float) -> tuple[float, float]:
        engine.novelty_strength, engine.novelty_head, engine.novelty_cap_quantile = strength, head, quantile
        lists = [served.recommend(q.seed, "score_total", K, novelty=novelty) for q in warm]
        hit_rate = float(np.mean([any(s in q.relevant for s in t) for t, q in zip(lists, warm, strict=True)]))
        median = float(np.median([ctx.popularity.get(s, 0) for t in lists for s in t]))
        return hit_rate, median

    base_hr, base_median = measure(0, None, 1.0, 0.0)
    settings = {}
    for name, val in fit["tried"].items():
        hr, median = measure(*parse_setting(name), LEVEL)
        settings[name] = {
            "validation": [val["median_popularity_ratio"], val["hit_rate_cost"]],
            "held_out": [round(median / base_median, 3) if base_median else 1.0,
                         round(1.0 - hr / base_hr, 4) if base_hr else 0.0],
        }
    chosen = NoveltySetting(0.0, 0.0, float(fit["strength"]), int(fit["head"]), fit.get("cap_quantile")).name
    return {"queries": len(warm), "chosen": chosen, "settings": settings}


def meets(ratio_cost: list[float]) -> bool:
    return ratio_cost[0] <= NOVELTY_TARGET_RATIO and ratio_cost[1] <= NOVELTY_MAX_COST


def summary_row(label: str, found: dict[str, Any]) -> str:
    settings = found["settings"]
    chosen = settings[found["chosen"]]
    halving = [(v["held_out"][1], name) for name, v in settings.items() if v["held_out"][0] <= NOVELTY_TARGET_RATIO]
    best_cost, best = min(halving) if halving else (float("nan"), "none halves")
    n_meet = sum(meets(v["held_out"]) for v in settings.values())

    def fig(rc: list[float]) -> str:
        return f"{rc[0]:.2f} / {100 * rc[1]:.1f} %"

    oracle = f"{100 * best_cost:.1f} % ({best}, ratio {settings[best]['held_out'][0]:.2f})" if halving else best
    return (f"| {label} | {found['queries']} | {found['chosen']} | {fig(chosen['validation'])} | "
            f"{fig(chosen['held_out'])} ({'met' if meets(chosen['held_out']) else 'NOT met'}) | {oracle} | "
            f"{n_meet} of {len(settings)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, action="append", required=True,
                        help="a structure sweep's --work folder (repeat for several splits)")
    parser.add_argument("--out", type=Path, help="write the table (Markdown) here and the figures beside it (.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results: dict[str, dict[str, Any]] = {}
    for work in args.work:
        for cat in sorted(p for p in work.iterdir() if (p / "artifacts").is_dir() and (p / "data").is_dir()):
            label = f"{work.name}/{cat.name}"
            results[label] = catalog_transfer(cat / "data", cat / "artifacts")
            print(summary_row(label, results[label]), flush=True)
    lines = table(results)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join([*HEADER, *lines]) + "\n")
        # One line per catalog: every tried setting's two pairs of figures.
        per_line = (f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in results.items())
        args.out.with_suffix(".json").write_text("{\n" + ",\n".join(per_line) + "\n}\n")
    return 0


HEADER = [
    "# Novelty settings: validation against held out",
    "",
    "Generated by `python benchmarks/novelty_transfer.py` over the structure sweeps' folders (one per training",
    "seed, i.e. held-out and validation split). For each catalog: the novelty setting the fit chose at",
    "novelty 0.5, its median-popularity ratio and relative HitRate@10 cost on validation and on the held-out",
    "queries of `mugle evaluate`, the least held-out cost among all tried settings that halve the median held",
    "out (an oracle: chosen on the held-out queries themselves), and how many tried settings meet both limits",
    "(ratio <= 0.5, cost <= 10 %) held out. Per-setting figures are in the JSON beside this file.",
    "",
]


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    return [
        "| catalog | queries | chosen setting | validation ratio / cost | held out | "
        "held-out oracle: least cost that halves | tried settings meeting both held out |",
        "|---|---|---|---|---|---|---|",
        *(summary_row(label, found) for label, found in results.items()),
    ]


if __name__ == "__main__":
    sys.exit(main())
