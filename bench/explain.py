"""How faithful the explanations are, ERASER style (DeYoung et al., 2020), and what they cost.

    .venv/bin/python bench/explain.py               # the shipped model, 120 bundled test rows (stratified)
    .venv/bin/python bench/explain.py --rows 40     # quicker

One loaded classifier, the same texts throughout. For the main section, the best subclass and the best
main group of each answer (``PredictOptions(explain=True)``; texts of one sentence have nothing to
explain and are left out of the faithfulness figures):

comprehensiveness  the drop of the code's probability when a sentence is left out: the top-attributed
                   one, a random one (the mean over the text's sentences: the expectation of a uniform
                   pick), the least-attributed one. These are the explanation's own effects, so each
                   top one is also predicted again on its own and the largest difference is printed
                   (the effects are what a fresh prediction says). Target: top >= 3x random.
top 2 / random 2   the drop when two sentences are left out: the two top-attributed ones, against two
                   picked at random (seeded; texts of three sentences or more). Occlusion scores one
                   sentence at a time, so this one is not true by construction: it asks whether the
                   effects add up.
sufficiency        the code's probability from the top-attributed sentence alone, against a random
                   sentence alone (seeded), and the probability with the whole text.
cost               texts/s of ``Classifier.predict`` without and with explain on the same texts (one
                   pass each, after a warm-up on a few rows), and the ratio, beside the mean number of
                   sentences explained per text.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import common  # noqa: F401
from common import machine, other_load, table

LEVELS = ("section", "subclass", "group")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--data", default="bundled")
    parser.add_argument("--rows", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.explain import code_probability, probe_options, without
    from patentclf.inference.options import PredictOptions

    texts = stratified_subset(load_split(args.data, "test"), args.rows, seed=0).texts
    classifier = Classifier.load(args.model)
    print(f"machine: {machine()}")
    print(
        f"model: {classifier.version}, index: {len(classifier.index) if classifier.index else 'none'} patents, rows: {len(texts)}"
    )
    print(f"before: {other_load()}")

    explain = PredictOptions(explain=True)
    classifier.predict(texts[:4], options=explain)  # warm-up
    started = time.perf_counter()
    classifier.predict(texts)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    answers = classifier.predict(texts, options=explain)
    explained_s = time.perf_counter() - started

    # The variants each figure needs, each predicted once.
    rng = random.Random(args.seed)
    wanted: dict[str, int] = {}

    def need(text: str) -> int:
        return wanted.setdefault(text, len(wanted))

    cases = []  # (level, code, probability, effects, variant rows)
    for text, answer in zip(texts, answers):
        spans = answer.explanation.sentences
        if len(spans) < 2:
            continue
        for code in answer.explanation.codes:
            order = sorted(range(len(spans)), key=lambda i: -code.effects[i])
            top, other = order[0], rng.randrange(len(spans))
            rows = {"without_top": need(without(text, spans[top]))}
            rows["top_alone"] = need(text[spans[top].start : spans[top].end])
            rows["random_alone"] = need(text[spans[other].start : spans[other].end])
            if len(spans) >= 3:
                pair = sorted(rng.sample(range(len(spans)), 2), reverse=True)  # later span first: offsets hold
                rows["without_top2"] = need(_without_all(text, [spans[i] for i in sorted(order[:2], reverse=True)], without))
                rows["without_random2"] = need(_without_all(text, [spans[i] for i in pair], without))
            cases.append((code.level, code.code, code.probability, code.effects, top, rows))
    predicted = classifier.predict(list(wanted), options=probe_options(PredictOptions()))

    figures: dict[str, dict[str, list[float]]] = {level: {} for level in LEVELS}
    worst_check = 0.0
    for level, code, probability, effects, top, rows in cases:
        p = {name: code_probability(predicted[row], level, code) for name, row in rows.items()}
        add = lambda name, value: figures[level].setdefault(name, []).append(value)  # noqa: E731
        add("top", effects[top])
        add("random", statistics.fmean(effects))
        add("least", min(effects))
        add("full", probability)
        add("top_alone", p["top_alone"])
        add("random_alone", p["random_alone"])
        if "without_top2" in p:
            add("top2", probability - p["without_top2"])
            add("random2", probability - p["without_random2"])
        worst_check = max(worst_check, abs((probability - p["without_top"]) - effects[top]))

    mean = lambda level, name: statistics.fmean(figures[level].get(name) or [float("nan")])  # noqa: E731
    rows = []
    for level in LEVELS:
        if not figures[level]:
            continue
        top, rand = mean(level, "top"), mean(level, "random")
        rows.append(
            [
                level,
                str(len(figures[level]["top"])),
                f"{top:.3f}",
                f"{rand:.3f}",
                f"{mean(level, 'least'):.3f}",
                f"{top / rand:.2f}x" if rand > 0 else "n/a",
                f"{mean(level, 'top2'):.3f} / {mean(level, 'random2'):.3f}",
                f"{mean(level, 'top_alone'):.3f} / {mean(level, 'random_alone'):.3f}",
                f"{mean(level, 'full'):.3f}",
            ]
        )
    print()
    headers = ["level", "texts", "comp. top", "comp. random", "comp. least", "top/random", "top 2 / random 2",
               "suff.: top alone / random alone", "p (whole text)"]  # fmt: skip
    print(table(headers, rows))
    print(f"\nthe top sentence's effect against a fresh prediction without it: largest difference {worst_check:.1e}")
    sentences = statistics.fmean(len(a.explanation.sentences) for a in answers)
    plain_rate, explained_rate = len(texts) / plain_s, len(texts) / explained_s
    print()
    print(
        table(
            ["cost", "texts/s", "seconds"],
            [
                ["predict", f"{plain_rate:.2f}", f"{plain_s:.1f}"],
                ["predict, explain", f"{explained_rate:.2f}", f"{explained_s:.1f}"],
            ],
        )
    )
    print(
        f"\nexplain costs {plain_rate / explained_rate:.1f}x the time of a prediction, with {sentences:.1f} sentences a "
        f"text ({1 + sentences:.1f} texts of model work); {sum(a.explanation.capped for a in answers)} texts capped"
    )
    print(f"after: {other_load()}")


def _without_all(text: str, spans: list, without) -> str:
    """``text`` without each of ``spans`` (given last first, so the earlier offsets still hold)."""
    for span in spans:
        text = without(text, span)
    return text


if __name__ == "__main__":
    main()
