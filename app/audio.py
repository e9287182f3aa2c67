"""Query by audio: read an uploaded clip or mel safely, and embed it with the version's audio models.

Reading an upload
    :func:`read_upload` takes the raw bytes of an upload and returns a ``(48, T)`` float32 mel.
    A ``.npy`` file (recognised by its magic bytes, not its name) is taken as a mel and validated;
    anything else is decoded with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3 and more) and
    turned into a mel by :mod:`mugle_core.melspec`. Decoding runs in a separate process forked from a
    forkserver, so a file that makes the decoder loop, crash or eat memory costs that child only:
    after ``decode_timeout_s`` it is killed and the request gets a 422. Only the excerpt the mel
    needs (30 s plus a little context) is decoded, so a 10-minute upload costs no more than a
    30-second one.

Embedding
    torch is imported here lazily, on the first embedding (or by :func:`preload`): the plain serving
    path never imports it. The TCAE encoder and the CEL audio-only branch are loaded from
    ``<version>/models`` and cached per version folder, so a hot swap of artifacts gets new models.

Errors
    :class:`AudioInputError` carries the HTTP status and a detail naming what was wrong with the
    upload; :class:`AudioModelsUnavailable` says the served version cannot embed audio (503).
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf  # at module level so the forkserver preloads it and each decoder child starts warm

from mugle_core.artifacts import MODELS_DIR
from mugle_core.melspec import CONTEXT_S, MelParams, audio_to_mel, clip_window, segment_to_mel

logger = logging.getLogger(__name__)

NPY_MAGIC = b"\x93NUMPY"
# Same floor as training's reader (mugle_nets.mels.MIN_FRAMES): fewer frames carry too little of a song.
MIN_FRAMES = 32
# Versions whose audio models stay loaded; older ones are dropped so a hot swap frees memory.
CACHED_VERSIONS = 2
DEFAULT_PARAMS = MelParams()


class AudioInputError(ValueError):
    """The upload cannot be used; ``status`` is the HTTP code, ``detail`` says why."""

    def __init__(self, status: int, detail: str) -> None:
        # Both values go to Exception.__init__ so the error pickles across the decoder process.
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class AudioModelsUnavailable(RuntimeError):
    """The served artifacts version cannot embed audio (models missing, or torch not installed)."""


@dataclass(frozen=True)
class AudioLimits:
    """Bounds on one upload.

    Attributes
    ----------
    max_bytes : largest upload accepted.
    max_seconds : longest audio clip accepted.
    decode_timeout_s : wall-clock bound on decoding one clip (the decoder process is killed after it).
    min_frames : fewest mel frames accepted (32 frames are about half a second).
    """

    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 600.0
    decode_timeout_s: float = 10.0
    min_frames: int = MIN_FRAMES

    @property
    def max_frames(self) -> int:
        """Most frames a ``.npy`` mel may have: as many as the longest accepted clip."""
        p = MelParams()
        return 1 + int(self.max_seconds * p.sample_rate) // p.hop


# -- .npy mels ----------------------------------------------------------------------------------------


def load_npy_mel(data: bytes, limits: AudioLimits = AudioLimits(), params: MelParams = DEFAULT_PARAMS) -> np.ndarray:
    """Validate a ``.npy`` upload as a mel of shape ``(n_mels, T)``; never unpickles anything.

    Raises
    ------
    AudioInputError
        422 naming the problem: unreadable, pickled/object data, wrong dtype, wrong shape,
        too few or too many frames, NaN or infinite values.
    """
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise AudioInputError(422, "file: .npy holds pickled Python objects, which are refused; "
                                  "save a numeric array (np.save(path, mel, allow_pickle=False))") from exc
        raise AudioInputError(422, f"file: not a readable .npy array ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise AudioInputError(422, f"file: truncated or corrupt .npy ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise AudioInputError(422, "file: expected a single .npy array")
    if arr.dtype.kind not in "fiu":
        raise AudioInputError(422, f"file: mel dtype must be a real number type, got {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] != params.n_mels:
        raise AudioInputError(422, f"file: mel must have shape ({params.n_mels}, T), got {tuple(arr.shape)}")
    frames = arr.shape[1]
    if frames < limits.min_frames:
        raise AudioInputError(422, f"file: mel has {frames} frames, at least {limits.min_frames} are needed")
    if frames > limits.max_frames:
        raise AudioInputError(422, f"file: mel has {frames} frames, at most {limits.max_frames} are accepted")
    mel = arr.astype(np.float32)
    if not np.isfinite(mel).all():
        raise AudioInputError(422, "file: mel contains NaN or infinite values")
    return mel


# -- audio decoding (runs in the child process) -------------------------------------------------------


def decode_to_mel(data: bytes, max_seconds: float, params: MelParams = DEFAULT_PARAMS) -> tuple[np.ndarray, dict]:
    """Decode an audio file and compute its dataset-style mel, reading only the excerpt it needs.

    Returns
    -------
    mel : ``(n_mels, T)`` float32.
    info : ``{"format", "sample_rate", "channels", "seconds", "excerpt": [start_s, stop_s]}``.

    Raises
    ------
    AudioInputError
        415 when the bytes are not audio libsndfile can read; 422 for an empty or too long clip.
    """
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # libsndfile's message starts with the repr of the buffer object, which says nothing useful.
        reason = str(exc).rsplit(">: ", 1)[-1]
        raise AudioInputError(
            415, f"file: not a recognised audio format (WAV, FLAC, OGG or MP3 expected; decoder says: {reason})"
        ) from exc
    with handle:
        sr, channels, n = int(handle.samplerate), int(handle.channels), int(handle.frames)
        fmt = str(handle.format)
        if sr <= 0 or channels <= 0:
            raise AudioInputError(422, f"file: invalid audio header (sample rate {sr}, channels {channels})")
        if n <= 0:
            raise AudioInputError(422, "file: the audio clip contains no samples")
        if n / sr > max_seconds:
            raise AudioInputError(
                422, f"file: clip lasts {n / sr:.1f} s, longer than the limit of {max_seconds:.0f} s"
            )
        start, stop = clip_window(n, sr, params)
        ctx = int(round(CONTEXT_S * sr))
        lo, hi = max(0, start - ctx), min(n, stop + ctx)
        try:
            if lo:
                handle.seek(lo)
            samples = handle.read(hi - lo, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioInputError(422, f"file: audio data is corrupt ({exc})") from exc
    if len(samples) < hi - lo:
        # The header promised more frames than the data holds (a truncated file): use what is there.
        logger.info("audio upload truncated: header says %d frames, read %d from %d", n, len(samples), lo)
        if lo:
            return decode_whole(data, max_seconds, params)
        if len(samples) == 0:
            raise AudioInputError(422, "file: the audio clip contains no readable samples")
        mel = audio_to_mel(samples, sr, params)
        n = len(samples)
        start, stop = clip_window(n, sr, params)
    else:
        mel = segment_to_mel(samples, sr, start - lo, stop - lo, params)
    info = {
        "format": fmt,
        "sample_rate": sr,
        "channels": channels,
        "seconds": round(n / sr, 3),
        "excerpt": [round(start / sr, 3), round(stop / sr, 3)],
    }
    return mel, info


def decode_whole(data: bytes, max_seconds: float, params: MelParams = DEFAULT_PARAMS) -> tuple[np.ndarray, dict]:
    """Fallback for files whose header misstates their length: decode everything, then take the excerpt."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            sr = int(handle.samplerate)
            samples = handle.read(int(max_seconds * sr) + 1, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioInputError(422, f"file: audio data is corrupt ({exc})") from exc
    if len(samples) == 0:
        raise AudioInputError(422, "file: the audio clip contains no readable samples")
    if len(samples) / sr > max_seconds:
        raise AudioInputError(422, f"file: clip is longer than the limit of {max_seconds:.0f} s")
    start, stop = clip_window(len(samples), sr, params)
    info = {"format": "unknown", "sample_rate": sr, "channels": samples.shape[1],
            "seconds": round(len(samples) / sr, 3), "excerpt": [round(start / sr, 3), round(stop / sr, 3)]}
    return audio_to_mel(samples, sr, params), info


def _child_main(conn: Any, data: bytes, max_seconds: float, params: MelParams) -> None:
    """Entry point of the decoder process: send back ("ok", mel, info) or ("error", status, detail)."""
    try:
        mel, info = decode_to_mel(data, max_seconds, params)
        conn.send(("ok", mel, info))
    except AudioInputError as exc:
        conn.send(("error", exc.status, exc.detail))
    except Exception as exc:  # any decoder failure is the upload's fault, never the server's
        conn.send(("error", 422, f"file: cannot decode audio ({type(exc).__name__}: {exc})"))
    finally:
        conn.close()


_CTX_LOCK = threading.Lock()
_CTX: Any = None


def _context() -> Any:
    """A forkserver context: children fork from a clean single-threaded server, not from this
    multi-threaded process (forking a process with FAISS/OpenMP or torch threads can deadlock)."""
    global _CTX
    with _CTX_LOCK:
        if _CTX is None:
            ctx = multiprocessing.get_context("forkserver")
            # "__main__" first: the server imports the main module once, so each child skips it.
            ctx.set_forkserver_preload(["__main__", "app.audio"])
            _CTX = ctx
        return _CTX


def decode_isolated(
    data: bytes, limits: AudioLimits = AudioLimits(), params: MelParams = DEFAULT_PARAMS
) -> tuple[np.ndarray, dict]:
    """Run :func:`decode_to_mel` in a child process bounded by ``limits.decode_timeout_s``.

    Raises
    ------
    AudioInputError
        the child's error, 422 when it crashed, or 422 when it ran out of time (it is killed).
    """
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, data, limits.max_seconds, params), daemon=True)
    started = time.perf_counter()
    proc.start()
    send.close()
    try:
        # Wait for the answer, not for the exit: a child blocked on sending a big mel never exits.
        if not recv.poll(limits.decode_timeout_s):
            raise AudioInputError(
                422, f"file: decoding took longer than {limits.decode_timeout_s:g} s and was stopped"
            )
        try:
            message = recv.recv()
        except (EOFError, OSError) as exc:
            raise AudioInputError(422, "file: the audio decoder crashed on this file") from exc
    finally:
        recv.close()
        if proc.is_alive():
            proc.join(0.5)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
    logger.debug("decoded upload in %.3fs", time.perf_counter() - started)
    if message[0] == "ok":
        return message[1], message[2]
    raise AudioInputError(int(message[1]), str(message[2]))


def read_upload(
    data: bytes, limits: AudioLimits = AudioLimits(), params: MelParams = DEFAULT_PARAMS
) -> tuple[np.ndarray, dict]:
    """Turn an upload's bytes into a mel.

    Returns
    -------
    mel : ``(n_mels, T)`` float32 in dB.
    info : ``{"kind": "mel" | "audio", ...}`` describing the input (format, duration, excerpt).

    Raises
    ------
    AudioInputError
        400 for an empty file, 413 for a file over ``limits.max_bytes``, 415 for bytes that are
        neither a ``.npy`` nor audio, 422 for everything else that is wrong with the content.
    """
    if len(data) == 0:
        raise AudioInputError(400, "file: the upload is empty")
    if len(data) > limits.max_bytes:
        raise AudioInputError(413, f"file: {len(data)} bytes, more than the limit of {limits.max_bytes} bytes")
    if data[: len(NPY_MAGIC)] == NPY_MAGIC:
        mel = load_npy_mel(data, limits, params)
        return mel, {"kind": "mel", "frames": int(mel.shape[1])}
    mel, info = decode_isolated(data, limits, params)
    if mel.shape[1] < limits.min_frames:
        raise AudioInputError(
            422, f"file: clip is too short ({info['seconds']} s gives {mel.shape[1]} mel frames, "
            f"at least {limits.min_frames} are needed)"
        )
    return mel, {"kind": "audio", **info}


# -- embedding (torch, lazily) ------------------------------------------------------------------------


class AudioEmbedders:
    """The TCAE encoder and CEL audio-only branch of one artifacts version."""

    def __init__(self, models_dir: Path, tcae: Any, cel: Any | None, seconds: float) -> None:
        self.models_dir = models_dir
        self.tcae = tcae
        self.cel = cel
        self.load_seconds = seconds

    @classmethod
    def load(cls, version_dir: Path) -> AudioEmbedders:
        """Load both models from ``<version_dir>/models`` (imports torch).

        Raises
        ------
        AudioModelsUnavailable
            naming the missing file, or saying that torch is not installed.
        """
        models_dir = Path(version_dir) / MODELS_DIR
        started = time.perf_counter()
        try:
            from mugle_nets.tcae import TCAEEmbedder
        except ImportError as exc:
            raise AudioModelsUnavailable(
                f"query by audio needs torch and the training package ({exc}); install the 'train' extra"
            ) from exc
        try:
            tcae = TCAEEmbedder.load(models_dir, device="cpu")
        except (FileNotFoundError, ValueError) as exc:
            raise AudioModelsUnavailable(f"TCAE model of {version_dir} cannot be loaded: {exc}") from exc
        cel = None
        try:
            from mugle_nets.cel import CELEmbedder

            cel = CELEmbedder.load(models_dir)
        except ImportError as exc:
            logger.warning("CEL embedder unavailable (%s): audio queries rank with TCAE only", exc)
        except (FileNotFoundError, ValueError) as exc:
            logger.warning("CEL model of %s cannot be loaded (%s): audio queries rank with TCAE only",
                           version_dir, exc)
        seconds = time.perf_counter() - started
        logger.info("audio models of %s loaded in %.2fs", version_dir, seconds)
        return cls(models_dir, tcae, cel, seconds)

    def embed(self, mel: np.ndarray) -> dict[str, np.ndarray]:
        """Query vectors of one mel: ``{"tcae": (128,), "cel": (128,)}`` (``cel`` absent without a model)."""
        tcae = np.asarray(self.tcae.embed([mel]), dtype=np.float32)
        out = {"tcae": tcae[0]}
        if self.cel is not None:
            out["cel"] = np.asarray(self.cel.embed(w2v=None, tcae=tcae), dtype=np.float32)[0]
        return out


_CACHE: OrderedDict[str, AudioEmbedders] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def embedders_for(version_dir: Path) -> AudioEmbedders:
    """The cached :class:`AudioEmbedders` of a version folder, loading them on first use.

    The lock is held while loading so concurrent first requests load once, not once each.
    """
    key = str(Path(version_dir).resolve())
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
        loaded = AudioEmbedders.load(Path(version_dir))
        _CACHE[key] = loaded
        while len(_CACHE) > CACHED_VERSIONS:
            old, _ = _CACHE.popitem(last=False)
            logger.info("audio models of %s released", old)
        return loaded


def preload(version_dir: Path) -> bool:
    """Load the audio models now (the ``preload_audio`` setting); False, with a warning, when unavailable."""
    try:
        embedders_for(version_dir)
    except AudioModelsUnavailable as exc:
        logger.warning("preload_audio: %s", exc)
        return False
    return True


def mel_picture(mel: np.ndarray, max_frames: int = 256, range_db: float = 80.0) -> dict[str, Any]:
    """A small picture of a mel for the web page: uint8 values, band-major, lowest band first.

    Time is averaged down to at most ``max_frames`` columns; 255 is the loudest cell, 0 is
    ``range_db`` below it or quieter.
    """
    bands, frames = mel.shape
    cols = min(max_frames, frames)
    edges = np.linspace(0, frames, cols + 1).astype(int)
    pooled = np.add.reduceat(mel, edges[:-1], axis=1) / np.diff(edges)[None, :]
    top = float(pooled.max())
    scaled = np.clip((pooled - (top - range_db)) / range_db, 0.0, 1.0)
    values = np.round(scaled * 255).astype(np.uint8)
    return {
        "bands": int(bands),
        "frames": int(cols),
        "source_frames": int(frames),
        "max_db": round(top, 2),
        "range_db": range_db,
        "values": values.reshape(-1).tolist(),
    }
