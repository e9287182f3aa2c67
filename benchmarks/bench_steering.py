"""Time steered recommendations in-process: filters (with the deeper search), diversity, songs to avoid.

For each artifacts folder and each endpoint's engine call (``recommend`` for ``GET /recommend/{id}``,
``recommend_seeds`` with three seeds for ``POST /recommend``, ``recommend_tag`` for
``GET /recommend/tag/{tag}``), the same random queries with no steering and with each setting below; prints
the median and 99th percentile of the wall time and of the CPU time (the process's, so it includes FAISS's
threads) per request, and the share of answers holding all ``k`` songs (every setting here leaves thousands
of passing songs, so anything below 100 % is a short list). The engine alone, without HTTP: the point is
what steering adds to a request, which the unsteered figure beside it shows. On a shared machine the wall
times include waiting for a core; the CPU times are what a request costs.

A version without playlist tags (the synthetic ones) gets a tag table built in memory with the training
code: 40 tags, each on 8 playlists of 25 songs drawn from 60 random songs.

Usage::

    python benchmarks/make_synthetic_artifacts.py --songs 100000 --out /tmp/mugle-bench-100k --index training
    python benchmarks/bench_steering.py /tmp/mugle-bench-100k [--requests 300] [--endpoints song seeds tag]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.engine import Engine  # noqa: E402
from app.steering import Steering  # noqa: E402
from app.tags import TagIndex  # noqa: E402
from mugle_core.artifacts import ids_file, query_file, resolve_current  # noqa: E402
from training.tags import build_tag_table  # noqa: E402

K = 10
SEEDS = 3
ENDPOINTS = ("song", "seeds", "tag")


def settings(engine: Engine) -> dict[str, Callable[[int], Steering | None]]:
    """Setting name -> the steering of request ``i`` (negatives differ per request)."""
    genres = [g["name"] for g in engine.filters.genres()]
    rare = genres[-1]
    ids = engine.catalog.song_ids

    def negatives(i: int, **kw: object) -> Steering:
        rng = random.Random(i)
        return Steering(negative_ids=tuple(int(ids[rng.randrange(len(ids))]) for _ in range(5)), **kw)  # type: ignore[arg-type]

    both = {"genres": (genres[0],), "year_from": 2000, "year_to": 2009}
    return {
        "none": lambda i: None,
        f"genre {genres[0]} (most songs)": lambda i: Steering(genres=(genres[0],)),
        f"genre {rare} (fewest songs)": lambda i: Steering(genres=(rare,)),
        "two genres": lambda i: Steering(genres=(genres[0], genres[1])),
        "years 2000-2004": lambda i: Steering(year_from=2000, year_to=2004),
        "year_from 2010": lambda i: Steering(year_from=2010),
        "genre + years 2000-2009": lambda i: Steering(**both),  # type: ignore[arg-type]
        "diversity 0.5": lambda i: Steering(diversity=0.5),
        "diversity 1": lambda i: Steering(diversity=1.0),
        "5 negatives": negatives,
        "genre + years + diversity 0.5": lambda i: Steering(diversity=0.5, **both),  # type: ignore[arg-type]
        "genre + years + 5 negatives": lambda i: negatives(i, **both),
    }


def add_synthetic_tags(engine: Engine, seed: int = 0) -> None:
    """Give a version without tags an in-memory tag table learned by the training code."""
    rng = np.random.default_rng(seed)
    ids = engine.catalog.song_ids
    playlist_tags: list[list[str]] = []
    playlists: list[list[int]] = []
    for t in range(40):
        pool = rng.choice(ids, 60, replace=False)
        for _ in range(8):
            playlist_tags.append([f"tag{t}"])
            playlists.append([int(s) for s in rng.choice(pool, 25, replace=False)])
    folder = engine.version_dir
    vectors = {name: (np.load(folder / ids_file(name)), np.load(folder / query_file(name), mmap_mode="r"))
               for name in engine.models}
    table = build_tag_table(playlist_tags, playlists, vectors, min_playlists=5)
    engine.tags = TagIndex(table, ids)


def endpoint_calls(engine: Engine, requests: int) -> dict[str, Callable[[int, Steering | None], list]]:
    """Endpoint -> the engine call answering its request ``i`` (the same queries for every setting)."""
    rng = random.Random(0)
    songs = [int(s) for s in rng.sample(engine.catalog.song_ids.tolist(), requests * SEEDS)]
    tags = engine.tags.names if engine.tags is not None else []
    return {
        "song": lambda i, st: engine.recommend(songs[i], k=K, steer=st)[1],
        "seeds": lambda i, st: engine.recommend_seeds(songs[i * SEEDS:(i + 1) * SEEDS], k=K, steer=st)[1],
        "tag": lambda i, st: engine.recommend_tag(tags[i % len(tags)], k=K, steer=st)[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS))
    parser.add_argument("--settings", nargs="*", help="only settings whose name contains one of these")
    args = parser.parse_args()
    print("| songs | endpoint | steering | wall median ms | wall p99 ms | CPU median ms | CPU p99 ms | full answers |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in args.artifacts:
        engine = Engine.load(resolve_current(folder))
        if engine.tags is None and "tag" in args.endpoints:
            add_synthetic_tags(engine)
        calls = endpoint_calls(engine, args.requests)
        for endpoint in args.endpoints:
            for name, make in settings(engine).items():
                if args.settings and not any(s in name for s in args.settings):
                    continue
                if "negatives" in name and endpoint != "seeds":
                    continue  # the contract puts negative_ids on POST /recommend only
                wall: list[float] = []
                cpu: list[float] = []
                full = 0
                for i in range(args.requests):
                    steer = make(i)
                    started, cpu_started = time.perf_counter(), time.process_time()
                    items = calls[endpoint](i, steer)
                    cpu.append(time.process_time() - cpu_started)
                    wall.append(time.perf_counter() - started)
                    full += len(items) == K
                t, c = np.array(wall) * 1000, np.array(cpu) * 1000
                print(f"| {len(engine.catalog):,} | {endpoint} | {name} | {np.median(t):.2f} | "
                      f"{np.percentile(t, 99):.2f} | {np.median(c):.2f} | {np.percentile(c, 99):.2f} | "
                      f"{full / args.requests:.0%} |", flush=True)


if __name__ == "__main__":
    main()
