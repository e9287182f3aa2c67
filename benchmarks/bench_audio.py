"""Latency of one 30-second upload to ``POST /recommend/audio``, end to end, on the CPU.

Starts the real server (uvicorn, 127.0.0.1, a free port) on an artifacts folder, uploads a 30-second
44.1 kHz stereo 16-bit WAV (5.3 MB) once cold (the first audio request: torch import, model load,
decoder start-up) and then ``--repeat`` times warm, and prints the client-side wall times with the
server's own split (read = upload decode + mel, embed, rank).

Without ``--artifacts`` it writes a demo catalog and trains a version whose audio models have the
default architecture (few training steps: quality does not matter for latency) in a temporary folder.

Usage::

    .venv/bin/python benchmarks/bench_audio.py [--artifacts artifacts] [--repeat 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.servers, the one helper that starts and waits for a server

from tests.servers import free_port, wait_http  # noqa: E402

logger = logging.getLogger(__name__)


def make_clip(seconds: float = 30.0, sr: int = 44100, seed: int = 0) -> bytes:
    """A 16-bit stereo WAV of changing chords over a quiet noise bed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    roots = rng.integers(48, 72, size=int(seconds) + 1)[t.astype(int)]
    x = np.zeros_like(t)
    for interval in (0, 4, 7):
        phase = 2 * np.pi * np.cumsum(440.0 * 2.0 ** ((roots + interval - 69) / 12.0)) / sr
        x += sum(0.08 / h * np.sin(h * phase) for h in range(1, 5))
    x += 0.003 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, np.stack([x, 0.9 * x], axis=1), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def train_demo(root: Path) -> Path:
    """A demo catalog and a version with default-size audio models, trained briefly."""
    from mugle_nets.cel import CELOptions
    from mugle_nets.tcae import TCAEOptions
    from training.demo import generate
    from training.pipeline import TrainOptions, train

    generate(root / "data", songs=300, playlists=200, seed=0, progress=False)
    options = TrainOptions(seed=0, device="cpu", progress=False, w2v_epochs=2,
                           tcae=TCAEOptions(steps=10, eval_every=10, stats_sample=128), cel=CELOptions(epochs=2))
    train(root / "data", root / "artifacts", options)
    return root / "artifacts"


def multipart(content: bytes, filename: str) -> tuple[bytes, str]:
    boundary = "mugle-bench-" + os.urandom(8).hex()
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(base: str, content: bytes, filename: str, method: str) -> tuple[float, dict]:
    body, ctype = multipart(content, filename)
    req = urllib.request.Request(f"{base}/recommend/audio?method={method}&k=10", data=body,
                                 headers={"Content-Type": ctype}, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as resp:
        answer = json.loads(resp.read())
    return time.perf_counter() - started, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, help="artifacts folder (default: train a demo version)")
    parser.add_argument("--repeat", type=int, default=10, help="warm requests")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of the server")
    parser.add_argument("--method", default="score_total", choices=["score_total", "tcae", "cel"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory(prefix="mugle-bench-audio-") as tmp:
        artifacts = args.artifacts or train_demo(Path(tmp))
        port = free_port()
        env = {**os.environ, "MUGLE_ARTIFACTS": str(artifacts), "OMP_NUM_THREADS": str(args.threads),
               "MKL_NUM_THREADS": str(args.threads), "MUGLE_LOG_LEVEL": "WARNING"}
        cmd = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/health", proc, timeout=120)
            wav = make_clip()
            cold, first = post(base, wav, "clip.wav", args.method)
            warm, splits = [], []
            for _ in range(args.repeat):
                seconds, answer = post(base, wav, "clip.wav", args.method)
                warm.append(seconds)
                splits.append(answer["timings_ms"])
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    ms = sorted(1000 * w for w in warm)
    report = {
        "upload": f"30 s WAV, 44.1 kHz stereo 16-bit, {len(wav) / 1e6:.1f} MB",
        "method": args.method,
        "threads": args.threads,
        "cold_ms": round(1000 * cold, 1),
        "cold_server_split_ms": first["timings_ms"],
        "warm_median_ms": round(statistics.median(ms), 1),
        "warm_p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "warm_min_ms": round(ms[0], 1),
        "warm_server_split_median_ms": {k: statistics.median(s[k] for s in splits) for k in splits[0]},
        "recommendations": len(first["recommendations"]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
