"""Faults: broken or partly copied versions offered for a swap, and a training run killed with SIGKILL."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.settings import Settings
from mugle_core.artifacts import CATALOG, CURRENT, MANIFEST, TMP_PREFIX, index_file, list_versions, read_current
from tests.synthetic import write_synthetic_version

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TOKEN = "fault-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
A = "v-good"
BAD = "v-bad"


def build_app(root: Path, monkeypatch: pytest.MonkeyPatch, watch_interval_s: float = 0) -> FastAPI:
    monkeypatch.setenv("MUGLE_WATCH_INTERVAL_S", str(watch_interval_s))
    settings = Settings(artifacts=root, reload_token=TOKEN)
    return create_app(settings)


def answers(client: TestClient) -> list:
    """A fixed set of answers that must not change while the good version is served."""
    out = [client.get("/health").json()]
    out.append(client.get("/search", params={"q": "밤편지"}).json())
    for method in ("score_total", "each_top3", "cel"):
        out.append(client.get("/recommend/1003", params={"method": method, "k": 8}).json())
    out.append(client.post("/recommend", json={"song_ids": [1003, 1012], "k": 5}).json())
    return out


def _missing_index(vdir: Path) -> None:
    (vdir / index_file("tcae")).unlink()  # a copy that stopped before the last files


def _truncated_catalog(vdir: Path) -> None:
    data = (vdir / CATALOG).read_bytes()
    (vdir / CATALOG).write_bytes(data[: len(data) // 2])


def _lying_dims(vdir: Path) -> None:
    manifest = json.loads((vdir / MANIFEST).read_text())
    manifest["models"]["music2vec"]["dim"] = 128
    (vdir / MANIFEST).write_text(json.dumps(manifest))


def _truncated_index(vdir: Path) -> None:
    data = (vdir / index_file("cel")).read_bytes()
    (vdir / index_file("cel")).write_bytes(data[:100])


def _lying_song_count(vdir: Path) -> None:
    manifest = json.loads((vdir / MANIFEST).read_text())
    manifest["songs"] = 41
    (vdir / MANIFEST).write_text(json.dumps(manifest))


def _no_manifest(vdir: Path) -> None:
    (vdir / MANIFEST).unlink()  # the manifest is written last, so a partial copy often lacks it


def _not_normalised(vdir: Path) -> None:
    q = np.load(vdir / "cel.query.npy")
    np.save(vdir / "cel.query.npy", (q * 3.0).astype(np.float32))


def _folder_missing(vdir: Path) -> None:
    import shutil

    shutil.rmtree(vdir)


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing index file": (_missing_index, "tcae.index"),
    "truncated catalog": (_truncated_catalog, "catalog|BadZipFile"),
    "manifest lies about dims": (_lying_dims, "dimensions disagree"),
    "truncated FAISS index": (_truncated_index, "cel.index"),
    "manifest lies about song count": (_lying_song_count, "songs=41"),
    "no manifest": (_no_manifest, "manifest.json is missing"),
    "vectors not normalised": (_not_normalised, "L2-normalised"),
    "pointer to a missing folder": (_folder_missing, "does not exist"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_broken_version_is_refused_and_old_one_keeps_answering(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt, expected = FAULTS[fault]
    root = tmp_path / "artifacts"
    write_synthetic_version(root, n_songs=60, seed=1, version=A)
    write_synthetic_version(root, n_songs=50, seed=2, version=BAD, set_as_current=False)
    corrupt(root / BAD)
    with TestClient(build_app(root, monkeypatch)) as client:
        before = answers(client)
        # Offered the way a careless copy would be: the pointer is written by hand, past every check.
        (root / CURRENT).write_text(BAD + "\n")
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert BAD in detail and re.search(expected, detail), detail
        assert answers(client) == before
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        outcomes = {s.labels["outcome"]: s.value for s in families["mugle_reloads"].samples
                    if s.name == "mugle_reloads_total"}
        assert outcomes == {"failed": 1.0, "swapped": 0.0, "unchanged": 0.0}
        assert [s.labels["version"] for s in families["mugle_artifacts_version"].samples] == [A]


def _training_available() -> str | None:
    for module in ("training.pipeline", "training.demo", "torch", "gensim"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not importable"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_training_available() is not None, reason=f"training stack missing: {_training_available()}")
def test_training_killed_with_sigkill_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.demo import generate

    data = tmp_path / "data"
    generate(data, songs=200, playlists=150, seed=3, progress=False)
    root = tmp_path / "artifacts"
    write_synthetic_version(root, n_songs=60, seed=1, version=A)
    # The watcher runs throughout: it must never see anything worth loading.
    with TestClient(build_app(root, monkeypatch, watch_interval_s=0.1)) as client:
        before = answers(client)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "mugle_cli", "train", "--data", str(data), "--out", str(root), "--device", "cpu"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            staged: list[Path] = []
            while not staged:
                assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
                assert time.monotonic() < deadline, "training did not start staging a version within 120 s"
                staged = [p for p in root.iterdir() if p.name.startswith(TMP_PREFIX)]
                time.sleep(0.02)
            # Let it write into the staging folder for a moment, then kill it without any chance to clean up.
            time.sleep(1.0)
            assert proc.poll() is None, "training finished too fast to be killed mid-run"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            proc.stderr.close()

        assert read_current(root) == A
        assert list_versions(root) == [A]  # a leftover staging folder is never a version
        time.sleep(0.5)  # a few watcher ticks
        assert answers(client) == before
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 200 and r.json()["outcome"] == "unchanged"
        status = client.get("/admin/status", headers=AUTH).json()
        assert status["reloads"]["swapped"] == 0 and status["reloads"]["failed"] == 0
