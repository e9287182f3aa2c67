"""The FastAPI application: ``create_app`` builds it, ``serve`` runs it under uvicorn (``mugle serve``).

The engine is loaded once in the lifespan and kept on ``app.state.engine``; handlers read it through
:data:`app.deps.EngineDep` so that it can be swapped atomically at runtime. With missing or inconsistent
artifacts the app refuses to start and logs the reason (an :class:`~mugle_core.artifacts.ArtifactError`).
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.engine import Engine
from app.errors import ClientError
from app.observability import configure_json_logging, route_uvicorn_logs
from app.ops import setup_operations
from app.routes import health, recommend, search, songs, tags
from app.settings import Settings
from mugle_core.artifacts import MANIFEST, ArtifactError, resolve_current

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# Routers other parts of the project contribute; each is optional until its module exists.
OPTIONAL_ROUTERS: tuple[str, ...] = ("app.routes.audio", "app.routes.visual")
# Packages whose log level MUGLE_LOG_LEVEL sets: the service and the shared code it runs.
SERVICE_LOGGERS: tuple[str, ...] = ("app", "mugle_core", "mugle_nets")


def version_dir_of(artifacts: Path) -> Path:
    """The version folder to serve: ``artifacts`` itself when it is a version, else what ``current`` names."""
    artifacts = Path(artifacts)
    if (artifacts / MANIFEST).is_file():
        return artifacts
    return resolve_current(artifacts)


def load_engine(settings: Settings) -> Engine:
    """Load the served version named by ``settings.artifacts``; ArtifactError names what is wrong."""
    return Engine.load(version_dir_of(settings.artifacts), faiss_threads=settings.faiss_threads)


def _optional_router(module_name: str) -> APIRouter | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but one of its own imports is missing: a real error
        logger.debug("optional router %s not present", module_name)
        return None
    router: APIRouter = module.router
    return router


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if getattr(app.state, "engine", None) is None:
        try:
            app.state.engine = load_engine(settings)
        except ArtifactError as exc:
            logger.error("refusing to start: %s", exc)
            raise
    if settings.preload_audio:
        from app.audio import preload

        preload(app.state.engine.version_dir)
    if settings.log_json:
        route_uvicorn_logs()  # uvicorn may have configured its loggers after the app was built
    reloader = app.state.reloader
    await reloader.start()
    try:
        yield
    finally:
        await reloader.stop()


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings : configuration; read from ``MUGLE_*`` environment variables when omitted.
    engine : an already loaded engine (tests, benchmarks); loaded from ``settings.artifacts`` at
        startup when omitted.
    """
    settings = settings or Settings()
    for name in SERVICE_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
    app = FastAPI(
        title="Mugle",
        version="0.1.0",
        summary="Content-based music recommendation: playlists, audio and both.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    # Added first, so innermost: CORS and the service's middleware (added below) wrap it as they wrap the routes.
    app.add_middleware(recommend.RecommendShortcut, router_app=app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.exception_handler(ClientError)
    async def _client_error(request: Request, exc: ClientError) -> JSONResponse:
        # Only the explicit client-error type: any other exception is a bug and stays a logged 500.
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422, except that a value JSON cannot hold (a NaN or infinity the client sent, e.g.
        # ``"diversity": NaN``, which Python's parser accepts) is echoed as text instead of failing the answer.
        return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(exc.errors()))})

    for router in (health.router, search.router, recommend.router, songs.router, tags.router):
        app.include_router(router)
    for name in OPTIONAL_ROUTERS:
        optional = _optional_router(name)
        if optional is not None:
            app.include_router(optional)
    setup_operations(app, settings)  # metrics, limits, admin routes, the reloader the lifespan runs
    if (STATIC_DIR / "index.html").is_file():
        # Mounted last: a mount at "/" only sees paths no API route matched.
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its text (``"nan"``, ``"inf"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def serve(artifacts: Path | str | None = None, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the service under uvicorn (``mugle serve``); ``workers`` > 1 runs that many processes."""
    import uvicorn

    settings = Settings(artifacts=Path(artifacts)) if artifacts is not None else Settings()
    if settings.log_json:
        # Configure before anything logs, and keep uvicorn from installing its own plain-text handlers.
        configure_json_logging(settings.log_level)
        log_config = None
    else:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        log_config = uvicorn.config.LOGGING_CONFIG
    if workers > 1:
        from app.workers import run_workers

        run_workers(host, port, workers, settings.log_level.lower(), log_config, settings.artifacts)
        return
    # access_log off: the middleware already writes one access line per request, with its id.
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                log_config=log_config, access_log=False)
