"""FastAPI dependencies. Always reach the engine through :data:`EngineDep`: it may be swapped at runtime.

They are ``async`` because they do no I/O: a sync dependency would cost a threadpool hop per request.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.engine import Engine
from app.settings import Settings

logger = logging.getLogger(__name__)


async def get_engine(request: Request) -> Engine:
    """The engine currently served (read on every request, so a hot swap takes effect at once)."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(status_code=503, detail="no artifacts loaded yet")
    assert isinstance(engine, Engine)
    return engine


async def get_settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
