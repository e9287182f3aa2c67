"""The demo catalog generator: Melon layout, determinism, planted structure, quirks, reader compatibility."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mugle_core.textnorm import normalize_artists, normalize_title, title_key
from training import demo
from training.same_recording import same_recording

SONGS, PLAYLISTS = 200, 150
SONG_KEYS = {"id", "song_name", "artist_name_basket", "artist_id_basket", "album_name", "album_id",
             "song_gn_gnr_basket", "song_gn_dtl_gnr_basket", "issue_date"}
PLAYLIST_KEYS = {"id", "plylst_title", "tags", "songs", "like_cnt", "updt_date"}


def _load(root: Path, name: str):
    return json.loads((root / name).read_text(encoding="utf-8"))


def _mel(root: Path, song_id: int) -> np.ndarray:
    return np.load(root / "arena_mel" / str(song_id // 1000) / f"{song_id}.npy", allow_pickle=False)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "tiny"
    summary = demo.generate(root, songs=SONGS, playlists=PLAYLISTS, seed=3, progress=False)
    assert summary["songs"] == SONGS
    assert sum(summary["playlists"].values()) == PLAYLISTS
    return root


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Metadata only, large enough for low-rate quirks to show up."""
    root = tmp_path_factory.mktemp("demo") / "medium"
    demo.generate(root, songs=4000, playlists=1500, seed=5, mels=False, progress=False)
    return root


def test_layout_and_schema(tiny: Path) -> None:
    names = {p.name for p in tiny.iterdir()}
    assert names == {"song_meta.json", "genre_gn_all.json", "train.json", "val.json", "test.json",
                     "arena_mel", demo.TRUTH_FILE}
    songs = _load(tiny, "song_meta.json")
    assert [s["id"] for s in songs] == list(range(SONGS))
    for s in songs:
        assert set(s) == SONG_KEYS
        assert isinstance(s["song_name"], str) and s["song_name"]
        assert all(isinstance(a, str) for a in s["artist_name_basket"])
        assert all(isinstance(a, int) for a in s["artist_id_basket"])
        assert len(s["artist_name_basket"]) == len(s["artist_id_basket"]) >= 1
        assert s["album_name"] is None or isinstance(s["album_name"], str)
        assert isinstance(s["album_id"], int)
        assert isinstance(s["issue_date"], str) and s["issue_date"].isdigit()
        for code in s["song_gn_gnr_basket"]:
            assert re.fullmatch(r"GN\d\d00", code)
        # Detailed codes sit under one of the song's top-level codes.
        tops = {c[:4] for c in s["song_gn_gnr_basket"]}
        assert all(re.fullmatch(r"GN\d{4}", c) and c[:4] in tops and not c.endswith("00")
                   for c in s["song_gn_dtl_gnr_basket"])

    table = _load(tiny, "genre_gn_all.json")
    assert table["GN0100"] == "발라드" and "GN9000" not in table
    tops = [c for c in table if c.endswith("00")]
    assert len(tops) >= 15 and all(c[:4] + "00" in table for c in table)

    ids = []
    for name in ("train.json", "val.json", "test.json"):
        rows = _load(tiny, name)
        assert rows, name
        for p in rows:
            assert set(p) == PLAYLIST_KEYS
            assert isinstance(p["plylst_title"], str) and isinstance(p["like_cnt"], int) and p["like_cnt"] >= 0
            assert all(isinstance(t, str) for t in p["tags"])
            assert all(isinstance(x, int) and 0 <= x < SONGS for x in p["songs"])
            assert len(set(p["songs"])) == len(p["songs"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.000", p["updt_date"])
            ids.append(p["id"])
    assert len(ids) == len(set(ids)) == PLAYLISTS
    assert all(len(p["songs"]) >= 1 for p in _load(tiny, "train.json"))

    truth = _load(tiny, demo.TRUTH_FILE)
    missing = set(truth["missing_mels"])
    assert 0 < len(missing) < SONGS * 0.05
    files = {int(p.stem) for p in (tiny / "arena_mel").rglob("*.npy")}
    assert files == set(range(SONGS)) - missing
    for sid in sorted(files)[:5]:
        mel = _mel(tiny, sid)
        assert mel.shape == (48, 1876) and mel.dtype == np.float16
        assert np.isfinite(mel).all() and float(mel.min()) >= -81 and float(mel.max()) <= 13
        assert float(mel.max()) - float(mel.min()) > 30  # a dB-like dynamic range, not flat noise


def test_val_test_withhold_consistently(tiny: Path) -> None:
    truth = _load(tiny, demo.TRUTH_FILE)
    full = {p["id"]: p for p in _load(tiny, "train.json")}
    assert not set(full) & {int(k) for k in truth["withheld"]}
    shortened = 0
    for name in ("val.json", "test.json"):
        for p in _load(tiny, name):
            held = truth["withheld"][str(p["id"])]
            assert not set(held["songs"]) & set(p["songs"])
            assert len(p["songs"]) + len(held["songs"]) >= 1
            shortened += bool(held["songs"])
    assert shortened > 0


def test_deterministic_for_seed(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    demo.generate(again, songs=SONGS, playlists=PLAYLISTS, seed=3, progress=False)
    assert _digest(again) == _digest(tiny)
    other = tmp_path / "other"
    demo.generate(other, songs=SONGS, playlists=PLAYLISTS, seed=4, progress=False)
    a, b = _digest(tiny), _digest(other)
    assert a["song_meta.json"] != b["song_meta.json"]
    assert a["train.json"] != b["train.json"]
    common = sorted(k for k in set(a) & set(b) if k.endswith(".npy"))
    assert common and sum(a[k] != b[k] for k in common) == len(common)


def test_playlists_concentrate_on_themes(tiny: Path) -> None:
    truth = _load(tiny, demo.TRUTH_FILE)
    song_theme = truth["song_theme"]
    n_themes = len(truth["themes"])
    on, total = 0, 0
    for p in _load(tiny, "train.json"):
        theme = truth["playlist_theme"][str(p["id"])]
        on += sum(song_theme[s] == theme for s in p["songs"])
        total += len(p["songs"])
    assert total > 0
    assert on / total > 0.6 > 3.0 / n_themes
    # Every song has exactly one theme and the theme lists partition the catalog.
    listed = sorted(s for ids in truth["themes"].values() for s in ids)
    assert listed == list(range(SONGS))


def _pitch_hist(mel: np.ndarray) -> np.ndarray:
    """Histogram of the loudest band among the low bands, per frame: a crude melody feature."""
    arg = mel[2:22].astype(np.float32).argmax(0)
    h = np.bincount(arg, minlength=20).astype(np.float64)
    return (h - h.mean()) / (h.std() + 1e-9)


def test_versions_share_melody_not_recording(tiny: Path) -> None:
    truth = _load(tiny, demo.TRUTH_FILE)
    missing = set(truth["missing_mels"])
    ids = [i for i in range(SONGS) if i not in missing]
    feats = np.stack([_pitch_hist(_mel(tiny, i)) for i in ids]) / np.sqrt(20.0)  # rows: unit norm, dot = correlation
    pos = {s: k for k, s in enumerate(ids)}
    sim = feats @ feats.T
    np.fill_diagonal(sim, -np.inf)
    within, hits, tried = [], 0, 0
    songs = _load(tiny, "song_meta.json")
    for group in truth["version_groups"]:
        assert 2 <= len(group) <= 3
        # Versions carry their lead's title plus a marker: one title for search, distinct keys for merging.
        assert len({normalize_title(songs[s]["song_name"]) for s in group}) == 1
        assert len({title_key(songs[s]["song_name"]) for s in group}) == len(group)
        present = [s for s in group if s in pos]
        for a in present:
            others = [pos[b] for b in present if b != a]
            if not others:
                continue
            tried += 1
            hits += int(np.argmax(sim[pos[a]]) in others)
            within.extend(sim[pos[a], others].tolist())
            # Not the same recording: the mels differ clearly frame by frame.
            b = next(x for x in present if x != a)
            diff = np.abs(_mel(tiny, a).astype(np.float32) - _mel(tiny, b).astype(np.float32)).mean()
            assert diff > 1.0
    assert tried >= 10
    across = sim[np.isfinite(sim)]
    assert np.mean(within) > np.mean(across) + 0.5
    assert hits / tried >= 0.8


def test_duplicates_share_title_key_artists_recording(tiny: Path) -> None:
    truth = _load(tiny, demo.TRUTH_FILE)
    songs = _load(tiny, "song_meta.json")
    missing = set(truth["missing_mels"])
    groups = truth["duplicate_groups"]
    assert groups
    in_group = {s for g in groups for s in g}
    assert not in_group & {s for g in truth["version_groups"] for s in g}
    for group in groups:
        first = songs[group[0]]
        for sid in group[1:]:
            assert title_key(songs[sid]["song_name"]) == title_key(first["song_name"])
            assert songs[sid]["artist_name_basket"] == first["artist_name_basket"]
            assert songs[sid]["album_id"] != first["album_id"]
        present = [s for s in group if s not in missing]
        if len(present) >= 2:
            assert same_recording(*(_mel(tiny, s).astype(np.float32) for s in present[:2]))
    # Apart from planted duplicates and same-title pieces, (title key, artists) is unique: no accidental
    # candidates for merging.
    planted = in_group | {s for g in truth["same_title_groups"] for s in g}
    keys = Counter((title_key(s["song_name"]), normalize_artists(s["artist_name_basket"]))
                   for s in songs if s["id"] not in planted)
    assert keys.most_common(1)[0][1] == 1


def test_popularity_heavy_tailed_and_not_audible(tiny: Path, medium: Path) -> None:
    songs = _load(medium, "song_meta.json")
    counts = np.zeros(len(songs))
    for p in _load(medium, "train.json"):
        counts[p["songs"]] += 1
    ordered = np.sort(counts)[::-1]
    top = ordered[: len(ordered) // 100].sum() / ordered.sum()
    assert top > 0.10  # the top 1% of songs hold far more than 1% of the plays
    assert np.median(counts) <= 0.05 * ordered[:10].mean()
    assert (counts <= 1).mean() > 0.1  # a long tail that almost nobody plays

    truth = _load(tiny, demo.TRUTH_FILE)
    missing = set(truth["missing_mels"])
    ids = [i for i in range(SONGS) if i not in missing]
    rank = np.array(truth["popularity_rank"])[ids]
    mels = [_mel(tiny, i).astype(np.float32) for i in ids]
    for feature in (np.array([m.mean() for m in mels]), np.array([m.std() for m in mels]),
                    np.array([m[:, :200].mean() for m in mels])):
        r = np.corrcoef(np.argsort(np.argsort(feature)), rank)[0, 1]
        assert abs(r) < 0.25


def test_audio_weakly_related_to_theme(tiny: Path) -> None:
    truth = _load(tiny, demo.TRUTH_FILE)
    missing = set(truth["missing_mels"])
    ids = [i for i in range(SONGS) if i not in missing]
    # Band means and spread: timbre, brightness, noise floor; nothing about the tune's order.
    feats = np.stack([np.concatenate([m.mean(1), m.std(1)])
                      for m in (_mel(tiny, i).astype(np.float32) for i in ids)])
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    d = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = d.argmin(1)
    theme = np.array(truth["song_theme"])[ids]
    same = (theme[nn] == theme).mean()
    chance = sum((np.mean(theme == t)) ** 2 for t in set(theme))
    assert same > 1.5 * chance


def test_quirks_present(medium: Path) -> None:
    songs = _load(medium, "song_meta.json")
    table = _load(medium, "genre_gn_all.json")
    dates = [s["issue_date"] for s in songs]
    assert any(d == "00000000" for d in dates)
    assert any(len(d) < 8 for d in dates)
    assert any(len(d) == 8 and d[4:6] == "00" for d in dates)
    assert any(len(d) == 8 and d[6:] == "00" and d[4:6] != "00" for d in dates)
    assert any("GN9000" in s["song_gn_gnr_basket"] for s in songs) and "GN9000" not in table
    assert any(not s["song_gn_gnr_basket"] for s in songs)
    assert any(s["album_name"] is None for s in songs)
    assert any(s["album_name"] == "" for s in songs)
    titles = [s["song_name"] for s in songs]
    assert any("(feat. " in t for t in titles)
    assert any(t.endswith("(Inst.)") for t in titles) and any(t.endswith("(MR)") for t in titles)
    assert any(s["artist_name_basket"] == ["Various Artists"] for s in songs)
    assert any(len(s["artist_name_basket"]) > 1 for s in songs)
    hangul = sum(bool(re.search("[가-힣]", t)) for t in titles)
    assert 0.3 * len(titles) < hangul < 0.95 * len(titles)
    # Artists have several albums.
    albums = {}
    for s in songs:
        albums.setdefault(tuple(s["artist_id_basket"]), set()).add(s["album_id"])
    assert np.mean([len(v) > 1 for v in albums.values()]) > 0.3
    assert not (medium / "arena_mel").exists()


def test_bad_arguments_and_safe_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="songs"):
        demo.generate(tmp_path / "a", songs=5, progress=False)
    with pytest.raises(ValueError, match="missing_mel_rate"):
        demo.generate(tmp_path / "a", songs=50, playlists=20, missing_mel_rate=0.9, progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="busy"):
        demo.generate(busy, songs=50, playlists=20, mels=False, progress=False)
    demo.generate(busy, songs=50, playlists=20, mels=False, progress=False, overwrite=True)
    assert (busy / "song_meta.json").is_file() and not (busy / "keep.txt").exists()

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(demo, "_dump_json", boom)
    with pytest.raises(RuntimeError):
        demo.generate(tmp_path / "crashed", songs=50, playlists=20, progress=False)
    assert not (tmp_path / "crashed").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_reader_loads_demo(tiny: Path) -> None:
    melon = pytest.importorskip("training.melon")
    data = melon.read_dataset(tiny, progress=False)
    assert len(data.songs) == SONGS
    known = set(range(SONGS))
    assert all(set(p.songs) <= known for p in data.playlists)
    train = [p for p in data.playlists if p.split == "train"]
    assert len(train) == len(_load(tiny, "train.json"))
    assert sum(len(p.songs) for p in train) == sum(len(p["songs"]) for p in _load(tiny, "train.json"))
    # Only the quirks that were planted on purpose show up as warnings.
    planted = {"empty genre basket", "genre code not in table", "issue_date no year", "issue_date partial",
               "issue_date short", "null album_name"}
    assert set(data.report.counts) <= planted, data.report.summary()


def _playlists(root: Path) -> list[list[int]]:
    return [p["songs"] for name in ("train.json", "val.json", "test.json") for p in _load(root, name)]


def test_structure_knobs_change_the_catalog_as_named(tmp_path: Path) -> None:
    """Each knob moves what it names; the defaults are the default demo, byte for byte."""
    base_args = {"songs": 1500, "playlists": 600, "seed": 2, "mels": False, "progress": False}
    demo.generate(tmp_path / "default", **base_args)
    demo.generate(tmp_path / "explicit", **base_args, structure=demo.Structure())
    assert _digest(tmp_path / "default") == _digest(tmp_path / "explicit")
    truth = _load(tmp_path / "default", demo.TRUTH_FILE)
    assert truth["params"]["structure"]["curator_order"] == 1.0

    def stats(root: Path) -> dict[str, float]:
        t = _load(root, demo.TRUTH_FILE)
        theme_of = t["song_theme"]
        by_id = {p["id"]: p["songs"] for name in ("train.json",) for p in _load(root, name)}
        purity, lengths = [], []
        for pid, songs in by_id.items():
            if songs:
                own = t["playlist_theme"][str(pid)]
                purity.append(np.mean([theme_of[s] == own for s in songs]))
                lengths.append(len(songs))
        counts = Counter(s for p in _playlists(root) for s in p)
        top = sum(c for _, c in counts.most_common(len(counts) // 100)) / sum(counts.values())
        return {"purity": float(np.mean(purity)), "length": float(np.mean(lengths)), "top1pct": top}

    d = stats(tmp_path / "default")
    demo.generate(tmp_path / "long", **base_args, structure=demo.Structure(playlist_length=30))
    demo.generate(tmp_path / "noisy", **base_args, structure=demo.Structure(theme_purity=0.5))
    demo.generate(tmp_path / "flat", **base_args, structure=demo.Structure(pop_exponent=0.3))
    assert stats(tmp_path / "long")["length"] > 1.5 * d["length"]
    assert stats(tmp_path / "noisy")["purity"] < d["purity"] - 0.2
    assert stats(tmp_path / "flat")["top1pct"] < 0.7 * d["top1pct"]

    # Curator order: at 0 the genre runs of the curator's order are broken up.
    def runs(root: Path) -> float:
        genre = {s["id"]: tuple(s["song_gn_gnr_basket"][:1]) for s in _load(root, "song_meta.json")}
        same = [genre[a] == genre[b] for p in _playlists(root) for a, b in zip(p, p[1:], strict=False)]
        return float(np.mean(same))

    demo.generate(tmp_path / "shuffled", **base_args, structure=demo.Structure(curator_order=0.0))
    assert runs(tmp_path / "shuffled") < runs(tmp_path / "default") - 0.1
    with pytest.raises(ValueError, match="theme_purity"):
        demo.generate(tmp_path / "bad", **base_args, structure=demo.Structure(theme_purity=0.1))
