"""Building the real-audio sets: one entry point for ``mugle real-audio build`` and ``python -m training.realaudio``.

The cache folder holds one folder per set (``recordings/``, ``melodies/``) and ``unpacked/`` (the
Debian packages opened with ``dpkg -x``); downloaded ``.deb`` files go to ``--debs`` (default
``<cache>/debs``). Nothing is installed and nothing is written inside the repository.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SETS = ("recordings", "melodies")
# Built only when asked for by name: the unseen check (Bach chorales, rendered like the melodies).
OPTIONAL_SETS = ("chorales",)
CHORALE_TUNES = 100
CACHE_ENV = "MUGLE_REALAUDIO_CACHE"


def default_cache() -> Path:
    """``$MUGLE_REALAUDIO_CACHE``, else ``~/.cache/mugle/realaudio``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "mugle" / "realaudio"


def build_sets(what: str, cache: Path, *, debs: Path | None = None, workers: int = 2, seed: int = 0,
               tunes: int | None = None, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Build ``what`` (``recordings``, ``melodies`` or ``all``) under ``cache``; returns each set's READY content."""
    if what not in (*SETS, *OPTIONAL_SETS, "all"):
        raise ValueError(f"--what must be one of {', '.join(SETS + OPTIONAL_SETS)}, all; got {what!r}")
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    debs_cache = Path(debs) if debs else cache / "debs"
    results: dict[str, Any] = {}
    for name in SETS if what == "all" else (what,):
        started = time.perf_counter()
        if name == "recordings":
            from training.realaudio import recordings

            ready = recordings.build(cache / name, debs_cache, cache / "unpacked", seed=seed, workers=workers,
                                     progress=progress, force=force)
        else:
            from training.realaudio import melodies

            kwargs: dict[str, Any] = {} if tunes is None else {"tunes": tunes}
            if name == "chorales":
                kwargs = {"tunes": tunes or CHORALE_TUNES, "collections": tuple(melodies.UNSEEN_COLLECTIONS),
                          "name": name}
            ready = melodies.build(cache / name, debs_cache, cache / "unpacked", seed=seed, workers=workers,
                                   progress=progress, force=force, **kwargs)
        results[name] = ready
        logger.info("%s: ready in %.0f s (%s)", name, time.perf_counter() - started, cache / name)
    return results


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--what", default="all", choices=[*SETS, *OPTIONAL_SETS, "all"],
                        help="which set to build (default all = recordings and melodies; chorales: the unseen check)")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"where the sets are written (default ${CACHE_ENV} or ~/.cache/mugle/realaudio)")
    parser.add_argument("--debs", type=Path, default=None, help="cache of downloaded .deb files (default <cache>/debs)")
    parser.add_argument("--workers", type=int, default=2, help="processes decoding or rendering (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--tunes", type=int, default=None,
                        help=f"melodies or chorales: number of tunes (default 300, chorales {CHORALE_TUNES})")
    parser.add_argument("--force", action="store_true", help="rebuild even when a matching READY exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_build(args: argparse.Namespace) -> int:
    cache = args.cache or default_cache()
    results = build_sets(args.what, cache, debs=args.debs, workers=args.workers, seed=args.seed, tunes=args.tunes,
                         progress=not args.quiet, force=args.force)
    for name, ready in results.items():
        counts = {k: ready.get(k) for k in ("songs", "queries", "tunes", "playlists") if k in ready}
        print(f"{name}: {cache / name} ready: {counts}")
    return 0
