"""The model contract (:class:`training.models.EmbeddingModel`), checked the same way for every model.

:class:`EmbeddingModelContract` is a mixin of tests every model must pass; each model's test class only
says how to build the model and which earlier results it needs. The data is the session's tiny demo
dataset (tests/conftest.py), read and preprocessed as the pipeline does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("torch", reason="the audio models need torch")

from mugle_core.names import MODEL_NAMES  # noqa: E402
from mugle_nets.cel import CELOptions  # noqa: E402
from mugle_nets.tcae import TCAEOptions  # noqa: E402
from training.melon import read_dataset  # noqa: E402
from training.models import CEL, TCAE, EmbeddingModel, ModelResult, Music2Vec, TrainingData  # noqa: E402
from training.music2vec import Music2VecOptions  # noqa: E402
from training.pipeline import canonical_mels, find_mels  # noqa: E402
from training.preprocess import PrepOptions, prepare  # noqa: E402

DIM = 32
SEED = 4


def small_models() -> dict[str, EmbeddingModel]:
    return {
        "music2vec": Music2Vec(Music2VecOptions(dim=DIM, epochs=2, workers=1)),
        "tcae": TCAE(TCAEOptions(steps=6, batch_size=8, eval_every=3, hidden=16, invariance_weight=0.0,
                                 stats_sample=64, dim=DIM, blend_dim=16)),
        "cel": CEL(CELOptions(epochs=2, dim=DIM)),
    }


@pytest.fixture(scope="module")
def prepared_data(tiny_version: dict) -> tuple[Any, dict[int, Path]]:
    data = tiny_version["data"]
    prepared = prepare(read_dataset(data, progress=False), PrepOptions())
    return prepared, canonical_mels(prepared.aliases, find_mels(data))


def training_data(prepared_data: tuple[Any, dict[int, Path]], folder: Path) -> TrainingData:
    prepared, mel_paths = prepared_data
    (folder / "models").mkdir(parents=True)
    return TrainingData(prepared, mel_paths, folder / "models", folder, device="cpu", deterministic=True)


class EmbeddingModelContract:
    """Tests every :class:`EmbeddingModel` passes. Subclasses set ``name`` (and ``needs``, the models
    whose results must be present before ``fit``)."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()

    # A class method: a class-scoped fixture runs once per class, not per test instance.
    @pytest.fixture(scope="class")
    @classmethod
    def fitted(
        cls, prepared_data: tuple[Any, dict[int, Path]], tmp_path_factory: pytest.TempPathFactory
    ) -> tuple[TrainingData, ModelResult, ModelResult]:
        """The model fitted twice with the same seed on fresh folders: (data of the first run, both results)."""
        runs = []
        for _ in range(2):
            data = training_data(prepared_data, tmp_path_factory.mktemp(cls.name))
            models = small_models()
            for earlier in cls.needs:
                data.results[earlier] = models[earlier].fit(data, SEED)
            runs.append((data, models[cls.name].fit(data, SEED)))
        return runs[0][0], runs[0][1], runs[1][1]

    def test_name_is_a_known_model(self) -> None:
        assert small_models()[self.name].name == self.name and self.name in MODEL_NAMES

    def test_vectors_are_normalised_rows_of_ascending_ids(self, fitted: tuple) -> None:
        _, result, _ = fitted
        ids, vectors = result.ids, result.vectors
        assert ids.dtype == np.int64 and len(ids) > 0
        assert np.all(np.diff(ids) > 0), "ids ascend with no repeat"
        assert vectors.dtype == np.float32 and vectors.shape == (len(ids), DIM)
        assert np.all(np.isfinite(vectors))
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        if result.index_vectors is not None:
            assert result.index_vectors.shape == vectors.shape and result.index_vectors.dtype == np.float32

    def test_saved_files_exist_and_info_is_json(self, fitted: tuple) -> None:
        data, result, _ = fitted
        assert result.files, "a model saves what it needs to be reloaded or retrained"
        for name in result.files:
            path = data.models_dir / name
            assert path.is_file() and path.stat().st_size > 0, path
        assert "history" not in result.info  # per-step curves stay in the model's own files
        json.dumps(result.info)

    def test_same_seed_same_vectors(self, fitted: tuple) -> None:
        _, first, second = fitted
        np.testing.assert_array_equal(first.ids, second.ids)
        np.testing.assert_array_equal(first.vectors, second.vectors)


class TestMusic2Vec(EmbeddingModelContract):
    name = "music2vec"

    def test_query_and_index_spaces_differ(self, fitted: tuple) -> None:
        _, result, _ = fitted
        assert result.index_vectors is not None and not np.allclose(result.index_vectors, result.vectors)


class TestTCAE(EmbeddingModelContract):
    name = "tcae"

    def test_no_mels_gives_an_empty_model(self, prepared_data: tuple, tmp_path: Path) -> None:
        prepared, _ = prepared_data
        data = training_data((prepared, {}), tmp_path)
        result = small_models()["tcae"].fit(data, SEED)
        assert result.ids.shape == (0,) and result.vectors.shape == (0, DIM) and result.info == {"skipped": "no mels"}


class TestCEL(EmbeddingModelContract):
    name = "cel"
    needs = ("music2vec", "tcae")

    def test_needs_both_inputs_fitted_first(self, prepared_data: tuple, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="music2vec, tcae"):
            small_models()["cel"].fit(training_data(prepared_data, tmp_path), SEED)

    def test_covers_every_song_of_either_input(self, fitted: tuple) -> None:
        data, result, _ = fitted
        union = np.union1d(data.results["music2vec"].ids, data.results["tcae"].ids)
        np.testing.assert_array_equal(result.ids, union)
