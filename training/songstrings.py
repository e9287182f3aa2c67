"""Each song's title and artist list as an integer code, so that work on them runs once per distinct value.

Real catalogs repeat titles and artist lists: the real-size benchmark holds 80,576 distinct titles and
111,332 distinct artist lists for 707,989 songs. What depends only on them (the instrumental and
"Various Artists" filters, the duplicate key's title part and artist set) is computed once per distinct
value and spread to the songs by index with numpy, instead of once per song.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from training.melon import Song

T = TypeVar("T")


@dataclass(frozen=True)
class SongStrings:
    """Per song, the index of its title in :attr:`titles` and of its artist list in :attr:`artist_lists`."""

    title: np.ndarray  # int64, one per song
    artists: np.ndarray  # int64, one per song
    titles: list[str]  # the distinct titles, in order of first appearance
    artist_lists: list[tuple[str, ...]]  # the distinct artist lists, in order of first appearance

    @classmethod
    def of(cls, songs: Sequence[Song]) -> SongStrings:
        titles: dict[str, int] = {}
        lists: dict[tuple[str, ...], int] = {}
        n = len(songs)
        title = np.fromiter((titles.setdefault(s.title, len(titles)) for s in songs), np.int64, n)
        artists = np.fromiter((lists.setdefault(tuple(s.artists), len(lists)) for s in songs), np.int64, n)
        return cls(title, artists, list(titles), list(lists))

    def take(self, positions: np.ndarray) -> SongStrings:
        """The codes of the songs at ``positions`` (the distinct values are shared, not copied)."""
        return SongStrings(self.title[positions], self.artists[positions], self.titles, self.artist_lists)

    def per_title(self, fn: Callable[[str], T], dtype: type | None = None) -> np.ndarray:
        """``fn(title)`` for every song, computed once per distinct title."""
        return np.asarray([fn(t) for t in self.titles], dtype=dtype)[self.title]

    def per_artist_list(self, fn: Callable[[tuple[str, ...]], T], dtype: type | None = None) -> np.ndarray:
        """``fn(artist list)`` for every song, computed once per distinct artist list."""
        return np.asarray([fn(a) for a in self.artist_lists], dtype=dtype)[self.artists]
