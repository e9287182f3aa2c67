"""Mel thumbnails: the small pictures of each song's mel-spectrogram that the web page shows.

Training makes them once per version (:func:`mel_thumbnail` per song, :func:`write_mel_thumbs` for the
files); the service's ``GET /songs/{id}/mel`` reads ``extras/mel_thumbs.npy`` (uint8, shape
(n, bands, frames)) and its row -> song id map ``extras/mel_thumbs_ids.npy`` (int64, ascending).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MEL_THUMBS = "mel_thumbs.npy"
MEL_THUMBS_IDS = "mel_thumbs_ids.npy"
THUMB_FRAMES = 96


def mel_thumbnail(mel: np.ndarray, frames: int = THUMB_FRAMES) -> np.ndarray:
    """Shrink a (bands, T) mel-spectrogram to uint8 (bands, frames) for display.

    Time is averaged into ``frames`` equal bins (nearest frame when T < frames). Values are scaled
    between the 2nd and 99.5th percentile of the clip, so a quiet and a loud song both use the whole
    colour range; a constant clip maps to zeros.
    """
    mel = np.asarray(mel, dtype=np.float64)
    if mel.ndim != 2 or mel.shape[1] == 0:
        raise ValueError(f"mel: expected a 2-D (bands, frames) array, got shape {mel.shape}")
    mel = np.nan_to_num(mel, nan=0.0, posinf=0.0, neginf=0.0)
    t = mel.shape[1]
    if t >= frames:
        edges = np.linspace(0, t, frames + 1).astype(np.int64)
        small = np.add.reduceat(mel, edges[:-1], axis=1) / np.diff(edges)[None, :]
    else:
        small = mel[:, np.minimum((np.arange(frames) * t) // frames, t - 1)]
    lo, hi = np.percentile(small, [2.0, 99.5])
    if not hi > lo:
        return np.zeros(small.shape, dtype=np.uint8)
    return np.clip((small - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)


def write_mel_thumbs(extras_dir: Path, ids: np.ndarray, thumbs: np.ndarray) -> None:
    """Write the thumbnail files the ``/mel`` endpoint reads (ids are sorted here)."""
    ids = np.asarray(ids, dtype=np.int64)
    thumbs = np.asarray(thumbs, dtype=np.uint8)
    if thumbs.ndim != 3 or len(thumbs) != len(ids):
        raise ValueError(f"thumbs: expected (n, bands, frames) with n={len(ids)}, got {thumbs.shape}")
    order = np.argsort(ids, kind="stable")
    extras_dir = Path(extras_dir)
    extras_dir.mkdir(parents=True, exist_ok=True)
    np.save(extras_dir / MEL_THUMBS_IDS, ids[order])
    np.save(extras_dir / MEL_THUMBS, thumbs[order])
