"""Duplicates are one recording: the title key, the audio test, and the merging rule end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mugle_core.textnorm import normalize_title, title_key
from training import demo
from training.duplicates import (
    APART_AMBIGUOUS,
    APART_AUDIO,
    APART_GENERIC,
    APART_MARKER,
    MERGED_AUDIO,
    MERGED_TITLE,
    is_generic_title,
)
from training.melon import read_dataset
from training.preprocess import PrepOptions, prepare
from training.same_recording import MAX_LAG, SAME_RECORDING, Fingerprint, same_recording, similarity

from .test_melon import playlist, song, write

# Real-world title pairs as Melon and other stores write them: True when they may be one recording
# (same key), False when the titles themselves say they are different recordings or pieces.
TITLE_PAIRS = [
    ("마음을 드려요", '마음을 드려요 (From "사랑의 불시착 OST")', True),
    ("Love poem", "Love Poem (feat. IU)", True),
    ("너의 의미 (Feat. 김창완)", "너의 의미", True),
    ("봄날", "봄날 [Remastered]", True),
    ("Yesterday", "Yesterday - Remastered 2009", True),
    ("Gee", "Gee (Prod. by 이트라이브)", True),
    ("Butter (feat. Megan Thee Stallion)", "Butter", True),
    ("밤양갱", "밤양갱 (Bonus Track)", True),
    ("ＬＯＶＥ　ＤＩＶＥ", "LOVE DIVE", True),
    ("Kiss Me (English Ver.)", "Kiss Me (영어버전)", True),
    ("Stay With Me (Live)", "Stay With Me (Live Ver.)", True),
    ("좋은 날 (라이브)", "좋은 날 (Live)", True),
    ("좋은 날 (Duet with 아이유)", "좋은 날", True),
    ("밤편지", "밤편지 (Live)", False),
    ("봄날", "봄날 (라이브)", False),
    ("너의 의미", "너의 의미 (Acoustic Ver.)", False),
    ("너의 의미", "너의 의미 (어쿠스틱 버전)", False),
    ("Dynamite", "Dynamite (Tropical Remix)", False),
    ("Dynamite", "Dynamite (Instrumental)", False),
    ("사랑은 늘 도망가", "사랑은 늘 도망가 (Inst.)", False),
    ("Stay", "Stay (MR)", False),
    ("좋은 날", "좋은 날 (피아노 버전)", False),
    ("Fake Love", "Fake Love (Rocking Vibe Mix)", False),
    ("Kiss Me", "Kiss Me (English Ver.)", False),
    ("Kiss Me", "Kiss Me (영어 버전)", False),
    ("Kiss Me (English Ver.)", "Kiss Me (Japanese Ver.)", False),
    ("Lemon", "Lemon (Demo)", False),
    ("Shape of You", "Shape of You - Acoustic", False),
    ("Blueming", "Blueming (Radio Edit)", False),
    ("애국가", "애국가 (연주곡)", False),
    ("Remix (Live)", "Remix", False),
    ("Song - Part 1", "Song - Part 2", False),
    ("Stay With Me (Live)", "Stay With Me (Live at Budokan)", False),
]


@pytest.mark.parametrize(("a", "b", "same"), TITLE_PAIRS)
def test_title_key_table(a: str, b: str, same: bool) -> None:
    assert (title_key(a) == title_key(b)) is same
    # Search folds every marker: a title query finds all the versions.
    if "Part" not in a:
        assert normalize_title(a) == normalize_title(b)


def test_marker_cache_changes_no_key(catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bracket contents' marker words are cached (they repeat far more than titles); the keys of the
    # real-world table and of a demo catalog's titles are the same with the cache bypassed.
    from mugle_core import textnorm

    songs = json.loads((catalog / "song_meta.json").read_text(encoding="utf-8"))
    titles = [t for a, b, _ in TITLE_PAIRS for t in (a, b)] + [s["song_name"] for s in songs]
    textnorm._version_words.cache_clear()
    cached = [textnorm.title_key.__wrapped__(t) for t in titles + titles]  # the second pass reads the cache
    monkeypatch.setattr(textnorm, "_version_words", textnorm._version_words.__wrapped__)
    assert cached == [textnorm.title_key.__wrapped__(t) for t in titles + titles]
    assert any(markers for _, markers in cached)


def test_generic_titles() -> None:
    for t in ("Intro", "(Intro)", "Outro", "인트로", "Interlude 2", "Track 3", "07", "Skit"):
        assert is_generic_title(title_key(t)[0]), t
    for t in ("Intro to Love", "봄날", "Love"):
        assert not is_generic_title(title_key(t)[0]), t


# -- the audio test on the demo generator's mels ----------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dup") / "demo"
    demo.generate(root, songs=400, playlists=300, seed=0, progress=False)
    return root


def _truth(root: Path) -> dict:
    return json.loads((root / demo.TRUTH_FILE).read_text(encoding="utf-8"))


def _mel(root: Path, sid: int) -> np.ndarray:
    return np.load(root / "arena_mel" / str(sid // 1000) / f"{sid}.npy").astype(np.float32)


def _shifted(mel: np.ndarray, frames: int, level_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, 0.3, mel.shape).astype(np.float32)
    return np.clip(np.roll(mel, -frames, axis=1) + level_db + noise, -80.0, 12.0)


def test_same_recording_by_audio(catalog: Path) -> None:
    truth = _truth(catalog)
    missing = set(truth["missing_mels"])
    ids = [i for i in range(400) if i not in missing]
    mel = _mel(catalog, ids[0])
    for frames, level in ((0, 0.0), (40, 3.0), (-90, -4.0), (MAX_LAG - 5, 1.5)):
        score, lag = similarity(Fingerprint(mel), Fingerprint(_shifted(mel, frames, level)))
        assert score >= SAME_RECORDING and lag == frames, (frames, level, score, lag)
    # A half-frame shift (another decoder's framing) still reads as one recording.
    power = 10 ** (mel / 10)
    half = 10 * np.log10((power + np.roll(power, -1, axis=1)) / 2)
    assert same_recording(mel, half + 2.0)
    # Different songs and other recordings of the same melody (the planted versions) are not one recording.
    rng = np.random.default_rng(1)
    for a, b in rng.choice(ids, size=(30, 2)).tolist():
        if a != b:
            assert not same_recording(_mel(catalog, a), _mel(catalog, b))
    # Versions are other recordings of one melody; one that shares its lead's tempo and accompaniment can
    # look like the same recording by audio (its marker keeps it apart), most do not.
    versions = [[s for s in g if s not in missing] for g in truth["version_groups"]]
    pairs = [(g[0], s) for g in versions for s in g[1:]]
    assert len(pairs) >= 10
    assert sum(same_recording(_mel(catalog, a), _mel(catalog, b)) for a, b in pairs) <= 0.1 * len(pairs)


def test_demo_plants_resolve_as_planted(catalog: Path) -> None:
    truth = _truth(catalog)
    songs = json.loads((catalog / "song_meta.json").read_text(encoding="utf-8"))
    prep = prepare(read_dataset(catalog, progress=False))
    aliases = prep.aliases

    def merged(pairs: list[tuple[int, int]]) -> tuple[int, int]:
        both = [(a, b) for a, b in pairs if a in aliases and b in aliases]
        return sum(aliases[a] == aliases[b] for a, b in both), len(both)

    reissues = [(r["source"], r["reissue"]) for r in truth["reissues"]]
    hit, n = merged(reissues)
    assert n >= 8 and hit >= 0.95 * n
    assert {r["title"] for r in truth["reissues"]} == {"same", "decorated"}
    assert {r["audio"] for r in truth["reissues"]} == set(demo.REISSUE_AUDIO)
    versions = [(g[0], s) for g in truth["version_groups"] for s in g[1:]]
    assert merged(versions)[0] == 0 and merged(versions)[1] >= 10
    same_title = [(g[0], s) for g in truth["same_title_groups"] for s in g[1:]]
    assert merged(same_title) == (0, len(same_title)) and same_title
    # Versions carry their lead's title plus a marker; same-title pieces share one title and artist.
    for sid, marker in truth["version_markers"].items():
        assert songs[int(sid)]["song_name"].endswith(marker)
    for g in truth["same_title_groups"]:
        assert len({songs[s]["song_name"] for s in g}) == 1
        assert len({tuple(songs[s]["artist_name_basket"]) for s in g}) == 1
        assert len({songs[s]["album_id"] for s in g}) == len(g)
    counts = dict((label.strip(), n) for label, n in prep.summary)
    assert counts[MERGED_AUDIO] + counts[MERGED_TITLE] == counts["merged duplicate ids"] > 0
    assert counts[APART_MARKER] >= merged(versions)[1] // 2


# -- the rule end to end, on a hand-made catalog ----------------------------------------------------------


@pytest.fixture(scope="module")
def handmade(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    truth = _truth(catalog)
    missing = set(truth["missing_mels"])
    pool = [i for i in range(400) if i not in missing]
    m = [_mel(catalog, i) for i in pool[:8]]
    songs = [
        song(0, song_name="봄날", artist_name_basket=["BTS"], album_id=1),
        song(1, song_name="봄날 (feat. X)", artist_name_basket=["BTS"], album_id=2),      # re-release, decorated
        song(2, song_name="봄날 (Live)", artist_name_basket=["BTS"], album_id=3),         # a version
        song(3, song_name="Intro", artist_name_basket=["BTS"], album_id=1),
        song(4, song_name="Intro", artist_name_basket=["BTS"], album_id=3),               # another piece
        song(5, song_name="Intro", artist_name_basket=["BTS"], album_id=4),               # no mel: generic
        song(6, song_name="찬송", artist_name_basket=["작곡가"], album_id=5),
        song(7, song_name="찬송", artist_name_basket=["작곡가"], album_id=6),             # another setting
        song(8, song_name="찬송", artist_name_basket=["작곡가"], album_id=7),             # no mel: which one?
        song(9, song_name="편지", artist_name_basket=["아이유"], album_id=8),              # no mel
        song(10, song_name="편지 (Remastered)", artist_name_basket=["아이유"], album_id=9),
        song(11, song_name="편지", artist_name_basket=["아이유"], album_id=10),            # no mel either
    ]
    train = [playlist(20, [0, 1, 6]), playlist(21, [1, 0]), playlist(22, [1, 9, 10, 11]), playlist(23, [2, 3])]
    root = write(tmp_path_factory.mktemp("hand") / "data", songs, train)
    mels = {0: m[0], 1: _shifted(m[0], 25, -3.0), 2: m[1], 3: m[2], 4: m[3], 6: m[4], 7: m[5], 10: m[6]}
    for sid, mel in mels.items():
        (root / "arena_mel" / "0").mkdir(parents=True, exist_ok=True)
        np.save(root / "arena_mel" / "0" / f"{sid}.npy", mel.astype(np.float16))
    return root


def test_rule_by_reason(handmade: Path) -> None:
    prep = prepare(read_dataset(handmade, progress=False))
    a = prep.aliases
    assert a[0] == a[1] == 1, "one recording (shifted, quieter, decorated title): merged into the most popular"
    assert a[2] == 2, "the live version stays its own song"
    assert len({a[3], a[4], a[5]}) == 3, "three Intros: two mels differ, the third has no mel"
    assert len({a[6], a[7], a[8]}) == 3, "two settings by audio; the mel-less one cannot be placed"
    assert a[9] == a[10] == a[11] == 9, "no audio against it: one recording by title and artists"
    counts = prep.duplicates.counts
    assert counts[MERGED_AUDIO] == 1 and counts[MERGED_TITLE] == 2
    assert counts[APART_MARKER] == 1 and counts[APART_AUDIO] == 2
    assert counts[APART_GENERIC] == 1 and counts[APART_AMBIGUOUS] == 1
    assert all(prep.duplicates.examples[r] for r in counts if counts[r])
    # Every original id resolves to a canonical song, and a group's playlists count once each.
    assert set(a) == set(range(12)) and all(c in prep.songs and a[c] == c for c in a.values())
    assert prep.popularity[1] == 3 and prep.popularity[9] == 1, "5 and 3 entries, 3 and 1 playlists"
    assert all(len(p) == len(set(p)) for p in prep.train_playlists)


def test_switches(handmade: Path) -> None:
    ds = read_dataset(handmade, progress=False)
    by_title = prepare(ds, PrepOptions(audio_check=False)).aliases
    assert by_title[6] == by_title[7] == by_title[8], "without the audio check a key merges (the old behaviour)"
    assert len({by_title[3], by_title[4], by_title[5]}) == 3, "generic titles never merge without audio"
    assert by_title[2] == 2, "markers separate with or without audio"
    assert prepare(ds, PrepOptions(merge_duplicates=False)).aliases == {i: i for i in range(12)}


def test_training_summary_lists_decisions(handmade: Path) -> None:
    from training.pipeline import _duplicate_lines

    prep = prepare(read_dataset(handmade, progress=False))
    counts: dict = {label.strip(): n for label, n in prep.summary}
    counts["duplicates"] = json.loads(json.dumps(prep.duplicates.as_record()))  # as the manifest stores it
    text = "\n".join(_duplicate_lines(counts))
    assert "duplicate ids merged: 3" in text
    for reason in (MERGED_AUDIO, MERGED_TITLE, APART_MARKER, APART_AUDIO, APART_GENERIC, APART_AMBIGUOUS):
        assert f"{reason}: " in text and "(e.g. " in text.split(reason)[1].splitlines()[0], reason


# -- the shortcuts that keep the audio check cheap at real size -------------------------------------------


def test_window_read_matches_load_mel(tmp_path: Path) -> None:
    from mugle_core.melfile import load_mel, read_mel_window
    from training.same_recording import BANDS, window_frames

    rng = np.random.default_rng(3)
    window = window_frames(1876)
    for dtype, frames in ((np.float16, 1876), (np.float32, 1876), (np.float16, 1200), (np.float32, 1900)):
        path = tmp_path / f"{np.dtype(dtype).name}-{frames}.npy"
        np.save(path, rng.normal(-30, 10, (48, frames)).astype(dtype))
        full = load_mel(path)[0]
        assert full is not None
        part = read_mel_window(path, BANDS, window)
        assert part is not None and part.dtype == np.float32
        np.testing.assert_array_equal(part, full[BANDS[0]:BANDS[1], window[0]:window[1]])
    bad = tmp_path / "nan.npy"
    mel = rng.normal(-30, 10, (48, 1876)).astype(np.float16)
    mel[BANDS[0] + 1, window[0] + 5] = np.nan
    np.save(bad, mel)
    assert read_mel_window(bad, BANDS, window) is None
    assert read_mel_window(tmp_path / "missing.npy", BANDS, window) is None
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    assert read_mel_window(tmp_path / "junk.npy", BANDS, window) is None


def _songs(n: int, title: str = "Same Song") -> list:
    from training.melon import Song

    return [Song(i, title, ["A"], [1], f"album {i}", i, [], [], None) for i in range(n)]


def test_identical_windows_merge_without_fingerprint(catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.duplicates as dup

    mel = _mel(catalog, next(i for i in range(400) if i not in set(_truth(catalog)["missing_mels"])))
    made: list[int] = []
    real = dup.Fingerprint

    def counting(x: np.ndarray) -> dup.Fingerprint:
        made.append(1)
        return real(x)

    monkeypatch.setattr(dup, "Fingerprint", counting)
    groups, report = dup.find_duplicates(_songs(3), np.zeros(3), lambda i: mel.copy())
    assert sorted(map(sorted, groups)) == [[0, 1, 2]] and report.counts[MERGED_AUDIO] == 2
    assert made == []  # equal bytes settle it
    # A silent window equals every other silent one: it goes through the test, which keeps them apart.
    flat = np.full_like(mel, -80.0)
    groups, report = dup.find_duplicates(_songs(2), np.zeros(2), lambda i: flat.copy())
    assert groups == [] and report.counts[APART_AUDIO] == 1  # only groups of two or more come back


def test_key_with_one_mel_is_not_read() -> None:
    from training.duplicates import find_duplicates

    def never(i: int) -> np.ndarray:
        raise AssertionError(f"mel {i} read")

    groups, report = find_duplicates(_songs(3), np.zeros(3), never, has_mel=lambda i: i == 1)
    assert sorted(map(sorted, groups)) == [[0, 1, 2]] and report.counts[MERGED_TITLE] == 2
    groups, report = find_duplicates(_songs(3, "Intro"), np.zeros(3), never, has_mel=lambda i: i == 1)
    assert groups == [] and report.counts[APART_GENERIC] == 2
    assert report.mels_read == 0


def test_decisions_depend_on_neither_threads_nor_batches(catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.duplicates as dup
    from training.preprocess import mel_exists, mel_reader
    from training.songstrings import SongStrings

    songs = read_dataset(catalog, progress=False).songs
    popularity = np.arange(len(songs)) * 7 % 11

    def run(workers: int, batch: int, strings: SongStrings | None = None) -> tuple:
        monkeypatch.setattr(dup, "_BATCH", batch)
        groups, report = dup.find_duplicates(songs, popularity, mel_reader(catalog), has_mel=mel_exists(catalog),
                                             workers=workers, strings=strings)
        return groups, report.as_record()

    one = run(1, 64)
    assert one[0] and all(len(g) > 1 for g in one[0]), "only groups of two or more come back"
    assert one[1]["examples"][APART_MARKER] and one[1]["examples"][MERGED_AUDIO]
    assert run(3, 1) == one
    assert run(2, 5, SongStrings.of(songs)) == one
    with pytest.raises(ValueError, match="strings"):
        dup.find_duplicates(songs[1:], popularity, strings=SongStrings.of(songs))
