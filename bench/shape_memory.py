"""Memory and speed of prediction over texts of every length: batches padded to their longest row
(the previous release) against batches padded to a multiple of 32 tokens (``PAD_MULTIPLE``).

    .venv/bin/python bench/shape_memory.py                   # the shipped model, 150 batches
    .venv/bin/python bench/shape_memory.py --model tiny      # a tiny random model
    .venv/bin/python bench/shape_memory.py --batches 300 --rounds 2

With bf16 weights on a CPU, oneDNN builds and caches a kernel for each input shape it meets. Each
path runs in a fresh child process (so the caches start empty) over the same random batches of
1-8 bundled abstracts; the two alternate for ``--rounds`` rounds. Printed: RSS after the first
prediction, after every quarter of the batches and at the end; texts/s; how many distinct shapes
the model saw.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, median, other_load, rss_mb, table


def child(model: str, pad_multiple: int, batches: int, seed: int) -> dict:
    from patentclf.corpus.data import load_split
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.engines import torch as engine_module

    engine_module.PAD_MULTIPLE = pad_multiple  # 1: each batch padded to its longest row, as before
    classifier = Classifier.load(model or None)
    texts = load_split("bundled", "validation", require_labels=False).texts
    rng = random.Random(seed)
    work = [[rng.choice(texts) for _ in range(rng.randint(1, 8))] for _ in range(batches)]
    shapes: set = set()
    classifier.engine.backbone.register_forward_pre_hook(
        lambda m, a, kw: shapes.add(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    classifier.predict(work[0])
    samples = [round(rss_mb())]
    started, done = time.perf_counter(), 0
    for i, batch in enumerate(work, 1):
        classifier.predict(batch)
        done += len(batch)
        if i % max(1, batches // 4) == 0:
            samples.append(round(rss_mb()))
    seconds = time.perf_counter() - started
    samples.append(round(rss_mb()))
    return {"rss_mb": samples, "texts_per_s": done / seconds, "shapes": len(shapes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shipped", help="shipped | tiny | a bundle folder")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PAD_MULTIPLE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.batches, args.seed)))
        return

    model = ""
    if args.model == "tiny":
        from load_service import tiny_random_bundle

        model = str(tiny_random_bundle(Path(tempfile.mkdtemp(prefix="shape-memory-"))))
    elif args.model != "shipped":
        model = args.model
    print(machine())
    print("before:", other_load())
    results: dict[str, list[dict]] = {"exact": [], "rounded": []}
    for _ in range(args.rounds):
        for name, multiple in (("exact", 1), ("rounded", 32)):
            command = [sys.executable, __file__, "--child", model, str(multiple), "--batches", str(args.batches)]
            output = subprocess.run(command + ["--seed", str(args.seed)], capture_output=True, text=True, check=True).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
    rows = []
    for name, label in (("exact", "padded to the longest row (before)"), ("rounded", "padded to a multiple of 32 (now)")):
        runs = results[name]
        growth = median([r["rss_mb"][-1] - r["rss_mb"][0] for r in runs])
        rows.append(
            [
                label,
                " -> ".join(str(x) for x in runs[-1]["rss_mb"]),
                f"{growth:+.0f}",
                f"{median([r['texts_per_s'] for r in runs]):.2f}",
                str(runs[-1]["shapes"]),
            ]
        )
    print(table(["batches", "RSS MB (first, each quarter, end)", "growth MB", "texts/s", "shapes"], rows))
    speed = median([r["texts_per_s"] for r in results["rounded"]]) / median([r["texts_per_s"] for r in results["exact"]])
    print(f"speed now/before: {speed:.2f}x over {args.batches} batches of 1-8 abstracts, {args.rounds} round(s)")
    print("after:", other_load())


if __name__ == "__main__":
    main()
