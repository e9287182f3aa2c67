"""In-process CPU time of ``Engine.recommend`` (score_total, k 10): from the fused lists against per request.

Loads a version's ``current`` once and times the same random catalog songs on both paths (the fused
row, and the per-request fusion of the neighbour and co-occurrence lists, with ``engine.fused`` set to
None), in alternating rounds, each round on songs not asked before in it (a fresh song cache, as for the
HTTP benchmark's first pass over its songs) and then again (cached Song dicts). Also times the parts of the
fused path, and ``Engine.recommend_json`` (the answer spliced from kept Song JSON, what
``RecommendShortcut`` serves). Novelty 0.5 shows how often the stored pool answers a re-ranked request.

Usage::

    python benchmarks/bench_fused.py /work/cache/serving/707989 --songs 3000 --rounds 4
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.engine import _SONG_CACHE, Engine  # noqa: E402
from mugle_core.artifacts import resolve_current  # noqa: E402


def _cpu_per_call(fn, args_list) -> float:  # type: ignore[no-untyped-def]
    start = time.process_time()
    for args in args_list:
        fn(*args)
    return 1e6 * (time.process_time() - start) / len(args_list)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--songs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    engine = Engine.load(resolve_current(args.artifacts))
    fused = engine.fused
    if fused is None:
        raise SystemExit(f"{args.artifacts}: the current version has no fused lists (make_synthetic_artifacts.py "
                         "--add-fused)")
    rng = np.random.default_rng(0)
    results: dict[str, list[float]] = {}
    for r in range(args.rounds):
        ids = rng.choice(engine.catalog.song_ids, args.songs, replace=False).tolist()
        names = ("fused", "fused, spliced JSON", "per request")
        for name in names if r % 2 == 0 else names[::-1]:
            engine.fused = None if name == "per request" else fused
            engine._song = functools.lru_cache(maxsize=_SONG_CACHE)(engine.catalog.song)  # first time again
            engine._song_json = functools.lru_cache(maxsize=_SONG_CACHE)(engine.encode_song)
            calls = [(i,) for i in ids]
            call = engine.recommend_json if "JSON" in name else engine.recommend
            results.setdefault(f"{name}, first time", []).append(_cpu_per_call(call, calls))
            results.setdefault(f"{name}, again", []).append(_cpu_per_call(call, calls))
    engine.fused = fused
    rows = [engine.resolve(i) for i in ids]
    parts = {
        "read the row (FusedLists.answer)": (lambda row: fused.answer(row, 10, 0.0, engine.catalog.popularity,
                                                                      4.0, 0), [(x,) for x in rows]),
        "resolve an id": (engine.resolve, [(i,) for i in ids]),
        "a cached Song dict, copied": (engine.song, [(x,) for x in rows]),
        "a Song decoded (Catalog.song)": (engine.catalog.song, [(x,) for x in rows]),
    }
    print(f"{args.artifacts}: {len(engine.catalog):,} songs, {args.songs} songs x {args.rounds} rounds, "
          "CPU µs per call")
    print("| what | median | min | max |\n|---|---|---|---|")
    for name, values in results.items():
        print(f"| Engine.recommend, {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    for name, (fn, calls) in parts.items():
        values = [_cpu_per_call(fn, calls) for _ in range(3)]
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    cap = engine.novelty_cap(0.5)
    answered = sum(fused.answer(x, 10, 0.5, engine.catalog.popularity, engine.novelty_strength,
                                engine.novelty_head, cap) is not None for x in rows)
    print(f"novelty 0.5, k 10 (popularity cap {cap}): the fused row answered {answered} of {len(rows)} songs; "
          "the rest fuse per request")
    for novelty in (0.0, 0.5):
        values = [_cpu_per_call(functools.partial(engine.recommend, novelty=novelty), [(i,) for i in ids])
                  for _ in range(3)]
        print(f"Engine.recommend at novelty {novelty}, cached songs: median {statistics.median(values):.1f} µs")


if __name__ == "__main__":
    main()
