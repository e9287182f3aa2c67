"""Duplicate merging on the default demo: the same-recording threshold and what the rule merges.

Usage::

    .venv/bin/python benchmarks/bench_duplicates.py [--data build/demo-default]

Generates the default demo catalog (``mugle demo-data``: 3,000 songs, 2,000 playlists, seed 0) when the
folder has none, then

1. scores pairs of mels with :func:`training.same_recording.similarity`: the planted re-releases (by kind:
   identical, level-shifted, offset), the same re-release mels shifted by half a frame (another decoder's
   framing), the planted versions (another recording of one melody), the planted same-title pieces, and
   random pairs of different songs; prints min / 1st percentile / median / max per kind;
2. with ``--real-wavs DIR`` (a folder of ``.wav`` files of real music, at least 25 s each), scores real
   recordings the same way: each excerpt against itself started an arbitrary number of samples later (up
   to 1 s, so mostly between two frames), up to 4 dB louder or quieter, with faint noise (a re-release),
   and against the other files (different recordings);
3. runs the preprocessing and counts how many planted re-releases, versions and same-title pieces were
   merged (the issue's done-when figures), with the summary's merges and refusals by reason.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _mel(root: Path, sid: int) -> np.ndarray:
    return np.load(root / "arena_mel" / str(sid // 1000) / f"{sid}.npy", allow_pickle=False).astype(np.float32)


def _half_frame(mel: np.ndarray) -> np.ndarray:
    power = 10 ** (mel / 10)
    return (10 * np.log10((power + np.roll(power, -1, axis=1)) / 2)).astype(np.float32)


def _real_scores(folder: Path, limit: int) -> dict[str, list[float]]:
    import soundfile as sf

    from mugle_core.melspec import segment_to_mel
    from training.same_recording import Fingerprint, similarity

    rng = np.random.default_rng(0)
    plain, moved = [], []
    for path in sorted(folder.glob("*.wav"), key=lambda p: (len(p.stem), p.stem))[:limit]:
        x, sr = sf.read(path, dtype="float32")
        seg = int(25 * sr)
        later = int(rng.integers(1, sr))
        if len(x) < seg + later:
            continue
        gain = 10 ** (rng.uniform(-4, 4) / 20)
        y = x * gain + rng.normal(0, 1e-3, x.shape).astype(np.float32)
        plain.append(Fingerprint(segment_to_mel(x, sr, 0, seg)))
        moved.append(Fingerprint(segment_to_mel(y, sr, later, later + seg)))
    n = len(plain)
    same = [similarity(plain[i], moved[i])[0] for i in range(n)]
    other = [similarity(plain[i], moved[j])[0] for i in range(n) for j in range(n) if i != j]
    return {f"real music: one recording, later start and other level ({n} files)": same,
            "real music: different recordings": other}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="build/demo-default")
    parser.add_argument("--random-pairs", type=int, default=2000)
    parser.add_argument("--real-wavs", default=None, help="folder of real-music .wav files (optional)")
    parser.add_argument("--real-files", type=int, default=80)
    args = parser.parse_args()
    root = Path(args.data)
    from training import demo
    from training.melon import read_dataset
    from training.preprocess import prepare
    from training.same_recording import SAME_RECORDING, Fingerprint, similarity

    if not (root / "song_meta.json").is_file():
        demo.generate(root, progress=True)
    truth = json.loads((root / demo.TRUTH_FILE).read_text(encoding="utf-8"))
    missing = set(truth["missing_mels"])
    fps: dict[int, Fingerprint] = {}

    def fp(sid: int) -> Fingerprint:
        if sid not in fps:
            fps[sid] = Fingerprint(_mel(root, sid))
        return fps[sid]

    pairs: dict[str, list[tuple[int, int]]] = {}
    for r in truth["reissues"]:
        pairs.setdefault(f"re-release, {r['audio']}", []).append((r["source"], r["reissue"]))
    pairs["version (same melody)"] = [(g[0], s) for g in truth["version_groups"] for s in g[1:]]
    pairs["same-title piece"] = [(g[0], s) for g in truth["same_title_groups"] for s in g[1:]]
    ids = np.array(sorted(set(range(len(truth["song_theme"]))) - missing))
    rng = np.random.default_rng(0)
    rand = rng.choice(ids, size=(args.random_pairs, 2))
    pairs["different songs (random)"] = [(int(a), int(b)) for a, b in rand if a != b]
    scores: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    n = 0
    for kind, plist in pairs.items():
        for a, b in plist:
            if a in missing or b in missing:
                continue
            scores.setdefault(kind, []).append(similarity(fp(a), fp(b))[0])
            n += 1
    for r in truth["reissues"]:
        a, b = r["source"], r["reissue"]
        if a not in missing and b not in missing:
            scores.setdefault("re-release, half a frame later", []).append(
                similarity(fp(a), Fingerprint(_half_frame(_mel(root, b))))[0])
    elapsed = time.perf_counter() - t0
    if args.real_wavs:
        scores.update(_real_scores(Path(args.real_wavs), args.real_files))
    print(f"threshold SAME_RECORDING = {SAME_RECORDING}; {n} pairs scored in {elapsed:.1f} s "
          f"(with {len(fps)} fingerprints)")
    print(f"| pair | n | min | 1st pct | median | max | >= {SAME_RECORDING} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, v in scores.items():
        arr = np.array(v)
        print(f"| {kind} | {len(arr)} | {arr.min():.3f} | {np.percentile(arr, 1):.3f} | {np.median(arr):.3f} | "
              f"{arr.max():.3f} | {(arr >= SAME_RECORDING).mean():.1%} |")

    t0 = time.perf_counter()
    prep = prepare(read_dataset(root, progress=False))
    prep_s = time.perf_counter() - t0
    aliases = prep.aliases

    def merged(plist: list[tuple[int, int]]) -> tuple[int, int]:
        both = [(a, b) for a, b in plist if a in aliases and b in aliases]
        return sum(aliases[a] == aliases[b] for a, b in both), len(both)

    reissues = [(r["source"], r["reissue"]) for r in truth["reissues"]]
    print(f"\nread + preprocess {prep_s:.1f} s")
    for label, plist in (("planted re-releases merged", reissues),
                         ("planted version pairs merged", pairs["version (same melody)"]),
                         ("planted same-title pairs merged", pairs["same-title piece"])):
        hit, total = merged(plist)
        print(f"{label}: {hit} of {total} ({hit / max(total, 1):.1%})")
    print(prep.summary_text())
    for reason, examples in prep.duplicates.examples.items():
        print(f"{reason}: e.g. {examples[0]}")


if __name__ == "__main__":
    main()
