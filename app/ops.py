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
Request targets and bodies are bounded, and a request that takes longer than ``request_timeout_s`` is
answered with 504 and its slot released; see :mod:`app.middleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.middleware import install_middleware
from app.observability import Metrics, configure_json_logging
from app.settings import Settings
from mugle_core.artifacts import CURRENT, ArtifactError, read_current, resolve_current

logger = logging.getLogger(__name__)


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
    install_middleware(app, ops, metrics)
    app.state.ops_installed = True
    logger.debug("operations installed: %s", ops.model_dump())
