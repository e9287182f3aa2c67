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
    faiss_threads : OpenMP threads FAISS may use per search; one query at a time gains nothing from more.
    log_json : write logs as one JSON object per line on stderr (``MUGLE_LOG_JSON=true``).
    watch_interval_s : seconds between two looks at ``artifacts/current``; 0 turns the watcher off.
    request_timeout_s : longest time a request may take before it is answered with 504; 0 turns it off.
    max_body_bytes : largest request body, except multipart uploads.
    max_url_bytes : longest request target (path and query string); longer ones are answered with 414.
    max_upload_bytes : largest ``multipart/form-data`` body (an audio clip and its form fields).
    audio_max_bytes, audio_max_seconds : largest audio upload accepted, in bytes and in seconds of audio.
    audio_decode_timeout_s : a decode taking longer is killed and answered with 422.

    The request limits (query length, ``limit``, ``k``, seed count) are part of the API contract, not
    settings: they are constants in :mod:`app.schemas` and appear in the OpenAPI schema.
    """

    model_config = SettingsConfigDict(env_prefix="MUGLE_", extra="ignore")

    artifacts: Path = Path("artifacts")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    reload_token: str | None = None
    preload_audio: bool = False
    faiss_threads: int = 1
    log_json: bool = False
    watch_interval_s: float = Field(default=5.0, ge=0.0)
    request_timeout_s: float = Field(default=15.0, ge=0.0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # nginx's default large_client_header_buffers, so a request is refused alike with or without the proxy.
    max_url_bytes: int = Field(default=8192, ge=64)
    # The audio route accepts 20 MiB of file; leave room for the multipart framing and form fields.
    max_upload_bytes: int = Field(default=21 * 1024 * 1024, ge=1)
    audio_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    audio_max_seconds: float = Field(default=600.0, gt=0)
    audio_decode_timeout_s: float = Field(default=10.0, gt=0)

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
