"""``GET /recommend/{song_id}`` and ``POST /recommend``.

Both handlers are ``async def`` and answer with a prebuilt :class:`~app.responses.FastJSONResponse`:
the engine call takes a fraction of a millisecond (a catalog song reads its precomputed neighbour lists),
so a hop to the threadpool and a pydantic re-validation of the answer (the engine's dicts already have
the documented shape) would cost more than the recommendation itself.
``response_model`` stays declared for the OpenAPI schema; FastAPI does not re-validate a Response.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from app.deps import EngineDep
from app.engine import UnknownSongError
from app.observability import note_recommend_method
from app.responses import FastJSONResponse
from app.schemas import MAX_K, ErrorDetail, RecommendResponse, SeedsRequest, SeedsResponse
from mugle_core.names import Method

logger = logging.getLogger(__name__)
router = APIRouter(tags=["recommend"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown song id(s), named in the detail"}
}


@router.get(
    "/recommend/{song_id}",
    response_model=RecommendResponse,
    summary="Songs similar to one song",
    responses=_ERRORS,
)
async def recommend(
    request: Request,
    engine: EngineDep,
    song_id: Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="any id of the song")],
    method: Annotated[Method, Query(description="ranking method")] = "score_total",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    novelty: Annotated[
        float, Query(ge=0.0, le=1.0, allow_inf_nan=False, description="0 = as ranked, 1 = prefer lesser-known songs")
    ] = 0.0,
    exclude_artist: Annotated[bool, Query(description="leave out songs by the query song's artists")] = False,
) -> FastJSONResponse:
    note_recommend_method(request.scope, method)
    try:
        song, items = engine.recommend(song_id, method, k, novelty, exclude_artist)
    except UnknownSongError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return FastJSONResponse({"song": song, "method": method, "recommendations": items})


@router.post(
    "/recommend",
    response_model=SeedsResponse,
    summary="Continue a playlist: songs similar to a set of seeds",
    responses=_ERRORS,
)
async def recommend_seeds(request: Request, engine: EngineDep, body: SeedsRequest) -> FastJSONResponse:
    note_recommend_method(request.scope, body.method)
    try:
        seeds, items = engine.recommend_seeds(body.song_ids, body.method, body.k, body.novelty, body.exclude_artist)
    except UnknownSongError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return FastJSONResponse({"seeds": seeds, "method": body.method, "recommendations": items})
