"""Request and response models of the HTTP API (see DESIGN.md), with OpenAPI examples."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mugle_core.names import METHODS, Method

logger = logging.getLogger(__name__)

# Request limits of the HTTP API (DESIGN.md); the routes and models declare them from here, so the
# OpenAPI schema states them too.
MAX_QUERY_CHARS = 200
MAX_LIMIT = 50
MAX_K = 100
MAX_SEEDS = 100

Year = Annotated[int, Field(ge=0, le=9999)]
GenreName = Annotated[str, Field(min_length=1, max_length=100)]
DIVERSITY_HELP = "0 = as ranked, 1 = strongest variety (maximal marginal relevance over the embeddings)"
GENRE_HELP = "keep only songs with one of these top-level genres (names as Song.genres shows them, or codes)"

SongId = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]

_SONG_EXAMPLE: dict[str, Any] = {
    "song_id": 144663,
    "title": "밤편지",
    "artists": ["아이유"],
    "album": "밤편지",
    "genres": ["발라드"],
    "issue_date": "2017-03-24",
    "popularity": 2175,
}
_RANKS_EXAMPLE: dict[str, Any] = {"music2vec": 1, "tcae": 7, "cel": 2, "cooc": 3}


class Song(BaseModel):
    """One catalog song."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SONG_EXAMPLE]})

    song_id: int
    title: str
    artists: list[str]
    album: str
    genres: list[str]
    issue_date: str | None = Field(description="YYYY-MM-DD, YYYY-MM or YYYY as far as known, or null")
    popularity: int = Field(description="training playlists that contain any id of the song")


class SearchHit(Song):
    """A search result: a Song and its match score in [0, 100]."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**_SONG_EXAMPLE, "score": 100.0}]})

    score: float


class SearchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"query": "밤편지", "results": [{**_SONG_EXAMPLE, "score": 100.0}]}]}
    )

    query: str
    results: list[SearchHit]


class Ranks(BaseModel):
    """1-based rank of the song in each source's candidate list (depth 50), or null when absent.

    ``cooc`` is the co-occurrence list (songs sharing the most training playlists with the query); it is
    null throughout for versions trained before it existed and for clips outside the catalog.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [_RANKS_EXAMPLE]})

    music2vec: int | None = None
    tcae: int | None = None
    cel: int | None = None
    cooc: int | None = None


class Recommendation(Song):
    """A recommended Song, its score under the method, and which models ranked it where."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_SONG_EXAMPLE, "score": 1.642857, "ranks": _RANKS_EXAMPLE}]}
    )

    score: float
    ranks: Ranks


class RecommendResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "song": _SONG_EXAMPLE,
                    "method": "score_total",
                    "recommendations": [{**_SONG_EXAMPLE, "score": 1.642857, "ranks": _RANKS_EXAMPLE}],
                }
            ]
        }
    )

    song: Song
    method: Method
    recommendations: list[Recommendation]


class SeedsRequest(BaseModel):
    """Seed songs of a playlist to continue."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"song_ids": [144663, 366786], "k": 10, "method": "score_total"}]},
    )

    song_ids: list[SongId] = Field(
        min_length=1, max_length=MAX_SEEDS, description=f"1 to {MAX_SEEDS} seed ids (any id of a song)"
    )
    k: int = Field(10, ge=1, le=MAX_K)
    method: Method = "score_total"
    novelty: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    exclude_artist: bool = False
    genre: list[GenreName] = Field(default_factory=list, max_length=50, description=GENRE_HELP)
    year_from: Year | None = Field(None, description="keep only songs issued in or after this year")
    year_to: Year | None = Field(None, description="keep only songs issued in or before this year")
    diversity: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False, description=DIVERSITY_HELP)
    negative_ids: list[SongId] = Field(
        default_factory=list, max_length=100,
        description="songs to steer away from: never recommended, and songs close to them rank lower",
    )


class SeedsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "seeds": [_SONG_EXAMPLE],
                    "method": "score_total",
                    "recommendations": [{**_SONG_EXAMPLE, "score": 1.5, "ranks": _RANKS_EXAMPLE}],
                }
            ]
        }
    )

    seeds: list[Song]
    method: Method
    recommendations: list[Recommendation]


class TagHit(BaseModel):
    """A playlist tag and how many training playlists carry it."""

    tag: str
    playlists: int


class TagsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"query": "드라", "results": [{"tag": "드라이브", "playlists": 5121}]}]}
    )

    query: str
    results: list[TagHit]


class TagRecommendResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tag": "드라이브",
                    "method": "score_total",
                    "recommendations": [{**_SONG_EXAMPLE, "score": 1.25, "ranks": _RANKS_EXAMPLE}],
                }
            ]
        }
    )

    tag: str = Field(description="the tag as the catalog spells it")
    method: Method
    recommendations: list[Recommendation]


class Genre(BaseModel):
    """A top-level genre of the catalog: its shown name, the codes that name it, and its songs."""

    name: str
    codes: list[str]
    songs: int


class GenresResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"genres": [{"name": "발라드", "codes": ["GN0100"], "songs": 120345}]}]}
    )

    genres: list[Genre]


class ModelCounts(BaseModel):
    music2vec: int
    tcae: int
    cel: int


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "version": "20261125-172800-3f9a1c",
                    "songs": 707989,
                    "models": {"music2vec": 615142, "tcae": 707989, "cel": 707989},
                    "methods": list(METHODS),
                    "worker": "api-2:7",
                }
            ]
        }
    )

    status: Literal["ok"]
    version: str = Field(description="the artifacts version this process serves")
    songs: int
    models: ModelCounts
    # The page builds its method picker from this list (mugle_core.names is the one place it is spelled).
    methods: list[Method] = Field(
        default_factory=lambda: list(METHODS), description="the ranking methods of /recommend, fusions first"
    )
    worker: str = Field(description="the answering process, hostname:pid (one of several workers or replicas)")


class ErrorDetail(BaseModel):
    """An error: ``detail`` says what was wrong."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "unknown song id(s): 99999999"}]})

    detail: str
