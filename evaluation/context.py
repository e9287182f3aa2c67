"""What an evaluation reads and asks: the loaded context and one query (shared by the evaluation modules).

Kept apart from :mod:`evaluation.evaluate` so that the modules it calls (:mod:`evaluation.steering`)
can name these types without importing it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mugle_core.catalog import Catalog


@dataclass(frozen=True)
class Query:
    """One evaluation query: a seed song and the rest of its held-out playlist."""

    playlist_id: int
    seed: int
    relevant: frozenset[int]


@dataclass
class EvalContext:
    """Everything the evaluation reads, loaded once."""

    version_dir: Path
    catalog: Catalog
    popularity: Mapping[int, int]
    genres: dict[int, frozenset[str]]
    train_playlists: list[list[int]]
    holdout_playlists: list[tuple[int, list[int]]]
    n_train_playlists: int
    data: Path
    manifest_holdout: int
    counts: dict[str, int] = field(default_factory=dict)
    # Playlist tags, for the tag endpoint's evaluation (evaluation.steering): per held-out playlist id,
    # and per training playlist (aligned with ``train_playlists``).
    holdout_tags: dict[int, list[str]] = field(default_factory=dict)
    train_tags: list[list[str]] = field(default_factory=list)
