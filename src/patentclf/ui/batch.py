"""Batch mode: read an uploaded CSV/JSONL file into texts, and turn predictions into a table and downloads.

Uploads are read by the rules of every file of patents (``patentclf.corpus.inputs``: ``text``, or ``title`` +
``abstract``), so a file that works with ``patentclf predict --input`` works here too. The table and
its downloads hold the API's answers field by field (``patentclf.inference.prediction.PredictionRecord``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from patentclf.corpus.data import rows_to_split
from patentclf.corpus.inputs import DataError, read_records, text_fields_for
from patentclf.corpus.labels import CODES
from patentclf.inference.prediction import OPTIONAL_FIELDS, PredictionRecord

UPLOAD_TYPES = ("csv", "jsonl", "json")
MAX_ROWS = 1000  # a browser upload is for a quick look; larger jobs belong to `patentclf predict --input`
# What a field of the answer is when an older API leaves it out (None where the record requires it).
DEFAULTS = {
    name: None if field.is_required() else field.get_default(call_default_factory=True)
    for name, field in PredictionRecord.model_fields.items()
}
# The results table's columns that hold the answer (its id as ``prediction_id``).
ANSWER_COLUMNS = frozenset("prediction_id" if name == "id" else name for name in DEFAULTS)


@dataclass
class Upload:
    ids: list[str]
    texts: list[str]
    columns: list[dict]  # each row's own other columns (not its id or the text read), kept in the results
    own_ids: list[str | None] | None = None  # the file's own ids (None where a row has none), before numbering


def read_upload(name: str, content: bytes, *, larger_with: str = "`patentclf predict --input`") -> Upload:
    """Parse an uploaded file; raises :class:`DataError` with a message fit for the page (``larger_with``:
    the command it names for files over :data:`MAX_ROWS`)."""
    if Path(name).suffix.lower().lstrip(".") not in UPLOAD_TYPES:
        raise DataError(f"{name}: unsupported file type; upload a {', '.join(UPLOAD_TYPES)} file")
    records = read_records(pa.BufferReader(content), name)
    split = rows_to_split(records, name, require_labels=False)
    if len(split) > MAX_ROWS:
        raise DataError(f"{name}: {len(split)} rows; the UI takes up to {MAX_ROWS} (use {larger_with} for more)")
    ids = [row_id if row_id is not None else str(number) for number, row_id in enumerate(split.ids, start=1)]
    read = {"id", *text_fields_for(set().union(*(r.keys() for r in records)), None, name)}
    columns = [{key: value for key, value in record.items() if key not in read} for record in records]
    return Upload(ids=ids, texts=split.texts, columns=columns, own_ids=list(split.ids))


def own_column(name: str) -> str:
    """A column of the upload under a name no field of the answer has (``label`` -> ``label (yours)``)."""
    return f"{name} (yours)" if name in DEFAULTS or name in ("prediction_id", "text") else name


def results_table(upload: Upload, predictions: list[dict]) -> pd.DataFrame:
    """One row per text: the upload's id, its own other columns and its text, then every field of the
    API's answer (its id as ``prediction_id``), the hierarchy as the API's lists and dicts."""
    rows = []
    # A field answered only on request (an explanation) is a column only when some answer has it.
    fields = [name for name in DEFAULTS if name not in OPTIONAL_FIELDS or any(name in answer for answer in predictions)]
    for row_id, own, text, answer in zip(upload.ids, upload.columns, upload.texts, predictions):
        row = {"id": row_id, **{own_column(name): value for name, value in own.items()}, "text": text}
        row.update({"prediction_id" if name == "id" else name: answer.get(name, DEFAULTS[name]) for name in fields})
        # An API from before the hierarchy answers the main section only.
        row["sections"] = row["sections"] or [answer["label"]]
        row["section_probabilities"] = row["section_probabilities"] or {answer["label"]: answer["confidence"]}
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


def similar_patents(items: list[dict]) -> str:
    """``US10718657 (0.912); US9135439 (0.874)``: the nearest indexed patents in one CSV cell."""
    return "; ".join(f"{item['id']} ({item['similarity']:.3f})" for item in items)


def tag_cell(items: list[dict] | None) -> str:
    """``batteries/sodium-ion (0.912); ...``: an answer's tags in one cell ("" for none)."""
    return "; ".join(f"{item['set']}/{item['name']} ({item['probability']:.3f})" for item in items or [])


def _cell(value):
    """A list or dict of the answer in one CSV cell: codes as ``G;H``, scored codes as ``CODE (p); ...``,
    similar patents as ``ID (similarity); ...``, review reasons as ``too_short;uncertain``, tags as
    ``SET/NAME (p); ...``, an explanation as its JSON text."""
    if isinstance(value, dict) and "sentences" in value:
        return json.dumps(value)
    if isinstance(value, list) and value and isinstance(value[0], dict) and "set" in value[0]:
        return tag_cell(value)
    if isinstance(value, list) and value and isinstance(value[0], dict) and "similarity" in value[0]:
        return similar_patents(value)
    if isinstance(value, list) and value and isinstance(value[0], dict) and "reason" in value[0]:
        return ";".join(item["reason"] for item in value)
    if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
        return scored_codes(value)
    return ";".join(value) if isinstance(value, list) else value


def to_csv(table: pd.DataFrame) -> bytes:
    """Flat cells: the nine probabilities as ``p_A`` ... ``p_Y``; ``sections`` as ``G;H``; section
    probabilities, classes, subclasses, groups and each level's best as ``CODE (p); ...``, similar patents
    as ``ID (similarity); ...``, review reasons as ``too_short;uncertain``, tags as ``SET/NAME (p); ...``
    (titles and the reasons' sentences are in the JSONL download)."""
    columns = {}
    for name in table.columns:
        if name == "probabilities":
            columns.update({f"p_{code}": table[name].map(lambda p, code=code: p.get(code, 0.0)) for code in CODES})
        else:
            columns[name] = table[name].map(_cell)
    return pd.DataFrame(columns).to_csv(index=False).encode("utf-8")


def to_jsonl(table: pd.DataFrame) -> bytes:
    """JSONL: each row as the API answers it (with the upload's id and text)."""
    lines = [json.dumps(record, ensure_ascii=False) for record in table.to_dict(orient="records")]
    return ("\n".join(lines) + "\n").encode("utf-8")
