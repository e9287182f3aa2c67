"""``GET /search``.

``async def`` with a prebuilt :class:`~app.responses.FastJSONResponse`, like the recommend routes: a
search takes a few milliseconds of CPU that a threadpool hop would not parallelise (one worker), and the
engine's dicts already have the documented shape, so re-validating them through pydantic would only add
cost.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.deps import EngineDep
from app.responses import FastJSONResponse
from app.schemas import MAX_LIMIT, MAX_QUERY_CHARS, SearchResponse

logger = logging.getLogger(__name__)
router = APIRouter(tags=["search"])

# The text and size of a fuzzy search, shared with GET /tags (app.routes.tags), which has the same rules.
SearchText = Annotated[
    str, Query(min_length=1, max_length=MAX_QUERY_CHARS, examples=["밤편지"], description="search text")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def require_text(q: str) -> None:
    """A query of spaces only is a 422, like an empty one."""
    if not q.strip():
        raise HTTPException(status_code=422, detail="q: must contain something other than spaces")


@router.get(
    "/search",
    response_model=SearchResponse,
    summary="Fuzzy search over titles, artists and 'title artist'",
    description=(
        "Korean-aware: NFKC, case and decorations such as (feat. ...) are ignored. A query of Hangul initial "
        "consonants (ㅂㅍㅈ or ㅂ ㅍ ㅈ) matches titles by their initials. An exact title comes first; ties "
        "go to the more popular song."
    ),
)
async def search(engine: EngineDep, q: SearchText, limit: Limit = 10) -> FastJSONResponse:
    require_text(q)
    return FastJSONResponse({"query": q, "results": engine.search(q, limit)})
