"""Prediction rows/s on a quiet and on a busy machine, for torch's OpenMP wait settings, side by side.

    .venv/bin/python bench/busy_machine.py                  # the shipped model, 96 bundled test rows
    .venv/bin/python bench/busy_machine.py --model tiny     # a tiny random model
    .venv/bin/python bench/busy_machine.py --busy 0 1 2 --runs 5

Torch's CPU build on Linux runs its threads with GNU OpenMP (libgomp). Between parallel regions an
idle thread spins before it sleeps, 300,000 rounds by default. On a machine where another process
holds a core, the spinning thread takes the CPU the working thread needs, and prediction can get
many times slower. patentclf sets ``GOMP_SPINCOUNT`` (``patentclf.OPENMP_SPIN_COUNT``) unless the
user set an OpenMP wait setting; this benchmark shows what each choice costs and saves.

settings  libgomp's own default (GOMP_SPINCOUNT=300000), patentclf's default, a longer and a shorter
          spin, OMP_WAIT_POLICY=PASSIVE (no spinning) and one thread (OMP_NUM_THREADS=1).
busy      how many other processes spin a core each while the setting is timed (default: 0 and 1).

Each (busy, setting) pair runs in a fresh process (libgomp reads its settings once, when torch
loads): `Classifier.load`, one warm-up batch, then ``--runs`` timed passes of `Classifier.predict`
over the rows; the table has the median rows/s and the ratio to libgomp's default under the same load.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, median, other_load, table

from patentclf import OPENMP_SPIN_COUNT

SETTINGS = {
    "libgomp default": {"GOMP_SPINCOUNT": "300000"},
    f"patentclf default (spin {OPENMP_SPIN_COUNT})": {},
    "spin 10000": {"GOMP_SPINCOUNT": "10000"},
    "spin 100": {"GOMP_SPINCOUNT": "100"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
OPENMP_VARIABLES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")


def spin() -> None:
    while True:
        pass


def child(model: str, rows: int, runs: int) -> None:
    """One timed setting, in this process: prints a JSON line with the rows/s of each run."""
    import torch

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.inference.classifier import Classifier

    classifier = Classifier.load(model)
    texts = stratified_subset(load_split("bundled", "test"), rows, seed=0).texts
    classifier.predict(texts[:16])
    speeds = []
    for _ in range(runs):
        start = time.perf_counter()
        classifier.predict(texts)
        speeds.append(len(texts) / (time.perf_counter() - start))
    found = {"rows_per_s": speeds, "threads": torch.get_num_threads(), "spin": os.environ.get("GOMP_SPINCOUNT")}
    print(json.dumps(found))


def measure(model: Path, rows: int, runs: int, busy: int, settings: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES}
    env.update(settings)
    hogs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(busy)]
    for hog in hogs:
        hog.start()
    try:
        command = [sys.executable, __file__, "--child", "--model", str(model), "--rows", str(rows), "--runs", str(runs)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shipped", help="shipped | tiny (random two-layer model) | a bundle folder")
    parser.add_argument("--rows", type=int, default=96, help="bundled test rows (stratified, fixed) per timed pass")
    parser.add_argument("--runs", type=int, default=3, help="timed passes per setting; the table has their median")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="other processes spinning a core each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.model, args.rows, args.runs)
        return

    from load_service import resolve_model

    print(f"machine: {machine()}")
    print(f"at start: {other_load()}")
    with tempfile.TemporaryDirectory(prefix="busy-bench-") as work:
        model = resolve_model(args.model, Path(work))
        cells = []
        for busy in args.busy:
            base = None
            for name, settings in SETTINGS.items():
                found = measure(model, args.rows, args.runs, busy, settings)
                speed = median(found["rows_per_s"])
                base = base or speed
                spread = f"[{min(found['rows_per_s']):.1f}-{max(found['rows_per_s']):.1f}]"
                spin = found["spin"] or ("0 (passive)" if settings.get("OMP_WAIT_POLICY") == "PASSIVE" else "-")
                cells.append([str(busy), name, spin, str(found["threads"]), f"{speed:.2f} {spread}", f"{speed / base:.2f}x"])
                print(f"busy {busy}, {name}: {speed:.2f} rows/s", flush=True)
    print(f"at end: {other_load()}")
    print()
    print(f"Classifier.predict on {args.rows} bundled test rows with {model}; median of {args.runs} passes (range in brackets)")
    headers = ["other busy processes", "OpenMP setting", "GOMP_SPINCOUNT", "torch threads", "rows/s", "vs libgomp default"]
    print(table(headers, cells))


if __name__ == "__main__":
    main()
