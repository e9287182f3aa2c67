"""The FastAPI application: ``create_app`` builds it, ``serve`` runs it under uvicorn (``mugle serve``).

The engine is loaded once in the lifespan and kept on ``app.state.engine``; handlers read it through
:data:`app.deps.EngineDep` so that it can be swapped atomically at runtime. With missing or inconsistent
artifacts the app refuses to start and logs the reason (an :class:`~app.artifacts.ArtifactError`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.artifacts import MANIFEST, ArtifactError, resolve_current
from app.engine import Engine
from app.observability import configure_json_logging
from app.ops import setup_operations
from app.routes import health, recommend, search, songs, tags
from app.settings import Settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# Routers other parts of the project contribute; each is optional until its module exists.
OPTIONAL_ROUTERS: tuple[str, ...] = ("app.routes.audio", "app.routes.visual")


def version_dir_of(artifacts: Path) -> Path:
    """The version folder to serve: ``artifacts`` itself when it is a version, else what ``current`` names."""
    artifacts = Path(artifacts)
    if (artifacts / MANIFEST).is_file():
        return artifacts
    return resolve_current(artifacts)


def load_engine(settings: Settings) -> Engine:
    """Load the served version named by ``settings.artifacts``; ArtifactError names what is wrong."""
    return Engine.load(version_dir_of(settings.artifacts), faiss_threads=settings.faiss_threads)


def _optional_router(module_name: str):  # noqa: ANN202 - an APIRouter or None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but one of its own imports is missing: a real error
        logger.debug("optional router %s not present", module_name)
        return None
    return module.router


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
    yield


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings : configuration; read from ``MUGLE_*`` environment variables when omitted.
    engine : an already loaded engine (tests, benchmarks); loaded from ``settings.artifacts`` at
        startup when omitted.
    """
    settings = settings or Settings()
    logging.getLogger("app").setLevel(settings.log_level)
    app = FastAPI(
        title="Mugle",
        version="0.1.0",
        summary="Content-based music recommendation: playlists, audio and both.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        # Engine checks raise ValueError naming the parameter; that is the client's mistake, not ours.
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    for router in (health.router, search.router, recommend.router, songs.router, tags.router):
        app.include_router(router)
    for name in OPTIONAL_ROUTERS:
        router = _optional_router(name)
        if router is not None:
            app.include_router(router)
    if (STATIC_DIR / "index.html").is_file():
        # Mounted last: a mount at "/" only sees paths no API route matched.
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    setup_operations(app, settings)
    return app


def serve(artifacts: Path | str | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the service with one uvicorn worker (``mugle serve``)."""
    import uvicorn

    overrides = {"artifacts": Path(artifacts)} if artifacts is not None else {}
    settings = Settings(**overrides)
    if settings.log_json:
        # Configure before anything logs, and keep uvicorn from installing its own plain-text handlers.
        configure_json_logging(settings.log_level)
        log_config = None
    else:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        log_config = uvicorn.config.LOGGING_CONFIG
    # access_log off: the observability middleware already writes one access line per request, with its id.
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                log_config=log_config, access_log=False)
