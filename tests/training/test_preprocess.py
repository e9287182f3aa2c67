"""Preprocessing: duplicate merging, filters and their defaults, popularity, holdout exclusion."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mugle_core.textnorm import hangul_initials, is_initials_query, normalize_title
from training.melon import read_dataset
from training.preprocess import (
    ORIGINAL_EXCLUDED_GENRES,
    PrepOptions,
    add_prep_arguments,
    catalog_rows,
    prep_options_from_args,
    prepare,
)

from .test_melon import playlist, song, write


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Love Poem", "love poem (feat. IU)"),
        ("봄날", "봄날 [Remastered]"),
        ("ＬＯＶＥ　ＤＩＶＥ", "Love Dive"),
        ("Hello, World!", "hello world"),
        ("너의 의미 (Feat. 김창완)", "너의 의미"),
    ],
)
def test_normalize_title_equates_decorated_forms(a: str, b: str) -> None:
    assert normalize_title(a) == normalize_title(b)


def test_normalize_title_keeps_distinct_titles_apart() -> None:
    assert normalize_title("봄날") != normalize_title("봄날은 간다")
    assert normalize_title("(Intro)") == "intro", "a bracket-only title keeps its content"


def test_hangul_initials() -> None:
    assert hangul_initials("벚꽃 엔딩") == "ㅂㄲㅇㄷ"
    assert is_initials_query("ㅂㄲ ㅇㄷ") and not is_initials_query("벚꽃") and not is_initials_query("  ")


@pytest.fixture
def dataset(tmp_path: Path):
    songs = [
        song(0, song_name="봄날", artist_name_basket=["BTS"]),
        song(1, song_name="봄날 (Remastered)", artist_name_basket=["BTS"], album_name="OST"),
        song(2, song_name="봄날", artist_name_basket=["Other"]),             # same title, other artist
        song(3, song_name="밤편지 (Inst.)"),                                  # instrumental
        song(4, song_name="Mix", artist_name_basket=["Various Artists"]),
        song(5, song_name="Moonlight", song_gn_gnr_basket=["GN1600"]),       # classical
        song(6, song_name="혼자"),
        song(7, song_name="새 노래"),                                          # in no playlist
    ]
    train = [
        playlist(10, [1, 2, 6]),
        playlist(11, [1, 6, 0]),
        playlist(12, [0, 1, 6, 5]),   # 0 and 1 both: counts once after merging
        playlist(13, [2, 6, 3, 4]),
        playlist(14, [7, 6]),         # will be held out
    ]
    return read_dataset(write(tmp_path / "p", songs, train), progress=False)


def test_duplicates_merge_into_the_most_popular_id(dataset) -> None:
    prep = prepare(dataset, PrepOptions(min_playlists=2))
    # id 1 is in 3 playlists, id 0 in 2: id 1 is canonical.
    assert prep.aliases[0] == 1 and prep.aliases[1] == 1
    assert prep.aliases[2] == 2, "same title, different artist: not a duplicate"
    assert 0 not in prep.songs and 1 in prep.songs
    assert prep.popularity[1] == 3, "playlists containing any id of the group, counted once each"
    assert all(len(p) == len(set(p)) for p in prep.train_playlists)
    assert prep.train_playlists[2] == [1, 6, 5], "curator order kept, merged repeat removed"


def test_tie_goes_to_the_lowest_id(tmp_path: Path) -> None:
    songs = [song(i, song_name=t, artist_name_basket=["X"]) for i, t in enumerate("AAB")]
    ds = read_dataset(write(tmp_path / "t", songs, [playlist(1, [1, 2]), playlist(2, [0, 2])]), progress=False)
    assert prepare(ds).aliases == {0: 0, 1: 0, 2: 2}


def test_default_filters_and_switches(dataset) -> None:
    prep = prepare(dataset)
    assert 3 not in prep.aliases and 4 not in prep.aliases, "instrumental and Various Artists dropped by default"
    assert 5 in prep.songs, "genre exclusion is opt-in"
    assert 7 in prep.songs and prep.popularity[7] == 1, "a song below min_playlists stays servable"
    assert 7 not in prep.w2v_songs and 6 in prep.w2v_songs
    labels = dict(prep.summary)
    assert labels["songs in song_meta.json"] == 8 and labels["servable songs (canonical)"] == 5

    opts = PrepOptions(drop_instrumental=False, drop_various_artists=False, excluded_genres=ORIGINAL_EXCLUDED_GENRES,
                       merge_duplicates=False)
    prep2 = prepare(dataset, opts)
    assert {3, 4} <= set(prep2.songs) and 5 not in prep2.songs and {0, 1} <= set(prep2.songs)


def test_catalog_rows_from_the_kept_records(dataset) -> None:
    prep = prepare(dataset)
    rows = catalog_rows(prep.songs, prep.popularity, {1}, dataset.genre_table)
    by_id = {r["song_id"]: r for r in rows}
    assert set(by_id) == set(prep.songs) == set(prep.popularity)
    assert by_id[1] == {"song_id": 1, "title": "봄날 (Remastered)", "artists": ["BTS"], "album": "OST",
                        "genres": ["발라드"], "issue_date": "2011-08-24", "popularity": 3, "has_audio": True}
    assert by_id[6]["has_audio"] is False
    by_id[1]["artists"].append("X")
    assert prep.songs[1].artists == ["BTS"], "a row's lists are its own"


def test_holdout_playlists_never_reach_training(dataset) -> None:
    prep = prepare(dataset, holdout_ids={14})
    assert 14 not in prep.train_playlist_ids
    assert prep.popularity[7] == 0, "a song only in held-out playlists has no training popularity"
    assert 7 in prep.songs, "but it stays in the catalog (cold start)"
    assert all(7 not in p for p in prep.train_playlists)


def test_cli_options() -> None:
    parser = argparse.ArgumentParser()
    add_prep_arguments(parser)
    opts = prep_options_from_args(parser.parse_args(["--exclude-genres", "original", "--min-playlists", "5"]))
    assert opts.excluded_genres == ORIGINAL_EXCLUDED_GENRES and opts.min_playlists == 5
    opts = prep_options_from_args(parser.parse_args(["--exclude-genres", "GN0100, GN0200", "--keep-instrumental"]))
    assert opts.excluded_genres == {"GN0100", "GN0200"} and not opts.drop_instrumental
    assert opts.audio_check and not prep_options_from_args(parser.parse_args(["--no-audio-check"])).audio_check
    with pytest.raises(SystemExit, match="playlist-splits"):
        prep_options_from_args(parser.parse_args(["--playlist-splits", "train,bogus"]))
