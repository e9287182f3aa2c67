"""The cold-start fusion fitted on a saved version's training playlists, and how it does on held-out cold seeds.

For each catalog a structure sweep trained (``benchmarks/eval_structures.py --work DIR``) this replays the
training-time fit of the cold-start fusion (:meth:`training.fitting.Fitter.fit_cold`) on the version's
saved artifacts, then serves the held-out cold-start queries of ``mugle evaluate`` (seeds no training
playlist contains, truth the rest of their playlist) three ways: the constant audio fusion the version
was trained with, the fitted cold-start fusion (the version's engine with it swapped in, fusing every
request), and most-popular. Per catalog, pooled over the sweeps given (one per training split), HitRate@10
and nDCG@10 with 95 % intervals and the paired difference of the fitted fusion against each of the other two.

The replay runs training's own steps on the saved version: a validation split of its training playlists
(drawn afresh; the held-out ones are not among them), one Music2Vec with the version's chosen settings and a
CEL trained on the fitting split, the version's TCAE (trained without playlists), and the cold-start fit on
the validation playlists' cold songs. Only Music2Vec's search and the warm fusion's grid are skipped.
A version trained with the cold-start fit is served with its own (``ranking.cold``), nothing replayed.

    python benchmarks/cold_transfer.py --work /work/cache/sweep/seed0 --work /work/cache/sweep/seed1 \\
        --out docs/eval/cold_start.md

Read-only on the artifacts.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.eval_structures import CATALOGS  # noqa: E402
from benchmarks.sweep_files import sweep_parser, write_results  # noqa: E402
from evaluation import metrics as M  # noqa: E402
from evaluation.evaluate import Baselines, Served, build_queries, load_context, resolve_version  # noqa: E402
from mugle_core import fusion  # noqa: E402
from mugle_core.artifacts import ids_file, query_file  # noqa: E402
from training.fitting import Fitter, split_validation  # noqa: E402
from training.music2vec import l2_normalise  # noqa: E402
from training.pipeline import TrainOptions, fit_cel_trainer  # noqa: E402

K = 10
WAYS = ("constant audio fusion", "fitted cold-start fusion", "most-popular")


def replay_fit(ctx: Any, version_dir: Path, manifest: dict[str, Any]) -> tuple[fusion.ColdFusion, dict[str, Any]]:
    """Fit the cold-start fusion as training does: a validation split of the version's training playlists,
    Music2Vec (the version's chosen settings) and a CEL trained on the fitting split, the version's TCAE
    (trained without playlists), then :meth:`Fitter.fit_cold`."""
    seed = int(manifest["params"]["train"].get("seed", 0))
    options = TrainOptions(seed=seed, progress=False)
    fit_options = replace(options.fit, budget_s=600.0, search=False)  # no budget cut: one Music2Vec, one CEL
    playlists = ctx.train_playlists
    split = split_validation(playlists, list(range(len(playlists))), [], fit_options, seed)
    fitter = Fitter(split, fit_options, seed=seed)
    chosen = manifest["ranking"]["fit"]["music2vec"]["chosen"]
    w2v = replace(options.music2vec, **{k: chosen[k] for k in ("ns_exponent", "window", "epochs", "sample")})
    fitter.search_music2vec(w2v, options.prep.min_playlists, chosen["score"])
    ids = np.load(version_dir / ids_file("tcae"), allow_pickle=False)
    vecs = np.load(version_dir / query_file("tcae"), allow_pickle=False)
    order = np.argsort(ids, kind="stable")
    tcae_ids, tcae_vecs = ids[order], vecs[order]
    # What the warm fusion fit leaves to the cold one (its grid is skipped: it changes nothing here).
    assert fitter.fit_w2v is not None
    cel_ids, cel_vecs = fit_cel_trainer(tcae_ids, tcae_vecs, options, "cpu")(fitter.fit_w2v.ids, fitter.fit_w2v.query)
    fitter.audio_vectors = {"tcae": (tcae_ids, l2_normalise(tcae_vecs)), "cel": (cel_ids, cel_vecs)}
    return fitter.fit_cold(), fitter.record["cold"]


def catalog_cold(data: Path, artifacts: Path) -> dict[str, Any]:
    """One version's held-out cold-start queries answered the three ways (per-query hits and gains)."""
    vdir = resolve_version(artifacts, None)
    manifest = json.loads((vdir / "manifest.json").read_text())
    ctx = load_context(data, vdir)
    _, cold_queries = build_queries(ctx, max_playlists=1000, seed=0)  # as `mugle evaluate` by default
    out: dict[str, Any] = {"queries": len(cold_queries), "served_cold": manifest["ranking"].get("cold")}
    if not cold_queries:
        return out
    if "cold" in manifest["ranking"]:  # trained with the cold-start fit: what it serves
        fitted, record = fusion.cold_fusion(manifest["ranking"]), manifest["ranking"]["fit"]["cold"]
    else:
        fitted, record = replay_fit(ctx, vdir, manifest)
    out["fit"] = {"source": "trained" if "cold" in manifest["ranking"] else "replayed",
                  **{k: record[k] for k in ("weights", "offset", "queries", "validation", "note",
                                            "reference_validation", "popular_alone", "best_grid_point")
                     if k in record}}
    served = Served(vdir)
    engine = served.engine
    engine.fused = None  # its pools were fused with the version's own cold-start fusion

    def answer(cold: fusion.ColdFusion) -> list[list[int]]:
        engine.cold = cold
        engine._popular = fusion.popular_order(engine.catalog.popularity, 4096) if cold.popular else None
        return [served.recommend(q.seed, "score_total", K) for q in cold_queries]

    baselines = Baselines(ctx)
    lists = {WAYS[0]: answer(fusion.ColdFusion()), WAYS[1]: answer(fitted),
             WAYS[2]: [baselines.most_popular(q.seed, K) for q in cold_queries]}
    for way, tops in lists.items():
        out[way] = {"hit": [M.hit_rate_at_k(t, q.relevant, K) for t, q in zip(tops, cold_queries, strict=True)],
                    "ndcg": [M.ndcg_at_k(t, q.relevant, K) for t, q in zip(tops, cold_queries, strict=True)]}
    return out


def _ci(values: list[float], signed: bool = False) -> str:
    mean, low, high = M.bootstrap_ci(values, seed=0)
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def _pooled(splits: list[dict[str, Any]], way: str, key: str) -> list[float]:
    return [v for s in splits for v in s[way][key]]


def table(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One row per catalog, pooled over its splits."""
    lines = ["| catalog | cold queries (per split) | constant audio fusion HR@10 | fitted HR@10 | most-popular HR@10 | "
             "fitted − constant, HR@10 | fitted − most-popular, HR@10 | fitted − most-popular, nDCG@10 | "
             "fitted weights (tcae / cel / popular, offset) per split, (t): trained with the fit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, splits in results.items():
        used = [s for s in splits.values() if s.get("queries")]
        if not used:
            continue

        fitted_h, const_h, pop_h = (_pooled(used, w, "hit") for w in (WAYS[1], WAYS[0], WAYS[2]))
        diff_c = [a - b for a, b in zip(fitted_h, const_h, strict=True)]
        diff_p = [a - b for a, b in zip(fitted_h, pop_h, strict=True)]
        diff_pn = [a - b for a, b in zip(_pooled(used, WAYS[1], "ndcg"), _pooled(used, WAYS[2], "ndcg"), strict=True)]
        weights = "; ".join(
            "{tcae:g} / {cel:g} / {popular:g}, {off:g}{mark}".format(
                **s["fit"]["weights"], off=s["fit"]["offset"], mark="" if s["fit"]["source"] == "replayed" else " (t)")
            for s in used)
        lines.append(f"| {name} | {len(fitted_h)} ({'/'.join(str(s['queries']) for s in splits.values())}) | "
                     f"{_ci(const_h)} | {_ci(fitted_h)} | {_ci(pop_h)} | {_ci(diff_c, True)} | {_ci(diff_p, True)} | "
                     f"{_ci(diff_pn, True)} | {weights} |")
    return lines


HEADER = """# Cold-start seeds: the constant audio fusion, the fitted cold-start fusion, most-popular

Generated by `python benchmarks/cold_transfer.py` over the structure sweeps' folders (one per training
split). Cold-start queries are `mugle evaluate`'s: every song of a held-out playlist that no training
playlist contains and that has audio, the truth being the rest of its playlist. Pooled over the splits
(differences paired per query, 95 % bootstrap intervals). The fitted fusion is replayed on each saved
version as training fits it (`Fitter.fit_cold`: the validation playlists' songs that no fitting playlist
holds, answered from their audio neighbours and a popularity list, weights over tcae, cel and popularity
crossed with the rank offsets, adopted over the constant fusion only on a clear validation gain), with
Music2Vec and the CEL retrained on the fitting split and the version's TCAE; only Music2Vec's search is
skipped; a version trained with the cold-start fit (marked "(t)") is served with the fusion it fitted
itself. Few cold queries per split: read the intervals.
"""


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in CATALOGS:
        for work in args.work:
            cat = work / name
            if (cat / "artifacts" / "current").exists() and (cat / "data").is_dir():
                found = catalog_cold(cat / "data", cat / "artifacts")
                results.setdefault(name, {})[str(work)] = found
                fit = found.get("fit", {})
                print(f"{work.name}/{name}: {found['queries']} cold queries; fitted {fit.get('weights')} "
                      f"at {fit.get('offset')}", flush=True)
    lines = table(results)
    print("\n".join(lines))
    if args.out:
        works = ", ".join(f"`{w}`" for w in args.work)
        write_results(args.out, HEADER + f"\nSweeps: {works}.\n\n" + "\n".join(lines) + "\n", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
