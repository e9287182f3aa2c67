"""Are two mels one recording? The audio test behind duplicate merging.

A re-release of one recording (a single and its album, an OST part and the full OST, a remaster) gives
nearly the same mel: the 30-second window may start a little earlier or later (often by a fraction of a
frame), and the level may differ by a few dB. Another recording of the same song (live, acoustic, a
cover, another setting of a hymn) has its own timing and texture frame by frame.

The test looks at a window of the mel (bands 8 to 39 of 48, seconds 10 to 20 of Melon's 30-second excerpt;
:func:`analysis_window`), which the dataset reader can read alone (:func:`mugle_core.melfile.read_mel_window`).
It takes each band's change over two frames (the *detail*: what a recording shares only with itself;
a level change drops out of the difference), scales each band by its RMS (so a fixed equalisation does not
matter either), and correlates the two details, averaged over bands and the frames they share, at the best
time lag within :data:`MAX_LAG_S` seconds. The lag is found on a coarse copy (bands pooled by 4, frames by 2,
cross-correlated with an FFT) and refined on the detail over the few lags around it; lag 0 is always
scored, and :func:`matches` accepts on it alone before searching. Reading a window and preparing it costs
about 0.1 ms of CPU, a comparison about the same.

Threshold (:data:`SAME_RECORDING` = 0.55), measured with ``benchmarks/bench_duplicates.py`` (figures in
``docs/notes/duplicates.md``):

* real music (80 game-music recordings this project did not make), each 25 s excerpt against itself
  started 0 to 1 s later at any sample (so mostly between two frames), 4 dB louder or quieter, with
  faint noise: 0.71 to 1.01; against the other recordings (6,320 pairs): median 0.04, highest 0.54;
* the demo catalog: planted re-releases (identical, level-shifted, offset) 0.975 to 1.06, and 0.74 to
  0.86 when also shifted by half a frame; different songs at most 0.15; same-title pieces at most 0.08;
  planted versions median 0.19, but up to 0.72 when a version shares its lead's tempo and accompaniment.

(The whole-mel test before the window measured 0.73 to 1.00 against at most 0.58 on real music; the
window keeps the gap and costs about a sixth.)

Versions that share a backing track (an "English Ver." sung over the same instrumental) can look like
one recording by audio alone; their title markers keep them apart (:mod:`training.duplicates`), the
audio test only ever compares songs whose title keys agree.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

FPS = 16000 / 256  # mel frames per second in the Melon layout
MAX_LAG_S = 2.0  # the largest start offset between two releases of one recording that is tolerated
MAX_LAG = int(round(MAX_LAG_S * FPS))
SAME_RECORDING = 0.55  # detail correlation at the best lag at or above which two mels are one recording
# The analysis window: the test looks at bands BANDS[0]..BANDS[1] - 1 over WINDOW_S seconds starting
# WINDOW_START_S seconds into the mel (seconds 10 to 20 of Melon's 30-second excerpt), not at the whole mel:
# a third of the frames and two thirds of the bands decide as well (figures in the module docstring) and
# cost a sixth. Both mels of a pair are cut at the same place, so the lag search still sees offsets of
# up to MAX_LAG_S over a shared stretch of at least WINDOW_S - MAX_LAG_S seconds.
WINDOW_S = 10.0
WINDOW_START_S = 10.0
WINDOW = int(round(WINDOW_S * FPS))
WINDOW_START = int(round(WINDOW_START_S * FPS))
BANDS = (8, 40)
_BAND_POOL, _TIME_POOL = 4, 2
_DETAIL_STEP = 2
_REFINE = _TIME_POOL  # full-resolution lags tried on each side of the coarse best lag


def window_frames(frames: int) -> tuple[int, int]:
    """The analysis window ``(start, stop)`` in a mel of ``frames`` frames (earlier when the mel is short)."""
    start = min(WINDOW_START, max(frames - WINDOW, 0))
    return start, min(start + WINDOW, frames)


def analysis_window(mel: np.ndarray) -> np.ndarray:
    """The part of a mel (bands x frames) the test looks at; a mel already cut to it comes back unchanged."""
    if mel.shape[0] > BANDS[1] - BANDS[0]:
        mel = mel[BANDS[0]:BANDS[1]]
    start, stop = window_frames(mel.shape[1])
    return mel[:, start:stop]


def standardise(mel: np.ndarray) -> np.ndarray:
    """Each band to zero mean and unit variance over time (float32); a flat band becomes zeros."""
    x = np.asarray(mel, dtype=np.float32)
    x = x - x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.einsum("bt,bt->b", x, x) / max(x.shape[1], 1))[:, None]
    x *= 1.0 / np.where(std > 1e-3, std, np.inf)
    return x


class Fingerprint:
    """A mel prepared for comparison: its frame-to-frame detail, and the FFT of a coarse copy for the lag.

    Built from a whole mel or from its :func:`analysis_window` (what :func:`mugle_core.melfile.read_mel_window`
    reads); either way only the window is used.
    """

    __slots__ = ("detail", "scale", "_x", "_spectrum")

    def __init__(self, mel: np.ndarray) -> None:
        x = self._x = np.asarray(analysis_window(np.asarray(mel)), dtype=np.float32)
        self._spectrum: np.ndarray | None = None
        # The detail (each band's change over _DETAIL_STEP frames) is what one recording shares with itself
        # and another performance of the same tune does not. Two frames rather than one: a re-release
        # whose window starts between two frames of the other keeps most of its two-frame changes. A level
        # change drops out of the difference; each band's scale is kept aside (``scale``, one over the
        # band's RMS) rather than divided out, which would cost another pass over the array.
        self.detail = x[:, _DETAIL_STEP:] - x[:, :-_DETAIL_STEP]
        rms = np.sqrt(np.einsum("bt,bt->b", self.detail, self.detail) / max(self.detail.shape[1], 1))
        self.scale = (1.0 / np.where(rms > 1e-3, rms, np.inf)).astype(np.float32)

    @property
    def spectrum(self) -> np.ndarray:
        """The FFT of the coarse copy, made on first use: a re-release at lag 0 never needs it."""
        if self._spectrum is not None:
            return self._spectrum
        x = self._x
        bands, frames = x.shape
        b = bands // _BAND_POOL * _BAND_POOL
        t = frames // _TIME_POOL * _TIME_POOL
        pooled = x[:b, :t].reshape(b // _BAND_POOL, _BAND_POOL, t).sum(1)
        # Strided adds, not a sum over a last axis of 2 (numpy's inner loop is slow on such short axes).
        coarse = standardise(sum(pooled[:, k::_TIME_POOL] for k in range(_TIME_POOL)))
        n = 1 << int(np.ceil(np.log2(coarse.shape[1] + MAX_LAG // _TIME_POOL + 1)))
        # float32 in, complex64 out (numpy >= 2): the lag only needs the peak's position.
        self._spectrum = np.fft.rfft(coarse, n=n, axis=1)
        return self._spectrum

    @property
    def silent(self) -> bool:
        """True when no band of the window changes: nothing to tell one recording from another."""
        return not bool((self.scale > 0).any())


def _lag_score(a: Fingerprint, b: Fingerprint, lag: int) -> float:
    """Correlation of two details, averaged over bands, where ``b`` is shifted ``lag`` frames later than ``a``."""
    t = min(a.detail.shape[1], b.detail.shape[1])
    if abs(lag) >= t - 16:
        return -1.0
    if lag >= 0:
        x, y = a.detail[:, lag:t], b.detail[:, : t - lag]
    else:
        x, y = a.detail[:, : t + lag], b.detail[:, -lag:t]
    per_band = np.einsum("bt,bt->b", x, y) * a.scale * b.scale
    return float(per_band.sum()) / x.size


def similarity(a: Fingerprint, b: Fingerprint, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """Correlation of two fingerprints' detail at their best lag within ``max_lag`` frames, and that lag.

    1.0 for one mel against itself (whatever its level); near 0 for unrelated music and for another
    recording of the same tune. The lag is the number of frames by which ``b``'s window starts later in
    the recording than ``a``'s; it is found on the coarse copies and refined on the detail.
    """
    return _best_lag(a, b, max_lag, _lag_score(a, b, 0))


def _best_lag(a: Fingerprint, b: Fingerprint, max_lag: int, at_zero: float) -> tuple[float, int]:
    """:func:`similarity`, given the score at lag 0 (which :func:`matches` has computed already)."""
    if a.spectrum.shape != b.spectrum.shape:  # mels of different lengths: compare at full resolution
        lags = range(-max_lag, max_lag + 1, _TIME_POOL)
        best = max(lags, key=lambda lag: _lag_score(a, b, lag))
    else:
        n = (a.spectrum.shape[1] - 1) * 2
        xcorr = np.fft.irfft((a.spectrum * np.conj(b.spectrum)).sum(0), n=n)
        coarse_lag = max_lag // _TIME_POOL
        # xcorr[k] pairs a's frame t + k with b's frame t; negative k wraps to the end.
        window = np.concatenate((xcorr[-coarse_lag:], xcorr[: coarse_lag + 1]))  # np.r_ costs 40 us more
        best = (int(np.argmax(window)) - coarse_lag) * _TIME_POOL
    near = range(max(-max_lag, best - _REFINE), min(max_lag, best + _REFINE) + 1)
    # Lag 0 is always among the lags scored, so that matches() may accept on it alone and agree.
    return max([(at_zero, 0)] + [(_lag_score(a, b, lag), lag) for lag in near if lag != 0])


def matches(a: Fingerprint, b: Fingerprint, threshold: float = SAME_RECORDING) -> tuple[bool, float]:
    """Whether ``similarity(a, b)`` reaches ``threshold``, and a score that shows it.

    Most re-releases start at the same frame: when the two details already agree at lag 0, that settles
    it without the lag search (the score returned is then the lag-0 one, a lower bound of the best).
    """
    at_zero = _lag_score(a, b, 0)
    if at_zero >= threshold:
        return True, at_zero
    score = _best_lag(a, b, MAX_LAG, at_zero)[0]
    return score >= threshold, score


def same_recording(a: np.ndarray, b: np.ndarray, threshold: float = SAME_RECORDING) -> bool:
    """True when two mels (bands x frames) are one recording: see the module docstring."""
    return similarity(Fingerprint(a), Fingerprint(b))[0] >= threshold
