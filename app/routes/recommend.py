"""``GET /recommend/{song_id}`` and ``POST /recommend``.

Both handlers are ``async def`` and answer with a prebuilt :class:`~app.responses.FastJSONResponse`:
the engine call takes a fraction of a millisecond (a catalog song reads its precomputed neighbour lists),
so a hop to the threadpool and a pydantic re-validation of the answer (the engine's dicts already have
the documented shape) would cost more than the recommendation itself.
``response_model`` stays declared for the OpenAPI schema; FastAPI does not re-validate a Response.

The steering query parameters (``genre``, ``year_from``, ``year_to``, ``diversity``) of the two GET routes are
read from the request by :func:`steering_from_query` and documented in the OpenAPI schema through
``openapi_extra`` (:data:`STEERING_QUERY`), not declared as FastAPI parameters: measured in-process, FastAPI
spends about 10 µs per declared query parameter on every request even when it is absent, which for these
four would have slowed every unsteered ``/recommend`` by about 40 µs (some 4 % of its CPU time). With none of
them in the query string the route checks four keys and the engine takes its unsteered path. In
``POST /recommend`` they are body fields (``negative_ids`` too), which pydantic validates at no such cost.

:class:`RecommendShortcut`, the innermost ASGI layer (inside the service's middleware, so request ids,
metrics, limits, the timeout and access lines apply as to any request), answers the commonest request,
``GET /recommend/{song_id}`` whose query string names at most ``method``, ``k``, ``novelty`` and
``exclude_artist`` with plainly valid values, without FastAPI's per-request parameter handling (about 50 µs
of CPU in process, as much as the recommendation itself from the fused lists). It gives the route's own
answer (the same function builds it) and marks the request as the route's for the metrics. Everything else
(a value to validate, an error to report, steering, an unknown song) goes on to the route, so the OpenAPI
schema and the 422 and 404 answers are FastAPI's as before.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Response
from starlette.datastructures import QueryParams

from app.deps import EngineDep
from app.engine import Engine, UnknownSongError
from app.errors import ClientError
from app.observability import ASGIApp, Receive, Scope, Send, note_recommend_method
from app.responses import FastJSONResponse, RawJSONResponse
from app.schemas import (
    DIVERSITY_HELP,
    GENRE_HELP,
    MAX_K,
    ErrorDetail,
    RecommendResponse,
    SeedsRequest,
    SeedsResponse,
    TagRecommendResponse,
)
from app.steering import MAX_GENRES, Steering
from app.tags import UnknownTagError
from mugle_core.names import METHODS, Method

logger = logging.getLogger(__name__)
router = APIRouter(tags=["recommend"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown song id(s), named in the detail"}
}
_TAG_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorDetail, "description": "unknown tag"}}

Novelty = Annotated[
    float, Query(ge=0.0, le=1.0, allow_inf_nan=False, description="0 = as ranked, 1 = prefer lesser-known songs")
]
_MAX_YEAR = 9999
_YEAR = {"type": "integer", "minimum": 0, "maximum": _MAX_YEAR}
_GENRE_LENGTH = 100
STEERING_QUERY: list[dict[str, Any]] = [
    {"name": "genre", "in": "query", "required": False, "style": "form", "explode": True,
     "description": "repeatable: " + GENRE_HELP,
     "schema": {"type": "array", "maxItems": MAX_GENRES,
                "items": {"type": "string", "minLength": 1, "maxLength": _GENRE_LENGTH}}},
    {"name": "year_from", "in": "query", "required": False, "schema": _YEAR,
     "description": "keep only songs issued in or after this year (undated songs drop out)"},
    {"name": "year_to", "in": "query", "required": False, "schema": _YEAR,
     "description": "keep only songs issued in or before this year (undated songs drop out)"},
    {"name": "diversity", "in": "query", "required": False, "description": DIVERSITY_HELP,
     "schema": {"type": "number", "minimum": 0, "maximum": 1, "default": 0}},
]
_STEERING_KEYS = tuple(p["name"] for p in STEERING_QUERY)


def _bad(name: str, rule: str, raw: object) -> HTTPException:
    return HTTPException(status_code=422, detail=f"{name}: {rule}, got {raw!r}")


def _year(params: QueryParams, name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or int(text) > _MAX_YEAR:
        raise _bad(name, "must be a year in 0..9999", raw)
    return int(text)


def steering_from_query(params: QueryParams) -> Steering | None:
    """The steering of a GET request's query string, or None when it names none (the fast path).

    Raises
    ------
    HTTPException
        422 naming the parameter when one is malformed or out of range (an unknown genre is refused later,
        by the engine, which knows the catalog's genres).
    """
    if not any(key in params for key in _STEERING_KEYS):
        return None
    genres = params.getlist("genre")
    if len(genres) > MAX_GENRES:
        raise _bad("genre", f"at most {MAX_GENRES} genres", len(genres))
    for g in genres:
        if not 1 <= len(g) <= _GENRE_LENGTH:
            raise _bad("genre", f"each genre must be 1..{_GENRE_LENGTH} characters", g)
    diversity = 0.0
    raw = params.get("diversity")
    if raw is not None:
        try:
            diversity = float(raw)
        except ValueError:
            raise _bad("diversity", "must be a number in [0, 1]", raw) from None
        if not 0.0 <= diversity <= 1.0:  # NaN fails this too
            raise _bad("diversity", "must be a number in [0, 1]", raw)
    try:
        return Steering.of(genres, _year(params, "year_from"), _year(params, "year_to"), diversity)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.get(
    "/recommend/{song_id}",
    response_model=RecommendResponse,
    summary="Songs similar to one song",
    responses=_ERRORS,
    openapi_extra={"parameters": STEERING_QUERY},
)
async def recommend(
    request: Request,
    engine: EngineDep,
    song_id: Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="any id of the song")],
    method: Annotated[Method, Query(description="ranking method")] = "score_total",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    novelty: Novelty = 0.0,
    exclude_artist: Annotated[bool, Query(description="leave out songs by the query song's artists")] = False,
) -> FastJSONResponse:
    note_recommend_method(request.scope, method)
    steer = steering_from_query(request.query_params)
    try:
        return recommend_answer(engine, song_id, method, k, novelty, exclude_artist, steer)
    except UnknownSongError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


def recommend_answer(
    engine: Engine, song_id: int, method: str, k: int, novelty: float, exclude_artist: bool, steer: Steering | None
) -> FastJSONResponse:
    """The answer of ``GET /recommend/{song_id}`` (the route's and :class:`RecommendShortcut`'s)."""
    song, items = engine.recommend(song_id, method, k, novelty, exclude_artist, steer)
    return FastJSONResponse({"song": song, "method": method, "recommendations": items})


_PREFIX = "/recommend/"
_SONG_ID = re.compile(r"-?[1-9][0-9]{0,17}|0")  # what int() and pydantic read alike, well inside int64
_K = re.compile(rb"[1-9][0-9]{0,2}")
_NOVELTY = re.compile(rb"[01](\.[0-9]{1,12})?|\.[0-9]{1,12}")
_BOOLS = {b"true": True, b"false": False, b"1": True, b"0": False}
_METHODS = {m.encode("ascii"): m for m in METHODS}
_PLAIN_KEYS = (b"method", b"k", b"novelty", b"exclude_artist")


def plain_recommend_query(query: bytes) -> tuple[str, int, float, bool] | None:
    """(method, k, novelty, exclude_artist) of a query string that FastAPI would accept as it stands, or None.

    Only the plain forms: each of the four keys at most once, no other key, no percent-encoding, and values
    in the forms every client sends (``k=10``, ``novelty=0.5``, ``exclude_artist=true``). Anything else,
    valid or not, is None and is left to the route and its validation.
    """
    method, k, novelty, exclude = "score_total", 10, 0.0, False
    if not query:
        return method, k, novelty, exclude
    if b"%" in query or b"+" in query:
        return None
    seen: set[bytes] = set()
    for part in query.split(b"&"):
        key, eq, value = part.partition(b"=")
        if not eq or key in seen or key not in _PLAIN_KEYS:
            return None
        seen.add(key)
        if key == b"method":
            if value not in _METHODS:
                return None
            method = _METHODS[value]
        elif key == b"k":
            if not _K.fullmatch(value) or int(value) > MAX_K:
                return None
            k = int(value)
        elif key == b"novelty":
            if not _NOVELTY.fullmatch(value) or float(value) > 1.0:
                return None
            novelty = float(value)
        else:
            if value not in _BOOLS:
                return None
            exclude = _BOOLS[value]
    return method, k, novelty, exclude


class RecommendShortcut:
    """Answer plain ``GET /recommend/{song_id}`` requests without FastAPI's parameter handling (see the module
    docstring); every other request goes on to ``app``.

    Parameters
    ----------
    app : the next ASGI app (FastAPI's own stack).
    router_app : the FastAPI app: its state holds the engine (swapped on reload).
    """

    def __init__(self, app: ASGIApp, router_app: FastAPI) -> None:
        self.app = app
        self.router_app = router_app
        # This module's route (the router is included without a prefix, so its path is the template).
        self.route = next(r for r in router.routes if getattr(r, "path", None) == "/recommend/{song_id}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(_PREFIX):
            await self.app(scope, receive, send)
            return
        engine = getattr(self.router_app.state, "engine", None)
        raw_id = scope["path"][len(_PREFIX):]
        plain = plain_recommend_query(scope["query_string"]) if _SONG_ID.fullmatch(raw_id) else None
        # An overridden engine dependency (tests, embedding apps) is the route's to resolve: the shortcut
        # only knows the engine the lifespan loaded.
        overridden = bool(self.router_app.dependency_overrides)
        if plain is None or not isinstance(engine, Engine) or scope.get("root_path") or overridden:
            await self.app(scope, receive, send)
            return
        method, k, novelty, exclude_artist = plain
        try:
            body = engine.recommend_json(int(raw_id), method, k, novelty, exclude_artist)
            if body is not None:  # the fused lists answered: the JSON is spliced, not encoded from dicts
                response: Response = RawJSONResponse(body)
            else:
                response = recommend_answer(engine, int(raw_id), method, k, novelty, exclude_artist, None)
        except (UnknownSongError, ClientError):
            await self.app(scope, receive, send)  # the route reports it, in FastAPI's words
            return
        scope["route"] = self.route  # what the router records: the metrics and the access line name the route
        note_recommend_method(scope, method)
        await response(scope, receive, send)


@router.post(
    "/recommend",
    response_model=SeedsResponse,
    summary="Continue a playlist: songs similar to a set of seeds",
    responses=_ERRORS,
)
async def recommend_seeds(request: Request, engine: EngineDep, body: SeedsRequest) -> FastJSONResponse:
    note_recommend_method(request.scope, body.method)
    steer = Steering.of(body.genre, body.year_from, body.year_to, body.diversity, body.negative_ids)
    try:
        seeds, items = engine.recommend_seeds(
            body.song_ids, body.method, body.k, body.novelty, body.exclude_artist, steer
        )
    except UnknownSongError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return FastJSONResponse({"seeds": seeds, "method": body.method, "recommendations": items})


@router.get(
    "/recommend/tag/{tag:path}",
    response_model=TagRecommendResponse,
    summary="Songs for a situation or mood (a playlist tag)",
    description=(
        "Songs that fit a tag of the training playlists (GET /tags finds tags). score_total fuses the songs "
        "most often in the tag's playlists with each model's neighbours of the tag's vector."
    ),
    responses=_TAG_ERRORS,
    openapi_extra={"parameters": STEERING_QUERY},
)
async def recommend_tag(
    engine: EngineDep,
    request: Request,
    tag: Annotated[str, Path(min_length=1, max_length=200, description="a tag, as GET /tags lists it")],
    method: Annotated[Method, Query(description="ranking method")] = "score_total",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    novelty: Novelty = 0.0,
) -> FastJSONResponse:
    note_recommend_method(request.scope, method)
    steer = steering_from_query(request.query_params)
    try:
        name, items = engine.recommend_tag(tag, method, k, novelty, steer)
    except UnknownTagError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return FastJSONResponse({"tag": name, "method": method, "recommendations": items})
