"""The title search index's format: the arrays :class:`app.search.TitleSearch` queries, built from a catalog.

Training writes them once per version into ``extras/search_index.npz`` (:func:`write_search_index`); the
service loads that file when its fingerprint matches the served catalog and builds the arrays in memory
otherwise. Every string goes through :mod:`mugle_core.textnorm`. The arrays are:

- ``title_blob``/``title_offsets``, ``artist_blob``/``artist_offsets``: normalised titles and artists;
- ``title_hash``/``title_hash_rows``: CRC-32 of each spacing-free title, sorted, with its catalog row;
- ``vocab``/``post_offsets``/``post_rows``/``row_bigrams``: the character-bigram inverted index, each
  posting list most popular song first, and the bigram count of each row;
- ``by_popularity``: catalog rows, most popular first;
- ``initials_blob``/``initials_starts``: every title's Hangul initials, most popular first;
- ``fingerprint``: format version, song count and checksums of the catalog text it was built from.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path

import numpy as np

from mugle_core.artifacts import CATALOG, EXTRAS_DIR
from mugle_core.catalog import SEP, Catalog, pack_strings
from mugle_core.textnorm import fold, hangul_initials, normalize_title, title_key

logger = logging.getLogger(__name__)

SEARCH_INDEX = "search_index.npz"
FORMAT_VERSION = 3  # 2: posting lists ordered most popular first; 3: version markers per row
CP_BITS = 21  # Unicode code points fit in 21 bits
_SEP_TA = "\x01"  # between title and artists: no bigram spans the two
_SEP_DOC = "\x00"


def title_crc(text: str) -> int:
    """CRC-32 of a title's UTF-8 bytes: the key of the exact-title lookup."""
    return zlib.crc32(text.encode("utf-8"))


def markers_crc(title: str) -> int:
    """Checksum of a title's version markers; 0 for a title without any (the original)."""
    markers = title_key(title)[1]
    return title_crc(" ".join(markers)) if markers else 0


def fingerprint(catalog: Catalog) -> np.ndarray:
    """Identifies the catalog text an index was built from (song count + checksums of titles and artists)."""
    title = catalog.columns["title"]
    artists = catalog.columns["artists"]
    return np.array(
        [FORMAT_VERSION, len(catalog), zlib.crc32(title._bytes), zlib.crc32(artists._bytes)], dtype=np.int64
    )


def _bigram_postings(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised inverted index of character bigrams: (vocab keys, offsets, rows, bigrams per row).

    Within one bigram the rows are ascending, so passing the texts in popularity order gives posting
    lists in popularity order (rows are then popularity ranks).
    """
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(1, dtype=np.int64), empty.astype(np.int32), np.zeros(0, dtype=np.float32)
    full = _SEP_DOC.join(texts) + _SEP_DOC
    cp = np.frombuffer(full.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=n)
    doc = np.repeat(np.arange(n, dtype=np.int64), lengths)
    first, second = cp[:-1], cp[1:]
    valid = (first > 1) & (second > 1)  # drop pairs that touch a separator
    keys = (first[valid] << CP_BITS) | second[valid]
    rows = doc[:-1][valid]
    row_bits = max(1, int(n - 1).bit_length())
    if 2 * CP_BITS + row_bits <= 63:
        # One int64 sort of (bigram, row) is much faster than a lexsort of two columns.
        # np.sort + diff, not np.unique: numpy's hash-based unique is several times slower here.
        pairs = np.sort((keys << row_bits) | rows)
        if len(pairs):
            pairs = pairs[np.r_[True, np.diff(pairs) != 0]]
        keys, rows = pairs >> row_bits, pairs & ((1 << row_bits) - 1)
    else:  # pragma: no cover - catalogs beyond 2 million songs
        order = np.lexsort((rows, keys))
        keys, rows = keys[order], rows[order]
        keep = np.ones(len(keys), dtype=bool)
        keep[1:] = (np.diff(keys) != 0) | (np.diff(rows) != 0)
        keys, rows = keys[keep], rows[keep]
    starts = np.flatnonzero(np.r_[True, np.diff(keys) != 0]) if len(keys) else np.zeros(0, dtype=np.int64)
    vocab = keys[starts]
    offsets = np.r_[starts, len(keys)].astype(np.int64)
    per_row = np.bincount(rows, minlength=n).astype(np.float32)
    return vocab, offsets, rows.astype(np.int32), per_row


def build_search_arrays(catalog: Catalog) -> dict[str, np.ndarray]:
    """Normalise every title and artist of ``catalog`` and build the index arrays (seconds at 700k songs)."""
    artists = [a.replace(SEP, " ") for a in catalog.columns["artists"].to_list()]
    return build_text_arrays(catalog.columns["title"].to_list(), artists, catalog.popularity, fingerprint(catalog))


def build_text_arrays(
    titles_raw: list[str], artists_raw: list[str], popularity: np.ndarray, stamp: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The index arrays over any named things: ``titles_raw`` with optional ``artists_raw`` ("" for none).

    Songs use it through :func:`build_search_arrays`; the playlist tags (:mod:`app.tags`) use it with no
    artists and their playlist counts as popularity, so both get the same fuzzy and initials matching.
    ``stamp`` is stored as the arrays' ``fingerprint`` (zeros when None).
    """
    start = time.perf_counter()
    n = len(titles_raw)
    popularity = np.asarray(popularity)
    titles = [normalize_title(t) for t in titles_raw]
    markers = np.fromiter((markers_crc(t) for t in titles_raw), dtype=np.int64, count=n)
    artists = [fold(a) for a in artists_raw]
    hashes = np.fromiter((title_crc(t.replace(" ", "")) for t in titles), dtype=np.int64, count=n)
    hash_order = np.argsort(hashes, kind="stable")
    texts = [t.replace(" ", "") + _SEP_TA + a.replace(" ", "") for t, a in zip(titles, artists, strict=True)]
    by_pop = np.lexsort((np.arange(n), -popularity.astype(np.int64))).astype(np.int64)
    # Index the texts in popularity order: each posting list then starts with its most popular entries,
    # and a capped read of a long list keeps the ones a user most likely means.
    vocab, offsets, ranks, per_rank = _bigram_postings([texts[i] for i in by_pop.tolist()], n)
    rows = by_pop[ranks].astype(np.int32)
    per_row = np.empty_like(per_rank)
    per_row[by_pop] = per_rank
    initials = [hangul_initials(titles[i]) for i in by_pop.tolist()]
    starts = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum([len(s) + 1 for s in initials], out=starts[1:])
    title_blob, title_offsets = pack_strings(titles)
    artist_blob, artist_offsets = pack_strings(artists)
    arrays = {
        "fingerprint": stamp if stamp is not None else np.zeros(4, dtype=np.int64),
        "title_blob": title_blob,
        "title_offsets": title_offsets,
        "artist_blob": artist_blob,
        "artist_offsets": artist_offsets,
        "title_hash": hashes[hash_order],
        "title_hash_rows": hash_order.astype(np.int64),
        "vocab": vocab,
        "post_offsets": offsets,
        "post_rows": rows,
        "row_bigrams": per_row,
        "by_popularity": by_pop,
        "title_markers": markers,
        "initials_blob": np.frombuffer(("\n".join(initials) + "\n").encode("utf-8"), dtype=np.uint8),
        "initials_starts": starts,
    }
    logger.info("built search index over %d entries in %.2f s", n, time.perf_counter() - start)
    return arrays


def write_search_index(version_dir: Path, catalog: Catalog | None = None) -> Path:
    """Precompute ``extras/search_index.npz`` for a version (training calls this; the app only reads it)."""
    version_dir = Path(version_dir)
    catalog = catalog or Catalog.load(version_dir / CATALOG)
    arrays = build_search_arrays(catalog)
    out = version_dir / EXTRAS_DIR / SEARCH_INDEX
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    return out
