"""Searching one model's index for only the songs a steering filter keeps (genre, years).

A filter (:class:`RowFilter`) is a boolean mask over catalog rows. Per model it becomes a bitmap over that
model's index rows (:class:`ModelRows`, built once per filter and model and cached with the filter), which
FAISS takes as an ``IDSelectorBitmap``: a search then only ever scores and returns passing rows, so it needs
no over-fetching and never comes back short because the nearest songs failed the filter.

How deep a filtered search looks (:class:`IndexScan`, one per model, chosen by the index type):

exact scan
    every passing row's stored code is scored against the query: the exact filtered top-k over the vectors
    the index holds (its 8-bit codes for SQ8 indexes, so the same approximation as its own search). Either
    the flat index (for HNSW the graph's flat storage) is searched with the selector, a bit test per index
    row plus an inner product per passing row, or, when at most :data:`GATHER_ROWS` pass, just their codes
    are read and scored (no test of every row); :meth:`IndexScan._scan_cost` picks the cheaper.
HNSW graph with the selector
    ``efSearch = max(efSearch, k) / share``: the build tuned ``efSearch`` for recall unfiltered, and a walk
    meets a passing song once in ``1 / share`` nodes (measured against the exact scan: recall@50 about 0.95 at
    100k rows for shares 0.03 to 0.43, 0.90 at 707,989 rows for 0.11, where recall@10 is 1.0). Used when its
    cost (:data:`GRAPH_COST_PER_EF` per unit of efSearch) is below the scan's; a result shorter than asked
    falls back to the exact scan.
IVF with the selector
    ``max_codes`` bounds the codes visited to the tuned budget (``nprobe`` lists of average length, for 10
    neighbours) scaled by ``k / 10 / share``, over twice the lists that budget needs at their average length;
    the closest lists are visited first. A result shorter than asked repeats over every list with no bound:
    the exact scan.

So a filtered list holds every passing song the model has up to ``k``, and is the exact filtered top-k up to
the index's approximation. Before this module the deeper search asked the index for ever more unfiltered
neighbours (``2 · need · total / passing``, growing 4×) and filtered them in Python: hundreds of ms at 100k
songs, and short lists on IVF indexes, whose search never returns more than its probed lists hold.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from app import ranking

logger = logging.getLogger(__name__)

# Relative costs that choose between the exact scan and the HNSW graph, in units of one inner product with
# an SQ8 code (measured on the 100k-song HNSW version, docs/notes/steering.md "Filters and the deeper search"): the scan
# pays a selector test per index row and an inner product per passing row, the graph about this many inner
# products per unit of efSearch.
BIT_TEST_COST = 0.05
GRAPH_COST_PER_EF = 46.0
# Up to this many passing rows a filter also keeps their index rows (4 bytes each), and the exact scan can
# read just their codes and score them (GATHER_COST per row) instead of testing every index row: at 707,989
# rows with 3 % passing 2.8 ms against 4.5 ms with the selector, with 1 % passing 0.8 ms against 2.7 ms.
GATHER_ROWS = 65_536
GATHER_COST = 1.0
_GATHER_CHUNK = 2048  # rows decoded at a time: 1 MB of float32 at 128-d, per model and serving thread
# The neighbour count the indexes' search depth (efSearch, nprobe) was tuned for: recall@10.
TUNED_K = 10
# Extra results asked for beyond the depth, so that a few excluded songs do not shorten a list.
_SLACK = 8


class ModelRows:
    """The rows of one model's index that a filter keeps, as a FAISS selector.

    Parameters
    ----------
    allowed : bool per index row.
    """

    def __init__(self, allowed: np.ndarray) -> None:
        self.total = int(len(allowed))
        self.passing = int(np.count_nonzero(allowed))
        self.share = self.passing / self.total if self.total else 0.0
        # The selector reads this buffer through a raw pointer: it must live as long as the selector.
        self._bits = np.packbits(allowed, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(len(self._bits), faiss.swig_ptr(self._bits))
        self.index_rows = np.flatnonzero(allowed).astype(np.int32) if self.passing <= GATHER_ROWS else None

    def allowed(self) -> np.ndarray:
        """Bool per index row (unpacked again: the filter keeps only the bitmap, 1 bit a row)."""
        return np.unpackbits(self._bits, bitorder="little", count=self.total).astype(bool)


class RowFilter:
    """The catalog rows one filter keeps (``mask``), and per model the same rows over its index rows."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self._models: dict[str, ModelRows] = {}

    def in_model(self, name: str, catalog_rows: np.ndarray) -> ModelRows:
        """The filter over model ``name``'s index rows (``catalog_rows``: index row -> catalog row); cached."""
        rows = self._models.get(name)
        if rows is None:
            # Two threads may build it at once; both results are equal and either may stay.
            rows = self._models.setdefault(name, ModelRows(self.mask[catalog_rows]))
        return rows


class IndexScan:
    """How one FAISS index searches only a selection of its rows (see the module docstring).

    Parameters
    ----------
    index : the model's inner-product index.
    """

    def __init__(self, index: Any) -> None:
        self.index = index
        self.ntotal = int(index.ntotal)
        self.flat: Any = None  # an index over the same codes in row order, searched exhaustively
        self.ivf: Any = None
        self.codes: np.ndarray | None = None  # the flat index's codes, one row per index row (a view, no copy)
        self._buffers = threading.local()
        self.kind = "other"
        if isinstance(index, faiss.IndexHNSW):
            self.kind = "hnsw"
            self.flat = faiss.downcast_index(index.storage)
        elif isinstance(index, faiss.IndexIVF):
            self.kind = "ivf"
            self.ivf = index
        elif isinstance(index, (faiss.IndexFlat, faiss.IndexScalarQuantizer)):
            self.kind = "flat"
            self.flat = index
        if isinstance(self.flat, faiss.IndexFlatCodes) and self.ntotal:
            size = self.ntotal * self.flat.code_size
            view = faiss.rev_swig_ptr(self.flat.codes.data(), size)  # valid while self.flat lives (held here)
            self.codes = np.asarray(view).reshape(self.ntotal, self.flat.code_size)

    def search(self, x: np.ndarray, k: int, rows: ModelRows) -> tuple[np.ndarray, np.ndarray, bool]:
        """The ``k`` best passing index rows for query ``x`` (1 x d float32), best first.

        Returns
        -------
        sims, found, exact : similarities and index rows (-1 pads a short result), and whether the result is
            the exact filtered top-k over the stored codes (so a short one holds every passing row).
        """
        k = max(1, min(k, rows.passing))
        if self.kind == "hnsw":
            ef = math.ceil(max(self.index.hnsw.efSearch, k) / rows.share)
            if ef * GRAPH_COST_PER_EF >= self._scan_cost(rows)[0]:
                return *self._exact(x, k, rows), True
            params = faiss.SearchParametersHNSW(sel=rows.selector, efSearch=ef)  # type: ignore[attr-defined]
            sims, found = self.index.search(x, k, params=params)
            if found[0, -1] >= 0:
                return sims[0], found[0], False
            return *self._exact(x, k, rows), True
        if self.kind == "ivf":
            ivf = self.ivf
            per_list = self.ntotal / max(ivf.nlist, 1)
            budget = ivf.nprobe * per_list * k / TUNED_K / max(rows.share, 1e-9)
            if budget < self.ntotal:
                # Twice the lists the budget needs at their average length (lists differ in length): more
                # probes cost a sort of the centroids and a visit per list even where max_codes stops early.
                nprobe = min(ivf.nlist, max(ivf.nprobe, math.ceil(2 * budget / max(per_list, 1.0))))
                params = faiss.SearchParametersIVF(  # type: ignore[call-arg]  # faiss's stubs lack the keywords
                    sel=rows.selector, nprobe=nprobe, max_codes=max(1, math.ceil(budget))
                )
                sims, found = ivf.search(x, k, params=params)
                if found[0, -1] >= 0:
                    return sims[0], found[0], False
            return *self._exact(x, k, rows), True
        return *self._exact(x, k, rows), True

    def _scan_cost(self, rows: ModelRows) -> tuple[float, bool]:
        """The exact scan's cost (units of the module constants) and whether reading the listed rows is cheaper."""
        with_selector = rows.total * BIT_TEST_COST + rows.passing
        if self.codes is not None and rows.index_rows is not None and rows.passing * GATHER_COST < with_selector:
            return rows.passing * GATHER_COST, True
        return with_selector, False

    def _exact(self, x: np.ndarray, k: int, rows: ModelRows) -> tuple[np.ndarray, np.ndarray]:
        if self._scan_cost(rows)[1]:
            assert rows.index_rows is not None
            return self._gathered(x, k, rows.index_rows)
        if self.flat is not None:
            params = faiss.SearchParameters(sel=rows.selector)  # type: ignore[call-arg]  # absent from the stubs
            sims, found = self.flat.search(x, k, params=params)
        elif self.ivf is not None:
            params = faiss.SearchParametersIVF(sel=rows.selector, nprobe=self.ivf.nlist)  # type: ignore[call-arg]
            sims, found = self.ivf.search(x, k, params=params)
        else:
            return self._unfiltered(x, k, rows)
        return sims[0], found[0]

    def _chunk_buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """This thread's buffers for one chunk of codes and their decoded vectors, reused across requests: a
        fresh multi-MB array per chunk costs its page faults and zeroing every time (measured: the same scan
        took 5 or 11 ms of CPU per request depending on how the allocator happened to serve it)."""
        buffers: tuple[np.ndarray, np.ndarray] | None = getattr(self._buffers, "chunk", None)
        if buffers is None:
            buffers = (np.empty((_GATHER_CHUNK, self.flat.code_size), dtype=np.uint8),
                       np.empty((_GATHER_CHUNK, self.flat.d), dtype=np.float32))
            self._buffers.chunk = buffers
        return buffers

    def _gathered(self, x: np.ndarray, k: int, index_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact scan of the listed rows: their codes decoded by the index's own decoder, chunk by chunk."""
        assert self.codes is not None
        query = np.ascontiguousarray(x.reshape(-1), dtype=np.float32)
        sims = np.empty(len(index_rows), dtype=np.float32)
        codes, vectors = self._chunk_buffers()
        for start in range(0, len(index_rows), _GATHER_CHUNK):
            part = index_rows[start : start + _GATHER_CHUNK]
            n = len(part)
            # np.take: half the time of fancy indexing for gathering rows (measured, 22k rows of 128 bytes)
            np.take(self.codes, part, axis=0, out=codes[:n], mode="clip")  # rows are valid; clip skips a copy
            self.flat.sa_decode_c(n, faiss.swig_ptr(codes), faiss.swig_ptr(vectors))
            # FAISS's own SIMD loop, not numpy's matmul: OpenBLAS would start its threads for this product
            # (measured 3.4 ms of CPU against 0.08 ms single-threaded for 8192 x 128 on the shared machine).
            faiss.fvec_inner_products_ny(  # type: ignore[attr-defined]  # absent from faiss's stubs
                faiss.swig_ptr(sims[start:]), faiss.swig_ptr(query), faiss.swig_ptr(vectors), len(query), n
            )
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.lexsort((index_rows[top], -sims[top]))]  # best first, ties to the lower row
        return sims[top], index_rows[top]

    def _unfiltered(self, x: np.ndarray, k: int, rows: ModelRows) -> tuple[np.ndarray, np.ndarray]:
        """Any other index type: the whole index searched, then filtered (slow, but complete)."""
        logger.debug("%s: no selector search for this index type; searching all %d rows", type(self.index).__name__,
                     self.ntotal)
        sims, found = self.index.search(x, self.ntotal)
        sims, found = sims[0], found[0]
        ok = (found >= 0) & rows.allowed()[np.maximum(found, 0)]
        sims, found = sims[ok][:k], found[ok][:k]
        pad = k - len(found)
        return np.pad(sims, (0, pad)), np.pad(found, (0, pad), constant_values=-1)


def filtered_search(
    scan: IndexScan,
    catalog_rows: np.ndarray,
    vector: np.ndarray,
    exclude: set[int],
    depth: int,
    keep: Callable[[int], bool] | None,
    rows: ModelRows,
) -> tuple[list[int], list[float]]:
    """A model's candidate list restricted to the rows ``rows`` keeps, searched as deep as it takes.

    Parameters
    ----------
    scan : the model's :class:`IndexScan`.
    catalog_rows : index row -> catalog row of that model.
    vector : the normalised query vector in that model.
    exclude, depth, keep : as in :func:`app.ranking.candidate_list` (``keep`` need not test the filter).
    rows : the filter over the model's index rows.

    Returns
    -------
    rows, sims : catalog rows best first and their similarities; ``depth`` of them whenever the model has
        that many passing songs outside ``exclude`` that ``keep`` accepts.
    """
    if rows.passing == 0:
        return [], []
    x = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
    k = depth + len(exclude) + _SLACK + (depth if keep is not None else 0)
    while True:
        sims, found, exact = scan.search(x, k, rows)
        mapped = np.where(found >= 0, catalog_rows[np.maximum(found, 0)], -1)
        out = ranking.candidate_list(mapped, sims, exclude, depth, keep)
        if len(out[0]) >= depth or k >= rows.passing:
            return out
        # Exclusions or ``keep`` removed too many: ask for more (an exact short answer has them all).
        if exact and found[-1] < 0:
            return out
        k *= 4
