"""``POST /recommend/audio``: recommendations for a clip that is not in the catalog (cold start by audio)."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from app.audio import AudioInputError, AudioLimits, AudioModelsUnavailable, embedders_for, mel_picture, read_upload
from app.deps import EngineDep, SettingsDep
from app.schemas import MAX_K, ErrorDetail, Recommendation
from mugle_core.names import AudioMethod

logger = logging.getLogger(__name__)
router = APIRouter(tags=["recommend"])

_CHUNK = 1 << 20


class UploadedClip(BaseModel):
    """What the service made of the upload; it stands where ``song`` is for a catalog song."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "demo.wav",
                    "kind": "audio",
                    "format": "WAV",
                    "sample_rate": 44100,
                    "channels": 2,
                    "seconds": 61.2,
                    "excerpt": [20.0, 50.0],
                    "frames": 1876,
                }
            ]
        }
    )

    title: str = Field(description="the uploaded file's name")
    kind: Literal["audio", "mel"] = Field(description="decoded audio, or a .npy mel taken as is")
    format: str | None = Field(None, description="container format the decoder found (audio only)")
    sample_rate: int | None = Field(None, description="the clip's own sample rate in Hz (audio only)")
    channels: int | None = None
    seconds: float | None = Field(None, description="duration of the clip (audio only)")
    excerpt: list[float] | None = Field(
        None, description="[start_s, stop_s] of the clip that the mel covers: 20 to 50 s when the clip is long enough"
    )
    frames: int = Field(description="mel frames used (1876 for a 30-second excerpt)")


class MelPicture(BaseModel):
    """The upload's mel, shrunk for display: ``values`` is band-major (lowest band first), uint8."""

    bands: int
    frames: int = Field(description="columns of the picture (time averaged down)")
    source_frames: int
    max_db: float = Field(description="dB of value 255")
    range_db: float = Field(description="value 0 is this many dB below max_db, or quieter")
    values: list[int] = Field(description="bands * frames values in 0..255, row r = band r")


class AudioRecommendResponse(BaseModel):
    song: UploadedClip
    method: AudioMethod
    recommendations: list[Recommendation]
    mel: MelPicture
    timings_ms: dict[str, float] = Field(description="read (decode + mel), embed and rank times")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "the upload is empty"},
    413: {"model": ErrorDetail, "description": "the upload is larger than the limit (20 MB by default)"},
    415: {"model": ErrorDetail, "description": "the file is neither audio nor a .npy mel"},
    422: {"model": ErrorDetail, "description": "bad parameters, or unusable content (too long, too short, "
          "wrong mel shape, NaN values, pickled .npy, decoding timed out), named in the detail"},
    503: {"model": ErrorDetail, "description": "the served artifacts cannot embed audio (models or torch missing)"},
}


def _limits(settings: Any) -> AudioLimits:
    # The settings may or may not define audio limits; the defaults are the documented ones.
    base = AudioLimits()
    return AudioLimits(
        max_bytes=int(getattr(settings, "audio_max_bytes", base.max_bytes)),
        max_seconds=float(getattr(settings, "audio_max_seconds", base.max_seconds)),
        decode_timeout_s=float(getattr(settings, "audio_decode_timeout_s", base.decode_timeout_s)),
    )


def _read_bounded(upload: UploadFile, max_bytes: int) -> bytes:
    """Read at most ``max_bytes + 1`` bytes, so an oversized upload is refused without loading it all."""
    parts: list[bytes] = []
    total = 0
    while total <= max_bytes:
        chunk = upload.file.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


@router.post(
    "/recommend/audio",
    response_model=AudioRecommendResponse,
    summary="Songs similar to an uploaded clip or mel-spectrogram (query by audio)",
    description=(
        "Upload as `multipart/form-data` with one part named `file`: an audio clip (WAV, FLAC, OGG/Vorbis or "
        "MP3, up to 20 MB and 10 minutes) or a mel-spectrogram saved with `numpy.save` as a (48, T) numeric "
        "array (pickled files are refused). Audio is mixed to mono, resampled to 16 kHz and turned into the "
        "dataset's mel (48 Slaney bands, frame 512, hop 256, dB) over seconds 20 to 50, or the 30 s nearest "
        "to them for a shorter clip, or the whole clip under 30 s. The TCAE encoder and the CEL audio-only "
        "branch embed it; `score_total` fuses the two models' top 50 by 1/rank. `song` describes the upload; "
        "`mel` is a small picture of its mel-spectrogram."
    ),
    responses=_ERRORS,
)
def recommend_audio(
    engine: EngineDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="audio clip (WAV/FLAC/OGG/MP3) or a .npy mel of shape (48, T)")],
    method: Annotated[AudioMethod, Query(description="tcae, cel, or score_total (both fused)")] = "score_total",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    novelty: Annotated[
        float, Query(ge=0.0, le=1.0, allow_inf_nan=False, description="0 = as ranked, 1 = prefer lesser-known songs")
    ] = 0.0,
) -> dict[str, Any]:
    # A plain (non-async) handler: FastAPI runs it in its thread pool, so waiting for the decoder
    # process and running torch never block the event loop.
    limits = _limits(settings)
    started = time.perf_counter()
    data = _read_bounded(file, limits.max_bytes)
    try:
        mel, info = read_upload(data, limits)
    except AudioInputError as exc:
        raise HTTPException(status_code=exc.status, detail=exc.detail) from exc
    read_done = time.perf_counter()
    try:
        embedders = embedders_for(engine.version_dir)
    except AudioModelsUnavailable as exc:
        logger.warning("audio query refused: %s", exc)
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    if method == "cel" and embedders.cel is None:
        raise HTTPException(status_code=503, detail="method=cel: this artifacts version has no CEL model")
    try:
        vectors = embedders.embed(mel)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"file: {exc}") from exc
    embed_done = time.perf_counter()
    items = engine.recommend_from_vectors(vectors, method, k, novelty)
    done = time.perf_counter()
    song = {
        "title": file.filename or "upload",
        "kind": info["kind"],
        "format": info.get("format"),
        "sample_rate": info.get("sample_rate"),
        "channels": info.get("channels"),
        "seconds": info.get("seconds"),
        "excerpt": info.get("excerpt"),
        "frames": int(mel.shape[1]),
    }
    timings = {
        "read": round((read_done - started) * 1000, 1),
        "embed": round((embed_done - read_done) * 1000, 1),
        "rank": round((done - embed_done) * 1000, 1),
    }
    logger.info("audio query %r (%s, %d frames): %s ms", song["title"], info["kind"], mel.shape[1], timings)
    return {"song": song, "method": method, "recommendations": items, "mel": mel_picture(mel), "timings_ms": timings}
