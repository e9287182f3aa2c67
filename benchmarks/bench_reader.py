"""Reader benchmark at real size: 707,989 songs and 148,826 playlists (metadata only).

Usage::

    .venv/bin/python benchmarks/bench_reader.py [--songs 707989 --playlists 148826 --data build/bench-real]

The dataset is generated once by ``mugle demo-data --no-mels`` (reused when present); the read and the
preprocessing then run in a fresh child process so that its peak RSS is the reader's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from training.melon import read_dataset
from training.preprocess import prepare
root = Path(sys.argv[1])
t0 = time.perf_counter()
ds = read_dataset(root, progress=False)
t1 = time.perf_counter()
prep = prepare(ds)
t2 = time.perf_counter()
print(json.dumps({
    "songs": len(ds.songs), "playlists": len(ds.playlists), "warnings": ds.report.warnings,
    "read_s": round(t1 - t0, 2), "prepare_s": round(t2 - t1, 2),
    "servable": len(prep.songs), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--songs", type=int, default=707_989)
    parser.add_argument("--playlists", type=int, default=148_826)
    parser.add_argument("--data", default="build/bench-real")
    args = parser.parse_args()
    root = Path(args.data)
    if not (root / "song_meta.json").is_file():
        from training.demo import generate

        t0 = time.perf_counter()
        generate(root, songs=args.songs, playlists=args.playlists, seed=0, mels=False, progress=True)
        print(f"generated {root} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    sizes = {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(root.glob("*.json"))}
    out = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_mb"] = sizes
    result["parent_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
