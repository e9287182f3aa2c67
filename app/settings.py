"""Service settings, read once from ``MUGLE_*`` environment variables (or passed explicitly in tests)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

logger = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Everything the service can be configured with.

    Attributes
    ----------
    artifacts : folder holding artifact versions and the ``current`` pointer.
    cors_origins : origins allowed by CORS; empty means no CORS headers at all.
        From the environment as JSON (``'["http://a"]'``) or comma-separated (``http://a,http://b``).
    log_level : level of the ``app`` loggers.
    reload_token : shared secret that authorises a hot reload of the artifacts; None disables reloads.
    preload_audio : load the audio embedding models at startup instead of on the first audio query.
    max_query_chars, max_limit, max_k, max_seeds : request limits of the HTTP API (see DESIGN.md).
    faiss_threads : OpenMP threads FAISS may use per search; one query at a time gains nothing from more.
    """

    model_config = SettingsConfigDict(env_prefix="MUGLE_", extra="ignore")

    artifacts: Path = Path("artifacts")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    reload_token: str | None = None
    preload_audio: bool = False
    max_query_chars: int = 200
    max_limit: int = 50
    max_k: int = 100
    max_seeds: int = 100
    faiss_threads: int = 1

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # A plain comma-separated string is friendlier in a shell or docker-compose file than JSON.
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"MUGLE_LOG_LEVEL: unknown level {value!r}")
        return level
