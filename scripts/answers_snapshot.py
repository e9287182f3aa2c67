"""Dump the service's answers to a fixed set of requests, to show that a code change keeps behaviour.

The app is built in-process (``TestClient``) over a given artifacts folder (a version folder or a folder
with ``current``), a fixed list of requests is sent, and every answer (status and JSON body) is written
to one JSON file with sorted keys. Fields that measure time (``timings_ms``) are dropped, since they
differ from run to run. Two runs over the SAME artifacts, one on the old code and one on the new, must
give byte-identical files. For the package move of issue 15 (old code: commit 2f31555)::

    mkdir /tmp/mugle-old && git archive 2f31555 | tar -x -C /tmp/mugle-old
    mugle demo-data --out /tmp/demo --songs 400 --playlists 300 --seed 0 --quiet
    mugle train --data /tmp/demo --out /tmp/arts --seed 0 --deterministic --version v1 --no-progress \
        --tcae-steps 30 --cel-epochs 2 --w2v-epochs 5 --holdout 0.1
    PYTHONPATH=/tmp/mugle-old python scripts/answers_snapshot.py --artifacts /tmp/arts --out before.json
    PYTHONPATH=$PWD python scripts/answers_snapshot.py --artifacts /tmp/arts --out after.json
    cmp before.json after.json

The requests cover title search, ``GET /recommend/{id}`` with every method and a few options, ``POST
/recommend``, ``GET /songs/{id}`` (a known and an unknown id), the picture routes, ``GET /health`` and an
audio query (``POST /recommend/audio``) with a synthetic clip, so the audio models are exercised too.
The script uses only what the service has had since before the package move (``app.main.create_app``
and ``app.settings.Settings``), so the same file runs on both sides of it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("score_total", "each_top3", "music2vec", "tcae", "cel")
AUDIO_METHODS = ("score_total", "tcae", "cel")
# Search words whose hits give the song ids the other requests use.
SEED_WORDS = ("star", "dream", "love", "rain", "마음", "사랑")
TIMING_FIELDS = frozenset({"timings_ms", "uptime_s", "elapsed_ms"})


def _strip_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_timings(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [_strip_timings(v) for v in value]
    return value


def _answer(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {"non_json_bytes": len(response.content)}
    return {"status": response.status_code, "body": _strip_timings(body)}


def _sine_wav(seconds: float = 6.0, rate: int = 22050) -> bytes:
    """A fixed two-tone clip with a slow tremolo, written as 16-bit WAV."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 660.0 * t)
    wave *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def snapshot(artifacts: Path) -> dict[str, Any]:
    """Send the fixed requests to an app over ``artifacts``; returns ``{request: answer}``."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(artifacts=artifacts, watch_interval_s=0)
    answers: dict[str, Any] = {}
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        answers["GET /health"] = _answer(health)
        # Queries are built from the served catalogue, so the request list is fixed by the artifacts.
        first = []
        for word in SEED_WORDS:
            first += client.get("/search", params={"q": word, "limit": 50}).json()["results"]
        ids = sorted({int(hit["song_id"]) for hit in first})
        if len(ids) < 7:
            raise SystemExit(f"{artifacts}: the seed words {SEED_WORDS} found {len(ids)} songs, need 7")
        titles = [*SEED_WORDS, *(hit["title"] for hit in first[:4]), "zzzz-nothing-matches", "ㅂㅍㅈ"]
        for q in titles:
            for limit in (1, 10):
                r = client.get("/search", params={"q": q, "limit": limit})
                answers[f"GET /search q={q!r} limit={limit}"] = _answer(r)
        picks = ids[:3] + ids[-2:]
        for sid in picks:
            for method in METHODS:
                for k, novelty, exclude in ((10, 0.0, False), (5, 0.5, True), (25, 1.0, False)):
                    params = {"method": method, "k": k, "novelty": novelty, "exclude_artist": exclude}
                    r = client.get(f"/recommend/{sid}", params=params)
                    answers[f"GET /recommend/{sid} {params}"] = _answer(r)
            answers[f"GET /songs/{sid}"] = _answer(client.get(f"/songs/{sid}"))
            answers[f"GET /songs/{sid}/mel"] = _answer(client.get(f"/songs/{sid}/mel"))
            answers[f"GET /songs/{sid}/map"] = _answer(client.get(f"/songs/{sid}/map"))
        answers["GET /songs/-1"] = _answer(client.get("/songs/-1"))
        answers["GET /recommend/-1"] = _answer(client.get("/recommend/-1"))
        answers["GET /recommend bad method"] = _answer(client.get(f"/recommend/{ids[0]}", params={"method": "x"}))
        answers["GET /visual/stats"] = _answer(client.get("/visual/stats"))
        for method in METHODS:
            for seeds in (ids[:1], ids[:3], ids[2:7]):
                body = {"song_ids": seeds, "method": method, "k": 10, "novelty": 0.25, "exclude_artist": False}
                answers[f"POST /recommend {body}"] = _answer(client.post("/recommend", json=body))
        body = {"song_ids": [ids[0], -1], "method": "score_total", "k": 10}
        answers["POST /recommend unknown seed"] = _answer(client.post("/recommend", json=body))
        wav = _sine_wav()
        for method in AUDIO_METHODS:
            files = {"file": ("tone.wav", wav, "audio/wav")}
            r = client.post("/recommend/audio", params={"method": method, "k": 10}, files=files)
            answers[f"POST /recommend/audio method={method}"] = _answer(r)
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", required=True, type=Path, help="artifacts folder or version folder")
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    answers = snapshot(args.artifacts)
    args.out.write_text(json.dumps(answers, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    statuses: dict[int, int] = {}
    for answer in answers.values():
        statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
    print(f"{len(answers)} requests -> {args.out} (statuses {dict(sorted(statuses.items()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
