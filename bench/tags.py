"""How well tags learn a user's categories from a few examples (issue 27's protocol): the tag model
(``training/tags.py``: one-vs-rest logistic regression over the model's representation) against
TF-IDF + logistic regression fitted on the same examples, and against the nearest-patent votes of the
shipped index (no examples at all: the index's training patents vote with their main groups).

    .venv/bin/python bench/tags.py                      # the tables of bench/README.md (see there for its time)
    .venv/bin/python bench/tags.py --cache /tmp/tag-vectors.npz   # keep the representations for a rerun

Rows the model never trained on: the bundled validation and test splits (1,977 patents). Categories
stand in for a user's: CPC main groups, which no head of the shipped model learnt. The 25 groups most
often held by these rows are the categories.

* Single-label: a patent's category is the first of its groups (main code's first) among the 25. At
  each K (5, 10, 20 examples per category) a category takes part if it has K examples and at least
  ``MIN_TEST`` rows left to test on; K examples are drawn, the rest of its rows are its test rows.
  Each method answers one category per test row (the tag model and TF-IDF: the most probable tag;
  the index: the category with the most similarity-weighted votes). Macro-F1 over the categories and
  accuracy, mean over 5 draws (min-max).
* Multi-label: a patent holds every one of the 25 groups it has. K rows holding each category are
  drawn (a row drawn for one category brings its other groups too); every other row holding one of
  the categories is a test row. The tag model answers the tags above their cross-validated thresholds;
  TF-IDF the tags at probability >= 0.5 (balanced class weights, so 0.5 is its natural cut); the
  index the categories with at least 30% of the votes its best category has. Macro-F1 over the
  categories, micro-F1, and the share of rows whose set is exactly right.

The representations are computed once per run (``--cache``: once for several).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

try:  # as a script: the source tree and the tests' helpers on the path
    import common
except ImportError:  # imported by the tests (they have the paths already)
    common = None

CATEGORIES = 25
KS = (5, 10, 20)
DRAWS = 5
MIN_TEST = 3
NEIGHBOURS = 30  # the index's neighbours that vote (the shipped index's group voting k)
RELATIVE_VOTES = 0.3  # multi-label: an index category needs this share of the best one's votes


def load_rows():
    """Texts and groups of the bundled validation + test rows that have a main group."""
    from patentclf.corpus.data import load_split

    texts, groups, ids = [], [], []
    for split in ("validation", "test"):
        rows = load_split("bundled", split)
        for text, found, row_id in zip(rows.texts, rows.groups, rows.ids):
            if found:
                texts.append(text)
                groups.append(found)
                ids.append(row_id)
    return texts, groups, ids


def representations(texts: list[str], ids: list[str], cache: Path | None) -> tuple[np.ndarray, float]:
    """The shipped model's representation of every text (from ``cache`` when it holds this model's)."""
    from patentclf.model.bundle import default_model_dir, model_digest

    digest = model_digest(default_model_dir())
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        if str(stored["digest"]) == digest and list(stored["ids"]) == list(ids):
            return stored["vectors"], float(stored["seconds"]) if "seconds" in stored else float("nan")
    from patentclf.inference.classifier import Classifier

    start = time.perf_counter()
    vectors = Classifier.load(index=False).embed(texts)
    seconds = time.perf_counter() - start
    if cache is not None:
        np.savez(cache, vectors=vectors, ids=np.array(ids), digest=digest, seconds=seconds)
    return vectors, seconds


def index_scores(vectors: np.ndarray, categories: list[str]) -> np.ndarray:
    """rows x categories: the similarity-weighted votes of the shipped index's nearest patents (the
    main group a full vote, its other groups half, as the index's group voting weighs them)."""
    from patentclf.inference.index import PatentIndex
    from patentclf.model.bundle import default_model_dir, model_digest

    index = PatentIndex.load(default_model_dir() / "index", model_digest=model_digest(default_model_dir()))
    similarities, rows = index.search(vectors, NEIGHBOURS)
    column = {code: i for i, code in enumerate(categories)}
    scores = np.zeros((len(vectors), len(categories)))
    for r in range(len(vectors)):
        for similarity, found in zip(similarities[r], rows[r]):
            if found < 0:
                continue
            weight = max(float(similarity), 0.0) ** 2
            for position, group in enumerate(index.groups[found]):
                if group in column:
                    scores[r, column[group]] += weight * (1.0 if position == 0 else 0.5)
    return scores


def tfidf_model(multi: bool):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    classifier = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000)
    return make_pipeline(
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, stop_words="english"),
        OneVsRestClassifier(classifier) if multi else classifier,
    )


def single_label_draw(vectors, texts, labels, categories, k, seed, votes) -> dict[str, tuple[float, float]]:
    """One draw at ``k``: {method: (macro-F1, accuracy)}."""
    from sklearn.metrics import accuracy_score, f1_score

    from patentclf.training.tags import fit_tag_set

    rng = np.random.default_rng(seed)
    train, test = [], []
    for category in categories:
        rows = rng.permutation(np.flatnonzero(labels == category))
        train += list(rows[:k])
        test += list(rows[k:])
    train, test = np.array(train), np.array(test)
    truth = labels[test]
    # Ranked, not thresholded: the weights are those of a cross-validated fit, without its folds' cost.
    tag_set = fit_tag_set(
        vectors[train], [[c] for c in labels[train]], name="bench", model_digest="bench", seed=seed, cross_validate=False
    )
    tagged = np.array(tag_set.tags)[tag_set.probabilities(vectors[test]).argmax(axis=1)]
    tfidf = tfidf_model(False).fit([texts[i] for i in train], labels[train]).predict([texts[i] for i in test])
    voted = np.array(categories)[votes[test][:, [CATEGORY_COLUMNS[c] for c in categories]].argmax(axis=1)]
    return {
        name: (f1_score(truth, answer, labels=categories, average="macro", zero_division=0), accuracy_score(truth, answer))
        for name, answer in (("tags", tagged), ("tfidf", tfidf), ("index", voted))
    }


def multi_label_draw(vectors, texts, holds, categories, k, seed, votes) -> dict[str, tuple[float, float, float]]:
    """One draw at ``k``: {method: (macro-F1, micro-F1, exact share)}; ``holds``: rows x categories."""
    from sklearn.metrics import f1_score

    from patentclf.training.tags import fit_tag_set

    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for column in range(len(categories)):
        rows = [r for r in rng.permutation(np.flatnonzero(holds[:, column])) if r not in chosen]
        chosen.update(rows[:k])
    train = np.array(sorted(chosen))
    test = np.array([r for r in np.flatnonzero(holds.any(axis=1)) if r not in chosen])
    tag_lists = [[categories[c] for c in np.flatnonzero(holds[r])] for r in train]
    tag_set = fit_tag_set(vectors[train], tag_lists, name="bench", model_digest="bench", seed=seed)
    order = [tag_set.tags.index(c) for c in categories]
    tagged = (tag_set.probabilities(vectors[test]) >= tag_set.thresholds)[:, order]
    tfidf = tfidf_model(True).fit([texts[i] for i in train], holds[train]).predict_proba([texts[i] for i in test]) >= 0.5
    scores = votes[test]
    voted = (scores >= RELATIVE_VOTES * scores.max(axis=1, keepdims=True)) & (scores > 0)
    truth = holds[test]
    tested = truth.any(axis=0)  # a category whose rows all went into the examples has no test rows: left out
    return {
        name: (
            f1_score(truth[:, tested], answer[:, tested], average="macro", zero_division=0),
            f1_score(truth, answer, average="micro", zero_division=0),
            float((answer == truth).all(axis=1).mean()),
        )
        for name, answer in (("tags", tagged), ("tfidf", tfidf), ("index", voted))
    }


CATEGORY_COLUMNS: dict[str, int] = {}


def summary(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS))
    parser.add_argument("--cache", type=Path, default=None, help="npz file of the representations, reused when it matches")
    args = parser.parse_args()

    texts, groups, ids = load_rows()
    counts = Counter(g for row in groups for g in set(row))
    categories = [g for g, _ in counts.most_common(CATEGORIES)]
    CATEGORY_COLUMNS.update({c: i for i, c in enumerate(categories)})
    vectors, embed_seconds = representations(texts, ids, args.cache)
    votes = index_scores(vectors, categories)
    start = time.perf_counter()

    # Single-label: each row's first group among the categories.
    labels = np.array([next((g for g in row if g in CATEGORY_COLUMNS), "") for row in groups])
    single = []
    for k in args.ks:
        held = Counter(labels[labels != ""])
        taking = [c for c in categories if held[c] >= k + MIN_TEST]
        keep = np.isin(labels, taking)
        draws = [
            single_label_draw(vectors[keep], [t for t, x in zip(texts, keep) if x], labels[keep], taking, k, seed, votes[keep])
            for seed in range(args.draws)
        ]
        tested = sum(held[c] - k for c in taking)
        for method, name in (
            ("tags", "tag model (representation)"),
            ("tfidf", "TF-IDF + LR"),
            ("index", "index votes (no examples)"),
        ):
            single.append(
                [
                    str(k),
                    f"{len(taking)} / {tested}",
                    name,
                    summary([d[method][0] for d in draws]),
                    summary([d[method][1] for d in draws]),
                ]
            )
        print(common.table(["K", "categories / test rows", "method", "macro-F1", "accuracy"], single[-3:]), flush=True)

    # Multi-label: every category a row holds.
    holds = np.array([[c in row for c in categories] for row in groups])
    multi = []
    for k in args.ks:
        draws = [multi_label_draw(vectors, texts, holds, categories, k, seed, votes) for seed in range(args.draws)]
        for method, name in (
            ("tags", "tag model (CV thresholds)"),
            ("tfidf", "TF-IDF + LR (p >= 0.5)"),
            ("index", "index votes (>= 30% of best)"),
        ):
            multi.append([str(k), name] + [summary([d[method][i] for d in draws]) for i in range(3)])
        print(common.table(["K", "method", "macro-F1", "micro-F1", "exact set"], multi[-3:]), flush=True)

    print()
    print(
        f"{len(texts)} rows (bundled validation + test with a main group); {len(categories)} categories: {', '.join(categories)}"
    )
    print(
        f"representations: {embed_seconds:.0f} s (once); fits and answers: {time.perf_counter() - start:.0f} s; {args.draws} draws"
    )
    print(common.machine() + "; " + common.other_load())
    print()
    print("Single-label (each row's first group among the categories):")
    print(common.table(["K", "categories / test rows", "method", "macro-F1", "accuracy"], single))
    print()
    print("Multi-label (each row tagged with all of its groups among the categories):")
    print(common.table(["K", "method", "macro-F1", "micro-F1", "exact set"], multi))


if __name__ == "__main__":
    main()
