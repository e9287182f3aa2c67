"""The mel front end: shape, level, excerpt choice and resampling of clips synthesised here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mugle_core.melspec import (
    MelParams,
    audio_to_mel,
    clip_window,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    segment_to_mel,
)

P = MelParams()


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def music_like_clip(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Stereo notes with harmonics over a quiet broadband bed, at the level of a mastered track."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    notes = rng.integers(55, 82, size=int(seconds * 2) + 2)
    f0 = 440.0 * 2.0 ** ((notes[(t * 2).astype(int)] - 69) / 12.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    env = 0.6 + 0.4 * np.exp(-((t * 2) % 1.0) * 4.0)
    melody = sum(0.25 / h * np.sin(h * phase) for h in range(1, 7)) * env
    # A pink-ish bed (noise with a falling spectrum) stands in for the accompaniment.
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
    bed = np.fft.irfft(spec, n)
    bed *= 0.03 / bed.std()
    left = melody + bed
    return np.stack([left, 0.8 * left], axis=1).astype(np.float32)


def test_long_clip_gives_dataset_shape_from_second_20():
    sr = 44100
    clip = music_like_clip(55.0, sr)
    mel = audio_to_mel(clip, sr)
    assert mel.shape == (48, 1876) == (P.n_mels, P.frames)
    assert mel.dtype == np.float32
    assert clip_window(len(clip), sr) == (20 * sr, 50 * sr)
    # Changing audio before 20 s (beyond the context margin) must not change the mel: the excerpt starts at 20 s.
    altered = clip.copy()
    altered[: 19 * sr] = 0.0
    np.testing.assert_array_equal(audio_to_mel(altered, sr), mel)
    altered[int(30 * sr)] += 0.5
    assert not np.array_equal(audio_to_mel(altered, sr), mel)


def test_value_range_matches_demo_mels(tmp_path):
    demo = pytest.importorskip("training.demo", reason="training/demo.py is not available")
    demo.generate(tmp_path / "demo", songs=20, playlists=10, seed=0, progress=False)
    files = sorted((tmp_path / "demo" / "arena_mel").rglob("*.npy"))[:8]
    assert files, "the demo generator wrote no mels"
    ref = np.stack([np.load(f, allow_pickle=False).astype(np.float32) for f in files])
    assert ref.shape[1:] == (48, 1876)
    mel = audio_to_mel(music_like_clip(52.0, 44100, seed=1), 44100)
    lo, med, hi = np.percentile(ref, [1, 50, 99])
    # Loud cells sit at the dataset's level, and the bulk of the clip inside the dataset's range.
    assert abs(float(mel.max()) - float(ref.max())) < 8.0, (mel.max(), ref.max())
    assert lo - 15.0 < float(np.median(mel)) < hi, (np.median(mel), lo, hi)
    assert float(mel.min()) >= P.floor_db
    assert float(np.percentile(mel, 1)) > lo - 30.0


def test_tone_lands_in_its_band_and_level_follows_amplitude():
    sr = 16000
    fb = mel_filterbank()
    for freq in (300.0, 1000.0, 3500.0):
        mel = audio_to_mel(tone(freq, 30.0, sr), sr)
        band = int(np.argmax(mel[:, 900]))
        # The loudest band is the one whose triangle weighs this frequency most.
        bin_ = int(round(freq / (sr / P.n_fft)))
        assert band == int(np.argmax(fb[:, bin_]))
        # A steady tone gives a steady mel away from the clip's edges.
        assert float(np.ptp(mel[band, 10:-10])) < 0.1
    quiet = audio_to_mel(tone(1000.0, 30.0, sr, amp=0.25), sr)
    loud = audio_to_mel(tone(1000.0, 30.0, sr, amp=0.5), sr)
    band = int(np.argmax(loud[:, 900]))
    assert loud[band, 900] - quiet[band, 900] == pytest.approx(20 * np.log10(2), abs=0.01)


def test_silence_is_the_floor_and_short_clips_keep_their_length():
    sr = 22050
    silent = audio_to_mel(np.zeros(int(35 * sr)), sr)
    assert silent.shape == (48, 1876)
    assert np.all(silent == np.float32(P.floor_db))
    short = audio_to_mel(tone(440.0, 10.0, sr), sr)
    assert short.shape == (48, 1 + 160000 // 256)
    # A 40 s clip gives the 30 s that start as close to 20 s as it allows: seconds 10 to 40.
    assert clip_window(40 * sr, sr) == (10 * sr, 40 * sr)
    with pytest.raises(ValueError, match="empty"):
        audio_to_mel(np.zeros(0), sr)


def test_sample_rate_does_not_change_the_mel():
    # The same sound recorded at four rates gives the same mel: resampling is band-limited and aligned.
    mels = {}
    for sr in (16000, 22050, 44100, 48000):
        # 51 s: the excerpt (20 to 50 s) has real audio on both sides, so no frame sees the clip's abrupt end.
        t = np.arange(int(51 * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * 523.25 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
        x += 0.1 * np.sin(2 * np.pi * 2900.0 * t)
        mels[sr] = audio_to_mel(x, sr)
    ref = mels[16000]
    loud = ref > -40
    for sr, mel in mels.items():
        assert mel.shape == ref.shape
        assert float(np.abs(mel - ref)[loud].max()) < 0.5, sr
    # Above 8 kHz nothing may fold back: a 12 kHz tone at 48 kHz must not appear at 4 kHz.
    sr = 48000
    alias = audio_to_mel(tone(12000.0, 51.0, sr), sr)
    assert float(alias.max()) < -60.0


def test_integer_and_multichannel_input():
    sr = 16000
    x = tone(800.0, 31.0, sr, amp=0.5)
    pcm = np.round(x * 32767).astype(np.int16)
    ref = audio_to_mel(x, sr)
    above_dither = ref > -60  # 16-bit quantisation noise sits near -90 dB in the empty bands
    np.testing.assert_allclose(audio_to_mel(pcm, sr)[above_dither], ref[above_dither], atol=0.05)
    stereo = np.stack([x, -x], axis=1)  # opposite phases cancel in the mono mix
    assert np.all(audio_to_mel(stereo, sr) == np.float32(P.floor_db))
    with pytest.raises(ValueError, match="shape"):
        audio_to_mel(np.zeros((10, 2, 2)), sr)
    with pytest.raises(ValueError, match="NaN"):
        audio_to_mel(np.full(sr, np.nan), sr)


def test_excerpt_with_context_equals_whole_clip():
    sr = 44100
    clip = music_like_clip(58.0, sr, seed=3)
    start, stop = clip_window(len(clip), sr)
    margin = int(0.25 * sr)
    part = clip[start - margin : stop + margin]
    np.testing.assert_array_equal(segment_to_mel(part, sr, margin, margin + stop - start), audio_to_mel(clip, sr))
    with pytest.raises(ValueError, match="excerpt"):
        segment_to_mel(part, sr, 10, 5)


def test_filterbank_has_unit_area_triangles_on_the_slaney_scale():
    assert float(hz_to_mel(1000.0)) == pytest.approx(15.0)
    freqs = np.array([50.0, 700.0, 1000.0, 2500.0, 7900.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs)), freqs, rtol=1e-9)
    fb = mel_filterbank()
    assert fb.shape == (48, 257) and fb.dtype == np.float32
    df = P.sample_rate / P.n_fft
    areas = fb.sum(axis=1) * df  # a Riemann sum of each triangle's area in Hz
    np.testing.assert_allclose(areas, 1.0, atol=0.02)
    # Peaks rise along the bands until the log part widens them.
    assert fb[0].max() > fb[-1].max()


def test_params_validate_and_serialise():
    data = P.as_dict()
    assert data["frames"] == 1876 and data["n_mels"] == 48 and data["hop"] == 256
    assert json.loads(json.dumps(data)) == data
    with pytest.raises(ValueError, match="window"):
        MelParams(window="hamming")
    with pytest.raises(ValueError, match="fmax"):
        MelParams(fmax=9000.0)
    assert MelParams(hop=160).frames == 1 + 480000 // 160
