"""``mugle train``: one dataset folder in, one complete artifacts version out.

Stages: read -> preprocess -> fit (validation split: co-occurrence exponent, Music2Vec search) -> each model
of :func:`training.models.build_models` (Music2Vec, TCAE, CEL, through one contract,
:class:`training.models.EmbeddingModel`) -> fit_fusion (score_total's weights, novelty) -> indexes ->
co-occurrence lists -> catalog -> manifest. The fitting (:mod:`training.fitting`) uses only the training
playlists, never the held-out ones, and stays inside ``--fit-budget`` seconds; what it chose is the
manifest's ``ranking`` record. Everything is
written into a staging folder (:func:`mugle_core.artifacts.staging_version`) that is renamed into place only
when complete, and ``current`` is switched last. Bad data raises before anything is staged; a crash,
Ctrl-C or a full disk midway removes the staging folder; a SIGKILL can leave a ``.tmp-*`` folder behind,
which no reader ever looks at. In every case the version already served is untouched.

Determinism: on the CPU, with ``deterministic=True``, the same data and seed give identical embeddings.
That mode trains Word2Vec with one worker (gensim's multi-threaded training interleaves updates in
whatever order the threads run) and asks torch for deterministic kernels. Without it, runs differ only
by that thread scheduling.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mugle_core import fusion as ranking
from mugle_core.artifacts import (
    CATALOG,
    EXTRAS_DIR,
    MANIFEST,
    MODELS_DIR,
    Manifest,
    ModelEntry,
    new_version_name,
    now_iso,
    set_current,
    staging_version,
)
from mugle_core.catalog import Catalog
from mugle_core.melfile import MEL_DIR
from mugle_core.tagtable import MIN_PLAYLISTS
from mugle_nets.cel import CELOptions
from mugle_nets.device import DEVICES, resolve_device
from mugle_nets.tcae import TCAEOptions
from training.cooc import WIDTH as COOC_WIDTH
from training.cooc import write_cooc
from training.fitting import UNFITTED_WEIGHTS, FitOptions, Fitter, split_validation
from training.fused import WIDTH as FUSED_WIDTH
from training.fused import write_fused
from training.indexes import FLAT_THRESHOLD, NEIGHBOURS, write_model
from training.melon import SPLIT_FILES, read_dataset
from training.models import TrainingData, build_models
from training.music2vec import Music2VecOptions
from training.preprocess import PrepOptions, add_prep_arguments, catalog_rows, prep_options_from_args, prepare
from training.tags import write_tags

logger = logging.getLogger(__name__)



@dataclass
class TrainOptions:
    """Everything ``mugle train`` can be told; all of it is recorded in the manifest.

    Attributes
    ----------
    seed : seeds every random choice (holdout, Word2Vec, torch).
    device : ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    holdout : fraction of training playlists withheld for evaluation (0 = none).
    deterministic : identical embeddings for a seed on the CPU, at the cost of one Word2Vec worker
        (turns it on for every model, whatever their own options say).
    prep : preprocessing options (filters, duplicate merging, Music2Vec playlist threshold).
    music2vec : Music2Vec options (:class:`training.music2vec.Music2VecOptions`: dim, window, epochs, ...).
    tcae : TCAE options (:class:`mugle_nets.tcae.TCAEOptions`: steps, crop, batch size, loader workers, ...).
    cel : CEL options (:class:`mugle_nets.cel.CELOptions`: epochs, batch size, margin, modality dropout, ...).
    flat_threshold : below this many vectors an index is exact, above it HNSW.
    neighbours : width of the precomputed neighbour lists the service answers catalog songs from (about
        0.5 KB per song and model on disk); 0 writes none, and the service then searches the indexes.
    cooc_width : width of the co-occurrence lists (the fourth candidate source); 0 writes none.
    fused_width : width of the fused ``score_total`` lists (:mod:`training.fused`; about 1 KB per song at 64),
        from which the service answers default requests for catalog songs; 0 writes none, and so does
        ``neighbours`` up to the depth 50 (the fusion reads the neighbour lists).
    fit : how the ranking is fitted on a validation split (:class:`training.fitting.FitOptions`);
        ``fit.budget_s`` 0 fits nothing (Music2Vec as given, raw counts, fallback weights).
    thumbs_limit : mel thumbnails for the web page are precomputed only up to this many songs with
        audio (reading every mel again costs hours at real size); 0 disables them.
    tag_min_playlists : playlist tags carried by fewer training playlists are left out of ``tags.npz``.
    version : folder name of the new version (default: timestamp plus random suffix).
    progress : show progress bars and print the final summary.
    """

    seed: int = 0
    device: str = "auto"
    holdout: float = 0.0
    deterministic: bool = False
    prep: PrepOptions = field(default_factory=PrepOptions)
    music2vec: Music2VecOptions = field(default_factory=Music2VecOptions)
    tcae: TCAEOptions = field(default_factory=TCAEOptions)
    cel: CELOptions = field(default_factory=CELOptions)
    flat_threshold: int = FLAT_THRESHOLD
    neighbours: int = NEIGHBOURS
    cooc_width: int = COOC_WIDTH
    fused_width: int = FUSED_WIDTH
    fit: FitOptions = field(default_factory=FitOptions)
    thumbs_limit: int = 50_000
    tag_min_playlists: int = MIN_PLAYLISTS
    version: str | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: choose among {DEVICES}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout={self.holdout!r}: must be in [0, 1)")
        # Music2Vec's checks are named after their command-line flags (--w2v-epochs...), so
        # options_from_args can point at the flag.
        w2v = self.music2vec
        for name in ("epochs", "dim", "window", "negative"):
            if getattr(w2v, name) < 1:
                raise ValueError(f"w2v_{name}={getattr(w2v, name)!r}: must be at least 1")
        if self.tag_min_playlists < 1:
            raise ValueError(f"tag_min_playlists={self.tag_min_playlists!r}: must be at least 1")
        if w2v.workers < 0:
            raise ValueError(f"w2v_workers={w2v.workers!r}: must not be negative")
        self.fit.validate()
        for name in ("flat_threshold", "neighbours", "thumbs_limit", "cooc_width", "fused_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: must not be negative")
        if 0 < self.fused_width < ranking.DEPTH:
            raise ValueError(f"fused_width={self.fused_width!r}: must be 0 or at least the depth {ranking.DEPTH}")
        # CEL pulls its output towards both inputs by cosine, so the three spaces must share one width.
        if not w2v.dim == self.tcae.dim == self.cel.dim:
            raise ValueError(
                f"w2v_dim={w2v.dim}, tcae.dim={self.tcae.dim}, cel.dim={self.cel.dim}: "
                "the three embedding sizes must be equal"
            )

    def as_record(self) -> dict[str, Any]:
        """JSON-ready parameters for the manifest."""
        data = asdict(self)
        data["tcae"]["dilations"] = list(data["tcae"]["dilations"])
        prep = data.pop("prep")
        prep["excluded_genres"] = sorted(prep["excluded_genres"])
        prep["splits"] = list(prep["splits"])
        data["prep"] = prep
        data.pop("progress")
        return data


# -- helpers ------------------------------------------------------------------------------------------


def dataset_fingerprint(root: Path, splits: tuple[str, ...], mel_ids: np.ndarray) -> str:
    """SHA-256 over the metadata files' bytes and the set of song ids that have a mel.

    Hashing the JSON bytes (a few hundred MB at real size, about a second) catches edits that keep a
    file's size; the mel id set catches audio added or removed without reading 240 GB.
    """
    h = hashlib.sha256()
    names = ["song_meta.json", "genre_gn_all.json"] + [SPLIT_FILES[s] for s in splits]
    for name in names:
        path = Path(root) / name
        h.update(name.encode())
        if path.is_file():
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(b"<absent>")
    h.update(np.ascontiguousarray(mel_ids, dtype=np.int64).tobytes())
    return "sha256:" + h.hexdigest()


def find_mels(root: Path) -> dict[int, Path]:
    """Every ``arena_mel/<folder>/<id>.npy`` present, by song id, from one directory listing per folder.

    Listing folders is far cheaper than a ``stat`` per song at 700k songs. Whether a file is readable
    is decided later, when the audio stage loads it.
    """
    found: dict[int, Path] = {}
    base = Path(root) / MEL_DIR
    if not base.is_dir():
        return found
    with os.scandir(base) as folders:
        for folder in folders:
            if not folder.is_dir() or not folder.name.isdigit():
                continue
            try:
                entries = list(os.scandir(folder.path))
            except OSError as exc:  # a broken folder of the real copy: skip it, say so
                logger.warning("%s: cannot list mel folder (%s); its songs have no audio", folder.path, exc)
                continue
            for entry in entries:
                stem, dot, ext = entry.name.partition(".")
                if dot and ext == "npy" and stem.isdigit():
                    found[int(stem)] = Path(entry.path)
    return found


def canonical_mels(aliases: dict[int, int], mels: dict[int, Path]) -> dict[int, Path]:
    """One mel per canonical song: its own file, else the lowest-id duplicate's file."""
    chosen: dict[int, Path] = {}
    for original in sorted(aliases):
        canonical = aliases[original]
        path = mels.get(original)
        if path is None:
            continue
        if original == canonical or canonical not in chosen:
            chosen[canonical] = path
    return chosen


def choose_holdout(playlist_ids: list[int], fraction: float, seed: int) -> list[int]:
    """A seeded random ``fraction`` of ``playlist_ids``, sorted; independent of the input's order."""
    if fraction <= 0 or not playlist_ids:
        return []
    pool = np.array(sorted(set(playlist_ids)), dtype=np.int64)
    n = int(round(fraction * len(pool)))
    rng = np.random.default_rng([seed, 0x486F6C64])  # a stream of its own, apart from model seeds
    return sorted(int(i) for i in rng.choice(pool, size=n, replace=False))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageClock:
    """Times named stages for the manifest and the final summary.

    Besides wall time it keeps the process's CPU time per stage (all threads): on a shared machine
    wall time mostly measures the neighbours, CPU time what the stage itself costs.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("stage %s ...", name)
        started, cpu_started = time.perf_counter(), time.process_time()
        yield
        self.timings[name] = round(time.perf_counter() - started, 3)
        self.cpu[name] = round(time.process_time() - cpu_started, 3)
        logger.info(
            "stage %s done in %.1fs (CPU %.1fs, peak memory %.0f MB)",
            name, self.timings[name], self.cpu[name], peak_rss_mb(),
        )


# -- the pipeline -------------------------------------------------------------------------------------


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` so the staging folder is removed as on Ctrl-C.

    Without this a plain ``kill`` ends the process without unwinding and leaves ``.tmp-*`` behind.
    Signal handlers can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(data: Path, out: Path, options: TrainOptions | None = None) -> Path:
    """Train every model on the dataset in ``data`` and publish a new version under ``out``.

    Parameters
    ----------
    data : a dataset folder in the Melon layout.
    out : the artifacts folder (created when absent).
    options : see :class:`TrainOptions`.

    Returns
    -------
    Path
        The new version folder, which ``out/current`` now points to.

    Raises
    ------
    training.melon.MelonFormatError
        When the dataset cannot be read; nothing is written.
    ValueError
        On a bad option, naming it.
    """
    options = options or TrainOptions()
    options.validate()
    with _sigterm_as_exit():
        return _train(Path(data), Path(out), options)


def _train(data: Path, out: Path, options: TrainOptions) -> Path:
    device = str(resolve_device(options.device))
    clock = StageClock()
    started = time.perf_counter()
    _seed_everything(options.seed, options.deterministic)

    with clock.stage("read"):
        dataset = read_dataset(data, splits=options.prep.splits, progress=options.progress)
    with clock.stage("preprocess"):
        eligible = [p.id for p in dataset.playlists if p.split in options.prep.splits]
        holdout = choose_holdout(eligible, options.holdout, options.seed)
        prepared = prepare(dataset, options.prep, frozenset(holdout), progress=options.progress)
        mel_files = find_mels(data)
        mel_paths = canonical_mels(prepared.aliases, mel_files)
        fingerprint = dataset_fingerprint(data, options.prep.splits, np.array(sorted(mel_files)))
        tags_of = {p.id: p.tags for p in dataset.playlists if p.split in options.prep.splits}
        playlist_tags = [tags_of.get(i, []) for i in prepared.train_playlist_ids]
        # The genre filter accepts codes too: keep the table's names of the top-level codes songs carry.
        genre_table = {c: dataset.genre_table[c] for s in dataset.songs for c in s.genres if c in dataset.genre_table}
    read_report = dataset.report
    del dataset, tags_of  # the playlists live on in `prepared`; free the rest before training

    w2v_options, w2v_score, alpha, fitter = options.music2vec, "in_out", 0.0, None
    if options.fit.budget_s > 0:
        with clock.stage("fit"):
            split = split_validation(
                prepared.train_playlists, prepared.train_playlist_ids, holdout, options.fit, options.seed
            )
            # The search's outcome depends on how many trials fit the wall-clock budget: with --deterministic
            # it is skipped, so the same data and seed still give the same embeddings.
            fit_options = replace(options.fit, search=False) if options.deterministic else options.fit
            fitter = Fitter(split, fit_options, seed=options.seed, progress=options.progress)
            if options.cooc_width:
                alpha = fitter.fit_alpha()
            w2v_options, w2v_score = fitter.search_music2vec(w2v_options, options.prep.min_playlists)
            fitter.pause()

    version = options.version or new_version_name()
    with staging_version(out, version) as stage_dir:
        models_dir = stage_dir / MODELS_DIR
        models_dir.mkdir()
        entries: dict[str, ModelEntry] = {}

        train_data = TrainingData(
            prepared, mel_paths, models_dir, work_dir=stage_dir, device=device,
            deterministic=options.deterministic, progress=options.progress,
        )
        for model in build_models(w2v_options, options.tcae, options.cel):
            with clock.stage(model.name):
                train_data.results[model.name] = model.fit(train_data, options.seed)
        results = train_data.results
        if w2v_score != "in_out":  # the fitted scoring: input vectors against each other (IN-IN)
            w2v_result = results["music2vec"]
            w2v_result.index_vectors = None
            w2v_result.info["score"] = "IN-IN: query = index = input vectors (cosine)"
        tcae_ids, tcae_vecs = results["tcae"].ids, results["tcae"].vectors
        weights = dict(UNFITTED_WEIGHTS) if options.cooc_width else dict(ranking.FUSION_WEIGHTS)
        if fitter is not None:
            with clock.stage("fit_fusion"):
                fitter.resume()
                weights = fit_fusion(fitter, tcae_ids, tcae_vecs, options, device, clock.timings["cel"])
                fitter.fit_novelty()
                fitter.fit_cold()
                fitter.pause()
        with clock.stage("indexes"):
            for name, result in results.items():
                entries[name] = write_model(
                    stage_dir, name, result.ids, result.vectors, result.index_vectors,
                    flat_threshold=options.flat_threshold, seed=options.seed, neighbours=options.neighbours,
                )
        for name, result in results.items():
            entries[name].params.update(result.info)
            entries[name].timings["train_s"] = clock.timings[name]
        with clock.stage("tags"):
            tag_entry = write_tags(
                stage_dir, playlist_tags, prepared.train_playlists,
                {name: (result.ids, result.vectors) for name, result in results.items()},
                min_playlists=options.tag_min_playlists,
            )

        ranking_record: dict[str, Any] = {"fusion": {"weights": weights}}
        if options.cooc_width:
            with clock.stage("cooc"):
                ranking_record["cooc"] = write_cooc(
                    stage_dir, prepared.train_playlists, k=options.cooc_width, alpha=alpha, progress=options.progress
                )
        if fitter is not None:
            fitted = fitter.record.get("fusion", {})
            ranking_record["fusion"].update({k: v for k, v in fitted.items() if k != "weights"})
            ranking_record["fit"] = fitter.summary()
            novelty = fitter.served_novelty()
            if novelty is not None:
                ranking_record["novelty"] = novelty
            cold = fitter.served_cold()
            if cold is not None:
                ranking_record["cold"] = cold
        else:
            ranking_record["fit"] = {"skipped": "fit budget 0"}

        with clock.stage("catalog"):
            with_audio = set(int(i) for i in tcae_ids)
            rows = catalog_rows(prepared.songs, prepared.popularity, with_audio, genre_table)
            Catalog.save(stage_dir / CATALOG, rows, prepared.aliases, genre_table=genre_table)

        if options.fused_width and options.neighbours <= ranking.DEPTH:
            # Fusing reads the neighbour lists; shorter than the depth they would not give the served pool.
            logger.info("fused lists: not written (neighbours=%d, they need more than %d)", options.neighbours,
                        ranking.DEPTH)
        elif options.fused_width:
            with clock.stage("fused"):
                ranking_record["fused"] = write_fused(
                    stage_dir, entries, ranking_record, width=options.fused_width, progress=options.progress
                )

        with clock.stage("extras"):
            extras = write_extras(stage_dir, tcae_ids, mel_paths, options.thumbs_limit)

        counts: dict[str, Any] = {label.strip(): n for label, n in prepared.summary}
        counts["extras"] = extras
        counts["duplicates"] = prepared.duplicates.as_record()
        counts["cpu_s"] = dict(clock.cpu)
        counts["songs with a mel file"] = len(mel_paths)
        counts["reader warnings"] = int(read_report.warnings)
        counts["peak_rss_mb"] = round(peak_rss_mb(), 1)
        clock.timings["total"] = round(time.perf_counter() - started, 3)
        manifest = Manifest(
            version=version,
            created_at=now_iso(),
            dataset_fingerprint=fingerprint,
            songs=len(rows),
            models=entries,
            params={"train": options.as_record(), "device": device, **_frontend_params()},
            timings=dict(clock.timings),
            counts=counts,
            holdout_playlist_ids=holdout,
            ranking=ranking_record,
            tags=tag_entry,
        )
        _write_text(stage_dir / MANIFEST, manifest.to_json())
        _fsync_tree(stage_dir)

    set_current(out, version)
    final = out / version
    text = summary_text(manifest, data, final)
    logger.info("training finished\n%s", text)
    if options.progress:
        print(text, file=sys.stderr)
    return final


def _duplicate_lines(counts: dict[str, Any]) -> list[str]:
    """Merges and refusals by reason, with one example each, for the final summary."""
    record = counts.get("duplicates")
    if not isinstance(record, dict):
        return []
    lines = [f"  duplicate ids merged: {counts.get('merged duplicate ids', 0):,}"]
    examples = record.get("examples", {})
    for reason, n in record.get("counts", {}).items():
        example = examples.get(reason, [])
        lines.append(f"    {reason}: {n:,}" + (f" (e.g. {example[0]})" if example else ""))
    return lines


def summary_text(manifest: Manifest, data: Path, version_dir: Path) -> str:
    """The final summary: counts per model and time per stage."""
    lines = [f"trained {data} -> {version_dir} (current)", f"  servable songs: {manifest.songs:,}"]
    if manifest.holdout_playlist_ids:
        lines.append(f"  held-out playlists: {len(manifest.holdout_playlist_ids):,}")
    for name, entry in manifest.models.items():
        recall = "" if entry.index_type == "flat" else f", recall@10 {entry.recall_at_10}"
        lines.append(f"  {name:<10} {entry.count:>9,} songs x {entry.dim} ({entry.index_type}{recall})")
    lines.extend(_duplicate_lines(manifest.counts))
    if manifest.tags:
        lines.append(f"  playlist tags: {manifest.tags.get('count', 0):,} on >= {manifest.tags.get('min_playlists')} "
                     "training playlists each")
    lines.append("  time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in manifest.timings.items()))
    cpu = manifest.counts.get("cpu_s", {})
    if cpu:
        lines.append("  CPU time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in cpu.items()))
    lines.append(f"  peak memory: {manifest.counts.get('peak_rss_mb', 0):.0f} MB")
    return "\n".join(lines)


def write_extras(
    version_dir: Path, audio_ids: np.ndarray, mel_paths: dict[int, Path], thumbs_limit: int
) -> dict[str, Any]:
    """Precompute what the web page and search read from ``extras/``; returns counts for the manifest.

    - ``search_index.npz``: the title search's candidate index (:func:`mugle_core.searchindex.write_search_index`).
    - ``mel_thumbs.npy`` / ``mel_thumbs_ids.npy``: uint8 (n, 48, 96) mel pictures of the songs that got
      a TCAE vector, when there are at most ``thumbs_limit`` of them.
    """
    from mugle_core.pictures import mel_thumbnail, write_mel_thumbs
    from mugle_core.searchindex import write_search_index
    from mugle_nets.mels import read_mel

    write_search_index(version_dir)
    done: dict[str, Any] = {"search_index": True, "mel_thumbs": 0}
    if len(audio_ids) == 0:
        return done
    if len(audio_ids) > thumbs_limit:
        logger.info("extras: %d songs with audio > thumbs_limit %d; no thumbnails", len(audio_ids), thumbs_limit)
        return done
    ids: list[int] = []
    thumbs: list[np.ndarray] = []
    for sid in audio_ids.tolist():
        mel, _ = read_mel(mel_paths[int(sid)])
        if mel is not None:  # TCAE read it moments ago; a file gone since then simply gets no picture
            ids.append(int(sid))
            thumbs.append(mel_thumbnail(mel))
    if thumbs:
        write_mel_thumbs(Path(version_dir) / EXTRAS_DIR, np.array(ids, dtype=np.int64), np.stack(thumbs))
    done["mel_thumbs"] = len(thumbs)
    return done


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_tree(folder: Path) -> None:
    """Flush every file so the rename publishes data that survives a power cut, not empty files."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _seed_everything(seed: int, deterministic: bool) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _frontend_params() -> dict[str, Any]:
    """The mel front-end parameters, when the audio front-end module exists."""
    try:
        from mugle_core.melspec import MelParams
    except ImportError:
        return {}
    return {"mel": MelParams().as_dict()}


# -- fitting ------------------------------------------------------------------------------------------


def fit_fusion(
    fitter: Fitter, tcae_ids: np.ndarray, tcae_vecs: np.ndarray, options: TrainOptions, device: str,
    cel_seconds: float,
) -> dict[str, float]:
    """score_total's weights on the validation split; a CEL is retrained on the fitting split's Music2Vec
    vectors (the final CEL saw the validation playlists through its Music2Vec input) when it fits the budget."""
    from training.music2vec import l2_normalise

    audio = {"tcae": (tcae_ids, l2_normalise(tcae_vecs))} if len(tcae_ids) else {}
    trainer = fit_cel_trainer(tcae_ids, tcae_vecs, options, device) if len(tcae_ids) else None
    return fitter.fit_fusion(audio, trainer, cel_seconds, have_cooc=options.cooc_width > 0)


def fit_cel_trainer(
    tcae_ids: np.ndarray, tcae_vecs: np.ndarray, options: TrainOptions, device: str
) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """What trains the fit's CEL: from (Music2Vec ids, query vectors) of the fitting split to (ids,
    L2-normalised CEL vectors), with the version's TCAE and CEL options."""
    import tempfile

    from training import cel
    from training.music2vec import l2_normalise

    def cel_trainer(ids: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="mugle-fit-cel-") as tmp:
            out_ids, out_vecs, _ = cel.train_cel(ids, vecs, tcae_ids, tcae_vecs, options.cel, seed=options.seed,
                                                 device=device, models_dir=Path(tmp))
        return out_ids, l2_normalise(out_vecs)

    return cel_trainer


# -- command line -------------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``mugle train``'s options (the preprocessing ones included) to ``parser``.

    ``--data`` and ``--out`` are the CLI's own (``mugle_cli.main``); everything else is added here.
    """
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where torch trains (default auto)")
    parser.add_argument("--holdout", type=float, default=0.0,
                        help="fraction of training playlists withheld for `mugle evaluate` (default 0)")
    parser.add_argument("--deterministic", action="store_true",
                        help="identical embeddings for a seed on the CPU (one Word2Vec worker: slower)")
    parser.add_argument("--version", default=None, help="name of the new version folder (default: timestamp)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or final summary")
    d = TrainOptions()
    g = parser.add_argument_group("Music2Vec")
    w = d.music2vec
    g.add_argument("--w2v-epochs", type=int, default=w.epochs, help=f"default {w.epochs}")
    g.add_argument("--w2v-dim", type=int, default=w.dim,
                   help=f"embedding size, shared by TCAE and CEL (CEL compares them; default {w.dim})")
    g.add_argument("--w2v-window", type=int, default=w.window, help=f"default {w.window}")
    g.add_argument("--w2v-negative", type=int, default=w.negative, help=f"default {w.negative}")
    g.add_argument("--w2v-ns-exponent", type=float, default=w.ns_exponent,
                   help=f"negative-sampling exponent (default {w.ns_exponent})")
    g.add_argument("--w2v-sample", type=float, default=w.sample,
                   help="frequent-song down-sampling; 0 disables it (default 0)")
    g.add_argument("--w2v-workers", type=int, default=w.workers, help="threads; 0 = one per core")
    g = parser.add_argument_group("audio models")
    t = d.tcae
    g.add_argument("--tcae-steps", type=int, default=t.steps, help=f"TCAE optimiser steps (default {t.steps})")
    g.add_argument("--crop", type=int, default=t.crop,
                   help=f"TCAE training crop in pooled frames (default {t.crop}, i.e. {t.raw_crop} mel frames)")
    g.add_argument("--batch-size", type=int, default=t.batch_size, help=f"TCAE crops per step (default {t.batch_size})")
    g.add_argument("--loader-workers", type=int, default=t.workers,
                   help="DataLoader processes reading mels (default 0: in-process)")
    c = d.cel
    g.add_argument("--cel-epochs", type=int, default=c.epochs, help=f"CEL epochs (default {c.epochs})")
    g = parser.add_argument_group("indexes")
    g.add_argument("--flat-threshold", type=int, default=d.flat_threshold,
                   help=f"exact search below this many vectors, HNSW above (default {d.flat_threshold})")
    g.add_argument("--neighbours", type=int, default=d.neighbours,
                   help=f"precomputed neighbours per song and model, read by the service instead of searching; "
                        f"0 writes none (default {d.neighbours})")
    g.add_argument("--cooc-width", type=int, default=d.cooc_width,
                   help=f"co-occurrence candidates precomputed per song (the fourth source of score_total); "
                        f"0 writes none (default {d.cooc_width})")
    g.add_argument("--fused-width", type=int, default=d.fused_width,
                   help=f"score_total's pool fused once per song, read by the service for default requests; "
                        f"0 writes none (default {d.fused_width})")
    g.add_argument("--thumbs-limit", type=int, default=d.thumbs_limit,
                   help=f"precompute mel thumbnails up to this many songs with audio (default {d.thumbs_limit:,})")
    f = d.fit
    g = parser.add_argument_group("fitting the ranking (on a validation split of the training playlists)")
    g.add_argument("--fit-budget", type=float, default=f.budget_s,
                   help=f"seconds for fitting Music2Vec, the co-occurrence exponent and score_total's weights; "
                        f"0 fits nothing (default {f.budget_s:g})")
    g.add_argument("--fit-val-fraction", type=float, default=f.val_fraction,
                   help=f"share of training playlists set aside for validation (default {f.val_fraction})")
    g.add_argument("--no-fit-search", action="store_true",
                   help="keep the given Music2Vec options; fit only the exponent and the weights")
    g = parser.add_argument_group("playlist tags")
    g.add_argument("--tag-min-playlists", type=int, default=d.tag_min_playlists,
                   help=f"leave out tags on fewer training playlists (default {d.tag_min_playlists})")
    add_prep_arguments(parser)


def _tcae_options(args: argparse.Namespace) -> TCAEOptions:
    try:
        return TCAEOptions(
            steps=args.tcae_steps, crop=args.crop, batch_size=args.batch_size, workers=args.loader_workers,
            dim=args.w2v_dim,
            # Keep the fixed feature's share of the vector when the embedding size changes.
            blend_dim=TCAEOptions.blend_dim * args.w2v_dim // TCAEOptions.dim,
        )
    except ValueError as exc:
        raise SystemExit(
            f"TCAE options (--tcae-steps, --crop, --batch-size, --loader-workers, --w2v-dim): {exc}"
        ) from exc


def _cel_options(args: argparse.Namespace) -> CELOptions:
    if args.cel_epochs < 1:
        raise SystemExit(f"--cel-epochs: must be at least 1, got {args.cel_epochs}")
    return CELOptions(epochs=args.cel_epochs, dim=args.w2v_dim)


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    """Build :class:`TrainOptions` from parsed arguments; a bad value exits naming the flag."""
    options = TrainOptions(
        seed=args.seed,
        device=args.device,
        holdout=args.holdout,
        deterministic=args.deterministic,
        prep=prep_options_from_args(args),
        music2vec=Music2VecOptions(
            dim=args.w2v_dim,
            window=args.w2v_window,
            negative=args.w2v_negative,
            ns_exponent=args.w2v_ns_exponent,
            epochs=args.w2v_epochs,
            sample=args.w2v_sample,
            workers=args.w2v_workers,
        ),
        tcae=_tcae_options(args),
        cel=_cel_options(args),
        flat_threshold=args.flat_threshold,
        neighbours=args.neighbours,
        cooc_width=args.cooc_width,
        fused_width=args.fused_width,
        fit=FitOptions(budget_s=args.fit_budget, val_fraction=args.fit_val_fraction, search=not args.no_fit_search),
        thumbs_limit=args.thumbs_limit,
        tag_min_playlists=args.tag_min_playlists,
        version=args.version,
        progress=not args.no_progress,
    )
    try:
        options.validate()
    except ValueError as exc:
        raise SystemExit(f"--{str(exc).split('=')[0].replace('_', '-')}: {exc}") from exc
    return options
