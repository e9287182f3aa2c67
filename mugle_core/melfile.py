"""The dataset's mel files: where they lie, their shape, and a reader that never raises.

A song's mel is ``arena_mel/<id // 1000>/<id>.npy`` under the dataset root: a (48, 1876) float array
(48 mel bands, 1876 frames), saved without pickle. Training reads them to learn the audio models and to
draw thumbnails; the service's audio front end (:mod:`mugle_core.melspec`) makes the same shape.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np

MEL_DIR = "arena_mel"
# The mel geometry, stated once: training's reader, the networks, the demo generator and the service's
# audio front end all take these values from here.
MEL_BANDS = 48  # Slaney mel bands (the scale itself is in mugle_core.melspec.hz_to_mel)
MEL_FRAMES = 1876  # frames of a dataset mel: 30 s at 16 kHz with hop 256, centred (1 + 480000 // 256)
# Fewest frames a mel may have (32 frames are about half a second): a shorter clip carries too little of
# a song to embed. Training rejects such files as too short; the audio endpoint answers 422.
MIN_MEL_FRAMES = 32


def mel_path(root: Path, song_id: int) -> Path:
    """The mel file of ``song_id`` under the dataset folder ``root``."""
    return Path(root) / MEL_DIR / str(song_id // 1000) / f"{song_id}.npy"


def load_mel(
    path: Path, frames: int = MEL_FRAMES, min_frames: int = MIN_MEL_FRAMES
) -> tuple[np.ndarray | None, str]:
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
    mel = as_float32(mel)
    if not np.isfinite(mel).all():
        return None, "unreadable"
    n = mel.shape[1]
    if n < min_frames:
        return None, "too short"
    if n < frames:
        return np.pad(mel, ((0, 0), (0, frames - n)), mode="edge"), "padded"
    return np.ascontiguousarray(mel[:, :frames]), "ok"


# Every float16 value as float32, by its bits: numpy casts float16 one element at a time (about 3 ns each
# here), a lookup in this 256 KiB table costs about half that and gives the same bits, NaN and -0 included.
_HALF_TO_SINGLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def as_float32(a: np.ndarray) -> np.ndarray:
    """``a`` as float32 (the same values :meth:`numpy.ndarray.astype` gives); float32 input is returned as is."""
    if a.dtype == np.float16:
        return _HALF_TO_SINGLE.take(a.view(np.uint16))
    return a.astype(np.float32, copy=False)


# Parsed .npy headers by their raw bytes: every mel of a dataset has the same one, so each is parsed once.
_HEADERS: dict[bytes, tuple[int, np.dtype, tuple[int, ...], bool] | None] = {}
_HEADER_PEEK = 128  # numpy pads a version 1 header to a multiple of 64 bytes; a (48, n) one takes 128


def _npy_header(head: bytes) -> tuple[int, np.dtype, tuple[int, ...], bool] | None:
    """``(data offset, dtype, shape, fortran order)`` of a .npy file from its first bytes, or None."""
    if head in _HEADERS:
        return _HEADERS[head]
    parsed = None
    try:
        stream = io.BytesIO(head)
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            parsed = (stream.tell(), dtype, shape, fortran)
    except (ValueError, OSError, EOFError):
        parsed = None
    if len(_HEADERS) < 64:
        _HEADERS[head] = parsed
    return parsed


def read_mel_window(
    path: Path | str, bands: tuple[int, int], window: tuple[int, int], frames: int = MEL_FRAMES,
) -> np.ndarray | None:
    """Read only bands ``bands[0]..bands[1] - 1`` and frames ``window[0]..window[1] - 1`` of one mel.

    The part :func:`load_mel` would give for the same file (after its padding or cut to ``frames``),
    float32, or None when :func:`load_mel` would give none. A plain (48, n >= ``frames``) C-order float
    file is read with one ``preadv`` of the wanted bands into a buffer reused by the thread (about two
    thirds of the file for a 32-band window; allocating a fresh buffer each time costs more than the read)
    and only the window is converted; anything else goes through :func:`load_mel`. Only the window is
    checked for non-finite values. Never raises for a bad file.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        head = os.pread(fd, _HEADER_PEEK, 0)
        info = _npy_header(head)
        if info is not None:
            offset, dtype, shape, fortran = info
            if (not fortran and len(shape) == 2 and shape[0] == MEL_BANDS and shape[1] >= frames
                    and dtype.kind == "f" and dtype.isnative):
                row = shape[1] * dtype.itemsize
                want = (bands[1] - bands[0]) * row
                buf = _buffer(want)
                if os.preadv(fd, [buf], offset + bands[0] * row) == want:
                    part = np.frombuffer(buf, dtype=dtype, count=want // dtype.itemsize)
                    part = as_float32(part.reshape(bands[1] - bands[0], shape[1])[:, window[0]:window[1]])
                    return part if np.isfinite(part).all() else None
    except OSError:
        return None
    finally:
        os.close(fd)
    mel, _status = load_mel(Path(path), frames=frames)
    return None if mel is None else np.ascontiguousarray(mel[bands[0]:bands[1], window[0]:window[1]])


_local = threading.local()


def _buffer(size: int) -> bytearray:
    """This thread's read buffer, at least ``size`` bytes (the caller copies out of it before the next read)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = bytearray(size)
    return buf
