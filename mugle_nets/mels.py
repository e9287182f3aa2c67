"""Mel-spectrogram input for the audio models: safe loading, per-band statistics, streaming datasets.

The real dataset holds about 240 GB of mels (48 bands x 1876 frames per song), so nothing here ever
loads all of them: statistics are accumulated over a sample of files, and the datasets read one file
per item inside the DataLoader workers. A missing, unreadable, malformed or too-short file never
crashes a run; each item carries a status code and the caller counts them (workers are separate
processes, so counting must happen where the batches arrive).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mugle_core import melfile as _melfile

logger = logging.getLogger(__name__)

N_MELS = 48
FRAMES = 1876
# Below this many frames a clip carries too little of the song to be worth embedding.
MIN_FRAMES = 32
STATS_FILE = "mel_stats.npz"

# Status codes travel through DataLoader batches as integers.
STATUSES: tuple[str, ...] = ("ok", "short", "missing", "unreadable", "bad_shape", "too_short")
OK, SHORT, MISSING, UNREADABLE, BAD_SHAPE, TOO_SHORT = range(len(STATUSES))
USABLE = (OK, SHORT)


def mel_path(root: Path, song_id: int) -> Path:
    """Where the Melon layout keeps a song's mel: ``arena_mel/<id // 1000>/<id>.npy``."""
    return _melfile.mel_path(Path(root), int(song_id))


# The dataset reader's statuses -> ours.
_STATUS_MAP = {
    "ok": OK,
    "padded": SHORT,
    "missing": MISSING,
    "unreadable": UNREADABLE,
    "bad shape": BAD_SHAPE,
    "too short": TOO_SHORT,
}


def read_mel(path: Path, min_frames: int = MIN_FRAMES) -> tuple[np.ndarray | None, int]:
    """Read one mel file without ever raising for bad data.

    Delegates to the dataset reader's :func:`mugle_core.melfile.load_mel` so that training and the
    dataset report agree on what counts as missing, unreadable or short.

    Parameters
    ----------
    path : the ``.npy`` file.
    min_frames : clips with fewer frames are rejected as ``too_short``.

    Returns
    -------
    mel : float32 array (48, 1876) with finite values (shorter clips edge-padded), or None.
    status : one of the codes in :data:`STATUSES`; ``short`` means usable but padded.
    """
    try:
        mel, status = _melfile.load_mel(Path(path), frames=FRAMES, min_frames=min_frames)
    except Exception as exc:  # a reader bug must not stop a 700k-file run; count it instead
        logger.warning("%s: mel reader failed (%s: %s)", path, type(exc).__name__, exc)
        return None, UNREADABLE
    return mel, _STATUS_MAP.get(status, UNREADABLE)


def fit_length(mel: np.ndarray, frames: int) -> np.ndarray:
    """Pad (by repeating the clip) or cut a (bands, T) array to exactly ``frames`` frames.

    Repeating rather than zero-padding keeps the padded part statistically like the song, so the
    encoder does not mistake silence for content.
    """
    t = mel.shape[1]
    if t == frames:
        return mel
    if t > frames:
        return mel[:, :frames]
    reps = -(-frames // t)
    return np.tile(mel, (1, reps))[:, :frames]


class LoadReport(Counter):
    """Counts of item statuses seen while streaming (a :class:`collections.Counter` keyed by name)."""

    def add_codes(self, codes: Iterable[int]) -> None:
        for code in codes:
            self[STATUSES[int(code)]] += 1

    @property
    def usable(self) -> int:
        return self["ok"] + self["short"]

    @property
    def skipped(self) -> int:
        return sum(v for k, v in self.items() if k not in ("ok", "short"))

    def summary(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.items()))
        return parts or "nothing read"


# -- per-band statistics ------------------------------------------------------------------------------


@dataclass
class MelStats:
    """Mean and standard deviation of each mel band, used to standardise every clip.

    Attributes
    ----------
    mean, std : float32 arrays (48,).
    files : how many files contributed.
    frames : how many frames contributed.
    """

    mean: np.ndarray
    std: np.ndarray
    files: int = 0
    frames: int = 0

    def normalise(self, mel: np.ndarray) -> np.ndarray:
        """Standardise a (48, T) mel band by band (float32)."""
        return ((mel - self.mean[:, None]) / self.std[:, None]).astype(np.float32, copy=False)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(
                fh,
                mean=self.mean.astype(np.float32),
                std=self.std.astype(np.float32),
                files=np.int64(self.files),
                frames=np.int64(self.frames),
            )

    @classmethod
    def load(cls, path: Path) -> MelStats:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: mel statistics file is missing")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("mean", "std") if k not in data.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            mean, std = data["mean"].astype(np.float32), data["std"].astype(np.float32)
            files = int(data["files"]) if "files" in data.files else 0
            frames = int(data["frames"]) if "frames" in data.files else 0
        if mean.shape != (N_MELS,) or std.shape != (N_MELS,):
            raise ValueError(f"{path}: mean/std must have shape ({N_MELS},), got {mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"{path}: mean/std must be finite and std positive")
        return cls(mean=mean, std=std, files=files, frames=frames)


def compute_mel_stats(
    paths: Sequence[Path],
    sample: int = 2000,
    seed: int = 0,
    report: LoadReport | None = None,
) -> MelStats:
    """Per-band mean/std over a random sample of files, streamed one file at a time.

    Sums are kept in float64 so that millions of frames do not lose precision; memory stays at one
    file whatever the sample size.

    Parameters
    ----------
    paths : candidate mel files.
    sample : at most this many files are read (all when fewer are given).
    seed : chooses the sample.
    report : statuses of the files read are added here when given.

    Raises
    ------
    ValueError
        When no file of the sample could be read.
    """
    paths = list(paths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(paths))[: max(0, int(sample))] if paths else np.empty(0, dtype=np.int64)
    total = np.zeros(N_MELS, dtype=np.float64)
    total_sq = np.zeros(N_MELS, dtype=np.float64)
    frames = files = 0
    report = report if report is not None else LoadReport()
    for i in np.sort(order):
        mel, status = read_mel(paths[int(i)])
        report.add_codes([status])
        if mel is None:
            continue
        m = mel.astype(np.float64)
        total += m.sum(axis=1)
        total_sq += np.square(m).sum(axis=1)
        frames += m.shape[1]
        files += 1
    if files == 0:
        raise ValueError(
            f"no readable mel among {len(order)} sampled files ({report.summary()}); "
            "check the dataset's arena_mel folder"
        )
    mean = total / frames
    var = np.maximum(total_sq / frames - np.square(mean), 0.0)
    # A constant band (e.g. a silent top band) must not divide by zero.
    std = np.sqrt(var)
    std = np.where(std < 1e-3, 1.0, std)
    logger.info("mel stats from %d files, %d frames (%s)", files, frames, report.summary())
    return MelStats(mean=mean.astype(np.float32), std=std.astype(np.float32), files=files, frames=frames)


# -- datasets -----------------------------------------------------------------------------------------


class MelCropDataset(Dataset):
    """Random crops of standardised mels for training, read from disk per item.

    Each item is ``(crop float32 (48, crop), status int, index int)``. An unusable file yields a zero
    crop with its status; :func:`usable_batch` drops those rows. The crop offset depends only on
    ``(seed, epoch, index)``, so the data stream is the same with any number of workers.

    Parameters
    ----------
    paths : mel file per item.
    stats : per-band statistics for standardisation.
    crop : frames per crop (clips shorter than this are repeated to fill it).
    seed : base of the crop offsets.
    """

    def __init__(self, paths: Sequence[Path], stats: MelStats, crop: int, seed: int = 0) -> None:
        if crop < 1:
            raise ValueError(f"crop must be positive, got {crop}")
        self.paths = [Path(p) for p in paths]
        self.stats = stats
        self.crop = int(crop)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the crop offsets (call before each pass; workers pick it up when re-created)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        mel, status = read_mel(self.paths[index])
        if mel is None:
            return torch.zeros(N_MELS, self.crop), status, index
        mel = fit_length(mel, max(self.crop, mel.shape[1]))
        rng = np.random.default_rng((self.seed, self.epoch, index))
        start = int(rng.integers(0, mel.shape[1] - self.crop + 1))
        crop = self.stats.normalise(mel[:, start : start + self.crop])
        return torch.from_numpy(np.ascontiguousarray(crop)), status, index


class MelClipDataset(Dataset):
    """Whole standardised clips, fitted to ``frames`` frames, for embedding.

    Items are ``(clip float32 (48, frames), status, index)`` like :class:`MelCropDataset`.
    """

    def __init__(self, paths: Sequence[Path], stats: MelStats, frames: int = FRAMES) -> None:
        self.paths = [Path(p) for p in paths]
        self.stats = stats
        self.frames = int(frames)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        mel, status = read_mel(self.paths[index])
        if mel is None:
            return torch.zeros(N_MELS, self.frames), status, index
        clip = self.stats.normalise(fit_length(mel, self.frames))
        return torch.from_numpy(np.ascontiguousarray(clip)), status, index


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over one of the datasets above; the shuffle order is fixed by ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        num_workers=int(workers),
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def usable_batch(
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], report: LoadReport | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the rows of a batch whose file was usable; count every status into ``report``."""
    x, status, index = batch
    if report is not None:
        report.add_codes(status.tolist())
    keep = (status == OK) | (status == SHORT)
    return x[keep], index[keep]
