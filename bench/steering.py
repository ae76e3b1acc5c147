"""What a sections-only answer saves: `Classifier.predict` with `depth="section"` against the full answer.

    .venv/bin/python bench/steering.py                # the shipped model, 100 bundled test rows, median of 3

Two measurements in one run, on the same texts and the same loaded classifier:

end to end   texts/s of `Classifier.predict(texts)` and of `Classifier.predict(texts, options=
             PredictOptions(depth="section"))`, passes alternating (one warm-up pass each first), the
             median of `--repeats`: what a caller sees, forward pass included.
answer       ms per text of making the answers from raw outputs computed once (`Classifier.answers`):
             calibration, the index search, the neighbours' votes, the groups, the records; the part
             that the depth changes, per depth, median of `--repeats` passes.

Also checked: the depth-section answers' sections, probabilities and review reasons equal the full
answers' (the share of rows whose section set differs is printed: the full answer adds the best class's
and subclass's sections, which a sections-only answer does not compute).
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401
from common import machine, median, other_load, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--data", default="bundled")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.options import DEPTHS, PredictOptions

    texts = stratified_subset(load_split(args.data, "test"), args.rows, seed=0).texts
    classifier = Classifier.load(args.model)
    print(f"machine: {machine()}")
    print(
        f"model: {classifier.version}, index: {len(classifier.index) if classifier.index else 'none'} patents, rows: {len(texts)}"
    )
    print(f"before: {other_load()}")

    full, shallow = PredictOptions(), PredictOptions(depth="section")
    answers = {"full": classifier.predict(texts), "section": classifier.predict(texts, options=shallow)}  # warm-up
    seconds: dict[str, list[float]] = {"full": [], "section": []}
    for _ in range(args.repeats):
        for name, options in (("full", full), ("section", shallow)):
            started = time.perf_counter()
            classifier.predict(texts, options=options)
            seconds[name].append(time.perf_counter() - started)

    raw = classifier.raw_outputs(texts)
    answer_ms: dict[str, float] = {}
    for depth in DEPTHS:
        options = PredictOptions(depth=depth)
        classifier.answers(raw, texts, options)  # warm-up
        passes = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            classifier.answers(raw, texts, options)
            passes.append(time.perf_counter() - started)
        answer_ms[depth] = median(passes) / len(texts) * 1000

    rows = []
    for name in ("full", "section"):
        rate = len(texts) / median(seconds[name])
        rows.append(
            [
                f"depth {'group (default)' if name == 'full' else 'section'}",
                f"{rate:.2f}",
                " / ".join(f"{s:.1f}" for s in seconds[name]),
            ]
        )
    print()
    print(table(["end to end", "texts/s (median)", "passes, s"], rows))
    saving = 1 - median(seconds["section"]) / median(seconds["full"])
    print(f"\nend to end: depth section takes {saving:.1%} less time than the full answer")
    print()
    print(table(["answer from raw outputs", "ms/text (median)"], [[f"depth {d}", f"{answer_ms[d]:.2f}"] for d in DEPTHS]))
    print(
        f"\nanswer making: depth section {1 - answer_ms['section'] / answer_ms['group']:.0%} less than the full answer "
        f"({answer_ms['group'] - answer_ms['section']:.2f} ms a text saved)"
    )
    same = all(
        (a.label, a.probabilities, a.section_probabilities, a.review_reasons)
        == (b.label, b.probabilities, b.section_probabilities, b.review_reasons)
        for a, b in zip(answers["full"], answers["section"])
    )
    differ = sum(set(a.sections) != set(b.sections) for a, b in zip(answers["full"], answers["section"]))
    print(f"sections-only answers: same section, probabilities and review reasons as the full ones: {same}; "
          f"section set differs on {differ} of {len(texts)} rows")  # fmt: skip
    print(f"after: {other_load()}")


if __name__ == "__main__":
    main()
