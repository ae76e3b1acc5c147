"""Metrics (accuracy, macro-F1, ECE, hierarchy figures), baselines, the per-class report and pictures
(the confusion matrix, the reliability diagram)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from patentclf.corpus.labels import CODES, NUM_LABELS


def compute_metrics(labels: list[int] | np.ndarray, predictions: list[int] | np.ndarray) -> dict:
    """Accuracy, macro / weighted F1, per-class precision-recall-F1-support and the confusion matrix.

    Macro-F1 averages over the sections present in the true labels: a section absent from the data
    (such as Y on USPTO data) is left out, and a stray prediction of it lowers the precision of
    nothing but cannot add a zero to the average's denominator. Its wrong answers still count
    against the recall of the true sections.
    """
    labels = np.asarray(labels, dtype=int)
    predictions = np.asarray(predictions, dtype=int)
    if len(labels) == 0 or len(labels) != len(predictions):
        raise ValueError(f"need as many predictions as labels, got {len(predictions)} and {len(labels)}")
    present = sorted(set(labels.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=list(range(NUM_LABELS)), zero_division=0
    )
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, labels=present, average="weighted", zero_division=0)),
        "per_class": {
            code: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, code in enumerate(CODES)
        },
        "labels": list(CODES),
        "confusion_matrix": confusion_matrix(labels, predictions, labels=list(range(NUM_LABELS))).tolist(),
    }


def summary(metrics: dict) -> dict:
    """The headline figures, for bundle info and logs."""
    return {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "weighted_f1")}


# -- calibration: how far confidence is from accuracy -------------------------------------------------

# Equal-width confidence bins of ECE and the reliability diagram.
ECE_BINS = 15


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins,
    weighted by how many predictions fall in each."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(total)


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin: its range, how many predictions, their mean confidence and accuracy."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        if members.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return rows


def plot_reliability(table: list[dict], ece: float, path: str | Path, title: str = "Reliability") -> Path:
    """Accuracy against confidence per bin, beside the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    centres = [(r["low"] + r["high"]) / 2 for r in table]
    width = (table[0]["high"] - table[0]["low"]) if table else 0.066
    ax.bar(centres, [r["accuracy"] for r in table], width=width * 0.9, alpha=0.7, label="accuracy in bin")
    ax.plot(
        [r["confidence"] for r in table],
        [r["accuracy"] for r in table],
        marker="o",
        color="black",
        label="(mean confidence, accuracy)",
    )
    for r, x in zip(table, centres):
        ax.text(x, 0.02, str(r["n"]), ha="center", fontsize=7, rotation=90)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted section")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_confusion_matrix(metrics: dict, path: str | Path, title: str = "Confusion matrix") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(metrics["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(NUM_LABELS), CODES)
    ax.set_yticks(range(NUM_LABELS), CODES)
    ax.set_xlabel("predicted section")
    ax.set_ylabel("true section")
    ax.set_title(f"{title} (accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(NUM_LABELS):
        for j in range(NUM_LABELS):
            if matrix[i, j]:
                color = "white" if matrix[i, j] > threshold else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_report(metrics: dict, output_dir: str | Path, title: str = "Confusion matrix") -> Path:
    """Write ``metrics.json``, ``confusion_matrix.png`` and (with calibration figures) ``reliability.png``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_confusion_matrix(metrics, output_dir / "confusion_matrix.png", title)
    if metrics.get("calibration"):
        plot_reliability(
            metrics["calibration"]["reliability"], metrics["calibration"]["ece"], output_dir / "reliability.png", title
        )
    return output_dir


# --- hierarchy: every section, classes, subclasses -------------------------------------------------

TOP_K = (1, 3, 5)


def hierarchy_metrics(
    codes: list[list[str]],
    top_sections: list[str],
    section_sets: list[list[str]],
    class_rankings: list[list[str]] | None,
    subclass_rankings: list[list[str]] | None,
) -> dict:
    """Figures against each row's own codes (rows without codes are left out, ``n`` says how many
    count): whether the top section is one of the patent's sections; micro- and macro-F1 of the
    predicted section sets; class and subclass top-1/3/5 accuracy against the main code and against
    any of the patent's codes."""
    from patentclf.corpus.hierarchy import targets as code_targets

    rows = [(i, t) for i, t in enumerate(map(code_targets, codes)) if t is not None]
    if not rows:
        return {}
    out: dict = {"n": len(rows)}
    out["top_section_in_sections"] = float(np.mean([top_sections[i] in t.sections for i, t in rows]))
    predicted = np.array([[c in section_sets[i] for c in CODES] for i, _ in rows])
    truth = np.array([[c in t.sections for c in CODES] for _, t in rows])
    present = truth.any(axis=0)
    out["sections_micro_f1"] = float(f1_score(truth, predicted, average="micro", zero_division=0))
    out["sections_macro_f1"] = float(f1_score(truth[:, present], predicted[:, present], average="macro", zero_division=0))
    out["sections_per_row"] = float(predicted.sum(axis=1).mean())
    for name, rankings, main_of, all_of in (
        ("class", class_rankings, lambda t: t.main_class, lambda t: t.classes),
        ("subclass", subclass_rankings, lambda t: t.main_subclass, lambda t: t.subclasses),
    ):
        if not rankings:
            continue
        for k in TOP_K:
            out[f"{name}_top{k}"] = float(np.mean([main_of(t) in rankings[i][:k] for i, t in rows]))
            out[f"{name}_any_top{k}"] = float(np.mean([bool(all_of(t) & set(rankings[i][:k])) for i, t in rows]))
    return out


def calibration_metrics(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Expected calibration error and the per-bin reliability table of the predicted section."""
    return {"ece": expected_calibration_error(confidence, correct), "reliability": reliability_table(confidence, correct)}


def evaluate_predictions(
    labels: list[int], codes: list[list[str]], predictions: list, groups: list[list[str]] | None = None
) -> dict:
    """All figures for a classifier's predictions (``Prediction`` objects) on labelled rows; with the
    rows' main ``groups``, the main-group figures too (where the predictions have groups)."""
    metrics = compute_metrics(labels, [p.label_id for p in predictions])
    confidence = np.array([p.confidence for p in predictions])
    correct = np.array([p.label_id == label for p, label in zip(predictions, labels)], dtype=float)
    metrics["calibration"] = calibration_metrics(confidence, correct)
    has_heads = any(p.classes for p in predictions)
    metrics["hierarchy"] = hierarchy_metrics(
        codes,
        [p.label for p in predictions],
        [p.sections for p in predictions],
        [[c.code for c in p.classes] for p in predictions] if has_heads else None,
        [[c.code for c in p.subclasses] for p in predictions] if has_heads else None,
    )
    if groups and any(groups) and any(p.groups for p in predictions):
        from patentclf.inference.groups import group_figures

        metrics["groups"] = group_figures([[g.code for g in p.groups] for p in predictions], groups)
    metrics["hierarchy"].update(level_calibration(predictions, codes, groups))
    return metrics


def level_calibration(predictions: list, codes: list[list[str]], groups: list[list[str]] | None = None) -> dict:
    """ECE of each finer level's best code against the row's main code (``class_ece``, ``subclass_ece``,
    ``group_ece``), over the rows that have that level's code."""
    from patentclf.corpus.hierarchy import targets as code_targets

    found = [code_targets(row) for row in codes]
    truth = {
        "class": [t.main_class if t else None for t in found],
        "subclass": [t.main_subclass if t else None for t in found],
        "group": [row[0] if row else None for row in (groups or [[] for _ in predictions])],
    }
    out = {}
    for level, key in (("class", "classes"), ("subclass", "subclasses"), ("group", "groups")):
        pairs = [
            (getattr(p, key)[0].probability, getattr(p, key)[0].code == right)
            for p, right in zip(predictions, truth[level])
            if right and getattr(p, key)
        ]
        if pairs:
            confidence, correct = (np.array(values, float) for values in zip(*pairs))
            out[f"{level}_ece"] = expected_calibration_error(confidence, correct)
    return out


# The TF-IDF neighbours baseline of the main groups: the k most similar training patents by TF-IDF
# (1-2 grams, sublinear term frequency) vote their groups, similarity squared, the main code's group
# fully and the others half.
NEIGHBOUR_BASELINE = {"k": 60, "power": 2.0, "other_weight": 0.5}


def tfidf_neighbour_groups(
    train_texts: list[str], train_groups: list[list[str]], texts: list[str], top: int = 5
) -> list[list[str]]:
    """The baseline's top main groups of each of ``texts``, from an index of ``train_texts``."""
    from collections import defaultdict

    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    index = vectorizer.fit_transform(train_texts)
    queries = vectorizer.transform(texts)
    k, power, other = NEIGHBOUR_BASELINE["k"], NEIGHBOUR_BASELINE["power"], NEIGHBOUR_BASELINE["other_weight"]
    out = []
    for start in range(0, len(texts), 256):  # a block of similarities at a time
        block = (queries[start : start + 256] @ index.T).toarray()
        for row in block:
            votes: dict[str, float] = defaultdict(float)
            for neighbour in np.argsort(-row)[:k]:
                weight = float(row[neighbour]) ** power
                for position, group in enumerate(train_groups[neighbour]):
                    votes[group] += weight if position == 0 else weight * other
            out.append(sorted(votes, key=votes.get, reverse=True)[:top])
    return out


def fit_baseline(train):
    """TF-IDF + logistic regression for section, main class and main subclass, trained on ``train``
    (a ``data.Split``): the baseline every figure is compared with."""
    from patentclf.model.ensemble import fit_tfidf, tfidf_targets
    from patentclf.model.heads import HeadLayout

    return fit_tfidf(train.texts, tfidf_targets(train, HeadLayout.from_codes(train.codes)))


def baseline_metrics(models, rows) -> dict:
    """The same figures as ``evaluate_predictions`` for fitted TF-IDF models (``ensemble.TfidfModels``)
    on ``rows``; the baseline's section set is its one top section."""
    section_probs = models.predict_proba(rows.texts, "section")
    classes = np.asarray(models.classes("section"))
    predicted = classes[section_probs.argmax(axis=1)]
    metrics = compute_metrics(rows.labels, predicted)
    confidence = section_probs.max(axis=1)
    metrics["calibration"] = calibration_metrics(confidence, (predicted == np.asarray(rows.labels)).astype(float))

    def rankings(target: str) -> list[list[str]] | None:
        if target not in models.models:
            return None
        probs = models.predict_proba(rows.texts, target)
        names = models.classes(target)
        return [[names[j] for j in np.argsort(-row)[:5]] for row in probs]

    top = [CODES[int(label)] for label in predicted]
    metrics["hierarchy"] = hierarchy_metrics(rows.codes, top, [[code] for code in top], rankings("class"), rankings("subclass"))
    return metrics


def short_text_form(text: str, characters: int = 200) -> str:
    """The first ``characters`` of a text in BIGPATENT form, cut at a word: how
    ``ccdv/patent-classification`` previews look, and the short input a person may paste."""
    from patentclf.corpus.data import to_bigpatent_form

    cut = text[:characters]
    if len(text) > characters and " " in cut:
        cut = cut[: cut.rindex(" ")]
    return to_bigpatent_form(cut)
