"""The ``recordings`` set: the music of Debian's game-data packages, as a catalog and its queries.

Every track of at least :data:`MIN_SECONDS` that libsndfile decodes (Ogg/Vorbis, FLAC, WAV, MP3; also
inside the ``.pk3`` zip archives some games ship) becomes one catalog song:

* its catalog mel is seconds 20 to 50, computed with :func:`mugle_core.melspec.segment_to_mel` exactly as
  :func:`mugle_core.melspec.audio_to_mel` would on the whole file (the Melon dataset's convention);
* its query is a 30-second excerpt from later in the track, starting at the middle of the track minus
  15 s but never before 60 s (so it never overlaps the catalog excerpt), saved as a mono 16-bit WAV at
  the file's own sample rate (what a user would upload to ``POST /recommend/audio``) and as the mel that
  the service computes from that WAV.

Tracker modules (``.it``, ``.s3m``, ``.mod``, ``.xm``) are skipped: nothing here decodes them without an
extra library. Ogg/Opus files (Warzone 2100) are left out in this format of the set (see
:data:`LEFT_OUT_EXTENSIONS`). Byte-identical files (one track shipped twice) are kept once.

Metadata: title = the file's name, artist and album = the game, genre OST (``GN1500``/``GN1510`` game).
Playlists: per game, a few random subsets of its tracks, plus cross-game mixes, so music2vec and CEL have
something to train on (they group by game, which is not the task's truth: the own track).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mugle_core.melspec import MelParams, audio_to_mel, segment_to_mel
from training.realaudio import debs, layout

logger = logging.getLogger(__name__)

# package -> game, as the catalog's artist and album.
PACKAGES: dict[str, str] = {
    "frozen-bubble-data": "Frozen Bubble",
    "neverball-common": "Neverball",
    "extremetuxracer-data": "Extreme Tux Racer",
    "lincity-ng-data": "LinCity-NG",
    "pingus-data": "Pingus",
    "supertux-data": "SuperTux",
    "hedgewars-data": "Hedgewars",
    "freedroidrpg-data": "FreedroidRPG",
    "asc-music": "Advanced Strategic Command",
    "drascula-music": "Drascula",
    "hyperrogue-music": "HyperRogue",
    "nexuiz-music": "Nexuiz",
    "planetblupi-music-ogg": "Planet Blupi",
    "singularity-music": "Endgame: Singularity",
    "ufoai-music": "UFO: Alien Invasion",
    "warzone2100-music": "Warzone 2100",
    "wesnoth-1.16-music": "Battle for Wesnoth",
}
AUDIO_EXTENSIONS = (".ogg", ".oga", ".flac", ".wav", ".mp3")
TRACKER_EXTENSIONS = (".it", ".s3m", ".mod", ".xm")
# Ogg/Opus decodes (libsndfile >= 1.0.29) but was missed when the set's format 1 was fixed; adding it
# (Warzone 2100's 30 tracks) changes the song ids, so it waits for a format 2 that everyone rebuilds.
LEFT_OUT_EXTENSIONS = (".opus",)
ARCHIVE_EXTENSIONS = (".pk3",)
MIN_SECONDS = 90.0
CATALOG_START_S = 20.0
CLIP_S = 30.0
QUERY_EARLIEST_S = 60.0
GENRE, DETAIL_GENRE = "GN1500", "GN1510"


@dataclass(frozen=True)
class Source:
    """One audio file: a plain file, or a ``member`` of a zip archive at ``path``."""

    package: str
    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return Path(self.member or self.path.name).name

    @property
    def label(self) -> str:
        """Path shown in the truth file, relative to the unpacked package."""
        inner = str(self.path).split(f"/{self.package}/", 1)[-1]
        return f"{self.package}:{inner}" + (f"!{self.member}" if self.member else "")

    def read_bytes(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(self.member)


def query_start(duration_s: float) -> float:
    """Where a track's query excerpt starts: the middle minus half a clip, not before 60 s."""
    return float(min(max(QUERY_EARLIEST_S, duration_s / 2 - CLIP_S / 2), duration_s - CLIP_S))


def pretty_title(file_name: str) -> str:
    """A readable title from a file name: no extension, no leading track number, spaces for ``_``/``-``."""
    stem = Path(file_name).stem
    stem = re.sub(r"^\d+\s*-\s*", "", stem)
    stem = re.sub(r"[_]+", " ", stem).strip()
    return stem or file_name


def find_sources(package: str, folder: Path, skipped: Counter[str]) -> Iterator[Source]:
    """Audio files of an unpacked package, sorted; tracker modules are counted in ``skipped``."""
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink()):
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            yield Source(package, path)
        elif suffix in TRACKER_EXTENSIONS:
            skipped["tracker module (no decoder)"] += 1
        elif suffix in LEFT_OUT_EXTENSIONS:
            skipped["Ogg/Opus (left out in format 1)"] += 1
        elif suffix in ARCHIVE_EXTENSIONS:
            try:
                with zipfile.ZipFile(path) as archive:
                    members = sorted(n for n in archive.namelist() if n.lower().endswith(AUDIO_EXTENSIONS))
            except zipfile.BadZipFile:
                skipped["unreadable archive"] += 1
                continue
            for member in members:
                yield Source(package, path, member)


@dataclass(frozen=True)
class TrackInfo:
    source: Source
    duration_s: float
    sample_rate: int
    digest: str


def probe(source: Source) -> TrackInfo | str:
    """Duration, rate and content hash of a source, or the reason it cannot be used."""
    try:
        data = source.read_bytes()
        info = sf.info(io.BytesIO(data))
    except (OSError, RuntimeError, sf.LibsndfileError, zipfile.BadZipFile) as exc:
        logger.debug("%s: %s", source.label, exc)
        return "undecodable"
    if info.samplerate <= 0 or info.frames <= 0:
        return "undecodable"
    return TrackInfo(source, info.frames / info.samplerate, int(info.samplerate), hashlib.sha1(data).hexdigest())


def _read(handle: sf.SoundFile, start: int, stop: int) -> np.ndarray:
    handle.seek(max(0, start))
    return handle.read(stop - max(0, start), dtype="float32", always_2d=True)


def process_track(info: TrackInfo, song_id: int, tmp: str) -> dict[str, Any]:
    """Catalog mel, query WAV and query mel of one track; returns its truth entry."""
    params = MelParams()
    folder = Path(tmp)
    with sf.SoundFile(io.BytesIO(info.source.read_bytes())) as handle:
        sr = handle.samplerate
        # Decode only the excerpt and the context the front end reads around it.
        start, stop = int(round(CATALOG_START_S * sr)), int(round((CATALOG_START_S + CLIP_S) * sr))
        ctx = int(round(0.25 * sr)) + 1
        piece = _read(handle, start - ctx, stop + ctx)
        mel = segment_to_mel(piece, sr, ctx, ctx + stop - start, params)
        q0 = query_start(info.duration_s)
        q_start = int(round(q0 * sr))
        clip = _read(handle, q_start, q_start + int(round(CLIP_S * sr)))
    layout.write_mel(folder, song_id, mel)
    wav = f"{layout.QUERY_DIR}/{song_id}.wav"
    sf.write(folder / wav, clip.mean(axis=1), sr, subtype="PCM_16", format="WAV")
    # The query mel is what the service computes from the WAV as written (16-bit, mono).
    samples, wav_sr = sf.read(folder / wav, dtype="float32", always_2d=True)
    q_mel = audio_to_mel(samples, wav_sr, params)
    npy = f"{layout.QUERY_DIR}/{song_id}.npy"
    np.save(folder / npy, q_mel.astype(np.float32), allow_pickle=False)
    return {
        "song_id": song_id,
        "source": info.source.label,
        "duration_s": round(info.duration_s, 3),
        "sample_rate": sr,
        "catalog_excerpt_s": [CATALOG_START_S, CATALOG_START_S + CLIP_S],
        "queries": [{"wav": wav, "mel": npy, "start_s": round(q0, 3), "seconds": round(len(clip) / sr, 3)}],
    }


def _worker_init(niceness: int) -> None:
    # os.nice adds to the current value: raise it to ``niceness``, never past it (a parent run under
    # `nice -n 10` would otherwise put its workers at 19, starved by every other job).
    current = os.nice(0)
    if niceness > current:
        os.nice(niceness - current)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def params(
    packages: tuple[str, ...] = tuple(PACKAGES), min_seconds: float = MIN_SECONDS, seed: int = 0
) -> dict[str, Any]:
    """What decides the set's content (recorded in ``READY``; a different value means a rebuild)."""
    return {"set": "recordings", "packages": list(packages), "min_seconds": min_seconds, "seed": seed,
            "catalog_excerpt_s": [CATALOG_START_S, CATALOG_START_S + CLIP_S], "clip_s": CLIP_S,
            "query_earliest_s": QUERY_EARLIEST_S, "mel": MelParams().as_dict(), "format": 1}


def build(
    out: Path, debs_cache: Path, unpack_root: Path, *, packages: tuple[str, ...] = tuple(PACKAGES),
    min_seconds: float = MIN_SECONDS, seed: int = 0, workers: int = 2, niceness: int = 10,
    progress: bool = True, force: bool = False,
) -> dict[str, Any]:
    """Build the recordings set into ``out`` (skipped when a matching ``READY`` is there).

    Returns
    -------
    dict
        The ``READY`` content: counts per game, skipped files by reason, the packages' ``.deb`` names.
    """
    from tqdm import tqdm

    wanted = params(packages, min_seconds, seed)
    if not force and layout.is_ready(out, wanted):
        logger.info("%s is complete (READY with the same parameters); nothing to do", out)
        return layout.read_ready(out) or {}
    unknown = [p for p in packages if p not in PACKAGES]
    if unknown:
        raise ValueError(f"packages: unknown {unknown}; known: {sorted(PACKAGES)}")
    skipped: Counter[str] = Counter()
    infos: list[TrackInfo] = []
    deb_names: dict[str, str] = {}
    seen: set[str] = set()
    for package in packages:
        try:
            folder, deb_names[package] = debs.fetch(package, debs_cache, unpack_root)
        except debs.PackageError as exc:
            logger.warning("skipping %s", exc)
            skipped["package unavailable"] += 1
            continue
        for source in find_sources(package, folder, skipped):
            got = probe(source)
            if isinstance(got, str):
                skipped[got] += 1
            elif got.duration_s < min_seconds:
                skipped[f"shorter than {min_seconds:g} s"] += 1
            elif got.digest in seen:
                skipped["byte-identical duplicate"] += 1
            else:
                seen.add(got.digest)
                infos.append(got)
    if not infos:
        raise ValueError(f"recordings: no usable track in packages {list(packages)}")
    tmp = layout.start_folder(Path(out))
    (tmp / layout.QUERY_DIR).mkdir()
    entries: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=max(1, workers), initializer=_worker_init, initargs=(niceness,)) as pool:
        jobs = pool.map(process_track, infos, range(len(infos)), [str(tmp)] * len(infos), chunksize=4)
        for entry in tqdm(jobs, total=len(infos), desc="recordings", disable=not progress):
            entries.append(entry)
    games = sorted({PACKAGES[i.source.package] for i in infos})
    game_id = {g: 100 + n for n, g in enumerate(games)}
    songs = []
    for info, entry in zip(infos, entries, strict=True):
        game = PACKAGES[info.source.package]
        entry["game"] = game
        entry["title"] = pretty_title(info.source.name)
        songs.append(layout.song_record(entry["song_id"], entry["title"], game, game_id[game], game,
                                        game_id[game], GENRE, DETAIL_GENRE))
    by_game: dict[str, list[int]] = {g: [] for g in games}
    for entry in entries:
        by_game[entry["game"]].append(entry["song_id"])
    rng = np.random.default_rng(seed)
    playlists = layout.group_playlists(by_game, rng, per_group=4, share=0.6, mixes=max(4, len(infos) // 10),
                                       mix_size=12, tag="game music")
    truth = {
        "set": "recordings",
        "task": "a query clip (30 s from later in the track) must find its own track",
        "tracks": entries,
        "groups": {"game": by_game},
    }
    layout.write_dataset(tmp, songs, playlists, truth)
    ready = {
        "set": "recordings",
        "params": wanted,
        "songs": len(songs),
        "queries": sum(len(e["queries"]) for e in entries),
        "playlists": len(playlists),
        "per_game": {g: len(ids) for g, ids in by_game.items()},
        "skipped": dict(sorted(skipped.items())),
        "debs": deb_names,
    }
    layout.finish_folder(tmp, Path(out), ready)
    logger.info("recordings: %d tracks from %d games in %s", len(songs), len(games), out)
    return ready
