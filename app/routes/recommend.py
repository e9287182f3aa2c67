"""``GET /recommend/{song_id}`` and ``POST /recommend``.

Both handlers are ``async def`` and answer with a prebuilt :class:`~app.responses.FastJSONResponse`:
the engine call takes a fraction of a millisecond (a catalog song reads its precomputed neighbour lists),
so a hop to the threadpool and a pydantic re-validation of the answer (the engine's dicts already have
the documented shape) would cost more than the recommendation itself.
``response_model`` stays declared for the OpenAPI schema; FastAPI does not re-validate a Response.

The steering parameters (``genre``, ``year_from``, ``year_to``, ``diversity``; ``negative_ids`` in the body of
``POST /recommend``) are declared on each handler rather than through a shared dependency, which would cost
every request a dependency resolution; with none of them set the engine takes its unsteered path.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from app.deps import EngineDep
from app.engine import UnknownSongError
from app.responses import FastJSONResponse
from app.schemas import (
    DIVERSITY_HELP,
    ErrorDetail,
    Method,
    RecommendResponse,
    SeedsRequest,
    SeedsResponse,
    TagRecommendResponse,
)
from app.steering import Steering
from app.tags import UnknownTagError

logger = logging.getLogger(__name__)
router = APIRouter(tags=["recommend"])

_ERRORS = {404: {"model": ErrorDetail, "description": "unknown song id(s), named in the detail"}}
_TAG_ERRORS = {404: {"model": ErrorDetail, "description": "unknown tag"}}

Novelty = Annotated[
    float, Query(ge=0.0, le=1.0, allow_inf_nan=False, description="0 = as ranked, 1 = prefer lesser-known songs")
]
Genres = Annotated[
    list[str] | None,
    Query(max_length=100, description="repeatable: keep only songs with one of these top-level genres "
                                      "(names as Song.genres shows them, or codes such as GN0100)"),
]
YearFrom = Annotated[int | None, Query(ge=0, le=9999, description="keep only songs issued in or after this year")]
YearTo = Annotated[int | None, Query(ge=0, le=9999, description="keep only songs issued in or before this year")]
Diversity = Annotated[float, Query(ge=0.0, le=1.0, allow_inf_nan=False, description=DIVERSITY_HELP)]


@router.get(
    "/recommend/{song_id}",
    response_model=RecommendResponse,
    summary="Songs similar to one song",
    responses=_ERRORS,
)
async def recommend(
    engine: EngineDep,
    song_id: Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="any id of the song")],
    method: Annotated[Method, Query(description="ranking method")] = "score_total",
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    novelty: Novelty = 0.0,
    exclude_artist: Annotated[bool, Query(description="leave out songs by the query song's artists")] = False,
    genre: Genres = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    diversity: Diversity = 0.0,
) -> FastJSONResponse:
    steered = genre or year_from is not None or year_to is not None or diversity
    steer = Steering.of(genre, year_from, year_to, diversity) if steered else None
    try:
        song, items = engine.recommend(song_id, method, k, novelty, exclude_artist, steer)
    except UnknownSongError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return FastJSONResponse({"song": song, "method": method, "recommendations": items})


@router.post(
    "/recommend",
    response_model=SeedsResponse,
    summary="Continue a playlist: songs similar to a set of seeds",
    responses=_ERRORS,
)
async def recommend_seeds(engine: EngineDep, body: SeedsRequest) -> FastJSONResponse:
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
)
async def recommend_tag(
    engine: EngineDep,
    tag: Annotated[str, Path(min_length=1, max_length=200, description="a tag, as GET /tags lists it")],
    method: Annotated[Method, Query(description="ranking method")] = "score_total",
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    novelty: Novelty = 0.0,
    genre: Genres = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    diversity: Diversity = 0.0,
) -> FastJSONResponse:
    steer = Steering.of(genre, year_from, year_to, diversity)
    try:
        name, items = engine.recommend_tag(tag, method, k, novelty, steer)
    except UnknownTagError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return FastJSONResponse({"tag": name, "method": method, "recommendations": items})
