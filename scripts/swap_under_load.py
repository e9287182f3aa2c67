"""Traffic through the web frontend while a new version is swapped in; used by ``scripts/docker-test.sh``.

Standard library only, so it runs on the host without the project's environment. Client threads on
keep-alive connections send a mix of ``/api/health``, ``/api/search``, ``GET /api/recommend/{id}`` and
``POST /api/recommend`` the whole time. The script

1. waits until ``--replicas`` different API processes have answered ``/api/health`` (the ``worker`` field);
2. runs the swap command given after ``--`` (it writes a new version and points ``current`` at it, and
   prints the new version's name as its last line);
3. waits until every replica's latest ``/api/health`` answer names that version;
4. keeps the traffic on for ``--after`` seconds more, stops it, and prints a JSON summary.

It exits 0 only when every request succeeded, all replicas answered and all came to the new version.

Usage::

    python3 scripts/swap_under_load.py --base http://127.0.0.1:8080 --song 1003 --query love --replicas 3 \\
        -- podman run --rm ... python -c '...'
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any

logger = logging.getLogger(__name__)


class Traffic:
    """Client threads that keep asking until stopped, recording every outcome."""

    def __init__(self, base: str, song: int, query: str, clients: int, prefix: str = "/api") -> None:
        url = urllib.parse.urlsplit(base)
        self.prefix = prefix
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.song, self.query, self.clients = song, query, clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.failures: list[str] = []
        self.latest: dict[str, tuple[float, str]] = {}  # worker -> (time of its latest answer, version)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _requests(self, n: int) -> tuple[str, str, bytes | None]:
        q = urllib.parse.quote(self.query)
        p = self.prefix
        kinds = [("GET", f"{p}/health", None), ("GET", f"{p}/search?q={q}&limit=5", None),
                 ("GET", f"{p}/recommend/{self.song}?k=5", None),
                 ("POST", f"{p}/recommend", json.dumps({"song_ids": [self.song], "k": 5}).encode())]
        return kinds[n % len(kinds)]

    def _run(self, i: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        n = i
        while not self.stop.is_set():
            method, path, body = self._requests(n)
            n += 1
            try:
                headers = {"Content-Type": "application/json"} if body else {}
                conn.request(method, path, body=body, headers=headers)
                res = conn.getresponse()
                data = res.read()
                ok = res.status == 200
                payload = json.loads(data) if ok else None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
                with self.lock:
                    self.statuses["error"] += 1
                    self.failures.append(f"{method} {path}: {exc!r}")
                continue
            with self.lock:
                self.statuses[str(res.status)] += 1
                if not ok:
                    self.failures.append(f"{method} {path}: {res.status} {data[:200]!r}")
                elif path == f"{self.prefix}/health":
                    self.latest[payload["worker"]] = (time.monotonic(), payload["version"])
        conn.close()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def versions(self) -> dict[str, str]:
        with self.lock:
            return {w: v for w, (_, v) in self.latest.items()}


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: swap_under_load.py [options] -- SWAP COMMAND ...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the web frontend, e.g. http://127.0.0.1:8080")
    parser.add_argument("--song", type=int, required=True, help="a catalog song id to recommend from")
    parser.add_argument("--query", required=True, help="a search query")
    parser.add_argument("--replicas", type=int, default=3, help="API processes expected behind the frontend")
    parser.add_argument("--prefix", default="/api", help="path prefix of the API behind the frontend")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=90.0, help="bound of each wait, seconds")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of traffic after every replica swapped")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    traffic = Traffic(args.base, args.song, args.query, args.clients, args.prefix)
    summary: dict[str, Any] = {}
    started = time.monotonic()
    traffic.start()
    try:
        wait_until(lambda: len(traffic.versions()) >= args.replicas, args.timeout,
                   f"{args.replicas} replicas did not all answer")
        before = traffic.versions()
        summary["before"] = before
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"swap command failed ({done.returncode}): {done.stderr[-2000:]}")
        target = done.stdout.strip().splitlines()[-1]
        swapped_at = time.monotonic()
        summary["target"] = target
        wait_until(lambda: len(traffic.versions()) >= args.replicas
                   and all(v == target for v in traffic.versions().values()), args.timeout,
                   f"not every replica came to {target}")
        summary["all_swapped_after_s"] = round(time.monotonic() - swapped_at, 2)
        time.sleep(args.after)
    except (TimeoutError, RuntimeError, subprocess.TimeoutExpired) as exc:
        summary["error"] = str(exc)
    finally:
        traffic.finish()
    summary.update(
        seconds=round(time.monotonic() - started, 1), requests=sum(traffic.statuses.values()),
        statuses=dict(traffic.statuses), failures=traffic.failures[:10], after=traffic.versions(),
    )
    print(json.dumps(summary, indent=1))
    ok = ("error" not in summary and not traffic.failures and len(summary["after"]) >= args.replicas
          and set(summary["after"].values()) == {summary.get("target")})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
