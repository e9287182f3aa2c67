"""Operator endpoints: ``POST /admin/reload``, ``GET /admin/status`` and ``GET /metrics``.

The admin endpoints need the reload token from the settings (``MUGLE_RELOAD_TOKEN``), sent as
``Authorization: Bearer <token>`` or ``X-Reload-Token: <token>``; with no token configured they are
disabled (403). ``/metrics`` is open, as Prometheus scrapers expect: expose the port only where the
scraper lives.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from app.workers import reload_siblings

logger = logging.getLogger(__name__)
router = APIRouter(tags=["admin"])


class ReloadResponse(BaseModel):
    """Outcome of a reload that did not fail."""

    outcome: str = Field(description="swapped (a new version is served) or unchanged (it already was)")
    version: str | None = Field(description="the version served now")
    previous: str | None = Field(description="the version served before")
    target: str | None = Field(description="the version `current` names")
    trigger: str
    seconds: float = Field(description="time spent loading and validating")
    detail: str
    at: float = Field(description="Unix time the reload ended")


def _require_token(request: Request, authorization: str | None, x_reload_token: str | None) -> None:
    expected = getattr(request.app.state.settings, "reload_token", None)
    if not expected:
        raise HTTPException(
            status_code=403, detail="admin endpoints are disabled: set MUGLE_RELOAD_TOKEN to enable them"
        )
    given = x_reload_token
    if given is None and authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            given = credentials.strip()
    challenge = {"WWW-Authenticate": "Bearer"}
    if not given:
        raise HTTPException(
            status_code=401,
            detail="missing reload token: send 'Authorization: Bearer <token>' or 'X-Reload-Token: <token>'",
            headers=challenge,
        )
    # Constant-time comparison, so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(given.encode("utf-8"), str(expected).encode("utf-8")):
        logger.warning("admin request with a wrong reload token refused")
        raise HTTPException(status_code=401, detail="invalid reload token", headers=challenge)


_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong token"},
    403: {"description": "admin endpoints disabled (no MUGLE_RELOAD_TOKEN)"},
}


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    summary="Serve the version `current` names, after loading and validating it",
    responses={**_AUTH_ERRORS, 409: {"description": "the version was refused; the old one keeps serving"}},
)
async def reload(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_reload_token: Annotated[str | None, Header()] = None,
    force: Annotated[bool, Query(description="reload even when `current` names the served version")] = False,
) -> ReloadResponse:
    _require_token(request, authorization, x_reload_token)
    result = await request.app.state.reloader.reload("api", force=force)
    if result.outcome != "failed":
        reload_siblings()  # under `mugle serve --workers N`, the other workers reload too
    if result.outcome == "failed":
        raise HTTPException(
            status_code=409,
            detail=f"version {result.target!r} refused, still serving {result.previous!r}: {result.detail}",
        )
    return ReloadResponse(**result.as_dict())


@router.get("/admin/status", summary="Served version, `current`, known versions and reload history",
            responses=_AUTH_ERRORS)
def status(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_reload_token: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    _require_token(request, authorization, x_reload_token)
    status: dict[str, Any] = request.app.state.reloader.status()
    return status


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
