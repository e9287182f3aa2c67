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


# -- steering: generated combinations of the parameters, checked for their meaning as well ---------------

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_STEER_APP = _app()
_GENRE_NAMES = ["발라드", "댄스", "GN0300", "gn0400", "nope", ""]


def test_schema_lists_the_steering_operations() -> None:
    paths = set(schema.raw_schema["paths"])
    assert {"/tags", "/recommend/tag/{tag}", "/genres"} <= paths


@given(
    where=st.sampled_from(["/recommend/1000", "/recommend/1009", "/recommend/tag/드라이브", "/recommend/tag/새벽"]),
    genres=st.lists(st.sampled_from(_GENRE_NAMES), max_size=3),
    year_from=st.one_of(st.none(), st.integers(-5, 10_005)),
    year_to=st.one_of(st.none(), st.integers(-5, 10_005)),
    diversity=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 1.0])),
    method=st.sampled_from(["score_total", "each_top3", "music2vec", "tcae", "cel"]),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_steering_parameters_never_fail_and_filters_hold(where, genres, year_from, year_to, diversity, method) -> None:
    params: dict = {"method": method, "k": 8}
    if genres:
        params["genre"] = genres
    if year_from is not None:
        params["year_from"] = year_from
    if year_to is not None:
        params["year_to"] = year_to
    if diversity is not None:
        params["diversity"] = diversity
    with TestClient(_STEER_APP) as client:
        r = client.get(where, params=params)
    bad = (any(g in ("nope", "") for g in genres)
           or any(y is not None and not 0 <= y <= 9999 for y in (year_from, year_to))
           or (year_from is not None and year_to is not None and 0 <= year_to < year_from <= 9999)
           or (diversity is not None and not 0.0 <= diversity <= 1.0))
    assert r.status_code == (422 if bad else 200), (params, r.text)
    if r.status_code != 200:
        assert r.json()["detail"]
        return
    # the names and codes asked for, as Song.genres shows them (GN0300 and GN0400 are 랩/힙합 and R&B/Soul)
    wanted = (set(genres) & {"발라드", "댄스"}) | ({"랩/힙합"} if "GN0300" in genres else set()) | (
        {"R&B/Soul"} if "gn0400" in genres else set())
    for rec in r.json()["recommendations"]:
        if genres:
            assert set(rec["genres"]) & wanted
        if year_from is not None or year_to is not None:
            year = int(rec["issue_date"][:4])
            assert (year_from is None or year >= year_from) and (year_to is None or year <= year_to)
