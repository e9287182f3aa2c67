"""CEL: a fusion network that turns a song's Music2Vec and TCAE vectors into one 128-d joint vector.

One branch per input embedding; the branch outputs and two presence flags are concatenated and
mapped to the joint vector. Training uses CosineEmbeddingLoss directly towards both inputs: the
joint vector must point the way of the song's own Music2Vec vector and of its own TCAE vector
(y = +1), and away from other songs' vectors (y = -1, with a margin). The negatives are what keep it
from collapsing to one point, which the original positives-only loss allowed.

Modality dropout zeroes one branch at random (and clears its flag) while still asking for both
targets, so the network learns to infer the missing side: a song with audio but no playlist history
(cold start) gets a joint vector placed near songs heard in the same situations.

This module holds the network, its options and the embedder; :mod:`training.cel` trains it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mugle_nets.checkpoint import load_checkpoint, save_checkpoint
from mugle_nets.device import resolve_device

logger = logging.getLogger(__name__)

MODEL_FILE = "cel.pt"
MODALITIES: tuple[str, ...] = ("music2vec", "tcae")


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



def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)



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
                torch.from_numpy(normalise_rows(w[sl])).to(self.device),
                torch.from_numpy(normalise_rows(t[sl])).to(self.device),
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
