"""Music2Vec: Word2Vec skip-gram over playlists, with songs as words and playlists as sentences.

The curator's order inside a playlist is kept (the original system shuffled it away). Each trained song
gets two vectors:

- the *input* vector (``wv.vectors``), used as the query;
- the *output* vector (``syn1neg``), used as the index key.

Querying output vectors with an input vector gives the dual-embedding "IN-OUT" score, which behaves like
smoothed co-occurrence; input-to-input cosine finds songs of the same kind at lower popularity. Both are
L2-normalised so FAISS inner product is cosine similarity. See ``FINDINGS.md`` for the measurements
behind the defaults (``sample=0`` on small corpora, ten epochs).

Two training paths exist. The in-memory path feeds Python lists to gensim; it is the only one that is
bit-for-bit reproducible (with ``workers=1``). The fast path writes the corpus once to a text file and
trains with ``corpus_file=``, which scales across cores without the Python producer thread becoming the
bottleneck; it is chosen automatically for large corpora.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODEL_FILE = "music2vec.model"
# Above this many tokens the corpus_file path pays for the file it writes.
FAST_PATH_TOKENS = 2_000_000


@dataclass
class Music2VecOptions:
    """Word2Vec parameters; every field is recorded in the manifest.

    Attributes
    ----------
    dim : vector size.
    window : maximum context distance inside a playlist.
    negative : negative samples per positive pair.
    ns_exponent : exponent of the negative-sampling distribution (0.75 as in the original Word2Vec).
    epochs : passes over the corpus.
    sample : down-sampling threshold of frequent songs; 0 disables it (1e-5 ruins small corpora).
    min_count : minimum occurrences; the playlist-count filter upstream already decides the vocabulary.
    alpha, min_alpha : learning-rate schedule.
    workers : training threads; 0 means one per core.
    fast_path : ``True`` forces ``corpus_file``, ``False`` forbids it, ``None`` decides by corpus size.
    deterministic : one worker and the in-memory path, so the same seed gives identical vectors.
    """

    dim: int = 128
    window: int = 10
    negative: int = 5
    ns_exponent: float = 0.75
    epochs: int = 10
    sample: float = 0.0
    min_count: int = 1
    alpha: float = 0.025
    min_alpha: float = 0.0001
    workers: int = 0
    fast_path: bool | None = None
    deterministic: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad parameter."""
        checks = [
            ("dim", self.dim >= 1),
            ("window", self.window >= 1),
            ("negative", self.negative >= 1),
            ("epochs", self.epochs >= 1),
            ("sample", self.sample >= 0),
            ("min_count", self.min_count >= 1),
            ("alpha", self.alpha > 0),
            ("min_alpha", 0 <= self.min_alpha <= self.alpha),
            ("workers", self.workers >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"music2vec option {name}={getattr(self, name)!r} is out of range")


@dataclass
class Music2VecResult:
    """Trained vectors, rows aligned with ``ids`` (ascending canonical song ids).

    Attributes
    ----------
    ids : int64 (n,).
    query : float32 (n, dim), L2-normalised input vectors.
    key : float32 (n, dim), L2-normalised output vectors.
    stats : sentences, tokens, seconds, words per second, path used, resolved parameters.
    """

    ids: np.ndarray
    query: np.ndarray
    key: np.ndarray
    stats: dict[str, Any]


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation into float32; all-zero rows stay zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def build_sentences(playlists: Iterable[list[int]], keep: set[int] | frozenset[int] | None = None) -> list[list[str]]:
    """Playlists as token lists in curator order, restricted to ``keep``.

    A song repeated inside one playlist keeps only its first position, and playlists left with fewer
    than two songs are dropped: they give skip-gram no pair to learn from.
    """
    sentences: list[list[str]] = []
    for playlist in playlists:
        seen: set[int] = set()
        tokens: list[str] = []
        for song in playlist:
            if (keep is None or song in keep) and song not in seen:
                seen.add(song)
                tokens.append(str(int(song)))
        if len(tokens) >= 2:
            sentences.append(tokens)
    return sentences


def write_corpus(sentences: list[list[str]], path: Path) -> int:
    """Write one sentence per line, tokens separated by spaces; return the byte count."""
    with open(path, "w", encoding="ascii") as fh:
        for tokens in sentences:
            fh.write(" ".join(tokens))
            fh.write("\n")
    return path.stat().st_size


def _resolved_workers(options: Music2VecOptions) -> int:
    if options.deterministic:
        return 1
    return options.workers or max(1, os.cpu_count() or 1)


def train_music2vec(
    playlists: Iterable[list[int]],
    keep: set[int] | frozenset[int] | None,
    options: Music2VecOptions,
    seed: int,
    models_dir: Path | None = None,
    work_dir: Path | None = None,
    callbacks: Sequence[Any] = (),
) -> Music2VecResult:
    """Train Word2Vec over ``playlists`` and return normalised input/output vectors per song.

    Parameters
    ----------
    playlists : canonical song ids per training playlist, in curator order.
    keep : songs allowed into the vocabulary (e.g. those in enough playlists); None keeps all.
    options : see :class:`Music2VecOptions`.
    seed : seeds gensim's vector initialisation and sampling.
    models_dir : when given, the gensim model is saved there as ``music2vec.model`` for retraining.
    work_dir : where the fast path writes its temporary corpus file (default: the system temp dir).
    callbacks : gensim ``CallbackAny2Vec`` objects (e.g. a deadline that stops between epochs by raising).

    Returns
    -------
    Music2VecResult
        Empty arrays (with ``dim`` columns) when no playlist has two kept songs.
    """
    from gensim.models import Word2Vec  # heavy import, only when training

    options.validate()
    sentences = build_sentences(playlists, keep)
    tokens = sum(len(s) for s in sentences)
    workers = _resolved_workers(options)
    fast = options.fast_path if options.fast_path is not None else tokens >= FAST_PATH_TOKENS
    if options.deterministic:
        fast = False
    stats: dict[str, Any] = {
        "sentences": len(sentences),
        "tokens": tokens,
        "workers": workers,
        "path": "corpus_file" if fast else "in_memory",
        "params": asdict(options),
    }
    if not sentences:
        logger.warning("music2vec: no playlist has two trainable songs; the model will be empty")
        empty = np.zeros((0, options.dim), dtype=np.float32)
        stats.update(seconds=0.0, words_per_s=0.0, vocab=0)
        return Music2VecResult(np.zeros(0, dtype=np.int64), empty, empty.copy(), stats)

    model = Word2Vec(
        vector_size=options.dim,
        window=options.window,
        sg=1,
        hs=0,
        negative=options.negative,
        ns_exponent=options.ns_exponent,
        sample=options.sample,
        min_count=options.min_count,
        alpha=options.alpha,
        min_alpha=options.min_alpha,
        workers=workers,
        seed=seed,
        epochs=options.epochs,
    )
    started = time.perf_counter()
    if fast:
        with tempfile.TemporaryDirectory(prefix="music2vec-", dir=work_dir) as tmp:
            corpus = Path(tmp) / "corpus.txt"
            size = write_corpus(sentences, corpus)
            del sentences  # the file is the corpus now; free the lists before training
            written = time.perf_counter()
            model.build_vocab(corpus_file=str(corpus))
            vocab_done = time.perf_counter()
            model.train(
                corpus_file=str(corpus),
                total_words=model.corpus_total_words,
                total_examples=model.corpus_count,
                epochs=options.epochs,
                callbacks=list(callbacks),
            )
            stats["corpus_bytes"] = size
            stats["write_s"] = round(written - started, 3)
    else:
        model.build_vocab(sentences)
        vocab_done = time.perf_counter()
        model.train(sentences, total_examples=model.corpus_count, epochs=options.epochs, callbacks=list(callbacks))
    finished = time.perf_counter()
    train_s = finished - vocab_done
    stats["vocab_s"] = round(vocab_done - started, 3)
    stats["train_s"] = round(train_s, 3)
    stats["seconds"] = round(finished - started, 3)
    # Words per second as gensim counts them: corpus tokens times epochs over training time.
    stats["words_per_s"] = round(tokens * options.epochs / train_s, 1) if train_s > 0 else 0.0
    stats["vocab"] = len(model.wv.index_to_key)
    logger.info(
        "music2vec: %d songs from %d playlists (%d tokens), %d epochs in %.1fs, %.0f words/s (%s, %d workers)",
        stats["vocab"], stats["sentences"], tokens, options.epochs, train_s, stats["words_per_s"],
        stats["path"], workers,
    )

    ids = np.array([int(k) for k in model.wv.index_to_key], dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    query = l2_normalise(model.wv.vectors[order])
    key = l2_normalise(model.syn1neg[order])
    if models_dir is not None:
        models_dir = Path(models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        model.save(str(models_dir / MODEL_FILE))
    return Music2VecResult(ids[order], query, key, stats)
