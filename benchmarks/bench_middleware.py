"""What each piece of the service's middleware costs per request, in process, on a bare FastAPI app.

A FastAPI app with one ``async`` route returning ``{"status": "ok"}`` is called directly as an ASGI app
(no server, no socket) with the middleware of :mod:`app.middleware` stacked one piece at a time, in the
order :func:`app.middleware.install_middleware` stacks them. Each configuration serves ``--requests``
requests per turn; the configurations take turns ``--rounds`` times and the median turn is reported, so
a change in what else runs on the machine falls on all of them alike. Times are this process's CPU time
(``time.process_time``), which waiting for a core shared with other work does not inflate. The event
loop is uvloop's, as under the server.

Usage::

    python benchmarks/bench_middleware.py --requests 5000 --rounds 9
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi import FastAPI  # noqa: E402

from app.middleware import (  # noqa: E402
    AccessLogMiddleware,
    LimitsMiddleware,
    MetricsMiddleware,
    RequestIdMiddleware,
    TimeoutMiddleware,
)
from app.observability import JsonFormatter, Metrics, RequestIdFilter, access_logger  # noqa: E402
from app.settings import Settings  # noqa: E402

logger = logging.getLogger(__name__)

# (label, what to add) in stacking order, innermost first; each configuration adds one more.
Piece = tuple[str, Callable[[FastAPI, Settings, Metrics], None]]
PIECES: list[Piece] = [
    ("+ timeout", lambda app, s, m: app.add_middleware(TimeoutMiddleware, timeout_s=s.request_timeout_s, metrics=m)),
    ("+ limits", lambda app, s, m: app.add_middleware(LimitsMiddleware, ops=s, metrics=m)),
    ("+ metrics", lambda app, s, m: app.add_middleware(MetricsMiddleware, metrics=m, router_app=app)),
    ("+ access log (off: level WARNING)", lambda app, s, m: app.add_middleware(AccessLogMiddleware, router_app=app)),
    ("+ request id", lambda app, s, m: app.add_middleware(RequestIdMiddleware)),
]


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


def build(n_pieces: int) -> Any:
    settings = Settings()
    app = bare_app()
    metrics = Metrics(lambda: None)
    for _, add in PIECES[:n_pieces]:
        add(app, settings, metrics)
    return app


SCOPE: dict[str, Any] = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/ping", "raw_path": b"/ping", "query_string": b"", "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
}


async def turn(app: Any, requests: int) -> float:
    """Mean CPU microseconds per request over ``requests`` calls."""
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    start = time.process_time()
    for _ in range(requests):
        await app({**SCOPE, "headers": list(SCOPE["headers"]), "state": {}}, receive, send)
    elapsed = time.process_time() - start
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}")
    return elapsed / requests * 1e6


async def run(requests: int, rounds: int) -> list[tuple[str, float, float, float]]:
    configs: list[tuple[str, Any, bool]] = [("bare FastAPI app", build(0), False)]
    for i, (label, _) in enumerate(PIECES, start=1):
        configs.append((label, build(i), False))
    configs.append(("all, access log on (level INFO, JSON lines)", build(len(PIECES)), True))
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the run
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    access_logger.addHandler(handler)
    access_logger.propagate = False
    times: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    for _, app, _ in configs:  # warm-up: build the middleware stacks, fill caches
        await turn(app, 200)
    for _ in range(rounds):
        for label, app, log_on in configs:
            access_logger.setLevel(logging.INFO if log_on else logging.WARNING)
            times[label].append(await turn(app, requests))
    rows = []
    previous = None
    for label, _, _ in configs:
        median = statistics.median(times[label])
        step = median - previous if previous is not None and not label.startswith("all") else float("nan")
        rows.append((label, median, min(times[label]), step))
        if not label.startswith("all"):
            previous = median
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per configuration and turn")
    parser.add_argument("--rounds", type=int, default=9, help="turns each configuration takes")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - the project installs it
        runner = asyncio.run
    rows = runner(run(args.requests, args.rounds))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| stack (innermost piece first) | CPU µs/request, median | min | this piece |")
    print("|---|---|---|---|")
    for label, median, best, step in rows:
        piece = "" if step != step else f"{step:+.1f}"  # NaN: no step
        print(f"| {label} | {median:.1f} | {best:.1f} | {piece} |")


if __name__ == "__main__":
    main()
