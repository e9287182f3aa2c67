"""The ``melodies`` set: folk tunes of the music21 corpus, each rendered as several performances.

Tunes come from three folk collections of the music21 corpus: the Essen Folksong Collection
(``essenFolksong``, without its test and variant files), O'Neill's *Music of Ireland* (``oneills1850``)
and Ryan's *Mammoth Collection* (``ryansMammoth``). The Bach chorales are left out on purpose: they stay
unseen, as a later check of generality. Tunes whose first melodic intervals repeat an already chosen
tune's are skipped, so two "different" tunes are not one tune twice.

Each tune is played :data:`PERFORMANCES` times by fluidsynth with a General MIDI soundfont (Debian's
``fluid-soundfont-gm``), every performance differing from the others in

* the melody's instrument (distinct GM programs),
* the key (a distinct transposition of up to 4 semitones up or down),
* the tempo (a factor drawn in 0.85..1.15 of the tune's base tempo),
* the accompaniment: half of the performances add a bass and block chords (I/IV/V chosen per bar from
  the melody's notes), the other half play the melody alone,
* the level (-6..+3 dB),

and is looped to fill :data:`CLIP_S` seconds. The catalog mel of a performance is its whole 30-second
rendering through :func:`mugle_core.melspec.audio_to_mel`. Every performance is a catalog song; the truth file
groups them by tune. Task: from one performance, find another performance of the same tune.

Metadata: artist = the collection, album = the book a tune is in (its ABC file; for Ryan's Mammoth, one
tune per file, the collection), so the playlists built per album never group one tune's performances
alone. Rendered mels are cached under ``renders/`` beside the set, keyed by everything that decides them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mugle_core.melspec import MelParams, audio_to_mel
from training.realaudio import debs, layout
from training.realaudio.midi import Note, Part, write_midi

logger = logging.getLogger(__name__)

# key -> (corpus folder, catalog artist, top genre, detail genre)
COLLECTIONS: dict[str, tuple[str, str, str, str]] = {
    "essen": ("essenFolksong", "Essen Folksong Collection", "GN1400", "GN1402"),
    "oneill": ("oneills1850", "O'Neill's Music of Ireland", "GN2000", "GN2005"),
    "ryan": ("ryansMammoth", "Ryan's Mammoth Collection", "GN2000", "GN2005"),
}
# Kept out of the melodies set, as an unseen check of generality: the soprano of Bach's chorales.
UNSEEN_COLLECTIONS: dict[str, tuple[str, str, str, str]] = {
    "bach": ("bach", "J. S. Bach", "GN1600", "GN1610"),
}
ALL_COLLECTIONS = {**COLLECTIONS, **UNSEEN_COLLECTIONS}
# Files of the Essen folder that are not a collection of distinct tunes.
EXCLUDED_FILE = re.compile(r"^(test.*|variant\d*)\.abc$")
TUNES = 300
PERFORMANCES = 4
CLIP_S = 30.0
RENDER_RATE = 22050
MIN_NOTES = 16
SIGNATURE_INTERVALS = 12
TRANSPOSES = (-4, -3, -2, -1, 0, 1, 2, 3, 4)
TEMPO_RANGE = (0.85, 1.15)
BASE_BPM = (84.0, 116.0)
GAIN_DB = (-6.0, 3.0)
# GM programs that carry a melody in a recognisable way (0-based program numbers).
MELODY_PROGRAMS: dict[int, str] = {
    0: "Acoustic Grand Piano", 4: "Electric Piano", 11: "Vibraphone", 12: "Marimba", 19: "Church Organ",
    21: "Accordion", 22: "Harmonica", 24: "Nylon Guitar", 40: "Violin", 48: "String Ensemble",
    52: "Choir Aahs", 56: "Trumpet", 65: "Alto Sax", 68: "Oboe", 71: "Clarinet", 73: "Flute",
    75: "Pan Flute", 80: "Square Lead",
}
BASS_PROGRAMS: dict[int, str] = {32: "Acoustic Bass", 33: "Finger Bass", 35: "Fretless Bass"}
CHORD_PROGRAMS: dict[int, str] = {0: "Acoustic Grand Piano", 24: "Nylon Guitar", 46: "Harp", 48: "String Ensemble",
                                  4: "Electric Piano"}
SOUNDFONT_PACKAGE = "fluid-soundfont-gm"
SOUNDFONT_NAMES = ("FluidR3_GM.sf2",)
SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"),)


class RenderUnavailable(RuntimeError):
    """fluidsynth or a GM soundfont is missing; the message says how to get it."""


# -- the tunes -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneText:
    """One tune's ABC text (with its file's header) and where it comes from."""

    collection: str
    file: str  # relative to the music21 corpus, e.g. "essenFolksong/han1.abc"
    number: int  # the tune's X: number
    text: str
    album: str = ""  # the book a tune is in: its file, or the collection for one-tune files
    path: str = ""  # a score file music21 reads itself (MusicXML), instead of ``text``


    @property
    def source(self) -> str:
        return f"{self.file}#X:{self.number}"


@dataclass
class Tune:
    """A parsed tune: its melody in beats (quarter notes), bar, pickup, key and metre."""

    source: TuneText
    title: str
    notes: list[tuple[int, float, float]]  # (midi pitch, start, length) in beats
    bar: float
    pickup: float  # where the first note sits in its bar, in beats (an upbeat of 0.5 in 6/8 gives 2.5)
    tonic: int  # pitch class
    minor: bool
    compound: bool  # 6/8, 9/8, 12/8: the beat is a dotted quarter

    @property
    def length(self) -> float:
        """Beats from the first downbeat's grid to the end, a whole number of bars (pickup included)."""
        end = max(s + d for _, s, d in self.notes) + self.pickup
        return math.ceil(end / self.bar - 1e-6) * self.bar

    def signature(self) -> tuple[int, ...]:
        """The first melodic intervals: equal for a tune and its transposed copy."""
        pitches = [p for p, _, _ in self.notes[: SIGNATURE_INTERVALS + 1]]
        return tuple(int(b - a) for a, b in zip(pitches, pitches[1:], strict=False))


def corpus_root() -> Path:
    """The music21 corpus folder (music21 is the ``realaudio`` extra)."""
    try:
        import music21
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RenderUnavailable("music21 is not installed: pip install 'mugle[realaudio]' (or music21)") from exc
    return Path(music21.__file__).parent / "corpus"


def split_abc(text: str) -> Iterator[tuple[int, str]]:
    """``(X number, text)`` of every tune of an ABC file, each with the file's header lines before it."""
    chunks = re.split(r"\n(?=X:)", "\n" + text.replace("\r\n", "\n"))
    header = "" if chunks[0].lstrip().startswith("X:") else chunks[0].strip()
    for chunk in chunks:
        match = re.match(r"\s*X:\s*(\d+)", chunk)
        if match:
            yield int(match.group(1)), (header + "\n\n" if header else "") + chunk.strip() + "\n"


def tune_texts(collection: str, root: Path | None = None) -> list[TuneText]:
    """Every tune of a collection, in file then X order (a Bach chorale: one MusicXML file each)."""
    folder, _, _, _ = ALL_COLLECTIONS[collection]
    root = root or corpus_root()
    out = []
    if collection == "bach":
        for path in sorted((root / folder).glob("bwv*.mxl")):
            out.append(TuneText(collection, f"{folder}/{path.name}", 1, "", folder, str(path)))
        return out
    for path in sorted((root / folder).glob("*.abc")):
        if EXCLUDED_FILE.match(path.name):
            continue
        tunes = list(split_abc(path.read_text(encoding="latin-1")))
        # A file of one tune (Ryan's Mammoth) is no album: grouping by it would put only the performances
        # of one tune together, which is the task's answer, into the playlists.
        album = f"{folder}/{path.stem}" if len(tunes) > 1 else folder
        for number, chunk in tunes:
            out.append(TuneText(collection, f"{folder}/{path.name}", number, chunk, album))
    return out


def parse_tune(source: TuneText) -> Tune | None:
    """The melody of one ABC tune, or None when music21 cannot read it or it is too short."""
    from music21 import chord, converter, harmony, meter, note

    try:
        score = converter.parse(source.path) if source.path else converter.parse(source.text, format="abc")
        part = score.parts[0] if getattr(score, "parts", None) else score  # type: ignore[union-attr]
        # Repeats that music21 cannot expand are played once.
        with contextlib.suppress(Exception):
            part = part.expandRepeats()
        flat = part.flatten()
        notes: list[tuple[int, float, float]] = []
        for el in flat.notes:
            if isinstance(el, harmony.ChordSymbol) or el.duration.isGrace or float(el.quarterLength) <= 0:
                continue
            if isinstance(el, note.Note):
                pitch = int(el.pitch.midi)
            elif isinstance(el, chord.Chord) and el.pitches:
                pitch = int(max(p.midi for p in el.pitches))  # a double stop: the top voice carries the tune
            else:
                continue
            notes.append((pitch, float(el.offset), float(el.quarterLength)))
        if len(notes) < MIN_NOTES:
            return None
        sigs = list(flat.getElementsByClass(meter.TimeSignature))
        ts = sigs[0] if sigs else None
        bar = float(ts.barDuration.quarterLength) if ts is not None else 4.0
        compound = bool(ts is not None and ts.denominator == 8 and ts.numerator % 3 == 0)
        measures = list(part.getElementsByClass("Measure"))
        first = float(measures[0].duration.quarterLength) if measures else bar
        pickup = bar - first if 0 < first < bar else 0.0
        key = score.analyze("key")
        title = (score.metadata.title if score.metadata and score.metadata.title else "").strip()
    except Exception as exc:  # noqa: BLE001 - music21 raises many kinds on odd ABC; such a tune is skipped
        logger.debug("%s: not usable (%s)", source.source, exc)
        return None
    notes.sort(key=lambda n: (n[1], -n[0]))
    if bar <= 0 or not all(0 <= p <= 127 for p, _, _ in notes):
        return None
    fallback = f"BWV {Path(source.file).stem.removeprefix('bwv')}" if source.path else f"Tune {source.number}"
    return Tune(source, title or fallback, notes, bar, pickup, int(key.tonic.pitchClass),
                key.mode == "minor", compound)


def choose_tunes(n_tunes: int, seed: int, root: Path | None = None, progress: bool = False,
                 collections: Sequence[str] = tuple(COLLECTIONS)) -> list[Tune]:
    """``n_tunes`` distinct tunes, an equal share from each collection (the rest from the first), seeded."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    keys = list(collections)
    quotas = {k: n_tunes // len(keys) for k in keys}
    quotas[keys[0]] += n_tunes - sum(quotas.values())
    chosen: list[Tune] = []
    seen: set[tuple[int, ...]] = set()
    bar = tqdm(total=n_tunes, desc="tunes", disable=not progress)
    for key in keys:
        texts = tune_texts(key, root)
        taken = 0
        for i in rng.permutation(len(texts)):
            if taken >= quotas[key]:
                break
            tune = parse_tune(texts[int(i)])
            if tune is None or tune.signature() in seen:
                continue
            seen.add(tune.signature())
            chosen.append(tune)
            taken += 1
            bar.update(1)
        if taken < quotas[key]:
            logger.warning("%s: only %d usable tunes of %d wanted", key, taken, quotas[key])
    bar.close()
    return chosen


# -- performances ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Performance:
    """How one performance of a tune is played."""

    program: int
    transpose: int
    tempo: float  # factor on the tune's base tempo
    bpm: float
    accompaniment: bool
    bass_program: int | None
    chord_program: int | None
    gain_db: float

    @property
    def instrument(self) -> str:
        return MELODY_PROGRAMS.get(self.program, f"program {self.program}")


def plan_performances(rng: np.random.Generator, n: int = PERFORMANCES) -> list[Performance]:
    """``n`` performances of one tune, each different in instrument, key and tempo; half accompanied."""
    programs = rng.choice(sorted(MELODY_PROGRAMS), size=n, replace=False)
    transposes = rng.choice(TRANSPOSES, size=n, replace=False)
    base = float(rng.uniform(*BASE_BPM))
    accompanied = rng.permutation([i % 2 == 0 for i in range(n)])
    out = []
    for i in range(n):
        tempo = float(rng.uniform(*TEMPO_RANGE))
        bass = chords = None
        if accompanied[i]:
            bass = int(rng.choice(sorted(BASS_PROGRAMS)))
            chords = int(rng.choice(sorted(p for p in CHORD_PROGRAMS if p != programs[i])))
        out.append(Performance(int(programs[i]), int(transposes[i]), round(tempo, 4), round(base * tempo, 2),
                               bool(accompanied[i]), bass, chords, round(float(rng.uniform(*GAIN_DB)), 2)))
    return out


def _triads(tonic: int, minor: bool) -> list[tuple[int, ...]]:
    """Pitch classes of I, IV, V (i, iv, V in minor), root first."""
    third = 3 if minor else 4
    return [((tonic + 0) % 12, (tonic + third) % 12, (tonic + 7) % 12),
            ((tonic + 5) % 12, (tonic + 5 + third) % 12, (tonic + 12) % 12),
            ((tonic + 7) % 12, (tonic + 11) % 12, (tonic + 14) % 12)]


def harmonise(tune: Tune) -> list[tuple[int, ...]]:
    """One triad per bar (over one pass of the tune): the one covering most of the bar's melody."""
    triads = _triads(tune.tonic, tune.minor)
    bars = int(round(tune.length / tune.bar))
    weight = np.zeros((bars, len(triads)))
    for pitch, start, length in tune.notes:
        b = min(bars - 1, max(0, int((start + tune.pickup) // tune.bar)))
        for t, triad in enumerate(triads):
            if pitch % 12 in triad:
                weight[b, t] += length
    # argmax keeps the first (the tonic) on ties, so an empty bar rests on I.
    return [triads[int(np.argmax(w))] for w in weight]


def _place(pc: int, low: int) -> int:
    """The pitch of pitch class ``pc`` in the octave from ``low``."""
    return low + (pc - low) % 12


def arrange(tune: Tune, perf: Performance, seconds: float = CLIP_S + 1.5) -> list[Part]:
    """The MIDI parts of one performance, the tune looped to last ``seconds``."""
    beats_needed = seconds * perf.bpm / 60.0
    loops = max(1, math.ceil(beats_needed / tune.length))
    melody: list[Note] = []
    for k in range(loops):
        shift = k * tune.length
        for pitch, start, length in tune.notes:
            t = start + shift
            if t < beats_needed:
                melody.append(Note(min(127, max(0, pitch + perf.transpose)), t, length * 0.95, 100))
    parts = [Part(0, perf.program, melody)]
    if perf.accompaniment and perf.bass_program is not None and perf.chord_program is not None:
        pulse = 1.5 if tune.compound else 1.0
        triads = harmonise(tune)
        bass: list[Note] = []
        chords: list[Note] = []
        for k in range(loops):
            for b, triad in enumerate(triads):
                bar_start = k * tune.length + b * tune.bar - tune.pickup
                root = (triad[0] + perf.transpose) % 12
                beat = 0.0
                while beat < tune.bar - 1e-6:
                    t = bar_start + beat
                    if 0 <= t < beats_needed:
                        if beat == 0.0 or abs(beat - tune.bar / 2) < 1e-6:
                            bass.append(Note(_place(root, 36), t, min(pulse, tune.bar / 2) * 0.9, 80))
                        low = _place(root, 52)
                        for pc in triad:
                            chords.append(Note(_place((pc + perf.transpose) % 12, low), t, pulse * 0.8, 55))
                    beat += pulse
        parts += [Part(1, perf.bass_program, bass), Part(2, perf.chord_program, chords)]
    return parts


# -- rendering -------------------------------------------------------------------------------------------


def find_soundfont(debs_cache: Path | None = None, unpack_root: Path | None = None) -> Path:
    """The GM soundfont: installed, else unpacked from the cached/downloaded ``fluid-soundfont-gm``."""
    for folder in SOUNDFONT_DIRS:
        for name in SOUNDFONT_NAMES:
            if (folder / name).is_file():
                return folder / name
    if debs_cache is not None and unpack_root is not None:
        try:
            folder, _ = debs.fetch(SOUNDFONT_PACKAGE, debs_cache, unpack_root)
        except debs.PackageError as exc:
            raise RenderUnavailable(f"no GM soundfont installed, and {exc}") from exc
        for name in SOUNDFONT_NAMES:
            found = sorted(folder.rglob(name))
            if found:
                return found[0]
    raise RenderUnavailable(f"no GM soundfont ({', '.join(SOUNDFONT_NAMES)}): apt-get install {SOUNDFONT_PACKAGE}")


def fluidsynth_program() -> str:
    """Path of the fluidsynth program, or a clear error."""
    found = shutil.which("fluidsynth")
    if found is None:
        raise RenderUnavailable("the fluidsynth program is not installed: apt-get install fluidsynth")
    return found


def render(parts: Sequence[Part], bpm: float, soundfont: Path, rate: int = RENDER_RATE) -> np.ndarray:
    """Render MIDI parts with fluidsynth; returns mono float32 samples at ``rate``."""
    with tempfile.TemporaryDirectory(prefix="mugle-render-") as tmp:
        mid, wav = Path(tmp) / "tune.mid", Path(tmp) / "tune.wav"
        mid.write_bytes(write_midi(parts, bpm))
        cmd = [fluidsynth_program(), "-ni", "-q", "-C", "0", "-g", "0.5", "-r", str(rate), "-F", str(wav), "-T", "wav",
               str(soundfont), str(mid)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"fluidsynth failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        samples, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, asked for {rate}")
    return samples.mean(axis=1)


def performance_mel(tune: Tune, perf: Performance, soundfont: Path, seconds: float = CLIP_S) -> np.ndarray:
    """The catalog mel of one performance: its first ``seconds`` rendered, at its level."""
    audio = render(arrange(tune, perf, seconds + 1.5), perf.bpm, soundfont)
    n = int(round(seconds * RENDER_RATE))
    if len(audio) < n:
        audio = np.pad(audio, (0, n - len(audio)))
    audio = audio[:n] * np.float32(10 ** (perf.gain_db / 20))
    return audio_to_mel(audio, RENDER_RATE, MelParams())


@dataclass
class _Job:
    tune: Tune
    perf: Performance
    song_id: int
    soundfont: str
    folder: str
    renders: str

    def key(self) -> str:
        """What decides the rendered mel: the tune's text, the performance, the renderer and front end."""
        facts = [self.tune.source.text or self.tune.source.file, asdict(self.perf), Path(self.soundfont).name,
                 RENDER_RATE, CLIP_S, MelParams().as_dict()]
        return hashlib.sha1(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _render_job(job: _Job) -> int:
    # Rendered mels are cached by what decides them, so a rebuild that changes only metadata is quick.
    cached = Path(job.renders) / f"{job.key()}.npy"
    if cached.is_file():
        mel = np.load(cached, allow_pickle=False)
    else:
        mel = performance_mel(job.tune, job.perf, Path(job.soundfont))
        cached.parent.mkdir(parents=True, exist_ok=True)
        part = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npy")
        np.save(part, mel.astype(np.float32), allow_pickle=False)
        part.replace(cached)
    layout.write_mel(Path(job.folder), job.song_id, mel)
    return job.song_id


def _worker_init(niceness: int) -> None:
    # os.nice adds to the current value: raise it to ``niceness``, never past it (a parent run under
    # `nice -n 10` would otherwise put its workers at 19, starved by every other job).
    current = os.nice(0)
    if niceness > current:
        os.nice(niceness - current)


def params(tunes: int = TUNES, performances: int = PERFORMANCES, seed: int = 0,
           collections: Sequence[str] = tuple(COLLECTIONS), name: str = "melodies") -> dict[str, Any]:
    """What decides the set's content (recorded in ``READY``; a different value means a rebuild)."""
    import music21

    return {"set": name, "tunes": tunes, "performances": performances, "seed": seed, "clip_s": CLIP_S,
            "collections": sorted(collections), "render_rate": RENDER_RATE, "music21": music21.__version__,
            "mel": MelParams().as_dict(), "format": 2}


def build(
    out: Path, debs_cache: Path, unpack_root: Path, *, tunes: int = TUNES, performances: int = PERFORMANCES,
    seed: int = 0, workers: int = 2, niceness: int = 10, progress: bool = True, force: bool = False,
    corpus: Path | None = None, renders: Path | None = None, collections: Sequence[str] = tuple(COLLECTIONS),
    name: str = "melodies",
) -> dict[str, Any]:
    """Build the melodies set into ``out`` (skipped when a matching ``READY`` is there).

    ``collections=("bach",), name="chorales"`` builds the unseen check from the Bach chorales instead.

    Rendered mels are cached in ``renders`` (default ``<out>/../renders``), keyed by what decides them.
    """
    from tqdm import tqdm

    if tunes < 2 or performances < 2:
        raise ValueError(f"need at least 2 tunes and 2 performances per tune, got {tunes} and {performances}")
    if performances > len(TRANSPOSES):
        raise ValueError(f"performances: at most {len(TRANSPOSES)} (one key each), got {performances}")
    unknown = [c for c in collections if c not in ALL_COLLECTIONS]
    if unknown or not collections:
        raise ValueError(f"collections: unknown {unknown}; known: {sorted(ALL_COLLECTIONS)}")
    wanted = params(tunes, performances, seed, collections, name)
    if not force and layout.is_ready(out, wanted):
        logger.info("%s is complete (READY with the same parameters); nothing to do", out)
        return layout.read_ready(out) or {}
    fluidsynth_program()
    soundfont = find_soundfont(debs_cache, unpack_root)
    renders = Path(renders) if renders else Path(out).parent / "renders"
    chosen = choose_tunes(tunes, seed, corpus, progress, collections)
    rng = np.random.default_rng(seed + 1)
    tmp = layout.start_folder(Path(out))
    songs: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    jobs: list[_Job] = []
    album_ids = {a: 1000 + i for i, a in enumerate(sorted({t.source.album for t in chosen}))}
    for tune_id, tune in enumerate(chosen):
        folder, artist, genre, detail = ALL_COLLECTIONS[tune.source.collection]
        perfs = plan_performances(rng, performances)
        ids = []
        for k, perf in enumerate(perfs):
            song_id = len(songs)
            ids.append(song_id)
            title = f"{tune.title} no. {tune_id} - take {k + 1} ({perf.instrument})"
            artist_id = 10 + list(ALL_COLLECTIONS).index(tune.source.collection)
            songs.append(layout.song_record(song_id, title, artist, artist_id, tune.source.album,
                                            album_ids[tune.source.album], genre, detail))
            jobs.append(_Job(tune, perf, song_id, str(soundfont), str(tmp), str(renders)))
        entries.append({
            "tune_id": tune_id, "title": tune.title, "collection": tune.source.collection,
            "source": tune.source.source, "song_ids": ids,
            "performances": [{"song_id": i, "instrument": p.instrument, **asdict(p)}
                             for i, p in zip(ids, perfs, strict=True)],
        })
    with ProcessPoolExecutor(max_workers=max(1, workers), initializer=_worker_init, initargs=(niceness,)) as pool:
        for _ in tqdm(pool.map(_render_job, jobs, chunksize=4), total=len(jobs), desc="performances",
                      disable=not progress):
            pass
    by_album: dict[str, list[int]] = {}
    for song in songs:
        by_album.setdefault(song["album_name"], []).append(song["id"])
    playlists = layout.group_playlists(by_album, np.random.default_rng(seed + 2), per_group=4, share=0.5,
                                       mixes=max(4, len(songs) // 20), mix_size=15, tag="folk")
    truth = {
        "set": name,
        "task": "from one performance, find another performance of the same tune",
        "tunes": entries,
        "groups": {"tune": {str(e["tune_id"]): e["song_ids"] for e in entries}},
    }
    layout.write_dataset(tmp, songs, playlists, truth)
    per_collection = {k: sum(1 for e in entries if e["collection"] == k) for k in collections}
    ready = {"set": name, "params": wanted, "songs": len(songs), "tunes": len(entries),
             "performances_per_tune": performances, "playlists": len(playlists), "per_collection": per_collection,
             "soundfont": soundfont.name}
    layout.finish_folder(tmp, Path(out), ready)
    logger.info("%s: %d tunes x %d performances in %s", name, len(entries), performances, out)
    return ready
