"""Which song ids are one recording: the duplicate-merging rule, with a count of every decision.

A duplicate is the same recording under another id (a single and its album, an OST part and the full
OST, a remaster), nothing else (``shared/DESIGN.md``). The rule, in order:

1. **Key.** Only songs with the same artist set and the same :func:`mugle_core.textnorm.title_key` are
   candidates: the title without feature credits and release decorations (``feat. X``, ``From "OST"``,
   ``Remastered``, ``Prod. X``), but *with* its version markers (Live, Remix, Acoustic, Piano, Inst./MR,
   Demo, Edit, "English Ver.", "라이브", "영어 버전", ...). ``X`` and ``X (Live)`` never merge; they are
   counted as kept apart by a *version marker*.
2. **Audio decides when there is audio.** Within a key, songs with a readable mel are grouped by
   :func:`training.same_recording.similarity`: a song joins a group when its mel is one recording with a
   member's (detail correlation at the best lag within 2 s >= :data:`training.same_recording.SAME_RECORDING`).
   Two songs whose mels differ never merge, whatever their titles (*audio differs*).
3. **Without a mel, the title must be unambiguous.** A song with no readable mel joins its key's
   recording only when that key holds at most one recording (one audio group, or no mel at all) *and*
   the title is not generic. Generic titles ("Intro", "Outro", "Interlude", "Skit", "Prologue",
   "인트로", a bare number, "Track 3", ...) are reused for different pieces on every album, so without
   audio they stay apart (*generic title, no mel*); so does a mel-less song whose key already holds two
   different recordings (*no mel, several recordings*). The remaining risk is two different pieces with
   one ordinary title, one artist and no mels (a composer's settings of one hymn without audio): nothing
   in the metadata tells them from a re-release, and they merge.

Only keys shared by two or more songs are looked at, so at real size the audio test runs on a few
percent of the catalog (see BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mugle_core.textnorm import normalize_artists, title_key
from training.melon import Song
from training.same_recording import SAME_RECORDING, Fingerprint, matches
from training.songstrings import SongStrings

logger = logging.getLogger(__name__)

MERGED_AUDIO = "merged: same recording by audio"
MERGED_TITLE = "merged: same title and artists, a mel missing"
APART_MARKER = "kept apart: version marker"
APART_AUDIO = "kept apart: audio differs"
APART_GENERIC = "kept apart: generic title, no mel"
APART_AMBIGUOUS = "kept apart: no mel, several recordings"
REASONS = (MERGED_AUDIO, MERGED_TITLE, APART_MARKER, APART_AUDIO, APART_GENERIC, APART_AMBIGUOUS)
EXAMPLES_PER_REASON = 3
_BATCH = 64  # keys per task of the thread pool

# Titles that name a place on an album rather than a piece (already folded: lower case, no punctuation).
_GENERIC = re.compile(
    r"^(?:(?:intro|outro|interlude|skit|prologue|epilogue|opening|ending|overture|reprise|bonus|"
    r"bonus track|hidden track|untitled|track|part|chapter|no|op|inst|instrumental|"
    r"인트로|아웃트로|인터루드|인터루드|프롤로그|에필로그|오프닝|엔딩|서곡|간주곡|간주|무제|트랙)(?:\s*\d+)?|\d+)$"
)


def is_generic_title(base: str) -> bool:
    """True for a title (in :func:`mugle_core.textnorm.title_key` base form) that many different pieces share."""
    return bool(_GENERIC.match(base))


@dataclass
class DuplicateReport:
    """Counts of merges and of refusals by reason, a few examples each, and the audio work done."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    mels_read: int = 0
    comparisons: int = 0

    def add(self, reason: str, n: int = 1, example: str | Callable[[], str] | None = None) -> None:
        """Count ``n`` decisions for ``reason``; ``example`` (or a function making it, called only while the
        reason has room for one: most decisions' examples are never shown) is kept among the first few."""
        self.counts[reason] += n
        if example is not None and len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example if isinstance(example, str) else example())

    def merge(self, other: DuplicateReport) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
        for reason, examples in other.examples.items():
            room = EXAMPLES_PER_REASON - len(self.examples[reason])
            self.examples[reason].extend(examples[:max(room, 0)])
        self.mels_read += other.mels_read
        self.comparisons += other.comparisons

    def summary(self) -> list[tuple[str, int]]:
        """``(label, count)`` rows for the preprocessing summary, every reason shown (zeros too)."""
        rows = [(f"    {reason}", self.counts[reason]) for reason in REASONS]
        rows.append(("    mels read for duplicate candidates", self.mels_read))
        rows.append(("    same-recording tests", self.comparisons))
        return rows

    def as_record(self) -> dict[str, object]:
        return {
            "counts": {r: self.counts[r] for r in REASONS},
            "examples": {r: list(self.examples.get(r, [])) for r in REASONS if self.examples.get(r)},
            "mels_read": self.mels_read,
            "comparisons": self.comparisons,
            "threshold": SAME_RECORDING,
        }


def _codes(values: Iterable[Hashable]) -> np.ndarray:
    """One integer per value, in order, equal for equal values."""
    seen: dict[Hashable, int] = {}
    return np.fromiter((seen.setdefault(v, len(seen)) for v in values), dtype=np.int64)


def _show(song: Song) -> str:
    return f"{song.id} {song.title!r}"


def _show_some(songs: list[Song]) -> str:
    return " / ".join(_show(s) for s in songs[:3])


class _Mel:
    """One candidate's mel window, and its fingerprint once a comparison needs it."""

    __slots__ = ("song", "window", "_fp")

    def __init__(self, song: Song, window: np.ndarray) -> None:
        self.song, self.window = song, window
        self._fp: Fingerprint | None = None

    @property
    def fp(self) -> Fingerprint:
        if self._fp is None:
            self._fp = Fingerprint(self.window)
        return self._fp

    def identical(self, other: _Mel) -> bool:
        """The same window bit for bit, and not flat: one recording, without a fingerprint of either.

        Re-releases often carry the very same audio file, so their mels are equal; comparing the bytes
        costs a microsecond where fingerprints and a comparison cost a hundred or more. A window in which
        no band changes (silence) equals every other such window, so it still goes through the test
        (which keeps it apart).
        """
        w, o = self.window, other.window
        return (w.shape == o.shape and w.dtype == o.dtype and w.tobytes() == o.tobytes()
                and bool((w != w[:, :1]).any()))


class _Clusters:
    """Songs of one key grouped into recordings by audio."""

    def __init__(self, report: DuplicateReport) -> None:
        self.groups: list[list[_Mel]] = []
        self.report = report

    def add(self, mel: _Mel) -> None:
        best, where = -np.inf, None
        for g in self.groups:
            for other in g:
                score = 1.0 if other.identical(mel) else matches(other.fp, mel.fp)[1]
                self.report.comparisons += 1
                if score > best:
                    best, where = score, (g, other.song)
                if score >= SAME_RECORDING:
                    break
            if best >= SAME_RECORDING:
                break
        if where is not None and best >= SAME_RECORDING:
            where[0].append(mel)
            self.report.add(MERGED_AUDIO, 1, f"{_show(where[1])} = {_show(mel.song)} (similarity {best:.2f})")
            return
        if where is not None:
            self.report.add(APART_AUDIO, 1, f"{_show(where[1])} / {_show(mel.song)} (similarity {best:.2f})")
        self.groups.append([mel])


def find_duplicates(
    songs: Sequence[Song],
    popularity: np.ndarray,
    load_mel: Callable[[int], np.ndarray | None] | None = None,
    *,
    has_mel: Callable[[int], bool] | None = None,
    progress: bool = False,
    workers: int | None = None,
    strings: SongStrings | None = None,
) -> tuple[list[list[int]], DuplicateReport]:
    """Group song ids that are one recording.

    Parameters
    ----------
    songs : the catalog after its filters.
    popularity : playlist count per song id (indexable by id); a key's songs are visited most popular
        first, so the canonical song starts each group.
    load_mel : song id -> mel (bands x frames, or only its
        :func:`training.same_recording.analysis_window`) or None when it has none; None: no audio at all.
    has_mel : song id -> whether a mel file exists (a cheap test: no read). When given, a key where at
        most one song has a mel is decided without reading it: one mel cannot disagree with anything, and
        rule 3 decides the others the same whether that one mel is readable or not.
    progress : a progress bar over the keys that need a decision.
    workers : threads reading and comparing mels (default: the CPU count, at most 8).
    strings : the songs' title and artist-list codes when the caller has them already (preprocessing
        computes them for its filters); made here otherwise.

    Returns
    -------
    groups : the ids of each recording held by two or more songs (a song in no group has no duplicate).
    report : merges and refusals by reason, with examples.
    """
    report = DuplicateReport()
    # Songs are matched on integer codes: each distinct title's key and each distinct artist list's set is
    # computed once, and numpy finds the (title base, artist set) keys that two or more songs share.
    strings = SongStrings.of(songs) if strings is None else strings
    if len(strings.title) != len(songs):
        raise ValueError(f"strings: codes for {len(strings.title)} songs, but {len(songs)} songs given")
    title_keys = [title_key(title) for title in strings.titles]  # by title code
    base_of = _codes(base for base, _markers in title_keys)  # title code -> base code
    set_of = _codes(normalize_artists(names) for names in strings.artist_lists)  # list code -> set code
    t = strings.title
    key = base_of[t] * (int(set_of.max(initial=0)) + 1) + set_of[strings.artists]
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    # Only songs whose key another song shares are gathered: a few percent of the catalog. In catalog
    # order, so keys (and their decisions and examples) come in the order of their first song.
    share = np.flatnonzero(counts[inverse] > 1)
    shared: dict[int, list[int]] = {}
    for i, k in zip(share.tolist(), inverse[share].tolist(), strict=True):
        shared.setdefault(k, []).append(i)

    decide: list[tuple[str, list[Song]]] = []
    for members in shared.values():
        by_markers: dict[tuple[str, ...], list[Song]] = defaultdict(list)
        for i in members:
            by_markers[title_keys[t[i]][1]].append(songs[i])
        if len(by_markers) > 1:
            firsts = [g[0] for g in by_markers.values()]
            report.add(APART_MARKER, len(by_markers) - 1, functools.partial(_show_some, firsts))
        base = title_keys[t[members[0]]][0]
        decide.extend((base, same_key) for same_key in by_markers.values() if len(same_key) > 1)

    def decide_batch(batch: list[tuple[str, list[Song]]]) -> tuple[list[list[int]], DuplicateReport]:
        local = DuplicateReport()
        found = [g for base, same_key in batch
                 for g in _decide_key(base, same_key, popularity, load_mel, has_mel, local) if len(g) > 1]
        return found, local

    # Reading and comparing mels is numpy and file work that releases the GIL: a few threads overlap it.
    # Keys go in batches rather than a task each: fewer futures and thread wake-ups for ~24,000 keys.
    # Results come back in order, so groups and examples depend neither on the thread count nor on the
    # batch size.
    workers = max(1, min(workers or (os.cpu_count() or 1), 8)) if load_mel is not None else 1
    batches = [decide[i:i + _BATCH] for i in range(0, len(decide), _BATCH)]
    groups: list[list[int]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(decide), desc="duplicates", disable=not progress, leave=False) as bar:
        for batch, (found, local) in zip(batches, pool.map(decide_batch, batches), strict=True):
            groups.extend(found)
            report.merge(local)
            bar.update(len(batch))
    logger.info("duplicates: %d keys shared by several songs, %d mels read, %d same-recording tests",
                len(decide), report.mels_read, report.comparisons)
    return groups, report


def _decide_key(
    base: str, songs: list[Song], popularity: np.ndarray,
    load_mel: Callable[[int], np.ndarray | None] | None, has_mel: Callable[[int], bool] | None,
    report: DuplicateReport,
) -> list[list[int]]:
    """Split the songs of one key (same title key and artists) into recordings."""
    songs = sorted(songs, key=lambda s: (-int(popularity[s.id]) if s.id < len(popularity) else 0, s.id))
    clusters = _Clusters(report)
    no_mel: list[Song] = []
    lone: list[Song] = []  # the one song with a mel in a key that has no other: not read (see find_duplicates)
    if load_mel is not None and has_mel is not None:
        with_mel = [s for s in songs if has_mel(s.id)]
        if len(with_mel) <= 1:
            lone, load_mel = with_mel, None
    for song in songs:
        if lone and song.id == lone[0].id:
            continue
        mel = load_mel(song.id) if load_mel is not None else None
        if mel is None:
            no_mel.append(song)
            continue
        report.mels_read += 1
        clusters.add(_Mel(song, mel))
    out = [[m.song.id for m in g] for g in clusters.groups] + [[s.id] for s in lone]
    firsts = [g[0].song for g in clusters.groups] + lone
    if not no_mel:
        return out
    if is_generic_title(base):
        for s in no_mel:
            report.add(APART_GENERIC, 1, _show(s))
        return out + [[s.id] for s in no_mel]
    if len(out) > 1:
        for s in no_mel:
            report.add(APART_AMBIGUOUS, 1, f"{_show(s)} ({len(out)} recordings by audio)")
        return out + [[s.id] for s in no_mel]
    if out:
        target, first = out[0], firsts[0]
    else:
        target, first, no_mel = [no_mel[0].id], no_mel[0], no_mel[1:]
        out = [target]
    for s in no_mel:
        target.append(s.id)
        report.add(MERGED_TITLE, 1, f"{_show(first)} = {_show(s)}")
    return out


