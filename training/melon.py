"""Reader for a dataset folder in the Melon Playlist Dataset layout (``shared/melon/FORMAT.md``).

Validation policy
-----------------
**Errors** (:class:`MelonFormatError`, nothing is returned): a required file is missing or is not valid
JSON; a file's top level has the wrong type; a record is not an object; a record's identity is missing
or mistyped (song ``id``; playlist ``id`` or ``songs``); a song id occurs twice. These make the data
ambiguous, so loading stops with the file, record index and field in the message.

**Warnings** (counted in :class:`ReadReport`, the record is repaired and kept): anything decorative
that is missing, null or mistyped (title, artists, album, genres, issue_date, tags, ...), a genre code
absent from the table (shown as its code), an ``issue_date`` that is partial (``00`` month/day),
short or unparseable, a playlist entry naming an unknown song id or repeating one (dropped from that
playlist), a playlist left empty (dropped), ``songs[i]["id"] != i`` (ids are used as given).
The first few messages of every kind are kept as examples; ``report.summary()`` prints them.

Mel files (``arena_mel/<id // 1000>/<id>.npy``) are read one at a time by
:func:`mugle_core.melfile.load_mel`, which never raises: it returns a status that callers count
(missing, unreadable, bad shape, short/padded).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from training.gcpause import gc_paused

logger = logging.getLogger(__name__)

SONG_META = "song_meta.json"
GENRE_TABLE = "genre_gn_all.json"
SPLIT_FILES: dict[str, str] = {"train": "train.json", "val": "val.json", "test": "test.json"}
_EXAMPLES_PER_KIND = 5


class MelonFormatError(ValueError):
    """The dataset cannot be read unambiguously; the message names file, record and field."""


@dataclass(slots=True)
class Song:
    id: int
    title: str
    artists: list[str]
    artist_ids: list[int]
    album: str
    album_id: int | None
    genres: list[str]  # top-level codes, e.g. "GN0100"
    detail_genres: list[str]
    issue_date: str | None  # "YYYY-MM-DD", "YYYY-MM", "YYYY" or None


@dataclass(slots=True)
class Playlist:
    id: int
    title: str
    tags: list[str]
    songs: list[int]  # curator's order, unknown ids and repeats removed
    like_cnt: int
    updt_date: str
    split: str


@dataclass
class ReadReport:
    """Counted warnings with a few example messages per kind."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    totals: dict[str, int] = field(default_factory=dict)

    def warn(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < _EXAMPLES_PER_KIND:
            self.examples[kind].append(message)

    @property
    def warnings(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        lines = [f"{k}: {v:,}" for k, v in self.totals.items()]
        for kind, n in sorted(self.counts.items()):
            lines.append(f"warning {kind}: {n:,} (e.g. {self.examples[kind][0]})")
        return "\n".join(lines)


@dataclass
class MelonDataset:
    root: Path
    songs: list[Song]
    genre_table: dict[str, str]
    playlists: list[Playlist]
    report: ReadReport


# -- helpers ----------------------------------------------------------------------------------------


def _load_json(path: Path, expected: type) -> Any:
    if not path.is_file():
        raise MelonFormatError(f"{path}: required file is missing")
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MelonFormatError(f"{path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise MelonFormatError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, expected):
        raise MelonFormatError(
            f"{path}: top level must be a JSON {expected.__name__}, found {type(data).__name__}"
        )
    return data


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_list(value: Any, where: str, fld: str, report: ReadReport) -> list[str]:
    if value is None:
        report.warn(f"null {fld}", f"{where}: field {fld!r} is null")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        report.warn(f"mistyped {fld}", f"{where}: field {fld!r} must be a list of strings")
        return [str(v) for v in value] if isinstance(value, list) else []
    return value


def normalize_issue_date(raw: Any) -> tuple[str | None, str | None]:
    """``"YYYYMMDD"`` -> ISO-like date, dropping unknown parts; returns (date, problem or None)."""
    if not isinstance(raw, str):
        return None, "not a string" if raw is not None else "null"
    raw = raw.strip()
    if not raw.isdigit():
        return None, "not digits"
    year = raw[:4]
    if len(raw) < 4 or year == "0000":
        return None, "no year"
    if not 1000 <= int(year) <= 2100:
        return None, "year out of range"
    month = raw[4:6] if len(raw) >= 6 else ""
    day = raw[6:8] if len(raw) >= 8 else ""
    problem = None if len(raw) == 8 else "short"
    if not month or month == "00":
        return year, problem or ("partial" if month == "00" else None)
    if not 1 <= int(month) <= 12:
        return year, "bad month"
    if not day or day == "00":
        return f"{year}-{month}", problem or ("partial" if day == "00" else None)
    if not 1 <= int(day) <= 31:
        return f"{year}-{month}", "bad day"
    return f"{year}-{month}-{day}", problem


# -- readers ----------------------------------------------------------------------------------------


def read_genre_table(path: Path) -> dict[str, str]:
    data = _load_json(path, dict)
    table: dict[str, str] = {}
    for code, name in data.items():
        if not isinstance(name, str):
            raise MelonFormatError(f"{path}: genre {code!r} must map to a string name")
        table[str(code)] = name
    return table


def read_songs(path: Path, report: ReadReport) -> list[Song]:
    data = _load_json(path, list)
    songs: list[Song] = []
    seen: set[int] = set()
    fname = path.name
    for i, rec in enumerate(data):
        where = f"{fname}[{i}]"
        if not isinstance(rec, dict):
            raise MelonFormatError(f"{path}: record {i} must be an object, found {type(rec).__name__}")
        sid = rec.get("id")
        if not _is_int(sid) or sid < 0:
            raise MelonFormatError(f"{path}: record {i}: field 'id' must be a non-negative integer, found {sid!r}")
        if sid in seen:
            raise MelonFormatError(f"{path}: record {i}: duplicate song id {sid}")
        seen.add(sid)
        if sid != i:
            report.warn("id != index", f"{where}: id {sid} differs from its index")
        title = rec.get("song_name")
        if not isinstance(title, str):
            report.warn("mistyped song_name", f"{where}: field 'song_name' must be a string, found {title!r}")
            title = "" if title is None else str(title)
        album = rec.get("album_name")
        if album is None:
            report.warn("null album_name", f"{where}: field 'album_name' is null")
            album = ""
        elif not isinstance(album, str):
            report.warn("mistyped album_name", f"{where}: field 'album_name' must be a string")
            album = str(album)
        album_id = rec.get("album_id")
        if album_id is not None and not _is_int(album_id):
            report.warn("mistyped album_id", f"{where}: field 'album_id' must be an integer")
            album_id = None
        artists = _str_list(rec.get("artist_name_basket"), where, "artist_name_basket", report)
        artist_ids_raw = rec.get("artist_id_basket") or []
        artist_ids = [a for a in artist_ids_raw if _is_int(a)] if isinstance(artist_ids_raw, list) else []
        genres = _str_list(rec.get("song_gn_gnr_basket"), where, "song_gn_gnr_basket", report)
        details = _str_list(rec.get("song_gn_dtl_gnr_basket"), where, "song_gn_dtl_gnr_basket", report)
        if not genres:
            report.warn("empty genre basket", f"{where}: 'song_gn_gnr_basket' is empty")
        issue_date, problem = normalize_issue_date(rec.get("issue_date"))
        if problem:
            report.warn(f"issue_date {problem}", f"{where}: field 'issue_date' {rec.get('issue_date')!r} ({problem})")
        songs.append(
            Song(sid, title, artists, artist_ids, album, album_id, genres, details, issue_date)
        )
    return songs


def read_playlists(path: Path, split: str, known: np.ndarray, report: ReadReport) -> list[Playlist]:
    """Read one playlist file; ``known`` is a boolean lookup array indexed by song id."""
    data = _load_json(path, list)
    fname = path.name
    playlists: list[Playlist] = []
    seen: set[int] = set()
    for i, rec in enumerate(data):
        where = f"{fname}[{i}]"
        if not isinstance(rec, dict):
            raise MelonFormatError(f"{path}: record {i} must be an object, found {type(rec).__name__}")
        pid = rec.get("id")
        if not _is_int(pid):
            raise MelonFormatError(f"{path}: record {i}: field 'id' must be an integer, found {pid!r}")
        if pid in seen:
            raise MelonFormatError(f"{path}: record {i}: duplicate playlist id {pid}")
        seen.add(pid)
        songs = rec.get("songs")
        if not isinstance(songs, list) or not all(_is_int(s) for s in songs):
            raise MelonFormatError(f"{path}: record {i} (playlist {pid}): field 'songs' must be a list of integers")
        arr = np.asarray(songs, dtype=np.int64)
        ok = (arr >= 0) & (arr < len(known))
        ok[ok] = known[arr[ok]]
        if not ok.all():
            bad = arr[~ok]
            report.warn(
                "unknown song id",
                f"{where}: field 'songs' names {len(bad)} unknown song id(s), e.g. {int(bad[0])}; dropped",
            )
            report.counts["unknown song id entries"] += len(bad) - 1
            arr = arr[ok]
        _, first = np.unique(arr, return_index=True)
        if len(first) != len(arr):
            report.warn("repeated song in playlist", f"{where}: repeated song ids; kept the first of each")
            arr = arr[np.sort(first)]
        if len(arr) == 0:
            if split == "train":
                report.warn("empty playlist", f"{where}: no known songs; playlist dropped")
            else:
                # val/test withhold songs by design: a title- or tag-only playlist is expected, not a fault.
                key = f"playlists without songs ({fname}), not used"
                report.totals[key] = report.totals.get(key, 0) + 1
            continue
        title = rec.get("plylst_title")
        if not isinstance(title, str):
            report.warn("mistyped plylst_title", f"{where}: field 'plylst_title' must be a string")
            title = ""
        tags = _str_list(rec.get("tags", []), where, "tags", report)
        like = rec.get("like_cnt", 0)
        if not _is_int(like):
            report.warn("mistyped like_cnt", f"{where}: field 'like_cnt' must be an integer")
            like = 0
        updt = rec.get("updt_date", "")
        if not isinstance(updt, str):
            report.warn("mistyped updt_date", f"{where}: field 'updt_date' must be a string")
            updt = ""
        playlists.append(Playlist(pid, title, tags, arr.tolist(), like, updt, split))
    return playlists


@gc_paused()  # millions of records that make no reference cycles: see training.gcpause
def read_dataset(
    root: Path, splits: tuple[str, ...] = ("train", "val", "test"), progress: bool = True
) -> MelonDataset:
    """Read and validate a Melon-layout folder.

    ``train.json`` is required; ``val.json`` and ``test.json`` are read when present. The genre table
    is optional (codes then show as themselves) but a present, malformed one is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise MelonFormatError(f"{root}: dataset folder does not exist")
    report = ReadReport()
    genre_path = root / GENRE_TABLE
    if genre_path.is_file():
        genre_table = read_genre_table(genre_path)
    else:
        report.warn("missing genre table", f"{genre_path}: not found; genres show as codes")
        genre_table = {}
    songs = read_songs(root / SONG_META, report)
    max_id = max((s.id for s in songs), default=-1)
    known = np.zeros(max_id + 1, dtype=bool)
    known[[s.id for s in songs]] = True
    unknown_codes = {g for s in songs for g in s.genres if g not in genre_table}
    for code in sorted(unknown_codes):
        report.warn("genre code not in table", f"{SONG_META}: genre code {code!r} is not in {GENRE_TABLE}")
    playlists: list[Playlist] = []
    for split in splits:
        path = root / SPLIT_FILES[split]
        if not path.is_file():
            if split == "train":
                raise MelonFormatError(f"{path}: required file is missing")
            continue
        part = read_playlists(path, split, known, report)
        report.totals[f"playlists ({path.name})"] = len(part)
        playlists.extend(part)
    report.totals["songs"] = len(songs)
    logger.info("read %s: %d songs, %d playlists, %d warnings", root, len(songs), len(playlists), report.warnings)
    return MelonDataset(root, songs, genre_table, playlists, report)


# -- genres -----------------------------------------------------------------------------------------


def genre_names(codes: list[str], table: dict[str, str]) -> list[str]:
    """Readable top-level genre names without repeats; a code the table lacks shows as the code."""
    out: list[str] = []
    for code in codes:
        name = table.get(code, code)
        if name not in out:
            out.append(name)
    return out
