"""The web page in a real headless Chromium against the real server (uvicorn on 127.0.0.1).

Needs Debian's ``chromium`` package (``apt-get install chromium``; Korean text in the screenshot needs
``fonts-nanum`` or ``fonts-noto-cjk``). Without /usr/bin/chromium the test is skipped with that reason.
The server and browser helpers are in ``tests/fixtures/browser.py``, shared with ``test_nginx.py``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOT, make_artifacts, running_app
from tests.fixtures.synthetic import song_id_of

logger = logging.getLogger(__name__)

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("artifacts")
    make_artifacts(root)
    with running_app(root, root / "server.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as pw:
        # launch() always starts Chromium on a fresh, empty temporary profile (its own --user-data-dir),
        # so no state leaks between runs; it refuses a --user-data-dir of ours.
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server: str):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ko-KR")
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _song_param(url: str) -> str | None:
    m = re.search(r"[?&]song=(\d+)", url)
    return m.group(1) if m else None


def wait_loaded(page) -> None:
    """Wait until the page has finished rendering the state its URL names."""
    page.wait_for_function("document.body.dataset.loaded === location.search")


pytestmark = pytest.mark.browser


def test_search_recommend_navigate(page, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#message").inner_text().startswith("곡을 검색")

    # live suggestions while typing part of a title
    page.locator("#q").press_sequentially("벚꽃", delay=60)
    option = page.locator("#suggestions [role=option]").first
    option.wait_for()
    assert "벚꽃 엔딩" in option.inner_text()
    assert page.locator("#q").get_attribute("aria-expanded") == "true"
    option.click()

    first = str(song_id_of(1))  # "벚꽃 엔딩"
    page.wait_for_selector("#results .card")
    assert _song_param(page.url) == first
    assert page.locator("#song-title").inner_text() == "벚꽃 엔딩"
    cards = page.locator("#results .card")
    assert 1 <= cards.count() <= 10
    assert first not in cards.evaluate_all("cs => cs.map(c => c.dataset.songId)")
    # why each song was recommended: one badge per model, at least one of them ranked, and a co-listed
    # badge exactly where the co-occurrence list placed the song
    assert cards.first.locator(".rank:not(.cooc)").count() == 3
    assert cards.first.locator(".rank.hit").count() >= 1
    shown = cards.evaluate_all("cs => cs.map(c => { const b = c.querySelector('.rank.cooc');"
                               " return b ? b.textContent : null; })")
    answer = httpx.get(f"{server}/recommend/{first}", params={"k": 10}, timeout=10).json()["recommendations"]
    listed = [f"함께 · co-listed #{it['ranks']['cooc']}" if it["ranks"]["cooc"] else None for it in answer]
    assert shown == listed[: len(shown)] and any(listed)
    # pictures: the mel thumbnail and the neighbourhood map are drawn
    page.wait_for_selector("#mel-figure:not([hidden])")
    page.wait_for_selector("#map-figure:not([hidden])")
    assert page.locator("#mel").evaluate("c => c.width") == 96
    lit = page.locator("#map").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }")
    assert lit > 200, "the map canvas should have dots drawn on it"

    # switch the method: the URL follows and the list is re-ranked by Music2Vec alone
    page.locator("label:has(input[value=music2vec])").click()
    page.wait_for_function("location.search.includes('method=music2vec')")
    page.wait_for_selector("#results h2:has-text('Music2Vec')")
    ranks = page.locator("#results .card").evaluate_all(
        "cs => cs.map(c => c.querySelector('.rank').textContent)")
    assert ranks[0] == "Music2Vec #1", ranks

    # the comparison view: each_top3 and the three models side by side
    page.locator("label:has(input[value=compare])").click()
    page.wait_for_selector("#results .compare .col")
    cols = page.locator("#results .compare .col").evaluate_all("cs => cs.map(c => c.dataset.method)")
    assert cols == ["each_top3", "music2vec", "tcae", "cel"]

    # novelty slider and exclude-artist live in the URL too
    page.locator("label:has(input[value=score_total])").click()
    page.wait_for_function("!location.search.includes('method=')")
    page.locator("#novelty").fill("0.8")
    page.wait_for_function("location.search.includes('novelty=0.8')")
    page.locator("#exclude-artist").check()
    page.wait_for_function("location.search.includes('xa=1')")
    wait_loaded(page)
    seed_artist = page.locator("#song-meta").inner_text().split(" · ")[0]
    artists = page.locator("#results .card .artists").all_inner_texts()
    assert artists and seed_artist not in artists

    # click through to another song
    target = page.locator("#results .card a.song-link").first
    target_id = target.get_attribute("data-song-id")
    target_title = target.inner_text()
    target.click()
    page.wait_for_function(f"location.search.includes('song={target_id}')")
    page.wait_for_selector(f"#song-title:text-is('{target_title}')")
    assert "novelty=0.8" in page.url and "xa=1" in page.url

    # Back returns to the first song, with its controls
    page.go_back()
    page.wait_for_function(f"location.search.includes('song={first}')")
    page.wait_for_selector("#song-title:text-is('벚꽃 엔딩')")
    assert page.locator("#exclude-artist").is_checked()

    # a shared link opens straight on a song and method
    page.goto(f"{server}/?song={first}&method=tcae")
    page.wait_for_selector("#results h2:has-text('TCAE')")
    assert page.locator("input[value=tcae]").is_checked()


def _card_ids(page) -> list[int]:
    return page.locator("#results .card").evaluate_all("cs => cs.map(c => Number(c.dataset.songId))")


def _api_ids(server: str, path: str, params: dict | None = None, body: dict | None = None) -> list[int]:
    import httpx

    if body is None:
        r = httpx.get(server + path, params=params, timeout=30)
    else:
        r = httpx.post(server + path, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return [rec["song_id"] for rec in r.json()["recommendations"]]


def test_situation_filters_diversity_and_not_like_this(page, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    # the situation box: type part of a tag, pick the suggestion, get its songs
    page.locator("#tag-q").press_sequentially("드라", delay=60)
    option = page.locator("#tag-suggestions [role=option]").first
    option.wait_for()
    assert "#드라이브" in option.inner_text() and page.locator("#tag-q").get_attribute("aria-expanded") == "true"
    option.click()
    page.wait_for_function("new URLSearchParams(location.search).get('tag') === '드라이브'")
    wait_loaded(page)
    assert page.locator("#song-title").inner_text() == "#드라이브"
    assert _card_ids(page) == _api_ids(server, "/recommend/tag/드라이브", {"k": 10})
    assert page.locator("#results .not-like").count() == 0  # negatives belong to a song's list
    assert page.locator("#mel-figure").is_hidden() and page.locator("#map-figure").is_hidden()
    # initials find tags too
    page.locator("#tag-q").fill("")
    page.locator("#tag-q").press_sequentially("ㅅㅂ", delay=60)
    page.wait_for_selector("#tag-suggestions [role=option]:has-text('새벽')")

    # genre filter: the select lists the catalog's genres; every card carries the chosen one
    options = page.locator("#genre option").evaluate_all("os => os.map(o => o.value)")
    assert "댄스" in options and "" in options
    page.locator("#genre").select_option("댄스")
    page.wait_for_function("location.search.includes('genre=')")
    wait_loaded(page)
    chips = page.locator("#results .card .genres").all_inner_texts()
    assert chips and all("댄스" in c for c in chips)
    assert _card_ids(page) == _api_ids(server, "/recommend/tag/드라이브", {"k": 10, "genre": "댄스"})

    # year filter and diversity slider: in the URL, and the list is the API's for those parameters
    page.locator("#genre").select_option("")
    page.wait_for_function("!location.search.includes('genre=')")
    page.locator("#year-from").fill("2005")
    page.locator("#year-from").dispatch_event("change")
    page.wait_for_function("location.search.includes('yf=2005')")
    page.locator("#diversity").fill("1")
    page.wait_for_function("location.search.includes('div=1')")
    wait_loaded(page)
    assert page.locator("#diversity-out").inner_text() == "1.0"
    assert _card_ids(page) == _api_ids(server, "/recommend/tag/드라이브", {"k": 10, "year_from": 2005, "diversity": 1})

    # a song's list: "not like this" drops the song and steers away from it (POST /recommend)
    page.locator("#year-from").fill("")
    page.locator("#year-from").dispatch_event("change")
    page.wait_for_function("!location.search.includes('yf=')")
    page.locator("#diversity").fill("0")
    page.wait_for_function("!location.search.includes('div=')")
    first = str(song_id_of(1))
    page.goto(f"{server}/?song={first}")
    page.wait_for_selector("#results .card .not-like")
    before = _card_ids(page)
    page.locator("#results .card .not-like").first.click()
    page.wait_for_function(f"location.search.includes('neg={before[0]}')")
    wait_loaded(page)
    after = _card_ids(page)
    assert before[0] not in after
    assert after == _api_ids(server, "/recommend", body={"song_ids": [int(first)], "k": 10,
                                                           "negative_ids": [before[0]]})
    assert page.locator("#negatives").is_visible() and "1" in page.locator("#negatives").inner_text()
    # a second one adds to the list; the URL keeps both, and a reload shows the same list
    page.locator("#results .card .not-like").first.click()
    page.wait_for_function(f"location.search.includes('neg={before[0]}%2C{after[0]}')")
    wait_loaded(page)
    twice = _card_ids(page)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    wait_loaded(page)
    assert _card_ids(page) == twice and not {before[0], after[0]} & set(twice)
    # Back undoes the last one; "clear" empties the list
    page.go_back()
    page.wait_for_function(f"!location.search.includes('%2C{after[0]}')")
    wait_loaded(page)
    assert _card_ids(page) == after
    page.locator("#negatives button").click()
    page.wait_for_function("!location.search.includes('neg=')")
    wait_loaded(page)
    assert _card_ids(page) == before and page.locator("#negatives").is_hidden()

    # a shared link opens straight on a situation with its filters
    page.goto(f"{server}/?tag=새벽&genre=인디음악&div=0.5&method=music2vec")
    page.wait_for_selector("#results h2:has-text('Music2Vec')")
    wait_loaded(page)
    assert page.locator("#genre").input_value() == "인디음악" and page.locator("#diversity").input_value() == "0.5"
    assert _card_ids(page) == _api_ids(server, "/recommend/tag/새벽", {"k": 10, "genre": "인디음악", "diversity": 0.5,
                                                                     "method": "music2vec"})
    # an unknown situation says so
    page.goto(f"{server}/?tag=없는상황")
    page.wait_for_selector("#message[data-kind=error]")
    assert "없는상황" in page.locator("#message").inner_text()


def test_initials_and_keyboard(page, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#q").press_sequentially("ㅂㅍㅈ", delay=60)
    page.wait_for_selector("#suggestions [role=option]:has-text('밤편지')")
    texts = page.locator("#suggestions [role=option]").all_inner_texts()
    target = next(i for i, t in enumerate(texts) if "밤편지" in t)
    for _ in range(target + 1):
        page.locator("#q").press("ArrowDown")
    assert page.locator("#q").get_attribute("aria-activedescendant") == f"sugg-{target}"
    assert page.locator(f"#sugg-{target}").get_attribute("aria-selected") == "true"
    page.locator("#q").press("Enter")
    page.wait_for_selector("#song-title:text-is('밤편지')")
    assert _song_param(page.url) == str(song_id_of(4))


def test_messages(page, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#q").press_sequentially("zzqqxxjj", delay=30)
    page.wait_for_selector("#search-status:has-text('없습니다')")
    assert page.locator("#suggestions").is_hidden()

    page.goto(server + "/?song=999999")
    page.wait_for_selector("#message[data-kind=error]")
    assert "999999" in page.locator("#message").inner_text()
    assert page.locator("#song").is_hidden()

    # a failing request (the connection drops) gives a readable message, not a blank page
    page.route(re.compile(r".*/recommend/.*"), lambda route: route.abort("connectionreset"))
    page.goto(f"{server}/?song={song_id_of(2)}")
    page.wait_for_selector("#message[data-kind=error]")
    assert "실패" in page.locator("#message").inner_text()
    page.unroute(re.compile(r".*/recommend/.*"))


def test_phone_width_and_screenshot(browser, server: str) -> None:
    phone = browser.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True)
    pg = phone.new_page()
    pg.goto(f"{server}/?song={song_id_of(1)}&method=compare")
    pg.wait_for_selector("#results .compare .col")
    overflow = pg.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
    boxes = pg.locator("#results .compare .col").evaluate_all("cs => cs.map(c => c.getBoundingClientRect().left)")
    assert len(set(round(b) for b in boxes)) == 1, "at phone width the comparison stacks in one column"
    phone.close()

    ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="ko-KR")
    pg = ctx.new_page()
    pg.goto(f"{server}/?song={song_id_of(1)}")
    pg.wait_for_selector("#results .card")
    pg.wait_for_selector("#mel-figure:not([hidden])")
    pg.wait_for_selector("#map-figure:not([hidden])")
    pg.wait_for_timeout(300)  # let the canvases settle before the picture
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOT), full_page=True)
    ctx.close()
    assert SCREENSHOT.stat().st_size > 20_000


@pytest.fixture(scope="module")
def audio_server(tiny_version: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose version has audio models: $MUGLE_BROWSER_ARTIFACTS when set, else the session's
    tiny trained version (tests/conftest.py)."""
    folder = os.environ.get("MUGLE_BROWSER_ARTIFACTS") or str(tiny_version["artifacts"])
    with running_app(Path(folder), tmp_path_factory.mktemp("audio") / "server.log") as base:
        yield base


def _upload(page, server: str, payload: bytes):  # noqa: ANN202 - the direct httpx answer
    import httpx

    direct = httpx.post(f"{server}/recommend/audio", params={"method": "cel", "k": 10},
                        files={"file": ("clip.npy", payload, "application/octet-stream")}, timeout=120)
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#upload-method").select_option("cel")
    page.locator("#upload-file").set_input_files(
        {"name": "clip.npy", "mimeType": "application/octet-stream", "buffer": payload})
    page.locator("#upload-go").click()
    page.wait_for_function("!document.getElementById('upload-message').textContent.includes('분석 중')",
                           timeout=120_000)
    return direct


def _mel_payload() -> bytes:
    import io

    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    np.save(buf, rng.normal(-40, 10, size=(48, 600)).astype(np.float32))
    return buf.getvalue()


def test_upload_clip(page, audio_server: str) -> None:
    """Upload a .npy mel: the page shows the recommendations POST /recommend/audio gives, and the mel."""
    direct = _upload(page, audio_server, _mel_payload())
    assert direct.status_code == 200, direct.text
    recs = direct.json()["recommendations"]
    assert recs, "a trained version recommends for an upload"
    assert page.locator("#upload-results .card").count() == len(recs)
    shown = page.locator("#upload-results .card").evaluate_all("cs => cs.map(c => Number(c.dataset.songId))")
    assert shown == [r["song_id"] for r in recs]
    page.wait_for_selector("#upload-mel-figure:not([hidden])")


def test_upload_without_audio_models_says_why(page, server: str) -> None:
    """The synthetic version has no audio models: the page shows the 503's reason, not a silent failure."""
    direct = _upload(page, server, _mel_payload())
    assert direct.status_code == 503
    message = page.locator("#upload-message").inner_text()
    assert page.locator("#upload-message").get_attribute("data-kind") == "error"
    assert "503" in message and direct.json()["detail"][:40] in message
    assert page.locator("#upload-results .card").count() == 0

