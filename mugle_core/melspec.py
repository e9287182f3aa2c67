"""The mel-spectrogram front end, matching the Melon dataset's own mels.

Every parameter lives in :class:`MelParams`; training records ``MelParams().as_dict()`` in the
manifest so a version says which front end its audio models saw. The computation is pure numpy
(no torch, no scipy) because it runs in the serving process.

The pipeline for one clip:

1. mix to mono (mean of the channels);
2. choose the excerpt (:func:`clip_window`): ``duration_s`` seconds from ``offset_s`` as the dataset
   did (seconds 20 to 50), or, for a clip too short for that, the ``duration_s`` seconds that start
   as close to ``offset_s`` as the clip allows (so a 40 s clip gives seconds 10 to 40), or the whole
   clip when it is shorter than ``duration_s`` (fewer frames, as a few dataset mels have);
3. resample to ``sample_rate`` with a band-limited FFT resampler (an ideal low-pass at the lower
   Nyquist), using real audio around the excerpt as context where the clip has it;
4. short-time power spectrum: frames of ``n_fft`` samples centred every ``hop`` samples (frame ``t``
   is centred on excerpt sample ``t * hop``, so 30 s at 16 kHz gives 1 + 480000 / 256 = 1876 frames),
   Hann window, ``|rfft|**2`` of the unscaled FFT;
5. Slaney mel filterbank (linear below 1 kHz, logarithmic above) with unit-area triangles (each
   triangle's peak is ``2 / (f_high - f_low)`` in 1/Hz);
6. ``10 * log10(max(power, amin))``: dB relative to a power of 1, floored at ``10*log10(amin)``.

Steps 4 to 6 equal ``librosa.feature.melspectrogram(sr=16000, n_fft=512, hop_length=256, n_mels=48,
htk=False, norm="slaney", center=True, pad_mode="constant")`` followed by
``librosa.power_to_db(ref=1.0, amin=1e-10, top_db=None)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Extra seconds read on each side of the excerpt so the resampler's edges and the first and last
# frames see real audio rather than an artificial cut.
CONTEXT_S = 0.25


@dataclass(frozen=True)
class MelParams:
    """Parameters of the mel front end (defaults: the Melon dataset's mels).

    Attributes
    ----------
    sample_rate : int
        Rate the audio is resampled to, in Hz.
    n_fft : int
        Frame length and FFT size, in samples.
    hop : int
        Hop between frame centres, in samples.
    window : str
        Window name; only ``"hann"`` (periodic) is implemented.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Frequency range of the filterbank in Hz; ``fmax`` of 0 means ``sample_rate / 2``.
    mel_scale : str
        ``"slaney"`` (linear below 1 kHz, logarithmic above).
    norm : str
        ``"slaney"``: unit-area triangles.
    amin : float
        Power floor before the logarithm.
    offset_s, duration_s : float
        The excerpt: ``duration_s`` seconds starting at ``offset_s``.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 256
    window: str = "hann"
    n_mels: int = 48
    fmin: float = 0.0
    fmax: float = 8000.0
    mel_scale: str = "slaney"
    norm: str = "slaney"
    amin: float = 1e-10
    offset_s: float = 20.0
    duration_s: float = 30.0

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be positive, got {self.sample_rate}")
        if self.n_fft <= 0 or self.hop <= 0:
            problems.append(f"n_fft and hop must be positive, got {self.n_fft}, {self.hop}")
        if self.window != "hann":
            problems.append(f"window {self.window!r} is not supported (only 'hann')")
        if self.mel_scale != "slaney" or self.norm != "slaney":
            problems.append("mel_scale and norm must be 'slaney'")
        if self.n_mels <= 0:
            problems.append(f"n_mels must be positive, got {self.n_mels}")
        top = self.fmax or self.sample_rate / 2
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            problems.append(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}")
        if self.amin <= 0:
            problems.append(f"amin must be positive, got {self.amin}")
        if self.offset_s < 0 or self.duration_s <= 0:
            problems.append(f"need offset_s >= 0 and duration_s > 0, got {self.offset_s}, {self.duration_s}")
        if problems:
            raise ValueError("MelParams: " + "; ".join(problems))

    @property
    def frames(self) -> int:
        """Frames of a full excerpt (1876 for the defaults)."""
        return 1 + int(round(self.duration_s * self.sample_rate)) // self.hop

    @property
    def floor_db(self) -> float:
        """The lowest value a mel can hold (-100 dB for the defaults)."""
        return float(10.0 * np.log10(self.amin))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters for the manifest (with the derived frame count)."""
        data = asdict(self)
        data["frames"] = self.frames
        data["db"] = "10*log10(max(power, amin))"
        return data


# -- mel scale and filterbank --------------------------------------------------------------------------

_F_SP = 200.0 / 3  # Hz per mel in the linear part of the Slaney scale
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray | float) -> np.ndarray:
    """Slaney mel of frequencies in Hz."""
    f = np.asarray(freqs, dtype=np.float64)
    mels = f / _F_SP
    log_part = f >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Frequencies in Hz of Slaney mels."""
    m = np.asarray(mels, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


_FILTERBANKS: dict[MelParams, np.ndarray] = {}


def mel_filterbank(params: MelParams = MelParams()) -> np.ndarray:
    """The ``(n_mels, n_fft // 2 + 1)`` float32 filterbank with unit-area triangles."""
    cached = _FILTERBANKS.get(params)
    if cached is not None:
        return cached
    fmax = params.fmax or params.sample_rate / 2
    fft_freqs = np.linspace(0.0, params.sample_rate / 2, params.n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(params.fmin), hz_to_mel(fmax), params.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    empty = np.flatnonzero(weights.max(axis=1) == 0)
    if empty.size:
        # Narrow low bands can fall between FFT bins; they then always read the floor.
        logger.warning("mel filterbank: bands %s cover no FFT bin (n_fft=%d too small)", empty.tolist(), params.n_fft)
    fb = weights.astype(np.float32)
    _FILTERBANKS[params] = fb
    return fb


# -- excerpt, resampling, STFT ------------------------------------------------------------------------


def clip_window(n_samples: int, sr: int, params: MelParams = MelParams()) -> tuple[int, int]:
    """The excerpt ``[start, stop)`` of a clip of ``n_samples`` at ``sr`` Hz, in the clip's samples.

    ``duration_s`` seconds from ``offset_s`` when the clip is long enough; otherwise the
    ``duration_s`` seconds that start as late as possible up to ``offset_s``; the whole clip when it
    is shorter than ``duration_s``.
    """
    if n_samples < 0 or sr <= 0:
        raise ValueError(f"clip_window: need n_samples >= 0 and sr > 0, got {n_samples}, {sr}")
    length = int(round(params.duration_s * sr))
    if n_samples <= length:
        return 0, n_samples
    start = min(int(round(params.offset_s * sr)), n_samples - length)
    return start, start + length


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mono float64 signal from ``(n,)`` or ``(n, channels)`` samples (soundfile's layout).

    Integer samples are scaled to [-1, 1) by their type's range.
    """
    x = np.asarray(samples)
    if x.ndim not in (1, 2):
        raise ValueError(f"samples must have shape (n,) or (n, channels), got {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        scale = float(-np.iinfo(x.dtype).min) if np.issubdtype(x.dtype, np.signedinteger) else None
        if scale is None:
            raise ValueError(f"unsigned integer samples ({x.dtype}) are not supported")
        x = x.astype(np.float64) / scale
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64, copy=False)
    else:
        raise ValueError(f"samples must be numeric, got dtype {x.dtype}")
    if x.ndim == 2:
        # A matrix-vector product: several times faster than mean(axis=1) over interleaved channels.
        x = x @ np.full(x.shape[1], 1.0 / x.shape[1])
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contain NaN or infinite values")
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of a mono signal by FFT (ideal low-pass at the lower Nyquist).

    The output has ``round(len(x) * sr_out / sr_in)`` samples. The FFT treats the signal as
    periodic; callers pad or give context so the wrap-around sits away from the samples they keep.
    """
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float64)
    n_in = len(x)
    n_out = int(round(n_in * sr_out / sr_in))
    if n_in == 0 or n_out == 0:
        return np.zeros(n_out, dtype=np.float64)
    # Zero-pad to a length whose FFTs are fast at both rates and map onto whole output samples:
    # a multiple of sr_in/g (g = gcd) by a 5-smooth factor. 44.1 kHz clips otherwise hit slow sizes.
    g = math.gcd(int(sr_in), int(sr_out))
    step_in, step_out = int(sr_in) // g, int(sr_out) // g
    m = _next_smooth(-(-n_in // step_in))
    n_pad_in, n_pad_out = step_in * m, step_out * m
    spec = np.fft.rfft(x, n=n_pad_in)
    keep = min(len(spec), n_pad_out // 2 + 1)
    out_spec = np.zeros(n_pad_out // 2 + 1, dtype=np.complex128)
    out_spec[:keep] = spec[:keep]
    if n_pad_out < n_pad_in and n_pad_out % 2 == 0:
        # The new Nyquist bin must be real, or irfft drops its imaginary part inconsistently.
        out_spec[-1] = out_spec[-1].real
    return np.fft.irfft(out_spec, n=n_pad_out)[:n_out] * (n_pad_out / n_pad_in)


def _next_smooth(n: int) -> int:
    """Smallest integer >= n with no prime factor above 5."""
    best = None
    p5 = 1
    while p5 < 2 * n:
        p35 = p5
        while p35 < 2 * n:
            p = p35
            while p < n:
                p *= 2
            best = p if best is None or p < best else best
            p35 *= 3
        p5 *= 5
    return max(1, best or 1)


def power_to_db(power: np.ndarray, params: MelParams = MelParams()) -> np.ndarray:
    """``10 * log10(max(power, amin))`` as float32."""
    # float64 so the floor is exactly 10*log10(amin), not a float32 rounding of it.
    return (10.0 * np.log10(np.maximum(np.asarray(power, dtype=np.float64), params.amin))).astype(np.float32)


def _frames_power(y: np.ndarray, lead: int, n_frames: int, params: MelParams) -> np.ndarray:
    """Power spectra ``(n_frames, n_fft//2+1)`` of frames centred at ``lead + t * hop`` in ``y``."""
    half = params.n_fft // 2
    # Zero-pad so every frame is inside; where ``y`` has real context the padding is never read.
    pad_left = max(0, half - lead)
    last_end = lead + (n_frames - 1) * params.hop + params.n_fft - half
    pad_right = max(0, last_end - len(y))
    if pad_left or pad_right:
        y = np.pad(y, (pad_left, pad_right))
    first = lead + pad_left - half
    windows = np.lib.stride_tricks.sliding_window_view(y[first:], params.n_fft)[:: params.hop][:n_frames]
    hann = np.hanning(params.n_fft + 1)[:-1]  # periodic Hann, as spectral front ends use
    spectrum = np.fft.rfft(windows * hann, axis=1)
    return spectrum.real**2 + spectrum.imag**2


def segment_to_mel(
    samples: np.ndarray,
    sr: int,
    start: int,
    stop: int,
    params: MelParams = MelParams(),
) -> np.ndarray:
    """Mel of ``samples[start:stop]``, using samples outside that range as context.

    Parameters
    ----------
    samples : np.ndarray
        ``(n,)`` or ``(n, channels)`` audio at ``sr`` Hz (float in [-1, 1] or signed integers).
    sr : int
        Sample rate of ``samples`` in Hz.
    start, stop : int
        The excerpt, in samples of ``samples``. Lets a caller that decoded only part of a file
        (the excerpt plus some context) get exactly what :func:`audio_to_mel` gives on the whole clip.
    params : MelParams
        Front-end parameters.

    Returns
    -------
    np.ndarray
        ``(n_mels, T)`` float32 in dB, ``T = 1 + n_out // hop`` where ``n_out`` is the excerpt's
        length at ``params.sample_rate``.
    """
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    x = to_mono(samples)
    if not 0 <= start < stop <= len(x):
        raise ValueError(f"excerpt [{start}, {stop}) is empty or outside the clip of {len(x)} samples")
    ctx = int(round(CONTEXT_S * sr))
    lo, hi = max(0, start - ctx), min(len(x), stop + ctx)
    # Zeros beyond the clip's ends: the resampler then sees silence, not a wrapped-around signal.
    piece = np.pad(x[lo:hi], (ctx - (start - lo), ctx - (hi - stop)))
    y = resample(piece, sr, params.sample_rate)
    ratio = params.sample_rate / sr
    lead = int(round(ctx * ratio))
    n_out = int(round((stop - start) * ratio))
    n_frames = 1 + n_out // params.hop
    power = _frames_power(y, lead, n_frames, params)
    mel = mel_filterbank(params) @ power.T.astype(np.float32)
    return power_to_db(mel, params)


def audio_to_mel(samples: np.ndarray, sr: int, params: MelParams = MelParams()) -> np.ndarray:
    """The dataset-style mel of a whole clip.

    Parameters
    ----------
    samples : np.ndarray
        ``(n,)`` or ``(n, channels)`` audio at ``sr`` Hz.
    sr : int
        Sample rate in Hz.
    params : MelParams
        Front-end parameters; the excerpt is chosen by :func:`clip_window`.

    Returns
    -------
    np.ndarray
        ``(n_mels, T)`` float32 dB; ``T == params.frames`` (1876) when the clip lasts at least
        ``duration_s`` seconds.
    """
    n = int(np.asarray(samples).shape[0]) if np.ndim(samples) else 0
    if n == 0:
        raise ValueError("samples are empty")
    start, stop = clip_window(n, sr, params)
    return segment_to_mel(samples, sr, start, stop, params)
