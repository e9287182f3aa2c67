"""What precomputing the neighbour lists adds to training: time per query on an HNSW index as training builds it.

Builds one model's index exactly as ``mugle train`` does above the flat threshold (HNSW, efSearch tuned
to recall@10 >= 0.95) over clustered 128-d vectors, then times :func:`training.indexes.neighbour_lists`
for every vector, and checks the lists against exact search on a sample (recall@64: the lists are read
down to rank 50, not only the top 10).

Usage::

    .venv/bin/python benchmarks/bench_knn.py [--rows 100000 --threads 2]
"""

from __future__ import annotations

import argparse
import logging
import time

import faiss
import numpy as np

from training.indexes import NEIGHBOURS, build_index, neighbour_lists, recall_at_k
from training.music2vec import l2_normalise

logger = logging.getLogger(__name__)


def clustered(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """About 200 vectors per cluster, each 0.75 of its centre's norm away from it (as the service benchmarks)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.normal(size=(max(10, rows // 200), dim)))
    noise = 0.75 / np.sqrt(dim) * rng.normal(size=(rows, dim)).astype(np.float32)
    return l2_normalise(centres[rng.integers(0, len(centres), rows)] + noise)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    faiss.omp_set_num_threads(args.threads)
    vectors = clustered(args.rows, args.dim)
    t0 = time.perf_counter()
    index, info = build_index(vectors, flat_threshold=min(args.rows, 50_000))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows, _ = neighbour_lists(index, vectors, NEIGHBOURS)
    knn_s = time.perf_counter() - t0
    sample = np.random.default_rng(1).choice(args.rows, min(500, args.rows), replace=False)
    _, exact = faiss.knn(vectors[sample], vectors, NEIGHBOURS, metric=faiss.METRIC_INNER_PRODUCT)
    recall = recall_at_k(rows[sample], exact, k=NEIGHBOURS)
    per_query_us = 1e6 * knn_s / args.rows
    index_mb = faiss.serialize_index(index).nbytes / 2**20
    scale = 707_989 / args.rows
    print("| vectors | index (M/efSearch) | recall@10 | index MB | build s | neighbour lists s | µs per song | "
          "lists' recall@64 vs exact | projected at 707,989 songs x 3 models |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.rows:,} | {info.index_type} {info.params.get('codes', '')} {info.params.get('M', '')}/"
          f"{info.params.get('efSearch', '')} | {info.recall_at_10:.3f} | {index_mb:.0f} | {build_s:.1f} | "
          f"{knn_s:.1f} | {per_query_us:.0f} | {recall:.3f} | indexes {3 * index_mb * scale:,.0f} MB, lists "
          f"{3 * 707_989 * per_query_us / 1e6 / 60:.1f} min |")


if __name__ == "__main__":
    main()
