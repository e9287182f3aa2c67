"""From a read dataset to what training uses: duplicate merging, filters, popularity, training playlists.

Two kinds of filter, with different effects (DESIGN.md):

* **Catalog filters** remove a song from the catalog altogether: instrumental/MR/ASMR titles,
  "Various Artists" songs, and (off by default) excluded genres. Defaults follow the original system
  where it removed noise; the genre exclusion, which removed whole styles of music, is opt-in
  (``--exclude-genres original``).
* **The Music2Vec filter** (``min_playlists``, default 3 as in the original) only decides which songs
  Music2Vec trains on. A song below it stays servable through its audio (``tcae`` and ``cel``).

Duplicates are one recording under several ids (:mod:`training.duplicates` holds the rule: same title key
with its version markers, same artists, and mels that agree when there are mels). Each group merges into
one canonical id: the most popular id of the group, the lowest id on a tie. Every original id keeps
resolving through ``aliases``. A group's popularity counts the training playlists that contain any of its
ids, each playlist once. The summary counts merges and refusals by reason (``Prepared.duplicates`` keeps
examples of each).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mugle_core.melfile import MEL_DIR, MEL_FRAMES, read_mel_window
from mugle_core.textnorm import fold, is_instrumental
from training.duplicates import DuplicateReport, find_duplicates
from training.gcpause import gc_paused
from training.melon import MelonDataset, Song, genre_names
from training.same_recording import BANDS, window_frames
from training.songstrings import SongStrings

logger = logging.getLogger(__name__)

# Top-level codes of the genres the original system dropped: classical, new age, J-pop, world music,
# CCM, children, religious, gukak, electronica (domestic and foreign), EDM, music therapy, musicals.
ORIGINAL_EXCLUDED_GENRES: frozenset[str] = frozenset(
    {"GN1600", "GN1800", "GN1900", "GN2000", "GN2100", "GN2200", "GN2300", "GN2400",
     "GN1100", "GN2600", "GN2700", "GN2800", "GN2900"}
)
VARIOUS_ARTISTS = "various artists"


@dataclass
class PrepOptions:
    """Preprocessing switches; defaults are documented in the README."""

    min_playlists: int = 3
    merge_duplicates: bool = True
    audio_check: bool = True  # let the mels decide whether two candidates are one recording
    drop_instrumental: bool = True
    drop_various_artists: bool = True
    excluded_genres: frozenset[str] = frozenset()
    splits: tuple[str, ...] = ("train",)


@dataclass
class Prepared:
    songs: dict[int, Song]  # canonical id -> its record as read (rows for the catalog: catalog_rows)
    aliases: dict[int, int]
    popularity: dict[int, int]
    train_playlists: list[list[int]]
    train_playlist_ids: list[int]
    w2v_songs: set[int]
    summary: list[tuple[str, int]] = field(default_factory=list)
    duplicates: DuplicateReport = field(default_factory=DuplicateReport)

    def summary_text(self) -> str:
        return "\n".join(f"{label:<48} {n:>10,}" for label, n in self.summary)


def catalog_rows(
    songs: dict[int, Song], popularity: dict[int, int], with_audio: set[int], genre_table: dict[str, str],
) -> list[dict[str, Any]]:
    """One row per canonical song, as :meth:`mugle_core.catalog.Catalog.save` takes them.

    Built once, when the catalog is written: preprocessing keeps the read records (``Prepared.songs``)
    rather than a dict per song that this step would copy anyway.
    """
    # Genre names per distinct basket: a few hundred baskets for the whole catalog.
    names = functools.cache(lambda codes: genre_names(list(codes), genre_table))
    return [
        {
            "song_id": sid,
            "title": song.title,
            "artists": list(song.artists),
            "album": song.album,
            "genres": names(tuple(song.genres)),
            "issue_date": song.issue_date,
            "popularity": popularity.get(sid, 0),
            "has_audio": sid in with_audio,
        }
        for sid, song in songs.items()
    ]


def mel_reader(root: Path) -> Callable[[int], np.ndarray | None]:
    """Song id -> the part of its mel the same-recording test looks at, or None when missing or unreadable.

    Reads only that part (:func:`mugle_core.melfile.read_mel_window`), not the whole file.
    """
    bands, window = BANDS, window_frames(MEL_FRAMES)
    folder = os.fspath(Path(root) / MEL_DIR)

    def read(song_id: int) -> np.ndarray | None:
        # The path as a string (what mel_path gives): building a Path costs more than the read's syscalls.
        return read_mel_window(f"{folder}/{song_id // 1000}/{song_id}.npy", bands, window)

    return read


def mel_exists(root: Path) -> Callable[[int], bool]:
    """Song id -> whether its mel file exists under ``root/arena_mel`` (a stat, no read)."""
    folder = os.fspath(Path(root) / MEL_DIR)

    def exists(song_id: int) -> bool:
        return os.path.isfile(f"{folder}/{song_id // 1000}/{song_id}.npy")

    return exists


@gc_paused()  # builds a few million dicts and lists that make no reference cycles: see training.gcpause
def prepare(
    dataset: MelonDataset, options: PrepOptions | None = None, holdout_ids: frozenset[int] | set[int] = frozenset(),
    *, progress: bool = False,
) -> Prepared:
    """Filter, merge duplicates and build the training playlists (held-out playlists excluded)."""
    options = options or PrepOptions()
    summary: list[tuple[str, int]] = [("songs in song_meta.json", len(dataset.songs))]

    # Catalog filters, on each distinct title and artist list once (training.songstrings).
    strings = SongStrings.of(dataset.songs)
    drop = np.zeros(len(dataset.songs), dtype=bool)
    dropped: Counter[str] = Counter()

    def drop_where(reason: str, hit: np.ndarray) -> None:
        hit &= ~drop  # a song counts under the first reason that drops it
        drop[hit] = True
        if hit.any():
            dropped[reason] = int(hit.sum())

    if options.drop_instrumental:
        drop_where("instrumental/MR/ASMR title", strings.per_title(is_instrumental, bool))
    if options.drop_various_artists:
        various = functools.cache(lambda name: fold(name) == VARIOUS_ARTISTS)
        drop_where("Various Artists", strings.per_artist_list(lambda names: any(map(various, names)), bool))
    if options.excluded_genres:
        excluded = options.excluded_genres
        drop_where("excluded genres only", np.fromiter(
            (bool(s.genres) and set(s.genres) <= excluded for s in dataset.songs), bool, len(dataset.songs)))
    kept_at = np.flatnonzero(~drop)
    kept: list[Song] = [dataset.songs[i] for i in kept_at.tolist()]
    for reason, n in sorted(dropped.items()):
        summary.append((f"  dropped: {reason}", n))
    summary.append(("songs after catalog filters", len(kept)))

    playlists = [p for p in dataset.playlists if p.split in options.splits and p.id not in holdout_ids]
    n_held = sum(1 for p in dataset.playlists if p.split in options.splits and p.id in holdout_ids)
    summary.append(("training playlists", len(playlists)))
    if holdout_ids:
        summary.append(("held-out playlists", n_held))

    # All playlist entries in one array (with each entry's playlist index) so that popularity, alias
    # mapping and de-duplication are vectorised: at real size that is millions of entries.
    lengths = np.fromiter((len(p.songs) for p in playlists), dtype=np.int64, count=len(playlists))
    flat = np.fromiter(itertools.chain.from_iterable(p.songs for p in playlists), dtype=np.int64,
                       count=int(lengths.sum()))
    owner = np.repeat(np.arange(len(playlists), dtype=np.int64), lengths)
    kept_ids = np.fromiter((s.id for s in kept), dtype=np.int64, count=len(kept))
    size = int(max(flat.max(initial=-1), kept_ids.max(initial=-1))) + 1
    raw_pop = np.bincount(flat, minlength=size)

    # Duplicate groups: one recording under several ids. Every kept song is its own canonical id unless
    # it is in a group; only the groups (a few percent of the songs) are visited one by one.
    report = DuplicateReport()
    groups: list[list[int]] = []
    if options.merge_duplicates:
        reader = mel_reader(dataset.root) if options.audio_check else None
        groups, report = find_duplicates(kept, raw_pop, reader, has_mel=mel_exists(dataset.root), progress=progress,
                                         strings=strings.take(kept_at))
    alias_of = np.full(size, -1, dtype=np.int64)
    alias_of[kept_ids] = kept_ids
    for ids in groups:
        alias_of[ids] = min(ids, key=lambda i: (-raw_pop[i], i))
    kept_alias = alias_of[kept_ids]
    aliases: dict[int, int] = dict(zip(kept_ids.tolist(), kept_alias.tolist(), strict=True))
    is_canonical = kept_alias == kept_ids
    canonical = kept_ids[is_canonical]
    summary.append(("  merged duplicate ids", len(kept) - len(canonical)))
    if options.merge_duplicates:
        summary.extend(report.summary())
    summary.append(("servable songs (canonical)", len(canonical)))

    # Training playlists in canonical ids, curator's order, repeats after merging removed.
    mapped = alias_of[flat] if len(flat) else flat
    keep = mapped >= 0
    mapped, owner = mapped[keep], owner[keep]
    _, first = np.unique(owner * size + mapped, return_index=True)
    first.sort()
    mapped, owner = mapped[first], owner[first]
    popularity_arr = np.bincount(mapped, minlength=size)
    bounds = np.searchsorted(owner, np.arange(len(playlists) + 1)).tolist()
    entries = mapped.tolist()  # one conversion; slicing a list is cheaper than a tolist per playlist
    train_playlists: list[list[int]] = []
    train_ids: list[int] = []
    for p, start, stop in zip(playlists, bounds[:-1], bounds[1:], strict=True):
        if stop > start:
            train_playlists.append(entries[start:stop])
            train_ids.append(p.id)
    canonical_pop = popularity_arr[canonical]
    popularity = dict(zip(canonical.tolist(), canonical_pop.tolist(), strict=True))

    w2v_songs = set(canonical[canonical_pop >= options.min_playlists].tolist())
    summary.append((f"songs in >= {options.min_playlists} training playlists (Music2Vec)", len(w2v_songs)))

    songs = {s.id: s for s, c in zip(kept, is_canonical.tolist(), strict=True) if c}
    prepared = Prepared(
        songs=songs,
        aliases=aliases,
        popularity=popularity,
        train_playlists=train_playlists,
        train_playlist_ids=train_ids,
        w2v_songs=w2v_songs,
        summary=summary,
        duplicates=report,
    )
    logger.info("preprocessing:\n%s", prepared.summary_text())
    for reason, examples in report.examples.items():
        logger.info("%s, e.g. %s", reason, "; ".join(examples))
    return prepared


def add_prep_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("preprocessing")
    g.add_argument("--min-playlists", type=int, default=3,
                   help="Music2Vec trains on songs in at least this many training playlists (default 3)")
    g.add_argument("--no-merge-duplicates", action="store_true", help="keep duplicate ids as separate songs")
    g.add_argument("--no-audio-check", action="store_true",
                   help="merge duplicates by title key and artists alone, without comparing their mels")
    g.add_argument("--keep-instrumental", action="store_true", help="keep instrumental/MR/ASMR titles")
    g.add_argument("--keep-various-artists", action="store_true", help="keep 'Various Artists' songs")
    g.add_argument("--exclude-genres", default="",
                   help="comma-separated top-level genre codes to drop, or 'original' for the original list")
    g.add_argument("--playlist-splits", default="train",
                   help="playlist files used for training, comma-separated among train,val,test (default train)")


def prep_options_from_args(args: argparse.Namespace) -> PrepOptions:
    if args.exclude_genres == "original":
        excluded = ORIGINAL_EXCLUDED_GENRES
    else:
        excluded = frozenset(c.strip() for c in args.exclude_genres.split(",") if c.strip())
    splits = tuple(s.strip() for s in args.playlist_splits.split(",") if s.strip())
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad or not splits:
        raise SystemExit(f"--playlist-splits: unknown split(s) {bad}; choose among train, val, test")
    if args.min_playlists < 1:
        raise SystemExit("--min-playlists must be at least 1")
    return PrepOptions(
        min_playlists=args.min_playlists,
        merge_duplicates=not args.no_merge_duplicates,
        audio_check=not args.no_audio_check,
        drop_instrumental=not args.keep_instrumental,
        drop_various_artists=not args.keep_various_artists,
        excluded_genres=excluded,
        splits=splits,
    )
