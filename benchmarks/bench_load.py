"""Sustained mixed load against one real uvicorn worker: requests/s, latency percentiles, error count.

The server runs in a subprocess exactly as in production (``uvicorn --factory app.main:create_app``,
one worker, metrics and access logs on). Closed-loop clients (threads, one keep-alive connection each)
send a mixed workload for ``--duration`` seconds:

- 40 % ``GET /search`` (whole titles, title prefixes, title plus artist),
- 40 % ``GET /recommend/{id}`` with the five methods in turn, ``k=10``,
- 20 % ``POST /recommend`` with 2 to 5 seeds.

Any answer other than 200, and any connection error, counts as an error. With ``--swap-every S`` the
benchmark also switches ``current`` between two versions every ``S`` seconds and asks the server to
reload, so the figure includes hot swaps under load.

Usage::

    python benchmarks/bench_load.py --songs 10000 --duration 60 --clients 8
    python benchmarks/bench_load.py --songs 10000 --duration 60 --clients 8 --swap-every 10

Client and server share the machine, so the figure is a floor for the server alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mugle_core.artifacts import CATALOG, resolve_current, set_current  # noqa: E402
from mugle_core.catalog import Catalog  # noqa: E402
from tests.servers import free_port, wait_http  # noqa: E402

logger = logging.getLogger("bench_load")
TOKEN = "bench-load-token"
METHODS = ("score_total", "each_top3", "music2vec", "tcae", "cel")


@dataclass
class ClientStats:
    """What one client thread saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"search": [], "recommend": [], "seeds": []})
    errors: list[str] = field(default_factory=list)


def start_server(root: Path, port: int, log_path: Path, faiss_threads: int) -> subprocess.Popen:
    """Start one uvicorn worker over ``root`` and wait (at most 120 s) until it answers ``/health``."""
    env = {
        **os.environ,
        "MUGLE_ARTIFACTS": str(root),
        "MUGLE_RELOAD_TOKEN": TOKEN,
        "MUGLE_WATCH_INTERVAL_S": "0",
        "MUGLE_LOG_JSON": "true",
        "MUGLE_FAISS_THREADS": str(faiss_threads),
        "PYTHONPATH": str(REPO),
    }
    cmd = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log"]
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child for its whole life
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=120)
    except (RuntimeError, TimeoutError) as exc:
        proc.kill()
        raise RuntimeError(f"{exc}; see {log_path}") from exc
    return proc


def workload(root: Path, seed: int) -> tuple[list[str], np.ndarray]:
    """Search queries and song ids drawn from the served catalog."""
    catalog = Catalog.load(resolve_current(root) / CATALOG)
    rng = random.Random(seed)
    n = len(catalog)
    queries: list[str] = []
    for row in rng.sample(range(n), min(n, 500)):
        song = catalog.song(row)
        title = song["title"]
        choice = rng.random()
        if choice < 0.4:
            queries.append(title)
        elif choice < 0.7:
            queries.append(title[: max(2, len(title) // 2)])
        else:
            queries.append(f"{title} {song['artists'][0] if song['artists'] else ''}".strip())
    return queries, np.asarray(catalog.song_ids)


def client_loop(port: int, stop: threading.Event, queries: list[str], ids: np.ndarray, seed: int,
                stats: ClientStats) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while not stop.is_set():
        n += 1
        roll = rng.random()
        body = None
        headers = {}
        if roll < 0.4:
            kind, verb = "search", "GET"
            path = "/search?" + urllib.parse.urlencode({"q": rng.choice(queries), "limit": 10})
        elif roll < 0.8:
            kind, verb = "recommend", "GET"
            path = f"/recommend/{int(rng.choice(ids))}?method={METHODS[n % len(METHODS)]}&k=10"
        else:
            kind, verb, path = "seeds", "POST", "/recommend"
            seeds = [int(rng.choice(ids)) for _ in range(rng.randint(2, 5))]
            body = json.dumps({"song_ids": seeds, "k": 10}).encode()
            headers = {"Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            conn.request(verb, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            stats.errors.append(f"{kind}: {exc!r}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        elapsed = time.perf_counter() - started
        if status != 200:
            stats.errors.append(f"{kind} {path}: HTTP {status}")
        else:
            stats.latencies[kind].append(elapsed)
    conn.close()


def reload(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"reload failed: HTTP {resp.status} {data}")
    return data


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1000.0) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=10_000, help="synthetic catalog size")
    parser.add_argument("--dim", type=int, default=128, help="vector dimension of every model")
    parser.add_argument("--artifacts", type=Path, default=None, help="serve this artifacts folder instead")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    parser.add_argument("--clients", type=int, default=8, help="concurrent closed-loop clients")
    parser.add_argument("--swap-every", type=float, default=0.0, help="hot-swap the version every S seconds")
    parser.add_argument("--faiss-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary artifacts and server log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    work = Path(tempfile.mkdtemp(prefix="mugle-bench-load-"))
    root = args.artifacts
    versions: list[str] = []
    if root is None:
        from tests.synthetic import write_synthetic_version

        root = work / "artifacts"
        for i in range(2 if args.swap_every > 0 else 1):
            name = f"load-{i}"
            write_synthetic_version(root, n_songs=args.songs, seed=args.seed + i, dim=args.dim, n_clusters=50,
                                    version=name, set_as_current=i == 0)
            versions.append(name)
        logger.info("wrote %d synthetic version(s) of %d songs in %s", len(versions), args.songs, root)
    elif args.swap_every > 0:
        raise SystemExit("--swap-every needs the synthetic artifacts (leave out --artifacts)")

    queries, ids = workload(root, args.seed)
    port = free_port()
    log_path = work / "server.log"
    proc = start_server(root, port, log_path, args.faiss_threads)
    stats = [ClientStats() for _ in range(args.clients)]
    swaps = 0
    try:
        warm_stop = threading.Event()
        warm = [threading.Thread(target=client_loop, args=(port, warm_stop, queries, ids, 1000 + c, ClientStats()))
                for c in range(args.clients)]
        for t in warm:
            t.start()
        time.sleep(args.warmup)
        warm_stop.set()
        for t in warm:
            t.join()

        stop = threading.Event()
        threads = [threading.Thread(target=client_loop, args=(port, stop, queries, ids, args.seed + c, stats[c]))
                   for c in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        next_swap = started + args.swap_every if args.swap_every > 0 else float("inf")
        while (now := time.perf_counter()) - started < args.duration:
            if now >= next_swap:
                swaps += 1
                set_current(root, versions[swaps % len(versions)])
                result = reload(port)
                logger.info("swap %d: %s -> %s in %.2f s", swaps, result["previous"], result["version"],
                            result["seconds"])
                next_swap = now + args.swap_every
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    every = [x for s in stats for v in s.latencies.values() for x in v]
    errors = [e for s in stats for e in s.errors]
    per_kind = {
        kind: {"n": len(v), "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2)}
        for kind in ("search", "recommend", "seeds")
        for v in [[x for s in stats for x in s.latencies[kind]]]
    }
    result = {
        "songs": args.songs if args.artifacts is None else None,
        "artifacts": str(root),
        "clients": args.clients,
        "duration_s": round(wall, 2),
        "requests": len(every) + len(errors),
        "requests_per_s": round((len(every) + len(errors)) / wall, 1),
        "p50_ms": round(pct(every, 50), 2),
        "p90_ms": round(pct(every, 90), 2),
        "p99_ms": round(pct(every, 99), 2),
        "max_ms": round(max(every) * 1000.0, 2) if every else None,
        "errors": len(errors),
        "swaps": swaps,
        "per_kind": per_kind,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if errors:
        print("first errors:", *errors[:5], sep="\n  ", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
