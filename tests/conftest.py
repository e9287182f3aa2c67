"""What several test modules share: one tiny trained version, and the ``slow`` marker on system tests.

The tests mirror the packages (``tests/core``, ``tests/app``, ``tests/training``, ``tests/nets``,
``tests/evaluation``) and ``tests/system`` holds the tests that start servers, browsers, nginx, send kill
signals or load: every test there is marked ``slow``, so ``pytest -m "not slow"`` (``make test-fast``) runs
the rest. Helpers that are not fixtures live in ``tests/fixtures/`` (synthetic artifacts, servers, browser).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SYSTEM_DIR = Path(__file__).resolve().parent / "system"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SYSTEM_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_version(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 40-song demo dataset and one artifacts version trained on it by the real pipeline (all three
    models, about ten seconds on one CPU thread), shared by every module of the session that needs real
    trained audio models.

    Returns ``{"data", "artifacts", "version", "truth"}``: the dataset folder, the artifacts folder, the
    version folder and the demo's ``demo_truth.json``. Read-only for the tests: none may change it.
    """
    torch = pytest.importorskip("torch", reason="training needs torch")
    from mugle_nets.cel import CELOptions
    from mugle_nets.tcae import TCAEOptions
    from training.demo import generate
    from training.music2vec import Music2VecOptions
    from training.pipeline import TrainOptions, train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-version")
    generate(root / "data", songs=40, playlists=40, seed=0, progress=False)
    options = TrainOptions(
        seed=0,
        device="cpu",
        progress=False,
        music2vec=Music2VecOptions(epochs=2),
        tcae=TCAEOptions(steps=15, batch_size=16, hidden=32, eval_every=15, stats_sample=64),
        cel=CELOptions(epochs=3, batch_size=64, hidden=64),
    )
    version = train(root / "data", root / "artifacts", options)
    truth = json.loads((root / "data" / "demo_truth.json").read_text(encoding="utf-8"))
    return {"data": root / "data", "artifacts": root / "artifacts", "version": Path(version), "truth": truth}
