"""Bulk classification rows/s: one process against Ray with 1 and 2 actors, in one run, side by side.

    .venv/bin/python bench/bulk_ray.py                    # the shipped model, 256 bundled test rows
    .venv/bin/python bench/bulk_ray.py --model tiny       # a tiny random model: Ray's own overhead
    .venv/bin/python bench/bulk_ray.py --model DIR --rows 1000 --rows-per-batch 64

one process   `patentclf predict --input FILE` (the local engine): `Classifier.load` + `predict` on
              all rows, every core in one process.
ray, 1 actor  `patentclf predict --engine ray`: `run_bulk` on a local Ray cluster (loopback), one
              actor with every core, Parquet files out.
ray, N actors the same with N actors of cores/N CPUs each (N = 2 by default, `--actors`).

Every path is timed end to end (load the model, classify, write), since a bulk job pays each of
these once: a Ray actor loads its own copy of the model. The one-process model load is printed apart
so that the steady rate can be worked out. The Ray cluster starts once, before the timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# The benchmark's Ray cluster stays on loopback (tests/ray_cluster.py says why); Ray reads it on import.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import common  # noqa: F401, E402
from common import machine, other_load, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shipped", help="shipped | tiny (random two-layer model) | a bundle folder")
    parser.add_argument("--rows", type=int, default=256, help="bundled test rows to classify (stratified, fixed)")
    parser.add_argument("--rows-per-batch", type=int, default=32, help="rows a Ray actor classifies and writes at a time")
    parser.add_argument("--actors", type=int, default=2, help="actors of the second Ray row")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from load_service import resolve_model

    from patentclf.bulk import FILTER_CPUS, LIGHT_CPUS, read_predictions, run_bulk

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from ray_cluster import RayHead  # the tests' loopback cluster: `ray start --head` with its own token

    from patentclf.classifier import Classifier
    from patentclf.data import load_split, stratified_subset

    cores = os.cpu_count() or 1
    print(f"machine: {machine()}")
    print(f"at start: {other_load()}")
    work = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    try:
        model = resolve_model(args.model, work)
        rows = stratified_subset(load_split("bundled", "test"), args.rows, seed=0)
        ids = [f"row-{i}" for i in range(len(rows))]
        pq.write_table(pa.table({"id": ids, "text": rows.texts}), work / "input.parquet")
        results = []

        start = time.perf_counter()
        classifier = Classifier.load(model)
        load_seconds = time.perf_counter() - start
        local = {p_id: p.label for p_id, p in zip(ids, classifier.predict(rows.texts))}
        seconds = time.perf_counter() - start
        del classifier
        results.append(("one process", f"1 x {cores} threads", seconds))
        print(f"one process: {len(rows) / seconds:.2f} rows/s ({seconds:.1f} s, loading {load_seconds:.1f} s)", flush=True)

        # Ray counts CPUs as slots: the actors get the machine's cores; reading, the checkpoint filter
        # and writing get slots of their own, which are light.
        slots = int(cores + FILTER_CPUS + 2 * LIGHT_CPUS + 0.999)
        src = str(Path(__file__).resolve().parents[1] / "src")
        with RayHead(num_cpus=slots, pythonpath=src) as address:
            for actors in (1, args.actors):
                cpus = max(1, cores // actors)
                out = work / f"ray-{actors}"
                result = run_bulk(
                    str(work / "input.parquet"),
                    str(out),
                    model=model,
                    address=address,
                    actors=actors,
                    cpus_per_actor=cpus,
                    rows_per_batch=args.rows_per_batch,
                )
                written = read_predictions(out)
                labels = zip(written["id"].to_pylist(), written["prediction"].to_pylist())
                agree = sum(local[i] == label for i, label in labels)
                assert result.total == len(rows), f"{result.total} rows written, {len(rows)} expected"
                results.append((f"ray, {actors} actor{'s' if actors > 1 else ''}", f"{actors} x {cpus} threads", result.seconds))
                rate = len(rows) / result.seconds
                same = f"same label as one process: {agree}/{len(rows)}"
                print(f"ray, {actors} actors: {rate:.2f} rows/s ({result.seconds:.1f} s); {same}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"at end: {other_load()}")

    base = len(rows) / results[0][2]
    print()
    print(f"classifying {len(rows)} bundled test rows with {model}, end to end (model loads included), {cores} cores")
    cells = [
        [name, replicas, f"{s:.1f}", f"{len(rows) / s:.2f}", f"{len(rows) / s / base:.2f}x"] for name, replicas, s in results
    ]
    print(table(["path", "model replicas", "seconds", "rows/s", "vs one process"], cells))


if __name__ == "__main__":
    main()
