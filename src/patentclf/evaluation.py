"""Metrics, the per-class report and the confusion-matrix picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from .labels import CODES, NUM_LABELS


def compute_metrics(labels: list[int] | np.ndarray, predictions: list[int] | np.ndarray) -> dict:
    """Accuracy, macro / weighted F1, per-class precision-recall-F1-support and the confusion matrix.

    Macro-F1 averages over the sections present in the data or predicted (a section that is neither,
    such as Y on USPTO data, is left out rather than counted as a perfect or a zero score).
    """
    labels = np.asarray(labels, dtype=int)
    predictions = np.asarray(predictions, dtype=int)
    if len(labels) == 0 or len(labels) != len(predictions):
        raise ValueError(f"need as many predictions as labels, got {len(predictions)} and {len(labels)}")
    present = sorted(set(labels.tolist()) | set(predictions.tolist()))
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
    """Write ``metrics.json`` and ``confusion_matrix.png`` into ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_confusion_matrix(metrics, output_dir / "confusion_matrix.png", title)
    return output_dir
