"""Two bundles' `Classifier.predict` speed side by side: what changing the shipped model costs.

    .venv/bin/python bench/model_speed.py --baseline-model OLD_BUNDLE            # vs the shipped model
    .venv/bin/python bench/model_speed.py --baseline-model OLD --model NEW

Rows: the baseline bundle; the new bundle as shipped (LLM + TF-IDF blend, all heads); the new bundle
with `use_tfidf=False` (the LLM alone), which shows what the TF-IDF partner costs. Texts: a fixed
stratified subset of the bundled test split; each row warms up once, then takes the median of
--repeats timed passes. The previous shipped model (SmolLM2-135M) can be taken from git history:
`git archive bd987b6 src/patentclf/resources/default-model | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, median, other_load, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--baseline-model", type=Path, required=True, help="bundle to compare against (e.g. the previous shipped model)"
    )
    parser.add_argument("--model", type=Path, default=None, help="bundle under test (default: the shipped model)")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.inference.classifier import Classifier
    from patentclf.model.bundle import default_model_dir

    model = args.model or default_model_dir()
    texts = stratified_subset(load_split("bundled", "test"), args.rows, seed=0).texts
    print(f"machine: {machine()}")
    print(f"at start: {other_load()}")

    def rate(path: Path, **options) -> tuple[float, Classifier]:
        classifier = Classifier.load(path, **options)
        classifier.predict(texts[:8])
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            classifier.predict(texts)
            rates.append(len(texts) / (time.perf_counter() - start))
        return median(rates), classifier

    old, old_classifier = rate(args.baseline_model)
    new, new_classifier = rate(model)
    alone, _ = rate(model, use_tfidf=False)
    print(f"at end: {other_load()}")
    rows = [
        [f"baseline: {old_classifier.info.base_model} ({args.baseline_model})", f"{old:.2f}", "1.00x"],
        [f"new: {new_classifier.info.base_model}, as shipped (blend, all heads)", f"{new:.2f}", f"{new / old:.2f}x"],
        ["new, LLM alone (use_tfidf=False)", f"{alone:.2f}", f"{alone / old:.2f}x"],
    ]
    print(f"\npredicting {len(texts)} bundled test rows, median of {args.repeats} passes after a warm-up")
    print(table(["model", "samples/s", "vs baseline"], rows))


if __name__ == "__main__":
    main()
