"""Training of the CEL fusion network (:mod:`mugle_nets.cel` holds the network, its options and the embedder).

Training uses CosineEmbeddingLoss towards both inputs, with negatives from other songs, and modality
dropout so that a song with only one input still gets a joint vector.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mugle_nets.cel import CEL, CELEmbedder, CELOptions, normalise_rows
from mugle_nets.device import resolve_device
from training.tcae import warmup_cosine

logger = logging.getLogger(__name__)

# Details of the latest :func:`train_cel` run, for the manifest.
LAST_INFO: dict[str, Any] = {}


def _check_pair(name: str, ids: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(ids):
        raise ValueError(f"train_cel: {name}_vecs must be (len({name}_ids), dim), got {vecs.shape} for {len(ids)} ids")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"train_cel: {name}_ids contains repeated song ids")
    if not np.isfinite(vecs).all():
        raise ValueError(f"train_cel: {name}_vecs contains NaN or infinite values")
    return ids, normalise_rows(vecs)


def _align(
    w2v_ids: np.ndarray, w2v_vecs: np.ndarray, tcae_ids: np.ndarray, tcae_vecs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows over the union of ids: (ids, w2v, tcae, has_w2v, has_tcae), absent rows zero."""
    ids = np.union1d(w2v_ids, tcae_ids).astype(np.int64)
    w = np.zeros((len(ids), w2v_vecs.shape[1]), dtype=np.float32)
    t = np.zeros((len(ids), tcae_vecs.shape[1]), dtype=np.float32)
    w[np.searchsorted(ids, w2v_ids)] = w2v_vecs
    t[np.searchsorted(ids, tcae_ids)] = tcae_vecs
    return ids, w, t, np.isin(ids, w2v_ids), np.isin(ids, tcae_ids)


def _cosine_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, y: float, margin: float
) -> torch.Tensor:
    """CosineEmbeddingLoss over the masked rows (zero when none)."""
    if not bool(mask.any()):
        return pred.sum() * 0.0
    labels = torch.full((int(mask.sum()),), y, device=pred.device)
    return F.cosine_embedding_loss(pred[mask], target[mask], labels, margin=margin)


def _loss(
    model: CEL,
    w: torch.Tensor,
    t: torch.Tensor,
    hw: torch.Tensor,
    ht: torch.Tensor,
    options: CELOptions,
    generator: torch.Generator | None,
    dropout: bool,
) -> torch.Tensor:
    in_w, in_t = hw, ht
    if dropout and options.modality_dropout > 0:
        both = hw & ht
        drop = (torch.rand(len(w), generator=generator) < options.modality_dropout) & both
        which = torch.rand(len(w), generator=generator) < 0.5
        in_w = hw & ~(drop & which)
        in_t = ht & ~(drop & ~which)
    pred = model(w, t, in_w, in_t)
    loss = _cosine_loss(pred, w, hw, 1.0, 0.0) + _cosine_loss(pred, t, ht, 1.0, 0.0)
    n = len(w)
    if n > 1:
        for _ in range(options.negatives):
            # A random non-zero rotation of the batch pairs every song with another song's targets.
            offset = int(torch.randint(1, n, (1,), generator=generator)) if generator is not None else 1
            perm = torch.roll(torch.arange(n), offset)
            neg = _cosine_loss(pred, w[perm], hw[perm], -1.0, options.margin)
            neg = neg + _cosine_loss(pred, t[perm], ht[perm], -1.0, options.margin)
            loss = loss + options.negative_weight * neg / options.negatives
    return loss


def train_cel(
    w2v_ids: np.ndarray,
    w2v_vecs: np.ndarray,
    tcae_ids: np.ndarray,
    tcae_vecs: np.ndarray,
    options: CELOptions | None = None,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    models_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train the fusion network and give a joint vector to every song with at least one input.

    Parameters
    ----------
    w2v_ids, w2v_vecs : Music2Vec song ids (n1,) and vectors (n1, d1).
    tcae_ids, tcae_vecs : TCAE song ids (n2,) and vectors (n2, d2).
    options : see :class:`CELOptions`.
    seed : deterministic on the CPU for a given seed.
    device : ``auto``, ``cpu`` or ``cuda``.
    models_dir : where ``cel.pt`` is written (nothing saved when None).

    Returns
    -------
    ids : int64, ascending union of both id sets.
    vectors : float32 (n, dim), L2-normalised.
    """
    options = options or CELOptions()
    w2v_ids, w2v_vecs = _check_pair("w2v", w2v_ids, w2v_vecs)
    tcae_ids, tcae_vecs = _check_pair("tcae", tcae_ids, tcae_vecs)
    if len(w2v_ids) == 0 and len(tcae_ids) == 0:
        raise ValueError("train_cel: both inputs are empty")
    dims = {"w2v": w2v_vecs.shape[1], "tcae": tcae_vecs.shape[1]}
    for name, d in dims.items():
        if d < 1:
            raise ValueError(f"train_cel: {name}_vecs has no columns")
    started = time.perf_counter()
    dev = resolve_device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    ids, w, t, hw, ht = _align(w2v_ids, w2v_vecs, tcae_ids, tcae_vecs)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_val = int(round(len(ids) * options.val_fraction)) if len(ids) >= 20 else 0
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])

    W, Tm = torch.from_numpy(w), torch.from_numpy(t)
    HW, HT = torch.from_numpy(hw), torch.from_numpy(ht)
    model = CEL(dims["w2v"], dims["tcae"], options.hidden, options.dim).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_rows) / options.batch_size))
    sched = warmup_cosine(opt, options.epochs * steps_per_epoch)
    best_val, best_state, history = math.inf, None, []
    for epoch in range(options.epochs):
        model.train()
        perm = train_rows[torch.randperm(len(train_rows), generator=gen).numpy()]
        total = 0.0
        for s in range(steps_per_epoch):
            rows = torch.from_numpy(perm[s * options.batch_size : (s + 1) * options.batch_size])
            loss = _loss(model, W[rows].to(dev), Tm[rows].to(dev), HW[rows].to(dev), HT[rows].to(dev),
                         options, gen, dropout=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        val = _evaluate_loss(model, W, Tm, HW, HT, val_rows, options, dev) if n_val else total / steps_per_epoch
        history.append({"epoch": epoch + 1, "train_loss": total / steps_per_epoch, "val_loss": val})
        if val < best_val:
            best_val = val
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    assert best_state is not None
    model.load_state_dict(best_state)
    embedder = CELEmbedder(model, options, dev)
    vectors = embedder.embed_rows(w, t, hw, ht)
    info = {
        "seconds": round(time.perf_counter() - started, 3),
        "best_val_loss": best_val,
        "history": history,
        "songs": {
            "total": len(ids),
            "both": int((hw & ht).sum()),
            "music2vec_only": int((hw & ~ht).sum()),
            "tcae_only": int((~hw & ht).sum()),
            "val": n_val,
        },
        "mean_pairwise_cosine": _mean_pairwise_cosine(vectors, seed),
        "device": str(dev),
        "seed": seed,
    }
    LAST_INFO.clear()
    LAST_INFO.update(info)
    logger.info(
        "cel: %d songs (%d both, %d music2vec only, %d tcae only) in %.1fs, mean pairwise cosine %.3f",
        len(ids), info["songs"]["both"], info["songs"]["music2vec_only"], info["songs"]["tcae_only"],
        info["seconds"], info["mean_pairwise_cosine"],
    )
    if models_dir is not None:
        embedder.save(Path(models_dir), info)
    return ids, vectors


@torch.no_grad()
def _evaluate_loss(
    model: CEL, W: torch.Tensor, T: torch.Tensor, HW: torch.Tensor, HT: torch.Tensor,
    rows: np.ndarray, options: CELOptions, dev: torch.device,
) -> float:
    """Validation loss without dropout and with fixed negatives (comparable between epochs)."""
    model.eval()
    r = torch.from_numpy(rows)
    return float(_loss(model, W[r].to(dev), T[r].to(dev), HW[r].to(dev), HT[r].to(dev), options, None, False))


def _mean_pairwise_cosine(vectors: np.ndarray, seed: int, sample: int = 2000) -> float:
    """Mean cosine between distinct vectors of a sample; near 1 means collapse."""
    if len(vectors) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    v = vectors[rng.choice(len(vectors), min(sample, len(vectors)), replace=False)]
    sims = v @ v.T
    n = len(v)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))

