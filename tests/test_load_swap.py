"""A real uvicorn server on 127.0.0.1 under concurrent load, with a hot swap of the version in the middle."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mugle_cli.main import main as cli_main
from mugle_core.artifacts import set_current
from tests.servers import running_server
from tests.synthetic import FIXED_TITLES, song_id_of, write_synthetic_version

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token"
A, B = "v-a", "v-b"
ONLY_IN_B = song_id_of(80)  # A has 60 songs, B has 90
CLIENTS = 6
PER_CLIENT = 100  # 600 requests in all
SWAP_AFTER = 250  # completed requests before the swap is triggered


@contextmanager
def serve(root: Path, log_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run the app with operations (one worker, JSON logs) over ``root``; yield its base URL and process."""
    environ = {"MUGLE_RELOAD_TOKEN": TOKEN, "MUGLE_WATCH_INTERVAL_S": "0", "MUGLE_LOG_JSON": "true",
               "PYTHONPATH": str(REPO), **env}
    with running_server(root, log_path, factory="app.main:create_app", env=environ,
                        log_level="info") as served:
        yield served


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float
    status: int | None
    payload: dict | None
    error: str | None


def _request(client: httpx.Client, n: int, rid: str, swapped: bool) -> tuple[str, httpx.Response]:
    """The n-th request of a client: a mix of search, recommend (GET and POST) and health."""
    headers = {"X-Request-ID": rid}
    kind = n % 5
    if swapped and n % 7 == 0:
        return "song_b", client.get(f"/songs/{ONLY_IN_B}", headers=headers)
    if kind == 0:
        return "search", client.get("/search", params={"q": FIXED_TITLES[n % len(FIXED_TITLES)]}, headers=headers)
    if kind in (1, 2):
        method = ("score_total", "each_top3", "music2vec", "tcae", "cel")[n % 5]
        sid = song_id_of(n % 50)
        return "recommend", client.get(f"/recommend/{sid}", params={"method": method, "k": 10}, headers=headers)
    if kind == 3:
        body = {"song_ids": [song_id_of(n % 40), song_id_of((n + 7) % 40)], "k": 10}
        return "seeds", client.post("/recommend", json=body, headers=headers)
    return "health", client.get("/health", headers=headers)


def test_hot_swap_under_load_has_no_failed_request(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    write_synthetic_version(root, n_songs=60, seed=1, version=A)
    write_synthetic_version(root, n_songs=90, seed=2, version=B, set_as_current=False)
    log_path = tmp_path / "server.log"
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    completed = 0
    swap_done = threading.Event()

    def client_loop(url: str, cid: int) -> None:
        nonlocal completed
        with httpx.Client(base_url=url, timeout=15) as client:
            for n in range(PER_CLIENT):
                started = time.monotonic()
                swapped = swap_done.is_set()
                try:
                    kind, r = _request(client, n + cid, f"load-{cid}-{n}", swapped)
                    out = Outcome(kind, started, time.monotonic(), r.status_code, r.json(), None)
                except Exception as exc:  # any transport or decoding error is a failed request
                    out = Outcome("error", started, time.monotonic(), None, None, repr(exc))
                with lock:
                    outcomes.append(out)
                    completed += 1

    with serve(root, log_path) as (url, _proc):
        threads = [threading.Thread(target=client_loop, args=(url, c), daemon=True) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while completed < SWAP_AFTER and time.monotonic() < deadline:
            time.sleep(0.005)
        swap_started = time.monotonic()
        set_current(root, B)
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        swap_ended = time.monotonic()
        swap_done.set()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "clients did not finish in time"
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "swapped" and r.json()["previous"] == A and r.json()["version"] == B
        metrics_text = httpx.get(f"{url}/metrics", timeout=10).text

    assert len(outcomes) == CLIENTS * PER_CLIENT
    failed = [o for o in outcomes if o.error is not None or o.status != 200]
    assert failed == [], f"{len(failed)} failed requests, e.g. {failed[:3]}"

    before = [o for o in outcomes if o.ended < swap_started]
    after = [o for o in outcomes if o.started > swap_ended]
    assert len(before) >= 100 and len(after) >= 100, (len(before), len(after))
    assert {o.payload["version"] for o in before if o.kind == "health"} == {A}
    assert {o.payload["version"] for o in after if o.kind == "health"} == {B}
    songs_b = [o for o in after if o.kind == "song_b"]
    assert songs_b and all(o.payload["song_id"] == ONLY_IN_B for o in songs_b)

    families = {f.name: f for f in text_string_to_metric_families(metrics_text)}
    served = {s.labels["version"]: s.value for s in families["mugle_artifacts_version"].samples}
    assert served == {B: 1.0}
    swaps = [s.value for s in families["mugle_reloads"].samples if s.labels.get("outcome") == "swapped"]
    assert swaps == [1.0]
    answered = sum(
        s.value for s in families["mugle_http_requests"].samples
        if s.name.endswith("_total") and s.labels["route"] != "/metrics"
    )
    assert answered >= CLIENTS * PER_CLIENT + 1  # the load, the reload and the readiness probe(s)

    # Structured logs: every line of the server is a JSON object, and each request has its access line.
    lines = [ln for ln in log_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]
    load_ids = {r["request_id"] for r in records if r["logger"] == "app.access" and r["request_id"].startswith("load-")}
    assert len(load_ids) == CLIENTS * PER_CLIENT
    assert any(r.get("reload_outcome") == "swapped" for r in records)


def test_sighup_reloads_after_a_rollback(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    write_synthetic_version(root, n_songs=60, seed=1, version=A, set_as_current=False)
    write_synthetic_version(root, n_songs=90, seed=2, version=B)
    with serve(root, tmp_path / "server.log") as (url, proc), httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/health").json()["version"] == B
        assert cli_main(["artifacts", "use", A, "--artifacts", str(root)]) == 0
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while client.get("/health").json()["version"] != A:
            if time.monotonic() > deadline:
                pytest.fail("SIGHUP did not reload the rolled-back version within 20 s")
            time.sleep(0.1)
        assert proc.poll() is None  # the signal reloaded; it did not end the server
        assert client.get(f"/songs/{ONLY_IN_B}").status_code == 404
