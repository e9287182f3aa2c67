"""`mugle train` end to end on a tiny generated demo catalog, with the real gensim, torch and FAISS."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from app.engine import Engine
from mugle_core.artifacts import (
    CATALOG,
    check_version_files,
    ids_file,
    index_file,
    knn_file,
    list_versions,
    query_file,
    read_current,
    read_manifest,
)
from mugle_core.catalog import Catalog
from mugle_nets.cel import CELOptions
from mugle_nets.tcae import TCAEOptions
from training import pipeline
from training.demo import generate
from training.melon import MelonFormatError
from training.pipeline import TrainOptions, add_train_arguments, choose_holdout, options_from_args, train

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def tiny_options(**kw) -> TrainOptions:
    """Few steps and small models: the point is the pipeline, not the quality of TCAE."""
    base = dict(
        seed=5,
        device="cpu",
        deterministic=True,
        progress=False,
        w2v_dim=32,
        w2v_epochs=10,
        tcae=TCAEOptions(steps=6, batch_size=8, eval_every=3, hidden=16, invariance_weight=0.0, stats_sample=64,
                         dim=32, blend_dim=16),
        cel=CELOptions(epochs=5, dim=32),
    )
    base.update(kw)
    return TrainOptions(**base)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "demo"
    generate(root, songs=240, playlists=400, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("artifacts")
    version_dir = train(demo, out, tiny_options(holdout=0.2, version="v1"))
    return out, version_dir


def train_playlists(demo: Path) -> list[dict]:
    return json.loads((demo / "train.json").read_text(encoding="utf-8"))


def test_version_is_complete_and_current(trained):
    out, version_dir = trained
    assert version_dir == out / "v1"
    assert read_current(out) == "v1"
    manifest = read_manifest(version_dir)
    check_version_files(version_dir, manifest)
    assert set(manifest.models) == {"music2vec", "tcae", "cel"}
    for name, entry in manifest.models.items():
        assert entry.count > 0, name
        assert entry.recall_at_10 is not None and entry.recall_at_10 >= 0.95
        assert entry.timings["train_s"] >= 0
    assert manifest.models["music2vec"].dim == 32
    assert manifest.models["music2vec"].params["ns_exponent"] == 0.75
    assert manifest.params["train"]["seed"] == 5
    assert manifest.params["train"]["tcae"]["steps"] == 6
    assert manifest.dataset_fingerprint.startswith("sha256:")
    for stage in ("read", "preprocess", "music2vec", "tcae", "cel", "indexes", "catalog", "total"):
        assert stage in manifest.timings
        if stage != "total":
            assert manifest.counts["cpu_s"][stage] >= 0
    assert (version_dir / "models" / "music2vec.model").is_file()
    thumb_ids = np.load(version_dir / "extras" / "mel_thumbs_ids.npy")
    thumbs = np.load(version_dir / "extras" / "mel_thumbs.npy")
    assert thumbs.dtype == np.uint8 and thumbs.shape == (len(thumb_ids), 48, 96)
    assert thumb_ids.tolist() == np.load(version_dir / ids_file("tcae")).tolist()
    assert manifest.counts["extras"]["mel_thumbs"] == len(thumb_ids)
    assert (version_dir / "extras" / "search_index.npz").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_catalog_rows_popularity_and_audio(trained, demo):
    out, version_dir = trained
    manifest = read_manifest(version_dir)
    catalog = Catalog.load(version_dir / CATALOG)
    assert len(catalog) == manifest.songs
    held = set(manifest.holdout_playlist_ids)
    # popularity counts training playlists only, through the merged ids
    counts: Counter[int] = Counter()
    for p in train_playlists(demo):
        if p["id"] in held:
            continue
        canon = {catalog.canonical(s) for s in p["songs"]} - {None}
        counts.update(canon)
    for row in range(len(catalog)):
        sid = int(catalog.song_ids[row])
        assert catalog.popularity[row] == counts.get(sid, 0), sid
    tcae_ids = np.load(version_dir / ids_file("tcae"))
    assert set(catalog.song_ids[catalog.has_audio].tolist()) == set(tcae_ids.tolist())
    for name in ("music2vec", "tcae", "cel"):
        ids = np.load(version_dir / ids_file(name))
        assert np.all(np.diff(ids) > 0)
        assert set(ids.tolist()) <= set(catalog.song_ids.tolist())
    # songs without a mel are still in the catalog (servable, found by search)
    truth = json.loads((demo / "demo_truth.json").read_text(encoding="utf-8"))
    missing = {catalog.canonical(s) for s in truth["missing_mels"]} - {None}
    assert missing and missing <= set(catalog.song_ids.tolist())


def test_holdout_is_recorded_and_never_trained_on(trained, demo):
    out, version_dir = trained
    manifest = read_manifest(version_dir)
    all_ids = [p["id"] for p in train_playlists(demo)]
    held = manifest.holdout_playlist_ids
    assert len(held) == round(0.2 * len(all_ids))
    assert held == choose_holdout(all_ids, 0.2, seed=5)
    catalog = Catalog.load(version_dir / CATALOG)
    trained_songs = {int(s) for s in catalog.song_ids[catalog.popularity > 0]}
    only_held = set()
    held_set = set(held)
    for p in train_playlists(demo):
        if p["id"] in held_set:
            only_held.update(c for c in (catalog.canonical(s) for s in p["songs"]) if c is not None)
    only_held -= trained_songs
    w2v = set(np.load(version_dir / ids_file("music2vec")).tolist())
    assert not (only_held & w2v)  # Music2Vec never saw them
    with_audio = only_held & set(catalog.song_ids[catalog.has_audio].tolist())
    if with_audio:  # cold start: audio still gives them tcae and cel vectors
        assert with_audio <= set(np.load(version_dir / ids_file("cel")).tolist())


@pytest.mark.parametrize("name", ["tcae", "cel"])
def test_each_index_returns_own_song_first(trained, name):
    _, version_dir = trained
    index = faiss.read_index(str(version_dir / index_file(name)))
    ids = np.load(version_dir / ids_file(name))
    query = np.load(version_dir / query_file(name))
    assert index.ntotal == len(ids) == len(query)
    _, rows = index.search(query, 1)
    assert (ids[rows[:, 0]] == ids).mean() >= 0.99


def test_music2vec_rows_hold_each_songs_input_and_output_vector(trained):
    from gensim.models import Word2Vec

    _, version_dir = trained
    model = Word2Vec.load(str(version_dir / "models" / "music2vec.model"))
    index = faiss.read_index(str(version_dir / index_file("music2vec")))
    ids = np.load(version_dir / ids_file("music2vec"))
    query = np.load(version_dir / query_file("music2vec"))
    assert index.ntotal == len(ids) == len(query) == len(model.wv)
    for row in range(0, len(ids), 7):
        slot = model.wv.key_to_index[str(int(ids[row]))]
        inp, out = model.wv.vectors[slot], model.syn1neg[slot]
        np.testing.assert_allclose(query[row], inp / np.linalg.norm(inp), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(index.reconstruct(row), out / np.linalg.norm(out), rtol=1e-5, atol=1e-6)
    # searching with a song's own key finds its own row first: rows and ids are aligned
    keys = np.vstack([index.reconstruct(i) for i in range(index.ntotal)])
    _, rows = index.search(keys, 1)
    assert (rows[:, 0] == np.arange(len(ids))).all()


def test_music2vec_neighbours_share_demo_themes(trained, demo):
    _, version_dir = trained
    truth = json.loads((demo / "demo_truth.json").read_text(encoding="utf-8"))
    theme_of = truth["song_theme"]
    index = faiss.read_index(str(version_dir / index_file("music2vec")))
    ids = np.load(version_dir / ids_file("music2vec"))
    query = np.load(version_dir / query_file("music2vec"))
    _, rows = index.search(query, 11)
    same = [theme_of[int(ids[r])] == theme_of[int(ids[i])] for i in range(len(ids)) for r in rows[i] if r != i][
        : len(ids) * 10
    ]
    share = Counter(theme_of[int(i)] for i in ids)
    chance = sum((n / len(ids)) ** 2 for n in share.values())
    assert np.mean(same) > chance + 0.25, (np.mean(same), chance)


def test_same_seed_gives_same_embeddings(trained, demo):
    out, first = trained
    # The second run also leaves out the neighbour lists: the service must then answer by searching.
    second = train(demo, out, tiny_options(holdout=0.2, version="v2", neighbours=0))
    assert read_current(out) == "v2"
    for name in ("music2vec", "tcae", "cel"):
        np.testing.assert_array_equal(np.load(first / ids_file(name)), np.load(second / ids_file(name)))
        np.testing.assert_array_equal(np.load(first / query_file(name)), np.load(second / query_file(name)))
        assert knn_file(name) in read_manifest(first).models[name].files
        assert knn_file(name) not in read_manifest(second).models[name].files
        assert not (second / knn_file(name)).exists()
    assert read_manifest(first).dataset_fingerprint == read_manifest(second).dataset_fingerprint
    lists, searching = Engine.load(first), Engine.load(second)
    assert all(mi.knn is not None for mi in lists.models.values())
    # Training batches its searches, which can round a similarity differently in the last bit than one
    # query does, so near-ties may swap; the answers must still be the same songs.
    overlap = []
    for sid in lists.catalog.song_ids[:80].tolist():
        a = {it["song_id"] for it in lists.recommend(sid, "score_total")[1]}
        b = {it["song_id"] for it in searching.recommend(sid, "score_total")[1]}
        overlap.append(len(a & b) / max(1, len(a | b)))
    assert np.mean(overlap) >= 0.95, np.mean(overlap)


def test_broken_dataset_leaves_current_untouched(trained, demo, tmp_path):
    out, _ = trained
    before_current, before_versions = read_current(out), list_versions(out)
    broken = tmp_path / "broken"
    shutil.copytree(demo, broken, ignore=shutil.ignore_patterns("arena_mel"))
    text = (broken / "song_meta.json").read_text(encoding="utf-8")
    (broken / "song_meta.json").write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(MelonFormatError, match="song_meta.json"):
        train(broken, out, tiny_options(version="broken"))
    assert read_current(out) == before_current
    assert list_versions(out) == before_versions
    assert not (out / "broken").exists()


def test_crash_midway_removes_staging_and_keeps_current(trained, demo, monkeypatch):
    out, _ = trained
    before_current, before_versions = read_current(out), list_versions(out)
    real_write_model = pipeline.write_model

    def disk_full_on_cel(version_dir, name, *args, **kwargs):
        if name == "cel":
            raise OSError(28, "No space left on device")
        return real_write_model(version_dir, name, *args, **kwargs)

    monkeypatch.setattr(pipeline, "write_model", disk_full_on_cel)
    with pytest.raises(OSError, match="No space left"):
        train(demo, out, tiny_options(version="crashed"))
    assert read_current(out) == before_current
    assert list_versions(out) == before_versions
    assert not [p for p in out.iterdir() if "crashed" in p.name]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_training_leaves_current_untouched(trained, demo, sig):
    out, _ = trained
    before_current, before_versions = read_current(out), list_versions(out)
    name = f"killed-{sig.name}"
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from pathlib import Path\n"
        "from training.pipeline import TrainOptions, train\n"
        "from mugle_nets.tcae import TCAEOptions\n"
        "from mugle_nets.cel import CELOptions\n"
        f"train(Path(sys.argv[1]), Path(sys.argv[2]), TrainOptions(device='cpu', progress=False, version={name!r},"
        " w2v_dim=16, cel=CELOptions(dim=16),"
        " tcae=TCAEOptions(steps=100000, batch_size=8, hidden=16, eval_every=100000, dim=16, blend_dim=8)))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(demo), str(out)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    staging = out / f".tmp-{name}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if (staging / "models" / "music2vec.model").exists():
                break
            time.sleep(0.1)
        assert proc.poll() is None, "training exited before it could be killed"
        assert staging.is_dir(), "training never reached the staging folder"
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert read_current(out) == before_current
    assert list_versions(out) == before_versions
    assert not (out / name).exists()
    if sig == signal.SIGTERM:
        # a polite kill unwinds like Ctrl-C: the staging folder is removed and the exit code says why
        assert proc.returncode == 128 + signal.SIGTERM
        assert not staging.exists()
    else:
        assert proc.returncode == -signal.SIGKILL
        shutil.rmtree(staging, ignore_errors=True)


def test_options_from_args_and_bad_values():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    parser.add_argument("--out")
    add_train_arguments(parser)
    args = parser.parse_args(
        ["--data", "d", "--seed", "9", "--holdout", "0.1", "--w2v-epochs", "3", "--tcae-steps", "40",
         "--crop", "32", "--min-playlists", "2", "--deterministic", "--device", "cpu", "--neighbours", "0"]
    )
    opts = options_from_args(args)
    assert opts.neighbours == 0 and TrainOptions().neighbours == 64
    assert (opts.seed, opts.holdout, opts.w2v_epochs, opts.deterministic, opts.device) == (9, 0.1, 3, True, "cpu")
    assert (opts.tcae.steps, opts.tcae.crop, opts.prep.min_playlists) == (40, 32, 2)
    assert opts.music2vec().deterministic and opts.music2vec().epochs == 3
    with pytest.raises(SystemExit, match="holdout"):
        options_from_args(parser.parse_args(["--holdout", "1.5"]))
    wide = options_from_args(parser.parse_args(["--w2v-dim", "96"]))
    assert wide.w2v_dim == wide.tcae.dim == wide.cel.dim == 96
    with pytest.raises(SystemExit, match="tcae-steps"):
        options_from_args(parser.parse_args(["--tcae-steps", "0"]))
    with pytest.raises(ValueError, match="device"):
        TrainOptions(device="tpu").validate()
    with pytest.raises(ValueError, match="w2v_dim=64"):
        TrainOptions(w2v_dim=64).validate()
    with pytest.raises(ValueError, match="neighbours=-1"):
        TrainOptions(neighbours=-1).validate()


def test_holdout_choice_is_seeded_and_order_free():
    ids = list(range(100, 200))
    a = choose_holdout(ids, 0.1, seed=1)
    assert len(a) == 10 and a == sorted(a) and set(a) <= set(ids)
    assert a == choose_holdout(ids[::-1], 0.1, seed=1)
    assert a != choose_holdout(ids, 0.1, seed=2)
    assert choose_holdout(ids, 0.0, seed=1) == []
