"""Title search: normalisation, initials, ordering, and the precomputed index file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.search import TitleSearch
from mugle_core.catalog import Catalog
from mugle_core.searchindex import SEARCH_INDEX, write_search_index


def _catalog(tmp: Path, titles: list[tuple[str, str, int]]) -> Catalog:
    songs = [
        {"song_id": 10 + i, "title": t, "artists": [a], "album": "", "genres": [], "issue_date": None,
         "popularity": p, "has_audio": True}
        for i, (t, a, p) in enumerate(titles)
    ]
    path = tmp / "catalog.npz"
    Catalog.save(path, songs, {s["song_id"]: s["song_id"] for s in songs})
    return Catalog.load(path)


TITLES = [
    ("사랑", "가수 A", 5),
    ("사랑", "가수 B", 50),
    ("사랑의 노래", "가수 C", 900),
    ("첫 사랑", "가수 D", 300),
    ("밤편지", "아이유", 20),
    ("비 퐁 주", "밴드", 40),
    ("벚꽃 엔딩", "버스커 버스커", 100),
    ("Love Poem (feat. IU)", "아이유", 10),
    ("Dynamite", "BTS", 700),
    ("Dynamo", "Band", 1),
    ("좋은 날", "아이유", 60),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> TitleSearch:
    return TitleSearch.build(_catalog(tmp_path_factory.mktemp("cat"), TITLES))


def _titles(index: TitleSearch, q: str, limit: int = 5) -> list[str]:
    return [TITLES[row][0] for row, _ in index.search(q, limit)]


def test_exact_title_first_and_ties_to_the_more_popular(index: TitleSearch) -> None:
    hits = index.search("사랑", 5)
    rows = [r for r, _ in hits]
    # both exact "사랑" first, the more popular one (50) ahead of 5, before longer titles containing it
    assert rows[:2] == [1, 0]
    assert hits[0][1] == hits[1][1] == 100.0
    assert {2, 3} <= set(rows)


def test_normalisation_brackets_case_width_and_spacing(index: TitleSearch) -> None:
    assert _titles(index, "love poem")[0] == "Love Poem (feat. IU)"
    assert _titles(index, "ＬＯＶＥ ＰＯＥＭ")[0] == "Love Poem (feat. IU)"
    assert _titles(index, "벚꽃엔딩")[0] == "벚꽃 엔딩"
    assert _titles(index, "dynamit")[0] == "Dynamite"  # a typo still finds it


def test_artist_and_title_artist(index: TitleSearch) -> None:
    assert set(_titles(index, "아이유", 3)) == {"밤편지", "Love Poem (feat. IU)", "좋은 날"}
    assert _titles(index, "좋은 날 아이유")[0] == "좋은 날"


@pytest.mark.parametrize("q", ["ㅂㅍㅈ", "ㅂ ㅍ ㅈ", " ㅂㅍ ㅈ "])
def test_initials_with_or_without_spaces(index: TitleSearch, q: str) -> None:
    got = _titles(index, q, 3)
    assert got[:2] == ["비 퐁 주", "밤편지"]  # both exact initials; the more popular first
    assert _titles(index, "ㅈㅇ")[0] == "좋은 날"


def test_nothing_to_find(index: TitleSearch) -> None:
    assert index.search("zzqxw", 5) == []
    assert index.search("   ", 5) == []
    assert index.search("!!!", 5) == []


def test_precomputed_index_file_is_used_and_checked(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, TITLES)
    path = write_search_index(tmp_path, catalog)
    assert path.name == SEARCH_INDEX
    loaded = TitleSearch.for_catalog(catalog, path)
    built = TitleSearch.build(catalog)
    for q in ["사랑", "ㅂㅍㅈ", "dynamite bts", "아이유"]:
        assert loaded.search(q, 5) == built.search(q, 5)
    # An index built for another catalog is ignored, not trusted.
    other = _catalog(tmp_path / "o" if (tmp_path / "o").mkdir() is None else tmp_path, TITLES[::-1])
    stale = TitleSearch.for_catalog(other, path)
    assert [TITLES[::-1][r][0] for r, _ in stale.search("밤편지", 1)] == ["밤편지"]


def test_exact_titles_found_in_a_larger_catalog(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    syl = [chr(c) for c in range(0xAC00, 0xD7A4, 97)]
    titles = [("".join(rng.choice(syl, rng.integers(2, 6)).tolist()), f"a{i % 300}", int(rng.integers(0, 99)))
              for i in range(5000)]
    catalog = _catalog(tmp_path, titles)
    index = TitleSearch.build(catalog)
    for i in rng.choice(len(titles), 40, replace=False).tolist():
        hits = index.search(titles[i][0], 10)
        assert hits[0][1] == 100.0
        assert titles[hits[0][0]][0] == titles[i][0]
        assert i in [r for r, s in hits if s == 100.0] or titles[i][0] in [titles[r][0] for r, _ in hits]


def test_versions_are_separate_results_original_first(tmp_path: Path) -> None:
    # The live and English versions are more popular than the original, yet a plain title query shows the
    # original first, and a query naming a version shows that version first; all three are results.
    titles = [("봄날 (Live)", "BTS", 900), ("봄날", "BTS", 10), ("봄날 (English Ver.)", "BTS", 500),
              ("봄날의 노래", "Other", 50)]
    index = TitleSearch.build(_catalog(tmp_path, titles))
    names = [titles[r][0] for r, _ in index.search("봄날", 5)]
    assert names[:3] == ["봄날", "봄날 (Live)", "봄날 (English Ver.)"]
    live = [titles[r][0] for r, _ in index.search("봄날 (라이브)", 5)]
    assert live[0] == "봄날 (Live)" and set(live[:3]) == {"봄날", "봄날 (Live)", "봄날 (English Ver.)"}
    assert [titles[r][0] for r, _ in index.search("봄날", 1)] == ["봄날"], "the cut keeps the original"
