"""Demo catalog generator: a synthetic dataset in exactly the Melon layout, with planted structure.

The folder it writes holds ``song_meta.json``, ``genre_gn_all.json``, ``train.json``, ``val.json``,
``test.json`` and ``arena_mel/<id // 1000>/<id>.npy`` (48 x 1876 mels), so the one dataset reader serves
both this demo and a real copy. Beside them, ``demo_truth.json`` records the structure that was planted,
so that models and the offline evaluation can be checked against a known answer:

- themes (situations and moods such as 드라이브 or 새벽); every song has one main theme, and every
  playlist is built around one theme (mostly songs of that theme, some noise) and leans towards one
  of the theme's genres; a theme also colours its recordings' sound (tempo, spectral tilt, drums);
- version groups: two or three songs that share one melody (a Korean and an English version, a
  cover) but differ in title, timbre, tempo and loudness;
- version titles: a version by the same artist carries its lead's title plus a marker (``(Live)``,
  ``(English Ver.)``, ``(어쿠스틱 버전)``, ...), so only the marker tells it from the original;
- duplicate groups: one recording re-issued under another id and album, under the same title or a
  decorated one (``(feat. X)``, ``(From "..." OST)``, ``(Remastered)``), with an identical mel or one
  shifted by up to a second and a few dB (``reissues`` in the truth file says which);
- same-title groups: two or three different pieces by one artist on different albums under one
  generic title ("Intro", "Outro", "인트로"): never duplicates;
- songs without a mel file (the cold, audio-less path);
- what was withheld from the val/test playlists.

Popularity is heavy-tailed (Zipf-like) and drawn independently of everything audible, so it cannot
be read off a mel. Metadata is generated with vectorised numpy so that a real-scale catalog (700k songs,
150k playlists, no mels) takes well under a couple of minutes; each mel has its own random stream keyed
by ``(seed, recording)``, so the same arguments always give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mugle_core.melfile import MEL_BANDS, MEL_FRAMES
from mugle_core.melspec import hz_to_mel, mel_to_hz
from mugle_core.textnorm import normalize_artists, normalize_title

logger = logging.getLogger(__name__)

N_MELS = MEL_BANDS
N_FRAMES = MEL_FRAMES
SAMPLE_RATE = 16000
HOP = 256
FPS = SAMPLE_RATE / HOP  # frames per second of the mel
TRUTH_FILE = "demo_truth.json"
VARIOUS_ARTISTS = "Various Artists"
VARIOUS_ARTISTS_ID = 2727
UNKNOWN_GENRE = "GN9000"  # occurs in songs, absent from the genre table, as in the real data

# Playlist shape. Popularity weight 1 / (rank + POP_OFFSET) ** POP_EXPONENT; songs of a playlist's
# focus genre are FOCUS_BOOST times likelier. Tuned so that the global top 10 finds another song of a
# held-out playlist for roughly a third of them (HitRate@10 of most-popular), while the catalog keeps
# a few hits and a long tail of songs in at most one playlist.
POP_EXPONENT = 1.1
POP_OFFSET = 60.0
FOCUS_BOOST = 10.0
MEAN_PLAYLIST_LEN = 16.0


@dataclass(frozen=True)
class Structure:
    """Knobs of a catalog's playlist structure (``mugle demo-data --playlist-length ...``).

    The defaults give the default demo, byte for byte; other values give catalogs of another structure,
    so that the ranking can be checked on data it was not tuned on.

    Attributes
    ----------
    playlist_length : mean songs per playlist (log-normal around it; capped by the catalog's size).
    theme_purity : mean share of a playlist's songs drawn from its theme (the rest is random noise).
    pop_exponent : popularity skew, the exponent of ``1 / (rank + 60) ** e``; 0 is flat.
    curator_order : share of playlists whose order is the curator's (songs grouped by genre); the rest
        are shuffled, so at 0 the order within a playlist carries nothing.
    """

    playlist_length: float = MEAN_PLAYLIST_LEN
    theme_purity: float = 0.85
    pop_exponent: float = POP_EXPONENT
    curator_order: float = 1.0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first knob out of range."""
        bounds = {"playlist_length": (2.0, 200.0), "theme_purity": (0.3, 1.0), "pop_exponent": (0.0, 3.0),
                  "curator_order": (0.0, 1.0)}
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or not lo <= value <= hi:
                raise ValueError(f"generate({name}=...) must be within [{lo:g}, {hi:g}], got {value!r}")

    def noise_share(self, drawn: np.ndarray) -> np.ndarray:
        """Per-playlist noise share from the default draw (uniform 0.05..0.25, mean 0.15), rescaled."""
        if self.theme_purity == Structure.theme_purity:
            return drawn
        return np.clip(drawn * (1.0 - self.theme_purity) / 0.15, 0.0, 1.0)

    def reorder(self, seed: int, p: int, songs: list[int]) -> list[int]:
        """The playlist's final order: the curator's, or (for a ``1 - curator_order`` share) shuffled."""
        if self.curator_order >= 1.0 or len(songs) < 2:
            return songs
        rng = np.random.default_rng([seed, p, 0x4F7264])  # a stream of its own: the default stays unchanged
        if rng.random() < self.curator_order:
            return songs
        return [songs[i] for i in rng.permutation(len(songs)).tolist()]
# How strongly a theme colours its recordings' sound (beyond tempo, noise floor and its genres'
# timbres): the spectral tilt across all bands in dB at brightness +-1, and the drum level in decades.
# Strong enough that audio neighbours tend to share a theme, weak enough that the melody still
# decides which recording is another version of a song.
THEME_TILT_DB = 16.0
# Share of versions heard in the same situation as the original (a Korean and an English version of one
# ballad); the rest are covers that moved to another theme, and sound like it.
VERSION_SAME_THEME = 0.7
THEME_DRUM_DECADES = 0.5

# ----------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------

# Top-level genre code -> (name, detailed names). Detailed codes are the top code + 01, 02, ...
_GENRES: list[tuple[str, str, list[str]]] = [
    ("GN0100", "발라드", ["세부장르전체", "'80", "'90", "'00", "'10-"]),
    ("GN0200", "댄스", ["세부장르전체", "'80", "'90", "'00", "'10-"]),
    ("GN0300", "랩/힙합", ["세부장르전체", "랩 스타일", "보컬 스타일", "언더그라운드 힙합"]),
    ("GN0400", "R&B/Soul", ["세부장르전체", "어반", "R&B"]),
    ("GN0500", "인디음악", ["세부장르전체", "포크", "록", "일렉", "발라드"]),
    ("GN0600", "록/메탈", ["세부장르전체", "'80", "'90", "'00", "'10-"]),
    ("GN0700", "성인가요/트로트", ["세부장르전체", "트로트", "블루스/포크"]),
    ("GN0800", "포크/블루스", ["세부장르전체", "포크", "블루스"]),
    ("GN0900", "POP", ["세부장르전체", "얼터너티브팝", "올디스", "월드팝"]),
    ("GN1000", "록/메탈(해외)", ["세부장르전체", "모던록", "하드록", "메탈"]),
    ("GN1100", "일렉트로니카", ["세부장르전체", "하우스", "일렉트로닉", "앰비언트", "EDM"]),
    ("GN1200", "랩/힙합(해외)", ["세부장르전체", "랩", "트랩"]),
    ("GN1300", "R&B/Soul(해외)", ["세부장르전체", "컨템포러리 R&B", "소울"]),
    ("GN1500", "OST", ["세부장르전체", "국내드라마", "국외영화", "애니메이션/게임"]),
    ("GN1600", "클래식", ["세부장르전체", "관현악", "피아노", "성악"]),
    ("GN1700", "재즈", ["세부장르전체", "보컬 재즈", "피아노 재즈", "퓨전"]),
    ("GN1800", "뉴에이지", ["세부장르전체", "피아노", "자연"]),
    ("GN1900", "J-POP", ["세부장르전체", "애니메이션", "록"]),
    ("GN2100", "CCM", ["세부장르전체", "워십"]),
    ("GN2200", "키즈", ["세부장르전체", "동요"]),
    ("GN2400", "국악", ["세부장르전체", "퓨전국악"]),
    ("GN2600", "월드뮤직", ["세부장르전체", "라틴"]),
]
_GENRE_INDEX = {code: i for i, (code, _, _) in enumerate(_GENRES)}


@dataclass(frozen=True)
class _Theme:
    name: str
    tags: tuple[str, ...]
    genres: tuple[tuple[str, float], ...]  # top-level code, weight
    tempo: tuple[float, float]  # BPM range
    brightness: float  # -1 dark .. +1 bright: a spectral tilt shared by the theme's recordings
    noise: float  # noise floor in dB
    english: float  # share of English titles


_THEMES: list[_Theme] = [
    _Theme("드라이브", ("드라이브", "신나는", "여행", "기분전환"),
           (("GN0200", 3), ("GN0900", 3), ("GN0600", 1), ("GN1100", 1)), (110, 130), 0.5, -46, 0.5),
    _Theme("이별", ("이별", "슬픔", "발라드", "감성"),
           (("GN0100", 5), ("GN0400", 2), ("GN0500", 1)), (62, 82), -0.3, -52, 0.15),
    _Theme("새벽", ("새벽", "감성", "잔잔한", "밤"),
           (("GN0500", 3), ("GN0400", 2), ("GN0100", 2), ("GN1300", 1)), (68, 90), -0.6, -55, 0.3),
    _Theme("운동", ("운동", "헬스", "신나는", "에너지"),
           (("GN0300", 3), ("GN0200", 2), ("GN1100", 2), ("GN1200", 2)), (122, 142), 0.7, -42, 0.5),
    _Theme("카페", ("카페", "잔잔한", "재즈", "휴식"),
           (("GN1700", 3), ("GN0500", 2), ("GN0900", 1), ("GN0800", 1)), (80, 100), 0.0, -50, 0.5),
    _Theme("여름", ("여름", "청량", "바다", "신나는"),
           (("GN0200", 3), ("GN0900", 2), ("GN0500", 1)), (104, 124), 0.6, -45, 0.3),
    _Theme("비오는날", ("비", "비오는날", "감성", "우울"),
           (("GN0100", 3), ("GN1700", 1), ("GN0500", 2), ("GN0800", 1)), (64, 84), -0.4, -48, 0.2),
    _Theme("집중", ("집중", "공부", "노동요", "피아노"),
           (("GN1600", 2), ("GN1800", 3), ("GN1100", 1), ("GN1500", 1)), (58, 80), -0.2, -58, 0.4),
    _Theme("사랑", ("사랑", "설렘", "달달한", "고백"),
           (("GN0100", 2), ("GN0400", 2), ("GN0200", 1), ("GN1500", 2)), (88, 108), 0.2, -50, 0.2),
    _Theme("힙합", ("힙합", "스웨그", "국힙", "트렌디"),
           (("GN0300", 5), ("GN1200", 2), ("GN0400", 1)), (84, 100), 0.1, -44, 0.3),
    _Theme("추억", ("추억", "90년대", "명곡", "옛날노래"),
           (("GN0100", 2), ("GN0200", 2), ("GN0700", 1), ("GN0800", 1)), (80, 110), -0.1, -47, 0.05),
    _Theme("파티", ("파티", "클럽", "EDM", "신나는"),
           (("GN1100", 4), ("GN0200", 2), ("GN0900", 2)), (124, 138), 0.8, -40, 0.7),
    _Theme("잠", ("잠", "수면", "힐링", "잔잔한"),
           (("GN1800", 3), ("GN1600", 2), ("GN1700", 1)), (56, 72), -0.8, -60, 0.4),
    _Theme("가을", ("가을", "쓸쓸한", "어쿠스틱", "감성"),
           (("GN0800", 3), ("GN0500", 2), ("GN0100", 2)), (70, 92), -0.3, -53, 0.2),
    _Theme("트로트", ("트로트", "흥", "부모님", "성인가요"),
           (("GN0700", 6), ("GN0100", 1)), (96, 126), 0.3, -45, 0.0),
    _Theme("드라마", ("OST", "드라마", "영화", "명장면"),
           (("GN1500", 6), ("GN0100", 1)), (70, 100), 0.0, -50, 0.2),
]
_GENERAL_TAGS = ["기분전환", "힐링", "감성", "추천", "좋은노래", "인디", "분위기", "매장음악", "휴식", "팝"]
_PL_TITLES = [
    "{t} 감성 플레이리스트", "{t}할 때 듣는 노래", "{t} 플레이리스트", "{t}에 어울리는 음악",
    "내가 좋아하는 {t} 노래", "{t} 모음", "오늘은 {t}", "{t} 노래 모음 #{n}", "{t} mood", "{t} BGM",
]

_KO_NOUNS = [
    "사랑", "밤", "새벽", "비", "그리움", "눈물", "바람", "하늘", "별", "꿈", "여름", "겨울", "봄", "가을",
    "기억", "우리", "마음", "시간", "거리", "노래", "햇살", "달", "바다", "편지", "이야기", "약속", "첫눈",
    "골목", "계절", "창문", "소나기", "불빛", "오후", "향기", "그림자", "꽃", "숨", "온도", "파도", "정류장",
]
_KO_ADJ = [
    "그리운", "푸른", "작은", "깊은", "따뜻한", "차가운", "하얀", "마지막", "첫", "슬픈", "눈부신",
    "아름다운", "오래된", "조용한", "낯선", "빛나는", "서툰", "느린", "먼", "우리의",
]
_KO_PHRASES = [
    "너에게", "보고 싶다", "안녕", "괜찮아", "잘 지내", "고마워", "미안해", "다시 만나", "사랑해",
    "기다릴게", "그대라서", "너의 모든 순간", "나만 몰랐던", "어떤 날", "오늘 밤", "잊지 마",
]
_EN_NOUNS = [
    "Love", "Night", "Drive", "Rain", "Summer", "Heart", "Dream", "Light", "Blue", "Moon", "Star", "City",
    "Fire", "Home", "Road", "Sky", "Ocean", "Memory", "Dance", "Shadow", "Letter", "Window", "Wave",
    "Morning", "Garden", "Song", "Smile", "Paradise", "Highway", "Coffee",
]
_EN_ADJ = [
    "Midnight", "Golden", "Lonely", "Broken", "Electric", "Little", "Sweet", "Wild", "Endless", "Silent",
    "Neon", "Lazy", "Sunny", "Purple", "Secret", "Last", "First", "Lost", "Crazy", "Slow",
]
_SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황"]
_GIVEN = ["하", "늘", "서", "윤", "민", "지", "수", "현", "아", "린", "준", "우", "태", "연", "소", "은",
          "도", "예", "진", "주", "다", "인", "성", "혜"]
_EN_BAND = ["The", "", "", ""]
_KO_BAND_SUFFIX = ["밴드", "프로젝트", "트리오", "", ""]


# ----------------------------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------------------------


def _band_edges() -> np.ndarray:
    # The same Slaney scale as the audio front end, so demo mels and uploaded clips share their bands.
    return mel_to_hz(np.linspace(0.0, float(hz_to_mel(SAMPLE_RATE / 2)), N_MELS + 2))


def _tri_weights(freqs: np.ndarray) -> np.ndarray:
    """Triangular mel filter responses, shape (len(freqs), 48), peak 1."""
    p = _band_edges()
    f = np.asarray(freqs, dtype=np.float64)[:, None]
    lo, mid, hi = p[None, :-2], p[None, 1:-1], p[None, 2:]
    w = np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid))
    return np.clip(w, 0.0, None)


@dataclass(frozen=True)
class _Timbre:
    """Per-genre sound: harmonic profile, note envelope, accompaniment levels."""

    table: np.ndarray  # (128, 48) power of a note per MIDI pitch; row 0 is silence (a rest)
    decay: float  # note decay in seconds
    sustain: float  # level a held note decays to
    pad: np.ndarray  # (48,) accompaniment pad power
    perc: float  # percussion power


def _timbres() -> list[_Timbre]:
    """One timbre per top-level genre, fixed (not seed dependent): the sound of a genre is a constant."""
    rng = np.random.default_rng(20240917)
    out = []
    harmonics = np.arange(1, 31, dtype=np.float64)
    midi = np.arange(128, dtype=np.float64)
    f0 = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    for _code, _name, _dtl in _GENRES:
        rolloff = rng.uniform(0.9, 2.0)
        odd = rng.uniform(0.4, 1.0)  # weight of even harmonics: < 1 is a hollow, clarinet-like sound
        formant_hz = rng.uniform(700, 3000)
        formant_gain = rng.uniform(0.0, 1.5)
        amps = harmonics ** (-rolloff) * np.where(harmonics % 2 == 0, odd, 1.0)
        freqs = f0[:, None] * harmonics[None, :]  # (128, 30)
        env = 1.0 + formant_gain * np.exp(-0.5 * (np.log(freqs / formant_hz) / 0.35) ** 2)
        power = (amps[None, :] * env) ** 2 * (freqs < SAMPLE_RATE / 2)
        # The fundamental stays the strongest partial so that the melody is the dominant line.
        power = np.minimum(power, power[:, :1] * 0.8)
        power[:, 0] = (amps[0] * env[:, 0]) ** 2
        w = _tri_weights(freqs.ravel()).reshape(128, len(harmonics), N_MELS)
        table = np.einsum("mh,mhb->mb", power, w)
        table /= table[60:84].max()
        table[0] = 0.0
        pad_shape = np.exp(-np.arange(N_MELS) / rng.uniform(4, 12)) * rng.uniform(0.3, 1.0, N_MELS) ** 0.3
        out.append(_Timbre(
            table=table.astype(np.float32),
            decay=float(rng.uniform(0.15, 1.2)),
            sustain=float(rng.uniform(0.05, 0.6)),
            pad=(pad_shape * 10 ** rng.uniform(-2.2, -1.3)).astype(np.float32),
            perc=float(10 ** rng.uniform(-1.6, -0.3)),
        ))
    # Quiet genres get (almost) no drums.
    for code in ("GN1600", "GN1800", "GN0800", "GN1700", "GN0100"):
        t = out[_GENRE_INDEX[code]]
        out[_GENRE_INDEX[code]] = _Timbre(t.table, t.decay, t.sustain, t.pad, t.perc * 0.05)
    return out


_SCALES = [np.array([0, 2, 4, 7, 9]), np.array([0, 3, 5, 7, 10]), np.array([0, 2, 4, 5, 7, 9, 11]),
           np.array([0, 2, 3, 5, 7, 8, 10])]
_DURS = np.array([0.5, 1.0, 1.0, 1.0, 1.5, 2.0, 0.5, 1.0])


def _melody(seed: int, melody_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A tune: (MIDI pitches with 0 for rests, durations in beats), long enough for any tempo."""
    rng = np.random.default_rng([seed, melody_id, 11])
    scale = _SCALES[rng.integers(len(_SCALES))]
    root = int(rng.integers(58, 70))

    def motif(n: int) -> tuple[np.ndarray, np.ndarray]:
        steps = rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3, 4], size=n)
        deg = np.clip(int(rng.integers(0, len(scale))) + np.cumsum(steps), -3, 2 * len(scale))
        pitch = root + scale[deg % len(scale)] + 12 * (deg // len(scale))
        pitch = np.where(rng.random(n) < 0.07, 0, pitch)
        return pitch, rng.choice(_DURS, size=n)

    a_p, a_d = motif(int(rng.integers(6, 12)))
    b_p, b_d = motif(int(rng.integers(6, 12)))
    a2_p = a_p.copy()
    k = min(3, len(a2_p))
    a2_p[-k:] = motif(k)[0]
    pitches = np.concatenate([a_p, a2_p, b_p, a_p])
    durs = np.concatenate([a_d, a_d, b_d, a_d])
    reps = int(np.ceil(80.0 / durs.sum()))  # >= 80 beats: 30 s even at 160 BPM
    return np.tile(pitches, reps).astype(np.int64), np.tile(durs, reps)


def _render(
    seed: int, melody_id: int, recording_id: int, timbre: _Timbre, tempo: float, gain_db: float,
    brightness: float, noise_db: float, n_frames: int = N_FRAMES,
) -> np.ndarray:
    """One log-power mel (48, n_frames) in dB, roughly -80 .. +12."""
    rng = np.random.default_rng([seed, recording_id, 23])
    pitches, durs = _melody(seed, melody_id)
    fpb = FPS * 60.0 / tempo  # frames per beat
    offset = -rng.uniform(0.0, 1.0) * fpb
    onsets = offset + np.concatenate([[0.0], np.cumsum(durs[:-1])]) * fpb
    t = np.arange(n_frames, dtype=np.float64)
    note = np.searchsorted(onsets, t, side="right") - 1
    since = (t - onsets[note]) / FPS  # seconds since the note started
    env = timbre.sustain + (1.0 - timbre.sustain) * np.exp(-since / timbre.decay)
    env *= np.minimum(1.0, since * FPS / 2.0 + 0.3)  # short attack
    mel = timbre.table[pitches[note]].T * env[None, :].astype(np.float32)  # (48, T)
    mel *= 10 ** (0.7 + gain_db / 10.0)

    # Accompaniment: a pad that swells per bar and drums on the beat; genre and tempo, not the tune.
    bar = ((t - offset) // (4 * fpb)).astype(np.int64)
    swell = rng.uniform(0.5, 1.5, int(bar.max()) + 2)[bar]
    mel += timbre.pad[:, None] * swell[None, :].astype(np.float32)
    beat_phase = ((t - offset) % fpb) / FPS
    kick = np.exp(-beat_phase / 0.06)
    half_phase = ((t - offset + fpb / 2) % fpb) / FPS
    hat = np.exp(-half_phase / 0.03)
    bands = np.arange(N_MELS)
    kick_shape = np.exp(-bands / 2.0)
    hat_shape = np.clip((bands - 28) / 20.0, 0.0, 1.0)
    # Energetic (bright) situations get louder drums, calm ones softer: part of a theme's sound.
    perc = timbre.perc * 10 ** (THEME_DRUM_DECADES * brightness)
    mel += perc * (np.outer(kick_shape, kick) + 0.3 * np.outer(hat_shape, hat)).astype(np.float32)

    mel += np.float32(10 ** (noise_db / 10.0))
    mel *= np.exp(rng.normal(0.0, 0.3, mel.shape)).astype(np.float32)  # texture, like a real spectrogram
    db = 10.0 * np.log10(mel + 1e-9)
    db += (brightness * THEME_TILT_DB * (bands / (N_MELS - 1) - 0.5))[:, None]  # mood tilt
    return np.clip(db, -80.0, 12.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Metadata helpers
# ----------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, words: list[str], n: int) -> list[str]:
    idx = rng.integers(0, len(words), n)
    return [words[i] for i in idx]


def _titles(rng: np.random.Generator, english: np.ndarray) -> list[str]:
    """Song titles: Korean from nouns, adjectives and phrases; English from adjectives and nouns."""
    n = len(english)
    form = rng.integers(0, 5, n)
    kn1, kn2, ka, kp = (_pick(rng, _KO_NOUNS, n), _pick(rng, _KO_NOUNS, n), _pick(rng, _KO_ADJ, n),
                        _pick(rng, _KO_PHRASES, n))
    en1, en2, ea = _pick(rng, _EN_NOUNS, n), _pick(rng, _EN_NOUNS, n), _pick(rng, _EN_ADJ, n)
    out = []
    for i in range(n):
        f = form[i]
        if english[i]:
            out.append((f"{ea[i]} {en1[i]}", en1[i], f"{en1[i]} {en2[i]}", f"My {en1[i]}",
                        f"{ea[i]} {en1[i]} {en2[i]}")[f])
        else:
            out.append((f"{ka[i]} {kn1[i]}", kn1[i], f"{kn1[i]}의 {kn2[i]}", kp[i],
                        f"{kp[i]}, {kn1[i]}")[f])
    return out


def _artist_names(rng: np.random.Generator, n: int) -> list[str]:
    kind = rng.random(n)
    s, g1, g2 = _pick(rng, _SURNAMES, n), _pick(rng, _GIVEN, n), _pick(rng, _GIVEN, n)
    ea, en = _pick(rng, _EN_ADJ, n), _pick(rng, _EN_NOUNS, n)
    kn, ks = _pick(rng, _KO_NOUNS, n), _pick(rng, _KO_BAND_SUFFIX, n)
    the = _pick(rng, _EN_BAND, n)
    names, seen = [], set()
    for i in range(n):
        if kind[i] < 0.45:
            name = s[i] + g1[i] + g2[i]
        elif kind[i] < 0.75:
            name = f"{the[i]} {ea[i]} {en[i]}s".strip()
        else:
            name = f"{kn[i]}{ks[i]}" if ks[i] else f"{kn[i]}{g1[i]}"
        base, k = name, 2
        while name in seen:  # one name, one artist
            name = f"{base} {k}"
            k += 1
        seen.add(name)
        names.append(name)
    return names


def _cdf(weights: np.ndarray) -> np.ndarray:
    c = np.cumsum(weights, dtype=np.float64)
    return c / c[-1]


def _dates(rng: np.random.Generator, n: int) -> list[str]:
    """YYYYMMDD issue dates skewed to recent years, with the real data's quirks at a low rate."""
    year = np.clip(np.round(2021 - rng.exponential(9.0, n)), 1960, 2020).astype(np.int64)
    month = rng.integers(1, 13, n)
    day = rng.integers(1, 29, n)
    q = rng.random(n)
    day = np.where(q < 0.03, 0, day)  # day unknown
    month = np.where(q < 0.012, 0, month)  # month unknown too
    out = [f"{y:04d}{m:02d}{d:02d}" for y, m, d in zip(year.tolist(), month.tolist(), day.tolist(),
                                                        strict=True)]
    for i in np.flatnonzero((q > 0.990) & (q <= 0.994)).tolist():
        out[i] = "00000000"
    for i in np.flatnonzero((q > 0.994) & (q <= 0.997)).tolist():
        out[i] = out[i][:4] if q[i] < 0.9955 else out[i][:6]  # shorter strings
    return out


def _timestamps(rng: np.random.Generator, n: int) -> list[str]:
    """updt_date strings "YYYY-MM-DD HH:MM:SS.000", skewed to recent."""
    start = np.datetime64("2005-01-01T00:00:00", "s")
    span = int((np.datetime64("2020-04-20T00:00:00", "s") - start).astype(np.int64))
    secs = span * rng.beta(3.0, 1.2, n)
    stamps = start + secs.astype(np.int64).astype("timedelta64[s]")
    return [s.replace("T", " ") + ".000" for s in np.datetime_as_string(stamps, unit="s").tolist()]


def _check_params(songs: int, playlists: int, seed: int, rates: dict[str, float], mel_dtype: str) -> None:
    if not isinstance(songs, int | np.integer) or songs < 20:
        raise ValueError(f"generate(songs=...) must be an integer >= 20, got {songs!r}")
    if not isinstance(playlists, int | np.integer) or playlists < 10:
        raise ValueError(f"generate(playlists=...) must be an integer >= 10, got {playlists!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"generate(seed=...) must be a non-negative integer, got {seed!r}")
    for name, value in rates.items():
        if not 0.0 <= value <= 0.3:
            raise ValueError(f"generate({name}=...) must be within [0, 0.3], got {value!r}")
    if mel_dtype not in ("float16", "float32"):
        raise ValueError(f"generate(mel_dtype=...) must be 'float16' or 'float32', got {mel_dtype!r}")


def _dump_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, separators=(",", ":"))


def _bar(progress: bool, total: int, desc: str) -> Any:
    """A tqdm bar when wanted and installed; a no-op otherwise (tqdm is a training extra)."""
    if progress:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, unit="it", leave=False)
        except ImportError:  # pragma: no cover - tqdm ships with the train extra
            pass

    class _Null:
        def update(self, n: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

    return _Null()


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------


def generate(
    out: Path,
    *,
    songs: int = 3000,
    playlists: int = 2000,
    seed: int = 0,
    mels: bool = True,
    progress: bool = True,
    missing_mel_rate: float = 0.02,
    duplicate_rate: float = 0.03,
    version_rate: float = 0.10,
    mel_dtype: str = "float16",
    overwrite: bool = False,
    structure: Structure | None = None,
) -> dict[str, Any]:
    """Write a demo dataset in the Melon layout, plus ``demo_truth.json``.

    Parameters
    ----------
    out : Path
        Dataset folder to create. It must not exist or be empty, unless ``overwrite`` is true.
    songs, playlists : int
        Catalog size and number of playlists over train/val/test (about 77 / 15.5 / 7.5 %).
    seed : int
        Same arguments and seed give byte-identical files.
    mels : bool
        Write ``arena_mel``; off for metadata-only catalogs (e.g. the real-scale reader benchmark).
    progress : bool
        Show tqdm progress bars.
    missing_mel_rate : float
        Share of songs that get no mel file (the cold, audio-less path).
    duplicate_rate : float
        Share of songs that are a re-issue (another id) of an earlier recording.
    version_rate : float
        Share of songs that belong to a version group (2-3 songs sharing one melody).
    mel_dtype : str
        ``"float16"`` (default: the 3000-song catalog stays near 0.5 GB) or ``"float32"``.
    overwrite : bool
        Replace an existing non-empty ``out``.
    structure : Structure
        Playlist length, theme purity, popularity skew and curator order (default: the default demo's).

    Returns
    -------
    dict
        Counts: songs, playlists per file, mels written and missing, themes, groups, seconds.

    Raises
    ------
    ValueError
        A parameter is out of range (the message names it).
    FileExistsError
        ``out`` is a non-empty folder and ``overwrite`` is false.
    """
    import time

    t_start = time.perf_counter()
    rates = {"missing_mel_rate": missing_mel_rate, "duplicate_rate": duplicate_rate,
             "version_rate": version_rate}
    _check_params(songs, playlists, seed, rates, mel_dtype)
    structure = structure or Structure()
    structure.check()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"demo dataset folder {out} exists and is not empty (pass overwrite=True)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        summary = _write(tmp, songs=int(songs), playlists=int(playlists), seed=int(seed), mels=mels,
                         progress=progress, rates=rates, mel_dtype=mel_dtype, structure=structure)
        # Only a complete dataset gets the final name.
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    logger.info("demo dataset written to %s: %s", out, summary)
    return summary


def _write(
    root: Path, *, songs: int, playlists: int, seed: int, mels: bool, progress: bool,
    rates: dict[str, float], mel_dtype: str, structure: Structure,
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 1])
    n = songs
    n_themes = int(min(len(_THEMES), max(4, n // 25)))
    themes = _THEMES[:n_themes]
    genre_codes = [g[0] for g in _GENRES]

    # --- themes, artists, albums --------------------------------------------------------------
    theme_w = rng.uniform(0.6, 1.4, n_themes)
    n_artists = max(5, n // 7)
    artist_w = rng.pareto(1.5, n_artists) + 0.2
    artist_of = rng.choice(n_artists, size=n, p=artist_w / artist_w.sum())
    artist_theme = rng.choice(n_themes, size=n_artists, p=theme_w / theme_w.sum())
    theme_genre_p = np.zeros((n_themes, len(_GENRES)))
    for t, th in enumerate(themes):
        for code, w in th.genres:
            theme_genre_p[t, _GENRE_INDEX[code]] = w
    theme_genre_p /= theme_genre_p.sum(1, keepdims=True)
    theme_genre_cdf = np.cumsum(theme_genre_p, 1)
    artist_genre = (rng.random(n_artists)[:, None] > theme_genre_cdf[artist_theme]).sum(1)
    artist_genre = np.minimum(artist_genre, len(_GENRES) - 1)

    song_theme = np.where(rng.random(n) < 0.75, artist_theme[artist_of],
                          rng.choice(n_themes, size=n, p=theme_w / theme_w.sum()))
    own_genre = np.minimum((rng.random(n)[:, None] > theme_genre_cdf[song_theme]).sum(1), len(_GENRES) - 1)
    song_genre = np.where(rng.random(n) < 0.7, artist_genre[artist_of], own_genre)

    songs_per_artist = np.bincount(artist_of, minlength=n_artists)
    albums_per_artist = 1 + rng.poisson(songs_per_artist / 4.0)
    album_base = np.concatenate([[0], np.cumsum(albums_per_artist)[:-1]])
    album_of = album_base[artist_of] + (rng.random(n) * albums_per_artist[artist_of]).astype(np.int64)
    n_albums = int(albums_per_artist.sum())
    album_ids = 2_000_000 + rng.choice(9_000_000, size=n_albums, replace=False)
    artist_ids = 100_000 + rng.choice(2_900_000, size=n_artists, replace=False)
    artist_ids[artist_ids == VARIOUS_ARTISTS_ID] += 1
    artist_names = _artist_names(rng, n_artists)
    album_dates = _dates(rng, n_albums)
    album_eng = rng.random(n_albums) < 0.3
    album_names = _titles(rng, album_eng)
    qa = rng.random(n_albums)
    album_names_opt: list[str | None] = list(album_names)
    for i in np.flatnonzero(qa < 0.01).tolist():
        album_names_opt[i] = ""
    for i in np.flatnonzero((qa >= 0.01) & (qa < 0.02)).tolist():
        album_names_opt[i] = None

    # --- duplicates and versions: disjoint id sets ----------------------------------------------
    order = rng.permutation(n)
    n_dup = int(round(n * rates["duplicate_rate"]))
    n_ver_target = int(round(n * rates["version_rate"]))
    dup_ids = np.sort(order[:n_dup])
    dup_src = order[n_dup:2 * n_dup]  # the original recording each duplicate re-issues
    pool = order[2 * n_dup:]
    sizes: list[int] = []
    while sum(sizes) < n_ver_target:
        sizes.append(2 if rng.random() < 0.7 else 3)
    if sum(sizes) > len(pool):
        sizes = sizes[: max(0, len(pool) // 3)]
    version_groups: list[list[int]] = []
    cursor = 0
    for s in sizes:
        version_groups.append(sorted(pool[cursor:cursor + s].tolist()))
        cursor += s
    dup_pairs = sorted(zip(dup_src.tolist(), dup_ids.tolist(), strict=True))

    melody_of = np.arange(n)
    recording_of = np.arange(n)
    tempo_mult = np.ones(n)
    title_eng = rng.random(n) < np.array([th.english for th in themes])[song_theme]
    for g in version_groups:
        lead = g[0]
        melody_of[g] = lead
        for k, sid in enumerate(g[1:]):
            tempo_mult[sid] = rng.uniform(0.97, 1.03)
            # A Korean and an English version, or a cover by another artist of the same theme.
            title_eng[sid] = (not title_eng[lead]) if k == 0 else bool(rng.random() < 0.5)
            if rng.random() < 0.6:
                artist_of[sid] = artist_of[lead]
                album_of[sid] = album_base[artist_of[lead]] + rng.integers(albums_per_artist[artist_of[lead]])
            if rng.random() < VERSION_SAME_THEME:
                song_theme[sid] = song_theme[lead]
    for src, dup in dup_pairs:
        recording_of[dup] = recording_of[src]
        melody_of[dup] = melody_of[src]
        for arr in (artist_of, song_theme, song_genre, title_eng):
            arr[dup] = arr[src]

    # --- titles, artists, genres, dates ---------------------------------------------------------
    titles = _titles(rng, title_eng)
    feat_artist = rng.integers(0, n_artists, n)
    second_artist = rng.integers(0, n_artists, n)
    q = rng.random(n)
    multi = (q < 0.04) & (second_artist != artist_of)
    various = (q >= 0.04) & (q < 0.045)
    deco = rng.random(n)
    for i in range(n):
        if deco[i] < 0.03:
            titles[i] += f" (feat. {artist_names[feat_artist[i]]})"
        elif deco[i] < 0.04:
            titles[i] += " (Inst.)"
        elif deco[i] < 0.045:
            titles[i] += " (MR)"
    for src, dup in dup_pairs:
        titles[dup] = titles[src]
        multi[dup], various[dup], second_artist[dup] = multi[src], various[src], second_artist[src]

    def artists_of(i: int) -> tuple[list[str], list[int]]:
        if various[i]:
            return [VARIOUS_ARTISTS], [VARIOUS_ARTISTS_ID]
        a = [int(artist_of[i])] + ([int(second_artist[i])] if multi[i] else [])
        return [artist_names[j] for j in a], [int(artist_ids[j]) for j in a]

    # Accidental duplicates (same normalised title and artists, different recording) would be merged
    # by training as if they were re-issues: make every non-planted key unique.
    dup_set = set(dup_ids.tolist())
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for i in range(n):
        if i in dup_set:
            continue
        names = artists_of(i)[0]
        key = (normalize_title(titles[i]), normalize_artists(names))
        k = 2
        base = titles[i]
        while key in seen:
            titles[i] = f"{base} {k}" if "(" not in base else base.replace(" (", f" {k} (", 1)
            key = (normalize_title(titles[i]), normalize_artists(names))
            k += 1
        seen.add(key)
    for src, dup in dup_pairs:
        titles[dup] = titles[src]
    plant = _plant_titles(seed, titles, version_groups, dup_pairs, artist_of, album_of, multi | various,
                          title_eng, artist_names)

    genre_extra = rng.integers(0, len(_GENRES), n)
    dtl_pick = rng.random((n, 2))
    gq = rng.random(n)
    gn_basket: list[list[str]] = []
    dtl_basket: list[list[str]] = []
    for i in range(n):
        if gq[i] < 0.01:
            gn_basket.append([])
            dtl_basket.append([])
            continue
        tops = [int(song_genre[i])]
        if gq[i] > 0.92 and genre_extra[i] != tops[0]:
            tops.append(int(genre_extra[i]))
        gn = [genre_codes[t] for t in tops]
        dtl = []
        for j, t in enumerate(tops):
            n_dtl = len(_GENRES[t][2])
            dtl.append(f"{genre_codes[t][:4]}{1 + int(dtl_pick[i, j] * (n_dtl - 1)) + 1:02d}")
            if j == 0 and dtl_pick[i, 1] < 0.6:
                dtl.append(f"{genre_codes[t][:4]}01")
        if gq[i] > 0.995:
            gn.append(UNKNOWN_GENRE)
        gn_basket.append(gn)
        dtl_basket.append(dtl)

    reissue_album = {dup: i for i, (_src, dup) in enumerate(dup_pairs)}
    reissue_ids = 11_500_000 + rng.choice(1_000_000, size=max(1, len(dup_pairs)), replace=False)
    reissue_dates = _dates(rng, max(1, len(dup_pairs)))
    song_meta = []
    for i in range(n):
        names, ids = artists_of(i)
        alb = int(album_of[i])
        album_name, album_id, date = album_names_opt[alb], int(album_ids[alb]), album_dates[alb]
        if i in reissue_album:
            r = reissue_album[i]
            src = dup_pairs[r][0]
            src_album = album_names_opt[int(album_of[src])] or titles[src]
            album_name = (f"{src_album} OST Part.{1 + r % 7}" if r % 3 == 0 else
                          f"{src_album} (Remastered)" if r % 3 == 1 else f"{src_album} Special Edition")
            album_id, date = int(reissue_ids[r]), reissue_dates[r]
            gn_basket[i], dtl_basket[i] = list(gn_basket[src]), list(dtl_basket[src])
        song_meta.append({
            "song_gn_dtl_gnr_basket": dtl_basket[i],
            "issue_date": date,
            "album_name": album_name,
            "album_id": album_id,
            "artist_id_basket": ids,
            "song_name": titles[i],
            "song_gn_gnr_basket": gn_basket[i],
            "artist_name_basket": names,
            "id": i,
        })

    # --- popularity and playlists --------------------------------------------------------------
    # Popularity is a random rank, independent of audio, theme and genre: Zipf-like weights. The
    # exponent is mild and offset so that a hit lands in a few percent of playlists, not in half
    # of them: on real playlist data a global top 10 appears in only a small share of playlists.
    pop_rank = rng.permutation(n)
    weight = 1.0 / (pop_rank + POP_OFFSET) ** structure.pop_exponent
    members = [np.flatnonzero(song_theme == t) for t in range(n_themes)]
    global_cdf = _cdf(weight)
    sizes_t = np.array([len(m) for m in members])
    pl_theme = rng.choice(n_themes, size=playlists, p=(theme_w * np.maximum(sizes_t, 1)) /
                          (theme_w * np.maximum(sizes_t, 1)).sum())
    # Playlists are short next to their theme (real ones hold about 20 songs), so two playlists of
    # one theme share only some of their songs.
    mean_len = float(min(structure.playlist_length, max(4.0, 0.35 * n / n_themes)))
    lengths = np.clip(np.round(rng.lognormal(np.log(mean_len), 0.55, playlists)), 1, 200).astype(np.int64)
    noise_share = structure.noise_share(rng.uniform(0.05, 0.25, playlists))
    genre_order = rng.random((playlists, len(_GENRES)))
    # A curator's taste inside the theme: one genre of the theme is favoured, so a playlist is a
    # sub-theme (an acoustic 카페 list, a jazz one) rather than the theme's hit parade.
    focus_genre = (rng.random(playlists)[:, None] > theme_genre_cdf[pl_theme]).sum(1)
    focus_genre = np.minimum(focus_genre, len(_GENRES) - 1)
    pl_songs: list[list[int]] = []
    bar = _bar(progress, playlists, "demo playlists")
    draws_u = rng.random(int(lengths.sum()) * 3)
    noise_u = rng.random(playlists * 2 + int(lengths.sum()))
    du = nu = 0
    for p in range(playlists):
        t, length = int(pl_theme[p]), int(lengths[p])
        n_noise = int(rng.binomial(length, noise_share[p]))
        n_theme = length - n_noise
        chosen: list[int] = []
        if n_theme and len(members[t]):
            u = draws_u[du:du + 3 * n_theme]
            du += 3 * n_theme
            m = members[t]
            boosted = weight[m] * np.where(song_genre[m] == focus_genre[p], FOCUS_BOOST, 1.0)
            drawn = m[np.searchsorted(_cdf(boosted), u)]
            # The curator groups songs of a kind: a stable sort by genre, in this playlist's genre order.
            uniq = np.array(list(dict.fromkeys(drawn.tolist()))[:n_theme], dtype=np.int64)
            uniq = uniq[np.argsort(genre_order[p, song_genre[uniq]], kind="stable")]
            chosen = uniq.tolist()
        if n_noise:
            u = noise_u[nu:nu + n_noise + 2]
            nu += n_noise + 2
            extra = [s for s in dict.fromkeys(np.searchsorted(global_cdf, u).tolist()) if s not in chosen]
            for s in extra[:n_noise]:
                chosen.insert(int(rng.integers(0, len(chosen) + 1)), int(s))
        pl_songs.append(structure.reorder(seed, p, chosen))
        bar.update()
    bar.close()

    pl_ids = rng.permutation(playlists)
    like = np.maximum(0, np.floor(np.exp(rng.normal(1.2, 1.7, playlists))) - 1).astype(np.int64)
    stamps = _timestamps(rng, playlists)
    n_tags = rng.integers(1, 4, playlists)
    gen_tag = rng.random(playlists) < 0.3
    tag_pick = rng.random((playlists, 4))
    title_form = rng.integers(0, len(_PL_TITLES), playlists)
    title_tag = rng.integers(0, 4, playlists)
    empty_title = rng.random(playlists) < 0.02
    records: list[dict[str, Any]] = []
    for p in range(playlists):
        th = themes[int(pl_theme[p])]
        perm = np.argsort(tag_pick[p])
        tags = [th.tags[int(j)] for j in perm[: int(n_tags[p])]]
        if gen_tag[p]:
            general = _GENERAL_TAGS[int(tag_pick[p, 0] * len(_GENERAL_TAGS))]
            if general not in tags:
                tags.append(general)
        word = th.name if title_tag[p] == 0 else th.tags[int(title_tag[p])]
        title = "" if empty_title[p] else _PL_TITLES[int(title_form[p])].format(t=word, n=1 + p % 9)
        records.append({"tags": tags, "id": int(pl_ids[p]), "plylst_title": title,
                        "songs": pl_songs[p], "like_cnt": int(like[p]), "updt_date": stamps[p]})

    # Split like the real files; val/test withhold part of their songs and tags.
    split = rng.permutation(playlists)
    n_train = int(round(playlists * 0.773))
    n_val = int(round(playlists * 0.155))
    parts = {"train": split[:n_train], "val": split[n_train:n_train + n_val], "test": split[n_train + n_val:]}
    withheld: dict[str, dict[str, list]] = {}
    mode_u = rng.random(playlists)
    files: dict[str, list[dict]] = {}
    for name, idx in parts.items():
        rows = []
        for p in np.sort(idx).tolist():
            rec = dict(records[p])
            if name != "train":
                songs_full, tags_full = rec["songs"], rec["tags"]
                m = mode_u[p]
                if m < 0.1:  # title only
                    keep_s, keep_t = 0, 0
                elif m < 0.2:  # songs only, no title
                    keep_s, keep_t = len(songs_full) // 2, 0
                    rec["plylst_title"] = ""
                else:
                    keep_s, keep_t = len(songs_full) // 2, len(tags_full) // 2
                rec["songs"], rec["tags"] = songs_full[:keep_s], tags_full[:keep_t]
                withheld[str(rec["id"])] = {"songs": songs_full[keep_s:], "tags": tags_full[keep_t:]}
            rows.append(rec)
        files[name] = rows

    # --- mels ------------------------------------------------------------------------------------
    missing = np.zeros(n, dtype=bool)
    n_missing = int(round(n * rates["missing_mel_rate"]))
    if n_missing:
        missing[rng.choice(n, size=n_missing, replace=False)] = True
    written = 0
    if mels:
        timbres = _timbres()
        tempo_lo = np.array([th.tempo[0] for th in themes])
        tempo_hi = np.array([th.tempo[1] for th in themes])
        # Tempo and loudness belong to the melody's lead recording, versions deviate slightly.
        lead_tempo = tempo_lo[song_theme] + rng.random(n) * (tempo_hi - tempo_lo)[song_theme]
        gain = rng.uniform(-2.0, 2.0, n)
        rng.random(n)  # drawn (and unused) so that the streams after it stay as they were
        bar = _bar(progress, n, "demo mels")
        cache: dict[int, np.ndarray] = {}
        dup_sources = {s for s, _ in dup_pairs}
        for i in range(n):
            bar.update()
            if missing[i]:
                continue
            source = int(recording_of[i])
            if source != i:  # a re-issue: the source recording, sometimes with a tiny re-mastering noise
                mel = cache.get(source)
                if mel is None:
                    mel = _render_song(seed, source, melody_of, song_genre, song_theme, lead_tempo, tempo_mult,
                                       gain, themes, timbres)
                mel = reissue_mel(mel, seed, i, plant.reissue_audio[i])
            else:
                mel = _render_song(seed, i, melody_of, song_genre, song_theme, lead_tempo, tempo_mult,
                                   gain, themes, timbres)
                if i in dup_sources:
                    cache[i] = mel
            folder = root / "arena_mel" / str(i // 1000)
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{i}.npy", mel.astype(mel_dtype), allow_pickle=False)
            written += 1
        bar.close()

    # --- files: the song table last, then the truth ------------------------------------------------
    genre_table: dict[str, str] = {}
    for code, name, dtl in _GENRES:
        genre_table[code] = name
        for j, d in enumerate(dtl):
            genre_table[f"{code[:4]}{j + 1:02d}"] = d
    _dump_json(root / "genre_gn_all.json", genre_table)
    for name, rows in files.items():
        _dump_json(root / f"{name}.json", rows)
    theme_names = [th.name for th in themes]
    truth = {
        "generator": "mugle training.demo",
        "params": {"songs": n, "playlists": playlists, "seed": seed, "mels": mels, "mel_dtype": mel_dtype,
                   "mel_shape": [N_MELS, N_FRAMES], **rates, "structure": asdict(structure)},
        "themes": {th.name: members[t].tolist() for t, th in enumerate(themes)},
        "song_theme": [theme_names[t] for t in song_theme.tolist()],
        "playlist_theme": {str(int(pl_ids[p])): theme_names[int(pl_theme[p])] for p in range(playlists)},
        "version_groups": version_groups,
        "duplicate_groups": [[s, d] for s, d in dup_pairs],
        "reissues": plant.reissues,
        "version_markers": {str(k): v for k, v in sorted(plant.version_markers.items())},
        "same_title_groups": plant.same_title_groups,
        "missing_mels": np.flatnonzero(missing).tolist() if mels else [],
        "popularity_rank": pop_rank.tolist(),
        "withheld": withheld,
    }
    _dump_json(root / TRUTH_FILE, truth)
    _dump_json(root / "song_meta.json", song_meta)
    return {
        "songs": n, "artists": n_artists, "albums": n_albums,
        "playlists": {k: len(v) for k, v in files.items()},
        "playlist_entries": int(sum(len(r["songs"]) for r in records)),
        "themes": n_themes, "version_groups": len(version_groups), "duplicate_groups": len(dup_pairs),
        "same_title_groups": len(plant.same_title_groups),
        "mels_written": written, "mels_missing": int(missing.sum()) if mels else 0,
    }


# ----------------------------------------------------------------------------------------------
# Re-releases, versions with markers, one title for several pieces
# ----------------------------------------------------------------------------------------------

# Share of songs that get a generic title ("Intro") shared with another piece by the same artist.
SAME_TITLE_SHARE = 0.01
# What a real catalog writes after a title: markers of another recording, and decorations of a release.
_LANGUAGE_MARKERS = {False: ["(English Ver.)", "(Eng Ver.)", "(영어 버전)", "(English Version)"],
                     True: ["(Korean Ver.)", "(한국어 버전)", "(Korean Version)"]}
_STYLE_MARKERS = ["(Live)", "(라이브)", "(Acoustic Ver.)", "(어쿠스틱 버전)", "(Piano Ver.)", "(피아노 버전)",
                  "(Remix)", "(리믹스)", "(Japanese Ver.)", "(일본어 버전)", "(Demo)", "(Band Ver.)",
                  "(Radio Edit)", "(Live Ver.)", "(Orchestra Ver.)", "- Live"]
_DECORATIONS = ['(feat. {artist})', '(From "{album}" OST)', "(Remastered)", "({year} Remaster)",
                "[Prod. by {artist}]", "(Bonus Track)", "(With {artist})"]
_GENERIC_TITLES = ["Intro", "Outro", "Interlude", "인트로", "Prologue", "Epilogue", "Skit", "아웃트로"]
REISSUE_AUDIO = ("identical", "level", "offset")


@dataclass
class _Plant:
    """What :func:`_plant_titles` planted, for the mels and the truth file."""

    version_markers: dict[int, str]
    reissues: list[dict[str, Any]]
    reissue_audio: dict[int, str]
    same_title_groups: list[list[int]]


def _plant_titles(
    seed: int, titles: list[str], version_groups: list[list[int]], dup_pairs: list[tuple[int, int]],
    artist_of: np.ndarray, album_of: np.ndarray, not_solo: np.ndarray, title_eng: np.ndarray,
    artist_names: list[str],
) -> _Plant:
    """Give versions their markers, re-releases their decorations, and some pieces one generic title.

    Edits ``titles`` in place. Its own random stream, so the rest of the catalog is unchanged:

    - every later member of a version group is titled like the group's first song plus a marker:
      the other language's ``(English Ver.)`` / ``(한국어 버전)`` for the first, a style (``(Live)``,
      ``(어쿠스틱 버전)``, ``(Remix)``, ...) for the next;
    - half of the re-releases carry a release decoration (``(feat. X)``, ``(From "..." OST)``,
      ``(Remastered)``, ``[Prod. by X]``); each re-release's mel is identical, level-shifted, or
      offset by up to a second and level-shifted (see :func:`reissue_mel`);
    - :data:`SAME_TITLE_SHARE` of the songs become groups of two or three different pieces by one
      artist on different albums under one generic title ("Intro", "Outro", "인트로", ...).
    """
    rng = np.random.default_rng([seed, 41])
    markers: dict[int, str] = {}
    for g in version_groups:
        lead = g[0]
        styles = rng.permutation(len(_STYLE_MARKERS)).tolist()
        for k, sid in enumerate(g[1:]):
            if k == 0 and title_eng[sid] != title_eng[lead]:
                options = _LANGUAGE_MARKERS[bool(title_eng[lead])]
                marker = options[int(rng.integers(len(options)))]
            else:
                marker = _STYLE_MARKERS[styles[k]]
            titles[sid] = f"{titles[lead]} {marker}"
            markers[sid] = marker

    reissues: list[dict[str, Any]] = []
    audio: dict[int, str] = {}
    for src, dup in dup_pairs:
        kind = REISSUE_AUDIO[int(rng.integers(len(REISSUE_AUDIO)))]
        audio[dup] = kind
        title = "same"
        if rng.random() < 0.5:
            deco = _DECORATIONS[int(rng.integers(len(_DECORATIONS)))]
            other = artist_names[int(rng.integers(len(artist_names)))]
            titles[dup] = f"{titles[src]} " + deco.format(artist=other, album=titles[src],
                                                          year=int(rng.integers(2005, 2021)))
            title = "decorated"
        reissues.append({"source": src, "reissue": dup, "title": title, "audio": kind})

    # Different pieces, one title: free solo songs of one artist on different albums.
    taken = {s for g in version_groups for s in g} | {s for pair in dup_pairs for s in pair}
    free = [i for i in rng.permutation(len(titles)).tolist() if i not in taken and not not_solo[i]]
    by_artist: dict[int, dict[int, int]] = {}
    for i in free:
        by_artist.setdefault(int(artist_of[i]), {}).setdefault(int(album_of[i]), i)  # one song per album
    target = int(round(len(titles) * SAME_TITLE_SHARE))
    groups: list[list[int]] = []
    planted = 0
    for albums in by_artist.values():
        if planted >= target:
            break
        if len(albums) < 2:
            continue
        size = min(len(albums), 2 if rng.random() < 0.7 else 3)
        group = sorted(list(albums.values())[:size])
        name = _GENERIC_TITLES[int(rng.integers(len(_GENERIC_TITLES)))]
        for i in group:
            titles[i] = name
        groups.append(group)
        planted += size
    return _Plant(markers, reissues, audio, groups)


def reissue_mel(mel: np.ndarray, seed: int, song_id: int, kind: str) -> np.ndarray:
    """A re-release's mel: the same recording, ``identical``, at another ``level`` (+-1..4 dB, a little
    noise), or with its window ``offset`` by 3 to 60 frames (up to a second) as well."""
    if kind == "identical":
        return mel
    rng = np.random.default_rng([seed, song_id, 29])
    out = mel.astype(np.float32)
    if kind == "offset":
        shift = int(rng.integers(3, 61)) * (1 if rng.random() < 0.5 else -1)
        out = np.roll(out, -shift, axis=1)  # the frames that wrap round stand for the other side's music
    level = float(rng.uniform(1.0, 4.0)) * (1 if rng.random() < 0.5 else -1)
    out = out + level + rng.normal(0.0, 0.2, out.shape).astype(np.float32)
    return np.clip(out, -80.0, 12.0)


def _blend(a: _Timbre, b: _Timbre, w: float) -> _Timbre:
    """A timbre between two genres: ``w`` of ``b``; a version's sound moves away from the lead's."""
    return _Timbre(
        table=((1 - w) * a.table + w * b.table).astype(np.float32),
        decay=(1 - w) * a.decay + w * b.decay,
        sustain=(1 - w) * a.sustain + w * b.sustain,
        pad=((1 - w) * a.pad + w * b.pad).astype(np.float32),
        perc=(1 - w) * a.perc + w * b.perc,
    )


def _render_song(
    seed: int, i: int, melody_of: np.ndarray, song_genre: np.ndarray, song_theme: np.ndarray,
    lead_tempo: np.ndarray, tempo_mult: np.ndarray, gain: np.ndarray, themes: list[_Theme],
    timbres: list[_Timbre],
) -> np.ndarray:
    """The mel of song ``i``'s own recording (a version of its melody's lead recording)."""
    lead = int(melody_of[i])
    th = themes[int(song_theme[i])]
    timbre = timbres[int(song_genre[i])]
    if lead != i:
        # Another recording of the lead's melody: a moderate move in timbre, same tune.
        w = float(np.random.default_rng([seed, i, 31]).uniform(0.35, 0.65))
        timbre = _blend(timbres[int(song_genre[lead])], timbre, w)
        if song_genre[lead] == song_genre[i]:
            other = timbres[(int(song_genre[i]) + 1 + i % 5) % len(timbres)]
            timbre = _blend(timbre, other, 0.5 * w)
    return _render(seed, lead, i, timbre, float(lead_tempo[lead] * tempo_mult[i]), float(gain[i]),
                   th.brightness, th.noise)
