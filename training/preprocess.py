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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mugle_core.melfile import load_mel, mel_path
from mugle_core.textnorm import fold, is_instrumental
from training.duplicates import DuplicateReport, find_duplicates
from training.melon import MelonDataset, Song, genre_names

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
    songs: dict[int, dict[str, Any]]
    aliases: dict[int, int]
    popularity: dict[int, int]
    train_playlists: list[list[int]]
    train_playlist_ids: list[int]
    w2v_songs: set[int]
    summary: list[tuple[str, int]] = field(default_factory=list)
    duplicates: DuplicateReport = field(default_factory=DuplicateReport)

    def summary_text(self) -> str:
        return "\n".join(f"{label:<48} {n:>10,}" for label, n in self.summary)


def _song_dict(song: Song, genres: list[str]) -> dict[str, Any]:
    return {
        "song_id": song.id,
        "title": song.title,
        "artists": list(song.artists),
        "album": song.album,
        "genres": genres,
        "issue_date": song.issue_date,
    }


def mel_reader(root: Path) -> Callable[[int], np.ndarray | None]:
    """Song id -> its mel from ``root/arena_mel`` (padded when short), or None when missing or unreadable."""

    def read(song_id: int) -> np.ndarray | None:
        return load_mel(mel_path(root, song_id))[0]

    return read


def prepare(
    dataset: MelonDataset, options: PrepOptions | None = None, holdout_ids: frozenset[int] | set[int] = frozenset(),
    *, progress: bool = False,
) -> Prepared:
    """Filter, merge duplicates and build the training playlists (held-out playlists excluded)."""
    options = options or PrepOptions()
    summary: list[tuple[str, int]] = [("songs in song_meta.json", len(dataset.songs))]

    # Catalog filters.
    kept: list[Song] = []
    dropped: Counter[str] = Counter()
    for song in dataset.songs:
        if options.drop_instrumental and is_instrumental(song.title):
            dropped["instrumental/MR/ASMR title"] += 1
        elif options.drop_various_artists and any(fold(a) == VARIOUS_ARTISTS for a in song.artists):
            dropped["Various Artists"] += 1
        elif options.excluded_genres and song.genres and set(song.genres) <= options.excluded_genres:
            dropped["excluded genres only"] += 1
        else:
            kept.append(song)
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
    size = int(max(flat.max(initial=-1), max((s.id for s in kept), default=-1))) + 1
    raw_pop = np.bincount(flat, minlength=size)

    # Duplicate groups: one recording under several ids.
    report = DuplicateReport()
    if options.merge_duplicates:
        reader = mel_reader(dataset.root) if options.audio_check else None
        groups, report = find_duplicates(kept, raw_pop, reader, progress=progress)
    else:
        groups = [[song.id] for song in kept]
    aliases: dict[int, int] = {}
    alias_of = np.full(size, -1, dtype=np.int64)
    for ids in groups:
        canonical = min(ids, key=lambda i: (-raw_pop[i], i))
        for i in ids:
            aliases[i] = canonical
        alias_of[ids] = canonical
    n_canonical = len(groups)
    summary.append(("  merged duplicate ids", len(kept) - n_canonical))
    if options.merge_duplicates:
        summary.extend(report.summary())
    summary.append(("servable songs (canonical)", n_canonical))

    # Training playlists in canonical ids, curator's order, repeats after merging removed.
    mapped = alias_of[flat] if len(flat) else flat
    keep = mapped >= 0
    mapped, owner = mapped[keep], owner[keep]
    _, first = np.unique(owner * size + mapped, return_index=True)
    first.sort()
    mapped, owner = mapped[first], owner[first]
    popularity_arr = np.bincount(mapped, minlength=size)
    bounds = np.searchsorted(owner, np.arange(len(playlists) + 1))
    train_playlists: list[list[int]] = []
    train_ids: list[int] = []
    for i, p in enumerate(playlists):
        if bounds[i + 1] > bounds[i]:
            train_playlists.append(mapped[bounds[i]:bounds[i + 1]].tolist())
            train_ids.append(p.id)
    popularity = {c: int(popularity_arr[c]) for c in set(aliases.values())}

    w2v_songs = {sid for sid, n in popularity.items() if n >= options.min_playlists}
    summary.append((f"songs in >= {options.min_playlists} training playlists (Music2Vec)", len(w2v_songs)))

    by_id = {s.id: s for s in kept}
    names = functools.lru_cache(maxsize=None)(lambda codes: genre_names(list(codes), dataset.genre_table))
    songs = {c: _song_dict(by_id[c], names(tuple(by_id[c].genres))) for c in popularity}
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
