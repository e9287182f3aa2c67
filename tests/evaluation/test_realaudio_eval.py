"""The real-audio evaluation: metrics on known rankings, the fixed baselines, and a tiny end-to-end run.

The end-to-end test builds a five-track recordings set from synthetic audio, trains it with the real
pipeline (tiny options), and evaluates through the app's real routes (``POST /recommend/audio``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation import retrieval
from tests.training.test_realaudio_sets import _fake_package, _track


def test_query_values_on_known_rankings() -> None:
    v = retrieval.query_values([5, 7, 9], {5})
    assert v == {"p@1": 1.0, "hit@10": 1.0, "mrr": 1.0}
    v = retrieval.query_values([1, 2, 3, 4], {3, 4}, group={1, 3, 8})
    assert v["p@1"] == 0.0 and v["mrr"] == pytest.approx(1 / 3) and v["hit@10"] == 1.0
    assert v["group@10"] == pytest.approx(0.2)
    far = list(range(100, 200)) + [7]  # the relevant song at rank 101: beyond the API's depth
    assert retrieval.query_values(far, {7}) == {"p@1": 0.0, "hit@10": 0.0, "mrr": 0.0}
    assert retrieval.query_values(list(range(20)), {10})["hit@10"] == 0.0  # rank 11
    with pytest.raises(ValueError, match="relevant"):
        retrieval.query_values([1], set())


def test_cosine_rankings_leave_the_query_out() -> None:
    cat = retrieval.l2_normalise(np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32))
    ranked = retrieval.cosine_rankings(cat[:1], cat, [10, 11, 12, 13], exclude=[10])
    assert ranked == [[11, 12, 13]]
    ranked = retrieval.cosine_rankings(cat[2:3], cat, [10, 11, 12, 13], depth=2)
    assert ranked == [[12, 11]]


def test_random_rankings_are_seeded() -> None:
    a = retrieval.random_rankings(3, list(range(50)), exclude=[0, None, 2], seed=1)
    assert a == retrieval.random_rankings(3, list(range(50)), exclude=[0, None, 2], seed=1)
    assert a != retrieval.random_rankings(3, list(range(50)), exclude=[0, None, 2], seed=2)
    assert 0 not in a[0] and 2 not in a[2] and len(a[1]) == 50


def test_fft2_is_invariant_to_circular_shifts() -> None:
    rng = np.random.default_rng(0)
    mel = rng.normal(-40, 10, size=(48, 1876)).astype(np.float32)
    shifted = np.roll(np.roll(mel, 300, axis=1), 5, axis=0)
    f = retrieval.fft2_features([mel, shifted, rng.normal(-40, 10, size=(48, 1876))])
    assert f.shape == (3, 48 * 939)
    np.testing.assert_allclose(f[0], f[1], rtol=1e-3, atol=1e-2)
    assert not np.allclose(f[0], f[2], rtol=1e-2)
    # A short mel is padded with silence to the full length.
    assert retrieval.fit_frames(mel[:, :100]).shape == (48, 1876)


def test_baseline_vectors_find_a_louder_copy_with_mean_std() -> None:
    rng = np.random.default_rng(1)
    catalog = [rng.normal(rng.uniform(-60, -20, size=(48, 1)), rng.uniform(1, 10, size=(48, 1)), size=(48, 400))
               for _ in range(20)]
    queries = [catalog[3] + rng.normal(0, 0.5, size=catalog[3].shape)]
    for name in ("mean+std", "fft2", "fft2 band-std"):
        cat, qry = retrieval.baseline_vectors(name, catalog, queries)
        assert np.allclose(np.linalg.norm(cat, axis=1), 1, atol=1e-5)
        assert retrieval.cosine_rankings(qry, cat, list(range(20)))[0][0] == 3, name
    with pytest.raises(ValueError, match="baseline"):
        retrieval.baseline_vectors("nope", catalog, queries)


def test_summarise_gives_mean_and_interval() -> None:
    values = [{"p@1": float(i % 2), "mrr": 0.5} for i in range(40)]
    s = retrieval.summarise(values, seed=0)
    assert s["p@1"]["mean"] == 0.5 and s["p@1"]["low"] < 0.5 < s["p@1"]["high"]
    assert s["mrr"] == {"mean": 0.5, "low": 0.5, "high": 0.5}


# -- end to end ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch", reason="training needs torch")
    torch.set_num_threads(1)
    from evaluation.realaudio import train_on_set
    from training.realaudio import recordings

    root = tmp_path_factory.mktemp("rae")
    debs, unpacked = root / "debs", root / "unpacked"
    _fake_package(unpacked, debs, "frozen-bubble-data", {"m/a.wav": _track(100, 1), "m/b.wav": _track(95, 2)})
    _fake_package(unpacked, debs, "pingus-data", {"m/c.wav": _track(120, 3), "m/d.wav": _track(110, 5),
                                                  "m/e.wav": _track(91, 7)})
    folder = root / "recordings"
    recordings.build(folder, debs, unpacked, packages=("frozen-bubble-data", "pingus-data"), workers=1,
                     niceness=0, progress=False)
    train_on_set(folder, ["--device", "cpu", "--no-progress", "--w2v-epochs", "2", "--tcae-steps", "15",
                          "--batch-size", "8", "--cel-epochs", "3"])
    return folder


def test_evaluate_through_the_api_and_report(trained_set: Path, tmp_path: Path) -> None:
    from evaluation.realaudio import evaluate_set, main, write_report

    result = evaluate_set(trained_set, progress=False)
    assert result["set"] == "recordings" and result["size"]["queries"] == 5
    assert result["served"]["songs"] == 5 and result["served"]["version"]
    assert set(result["results"]) == {"tcae", "cel", *retrieval.BASELINES}
    for block in result["results"].values():
        assert set(block) == {"p@1", "hit@10", "mrr", "group@10"}
        assert 0.0 <= block["p@1"]["mean"] <= block["hit@10"]["mean"] <= 1.0
        # Five songs: every one is in the top 10, so hit@10 is 1 for every method.
        assert block["hit@10"]["mean"] == 1.0
    # The same mels uploaded as .npy give the same lists as the WAVs the service decodes.
    as_mel = evaluate_set(trained_set, progress=False, upload="mel")
    assert as_mel["results"]["tcae"] == result["results"]["tcae"]
    report = tmp_path / "eval" / "real_audio.md"
    json_path = write_report([result], report, "test")
    text = report.read_text(encoding="utf-8")
    assert "| tcae (API) |" in text and "| fft2 |" in text
    assert json.loads(json_path.read_text())["sets"][0]["set"] == "recordings"
    # The command line: baselines only, and a clear error for a folder that is not a set.
    assert main(["evaluate", "--set", str(trained_set), "--methods", "", "--report", str(report), "--quiet"]) == 0
    assert main(["evaluate", "--set", str(tmp_path), "--methods", "", "--report", str(report)]) == 2


def test_mugle_cli_hook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mugle_cli.main import main as mugle

    assert mugle(["real-audio", "evaluate", "--set", str(tmp_path), "--methods", ""]) == 2
    assert "no READY marker" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        mugle(["real-audio", "--help"])
    assert exc.value.code == 0 and "build,train,evaluate" in capsys.readouterr().out


def test_canonical_lists_merge_duplicates_like_the_api() -> None:
    from evaluation.realaudio import Query, canonical_lists

    canon = {1: 1, 2: 1, 3: 3, 4: 4, 5: 4}.__getitem__
    q = Query("song 2", {3}, np.zeros((48, 10)), song_id=2)
    # 2 is merged into 1 (the query's own song): both are left out; 5 answers as 4, once.
    assert canonical_lists([[1, 5, 3, 4, 2]], [q], canon) == [[4, 3]]


def test_factor_breakdown_counts_pairs_by_difference() -> None:
    from evaluation.realaudio import EvalSet, Query, factor_breakdown, pair_factors

    solo = {"accompaniment": False, "tempo": 1.0, "transpose": 0}
    band = {"accompaniment": True, "tempo": 1.12, "transpose": 3}
    assert pair_factors(solo, band) == {"accompaniment": "one accompanied", "tempo": "ratio >= 1.1",
                                        "key": "3+ semitones apart"}
    mel = np.zeros((48, 10))
    queries = [Query("song 1", {2}, mel, song_id=1, facts=solo), Query("song 2", {1}, mel, song_id=2, facts=band)]
    data = EvalSet("melodies", Path("."), [1, 2, 3], [mel] * 3, queries)
    out = factor_breakdown(data, {"m": [[2, 3], [3] + list(range(10, 20)) + [1]]})
    assert out["m"]["tempo: ratio >= 1.1"] == {"pairs": 2, "found@10": 0.5}
