"""``GET /health``."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from app.deps import EngineDep
from app.schemas import Health

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Service status and the served version")
def health(engine: EngineDep) -> Health:
    return Health(status="ok", version=engine.version, songs=len(engine.catalog), models=engine.model_counts())
