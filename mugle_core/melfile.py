"""The dataset's mel files: where they lie, their shape, and a reader that never raises.

A song's mel is ``arena_mel/<id // 1000>/<id>.npy`` under the dataset root: a (48, 1876) float array
(48 mel bands, 1876 frames), saved without pickle. Training reads them to learn the audio models and to
draw thumbnails; the service's audio front end (:mod:`mugle_core.melspec`) makes the same shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MEL_DIR = "arena_mel"
MEL_BANDS = 48
MEL_FRAMES = 1876


def mel_path(root: Path, song_id: int) -> Path:
    """The mel file of ``song_id`` under the dataset folder ``root``."""
    return Path(root) / MEL_DIR / str(song_id // 1000) / f"{song_id}.npy"


def load_mel(path: Path, frames: int = MEL_FRAMES, min_frames: int = 64) -> tuple[np.ndarray | None, str]:
    """Load one mel safely.

    Returns ``(mel, status)`` with status ``ok``, ``padded`` (shorter than ``frames``: edge-padded),
    ``missing``, ``unreadable``, ``bad shape`` or ``too short``; ``mel`` is float32 ``(48, frames)``
    or None. Longer mels are cut to ``frames``. Never raises for a bad file.
    """
    path = Path(path)
    if not path.is_file():
        return None, "missing"
    try:
        mel = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None, "unreadable"
    if mel.ndim != 2 or mel.shape[0] != MEL_BANDS or not np.issubdtype(mel.dtype, np.number):
        return None, "bad shape"
    mel = mel.astype(np.float32, copy=False)
    if not np.isfinite(mel).all():
        return None, "unreadable"
    n = mel.shape[1]
    if n < min_frames:
        return None, "too short"
    if n < frames:
        return np.pad(mel, ((0, 0), (0, frames - n)), mode="edge"), "padded"
    return np.ascontiguousarray(mel[:, :frames]), "ok"
