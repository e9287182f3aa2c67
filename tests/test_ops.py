"""Operations in process: hot reload, watcher, rollback commands, metrics, request ids, logs, limits, CORS."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.observability import JsonFormatter, RequestIdFilter
from app.settings import Settings
from mugle_cli.main import main as cli_main
from mugle_core.artifacts import CURRENT, MANIFEST, ArtifactError, index_file, list_versions, read_current, set_current
from tests.synthetic import song_id_of, write_synthetic_version

logger = logging.getLogger(__name__)

TOKEN = "test-reload-token-7"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
A, B = "v-a", "v-b"
ONLY_IN_B = song_id_of(80)  # version A has 60 songs, B has 90


def build_app(root: Path, monkeypatch: pytest.MonkeyPatch, token: str | None = TOKEN,
              cors: list[str] | None = None, **env: object) -> FastAPI:
    """The service app over ``root``, with operations installed whether or not create_app does it yet."""
    env = {"watch_interval_s": 0, **env}
    for key, value in env.items():
        monkeypatch.setenv(f"MUGLE_{key.upper()}", str(value))
    settings = Settings(artifacts=root, reload_token=token, cors_origins=cors or [])
    return create_app(settings)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """Artifacts with version A current and version B written but not current."""
    art = tmp_path / "artifacts"
    write_synthetic_version(art, n_songs=60, seed=1, version=A)
    write_synthetic_version(art, n_songs=90, seed=2, version=B, set_as_current=False)
    return art


def scrape(client: TestClient) -> dict[str, list]:
    """``/metrics`` parsed by prometheus_client's own parser: family name -> samples."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {fam.name: fam.samples for fam in text_string_to_metric_families(r.text)}


def value(samples: list, name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


# -- hot reload --------------------------------------------------------------------------------------


def test_reload_swaps_validated_version_and_rolls_back(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(build_app(root, monkeypatch)) as client:
        assert client.get("/health").json()["version"] == A
        assert client.get(f"/songs/{ONLY_IN_B}").status_code == 404

        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 200 and r.json()["outcome"] == "unchanged"

        set_current(root, B)
        r = client.post("/admin/reload", headers={"X-Reload-Token": TOKEN})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["outcome"], body["version"], body["previous"], body["trigger"]) == ("swapped", B, A, "api")
        health = client.get("/health").json()
        assert health["version"] == B and health["songs"] == 90
        assert client.get(f"/songs/{ONLY_IN_B}").status_code == 200

        # Rollback: the operator points `current` back with the CLI, then reloads.
        assert cli_main(["artifacts", "use", A, "--artifacts", str(root)]) == 0
        assert client.post("/admin/reload", headers=AUTH).json()["outcome"] == "swapped"
        assert client.get("/health").json()["version"] == A
        assert client.get(f"/songs/{ONLY_IN_B}").status_code == 404

        # force reloads even the served version
        r = client.post("/admin/reload?force=true", headers=AUTH)
        assert r.json()["outcome"] == "swapped" and r.json()["version"] == A

        status = client.get("/admin/status", headers=AUTH).json()
        assert status["version"] == A and status["current"] == A
        assert status["versions"] == [A, B]
        assert status["reloads"] == {"swapped": 3, "unchanged": 1, "failed": 0}


def test_concurrent_reloads_are_serialized(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(build_app(root, monkeypatch)) as client:
        set_current(root, B)
        results: list[str] = []

        def post() -> None:
            results.append(client.post("/admin/reload", headers=AUTH).json()["outcome"])

        threads = [threading.Thread(target=post) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        # the lock lets one load happen; the others find the new version already served
        assert sorted(results) == ["swapped", "unchanged", "unchanged", "unchanged"]
        assert client.get("/health").json()["version"] == B


def test_reload_refuses_broken_version_and_keeps_serving(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_synthetic_version(root, n_songs=70, seed=3, version="v-broken", set_as_current=False)
    (root / "v-broken" / index_file("cel")).unlink()
    with TestClient(build_app(root, monkeypatch)) as client:
        before = client.get("/recommend/1003").json()
        # `mugle artifacts use` refuses an incomplete version; a hand-edited pointer must be refused on reload.
        with pytest.raises(ArtifactError, match="cel.index"):
            set_current(root, "v-broken")
        (root / CURRENT).write_text("v-broken\n", encoding="utf-8")
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 409
        assert "v-broken" in r.json()["detail"] and "cel.index" in r.json()["detail"]
        assert client.get("/health").json()["version"] == A
        assert client.get("/recommend/1003").json() == before
        samples = scrape(client)["mugle_reloads"]
        assert value(samples, "mugle_reloads_total", outcome="failed") == 1
        assert value(samples, "mugle_reloads_total", outcome="swapped") == 0


def test_admin_endpoints_need_the_token(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(build_app(root, monkeypatch, token=None)) as client:
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 403 and "MUGLE_RELOAD_TOKEN" in r.json()["detail"]
        assert client.get("/admin/status", headers=AUTH).status_code == 403
    set_current(root, B)
    with TestClient(build_app(root, monkeypatch)) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"X-Reload-Token": TOKEN + "x"},
                        {"Authorization": f"Basic {TOKEN}"}):
            r = client.post("/admin/reload", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"] == "Bearer"
        # none of the refused calls reloaded anything: the app still serves what it started with
        assert client.get("/admin/status", headers=AUTH).json()["reloads"]["swapped"] == 0


def test_watcher_follows_current_and_does_not_retry_a_refused_version(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic_version(root, n_songs=50, seed=4, version="v-lying", set_as_current=False)
    manifest = json.loads((root / "v-lying" / MANIFEST).read_text())
    manifest["models"]["tcae"]["dim"] = 99  # the manifest lies about a dimension
    (root / "v-lying" / MANIFEST).write_text(json.dumps(manifest))

    def wait_for(predicate, seconds: float = 5.0) -> bool:  # noqa: ANN001 - a zero-argument callable
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    with TestClient(build_app(root, monkeypatch, watch_interval_s=0.1)) as client:
        set_current(root, B)
        assert wait_for(lambda: client.get("/health").json()["version"] == B)

        set_current(root, "v-lying")
        assert wait_for(lambda: client.get("/admin/status", headers=AUTH).json()["reloads"]["failed"] == 1)
        time.sleep(0.6)  # several more ticks: the refused version is not loaded again and again
        status = client.get("/admin/status", headers=AUTH).json()
        assert status["reloads"]["failed"] == 1
        assert status["last_reload"]["trigger"] == "watcher"
        assert "dimensions disagree" in status["last_reload"]["detail"]
        assert client.get("/health").json()["version"] == B

        set_current(root, A)  # writing `current` again is picked up as usual
        assert wait_for(lambda: client.get("/health").json()["version"] == A)


# -- rollback commands ---------------------------------------------------------------------------------


def test_artifacts_cli_list_use_prune(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["artifacts", "list", "--artifacts", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0:2] for ln in lines] == [["*", A], [B, "created"]]

    assert cli_main(["artifacts", "use", "v-missing", "--artifacts", str(root)]) == 2
    assert "no such version" in capsys.readouterr().err
    assert read_current(root) == A

    write_synthetic_version(root, n_songs=40, seed=5, version="v-bad-manifest", set_as_current=False)
    (root / "v-bad-manifest" / MANIFEST).write_text("{ truncated")
    assert cli_main(["artifacts", "use", "v-bad-manifest", "--artifacts", str(root)]) == 2
    assert "manifest" in capsys.readouterr().err
    assert read_current(root) == A
    for bad in ("../etc", "current"):
        assert cli_main(["artifacts", "use", bad, "--artifacts", str(root)]) == 2
        assert read_current(root) == A

    assert cli_main(["artifacts", "use", B, "--artifacts", str(root)]) == 0
    assert read_current(root) == B

    for i, name in enumerate(("v-c", "v-d")):
        write_synthetic_version(root, n_songs=30, seed=10 + i, version=name, set_as_current=False)
    set_current(root, A)  # the oldest is current: prune must keep it anyway
    assert cli_main(["artifacts", "prune", "--keep", "1", "--artifacts", str(root)]) == 0
    assert list_versions(root) == [A, "v-d"]
    assert read_current(root) == A
    assert cli_main(["artifacts", "prune", "--keep", "0", "--artifacts", str(root)]) == 0
    assert list_versions(root) == [A]


# -- metrics -----------------------------------------------------------------------------------------


def test_metrics_are_scraped_with_bounded_labels(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(build_app(root, monkeypatch)) as client:
        assert client.get("/search", params={"q": "봄날"}).status_code == 200
        assert client.get("/search", params={"q": "love"}).status_code == 200
        for sid in (1003, 1006, 1009):
            assert client.get(f"/recommend/{sid}", params={"method": "cel", "k": 5}).status_code == 200
        assert client.get("/recommend/1003").status_code == 200
        r = client.post("/recommend", json={"song_ids": [1003, 1006], "method": "each_top3"})
        assert r.status_code == 200
        assert client.get("/recommend/999999").status_code == 404
        assert client.get("/songs/no-such-thing-xyz").status_code in (404, 422)
        families = scrape(client)

        http = families["mugle_http_requests"]
        assert value(http, "mugle_http_requests_total", route="/recommend/{song_id}", method="GET", status="200") == 4
        assert value(http, "mugle_http_requests_total", route="/recommend/{song_id}", method="GET", status="404") == 1
        assert value(http, "mugle_http_requests_total", route="/search", method="GET", status="200") == 2
        assert value(http, "mugle_http_requests_total", route="/recommend", method="POST", status="200") == 1
        assert not any("999999" in s.labels["route"] or "xyz" in s.labels["route"] for s in http)
        latency = families["mugle_http_request_duration_seconds"]
        assert value(latency, "mugle_http_request_duration_seconds_count", route="/search", method="GET",
                     status="200") == 2
        assert value(latency, "mugle_http_request_duration_seconds_bucket", route="/search", method="GET",
                     status="200", le="+Inf") == 2

        rec = families["mugle_recommend_duration_seconds"]
        assert value(rec, "mugle_recommend_duration_seconds_count", route="/recommend/{song_id}", method="cel") == 3
        assert value(rec, "mugle_recommend_duration_seconds_count", route="/recommend/{song_id}",
                     method="score_total") == 1
        assert value(rec, "mugle_recommend_duration_seconds_count", route="/recommend", method="each_top3") == 1
        assert value(families["mugle_search_duration_seconds"], "mugle_search_duration_seconds_count") == 2

        assert value(families["mugle_artifacts_version"], "mugle_artifacts_version", version=A) == 1
        assert value(families["mugle_artifacts_songs"], "mugle_artifacts_songs") == 60
        for outcome in ("swapped", "unchanged", "failed"):
            assert value(families["mugle_reloads"], "mugle_reloads_total", outcome=outcome) == 0

        set_current(root, B)
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
        families = scrape(client)
        versions = {s.labels["version"]: s.value for s in families["mugle_artifacts_version"]}
        assert versions == {B: 1.0}
        assert value(families["mugle_reloads"], "mugle_reloads_total", outcome="swapped") == 1
        assert value(families["mugle_reload_duration_seconds"], "mugle_reload_duration_seconds_count") == 1

    # A second app has a registry of its own: nothing leaks between instances.
    with TestClient(build_app(root, monkeypatch)) as other:
        http = scrape(other)["mugle_http_requests"]
        assert value(http, "mugle_http_requests_total", route="/search", method="GET", status="200") is None


# -- request ids and logs --------------------------------------------------------------------------------


def test_request_id_is_echoed_or_generated(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(build_app(root, monkeypatch)) as client:
        assert client.get("/health", headers={"X-Request-ID": "trace-42.a"}).headers["x-request-id"] == "trace-42.a"
        generated = set()
        for bad in (None, "has spaces in it", "x" * 200, "semi;colon"):
            headers = {"X-Request-ID": bad} if bad else {}
            rid = client.get("/health", headers=headers).headers["x-request-id"]
            assert rid != bad and len(rid) == 32 and int(rid, 16) >= 0
            generated.add(rid)
        assert len(generated) == 4
        # also on answers produced by the service's limits and on errors
        assert "x-request-id" in client.get("/recommend/999999").headers


def test_json_log_lines_carry_the_request_id(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    app_logger = logging.getLogger("app")
    app_logger.addHandler(handler)
    old_level = app_logger.level
    app_logger.setLevel(logging.INFO)
    try:
        with TestClient(build_app(root, monkeypatch)) as client:
            client.get("/search", params={"q": "밤편지"}, headers={"X-Request-ID": "req-json-1"})
            set_current(root, B)
            client.post("/admin/reload", headers={**AUTH, "X-Request-ID": "req-json-2"})
    finally:
        app_logger.removeHandler(handler)
        app_logger.setLevel(old_level)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "app.access" and r["request_id"] == "req-json-1"]
    assert len(access) == 1
    assert access[0]["route"] == "/search" and access[0]["status"] == 200 and access[0]["duration_ms"] > 0
    swapped = [r for r in records if r.get("reload_outcome") == "swapped"]
    assert len(swapped) == 1 and swapped[0]["request_id"] == "req-json-2" and swapped[0]["level"] == "INFO"
    assert all({"ts", "level", "logger", "message", "request_id"} <= r.keys() for r in records)


# -- limits and CORS -----------------------------------------------------------------------------------


def test_body_size_is_bounded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(build_app(root, monkeypatch, max_body_bytes=2048)) as client:
        small = {"song_ids": [1003, 1006], "k": 5}
        assert client.post("/recommend", json=small).status_code == 200
        big = json.dumps({"song_ids": [1003] * 20, "k": 5, "pad": "x" * 5000}).encode()
        r = client.post("/recommend", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "2048" in r.json()["detail"]

        def chunks():  # no Content-Length: the streamed size is what is checked
            for _ in range(10):
                yield b" " * 1000

        r = client.post("/recommend", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "2048" in r.json()["detail"]
        rejected = scrape(client)["mugle_requests_rejected"]
        assert value(rejected, "mugle_requests_rejected_total", reason="body_too_large") == 2
        http = scrape(client)["mugle_http_requests"]
        assert value(http, "mugle_http_requests_total", route="/recommend", method="POST", status="413") == 2
        # the service still answers normally afterwards
        assert client.post("/recommend", json=small).status_code == 200
        # the other request bounds of the API hold behind the limits layer
        assert client.post("/recommend", json={"song_ids": list(range(1000, 1101))}).status_code == 422
        assert client.get("/search", params={"q": "x" * 201}).status_code == 422


def test_slow_request_is_answered_504_without_waiting(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = build_app(root, monkeypatch, request_timeout_s=0.3)

    def slow() -> dict[str, bool]:
        time.sleep(1.5)  # stands for a pathological computation in a worker thread
        return {"done": True}

    app.add_api_route("/slow-for-test", slow)
    app.router.routes.insert(0, app.router.routes.pop())  # in front of the web page's catch-all mount
    with TestClient(app) as client:
        started = time.monotonic()
        r = client.get("/slow-for-test")
        elapsed = time.monotonic() - started
        assert r.status_code == 504 and "0.3 s" in r.json()["detail"]
        assert elapsed < 1.2, elapsed
        assert client.get("/health").status_code == 200
        rejected = scrape(client)["mugle_requests_rejected"]
        assert value(rejected, "mugle_requests_rejected_total", reason="timeout") == 1


def test_cors_allows_no_origin_by_default(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preflight = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"}
    with TestClient(build_app(root, monkeypatch)) as client:
        r = client.get("/health", headers={"Origin": "http://elsewhere.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = client.options("/health", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with TestClient(build_app(root, monkeypatch, cors=["http://ok.example"])) as client:
        r = client.get("/health", headers={"Origin": "http://ok.example"})
        assert r.headers["access-control-allow-origin"] == "http://ok.example"
        r = client.get("/health", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in r.headers
