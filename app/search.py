"""Fast fuzzy search over titles, artists and "title artist", Korean-aware.

Scoring every title with rapidfuzz costs about 1 s at 707,989 songs, so a query is answered in two steps:

1. *Candidates.* A character-bigram inverted index over each song's normalised title and artists
   (spaces removed, so ``벚꽃엔딩`` finds ``벚꽃 엔딩``) scores songs by the IDF-weighted bigrams they share
   with the query, divided by the square root of their bigram count (so short, exact-ish titles win);
   the best few hundred are kept. Each posting list is stored most popular song first and read at most
   :data:`POSTING_CAP` entries deep, rarest bigram first within a budget of :data:`POSTING_BUDGET`
   entries, so a query costs the same whatever the catalog size: a very common bigram (in 100k titles)
   says little (low IDF) and contributes only its most popular songs. Scores are accumulated over the
   rows actually read, never over the whole catalog. An exact normalised title is looked up by hash, so
   it is never lost among thousands of titles sharing the same bigrams; only the ``limit`` most popular
   exact titles are kept, since they all score 100 and the rest could not be shown.
2. *Scores.* Only those candidates are scored with rapidfuzz ``WRatio`` against the title, the
   artists and "title artist". An exact title comes first; ties go to the more popular song.

A query made only of Hangul initial consonants (``ㅂㅍㅈ``, ``ㅂ ㅍ ㅈ``) matches titles by their initials:
exact initials first, then titles whose initials start with the query, then those that contain it.

Every string goes through :mod:`app.textnorm`, the normaliser training uses to merge duplicates. The
index is numpy arrays; :func:`write_search_index` precomputes it into ``extras/search_index.npz`` of a
version (normalising 700k titles in Python takes about 3 s, loading the file a fraction of that), and
:meth:`TitleSearch.for_catalog` uses that file when it matches the catalog and builds in memory otherwise.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

from app.artifacts import CATALOG, EXTRAS_DIR
from app.catalog import SEP, Catalog, StringColumn, pack_strings
from app.textnorm import fold, hangul_initials, is_initials_query, normalize_title

logger = logging.getLogger(__name__)

SEARCH_INDEX = "search_index.npz"
FORMAT_VERSION = 2  # 2: posting lists ordered most popular first
CANDIDATES = 300  # songs rescored by rapidfuzz per query: bounded work whatever the catalog size
POSTING_CAP = 4096  # entries read from one bigram's posting list (its most popular songs)
POSTING_BUDGET = 40_000  # entries read per query over all its bigrams, rarest bigram first
INITIALS_SCAN_CAP = 2000  # initials matches collected, most popular first
_CP_BITS = 21  # Unicode code points fit in 21 bits
_SEP_TA = "\x01"  # between title and artists: no bigram spans the two
_SEP_DOC = "\x00"


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _fingerprint(catalog: Catalog) -> np.ndarray:
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
    keys = (first[valid] << _CP_BITS) | second[valid]
    rows = doc[:-1][valid]
    row_bits = max(1, int(n - 1).bit_length())
    if 2 * _CP_BITS + row_bits <= 63:
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


class TitleSearch:
    """The search index of one catalog; see the module docstring.

    Parameters
    ----------
    arrays : the index arrays as built by :meth:`build_arrays` (or loaded from ``search_index.npz``).
    popularity : playlists per catalog row, for ties.
    """

    def __init__(self, arrays: dict[str, np.ndarray], popularity: np.ndarray) -> None:
        self.titles = StringColumn(arrays["title_blob"], arrays["title_offsets"])
        self.artists = StringColumn(arrays["artist_blob"], arrays["artist_offsets"])
        self.title_hash = arrays["title_hash"]
        self.title_hash_rows = arrays["title_hash_rows"]
        self.vocab = arrays["vocab"]
        self.post_offsets = arrays["post_offsets"]
        self.post_rows = arrays["post_rows"]
        self.row_norm = np.sqrt(np.maximum(arrays["row_bigrams"], 1.0)).astype(np.float32)
        self.by_popularity = arrays["by_popularity"]
        # Popularity rank of each row (0 = most popular): orders exact-title hits without a sort key lookup.
        self.pop_rank = np.empty(len(self.by_popularity), dtype=np.int64)
        self.pop_rank[self.by_popularity] = np.arange(len(self.by_popularity))
        # One string of every title's initials, most popular song first, so a capped scan sees hits first.
        self._initials = arrays["initials_blob"].tobytes().decode("utf-8")
        self._initials_starts = arrays["initials_starts"]
        self.popularity = np.asarray(popularity)
        n = len(self.titles)
        self._idf_base = math.log(n + 1.0)
        self._pop_bonus = (np.log1p(np.maximum(self.popularity, 0)) * 1e-4).astype(np.float32)

    # -- building -----------------------------------------------------------------------------------

    @staticmethod
    def build_arrays(catalog: Catalog) -> dict[str, np.ndarray]:
        """Normalise every title and artist and build the index arrays (seconds at 700k songs)."""
        artists = [a.replace(SEP, " ") for a in catalog.columns["artists"].to_list()]
        return TitleSearch.build_text_arrays(
            catalog.columns["title"].to_list(), artists, catalog.popularity, _fingerprint(catalog)
        )

    @staticmethod
    def build_text_arrays(
        titles_raw: list[str], artists_raw: list[str], popularity: np.ndarray, fingerprint: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The index arrays over any named things: ``titles_raw`` with optional ``artists_raw`` ("" for none).

        Songs use it through :meth:`build_arrays`; the playlist tags of :mod:`app.tags` use it with no artists
        and their playlist counts as popularity, so both get the same fuzzy and initials matching.
        """
        start = time.perf_counter()
        n = len(titles_raw)
        popularity = np.asarray(popularity)
        titles = [normalize_title(t) for t in titles_raw]
        artists = [fold(a) for a in artists_raw]
        hashes = np.fromiter((_crc(t.replace(" ", "")) for t in titles), dtype=np.int64, count=n)
        hash_order = np.argsort(hashes, kind="stable")
        texts = [t.replace(" ", "") + _SEP_TA + a.replace(" ", "") for t, a in zip(titles, artists, strict=True)]
        by_pop = np.lexsort((np.arange(n), -popularity.astype(np.int64))).astype(np.int64)
        # Index the texts in popularity order: each posting list then starts with its most popular songs,
        # and a capped read of a long list keeps the songs a user most likely means.
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
            "fingerprint": fingerprint if fingerprint is not None else np.zeros(4, dtype=np.int64),
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
            "initials_blob": np.frombuffer(("\n".join(initials) + "\n").encode("utf-8"), dtype=np.uint8),
            "initials_starts": starts,
        }
        logger.info("built search index over %d entries in %.2f s", n, time.perf_counter() - start)
        return arrays

    @classmethod
    def build(cls, catalog: Catalog) -> TitleSearch:
        return cls(cls.build_arrays(catalog), catalog.popularity)

    @classmethod
    def for_catalog(cls, catalog: Catalog, path: Path | None = None) -> TitleSearch:
        """Load the precomputed index at ``path`` when it matches ``catalog``; build it otherwise."""
        if path is not None and Path(path).is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
                if np.array_equal(arrays.get("fingerprint"), _fingerprint(catalog)):
                    return cls(arrays, catalog.popularity)
                logger.warning("%s: built for another catalog; rebuilding the search index in memory", path)
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("%s: unreadable (%s); rebuilding the search index in memory", path, exc)
        return cls.build(catalog)

    # -- querying -----------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 10) -> list[tuple[int, float]]:
        """Best matches as (catalog row, score in [0, 100]); an empty query gives no results."""
        if limit < 1 or not query or not query.strip():
            return []
        if is_initials_query(query):
            return self._search_initials("".join(query.split()), limit)
        return self._search_text(query, limit)

    def _exact_rows(self, title: str, limit: int) -> np.ndarray:
        """The ``limit`` most popular rows whose normalised title is exactly ``title`` (spacing ignored)."""
        # Spacing does not make a title different: "벚꽃엔딩" is exactly "벚꽃 엔딩".
        title = title.replace(" ", "")
        h = _crc(title)
        lo, hi = np.searchsorted(self.title_hash, [h, h + 1])
        rows = self.title_hash_rows[lo:hi]
        # A common title ("love") can have thousands of exact matches; all score 100 and ties go to the
        # more popular, so check them most popular first and stop at `limit`.
        rows = rows[np.argsort(self.pop_rank[rows], kind="stable")]
        out: list[int] = []
        for r in rows.tolist():
            if self.titles[r].replace(" ", "") == title:  # a CRC collision is possible, if rare
                out.append(r)
                if len(out) >= limit:
                    break
        return np.array(out, dtype=np.int64)

    def _candidates(self, compact: str) -> np.ndarray:
        cp = [ord(c) for c in compact]
        keys = np.unique(np.array([(a << _CP_BITS) | b for a, b in zip(cp, cp[1:], strict=False)], dtype=np.int64))
        if not len(keys) or not len(self.vocab):
            return np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self.vocab, keys)
        pos = pos[(pos < len(self.vocab))]
        pos = pos[np.isin(self.vocab[pos], keys)]
        if not len(pos):
            return np.zeros(0, dtype=np.int64)
        lo, hi = self.post_offsets[pos], self.post_offsets[pos + 1]
        df = hi - lo
        idf = self._idf_base - np.log(df.astype(np.float64))
        # Rarest (most telling) bigrams first; long lists are read only to their most popular entries.
        order = np.argsort(df, kind="stable")
        take = np.minimum(df[order], POSTING_CAP)
        within = np.cumsum(take) <= POSTING_BUDGET
        within[0] = True  # always read something of the rarest bigram
        order, take = order[within], take[within]
        starts = lo[order].tolist()
        rows = np.concatenate([self.post_rows[a : a + t] for a, t in zip(starts, take.tolist(), strict=True)])
        weights = np.repeat(idf[order], take)
        # Accumulate over the rows read only (tens of thousands at most), not over the whole catalog.
        hit, inverse = np.unique(rows, return_inverse=True)
        acc = np.bincount(inverse, weights=weights, minlength=len(hit)).astype(np.float32)
        score = acc / self.row_norm[hit] + self._pop_bonus[hit]
        if len(hit) > CANDIDATES:
            top = np.argpartition(-score, CANDIDATES)[:CANDIDATES]
            hit = hit[top]
        return hit.astype(np.int64)

    def _search_text(self, query: str, limit: int) -> list[tuple[int, float]]:
        title_q = normalize_title(query)
        full_q = fold(query)
        if not full_q:
            return []
        exact = self._exact_rows(title_q, limit)
        compact = full_q.replace(" ", "")
        cand = self._candidates(compact)
        if len(compact) == 1:
            # One character has no bigram: fall back to titles that start with it, most popular first.
            cand = np.r_[cand, self._prefix_scan(compact)]
        rows = np.unique(np.r_[exact, cand])
        if not len(rows):
            return []
        titles = [self.titles[r] for r in rows.tolist()]
        artists = [self.artists[r] for r in rows.tolist()]
        # One C call per comparison kind instead of three Python calls per candidate.
        by_title = process.cdist([title_q], titles, scorer=fuzz.WRatio, dtype=np.float64, workers=1)[0]
        combined = [f"{t} {a}" for t, a in zip(titles, artists, strict=True)]
        by_both = process.cdist([full_q], combined, scorer=fuzz.WRatio, dtype=np.float64, workers=1)[0]
        by_artist = process.cdist([full_q], artists, scorer=fuzz.WRatio, dtype=np.float64, workers=1)[0]
        has_artist = np.fromiter((bool(a) for a in artists), dtype=bool, count=len(artists))
        best = np.maximum(by_title, np.where(has_artist, np.maximum(by_both, 0.95 * by_artist), 0.0))
        is_exact = np.isin(rows, exact)
        score = np.where(is_exact, 100.0, np.minimum(best, 99.9))
        # Exact first, then score, then the more popular song, then the lower row.
        order = np.lexsort((rows, -self.popularity[rows].astype(np.int64), -score, ~is_exact))[:limit]
        return [(int(rows[i]), float(score[i])) for i in order.tolist() if score[i] > 0]

    def _prefix_scan(self, compact: str) -> np.ndarray:
        # Bounded: the first matches in popularity order are the most popular songs.
        out: list[int] = []
        for row in self.by_popularity[: 50_000].tolist():
            if self.titles[row].startswith(compact):
                out.append(row)
                if len(out) >= CANDIDATES:
                    break
        return np.array(out, dtype=np.int64)

    def _search_initials(self, initials: str, limit: int) -> list[tuple[int, float]]:
        text, starts = self._initials, self._initials_starts
        found: list[tuple[int, float]] = []
        seen: set[int] = set()
        pos = text.find(initials)
        while pos != -1 and len(found) < INITIALS_SCAN_CAP:
            k = int(np.searchsorted(starts, pos, side="right")) - 1
            row = int(self.by_popularity[k])
            if row not in seen:
                seen.add(row)
                start, end = int(starts[k]), int(starts[k + 1]) - 1
                if pos == start and end - start == len(initials):
                    score = 100.0
                elif pos == start:
                    score = 90.0 * len(initials) / (end - start) + 5.0
                else:
                    score = 80.0 * len(initials) / (end - start)
                found.append((row, round(score, 3)))
            # Skip to the next song: one hit per title is enough.
            pos = text.find(initials, int(starts[k + 1]))
        # Python's sort is stable and the scan went by popularity, so equal scores stay most popular first.
        found.sort(key=lambda t: -t[1])
        return found[:limit]


def write_search_index(version_dir: Path, catalog: Catalog | None = None) -> Path:
    """Precompute ``extras/search_index.npz`` for a version (training calls this; the app only reads it)."""
    version_dir = Path(version_dir)
    catalog = catalog or Catalog.load(version_dir / CATALOG)
    arrays = TitleSearch.build_arrays(catalog)
    out = version_dir / EXTRAS_DIR / SEARCH_INDEX
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out
