"""Fuzz the API from its own OpenAPI schema: no generated input may cause a server error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.engine import Engine
from app.main import create_app
from app.settings import Settings
from tests.fixtures.synthetic import write_synthetic_version

# Removed when the interpreter exits; the schema below is built at import time, before any fixture.
_TMP = tempfile.TemporaryDirectory(prefix="mugle-fuzz-")


def _app():
    root = Path(_TMP.name)
    version = write_synthetic_version(root, n_songs=30, seed=4)
    # The engine is passed in, so the schema loader does not depend on the lifespan having run.
    return create_app(Settings(artifacts=root), engine=Engine.load(version))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_no_server_errors(case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
