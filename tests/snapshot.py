"""The shipped bundle's predictions on the bundled test split, stored field for field: the check that a
refactor changed no answer (tests/test_prediction_snapshot.py; tools/prediction_snapshot.py rewrites it
when an answer is meant to change)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("data") / "shipped_test_predictions.jsonl.gz"
TOLERANCE = 1e-6


def differences(before, after, path: str = "", tolerance: float = TOLERANCE) -> list[str]:
    """Where two JSON values differ (numbers by more than ``tolerance``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        if before.keys() != after.keys():
            return [f"{path}: keys {sorted(before)} != {sorted(after)}"]
        return [d for key in before for d in differences(before[key], after[key], f"{path}.{key}", tolerance)]
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{path}: {len(before)} items != {len(after)}"]
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{path}[{i}]", tolerance)]
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and not isinstance(before, bool):
        return [] if abs(before - after) <= tolerance else [f"{path}: {before} != {after}"]
    return [] if before == after else [f"{path}: {before!r} != {after!r}"]


def predict_split(model: str | Path | None = None, split: str = "test") -> list[dict]:
    """Every field of the bundle's prediction of each row of the bundled ``split``, as JSON values."""
    from patentclf import Classifier
    from patentclf.corpus.data import load_split

    texts = load_split("bundled", split).texts
    return json.loads(json.dumps([p.to_dict() for p in Classifier.load(model).predict(texts)]))


def read_snapshot(path: Path = SNAPSHOT) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_snapshot(rows: list[dict], path: Path = SNAPSHOT) -> None:
    # mtime=0: the same predictions give the same bytes, so git sees no change.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows).encode("utf-8"))
