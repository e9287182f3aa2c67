"""Each ASGI middleware layer on a small FastAPI app of its own: limits (413, 414, 400), the timeout (async and
sync handlers, an answer already begun), request ids on refusals, and the route and method labels."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.middleware import install_middleware
from app.observability import Metrics, note_recommend_method
from app.settings import Settings

logger = logging.getLogger(__name__)


def make_app(**limits: object) -> tuple[FastAPI, Metrics]:
    settings = Settings(**limits)
    app = FastAPI()
    metrics = Metrics(lambda: None)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/recommend")
    async def recommend(request: Request) -> dict[str, str]:
        body = await request.json()
        note_recommend_method(request.scope, body["method"])
        return {"method": body["method"]}

    @app.get("/sleep-async")
    async def sleep_async(seconds: float) -> dict[str, bool]:
        await asyncio.sleep(seconds)
        return {"done": True}

    @app.get("/sleep-sync")
    def sleep_sync(seconds: float) -> dict[str, bool]:
        time.sleep(seconds)  # stands for a long computation in a worker thread
        return {"done": True}

    @app.get("/stream")
    async def stream(seconds: float) -> StreamingResponse:
        async def parts():
            yield b"first;"
            await asyncio.sleep(seconds)  # the answer has begun: the timeout must not cut it
            yield b"second"

        return StreamingResponse(parts(), media_type="text/plain")

    install_middleware(app, settings, metrics)
    return app, metrics


def samples(metrics: Metrics) -> dict[str, list]:
    text = generate_latest(metrics.registry).decode()
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def value(fams: dict[str, list], family: str, name: str, **labels: str) -> float | None:
    for s in fams.get(family, []):
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_long_request_target_is_refused_with_414() -> None:
    app, metrics = make_app(max_url_bytes=256)
    with TestClient(app) as client:
        assert client.get("/items/1", params={"q": "x" * 100}).status_code == 200
        r = client.get("/items/1", params={"q": "x" * 300}, headers={"X-Request-ID": "long-1"})
        assert r.status_code == 414 and "256" in r.json()["detail"]
        assert r.headers["x-request-id"] == "long-1"
    fams = samples(metrics)
    assert value(fams, "mugle_requests_rejected", "mugle_requests_rejected_total", reason="uri_too_long") == 1
    assert value(fams, "mugle_http_requests", "mugle_http_requests_total", route="/items/{item_id}",
                 method="GET", status="414") == 1


def test_body_limits_and_a_bad_content_length() -> None:
    app, metrics = make_app(max_body_bytes=64)
    with TestClient(app) as client:
        assert client.post("/recommend", json={"method": "cel"}).json() == {"method": "cel"}
        big = json.dumps({"method": "cel", "pad": "x" * 100})
        r = client.post("/recommend", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "64" in r.json()["detail"] and "x-request-id" in r.headers
        chunked = client.post("/recommend", content=iter([b'{"method": "cel", ', b'"pad": "' + b"x" * 80 + b'"}']))
        assert chunked.status_code == 413
        small_chunks = client.post("/recommend", content=iter([b'{"method": ', b'"tcae"}']),
                                   headers={"Content-Type": "application/json"})
        assert small_chunks.status_code == 200 and small_chunks.json() == {"method": "tcae"}
        bad = client.post("/recommend", content=b"{}", headers={"Content-Length": "abc"})
        assert bad.status_code == 400
        assert client.get("/items/not-a-number").status_code == 422  # the app's own validation, untouched
    fams = samples(metrics)
    assert value(fams, "mugle_requests_rejected", "mugle_requests_rejected_total", reason="body_too_large") == 2
    # the ranking method comes from what the handler recorded, never from the body
    assert value(fams, "mugle_recommend_duration_seconds", "mugle_recommend_duration_seconds_count",
                 route="/recommend", method="cel") == 1
    assert value(fams, "mugle_recommend_duration_seconds", "mugle_recommend_duration_seconds_count",
                 route="/recommend", method="tcae") == 1


@pytest.mark.parametrize("path", ["/sleep-async", "/sleep-sync"])
def test_timeout_answers_504_and_frees_the_request(path: str) -> None:
    app, metrics = make_app(request_timeout_s=0.2)
    with TestClient(app) as client:
        assert client.get(path, params={"seconds": 0.01}).json() == {"done": True}
        started = time.monotonic()
        r = client.get(path, params={"seconds": 2.0})
        elapsed = time.monotonic() - started
        assert r.status_code == 504 and "0.2 s" in r.json()["detail"] and "x-request-id" in r.headers
        # the sweep runs every timeout/4: the answer comes between 0.2 and about 0.25 s, far from 2 s
        assert 0.19 <= elapsed < 1.0, elapsed
        assert client.get("/items/3").status_code == 200
    fams = samples(metrics)
    assert value(fams, "mugle_requests_rejected", "mugle_requests_rejected_total", reason="timeout") == 1
    assert value(fams, "mugle_http_requests", "mugle_http_requests_total", route=path, method="GET", status="504") == 1


def test_timeout_never_cuts_an_answer_that_has_begun() -> None:
    app, _ = make_app(request_timeout_s=0.2)
    with TestClient(app) as client:
        r = client.get("/stream", params={"seconds": 0.5})
        assert r.status_code == 200 and r.text == "first;second"


def test_timeout_off_and_access_log_line(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = make_app(request_timeout_s=0)
    with caplog.at_level(logging.INFO, logger="app.access"), TestClient(app) as client:
        assert client.get("/sleep-async", params={"seconds": 0.05}).status_code == 200
        client.get("/items/7", headers={"X-Request-ID": "log-7"})
    lines = [r for r in caplog.records if r.name == "app.access"]
    line = next(r for r in lines if getattr(r, "path", "") == "/items/7")
    assert line.route == "/items/{item_id}" and line.status == 200 and line.http_method == "GET"
    assert line.duration_ms >= 0 and line.getMessage().startswith("GET /items/7 200")
