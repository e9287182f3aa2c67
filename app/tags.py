"""Playlist tags ("situations and moods") in the service: lookup, fuzzy search, and what to recommend.

Training (:mod:`training.tags`) learns, per tag that enough training playlists carry, which songs fit it:

* the songs its playlists hold, counted (how many of the tag's playlists hold each song), and
* a query vector per model: the normalised mean of the vectors of the distinct songs its playlists hold
  (for Music2Vec the input vectors, searched against the output-vector index like a song's own query).

:class:`TagIndex` is what the engine keeps of a version's ``tags.npz`` (:mod:`app.tagtable`): exact lookup
by folded name, and fuzzy search with the title search's machinery (:class:`app.search.TitleSearch`:
character bigrams, rapidfuzz, Hangul initials). Nothing here imports torch or gensim.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from app.search import TitleSearch
from mugle_core.searchindex import build_text_arrays
from mugle_core.tagtable import TagTable, tag_key

logger = logging.getLogger(__name__)


class UnknownTagError(LookupError):
    """No tag of the served version has this name."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        super().__init__(f"unknown tag {tag!r} (GET /tags?q=... lists the known ones)")


class TagIndex:
    """The served tags: lookup by name, fuzzy search, and each tag's counted songs as catalog rows.

    Parameters
    ----------
    table : the version's tags.
    song_ids : the catalog's canonical ids (ascending), to map the counted songs to catalog rows.
    popularity : playlists per catalog row; when given, songs a tag counts equally are ordered by it, more
        popular first (the table orders them by id). In a tag of a few playlists most songs are counted once
        or twice, and on the structure sweep's 24 evaluations ordering those by id lost 0.005 HitRate@10 on
        average against ordering them by popularity, as the tag-popularity baseline does.
    """

    def __init__(self, table: TagTable, song_ids: np.ndarray, popularity: np.ndarray | None = None) -> None:
        self.table = table
        self.names = table.names
        self.playlists = np.asarray(table.playlists, dtype=np.int64)
        self._by_key: dict[str, int] = {}
        for i, name in enumerate(table.names):
            self._by_key.setdefault(tag_key(name), i)
        rows = np.searchsorted(song_ids, table.song_ids)
        known = rows < len(song_ids)
        known[known] = song_ids[rows[known]] == table.song_ids[known]
        if not np.all(known):
            raise ValueError(f"tags name {int((~known).sum())} song ids the catalog lacks, e.g. "
                             f"{table.song_ids[~known][:3].tolist()}")
        self._rows = rows.astype(np.int64)
        self._counts = np.asarray(table.song_counts)
        if popularity is not None and len(self._rows):
            tag_of = np.repeat(np.arange(len(table.names)), np.diff(np.asarray(table.song_offsets)))
            order = np.lexsort((self._rows, -np.asarray(popularity)[self._rows], -self._counts, tag_of))
            self._rows, self._counts = self._rows[order], self._counts[order]
        self.vectors = table.vectors
        self._search: TitleSearch | None = None

    def __len__(self) -> int:
        return len(self.names)

    def find(self, tag: str) -> int:
        """Index of the tag named ``tag`` (any case or spacing); :class:`UnknownTagError` otherwise."""
        i = self._by_key.get(tag_key(tag))
        if i is None:
            raise UnknownTagError(tag)
        return i

    def search(self, query: str, limit: int = 10) -> list[dict[str, object]]:
        """Tags matching ``query`` fuzzily, best first, as ``{"tag", "playlists"}``."""
        if self._search is None:
            # Built on first use: a few hundred ms at the real data's 30k tags, none of it at startup.
            arrays = build_text_arrays(self.names, [""] * len(self.names), self.playlists)
            self._search = TitleSearch(arrays, self.playlists)
        hits = self._search.search(query, limit)
        return [{"tag": self.names[i], "playlists": int(self.playlists[i])} for i, _ in hits]

    def counted(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Catalog rows of the songs tag ``i``'s playlists hold, most counted first (see ``popularity``), and their
        counts."""
        lo, hi = int(self.table.song_offsets[i]), int(self.table.song_offsets[i + 1])
        return self._rows[lo:hi], self._counts[lo:hi]

    def query_vectors(self, i: int, models: Sequence[str]) -> dict[str, np.ndarray]:
        """Tag ``i``'s query vector in each of ``models`` that has a non-zero one."""
        out: dict[str, np.ndarray] = {}
        for m in models:
            vecs = self.vectors.get(m)
            if vecs is not None and vecs[i].any():
                out[m] = np.asarray(vecs[i], dtype=np.float32)
        return out
