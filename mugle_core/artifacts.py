"""The artifact layout: the one contract between ``training`` (writes) and ``app`` (reads).

A versions folder looks like this::

    artifacts/
      current                  text file holding the served version's folder name
      20261125-172800-ab12cd/  one complete version
        manifest.json          see :class:`Manifest`
        catalog.npz            see :mod:`mugle_core.catalog` (song metadata + id aliases)
        music2vec.index        FAISS inner-product index over the model's *key* vectors
        music2vec.ids.npy      int64 row -> song_id of that index (sorted ascending)
        music2vec.query.npy    float32 (rows, dim) L2-normalised *query* vectors, row-aligned with ids
        music2vec.knn.npy      optional: int32 (rows, K) each query row's nearest index rows, best first
        music2vec.knn_sims.npy optional: float32 (rows, K) their similarities (see :func:`knn_file`)
        tcae.*  cel.*          same three files per model
        cooc.ids.npy           optional: int64 songs that occur in training playlists (ascending)
        cooc.knn.npy           their top co-occurring songs (rows of cooc.ids), best first, -1 padded
        cooc.knn_sims.npy      the matching co-occurrence scores (see :data:`COOC`)
        fused.knn.npy          optional: int32 (songs, W) each catalog song's score_total pool, fused once
        fused.knn_sims.npy     float64 (songs, W) the pool's scores; fused.ranks.npy its sources' ranks
                               (see :data:`FUSED`)
        models/                what is needed to embed new audio or retrain (torch state dicts, mel stats)
        metrics.json           offline evaluation, when it was run
        tags.npz               optional: what training learned about the playlists' tags (see :func:`tags_file`)
        extras/                optional precomputed pictures (mel thumbnails, 2-D maps)

Query vectors and key vectors differ only for Music2Vec, where the query is the Word2Vec input vector
and the index holds output vectors (the "IN-OUT" score); for TCAE and CEL they are the same vectors.

A version is written to ``.tmp-<name>`` and renamed into place only when complete; ``current`` is
switched last with an atomic ``os.replace`` of a small text file, so a crash at any point leaves the
served version untouched. This module imports nothing heavier than numpy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mugle_core.names import MODEL_NAMES as MODEL_NAMES  # re-exported: the manifest lists these models

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The co-occurrence candidate source: precomputed lists only, no vectors or index. Described by the
# manifest's ``ranking["cooc"]`` (files, width, popularity exponent), not by ``models``.
COOC = "cooc"
# score_total's pool of every catalog song, fused at training time from the lists above with the version's
# fitted weights (``training.fused``), row-aligned with the catalog: a request with default parameters reads
# one row instead of fusing four lists. Described by the manifest's ``ranking["fused"]`` (files, width,
# depth, sources, weights); optional, a version without it is fused per request.
FUSED = "fused"
CURRENT = "current"
MANIFEST = "manifest.json"
CATALOG = "catalog.npz"
METRICS = "metrics.json"
# Per-query figures of the same evaluation (held-out query by query), for pooling or re-testing elsewhere.
PER_QUERY = "per_query.npz"
MODELS_DIR = "models"
EXTRAS_DIR = "extras"
TMP_PREFIX = ".tmp-"
TAGS = "tags.npz"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ArtifactError(RuntimeError):
    """Artifacts are missing, incomplete or inconsistent; the message names the problem."""


def index_file(model: str) -> str:
    return f"{model}.index"


def ids_file(model: str) -> str:
    return f"{model}.ids.npy"


def query_file(model: str) -> str:
    return f"{model}.query.npy"


def knn_file(model: str) -> str:
    """Precomputed neighbour lists: row ``i`` holds the index's answer to query vector ``i``.

    Written by training next to the index (listed in the model's manifest ``files``) so that a request
    for a catalog song reads one row instead of searching; padded with -1 where the index returned fewer
    than K rows, and all -1 for a query vector of norm 0. The service falls back to searching the index
    when the file is absent or a list runs out.
    """
    return f"{model}.knn.npy"


def knn_sims_file(model: str) -> str:
    """Similarities row-aligned with :func:`knn_file` (0 where the row is padded)."""
    return f"{model}.knn_sims.npy"


def ranks_file(name: str) -> str:
    """uint8 (rows, 4 W) ranks row-aligned with a fused list (:data:`FUSED`): for its ``i``-th entry, bytes
    ``4 i .. 4 i + 3`` are the entry's 1-based rank in each source's candidate list, in the order the
    manifest's ``ranking.fused.sources`` names them; 0 where a source did not list it."""
    return f"{name}.ranks.npy"


def tags_file() -> str:
    """Playlist tags ("situations and moods") learned at training time; listed in the manifest's ``tags``.

    Arrays (no pickle): ``name_blob``/``name_offsets`` the tags' shown names (packed UTF-8, see
    :func:`app.catalog.pack_strings`), ``playlists`` int32 training playlists per tag, ``songs_offsets`` /
    ``songs_ids`` / ``songs_counts`` per tag its songs by how many of its playlists hold them (most first,
    CSR layout), and ``vector_<model>`` float32 (tags, dim) per model a query vector of the tag (L2-normalised;
    all zeros where the model has no vector for any of its songs). Read and written by :mod:`app.tags`.
    """
    return TAGS


def model_files(model: str) -> list[str]:
    """The files every model must have in a version folder."""
    return [index_file(model), ids_file(model), query_file(model)]


@dataclass
class ModelEntry:
    """What the manifest records per model."""

    count: int
    dim: int
    files: list[str]
    index_type: str = "flat"
    recall_at_10: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """``manifest.json`` of one version."""

    version: str
    created_at: str
    dataset_fingerprint: str
    songs: int
    models: dict[str, ModelEntry]
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    holdout_playlist_ids: list[int] = field(default_factory=list)
    # What training fitted for ranking on its validation split (fusion weights, the co-occurrence lists'
    # files and exponent, the validation figures); empty for versions from before it existed.
    ranking: dict[str, Any] = field(default_factory=dict)
    # Optional parts beside the models: {"files": [...], ...facts}; absent in versions written before them.
    tags: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        data = {
            "schema_version": self.schema_version,
            "version": self.version,
            "created_at": self.created_at,
            "dataset_fingerprint": self.dataset_fingerprint,
            "songs": self.songs,
            "models": {name: vars(entry) for name, entry in self.models.items()},
            "params": self.params,
            "timings": self.timings,
            "counts": self.counts,
            "holdout_playlist_ids": self.holdout_playlist_ids,
            "ranking": self.ranking,
            "tags": self.tags,
        }
        return json.dumps(data, ensure_ascii=False, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MANIFEST) -> Manifest:
        try:
            schema = int(data["schema_version"])
            if schema != SCHEMA_VERSION:
                raise ArtifactError(f"{source}: schema_version {schema} is not supported (expected {SCHEMA_VERSION})")
            models = {}
            for name, entry in dict(data["models"]).items():
                models[name] = ModelEntry(
                    count=int(entry["count"]),
                    dim=int(entry["dim"]),
                    files=[str(f) for f in entry["files"]],
                    index_type=str(entry.get("index_type", "flat")),
                    recall_at_10=entry.get("recall_at_10"),
                    timings=dict(entry.get("timings", {})),
                    params=dict(entry.get("params", {})),
                )
            return cls(
                version=str(data["version"]),
                created_at=str(data["created_at"]),
                dataset_fingerprint=str(data["dataset_fingerprint"]),
                songs=int(data["songs"]),
                models=models,
                params=dict(data.get("params", {})),
                timings=dict(data.get("timings", {})),
                counts=dict(data.get("counts", {})),
                holdout_playlist_ids=[int(i) for i in data.get("holdout_playlist_ids", [])],
                ranking=dict(data.get("ranking") or {}),
                tags=dict(data.get("tags") or {}),
                schema_version=schema,
            )
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from exc


def new_version_name(now: datetime | None = None) -> str:
    """A sortable, unique folder name such as ``20261125-172800-3f9a1c``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(version_dir: Path) -> Manifest:
    path = Path(version_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: manifest.json is missing (incomplete version?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: cannot read manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: manifest must be a JSON object")
    return Manifest.from_dict(data, source=str(path))


def check_version_files(version_dir: Path, manifest: Manifest) -> None:
    """Raise :class:`ArtifactError` naming the first file the manifest promises but the folder lacks."""
    version_dir = Path(version_dir)
    if not (version_dir / CATALOG).is_file():
        raise ArtifactError(f"{version_dir / CATALOG}: catalog is missing")
    for name, entry in manifest.models.items():
        if name not in MODEL_NAMES:
            raise ArtifactError(f"{version_dir / MANIFEST}: unknown model {name!r} (known: {MODEL_NAMES})")
        for fname in entry.files:
            if not (version_dir / fname).is_file():
                raise ArtifactError(f"{version_dir / fname}: listed in manifest for model {name!r} but missing")
    cooc = manifest.ranking.get(COOC) or {}
    for fname in cooc.get("files", []):
        if not (version_dir / str(fname)).is_file():
            raise ArtifactError(f"{version_dir / str(fname)}: listed in manifest ranking.cooc but missing")
    fused = manifest.ranking.get(FUSED)
    for fname in fused.get("files", []) if isinstance(fused, dict) else []:
        if not (version_dir / str(fname)).is_file():
            raise ArtifactError(f"{version_dir / str(fname)}: listed in manifest ranking.fused but missing")
    for fname in manifest.tags.get("files", []):
        if not (version_dir / str(fname)).is_file():
            raise ArtifactError(f"{version_dir / str(fname)}: listed in manifest under 'tags' but missing")


# -- the ``current`` pointer -------------------------------------------------------------------------


def read_current(root: Path) -> str | None:
    """The version name ``current`` points to, or None when there is none yet."""
    pointer = Path(root) / CURRENT
    if pointer.is_symlink():
        return Path(os.readlink(pointer)).name
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        return name or None
    return None


def resolve_current(root: Path) -> Path:
    """The folder of the served version; :class:`ArtifactError` when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{root}: artifacts folder does not exist (run `mugle train`)")
    name = read_current(root)
    if name is None:
        raise ArtifactError(f"{root / CURRENT}: no current version (run `mugle train`)")
    path = root / name
    if not path.is_dir():
        raise ArtifactError(f"{root / CURRENT}: points to {name!r}, which does not exist")
    return path


def set_current(root: Path, version: str) -> None:
    """Point ``current`` at ``version`` atomically (write a temp file, then ``os.replace``)."""
    root = Path(root)
    if not _VERSION_RE.match(version) or not (root / version).is_dir():
        raise ArtifactError(f"{root / version}: no such version")
    # Never point at something unreadable or incomplete: a restart would then refuse to start.
    check_version_files(root / version, read_manifest(root / version))
    fd, tmp = tempfile.mkstemp(prefix=".current-", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        pointer = root / CURRENT
        if pointer.is_symlink() or pointer.is_dir():
            pointer.unlink()
        os.replace(tmp, pointer)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_versions(root: Path) -> list[str]:
    """Complete versions (folders with a manifest), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
    )


@contextmanager
def staging_version(root: Path, version: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success rename it to ``root/version``.

    On any exception (Ctrl-C included) the temporary folder is removed and nothing else changes.
    ``current`` is not touched here: call :func:`set_current` after the rename.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    version = version or new_version_name()
    if not _VERSION_RE.match(version):
        raise ArtifactError(f"invalid version name {version!r}")
    final = root / version
    if final.exists():
        raise ArtifactError(f"{final}: version already exists")
    tmp = root / f"{TMP_PREFIX}{version}"
    tmp.mkdir()
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prune_versions(root: Path, keep: int) -> list[str]:
    """Delete old versions, keeping ``current`` and the ``keep`` newest others. Returns what was removed."""
    root = Path(root)
    current = read_current(root)
    others = [v for v in list_versions(root) if v != current]
    doomed = others[: max(0, len(others) - keep)]
    for name in doomed:
        shutil.rmtree(root / name)
    return doomed
