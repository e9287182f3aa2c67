"""Training-time cost of the co-occurrence lists (score_total's fourth source) at real size.

Reads a dataset in the Melon layout (by default it generates a metadata-only one with the real counts,
707,989 songs and 148,826 playlists, with the real mean playlist length of about 46 songs), prepares it
as training does, and times :func:`training.cooc.write_cooc`: the incidence matrix, the blockwise
``X^T X`` and the per-song top 64, written as ``cooc.*.npy``. Prints wall and CPU time, peak memory,
the co-occurrence non-zeros that were ranked, and the files' size.

    python benchmarks/bench_cooc.py --work /work/cache/ranking/bench-cooc
    python benchmarks/bench_cooc.py --data /path/to/melon --work /tmp/x

With ``--version DIR`` it instead measures what reading the lists costs the service: in-process
``Engine.recommend`` (score_total, k 10) for random catalog songs, with the version's co-occurrence lists
and with them switched off, in alternating rounds on the same songs.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.cooc import WIDTH, write_cooc  # noqa: E402
from training.melon import read_dataset  # noqa: E402
from training.preprocess import PrepOptions, prepare  # noqa: E402

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (default: generate one under --work)")
    parser.add_argument("--work", type=Path, default=Path("build/bench-cooc"))
    parser.add_argument("--songs", type=int, default=707_989)
    parser.add_argument("--playlists", type=int, default=148_826)
    parser.add_argument("--playlist-length", type=float, default=46.0, help="mean playlist length when generating")
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--version", type=Path, default=None,
                        help="a trained version folder: time the service's requests with and without the lists")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.version is not None:
        return serve_cost(args.version, args.requests)
    data = args.data
    if data is None:
        data = args.work / f"data-{args.songs}-{args.playlists}-{args.playlist_length:g}"
        if not (data / "song_meta.json").is_file():
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "mugle_cli", "demo-data", "--out", str(data), "--songs", str(args.songs),
                   "--playlists", str(args.playlists), "--playlist-length", str(args.playlist_length),
                   "--no-mels", "--quiet", "--overwrite"]
            subprocess.run(cmd, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
            logger.info("generated %s in %.0f s", data, time.perf_counter() - t0)
    t0 = time.perf_counter()
    prepared = prepare(read_dataset(data, progress=False), PrepOptions())
    prep_s = time.perf_counter() - t0
    playlists = prepared.train_playlists
    entries = sum(len(p) for p in playlists)
    del prepared
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        cpu0, t0 = time.process_time(), time.perf_counter()
        record = write_cooc(Path(tmp), playlists, k=args.width, alpha=args.alpha, progress=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
    out = {
        "data": str(data), "training_playlists": len(playlists), "entries": entries,
        "mean_length": round(entries / max(1, len(playlists)), 1), "songs_with_lists": record["count"],
        "cooc_nnz": record["cooc_nnz"], "blocks": record["blocks"], "width": args.width,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "read_prepare_s": round(prep_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
        "rss_before_mb": round(rss_before, 0), "files_mb": round(size / 2**20, 1),
    }
    print(json.dumps(out, indent=1))
    return 0


def serve_cost(version: Path, requests: int) -> int:
    """Per-request time of ``Engine.recommend`` with and without the co-occurrence source."""
    import numpy as np

    from app.engine import Engine

    engine = Engine.load(version)
    lists = engine.cooc
    if lists is None:
        raise SystemExit(f"{version}: this version has no co-occurrence lists")
    rng = np.random.default_rng(0)
    songs = engine.catalog.song_ids[rng.integers(0, len(engine.catalog), requests)].tolist()
    for s in songs[:2000]:  # warm the song cache and the page cache alike for both variants
        engine.recommend(s)
    # CPU time of this process, not wall time: on a shared machine wall time mostly measures the neighbours.
    times: dict[str, list[float]] = {"with cooc": [], "without": []}
    per_round = requests // 10
    for _round in range(10):
        for label, source in (("with cooc", lists), ("without", None)):
            engine.cooc = source
            t0 = time.process_time()
            for s in songs[:per_round]:
                engine.recommend(s)
            times[label].append((time.process_time() - t0) / per_round * 1e6)
    engine.cooc = lists
    rows = [engine.resolve(s) for s in songs[:per_round]]
    t0 = time.process_time()
    for r in rows:
        lists.candidates([r], {r}, 50)
    read_us = (time.process_time() - t0) / len(rows) * 1e6
    out: dict[str, object] = {k: {"median_us": round(float(np.median(v)), 1), "rounds_us": [round(x, 1) for x in v]}
                              for k, v in times.items()}
    out["added_us"] = round(float(np.median(times["with cooc"]) - np.median(times["without"])), 1)
    out["cooc_list_read_and_clean_us"] = round(read_us, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
