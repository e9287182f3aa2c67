"""``GET /search``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.deps import EngineDep
from app.schemas import SearchResponse

logger = logging.getLogger(__name__)
router = APIRouter(tags=["search"])


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
def search(
    engine: EngineDep,
    q: Annotated[str, Query(min_length=1, max_length=200, examples=["밤편지"], description="search text")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SearchResponse:
    if not q.strip():
        raise HTTPException(status_code=422, detail="q: must contain something other than spaces")
    return SearchResponse(query=q, results=engine.search(q, limit))
