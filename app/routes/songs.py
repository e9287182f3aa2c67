"""``GET /songs/{song_id}``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from app.deps import EngineDep
from app.engine import UnknownSongError
from app.schemas import ErrorDetail, Song

logger = logging.getLogger(__name__)
router = APIRouter(tags=["songs"])

SongIdPath = Annotated[
    int,
    Path(ge=-(2**63), le=2**63 - 1, description="any id; a merged duplicate resolves to its canonical song"),
]


@router.get(
    "/songs/{song_id}",
    response_model=Song,
    summary="One song",
    responses={404: {"model": ErrorDetail, "description": "unknown song id"}},
)
def get_song(song_id: SongIdPath, engine: EngineDep) -> dict[str, Any]:
    try:
        return engine.get_song(song_id)
    except UnknownSongError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
