"""Quick, in-process check of an audio embedding against the fixed 2-D FFT feature on any Melon-layout folder.

Trains the TCAE on every mel of the folder (as ``mugle train`` would), embeds the catalog and the
queries, and prints P@1 and MRR by cosine over the whole catalog for the TCAE and for the magnitude
of the 2-D FFT of the log-mel, with bootstrap intervals. It skips the service, so a run costs the
training and a few seconds more; the figures that count are the ones through the API.

Ground truth, read from ``--truth`` (JSON), either or both of:

- ``version_groups``: lists of song ids that are versions of one melody; each member with a mel asks
  for another member (leave one out, over the catalog);
- ``queries``: ``[{"mel": path (relative to the truth file's folder or absolute), "song_id": id}]``:
  an outside mel must find its song.

``--split a`` (or ``b``) keeps only the groups or queries of one half (by a seeded hash of the first id),
so choices can be made on one half and reported on the other; ``--split each`` scores both halves and
all from one training. With a fixed per-band part in the vector (``blend_dim > 0``) the learned part is
also scored alone. Example::

    PYTHONPATH=. python benchmarks/tcae_probe.py --data /tmp/demo --truth /tmp/demo/demo_truth.json \\
        --option steps=200
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mugle_nets.mels import FRAMES, fit_length, read_mel  # noqa: E402

logger = logging.getLogger(__name__)


def fft2_feature(mel: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Magnitude of the 2-D FFT of a (48, T) log-mel (dB) fitted to the dataset's clip length.

    With ``stats`` (per-band mean and deviation) the mel is standardised band by band first.
    """
    x = fit_length(np.asarray(mel, dtype=np.float32), FRAMES)
    if stats is not None:
        x = (x - stats[0][:, None]) / stats[1][:, None]
    return np.abs(np.fft.rfft2(x)).reshape(-1).astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ranks_for(sims: np.ndarray, targets: list[set[int]]) -> np.ndarray:
    """1-based rank of the first target column per row (sims: queries x catalog)."""
    out = []
    for row, wanted in zip(sims, targets, strict=True):
        order = np.argsort(-row, kind="stable")
        out.append(int(np.flatnonzero(np.isin(order, list(wanted)))[0]) + 1)
    return np.asarray(out)


def summary(ranks: np.ndarray, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    p1 = (ranks == 1).astype(float)
    rr = 1.0 / ranks
    boot = rng.integers(0, len(ranks), size=(1000, len(ranks)))
    return {
        "n": int(len(ranks)),
        "p@1": round(float(p1.mean()), 3),
        "p@1_ci": [round(float(v), 3) for v in np.percentile(p1[boot].mean(1), [2.5, 97.5])],
        "mrr": round(float(rr.mean()), 3),
        "p@10": round(float((ranks <= 10).mean()), 3),
    }


def paired_p1_gain(ranks: np.ndarray, baseline: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """P@1 of ``ranks`` minus P@1 of ``baseline`` on the same queries, with a paired 95 % bootstrap interval."""
    diff = (ranks == 1).astype(float) - (baseline == 1).astype(float)
    boot = np.random.default_rng(seed).integers(0, len(diff), size=(1000, len(diff)))
    return {"gain": round(float(diff.mean()), 3),
            "ci": [round(float(v), 3) for v in np.percentile(diff[boot].mean(1), [2.5, 97.5])]}


def evaluate_vectors(
    ids: np.ndarray, vecs: np.ndarray, groups: list[list[int]], query_vecs: np.ndarray | None,
    query_targets: list[int], ranks_out: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """P@1/MRR for version groups (leave one out) and for outside queries; ``ranks_out`` receives the ranks."""
    row = {int(s): r for r, s in enumerate(ids)}
    vecs = normalise(vecs)
    out: dict[str, Any] = {}
    if groups:
        qrows, targets = [], []
        for g in groups:
            for s in g:
                others = {row[o] for o in g if o != s and o in row}
                if s in row and others:
                    qrows.append(row[s])
                    targets.append(others)
        sims = vecs[qrows] @ vecs.T
        sims[np.arange(len(qrows)), qrows] = -np.inf
        ranks = ranks_for(sims, targets)
        out["groups"] = summary(ranks)
        if ranks_out is not None:
            ranks_out["groups"] = ranks
    if query_vecs is not None and len(query_targets):
        keep = [i for i, t in enumerate(query_targets) if t in row]
        sims = normalise(query_vecs[keep]) @ vecs.T
        ranks = ranks_for(sims, [{row[query_targets[i]]} for i in keep])
        out["queries"] = summary(ranks)
        if ranks_out is not None:
            ranks_out["queries"] = ranks
    return out


def in_half(first_id: int, half: str, seed: int = 12345) -> bool:
    if half == "all":
        return True
    h = (first_id * 2654435761 + seed) % 1000003
    return (h % 2 == 0) == (half == "a")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--option", action="append", default=[], help="TCAEOptions field=JSON value")
    parser.add_argument("--split", choices=["all", "a", "b", "each"], default="all",
                        help="half of the tunes/queries to score; 'each' scores a, b and all from one training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-train", action="store_true", help="baselines only")
    parser.add_argument("--save", type=Path, default=None, help="models folder to keep the trained TCAE")
    parser.add_argument("--out", type=Path, default=None, help="append the result as one JSON line here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    from mugle_nets.tcae import TCAEEmbedder, TCAEOptions
    from training.tcae import train_tcae

    torch.set_num_threads(args.threads)
    truth = json.loads(args.truth.read_text(encoding="utf-8"))
    raw_groups = list(truth.get("version_groups", []))
    raw_groups += [t["song_ids"] for t in truth.get("tunes", [])]  # the real-audio melodies set
    all_groups = [list(map(int, g)) for g in raw_groups if g]
    queries = list(truth.get("queries", []))
    for track in truth.get("tracks", []):  # the real-audio recordings set: queries listed per track
        queries += [{"mel": q["mel"], "song_id": track["song_id"]} for q in track.get("queries", [])]
    paths: dict[int, Path] = {}
    for p in sorted((args.data / "arena_mel").glob("*/*.npy")):
        paths[int(p.stem)] = p
    ids = np.array(sorted(paths), dtype=np.int64)
    mels = {}
    for i in ids:
        mel, _ = read_mel(paths[int(i)])
        if mel is not None:
            mels[int(i)] = mel
    ids = np.array(sorted(mels), dtype=np.int64)
    qmels, qtargets = [], []
    for q in queries:
        qp = Path(q["mel"])
        qp = qp if qp.is_absolute() else args.truth.parent / qp
        qmels.append(np.load(qp).astype(np.float32))
        qtargets.append(int(q["song_id"]))
    result: dict[str, Any] = {"data": str(args.data), "split": args.split, "songs": len(ids), "options": args.option}
    halves = ["a", "b", "all"] if args.split == "each" else [args.split]

    def score(name: str, cat_ids: np.ndarray, vecs: np.ndarray, qvecs: np.ndarray | None) -> None:
        """Score one embedding on each requested half; one half is stored flat, several by half."""
        out = {}
        for half in halves:
            groups = [g for g in all_groups if in_half(g[0], half)]
            keep = [i for i, t in enumerate(qtargets) if in_half(t, half)]
            out[half] = evaluate_vectors(cat_ids, vecs, groups, None if qvecs is None else qvecs[keep],
                                         [qtargets[i] for i in keep])
        result[name] = out[halves[0]] if len(halves) == 1 else out
        print(name, json.dumps(result[name]), flush=True)

    allmel = np.concatenate([mels[int(i)] for i in ids], axis=1)
    band = (allmel.mean(axis=1), allmel.std(axis=1) + 1e-6)
    del allmel
    for name, stats in (("fft2", None), ("fft2 band-std", band)):
        fft = np.stack([fft2_feature(mels[int(i)], stats) for i in ids])
        qfft = np.stack([fft2_feature(m, stats) for m in qmels]) if qmels else None
        score(name, ids, fft, qfft)

    if not args.no_train:
        overrides = {}
        for item in args.option:
            key, _, value = item.partition("=")
            overrides[key] = json.loads(value)
        options = TCAEOptions(**overrides)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            models = args.save if args.save is not None else Path(tmp)
            tids, tvecs, info = train_tcae({int(i): paths[int(i)] for i in ids}, options, seed=args.seed, device="cpu",
                                     models_dir=models)
            result["train_s"] = round(time.perf_counter() - started, 1)
            embedder = TCAEEmbedder.load(models)
            qvecs = embedder.embed(qmels) if qmels else None
            result["history"] = info.get("history", [])
            print("history", json.dumps([{k: round(v, 3) for k, v in h.items()} for h in result["history"]]))
            print("train", result["train_s"], "s")
            score("tcae", tids, tvecs, qvecs)
            if embedder.model.blend is not None:
                # The learned part alone: the same model without the fixed per-band feature.
                embedder.model.blend = None
                by_id = {int(i): mels[int(i)] for i in ids}
                score("tcae learned part", tids, embedder.embed([by_id[int(i)] for i in tids]),
                      embedder.embed(qmels) if qmels else None)
    if args.out is not None:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
