"""The package layout holds: data flows one way between packages and no import cycle exists."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_spec = importlib.util.spec_from_file_location("check_imports", REPO / "scripts" / "check_imports.py")
assert _spec is not None and _spec.loader is not None
check_imports = importlib.util.module_from_spec(_spec)
sys.modules["check_imports"] = check_imports  # dataclasses look their module up while the class is built
_spec.loader.exec_module(check_imports)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_repository_follows_the_layout() -> None:
    problems = check_imports.check(REPO)
    assert problems == [], "\n".join(problems)


def test_every_package_is_scanned() -> None:
    modules = check_imports.find_modules(REPO)
    for package in check_imports.PACKAGES:
        assert package in modules, f"{package}/__init__.py not found"
    assert "app.main" in modules and "mugle_core.artifacts" in modules and "training.pipeline" in modules


def test_each_kind_of_violation_is_reported(tmp_path: Path) -> None:
    inits = {f"{p}/__init__.py": "" for p in check_imports.PACKAGES}
    _write(tmp_path, {
        **inits,
        "mugle_core/shapes.py": "import numpy as np\nimport torch\nfrom fastapi import FastAPI\n",
        "app/a.py": "from app import b\n",
        "app/b.py": "def f():\n    from app.a import x\n",  # a lazy import still closes the cycle
        "app/audio.py": "import gensim\n\ndef embed():\n    import torch\n    from training.tcae import T\n",
        "training/pipe.py": "from app.search import write\nfrom mugle_core.shapes import np\n",
        "mugle_nets/net.py": "from training import pipe\n",
        "evaluation/run.py": "from app import a\nfrom training import pipe\nfrom mugle_cli import main\n",
    })
    problems = check_imports.check(tmp_path)
    text = "\n".join(problems)
    assert "mugle_core/shapes.py:2: mugle_core imports torch" in text
    assert "mugle_core/shapes.py:3: mugle_core imports fastapi" in text
    assert "mugle_core imports numpy" not in text, "numpy is allowed in mugle_core"
    assert "import cycle: app.a <-> app.b" in text
    assert "app/audio.py:1: app imports gensim at module level" in text
    assert "app/audio.py:4" not in text, "a lazy torch import is allowed in app"
    assert "app/audio.py:5: app imports training.tcae" in text
    assert "training/pipe.py:1: training imports app.search" in text
    assert "mugle_nets/net.py:1: mugle_nets imports training.pipe" in text
    assert "evaluation/run.py:3: evaluation imports mugle_cli" in text
    assert len([p for p in problems if p.startswith("evaluation/")]) == 1, "evaluation may import app and training"


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    inits = {f"{p}/__init__.py": "" for p in check_imports.PACKAGES}
    _write(tmp_path, {
        **inits,
        "app/routes/__init__.py": "",
        "app/routes/x.py": "from .. import main\nfrom . import y\n",
        "app/routes/y.py": "from .x import z\n",
        "app/main.py": "",
    })
    problems = check_imports.check(tmp_path)
    assert problems == ["import cycle: app.routes.x <-> app.routes.y"]
