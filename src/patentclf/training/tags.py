"""Fit a tag set (``inference/tags.py``) on examples' representations: per tag, a logistic regression
of that tag against the rest, its threshold chosen on out-of-fold probabilities (the one that
maximises the tag's F1), and the precision, recall and F1 there, which is what the tag can be expected
to do on new patents like the examples.

The representations are L2-normalised, then standardised on the examples; the scaling is folded into
the stored weights, so that the tag set is a plain linear layer over the normalised representation.
``class_weight="balanced"``: a tag has a few examples against many rows without it.
"""

from __future__ import annotations

import datetime
from collections import Counter

import numpy as np

from patentclf.inference.tags import FEW_EXAMPLES, MIN_EXAMPLES, TagSet, TagSetError, normalised

FOLDS = 5
C = 0.01  # the inverse regularisation strength on standardised features: strong, for few examples (bench/tags.py)
SEED = 0


def split_tags(cell: object) -> list[str]:
    """A ``tags`` cell as tag names: ``;``-separated text (or a list), each stripped, each once, in
    order. An empty name between separators is kept as ``""`` for the caller to refuse."""
    if cell is None:
        return []
    if isinstance(cell, str):
        parts = cell.split(";")
        if cell.strip() == "":
            return []
        if parts and parts[-1].strip() == "":  # a trailing separator ("a;b;") is not an empty tag
            parts = parts[:-1]
    else:
        parts = [str(part) for part in cell]
    return list(dict.fromkeys(part.strip() for part in parts))


def tag_counts(tag_lists: list[list[str]]) -> Counter:
    return Counter(tag for tags in tag_lists for tag in tags)


def check_examples(tag_lists: list[list[str]]) -> list[str]:
    """The tags in order of first use; a TagSetError if a tag cannot be fitted: fewer than
    ``MIN_EXAMPLES`` examples, or on every row (no row to learn what it is not)."""
    counts = tag_counts(tag_lists)
    if not counts:
        raise TagSetError("no row has a tag")
    for tag, count in counts.items():
        if count < MIN_EXAMPLES:
            raise TagSetError(f"tag {tag!r} has {count} example; each tag needs at least {MIN_EXAMPLES}")
        if count == len(tag_lists):
            raise TagSetError(f"tag {tag!r} is on every row: give rows without it too (examples of other tags)")
    return list(counts)


def few_examples(tag_lists: list[list[str]]) -> dict[str, int]:
    """Tags fitted on fewer than ``FEW_EXAMPLES`` examples (their figures rest on a handful of rows)."""
    return {tag: count for tag, count in tag_counts(tag_lists).items() if count < FEW_EXAMPLES}


def _scaled(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = normalised(vectors).astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    return (x - mean) / scale, mean, scale


def _model(c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000)


def out_of_fold(vectors: np.ndarray, y: np.ndarray, *, c: float = C, folds: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """Each row's probability of the tag from a model fitted without it (stratified folds: as many as
    the rarer side allows, at most ``folds``); the scaling is fitted in each fold too."""
    from sklearn.model_selection import StratifiedKFold

    n_splits = int(min(folds, y.sum(), len(y) - y.sum()))
    probabilities = np.zeros(len(y))
    for train, test in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(vectors, y):
        x, mean, scale = _scaled(vectors[train])
        model = _model(c).fit(x, y[train])
        probabilities[test] = model.predict_proba((normalised(vectors[test]) - mean) / scale)[:, 1]
    return probabilities


def best_threshold(probabilities: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """The threshold that maximises F1 on out-of-fold probabilities (halfway to the next lower
    probability, so that it is not the edge of one example), and precision, recall and F1 there."""
    order = np.argsort(-probabilities, kind="stable")
    ranked, truth = probabilities[order], y[order].astype(bool)
    hits = np.cumsum(truth)
    precision = hits / np.arange(1, len(y) + 1)
    recall = hits / max(truth.sum(), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    # Only where the next row's probability differs can a threshold fall between them.
    cuts = np.r_[ranked[1:] < ranked[:-1], True]
    best = int(np.argmax(np.where(cuts, f1, -1)))
    below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
    threshold = float((ranked[best] + below) / 2)
    figures = {
        "precision": round(float(precision[best]), 4),
        "recall": round(float(recall[best]), 4),
        "f1": round(float(f1[best]), 4),
    }
    return threshold, figures


def fit_tag_set(
    vectors: np.ndarray,
    tag_lists: list[list[str]],
    *,
    name: str,
    model_digest: str,
    c: float = C,
    folds: int = FOLDS,
    seed: int = SEED,
    history: list[dict] | None = None,
    cross_validate: bool = True,
) -> TagSet:
    """A tag set of the tags in ``tag_lists`` (per row, its tags) over ``vectors`` (rows x dimension),
    with each tag's cross-validated figures. ``cross_validate=False``: the same weights without
    thresholds (0.5) or figures, for a caller that only ranks the tags (``bench/tags.py``)."""
    if len(vectors) != len(tag_lists):
        raise ValueError(f"{len(vectors)} vectors for {len(tag_lists)} rows")
    tags = check_examples(tag_lists)
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    # Problems this small gain nothing from BLAS threads, and on a busy machine their spinning made
    # each fit ~40x slower (bench/tags.py): one thread each.
    with threadpool_limits(1):
        return _fit(vectors, tag_lists, tags, name, model_digest, c, folds if cross_validate else 0, seed, history)


def _fit(vectors, tag_lists, tags, name, model_digest, c, folds, seed, history) -> TagSet:
    x, mean, scale = _scaled(vectors)
    weights, bias, thresholds, figures = [], [], [], {}
    for tag in tags:
        y = np.array([tag in row for row in tag_lists], dtype=int)
        threshold, cv = best_threshold(out_of_fold(vectors, y, c=c, folds=folds, seed=seed), y) if folds else (0.5, {})
        model = _model(c).fit(x, y)
        w = model.coef_[0] / scale  # the standardisation folded in: w . (v - mean) / scale + b
        weights.append(w)
        bias.append(model.intercept_[0] - float(w @ mean))
        thresholds.append(threshold)
        figures[tag] = {"examples": int(y.sum()), **cv}
    settings = {"method": "one-vs-rest logistic regression", "C": c, "folds": folds, "seed": seed, "examples": len(tag_lists)}
    record = {"date": datetime.date.today().isoformat(), "examples": len(tag_lists), "tags": len(tags)}
    return TagSet(
        name,
        tags,
        np.asarray(weights, np.float32),
        np.asarray(bias, np.float32),
        np.asarray(thresholds, np.float32),
        model_digest,
        figures,
        [*(history or []), record],
        settings,
    )
