"""The real server for end-to-end tests and benchmarks: uvicorn in a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``), for per-request server costs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, proc: subprocess.Popen | None = None, timeout: float = START_TIMEOUT_S, poll: float = 0.2
) -> None:
    """Poll ``url`` every ``poll`` seconds until it answers 200; fail early if ``proc`` died.

    Bounded by ``timeout``. Also used by the benchmarks, which time startup with a finer ``poll``.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as res:
                if res.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(poll)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s (last error: {last})")


@contextlib.contextmanager
def running_server(
    artifacts: Path,
    log_path: Path,
    factory: str = "app.main:create_app",
    env: dict[str, str] | None = None,
    log_level: str = "warning",
    workers: int | None = None,
    timeout: float = START_TIMEOUT_S,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``uvicorn FACTORY --factory`` (one worker) over ``artifacts``; yield its base URL and process.

    With ``workers``, run ``mugle serve --workers N`` instead (its supervisor is the process yielded).
    The server's output goes to ``log_path``, whose tail is in the error when it does not start.
    """
    port = free_port()
    environ = {**os.environ, "MUGLE_ARTIFACTS": str(artifacts), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
               **(env or {})}
    if workers is None:
        cmd = [sys.executable, "-m", "uvicorn", factory, "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", log_level]
    else:
        cmd = [sys.executable, "-m", "mugle_cli", "serve", "--artifacts", str(artifacts), "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(base + "/health", proc, timeout=timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n--- server log ---\n{log_path.read_text(errors='replace')[-3000:]}") from exc
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
