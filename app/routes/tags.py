"""``GET /tags`` (playlist tags: situations and moods) and ``GET /genres`` (what a genre filter may name)."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from app.deps import EngineDep
from app.responses import FastJSONResponse
from app.routes.search import Limit, SearchText, require_text
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
async def tags(engine: EngineDep, q: SearchText, limit: Limit = 10) -> FastJSONResponse:
    require_text(q)
    return FastJSONResponse({"query": q, "results": engine.search_tags(q, limit)})


@router.get(
    "/genres",
    response_model=GenresResponse,
    summary="The catalog's top-level genres, for the genre filter",
)
async def genres(engine: EngineDep) -> FastJSONResponse:
    return FastJSONResponse({"genres": engine.filters.genres()})
