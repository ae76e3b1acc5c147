"""A patent index at a patent office's scale: memory per patent and query time of faiss's exact
half-precision index (``SQfp16``, the default) against a compressed inverted-file index
(``IVF..,PQ64``), measured on random unit vectors of the shipped model's width, at 100k and 1M
patents; 10M is extrapolated (linear for exact search; for IVF-PQ, memory linear and the query as
sqrt(N), since the lists grow as sqrt(N) and nprobe stays).

    .venv/bin/python bench/index_scale.py                  # 100k and 1M, ~5 min on 2 cores
    .venv/bin/python bench/index_scale.py --sizes 100000

Random vectors say nothing about recall (real patents cluster, random vectors do not); the recall of
compressed indexes on the real training patents is in RESULTS.md (the index sizes table). The model's forward pass (~0.1-0.5 s a text on a CPU) dwarfs either search.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401
from common import machine, median, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dimension", type=int, default=640, help="the shipped model's hidden size (Gemma 3 270M)")
    parser.add_argument("--nprobe", type=int, default=16)
    args = parser.parse_args()

    import faiss
    import numpy as np

    print(machine(), f"; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        vectors = rng.standard_normal((size, args.dimension), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        queries = vectors[rng.choice(size, 64, replace=False)] + 0.01 * rng.standard_normal(
            (64, args.dimension), dtype=np.float32
        )
        lists = max(64, int(size**0.5))  # about sqrt(N) lists (faiss suggests 4-16 x sqrt(N); fewer train faster here)
        for factory in ("SQfp16", f"IVF{lists},PQ64"):
            index = faiss.index_factory(args.dimension, factory, faiss.METRIC_INNER_PRODUCT)
            start = time.perf_counter()
            if not index.is_trained:
                index.train(vectors[rng.choice(size, min(size, 30 * lists), replace=False)])
            index.add(vectors)
            build_s = time.perf_counter() - start
            if factory.startswith("IVF"):
                faiss.extract_index_ivf(index).nprobe = args.nprobe
            bytes_per_patent = len(faiss.serialize_index(index)) / size
            single = []
            for query in queries[:32]:
                start = time.perf_counter()
                index.search(query[None], 30)
                single.append(1000 * (time.perf_counter() - start))
            start = time.perf_counter()
            index.search(queries, 30)
            batch_ms = 1000 * (time.perf_counter() - start) / len(queries)
            rows.append(
                [
                    f"{size:,}",
                    factory + (f" (nprobe {args.nprobe})" if factory.startswith("IVF") else ""),
                    f"{bytes_per_patent:.0f}",
                    f"{bytes_per_patent * size / 2**20:,.0f}",
                    f"{build_s:.1f}",
                    f"{median(single):.2f}",
                    f"{batch_ms:.3f}",
                ]
            )
            del index
    headers = ["patents", "faiss index", "bytes/patent", "MiB", "build s", "query ms (one)", "query ms/text (64 at once)"]
    print(table(headers, rows))
    exact = [r for r in rows if r[1] == "SQfp16"][-1]
    size = int(exact[0].replace(",", ""))
    ivf = rows[-1]
    print(
        f"\n10M extrapolated: SQfp16 {float(exact[2]) * 1e7 / 2**30:.1f} GiB, one query ~{float(exact[5]) * 1e7 / size:.0f} ms; "
        f"IVF-PQ64 ~{float(ivf[2]) * 1e7 / 2**30:.2f} GiB, one query ~{float(ivf[5]) * (1e7 / size) ** 0.5:.1f} ms "
        "(with sqrt(N) lists and a fixed nprobe, the codes scanned grow as sqrt(N))"
    )


if __name__ == "__main__":
    main()
