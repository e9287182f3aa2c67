"""The Melon reader: the format as documented, its quirks, and each bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mugle_core.melfile import load_mel, mel_path
from training.melon import (
    MelonFormatError,
    genre_names,
    normalize_issue_date,
    read_dataset,
    read_genre_table,
)

REAL_GENRES = Path(__file__).resolve().parents[2] / "shared" / "melon" / "genre_gn_all.json"


def song(i: int, **kw) -> dict:
    rec = {
        "id": i,
        "song_name": f"노래 {i}",
        "artist_name_basket": [f"가수 {i % 3}"],
        "artist_id_basket": [100 + i % 3],
        "album_name": f"앨범 {i}",
        "album_id": 1000 + i,
        "song_gn_gnr_basket": ["GN0100"],
        "song_gn_dtl_gnr_basket": ["GN0101"],
        "issue_date": "20110824",
    }
    rec.update(kw)
    return rec


def playlist(pid: int, songs: list, **kw) -> dict:
    rec = {"id": pid, "plylst_title": f"리스트 {pid}", "tags": ["새벽"], "songs": songs, "like_cnt": 3,
           "updt_date": "2013-12-19 18:36:19.000"}
    rec.update(kw)
    return rec


def write(root: Path, songs: list, train: list, genres: dict | None = None, **extra: list) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "song_meta.json").write_text(json.dumps(songs, ensure_ascii=False), encoding="utf-8")
    (root / "train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    table = {"GN0100": "발라드", "GN0101": "세부", "GN0200": "댄스"} if genres is None else genres
    (root / "genre_gn_all.json").write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    for name, records in extra.items():
        (root / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return root


@pytest.fixture
def good(tmp_path: Path) -> Path:
    songs = [song(i) for i in range(6)]
    return write(tmp_path / "d", songs, [playlist(1, [0, 1, 2]), playlist(2, [3, 4, 5, 0])],
                 val=[playlist(3, [1, 2])])


def test_reads_a_clean_dataset_without_warnings(good: Path) -> None:
    ds = read_dataset(good, progress=False)
    assert len(ds.songs) == 6 and ds.report.warnings == 0
    assert [p.split for p in ds.playlists] == ["train", "train", "val"]
    assert ds.playlists[1].songs == [3, 4, 5, 0], "curator order is kept"
    assert ds.songs[0].issue_date == "2011-08-24"
    assert ds.report.totals["playlists (train.json)"] == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20110824", "2011-08-24"), ("19860000", "1986"), ("19860300", "1986-03"), ("00000000", None),
     ("2005", "2005"), ("200512", "2005-12"), ("2005131", "2005"), ("abcd1234", None), (None, None), ("", None)],
)
def test_issue_date_quirks(raw: str | None, expected: str | None) -> None:
    assert normalize_issue_date(raw)[0] == expected


def test_quirks_are_counted_and_repaired(tmp_path: Path) -> None:
    songs = [
        song(0, song_gn_gnr_basket=["GN9000"]),      # code missing from the table
        song(1, song_gn_gnr_basket=[], song_gn_dtl_gnr_basket=[]),
        song(2, album_name=None),
        song(3, album_name=""),
        song(4, issue_date="19860000"),
        song(5, issue_date="00000000"),
        song(6, issue_date="1999"),
    ]
    root = write(tmp_path / "q", songs, [playlist(1, [0, 1, 2, 3, 4, 5, 6])])
    ds = read_dataset(root, progress=False)
    c = ds.report.counts
    assert c["genre code not in table"] == 1
    assert c["empty genre basket"] == 1
    assert c["null album_name"] == 1
    assert c["issue_date partial"] == 1 and c["issue_date no year"] == 1 and c["issue_date short"] == 1
    assert ds.songs[2].album == "" and ds.songs[3].album == ""
    assert genre_names(ds.songs[0].genres, ds.genre_table) == ["GN9000"]
    assert "GN9000" in ds.report.summary()


def test_unknown_and_repeated_song_ids_are_dropped_with_a_count(tmp_path: Path) -> None:
    root = write(tmp_path / "u", [song(i) for i in range(3)],
                 [playlist(7, [0, 99, 1, 0, -4]), playlist(8, [55])])
    ds = read_dataset(root, progress=False)
    assert [p.songs for p in ds.playlists] == [[0, 1]]
    assert ds.report.counts["unknown song id"] == 2  # one warning per playlist
    assert ds.report.counts["repeated song in playlist"] == 1
    assert ds.report.counts["empty playlist"] == 1
    msg = ds.report.examples["unknown song id"][0]
    assert "train.json[0]" in msg and "'songs'" in msg


@pytest.mark.parametrize(
    ("songs", "train", "needle"),
    [
        ([song(0), {"song_name": "x"}], [playlist(1, [0])], "record 1: field 'id'"),
        ([song(0), song(0)], [playlist(1, [0])], "duplicate song id 0"),
        ([song(0), "oops"], [playlist(1, [0])], "record 1 must be an object"),
        ([song(0, id="7")], [playlist(1, [0])], "field 'id' must be a non-negative integer"),
        ([song(0)], [playlist(1, "0,1")], "field 'songs' must be a list of integers"),
        ([song(0)], [{"songs": [0]}], "train.json: record 0: field 'id'"),
        ([song(0)], [playlist(1, [0]), playlist(1, [0])], "duplicate playlist id 1"),
        ({"songs": []}, [playlist(1, [0])], "top level must be a JSON list"),
    ],
)
def test_structural_problems_are_errors_naming_file_record_and_field(
    tmp_path: Path, songs, train, needle: str
) -> None:
    root = write(tmp_path / "bad", songs, train)
    with pytest.raises(MelonFormatError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_dataset(root, progress=False)


def test_malformed_json_and_missing_files(tmp_path: Path, good: Path) -> None:
    (good / "train.json").write_text('[{"id": 1, "songs": [0', encoding="utf-8")
    with pytest.raises(MelonFormatError, match=r"train\.json: not valid JSON"):
        read_dataset(good, progress=False)
    (good / "train.json").unlink()
    with pytest.raises(MelonFormatError, match=r"train\.json: required file is missing"):
        read_dataset(good, progress=False)
    with pytest.raises(MelonFormatError, match="does not exist"):
        read_dataset(tmp_path / "nowhere", progress=False)


def test_mistyped_decorative_fields_are_warnings(tmp_path: Path) -> None:
    songs = [song(0, song_name=None, artist_name_basket="IU", album_id="x"), song(1)]
    root = write(tmp_path / "m", songs, [playlist(1, [0, 1], tags=None, like_cnt="many", plylst_title=5)])
    ds = read_dataset(root, progress=False)
    c = ds.report.counts
    assert c["mistyped song_name"] == 1 and c["mistyped artist_name_basket"] == 1 and c["mistyped album_id"] == 1
    assert c["null tags"] == 1 and c["mistyped like_cnt"] == 1 and c["mistyped plylst_title"] == 1
    assert ds.songs[0].title == "" and ds.songs[0].artists == [] and ds.playlists[0].like_cnt == 0
    assert "song_meta.json[0]" in ds.report.examples["mistyped song_name"][0]


@pytest.mark.skipif(not REAL_GENRES.is_file(), reason="shared/melon/genre_gn_all.json is not present")
def test_real_genre_table() -> None:
    table = read_genre_table(REAL_GENRES)
    assert len(table) == 254
    top = [c for c in table if c.endswith("00")]
    assert len(top) == 30
    assert "GN9000" not in table
    # Domestic and foreign rock share one name: shown once.
    assert genre_names(["GN0600", "GN1000", "GN9000"], table) == ["록/메탈", "GN9000"]


def test_mel_files(tmp_path: Path) -> None:
    root = tmp_path
    ok = mel_path(root, 1234)
    assert ok == root / "arena_mel" / "1" / "1234.npy"
    ok.parent.mkdir(parents=True)
    np.save(ok, np.random.default_rng(0).normal(size=(48, 1876)).astype(np.float32))
    mel, status = load_mel(ok)
    assert status == "ok" and mel.shape == (48, 1876) and mel.dtype == np.float32

    short = mel_path(root, 1235)
    np.save(short, np.arange(48 * 1000, dtype=np.float32).reshape(48, 1000))
    mel, status = load_mel(short)
    assert status == "padded" and mel.shape == (48, 1876)
    assert np.all(mel[:, 1000:] == mel[:, [999]]), "padding repeats the last frame"

    assert load_mel(mel_path(root, 5000)) == (None, "missing")
    broken = mel_path(root, 1236)
    broken.write_bytes(b"\x93NUMPY garbage")
    assert load_mel(broken) == (None, "unreadable")
    wrong = mel_path(root, 1237)
    np.save(wrong, np.zeros((40, 1876), dtype=np.float32))
    assert load_mel(wrong) == (None, "bad shape")
    pickled = mel_path(root, 1238)
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert load_mel(pickled)[1] in ("unreadable", "bad shape")
    tiny = mel_path(root, 1239)
    np.save(tiny, np.zeros((48, 10), dtype=np.float32))
    assert load_mel(tiny) == (None, "too short")


def test_hand_broken_copy_of_the_demo_gets_the_documented_outcomes(tmp_path: Path) -> None:
    """The demo dataset reads cleanly; copies broken by hand get the error or warning the README documents."""
    import shutil

    from training.demo import generate

    clean = tmp_path / "clean"
    generate(clean, songs=60, playlists=40, seed=1, mels=False, progress=False)
    assert read_dataset(clean, progress=False).report.counts.get("unknown song id", 0) == 0

    def broken_copy(name: str) -> Path:
        path = tmp_path / name
        shutil.copytree(clean, path)
        return path

    # Truncated file: an error naming it.
    d = broken_copy("truncated")
    text = (d / "train.json").read_text(encoding="utf-8")
    (d / "train.json").write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(MelonFormatError, match=r"train\.json: not valid JSON"):
        read_dataset(d, progress=False)

    # A song's id mistyped: an error naming file, record and field.
    d = broken_copy("bad-id")
    songs = json.loads((d / "song_meta.json").read_text(encoding="utf-8"))
    songs[7]["id"] = "7"
    (d / "song_meta.json").write_text(json.dumps(songs, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(MelonFormatError, match=r"song_meta\.json: record 7: field 'id'"):
        read_dataset(d, progress=False)

    # A playlist naming an unknown song and a song with a null album: counted warnings, data kept.
    d = broken_copy("warnings")
    train = json.loads((d / "train.json").read_text(encoding="utf-8"))
    train[2]["songs"].append(999_999)
    (d / "train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    songs = json.loads((d / "song_meta.json").read_text(encoding="utf-8"))
    songs[3]["album_name"] = None
    (d / "song_meta.json").write_text(json.dumps(songs, ensure_ascii=False), encoding="utf-8")
    before = read_dataset(clean, progress=False).report.counts
    ds = read_dataset(d, progress=False)
    assert ds.report.counts["unknown song id"] == 1
    assert "train.json[2]" in ds.report.examples["unknown song id"][0]
    assert ds.report.counts["null album_name"] == before.get("null album_name", 0) + 1
    assert 999_999 not in {s for p in ds.playlists for s in p.songs}
