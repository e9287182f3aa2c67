"""P@1 of a trained version's TCAE and of the fixed 2-D FFT on each half of a real-audio set, in-process,
and the TCAE's gain over the FFT with a paired bootstrap interval.

The halves are those of ``benchmarks/tcae_probe.py --split`` (a seeded hash of the first song id of a
tune, or of a query's track), so choices made on half ``a`` can be reported on half ``b``. The TCAE is
the one ``POST /recommend/audio`` loads (``<version>/models``); on all queries the figures equal the
API's. Example::

    PYTHONPATH=. python benchmarks/tcae_split_eval.py /work/cache/realaudio/recordings /work/cache/tcae/art-rec2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tcae_probe import evaluate_vectors, fft2_feature, in_half, paired_p1_gain  # noqa: E402
from mugle_nets.mels import read_mel  # noqa: E402


def main(argv: list[str]) -> int:
    import torch

    from mugle_nets.tcae import TCAEEmbedder

    torch.set_num_threads(1)
    data, artifacts = Path(argv[0]), Path(argv[1])
    truth = json.loads((data / "realaudio_truth.json").read_text(encoding="utf-8"))
    version = artifacts / (artifacts / "current").read_text(encoding="utf-8").strip()
    embedder = TCAEEmbedder.load(version / "models")
    paths = {int(p.stem): p for p in sorted((data / "arena_mel").glob("*/*.npy"))}
    ids = np.array(sorted(paths))
    mels = [read_mel(paths[int(i)])[0] for i in ids]
    vecs = embedder.embed(mels)
    fft = np.stack([fft2_feature(m) for m in mels])
    for half in ("a", "b", "all"):
        groups = [t["song_ids"] for t in truth.get("tunes", []) if in_half(int(t["song_ids"][0]), half)]
        queries = [(data / q["mel"], t["song_id"]) for t in truth.get("tracks", []) for q in t["queries"]
                   if in_half(int(t["song_id"]), half)]
        qmels = [np.load(p).astype(np.float32) for p, _ in queries]
        targets = [s for _, s in queries]
        ranks: dict[str, dict[str, np.ndarray]] = {"tcae": {}, "fft2": {}}
        out = {
            "tcae": evaluate_vectors(ids, vecs, groups, embedder.embed(qmels) if qmels else None, targets,
                                     ranks["tcae"]),
            "fft2": evaluate_vectors(ids, fft, groups, np.stack([fft2_feature(m) for m in qmels]) if qmels else None,
                                     targets, ranks["fft2"]),
        }
        kind = "queries" if qmels else "groups"
        out["tcae - fft2 P@1 (paired)"] = paired_p1_gain(ranks["tcae"][kind], ranks["fft2"][kind])
        print(half, json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
