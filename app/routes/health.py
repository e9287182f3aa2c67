"""``GET /health``."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from app.deps import EngineDep
from app.observability import worker_id
from app.schemas import Health, ModelCounts

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Service status and the served version")
def health(engine: EngineDep) -> Health:
    # Several workers or replicas may answer behind one address: say which one this is and what it serves.
    counts = ModelCounts(**engine.model_counts())
    return Health(status="ok", version=engine.version, songs=len(engine.catalog), models=counts,
                  worker=worker_id())
