"""``GET /tags`` (playlist tags: situations and moods) and ``GET /genres`` (what a genre filter may name)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.deps import EngineDep
from app.responses import FastJSONResponse
from app.schemas import GenresResponse, TagsResponse

logger = logging.getLogger(__name__)
router = APIRouter(tags=["steering"])


@router.get(
    "/tags",
    response_model=TagsResponse,
    summary="Fuzzy search over the training playlists' tags",
    description=(
        "Situations and moods (드라이브, 이별, 새벽 ...) that enough training playlists carry. Matching is the "
        "title search's: spacing and case are ignored, and Hangul initial consonants (ㄷㄹㅇㅂ) match tags by "
        "their initials. Ties go to the tag more playlists carry."
    ),
)
async def tags(
    engine: EngineDep,
    q: Annotated[str, Query(min_length=1, max_length=200, examples=["드라이브"], description="search text")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> FastJSONResponse:
    if not q.strip():
        raise HTTPException(status_code=422, detail="q: must contain something other than spaces")
    return FastJSONResponse({"query": q, "results": engine.search_tags(q, limit)})


@router.get(
    "/genres",
    response_model=GenresResponse,
    summary="The catalog's top-level genres, for the genre filter",
)
async def genres(engine: EngineDep) -> FastJSONResponse:
    return FastJSONResponse({"genres": engine.filters.genres()})
