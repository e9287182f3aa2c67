"""Operations: hot swap of the served artifacts version, request limits, and the wiring of metrics and logs.

:func:`setup_operations` installs everything on an app built by :func:`app.main.create_app`.

Hot swap
--------
The served engine lives in ``app.state.engine`` and every request reads it once, through
:func:`app.deps.get_engine`. A reload therefore

1. reads ``current``; when it names the version already served, nothing happens (``unchanged``);
2. loads and validates the new version completely with :meth:`app.engine.Engine.load`, in a worker
   thread so that requests keep being answered meanwhile;
3. only then replaces ``app.state.engine`` with one reference assignment (``swapped``). Requests already
   in flight hold the old engine object and finish on it; it is freed when the last of them ends.

A version that fails validation is refused (``failed``): the error is logged and returned to the
caller, and the old engine keeps serving. Reloads are serialized by a lock, so two triggers at once
load the new version once. Three triggers exist, all going through the same code:

- ``POST /admin/reload`` with the reload token (``Authorization: Bearer <token>`` or ``X-Reload-Token``);
  it answers with the outcome, or 409 with the reason a version was refused;
- a watcher polling ``artifacts/current`` every ``watch_interval_s`` seconds (0 turns it off); it does not
  retry a refused version until ``current`` is written again;
- ``SIGHUP`` to the server process (when the app runs in the main thread, as under uvicorn).

Limits
------
Request bodies are bounded (``Content-Length`` is checked first, then the bytes actually streamed), and a
request that takes longer than ``request_timeout_s`` is answered with 504 and its worker slot released;
see :class:`LimitsMiddleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.observability import (
    ASGIApp,
    Message,
    Metrics,
    ObservabilityMiddleware,
    Receive,
    Scope,
    Send,
    configure_json_logging,
)
from app.settings import Settings
from mugle_core.artifacts import CURRENT, ArtifactError, read_current, resolve_current

logger = logging.getLogger(__name__)


# -- limits ----------------------------------------------------------------------------------------


async def _send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class LimitsMiddleware:
    """Pure ASGI middleware bounding the request body and the time a request may take.

    The body is read completely (up to the limit) before the app sees it, so an oversized body is
    answered with 413 whatever route it was aimed at and however it was sent (with a
    ``Content-Length`` or chunked). The whole request, body included, runs as a task that is abandoned
    after ``timeout_s``: the client gets 504 at once and the server's event loop is free. A synchronous
    handler already running in a thread cannot be interrupted by Python; it finishes in the background
    and its answer is discarded, which is why the API also bounds ``k``, ``limit``, seeds and ``q`` so
    that no single computation is unbounded.

    Parameters
    ----------
    app : the next ASGI application.
    ops : limits to apply.
    metrics : to count refusals; optional.
    """

    def __init__(self, app: ASGIApp, ops: Settings, metrics: Metrics | None = None) -> None:
        self.app = app
        self.ops = ops
        self.metrics = metrics
        # Tasks abandoned on timeout; kept referenced so they are not garbage-collected mid-run.
        self._abandoned: set[asyncio.Task[None]] = set()

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejections.labels(reason=reason).inc()

    def _body_limit(self, scope: Scope) -> int:
        for key, value in scope.get("headers", ()):
            if key == b"content-type" and value.lower().startswith(b"multipart/form-data"):
                return self.ops.max_upload_bytes
        return self.ops.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._body_limit(scope)
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                text = value.decode("latin-1").strip()
                if not text.isdigit():
                    self._reject("bad_content_length")
                    await _send_json(send, 400, f"Content-Length: not a number ({text[:40]!r})")
                    return
                if int(text) > limit:
                    self._reject("body_too_large")
                    await _send_json(send, 413, f"request body of {int(text)} bytes is over the limit of {limit} bytes")
                    return
        timeout = self.ops.request_timeout_s
        if timeout <= 0:
            await self._handle(scope, receive, send, limit)
            return

        response_started = False
        abandoned = False

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if abandoned:
                return  # the client already has its 504; drop the late answer
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        task = asyncio.ensure_future(self._handle(scope, receive, guarded_send, limit))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done and response_started:
                # The answer is already being written: cutting it now would only corrupt it.
                done, _ = await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        if done:
            task.result()  # re-raise the app's exception, if any, for the error middleware
            return
        abandoned = True
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)
        self._reject("timeout")
        logger.warning("request %s %s timed out after %.1f s", scope.get("method"), scope.get("path"), timeout)
        await _send_json(send, 504, f"the request took longer than the limit of {timeout:g} s and was abandoned")

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("abandoned request ended with %r", task.exception())

    async def _handle(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
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
                await _send_json(send, 413, f"request body is over the limit of {limit} bytes")
                return
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and size <= 65536:
            scope["mugle.body"] = body  # lets the metrics read the recommend method of a POST
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body, only a disconnect can come

        await self.app(scope, replay, send)


# -- hot swap --------------------------------------------------------------------------------------


@dataclass
class ReloadResult:
    """What one reload did.

    Attributes
    ----------
    outcome : ``swapped``, ``unchanged`` or ``failed``.
    version : the version served after the reload.
    previous : the version served before it.
    target : the version ``current`` named (None when it could not be read).
    trigger : ``api``, ``watcher``, ``sighup`` or ``manual``.
    seconds : time spent loading and validating.
    detail : why a version was refused, or a short note.
    at : wall-clock time of the end of the reload (Unix seconds).
    """

    outcome: str
    version: str | None
    previous: str | None
    target: str | None
    trigger: str
    seconds: float
    detail: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _served_dir(app: FastAPI) -> Path | None:
    engine = getattr(app.state, "engine", None)
    return None if engine is None else Path(engine.version_dir)


def _served_version(app: FastAPI) -> str | None:
    engine = getattr(app.state, "engine", None)
    return None if engine is None else str(engine.version)


class Reloader:
    """Loads the version ``current`` names and swaps it in, one reload at a time.

    Parameters
    ----------
    app : the app whose ``state.engine`` is replaced.
    settings : service settings (artifacts folder, FAISS threads).
    metrics : where outcomes are counted.
    watch_interval_s : period of the ``current`` watcher; 0 turns it off.
    """

    def __init__(self, app: FastAPI, settings: Settings, metrics: Metrics, watch_interval_s: float) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.watch_interval_s = watch_interval_s
        self.last: ReloadResult | None = None
        self.counts: dict[str, int] = {"swapped": 0, "unchanged": 0, "failed": 0}
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._signal_tasks: set[asyncio.Task[ReloadResult]] = set()
        self._hup_installed = False
        # (version, pointer mtime) of the last refused target, so the watcher does not retry it every tick.
        self._refused: tuple[str | None, int] | None = None

    @property
    def root(self) -> Path:
        return Path(self.settings.artifacts)

    def _pointer_stamp(self) -> int:
        try:
            return (self.root / CURRENT).stat().st_mtime_ns
        except OSError:
            return 0

    async def reload(self, trigger: str = "manual", force: bool = False) -> ReloadResult:
        """Load the version ``current`` names and serve it, unless it is already served or broken.

        Parameters
        ----------
        trigger : who asked, for the log and the status.
        force : load and swap even when ``current`` names the version already served.

        Returns
        -------
        ReloadResult
            ``failed`` results carry the reason in ``detail``; the old engine keeps serving.
        """
        async with self._lock:
            started = time.perf_counter()
            previous = _served_version(self.app)
            stamp = self._pointer_stamp()
            target: str | None = None
            try:
                target_dir = await asyncio.to_thread(resolve_current, self.root)
                target = target_dir.name
                served = _served_dir(self.app)
                if not force and served is not None and served.resolve() == target_dir.resolve():
                    return self._finish("unchanged", previous, previous, target, trigger, started, "already served")
                from app.engine import Engine  # the engine pulls in FAISS; import where it is needed

                engine = await asyncio.to_thread(Engine.load, target_dir, getattr(self.settings, "faiss_threads", 1))
            except ArtifactError as exc:
                self._refused = (target, stamp)
                return self._finish("failed", previous, previous, target, trigger, started, str(exc))
            except Exception as exc:  # e.g. MemoryError or a FAISS error not wrapped: still refuse, keep serving
                logger.exception("reload of %s failed unexpectedly", target)
                self._refused = (target, stamp)
                detail = f"{type(exc).__name__}: {exc}"
                return self._finish("failed", previous, previous, target, trigger, started, detail)
            # The one step that makes the new version live: a single reference assignment.
            self.app.state.engine = engine
            self._refused = None
            self.metrics.reload_seconds.observe(time.perf_counter() - started)
            return self._finish("swapped", engine.version, previous, target, trigger, started, "")

    def _finish(
        self, outcome: str, version: str | None, previous: str | None, target: str | None, trigger: str,
        started: float, detail: str,
    ) -> ReloadResult:
        result = ReloadResult(
            outcome=outcome, version=version, previous=previous, target=target, trigger=trigger,
            seconds=round(time.perf_counter() - started, 4), detail=detail, at=time.time(),
        )
        self.counts[outcome] += 1
        self.metrics.reloads.labels(outcome=outcome).inc()
        self.last = result
        if outcome == "failed":
            logger.error("reload (%s) refused version %s, still serving %s: %s", trigger, target, previous, detail,
                         extra={"reload_outcome": outcome, "target": target})
        elif outcome == "swapped":
            logger.info("reload (%s): now serving %s (was %s), loaded in %.2f s", trigger, version, previous,
                        result.seconds, extra={"reload_outcome": outcome, "target": target})
        else:
            logger.debug("reload (%s): %s already served", trigger, target)
        return result

    def wants_reload(self) -> bool:
        """Whether ``current`` names a version other than the served one that was not already refused."""
        name = read_current(self.root)
        if name is None:
            return False
        served = _served_dir(self.app)
        if served is not None and served.name == name and served.parent.resolve() == self.root.resolve():
            return False
        return self._refused != (name, self._pointer_stamp())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval_s)
            try:
                if await asyncio.to_thread(self.wants_reload):
                    await self.reload("watcher")
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any single bad look at the disk
                logger.exception("artifacts watcher: unexpected error")

    def _on_sighup(self) -> None:
        logger.info("SIGHUP received: reloading artifacts")
        task = asyncio.get_running_loop().create_task(self.reload("sighup"))
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    async def start(self) -> None:
        """Start the watcher and the SIGHUP handler (called at app startup)."""
        if self.watch_interval_s > 0 and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
            logger.info("watching %s every %.1f s", self.root / CURRENT, self.watch_interval_s)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            # Signal handlers can only be installed from the main thread (not under a test client).
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
                self._hup_installed = True

    async def stop(self) -> None:
        """Stop the watcher and remove the SIGHUP handler (called at app shutdown)."""
        if self._hup_installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._hup_installed = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    def status(self) -> dict[str, Any]:
        """Served version, what ``current`` names, known versions and reload history, for ``/admin/status``."""
        from mugle_core.artifacts import list_versions

        return {
            "version": _served_version(self.app),
            "current": read_current(self.root),
            "versions": list_versions(self.root),
            "watch_interval_s": self.watch_interval_s,
            "reloads": dict(self.counts),
            "last_reload": None if self.last is None else self.last.as_dict(),
        }


# -- wiring ----------------------------------------------------------------------------------------


def setup_operations(app: FastAPI, settings: Settings) -> None:
    """Install metrics, request ids, JSON logs, limits, the admin routes and the hot-swap triggers.

    :func:`app.main.create_app` calls it before mounting the page at ``/`` (a mount there matches every
    path, so routes added after it would never be reached); its lifespan starts and stops the reloader.
    A second call on the same app does nothing. Sets ``app.state.ops_installed``, ``app.state.metrics``,
    ``app.state.reloader`` and ``app.state.ops``.

    Parameters
    ----------
    app : the FastAPI app.
    settings : the service settings; including the operational fields.
    """
    if getattr(app.state, "ops_installed", False):
        return
    ops = settings
    if ops.log_json:
        configure_json_logging(getattr(settings, "log_level", "INFO"))
    metrics = Metrics(lambda: getattr(app.state, "engine", None))
    reloader = Reloader(app, settings, metrics, ops.watch_interval_s)
    app.state.ops = ops
    app.state.metrics = metrics
    app.state.reloader = reloader

    from app.routes.admin import router as admin_router

    app.include_router(admin_router)
    # add_middleware puts the last one outermost: observability wraps the limits, so 413 and 504 answers
    # are counted, logged and carry the request id like any other.
    app.add_middleware(LimitsMiddleware, ops=ops, metrics=metrics)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, router_app=app)
    app.state.ops_installed = True
    logger.debug("operations installed: %s", ops.model_dump())
