"""Are two mels one recording? The audio test behind duplicate merging.

A re-release of one recording (a single and its album, an OST part and the full OST, a remaster) gives
nearly the same mel: the 30-second window may start a little earlier or later, and the level may differ
by a few dB. Another recording of the same song (live, acoustic, another language, a cover) has the same
tune but its own timing, timbre and texture, frame by frame.

The test standardises each mel band over time (removing any level change, and any fixed equalisation,
per band) and takes the correlation of the two standardised mels, averaged over bands and the frames
they share, at the best time lag within :data:`MAX_LAG_S` seconds. The lag is found on a coarse copy
(bands pooled by 4, frames by 2, cross-correlated with an FFT) and refined on the full mels over the few
lags around it, so one comparison costs well under a millisecond.

Threshold (:data:`SAME_RECORDING`), measured with ``benchmarks/bench_same_recording.py`` on the demo
catalog's mels (``mugle demo-data``, 3,000 songs, seed 0): a re-release (identical mel, or shifted by up to
1 s with a level change of up to 4 dB and 0.3 dB of noise) scores 0.97 to 1.00; another version of the
same melody (other timbre, tempo within 3 %) at most 0.51; two different songs at most 0.33. 0.8 sits in
the gap with a wide margin on both sides. See ``docs/notes/duplicates.md`` for the figures.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

FPS = 16000 / 256  # mel frames per second in the Melon layout
MAX_LAG_S = 2.0  # the largest start offset between two releases of one recording that is tolerated
MAX_LAG = int(round(MAX_LAG_S * FPS))
SAME_RECORDING = 0.35  # detail correlation at the best lag at or above which two mels are one recording
_BAND_POOL, _TIME_POOL = 4, 2
_REFINE = _TIME_POOL  # full-resolution lags tried on each side of the coarse best lag


def standardise(mel: np.ndarray) -> np.ndarray:
    """Each band to zero mean and unit variance over time (float32); a flat band becomes zeros."""
    x = np.asarray(mel, dtype=np.float32)
    x = x - x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.einsum("bt,bt->b", x, x) / max(x.shape[1], 1))[:, None]
    x *= 1.0 / np.where(std > 1e-3, std, np.inf)
    return x


class Fingerprint:
    """A mel prepared for comparison: its frame-to-frame detail, and the FFT of a coarse copy for the lag."""

    __slots__ = ("detail", "spectrum")

    def __init__(self, mel: np.ndarray) -> None:
        z = standardise(mel)
        # The detail (each band's change from one frame to the next) is what one recording shares with
        # itself and not with another performance of the same tune, whose notes come at the same places.
        self.detail = standardise(np.diff(z, axis=1))
        bands, frames = z.shape
        b = bands // _BAND_POOL * _BAND_POOL
        t = frames // _TIME_POOL * _TIME_POOL
        pooled = z[:b, :t].reshape(b // _BAND_POOL, _BAND_POOL, t).sum(1)  # one reshape-sum per axis: fast
        coarse = pooled.reshape(len(pooled), t // _TIME_POOL, _TIME_POOL).sum(2)
        coarse = standardise(coarse)
        n = 1 << int(np.ceil(np.log2(coarse.shape[1] + MAX_LAG // _TIME_POOL + 1)))
        self.spectrum = np.fft.rfft(coarse.astype(np.float64), n=n, axis=1)


def _lag_score(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """Mean product of two standardised mels where ``b`` is shifted ``lag`` frames later than ``a``."""
    t = min(a.shape[1], b.shape[1])
    if abs(lag) >= t - 16:
        return -1.0
    if lag >= 0:
        x, y = a[:, lag:t], b[:, : t - lag]
    else:
        x, y = a[:, : t + lag], b[:, -lag:t]
    return float(np.vdot(x, y)) / x.size


def similarity(a: Fingerprint, b: Fingerprint, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """Correlation of two fingerprints' detail at their best lag within ``max_lag`` frames, and that lag.

    1.0 for one mel against itself (whatever its level); near 0 for unrelated music and for another
    recording of the same tune. The lag is the number of frames by which ``b``'s window starts later in
    the recording than ``a``'s; it is found on the coarse copies and refined on the detail.
    """
    if a.spectrum.shape != b.spectrum.shape:  # mels of different lengths: compare at full resolution
        lags = range(-max_lag, max_lag + 1, _TIME_POOL)
        best = max(lags, key=lambda lag: _lag_score(a.detail, b.detail, lag))
    else:
        n = (a.spectrum.shape[1] - 1) * 2
        xcorr = np.fft.irfft((a.spectrum * np.conj(b.spectrum)).sum(0), n=n)
        coarse_lag = max_lag // _TIME_POOL
        # xcorr[k] pairs a's frame t + k with b's frame t; negative k wraps to the end.
        window = np.r_[xcorr[-coarse_lag:], xcorr[: coarse_lag + 1]]
        best = (int(np.argmax(window)) - coarse_lag) * _TIME_POOL
    lags = range(max(-max_lag, best - _REFINE), min(max_lag, best + _REFINE) + 1)
    scores = [(_lag_score(a.detail, b.detail, lag), lag) for lag in lags]
    score, lag = max(scores)
    return score, lag


def same_recording(a: np.ndarray, b: np.ndarray, threshold: float = SAME_RECORDING) -> bool:
    """True when two mels (bands x frames) are one recording: see the module docstring."""
    return similarity(Fingerprint(a), Fingerprint(b))[0] >= threshold
