"""The service's ASGI middleware: request ids, access log, metrics, request limits and the request timeout.

Each piece is a plain ASGI callable (no ``BaseHTTPMiddleware``, whose per-request task, queue and
``Request``/``Response`` objects cost more than the recommendation itself), does one thing, and passes
everything that is not HTTP straight through. :func:`install_middleware` stacks them on an app, outermost
first::

    RequestId -> AccessLog -> Metrics -> Limits -> Timeout -> the FastAPI app

so that answers produced by a limit (413, 414, 400) or by the timeout (504) carry the request id, are
counted and logged like any other. What each layer costs per request is measured by
``benchmarks/bench_middleware.py`` (figures in BENCHMARKS.md).

Nothing here parses a request body or re-matches a route on the hot path: the route template comes from
``scope["route"]``, which the router records, and the ranking method of a recommendation from
:data:`RECOMMEND_METHOD_KEY`, which the recommend handlers record in the scope.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from app.observability import (
    ASGIApp,
    Message,
    Metrics,
    Receive,
    Scope,
    Send,
    access_logger,
    recommend_method,
    request_id_var,
    route_template,
    sane_request_id,
)
from app.settings import Settings

logger = logging.getLogger(__name__)

_REQUEST_ID = b"x-request-id"
_CONTENT_LENGTH = b"content-length"
_CONTENT_TYPE = b"content-type"
_TRANSFER_ENCODING = b"transfer-encoding"
_MULTIPART = b"multipart/form-data"


async def send_json_error(send: Send, status: int, detail: str) -> None:
    """Answer ``{"detail": ...}`` with ``status``, as FastAPI's own errors look."""
    body = orjson.dumps({"detail": detail})
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))],
    })
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _StatusOf:
    """A ``send`` that passes every message on and remembers the answer's status (500 until one starts)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


# -- request id ------------------------------------------------------------------------------------


class RequestIdMiddleware:
    """Gives every request an id: the caller's ``X-Request-ID`` when it is plain, else a new one.

    The id is returned in the ``X-Request-ID`` response header and held in
    :data:`app.observability.request_id_var` while the request runs, so every log line written for it
    carries the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope["headers"]:
            if key == _REQUEST_ID:
                incoming = value.decode("latin-1")
                break
        rid = sane_request_id(incoming)
        header = (_REQUEST_ID, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The message dict is built for this one send; a new list leaves the response's own headers alone.
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


# -- access log ------------------------------------------------------------------------------------


class AccessLogMiddleware:
    """One ``app.access`` log line per request: method, path, route template, status and duration.

    When ``app.access`` is not enabled for INFO the request passes through untouched, so a service
    that logs at WARNING pays nothing for this layer.

    Parameters
    ----------
    app : the next ASGI application.
    router_app : the FastAPI app, to name the route of requests refused before routing.
    """

    def __init__(self, app: ASGIApp, router_app: Any = None) -> None:
        self.app = app
        self.router_app = router_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = _StatusOf(send)
        try:
            await self.app(scope, receive, answer)
        finally:
            status = answer.status
            ms = (time.perf_counter() - started) * 1000.0
            method = scope["method"]
            path = scope["path"]
            # The record is made here rather than by access_logger.info(): that would look up the caller's
            # frame and copy the extras once more, a third of the cost of a line.
            record = logging.LogRecord(access_logger.name, logging.INFO, __file__, 0, "%s %s %d %.1f ms",
                                       (method, path, status, ms), None)
            record.http_method = method
            record.path = path
            record.route = route_template(scope, self.router_app)
            record.status = status
            record.duration_ms = round(ms, 2)
            access_logger.handle(record)


# -- metrics ---------------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts requests and records their latency by route template, HTTP method and status.

    Successful recommendations are also recorded by ranking method, and successful searches in their
    own histogram. The labelled children are looked up once per (route, method, status) and kept, so a
    request costs two locked increments and a bucket search, not a label lookup per metric.

    Parameters
    ----------
    app : the next ASGI application.
    metrics : where to record.
    router_app : the FastAPI app, to name the route of requests refused before routing.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, router_app: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self.router_app = router_app
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = _StatusOf(send)
        in_progress = self.metrics.in_progress
        in_progress.inc()
        try:
            await self.app(scope, receive, answer)
        except Exception:
            answer.status = 500
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            raise
        finally:
            elapsed = time.perf_counter() - started
            in_progress.dec()
            self._record(scope, answer.status, elapsed)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_template(scope, self.router_app)
        key = (route, scope["method"], status)
        children = self._children.get(key)
        if children is None:
            labels = {"route": route, "method": key[1], "status": str(status)}
            search = self.metrics.search if route == "/search" and 200 <= status < 300 else None
            children = (self.metrics.requests.labels(**labels), self.metrics.latency.labels(**labels), search)
            self._children[key] = children
        count, latency, search = children
        count.inc()
        latency.observe(elapsed)
        if 200 <= status < 300:
            if search is not None:
                search.observe(elapsed)
            elif route.startswith("/recommend"):
                self.metrics.recommend.labels(route=route, method=recommend_method(scope)).observe(elapsed)


# -- limits ----------------------------------------------------------------------------------------


class LimitsMiddleware:
    """Bounds the request target (414) and the request body (413).

    - A path and query string longer than ``max_url_bytes`` together are answered with 414.
    - A ``Content-Length`` over the limit is answered with 413 before anything is read, one that is not a
      number with 400. The server already holds a body to its ``Content-Length``, so such requests pass on
      without copying.
    - A body sent without ``Content-Length`` (chunked) is read completely, up to the limit, before the app
      sees it, so an oversized one is answered with 413 whatever route it was aimed at.

    Requests without a body (every ``GET``) cost one scan of the headers. ``multipart/form-data`` (audio
    uploads) has its own, larger limit.

    Parameters
    ----------
    app : the next ASGI application.
    ops : settings with ``max_body_bytes``, ``max_upload_bytes`` and ``max_url_bytes``.
    metrics : to count refusals; optional.
    """

    def __init__(self, app: ASGIApp, ops: Settings, metrics: Metrics | None = None) -> None:
        self.app = app
        self.ops = ops
        self.metrics = metrics

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejections.labels(reason=reason).inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_bytes = len(scope.get("raw_path") or b"") + len(scope["query_string"])
        if url_bytes > self.ops.max_url_bytes:
            self._reject("uri_too_long")
            await send_json_error(send, 414, f"request target of {url_bytes} bytes is over the limit of "
                                              f"{self.ops.max_url_bytes} bytes")
            return
        length: bytes | None = None
        chunked = False
        multipart = False
        for key, value in scope["headers"]:
            if key == _CONTENT_LENGTH:
                length = value
            elif key == _TRANSFER_ENCODING:
                chunked = True
            elif key == _CONTENT_TYPE and value[:19].lower() == _MULTIPART:
                multipart = True
        if length is None and not chunked:
            await self.app(scope, receive, send)  # no body
            return
        limit = self.ops.max_upload_bytes if multipart else self.ops.max_body_bytes
        if length is not None:
            text = length.decode("latin-1").strip()
            if not text.isdigit():
                self._reject("bad_content_length")
                await send_json_error(send, 400, f"Content-Length: not a number ({text[:40]!r})")
                return
            if int(text) > limit:
                self._reject("body_too_large")
                await send_json_error(send, 413,
                                      f"request body of {int(text)} bytes is over the limit of {limit} bytes")
                return
            await self.app(scope, receive, send)  # the server delivers at most Content-Length bytes
            return
        await self._buffered(scope, receive, send, limit)

    async def _buffered(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away before sending its body; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                self._reject("body_too_large")
                await send_json_error(send, 413, f"request body is over the limit of {limit} bytes")
                return
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body, only a disconnect can come

        await self.app(scope, replay, send)


# -- timeout ---------------------------------------------------------------------------------------


class _Pending:
    """One request under the timeout: its task, its deadline, and whether its answer has begun."""

    __slots__ = ("task", "deadline", "started", "expired")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.started = False
        self.expired = False


class TimeoutMiddleware:
    """Answers 504 to a request that takes longer than ``timeout_s`` and frees its slot at once.

    The request runs in the server's own task; no task or timer is made per request. Requests in flight
    are kept in a dict, and one timer per event loop sweeps it every ``timeout_s / 4`` (at most every
    second) while any request is in flight, cancelling those past their deadline: an ``async`` handler
    stops at its next ``await``, and the wait for a synchronous handler's thread is abandoned (anyio's
    thread wait gives way to a cancellation from outside). So the 504 comes between ``timeout_s`` and
    ``1.25 * timeout_s`` after the request began (``timeout_s + 1`` s for long limits). A thread already
    running cannot be stopped in Python; it finishes in the background and its answer is dropped, which is
    why the API also bounds ``k``, ``limit``, seeds and ``q``. An answer that has begun is never cut.

    A timer per request (``asyncio.timeout``) cost about 10 µs per request here; the sweep about 1 µs.

    Parameters
    ----------
    app : the next ASGI application.
    timeout_s : seconds; 0 or less turns the layer into a pass-through.
    metrics : to count timeouts; optional.
    """

    def __init__(self, app: ASGIApp, timeout_s: float, metrics: Metrics | None = None) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.sweep_s = min(1.0, timeout_s / 4)
        self._pending: dict[int, _Pending] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeping = False

    def _sweep(self) -> None:
        now = time.monotonic()
        for pending in self._pending.values():
            if not pending.expired and not pending.started and now >= pending.deadline:
                pending.expired = True
                pending.task.cancel()
        if self._pending and self._loop is not None:
            self._loop.call_later(self.sweep_s, self._sweep)
        else:
            self._sweeping = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s <= 0:
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI servers always run requests in a task
            await self.app(scope, receive, send)
            return
        pending = _Pending(task, time.monotonic() + self.timeout_s)
        key = id(pending)
        self._pending[key] = pending
        if not self._sweeping or self._loop is not asyncio.get_running_loop():
            # One sweep chain per loop; a new loop (a test client, a restarted server) starts its own.
            self._loop = asyncio.get_running_loop()
            self._sweeping = True
            self._loop.call_later(self.sweep_s, self._sweep)

        async def send_started(message: Message) -> None:
            if message["type"] == "http.response.start":
                pending.started = True  # an answer on its way is never cut
            await send(message)

        try:
            await self.app(scope, receive, send_started)
        except asyncio.CancelledError:
            if not pending.expired:
                raise  # the server or the client cancelled it, not this layer
            task.uncancel()
        else:
            return  # answered (or the client left) before the cancellation arrived
        finally:
            del self._pending[key]
        if self.metrics is not None:
            self.metrics.rejections.labels(reason="timeout").inc()
        logger.warning("request %s %s timed out after %.1f s", scope.get("method"), scope.get("path"), self.timeout_s)
        await send_json_error(
            send, 504, f"the request took longer than the limit of {self.timeout_s:g} s and was abandoned")


# -- wiring ----------------------------------------------------------------------------------------


def install_middleware(app: Any, settings: Settings, metrics: Metrics) -> None:
    """Stack the service's middleware on ``app`` (a FastAPI app), in the order the module docstring gives.

    ``add_middleware`` puts the last one added outermost, hence the reverse order here.
    """
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.request_timeout_s, metrics=metrics)
    app.add_middleware(LimitsMiddleware, ops=settings, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics, router_app=app)
    app.add_middleware(AccessLogMiddleware, router_app=app)
    app.add_middleware(RequestIdMiddleware)
