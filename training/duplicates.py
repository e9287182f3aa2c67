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

import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mugle_core.textnorm import normalize_artists, title_key
from training.melon import Song
from training.same_recording import SAME_RECORDING, Fingerprint, similarity

logger = logging.getLogger(__name__)

MERGED_AUDIO = "merged: same recording by audio"
MERGED_TITLE = "merged: same title and artists, a mel missing"
APART_MARKER = "kept apart: version marker"
APART_AUDIO = "kept apart: audio differs"
APART_GENERIC = "kept apart: generic title, no mel"
APART_AMBIGUOUS = "kept apart: no mel, several recordings"
REASONS = (MERGED_AUDIO, MERGED_TITLE, APART_MARKER, APART_AUDIO, APART_GENERIC, APART_AMBIGUOUS)
EXAMPLES_PER_REASON = 3

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

    def add(self, reason: str, n: int = 1, example: str | None = None) -> None:
        self.counts[reason] += n
        if example is not None and len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example)

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


def _show(song: Song) -> str:
    return f"{song.id} {song.title!r}"


class _Clusters:
    """Songs of one key grouped into recordings by audio."""

    def __init__(self, report: DuplicateReport) -> None:
        self.groups: list[list[tuple[Song, Fingerprint]]] = []
        self.report = report

    def add(self, song: Song, fp: Fingerprint) -> None:
        best, where = -np.inf, None
        for g in self.groups:
            for other, ofp in g:
                score = similarity(ofp, fp)[0]
                self.report.comparisons += 1
                if score > best:
                    best, where = score, (g, other)
                if score >= SAME_RECORDING:
                    break
            if best >= SAME_RECORDING:
                break
        if where is not None and best >= SAME_RECORDING:
            where[0].append((song, fp))
            self.report.add(MERGED_AUDIO, 1, f"{_show(where[1])} = {_show(song)} (similarity {best:.2f})")
            return
        if where is not None:
            self.report.add(APART_AUDIO, 1, f"{_show(where[1])} / {_show(song)} (similarity {best:.2f})")
        self.groups.append([(song, fp)])


def find_duplicates(
    songs: Sequence[Song],
    popularity: np.ndarray,
    load_mel: Callable[[int], np.ndarray | None] | None = None,
    *,
    progress: bool = False,
    workers: int | None = None,
) -> tuple[list[list[int]], DuplicateReport]:
    """Group song ids that are one recording.

    Parameters
    ----------
    songs : the catalog after its filters.
    popularity : playlist count per song id (indexable by id); a key's songs are visited most popular
        first, so the canonical song starts each group.
    load_mel : song id -> mel (bands x frames) or None when it has none; None: no audio at all.
    progress : a progress bar over the keys that need a decision.
    workers : threads reading and comparing mels (default: the CPU count, at most 8).

    Returns
    -------
    groups : lists of ids, every song in exactly one; a list of one is a song with no duplicate.
    report : merges and refusals by reason, with examples.
    """
    report = DuplicateReport()
    by_base: dict[tuple, list[tuple[tuple[str, ...], Song]]] = defaultdict(list)
    for song in songs:
        base, markers = title_key(song.title)
        by_base[(base, normalize_artists(song.artists))].append((markers, song))

    groups: list[list[int]] = []
    decide: list[tuple[str, list[Song]]] = []
    for (base, _artists), members in by_base.items():
        if len(members) == 1:
            groups.append([members[0][1].id])
            continue
        by_markers: dict[tuple[str, ...], list[Song]] = defaultdict(list)
        for markers, song in members:
            by_markers[markers].append(song)
        if len(by_markers) > 1:
            firsts = [g[0] for g in by_markers.values()]
            report.add(APART_MARKER, len(by_markers) - 1, " / ".join(_show(s) for s in firsts[:3]))
        for same_key in by_markers.values():
            if len(same_key) == 1:
                groups.append([same_key[0].id])
            else:
                decide.append((base, same_key))

    def one_key(item: tuple[str, list[Song]]) -> tuple[list[list[int]], DuplicateReport]:
        local = DuplicateReport()
        return _decide_key(item[0], item[1], popularity, load_mel, local), local

    # Reading and comparing mels is numpy and file work that releases the GIL: a few threads overlap it.
    # Results come back in order, so groups and examples do not depend on the thread count.
    workers = max(1, min(workers or (os.cpu_count() or 1), 8)) if load_mel is not None else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for key_groups, local in tqdm(pool.map(one_key, decide), total=len(decide), desc="duplicates",
                                      disable=not progress, leave=False):
            groups.extend(key_groups)
            report.merge(local)
    logger.info("duplicates: %d keys shared by several songs, %d mels read, %d same-recording tests",
                len(decide), report.mels_read, report.comparisons)
    return groups, report


def _decide_key(
    base: str, songs: list[Song], popularity: np.ndarray,
    load_mel: Callable[[int], np.ndarray | None] | None, report: DuplicateReport,
) -> list[list[int]]:
    """Split the songs of one key (same title key and artists) into recordings."""
    songs = sorted(songs, key=lambda s: (-int(popularity[s.id]) if s.id < len(popularity) else 0, s.id))
    clusters = _Clusters(report)
    no_mel: list[Song] = []
    for song in songs:
        mel = load_mel(song.id) if load_mel is not None else None
        if mel is None:
            no_mel.append(song)
            continue
        report.mels_read += 1
        clusters.add(song, Fingerprint(mel))
    out = [[s.id for s, _ in g] for g in clusters.groups]
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
        target, first = out[0], clusters.groups[0][0][0]
    else:
        target, first, no_mel = [no_mel[0].id], no_mel[0], no_mel[1:]
        out = [target]
    for s in no_mel:
        target.append(s.id)
        report.add(MERGED_TITLE, 1, f"{_show(first)} = {_show(s)}")
    return out


