"""Fuzzy title search (placeholder full scan; replaced by the indexed version)."""

from __future__ import annotations

import logging

import numpy as np
from rapidfuzz import fuzz, process

from app.catalog import SEP, Catalog
from app.textnorm import fold, hangul_initials, is_initials_query, normalize_title

logger = logging.getLogger(__name__)


class TitleSearch:
    """Search over titles, artists and "title artist"."""

    def __init__(self, titles: list[str], artists: list[str], initials: list[str], popularity: np.ndarray) -> None:
        self.titles = titles
        self.artists = artists
        self.initials = initials
        self.popularity = popularity

    @classmethod
    def build(cls, catalog: Catalog) -> TitleSearch:
        titles = [normalize_title(t) for t in catalog.columns["title"].to_list()]
        artists = [fold(a.replace(SEP, " ")) for a in catalog.columns["artists"].to_list()]
        initials = [hangul_initials(t) for t in titles]
        return cls(titles, artists, initials, catalog.popularity)

    def search(self, query: str, limit: int = 10) -> list[tuple[int, float]]:
        if is_initials_query(query):
            q = "".join(query.split())
            hits = [(i, 100.0 if ini == q else 90.0) for i, ini in enumerate(self.initials) if ini.startswith(q)]
        else:
            q = normalize_title(query)
            both = [f"{t} {a}" for t, a in zip(self.titles, self.artists, strict=True)]
            hits = [(i, 100.0 + (1 if t == q else 0)) for i, t in enumerate(self.titles) if t == q]
            res = process.extract(q, both, scorer=fuzz.WRatio, limit=limit * 4)
            hits += [(i, s) for _, s, i in res]
        hits.sort(key=lambda h: (-h[1], -int(self.popularity[h[0]])))
        seen: set[int] = set()
        out = []
        for i, s in hits:
            if i not in seen:
                seen.add(i)
                out.append((i, min(s, 100.0)))
        return out[:limit]
