"""The real-audio set builders (``training.realaudio``) on tiny inputs made here, never on the cache.

Recordings: synthetic tracks laid out as an unpacked Debian package (plain WAVs, a zip ``.pk3`` with an
OGG inside, a short file, a byte-identical copy, a tracker module) go through the real builder; the
mels it writes must equal what the front end computes on the whole file. Melodies: ABC splitting and
parsing (music21), the performance plan, the arrangement, the MIDI bytes, and a rendered build when
fluidsynth and a GM soundfont are installed (skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mugle_core.melfile import mel_path
from mugle_core.melspec import audio_to_mel
from training.melon import SONG_META
from training.realaudio import debs, layout, recordings
from training.realaudio.midi import TICKS, Note, Part, write_midi

SR = 16000


def _track(seconds: float, seed: int) -> np.ndarray:
    """A few seconds-long notes of a seeded random melody with harmonics, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    freqs = rng.choice([220.0, 247.0, 262.0, 294.0, 330.0, 349.0, 392.0, 440.0], size=int(seconds) + 1)
    f = freqs[(t // 1.0).astype(int)]
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = 0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase + seed) + 0.02 * rng.standard_normal(t.size)
    return (y * (0.6 + 0.4 * np.sin(2 * np.pi * t / (7 + seed)))).astype(np.float32)


def _fake_package(unpacked: Path, debs_cache: Path, package: str, files: dict[str, np.ndarray | bytes]) -> Path:
    """An 'already unpacked' package: a cached .deb name and a folder whose marker names it."""
    debs_cache.mkdir(parents=True, exist_ok=True)
    deb = debs_cache / f"{package}_1.0_all.deb"
    deb.write_bytes(b"not used: the unpacked folder is current")
    folder = unpacked / package
    for rel, content in files.items():
        path = folder / "usr/share/games" / package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            sf.write(path, content, SR, subtype="PCM_16")
    (folder / ".unpacked").write_text(deb.name)
    return folder


@pytest.fixture(scope="module")
def tiny_recordings(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("rec")
    debs_cache, unpacked = root / "debs", root / "unpacked"
    a, b, c = _track(100, 1), _track(95, 2), _track(120, 3)
    _fake_package(unpacked, debs_cache, "frozen-bubble-data", {
        "music/a_theme.wav": a,
        "music/b-song.wav": b,
        "music/short.wav": _track(40, 4),
        "music/copy/a_theme.wav": a,  # byte-identical: kept once
        "music/tracker.it": b"IMPM fake tracker module",
    })
    folder = _fake_package(unpacked, debs_cache, "pingus-data", {"music/c.wav": c, "music/d.wav": _track(110, 5)})
    # A zip archive with an OGG inside, as some games ship their music.
    ogg = root / "e.ogg"
    sf.write(ogg, _track(96, 6), SR, format="OGG", subtype="VORBIS")
    with zipfile.ZipFile(folder / "usr/share/games/pingus-data/music.pk3", "w") as archive:
        archive.write(ogg, "sound/e.ogg")
    packages = ("frozen-bubble-data", "pingus-data")
    ready = recordings.build(root / "sets" / "recordings", debs_cache, unpacked, packages=packages, workers=1,
                             niceness=0, progress=False)
    return {"root": root, "folder": root / "sets" / "recordings", "ready": ready, "packages": packages,
            "debs": debs_cache, "unpacked": unpacked, "tracks": {"a": a, "b": b, "c": c}}


def test_recordings_counts_and_reasons(tiny_recordings: dict) -> None:
    ready = tiny_recordings["ready"]
    assert ready["songs"] == 5 and ready["queries"] == 5
    assert ready["per_game"] == {"Frozen Bubble": 2, "Pingus": 3}
    assert ready["skipped"] == {"byte-identical duplicate": 1, "shorter than 90 s": 1,
                                "tracker module (no decoder)": 1}
    folder = tiny_recordings["folder"]
    meta = json.loads((folder / SONG_META).read_text(encoding="utf-8"))
    assert [s["id"] for s in meta] == list(range(5))
    assert {s["artist_name_basket"][0] for s in meta} == {"Frozen Bubble", "Pingus"}
    assert "a theme" in {s["song_name"] for s in meta}
    assert (folder / layout.READY).is_file() and not folder.with_name("recordings.building").exists()


def test_recordings_mels_match_the_front_end(tiny_recordings: dict) -> None:
    """The partial decode gives the mel the front end computes on the whole file; queries come later."""
    folder = tiny_recordings["folder"]
    truth = json.loads((folder / layout.TRUTH_FILE).read_text(encoding="utf-8"))
    by_title = {t["source"].rsplit("/", 1)[-1]: t for t in truth["tracks"]}
    entry = by_title["a_theme.wav"]
    samples, _ = sf.read(tiny_recordings["unpacked"] / "frozen-bubble-data/usr/share/games/frozen-bubble-data/music/"
                         "a_theme.wav", dtype="float32")
    whole = audio_to_mel(samples, SR)
    mel = np.load(mel_path(folder, entry["song_id"]))
    assert mel.shape == (48, 1876)
    np.testing.assert_allclose(mel, whole, atol=1e-3)
    (query,) = entry["queries"]
    assert query["start_s"] == pytest.approx(recordings.query_start(100.0)) and query["start_s"] >= 60.0
    clip, sr = sf.read(folder / query["wav"], dtype="float32")
    assert sr == SR and clip.ndim == 1 and len(clip) == 30 * SR
    np.testing.assert_allclose(np.load(folder / query["mel"]), audio_to_mel(clip, sr), atol=1e-4)
    # The query is another part of the track: not the catalog excerpt.
    assert not np.allclose(np.load(folder / query["mel"]), mel, atol=1.0)
    assert any("music.pk3!sound/e.ogg" in t["source"] for t in truth["tracks"])


def test_recordings_build_is_idempotent_and_deterministic(tiny_recordings: dict, tmp_path: Path) -> None:
    folder = tiny_recordings["folder"]
    stamp = (folder / layout.READY).stat().st_mtime_ns
    again = recordings.build(folder, tiny_recordings["debs"], tiny_recordings["unpacked"],
                             packages=tiny_recordings["packages"], workers=1, niceness=0, progress=False)
    assert (folder / layout.READY).stat().st_mtime_ns == stamp and again["songs"] == 5
    other = tmp_path / "recordings"
    recordings.build(other, tiny_recordings["debs"], tiny_recordings["unpacked"],
                     packages=tiny_recordings["packages"], workers=2, niceness=0, progress=False)
    for name in (SONG_META, "train.json", layout.TRUTH_FILE):
        assert (other / name).read_bytes() == (folder / name).read_bytes(), name
    for i in range(5):
        assert np.array_equal(np.load(mel_path(other, i)), np.load(mel_path(folder, i)))


def test_recordings_set_reads_with_the_dataset_reader(tiny_recordings: dict) -> None:
    from training.melon import read_dataset

    data = read_dataset(tiny_recordings["folder"], splits=("train",), progress=False)
    assert len(data.songs) == 5
    assert all(len(p.songs) >= 2 for p in data.playlists)


def test_unknown_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        recordings.build(tmp_path / "r", tmp_path / "debs", tmp_path / "u", packages=("no-such-game-data",))


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed (not a Debian system)")
def test_dpkg_unpack_of_a_real_deb(tmp_path: Path) -> None:
    """A .deb built here is unpacked by the real ``dpkg -x``, once."""
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: mugle-test-music\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    (pkg / "usr/share/music").mkdir(parents=True)
    sf.write(pkg / "usr/share/music/x.wav", _track(2, 0), SR)
    cache = tmp_path / "debs"
    cache.mkdir()
    deb = cache / "mugle-test-music_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)], check=True,
                   capture_output=True)
    folder, name = debs.fetch("mugle-test-music", cache, tmp_path / "unpacked")
    assert name == deb.name and (folder / "usr/share/music/x.wav").is_file()
    (folder / "usr/share/music/x.wav").unlink()
    assert debs.unpack(deb, tmp_path / "unpacked") == folder  # marker current: not unpacked again
    assert not (folder / "usr/share/music/x.wav").exists()


def test_pretty_titles_and_query_start() -> None:
    assert recordings.pretty_title("01 - pronobozo - lincity.ogg") == "pronobozo - lincity"
    assert recordings.pretty_title("battle_theme.ogg") == "battle theme"
    assert recordings.query_start(90.0) == 60.0
    assert recordings.query_start(300.0) == 135.0


# -- melodies ---------------------------------------------------------------------------------------------


ABC = """%abc
% a file header comment

X:1
T:First Tune
M:4/4
L:1/8
K:G
GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4|

X:2
T:Second Tune
M:6/8
L:1/8
K:Am
A|EAA cBA|EAA cBA|GBB dcB|GBB dcB|EAA cBA|EAA cBA|GBd edB|A3 A2|
"""


def test_split_abc_keeps_the_header() -> None:
    from training.realaudio.melodies import split_abc

    tunes = list(split_abc(ABC))
    assert [n for n, _ in tunes] == [1, 2]
    assert all(text.startswith("%abc") for _, text in tunes)
    assert "Second Tune" in tunes[1][1] and "First Tune" not in tunes[1][1]


def test_albums_are_books_not_single_tunes(tmp_path: Path) -> None:
    """A file of many tunes is an album; one-tune files share their collection's album (else playlists
    built per album would hold exactly the performances of one tune: the answer)."""
    from training.realaudio.melodies import tune_texts

    (tmp_path / "ryansMammoth").mkdir()
    (tmp_path / "oneills1850").mkdir()
    (tmp_path / "ryansMammoth" / "OneReel.abc").write_text(ABC.split("X:2")[0])
    (tmp_path / "ryansMammoth" / "OtherJig.abc").write_text("X:2" + ABC.split("X:2")[1])
    (tmp_path / "oneills1850" / "0001-0002.abc").write_text(ABC)
    assert {t.album for t in tune_texts("ryan", tmp_path)} == {"ryansMammoth"}
    assert {t.album for t in tune_texts("oneill", tmp_path)} == {"oneills1850/0001-0002"}


def test_parse_plan_and_arrange() -> None:
    pytest.importorskip("music21", reason="music21 (the realaudio extra) is not installed")
    from training.realaudio import melodies as M

    first, second = (M.parse_tune(M.TuneText("oneill", "x.abc", n, t)) for n, t in M.split_abc(ABC))
    assert first is not None and second is not None
    assert first.title == "First Tune" and first.bar == 4.0 and not first.compound and first.pickup == 0
    assert second.compound and second.minor and second.pickup == pytest.approx(2.5)  # the upbeat eighth ends a 6/8 bar
    assert first.notes[0][0] == 67  # G4
    assert first.signature() != second.signature()
    rng = np.random.default_rng(0)
    perfs = M.plan_performances(rng, 4)
    assert len({p.program for p in perfs}) == 4 and len({p.transpose for p in perfs}) == 4
    assert sum(p.accompaniment for p in perfs) == 2
    assert all(0.85 <= p.tempo <= 1.15 and all(abs(t) <= 4 for t in (p.transpose,)) for p in perfs)
    solo = next(p for p in perfs if not p.accompaniment)
    parts = M.arrange(first, solo, seconds=31.5)
    assert len(parts) == 1
    notes = parts[0].notes
    assert notes[0].pitch == 67 + solo.transpose
    # Looped to fill the clip: the last note starts within the last beats of 31.5 s.
    assert notes[-1].start * 60 / solo.bpm > 28
    band = next(p for p in perfs if p.accompaniment)
    full = M.arrange(first, band, seconds=31.5)
    assert [p.channel for p in full] == [0, 1, 2] and all(n.pitch < 48 for n in full[1].notes)
    # Bar 1 of the first tune outlines G major: I in G.
    assert M.harmonise(first)[0] == (7, 11, 2)


def test_midi_bytes() -> None:
    data = write_midi([Part(0, 73, [Note(60, 0, 1), Note(60, 1, 1)]), Part(1, 32, [Note(36, 0, 2)])], bpm=120)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[12:14], "big") == TICKS
    assert data.endswith(b"\xff\x2f\x00")
    assert data.count(bytes([0x90, 60])) == 2 and bytes([0xC0, 73]) in data and bytes([0xC1, 32]) in data
    with pytest.raises(ValueError, match="channel"):
        write_midi([Part(9, 0, [])], bpm=120)


def _renderer_missing() -> str | None:
    from training.realaudio import melodies as M

    try:
        M.fluidsynth_program()
        M.find_soundfont()
    except M.RenderUnavailable as exc:
        return str(exc)
    return None


def test_melodies_build_renders_performances(tmp_path: Path) -> None:
    pytest.importorskip("music21", reason="music21 (the realaudio extra) is not installed")
    missing = _renderer_missing()
    if missing:
        pytest.skip(missing)
    from training.realaudio import melodies as M

    corpus = tmp_path / "corpus"
    for key, (folder, *_rest) in M.COLLECTIONS.items():
        (corpus / folder).mkdir(parents=True)
        (corpus / folder / f"{key}.abc").write_text(ABC.replace("First", key.title() + " First")
                                                    .replace("Second", key.title() + " Second"))
    ready = M.build(tmp_path / "melodies", tmp_path / "debs", tmp_path / "unpacked", tunes=2, performances=2,
                    workers=1, niceness=0, progress=False, corpus=corpus)
    # Six texts, but only two distinct melodies: the copies in other collections are skipped.
    assert ready["tunes"] == 2 and ready["songs"] == 4
    truth = json.loads((tmp_path / "melodies" / layout.TRUTH_FILE).read_text(encoding="utf-8"))
    mels = [np.load(mel_path(tmp_path / "melodies", s)) for t in truth["tunes"] for s in t["song_ids"]]
    assert all(m.shape == (48, 1876) for m in mels)
    assert all(m.max() > -60 for m in mels)  # something was rendered, not silence
    meta = json.loads((tmp_path / "melodies" / SONG_META).read_text(encoding="utf-8"))
    assert len({s["song_name"] for s in meta}) == 4
    assert {s["album_name"] for s in meta} == {"essenFolksong/essen"}
    # A rebuild with other metadata takes the rendered mels from the render cache.
    renders = sorted((tmp_path / "renders").glob("*.npy"))
    assert len(renders) == 4
    M.build(tmp_path / "melodies", tmp_path / "debs", tmp_path / "unpacked", tunes=2, performances=2, seed=0,
            workers=1, niceness=0, progress=False, corpus=corpus, force=True)
    assert sorted((tmp_path / "renders").glob("*.npy")) == renders
