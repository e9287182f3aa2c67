"""The readable evaluation report: Markdown tables plus matplotlib plots (Agg backend, PNG files).

:func:`write_report` takes the dictionary :func:`evaluation.evaluate.evaluate` builds (the same one that
goes to ``metrics.json``) and the version folder, from which it reads the embeddings for the 2-D maps.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from evaluation.steering import steering_markdown  # noqa: E402
from mugle_core.artifacts import CATALOG, MODEL_NAMES, ids_file, query_file  # noqa: E402
from mugle_core.catalog import SEP, Catalog  # noqa: E402

logger = logging.getLogger(__name__)

# Genre names and titles are often Korean; DejaVu has no Hangul, so fall back to a Hangul font when
# one is installed. Without one the labels show boxes and the glyph warnings are silenced below.
_HANGUL_FONTS: tuple[str, ...] = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "Noto Sans KR",
                                  "UnDotum", "Malgun Gothic", "AppleGothic")

REPORT_MD = "report.md"
BARS_PNG = "metrics_bars.png"
COLD_PNG = "cold_start.png"
NOVELTY_PNG = "novelty_tradeoff.png"
MAP_PNG = "map_{model}.png"
BAR_METRICS: tuple[str, ...] = ("hit_rate@10", "ndcg@10", "recall@50", "genre_precision@10")
MAP_POINTS = 3000
MAP_GENRES = 8


_HANGUL_FONT_FILES: tuple[str, ...] = ("NanumGothic.ttf", "NanumBarunGothic.ttf", "NotoSansCJK", "NotoSansKR")


def _use_hangul_font() -> str | None:
    """Add a Hangul font as a fallback family; returns its name, or None when none is installed."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((n for n in _HANGUL_FONTS if n in installed), None)
    if found is None:
        # matplotlib's font cache may predate the system fonts: look for the files themselves.
        for path in sorted(font_manager.findSystemFonts()):
            if any(key in Path(path).name for key in _HANGUL_FONT_FILES):
                try:
                    font_manager.fontManager.addfont(path)
                    found = font_manager.FontProperties(fname=path).get_name()
                except (OSError, RuntimeError, ValueError):
                    continue
                break
    if found is not None:
        # A list of families makes matplotlib fall back glyph by glyph (3.6+).
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", found]
    return found


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ci_text(cell: Any) -> str:
    if not isinstance(cell, Mapping):
        return _fmt(cell)
    if cell.get("mean") is None:
        return "–"
    return f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def _methods(block: Mapping[str, Any]) -> list[str]:
    return [m for m, v in block.items() if isinstance(v, Mapping) and v.get("queries")]


# -- plots ---------------------------------------------------------------------------------------------


def plot_metric_bars(block: Mapping[str, Any], path: Path, title: str) -> Path:
    """One panel per metric, one bar per method, with the bootstrap 95% interval as an error bar."""
    methods = _methods(block)
    fig, axes = plt.subplots(1, len(BAR_METRICS), figsize=(4.2 * len(BAR_METRICS), 4.2), squeeze=False)
    colours = plt.cm.tab10(np.arange(len(methods)) % 10)
    for ax, metric in zip(axes[0], BAR_METRICS, strict=True):
        means, lows, highs = [], [], []
        for m in methods:
            cell = block[m].get(metric) or {}
            mean = cell.get("mean")
            means.append(np.nan if mean is None else mean)
            lows.append(0.0 if mean is None else mean - cell["low"])
            highs.append(0.0 if mean is None else cell["high"] - mean)
        x = np.arange(len(methods))
        ax.bar(x, means, color=colours, yerr=[lows, highs], capsize=3)
        ax.set_xticks(x, methods, rotation=60, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.set_ylim(0, max(1e-3, np.nanmax(np.array(means, dtype=float) + np.array(highs))) * 1.15
                    if methods and np.isfinite(np.nanmax(np.array(means, dtype=float))) else 1)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cold_start(warm: Mapping[str, Any], cold: Mapping[str, Any], path: Path) -> Path:
    """HitRate@10 of warm against cold-start seeds, per method."""
    methods = [m for m in _methods(warm) if m in cold and isinstance(cold[m], Mapping) and cold[m].get("queries")]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(methods))
    for offset, (label, block) in zip((-0.2, 0.2), (("warm seeds", warm), ("cold-start seeds", cold)), strict=True):
        vals = [(block[m].get("hit_rate@10") or {}).get("mean") for m in methods]
        cells = [block[m].get("hit_rate@10") or {} for m in methods]
        means = np.array([np.nan if v is None else v for v in vals], dtype=float)
        err = np.array([[0.0 if c.get("mean") is None else c["mean"] - c["low"] for c in cells],
                        [0.0 if c.get("mean") is None else c["high"] - c["mean"] for c in cells]])
        ax.bar(x + offset, means, width=0.4, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, methods, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("HitRate@10")
    ax.set_title("Warm against cold-start seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_novelty(sweep: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """The novelty control's trade-off: HitRate@10 against the median popularity of what is recommended."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = [row["median_popularity@10"] for row in sweep]
    ys = [row["hit_rate@10"] for row in sweep]
    ax.plot(xs, ys, marker="o")
    for row, x, y in zip(sweep, xs, ys, strict=True):
        ax.annotate(f"novelty {row['novelty']:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("median popularity of the top 10 (training playlists)")
    ax.set_ylabel("HitRate@10")
    ax.set_title("score_total: the novelty control")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components (SVD of the centred matrix)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"pca_2d: need a 2-D array with at least two rows, got shape {x.shape}")
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps[0])])
    return x @ comps.T


def plot_embedding_map(version_dir: Path, catalog: Catalog, model: str, path: Path, seed: int = 0) -> Path | None:
    """2-D PCA map of one model's query vectors, each song coloured by its first genre; None if no vectors."""
    ids_path, q_path = version_dir / ids_file(model), version_dir / query_file(model)
    if not ids_path.is_file() or not q_path.is_file():
        return None
    ids = np.load(ids_path, allow_pickle=False)
    vecs = np.load(q_path, allow_pickle=False, mmap_mode="r")
    if len(ids) < 2:
        return None
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ids), size=min(MAP_POINTS, len(ids)), replace=False))
    xy = pca_2d(np.asarray(vecs[pick]))
    col = catalog.columns["genres"]
    labels = []
    for sid in ids[pick].tolist():
        row = catalog.row(int(sid))
        g = col[row] if row is not None else ""
        labels.append(g.split(SEP)[0] if g else "(none)")
    top = [g for g, _ in Counter(labels).most_common(MAP_GENRES)]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.cm.tab10
    other = np.array([lab not in top for lab in labels])
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=4, c="lightgrey", label="other")
    for i, g in enumerate(top):
        mask = np.array([lab == g for lab in labels])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=5, color=cmap(i % 10), label=g)
    ax.set_title(f"{model}: {len(pick):,} songs, PCA, coloured by first genre")
    ax.legend(fontsize=7, markerscale=3, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- Markdown --------------------------------------------------------------------------------------------


def _metric_table(block: Mapping[str, Any]) -> list[str]:
    head = ("method", "queries", "HitRate@10", "nDCG@10", "Recall@50", "MRR@50", "genre P@10",
            "coverage@10", "novelty", "below median", "median pop", "diversity", "empty")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in _methods(block):
        b = block[m]
        lines.append("| " + " | ".join([
            f"`{m}`", str(b["queries"]), _ci_text(b["hit_rate@10"]), _ci_text(b["ndcg@10"]),
            _ci_text(b["recall@50"]), _ci_text(b["mrr@50"]), _ci_text(b["genre_precision@10"]),
            _fmt(b["coverage@10"]), _fmt(b["novelty@10"], 2), _fmt(b["share_below_median@10"]),
            _fmt(b["median_popularity@10"], 1), _fmt(b["diversity@10"]), str(b["empty_lists"]),
        ]) + " |")
    return lines


def render_markdown(results: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """The report's text; ``images`` maps a plot's role to its file name next to the report."""
    c = results.get("counts", {})
    out = [
        f"# Offline evaluation of version `{results.get('version')}`",
        "",
        f"Dataset `{results.get('data')}`; {c.get('catalog_songs', 0):,} catalog songs, "
        f"{c.get('training_playlists', 0):,} training playlists, {c.get('holdout_playlists', 0):,} held-out "
        f"playlists; {c.get('warm_queries', 0):,} warm and {c.get('cold_queries', 0):,} cold-start queries "
        f"(seed {results.get('seed')}).",
        "",
        "Each query seeds with one song of a held-out playlist and counts the playlist's other songs as "
        "relevant. Intervals are bootstrap 95% intervals of the mean. Novelty is the mean −log2 of the "
        "popularity share (higher = less known); \"below median\" is the share of recommended songs below "
        "the catalog's median popularity; diversity is the mean pairwise Jaccard distance of genre sets.",
        "",
    ]
    targets = results.get("targets") or {}
    if targets:
        out += ["## Targets", "", "| target | value | threshold | met |", "|---|---|---|---|"]
        for t in targets.values():
            out.append(f"| {t['rule']} | {_fmt(t['value'])} | {_fmt(t['threshold'])} | "
                       f"{'–' if t['met'] is None else 'yes' if t['met'] else '**no**'} |")
        out.append("")
    out += ["## Warm seeds", "", *_metric_table(results.get("warm", {})), ""]
    if "bars" in images:
        out += [f"![metrics per method]({images['bars']})", ""]
    cold = results.get("cold_start", {})
    out += ["## Cold-start seeds (no training playlist contains them)", ""]
    if _methods(cold):
        out += [*_metric_table(cold), ""]
        if "cold" in images:
            out += [f"![warm against cold]({images['cold']})", ""]
    else:
        out += ["No held-out playlist has a cold-start song with audio.", ""]
    ver = results.get("version_retrieval")
    out += ["## Version retrieval (demo ground truth)", ""]
    if ver:
        out += [f"{ver['groups']} groups of versions of one melody, {ver['songs']} songs; depth 100.", "",
                "| method | P@1 | MRR | answered |", "|---|---|---|---|"]
        for m, v in ver.items():
            if isinstance(v, Mapping):
                out.append(f"| `{m}` | {_ci_text(v['p@1'])} | {_ci_text(v['mrr'])} | {v['answered']} |")
        out.append("")
    else:
        out += ["No `demo_truth.json` with version groups in the dataset folder.", ""]
    planted = results.get("planted_duplicates")
    if planted:
        out += ["Duplicate merging against the demo's planted pairs (re-releases should merge, the rest not): "
                + "; ".join(f"{kind} merged {v['merged']} of {v['pairs']}" for kind, v in planted.items()) + ".", ""]
    sweep = (results.get("novelty_sweep") or {}).get("score_total") or []
    if sweep:
        out += ["## Novelty control (`score_total`)", "",
                "| novelty | HitRate@10 | nDCG@10 | median popularity | novelty (bits) |", "|---|---|---|---|---|"]
        for row in sweep:
            out.append(f"| {row['novelty']:g} | {_fmt(row['hit_rate@10'])} | {_fmt(row['ndcg@10'])} | "
                       f"{_fmt(row['median_popularity@10'], 1)} | {_fmt(row['novelty@10'], 2)} |")
        out.append("")
        if "novelty" in images:
            out += [f"![novelty trade-off]({images['novelty']})", ""]
    fusion = results.get("fusion_study")
    if fusion:
        out += ["## Fusion study (served candidate lists, re-fused)", "",
                "| variant | HitRate@10 | nDCG@10 |", "|---|---|---|"]
        for name, v in fusion.items():
            out.append(f"| {name} | {_ci_text(v['hit_rate@10'])} | {_ci_text(v['ndcg@10'])} |")
        out.append("")
    out += steering_markdown(results.get("steering") or {})
    maps = [(m, images[f"map_{m}"]) for m in MODEL_NAMES if f"map_{m}" in images]
    if maps:
        out += ["## Embedding maps", ""]
        out += [f"![{m}]({f})" for m, f in maps]
        out.append("")
    t = results.get("timings", {})
    if t:
        out += [f"Evaluation took {t.get('total', 0):.1f} s.", ""]
    return "\n".join(out)


def write_report(results: Mapping[str, Any], version_dir: Path, out_dir: Path, *, seed: int = 0) -> Path:
    """Write ``report.md`` and its PNG plots into ``out_dir``; returns the Markdown file's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _use_hangul_font() is None:
        logger.info("no Hangul font installed: Korean labels in the plots will show as boxes")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        images = _write_plots(results, Path(version_dir), out_dir, seed)
    path = out_dir / REPORT_MD
    path.write_text(render_markdown(results, images), encoding="utf-8")
    logger.info("report written to %s (%d plots)", path, len(images))
    return path


def _write_plots(results: Mapping[str, Any], version_dir: Path, out_dir: Path, seed: int) -> dict[str, str]:
    images: dict[str, str] = {}
    warm = results.get("warm", {})
    if _methods(warm):
        plot_metric_bars(warm, out_dir / BARS_PNG, "Warm seeds: mean and bootstrap 95% interval")
        images["bars"] = BARS_PNG
        cold = results.get("cold_start", {})
        if _methods(cold):
            plot_cold_start(warm, cold, out_dir / COLD_PNG)
            images["cold"] = COLD_PNG
    sweep = (results.get("novelty_sweep") or {}).get("score_total") or []
    if sweep and all(r["median_popularity@10"] is not None and r["hit_rate@10"] is not None for r in sweep):
        plot_novelty(sweep, out_dir / NOVELTY_PNG)
        images["novelty"] = NOVELTY_PNG
    catalog = Catalog.load(Path(version_dir) / CATALOG)
    for model in MODEL_NAMES:
        name = MAP_PNG.format(model=model)
        if plot_embedding_map(Path(version_dir), catalog, model, out_dir / name, seed=seed) is not None:
            images[f"map_{model}"] = name
    return images
