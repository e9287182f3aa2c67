"""The servable song catalog, stored column-wise in ``catalog.npz`` without pickle.

Strings are kept as one UTF-8 byte blob plus an offsets array per column, so a 700k-song catalog
loads in well under a second and takes tens of MB, not the GB a list of dicts would. Multi-valued
columns (artists, genres) join their values with the unit separator ``\\x1f``.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SEP = "\x1f"
TEXT_COLUMNS: tuple[str, ...] = ("title", "artists", "album", "genres", "issue_date")


def pack_strings(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Encode strings as (uint8 blob, int64 offsets of length n+1)."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    if encoded:
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return blob, offsets


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickle); ``ValueError`` names the file when it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:  # truncated, partly copied, or not an .npz
        raise ValueError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from exc


class StringColumn:
    """Random access to packed strings."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        self._bytes = blob.tobytes()
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row: int) -> str:
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return self._bytes[start:end].decode("utf-8")

    def take(self, rows: list[int]) -> list[str]:
        """The strings of ``rows``, with one numpy call for all their bounds."""
        index = np.asarray(rows, dtype=np.int64)
        blob = self._bytes
        return [blob[a:b].decode("utf-8") for a, b in zip(self._offsets[index].tolist(),
                                                           self._offsets[index + 1].tolist(), strict=True)]

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        """Byte lengths of the strings of ``rows`` (0 for an empty string), without decoding them."""
        index = np.asarray(rows, dtype=np.int64)
        lengths: np.ndarray = self._offsets[index + 1] - self._offsets[index]
        return lengths

    def starts_with(self, rows: np.ndarray, prefix: str) -> np.ndarray:
        """Whether each string of ``rows`` starts with ``prefix``, compared as UTF-8 bytes (no decoding).

        UTF-8 never splits a character's bytes across a boundary, so this is ``str.startswith`` exactly.
        """
        index = np.asarray(rows, dtype=np.int64)
        want = prefix.encode("utf-8")
        starts = self._offsets[index]
        ok: np.ndarray = self._offsets[index + 1] - starts >= len(want)
        if not len(self._bytes):
            return ok
        blob = np.frombuffer(self._bytes, dtype=np.uint8)
        for j, byte in enumerate(want):
            ok &= blob[np.minimum(starts + j, len(blob) - 1)] == byte
        return ok

    def to_list(self) -> list[str]:
        return [self[i] for i in range(len(self))]


@dataclass
class Catalog:
    """Servable songs, one row each, sorted by ``song_ids``.

    Attributes
    ----------
    song_ids : int64 array, canonical ids, ascending.
    popularity : int32 array, training playlists that contain any id of the song's merged group.
    has_audio : bool array, whether a mel was available for the song.
    alias_from, alias_to : int64 arrays, every original id (canonical ones included) -> canonical id.
    columns : text columns by name, see :data:`TEXT_COLUMNS`.
    genre_table : top-level genre code -> the name ``genres`` shows (e.g. ``GN0900`` -> ``POP``), for the
        codes the catalog's songs carry; empty for catalogs written without it. Lets a filter name a code.
    """

    song_ids: np.ndarray
    popularity: np.ndarray
    has_audio: np.ndarray
    alias_from: np.ndarray
    alias_to: np.ndarray
    columns: dict[str, StringColumn]
    genre_table: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Decoding a song reads all text columns: one (n+1, columns) offsets matrix gives every bound in a
        # single numpy call instead of ten scalar reads (a third of the cost of a song not yet cached).
        self._bounds = np.column_stack([self.columns[c]._offsets for c in TEXT_COLUMNS])
        self._blobs = [self.columns[c]._bytes for c in TEXT_COLUMNS]
        for i, c in enumerate(TEXT_COLUMNS):
            self.columns[c]._offsets = self._bounds[:, i]  # a view: the separate arrays can be freed

    def __len__(self) -> int:
        return len(self.song_ids)

    # -- writing (training) -------------------------------------------------------------------------

    @staticmethod
    def save(
        path: Path,
        songs: list[dict[str, Any]],
        aliases: dict[int, int],
        genre_table: dict[str, str] | None = None,
    ) -> None:
        """Write ``catalog.npz``.

        Parameters
        ----------
        songs : one dict per canonical song with keys ``song_id``, ``title``, ``artists`` (list),
            ``album``, ``genres`` (list of readable names), ``issue_date`` (str or None),
            ``popularity`` and ``has_audio``.
        aliases : original id -> canonical id, for every original id.
        genre_table : top-level genre code -> shown name, for the codes the songs carry (optional).
        """
        songs = sorted(songs, key=lambda s: s["song_id"])
        arrays: dict[str, np.ndarray] = {
            "song_ids": np.array([s["song_id"] for s in songs], dtype=np.int64),
            "popularity": np.array([s["popularity"] for s in songs], dtype=np.int32),
            "has_audio": np.array([bool(s.get("has_audio", False)) for s in songs], dtype=bool),
        }
        pairs = sorted(aliases.items())
        arrays["alias_from"] = np.array([a for a, _ in pairs], dtype=np.int64)
        arrays["alias_to"] = np.array([b for _, b in pairs], dtype=np.int64)
        text = {
            "title": [s["title"] for s in songs],
            "artists": [SEP.join(s["artists"]) for s in songs],
            "album": [s.get("album") or "" for s in songs],
            "genres": [SEP.join(s["genres"]) for s in songs],
            "issue_date": [s.get("issue_date") or "" for s in songs],
        }
        table = sorted((genre_table or {}).items())
        text["genre_code"] = [c for c, _ in table]
        text["genre_name"] = [n for _, n in table]
        for name, values in text.items():
            blob, offsets = pack_strings(values)
            arrays[f"{name}_blob"] = blob
            arrays[f"{name}_offsets"] = offsets
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle

    # -- reading (app) ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Catalog:
        arrays = load_npz(path)
        missing = [k for k in ("song_ids", "popularity", "has_audio", "alias_from", "alias_to") if k not in arrays]
        missing += [f"{c}_blob" for c in TEXT_COLUMNS if f"{c}_blob" not in arrays]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}")
        n = len(arrays["song_ids"])
        columns = {c: StringColumn(arrays[f"{c}_blob"], arrays[f"{c}_offsets"]) for c in TEXT_COLUMNS}
        for c, col in columns.items():
            if len(col) != n:
                raise ValueError(f"{path}: column {c!r} has {len(col)} rows, song_ids has {n}")
        if n and np.any(np.diff(arrays["song_ids"]) <= 0):
            raise ValueError(f"{path}: song_ids must be strictly ascending")
        table: dict[str, str] = {}
        if "genre_code_blob" in arrays and "genre_name_blob" in arrays:
            codes = StringColumn(arrays["genre_code_blob"], arrays["genre_code_offsets"]).to_list()
            names = StringColumn(arrays["genre_name_blob"], arrays["genre_name_offsets"]).to_list()
            if len(codes) != len(names):
                raise ValueError(f"{path}: genre table has {len(codes)} codes but {len(names)} names")
            table = dict(zip(codes, names, strict=True))
        return cls(
            song_ids=arrays["song_ids"],
            popularity=arrays["popularity"],
            has_audio=arrays["has_audio"],
            alias_from=arrays["alias_from"],
            alias_to=arrays["alias_to"],
            columns=columns,
            genre_table=table,
        )

    # -- lookups ------------------------------------------------------------------------------------

    def canonical(self, song_id: int) -> int | None:
        """The canonical id for any original id, or None when unknown."""
        i = int(np.searchsorted(self.alias_from, song_id))
        if i < len(self.alias_from) and self.alias_from[i] == song_id:
            return int(self.alias_to[i])
        return None

    def row(self, song_id: int) -> int | None:
        """Row of a canonical id, or None."""
        i = int(np.searchsorted(self.song_ids, song_id))
        if i < len(self.song_ids) and self.song_ids[i] == song_id:
            return i
        return None

    def song(self, row: int) -> dict[str, Any]:
        """The API ``Song`` dict of a row."""
        (s0, s1, s2, s3, s4), (e0, e1, e2, e3, e4) = self._bounds[row : row + 2].tolist()
        title, artists, album, genres, issue_date = self._blobs  # the order of TEXT_COLUMNS
        artists_text = artists[s1:e1].decode("utf-8")
        genres_text = genres[s3:e3].decode("utf-8")
        return {
            "song_id": int(self.song_ids[row]),
            "title": title[s0:e0].decode("utf-8"),
            "artists": artists_text.split(SEP) if artists_text else [],
            "album": album[s2:e2].decode("utf-8"),
            "genres": genres_text.split(SEP) if genres_text else [],
            "issue_date": issue_date[s4:e4].decode("utf-8") or None,
            "popularity": int(self.popularity[row]),
        }
