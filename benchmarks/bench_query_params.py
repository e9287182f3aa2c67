"""What declared-but-absent FastAPI query parameters cost a request, against reading them only when present.

Three stub routes with ``/recommend``'s parameters (no engine work), called in-process through httpx's ASGI
transport: ``plain`` (the parameters before steering), ``declared`` (plus the four steering parameters
declared as FastAPI query parameters) and ``checked`` (plus ``request: Request`` and a look for the four
keys, as ``app.routes.recommend`` does). Prints CPU µs per request, best of ``--reps`` runs.

Usage::

    python benchmarks/bench_query_params.py [--requests 3000 --reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Annotated, Literal

import httpx
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response

Method = Literal["score_total", "each_top3", "music2vec", "tcae", "cel"]
KEYS = ("genre", "year_from", "year_to", "diversity")


def make(kind: str) -> FastAPI:
    app = FastAPI()
    if kind == "plain":
        @app.get("/r/{song_id}")
        async def plain(song_id: Annotated[int, Path(ge=0)], method: Annotated[Method, Query()] = "score_total",
                        k: Annotated[int, Query(ge=1, le=100)] = 10,
                        novelty: Annotated[float, Query(ge=0, le=1)] = 0.0,
                        exclude_artist: Annotated[bool, Query()] = False) -> Response:
            return Response(b"{}")
    elif kind == "declared":
        @app.get("/r/{song_id}")
        async def declared(song_id: Annotated[int, Path(ge=0)], method: Annotated[Method, Query()] = "score_total",
                           k: Annotated[int, Query(ge=1, le=100)] = 10,
                           novelty: Annotated[float, Query(ge=0, le=1)] = 0.0,
                           exclude_artist: Annotated[bool, Query()] = False,
                           genre: Annotated[list[str] | None, Query(max_length=50)] = None,
                           year_from: Annotated[int | None, Query(ge=0, le=9999)] = None,
                           year_to: Annotated[int | None, Query(ge=0, le=9999)] = None,
                           diversity: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)] = 0.0) -> Response:
            return Response(b"{}")
    else:
        @app.get("/r/{song_id}")
        async def checked(request: Request, song_id: Annotated[int, Path(ge=0)],
                          method: Annotated[Method, Query()] = "score_total",
                          k: Annotated[int, Query(ge=1, le=100)] = 10,
                          novelty: Annotated[float, Query(ge=0, le=1)] = 0.0,
                          exclude_artist: Annotated[bool, Query()] = False) -> Response:
            steered = any(key in request.query_params for key in KEYS)
            return Response(b"{}" if not steered else b"[]")
    return app


async def measure(app: FastAPI, requests: int, reps: int) -> float:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for i in range(300):
            await client.get(f"/r/{i}")
        best = float("inf")
        for _ in range(reps):
            started = time.process_time()
            for i in range(requests):
                await client.get(f"/r/{i}")
            best = min(best, (time.process_time() - started) / requests * 1e6)
        return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    for kind in ("plain", "declared", "checked", "plain", "declared", "checked"):
        print(f"{kind:<9} {asyncio.run(measure(make(kind), args.requests, args.reps)):6.0f} µs CPU per request")


if __name__ == "__main__":
    main()
