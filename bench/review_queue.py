"""Which score orders the review queue best: the share of all wrong answers found by reviewing the
first 5%, 10% and 20% of the bundled test split's answers ranked by each candidate score, against the
same share taken at random. No model needed: the shipped model's answers are the prediction snapshot
(``tests/data/shipped_test_predictions.jsonl.gz``), the truth the bundled test labels.

    .venv/bin/python bench/review_queue.py
    .venv/bin/python bench/review_queue.py --seeds 20 --bootstrap 2000

Random order finds, on average, the share itself (5% of the rows hold 5% of the wrong answers); the
table also gives the spread of actual random draws (``--seeds`` of them). ``perfect`` is the ceiling:
every wrong answer first. The paired bootstrap says whether a score beats ``1 - confidence`` by more
than the test split's noise.

Not measured: disagreement between the LLM's section head and the ensemble pool. An answer carries the
pool's probabilities only, not the LLM head's own (it would need the raw head outputs).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

try:  # as a script: the source tree and the tests' helpers on the path
    import common  # noqa: F401
except ImportError:  # imported by the tests (they have the paths already)
    pass

SHARES = (0.05, 0.10, 0.20)


def margin(row: dict) -> float:
    """The best section's probability minus the second's."""
    first, second = sorted(row["probabilities"].values(), reverse=True)[:2]
    return first - second


def neighbours_against(row: dict) -> float:
    """Of the 5 nearest indexed patents in the answer, the similarity-weighted share whose main code is
    in another section than the answer's (a graded ``evidence_disagrees``)."""
    weights = np.array([max(s["similarity"], 0.0) for s in row["similar"]])
    against = np.array([s["code"][0] != row["label"] for s in row["similar"]], dtype=float)
    return float((weights * against).sum() / weights.sum()) if weights.sum() > 0 else 0.0


# Each candidate: higher = look at it first. Flags come first by adding 2 (a score is within [-1, 1]).
CANDIDATES: dict[str, Callable[[dict], float]] = {
    "1 - confidence": lambda r: 1 - r["confidence"],
    "-margin (best - second)": lambda r: -margin(r),
    "needs_review first, then 1 - confidence": lambda r: 2 * r["needs_review"] + 1 - r["confidence"],
    "evidence_disagrees first, then 1 - confidence": lambda r: 2 * r["evidence_disagrees"] + 1 - r["confidence"],
    "evidence_disagrees alone": lambda r: float(r["evidence_disagrees"]),
    "1 - confidence + 0.2 x evidence_disagrees": lambda r: 1 - r["confidence"] + 0.2 * r["evidence_disagrees"],
    "neighbours' share against alone": neighbours_against,
    "1 - confidence + 0.2 x neighbours' share against": lambda r: 1 - r["confidence"] + 0.2 * neighbours_against(r),
    "-margin + 0.2 x evidence_disagrees": lambda r: -margin(r) + 0.2 * r["evidence_disagrees"],
}
CHOSEN = "1 - confidence"  # what the service stores as review_score (inference/review.py: queue_score)


def catch_rate(score: np.ndarray, wrong: np.ndarray, share: float) -> float:
    """Of all wrong answers, the share among the first ``share`` of the rows by ``score`` (highest
    first; ties keep the rows' order)."""
    first = np.argsort(-np.asarray(score, float), kind="stable")[: int(round(share * len(score)))]
    return float(wrong[first].sum() / wrong.sum())


def random_catch(wrong: np.ndarray, share: float, seeds: int) -> tuple[float, float, float]:
    """Mean, min and max catch rate over ``seeds`` random orders."""
    rates = [catch_rate(np.random.default_rng(seed).random(len(wrong)), wrong, share) for seed in range(seeds)]
    return float(np.mean(rates)), float(min(rates)), float(max(rates))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, wrong: np.ndarray, share: float, draws: int) -> tuple[float, float]:
    """95% interval of catch_rate(a) - catch_rate(b) over rows drawn with replacement."""
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(draws):
        rows = rng.integers(0, len(wrong), len(wrong))
        if wrong[rows].sum():
            gaps.append(catch_rate(a[rows], wrong[rows], share) - catch_rate(b[rows], wrong[rows], share))
    low, high = np.quantile(gaps, [0.025, 0.975])
    return float(low), float(high)


def snapshot_and_truth() -> tuple[list[dict], np.ndarray]:
    """The shipped model's answers on the bundled test split, and which are wrong."""
    from patentclf.corpus.data import load_split
    from patentclf.corpus.labels import CODES
    from tests.snapshot import read_snapshot

    rows = read_snapshot()
    truth = load_split("bundled", "test").labels
    assert len(rows) == len(truth), "the snapshot is not of the bundled test split"
    return rows, np.array([CODES[t] != r["label"] for t, r in zip(truth, rows)])


def measure(rows: list[dict], wrong: np.ndarray, *, seeds: int = 10, bootstrap: int = 0) -> dict:
    """Per candidate score, its catch rates at SHARES (and the bootstrap interval of its gap to CHOSEN);
    plus random order's and a perfect order's."""
    scores = {name: np.array([score(r) for r in rows], float) for name, score in CANDIDATES.items()}
    result = {name: {"catch": [catch_rate(s, wrong, f) for f in SHARES]} for name, s in scores.items()}
    if bootstrap:
        for name, s in scores.items():
            if name != CHOSEN:
                result[name]["gap_10"] = paired_bootstrap(s, scores[CHOSEN], wrong, 0.10, bootstrap)
    result["random (expected)"] = {"catch": list(SHARES)}
    result[f"random ({seeds} draws: mean, min-max)"] = {"random": [random_catch(wrong, f, seeds) for f in SHARES]}
    result["perfect (every wrong answer first)"] = {"catch": [catch_rate(wrong.astype(float), wrong, f) for f in SHARES]}
    return result


def main() -> None:
    from common import table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="random orders to draw")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap draws (0: none)")
    args = parser.parse_args()
    rows, wrong = snapshot_and_truth()
    print(f"{len(rows)} bundled test answers of the shipped model, {int(wrong.sum())} wrong ({wrong.mean():.1%})\n")
    result = measure(rows, wrong, seeds=args.seeds, bootstrap=args.bootstrap)
    lines = []
    for name, figures in result.items():
        if "random" in figures:
            cells = [f"{m:.1%} ({lo:.1%}-{hi:.1%})" for m, lo, hi in figures["random"]]
        else:
            cells = [f"{c:.1%}" for c in figures["catch"]]
        gap = figures.get("gap_10")
        lines.append([name, *cells, "" if gap is None else f"{gap[0]:+.1%} .. {gap[1]:+.1%}"])
    headers = ["score (highest first)", *(f"wrong found in first {f:.0%}" for f in SHARES)]
    print(table([*headers, f"gap to {CHOSEN} at 10% (95%)"], lines))
    print(f"\nThe queue orders by: {CHOSEN}")


if __name__ == "__main__":
    main()
