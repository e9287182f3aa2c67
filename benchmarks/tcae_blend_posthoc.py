"""What a fixed per-band part would add to a trained TCAE, without retraining (issue 13's notes).

Embeds a real-audio set's catalog and queries with a trained version's TCAE (its learned part only),
computes a fixed feature of the same standardised clips (``--feature``: the per-band modulation
spectrum of :func:`mugle_nets.tcae.modulation_spectrum`, each band's mean and deviation, the mean and
deviation of each channel of the trained encoder, or the covariance between bands), reduces it in one
of three ways fitted on the catalog (standardised only, a random projection, a whitening PCA), and
scores the concatenation ``[sqrt(1 - w) * learned, sqrt(w) * fixed]`` per half (the halves of
``benchmarks/tcae_probe.py``) by cosine over the catalog. The learned part keeps its full size here,
so these figures are an upper bound for a vector of the same total size. Example::

    PYTHONPATH=. python benchmarks/tcae_blend_posthoc.py /work/cache/realaudio/recordings \\
        /work/cache/tcae/art-rec2 --reduce whiten:64 --weight 0.2 --weight 0.3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tcae_probe import evaluate_vectors, in_half, normalise  # noqa: E402
from mugle_nets.mels import FRAMES, fit_length, read_mel  # noqa: E402


def reducer(kind: str, catalog: np.ndarray, seed: int = 0) -> np.ndarray:
    """A (features, d) map fitted on standardised catalog features: ``full``, ``random:d`` or ``whiten:d``."""
    name, _, size = kind.partition(":")
    if name == "full":
        return np.eye(catalog.shape[1], dtype=np.float32)
    d = int(size)
    if name == "random":
        return np.random.default_rng(seed).normal(size=(catalog.shape[1], d)).astype(np.float32) / np.sqrt(d)
    if name == "whiten":
        _, sing, vt = np.linalg.svd(catalog - catalog.mean(0), full_matrices=False)
        return (vt[:d] / (sing[:d, None] / np.sqrt(len(catalog) - 1))).T.astype(np.float32)
    raise SystemExit(f"--reduce: expected full, random:D or whiten:D, got {kind!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a real-audio set folder (with realaudio_truth.json)")
    parser.add_argument("artifacts", type=Path, help="artifacts folder of a version trained on it")
    parser.add_argument("--feature", choices=["modulation", "meanstd", "encoder", "covariance"], default="modulation")
    parser.add_argument("--reduce", action="append", default=[], help="full, random:D or whiten:D (repeatable)")
    parser.add_argument("--weight", action="append", type=float, default=[], help="share w of the fixed part")
    args = parser.parse_args(argv)

    import torch

    from mugle_nets.tcae import TCAEEmbedder, modulation_spectrum

    torch.set_num_threads(1)
    truth = json.loads((args.data / "realaudio_truth.json").read_text(encoding="utf-8"))
    version = args.artifacts / (args.artifacts / "current").read_text(encoding="utf-8").strip()
    embedder = TCAEEmbedder.load(version / "models")
    embedder.model.blend = None  # the learned part alone
    paths = {int(p.stem): p for p in sorted((args.data / "arena_mel").glob("*/*.npy"))}
    ids = np.array(sorted(paths))
    mels = [read_mel(paths[int(i)])[0] for i in ids]
    queries = [(args.data / q["mel"], t["song_id"]) for t in truth.get("tracks", []) for q in t["queries"]]
    qmels = [np.load(p).astype(np.float32) for p, _ in queries]
    targets = [int(s) for _, s in queries]

    @torch.no_grad()
    def fixed(clips: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(
            np.stack([embedder.stats.normalise(fit_length(m.astype(np.float32), FRAMES)) for m in clips]))
        if args.feature == "modulation":
            return modulation_spectrum(x).numpy()
        if args.feature == "meanstd":
            return torch.cat([x.mean(2), x.std(2)], dim=1).numpy()
        if args.feature == "encoder":
            h = torch.cat([embedder.model.features(x[j : j + 64]) for j in range(0, len(x), 64)])
            return torch.cat([h.mean(2), h.std(2)], dim=1).numpy()
        xc = x - x.mean(2, keepdim=True)
        cov = torch.einsum("bit,bjt->bij", xc, xc) / x.shape[2]
        upper = torch.triu_indices(x.shape[1], x.shape[1])
        return cov[:, upper[0], upper[1]].numpy()

    learned = (embedder.embed(mels), embedder.embed(qmels) if qmels else None)
    cat_fixed = fixed(mels)
    q_fixed = fixed(qmels) if qmels else None
    mean, std = cat_fixed.mean(0), cat_fixed.std(0) + 1e-6

    def halves(cat: np.ndarray, qry: np.ndarray | None) -> list[float]:
        out = []
        for half in ("a", "b", "all"):
            groups = [t["song_ids"] for t in truth.get("tunes", []) if in_half(int(t["song_ids"][0]), half)]
            keep = [i for i, s in enumerate(targets) if in_half(s, half)]
            r = evaluate_vectors(ids, cat, groups, None if qry is None else qry[keep], [targets[i] for i in keep])
            out.append((r.get("queries") or r["groups"])["p@1"])
        return out

    print("learned part alone (a, b, all):", halves(*learned))
    for kind in args.reduce:
        m = reducer(kind, (cat_fixed - mean) / std)
        cat = normalise(((cat_fixed - mean) / std) @ m)
        qry = None if q_fixed is None else normalise(((q_fixed - mean) / std) @ m)
        print(f"fixed {kind} alone:", halves(cat, qry))
        for w in args.weight:
            both = np.concatenate([np.sqrt(1 - w) * learned[0], np.sqrt(w) * cat], axis=1)
            qboth = None if qry is None else np.concatenate([np.sqrt(1 - w) * learned[1], np.sqrt(w) * qry], axis=1)
            print(f"learned + fixed {kind}, w={w}:", halves(both, qboth), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
