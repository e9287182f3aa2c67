"""The ``tags.npz`` file of a version: playlist tags ("situations and moods") and what training learned.

One place for the format: training (:mod:`training.tags`) writes it, the service (:mod:`app.tags`) reads it.
Numpy only, like the rest of the artifact layout (:mod:`mugle_core.artifacts` names the file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mugle_core.catalog import StringColumn, load_npz, pack_strings
from mugle_core.textnorm import fold

logger = logging.getLogger(__name__)

# Tags carried by fewer training playlists than this are left out: with one or two playlists a tag's counts
# are those playlists' song lists, and its vector one curator's taste, not a situation.
MIN_PLAYLISTS = 5
# Songs kept per tag in the counted list (the candidate list depth is 50; more leaves room for filters).
TOP_SONGS = 200


def tag_key(tag: str) -> str:
    """The form two spellings of one tag share (NFKC, case, spacing): ``"드라이브 "`` and ``"드라이브"``."""
    return " ".join(fold(tag).split())


@dataclass
class TagTable:
    """The tags of one version, as stored in ``tags.npz`` (see :func:`mugle_core.artifacts.tags_file`).

    Attributes
    ----------
    names : shown name per tag (its most frequent spelling), most playlists first.
    playlists : int32, training playlists that carry each tag.
    song_offsets : int64 (tags + 1), each tag's slice of ``song_ids`` / ``song_counts``.
    song_ids : int64, canonical song ids, per tag the most counted first.
    song_counts : int32, how many of the tag's playlists hold the song.
    vectors : model name -> float32 (tags, dim) query vectors, L2-normalised (zero rows: none).
    """

    names: list[str]
    playlists: np.ndarray
    song_offsets: np.ndarray
    song_ids: np.ndarray
    song_counts: np.ndarray
    vectors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.names)

    def save(self, path: Path) -> None:
        blob, offsets = pack_strings(self.names)
        arrays = {
            "name_blob": blob,
            "name_offsets": offsets,
            "playlists": np.asarray(self.playlists, dtype=np.int32),
            "songs_offsets": np.asarray(self.song_offsets, dtype=np.int64),
            "songs_ids": np.asarray(self.song_ids, dtype=np.int64),
            "songs_counts": np.asarray(self.song_counts, dtype=np.int32),
        }
        for model, vecs in self.vectors.items():
            arrays[f"vector_{model}"] = np.asarray(vecs, dtype=np.float32)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle

    @classmethod
    def load(cls, path: Path) -> TagTable:
        """Read and check ``tags.npz``; ``ValueError`` names the file and what is wrong."""
        try:
            arrays = load_npz(path)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read ({exc})") from exc
        need = ("name_blob", "name_offsets", "playlists", "songs_offsets", "songs_ids", "songs_counts")
        missing = [k for k in need if k not in arrays]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}")
        names = StringColumn(arrays["name_blob"], arrays["name_offsets"]).to_list()
        n = len(names)
        offsets = arrays["songs_offsets"]
        if len(arrays["playlists"]) != n or len(offsets) != n + 1:
            raise ValueError(f"{path}: {n} names but {len(arrays['playlists'])} counts, {len(offsets)} offsets")
        total = len(arrays["songs_ids"])
        if (n and (offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 0))) or len(
            arrays["songs_counts"]
        ) != total:
            raise ValueError(f"{path}: songs_offsets do not partition the {total} song entries")
        vectors = {}
        for key, vecs in arrays.items():
            if key.startswith("vector_"):
                if vecs.dtype != np.float32 or vecs.ndim != 2 or len(vecs) != n:
                    shape = f"{vecs.dtype} {vecs.shape}"
                    raise ValueError(f"{path}: {key} must be float32 of shape ({n}, dim), got {shape}")
                vectors[key[len("vector_") :]] = vecs
        return cls(names, arrays["playlists"], offsets, arrays["songs_ids"], arrays["songs_counts"], vectors)
