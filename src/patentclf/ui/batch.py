"""Batch mode: read an uploaded CSV/JSONL file into texts, and turn predictions into a table and downloads.

Uploads are read by the same loader as training data (``text``, or ``title`` + ``abstract``), so a
file that works with ``patentclf predict --input`` works here too.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..data import DataError, read_file
from ..labels import CODES

UPLOAD_TYPES = ("csv", "jsonl", "json")
MAX_ROWS = 1000  # a browser upload is for a quick look; larger jobs belong to `patentclf predict --input`


@dataclass
class Upload:
    ids: list[str]
    texts: list[str]


def read_upload(name: str, content: bytes) -> Upload:
    """Parse an uploaded file; raises :class:`DataError` with a message fit for the page."""
    suffix = Path(name).suffix.lower()
    if suffix.lstrip(".") not in UPLOAD_TYPES:
        raise DataError(f"{name}: unsupported file type; upload a {', '.join(UPLOAD_TYPES)} file")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(content)
        try:
            split = read_file(path, require_labels=False)
        except DataError as exc:
            # Name the user's file, not the temporary copy.
            raise DataError(str(exc).replace(str(path), name)) from None
    if len(split) > MAX_ROWS:
        raise DataError(f"{name}: {len(split)} rows; the UI takes up to {MAX_ROWS} (use `patentclf predict --input` for more)")
    ids = [row_id if row_id is not None else str(number) for number, row_id in enumerate(split.ids, start=1)]
    return Upload(ids=ids, texts=split.texts)


def results_table(upload: Upload, predictions: list[dict]) -> pd.DataFrame:
    """One row per text: the answer, its confidence, flags, the hierarchy (as the API's lists and
    dicts) and the probability of each section."""
    rows = []
    for row_id, text, p in zip(upload.ids, upload.texts, predictions):
        row = {
            "id": row_id,
            "text": text,
            "label": p["label"],
            "name": p["name"],
            "confidence": p["confidence"],
            "needs_review": bool(p.get("needs_review", False)),
            "truncated": bool(p.get("truncated", False)),
            "prediction_id": p.get("id"),
            # An API from before the hierarchy answers the main section only.
            "sections": list(p.get("sections") or [p["label"]]),
            "section_probabilities": dict(p.get("section_probabilities") or {p["label"]: p["confidence"]}),
            "classes": list(p.get("classes") or []),
            "subclasses": list(p.get("subclasses") or []),
        }
        row.update({f"p_{code}": p["probabilities"].get(code, 0.0) for code in CODES})
        rows.append(row)
    return pd.DataFrame(rows)


def table_has_hierarchy(table: pd.DataFrame) -> bool:
    """Some row has more than a section-only model's answer (its one section, no classes or subclasses)."""
    return any(
        list(row.sections) != [row.label] or len(row.classes) or len(row.subclasses) for row in table.itertuples(index=False)
    )


def scored_codes(items: list[dict] | dict[str, float]) -> str:
    """``G06F (0.412); H04N (0.220)``: suggestions (or a code -> probability dict) in one CSV cell."""
    pairs = items.items() if isinstance(items, dict) else ((item["code"], item["probability"]) for item in items)
    return "; ".join(f"{code} ({probability:.3f})" for code, probability in pairs)


def to_csv(table: pd.DataFrame) -> bytes:
    """Flat cells: ``sections`` as ``G;H``; section probabilities, classes and subclasses as ``CODE (p); ...``
    (titles are in the JSONL download)."""
    flat = table.assign(
        sections=table["sections"].map(";".join),
        section_probabilities=table["section_probabilities"].map(scored_codes),
        classes=table["classes"].map(scored_codes),
        subclasses=table["subclasses"].map(scored_codes),
    )
    return flat.to_csv(index=False).encode("utf-8")


def to_jsonl(table: pd.DataFrame) -> bytes:
    """JSONL with the probabilities nested and the hierarchy as the API answers it (classes and
    subclasses as ``{"code", "title", "probability"}``)."""
    lines = []
    for record in table.to_dict(orient="records"):
        record["probabilities"] = {code: record.pop(f"p_{code}") for code in CODES}
        lines.append(json.dumps(record, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")
