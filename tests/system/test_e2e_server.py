"""End to end: the real uvicorn server in a subprocess on 127.0.0.1, called over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.servers import running_server
from tests.fixtures.synthetic import read_truth, write_synthetic_version


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
    with running_server(root, root / "server.log") as (base, _proc):
        yield base, read_truth(version)


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
    with pytest.raises(RuntimeError) as refused, running_server(tmp_path, tmp_path / "server.log"):
        pass
    message = str(refused.value)
    assert "server exited with code" in message and "exited with code 0 " not in message
    assert "cel.ids.npy" in message
