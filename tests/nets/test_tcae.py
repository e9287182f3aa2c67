"""TCAE on a tiny generated catalog: learns melodies, saves and reloads, survives bad mel files."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mugle_nets.mels import (
    FRAMES,
    N_MELS,
    STATS_FILE,
    LoadReport,
    MelCropDataset,
    MelStats,
    compute_mel_stats,
    make_loader,
    mel_path,
    read_mel,
    usable_batch,
)
from mugle_nets.tcae import MODEL_FILE, TCAEEmbedder, TCAEOptions
from training.demo import generate
from training.tcae import train_tcae

torch.set_num_threads(1)

# Small but real: the full network, a few hundred steps, on one core.
FAST = TCAEOptions(steps=120, batch_size=32, hidden=48, eval_every=40, tiles=4, stats_sample=200)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate(root, songs=200, playlists=150, seed=0, progress=False, version_rate=0.3, overwrite=True)
    return root


@pytest.fixture(scope="module")
def truth(demo: Path) -> dict:
    return json.loads((demo / "demo_truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def paths(demo: Path, truth: dict) -> dict[int, Path]:
    missing = set(truth["missing_mels"])
    return {i: mel_path(demo, i) for i in range(len(truth["song_theme"])) if i not in missing}


@pytest.fixture(scope="module")
def trained(paths: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    models = tmp_path_factory.mktemp("models")
    ids, vecs, _ = train_tcae(paths, FAST, seed=0, device="cpu", models_dir=models)
    return ids, vecs, models


def version_ranks(ids: np.ndarray, vecs: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Rank (1-based, over the whole catalog) of the best other version, per versioned song."""
    row = {int(s): r for r, s in enumerate(ids)}
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    ranks = []
    for group in groups:
        for s in group:
            others = [row[o] for o in group if o != s and o in row]
            if s not in row or not others:
                continue
            order = np.argsort(-sims[row[s]])
            ranks.append(int(np.flatnonzero(np.isin(order, others))[0]) + 1)
    return np.array(ranks)


def test_versions_rank_near_the_top(trained: tuple, truth: dict) -> None:
    ids, vecs, _ = trained
    assert vecs.dtype == np.float32 and vecs.shape == (len(ids), 128)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    ranks = version_ranks(ids, vecs, truth["version_groups"])
    assert len(ranks) >= 20
    mrr = float(np.mean(1.0 / ranks))
    # Chance MRR over ~200 songs is about 0.03; a learned melody embedding is far above it.
    assert mrr > 0.5, f"MRR {mrr:.3f}, ranks {sorted(ranks.tolist())}"
    assert np.mean(ranks <= 5) > 0.7


def test_every_readable_song_is_embedded(trained: tuple, paths: dict[int, Path], truth: dict) -> None:
    ids, _, _ = trained
    assert np.all(np.diff(ids) > 0)
    assert set(ids.tolist()) == set(paths)
    assert not set(ids.tolist()) & set(truth["missing_mels"])


def test_checkpoint_reloads_to_the_same_embeddings(trained: tuple, paths: dict[int, Path]) -> None:
    ids, vecs, models = trained
    payload = torch.load(models / MODEL_FILE, map_location="cpu", weights_only=True)
    assert set(payload) >= {"state_dict", "config", "options"}
    embedder = TCAEEmbedder.load(models, device="cpu")
    chosen = ids[:12]
    raw = [np.load(paths[int(i)]).astype(np.float32) for i in chosen]
    again = embedder.embed(raw)
    np.testing.assert_allclose(again, vecs[:12], atol=1e-4)


def test_stats_are_stored_and_used(trained: tuple, paths: dict[int, Path]) -> None:
    _, _, models = trained
    stats = MelStats.load(models / STATS_FILE)
    assert stats.mean.shape == (N_MELS,) and stats.files > 0
    # The demo's mels are in dB, far from zero mean: the stored statistics must reflect that.
    sample = np.load(next(iter(paths.values()))).astype(np.float32)
    assert abs(float(stats.mean.mean()) - float(sample.mean())) < 15
    assert float(np.abs(stats.mean).max()) > 1.0
    embedder = TCAEEmbedder.load(models)
    base = embedder.embed([sample])
    # Changing the stored statistics changes the embedding: inference really standardises with them.
    embedder.stats = MelStats(mean=stats.mean + 5.0, std=stats.std * 3.0, files=stats.files)
    assert float((base @ embedder.embed([sample]).T)[0, 0]) < 0.999


def test_short_missing_and_broken_files(tmp_path: Path, trained: tuple) -> None:
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npy"
    np.save(good, rng.normal(size=(N_MELS, FRAMES)).astype(np.float32))
    short = tmp_path / "short.npy"
    np.save(short, rng.normal(size=(N_MELS, 300)).astype(np.float32))
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, rng.normal(size=(N_MELS, 5)).astype(np.float32))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, rng.normal(size=(40, FRAMES)).astype(np.float32))
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"\x93NUMPY not really")
    nan = tmp_path / "nan.npy"
    arr = rng.normal(size=(N_MELS, FRAMES)).astype(np.float32)
    arr[3, 10] = np.nan
    np.save(nan, arr)
    gone = tmp_path / "gone.npy"

    statuses = {p.stem: read_mel(p)[1] for p in (good, short, tiny, wrong, broken, nan, gone)}
    assert len(set(statuses.values())) == 6  # all but good/short map to distinct failure codes
    mel, _ = read_mel(short)
    assert mel is not None and mel.shape == (N_MELS, FRAMES)

    paths = [good, short, tiny, wrong, broken, nan, gone]
    stats = compute_mel_stats(paths, sample=10)
    assert stats.files == 2
    ds = MelCropDataset(paths, stats, crop=128)
    report = LoadReport()
    kept = []
    for batch in make_loader(ds, batch_size=3, shuffle=False):
        x, index = usable_batch(batch, report)
        assert x.shape[1:] == (N_MELS, 128)
        kept += index.tolist()
    assert kept == [0, 1]
    assert report.usable == 2 and report.skipped == 5

    # The inference path embeds a raw short clip and refuses a malformed one with a clear message.
    _, _, models = trained
    embedder = TCAEEmbedder.load(models)
    out = embedder.embed([np.load(short), np.load(tiny), np.load(good)])
    assert out.shape == (3, 128) and np.isfinite(out).all()
    with pytest.raises(ValueError, match=r"mels\[0\].*48"):
        embedder.embed([np.zeros((40, 100), np.float32)])

    # Training over a folder where most files are bad still trains on the rest and reports them.
    many = {i: p for i, p in enumerate([good, short, tiny, wrong, broken, nan, gone] * 3)}
    opts = TCAEOptions(steps=4, batch_size=4, hidden=16, eval_every=2, tiles=2, val_fraction=0.0)
    ids, vecs, _ = train_tcae(many, opts, seed=0, device="cpu")
    assert sorted(ids.tolist()) == [0, 1, 7, 8, 14, 15]
    assert vecs.shape == (6, 128)


def test_empty_or_unreadable_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mel_paths is empty"):
        train_tcae({}, FAST, device="cpu")
    with pytest.raises(ValueError, match="no readable mel"):
        train_tcae({1: tmp_path / "nope.npy"}, FAST, device="cpu")
    with pytest.raises(FileNotFoundError, match="tcae.pt"):
        TCAEEmbedder.load(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        TCAEOptions(batch_size=0)


def test_deterministic_for_a_seed(paths: dict[int, Path]) -> None:
    subset = dict(list(paths.items())[:60])
    opts = TCAEOptions(steps=6, batch_size=8, hidden=16, eval_every=3, tiles=2, stats_sample=30)
    a_ids, a, _ = train_tcae(subset, opts, seed=3, device="cpu")
    b_ids, b, _ = train_tcae(subset, opts, seed=3, device="cpu")
    _, c, _ = train_tcae(subset, opts, seed=4, device="cpu")
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fixed_feature_ignores_start_time_and_level() -> None:
    from mugle_nets.tcae import modulation_spectrum

    rng = np.random.default_rng(1)
    clip = torch.from_numpy(rng.normal(size=(1, N_MELS, FRAMES)).astype(np.float32))
    other = torch.from_numpy(rng.normal(size=(1, N_MELS, FRAMES)).astype(np.float32))
    shifted = torch.roll(clip, 200, dims=2) + torch.linspace(-2, 2, N_MELS)[None, :, None]
    base, moved, different = (modulation_spectrum(c) for c in (clip, shifted, other))
    assert torch.allclose(base, moved, atol=1e-3)
    assert not torch.allclose(base, different, atol=1e-2)


def test_augmentations_keep_shape_and_change_the_crop() -> None:
    from training.tcae import augment, view_pair

    opts = TCAEOptions(crop=64, pool=2, max_band_shift=3, stretch=0.15, mix=1.0, view_span=1.0)
    gen = torch.Generator().manual_seed(0)
    window = torch.randn(6, N_MELS, FRAMES, generator=gen)
    a, b = view_pair(window, opts, gen)
    assert a.shape == b.shape == (6, N_MELS, opts.raw_crop)
    # The two views of a song are cut at different places (or tempi): they are not the same frames.
    assert not torch.allclose(a, b)
    out = augment(a, opts, gen)
    assert out.shape == a.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, a)
    # With every augmentation off, a view of a window as long as the crop is the crop itself.
    plain = TCAEOptions(crop=64, pool=2, max_band_shift=0, timbre=0.0, noise=0.0, stretch=0.0, mix=0.0)
    exact = window[:, :, : plain.raw_crop]
    va, vb = view_pair(exact, plain, gen)
    torch.testing.assert_close(va, exact)
    torch.testing.assert_close(augment(va, plain, gen), exact)


def test_blend_whitens_the_fixed_feature_and_keeps_bands_apart() -> None:
    """The fixed part's map whitens the training songs' per-band modulation spectra, and unlike the
    learned part it tells a clip from the same clip moved up by whole bands."""
    from mugle_nets.tcae import ModulationBlend, modulation_spectrum

    gen = torch.Generator().manual_seed(0)
    # Songs with structure across bands: a few shared band-rhythm patterns mixed at random.
    patterns = torch.randn(6, N_MELS, 512, generator=gen)
    clips = torch.einsum("sk,kbt->sbt", torch.randn(80, 6, generator=gen), patterns)
    clips = clips + 0.3 * torch.randn(clips.shape, generator=gen)
    feats = modulation_spectrum(clips)
    blend = ModulationBlend(N_MELS, 8, 0.3)
    blend.fit(feats)
    white = ((feats - blend.mean) / blend.std) @ blend.proj
    cov = torch.cov(white.T.double())
    # The leading components are whitened (unit variance, uncorrelated); a floored one may be below 1.
    torch.testing.assert_close(cov[:4, :4], torch.eye(4, dtype=torch.float64), atol=1e-3, rtol=1e-3)
    assert torch.isfinite(blend.proj).all()
    out = blend(clips[:4])
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    moved = torch.roll(clips[:4], 5, dims=1)
    assert (F.cosine_similarity(blend(moved), out) < 0.99).all()
    # Fewer songs than components: the missing columns stay zero, nothing blows up.
    few = ModulationBlend(N_MELS, 8, 0.3)
    few.fit(feats[:5])
    assert torch.isfinite(few.proj).all() and not few.proj[:, 5:].any()


def _shift_bands(mels: list[np.ndarray], shift: int) -> list[np.ndarray]:
    """A change of key by whole mel bands, the edge band repeated."""
    idx = np.clip(np.arange(N_MELS) - shift, 0, N_MELS - 1)
    return [m[idx] for m in mels]


def test_untrained_spectrum_ignores_circular_shifts_in_time_and_band() -> None:
    from mugle_nets.tcae import TCAE

    model = TCAE(hidden=16, length=64).eval()
    x = torch.randn(2, N_MELS, 128, generator=torch.Generator().manual_seed(0))
    base = model.spectrum(x, model.features(x))
    # The correction starts at zero, so the spectrum is the fixed transform: invariant to both rolls
    # (a roll by whole pooled frames, i.e. an even number of dataset frames).
    moved = torch.roll(torch.roll(x, 6, dims=2), 5, dims=1)
    torch.testing.assert_close(model.spectrum(moved, model.features(moved)), base, atol=1e-4, rtol=1e-4)
    other = torch.randn(2, N_MELS, 128, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(model.spectrum(other, model.features(other)), base, atol=1e-2)


def test_rate_groups_average_bins_and_line_up_across_lengths() -> None:
    from mugle_nets.tcae import rate_groups

    for frames in (64, 256, 938):
        m = rate_groups(frames, 31.25, 32)
        assert m.shape == (frames // 2 + 1, 33)
        torch.testing.assert_close(m.sum(0), torch.ones(33))
    # A steady modulation at 2 Hz lands in the same group whatever the crop length.
    peaks = []
    for frames in (256, 938):
        t = torch.arange(frames) / 31.25
        mag = torch.fft.rfft(torch.cos(2 * math.pi * 2.0 * t)).abs()
        peaks.append(int(torch.argmax(mag @ rate_groups(frames, 31.25, 32))))
    assert peaks[0] == peaks[1]


def test_key_change_is_tolerated_before_and_after_training(paths: dict[int, Path]) -> None:
    """A song moved up two mel bands is still found among the catalog, untrained and after training;
    and training lowers the loss on its fixed validation views (the encoder learns something)."""
    subset = dict(list(paths.items())[:80])
    mels = [np.load(p).astype(np.float32) for p in subset.values()]
    moved = _shift_bands(mels, 2)

    def found(steps: int, lr: float) -> tuple[float, list[dict]]:
        opts = TCAEOptions(steps=steps, batch_size=16, hidden=32, eval_every=10, tiles=4, stats_sample=40,
                           val_fraction=0.25, lr=lr)
        with tempfile.TemporaryDirectory() as tmp:
            _, _, info = train_tcae(subset, opts, seed=0, device="cpu", models_dir=Path(tmp))
            history = list(info["history"])
            embedder = TCAEEmbedder.load(Path(tmp))
        base, shifted = embedder.embed(mels), embedder.embed(moved)
        return float(np.mean(np.argmax(shifted @ base.T, axis=1) == np.arange(len(mels)))), history

    before, _ = found(1, 1e-9)
    after, history = found(40, 1e-3)
    assert before > 0.8 and after > 0.8, (before, after)
    assert history[-1]["val_loss"] < history[0]["val_loss"], history
