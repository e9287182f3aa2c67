"""One training contract for Mugle's three embedding models (Music2Vec, TCAE, CEL).

Each model is an :class:`EmbeddingModel`: it is built from its own options dataclass, and
``fit(data, seed)`` trains it on a :class:`TrainingData` and returns a :class:`ModelResult` (song ids,
query vectors, index vectors where they differ, the files it saved, and what the manifest records). The
pipeline only loops over :func:`build_models`; what is particular to a model (Music2Vec's IN-OUT pair of
spaces, TCAE's empty model for a dataset without mels, CEL's use of the two others' vectors) lives in its
class here, next to the call into its training module.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mugle_nets.cel import CELOptions
from mugle_nets.tcae import TCAEOptions
from training.music2vec import Music2VecOptions, train_music2vec
from training.preprocess import Prepared

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """What every model may train on, and where it saves its files.

    Attributes
    ----------
    prepared : the preprocessed dataset (playlists, the songs Music2Vec keeps, ...).
    mel_paths : canonical song id -> mel file, for the audio models.
    models_dir : the version's ``models/`` folder; each model writes its own files there.
    work_dir : scratch space inside the staging version (removed with it on failure).
    device : the torch device, already resolved (``cpu``, ``cuda``...).
    deterministic : identical vectors for a seed on the CPU, for every model.
    progress : show progress bars.
    results : results of the models fitted before, by name (CEL reads Music2Vec's and TCAE's).
    """

    prepared: Prepared
    mel_paths: dict[int, Path]
    models_dir: Path
    work_dir: Path
    device: str = "cpu"
    deterministic: bool = False
    progress: bool = False
    results: dict[str, ModelResult] = field(default_factory=dict)


@dataclass
class ModelResult:
    """A trained model's vectors and what the version records about it.

    Attributes
    ----------
    ids : int64 (n,), ascending song ids that got a vector.
    vectors : float32 (n, dim), L2-normalised query vectors.
    index_vectors : the vectors the index holds when they differ from the query vectors (Music2Vec's
        output vectors); None means the index holds ``vectors``.
    files : the files the model saved, relative to ``models_dir``.
    info : JSON-ready details for the manifest's ``params`` of this model.
    """

    ids: np.ndarray
    vectors: np.ndarray
    index_vectors: np.ndarray | None = None
    files: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class EmbeddingModel(ABC):
    """A model that turns the training data into one vector per song.

    Subclasses set ``name`` (one of :data:`mugle_core.names.MODEL_NAMES`), take their options in the
    constructor and implement :meth:`fit`.
    """

    name: ClassVar[str]

    @abstractmethod
    def fit(self, data: TrainingData, seed: int) -> ModelResult:
        """Train on ``data`` with ``seed``, save the model's files under ``data.models_dir``, return vectors."""


def _saved(models_dir: Path, before: set[Path]) -> list[str]:
    """Files that appeared under ``models_dir`` since ``before`` was listed, relative and sorted."""
    return sorted(str(p.relative_to(models_dir)) for p in set(models_dir.rglob("*")) - before if p.is_file())


def _listing(models_dir: Path) -> set[Path]:
    return set(models_dir.rglob("*")) if models_dir.is_dir() else set()


class Music2Vec(EmbeddingModel):
    """Word2Vec over the training playlists (:mod:`training.music2vec`); IN-OUT: query and index differ."""

    name = "music2vec"

    def __init__(self, options: Music2VecOptions | None = None) -> None:
        self.options = options or Music2VecOptions()

    def fit(self, data: TrainingData, seed: int) -> ModelResult:
        options = replace(self.options, deterministic=self.options.deterministic or data.deterministic)
        before = _listing(data.models_dir)
        w2v = train_music2vec(
            data.prepared.train_playlists, data.prepared.w2v_songs, options, seed,
            models_dir=data.models_dir, work_dir=data.work_dir,
        )
        info = {k: v for k, v in w2v.stats.items() if k != "params"}
        info.update(w2v.stats["params"])
        info["score"] = "IN-OUT: query = input vectors, index = output vectors"
        return ModelResult(w2v.ids, w2v.query, w2v.key, _saved(data.models_dir, before), info)


class TCAE(EmbeddingModel):
    """The audio autoencoder on the songs' mels (:mod:`training.tcae`).

    With no mel at all (a metadata-only dataset) the model is empty rather than an error: songs stay
    servable through Music2Vec.
    """

    name = "tcae"

    def __init__(self, options: TCAEOptions | None = None) -> None:
        self.options = options or TCAEOptions()

    def fit(self, data: TrainingData, seed: int) -> ModelResult:
        if not data.mel_paths:
            logger.warning("tcae: no song has a mel file; the tcae model will be empty")
            dim = self.options.dim
            return ModelResult(
                np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32), info={"skipped": "no mels"}
            )
        from training import tcae  # torch: imported only when an audio model trains

        before = _listing(data.models_dir)
        ids, vectors, run = tcae.train_tcae(
            data.mel_paths, self.options, seed=seed, device=data.device, models_dir=data.models_dir,
            progress=data.progress,
        )
        info = {k: v for k, v in run.items() if k != "history"}
        best = info.get("best_val_mse")
        info["best_val_mse"] = float(best) if best is not None and np.isfinite(best) else None
        return ModelResult(ids, vectors, files=_saved(data.models_dir, before), info=info)


class CEL(EmbeddingModel):
    """The fusion network over Music2Vec's and TCAE's vectors (:mod:`training.cel`): fitted after both."""

    name = "cel"
    inputs: ClassVar[tuple[str, str]] = ("music2vec", "tcae")

    def __init__(self, options: CELOptions | None = None) -> None:
        self.options = options or CELOptions()

    def fit(self, data: TrainingData, seed: int) -> ModelResult:
        missing = [m for m in self.inputs if m not in data.results]
        if missing:
            raise ValueError(f"cel: fit {', '.join(missing)} first (CEL trains on their vectors)")
        from training import cel

        w2v, tcae = (data.results[m] for m in self.inputs)
        before = _listing(data.models_dir)
        ids, vectors, run = cel.train_cel(
            w2v.ids, w2v.vectors, tcae.ids, tcae.vectors, self.options, seed=seed, device=data.device,
            models_dir=data.models_dir,
        )
        info = {k: v for k, v in run.items() if k != "history"}
        return ModelResult(ids, vectors, files=_saved(data.models_dir, before), info=info)


def build_models(
    music2vec: Music2VecOptions, tcae: TCAEOptions, cel: CELOptions
) -> list[EmbeddingModel]:
    """The three models in training order (CEL last: it reads the other two's vectors)."""
    return [Music2Vec(music2vec), TCAE(tcae), CEL(cel)]
