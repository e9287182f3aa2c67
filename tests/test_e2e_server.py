"""End to end: the real uvicorn server in a subprocess on 127.0.0.1, called over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.synthetic import read_truth, write_synthetic_version

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(artifacts: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MUGLE_ARTIFACTS": str(artifacts), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("artifacts")
    version = write_synthetic_version(root, n_songs=40, seed=5)
    port = _free_port()
    proc = _start(root, port)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # at most ~20 s
            if proc.poll() is not None:
                pytest.fail(f"server exited early:\n{proc.stdout.read()}")
            try:
                if _get(base + "/health")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        else:
            pytest.fail("server did not answer /health in time")
        yield base, read_truth(version)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_endpoints_over_http(server) -> None:
    base, truth = server
    status, health = _get(base + "/health")
    assert status == 200 and health["songs"] == 40
    sid = truth["ids"][6]
    status, body = _get(f"{base}/recommend/{sid}?k=5&method=each_top3")
    assert status == 200 and len(body["recommendations"]) == 5
    assert sid not in {r["song_id"] for r in body["recommendations"]}
    status, body = _get(base + "/search?q=%EB%B4%84%EB%82%A0")  # 봄날
    assert status == 200 and body["results"][0]["title"] == "봄날"
    req = urllib.request.Request(base + "/recommend", data=json.dumps({"song_ids": [sid], "k": 3}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert len(json.loads(r.read())["recommendations"]) == 3
    assert _get(base + "/songs/-1")[0] == 404
    assert _get(base + "/recommend/abc")[0] == 422


def test_server_refuses_broken_artifacts(tmp_path: Path) -> None:
    version = write_synthetic_version(tmp_path, n_songs=20, seed=2)
    (version / "cel.ids.npy").unlink()
    proc = _start(tmp_path, _free_port())
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "cel.ids.npy" in out
