"""More than one server process: ``mugle serve --workers N``.

uvicorn's supervisor starts N worker processes on one listening socket; each builds the app with
:func:`app.main.create_app` and loads the served version in its own lifespan, so every worker holds its
own engine (the version's files are shared through the page cache). A hot swap has to reach all of them:

- the ``current`` watcher runs in every worker, so each follows ``current`` within ``watch_interval_s``;
- ``SIGHUP`` to the supervisor is forwarded to every worker, and each reloads in place (uvicorn's own
  supervisor would instead replace the workers one after the other, loading the version N times in turn);
- ``POST /admin/reload`` reaches one worker; after its reload it asks the supervisor, by ``SIGHUP``, to
  pass the reload on to the others (:func:`reload_siblings`).

``GET /health`` names the answering worker (``hostname:pid``) and the version it serves, so a client can
check that every worker has come to the new version.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Set by :func:`run_workers` in the supervisor's environment, which the workers inherit.
SUPERVISOR_ENV = "MUGLE_SUPERVISOR_PID"


def supervisor_pid() -> int | None:
    """The pid of the ``mugle serve --workers`` supervisor this process works for, else None."""
    value = os.environ.get(SUPERVISOR_ENV, "")
    if not value.isdigit():
        return None
    pid = int(value)
    # Only a direct child of that supervisor is one of its workers (not, say, a test runner that inherited it).
    return pid if pid == os.getppid() and pid != os.getpid() else None


def reload_siblings() -> bool:
    """Ask the supervisor to pass a reload on to every worker; False when this process has none."""
    pid = supervisor_pid()
    if pid is None or not hasattr(signal, "SIGHUP"):
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        logger.warning("could not ask the supervisor (pid %d) to reload the other workers: %s", pid, exc)
        return False
    logger.info("asked the supervisor (pid %d) to reload the other workers", pid)
    return True


def _with_app_logs(log_config: dict[str, Any]) -> dict[str, Any]:
    """``log_config`` plus a plain-text handler on the root logger.

    A worker is a fresh interpreter: it gets only what uvicorn configures from ``log_config``, which names
    uvicorn's own loggers, so without this the service's lines (reloads, refusals) would be lost.
    """
    config = copy.deepcopy(log_config)
    config.setdefault("formatters", {})["mugle"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    config.setdefault("handlers", {})["mugle"] = {
        "class": "logging.StreamHandler", "formatter": "mugle", "stream": "ext://sys.stderr"}
    config["root"] = {"handlers": ["mugle"], "level": "INFO"}
    return config


def run_workers(host: str, port: int, workers: int, log_level: str, log_config: dict[str, Any] | None,
                artifacts: Path | None = None) -> None:
    """Serve ``app.main:create_app`` with ``workers`` processes until SIGINT or SIGTERM.

    Parameters
    ----------
    host, port : where to listen.
    workers : number of worker processes (at least 2; one process runs without a supervisor).
    log_level, log_config : as for ``uvicorn.run``.
    artifacts : artifacts folder; passed to the workers through ``MUGLE_ARTIFACTS``.
    """
    import uvicorn
    from uvicorn.supervisors.multiprocess import Multiprocess

    class _Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            # Reload in place everywhere instead of uvicorn's rolling restart of every worker.
            logger.info("SIGHUP: passing the reload on to %d workers", len(self.processes))
            for process in self.processes:
                if process.pid is not None:
                    try:
                        os.kill(process.pid, signal.SIGHUP)
                    except OSError as exc:  # it died meanwhile; keep_subprocess_alive replaces it
                        logger.warning("worker %s: %s", process.pid, exc)

    if log_config is not None:
        log_config = _with_app_logs(log_config)
    if artifacts is not None:
        os.environ["MUGLE_ARTIFACTS"] = str(artifacts)
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    config = uvicorn.Config("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                            log_level=log_level, log_config=log_config, access_log=False)
    sock = config.bind_socket()
    try:
        _Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()
