"""Per-distinct-value work spread to songs by index gives what per-song work gives."""

from __future__ import annotations

import numpy as np

from mugle_core.textnorm import is_instrumental, normalize_artists
from training.melon import Song
from training.songstrings import SongStrings


def _song(i: int, title: str, artists: list[str]) -> Song:
    return Song(i, title, artists, [], "", None, [], [], None)


SONGS = [
    _song(0, "봄날", ["BTS"]),
    _song(1, "봄날 (Inst.)", ["BTS"]),
    _song(2, "봄날", ["BTS"]),            # a repeated title and artist list
    _song(3, "Mix", ["Various Artists"]),
    _song(4, "봄날", ["B", "A"]),
    _song(5, "봄날", ["A", "B"]),         # the same set in another order: another list, one set
    _song(6, "", []),
]


def test_codes_point_at_each_songs_own_values() -> None:
    s = SongStrings.of(SONGS)
    assert [s.titles[i] for i in s.title] == [x.title for x in SONGS]
    assert [list(s.artist_lists[i]) for i in s.artists] == [x.artists for x in SONGS]
    assert len(s.titles) == len(set(s.titles)) == 4 and len(s.artist_lists) == 5
    assert s.title[0] == s.title[2] and s.artists[4] != s.artists[5]


def test_per_distinct_equals_per_song() -> None:
    s = SongStrings.of(SONGS)
    assert s.per_title(is_instrumental, bool).tolist() == [is_instrumental(x.title) for x in SONGS]
    sets = s.per_artist_list(lambda names: hash(normalize_artists(names)))
    assert sets.tolist() == [hash(normalize_artists(x.artists)) for x in SONGS]
    part = s.take(np.array([5, 1]))
    assert [part.titles[i] for i in part.title] == ["봄날", "봄날 (Inst.)"]
    assert [part.artist_lists[i] for i in part.artists] == [("A", "B"), ("BTS",)]


def test_no_songs() -> None:
    s = SongStrings.of([])
    assert len(s.title) == 0 and s.per_title(is_instrumental, bool).shape == (0,)
