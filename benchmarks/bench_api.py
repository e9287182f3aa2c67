"""Benchmark the service: startup, memory, and latency/throughput of /recommend and /search vs /health.

One uvicorn worker serves each artifacts folder; the client drives it over keep-alive HTTP connections
from threads in this process, the same way for every endpoint, so the ratio to ``/health`` (the floor
set by the HTTP stack and the client) is the figure to read. On a shared, loaded machine wall-clock
figures are noisy, so the server process's own CPU time per request (from ``/proc/<pid>/stat``) is
reported too: it does not depend on what else runs. Requests go to 20,000 distinct random songs (and
20,000 queries made from their titles; fewer in a smaller catalog): most requests ask for a song not
asked before, so caches cannot stand in for the work. The endpoints take turns in ten short slices
(``--rounds``) so that all of them see the same machine.

Usage::

    python benchmarks/make_synthetic_artifacts.py --songs 707989 --out /tmp/mugle-bench-708k
    python benchmarks/bench_api.py /tmp/mugle-bench-10k /tmp/mugle-bench-100k /tmp/mugle-bench-708k
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.servers, the one helper that starts and waits for a server

from mugle_core.artifacts import CATALOG, resolve_current  # noqa: E402
from mugle_core.catalog import Catalog  # noqa: E402
from tests.servers import free_port, wait_http  # noqa: E402

logger = logging.getLogger(__name__)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(artifacts: Path, port: int) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "MUGLE_ARTIFACTS": str(artifacts), "MUGLE_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=120, poll=0.05)
    except (RuntimeError, TimeoutError):
        proc.kill()
        raise
    return proc, time.perf_counter() - t0


def _drive(port: int, paths: list[str], seconds: float, threads: int) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        rng = random.Random(i)
        while time.perf_counter() < stop:
            path = rng.choice(paths)
            t = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            latencies[i].append(time.perf_counter() - t)
            if resp.status != 200:
                errors[i] += 1
        conn.close()

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "lat": [x for part in latencies for x in part], "errors": sum(errors)}


def _summary(parts: list[dict[str, Any]], cpu_s: float) -> dict[str, float]:
    lat = np.array([x for part in parts for x in part["lat"]]) * 1000
    elapsed = sum(part["elapsed"] for part in parts)
    return {"rps": len(lat) / elapsed, "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "n": len(lat), "errors": sum(p["errors"] for p in parts),
            "cpu_ms": 1000 * cpu_s / max(1, len(lat))}


def bench(artifacts: Path, seconds: float, threads: int, rounds: int = 10, distinct: int = 20_000) -> list[str]:
    version = resolve_current(artifacts)
    catalog = Catalog.load(version / CATALOG)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(catalog), min(distinct, len(catalog)), replace=False)
    recommend = [f"/recommend/{int(catalog.song_ids[r])}?method=score_total&k=10" for r in rows]
    titles = [catalog.columns["title"][int(r)] for r in rows]
    # Realistic queries: a whole title, or its first few characters as typed so far.
    queries = [t if i % 2 else t[: max(2, len(t) // 2)] for i, t in enumerate(titles)]
    search = ["/search?" + urllib.parse.urlencode({"q": q, "limit": 10}) for q in queries]
    port = free_port()
    proc, startup = _start(artifacts, port)
    endpoints = {"health": ["/health"], "recommend": recommend, "search": search}
    try:
        _drive(port, recommend[:50] + search[:50], 1.0, 1)  # warm-up
        parts: dict[str, list[dict[str, Any]]] = {name: [] for name in endpoints}
        cpu = dict.fromkeys(endpoints, 0.0)
        # Endpoints take turns in short slices, so a change in what else runs on the machine falls on all
        # of them alike instead of on whichever was measured at that moment.
        for _ in range(rounds):
            for name, paths in endpoints.items():
                cpu0 = _cpu_s(proc.pid)
                parts[name].append(_drive(port, paths, seconds / rounds, threads))
                cpu[name] += _cpu_s(proc.pid) - cpu0
        results = {name: _summary(parts[name], cpu[name]) for name in endpoints}
        rss = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    base = results["health"]["rps"]
    lines = []
    for name, r in results.items():
        lines.append(f"| {len(catalog):,} | /{name} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | "
                     f"{r['rps']:.0f} | {r['rps'] / base:.0%} | {r['cpu_ms']:.3f} | "
                     f"{results['health']['cpu_ms'] / r['cpu_ms']:.0%} | {r['errors']} | {startup:.2f} | {rss:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path, help="artifacts folders (with a current version)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per endpoint")
    parser.add_argument("--threads", type=int, default=2, help="client connections")
    parser.add_argument("--rounds", type=int, default=10, help="turns the endpoints take within --seconds")
    parser.add_argument("--distinct", type=int, default=20_000, help="distinct songs (and title queries) asked for")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| songs | endpoint | p50 ms | p95 ms | p99 ms | req/s | vs /health | server CPU ms/req | "
          "CPU vs /health | errors | startup s | RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.artifacts:
        for line in bench(path, args.seconds, args.threads, args.rounds, args.distinct):
            print(line, flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
