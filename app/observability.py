"""Observability of the service: Prometheus metrics, request ids and structured (JSON) logs.

Everything here is installed by :func:`app.ops.setup_operations`; nothing in this module imports the
engine's heavy dependencies.

Metrics live in a registry of their own per application instance (not the process-global default
registry), so two apps in one process, as in the tests, never share or collide on counters. Route
labels are the route *templates* (``/recommend/{song_id}``), never raw paths, so the number of series
stays bounded whatever clients send; a request that matches no route is labelled ``unmatched``.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import Match

from mugle_core.names import METHODS

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("app.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is echoed only when it is short and plain, so it is safe in headers and log lines.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
UNMATCHED = "unmatched"
_HOSTNAME = socket.gethostname()
RELOAD_OUTCOMES = ("swapped", "unchanged", "failed")
REJECT_REASONS = ("body_too_large", "bad_content_length", "uri_too_long", "timeout")
#: Where the recommend handlers record the ranking method of the request, for the metrics.
RECOMMEND_METHOD_KEY = "mugle.recommend_method"

#: The id of the request being handled in this context ("-" outside a request).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("mugle_request_id", default="-")

# Latency buckets: most answers take milliseconds, a cold audio query can take seconds.
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SEARCH_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def sane_request_id(value: str | None) -> str:
    """The incoming request id when it is acceptable, else a new random one.

    Parameters
    ----------
    value : the ``X-Request-ID`` header as received, or None.

    Returns
    -------
    str
        ``value`` when it matches a conservative pattern (at most 128 plain characters), else 32 hex digits.
    """
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return os.urandom(16).hex()


# -- logs ------------------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is worth logging.
# uvicorn's ``color_message`` repeats the message with terminal colour codes: noise in a JSON line.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message"}


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the request context, so every line of a request carries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id`` and extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in data:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        # default=str: an extra that is not JSON-native (a Path, an exception) must never break logging.
        return orjson.dumps(data, default=str).decode("utf-8")


_HANDLER_MARK = "_mugle_json_handler"
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_json_logging(level: str = "INFO") -> logging.Handler:
    """Send every log record to stderr as one JSON object per line (idempotent).

    Plain ``StreamHandler`` instances on the root logger (from ``logging.basicConfig``) are replaced so that
    lines are not written twice in two formats; subclasses such as pytest's capture handler are kept.
    uvicorn's own loggers are routed through the same handler, and its access log is silenced because the
    service writes its own access line per request, with the request id.

    Parameters
    ----------
    level : level of the ``app`` loggers.

    Returns
    -------
    logging.Handler
        The JSON handler on the root logger.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
    if handler is None:
        for old in list(root.handlers):
            if type(old) is logging.StreamHandler:
                root.removeHandler(old)
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.getLogger("app").setLevel(level.upper())
    route_uvicorn_logs()
    return handler


def route_uvicorn_logs() -> None:
    """Make uvicorn's loggers propagate to the root JSON handler instead of printing plain text.

    uvicorn configures its loggers when its ``Config`` is built, which may happen after the app was
    created, so this is also called again at startup.
    """
    for name in _UVICORN_LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = name != "uvicorn.access"
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


# -- metrics ---------------------------------------------------------------------------------------


class _EngineCollector(Collector):
    """Facts of the served version, read from the app at scrape time so they can never go stale."""

    def __init__(self, get_engine: Callable[[], Any]) -> None:
        self._get_engine = get_engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self._get_engine()
        version = GaugeMetricFamily(
            "mugle_artifacts_version", "The artifacts version being served (value 1)", labels=["version"]
        )
        songs = GaugeMetricFamily("mugle_artifacts_songs", "Songs in the served catalog")
        vectors = GaugeMetricFamily("mugle_artifacts_vectors", "Indexed songs per model", labels=["model"])
        load = GaugeMetricFamily("mugle_artifacts_load_seconds", "Seconds it took to load the served version")
        if engine is not None:
            version.add_metric([str(engine.version)], 1.0)
            songs.add_metric([], float(len(engine.catalog)))
            for model, count in engine.model_counts().items():
                vectors.add_metric([model], float(count))
            load.add_metric([], float(getattr(engine, "load_seconds", 0.0)))
        yield version
        yield songs
        yield vectors
        yield load

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Describing without collecting keeps registration free of any engine access.
        return iter(())


class Metrics:
    """All metrics of one application instance, in their own registry.

    Parameters
    ----------
    get_engine : returns the engine being served (or None); read at scrape time.
    """

    def __init__(self, get_engine: Callable[[], Any]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["route", "method", "status"]
        self.requests = Counter(
            "mugle_http_requests", "HTTP requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "mugle_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer",
            labels,
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "mugle_http_requests_in_progress", "HTTP requests being handled", registry=self.registry
        )
        self.recommend = Histogram(
            "mugle_recommend_duration_seconds",
            "Latency of successful recommendation requests by ranking method",
            ["route", "method"],
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        self.search = Histogram(
            "mugle_search_duration_seconds",
            "Latency of successful title searches (GET /search)",
            buckets=_SEARCH_BUCKETS,
            registry=self.registry,
        )
        self.reloads = Counter(
            "mugle_reloads", "Hot reloads of the artifacts version by outcome", ["outcome"], registry=self.registry
        )
        self.reload_seconds = Histogram(
            "mugle_reload_duration_seconds",
            "Time to load and validate a new version during a hot reload",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
            registry=self.registry,
        )
        self.rejections = Counter(
            "mugle_requests_rejected", "Requests refused by a service limit", ["reason"], registry=self.registry
        )
        # Series that exist from the start read 0 instead of being absent, which keeps rate() and alerts simple.
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome=outcome)
        for reason in REJECT_REASONS:
            self.rejections.labels(reason=reason)
        self.registry.register(_EngineCollector(get_engine))


def _match_route(routes: Any, scope: Scope, depth: int = 0) -> Any:
    """The route among ``routes`` that fully matches (else the first partial match), or None."""
    partial = None
    for candidate in routes:
        match, child = candidate.matches(scope)
        if match == Match.NONE:
            continue
        # FastAPI wraps included routers; look inside for the route itself.
        inner = getattr(candidate, "original_router", None)
        found = child.get("route", candidate)
        if inner is not None and depth < 8:
            found = _match_route(getattr(inner, "routes", ()), scope, depth + 1) or found
        if match == Match.FULL:
            return found
        if partial is None:
            partial = found
    return partial


def route_template(scope: Scope, app: Any) -> str:
    """The template of the route that handled (or would handle) a request, for bounded labels.

    Starlette records the matched route in ``scope["route"]``; a request refused before routing (for
    example by the body limit) is matched here against the app's routes instead.
    """
    route = scope.get("route")
    if route is None and app is not None:
        route = _match_route(getattr(app, "routes", ()), scope)
    if route is None:
        return UNMATCHED
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    # A mount at "/" (the web page) has the empty path.
    return path or "/"


def recommend_method(scope: Scope) -> str:
    """The ranking method a recommend request used, as a bounded label.

    The recommend handlers record it in the scope under :data:`RECOMMEND_METHOD_KEY` (see
    :func:`note_recommend_method`); a request that did not get that far counts as the default method.
    """
    method = scope.get(RECOMMEND_METHOD_KEY) or "score_total"
    return method if method in METHODS else "other"


def note_recommend_method(scope: Scope, method: str) -> None:
    """Record the ranking method a recommend handler used, for the metrics (no body is parsed twice)."""
    scope[RECOMMEND_METHOD_KEY] = method


def worker_id() -> str:
    """This process's name in answers and logs: ``hostname:pid`` (a container's hostname is its id)."""
    return f"{_HOSTNAME}:{os.getpid()}"
