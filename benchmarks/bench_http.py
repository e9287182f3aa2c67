"""HTTP throughput and latency with wrk: the bare framework, ``/health``, ``/recommend``, ``/search`` and
``POST /recommend``, in one run, one worker, at one and at eight connections.

Two servers run side by side with the same stack (uvicorn, one worker, uvloop and httptools, no access
log): ``benchmarks/bare_app.py`` (one ``async`` endpoint returning ``{"status": "ok"}``) and the service
over an artifacts folder. wrk drives one endpoint at a time; the endpoints take turns in ``--rounds``
short slices, in a rotating order, so that a change in what else runs on the machine falls on all of them
alike and the ratios within a run are paired. Each slice's full latency histogram (wrk's, in µs) is kept,
so the percentiles are those of all requests of an endpoint, not an average of per-slice percentiles.
The server's own CPU time per request is reported as well (user + system time of the server process over
a slice, from ``/proc``): waiting for a core taken by other work does not count in it, so on a shared
machine it is the steadier measure of what each endpoint costs the server.

Requests: ``/recommend/{id}?method=score_total&k=10`` and ``POST /recommend`` (2 to 5 seeds) for 20,000
distinct random catalog songs, ``/search?q=...&limit=10`` for titles of those songs (whole, or their
first half as if typed so far), all picked at random by wrk's Lua script.

Usage::

    python benchmarks/bench_http.py /work/cache/serving/10000 /work/cache/serving/707989 \\
        --seconds 20 --rounds 10 --connections 1 8
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mugle_core.artifacts import CATALOG, resolve_current  # noqa: E402
from mugle_core.catalog import Catalog  # noqa: E402
from tests.fixtures.servers import cpu_seconds, free_port, wait_http  # noqa: E402

logger = logging.getLogger(__name__)

ENDPOINTS = ("bare", "health", "recommend", "search", "post_recommend")

# Picks a random request from the file named by the environment variable REQUESTS (one per line:
# METHOD<TAB>PATH<TAB>BODY), and at the end writes the latency histogram and the counts to HISTOGRAM.
LUA = r"""
local requests = {}
init = function(args)
  for line in io.lines(os.getenv("REQUESTS")) do
    local method, path, body = line:match("^(%S+)\t(%S+)\t?(.*)$")
    local headers = {}
    if body == "" then body = nil else headers["Content-Type"] = "application/json" end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end
request = function()
  return requests[math.random(#requests)]
end
done = function(summary, latency, requests)
  local out = io.open(os.getenv("HISTOGRAM"), "w")
  local e = summary.errors
  out:write(string.format("summary %d %d %d %d %d %d %d\n", summary.duration, summary.requests,
    e.connect, e.read, e.write, e.status, e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    out:write(value, " ", count, "\n")
  end
  out:close()
end
"""


def _start(cmd: list[str], env: dict[str, str], url: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(url, proc, timeout=180, poll=0.1)
    except (RuntimeError, TimeoutError):
        proc.kill()
        raise
    return proc


def _server_cmd(target: str, port: int, factory: bool) -> list[str]:
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    return cmd + (["--factory"] if factory else [])


def _requests(catalog: Catalog, distinct: int, seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(catalog), min(distinct, len(catalog)), replace=False)
    ids = [int(catalog.song_ids[r]) for r in rows]
    titles = [catalog.columns["title"][int(r)] for r in rows]
    queries = [t if i % 2 else t[: max(2, len(t) // 2)] for i, t in enumerate(titles)]
    pick = random.Random(seed)
    seeds = [json.dumps({"song_ids": pick.sample(ids, pick.randint(2, 5)), "method": "score_total", "k": 10},
                        separators=(",", ":")) for _ in range(len(ids))]
    return {
        "bare": ["GET\t/\t"],
        "health": ["GET\t/health\t"],
        "recommend": [f"GET\t/recommend/{i}?method=score_total&k=10\t" for i in ids],
        "search": ["GET\t/search?" + urllib.parse.urlencode({"q": q, "limit": 10}) + "\t" for q in queries],
        "post_recommend": [f"POST\t/recommend\t{body}" for body in seeds],
    }


def _wrk(url: str, requests_file: Path, seconds: float, connections: int, work: Path) -> dict[str, Any]:
    hist = work / "hist.txt"
    hist.unlink(missing_ok=True)
    env = {**os.environ, "REQUESTS": str(requests_file), "HISTOGRAM": str(hist)}
    threads = min(connections, 2)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s",
           "-s", str(work / "bench.lua"), url]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=seconds + 60)
    lines = hist.read_text().splitlines()
    fields = [int(x) for x in lines[0].split()[1:]]
    pairs = [ln.split() for ln in lines[1:]]
    return {"duration_us": fields[0], "requests": fields[1], "errors": sum(fields[2:]),
            "values": [int(v) for v, _ in pairs], "counts": [int(c) for _, c in pairs]}


def _percentile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    values, counts = values[order], counts[order]
    cum = np.cumsum(counts)
    return float(values[min(np.searchsorted(cum, q / 100 * cum[-1]), len(values) - 1)])


def _summary(parts: list[dict[str, Any]]) -> dict[str, float]:
    values = np.array([v for p in parts for v in p["values"]], dtype=np.float64)
    counts = np.array([c for p in parts for c in p["counts"]], dtype=np.int64)
    requests = sum(p["requests"] for p in parts)
    seconds = sum(p["duration_us"] for p in parts) / 1e6
    per_round = [p["requests"] / (p["duration_us"] / 1e6) for p in parts]
    return {"rps": requests / seconds, "rps_min": min(per_round), "rps_max": max(per_round),
            "p50": _percentile(values, counts, 50) / 1000, "p95": _percentile(values, counts, 95) / 1000,
            "p99": _percentile(values, counts, 99) / 1000, "requests": requests,
            "errors": sum(p["errors"] for p in parts),
            "cpu_us": 1e6 * sum(p["cpu_s"] for p in parts) / max(1, requests)}


def bench(artifacts: Path, seconds: float, rounds: int, connections: list[int], distinct: int,
          work: Path) -> list[dict[str, Any]]:
    catalog = Catalog.load(resolve_current(artifacts) / CATALOG)
    files = {}
    for name, lines in _requests(catalog, distinct).items():
        files[name] = work / f"{name}.txt"
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / "bench.lua").write_text(LUA)
    env = {**os.environ, "MUGLE_ARTIFACTS": str(artifacts), "MUGLE_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    bare_port, app_port = free_port(), free_port()
    bare = _start(_server_cmd("benchmarks.bare_app:app", bare_port, False), env, f"http://127.0.0.1:{bare_port}/")
    app = _start(_server_cmd("app.main:create_app", app_port, True), env, f"http://127.0.0.1:{app_port}/health")
    urls = {name: f"http://127.0.0.1:{bare_port if name == 'bare' else app_port}" for name in ENDPOINTS}
    rows = []
    try:
        for name in ENDPOINTS:  # warm-up: caches, the page cache, the branch predictors
            _wrk(urls[name], files[name], 1, 1, work)
        for conns in connections:
            parts: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
            for r in range(rounds):
                order = ENDPOINTS[r % len(ENDPOINTS):] + ENDPOINTS[: r % len(ENDPOINTS)]
                for name in order:
                    pid = bare.pid if name == "bare" else app.pid
                    cpu0 = cpu_seconds(pid)
                    part = _wrk(urls[name], files[name], seconds / rounds, conns, work)
                    part["cpu_s"] = cpu_seconds(pid) - cpu0
                    parts[name].append(part)
            bare_summary = _summary(parts["bare"])
            bare_rps = bare_summary["rps"]
            per_round_bare = [p["requests"] / p["duration_us"] for p in parts["bare"]]
            for name in ENDPOINTS:
                s = _summary(parts[name])
                ratios = [p["requests"] / p["duration_us"] / b
                          for p, b in zip(parts[name], per_round_bare, strict=True)]
                rows.append({"songs": len(catalog), "connections": conns, "endpoint": name, **s,
                             "vs_bare": s["rps"] / bare_rps, "vs_bare_min": min(ratios), "vs_bare_max": max(ratios),
                             "cpu_vs_bare": bare_summary["cpu_us"] / s["cpu_us"]})
    finally:
        for proc in (bare, app):
            proc.terminate()
            proc.wait(timeout=30)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path, help="artifacts folders (with a current version)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per endpoint and connection count")
    parser.add_argument("--rounds", type=int, default=10, help="turns the endpoints take within --seconds")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--distinct", type=int, default=20_000, help="distinct songs (and title queries)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print("| songs | conns | endpoint | req/s | per-slice req/s | vs bare | per-slice vs bare | p50 ms | p95 ms "
          "| p99 ms | server CPU µs/req | CPU vs bare | requests | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mugle-bench-http-") as tmp:
        for path in args.artifacts:
            for r in bench(path, args.seconds, args.rounds, args.connections, args.distinct, Path(tmp)):
                rows.append(r)
                print(f"| {r['songs']:,} | {r['connections']} | {r['endpoint']} | {r['rps']:,.0f} | "
                      f"{r['rps_min']:,.0f}-{r['rps_max']:,.0f} | {r['vs_bare']:.0%} | "
                      f"{r['vs_bare_min']:.0%}-{r['vs_bare_max']:.0%} | {r['p50']:.2f} | {r['p95']:.2f} | "
                      f"{r['p99']:.2f} | {r['cpu_us']:.0f} | {r['cpu_vs_bare']:.0%} | {r['requests']:,} | "
                      f"{r['errors']} |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
