"""Writing an evaluation set: the Melon layout, the truth file, and the ``READY`` marker.

A set folder holds::

    song_meta.json  train.json  genre_gn_all.json  arena_mel/<id // 1000>/<id>.npy   (the Melon layout)
    realaudio_truth.json   which songs belong together (track -> queries, tune -> performances)
    queries/               query clips as WAV and their mels as .npy (recordings only)
    READY                  written last; its JSON says what was built and with which parameters

A set is built in a temporary sibling folder and renamed into place, so a folder that exists is
complete, and a build that finds a ``READY`` made with the same parameters does nothing (idempotent).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mugle_core.melfile import mel_path
from training.melon import GENRE_TABLE, SONG_META, SPLIT_FILES

logger = logging.getLogger(__name__)

TRUTH_FILE = "realaudio_truth.json"
READY = "READY"
QUERY_DIR = "queries"
# The real genre table ships with the shared material; a set copies it so the reader sees real names.
GENRE_SOURCES = (Path("/work/shared/melon") / GENRE_TABLE,)
# The top-level genres used when the shared table is absent (tests on another machine).
FALLBACK_GENRES = {"GN1400": "포크/블루스/컨트리", "GN1402": "포크", "GN1500": "OST", "GN1510": "게임"}


def dump_json(path: Path, obj: Any) -> None:
    """Write JSON in UTF-8, Korean kept readable."""
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


def read_ready(folder: Path) -> dict[str, Any] | None:
    """The ``READY`` marker's content, or None when the set is absent or incomplete."""
    path = Path(folder) / READY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_ready(folder: Path, params: Mapping[str, Any]) -> bool:
    """True when ``folder`` holds a complete set built with exactly ``params``."""
    ready = read_ready(folder)
    return ready is not None and ready.get("params") == json.loads(json.dumps(params))


def song_record(
    song_id: int, title: str, artist: str, artist_id: int, album: str, album_id: int,
    genre: str, detail_genre: str, issue_date: str = "00000000",
) -> dict[str, Any]:
    """One ``song_meta.json`` object."""
    return {
        "id": song_id,
        "song_name": title,
        "artist_name_basket": [artist],
        "artist_id_basket": [artist_id],
        "album_name": album,
        "album_id": album_id,
        "song_gn_gnr_basket": [genre],
        "song_gn_dtl_gnr_basket": [detail_genre],
        "issue_date": issue_date,
    }


def playlist_record(playlist_id: int, title: str, tags: Sequence[str], songs: Sequence[int]) -> dict[str, Any]:
    """One ``train.json`` object (fixed date and likes: the set has no history)."""
    return {
        "id": playlist_id,
        "plylst_title": title,
        "tags": list(tags),
        "songs": [int(s) for s in songs],
        "like_cnt": 0,
        "updt_date": "2024-01-01 00:00:00.000",
    }


def group_playlists(
    groups: Mapping[str, Sequence[int]], rng: np.random.Generator, *, per_group: int = 4,
    share: float = 0.6, mixes: int = 0, mix_size: int = 12, tag: str = "",
) -> list[dict[str, Any]]:
    """Playlists that music2vec and CEL can train on: random subsets of each group, plus mixes.

    Each group (a game, a collection) gets ``per_group`` playlists of about ``share`` of its songs, so a
    song lands in several playlists (music2vec keeps songs in at least 3 by default); ``mixes``
    playlists draw ``mix_size`` songs from the whole set. Group names become titles and tags.
    """
    out: list[dict[str, Any]] = []
    for name in sorted(groups):
        songs = np.asarray(sorted(groups[name]))
        if songs.size < 2:
            continue
        size = max(2, int(round(share * songs.size)))
        for i in range(per_group):
            pick = rng.permutation(songs)[:size]
            out.append(playlist_record(len(out), f"{name} {i + 1}", [name, tag] if tag else [name], pick.tolist()))
    everything = np.asarray(sorted(s for g in groups.values() for s in g))
    for i in range(mixes):
        pick = rng.permutation(everything)[: min(mix_size, everything.size)]
        out.append(playlist_record(len(out), f"mix {i + 1}", [tag or "mix"], pick.tolist()))
    return out


def copy_genre_table(folder: Path) -> None:
    """Copy the real genre table into the set, or write the few codes the sets use."""
    for source in GENRE_SOURCES:
        if source.is_file():
            shutil.copyfile(source, folder / GENRE_TABLE)
            return
    logger.warning("genre table not found at %s; writing the %d codes the sets use",
                   GENRE_SOURCES, len(FALLBACK_GENRES))
    dump_json(folder / GENRE_TABLE, FALLBACK_GENRES)


def write_mel(folder: Path, song_id: int, mel: np.ndarray) -> None:
    """Save a catalog mel where the Melon layout keeps it (float32, no pickle)."""
    path = mel_path(folder, song_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(mel, dtype=np.float32), allow_pickle=False)


def write_dataset(folder: Path, songs: Sequence[Mapping[str, Any]], playlists: Sequence[Mapping[str, Any]],
                  truth: Mapping[str, Any]) -> None:
    """Write the metadata files of a set (the mels are written as they are computed)."""
    for i, song in enumerate(songs):
        if song["id"] != i:
            raise ValueError(f"song_meta.json: songs[{i}] has id {song['id']}; ids must be 0..n-1 in order")
    dump_json(folder / SONG_META, list(songs))
    dump_json(folder / SPLIT_FILES["train"], list(playlists))
    copy_genre_table(folder)
    dump_json(folder / TRUTH_FILE, dict(truth))


def start_folder(final: Path) -> Path:
    """A fresh temporary sibling of ``final`` to build into."""
    tmp = final.with_name(final.name + ".building")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def finish_folder(tmp: Path, final: Path, ready: Mapping[str, Any]) -> None:
    """Write ``READY`` into ``tmp`` and move it to ``final`` (replacing an older, incomplete or stale set).

    The ``artifacts`` folder of an older set (models trained on it) is not kept: they belong to the old data.
    """
    dump_json(tmp / READY, dict(ready))
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
