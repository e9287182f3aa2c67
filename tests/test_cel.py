"""CEL fusion: joint neighbours agree with both inputs, cold-start songs get vectors, no collapse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import training.cel as cel_module
from mugle_nets.cel import MODEL_FILE, CELEmbedder, CELOptions
from training.cel import train_cel

torch.set_num_threads(1)

N = 1200
CLUSTERS = 20
FAST = CELOptions(epochs=25, batch_size=128)


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    """Two independent planted structures: playlist "themes" for Music2Vec, "sounds" for TCAE.

    Songs 0..99 have audio only (cold start), songs 1100..1199 playlists only.
    """
    rng = np.random.default_rng(0)
    theme = rng.integers(0, CLUSTERS, N)
    sound = rng.integers(0, CLUSTERS, N)
    w_centres = rng.normal(size=(CLUSTERS, 128))
    t_centres = rng.normal(size=(CLUSTERS, 128))
    w = (w_centres[theme] + 0.8 * rng.normal(size=(N, 128))).astype(np.float32)
    t = np.tanh(t_centres[sound] + 0.8 * rng.normal(size=(N, 128))).astype(np.float32)
    ids = np.arange(N, dtype=np.int64) * 3 + 7  # ids are not row numbers
    return {"ids": ids, "theme": theme, "sound": sound, "w": w, "t": t,
            "w_rows": np.arange(100, N), "t_rows": np.arange(0, 1100)}


@pytest.fixture(scope="module")
def trained(inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    models = tmp_path_factory.mktemp("models")
    wr, tr = inputs["w_rows"], inputs["t_rows"]
    ids, vecs = train_cel(inputs["ids"][wr], inputs["w"][wr], inputs["ids"][tr], inputs["t"][tr],
                          FAST, seed=0, device="cpu", models_dir=models)
    return ids, vecs, models, dict(cel_module.LAST_INFO)


def neighbours(x: np.ndarray, k: int = 10) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def test_union_of_songs_gets_normalised_vectors(trained: tuple, inputs: dict) -> None:
    ids, vecs, _, info = trained
    np.testing.assert_array_equal(ids, inputs["ids"])  # union, ascending
    assert vecs.dtype == np.float32 and vecs.shape == (N, 128)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert info["songs"] == {"total": N, "both": 1000, "music2vec_only": 100, "tcae_only": 100, "val": 120}


def test_neighbours_agree_with_both_inputs(trained: tuple, inputs: dict) -> None:
    _, vecs, _, _ = trained
    both = np.arange(100, 1100)
    joint = neighbours(vecs[both])
    chance = 10 / len(both)
    assert overlap(joint, neighbours(inputs["w"][both])) > 10 * chance
    assert overlap(joint, neighbours(inputs["t"][both])) > 10 * chance
    # Neighbours share the planted structure of each input far more than the 1/20 of chance.
    assert np.mean(inputs["theme"][both][joint] == inputs["theme"][both][:, None]) > 0.3
    assert np.mean(inputs["sound"][both][joint] == inputs["sound"][both][:, None]) > 0.15


def test_no_collapse(trained: tuple) -> None:
    _, vecs, _, info = trained
    assert info["mean_pairwise_cosine"] < 0.3
    sims = vecs @ vecs.T
    assert float(np.median(sims[np.triu_indices(len(vecs), 1)])) < 0.3


def test_cold_start_songs_land_near_their_sound(trained: tuple, inputs: dict) -> None:
    ids, vecs, models, _ = trained
    cold = np.arange(0, 100)  # audio only
    assert np.isfinite(vecs[cold]).all()
    embedder = CELEmbedder.load(models)
    again = embedder.embed(None, inputs["t"][cold])
    np.testing.assert_allclose(again, vecs[cold], atol=1e-5)
    # Among all songs, a cold song's nearest joint vectors share its sound.
    sims = vecs[cold] @ vecs.T
    sims[np.arange(100), cold] = -np.inf
    top = np.argsort(-sims, axis=1)[:, :10]
    assert np.mean(inputs["sound"][top] == inputs["sound"][cold][:, None]) > 0.3


def test_reload_and_missing_rows(trained: tuple, inputs: dict) -> None:
    ids, vecs, models, _ = trained
    payload = torch.load(Path(models) / MODEL_FILE, map_location="cpu", weights_only=True)
    assert set(payload) >= {"state_dict", "config", "options"}
    embedder = CELEmbedder.load(models)
    rows = np.arange(100, 110)
    np.testing.assert_allclose(embedder.embed(inputs["w"][rows], inputs["t"][rows]), vecs[rows], atol=1e-5)
    # A NaN row marks one song without a Music2Vec vector, like passing None for that song alone.
    w = inputs["w"][rows].copy()
    w[0] = np.nan
    mixed = embedder.embed(w, inputs["t"][rows])
    np.testing.assert_allclose(mixed[0], embedder.embed(None, inputs["t"][rows[:1]])[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1:], vecs[rows[1:]], atol=1e-5)


def test_bad_inputs_raise_clear_errors(trained: tuple, inputs: dict, tmp_path: Path) -> None:
    _, _, models, _ = trained
    embedder = CELEmbedder.load(models)
    with pytest.raises(ValueError, match="both None"):
        embedder.embed(None, None)
    with pytest.raises(ValueError, match=r"tcae must be \(n, 128\)"):
        embedder.embed(None, np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match="row counts"):
        embedder.embed(inputs["w"][:3], inputs["t"][:2])
    with pytest.raises(ValueError, match="w2v_vecs must be"):
        train_cel(np.arange(3), np.zeros((4, 8)), np.arange(3), np.zeros((3, 8)), FAST, device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        train_cel(np.arange(2), np.full((2, 8), np.nan), np.arange(2), np.ones((2, 8)), FAST, device="cpu")
    with pytest.raises(FileNotFoundError, match="cel.pt"):
        CELEmbedder.load(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read CEL checkpoint"):
        CELEmbedder.load(tmp_path)


def test_deterministic_for_a_seed(inputs: dict) -> None:
    opts = CELOptions(epochs=2, batch_size=64)
    rows = np.arange(300)
    args = (inputs["ids"][rows], inputs["w"][rows], inputs["ids"][rows], inputs["t"][rows], opts)
    _, a = train_cel(*args, seed=5, device="cpu")
    _, b = train_cel(*args, seed=5, device="cpu")
    _, c = train_cel(*args, seed=6, device="cpu")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
