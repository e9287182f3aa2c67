"""TCAE: a temporal convolutional autoencoder over mel-spectrograms, giving a 128-d tanh embedding.

Mel bands are the channels. The encoder is a stack of causal, dilated Conv1d layers (kernel 3,
dilations 1, 2, 4, ...) with BatchNorm and ReLU over a 2x time-pooled crop; a linear bottleneck over
the whole (pooled) time axis gives the embedding, so time structure survives into it (pooling over
time lost the melody in earlier measurements). The decoder expands the embedding back to a sequence,
runs a causal stack over it and predicts frame t+1 of the time-reversed crop; the loss is MSE.

A plain autoencoder learns the recording, not the melody: two versions of one melody in another key
or with another instrument land far apart. So training adds an invariance term (on by default): two
views of the same crop, each shifted by whole mel bands and given a different spectral envelope, must
embed close together and apart from the other crops of the batch (InfoNCE). The two views share their
time window, so the model cannot solve the task by recognising the recording's texture alone.

Whole clips are embedded by tiling crops across the clip and averaging their embeddings.

This module holds the network, its options and the embedder (what the service runs on an upload);
:mod:`training.tcae` trains it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mugle_nets.checkpoint import load_checkpoint, save_checkpoint
from mugle_nets.device import resolve_device
from mugle_nets.mels import (
    FRAMES,
    N_MELS,
    STATS_FILE,
    LoadReport,
    MelClipDataset,
    MelStats,
    fit_length,
    make_loader,
    usable_batch,
)

logger = logging.getLogger(__name__)

MODEL_FILE = "tcae.pt"


@dataclass
class TCAEOptions:
    """Training and architecture options of the TCAE (recorded in the manifest).

    Attributes
    ----------
    steps : optimiser steps.
    batch_size : crops per step.
    crop : crop length in *pooled* frames (raw frames = crop * pool).
    pool : time pooling factor before the encoder.
    hidden : channels of the convolution stacks.
    dilations : one causal conv layer per dilation.
    squeeze : channels per time step that enter the linear bottleneck.
    dim : embedding size.
    lr, weight_decay : AdamW settings.
    val_fraction : share of songs held out for the validation MSE that picks the checkpoint.
    eval_every : steps between validations.
    stats_sample : files read for the per-band statistics.
    invariance_weight : weight of the two-view InfoNCE term (0 = plain autoencoder).
    temperature : InfoNCE temperature.
    max_band_shift : largest pitch shift of the augmentation, in mel bands.
    timbre : amplitude (in standardised units) of the random spectral envelope of the augmentation.
    noise : standard deviation of the additive noise of the augmentation.
    time_shift : largest offset, in dataset frames, between the time windows of the two views.
    stretch : largest relative tempo change of a view (0.05 = +-5 %).
    tiles : crops tiled across a whole clip when embedding it.
    blend_dim : dimensions of the final vector given to the fixed modulation-spectrum feature
        (0 = the learned embedding alone); the learned part gets ``dim - blend_dim``.
    blend_weight : share of the squared norm of the final vector given to that feature.
    blend_sample : training files read to standardise that feature.
    workers : DataLoader worker processes.
    embed_batch : clips per batch when embedding.
    """

    steps: int = 300
    batch_size: int = 48
    crop: int = 64
    pool: int = 2
    hidden: int = 48
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    squeeze: int = 8
    dim: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    eval_every: int = 50
    stats_sample: int = 2000
    invariance_weight: float = 1.0
    temperature: float = 0.1
    max_band_shift: int = 4
    timbre: float = 0.5
    noise: float = 0.1
    time_shift: int = 16
    stretch: float = 0.05
    tiles: int = 4
    # Chosen with `mugle evaluate` on the default demo, holdout seeds 0 and 1: 112 dims at weight 0.9 found
    # another version first for 0.912 / 0.905 of versioned songs, against 0.861-0.895 for 64 dims at 0.7;
    # playlist hit rates of tcae and cel did not change beyond their intervals.
    blend_dim: int = 112
    blend_weight: float = 0.9
    blend_sample: int = 1000
    workers: int = 0
    embed_batch: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        for name in ("steps", "batch_size", "crop", "pool", "hidden", "squeeze", "dim", "tiles", "embed_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TCAEOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2 and self.invariance_weight > 0:
            raise ValueError("TCAEOptions.batch_size must be >= 2 when invariance_weight > 0 (needs negatives)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"TCAEOptions.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"TCAEOptions.dilations must be positive, got {self.dilations}")
        if self.workers < 0:
            raise ValueError(f"TCAEOptions.workers must be >= 0, got {self.workers}")
        if not 0 <= self.blend_dim < self.dim:
            raise ValueError(f"TCAEOptions.blend_dim must be in [0, dim), got {self.blend_dim} (dim={self.dim})")
        if not 0.0 <= self.blend_weight < 1.0:
            raise ValueError(f"TCAEOptions.blend_weight must be in [0, 1), got {self.blend_weight}")

    @property
    def raw_crop(self) -> int:
        """Crop length in dataset frames."""
        return self.crop * self.pool

    @property
    def window(self) -> int:
        """Frames read per training item: a crop plus room for the views' shift and stretch."""
        if self.invariance_weight <= 0:
            return self.raw_crop
        return int(math.ceil(self.raw_crop * (1.0 + self.stretch))) + 2 * self.time_shift

    def model_config(self) -> dict[str, Any]:
        """What :class:`TCAE` needs to be rebuilt at inference time."""
        return {
            "n_mels": N_MELS,
            "hidden": self.hidden,
            "dilations": list(self.dilations),
            "length": self.crop,
            "pool": self.pool,
            "squeeze": self.squeeze,
            "dim": self.dim - self.blend_dim,
            "blend_dim": self.blend_dim,
            "blend_weight": self.blend_weight,
        }


# -- the network --------------------------------------------------------------------------------------


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only, so output t sees inputs <= t."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, dilation: int) -> None:
        super().__init__(channels_in, channels_out, kernel, dilation=dilation)
        self.left = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class CausalBlock(nn.Module):
    """Causal dilated conv + BatchNorm + ReLU with a residual path (keeps deep stacks trainable)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, channels, 3, dilation)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.norm(self.conv(x)))


class TCAE(nn.Module):
    """The autoencoder; :meth:`encode` gives the tanh embedding of crops of ``length * pool`` frames."""

    def __init__(
        self,
        n_mels: int = N_MELS,
        hidden: int = 64,
        dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 16),
        length: int = 64,
        pool: int = 2,
        squeeze: int = 8,
        dim: int = 128,
        blend_dim: int = 0,
        blend_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_mels, self.length, self.pool, self.squeeze, self.dim = n_mels, length, pool, squeeze, dim
        self.blend = ModulationBlend(n_mels, blend_dim, blend_weight) if blend_dim > 0 else None
        self.enc_in = nn.Conv1d(n_mels, hidden, 1)
        self.encoder = nn.Sequential(*[CausalBlock(hidden, d) for d in dilations])
        self.enc_out = nn.Conv1d(hidden, squeeze, 1)
        self.bottleneck = nn.Linear(squeeze * length, dim)
        self.expand = nn.Linear(dim, squeeze * length)
        self.dec_in = nn.Conv1d(squeeze, hidden, 1)
        self.decoder = nn.Sequential(*[CausalBlock(hidden, d) for d in dilations])
        self.dec_out = nn.Conv1d(hidden, n_mels, 1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 48, length * pool) -> (B, 48, length)."""
        return F.avg_pool1d(x, self.pool) if self.pool > 1 else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embed standardised crops (B, 48, length * pool) -> (B, dim) in [-1, 1]."""
        h = self.enc_out(self.encoder(self.enc_in(self.pooled(x))))
        return torch.tanh(self.bottleneck(h.flatten(1)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Predict the time-reversed pooled crop; output t is the estimate of reversed frame t+1."""
        seq = self.expand(z).view(z.shape[0], self.squeeze, self.length)
        return self.dec_out(self.decoder(self.dec_in(seq)))

    def reconstruction_loss(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """MSE between decoder outputs 0..L-2 and reversed pooled frames 1..L-1."""
        target = torch.flip(self.pooled(x), dims=[2])
        pred = self.decode(z)
        return F.mse_loss(pred[:, :, :-1].float(), target[:, :, 1:].float())


# -- the fixed, shift-invariant feature -----------------------------------------------------------------

MOD_BINS = 400  # highest modulation rate kept, in cycles per 1876 frames (about 3.4 Hz at hop 256)
MOD_GROUPS = 40  # log-spaced groups of modulation rates (tempo changes move energy within a group)


def modulation_spectrum(clips: torch.Tensor) -> torch.Tensor:
    """Per-band modulation spectrum of standardised clips (B, 48, T) -> (B, 48 * groups).

    The magnitude of the Fourier transform over time does not change when the tune starts later, and
    pooling the rates into log-spaced groups makes it tolerant of a few percent of tempo change. The
    per-clip band means are removed first, so a change of level or spectral tilt does not show.
    Rates are measured against the dataset's 1876-frame clip, so clips of other lengths line up.
    """
    x = clips.float()
    x = x - x.mean(dim=2, keepdim=True)
    t = x.shape[2]
    mag = torch.fft.rfft(x, dim=2).abs()
    edges = np.unique(np.round(np.geomspace(1, MOD_BINS, MOD_GROUPS + 1)).astype(int)) - 1
    cols = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        lo = 1 + int(round(a * t / FRAMES))
        hi = min(mag.shape[2], max(lo + 1, 1 + int(round(b * t / FRAMES))))
        cols.append(mag[:, :, lo:hi].mean(dim=2) if lo < mag.shape[2] else mag[:, :, :1] * 0.0)
    return torch.log1p(torch.stack(cols, dim=2)).flatten(1)


class ModulationBlend(nn.Module):
    """Standardise the modulation spectrum and project it to ``dim`` with a fixed random matrix.

    The statistics are fitted on training songs; the projection is drawn once from the run's seed.
    Both are buffers, so they travel in the state dict and a reloaded model embeds identically.
    """

    def __init__(self, n_mels: int, dim: int, weight: float) -> None:
        super().__init__()
        features = n_mels * (len(np.unique(np.round(np.geomspace(1, MOD_BINS, MOD_GROUPS + 1)))) - 1)
        self.dim, self.weight = dim, float(weight)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.register_buffer("proj", torch.zeros(features, dim))

    def fit(self, features: torch.Tensor, seed: int) -> None:
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-6))
        gen = torch.Generator().manual_seed(seed)
        self.proj.copy_(torch.randn(self.proj.shape, generator=gen) / math.sqrt(self.dim))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        feats = (modulation_spectrum(clips) - self.mean) / self.std
        return F.normalize(feats @ self.proj, dim=1)


# -- inference ----------------------------------------------------------------------------------------


class TCAEEmbedder:
    """Embeds raw mels with a trained TCAE: standardise, tile crops, average, L2-normalise.

    Use :meth:`load` to read ``tcae.pt`` and ``mel_stats.npz`` from a models folder.
    """

    def __init__(self, model: TCAE, stats: MelStats, options: TCAEOptions, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.stats = stats
        self.options = options
        self.device = device

    @property
    def dim(self) -> int:
        return self.model.dim + (self.model.blend.dim if self.model.blend is not None else 0)

    def save(self, models_dir: Path, info: dict[str, Any] | None = None) -> Path:
        """Write ``tcae.pt`` (state dict + plain config) and ``mel_stats.npz``."""
        models_dir = Path(models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        self.stats.save(models_dir / STATS_FILE)
        opts = asdict(self.options)
        opts["dilations"] = list(self.options.dilations)
        return save_checkpoint(models_dir / MODEL_FILE, self.model, self.options.model_config(), opts, info)

    @classmethod
    def load(cls, models_dir: Path, device: str | torch.device = "cpu") -> TCAEEmbedder:
        """Read a saved model; errors name the file and what is wrong with it."""
        models_dir = Path(models_dir)
        path = models_dir / MODEL_FILE
        model, options = load_checkpoint(path, "TCAE", TCAE, TCAEOptions)
        stats = MelStats.load(models_dir / STATS_FILE)
        dev = resolve_device(device)
        return cls(model, stats, options, dev)

    def _tile_starts(self, frames: int) -> list[int]:
        crop = self.model.length * self.model.pool
        n = max(1, self.options.tiles)
        if frames <= crop or n == 1:
            return [max(0, (frames - crop) // 2)]
        return sorted({int(round(s)) for s in np.linspace(0, frames - crop, n)})

    @torch.no_grad()
    def embed_normalised(self, clips: torch.Tensor) -> np.ndarray:
        """Embed standardised clips (B, 48, T) with T >= one crop; returns (B, dim) float32, L2-normalised."""
        crop = self.model.length * self.model.pool
        starts = self._tile_starts(clips.shape[2])
        tiles = torch.stack([clips[:, :, s : s + crop] for s in starts], dim=1)  # (B, tiles, 48, crop)
        b, k = tiles.shape[:2]
        use_amp = self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=use_amp):
            z = self.model.encode(tiles.reshape(b * k, N_MELS, crop).to(self.device))
        z = F.normalize(z.float().view(b, k, -1).mean(1), dim=1)
        blend = self.model.blend
        if blend is not None:
            # Squared norms split (1 - w) : w between the learned part and the fixed feature.
            fixed = blend(clips.to(self.device))
            z = torch.cat([math.sqrt(1.0 - blend.weight) * z, math.sqrt(blend.weight) * fixed], dim=1)
        return F.normalize(z, dim=1).cpu().numpy().astype(np.float32)

    def embed(self, mels: list[np.ndarray]) -> np.ndarray:
        """Embed raw (un-standardised) mels of shape (48, T), any T >= 1.

        Clips shorter than the model's clip length are repeated to fill it; longer ones are cut to
        the dataset's 1876 frames so that an upload and a stored mel see the same span.

        Raises
        ------
        ValueError
            When an array is not (48, T) with finite values, naming its position.
        """
        if not mels:
            return np.zeros((0, self.dim), dtype=np.float32)
        crop = self.model.length * self.model.pool
        frames = max(crop, FRAMES)
        prepared = []
        for i, mel in enumerate(mels):
            arr = np.asarray(mel)
            if arr.ndim != 2 or arr.shape[0] != N_MELS or arr.shape[1] < 1:
                raise ValueError(f"mels[{i}]: expected shape ({N_MELS}, T) with T >= 1, got {arr.shape}")
            arr = arr.astype(np.float32)
            if not np.isfinite(arr).all():
                raise ValueError(f"mels[{i}]: contains NaN or infinite values")
            # A short clip is tiled over its own length (repeated up to one crop), not padded out to
            # 1876 frames, so that padding never outweighs the content.
            length = frames if arr.shape[1] >= frames else max(crop, arr.shape[1])
            prepared.append(self.stats.normalise(fit_length(arr, length)))
        out = np.zeros((len(prepared), self.dim), dtype=np.float32)
        by_len: dict[int, list[int]] = {}
        for i, arr in enumerate(prepared):
            by_len.setdefault(arr.shape[1], []).append(i)
        for rows in by_len.values():
            for j in range(0, len(rows), self.options.embed_batch):
                chunk = rows[j : j + self.options.embed_batch]
                batch = torch.from_numpy(np.stack([prepared[r] for r in chunk]))
                out[chunk] = self.embed_normalised(batch)
        return out

    def embed_paths(
        self, ids: np.ndarray, paths: list[Path], workers: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, LoadReport]:
        """Embed mel files streamed from disk; unusable files are skipped and counted.

        Returns
        -------
        ids, vectors, report : the ids that got a vector (ascending as given), their vectors, the counts.
        """
        report = LoadReport()
        ds = MelClipDataset(paths, self.stats, max(FRAMES, self.model.length * self.model.pool))
        loader = make_loader(
            ds, self.options.embed_batch, shuffle=False,
            workers=self.options.workers if workers is None else workers,
        )
        kept_rows: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        for batch in loader:
            x, index = usable_batch(batch, report)
            if len(x):
                vecs.append(self.embed_normalised(x))
                kept_rows.append(index.numpy())
        if not vecs:
            raise ValueError(f"no readable mel among {len(paths)} files ({report.summary()})")
        rows = np.concatenate(kept_rows)
        return np.asarray(ids, dtype=np.int64)[rows], np.concatenate(vecs), report
