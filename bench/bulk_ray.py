"""Bulk classification rows/s: one process against Ray with 1 and 2 actors, in one run, side by side.

    .venv/bin/python bench/bulk_ray.py                    # the shipped model, 256 bundled test rows
    .venv/bin/python bench/bulk_ray.py --model tiny       # a tiny random model: Ray's own overhead
    .venv/bin/python bench/bulk_ray.py --model DIR --rows 1000 --rows-per-batch 64

one process   `patentclf predict --input FILE --output OUT.jsonl` (the local engine) in a process of
              its own: `Classifier.load` + `predict` on all rows, torch's default threads (one per core).
one process, 1 thread   the same with OMP_NUM_THREADS=1.
ray, 1 actor  `patentclf predict --engine ray`: `run_bulk` on a local Ray cluster (loopback), one
              actor with every core, Parquet files out.
ray, N actors the same with N actors of cores/N CPUs each (N = 2 by default, `--actors`).

Every path is timed end to end (start, load the model, classify, write), since a bulk job pays each
of these once: a Ray actor loads its own copy of the model. The Ray cluster starts once, before the
timing, and stays up (idle) while the one-process paths run. The paths run in turn, `--rounds` times
(3), and the table shows each path's median: on a shared machine other jobs come and go, and this
spreads them evenly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The benchmark's Ray cluster stays on loopback (tests/ray_cluster.py says why); Ray reads it on import.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import common  # noqa: F401, E402
from common import machine, median, other_load, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shipped", help="shipped | tiny (random two-layer model) | a bundle folder")
    parser.add_argument(
        "--rows", type=int, default=256, help="rows to classify: bundled test rows (stratified, fixed), repeated past its 988"
    )
    parser.add_argument("--rows-per-batch", type=int, default=32, help="rows a Ray actor classifies and writes at a time")
    parser.add_argument("--actors", type=int, default=2, help="actors of the second Ray row")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three paths; the table has each path's median")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from load_service import resolve_model

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.jobs.bulk import read_predictions, run_bulk
    from patentclf.jobs.runner import FILTER_CPUS, LIGHT_CPUS
    from tests.ray_cluster import RayHead  # the tests' loopback cluster: `ray start --head` with its own token

    cores = os.cpu_count() or 1
    print(f"machine: {machine()}")
    print(f"at start: {other_load()}; {busy_processes()}")
    work = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    paths = ["one process", "one process, 1 thread", "ray, 1 actor", f"ray, {args.actors} actors"]
    replicas = [
        "1 x default threads",
        "1 x 1 thread",
        f"1 x {cores} threads",
        f"{args.actors} x {max(1, cores // args.actors)} threads",
    ]
    timings: dict[str, list[float]] = {name: [] for name in paths}
    try:
        model = resolve_model(args.model, work)
        split = load_split("bundled", "test")
        texts = stratified_subset(split, min(args.rows, len(split)), seed=0).texts
        texts = [texts[i % len(texts)] for i in range(args.rows)]  # more rows than the split: its texts again
        ids = [f"row-{i}" for i in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), work / "input.parquet")
        id_check = time_id_check(work, ids, texts)

        # Ray counts CPUs as slots: the actors get the machine's cores; reading, the checkpoint filter
        # and writing get slots of their own, which are light.
        slots = int(cores + FILTER_CPUS + 2 * LIGHT_CPUS + 0.999)
        src = str(Path(__file__).resolve().parents[1] / "src")
        with RayHead(num_cpus=slots, pythonpath=src) as address:
            # Rounds of the three paths in turn, so that whatever else runs on the machine weighs on each alike.
            for round_ in range(1, args.rounds + 1):
                local = {}
                for name, threads in zip(paths[:2], (None, 1)):
                    seconds, local = run_local(model, work / "input.parquet", work / f"local-{round_}.jsonl", threads)
                    timings[name].append(seconds)
                    print(f"round {round_}, {name}: {len(texts) / seconds:.2f} rows/s ({seconds:.1f} s)", flush=True)
                for name, actors in zip(paths[2:], (1, args.actors)):
                    out = work / f"ray-{actors}-{round_}"
                    result = run_bulk(
                        str(work / "input.parquet"),
                        str(out),
                        model=model,
                        address=address,
                        actors=actors,
                        cpus_per_actor=max(1, cores // actors),
                        rows_per_batch=args.rows_per_batch,
                    )
                    assert result.total == len(texts), f"{result.total} rows written, {len(texts)} expected"
                    written = read_predictions(out)
                    agree = sum(local[i] == label for i, label in zip(written["id"].to_pylist(), written["label"].to_pylist()))
                    timings[name].append(result.seconds)
                    same = f"same label as one process: {agree}/{len(texts)}"
                    print(f"round {round_}, {name}: {len(texts) / result.seconds:.2f} rows/s ({result.seconds:.1f} s); {same}")
                    sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"at end: {other_load()}; {busy_processes()}")

    base = len(texts) / median(timings[paths[0]])
    print()
    print(
        f"classifying {len(texts)} rows (bundled test texts) with {model}, end to end (model loads included), "
        f"{cores} cores; median of {args.rounds} rounds (rows/s range in brackets)"
    )
    cells = []
    for name, replica in zip(paths, replicas):
        seconds = median(timings[name])
        spread = f"[{len(texts) / max(timings[name]):.1f}-{len(texts) / min(timings[name]):.1f}]"
        cells.append(
            [name, replica, f"{seconds:.1f}", f"{len(texts) / seconds:.2f} {spread}", f"{len(texts) / seconds / base:.2f}x"]
        )
    print(table(["path", "model replicas", "seconds", "rows/s", "vs one process"], cells))
    print(
        "\nof which, before a Ray job starts, the check that no id repeats (check_unique_ids; median of 5): "
        + "; ".join(f"{kind} {seconds * 1000:.1f} ms ({len(texts) / seconds:,.0f} rows/s)" for kind, seconds in id_check.items())
    )


def time_id_check(work: Path, ids: list[str], texts: list[str]) -> dict[str, float]:
    """Seconds :func:`check_unique_ids` takes over this input as Parquet (the id column alone is read)
    and as JSONL (every line is parsed)."""
    import pyarrow.fs as pafs

    from patentclf.jobs.runner import check_unique_ids

    jsonl = work / "input-copy.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)))
    found = {}
    for kind, path in (("Parquet", work / "input.parquet"), ("JSONL", jsonl)):
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            check_unique_ids(pafs.LocalFileSystem(), [str(path)])
            runs.append(time.perf_counter() - start)
        found[kind] = median(runs)
    jsonl.unlink()
    return found


def run_local(model: Path, source: Path, output: Path, threads: int | None) -> tuple[float, dict]:
    """`patentclf predict --input` in a process of its own, as a user runs it (``threads``: OMP_NUM_THREADS,
    which torch's thread count follows; None: torch's default, one per core); its seconds and labels."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout's patentclf
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [
        sys.executable,
        "-m",
        "patentclf.cli",
        "predict",
        "--model",
        str(model),
        "--input",
        str(source),
        "--output",
        str(output),
    ]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    return seconds, {line["id"]: line["label"] for line in lines}


def busy_processes() -> str:
    """Other processes using much CPU right now (ps's lifetime average), for the record."""
    try:
        lines = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout.splitlines()
    except FileNotFoundError:
        return "ps not found"
    busy = []
    for line in lines[1:]:
        pid, cpu, command = line.split(None, 2)
        if float(cpu) >= 20 and int(pid) != os.getpid() and "<defunct>" not in command:
            busy.append(f"{command[:60]} ({cpu}%)")
    return "busy processes: " + ("; ".join(busy[:5]) or "none")


if __name__ == "__main__":
    main()
