"""``mugle serve --workers 3``: a real multi-process server whose every worker follows a hot swap.

Each trigger is tried in turn on the same server: the ``current`` watcher, ``POST /admin/reload``
(answered by one worker, passed on to the others through the supervisor) and ``SIGHUP`` to the
supervisor. After each, ``/health`` is polled on fresh connections until every worker has answered with
the new version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mugle_core.artifacts import set_current
from tests.fixtures.servers import REPO, running_server
from tests.fixtures.synthetic import write_synthetic_version

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

WORKERS = 3
TOKEN = "workers-test-token"
A, B = "v-a", "v-b"


def _health(base: str) -> dict:
    # A new connection per request, so the kernel hands it to any of the workers.
    request = urllib.request.Request(base + "/health", headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=5) as res:
        return json.loads(res.read())


def _answers(base: str, n: int = 24) -> list[dict]:
    """``n`` health answers from concurrent clients, so that busy and idle workers both get some."""
    out: list[dict] = []
    lock = threading.Lock()

    def ask() -> None:
        for _ in range(n // 6):
            body = _health(base)
            with lock:
                out.append(body)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


def _wait_all(base: str, workers: set[str], version: str, timeout: float = 30.0) -> None:
    """Poll until every worker in ``workers`` has answered with ``version`` (each one's latest answer)."""
    latest: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for body in _answers(base):
            latest[body["worker"]] = body["version"]
        if set(latest) >= workers and all(latest[w] == version for w in workers):
            return
        time.sleep(0.1)
    pytest.fail(f"not every worker came to {version} within {timeout:.0f} s: {latest}")


def _serve(root: Path, log: Path, watch_s: float) -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen]]:
    env = {"PYTHONPATH": str(REPO), "MUGLE_RELOAD_TOKEN": TOKEN, "MUGLE_WATCH_INTERVAL_S": str(watch_s)}
    return running_server(root, log, env=env, workers=WORKERS, timeout=90)


def _workers(base: str, timeout: float = 60.0) -> set[str]:
    """The ids of all the server's workers, once each has answered at least once."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < WORKERS and time.monotonic() < deadline:
        seen |= {body["worker"] for body in _answers(base)}
    assert len(seen) == WORKERS, f"saw {len(seen)} of {WORKERS} workers: {seen}"
    return seen


def test_every_worker_follows_each_hot_swap_trigger(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    write_synthetic_version(root, n_songs=60, seed=1, version=A)
    write_synthetic_version(root, n_songs=90, seed=2, version=B, set_as_current=False)
    # The watcher is off first, so that the API and SIGHUP triggers are what moves the workers.
    with _serve(root, tmp_path / "triggers.log", watch_s=0) as (base, proc):
        workers = _workers(base)
        pids = {int(w.rsplit(":", 1)[1]) for w in workers}
        assert proc.pid not in pids and len(pids) == WORKERS
        _wait_all(base, workers, A)

        # POST /admin/reload reaches one worker; the supervisor passes it on to the others.
        set_current(root, B)
        request = urllib.request.Request(base + "/admin/reload", method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"})
        with urllib.request.urlopen(request, timeout=30) as res:
            answer = json.loads(res.read())
        assert answer["outcome"] == "swapped" and answer["version"] == B
        _wait_all(base, workers, B)

        # SIGHUP to the supervisor: every worker reloads in place (same pids, no restart).
        set_current(root, A)
        proc.send_signal(signal.SIGHUP)
        _wait_all(base, workers, A)
        assert _workers(base) == workers, "SIGHUP restarted workers instead of reloading them"
        assert proc.poll() is None

    # The watcher alone: each worker sees `current` change by itself.
    log = (tmp_path / "triggers.log").read_text(errors="replace")
    assert log.count("reload (api): now serving v-b") == 1
    assert log.count("reload (sighup): now serving v-b") == WORKERS - 1  # the others, through the supervisor
    assert log.count("reload (sighup): now serving v-a") == WORKERS

    with _serve(root, tmp_path / "watcher.log", watch_s=0.2) as (base, _proc):
        workers = _workers(base)
        _wait_all(base, workers, A)
        set_current(root, B)
        _wait_all(base, workers, B, timeout=20)
