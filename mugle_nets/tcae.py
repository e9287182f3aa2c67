"""TCAE: a temporal convolutional autoencoder over mel-spectrograms, giving a 128-d tanh embedding.

Mel bands are the channels. The encoder is a stack of causal, dilated Conv1d layers (kernel 3,
dilations 1, 2, 4, ...) with BatchNorm and ReLU over a 2x time-pooled crop. Two things are read off
its feature sequence:

* a narrow per-frame code (``squeeze`` channels) that a causal decoder turns back into the
  time-reversed crop, predicting frame t+1 (the autoencoder term, MSE);
* a correction added to the mel; the learned part of the embedding is the rate-grouped magnitude of
  the 2-D Fourier transform of the corrected mel (blind to when the tune starts and to whole-band
  shifts of key), whitened and mapped by a linear layer to ``dim - blend_dim`` and tanh (see
  :class:`TCAE`).

A plain autoencoder learns the recording, not the melody: two versions of one melody in another key
or with another instrument land far apart. So training adds a contrastive term (InfoNCE): two views of
one song, each played at another tempo, shifted by whole mel bands (a change of key), given another
spectral envelope and level (instrument, mix), and sometimes laid over another song (an
accompaniment), must embed close together and apart from the other songs of the batch. What is left
for the learned part to match is what survives all of that: the tune and the rhythm.

That part is deliberately blind to register and sound, which are what tells one recording from another.
So the vector ends with a second, fixed part (:class:`ModulationBlend`, ``blend_dim`` values holding
``blend_weight`` of the squared norm): the per-band modulation spectrum of the whole clip, whitened. It
keeps each band in its place; on real recordings it is what finds a track from another part of it,
while its small share costs little on melodies played in other keys and sounds (issue 13's notes).

Whole clips are embedded by tiling crops across the clip and averaging their spectra.

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
    batch_size : songs per step (each gives two views).
    crop : crop length in *pooled* frames (raw frames = crop * pool).
    pool : time pooling factor before the encoder.
    hidden : channels of the convolution stacks.
    dilations : one causal conv layer per dilation.
    squeeze : channels per time step of the autoencoder's code.
    groups : log-spaced modulation-rate groups of the embedding's spectrum (plus the constant one).
    dim : embedding size.
    lr, weight_decay : AdamW settings.
    val_fraction : share of songs held out for the validation loss that picks the checkpoint.
    eval_every : steps between validations.
    stats_sample : files read for the per-band statistics.
    recon_weight : weight of the autoencoder's MSE.
    invariance_weight : weight of the two-view InfoNCE term (0 = plain autoencoder).
    temperature : InfoNCE temperature.
    max_band_shift : largest pitch shift of a view, in whole mel bands.
    timbre : amplitude (in standardised units) of a view's random spectral envelope and level.
    noise : standard deviation of a view's additive noise.
    stretch : largest relative tempo change of a view (0.15 = +-15 %).
    mix : probability that a view is laid over another song of the batch (an accompaniment).
    view_span : how far apart the two views of a song may start, as a share of the clip (0 = same place).
    tiles : crops tiled across a whole clip when embedding it.
    blend_dim : dimensions of the final vector given to the fixed, whitened per-band modulation spectrum
        (0 = the learned embedding alone); the learned part gets ``dim - blend_dim``.
    blend_weight : share of the squared norm of the final vector given to that feature.
    blend_sample : training files read to standardise and whiten that feature.
    head_sample : training songs whose spectra start the embedding's linear map (a whitening PCA).
    train_head : whether training moves that map (False: only the encoder's correction of the mel learns).
    workers : DataLoader worker processes.
    embed_batch : clips per batch when embedding.
    """

    steps: int = 200
    batch_size: int = 32
    crop: int = 256
    pool: int = 2
    hidden: int = 64
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    squeeze: int = 16
    groups: int = 32
    dim: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    eval_every: int = 50
    stats_sample: int = 2000
    recon_weight: float = 1.0
    invariance_weight: float = 1.0
    temperature: float = 0.1
    max_band_shift: int = 4
    timbre: float = 0.6
    noise: float = 0.1
    stretch: float = 0.15
    mix: float = 0.4
    view_span: float = 0.0
    tiles: int = 8
    blend_dim: int = 32
    blend_weight: float = 0.3
    blend_sample: int = 1000
    head_sample: int = 1000
    train_head: bool = True
    workers: int = 0
    embed_batch: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        positive = ("steps", "batch_size", "crop", "pool", "hidden", "squeeze", "groups", "dim", "tiles", "embed_batch")
        for name in positive:
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
        if self.recon_weight < 0 or self.invariance_weight < 0 or self.recon_weight + self.invariance_weight <= 0:
            raise ValueError(
                f"TCAEOptions.recon_weight ({self.recon_weight}) and invariance_weight ({self.invariance_weight}) "
                "must be >= 0 and not both 0"
            )
        if not 0.0 <= self.stretch < 1.0:
            raise ValueError(f"TCAEOptions.stretch must be in [0, 1), got {self.stretch}")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"TCAEOptions.mix must be in [0, 1], got {self.mix}")
        if not 0.0 <= self.view_span <= 1.0:
            raise ValueError(f"TCAEOptions.view_span must be in [0, 1], got {self.view_span}")
        if not 0 <= self.max_band_shift < N_MELS // 2:
            raise ValueError(f"TCAEOptions.max_band_shift must be in [0, {N_MELS // 2}), got {self.max_band_shift}")
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
        """Frames read per training item: the whole clip when views roam over it, else a crop plus tempo room."""
        if self.invariance_weight <= 0:
            return self.raw_crop
        if self.view_span > 0:
            return max(FRAMES, int(math.ceil(self.raw_crop * (1.0 + self.stretch))))
        return int(math.ceil(self.raw_crop * (1.0 + self.stretch)))

    def model_config(self) -> dict[str, Any]:
        """What :class:`TCAE` needs to be rebuilt at inference time."""
        return {
            "n_mels": N_MELS,
            "hidden": self.hidden,
            "dilations": list(self.dilations),
            "length": self.crop,
            "pool": self.pool,
            "squeeze": self.squeeze,
            "groups": self.groups,
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


FRAME_RATE = 16000 / 256  # mel frames per second (the dataset's 16 kHz, hop 256)
MIN_RATE_HZ = 0.1  # slowest modulation rate told apart from the others
WHITEN_FLOOR = 0.05  # least standard deviation of a whitened component, relative to the largest one


def rate_groups(frames: int, frame_rate: float, groups: int, min_rate: float = MIN_RATE_HZ) -> torch.Tensor:
    """Averaging matrix (frames // 2 + 1, groups + 1) from FFT bins over time to modulation-rate groups.

    Column 0 is the constant (0 Hz) bin; the others are log-spaced rate bands from ``min_rate`` to the
    Nyquist rate, so a change of tempo moves energy within a band or to its neighbour, and crops of
    any length land on the same columns. A band too narrow to hold a bin interpolates its centre
    from the two nearest bins.
    """
    bins = frames // 2 + 1
    rates = np.arange(bins) * frame_rate / frames
    edges = np.geomspace(min_rate, frame_rate / 2, groups + 1)
    m = np.zeros((bins, groups + 1), dtype=np.float32)
    m[0, 0] = 1.0
    for g, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True), start=1):
        inside = np.flatnonzero((rates >= lo) & (rates < hi) & (np.arange(bins) > 0))
        if len(inside):
            m[inside, g] = 1.0 / len(inside)
            continue
        centre = float(np.sqrt(lo * hi))
        right = int(np.clip(np.searchsorted(rates, centre), 1, bins - 1))
        left = right - 1
        w = (centre - rates[left]) / max(rates[right] - rates[left], 1e-9)
        m[left, g], m[right, g] = 1.0 - w, w
    return torch.from_numpy(m)


class TCAE(nn.Module):
    """The autoencoder and its embedding head.

    The causal dilated encoder reads the (time-pooled, standardised) mel and does two things with its
    feature sequence: a narrow code that the decoder turns back into the mel (the autoencoder), and a
    correction added to the mel, band by band and frame by frame (zero at the start of training). The
    embedding is the magnitude of the 2-D Fourier transform of the corrected mel over bands and time,
    which does not change when the tune starts later or moves up or down by whole bands, averaged into
    log-spaced modulation-rate groups (tolerant of tempo), log-compressed, and mapped by a linear layer
    to ``dim`` and tanh. The linear layer starts as a whitening PCA of that spectrum over training songs
    (:meth:`init_head`), so an untrained TCAE is the fixed transform; training moves both the
    correction and the map so that two performances of one song land together.
    """

    def __init__(
        self,
        n_mels: int = N_MELS,
        hidden: int = 64,
        dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 16),
        length: int = 256,
        pool: int = 2,
        squeeze: int = 16,
        dim: int = 128,
        groups: int = 32,
        blend_dim: int = 0,
        blend_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_mels, self.length, self.pool, self.squeeze, self.dim = n_mels, length, pool, squeeze, dim
        self.groups = groups
        self.blend = ModulationBlend(n_mels, blend_dim, blend_weight) if blend_dim > 0 else None
        self.enc_in = nn.Conv1d(n_mels, hidden, 1)
        self.encoder = nn.Sequential(*[CausalBlock(hidden, d) for d in dilations])
        self.enc_out = nn.Conv1d(hidden, squeeze, 1)
        self.refine = nn.Conv1d(hidden, n_mels, 1)
        nn.init.zeros_(self.refine.weight)
        nn.init.zeros_(self.refine.bias)  # type: ignore[arg-type]
        # A fixed whitening PCA of the spectrum (buffers, fitted by init_head), then a learned square map
        # that starts as the identity: Adam's steps are then the same size for every component, so
        # training reweights the components instead of scrambling the largest ones.
        self.register_buffer("spec_mean", torch.zeros(self.spectrum_size))
        self.register_buffer("whiten", torch.zeros(self.spectrum_size, dim))
        self.head = nn.Linear(dim, dim)
        nn.init.eye_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.head_scale = 0.5
        self.dec_in = nn.Conv1d(squeeze, hidden, 1)
        self.decoder = nn.Sequential(*[CausalBlock(hidden, d) for d in dilations])
        self.dec_out = nn.Conv1d(hidden, n_mels, 1)
        self._groups: dict[tuple[int, str], torch.Tensor] = {}

    @property
    def spectrum_size(self) -> int:
        return (self.n_mels // 2 + 1) * (self.groups + 1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 48, T * pool) -> (B, 48, T)."""
        return F.avg_pool1d(x, self.pool) if self.pool > 1 else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder feature sequence (B, hidden, T) of standardised input (B, 48, T * pool)."""
        return self.encoder(self.enc_in(self.pooled(x)))

    def spectrum(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Log 2-D modulation spectrum (B, spectrum_size) of the corrected mel."""
        y = (self.pooled(x) + self.refine(h)).float()
        y = y - y.mean(dim=(1, 2), keepdim=True)
        with torch.autocast(device_type=y.device.type, enabled=False):
            mag = torch.fft.fft(torch.fft.rfft(y, dim=2), dim=1).abs()[:, : self.n_mels // 2 + 1]
            t = y.shape[2]
            key = (t, str(y.device))
            if key not in self._groups:
                self._groups[key] = rate_groups(t, FRAME_RATE / self.pool, self.groups).to(y.device)
            return torch.log1p(mag @ self._groups[key]).flatten(1)

    def project(self, spectrum: torch.Tensor) -> torch.Tensor:
        """(B, spectrum_size) -> (B, dim) in [-1, 1]."""
        white = (spectrum.float() - self.spec_mean) @ self.whiten  # type: ignore[operator]  # buffers
        return torch.tanh(self.head_scale * self.head(white))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embed standardised crops (B, 48, T * pool) -> (B, dim) in [-1, 1]."""
        return self.project(self.spectrum(x, self.features(x)))

    @torch.no_grad()
    def init_head(self, spectra: torch.Tensor) -> None:
        """Fit the whitening PCA of ``spectra`` (n, spectrum_size); the learned map is reset to the identity.

        Whitened components have unit variance; ``head_scale`` keeps most of them in tanh's linear range.
        """
        spectra = spectra.double()
        mean = spectra.mean(0)
        _, sing, vt = torch.linalg.svd(spectra - mean, full_matrices=False)
        k = min(self.dim, vt.shape[0])
        std = sing[:k] / math.sqrt(max(1, len(spectra) - 1))
        # Components with almost no variance among the sampled songs would be blown up by whitening, and
        # then any change of the spectrum that training makes would swamp the vector: floor them.
        std = std.clamp_min(max(float(std[0]) * WHITEN_FLOOR, 1e-6))
        whiten = torch.zeros(self.spectrum_size, self.dim, dtype=torch.float64)
        whiten[:, :k] = (vt[:k] / std[:, None]).T
        self.spec_mean.copy_(mean.float())  # type: ignore[operator]  # a registered buffer
        self.whiten.copy_(whiten.float())  # type: ignore[operator]
        nn.init.eye_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def reconstruction_loss(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """MSE of the decoder, which reads the time-reversed code and predicts reversed pooled frame t+1."""
        h = self.features(x) if h is None else h
        code = torch.flip(self.enc_out(h), dims=[2])
        pred = self.dec_out(self.decoder(self.dec_in(code)))
        target = torch.flip(self.pooled(x), dims=[2])
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
    """Standardise the per-band modulation spectrum and map it to ``dim`` by a whitening PCA.

    Unlike the TCAE's own spectrum, this feature keeps each band in its place, so it tells apart two
    pieces whose rhythm sits in other registers or with other sounds: what identifies a recording, and
    what a change of key or instrument moves. Whitening gives each of the ``dim`` leading components of
    the training songs the same say (a random projection instead let the few loudest directions decide;
    recordings P@1 0.65 -> 0.59 in the issue-13 notes). The statistics and the map are buffers, so they
    travel in the state dict and a reloaded model embeds identically.
    """

    # Buffers, declared so type checkers know them as tensors (register_buffer sets them).
    mean: torch.Tensor
    std: torch.Tensor
    proj: torch.Tensor

    def __init__(self, n_mels: int, dim: int, weight: float) -> None:
        super().__init__()
        features = n_mels * (len(np.unique(np.round(np.geomspace(1, MOD_BINS, MOD_GROUPS + 1)))) - 1)
        self.dim, self.weight = dim, float(weight)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.register_buffer("proj", torch.zeros(features, dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        """Fit the standardisation and the whitening PCA on ``features`` (n, n_features) of training songs.

        With fewer songs than ``dim``, the missing components stay zero; components with almost no
        variance are floored as in :meth:`TCAE.init_head`.
        """
        feats = features.double()
        mean, std = feats.mean(0), feats.std(0).clamp_min(1e-6)
        z = (feats - mean) / std
        _, sing, vt = torch.linalg.svd(z - z.mean(0), full_matrices=False)
        k = min(self.dim, vt.shape[0])
        comp_std = sing[:k] / math.sqrt(max(1, len(z) - 1))
        comp_std = comp_std.clamp_min(max(float(comp_std[0]) * WHITEN_FLOOR, 1e-6))
        proj = torch.zeros(self.proj.shape, dtype=torch.float64)
        proj[:, :k] = (vt[:k] / comp_std[:, None]).T
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        self.proj.copy_(proj.float())

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        feats = (modulation_spectrum(clips) - self.mean) / self.std
        return F.normalize(feats @ self.proj, dim=1)


# -- inference ----------------------------------------------------------------------------------------


def fit_length_t(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Tensor version of :func:`training.mels.fit_length` over the last axis (repeat, then cut)."""
    t = x.shape[-1]
    if t >= frames:
        return x[..., :frames]
    return x.repeat(*([1] * (x.dim() - 1)), -(-frames // t))[..., :frames]



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
    def spectra(self, clips: torch.Tensor) -> torch.Tensor:
        """Spectra (B, spectrum_size) of standardised clips (B, 48, T), averaged over crops tiled across them."""
        crop = self.model.length * self.model.pool
        if clips.shape[2] < crop:
            clips = fit_length_t(clips, crop)
        starts = self._tile_starts(clips.shape[2])
        tiles = torch.stack([clips[:, :, s : s + crop] for s in starts], dim=1)  # (B, tiles, 48, crop)
        b, k = tiles.shape[:2]
        x = tiles.reshape(b * k, N_MELS, crop).to(self.device)
        use_amp = self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=use_amp):
            h = self.model.features(x)
        return self.model.spectrum(x, h).view(b, k, -1).mean(1)

    @torch.no_grad()
    def embed_normalised(self, clips: torch.Tensor) -> np.ndarray:
        """Embed standardised clips (B, 48, T) with T >= one crop; returns (B, dim) float32, L2-normalised."""
        z = F.normalize(self.model.project(self.spectra(clips)), dim=1)
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
