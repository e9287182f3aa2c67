"""Time per training stage and peak memory of ``mugle train``.

Two settings:

- ``--demo`` (default): the default demo catalog (3,000 songs, 2,000 playlists, mels), generated once
  into ``--work``; the target is under 3 minutes on a 2-core CPU.
- ``--real-size``: a metadata set of the real dataset's size (707,989 songs, 148,826 playlists) from
  the demo generator without mels, plus mels for a subset (``--mel-subset``, linked from a small demo
  catalog), so Music2Vec, the indexes and the catalog run at full size while TCAE stays affordable.

Each run trains in a fresh process (so ``ru_maxrss`` is the run's own peak) and prints one Markdown
table row per stage, plus Music2Vec's words/s. Example::

    .venv/bin/python benchmarks/bench_train.py --work /tmp/bench-train
    .venv/bin/python benchmarks/bench_train.py --work /tmp/bench-train --real-size --mel-subset 3000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
REAL_SONGS = 707_989
REAL_PLAYLISTS = 148_826

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from training.pipeline import TrainOptions, train
from mugle_core.artifacts import read_manifest
from mugle_nets.cel import CELOptions
from training.preprocess import PrepOptions
from mugle_nets.tcae import TCAEOptions
raw = json.loads(sys.argv[3])
for key, cls in (("tcae", TCAEOptions), ("cel", CELOptions), ("prep", PrepOptions)):
    if key in raw:
        raw[key] = cls(**raw[key])
opts = TrainOptions(**raw)
started = time.perf_counter()
version = train(Path(sys.argv[1]), Path(sys.argv[2]), opts)
wall = time.perf_counter() - started
m = read_manifest(version)
print("RESULT " + json.dumps({
    "wall_s": round(wall, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "timings": m.timings,
    "cpu_s": m.counts.get("cpu_s", {}),
    "models": {k: {"count": e.count, "index": e.index_type, "recall_at_10": e.recall_at_10,
                   "index_s": e.timings.get("index_s")} for k, e in m.models.items()},
    "songs": m.songs,
    "words_per_s": m.models["music2vec"].params.get("words_per_s"),
    "w2v_path": m.models["music2vec"].params.get("path"),
    "w2v_tokens": m.models["music2vec"].params.get("tokens"),
}))
"""


def ensure_demo(path: Path, songs: int, playlists: int, mels: bool, seed: int = 0) -> float:
    """Generate a demo catalog unless it is already there; returns the seconds spent."""
    if (path / "song_meta.json").is_file():
        return 0.0
    from training.demo import generate

    started = time.perf_counter()
    generate(path, songs=songs, playlists=playlists, seed=seed, mels=mels, progress=False)
    return time.perf_counter() - started


def link_mels(source: Path, target: Path, count: int) -> int:
    """Symlink the first ``count`` mel files of ``source`` into ``target`` under the same song ids."""
    linked = 0
    for folder in sorted((source / "arena_mel").iterdir()):
        for mel in sorted(folder.iterdir(), key=lambda p: int(p.stem)):
            if linked >= count:
                return linked
            dest = target / "arena_mel" / folder.name / mel.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.symlink(mel.resolve(), dest)
            linked += 1
    return linked


def run_once(data: Path, out: Path, options: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data), str(out), json.dumps(options)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"training failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def w2v_paths(data: Path, epochs: int, seed: int) -> str:
    """Music2Vec alone on ``data``'s training playlists: words/s of the in-memory and corpus_file paths."""
    from training.melon import read_dataset
    from training.music2vec import Music2VecOptions, train_music2vec
    from training.preprocess import PrepOptions, prepare

    prepared = prepare(read_dataset(data, splits=("train",), progress=False), PrepOptions())
    rows = ["| path | workers | tokens | epochs | train s | words/s |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for fast in (False, True):
        opts = Music2VecOptions(epochs=epochs, fast_path=fast)
        res = train_music2vec(prepared.train_playlists, prepared.w2v_songs, opts, seed)
        st = res.stats
        rows.append(f"| {st['path']} | {st['workers']} | {st['tokens']:,} | {epochs} | {st['train_s']:.1f} "
                    f"| {st['words_per_s']:,.0f} |")
    return "\n".join(rows)


def table(title: str, result: dict) -> str:
    cpu = result.get("cpu_s", {})
    lines = [f"### {title}", "", "| stage | wall s | CPU s (all threads) |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v:.1f} | {cpu[k]:.1f} |" if k in cpu else f"| {k} | {v:.1f} | |"
              for k, v in result["timings"].items()]
    lines += [
        "",
        f"peak memory (ru_maxrss): {result['peak_rss_mb']:.0f} MB; servable songs {result['songs']:,}; "
        f"Music2Vec {result['w2v_tokens']:,} tokens at {result['words_per_s']:,.0f} words/s ({result['w2v_path']})",
        "",
        "| model | vectors | index | recall@10 | index build s |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m['count']:,} | {m['index']} | {m['recall_at_10']} | {m['index_s']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mugle-bench-train"), help="datasets and artifacts")
    parser.add_argument("--real-size", action="store_true", help="the real dataset's size (metadata only)")
    parser.add_argument("--mel-subset", type=int, default=3000, help="songs given mels in --real-size mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--w2v-only", type=int, default=0, metavar="EPOCHS",
                        help="only compare Music2Vec's two training paths for this many epochs")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                        help="TrainOptions field to override, e.g. w2v_epochs=5 or tcae='{\"steps\": 50}' "
                        "(repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    options: dict = {"seed": args.seed, "progress": False}
    for item in args.option:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)

    demo = args.work / "demo"
    gen_s = ensure_demo(demo, 3000, 2000, mels=True, seed=args.seed)
    if args.real_size:
        data = args.work / "real-size"
        gen_s += ensure_demo(data, REAL_SONGS, REAL_PLAYLISTS, mels=False, seed=args.seed)
        linked = link_mels(demo, data, args.mel_subset)
        title = f"real-size metadata ({REAL_SONGS:,} songs, {REAL_PLAYLISTS:,} playlists, {linked:,} mels)"
    else:
        data = demo
        title = "default demo (3,000 songs, 2,000 playlists, mels)"
    if gen_s:
        logger.info("generated datasets in %.1fs", gen_s)
    if args.w2v_only:
        print(f"### Music2Vec training paths, {title}\n")
        print(w2v_paths(data, args.w2v_only, args.seed))
        return 0
    result = run_once(data, args.work / "artifacts", options)
    print(table(title, result))
    print()
    print("```json\n" + json.dumps(result, indent=1) + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
