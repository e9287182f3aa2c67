"""Music2Vec learns the themes planted in generated playlists, with the real gensim."""

from __future__ import annotations

import numpy as np
import pytest

from training.music2vec import Music2VecOptions, build_sentences, l2_normalise, train_music2vec

THEMES = 6
SONGS_PER_THEME = 30


def themed_playlists(seed: int = 0, count: int = 240) -> tuple[list[list[int]], dict[int, int]]:
    """Playlists that each draw 8-15 songs from one theme (plus one stray song), in random order."""
    rng = np.random.default_rng(seed)
    theme_of = {t * SONGS_PER_THEME + i: t for t in range(THEMES) for i in range(SONGS_PER_THEME)}
    playlists = []
    for p in range(count):
        theme = p % THEMES
        pool = np.arange(theme * SONGS_PER_THEME, (theme + 1) * SONGS_PER_THEME)
        songs = list(rng.choice(pool, size=int(rng.integers(8, 16)), replace=False))
        songs.insert(int(rng.integers(0, len(songs))), int(rng.integers(0, THEMES * SONGS_PER_THEME)))
        playlists.append([int(s) for s in songs])
    return playlists, theme_of


def small_options(**kw) -> Music2VecOptions:
    base = dict(dim=32, epochs=10, deterministic=True)
    base.update(kw)
    return Music2VecOptions(**base)


def theme_precision(ids: np.ndarray, query: np.ndarray, key: np.ndarray, theme_of: dict[int, int], k=10) -> float:
    scores = query @ key.T
    np.fill_diagonal(scores, -np.inf)
    top = np.argsort(-scores, axis=1)[:, :k]
    themes = np.array([theme_of[int(i)] for i in ids])
    return float((themes[top] == themes[:, None]).mean())


def test_neighbours_share_themes_far_above_chance(tmp_path):
    playlists, theme_of = themed_playlists()
    result = train_music2vec(playlists, None, small_options(), seed=1, models_dir=tmp_path)
    assert len(result.ids) == THEMES * SONGS_PER_THEME
    assert np.all(np.diff(result.ids) > 0)
    np.testing.assert_allclose(np.linalg.norm(result.query, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(result.key, axis=1), 1.0, rtol=1e-5)
    chance = 1 / THEMES
    in_out = theme_precision(result.ids, result.query, result.key, theme_of)
    in_in = theme_precision(result.ids, result.query, result.query, theme_of)
    assert in_out > chance + 0.5, in_out
    assert in_in > chance + 0.5, in_in
    assert (tmp_path / "music2vec.model").is_file()
    assert result.stats["words_per_s"] > 0
    assert result.stats["params"]["ns_exponent"] == 0.75


def test_same_seed_same_vectors_and_other_seed_differs():
    playlists, _ = themed_playlists(count=60)
    a = train_music2vec(playlists, None, small_options(epochs=3), seed=7)
    b = train_music2vec(playlists, None, small_options(epochs=3), seed=7)
    c = train_music2vec(playlists, None, small_options(epochs=3), seed=8)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.query, b.query)
    np.testing.assert_array_equal(a.key, b.key)
    assert not np.array_equal(a.query, c.query)


def test_fast_path_corpus_file_learns_too(tmp_path):
    playlists, theme_of = themed_playlists()
    opts = small_options(deterministic=False, fast_path=True, workers=2)
    result = train_music2vec(playlists, None, opts, seed=1, work_dir=tmp_path)
    assert result.stats["path"] == "corpus_file"
    assert len(result.ids) == THEMES * SONGS_PER_THEME
    assert theme_precision(result.ids, result.query, result.key, theme_of) > 1 / THEMES + 0.5
    assert list(tmp_path.iterdir()) == []  # the temporary corpus is cleaned up


def test_keep_filter_restricts_vocabulary_and_keeps_order():
    sentences = build_sentences([[5, 3, 9, 3, 1], [2, 9], [4]], keep={1, 3, 5, 9})
    assert sentences == [["5", "3", "9", "1"]]
    result = train_music2vec([[5, 3, 9, 1], [3, 1, 5]] * 5, {1, 3, 5}, small_options(epochs=1), seed=0)
    assert result.ids.tolist() == [1, 3, 5]


def test_empty_corpus_gives_empty_model():
    result = train_music2vec([[1], [2]], None, small_options(), seed=0)
    assert result.ids.shape == (0,)
    assert result.query.shape == (0, 32)


def test_bad_option_is_named():
    with pytest.raises(ValueError, match="window"):
        train_music2vec([[1, 2]], None, small_options(window=0), seed=0)


def test_l2_normalise_keeps_zero_rows_finite():
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
