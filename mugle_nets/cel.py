"""CEL: a fusion network that turns a song's Music2Vec and TCAE vectors into one 128-d joint vector.

One branch per input embedding; the branch outputs and two presence flags are concatenated and
mapped to the joint vector. Training uses CosineEmbeddingLoss directly towards both inputs: the
joint vector must point the way of the song's own Music2Vec vector and of its own TCAE vector
(y = +1), and away from other songs' vectors (y = -1, with a margin). The negatives are what keep it
from collapsing to one point, which the original positives-only loss allowed.

Modality dropout zeroes one branch at random (and clears its flag) while still asking for both
targets, so the network learns to infer the missing side: a song with audio but no playlist history
(cold start) gets a joint vector placed near songs heard in the same situations.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mugle_nets.checkpoint import load_checkpoint, save_checkpoint
from mugle_nets.tcae import resolve_device, warmup_cosine

logger = logging.getLogger(__name__)

MODEL_FILE = "cel.pt"
MODALITIES: tuple[str, ...] = ("music2vec", "tcae")
# Details of the latest :func:`train_cel` run, for the manifest.
LAST_INFO: dict[str, Any] = {}


@dataclass
class CELOptions:
    """Options of the fusion network (recorded in the manifest).

    Attributes
    ----------
    epochs : passes over the training songs.
    batch_size : songs per step.
    hidden : width of each branch and of the fusion layer.
    dim : joint vector size.
    lr, weight_decay : AdamW settings.
    margin : CosineEmbeddingLoss margin of the negative pairs.
    negatives : negative pairs per positive pair and per target.
    negative_weight : weight of the negative terms.
    modality_dropout : probability that a song with both inputs sees only one of them in a step.
    val_fraction : share of songs held out to pick the best epoch.
    """

    epochs: int = 40
    batch_size: int = 256
    hidden: int = 256
    dim: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    negatives: int = 2
    negative_weight: float = 1.0
    modality_dropout: float = 0.3
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "hidden", "dim", "negatives"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CELOptions.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"CELOptions.modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if not -1.0 <= self.margin <= 1.0:
            raise ValueError(f"CELOptions.margin must be in [-1, 1], got {self.margin}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"CELOptions.val_fraction must be in [0, 1), got {self.val_fraction}")


class CEL(nn.Module):
    """Two branches (Music2Vec, TCAE) + presence flags -> L2-normalised joint vector."""

    def __init__(self, w2v_dim: int, tcae_dim: int, hidden: int = 256, dim: int = 128) -> None:
        super().__init__()
        self.w2v_dim, self.tcae_dim, self.dim = w2v_dim, tcae_dim, dim
        self.w2v_branch = nn.Sequential(nn.Linear(w2v_dim, hidden), nn.ReLU())
        self.tcae_branch = nn.Sequential(nn.Linear(tcae_dim, hidden), nn.ReLU())
        self.fusion = nn.Sequential(nn.Linear(2 * hidden + 2, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(
        self, w2v: torch.Tensor, tcae: torch.Tensor, has_w2v: torch.Tensor, has_tcae: torch.Tensor
    ) -> torch.Tensor:
        """Inputs of an absent modality are ignored (multiplied by its 0 flag)."""
        fw = has_w2v.float()[:, None]
        ft = has_tcae.float()[:, None]
        h = torch.cat([self.w2v_branch(w2v * fw) * fw, self.tcae_branch(tcae * ft) * ft, fw, ft], dim=1)
        return F.normalize(self.fusion(h), dim=1)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _check_pair(name: str, ids: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(ids):
        raise ValueError(f"train_cel: {name}_vecs must be (len({name}_ids), dim), got {vecs.shape} for {len(ids)} ids")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"train_cel: {name}_ids contains repeated song ids")
    if not np.isfinite(vecs).all():
        raise ValueError(f"train_cel: {name}_vecs contains NaN or infinite values")
    return ids, _normalise_rows(vecs)


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


class CELEmbedder:
    """Joint vectors from whichever inputs a song has; :meth:`load` reads ``cel.pt``."""

    def __init__(self, model: CEL, options: CELOptions, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.options = options
        self.device = device

    @property
    def dim(self) -> int:
        return self.model.dim

    def save(self, models_dir: Path, info: dict[str, Any] | None = None) -> Path:
        models_dir = Path(models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "w2v_dim": self.model.w2v_dim,
            "tcae_dim": self.model.tcae_dim,
            "hidden": self.options.hidden,
            "dim": self.model.dim,
        }
        return save_checkpoint(models_dir / MODEL_FILE, self.model, config, asdict(self.options), info)

    @classmethod
    def load(cls, models_dir: Path, device: str | torch.device = "cpu") -> CELEmbedder:
        """Read ``cel.pt``; errors name the file and what is wrong with it."""
        model, options = load_checkpoint(Path(models_dir) / MODEL_FILE, "CEL", CEL, CELOptions)
        return cls(model, options, resolve_device(device))

    @torch.no_grad()
    def embed_rows(self, w: np.ndarray, t: np.ndarray, hw: np.ndarray, ht: np.ndarray) -> np.ndarray:
        """Embed aligned rows with explicit presence flags; rows with neither input get zeros."""
        out = np.zeros((len(w), self.dim), dtype=np.float32)
        for s in range(0, len(w), 4096):
            sl = slice(s, s + 4096)
            pred = self.model(
                torch.from_numpy(_normalise_rows(w[sl])).to(self.device),
                torch.from_numpy(_normalise_rows(t[sl])).to(self.device),
                torch.from_numpy(np.asarray(hw[sl], dtype=bool)).to(self.device),
                torch.from_numpy(np.asarray(ht[sl], dtype=bool)).to(self.device),
            )
            out[sl] = pred.float().cpu().numpy()
        out[~(np.asarray(hw, dtype=bool) | np.asarray(ht, dtype=bool))] = 0.0
        return out

    def embed(self, w2v: np.ndarray | None, tcae: np.ndarray | None) -> np.ndarray:
        """Joint vectors for a batch of songs.

        Parameters
        ----------
        w2v : (n, d1) Music2Vec vectors, or None when no song has one; a row of NaN marks one song
            without a vector.
        tcae : (n, d2) TCAE vectors, or None likewise.

        Returns
        -------
        (n, dim) float32, L2-normalised (a row with neither input is all zeros).

        Raises
        ------
        ValueError
            When both are None, the row counts differ or a width does not match the model.
        """
        if w2v is None and tcae is None:
            raise ValueError("CELEmbedder.embed: w2v and tcae are both None; at least one input is needed")
        arrays = {}
        for name, arr, width in (("w2v", w2v, self.model.w2v_dim), ("tcae", tcae, self.model.tcae_dim)):
            if arr is None:
                continue
            a = np.asarray(arr, dtype=np.float32)
            if a.ndim == 1:
                a = a[None, :]
            if a.ndim != 2 or a.shape[1] != width:
                raise ValueError(f"CELEmbedder.embed: {name} must be (n, {width}), got {a.shape}")
            arrays[name] = a
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"CELEmbedder.embed: w2v and tcae have different row counts {sorted(n)}")
        rows = n.pop()

        def split(name: str, width: int) -> tuple[np.ndarray, np.ndarray]:
            if name not in arrays:
                return np.zeros((rows, width), np.float32), np.zeros(rows, bool)
            a = arrays[name]
            present = np.isfinite(a).all(axis=1) & (np.abs(a).sum(axis=1) > 0)
            return np.where(present[:, None], np.nan_to_num(a), 0.0).astype(np.float32), present

        w, hw = split("w2v", self.model.w2v_dim)
        t, ht = split("tcae", self.model.tcae_dim)
        return self.embed_rows(w, t, hw, ht)
