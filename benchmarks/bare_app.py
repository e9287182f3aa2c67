"""The floor for ``benchmarks/bench_http.py``: a FastAPI app with one endpoint returning ``{"status": "ok"}``.

Served by the same server stack as Mugle (uvicorn, one worker, uvloop and httptools), it measures what
the framework and the server cost on their own, with nothing of the service in the way.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok"}
