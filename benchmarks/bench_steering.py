"""Time steered recommendations in-process: filters (with the deeper search), diversity, songs to avoid.

For each artifacts folder, ``Engine.recommend`` (or ``recommend_seeds`` for negatives) over the same random
catalog songs with no steering and with each setting below; prints the median and 95th percentile wall time
per request and the share of answers holding all ``k`` songs. The engine alone, without HTTP: the point is
what steering adds to a request, which the unsteered figure beside it shows.

Usage::

    python benchmarks/make_synthetic_artifacts.py --songs 100000 --out /tmp/mugle-bench-100k
    python benchmarks/bench_steering.py /tmp/mugle-bench-100k [--requests 300]
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
from mugle_core.artifacts import resolve_current  # noqa: E402

K = 10


def settings(engine: Engine) -> dict[str, Callable[[int], Steering | None]]:
    genres = [g["name"] for g in engine.filters.genres()]
    rare = genres[-1]
    ids = engine.catalog.song_ids

    def negatives(song: int) -> Steering:
        rng = random.Random(song)
        return Steering(negative_ids=tuple(int(ids[rng.randrange(len(ids))]) for _ in range(5)))

    return {
        "none": lambda s: None,
        f"genre {genres[0]} (most songs)": lambda s: Steering(genres=(genres[0],)),
        f"genre {rare} (fewest songs)": lambda s: Steering(genres=(rare,)),
        "two genres": lambda s: Steering(genres=(genres[0], genres[1])),
        "years 2000-2004": lambda s: Steering(year_from=2000, year_to=2004),
        "year_from 2010": lambda s: Steering(year_from=2010),
        "diversity 0.5": lambda s: Steering(diversity=0.5),
        "diversity 1": lambda s: Steering(diversity=1.0),
        "5 negatives": negatives,
        "genre + years + diversity 0.5": lambda s: Steering(genres=(genres[0],), year_from=2000, year_to=2009,
                                                              diversity=0.5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print("| songs | steering | median ms | p95 ms | full answers |")
    print("|---|---|---|---|---|")
    for folder in args.artifacts:
        engine = Engine.load(resolve_current(folder))
        rng = random.Random(0)
        songs = [int(s) for s in rng.sample(engine.catalog.song_ids.tolist(), args.requests)]
        for name, make in settings(engine).items():
            times: list[float] = []
            full = 0
            for song in songs:
                steer = make(song)
                started = time.perf_counter()
                if steer is not None and steer.negative_ids:
                    _, items = engine.recommend_seeds([song], k=K, steer=steer)
                else:
                    _, items = engine.recommend(song, k=K, steer=steer)
                times.append(time.perf_counter() - started)
                full += len(items) == K
            t = np.array(times) * 1000
            print(f"| {len(engine.catalog):,} | {name} | {np.median(t):.2f} | {np.percentile(t, 95):.2f} | "
                  f"{full / len(songs):.0%} |")


if __name__ == "__main__":
    main()
