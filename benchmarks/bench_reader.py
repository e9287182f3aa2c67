"""Reader and preprocessing benchmark at real size: 707,989 songs and 148,826 playlists.

Usage::

    .venv/bin/python benchmarks/bench_reader.py [--songs 707989 --playlists 148826 --data build/bench-real]
        [--no-candidate-mels] [--compare-with PATH]

The metadata is generated once by ``mugle demo-data --no-mels`` (reused when present). It plants, as the
demo does, re-releases of one recording (3 % of the songs; half under a decorated title), versions with
markers (10 %) and pieces sharing a generic title within one artist (1 %). Unless ``--no-candidate-mels``,
the script then writes a mel for every song whose (title key, artist set) another song shares, the only
songs whose mels the duplicate rule reads: a re-release gets its source's mel, shifted and re-levelled as
the demo does; every other candidate an independent random mel; 2 % of them (the demo's missing-mel rate)
get none. Songs with no key partner need no mel for the benchmark: preprocessing never opens theirs. At
real size that is about 49,000 mels, 8.5 GB on disk, written once (about 6 minutes).

The read and the preprocessing then run in a fresh child process so that its peak RSS is their own; it
reports wall and CPU seconds (all threads) per step.
``--compare-with PATH`` runs the same child once more with ``PATH`` first on ``sys.path`` (e.g. a
checkout of the code before a change) for a before/after on the same data and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from training.melon import read_dataset
from training.preprocess import prepare
root = Path(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
ds = read_dataset(root, progress=False)
t1, c1 = time.perf_counter(), time.process_time()
prep = prepare(ds)
t2, c2 = time.perf_counter(), time.process_time()
out = {
    "songs": len(ds.songs), "playlists": len(ds.playlists), "warnings": ds.report.warnings,
    "read_s": round(t1 - t0, 2), "prepare_s": round(t2 - t1, 2),
    "read_cpu_s": round(c1 - c0, 2), "prepare_cpu_s": round(c2 - c1, 2),
    "servable": len(prep.songs), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
}
report = getattr(prep, "duplicates", None)
if report is not None:
    out["duplicates"] = report.as_record()
    out["duplicates"].pop("examples", None)
print(json.dumps(out, ensure_ascii=False))
"""

MELS_READY = "candidate_mels.json"
MISSING_MEL_RATE = 0.02  # the demo's default: candidates without a mel file


def write_candidate_mels(root: Path, seed: int = 0) -> dict[str, int]:
    """Write mels for every song that shares its (title key, artists) with another; see the module doc."""
    from mugle_core.textnorm import normalize_artists, title_key
    from training.demo import TRUTH_FILE, reissue_mel

    songs = json.loads((root / "song_meta.json").read_text(encoding="utf-8"))
    truth = json.loads((root / TRUTH_FILE).read_text(encoding="utf-8"))
    keys: dict[tuple, list[int]] = defaultdict(list)
    for s in songs:
        keys[(title_key(s["song_name"]), normalize_artists(s["artist_name_basket"]))].append(s["id"])
    candidates = sorted(i for ids in keys.values() if len(ids) > 1 for i in ids)
    reissue = {r["reissue"]: (r["source"], r["audio"]) for r in truth.get("reissues", [])}
    rng = np.random.default_rng([seed, 7])
    missing = set(rng.choice(candidates, size=int(len(candidates) * MISSING_MEL_RATE), replace=False).tolist())
    def mel_of(sid: int) -> np.ndarray:
        # A random spectrogram of its own per song (seeded by id, so a re-release can rebuild its
        # source's): a band profile, a slowly moving loudness, frame-level texture.
        r = np.random.default_rng([seed, sid, 3])
        profile = np.cumsum(r.normal(0, 2, (48, 1)), axis=0) - 40
        loud = np.repeat(r.normal(0, 3, (1, 1876 // 16 + 1)), 16, axis=1)[:, :1876]
        return (profile + loud + r.normal(0, 4, (48, 1876))).clip(-80, 12).astype(np.float32)

    written = 0
    start = time.perf_counter()
    for sid in candidates:
        if sid in missing:
            continue
        if sid in reissue:
            src, kind = reissue[sid]
            mel = reissue_mel(mel_of(src), seed, sid, kind)
        else:
            mel = mel_of(sid)
        folder = root / "arena_mel" / str(sid // 1000)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{sid}.npy", mel.astype(np.float16), allow_pickle=False)
        written += 1
    info = {"candidates": len(candidates), "mels_written": written, "missing": len(missing),
            "seconds": round(time.perf_counter() - start, 1)}
    (root / MELS_READY).write_text(json.dumps(info), encoding="utf-8")
    return info


def run_child(root: Path, path_first: str | None) -> dict:
    env = dict(os.environ)
    if path_first:
        env["PYTHONPATH"] = path_first
    # `python -c` puts the working directory first on sys.path: run where the code under test is.
    out = subprocess.run([sys.executable, "-c", CHILD, str(root.resolve())], capture_output=True, text=True,
                         check=True, env=env, cwd=path_first or None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=707_989)
    parser.add_argument("--playlists", type=int, default=148_826)
    parser.add_argument("--data", default="build/bench-real")
    parser.add_argument("--no-candidate-mels", action="store_true", help="metadata only: no audio check runs")
    parser.add_argument("--compare-with", default=None, help="a code checkout to time on the same data too")
    args = parser.parse_args()
    root = Path(args.data)
    if not (root / "song_meta.json").is_file():
        from training.demo import generate

        t0 = time.perf_counter()
        generate(root, songs=args.songs, playlists=args.playlists, seed=0, mels=False, progress=True)
        print(f"generated {root} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    mels: dict[str, int] | None = None
    if not args.no_candidate_mels:
        ready = root / MELS_READY
        mels = json.loads(ready.read_text()) if ready.is_file() else write_candidate_mels(root)
        print(f"candidate mels: {mels}", file=sys.stderr)
    sizes = {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(root.glob("*.json"))}
    result = run_child(root, os.environ.get("PYTHONPATH"))
    result["file_mb"] = sizes
    result["candidate_mels"] = mels
    if args.compare_with:
        result["compare_with"] = {"path": args.compare_with, **run_child(root, args.compare_with)}
    result["parent_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
